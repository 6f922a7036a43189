//! etcd's command line, from `cluster.etcd` and what the node knows at run
//! time.
//!
//! [`Plan::from_config`] checks everything that can be checked before etcd
//! runs and names the config key at fault; [`Plan::args`] then renders the
//! flags for one start (`new` or `existing`, decided by [`super::rejoin`]).
//!
//! Addresses (etcd's "Configuration flags" guide, "Clustering flags"):
//! - peers: etcd requires `--initial-advertise-peer-urls` to be this
//!   member's entry in `--initial-cluster`, so the peer URL comes from
//!   `initialCluster`, and its host must be one of the node's addresses
//!   (etcd listens there). `listenSubnets` adds more listen addresses;
//!   `advertisedSubnets`, when set, must select that address. With no
//!   `initialCluster` (the Talos way: [`Formation::Discovered`], see
//!   [`super::join`]) the advertised address is the first node address
//!   `advertisedSubnets` selects, port 2380.
//! - clients: always on loopback; on the advertised node address too with
//!   `clientOnNodeAddress` (which [`super::rejoin`] needs on the peers).
//!
//! TLS, by default (docs/ARCHITECTURE.md, "etcd"):
//! - a Talos config carries only `cluster.etcd.ca` (crt + key): Keel then
//!   issues this node's peer, server and client certificates from it
//!   ([`Plan::issue_certificates`], [`crate::x509`]), and every listener is
//!   TLS with client-certificate auth, peer and client;
//! - `peer`/`server` given explicitly still win, side by side: `peer` set
//!   means `https://` peer URLs and `--peer-client-cert-auth`, `server`
//!   set `https://` client URLs and `--client-cert-auth`; either needs
//!   `ca`;
//! - no CA at all: etcd would listen in plaintext on the node's address
//!   (its peers always do), which is refused unless `allowInsecure: true`
//!   says it is meant.
//!
//! A certificate or key that does not parse, or a key that is not its
//! certificate's, is an error naming the key (`cluster.etcd.peer.crt`),
//! never its content.
//!
//! `extraArgs` (Talos semantics): a flag Keel owns because other parts of
//! Keel depend on it (name, data dir, listen URLs, TLS files, the
//! initial-cluster state and list that rejoin computes) is refused, as
//! Talos refuses its deny list; any other flag Keel sets (advertise URLs,
//! token, ...) is replaced by the extra arg's value in place, and the
//! rest are appended, in name order.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::pki::{self, Material, Pair};
use crate::config::types::{Cidr, SubnetFilter};
use crate::config::{CertificateAndKey, Config};

pub const DEFAULT_PEER_PORT: u16 = 2380;
pub const DEFAULT_CLIENT_PORT: u16 = 2379;

/// Flags `extraArgs` may not set (see the module docs).
pub const DENIED: &[&str] = &[
    "name",
    "data-dir",
    "listen-peer-urls",
    "listen-client-urls",
    "initial-cluster",
    "initial-cluster-state",
    "auto-tls",
    "peer-auto-tls",
    "client-cert-auth",
    "cert-file",
    "key-file",
    "trusted-ca-file",
    "peer-client-cert-auth",
    "peer-cert-file",
    "peer-key-file",
    "peer-trusted-ca-file",
];

