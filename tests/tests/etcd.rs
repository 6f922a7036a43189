//! End to end under QEMU: three control-plane nodes on one L2 segment (a
//! `keel-switch`), static addresses 10.5.0.11-13, a static etcd initial
//! cluster:
//! - every node's supervised etcd reaches healthy (a linearizable read
//!   through the quorum succeeds on each);
//! - a node rebooted with a `KEEL-VAR` disk keeps its data: the disk is a
//!   GPT with one empty partition named `KEEL-VAR`, which Keel formats on
//!   the first boot and only mounts on the second; a key written before
//!   the reboot is read back from the same member (same member ID);
//! - a node rebooted on tmpfs comes back empty and rejoins by itself: it
//!   removes its stale member through a peer, adds itself again under the
//!   same name, and serves a key written before the reboot.
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

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use keel_qemu::{Drive, Nic, Vm};
use keel_switch::Switch;
use keel_tests::etcd::{retry, Etcd, MemberInfo};
use keel_tests::{boot_vm_with, free_local_port, BOOT_TIMEOUT};
use tempfile::TempDir;

/// etcd across three TCG VMs: healthy ~9 s after QEMU start when the
/// machine is idle (QEMU-NOTES); generous for a loaded one.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(180);

/// Power button to QEMU exit: etcd gets up to 10 s to stop, then sync and
/// unmount.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);

/// How long etcd requests from the host are retried (a fresh slirp
/// forward, a leader election after a member left).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The raw disk of the persistence test: etcd's WAL pre-allocates 64 MB
/// segments (and the next one), so a few hundred MB. Sparse on the host.
const DISK_BYTES: u64 = 512 << 20;

/// Where sfdisk puts the first partition (its default alignment, 1 MiB).
const PARTITION_START: u64 = 2048 * 512;

/// One cluster at a time: three TCG VMs saturate this machine's two cores
/// while they boot (QEMU-NOTES), even if the harness runs tests in
/// parallel. Taken first in every test, so it is released last.
static ONE_CLUSTER: Mutex<()> = Mutex::new(());

fn one_cluster() -> MutexGuard<'static, ()> {
    ONE_CLUSTER.lock().unwrap_or_else(|p| p.into_inner())
}

/// How one node is set up.
#[derive(Debug, Clone, Default)]
struct Spec {
    /// `cluster.etcd.clientOnNodeAddress: true`: etcd also serves clients
    /// on the node address, which a rejoining member asks its peers on.
    client_on_node_address: bool,
    /// A second NIC forwarding a host loopback port to this node's etcd
    /// client port (module docs).
    host_api: bool,
    /// A raw virtio disk.
    disk: Option<PathBuf>,
}

impl Spec {
    /// A peer that serves the etcd client API on its node address.
    fn peer() -> Spec {
        Spec {
            client_on_node_address: true,
            ..Spec::default()
        }
    }

    /// A peer the test talks to from the host.
    fn reachable() -> Spec {
        Spec {
            host_api: true,
            ..Spec::peer()
        }
    }
}

fn node_ip(n: usize) -> String {
    format!("10.5.0.1{n}")
}

/// The MAC of node `n`'s NIC on the switch.
fn l2_mac(n: usize) -> String {
    format!("52:54:00:00:05:1{n}")
}

/// The MAC of node `n`'s user-networking NIC (the host's way in).
fn host_mac(n: usize) -> String {
    format!("52:54:00:00:06:1{n}")
}

