//! Tables: config text and node addresses → etcd flags, or the error.

use std::net::IpAddr;
use std::path::PathBuf;

use base64::Engine;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::*;
use crate::config::types::MemberName;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A CA and two leaf certificates signed by it (PEM), made with rcgen.
struct Certs {
    ca: String,
    peer: (String, String),
    server: (String, String),
    other_key: String,
}

fn certs() -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = || {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["10.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Certs {
        ca: ca.pem(),
        peer: leaf(),
        server: leaf(),
        other_key: KeyPair::generate().unwrap().serialize_pem(),
    }
}

const THREE: &str = "machine:\n  network:\n    hostname: node1\ncluster:\n  etcd:\n    allowInsecure: true\n    initialCluster:\n      node1: http://10.0.0.1:2380\n      node2: http://10.0.0.2:2380\n      node3: http://10.0.0.3:2380\n";

fn rt(addrs: &[&str]) -> Runtime {
    Runtime::new(
        addrs.iter().map(|a| a.parse::<IpAddr>().unwrap()).collect(),
        PathBuf::from("/var/lib/etcd"),
        PathBuf::from("/pki"),
    )
}

fn plan(yaml: &str, addrs: &[&str]) -> Result<Plan, ArgsError> {
    let parsed = crate::config::parse(yaml).unwrap_or_else(|e| panic!("{yaml}\n{e}"));
    Plan::from_config(&parsed.config, &rt(addrs))
}

const BASE_ARGS: &[&str] = &[
    "--name=node1",
    "--data-dir=/var/lib/etcd",
    "--listen-peer-urls=http://10.0.0.1:2380",
    "--initial-advertise-peer-urls=http://10.0.0.1:2380",
];

