//! Host integration: three supervised etcd members (the real etcd, the
//! image's 3.5 from build/cache) on 127.0.0.11-13, driven
//! through `keel::etcd::Supervisor` as PID 1 drives one.
//!
//! One test function, in its own test binary: the reaper owns
//! `waitpid(-1)` for the whole process, so a second test running in
//! parallel in this process would have its children's statuses taken. The
//! scenarios run in order on one cluster, each a numbered step:
//! 1. all three reach Healthy (static bootstrap, `new`);
//! 2. `kill -9` one member's etcd → restarted with backoff, Healthy again;
//! 3. one member stopped, its data dir wiped, started again → it rejoins
//!    (same name, new member ID) and reads a key written before through
//!    another member;
//! 4. one member started on a data dir from a different cluster → a clear
//!    cluster ID mismatch error, retried, etcd not started, the others
//!    stay healthy;
//! 5. a member whose loopback client port is taken → etcd exits, and the
//!    supervisor's error names etcd's reason; healthy once it is free.
//!
//! Needs root only for nothing in particular (loopback addresses and ports
//! above 1024); needs the image's etcd (`make image`). Everything it starts is killed when
//! the supervisors drop, and its files live in a temporary directory.

mod common;
mod etcd_support;

use std::time::{Duration, Instant};

use etcd_client::Client;
use etcd_support::*;
use keel::etcd::health::Health;
use keel::supervise::Reaper;

const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

async fn client(endpoint: &str) -> Client {
    Client::connect([endpoint], None).await.unwrap()
}

async fn member_ids(endpoint: &str) -> Vec<(String, u64)> {
    members(endpoint)
        .await
        .into_iter()
        .map(|(name, id, _)| (name, id))
        .collect()
}

#[test]
fn three_members_restart_rejoin_and_mismatch() {
    require_etcd();
    common::log_to_stderr();
    let tmp = tempfile::Builder::new()
        .prefix("keel-etcd-")
        .tempdir_in("/tmp")
        .unwrap();
    let root = tmp.path().to_owned();
    let t0 = Instant::now();
    let step = |what: &str| eprintln!("=== {:>5.1} s: {what}", t0.elapsed().as_secs_f64());

    common::block_on(async move {
        let reaper = Reaper::start().unwrap();
        let specs = specs(3, 10, 22380, 22379, 22370);
        let plans: Vec<_> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (data, pki) = dirs(&root, s);
                plan(&yaml(&specs, i, "keel-test", None), s, &data, &pki)
            })
            .collect();
        let endpoint = |i: usize| plans[i].local_endpoint.clone();

        step("1. static bootstrap of three members");
        let mut sups: Vec<_> = plans.iter().map(|p| start(&reaper, p.clone())).collect();
        for (i, s) in sups.iter().enumerate() {
            wait_health(s, Health::Healthy, HEALTHY_WITHIN, &format!("m{}", i + 1)).await;
        }
        let before = member_ids(&endpoint(0)).await;
        assert_eq!(
            before.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["m1", "m2", "m3"]
        );
        client(&endpoint(0))
            .await
            .put("written-before", "through m1", None)
            .await
            .unwrap();

        step("2. kill -9 m2's etcd");
        let pid = sups[1].pid().expect("m2 runs");
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        // Restarted after the first backoff step (1 s), with a new pid.
        eventually(Duration::from_secs(10), "m2 respawned", || async {
            (sups[1].starts() == 2 && sups[1].pid().is_some_and(|p| p != pid)).then_some(())
        })
        .await;
        wait_health(&sups[1], Health::Healthy, HEALTHY_WITHIN, "m2 restarted").await;
        assert_eq!(
            member_ids(&endpoint(1)).await,
            before,
            "same members after a restart"
        );

        step("3. m3 loses its data and rejoins");
        sups[2].stop().await;
        assert_eq!(*sups[2].health().borrow(), Health::Stopped);
        assert!(sups[2].pid().is_none());
        std::fs::remove_dir_all(&plans[2].data_dir).unwrap();
        sups[2] = start(&reaper, plans[2].clone());
        wait_health(&sups[2], Health::Healthy, HEALTHY_WITHIN, "m3 rejoined").await;
        let after = member_ids(&endpoint(0)).await;
        let id = |v: &[(String, u64)], n: &str| v.iter().find(|(m, _)| m == n).map(|(_, id)| *id);
        assert_eq!(after.len(), 3, "{after:?}");
        assert_eq!(id(&after, "m1"), id(&before, "m1"));
        assert_eq!(id(&after, "m2"), id(&before, "m2"));
        assert!(
            id(&after, "m3").is_some(),
            "m3 is a member again: {after:?}"
        );
        assert_ne!(
            id(&after, "m3"),
            id(&before, "m3"),
            "m3 has a new member ID"
        );
        let got = client(&endpoint(2))
            .await
            .get("written-before", None)
            .await
            .unwrap();
        assert_eq!(got.kvs()[0].value_str().unwrap(), "through m1");

        step("4. m3 on a data dir from another cluster");
        sups[2].stop().await;
        // A one-member cluster named m3 at m3's peer URL, other token.
        let other_data = root.join("other-cluster");
        let solo = specs[2..].to_vec();
        let solo_plan = plan(
            &yaml(&solo, 0, "another-cluster", None),
            &solo[0],
            &other_data,
            &root.join("other-pki"),
        );
        let other = start(&reaper, solo_plan);
        wait_health(&other, Health::Healthy, HEALTHY_WITHIN, "the other cluster").await;
        other.stop().await;
        let mut stray = plans[2].clone();
        stray.data_dir = other_data;
        sups[2] = start(&reaper, stray);
        let err = eventually(Duration::from_secs(15), "a mismatch error", || async {
            sups[2]
                .last_error()
                .filter(|e| e.contains("cluster ID mismatch"))
        })
        .await;
        assert!(err.contains("remove it by hand"), "{err}");
        assert_eq!(
            sups[2].starts(),
            0,
            "etcd is not started on a foreign data dir"
        );
        // Retried with backoff (1 s, then 2 s): refused again, PID 1 fine.
        let tries = sups[2].attempts();
        eventually(Duration::from_secs(10), "a retry", || async {
            (sups[2].attempts() > tries).then_some(())
        })
        .await;
        assert_eq!(sups[2].starts(), 0);
        assert_ne!(*sups[2].health().borrow(), Health::Healthy);
        for (i, s) in sups[..2].iter().enumerate() {
            assert_eq!(*s.health().borrow(), Health::Healthy, "m{}", i + 1);
        }

        step("5. m2's loopback client port taken: the exit names why");
        sups[1].stop().await;
        let squatter = std::net::TcpListener::bind(("127.0.0.1", specs[1].local_port)).unwrap();
        sups[1] = start(&reaper, plans[1].clone());
        let err = eventually(
            Duration::from_secs(15),
            "an exit with its reason",
            || async { sups[1].last_error().filter(|e| e.contains("etcd exited")) },
        )
        .await;
        assert!(
            err.contains("address already in use") && err.contains("restarting in"),
            "{err}"
        );
        drop(squatter);
        wait_health(
            &sups[1],
            Health::Healthy,
            HEALTHY_WITHIN,
            "m2 once the port is free",
        )
        .await;
        step("done");
        for s in &sups {
            s.stop().await;
        }
        assert!(sups.iter().all(|s| s.pid().is_none()));
    });
    drop(tmp);
}
