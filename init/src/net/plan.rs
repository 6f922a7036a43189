//! From the config's network spec ([`super::spec`]), the kernel command line (`ip=`, `vlan=`,
//! `keel.network.interface.ignore=`) and the links that exist now, the
//! state every link should be in: a [`Plan`]. Pure: no netlink, no sysfs, so
//! the rules are unit-tested as tables; [`super::apply`] carries a plan out
//! and [`super::manager`] re-plans whenever the config or the links change.
//!
//! Rules (Talos's `v1alpha1` semantics where Talos has them):
//! - A config entry names its link by `interface` (a current name or an
//!   alternative name: the kernel name and the other predictable names are
//!   altnames, see [`super::naming`]) or by `deviceSelector`; a selector
//!   must match exactly one link (a VIP must never land on two links).
//! - Config wins over `ip=` for the same link; `ip=` without a device
//!   applies to the links the config does not mention.
//! - Before a config exists, and when the config configures no interface
//!   at all, every physical link that nothing else configures runs DHCP, so
//!   a config URL can be fetched (Talos does the same on metal).
//! - `ignore: true` and `keel.network.interface.ignore=` leave a link
//!   entirely alone.

use std::collections::BTreeMap;
use std::net::IpAddr;

use netlink_packet_route::link::{BondLacpRate, BondMode, BondXmitHashPolicy};

use super::ipcfg::{Autoconf, NetParams, IFNAME_MAX};
use super::rtnl::BondSettings;
use super::selector::{select, Selection};
use super::spec::{LinkAddressing, LinkKind, LinkRef, LinkSpec, NetSpec};
use super::sysfs::LinkFacts;
use crate::config::bond::{self, Bond};

pub use super::DEFAULT_ROUTE_METRIC;

/// The links Keel sees: sysfs facts plus each link's alternative names
/// (from rtnetlink; sysfs does not show them).
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub links: Vec<LinkFacts>,
    /// Current name → alternative names.
    pub alt_names: BTreeMap<String, Vec<String>>,
}

impl Inventory {
    /// The link called `name`, by current or alternative name.
    pub fn find(&self, name: &str) -> Option<&LinkFacts> {
        self.links.iter().find(|l| l.name == name).or_else(|| {
            let (cur, _) = self
                .alt_names
                .iter()
                .find(|(_, alts)| alts.iter().any(|a| a == name))?;
            self.links.iter().find(|l| &l.name == cur)
        })
    }
}

/// A link to create before configuring it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Create {
    Dummy,
    Vlan {
        parent: String,
        id: u16,
    },
    Bond {
        settings: BondSettings,
        /// Current names of the member links.
        members: Vec<String>,
        primary: Option<String>,
    },
}

/// A route without its output link (the link is the [`LinkPlan`]'s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePlan {
    /// None: the default route.
    pub dest: Option<(IpAddr, u8)>,
    pub gateway: Option<IpAddr>,
    pub source: Option<IpAddr>,
    pub metric: u32,
    pub mtu: Option<u32>,
}

/// DHCPv4 on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhcpPlan {
    pub route_metric: u32,
}

/// Everything one link should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPlan {
    /// The link's current name (or the name to create it with).
    pub name: String,
    /// Where this comes from, for logs: `machine.network.interfaces
    /// (deviceSelector {hardwareAddr: …})`, `ip=`, `no config: DHCP`.
    pub origin: String,
    pub create: Option<Create>,
    pub mtu: Option<u32>,
    pub addresses: Vec<(IpAddr, u8)>,
    pub routes: Vec<RoutePlan>,
    pub dhcp: Option<DhcpPlan>,
}

impl LinkPlan {
    /// A link with nothing configured yet.
    pub fn new(name: &str, origin: String) -> LinkPlan {
        LinkPlan {
            name: name.to_owned(),
            origin,
            create: None,
            mtu: None,
            addresses: Vec::new(),
            routes: Vec::new(),
            dhcp: None,
        }
    }
}

/// Why part of the config could not be planned now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Nothing matches (yet): links may still appear (hotplug, a driver
    /// still probing). Logged once; configured when the link appears.
    Waiting { origin: String, what: String },
    /// A selector matched several links: nothing is configured for it.
    Ambiguous { origin: String, links: Vec<String> },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Waiting { origin, what } => write!(f, "{origin}: waiting for {what}"),
            Problem::Ambiguous { origin, links } => write!(
                f,
                "{origin}: matches {} links ({}), expected exactly one; not configuring it",
                links.len(),
                links.join(", ")
            ),
        }
    }
}