#[test]
fn rendering() {
    let cluster3 = "--initial-cluster=node1=http://10.0.0.1:2380,node2=http://10.0.0.2:2380,node3=http://10.0.0.3:2380";
    let tail = [
        cluster3,
        "--initial-cluster-state=new",
        "--initial-cluster-token=keel",
        "--pre-vote=true",
    ];
    let loopback_only = [
        "--listen-client-urls=http://127.0.0.1:2379",
        "--advertise-client-urls=http://127.0.0.1:2379",
    ];
    let cat = |parts: &[&[&str]]| -> Vec<String> {
        parts
            .iter()
            .flat_map(|p| p.iter().map(|s| s.to_string()))
            .collect()
    };
    let cases: Vec<(&str, String, Vec<&str>, Vec<String>)> = vec![
        (
            "static 3 members, clients on loopback",
            THREE.to_owned(),
            vec!["10.0.0.1"],
            cat(&[BASE_ARGS, &loopback_only, &tail]),
        ),
        (
            "the node address is found among several",
            THREE.to_owned(),
            vec!["192.168.1.5", "10.0.0.1"],
            cat(&[BASE_ARGS, &loopback_only, &tail]),
        ),
        (
            "memberName wins over hostname; clients on the node address too",
            THREE.replace("  etcd:\n", "  etcd:\n    memberName: node1\n    clientOnNodeAddress: true\n    initialClusterToken: prod\n")
                .replace("hostname: node1", "hostname: other"),
            vec!["10.0.0.1"],
            cat(&[
                BASE_ARGS,
                &[
                    "--listen-client-urls=http://0.0.0.0:2379",
                    "--advertise-client-urls=http://10.0.0.1:2379",
                    cluster3,
                    "--initial-cluster-state=new",
                    "--initial-cluster-token=prod",
                    "--pre-vote=true",
                ],
            ]),
        ),
        (
            "extraArgs replace in place, append the rest in name order",
            THREE.replace(
                "  etcd:\n",
                "  etcd:\n    extraArgs:\n      quota-backend-bytes: \"67108864\"\n      --advertise-client-urls: http://10.0.0.1:2379\n      auto-compaction-retention: \"1\"\n",
            ),
            vec!["10.0.0.1"],
            cat(&[
                BASE_ARGS,
                &[
                    "--listen-client-urls=http://127.0.0.1:2379",
                    "--advertise-client-urls=http://10.0.0.1:2379",
                ],
                &tail,
                &["--auto-compaction-retention=1", "--quota-backend-bytes=67108864"],
            ]),
        ),
        (
            "listenSubnets adds addresses; peer port from the URL",
            "machine:\n  network:\n    hostname: a\ncluster:\n  etcd:\n    allowInsecure: true\n    listenSubnets: [10.0.0.0/8, \"!10.9.0.0/16\"]\n    initialCluster:\n      a: http://10.0.0.1:12380\n".to_owned(),
            vec!["10.0.0.1", "10.1.0.1", "10.9.0.1", "192.168.0.1"],
            vec![
                "--name=a".into(),
                "--data-dir=/var/lib/etcd".into(),
                "--listen-peer-urls=http://10.0.0.1:12380,http://10.1.0.1:12380".into(),
                "--initial-advertise-peer-urls=http://10.0.0.1:12380".into(),
                loopback_only[0].into(),
                loopback_only[1].into(),
                "--initial-cluster=a=http://10.0.0.1:12380".into(),
                "--initial-cluster-state=new".into(),
                "--initial-cluster-token=keel".into(),
                "--pre-vote=true".into(),
            ],
        ),
        (
            "single member without initialCluster: advertisedSubnets picks the address",
            "machine:\n  network:\n    hostname: solo\ncluster:\n  etcd:\n    allowInsecure: true\n    advertisedSubnets: [\"!10.0.0.0/8\"]\n".to_owned(),
            vec!["10.0.0.1", "192.168.0.7"],
            vec![
                "--name=solo".into(),
                "--data-dir=/var/lib/etcd".into(),
                "--listen-peer-urls=http://192.168.0.7:2380".into(),
                "--initial-advertise-peer-urls=http://192.168.0.7:2380".into(),
                loopback_only[0].into(),
                loopback_only[1].into(),
                "--initial-cluster=solo=http://192.168.0.7:2380".into(),
                "--initial-cluster-state=new".into(),
                "--initial-cluster-token=keel".into(),
                "--pre-vote=true".into(),
            ],
        ),
        (
            "IPv6 peer URL",
            "cluster:\n  etcd:\n    allowInsecure: true\n    memberName: v6\n    clientOnNodeAddress: true\n    initialCluster:\n      v6: http://[fd00::1]:2380\n".to_owned(),
            vec!["fd00::1"],
            vec![
                "--name=v6".into(),
                "--data-dir=/var/lib/etcd".into(),
                "--listen-peer-urls=http://[fd00::1]:2380".into(),
                "--initial-advertise-peer-urls=http://[fd00::1]:2380".into(),
                "--listen-client-urls=http://[::]:2379".into(),
                "--advertise-client-urls=http://[fd00::1]:2379".into(),
                "--initial-cluster=v6=http://[fd00::1]:2380".into(),
                "--initial-cluster-state=new".into(),
                "--initial-cluster-token=keel".into(),
                "--pre-vote=true".into(),
            ],
        ),
    ];
    for (what, yaml, addrs, want) in cases {
        let p = plan(&yaml, &addrs).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(p.args(&p.static_start()), want, "{what}");
    }
}

#[test]
fn existing_start_and_endpoints() {
    let yaml = THREE.replace("  etcd:\n", "  etcd:\n    clientOnNodeAddress: true\n");
    let p = plan(&yaml, &["10.0.0.1"]).unwrap();
    let start = Start {
        state: ClusterState::Existing,
        initial_cluster: vec![
            Member {
                name: "node2".into(),
                peer_url: "http://10.0.0.2:2380".into(),
            },
            Member {
                name: "node1".into(),
                peer_url: "http://10.0.0.1:2380".into(),
            },
        ],
        learner: None,
    };
    let args = p.args(&start);
    assert!(args.contains(&"--initial-cluster-state=existing".to_owned()));
    assert!(args.contains(
        &"--initial-cluster=node2=http://10.0.0.2:2380,node1=http://10.0.0.1:2380".to_owned()
    ));
    assert_eq!(p.local_endpoint, "http://127.0.0.1:2379");
    assert_eq!(
        p.peer_endpoints,
        [
            ("node2".to_owned(), "http://10.0.0.2:2379".to_owned()),
            ("node3".to_owned(), "http://10.0.0.3:2379".to_owned()),
        ]
    );
    assert!(p.overridden().is_empty());
}

