//! Host integration: the node API server (`keel::api::server`) on
//! 127.0.0.1, with Talos's own machine CA (a `talosctl gen config`
//! fixture, Ed25519) as `machine.ca`, against real clients: `curl` and
//! Keel's own client reading a talosconfig.
//!
//! Security, one case each: no client certificate, a certificate from
//! another CA, an expired one, one without a role are all refused; roles
//! limit what a certificate may do (reader reads, operator reboots, admin
//! bootstraps); a bootstrap where it cannot be done is refused with the
//! reason. Then the reads: status, logs, logs followed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel::api::server::Server;
use keel::api::talosconfig::{self, Credentials};
use keel::api::tls::Names;
use keel::node::{EtcdSlot, NodeState};
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/talos");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap()
}

/// rcgen reads PKCS#8 under the standard label only.
fn relabel(pem: &str) -> String {
    pem.replace("ED25519 PRIVATE KEY", "PRIVATE KEY")
}

/// A client certificate and key (PEM) signed by `ca`, with these `O`
/// values, valid from `from` to `to` days from now.
fn client_cert(
    ca: (&str, &str),
    orgs: &[&str],
    from: i64,
    to: i64,
    ed25519: bool,
) -> (String, String) {
    let issuer =
        Issuer::from_ca_cert_pem(ca.0, KeyPair::from_pem(&relabel(ca.1)).unwrap()).unwrap();
    let key = if ed25519 {
        KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap()
    } else {
        KeyPair::generate().unwrap()
    };
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    for o in orgs {
        p.distinguished_name.push(DnType::OrganizationName, *o);
    }
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now + time::Duration::days(from);
    p.not_after = now + time::Duration::days(to);
    let cert = p.signed_by(&key, &issuer).unwrap();
    let mut key_pem = key.serialize_pem();
    if ed25519 {
        // What talosctl writes for its Ed25519 client key.
        key_pem = key_pem.replace("PRIVATE KEY", "ED25519 PRIVATE KEY");
    }
    (cert.pem(), key_pem)
}

/// A self-signed CA of someone else's.
fn other_ca() -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::OrganizationName, "talos");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, relabel(text)).unwrap();
        p
    }
}

