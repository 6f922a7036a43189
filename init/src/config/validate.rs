//! The cross-field pass: checks that need more than one value at a time,
//! run on a deserialised config, reporting every finding (not just the
//! first) with the position looked up in the [`Spans`]. Also collects the
//! warnings for ignored Talos keys and deprecated values.

use std::collections::HashMap;
use std::net::IpAddr;

use super::error::{ConfigError, Warning, WarningKind, YamlPath};
use super::merge;
use super::schema::{addressing_blocks, Config, Interface, Link, MachineType, Route, Vip};
use super::spans::Spans;

/// Errors and warnings for `config`, each sorted by position.
pub(crate) fn validate(config: &Config, spans: &Spans) -> (Vec<ConfigError>, Vec<Warning>) {
    let mut f = Findings {
        spans,
        errors: spans.duplicate_keys(),
        warnings: Vec::new(),
    };
    warnings(config, &mut f);
    env(config, &mut f);
    interfaces(config, &mut f);
    vips(config, &mut f);
    etcd(config, &mut f);
    machine_ca(config, &mut f);
    let pos = |line: Option<usize>, column: Option<usize>| {
        (line.unwrap_or(usize::MAX), column.unwrap_or(0))
    };
    f.errors.sort_by_key(|e| pos(e.line, e.column));
    f.warnings.sort_by_key(|w| pos(w.line, None));
    (f.errors, f.warnings)
}

struct Findings<'a> {
    spans: &'a Spans,
    errors: Vec<ConfigError>,
    warnings: Vec<Warning>,
}

impl Findings<'_> {
    fn error(&mut self, path: &YamlPath, message: String) {
        let pos = self.spans.value(path).or_else(|| self.spans.nearest(path));
        self.errors.push(ConfigError {
            path: path.to_string(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            message,
        });
    }

    fn unsupported(&mut self, parent: &YamlPath, keys: Vec<&'static str>) {
        for key in keys {
            let path = parent.key(key);
            self.warnings.push(Warning {
                line: self.spans.key(&path).map(|p| p.line),
                path: path.to_string(),
                kind: WarningKind::Unsupported,
            });
        }
    }
}

fn root() -> YamlPath {
    YamlPath::root()
}

fn interfaces_path() -> YamlPath {
    root().key("machine").key("network").key("interfaces")
}

fn warnings(config: &Config, f: &mut Findings<'_>) {
    let machine = root().key("machine");
    let network = machine.key("network");
    f.unsupported(&root(), config.unsupported_keys());
    f.unsupported(&machine, config.machine.unsupported_keys());
    f.unsupported(&network, config.machine.network.unsupported_keys());
    let interfaces = &config.machine.network.interfaces;
    for (i, iface) in interfaces.iter().enumerate() {
        f.unsupported(&interfaces_path().index(i), iface.unsupported_keys());
    }
    for (path, a) in addressing_blocks(interfaces, &interfaces_path()) {
        if let Some(vip) = a.vip {
            f.unsupported(&path.key("vip"), vip.unsupported_keys());
        }
    }
    let cluster = root().key("cluster");
    f.unsupported(&cluster, config.cluster.unsupported_keys());
    if let Some(etcd) = &config.cluster.etcd {
        f.unsupported(&cluster.key("etcd"), etcd.unsupported_keys());
    }
    if config.machine.machine_type == Some(MachineType::Init) {
        let path = machine.key("type");
        f.warnings.push(Warning {
            line: f.spans.key(&path).map(|p| p.line),
            path: path.to_string(),
            kind: WarningKind::Deprecated(
                "`init` is deprecated in Talos, treated as `controlplane`".to_owned(),
            ),
        });
    }
}

/// Names and values must survive `execve`'s `NAME=value` strings.
fn env(config: &Config, f: &mut Findings<'_>) {
    let base = root().key("machine").key("env");
    for (name, value) in &config.machine.env {
        let bad_name = name.is_empty() || name.contains(['=', '\0']);
        if bad_name || value.contains('\0') {
            f.error(
                &base.key(name),
                format!("invalid environment variable {name:?}, expected a non-empty name without `=` and values without NUL"),
            );
        }
    }
}

fn interfaces(config: &Config, f: &mut Findings<'_>) {
    let base = interfaces_path();
    for (i, iface) in config.machine.network.interfaces.iter().enumerate() {
        let path = base.index(i);
        if let Link::Selector(_) = iface.link {
            // A selector finds an existing physical link; a bond or dummy
            // link is created by Keel and needs a name to be created with.
            if iface.bond.is_some() {
                f.error(
                    &path.key("bond"),
                    "a bond is created by Keel and needs a name, expected `interface: bond0` instead of `deviceSelector`".to_owned(),
                );
            }
            if iface.dummy {
                f.error(
                    &path.key("dummy"),
                    "a dummy link is created by Keel and needs a name, expected `interface: <name>` instead of `deviceSelector`".to_owned(),
                );
            }
        }
    }
    for (path, a) in addressing_blocks(&config.machine.network.interfaces, &base) {
        routes(a.routes, &path.key("routes"), f);
    }
    let (_, conflicts) = merge::merge(&config.machine.network.interfaces, &base);
    for c in conflicts {
        f.error(&c.path, c.message);
    }
}

