//! Forming the etcd cluster without a member list, the Talos way
//! ([`super::args::Formation::Discovered`]): no node ever starts a cluster
//! by itself. One explicit, authenticated `bootstrap` request (the node
//! API) makes exactly one node start a new cluster of one; every other
//! control-plane node finds a running member and joins as a learner.
//!
//! Before every start the supervisor calls [`prepare`], which loops:
//! 1. ask every seed (the host of `cluster.controlPlane.endpoint`, the
//!    VIPs, the peers this node knew last time it was a member) for the
//!    member list, in parallel; the node's own addresses are skipped;
//! 2. [`decide`] on the data dir and the first answer:
//!    - data dir with a WAL: etcd restarts from it (it knows its cluster);
//!      with an answer, the WAL's cluster ID must be the answer's, and the
//!      cluster must still list this member;
//!    - empty data dir, a member answered: `MemberAddAsLearner` with this
//!      node's peer URL and `--initial-cluster-state existing` (etcd's
//!      runtime reconfiguration guide, "Add a new member as learner"); a
//!      stale entry with this node's peer URL (it lost its data) is
//!      removed first; an entry it added earlier and never started is
//!      reused;
//!    - nobody answered: wait, saying so on the console, until a member
//!      answers or a bootstrap request arrives.
//! 3. once etcd runs as a learner, [`promote`] asks the other members to
//!    promote it every second; etcd refuses until the learner's log has
//!    caught up with the leader's ("can only promote a learner member
//!    which is in sync with leader").
//!
//! Where this differs from Talos on purpose:
//! - Talos removes an existing member with this node's *name*; Keel
//!   removes only an entry with this node's *peer URL* (only this node can
//!   hold that address) and refuses a name taken at another URL
//!   ([`JoinError::NameTaken`]): two nodes with one hostname must not
//!   remove each other;
//! - Talos finds members through Kubernetes and its discovery service;
//!   Keel runs neither, and asks the control-plane endpoint, the VIPs and
//!   the peers it knew.
//!
//! Every odd case ends in a defined, logged state, never a second cluster:
//! two nodes joining at once (etcd 3.5 allows one learner at a time: the
//! second add fails "too many learner members in cluster" and is retried
//! with backoff), a member unreachable meanwhile (adding a learner does
//! not change the quorum; a promotion that would lose it is refused "not
//! enough started members" and retried), a learner that never catches up
//! (it stays a learner, logged every minute, and never campaigns for a
//! VIP: [`super::health::Health::Learner`]).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::args::{ClusterState, Plan, Seed, Start};
use super::rejoin::{self, Answer, Seen};
use super::{health, wal};

/// How long to wait between two rounds of asking the seeds: a node that
/// waits notices a bootstrapped cluster (the VIP answering) within this.
pub const RETRY: Duration = Duration::from_secs(1);
/// How often a learner asks to be promoted (etcd refuses until it has
/// caught up; a refusal costs one request).
pub const PROMOTE_EVERY: Duration = Duration::from_secs(1);
/// How often the console repeats that a node is still waiting (or still a
/// learner).
const REMIND_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("cannot remove this node's stale etcd member {id:x} ({url}) through {peer}: {source}")]
    Remove {
        id: u64,
        url: String,
        peer: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("cannot add this node as an etcd learner ({url}) through {peer}: {source}")]
    Add {
        url: String,
        peer: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("adding this node as a learner through {peer} returned no member for it")]
    AddNoMember { peer: String },
    #[error("{why}")]
    DiskMissing { why: String },
    #[error("the etcd data dir {data_dir} belongs to cluster {local:x}, but {peer} is a member of cluster {theirs:x}; Keel never wipes a data dir that holds data: remove it by hand for this node to join")]
    ClusterIdMismatch {
        data_dir: PathBuf,
        local: u64,
        theirs: u64,
        peer: String,
    },
    #[error("the etcd data dir {data_dir} holds data, but the cluster ({peer}) no longer lists this node's peer URL {url}: it was removed; Keel never wipes a data dir that holds data: remove it by hand for this node to join again")]
    Removed {
        data_dir: PathBuf,
        url: String,
        peer: String,
    },
    #[error("etcd member name `{name}` is taken by member {id:x} at {other} ({peer}), and this node's peer URL is {url}: two nodes with one name? Keel does not remove another node's member; give this node another hostname (or cluster.etcd.memberName), or remove the old member by hand if it was this node's")]
    NameTaken {
        name: String,
        id: u64,
        other: String,
        url: String,
        peer: String,
    },
}

