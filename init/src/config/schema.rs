//! The Talos `v1alpha1` machine config, as far as Keel reads it: the
//! document, `machine`, and `machine.network`. Keys are Talos's (camelCase);
//! see the Talos "v1alpha1 configuration reference". `cluster` lives in
//! [`super::etcd`], bonds in [`super::bond`].
//!
//! Every struct denies unknown keys; Talos keys Keel does not implement are
//! declared through the `section!` macro (see `unsupported.rs`) so they are
//! accepted with a warning.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::bond::Bond;
use super::etcd::Cluster;
use super::types::{Cidr, DomainName, Glob, InterfaceName, Ip, MacPattern, VipTtl, VlanId};
use super::unsupported::{null_as_default, section, Unsupported};

/// `version`: Keel reads Talos's `v1alpha1` format only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Version {
    #[serde(rename = "v1alpha1")]
    V1alpha1,
}

section! {
    /// A whole machine config document. `version`, `machine` and `cluster`
    /// are all optional: a Talos snippet with only `machine:` is a complete
    /// document for Keel.
    #[derive(Debug, Clone, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Config {
        /// If present, must be `v1alpha1`.
        pub version: Option<Version>,
        #[serde(default, deserialize_with = "null_as_default")]
        pub machine: Machine,
        #[serde(default, deserialize_with = "null_as_default")]
        pub cluster: Cluster,
        /// The other documents of a multi-document config (Talos 1.12+):
        /// the network kinds Keel implements.
        #[serde(skip)]
        pub documents: super::netdocs::Documents,
    }
    unsupported {
        debug = "debug",
        persist = "persist",
    }
}

/// One of `machine.acceptedCAs`: a certificate (Talos allows a key too,
/// which Keel never needs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptedCa {
    pub crt: super::types::CertPem,
    #[serde(default, deserialize_with = "super::unsupported::empty_as_none")]
    pub key: Option<super::types::KeyPem>,
}

/// `machine.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MachineType {
    Controlplane,
    Worker,
    /// Talos's deprecated name for the first control-plane node; Keel
    /// treats it as `controlplane` and warns.
    Init,
}

section! {
    /// `machine`.
    #[derive(Debug, Clone, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Machine {
        /// `machine.type`. Absent means `controlplane`: Keel exists to run
        /// control-plane nodes (etcd and the VIP), so that is the default
        /// where Talos would require the key. Read it through
        /// [`Config::machine_type`](super::Config::machine_type).
        #[serde(rename = "type")]
        pub machine_type: Option<MachineType>,
        /// `machine.env`: environment variables for Keel's children and for
        /// fetching the config (`http_proxy`, `https_proxy`, `no_proxy`).
        /// Scalar values are read as strings.
        #[serde(default, deserialize_with = "null_as_default")]
        pub env: BTreeMap<String, String>,
        #[serde(default, deserialize_with = "null_as_default")]
        pub network: Network,
        /// Talos `machine.ca`, the OS CA (`crt`, `key`): the node API's
        /// server certificate is issued from it and its clients must
        /// present a certificate it signed (a `talosconfig`'s). Without
        /// it the node API is off.
        pub ca: Option<super::etcd::CertificateAuthority>,
        /// Talos `machine.acceptedCAs`: more CAs whose client certificates
        /// the node API accepts (a CA being rotated out).
        #[serde(default, rename = "acceptedCAs", deserialize_with = "null_as_default")]
        pub accepted_cas: Vec<AcceptedCa>,
        /// Talos `machine.certSANs`: extra names and addresses for the node
        /// API's server certificate.
        #[serde(default, rename = "certSANs", deserialize_with = "null_as_default")]
        pub cert_sans: Vec<String>,
    }
    unsupported {
        token = "token",
        control_plane = "controlPlane",
        kubelet = "kubelet",
        pods = "pods",
        install = "install",
        files = "files",
        time = "time",
        sysctls = "sysctls",
        sysfs = "sysfs",
        registries = "registries",
        system_disk_encryption = "systemDiskEncryption",
        features = "features",
        udev = "udev",
        logging = "logging",
        kernel = "kernel",
        seccomp_profiles = "seccompProfiles",
        node_labels = "nodeLabels",
        node_annotations = "nodeAnnotations",
        node_taints = "nodeTaints",
        disks = "disks",
        base_runtime_spec_overrides = "baseRuntimeSpecOverrides",
    }
}

