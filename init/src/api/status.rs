//! The node API's `status`: one JSON document of what PID 1 knows, read
//! fresh at each request (links and routes from the kernel, etcd's member
//! list from the local member). Field names are the wire format: the
//! client (`keel status`) and scripts read them.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::etcd::health::Health;
use crate::node::{EtcdSlot, NodeState};
use crate::vip::VipState;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub node: Node,
    pub boot: Vec<Phase>,
    pub config: Option<Config>,
    pub links: Vec<Link>,
    pub routes: Vec<String>,
    pub etcd: Etcd,
    pub vips: Vec<Vip>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Node {
    pub hostname: String,
    pub version: String,
    pub uptime_s: f64,
    /// PID 1's resident set size.
    pub rss_kb: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Phase {
    pub name: String,
    pub ms: u64,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Config {
    pub source: String,
    pub summary: String,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Link {
    pub name: String,
    pub altnames: Vec<String>,
    pub kind: Option<String>,
    pub mac: Option<String>,
    pub up: bool,
    pub carrier: bool,
    pub mtu: Option<u32>,
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Etcd {
    /// `worker`, `pending`, `waiting` (for a bootstrap or a member to
    /// join), `starting`, `learner`, `healthy`, `unhealthy`, `restarting`,
    /// `stopped`.
    pub state: String,
    /// Why it is pending, or where it waits.
    pub detail: Option<String>,
    pub member: Option<String>,
    /// Hex, as etcdctl prints them.
    pub id: Option<String>,
    pub cluster_id: Option<String>,
    pub leader: Option<String>,
    pub is_leader: bool,
    pub learner: bool,
    pub raft_term: Option<u64>,
    pub version: Option<String>,
    pub members: Vec<Member>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub learner: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Vip {
    pub ip: IpAddr,
    /// `holder`, `follower` or `waiting` (for a healthy etcd voter).
    pub role: String,
    /// This node's campaign value (`<hostname>/<member>`).
    pub identity: String,
    /// The holder's campaign value, as this node last saw it.
    pub holder: Option<String>,
    /// Seconds since this node first saw that holder, and the wall time.
    pub holder_for_s: Option<f64>,
    pub holder_since_unix: Option<f64>,
    /// The last time the holder changed from one node to another.
    pub last_failover_ago_s: Option<f64>,
    pub last_failover_unix: Option<f64>,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn ago(t: SystemTime) -> f64 {
    SystemTime::now()
        .duration_since(t)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Everything, now.
pub async fn gather(state: &NodeState) -> Status {
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let (links, routes) = links_and_routes().await;
    Status {
        node: Node {
            hostname,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_s: state.uptime().as_secs_f64(),
            rss_kb: crate::boot::rss_kb(Path::new("/proc")),
        },
        boot: state
            .phases()
            .into_iter()
            .map(|p| Phase {
                name: p.name.to_owned(),
                ms: u64::try_from(p.ms).unwrap_or(u64::MAX),
                detail: p.detail,
            })
            .collect(),
        config: state.config().map(|c| Config {
            source: c.origin,
            summary: c.summary,
            warnings: c.warnings,
        }),
        links,
        routes,
        etcd: etcd(state).await,
        vips: vips(state),
    }
}

async fn links_and_routes() -> (Vec<Link>, Vec<String>) {
    let Ok(rtnl) = crate::net::rtnl::Rtnl::connect() else {
        return (Vec::new(), Vec::new());
    };
    let mut out = Vec::new();
    for l in rtnl.links().await.unwrap_or_default() {
        let addresses = rtnl
            .link_addresses(&l)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(a, p)| format!("{a}/{p}"))
            .collect();
        out.push(Link {
            mac: l.mac.map(|m| {
                m.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            }),
            name: l.name,
            altnames: l.alt_names,
            kind: l.kind,
            up: l.up,
            carrier: l.carrier,
            mtu: l.mtu,
            addresses,
        });
    }
    let routes = crate::net::routes::read(Path::new("/proc"))
        .iter()
        .map(ToString::to_string)
        .collect();
    (out, routes)
}

const MEMBER_LIST_TIMEOUT: Duration = Duration::from_secs(2);

async fn etcd(state: &NodeState) -> Etcd {
    match state.etcd() {
        EtcdSlot::Unknown => Etcd {
            state: "pending".to_owned(),
            detail: Some("no machine config yet".to_owned()),
            ..Etcd::default()
        },
        EtcdSlot::Worker => Etcd {
            state: "worker".to_owned(),
            ..Etcd::default()
        },
        EtcdSlot::Pending(why) => Etcd {
            state: "pending".to_owned(),
            detail: Some(why),
            ..Etcd::default()
        },
        EtcdSlot::Running { sup, member } => {
            let health = *sup.health().borrow();
            let waiting = sup.waiting();
            let view = sup.view();
            let mut e = Etcd {
                state: if waiting.is_some() {
                    "waiting".to_owned()
                } else {
                    health.to_string()
                },
                detail: waiting.map(|w| {
                    format!("not bootstrapped; waiting for a bootstrap request or a member to join through {w}")
                }),
                member: Some(member),
                last_error: sup.last_error(),
                ..Etcd::default()
            };
            if let Some(v) = &view {
                e.id = Some(format!("{:x}", v.id));
                e.cluster_id = Some(format!("{:x}", v.cluster_id));
                e.leader = (v.leader != 0).then(|| format!("{:x}", v.leader));
                e.is_leader = v.leader != 0 && v.leader == v.id;
                e.learner = v.is_learner;
                e.raft_term = Some(v.raft_term);
                e.version = Some(v.version.clone());
            }
            // A learner serves no member list (etcd refuses it).
            if health == Health::Healthy {
                e.members = members(&sup).await;
            }
            e
        }
    }
}

async fn members(sup: &crate::etcd::Supervisor) -> Vec<Member> {
    // On the health probe's connection when there is one: a status view
    // polls every second, and a TLS handshake each time took CPU from a
    // one-CPU node's etcd and VIP election while its cluster formed.
    let shared = sup.answering().borrow().clone();
    let mut c = match shared {
        Some(c) => c,
        None => {
            let plan = sup.plan();
            let Ok(c) = crate::etcd::health::connect(
                &plan.local_endpoint,
                plan.client_tls.as_ref(),
                MEMBER_LIST_TIMEOUT,
            )
            .await
            else {
                return Vec::new();
            };
            c
        }
    };
    // The probe's connection has no per-request deadline of its own.
    let Ok(Ok(list)) = tokio::time::timeout(MEMBER_LIST_TIMEOUT, c.member_list()).await else {
        return Vec::new();
    };
    list.members()
        .iter()
        .map(|m| Member {
            id: format!("{:x}", m.id()),
            name: m.name().to_owned(),
            peer_urls: m.peer_urls().to_vec(),
            client_urls: m.client_urls().to_vec(),
            learner: m.is_learner(),
        })
        .collect()
}

fn vips(state: &NodeState) -> Vec<Vip> {
    state
        .vips()
        .into_iter()
        .map(|v| {
            let s = v.state.borrow().clone();
            let h = crate::lock(&v.history).clone();
            Vip {
                ip: v.ip,
                role: match s {
                    VipState::Holder { .. } => "holder",
                    VipState::Follower { .. } => "follower",
                    VipState::WaitingForEtcd => "waiting",
                }
                .to_owned(),
                identity: v.identity,
                holder: h.holder,
                holder_for_s: h.holder_since.map(ago),
                holder_since_unix: h.holder_since.map(unix),
                last_failover_ago_s: h.last_failover.map(ago),
                last_failover_unix: h.last_failover.map(unix),
            }
        })
        .collect()
}
