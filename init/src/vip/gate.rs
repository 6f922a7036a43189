//! Nothing leaves for the VIP without a fresh confirmation of the lease.
//!
//! Every answer to a request for the VIP, and every announcement, waits
//! for the acknowledgement (TTL > 0) of a keepalive that was *sent after*
//! it was asked for: the request read from the socket, the announcement
//! falling due. etcd 3.5.13+ renews a lease only on a leader that has
//! confirmed its leadership (`ensureLeadership`, etcd PR 17425), so such
//! an acknowledgement says that the lease was alive in the cluster after
//! the question was asked. A node resumed from a pause (its clock stood
//! still, the fence ran late) has only acknowledgements from before the
//! pause: everything it reads afterwards waits for a new round trip,
//! which a lost lease fails.
//!
//! Order is by sequence number, not by time: each keepalive gets the next
//! number when it is sent, each item needs the number of the first
//! keepalive not yet sent when it arrived. This holds under any clock,
//! paused or not.
//!
//! An item that arrives with no on-demand keepalive in flight asks for
//! one at once (one etcd round trip, not the next TTL/3 tick); while one
//! is in flight, later items wait for it and one more keepalive follows
//! its acknowledgement. So a flood of requests costs etcd at most one
//! keepalive per round trip, and the list of waiting items is bounded.

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
    /// The number the next keepalive sent gets.
    next_seq: u64,
    /// The on-demand keepalive in flight, if any.
    on_demand: Option<u64>,
    /// Items in arrival order with the keepalive number each needs.
    waiting: VecDeque<(u64, Item)>,
    /// Items dropped because too many waited.
    pub dropped: u64,
}

impl Gate {
    /// A keepalive was sent: its number. `on_demand` when it was sent
    /// because [`Gate::wait`] or [`Gate::acked`] asked for it.
    pub fn sent(&mut self, on_demand: bool) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if on_demand {
            self.on_demand = Some(seq);
        }
        seq
    }

    /// `item` waits for confirmation; true when a keepalive must be sent
    /// now (on demand). An announcement already waiting is not queued
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

    /// Keepalive `seq` was acknowledged with TTL > 0: the items it
    /// confirms, in arrival order, and whether another keepalive must be
    /// sent now for items that arrived after it was sent.
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
        /// An item arrives; whether a keepalive must go at once.
        Wait(Item, bool),
        /// A keepalive is sent (on demand or not); its number.
        Sent(bool, u64),
        /// Keepalive n acknowledged: items released, another wanted.
        Acked(u64, usize, bool),
    }
    use Step::*;

    #[test]
    fn table() {
        let cases: Vec<(&str, Vec<Step>)> = vec![
            (
                "an acknowledgement of a keepalive sent before the request confirms nothing",
                vec![
                    Sent(false, 0),
                    Wait(ASK, true),
                    Acked(0, 0, true),
                    Sent(true, 1),
                    Acked(1, 1, false),
                ],
            ),
            (
                "a request waits for the on-demand keepalive sent after it",
                vec![Wait(ASK, true), Sent(true, 0), Acked(0, 1, false)],
            ),
            (
                "a periodic keepalive sent after the request confirms it too",
                vec![Wait(ASK, true), Sent(false, 0), Acked(0, 1, false)],
            ),
            (
                "requests during an on-demand round trip: one more keepalive after it",
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
                "acknowledgements out of the gate's order release only what they confirm",
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
