//! A VIP cluster made of network namespaces on this host, for the VIP host
//! tests and `make bench-failover`: a hub namespace holding a bridge, and
//! per node a namespace with a veth on that bridge, its own real etcd
//! member (the image's etcd 3.5) and a real `keel vip` process
//! campaigning through that member, as PID 1 does on a node.
//!
//! What the VIP does is observed from outside the processes: `ip monitor
//! address` in every node namespace (when the address appears and goes,
//! the ground truth for "two holders") and a packet socket on the bridge
//! (gratuitous ARP, ARP replies to probes this harness sends).
//!
//! Needs root (namespaces, veths). Touches nothing outside the namespaces
//! it creates, which are deleted on drop.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keel_switch::{Frame, MacAddr, Segment, WhoHas, ETHERTYPE_ARP};

/// When a node's namespace gained or lost the VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrEvent {
    pub at: Instant,
    pub node: usize,
    pub added: bool,
}

pub struct Node {
    pub ns: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// The hub-side end of the node's veth (down = partitioned).
    pub port: String,
    etcd: Option<Child>,
    vip: Option<Child>,
}

pub struct VipNet {
    pub dir: tempfile::TempDir,
    pub hub: String,
    pub nodes: Vec<Node>,
    pub vip: Ipv4Addr,
    pub ttl: u64,
    keel: PathBuf,
    events: Arc<Mutex<Vec<AddrEvent>>>,
    frames: Arc<Mutex<Vec<Frame>>>,
    monitors: Vec<Child>,
    stop: Arc<AtomicBool>,
    capture: Option<JoinHandle<()>>,
}

/// The etcd the image carries (Debian trixie's etcd-server 3.5, extracted
/// by image/fetch-debs.sh into the image cache), so the host tests run the
/// same version as the nodes; `KEEL_ETCD` names another binary.
pub fn etcd() -> PathBuf {
    tool("KEEL_ETCD", "etcd-server/usr/bin/etcd")
}

/// etcd-client's `etcdctl` of the same version (fetched beside etcd, not
/// put in the image); `KEEL_ETCDCTL` names another binary.
pub fn etcdctl() -> PathBuf {
    tool("KEEL_ETCDCTL", "etcd-client/usr/bin/etcdctl")
}

fn tool(var: &str, in_cache: &str) -> PathBuf {
    let path = std::env::var_os(var).filter(|v| !v.is_empty()).map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../build/cache")
                .join(in_cache)
        },
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: `make image` extracts etcd 3.5 from Debian trixie into build/cache (or set {var})",
        path.display()
    );
    path
}
const SUBNET: [u8; 3] = [10, 77, 0];
const BRIDGE: &str = "br0";
const HUB_MAC: MacAddr = MacAddr::new(0x02, 0x6b, 0x65, 0x65, 0x6c, 0xee);

