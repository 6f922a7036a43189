//! What the machine config asks of the network, whichever way it is
//! written: the input of [`super::plan`] and of the `/etc` files
//! ([`super::etc`]).
//!
//! Talos has two ways to write the same network: the v1alpha1 document's
//! `machine.network`, and since Talos 1.12 separate network documents
//! (`LinkConfig`, `VLANConfig`, …). [`from_config`] turns both into one
//! [`NetSpec`]: a flat list of links (how each is found or created, its
//! addressing), the VIPs, the link aliases and the host-wide settings. The
//! plan then resolves links against what the kernel has and never looks
//! at YAML.
//!
//! Where both configure the same link by name, Talos's rule
//! (LinkConfigController) applies: the document wins for `up` and `mtu`,
//! addresses and routes are combined, DHCP is on if either asks. The
//! hostname and the resolver come from their document or from
//! `machine.network`, never both (validation refuses that, as Talos does);
//! static host entries are combined.

use std::net::IpAddr;
use std::time::Duration;

use super::cel;
use super::dns::HostEntry;
use super::plan::{bond_options, bond_settings, DhcpPlan, RoutePlan, DEFAULT_ROUTE_METRIC};
use super::rtnl::BondSettings;
use crate::config::netdocs::{
    AutoHostname, ClientIdentifier, CommonLink, Dhcp4Config, DocRef, Documents, RouteConfig,
    VlanMode,
};
use crate::config::schema::{Addressing, Config, DeviceSelector, HasAddressing, Link, Route};

/// How a link is found.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkRef {
    /// A current, kernel or alternative name, a link alias
    /// ([`AliasSpec`]), or the name to create.
    Name(String),
    /// The one physical link matching a device selector.
    Selector(DeviceSelector),
    /// The VLAN `id` on `parent`, named by [`super::plan::vlan_name`].
    VlanOf { parent: Box<LinkRef>, id: u16 },
}

impl std::fmt::Display for LinkRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkRef::Name(n) => write!(f, "interface {n}"),
            LinkRef::Selector(s) => write!(f, "{s}"),
            LinkRef::VlanOf { parent, id } => write!(f, "{parent} vlan {id}"),
        }
    }
}

/// Whether the link exists already or Keel creates it.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkKind {
    Existing,
    Dummy,
    Vlan {
        parent: LinkRef,
        id: u16,
        /// 802.1ad (QinQ) instead of 802.1Q.
        qinq: bool,
    },
    Bond {
        settings: BondSettings,
        /// Named members (each one link) and selectors (each any number).
        members: Vec<LinkRef>,
        primary: Option<String>,
    },
}

/// Addresses, routes, MTU and DHCP of one link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkAddressing {
    pub addresses: Vec<(IpAddr, u8)>,
    /// The metric of an address's prefix route, where the config sets one
    /// (`routePriority`).
    pub priorities: Vec<((IpAddr, u8), u32)>,
    pub routes: Vec<RoutePlan>,
    pub mtu: Option<u32>,
    pub dhcp: Option<DhcpPlan>,
}

impl LinkAddressing {
    /// Adds `other`'s addresses and routes; its MTU and DHCP where set.
    fn merge(&mut self, other: LinkAddressing) {
        for a in other.addresses {
            if !self.addresses.contains(&a) {
                self.addresses.push(a);
            }
        }
        self.priorities.extend(other.priorities);
        for r in other.routes {
            if !self.routes.contains(&r) {
                self.routes.push(r);
            }
        }
        if other.mtu.is_some() {
            self.mtu = other.mtu;
        }
        if other.dhcp.is_some() {
            self.dhcp = other.dhcp;
        }
    }
}

/// One VIP and the link it lives on.
#[derive(Debug, Clone, PartialEq)]
pub struct VipSpec {
    pub ip: IpAddr,
    pub ttl: Duration,
    pub link: LinkRef,
    /// `machine.network.interfaces (…)` or `document 3 (Layer2VIPConfig …)`.
    pub origin: String,
}

/// `LinkAliasConfig`: a name for the one physical link a selector picks.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasSpec {
    pub name: String,
    pub selector: cel::Expr,
    pub origin: String,
}

/// One link the config configures.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkSpec {
    /// Where it is written, for logs: `machine.network.interfaces
    /// (deviceSelector{…})`, `document 2 (LinkConfig enp0s2)`.
    pub origin: String,
    pub link: LinkRef,
    pub kind: LinkKind,
    /// Leave the link alone entirely.
    pub ignore: bool,
    /// Administratively up (Talos's `up`, default true).
    pub up: bool,
    /// The MAC to set (`hardwareAddr` of a dummy or bond document).
    pub mac: Option<[u8; 6]>,
    pub addressing: LinkAddressing,
}

