//! End to end under QEMU: three control-plane nodes on one L2 segment (a
//! `keel-switch`), static addresses, a static etcd initial cluster; every
//! node's supervised etcd reaches healthy (a linearizable read through
//! the quorum succeeds on each).

use std::time::Duration;

use base64::Engine;
use keel_qemu::{Nic, Vm};
use keel_switch::Switch;
use keel_tests::{boot_vm_with, BOOT_TIMEOUT};

/// etcd across three TCG VMs: healthy ~9 s after QEMU start when the
/// machine is idle (QEMU-NOTES); generous for a loaded one.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(180);

fn node_config(n: usize) -> String {
    format!(
        "version: v1alpha1
machine:
  type: controlplane
  network:
    hostname: node{n}
    interfaces:
      - deviceSelector:
          hardwareAddr: \"52:54:00:00:05:1{n}\"
        addresses: [10.5.0.1{n}/24]
cluster:
  etcd:
    initialCluster:
      node1: http://10.5.0.11:2380
      node2: http://10.5.0.12:2380
      node3: http://10.5.0.13:2380
"
    )
}

fn boot_node(switch: &Switch, n: usize) -> (tempfile::TempDir, Vm) {
    let inline = base64::engine::general_purpose::STANDARD.encode(node_config(n));
    boot_vm_with(&format!("keel.config.inline={inline}"), |c| {
        c.nics = vec![
            Nic::dgram_unix("n0", switch.vm_path(n - 1), switch.port_path(n - 1))
                .with_mac(format!("52:54:00:00:05:1{n}")),
        ];
    })
}

#[test]
fn three_nodes_form_a_healthy_etcd_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::start(dir.path().join("l2"), 3).unwrap();
    let nodes: Vec<_> = (1..=3).map(|n| boot_node(&switch, n)).collect();
    for (i, (_, vm)) in nodes.iter().enumerate() {
        vm.wait_for_line("keel: ready in", BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("node{}: {e}", i + 1));
    }
    for (i, (_, vm)) in nodes.iter().enumerate() {
        if let Err(e) = vm.wait_for_line("etcd is healthy", HEALTHY_TIMEOUT) {
            panic!("node{}: {e}\n{}", i + 1, keel_lines(&nodes));
        }
        let log = vm.serial_log();
        for want in [
            "etcd: starting member node",
            "var: /var on tmpfs",
            "etcd data will not survive a reboot",
        ] {
            assert!(
                log.contains(want),
                "node{}: missing {want:?}:\n{log}",
                i + 1
            );
        }
        assert!(!log.contains("Kernel panic"), "{log}");
    }
}

/// Every node's `keel:` console lines, for a failure message.
fn keel_lines(nodes: &[(tempfile::TempDir, Vm)]) -> String {
    let mut out = String::new();
    for (i, (_, vm)) in nodes.iter().enumerate() {
        out.push_str(&format!("=== node{}\n", i + 1));
        for l in vm.serial_log().lines().filter(|l| l.contains("keel")) {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}
