//! `make run`: boots a control plane of Keel nodes on one L2 segment and
//! shows a live status view; commands on stdin act on the nodes.
//!
//! usage: keel-cluster [--nodes N] [--vip IP] [--template FILE]
//!                     [--build DIR] [--dir DIR] [--accel auto|tcg|kvm]
//!                     [--memory MIB] [--append PARAMS] [--check]
//!
//! Nodes without an etcd member list (the default template) wait for a
//! bootstrap: keel-cluster asks node1 for it through its node API as soon
//! as node1's etcd waits. The status view reads each node's API (etcd
//! state and members, the VIP's holder) and its console (boot phase,
//! links) where the API does not answer yet.
//!
//! `--check` is the non-interactive run the tests use: wait until every
//! node is ready with etcd healthy and exactly one MAC answers for the
//! VIP, every node's API names that node as the holder, power the holder
//! off, wait until another MAC answers, exit 0 (or print why not and exit
//! 1).

use std::io::{BufRead, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use keel_cluster::api::{Bootstrap, Statuses};
use keel_cluster::{Cas, Cluster, Image, NodeStatus, Options, Topology};
use keel_qemu::Accel;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

const USAGE: &str = "usage: keel-cluster [--nodes N] [--vip IP] [--template FILE] [--build DIR]
                    [--dir DIR] [--accel auto|tcg|kvm] [--memory MIB] [--append PARAMS] [--check]";

const HELP: &str = "commands: off N (power button) | kill N (QEMU quit: a crash) | down N / up N (link) | freeze N / thaw N (QMP stop/cont) | restart N | quit
Ctrl-C (or quit) powers every node off gracefully and exits";

fn main() {
    match run() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("keel-cluster: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run() -> anyhow::Result<i32> {
    use lexopt::prelude::*;
    let mut nodes = 3usize;
    let mut vip: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 100);
    let mut template = PathBuf::from("examples/cluster.yaml.tmpl");
    let mut build = PathBuf::from("build");
    let mut dir: Option<PathBuf> = None;
    let mut accel = Accel::Auto;
    let mut memory = 512u32;
    let mut append = String::new();
    let mut check = false;
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("nodes") => nodes = p.value()?.parse()?,
            Long("vip") => vip = p.value()?.parse()?,
            Long("template") => template = p.value()?.into(),
            Long("build") => build = p.value()?.into(),
            Long("dir") => dir = Some(p.value()?.into()),
            Long("accel") => accel = p.value()?.parse()?,
            Long("memory") => memory = p.value()?.parse()?,
            Long("append") => append = p.value()?.string()?,
            Long("check") => check = true,
            Long("help") => {
                println!("{USAGE}\n\n{HELP}");
                return Ok(0);
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    let template = std::fs::read_to_string(&template)
        .with_context(|| format!("read the template {}", template.display()))?;
    let dir = dir.unwrap_or_else(|| build.join("run"));
    let started = Instant::now();
    let opts = Options {
        image: Image::Keel,
        build,
        dir,
        topology: Topology::new(nodes, vip)?,
        setups: Vec::new(),
        accel,
        memory_mib: memory,
        append,
    };
    // The cluster's etcd and machine CAs (made on the first run, kept in
    // the run directory) and a client certificate for the operator's
    // etcdctl.
    let cas = Cas {
        etcd: keel_cluster::pki::Ca::load_or_make(&opts.dir)?,
        machine: keel_cluster::pki::machine_ca(&opts.dir)?,
    };
    let (client_crt, client_key) = cas.etcd.client_files(&opts.dir)?;
    let ca_path = opts.dir.join("etcd-ca.crt");
    let run_dir = opts.dir.clone();
    let opts = opts.with_template(&template, &cas)?;
    let needs_bootstrap = match &opts.setups[0].config {
        Some(keel_cluster::NodeConfig::Disk(y)) => keel::config::parse(y)
            .map(|p| {
                p.config
                    .cluster
                    .etcd
                    .is_some_and(|e| e.initial_cluster.is_empty())
            })
            .unwrap_or(false),
        _ => false,
    };
    let mut cluster = Cluster::start(opts)?;
    let ports: Vec<u16> = (1..=nodes).filter_map(|n| cluster.api_port(n)).collect();
    let (creds, talosconfig) = keel_cluster::pki::talosconfig(
        &run_dir,
        &cas.machine,
        ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
    )?;
    let statuses = keel_cluster::api::watch(&creds, &ports)?;
    let bootstrap = if needs_bootstrap {
        Some(keel_cluster::api::bootstrap(
            &creds,
            ports[0],
            1,
            statuses.clone(),
        )?)
    } else {
        None
    };
    // SAFETY: installs a handler that only stores to an atomic, which is
    // async-signal-safe (signal-safety(7)).
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
    // The probe's note can carry QEMU's stderr: its first line says why.
    let accel_line = match cluster.accel_note.as_deref().and_then(|n| n.lines().next()) {
        Some(why) => format!("{:?} ({why})", cluster.accel),
        None => format!("{:?}", cluster.accel),
    };
    println!("keel-cluster: {nodes} nodes, VIP {vip}, accelerator {accel_line}");
    for n in 1..=nodes {
        println!("  node{n} console: {}", cluster.console_path(n).display());
    }
    println!(
        "  etcd CA: {} (etcdctl client certificate: {}, {})",
        ca_path.display(),
        client_crt.display(),
        client_key.display()
    );
    println!(
        "  node API: target/x86_64-unknown-linux-musl/release/keel --talosconfig {} status (every node; --nodes 127.0.0.1:PORT for one: {})",
        talosconfig.display(),
        ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("node{} {p}", i + 1))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if bootstrap.is_some() {
        println!("  etcd: no member list: node1 is bootstrapped through its node API once its etcd waits for it");
    }
    let view = View {
        statuses,
        bootstrap,
    };
    let code = if check {
        match check_run(&cluster, &view, vip, started) {
            Ok(()) => {
                println!("check: ok");
                0
            }
            Err(e) => {
                println!("check: FAILED: {e:#}");
                for n in 1..=nodes {
                    println!("  node{n}: {}", view.status(&cluster, n));
                    if let Some(e) = view.statuses.error(n) {
                        println!("    node API: {e}");
                    }
                }
                if let Some(b) = &view.bootstrap {
                    println!("  {}", b.said());
                }
                1
            }
        }
    } else {
        interactive(&mut cluster, &view, vip, started)?;
        0
    };
    println!("keel-cluster: powering every node off");
    cluster.shutdown();
    Ok(code)
}

/// What the status view reads besides the consoles.
struct View {
    statuses: Statuses,
    bootstrap: Option<Bootstrap>,
}

impl View {
    /// Node `n`'s console status, with etcd and the VIP from its API when
    /// it answers (the API knows learners, members, the holder).
    fn status(&self, cluster: &Cluster, n: usize) -> NodeStatus {
        let mut s = cluster.status(n);
        if !cluster.running(n) {
            return s;
        }
        if let Some(api) = self.statuses.get(n) {
            let e = &api.etcd;
            s.etcd = match (e.state.as_str(), e.members.len()) {
                ("healthy", m) if m > 0 => format!("healthy ({m} members)"),
                (state, _) => state.to_owned(),
            };
            if let Some(v) = api.vips.first() {
                s.vip = match (&v.role[..], &v.holder) {
                    ("holder", _) => "holder".to_owned(),
                    (role, Some(h)) => format!("{role} (held by {h})"),
                    (role, None) => role.to_owned(),
                };
            }
        }
        s
    }

    /// The holder each running node's API names for the first VIP.
    fn holders(&self, cluster: &Cluster) -> Vec<Option<String>> {
        (1..=cluster.len())
            .filter(|&n| cluster.running(n))
            .map(|n| {
                self.statuses
                    .get(n)
                    .and_then(|s| s.vips.first().and_then(|v| v.holder.clone()))
            })
            .collect()
    }
}

/// Redraws the status a few times a second and runs commands from stdin
/// until `quit`, Ctrl-C or end of input.
fn interactive(
    cluster: &mut Cluster,
    view: &View,
    vip: Ipv4Addr,
    started: Instant,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut last_msg = String::new();
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Ok(());
        }
        let macs = cluster.who_has(vip, Duration::from_millis(300));
        let answer = match macs[..] {
            [] => "nobody".to_string(),
            [m] => format!("{m} ({})", node_name(cluster, m)),
            _ => format!("{} MACs at once: {macs:?}", macs.len()),
        };
        let mut screen = format!(
            "\x1b[H\x1b[2Jkeel-cluster  {:.0} s since start\nVIP {vip} answered by {answer}\n\n",
            started.elapsed().as_secs_f64()
        );
        for n in 1..=cluster.len() {
            let node = &cluster.opts.topology.nodes[n - 1];
            screen += &format!(
                "  node{n}  {}  {:<10} {}\n",
                node.mac,
                node.address,
                view.status(cluster, n)
            );
        }
        if let Some(b) = &view.bootstrap {
            screen += &format!("\n{}\n", b.said());
        }
        screen += &format!("\n{HELP}\n{last_msg}\n> ");
        print!("{screen}");
        let _ = std::io::stdout().flush();
        match rx.try_recv() {
            Ok(line) => {
                let line = line.trim().to_string();
                if line == "quit" || line == "q" {
                    return Ok(());
                }
                last_msg = match command(cluster, &line) {
                    Ok(done) => done,
                    Err(e) => format!("{line}: {e:#}"),
                };
            }
            Err(mpsc::TryRecvError::Disconnected) => {
                // No terminal (stdin closed): keep showing the status.
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(mpsc::TryRecvError::Empty) => {}
        }
    }
}

fn node_name(cluster: &Cluster, m: keel_switch::MacAddr) -> String {
    cluster
        .node_of(m)
        .map_or("not a node".into(), |n| format!("node{n}"))
}

fn command(cluster: &mut Cluster, line: &str) -> anyhow::Result<String> {
    let mut words = line.split_whitespace();
    let (Some(verb), Some(n)) = (words.next(), words.next()) else {
        if line.is_empty() {
            return Ok(String::new());
        }
        bail!("expected a command and a node number (see the commands above)");
    };
    let n: usize = n
        .trim_start_matches("node")
        .parse()
        .context("node number")?;
    match verb {
        "off" => cluster.power_off(n)?,
        "kill" => cluster.kill(n)?,
        "down" => cluster.set_link(n, false)?,
        "up" => cluster.set_link(n, true)?,
        "freeze" => cluster.freeze(n, true)?,
        "thaw" => cluster.freeze(n, false)?,
        "restart" => cluster.restart(n)?,
        other => bail!("unknown command {other:?} (see the commands above)"),
    }
    Ok(format!("done: {line}"))
}

/// The non-interactive scenario (`--check`).
fn check_run(
    cluster: &Cluster,
    view: &View,
    vip: Ipv4Addr,
    started: Instant,
) -> anyhow::Result<()> {
    let all = 1..=cluster.len();
    // The VIP is probed from the start too, and its first answer said when
    // it comes: a VIP answering before the last node's etcd is healthy is
    // what a client sees (and what `make bench-run` times, as it does the
    // floor's).
    let mut answered = false;
    wait(
        "every node ready with etcd healthy",
        Duration::from_secs(300),
        || {
            if !answered {
                if let [m] = cluster.who_has(vip, Duration::from_millis(300))[..] {
                    if let Some(h) = cluster.node_of(m) {
                        answered = true;
                        println!(
                            "check: VIP {vip} first answered by node{h} ({} ms since start)",
                            started.elapsed().as_millis()
                        );
                    }
                }
            }
            all.clone().all(|n| {
                let s = cluster.status(n);
                s.phase == "ready" && s.etcd == "healthy"
            })
        },
    )?;
    println!(
        "check: all {} nodes ready, etcd healthy ({} ms since start)",
        cluster.len(),
        started.elapsed().as_millis()
    );
    let mut holder = None;
    wait(
        "exactly one MAC answering for the VIP",
        Duration::from_secs(120),
        || {
            let macs = cluster.who_has(vip, Duration::from_millis(300));
            holder = match macs[..] {
                [m] => cluster.node_of(m),
                _ => None,
            };
            holder.is_some()
        },
    )?;
    let h = holder.expect("set by the wait");
    println!(
        "check: VIP {vip} answered by node{h} ({} ms since start)",
        started.elapsed().as_millis()
    );
    let want = format!("node{h}/node{h}");
    wait(
        "every node's API naming the VIP's holder",
        Duration::from_secs(60),
        || {
            view.holders(cluster)
                .iter()
                .all(|x| x.as_deref() == Some(want.as_str()))
        },
    )?;
    println!("check: every node's API names {want} as the VIP's holder");
    let t = Instant::now();
    cluster.power_off(h)?;
    let mut new = None;
    wait(
        "another node answering after the power-off",
        Duration::from_secs(120),
        || {
            let macs = cluster.who_has(vip, Duration::from_millis(200));
            new = match macs[..] {
                [m] => cluster.node_of(m).filter(|&n| n != h),
                _ => None,
            };
            new.is_some()
        },
    )?;
    println!(
        "check: node{h} powered off; VIP {vip} answered by node{} after {} ms",
        new.expect("set by the wait"),
        t.elapsed().as_millis()
    );
    Ok(())
}

fn wait(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!("interrupted while waiting for {what}");
        }
        if f() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("no {what} within {timeout:?}")
}