/// The desired state of every link Keel manages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// In apply order: existing links first, then bonds (after their
    /// members), then VLANs (after their parents).
    pub links: Vec<LinkPlan>,
    /// Links left alone (`ignore`, `keel.network.interface.ignore=`).
    pub ignored: Vec<String>,
    pub problems: Vec<Problem>,
    /// The link each VIP lives on (`<link>.<vid>` for a VLAN VIP). The
    /// address itself is the election's to add, not the plan's.
    pub vips: BTreeMap<IpAddr, String>,
}

impl Plan {
    pub fn link(&self, name: &str) -> Option<&LinkPlan> {
        self.links.iter().find(|l| l.name == name)
    }
}

/// The VLAN link name for `vid` on `parent`: `<parent>.<vid>`, or when
/// that exceeds IFNAMSIZ-1 (15) bytes, the parent's name cut short plus
/// four hex digits of a hash of the whole parent name, so two long parents
/// sharing a prefix still get distinct names, and the same input always
/// gives the same name.
pub fn vlan_name(parent: &str, vid: u16) -> String {
    let full = format!("{parent}.{vid}");
    if full.len() <= IFNAME_MAX {
        return full;
    }
    let suffix = format!(".{vid}");
    let keep = IFNAME_MAX - 4 - suffix.len();
    let cut: String = parent.chars().take(keep).collect();
    format!("{cut}{:04x}{suffix}", fnv1a16(parent))
}

/// FNV-1a (32 bit) folded to 16 bits: stable across builds and platforms,
/// unlike `std`'s randomly keyed hasher.
fn fnv1a16(s: &str) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let [a, b, c, d] = h.to_be_bytes();
    u16::from_be_bytes([a ^ c, b ^ d])
}

