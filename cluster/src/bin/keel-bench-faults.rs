//! `make bench-faults`: the VIPs under faults, in QEMU.
//!
//! usage: keel-bench-faults [--build DIR] [--rounds N] [--kinds K,K,...]
//!                          [--families 4,6] [--accel auto|tcg|kvm] [--memory MIB]
//!
//! Three Keel nodes (`examples/cluster-dual.yaml.tmpl`: Talos network
//! documents, two VIPs on one link, 10.5.0.100 and fd00:a05::100, TTL
//! 5 s; etcd on a `KEEL-VAR` disk per node) on the switch. The host port
//! is the observer: every 50 ms for the whole run it sends an ARP probe
//! for the IPv4 VIP and a neighbour solicitation for the IPv6 one, and the
//! switch records every frame. Each round injects every kind of fault on
//! the node holding a VIP (once per family, unless one fault already hit
//! the holder of both), restores it, and waits until the cluster has
//! settled (every node's etcd healthy, one MAC answering for each VIP for
//! 3 s):
//!
//! - `graceful`: QMP `system_powerdown`, then booted again;
//! - `crash`: QMP `quit`, then booted again (Keel keeps etcd's raft
//!   leadership off a holder, so this is a holder that follows);
//! - `crash-leader`: the same right after `etcdctl move-leader` made the
//!   holder the raft leader (before Keel hands it on);
//! - `leader-back`: no fault: `etcdctl move-leader` makes the holder the
//!   raft leader, and the bench times how long until it leads no more
//!   (Keel hands the leadership off a holder, `vip/leadership.rs`); the
//!   VIP must stay;
//! - `freeze`: QMP `stop` for 12 s (> 2 × TTL), then `cont`;
//! - `freeze-short`: `stop` for 1.5 s, then `cont`;
//! - `partition`: its switch port cut off from the other nodes (not from
//!   the observer, which sees both sides) for 15 s;
//! - `link-down`: QMP `set_link` off for 15 s;
//! - `disk-stall`: the etcd leader's (not the holder's) `KEEL-VAR` disk
//!   throttled to 1 IOPS for TTL + 5 s (QMP `block_set_io_throttle`), once
//!   per round; every VIP is measured.
//!
//! Claims of a VIP are ARP replies and gratuitous ARPs with the VIP as
//! sender, and neighbour advertisements for it. Per kind and family it
//! prints n, the median and max failover (fault → the first claim by
//! another MAC), and two measures of two holders: **overlap** (a MAC
//! claiming the VIP while another MAC's claims are still going on) and
//! **shared windows** (probe windows in which two MACs claimed), see
//! [`keel_cluster::faults`]. Needless moves are changes of the answering
//! MAC while no fault was under way, or of a VIP whose holder no fault
//! hit.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use keel_cluster::api::Statuses;
use keel_cluster::faults::{claims, intervals, measure, median_max, moves, secs, Outcome};
use keel_cluster::nodes::Cas;
use keel_cluster::{Cluster, Image, Options, Topology};
use keel_qemu::{Accel, Drive};
use keel_switch::{MacAddr, WhoHas};

const USAGE: &str = "usage: keel-bench-faults [--build DIR] [--rounds N] [--kinds K,K,...]
                         [--families 4,6] [--accel auto|tcg|kvm] [--memory MIB]
kinds: graceful, crash, crash-leader, leader-back, freeze, freeze-short, partition, link-down,
       disk-stall";

const KINDS: &[&str] = &[
    "graceful",
    "crash",
    "crash-leader",
    "leader-back",
    "freeze",
    "freeze-short",
    "partition",
    "link-down",
    "disk-stall",
];
const TEMPLATE: &str = "examples/cluster-dual.yaml.tmpl";
const VIP: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 100);
const TTL: Duration = Duration::from_secs(5);
const PROBE: Duration = Duration::from_millis(50);
/// The serial of each node's etcd disk.
const VAR_SERIAL: &str = "keel-var";
/// etcd-client's etcdctl, fetched beside the image's etcd.
const ETCDCTL: &str = "build/cache/etcd-client/usr/bin/etcdctl";

struct Args {
    build: PathBuf,
    rounds: usize,
    kinds: Vec<String>,
    families: Vec<u8>,
    accel: Accel,
    memory: u32,
}

