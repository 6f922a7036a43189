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
//! The harness and how the host reaches a guest's etcd:
//! [`keel_tests::cluster`].

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use keel_tests::cluster::{
    one_cluster, Cluster, Spec, CLIENT_TIMEOUT, HEALTHY_TIMEOUT, PARTITION_START,
};
use keel_tests::etcd::{retry, MemberInfo};
use keel_tests::BOOT_TIMEOUT;

use base64::Engine;

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
    keel_cluster::disk::gpt_with_empty_keel_var(&disk).unwrap();
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
