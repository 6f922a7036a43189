//! `new` or `existing`: how to start etcd, and rejoining a cluster after
//! this member lost its data.
//!
//! Before every start the supervisor calls [`prepare`]:
//! 1. The data dir holds a WAL (etcd's own test, `wal.Exist`: a `*.wal`
//!    file in `member/wal`): etcd restarts from it and ignores the
//!    `--initial-cluster*` flags (etcd's "Configuration flags" guide), so
//!    the static flags are passed. Before that, the cluster ID in the WAL
//!    ([`super::wal`]) is compared with the peers': when a majority of the
//!    cluster's members agree on another ID ([`odd_one_out`]), the data
//!    dir is from a different cluster and etcd is not started (it would
//!    otherwise happily lead a cluster of its own, and look healthy).
//! 2. A one-member cluster: `new`.
//! 3. Otherwise every other founding member is asked, in parallel, for the
//!    member list on its client URL (node address, client port: the peers
//!    need `clientOnNodeAddress`; a host that takes no TCP connection
//!    within [`REACH_TIMEOUT`] counts as not answering, and so, on the
//!    first attempt of a boot, does one that then says nothing within
//!    [`FIRST_ANSWER_TIMEOUT`]: its etcd is starting too). Nobody answers:
//!    a fresh cluster whose members are all booting, so `new` with the
//!    static list. Someone
//!    answers: [`decide`] on the list it returned —
//!    - this member is in it unstarted under its own name (it is a
//!      founding member that never ran) and the list is the static one:
//!      `new` with the static list, the ordinary bootstrap;
//!    - it is in it unstarted without a name (an earlier attempt of ours
//!      added it and then failed): `existing` with that list;
//!    - it is in it started (it has client URLs, so it ran and published
//!      itself: its data was lost), or is in it more than once: remove
//!      those entries, `member add` this one with its peer URL, `existing`
//!      with the list `member add` returns (etcd's runtime reconfiguration
//!      guide, "Replace a failed machine": remove, then add, then start
//!      with `--initial-cluster-state=existing`);
//!    - it is not in it: add it, `existing`.
//!
//! Never a second cluster:
//! - the founding members' IDs and the cluster ID are hashes of the
//!   static `--initial-cluster` and token (etcd `membership.NewMember` with
//!   no timestamp), so founding members that start `new` at different
//!   times form one cluster, and a `new` start of a 3-member list cannot
//!   elect a leader on its own (no quorum of one);
//! - a member with an empty data dir that finds no peer answering on the
//!   client port starts `new`; if the cluster does exist, etcd itself asks
//!   the peers over the peer port and refuses ("member ... has already
//!   been bootstrapped", [`super::output::Problem::AlreadyBootstrapped`]):
//!   the supervisor reports it and retries with backoff, and the next
//!   attempt rejoins once a peer answers;
//! - data in the data dir is never removed by Keel. A data dir from
//!   another cluster shows as "cluster ID mismatch" in etcd's log
//!   ([`super::output::Problem::ClusterIdMismatch`]): an error that says
//!   what to do, retried with backoff, and PID 1 stays up;
//! - losing a majority of members at once (two of three wiped) is
//!   disaster recovery (etcd snapshot restore), which needs a human: the
//!   survivors keep their cluster, the wiped ones cannot remove members
//!   without quorum and keep failing visibly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_client::Client;
use futures::future::join_all;

use super::args::{ClusterState, Member, Plan, Start};
use super::{health, wal};

/// How long each peer gets to answer.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a peer's host gets to accept or refuse a TCP connection on
/// its client port before it counts as not answering. A host that is up
/// does either within a round trip (its kernel answers the SYN, etcd
/// running or not); one that is still booting, or down, answers no ARP
/// request, and the connect would hang for seconds (the kernel's
/// neighbour resolution: 3 probes 1 s apart, ip-neighbour(8)) only to
/// learn nothing. At a cold start of the whole cluster that was 0.85 s of
/// every boot. Missing a live peer this way costs nothing unsafe: etcd
/// itself asks the peers before it bootstraps and refuses a member that
/// was started before ("has already been bootstrapped"), and the
/// supervisor's next attempt asks again.
pub const REACH_TIMEOUT: Duration = Duration::from_millis(300);