/// A `bootstrap` request from the node API; the reply is what the caller
/// is told (accepted: what happens; refused: why).
#[derive(Debug)]
pub struct BootstrapRequest {
    pub reply: oneshot::Sender<Result<String, String>>,
}

/// What to do, from the data dir and the first member list that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The data dir holds a WAL: etcd restarts from it.
    Restart,
    /// A member answered and does not list this node: add it as a learner.
    AddLearner,
    /// Listed, unstarted, under this node's peer URL (an add of an earlier
    /// attempt): start `existing` with the list.
    StartListed { id: u64, learner: bool },
    /// Listed as started: its data was lost. Remove the stale entry, then
    /// add this node as a learner.
    Replace { stale: Seen },
    /// The data dir holds data, but the cluster no longer lists this node.
    Removed,
    /// Another member has this node's name, at another peer URL.
    NameTaken { other: Seen },
    /// Nobody answered and no bootstrap was asked: wait.
    Wait,
    /// Nobody answered, the data dir is empty, and a bootstrap was asked:
    /// start a new cluster of one.
    Bootstrap,
}

/// The join decision table (see the module docs): `name` and `peer_url`
/// are this node's, `members` the first answer's list, if any.
pub fn decide(
    name: &str,
    peer_url: &str,
    has_data: bool,
    members: Option<&[Seen]>,
    bootstrap_asked: bool,
) -> Decision {
    let mine = members.and_then(|l| l.iter().find(|m| m.peer_urls.iter().any(|u| u == peer_url)));
    match (has_data, members, mine) {
        (true, None, _) => Decision::Restart,
        (true, Some(_), Some(_)) => Decision::Restart,
        (true, Some(_), None) => Decision::Removed,
        (false, None, _) if bootstrap_asked => Decision::Bootstrap,
        (false, None, _) => Decision::Wait,
        (false, Some(_), Some(m)) if !m.started() => Decision::StartListed {
            id: m.id,
            learner: m.is_learner,
        },
        (false, Some(_), Some(m)) => Decision::Replace { stale: m.clone() },
        (false, Some(list), None) => match list.iter().find(|m| m.name == name) {
            Some(other) => Decision::NameTaken {
                other: other.clone(),
            },
            None => Decision::AddLearner,
        },
    }
}

/// The known-peers file: the client URLs of the cluster's members, written
/// once this node is a voter, read as seeds next time it joins.
pub fn peers_file(plan: &Plan) -> PathBuf {
    plan.pki_dir.with_file_name("etcd-peers")
}

/// Reads the known peers (one client URL per line); missing is empty.
pub fn read_peers(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| {
            s.lines()
                .map(str::trim)
                .filter(|l| l.starts_with("http://") || l.starts_with("https://"))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Writes the known peers (atomically: a half-written list must not be
/// read at the next boot).
pub fn write_peers(path: &Path, urls: &[String]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, urls.join("\n") + "\n")?;
    std::fs::rename(&tmp, path)
}

/// The node's own addresses, as far as the plan names them (its peer and
/// listen URLs): seeds there are skipped.
fn own_addresses(plan: &Plan) -> BTreeSet<IpAddr> {
    std::iter::once(&plan.peer_url)
        .chain(&plan.listen_peer_urls)
        .filter_map(|u| host_of(u)?.parse().ok())
        .collect()
}

/// The host of `scheme://host:port`, without brackets.
fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h);
    }
    Some(authority.rsplit_once(':').map_or(authority, |(h, _)| h))
}

/// `scheme://ip:port` with brackets for IPv6.
fn url(scheme: &str, ip: IpAddr, port: u16) -> String {
    format!("{scheme}://{}", std::net::SocketAddr::new(ip, port))
}

