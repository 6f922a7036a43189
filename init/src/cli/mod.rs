//! The operator CLI: what the binary does when it is neither PID 1 nor the
//! kernel's modprobe helper.
//!
//! Arguments are parsed with `lexopt` rather than clap: the same binary is
//! PID 1 inside a small initramfs, and a handful of subcommands do not
//! justify clap's size.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

mod describe;
mod gen;
mod node;

use crate::cmdline::Cmdline;
use crate::config;

const USAGE: &str = "\
usage: keel <command> [options]

commands:
  cmdline [--file FILE]   print the parsed kernel command line
                          (default FILE: /proc/cmdline)
  validate FILE           check a machine config (Talos v1alpha1) as the
                          node would read it; FILE `-` is stdin.
                          Exit 0 if valid, 1 if not (every error printed)
  links [--sysfs DIR] [--ifnames 0|1]
                          print every network link: kernel name, chosen
                          predictable name, each candidate (onboard, slot,
                          path, mac) and why, driver, busPath, pciID, MACs.
                          DIR defaults to /sys; --ifnames defaults to
                          net.ifnames in /proc/cmdline without --sysfs, else 1
  vip --ip IP --link NAME [--endpoint URL] [--ttl SECS] [--name ID] [--state FILE]
                          run one VIP election by hand against an etcd
                          cluster (as PID 1 does on a control-plane node):
                          hold IP on link NAME while elected; SIGTERM or
                          ctrl-c releases and resigns. Defaults: URL
                          http://127.0.0.1:2379, SECS 5, ID the hostname,
                          FILE (the leases it granted, to resign only its
                          own stale campaigns) /run/keel/vip-leases
  gen [--out DIR] [--name NAME] [--endpoint URL] [--force]
                          write a machine CA, an etcd CA, an admin
                          talosconfig and a control-plane config skeleton
                          (DIR/talosconfig, DIR/controlplane.yaml), as
                          talosctl gen config does. Defaults: DIR ., NAME
                          keel, URL https://10.5.0.100:6443
  version                 print the version
  help                    print this help

node API (a Talos user's talosconfig works unchanged):
  keel [--talosconfig FILE] [--context NAME] --nodes IP[,IP] [--json] COMMAND
  COMMAND is one of:
    status                boot phases, config, links, routes, etcd, VIPs
    logs [-f] [--tail N|all] [--etcd]
                          Keel's (or etcd's) last N lines (default 50);
                          -f follows one node
    bootstrap             start the etcd cluster on this one node
    reboot, shutdown      graceful: the VIPs are released first
  FILE defaults to $TALOSCONFIG, else ~/.talos/config; without --nodes the
  context's nodes (else its endpoints) are asked. The API listens on port
  50443 of every node address.

As PID 1 keel boots the node; started as `modprobe` it loads kernel modules.";

/// Runs the CLI; returns the process exit code: 0 success, 1 an invalid
/// (or unreadable) config for `validate`, 2 a usage error.
pub fn main(args: Vec<OsString>) -> i32 {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keel: {e:#}");
            2
        }
    }
}

fn run(args: Vec<OsString>) -> anyhow::Result<i32> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_iter(args);
    let mut global = node::Global::default();
    let command = loop {
        match parser.next()? {
            Some(Value(v)) => break v.string()?,
            Some(Long("talosconfig")) => global.talosconfig = Some(parser.value()?.into()),
            Some(Long("context")) => global.context = Some(parser.value()?.string()?),
            Some(Long("nodes")) | Some(Short('n')) => global.nodes = node::split(parser.value()?)?,
            Some(Long("json")) => global.json = true,
            Some(Long("help")) | Some(Short('h')) | None => {
                println!("{USAGE}");
                return Ok(0);
            }
            Some(other) => return Err(other.unexpected().into()),
        }
    };
    if node::COMMANDS.contains(&command.as_str()) {
        return node::run(global, &command, &mut parser);
    }
    match command.as_str() {
        "cmdline" => {
            let mut file = PathBuf::from("/proc/cmdline");
            while let Some(arg) = parser.next()? {
                match arg {
                    Long("file") | Short('f') => file = parser.value()?.into(),
                    _ => return Err(arg.unexpected().into()),
                }
            }
            let c = Cmdline::read(&file)?;
            print!("{c}");
            Ok(0)
        }
        "validate" => {
            let mut file: Option<PathBuf> = None;
            while let Some(arg) = parser.next()? {
                match arg {
                    Value(v) if file.is_none() => file = Some(v.into()),
                    _ => return Err(arg.unexpected().into()),
                }
            }
            match file {
                Some(file) => Ok(validate(&file)),
                None => anyhow::bail!("validate: missing FILE\n\n{USAGE}"),
            }
        }
        "links" => {
            let mut sysfs: Option<PathBuf> = None;
            let mut ifnames: Option<bool> = None;
            while let Some(arg) = parser.next()? {
                match arg {
                    Long("sysfs") => sysfs = Some(parser.value()?.into()),
                    Long("ifnames") => {
                        ifnames = Some(match parser.value()?.string()?.as_str() {
                            "0" => false,
                            "1" => true,
                            other => anyhow::bail!("--ifnames: expected 0 or 1, got {other:?}"),
                        })
                    }
                    _ => return Err(arg.unexpected().into()),
                }
            }
            // Without --sysfs this is the running node: follow its command
            // line, as the boot sequence does.
            let ifnames = ifnames.unwrap_or_else(|| {
                sysfs.is_some()
                    || Cmdline::read(Path::new("/proc/cmdline"))
                        .map(|c| c.get("net.ifnames") != Some("0"))
                        .unwrap_or(true)
            });
            let root = sysfs.unwrap_or_else(|| PathBuf::from("/sys"));
            let links = crate::net::sysfs::read_links(&root);
            if links.is_empty() {
                anyhow::bail!("no links under {}/class/net", root.display());
            }
            let text: Vec<String> = links
                .iter()
                .map(|l| crate::net::naming::describe(l, ifnames))
                .collect();
            print!("{}", text.join("\n"));
            Ok(0)
        }
        "vip" => vip(&mut parser),
        "gen" => {
            let mut o = gen::Options {
                out: PathBuf::from("."),
                name: "keel".to_owned(),
                endpoint: "https://10.5.0.100:6443".to_owned(),
                force: false,
            };
            while let Some(arg) = parser.next()? {
                match arg {
                    Long("out") => o.out = parser.value()?.into(),
                    Long("name") => o.name = parser.value()?.string()?,
                    Long("endpoint") => o.endpoint = parser.value()?.string()?,
                    Long("force") => o.force = true,
                    _ => return Err(arg.unexpected().into()),
                }
            }
            for f in gen::generate(&o)? {
                println!("wrote {}", f.display());
            }
            Ok(0)
        }
        "version" | "--version" => {
            println!("keel {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        "help" => {
            println!("{USAGE}");
            Ok(0)
        }
        other => anyhow::bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

/// `keel validate FILE`: the summary on stdout and warnings on stderr when
/// valid (0); every error on stderr, one per line, when not (1).
fn validate(file: &Path) -> i32 {
    let name = file.display();
    let read = if file == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).map(|_| buf)
    } else {
        std::fs::read(file)
    };
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("{name}: cannot read: {e}");
            return 1;
        }
    };
    match config::parse_bytes(&bytes) {
        Ok(parsed) => {
            for warning in &parsed.warnings {
                eprintln!("{name}: warning: {warning}");
            }
            for line in describe::describe(&name.to_string(), &parsed) {
                println!("{line}");
            }
            0
        }
        Err(errors) => {
            for error in &errors {
                eprintln!("{name}: {error}");
            }
            let n = errors.len();
            let s = if n == 1 { "" } else { "s" };
            eprintln!("{name}: invalid config: {n} error{s}");
            1
        }
    }
}