/// How long a peer whose host took the connection gets to answer, on the
/// first start of a member with an empty data dir (later attempts give it
/// [`PEER_TIMEOUT`]). etcd serves its client port only once it is ready
/// (embed's `serve` waits for `ReadyNotify`: the member has joined a
/// cluster with a leader), but its listener is open from the start, so a
/// peer that is itself starting takes the TCP connection and then never
/// answers the TLS handshake: at a cold start of the whole cluster every
/// node waited the full 3 s for peers that could not answer before it
/// started (measured: `make bench-run`, 2 nodes of 3 in one round). A
/// serving peer answers within a few round trips. Missing a slow one is
/// not unsafe (see [`REACH_TIMEOUT`]): etcd refuses to bootstrap a member
/// the cluster knows as started, and the supervisor's next attempt waits
/// the full time.
pub const FIRST_ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RejoinError {
    #[error("cannot remove the stale etcd member {id:x} ({name}) through {peer}: {source}")]
    Remove {
        id: u64,
        name: String,
        peer: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("cannot add this etcd member ({name}, {url}) through {peer}: {source}")]
    Add {
        name: String,
        url: String,
        peer: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("adding this etcd member through {peer} returned no member for it")]
    AddNoMember { peer: String },
    #[error("etcd: {why}")]
    DiskMissing { why: String },
    #[error("the etcd data dir {data_dir} belongs to cluster {local:x}, but {peers} are members of cluster {theirs:x} (cluster ID mismatch); Keel never wipes a data dir that holds data: remove it by hand for this member to rejoin")]
    ClusterIdMismatch {
        data_dir: PathBuf,
        local: u64,
        theirs: u64,
        peers: String,
    },
}

/// etcd's `wal.Exist(dataDir/member/wal)`: a `*.wal` file there.
pub fn has_data(data_dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(data_dir.join("member").join("wal")) else {
        return false;
    };
    entries
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(".wal"))
}

/// A member as a peer reported it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Seen {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl Seen {
    /// etcd lists a member that has not started yet with no name and no
    /// client URLs (it publishes both once it runs).
    pub fn started(&self) -> bool {
        !self.client_urls.is_empty()
    }
}

impl From<&etcd_client::Member> for Seen {
    fn from(m: &etcd_client::Member) -> Seen {
        Seen {
            id: m.id(),
            name: m.name().to_owned(),
            peer_urls: m.peer_urls().to_vec(),
            client_urls: m.client_urls().to_vec(),
            is_learner: m.is_learner(),
        }
    }
}

/// What to do with the member list a peer returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `new` with the static list.
    StartNew,
    /// `existing` with this list.
    StartExisting(Vec<Member>),
    /// Remove these members (stale entries of this one), add this one,
    /// then `existing` with what the add returns.
    Replace { remove: Vec<Seen> },
}

/// The `--initial-cluster` entries for `members`, naming `me` (by ID)
/// `name`: etcd reports a member that has not started yet without a name.
pub fn initial_cluster(members: &[Seen], me: u64, name: &str) -> Vec<Member> {
    let mut out = Vec::new();
    for m in members {
        for url in &m.peer_urls {
            out.push(Member {
                name: if m.id == me {
                    name.to_owned()
                } else {
                    m.name.clone()
                },
                peer_url: url.clone(),
            });
        }
    }
    out
}