/// Builds the plan. `spec` is None before a machine config is loaded.
pub fn plan(spec: Option<&NetSpec>, params: &NetParams, inv: &Inventory) -> Plan {
    let mut p = Plan::default();
    let mut claimed: Vec<String> = Vec::new();
    let links = spec.map(|s| s.links.as_slice()).unwrap_or_default();

    // Ignored links first: nothing else may touch them.
    for name in &params.ignore {
        let cur = inv.find(name).map_or(name.as_str(), |l| l.name.as_str());
        push_unique(&mut p.ignored, cur);
    }
    for l in links.iter().filter(|l| l.ignore) {
        for name in resolve(&l.link, &l.origin, inv, &mut p.problems) {
            push_unique(&mut p.ignored, &name);
        }
    }
    let mut bonds = Vec::new();
    let mut vlans: Vec<LinkPlan> = Vec::new();
    // What each configured link resolved to, for the VLANs on it.
    let mut resolved: Vec<(&LinkRef, String)> = Vec::new();
    for l in links.iter().filter(|l| !l.ignore) {
        let targets = match &l.kind {
            LinkKind::Existing => resolve(&l.link, &l.origin, inv, &mut p.problems),
            // Validation gives created links a name.
            LinkKind::Dummy | LinkKind::Bond { .. } => match &l.link {
                LinkRef::Name(n) => vec![n.clone()],
                _ => Vec::new(),
            },
            LinkKind::Vlan { parent, id } => {
                let configured = || links.iter().any(|o| &o.link == parent && !o.ignore);
                let parents = match resolved.iter().find(|(r, _)| *r == parent) {
                    Some((_, name)) => vec![name.clone()],
                    // The parent's own entry has reported why it is missing.
                    None if configured() => Vec::new(),
                    None => resolve(parent, &l.origin, inv, &mut p.problems),
                };
                for parent in parents {
                    if p.ignored.contains(&parent) {
                        continue;
                    }
                    let name = match &l.link {
                        LinkRef::Name(n) => n.clone(),
                        _ => vlan_name(&parent, *id),
                    };
                    let mut lp = LinkPlan::new(&name, l.origin.clone());
                    lp.create = Some(Create::Vlan { parent, id: *id });
                    fill(&mut lp, &l.addressing);
                    vip_links(&mut p.vips, l, &name);
                    vlans.push(lp);
                }
                continue;
            }
        };
        for name in targets {
            if p.ignored.contains(&name) {
                continue;
            }
            resolved.push((&l.link, name.clone()));
            let mut lp = LinkPlan::new(&name, l.origin.clone());
            lp.create = match &l.kind {
                LinkKind::Dummy => Some(Create::Dummy),
                LinkKind::Bond {
                    settings,
                    members,
                    primary,
                } => {
                    let members = bond_members(members, inv, &l.origin, &mut p.problems);
                    for m in &members {
                        push_unique(&mut claimed, m);
                    }
                    Some(Create::Bond {
                        settings: settings.clone(),
                        primary: primary
                            .as_ref()
                            .map(|n| inv.find(n).map_or(n.clone(), |l| l.name.clone())),
                        members,
                    })
                }
                _ => None,
            };
            fill(&mut lp, &l.addressing);
            claimed.push(name.clone());
            vip_links(&mut p.vips, l, &name);
            if matches!(l.kind, LinkKind::Bond { .. }) {
                bonds.push(lp);
            } else {
                p.links.push(lp);
            }
        }
    }

    // `vlan=<name>:<parent>` from the command line.
    for v in &params.vlans {
        let parent = inv
            .find(&v.parent)
            .map_or(v.parent.clone(), |l| l.name.clone());
        if vlans.iter().any(|l: &LinkPlan| l.name == v.name) {
            continue;
        }
        let mut lp = LinkPlan::new(&v.name, format!("vlan={}:{}", v.name, v.parent));
        lp.create = Some(Create::Vlan { parent, id: v.id });
        vlans.push(lp);
    }

    // `ip=`: for links the config does not configure. A static address
    // without a device goes to the first physical link only (the kernel's
    // ipconfig picks "the first device"), DHCP without a device to all.
    let physical: Vec<&LinkFacts> = inv.links.iter().filter(|l| l.is_physical()).collect();
    let vlan_names: Vec<String> = vlans.iter().map(|v| v.name.clone()).collect();
    for ip in &params.ip {
        let targets: Vec<String> = match &ip.device {
            Some(d) => vec![inv.find(d).map_or_else(|| d.clone(), |l| l.name.clone())],
            None if ip.client.is_some() => {
                physical.iter().take(1).map(|l| l.name.clone()).collect()
            }
            None => physical.iter().map(|l| l.name.clone()).collect(),
        };
        for name in targets {
            if claimed.contains(&name) || p.ignored.contains(&name) {
                continue;
            }
            let exists = inv.find(&name).is_some() || vlan_names.contains(&name);
            if !exists {
                push_problem(
                    &mut p.problems,
                    Problem::Waiting {
                        origin: "ip=".into(),
                        what: format!("link {name}"),
                    },
                );
                continue;
            }
            let lp = match vlans.iter_mut().find(|v| v.name == name) {
                Some(v) => v,
                None => entry(&mut p.links, &name, "ip="),
            };
            if let (Some(client), Some(prefix)) = (ip.client, ip.prefix_or_default()) {
                push_unique(&mut lp.addresses, (client, prefix));
                if let Some(gw) = ip.gateway {
                    let r = RoutePlan {
                        dest: None,
                        gateway: Some(gw),
                        source: None,
                        metric: DEFAULT_ROUTE_METRIC,
                        mtu: None,
                    };
                    push_unique(&mut lp.routes, r);
                }
            }
            if matches!(ip.autoconf, Autoconf::Dhcp | Autoconf::Any) && ip.client.is_none() {
                lp.dhcp = Some(DhcpPlan {
                    route_metric: DEFAULT_ROUTE_METRIC,
                });
            }
            if ip.mtu.is_some() {
                lp.mtu = ip.mtu;
            }
        }
    }

    // No interface configuration at all: DHCP on every physical link that
    // nothing configures, so the node is reachable and a config URL works.
    let configures_links = spec.is_some_and(NetSpec::configures_links) || !params.ip.is_empty();
    if !configures_links {
        for l in &physical {
            if claimed.contains(&l.name) || p.ignored.contains(&l.name) || l.kind.is_some() {
                continue;
            }
            let origin = if spec.is_some() {
                "config has no interfaces: DHCP"
            } else {
                "no config yet: DHCP"
            };
            let lp = entry(&mut p.links, &l.name, origin);
            lp.dhcp.get_or_insert(DhcpPlan {
                route_metric: DEFAULT_ROUTE_METRIC,
            });
        }
    }

    p.links.extend(bonds);
    p.links.extend(vlans);
    p
}

fn entry<'a>(links: &'a mut Vec<LinkPlan>, name: &str, origin: &str) -> &'a mut LinkPlan {
    match links.iter().position(|l| l.name == name) {
        Some(i) => &mut links[i],
        None => {
            links.push(LinkPlan::new(name, origin.to_owned()));
            links.last_mut().expect("just pushed")
        }
    }
}

fn push_unique<T: PartialEq + Clone, Q: Into<T> + Clone>(v: &mut Vec<T>, x: Q) {
    let x: T = x.into();
    if !v.contains(&x) {
        v.push(x);
    }
}

fn push_problem(v: &mut Vec<Problem>, p: Problem) {
    if !v.contains(&p) {
        v.push(p);
    }
}

