//! Bounded in-memory logs with followers: PID 1's own lines (everything
//! it logs but etcd's output) and etcd's output, each the last few hundred
//! lines, for the node API's `logs` (and its follow mode) on a node
//! without a shell.
//!
//! A [`LogBuffer`] keeps lines bounded in count and bytes (whichever is
//! reached first; one line over the byte bound is still kept: the newest
//! wins) and hands each new line to every follower through a
//! `tokio::sync::broadcast` channel, whose `send` never blocks and needs no
//! runtime, so the `log` backend may call it from any thread. A follower
//! that falls behind by more than the channel holds is told how many lines
//! it missed, not stalled.

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::broadcast;

/// Keel's own log: bounds.
pub const KEEL_LINES: usize = 2000;
pub const KEEL_BYTES: usize = 512 * 1024;
/// How many lines a follower may lag before it skips ahead.
const FOLLOW_LAG: usize = 1024;

/// One line, numbered from the start of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub seq: u64,
    /// CLOCK_MONOTONIC when it was logged: the kernel's timestamps on the
    /// console use the same clock (printk's local_clock), so the two line up.
    pub at: Duration,
    pub level: log::Level,
    pub text: String,
}

#[derive(Debug)]
struct Ring {
    lines: VecDeque<Line>,
    bytes: usize,
    next_seq: u64,
    max_lines: usize,
    max_bytes: usize,
}

/// A bounded log with followers.
#[derive(Debug)]
pub struct LogBuffer {
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Line>,
}

impl LogBuffer {
    pub fn new(max_lines: usize, max_bytes: usize) -> LogBuffer {
        LogBuffer {
            ring: Mutex::new(Ring {
                lines: VecDeque::new(),
                bytes: 0,
                next_seq: 0,
                max_lines: max_lines.max(1),
                max_bytes,
            }),
            tx: broadcast::channel(FOLLOW_LAG).0,
        }
    }

    /// Appends a line, now.
    pub fn push(&self, level: log::Level, text: String) {
        self.push_at(now(), level, text);
    }

    /// Appends a line logged at `at`.
    pub fn push_at(&self, at: Duration, level: log::Level, text: String) {
        let mut r = crate::lock(&self.ring);
        let line = Line {
            seq: r.next_seq,
            at,
            level,
            text,
        };
        r.next_seq += 1;
        r.bytes += line.text.len();
        r.lines.push_back(line.clone());
        while r.lines.len() > r.max_lines || (r.bytes > r.max_bytes && r.lines.len() > 1) {
            if let Some(old) = r.lines.pop_front() {
                r.bytes -= old.text.len();
            }
        }
        // Sent under the lock, so a follower that subscribed after reading
        // the backlog (also under it) sees each line exactly once. No
        // receivers is not an error worth knowing.
        let _ = self.tx.send(line);
    }

    /// The last `n` lines (all with `None`), oldest first.
    pub fn last(&self, n: Option<usize>) -> Vec<Line> {
        let r = crate::lock(&self.ring);
        let skip = n.map_or(0, |n| r.lines.len().saturating_sub(n));
        r.lines.iter().skip(skip).cloned().collect()
    }

    /// The last `n` lines and a receiver of every line after them: no line
    /// is lost or repeated between the two.
    pub fn follow(&self, n: Option<usize>) -> (Vec<Line>, broadcast::Receiver<Line>) {
        let r = crate::lock(&self.ring);
        let rx = self.tx.subscribe();
        let skip = n.map_or(0, |n| r.lines.len().saturating_sub(n));
        (r.lines.iter().skip(skip).cloned().collect(), rx)
    }

    /// The sequence number the next line will get: lines pushed later
    /// have `seq >=` it.
    pub fn next_seq(&self) -> u64 {
        crate::lock(&self.ring).next_seq
    }

    /// The newest line at `level` or worse with `seq >= from`, if any kept.
    pub fn last_at(&self, level: log::Level, from: u64) -> Option<Line> {
        crate::lock(&self.ring)
            .lines
            .iter()
            .rev()
            .take_while(|l| l.seq >= from)
            .find(|l| l.level <= level)
            .cloned()
    }

    /// The text of every line kept, oldest first.
    pub fn texts(&self) -> Vec<String> {
        crate::lock(&self.ring)
            .lines
            .iter()
            .map(|l| l.text.clone())
            .collect()
    }

    /// Bytes of text kept.
    pub fn bytes(&self) -> usize {
        crate::lock(&self.ring).bytes
    }
}

/// CLOCK_MONOTONIC now.
pub fn now() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(Duration::from)
        .unwrap_or_default()
}

/// PID 1's own log (the `log` backend feeds it).
pub fn keel() -> &'static LogBuffer {
    static KEEL: OnceLock<LogBuffer> = OnceLock::new();
    KEEL.get_or_init(|| LogBuffer::new(KEEL_LINES, KEEL_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        // (max lines, max bytes, lines pushed, expected kept)
        let table: &[(usize, usize, &[&str], &[&str])] = &[
            (3, 1000, &["a", "b", "c", "d"], &["b", "c", "d"]),
            (10, 5, &["aa", "bb", "cc"], &["bb", "cc"]),
            // One line over the byte bound is still kept: the newest wins.
            (10, 2, &["aa", "bbbbbb"], &["bbbbbb"]),
            (0, 100, &["a", "b"], &["b"]),
        ];
        for (lines, bytes, push, want) in table {
            let b = LogBuffer::new(*lines, *bytes);
            for l in *push {
                b.push(log::Level::Info, (*l).to_owned());
            }
            assert_eq!(b.texts(), *want, "{lines} lines, {bytes} bytes, {push:?}");
            assert_eq!(b.bytes(), want.iter().map(|l| l.len()).sum::<usize>());
        }
    }

    #[test]
    fn last_and_follow_see_each_line_once() {
        let b = LogBuffer::new(100, 1 << 20);
        for i in 0..5 {
            b.push(log::Level::Info, format!("l{i}"));
        }
        let texts = |v: &[Line]| v.iter().map(|l| l.text.clone()).collect::<Vec<_>>();
        assert_eq!(texts(&b.last(Some(2))), ["l3", "l4"]);
        assert_eq!(b.last(None).len(), 5);
        assert_eq!(b.last(Some(99)).len(), 5);
        let (backlog, mut rx) = b.follow(Some(1));
        assert_eq!(texts(&backlog), ["l4"]);
        b.push(log::Level::Warn, "l5".to_owned());
        let next = rx.try_recv().unwrap();
        assert_eq!(
            (next.seq, next.text.as_str(), next.level),
            (5, "l5", log::Level::Warn)
        );
        assert!(rx.try_recv().is_err());
    }
}
