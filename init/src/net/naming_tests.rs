//! Naming on the fixture trees in `init/tests/fixtures/sysfs/` (made by
//! `make.sh` there), asserting exact names and the explanations.

use std::path::PathBuf;

use super::*;
use crate::net::sysfs::{read_link, read_links, DeviceFacts, HotplugSlot};

fn root(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sysfs")
        .join(case)
}

fn names(case: &str, link: &str) -> NameCandidates {
    let facts = read_link(&root(case), link).unwrap_or_else(|e| panic!("{case}: {e}"));
    candidates(&facts)
}

struct Case {
    case: &'static str,
    link: &'static str,
    onboard: Option<&'static str>,
    slot: Option<&'static str>,
    path: Option<&'static str>,
    mac: Option<&'static str>,
    chosen: Option<&'static str>,
    /// Substrings of `why` lines, each found in some line.
    why: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        case: "i440fx-virtio-slot",
        link: "eth0",
        onboard: None,
        slot: Some("ens3"),
        path: Some("enp0s3"),
        mac: Some("enx525400123456"),
        chosen: Some("ens3"),
        why: &[
            "onboard: no acpi_index or SMBIOS index on 0000:00:03.0",
            "slot: /sys/bus/pci/slots/3/address = 0000:00:03; function 0, single function",
            "path: PCI 0000:00:03.0: domain 0 bus 0 slot 3",
            "mac: addr_assign_type=0 (permanent) 52:54:00:12:34:56 → enx525400123456",
            "chosen: ens3 (slot;",
        ],
    },
    Case {
        case: "q35-virtio",
        link: "eth0",
        onboard: None,
        slot: None,
        path: Some("enp0s2"),
        mac: Some("enx525400123457"),
        chosen: Some("enp0s2"),
        why: &[
            "slot: no /sys/bus/pci/slots entry for 0000:00:02",
            "chosen: enp0s2 (path;",
        ],
    },
    Case {
        case: "q35-root-port",
        link: "eth0",
        onboard: None,
        slot: None,
        path: Some("enp1s0"),
        mac: Some("enx525400123458"),
        chosen: Some("enp1s0"),
        why: &["slot: /sys/bus/pci/slots/0 has address 0000:01:00 but is not a number > 0"],
    },
    Case {
        case: "multifunction",
        link: "eth0",
        onboard: None,
        slot: None,
        path: Some("enp3s0f0"),
        mac: Some("enxa0369f000010"),
        chosen: Some("enp3s0f0"),
        why: &["function 0, multifunction: config header type has the multifunction bit"],
    },
    Case {
        case: "multifunction",
        link: "eth1",
        onboard: None,
        slot: None,
        path: Some("enp3s0f1"),
        mac: Some("enxa0369f000011"),
        chosen: Some("enp3s0f1"),
        why: &["path: PCI 0000:03:00.1: domain 0 bus 3 slot 0; function 1 → enp3s0f1"],
    },
    Case {
        case: "onboard-acpi",
        link: "eth0",
        onboard: Some("eno1"),
        slot: None,
        path: Some("enp0s31f6"),
        mac: Some("enx3cecef000001"),
        chosen: Some("eno1"),
        why: &[
            "onboard: acpi_index=1, label \"Onboard LAN\" → eno1",
            "chosen: eno1 (onboard;",
        ],
    },
    Case {
        case: "onboard-smbios",
        link: "eth0",
        onboard: Some("eno3"),
        slot: None,
        path: Some("enp2s0"),
        mac: Some("enxe41d2d000001"),
        chosen: Some("eno3"),
        why: &["onboard: SMBIOS index=3, label \"Onboard-LAN\" → eno3"],
    },
    Case {
        case: "onboard-smbios",
        link: "eth1",
        onboard: Some("eno3d1"),
        slot: None,
        path: Some("enp2s0d1"),
        mac: Some("enxe41d2d000002"),
        chosen: Some("eno3d1"),
        why: &["onboard: SMBIOS index=3, dev_port=1, label \"Onboard-LAN\" → eno3d1"],
    },
    Case {
        case: "usb-platform",
        link: "eth0",
        onboard: None,
        slot: None,
        path: None,
        mac: Some("enxb827eb010203"),
        chosen: Some("enxb827eb010203"),
        why: &[
            "onboard, slot, path: not on PCI (device platform/soc/3f980000.usb/usb1/1-1/1-1.1/1-1.1:1.0, subsystems usb → usb → usb → usb → platform)",
            "chosen: enxb827eb010203 (mac;",
        ],
    },
    Case {
        case: "usb-pci",
        link: "eth0",
        onboard: None,
        slot: None,
        path: Some("enp0s20f0u3"),
        mac: Some("enx00e04c680001"),
        chosen: Some("enp0s20f0u3"),
        why: &[
            "onboard: not for a device behind USB (host controller 0000:00:14.0)",
            "multifunction: no config; sibling functions 0000:00:14.2, USB u3 → enp0s20f0u3",
        ],
    },
    Case {
        case: "random-mac",
        link: "eth0",
        onboard: None,
        slot: None,
        path: Some("enp0s5"),
        mac: None,
        chosen: Some("enp0s5"),
        why: &["mac: addr_assign_type=1 (random), no enx name"],
    },
    Case {
        case: "random-mac",
        link: "eth1",
        onboard: None,
        slot: None,
        path: None,
        mac: None,
        chosen: None,
        why: &[
            "mac: addr_assign_type=1 (random), no enx name",
            "chosen: no candidate: keeps its kernel name",
        ],
    },
    Case {
        case: "virtual",
        link: "lo",
        onboard: None,
        slot: None,
        path: None,
        mac: None,
        chosen: None,
        why: &["type=772 is not Ethernet (ARPHRD_ETHER=1): keeps its kernel name"],
    },
    Case {
        case: "virtual",
        link: "dummy0",
        onboard: None,
        slot: None,
        path: None,
        mac: None,
        chosen: None,
        why: &["virtual link without a device: keeps its kernel name"],
    },
    Case {
        case: "virtual",
        link: "bond0",
        onboard: None,
        slot: None,
        path: None,
        mac: None,
        chosen: None,
        why: &["bond link without a device: keeps its kernel name"],
    },
    Case {
        case: "virtual",
        link: "veth0",
        onboard: None,
        slot: None,
        path: None,
        mac: None,
        chosen: None,
        why: &["stacked link (iflink=5 != ifindex=4): keeps its kernel name"],
    },
    Case {
        case: "pci-domain",
        link: "eth0",
        onboard: None,
        slot: None,
        path: Some("enP1p0s2"),
        mac: Some("enx525400123459"),
        chosen: Some("enP1p0s2"),
        why: &["path: PCI 0001:00:02.0: domain 1 bus 0 slot 2"],
    },
];

