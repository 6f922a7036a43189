//! Who the nodes are and what config each gets.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// One node's fixed facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// 1-based.
    pub index: usize,
    pub hostname: String,
    pub mac: String,
    pub address: Ipv4Addr,
    /// Its IPv6 address ([`Topology::ipv6`]).
    pub address6: Ipv6Addr,
    /// The MAC of the node's second NIC, on QEMU user networking: the
    /// host's way to its node API (a forwarded port).
    pub api_mac: String,
}

/// The cluster's addressing: nodes at `.11`, `.12`, … of the VIP's /24,
/// and the same host numbers in a unique-local /64 derived from it
/// ([`Topology::ipv6`]) for a dual-stack template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub vip: Ipv4Addr,
    pub prefix: u8,
    /// The IPv6 VIP: the IPv4 VIP's host number in the /64.
    pub vip6: Ipv6Addr,
    pub nodes: Vec<NodeSpec>,
}

impl Topology {
    /// `count` nodes (1 to 9) around `vip`, which must not be one of their
    /// addresses.
    pub fn new(count: usize, vip: Ipv4Addr) -> anyhow::Result<Topology> {
        if !(1..=9).contains(&count) {
            bail!("--nodes {count}: expected 1 to 9");
        }
        let [a, b, c, d] = vip.octets();
        // count is 1 to 9 (checked above): the host parts are .11 to .19.
        let last = u8::try_from(count).expect("checked: 1 to 9");
        let nodes: Vec<NodeSpec> = (1..=last)
            .map(|i| NodeSpec {
                index: usize::from(i),
                hostname: format!("node{i}"),
                mac: format!("52:54:00:00:{c:02x}:{:02x}", 0x10 + i),
                address: Ipv4Addr::new(a, b, c, 10 + i),
                address6: Topology::ipv6(vip, 10 + i),
                api_mac: format!("52:54:00:00:06:{:02x}", 0x10 + i),
            })
            .collect();
        if nodes.iter().any(|n| n.address == vip) || d == 0 || d == 255 {
            bail!(
                "--vip {vip}: the nodes take .11 to .{} of its /24; pick another host address",
                10 + count
            );
        }
        Ok(Topology {
            vip,
            prefix: 24,
            vip6: Topology::ipv6(vip, d),
            nodes,
        })
    }

    /// The IPv6 twin of host `host` of `vip`'s /24: fd00:AABB:CC::HOST
    /// (RFC 4193 unique-local) with the IPv4 octets in hex and the host
    /// number written as its decimal digits, so 10.5.0.11 → fd00:a05::11
    /// and the VIP 10.5.0.100 → fd00:a05::100: one glance matches them.
    pub fn ipv6(vip: Ipv4Addr, host: u8) -> Ipv6Addr {
        let [a, b, c, _] = vip.octets();
        // At most "255", which read as hex is 0x255: fits in 16 bits.
        let digits = u16::from_str_radix(&host.to_string(), 16).unwrap_or(0);
        Ipv6Addr::new(
            0xfd00,
            u16::from_be_bytes([a, b]),
            u16::from(c),
            0,
            0,
            0,
            0,
            digits,
        )
    }

