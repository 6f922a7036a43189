//! What `make bench-faults` measures in the switch's frame record, per
//! VIP: the failover after a fault, the two measures of two holders, and
//! the needless moves. Kept apart from the fault driver so the arithmetic
//! is tested on frames made up for it.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use keel_switch::{Frame, MacAddr, HOST_MAC};

/// Claims of one MAC closer than this belong to one holding interval
/// (the observer probes every 50 ms; a holder answers every probe).
pub const GAP: Duration = Duration::from_millis(300);

/// One fault's outcome for one VIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// From the fault to the first claim by a MAC other than the old
    /// holder's; `None`: the VIP did not move.
    pub failover: Option<Duration>,
    /// Total time two MACs' holding intervals intersect.
    pub overlap: Duration,
    pub overlap_events: usize,
    /// Probe windows (from one observer probe to the next) in which two
    /// MACs claimed: also counts a clean hand-over that falls inside one
    /// window.
    pub shared_windows: usize,
}

/// Every claim of `ip` (keel-switch's one definition: ARP replies and
/// gratuitous ARPs; neighbour advertisements).
pub fn claims(frames: &[Frame], ip: IpAddr) -> Vec<(Instant, MacAddr)> {
    keel_switch::claims(frames, ip)
}

/// Changes of the claiming MAC.
pub fn moves(claims: &[(Instant, MacAddr)]) -> usize {
    claims.windows(2).filter(|w| w[0].1 != w[1].1).count()
}

/// Holding intervals: (MAC, first claim, last claim), claims of one MAC
/// less than [`GAP`] apart forming one, in order of their first claim.
pub fn intervals(claims: &[(Instant, MacAddr)]) -> Vec<(MacAddr, Instant, Instant)> {
    let mut out: Vec<(MacAddr, Instant, Instant)> = Vec::new();
    for (at, m) in claims {
        match out.iter_mut().rev().find(|(im, _, _)| im == m) {
            Some(iv) if *at - iv.2 < GAP => iv.2 = *at,
            _ => out.push((*m, *at, *at)),
        }
    }
    out
}

/// The observer's probes for `ip` among `frames` (ARP requests or
/// neighbour solicitations from [`HOST_MAC`]), as times.
fn probes(frames: &[Frame], ip: IpAddr) -> Vec<Instant> {
    let asks = |f: &Frame| match ip {
        IpAddr::V4(v4) => f.arp().is_some_and(|a| a.is_request() && a.target_ip == v4),
        // The NS for ip goes to its solicited-node group.
        IpAddr::V6(v6) => f.dst() == Some(keel_switch::solicited_node(v6).1),
    };
    frames
        .iter()
        .filter(|f| f.src() == Some(HOST_MAC) && asks(f))
        .map(|f| f.at)
        .collect()
}

/// The outcome for `ip` over `frames`, recorded from a fault at `t` on
/// the node whose MAC is `old`.
pub fn measure(frames: &[Frame], t: Instant, ip: IpAddr, old: MacAddr) -> Outcome {
    let cl = claims(frames, ip);
    let failover = cl
        .iter()
        .find(|(_, m)| *m != old)
        .map(|(at, _)| at.saturating_duration_since(t));
    let intervals = intervals(&cl);
    let (mut overlap, mut overlap_events) = (Duration::ZERO, 0);
    for (i, a) in intervals.iter().enumerate() {
        for b in &intervals[i + 1..] {
            if a.0 == b.0 {
                continue;
            }
            let (start, end) = (a.1.max(b.1), a.2.min(b.2));
            if start <= end {
                overlap_events += 1;
                overlap += end - start;
            }
        }
    }
    let shared_windows = probes(frames, ip)
        .windows(2)
        .filter(|w| {
            let mut in_window = cl
                .iter()
                .filter(|(at, _)| *at >= w[0] && *at < w[1])
                .map(|(_, m)| *m);
            let first = in_window.next();
            in_window.any(|m| Some(m) != first)
        })
        .count();
    Outcome {
        failover,
        overlap,
        overlap_events,
        shared_windows,
    }
}