section! {
    /// `machine.network`.
    #[derive(Debug, Clone, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Network {
        pub hostname: Option<DomainName>,
        #[serde(default)]
        pub nameservers: Vec<Ip>,
        #[serde(default)]
        pub search_domains: Vec<DomainName>,
        /// Talos: do not derive a search domain from the hostname's domain.
        #[serde(default)]
        pub disable_search_domain: bool,
        /// Lines for `/etc/hosts`.
        #[serde(default)]
        pub extra_host_entries: Vec<ExtraHost>,
        /// As written. Entries naming the same `interface` are merged by
        /// [`Config::interfaces`](super::Config::interfaces).
        #[serde(default)]
        pub interfaces: Vec<Interface>,
    }
    unsupported {
        kubespan = "kubespan",
    }
}

/// `machine.network.extraHostEntries[]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExtraHost {
    pub ip: Ip,
    #[serde(default)]
    pub aliases: Vec<DomainName>,
}

/// Which link an interface entry configures.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    /// `interface: eth0`: a kernel or predictable name, or the name of a
    /// link Keel creates (bond, dummy).
    Name(InterfaceName),
    /// `deviceSelector: {...}`: the physical link(s) matching every given
    /// field.
    Selector(DeviceSelector),
}

impl Link {
    pub fn name(&self) -> Option<&InterfaceName> {
        match self {
            Link::Name(n) => Some(n),
            Link::Selector(_) => None,
        }
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Link::Name(n) => write!(f, "{n}"),
            Link::Selector(s) => write!(f, "{s}"),
        }
    }
}

/// `machine.network.interfaces[]`: one link's configuration. Exactly one
/// of Talos's `interface` and `deviceSelector` names the link; they are
/// read into [`Interface::link`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawInterface")]
pub struct Interface {
    pub link: Link,
    /// Addresses with prefix (`10.0.0.5/24`).
    pub addresses: Vec<Cidr>,
    /// Talos's deprecated single-address key;
    /// [`Config::interfaces`](super::Config::interfaces) folds it into
    /// `addresses`.
    pub cidr: Option<Cidr>,
    pub routes: Vec<Route>,
    pub mtu: Option<u32>,
    pub dhcp: bool,
    pub dhcp_options: Option<DhcpOptions>,
    /// Leave this link alone entirely.
    pub ignore: bool,
    /// Create a dummy link with this name.
    pub dummy: bool,
    pub bond: Option<Bond>,
    pub vlans: Vec<Vlan>,
    pub vip: Option<Vip>,
    /// Talos `wireguard`: accepted and ignored (not supported by Keel).
    pub wireguard: Option<Unsupported>,
    /// Talos `bridge`: accepted and ignored (not supported by Keel).
    pub bridge: Option<Unsupported>,
    /// Talos `bridgePort`: accepted and ignored (not supported by Keel).
    pub bridge_port: Option<Unsupported>,
}

impl Interface {
    pub const UNSUPPORTED_KEYS: &'static [&'static str] = &["wireguard", "bridge", "bridgePort"];

    /// The ignored Talos keys present in this entry.
    pub fn unsupported_keys(&self) -> Vec<&'static str> {
        [
            (self.wireguard.is_some(), "wireguard"),
            (self.bridge.is_some(), "bridge"),
            (self.bridge_port.is_some(), "bridgePort"),
        ]
        .into_iter()
        .filter_map(|(present, key)| present.then_some(key))
        .collect()
    }
}

/// The entry as written, before `interface`/`deviceSelector` become a
/// [`Link`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawInterface {
    interface: Option<InterfaceName>,
    device_selector: Option<DeviceSelector>,
    #[serde(default)]
    addresses: Vec<Cidr>,
    cidr: Option<Cidr>,
    #[serde(default)]
    routes: Vec<Route>,
    mtu: Option<u32>,
    #[serde(default)]
    dhcp: bool,
    dhcp_options: Option<DhcpOptions>,
    #[serde(default)]
    ignore: bool,
    #[serde(default)]
    dummy: bool,
    bond: Option<Bond>,
    #[serde(default)]
    vlans: Vec<Vlan>,
    vip: Option<Vip>,
    #[serde(default, deserialize_with = "super::unsupported::present")]
    wireguard: Option<Unsupported>,
    #[serde(default, deserialize_with = "super::unsupported::present")]
    bridge: Option<Unsupported>,
    #[serde(default, deserialize_with = "super::unsupported::present")]
    bridge_port: Option<Unsupported>,
}

/// Why an interface entry does not name exactly one link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("both `interface` and `deviceSelector` are set, expected exactly one of them")]
    Both,
    #[error("neither `interface` nor `deviceSelector` is set, expected exactly one of them")]
    Neither,
}

