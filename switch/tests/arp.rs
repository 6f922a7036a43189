//! ARP and MAC decoding on known-good bytes, and the builders.
//!
//! The first three frames were captured with `tcpdump -xx` between two
//! Linux 6.1 network namespaces on a veth pair (52:54:00:aa:00:01 =
//! 10.9.0.1, 52:54:00:bb:00:02 = 10.9.0.2); the gratuitous one is what
//! `net.ipv4.conf.*.arp_notify=1` sends when the link comes up.

use std::net::Ipv4Addr;
use std::time::Instant;

use keel_switch::{
    arp_probe, arp_reply, gratuitous_arp, parse_arp, Arp, ArpOp, Ethernet, Frame, MacAddr,
    ETHERTYPE_ARP,
};

const A: MacAddr = MacAddr::new(0x52, 0x54, 0x00, 0xaa, 0x00, 0x01);
const B: MacAddr = MacAddr::new(0x52, 0x54, 0x00, 0xbb, 0x00, 0x02);
const IP_A: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const IP_B: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// "Request who-has 10.9.0.2 tell 10.9.0.1" (tcpdump).
const REQUEST: &str = "ffff ffff ffff 5254 00aa 0001 0806 0001
                       0800 0604 0001 5254 00aa 0001 0a09 0001
                       0000 0000 0000 0a09 0002";
/// "Reply 10.9.0.2 is-at 52:54:00:bb:00:02" (tcpdump).
const REPLY: &str = "5254 00aa 0001 5254 00bb 0002 0806 0001
                     0800 0604 0002 5254 00bb 0002 0a09 0002
                     5254 00aa 0001 0a09 0001";
/// "Request who-has 10.9.0.2 tell 10.9.0.2": gratuitous (tcpdump).
const GRATUITOUS: &str = "ffff ffff ffff 5254 00bb 0002 0806 0001
                          0800 0604 0001 5254 00bb 0002 0a09 0002
                          0000 0000 0000 0a09 0002";

#[test]
fn decodes_known_frames() {
    let padded_request = format!("{REQUEST} {}", "00".repeat(18)); // 60 bytes on a wire
    let tagged_reply = {
        let r = hex(REPLY);
        let mut t = r[..12].to_vec();
        t.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]); // VLAN 42
        t.extend_from_slice(&r[12..]);
        t
    };
    struct Case {
        name: &'static str,
        bytes: Vec<u8>,
        want: Arp,
        gratuitous: bool,
        vlan: Option<u16>,
    }
    let case = |name, bytes, want, gratuitous, vlan| Case {
        name,
        bytes,
        want,
        gratuitous,
        vlan,
    };
    let table = vec![
        case(
            "request",
            hex(REQUEST),
            Arp {
                op: ArpOp::Request,
                sender_mac: A,
                sender_ip: IP_A,
                target_mac: MacAddr::ZERO,
                target_ip: IP_B,
            },
            false,
            None,
        ),
        case(
            "padded request",
            hex(&padded_request),
            Arp {
                op: ArpOp::Request,
                sender_mac: A,
                sender_ip: IP_A,
                target_mac: MacAddr::ZERO,
                target_ip: IP_B,
            },
            false,
            None,
        ),
        case(
            "reply",
            hex(REPLY),
            Arp {
                op: ArpOp::Reply,
                sender_mac: B,
                sender_ip: IP_B,
                target_mac: A,
                target_ip: IP_A,
            },
            false,
            None,
        ),
        case(
            "gratuitous",
            hex(GRATUITOUS),
            Arp {
                op: ArpOp::Request,
                sender_mac: B,
                sender_ip: IP_B,
                target_mac: MacAddr::ZERO,
                target_ip: IP_B,
            },
            true,
            None,
        ),
        case(
            "tagged reply",
            tagged_reply,
            Arp {
                op: ArpOp::Reply,
                sender_mac: B,
                sender_ip: IP_B,
                target_mac: A,
                target_ip: IP_A,
            },
            false,
            Some(42),
        ),
    ];
    for Case {
        name,
        bytes,
        want,
        gratuitous,
        vlan,
    } in table
    {
        let got = parse_arp(&bytes).unwrap_or_else(|| panic!("{name}: not decoded"));
        assert_eq!(got, want, "{name}");
        assert_eq!(got.is_gratuitous(), gratuitous, "{name}");
        assert!(!got.is_probe(), "{name}");
        let eth = Ethernet::parse(&bytes).unwrap();
        assert_eq!((eth.ethertype, eth.vlan), (ETHERTYPE_ARP, vlan), "{name}");
        let frame = Frame {
            at: Instant::now(),
            port: 0,
            bytes: bytes.clone(),
        };
        assert_eq!(frame.arp(), Some(want), "{name}");
        assert_eq!(frame.src(), Some(want.sender_mac), "{name}");
    }
}

