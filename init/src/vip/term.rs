//! One term of a VIP's election, from the campaign to the release.
//!
//! A term ends for one [`Why`]; every way out goes through one release
//! path ([`Session::finish`]): the address is removed and confirmed gone
//! from every link first, and only then is the campaign resigned and the
//! lease revoked. An address that will not go keeps the lease (nobody
//! else can win while it lives) and is retried on every keepalive tick;
//! when the lease cannot be kept any longer, [`LinkOps::last_resort`]
//! reboots the node.

use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, sleep_until, Instant, MissedTickBehavior};

use super::campaign::RELEASED;
use super::election::{set, Inputs, Params, BURST_COUNT, BURST_GAP, REFRESH};
use super::fence::{keepalive_interval, margin, Fence};
use super::gate::{Gate, Item};
use super::ops::{EtcdEvent, HeldKey, LinkOps, OpError, TermOps};
use super::{secs, VipState};

/// Quick attempts to remove the address before keeping the lease and
/// retrying on every keepalive tick.
const REMOVE_TRIES: u32 = 3;
const REMOVE_GAP: Duration = Duration::from_millis(100);
/// How soon a check that got no answer is asked again.
const RECHECK: Duration = Duration::from_millis(200);
/// How often the loud "cannot remove" line is repeated.
const STUCK_LOG: Duration = Duration::from_secs(10);

/// How a term ended, for the loop.
pub(crate) enum End {
    /// Shutting down.
    Stop,
    /// The node is being rebooted (the last resort): nothing more to do.
    Halted,
    /// Campaign again at once: another node won fairly.
    Again,
    /// The term was lost (already logged): campaign again after a pause,
    /// so a failing etcd is not flooded with lease grants.
    Pause,
    /// Something failed: log, pause, campaign again.
    Retry(String),
}

/// Why a term ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Why {
    Stop,
    /// The fencing deadline passed without a newer acknowledgement.
    Deadline,
    /// The local etcd member restarted or stopped (a failed probe alone
    /// does not count: `boot/controlplane.rs`, `healthy_watch`).
    Unhealthy,
    /// etcd answered a keepalive with TTL 0: the lease is gone.
    LeaseExpired,
    /// etcd deleted this node's campaign key.
    KeyGone,
    KeepaliveLost,
    LinkDown,
    OtherHolder,
    ObserveLost,
    /// Won, but the fence had passed by the time the address could go on.
    NotConfirmed,
    /// This node was paused (its clock stood still): the lease may be
    /// gone and another node may hold the VIP (`pause.rs`).
    Paused,
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
            Why::Unhealthy => "the local etcd member restarted or stopped".into(),
            Why::LeaseExpired => "the lease expired in etcd".into(),
            Why::KeyGone => "etcd deleted this node's campaign key (its lease was revoked)".into(),
            Why::KeepaliveLost => "lost the keepalive stream to etcd".into(),
            Why::LinkDown => format!("link {} is down or gone", p.link),
            Why::OtherHolder => "etcd shows another holder".into(),
            Why::ObserveLost => "lost the observe or key watch stream to etcd".into(),
            Why::NotConfirmed => "won after the fencing deadline had passed".into(),
            Why::Paused => "this node was paused: the lease may have expired meanwhile".into(),
            Why::Failed(e) => e.clone(),
        }
    }

    /// Whether the lease may still keep others out: then an address that
    /// will not go is retried under it; otherwise (another node may hold
    /// the VIP already, or soon) only the last resort is left.
    fn lease_may_live(&self) -> bool {
        !matches!(
            self,
            Why::Deadline
                | Why::LeaseExpired
                | Why::KeyGone
                | Why::KeepaliveLost
                | Why::OtherHolder
                | Why::Paused
        )
    }

    /// What the loop does next.
    fn end(&self, text: &str) -> End {
        match self {
            Why::Stop => End::Stop,
            Why::OtherHolder => End::Again,
            Why::Failed(_) | Why::NotConfirmed => End::Retry(text.to_owned()),
            _ => End::Pause,
        }
    }
}

