//! One VIP's election loop: wait for a healthy local etcd and the link,
//! then run terms (lease → campaign → hold → release) until told to stop.
//!
//! A term ends for one [`Why`]; every way out goes through one release
//! path ([`finish`]): the address is removed and confirmed gone from every
//! link first, and only then is the campaign resigned and the lease
//! revoked. An address that will not go keeps the lease (nobody else can
//! win while it lives) and is retried; when the lease cannot be kept any
//! longer, [`LinkOps::last_resort`] reboots the node.
//!
//! Written against [`LinkOps`] and [`EtcdOps`] only (see [`super::ops`]);
//! election_tests.rs drives it with recording fakes.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, sleep_until, Instant, MissedTickBehavior};

use super::fence::{keepalive_interval, margin, Fence};
use super::ops::{EtcdClient, EtcdEvent, EtcdOps, HeldKey, LinkOps, OpError, RtnlLink, TermOps};
use super::{election_name, secs, VipState};
use crate::etcd::args::ClientTls;
use crate::net::rtnl::Rtnl;

/// Gratuitous ARP / NA burst on acquiring: 5 announcements 200 ms apart,
/// then one every 10 s while held (for switches and hosts that missed the
/// burst or flushed their tables).
pub(crate) const BURST_COUNT: u32 = 5;
pub(crate) const BURST_GAP: Duration = Duration::from_millis(200);
pub(crate) const REFRESH: Duration = Duration::from_secs(10);
/// Between terms after an error (etcd unreachable, the link missing, the
/// address could not be added).
pub(crate) const RETRY: Duration = Duration::from_secs(1);
/// Quick attempts to remove the address before keeping the lease and
/// retrying on every keepalive tick.
const REMOVE_TRIES: u32 = 3;
const REMOVE_GAP: Duration = Duration::from_millis(100);
/// How often the loud "cannot remove" line is repeated.
const STUCK_LOG: Duration = Duration::from_secs(10);

/// What one election needs.
#[derive(Debug, Clone)]
pub struct Params {
    pub ip: IpAddr,
    pub ttl: Duration,
    /// The link the address goes on (`<link>.<vid>` for a VLAN VIP).
    pub link: String,
    /// The campaign value: `<hostname>/<etcd member name>`.
    pub identity: String,
}

/// What drives the loop from outside.
pub struct Inputs {
    /// True while the local etcd member is healthy.
    pub etcd_healthy: watch::Receiver<bool>,
    /// Becomes true to release, resign and return (graceful shutdown).
    pub stop: watch::Receiver<bool>,
}

/// Runs the election for `p` against the local etcd member at `endpoint`
/// until `inputs.stop` becomes true; publishes its state on `state`.
/// Never returns an error: failures are logged and a new term starts.
pub async fn run(
    p: Params,
    endpoint: String,
    tls: Option<ClientTls>,
    mut inputs: Inputs,
    state: watch::Sender<VipState>,
) {
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
    let etcd = EtcdClient {
        endpoint,
        tls,
        ttl: p.ttl,
        name: election_name(p.ip),
        identity: p.identity.clone(),
    };
    elect(&p, &RtnlLink::new(rtnl), &etcd, inputs, &state).await;
}

/// The loop itself, over any link and etcd.
pub async fn elect<L: LinkOps, E: EtcdOps>(
    p: &Params,
    link: &L,
    etcd: &E,
    mut inputs: Inputs,
    state: &watch::Sender<VipState>,
) {
    let mut logged_wait = String::new();
    loop {
        if *inputs.stop.borrow() {
            return;
        }
        set(state, VipState::WaitingForEtcd);
        let waiting = if !*inputs.etcd_healthy.borrow() {
            Some("the local etcd member to be healthy".to_string())
        } else {
            match link.ready(&p.link).await {
                Ok(true) => None,
                Ok(false) => Some(format!("link {} to be up", p.link)),
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
                _ = changed(&mut inputs.etcd_healthy) => {}
                _ = sleep(RETRY) => {}
            }
            continue;
        }
        logged_wait.clear();
        match term(p, link, etcd, &mut inputs, state).await {
            End::Stop | End::Halted => return,
            End::Again => {}
            End::Pause => {
                if pause(&mut inputs.stop, RETRY).await {
                    return;
                }
            }
            End::Retry(e) => {
                log::warn!("vip {}: {e}; trying again in {} s", p.ip, RETRY.as_secs());
                if pause(&mut inputs.stop, RETRY).await {
                    return;
                }
            }
        }
    }
}