impl LinkSpec {
    fn new(origin: String, link: LinkRef, kind: LinkKind) -> LinkSpec {
        LinkSpec {
            origin,
            link,
            kind,
            ignore: false,
            up: true,
            mac: None,
            addressing: LinkAddressing::default(),
        }
    }
}

/// `HostnameConfig`'s `auto: stable`: a name derived from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoName {
    Off,
    Stable,
}

/// The host-wide settings: hostname and resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    pub hostname: Option<String>,
    /// What to do without a hostname from anywhere else.
    pub auto: AutoName,
    pub nameservers: Vec<IpAddr>,
    pub search_domains: Vec<String>,
    /// Do not derive a search domain from the hostname's domain.
    pub disable_search_domain: bool,
    pub extra_hosts: Vec<HostEntry>,
}

impl Default for HostSpec {
    fn default() -> HostSpec {
        HostSpec {
            hostname: None,
            auto: AutoName::Off,
            nameservers: Vec::new(),
            search_domains: Vec::new(),
            disable_search_domain: false,
            extra_hosts: Vec::new(),
        }
    }
}

/// The whole network as the config asks for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetSpec {
    /// In the config's order; VLANs follow the link they are on.
    pub links: Vec<LinkSpec>,
    pub vips: Vec<VipSpec>,
    pub aliases: Vec<AliasSpec>,
    pub host: HostSpec,
}

impl NetSpec {
    /// True when some link entry is more than `ignore`: then Keel runs no
    /// DHCP on links nothing configures (Talos's
    /// `RunDefaultDHCPOperators`).
    pub fn configures_links(&self) -> bool {
        self.links.iter().any(|l| !l.ignore)
    }
}

/// Addressing of one v1alpha1 block, with Keel's defaults (route metric
/// 1024).
pub fn link_addressing(a: Addressing<'_>) -> LinkAddressing {
    let mut out = LinkAddressing {
        mtu: a.mtu,
        dhcp: a.dhcp_route_metric().map(|m| DhcpPlan {
            route_metric: m.unwrap_or(DEFAULT_ROUTE_METRIC),
            ..DhcpPlan::default()
        }),
        ..LinkAddressing::default()
    };
    for c in a.all_addresses() {
        let addr = (c.addr(), c.prefix());
        if !out.addresses.contains(&addr) {
            out.addresses.push(addr);
        }
    }
    for r in a.routes {
        let r = route_plan(r);
        if !out.routes.contains(&r) {
            out.routes.push(r);
        }
    }
    out
}

fn route_plan(r: &Route) -> RoutePlan {
    RoutePlan {
        dest: r
            .network
            .filter(|n| !n.is_default_route())
            .map(|n| (n.addr(), n.prefix())),
        gateway: r.gateway.as_ref().map(|g| g.addr()),
        source: r.source.as_ref().map(|s| s.addr()),
        metric: r.metric.unwrap_or(DEFAULT_ROUTE_METRIC),
        mtu: r.mtu,
    }
}

fn link_ref(link: &Link) -> LinkRef {
    match link {
        Link::Name(n) => LinkRef::Name(n.to_string()),
        Link::Selector(s) => LinkRef::Selector(s.clone()),
    }
}

fn vip(a: Addressing<'_>, link: LinkRef, origin: &str) -> Option<VipSpec> {
    a.vip.map(|v| VipSpec {
        ip: v.ip.addr(),
        ttl: Duration::from_secs(v.ttl.seconds().into()),
        link,
        origin: origin.to_owned(),
    })
}

/// The network of `config`: `machine.network` and the network documents.
pub fn from_config(config: &Config) -> NetSpec {
    let mut spec = v1alpha1(config);
    documents(&config.documents, &mut spec);
    spec
}

