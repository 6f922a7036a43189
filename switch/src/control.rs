//! The control socket: a line protocol on a unix stream socket
//! (`DIR/control`) for tools that ask a running switch questions, such as
//! the `make run` status view ("which MAC answers ARP for the VIP now?").
//!
//! A client sends one command per line; every answer is zero or more lines
//! followed by a line `end`. A failed command answers `error <message>`
//! then `end`. The connection stays open for more commands until the client
//! closes it (or is idle for a minute).
//!
//! | command | answer lines |
//! | --- | --- |
//! | `who-has <ipv4> [<ms>]` | `<mac> port=<i> after=<ms>ms` per ARP reply for the address within `<ms>` (default 500, at most 10000) milliseconds of a probe; none if nobody answers |
//! | `macs` | `<mac> port=<i>` per learned MAC (port = number of ports for this host) |
//! | `ports` | `port <i> switch=<port socket> vm=<vm socket>` |
//! | `stats` | `port <i> rx=<frames> tx=<frames> no-peer=<frames> dropped=<frames>`, then `injected=<n> errors=<n>`, then `error-text <message>` per kept error |
//! | `help` | one line per command |
//!
//! The first word of a `who-has` line is the MAC, so a client wanting only
//! MACs splits on whitespace. Example with `socat`:
//!
//! ```text
//! $ echo 'who-has 10.5.0.100' | socat - UNIX-CONNECT:build/run/switch/control
//! 52:54:00:12:34:02 port=1 after=3ms
//! end
//! ```

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::error::SwitchError;
use crate::switch::{remove_stale, Inner};
use crate::sys;

/// `who-has` waits this long for replies unless told otherwise.
pub const DEFAULT_WHO_HAS_MS: u64 = 500;
/// The longest `who-has` wait a client may ask for.
pub const MAX_WHO_HAS_MS: u64 = 10_000;
/// Connections served at once; more are told `error busy`.
const MAX_CLIENTS: usize = 16;
/// An idle client is disconnected after this long.
const IDLE: Duration = Duration::from_secs(60);
/// The longest command line accepted.
const MAX_LINE: usize = 1024;

const HELP: &[&str] = &[
    "who-has <ipv4> [<ms>]  MACs answering ARP for the address: '<mac> port=<i> after=<ms>ms'",
    "macs                   learned MACs: '<mac> port=<i>'",
    "ports                  'port <i> switch=<socket> vm=<socket>'",
    "stats                  per-port counters, injected frames, errors",
    "help                   this text",
];

/// Sends one command to a switch's control socket and returns the answer
/// lines (without the final `end`). An `error ...` answer becomes
/// [`SwitchError::ControlReply`].
pub fn request(path: &Path, command: &str, timeout: Duration) -> Result<Vec<String>, SwitchError> {
    let io_err = |source| SwitchError::Control {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(io_err)?;
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    writeln!(stream, "{}", command.trim()).map_err(io_err)?;
    let mut lines = Vec::new();
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(io_err)?;
        if line == "end" {
            return match lines.iter().find_map(|l: &String| l.strip_prefix("error ")) {
                Some(message) => Err(SwitchError::ControlReply {
                    path: path.to_path_buf(),
                    message: message.to_owned(),
                }),
                None => Ok(lines),
            };
        }
        lines.push(line);
    }
    Err(io_err(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "connection closed before 'end'",
    )))
}

