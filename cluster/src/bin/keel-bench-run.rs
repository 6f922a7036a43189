//! `make bench-run`: how long `make run` takes, with the artifacts built,
//! until the VIP answers ARP — against the floor on this machine: the same
//! QEMU nodes on the same switch, booting the same kernel into an
//! initramfs with only busybox and etcd (`keel-image --floor`), where node
//! 1 adds the VIP as soon as its etcd member is healthy. The floor's etcd
//! runs with TLS as Keel's does, from certificates the bench issues and
//! appends to each node's initramfs (`keel_cluster::floor`).
//!
//! usage: keel-bench-run [--build DIR] [--rounds N] [--nodes N] [--vip IP]
//!                       [--accel auto|tcg|kvm] [--memory MIB] [--template FILE]
//!
//! `--template` is passed to `make run` (default: its own,
//! examples/cluster.yaml.tmpl: the cluster forms by a bootstrap request;
//! examples/cluster-static.yaml.tmpl: from a static member list). The
//! floor always starts its static cluster.
//!
//! Each round runs Keel, then the floor, one cluster at a time (three VMs
//! under TCG saturate two cores). Keel's side is the real `make run
//! RUN_ARGS=--check` (its own probes of the switch say when the VIP
//! answered); the floor is booted through the same `keel_cluster::Cluster`
//! and probed the same way. Consoles stay in `<build>/bench-run/`.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use keel_cluster::{Cluster, Image, NodeSetup, Options, Topology};
use keel_qemu::Accel;

const USAGE: &str = "usage: keel-bench-run [--build DIR] [--rounds N] [--nodes N] [--vip IP]
                      [--accel auto|tcg|kvm] [--memory MIB] [--template FILE]";

struct Args {
    build: PathBuf,
    rounds: usize,
    nodes: usize,
    vip: Ipv4Addr,
    accel: Accel,
    memory: u32,
    template: Option<PathBuf>,
}

/// One run's milestones, from its start.
#[derive(Debug, Default, Clone, Copy)]
struct Times {
    /// `make run` only: until keel-cluster had started its nodes.
    nodes_started: Option<Duration>,
    /// Every node's etcd member healthy.
    etcd: Duration,
    /// Exactly one MAC answering ARP for the VIP.
    vip: Duration,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("keel-bench-run: {e:#}");
        std::process::exit(1);
    }
}

fn parse_args() -> anyhow::Result<Args> {
    use lexopt::prelude::*;
    let mut a = Args {
        build: PathBuf::from("build"),
        rounds: 3,
        nodes: 3,
        vip: Ipv4Addr::new(10, 5, 0, 100),
        accel: Accel::Auto,
        memory: 512,
        template: None,
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("build") => a.build = p.value()?.into(),
            Long("rounds") => a.rounds = p.value()?.parse()?,
            Long("nodes") => a.nodes = p.value()?.parse()?,
            Long("vip") => a.vip = p.value()?.parse()?,
            Long("accel") => a.accel = p.value()?.parse()?,
            Long("memory") => a.memory = p.value()?.parse()?,
            Long("template") => a.template = Some(p.value()?.into()),
            Long("help") => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    if a.rounds == 0 {
        bail!("--rounds 0: expected at least one round");
    }
    Ok(a)
}

fn run() -> anyhow::Result<()> {
    let args = parse_args()?;
    let out = args.build.join("bench-run");
    let (mut keel, mut floor) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        let k = keel_round(&args, &fresh_dir(&out.join(format!("keel-{round}")))?)
            .with_context(|| format!("round {round}: make run"))?;
        println!(
            "round {round}: keel   make run → nodes started {}, etcd healthy on all {}, VIP answering {}",
            secs(k.nodes_started.unwrap_or_default()),
            secs(k.etcd),
            secs(k.vip)
        );
        keel.push(k);
        let f = floor_round(&args, &fresh_dir(&out.join(format!("floor-{round}")))?)
            .with_context(|| format!("round {round}: floor"))?;
        println!(
            "round {round}: floor  nodes started → etcd healthy on all {}, VIP answering {}  (Keel / floor from the nodes' start: {:.2}x)",
            secs(f.etcd),
            secs(f.vip),
            ratio(k.vip.saturating_sub(k.nodes_started.unwrap_or_default()), f.vip)
        );
        floor.push(f);
    }
    let med = |v: &[Times], f: &dyn Fn(&Times) -> Duration| median(v.iter().map(f).collect());
    let started = |t: &Times| t.nodes_started.unwrap_or_default();
    let keel_started = med(&keel, &started);
    let (keel_vip, floor_vip) = (med(&keel, &|t| t.vip), med(&floor, &|t| t.vip));
    // Keel's nodes start only after make's own steps (cargo, the image
    // check); from there on it does what the floor does. Each round's own
    // difference, then the median.
    let keel_boot_vip = med(&keel, &|t| t.vip.saturating_sub(started(t)));
    let keel_boot_etcd = med(&keel, &|t| t.etcd.saturating_sub(started(t)));
    let floor_etcd = med(&floor, &|t| t.etcd);
    println!(
        "\nmedians over {} rounds ({} nodes):",
        args.rounds, args.nodes
    );
    println!(
        "  make run → VIP answering:            {}  (make, cargo and the image check before the nodes start: {})",
        secs(keel_vip),
        secs(keel_started)
    );
    println!(
        "  Keel nodes started → etcd healthy:   {}   floor: {}",
        secs(keel_boot_etcd),
        secs(floor_etcd)
    );
    println!(
        "  Keel nodes started → VIP answering:  {}   floor: {}",
        secs(keel_boot_vip),
        secs(floor_vip)
    );
    println!(
        "  ratio Keel / floor, VIP answering:   {:.2}x from make run start, {:.2}x from the nodes' start",
        ratio(keel_vip, floor_vip),
        ratio(keel_boot_vip, floor_vip)
    );
    Ok(())
}

