//! The holder's fencing deadline: the moment after which etcd may have let
//! the lease expire, so the VIP must already be gone from this node.
//!
//! Times are tokio [`Instant`]s, which read CLOCK_MONOTONIC
//! (clock_gettime(2)): it never jumps when the wall clock is stepped (NTP,
//! `date -s`, an RTC that was wrong at boot), so neither a step forward nor
//! back moves the deadline.

use std::time::Duration;

use tokio::time::Instant;

/// The safety margin taken off the TTL: the larger of 1 s and TTL/5. It
/// covers the time to remove the address once the deadline passes, timer
/// slack, and a clock on this node running slower than the etcd leader's.
pub fn margin(ttl: Duration) -> Duration {
    (ttl / 5).max(Duration::from_secs(1))
}

/// How often the lease is kept alive: TTL/3, so two keepalives in a row
/// may be lost before the deadline passes.
pub fn keepalive_interval(ttl: Duration) -> Duration {
    ttl / 3
}

/// The deadline of one lease, moved forward by each acknowledged keepalive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fence {
    deadline: Option<Instant>,
}

impl Fence {
    /// A keepalive (or the grant) sent at `sent` was acknowledged with
    /// `granted` TTL. The lease lives at least until `sent + granted` on
    /// etcd's side: etcd can only have received the request after it was
    /// sent, and refreshes the lease to the full TTL from that moment.
    /// An acknowledgement of an older request never moves the deadline
    /// back.
    pub fn ack(&mut self, sent: Instant, granted: Duration) {
        let d = sent + granted.saturating_sub(margin(granted));
        self.deadline = Some(self.deadline.map_or(d, |old| old.max(d)));
    }

    /// When the VIP must be gone; `None` before any acknowledgement.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the VIP may be held at `now`.
    pub fn valid_at(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now < d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn margins_and_intervals() {
        // (ttl s, margin ms, keepalive interval ms)
        let cases = [
            (2, 1000, 666),
            (5, 1000, 1666),
            (10, 2000, 3333),
            (30, 6000, 10000),
        ];
        for (ttl, m, ka) in cases {
            let ttl = Duration::from_secs(ttl);
            assert_eq!(margin(ttl), ms(m), "margin for {ttl:?}");
            assert_eq!(keepalive_interval(ttl).as_millis(), ka, "interval {ttl:?}");
        }
    }

    #[test]
    fn deadline_table() {
        struct Case {
            name: &'static str,
            /// (sent at ms, granted TTL s), in the order acknowledged.
            acks: &'static [(u64, u64)],
            /// Expected deadline in ms from the base, None = never acked.
            deadline: Option<u64>,
            /// (now ms, may hold)
            checks: &'static [(u64, bool)],
        }
        let cases = [
            Case {
                name: "no acknowledgement: never valid",
                acks: &[],
                deadline: None,
                checks: &[(0, false), (10_000, false)],
            },
            Case {
                name: "grant only: TTL 5 s minus 1 s margin",
                acks: &[(0, 5)],
                deadline: Some(4000),
                checks: &[(0, true), (3999, true), (4000, false), (4500, false)],
            },
            Case {
                name: "keepalives every TTL/3 move it forward",
                acks: &[(0, 5), (1666, 5), (3332, 5)],
                deadline: Some(7332),
                checks: &[(5000, true), (7331, true), (7332, false)],
            },
            Case {
                name: "an acknowledgement counts from the send, not the arrival",
                // Sent at 1 s, acknowledged (processed here) much later: the
                // deadline still counts from 1 s.
                acks: &[(1000, 5)],
                deadline: Some(5000),
                checks: &[(4999, true), (5000, false)],
            },
            Case {
                name: "an older request acknowledged late never moves it back",
                acks: &[(3000, 5), (1000, 5)],
                deadline: Some(7000),
                checks: &[(6999, true), (7000, false)],
            },
            Case {
                name: "etcd granted more than asked (its minimum TTL)",
                acks: &[(0, 2), (500, 3)],
                deadline: Some(2500),
                checks: &[(2499, true), (2500, false)],
            },
            Case {
                name: "TTL 30 s: margin is TTL/5",
                acks: &[(0, 30)],
                deadline: Some(24_000),
                checks: &[(23_999, true), (24_000, false)],
            },
            Case {
                name: "TTL 1 s (below the margin): never valid",
                acks: &[(0, 1)],
                deadline: Some(0),
                checks: &[(0, false)],
            },
        ];
        let base = Instant::now();
        for c in cases {
            let mut f = Fence::default();
            for &(sent, ttl) in c.acks {
                f.ack(base + ms(sent), Duration::from_secs(ttl));
            }
            assert_eq!(
                f.deadline()
                    .map(|d| u64::try_from((d - base).as_millis()).unwrap()),
                c.deadline,
                "{}",
                c.name
            );
            for &(now, ok) in c.checks {
                assert_eq!(f.valid_at(base + ms(now)), ok, "{} at {now} ms", c.name);
            }
        }
    }

    /// A wall-clock step (here: the system clock read before and after,
    /// with the deadline computed from monotonic instants only) cannot
    /// matter, because nothing in the fence reads the wall clock; the
    /// test pins that the deadline is a pure function of the monotonic
    /// send times, and that tokio's clock is monotonic across a sleep.
    #[tokio::test(start_paused = true)]
    async fn monotonic_time_only() {
        let mut f = Fence::default();
        let sent = Instant::now();
        f.ack(sent, Duration::from_secs(5));
        tokio::time::sleep(ms(3999)).await;
        assert!(f.valid_at(Instant::now()));
        tokio::time::sleep(ms(1)).await;
        assert!(!f.valid_at(Instant::now()));
        assert_eq!(f.deadline(), Some(sent + ms(4000)));
    }
}
