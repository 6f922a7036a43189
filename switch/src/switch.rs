//! The switch: port sockets, the forwarding thread, the MAC table and the
//! frame recorder.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::control;
use crate::egress::Egress;
use crate::error::SwitchError;
use crate::frame::{Frame, MacAddr, ETHERNET_HEADER_LEN};
use crate::probe::{Segment, WhoHas};
use crate::sys;

/// The largest frame the switch carries: QEMU's own receive buffer
/// (`NET_BUFSIZE`, 4 KiB + 64 KiB), so nothing a VM sends is cut.
pub const MAX_FRAME: usize = 4096 + 65536;

/// The source MAC of frames this process sends with [`Switch::who_has`]: a
/// locally administered address ("\x02kee l\0") no VM uses.
pub const HOST_MAC: MacAddr = MacAddr::new(0x02, 0x6b, 0x65, 0x65, 0x6c, 0x00);

/// Frames a subscriber may fall behind by before it misses frames.
pub const SUBSCRIBER_QUEUE: usize = 4096;

/// How long a learned MAC stays in the table without traffic from it.
pub const MAC_AGING: Duration = Duration::from_secs(300);

/// Table entries kept at most; beyond this new MACs are not learned (their
/// frames are flooded, which is always correct, only noisier).
const MAC_TABLE_MAX: usize = 4096;

/// Background errors kept for [`Stats::errors`] (the first ones: usually
/// the cause).
const ERRORS_KEPT: usize = 100;

/// Frames read from one port before the others get a turn.
const RECV_BATCH: usize = 64;

/// Memory bounds and extras of a switch. [`Default`] keeps up to 100 000
/// frames or 64 MiB of history and has no control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchOptions {
    /// Frames kept for [`Switch::frames`]; the oldest are dropped first.
    pub history_frames: usize,
    /// Bytes of frames kept for [`Switch::frames`].
    pub history_bytes: usize,
    /// Serve the line protocol of [`crate::control`] on `DIR/control`.
    pub control: bool,
}

impl Default for SwitchOptions {
    fn default() -> Self {
        SwitchOptions {
            history_frames: 100_000,
            history_bytes: 64 << 20,
            control: false,
        }
    }
}

/// Counters of one VM port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames received from the VM (and forwarded or filtered).
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Frames delivered to the VM's socket.
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Frames not delivered because no VM socket was there (not started
    /// yet, or exited).
    pub tx_no_peer: u64,
    /// Frames dropped because the VM was not reading fast enough (queue
    /// full) or sending failed.
    pub tx_dropped: u64,
}

/// A snapshot of the switch's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Per VM port, by index.
    pub ports: Vec<PortStats>,
    /// Frames sent with [`Switch::inject`] (and `who_has`).
    pub injected: u64,
    /// Frames dropped from the history to keep within its bounds.
    pub history_evicted: u64,
    /// Frames a subscriber missed because it fell behind.
    pub subscriber_drops: u64,
    /// Errors the forwarding thread met, rendered (the first 100); each
    /// names the socket path. Empty on a healthy switch.
    pub errors: Vec<String>,
    /// All errors, including those not kept in `errors`.
    pub errors_total: u64,
}

/// A learning Ethernet switch between QEMU VMs on unix datagram sockets,
/// recording every frame. See the [crate documentation](crate).
///
/// Dropping it stops the forwarding thread and removes the port and
/// control sockets it created.
pub struct Switch {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
    control: Option<control::Server>,
}

/// What the forwarding thread, the control server and the handle share.
/// See [`Switch::injector`].
#[derive(Clone)]
pub struct Injector(Arc<Inner>);

impl Injector {
    /// As [`Switch::inject`].
    pub fn inject(&self, frame: &[u8]) -> Result<(), SwitchError> {
        self.0.inject(frame)
    }
}

pub(crate) struct Inner {
    dir: PathBuf,
    port_paths: Vec<PathBuf>,
    vm_paths: Vec<PathBuf>,
    /// Bound at `port_paths[i]`; what VM `i` sends to.
    rx: Vec<UnixDatagram>,
    waker_tx: UnixDatagram,
    waker_rx: UnixDatagram,
    stop: AtomicBool,
    state: Mutex<State>,
}

