//! One VIP's election loop: wait for a healthy local etcd and the link,
//! then run terms (lease → campaign → hold → release) until told to stop.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, GetOptions, LeaderKey, ResignOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, timeout, Instant, MissedTickBehavior};

use super::announce::{AnnounceError, Announcer};
use super::fence::{keepalive_interval, Fence};
use super::{election_name, secs, VipState};
use crate::etcd::args::ClientTls;
use crate::etcd::health;
use crate::net::rtnl::{host_prefix, Link, Rtnl, RtnlError};

/// Gratuitous ARP / NA burst on acquiring: 5 announcements 200 ms apart,
/// then one every 10 s while held (for switches and hosts that missed the
/// burst or flushed their tables).
const BURST_COUNT: u32 = 5;
const BURST_GAP: Duration = Duration::from_millis(200);
const REFRESH: Duration = Duration::from_secs(10);
/// Resign and revoke are best effort on this deadline: the address is
/// already gone, and a lease not revoked expires by itself.
const RESIGN_TIMEOUT: Duration = Duration::from_secs(1);
/// Between terms after an error (etcd unreachable, the link missing).
const RETRY: Duration = Duration::from_secs(1);

/// What one election needs.
#[derive(Debug, Clone)]
pub struct Params {
    pub ip: IpAddr,
    pub ttl: Duration,
    /// The link the address goes on (`<link>.<vid>` for a VLAN VIP).
    pub link: String,
    /// The campaign value: `<hostname>/<etcd member name>`.
    pub identity: String,
    /// The local etcd member's client URL.
    pub endpoint: String,
    pub tls: Option<ClientTls>,
}

/// What drives the loop from outside.
pub struct Inputs {
    /// True while the local etcd member is healthy.
    pub etcd_healthy: watch::Receiver<bool>,
    /// Becomes true to release, resign and return (graceful shutdown).
    pub stop: watch::Receiver<bool>,
}