/// The v1alpha1 front end: `machine.network` (entries for one interface
/// merged, as [`Config::interfaces`] does), each entry's VLANs as links of
/// their own right after it.
fn v1alpha1(config: &Config) -> NetSpec {
    let net = &config.machine.network;
    let mut spec = NetSpec::default();
    for iface in config.interfaces() {
        let link = link_ref(&iface.link);
        let origin = format!("machine.network.interfaces ({link})");
        let kind = if let Some(b) = &iface.bond {
            let named = b.interfaces.iter().map(|n| LinkRef::Name(n.to_string()));
            let selected = b.device_selectors.iter().cloned().map(LinkRef::Selector);
            LinkKind::Bond {
                settings: bond_settings(b),
                members: named.chain(selected).collect(),
                primary: b.primary.as_ref().map(|p| p.to_string()),
            }
        } else if iface.dummy {
            LinkKind::Dummy
        } else {
            LinkKind::Existing
        };
        let a = iface.addressing();
        let mut ls = LinkSpec::new(origin.clone(), link.clone(), kind);
        ls.ignore = iface.ignore;
        ls.addressing = link_addressing(a);
        spec.links.push(ls);
        spec.vips.extend(vip(a, link.clone(), &origin));
        if iface.ignore {
            continue;
        }
        for v in &iface.vlans {
            let id = v.vlan_id.get();
            let a = v.addressing();
            let vlan = LinkRef::VlanOf {
                parent: Box::new(link.clone()),
                id,
            };
            let origin = format!("{origin} vlan {}", v.vlan_id);
            let kind = LinkKind::Vlan {
                parent: link.clone(),
                id,
                qinq: false,
            };
            let mut ls = LinkSpec::new(origin.clone(), vlan.clone(), kind);
            ls.addressing = link_addressing(a);
            spec.links.push(ls);
            spec.vips.extend(vip(a, vlan, &origin));
        }
    }
    spec.host = HostSpec {
        hostname: net.hostname.as_ref().map(|h| h.to_string()),
        auto: AutoName::Off,
        nameservers: net.nameservers.iter().map(|i| i.addr()).collect(),
        search_domains: net.search_domains.iter().map(|d| d.to_string()).collect(),
        disable_search_domain: net.disable_search_domain,
        extra_hosts: net
            .extra_host_entries
            .iter()
            .map(|e| HostEntry {
                ip: e.ip.addr(),
                aliases: e.aliases.iter().map(|a| a.to_string()).collect(),
            })
            .collect(),
    };
    spec
}

/// Addressing of a link document.
fn doc_addressing(c: &CommonLink<'_>) -> LinkAddressing {
    let mut out = LinkAddressing {
        mtu: c.mtu,
        ..LinkAddressing::default()
    };
    for a in c.addresses {
        let addr = (a.address.addr(), a.address.prefix());
        if !out.addresses.contains(&addr) {
            out.addresses.push(addr);
        }
        if let Some(p) = a.route_priority {
            out.priorities.push((addr, p));
        }
    }
    for r in c.routes {
        let r = doc_route(r);
        if !out.routes.contains(&r) {
            out.routes.push(r);
        }
    }
    out
}

fn doc_route(r: &RouteConfig) -> RoutePlan {
    RoutePlan {
        dest: r
            .destination
            .filter(|n| !n.is_default_route())
            .map(|n| (n.addr(), n.prefix())),
        gateway: r.gateway.as_ref().map(|g| g.addr()),
        source: r.source.as_ref().map(|s| s.addr()),
        metric: r.metric.unwrap_or(DEFAULT_ROUTE_METRIC),
        mtu: r.mtu,
    }
}

/// DHCPv4 as a `DHCPv4Config` asks.
fn dhcp_plan(d: &Dhcp4Config) -> DhcpPlan {
    DhcpPlan {
        route_metric: d.route_metric.unwrap_or(DEFAULT_ROUTE_METRIC),
        ignore_hostname: d.ignore_hostname.unwrap_or(false),
        client_id: match d.client_identifier {
            None | Some(ClientIdentifier::Mac) => super::plan::ClientId::Mac,
            Some(ClientIdentifier::None) => super::plan::ClientId::None,
            Some(ClientIdentifier::Duid) => {
                super::plan::ClientId::Duid(d.duid().unwrap_or_default())
            }
        },
    }
}

/// Adds `ls` to the spec, merged into a link the spec has by that name
/// (the document wins for `up`, `mtu` and DHCP; addresses and routes add).
fn add_link(spec: &mut NetSpec, ls: LinkSpec) {
    let existing = spec
        .links
        .iter_mut()
        .find(|l| matches!(&l.link, LinkRef::Name(_)) && l.link == ls.link && !l.ignore);
    match existing {
        Some(l) if l.kind == LinkKind::Existing || ls.kind == LinkKind::Existing => {
            l.origin = format!("{} + {}", l.origin, ls.origin);
            l.up = ls.up;
            if ls.kind != LinkKind::Existing {
                l.kind = ls.kind;
            }
            l.mac = ls.mac.or(l.mac);
            l.addressing.merge(ls.addressing);
        }
        _ => spec.links.push(ls),
    }
}