fn node_config(n: usize, spec: &Spec) -> String {
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
    if spec.host_api {
        yaml.push_str(&format!(
            "      - deviceSelector:
          hardwareAddr: \"{}\"
        addresses: [10.0.2.15/24]
",
            host_mac(n)
        ));
    }
    yaml.push_str("cluster:\n  etcd:\n");
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

/// One boot of one node.
struct Node {
    spec: Spec,
    /// Which boot of this node (1 = the first).
    boot: usize,
    /// The host port forwarded to this boot's etcd client port.
    host_port: Option<u16>,
    /// Before the temp dir holding its console log, so it stops first.
    vm: Vm,
    _dir: TempDir,
}

/// Three nodes on their own switch, each test its own.
struct Cluster {
    /// Node `n` at index `n - 1`. Dropped first: every QEMU is killed
    /// before the switch and the temp dir go.
    nodes: Vec<Node>,
    /// Console logs of earlier boots, for failure messages.
    earlier: Vec<(String, String)>,
    switch: Switch,
    _dir: TempDir,
}

impl Cluster {
    /// Boots node1..3 as `specs` say and waits until every node's etcd is
    /// healthy.
    fn start(specs: [Spec; 3]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let switch = Switch::start(dir.path().join("l2"), 3).unwrap();
        let mut c = Cluster {
            nodes: Vec::new(),
            earlier: Vec::new(),
            switch,
            _dir: dir,
        };
        for (i, spec) in specs.into_iter().enumerate() {
            let node = c.boot(i + 1, spec, 1);
            c.nodes.push(node);
        }
        for n in 1..=3 {
            c.wait(n, 0, "keel: ready in", BOOT_TIMEOUT);
        }
        for n in 1..=3 {
            c.wait(n, 0, "etcd is healthy", HEALTHY_TIMEOUT);
        }
        c
    }

    fn boot(&self, n: usize, spec: Spec, boot: usize) -> Node {
        let host_port = spec.host_api.then(free_local_port);
        let inline = base64::engine::general_purpose::STANDARD.encode(node_config(n, &spec));
        let (dir, vm) = boot_vm_with(&format!("keel.config.inline={inline}"), |c| {
            c.nics = vec![Nic::dgram_unix(
                "n0",
                self.switch.vm_path(n - 1),
                self.switch.port_path(n - 1),
            )
            .with_mac(l2_mac(n))];
            if let Some(port) = host_port {
                c.nics.push(
                    Nic::new(format!(
                        "user,id=h0,ipv6=off,hostfwd=tcp:127.0.0.1:{port}-{}:2379",
                        node_ip(n)
                    ))
                    .with_mac(host_mac(n)),
                );
            }
            if let Some(disk) = &spec.disk {
                c.drives.push(Drive::new(disk).with_serial("keel-var"));
            }
        });
        Node {
            spec,
            boot,
            host_port,
            vm,
            _dir: dir,
        }
    }

    fn node(&self, n: usize) -> &Node {
        &self.nodes[n - 1]
    }

    /// The console log of node `n`'s current boot.
    fn log(&self, n: usize) -> String {
        self.node(n).vm.serial_log()
    }

    /// Waits for a console line of node `n`'s current boot, from byte
    /// `from`, containing `needle`; returns the line.
    fn wait(&self, n: usize, from: u64, needle: &str, timeout: Duration) -> String {
        match self.node(n).vm.wait_for_line_from(from, needle, timeout) {
            Ok(m) => m.line,
            Err(e) => self.fail(&format!("node{n} boot {}: {e}", self.node(n).boot)),
        }
    }

    /// The one console line of node `n`'s current boot containing every
    /// piece of `parts`.
    fn line_with(&self, n: usize, parts: &[&str]) -> String {
        let log = self.log(n);
        match log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            Some(l) => l.trim_end().to_owned(),
            None => self.fail(&format!(
                "node{n} boot {}: no console line with {parts:?}",
                self.node(n).boot
            )),
        }
    }

    fn assert_no_line(&self, n: usize, needle: &str) {
        if let Some(l) = self.log(n).lines().find(|l| l.contains(needle)) {
            self.fail(&format!(
                "node{n} boot {}: unexpected console line {:?}",
                self.node(n).boot,
                l.trim_end()
            ));
        }
    }

    /// An etcd client to node `n` through its host port.
    fn client(&self, n: usize) -> Etcd {
        let port = self.node(n).host_port.expect("node has a host port");
        let endpoint = format!("http://127.0.0.1:{port}");
        self.ok(Etcd::new(&endpoint))
    }

    /// `r`'s value, or a failure with every node's console lines.
    fn ok<T>(&self, r: anyhow::Result<T>) -> T {
        r.unwrap_or_else(|e| self.fail(&format!("{e:#}")))
    }

    /// Presses node `n`'s power button (QMP `system_powerdown`) and waits
    /// for Keel's shutdown to finish and QEMU to exit.
    fn power_off(&self, n: usize) {
        let vm = &self.node(n).vm;
        let from = vm.serial_offset();
        let pressed = vm
            .qmp(Duration::from_secs(10))
            .and_then(|mut q| q.system_powerdown().map_err(Into::into));
        if let Err(e) = pressed {
            self.fail(&format!("node{n}: system_powerdown: {e}"));
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
    /// `-no-reboot`), and waits for `keel: ready`.
    fn boot_again(&mut self, n: usize) {
        let (spec, boot) = {
            let old = self.node(n);
            (old.spec.clone(), old.boot + 1)
        };
        let old_log = self.log(n);
        self.earlier
            .push((format!("node{n} boot {}", boot - 1), old_log));
        let node = self.boot(n, spec, boot);
        self.nodes[n - 1] = node;
        self.wait(n, 0, "keel: ready in", BOOT_TIMEOUT);
    }

    /// Every boot's `keel` console lines, for a failure message.
    fn keel_lines(&self) -> String {
        let mut out = String::new();
        let current = self.nodes.iter().enumerate().map(|(i, node)| {
            (
                format!("node{} boot {}", i + 1, node.boot),
                node.vm.serial_log(),
            )
        });
        for (name, log) in self.earlier.iter().cloned().chain(current) {
            out.push_str(&format!("=== {name}\n"));
            for l in log.lines().filter(|l| l.contains("keel")) {
                out.push_str(l.trim_end());
                out.push('\n');
            }
        }
        out
    }

    /// Fails with every node's console lines unless `got == want`.
    fn expect_eq<T: PartialEq + std::fmt::Debug + ?Sized>(&self, got: &T, want: &T, what: &str) {
        if got != want {
            self.fail(&format!("{what}: got {got:?}, want {want:?}"));
        }
    }

    fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n{}", self.keel_lines())
    }
}

/// The member named `name` in `members`, which must be there exactly once.
fn member<'a>(members: &'a [MemberInfo], name: &str) -> anyhow::Result<&'a MemberInfo> {
    match members
        .iter()
        .filter(|m| m.name == name)
        .collect::<Vec<_>>()[..]
    {
        [m] => Ok(m),
        _ => anyhow::bail!("want exactly one member {name}, got {members:?}"),
    }
}