fn tls_yaml(ca: &str, peer: (&str, &str), server: (&str, &str)) -> String {
    format!(
        "machine:\n  network:\n    hostname: node1\ncluster:\n  etcd:\n    ca:\n      crt: {}\n    peer:\n      crt: {}\n      key: {}\n    server:\n      crt: {}\n      key: {}\n    initialCluster:\n      node1: https://10.0.0.1:2380\n      node2: https://10.0.0.2:2380\n",
        b64(ca),
        b64(peer.0),
        b64(peer.1),
        b64(server.0),
        b64(server.1),
    )
}

#[test]
fn tls_flags_and_client_identity() {
    let c = certs();
    let yaml = tls_yaml(&c.ca, (&c.peer.0, &c.peer.1), (&c.server.0, &c.server.1));
    let p = plan(&yaml, &["10.0.0.1"]).unwrap();
    let args = p.args(&p.static_start());
    let want = [
        // With TLS, clients are served on every address by default.
        "--listen-client-urls=https://0.0.0.0:2379",
        "--advertise-client-urls=https://10.0.0.1:2379",
        "--client-cert-auth=true",
        "--cert-file=/pki/server.crt",
        "--key-file=/pki/server.key",
        "--trusted-ca-file=/pki/ca.crt",
        "--peer-client-cert-auth=true",
        "--peer-cert-file=/pki/peer.crt",
        "--peer-key-file=/pki/peer.key",
        "--peer-trusted-ca-file=/pki/ca.crt",
    ];
    for w in want {
        assert!(args.contains(&w.to_owned()), "{w} missing from {args:?}");
    }
    let m = p.tls.as_ref().unwrap();
    assert_eq!(m.peer.as_ref().unwrap().key, c.peer.1);
    let id = p.client_tls.as_ref().unwrap().identity.as_ref().unwrap();
    assert_eq!(id.crt, c.peer.0, "the client presents the peer certificate");
    assert_eq!(p.peer_endpoints[0].1, "https://10.0.0.2:2379");
}