/// How a term ended, for the loop.
enum End {
    /// Shutting down.
    Stop,
    /// The node is being rebooted (the last resort): nothing more to do.
    Halted,
    /// Campaign again at once: another node won fairly.
    Again,
    /// The term was lost (already logged): campaign again after [`RETRY`],
    /// so a failing etcd is not flooded with lease grants.
    Pause,
    /// Something failed: log, wait [`RETRY`], campaign again.
    Retry(String),
}

/// Why a term ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Why {
    Stop,
    /// The fencing deadline passed without a newer acknowledgement.
    Deadline,
    Unhealthy,
    /// etcd answered a keepalive with TTL 0: the lease is gone.
    LeaseExpired,
    KeepaliveLost,
    LinkDown,
    OtherHolder,
    ObserveLost,
    /// Won, but the lease or the leadership did not check out.
    NotConfirmed,
    Failed(String),
}

impl Why {
    fn text(&self, p: &Params, granted: Duration) -> String {
        match self {
            Why::Stop => "shutting down".into(),
            Why::Deadline => format!(
                "fencing deadline passed: no keepalive acknowledged by etcd for {} s",
                secs(granted.saturating_sub(margin(granted)))
            ),
            Why::Unhealthy => "the local etcd member is not healthy".into(),
            Why::LeaseExpired => "the lease expired in etcd".into(),
            Why::KeepaliveLost => "lost the keepalive stream to etcd".into(),
            Why::LinkDown => format!("link {} is down or gone", p.link),
            Why::OtherHolder => "etcd shows another holder".into(),
            Why::ObserveLost => "lost the observe stream to etcd".into(),
            Why::NotConfirmed => "elected on a lease or key that is gone".into(),
            Why::Failed(e) => e.clone(),
        }
    }

    /// Whether the lease may still keep others out: then an address that
    /// will not go is retried under it; otherwise (another node may hold
    /// the VIP already, or soon) only the last resort is left.
    fn lease_may_live(&self) -> bool {
        !matches!(
            self,
            Why::Deadline | Why::LeaseExpired | Why::KeepaliveLost | Why::OtherHolder
        )
    }
}

/// This node's win, and whether the address may be on a link.
struct Won {
    key: HeldKey,
    /// The link index the address went on; None when adding failed
    /// (part of it may be there: removal then scans every link).
    index: Option<u32>,
    since: Instant,
    next_announce: Instant,
    announced: u32,
}

impl Won {
    fn new(key: HeldKey, index: Option<u32>) -> Won {
        let now = Instant::now();
        Won {
            key,
            index,
            since: now,
            next_announce: now,
            announced: 0,
        }
    }
}

/// The lease's keepalive bookkeeping within a term.
struct Keepalive {
    fence: Fence,
    granted: Duration,
    /// Send times of keepalives not yet acknowledged, in order.
    pending: VecDeque<Instant>,
}

impl Keepalive {
    /// Handles a keepalive answer; Some(why) when it ends the term.
    fn on_ack(&mut self, ttl: i64) -> Option<Why> {
        if ttl <= 0 {
            return Some(Why::LeaseExpired);
        }
        if let Some(sent) = self.pending.pop_front() {
            self.fence
                .ack(sent, Duration::from_secs(ttl.unsigned_abs()));
        }
        None
    }

    async fn send<T: TermOps>(&mut self, t: &mut T) {
        let now = Instant::now();
        if t.keep_alive().await {
            self.pending.push_back(now);
        }
    }
}

/// One lease's life: grant, campaign, maybe hold, then [`finish`].
async fn term<L: LinkOps, E: EtcdOps>(
    p: &Params,
    link: &L,
    etcd: &E,
    inputs: &mut Inputs,
    state: &watch::Sender<VipState>,
) -> End {
    let mut t = match etcd.term().await {
        Ok(t) => t,
        Err(e) => return End::Retry(e.0),
    };
    let sent = Instant::now();
    let granted = match t.grant(p.ttl).await {
        Ok(g) => g,
        Err(e) => return End::Retry(e.0),
    };
    let mut ka = Keepalive {
        fence: Fence::default(),
        granted,
        pending: VecDeque::new(),
    };
    ka.fence.ack(sent, granted);
    t.resign_stale().await;
    let (tx, mut events) = mpsc::channel(32);
    let sent = Instant::now();
    if let Err(e) = t.start(tx).await {
        t.revoke().await;
        return End::Retry(e.0);
    }
    ka.fence.ack(sent, granted);
    set(state, VipState::Follower { leader: None });
    let (why, won) = hold(p, link, &mut t, &mut events, inputs, state, &mut ka).await;
    finish(p, link, &mut t, &mut events, inputs, &mut ka, why, won).await
}

