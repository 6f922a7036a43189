//! Matching Talos's `deviceSelector` against the links sysfs shows.
//!
//! Talos semantics (v1alpha1 `NetworkDeviceSelector`): every field given
//! must match (AND); string fields are shell globs over the whole value;
//! MAC addresses are compared lowercase with colons; `physical: true`
//! selects Ethernet links backed by a device that are no bond, bridge,
//! VLAN, veth or other link kind. Without `physical`, links of a kind are
//! not selected either (Keel's rule: a bond or VLAN shares its member's or
//! parent's MAC and must not make a `hardwareAddr` selector ambiguous);
//! `physical: false` selects them. Selecting picks links, it does not apply
//! anything: a selector that matches nothing waits for hotplug, one that
//! matches several links is an error for that config entry (a VIP must
//! never land on two links).

use glob::{MatchOptions, Pattern};

use super::sysfs::LinkFacts;
use crate::config::schema::DeviceSelector;
use crate::config::types::MacPattern;

/// What a selector picked among the links.
#[derive(Debug, PartialEq, Eq)]
pub enum Selection<'a> {
    /// No link matches (yet): the caller waits and logs once.
    None,
    One(&'a LinkFacts),
    /// More than one link: an error for that entry; the caller logs the
    /// names and configures nothing for it.
    Many(Vec<&'a LinkFacts>),
}

impl Selection<'_> {
    /// The kernel names of the selected links.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Selection::None => Vec::new(),
            Selection::One(l) => vec![l.name.as_str()],
            Selection::Many(ls) => ls.iter().map(|l| l.name.as_str()).collect(),
        }
    }
}

/// The links `sel` matches, in the order given.
pub fn select<'a>(sel: &DeviceSelector, links: &'a [LinkFacts]) -> Selection<'a> {
    let mut hits: Vec<&LinkFacts> = links.iter().filter(|l| matches(sel, l)).collect();
    match hits.len() {
        0 => Selection::None,
        1 => Selection::One(hits.remove(0)),
        _ => Selection::Many(hits),
    }
}

