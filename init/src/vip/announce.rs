//! Telling the segment who holds the VIP: gratuitous ARP for IPv4 (RFC
//! 5227 section 3 "announcement", in both the request and the reply form,
//! since some switches and hosts update their tables from only one of
//! them) and unsolicited neighbour advertisements with the override flag
//! for IPv6 (RFC 4861 section 7.2.6).
//!
//! Frames are built whole and sent on an AF_PACKET raw socket (packet(7)):
//! the kernel sends a gratuitous ARP by itself only when a link comes up
//! (`arp_notify`), not when an address is added, and an NA sent through an
//! ICMPv6 socket would need a non-tentative source address first.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};

use super::responder::{arp_reply, solicited_na, Asked};
use crate::net::dhcp::socket::packet_addr;

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const BROADCAST: [u8; 6] = [0xff; 6];
/// ff02::1 (all nodes) and its Ethernet mapping 33:33:00:00:00:01
/// (RFC 2464 section 7).
pub(crate) const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
pub(crate) const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const ICMPV6: u8 = 58;
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// The override flag of a neighbour advertisement: receivers replace a
/// cached link-layer address (RFC 4861 section 4.4).
const NA_OVERRIDE: u8 = 0x20;
const OPT_TARGET_LL_ADDR: u8 = 2;

/// Length of an Ethernet + ARP frame (the kernel pads it to 60 on the wire).
pub const ARP_FRAME_LEN: usize = 42;
/// Length of an Ethernet + IPv6 + NA + target link-layer option frame.
pub const NA_FRAME_LEN: usize = 86;

/// Which form of gratuitous ARP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpForm {
    /// op 1, target hardware address zero (RFC 5227 "ARP Announcement").
    Request,
    /// op 2, target hardware address our own (as `arping -A` sends).
    Reply,
}

/// A broadcast gratuitous ARP announcing that `ip` is at `mac`.
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr, form: ArpForm) -> [u8; ARP_FRAME_LEN] {
    let mut f = [0u8; ARP_FRAME_LEN];
    f[0..6].copy_from_slice(&BROADCAST);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    let a = &mut f[14..];
    a[0..2].copy_from_slice(&1u16.to_be_bytes()); // hardware type: Ethernet
    a[2..4].copy_from_slice(&ETH_P_IPV4.to_be_bytes());
    a[4] = 6;
    a[5] = 4;
    let (op, target_mac) = match form {
        ArpForm::Request => (1u16, [0u8; 6]),
        ArpForm::Reply => (2u16, mac),
    };
    a[6..8].copy_from_slice(&op.to_be_bytes());
    a[8..14].copy_from_slice(&mac);
    a[14..18].copy_from_slice(&ip.octets());
    a[18..24].copy_from_slice(&target_mac);
    a[24..28].copy_from_slice(&ip.octets());
    f
}

