//! End to end under QEMU: a control plane formed the Talos way. Three
//! nodes whose configs carry no Keel extension, only what `talosctl gen
//! config` writes: Talos's own machine and etcd CAs (the fixtures from
//! Talos's test data), `cluster.controlPlane.endpoint` at the VIP, no etcd
//! member list. The real `keel` binary is the client, with a talosconfig
//! whose admin certificate the machine CA signed, through a host port
//! forwarded to each node's API.
//!
//! 1. Before any bootstrap: every node's etcd waits (status `waiting`)
//!    and no MAC answers ARP for the VIP, watched for 60 s.
//! 2. `keel bootstrap` on node1: node1 starts a cluster of one; node2 and
//!    node3 join it as learners and are promoted; exactly one MAC answers
//!    for the VIP and `keel status` on each node names that node as the
//!    holder; three voters, one cluster.
//! 3. `keel bootstrap` on node2: refused, with the reason.
//! 4. node3 (its /var a tmpfs) powered off and booted again, its data
//!    gone: it joins again as a learner (a new member ID, its stale entry
//!    removed), is promoted; still three voters of the same cluster.

use std::process::Command;
use std::time::{Duration, Instant};

use keel::api::status::Status;
use keel::api::talosconfig::{self, Credentials};
use keel_switch::{MacAddr, WhoHas};
use keel_tests::cluster::{
    host_mac, l2_mac, node_ip, one_cluster, Cluster, Spec, HEALTHY_TIMEOUT, VIP,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../init/tests/fixtures/talos");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn config(n: usize) -> String {
    format!(
        "version: v1alpha1
machine:
  type: controlplane
  ca:
    crt: {machine_crt}
    key: {machine_key}
  network:
    hostname: node{n}
    interfaces:
      - deviceSelector:
          hardwareAddr: \"{l2}\"
        addresses: [{ip}/24]
        vip:
          ip: {VIP}
      - deviceSelector:
          hardwareAddr: \"{host}\"
        addresses: [10.0.2.15/24]
cluster:
  controlPlane:
    endpoint: https://{VIP}:6443
  etcd:
    ca:
      crt: {etcd_crt}
      key: {etcd_key}
",
        machine_crt = b64(&fixture("machine-ca.crt")),
        machine_key = b64(&fixture("machine-ca.key")),
        etcd_crt = b64(&fixture("etcd-ca.crt")),
        etcd_key = b64(&fixture("etcd-ca.key")),
        l2 = l2_mac(n),
        host = host_mac(n),
        ip = node_ip(n),
    )
}

/// An admin talosconfig for the fixture machine CA.
fn talosconfig(dir: &std::path::Path) -> std::path::PathBuf {
    let ca = keel::x509::Ca::from_pem(
        &fixture("machine-ca.crt"),
        &fixture("machine-ca.key"),
        "machine-ca.crt",
        "machine-ca.key",
    )
    .unwrap();
    let admin = ca
        .issue(&keel::x509::Leaf {
            organization: vec!["os:admin".to_owned()],
            client: true,
            ..keel::x509::Leaf::default()
        })
        .unwrap();
    let creds = Credentials {
        context: "e2e".to_owned(),
        endpoints: Vec::new(),
        nodes: Vec::new(),
        ca: fixture("machine-ca.crt"),
        crt: admin.crt,
        key: admin.key,
    };
    let path = dir.join("talosconfig");
    std::fs::write(&path, talosconfig::render(&creds)).unwrap();
    path
}

struct Keel {
    talosconfig: std::path::PathBuf,
}