/// This node's win, and whether the address may be on a link.
pub(crate) struct Won {
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

enum Stuck {
    Removed,
    Stop,
    Halted,
}

/// One term: the lease's etcd session and keepalive bookkeeping, the
/// link, and what drives the loop.
pub(crate) struct Session<'a, L, T> {
    p: &'a Params,
    link: &'a L,
    t: T,
    events: mpsc::Receiver<EtcdEvent>,
    inputs: &'a mut Inputs,
    pub(crate) fence: Fence,
    granted: Duration,
    /// What waits to be sent for the VIP until etcd confirms the lease.
    gate: Gate,
}

impl<'a, L: LinkOps, T: TermOps> Session<'a, L, T> {
    pub(crate) fn new(
        p: &'a Params,
        link: &'a L,
        t: T,
        events: mpsc::Receiver<EtcdEvent>,
        inputs: &'a mut Inputs,
        granted: Duration,
    ) -> Self {
        Session {
            p,
            link,
            t,
            events,
            inputs,
            fence: Fence::default(),
            granted,
            gate: Gate::default(),
        }
    }

    /// Handles the answer to a keepalive sent at `sent`; Some(why) when it
    /// ends the term.
    fn on_ack(&mut self, ttl: i64, sent: Instant) -> Option<Why> {
        if ttl <= 0 {
            self.gate.clear();
            return Some(Why::LeaseExpired);
        }
        self.fence
            .ack(sent, Duration::from_secs(ttl.unsigned_abs()));
        None
    }

    async fn keep_alive(&mut self) {
        self.t.keep_alive().await;
    }

    /// Starts a check of the lease for the gate (`gate.rs`).
    fn check(&mut self, won: &Option<Won>) {
        if let Some(w) = won {
            let round = self.gate.sent(true);
            self.t.check(&w.key, round);
        }
    }

    /// Queues `item` until a check started after it confirms the lease.
    fn wait(&mut self, item: Item, won: &Option<Won>) {
        if self.gate.wait(item) {
            self.check(won);
        }
    }

    /// Sends what a check confirmed, if the VIP is held and the fence
    /// still holds.
    fn release(&mut self, ready: Vec<Item>, won: &mut Option<Won>) {
        let (p, link) = (self.p, self.link);
        let Some(w) = won.as_mut().filter(|w| w.index.is_some()) else {
            return;
        };
        if !self.fence.valid_at(Instant::now()) {
            return;
        }
        // A confirmation that arrived just before a pause is stale after
        // it, and the fence, counted on the clock that stood still, cannot
        // tell: ask the RTC now (the watchdog then drops the VIP).
        if self
            .inputs
            .watchdog
            .as_ref()
            .is_some_and(|w| w.paused_now())
        {
            return;
        }
        for item in ready {
            match item {
                Item::Answer(a) => {
                    if let Err(e) = link.answer(p.ip, &a) {
                        log::warn!("vip {}: {e}", p.ip);
                    }
                }
                Item::Announce => {
                    if let Err(e) = link.announce(p.ip) {
                        log::warn!("vip {}: {e}", p.ip);
                    }
                    w.announced += 1;
                    let gap = if w.announced < BURST_COUNT {
                        BURST_GAP
                    } else {
                        REFRESH
                    };
                    w.next_announce = Instant::now() + gap;
                }
            }
        }
    }

    fn keepalive_tick(&self) -> tokio::time::Interval {
        let mut tick = tokio::time::interval(keepalive_interval(self.granted));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick
    }

