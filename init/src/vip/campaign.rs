//! The campaign, run by Keel itself over the KV API rather than through
//! etcd's `Campaign` RPC, and the release that lets the next node win
//! without a read.
//!
//! The keys are those of etcd's election (client/v3/concurrency,
//! `Election.Campaign`): `<name>/<lease in hex>`, attached to the lease,
//! and the holder is the key with the lowest create revision; so etcd's
//! `Observe` (which Keel still uses) and `etcdctl elect` see the same
//! election.
//!
//! Why not the RPC: etcd's server-side `Campaign` puts the key, then waits
//! until no key created before it is left (`waitDeletes`: a linearizable
//! read after each delete it watched), and returns without checking that
//! its own key still exists: a campaign whose lease expired while it
//! waited returns a win on a key that is gone. Keel therefore confirmed
//! every win with a read of its own, and a graceful hand-over cost the
//! holder's write and two linearizable reads on the next node (each
//! 140–460 ms under TCG). Here:
//! - the put and a read of the whole election are one transaction (a raft
//!   write, so its read sees the state at its own revision): no live key
//!   created before this node's, and it has won;
//! - otherwise it watches the election from that revision on, in order,
//!   and keeps the set of live keys ahead of its own ([`Ahead`]): a
//!   delete takes a key out, and so does a **release** — a holder that
//!   shut down cleanly first removes its address (confirmed gone,
//!   `term.rs`), then puts [`RELEASED`] as its key's value in a
//!   transaction guarded by the key's create revision, and only then
//!   revokes its lease. When the set empties on a release, the node has
//!   won at that revision: the watch delivers only committed, applied
//!   changes, in order, its own key's delete included, and a released
//!   holder has nothing left on the wire — no read needed;
//! - when the set empties on a plain delete (an expired or revoked lease,
//!   `etcdctl del`), one linearizable read of the election decides
//!   (served after the member confirmed who leads with a quorum, etcd's
//!   ReadIndex). The read is a margin, not the proof: the deleted key's
//!   holder may be one whose lease etcd revoked early (the stale-leader
//!   revocation, docs/ARCHITECTURE.md), dropping its address on its own
//!   watch of the same delete; the read lets it go first, as a rule.
//!
//! A win is therefore a committed observation that this node's key, with
//! its lease and create revision, is the first live key of the election.
//! That it still holds afterwards is the fence's (`fence.rs`: the lease
//! cannot expire before the fence does) and the key watch's (`ops.rs`).

use std::collections::BTreeSet;

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};

use super::ops::{EtcdEvent, HeldKey};

/// The value a holder leaves on its key when it has let go of the VIP.
/// A ':' appears in no hostname (RFC 1123), so no identity reads as it.
pub const RELEASED: &str = "keel:released";

/// This node's campaign key on `lease` in election `name`.
pub fn key(name: &str, lease: i64) -> String {
    format!("{name}/{lease:x}")
}

/// A change to one key of the election, as read or watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub key: Vec<u8>,
    /// 0 for a delete: etcd itself tells a watch's deletes from its puts
    /// this way (server/storage/mvcc/watchable_store_txn.go, `End`).
    pub create: i64,
    pub lease: i64,
    pub released: bool,
}

impl From<&KeyValue> for Seen {
    fn from(kv: &KeyValue) -> Seen {
        Seen {
            key: kv.key().to_vec(),
            create: kv.create_revision(),
            lease: kv.lease(),
            released: kv.value() == RELEASED.as_bytes(),
        }
    }
}

/// Where a campaign stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Live keys are ahead: watch on.
    Wait,
    /// This node's key is the first live one (from a write, a read, or a
    /// release seen on the watch).
    Won,
    /// The last key ahead was deleted, not released: read the election.
    Read,
    /// This node's key is gone: its lease expired or was revoked.
    Gone,
}

/// The live keys ahead of this node's own.
#[derive(Debug, Clone)]
pub struct Ahead {
    mine: HeldKey,
    keys: BTreeSet<Vec<u8>>,
    /// Whether the last key taken out was released (not deleted).
    by_release: bool,
}

impl Ahead {
    /// From a read of the whole election at one revision.
    pub fn read(all: &[Seen], mine: &HeldKey) -> (Ahead, Step) {
        let own = all
            .iter()
            .any(|kv| kv.key == mine.key && kv.create == mine.rev && kv.lease == mine.lease);
        let keys = all
            .iter()
            .filter(|kv| kv.create < mine.rev && !kv.released)
            .map(|kv| kv.key.clone())
            .collect();
        let a = Ahead {
            mine: mine.clone(),
            keys,
            by_release: true,
        };
        let step = match (own, a.keys.is_empty()) {
            (false, _) => Step::Gone,
            (true, true) => Step::Won,
            (true, false) => Step::Wait,
        };
        (a, step)
    }