/// A value nobody else writes, so reading it back proves this run wrote it.
fn unique_value(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what} {nanos}")
}

/// A sparse raw disk holding a GPT with one partition named `KEEL-VAR`
/// and nothing in it: the partition Keel formats on first boot.
fn gpt_disk_with_empty_keel_var(path: &Path) {
    File::create(path).unwrap().set_len(DISK_BYTES).unwrap();
    let mut sfdisk = Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sfdisk (Debian package fdisk, see scripts/deps.sh)");
    sfdisk
        .stdin
        .take()
        .unwrap()
        .write_all(
            format!(
                "label: gpt\nstart={}, type=L, name=KEEL-VAR\n",
                PARTITION_START / 512
            )
            .as_bytes(),
        )
        .unwrap();
    let out = sfdisk.wait_with_output().unwrap();
    assert!(out.status.success(), "sfdisk: {out:?}");
}

/// The ext4 superblock's magic and volume name in the disk's first
/// partition, read on the host.
fn ext4_label_in_partition(disk: &Path) -> (u16, String) {
    let mut sb = [0u8; 1024];
    let mut f = File::open(disk).unwrap();
    f.seek(SeekFrom::Start(PARTITION_START + 1024)).unwrap();
    f.read_exact(&mut sb).unwrap();
    let magic = u16::from_le_bytes([sb[0x38], sb[0x39]]);
    let name = &sb[0x78..0x88];
    let len = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    (magic, String::from_utf8_lossy(&name[..len]).into_owned())
}