#[test]
fn errors() {
    let c = certs();
    let garbage_cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let garbage_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    let peer = (c.peer.0.as_str(), c.peer.1.as_str());
    let server = (c.server.0.as_str(), c.server.1.as_str());
    let cases: Vec<(&str, String, Vec<&str>, &str)> = vec![
        ("peer URL not on this node", THREE.to_owned(), vec!["10.0.0.9"],
            "cluster.etcd.initialCluster.node1: peer URL http://10.0.0.1:2380 is not on this node, expected one of its addresses: 10.0.0.9"),
        ("no addresses at all", THREE.to_owned(), vec![],
            "expected one of its addresses: (none)"),
        ("host name for this node", THREE.replace("http://10.0.0.1:2380", "http://node1.example:2380"), vec!["10.0.0.1"],
            "cluster.etcd.initialCluster.node1: this node's peer URL http://node1.example:2380 has a host name, expected an IP address"),
        ("advertisedSubnets excludes the address", THREE.replace("  etcd:\n", "  etcd:\n    advertisedSubnets: [\"!10.0.0.0/24\"]\n"), vec!["10.0.0.1"],
            "cluster.etcd.advertisedSubnets (!10.0.0.0/24) does not select 10.0.0.1"),
        ("single member, nothing selected", "cluster:\n  etcd:\n    allowInsecure: true\n    advertisedSubnets: [172.16.0.0/12]\n".to_owned(), vec!["10.0.0.1"],
            "no node address for etcd to advertise, expected an address in 172.16.0.0/12"),
        ("https peer URL without peer TLS", THREE.replace("node2: http://", "node2: https://"), vec!["10.0.0.1"],
            "cluster.etcd.initialCluster.node2: peer URL https://10.0.0.2:2380 is https:// but cluster.etcd.peer is not set, expected http://"),
        ("http peer URL with peer TLS", tls_yaml(&c.ca, peer, server).replace("node2: https://", "node2: http://"), vec!["10.0.0.1"],
            "cluster.etcd.initialCluster.node2: peer URL http://10.0.0.2:2380 is http:// but cluster.etcd.peer is set, expected https://"),
        ("peer without CA", tls_yaml(&c.ca, peer, server).replace(&format!("    ca:\n      crt: {}\n", b64(&c.ca)), ""), vec!["10.0.0.1"],
            "cluster.etcd.peer is set but cluster.etcd.ca is not"),
        ("CA that does not parse", tls_yaml(garbage_cert, peer, server), vec!["10.0.0.1"],
            "cluster.etcd.ca.crt is not a usable certificate"),
        ("peer certificate that does not parse", tls_yaml(&c.ca, (garbage_cert, peer.1), server), vec!["10.0.0.1"],
            "cluster.etcd.peer.crt is not a usable certificate"),
        ("server key that does not parse", tls_yaml(&c.ca, peer, (server.0, garbage_key)), vec!["10.0.0.1"],
            "cluster.etcd.server.key is not a usable private key"),
        ("peer key of another certificate", tls_yaml(&c.ca, (peer.0, &c.other_key), server), vec!["10.0.0.1"],
            "cluster.etcd.peer.key does not belong to the certificate in cluster.etcd.peer.crt"),
        ("extra arg that is no flag", THREE.replace("  etcd:\n", "  etcd:\n    extraArgs:\n      \"a b\": x\n"), vec!["10.0.0.1"],
            "cluster.etcd.extraArgs: \"a b\" is not a flag name"),
        ("no etcd section", "machine:\n  type: controlplane\n".to_owned(), vec!["10.0.0.1"],
            "cluster.etcd is not set"),
    ];
    for (what, yaml, addrs, want) in cases {
        match plan(&yaml, &addrs) {
            Ok(p) => panic!("{what}: expected an error, got {p:?}"),
            Err(e) => assert!(e.to_string().contains(want), "{what}: {e}"),
        }
    }
}

/// Errors the config layer already reports, for configs built in code.
#[test]
fn errors_behind_the_config_layer() {
    let parsed = crate::config::parse(THREE).unwrap();
    let mut cfg = parsed.config;
    let etcd = cfg.cluster.etcd.as_mut().unwrap();
    etcd.member_name = Some(MemberName::try_from("node9".to_owned()).unwrap());
    let e = Plan::from_config(&cfg, &rt(&["10.0.0.1"])).unwrap_err();
    assert_eq!(
        e,
        ArgsError::NotInInitialCluster {
            name: "node9".into(),
            members: "node1, node2, node3".into()
        }
    );

    let mut cfg = crate::config::parse(THREE).unwrap().config;
    let etcd = cfg.cluster.etcd.as_mut().unwrap();
    let url = etcd.initial_cluster.values().next().unwrap().clone();
    let last = etcd.initial_cluster.keys().last().unwrap().clone();
    etcd.initial_cluster.insert(last, url);
    let e = Plan::from_config(&cfg, &rt(&["10.0.0.1"])).unwrap_err();
    assert!(matches!(e, ArgsError::DuplicatePeerUrl { .. }), "{e}");

    let mut cfg = crate::config::parse(THREE).unwrap().config;
    cfg.machine.network.hostname = None;
    let e = Plan::from_config(&cfg, &rt(&["10.0.0.1"])).unwrap_err();
    assert_eq!(e, ArgsError::NoMemberName);

    // extraArgs (keel validate names them too: config/tests/broken.rs).
    let cases = [
        ("data-dir", "Keel sets --data-dir itself"),
        (
            "--force-new-cluster",
            "refused: every start of etcd would make this node a cluster of one",
        ),
    ];
    for (flag, want) in cases {
        let mut cfg = crate::config::parse(THREE).unwrap().config;
        let etcd = cfg.cluster.etcd.as_mut().unwrap();
        etcd.extra_args.insert(flag.to_owned(), "true".to_owned());
        let e = Plan::from_config(&cfg, &rt(&["10.0.0.1"])).unwrap_err();
        assert!(e.to_string().contains(want), "{flag}: {e}");
    }
}

