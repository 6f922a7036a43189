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

/// How often a node that holds a VIP asks its member who leads. The
/// member's own Status is local (no raft round), and every tick a holder
/// leads raft is a tick in which its crash costs a leader election and a
/// lease extension; the health probe's view, refreshed every 2 s, left a
/// holder that had just been elected leader in place for up to 3 s.
const EVERY: Duration = Duration::from_millis(250);
/// How long one Status may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);
/// A member that would not take the leadership is not asked again for
/// this long.
const SKIP_FOR: Duration = Duration::from_secs(30);
/// How long one transfer may take. A healthy transferee takes over within
/// an election timeout (1 s by default; raft abandons the transfer after
/// that, but etcd's `MoveLeader` waits for its context), and a member
/// that is down never does: then the next candidate is tried.
const MOVE_TIMEOUT: Duration = Duration::from_secs(2);
/// After a hand-over, a pause before the next look: `MoveLeader` returns
/// once this member sees the new leader, so this only spares a member
/// that is still settling.
const SETTLE: Duration = Duration::from_secs(1);

/// One etcd member, as the member list gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    /// Empty while the member has not started.
    pub name: String,
    pub learner: bool,
}

/// The member to hand the leadership to: a started voter other than `me`
/// that holds no VIP (`holders`: member names) and is not in `skip`; of
/// those, one that campaigns for a VIP (`campaigners`: member names with
/// a live campaign key) if any, then the lowest ID, so every run picks the
/// same one. None: keep it. A live campaign key says the member's Keel
/// runs its elections; a node shutting down has released its keys while
/// its etcd still serves for a second or two, and leadership handed to it
/// would cost another election right away (the fault bench saw it: a
/// graceful hand-over's new holder passed the leadership to the node that
/// was powering off).
pub fn transferee(
    me: u64,
    members: &[Member],
    holders: &[String],
    campaigners: &[String],
    skip: &[u64],
) -> Option<u64> {
    members
        .iter()
        .filter(|m| m.id != me && !m.learner && !m.name.is_empty())
        .filter(|m| !holders.contains(&m.name) && !skip.contains(&m.id))
        .min_by_key(|m| (!campaigners.contains(&m.name), m.id))
        .map(|m| m.id)
}

/// A live, unreleased campaign key, as [`election_keys`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    /// The VIP's election: the key up to its last `/`.
    election: String,
    member: String,
    created: i64,
    lease: i64,
}

/// Every live, unreleased campaign key under the election prefix, from a
/// serializable read of the local member (this node leads raft, so its
/// member is up to date but for the last moments).
async fn election_keys(c: &mut etcd_client::Client) -> Result<Vec<Key>, etcd_client::Error> {
    let opts = etcd_client::GetOptions::new()
        .with_prefix()
        .with_serializable();
    let r = c.get(super::ELECTION_PREFIX, Some(opts)).await?;
    Ok(r.kvs()
        .iter()
        .filter(|kv| kv.value() != super::campaign::RELEASED.as_bytes())
        .filter_map(|kv| {
            let key = kv.key_str().ok()?;
            Some(Key {
                election: key.rsplit_once('/').map_or(key, |(e, _)| e).to_owned(),
                member: member_of(kv.value_str().ok()?).to_owned(),
                created: kv.create_revision(),
                lease: kv.lease(),
            })
        })
        .collect())
}

/// What the keys say: the members that campaign (sorted), and the lease
/// of each election's holder (its first key) that is not member `me`.
fn read_election(keys: &[Key], me: &str) -> (Vec<String>, Vec<i64>) {
    let mut campaigners: Vec<String> = keys.iter().map(|k| k.member.clone()).collect();
    campaigners.sort();
    campaigners.dedup();
    let mut firsts: Vec<&Key> = Vec::new();
    for k in keys {
        match firsts.iter_mut().find(|f| f.election == k.election) {
            Some(f) if k.created < f.created => *f = k,
            Some(_) => {}
            None => firsts.push(k),
        }
    }
    let leases = firsts
        .iter()
        .filter(|k| k.member != me)
        .map(|k| k.lease)
        .collect();
    (campaigners, leases)
}

/// The member name in a campaign value (`<hostname>/<member>`).
pub fn member_of(value: &str) -> &str {
    value.rsplit('/').next().unwrap_or(value)
}

/// Whether a leader that holds VIPs may hand the leadership over now,
/// `since_win` after its last win; `others_renewed` says, for each VIP
/// another member holds, whether that holder's lease was renewed after
/// this node's win ([`renewed_since`]). The promotion that ends a
/// hand-over renews every lease to a full TTL, including the lease of a
/// holder of another VIP that died with the one this node just took over
/// and whose lease was about to run out (seen in the fault bench: that VIP
/// came 6 s late). Such a lease stopped being renewed before this win, so
/// the hand-over waits until every other holder's lease shows a renewal
/// since the win, or `quiet` (a TTL and a second) after it, when a lease
/// that was not renewed is gone. A node that holds every VIP hands over at
/// once: a node that led raft and won a VIP (half the failovers of a
/// three-node cluster) would otherwise stay leader and holder, and a crash
/// then cost 7.8 s instead of 5 s (fault bench, TTL 5 s); and waiting the
/// whole `quiet` whenever another member held a VIP let a crash inside it
/// cost 10.4 s (fault bench: the other holder was alive all along).
fn may_move(since_win: Option<Duration>, others_renewed: &[bool], quiet: Duration) -> bool {
    others_renewed.iter().all(|r| *r) || since_win.is_none_or(|d| d >= quiet)
}

