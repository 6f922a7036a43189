//! The VIP election on this host, as root: three network namespaces on a
//! bridge the test creates, each with its own real etcd member and a real
//! `keel vip` (the musl build of the init binary, the same election code
//! PID 1 runs). The address's presence is read from `ip monitor` in every
//! namespace, announcements from a packet socket on the bridge.

use std::time::{Duration, Instant};

use keel_tests::vipnet::{overlap, VipNet};

const TTL: u64 = 3;

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn settle(net: &VipNet) -> usize {
    net.wait_single_holder(Duration::from_secs(60), Duration::from_millis(500))
        .unwrap_or_else(|| panic!("no single holder: {:?}\n{}", net.holders(), net.logs()))
}

/// Start, graceful stop, crash, crash with a fast restart, frozen etcd,
/// partition, the holder's key deleted under its live lease: one holder
/// at every moment, failover within the bounds the
/// design promises, the burst of gratuitous ARP on every acquisition.
#[test]
fn vip_election_in_namespaces() {
    let mut net = VipNet::new("vip", 3, TTL);
    let started = Instant::now();
    net.start_all();

    // Exactly one holder; it answers ARP, nobody else does.
    let h = settle(&net);
    let who = net.who_has(Duration::from_millis(300));
    assert_eq!(who, vec![net.nodes[h].mac], "ARP replies for the VIP");
    // The burst: 5 announcements of each form from the holder's MAC, 200
    // ms apart (it may still be going on: wait for the burst's span
    // rather than read once).
    let burst_by = Instant::now() + Duration::from_secs(3);
    let (garps, requests, replies) = loop {
        let garps = net.garps_since(started);
        let mine = garps.iter().filter(|g| g.1 == net.nodes[h].mac);
        let requests = mine.clone().filter(|g| !g.2).count();
        let replies = mine.filter(|g| g.2).count();
        if (requests >= 5 && replies >= 5) || Instant::now() > burst_by {
            break (garps, requests, replies);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mine: Vec<_> = garps.iter().filter(|g| g.1 == net.nodes[h].mac).collect();
    assert!(
        requests >= 5 && replies >= 5,
        "burst: {requests} requests, {replies} replies: {garps:?}"
    );
    let span = mine[mine.len() - 1].0 - mine[0].0;
    assert!(
        span >= Duration::from_millis(700),
        "burst spread over {span:?}"
    );
    assert!(garps.iter().all(|g| g.1 == net.nodes[h].mac), "{garps:?}");

    // Graceful stop: released and resigned, the next node within 0.3 s.
    let t = Instant::now();
    net.stop_vip(h);
    let new = net
        .wait_new_holder(h, t, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no new holder after graceful stop\n{}", net.logs()));
    eprintln!("graceful: {} ms", ms(new.at - t));
    assert!(
        new.at - t < Duration::from_millis(300),
        "graceful failover took {:?}",
        new.at - t
    );
    assert!(net.dropped_at(h, t).is_some_and(|d| d <= new.at));
    // The old holder released its key after its address was gone, and the
    // new one won on that write alone (vip/campaign.rs), then announced
    // itself at once, without a read.
    assert!(
        net.wait_logged("the holder released it: won without a read"),
        "the new holder won on the release\n{}",
        net.logs()
    );
    let announced_by = Instant::now() + Duration::from_secs(2);
    let first_garp = loop {
        let g = net
            .garps_since(t)
            .into_iter()
            .find(|g| g.1 == net.nodes[new.node].mac);
        if g.is_some() || Instant::now() > announced_by {
            break g;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(first_garp.is_some(), "the new holder announced itself");
    net.start_vip(h);
    let h = settle(&net);

    // Crash: the lease expires, another node within TTL + 1 s.
    let t = Instant::now();
    net.crash_vip(h);
    let new = net
        .wait_new_holder(h, t, Duration::from_secs(TTL + 5))
        .unwrap_or_else(|| panic!("no new holder after crash\n{}", net.logs()));
    eprintln!("crash: {} ms", ms(new.at - t));
    assert!(
        new.at - t < Duration::from_secs(TTL + 1),
        "crash failover {:?}",
        new.at - t
    );
    net.start_vip(h);
    let h = settle(&net);

    // Crash and restart at once: the restarted process resigns its stale
    // campaign, so nobody waits for the dead lease.
    let t = Instant::now();
    net.crash_vip(h);
    net.start_vip(h);
    let new = net
        .wait_new_holder(h, t, Duration::from_secs(TTL + 5))
        .unwrap_or_else(|| panic!("no new holder after crash + restart\n{}", net.logs()));
    eprintln!("crash + restart: {} ms", ms(new.at - t));
    assert!(
        new.at - t < Duration::from_millis(1500),
        "with the stale key resigned failover should not wait for the lease: {:?}\n{}",
        new.at - t,
        net.logs()
    );
    // Logged once the stale lease is revoked too, which may come after
    // the new holder is seen.
    assert!(
        net.wait_logged("resigned a stale campaign"),
        "{}",
        net.logs()
    );
    let h = settle(&net);

    // etcd on the holder's side hangs: the holder's fencing deadline passes
    // and it drops the address before the lease can expire anywhere.
    let t = Instant::now();
    net.freeze_etcd(h, true);
    let new = net
        .wait_new_holder(h, t, Duration::from_secs(4 * TTL + 10))
        .unwrap_or_else(|| panic!("no new holder with etcd frozen\n{}", net.logs()));
    let dropped = net
        .dropped_at(h, t)
        .expect("the frozen side dropped the VIP");
    eprintln!(
        "etcd frozen: dropped after {} ms, new holder after {} ms",
        ms(dropped - t),
        ms(new.at - t)
    );
    assert!(dropped < new.at, "the old holder dropped it first");
    net.freeze_etcd(h, false);
    let h = settle(&net);

    // Partition: cut off the bridge, the holder loses carrier and quorum.
    let t = Instant::now();
    net.partition(h, true);
    let new = net
        .wait_new_holder(h, t, Duration::from_secs(4 * TTL + 10))
        .unwrap_or_else(|| panic!("no new holder with the holder partitioned\n{}", net.logs()));
    let dropped = net
        .dropped_at(h, t)
        .expect("the partitioned side dropped the VIP");
    eprintln!(
        "partition: dropped after {} ms, new holder after {} ms",
        ms(dropped - t),
        ms(new.at - t)
    );
    assert!(dropped < new.at, "the old holder dropped it first");
    net.partition(h, false);
    let h = settle(&net);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        net.holders().len(),
        1,
        "one holder after the partition heals"
    );

    // One holder at every moment up to here, by the addresses themselves.
    let events = net.events();
    assert_eq!(
        overlap(&events, 3),
        Duration::ZERO,
        "two holders at once: {events:?}"
    );

    // etcd deletes the holder's campaign key while its lease is kept alive
    // — what an etcd raft leader resumed from a freeze does when it
    // revokes a live lease (docs/ARCHITECTURE.md). The holder notices
    // through the watch on its own key and drops the address. Here, where
    // a read takes a millisecond, the next holder's one read may end
    // before the deletion reaches the holder's member (a follower learns
    // of the commit from the heartbeats that serve that read), so the
    // address can sit on both nodes' `lo` for some milliseconds: measured,
    // not asserted. What must hold is the wire: the old holder answers
    // nothing for the VIP once its key is gone (the gate: its reads no
    // longer find the key), so only the new holder's MAC answers.
    let prefix = format!("keel/vip/{}/", net.vip);
    let (ok, first) = net.etcdctl(
        h,
        &[
            "get",
            "--prefix",
            &prefix,
            "--sort-by=CREATE",
            "--order=ASCEND",
            "--limit=1",
            "--keys-only",
        ],
    );
    let key = first.trim().to_owned();
    assert!(ok && key.starts_with(&prefix), "the holder's key: {first}");
    let t = Instant::now();
    let (ok, out) = net.etcdctl(h, &["del", &key]);
    assert!(ok && out.trim() == "1", "etcdctl del {key}: {out}");
    let new = net
        .wait_new_holder(h, t, Duration::from_secs(TTL + 5))
        .unwrap_or_else(|| panic!("no new holder after the key's deletion\n{}", net.logs()));
    let who = net.who_has(Duration::from_millis(300));
    assert_eq!(
        who,
        vec![net.nodes[new.node].mac],
        "ARP replies for the VIP after the key's deletion\n{}",
        net.logs()
    );
    let dropped = (0..200)
        .find_map(|_| {
            let d = net.dropped_at(h, t);
            if d.is_none() {
                std::thread::sleep(Duration::from_millis(10));
            }
            d
        })
        .unwrap_or_else(|| panic!("node {h} kept the VIP after its key went\n{}", net.logs()));
    eprintln!(
        "key deleted: dropped after {} ms, new holder after {} ms, on both nodes' lo for {} ms",
        ms(dropped - t),
        ms(new.at - t),
        ms(dropped.saturating_duration_since(new.at))
    );
    assert!(
        dropped - t < Duration::from_secs(1),
        "the holder dropped {:?} after its key went",
        dropped - t
    );
    assert!(
        net.logs().contains("etcd deleted this node's campaign key"),
        "the holder noticed through its own key's watch:\n{}",
        net.logs()
    );
}

/// An IPv6 VIP: the address lives on `lo`, so the kernel would not answer
/// neighbour solicitations for it; `keel vip` answers them from its
/// packet socket (solicited-node group joined, NS filter), once the lease
/// is confirmed. A host on the segment resolves the VIP to the holder's
/// MAC and reaches it.
#[test]
fn ipv6_vip_answers_neighbour_solicitations() {
    const VIP6: &str = "fd00:77::100";
    let mut net = VipNet::new("v6", 1, TTL);
    net.enable_ipv6("fd00:77::");
    net.start_etcd(0);
    net.start_vip_for(0, VIP6);
    let end = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let url = format!("http://[{VIP6}]:9/");
    while Instant::now() < end {
        // A TCP connection to a closed port: refused (a RST from the
        // holder's kernel) once the VIP resolves, a timeout before.
        let (_, out) = net.in_hub(&["curl", "-sS", "-m", "2", &url]);
        let (_, neigh) = net.in_hub(&["ip", "-6", "neigh", "show", VIP6]);
        let mac = net.nodes[0].mac.to_string();
        // curl says "Couldn't connect to server" (exit 7) when refused,
        // "Connection timed out" (28) when nothing answered.
        if out.contains("Couldn't connect") && neigh.contains(&mac) {
            let (_, addr) = net.in_hub(&[
                "ip",
                "-n",
                &net.nodes[0].ns,
                "-6",
                "addr",
                "show",
                "dev",
                "lo",
            ]);
            assert!(
                addr.contains("fd00:77::100/128") && addr.contains("deprecated"),
                "{addr}"
            );
            return;
        }
        last = format!("{out} / neighbour: {neigh}");
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("{VIP6} never answered: {last}\n{}", net.logs());
}