/// `keel vip`: one election outside PID 1 (debugging a cluster by hand,
/// and the host tests, which run one per network namespace).
fn vip(parser: &mut lexopt::Parser) -> anyhow::Result<i32> {
    use lexopt::prelude::*;
    let mut ip: Option<std::net::IpAddr> = None;
    let mut link: Option<String> = None;
    let mut endpoint = "http://127.0.0.1:2379".to_string();
    let mut ttl = crate::config::types::VipTtl::default().seconds();
    let mut identity: Option<String> = None;
    let mut record = std::path::PathBuf::from(crate::vip::record::DEFAULT);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("state") => record = parser.value()?.into(),
            Long("ip") => ip = Some(parser.value()?.string()?.parse()?),
            Long("link") => link = Some(parser.value()?.string()?),
            Long("endpoint") => endpoint = parser.value()?.string()?,
            Long("ttl") => {
                let v: u64 = parser.value()?.string()?.parse()?;
                ttl = crate::config::types::VipTtl::try_from(v)
                    .map_err(|e| anyhow::anyhow!("--ttl: {e}"))?
                    .seconds();
            }
            Long("name") => identity = Some(parser.value()?.string()?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let (Some(ip), Some(link)) = (ip, link) else {
        anyhow::bail!("vip: --ip and --link are required\n\n{USAGE}");
    };
    let identity = match identity {
        Some(i) => i,
        None => nix::unistd::gethostname()?.to_string_lossy().into_owned(),
    };
    log_to_stderr();
    let params = crate::vip::Params {
        record,
        ip,
        ttl: std::time::Duration::from_secs(ttl.into()),
        link,
        identity,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let (_healthy_tx, etcd_healthy) = tokio::sync::watch::channel(true);
        let (state_tx, mut state) =
            tokio::sync::watch::channel(crate::vip::VipState::WaitingForEtcd);
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let (watchdog, paused) = crate::vip::pause::Watchdog::new("/sys".into());
        tokio::spawn(watchdog.clone().run());
        let inputs = crate::vip::Inputs {
            etcd_healthy,
            stop,
            paused,
            watchdog: Some(watchdog),
        };
        let mut task = tokio::spawn(crate::vip::run(
            params, endpoint, None, None, inputs, state_tx,
        ));
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                r = state.changed() => {
                    if r.is_err() { break; }
                    log::info!("vip state: {}", *state.borrow_and_update());
                }
                _ = &mut task => return Ok(0),
            }
        }
        let _ = stop_tx.send(true);
        let _ = task.await;
        Ok(0)
    })
}

/// `log` records to stderr with the monotonic time (seconds since boot,
/// like the kernel's), so lines from several processes line up.
fn log_to_stderr() {
    struct Stderr;
    impl log::Log for Stderr {
        fn enabled(&self, m: &log::Metadata) -> bool {
            m.level() <= log::Level::Info && m.target().starts_with("keel")
        }
        fn log(&self, r: &log::Record) {
            if self.enabled(r.metadata()) {
                let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
                    .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
                    .unwrap_or_default();
                eprintln!("[{t:12.6}] {:5} {}", r.level(), r.args());
            }
        }
        fn flush(&self) {}
    }
    static LOGGER: Stderr = Stderr;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}
