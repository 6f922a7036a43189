//! Three control-plane nodes under QEMU on one L2 segment (a
//! `keel-switch`): static addresses 10.5.0.11-13, a static etcd initial
//! cluster, optional VIPs, each node's config given inline. Shared by the
//! etcd and VIP end-to-end tests; the nodes themselves are booted by
//! [`keel_cluster::Cluster`] (the harness of `make run`), and this module
//! adds the test's configs, the host's way in and failure reports.
//!
//! # Reading and writing keys from the host
//!
//! The switch is a pure L2 segment: the host has no IP stack on it. The
//! node a test talks to gets a second NIC on QEMU user networking (slirp)
//! with `hostfwd=tcp:127.0.0.1:PORT-10.5.0.1N:2379`. slirp accepts on the
//! host's loopback and opens a TCP connection from its gateway (10.0.2.2)
//! to the node address, ARPing for it on the user link; Linux answers ARP
//! for any local address on any link (`arp_ignore=0`) and accepts a packet
//! for an address of another link (weak host model). etcd serves clients
//! on the node address (`clientOnNodeAddress: true`). The machine config
//! gives that NIC 10.0.2.15/24 (a config that names links leaves the
//! others unconfigured), so replies to 10.0.2.2 route back out of it. The
//! test's `etcd-client` requests thus travel host → slirp → the guest's
//! kernel → etcd over real TCP, and are ordinary gRPC requests the
//! cluster answers: nothing in the path is simulated.

use std::net::Ipv4Addr;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use keel_cluster::{Image, NodeConfig, NodeSetup, Options, Topology};
use keel_qemu::{Accel, Drive, Nic, Vm};
use keel_switch::{Frame, MacAddr};
use tempfile::TempDir;

use crate::etcd::Etcd;
use crate::{build_dir, free_local_port, BOOT_TIMEOUT};

/// etcd across three TCG VMs: healthy ~9 s after QEMU start when the
/// machine is idle (docs/ARCHITECTURE.md); generous for a loaded one.
pub const HEALTHY_TIMEOUT: Duration = Duration::from_secs(180);

/// Power button to QEMU exit: etcd gets up to 10 s to stop, then sync and
/// unmount.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);

/// How long etcd requests from the host are retried (a fresh slirp
/// forward, a leader election after a member left).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

pub use keel_cluster::disk::{DISK_BYTES, PARTITION_START};

/// One cluster at a time: three TCG VMs saturate this machine's two cores
/// while they boot (docs/ARCHITECTURE.md), even if the harness runs tests in
/// parallel. Taken first in every test, so it is released last.
static ONE_CLUSTER: Mutex<()> = Mutex::new(());

pub fn one_cluster() -> MutexGuard<'static, ()> {
    ONE_CLUSTER.lock().unwrap_or_else(|p| p.into_inner())
}

/// How one node is set up.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// `cluster.etcd.clientOnNodeAddress: true`: etcd also serves clients
    /// on the node address, which a rejoining member asks its peers on.
    pub client_on_node_address: bool,
    /// A second NIC forwarding a host loopback port to this node's etcd
    /// client port (module docs).
    pub host_api: bool,
    /// A raw virtio disk.
    pub disk: Option<PathBuf>,
    /// `vip: {ip: 10.5.0.100}` on the switch interface, and VLAN 7 on it
    /// (10.7.0.1N/24) with `vip: {ip: 10.7.0.100}`; both with this TTL.
    pub vip_ttl: Option<u32>,
    /// The whole machine config, instead of the one [`node_config`]
    /// writes, on a `KEEL-CONFIG` disk (a config with a CA is too long for
    /// the kernel command line's 2 KiB).
    pub config: Option<String>,
    /// Where the host port forwards to (default: the node's address),
    /// e.g. the VIP: only the node holding it answers there.
    pub forward_to: Option<Ipv4Addr>,
    /// A second host port forwarded to the node API (port 50443) at the
    /// node's address, on the same user NIC (needs its 10.0.2.15/24).
    pub node_api: bool,
}

impl Spec {
    /// A peer that serves the etcd client API on its node address.
    pub fn peer() -> Spec {
        Spec {
            client_on_node_address: true,
            ..Spec::default()
        }
    }