/// `curl` with the machine CA and, if given, a client certificate; the
/// HTTP status (0: no answer) and the body.
fn curl(
    files: &Files,
    addr: SocketAddr,
    method: &str,
    path: &str,
    cert: Option<&(String, String)>,
) -> (u16, String) {
    let ca = files.write("ca.crt", &fixture("machine-ca.crt"));
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "10",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ])
    .arg("--cacert")
    .arg(&ca);
    if let Some((crt, key)) = cert {
        cmd.arg("--cert").arg(files.write("c.crt", crt));
        cmd.arg("--key").arg(files.write("c.key", key));
    }
    let out = cmd
        .arg(format!("https://{addr}{path}"))
        .output()
        .expect("curl (scripts/deps.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn node_api_authenticates_and_authorizes() {
    let ca = (fixture("machine-ca.crt"), fixture("machine-ca.key"));
    let (node, mut power) = NodeState::new(Instant::now());
    node.set_etcd(EtcdSlot::Worker);
    node.phase("mounts", 3, "3 mounted");
    // The server on its own thread and runtime; the clients here block.
    let (tx, rx) = std::sync::mpsc::channel();
    let (server_ca, server_node) = (ca.clone(), node.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let machine_ca = keel::x509::Ca::from_pem(
                &server_ca.0,
                &server_ca.1,
                "machine.ca.crt",
                "machine.ca.key",
            )
            .unwrap();
            let names = Names {
                hostname: "cp1".to_owned(),
                cert_sans: Vec::new(),
                addresses: vec!["127.0.0.1".parse().unwrap()],
            };
            let server = Arc::new(Server::new(machine_ca, &[], names, server_node).unwrap());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            server.serve(listener).await;
        });
    });
    let addr: SocketAddr = rx.recv().unwrap();
    let files = Files {
        dir: tempfile::tempdir().unwrap(),
    };
    let pair = |orgs: &[&str]| client_cert((&ca.0, &ca.1), orgs, -1, 30, false);
    let admin = pair(&["os:admin"]);
    let reader = pair(&["os:reader"]);
    let operator = pair(&["os:operator"]);
    let no_role = pair(&["talos"]);
    let expired = client_cert((&ca.0, &ca.1), &["os:admin"], -30, -1, false);
    let foreign_ca = other_ca();
    let foreign = client_cert((&foreign_ca.0, &foreign_ca.1), &["os:admin"], -1, 30, false);

    // (what, method, path, client certificate, HTTP status, body has)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Option<&'a (String, String)>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        ("no client certificate", "GET", "/v1/status", None, 0, ""),
        (
            "a certificate from another CA",
            "GET",
            "/v1/status",
            Some(&foreign),
            0,
            "",
        ),
        (
            "an expired certificate",
            "GET",
            "/v1/status",
            Some(&expired),
            0,
            "",
        ),
        (
            "a certificate without a role",
            "GET",
            "/v1/status",
            Some(&no_role),
            403,
            "needs the role os:reader",
        ),
        (
            "reader: status",
            "GET",
            "/v1/status",
            Some(&reader),
            200,
            "\"hostname\"",
        ),
        (
            "reader: logs",
            "GET",
            "/v1/logs?lines=5",
            Some(&reader),
            200,
            "",
        ),
        (
            "reader: reboot",
            "POST",
            "/v1/reboot",
            Some(&reader),
            403,
            "needs the role os:operator",
        ),
        (
            "operator: bootstrap",
            "POST",
            "/v1/bootstrap",
            Some(&operator),
            403,
            "needs the role os:admin",
        ),
        (
            "admin: bootstrap on a worker",
            "POST",
            "/v1/bootstrap",
            Some(&admin),
            409,
            "control-plane node",
        ),
        (
            "admin: unknown endpoint",
            "GET",
            "/v1/nope",
            Some(&admin),
            404,
            "no such endpoint",
        ),
        (
            "admin: etcd logs on a worker",
            "GET",
            "/v1/logs?source=etcd",
            Some(&admin),
            404,
            "etcd does not run",
        ),
    ];
    for (what, method, path, cert, status, has) in cases {
        let (got, body) = curl(&files, addr, method, path, cert);
        assert_eq!(got, status, "{what}: {body}");
        assert!(body.contains(has), "{what}: {body}");
    }
    assert!(power.try_recv().is_err(), "nothing asked to reboot yet");
    let (got, body) = curl(&files, addr, "POST", "/v1/reboot", Some(&operator));
    assert_eq!(got, 202, "operator: reboot: {body}");
    let req = power.try_recv().expect("a power request");
    assert!(!req.power_off);
    assert!(req.by.contains("os:operator"), "{}", req.by);

    // Keel's own client, with a talosconfig as talosctl writes it: the
    // Ed25519 key under `ED25519 PRIVATE KEY`.
    let (crt, key) = client_cert((&ca.0, &ca.1), &["os:admin"], -1, 30, true);
    assert!(key.contains("ED25519 PRIVATE KEY"));
    let creds = Credentials {
        context: "test".to_owned(),
        endpoints: vec![addr.to_string()],
        nodes: Vec::new(),
        ca: ca.0.clone(),
        crt,
        key,
    };
    let path = files.dir.path().join("talosconfig");
    std::fs::write(&path, talosconfig::render(&creds)).unwrap();
    let creds = talosconfig::load(&path, None).unwrap();
    let client = keel::api::client::NodeClient::new(&creds, &addr.to_string()).unwrap();
    let status = client.status().unwrap();
    assert_eq!(status.etcd.state, "worker");
    assert_eq!(status.boot[0].name, "mounts");
    let err = client.act("bootstrap").unwrap_err().to_string();
    assert!(err.contains("control-plane node"), "{err}");

    // Logs: the last lines, then a followed line as it is logged.
    keel::logbuf::keel().push(log::Level::Info, "before".to_owned());
    let mut got = Vec::new();
    client
        .logs("keel", Some(1), false, |l| {
            got.push(l.text);
            true
        })
        .unwrap();
    assert_eq!(got, ["before"]);
    let follower = std::thread::spawn(move || {
        let mut seen = Vec::new();
        client
            .logs("keel", Some(0), true, |l| {
                seen.push(l.text.clone());
                l.text != "followed"
            })
            .unwrap();
        seen
    });
    std::thread::sleep(Duration::from_millis(500));
    keel::logbuf::keel().push(log::Level::Warn, "followed".to_owned());
    let seen = follower.join().unwrap();
    assert_eq!(seen, ["followed"]);
}