    /// Campaigns and holds until something ends the term.
    pub(crate) async fn hold(&mut self, state: &watch::Sender<VipState>) -> (Why, Option<Won>) {
        let (p, link) = (self.p, self.link);
        let mut tick = self.keepalive_tick();
        // The first tick is immediate: one keepalive now, in the
        // background (the campaign does not wait for it). The fence counts
        // from the grant's send time, and a grant etcd answered only after
        // electing its first leader (a second or more) would leave the
        // fence short of the next tick.
        tick.tick().await;
        self.keep_alive().await;
        let mut won: Option<Won> = None;
        let mut recheck_at: Option<Instant> = None;
        let far = Instant::now() + Duration::from_secs(86400 * 365);
        loop {
            let holding = won.as_ref().is_some_and(|w| w.index.is_some());
            // Won (confirming or holding): the fence ends the term.
            let fenced = won.is_some();
            let deadline = match fenced {
                true => self.fence.deadline().unwrap_or_else(Instant::now),
                false => far,
            };
            let announce_at = won.as_ref().map_or(far, |w| w.next_announce);
            let why = tokio::select! {
                biased;
                _ = sleep_until(deadline), if fenced => Why::Deadline,
                _ = sleep_until(recheck_at.unwrap_or(far)), if recheck_at.is_some() => {
                    recheck_at = None;
                    if self.gate.stalled() {
                        self.check(&won);
                    }
                    continue;
                }
                _ = self.inputs.stop.changed() => Why::Stop,
                r = self.inputs.etcd_healthy.changed() => {
                    if r.is_ok() && *self.inputs.etcd_healthy.borrow() {
                        continue;
                    }
                    Why::Unhealthy
                }
                ev = self.events.recv() => match ev {
                    Some(EtcdEvent::Ack { ttl, sent }) => match self.on_ack(ttl, sent) {
                        Some(why) => why,
                        None => continue,
                    },
                    Some(EtcdEvent::Checked { round, alive: Some(true) }) => {
                        let (ready, again) = self.gate.acked(round);
                        self.release(ready, &mut won);
                        if again {
                            self.check(&won);
                        }
                        continue;
                    }
                    // The key or its lease is gone: another node may win.
                    Some(EtcdEvent::Checked { alive: Some(false), .. }) => Why::LeaseExpired,
                    Some(EtcdEvent::Checked { round, alive: None }) => {
                        // No answer (a leader election, a timeout): ask
                        // again soon rather than on the next keepalive
                        // tick, so a win or an answer is not held up by
                        // one failed read.
                        self.gate.failed(round);
                        if self.gate.stalled() {
                            recheck_at = Some(Instant::now() + RECHECK);
                        }
                        continue;
                    }
                    Some(EtcdEvent::KeepaliveLost) | None => Why::KeepaliveLost,
                    Some(EtcdEvent::ObserveLost) => Why::ObserveLost,
                    // Nobody's lease keeps the others out any more: the
                    // next node may win within a round trip.
                    Some(EtcdEvent::KeyGone) => Why::KeyGone,
                    Some(EtcdEvent::CampaignFailed(e)) => Why::Failed(e),
                    Some(EtcdEvent::Won(key)) => {
                        // The win is itself a committed observation of this
                        // node's key first among the live ones, with its
                        // lease (`campaign.rs`): the address goes on if the
                        // fence still holds, and the first announcement
                        // follows at once unless a pause intervened
                        // (`release`). Every later one waits for a check.
                        won = Some(Won::new(key, None));
                        if let Some(why) = self.take(&mut won).await {
                            return (why, won);
                        }
                        log::info!("vip {}: holder on {} (this node: {})", p.ip, p.link, p.identity);
                        if let Some(w) = &won {
                            set(state, VipState::Holder { since: w.since });
                        }
                        self.release(vec![Item::Announce], &mut won);
                        continue;
                    }
                    // A holder that let go (`campaign::RELEASED`): nobody
                    // holds it until the next campaign wins.
                    Some(EtcdEvent::Leader { value, .. }) if value == RELEASED => {
                        if won.is_none() {
                            set(state, VipState::Follower { leader: None });
                        }
                        continue;
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
                _ = changed(&mut self.inputs.paused) => {
                    if won.is_none() {
                        continue;
                    }
                    Why::Paused
                }
                _ = tick.tick() => {
                    self.keep_alive().await;
                    if self.gate.stalled() {
                        self.check(&won);
                    }
                    if matches!(link.ready(&p.link).await, Ok(true)) {
                        continue;
                    }
                    Why::LinkDown
                }
                asked = link.asked(), if holding => match asked {
                    Ok(a) => {
                        self.wait(Item::Answer(a), &won);
                        continue;
                    }
                    Err(e) => Why::Failed(format!("cannot read requests for it: {e}")),
                },
                _ = sleep_until(announce_at), if holding => {
                    // Sent once etcd confirms the lease (`release`).
                    if let Some(w) = &mut won {
                        w.next_announce = far;
                    }
                    self.wait(Item::Announce, &won);
                    continue;
                }
            };
            return (why, won);
        }
    }

    /// Adds the address on a win, if the fence still holds; Some(why) when the term must end (nothing added, or part of
    /// it: `finish` then scans every link for it).
    async fn take(&mut self, won: &mut Option<Won>) -> Option<Why> {
        let w = won.as_mut()?;
        if !self.fence.valid_at(Instant::now()) {
            return Some(Why::NotConfirmed);
        }
        match self.link.add(&self.p.link, self.p.ip).await {
            Ok(index) => {
                w.index = Some(index);
                w.since = Instant::now();
                None
            }
            Err(e) => Some(Why::Failed(format!("cannot take it: {e}"))),
        }
    }

    /// The one release path: the address off every link (confirmed), then
    /// resign and revoke. An address that will not go keeps the lease.
    pub(crate) async fn finish(mut self, why: Why, won: Option<Won>) -> End {
        let p = self.p;
        let text = why.text(p, self.granted);
        let end = why.end(&text);
        let Some(won) = won else {
            self.t.revoke().await;
            return end;
        };
        let added = won.index.is_some() || matches!(why, Why::Failed(_));
        if added {
            match remove_confirmed(self.link, p.ip, won.index).await {
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
                        self.link.last_resort(&format!(
                            "vip {}: cannot remove the address and the lease is gone ({text}): rebooting so that it leaves the wire",
                            p.ip
                        ));
                        return End::Halted;
                    }
                    match self.stuck(won.index).await {
                        Stuck::Removed => {}
                        Stuck::Stop => return End::Stop,
                        Stuck::Halted => return End::Halted,
                    }
                }
            }
        }
        self.t.resign(&won.key).await;
        self.t.revoke().await;
        end
    }

    /// The address will not go: keep the lease alive (so no other node
    /// can win) and retry on every keepalive tick; when the lease can no
    /// longer be kept, the last resort.
    async fn stuck(&mut self, index: Option<u32>) -> Stuck {
        let (p, link) = (self.p, self.link);
        let mut tick = self.keepalive_tick();
        let mut last_log = Instant::now();
        loop {
            let deadline = self.fence.deadline().unwrap_or_else(Instant::now);
            let lost = tokio::select! {
                biased;
                _ = sleep_until(deadline) => "the fencing deadline passed",
                _ = self.inputs.stop.changed() => return Stuck::Stop,
                ev = self.events.recv() => match ev {
                        Some(EtcdEvent::Ack { ttl, sent }) => match self.on_ack(ttl, sent) {
                        Some(_) => "the lease expired in etcd",
                        None => continue,
                    },
                    Some(EtcdEvent::KeepaliveLost) | None => "the keepalive stream was lost",
                    Some(_) => continue,
                },
                _ = tick.tick() => {
                    self.keep_alive().await;
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
}

/// The next change of `rx`; never, once its sender is gone.
async fn changed(rx: &mut watch::Receiver<u64>) {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
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