    /// One watched change, in revision order; Gone at once when it is this
    /// node's key going.
    pub fn change(&mut self, c: &Seen) -> Option<Step> {
        if c.key == self.mine.key && (c.create == 0 || c.create != self.mine.rev) {
            return Some(Step::Gone);
        }
        let out = c.create == 0 || c.released;
        if out && self.keys.remove(&c.key) {
            self.by_release = c.released;
        }
        None
    }

    /// Where the campaign stands after a watch response's changes.
    pub fn step(&self) -> Step {
        match (self.keys.is_empty(), self.by_release) {
            (false, _) => Step::Wait,
            (true, true) => Step::Won,
            (true, false) => Step::Read,
        }
    }
}

fn whole() -> GetOptions {
    GetOptions::new().with_prefix()
}

/// The transaction that lets go of a won key: its value becomes
/// [`RELEASED`] (lease kept) if it is still this campaign's key.
pub fn release_txn(key: &HeldKey) -> Txn {
    Txn::new()
        .when([Compare::create_revision(
            key.key.as_slice(),
            CompareOp::Equal,
            key.rev,
        )])
        .and_then([TxnOp::put(
            key.key.as_slice(),
            RELEASED,
            Some(PutOptions::new().with_ignore_lease()),
        )])
}

/// Campaigns for `name` with `value` on `lease` until this node wins, its
/// key is gone or etcd fails; the outcome as the event for the term.
pub async fn run(mut client: Client, name: String, value: String, lease: i64) -> EtcdEvent {
    match campaign(&mut client, &name, &value, lease).await {
        Ok(k) => EtcdEvent::Won(k),
        Err(e) => EtcdEvent::CampaignFailed(format!("etcd campaign: {e}")),
    }
}

async fn campaign(
    client: &mut Client,
    name: &str,
    value: &str,
    lease: i64,
) -> Result<HeldKey, String> {
    let key = key(name, lease);
    let prefix = format!("{name}/");
    // etcd's Election.Campaign: put the key unless it exists (a second
    // campaign on the same lease keeps the first key's revision).
    let txn = Txn::new()
        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(
                key.as_str(),
                value,
                Some(PutOptions::new().with_lease(lease)),
            ),
            TxnOp::get(prefix.as_str(), Some(whole())),
        ])
        .or_else([
            TxnOp::get(key.as_str(), None),
            TxnOp::get(prefix.as_str(), Some(whole())),
        ]);
    let resp = client.txn(txn).await.map_err(|e| e.to_string())?;
    let mut revision = resp.header().map_or(0, |h| h.revision());
    let gets: Vec<_> = resp
        .op_responses()
        .into_iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g),
            _ => None,
        })
        .collect();
    let rev = if resp.succeeded() {
        revision
    } else {
        gets.first()
            .and_then(|g| g.kvs().first())
            .map(|kv| kv.create_revision())
            .ok_or("the transaction found this node's key but could not read it")?
    };
    let mine = HeldKey {
        key: key.into_bytes(),
        rev,
        lease,
    };
    let all: Vec<Seen> = gets
        .last()
        .map(|g| g.kvs().iter().map(Seen::from).collect())
        .unwrap_or_default();
    let (mut ahead, mut step) = Ahead::read(&all, &mine);
    loop {
        match step {
            Step::Won => return Ok(mine),
            Step::Gone => {
                return Err("this node's key is gone (its lease expired or was revoked)".into())
            }
            Step::Wait => {
                step = watch(client, &prefix, revision + 1, &mut ahead).await?;
                if step == Step::Won {
                    // As the loop's lines say it: `vip <ip>: ...`.
                    let vip = name.strip_prefix(super::ELECTION_PREFIX).unwrap_or(name);
                    log::info!("vip {vip}: the holder released it: won without a read");
                }
            }
            Step::Read => {
                let r = client
                    .get(prefix.as_str(), Some(whole()))
                    .await
                    .map_err(|e| format!("reading the election: {e}"))?;
                revision = r.header().map_or(revision, |h| h.revision());
                let all: Vec<Seen> = r.kvs().iter().map(Seen::from).collect();
                (ahead, step) = Ahead::read(&all, &mine);
            }
        }
    }
}

