//! Is etcd serving? A quorum read every couple of seconds, and the state the
//! VIP loop watches.
//!
//! The probe is a linearizable `Get` (etcd-client's default `GetOptions`:
//! `serializable = false`), which etcd answers only after confirming with a
//! quorum through the leader (etcd API guarantees: "linearizable reads ...
//! go through consensus"); a member cut off from its peers fails it even
//! though its process is up. That is what the VIP loop needs: it must not
//! hold the shared IP on a node whose etcd cannot reach a majority. The key
//! read, `health`, is the one `etcdctl endpoint health` reads.
//!
//! Before the read, a `Status` call (which a learner serves, etcd's
//! `isRPCSupportedForLearner`, while it refuses the quorum read with
//! "rpc not supported for learner") says whether this member is a raft
//! learner: a learner is [`Health::Learner`], never healthy, so a node
//! that is still joining never campaigns for a VIP. The status also names
//! the member, the leader and the raft term ([`MemberView`], for the node
//! API).
//!
//! The state is a pure function of the previous state and one event
//! ([`next`]), so the transitions are a table test; the supervisor and the
//! probe task both apply events to one `watch::Sender`, and a stale probe
//! result that lands after etcd exited is ignored by the table.

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use super::args::ClientTls;

pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The key the probe reads (it need not exist).
pub const PROBE_KEY: &str = "health";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// etcd was spawned and has not answered a quorum read yet.
    Starting,
    /// The last probe succeeded.
    Healthy,
    /// A probe failed after etcd had been healthy.
    Unhealthy,
    /// This member is a raft learner (joined, not yet promoted to voter):
    /// it serves no quorum reads and must not take part in elections.
    Learner,
    /// etcd exited; the supervisor waits out the backoff (or rejoins).
    Restarting,
    /// Stopped for shutdown; final.
    Stopped,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
            Health::Learner => "learner",
            Health::Restarting => "restarting",
            Health::Stopped => "stopped",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Spawned,
    ProbeOk,
    ProbeFailed,
    /// The member answered its status as a learner.
    ProbeLearner,
    Exited,
    Stopped,
}

/// The state after `event`.
pub fn next(prev: Health, event: Event) -> Health {
    use Event as E;
    use Health as H;
    match (prev, event) {
        (H::Stopped, _) => H::Stopped,
        (_, E::Stopped) => H::Stopped,
        (_, E::Exited) => H::Restarting,
        (_, E::Spawned) => H::Starting,
        // Probe results count only while etcd runs.
        (H::Restarting, E::ProbeOk | E::ProbeFailed | E::ProbeLearner) => H::Restarting,
        (H::Starting | H::Healthy | H::Unhealthy | H::Learner, E::ProbeOk) => H::Healthy,
        (H::Starting | H::Healthy | H::Unhealthy | H::Learner, E::ProbeLearner) => H::Learner,
        // A member forming its cluster fails reads until quorum, and a
        // learner may fail one while it catches up: that is still
        // starting (or joining), not a fault.
        (H::Starting, E::ProbeFailed) => H::Starting,
        (H::Learner, E::ProbeFailed) => H::Learner,
        (H::Healthy | H::Unhealthy, E::ProbeFailed) => H::Unhealthy,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot connect to etcd at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("etcd at {endpoint} takes no connections yet: {why}")]
    NotListening { endpoint: String, why: String },
    #[error("status from {endpoint} failed: {why}")]
    Status { endpoint: String, why: String },
    #[error("quorum read from {endpoint} failed: {source}")]
    Read {
        endpoint: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("quorum read from {endpoint} timed out after {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
}

/// Connection options for Keel's etcd clients: a connect timeout, a
/// per-request timeout unless `per_request` is false (it would also cut
/// off calls that block on purpose, like an election's `Campaign`), and TLS
/// when the config has certificates.
pub fn options(tls: Option<&ClientTls>, timeout: Duration, per_request: bool) -> ConnectOptions {
    let mut opts = ConnectOptions::new().with_connect_timeout(timeout);
    if per_request {
        opts = opts.with_timeout(timeout);
    }
    if let Some(t) = tls {
        let mut cfg = TlsOptions::new().ca_certificate(Certificate::from_pem(&t.ca));
        if let Some(id) = t.current_identity() {
            cfg = cfg.identity(Identity::from_pem(&id.crt, &id.key));
        }
        opts = opts.with_tls(cfg);
    }
    opts
}

/// A client for `endpoint` whose requests time out after `timeout`.
pub async fn connect(
    endpoint: &str,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<Client, ProbeError> {
    connect_with(endpoint, options(tls, timeout, true), timeout).await
}

/// A client for `endpoint` with `opts`, connecting within `timeout`.
pub async fn connect_with(
    endpoint: &str,
    opts: ConnectOptions,
    timeout: Duration,
) -> Result<Client, ProbeError> {
    let connect = Client::connect([endpoint], Some(opts));
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(source)) => Err(ProbeError::Connect {
            endpoint: endpoint.to_owned(),
            source,
        }),
        Err(_) => Err(ProbeError::Timeout {
            endpoint: endpoint.to_owned(),
            timeout,
        }),
    }
}

/// What the member says about itself in its status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberView {
    pub id: u64,
    pub cluster_id: u64,
    /// The leader's member ID (0: none known).
    pub leader: u64,
    pub raft_term: u64,
    pub is_learner: bool,
    pub version: String,
}