/// True when every field given in `sel` matches `link`. `permanentAddr`
/// is compared with [`LinkFacts::permanent_addr`], which the caller may
/// fill from ethtool (sysfs alone knows it only for some links).
pub fn matches(sel: &DeviceSelector, link: &LinkFacts) -> bool {
    // `*` may match `:` and `.` in bus paths and MACs: there is no path
    // separator in these values.
    const OPTS: MatchOptions = MatchOptions {
        case_sensitive: true,
        require_literal_separator: false,
        require_literal_leading_dot: false,
    };
    // PCI ids are hex: `1af4:1000` in a config selects `1AF4:1000`.
    const HEX_OPTS: MatchOptions = MatchOptions {
        case_sensitive: false,
        ..OPTS
    };
    let glob = |pat: &str, value: Option<&str>, opts: MatchOptions| {
        // Config validation already rejected invalid globs; a pattern that
        // still fails to compile matches nothing rather than everything.
        match (Pattern::new(pat), value) {
            (Ok(p), Some(v)) => p.matches_with(v, opts),
            _ => false,
        }
    };
    let mac = |pat: &MacPattern, value: Option<&str>| {
        let value = value.map(str::to_ascii_lowercase);
        if pat.is_glob() {
            glob(pat.as_str(), value.as_deref(), OPTS)
        } else {
            value.as_deref() == Some(pat.as_str())
        }
    };
    sel.bus_path
        .as_ref()
        .is_none_or(|g| glob(g.as_str(), link.bus_path(), OPTS))
        && sel
            .hardware_addr
            .as_ref()
            .is_none_or(|p| mac(p, link.address.as_deref()))
        && sel
            .permanent_addr
            .as_ref()
            .is_none_or(|p| mac(p, link.permanent_addr.as_deref()))
        && sel
            .pci_id
            .as_ref()
            .is_none_or(|g| glob(g.as_str(), link.pci_id(), HEX_OPTS))
        && sel
            .driver
            .as_ref()
            .is_none_or(|g| glob(g.as_str(), link.driver(), OPTS))
        && match sel.physical {
            Some(p) => p == link.is_physical(),
            // Without `physical`, links of a kind (bond, VLAN, bridge,
            // veth...) are never selected: a bond and a VLAN carry their
            // member's or parent's MAC, so a `hardwareAddr` selector would
            // otherwise match two links as soon as Keel created one.
            None => link.kind.is_none(),
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::sysfs::test_nic as nic;

    fn links() -> Vec<LinkFacts> {
        let mut bond = LinkFacts {
            name: "bond0".into(),
            arphrd: 1,
            address: Some("52:54:00:00:00:01".into()),
            kind: Some("bond".into()),
            ..Default::default()
        };
        bond.addr_assign_type = Some(3);
        let lo = LinkFacts {
            name: "lo".into(),
            arphrd: 772,
            address: Some("00:00:00:00:00:00".into()),
            ..Default::default()
        };
        let mut set_mac = nic(
            "eth2",
            "02:00:00:aa:bb:cc",
            "0000:03:00.0",
            "8086:1521",
            "igb",
        );
        set_mac.addr_assign_type = Some(3);
        set_mac.permanent_addr = Some("a0:36:9f:00:00:10".into());
        vec![
            lo,
            nic(
                "eth0",
                "52:54:00:00:00:01",
                "0000:00:03.0",
                "1AF4:1000",
                "virtio_net",
            ),
            nic(
                "eth1",
                "52:54:00:00:00:02",
                "0000:00:04.0",
                "1AF4:1041",
                "virtio_net",
            ),
            set_mac,
            bond,
        ]
    }

    fn sel(yaml: &str) -> DeviceSelector {
        serde_norway::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    #[test]
    fn table() {
        let links = links();
        let cases: &[(&str, &[&str])] = &[
            // exact values
            ("busPath: 0000:00:03.0", &["eth0"]),
            ("hardwareAddr: 52:54:00:00:00:02", &["eth1"]),
            // MAC case does not matter
            ("hardwareAddr: 52:54:00:00:00:0A", &[]),
            ("hardwareAddr: 02:00:00:AA:BB:CC", &["eth2"]),
            ("permanentAddr: A0:36:9F:00:00:10", &["eth2"]),
            ("permanentAddr: 'a0:36:9f:*'", &["eth2"]),
            // globs, anchored, `*` crosses `:` and `.`
            ("busPath: '0*'", &["eth0", "eth1", "eth2"]),
            ("busPath: '0000:00:*'", &["eth0", "eth1"]),
            ("busPath: '00:03.0'", &[]),
            ("busPath: '*:03.0'", &["eth0"]),
            // bond0 carries eth0's MAC but has a kind: not selected
            // unless `physical: false` asks for virtual links.
            ("hardwareAddr: '52:54:*'", &["eth0", "eth1"]),
            ("driver: virtio*", &["eth0", "eth1"]),
            ("driver: virtio", &[]),
            ("driver: 'ig?'", &["eth2"]),
            // pciID in Talos's form, either case
            ("pciID: 1AF4:1000", &["eth0"]),
            ("pciID: 1af4:1000", &["eth0"]),
            ("pciID: '1AF4:*'", &["eth0", "eth1"]),
            ("pciID: '[18]*'", &["eth0", "eth1", "eth2"]),
            // physical
            ("physical: true", &["eth0", "eth1", "eth2"]),
            ("physical: false", &["lo", "bond0"]),
            // AND
            ("{driver: virtio_net, hardwareAddr: '*:02'}", &["eth1"]),
            (
                "{physical: true, hardwareAddr: '52:54:00:00:00:01'}",
                &["eth0"],
            ),
            (
                "{physical: false, hardwareAddr: '52:54:00:00:00:01'}",
                &["bond0"],
            ),
            ("{busPath: '0000:00:03.0', driver: igb}", &[]),
            ("{pciID: '1AF4:*', physical: false}", &[]),
        ];
        for (yaml, want) in cases {
            let got = select(&sel(yaml), &links);
            assert_eq!(got.names(), *want, "{yaml}");
            let kind = match got {
                Selection::None => 0,
                Selection::One(_) => 1,
                Selection::Many(_) => 2,
            };
            assert_eq!(kind, want.len().min(2), "{yaml}");
        }
    }

    #[test]
    fn link_without_a_value_never_matches_a_field() {
        let bare = LinkFacts {
            name: "x".into(),
            arphrd: 1,
            ..Default::default()
        };
        for yaml in [
            "busPath: '*'",
            "hardwareAddr: '*'",
            "permanentAddr: '*'",
            "pciID: '*'",
            "driver: '*'",
            "physical: true",
        ] {
            assert!(!matches(&sel(yaml), &bare), "{yaml}");
        }
        assert!(matches(&sel("physical: false"), &bare));
    }

    #[test]
    fn multi_match_is_many_with_every_name() {
        let links = links();
        match select(&sel("driver: virtio_net"), &links) {
            Selection::Many(ls) => {
                let names: Vec<&str> = ls.iter().map(|l| l.name.as_str()).collect();
                assert_eq!(names, ["eth0", "eth1"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(select(&sel("driver: e1000e"), &links), Selection::None);
        assert!(matches!(
            select(&sel("busPath: 0000:00:04.0"), &links),
            Selection::One(l) if l.name == "eth1"
        ));
    }
}
