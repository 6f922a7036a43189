//! Keeps etcd's raft leadership off the nodes that hold a VIP.
//!
//! Why: when the holder of a VIP is also the raft leader and crashes, the
//! others must first elect a new leader (an election timeout and a vote),
//! and the new leader then extends every lease it inherits by a whole TTL
//! (etcd's lessor `Promote` refreshes each lease to now + TTL + an
//! election timeout: server/lease/lessor.go, called from
//! server/etcdserver/raft.go on becoming leader). The dead holder's lease
//! lives on for a TTL it never asked for, and the VIP is unanswered for
//! about two TTLs instead of one. When the holder is a follower, the
//! leader's lessor keeps counting down from the holder's last keepalive,
//! and the VIP moves within the TTL.
//!
//! So a node that holds a VIP and finds itself the raft leader hands the
//! leadership to a voting member that holds no VIP (etcd's `MoveLeader`,
//! which raft completes only once that member's log has caught up, and
//! abandons after an election timeout otherwise). Only a member holding no
//! VIP is a candidate, so two holders never pass leadership back and
//! forth; with one member there is nobody to hand it to, and with two a
//! crash of either costs quorum anyway, so nothing is lost there.
//!
//! Why this is safe for the fence (docs/ARCHITECTURE.md, "Fencing"): a
//! leader change never shortens a lease. The old leader's lessor stops
//! expiring leases when it is demoted, and the new one extends every
//! lease to at least a full TTL from its promotion, which is later than
//! any acknowledgement the holder's fence counts from. Keepalives sent
//! while the leadership moves are forwarded to the new leader by the
//! member that received them (etcd's `LeaseRenew` waits for a leader), so
//! the holder's fence sees acknowledgements arrive late at worst; the
//! health probe and the gate's reads retry the "leader changed" a read
//! may see meanwhile.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::VipState;
use crate::etcd::args::ClientTls;
use crate::etcd::Supervisor;

/// How often the leadership is looked at.
const EVERY: Duration = Duration::from_secs(1);
/// A member that would not take the leadership is not asked again for
/// this long.
const SKIP_FOR: Duration = Duration::from_secs(30);
/// How long one transfer may take. A healthy transferee takes over within
/// an election timeout (1 s by default; raft abandons the transfer after
/// that, but etcd's `MoveLeader` waits for its context), and a member
/// that is down never does: then the next candidate is tried.
const MOVE_TIMEOUT: Duration = Duration::from_secs(2);
/// After a hand-over, how long the member's own view (refreshed by the
/// health probe every 2 s) may still name this node the leader.
const SETTLE: Duration = Duration::from_secs(4);

/// One etcd member, as the member list gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    /// Empty while the member has not started.
    pub name: String,
    pub learner: bool,
}

/// The member to hand the leadership to: a started voter other than `me`
/// that holds no VIP (`holders`: member names) and is not in `skip`; the
/// lowest ID of those, so every run picks the same one. None: keep it.
pub fn transferee(me: u64, members: &[Member], holders: &[String], skip: &[u64]) -> Option<u64> {
    members
        .iter()
        .filter(|m| m.id != me && !m.learner && !m.name.is_empty())
        .filter(|m| !holders.contains(&m.name) && !skip.contains(&m.id))
        .map(|m| m.id)
        .min()
}

/// The member name in a campaign value (`<hostname>/<member>`).
pub fn member_of(value: &str) -> &str {
    value.rsplit('/').next().unwrap_or(value)
}

/// Whether a leader that holds VIPs may hand the leadership over now,
/// `since_win` after its last win, while another member holds a VIP
/// (`others_hold`) or not. Not right after a win while another member
/// holds one: the promotion that ends a hand-over renews every lease to a
/// full TTL, including the lease of a holder of another VIP that died
/// with the one this node just took over and whose lease was about to
/// run out (seen in the fault bench: that VIP came 6 s late). Those
/// leases stopped being renewed before this win, so `quiet` (a TTL and a
/// second) after it they are gone. When this node holds every VIP, no
/// holder's lease is left to extend, and it hands over at once: a node
/// that led raft and won a VIP (half the failovers of a three-node
/// cluster) would otherwise stay leader and holder for `quiet`, and a
/// crash then cost 7.8 s instead of 5 s (fault bench, TTL 5 s).
fn may_move(since_win: Option<Duration>, others_hold: bool, quiet: Duration) -> bool {
    !others_hold || since_win.is_none_or(|d| d >= quiet)
}

/// What the VIP elections of this node say: the VIPs it holds, the
/// members that hold the others, and when it last won one.
fn holdings(
    states: &[(IpAddr, watch::Receiver<VipState>)],
) -> (Vec<IpAddr>, Vec<String>, Option<Instant>) {
    let (mut mine, mut others, mut last_win) = (Vec::new(), Vec::new(), None);
    for (ip, rx) in states {
        match &*rx.borrow() {
            VipState::Holder { since } => {
                mine.push(*ip);
                last_win = last_win.max(Some(*since));
            }
            VipState::Follower { leader: Some(v) } => others.push(member_of(v).to_owned()),
            _ => {}
        }
    }
    (mine, others, last_win)
}

