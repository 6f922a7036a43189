//! The election loop driven by recording fakes of the link and of etcd
//! (youki's `TestHelperSyscall` pattern), on tokio's paused clock: each
//! case scripts what etcd and the link do and asserts the sequence of
//! calls the loop made, and the safety rule behind all of them: the
//! campaign is never resigned nor the lease revoked while the address is
//! on a link.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use tokio::sync::mpsc;
use tokio::time::{sleep, Instant};

use super::*;
use crate::vip::campaign::RELEASED;
use crate::vip::ops::{EtcdEvent, EtcdOps, HeldKey, LinkOps, OpError, TermOps};
use crate::vip::responder::Asked;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Grant,
    /// Keepalive stream opened, observing and campaigning.
    Start,
    Keepalive,
    /// A linearizable read of the key for the gate.
    Check,
    Add,
    Announce,
    /// An ARP reply to a request.
    Answer,
    /// Removing the address; whether the fake let it succeed.
    Remove(bool),
    Holders,
    Resign,
    Revoke,
    LastResort,
}
use Call::*;

/// Every call with its (paused) time and whether the address was on the
/// link right then.
#[derive(Default)]
struct Record {
    calls: Vec<(Instant, Call, bool)>,
    has_address: bool,
}

type Log = Rc<RefCell<Record>>;

fn record(log: &Log, c: Call) {
    let mut r = log.borrow_mut();
    let has = r.has_address;
    r.calls.push((Instant::now(), c, has));
}

/// What the fakes do; times are from the start of the case.
#[derive(Debug, Clone, Copy, Default)]
struct Script {
    /// The first term's campaign wins (later terms never do).
    win: bool,
    /// Keepalives are acknowledged until then (forever when None).
    acks_until: Option<Duration>,
    /// etcd reports another node's key as leader then.
    other_leader_at: Option<Duration>,
    /// Observe reports the previous holder's released key then.
    released_seen_at: Option<Duration>,
    /// The keepalive stream ends then.
    stream_ends_at: Option<Duration>,
    /// etcd deletes this node's key then (a lease revoked early), while
    /// keepalives are still acknowledged.
    key_gone_at: Option<Duration>,
    /// The link loses carrier then.
    carrier_lost_at: Option<Duration>,
    /// How many removals fail before one succeeds (u32::MAX: never).
    remove_failures: u32,
    /// A request for the VIP is read on the link then.
    asked_at: Option<Duration>,
    /// The pause watchdog fires then.
    paused_at: Option<Duration>,
    /// The campaign's key is gone by the time its turn comes.
    gone_at_check: bool,
    /// Checks get no answer until then (a leader election).
    checks_fail_until: Option<Duration>,
    /// Adding the address fails.
    add_fails: bool,
    /// Every term's campaign wins, not only the first.
    win_always: bool,
}

struct FakeLink {
    log: Log,
    script: Script,
    start: Instant,
    failures_left: RefCell<u32>,
    asked: Cell<bool>,
}

const INDEX: u32 = 7;
const ASKED: Asked = Asked::Arp {
    mac: [2, 0, 0, 0, 0, 9],
    ip: std::net::Ipv4Addr::new(10, 5, 0, 9),
};

