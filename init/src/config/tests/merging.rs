//! Repeated interface entries merge as in Talos.

use super::{config, errors};
use crate::config::Link;

#[test]
fn lists_append_and_scalars_fill_in() {
    let c = config(
        "machine:\n  network:\n    interfaces:\n\
         \x20     - interface: eth0\n        addresses: [10.0.0.5/24]\n        routes: [{network: 10.1.0.0/16, gateway: 10.0.0.1}]\n        vlans: [{vlanId: 10, addresses: [10.10.0.5/24]}]\n\
         \x20     - deviceSelector: {driver: virtio_net}\n        dhcp: true\n\
         \x20     - interface: eth0\n        cidr: 10.0.1.5/24\n        addresses: [10.0.0.5/24, 10.0.2.5/24]\n        mtu: 9000\n        dhcp: false\n        routes: [{gateway: 10.0.0.254}]\n        vlans: [{vlanId: 10, dhcp: true, vip: {ip: 10.10.0.100}}, {vlanId: 20}]\n\
         \x20     - interface: eth0\n        mtu: 9000\n",
    );
    let ifaces = c.interfaces();
    assert_eq!(
        ifaces.len(),
        2,
        "eth0 entries merge, the selector stays apart"
    );
    let eth0 = &ifaces[0];
    assert_eq!(eth0.link.to_string(), "eth0");
    let addrs: Vec<String> = eth0.addresses.iter().map(|a| a.to_string()).collect();
    // `cidr` first, as Talos lists it; a repeated address once.
    assert_eq!(addrs, ["10.0.0.5/24", "10.0.1.5/24", "10.0.2.5/24"]);
    assert_eq!(eth0.cidr, None);
    assert_eq!(eth0.routes.len(), 2);
    assert_eq!(eth0.mtu, Some(9000));
    assert!(!eth0.dhcp);
    let vlan_ids: Vec<u16> = eth0.vlans.iter().map(|v| v.vlan_id.get()).collect();
    assert_eq!(vlan_ids, [10, 20]);
    assert!(eth0.vlans[0].dhcp);
    assert_eq!(eth0.vlans[0].addresses[0].to_string(), "10.10.0.5/24");
    assert!(matches!(ifaces[1].link, Link::Selector(_)));
    assert!(ifaces[1].dhcp);
    let vips = c.vips();
    assert_eq!(vips.len(), 1);
    assert_eq!(
        (vips[0].link.to_string(), vips[0].vlan.map(|v| v.get())),
        ("eth0".to_owned(), Some(10))
    );
}

#[test]
fn selector_entries_never_merge() {
    let c = config(
        "machine:\n  network:\n    interfaces:\n      - deviceSelector: {busPath: \"0*\"}\n        dhcp: true\n      - deviceSelector: {busPath: \"0*\"}\n        mtu: 9000\n",
    );
    assert_eq!(c.interfaces().len(), 2);
}

#[test]
fn conflicting_scalars_are_errors() {
    let errs = errors(
        "machine:\n  network:\n    interfaces:\n      - interface: bond0\n        bond: {mode: balance-rr}\n        vip: {ip: 10.0.0.9}\n      - interface: bond0\n        bond: {mode: active-backup}\n        vip: {ip: 10.0.0.10}\n",
    );
    let got: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        got,
        [
            "machine.network.interfaces[1].bond (line 8, column 15): bond conflicts with a different bond in an earlier entry for bond0, expected it in one entry only",
            "machine.network.interfaces[1].vip (line 9, column 14): vip 10.0.0.10 (ttl 5s) conflicts with vip 10.0.0.9 (ttl 5s) in an earlier entry for bond0, expected the same value or none",
        ]
    );
}