struct State {
    egress: Vec<Egress>,
    macs: HashMap<MacAddr, Learned>,
    history: VecDeque<Frame>,
    history_bytes: usize,
    max_frames: usize,
    max_bytes: usize,
    subscribers: Vec<SyncSender<Frame>>,
    stats: Stats,
    /// VM ports cut off from every other VM port (not from the host port:
    /// an observer there still sees and reaches both sides).
    isolated: Vec<bool>,
}

#[derive(Debug, Clone, Copy)]
struct Learned {
    port: usize,
    at: Instant,
}

impl Switch {
    /// Starts a switch with `ports` VM ports whose sockets live in `dir`
    /// (created if missing), with [`SwitchOptions::default`].
    pub fn start(dir: impl AsRef<Path>, ports: usize) -> Result<Switch, SwitchError> {
        Switch::start_with(dir, ports, SwitchOptions::default())
    }

    /// Starts a switch: binds `port<i>.sock` in `dir` for every port
    /// (replacing socket files left by an exited switch, refusing ones a
    /// live process holds), starts the forwarding thread and, if asked,
    /// the control socket.
    pub fn start_with(
        dir: impl AsRef<Path>,
        ports: usize,
        options: SwitchOptions,
    ) -> Result<Switch, SwitchError> {
        let dir = dir.as_ref().to_path_buf();
        if ports == 0 {
            return Err(SwitchError::NoPorts);
        }
        fs::create_dir_all(&dir).map_err(|source| SwitchError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let port_paths: Vec<PathBuf> = (0..ports)
            .map(|i| dir.join(format!("port{i}.sock")))
            .collect();
        let vm_paths: Vec<PathBuf> = (0..ports)
            .map(|i| dir.join(format!("vm{i}.sock")))
            .collect();
        for p in port_paths.iter().chain(&vm_paths) {
            check_len(p)?;
        }
        let mut bound = BoundPaths(Vec::new());
        let mut rx = Vec::with_capacity(ports);
        for path in &port_paths {
            remove_stale(path, sys::dgram_alive)?;
            let sock = UnixDatagram::bind(path).map_err(|source| SwitchError::Bind {
                path: path.clone(),
                source,
            })?;
            bound.0.push(path.clone());
            sock.set_nonblocking(true)
                .map_err(|source| SwitchError::Setup {
                    path: path.clone(),
                    source,
                })?;
            rx.push(sock);
        }
        let egress = vm_paths
            .iter()
            .map(|p| Egress::new(p.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let (waker_tx, waker_rx) = UnixDatagram::pair()
            .and_then(|(a, b)| {
                a.set_nonblocking(true)?;
                b.set_nonblocking(true)?;
                Ok((a, b))
            })
            .map_err(|source| SwitchError::Setup {
                path: dir.clone(),
                source,
            })?;
        let inner = Arc::new(Inner {
            dir,
            port_paths,
            vm_paths,
            rx,
            waker_tx,
            waker_rx,
            stop: AtomicBool::new(false),
            state: Mutex::new(State {
                max_frames: options.history_frames,
                max_bytes: options.history_bytes,
                egress,
                macs: HashMap::new(),
                history: VecDeque::new(),
                history_bytes: 0,
                subscribers: Vec::new(),
                isolated: vec![false; ports],
                stats: Stats {
                    ports: vec![PortStats::default(); ports],
                    ..Stats::default()
                },
            }),
        });
        let thread = {
            let inner = inner.clone();
            thread::Builder::new()
                .name("keel-switch".into())
                .spawn(move || inner.run())
                .map_err(|source| SwitchError::Thread { source })?
        };
        let mut switch = Switch {
            inner,
            thread: Some(thread),
            control: None,
        };
        // From here on, dropping `switch` removes the port sockets.
        bound.0.clear();
        if options.control {
            let path = switch.inner.dir.join("control");
            switch.control = Some(control::Server::start(switch.inner.clone(), path)?);
        }
        Ok(switch)
    }

    /// Number of VM ports.
    pub fn ports(&self) -> usize {
        self.inner.ports()
    }

    /// The directory holding the sockets.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The switch's socket for port `port` (`DIR/port<i>.sock`): QEMU's
    /// `remote.path`. Panics if `port >= ports()`.
    pub fn port_path(&self, port: usize) -> &Path {
        &self.inner.port_paths[port]
    }

    /// The socket VM `port` binds (`DIR/vm<i>.sock`): QEMU's `local.path`,
    /// where the switch sends that VM's frames. Panics if `port >= ports()`.
    pub fn vm_path(&self, port: usize) -> &Path {
        &self.inner.vm_paths[port]
    }

    /// The `-netdev` value connecting a QEMU NIC to `port`:
    /// `dgram,id=<id>,local.type=unix,local.path=<vm>,remote.type=unix,remote.path=<port>`
    /// (commas in paths doubled, as QEMU wants). Panics if `port >= ports()`.
    pub fn netdev(&self, id: &str, port: usize) -> String {
        let esc = |p: &Path| p.display().to_string().replace(',', ",,");
        format!(
            "dgram,id={id},local.type=unix,local.path={},remote.type=unix,remote.path={}",
            esc(self.vm_path(port)),
            esc(self.port_path(port))
        )
    }

    /// The control socket (`DIR/control`), if [`SwitchOptions::control`].
    pub fn control_path(&self) -> Option<&Path> {
        self.control.as_ref().map(|c| c.path())
    }

    /// The port number injected frames are recorded with: one past the last
    /// VM port.
    pub fn host_port(&self) -> usize {
        self.inner.ports()
    }

    /// Whether a process holds VM `port`'s socket right now (QEMU started
    /// and bound `local.path`).
    pub fn peer_alive(&self, port: usize) -> bool {
        sys::dgram_alive(self.vm_path(port))
    }

    /// Waits until VM `port`'s socket exists and accepts a connection.
    pub fn wait_for_peer(&self, port: usize, timeout: Duration) -> Result<(), SwitchError> {
        self.inner.check_port(port)?;
        let deadline = deadline_after(timeout);
        loop {
            if self.peer_alive(port) && self.inner.lock().egress[port].try_connect() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(SwitchError::PeerTimeout {
                    path: self.vm_path(port).to_path_buf(),
                    timeout,
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// A handle that injects frames from another thread while the switch
    /// is borrowed elsewhere (an observer probing on a timer).
    pub fn injector(&self) -> Injector {
        Injector(self.inner.clone())
    }

    /// Sends `frame` (Ethernet header onwards) into the switch as if from a
    /// host port: it is recorded with port [`Switch::host_port`], its
    /// source MAC is learned there, and it goes where a VM's frame would
    /// (flooded to every VM port if broadcast, multicast or unknown).
    pub fn inject(&self, frame: &[u8]) -> Result<(), SwitchError> {
        self.inner.inject(frame)
    }

    /// Every frame in the history (oldest first), within the
    /// [`SwitchOptions`] bounds.
    pub fn frames(&self) -> Vec<Frame> {
        self.inner.lock().history.iter().cloned().collect()
    }

    /// Frames recorded at or after `since`.
    pub fn frames_since(&self, since: Instant) -> Vec<Frame> {
        self.inner.frames_since(since)
    }

    /// Cuts VM `port` off from every other VM port (`true`) or joins it
    /// again: a partition of one node from its peers that an observer on
    /// the host port still sees from both sides.
    pub fn isolate(&self, port: usize, isolated: bool) -> Result<(), SwitchError> {
        self.inner.check_port(port)?;
        self.inner.lock().isolated[port] = isolated;
        Ok(())
    }

    /// Empties the history.
    pub fn clear_frames(&self) {
        let mut state = self.inner.lock();
        state.history.clear();
        state.history_bytes = 0;
    }

    /// Every frame from now on, as it is seen. A receiver that falls more
    /// than [`SUBSCRIBER_QUEUE`] frames behind misses frames (counted in
    /// [`Stats::subscriber_drops`]); dropping the receiver unsubscribes.
    pub fn subscribe(&self) -> Receiver<Frame> {
        self.inner.subscribe()
    }

    /// Asks who has `ip` (an RFC 5227 probe from [`HOST_MAC`], sender IP
    /// 0.0.0.0, which leaves the VMs' ARP caches alone) and collects the
    /// ARP replies for `ip` that arrive within `timeout`: one entry per
    /// reply, in order. Two entries with different MACs mean two VMs claim
    /// the address.
    pub fn who_has(&self, ip: Ipv4Addr, timeout: Duration) -> Vec<(MacAddr, Instant)> {
        self.who_has_frames(ip, timeout)
            .iter()
            .filter_map(|f| Some((f.arp()?.sender_mac, f.at)))
            .collect()
    }

    /// [`Switch::who_has`], returning the whole reply frames (with their
    /// ingress ports).
    pub fn who_has_frames(&self, ip: Ipv4Addr, timeout: Duration) -> Vec<Frame> {
        self.inner.who_has(ip, timeout)
    }

    /// The MAC table: each learned, unexpired MAC and its port (the host
    /// port for injected frames' sources), sorted by MAC.
    pub fn mac_table(&self) -> Vec<(MacAddr, usize)> {
        self.inner.mac_table()
    }

    /// A snapshot of the counters and background errors.
    pub fn stats(&self) -> Stats {
        self.inner.lock().stats.clone()
    }

    /// The background errors so far ([`Stats::errors`]).
    pub fn errors(&self) -> Vec<String> {
        self.inner.lock().stats.errors.clone()
    }
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch")
            .field("dir", &self.inner.dir)
            .field("ports", &self.inner.ports())
            .field("control", &self.control_path())
            .finish()
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.control.take();
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for p in &self.inner.port_paths {
            let _ = fs::remove_file(p);
        }
    }
}

impl Inner {
    pub(crate) fn ports(&self) -> usize {
        self.port_paths.len()
    }

    pub(crate) fn port_path(&self, port: usize) -> &Path {
        &self.port_paths[port]
    }

    pub(crate) fn vm_path(&self, port: usize) -> &Path {
        &self.vm_paths[port]
    }

    fn check_port(&self, port: usize) -> Result<(), SwitchError> {
        if port < self.ports() {
            Ok(())
        } else {
            Err(SwitchError::NoSuchPort {
                port,
                ports: self.ports(),
            })
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements; a panicking
        // subscriber elsewhere must not stop the switch.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self) {
        // A full wake-up socket already holds a wake-up.
        let _ = self.waker_tx.send(b"w");
    }

    pub(crate) fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    pub(crate) fn subscribe(&self) -> Receiver<Frame> {
        let (tx, rx) = mpsc::sync_channel(SUBSCRIBER_QUEUE);
        self.lock().subscribers.push(tx);
        rx
    }

    pub(crate) fn inject(&self, frame: &[u8]) -> Result<(), SwitchError> {
        if !(ETHERNET_HEADER_LEN..=MAX_FRAME).contains(&frame.len()) {
            return Err(SwitchError::BadFrame {
                len: frame.len(),
                max: MAX_FRAME,
            });
        }
        let backlog = {
            let mut state = self.lock();
            state.stats.injected += 1;
            state.handle(self, self.ports(), frame);
            state.egress.iter().any(Egress::backlogged)
        };
        if backlog {
            // The forwarding thread must add the backlogged port to its
            // poll set.
            self.wake();
        }
        Ok(())
    }

    pub(crate) fn who_has(&self, ip: Ipv4Addr, timeout: Duration) -> Vec<Frame> {
        WhoHas::new(ip, timeout).ask(self)
    }

    pub(crate) fn frames_since(&self, since: Instant) -> Vec<Frame> {
        let state = self.lock();
        let start = state.history.partition_point(|f| f.at < since);
        state.history.range(start..).cloned().collect()
    }

    pub(crate) fn mac_table(&self) -> Vec<(MacAddr, usize)> {
        let now = Instant::now();
        let mut t: Vec<_> = self
            .lock()
            .macs
            .iter()
            .filter(|(_, l)| now.duration_since(l.at) < MAC_AGING)
            .map(|(m, l)| (*m, l.port))
            .collect();
        t.sort();
        t
    }

    /// The forwarding thread.
    fn run(&self) {
        let mut buf = vec![0u8; MAX_FRAME + 1];
        let ports = self.ports();
        while !self.stop.load(Ordering::SeqCst) {
            let mut fds = vec![sys::pollfd(sys::raw(&self.waker_rx), sys::POLLIN)];
            fds.extend(
                self.rx
                    .iter()
                    .map(|s| sys::pollfd(sys::raw(s), sys::POLLIN)),
            );
            let backlog: Vec<usize> = {
                let state = self.lock();
                let backlog: Vec<usize> = (0..ports)
                    .filter(|&p| state.egress[p].backlogged())
                    .collect();
                fds.extend(
                    backlog
                        .iter()
                        .map(|&p| sys::pollfd(state.egress[p].fd(), sys::POLLOUT)),
                );
                backlog
            };
            if let Err(source) = sys::poll(&mut fds, None) {
                self.lock().error(SwitchError::Poll {
                    dir: self.dir.clone(),
                    source,
                });
                thread::sleep(Duration::from_millis(100));
                continue;
            }
            if sys::ready(&fds[0], sys::POLLIN) {
                sys::drain(&self.waker_rx);
            }
            for port in 0..ports {
                if sys::ready(&fds[1 + port], sys::POLLIN) {
                    self.receive(port, &mut buf);
                }
            }
            for (k, &port) in backlog.iter().enumerate() {
                if sys::ready(&fds[1 + ports + k], sys::POLLOUT) {
                    self.lock().flush(port);
                }
            }
        }
    }

    /// Reads and forwards up to [`RECV_BATCH`] frames from `port`.
    fn receive(&self, port: usize, buf: &mut [u8]) {
        for _ in 0..RECV_BATCH {
            let n = match self.rx[port].recv(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    self.lock().error(SwitchError::Recv {
                        path: self.port_paths[port].clone(),
                        source,
                    });
                    return;
                }
            };
            let path = || self.port_paths[port].clone();
            let mut state = self.lock();
            if n > MAX_FRAME {
                state.error(SwitchError::Oversized {
                    path: path(),
                    len: n,
                    max: MAX_FRAME,
                });
            } else if n < ETHERNET_HEADER_LEN {
                state.error(SwitchError::Runt {
                    path: path(),
                    len: n,
                });
            } else {
                let stats = &mut state.stats.ports[port];
                stats.rx_frames += 1;
                stats.rx_bytes += n as u64;
                state.handle(self, port, &buf[..n]);
            }
        }
    }
}

impl State {
    /// Records a frame that came in on `ingress` and forwards it.
    fn handle(&mut self, inner: &Inner, ingress: usize, bytes: &[u8]) {
        let now = Instant::now();
        let dst = MacAddr::from_slice(bytes).unwrap_or(MacAddr::BROADCAST);
        let src = MacAddr::from_slice(&bytes[6..]).unwrap_or(MacAddr::ZERO);
        self.learn(src, ingress, now);
        self.record(Frame {
            at: now,
            port: ingress,
            bytes: bytes.to_vec(),
        });
        let ports = inner.ports();
        let learned = self
            .macs
            .get(&dst)
            .filter(|l| !dst.is_multicast() && now.duration_since(l.at) < MAC_AGING)
            .map(|l| l.port);
        let frame: Arc<[u8]> = Arc::from(bytes);
        // A partition: frames between an isolated VM port and any other VM
        // port are dropped; the host port (`ingress == ports`) reaches all.
        let cut = |s: &State, p: usize| {
            ingress < ports && p != ingress && (s.is_isolated(ingress) || s.is_isolated(p))
        };
        match learned {
            // Known unicast: only to its port; nothing if it is where the
            // frame came from, or the host (already recorded).
            Some(p) if p != ingress && p < ports && !cut(self, p) => self.send(p, frame),
            Some(_) => {}
            None => {
                let to: Vec<usize> = (0..ports)
                    .filter(|&p| p != ingress && !cut(self, p))
                    .collect();
                for p in to {
                    self.send(p, frame.clone());
                }
            }
        }
    }

    fn is_isolated(&self, port: usize) -> bool {
        self.isolated.get(port).copied().unwrap_or(false)
    }

    fn learn(&mut self, src: MacAddr, port: usize, now: Instant) {
        if src.is_multicast() || src == MacAddr::ZERO {
            return;
        }
        if self.macs.len() >= MAC_TABLE_MAX && !self.macs.contains_key(&src) {
            self.macs
                .retain(|_, l| now.duration_since(l.at) < MAC_AGING);
            if self.macs.len() >= MAC_TABLE_MAX {
                return;
            }
        }
        let old = self.macs.insert(src, Learned { port, at: now });
        if let Some(old) = old.filter(|o| o.port != port) {
            log::debug!("{src} moved from port {} to port {port}", old.port);
        }
    }

    fn record(&mut self, frame: Frame) {
        self.subscribers
            .retain(|s| match s.try_send(frame.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    self.stats.subscriber_drops += 1;
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            });
        self.history_bytes += frame.bytes.len();
        self.history.push_back(frame);
        // Keep at least the newest frame, whatever the bounds.
        while self.history.len() > 1
            && (self.history.len() > self.max_frames || self.history_bytes > self.max_bytes)
        {
            if let Some(old) = self.history.pop_front() {
                self.history_bytes -= old.bytes.len();
                self.stats.history_evicted += 1;
            }
        }
    }

    fn send(&mut self, port: usize, frame: Arc<[u8]>) {
        let mut errors = Vec::new();
        self.egress[port].send(frame, &mut self.stats.ports[port], &mut errors);
        for e in errors {
            self.error(e);
        }
    }

    fn flush(&mut self, port: usize) {
        let mut errors = Vec::new();
        self.egress[port].flush(&mut self.stats.ports[port], &mut errors);
        for e in errors {
            self.error(e);
        }
    }

    fn error(&mut self, e: SwitchError) {
        log::warn!("{e}");
        self.stats.errors_total += 1;
        if self.stats.errors.len() < ERRORS_KEPT {
            self.stats.errors.push(e.to_string());
        }
    }
}

/// Socket files created by a start that has not finished; removed if it
/// fails.
struct BoundPaths(Vec<PathBuf>);

impl Drop for BoundPaths {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

/// `timeout` from now; a timeout too large to represent means a day.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or(now + Duration::from_secs(86_400))
}

/// Longest unix socket path (`sun_path` less its terminating NUL).
const SUN_PATH_MAX: usize = 107;

fn check_len(path: &Path) -> Result<(), SwitchError> {
    let len = path.as_os_str().len();
    if len > SUN_PATH_MAX {
        return Err(SwitchError::PathTooLong {
            path: path.to_path_buf(),
            len,
            max: SUN_PATH_MAX,
        });
    }
    Ok(())
}

/// Removes a socket file left by an exited process; refuses one a live
/// process holds (`alive` says which).
pub(crate) fn remove_stale(path: &Path, alive: fn(&Path) -> bool) -> Result<(), SwitchError> {
    use std::os::unix::fs::FileTypeExt;
    match fs::symlink_metadata(path) {
        Err(_) => return Ok(()),
        Ok(m) if !m.file_type().is_socket() => {
            return Err(SwitchError::NotASocket {
                path: path.to_path_buf(),
            })
        }
        Ok(_) => {}
    }
    if alive(path) {
        return Err(SwitchError::InUse {
            path: path.to_path_buf(),
        });
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(SwitchError::RemoveStale {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

impl Segment for Inner {
    fn send_frame(&self, frame: &[u8]) -> Result<(), String> {
        self.inject(frame).map_err(|e| e.to_string())
    }
    fn frames_since(&self, since: Instant) -> Vec<Frame> {
        Inner::frames_since(self, since)
    }
}
