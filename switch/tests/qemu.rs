//! End to end: the project's kernel and initramfs under QEMU (TCG), its NIC
//! on a switch port through `-netdev dgram`.
//!
//! Needs `build/vmlinux` and `build/initramfs.cpio` (`make image`; or
//! `KEEL_BUILD=<dir>`): a missing artifact fails the test, it is never
//! skipped.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keel_qemu::{Nic, VmConfig};
use keel_switch::{arp_probe, MacAddr, Switch, HOST_MAC};

const GUEST_MAC: MacAddr = MacAddr::new(0x52, 0x54, 0x00, 0x12, 0x34, 0x01);
/// Generous for a loaded 2-core machine; a boot takes a few seconds.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
/// EtherType of the RARP frames QEMU's `announce-self` sends.
const ETHERTYPE_RARP: u16 = 0x8035;

fn artifact(name: &str) -> PathBuf {
    let build = std::env::var_os("KEEL_BUILD").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../build"),
        PathBuf::from,
    );
    let path = build.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `make image` (or `make test`, which builds it) first",
        path.display()
    );
    path
}

/// Both directions through QEMU's dgram backend: a frame injected on the
/// switch is delivered to QEMU's socket, and frames QEMU sends for the NIC
/// (`announce-self`, which QEMU sends itself when the guest does not
/// announce) arrive on the VM's port and teach the switch the guest's MAC.
/// The guest brings no link up with `keel.config=none`, so it sends
/// nothing on its own.
#[test]
fn a_booted_vm_exchanges_frames_with_the_switch() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::start(dir.path().join("l2"), 1).unwrap();
    let rx = switch.subscribe();
    let mut config = VmConfig::boot(
        artifact("vmlinux"),
        artifact("initramfs.cpio"),
        "console=ttyS0 printk_devkmsg=on panic=-1 keel.config=none",
        dir.path().join("console.log"),
    );
    // guest_announce=off: QEMU announces the NIC itself instead of asking
    // the guest driver to.
    config.nics = vec![
        Nic::dgram_unix("n0", switch.vm_path(0), switch.port_path(0))
            .with_mac(GUEST_MAC.to_string())
            .with_prop("guest_announce=off"),
    ];
    config.qmp_socket = Some(dir.path().join("qmp.sock"));
    config.no_reboot = true;
    let vm = config.spawn().expect("QEMU starts");

    // QEMU binds its end of the pair as it starts; the switch reaches it.
    switch
        .wait_for_peer(0, Duration::from_secs(10))
        .expect("QEMU binds the VM socket");
    let probe = arp_probe(
        Ipv4Addr::new(10, 5, 0, 100),
        HOST_MAC,
        Ipv4Addr::UNSPECIFIED,
    );
    switch.inject(&probe).unwrap();

    vm.wait_for_line("keel: ready in", BOOT_TIMEOUT).unwrap();
    let mut qmp = vm.qmp(Duration::from_secs(10)).unwrap();
    let asked = Instant::now();
    qmp.execute(
        "announce-self",
        Some(serde_json::json!({"initial": 50, "max": 100, "rounds": 2, "step": 50})),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let announce = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let f = rx
            .recv_timeout(left)
            .expect("QEMU's announcement reaches the switch");
        let eth = f.ethernet().unwrap();
        if f.port == 0 && eth.ethertype == ETHERTYPE_RARP {
            break f;
        }
    };
    assert!(announce.at >= asked);
    assert_eq!(announce.src(), Some(GUEST_MAC));
    assert_eq!(announce.dst(), Some(MacAddr::BROADCAST));
    assert!(switch.mac_table().contains(&(GUEST_MAC, 0)));

    let stats = switch.stats();
    let port = &stats.ports[0];
    assert!(port.rx_frames >= 1, "{stats:?}");
    assert_eq!(port.tx_frames, 1, "the probe reached QEMU: {stats:?}");
    assert_eq!((port.tx_no_peer, port.tx_dropped), (0, 0), "{stats:?}");
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    assert!(vm.try_wait().unwrap().is_none(), "QEMU still runs");
}