/// The accepting side, owned by the [`Switch`](crate::Switch). Dropping it
/// stops accepting and removes the socket; clients being served finish
/// their current command.
pub(crate) struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    waker: UnixDatagram,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub(crate) fn start(inner: Arc<Inner>, path: PathBuf) -> Result<Server, SwitchError> {
        remove_stale(&path, |p| UnixStream::connect(p).is_ok())?;
        let listener = UnixListener::bind(&path).map_err(|source| SwitchError::Bind {
            path: path.clone(),
            source,
        })?;
        let setup = |source| SwitchError::Setup {
            path: path.clone(),
            source,
        };
        let (waker, wake_rx) = UnixDatagram::pair().map_err(setup)?;
        let nonblocking = listener
            .set_nonblocking(true)
            .and_then(|()| waker.set_nonblocking(true))
            .and_then(|()| wake_rx.set_nonblocking(true));
        if let Err(e) = nonblocking {
            let _ = std::fs::remove_file(&path);
            return Err(setup(e));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let path = path.clone();
            thread::Builder::new()
                .name("keel-switch-control".into())
                .spawn(move || accept_loop(inner, listener, wake_rx, stop, path))
        };
        match thread {
            Ok(t) => Ok(Server {
                path,
                stop,
                waker,
                thread: Some(t),
            }),
            Err(source) => {
                let _ = std::fs::remove_file(&path);
                Err(SwitchError::Thread { source })
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.send(b"w");
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(
    inner: Arc<Inner>,
    listener: UnixListener,
    wake_rx: UnixDatagram,
    stop: Arc<AtomicBool>,
    path: PathBuf,
) {
    let clients = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        let mut fds = [
            sys::pollfd(sys::raw(&wake_rx), sys::POLLIN),
            sys::pollfd(sys::raw(&listener), sys::POLLIN),
        ];
        if let Err(e) = sys::poll(&mut fds, None) {
            log::warn!("control socket {}: poll: {e}", path.display());
            thread::sleep(Duration::from_millis(100));
            continue;
        }
        if !sys::ready(&fds[1], sys::POLLIN) {
            continue;
        }
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                log::warn!("control socket {}: accept: {e}", path.display());
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if clients.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            clients.fetch_sub(1, Ordering::SeqCst);
            let mut s = stream;
            let _ = s.write_all(b"error busy\nend\n");
            continue;
        }
        let (inner, clients2) = (inner.clone(), clients.clone());
        let spawned = thread::Builder::new()
            .name("keel-switch-client".into())
            .spawn(move || {
                if let Err(e) = serve(&inner, stream) {
                    log::debug!("control client: {e}");
                }
                clients2.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            clients.fetch_sub(1, Ordering::SeqCst);
            log::warn!("control socket {}: starting a thread: {e}", path.display());
        }
    }
}

fn serve(inner: &Inner, stream: UnixStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IDLE))?;
    let mut out = io::BufWriter::new(stream.try_clone()?);
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        let answer = if line.len() > MAX_LINE {
            vec![format!("error command longer than {MAX_LINE} bytes")]
        } else {
            answer(inner, line.trim())
        };
        if answer.is_empty() && line.trim().is_empty() {
            continue;
        }
        for l in answer {
            writeln!(out, "{l}")?;
        }
        writeln!(out, "end")?;
        out.flush()?;
        if line.len() > MAX_LINE {
            return Ok(());
        }
    }
}

/// The answer lines to one command (without `end`).
fn answer(inner: &Inner, command: &str) -> Vec<String> {
    let mut words = command.split_whitespace();
    let Some(verb) = words.next() else {
        return Vec::new();
    };
    let args: Vec<&str> = words.collect();
    match (verb, args.as_slice()) {
        ("who-has", [ip, rest @ ..]) if rest.len() <= 1 => {
            let Ok(ip) = ip.parse::<Ipv4Addr>() else {
                return vec![format!("error not an IPv4 address: {ip:?}")];
            };
            let ms = match rest.first().map(|m| m.parse::<u64>()) {
                None => DEFAULT_WHO_HAS_MS,
                Some(Ok(ms)) if ms <= MAX_WHO_HAS_MS => ms,
                Some(_) => {
                    return vec![format!(
                        "error wait must be 0 to {MAX_WHO_HAS_MS} milliseconds"
                    )]
                }
            };
            let asked = Instant::now();
            inner
                .who_has(ip, Duration::from_millis(ms))
                .iter()
                .filter_map(|f| {
                    let arp = f.arp()?;
                    let after = f.at.saturating_duration_since(asked).as_millis();
                    Some(format!(
                        "{} port={} after={after}ms",
                        arp.sender_mac, f.port
                    ))
                })
                .collect()
        }
        ("macs", []) => inner
            .mac_table()
            .iter()
            .map(|(mac, port)| format!("{mac} port={port}"))
            .collect(),
        ("ports", []) => (0..inner.ports())
            .map(|i| {
                format!(
                    "port {i} switch={} vm={}",
                    inner.port_path(i).display(),
                    inner.vm_path(i).display()
                )
            })
            .collect(),
        ("stats", []) => {
            let s = inner.stats();
            let mut lines: Vec<String> = s
                .ports
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    format!(
                        "port {i} rx={} tx={} no-peer={} dropped={}",
                        p.rx_frames, p.tx_frames, p.tx_no_peer, p.tx_dropped
                    )
                })
                .collect();
            lines.push(format!("injected={} errors={}", s.injected, s.errors_total));
            lines.extend(s.errors.iter().map(|e| format!("error-text {e}")));
            lines
        }
        ("help", []) => HELP.iter().map(|s| s.to_string()).collect(),
        ("who-has" | "macs" | "ports" | "stats" | "help", _) => {
            vec![format!("error wrong arguments for {verb}; try help")]
        }
        _ => vec![format!("error unknown command {verb:?}; try help")],
    }
}