/// One fault's outcome for one VIP.
struct Sample {
    /// The fault hit the node that held this VIP.
    hit: bool,
    outcome: Outcome,
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
        families: vec![4, 6],
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
            Long("families") => {
                a.families = p
                    .value()?
                    .string()?
                    .split(',')
                    .map(|f| match f {
                        "4" => Ok(4),
                        "6" => Ok(6),
                        _ => bail!("--families {f:?}: expected 4, 6 or 4,6\n{USAGE}"),
                    })
                    .collect::<anyhow::Result<_>>()?;
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

/// The bench's state: the cluster, its APIs, the VIPs.
struct Bench {
    c: Cluster,
    statuses: Statuses,
    /// Both VIPs (both are configured; `--families` picks which ones the
    /// faults aim at).
    vips: Vec<IpAddr>,
    load: Load,
}

/// Writes into etcd while a disk stalls: an idle etcd hardly touches its
/// disk (lease renewals and linearizable reads are not written), while a
/// control plane's API server writes all the time.
struct Load {
    etcdctl: PathBuf,
    ca: PathBuf,
    crt: PathBuf,
    key: PathBuf,
    /// Host ports forwarded to each node's etcd, node by node.
    ports: Vec<u16>,
}

impl Load {
    /// etcdctl with the client certificate, for node `via`'s endpoint or
    /// every node's.
    fn etcdctl(&self, via: Option<usize>) -> std::process::Command {
        let endpoints: Vec<String> = self
            .ports
            .iter()
            .enumerate()
            .filter(|(i, _)| via.is_none_or(|n| n == i + 1))
            .map(|(_, p)| format!("https://127.0.0.1:{p}"))
            .collect();
        let mut cmd = std::process::Command::new(&self.etcdctl);
        cmd.arg(format!("--endpoints={}", endpoints.join(",")))
            .arg("--cacert")
            .arg(&self.ca)
            .arg("--cert")
            .arg(&self.crt)
            .arg("--key")
            .arg(&self.key)
            .arg("--command-timeout=2s");
        cmd
    }

    /// Makes member `id` (hex) the raft leader (etcdctl finds the leader
    /// among the endpoints and asks it).
    fn move_leader(&self, id: &str) -> anyhow::Result<()> {
        let out = self
            .etcdctl(None)
            .args(["move-leader", id])
            .output()
            .context("run etcdctl")?;
        let text = String::from_utf8_lossy(&out.stderr);
        // Already the leader is fine too.
        if !out.status.success() && !text.contains("already leader") {
            bail!("etcdctl move-leader {id}: {}", text.trim());
        }
        Ok(())
    }

    /// Whether node `n`'s etcd member leads raft now, as its Status says
    /// (`etcdctl endpoint status -w fields`: `"MemberID" : N`, `"Leader" : N`);
    /// None while it knows no leader (an election or a transfer under way).
    fn leads(&self, n: usize) -> anyhow::Result<Option<bool>> {
        let out = self
            .etcdctl(Some(n))
            .args(["endpoint", "status", "-w", "fields"])
            .output()
            .context("run etcdctl")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("\"{name}\" : ")))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        match (field("MemberID"), field("Leader")) {
            (Some(_), Some("0")) => Ok(None),
            (Some(me), Some(leader)) => Ok(Some(me == leader)),
            _ => bail!("etcdctl endpoint status of node{n}: no member ID or leader in {text:?}"),
        }
    }

