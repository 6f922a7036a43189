//! Talos's network documents (Talos 1.12+, `apiVersion: v1alpha1` with a
//! `kind:`), as far as Keel implements them: the same keys and defaults as
//! Talos's `pkg/machinery/config/types/network` (see docs/ARCHITECTURE.md,
//! "Machine config"). Every struct denies unknown keys, as Talos does.
//!
//! The link kinds share Talos's `CommonLinkConfig` (`up`, `mtu`,
//! `addresses`, `routes`, `multicast`); serde cannot flatten that part
//! under `deny_unknown_fields`, so [`link_doc!`] writes it into each.

use serde::Deserialize;

use super::bond::{
    AdSelect, ArpAllTargets, ArpValidate, BondMode, FailOverMac, LacpRate, PrimaryReselect,
    XmitHashPolicy,
};
use super::types::{Cidr, DomainName, InterfaceName, Ip, MacAddress, VipTtl, VlanId};
use super::unsupported::Unsupported;

/// `addresses[]` of a link document.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddressConfig {
    pub address: Cidr,
    /// Metric of the prefix route the kernel adds for the address.
    pub route_priority: Option<u32>,
}

/// `routes[]` of a link document.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteConfig {
    /// Absent: the default route of the gateway's family.
    pub destination: Option<Cidr>,
    pub gateway: Option<Ip>,
    pub source: Option<Ip>,
    /// Default 1024, as Talos.
    pub metric: Option<u32>,
    pub mtu: Option<u32>,
    /// Only `main` (Talos's default) is supported.
    pub table: Option<String>,
}

/// The common part of every link document, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct CommonLink<'a> {
    pub name: &'a InterfaceName,
    pub up: Option<bool>,
    pub mtu: Option<u32>,
    pub addresses: &'a [AddressConfig],
    pub routes: &'a [RouteConfig],
}

macro_rules! link_doc {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        pub struct $name {
            pub api_version: Option<String>,
            pub kind: String,
            /// The link's name (or, where Talos allows it, an alias).
            pub name: InterfaceName,
            /// Default true.
            pub up: Option<bool>,
            pub mtu: Option<u32>,
            #[serde(default)]
            pub addresses: Vec<AddressConfig>,
            #[serde(default)]
            pub routes: Vec<RouteConfig>,
            /// Talos `multicast`: accepted and ignored (not supported by Keel).
            #[serde(default, deserialize_with = "crate::config::unsupported::present")]
            pub multicast: Option<Unsupported>,
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $name {
            pub fn common(&self) -> CommonLink<'_> {
                CommonLink {
                    name: &self.name,
                    up: self.up,
                    mtu: self.mtu,
                    addresses: &self.addresses,
                    routes: &self.routes,
                }
            }
        }
    };
}

link_doc! {
    /// `LinkConfig`: a link that exists (a NIC), by name or alias.
    pub struct LinkConfig {}
}

link_doc! {
    /// `DummyLinkConfig`: a dummy link Keel creates.
    pub struct DummyLinkConfig {
        pub hardware_addr: Option<MacAddress>,
    }
}

/// `vlanMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum VlanMode {
    #[serde(rename = "802.1q")]
    Dot1q,
    #[serde(rename = "802.1ad")]
    Dot1ad,
}

link_doc! {
    /// `VLANConfig`: an 802.1Q (or 802.1ad) link on `parent`.
    pub struct VlanConfig {
        #[serde(rename = "vlanID")]
        pub vlan_id: VlanId,
        pub vlan_mode: Option<VlanMode>,
        /// A link name or alias.
        pub parent: InterfaceName,
    }
}

link_doc! {
    /// `BondConfig`: a bond of `links`. The driver options are Talos's;
    /// Keel applies the mode, `miimon`, `updelay`, `downdelay`,
    /// `lacpRate` and `xmitHashPolicy` (as for `machine.network`'s
    /// bonds) and leaves the rest at the kernel's defaults.
    pub struct BondConfig {
        /// Member links by name or alias; at least one.
        pub links: Vec<InterfaceName>,
        pub bond_mode: BondMode,
        pub hardware_addr: Option<MacAddress>,
        pub miimon: Option<u32>,
        pub updelay: Option<u32>,
        pub downdelay: Option<u32>,
        pub use_carrier: Option<bool>,
        pub xmit_hash_policy: Option<XmitHashPolicy>,
        pub arp_interval: Option<u32>,
        #[serde(default)]
        pub arp_ip_targets: Vec<Ip>,
        #[serde(default)]
        pub ns_ip6_targets: Vec<Ip>,
        pub arp_validate: Option<ArpValidate>,
        pub arp_all_targets: Option<ArpAllTargets>,
        pub lacp_rate: Option<LacpRate>,
        pub fail_over_mac: Option<FailOverMac>,
        pub ad_select: Option<AdSelect>,
        pub ad_actor_sys_prio: Option<u16>,
        pub ad_user_port_key: Option<u16>,
        #[serde(rename = "adLACPActive")]
        pub ad_lacp_active: Option<u8>,
        pub primary: Option<InterfaceName>,
        pub primary_reselect: Option<PrimaryReselect>,
        #[serde(rename = "resendIGMP")]
        pub resend_igmp: Option<u32>,
        pub min_links: Option<u32>,
        pub lp_interval: Option<u32>,
        pub packets_per_slave: Option<u32>,
        pub num_peer_notif: Option<u8>,
        pub tlb_logical_lb: Option<u8>,
        pub all_slaves_active: Option<u8>,
        pub peer_notif_delay: Option<u32>,
        pub missed_max: Option<u8>,
    }
}

/// `LinkAliasConfig.selector`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSelector {
    /// A CEL expression over `link` (see `net::cel`).
    #[serde(rename = "match")]
    pub match_: String,
}

