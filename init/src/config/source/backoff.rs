//! Retry delays: exponential backoff with decorrelated jitter.
//!
//! From "Exponential Backoff And Jitter" (Marc Brooker, AWS Architecture
//! Blog, 2015): `sleep = min(cap, random_between(base, sleep * 3))`. The
//! jitter matters here: a rack of control-plane nodes powered on together
//! must not hit the config server in lockstep after it comes back. Unlike
//! "full jitter" the delay never drops below `base`, so a failing source is
//! not retried in a hot loop.
//!
//! The generator is seeded explicitly (splitmix64), so a unit test can
//! replay a schedule; PID 1 seeds it from something per-machine
//! ([`seed_from`]) so that nodes diverge.

use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

pub const DEFAULT_BASE: Duration = Duration::from_secs(1);
pub const DEFAULT_CAP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    /// The previous delay; `base` before the first.
    last: Duration,
    attempts: u32,
    state: u64,
}

impl Backoff {
    /// `base` is the first and smallest delay, `cap` the largest; a `cap`
    /// below `base` is raised to `base`.
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            last: base,
            attempts: 0,
            state: seed,
        }
    }

    /// 1 s base, 60 s cap.
    pub fn with_seed(seed: u64) -> Backoff {
        Backoff::new(DEFAULT_BASE, DEFAULT_CAP, seed)
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let lo = nanos(self.base);
        let hi = nanos(self.last)
            .saturating_mul(3)
            .min(nanos(self.cap))
            .max(lo);
        let span = hi - lo;
        let pick = if span == u64::MAX {
            self.next_u64()
        } else {
            lo + self.next_u64() % (span + 1)
        };
        let delay = Duration::from_nanos(pick);
        self.last = delay;
        self.attempts = self.attempts.saturating_add(1);
        delay
    }

    /// Starts over after a success (the next delay is near `base` again).
    pub fn reset(&mut self) {
        self.last = self.base;
        self.attempts = 0;
    }

    /// How many delays were handed out since creation or [`reset`](Self::reset).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The largest delay attempt `n` (0-based) can yield:
    /// `min(cap, base * 3^(n+1))`.
    pub fn ceiling(&self, n: u32) -> Duration {
        let factor = 3u64.saturating_pow(n.saturating_add(1));
        Duration::from_nanos(nanos(self.base).saturating_mul(factor).min(nanos(self.cap)))
    }

    /// splitmix64 (Steele, Lea, Flood: "Fast splittable pseudorandom number
    /// generators", OOPSLA 2014): tiny, full-period, good enough for jitter.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A seed from per-machine bytes (a MAC, the DMI UUID) and the clock: nodes
/// booted at the same instant still diverge.
pub fn seed_from(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.update(now.to_le_bytes());
    let d = h.finalize();
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn schedule_bounds() {
        for seed in 0..200u64 {
            let mut b = Backoff::with_seed(seed);
            let mut prev = S;
            for n in 0..40 {
                let d = b.next_delay();
                assert!(d >= S, "seed {seed} attempt {n}: {d:?} below base");
                assert!(d <= 60 * S, "seed {seed} attempt {n}: {d:?} above cap");
                assert!(
                    d <= prev * 3,
                    "seed {seed} attempt {n}: {d:?} > 3 × {prev:?}"
                );
                assert!(d <= b.ceiling(n), "seed {seed} attempt {n}: {d:?}");
                prev = d;
            }
            assert_eq!(b.attempts(), 40);
        }
    }

    #[test]
    fn ceilings() {
        let b = Backoff::with_seed(0);
        let want = [3, 9, 27, 60, 60];
        for (n, secs) in want.iter().enumerate() {
            assert_eq!(
                b.ceiling(u32::try_from(n).unwrap()),
                Duration::from_secs(*secs),
                "attempt {n}"
            );
        }
        assert_eq!(b.ceiling(u32::MAX), 60 * S);
    }

    #[test]
    fn deterministic_per_seed_and_grows() {
        let run = |seed| {
            let mut b = Backoff::with_seed(seed);
            (0..20).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
        // Over many seeds the schedule reaches the cap's neighbourhood: the
        // mean of the 20th delay is well above the base.
        let mean: Duration = (0..100).map(|s| run(s)[19]).sum::<Duration>() / 100;
        assert!(mean > 15 * S, "mean {mean:?}");
    }

    #[test]
    fn reset_and_degenerate_ranges() {
        let mut b = Backoff::new(S, S / 2, 7);
        assert_eq!(b.next_delay(), S, "cap below base is raised to base");
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO, 7);
        assert_eq!(b.next_delay(), Duration::ZERO);
        let mut b = Backoff::new(Duration::MAX, Duration::MAX, 7);
        let _ = b.next_delay();
        let mut b = Backoff::with_seed(1);
        for _ in 0..10 {
            b.next_delay();
        }
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert!(b.next_delay() <= 3 * S);
    }

    #[test]
    fn seeds_differ() {
        assert_ne!(seed_from(&[b"a"]), seed_from(&[b"b"]));
    }
}