/// Runs `args` and fails the test when it fails.
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cmd` to its end: whether it succeeded, and its output (stdout,
/// then stderr).
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

impl VipNet {
    /// Namespaces, bridge and veths for `n` nodes; nothing started yet.
    pub fn new(tag: &str, n: usize, ttl: u64) -> VipNet {
        let id = std::process::id();
        let hub = format!("kv-{tag}-{id}-hub");
        let _ = Command::new("ip").args(["netns", "del", &hub]).output();
        sh(&["ip", "netns", "add", &hub]);
        sh(&["ip", "-n", &hub, "link", "add", BRIDGE, "type", "bridge"]);
        sh(&[
            "ip",
            "-n",
            &hub,
            "link",
            "set",
            BRIDGE,
            "address",
            &HUB_MAC.to_string(),
        ]);
        sh(&["ip", "-n", &hub, "link", "set", BRIDGE, "up"]);
        let mut nodes = Vec::new();
        for i in 0..n {
            let ns = format!("kv-{tag}-{id}-n{i}");
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
            sh(&["ip", "netns", "add", &ns]);
            let port = format!("p{i}");
            let host = u8::try_from(i).expect("a few nodes");
            let ip = Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], 11 + host);
            let mac = MacAddr::new(0x02, 0, 0, 0, 0x77, host + 1);
            sh(&[
                "ip", "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ]);
            sh(&[
                "ip", "-n", &hub, "link", "set", &port, "master", BRIDGE, "up",
            ]);
            sh(&[
                "ip",
                "-n",
                &ns,
                "link",
                "set",
                "eth0",
                "address",
                &mac.to_string(),
            ]);
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ]);
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            nodes.push(Node {
                ns,
                ip,
                mac,
                port,
                etcd: None,
                vip: None,
            });
        }
        let mut net = VipNet {
            dir: tempfile::tempdir().unwrap(),
            hub,
            nodes,
            vip: Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], 100),
            ttl,
            keel: crate::init_binary(),
            events: Arc::default(),
            frames: Arc::default(),
            monitors: Vec::new(),
            stop: Arc::default(),
            capture: None,
        };
        net.observe();
        net
    }

    /// Starts every node's etcd member and `keel vip`.
    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start_etcd(i);
        }
        for i in 0..self.nodes.len() {
            self.start_vip(i);
        }
    }

    pub fn start_etcd(&mut self, i: usize) {
        let cluster: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(j, n)| format!("n{j}=http://{}:2380", n.ip))
            .collect();
        let node = &self.nodes[i];
        let peer = format!("http://{}:2380", node.ip);
        let data = self.dir.path().join(format!("etcd{i}"));
        let log = self.log_file(&format!("etcd{i}.log"));
        let child = Command::new("ip")
            .args(["netns", "exec", &node.ns])
            .arg(etcd())
            .args(["--name", &format!("n{i}")])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:2379,http://{}:2379", node.ip),
            ])
            .args([
                "--advertise-client-urls",
                &format!("http://{}:2379", node.ip),
            ])
            .args(["--initial-cluster", &cluster.join(",")])
            .args([
                "--initial-cluster-token",
                "keel-vip",
                "--initial-cluster-state",
                "new",
            ])
            // As Keel runs it (etcd/args.rs): a member coming back from a
            // partition does not force a leader election.
            .arg("--pre-vote=true")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.nodes[i].etcd = Some(child);
    }

    pub fn start_vip(&mut self, i: usize) {
        let vip = self.vip.to_string();
        self.start_vip_for(i, &vip);
    }

    /// Node `i`'s `keel vip` for another address (an IPv6 VIP).
    pub fn start_vip_for(&mut self, i: usize, vip: &str) {
        let node = &self.nodes[i];
        let log = self.log_file(&format!("vip{i}.log"));
        let child = Command::new("ip")
            .args(["netns", "exec", &node.ns])
            .arg(&self.keel)
            .args([
                "vip",
                "--link",
                "eth0",
                "--endpoint",
                "http://127.0.0.1:2379",
            ])
            .args(["--ip", vip, "--ttl", &self.ttl.to_string()])
            .args(["--name", &format!("node{i}/n{i}")])
            .arg("--state")
            .arg(self.dir.path().join(format!("vip{i}.leases")))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start keel vip");
        self.nodes[i].vip = Some(child);
    }

    /// IPv6 on the segment: `<prefix>1/64` on the hub's bridge and
    /// `<prefix>1<i>/64` on node `i` (no duplicate address detection), for
    /// an IPv6 VIP in `<prefix>/64`.
    pub fn enable_ipv6(&self, prefix: &str) {
        // `nodad` on each address: usable at once, without a sysctl (and
        // the procps package it would need).
        sh(&[
            "ip",
            "-n",
            &self.hub,
            "addr",
            "add",
            &format!("{prefix}1/64"),
            "dev",
            BRIDGE,
            "nodad",
        ]);
        for (i, n) in self.nodes.iter().enumerate() {
            let a = format!("{prefix}1{i}/64");
            sh(&["ip", "-n", &n.ns, "addr", "add", &a, "dev", "eth0", "nodad"]);
        }
    }

    /// Runs `args` in the hub's namespace; whether it succeeded, and its
    /// output.
    pub fn in_hub(&self, args: &[&str]) -> (bool, String) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.hub]).args(args);
        run(&mut cmd)
    }

    /// `etcdctl` (API v3) in node `i`'s namespace against its member;
    /// whether it succeeded, and its output.
    pub fn etcdctl(&self, i: usize, args: &[&str]) -> (bool, String) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.nodes[i].ns])
            .arg(etcdctl())
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints=http://127.0.0.1:2379",
                "--dial-timeout=5s",
                "--command-timeout=10s",
            ])
            .args(args);
        run(&mut cmd)
    }

    fn log_file(&self, name: &str) -> File {
        File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(name))
            .unwrap()
    }

    /// The logs of every process, for a failing test's message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for i in 0..self.nodes.len() {
            let p = self.dir.path().join(format!("vip{i}.log"));
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            out += &format!("--- keel vip on node {i}\n{text}");
        }
        out
    }

    /// Whether some process logged `text` within 2 s (a line may come a
    /// little after the event the test saw on the wire).
    pub fn wait_logged(&self, text: &str) -> bool {
        (0..40).any(|_| {
            let found = self.logs().contains(text);
            if !found {
                std::thread::sleep(Duration::from_millis(50));
            }
            found
        })
    }

    /// Graceful stop: SIGTERM, wait for the exit.
    pub fn stop_vip(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].vip.take() {
            signal(&c, libc::SIGTERM);
            let _ = c.wait();
        }
    }

    /// A crash of the node's VIP process: SIGKILL. The address it added
    /// (on `lo`) stays in the kernel, silent: only the process answered
    /// for it. A real node's crash takes its kernel (and the address)
    /// with it, so the harness removes it at once, as the node's death
    /// would.
    pub fn crash_vip(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].vip.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let ns = self.nodes[i].ns.clone();
        let addr = format!("{}/32", self.vip);
        let _ = Command::new("ip")
            .args(["-n", &ns, "addr", "del", &addr, "dev", "lo"])
            .output();
    }

    pub fn kill_etcd(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].etcd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes (true) or thaws the node's etcd: a hung or very slow member.
    pub fn freeze_etcd(&self, i: usize, frozen: bool) {
        if let Some(c) = &self.nodes[i].etcd {
            signal(c, if frozen { libc::SIGSTOP } else { libc::SIGCONT });
        }
    }

    /// Cuts the node off the bridge (its link loses carrier) or joins it.
    pub fn partition(&self, i: usize, cut: bool) {
        let state = if cut { "down" } else { "up" };
        sh(&[
            "ip",
            "-n",
            &self.hub,
            "link",
            "set",
            &self.nodes[i].port,
            state,
        ]);
    }

    /// Every add and delete of the VIP, in the order they happened.
    pub fn events(&self) -> Vec<AddrEvent> {
        let mut e = self.events.lock().unwrap().clone();
        e.sort_by_key(|e| e.at);
        e
    }

    /// The nodes holding the VIP now, by the monitors.
    pub fn holders(&self) -> Vec<usize> {
        holders_at(&self.events(), self.nodes.len(), None)
    }

    /// Waits until exactly one node holds the VIP (and has for `settle`),
    /// returning it.
    pub fn wait_single_holder(&self, timeout: Duration, settle: Duration) -> Option<usize> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            let h = self.holders();
            if h.len() == 1 {
                let last = self.events().last().map(|e| e.at).unwrap();
                if last.elapsed() >= settle {
                    return Some(h[0]);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The first time after `since` a node other than `old` gained the VIP.
    pub fn wait_new_holder(
        &self,
        old: usize,
        since: Instant,
        timeout: Duration,
    ) -> Option<AddrEvent> {
        let end = Instant::now() + timeout;
        loop {
            let found = self
                .events()
                .into_iter()
                .find(|e| e.at >= since && e.added && e.node != old);
            if found.is_some() || Instant::now() >= end {
                return found;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// When `old` lost the VIP at or after `since`, by the monitors.
    pub fn dropped_at(&self, old: usize, since: Instant) -> Option<Instant> {
        self.events()
            .into_iter()
            .find(|e| e.at >= since && !e.added && e.node == old)
            .map(|e| e.at)
    }

    /// Gratuitous ARPs for the VIP seen on the bridge after `since`, as
    /// (time, sender MAC, is reply form).
    pub fn garps_since(&self, since: Instant) -> Vec<(Instant, MacAddr, bool)> {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f.at >= since)
            .filter_map(|f| Some((f.at, f.arp()?)))
            .filter(|(_, a)| a.is_gratuitous() && a.sender_ip == self.vip)
            .map(|(at, a)| (at, a.sender_mac, a.is_reply()))
            .collect()
    }

    /// Sends an ARP probe for the VIP from the bridge and returns the MACs
    /// that answered within `wait` (keel-switch's one who-has, on this
    /// bridge).
    pub fn who_has(&self, wait: Duration) -> Vec<MacAddr> {
        WhoHas::new(self.vip, wait).from(HUB_MAC).macs(self)
    }

    pub fn node_of(&self, mac: MacAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.mac == mac)
    }

    fn observe(&mut self) {
        let needle = format!(" inet {}/32 ", self.vip);
        for (i, node) in self.nodes.iter().enumerate() {
            // -ts: each event stamped by `ip` when it reads it from its
            // netlink socket, so the order across namespaces is the
            // kernel's, not that of these threads reading pipes (a
            // hand-over takes ~30 ms here, less than their jitter).
            let mut child = Command::new("ip")
                .args(["-ts", "-n", &node.ns, "monitor", "address"])
                .stdout(Stdio::piped())
                .stdin(Stdio::null())
                .spawn()
                .expect("ip monitor");
            let out = child.stdout.take().unwrap();
            let events = self.events.clone();
            let needle = needle.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let (at, line) = stamped(&line, Instant::now());
                    if line.contains(&needle) {
                        let added = !line.starts_with("Deleted");
                        events
                            .lock()
                            .unwrap()
                            .push(AddrEvent { at, node: i, added });
                    }
                }
            });
            self.monitors.push(child);
        }
        let (hub, frames, stop) = (self.hub.clone(), self.frames.clone(), self.stop.clone());
        self.capture = Some(std::thread::spawn(move || {
            enter_netns(&hub);
            let s = PacketSocket::open(BRIDGE);
            let mut buf = vec![0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Some(n) = s.recv(&mut buf) {
                    let bytes = buf[..n].to_vec();
                    let is_arp = bytes.len() >= 14 && bytes[12..14] == ETHERTYPE_ARP.to_be_bytes();
                    if is_arp {
                        frames.lock().unwrap().push(Frame {
                            at: Instant::now(),
                            port: 0,
                            bytes,
                        });
                    }
                }
            }
        }));
        // The monitors must be listening before anything can change.
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Which nodes hold the VIP after replaying `events` up to `until`.
/// An `ip -ts monitor` line: the instant of its `[YYYY-MM-DDTHH:MM:SS.ffffff]`
/// stamp (local time, as `ip` prints it), placed on the monotonic clock by
/// its distance from the local time of day at `now`, and the rest of the
/// line. A line without a stamp is `now`.
pub fn stamped(line: &str, now: Instant) -> (Instant, &str) {
    let parsed = line
        .strip_prefix('[')
        .and_then(|l| l.split_once("] "))
        .and_then(|(ts, rest)| {
            let tod = ts.split_once('T')?.1;
            let mut parts = tod.split(':');
            let (h, m, sec): (u64, u64, f64) = (
                parts.next()?.parse().ok()?,
                parts.next()?.parse().ok()?,
                parts.next()?.parse().ok()?,
            );
            Some(((h * 3600 + m * 60) as f64 + sec, rest))
        });
    let Some((stamp, rest)) = parsed else {
        return (now, line);
    };
    let day = 86400.0;
    let behind = (local_time_of_day() - stamp).rem_euclid(day);
    // Beyond a minute the stamp is not from this read; keep `now`.
    if behind > 60.0 {
        return (now, rest);
    }
    (now - Duration::from_secs_f64(behind), rest)
}

/// Seconds since local midnight, now (localtime_r(3), as `ip -ts`).
fn local_time_of_day() -> f64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_epoch.as_secs() as libc::time_t;
    // SAFETY: libc::tm is plain integers (and, on glibc, a pointer that
    // may be null): all zeros is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r writes only into `tm`, which lives on this stack
    // frame, and reads `secs`, a valid time_t.
    unsafe { libc::localtime_r(&secs, &mut tm) };
    f64::from(tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec)
        + f64::from(since_epoch.subsec_micros()) / 1e6
}

pub fn holders_at(events: &[AddrEvent], n: usize, until: Option<Instant>) -> Vec<usize> {
    let mut held = vec![false; n];
    for e in events.iter().filter(|e| until.is_none_or(|u| e.at <= u)) {
        held[e.node] = e.added;
    }
    (0..n).filter(|&i| held[i]).collect()
}

/// The total time two or more nodes held the VIP at once.
pub fn overlap(events: &[AddrEvent], n: usize) -> Duration {
    let mut held = vec![false; n];
    let mut total = Duration::ZERO;
    let mut since: Option<Instant> = None;
    for e in events {
        held[e.node] = e.added;
        let count = held.iter().filter(|h| **h).count();
        match (count >= 2, since) {
            (true, None) => since = Some(e.at),
            (false, Some(s)) => {
                total += e.at - s;
                since = None;
            }
            _ => {}
        }
    }
    if let Some(s) = since {
        total += s.elapsed();
    }
    total
}

impl Drop for VipNet {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            for c in [node.vip.take(), node.etcd.take()].into_iter().flatten() {
                signal(&c, libc::SIGCONT);
                let mut c = c;
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for m in &mut self.monitors {
            let _ = m.kill();
            let _ = m.wait();
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.capture.take() {
            let _ = t.join();
        }
        for ns in self.nodes.iter().map(|n| &n.ns).chain([&self.hub]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn signal(c: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) with the pid of a child this process has not yet
    // reaped (the Child is still owned), so the pid cannot be reused.
    unsafe { libc::kill(c.id() as libc::pid_t, sig) };
}

/// Moves the calling thread into network namespace `name` (setns(2) with
/// CLONE_NEWNET affects only the calling thread).
pub fn enter_netns(name: &str) {
    let f = File::open(format!("/run/netns/{name}")).unwrap();
    // SAFETY: f is an open namespace file descriptor for the call's length.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {name}: {}", std::io::Error::last_os_error());
}

/// A raw packet socket bound to one link, every EtherType (packet(7)).
struct PacketSocket(std::os::fd::OwnedFd);

impl PacketSocket {
    fn open(link: &str) -> PacketSocket {
        use std::os::fd::FromRawFd;
        let proto = u16::try_from(libc::ETH_P_ALL).unwrap().to_be();
        // SAFETY: plain socket(2) call; the result is checked below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto.into()) };
        assert!(
            fd >= 0,
            "packet socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd is a new socket this function owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let name = std::ffi::CString::new(link).unwrap();
        // SAFETY: name is a NUL-terminated string that outlives the call.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert!(index > 0, "no link {link}");
        let sll = sockaddr_ll(index, proto, [0; 6]);
        // SAFETY: sll is a valid sockaddr_ll for the length given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sll).cast(),
                socklen::<libc::sockaddr_ll>(),
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: tv is a valid timeval for the length given.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                socklen::<libc::timeval>(),
            )
        };
        PacketSocket(fd)
    }

    fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        (n > 0).then_some(n as usize)
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: frame is valid for reads of its length; the socket is
        // bound, so send(2) goes out on its link.
        let n = unsafe { libc::send(self.0.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            n,
            frame.len() as isize,
            "send: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn socklen<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap()
}

fn sockaddr_ll(index: u32, proto_be: u16, addr: [u8; 6]) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all zeroes is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = u16::try_from(libc::AF_PACKET).unwrap();
    sll.sll_protocol = proto_be;
    sll.sll_ifindex = index as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&addr);
    sll
}

/// The bridge as an L2 segment: frames go out of a packet socket in the
/// hub namespace, and the capture records what comes back.
impl Segment for VipNet {
    fn send_frame(&self, frame: &[u8]) -> Result<(), String> {
        let (hub, frame) = (self.hub.clone(), frame.to_vec());
        std::thread::spawn(move || {
            enter_netns(&hub);
            PacketSocket::open(BRIDGE).send(&frame);
        })
        .join()
        .map_err(|_| "sending on the bridge panicked".to_string())
    }

    fn frames_since(&self, since: Instant) -> Vec<Frame> {
        let frames = self.frames.lock().unwrap_or_else(|p| p.into_inner());
        frames.iter().filter(|f| f.at >= since).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_ts_stamps_order_events() {
        let now = Instant::now();
        let tod = Duration::from_secs_f64((local_time_of_day() - 0.5).max(0.0));
        let t = tod.as_secs();
        let (h, m, sec, us) = (t / 3600, (t % 3600) / 60, t % 60, tod.subsec_micros());
        let line = format!(
            "[2026-11-30T{h:02}:{m:02}:{sec:02}.{us:06}] Deleted 1: lo    inet 10.5.0.100/32 scope global lo"
        );
        let (at, rest) = stamped(&line, now);
        assert!(rest.starts_with("Deleted 1: lo"), "{rest}");
        let behind = now - at;
        assert!(
            behind > Duration::from_millis(400) && behind < Duration::from_millis(700),
            "{behind:?} for {line}"
        );
        // Unstamped, or a stamp far from now: the read time.
        for line in [
            "1: lo    inet 10.5.0.100/32",
            "[2026-11-30T99:99] x",
            "[garbage] y",
        ] {
            assert_eq!(stamped(line, now).0, now, "{line}");
        }
    }
}