/// `LinkAliasConfig`: names the one physical link the selector matches.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LinkAliasConfig {
    pub api_version: Option<String>,
    pub kind: String,
    pub name: InterfaceName,
    pub selector: LinkSelector,
}

/// `clientIdentifier` of a DHCP document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientIdentifier {
    None,
    Mac,
    Duid,
}

/// `DHCPv4Config`: DHCPv4 on a link.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Dhcp4Config {
    pub api_version: Option<String>,
    pub kind: String,
    /// A link name or alias.
    pub name: InterfaceName,
    /// Default 1024.
    pub route_metric: Option<u32>,
    /// Do not take the hostname from this link's lease.
    pub ignore_hostname: Option<bool>,
    /// Default `mac`.
    pub client_identifier: Option<ClientIdentifier>,
    /// Hex bytes, colons allowed; exactly when `clientIdentifier: duid`.
    pub duid_raw: Option<String>,
    /// Talos 1.14 `ignoreRoutes`: accepted and ignored (not supported).
    #[serde(default, deserialize_with = "crate::config::unsupported::present")]
    pub ignore_routes: Option<Unsupported>,
}

impl Dhcp4Config {
    /// `duidRaw` as bytes.
    pub fn duid(&self) -> Option<Vec<u8>> {
        hex_bytes(self.duid_raw.as_deref()?)
    }
}

/// `00:01:...` or `0001...` → bytes; None unless whole hex bytes.
pub fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `auto` of `HostnameConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoHostname {
    Stable,
    Off,
}

/// `HostnameConfig` (one per config).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostnameConfig {
    pub api_version: Option<String>,
    pub kind: String,
    pub auto: Option<AutoHostname>,
    pub hostname: Option<DomainName>,
}

/// `ResolverConfig.nameservers[]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Nameserver {
    pub address: Ip,
    /// Talos 1.14 `protocol` (`Do53`, `DoT`, `DoH`): only plain DNS is
    /// supported; anything else is an error (validation).
    pub protocol: Option<String>,
    pub tls_server_name: Option<String>,
}

/// `ResolverConfig.searchDomains`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SearchDomains {
    #[serde(default)]
    pub domains: Vec<DomainName>,
    /// Do not search the hostname's domain.
    pub disable_default: Option<bool>,
}

/// `ResolverConfig` (one per config).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResolverConfig {
    pub api_version: Option<String>,
    pub kind: String,
    #[serde(default)]
    pub nameservers: Vec<Nameserver>,
    pub search_domains: Option<SearchDomains>,
    /// Talos 1.14 `hostDNS`: accepted and ignored (not supported by Keel).
    #[serde(
        default,
        rename = "hostDNS",
        deserialize_with = "crate::config::unsupported::present"
    )]
    pub host_dns: Option<Unsupported>,
}

/// `StaticHostConfig`: `/etc/hosts` names for one address.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StaticHostConfig {
    pub api_version: Option<String>,
    pub kind: String,
    /// The address.
    pub name: Ip,
    pub hostnames: Vec<DomainName>,
}

/// `Layer2VIPConfig`: a VIP (the name) on a link.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Layer2VipConfig {
    pub api_version: Option<String>,
    pub kind: String,
    /// The VIP.
    pub name: Ip,
    /// A link name or alias.
    pub link: InterfaceName,
    /// **Keel extension**: lease time in seconds, as `vip.ttl` (default 5).
    #[serde(default)]
    pub ttl: VipTtl,
}

/// Where a document is in the file, for errors and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocRef {
    /// 1-based position among the file's documents.
    pub index: usize,
    pub kind: String,
    /// The document's `name`, if it has one.
    pub name: Option<String>,
    /// 1-based line of the document's first key in the whole file.
    pub line: usize,
}

impl std::fmt::Display for DocRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "document {} ({}", self.index, self.kind)?;
        if let Some(n) = &self.name {
            write!(f, " {n}")?;
        }
        f.write_str(")")
    }
}

/// A document and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc<T> {
    pub at: DocRef,
    pub spec: T,
}

/// Every network document of a config, by kind, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Documents {
    /// Where the v1alpha1 document is (its index), when there is one.
    pub v1alpha1: Option<usize>,
    pub links: Vec<Doc<LinkConfig>>,
    pub aliases: Vec<Doc<LinkAliasConfig>>,
    pub vlans: Vec<Doc<VlanConfig>>,
    pub bonds: Vec<Doc<BondConfig>>,
    pub dummies: Vec<Doc<DummyLinkConfig>>,
    pub dhcp4: Vec<Doc<Dhcp4Config>>,
    pub hostname: Option<Doc<HostnameConfig>>,
    pub resolver: Option<Doc<ResolverConfig>>,
    pub static_hosts: Vec<Doc<StaticHostConfig>>,
    pub vips: Vec<Doc<Layer2VipConfig>>,
}

impl Documents {
    /// No network document (the v1alpha1 one does not count).
    pub fn is_empty(&self) -> bool {
        Documents {
            v1alpha1: None,
            ..self.clone()
        } == Documents::default()
    }

    /// Every link document's common part, with where it is (links,
    /// dummies, VLANs, bonds).
    pub fn link_parts(&self) -> Vec<(&DocRef, CommonLink<'_>)> {
        let mut out: Vec<(&DocRef, CommonLink<'_>)> = Vec::new();
        out.extend(self.links.iter().map(|d| (&d.at, d.spec.common())));
        out.extend(self.dummies.iter().map(|d| (&d.at, d.spec.common())));
        out.extend(self.vlans.iter().map(|d| (&d.at, d.spec.common())));
        out.extend(self.bonds.iter().map(|d| (&d.at, d.spec.common())));
        out.sort_by_key(|(at, _)| at.index);
        out
    }
}