/// This member's `Status`, within `wait`.
pub async fn status(
    client: &mut Client,
    endpoint: &str,
    wait: Duration,
) -> Result<MemberView, ProbeError> {
    let status = match tokio::time::timeout(wait, client.status()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(ProbeError::Status {
                endpoint: endpoint.to_owned(),
                why: e.to_string(),
            })
        }
        Err(_) => {
            return Err(ProbeError::Status {
                endpoint: endpoint.to_owned(),
                why: format!("timed out after {wait:?}"),
            })
        }
    };
    Ok(MemberView {
        id: status.header().map_or(0, |h| h.member_id()),
        cluster_id: status.header().map_or(0, |h| h.cluster_id()),
        leader: status.leader(),
        raft_term: status.raft_term(),
        is_learner: status.is_learner(),
        version: status.version().to_owned(),
    })
}

/// The quorum read of [`PROBE_KEY`], within `timeout`.
async fn read(client: &mut Client, endpoint: &str, timeout: Duration) -> Result<(), ProbeError> {
    match tokio::time::timeout(timeout, client.get(PROBE_KEY, None)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(ProbeError::Read {
            endpoint: endpoint.to_owned(),
            source,
        }),
        Err(_) => Err(ProbeError::Timeout {
            endpoint: endpoint.to_owned(),
            timeout,
        }),
    }
}

/// One probe through `client`, connecting first when there is none. A
/// failed Status call drops the client, so a restarted etcd or a refused
/// handshake does not leave a broken channel behind; a failed read after a
/// good Status (no leader yet, a leader election) keeps it: the member
/// answered over it, and a new TLS handshake per probe cost the boot
/// hundreds of ms on a busy 1-vCPU guest.
async fn attempt(
    client: &mut Option<Client>,
    endpoint: &str,
    tls: Option<&ClientTls>,
    timeout: Duration,
    starting: bool,
    answering: Option<&Answering>,
) -> Result<MemberView, ProbeError> {
    let wait = if starting { STARTING_CONNECT } else { timeout };
    let c = match client {
        Some(c) => c,
        None => {
            // A starting etcd has its client listener open long before it
            // serves (embed's `serve` waits for `ReadyNotify`): the
            // connection waits in the listener's backlog and is served the
            // moment etcd is ready, while one that gave up after `timeout`
            // meanwhile starts its TLS handshake only then (measured: the
            // first good probe 0.9 s after "ready to serve" instead of
            // a handshake after it).
            // Until etcd opens that listener (about a second into its start
            // under TCG), a plain TCP connect says so without building a
            // TLS client every 100 ms: parsing the CA and the client key
            // took CPU from etcd's own start on a one-CPU node.
            if starting {
                reachable(endpoint, timeout)
                    .await
                    .map_err(|why| ProbeError::NotListening {
                        endpoint: endpoint.to_owned(),
                        why,
                    })?;
            }
            // (Each call below has its own deadline: no per-request one.)
            let opts = options(tls, timeout, false).with_connect_timeout(wait);
            client.insert(connect_with(endpoint, opts, wait).await?)
        }
    };
    // The same for the first request on a plaintext connection (no
    // handshake to wait in): Status, which a member answers as soon as it
    // serves.
    let view = match status(c, endpoint, wait).await {
        Ok(v) => v,
        Err(e) => {
            *client = None;
            if let Some(a) = answering {
                a.send_if_modified(|cur| cur.take().is_some());
            }
            return Err(e);
        }
    };
    if let Some(a) = answering {
        // The connection changes only through a None (a failed Status
        // drops it): telling only the changes keeps the elections' watch
        // quiet between probes.
        let voter = view.leader != 0 && !view.is_learner;
        a.send_if_modified(|cur| match (voter, cur.is_some()) {
            (true, false) => {
                *cur = Some(c.clone());
                true
            }
            (false, true) => {
                *cur = None;
                true
            }
            _ => false,
        });
    }
    if !view.is_learner {
        read(c, endpoint, timeout).await?;
    }
    Ok(view)
}