#[test]
fn fixture_table() {
    for c in CASES {
        let got = names(c.case, c.link);
        let ctx = format!("{}/{}: {:#?}", c.case, c.link, got);
        assert_eq!(got.onboard.as_deref(), c.onboard, "onboard {ctx}");
        assert_eq!(got.slot.as_deref(), c.slot, "slot {ctx}");
        assert_eq!(got.path.as_deref(), c.path, "path {ctx}");
        assert_eq!(got.mac.as_deref(), c.mac, "mac {ctx}");
        assert_eq!(got.chosen.as_deref(), c.chosen, "chosen {ctx}");
        for w in c.why {
            assert!(got.why.iter().any(|l| l.contains(w)), "why {w:?} {ctx}");
        }
    }
}

#[test]
fn every_fixture_link_is_covered() {
    let mut covered = 0;
    for case in [
        "i440fx-virtio-slot",
        "q35-virtio",
        "q35-root-port",
        "multifunction",
        "onboard-acpi",
        "onboard-smbios",
        "usb-platform",
        "usb-pci",
        "random-mac",
        "virtual",
        "pci-domain",
    ] {
        let links = read_links(&root(case));
        assert!(!links.is_empty(), "{case}");
        for l in &links {
            if l.name == "lo" && case != "virtual" {
                continue;
            }
            assert!(
                CASES.iter().any(|c| c.case == case && c.link == l.name)
                    || (case, l.name.as_str()) == ("virtual", "veth1"),
                "{case}/{} has no row",
                l.name
            );
            covered += 1;
        }
    }
    assert_eq!(covered, CASES.len() + 1);
}

#[test]
fn ifnames_0_keeps_kernel_names() {
    let facts = read_link(&root("q35-virtio"), "eth0").unwrap();
    assert_eq!(chosen_name(&facts, true).as_deref(), Some("enp0s2"));
    assert_eq!(chosen_name(&facts, false), None);
    let lo = read_link(&root("q35-virtio"), "lo").unwrap();
    assert_eq!(chosen_name(&lo, true), None);
}

