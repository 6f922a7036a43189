//! Checks on the network documents: within one document (placed by its
//! own spans, [`one`]) and across documents and the v1alpha1 document
//! ([`validate`]), with Talos's rules where Talos has them (see
//! docs/ARCHITECTURE.md, "Machine config"): one name per link across the
//! link kinds, `HostnameConfig` and `ResolverConfig` exclusive with their
//! `machine.network` keys, each VIP once and never a static address.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::error::{ConfigError, Warning, YamlPath};
use super::netdocs::{
    hex_bytes, AutoHostname, ClientIdentifier, CommonLink, DocRef, Documents, HostnameConfig,
    RouteConfig,
};
use super::schema::{addressing_blocks, Config, Link};
use super::spans::Spans;
use crate::net::cel;

/// An error at `path` of a document, placed by `spans` (before shifting).
fn at(spans: &Spans, path: &YamlPath, message: String) -> ConfigError {
    let pos = spans.value(path).or_else(|| spans.nearest(path));
    ConfigError {
        path: path.to_string(),
        line: pos.map(|p| p.line),
        column: pos.map(|p| p.column),
        message,
    }
}

fn root() -> YamlPath {
    YamlPath::root()
}

/// The checks of one link document's common part.
pub(crate) fn common(c: &CommonLink<'_>, spans: &Spans) -> Vec<ConfigError> {
    let mut out = Vec::new();
    for (k, r) in c.routes.iter().enumerate() {
        out.extend(route(r, &root().key("routes").index(k), spans));
    }
    out
}

fn route(r: &RouteConfig, path: &YamlPath, spans: &Spans) -> Vec<ConfigError> {
    let mut out = Vec::new();
    if let Some(t) = r.table.as_deref().filter(|t| !matches!(*t, "main" | "254")) {
        out.push(at(
            spans,
            &path.key("table"),
            format!(
                "routing table {t:?} is not supported by Keel (no policy routing), expected main"
            ),
        ));
    }
    let family = r
        .destination
        .map(|d| (d.addr(), "destination"))
        .or_else(|| r.gateway.map(|g| (g.addr(), "gateway")));
    if let Some((reference, what)) = family {
        for (key, ip) in [("gateway", r.gateway), ("source", r.source)] {
            let Some(ip) = ip else { continue };
            if ip.addr().is_ipv4() != reference.is_ipv4() {
                out.push(at(
                    spans,
                    &path.key(key),
                    format!("{key} {ip} is not of the route's {what} family, expected the same address family"),
                ));
            }
        }
    }
    out
}

pub(crate) fn alias(match_: &str, spans: &Spans) -> Vec<ConfigError> {
    match cel::Expr::parse(match_) {
        Ok(_) => Vec::new(),
        Err(e) => vec![at(
            spans,
            &root().key("selector").key("match"),
            format!("invalid link selector: {e}"),
        )],
    }
}

pub(crate) fn bond(links: &[String], primary: Option<&str>, spans: &Spans) -> Vec<ConfigError> {
    let mut out = Vec::new();
    if links.is_empty() {
        out.push(at(
            spans,
            &root().key("links"),
            "no links, expected at least one member link".into(),
        ));
    }
    if let Some(p) = primary.filter(|p| !links.iter().any(|l| l == p)) {
        out.push(at(
            spans,
            &root().key("primary"),
            format!(
                "primary {p} is not one of the bond's links ({})",
                links.join(", ")
            ),
        ));
    }
    out
}

pub(crate) fn dhcp4(
    client_id: Option<ClientIdentifier>,
    duid: Option<&str>,
    spans: &Spans,
) -> Vec<ConfigError> {
    let duid_wanted = client_id == Some(ClientIdentifier::Duid);
    match (duid_wanted, duid) {
        (true, None) => vec![at(
            spans,
            &root().key("clientIdentifier"),
            "clientIdentifier is duid but duidRaw is not set, expected the DUID in hex".into(),
        )],
        (false, Some(_)) => vec![at(
            spans,
            &root().key("duidRaw"),
            "duidRaw is set but clientIdentifier is not duid, expected `clientIdentifier: duid`"
                .into(),
        )],
        (true, Some(d)) if hex_bytes(d).is_none() => vec![at(
            spans,
            &root().key("duidRaw"),
            "duidRaw is not hex bytes, expected e.g. 00:01:00:01:23:45:67:89".into(),
        )],
        _ => Vec::new(),
    }
}