impl LinkOps for FakeLink {
    async fn ready(&self, _link: &str) -> Result<bool, OpError> {
        Ok(self
            .script
            .carrier_lost_at
            .is_none_or(|t| self.start.elapsed() < t))
    }
    async fn add(&self, _link: &str, _ip: IpAddr) -> Result<u32, OpError> {
        record(&self.log, Add);
        if self.script.add_fails {
            return Err(OpError("no such link".into()));
        }
        self.log.borrow_mut().has_address = true;
        Ok(INDEX)
    }
    fn announce(&self, _ip: IpAddr) -> Result<(), OpError> {
        record(&self.log, Announce);
        Ok(())
    }
    async fn asked(&self) -> Result<Asked, OpError> {
        match self.script.asked_at {
            Some(t) if !self.asked.get() => {
                sleep((self.start + t).saturating_duration_since(Instant::now())).await;
                self.asked.set(true);
                Ok(ASKED)
            }
            _ => std::future::pending().await,
        }
    }
    fn answer(&self, _ip: IpAddr, asked: &Asked) -> Result<(), OpError> {
        assert_eq!(*asked, ASKED);
        record(&self.log, Answer);
        Ok(())
    }
    async fn remove(&self, _index: u32, _ip: IpAddr) -> Result<(), OpError> {
        let mut left = self.failures_left.borrow_mut();
        let ok = *left == 0;
        if ok {
            self.log.borrow_mut().has_address = false;
        } else if *left != u32::MAX {
            *left -= 1;
        }
        record(&self.log, Remove(ok));
        if ok {
            Ok(())
        } else {
            Err(OpError("netlink says no".into()))
        }
    }
    async fn holders(&self, _ip: IpAddr) -> Result<Vec<u32>, OpError> {
        record(&self.log, Holders);
        let has = self.log.borrow().has_address;
        Ok(if has { vec![INDEX] } else { Vec::new() })
    }
    fn last_resort(&self, _why: &str) {
        record(&self.log, LastResort);
    }
}

struct FakeEtcd {
    log: Log,
    script: Script,
    start: Instant,
    terms: RefCell<u32>,
}

struct FakeTerm {
    log: Log,
    script: Script,
    start: Instant,
    first: bool,
    events: Option<mpsc::Sender<EtcdEvent>>,
}

const TTL: Duration = Duration::from_secs(6);
const OURS: &[u8] = b"keel/vip/10.5.0.100/1";

impl EtcdOps for FakeEtcd {
    type Term = FakeTerm;
    async fn term(&self) -> Result<FakeTerm, OpError> {
        let mut n = self.terms.borrow_mut();
        *n += 1;
        Ok(FakeTerm {
            log: self.log.clone(),
            script: self.script,
            start: self.start,
            first: *n == 1,
            events: None,
        })
    }
}