/// Watches this node's etcd member and VIPs every second, and moves the
/// leadership away while this node both leads and holds a VIP. Runs until
/// aborted.
/// `quiet`: how long after a win it waits while another member holds a
/// VIP (the longest VIP TTL and a second; [`may_move`]).
pub async fn run(
    sup: Arc<Supervisor>,
    endpoint: String,
    tls: Option<ClientTls>,
    states: Vec<(IpAddr, watch::Receiver<VipState>)>,
    quiet: Duration,
) {
    let mut client: Option<etcd_client::Client> = None;
    let mut skip: Vec<(u64, Instant)> = Vec::new();
    let mut said_none = false;
    let mut settled_at = Instant::now();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(view) = sup.view() else { continue };
        if Instant::now() < settled_at {
            continue;
        }
        if view.is_learner || view.leader == 0 || view.leader != view.id {
            said_none = false;
            continue;
        }
        let (mine, others, last_win) = holdings(&states);
        if mine.is_empty() {
            said_none = false;
            continue;
        }
        if !may_move(last_win.map(|t| t.elapsed()), !others.is_empty(), quiet) {
            continue;
        }
        let c = match &mut client {
            Some(c) => c,
            None => match crate::etcd::health::connect(&endpoint, tls.as_ref(), MOVE_TIMEOUT).await
            {
                Ok(c) => client.insert(c),
                Err(e) => {
                    log::debug!("etcd: leadership: {e}");
                    continue;
                }
            },
        };
        let members: Vec<Member> = match c.member_list().await {
            Ok(r) => r
                .members()
                .iter()
                .map(|m| Member {
                    id: m.id(),
                    name: m.name().to_owned(),
                    learner: m.is_learner(),
                })
                .collect(),
            Err(e) => {
                log::debug!("etcd: leadership: member list: {e}");
                client = None;
                continue;
            }
        };
        let now = Instant::now();
        skip.retain(|(_, until)| *until > now);
        let skipped: Vec<u64> = skip.iter().map(|(id, _)| *id).collect();
        let Some(to) = transferee(view.id, &members, &others, &skipped) else {
            if !std::mem::replace(&mut said_none, true) {
                log::info!(
                    "etcd: this node leads raft and holds VIP {}; no voting member without a VIP to hand the leadership to, keeping it",
                    list(&mine)
                );
            }
            continue;
        };
        let name = members
            .iter()
            .find(|m| m.id == to)
            .map_or(String::new(), |m| m.name.clone());
        let started = Instant::now();
        match tokio::time::timeout(MOVE_TIMEOUT, c.move_leader(to)).await {
            Ok(Ok(_)) => {
                log::info!(
                    "etcd: handed raft leadership to {name} ({to:x}) in {} ms: this node holds VIP {}, and a crash of a holder that also leads would cost a leader election and a lease extension",
                    started.elapsed().as_millis(),
                    list(&mine)
                );
                settled_at = Instant::now() + SETTLE;
            }
            // Someone else leads already (the view was a probe old).
            Ok(Err(e)) if e.to_string().contains("not leader") => {
                log::debug!("etcd: leadership: {e}");
                settled_at = Instant::now() + SETTLE;
            }
            Ok(Err(e)) => {
                log::warn!("etcd: handing raft leadership to {name} ({to:x}) failed: {e}; not asking it again for {} s", SKIP_FOR.as_secs());
                skip.push((to, now + SKIP_FOR));
                client = None;
            }
            Err(_) => {
                log::warn!("etcd: handing raft leadership to {name} ({to:x}) timed out after {} s; not asking it again for {} s", MOVE_TIMEOUT.as_secs(), SKIP_FOR.as_secs());
                skip.push((to, now + SKIP_FOR));
                client = None;
            }
        }
    }
}

fn list(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64, name: &str, learner: bool) -> Member {
        Member {
            id,
            name: name.to_owned(),
            learner,
        }
    }

    #[test]
    fn transferees() {
        let three = [
            m(1, "node1", false),
            m(2, "node2", false),
            m(3, "node3", false),
        ];
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        // (what, members, VIP holders, refused lately, the transferee)
        type Case<'a> = (&'a str, &'a [Member], Vec<String>, &'a [u64], Option<u64>);
        let cases: [Case; 8] = [
            (
                "two free voters: the lowest ID",
                &three,
                s(&[]),
                &[],
                Some(2),
            ),
            (
                "node2 holds the other VIP",
                &three,
                s(&["node2"]),
                &[],
                Some(3),
            ),
            (
                "both others hold a VIP: keep it",
                &three,
                s(&["node2", "node3"]),
                &[],
                None,
            ),
            ("node2 refused lately", &three, s(&[]), &[2], Some(3)),
            (
                "a learner and an unstarted member are no candidates",
                &[m(1, "node1", false), m(2, "node2", true), m(3, "", false)],
                s(&[]),
                &[],
                None,
            ),
            ("alone", &[m(1, "node1", false)], s(&[]), &[], None),
            (
                "two members, the other free",
                &three[..2],
                s(&[]),
                &[],
                Some(2),
            ),
            (
                "two members, the other holds a VIP",
                &three[..2],
                s(&["node2"]),
                &[],
                None,
            ),
        ];
        for (what, members, holders, skip, want) in cases {
            assert_eq!(transferee(1, members, &holders, skip), want, "{what}");
        }
    }

    #[test]
    fn when_a_holder_may_hand_the_leadership_over() {
        let quiet = Duration::from_secs(6);
        let s = Duration::from_secs;
        // (since the last win, another member holds a VIP, may move)
        let cases = [
            (Some(s(1)), false, true),
            (Some(s(1)), true, false),
            (Some(s(5)), true, false),
            (Some(s(6)), true, true),
            (None, true, true),
            (None, false, true),
        ];
        for (since, others, want) in cases {
            assert_eq!(may_move(since, others, quiet), want, "{since:?} {others}");
        }
    }

    #[test]
    fn member_names() {
        for (value, want) in [("cp1/node1", "node1"), ("node1", "node1"), ("a/b/c", "c")] {
            assert_eq!(member_of(value), want, "{value}");
        }
    }
}