/// The current names of the links `link` names (none or one).
fn resolve(
    link: &LinkRef,
    origin: &str,
    inv: &Inventory,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    let origin = origin.to_owned();
    match link {
        LinkRef::Name(n) => match inv.find(n) {
            Some(l) => vec![l.name.clone()],
            None => {
                push_problem(
                    problems,
                    Problem::Waiting {
                        origin,
                        what: format!("link {n} to appear"),
                    },
                );
                Vec::new()
            }
        },
        LinkRef::Selector(sel) => match select(sel, &inv.links) {
            Selection::One(l) => vec![l.name.clone()],
            Selection::None => {
                push_problem(
                    problems,
                    Problem::Waiting {
                        origin,
                        what: "a matching link to appear".into(),
                    },
                );
                Vec::new()
            }
            s @ Selection::Many(_) => {
                push_problem(
                    problems,
                    Problem::Ambiguous {
                        origin,
                        links: s.names().into_iter().map(String::from).collect(),
                    },
                );
                Vec::new()
            }
        },
        LinkRef::VlanOf { parent, id } => resolve(parent, &origin, inv, problems)
            .into_iter()
            .map(|p| vlan_name(&p, *id))
            .collect(),
    }
}

/// Bond members: named ones that exist, and every link each selector
/// matches (in a bond, a selector may match several links).
fn bond_members(
    members: &[LinkRef],
    inv: &Inventory,
    origin: &str,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    let mut out = Vec::new();
    for m in members {
        match m {
            LinkRef::Selector(sel) => {
                let selection = select(sel, &inv.links);
                let hits = selection.names();
                if hits.is_empty() {
                    push_problem(
                        problems,
                        Problem::Waiting {
                            origin: origin.to_owned(),
                            what: format!("a bond member matching {sel} to appear"),
                        },
                    );
                }
                for h in hits {
                    push_unique(&mut out, h);
                }
            }
            LinkRef::Name(n) => match inv.find(n) {
                Some(l) => push_unique(&mut out, l.name.as_str()),
                None => push_problem(
                    problems,
                    Problem::Waiting {
                        origin: origin.to_owned(),
                        what: format!("bond member {n} to appear"),
                    },
                ),
            },
            LinkRef::VlanOf { .. } => {
                for name in resolve(m, origin, inv, problems) {
                    push_unique(&mut out, name);
                }
            }
        }
    }
    out
}

/// The kernel bonding driver's settings for a Talos bond.
pub(crate) fn bond_settings(b: &Bond) -> BondSettings {
    BondSettings {
        mode: b.mode.map(|m| match m {
            bond::BondMode::BalanceRr => BondMode::BalanceRr,
            bond::BondMode::ActiveBackup => BondMode::ActiveBackup,
            bond::BondMode::BalanceXor => BondMode::BalanceXor,
            bond::BondMode::Broadcast => BondMode::Broadcast,
            bond::BondMode::Ieee8023ad => BondMode::Ieee8023Ad,
            bond::BondMode::BalanceTlb => BondMode::BalanceTlb,
            bond::BondMode::BalanceAlb => BondMode::BalanceAlb,
        }),
        miimon: b.miimon,
        updelay: b.updelay,
        downdelay: b.downdelay,
        lacp_rate: b.lacp_rate.map(|r| match r {
            bond::LacpRate::Slow => BondLacpRate::Slow,
            bond::LacpRate::Fast => BondLacpRate::Fast,
        }),
        xmit_hash_policy: b.xmit_hash_policy.map(|x| match x {
            bond::XmitHashPolicy::Layer2 => BondXmitHashPolicy::Layer2,
            bond::XmitHashPolicy::Layer34 => BondXmitHashPolicy::Layer34,
            bond::XmitHashPolicy::Layer23 => BondXmitHashPolicy::Layer23,
            bond::XmitHashPolicy::Encap23 => BondXmitHashPolicy::Encap23,
            bond::XmitHashPolicy::Encap34 => BondXmitHashPolicy::Encap34,
        }),
    }
}

/// A link's addresses, routes, MTU and DHCP, from its spec.
fn fill(lp: &mut LinkPlan, a: &LinkAddressing) {
    lp.mtu = a.mtu;
    for addr in &a.addresses {
        push_unique(&mut lp.addresses, *addr);
    }
    for r in &a.routes {
        push_unique(&mut lp.routes, r.clone());
    }
    if a.dhcp.is_some() {
        lp.dhcp = a.dhcp;
    }
}

/// Records the link `name` as the home of `spec`'s VIPs.
fn vip_links(vips: &mut BTreeMap<IpAddr, String>, spec: &LinkSpec, name: &str) {
    for v in &spec.vips {
        vips.insert(v.ip, name.to_owned());
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
