//! Ethernet frames as the switch records them, and just enough decoding
//! and building for ARP: MAC addresses, the Ethernet header (with one
//! optional 802.1Q tag), ARP for IPv4 over Ethernet.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Instant;

/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of an 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// Length of an untagged Ethernet header (no FCS is carried anywhere here).
pub const ETHERNET_HEADER_LEN: usize = 14;
/// Length of an ARP payload for IPv4 over Ethernet.
pub const ARP_LEN: usize = 28;

/// A 48-bit MAC address; displays and parses as `52:54:00:12:34:56`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    pub const fn new(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8) -> MacAddr {
        MacAddr([a, b, c, d, e, f])
    }

    /// The first six bytes of `bytes`, if there are six.
    pub fn from_slice(bytes: &[u8]) -> Option<MacAddr> {
        Some(MacAddr(bytes.get(..6)?.try_into().ok()?))
    }

    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    pub fn is_broadcast(&self) -> bool {
        *self == MacAddr::BROADCAST
    }

    /// Group bit set: broadcast or multicast. A switch floods these.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A string that is not six `:`-separated hex octets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?} (expected six hex octets like 52:54:00:12:34:56)")]
pub struct ParseMacError(pub String);

impl FromStr for MacAddr {
    type Err = ParseMacError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacError(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.is_empty() || part.len() > 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        match parts.next() {
            Some(_) => Err(err()),
            None => Ok(MacAddr(out)),
        }
    }
}

/// One frame seen by the switch: when, on which port it came in, and its
/// bytes (Ethernet header onwards, no FCS).
///
/// `port` is a VM port index, or [`Switch::host_port`](crate::Switch::host_port)
/// (one past the last VM port) for frames injected by this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub at: Instant,
    pub port: usize,
    pub bytes: Vec<u8>,
}

impl Frame {
    /// The Ethernet header, if the frame has one.
    pub fn ethernet(&self) -> Option<Ethernet<'_>> {
        Ethernet::parse(&self.bytes)
    }

    /// The ARP packet, if this is an IPv4-over-Ethernet ARP frame (tagged or
    /// not).
    pub fn arp(&self) -> Option<Arp> {
        parse_arp(&self.bytes)
    }

    /// Source MAC address.
    pub fn src(&self) -> Option<MacAddr> {
        MacAddr::from_slice(self.bytes.get(6..)?)
    }

    /// Destination MAC address.
    pub fn dst(&self) -> Option<MacAddr> {
        MacAddr::from_slice(&self.bytes)
    }
}

/// A decoded Ethernet header borrowing the frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ethernet<'a> {
    pub dst: MacAddr,
    pub src: MacAddr,
    /// The VLAN id of an 802.1Q tag, if the frame carries one.
    pub vlan: Option<u16>,
    /// The EtherType after any VLAN tag.
    pub ethertype: u16,
    pub payload: &'a [u8],
}

impl<'a> Ethernet<'a> {
    /// Decodes the header of `frame` (one 802.1Q tag is skipped and
    /// reported in [`Ethernet::vlan`]); `None` if it is too short.
    pub fn parse(frame: &'a [u8]) -> Option<Ethernet<'a>> {
        let dst = MacAddr::from_slice(frame)?;
        let src = MacAddr::from_slice(frame.get(6..)?)?;
        let mut ethertype = be16(frame, 12)?;
        let mut rest = frame.get(ETHERNET_HEADER_LEN..)?;
        let mut vlan = None;
        if ethertype == ETHERTYPE_VLAN {
            vlan = Some(be16(rest, 0)? & 0x0fff);
            ethertype = be16(rest, 2)?;
            rest = rest.get(4..)?;
        }
        Some(Ethernet {
            dst,
            src,
            vlan,
            ethertype,
            payload: rest,
        })
    }
}

/// The ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOp {
    Request,
    Reply,
    Other(u16),
}

impl ArpOp {
    pub fn code(self) -> u16 {
        match self {
            ArpOp::Request => 1,
            ArpOp::Reply => 2,
            ArpOp::Other(c) => c,
        }
    }

    pub fn from_code(code: u16) -> ArpOp {
        match code {
            1 => ArpOp::Request,
            2 => ArpOp::Reply,
            c => ArpOp::Other(c),
        }
    }
}