/// An unsolicited neighbour advertisement for `ip` at `mac` to all nodes,
/// with the override flag and a target link-layer address option, hop
/// limit 255 (receivers drop anything else, RFC 4861 section 7.1.2).
pub fn unsolicited_na(mac: [u8; 6], ip: Ipv6Addr) -> [u8; NA_FRAME_LEN] {
    let mut f = [0u8; NA_FRAME_LEN];
    f[0..6].copy_from_slice(&ALL_NODES_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    let payload_len: u16 = 32; // NA 24 + option 8
    {
        let h = &mut f[14..54];
        h[0] = 0x60; // version 6, traffic class and flow label 0
        h[4..6].copy_from_slice(&payload_len.to_be_bytes());
        h[6] = ICMPV6;
        h[7] = 255;
        h[8..24].copy_from_slice(&ip.octets());
        h[24..40].copy_from_slice(&ALL_NODES.octets());
    }
    {
        let m = &mut f[54..];
        m[0] = NEIGHBOR_ADVERTISEMENT;
        m[4] = NA_OVERRIDE;
        m[8..24].copy_from_slice(&ip.octets());
        m[24] = OPT_TARGET_LL_ADDR;
        m[25] = 1; // length in units of 8 bytes
        m[26..32].copy_from_slice(&mac);
    }
    let sum = icmpv6_checksum(&ip, &ALL_NODES, &f[54..]);
    f[56..58].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The ICMPv6 checksum: the ones' complement sum over the IPv6
/// pseudo-header and the message (RFC 4443 section 2.3, RFC 8200 8.1),
/// with the same RFC 1071 sum as the DHCP client's IPv4 and UDP headers.
pub(crate) fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, msg: &[u8]) -> u16 {
    // An NA is a few dozen bytes.
    let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
    crate::net::dhcp::socket::checksum(&[
        &src.octets(),
        &dst.octets(),
        &len.to_be_bytes(),
        &[0, 0, 0, ICMPV6],
        msg,
    ])
}

#[derive(Debug, thiserror::Error)]
#[error("link {link}: {op}: {source}")]
pub struct AnnounceError {
    link: String,
    op: &'static str,
    #[source]
    source: Errno,
}

/// A send-only packet socket on one link.
#[derive(Debug)]
pub struct Announcer {
    link: String,
    ifindex: u32,
    mac: [u8; 6],
    fd: OwnedFd,
}

impl Announcer {
    /// Opens the socket for link `link` (index `ifindex`, address `mac`).
    /// Protocol 0: the socket receives nothing (packet(7)). Needs
    /// CAP_NET_RAW.
    pub fn open(link: &str, ifindex: u32, mac: [u8; 6]) -> Result<Announcer, AnnounceError> {
        let fd = socket::socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|source| AnnounceError {
            link: link.to_string(),
            op: "open packet socket",
            source,
        })?;
        Ok(Announcer {
            link: link.to_string(),
            ifindex,
            mac,
            fd,
        })
    }

    /// Sends one announcement of `ip`: both ARP forms, or one NA.
    pub fn announce(&self, ip: IpAddr) -> Result<(), AnnounceError> {
        match ip {
            IpAddr::V4(v4) => {
                for form in [ArpForm::Request, ArpForm::Reply] {
                    self.send(&gratuitous_arp(self.mac, v4, form), ETH_P_ARP, BROADCAST)?;
                }
                Ok(())
            }
            IpAddr::V6(v6) => self.send(&unsolicited_na(self.mac, v6), ETH_P_IPV6, ALL_NODES_MAC),
        }
    }

    /// Answers a request for `ip` (`responder.rs`): an ARP reply or a
    /// solicited neighbour advertisement to whoever asked.
    pub fn answer(&self, ip: IpAddr, asked: &Asked) -> Result<(), AnnounceError> {
        match (*asked, ip) {
            (Asked::Arp { mac, ip: to }, IpAddr::V4(vip)) => {
                self.send(&arp_reply(self.mac, vip, mac, to), ETH_P_ARP, mac)
            }
            (Asked::Ns { mac, ip: to }, IpAddr::V6(vip)) => {
                let dest = if to.is_unspecified() {
                    ALL_NODES_MAC
                } else {
                    mac
                };
                self.send(&solicited_na(self.mac, vip, mac, to), ETH_P_IPV6, dest)
            }
            // A request of the other family cannot be for this VIP.
            _ => Ok(()),
        }
    }

    fn send(&self, frame: &[u8], protocol: u16, dest: [u8; 6]) -> Result<(), AnnounceError> {
        let to = packet_addr(self.ifindex, protocol, dest);
        socket::sendto(self.fd.as_raw_fd(), frame, &to, MsgFlags::empty())
            .map(drop)
            .map_err(|source| AnnounceError {
                link: self.link.clone(),
                op: "send announcement",
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    /// Gratuitous ARP frames byte for byte: Ethernet broadcast, type 0x0806,
    /// Ethernet/IPv4 ARP, sender = target = the VIP.
    #[test]
    fn gratuitous_arp_bytes() {
        let cases: [(ArpForm, [u8; ARP_FRAME_LEN]); 2] = [
            (
                ArpForm::Request,
                [
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08,
                    0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12,
                    0x34, 0x56, 0x0a, 0x05, 0x00, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a,
                    0x05, 0x00, 0x64,
                ],
            ),
            (
                ArpForm::Reply,
                [
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08,
                    0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x52, 0x54, 0x00, 0x12,
                    0x34, 0x56, 0x0a, 0x05, 0x00, 0x64, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x0a,
                    0x05, 0x00, 0x64,
                ],
            ),
        ];
        for (form, want) in cases {
            let got = gratuitous_arp(MAC, Ipv4Addr::new(10, 5, 0, 100), form);
            assert_eq!(got, want, "{form:?}");
        }
    }

    /// An unsolicited NA for fd00::100, checked against bytes computed
    /// independently (Python, ones' complement sum over the pseudo-header).
    #[test]
    fn neighbour_advertisement_bytes() {
        let want: [u8; NA_FRAME_LEN] = [
            0x33, 0x33, 0x00, 0x00, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x86, 0xdd,
            0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0xff, 0x02, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x88, 0x00,
            0xd3, 0xe1, 0x20, 0x00, 0x00, 0x00, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x01, 0x52, 0x54, 0x00, 0x12,
            0x34, 0x56,
        ];
        let got = unsolicited_na(MAC, "fd00::100".parse().unwrap());
        assert_eq!(got, want);
    }

    /// The checksum of a message that includes its own checksum sums to
    /// zero (the receiver's check, RFC 1071), for a few addresses.
    #[test]
    fn na_checksum_verifies() {
        for ip in ["fd00::100", "2001:db8::1", "fe80::5054:ff:fe12:3456", "::1"] {
            let ip: Ipv6Addr = ip.parse().unwrap();
            let f = unsolicited_na(MAC, ip);
            assert_eq!(icmpv6_checksum(&ip, &ALL_NODES, &f[54..]), 0, "{ip}");
        }
    }
}