/// Flags `extraArgs` may not set because they defeat the VIP's safety,
/// with the reason the error gives.
pub const UNSAFE: &[(&str, &str)] = &[(
    "force-new-cluster",
    "every start of etcd would make this node a cluster of one, which then elects itself VIP holder next to the real cluster's",
)];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("cluster.etcd is not set, expected an etcd section on a control-plane node")]
    NoEtcd,
    #[error("cannot tell which etcd member this node is, expected cluster.etcd.memberName or machine.network.hostname")]
    NoMemberName,
    #[error("this node's member name `{name}` is not in cluster.etcd.initialCluster, expected one of: {members}")]
    NotInInitialCluster { name: String, members: String },
    #[error("cluster.etcd.initialCluster: peer URL {url} is both `{first}`'s and `{second}`'s, expected one URL per member")]
    DuplicatePeerUrl {
        url: String,
        first: String,
        second: String,
    },
    #[error("cluster.etcd.initialCluster.{name}: this node's peer URL {url} has a host name, expected an IP address (etcd listens on it)")]
    PeerHostNotIp { name: String, url: String },
    #[error("cluster.etcd.initialCluster.{name}: peer URL {url} is not on this node, expected one of its addresses: {addresses}")]
    PeerAddressNotOnNode {
        name: String,
        url: String,
        addresses: String,
    },
    #[error("cluster.etcd.advertisedSubnets ({filters}) does not select {addr}, this node's address in cluster.etcd.initialCluster")]
    NotAdvertised { addr: IpAddr, filters: String },
    #[error("no node address for etcd to advertise, expected an address{filtered}")]
    NoNodeAddress { filtered: String },
    #[error("cluster.etcd.initialCluster.{name}: peer URL {url} is {scheme}:// but cluster.etcd.peer is {peer}, expected {want}://")]
    PeerScheme {
        name: String,
        url: String,
        scheme: &'static str,
        peer: &'static str,
        want: &'static str,
    },
    #[error("cluster.etcd.{which} is set but cluster.etcd.ca is not, expected the CA that verifies the other side's certificates")]
    MissingCa { which: &'static str },
    #[error("cluster.etcd.ca has no key, so Keel cannot issue this node's etcd certificates from it; expected cluster.etcd.ca.key (as talosctl writes it), or cluster.etcd.peer and cluster.etcd.server")]
    CaWithoutKey,
    #[error("etcd would listen in plaintext on {addr} (no cluster.etcd.ca); expected cluster.etcd.ca, from which Keel issues this node's certificates as Talos does, or cluster.etcd.allowInsecure: true to run etcd without TLS on purpose")]
    Insecure { addr: IpAddr },
    #[error(transparent)]
    Ca(#[from] crate::x509::X509Error),
    #[error("{key} is not a usable certificate: {reason}")]
    BadCertificate { key: String, reason: String },
    #[error("{key} is not a usable private key: {reason}")]
    BadKey { key: String, reason: String },
    #[error("{key} does not belong to the certificate in {crt}")]
    KeyMismatch { key: String, crt: String },
    #[error(
        "cluster.etcd.extraArgs.{name}: Keel sets --{name} itself, expected it not in extraArgs"
    )]
    DeniedExtraArg { name: String },
    #[error("cluster.etcd.extraArgs.{name}: refused: {why}")]
    UnsafeExtraArg { name: String, why: String },
    #[error(
        "cluster.etcd.extraArgs: {name:?} is not a flag name, expected letters, digits and `-`"
    )]
    BadExtraArg { name: String },
}

/// What the node knows at run time, and where Keel keeps etcd's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// The node's addresses, in the order the network reports them.
    pub addresses: Vec<IpAddr>,
    pub data_dir: PathBuf,
    pub pki_dir: PathBuf,
    /// The client port on the node address (and on the peers, for rejoin).
    pub client_port: u16,
    /// The loopback client address (one member per host in production; the
    /// host tests run three on one host and move it).
    pub local_client: SocketAddr,
    /// With `clientOnNodeAddress`, listen for clients on the wildcard
    /// address (every address of the node, a VIP it holds included), not
    /// only the advertised one. On in production; the host tests, which
    /// run three members on one host, turn it off.
    pub clients_on_any: bool,
    /// The node's hostname of the moment (DHCP, `auto: stable`): the member
    /// name when the config names none.
    pub hostname: Option<String>,
    /// The node's addresses with their prefix lengths: which subnet each
    /// is on (the advertised address prefers the VIP's subnet).
    pub subnets: Vec<(IpAddr, u8)>,
    /// `/var` (the data dir) is on a disk, not a tmpfs fallback.
    pub var_persistent: bool,
}

impl Runtime {
    pub fn new(addresses: Vec<IpAddr>, data_dir: PathBuf, pki_dir: PathBuf) -> Runtime {
        Runtime {
            addresses,
            data_dir,
            pki_dir,
            client_port: DEFAULT_CLIENT_PORT,
            local_client: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), DEFAULT_CLIENT_PORT),
            clients_on_any: true,
            var_persistent: true,
            hostname: None,
            subnets: Vec::new(),
        }
    }
}