#[test]
fn key_material_never_in_errors_or_debug() {
    let c = certs();
    let yaml = tls_yaml(&c.ca, (&c.peer.0, &c.other_key), (&c.server.0, &c.server.1));
    let e = plan(&yaml, &["10.0.0.1"]).unwrap_err().to_string();
    assert!(!e.contains("PRIVATE"), "{e}");
    let ok = tls_yaml(&c.ca, (&c.peer.0, &c.peer.1), (&c.server.0, &c.server.1));
    let dbg = format!("{:?}", plan(&ok, &["10.0.0.1"]).unwrap());
    assert!(!dbg.contains("PRIVATE KEY"), "{dbg}");
}

/// Talos's own etcd CA (SEC1 key), base64 as in a Talos config.
fn talos_ca() -> (String, String) {
    let read = |n: &str| {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/talos")
            .join(n);
        std::fs::read_to_string(p).unwrap()
    };
    (b64(&read("etcd-ca.crt")), b64(&read("etcd-ca.key")))
}

/// A Talos config's etcd section: only the CA. Keel issues the rest, and
/// every listener is TLS with client-certificate auth.
#[test]
fn certificates_issued_from_the_ca() {
    let (crt, key) = talos_ca();
    let yaml = format!(
        "machine:\n  network:\n    hostname: node1\ncluster:\n  etcd:\n    clientOnNodeAddress: true\n    ca:\n      crt: {crt}\n      key: {key}\n    initialCluster:\n      node1: https://10.0.0.1:2380\n      node2: https://10.0.0.2:2380\n"
    );
    let mut p = plan(&yaml, &["10.0.0.1"]).unwrap();
    assert!(p.issue.is_some() && p.tls.is_none() && !p.insecure);
    p.issue_certificates(
        "node1",
        &["10.0.0.1".parse().unwrap()],
        &["10.0.0.100".parse().unwrap()],
    )
    .unwrap();
    let m = p.tls.as_ref().unwrap();
    let (server, peer, client) = (
        m.server.as_ref().unwrap(),
        m.peer.as_ref().unwrap(),
        m.client.as_ref().unwrap(),
    );
    for pair in [server, peer, client] {
        check_pair(&pair.crt, &pair.key, "crt", "key").unwrap();
    }
    let sans = |pem: &str| -> Vec<String> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
        use x509_parser::extensions::GeneralName;
        let name = |n: &GeneralName| match n {
            GeneralName::IPAddress(b) => match b.len() {
                4 => format!(
                    "IPAddress({})",
                    IpAddr::from(<[u8; 4]>::try_from(*b).unwrap())
                ),
                _ => format!(
                    "IPAddress({})",
                    IpAddr::from(<[u8; 16]>::try_from(*b).unwrap())
                ),
            },
            other => other.to_string(),
        };
        c.subject_alternative_name()
            .unwrap()
            .map(|s| s.value.general_names.iter().map(name).collect())
            .unwrap_or_default()
    };
    assert_eq!(
        sans(&server.crt),
        [
            "DNSName(node1)",
            "DNSName(localhost)",
            "IPAddress(10.0.0.1)",
            "IPAddress(10.0.0.100)",
            "IPAddress(127.0.0.1)",
            "IPAddress(::1)"
        ]
    );
    assert_eq!(sans(&peer.crt), ["DNSName(node1)", "IPAddress(10.0.0.1)"]);
    assert!(sans(&client.crt).is_empty());
    let args = p.args(&p.static_start());
    for w in [
        "--listen-peer-urls=https://10.0.0.1:2380",
        "--listen-client-urls=https://0.0.0.0:2379",
        "--advertise-client-urls=https://10.0.0.1:2379",
        "--client-cert-auth=true",
        "--peer-client-cert-auth=true",
        "--trusted-ca-file=/pki/ca.crt",
        "--peer-trusted-ca-file=/pki/ca.crt",
    ] {
        assert!(args.contains(&w.to_owned()), "{w} missing from {args:?}");
    }
    let ct = p.client_tls.as_ref().unwrap();
    assert_eq!(
        ct.identity.as_ref().unwrap(),
        client,
        "Keel's client presents its own certificate"
    );
    assert_eq!(ct.dir.as_deref(), Some(std::path::Path::new("/pki")));
    let dbg = format!("{p:?}");
    assert!(!dbg.contains("PRIVATE KEY"), "{dbg}");
}