    /// The `initialCluster` block: one `name: https://address:2380` line
    /// per node (peers speak TLS: the config carries a CA), indented for
    /// the template.
    pub fn initial_cluster(&self) -> String {
        self.peer_urls("https")
            .map(|(name, url)| format!("      {name}: {url}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Each node's etcd member name and peer URL.
    pub fn peer_urls<'a>(&'a self, scheme: &'a str) -> impl Iterator<Item = (&'a str, String)> {
        self.nodes.iter().map(move |n| {
            (
                n.hostname.as_str(),
                format!("{scheme}://{}:2380", n.address),
            )
        })
    }

    /// `node`'s kernel parameters for the benchmark floor
    /// (image/floor-init.sh): the same member name, address and etcd
    /// cluster the template gives a Keel node; node 1 takes the VIP.
    pub fn floor_params(&self, node: &NodeSpec) -> String {
        // The floor's etcd runs with TLS as Keel's does, from certificates
        // the bench issues (`floor.rs`): its peers are https.
        let cluster: Vec<String> = self
            .peer_urls("https")
            .map(|(name, url)| format!("{name}={url}"))
            .collect();
        let mut p = format!(
            "floor.name={} floor.ip={}/{} floor.cluster={}",
            node.hostname,
            node.address,
            self.prefix,
            cluster.join(",")
        );
        if node.index == 1 {
            p += &format!(" floor.vip={}/{}", self.vip, self.prefix);
        }
        p
    }
}

/// The cluster's CAs: etcd's (`cluster.etcd.ca`) and the machine CA
/// (`machine.ca`, the node API's).
#[derive(Debug, Clone)]
pub struct Cas {
    pub etcd: crate::pki::Ca,
    pub machine: crate::pki::Ca,
}

/// The template with `node`'s values in place of its `{{…}}` fields; an
/// unknown field is an error naming it.
pub fn render(
    template: &str,
    topo: &Topology,
    node: &NodeSpec,
    cas: &Cas,
) -> anyhow::Result<String> {
    let values = [
        ("hostname", node.hostname.clone()),
        ("mac", node.mac.clone()),
        ("address", node.address.to_string()),
        ("prefix", topo.prefix.to_string()),
        ("vip", topo.vip.to_string()),
        ("address6", node.address6.to_string()),
        ("vip6", topo.vip6.to_string()),
        ("api_mac", node.api_mac.clone()),
        ("initial_cluster", topo.initial_cluster()),
        ("etcd_ca_crt", cas.etcd.crt_b64()),
        ("etcd_ca_key", cas.etcd.key_b64()),
        ("machine_ca_crt", cas.machine.crt_b64()),
        ("machine_ca_key", cas.machine.key_b64()),
    ];
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!("unclosed `{{{{` in the template");
        };
        let field = after[..end].trim();
        match values.iter().find(|(k, _)| *k == field) {
            Some((_, v)) => out.push_str(v),
            None => bail!(
                "unknown template field {{{{{field}}}}} (known: {})",
                values.map(|(k, _)| k).join(", ")
            ),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A 2 MiB vfat image labelled `KEEL-CONFIG` holding `config.yaml` (what a
/// USB stick or config drive would be), written to `dir/name`.
pub fn config_disk(dir: &Path, name: &str, yaml: &str) -> anyhow::Result<PathBuf> {
    let img = dir.join(name);
    let yaml_path = dir.join(format!("{name}.yaml"));
    std::fs::write(&yaml_path, yaml).with_context(|| format!("write {}", yaml_path.display()))?;
    let _ = std::fs::remove_file(&img);
    run(Command::new("mkfs.vfat")
        .args(["-C", "-n", "KEEL-CONFIG"])
        .arg(&img)
        .arg("2048"))?;
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&img)
        .arg(&yaml_path)
        .arg("::config.yaml"))?;
    Ok(img)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("{cmd:?} (dosfstools and mtools come with `make deps`)"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology() {
        let t = Topology::new(3, Ipv4Addr::new(10, 5, 0, 100)).unwrap();
        let got: Vec<(String, String, String)> = t
            .nodes
            .iter()
            .map(|n| (n.hostname.clone(), n.mac.clone(), n.address.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("node1", "52:54:00:00:00:11", "10.5.0.11"),
                ("node2", "52:54:00:00:00:12", "10.5.0.12"),
                ("node3", "52:54:00:00:00:13", "10.5.0.13"),
            ]
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        );
        // (count, vip, error contains)
        let bad = [
            (0, "10.5.0.100", "expected 1 to 9"),
            (10, "10.5.0.100", "expected 1 to 9"),
            (3, "10.5.0.12", "pick another host address"),
            (3, "10.5.0.0", "pick another host address"),
        ];
        for (n, vip, want) in bad {
            let e = Topology::new(n, vip.parse().unwrap())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{n} {vip}: {e}");
        }
    }

    #[test]
    fn rendering() {
        let t = Topology::new(2, Ipv4Addr::new(192, 168, 7, 50)).unwrap();
        let ca = cas();
        let cases = [
            ("{{hostname}} {{ mac }} {{address}}/{{prefix}}", Ok("node2 52:54:00:00:07:12 192.168.7.12/24")),
            ("vip {{vip}}", Ok("vip 192.168.7.50")),
            ("{{address6}}/64 {{vip6}}", Ok("fd00:c0a8:7::12/64 fd00:c0a8:7::50")),
            ("api {{api_mac}}", Ok("api 52:54:00:00:06:12")),
            (
                "x:\n{{initial_cluster}}\n",
                Ok("x:\n      node1: https://192.168.7.11:2380\n      node2: https://192.168.7.12:2380\n"),
            ),
            ("{{nope}}", Err("unknown template field {{nope}}")),
            ("{{hostname", Err("unclosed")),
        ];
        for (template, want) in cases {
            let got = render(template, &t, &t.nodes[1], &ca);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{template}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{template}: {e}"),
                (g, w) => panic!("{template}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn floor_params() {
        let t = Topology::new(2, Ipv4Addr::new(10, 5, 0, 100)).unwrap();
        let cluster = "floor.cluster=node1=https://10.5.0.11:2380,node2=https://10.5.0.12:2380";
        let cases = [
            (
                0,
                format!("floor.name=node1 floor.ip=10.5.0.11/24 {cluster} floor.vip=10.5.0.100/24"),
            ),
            (
                1,
                format!("floor.name=node2 floor.ip=10.5.0.12/24 {cluster}"),
            ),
        ];
        for (i, want) in cases {
            assert_eq!(t.floor_params(&t.nodes[i]), want);
        }
    }

    fn cas() -> Cas {
        Cas {
            etcd: crate::pki::Ca::make().unwrap(),
            machine: crate::pki::Ca::make().unwrap(),
        }
    }

    /// The shipped templates render, for every node, to configs Keel
    /// accepts, with every field filled in: the bootstrap flow's (no
    /// member list, the machine CA, the control-plane endpoint) and the
    /// static one's.
    #[test]
    fn shipped_templates() {
        let t = Topology::new(3, Ipv4Addr::new(10, 5, 0, 100)).unwrap();
        let ca = cas();
        let templates = [
            (
                include_str!("../../examples/cluster.yaml.tmpl"),
                &[
                    "hostname: node1",
                    "hardwareAddr: \"52:54:00:00:00:11\"",
                    "hardwareAddr: \"52:54:00:00:06:11\"",
                    "addresses: [10.5.0.11/24]",
                    "ip: 10.5.0.100",
                    "endpoint: https://10.5.0.100:6443",
                ][..],
                false,
            ),
            (
                include_str!("../../examples/cluster-static.yaml.tmpl"),
                &[
                    "      node3: https://10.5.0.13:2380",
                    "hardwareAddr: \"52:54:00:00:06:11\"",
                ][..],
                true,
            ),
            (
                include_str!("../../examples/cluster-dual.yaml.tmpl"),
                &[
                    "      node3: https://10.5.0.13:2380",
                    "== \"52:54:00:00:00:11\"",
                    "address: fd00:a05::11/64",
                    "name: fd00:a05::100",
                    "name: 10.5.0.100",
                ][..],
                true,
            ),
        ];
        for (template, wants, static_list) in templates {
            for n in &t.nodes {
                let y = render(template, &t, n, &ca).unwrap();
                match keel::config::parse(&y) {
                    Ok(p) => {
                        let etcd = p.config.cluster.etcd.as_ref().unwrap();
                        assert_eq!(!etcd.initial_cluster.is_empty(), static_list, "{y}");
                        assert!(p.config.machine.ca.is_some(), "{y}");
                    }
                    Err(e) => panic!("{} does not validate:\n{e}\n{y}", n.hostname),
                }
            }
            let y = render(template, &t, &t.nodes[0], &ca).unwrap();
            for want in wants {
                assert!(y.contains(want), "{want} not in\n{y}");
            }
        }
    }
}