/// A route's gateway and source must be of the destination's family (the
/// kernel would refuse the route with EINVAL at boot).
fn routes(routes: &[Route], base: &YamlPath, f: &mut Findings<'_>) {
    for (k, route) in routes.iter().enumerate() {
        let path = base.index(k);
        let family = route
            .network
            .map(|n| (n.addr(), "network"))
            .or_else(|| route.gateway.map(|g| (g.addr(), "gateway")));
        let Some((reference, what)) = family else {
            continue;
        };
        for (key, ip) in [("gateway", route.gateway), ("source", route.source)] {
            let Some(ip) = ip else { continue };
            if ip.addr().is_ipv4() != reference.is_ipv4() {
                f.error(
                    &path.key(key),
                    format!(
                        "{key} {ip} is {} but the route's {what} is {}, expected the same address family",
                        family_name(ip.addr()),
                        family_name(reference),
                    ),
                );
            }
        }
    }
}

fn family_name(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// Every VIP as written, with its path.
fn all_vips(interfaces: &[Interface]) -> Vec<(YamlPath, &Vip)> {
    addressing_blocks(interfaces, &interfaces_path())
        .into_iter()
        .filter_map(|(path, a)| Some((path.key("vip"), a.vip?)))
        .collect()
}

/// Every static address as written (`addresses` and `cidr`, on links and
/// VLANs), by IP, with the path where it first appears.
fn static_addresses(interfaces: &[Interface]) -> HashMap<IpAddr, YamlPath> {
    let mut out = HashMap::new();
    for (path, a) in addressing_blocks(interfaces, &interfaces_path()) {
        let cidr = a.cidr.map(|c| (path.key("cidr"), c));
        let listed = a
            .addresses
            .iter()
            .enumerate()
            .map(|(k, c)| (path.key("addresses").index(k), c));
        for (at, c) in cidr.into_iter().chain(listed) {
            out.entry(c.addr()).or_insert(at);
        }
    }
    out
}

/// A VIP moves between nodes: it must not also be a static address
/// anywhere (that node would never give it up), and each VIP is elected
/// once.
fn vips(config: &Config, f: &mut Findings<'_>) {
    let interfaces = &config.machine.network.interfaces;
    let statics = static_addresses(interfaces);
    let mut seen: HashMap<IpAddr, YamlPath> = HashMap::new();
    for (path, vip) in all_vips(interfaces) {
        let ip = vip.ip.addr();
        let ip_path = path.key("ip");
        if let Some(at) = statics.get(&ip) {
            f.error(
                &ip_path,
                format!("VIP {ip} is also a static address at {at}, expected an address no node has statically (Keel adds and removes it)"),
            );
        }
        match seen.get(&ip) {
            Some(first) => f.error(
                &ip_path,
                format!("VIP {ip} is already configured at {first}, expected each VIP once"),
            ),
            None => {
                seen.insert(ip, path);
            }
        }
    }
}

fn etcd(config: &Config, f: &mut Findings<'_>) {
    let Some(etcd) = &config.cluster.etcd else {
        return;
    };
    let base = root().key("cluster").key("etcd");
    etcd_tls(config, etcd, &base, f);
    extra_args(etcd, &base, f);
    if etcd.initial_cluster_token.is_empty() {
        f.error(
            &base.key("initialClusterToken"),
            "empty initialClusterToken, expected a non-empty string (default `keel`)".to_owned(),
        );
    }
    if etcd.initial_cluster.is_empty() {
        let lonely = config.machine_type() == MachineType::Controlplane
            && crate::etcd::args::seeds(config, crate::etcd::args::DEFAULT_CLIENT_PORT).is_empty();
        if lonely {
            f.warnings.push(Warning {
                line: f.spans.key(&base).map(|p| p.line),
                path: base.to_string(),
                kind: WarningKind::Note(
                    "no initialCluster, no cluster.controlPlane.endpoint and no VIP: this node can be bootstrapped, but can never find a cluster to join; set cluster.controlPlane.endpoint (talosctl gen config does)".to_owned(),
                ),
            });
        }
        return;
    }
    let ic = base.key("initialCluster");
    let from = if config.machine.network.hostname.is_some() {
        "machine.network.hostname"
    } else {
        "HostnameConfig"
    };
    let me = match (&etcd.member_name, config.hostname()) {
        (Some(m), _) => Some((m.as_str(), "cluster.etcd.memberName")),
        (None, Some(h)) => Some((h, from)),
        (None, None) => None,
    };
    match me {
        None => f.error(
            &ic,
            "cannot tell which member this node is, expected cluster.etcd.memberName or machine.network.hostname".to_owned(),
        ),
        Some((name, from)) if !etcd.initial_cluster.keys().any(|k| k.as_str() == name) => {
            let members: Vec<&str> = etcd.initial_cluster.keys().map(|k| k.as_str()).collect();
            f.error(
                &ic,
                format!(
                    "this node's member name `{name}` (from {from}) is not in initialCluster, expected one of: {}",
                    members.join(", ")
                ),
            );
        }
        Some(_) => {}
    }
    let mut urls: HashMap<&str, &str> = HashMap::new();
    for (name, url) in &etcd.initial_cluster {
        if let Some(other) = urls.insert(url.as_str(), name.as_str()) {
            f.error(
                &ic.key(name.as_str()),
                format!("peer URL {url} is also member `{other}`'s, expected one URL per member"),
            );
        }
    }
}

/// A CA Keel issues from: a CA certificate and its own key.
fn check_ca(crt: &str, key: &str, path: &YamlPath, name: &str, f: &mut Findings<'_>) {
    let (crt_name, key_name) = (format!("{name}.crt"), format!("{name}.key"));
    if let Err(e) = crate::x509::Ca::from_pem(crt, key, &crt_name, &key_name) {
        let at = match &e {
            crate::x509::X509Error::BadKey { .. } | crate::x509::X509Error::KeyMismatch { .. } => {
                path.key("key")
            }
            _ => path.key("crt"),
        };
        f.error(&at, e.to_string());
    }
}

/// `machine.ca`, the node API's CA: without its key the API cannot issue
/// its server certificate and stays off, which is worth a warning on a
/// control-plane node (a worker config from talosctl carries no key).
fn machine_ca(config: &Config, f: &mut Findings<'_>) {
    let path = root().key("machine").key("ca");
    if let Some(ca) = &config.machine.ca {
        match &ca.key {
            Some(key) => check_ca(ca.crt.pem(), key.pem(), &path, "machine.ca", f),
            None if config.machine_type() == MachineType::Controlplane => {
                f.warnings.push(Warning {
                    line: f.spans.key(&path).map(|p| p.line),
                    path: path.to_string(),
                    kind: WarningKind::Note(
                        "machine.ca has no key: the node API is off (it issues its server certificate from this CA)".to_owned(),
                    ),
                })
            }
            None => {}
        }
    }
    for (i, ca) in config.machine.accepted_cas.iter().enumerate() {
        let at = root().key("machine").key("acceptedCAs").index(i).key("crt");
        let name = format!("machine.acceptedCAs[{i}].crt");
        if let Err(e) = crate::x509::certificate_is_ca(ca.crt.pem(), &name) {
            f.error(&at, e.to_string());
        }
    }
}

/// `extraArgs` Keel refuses at boot (`etcd::args`), named here already.
fn extra_args(etcd: &super::Etcd, base: &YamlPath, f: &mut Findings<'_>) {
    use crate::etcd::args::{DENIED, UNSAFE};
    for k in etcd.extra_args.keys() {
        let flag = k.trim_start_matches('-');
        let at = base.key("extraArgs").key(k);
        if let Some((_, why)) = UNSAFE.iter().find(|(u, _)| *u == flag) {
            f.error(
                &at,
                format!("cluster.etcd.extraArgs.{flag}: refused: {why}"),
            );
        } else if DENIED.contains(&flag) {
            f.error(
                &at,
                format!("cluster.etcd.extraArgs.{flag}: Keel sets --{flag} itself, expected it not in extraArgs"),
            );
        }
    }
}

/// TLS by default (see `etcd::args`): a CA Keel can issue from, explicit
/// certificates, or `allowInsecure` on purpose.
fn etcd_tls(config: &Config, etcd: &super::Etcd, base: &YamlPath, f: &mut Findings<'_>) {
    if config.machine_type() != MachineType::Controlplane {
        return;
    }
    let own = etcd.peer.is_some() || etcd.server.is_some();
    match (&etcd.ca, own) {
        (Some(ca), false) => match &ca.key {
            None => f.error(
                &base.key("ca"),
                "cluster.etcd.ca has no key, so Keel cannot issue this node's etcd certificates from it; expected ca.key (as talosctl writes it), or cluster.etcd.peer and cluster.etcd.server".to_owned(),
            ),
            Some(key) => check_ca(ca.crt.pem(), key.pem(), &base.key("ca"), "cluster.etcd.ca", f),
        },
        (None, false) if !etcd.allow_insecure => f.error(
            base,
            "no cluster.etcd.ca: etcd would listen in plaintext on the node's address; expected cluster.etcd.ca (Keel issues this node's certificates from it, as Talos does), or allowInsecure: true to run etcd without TLS on purpose".to_owned(),
        ),
        _ => {}
    }
}