/// Plaintext etcd on the node's address is refused without allowInsecure
/// (for a config built in code; the config layer says so first).
#[test]
fn plaintext_needs_allow_insecure() {
    let mut cfg = crate::config::parse(THREE).unwrap().config;
    let p = Plan::from_config(&cfg, &rt(&["10.0.0.1"])).unwrap();
    assert!(p.insecure);
    cfg.cluster.etcd.as_mut().unwrap().allow_insecure = false;
    let e = Plan::from_config(&cfg, &rt(&["10.0.0.1"])).unwrap_err();
    assert_eq!(
        e,
        ArgsError::Insecure {
            addr: "10.0.0.1".parse().unwrap()
        }
    );
    assert!(e.to_string().contains("allowInsecure: true"), "{e}");
}

/// Without a member list, the advertised address: never link-local or
/// loopback unless `advertisedSubnets` names it; the VIP's (or the control-plane endpoint's) subnet first;
/// `advertisedSubnets` still rules.
#[test]
fn advertised_address_without_a_member_list() {
    let base =
        "machine:\n  network:\n    hostname: cp1\ncluster:\n  etcd:\n    allowInsecure: true\n";
    let nets: &[(&str, u8)] = &[
        ("fe80::5054:ff:fe00:11", 64),
        ("169.254.3.4", 16),
        ("127.0.0.31", 8),
        ("10.0.2.15", 24),
        ("10.5.0.11", 24),
    ];
    // (extra config, expected peer URL)
    let table: &[(&str, &str)] = &[
        ("", "http://10.0.2.15:2380"),
        ("  controlPlane:\n    endpoint: https://10.5.0.100:6443\n", "http://10.5.0.11:2380"),
        ("  controlPlane:\n    endpoint: https://cp.example:6443\n", "http://10.0.2.15:2380"),
        (
            "  controlPlane:\n    endpoint: https://10.5.0.100:6443\n  etcd:\n    advertisedSubnets: [10.0.2.0/24]\n",
            "http://10.0.2.15:2380",
        ),
        // Named explicitly, loopback is used (members sharing one host).
        (
            "  etcd:\n    advertisedSubnets: [127.0.0.0/8]\n",
            "http://127.0.0.31:2380",
        ),
    ];
    for (extra, want) in table {
        let yaml = if extra.contains("  etcd:") {
            format!(
                "{}{}",
                base.replace("  etcd:\n    allowInsecure: true\n", ""),
                extra.replace("  etcd:\n", "  etcd:\n    allowInsecure: true\n")
            )
        } else {
            format!("{base}{extra}")
        };
        let parsed = crate::config::parse(&yaml).unwrap_or_else(|e| panic!("{yaml}\n{e}"));
        let mut r = rt(&nets.iter().map(|(a, _)| *a).collect::<Vec<_>>());
        r.subnets = nets.iter().map(|(a, p)| (a.parse().unwrap(), *p)).collect();
        let p = Plan::from_config(&parsed.config, &r).unwrap();
        assert_eq!(p.peer_url, *want, "{yaml}");
    }
    // Only link-local and loopback: nothing to advertise yet.
    let parsed = crate::config::parse(base).unwrap();
    let err = Plan::from_config(&parsed.config, &rt(&["fe80::1", "169.254.1.1"])).unwrap_err();
    assert!(matches!(err, ArgsError::NoNodeAddress { .. }), "{err}");
}