/// What the seeds and known peers resolve to: `(label, endpoint)` pairs,
/// without the node's own addresses and duplicates. A name that does not
/// resolve is logged at debug level and skipped this round.
pub async fn targets(plan: &Plan, seeds: &[Seed], known: &[String]) -> Vec<(String, String)> {
    let own = own_addresses(plan);
    let scheme = plan.client_scheme();
    let mut out: Vec<(String, String)> = Vec::new();
    let push = |label: String, endpoint: String, out: &mut Vec<(String, String)>| {
        let skip = host_of(&endpoint)
            .and_then(|h| h.parse::<IpAddr>().ok())
            .is_some_and(|ip| own.contains(&ip));
        if !skip && !out.iter().any(|(_, e)| *e == endpoint) {
            out.push((label, endpoint));
        }
    };
    for seed in seeds {
        let ips: Vec<IpAddr> = match seed.host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => match tokio::net::lookup_host((seed.host.as_str(), seed.port)).await {
                Ok(addrs) => addrs.map(|a| a.ip()).collect(),
                Err(e) => {
                    log::debug!("etcd: cannot resolve {}: {e}", seed.host);
                    Vec::new()
                }
            },
        };
        for ip in ips {
            push(seed.via.to_owned(), url(scheme, ip, seed.port), &mut out);
        }
    }
    for k in known {
        push("known peer".to_owned(), k.clone(), &mut out);
    }
    out
}

/// Where the console says a waiting node looks.
pub fn describe_seeds(seeds: &[Seed], known: &[String]) -> String {
    let mut parts: Vec<String> = seeds.iter().map(Seed::to_string).collect();
    parts.extend(known.iter().map(|k| format!("{k} (known peer)")));
    if parts.is_empty() {
        "nothing (no cluster.controlPlane.endpoint, no VIP, no known peer: set cluster.controlPlane.endpoint)".to_owned()
    } else {
        parts.join(", ")
    }
}

/// How [`prepare`] reports that it waits, and receives bootstrap requests.
pub struct Waiting<'a> {
    pub requests: &'a mut mpsc::Receiver<BootstrapRequest>,
    /// Called with `Some(where)` when it starts waiting, `None` when it
    /// stops.
    pub report: &'a (dyn Fn(Option<String>) + Sync),
}