/// Watches the election from revision `from` until the campaign's
/// standing changes; Read when etcd cancels the watch (a compacted start
/// revision: the read decides).
async fn watch(
    client: &mut Client,
    prefix: &str,
    from: i64,
    ahead: &mut Ahead,
) -> Result<Step, String> {
    let fail = |e: String| format!("watching the election: {e}");
    let opts = WatchOptions::new().with_prefix().with_start_revision(from);
    let mut stream = client
        .watch(prefix, Some(opts))
        .await
        .map_err(|e| fail(e.to_string()))?;
    loop {
        let Some(r) = stream.message().await.map_err(|e| fail(e.to_string()))? else {
            return Err(fail("the watch ended".into()));
        };
        if r.canceled() {
            return Ok(Step::Read);
        }
        for kv in r.events().iter().filter_map(|e| e.kv()) {
            if let Some(s) = ahead.change(&Seen::from(kv)) {
                return Ok(s);
            }
        }
        let s = ahead.step();
        if s != Step::Wait {
            return Ok(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINE: &str = "keel/vip/10.5.0.100/1f";
    const HOLDER: &str = "keel/vip/10.5.0.100/2a";
    const NEXT: &str = "keel/vip/10.5.0.100/2b";
    const LATER: &str = "keel/vip/10.5.0.100/3c";

    fn kv(key: &str, create: i64, lease: i64) -> Seen {
        Seen {
            key: key.as_bytes().to_vec(),
            create,
            lease,
            released: false,
        }
    }
    fn released(key: &str, create: i64, lease: i64) -> Seen {
        Seen {
            released: true,
            ..kv(key, create, lease)
        }
    }
    fn deleted(key: &str) -> Seen {
        kv(key, 0, 0)
    }
    fn mine() -> HeldKey {
        HeldKey {
            key: MINE.as_bytes().to_vec(),
            rev: 10,
            lease: 0x1f,
        }
    }

    #[test]
    fn standing_from_a_read() {
        let cases: Vec<(&str, Vec<Seen>, Step)> = vec![
            ("own key alone", vec![kv(MINE, 10, 0x1f)], Step::Won),
            (
                "an earlier live key",
                vec![kv(HOLDER, 7, 0x2a), kv(MINE, 10, 0x1f)],
                Step::Wait,
            ),
            (
                "the earlier key released: won without waiting",
                vec![released(HOLDER, 7, 0x2a), kv(MINE, 10, 0x1f)],
                Step::Won,
            ),
            (
                "a later key does not count",
                vec![kv(MINE, 10, 0x1f), kv(LATER, 12, 0x3c)],
                Step::Won,
            ),
            ("empty election", vec![], Step::Gone),
            (
                "own key gone, a later one there",
                vec![kv(LATER, 12, 0x3c)],
                Step::Gone,
            ),
            (
                "own key re-created on the same lease: not this campaign",
                vec![kv(MINE, 14, 0x1f)],
                Step::Gone,
            ),
            (
                "own key name on another lease",
                vec![kv(MINE, 10, 0x20)],
                Step::Gone,
            ),
        ];
        for (name, all, want) in cases {
            assert_eq!(Ahead::read(&all, &mine()).1, want, "{name}");
        }
        assert_eq!(key("keel/vip/10.5.0.100", 0x1f), MINE);
    }

    #[test]
    fn standing_from_the_watch() {
        // Holder at 7, next at 8, this node at 10; each case a list of
        // watch responses (changes in revision order) and the step after
        // the last.
        let start = vec![kv(HOLDER, 7, 0x2a), kv(NEXT, 8, 0x2b), kv(MINE, 10, 0x1f)];
        let cases: Vec<(&str, Vec<Vec<Seen>>, Step)> = vec![
            (
                "holder released, next still there",
                vec![vec![released(HOLDER, 7, 0x2a)]],
                Step::Wait,
            ),
            (
                "holder released, then next revoked: the last was a delete",
                vec![vec![released(HOLDER, 7, 0x2a)], vec![deleted(NEXT)]],
                Step::Read,
            ),
            (
                "next revoked, then the holder released: won",
                vec![vec![deleted(NEXT)], vec![released(HOLDER, 7, 0x2a)]],
                Step::Won,
            ),
            (
                "both in one response, the release last",
                vec![vec![deleted(NEXT), released(HOLDER, 7, 0x2a)]],
                Step::Won,
            ),
            (
                "a released key's later delete changes nothing",
                vec![
                    vec![deleted(NEXT), released(HOLDER, 7, 0x2a)],
                    vec![deleted(HOLDER)],
                ],
                Step::Won,
            ),
            (
                "own key deleted before the release",
                vec![vec![
                    deleted(NEXT),
                    deleted(MINE),
                    released(HOLDER, 7, 0x2a),
                ]],
                Step::Gone,
            ),
            (
                "own key released by someone: not a win",
                vec![vec![released(MINE, 10, 0x1f)]],
                Step::Wait,
            ),
            (
                "later keys come and go",
                vec![vec![kv(LATER, 12, 0x3c)], vec![deleted(LATER)]],
                Step::Wait,
            ),
            (
                "a value change of a live key ahead is no release",
                vec![vec![kv(HOLDER, 7, 0x2a)]],
                Step::Wait,
            ),
        ];
        for (name, responses, want) in cases {
            let (mut a, step) = Ahead::read(&start, &mine());
            assert_eq!(step, Step::Wait, "{name}: start");
            let mut got = Step::Wait;
            for r in &responses {
                got = r
                    .iter()
                    .find_map(|c| a.change(c))
                    .unwrap_or_else(|| a.step());
                if got != Step::Wait {
                    break;
                }
            }
            assert_eq!(got, want, "{name}");
        }
    }
}