    /// A peer the test talks to from the host.
    pub fn reachable() -> Spec {
        Spec {
            host_api: true,
            ..Spec::peer()
        }
    }
}

/// The VIP of [`Spec::vip_ttl`] clusters, and the one on VLAN 7.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 100);
pub const VIP_VLAN: u16 = 7;
pub const VLAN_VIP: Ipv4Addr = Ipv4Addr::new(10, 7, 0, 100);

/// The first gratuitous ARP for `ip` among `frames` from a MAC other
/// than `not`: (when, who).
pub fn first_garp(
    frames: &[Frame],
    ip: Ipv4Addr,
    not: Option<MacAddr>,
) -> Option<(Instant, MacAddr)> {
    frames
        .iter()
        .filter_map(|f| Some((f.at, f.arp()?)))
        .find(|(_, a)| a.is_gratuitous() && a.sender_ip == ip && Some(a.sender_mac) != not)
        .map(|(at, a)| (at, a.sender_mac))
}

pub fn node_ip(n: usize) -> String {
    format!("10.5.0.1{n}")
}

/// The nodes' names, MACs and addresses (`make run`'s scheme around the
/// VIP: node`n` at 10.5.0.1`n`).
pub fn topology() -> Topology {
    Topology::new(3, VIP).expect("three nodes around 10.5.0.100")
}

/// The MAC of node `n`'s NIC on the switch.
pub fn l2_mac(n: usize) -> String {
    topology().nodes[n - 1].mac.clone()
}

/// The MAC of node `n`'s user-networking NIC (the host's way in).
pub fn host_mac(n: usize) -> String {
    format!("52:54:00:00:06:1{n}")
}

pub fn node_config(n: usize, spec: &Spec) -> String {
    let mut yaml = format!(
        "version: v1alpha1
machine:
  type: controlplane
  network:
    hostname: node{n}
    interfaces:
      - deviceSelector:
          hardwareAddr: \"{mac}\"
        addresses: [{ip}/24]
",
        mac = l2_mac(n),
        ip = node_ip(n),
    );
    if let Some(ttl) = spec.vip_ttl {
        yaml.push_str(&format!(
            "        vip:
          ip: {VIP}
          ttl: {ttl}
        vlans:
          - vlanId: {VIP_VLAN}
            addresses: [10.7.0.1{n}/24]
            vip:
              ip: {VLAN_VIP}
              ttl: {ttl}
"
        ));
    }
    if spec.host_api {
        yaml.push_str(&format!(
            "      - deviceSelector:
          hardwareAddr: \"{}\"
        addresses: [10.0.2.15/24]
",
            host_mac(n)
        ));
    }
    // Plain etcd on purpose: the tests read and write keys from the host
    // with a plain client (the mTLS path has its own test, tls.rs).
    yaml.push_str("cluster:\n  etcd:\n    allowInsecure: true\n");
    if spec.client_on_node_address {
        yaml.push_str("    clientOnNodeAddress: true\n");
    }
    yaml.push_str(
        "    initialCluster:
      node1: http://10.5.0.11:2380
      node2: http://10.5.0.12:2380
      node3: http://10.5.0.13:2380
",
    );
    yaml
}

/// What the test knows of node `n`'s current boot.
pub struct Node<'a> {
    pub spec: &'a Spec,
    /// Which boot of this node (1 = the first).
    pub boot: usize,
    /// The host port forwarded to this boot's etcd client port.
    pub host_port: Option<u16>,
    pub vm: &'a Vm,
}

/// Three nodes on their own switch, each test its own. Derefs to the
/// [`keel_cluster::Cluster`] underneath (`c.switch`, power actions).
pub struct Cluster {
    /// Dropped first: every QEMU is killed before the temp dir goes.
    inner: keel_cluster::Cluster,
    specs: Vec<Spec>,
    host_ports: Vec<Option<u16>>,
    _dir: TempDir,
}

impl Deref for Cluster {
    type Target = keel_cluster::Cluster;
    fn deref(&self) -> &keel_cluster::Cluster {
        &self.inner
    }
}