/// Whether a lease with `remaining` whole seconds of its `granted` TTL
/// left (etcd's `LeaseTimeToLive`, which truncates: the expiry is at least
/// `remaining` seconds away) was renewed less than `since_win` ago: only
/// then does its expiry lie more than a granted TTL after the win. A lease
/// etcd no longer knows (remaining -1) cannot be extended either.
fn renewed_since(remaining: i64, granted: i64, since_win: Duration) -> bool {
    remaining < 0 || remaining as f64 > granted as f64 - since_win.as_secs_f64()
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

/// Watches this node's VIPs and, while it holds one, its etcd member
/// every [`EVERY`], and moves the leadership away while this node both
/// leads and holds a VIP. Runs until aborted.
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
        if Instant::now() < settled_at {
            continue;
        }
        let (mine, others, last_win) = holdings(&states);
        if mine.is_empty() || sup.view().is_none() {
            said_none = false;
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
        let me = match crate::etcd::health::status(c, &endpoint, STATUS_TIMEOUT).await {
            Ok(v) if !v.is_learner && v.leader != 0 => (v.id == v.leader).then_some(v.id),
            Ok(_) => None,
            Err(e) => {
                log::debug!("etcd: leadership: {e}");
                client = None;
                continue;
            }
        };
        let Some(me) = me else {
            said_none = false;
            continue;
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
        let my_name = members
            .iter()
            .find(|m| m.id == me)
            .map_or("", |m| m.name.as_str());
        // Failing this read costs little: any started voter will do, and
        // the hand-over waits as if no other holder had renewed.
        let (campaigning, leases) =
            match tokio::time::timeout(STATUS_TIMEOUT, election_keys(c)).await {
                Ok(Ok(keys)) => {
                    let (campaigning, leases) = read_election(&keys, my_name);
                    (campaigning, Some(leases))
                }
                Ok(Err(e)) => {
                    log::debug!("etcd: leadership: campaign keys: {e}");
                    (Vec::new(), None)
                }
                Err(_) => (Vec::new(), None),
            };
        let since_win = last_win.map(|t| t.elapsed());
        let renewed = match since_win {
            Some(d) if d < quiet => others_renewed(c, leases, others.len(), d).await,
            _ => Vec::new(),
        };
        if !may_move(since_win, &renewed, quiet) {
            continue;
        }
        let now = Instant::now();
        skip.retain(|(_, until)| *until > now);
        let skipped: Vec<u64> = skip.iter().map(|(id, _)| *id).collect();
        let Some(to) = transferee(me, &members, &others, &campaigning, &skipped) else {
            // Nobody to hand it to (one member, or every other holds a
            // VIP): look again a second later, not every tick.
            settled_at = Instant::now() + SETTLE;
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
                    "etcd: handed raft leadership to {name} ({to:x}) in {} ms{}: this node holds VIP {}, and a crash of a holder that also leads would cost a leader election and a lease extension",
                    started.elapsed().as_millis(),
                    since_win.map_or(String::new(), |d| format!(", {} ms after its last win", d.as_millis())),
                    list(&mine)
                );
                settled_at = Instant::now() + SETTLE;
            }
            // Someone else leads already (elected since the Status).
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

/// For each other holder's lease (`leases`), whether it shows a renewal
/// since this node's win, `since_win` ago ([`renewed_since`]); a lease
/// whose TTL could not be read counts as not renewed, and so do the
/// `holders` other holders the VIP elections know of when the campaign
/// keys could not be read (`leases` None).
async fn others_renewed(
    c: &mut etcd_client::Client,
    leases: Option<Vec<i64>>,
    holders: usize,
    since_win: Duration,
) -> Vec<bool> {
    let Some(leases) = leases else {
        return vec![false; holders];
    };
    let mut renewed = Vec::with_capacity(leases.len());
    for id in leases {
        let ttl = tokio::time::timeout(STATUS_TIMEOUT, c.lease_time_to_live(id, None)).await;
        renewed.push(match ttl {
            Ok(Ok(r)) => renewed_since(r.ttl(), r.granted_ttl(), since_win),
            _ => false,
        });
    }
    renewed
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
        let all = ["node1", "node2", "node3"];
        // (what, members, VIP holders, campaigners, refused lately, the transferee)
        type Case<'a> = (
            &'a str,
            &'a [Member],
            &'a [&'a str],
            &'a [&'a str],
            &'a [u64],
            Option<u64>,
        );
        let cases: [Case; 11] = [
            (
                "two free voters: the lowest ID",
                &three,
                &[],
                &all,
                &[],
                Some(2),
            ),
            (
                "node2 holds the other VIP",
                &three,
                &["node2"],
                &all,
                &[],
                Some(3),
            ),
            (
                "both others hold a VIP: keep it",
                &three,
                &["node2", "node3"],
                &all,
                &[],
                None,
            ),
            ("node2 refused lately", &three, &[], &all, &[2], Some(3)),
            (
                "node2 campaigns for nothing (shutting down): node3",
                &three,
                &[],
                &["node1", "node3"],
                &[],
                Some(3),
            ),
            (
                "nobody else campaigns: the lowest ID still",
                &three,
                &[],
                &["node1"],
                &[],
                Some(2),
            ),
            (
                "the campaigner refused lately: the other one",
                &three,
                &[],
                &["node1", "node3"],
                &[3],
                Some(2),
            ),
            (
                "a learner and an unstarted member are no candidates",
                &[m(1, "node1", false), m(2, "node2", true), m(3, "", false)],
                &[],
                &all,
                &[],
                None,
            ),
            ("alone", &[m(1, "node1", false)], &[], &all, &[], None),
            (
                "two members, the other free",
                &three[..2],
                &[],
                &all,
                &[],
                Some(2),
            ),
            (
                "two members, the other holds a VIP",
                &three[..2],
                &["node2"],
                &all,
                &[],
                None,
            ),
        ];
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        for (what, members, holders, campaigners, skip, want) in cases {
            assert_eq!(
                transferee(1, members, &s(holders), &s(campaigners), skip),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn when_a_holder_may_hand_the_leadership_over() {
        let quiet = Duration::from_secs(6);
        let s = Duration::from_secs;
        // (since the last win, each other holder's lease renewed since, may move)
        let cases: [(Option<Duration>, &[bool], bool); 8] = [
            (Some(s(1)), &[], true),
            (Some(s(1)), &[false], false),
            (Some(s(1)), &[true], true),
            (Some(s(1)), &[true, false], false),
            (Some(s(5)), &[false], false),
            (Some(s(6)), &[false], true),
            (None, &[false], true),
            (None, &[], true),
        ];
        for (since, renewed, want) in cases {
            assert_eq!(
                may_move(since, renewed, quiet),
                want,
                "{since:?} {renewed:?}"
            );
        }
    }

    #[test]
    fn leases_renewed_since_a_win() {
        let ms = Duration::from_millis;
        // (remaining whole seconds, granted, since the win, renewed since)
        let cases = [
            // Renewed just now: 4.9 s left shows as 4.
            (4, 5, ms(1500), true),
            // A holder that died with the one taken over: its lease runs
            // out within the TTL of the win.
            (3, 5, ms(1500), false),
            (0, 5, ms(300), false),
            // Right after the win nothing shows a renewal since.
            (4, 5, ms(900), false),
            (4, 5, ms(1000), false),
            // Gone: nothing left to extend.
            (-1, 5, ms(100), true),
            (8, 10, ms(2500), true),
            (7, 10, ms(2500), false),
        ];
        for (remaining, granted, since, want) in cases {
            assert_eq!(
                renewed_since(remaining, granted, since),
                want,
                "{remaining} of {granted} s, {since:?} after the win"
            );
        }
    }

    #[test]
    fn election_reads() {
        let k = |election: &str, member: &str, created: i64, lease: i64| Key {
            election: election.to_owned(),
            member: member.to_owned(),
            created,
            lease,
        };
        let (v4, v6) = ("keel/vip/10.5.0.100", "keel/vip/fd00::100");
        // (what, keys, campaigners, other holders' leases) for me = node1
        type Case<'a> = (&'a str, Vec<Key>, &'a [&'a str], &'a [i64]);
        let cases: [Case; 4] = [
            ("nothing", vec![], &[], &[]),
            (
                "I hold one, node2 the other, node3 waits for both",
                vec![
                    k(v4, "node1", 5, 0x11),
                    k(v4, "node3", 7, 0x31),
                    k(v6, "node3", 9, 0x32),
                    k(v6, "node2", 6, 0x21),
                ],
                &["node1", "node2", "node3"],
                &[0x21],
            ),
            (
                "I hold both",
                vec![k(v4, "node1", 5, 0x11), k(v6, "node1", 6, 0x12)],
                &["node1"],
                &[],
            ),
            (
                "the first key decides, not the order of the read",
                vec![k(v4, "node2", 9, 0x21), k(v4, "node3", 8, 0x31)],
                &["node2", "node3"],
                &[0x31],
            ),
        ];
        for (what, keys, campaigners, leases) in cases {
            let (c, l) = read_election(&keys, "node1");
            assert_eq!(c, campaigners.to_vec(), "{what}: campaigners");
            assert_eq!(l, leases.to_vec(), "{what}: leases");
        }
    }

    #[test]
    fn member_names() {
        for (value, want) in [("cp1/node1", "node1"), ("node1", "node1"), ("a/b/c", "c")] {
            assert_eq!(member_of(value), want, "{value}");
        }
    }
}