/// The documents front end, onto what `machine.network` gave.
fn documents(docs: &Documents, spec: &mut NetSpec) {
    let origin = |at: &DocRef| at.to_string();
    let mut links: Vec<(usize, LinkSpec)> = Vec::new();
    for d in &docs.links {
        let mut ls = LinkSpec::new(
            origin(&d.at),
            LinkRef::Name(d.spec.name.to_string()),
            LinkKind::Existing,
        );
        ls.up = d.spec.up.unwrap_or(true);
        ls.addressing = doc_addressing(&d.spec.common());
        links.push((d.at.index, ls));
    }
    for d in &docs.dummies {
        let mut ls = LinkSpec::new(
            origin(&d.at),
            LinkRef::Name(d.spec.name.to_string()),
            LinkKind::Dummy,
        );
        ls.up = d.spec.up.unwrap_or(true);
        ls.mac = d.spec.hardware_addr.map(|m| m.0);
        ls.addressing = doc_addressing(&d.spec.common());
        links.push((d.at.index, ls));
    }
    for d in &docs.bonds {
        let b = &d.spec;
        let settings = bond_options(
            Some(b.bond_mode),
            b.miimon,
            b.updelay,
            b.downdelay,
            b.lacp_rate,
            b.xmit_hash_policy,
        );
        let mut ls = LinkSpec::new(
            origin(&d.at),
            LinkRef::Name(b.name.to_string()),
            LinkKind::Bond {
                settings,
                members: b
                    .links
                    .iter()
                    .map(|l| LinkRef::Name(l.to_string()))
                    .collect(),
                primary: b.primary.as_ref().map(|p| p.to_string()),
            },
        );
        ls.up = b.up.unwrap_or(true);
        ls.mac = b.hardware_addr.map(|m| m.0);
        ls.addressing = doc_addressing(&b.common());
        links.push((d.at.index, ls));
    }
    for d in &docs.vlans {
        let v = &d.spec;
        let mut ls = LinkSpec::new(
            origin(&d.at),
            LinkRef::Name(v.name.to_string()),
            LinkKind::Vlan {
                parent: LinkRef::Name(v.parent.to_string()),
                id: v.vlan_id.get(),
                qinq: v.vlan_mode == Some(VlanMode::Dot1ad),
            },
        );
        ls.up = v.up.unwrap_or(true);
        ls.addressing = doc_addressing(&v.common());
        links.push((d.at.index, ls));
    }
    // In the file's order, so logs and VLAN parents read naturally.
    links.sort_by_key(|(index, _)| *index);
    for (_, ls) in links {
        add_link(spec, ls);
    }
    for d in &docs.dhcp4 {
        let name = LinkRef::Name(d.spec.name.to_string());
        let mut ls = LinkSpec::new(origin(&d.at), name, LinkKind::Existing);
        ls.addressing.dhcp = Some(dhcp_plan(&d.spec));
        // DHCP keeps a link's `up` as the link's own document says.
        if let Some(l) = spec.links.iter().find(|l| l.link == ls.link) {
            ls.up = l.up;
        }
        add_link(spec, ls);
    }
    for d in &docs.aliases {
        // Validation compiled it already; a failure here cannot happen.
        if let Ok(selector) = cel::Expr::parse(&d.spec.selector.match_) {
            spec.aliases.push(AliasSpec {
                name: d.spec.name.to_string(),
                selector,
                origin: origin(&d.at),
            });
        }
    }
    for d in &docs.vips {
        spec.vips.push(VipSpec {
            ip: d.spec.name.addr(),
            ttl: Duration::from_secs(d.spec.ttl.seconds().into()),
            link: LinkRef::Name(d.spec.link.to_string()),
            origin: origin(&d.at),
        });
    }
    if let Some(h) = &docs.hostname {
        spec.host.hostname = h.spec.hostname.as_ref().map(|n| n.to_string());
        spec.host.auto = match h.spec.auto {
            Some(AutoHostname::Stable) => AutoName::Stable,
            _ => AutoName::Off,
        };
    }
    if let Some(r) = &docs.resolver {
        spec.host.nameservers = r
            .spec
            .nameservers
            .iter()
            .map(|n| n.address.addr())
            .collect();
        let search = r.spec.search_domains.clone().unwrap_or_default();
        spec.host.search_domains = search.domains.iter().map(|d| d.to_string()).collect();
        spec.host.disable_search_domain = search.disable_default.unwrap_or(false);
    }
    for d in &docs.static_hosts {
        spec.host.extra_hosts.push(HostEntry {
            ip: d.spec.name.addr(),
            aliases: d.spec.hostnames.iter().map(|h| h.to_string()).collect(),
        });
    }
}
