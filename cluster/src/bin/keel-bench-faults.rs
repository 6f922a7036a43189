//! `make bench-faults`: the VIP under faults on the holder, in QEMU.
//!
//! usage: keel-bench-faults [--build DIR] [--rounds N] [--kinds K,K,...]
//!                          [--accel auto|tcg|kvm] [--memory MIB]
//!
//! Three Keel nodes (`examples/cluster-static.yaml.tmpl`, VIP 10.5.0.100,
//! TTL 5 s) on the switch. The host port is the observer: it sends an ARP
//! probe for the VIP every 50 ms for the whole run, and the switch records
//! every frame. Each round injects every kind of fault on the node holding
//! the VIP, restores it, and waits until the cluster has settled (every
//! node's etcd healthy, one MAC answering for 3 s):
//!
//! - `graceful`: QMP `system_powerdown`, then booted again;
//! - `crash`: QMP `quit`, then booted again;
//! - `freeze`: QMP `stop` for 12 s (> 2 × TTL), then `cont`;
//! - `freeze-short`: `stop` for 1.5 s, then `cont`;
//! - `partition`: its switch port cut off from the other nodes (not from
//!   the observer, which sees both sides) for 15 s;
//! - `link-down`: QMP `set_link` off for 15 s.
//!
//! Claims of the VIP are ARP replies and gratuitous ARPs with the VIP as
//! sender. Per kind it prints n, the median and max failover (fault → the
//! first claim by another MAC), and two measures of two holders:
//! **overlap** (a MAC claiming the VIP while another MAC's claims are
//! still going on: claims of one MAC less than [`GAP`] apart form one
//! holding interval; overlap is where intervals of two MACs intersect),
//! and **shared windows** (probe windows of 50 ms in which two MACs
//! claimed, which also counts a clean hand-over that happens to fall
//! inside one window). Needless moves are changes of the answering MAC
//! while no fault was under way.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use keel_cluster::nodes::Cas;
use keel_cluster::{Cluster, Image, Options, Topology};
use keel_qemu::Accel;
use keel_switch::{Frame, MacAddr, WhoHas, HOST_MAC};

const USAGE: &str = "usage: keel-bench-faults [--build DIR] [--rounds N] [--kinds K,K,...]
                         [--accel auto|tcg|kvm] [--memory MIB]
kinds: graceful, crash, freeze, freeze-short, partition, link-down";

const KINDS: &[&str] = &[
    "graceful",
    "crash",
    "freeze",
    "freeze-short",
    "partition",
    "link-down",
];
const VIP: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 100);
const TTL: Duration = Duration::from_secs(5);
const PROBE: Duration = Duration::from_millis(50);
/// Claims of one MAC closer than this belong to one holding interval.
const GAP: Duration = Duration::from_millis(300);

struct Args {
    build: PathBuf,
    rounds: usize,
    kinds: Vec<String>,
    accel: Accel,
    memory: u32,
}

/// One fault's outcome.
struct Outcome {
    failover: Option<Duration>,
    overlap: Duration,
    overlap_events: usize,
    shared_windows: usize,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("keel-bench-faults: {e:#}");
        std::process::exit(1);
    }
}

