//! The virtual-IP election: the control-plane nodes vie for one shared
//! address through etcd, exactly one holds it, and it moves when the holder
//! goes away.
//!
//! Each VIP is one election (etcd's v3election service: `Campaign`,
//! `Leader`, `Observe`, `Resign`) named `keel/vip/<ip>`, campaigned with a
//! lease of TTL `vip.ttl` that Keel keeps alive every TTL/3 on the *local*
//! etcd member. The winner adds the address (/32 or /128) to the link and
//! announces it (gratuitous ARP / unsolicited NA); losing leadership for any
//! reason removes the address first and resigns second.
//!
//! # Why there are never two holders
//!
//! etcd elects the owner of the lowest-revision key under the election's
//! prefix; another node's `Campaign` returns only once this node's key is
//! gone, and the key goes only by `Resign` (this node's own, after it has
//! removed the address) or by etcd revoking the lease when it expires.
//! etcd refreshes a lease to its full TTL when it *receives* a keepalive,
//! which is after this node *sent* it; leader changes inside etcd only
//! extend leases (the new leader renews every lease on promotion,
//! lessor.Promote). So the lease cannot expire before
//! `send time of the last acknowledged keepalive + granted TTL`.
//!
//! The holder keeps exactly that deadline ([`fence::Fence`]), minus a
//! margin of max(1 s, TTL/5), on the monotonic clock, and removes the
//! address when it passes without a newer acknowledgement — whatever the
//! cause: etcd down, partitioned away from the quorum, slow, or this node's
//! own process stalled (the removal is the first thing done when the timer
//! fires). The margin covers the removal itself and a clock here running
//! slower than the etcd leader's. Hence the old holder's address is gone
//! before the lease can expire, and the lease must expire (or be resigned)
//! before anyone else's `Campaign` can return: at no instant do two nodes
//! hold the address. A new holder also checks, after `Campaign` returns,
//! that its own key is the current leader and its lease's deadline has not
//! passed, because etcd 3.4's `Campaign` can return after the caller's own
//! key expired while it waited.
//!
//! What this cannot cover: a node whose kernel keeps the address while PID
//! 1 is frozen for longer than the margin (the address removal cannot run),
//! and clocks that drift by more than the margin within one TTL.

pub mod announce;
mod election;
pub mod fence;
pub mod ops;
mod term;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

pub use election::{elect, run, Inputs, Params};

/// The election's name (its key prefix in etcd) for `ip`.
pub fn election_name(ip: IpAddr) -> String {
    format!("keel/vip/{ip}")
}

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
