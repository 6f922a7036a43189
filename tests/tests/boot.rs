//! End to end: the real kernel and initramfs under QEMU (TCG), asserting
//! what the serial console shows.

use std::time::Duration;

use keel_tests::console::assert_contains_all;
use keel_tests::{boot_vm, BOOT_TIMEOUT};

/// These tests are about the bare boot: no machine config is wanted.
const NO_CONFIG: &str = "keel.config=none";
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn boot_reaches_ready_with_virtio_net_from_coldplug() {
    let (_dir, vm) = boot_vm(NO_CONFIG);
    let ready = vm.wait_for_line("keel: ready in", BOOT_TIMEOUT).unwrap();
    assert!(ready.contains("PID 1 RSS"), "{ready}");
    vm.wait_for_line("keel: modules: the rest of the hardware in", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("no background module pass: {e}\n{}", vm.serial_log()));
    let log = vm.serial_log();
    let loaded = log
        .lines()
        .find(|l| l.contains("keel: coldplug loaded:"))
        .unwrap_or_else(|| panic!("no coldplug line in:\n{log}"));
    assert!(loaded.contains(" virtio_net"), "{loaded}");
    // The q35 AHCI controller's stack is not what the links need: it
    // loads in the background pass, after the modules phase.
    assert!(!loaded.contains(" ahci"), "{loaded}");
    let phase_at = log.find("keel: phase modules done").expect("modules phase");
    let rest = log[phase_at..]
        .lines()
        .find(|l| l.contains("keel: coldplug loaded:"))
        .unwrap_or_else(|| panic!("no background coldplug line:\n{log}"));
    assert!(rest.contains(" ahci"), "{rest}");
    // The virtio NIC exists (and is named by its PCI path, q35 -nodefaults).
    assert!(
        log.contains("keel: network: link eth0 → enp0s1: "),
        "no eth0 link:\n{log}"
    );
    assert!(
        log.contains("keel: phase links done"),
        "no links phase:\n{log}"
    );
    for phase in [
        "phase mounts done",
        "phase modules done",
        "started as PID 1",
    ] {
        assert!(log.contains(phase), "missing {phase:?} in:\n{log}");
    }
    assert!(log.contains("watching power button"), "{log}");
    assert!(!log.contains("Kernel panic"), "{log}");
}

#[test]
fn power_button_shuts_down_cleanly() {
    let (_dir, vm) = boot_vm(NO_CONFIG);
    vm.wait_for_line("keel: ready in", BOOT_TIMEOUT).unwrap();
    let mut qmp = vm.qmp(Duration::from_secs(10)).unwrap();
    qmp.system_powerdown().unwrap();
    let status = vm.wait_exit(EXIT_TIMEOUT).unwrap();
    assert!(status.success(), "QEMU exit {status:?}");
    let log = vm.serial_log();
    assert_contains_all(
        &log,
        &[
            "keel: shutdown: power button",
            "going to power off",
            "keel: shutdown phase stop-processes done",
            "keel: shutdown phase sync done",
            "keel: shutdown phase unmount done",
            "keel: shutdown complete",
            "reboot: Power down",
        ],
    );
    assert!(!log.contains("Kernel panic"), "{log}");
}

#[test]
fn ctrl_alt_del_reboots_gracefully() {
    let (_dir, vm) = boot_vm(NO_CONFIG);
    vm.wait_for_line("keel: ready in", BOOT_TIMEOUT).unwrap();
    let mut qmp = vm.qmp(Duration::from_secs(10)).unwrap();
    let keys: Vec<serde_json::Value> = ["ctrl", "alt", "delete"]
        .iter()
        .map(|k| serde_json::json!({"type": "qcode", "data": k}))
        .collect();
    qmp.execute("send-key", Some(serde_json::json!({ "keys": keys })))
        .unwrap();
    // -no-reboot: the guest's reboot makes QEMU exit.
    vm.wait_exit(EXIT_TIMEOUT).unwrap();
    let log = vm.serial_log();
    assert_contains_all(
        &log,
        &[
            "keel: shutdown: ctrl-alt-del (SIGINT) received, going to reboot",
            "keel: shutdown complete",
            "reboot: Restarting system",
        ],
    );
}

#[test]
fn pid1_panic_is_a_controlled_reboot_or_power_off() {
    let cases = [
        (
            "keel.config=none keel.test.panic",
            "rebooting",
            "reboot: Restarting system",
        ),
        (
            "keel.config=none keel.test.panic keel.panic=poweroff",
            "powering off",
            "reboot: Power down",
        ),
    ];
    for (append, verb, kernel_line) in cases {
        let (_dir, vm) = boot_vm(append);
        vm.wait_exit(BOOT_TIMEOUT).unwrap();
        let log = vm.serial_log();
        assert!(
            log.contains("keel: PID 1 panicked") && log.contains("panicking on purpose"),
            "{append}: no panic line in:\n{log}"
        );
        assert!(
            log.contains(&format!("keel: syncing (at most 5 s) and {verb}")),
            "{append}: {log}"
        );
        assert!(log.contains(kernel_line), "{append}: {log}");
        assert!(!log.contains("Attempted to kill init"), "{append}: {log}");
        assert!(!log.contains("Kernel panic"), "{append}: {log}");
    }
}
