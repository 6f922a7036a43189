//! Boots a real kernel under TCG (no initramfs needed: only the kernel's
//! own console output is observed). Uses `$KEEL_TEST_KERNEL`, else
//! `build/vmlinux` in the workspace; fails (never skips) when neither
//! exists: `make test` builds the image first.

use std::path::PathBuf;
use std::time::Duration;

use keel_qemu::{Nic, VmConfig};

fn kernel() -> PathBuf {
    let path = std::env::var_os("KEEL_TEST_KERNEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../build/vmlinux"));
    assert!(
        path.is_file(),
        "{} is missing: run `make image` first or set KEEL_TEST_KERNEL",
        path.display()
    );
    path
}

#[test]
fn kernel_boots_resets_and_quits() {
    let kernel = kernel();
    let dir = tempfile::tempdir().unwrap();
    let vm = VmConfig {
        kernel: Some(kernel),
        append: "console=ttyS0 panic=-1".into(),
        memory_mib: 256,
        serial_log: dir.path().join("console.log"),
        qmp_socket: Some(dir.path().join("vm.qmp")),
        nics: vec![Nic::user("n0")],
        ..VmConfig::default()
    }
    .spawn()
    .unwrap();
    let first = vm
        .wait_for_line_from(0, "Linux version", Duration::from_secs(60))
        .unwrap();
    let mut qmp = vm.qmp(Duration::from_secs(10)).unwrap();
    assert_eq!(qmp.query_status().unwrap()["status"], "running");
    qmp.set_link("n0", false).unwrap();
    qmp.system_reset().unwrap();
    // The banner again, after the first one: the machine really reset.
    vm.wait_for_line_from(first.end, "Linux version", Duration::from_secs(60))
        .unwrap();
    qmp.wait_event("RESET", Duration::from_secs(5)).unwrap();
    qmp.quit().unwrap();
    assert!(vm.wait_exit(Duration::from_secs(10)).unwrap().success());
}

#[test]
fn kvm_probe_finishes_within_its_timeout() {
    let kernel = kernel();
    let start = std::time::Instant::now();
    let probe = keel_qemu::probe_kvm(&kernel);
    eprintln!("KVM probe: {probe:?} after {:?}", start.elapsed());
    assert!(start.elapsed() < keel_qemu::accel::KVM_PROBE_TIMEOUT + Duration::from_secs(5));
}