/// The decision for a member with an empty data dir (see the module docs).
pub fn decide(plan: &Plan, members: &[Seen]) -> Action {
    let mine: Vec<&Seen> = members
        .iter()
        .filter(|m| m.name == plan.name || m.peer_urls.contains(&plan.peer_url))
        .collect();
    match mine.as_slice() {
        [] => Action::Replace { remove: Vec::new() },
        [m] if m.client_urls.is_empty() && m.name == plan.name => {
            let mut live: Vec<(String, String)> = members
                .iter()
                .flat_map(|m| m.peer_urls.iter().map(|u| (m.name.clone(), u.clone())))
                .collect();
            let mut fixed: Vec<(String, String)> = plan
                .initial_cluster
                .iter()
                .map(|m| (m.name.clone(), m.peer_url.clone()))
                .collect();
            live.sort();
            fixed.sort();
            if live == fixed {
                Action::StartNew
            } else {
                Action::StartExisting(initial_cluster(members, m.id, &plan.name))
            }
        }
        [m] if m.client_urls.is_empty() && m.name.is_empty() => {
            Action::StartExisting(initial_cluster(members, m.id, &plan.name))
        }
        _ => Action::Replace {
            remove: mine.into_iter().cloned().collect(),
        },
    }
}

/// The key where a member whose data dir is on a disk says so (written
/// once it is healthy): a node that comes back on a tmpfs `/var` — its
/// disk missing, or not there yet when `/var` was chosen — must not remove
/// that member to rejoin, which would discard the data on the disk.
pub fn var_key(peer_url: &str) -> String {
    format!("keel/members/{peer_url}/var")
}

/// Whether this node may remove its own stale member to rejoin: always
/// with a disk `/var`; on a tmpfs only if the member never said its data
/// was on a disk. A read that fails refuses (retried).
pub async fn may_replace(plan: &Plan, client: &mut Client) -> Result<(), String> {
    if plan.var_persistent {
        return Ok(());
    }
    let key = var_key(&plan.peer_url);
    match tokio::time::timeout(PEER_TIMEOUT, client.get(key.as_str(), None)).await {
        Ok(Ok(r)) if r.kvs().is_empty() => Ok(()),
        Ok(Ok(_)) => Err(format!(
            "this node's etcd member {} kept its data on a KEEL-VAR disk ({key}), but /var is a tmpfs now (the disk is missing, or appeared too late): not removing the member, which would throw away that data; fix the disk and reboot, or remove the member by hand (etcdctl member remove) to start afresh",
            plan.peer_url
        )),
        Ok(Err(e)) => Err(format!("cannot read {key}: {e}")),
        Err(_) => Err(format!("cannot read {key}: timed out")),
    }
}

