//! What PID 1 knows about its node, gathered as boot goes, for the node
//! API's `status`: the boot phases with their durations, where the config
//! came from and what it warned about, etcd's supervisor once it runs, each
//! VIP's election with its history, and the power requests the API makes.
//!
//! One [`NodeState`] is made by `pid1_main` and shared (`Arc`) with the
//! boot phases, the control plane and the API; every field is behind its
//! own small lock, held only to copy a value in or out.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};

use crate::etcd::Supervisor;
use crate::lock;
use crate::vip::VipState;

/// One boot phase, as logged (`phase links done in 12 ms: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseTime {
    pub name: &'static str,
    pub ms: u128,
    pub detail: String,
}

/// Where the config came from and what it warned about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigInfo {
    pub origin: String,
    pub summary: String,
    pub warnings: Vec<String>,
}

/// etcd on this node.
#[derive(Clone, Default)]
pub enum EtcdSlot {
    /// No config yet.
    #[default]
    Unknown,
    /// A worker: no etcd.
    Worker,
    /// Not started, and why (waiting for its address, a bad config).
    Pending(String),
    /// Supervised; `member` is its name.
    Running {
        sup: Arc<Supervisor>,
        member: String,
    },
}

/// A VIP's election as this node sees it over time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VipHistory {
    /// The holder's campaign value (`<hostname>/<member>`), if known.
    pub holder: Option<String>,
    /// When this node first saw that holder.
    pub holder_since: Option<SystemTime>,
    /// When the holder last changed from one node to another (with or
    /// without a moment of no holder between them).
    pub last_failover: Option<SystemTime>,
    /// The last holder seen.
    last_known: Option<String>,
}

impl VipHistory {
    /// Takes in a new election state; `me` is this node's campaign value.
    pub fn observe(&mut self, state: &VipState, me: &str, now: SystemTime) {
        let holder = match state {
            VipState::Holder { .. } => Some(me.to_owned()),
            VipState::Follower { leader } => leader.clone(),
            VipState::WaitingForEtcd => return,
        };
        if holder == self.holder {
            return;
        }
        if let Some(new) = &holder {
            if self.last_known.as_ref().is_some_and(|old| old != new) {
                self.last_failover = Some(now);
            }
            self.last_known = Some(new.clone());
        }
        self.holder_since = holder.as_ref().map(|_| now);
        self.holder = holder;
    }
}

/// One VIP this node campaigns for.
#[derive(Clone)]
pub struct VipSlot {
    pub ip: IpAddr,
    pub identity: String,
    pub state: watch::Receiver<VipState>,
    pub history: Arc<Mutex<VipHistory>>,
}

/// A reboot or power-off asked through the node API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerRequest {
    pub power_off: bool,
    /// Who asked (the client certificate's subject and address).
    pub by: String,
}

pub struct NodeState {
    /// When PID 1 started.
    pub started: Instant,
    pub started_wall: SystemTime,
    phases: Mutex<Vec<PhaseTime>>,
    config: Mutex<Option<ConfigInfo>>,
    etcd: Mutex<EtcdSlot>,
    vips: Mutex<Vec<VipSlot>>,
    power: mpsc::UnboundedSender<PowerRequest>,
}

impl NodeState {
    /// A new state; power requests arrive on the receiver.
    pub fn new(started: Instant) -> (Arc<NodeState>, mpsc::UnboundedReceiver<PowerRequest>) {
        let (power, rx) = mpsc::unbounded_channel();
        let wall = SystemTime::now()
            .checked_sub(started.elapsed())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let state = NodeState {
            started,
            started_wall: wall,
            phases: Mutex::default(),
            config: Mutex::default(),
            etcd: Mutex::default(),
            vips: Mutex::default(),
            power,
        };
        (Arc::new(state), rx)
    }

    pub fn phase(&self, name: &'static str, ms: u128, detail: &str) {
        lock(&self.phases).push(PhaseTime {
            name,
            ms,
            detail: detail.to_owned(),
        });
    }

    pub fn phases(&self) -> Vec<PhaseTime> {
        lock(&self.phases).clone()
    }

    pub fn set_config(&self, info: ConfigInfo) {
        *lock(&self.config) = Some(info);
    }

    pub fn config(&self) -> Option<ConfigInfo> {
        lock(&self.config).clone()
    }

    pub fn set_etcd(&self, slot: EtcdSlot) {
        *lock(&self.etcd) = slot;
    }

    pub fn etcd(&self) -> EtcdSlot {
        lock(&self.etcd).clone()
    }

    /// Registers a VIP's election and keeps its history from its states.
    pub fn add_vip(&self, ip: IpAddr, identity: String, state: watch::Receiver<VipState>) {
        let history = Arc::new(Mutex::new(VipHistory::default()));
        let (mut rx, h, me) = (state.clone(), history.clone(), identity.clone());
        tokio::spawn(async move {
            loop {
                let s = rx.borrow_and_update().clone();
                lock(&h).observe(&s, &me, SystemTime::now());
                if rx.changed().await.is_err() {
                    break;
                }
            }
        });
        lock(&self.vips).push(VipSlot {
            ip,
            identity,
            state,
            history,
        });
    }

    pub fn vips(&self) -> Vec<VipSlot> {
        lock(&self.vips).clone()
    }

    /// Asks PID 1 to reboot or power off (gracefully: the VIPs first).
    pub fn request_power(&self, req: PowerRequest) -> bool {
        self.power.send(req).is_ok()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_history() {
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let follower = |l: &str| VipState::Follower {
            leader: Some(l.to_owned()),
        };
        let mut h = VipHistory::default();
        // (state, at, holder, since, last failover)
        type Step<'a> = (VipState, u64, Option<&'a str>, Option<u64>, Option<u64>);
        let steps: Vec<Step> = vec![
            (VipState::WaitingForEtcd, 1, None, None, None),
            (follower("cp1/cp1"), 2, Some("cp1/cp1"), Some(2), None),
            (follower("cp1/cp1"), 3, Some("cp1/cp1"), Some(2), None),
            (VipState::WaitingForEtcd, 4, Some("cp1/cp1"), Some(2), None),
            (
                VipState::Holder {
                    since: tokio::time::Instant::now(),
                },
                5,
                Some("me/me"),
                Some(5),
                Some(5),
            ),
            (VipState::Follower { leader: None }, 6, None, None, Some(5)),
            (follower("cp3/cp3"), 7, Some("cp3/cp3"), Some(7), Some(7)),
        ];
        for (state, at, holder, since, failover) in steps {
            h.observe(&state, "me/me", t(at));
            assert_eq!(h.holder.as_deref(), holder, "{state} at {at}");
            assert_eq!(h.holder_since, since.map(t), "{state} at {at}");
            assert_eq!(h.last_failover, failover.map(t), "{state} at {at}");
        }
    }
}