/// Campaigns and holds until something ends the term.
async fn hold<L: LinkOps, T: TermOps>(
    p: &Params,
    link: &L,
    t: &mut T,
    events: &mut mpsc::Receiver<EtcdEvent>,
    inputs: &mut Inputs,
    state: &watch::Sender<VipState>,
    ka: &mut Keepalive,
) -> (Why, Option<Won>) {
    let mut tick = tokio::time::interval(keepalive_interval(ka.granted));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; a keepalive was just sent
    let mut won: Option<Won> = None;
    let far = Instant::now() + Duration::from_secs(86400 * 365);
    loop {
        let holding = won.as_ref().is_some_and(|w| w.index.is_some());
        let deadline = match holding {
            true => ka.fence.deadline().unwrap_or_else(Instant::now),
            false => far,
        };
        let announce_at = won.as_ref().map_or(far, |w| w.next_announce);
        let why = tokio::select! {
            biased;
            _ = sleep_until(deadline), if holding => Why::Deadline,
            _ = inputs.stop.changed() => Why::Stop,
            r = inputs.etcd_healthy.changed() => {
                if r.is_ok() && *inputs.etcd_healthy.borrow() {
                    continue;
                }
                Why::Unhealthy
            }
            ev = events.recv() => match ev {
                Some(EtcdEvent::Ack { ttl }) => match ka.on_ack(ttl) {
                    Some(why) => why,
                    None => continue,
                },
                Some(EtcdEvent::KeepaliveLost) | None => Why::KeepaliveLost,
                Some(EtcdEvent::ObserveLost) => Why::ObserveLost,
                Some(EtcdEvent::CampaignFailed(e)) => Why::Failed(e),
                Some(EtcdEvent::Won(key)) => {
                    match acquire(p, link, t, &ka.fence, key).await {
                        Ok(w) => {
                            log::info!("vip {}: holder on {} (this node: {})", p.ip, p.link, p.identity);
                            set(state, VipState::Holder { since: w.since });
                            won = Some(w);
                            continue;
                        }
                        Err((why, w)) => {
                            won = w;
                            why
                        }
                    }
                }
                Some(EtcdEvent::Leader { key, value }) => match &won {
                    Some(w) if w.key.key != key => Why::OtherHolder,
                    Some(_) => continue,
                    None => {
                        if value != p.identity {
                            log::info!("vip {}: follower, held by {value}", p.ip);
                        }
                        set(state, VipState::Follower { leader: Some(value) });
                        continue;
                    }
                },
            },
            _ = tick.tick() => {
                ka.send(t).await;
                if matches!(link.ready(&p.link).await, Ok(true)) {
                    continue;
                }
                Why::LinkDown
            }
            _ = sleep_until(announce_at), if holding => {
                if let Some(w) = &mut won {
                    if let Err(e) = link.announce(p.ip) {
                        log::warn!("vip {}: {e}", p.ip);
                    }
                    w.announced += 1;
                    let gap = if w.announced < BURST_COUNT { BURST_GAP } else { REFRESH };
                    w.next_announce = Instant::now() + gap;
                }
                continue;
            }
        };
        return (why, won);
    }
}

/// After `Campaign` returned: checks the lease and the leadership, then
/// adds the address. On failure, the key to resign (and whether the
/// address may be partly there) comes back with the reason.
async fn acquire<L: LinkOps, T: TermOps>(
    p: &Params,
    link: &L,
    t: &mut T,
    fence: &Fence,
    key: HeldKey,
) -> Result<Won, (Why, Option<Won>)> {
    // etcd 3.4's Campaign can return after the caller's own key expired
    // while it waited; and the fence must still hold after the Leader
    // round trip, right before the address goes on.
    let confirmed =
        fence.valid_at(Instant::now()) && t.confirm(&key).await && fence.valid_at(Instant::now());
    if !confirmed {
        return Err((Why::NotConfirmed, Some(Won::new(key, None))));
    }
    match link.add(&p.link, p.ip).await {
        Ok(index) => Ok(Won::new(key, Some(index))),
        // Part of it may be there: `finish` scans every link for it.
        Err(e) => Err((
            Why::Failed(format!("cannot take it: {e}")),
            Some(Won::new(key, None)),
        )),
    }
}