/// How to start etcd now; may change the cluster's membership (see the
/// module docs). An error is retried by the supervisor with backoff.
/// `first`: the first start attempt of this boot (see
/// [`FIRST_ANSWER_TIMEOUT`]).
pub async fn prepare(plan: &Plan, first: bool) -> Result<Start, RejoinError> {
    if plan.peer_endpoints.is_empty() {
        return Ok(plan.static_start());
    }
    if has_data(&plan.data_dir) {
        check_cluster_id(plan).await?;
        return Ok(plan.static_start());
    }
    let patience = if first {
        FIRST_ANSWER_TIMEOUT
    } else {
        PEER_TIMEOUT
    };
    let answers = ask(&plan.peer_endpoints, plan, patience).await;
    let Some(Answer {
        peer,
        mut client,
        members,
        ..
    }) = answers.into_iter().next()
    else {
        log::info!(
            "etcd: no peer answered ({}), starting {} with the static initial cluster",
            plan.peer_endpoints
                .iter()
                .map(|(n, e)| format!("{n} at {e}"))
                .collect::<Vec<_>>()
                .join(", "),
            ClusterState::New.as_str()
        );
        return Ok(plan.static_start());
    };
    match decide(plan, &members) {
        Action::StartNew => {
            log::info!("etcd: {peer} lists this member as not yet started, starting new with the static initial cluster");
            Ok(plan.static_start())
        }
        Action::StartExisting(initial_cluster) => {
            log::info!("etcd: {peer} lists this member as added but not started, joining the existing cluster");
            Ok(Start {
                state: ClusterState::Existing,
                initial_cluster,
                learner: None,
            })
        }
        Action::Replace { remove } => {
            let mine = remove.iter().any(|m| m.peer_urls.contains(&plan.peer_url));
            if mine {
                may_replace(plan, &mut client)
                    .await
                    .map_err(|why| RejoinError::DiskMissing { why })?;
            }
            for m in &remove {
                log::warn!(
                    "etcd: the data dir {} is empty but the cluster has member {:x} ({}, {}); removing it through {peer} to rejoin",
                    plan.data_dir.display(),
                    m.id,
                    if m.name.is_empty() { "unstarted" } else { &m.name },
                    m.peer_urls.join(",")
                );
                if let Err(source) = client.member_remove(m.id).await {
                    return Err(RejoinError::Remove {
                        id: m.id,
                        name: m.name.clone(),
                        peer: peer.clone(),
                        source,
                    });
                }
            }
            let added = client
                .member_add([plan.peer_url.as_str()], None)
                .await
                .map_err(|source| RejoinError::Add {
                    name: plan.name.clone(),
                    url: plan.peer_url.clone(),
                    peer: peer.clone(),
                    source,
                })?;
            let me = added
                .member()
                .map(|m| m.id())
                .ok_or_else(|| RejoinError::AddNoMember { peer: peer.clone() })?;
            let list: Vec<Seen> = added.member_list().iter().map(Seen::from).collect();
            log::info!(
                "etcd: added this member as {me:x} through {peer}, joining the existing cluster of {}",
                list.len()
            );
            Ok(Start {
                state: ClusterState::Existing,
                initial_cluster: initial_cluster(&list, me, &plan.name),
                learner: None,
            })
        }
    }
}

/// The cluster ID a majority of the cluster's members agree on, when it
/// is not `local`: `peers` are the IDs the other members reported,
/// `cluster_size` the number of members. A minority (one stray node) can
/// never make a member stop.
pub fn odd_one_out(local: u64, peers: &[u64], cluster_size: usize) -> Option<u64> {
    let quorum = cluster_size / 2 + 1;
    peers
        .iter()
        .copied()
        .filter(|id| *id != local)
        .find(|id| peers.iter().filter(|p| *p == id).count() >= quorum)
}