#[test]
fn three_nodes_form_a_healthy_etcd_cluster() {
    let _one = one_cluster();
    // The defaults: etcd's client API on loopback only.
    let c = Cluster::start([Spec::default(), Spec::default(), Spec::default()]);
    for n in 1..=3 {
        c.line_with(n, &["etcd: starting member node"]);
        c.line_with(n, &["var: /var on tmpfs"]);
        c.line_with(n, &["etcd data will not survive a reboot"]);
        c.assert_no_line(n, "Kernel panic");
    }
}

#[test]
fn a_node_rebooted_with_a_keel_var_disk_keeps_its_data() {
    let _one = one_cluster();
    let disk_dir = tempfile::tempdir().unwrap();
    let disk = disk_dir.path().join("var.img");
    gpt_disk_with_empty_keel_var(&disk);
    let mut c = Cluster::start([
        Spec {
            disk: Some(disk.clone()),
            ..Spec::reachable()
        },
        Spec::peer(),
        Spec::peer(),
    ]);

    // First boot: the empty partition is formatted, then mounted.
    c.line_with(
        1,
        &[
            "var: /dev/vd",
            "is an empty partition named KEEL-VAR; formatting it as ext4",
        ],
    );
    c.line_with(1, &["var: /var on /dev/vd", "(ext4, label KEEL-VAR)"]);
    c.assert_no_line(1, "etcd data will not survive a reboot");

    let key = "keel-e2e/persisted";
    let value = unique_value("written before node1's reboot");
    let mut etcd = c.client(1);
    c.ok(retry("put through node1", CLIENT_TIMEOUT, || {
        etcd.put(key, &value)
    }));
    let members = c.ok(retry("member list through node1", CLIENT_TIMEOUT, || {
        etcd.members()
    }));
    let id_before = c.ok(member(&members, "node1")).id;
    drop(etcd);

    c.power_off(1);
    let (magic, label) = ext4_label_in_partition(&disk);
    c.expect_eq(
        &(magic, label.as_str()),
        &(0xEF53, "KEEL-VAR"),
        "ext4 magic and label in the partition after node1's first boot",
    );
    c.boot_again(1);
    c.wait(1, 0, "etcd is healthy", HEALTHY_TIMEOUT);

    // Second boot: mounted, not formatted; etcd restarted from its data,
    // no rejoin.
    c.line_with(1, &["var: /var on /dev/vd", "(ext4, label KEEL-VAR)"]);
    c.assert_no_line(1, "formatting it as ext4");
    c.assert_no_line(1, "etcd data will not survive a reboot");
    c.assert_no_line(1, "to rejoin");
    c.assert_no_line(1, "joining the existing cluster");

    let mut etcd = c.client(1);
    // Serializable: what node1's own store holds.
    let local = c.ok(retry("local read through node1", CLIENT_TIMEOUT, || {
        etcd.get(key, true)
    }));
    c.expect_eq(
        &local,
        &Some(value.clone()),
        "node1's local (serializable) read",
    );
    let read = c.ok(retry("quorum read through node1", CLIENT_TIMEOUT, || {
        etcd.get(key, false)
    }));
    c.expect_eq(&read, &Some(value.clone()), "quorum read");
    let members = c.ok(retry("member list through node1", CLIENT_TIMEOUT, || {
        etcd.members()
    }));
    c.expect_eq(&members.len(), &3, &format!("member count: {members:?}"));
    c.expect_eq(
        &c.ok(member(&members, "node1")).id,
        &id_before,
        &format!("node1's member ID (the same member came back): {members:?}"),
    );
}