impl Keel {
    /// `keel --talosconfig F --nodes <node n's API> args...`: (exit code,
    /// stdout, stderr).
    fn run(&self, c: &Cluster, n: usize, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(keel_tests::init_binary())
            .arg("--talosconfig")
            .arg(&self.talosconfig)
            .args(["--nodes", &c.api(n)])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn status(&self, c: &Cluster, n: usize) -> Result<Status, String> {
        let (code, out, err) = self.run(c, n, &["status", "--json"]);
        if code != 0 {
            return Err(format!("exit {code}: {err}{out}"));
        }
        serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))
    }

    /// Polls node `n`'s status until `f` accepts it.
    fn until(
        &self,
        c: &Cluster,
        n: usize,
        what: &str,
        within: Duration,
        f: impl Fn(&Status) -> bool,
    ) -> Status {
        let end = Instant::now() + within;
        let mut last = String::new();
        while Instant::now() < end {
            match self.status(c, n) {
                Ok(s) if f(&s) => return s,
                Ok(s) => last = format!("etcd {:?}", s.etcd),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        c.fail(&format!(
            "node{n}: {what} not within {within:?}; last: {last}"
        ))
    }
}

fn mac_of(n: usize) -> MacAddr {
    l2_mac(n).parse().unwrap()
}

/// Three voters, nobody a learner; the member list.
fn voters(s: &Status) -> bool {
    s.etcd.state == "healthy"
        && s.etcd.members.len() == 3
        && s.etcd.members.iter().all(|m| !m.learner)
}

#[test]
fn bootstrap_once_join_as_learners_and_rejoin_after_data_loss() {
    let _one = one_cluster();
    let dir = tempfile::tempdir().unwrap();
    let keel = Keel {
        talosconfig: talosconfig(dir.path()),
    };
    let spec = |n: usize| Spec {
        config: Some(config(n)),
        node_api: true,
        ..Spec::default()
    };
    let mut c = Cluster::boot_all([spec(1), spec(2), spec(3)]);
    let t0 = Instant::now();
    let step = |what: &str| eprintln!("=== {:>6.1} s: {what}", t0.elapsed().as_secs_f64());

    step("1. nobody bootstraps: every etcd waits, nobody answers for the VIP");
    for n in 1..=3 {
        c.wait(n, 0, "etcd: not bootstrapped; waiting for a bootstrap request or a member to join through 10.5.0.100:2379 (cluster.controlPlane.endpoint)", HEALTHY_TIMEOUT);
        keel.until(&c, n, "etcd waiting", Duration::from_secs(60), |s| {
            s.etcd.state == "waiting"
        });
    }
    let watch_until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < watch_until {
        let macs = WhoHas::new(VIP, Duration::from_millis(500)).macs(&c.switch);
        if !macs.is_empty() {
            c.fail(&format!("{macs:?} answered for {VIP} before any bootstrap"));
        }
    }
    for n in 1..=3 {
        // The supervisor's spawn line names the state; none was spawned.
        c.assert_no_line(n, "initial-cluster-state");
        let s = keel.status(&c, n).unwrap_or_else(|e| c.fail(&e));
        c.expect_eq(
            s.etcd.state.as_str(),
            "waiting",
            &format!("node{n} after 60 s"),
        );
    }

    step("2. keel bootstrap on node1");
    let (code, out, err) = keel.run(&c, 1, &["bootstrap"]);
    if code != 0 || !out.contains("new etcd cluster of one member") {
        c.fail(&format!("bootstrap on node1: exit {code}: {out}{err}"));
    }
    for n in 2..=3 {
        c.wait(n, 0, "etcd: added this node as learner", HEALTHY_TIMEOUT);
        c.wait(n, 0, "etcd: promoted to a voting member", HEALTHY_TIMEOUT);
    }
    let mut formed = Vec::new();
    for n in 1..=3 {
        formed.push(keel.until(&c, n, "three voters", HEALTHY_TIMEOUT, voters));
    }
    let cluster_id = formed[0].etcd.cluster_id.clone();
    for s in &formed {
        c.expect_eq(&s.etcd.cluster_id, &cluster_id, "one cluster");
    }
    step("three voters");
    let macs = WhoHas::new(VIP, Duration::from_millis(500))
        .tries(120)
        .macs(&c.switch);
    let h = match macs[..] {
        [m] => (1..=3)
            .find(|&n| mac_of(n) == m)
            .unwrap_or_else(|| c.fail(&format!("{m} is no node"))),
        _ => c.fail(&format!("want exactly one MAC for {VIP}, got {macs:?}")),
    };
    let holder = format!("node{h}/node{h}");
    for n in 1..=3 {
        keel.until(&c, n, "the holder named", Duration::from_secs(30), |s| {
            s.vips.first().and_then(|v| v.holder.as_deref()) == Some(holder.as_str())
        });
    }
    step(&format!("VIP held by node{h}, named so by every node"));

    step("3. a second bootstrap, on node2: refused");
    let (code, out, err) = keel.run(&c, 2, &["bootstrap"]);
    if code == 0 || !err.contains("already running") {
        c.fail(&format!("second bootstrap: exit {code}: {out}{err}"));
    }

    step("4. node3 loses its data (tmpfs /var) and joins again");
    let old_id = formed[2].etcd.id.clone();
    c.power_off(3);
    c.boot_again(3);
    c.wait(
        3,
        0,
        "lists this node's peer URL as member",
        HEALTHY_TIMEOUT,
    );
    c.wait(3, 0, "etcd: added this node as learner", HEALTHY_TIMEOUT);
    c.wait(3, 0, "etcd: promoted to a voting member", HEALTHY_TIMEOUT);
    let after = keel.until(&c, 3, "three voters again", HEALTHY_TIMEOUT, voters);
    c.expect_eq(&after.etcd.cluster_id, &cluster_id, "the same cluster");
    if after.etcd.id == old_id {
        c.fail(&format!(
            "node3 kept its member ID {old_id:?} after losing its data"
        ));
    }
    let one = keel.until(
        &c,
        1,
        "three voters seen from node1",
        HEALTHY_TIMEOUT,
        voters,
    );
    c.expect_eq(&one.etcd.cluster_id, &cluster_id, "node1's cluster");
    step("done");
}
