//! What the machine config asks of the network, whichever way it is
//! written: the input of [`super::plan`] and of the `/etc` files
//! ([`super::etc`]).
//!
//! Talos has two ways to write the same network: the v1alpha1 document's
//! `machine.network` (front end [`from_config`], here) and, since Talos
//! 1.12, separate network documents (`LinkConfig`, `VLANConfig`, …).
//! Each front end turns its own shape into one [`NetSpec`]: a flat list of
//! links, each with how it is found or created and its addressing, plus
//! the host-wide settings. The plan then resolves links against what the
//! kernel has and never looks at YAML.

use std::net::IpAddr;
use std::time::Duration;

use super::dns::HostEntry;
use super::plan::{bond_settings, DhcpPlan, RoutePlan, DEFAULT_ROUTE_METRIC};
use super::rtnl::BondSettings;
use crate::config::schema::{Addressing, Config, DeviceSelector, HasAddressing, Link, Route};

/// How a link is found.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkRef {
    /// A current, kernel or alternative name, or the name to create.
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
    pub routes: Vec<RoutePlan>,
    pub mtu: Option<u32>,
    pub dhcp: Option<DhcpPlan>,
}

/// One VIP on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipOnLink {
    pub ip: IpAddr,
    pub ttl: Duration,
}

/// One link the config configures.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkSpec {
    /// Where it is written, for logs: `machine.network.interfaces
    /// (deviceSelector{…})`.
    pub origin: String,
    pub link: LinkRef,
    pub kind: LinkKind,
    /// Leave the link alone entirely.
    pub ignore: bool,
    pub addressing: LinkAddressing,
    pub vips: Vec<VipOnLink>,
}

/// The host-wide settings: hostname and resolver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSpec {
    pub hostname: Option<String>,
    pub nameservers: Vec<IpAddr>,
    pub search_domains: Vec<String>,
    /// Do not derive a search domain from the hostname's domain.
    pub disable_search_domain: bool,
    pub extra_hosts: Vec<HostEntry>,
}

/// The whole network as the config asks for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetSpec {
    /// In the config's order; VLANs follow the link they are on.
    pub links: Vec<LinkSpec>,
    pub host: HostSpec,
}

impl NetSpec {
    /// Every VIP, in the config's order.
    pub fn vips(&self) -> impl Iterator<Item = VipOnLink> + '_ {
        self.links.iter().flat_map(|l| l.vips.iter().copied())
    }

    /// True when some link entry is more than `ignore`.
    pub fn configures_links(&self) -> bool {
        self.links.iter().any(|l| !l.ignore)
    }
}

/// Addressing of one block, with Keel's defaults (route metric 1024).
pub fn link_addressing(a: Addressing<'_>) -> LinkAddressing {
    let mut out = LinkAddressing {
        mtu: a.mtu,
        dhcp: a.dhcp_route_metric().map(|m| DhcpPlan {
            route_metric: m.unwrap_or(DEFAULT_ROUTE_METRIC),
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

fn vips(a: Addressing<'_>) -> Vec<VipOnLink> {
    a.vip
        .map(|v| VipOnLink {
            ip: v.ip.addr(),
            ttl: Duration::from_secs(v.ttl.seconds().into()),
        })
        .into_iter()
        .collect()
}

fn link_ref(link: &Link) -> LinkRef {
    match link {
        Link::Name(n) => LinkRef::Name(n.to_string()),
        Link::Selector(s) => LinkRef::Selector(s.clone()),
    }
}

/// The v1alpha1 front end: `machine.network` (entries for one interface
/// merged, as [`Config::interfaces`] does), each entry's VLANs as links of
/// their own right after it.
pub fn from_config(config: &Config) -> NetSpec {
    let net = &config.machine.network;
    let mut links = Vec::new();
    for iface in config.interfaces() {
        let origin = format!("machine.network.interfaces ({})", link_ref(&iface.link));
        let link = link_ref(&iface.link);
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
        links.push(LinkSpec {
            origin: origin.clone(),
            link: link.clone(),
            kind,
            ignore: iface.ignore,
            addressing: link_addressing(a),
            vips: vips(a),
        });
        if iface.ignore {
            continue;
        }
        for v in &iface.vlans {
            let id = v.vlan_id.get();
            let a = v.addressing();
            links.push(LinkSpec {
                origin: format!("{origin} vlan {}", v.vlan_id),
                link: LinkRef::VlanOf {
                    parent: Box::new(link.clone()),
                    id,
                },
                kind: LinkKind::Vlan {
                    parent: link.clone(),
                    id,
                },
                ignore: false,
                addressing: link_addressing(a),
                vips: vips(a),
            });
        }
    }
    NetSpec {
        links,
        host: HostSpec {
            hostname: net.hostname.as_ref().map(|h| h.to_string()),
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
        },
    }
}