/// Whether the host of `endpoint` (`scheme://host:port[/…]`) takes a TCP
/// connection within `timeout`; the connection is closed at once.
pub(crate) async fn reachable(endpoint: &str, timeout: Duration) -> Result<(), String> {
    let authority = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(authority)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no TCP answer within {} ms", timeout.as_millis())),
    }
}

/// The probe's connection while the member's last `Status` named a leader
/// and said it is a voter (None otherwise): what the VIP elections start
/// a term on, without waiting for the quorum read that makes the member
/// [`Health::Healthy`] (`controlplane.rs`, `healthy_watch`) and without a
/// connection of their own. Their lease grant is itself a raft write, a
/// stronger proof than the read, and it then runs alongside the read
/// instead of after it (measured under TCG: the read took 0.1–0.4 s
/// after etcd first served, and a new TLS connection 10–80 ms).
pub type Answering = tokio::sync::watch::Sender<Option<Client>>;
/// The receiving side of [`Answering`].
pub type AnsweringRx = tokio::sync::watch::Receiver<Option<Client>>;

/// The probe interval while etcd has not answered yet: the VIP elections
/// wait for the first good probe. A probe is a Status call on a kept
/// connection (and, once there is a leader, one read); the floor of
/// `make bench-run` polls etcd's /health as often with a whole process.
pub const STARTING_INTERVAL: Duration = Duration::from_millis(100);

/// How long a connection may wait for a starting member to serve.
pub const STARTING_CONNECT: Duration = Duration::from_secs(30);

