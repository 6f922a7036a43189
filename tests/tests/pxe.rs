//! PXE under QEMU: the firmware's iPXE (Debian's ipxe-qemu ROM for
//! virtio-net) gets an address and `boot.ipxe` from QEMU's user-mode
//! network (its DHCP and TFTP server), runs the script `make image` wrote,
//! which loads `vmlinuz` and `initramfs.cpio.zst` over TFTP; Keel runs DHCP
//! before any config and fetches `keel.config=http://10.0.2.2:PORT/<mac>.yaml`
//! from an HTTP server this test runs on the host (the user-net gateway
//! reaches the host's loopback), then applies it.

use std::time::Duration;

use keel_qemu::{Nic, VmConfig};
use keel_tests::{artifact, build_dir, serve_once};

const MAC: &str = "52:54:00:12:34:56";

/// iPXE's DHCP and TFTP of ~21 MB under TCG, then the boot (docs/ARCHITECTURE.md:
/// ~11 s to /init when idle).
const PXE_TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn pxe_boot_fetches_the_config_by_mac_and_reaches_ready() {
    let build = build_dir();
    let tftp = tempfile::tempdir().unwrap();
    for f in ["vmlinuz", "initramfs.cpio.zst"] {
        std::fs::copy(artifact(build.join(f)), tftp.path().join(f)).unwrap();
    }
    let config = "version: v1alpha1
machine:
  type: worker
  network:
    hostname: pxe-node
    interfaces:
      - deviceSelector:
          hardwareAddr: \"52:54:00:12:34:56\"
        addresses: [10.0.2.15/24]
";
    let (port, server) = serve_once(config);
    // The shipped script, with its default config server pointed at the
    // test's (the only edit an operator makes, or `set keel-config` first).
    let script = std::fs::read_to_string(artifact(build.join("boot.ipxe"))).unwrap();
    let default = keel_image::pxe::DEFAULT_CONFIG_BASE;
    assert!(script.contains(default), "{script}");
    let script = script.replace(default, &format!("http://10.0.2.2:{port}"));
    std::fs::write(tftp.path().join("boot.ipxe"), script).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let cfg = VmConfig {
        memory_mib: 512,
        serial_log: dir.path().join("console.log"),
        nics: vec![Nic::new(format!(
            "user,id=n0,ipv6=off,tftp={},bootfile=boot.ipxe",
            tftp.path().display()
        ))
        .with_mac(MAC)],
        no_reboot: true,
        extra_args: vec!["-boot".into(), "n".into()],
        ..VmConfig::default()
    };
    let vm = cfg.spawn().unwrap();
    let fail =
        |what: &str, e: &dyn std::fmt::Display| -> ! { panic!("{what}: {e}\n{}", vm.serial_log()) };
    vm.wait_for_line("keel: ready in", PXE_TIMEOUT)
        .unwrap_or_else(|e| fail("no ready", &e));
    vm.wait_for_line("network: hostname pxe-node", Duration::from_secs(60))
        .unwrap_or_else(|e| fail("hostname not applied", &e));
    let request = server.join().unwrap();
    assert!(
        request.starts_with(&format!("GET /{MAC}.yaml ")),
        "the config was fetched by the booting NIC's MAC: {request}"
    );
    let log = vm.serial_log();
    let cmdline = log
        .lines()
        .find(|l| l.contains("Command line:"))
        .unwrap_or_default();
    assert!(
        cmdline.contains(&format!("keel.config=http://10.0.2.2:{port}/{MAC}.yaml")),
        "iPXE expanded the script's kernel line: {cmdline}"
    );
    keel_tests::console::assert_contains_all(
        &log,
        &[
            &format!("loaded from http://10.0.2.2:{port}/{MAC}.yaml"),
            "hostname pxe-node",
            "network: all links configured for the machine config",
        ],
    );
    let _ = vm.kill();
}
