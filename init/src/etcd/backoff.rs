//! When to restart etcd after it exits: 1 s, doubling to 30 s, back to 1 s
//! once a run had been healthy for 60 s.
//!
//! No jitter (unlike the config fetcher's backoff): a restart touches only
//! this node, and etcd members re-dial each other on their own schedule.
//! The reset rule keeps a member that crashes once a day from waiting 30 s,
//! while a member that cannot start at all (a bad flag, a data dir from
//! another cluster) settles at one attempt, and one clear error, every 30 s.

use std::time::Duration;

pub const FIRST: Duration = Duration::from_secs(1);
pub const CAP: Duration = Duration::from_secs(30);
/// A run healthy for this long resets the schedule.
pub const RESET_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    reset_after: Duration,
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(FIRST, CAP, RESET_AFTER)
    }
}

impl Backoff {
    /// A `cap` below `first` is raised to `first`.
    pub fn new(first: Duration, cap: Duration, reset_after: Duration) -> Backoff {
        Backoff {
            first,
            cap: cap.max(first),
            reset_after,
            next: first,
        }
    }

    /// The delay before the next start, given how long the run that just
    /// ended was continuously healthy (its longest stretch).
    pub fn next_delay(&mut self, healthy_for: Duration) -> Duration {
        if healthy_for >= self.reset_after {
            self.next = self.first;
        }
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.cap);
        delay
    }

    /// Back to the first delay (for a start that never ran, e.g. after a
    /// stop and a fresh start).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule() {
        let s = Duration::from_secs;
        // (healthy stretch of the run that ended, expected delay)
        let table: &[(u64, u64)] = &[
            (0, 1),
            (0, 2),
            (5, 4),
            (59, 8),
            (0, 16),
            (0, 30),
            (0, 30),
            // Healthy for a minute: back to the start.
            (60, 1),
            (0, 2),
            (3600, 1),
            (0, 2),
            (0, 4),
        ];
        let mut b = Backoff::default();
        for (i, (healthy, want)) in table.iter().enumerate() {
            assert_eq!(b.next_delay(s(*healthy)), s(*want), "step {i}");
        }
        b.reset();
        assert_eq!(b.next_delay(s(0)), s(1));
    }

    #[test]
    fn cap_below_first_is_raised() {
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_secs(1), RESET_AFTER);
        assert_eq!(b.next_delay(Duration::ZERO), Duration::from_secs(5));
        assert_eq!(b.next_delay(Duration::ZERO), Duration::from_secs(5));
    }
}