    /// Puts a key every 100 ms through node `via` until `stop`; returns
    /// (puts that succeeded, puts that failed or timed out).
    fn run(&self, via: usize, stop: &AtomicBool) -> (usize, usize) {
        let (mut ok, mut failed) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            let put = self
                .etcdctl(Some(via))
                .args(["put", "keel-bench/load"])
                .arg((ok + failed).to_string())
                .output();
            match put {
                Ok(o) if o.status.success() => ok += 1,
                _ => failed += 1,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (ok, failed)
    }
}

fn run() -> anyhow::Result<()> {
    let args = parse_args()?;
    let dir = args.build.join("bench-faults");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let template = std::fs::read_to_string(TEMPLATE)
        .with_context(|| format!("read {TEMPLATE} (run from the repository)"))?;
    let topology = Topology::new(3, VIP)?;
    let vips = vec![IpAddr::V4(VIP), IpAddr::V6(topology.vip6)];
    let opts = Options {
        image: Image::Keel,
        build: args.build.clone(),
        dir: dir.clone(),
        topology,
        setups: Vec::new(),
        accel: args.accel,
        memory_mib: args.memory,
        append: String::new(),
    };
    let cas = Cas {
        etcd: keel_cluster::pki::Ca::load_or_make(&opts.dir)?,
        machine: keel_cluster::pki::machine_ca(&opts.dir)?,
    };
    let (client_crt, client_key) = cas.etcd.client_files(&dir)?;
    let (mut opts, etcd_ports) = opts.with_template(&template, &cas)?.with_etcd_forwards()?;
    for (i, setup) in opts.setups.iter_mut().enumerate() {
        let disk = dir.join(format!("node{}.var.img", i + 1));
        keel_cluster::disk::gpt_with_empty_keel_var(&disk)?;
        setup.drives.push(Drive::new(disk).with_serial(VAR_SERIAL));
    }
    let cluster = Cluster::start(opts)?;
    let ports: Vec<u16> = (1..=cluster.len())
        .filter_map(|n| cluster.api_port(n))
        .collect();
    let (creds, _) = keel_cluster::pki::talosconfig(
        &dir,
        &cas.machine,
        ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
    )?;
    let statuses = keel_cluster::api::watch(&creds, &ports)?;
    println!(
        "keel-bench-faults: 3 nodes, VIPs {}, TTL {} s, accelerator {:?}, consoles in {}",
        vips.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" and "),
        TTL.as_secs(),
        cluster.accel,
        dir.display()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (inj, stop) = (cluster.switch.injector(), stop.clone());
        let probes: Vec<Vec<u8>> = vips
            .iter()
            .map(|ip| WhoHas::new(*ip, PROBE).frame())
            .collect();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for p in &probes {
                    let _ = inj.inject(p);
                }
                std::thread::sleep(PROBE);
            }
        })
    };
    let mut b = Bench {
        c: cluster,
        statuses,
        vips,
        load: Load {
            etcdctl: PathBuf::from(ETCDCTL),
            ca: dir.join("etcd-ca.crt"),
            crt: client_crt,
            key: client_key,
            ports: etcd_ports,
        },
    };
    let mut results: BTreeMap<(String, IpAddr), Vec<Sample>> = BTreeMap::new();
    let mut needless = 0;
    let outcome = rounds(&mut b, &args, &mut results, &mut needless);
    stop.store(true, Ordering::Relaxed);
    let _ = prober.join();
    outcome?;
    report(&b, &results, needless);
    b.c.shutdown();
    Ok(())
}