#[test]
fn rejects_what_is_not_ipv4_arp() {
    let request = hex(REQUEST);
    let mut ipv4 = request.clone();
    ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
    let mut token_ring = request.clone();
    token_ring[14..16].copy_from_slice(&[0x00, 0x06]);
    let mut ipv6_proto = request.clone();
    ipv6_proto[16..18].copy_from_slice(&[0x86, 0xdd]);
    let mut bad_len = request.clone();
    bad_len[18] = 8;
    for (name, bytes) in [
        ("empty", vec![]),
        ("header only", request[..14].to_vec()),
        ("truncated", request[..41].to_vec()),
        ("ipv4 ethertype", ipv4),
        ("hardware type 6", token_ring),
        ("protocol ipv6", ipv6_proto),
        ("hardware length 8", bad_len),
    ] {
        assert_eq!(parse_arp(&bytes), None, "{name}");
    }
}

#[test]
fn builders_match_the_captured_bytes() {
    assert_eq!(arp_reply(B, IP_B, A, IP_A), hex(REPLY));
    assert_eq!(gratuitous_arp(B, IP_B), hex(GRATUITOUS));
    assert_eq!(arp_probe(IP_B, A, IP_A), hex(REQUEST));
    let probe = parse_arp(&arp_probe(IP_B, A, Ipv4Addr::UNSPECIFIED)).unwrap();
    assert!(probe.is_probe() && !probe.is_gratuitous());
    assert_eq!(
        probe.to_string(),
        "probe who-has 10.9.0.2 (from 52:54:00:aa:00:01)"
    );
}

#[test]
fn displays_like_tcpdump() {
    let text = |s: &str| parse_arp(&hex(s)).unwrap().to_string();
    assert_eq!(
        text(REQUEST),
        "request who-has 10.9.0.2 tell 10.9.0.1 (52:54:00:aa:00:01)"
    );
    assert_eq!(
        text(REPLY),
        "reply 10.9.0.2 is-at 52:54:00:bb:00:02 (to 10.9.0.1 52:54:00:aa:00:01)"
    );
    assert_eq!(
        text(GRATUITOUS),
        "announce 10.9.0.2 is-at 52:54:00:bb:00:02 (gratuitous request)"
    );
}

#[test]
fn mac_addresses_parse_and_display() {
    let mac: MacAddr = "52:54:00:AB:cd:0f".parse().unwrap();
    assert_eq!(mac.octets(), [0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f]);
    assert_eq!(mac.to_string(), "52:54:00:ab:cd:0f");
    assert!(MacAddr::BROADCAST.is_broadcast() && MacAddr::BROADCAST.is_multicast());
    assert!("01:00:5e:00:00:01"
        .parse::<MacAddr>()
        .unwrap()
        .is_multicast());
    assert!(!mac.is_multicast());
    for bad in [
        "",
        "52:54:00:ab:cd",
        "52:54:00:ab:cd:0f:00",
        "52:54:00:ab:cd:0g",
        "52:54:00:ab:cd:100",
        "52-54-00-ab-cd-0f",
    ] {
        let err = bad.parse::<MacAddr>().unwrap_err();
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }
}
