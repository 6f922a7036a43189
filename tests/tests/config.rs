//! End to end: loading the machine config under QEMU from a `KEEL-CONFIG`
//! vfat disk, from `keel.config.inline=`, a broken config that must not
//! take PID 1 down, and a config disk hot-plugged after boot.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use keel_qemu::Drive;
use keel_tests::{boot_vm_with, BOOT_TIMEOUT};

const CONFIG: &str = "\
version: v1alpha1
machine:
  type: controlplane
  network:
    hostname: cfg-node
    interfaces:
      - interface: eth0
        addresses: [10.5.0.11/24]
";

/// A vfat image labelled KEEL-CONFIG holding `config.yaml` (the same
/// disk `make run` gives each node).
fn vfat_config_disk(dir: &Path, yaml: &str) -> std::path::PathBuf {
    keel_cluster::config_disk(dir, "config.img", yaml).unwrap()
}

fn assert_loaded(log: &str, origin: &str) {
    let line = log
        .lines()
        .find(|l| l.contains("keel: phase config done"))
        .unwrap_or_else(|| panic!("config never loaded:\n{log}"));
    assert!(line.contains(origin), "{line}");
    assert!(
        log.contains("hostname cfg-node"),
        "summary lacks the hostname:\n{log}"
    );
}

#[test]
fn config_from_a_keel_config_vfat_disk() {
    let disk_dir = tempfile::tempdir().unwrap();
    let img = vfat_config_disk(disk_dir.path(), CONFIG);
    let (_dir, vm) = boot_vm_with("", |cfg| {
        cfg.drives
            .push(Drive::new(img.clone()).with_serial("keel-config"));
    });
    vm.wait_for_line("keel: ready in", BOOT_TIMEOUT).unwrap();
    assert_loaded(&vm.serial_log(), "label KEEL-CONFIG");
}

#[test]
fn config_from_inline_parameter_plain_and_zstd() {
    let plain = base64::engine::general_purpose::STANDARD.encode(CONFIG);
    let zstd = {
        let out = Command::new("zstd")
            .args(["-q", "-c", "-19"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(CONFIG.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(out.status.success());
        base64::engine::general_purpose::STANDARD.encode(out.stdout)
    };
    for encoded in [plain, zstd] {
        let (_dir, vm) = boot_vm_with(&format!("keel.config.inline={encoded}"), |_| {});
        vm.wait_for_line("keel: ready in", BOOT_TIMEOUT).unwrap();
        assert_loaded(&vm.serial_log(), "keel.config.inline");
    }
}

#[test]
fn broken_config_is_reported_and_pid1_stays_up() {
    let broken = "\
machine:
  network:
    interfaces:
      - interface: eth0
        vlans:
          - vlanId: 5000
";
    let encoded = base64::engine::general_purpose::STANDARD.encode(broken);
    let (_dir, vm) = boot_vm_with(&format!("keel.config.inline={encoded}"), |_| {});
    let line = vm
        .wait_for_line(
            "machine.network.interfaces[0].vlans[0].vlanId",
            BOOT_TIMEOUT,
        )
        .unwrap();
    assert!(line.contains("line 6"), "{line}");
    let log = vm.serial_log();
    assert!(
        log.contains("keel: config from keel.config.inline is invalid"),
        "{log}"
    );
    assert!(
        !log.contains("keel: ready in"),
        "must not claim ready:\n{log}"
    );
    // PID 1 is alive: it still handles the power button.
    std::thread::sleep(Duration::from_secs(1));
    let mut qmp = vm.qmp(Duration::from_secs(10)).unwrap();
    qmp.system_powerdown().unwrap();
    assert!(vm.wait_exit(Duration::from_secs(60)).unwrap().success());
    let log = vm.serial_log();
    assert!(log.contains("keel: shutdown complete"), "{log}");
    assert!(!log.contains("Kernel panic"), "{log}");
}

#[test]
fn hot_plugged_config_disk_is_picked_up() {
    let disk_dir = tempfile::tempdir().unwrap();
    let img = vfat_config_disk(disk_dir.path(), CONFIG);
    let (_dir, vm) = boot_vm_with("", |cfg| {
        // q35's root bus has no hotplug; a PCIe root port does.
        cfg.extra_args.extend([
            "-device".to_string(),
            "pcie-root-port,id=rp1,bus=pcie.0,chassis=1".to_string(),
        ]);
    });
    vm.wait_for_line("keel: no machine config yet", BOOT_TIMEOUT)
        .unwrap();
    let mut qmp = vm.qmp(Duration::from_secs(10)).unwrap();
    qmp.execute(
        "blockdev-add",
        Some(serde_json::json!({
            "driver": "raw",
            "node-name": "cfg",
            "read-only": true,
            "file": {"driver": "file", "filename": img.to_str().unwrap(), "read-only": true}
        })),
    )
    .unwrap();
    qmp.execute(
        "device_add",
        Some(serde_json::json!({
            "driver": "virtio-blk-pci", "drive": "cfg", "id": "cfgdisk", "bus": "rp1"
        })),
    )
    .unwrap();
    vm.wait_for_line("keel: ready in", BOOT_TIMEOUT).unwrap();
    assert_loaded(&vm.serial_log(), "label KEEL-CONFIG");
}
