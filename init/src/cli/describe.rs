//! `keel validate`'s account of what a node with this config will do: the
//! hostname, each link (found how, addressed how, with which VLANs and
//! VIPs, written where), DNS, etcd (member, membership, TLS) and what Keel
//! ignores. Meant to fit one screen for a typical config.

use crate::config::{MachineType, Parsed, WarningKind};
use crate::net::spec::{self, AutoName, LinkKind, LinkRef, LinkSpec, NetSpec};

/// The lines to print for a valid config read from `name`.
pub fn describe(name: &str, parsed: &Parsed) -> Vec<String> {
    let config = &parsed.config;
    let kind = match config.machine_type() {
        MachineType::Worker => "worker",
        _ => "controlplane",
    };
    let d = &config.documents;
    let mut kinds: Vec<(usize, &str)> = Vec::new();
    kinds.extend(d.v1alpha1.map(|i| (i, "v1alpha1")));
    kinds.extend(d.links.iter().map(|x| (x.at.index, "LinkConfig")));
    kinds.extend(d.aliases.iter().map(|x| (x.at.index, "LinkAliasConfig")));
    kinds.extend(d.vlans.iter().map(|x| (x.at.index, "VLANConfig")));
    kinds.extend(d.bonds.iter().map(|x| (x.at.index, "BondConfig")));
    kinds.extend(d.dummies.iter().map(|x| (x.at.index, "DummyLinkConfig")));
    kinds.extend(d.dhcp4.iter().map(|x| (x.at.index, "DHCPv4Config")));
    kinds.extend(d.hostname.iter().map(|x| (x.at.index, "HostnameConfig")));
    kinds.extend(d.resolver.iter().map(|x| (x.at.index, "ResolverConfig")));
    kinds.extend(
        d.static_hosts
            .iter()
            .map(|x| (x.at.index, "StaticHostConfig")),
    );
    kinds.extend(d.vips.iter().map(|x| (x.at.index, "Layer2VIPConfig")));
    kinds.sort();
    let docs: Vec<&str> = kinds.iter().map(|(_, k)| *k).collect();
    let mut out = vec![format!(
        "{name}: valid {kind} config ({})",
        match docs[..] {
            ["v1alpha1"] => "one v1alpha1 document".to_owned(),
            _ => format!("documents: {}", docs.join(", ")),
        }
    )];
    let net = spec::from_config(config);
    out.push(row("hostname", &hostname(config, &net)));
    for l in &net.links {
        out.push(row(&link_name(&l.link), &link_line(l, &net)));
    }
    for a in &net.aliases {
        out.push(row(
            &a.name,
            &format!(
                "alias: the one physical link where {} [{}]",
                a.selector, a.origin
            ),
        ));
    }
    // VIPs on links no entry configures (a Layer2VIPConfig on a NIC).
    for v in net
        .vips
        .iter()
        .filter(|v| !net.links.iter().any(|l| l.link == v.link))
    {
        out.push(row(
            &link_name(&v.link),
            &format!("VIP {} (TTL {} s) [{}]", v.ip, v.ttl.as_secs(), v.origin),
        ));
    }
    if net.links.is_empty() && net.vips.is_empty() {
        out.push(row("links", "none configured: DHCP on every physical link"));
    }
    let h = &net.host;
    let mut dns = Vec::new();
    if !h.nameservers.is_empty() {
        let ns: Vec<String> = h.nameservers.iter().map(|n| n.to_string()).collect();
        dns.push(format!("nameservers {}", ns.join(" ")));
    }
    if !h.search_domains.is_empty() {
        dns.push(format!("search {}", h.search_domains.join(" ")));
    }
    if !h.extra_hosts.is_empty() {
        let n = h.extra_hosts.len();
        dns.push(format!(
            "{n} hosts {}",
            if n == 1 { "entry" } else { "entries" }
        ));
    }
    if !dns.is_empty() {
        out.push(row("DNS", &dns.join("; ")));
    }
    out.push(row("etcd", &etcd(config)));
    out.push(row("node API", &api(config)));
    let ignored = ignored(parsed);
    if !ignored.is_empty() {
        out.push(row("ignored", &ignored));
    }
    out
}