/// How long to wait before the one retry of a failed probe.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// Probes `endpoint` every `interval` forever, applying each result to
/// `state`. A failed probe is retried once after 200 ms before it counts:
/// etcd fails reads for a moment during a leader election ("etcdserver:
/// leader changed", which etcd's own clients retry), and the VIP loop
/// should not resign over that. Transitions are logged; repeated identical
/// failures only at debug level.
pub async fn run(
    endpoint: String,
    tls: Option<ClientTls>,
    interval: Duration,
    timeout: Duration,
    state: tokio::sync::watch::Sender<Health>,
    view: tokio::sync::watch::Sender<Option<MemberView>>,
    answering: Answering,
) {
    let mut client: Option<Client> = None;
    let mut last_error: Option<String> = None;
    let mut next_at = tokio::time::Instant::now();
    loop {
        tokio::time::sleep_until(next_at).await;
        // Until the member first answers (or while it is a learner waiting
        // for its promotion), ask often: the VIP elections and the
        // promotion wait for this state, and every probe interval lost
        // here is boot time.
        let waiting = matches!(*state.borrow(), Health::Starting | Health::Learner);
        next_at += if waiting {
            interval.min(STARTING_INTERVAL)
        } else {
            interval
        };
        next_at = next_at.max(tokio::time::Instant::now());
        let a = Some(&answering);
        let mut result = attempt(&mut client, &endpoint, tls.as_ref(), timeout, waiting, a).await;
        // A failure changes nothing while starting: no retry needed then.
        if result.is_err() && !waiting {
            tokio::time::sleep(RETRY_AFTER).await;
            result = attempt(&mut client, &endpoint, tls.as_ref(), timeout, false, a).await;
        }
        let event = match &result {
            Ok(v) if v.is_learner => Event::ProbeLearner,
            Ok(_) => Event::ProbeOk,
            Err(_) => Event::ProbeFailed,
        };
        match &result {
            Err(e) => {
                let text = e.to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    log::debug!("etcd health: {text}");
                    last_error = Some(text);
                }
            }
            Ok(v) => {
                last_error = None;
                let v = Some(v.clone());
                view.send_if_modified(|cur| std::mem::replace(cur, v.clone()) != v);
            }
        }
        state.send_if_modified(|h| {
            let n = next(*h, event);
            if n == *h {
                return false;
            }
            match n {
                Health::Healthy => log::info!("etcd is {n} (was {h})"),
                Health::Learner => log::info!(
                    "etcd is a {n} (was {h}): a non-voting member catching up; it takes part in no VIP election until it is promoted"
                ),
                _ => log::warn!(
                    "etcd is {n} (was {h}): {}",
                    last_error.as_deref().unwrap_or("")
                ),
            }
            *h = n;
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Event as E;
    use Health as H;

    #[tokio::test]
    async fn a_closed_port_is_found_without_a_tls_client() {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let t = Duration::from_secs(2);
        // A starting probe of a closed port fails on the TCP check, fast.
        let started = std::time::Instant::now();
        let r = attempt(
            &mut None,
            &format!("http://{closed_addr}"),
            None,
            t,
            true,
            None,
        )
        .await;
        assert!(matches!(r, Err(ProbeError::NotListening { .. })), "{r:?}");
        assert!(r
            .unwrap_err()
            .to_string()
            .contains("takes no connections yet"));
        assert!(started.elapsed() < t);
    }

    #[tokio::test]
    async fn a_starting_member_is_waited_for_in_its_backlog() {
        // A member still starting: its listener takes connections (the
        // kernel's backlog) and serves nothing; here it goes away after
        // 600 ms, which ends a connection still waiting.
        let timeout = Duration::from_millis(200);
        for (starting, at_least, below) in [(true, 600, 1500), (false, 200, 550)] {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let endpoint = format!("http://{}", l.local_addr().unwrap());
            let closer = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(600)).await;
                drop(l);
            });
            let t = tokio::time::Instant::now();
            let r = attempt(&mut None, &endpoint, None, timeout, starting, None).await;
            let took = t.elapsed();
            assert!(r.is_err(), "starting {starting}: nothing served, yet {r:?}");
            assert!(
                took >= Duration::from_millis(at_least) && took < Duration::from_millis(below),
                "starting {starting}: gave up after {took:?}"
            );
            closer.await.unwrap();
        }
    }

    #[test]
    fn transitions() {
        let table: &[(Health, Event, Health)] = &[
            (H::Starting, E::ProbeFailed, H::Starting),
            (H::Starting, E::ProbeOk, H::Healthy),
            (H::Healthy, E::ProbeOk, H::Healthy),
            (H::Healthy, E::ProbeFailed, H::Unhealthy),
            (H::Unhealthy, E::ProbeFailed, H::Unhealthy),
            (H::Unhealthy, E::ProbeOk, H::Healthy),
            (H::Starting, E::Exited, H::Restarting),
            (H::Healthy, E::Exited, H::Restarting),
            (H::Unhealthy, E::Exited, H::Restarting),
            // A probe in flight when etcd exited changes nothing.
            (H::Restarting, E::ProbeOk, H::Restarting),
            (H::Restarting, E::ProbeFailed, H::Restarting),
            (H::Restarting, E::Spawned, H::Starting),
            (H::Healthy, E::Spawned, H::Starting),
            (H::Healthy, E::Stopped, H::Stopped),
            (H::Restarting, E::Stopped, H::Stopped),
            // Stopped is final.
            (H::Stopped, E::Spawned, H::Stopped),
            (H::Stopped, E::ProbeOk, H::Stopped),
            (H::Stopped, E::Exited, H::Stopped),
            // Joining: a learner until promoted, never healthy meanwhile.
            (H::Starting, E::ProbeLearner, H::Learner),
            (H::Learner, E::ProbeFailed, H::Learner),
            (H::Learner, E::ProbeLearner, H::Learner),
            (H::Learner, E::ProbeOk, H::Healthy),
            (H::Learner, E::Exited, H::Restarting),
            (H::Restarting, E::ProbeLearner, H::Restarting),
            (H::Stopped, E::ProbeLearner, H::Stopped),
        ];
        for (prev, ev, want) in table {
            assert_eq!(next(*prev, *ev), *want, "{prev:?} + {ev:?}");
        }
    }

    #[test]
    fn a_run_from_start_to_stop() {
        let events = [
            E::Spawned,
            E::ProbeFailed,
            E::ProbeOk,
            E::ProbeFailed,
            E::ProbeOk,
            E::Exited,
            E::ProbeOk,
            E::Spawned,
            E::ProbeOk,
            E::Stopped,
        ];
        let mut h = H::Starting;
        let seen: Vec<Health> = events
            .iter()
            .map(|e| {
                h = next(h, *e);
                h
            })
            .collect();
        assert_eq!(
            seen,
            [
                H::Starting,
                H::Starting,
                H::Healthy,
                H::Unhealthy,
                H::Healthy,
                H::Restarting,
                H::Restarting,
                H::Starting,
                H::Healthy,
                H::Stopped
            ]
        );
    }
}