/// Every round of every kind; fills `results` and counts needless moves.
fn rounds(
    b: &mut Bench,
    args: &Args,
    results: &mut BTreeMap<(String, IpAddr), Vec<Sample>>,
    needless: &mut usize,
) -> anyhow::Result<()> {
    let aimed: Vec<IpAddr> = b
        .vips
        .iter()
        .copied()
        .filter(|ip| args.families.contains(&if ip.is_ipv4() { 4 } else { 6 }))
        .collect();
    let mut quiet_from = settle(b, Duration::from_secs(300))?;
    for round in 1..=args.rounds {
        for kind in &args.kinds {
            // A disk stall aims at etcd's leader, once a round; every
            // other kind at each aimed VIP's holder, unless a fault of
            // this round already hit it (one node held both).
            let stall = kind == "disk-stall";
            for aim in aimed.iter().take(if stall { 1 } else { aimed.len() }) {
                let done = results.get(&(kind.clone(), *aim)).map_or(0, |v| {
                    v.iter()
                        .filter(|s| s.hit || stall || kind == "leader-back")
                        .count()
                });
                if done >= round {
                    continue;
                }
                for ip in &b.vips {
                    *needless += moves(&claims(&b.c.switch.frames_since(quiet_from), *ip));
                }
                let holders: Vec<usize> = b
                    .vips
                    .iter()
                    .map(|ip| holder(&b.c, *ip))
                    .collect::<anyhow::Result<_>>()?;
                let h = if kind == "disk-stall" {
                    leader(b)?
                } else {
                    holders[b.vips.iter().position(|ip| ip == aim).unwrap_or(0)]
                };
                let held: Vec<IpAddr> = b
                    .vips
                    .iter()
                    .zip(&holders)
                    .filter(|(_, n)| **n == h)
                    .map(|(ip, _)| *ip)
                    .collect();
                if kind == "crash-leader" {
                    b.load.move_leader(&etcd_id(b, h)?)?;
                }
                let leads =
                    kind == "crash-leader" || b.statuses.get(h).is_some_and(|s| s.etcd.is_leader);
                let t = Instant::now();
                fault(b, kind, h, &held)?;
                quiet_from = settle(b, Duration::from_secs(300))?;
                let frames = b.c.switch.frames_since(t);
                for (ip, was) in b.vips.iter().zip(&holders) {
                    let o = measure(&frames, t, *ip, mac_of(&b.c, *was)?);
                    let hit = *was == h && kind != "leader-back";
                    println!(
                        "round {round} {kind:<12} node{h}{} {:<14} held by node{was}: failover {}, overlap {} ms in {} events, shared windows {}",
                        if leads { " (etcd leader)" } else { "" },
                        ip.to_string(),
                        o.failover.map_or("none".into(), secs),
                        o.overlap.as_millis(),
                        o.overlap_events,
                        o.shared_windows
                    );
                    if o.overlap_events > 0 {
                        // Who claimed when, to tell what overlapped.
                        for (mac, from, to) in intervals(&claims(&frames, *ip)) {
                            println!(
                                "    {mac} node{}: {:.3} s .. {:.3} s",
                                b.c.node_of(mac).unwrap_or(0),
                                from.saturating_duration_since(t).as_secs_f64(),
                                to.saturating_duration_since(t).as_secs_f64()
                            );
                        }
                    }
                    // A VIP whose holder no fault hit must stay (a disk
                    // stall of etcd's leader may touch any holder: a move
                    // there is measured, not needless).
                    if !hit && !stall && o.failover.is_some() {
                        *needless += 1;
                    }
                    // Every VIP's overlap counts, hit or not.
                    results
                        .entry((kind.clone(), *ip))
                        .or_default()
                        .push(Sample { hit, outcome: o });
                }
            }
        }
    }
    for ip in &b.vips {
        *needless += moves(&claims(&b.c.switch.frames_since(quiet_from), *ip));
    }
    Ok(())
}

