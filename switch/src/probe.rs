//! The one ARP "who has?" of the workspace: send an RFC 5227 probe for an
//! address (on a VLAN, if asked), wait, and collect the replies addressed
//! to the prober; ask again if nobody answered. Used on a [`Switch`] (the
//! QEMU tests, `make run`) and on any other [`Segment`] that can send a
//! frame and show what came back (the namespace tests' Linux bridge).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::frame::{arp_probe, Frame, MacAddr};
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
    pub ip: Ipv4Addr,
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
    pub fn new(ip: Ipv4Addr, wait: Duration) -> WhoHas {
        WhoHas {
            ip,
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

    /// The probe frame: sender IP 0.0.0.0, so the answering hosts leave
    /// their ARP caches alone; tagged when a VLAN is asked.
    pub fn frame(&self) -> Vec<u8> {
        let mut probe = arp_probe(self.ip, self.from, Ipv4Addr::UNSPECIFIED);
        if let Some(vid) = self.vlan {
            // 802.1Q tag between the source MAC and the EtherType.
            let [hi, lo] = vid.to_be_bytes();
            probe.splice(12..12, [0x81, 0x00, hi, lo]);
        }
        probe
    }

    /// Whether `f` answers this question: an ARP reply for the address,
    /// on the VLAN, addressed to the prober (gratuitous replies are not).
    pub fn is_answer(&self, f: &Frame) -> bool {
        let on_vlan = f.ethernet().is_some_and(|e| e.vlan == self.vlan);
        on_vlan
            && f.arp().is_some_and(|a| {
                a.is_reply() && a.sender_ip == self.ip && a.target_mac == self.from
            })
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
            .filter_map(|f| Some(f.arp()?.sender_mac))
            .collect();
        macs.sort();
        macs.dedup();
        macs
    }
}

/// Every claim of `ip` among `frames`, as (when, who): an ARP reply or a
/// gratuitous ARP with `ip` as its sender address — what a switch hears
/// from whoever answers for an address.
pub fn claims(frames: &[Frame], ip: Ipv4Addr) -> Vec<(Instant, MacAddr)> {
    frames
        .iter()
        .filter_map(|f| Some((f.at, f.arp()?)))
        .filter(|(_, a)| a.sender_ip == ip && (a.is_reply() || a.is_gratuitous()))
        .map(|(at, a)| (at, a.sender_mac))
        .collect()
}