pub(crate) fn hostname(h: &HostnameConfig, spans: &Spans) -> Vec<ConfigError> {
    match (h.auto, &h.hostname) {
        (None, None) => vec![at(
            spans,
            &root(),
            "neither auto nor hostname is set, expected one of them".into(),
        )],
        (Some(AutoHostname::Stable), Some(_)) => vec![at(
            spans,
            &root().key("hostname"),
            "auto: stable and hostname are both set, expected one of them (Talos: `auto: off` with a hostname)".into(),
        )],
        _ => Vec::new(),
    }
}

pub(crate) fn static_host(no_hostnames: bool, spans: &Spans) -> Vec<ConfigError> {
    if no_hostnames {
        return vec![at(
            spans,
            &root().key("hostnames"),
            "no hostnames, expected at least one name for the address".into(),
        )];
    }
    Vec::new()
}

pub(crate) fn nameserver_protocols(protocols: &[Option<&str>], spans: &Spans) -> Vec<ConfigError> {
    protocols
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let p = p.filter(|p| !p.eq_ignore_ascii_case("Do53"))?;
            Some(at(
                spans,
                &root().key("nameservers").index(i).key("protocol"),
                format!(
                    "nameserver protocol {p} is not supported by Keel, expected Do53 (plain DNS)"
                ),
            ))
        })
        .collect()
}

/// An error about a whole document (placed at its first line).
fn doc_error(at: &DocRef, message: String) -> ConfigError {
    ConfigError {
        path: at.to_string(),
        line: Some(at.line),
        column: None,
        message,
    }
}

/// Where a v1alpha1 key is in the whole file, for errors that name it.
struct V1<'a> {
    spans: &'a Spans,
    first_line: usize,
    at: Option<&'a DocRef>,
}

impl V1<'_> {
    fn place(&self, path: &YamlPath) -> String {
        let pos = self.spans.key(path);
        let line = pos.map_or(String::new(), |p| {
            format!(" (line {})", p.line + self.first_line - 1)
        });
        match self.at {
            Some(at) => format!("{at}: {path}{line}"),
            None => format!("{path}{line}"),
        }
    }
}

