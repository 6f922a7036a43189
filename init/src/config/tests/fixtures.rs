//! Every Talos snippet in `tests/fixtures/talos-snippets/` parses and
//! validates, and the interesting ones read as intended.

use std::path::PathBuf;

use super::{config, ok};
use crate::config::bond::{BondMode, LacpRate, XmitHashPolicy};
use crate::config::{Link, MachineType};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/talos-snippets")
}

fn snippet(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap()
}

#[test]
fn every_snippet_is_valid() {
    let mut n = 0;
    for entry in std::fs::read_dir(dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let parsed = ok(&text);
            // Accessors must work on every valid config.
            let _ = (
                parsed.config.interfaces(),
                parsed.config.vips(),
                parsed.config.summary(),
            );
            n += 1;
        }
    }
    assert_eq!(n, 14, "expected the 14 Talos snippets");
}

#[test]
fn vip_on_dhcp_link() {
    let c = config(&snippet("01-vip-eth0-dhcp.yaml"));
    assert_eq!(c.machine_type(), MachineType::Controlplane);
    let vips = c.vips();
    assert_eq!(vips.len(), 1);
    assert_eq!(vips[0].ip.to_string(), "192.168.0.15");
    assert_eq!(vips[0].link.to_string(), "eth0");
    assert_eq!(vips[0].vlan, None);
    assert_eq!(vips[0].ttl.as_secs(), 5);
    assert!(c.interfaces()[0].dhcp);
}

#[test]
fn vip_on_vlan() {
    let c = config(&snippet("02-vip-on-vlan.yaml"));
    let vips = c.vips();
    assert_eq!(vips.len(), 2);
    assert_eq!(vips[1].ip.to_string(), "192.168.1.15");
    assert_eq!(vips[1].link.to_string(), "eth0");
    assert_eq!(vips[1].vlan.map(|v| v.get()), Some(100));
    let iface = &c.interfaces()[0];
    assert!(iface.vlans[0].dhcp);
}

#[test]
fn selectors() {
    let c = config(&snippet("03-vip-selector-physical.yaml"));
    let Link::Selector(s) = &c.interfaces()[0].link else {
        panic!("selector expected")
    };
    assert_eq!(s.physical, Some(true));
    let c = config(&snippet("04-vip-selector-buspath.yaml"));
    let Link::Selector(s) = &c.vips()[0].link else {
        panic!("selector expected")
    };
    assert_eq!(s.bus_path.as_ref().unwrap().as_str(), "0*");
    let c = config(&snippet("09-device-selector-driver-mac.yaml"));
    let Link::Selector(s) = &c.interfaces()[0].link else {
        panic!("selector expected")
    };
    assert_eq!(s.driver.as_ref().unwrap().as_str(), "virtio");
    assert_eq!(s.hardware_addr.as_ref().unwrap().as_str(), "00:00:*");
    assert_eq!(
        c.interfaces()[0].addresses[0].to_string(),
        "192.168.88.21/24"
    );
}

#[test]
fn static_addressing() {
    let c = config(&snippet("05-static-addressing.yaml"));
    assert_eq!(
        c.machine.network.hostname.as_ref().unwrap().as_str(),
        "talos"
    );
    assert_eq!(c.machine.network.nameservers[0].to_string(), "10.0.0.1");
    let ifaces = c.interfaces();
    // The legacy `cidr` keeps its host address and lands in `addresses`.
    assert_eq!(ifaces[0].addresses[0].to_string(), "10.0.0.201/8");
    assert_eq!(ifaces[0].cidr, None);
    assert_eq!(ifaces[0].mtu, Some(8765));
    let route = &ifaces[0].routes[0];
    assert!(route.network.unwrap().is_default_route());
    assert_eq!(route.gateway.unwrap().to_string(), "10.0.0.1");
    assert!(ifaces[1].ignore);
    assert_eq!(
        c.summary(),
        "controlplane config: hostname talos, 2 interfaces (1 static address, 0 DHCP), 0 VIPs, etcd member talos of 1"
    );
}

#[test]
fn repeated_lo_entries_merge() {
    let c = config(&snippet("06-additional-addresses-lo.yaml"));
    assert_eq!(c.machine.network.interfaces.len(), 2);
    let ifaces = c.interfaces();
    assert_eq!(ifaces.len(), 1);
    assert_eq!(ifaces[0].link.to_string(), "lo0");
    let addrs: Vec<String> = ifaces[0].addresses.iter().map(|a| a.to_string()).collect();
    assert_eq!(addrs, ["192.168.0.21/24", "10.2.2.2/24"]);
}

#[test]
fn bond() {
    let c = config(&snippet("07-bond.yaml"));
    let iface = &c.interfaces()[0];
    assert_eq!(iface.link.to_string(), "bond0");
    let bond = iface.bond.as_ref().unwrap();
    assert_eq!(bond.mode, Some(BondMode::Ieee8023ad));
    assert_eq!(bond.lacp_rate, Some(LacpRate::Fast));
    assert_eq!(bond.xmit_hash_policy, Some(XmitHashPolicy::Layer34));
    assert_eq!(
        (bond.miimon, bond.updelay, bond.downdelay),
        (Some(100), Some(200), Some(200))
    );
    let members: Vec<&str> = bond.interfaces.iter().map(|i| i.as_str()).collect();
    assert_eq!(members, ["eth0", "eth1"]);

    let c = config(&snippet("10-bond-device-selectors.yaml"));
    let bond = c.interfaces()[0].bond.clone().unwrap();
    assert_eq!(bond.mode, Some(BondMode::BalanceRr));
    assert_eq!(bond.device_selectors.len(), 2);
    assert_eq!(
        bond.device_selectors[1]
            .hardware_addr
            .as_ref()
            .unwrap()
            .as_str(),
        "00:50:57:9c:2c:2d"
    );
}

#[test]
fn vlan_static() {
    let c = config(&snippet("08-vlan-static.yaml"));
    let vlan = &c.interfaces()[0].vlans[0];
    assert_eq!(vlan.vlan_id.get(), 100);
    assert_eq!(vlan.addresses[0].to_string(), "192.168.2.10/28");
    assert_eq!(vlan.routes[0].gateway.unwrap().to_string(), "192.168.2.1");
}

#[test]
fn env_and_nameservers() {
    let c = config(&snippet("12-proxy-env.yaml"));
    assert_eq!(
        c.machine.env["https_proxy"],
        "http://proxy.example.com:3128"
    );
    assert_eq!(c.machine.env["no_proxy"], "10.0.0.0/8,localhost");
    assert_eq!(c.machine.network.nameservers.len(), 2);
}

#[test]
fn wireguard_and_files_are_ignored_with_a_warning() {
    let p = ok(&snippet("13-wireguard.yaml"));
    assert_eq!(p.config.interfaces()[0].mtu, Some(1500));
    let w: Vec<String> = p.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        w,
        ["not supported by Keel, ignored: machine.network.interfaces[0].wireguard (line 8)"]
    );
    let p = ok(&snippet("14-ca-file.yaml"));
    let w: Vec<String> = p.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        w,
        ["not supported by Keel, ignored: machine.files (line 2)"]
    );
}
