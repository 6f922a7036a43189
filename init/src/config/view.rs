//! Read-side helpers over a validated [`Config`] for the network, etcd and
//! VIP code, with Keel's defaults applied.

use std::net::IpAddr;
use std::time::Duration;

use super::error::YamlPath;
use super::schema::{addressing_blocks, Config, HasAddressing, Link, MachineType};
use super::types::VlanId;

/// One VIP to elect: the address, its lease time, and the link it lives on
/// (a named link or a selector, and the VLAN on it if any).
#[derive(Debug, Clone, PartialEq)]
pub struct VipSpec {
    pub ip: IpAddr,
    /// Keel extension `vip.ttl` (default 5 s).
    pub ttl: Duration,
    pub link: Link,
    /// Set when the VIP is on `<link>.<vlan>`.
    pub vlan: Option<VlanId>,
}

impl Config {
    /// `machine.type` with Keel's default: absent → controlplane, and
    /// Talos's deprecated `init` → controlplane.
    pub fn machine_type(&self) -> MachineType {
        match self.machine.machine_type {
            Some(MachineType::Worker) => MachineType::Worker,
            _ => MachineType::Controlplane,
        }
    }

    /// Every VIP, from the merged interfaces (so a VIP repeated in two
    /// entries for one link appears once).
    pub fn vips(&self) -> Vec<VipSpec> {
        let mut out = Vec::new();
        for iface in self.interfaces() {
            let blocks = std::iter::once((None, iface.addressing())).chain(
                iface
                    .vlans
                    .iter()
                    .map(|v| (Some(v.vlan_id), v.addressing())),
            );
            for (vlan, a) in blocks {
                if let Some(vip) = a.vip {
                    out.push(VipSpec {
                        ip: vip.ip.addr(),
                        ttl: Duration::from_secs(vip.ttl.seconds().into()),
                        link: iface.link.clone(),
                        vlan,
                    });
                }
            }
        }
        out
    }

    /// This node's etcd member name: `cluster.etcd.memberName`, else
    /// `machine.network.hostname`.
    pub fn etcd_member_name(&self) -> Option<&str> {
        let etcd = self.cluster.etcd.as_ref();
        etcd.and_then(|e| e.member_name.as_ref().map(|m| m.as_str()))
            .or_else(|| self.hostname())
    }

    /// The static hostname: `machine.network.hostname`, or a
    /// `HostnameConfig`'s `hostname` (validation allows one of them).
    pub fn hostname(&self) -> Option<&str> {
        let doc = self.documents.hostname.as_ref();
        self.machine
            .network
            .hostname
            .as_ref()
            .map(|h| h.as_str())
            .or_else(|| {
                doc.and_then(|d| d.spec.hostname.as_ref())
                    .map(|h| h.as_str())
            })
    }

    /// A one-line description for logs and `keel validate`, e.g.
    /// `controlplane config: hostname node1, 3 interfaces (2 static
    /// addresses, 1 DHCP), 1 VIP, etcd member node1 of 3`.
    pub fn summary(&self) -> String {
        let kind = match self.machine_type() {
            MachineType::Worker => "worker",
            _ => "controlplane",
        };
        let hostname = match &self.machine.network.hostname {
            Some(h) => format!("hostname {h}"),
            None => "no hostname".to_owned(),
        };
        let interfaces = self.interfaces();
        let (mut statics, mut dhcp) = (0, 0);
        for (_, a) in addressing_blocks(&interfaces, &YamlPath::root()) {
            statics += a.addresses.len();
            dhcp += usize::from(a.dhcp);
        }
        let mut parts = vec![
            hostname,
            format!(
                "{} ({}, {dhcp} DHCP)",
                plural(interfaces.len(), "interface"),
                plural(statics, "static address")
            ),
            plural(self.vips().len(), "VIP"),
        ];
        if self.machine_type() == MachineType::Controlplane {
            let members = self
                .cluster
                .etcd
                .as_ref()
                .map_or(0, |e| e.initial_cluster.len());
            parts.push(match self.etcd_member_name() {
                Some(name) => format!("etcd member {name} of {}", members.max(1)),
                None => "single-member etcd".to_owned(),
            });
        }
        format!("{kind} config: {}", parts.join(", "))
    }
}

fn plural(n: usize, what: &str) -> String {
    let suffix = match (n, what.ends_with('s')) {
        (1, _) => "",
        (_, true) => "es",
        (_, false) => "s",
    };
    format!("{n} {what}{suffix}")
}
