//! `keel links`: the operator's view of link names, on fixture sysfs trees
//! (`tests/fixtures/sysfs/`, made by `make.sh` there) and on the host's
//! real `/sys`.

use std::path::PathBuf;
use std::process::{Command, Output};

fn keel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .output()
        .expect("run keel")
}

fn fixture(case: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sysfs")
        .join(case)
        .to_string_lossy()
        .into_owned()
}

fn stdout_ok(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{:?}\nstdout:\n{text}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn assert_lines(text: &str, want: &[&str]) {
    for w in want {
        assert!(
            text.lines().any(|l| l.trim_end() == *w),
            "missing line {w:?} in:\n{text}"
        );
    }
}

#[test]
fn i440fx_slot_name() {
    let text = stdout_ok(&keel(&["links", "--sysfs", &fixture("i440fx-virtio-slot")]));
    assert_lines(
        &text,
        &[
            "lo: lo (kept)",
            "eth0: ens3",
            "  kernel name:   eth0 (ifindex 2)",
            "  onboard:       -",
            "  slot:          ens3",
            "  path:          enp0s3",
            "  mac:           enx525400123456",
            "  driver:        virtio_net",
            "  busPath:       0000:00:03.0",
            "  pciID:         1AF4:1000",
            "  hardwareAddr:  52:54:00:12:34:56",
            "  physical:      true",
            "  device:        pci0000:00/0000:00:03.0/virtio0 (virtio → pci)",
            "    onboard: no acpi_index or SMBIOS index on 0000:00:03.0",
            "    chosen: ens3 (slot; policy order onboard slot path mac)",
        ],
    );
    // lo is listed first: links come in ifindex order.
    assert!(text.starts_with("lo: "), "{text}");
}

#[test]
fn onboard_smbios_and_ifnames_0() {
    let root = fixture("onboard-smbios");
    let text = stdout_ok(&keel(&["links", "--sysfs", &root]));
    assert_lines(
        &text,
        &[
            "eth0: eno3",
            "eth1: eno3d1",
            "  path:          enp2s0d1",
            "  driver:        mlx4_core",
            "  busPath:       0000:02:00.0",
            "  pciID:         15B3:1003",
            "  label:         Onboard-LAN",
            "    onboard: SMBIOS index=3, dev_port=1, label \"Onboard-LAN\" → eno3d1",
        ],
    );
    let text = stdout_ok(&keel(&["links", "--sysfs", &root, "--ifnames", "0"]));
    assert_lines(
        &text,
        &[
            "eth0: eth0 (net.ifnames=0; would be eno3)",
            "eth1: eth1 (net.ifnames=0; would be eno3d1)",
        ],
    );
}

#[test]
fn usage_errors() {
    let out = keel(&["links", "--ifnames", "2"]);
    assert_eq!(out.status.code(), Some(2));
    let out = keel(&["links", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let out = keel(&["links", "--sysfs", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/class/net"));
}

#[test]
fn host_sys() {
    let text = stdout_ok(&keel(&["links"]));
    assert!(text.lines().any(|l| l.starts_with("lo: lo")), "{text}");
}
