//! One VIP's election loop: wait for a healthy local etcd and the link,
//! then run terms (lease → campaign → hold → release) until told to stop.
//!
//! A term ([`super::term`]) ends for one reason; every way out goes
//! through one release path: the address is removed and confirmed gone
//! from every link first, and only then is the campaign resigned and the
//! lease revoked.
//!
//! Written against [`LinkOps`] and [`EtcdOps`] only (see [`super::ops`]);
//! election_tests.rs drives it with recording fakes.

use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, Instant};

use super::ops::{EtcdClient, EtcdOps, LinkOps, RtnlLink, TermOps};
use super::term::{End, Session};
use super::{election_name, VipState};
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

/// What one election needs.
#[derive(Debug, Clone)]
pub struct Params {
    pub ip: IpAddr,
    pub ttl: Duration,
    /// The link the address goes on (`<link>.<vid>` for a VLAN VIP).
    pub link: String,
    /// The campaign value: `<hostname>/<etcd member name>`.
    pub identity: String,
    /// The record of the leases this node granted (`record.rs`;
    /// [`super::record::DEFAULT`] on a node).
    pub record: std::path::PathBuf,
}

/// What drives the loop from outside.
pub struct Inputs {
    /// True while the local etcd member is healthy.
    pub etcd_healthy: watch::Receiver<bool>,
    /// Becomes true to release, resign and return (graceful shutdown).
    pub stop: watch::Receiver<bool>,
    /// Counts the pauses of this node (`pause.rs`): a change drops a VIP
    /// held.
    pub paused: watch::Receiver<u64>,
    /// The watchdog behind `paused`, sampled once more right before
    /// anything is sent for the VIP (None: no RTC to read, as in tests).
    pub watchdog: Option<super::pause::Watchdog>,
}

/// Runs the election for `p` against the local etcd member at `endpoint`
/// until `inputs.stop` becomes true; publishes its state on `state`.
/// Never returns an error: failures are logged and a new term starts.
/// `shared`: the health probe's connection to that member, when there is
/// one ([`crate::etcd::health::Answering`]).
pub async fn run(
    p: Params,
    endpoint: String,
    tls: Option<ClientTls>,
    shared: Option<crate::etcd::health::AnsweringRx>,
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
        record: p.record.clone(),
        shared,
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

/// One lease's life: grant, campaign, maybe hold, then the one release
/// path ([`Session::finish`]).
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
    t.resign_stale().await;
    link.prepare(&p.link).await;
    let (tx, events) = mpsc::channel(32);
    if let Err(e) = t.start(tx).await {
        t.revoke().await;
        return End::Retry(e.0);
    }
    let mut s = Session::new(p, link, t, events, inputs, granted);
    // The grant is the first acknowledgement: etcd's leader set the
    // lease's expiry to a full TTL when it applied the grant, after
    // `sent`.
    s.fence.ack(sent, granted);
    set(state, VipState::Follower { leader: None });
    let (why, won) = s.hold(state).await;
    s.finish(why, won).await
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

pub(crate) fn set(state: &watch::Sender<VipState>, s: VipState) {
    state.send_if_modified(|cur| {
        let changed = *cur != s;
        *cur = s;
        changed
    });
}

#[cfg(test)]
#[path = "election_tests.rs"]
mod tests;
