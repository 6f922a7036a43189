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
use super::spec::{AliasSpec, LinkKind, LinkRef, LinkSpec, NetSpec};
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
        /// 802.1ad (QinQ) instead of 802.1Q.
        qinq: bool,
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

/// What DHCPv4 sends as its client identifier (option 61).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClientId {
    /// Type 1 (Ethernet) and the MAC, RFC 2132 9.14 (Talos's default).
    #[default]
    Mac,
    /// No option 61.
    None,
    /// RFC 4361: type 255, an IAID and this DUID.
    Duid(Vec<u8>),
}

/// DHCPv4 on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpPlan {
    pub route_metric: u32,
    /// Do not take the hostname from this link's lease.
    pub ignore_hostname: bool,
    pub client_id: ClientId,
}

impl Default for DhcpPlan {
    fn default() -> DhcpPlan {
        DhcpPlan {
            route_metric: DEFAULT_ROUTE_METRIC,
            ignore_hostname: false,
            client_id: ClientId::Mac,
        }
    }
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
    /// Administratively up (default) or down.
    pub up: bool,
    /// The MAC to set, for links Keel creates.
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    pub addresses: Vec<(IpAddr, u8)>,
    /// The metric of an address's prefix route (IFA_RT_PRIORITY), where
    /// the config sets one.
    pub priorities: Vec<((IpAddr, u8), u32)>,
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
            up: true,
            mac: None,
            mtu: None,
            addresses: Vec::new(),
            priorities: Vec::new(),
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
    /// Each link alias (`LinkAliasConfig`) and the link it names now.
    pub aliases: BTreeMap<String, String>,
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
    let r = Resolver {
        inv,
        aliases: spec.map(|s| s.aliases.as_slice()).unwrap_or_default(),
    };
    for a in r.aliases {
        if let Some(l) = r.alias(a, &mut p.problems) {
            p.aliases.insert(a.name.clone(), l);
        }
    }

