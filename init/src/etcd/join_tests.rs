use super::*;

const ME: &str = "https://10.5.0.12:2380";

fn member(id: u64, name: &str, n: u8, started: bool, learner: bool) -> Seen {
    Seen {
        id,
        name: name.to_owned(),
        peer_urls: vec![format!("https://10.5.0.{n}:2380")],
        client_urls: if started {
            vec![format!("https://10.5.0.{n}:2379")]
        } else {
            Vec::new()
        },
        is_learner: learner,
    }
}

/// The join decision table: data present/absent × members reachable or
/// not (and how they list this node) × learner state × a bootstrap asked.
#[test]
fn decision_table() {
    let one = vec![member(1, "cp1", 11, true, false)];
    let with_me_started = vec![
        member(1, "cp1", 11, true, false),
        member(2, "cp2", 12, true, false),
    ];
    let with_me_learner_started = vec![
        member(1, "cp1", 11, true, false),
        member(2, "cp2", 12, true, true),
    ];
    let with_me_unstarted_learner = vec![
        member(1, "cp1", 11, true, false),
        member(2, "", 12, false, true),
    ];
    let with_me_unstarted_voter = vec![
        member(1, "cp1", 11, true, false),
        member(2, "", 12, false, false),
    ];
    let name_elsewhere = vec![
        member(1, "cp1", 11, true, false),
        member(3, "cp2", 13, true, false),
    ];
    // (what, has data, members answered, bootstrap asked, expected)
    type Case<'a> = (&'a str, bool, Option<&'a [Seen]>, bool, Decision);
    let table: Vec<Case> = vec![
        (
            "fresh node, nobody answers: wait",
            false,
            None,
            false,
            Decision::Wait,
        ),
        (
            "fresh node, nobody answers, bootstrap asked",
            false,
            None,
            true,
            Decision::Bootstrap,
        ),
        (
            "fresh node, a cluster answers: join as a learner",
            false,
            Some(&one),
            false,
            Decision::AddLearner,
        ),
        (
            "fresh node, a cluster answers, bootstrap asked: join, never a second cluster",
            false,
            Some(&one),
            true,
            Decision::AddLearner,
        ),
        (
            "data lost: listed as a started voter",
            false,
            Some(&with_me_started),
            false,
            Decision::Replace {
                stale: member(2, "cp2", 12, true, false),
            },
        ),
        (
            "data lost while a learner: listed as a started learner",
            false,
            Some(&with_me_learner_started),
            false,
            Decision::Replace {
                stale: member(2, "cp2", 12, true, true),
            },
        ),
        (
            "an earlier add, never started (learner)",
            false,
            Some(&with_me_unstarted_learner),
            false,
            Decision::StartListed {
                id: 2,
                learner: true,
            },
        ),
        (
            "an earlier add, never started (voter, added by hand)",
            false,
            Some(&with_me_unstarted_voter),
            false,
            Decision::StartListed {
                id: 2,
                learner: false,
            },
        ),
        (
            "this node's name is another node's member",
            false,
            Some(&name_elsewhere),
            false,
            Decision::NameTaken {
                other: member(3, "cp2", 13, true, false),
            },
        ),
        (
            "data, nobody answers: restart from the WAL",
            true,
            None,
            false,
            Decision::Restart,
        ),
        (
            "data, nobody answers, bootstrap asked: restart, no new cluster",
            true,
            None,
            true,
            Decision::Restart,
        ),
        (
            "data, listed as a voter",
            true,
            Some(&with_me_started),
            false,
            Decision::Restart,
        ),
        (
            "data, listed as a learner: restart (then promote)",
            true,
            Some(&with_me_learner_started),
            false,
            Decision::Restart,
        ),
        (
            "data, not listed: removed",
            true,
            Some(&one),
            false,
            Decision::Removed,
        ),
    ];
    for (what, data, members, asked, want) in table {
        assert_eq!(decide("cp2", ME, data, members, asked), want, "{what}");
    }
}

#[test]
fn hosts_of_urls() {
    let table: &[(&str, Option<&str>)] = &[
        ("https://10.5.0.1:2379", Some("10.5.0.1")),
        ("http://[fd00::1]:2379", Some("fd00::1")),
        ("https://cp.example:2379/", Some("cp.example")),
        ("https://10.5.0.1", Some("10.5.0.1")),
        ("10.5.0.1:2379", None),
    ];
    for (url, want) in table {
        assert_eq!(host_of(url), *want, "{url}");
    }
}

fn plan(extra: &str) -> Plan {
    let yaml = format!(
        "machine:\n  network:\n    hostname: cp2\n    interfaces:\n      - interface: eth0\n        addresses: [10.5.0.12/24]\n        vip: {{ip: 10.5.0.100}}\ncluster:\n  etcd:\n    allowInsecure: true\n{extra}"
    );
    let cfg = crate::config::parse(&yaml).unwrap().config;
    let rt = super::super::args::Runtime::new(
        vec!["10.5.0.12".parse().unwrap()],
        PathBuf::from("/nonexistent/etcd"),
        PathBuf::from("/nonexistent/keel/etcd-pki"),
    );
    Plan::from_config(&cfg, &rt).unwrap()
}

/// Seeds: the control-plane endpoint's host, then the VIPs, then known
/// peers; the node's own address and duplicates are skipped.
#[tokio::test]
async fn seeds_become_targets() {
    let p = plan("  controlPlane:\n    endpoint: https://10.5.0.100:6443\n");
    let super::super::args::Formation::Discovered { seeds } = &p.formation else {
        panic!("no initialCluster is the discovered formation");
    };
    assert_eq!(
        seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ["10.5.0.100:2379 (cluster.controlPlane.endpoint)"],
        "the VIP is the endpoint's host: listed once"
    );
    let known = vec![
        "http://10.5.0.11:2379".to_owned(),
        "http://10.5.0.12:2379".to_owned(),
        "http://10.5.0.100:2379".to_owned(),
    ];
    let t = targets(&p, seeds, &known).await;
    assert_eq!(
        t,
        [
            (
                "cluster.controlPlane.endpoint".to_owned(),
                "http://10.5.0.100:2379".to_owned()
            ),
            ("known peer".to_owned(), "http://10.5.0.11:2379".to_owned()),
        ]
    );
    let p = plan("");
    let super::super::args::Formation::Discovered { seeds } = &p.formation else {
        panic!("discovered");
    };
    assert_eq!(seeds.len(), 1);
    assert_eq!(seeds[0].via, "VIP");
    assert!(describe_seeds(seeds, &[]).contains("10.5.0.100:2379 (VIP)"));
    assert!(describe_seeds(&[], &[]).contains("set cluster.controlPlane.endpoint"));
}

#[test]
fn known_peers_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("keel/etcd-peers");
    assert!(read_peers(&f).is_empty());
    let urls = vec![
        "https://10.5.0.11:2379".to_owned(),
        "https://10.5.0.13:2379".to_owned(),
    ];
    write_peers(&f, &urls).unwrap();
    assert_eq!(read_peers(&f), urls);
    std::fs::write(&f, "garbage\nhttps://10.5.0.14:2379\n\n").unwrap();
    assert_eq!(read_peers(&f), ["https://10.5.0.14:2379"]);
}

#[test]
fn voters_exclude_learners_and_self() {
    let list = vec![
        member(1, "cp1", 11, true, false),
        member(2, "cp2", 12, true, true),
        member(3, "cp3", 13, true, false),
    ];
    assert_eq!(voters(&list, 3), ["https://10.5.0.11:2379"],);
}