/// Node `n`'s devices and inline config for `spec`, with its etcd client
/// port forwarded from `host_port` and its node API from `api_port`.
fn setup(n: usize, spec: &Spec, host_port: Option<u16>, api_port: Option<u16>) -> NodeSetup {
    let target = spec
        .forward_to
        .map_or_else(|| node_ip(n), |ip| ip.to_string());
    let mut forwards: Vec<String> = Vec::new();
    if let Some(port) = host_port {
        forwards.push(format!("hostfwd=tcp:127.0.0.1:{port}-{target}:2379"));
    }
    if let Some(port) = api_port {
        forwards.push(format!(
            "hostfwd=tcp:127.0.0.1:{port}-{}:{}",
            node_ip(n),
            keel::api::PORT
        ));
    }
    let host_nic = (!forwards.is_empty()).then(|| {
        Nic::new(format!(
            "user,id=h0,ipv6=off,restrict=on,{}",
            forwards.join(",")
        ))
        .with_mac(host_mac(n))
    });
    let config = match &spec.config {
        Some(yaml) => NodeConfig::Disk(yaml.clone()),
        None => NodeConfig::Inline(node_config(n, spec)),
    };
    NodeSetup {
        config: Some(config),
        extra_nics: host_nic.into_iter().collect(),
        drives: spec
            .disk
            .iter()
            .map(|d| Drive::new(d).with_serial("keel-var"))
            .collect(),
        append: String::new(),
        api_port,
        initrd: None,
    }
}

impl Cluster {
    /// Boots node1..3 as `specs` say and waits until every node's etcd is
    /// healthy.
    pub fn start(specs: [Spec; 3]) -> Cluster {
        let c = Cluster::boot_all(specs);
        for n in 1..=3 {
            c.wait(n, 0, "etcd is healthy", HEALTHY_TIMEOUT);
        }
        c
    }

    /// Boots node1..3 as `specs` say and waits until each is ready (etcd
    /// may wait for a bootstrap).
    pub fn boot_all(specs: [Spec; 3]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let host_ports: Vec<Option<u16>> = specs
            .iter()
            .map(|s| s.host_api.then(free_local_port))
            .collect();
        let api_ports: Vec<Option<u16>> = specs
            .iter()
            .map(|s| s.node_api.then(free_local_port))
            .collect();
        let setups = specs
            .iter()
            .enumerate()
            .map(|(i, s)| setup(i + 1, s, host_ports[i], api_ports[i]))
            .collect();
        let opts = Options {
            image: Image::Keel,
            build: build_dir(),
            dir: dir.path().to_owned(),
            topology: topology(),
            setups,
            accel: Accel::default(),
            memory_mib: 384,
            append: String::new(),
        };
        let inner = keel_cluster::Cluster::start(opts).unwrap_or_else(|e| panic!("{e:#}"));
        let c = Cluster {
            inner,
            specs: specs.to_vec(),
            host_ports,
            _dir: dir,
        };
        for n in 1..=3 {
            c.wait(n, 0, "keel: ready in", BOOT_TIMEOUT);
        }
        c
    }

    /// The host port forwarded to node `n`'s API (`127.0.0.1:<port>`).
    pub fn api(&self, n: usize) -> String {
        match self.inner.api_port(n) {
            Some(p) => format!("127.0.0.1:{p}"),
            None => self.fail(&format!("node{n} has no node API port (Spec::node_api)")),
        }
    }

