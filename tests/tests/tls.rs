//! End to end under QEMU: three control-plane nodes whose configs are
//! written the Talos 1.12+ way, multi-document, with only
//! `cluster.etcd.ca` for TLS (and Keel's static member list):
//!
//! - links found by `LinkAliasConfig` (the switch NIC and the host NIC by
//!   MAC), addresses from `LinkConfig`, the VIP from `Layer2VIPConfig`,
//!   the hostname from `HostnameConfig`;
//! - each node issues its etcd certificates from the CA, and the cluster
//!   is healthy over mTLS (Keel's own probe authenticates with the client
//!   certificate it issued);
//! - exactly one MAC answers for the VIP, and a graceful power-off moves
//!   it;
//! - from the host, Debian's `etcdctl` with a client certificate signed by
//!   the CA writes and reads a key through the VIP (each node forwards a
//!   host port to the VIP; only the holder answers there), and without a
//!   certificate it is refused.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use keel_cluster::pki::Ca;
use keel_switch::{MacAddr, WhoHas};
use keel_tests::cluster::{first_garp, host_mac, l2_mac, node_ip, one_cluster, Cluster, Spec, VIP};

fn config(n: usize, ca: &Ca) -> String {
    format!(
        "version: v1alpha1
machine:
  type: controlplane
cluster:
  etcd:
    ca:
      crt: {crt}
      key: {key}
    clientOnNodeAddress: true
    initialCluster:
      node1: https://10.5.0.11:2380
      node2: https://10.5.0.12:2380
      node3: https://10.5.0.13:2380
---
apiVersion: v1alpha1
kind: HostnameConfig
auto: off
hostname: node{n}
---
apiVersion: v1alpha1
kind: LinkAliasConfig
name: net0
selector:
  match: mac(link.permanent_addr) == \"{l2}\"
---
apiVersion: v1alpha1
kind: LinkAliasConfig
name: host0
selector:
  match: mac(link.permanent_addr) == \"{host}\"
---
apiVersion: v1alpha1
kind: LinkConfig
name: net0
addresses:
  - address: {ip}/24
---
apiVersion: v1alpha1
kind: LinkConfig
name: host0
addresses:
  - address: 10.0.2.15/24
---
apiVersion: v1alpha1
kind: Layer2VIPConfig
name: {VIP}
link: net0
ttl: 5
",
        crt = ca.crt_b64(),
        key = ca.key_b64(),
        l2 = l2_mac(n),
        host = host_mac(n),
        ip = node_ip(n),
    )
}

fn mac_of(n: usize) -> MacAddr {
    l2_mac(n).parse().unwrap()
}

fn holder(c: &Cluster) -> usize {
    let macs = WhoHas::new(VIP, Duration::from_millis(500))
        .tries(60)
        .macs(&c.switch);
    match macs[..] {
        [m] => (1..=3).find(|&n| mac_of(n) == m).unwrap(),
        _ => c.fail(&format!(
            "want exactly one MAC answering for {VIP}, got {macs:?}"
        )),
    }
}

/// `etcdctl` (etcd-client, API v3) against `port` on the host, with the CA
/// and, when given, a client certificate.
fn etcdctl(dir: &Path, port: u16, with_cert: bool, args: &[&str]) -> Output {
    let mut cmd = Command::new(keel_tests::vipnet::etcdctl());
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=https://127.0.0.1:{port}"))
        .arg(format!("--cacert={}", dir.join("etcd-ca.crt").display()))
        .arg("--dial-timeout=5s")
        .arg("--command-timeout=10s");
    if with_cert {
        cmd.arg(format!("--cert={}", dir.join("etcdctl.crt").display()))
            .arg(format!("--key={}", dir.join("etcdctl.key").display()));
    }
    cmd.args(args).output().expect("run etcdctl")
}

#[test]
fn multi_document_configs_with_only_the_ca_run_etcd_over_mtls() {
    let _one = one_cluster();
    let ca = Ca::make().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("etcd-ca.crt"), &ca.crt).unwrap();
    ca.client_files(dir.path()).unwrap();
    let spec = |n: usize| Spec {
        host_api: true,
        forward_to: Some(VIP),
        config: Some(config(n, &ca)),
        ..Spec::default()
    };
    let c = Cluster::start([spec(1), spec(2), spec(3)]);

    // Certificates issued from the CA, and the cluster healthy over mTLS
    // (Cluster::start waited for "etcd is healthy" on every node).
    for n in 1..=3 {
        c.line_with(n, &["etcd: issued this node's peer, server and client certificates from cluster.etcd.ca (node", "valid 30 days"]);
        c.line_with(n, &["network: link alias net0 is "]);
        c.line_with(n, &["network: hostname node", "(from Config)"]);
        c.assert_no_line(n, "running WITHOUT TLS");
    }

    let h = holder(&c);
    let port = c.node(h).host_port.unwrap();
    // Through the VIP with a certificate: write, then read back.
    let ok = |out: Output, what: &str| -> String {
        if !out.status.success() {
            c.fail(&format!(
                "etcdctl {what}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The test key's value, read through `port` with a certificate.
    let value = |port: u16, what: &str| {
        ok(
            etcdctl(
                dir.path(),
                port,
                true,
                &["get", "keel/test", "--print-value-only"],
            ),
            what,
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = etcdctl(
            dir.path(),
            port,
            true,
            &["put", "keel/test", "through-the-vip"],
        );
        if out.status.success() || Instant::now() > deadline {
            ok(out, "put");
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let got = value(port, "get");
    c.expect_eq(
        got.trim(),
        "through-the-vip",
        "the value read through the VIP",
    );
    // Without a client certificate: refused.
    let out = etcdctl(dir.path(), port, false, &["get", "keel/test"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        c.fail(&format!(
            "etcdctl without a certificate was served: {}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    eprintln!(
        "without a certificate: {}",
        stderr.lines().last().unwrap_or("")
    );
    // A node that does not hold the VIP does not answer there.
    let other = (1..=3).find(|&n| n != h).unwrap();
    let out = etcdctl(
        dir.path(),
        c.node(other).host_port.unwrap(),
        true,
        &["get", "keel/test"],
    );
    c.expect_eq(
        &out.status.success(),
        &false,
        "a non-holder answering for the VIP",
    );

    // Graceful failover: power the holder off; another node announces.
    let since = Instant::now();
    c.power_off(h);
    let end = Instant::now() + Duration::from_secs(30);
    let new = loop {
        if let Some((at, mac)) = first_garp(&c.switch.frames_since(since), VIP, Some(mac_of(h))) {
            break ((1..=3).find(|&n| mac_of(n) == mac).unwrap(), at - since);
        }
        if Instant::now() > end {
            c.fail("no new holder after the power-off");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "graceful failover over mTLS: node{h} → node{} in {} ms",
        new.0,
        new.1.as_millis()
    );
    let macs = WhoHas::new(VIP, Duration::from_millis(500))
        .tries(10)
        .macs(&c.switch);
    c.expect_eq(&macs, &vec![mac_of(new.0)], "MACs after failover");
    // The value is still there, read through the VIP on the new holder.
    let port = c.node(new.0).host_port.unwrap();
    let got = value(port, "get after failover");
    c.expect_eq(got.trim(), "through-the-vip", "the value after failover");
}