/// An ARP packet for IPv4 over Ethernet (hardware type 1, protocol 0x0800).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Arp {
    pub op: ArpOp,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl Arp {
    /// Decodes an ARP payload (the bytes after the Ethernet header). `None`
    /// unless it is IPv4 over Ethernet and at least [`ARP_LEN`] bytes long
    /// (trailing padding is ignored).
    pub fn parse(payload: &[u8]) -> Option<Arp> {
        let p = payload.get(..ARP_LEN)?;
        if be16(p, 0)? != 1 || be16(p, 2)? != ETHERTYPE_IPV4 || p[4] != 6 || p[5] != 4 {
            return None;
        }
        let ip = |at: usize| Ipv4Addr::new(p[at], p[at + 1], p[at + 2], p[at + 3]);
        Some(Arp {
            op: ArpOp::from_code(be16(p, 6)?),
            sender_mac: MacAddr::from_slice(&p[8..])?,
            sender_ip: ip(14),
            target_mac: MacAddr::from_slice(&p[18..])?,
            target_ip: ip(24),
        })
    }

    pub fn is_request(&self) -> bool {
        self.op == ArpOp::Request
    }

    pub fn is_reply(&self) -> bool {
        self.op == ArpOp::Reply
    }

    /// Gratuitous ARP (an announcement, request or reply): the sender
    /// states its own address, so sender IP == target IP.
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip == self.target_ip && !self.sender_ip.is_unspecified()
    }

    /// An RFC 5227 probe: a request with sender IP 0.0.0.0 ("is anyone
    /// using this address?"), which does not touch the receivers' caches.
    pub fn is_probe(&self) -> bool {
        self.is_request() && self.sender_ip.is_unspecified()
    }

    /// The 28-byte ARP payload.
    pub fn to_bytes(&self) -> [u8; ARP_LEN] {
        let mut p = [0u8; ARP_LEN];
        p[0..2].copy_from_slice(&1u16.to_be_bytes());
        p[2..4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        p[4] = 6;
        p[5] = 4;
        p[6..8].copy_from_slice(&self.op.code().to_be_bytes());
        p[8..14].copy_from_slice(&self.sender_mac.0);
        p[14..18].copy_from_slice(&self.sender_ip.octets());
        p[18..24].copy_from_slice(&self.target_mac.0);
        p[24..28].copy_from_slice(&self.target_ip.octets());
        p
    }

    /// A whole untagged Ethernet frame carrying this packet from
    /// `sender_mac` to `dst` (42 bytes, unpadded: Linux and QEMU accept
    /// short frames on virtual links).
    pub fn to_frame(&self, dst: MacAddr) -> Vec<u8> {
        let mut f = Vec::with_capacity(ETHERNET_HEADER_LEN + ARP_LEN);
        f.extend_from_slice(&dst.0);
        f.extend_from_slice(&self.sender_mac.0);
        f.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        f.extend_from_slice(&self.to_bytes());
        f
    }
}

/// Formats like tcpdump: `request who-has 10.5.0.100 tell 10.5.0.1
/// (52:54:00:12:34:01)`, `reply 10.5.0.100 is-at 52:54:00:12:34:02`.
impl fmt::Display for Arp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            ArpOp::Request if self.is_probe() => write!(
                f,
                "probe who-has {} (from {})",
                self.target_ip, self.sender_mac
            ),
            ArpOp::Request if self.is_gratuitous() => write!(
                f,
                "announce {} is-at {} (gratuitous request)",
                self.sender_ip, self.sender_mac
            ),
            ArpOp::Request => write!(
                f,
                "request who-has {} tell {} ({})",
                self.target_ip, self.sender_ip, self.sender_mac
            ),
            ArpOp::Reply if self.is_gratuitous() => write!(
                f,
                "announce {} is-at {} (gratuitous reply)",
                self.sender_ip, self.sender_mac
            ),
            ArpOp::Reply => write!(
                f,
                "reply {} is-at {} (to {} {})",
                self.sender_ip, self.sender_mac, self.target_ip, self.target_mac
            ),
            ArpOp::Other(code) => write!(
                f,
                "op {code} sender {} {} target {} {}",
                self.sender_ip, self.sender_mac, self.target_ip, self.target_mac
            ),
        }
    }
}

/// Decodes the ARP packet of a whole Ethernet frame (tagged or not).
pub fn parse_arp(frame: &[u8]) -> Option<Arp> {
    let eth = Ethernet::parse(frame)?;
    if eth.ethertype != ETHERTYPE_ARP {
        return None;
    }
    Arp::parse(eth.payload)
}

/// A broadcast ARP request "who has `ip`? tell `sender_ip`" from
/// `sender_mac`. With `sender_ip` 0.0.0.0 this is an RFC 5227 probe, which
/// Linux answers for its local addresses without caching the asker.
pub fn arp_probe(ip: Ipv4Addr, sender_mac: MacAddr, sender_ip: Ipv4Addr) -> Vec<u8> {
    Arp {
        op: ArpOp::Request,
        sender_mac,
        sender_ip,
        target_mac: MacAddr::ZERO,
        target_ip: ip,
    }
    .to_frame(MacAddr::BROADCAST)
}

/// A broadcast gratuitous ARP request announcing that `ip` is at `mac` (what
/// a node sends when it takes over a virtual IP).
pub fn gratuitous_arp(mac: MacAddr, ip: Ipv4Addr) -> Vec<u8> {
    Arp {
        op: ArpOp::Request,
        sender_mac: mac,
        sender_ip: ip,
        target_mac: MacAddr::ZERO,
        target_ip: ip,
    }
    .to_frame(MacAddr::BROADCAST)
}

/// A unicast ARP reply "`ip` is at `mac`" to `target_mac`/`target_ip`.
pub fn arp_reply(mac: MacAddr, ip: Ipv4Addr, target_mac: MacAddr, target_ip: Ipv4Addr) -> Vec<u8> {
    Arp {
        op: ArpOp::Reply,
        sender_mac: mac,
        sender_ip: ip,
        target_mac,
        target_ip,
    }
    .to_frame(target_mac)
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}