    pub fn node(&self, n: usize) -> Node<'_> {
        Node {
            spec: &self.specs[n - 1],
            boot: self.inner.boot_count(n),
            host_port: self.host_ports[n - 1],
            vm: self
                .inner
                .node_vm(n)
                .unwrap_or_else(|| self.fail(&format!("node{n} was never booted"))),
        }
    }

    /// The console log of node `n`'s current boot.
    pub fn log(&self, n: usize) -> String {
        self.node(n).vm.serial_log()
    }

    /// Waits for a console line of node `n`'s current boot, from byte
    /// `from`, containing `needle`; returns the line.
    pub fn wait(&self, n: usize, from: u64, needle: &str, timeout: Duration) -> String {
        match self.node(n).vm.wait_for_line_from(from, needle, timeout) {
            Ok(m) => m.line,
            Err(e) => self.fail(&format!("node{n} boot {}: {e}", self.node(n).boot)),
        }
    }

    /// The one console line of node `n`'s current boot containing every
    /// piece of `parts`.
    pub fn line_with(&self, n: usize, parts: &[&str]) -> String {
        let log = self.log(n);
        match log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            Some(l) => l.trim_end().to_owned(),
            None => self.fail(&format!(
                "node{n} boot {}: no console line with {parts:?}",
                self.node(n).boot
            )),
        }
    }

    pub fn assert_no_line(&self, n: usize, needle: &str) {
        if let Some(l) = self.log(n).lines().find(|l| l.contains(needle)) {
            self.fail(&format!(
                "node{n} boot {}: unexpected console line {:?}",
                self.node(n).boot,
                l.trim_end()
            ));
        }
    }

    /// An etcd client to node `n` through its host port.
    pub fn client(&self, n: usize) -> Etcd {
        let port = self.node(n).host_port.expect("node has a host port");
        let endpoint = format!("http://127.0.0.1:{port}");
        self.ok(Etcd::new(&endpoint))
    }

    /// `r`'s value, or a failure with every node's console lines.
    pub fn ok<T>(&self, r: anyhow::Result<T>) -> T {
        r.unwrap_or_else(|e| self.fail(&format!("{e:#}")))
    }

    /// Presses node `n`'s power button (QMP `system_powerdown`) and waits
    /// for Keel's shutdown to finish and QEMU to exit.
    pub fn power_off(&self, n: usize) {
        let vm = self.node(n).vm;
        let from = vm.serial_offset();
        if let Err(e) = self.inner.power_off(n) {
            self.fail(&format!("node{n}: system_powerdown: {e:#}"));
        }
        self.wait(n, from, "shutdown complete in", SHUTDOWN_TIMEOUT);
        match vm.wait_exit(SHUTDOWN_TIMEOUT) {
            Ok(status) if status.success() => {}
            Ok(status) => self.fail(&format!("node{n}: QEMU exited with {status}")),
            Err(e) => self.fail(&format!("node{n}: {e}")),
        }
        let log = vm.serial_log();
        if let Some(l) = log.lines().find(|l| l.contains("cannot unmount")) {
            self.fail(&format!("node{n}: shutdown left a mount: {l}"));
        }
    }

    /// Boots node `n` again after [`Cluster::power_off`]: the same config,
    /// disk, MAC and switch port, a new QEMU (the test boots use
    /// `-no-reboot`) and a new host port, and waits for `keel: ready`.
    pub fn boot_again(&mut self, n: usize) {
        let spec = self.specs[n - 1].clone();
        let port = spec.host_api.then(free_local_port);
        self.host_ports[n - 1] = port;
        let api = spec.node_api.then(free_local_port);
        let booted = self
            .inner
            .set_setup(n, setup(n, &spec, port, api))
            .and_then(|()| self.inner.boot(n));
        if let Err(e) = booted {
            self.fail(&format!("node{n}: boot again: {e:#}"));
        }
        self.wait(n, 0, "keel: ready in", BOOT_TIMEOUT);
    }

    /// Every boot's `keel` console lines, for a failure message.
    pub fn keel_lines(&self) -> String {
        let mut out = String::new();
        let current = (1..=3).filter_map(|n| {
            let vm = self.inner.node_vm(n)?;
            Some((
                format!("node{n} boot {}", self.inner.boot_count(n)),
                vm.serial_log(),
            ))
        });
        for (name, log) in self.inner.earlier.iter().cloned().chain(current) {
            out.push_str(&format!("=== {name}\n"));
            for l in log.lines().filter(|l| l.contains("keel")) {
                out.push_str(l.trim_end());
                out.push('\n');
            }
        }
        out
    }

    /// Fails with every node's console lines unless `got == want`.
    pub fn expect_eq<T: PartialEq + std::fmt::Debug + ?Sized>(
        &self,
        got: &T,
        want: &T,
        what: &str,
    ) {
        if got != want {
            self.fail(&format!("{what}: got {got:?}, want {want:?}"));
        }
    }

    pub fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n{}", self.keel_lines())
    }
}