/// The checks across documents, with the v1alpha1 document's spans.
pub(crate) fn validate(
    config: &Config,
    v1: Option<(&Spans, usize, Option<&DocRef>)>,
) -> (Vec<ConfigError>, Vec<Warning>) {
    let docs = &config.documents;
    let mut errors = Vec::new();
    let v1 = v1.map(|(spans, first_line, at)| V1 {
        spans,
        first_line,
        at,
    });
    let v1_place = |path: &YamlPath| match &v1 {
        Some(v) => v.place(path),
        None => path.to_string(),
    };
    unique_names(docs, &mut errors);
    let net = &config.machine.network;
    if let Some(h) = &docs.hostname {
        if net.hostname.is_some() {
            let legacy = v1_place(&root().key("machine").key("network").key("hostname"));
            errors.push(doc_error(
                &h.at,
                format!("sets the hostname, and so does {legacy}; Talos rejects both too, expected one of them"),
            ));
        }
    }
    if let Some(r) = &docs.resolver {
        let legacy = [
            ("nameservers", !net.nameservers.is_empty()),
            ("searchDomains", !net.search_domains.is_empty()),
            ("disableSearchDomain", net.disable_search_domain),
        ];
        for (key, set) in legacy {
            if set {
                let legacy = v1_place(&root().key("machine").key("network").key(key));
                errors.push(doc_error(
                    &r.at,
                    format!("configures the resolver, and so does {legacy}; Talos rejects both too, expected one of them"),
                ));
            }
        }
    }
    // The links something configures or creates, for the VIP documents.
    let mut known: Vec<String> = Vec::new();
    for (_, c) in docs.link_parts() {
        known.push(c.name.to_string());
    }
    known.extend(docs.aliases.iter().map(|a| a.spec.name.to_string()));
    known.extend(docs.dhcp4.iter().map(|d| d.spec.name.to_string()));
    for iface in config.interfaces() {
        if let Link::Name(n) = &iface.link {
            known.push(n.to_string());
            for v in &iface.vlans {
                known.push(crate::net::plan::vlan_name(n.as_str(), v.vlan_id.get()));
            }
        }
    }
    // Every VIP once, and never a static address.
    let mut vips: BTreeMap<IpAddr, String> = BTreeMap::new();
    let ifaces = &net.interfaces;
    let base = root().key("machine").key("network").key("interfaces");
    for (path, a) in addressing_blocks(ifaces, &base) {
        if let Some(v) = a.vip {
            vips.insert(v.ip.addr(), v1_place(&path.key("vip")));
        }
    }
    let mut statics: BTreeMap<IpAddr, String> = BTreeMap::new();
    for (path, a) in addressing_blocks(ifaces, &base) {
        for c in a.all_addresses() {
            statics.entry(c.addr()).or_insert_with(|| v1_place(&path));
        }
    }
    for (at, c) in docs.link_parts() {
        for a in c.addresses {
            statics
                .entry(a.address.addr())
                .or_insert_with(|| at.to_string());
        }
    }
    for v in &docs.vips {
        let ip = v.spec.name.addr();
        if let Some(first) = vips.insert(ip, v.at.to_string()) {
            errors.push(doc_error(
                &v.at,
                format!("VIP {ip} is already configured at {first}, expected each VIP once"),
            ));
        }
        if let Some(s) = statics.get(&ip) {
            errors.push(doc_error(
                &v.at,
                format!("VIP {ip} is also a static address at {s}, expected an address no node has statically (Keel adds and removes it)"),
            ));
        }
        let link = v.spec.link.to_string();
        if !known.contains(&link) {
            errors.push(doc_error(
                &v.at,
                format!("link {link} is not configured or created by any document (LinkConfig, VLANConfig, BondConfig, DummyLinkConfig, LinkAliasConfig, DHCPv4Config) nor by machine.network.interfaces, expected the link the VIP's subnet is on"),
            ));
        }
    }
    (errors, Vec::new())
}

/// Talos's uniqueness rules: one document per name per kind, and one link
/// name across the link kinds.
fn unique_names(docs: &Documents, errors: &mut Vec<ConfigError>) {
    let mut links: BTreeMap<String, &DocRef> = BTreeMap::new();
    for (at, c) in docs.link_parts() {
        if let Some(first) = links.insert(c.name.to_string(), at) {
            errors.push(doc_error(
                at,
                format!("link {} is already configured by {first} (line {}), expected one link document per link", c.name, first.line),
            ));
        }
    }
    let keyed: [(&str, Vec<(&DocRef, String)>); 3] = [
        (
            "LinkAliasConfig",
            docs.aliases
                .iter()
                .map(|d| (&d.at, d.spec.name.to_string()))
                .collect(),
        ),
        (
            "DHCPv4Config",
            docs.dhcp4
                .iter()
                .map(|d| (&d.at, d.spec.name.to_string()))
                .collect(),
        ),
        (
            "StaticHostConfig",
            docs.static_hosts
                .iter()
                .map(|d| (&d.at, d.spec.name.to_string()))
                .collect(),
        ),
    ];
    for (kind, named) in keyed {
        let mut seen: BTreeMap<String, &DocRef> = BTreeMap::new();
        for (at, name) in named {
            if let Some(first) = seen.insert(name.clone(), at) {
                errors.push(doc_error(
                    at,
                    format!("a second {kind} named {name} (the first is {first}, line {}), expected one per name", first.line),
                ));
            }
        }
    }
}
