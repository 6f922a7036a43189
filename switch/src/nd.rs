//! IPv6 neighbour discovery on the observer's side (RFC 4861): the
//! neighbour solicitation that asks who has an address (section 4.3) and
//! the neighbour advertisements that claim one (section 4.4), solicited
//! answers and unsolicited announcements alike — the IPv6 counterpart of
//! ARP's request, reply and gratuitous ARP.
//!
//! Written by hand, as [`crate::frame`]'s ARP is: a few fixed offsets, and
//! the switch has no other use for an IPv6 stack.

use std::net::Ipv6Addr;

use crate::frame::{Ethernet, MacAddr, ETHERNET_HEADER_LEN};

/// EtherType of IPv6 (RFC 2464).
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPV6_HEADER_LEN: usize = 40;
/// ICMPv6's IPv6 next-header value.
const ICMPV6: u8 = 58;
const NEIGHBOR_SOLICITATION: u8 = 135;
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// Option types (RFC 4861 section 4.6.1).
const OPT_SOURCE_LL_ADDR: u8 = 1;
const OPT_TARGET_LL_ADDR: u8 = 2;
/// NA flags (RFC 4861 section 4.4), in the first byte after the checksum.
const NA_SOLICITED: u8 = 0x40;
const NA_OVERRIDE: u8 = 0x20;

/// A neighbour advertisement, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Na {
    /// The Ethernet source of the frame.
    pub src_mac: MacAddr,
    /// The Ethernet destination (the asker, or a multicast group).
    pub dst_mac: MacAddr,
    /// The address it speaks for.
    pub target: Ipv6Addr,
    /// Its target link-layer address option, if it carries one.
    pub target_mac: Option<MacAddr>,
    pub solicited: bool,
    pub override_flag: bool,
}

impl Na {
    /// Who claims [`Na::target`]: the link-layer address the advertisement
    /// names, else the sender's.
    pub fn claimant(&self) -> MacAddr {
        self.target_mac.unwrap_or(self.src_mac)
    }
}

/// The solicited-node multicast address of `ip` (ff02::1:ffXX:XXXX, RFC
/// 4291 section 2.7.1) and its Ethernet mapping (RFC 2464 section 7).
pub fn solicited_node(ip: Ipv6Addr) -> (Ipv6Addr, MacAddr) {
    let o = ip.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    );
    (group, MacAddr::new(0x33, 0x33, 0xff, o[13], o[14], o[15]))
}

/// The link-local address of `mac` (modified EUI-64, RFC 4291 appendix A).
pub fn link_local(mac: MacAddr) -> Ipv6Addr {
    let m = mac.octets();
    let mut o = [0u8; 16];
    o[0] = 0xfe;
    o[1] = 0x80;
    o[8..16].copy_from_slice(&[m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]);
    Ipv6Addr::from(o)
}

/// "Who has `target`?": a neighbour solicitation from `from_mac`/`from_ip`
/// to `target`'s solicited-node group, with the source link-layer address
/// option, so the owner answers to `from_mac` directly.
pub fn neighbor_solicitation(target: Ipv6Addr, from_mac: MacAddr, from_ip: Ipv6Addr) -> Vec<u8> {
    let (group, group_mac) = solicited_node(target);
    // ICMPv6: type, code, checksum, reserved (4), target (16), option (8).
    let mut icmp = vec![NEIGHBOR_SOLICITATION, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[OPT_SOURCE_LL_ADDR, 1]);
    icmp.extend_from_slice(&from_mac.octets());
    let sum = icmpv6_checksum(&from_ip, &group, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut f = Vec::with_capacity(ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + icmp.len());
    f.extend_from_slice(&group_mac.octets());
    f.extend_from_slice(&from_mac.octets());
    f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    // Version 6, no traffic class or flow label; hop limit 255, which
    // RFC 4861 section 7.1.1 requires of every ND message.
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&u16::try_from(icmp.len()).unwrap_or(0).to_be_bytes());
    f.extend_from_slice(&[ICMPV6, 255]);
    f.extend_from_slice(&from_ip.octets());
    f.extend_from_slice(&group.octets());
    f.extend_from_slice(&icmp);
    f
}