impl TermOps for FakeTerm {
    async fn grant(&mut self, ttl: Duration) -> Result<Duration, OpError> {
        record(&self.log, Grant);
        Ok(ttl)
    }
    async fn resign_stale(&mut self) {}
    async fn start(&mut self, events: mpsc::Sender<EtcdEvent>) -> Result<(), OpError> {
        record(&self.log, Start);
        self.events = Some(events.clone());
        // The script plays in the first term only; later terms are
        // healthy followers.
        let (s, start, first) = (self.script, self.start, self.first);
        let win = (first || s.win_always) && s.win;
        // The campaign's own write, read or watch finds the key only while
        // etcd answers and the key is there (`campaign.rs`).
        let answers = s.acks_until.is_none_or(|t| !t.is_zero());
        let at = move |t: Duration| sleep((start + t).saturating_duration_since(Instant::now()));
        tokio::spawn(async move {
            if win && s.gone_at_check {
                let ev = EtcdEvent::CampaignFailed("this node's key is gone".into());
                let _ = events.send(ev).await;
            } else if win && answers {
                let key = HeldKey {
                    key: OURS.to_vec(),
                    rev: 1,
                    lease: 1,
                };
                let _ = events.send(EtcdEvent::Won(key)).await;
                let leader = EtcdEvent::Leader {
                    key: OURS.to_vec(),
                    value: "node1/node1".into(),
                };
                let _ = events.send(leader).await;
            }
            let mut script: Vec<(Duration, EtcdEvent)> = Vec::new();
            if !first {
                return;
            }
            if let Some(t) = s.released_seen_at {
                // The previous holder's key, released, still first in
                // etcd's order: Observe reports it.
                let released = EtcdEvent::Leader {
                    key: b"keel/vip/10.5.0.100/0".to_vec(),
                    value: RELEASED.into(),
                };
                script.push((t, released));
            }
            if let Some(t) = s.other_leader_at {
                let other = EtcdEvent::Leader {
                    key: b"keel/vip/10.5.0.100/2".to_vec(),
                    value: "node2/node2".into(),
                };
                script.push((t, other));
            }
            if let Some(t) = s.stream_ends_at {
                script.push((t, EtcdEvent::KeepaliveLost));
            }
            if let Some(t) = s.key_gone_at {
                script.push((t, EtcdEvent::KeyGone));
            }
            script.sort_by_key(|(t, _)| *t);
            for (t, ev) in script {
                at(t).await;
                if events.send(ev).await.is_err() {
                    return;
                }
            }
        });
        Ok(())
    }
    async fn keep_alive(&mut self) -> bool {
        record(&self.log, Keepalive);
        let acked = self
            .script
            .acks_until
            .is_none_or(|t| self.start.elapsed() < t);
        if let (true, Some(tx)) = (acked, &self.events) {
            let ttl = TTL.as_secs() as i64;
            let _ = tx.try_send(EtcdEvent::Ack {
                ttl,
                sent: tokio::time::Instant::now(),
            });
        }
        true
    }
    fn check(&mut self, _key: &HeldKey, round: u64) {
        record(&self.log, Check);
        // etcd answers while it acknowledges keepalives; after that the
        // read does not complete.
        let alive = self
            .script
            .acks_until
            .is_none_or(|t| self.start.elapsed() < t)
            .then_some(!self.script.gone_at_check)
            .filter(|_| {
                self.script
                    .checks_fail_until
                    .is_none_or(|t| self.start.elapsed() >= t)
            });
        if let Some(tx) = &self.events {
            let _ = tx.try_send(EtcdEvent::Checked { round, alive });
        }
    }
    async fn resign(&mut self, _key: &HeldKey) {
        record(&self.log, Resign);
    }
    async fn revoke(&mut self) {
        record(&self.log, Revoke);
    }
}

/// Runs the loop with `script` for `run_for`, then asks it to stop and
/// waits until it returns.
async fn run(script: Script, run_for: Duration) -> Vec<(Instant, Call, bool)> {
    let log: Log = Rc::default();
    let start = Instant::now();
    let link = FakeLink {
        log: log.clone(),
        script,
        start,
        failures_left: RefCell::new(script.remove_failures),
        asked: Cell::new(false),
    };
    let etcd = FakeEtcd {
        log: log.clone(),
        script,
        start,
        terms: RefCell::new(0),
    };
    let p = Params {
        ip: "10.5.0.100".parse().unwrap(),
        ttl: TTL,
        link: "enp0s2".into(),
        identity: "node1/node1".into(),
        record: "/nonexistent/vip-leases".into(),
    };
    let (stop_tx, stop) = watch::channel(false);
    let (_healthy_tx, etcd_healthy) = watch::channel(true);
    let (state, _) = watch::channel(VipState::WaitingForEtcd);
    let (paused_tx, paused) = watch::channel(0u64);
    let inputs = Inputs {
        etcd_healthy,
        stop,
        paused,
        watchdog: None,
    };
    let stopper = async {
        sleep(run_for).await;
        let _ = stop_tx.send(true);
    };
    let pauser = async {
        if let Some(t) = script.paused_at {
            sleep(t).await;
            paused_tx.send_modify(|n| *n += 1);
        }
        // Kept open: a closed watch must not read as a pause.
        sleep(run_for).await;
    };
    let done = tokio::time::timeout(Duration::from_secs(3600), async {
        tokio::join!(elect(&p, &link, &etcd, inputs, &state), stopper, pauser)
    })
    .await;
    assert!(done.is_ok(), "the loop did not stop");
    let calls = log.borrow().calls.clone();
    calls
}

