use super::*;
use crate::vip::announce::gratuitous_arp;

const VIP4: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 100);
const OURS: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x11];
const THEIRS: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x99];

/// An ARP frame as a peer sends it.
fn arp(op: u16, sender_mac: [u8; 6], sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let mut f = gratuitous_arp(sender_mac, sender_ip, ArpForm::Request).to_vec();
    f[20..22].copy_from_slice(&op.to_be_bytes());
    f[32..38].fill(0);
    f[38..42].copy_from_slice(&target_ip.octets());
    f
}

#[test]
fn arp_requests_table() {
    let peer = Ipv4Addr::new(10, 5, 0, 7);
    let asked = Some(Asked::Arp {
        mac: THEIRS,
        ip: peer,
    });
    let cases: Vec<(&str, Vec<u8>, Option<Asked>)> = vec![
        ("a request for the VIP", arp(1, THEIRS, peer, VIP4), asked),
        (
            "an RFC 5227 probe (sender 0.0.0.0)",
            arp(1, THEIRS, Ipv4Addr::UNSPECIFIED, VIP4),
            Some(Asked::Arp {
                mac: THEIRS,
                ip: Ipv4Addr::UNSPECIFIED,
            }),
        ),
        (
            "a request for another address",
            arp(1, THEIRS, peer, Ipv4Addr::new(10, 5, 0, 11)),
            None,
        ),
        ("a reply", arp(2, THEIRS, peer, VIP4), None),
        (
            "another node's gratuitous ARP for the VIP",
            arp(1, THEIRS, VIP4, VIP4),
            None,
        ),
        ("truncated", arp(1, THEIRS, peer, VIP4)[..30].to_vec(), None),
    ];
    for (name, frame, want) in cases {
        assert_eq!(parse_arp(&frame, VIP4), want, "{name}");
    }
}

#[test]
fn arp_reply_bytes() {
    let peer = Ipv4Addr::new(10, 5, 0, 7);
    let f = arp_reply(OURS, VIP4, THEIRS, peer);
    assert_eq!(f[0..6], THEIRS, "unicast to the asker");
    assert_eq!(f[6..12], OURS);
    assert_eq!(f[20..22], [0, 2], "op reply");
    assert_eq!(f[22..28], OURS, "sender MAC");
    assert_eq!(f[28..32], VIP4.octets(), "sender IP: the VIP");
    assert_eq!(f[32..38], THEIRS, "target MAC");
    assert_eq!(f[38..42], peer.octets(), "target IP");
    // What a peer parses from it: a reply, so no question.
    assert_eq!(parse_arp(&f, VIP4), None);
}

/// A neighbour solicitation from `src` (MAC `mac`) for `target`, to its
/// solicited-node group, with a valid checksum.
fn ns(mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr, hop_limit: u8) -> Vec<u8> {
    let t = target.octets();
    let dst = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let mut f = vec![0u8; NS_MIN_LEN + 8];
    f[0..6].copy_from_slice(&solicited_node_mac(target));
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    f[14] = 0x60;
    f[18..20].copy_from_slice(&32u16.to_be_bytes());
    f[20] = ICMPV6;
    f[21] = hop_limit;
    f[22..38].copy_from_slice(&src.octets());
    f[38..54].copy_from_slice(&dst.octets());
    f[54] = NEIGHBOR_SOLICITATION;
    f[62..78].copy_from_slice(&t);
    f[78] = 1; // source link-layer address option
    f[79] = 1;
    f[80..86].copy_from_slice(&mac);
    let sum = icmpv6_checksum(&src, &dst, &f[54..86]);
    f[56..58].copy_from_slice(&sum.to_be_bytes());
    f
}

#[test]
fn neighbour_solicitations_table() {
    let vip: Ipv6Addr = "fd00::100".parse().unwrap();
    let peer: Ipv6Addr = "fd00::7".parse().unwrap();
    let mut bad_sum = ns(THEIRS, peer, vip, 255);
    bad_sum[57] ^= 1;
    let cases: Vec<(&str, Vec<u8>, Option<Asked>)> = vec![
        (
            "a solicitation for the VIP",
            ns(THEIRS, peer, vip, 255),
            Some(Asked::Ns {
                mac: THEIRS,
                ip: peer,
            }),
        ),
        (
            "duplicate address detection (source ::)",
            ns(THEIRS, Ipv6Addr::UNSPECIFIED, vip, 255),
            Some(Asked::Ns {
                mac: THEIRS,
                ip: Ipv6Addr::UNSPECIFIED,
            }),
        ),
        (
            "for another address",
            ns(THEIRS, peer, "fd00::11".parse().unwrap(), 255),
            None,
        ),
        (
            "hop limit not 255 (RFC 4861 7.1.1)",
            ns(THEIRS, peer, vip, 64),
            None,
        ),
        ("bad checksum", bad_sum, None),
    ];
    for (name, frame, want) in cases {
        assert_eq!(parse_ns(&frame, vip), want, "{name}");
    }
}

#[test]
fn solicited_advertisements() {
    let vip: Ipv6Addr = "fd00::100".parse().unwrap();
    let peer: Ipv6Addr = "fd00::7".parse().unwrap();
    // (asker, destination IP, destination MAC, flags)
    let cases = [
        (peer, peer, THEIRS, NA_SOLICITED | NA_OVERRIDE),
        (Ipv6Addr::UNSPECIFIED, ALL_NODES, ALL_NODES_MAC, NA_OVERRIDE),
    ];
    for (asker, dst, dst_mac, flags) in cases {
        let f = solicited_na(OURS, vip, THEIRS, asker);
        assert_eq!(f[0..6], dst_mac, "{asker}");
        assert_eq!(f[21], 255, "hop limit");
        assert_eq!(f[22..38], vip.octets(), "from the VIP");
        assert_eq!(f[38..54], dst.octets(), "{asker}");
        assert_eq!((f[54], f[58]), (NEIGHBOR_ADVERTISEMENT, flags), "{asker}");
        assert_eq!(f[62..78], vip.octets(), "target");
        assert_eq!(f[80..86], OURS, "target link-layer address");
        assert_eq!(
            icmpv6_checksum(&vip, &dst, &f[54..86]),
            0,
            "{asker}: checksum"
        );
    }
}

#[test]
fn solicited_node_group() {
    let ip: Ipv6Addr = "fd00::1:2:3344:5566".parse().unwrap();
    assert_eq!(solicited_node_mac(ip), [0x33, 0x33, 0xff, 0x44, 0x55, 0x66]);
}

#[test]
fn sysctls_under_a_root() {
    let t = tempfile::tempdir().unwrap();
    let err = quiet_kernel(t.path(), "enp0s1.7").unwrap_err().to_string();
    assert!(err.contains("net/ipv4/conf/enp0s1.7/arp_ignore"), "{err}");
    let dir = t.path().join("net/ipv4/conf/enp0s1.7");
    std::fs::create_dir_all(&dir).unwrap();
    quiet_kernel(t.path(), "enp0s1.7").unwrap();
    for (key, want) in SYSCTLS {
        assert_eq!(std::fs::read_to_string(dir.join(key)).unwrap(), want);
    }
    assert!(
        !t.path().join("net/ipv4/conf/all").exists(),
        "only the VIP's link"
    );
}