/// The ignored Talos keys and documents, grouped by section:
/// `machine: kubelet, install; cluster: network; KubeletConfig`.
fn ignored(parsed: &Parsed) -> String {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for w in parsed
        .warnings
        .iter()
        .filter(|w| w.kind == WarningKind::Unsupported)
    {
        // `document 1 (v1alpha1): machine.kubelet` → `machine.kubelet`; a
        // whole ignored document stays as it is.
        let path = w.path.split_once("): ").map_or(w.path.as_str(), |(_, p)| p);
        let (group, key) = match path.split_once('.') {
            Some((g, k)) if !path.starts_with("document ") => (g.to_owned(), k.to_owned()),
            _ => (String::new(), path.to_owned()),
        };
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, keys)) => keys.push(key),
            None => groups.push((group, vec![key])),
        }
    }
    groups
        .into_iter()
        .map(|(g, keys)| match g.as_str() {
            "" => keys.join(", "),
            _ => format!("{g}: {}", keys.join(", ")),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn row(what: &str, text: &str) -> String {
    format!("  {what:<12} {text}")
}

fn hostname(config: &crate::config::Config, net: &NetSpec) -> String {
    let from = if config.documents.hostname.is_some() {
        "HostnameConfig"
    } else {
        "machine.network.hostname"
    };
    match (&net.host.hostname, net.host.auto) {
        (Some(h), _) => format!("{h} ({from})"),
        (None, AutoName::Stable) => "keel-xxx-yyy, derived at boot from the SMBIOS UUID (else the first NIC's MAC), unless DHCP gives one (HostnameConfig auto: stable)".to_owned(),
        (None, AutoName::Off) => "from the kernel command line or DHCP, if any".to_owned(),
    }
}

fn link_name(l: &LinkRef) -> String {
    match l {
        LinkRef::Name(n) => n.clone(),
        LinkRef::Selector(s) => s.to_string(),
        LinkRef::VlanOf { parent, id } => format!("{}.{id}", link_name(parent)),
    }
}

fn link_line(l: &LinkSpec, net: &NetSpec) -> String {
    let mut parts = Vec::new();
    if l.ignore {
        return format!("left alone (ignore) [{}]", l.origin);
    }
    match &l.kind {
        LinkKind::Existing => {}
        LinkKind::Dummy => parts.push("dummy link".to_owned()),
        LinkKind::Vlan { parent, id, qinq } => parts.push(format!(
            "VLAN {id}{} on {}",
            if *qinq { " (802.1ad)" } else { "" },
            link_name(parent)
        )),
        LinkKind::Bond { members, .. } => {
            let m: Vec<String> = members.iter().map(link_name).collect();
            parts.push(format!("bond of {}", m.join(", ")));
        }
    }
    if !l.up {
        parts.push("down".to_owned());
    }
    let a = &l.addressing;
    for (ip, len) in &a.addresses {
        parts.push(format!("{ip}/{len}"));
    }
    for r in &a.routes {
        let dest = r
            .dest
            .map_or("default".to_owned(), |(a, n)| format!("{a}/{n}"));
        let via = r.gateway.map_or(String::new(), |g| format!(" via {g}"));
        parts.push(format!("route {dest}{via}"));
    }
    if let Some(m) = a.mtu {
        parts.push(format!("MTU {m}"));
    }
    if let Some(d) = &a.dhcp {
        parts.push(format!("DHCP (route metric {})", d.route_metric));
    }
    for v in net.vips.iter().filter(|v| v.link == l.link) {
        parts.push(format!("VIP {} (TTL {} s)", v.ip, v.ttl.as_secs()));
    }
    if parts.is_empty() {
        parts.push("up".to_owned());
    }
    format!("{} [{}]", parts.join("; "), l.origin)
}

fn api(config: &crate::config::Config) -> String {
    match &config.machine.ca {
        None => "off (no machine.ca)".to_owned(),
        Some(ca) if ca.key.is_none() => "off (machine.ca has no key)".to_owned(),
        Some(_) => format!(
            "port {}, mutual TLS: clients need a certificate signed by machine.ca{}",
            crate::api::PORT,
            match config.machine.accepted_cas.len() {
                0 => String::new(),
                n => format!(" or one of {n} acceptedCAs"),
            }
        ),
    }
}

fn etcd(config: &crate::config::Config) -> String {
    if config.machine_type() == MachineType::Worker {
        return "not run (worker)".to_owned();
    }
    let Some(e) = &config.cluster.etcd else {
        return "not run: no cluster.etcd section".to_owned();
    };
    let member = config.etcd_member_name().unwrap_or("(hostname at boot)");
    let membership = if e.initial_cluster.is_empty() {
        let seeds = crate::etcd::args::seeds(config, crate::etcd::args::DEFAULT_CLIENT_PORT);
        let through = if seeds.is_empty() {
            "nothing: no cluster.controlPlane.endpoint and no VIP, so it can only be bootstrapped"
                .to_owned()
        } else {
            seeds
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!("a cluster formed the Talos way (no initialCluster): never started by itself; one `keel bootstrap` starts it on one node, the others join as learners through {through}")
    } else {
        let names: Vec<&str> = e.initial_cluster.keys().map(|k| k.as_str()).collect();
        format!(
            "a static cluster of {} (initialCluster: {})",
            names.len(),
            names.join(", ")
        )
    };
    let tls = match (&e.ca, e.peer.is_some() || e.server.is_some()) {
        (Some(_), false) => {
            "mTLS for peers and clients, certificates issued at boot from cluster.etcd.ca"
        }
        (Some(_), true) => "mTLS with the config's own peer/server certificates",
        (None, _) if e.allow_insecure => "NONE: plaintext on the node's address (allowInsecure)",
        (None, _) => "none",
    };
    let clients = if e.clients_on_node_address() {
        "; clients on every address"
    } else {
        "; clients on loopback only"
    };
    format!("member {member} of {membership}; TLS: {tls}{clients}")
}
