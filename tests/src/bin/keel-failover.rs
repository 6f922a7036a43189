//! `make bench-failover`: the VIP under repeated faults. Three nodes, each
//! a network namespace with its own real etcd member and a real `keel vip`
//! (the init binary's election code), on a bridge ([`keel_tests::vipnet`]).
//! Faults on whoever holds the VIP, in turn: graceful stop (SIGTERM),
//! crash (SIGKILL; the harness removes the dead node's address as its
//! death would), partition (its bridge port down), etcd kill (SIGKILL of
//! its etcd member). Each is timed from the fault to the new holder's
//! first gratuitous ARP on the bridge; the node is then restored and the
//! cluster left to settle. At the end: median and max per kind, and the
//! total time two namespaces held the address at once (must be 0 ms).
//!
//! Needs root. Usage: keel-failover [--rounds N] [--ttl SECS]

use std::time::{Duration, Instant};

use keel_tests::vipnet::{overlap, VipNet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Graceful,
    Crash,
    Partition,
    EtcdKill,
}

const KINDS: [Kind; 4] = [Kind::Graceful, Kind::Crash, Kind::Partition, Kind::EtcdKill];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Graceful => "graceful",
            Kind::Crash => "crash",
            Kind::Partition => "partition",
            Kind::EtcdKill => "etcd kill",
        }
    }

    fn inject(self, net: &mut VipNet, h: usize) {
        match self {
            Kind::Graceful => net.stop_vip(h),
            Kind::Crash => net.crash_vip(h),
            Kind::Partition => net.partition(h, true),
            Kind::EtcdKill => net.kill_etcd(h),
        }
    }

    fn restore(self, net: &mut VipNet, h: usize) {
        match self {
            Kind::Graceful | Kind::Crash => net.start_vip(h),
            Kind::Partition => net.partition(h, false),
            Kind::EtcdKill => net.start_etcd(h),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut rounds = 6usize;
    let mut ttl = 5u64;
    let mut args = lexopt::Parser::from_env();
    while let Some(arg) = args.next()? {
        use lexopt::prelude::*;
        match arg {
            Long("rounds") => rounds = args.value()?.parse()?,
            Long("ttl") => ttl = args.value()?.parse()?,
            _ => return Err(arg.unexpected().into()),
        }
    }
    let mut net = VipNet::new("bench", 3, ttl);
    net.start_all();
    let settle = |net: &VipNet| {
        net.wait_single_holder(Duration::from_secs(120), Duration::from_secs(1))
            .ok_or_else(|| anyhow::anyhow!("no single holder\n{}", net.logs()))
    };
    let mut h = settle(&net)?;
    let mut results: Vec<(Kind, Duration)> = Vec::new();
    println!(
        "failover: 3 nodes (network namespaces, etcd {} members), TTL {ttl} s, {} faults",
        etcd_version(),
        rounds * KINDS.len()
    );
    for round in 0..rounds {
        for kind in KINDS {
            let t = Instant::now();
            kind.inject(&mut net, h);
            let new = net.wait_new_holder(h, t, Duration::from_secs(10 * ttl + 30));
            let garp = net
                .garps_since(t)
                .into_iter()
                .find(|g| net.node_of(g.1).is_some_and(|n| n != h));
            let took = match (new, garp) {
                (Some(_), Some((at, _, _))) => at - t,
                _ => anyhow::bail!("{}: no new holder\n{}", kind.name(), net.logs()),
            };
            println!(
                "  round {} {:<9} node{h} → node{}: {} ms",
                round + 1,
                kind.name(),
                new.map_or(0, |e| e.node),
                took.as_millis()
            );
            results.push((kind, took));
            kind.restore(&mut net, h);
            // Let the restored node rejoin (etcd, a new campaign) first.
            std::thread::sleep(Duration::from_secs(2));
            h = settle(&net)?;
        }
    }
    println!(
        "\n  {:<10} {:>3} {:>9} {:>9}",
        "fault", "n", "median", "max"
    );
    for kind in KINDS {
        let mut v: Vec<Duration> = results
            .iter()
            .filter(|r| r.0 == kind)
            .map(|r| r.1)
            .collect();
        v.sort();
        println!(
            "  {:<10} {:>3} {:>6} ms {:>6} ms",
            kind.name(),
            v.len(),
            v[v.len() / 2].as_millis(),
            v[v.len() - 1].as_millis()
        );
    }
    let events = net.events();
    let o = overlap(&events, net.nodes.len());
    println!(
        "\nsplit-brain overlap (two namespaces holding {} at once): {} ms in total over {} address changes",
        net.vip,
        o.as_millis(),
        events.len()
    );
    if o > Duration::ZERO {
        anyhow::bail!("split brain: {o:?}");
    }
    Ok(())
}

fn etcd_version() -> String {
    std::process::Command::new(keel_tests::vipnet::etcd())
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("etcd Version: ").map(str::to_owned))
        })
        .unwrap_or_else(|| "?".into())
}