#[test]
fn a_node_rebooted_on_tmpfs_rejoins_by_itself() {
    let _one = one_cluster();
    let mut c = Cluster::start([Spec::peer(), Spec::reachable(), Spec::peer()]);
    c.line_with(2, &["var: /var on tmpfs"]);

    let key = "keel-e2e/before-rejoin";
    let value = unique_value("written before node2's reboot");
    let mut etcd = c.client(2);
    c.ok(retry("put through node2", CLIENT_TIMEOUT, || {
        etcd.put(key, &value)
    }));
    let members = c.ok(retry("member list through node2", CLIENT_TIMEOUT, || {
        etcd.members()
    }));
    let id_before = c.ok(member(&members, "node2")).id;
    drop(etcd);

    c.power_off(2);
    c.boot_again(2);
    // Empty /var: node2 replaces its stale member through a peer and
    // starts as a member of the existing cluster, under the same name.
    c.wait(2, 0, "etcd: added this member as", HEALTHY_TIMEOUT);
    c.wait(2, 0, "etcd is healthy", HEALTHY_TIMEOUT);
    c.line_with(
        2,
        &[
            &format!("is empty but the cluster has member {id_before:x} (node2,"),
            "to rejoin",
        ],
    );
    c.line_with(2, &["joining the existing cluster of 3"]);
    c.line_with(
        2,
        &["etcd: starting node2 (3 members, initial-cluster-state existing)"],
    );

    let mut etcd = c.client(2);
    // Serializable: node2's own store, which it got from the cluster.
    let local = c.ok(retry("local read through node2", CLIENT_TIMEOUT, || {
        etcd.get(key, true)
    }));
    c.expect_eq(
        &local,
        &Some(value.clone()),
        "node2's local (serializable) read",
    );
    let read = c.ok(retry("quorum read through node2", CLIENT_TIMEOUT, || {
        etcd.get(key, false)
    }));
    c.expect_eq(&read, &Some(value.clone()), "quorum read");

    // Three members, node2 once, under a new ID, all started (a started
    // member has published its client URLs).
    let members = c.ok(retry("three started members", CLIENT_TIMEOUT, || {
        let members = etcd.members()?;
        let mut names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        names.sort();
        anyhow::ensure!(
            names == ["node1", "node2", "node3"]
                && members.iter().all(|m| !m.client_urls.is_empty()),
            "members: {members:?}"
        );
        Ok(members)
    }));
    let node2 = c.ok(member(&members, "node2"));
    if node2.id == id_before {
        c.fail(&format!(
            "node2 kept member ID {id_before:x}: it did not rejoin: {members:?}"
        ));
    }
    c.expect_eq(
        &node2.peer_urls[..],
        &["http://10.5.0.12:2380".to_owned()][..],
        "node2's peer URLs",
    );
}

/// Bad input: certificates that are PEM armour around garbage. etcd is not
/// started, the error names the key, and PID 1 keeps the network and
/// answers the power button.
#[test]
fn a_certificate_that_does_not_parse_is_reported_and_pid1_stays_up() {
    let _one = one_cluster();
    let pem = |what: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!(
            "-----BEGIN {what}-----\nAAAA\n-----END {what}-----\n"
        ))
    };
    let (cert, key) = (pem("CERTIFICATE"), pem("PRIVATE KEY"));
    let config = format!(
        "version: v1alpha1
machine:
  type: controlplane
  network:
    hostname: node1
    interfaces:
      - interface: enp0s1
        addresses: [10.5.0.11/24]
cluster:
  etcd:
    ca: {{crt: {cert}}}
    peer: {{crt: {cert}, key: {key}}}
    server: {{crt: {cert}, key: {key}}}
    initialCluster:
      node1: https://10.5.0.11:2380
"
    );
    let inline = base64::engine::general_purpose::STANDARD.encode(config);
    let (_dir, vm) = keel_tests::boot_vm(&format!("keel.config.inline={inline}"));
    vm.wait_for_line("etcd: not starting etcd: ", BOOT_TIMEOUT)
        .unwrap();
    vm.wait_for_line(
        "network: all links configured for the machine config",
        BOOT_TIMEOUT,
    )
    .unwrap();
    let log = vm.serial_log();
    assert!(
        log.contains("cluster.etcd.ca.crt is not a usable certificate")
            || log.contains("cluster.etcd.peer.crt is not a usable certificate"),
        "{log}"
    );
    assert!(!log.contains("etcd: starting member"), "{log}");
    let mut qmp = vm.qmp(Duration::from_secs(10)).unwrap();
    qmp.system_powerdown().unwrap();
    vm.wait_for_line("keel: shutdown complete", BOOT_TIMEOUT)
        .unwrap();
}