    // Ignored links first: nothing else may touch them.
    for name in &params.ignore {
        let cur = inv.find(name).map_or(name.as_str(), |l| l.name.as_str());
        push_unique(&mut p.ignored, cur);
    }
    for l in links.iter().filter(|l| l.ignore) {
        for name in r.resolve(&l.link, &l.origin, &mut p.problems) {
            push_unique(&mut p.ignored, &name);
        }
    }
    let mut bonds = Vec::new();
    let mut vlans: Vec<LinkPlan> = Vec::new();
    // What each configured link resolved to, for the VLANs on it.
    let mut resolved: Vec<(&LinkRef, String)> = Vec::new();
    for l in links.iter().filter(|l| !l.ignore) {
        let targets = match &l.kind {
            LinkKind::Existing => r.resolve(&l.link, &l.origin, &mut p.problems),
            // Validation gives created links a name.
            LinkKind::Dummy | LinkKind::Bond { .. } => match &l.link {
                LinkRef::Name(n) => vec![n.clone()],
                _ => Vec::new(),
            },
            LinkKind::Vlan { parent, id, qinq } => {
                let configured = || links.iter().any(|o| &o.link == parent && !o.ignore);
                let parents = match resolved.iter().find(|(r, _)| *r == parent) {
                    Some((_, name)) => vec![name.clone()],
                    // The parent's own entry has reported why it is missing.
                    None if configured() => Vec::new(),
                    None => r.resolve(parent, &l.origin, &mut p.problems),
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
                    lp.create = Some(Create::Vlan {
                        parent,
                        id: *id,
                        qinq: *qinq,
                    });
                    fill(&mut lp, l);
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
                    let members = r.bond_members(members, &l.origin, &mut p.problems);
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
            fill(&mut lp, l);
            claimed.push(name.clone());
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
        lp.create = Some(Create::Vlan {
            parent,
            id: v.id,
            qinq: false,
        });
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
                lp.dhcp = Some(DhcpPlan::default());
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
            lp.dhcp.get_or_insert_with(DhcpPlan::default);
        }
    }

    p.links.extend(bonds);
    p.links.extend(vlans);
    // The VIPs' links, once the links they name exist or are planned.
    for v in spec.map(|s| s.vips.as_slice()).unwrap_or_default() {
        let origin = format!("VIP {} ({})", v.ip, v.origin);
        let planned = match &v.link {
            LinkRef::VlanOf { parent, id } => r
                .resolve(parent, &origin, &mut Vec::new())
                .into_iter()
                .map(|parent| vlan_name(&parent, *id))
                .collect(),
            LinkRef::Name(n) if p.link(n).is_some() => vec![n.clone()],
            other => r.resolve(other, &origin, &mut Vec::new()),
        };
        if let Some(name) = planned
            .into_iter()
            .find(|n| p.link(n).is_some() || inv.find(n).is_some())
        {
            p.vips.insert(v.ip, name);
        }
    }
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

/// Finds links: by name (current or alternative), by device selector,
/// or by link alias.
struct Resolver<'a> {
    inv: &'a Inventory,
    aliases: &'a [AliasSpec],
}

impl Resolver<'_> {
    /// The one physical link `alias`'s selector matches (only physical
    /// links are candidates, as in Talos).
    fn alias(&self, alias: &AliasSpec, problems: &mut Vec<Problem>) -> Option<String> {
        let origin = format!("link alias {} ({})", alias.name, alias.origin);
        let hits: Vec<&str> = self
            .inv
            .links
            .iter()
            .filter(|l| l.is_physical() && l.kind.is_none() && alias.selector.matches(l))
            .map(|l| l.name.as_str())
            .collect();
        match hits[..] {
            [one] => Some(one.to_owned()),
            [] => {
                push_problem(
                    problems,
                    Problem::Waiting {
                        origin,
                        what: format!("a link matching {}", alias.selector),
                    },
                );
                None
            }
            _ => {
                push_problem(
                    problems,
                    Problem::Ambiguous {
                        origin,
                        links: hits.iter().map(|h| h.to_string()).collect(),
                    },
                );
                None
            }
        }
    }

    /// The current names of the links `link` names (none or one). A name
    /// is a link's current or alternative name first, else an alias
    /// (Talos: real names win).
    fn resolve(&self, link: &LinkRef, origin: &str, problems: &mut Vec<Problem>) -> Vec<String> {
        let origin = origin.to_owned();
        match link {
            LinkRef::Name(n) => {
                if let Some(l) = self.inv.find(n) {
                    return vec![l.name.clone()];
                }
                if let Some(a) = self.aliases.iter().find(|a| &a.name == n) {
                    return self.alias(a, &mut Vec::new()).into_iter().collect();
                }
                push_problem(
                    problems,
                    Problem::Waiting {
                        origin,
                        what: format!("link {n} to appear"),
                    },
                );
                Vec::new()
            }
            LinkRef::Selector(sel) => match select(sel, &self.inv.links) {
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
            LinkRef::VlanOf { parent, id } => self
                .resolve(parent, &origin, problems)
                .into_iter()
                .map(|p| vlan_name(&p, *id))
                .collect(),
        }
    }

    /// Bond members: named ones that exist, and every link each selector
    /// matches (in a bond, a selector may match several links).
    fn bond_members(
        &self,
        members: &[LinkRef],
        origin: &str,
        problems: &mut Vec<Problem>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for m in members {
            match m {
                LinkRef::Selector(sel) => {
                    let selection = select(sel, &self.inv.links);
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
                LinkRef::Name(n)
                    if self.inv.find(n).is_none() && !self.aliases.iter().any(|a| &a.name == n) =>
                {
                    push_problem(
                        problems,
                        Problem::Waiting {
                            origin: origin.to_owned(),
                            what: format!("bond member {n} to appear"),
                        },
                    );
                }
                _ => {
                    for name in self.resolve(m, origin, problems) {
                        push_unique(&mut out, name);
                    }
                }
            }
        }
        out
    }
}

/// The kernel bonding driver's settings for a Talos bond.
pub(crate) fn bond_settings(b: &Bond) -> BondSettings {
    bond_options(
        b.mode,
        b.miimon,
        b.updelay,
        b.downdelay,
        b.lacp_rate,
        b.xmit_hash_policy,
    )
}

/// The bond options Keel applies, from Talos's values (shared by
/// `machine.network` bonds and `BondConfig`).
pub(crate) fn bond_options(
    mode: Option<bond::BondMode>,
    miimon: Option<u32>,
    updelay: Option<u32>,
    downdelay: Option<u32>,
    lacp_rate: Option<bond::LacpRate>,
    xmit_hash_policy: Option<bond::XmitHashPolicy>,
) -> BondSettings {
    BondSettings {
        mode: mode.map(|m| match m {
            bond::BondMode::BalanceRr => BondMode::BalanceRr,
            bond::BondMode::ActiveBackup => BondMode::ActiveBackup,
            bond::BondMode::BalanceXor => BondMode::BalanceXor,
            bond::BondMode::Broadcast => BondMode::Broadcast,
            bond::BondMode::Ieee8023ad => BondMode::Ieee8023Ad,
            bond::BondMode::BalanceTlb => BondMode::BalanceTlb,
            bond::BondMode::BalanceAlb => BondMode::BalanceAlb,
        }),
        miimon,
        updelay,
        downdelay,
        lacp_rate: lacp_rate.map(|r| match r {
            bond::LacpRate::Slow => BondLacpRate::Slow,
            bond::LacpRate::Fast => BondLacpRate::Fast,
        }),
        xmit_hash_policy: xmit_hash_policy.map(|x| match x {
            bond::XmitHashPolicy::Layer2 => BondXmitHashPolicy::Layer2,
            bond::XmitHashPolicy::Layer34 => BondXmitHashPolicy::Layer34,
            bond::XmitHashPolicy::Layer23 => BondXmitHashPolicy::Layer23,
            bond::XmitHashPolicy::Encap23 => BondXmitHashPolicy::Encap23,
            bond::XmitHashPolicy::Encap34 => BondXmitHashPolicy::Encap34,
        }),
    }
}

/// A link's state, addresses, routes, MTU and DHCP, from its spec.
fn fill(lp: &mut LinkPlan, l: &LinkSpec) {
    let a = &l.addressing;
    lp.up = l.up;
    lp.mac = l.mac;
    lp.mtu = a.mtu;
    for addr in &a.addresses {
        push_unique(&mut lp.addresses, *addr);
    }
    lp.priorities.extend(a.priorities.iter().copied());
    for r in &a.routes {
        push_unique(&mut lp.routes, r.clone());
    }
    if a.dhcp.is_some() {
        lp.dhcp = a.dhcp.clone();
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