impl TryFrom<RawInterface> for Interface {
    type Error = LinkError;
    fn try_from(r: RawInterface) -> Result<Self, LinkError> {
        let link = match (r.interface, r.device_selector) {
            (Some(name), None) => Link::Name(name),
            (None, Some(selector)) => Link::Selector(selector),
            (Some(_), Some(_)) => return Err(LinkError::Both),
            (None, None) => return Err(LinkError::Neither),
        };
        Ok(Interface {
            link,
            addresses: r.addresses,
            cidr: r.cidr,
            routes: r.routes,
            mtu: r.mtu,
            dhcp: r.dhcp,
            dhcp_options: r.dhcp_options,
            ignore: r.ignore,
            dummy: r.dummy,
            bond: r.bond,
            vlans: r.vlans,
            vip: r.vip,
            wireguard: r.wireguard,
            bridge: r.bridge,
            bridge_port: r.bridge_port,
        })
    }
}

/// `deviceSelector`: picks physical links; every field given must match.
/// String fields are globs (`busPath: "0*"`). Never empty.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawDeviceSelector")]
pub struct DeviceSelector {
    /// PCI or other bus path, as in `/sys/class/net/*/device` (`0000:00:03.0`).
    pub bus_path: Option<Glob>,
    /// Current MAC address, or a glob over it.
    pub hardware_addr: Option<MacPattern>,
    /// Permanent (burnt-in) MAC address, or a glob over it.
    pub permanent_addr: Option<MacPattern>,
    /// PCI `vendor:device` id (`1af4:1000`).
    pub pci_id: Option<Glob>,
    /// Kernel driver name (`virtio_net`).
    pub driver: Option<Glob>,
    /// `true`: only physical links; `false`: only virtual ones.
    pub physical: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDeviceSelector {
    bus_path: Option<Glob>,
    hardware_addr: Option<MacPattern>,
    permanent_addr: Option<MacPattern>,
    #[serde(rename = "pciID")]
    pci_id: Option<Glob>,
    driver: Option<Glob>,
    physical: Option<bool>,
}

/// A selector that selects by nothing would match every link.
#[derive(Debug, thiserror::Error)]
#[error("empty deviceSelector, expected at least one of busPath, hardwareAddr, permanentAddr, pciID, driver, physical")]
pub struct EmptySelector;

impl TryFrom<RawDeviceSelector> for DeviceSelector {
    type Error = EmptySelector;
    fn try_from(r: RawDeviceSelector) -> Result<Self, EmptySelector> {
        let s = DeviceSelector {
            bus_path: r.bus_path,
            hardware_addr: r.hardware_addr,
            permanent_addr: r.permanent_addr,
            pci_id: r.pci_id,
            driver: r.driver,
            physical: r.physical,
        };
        let empty = s.bus_path.is_none()
            && s.hardware_addr.is_none()
            && s.permanent_addr.is_none()
            && s.pci_id.is_none()
            && s.driver.is_none()
            && s.physical.is_none();
        if empty {
            Err(EmptySelector)
        } else {
            Ok(s)
        }
    }
}

impl fmt::Display for DeviceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                parts.push(format!("{k}: {v}"));
            }
        };
        add("busPath", self.bus_path.as_ref().map(ToString::to_string));
        add(
            "hardwareAddr",
            self.hardware_addr.as_ref().map(ToString::to_string),
        );
        add(
            "permanentAddr",
            self.permanent_addr.as_ref().map(ToString::to_string),
        );
        add("pciID", self.pci_id.as_ref().map(ToString::to_string));
        add("driver", self.driver.as_ref().map(ToString::to_string));
        add("physical", self.physical.map(|p| p.to_string()));
        write!(f, "deviceSelector{{{}}}", parts.join(", "))
    }
}

/// `routes[]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Route {
    /// Destination; absent means the default route (as in Talos).
    pub network: Option<Cidr>,
    pub gateway: Option<Ip>,
    /// Preferred source address.
    pub source: Option<Ip>,
    pub metric: Option<u32>,
    pub mtu: Option<u32>,
}

/// `dhcpOptions`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DhcpOptions {
    /// Metric of the routes DHCP installs.
    pub route_metric: Option<u32>,
    /// Run DHCPv4 (Talos default: true).
    pub ipv4: Option<bool>,
    /// Run DHCPv6 (Talos default: false).
    pub ipv6: Option<bool>,
    /// DHCPv6 DUID, hex.
    pub duidv6: Option<String>,
}