fn fresh_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir.to_owned())
}

/// The real `make run`, non-interactive (`--check`: it boots the nodes,
/// waits for etcd and the VIP, moves the VIP once and powers all off).
/// Times are taken when its lines arrive.
fn keel_round(args: &Args, dir: &Path) -> anyhow::Result<Times> {
    let mut run_args = format!(
        "--check --dir {} --accel {} --memory {}",
        dir.display(),
        args.accel,
        args.memory
    );
    if let Some(t) = &args.template {
        run_args += &format!(" --template {}", t.display());
    }
    let t0 = Instant::now();
    let mut make = Command::new("make");
    // `cargo run` (how make starts this bench) sets CARGO_PKG_NAME,
    // CARGO_MANIFEST_DIR, … for its program; ring's build script declares
    // rerun-if-env-changed on those, so the nested make's cargo would see
    // them changed and rebuild ring and the whole init (75 s) in every
    // round. make run from a shell has none of them.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_",
        ]
        .iter()
        .any(|p| key.starts_with(p))
        {
            make.env_remove(key.as_ref());
        }
    }
    let mut child = make
        .args(["--no-print-directory", "-s", "run"])
        .arg(format!("BUILD={}", args.build.display()))
        .arg(format!("NODES={}", args.nodes))
        .arg(format!("VIP={}", args.vip))
        .arg(format!("RUN_ARGS={run_args}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("spawn make run")?;
    let stdout = child.stdout.take().context("make's stdout")?;
    let mut times = Times::default();
    let (mut etcd, mut vip) = (None, None);
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("read make's output")?;
        let at = t0.elapsed();
        if line.starts_with("keel-cluster: ") && times.nodes_started.is_none() {
            times.nodes_started = Some(at);
        } else if line.starts_with("check: all ") {
            etcd = Some(at);
        } else if line.starts_with("check: VIP ") && vip.is_none() {
            // The first answer (`check: VIP … first answered`, printed
            // while the nodes still start), as the floor's is timed.
            vip = Some(at);
        }
        lines.push(line);
    }
    let status = child.wait().context("wait for make run")?;
    match (status.success(), etcd, vip) {
        (true, Some(etcd), Some(vip)) => {
            times.etcd = etcd;
            times.vip = vip;
            Ok(times)
        }
        _ => bail!(
            "make run --check did not succeed ({status}); its output:\n{}\nconsoles in {}",
            lines.join("\n"),
            dir.display()
        ),
    }
}

/// The floor on the same nodes: started through the same [`Cluster`],
/// probed through the same switch. Times count from the moment the nodes
/// are started, as Keel's "nodes started" milestone does.
fn floor_round(args: &Args, dir: &Path) -> anyhow::Result<Times> {
    // Certificates as Keel's etcd has them (the floor's etcd uses TLS too);
    // issued here, before the clock starts, where Keel issues its own
    // while it boots.
    let topology = Topology::new(args.nodes, args.vip)?;
    let ca = keel_cluster::pki::Ca::make()?;
    let base = args.build.join("floor.cpio");
    let setups = topology
        .nodes
        .iter()
        .map(|node| {
            Ok(NodeSetup {
                initrd: Some(keel_cluster::floor::initrd(&base, dir, &ca, node)?),
                ..NodeSetup::default()
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cluster = Cluster::start(Options {
        image: Image::Floor,
        build: args.build.clone(),
        dir: dir.to_owned(),
        topology,
        setups,
        accel: args.accel,
        memory_mib: args.memory,
        append: String::new(),
    })?;
    let t0 = Instant::now();
    let mut times = Times::default();
    let mut etcd = None;
    let deadline = t0 + Duration::from_secs(300);
    while Instant::now() < deadline {
        if etcd.is_none()
            && (1..=args.nodes).all(|n| console_has(&cluster, n, "floor: etcd healthy"))
        {
            etcd = Some(t0.elapsed());
        }
        let macs = cluster.who_has(args.vip, Duration::from_millis(300));
        match macs[..] {
            [m] if cluster.node_of(m) == Some(1) => {
                times.vip = t0.elapsed();
                // The VIP needs node 1's etcd healthy, not the others':
                // wait for those too so both milestones are measured.
                while etcd.is_none() && Instant::now() < deadline {
                    if (1..=args.nodes).all(|n| console_has(&cluster, n, "floor: etcd healthy")) {
                        etcd = Some(t0.elapsed());
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                times.etcd = etcd.context("etcd healthy on every floor node")?;
                // The floor has no power-button handling: its nodes are
                // ended at once when `cluster` is dropped.
                return Ok(times);
            }
            [] => {}
            _ => bail!("the VIP answered from {macs:?}; expected node1 alone"),
        }
        if let Some(n) = (1..=args.nodes).find(|&n| console_has(&cluster, n, "floor: error")) {
            bail!(
                "node{n} of the floor failed: see {}",
                cluster.console_path(n).display()
            );
        }
    }
    bail!(
        "the floor's VIP did not answer within 300 s; consoles in {}",
        dir.display()
    )
}

fn console_has(cluster: &Cluster, n: usize, what: &str) -> bool {
    std::fs::read(cluster.console_path(n)).is_ok_and(|b| String::from_utf8_lossy(&b).contains(what))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-3)
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}
