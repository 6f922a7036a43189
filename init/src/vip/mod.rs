//! The virtual-IP election: the control-plane nodes vie for one shared
//! address through etcd, exactly one holds it, and it moves when the holder
//! goes away.
//!
//! Each VIP is one election named `keel/vip/<ip>` with the keys of etcd's
//! election recipe (so etcd's `Observe` and `etcdctl elect` see it),
//! campaigned over the KV API ([`campaign`]) with a lease of TTL `vip.ttl`
//! that Keel keeps alive every TTL/3 on the *local* etcd member. The
//! winner adds the address (/32 or /128) to the link and announces it
//! (gratuitous ARP / unsolicited NA); losing leadership for any reason
//! removes the address first and releases the key second, which lets the
//! next node win without a read.
//!
//! # Why there are never two holders
//!
//! The whole argument is in docs/ARCHITECTURE.md ("The VIP: why there are
//! never two holders"). In short: the lease cannot expire in etcd before
//! the send time of the last acknowledged keepalive + the granted TTL; the
//! holder keeps that deadline minus a margin ([`fence::Fence`]) and
//! removes the address when it passes; nobody else's campaign wins
//! before the lease expires or the key is released; and the one release path
//! (`term.rs`) never resigns or revokes before the address is confirmed
//! gone from every link: an address that will not go keeps the lease, and
//! the last resort is a reboot. etcd can still revoke a live lease early
//! (a raft leader resumed from a freeze, etcd 3.5's `isActive` shortcut):
//! the holder watches its own key and drops the address when the deletion
//! reaches its member, a linearizable read before the next holder can
//! add it.
//!
//! A holder also keeps etcd's raft leadership away from itself
//! ([`leadership`]), so its crash costs one TTL, not a leader election and
//! a lease extension on top.

pub mod announce;
pub mod campaign;
mod election;
pub mod fence;
pub mod gate;
pub mod leadership;
pub mod ops;
pub mod pause;
pub mod record;
pub mod responder;
mod term;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

pub use election::{elect, run, Inputs, Params};

/// The election's name (its key prefix in etcd) for `ip`.
pub fn election_name(ip: IpAddr) -> String {
    format!("{ELECTION_PREFIX}{ip}")
}

/// What every VIP's election name starts with.
pub const ELECTION_PREFIX: &str = "keel/vip/";

/// What a VIP's election loop publishes, for logs and the status view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VipState {
    /// The local etcd member is not healthy (yet), or the link is missing
    /// or down: not campaigning.
    WaitingForEtcd,
    /// Campaigning; `leader` is the holder's campaign value, if any.
    Follower { leader: Option<String> },
    /// This node holds the VIP.
    Holder { since: Instant },
}

impl fmt::Display for VipState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VipState::WaitingForEtcd => f.write_str("waiting-for-etcd"),
            VipState::Follower { leader: Some(l) } => write!(f, "follower(leader={l})"),
            VipState::Follower { leader: None } => f.write_str("follower(leader=none)"),
            VipState::Holder { since } => {
                write!(f, "holder(since {} s)", secs(since.elapsed()))
            }
        }
    }
}

/// Seconds with one decimal, for log lines.
fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}
