//! Helpers for the etcd host tests: configs for members on loopback
//! addresses, supervisors, deadlines, and test certificates.
//!
//! Every address in 127.0.0.0/8 is local on Linux (the kernel's `local
//! 127.0.0.0/8 dev lo` route), so each member gets its own 127.0.0.x for
//! its peer and node-client URLs, with no namespace or address to add. The
//! loopback client URL (127.0.0.1) cannot be shared by three members on one
//! host, so each gets its own port there ([`keel::etcd::Runtime`]).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use keel::etcd::health::Health;
use keel::etcd::{Plan, Runtime, Settings, Supervisor};
use keel::supervise::Reaper;

/// The etcd the image carries (Debian trixie's etcd-server 3.5, extracted
/// by image/fetch-debs.sh into the image cache), so the host tests run the
/// same version as the nodes; `KEEL_ETCD` names another binary.
pub fn etcd_binary() -> PathBuf {
    std::env::var_os("KEEL_ETCD")
        .filter(|v| !v.is_empty())
        .map_or_else(
            || {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../build/cache/etcd-server/usr/bin/etcd")
            },
            PathBuf::from,
        )
}

/// One member's fixed facts.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub ip: String,
    pub peer_port: u16,
    pub client_port: u16,
    pub local_port: u16,
}

/// TLS material per member, PEM.
#[derive(Clone)]
pub struct Pki {
    pub ca: String,
    /// Per member: ((peer crt, key), (server crt, key)).
    pub members: Vec<((String, String), (String, String))>,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The machine config of member `me` of `members`.
pub fn yaml(members: &[Spec], me: usize, token: &str, pki: Option<&Pki>) -> String {
    let scheme = if pki.is_some() { "https" } else { "http" };
    let mut y = format!(
        "machine:\n  network:\n    hostname: {}\ncluster:\n  etcd:\n    allowInsecure: {}\n    clientOnNodeAddress: true\n    initialClusterToken: {token}\n    extraArgs:\n      quota-backend-bytes: \"67108864\"\n    initialCluster:\n",
        members[me].name,
        pki.is_none()
    );
    for m in members {
        y += &format!("      {}: {scheme}://{}:{}\n", m.name, m.ip, m.peer_port);
    }
    if let Some(p) = pki {
        let ((pc, pk), (sc, sk)) = &p.members[me];
        y += &format!(
            "    ca:\n      crt: {}\n    peer:\n      crt: {}\n      key: {}\n    server:\n      crt: {}\n      key: {}\n",
            b64(&p.ca),
            b64(pc),
            b64(pk),
            b64(sc),
            b64(sk)
        );
    }
    y
}

pub fn plan(yaml: &str, spec: &Spec, data: &Path, pki_dir: &Path) -> Plan {
    let parsed = keel::config::parse(yaml).unwrap_or_else(|e| panic!("{yaml}\n{e}"));
    let mut rt = Runtime::new(
        vec![spec.ip.parse().unwrap()],
        data.to_owned(),
        pki_dir.to_owned(),
    );
    rt.client_port = spec.client_port;
    rt.local_client = SocketAddr::new([127, 0, 0, 1].into(), spec.local_port);
    // Three members share this host: each listens on its own address.
    rt.clients_on_any = false;
    Plan::from_config(&parsed.config, &rt).unwrap()
}

/// Settings for the tests: probe every 500 ms, so state changes show fast.
pub fn settings(plan: Plan) -> Settings {
    let mut s = Settings::new(etcd_binary(), plan);
    s.probe_interval = Duration::from_millis(500);
    s.probe_timeout = Duration::from_secs(2);
    s
}

pub fn start(reaper: &Reaper, plan: Plan) -> Supervisor {
    Supervisor::start(reaper.clone(), settings(plan))
}

/// Waits until `sup` reports `want`; on timeout panics with its last output.
pub async fn wait_health(sup: &Supervisor, want: Health, within: Duration, what: &str) {
    let mut rx = sup.health();
    let reached = tokio::time::timeout(within, rx.wait_for(|h| *h == want))
        .await
        .is_ok_and(|r| r.is_ok());
    if !reached {
        let out = sup.output();
        let tail = &out[out.len().saturating_sub(30)..];
        panic!(
            "{what}: not {want} within {within:?} (now {}, last error {:?}); etcd's last lines:\n{}",
            *rx.borrow(),
            sup.last_error(),
            tail.join("\n")
        );
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` at the deadline.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: timed out after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Specs for `n` members on 127.0.0.<base+1>...
pub fn specs(n: usize, base: u8, peer_port: u16, client_port: u16, local_base: u16) -> Vec<Spec> {
    (1..=u8::try_from(n).expect("a few members"))
        .map(|i| Spec {
            name: format!("m{i}"),
            ip: format!("127.0.0.{}", base + i),
            peer_port,
            client_port,
            local_port: local_base + u16::from(i),
        })
        .collect()
}

/// A CA and, per member, a peer and a server certificate for its address
/// and 127.0.0.1, usable for both server and client auth (as Talos's are).
pub fn make_pki(members: &[Spec]) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "keel test etcd CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |m: &Spec, role: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![m.ip.clone(), "127.0.0.1".to_owned()]).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, format!("{} {role}", m.name));
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca: ca.pem(),
        members: members
            .iter()
            .map(|m| (leaf(m, "peer"), leaf(m, "server")))
            .collect(),
    }
}

/// A member's data and PKI dirs under `root`.
pub fn dirs(root: &Path, spec: &Spec) -> (PathBuf, PathBuf) {
    (
        root.join(&spec.name).join("data"),
        root.join(&spec.name).join("pki"),
    )
}

/// Fails the test, naming what to run, when the etcd binary is missing:
/// a test that cannot run must not pass.
pub fn require_etcd() {
    let etcd = etcd_binary();
    assert!(
        etcd.exists(),
        "{} is missing: `make image` extracts etcd 3.5 from Debian trixie there (or set KEEL_ETCD)",
        etcd.display()
    );
}

/// `(name, id, learner)` of every member `endpoint` lists, sorted by name.
pub async fn members(endpoint: &str) -> Vec<(String, u64, bool)> {
    let mut c = etcd_client::Client::connect([endpoint], None)
        .await
        .unwrap();
    let list = c.member_list().await.unwrap();
    let mut v: Vec<(String, u64, bool)> = list
        .members()
        .iter()
        .map(|m| (m.name().to_owned(), m.id(), m.is_learner()))
        .collect();
    v.sort();
    v
}