/// The one release path: the address off every link (confirmed), then
/// resign and revoke. An address that will not go keeps the lease.
#[allow(clippy::too_many_arguments)]
async fn finish<L: LinkOps, T: TermOps>(
    p: &Params,
    link: &L,
    t: &mut T,
    events: &mut mpsc::Receiver<EtcdEvent>,
    inputs: &mut Inputs,
    ka: &mut Keepalive,
    why: Why,
    won: Option<Won>,
) -> End {
    let text = why.text(p, ka.granted);
    let end = match &why {
        Why::Stop => End::Stop,
        Why::OtherHolder => End::Again,
        Why::Failed(e) => End::Retry(e.clone()),
        Why::NotConfirmed => End::Retry(text.clone()),
        _ => End::Pause,
    };
    let Some(won) = won else {
        t.revoke().await;
        return end;
    };
    let added = won.index.is_some() || matches!(why, Why::Failed(_));
    if added {
        match remove_confirmed(link, p.ip, won.index).await {
            Ok(()) if won.index.is_some() => log::warn!(
                "vip {}: released from {} after {} s: {text}",
                p.ip,
                p.link,
                secs(won.since.elapsed())
            ),
            Ok(()) => {}
            Err(e) => {
                log::error!(
                    "vip {}: {text}, but the address will not go from {}: {e}; NOT resigning: the lease stays, so no other node takes the VIP while this one has it",
                    p.ip,
                    p.link
                );
                if why == Why::Stop {
                    // Power-off takes the address with the link; the
                    // lease expires by itself.
                    return End::Stop;
                }
                if !why.lease_may_live() {
                    link.last_resort(&format!(
                        "vip {}: cannot remove the address and the lease is gone ({text}): rebooting so that it leaves the wire",
                        p.ip
                    ));
                    return End::Halted;
                }
                match stuck(p, link, t, events, inputs, ka, won.index).await {
                    Stuck::Removed => {}
                    Stuck::Stop => return End::Stop,
                    Stuck::Halted => return End::Halted,
                }
            }
        }
    }
    t.resign(&won.key).await;
    t.revoke().await;
    end
}

/// Removes `ip` from the link it went on and from any other link that
/// has it, until no link has it; a few quick tries.
async fn remove_confirmed<L: LinkOps>(
    link: &L,
    ip: IpAddr,
    index: Option<u32>,
) -> Result<(), OpError> {
    let mut last = None;
    for attempt in 0..REMOVE_TRIES {
        if attempt > 0 {
            sleep(REMOVE_GAP).await;
        }
        if let Some(i) = index {
            if let Err(e) = link.remove(i, ip).await {
                last = Some(e);
            }
        }
        // The link may have been renamed or recreated: whoever has the
        // address now loses it too.
        let left = match link.holders(ip).await {
            Ok(h) if h.is_empty() => return Ok(()),
            Ok(h) => h,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        for i in &left {
            if let Err(e) = link.remove(*i, ip).await {
                last = Some(e);
            }
        }
        match link.holders(ip).await {
            Ok(h) if h.is_empty() => return Ok(()),
            Ok(h) => {
                last.get_or_insert(OpError(format!("still on link index {h:?}")));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| OpError("the address is still there".into())))
}

enum Stuck {
    Removed,
    Stop,
    Halted,
}

/// The address will not go: keep the lease alive (so no other node can
/// win) and retry on every keepalive tick; when the lease can no longer
/// be kept, the last resort.
async fn stuck<L: LinkOps, T: TermOps>(
    p: &Params,
    link: &L,
    t: &mut T,
    events: &mut mpsc::Receiver<EtcdEvent>,
    inputs: &mut Inputs,
    ka: &mut Keepalive,
    index: Option<u32>,
) -> Stuck {
    let mut tick = tokio::time::interval(keepalive_interval(ka.granted));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_log = Instant::now();
    loop {
        let deadline = ka.fence.deadline().unwrap_or_else(Instant::now);
        let lost = tokio::select! {
            biased;
            _ = sleep_until(deadline) => "the fencing deadline passed",
            _ = inputs.stop.changed() => return Stuck::Stop,
            ev = events.recv() => match ev {
                Some(EtcdEvent::Ack { ttl }) => match ka.on_ack(ttl) {
                    Some(_) => "the lease expired in etcd",
                    None => continue,
                },
                Some(EtcdEvent::KeepaliveLost) | None => "the keepalive stream was lost",
                Some(_) => continue,
            },
            _ = tick.tick() => {
                ka.send(t).await;
                match remove_confirmed(link, p.ip, index).await {
                    Ok(()) => {
                        log::warn!("vip {}: the address is gone from {} at last", p.ip, p.link);
                        return Stuck::Removed;
                    }
                    Err(e) if last_log.elapsed() >= STUCK_LOG => {
                        last_log = Instant::now();
                        log::error!("vip {}: still cannot remove the address: {e}; holding the lease", p.ip);
                    }
                    Err(_) => {}
                }
                continue;
            }
        };
        link.last_resort(&format!(
            "vip {}: cannot remove the address and {lost}: rebooting so that it leaves the wire",
            p.ip
        ));
        return Stuck::Halted;
    }
}

/// The next change of `rx`; never, once its sender is gone (so a select
/// does not spin on a closed channel).
async fn changed(rx: &mut watch::Receiver<bool>) {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
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

#[cfg(test)]
#[path = "election_tests.rs"]
mod tests;