/// Injects `kind` on node `h`, which holds the VIPs `held`, and restores
/// it.
fn fault(b: &mut Bench, kind: &str, h: usize, held: &[IpAddr]) -> anyhow::Result<()> {
    if kind == "leader-back" {
        return leader_back(b, h);
    }
    let c = &mut b.c;
    let port = h - 1;
    match kind {
        "graceful" | "crash" | "crash-leader" => {
            let old = mac_of(c, h)?;
            let t = Instant::now();
            if kind == "graceful" {
                c.power_off(h)?;
            } else {
                c.kill(h)?;
            }
            // Until every VIP the node held has a new holder.
            while t.elapsed() < TTL * 4 {
                let frames = c.switch.frames_since(t);
                let moved = held
                    .iter()
                    .all(|ip| claims(&frames, *ip).iter().any(|(_, m)| *m != old));
                if moved {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
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
        "disk-stall" => {
            // Writes go through another member, which forwards them to the
            // stalled leader (as an API server's would).
            let via = if h == 1 { 2 } else { 1 };
            let stop = AtomicBool::new(false);
            let (ok, failed) = std::thread::scope(|s| {
                let load = s.spawn(|| b.load.run(via, &stop));
                let stalled = (|| {
                    c.throttle_disk(h, VAR_SERIAL, Some(1))?;
                    std::thread::sleep(TTL + Duration::from_secs(5));
                    c.throttle_disk(h, VAR_SERIAL, None)
                })();
                std::thread::sleep(Duration::from_secs(10));
                stop.store(true, Ordering::Relaxed);
                let counts = load.join().unwrap_or((0, 0));
                stalled.map(|()| counts)
            })?;
            println!(
                "  disk-stall on node{h}: {ok} puts through node{via} succeeded, {failed} failed"
            );
        }
        other => bail!("unknown kind {other}"),
    }
    Ok(())
}

/// Makes holder `h` etcd's raft leader and prints how long it stays
/// leader; then lets the cluster settle.
fn leader_back(b: &Bench, h: usize) -> anyhow::Result<()> {
    b.load.move_leader(&etcd_id(b, h)?)?;
    let t = Instant::now();
    let mut looks = 0;
    while t.elapsed() < Duration::from_secs(30) {
        looks += 1;
        if b.load.leads(h)? == Some(false) {
            println!(
                "  leader-back: node{h} led raft for {} after the move ({looks} looks)",
                secs(t.elapsed())
            );
            std::thread::sleep(Duration::from_secs(3));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("node{h} still leads raft 30 s after it was made leader while holding a VIP")
}

fn mac_of(c: &Cluster, n: usize) -> anyhow::Result<MacAddr> {
    let node = c.opts.topology.nodes.get(n - 1).context("no such node")?;
    node.mac.parse().map_err(|e| anyhow::anyhow!("{e:?}"))
}

/// The node whose MAC answers for `ip` now (exactly one).
fn holder(c: &Cluster, ip: IpAddr) -> anyhow::Result<usize> {
    let macs = WhoHas::new(ip, Duration::from_millis(300))
        .tries(20)
        .macs(&c.switch);
    match macs[..] {
        [m] => c.node_of(m).context("a MAC that is no node"),
        _ => bail!("want one MAC answering for {ip}, got {macs:?}"),
    }
}

/// Node `n`'s etcd member ID (hex), as its node API says.
fn etcd_id(b: &Bench, n: usize) -> anyhow::Result<String> {
    b.statuses
        .get(n)
        .and_then(|s| s.etcd.id)
        .with_context(|| format!("node{n}'s API names no etcd member ID"))
}

/// The node whose etcd leads, as its node API says.
fn leader(b: &Bench) -> anyhow::Result<usize> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        let leaders: Vec<usize> = (1..=b.c.len())
            .filter(|n| b.statuses.get(*n).is_some_and(|s| s.etcd.is_leader))
            .collect();
        if let [n] = leaders[..] {
            return Ok(n);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bail!("no single etcd leader in the nodes' API answers within 30 s")
}

/// Waits until every node runs with etcd healthy and one MAC has answered
/// alone for each VIP for 3 s; returns when.
fn settle(b: &Bench, within: Duration) -> anyhow::Result<Instant> {
    let t = Instant::now();
    while t.elapsed() < within {
        let healthy = (1..=b.c.len()).all(|n| b.c.status(n).etcd == "healthy");
        let since = Instant::now() - Duration::from_secs(3);
        let frames = b.c.switch.frames_since(since);
        let one = b.vips.iter().all(|ip| {
            let recent = claims(&frames, *ip);
            !recent.is_empty() && recent.iter().all(|(_, m)| *m == recent[0].1)
        });
        if healthy && one {
            return Ok(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bail!("the cluster did not settle within {within:?}")
}

fn report(b: &Bench, results: &BTreeMap<(String, IpAddr), Vec<Sample>>, needless: usize) {
    println!(
        "\nper kind and VIP (TTL {} s; n: faults on the VIP's holder, of all measured):",
        TTL.as_secs()
    );
    println!(
        "  {:<13} {:<14} {:>6} {:>6} {:>10} {:>10} {:>15} {:>14}",
        "kind", "VIP", "n", "moved", "median", "max", "overlap events", "shared windows"
    );
    let (mut events, mut total, mut shared) = (0, Duration::ZERO, 0);
    for kind in KINDS {
        for ip in &b.vips {
            let Some(v) = results.get(&((*kind).to_owned(), *ip)) else {
                continue;
            };
            let on_holder: Vec<&Sample> = v.iter().filter(|s| s.hit).collect();
            let (med, max) = median_max(
                on_holder
                    .iter()
                    .filter_map(|s| s.outcome.failover)
                    .collect(),
            );
            let moved = v.iter().filter(|s| s.outcome.failover.is_some()).count();
            let ev: usize = v.iter().map(|s| s.outcome.overlap_events).sum();
            let ms: Duration = v.iter().map(|s| s.outcome.overlap).sum();
            let sw: usize = v.iter().map(|s| s.outcome.shared_windows).sum();
            println!(
                "  {kind:<13} {:<14} {:>6} {moved:>6} {med:>10} {max:>10} {ev:>9} ({:>3} ms) {sw:>14}",
                ip.to_string(),
                format!("{}/{}", on_holder.len(), v.len()),
                ms.as_millis()
            );
            events += ev;
            total += ms;
            shared += sw;
        }
    }
    println!(
        "overlap: {events} events, {} ms in total; shared probe windows: {shared}; needless moves: {needless}",
        total.as_millis()
    );
}