/// How the etcd cluster forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Formation {
    /// `initialCluster` lists the founding members, which form the cluster
    /// by themselves ([`super::rejoin`]); a list of one is a single-node
    /// control plane.
    Static,
    /// No member list, as in every Talos config: one explicit `bootstrap`
    /// starts the cluster, every other node joins it as a learner through
    /// one of `seeds` ([`super::join`]). Never a cluster of one by itself.
    Discovered { seeds: Vec<Seed> },
}

/// Where a joining node looks for a running member: a host (an address,
/// or a name resolved when asked) on the etcd client port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    pub host: String,
    pub port: u16,
    /// What the config calls it, for the console
    /// (`cluster.controlPlane.endpoint`, `VIP`).
    pub via: &'static str,
}

impl std::fmt::Display for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{} ({})", self.host, self.port, self.via)
        } else {
            write!(f, "{}:{} ({})", self.host, self.port, self.via)
        }
    }
}

/// A member as in `--initial-cluster`: `name=peer_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub peer_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

impl ClusterState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterState::New => "new",
            ClusterState::Existing => "existing",
        }
    }
}

/// How to start etcd this time (see [`super::rejoin`], [`super::join`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub state: ClusterState,
    pub initial_cluster: Vec<Member>,
    /// Joined as a learner: its member ID and the client endpoints of the
    /// members that can promote it (a learner serves no member API).
    pub learner: Option<(u64, Vec<String>)>,
}

/// TLS for Keel's own etcd client (health probe, rejoin): the CA, and the
/// identity it presents when etcd asks for a client certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientTls {
    pub ca: String,
    pub identity: Option<Pair>,
    /// Where Keel keeps the identity it issued itself: read again at every
    /// connect, so a renewed certificate is used without a restart.
    pub dir: Option<PathBuf>,
}

impl ClientTls {
    /// The identity to present now: the one in `dir` when readable (the
    /// latest renewal), else the one in memory.
    pub fn current_identity(&self) -> Option<Pair> {
        let from_dir = self.dir.as_ref().and_then(|d| {
            Some(Pair {
                crt: std::fs::read_to_string(d.join(pki::CLIENT_CRT)).ok()?,
                key: std::fs::read_to_string(d.join(pki::CLIENT_KEY)).ok()?,
            })
        });
        from_dir.or_else(|| self.identity.clone())
    }
}

/// The CA Keel issues this node's certificates from.
#[derive(Clone, PartialEq, Eq)]
pub struct IssueFrom {
    pub crt: String,
    pub key: String,
}

impl std::fmt::Debug for IssueFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IssueFrom { key: <redacted> }")
    }
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientTls {{ identity: {} }}", self.identity.is_some())
    }
}

/// Everything etcd's command line is made of, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    /// This member's peer URL (`--initial-advertise-peer-urls`).
    pub peer_url: String,
    pub listen_peer_urls: Vec<String>,
    pub listen_client_urls: Vec<String>,
    pub advertise_client_urls: Vec<String>,
    /// The founding members, `initialCluster` (or just this node).
    pub initial_cluster: Vec<Member>,
    pub formation: Formation,
    pub token: String,
    pub data_dir: PathBuf,
    pub pki_dir: PathBuf,
    /// What [`super::pki::write`] puts into `pki_dir` (filled in by
    /// [`Plan::issue_certificates`] when Keel issues it).
    pub tls: Option<Material>,
    /// The CA to issue this node's certificates from, when the config
    /// gives no `peer`/`server` of its own.
    pub issue: Option<IssueFrom>,
    /// etcd runs without TLS because `allowInsecure` says so.
    pub insecure: bool,
    /// The client endpoint on this node (loopback), for the health probe.
    pub local_endpoint: String,
    /// The other founding members' client endpoints (node address and
    /// client port), for rejoin: `(name, endpoint)`.
    pub peer_endpoints: Vec<(String, String)>,
    pub client_tls: Option<ClientTls>,
    /// `extraArgs`, names without dashes.
    pub extra_args: BTreeMap<String, String>,
    /// The data dir is on a disk (see [`super::rejoin::var_key`]).
    pub var_persistent: bool,
}

