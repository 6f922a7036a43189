//! `keel-switch`: run a learning Ethernet switch for QEMU VMs on unix
//! datagram sockets until SIGINT or SIGTERM. See the `keel_switch` crate
//! documentation for how VMs attach, and `keel_switch::control` for the
//! control socket's line protocol.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use keel_switch::{Frame, Switch, SwitchOptions};

const USAGE: &str = "\
usage: keel-switch --dir DIR --ports N [--log FILE] [--verbose]

Runs a learning Ethernet switch for N QEMU VMs until SIGINT or SIGTERM.
VM i attaches with
  -netdev dgram,id=n0,local.type=unix,local.path=DIR/vm<i>.sock,remote.type=unix,remote.path=DIR/port<i>.sock
(the exact values are printed at start).

options:
  --dir DIR      directory for the sockets (created if missing)
  --ports N      number of VM ports (1 to 64)
  --log FILE     write every ARP frame as a timestamped line to FILE ('-' for
                 stdout): '<unix time> +<seconds since start>s port=<i|host> <arp>'
  --verbose      also log MAC moves to stderr
  -h, --help     this text

control socket DIR/control, one command per line, each answer ends with 'end':
  who-has <ipv4> [<ms>]   '<mac> port=<i> after=<ms>ms' per ARP reply
  macs | ports | stats | help";

struct Args {
    dir: PathBuf,
    ports: usize,
    log: Option<PathBuf>,
    verbose: bool,
}

fn parse_args() -> Result<Option<Args>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let (mut dir, mut ports, mut log, mut verbose) = (None, None, None, false);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("dir") => dir = Some(PathBuf::from(parser.value()?)),
            Long("ports") => ports = Some(parser.value()?.parse::<usize>()?),
            Long("log") => log = Some(PathBuf::from(parser.value()?)),
            Long("verbose") | Short('v') => verbose = true,
            Long("help") | Short('h') => return Ok(None),
            _ => return Err(arg.unexpected()),
        }
    }
    let dir = dir.ok_or("--dir is required")?;
    let ports = ports.ok_or("--ports is required")?;
    if !(1..=64).contains(&ports) {
        return Err("--ports must be 1 to 64".into());
    }
    Ok(Some(Args {
        dir,
        ports,
        log,
        verbose,
    }))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("keel-switch: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let level = if args.verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Warn
    };
    if log::set_logger(&STDERR_LOGGER).is_ok() {
        log::set_max_level(level);
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel-switch: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Block the stop signals before any thread starts, so every thread
    // inherits the mask and only `sigwait` below sees them.
    let signals = stop_signals();
    block(&signals)?;
    let switch = Switch::start_with(
        &args.dir,
        args.ports,
        SwitchOptions {
            control: true,
            ..SwitchOptions::default()
        },
    )?;
    let (start, wall) = (Instant::now(), SystemTime::now());
    if let Some(path) = &args.log {
        let out: Box<dyn Write + Send> = if path.as_os_str() == "-" {
            Box::new(io::stdout())
        } else {
            Box::new(File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?)
        };
        let frames = switch.subscribe();
        let host = switch.host_port();
        thread::Builder::new()
            .name("arp-log".into())
            .spawn(move || log_arp(frames, out, host, start, wall))?;
    }
    println!(
        "keel-switch: {} ports in {}",
        switch.ports(),
        switch.dir().display()
    );
    for i in 0..switch.ports() {
        println!("port {i}: -netdev {}", switch.netdev(&format!("n{i}"), i));
    }
    if let Some(c) = switch.control_path() {
        println!("control: {}", c.display());
    }
    io::stdout().flush()?;
    let signal = wait(&signals)?;
    let stats = switch.stats();
    drop(switch);
    eprintln!(
        "keel-switch: signal {signal}, stopping; injected={} errors={}",
        stats.injected, stats.errors_total
    );
    for (i, p) in stats.ports.iter().enumerate() {
        eprintln!(
            "port {i}: rx={} tx={} no-peer={} dropped={}",
            p.rx_frames, p.tx_frames, p.tx_no_peer, p.tx_dropped
        );
    }
    Ok(())
}

fn log_arp(
    frames: Receiver<Frame>,
    mut out: Box<dyn Write + Send>,
    host: usize,
    start: Instant,
    wall: SystemTime,
) {
    for f in frames {
        let Some(arp) = f.arp() else { continue };
        let since = f.at.saturating_duration_since(start);
        let unix = (wall + since)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let port = if f.port == host {
            "host".to_string()
        } else {
            f.port.to_string()
        };
        let written = writeln!(
            out,
            "{unix:.6} +{:.6}s port={port} {arp}",
            since.as_secs_f64()
        )
        .and_then(|()| out.flush());
        if let Err(e) = written {
            log::warn!("writing the ARP log: {e}; no more ARP logging");
            return;
        }
    }
}

fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set it is given; the zeroed value
    // is only a placeholder it overwrites. sigaddset with valid signal
    // numbers on an initialised set cannot fail.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

fn block(set: &libc::sigset_t) -> io::Result<()> {
    // SAFETY: `set` is an initialised signal set; a null old-set pointer is
    // allowed. Only this thread's mask changes (threads started later
    // inherit it).
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Waits for one of the (blocked) signals in `set` and returns its number.
fn wait(set: &libc::sigset_t) -> io::Result<libc::c_int> {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is an initialised signal set blocked in every thread;
    // `sig` is a valid place for the result.
    let rc = unsafe { libc::sigwait(set, &mut sig) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(sig)
}

/// `log` records to stderr, prefixed with the program name.
struct StderrLogger;

static STDERR_LOGGER: StderrLogger = StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            eprintln!("keel-switch: {}: {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}
