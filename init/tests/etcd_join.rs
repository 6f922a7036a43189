//! Host integration: forming an etcd cluster without a member list, the
//! Talos way (`keel::etcd::join`), with three supervised members of the
//! real etcd on 127.0.0.31-33 and `cluster.controlPlane.endpoint` naming
//! the first:
//! 1. nobody bootstraps: no etcd runs anywhere, each node says where it
//!    waits;
//! 2. `bootstrap` on m1: m1 starts a cluster of one; m2 and m3 join it as
//!    learners (at once: etcd takes one learner at a time, the other
//!    retries) and are promoted; one cluster of three voters;
//! 3. `bootstrap` again, on m1 and on m3: refused, with the reason;
//! 4. m3 loses its data: it joins again as a learner, with a new member
//!    ID, and is promoted; still one cluster of three.
//!
//! Its own test binary: the reaper owns `waitpid(-1)` for the process.

mod common;
mod etcd_support;

use std::time::{Duration, Instant};

use etcd_support::*;
use keel::etcd::health::Health;
use keel::supervise::Reaper;

const WITHIN: Duration = Duration::from_secs(60);

/// The config of a member without `initialCluster`: plaintext (the mTLS
/// path is the QEMU test's), clients on the node address (so a joining
/// node can ask), the endpoint's host is m1.
fn discovered_yaml(name: &str) -> String {
    format!(
        "machine:\n  network:\n    hostname: {name}\ncluster:\n  controlPlane:\n    endpoint: https://127.0.0.31:6443\n  etcd:\n    allowInsecure: true\n    clientOnNodeAddress: true\n    advertisedSubnets: [127.0.0.0/8]\n    extraArgs:\n      quota-backend-bytes: \"67108864\"\n"
    )
}

#[test]
fn bootstrap_once_join_as_learners_rejoin_after_data_loss() {
    require_etcd();
    common::log_to_stderr();
    let tmp = tempfile::Builder::new()
        .prefix("keel-etcd-join-")
        .tempdir_in("/tmp")
        .unwrap();
    let root = tmp.path().to_owned();
    let t0 = Instant::now();
    let step = |what: &str| eprintln!("=== {:>5.1} s: {what}", t0.elapsed().as_secs_f64());

    common::block_on(async move {
        let reaper = Reaper::start().unwrap();
        // The seed is <endpoint host>:<client port>: every member serves
        // clients on its own address at 12379. Every port stays below the
        // kernel's ephemeral range (ip_local_port_range, 32768-60999 by
        // default): a port inside it can be taken by an outgoing
        // connection's source port while a member restarts, and a
        // kept-alive connection keeps it (the likeliest reason a CI run saw
        // m2 exit with status 1 at every restart for a minute).
        let specs = specs(3, 30, 12380, 12379, 12370);
        let plans: Vec<_> = specs
            .iter()
            .map(|s| {
                let (data, pki) = dirs(&root, s);
                plan(&discovered_yaml(&s.name), s, &data, &pki)
            })
            .collect();
        let endpoint = |i: usize| plans[i].local_endpoint.clone();

        step("1. no member list, nobody bootstraps: nothing starts");
        let mut sups: Vec<_> = plans.iter().map(|p| start(&reaper, p.clone())).collect();
        for (i, s) in sups.iter().enumerate() {
            let through =
                eventually(Duration::from_secs(10), "waiting", || async { s.waiting() }).await;
            assert!(
                through.contains("127.0.0.31:12379 (cluster.controlPlane.endpoint)"),
                "m{}: {through}",
                i + 1
            );
        }
        // A few rounds of asking (every 3 s): still no etcd anywhere.
        tokio::time::sleep(Duration::from_secs(7)).await;
        for (i, s) in sups.iter().enumerate() {
            assert_eq!(s.starts(), 0, "m{} started etcd without a bootstrap", i + 1);
            assert!(s.pid().is_none());
            assert_eq!(*s.health().borrow(), Health::Starting);
        }

        step("2. bootstrap m1; m2 and m3 join as learners");
        let said = sups[0].bootstrap().await.expect("m1 accepts the bootstrap");
        assert!(said.contains("new etcd cluster of one member"), "{said}");
        for (i, s) in sups.iter().enumerate() {
            wait_health(s, Health::Healthy, WITHIN, &format!("m{}", i + 1)).await;
        }
        let formed = members(&endpoint(0)).await;
        assert_eq!(
            formed
                .iter()
                .map(|(n, _, l)| (n.as_str(), *l))
                .collect::<Vec<_>>(),
            [("m1", false), ("m2", false), ("m3", false)],
            "three voters"
        );
        for i in 1..3 {
            assert_eq!(
                members(&endpoint(i)).await,
                formed,
                "m{} sees one cluster",
                i + 1
            );
        }
        step("three voters");

        step("3. a second bootstrap is refused, with the reason");
        for i in [0, 2] {
            let why = sups[i].bootstrap().await.expect_err("refused");
            assert!(why.contains("already running"), "m{}: {why}", i + 1);
        }

        step("4. m3 comes back on a tmpfs /var although its data was on a disk: refused");
        let old = formed[2].1;
        sups[2].stop().await;
        std::fs::remove_dir_all(&plans[2].data_dir).unwrap();
        let mut on_tmpfs = plans[2].clone();
        on_tmpfs.var_persistent = false;
        sups[2] = start(&reaper, on_tmpfs);
        let why = eventually(WITHIN, "the refusal", || async {
            sups[2].last_error().filter(|e| e.contains("KEEL-VAR"))
        })
        .await;
        assert!(why.contains("not removing the member"), "{why}");
        assert_eq!(
            members(&endpoint(0)).await,
            formed,
            "nothing removed while the disk is missing"
        );

        step("5. m3's disk is back, empty (replaced): it joins again");
        sups[2].stop().await;
        sups[2] = start(&reaper, plans[2].clone());
        wait_health(&sups[2], Health::Healthy, WITHIN, "m3 after data loss").await;
        let after = members(&endpoint(0)).await;
        assert_eq!(
            after
                .iter()
                .map(|(n, _, l)| (n.as_str(), *l))
                .collect::<Vec<_>>(),
            [("m1", false), ("m2", false), ("m3", false)],
            "{after:?}"
        );
        assert_ne!(after[2].1, old, "m3 has a new member ID");
        assert_eq!(after[..2], formed[..2]);
        // It knows its peers now (written once it was a voter).
        let peers = keel::etcd::join::read_peers(&keel::etcd::join::peers_file(&plans[2]));
        assert!(
            peers.contains(&"http://127.0.0.31:12379".to_owned()),
            "{peers:?}"
        );

        step("done");
        for s in &sups {
            s.stop().await;
        }
    });
    drop(tmp);
}
