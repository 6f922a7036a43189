//! `machine.network.interfaces[].bond`: Talos's `BondConfig`, every key
//! typed. Option values are the kernel bonding driver's names (see the
//! kernel's Documentation/networking/bonding.rst), which is what Talos
//! accepts too.

use serde::Deserialize;

use super::schema::DeviceSelector;
use super::types::{InterfaceName, Ip, MacAddress};

/// Bonding mode (`mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum BondMode {
    #[serde(rename = "balance-rr")]
    BalanceRr,
    #[serde(rename = "active-backup")]
    ActiveBackup,
    #[serde(rename = "balance-xor")]
    BalanceXor,
    #[serde(rename = "broadcast")]
    Broadcast,
    /// LACP.
    #[serde(rename = "802.3ad")]
    Ieee8023ad,
    #[serde(rename = "balance-tlb")]
    BalanceTlb,
    #[serde(rename = "balance-alb")]
    BalanceAlb,
}

/// LACPDU rate in 802.3ad mode (`lacpRate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LacpRate {
    Slow,
    Fast,
}

/// Transmit hash policy (`xmitHashPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum XmitHashPolicy {
    #[serde(rename = "layer2")]
    Layer2,
    #[serde(rename = "layer3+4")]
    Layer34,
    #[serde(rename = "layer2+3")]
    Layer23,
    #[serde(rename = "encap2+3")]
    Encap23,
    #[serde(rename = "encap3+4")]
    Encap34,
}

/// ARP monitor validation (`arpValidate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArpValidate {
    None,
    Active,
    Backup,
    All,
    Filter,
    FilterActive,
    FilterBackup,
}

/// Which ARP targets must answer (`arpAllTargets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArpAllTargets {
    Any,
    All,
}

/// When the primary link becomes active again (`primaryReselect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrimaryReselect {
    Always,
    Better,
    Failure,
}

/// MAC handling in active-backup mode (`failOverMac`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailOverMac {
    None,
    Active,
    Follow,
}

/// 802.3ad aggregator selection (`adSelect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdSelect {
    Stable,
    Bandwidth,
    Count,
}

/// A bond: members by name (`interfaces`) or by selector
/// (`deviceSelectors`), and the bonding driver options. Unset options keep
/// the kernel's defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Bond {
    #[serde(default)]
    pub interfaces: Vec<InterfaceName>,
    #[serde(default)]
    pub device_selectors: Vec<DeviceSelector>,
    pub mode: Option<BondMode>,
    pub lacp_rate: Option<LacpRate>,
    pub xmit_hash_policy: Option<XmitHashPolicy>,
    /// MII link monitoring interval, milliseconds.
    pub miimon: Option<u32>,
    /// Milliseconds to wait before enabling a link that came up.
    pub updelay: Option<u32>,
    /// Milliseconds to wait before disabling a link that went down.
    pub downdelay: Option<u32>,
    pub primary: Option<InterfaceName>,
    #[serde(rename = "arpIPTarget", default)]
    pub arp_ip_target: Vec<Ip>,
    /// ARP monitoring interval, milliseconds.
    pub arp_interval: Option<u32>,
    pub arp_validate: Option<ArpValidate>,
    pub arp_all_targets: Option<ArpAllTargets>,
    pub primary_reselect: Option<PrimaryReselect>,
    pub fail_over_mac: Option<FailOverMac>,
    pub ad_select: Option<AdSelect>,
    pub ad_actor_sys_prio: Option<u16>,
    pub ad_user_port_key: Option<u16>,
    pub ad_actor_system: Option<MacAddress>,
    pub resend_igmp: Option<u32>,
    pub min_links: Option<u32>,
    pub lp_interval: Option<u32>,
    pub packets_per_slave: Option<u32>,
    pub num_peer_notif: Option<u8>,
    pub tlb_dynamic_lb: Option<u8>,
    pub all_slaves_active: Option<u8>,
    pub use_carrier: Option<bool>,
    pub peer_notify_delay: Option<u32>,
}