fn pci_link(pci: PciFacts) -> LinkFacts {
    LinkFacts {
        name: "eth0".into(),
        ifindex: 2,
        iflink: Some(2),
        arphrd: 1,
        address: Some("52:54:00:00:00:01".into()),
        addr_assign_type: Some(0),
        device: Some(DeviceFacts {
            bus_path: pci.slot_name.clone(),
            pci: Some(PciFacts {
                direct: true,
                header_multifunction: Some(false),
                ..pci
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn onboard_index_limits() {
    for (acpi, smbios, want, why) in [
        (Some(0), None, None, "onboard: acpi_index=0 ignored (0)"),
        (Some(65535), None, Some("eno65535"), "acpi_index=65535"),
        (
            Some(65536),
            None,
            None,
            "onboard: acpi_index=65536 ignored (> 65535)",
        ),
        (None, Some(16777215), None, "SMBIOS index=16777215 ignored"),
        // ACPI wins over SMBIOS, as in pci_get_onboard_index.
        (
            Some(7),
            Some(3),
            Some("eno7"),
            "onboard: acpi_index=7 → eno7",
        ),
    ] {
        let l = pci_link(PciFacts {
            slot_name: "0000:00:19.0".into(),
            slot: 0x19,
            acpi_index: acpi,
            smbios_index: smbios,
            ..Default::default()
        });
        let c = candidates(&l);
        assert_eq!(c.onboard.as_deref(), want, "{c:#?}");
        assert!(c.why.iter().any(|w| w.contains(why)), "{why}: {c:#?}");
    }
}

#[test]
fn port_names_and_length_limit() {
    let mut l = pci_link(PciFacts {
        slot_name: "0000:5e:00.1".into(),
        bus: 0x5e,
        function: 1,
        ..Default::default()
    });
    l.phys_port_name = Some("p1".into());
    l.dev_port = Some(1);
    // phys_port_name wins over dev_port (get_port_specifier).
    assert_eq!(candidates(&l).path.as_deref(), Some("enp94s0f1np1"));
    l.phys_port_name = None;
    assert_eq!(candidates(&l).path.as_deref(), Some("enp94s0f1d1"));

    // enP12345p200s31f7 is 17 bytes: no path name, the MAC name wins.
    let l = pci_link(PciFacts {
        slot_name: "3039:c8:1f.7".into(),
        domain: 12345,
        bus: 200,
        slot: 31,
        function: 7,
        ..Default::default()
    });
    let c = candidates(&l);
    assert_eq!(c.path, None);
    assert_eq!(c.chosen.as_deref(), Some("enx525400000001"));
    assert!(
        c.why
            .iter()
            .any(|w| w.contains("enP12345p200s31f7 is 17 bytes")),
        "{c:#?}"
    );
}

#[test]
fn ari_and_slot_names() {
    // ARI: slot 1 function 2 is function 10.
    let l = pci_link(PciFacts {
        slot_name: "0000:3b:01.2".into(),
        bus: 0x3b,
        slot: 1,
        function: 2,
        ari: true,
        hotplug_slots: vec![
            HotplugSlot {
                name: "slot-a".into(),
                address: "0000:3b:01".into(),
            },
            HotplugSlot {
                name: "4".into(),
                address: "0000:3b:01".into(),
            },
        ],
        ..Default::default()
    });
    let c = candidates(&l);
    assert_eq!(c.path.as_deref(), Some("enp59s1f10"));
    assert_eq!(c.slot.as_deref(), Some("ens4f10"));
}

#[test]
fn wifi_prefix() {
    let mut l = pci_link(PciFacts {
        slot_name: "0000:02:00.0".into(),
        bus: 2,
        ..Default::default()
    });
    l.devtype = Some("wlan".into());
    let c = candidates(&l);
    assert_eq!(c.path.as_deref(), Some("wlp2s0"));
    assert_eq!(c.mac.as_deref(), Some("wlx525400000001"));
}

#[test]
fn usb_specifiers() {
    for (intf, want) in [
        ("1-1.1:1.0", Some("u1u1")),
        ("2-3:1.0", Some("u3")),
        ("2-3.4:2.1", Some("u3u4c2i1")),
        ("usb1", None),
    ] {
        assert_eq!(usb_specifier(intf).as_deref(), want, "{intf}");
    }
}