/// The calls with consecutive repeats folded, and repeated pairs (a gated
/// announcement: a check, then the announcement once it confirms) folded
/// into one.
fn folded(calls: &[(Instant, Call, bool)]) -> Vec<Call> {
    let mut out: Vec<Call> = Vec::new();
    for c in calls.iter().map(|c| c.1) {
        let n = out.len();
        if out.last() == Some(&c) {
            continue;
        }
        let periodic = |x: &Call| matches!(x, Check | Announce | Keepalive);
        if n >= 3
            && out[n - 2] == c
            && out[n - 1] == out[n - 3]
            && periodic(&c)
            && periodic(&out[n - 1])
        {
            out.pop();
            continue;
        }
        out.push(c);
    }
    out
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Fails unless no resign or revoke happened while the address was on.
fn assert_safe(name: &str, calls: &[(Instant, Call, bool)]) {
    for (_, c, has) in calls {
        if matches!(c, Resign | Revoke) {
            assert!(
                !has,
                "{name}: {c:?} while the address is on the link: {calls:?}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn release_path_table() {
    // The first term of every winning case: lease, campaign (and one
    // keepalive in the background), win (itself a committed observation
    // of the key), address added and announced; the next announcements
    // once a check started after each fell due confirms the lease.
    const HOLD: &[Call] = &[Grant, Start, Keepalive, Add, Announce, Check, Announce];
    // A clean release: the address removed and confirmed gone, then
    // resign and revoke.
    const RELEASE: &[Call] = &[Remove(true), Holders, Resign, Revoke];
    // A follower term cut short by the stop: its lease is revoked.
    const FOLLOWER: &[Call] = &[Grant, Start, Keepalive, Revoke];
    let cat = |parts: &[&[Call]]| parts.concat();
    let cases: Vec<(&str, Script, f64, Vec<Call>)> = vec![
        (
            "win, then stop",
            Script {
                win: true,
                ..Script::default()
            },
            1.0,
            cat(&[HOLD, RELEASE]),
        ),
        (
            "win, keepalives go on while held",
            Script {
                win: true,
                ..Script::default()
            },
            2.5,
            cat(&[HOLD, &[Keepalive], RELEASE]),
        ),
        (
            "lose to another holder",
            Script {
                win: true,
                other_leader_at: Some(secs(1.0)),
                ..Script::default()
            },
            1.5,
            cat(&[HOLD, RELEASE, FOLLOWER]),
        ),
        (
            "keepalive stream ends",
            // A lost term: the next one starts after the pause (1 s).
            Script {
                win: true,
                stream_ends_at: Some(secs(1.0)),
                ..Script::default()
            },
            2.5,
            cat(&[HOLD, RELEASE, FOLLOWER]),
        ),
        (
            // The watch on the key sees it deleted (a stale etcd leader
            // revoked the lease) while keepalives still succeed: dropped
            // at once, not at the next check; a lost term, so the next
            // one starts after the pause (1 s).
            "key deleted while held",
            Script {
                win: true,
                key_gone_at: Some(secs(1.0)),
                ..Script::default()
            },
            2.5,
            cat(&[HOLD, RELEASE, FOLLOWER]),
        ),
        (
            // The old holder's released key, reported by Observe after
            // this node won: nobody else holds it, the term goes on.
            "a released key observed after the win",
            Script {
                win: true,
                released_seen_at: Some(secs(0.5)),
                ..Script::default()
            },
            1.0,
            cat(&[HOLD, RELEASE]),
        ),
        (
            // etcd answers nothing from the start: the campaign never
            // wins, so nothing goes on; a follower's term has no fence.
            "etcd silent: never won, never added",
            Script {
                win: true,
                acks_until: Some(Duration::ZERO),
                ..Script::default()
            },
            6.5,
            cat(&[&[Grant, Start, Keepalive], &[Revoke]]),
        ),
        (
            // etcd goes quiet right after the win: the burst's next
            // announcements wait for checks that never complete; the
            // fence from the grant (6 s - 1.2 s margin) passes at 4.8 s
            // and the address goes; the next term after the pause.
            "etcd quiet after the win: one announcement, then the fence",
            Script {
                win: true,
                acks_until: Some(secs(0.1)),
                ..Script::default()
            },
            6.5,
            cat(&[
                &[
                    Grant, Start, Keepalive, Add, Announce, Check, Keepalive, Check,
                ],
                RELEASE,
                FOLLOWER,
            ]),
        ),
        (
            "a request is answered after a check started after it",
            Script {
                win: true,
                asked_at: Some(secs(1.0)),
                ..Script::default()
            },
            1.5,
            // (The burst's announcements and the answer share the checks
            // after the first; folding shows them as one pair.)
            cat(&[
                &[Grant, Start, Keepalive, Add, Announce],
                &[Check, Answer],
                RELEASE,
            ]),
        ),
        (
            // The keepalive at 2 s is acknowledged; the check the request
            // at 3 s starts, and those retried on the ticks at 4 and 6 s,
            // do not complete: no answer; the fence (2 s + 4.8 s) passes
            // at 6.8 s.
            "a request after etcd went quiet is never answered",
            Script {
                win: true,
                acks_until: Some(secs(2.5)),
                asked_at: Some(secs(3.0)),
                ..Script::default()
            },
            8.0,
            cat(&[HOLD, &[Keepalive, Check], RELEASE, FOLLOWER]),
        ),
        (
            "a pause of this node drops the VIP at once",
            Script {
                win: true,
                paused_at: Some(secs(1.0)),
                ..Script::default()
            },
            2.5,
            cat(&[HOLD, RELEASE, FOLLOWER]),
        ),
        (
            // Noticed on the next keepalive tick (2 s); no new term while
            // the link stays down.
            "link loses carrier",
            Script {
                win: true,
                carrier_lost_at: Some(secs(1.0)),
                ..Script::default()
            },
            3.0,
            cat(&[HOLD, &[Keepalive], RELEASE]),
        ),
        (
            "address removal fails twice, then succeeds",
            Script {
                win: true,
                remove_failures: 2,
                ..Script::default()
            },
            1.0,
            cat(&[
                HOLD,
                &[Remove(false), Holders, Remove(false), Holders],
                RELEASE,
            ]),
        ),
        (
            "lost the campaign: a follower's lease is only revoked",
            Script::default(),
            1.0,
            FOLLOWER.to_vec(),
        ),
    ];
    for (name, script, run_for, want) in cases {
        let calls = run(script, secs(run_for)).await;
        assert_eq!(folded(&calls), want, "{name}");
        assert_safe(name, &calls);
    }
}

/// An address that never goes: the lease is kept alive (keepalives go on
/// after the failed removals), the campaign is never resigned nor the
/// lease revoked, and the node reboots (last resort) before the lease can
/// expire once it can no longer be kept.
#[tokio::test(start_paused = true)]
async fn address_that_never_goes_keeps_the_lease() {
    struct Case {
        name: &'static str,
        script: Script,
        run_for: f64,
        last_resort: bool,
    }
    let never = u32::MAX;
    let cases = [
        Case {
            name: "carrier lost, etcd fine: retried under a live lease until shutdown",
            script: Script {
                win: true,
                carrier_lost_at: Some(secs(1.0)),
                remove_failures: never,
                ..Script::default()
            },
            run_for: 20.0,
            last_resort: false,
        },
        Case {
            name: "carrier lost, then etcd stops acknowledging: last resort within the lease",
            script: Script {
                win: true,
                carrier_lost_at: Some(secs(1.0)),
                acks_until: Some(secs(7.0)),
                remove_failures: never,
                ..Script::default()
            },
            run_for: 30.0,
            last_resort: true,
        },
        Case {
            name: "another holder while the address will not go: last resort at once",
            script: Script {
                win: true,
                other_leader_at: Some(secs(1.0)),
                remove_failures: never,
                ..Script::default()
            },
            run_for: 5.0,
            last_resort: true,
        },
    ];
    for c in cases {
        let calls = run(c.script, secs(c.run_for)).await;
        let name = c.name;
        assert_safe(name, &calls);
        let kinds = folded(&calls);
        assert!(!kinds.contains(&Resign), "{name}: resigned: {kinds:?}");
        assert!(!kinds.contains(&Revoke), "{name}: revoked: {kinds:?}");
        let first_fail = calls
            .iter()
            .position(|c| c.1 == Remove(false))
            .unwrap_or_else(|| panic!("{name}: no removal: {kinds:?}"));
        let resort = calls.iter().find(|c| c.1 == LastResort);
        assert_eq!(resort.is_some(), c.last_resort, "{name}: {kinds:?}");
        match resort {
            None => {
                // The lease was kept alive all along.
                let later = calls[first_fail..].iter().filter(|c| c.1 == Keepalive);
                assert!(later.count() >= 5, "{name}: keepalives stopped: {kinds:?}");
            }
            Some((at, _, _)) => {
                // Before etcd could let the lease expire: the last
                // acknowledged keepalive's send time + TTL.
                let acked_sends = calls.iter().filter(|c| c.1 == Keepalive);
                let last_acked = acked_sends
                    .map(|c| c.0)
                    .rfind(|t| c.script.acks_until.is_none_or(|u| *t - calls[0].0 < u))
                    .unwrap_or(calls[0].0);
                assert!(
                    *at < last_acked + TTL,
                    "{name}: last resort at {:?}, lease could expire at {:?}",
                    *at - calls[0].0,
                    last_acked + TTL - calls[0].0
                );
            }
        }
    }
}

/// Defects mended on the way to the address: a campaign whose key is gone
/// by its turn fails, so nothing is added or announced and only the lease
/// is revoked; a check that gets no answer is asked again within 200 ms,
/// not on the next keepalive tick; a term that failed (the address could
/// not be added) is followed by a pause, so a node that keeps failing does
/// not flood etcd with grants.
#[tokio::test(start_paused = true)]
async fn gone_keys_slow_checks_and_pauses_after_failures() {
    let gone = Script {
        win: true,
        gone_at_check: true,
        ..Script::default()
    };
    let calls = run(gone, secs(1.5)).await;
    assert_safe("gone at its turn", &calls);
    assert_eq!(
        folded(&calls),
        vec![Grant, Start, Keepalive, Revoke, Grant, Start, Keepalive, Revoke],
        "a campaign whose key is gone"
    );

    // A request at 1 s; checks get no answer until 1.3 s: the answer goes
    // out within 200 ms of that, not on the next keepalive tick (2 s).
    let slow = Script {
        win: true,
        asked_at: Some(secs(1.0)),
        checks_fail_until: Some(secs(1.3)),
        ..Script::default()
    };
    let calls = run(slow, secs(2.5)).await;
    let answered = calls
        .iter()
        .find(|c| c.1 == Answer)
        .map(|c| c.0 - calls[0].0)
        .expect("answered once a check answered");
    assert!(
        answered >= secs(1.3) && answered < secs(1.6),
        "answered after {answered:?}: {:?}",
        folded(&calls)
    );

    let failing = Script {
        win: true,
        win_always: true,
        add_fails: true,
        ..Script::default()
    };
    let calls = run(failing, secs(10.0)).await;
    let grants: Vec<Instant> = calls.iter().filter(|c| c.1 == Grant).map(|c| c.0).collect();
    assert!(grants.len() >= 3, "{:?}", folded(&calls));
    for w in grants.windows(2) {
        assert!(
            w[1] - w[0] >= RETRY,
            "grants {:?} apart: {:?}",
            w[1] - w[0],
            folded(&calls)
        );
    }
    assert!(grants.len() <= 11, "{} grants in 10 s", grants.len());
    assert!(
        !folded(&calls).contains(&Announce),
        "announced an address it could not add"
    );
}