/// `vlans[]`: an 802.1Q link `<parent>.<vlanId>` on the interface.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Vlan {
    pub vlan_id: VlanId,
    #[serde(default)]
    pub addresses: Vec<Cidr>,
    /// Deprecated single address, folded into `addresses` when merged.
    pub cidr: Option<Cidr>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dhcp: bool,
    pub dhcp_options: Option<DhcpOptions>,
    pub mtu: Option<u32>,
    pub vip: Option<Vip>,
}

section! {
    /// `vip`: a shared address that exactly one control-plane node holds.
    #[derive(Debug, Clone, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Vip {
        pub ip: Ip,
        /// **Keel extension**: lease time in seconds, default 5, range 2
        /// to 3600 (see [`VipTtl`]).
        #[serde(default)]
        pub ttl: VipTtl,
    }
    unsupported {
        equinix_metal = "equinixMetal",
        hcloud = "hcloud",
    }
}

/// The addressing keys a link entry and a VLAN share (Talos repeats them
/// on both), borrowed, so one piece of code reads either: the merge, the
/// validation and the network front end. Bottlerocket netdog's
/// `HasIpAddressing` trait shares them the same way.
#[derive(Debug, Clone, Copy)]
pub struct Addressing<'a> {
    pub addresses: &'a [Cidr],
    pub cidr: Option<&'a Cidr>,
    pub routes: &'a [Route],
    pub mtu: Option<u32>,
    pub dhcp: bool,
    pub dhcp_options: Option<&'a DhcpOptions>,
    pub vip: Option<&'a Vip>,
}

impl<'a> Addressing<'a> {
    /// `cidr` (Talos's deprecated key) first, then `addresses`, as Talos's
    /// `Device.Addresses()` lists them.
    pub fn all_addresses(&self) -> impl Iterator<Item = &'a Cidr> {
        self.cidr.into_iter().chain(self.addresses)
    }

    /// The DHCP route metric, when DHCP is on.
    pub fn dhcp_route_metric(&self) -> Option<Option<u32>> {
        self.dhcp
            .then(|| self.dhcp_options.and_then(|o| o.route_metric))
    }
}

/// The same keys, mutably, for merging repeated entries.
#[derive(Debug)]
pub struct AddressingMut<'a> {
    pub addresses: &'a mut Vec<Cidr>,
    pub cidr: &'a mut Option<Cidr>,
    pub routes: &'a mut Vec<Route>,
    pub mtu: &'a mut Option<u32>,
    pub dhcp: &'a mut bool,
    pub dhcp_options: &'a mut Option<DhcpOptions>,
    pub vip: &'a mut Option<Vip>,
}

/// An entry with Talos's addressing keys: a link entry or a VLAN.
pub trait HasAddressing {
    fn addressing(&self) -> Addressing<'_>;
    fn addressing_mut(&mut self) -> AddressingMut<'_>;
}

macro_rules! has_addressing {
    ($t:ty) => {
        impl HasAddressing for $t {
            fn addressing(&self) -> Addressing<'_> {
                Addressing {
                    addresses: &self.addresses,
                    cidr: self.cidr.as_ref(),
                    routes: &self.routes,
                    mtu: self.mtu,
                    dhcp: self.dhcp,
                    dhcp_options: self.dhcp_options.as_ref(),
                    vip: self.vip.as_ref(),
                }
            }
            fn addressing_mut(&mut self) -> AddressingMut<'_> {
                AddressingMut {
                    addresses: &mut self.addresses,
                    cidr: &mut self.cidr,
                    routes: &mut self.routes,
                    mtu: &mut self.mtu,
                    dhcp: &mut self.dhcp,
                    dhcp_options: &mut self.dhcp_options,
                    vip: &mut self.vip,
                }
            }
        }
    };
}
has_addressing!(Interface);
has_addressing!(Vlan);

/// Every addressing block of `interfaces` as written: each entry, then its
/// VLANs, with the path below `base` (`[i]`, `[i].vlans[j]`).
pub fn addressing_blocks<'a>(
    interfaces: &'a [Interface],
    base: &super::error::YamlPath,
) -> Vec<(super::error::YamlPath, Addressing<'a>)> {
    let mut out = Vec::new();
    for (i, iface) in interfaces.iter().enumerate() {
        let path = base.index(i);
        out.push((path.clone(), iface.addressing()));
        for (j, vlan) in iface.vlans.iter().enumerate() {
            out.push((path.key("vlans").index(j), vlan.addressing()));
        }
    }
    out
}