#[derive(Debug, thiserror::Error)]
enum TermError {
    #[error("etcd {what}: {source}")]
    Etcd {
        what: &'static str,
        #[source]
        source: etcd_client::Error,
    },
    #[error("etcd {0}: timed out")]
    Timeout(&'static str),
    #[error(transparent)]
    Connect(#[from] health::ProbeError),
    #[error(transparent)]
    Link(#[from] RtnlError),
    #[error(transparent)]
    Announce(#[from] AnnounceError),
    #[error("link {0} does not exist")]
    NoLink(String),
    #[error("link {0} has no MAC address")]
    NoMac(String),
}

/// How a term ended without an error.
enum End {
    Stop,
    Again,
}

/// Runs the election for `p` until `inputs.stop` becomes true; publishes
/// its state on `state`. Never returns an error: failures are logged and
/// the loop starts a new term.
pub async fn run(p: Params, mut inputs: Inputs, state: watch::Sender<VipState>) {
    let rtnl = loop {
        match Rtnl::connect() {
            Ok(r) => break r,
            Err(e) => {
                log::error!("vip {}: {e}", p.ip);
                if pause(&mut inputs.stop, RETRY).await {
                    return;
                }
            }
        }
    };
    let mut logged_wait = String::new();
    loop {
        if *inputs.stop.borrow() {
            return;
        }
        set(&state, VipState::WaitingForEtcd);
        let waiting = if !*inputs.etcd_healthy.borrow() {
            Some("the local etcd member to be healthy".to_string())
        } else {
            match rtnl.link(&p.link).await {
                Ok(Some(l)) if l.up && l.carrier => None,
                Ok(Some(_)) => Some(format!("link {} to be up", p.link)),
                Ok(None) => Some(format!("link {}", p.link)),
                Err(e) => Some(e.to_string()),
            }
        };
        if let Some(what) = waiting {
            if what != logged_wait {
                log::info!("vip {}: waiting for {what}", p.ip);
                logged_wait = what;
            }
            tokio::select! {
                _ = inputs.stop.changed() => {}
                _ = inputs.etcd_healthy.changed() => {}
                _ = sleep(RETRY) => {}
            }
            continue;
        }
        logged_wait.clear();
        match term(&p, &rtnl, &mut inputs, &state).await {
            Ok(End::Stop) => return,
            Ok(End::Again) => {}
            Err(e) => {
                log::warn!("vip {}: {e}; trying again in {} s", p.ip, RETRY.as_secs());
                if pause(&mut inputs.stop, RETRY).await {
                    return;
                }
            }
        }
    }
}

/// Sleeps `d`; true if stop was asked meanwhile.
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = stop.changed() => true,
        _ = sleep(d) => *stop.borrow(),
    }
}

fn set(state: &watch::Sender<VipState>, s: VipState) {
    state.send_if_modified(|cur| {
        let changed = *cur != s;
        *cur = s;
        changed
    });
}

async fn within<T>(
    what: &'static str,
    d: Duration,
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, TermError> {
    match timeout(d, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(TermError::Etcd { what, source }),
        Err(_) => Err(TermError::Timeout(what)),
    }
}

/// The address while held.
struct Held {
    key: LeaderKey,
    since: Instant,
    burst: JoinHandle<()>,
    announcer: Arc<Announcer>,
}

/// One lease's life: grant, campaign, maybe hold, release.
async fn term(
    p: &Params,
    rtnl: &Rtnl,
    inputs: &mut Inputs,
    state: &watch::Sender<VipState>,
) -> Result<End, TermError> {
    let name = election_name(p.ip);
    // No per-request timeout on this client: Campaign blocks until this
    // node wins. Calls that must not block are wrapped in `within`.
    let opts = health::options(p.tls.as_ref(), p.ttl, false);
    let mut client = health::connect_with(&p.endpoint, opts, p.ttl).await?;
    let mut fence = Fence::default();
    let sent = Instant::now();
    let grant = within(
        "lease grant",
        p.ttl,
        client.lease_grant(p.ttl.as_secs() as i64, None),
    )
    .await?;
    let lease = grant.id();
    // At least 1 s: the keepalive interval is derived from it, and a zero
    // period would panic tokio's interval (PID 1 must not panic). A TTL
    // under the margin simply never lets the VIP be held.
    let granted = Duration::from_secs(grant.ttl().max(1) as u64);
    fence.ack(sent, granted);
    // From here on, every way out revokes the lease (so a key left behind
    // does not hold up the next holder for a TTL).
    let lease_state = Lease {
        id: lease,
        granted,
        fence,
    };
    let out = hold_term(p, rtnl, inputs, state, &mut client, &name, lease_state).await;
    let (end, resign) = match out {
        Ok((end, resign)) => (Ok(end), resign),
        Err(e) => (Err(e), None),
    };
    let cleanup = spawn_resign(client, resign, lease);
    if matches!(end, Ok(End::Stop)) {
        // Shutdown waits for the resignation: it is what lets another node
        // take over at once instead of after the TTL.
        let _ = cleanup.await;
    }
    end
}

/// This term's lease: its id, the TTL etcd granted, and the fencing
/// deadline kept from its acknowledged keepalives.
struct Lease {
    id: i64,
    granted: Duration,
    fence: Fence,
}

async fn hold_term(
    p: &Params,
    rtnl: &Rtnl,
    inputs: &mut Inputs,
    state: &watch::Sender<VipState>,
    client: &mut Client,
    name: &str,
    lease: Lease,
) -> Result<(End, Option<LeaderKey>), TermError> {
    let Lease {
        id: lease,
        granted,
        mut fence,
    } = lease;
    resign_stale(client, name, &p.identity, lease).await;
    let sent = Instant::now();
    // etcd-client sends the first keepalive itself and waits for its
    // answer (a lease etcd no longer knows is an error).
    let (mut keeper, mut acks) =
        within("lease keepalive", p.ttl, client.lease_keep_alive(lease)).await?;
    fence.ack(sent, granted);
    let mut observe = Observer::spawn(client.election_client(), name.to_string());
    let mut election = client.election_client();
    let campaign = election.campaign(name.to_string(), p.identity.clone(), lease);
    tokio::pin!(campaign);
    let mut campaigning = true;
    let mut pending: VecDeque<Instant> = VecDeque::new();
    let mut tick = tokio::time::interval(keepalive_interval(granted));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; a keepalive was just sent
    let mut refresh = tokio::time::interval(REFRESH);
    refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut held: Option<Held> = None;
    set(state, VipState::Follower { leader: None });
    let far = Instant::now() + Duration::from_secs(86400 * 365);

    loop {
        let deadline = match &held {
            Some(_) => fence.deadline().unwrap_or_else(Instant::now),
            None => far,
        };
        tokio::select! {
            biased;
            _ = sleep_until(deadline), if held.is_some() => {
                let why = format!(
                    "fencing deadline passed: no keepalive acknowledged by etcd for {} s",
                    secs(granted.saturating_sub(super::fence::margin(granted)))
                );
                let key = release(p, rtnl, held.take(), &why).await;
                return Ok((End::Again, key));
            }
            _ = inputs.stop.changed() => {
                let key = release(p, rtnl, held.take(), "shutting down").await;
                return Ok((End::Stop, key));
            }
            r = inputs.etcd_healthy.changed() => {
                if r.is_err() || !*inputs.etcd_healthy.borrow() {
                    let key = release(p, rtnl, held.take(), "the local etcd member is not healthy").await;
                    return Ok((End::Again, key));
                }
            }
            ack = acks.message() => match ack {
                Ok(Some(r)) if r.ttl() > 0 => {
                    if let Some(sent) = pending.pop_front() {
                        fence.ack(sent, Duration::from_secs(r.ttl() as u64));
                    }
                }
                Ok(Some(_)) => {
                    let key = release(p, rtnl, held.take(), "the lease expired in etcd").await;
                    return Ok((End::Again, key));
                }
                Ok(None) | Err(_) => {
                    let key = release(p, rtnl, held.take(), "lost the keepalive stream to etcd").await;
                    return Ok((End::Again, key));
                }
            },
            _ = tick.tick() => {
                let now = Instant::now();
                if keeper.keep_alive().await.is_ok() {
                    pending.push_back(now);
                }
                let link_ok = matches!(rtnl.link(&p.link).await, Ok(Some(l)) if l.up && l.carrier);
                if !link_ok {
                    let why = format!("link {} is down or gone", p.link);
                    let key = release(p, rtnl, held.take(), &why).await;
                    return Ok((End::Again, key));
                }
            }
            _ = refresh.tick(), if held.is_some() => {
                if let Some(h) = &held {
                    if let Err(e) = h.announcer.announce(p.ip) {
                        log::warn!("vip {}: {e}", p.ip);
                    }
                }
            }
            won = &mut campaign, if campaigning => {
                campaigning = false;
                let mut won = won.map_err(|source| TermError::Etcd { what: "campaign", source })?;
                let Some(key) = won.take_leader() else {
                    return Ok((End::Again, None));
                };
                if !confirm(client, name, &key, &fence).await {
                    log::info!("vip {}: elected on a lease that is gone; campaigning again", p.ip);
                    return Ok((End::Again, Some(key)));
                }
                match acquire(p, rtnl).await {
                    Ok(announcer) => {
                        let announcer = Arc::new(announcer);
                        let since = Instant::now();
                        log::info!("vip {}: holder on {} (this node: {})", p.ip, p.link, p.identity);
                        held = Some(Held {
                            key,
                            since,
                            burst: spawn_burst(announcer.clone(), p.ip),
                            announcer,
                        });
                        refresh.reset();
                        set(state, VipState::Holder { since });
                    }
                    Err(e) => {
                        // Whatever was added goes again before resigning.
                        let _ = rtnl.del_address(&p.link, p.ip, host_prefix(p.ip)).await;
                        log::error!("vip {}: cannot take it: {e}", p.ip);
                        return Ok((End::Again, Some(key)));
                    }
                }
            }
            obs = observe.rx.recv() => match obs {
                Some((key, value)) => {
                    let ours = held.as_ref().is_some_and(|h| key == h.key.key());
                    if held.is_some() && !ours {
                        let key = release(p, rtnl, held.take(), "etcd shows another holder").await;
                        return Ok((End::Again, key));
                    }
                    if held.is_none() {
                        if value != p.identity {
                            log::info!("vip {}: follower, held by {value}", p.ip);
                        }
                        set(state, VipState::Follower { leader: Some(value) });
                    }
                }
                None => {
                    let key = release(p, rtnl, held.take(), "lost the observe stream to etcd").await;
                    return Ok((End::Again, key));
                }
            },
        }
    }
}

/// The election's leader as etcd's `Observe` reports it: (key, value) on
/// each change. A task of its own because the call itself returns only
/// with the first leader (gRPC response headers come with the first
/// message), and there may be none until this node's campaign wins. The
/// channel closes when the stream fails; dropping the observer ends it.
struct Observer {
    rx: tokio::sync::mpsc::Receiver<(Vec<u8>, String)>,
    task: JoinHandle<()>,
}

impl Observer {
    fn spawn(mut election: etcd_client::ElectionClient, name: String) -> Observer {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let task = tokio::spawn(async move {
            let Ok(mut stream) = election.observe(name).await else {
                return;
            };
            while let Ok(Some(mut r)) = stream.message().await {
                if let Some(kv) = r.take_kv() {
                    let value = String::from_utf8_lossy(kv.value()).into_owned();
                    if tx.send((kv.key().to_vec(), value)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Observer { rx, task }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Removes the address (first thing, before anything that talks to etcd)
/// and returns the key to resign.
async fn release(p: &Params, rtnl: &Rtnl, held: Option<Held>, why: &str) -> Option<LeaderKey> {
    let h = held?;
    h.burst.abort();
    match rtnl.del_address(&p.link, p.ip, host_prefix(p.ip)).await {
        Ok(()) => log::warn!(
            "vip {}: released from {} after {} s: {why}",
            p.ip,
            p.link,
            secs(h.since.elapsed())
        ),
        Err(e) => log::error!("vip {}: {why}, but removing it failed: {e}", p.ip),
    }
    Some(h.key)
}

/// After `Campaign` returns: is our key the leader, on a live lease?
async fn confirm(client: &mut Client, name: &str, key: &LeaderKey, fence: &Fence) -> bool {
    if !fence.valid_at(Instant::now()) {
        return false;
    }
    match timeout(RESIGN_TIMEOUT, client.leader(name.to_string())).await {
        Ok(Ok(r)) => r.kv().is_some_and(|kv| kv.key() == key.key()),
        _ => false,
    }
}

/// Adds the address and opens the announcing socket.
async fn acquire(p: &Params, rtnl: &Rtnl) -> Result<Announcer, TermError> {
    let link: Link = rtnl
        .link(&p.link)
        .await?
        .ok_or_else(|| TermError::NoLink(p.link.clone()))?;
    let mac = link.mac.ok_or_else(|| TermError::NoMac(p.link.clone()))?;
    rtnl.add_host_address(&link, p.ip).await?;
    Ok(Announcer::open(&link.name, link.index, mac)?)
}

fn spawn_burst(announcer: Arc<Announcer>, ip: IpAddr) -> JoinHandle<()> {
    tokio::spawn(async move {
        for i in 0..BURST_COUNT {
            if i > 0 {
                sleep(BURST_GAP).await;
            }
            if let Err(e) = announcer.announce(ip) {
                log::warn!("vip {ip}: {e}");
            }
        }
    })
}

/// Resigns `key` (if held) and revokes the lease, each on a short
/// deadline, in a task of its own so a slow etcd cannot hold up the loop.
fn spawn_resign(mut client: Client, key: Option<LeaderKey>, lease: i64) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Some(key) = key {
            let opts = ResignOptions::new().with_leader(key);
            let _ = timeout(RESIGN_TIMEOUT, client.resign(Some(opts))).await;
        }
        let _ = timeout(RESIGN_TIMEOUT, client.lease_revoke(lease)).await;
    })
}

/// Resigns keys this node campaigned with on an earlier lease (a previous
/// boot, or a process that was killed): without this the election waits
/// for that lease to expire.
async fn resign_stale(client: &mut Client, name: &str, identity: &str, lease: i64) {
    let prefix = format!("{name}/");
    let resp = match timeout(
        RESIGN_TIMEOUT,
        client.get(prefix.as_str(), Some(GetOptions::new().with_prefix())),
    )
    .await
    {
        Ok(Ok(r)) => r,
        _ => return,
    };
    for kv in resp.kvs() {
        if kv.value() != identity.as_bytes() || kv.lease() == lease {
            continue;
        }
        let key = LeaderKey::new()
            .with_name(name)
            .with_key(kv.key())
            .with_rev(kv.create_revision())
            .with_lease(kv.lease());
        let opts = ResignOptions::new().with_leader(key);
        let resigned = timeout(RESIGN_TIMEOUT, client.resign(Some(opts))).await;
        let _ = timeout(RESIGN_TIMEOUT, client.lease_revoke(kv.lease())).await;
        log::info!(
            "vip {name}: resigned a stale campaign of this node (lease {:x}){}",
            kv.lease(),
            if matches!(resigned, Ok(Ok(_))) {
                ""
            } else {
                " (resign failed; lease revoked)"
            }
        );
    }
}