fn parse_args() -> anyhow::Result<Args> {
    use lexopt::prelude::*;
    let mut a = Args {
        build: PathBuf::from("build"),
        rounds: 3,
        kinds: KINDS.iter().map(|k| (*k).to_owned()).collect(),
        accel: Accel::Auto,
        memory: 512,
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("build") => a.build = p.value()?.into(),
            Long("rounds") => a.rounds = p.value()?.parse()?,
            Long("kinds") => {
                a.kinds = p.value()?.string()?.split(',').map(str::to_owned).collect();
                if let Some(k) = a.kinds.iter().find(|k| !KINDS.contains(&k.as_str())) {
                    bail!("unknown kind {k:?}\n{USAGE}");
                }
            }
            Long("accel") => a.accel = p.value()?.parse()?,
            Long("memory") => a.memory = p.value()?.parse()?,
            Long("help") => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    Ok(a)
}

fn run() -> anyhow::Result<()> {
    let args = parse_args()?;
    let dir = args.build.join("bench-faults");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    let template = std::fs::read_to_string("examples/cluster-static.yaml.tmpl")
        .context("read examples/cluster-static.yaml.tmpl (run from the repository)")?;
    let opts = Options {
        image: Image::Keel,
        build: args.build.clone(),
        dir: dir.clone(),
        topology: Topology::new(3, VIP)?,
        setups: Vec::new(),
        accel: args.accel,
        memory_mib: args.memory,
        append: String::new(),
    };
    let cas = Cas {
        etcd: keel_cluster::pki::Ca::load_or_make(&opts.dir)?,
        machine: keel_cluster::pki::machine_ca(&opts.dir)?,
    };
    let opts = opts.with_template(&template, &cas)?;
    let mut cluster = Cluster::start(opts)?;
    println!(
        "keel-bench-faults: 3 nodes, VIP {VIP}, TTL {} s, accelerator {:?}, consoles in {}",
        TTL.as_secs(),
        cluster.accel,
        dir.display()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (inj, stop) = (cluster.switch.injector(), stop.clone());
        let probe = WhoHas::new(VIP, PROBE).frame();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = inj.inject(&probe);
                std::thread::sleep(PROBE);
            }
        })
    };
    let mut results: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
    let mut needless = 0;
    let outcome = (|| -> anyhow::Result<()> {
        let mut quiet_from = settle(&cluster, Duration::from_secs(300))?;
        for round in 1..=args.rounds {
            for kind in &args.kinds {
                needless += moves(&claims_of(&cluster.switch.frames_since(quiet_from)));
                let h = holder(&cluster)?;
                let t = Instant::now();
                fault(&mut cluster, kind, h)?;
                quiet_from = settle(&cluster, Duration::from_secs(300))?;
                let o = measure(&cluster.switch.frames_since(t), t, mac_of(&cluster, h)?);
                println!(
                    "round {round} {kind:<12} node{h}: failover {}, overlap {} ms in {} events, shared windows {}",
                    o.failover.map_or("none".into(), secs),
                    o.overlap.as_millis(),
                    o.overlap_events,
                    o.shared_windows
                );
                results.entry(kind.clone()).or_default().push(o);
            }
        }
        needless += moves(&claims_of(&cluster.switch.frames_since(quiet_from)));
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    let _ = prober.join();
    outcome?;
    report(&results, needless);
    cluster.shutdown();
    Ok(())
}

/// Injects `kind` on node `h` and restores it.
fn fault(c: &mut Cluster, kind: &str, h: usize) -> anyhow::Result<()> {
    let port = h - 1;
    match kind {
        "graceful" | "crash" => {
            if kind == "graceful" {
                c.power_off(h)?;
            } else {
                c.kill(h)?;
            }
            wait_new_holder(c, h, TTL * 4)?;
            if let Some(vm) = c.node_vm(h) {
                if vm
                    .wait_exit(keel_cluster::cluster::POWER_OFF_TIMEOUT)
                    .is_err()
                {
                    let _ = vm.kill();
                }
            }
            c.boot(h)?;
        }
        "freeze" | "freeze-short" => {
            let d = if kind == "freeze" {
                TTL * 2 + Duration::from_secs(2)
            } else {
                Duration::from_millis(1500)
            };
            c.freeze(h, true)?;
            std::thread::sleep(d);
            c.freeze(h, false)?;
            std::thread::sleep(Duration::from_secs(10));
        }
        "partition" => {
            c.switch.isolate(port, true)?;
            std::thread::sleep(Duration::from_secs(15));
            c.switch.isolate(port, false)?;
            std::thread::sleep(Duration::from_secs(5));
        }
        "link-down" => {
            c.set_link(h, false)?;
            std::thread::sleep(Duration::from_secs(15));
            c.set_link(h, true)?;
            std::thread::sleep(Duration::from_secs(5));
        }
        other => bail!("unknown kind {other}"),
    }
    Ok(())
}

fn mac_of(c: &Cluster, n: usize) -> anyhow::Result<MacAddr> {
    let node = c.opts.topology.nodes.get(n - 1).context("no such node")?;
    node.mac.parse().map_err(|e| anyhow::anyhow!("{e:?}"))
}

/// The node whose MAC answers for the VIP now (exactly one).
fn holder(c: &Cluster) -> anyhow::Result<usize> {
    let macs = WhoHas::new(VIP, Duration::from_millis(300))
        .tries(20)
        .macs(&c.switch);
    match macs[..] {
        [m] => c.node_of(m).context("a MAC that is no node"),
        _ => bail!("want one MAC answering for {VIP}, got {macs:?}"),
    }
}

fn wait_new_holder(c: &Cluster, old: usize, within: Duration) -> anyhow::Result<()> {
    let (t, old) = (Instant::now(), mac_of(c, old)?);
    while t.elapsed() < within {
        if claims_of(&c.switch.frames_since(t))
            .iter()
            .any(|(_, m)| *m != old)
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("no new holder within {within:?}")
}

/// Waits until every node runs with etcd healthy and one MAC has answered
/// alone for 3 s; returns when.
fn settle(c: &Cluster, within: Duration) -> anyhow::Result<Instant> {
    let t = Instant::now();
    while t.elapsed() < within {
        let healthy = (1..=c.len()).all(|n| c.status(n).etcd == "healthy");
        let since = Instant::now() - Duration::from_secs(3);
        let recent = claims_of(&c.switch.frames_since(since));
        let one = !recent.is_empty() && recent.iter().all(|(_, m)| *m == recent[0].1);
        if healthy && one {
            return Ok(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bail!("the cluster did not settle within {within:?}")
}

/// Every claim of the VIP (keel-switch's one definition).
fn claims_of(frames: &[Frame]) -> Vec<(Instant, MacAddr)> {
    keel_switch::claims(frames, VIP)
}

/// Changes of the claiming MAC.
fn moves(claims: &[(Instant, MacAddr)]) -> usize {
    claims.windows(2).filter(|w| w[0].1 != w[1].1).count()
}

/// Failover and the two measures of two holders, over `frames` from the
/// fault at `t` on the node with MAC `old`.
fn measure(frames: &[Frame], t: Instant, old: MacAddr) -> Outcome {
    let cl = claims_of(frames);
    let failover = cl.iter().find(|(_, m)| *m != old).map(|(at, _)| *at - t);
    // Holding intervals per MAC.
    let mut intervals: Vec<(MacAddr, Instant, Instant)> = Vec::new();
    for (at, m) in &cl {
        match intervals.iter_mut().rev().find(|(im, _, _)| im == m) {
            Some(iv) if *at - iv.2 < GAP => iv.2 = *at,
            _ => intervals.push((*m, *at, *at)),
        }
    }
    let (mut overlap, mut overlap_events) = (Duration::ZERO, 0);
    for (i, a) in intervals.iter().enumerate() {
        for b in &intervals[i + 1..] {
            if a.0 == b.0 {
                continue;
            }
            let (start, end) = (a.1.max(b.1), a.2.min(b.2));
            if start <= end {
                overlap_events += 1;
                overlap += end - start;
            }
        }
    }
    // Probe windows: from each probe the observer sent to the next.
    let probes: Vec<Instant> = frames
        .iter()
        .filter(|f| f.src() == Some(HOST_MAC) && f.arp().is_some_and(|a| a.is_request()))
        .map(|f| f.at)
        .collect();
    let shared_windows = probes
        .windows(2)
        .filter(|w| {
            let mut in_window = cl
                .iter()
                .filter(|(at, _)| *at >= w[0] && *at < w[1])
                .map(|(_, m)| *m);
            let first = in_window.next();
            in_window.any(|m| Some(m) != first)
        })
        .count();
    Outcome {
        failover,
        overlap,
        overlap_events,
        shared_windows,
    }
}

fn report(results: &BTreeMap<String, Vec<Outcome>>, needless: usize) {
    println!("\nper kind (TTL {} s):", TTL.as_secs());
    println!(
        "  {:<13} {:>3} {:>10} {:>10} {:>15} {:>14}",
        "kind", "n", "median", "max", "overlap events", "shared windows"
    );
    let (mut events, mut total, mut shared) = (0, Duration::ZERO, 0);
    for kind in KINDS {
        let Some(v) = results.get(*kind) else {
            continue;
        };
        let mut f: Vec<Duration> = v.iter().filter_map(|o| o.failover).collect();
        f.sort();
        let med = f.get(f.len() / 2).map_or("-".into(), |d| secs(*d));
        let max = f.last().map_or("-".into(), |d| secs(*d));
        let ev: usize = v.iter().map(|o| o.overlap_events).sum();
        let ms: Duration = v.iter().map(|o| o.overlap).sum();
        let sw: usize = v.iter().map(|o| o.shared_windows).sum();
        println!(
            "  {kind:<13} {:>3} {med:>10} {max:>10} {:>9} ({:>3} ms) {sw:>14}",
            v.len(),
            ev,
            ms.as_millis()
        );
        events += ev;
        total += ms;
        shared += sw;
    }
    println!(
        "overlap: {events} events, {} ms in total; shared probe windows: {shared}; needless moves: {needless}",
        total.as_millis()
    );
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}