/// The neighbour advertisement in a whole Ethernet frame (tagged or not),
/// if it is a valid one: hop limit 255, code 0, a correct checksum
/// (RFC 4861 section 7.1.2).
pub fn parse_na(frame: &[u8]) -> Option<Na> {
    let eth = Ethernet::parse(frame)?;
    if eth.ethertype != ETHERTYPE_IPV6 {
        return None;
    }
    let ip = eth.payload.get(..IPV6_HEADER_LEN)?;
    let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let icmp = eth.payload.get(IPV6_HEADER_LEN..IPV6_HEADER_LEN + len)?;
    if ip[0] >> 4 != 6 || ip[6] != ICMPV6 || ip[7] != 255 || icmp.len() < 24 {
        return None;
    }
    if icmp[0] != NEIGHBOR_ADVERTISEMENT || icmp[1] != 0 {
        return None;
    }
    let addr = |b: &[u8]| Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap_or([0; 16]));
    if icmpv6_checksum(&addr(&ip[8..24]), &addr(&ip[24..40]), icmp) != 0 {
        return None;
    }
    // Options: type, length in units of 8 bytes, data.
    let mut target_mac = None;
    let mut opts = &icmp[24..];
    while opts.len() >= 8 {
        let n = usize::from(opts[1]) * 8;
        if n == 0 || n > opts.len() {
            break;
        }
        if opts[0] == OPT_TARGET_LL_ADDR {
            target_mac = MacAddr::from_slice(&opts[2..8]);
        }
        opts = &opts[n..];
    }
    Some(Na {
        src_mac: eth.src,
        dst_mac: eth.dst,
        target: addr(&icmp[8..24]),
        target_mac,
        solicited: icmp[4] & NA_SOLICITED != 0,
        override_flag: icmp[4] & NA_OVERRIDE != 0,
    })
}

/// The ICMPv6 checksum of `msg` (RFC 4443 section 2.3: the ones' complement
/// sum of the pseudo-header of RFC 8200 section 8.1 and the message). A
/// message that carries its own correct checksum sums to zero.
fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, msg: &[u8]) -> u16 {
    let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
    let mut sum: u32 = 0;
    for part in [
        &src.octets()[..],
        &dst.octets()[..],
        &len.to_be_bytes()[..],
        &[0, 0, 0, ICMPV6][..],
        msg,
    ] {
        // Every part but the message is of even length.
        for pair in part.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The fold above leaves at most 16 bits.
    !(u16::try_from(sum).unwrap_or(u16::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr::new(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);

    /// An unsolicited NA for fd00::100 from MAC, as Keel's PID 1 sends it
    /// (init/src/vip/announce.rs, whose bytes were computed independently).
    const KEEL_NA: [u8; 86] = [
        0x33, 0x33, 0x00, 0x00, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x86, 0xdd, 0x60,
        0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x88, 0x00, 0xd3, 0xe1, 0x20, 0x00,
        0x00, 0x00, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x02, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
    ];

    #[test]
    fn advertisements() {
        let mut bad_sum = KEEL_NA;
        bad_sum[57] ^= 1;
        let mut hop_64 = KEEL_NA;
        hop_64[21] = 64;
        let mut no_option = KEEL_NA.to_vec();
        no_option.truncate(78);
        no_option[19] = 24;
        // Recompute the checksum of the shortened message.
        no_option[56..58].copy_from_slice(&[0, 0]);
        let src: Ipv6Addr = "fd00::100".parse().unwrap();
        let dst: Ipv6Addr = "ff02::1".parse().unwrap();
        let sum = icmpv6_checksum(&src, &dst, &no_option[54..]);
        no_option[56..58].copy_from_slice(&sum.to_be_bytes());
        let ns = neighbor_solicitation(src, MAC, link_local(MAC));
        let vip: Ipv6Addr = "fd00::100".parse().unwrap();
        // What parse_na makes of it: (target, claimant, solicited).
        type Decoded = Option<(Ipv6Addr, MacAddr, bool)>;
        let cases: [(&str, &[u8], Decoded); 5] = [
            ("Keel's unsolicited NA", &KEEL_NA, Some((vip, MAC, false))),
            ("a wrong checksum", &bad_sum, None),
            ("hop limit 64 (off link)", &hop_64, None),
            (
                "no target option: the sender",
                &no_option,
                Some((vip, MAC, false)),
            ),
            ("a solicitation", &ns, None),
        ];
        for (what, frame, want) in cases {
            let got = parse_na(frame).map(|n| (n.target, n.claimant(), n.solicited));
            assert_eq!(got, want, "{what}");
        }
        let na = parse_na(&KEEL_NA).unwrap();
        assert!(na.override_flag);
        assert_eq!(na.target_mac, Some(MAC));
    }

    #[test]
    fn solicitation() {
        let target: Ipv6Addr = "fd00:a05::100".parse().unwrap();
        let from = link_local(MAC);
        assert_eq!(from, "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap());
        let f = neighbor_solicitation(target, MAC, from);
        assert_eq!(f.len(), 14 + 40 + 32);
        // To the solicited-node group of ::100, in Ethernet and IPv6.
        assert_eq!(&f[..6], &[0x33, 0x33, 0xff, 0x00, 0x01, 0x00]);
        let group: Ipv6Addr = "ff02::1:ff00:100".parse().unwrap();
        assert_eq!(&f[38..54], &group.octets());
        assert_eq!((f[20], f[21]), (ICMPV6, 255));
        assert_eq!(&f[62..78], &target.octets());
        // Source link-layer option naming the asker.
        assert_eq!(&f[78..80], &[OPT_SOURCE_LL_ADDR, 1]);
        assert_eq!(&f[80..86], &MAC.octets());
        assert_eq!(icmpv6_checksum(&from, &group, &f[54..]), 0);
    }
}