impl Plan {
    pub fn from_config(config: &Config, rt: &Runtime) -> Result<Plan, ArgsError> {
        let etcd = config.cluster.etcd.as_ref().ok_or(ArgsError::NoEtcd)?;
        let tls = material(etcd)?;
        let issue = issue_from(etcd)?;
        let peer_tls = etcd.peer.is_some() || issue.is_some();
        let client_scheme = if etcd.server.is_some() || issue.is_some() {
            "https"
        } else {
            "http"
        };
        let name = config.etcd_member_name().map(str::to_owned);

        let (name, peer_url, addr, peer_port, initial_cluster) = if etcd.initial_cluster.is_empty()
        {
            let name = name
                .or_else(|| rt.hostname.clone())
                .unwrap_or_else(|| "default".to_owned());
            let addr = advertised(config, etcd, rt).ok_or_else(|| ArgsError::NoNodeAddress {
                filtered: if etcd.advertised_subnets.is_empty() {
                    String::new()
                } else {
                    format!(" in {}", filters(&etcd.advertised_subnets))
                },
            })?;
            let scheme = if peer_tls { "https" } else { "http" };
            let url = format!("{scheme}://{}", SocketAddr::new(addr, DEFAULT_PEER_PORT));
            let members = vec![Member {
                name: name.clone(),
                peer_url: url.clone(),
            }];
            (name, url, addr, DEFAULT_PEER_PORT, members)
        } else {
            let name = name.ok_or(ArgsError::NoMemberName)?;
            let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
            let mut members = Vec::new();
            for (n, url) in &etcd.initial_cluster {
                if let Some(first) = seen.insert(url.as_str(), n.as_str()) {
                    return Err(ArgsError::DuplicatePeerUrl {
                        url: url.to_string(),
                        first: first.to_owned(),
                        second: n.to_string(),
                    });
                }
                if url.is_tls() != peer_tls {
                    let s = |tls| if tls { "https" } else { "http" };
                    return Err(ArgsError::PeerScheme {
                        name: n.to_string(),
                        url: url.to_string(),
                        scheme: s(url.is_tls()),
                        peer: if peer_tls { "set" } else { "not set" },
                        want: s(peer_tls),
                    });
                }
                members.push(Member {
                    name: n.to_string(),
                    peer_url: url.to_string(),
                });
            }
            let Some((_, url)) = etcd
                .initial_cluster
                .iter()
                .find(|(n, _)| n.as_str() == name)
            else {
                let members: Vec<&str> = etcd.initial_cluster.keys().map(|k| k.as_str()).collect();
                return Err(ArgsError::NotInInitialCluster {
                    name,
                    members: members.join(", "),
                });
            };
            let addr: IpAddr = url.host().parse().map_err(|_| ArgsError::PeerHostNotIp {
                name: name.clone(),
                url: url.to_string(),
            })?;
            if !rt.addresses.contains(&addr) {
                return Err(ArgsError::PeerAddressNotOnNode {
                    name,
                    url: url.to_string(),
                    addresses: list(&rt.addresses),
                });
            }
            if !selected(&etcd.advertised_subnets, addr) {
                return Err(ArgsError::NotAdvertised {
                    addr,
                    filters: filters(&etcd.advertised_subnets),
                });
            }
            (name, url.to_string(), addr, url.port(), members)
        };
        let insecure = tls.is_none() && issue.is_none();
        if insecure && !etcd.allow_insecure {
            return Err(ArgsError::Insecure { addr });
        }
        let peer_scheme = if peer_tls { "https" } else { "http" };

        // Listen on the advertised address plus whatever listenSubnets
        // selects (none unless set).
        let mut listen_addrs = vec![addr];
        if !etcd.listen_subnets.is_empty() {
            for a in &rt.addresses {
                if selected(&etcd.listen_subnets, *a) && !listen_addrs.contains(a) {
                    listen_addrs.push(*a);
                }
            }
        }
        let url =
            |scheme: &str, a: IpAddr, port: u16| format!("{scheme}://{}", SocketAddr::new(a, port));
        let listen_peer_urls = listen_addrs
            .iter()
            .map(|a| url(peer_scheme, *a, peer_port))
            .collect();
        let local_endpoint = format!("{client_scheme}://{}", rt.local_client);
        let (listen_client_urls, advertise_client_urls) = if !etcd.clients_on_node_address() {
            (vec![local_endpoint.clone()], vec![local_endpoint.clone()])
        } else if rt.clients_on_any {
            // The wildcard: every node address, and a VIP once this node
            // holds it (clients may reach the cluster through the VIP).
            // It covers loopback too, which must then not be listed again.
            let any: IpAddr = if addr.is_ipv6() {
                Ipv6Addr::UNSPECIFIED.into()
            } else {
                Ipv4Addr::UNSPECIFIED.into()
            };
            let mut listen = vec![url(client_scheme, any, rt.client_port)];
            if rt.local_client.port() != rt.client_port {
                listen.push(local_endpoint.clone());
            }
            (listen, vec![url(client_scheme, addr, rt.client_port)])
        } else {
            let mut listen = vec![local_endpoint.clone()];
            for a in &listen_addrs {
                listen.push(url(client_scheme, *a, rt.client_port));
            }
            (listen, vec![url(client_scheme, addr, rt.client_port)])
        };
        let peer_endpoints = etcd
            .initial_cluster
            .iter()
            .filter(|(n, _)| n.as_str() != name)
            .map(|(n, u)| {
                let host = if u.host().contains(':') {
                    format!("[{}]", u.host())
                } else {
                    u.host().to_owned()
                };
                (
                    n.to_string(),
                    format!("{client_scheme}://{host}:{}", rt.client_port),
                )
            })
            .collect();

        let formation = if etcd.initial_cluster.is_empty() {
            Formation::Discovered {
                seeds: seeds(config, rt.client_port),
            }
        } else {
            Formation::Static
        };

        let client_tls = tls.as_ref().map(|m| ClientTls {
            ca: m.ca.clone(),
            // The peer certificate carries clientAuth (etcd's peers dial
            // each other with it); the server one may not.
            identity: m.peer.clone().or_else(|| m.server.clone()),
            dir: None,
        });

        let mut extra_args = BTreeMap::new();
        for (k, v) in &etcd.extra_args {
            let flag = k.trim_start_matches('-');
            if flag.is_empty() || !flag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(ArgsError::BadExtraArg { name: k.clone() });
            }
            if let Some((_, why)) = UNSAFE.iter().find(|(f, _)| *f == flag) {
                return Err(ArgsError::UnsafeExtraArg {
                    name: flag.to_owned(),
                    why: (*why).to_owned(),
                });
            }
            if DENIED.contains(&flag) {
                return Err(ArgsError::DeniedExtraArg {
                    name: flag.to_owned(),
                });
            }
            extra_args.insert(flag.to_owned(), v.clone());
        }