/// "1.23 s".
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// The median and the max of `v` (sorted here), as [`secs`]; "-" when
/// empty.
pub fn median_max(mut v: Vec<Duration>) -> (String, String) {
    v.sort();
    (
        v.get(v.len() / 2).map_or("-".into(), |d| secs(*d)),
        v.last().map_or("-".into(), |d| secs(*d)),
    )
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use keel_switch::{arp_probe, arp_reply, gratuitous_arp, neighbor_solicitation};

    use super::*;

    const A: MacAddr = MacAddr::new(0x52, 0x54, 0, 0, 0, 0x11);
    const B: MacAddr = MacAddr::new(0x52, 0x54, 0, 0, 0, 0x12);
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 100);

    /// What the observer sees at `ms` after t0: a probe (`?`), or a reply
    /// from A or B (`a`, `b`), or a gratuitous ARP from B (`B`).
    fn frames(t0: Instant, events: &[(u64, char)]) -> Vec<Frame> {
        let me = Ipv4Addr::UNSPECIFIED;
        events
            .iter()
            .map(|(ms, e)| Frame {
                at: t0 + Duration::from_millis(*ms),
                port: 0,
                bytes: match e {
                    '?' => arp_probe(VIP, HOST_MAC, me),
                    'a' => arp_reply(A, VIP, HOST_MAC, me),
                    'b' => arp_reply(B, VIP, HOST_MAC, me),
                    _ => gratuitous_arp(B, VIP),
                },
            })
            .collect()
    }

    /// Probes every 50 ms from 0 to 1000 ms, with the answers given.
    fn run(answers: &[(u64, char)]) -> Vec<(u64, char)> {
        let mut v: Vec<(u64, char)> = (0..=20).map(|i| (i * 50, '?')).collect();
        v.extend_from_slice(answers);
        v.sort_by_key(|(ms, _)| *ms);
        v
    }

    #[test]
    fn outcomes() {
        let every = |from: u64, to: u64, who: char| -> Vec<(u64, char)> {
            (from / 50..=to / 50).map(|i| (i * 50 + 1, who)).collect()
        };
        let clean: Vec<_> = [every(0, 300, 'a'), vec![(700, 'B')], every(750, 1000, 'b')].concat();
        let overlapping: Vec<_> = [every(0, 600, 'a'), every(400, 1000, 'b')].concat();
        let one_window: Vec<_> = [every(0, 300, 'a'), vec![(310, 'b')]].concat();
        let stays = every(0, 1000, 'a');
        let ms = Duration::from_millis;
        // (ms after t0, what) as `frames` reads it.
        type Events<'a> = &'a [(u64, char)];
        let cases: [(&str, Events, Outcome); 4] = [
            (
                "a gap, then the new holder's announcement",
                &clean,
                Outcome {
                    failover: Some(ms(700)),
                    overlap: ms(0),
                    overlap_events: 0,
                    shared_windows: 0,
                },
            ),
            (
                "both answer from 400 to 600 ms",
                &overlapping,
                Outcome {
                    failover: Some(ms(401)),
                    overlap: ms(200),
                    overlap_events: 1,
                    shared_windows: 5,
                },
            ),
            (
                "B answers 9 ms after A's last answer: no overlap, one shared window",
                &one_window,
                Outcome {
                    failover: Some(ms(310)),
                    overlap: ms(0),
                    overlap_events: 0,
                    shared_windows: 1,
                },
            ),
            (
                "no move",
                &stays,
                Outcome {
                    failover: None,
                    overlap: ms(0),
                    overlap_events: 0,
                    shared_windows: 0,
                },
            ),
        ];
        let t0 = Instant::now();
        for (what, answers, want) in cases {
            let f = frames(t0, &run(answers));
            assert_eq!(measure(&f, t0, IpAddr::V4(VIP), A), want, "{what}");
        }
        let f = frames(t0, &run(&clean));
        assert_eq!(moves(&claims(&f, IpAddr::V4(VIP))), 1);
    }

    /// The IPv6 VIP's probes are the observer's solicitations to its
    /// solicited-node group, not those for another address.
    #[test]
    fn ipv6_probes() {
        let vip: Ipv6Addr = "fd00:a05::100".parse().unwrap();
        let other: Ipv6Addr = "fd00:a05::11".parse().unwrap();
        let t0 = Instant::now();
        let ll = keel_switch::link_local(HOST_MAC);
        let f: Vec<Frame> = [vip, other, vip]
            .iter()
            .enumerate()
            .map(|(i, ip)| Frame {
                at: t0 + Duration::from_millis(50 * i as u64),
                port: 0,
                bytes: neighbor_solicitation(*ip, HOST_MAC, ll),
            })
            .collect();
        assert_eq!(probes(&f, IpAddr::V6(vip)).len(), 2);
    }
}