/// How to start etcd now (see the module docs). Loops until it can say;
/// an error is retried by the supervisor with backoff.
pub async fn prepare(plan: &Plan, seeds: &[Seed], w: Waiting<'_>) -> Result<Start, JoinError> {
    let mut asked: Option<BootstrapRequest> = None;
    let mut reminded: Option<Instant> = None;
    let mut learner_busy = false;
    loop {
        let known = read_peers(&peers_file(plan));
        let has_data = rejoin::has_data(&plan.data_dir);
        let targets = targets(plan, seeds, &known).await;
        let answer = rejoin::ask(&targets, plan, rejoin::PEER_TIMEOUT)
            .await
            .into_iter()
            .next();
        let members = answer.as_ref().map(|a| a.members.as_slice());
        let decision = decide(
            &plan.name,
            &plan.peer_url,
            has_data,
            members,
            asked.is_some(),
        );
        if decision != Decision::Wait {
            (w.report)(None);
        }
        // A bootstrap asked while this round found a cluster or data.
        if let Some(req) = asked.take() {
            if decision != Decision::Bootstrap {
                let why = match (&answer, has_data) {
                    (_, true) => format!(
                        "etcd data directory is not empty ({}): this node was a member before",
                        plan.data_dir.display()
                    ),
                    (Some(a), _) => format!(
                        "an etcd cluster already exists: {} answered with {} member(s); this node joins it",
                        a.peer,
                        a.members.len()
                    ),
                    (None, _) => "this node is not waiting for a bootstrap".to_owned(),
                };
                let _ = req.reply.send(Err(why));
            } else {
                let what = format!(
                    "bootstrapping: {} starts a new etcd cluster of one member ({}); the other control-plane nodes join it as learners",
                    plan.name, plan.peer_url
                );
                log::info!("etcd: {what}");
                let _ = req.reply.send(Ok(what));
            }
        }
        match decision {
            Decision::Restart => {
                if let Some(a) = &answer {
                    check_cluster_id(plan, a)?;
                }
                let learner = answer.as_ref().and_then(|a| {
                    let me = a
                        .members
                        .iter()
                        .find(|m| m.peer_urls.contains(&plan.peer_url))?;
                    me.is_learner.then(|| (me.id, voters(&a.members, me.id)))
                });
                return Ok(Start {
                    state: ClusterState::Existing,
                    initial_cluster: plan.initial_cluster.clone(),
                    learner,
                });
            }
            Decision::Bootstrap => return Ok(plan.static_start()),
            Decision::Wait => {
                let now = Instant::now();
                if reminded.is_none_or(|t| now - t >= REMIND_EVERY) {
                    let through = describe_seeds(seeds, &known);
                    if reminded.is_none() {
                        log::info!("etcd: not bootstrapped; waiting for a bootstrap request or a member to join through {through}");
                    } else {
                        log::info!("etcd: still not bootstrapped; waiting for a bootstrap request (keel bootstrap) or a member to join through {through}");
                    }
                    (w.report)(Some(through));
                    reminded = Some(now);
                }
                tokio::select! {
                    r = w.requests.recv() => asked = r,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
            Decision::Removed => {
                return Err(JoinError::Removed {
                    data_dir: plan.data_dir.clone(),
                    url: plan.peer_url.clone(),
                    peer: answer.map(|a| a.peer).unwrap_or_default(),
                })
            }
            Decision::NameTaken { other } => {
                return Err(JoinError::NameTaken {
                    name: plan.name.clone(),
                    id: other.id,
                    other: other.peer_urls.join(","),
                    url: plan.peer_url.clone(),
                    peer: answer.map(|a| a.peer).unwrap_or_default(),
                })
            }
            Decision::StartListed { id, learner } => {
                let Some(a) = answer else { continue };
                log::info!(
                    "etcd: {} lists this node as member {id:x}, added but never started; joining the cluster of {}",
                    a.peer,
                    a.members.len()
                );
                return Ok(Start {
                    state: ClusterState::Existing,
                    initial_cluster: rejoin::initial_cluster(&a.members, id, &plan.name),
                    learner: learner.then(|| (id, voters(&a.members, id))),
                });
            }
            Decision::AddLearner | Decision::Replace { .. } => {
                let Some(a) = answer else { continue };
                if let Decision::Replace { stale } = &decision {
                    let mut client = a.client.clone();
                    rejoin::may_replace(plan, &mut client)
                        .await
                        .map_err(|why| JoinError::DiskMissing { why })?;
                    remove_stale(plan, &a, stale).await?;
                }
                match add_learner(plan, a).await {
                    // etcd 3.5 takes one learner at a time ("too many
                    // learner members in cluster"), and refuses a change
                    // right after one ("unhealthy cluster": a member
                    // connected for less than its strict reconfiguration
                    // check wants): another node is joining. Ask again
                    // each round (not with the supervisor's growing
                    // backoff): that settles within seconds.
                    Err(JoinError::Add { source, .. }) if busy(&source) => {
                        if !learner_busy {
                            log::info!(
                                "etcd: another node is joining ({source}); trying again every {} s",
                                RETRY.as_secs()
                            );
                            learner_busy = true;
                        }
                        tokio::time::sleep(RETRY).await;
                    }
                    other => return other,
                }
            }
        }
    }
}

/// Whether a refused member add only means that another node is joining.
fn busy(e: &etcd_client::Error) -> bool {
    let text = e.to_string();
    text.contains("too many learner members") || text.contains("unhealthy cluster")
}

/// The client URLs of every started member but `me`: who can promote it.
fn voters(members: &[Seen], me: u64) -> Vec<String> {
    members
        .iter()
        .filter(|m| m.id != me && !m.is_learner)
        .flat_map(|m| m.client_urls.iter().cloned())
        .collect()
}

async fn remove_stale(plan: &Plan, a: &Answer, stale: &Seen) -> Result<(), JoinError> {
    log::warn!(
        "etcd: the data dir {} is empty but {} lists this node's peer URL as member {:x} ({}): its data was lost; removing that member to join again",
        plan.data_dir.display(),
        a.peer,
        stale.id,
        if stale.name.is_empty() { "unnamed" } else { &stale.name },
    );
    let mut client = a.client.clone();
    client
        .member_remove(stale.id)
        .await
        .map(drop)
        .map_err(|source| JoinError::Remove {
            id: stale.id,
            url: plan.peer_url.clone(),
            peer: a.peer.clone(),
            source,
        })
}

async fn add_learner(plan: &Plan, a: Answer) -> Result<Start, JoinError> {
    let mut client = a.client;
    let added = client
        .member_add(
            [plan.peer_url.as_str()],
            Some(etcd_client::MemberAddOptions::new().with_is_learner()),
        )
        .await
        .map_err(|source| JoinError::Add {
            url: plan.peer_url.clone(),
            peer: a.peer.clone(),
            source,
        })?;
    let me = added
        .member()
        .map(|m| m.id())
        .ok_or_else(|| JoinError::AddNoMember {
            peer: a.peer.clone(),
        })?;
    let list: Vec<Seen> = added.member_list().iter().map(Seen::from).collect();
    log::info!(
        "etcd: added this node as learner {me:x} through {}; joining the cluster of {} (initial-cluster-state existing)",
        a.peer,
        list.len()
    );
    Ok(Start {
        state: ClusterState::Existing,
        initial_cluster: rejoin::initial_cluster(&list, me, &plan.name),
        learner: Some((me, voters(&list, me))),
    })
}

/// Refuses a data dir from another cluster than the one that answered.
fn check_cluster_id(plan: &Plan, a: &Answer) -> Result<(), JoinError> {
    let Ok(Some(ids)) = wal::read_ids(&plan.data_dir) else {
        return Ok(());
    };
    if a.cluster_id != 0 && a.cluster_id != ids.cluster {
        return Err(JoinError::ClusterIdMismatch {
            data_dir: plan.data_dir.clone(),
            local: ids.cluster,
            theirs: a.cluster_id,
            peer: a.peer.clone(),
        });
    }
    Ok(())
}

/// Asks `endpoints` (the voters) to promote learner `id` every
/// [`PROMOTE_EVERY`] until it is a voter: etcd refuses until the learner
/// has caught up. Returns once promoted (or once etcd says it is not a
/// learner, or no longer a member).
pub async fn promote(plan: Plan, id: u64, endpoints: Vec<String>) {
    let began = Instant::now();
    let mut last: Option<String> = None;
    let mut reminded = Instant::now();
    log::info!("etcd: learner {id:x} asks to be promoted once caught up");
    loop {
        tokio::time::sleep(PROMOTE_EVERY).await;
        let result = match connect_any(&endpoints, &plan).await {
            Ok(mut c) => c
                .member_promote(id)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                log::info!(
                    "etcd: promoted to a voting member ({id:x}) after {:.1} s as a learner",
                    began.elapsed().as_secs_f64()
                );
                return;
            }
            // etcd's ErrMemberNotLearner: someone promoted it already.
            Err(e) if e.contains("can only promote a learner member") && !e.contains("in sync") => {
                log::info!("etcd: {id:x} is a voting member");
                return;
            }
            Err(e) if e.contains("member not found") => {
                log::error!(
                    "etcd: learner {id:x} was removed from the cluster before its promotion: {e}"
                );
                return;
            }
            Err(e) => {
                let now = Instant::now();
                if last.as_deref() != Some(e.as_str()) || now - reminded >= REMIND_EVERY {
                    let level = if now - began >= REMIND_EVERY {
                        log::Level::Warn
                    } else {
                        log::Level::Info
                    };
                    log::log!(
                        level,
                        "etcd: still a learner after {} s (not campaigning for VIPs): {e}",
                        began.elapsed().as_secs()
                    );
                    reminded = now;
                    last = Some(e);
                }
            }
        }
    }
}

/// A client for the first of `endpoints` that connects.
async fn connect_any(endpoints: &[String], plan: &Plan) -> Result<etcd_client::Client, String> {
    let mut errors = Vec::new();
    for e in endpoints {
        match health::connect(e, plan.client_tls.as_ref(), rejoin::PEER_TIMEOUT).await {
            Ok(c) => return Ok(c),
            Err(err) => errors.push(err.to_string()),
        }
    }
    if errors.is_empty() {
        Err("no voting member known to ask".to_owned())
    } else {
        Err(errors.join("; "))
    }
}

#[cfg(test)]
#[path = "join_tests.rs"]
mod tests;
