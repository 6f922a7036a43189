//! End to end under QEMU (q35, virtio-net): predictable names, device
//! selectors, static addresses, VLANs and bonds with the image's kernel,
//! DHCP from QEMU's user-mode network, and `net.ifnames=0`.
//!
//! Static addresses are checked from outside the guest: the NIC is plugged
//! into a `keel-switch` whose host port sends ARP probes for the address;
//! the guest answers only if the address really is on that link, and the
//! reply's source MAC says which link.

use std::net::Ipv4Addr;
use std::time::Duration;

use base64::Engine;
use keel_qemu::Nic;
use keel_switch::{MacAddr, Switch, WhoHas};
use keel_tests::console::assert_contains_all;
use keel_tests::{boot_vm_with, BOOT_TIMEOUT};

const MAC_A: &str = "52:54:00:12:34:0a";
const MAC_B: &str = "52:54:00:12:34:0b";

fn inline(yaml: &str) -> String {
    format!(
        "keel.config.inline={}",
        base64::engine::general_purpose::STANDARD.encode(yaml)
    )
}

/// The MACs answering ARP for `ip` (on VLAN `vlan` when given), asking up
/// to 20 times 500 ms apart.
fn answering(switch: &Switch, ip: Ipv4Addr, vlan: Option<u16>) -> Vec<MacAddr> {
    WhoHas::new(ip, Duration::from_millis(500))
        .on_vlan(vlan)
        .tries(20)
        .macs(switch)
}

fn switch_nic(switch: &Switch, port: usize, id: &str, mac: &str) -> Nic {
    Nic::dgram_unix(id, switch.vm_path(port), switch.port_path(port)).with_mac(mac)
}

/// Two NICs on q35 (`-nodefaults`): the user-mode NIC at 00:01.0 gets
/// `enp0s1` and DHCP from QEMU; the switch NIC at 00:02.0 is picked by a `deviceSelector` on
/// its MAC and gets a static address, an MTU and a VLAN with an address.
#[test]
fn predictable_names_selector_static_vlan_and_dhcp() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::start(dir.path().join("l2"), 1).unwrap();
    let config = format!(
        "version: v1alpha1
machine:
  type: worker
  network:
    hostname: net-node
    interfaces:
      - interface: enp0s1
        dhcp: true
        dhcpOptions:
          routeMetric: 100
      - deviceSelector:
          hardwareAddr: \"{MAC_B}\"
        addresses: [192.168.50.10/24]
        mtu: 1400
        vlans:
          - vlanId: 7
            addresses: [192.168.57.10/24]
"
    );
    let (_dir, vm) = boot_vm_with(&inline(&config), |c| {
        c.nics = vec![
            Nic::user("n0").with_mac(MAC_A),
            switch_nic(&switch, 0, "n1", MAC_B),
        ];
    });
    vm.wait_for_line("keel: ready in", BOOT_TIMEOUT).unwrap();
    vm.wait_for_line(
        "network: all links configured for the machine config",
        BOOT_TIMEOUT,
    )
    .unwrap();
    let log = vm.serial_log();
    assert_contains_all(
        &log,
        &[
            "link eth0 → enp0s1",
            "link eth1 → enp0s2",
            "eth0: renamed to enp0s1",
            "eth1: renamed to enp0s2",
            "enp0s1: alternative names eth0, enx52540012340a",
            "enp0s2: MTU 1400",
            "enp0s2: address 192.168.50.10/24",
            "enp0s2.7: created VLAN 7 on enp0s2",
            "dhcp: enp0s1: lease 10.0.2.15/24",
            "network: hostname net-node",
        ],
    );
    let mac_b: MacAddr = MAC_B.parse().unwrap();
    assert_eq!(
        answering(&switch, Ipv4Addr::new(192, 168, 50, 10), None),
        [mac_b]
    );
    assert_eq!(
        answering(&switch, Ipv4Addr::new(192, 168, 57, 10), Some(7)),
        [mac_b],
        "a tagged probe on VLAN 7 gets a tagged reply"
    );
}

/// `net.ifnames=0` keeps `eth0`/`eth1`; the config names the link by its
/// kernel name; a bond of both switch NICs (active-backup; the second member
/// picked by its permanent MAC, read with ethtool) gets the address.
#[test]
fn kernel_names_and_a_bond() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::start(dir.path().join("l2"), 2).unwrap();
    let config = "version: v1alpha1
machine:
  type: worker
  network:
    interfaces:
      - interface: bond0
        addresses: [192.168.60.10/24]
        bond:
          mode: active-backup
          miimon: 100
          interfaces: [eth0]
          deviceSelectors:
            - permanentAddr: \"52:54:00:12:34:0b\"
      - interface: dummy0
        dummy: true
        addresses: [169.254.10.1/32]
";
    let (_dir, vm) = boot_vm_with(&format!("net.ifnames=0 {}", inline(config)), |c| {
        c.nics = vec![
            switch_nic(&switch, 0, "n0", MAC_A),
            switch_nic(&switch, 1, "n1", MAC_B),
        ];
    });
    vm.wait_for_line(
        "network: all links configured for the machine config",
        BOOT_TIMEOUT,
    )
    .unwrap();
    let log = vm.serial_log();
    assert_contains_all(
        &log,
        &[
            "link eth0 (net.ifnames=0; would be enp0s1)",
            "bond0: created bond",
            "bond0: enslaved eth0",
            "bond0: enslaved eth1",
            "bond0: address 192.168.60.10/24",
            "dummy0: created dummy link",
        ],
    );
    assert!(!log.contains("renamed to"), "{log}");
    // The bond answers with its MAC (the first member's), on either port.
    let mac_a: MacAddr = MAC_A.parse().unwrap();
    let answers = answering(&switch, Ipv4Addr::new(192, 168, 60, 10), None);
    assert!(
        !answers.is_empty() && answers.iter().all(|m| *m == mac_a),
        "{answers:?}"
    );
}

/// Before any config exists, every physical link runs DHCP, so the config
/// URL (served by the test on the host, reached through QEMU's user-mode
/// gateway 10.0.2.2) can be fetched.
#[test]
fn dhcp_before_config_fetches_the_config_url() {
    let config = "version: v1alpha1
machine:
  type: worker
  network:
    hostname: from-url
";
    let (port, server) = keel_tests::serve_once(config);
    let (_dir, vm) = boot_vm_with(
        &format!("keel.config=http://10.0.2.2:{port}/node.yaml"),
        |c| c.nics = vec![Nic::user("n0").with_mac(MAC_A)],
    );
    // The hostname is applied by the network manager just after `ready`.
    vm.wait_for_line("network: hostname from-url", BOOT_TIMEOUT)
        .unwrap();
    let request = server.join().unwrap();
    assert!(request.starts_with("GET /node.yaml "), "{request}");
    let log = vm.serial_log();
    assert_contains_all(
        &log,
        &[
            "enp0s1: DHCP started (no config yet",
            "dhcp: enp0s1: lease 10.0.2.15/24",
            "network: all links configured before any config",
            "loaded from http://10.0.2.2:",
        ],
    );
}
