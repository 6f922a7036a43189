//! Nothing leaves for the VIP without a fresh confirmation of the lease.
//!
//! Every answer to a request for the VIP, and every announcement but the
//! first after a win (which rides on the win itself, a committed
//! observation moments old: `campaign.rs`), waits for a *check* that was
//! started after it was asked for (the request
//! read from the socket, the announcement falling due): a linearizable
//! read in which this node's campaign key still exists with its lease
//! (`TermOps::check`). A linearizable read is served only once the member
//! has confirmed with a quorum who leads, so the key existed in the
//! cluster after the question was asked, and while it exists no other
//! node's campaign can win. A keepalive acknowledgement is not used for
//! this: etcd 3.5.16 renews a lease on a leader that ticked recently
//! without checking its leadership (PR 18439), which is exactly what a
//! leader resumed from a pause looks like, and its lessor, paused with
//! it, still counts the lease as alive (measured: the QEMU freeze test
//! failed that way). A node resumed from a pause therefore answers
//! nothing it read after the pause until a new check succeeds, which a
//! lost lease fails.
//!
//! Order is by round number, not by time: each check gets the next number
//! when it starts, each item needs the number of the first check not yet
//! started when it arrived. This holds under any clock, paused or not.
//!
//! An item that arrives with no check in flight starts one at once (one
//! etcd round trip); while one is in flight, later items wait for it and
//! one more check follows its answer. So a flood of requests costs etcd at
//! most one read per round trip, and the list of waiting items is bounded.

use std::collections::VecDeque;

use super::responder::Asked;

/// At most this many items wait; the oldest are dropped beyond it (a
/// flood of requests, or etcd not answering).
pub const MAX_WAITING: usize = 64;

/// Something to send for the VIP once confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    Answer(Asked),
    Announce,
}

#[derive(Debug, Default)]
pub struct Gate {
    /// The number the next check started gets.
    next_seq: u64,
    /// The check in flight, if any.
    on_demand: Option<u64>,
    /// Items in arrival order with the check number each needs.
    waiting: VecDeque<(u64, Item)>,
    /// Items dropped because too many waited.
    pub dropped: u64,
}

impl Gate {
    /// A check was started: its number. `on_demand` when it was started
    /// because [`Gate::wait`] or [`Gate::acked`] asked for it.
    pub fn sent(&mut self, on_demand: bool) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if on_demand {
            self.on_demand = Some(seq);
        }
        seq
    }

    /// `item` waits for confirmation; true when a check must start now. An announcement already waiting is not queued
    /// twice.
    pub fn wait(&mut self, item: Item) -> bool {
        let dup = item == Item::Announce && self.waiting.iter().any(|(_, i)| *i == Item::Announce);
        if !dup {
            if self.waiting.len() >= MAX_WAITING {
                self.waiting.pop_front();
                self.dropped += 1;
            }
            self.waiting.push_back((self.next_seq, item));
        }
        self.on_demand.is_none()
    }

    /// Check `seq` found the lease alive: the items it confirms, in
    /// arrival order, and whether another check must start now for items
    /// that arrived after it started.
    pub fn acked(&mut self, seq: u64) -> (Vec<Item>, bool) {
        let mut ready = Vec::new();
        while let Some((needs, item)) = self.waiting.front().copied() {
            if needs > seq {
                break;
            }
            self.waiting.pop_front();
            ready.push(item);
        }
        let done = self.on_demand.is_some_and(|s| s <= seq);
        if done {
            self.on_demand = None;
        }
        let again = self.on_demand.is_none() && !self.waiting.is_empty();
        (ready, again)
    }

    /// Check `seq` did not complete: its items keep waiting for a later
    /// one.
    pub fn failed(&mut self, seq: u64) {
        if self.on_demand == Some(seq) {
            self.on_demand = None;
        }
    }

    /// Whether items wait with no check in flight (a failed one): the
    /// caller starts one on its next tick.
    pub fn stalled(&self) -> bool {
        self.on_demand.is_none() && !self.waiting.is_empty()
    }

    /// Forgets everything waiting (the term is over: nothing more may be
    /// sent for the VIP).
    pub fn clear(&mut self) {
        self.waiting.clear();
        self.on_demand = None;
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASK: Item = Item::Answer(Asked::Arp {
        mac: [2, 0, 0, 0, 0, 1],
        ip: std::net::Ipv4Addr::new(10, 5, 0, 1),
    });

    /// Steps on one gate and what each must give.
    enum Step {
        /// An item arrives; whether a check must start at once.
        Wait(Item, bool),
        /// A check starts (on demand or not); its number.
        Sent(bool, u64),
        /// Check n found the lease alive: items released, another wanted.
        Acked(u64, usize, bool),
    }
    use Step::*;

    #[test]
    fn table() {
        let cases: Vec<(&str, Vec<Step>)> = vec![
            (
                "a check started before the request confirms nothing",
                vec![
                    Sent(false, 0),
                    Wait(ASK, true),
                    Acked(0, 0, true),
                    Sent(true, 1),
                    Acked(1, 1, false),
                ],
            ),
            (
                "a request waits for the check started after it",
                vec![Wait(ASK, true), Sent(true, 0), Acked(0, 1, false)],
            ),
            (
                "any check started after the request confirms it",
                vec![Wait(ASK, true), Sent(false, 0), Acked(0, 1, false)],
            ),
            (
                "requests during a check: one more check after it",
                vec![
                    Wait(ASK, true),
                    Sent(true, 0),
                    Wait(ASK, false),
                    Wait(ASK, false),
                    Acked(0, 1, true),
                    Sent(true, 1),
                    Acked(1, 2, false),
                ],
            ),
            (
                "an announcement waiting is not queued twice",
                vec![
                    Wait(Item::Announce, true),
                    Wait(Item::Announce, true),
                    Sent(true, 0),
                    Acked(0, 1, false),
                ],
            ),
            (
                "answers out of order release only what they confirm",
                vec![
                    Wait(ASK, true),
                    Sent(true, 0),
                    Sent(false, 1),
                    Wait(ASK, false),
                    Acked(1, 1, true),
                    Acked(0, 0, true),
                ],
            ),
        ];
        for (name, steps) in cases {
            let mut g = Gate::default();
            for (i, step) in steps.iter().enumerate() {
                match *step {
                    Wait(item, want) => assert_eq!(g.wait(item), want, "{name}: step {i}"),
                    Sent(on_demand, want) => {
                        assert_eq!(g.sent(on_demand), want, "{name}: step {i}")
                    }
                    Acked(seq, n, again) => {
                        let (ready, a) = g.acked(seq);
                        assert_eq!((ready.len(), a), (n, again), "{name}: step {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_failed_check_leaves_items_waiting() {
        let mut g = Gate::default();
        assert!(g.wait(ASK));
        let s = g.sent(true);
        g.failed(s);
        assert!(g.stalled());
        let s = g.sent(true);
        assert!(!g.stalled());
        assert_eq!(g.acked(s).0.len(), 1);
        assert!(!g.stalled());
    }

    #[test]
    fn bounded() {
        let mut g = Gate::default();
        for _ in 0..MAX_WAITING + 10 {
            g.wait(ASK);
        }
        assert_eq!((g.waiting(), g.dropped), (MAX_WAITING, 10));
        g.clear();
        assert_eq!(g.waiting(), 0);
    }
}
