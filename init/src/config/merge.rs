//! Merging repeated interface entries, as Talos does.
//!
//! Talos lets several `machine.network.interfaces[]` entries name the same
//! link (its docs add a second address to `lo` that way) and merges them:
//! lists (addresses, routes, VLANs) are appended, and a scalar set in a
//! later entry fills one left at its default. Keel does the same, and
//! treats two different non-default values for one scalar as an error
//! rather than silently letting one win. VLANs with the same id on the
//! same link are merged by the same rules, since they are the same link
//! (`eth0.100`). Entries that name their link by `deviceSelector` are kept
//! apart: which link they select is only known on the node.
//!
//! The legacy `cidr` key is folded into `addresses` (first, as Talos's
//! `Device.Addresses()` lists it), so consumers read one list.

use std::fmt::Display;

use super::error::YamlPath;
use super::schema::{Addressing, AddressingMut, Config, HasAddressing, Interface, Link, Vlan};
use super::types::Cidr;

/// Two entries that set the same scalar differently.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Conflict {
    pub path: YamlPath,
    pub message: String,
}

impl Config {
    /// `machine.network.interfaces`, with entries for the same `interface`
    /// name merged (see the module docs) and `cidr` folded into
    /// `addresses`. Order: first appearance of each link.
    pub fn interfaces(&self) -> Vec<Interface> {
        merge(&self.machine.network.interfaces, &YamlPath::root()).0
    }
}

/// Merges `entries` (found at `base`, for error paths).
pub(crate) fn merge(entries: &[Interface], base: &YamlPath) -> (Vec<Interface>, Vec<Conflict>) {
    let mut out: Vec<Interface> = Vec::new();
    let mut conflicts = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let path = base.index(i);
        let existing = match &entry.link {
            Link::Name(name) => out.iter().position(|o| o.link.name() == Some(name)),
            Link::Selector(_) => None,
        };
        let target = match existing {
            Some(j) => &mut out[j],
            None => {
                out.push(empty_like(&entry.link));
                let last = out.len() - 1;
                &mut out[last]
            }
        };
        merge_into(target, entry, &path, &mut conflicts);
    }
    (out, conflicts)
}

fn empty_like(link: &Link) -> Interface {
    Interface {
        link: link.clone(),
        addresses: Vec::new(),
        cidr: None,
        routes: Vec::new(),
        mtu: None,
        dhcp: false,
        dhcp_options: None,
        ignore: false,
        dummy: false,
        bond: None,
        vlans: Vec::new(),
        vip: None,
        wireguard: None,
        bridge: None,
        bridge_port: None,
    }
}

fn merge_into(
    target: &mut Interface,
    entry: &Interface,
    path: &YamlPath,
    conflicts: &mut Vec<Conflict>,
) {
    let who = target.link.to_string();
    merge_addressing(
        target.addressing_mut(),
        entry.addressing(),
        path,
        &who,
        conflicts,
    );
    let mut s = Scalars {
        path,
        who: &who,
        conflicts,
    };
    s.merge("bond", &mut target.bond, &entry.bond, |_| None::<u8>);
    target.ignore |= entry.ignore;
    target.dummy |= entry.dummy;
    target.wireguard = target.wireguard.or(entry.wireguard);
    target.bridge = target.bridge.or(entry.bridge);
    target.bridge_port = target.bridge_port.or(entry.bridge_port);
    for (k, vlan) in entry.vlans.iter().enumerate() {
        let vpath = path.key("vlans").index(k);
        let existing = target.vlans.iter().position(|v| v.vlan_id == vlan.vlan_id);
        let into = match existing {
            Some(j) => &mut target.vlans[j],
            None => {
                target.vlans.push(empty_vlan(vlan));
                let last = target.vlans.len() - 1;
                &mut target.vlans[last]
            }
        };
        let vwho = format!("{who}.{}", vlan.vlan_id);
        merge_addressing(
            into.addressing_mut(),
            vlan.addressing(),
            &vpath,
            &vwho,
            conflicts,
        );
    }
}

fn empty_vlan(like: &Vlan) -> Vlan {
    Vlan {
        vlan_id: like.vlan_id,
        addresses: Vec::new(),
        cidr: None,
        routes: Vec::new(),
        dhcp: false,
        dhcp_options: None,
        mtu: None,
        vip: None,
    }
}

/// The keys a link entry and a VLAN share: addresses (`cidr` folded in)
/// and routes appended, DHCP or-ed, scalars merged.
fn merge_addressing(
    target: AddressingMut<'_>,
    entry: Addressing<'_>,
    path: &YamlPath,
    who: &str,
    conflicts: &mut Vec<Conflict>,
) {
    add_addresses(target.addresses, entry.all_addresses());
    for route in entry.routes {
        if !target.routes.contains(route) {
            target.routes.push(route.clone());
        }
    }
    *target.dhcp |= entry.dhcp;
    let mut s = Scalars {
        path,
        who,
        conflicts,
    };
    s.merge("mtu", target.mtu, &entry.mtu, |m| Some(*m));
    s.merge(
        "dhcpOptions",
        target.dhcp_options,
        &entry.dhcp_options.cloned(),
        |_| None::<u8>,
    );
    s.merge("vip", target.vip, &entry.vip.cloned(), show_vip);
}

fn show_vip(v: &super::schema::Vip) -> Option<String> {
    Some(format!("{} (ttl {}s)", v.ip, v.ttl.seconds()))
}

/// Appends addresses not already present (adding one twice would fail on
/// the node with EEXIST).
fn add_addresses<'a>(to: &mut Vec<Cidr>, from: impl Iterator<Item = &'a Cidr>) {
    for a in from {
        if !to.contains(a) {
            to.push(*a);
        }
    }
}

struct Scalars<'a> {
    path: &'a YamlPath,
    who: &'a str,
    conflicts: &'a mut Vec<Conflict>,
}

impl Scalars<'_> {
    /// Later non-default wins over default; two different non-defaults
    /// conflict. `show` gives a short value for the message, if any.
    fn merge<T: Clone + PartialEq, D: Display>(
        &mut self,
        key: &str,
        target: &mut Option<T>,
        value: &Option<T>,
        show: impl Fn(&T) -> Option<D>,
    ) {
        match (target.as_ref(), value) {
            (_, None) => {}
            (None, Some(v)) => *target = Some(v.clone()),
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => {
                let message = match (show(b), show(a)) {
                    (Some(b), Some(a)) => format!(
                        "{key} {b} conflicts with {key} {a} in an earlier entry for {}, expected the same value or none",
                        self.who
                    ),
                    _ => format!(
                        "{key} conflicts with a different {key} in an earlier entry for {}, expected it in one entry only",
                        self.who
                    ),
                };
                self.conflicts.push(Conflict {
                    path: self.path.key(key),
                    message,
                });
            }
        }
    }
}