        Ok(Plan {
            name,
            peer_url,
            listen_peer_urls,
            listen_client_urls,
            advertise_client_urls,
            initial_cluster,
            formation,
            token: etcd.initial_cluster_token.clone(),
            data_dir: rt.data_dir.clone(),
            pki_dir: rt.pki_dir.clone(),
            tls,
            issue,
            insecure,
            local_endpoint,
            peer_endpoints,
            client_tls,
            extra_args,
            var_persistent: rt.var_persistent,
        })
    }

    /// Issues this node's peer, server and client certificates from the
    /// CA ([`Plan::issue`]), for `hostname`, the node's `addresses` and the
    /// `vips` it may hold (a client may dial etcd through one), and takes
    /// them as the plan's TLS material. A no-op without a CA to issue from.
    pub fn issue_certificates(
        &mut self,
        hostname: &str,
        addresses: &[IpAddr],
        vips: &[IpAddr],
    ) -> Result<(), ArgsError> {
        let Some(from) = &self.issue else {
            return Ok(());
        };
        let ca = crate::x509::Ca::from_pem(
            &from.crt,
            &from.key,
            "cluster.etcd.ca.crt",
            "cluster.etcd.ca.key",
        )?;
        let node: Vec<IpAddr> = addresses
            .iter()
            .copied()
            .filter(|a| !a.is_loopback())
            .collect();
        let loopback: [IpAddr; 2] = [Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
        let leaf = |dns: Vec<String>, ips: Vec<IpAddr>, server: bool| crate::x509::Leaf {
            common_name: if server {
                hostname.to_owned()
            } else {
                "keel".to_owned()
            },
            dns,
            ips,
            server,
            client: true,
            ..Default::default()
        };
        let mut server_ips = node.clone();
        server_ips.extend(vips.iter().copied().filter(|v| !node.contains(v)));
        server_ips.extend(loopback);
        let server = ca.issue(&leaf(
            vec![hostname.to_owned(), "localhost".to_owned()],
            server_ips,
            true,
        ))?;
        let peer = ca.issue(&leaf(vec![hostname.to_owned()], node, true))?;
        let client = ca.issue(&leaf(Vec::new(), Vec::new(), false))?;
        self.client_tls = Some(ClientTls {
            ca: ca.crt_pem.clone(),
            identity: Some(client.clone()),
            dir: Some(self.pki_dir.clone()),
        });
        self.tls = Some(Material {
            ca: ca.crt_pem.clone(),
            peer: Some(peer),
            server: Some(server),
            client: Some(client),
        });
        Ok(())
    }

    /// The static start: `new`, with the founding members.
    pub fn static_start(&self) -> Start {
        Start {
            state: ClusterState::New,
            initial_cluster: self.initial_cluster.clone(),
            learner: None,
        }
    }

    /// `http` or `https`, as the client URLs are.
    pub fn client_scheme(&self) -> &'static str {
        if self.local_endpoint.starts_with("https://") {
            "https"
        } else {
            "http"
        }
    }

    /// The extra args that replace a flag Keel sets (for a warning).
    pub fn overridden(&self) -> Vec<&str> {
        let start = self.static_start();
        let keel = self.keel_flags(&start);
        self.extra_args
            .keys()
            .filter(|k| keel.iter().any(|(f, _)| f == *k))
            .map(String::as_str)
            .collect()
    }

    fn keel_flags(&self, start: &Start) -> Vec<(String, String)> {
        let join = |v: &[String]| v.join(",");
        let cluster: Vec<String> = start
            .initial_cluster
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect();
        let mut flags: Vec<(&str, String)> = vec![
            ("name", self.name.clone()),
            ("data-dir", self.data_dir.display().to_string()),
            ("listen-peer-urls", join(&self.listen_peer_urls)),
            ("initial-advertise-peer-urls", self.peer_url.clone()),
            ("listen-client-urls", join(&self.listen_client_urls)),
            ("advertise-client-urls", join(&self.advertise_client_urls)),
            ("initial-cluster", join(&cluster)),
            ("initial-cluster-state", start.state.as_str().to_owned()),
            ("initial-cluster-token", self.token.clone()),
            // Raft pre-vote (etcd 3.4 defaults it off, 3.5 on): a member
            // that was partitioned away comes back without forcing a
            // leader election, which would stall lease keepalives for
            // seconds and move the VIP for nothing (seen in the VIP e2e).
            ("pre-vote", "true".to_owned()),
        ];
        if let Some(tls) = &self.tls {
            let file = |name: &str| path_str(&self.pki_dir.join(name));
            if tls.server.is_some() {
                flags.push(("client-cert-auth", "true".to_owned()));
                flags.push(("cert-file", file(pki::SERVER_CRT)));
                flags.push(("key-file", file(pki::SERVER_KEY)));
                flags.push(("trusted-ca-file", file(pki::CA_CRT)));
            }
            if tls.peer.is_some() {
                flags.push(("peer-client-cert-auth", "true".to_owned()));
                flags.push(("peer-cert-file", file(pki::PEER_CRT)));
                flags.push(("peer-key-file", file(pki::PEER_KEY)));
                flags.push(("peer-trusted-ca-file", file(pki::CA_CRT)));
            }
        }
        flags.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// etcd's arguments (without the program name) for one start.
    pub fn args(&self, start: &Start) -> Vec<String> {
        let mut flags = self.keel_flags(start);
        for (k, v) in &self.extra_args {
            match flags.iter_mut().find(|(f, _)| f == k) {
                Some(slot) => slot.1 = v.clone(),
                None => flags.push((k.clone(), v.clone())),
            }
        }
        flags
            .into_iter()
            .map(|(k, v)| format!("--{k}={v}"))
            .collect()
    }
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

fn list(addrs: &[IpAddr]) -> String {
    if addrs.is_empty() {
        return "(none)".to_owned();
    }
    let v: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    v.join(", ")
}

fn filters(f: &[SubnetFilter]) -> String {
    let v: Vec<String> = f.iter().map(|f| f.to_string()).collect();
    v.join(", ")
}

fn contains(c: &Cidr, ip: IpAddr) -> bool {
    match (c.addr(), ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let bits = u32::from(c.prefix().min(32));
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let bits = u32::from(c.prefix().min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

/// The address etcd advertises without a member list: of the node's
/// addresses `advertisedSubnets` selects, never loopback or link-local
/// (a peer URL on `fe80::` would need a zone, and 169.254/16 is not
/// routed), preferably one on the subnet of a VIP or of the control-plane
/// endpoint (where the cluster's members meet: a second NIC, such as a
/// management or a NAT link, must not be advertised), else the first.
fn advertised(config: &Config, etcd: &crate::config::Etcd, rt: &Runtime) -> Option<IpAddr> {
    // Loopback and link-local addresses reach no other node, so they are
    // skipped unless `advertisedSubnets` names them explicitly (several
    // members on one host's loopback, as the host tests run them).
    let named = |a: &IpAddr| {
        etcd.advertised_subnets
            .iter()
            .any(|s| !s.exclude && contains(&s.cidr, *a))
    };
    let usable = |a: &IpAddr| {
        let link_local = match a {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        };
        !a.is_unspecified() && !a.is_multicast() && (named(a) || !(a.is_loopback() || link_local))
    };
    let candidates: Vec<IpAddr> = rt
        .addresses
        .iter()
        .copied()
        .filter(|a| usable(a) && selected(&etcd.advertised_subnets, *a))
        .collect();
    let anchors: Vec<IpAddr> = seeds(config, DEFAULT_CLIENT_PORT)
        .iter()
        .filter_map(|s| s.host.parse().ok())
        .collect();
    let on_anchor = |a: &IpAddr| {
        rt.subnets.iter().any(|(net, prefix)| {
            net == a
                && Cidr::try_from(format!("{net}/{prefix}"))
                    .is_ok_and(|c| anchors.iter().any(|v| contains(&c, *v)))
        })
    };
    candidates
        .iter()
        .copied()
        .find(on_anchor)
        .or_else(|| candidates.first().copied())
}

/// Where a node without a member list looks for its cluster: the host of
/// `cluster.controlPlane.endpoint`, then each VIP, on the client `port`.
pub fn seeds(config: &Config, port: u16) -> Vec<Seed> {
    let mut out: Vec<Seed> = Vec::new();
    let endpoint = config
        .cluster
        .control_plane
        .as_ref()
        .and_then(|c| c.endpoint.as_ref());
    if let Some(e) = endpoint {
        out.push(Seed {
            host: e.host().to_owned(),
            port,
            via: "cluster.controlPlane.endpoint",
        });
    }
    for v in crate::net::spec::from_config(config).vips {
        let host = v.ip.to_string();
        if !out.iter().any(|s| s.host == host) {
            out.push(Seed {
                host,
                port,
                via: "VIP",
            });
        }
    }
    out
}

/// Talos's subnet filters: selected when some plain filter contains the
/// address (or there is none) and no `!` filter does.
fn selected(f: &[SubnetFilter], ip: IpAddr) -> bool {
    let mut includes = f.iter().filter(|s| !s.exclude).peekable();
    let included = includes.peek().is_none() || includes.any(|s| contains(&s.cidr, ip));
    included && !f.iter().any(|s| s.exclude && contains(&s.cidr, ip))
}

/// The CA to issue from: a CA with its key and no certificates of the
/// config's own.
fn issue_from(etcd: &crate::config::Etcd) -> Result<Option<IssueFrom>, ArgsError> {
    if etcd.peer.is_some() || etcd.server.is_some() {
        return Ok(None);
    }
    let Some(ca) = &etcd.ca else { return Ok(None) };
    let key = ca.key.as_ref().ok_or(ArgsError::CaWithoutKey)?;
    // Checked here so a bad CA is reported before etcd waits for anything.
    crate::x509::Ca::from_pem(
        ca.crt.pem(),
        key.pem(),
        "cluster.etcd.ca.crt",
        "cluster.etcd.ca.key",
    )?;
    Ok(Some(IssueFrom {
        crt: ca.crt.pem().to_owned(),
        key: key.pem().to_owned(),
    }))
}

/// Checks and collects the TLS material the config gives itself.
fn material(etcd: &crate::config::Etcd) -> Result<Option<Material>, ArgsError> {
    if etcd.peer.is_none() && etcd.server.is_none() {
        return Ok(None);
    }
    let Some(ca) = &etcd.ca else {
        let which = if etcd.peer.is_some() {
            "peer"
        } else {
            "server"
        };
        return Err(ArgsError::MissingCa { which });
    };
    check_ca(ca.crt.pem(), "cluster.etcd.ca.crt")?;
    let pair = |p: &Option<CertificateAndKey>, which: &str| -> Result<Option<Pair>, ArgsError> {
        let Some(p) = p else { return Ok(None) };
        check_pair(
            p.crt.pem(),
            p.key.pem(),
            &format!("cluster.etcd.{which}.crt"),
            &format!("cluster.etcd.{which}.key"),
        )?;
        Ok(Some(Pair {
            crt: p.crt.pem().to_owned(),
            key: p.key.pem().to_owned(),
        }))
    };
    Ok(Some(Material {
        ca: ca.crt.pem().to_owned(),
        peer: pair(&etcd.peer, "peer")?,
        server: pair(&etcd.server, "server")?,
        client: None,
    }))
}

fn cert_der(pem: &str, key: &str) -> Result<CertificateDer<'static>, ArgsError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| ArgsError::BadCertificate {
        key: key.to_owned(),
        reason: format!("no PEM CERTIFICATE block ({e})"),
    })
}

/// The CA must parse as an X.509 trust anchor.
fn check_ca(pem: &str, key: &str) -> Result<(), ArgsError> {
    let der = cert_der(pem, key)?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).map_err(|e| ArgsError::BadCertificate {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// The certificate must parse, the key must be one ring can sign with, and
/// the key's public half must be the certificate's.
pub(crate) fn check_pair(
    crt_pem: &str,
    key_pem: &str,
    crt: &str,
    key: &str,
) -> Result<(), ArgsError> {
    let der = cert_der(crt_pem, crt)?;
    let bad_cert = |e: rustls::Error| ArgsError::BadCertificate {
        key: crt.to_owned(),
        reason: e.to_string(),
    };
    // The error text of a failed key parse never echoes key bytes.
    let key_der =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| ArgsError::BadKey {
            key: key.to_owned(),
            reason: "no PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block".to_owned(),
        })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der).map_err(|e| {
        ArgsError::BadKey {
            key: key.to_owned(),
            reason: e.to_string(),
        }
    })?;
    let certified = rustls::sign::CertifiedKey::new(vec![der], signing);
    match certified.keys_match() {
        Ok(()) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(ArgsError::KeyMismatch {
                key: key.to_owned(),
                crt: crt.to_owned(),
            })
        }
        // ring cannot tell for this key type: etcd will.
        Err(rustls::Error::InconsistentKeys(_)) => Ok(()),
        Err(e) => Err(bad_cert(e)),
    }
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