/// Refuses a data dir whose cluster ID differs from the one a majority of
/// the members report. Unreadable WALs and silent peers are not errors:
/// etcd then decides (and its log says "cluster ID mismatch").
async fn check_cluster_id(plan: &Plan) -> Result<(), RejoinError> {
    let local = match wal::read_ids(&plan.data_dir) {
        Ok(Some(ids)) => ids.cluster,
        Ok(None) => return Ok(()),
        Err(e) => {
            log::warn!("etcd: {e}; not checking the data dir's cluster ID");
            return Ok(());
        }
    };
    // The full time: a data dir from another cluster must not start
    // because the peers were slow to say so.
    let answers = ask(&plan.peer_endpoints, plan, PEER_TIMEOUT).await;
    // 0: no response header, nothing to compare.
    let ids: Vec<u64> = answers
        .iter()
        .map(|a| a.cluster_id)
        .filter(|id| *id != 0)
        .collect();
    match odd_one_out(local, &ids, plan.initial_cluster.len()) {
        None => Ok(()),
        Some(theirs) => Err(RejoinError::ClusterIdMismatch {
            data_dir: plan.data_dir.clone(),
            local,
            theirs,
            peers: answers
                .iter()
                .filter(|a| a.cluster_id == theirs)
                .map(|a| a.peer.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// A member that returned its member list.
pub(super) struct Answer {
    /// `name at endpoint`.
    pub peer: String,
    pub client: Client,
    pub cluster_id: u64,
    pub members: Vec<Seen>,
}

/// Each `(label, endpoint)` that returns a member list within `patience`
/// of taking the connection, in order, each with the client that reached
/// it; the others are logged at debug level.
pub(super) async fn ask(
    targets: &[(String, String)],
    plan: &Plan,
    patience: Duration,
) -> Vec<Answer> {
    let asks = targets.iter().map(|(name, endpoint)| async move {
        health::reachable(endpoint, REACH_TIMEOUT)
            .await
            .map_err(|e| format!("{name} at {endpoint}: {e}"))?;
        let t = tokio::time::Instant::now();
        // The client goes on to change membership (`may_replace`, member
        // remove and add): its requests keep the full timeout.
        let opts = health::options(plan.client_tls.as_ref(), PEER_TIMEOUT, true)
            .with_connect_timeout(patience);
        let mut client = health::connect_with(endpoint, opts, patience)
            .await
            .map_err(|e| e.to_string())?;
        let left = patience.saturating_sub(t.elapsed());
        match tokio::time::timeout(left, client.member_list()).await {
            Ok(Ok(list)) => Ok(Answer {
                peer: format!("{name} at {endpoint}"),
                cluster_id: list.header().map_or(0, |h| h.cluster_id()),
                members: list.members().iter().map(Seen::from).collect(),
                client,
            }),
            Ok(Err(e)) => Err(format!("{name} at {endpoint}: {e}")),
            Err(_) => Err(format!("{name} at {endpoint}: timed out")),
        }
    });
    let mut out = Vec::new();
    for r in join_all(asks).await {
        match r {
            Ok(a) => out.push(a),
            Err(e) => log::debug!("etcd: asking for the member list: {e}"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn plan() -> Plan {
        let yaml = "machine:\n  network:\n    hostname: b\ncluster:\n  etcd:\n    allowInsecure: true\n    initialCluster:\n      a: http://10.0.0.1:2380\n      b: http://10.0.0.2:2380\n      c: http://10.0.0.3:2380\n";
        let cfg = crate::config::parse(yaml).unwrap().config;
        let rt = super::super::args::Runtime::new(
            vec!["10.0.0.2".parse().unwrap()],
            PathBuf::from("/nonexistent"),
            PathBuf::from("/pki"),
        );
        Plan::from_config(&cfg, &rt).unwrap()
    }

    fn seen(id: u64, name: &str, n: u8, started: bool) -> Seen {
        Seen {
            id,
            name: name.to_owned(),
            peer_urls: vec![format!("http://10.0.0.{n}:2380")],
            client_urls: if started {
                vec![format!("http://10.0.0.{n}:2379")]
            } else {
                Vec::new()
            },
            is_learner: false,
        }
    }

    fn m(name: &str, n: u8) -> Member {
        Member {
            name: name.to_owned(),
            peer_url: format!("http://10.0.0.{n}:2380"),
        }
    }

    #[test]
    fn decisions() {
        let p = plan();
        let cases: Vec<(&str, Vec<Seen>, Action)> = vec![
            (
                "fresh bootstrap: peers up, this founding member not started",
                vec![
                    seen(1, "a", 1, true),
                    seen(2, "b", 2, false),
                    seen(3, "c", 3, false),
                ],
                Action::StartNew,
            ),
            (
                "data lost: this member is listed as started",
                vec![
                    seen(1, "a", 1, true),
                    seen(2, "b", 2, true),
                    seen(3, "c", 3, true),
                ],
                Action::Replace {
                    remove: vec![seen(2, "b", 2, true)],
                },
            ),
            (
                "an earlier attempt added it but etcd never started",
                vec![
                    seen(1, "a", 1, true),
                    seen(9, "", 2, false),
                    seen(3, "c", 3, true),
                ],
                Action::StartExisting(vec![m("a", 1), m("b", 2), m("c", 3)]),
            ),
            (
                "removed by an operator",
                vec![seen(1, "a", 1, true), seen(3, "c", 3, true)],
                Action::Replace { remove: Vec::new() },
            ),
            (
                "listed twice (name and URL on different entries)",
                vec![
                    seen(1, "a", 1, true),
                    seen(2, "b", 7, true),
                    seen(9, "", 2, false),
                ],
                Action::Replace {
                    remove: vec![seen(2, "b", 7, true), seen(9, "", 2, false)],
                },
            ),
            (
                "founding member not started, but membership changed since",
                vec![
                    seen(1, "a", 1, true),
                    seen(2, "b", 2, false),
                    seen(4, "c", 4, true),
                ],
                Action::StartExisting(vec![m("a", 1), m("b", 2), m("c", 4)]),
            ),
        ];
        for (what, members, want) in cases {
            assert_eq!(decide(&p, &members), want, "{what}");
        }
    }

    #[test]
    fn odd_one_out_needs_a_majority() {
        // (local, peers' IDs, cluster size, expected)
        let table: &[(u64, &[u64], usize, Option<u64>)] = &[
            (1, &[2, 2], 3, Some(2)),
            (1, &[1, 1], 3, None),
            (1, &[2], 3, None),
            (1, &[2, 1], 3, None),
            (1, &[2, 3], 3, None),
            (1, &[], 3, None),
            (1, &[2, 2], 5, None),
            (1, &[2, 2, 2], 5, Some(2)),
            (1, &[2], 1, Some(2)),
        ];
        for (local, peers, n, want) in table {
            assert_eq!(
                odd_one_out(*local, peers, *n),
                *want,
                "{local} {peers:?} {n}"
            );
        }
    }

    #[test]
    fn initial_cluster_names_the_new_member() {
        let list = vec![seen(1, "a", 1, true), seen(7, "", 2, false)];
        assert_eq!(initial_cluster(&list, 7, "b"), vec![m("a", 1), m("b", 2)]);
    }

    #[tokio::test]
    async fn reachable_takes_a_tcp_answer_only_from_a_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().port();
        // A port nobody listens on: bind one, note it, let it go.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let cases = [
            (format!("https://127.0.0.1:{open}"), true),
            (format!("http://127.0.0.1:{open}/"), true),
            (format!("127.0.0.1:{open}"), true),
            (format!("https://127.0.0.1:{closed}"), false),
        ];
        for (endpoint, want) in cases {
            let got = health::reachable(&endpoint, REACH_TIMEOUT).await;
            assert_eq!(got.is_ok(), want, "{endpoint}: {got:?}");
        }
    }

    #[tokio::test]
    async fn a_peer_that_takes_the_connection_but_never_serves_is_not_waited_for() {
        // What a peer whose etcd is still starting looks like: its client
        // listener is open (the kernel completes the TCP handshake) and
        // nothing is served on it yet.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let targets = vec![("a".to_owned(), format!("http://127.0.0.1:{port}"))];
        let p = plan();
        for patience in [Duration::from_millis(300), FIRST_ANSWER_TIMEOUT] {
            let t = std::time::Instant::now();
            let answers = ask(&targets, &p, patience).await;
            let took = t.elapsed();
            assert!(answers.is_empty(), "{patience:?}: a silent peer answered");
            assert!(
                took >= patience && took < patience + Duration::from_millis(700),
                "{patience:?}: gave up after {took:?}"
            );
        }
        drop(silent);
    }

    #[test]
    fn data_is_a_wal_file() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        assert!(!has_data(d));
        // What a failed `new` start leaves behind: no WAL yet.
        std::fs::create_dir_all(d.join("member/snap")).unwrap();
        std::fs::create_dir_all(d.join("member/wal")).unwrap();
        assert!(!has_data(d));
        std::fs::write(
            d.join("member/wal/0000000000000000-0000000000000000.wal"),
            b"",
        )
        .unwrap();
        assert!(has_data(d));
    }
}
