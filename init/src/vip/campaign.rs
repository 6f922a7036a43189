//! The campaign, run by Keel itself over the KV API rather than through
//! etcd's `Campaign` RPC, so that a win is known from one linearizable
//! operation instead of three.
//!
//! The keys are exactly those of etcd's election (client/v3/concurrency,
//! `Election.Campaign`): `<name>/<lease in hex>`, attached to the lease,
//! and the holder is the key with the lowest create revision; so etcd's
//! `Observe`, `Leader` and `Resign` (which Keel still uses) and `etcdctl
//! elect` see the same election.
//!
//! Why not the RPC: etcd's server-side `Campaign` puts the key, then waits
//! until no key created before it is left (`waitDeletes`: a linearizable
//! read after each delete it watched), and returns without checking that
//! its own key still exists: a campaign whose lease expired while it
//! waited returns a win on a key that is gone. Keel therefore confirmed
//! every win with a linearizable read of its key before taking the
//! address: a write and two reads under TCG (~100 ms each). Here:
//! - the put and a read of the election's first key are one transaction
//!   (a raft write, so its reads see the state at its own revision): when
//!   the first key is this node's, it has won, confirmed by the write;
//! - otherwise it watches the key ahead of it from the transaction's
//!   revision on, and after its delete reads the election's first key
//!   once (linearizable: served after the member confirmed who leads with
//!   a quorum, etcd's ReadIndex): this node's own key, with its lease and
//!   create revision, is a win; another one created earlier, wait again;
//!   anything else means this node's key is gone (its lease expired or
//!   was revoked), and the campaign fails.
//!
//! Either way a win is a linearizable observation that this node's key is
//! the election's first, which is what the check before the address
//! stood for ([`super::gate`] still confirms every later announcement and
//! answer).

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, KeyValue, PutOptions, SortOrder, SortTarget,
    Txn, TxnOp, TxnOpResponse, WatchOptions,
};

use super::ops::{EtcdEvent, HeldKey};

/// This node's campaign key on `lease` in election `name`.
pub fn key(name: &str, lease: i64) -> String {
    format!("{name}/{lease:x}")
}

/// Where this node's campaign stands, from the election's first key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// The first key is this node's own (same create revision and lease).
    Won,
    /// A key created earlier is first: wait for its delete.
    Behind { key: Vec<u8> },
    /// This node's key is not there: nothing earlier is first, and it is
    /// not first either.
    Gone,
}

/// A key of the election as read: its name, create revision and lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub key: Vec<u8>,
    pub create: i64,
    pub lease: i64,
}

impl From<&KeyValue> for Seen {
    fn from(kv: &KeyValue) -> Seen {
        Seen {
            key: kv.key().to_vec(),
            create: kv.create_revision(),
            lease: kv.lease(),
        }
    }
}

/// The election's first key, `first` (None: the election is empty), as
/// seen by `mine`.
pub fn standing(first: Option<&Seen>, mine: &HeldKey) -> Standing {
    let Some(kv) = first else {
        return Standing::Gone;
    };
    if kv.key == mine.key && kv.create == mine.rev && kv.lease == mine.lease {
        return Standing::Won;
    }
    if kv.create < mine.rev {
        return Standing::Behind {
            key: kv.key.clone(),
        };
    }
    Standing::Gone
}

/// The election's first key by create revision.
fn first_options() -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(1)
}

/// Campaigns for `name` with `value` on `lease` until this node wins, the
/// key is gone or etcd fails; the outcome as the event for the term.
pub async fn run(mut client: Client, name: String, value: String, lease: i64) -> EtcdEvent {
    match campaign(&mut client, &name, &value, lease).await {
        Ok(k) => EtcdEvent::Won(k),
        Err(e) => EtcdEvent::CampaignFailed(e),
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
            TxnOp::get(prefix.as_str(), Some(first_options())),
        ])
        .or_else([
            TxnOp::get(key.as_str(), None),
            TxnOp::get(prefix.as_str(), Some(first_options())),
        ]);
    let resp = client
        .txn(txn)
        .await
        .map_err(|e| format!("etcd campaign: {e}"))?;
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
            .ok_or("etcd campaign: the key exists and does not")?
    };
    let mine = HeldKey {
        key: key.into_bytes(),
        rev,
        lease,
    };
    let mut first: Option<Seen> = gets.last().and_then(|g| g.kvs().first().map(Seen::from));
    loop {
        match standing(first.as_ref(), &mine) {
            Standing::Won => return Ok(mine),
            Standing::Gone => {
                return Err(
                    "etcd campaign: this node's key is gone (its lease expired or was revoked)"
                        .into(),
                )
            }
            Standing::Behind { key } => {
                deleted(client, key, revision + 1).await?;
                let r = client
                    .get(prefix.as_str(), Some(first_options()))
                    .await
                    .map_err(|e| format!("etcd campaign: reading the election: {e}"))?;
                revision = r.header().map_or(revision, |h| h.revision());
                first = r.kvs().first().map(Seen::from);
            }
        }
    }
}

/// Returns once `key` is deleted at or after revision `from` (at once when
/// that history is compacted: the read that follows decides).
async fn deleted(client: &mut Client, key: Vec<u8>, from: i64) -> Result<(), String> {
    let fail = |e: String| format!("etcd campaign: watching the key ahead: {e}");
    let opts = WatchOptions::new().with_start_revision(from);
    let mut stream = client
        .watch(key, Some(opts))
        .await
        .map_err(|e| fail(e.to_string()))?;
    loop {
        let Some(r) = stream.message().await.map_err(|e| fail(e.to_string()))? else {
            return Err(fail("the watch ended".into()));
        };
        if r.canceled()
            || r.events()
                .iter()
                .any(|e| e.event_type() == EventType::Delete)
        {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, create: i64, lease: i64) -> Seen {
        Seen {
            key: key.as_bytes().to_vec(),
            create,
            lease,
        }
    }

    #[test]
    fn standing_from_the_first_key() {
        let mine = HeldKey {
            key: b"keel/vip/10.5.0.100/1f".to_vec(),
            rev: 10,
            lease: 0x1f,
        };
        let cases: Vec<(&str, Option<Seen>, Standing)> = vec![
            (
                "own key first",
                Some(kv("keel/vip/10.5.0.100/1f", 10, 0x1f)),
                Standing::Won,
            ),
            (
                "an earlier key first",
                Some(kv("keel/vip/10.5.0.100/2a", 7, 0x2a)),
                Standing::Behind {
                    key: b"keel/vip/10.5.0.100/2a".to_vec(),
                },
            ),
            ("empty election", None, Standing::Gone),
            (
                "a later key first: own key gone",
                Some(kv("keel/vip/10.5.0.100/3b", 12, 0x3b)),
                Standing::Gone,
            ),
            (
                "own key re-created on the same lease: not this campaign",
                Some(kv("keel/vip/10.5.0.100/1f", 14, 0x1f)),
                Standing::Gone,
            ),
            (
                "own key name on another lease",
                Some(kv("keel/vip/10.5.0.100/1f", 10, 0x20)),
                Standing::Gone,
            ),
        ];
        for (name, first, want) in cases {
            assert_eq!(standing(first.as_ref(), &mine), want, "{name}");
        }
        assert_eq!(key("keel/vip/10.5.0.100", 0x1f), "keel/vip/10.5.0.100/1f");
    }
}
