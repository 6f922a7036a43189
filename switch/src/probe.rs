//! The one "who has?" of the workspace: send an RFC 5227 ARP probe for an
//! IPv4 address, or an RFC 4861 neighbour solicitation for an IPv6 one (on
//! a VLAN, if asked), wait, and collect the replies addressed to the
//! prober; ask again if nobody answered. Used on a [`Switch`] (the
//! QEMU tests, `make run`) and on any other [`Segment`] that can send a
//! frame and show what came back (the namespace tests' Linux bridge).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use crate::frame::{arp_probe, Frame, MacAddr};
use crate::nd::{link_local, neighbor_solicitation, parse_na};
use crate::switch::{Switch, HOST_MAC};

/// Something a frame can be sent into and whose frames are recorded.
pub trait Segment {
    /// Sends `frame` (Ethernet header onwards) onto the segment.
    fn send_frame(&self, frame: &[u8]) -> Result<(), String>;
    /// Frames seen at or after `since`.
    fn frames_since(&self, since: Instant) -> Vec<Frame>;
}

impl Segment for Switch {
    fn send_frame(&self, frame: &[u8]) -> Result<(), String> {
        self.inject(frame).map_err(|e| e.to_string())
    }
    fn frames_since(&self, since: Instant) -> Vec<Frame> {
        Switch::frames_since(self, since)
    }
}

/// A who-has question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WhoHas {
    pub ip: IpAddr,
    /// Ask on this 802.1Q VLAN.
    pub vlan: Option<u16>,
    /// How long to collect replies after each probe.
    pub wait: Duration,
    /// How many probes at most, until someone answers (at least one).
    pub tries: u32,
    /// The prober's MAC: replies are addressed to it.
    pub from: MacAddr,
}

impl WhoHas {
    /// One probe for `ip` from [`HOST_MAC`], replies collected for `wait`.
    pub fn new(ip: impl Into<IpAddr>, wait: Duration) -> WhoHas {
        WhoHas {
            ip: ip.into(),
            vlan: None,
            wait,
            tries: 1,
            from: HOST_MAC,
        }
    }

    pub fn on_vlan(mut self, vlan: Option<u16>) -> WhoHas {
        self.vlan = vlan;
        self
    }

    pub fn tries(mut self, tries: u32) -> WhoHas {
        self.tries = tries.max(1);
        self
    }

    pub fn from(mut self, mac: MacAddr) -> WhoHas {
        self.from = mac;
        self
    }

    /// The probe frame, tagged when a VLAN is asked. ARP: sender IP
    /// 0.0.0.0, so the answering hosts leave their ARP caches alone. ND:
    /// from the prober's link-local address (a solicitation from `::` is
    /// duplicate address detection, answered to all nodes).
    pub fn frame(&self) -> Vec<u8> {
        let mut probe = match self.ip {
            IpAddr::V4(ip) => arp_probe(ip, self.from, Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(ip) => neighbor_solicitation(ip, self.from, link_local(self.from)),
        };
        if let Some(vid) = self.vlan {
            // 802.1Q tag between the source MAC and the EtherType.
            let [hi, lo] = vid.to_be_bytes();
            probe.splice(12..12, [0x81, 0x00, hi, lo]);
        }
        probe
    }

    /// Who answers this question in `f`, if it does: an ARP reply for the
    /// address, or a solicited neighbour advertisement, on the VLAN,
    /// addressed to the prober (gratuitous ones are not answers).
    pub fn answer(&self, f: &Frame) -> Option<MacAddr> {
        if f.ethernet()?.vlan != self.vlan {
            return None;
        }
        match self.ip {
            IpAddr::V4(ip) => f
                .arp()
                .filter(|a| a.is_reply() && a.sender_ip == ip && a.target_mac == self.from)
                .map(|a| a.sender_mac),
            IpAddr::V6(ip) => parse_na(&f.bytes)
                .filter(|na| na.solicited && na.target == ip && na.dst_mac == self.from)
                .map(|na| na.claimant()),
        }
    }

    /// Whether `f` answers this question ([`WhoHas::answer`]).
    pub fn is_answer(&self, f: &Frame) -> bool {
        self.answer(f).is_some()
    }

    /// Asks on `seg`: every reply frame, in order, from the first probe
    /// that got any (none after `tries` unanswered probes).
    pub fn ask(&self, seg: &impl Segment) -> Vec<Frame> {
        for _ in 0..self.tries.max(1) {
            let since = Instant::now();
            if seg.send_frame(&self.frame()).is_err() {
                return Vec::new();
            }
            std::thread::sleep(self.wait);
            let answers: Vec<Frame> = seg
                .frames_since(since)
                .into_iter()
                .filter(|f| self.is_answer(f))
                .collect();
            if !answers.is_empty() {
                return answers;
            }
        }
        Vec::new()
    }

    /// [`WhoHas::ask`], as the answering MACs, sorted and deduplicated.
    pub fn macs(&self, seg: &impl Segment) -> Vec<MacAddr> {
        let mut macs: Vec<MacAddr> = self
            .ask(seg)
            .iter()
            .filter_map(|f| self.answer(f))
            .collect();
        macs.sort();
        macs.dedup();
        macs
    }
}

/// Every claim of `ip` among `frames`, as (when, who) — what a switch
/// hears from whoever answers for an address. IPv4: an ARP reply or a
/// gratuitous ARP with `ip` as its sender address. IPv6: a neighbour
/// advertisement for `ip`, solicited or not.
pub fn claims(frames: &[Frame], ip: impl Into<IpAddr>) -> Vec<(Instant, MacAddr)> {
    let ip = ip.into();
    frames
        .iter()
        .filter_map(|f| {
            let who = match ip {
                IpAddr::V4(ip) => f
                    .arp()
                    .filter(|a| a.sender_ip == ip && (a.is_reply() || a.is_gratuitous()))
                    .map(|a| a.sender_mac),
                IpAddr::V6(ip) => parse_na(&f.bytes)
                    .filter(|na| na.target == ip)
                    .map(|na| na.claimant()),
            };
            Some((f.at, who?))
        })
        .collect()
}
