use super::*;
use crate::net::dhcp::lease::Route;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const SERVER: [u8; 4] = [10, 0, 2, 2];
const ADDR: [u8; 4] = [10, 0, 2, 15];

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A BOOTREPLY laid out by hand from RFC 2131 figure 1, the way dnsmasq
/// sends it (siaddr = itself, flags echoed), followed by raw options.
fn reply(xid: u32, mac: [u8; 6], yiaddr: [u8; 4], options: &[u8]) -> Vec<u8> {
    let mut b = vec![2, 1, 6, 0];
    b.extend(xid.to_be_bytes());
    b.extend([0, 0, 0x80, 0]); // secs, flags
    b.extend([0; 4]); // ciaddr
    b.extend(yiaddr);
    b.extend(SERVER); // siaddr
    b.extend([0; 4]); // giaddr
    b.extend(mac);
    b.extend([0; 10]);
    b.extend([0; 64 + 128]); // sname, file
    b.extend([0x63, 0x82, 0x53, 0x63]);
    b.extend(options);
    b
}

/// dnsmasq's option order for a lease with every option Keel asks for.
fn lease_options(kind: u8) -> Vec<u8> {
    let mut o = vec![
        53, 1, kind, //
        54, 4, 10, 0, 2, 2, // server id
        51, 4, 0, 0, 0x0e, 0x10, // lease 3600 s
        58, 4, 0, 0, 0x07, 0x08, // T1 1800 s
        59, 4, 0, 0, 0x0c, 0x4e, // T2 3150 s
        1, 4, 255, 255, 255, 0, // mask
        28, 4, 10, 0, 2, 255, // broadcast
        3, 4, 10, 0, 2, 2, // router (ignored: 121 present)
        6, 8, 10, 0, 2, 3, 1, 1, 1, 1, // DNS
        15, 9, b'l', b'a', b'b', b'.', b'l', b'o', b'c', b'a', b'l', //
        12, 4, b'c', b'p', b'-', b'1', //
        26, 2, 0x05, 0xdc, // MTU 1500
        121, 13, 0, 10, 0, 2, 2, 24, 192, 168, 100, 10, 0, 2, 1, // 0/0, 192.168.100/24
    ];
    o.push(255);
    o
}

fn sent(actions: &[Action]) -> Vec<(Packet, Dest)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { packet, dest } => Some((Packet::decode(packet).unwrap(), *dest)),
            _ => None,
        })
        .collect()
}

fn expected_lease() -> Lease {
    Lease {
        address: ADDR.into(),
        prefix: 24,
        routers: vec![],
        dns: vec![Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)],
        domain: Some("lab.local".into()),
        hostname: Some("cp-1".into()),
        broadcast: Some(Ipv4Addr::new(10, 0, 2, 255)),
        mtu: Some(1500),
        routes: vec![
            Route {
                destination: Ipv4Addr::UNSPECIFIED,
                prefix: 0,
                gateway: SERVER.into(),
            },
            Route {
                destination: Ipv4Addr::new(192, 168, 100, 0),
                prefix: 24,
                gateway: Ipv4Addr::new(10, 0, 2, 1),
            },
        ],
        lease_time: s(3600),
        t1: s(1800),
        t2: s(3150),
        server_id: SERVER.into(),
    }
}

/// A client taken through DISCOVER/OFFER/REQUEST/ACK at `t0`.
fn bound(t0: Instant) -> Client {
    let mut c = Client::new(ClientConfig::new(MAC), 7, t0);
    c.start(t0);
    c.on_packet(t0, &reply(c.xid(), MAC, ADDR, &lease_options(2)));
    let a = c.on_packet(t0, &reply(c.xid(), MAC, ADDR, &lease_options(5)));
    assert_eq!(a, vec![Action::Apply(expected_lease())]);
    c
}

#[test]
fn discover_matches_rfc_layout() {
    let t0 = Instant::now();
    let mut c = Client::new(ClientConfig::new(MAC), 42, t0);
    let a = c.start(t0);
    let Action::Send { packet, dest } = &a[0] else {
        panic!("{a:?}")
    };
    assert_eq!(*dest, Dest::Broadcast);
    let xid = c.xid().to_be_bytes();
    #[rustfmt::skip]
    let mut want: Vec<u8> = vec![
        1, 1, 6, 0,                       // op BOOTREQUEST, htype Ethernet, hlen 6, hops
        xid[0], xid[1], xid[2], xid[3],   // xid
        0, 0, 0x80, 0x00,                 // secs 0, flags BROADCAST
        0, 0, 0, 0,  0, 0, 0, 0,          // ciaddr, yiaddr
        0, 0, 0, 0,  0, 0, 0, 0,          // siaddr, giaddr
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // chaddr
    ];
    want.extend([0; 192]); // sname, file
    #[rustfmt::skip]
    want.extend([
        0x63, 0x82, 0x53, 0x63,                         // magic cookie
        53, 1, 1,                                       // DHCPDISCOVER
        61, 7, 1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,   // client id: Ethernet, MAC
        57, 2, 0x05, 0xdc,                              // max message size 1500
        55, 11, 1, 121, 3, 6, 12, 15, 28, 26, 51, 58, 59, // parameter request list
        255,
    ]);
    want.resize(300, 0);
    assert_eq!(packet, &want);
    assert_eq!(c.state(), StateKind::Selecting);
}

#[test]
fn offer_request_ack() {
    let t0 = Instant::now();
    let mut c = Client::new(ClientConfig::new(MAC), 1, t0);
    c.start(t0);
    let xid = c.xid();
    let t = t0 + s(1);
    let a = c.on_packet(t, &reply(xid, MAC, ADDR, &lease_options(2)));
    let req = sent(&a);
    assert_eq!(req.len(), 1);
    let (p, dest) = &req[0];
    assert_eq!(*dest, Dest::Broadcast);
    assert_eq!(p.message_type(), Some(MessageType::Request));
    assert_eq!((p.xid, p.secs, p.ciaddr), (xid, 1, Ipv4Addr::UNSPECIFIED));
    assert_eq!(p.option(opt::REQUESTED_IP), Some(&ADDR[..]));
    assert_eq!(p.option(opt::SERVER_ID), Some(&SERVER[..]));
    assert_eq!(c.state(), StateKind::Requesting);

    // A second server's OFFER is too late.
    let late = c.on_packet(t, &reply(xid, MAC, [10, 0, 2, 99], &lease_options(2)));
    assert!(matches!(
        late[..],
        [Action::Ignored(Ignored::Unexpected { .. })]
    ));

    let a = c.on_packet(t, &reply(xid, MAC, ADDR, &lease_options(5)));
    assert_eq!(a, vec![Action::Apply(expected_lease())]);
    assert_eq!(c.state(), StateKind::Bound);
    assert_eq!(c.lease(), Some(&expected_lease()));
    // T1 counts from the REQUEST (sent at t).
    assert_eq!(c.next_timeout(), Some(t + s(1800)));
}

#[test]
fn ack_without_lease_time_or_server_is_refused() {
    let t0 = Instant::now();
    let mut c = Client::new(ClientConfig::new(MAC), 3, t0);
    c.start(t0);
    c.on_packet(t0, &reply(c.xid(), MAC, ADDR, &lease_options(2)));
    // ACK with option 51 replaced by padding.
    let mut o = lease_options(5);
    o[9..15].fill(0);
    let a = c.on_packet(t0, &reply(c.xid(), MAC, ADDR, &o));
    assert!(
        matches!(
            &a[..],
            [Action::Ignored(Ignored::BadLease {
                source: LeaseError::Missing { code: 51, .. },
                ..
            })]
        ),
        "{a:?}"
    );
    assert_eq!(c.state(), StateKind::Requesting);
    // An ACK naming another server.
    let mut o = lease_options(5);
    o[6] = 9;
    let a = c.on_packet(t0, &reply(c.xid(), MAC, ADDR, &o));
    assert!(matches!(
        &a[..],
        [Action::Ignored(Ignored::OtherServer { .. })]
    ));
    // An OFFER without server id is refused too.
    let mut c = Client::new(ClientConfig::new(MAC), 3, t0);
    c.start(t0);
    let mut o = lease_options(2);
    o[3..9].fill(0);
    let a = c.on_packet(t0, &reply(c.xid(), MAC, ADDR, &o));
    assert!(matches!(
        &a[..],
        [Action::Ignored(Ignored::BadLease { .. })]
    ));
    assert_eq!(c.state(), StateKind::Selecting);
}

#[test]
fn nak_restarts_then_backs_off() {
    let t0 = Instant::now();
    let mut c = Client::new(ClientConfig::new(MAC), 5, t0);
    c.start(t0);
    let nak = [
        53, 1, 6, 54, 4, 10, 0, 2, 2, 56, 5, b'w', b'r', b'o', b'n', b'g', 255,
    ];
    c.on_packet(t0, &reply(c.xid(), MAC, ADDR, &lease_options(2)));
    let old_xid = c.xid();
    let a = c.on_packet(t0, &reply(old_xid, MAC, [0; 4], &nak));
    let p = sent(&a);
    assert_eq!(p[0].0.message_type(), Some(MessageType::Discover));
    assert_ne!(c.xid(), old_xid, "a new transaction");
    assert_eq!(c.state(), StateKind::Selecting);
    // Second NAK in a row: wait 4 s before the next DISCOVER.
    c.on_packet(t0, &reply(c.xid(), MAC, ADDR, &lease_options(2)));
    let a = c.on_packet(t0, &reply(c.xid(), MAC, [0; 4], &nak));
    assert!(a.is_empty());
    assert_eq!(c.state(), StateKind::Init);
    assert_eq!(c.next_timeout(), Some(t0 + s(4)));
    assert!(c.on_timer(t0 + s(3)).is_empty());
    let a = c.on_timer(t0 + s(4));
    assert_eq!(sent(&a)[0].0.message_type(), Some(MessageType::Discover));
    // A NAK from a server we did not pick is ignored.
    c.on_packet(t0, &reply(c.xid(), MAC, ADDR, &lease_options(2)));
    let mut foreign = nak;
    foreign[8] = 77;
    let a = c.on_packet(t0, &reply(c.xid(), MAC, [0; 4], &foreign));
    assert!(matches!(
        &a[..],
        [Action::Ignored(Ignored::OtherServer { .. })]
    ));
    // A successful ACK resets the NAK count.
    c.on_packet(t0, &reply(c.xid(), MAC, ADDR, &lease_options(5)));
    assert_eq!(c.state(), StateKind::Bound);
}

#[test]
fn retransmit_backoff_4_to_64_with_jitter() {
    let t0 = Instant::now();
    let mut c = Client::new(ClientConfig::new(MAC), 11, t0);
    c.start(t0);
    let xid = c.xid();
    let mut now = t0;
    for base in [4, 8, 16, 32, 64, 64, 64] {
        let next = c.next_timeout().unwrap();
        let d = next - now;
        assert!(d >= s(base - 1) && d <= s(base + 1), "{d:?} for {base}");
        assert!(c.on_timer(next - Duration::from_millis(1)).is_empty());
        now = next;
        let p = sent(&c.on_timer(now));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0.xid, xid, "retransmissions keep the xid");
        assert_eq!(
            u64::from(p[0].0.secs),
            (now - t0).as_secs(),
            "secs counts from the start"
        );
    }
}

#[test]
fn request_gives_up_after_max_attempts() {
    let t0 = Instant::now();
    let mut c = Client::new(ClientConfig::new(MAC), 13, t0);
    c.start(t0);
    c.on_packet(t0, &reply(c.xid(), MAC, ADDR, &lease_options(2)));
    for _ in 1..MAX_REQUESTS {
        let p = sent(&c.on_timer(c.next_timeout().unwrap()));
        assert_eq!(p[0].0.message_type(), Some(MessageType::Request));
    }
    let p = sent(&c.on_timer(c.next_timeout().unwrap()));
    assert_eq!(p[0].0.message_type(), Some(MessageType::Discover));
    assert_eq!(c.state(), StateKind::Selecting);
}

#[test]
fn renew_rebind_expire() {
    let t0 = Instant::now();
    let mut c = bound(t0);
    let lease = expected_lease();
    assert_eq!(c.next_timeout(), Some(t0 + s(1800)));
    assert!(c.on_timer(t0 + s(1799)).is_empty());

    // T1: unicast REQUEST with ciaddr, without options 50 and 54.
    let a = c.on_timer(t0 + s(1800));
    let p = sent(&a);
    assert_eq!(p[0].1, Dest::Unicast(SERVER.into()));
    assert_eq!(p[0].0.ciaddr, Ipv4Addr::from(ADDR));
    assert_eq!(p[0].0.flags, 0);
    assert_eq!(p[0].0.secs, 0);
    assert_eq!(p[0].0.option(opt::REQUESTED_IP), None);
    assert_eq!(p[0].0.option(opt::SERVER_ID), None);
    assert_eq!(c.state(), StateKind::Renewing);
    let renew_xid = c.xid();
    // Retransmit after half the time to T2: (3150 - 1800) / 2 = 675 s.
    assert_eq!(c.next_timeout(), Some(t0 + s(1800 + 675)));
    let p = sent(&c.on_timer(t0 + s(2475)));
    assert_eq!(p[0].1, Dest::Unicast(SERVER.into()));
    // Then (3150 - 2475) / 2 = 337.5 s, and so on down to the 60 s floor,
    // until T2 comes first.
    assert_eq!(
        c.next_timeout(),
        Some(t0 + s(2475) + Duration::from_millis(337_500))
    );
    let mut sends = 0;
    while c.next_timeout() != Some(t0 + s(3150)) {
        sends += sent(&c.on_timer(c.next_timeout().unwrap())).len();
        assert!(sends < 10);
    }
    // 2812.5, 2981.25, 3065.6, 3125.6 (+60 s would pass T2).
    assert_eq!(sends, 4);

    // T2: broadcast, same exchange.
    let p = sent(&c.on_timer(t0 + s(3150)));
    assert_eq!(p[0].1, Dest::Broadcast);
    assert_eq!(p[0].0.ciaddr, Ipv4Addr::from(ADDR));
    assert_eq!(c.xid(), renew_xid);
    assert_eq!(c.state(), StateKind::Rebinding);
    // (3600 - 3150) / 2 = 225 s.
    assert_eq!(c.next_timeout(), Some(t0 + s(3375)));
    c.on_timer(t0 + s(3375));
    // 112.5 s is above the 60 s floor; then 60 s, then expiry comes first.
    assert_eq!(
        c.next_timeout(),
        Some(t0 + s(3375) + Duration::from_millis(112_500))
    );
    let p = sent(&c.on_timer(c.next_timeout().unwrap()));
    assert_eq!(p[0].1, Dest::Broadcast);
    assert_eq!(
        c.next_timeout(),
        Some(t0 + Duration::from_millis(3_547_500))
    );
    c.on_timer(c.next_timeout().unwrap());
    assert_eq!(c.next_timeout(), Some(t0 + s(3600)));

    // Expiry: the lease goes, acquisition starts over.
    let a = c.on_timer(t0 + s(3600));
    assert_eq!(a[0], Action::Expire(lease));
    assert_eq!(sent(&a)[0].0.message_type(), Some(MessageType::Discover));
    assert_eq!(c.state(), StateKind::Selecting);
    assert_eq!(c.lease(), None);
}

#[test]
fn renewal_ack_extends_from_the_renewal_request() {
    let t0 = Instant::now();
    let mut c = bound(t0);
    c.on_timer(t0 + s(1800));
    let a = c.on_packet(t0 + s(1801), &reply(c.xid(), MAC, ADDR, &lease_options(5)));
    assert_eq!(a, vec![Action::Apply(expected_lease())]);
    assert_eq!(c.state(), StateKind::Bound);
    assert_eq!(c.next_timeout(), Some(t0 + s(1800 + 1800)));

    // A late timer (the machine slept past expiry) expires at once.
    let a = c.on_timer(t0 + s(100_000));
    assert!(matches!(a[0], Action::Expire(_)));
}

#[test]
fn rebinding_to_a_new_address_expires_the_old() {
    let t0 = Instant::now();
    let mut c = bound(t0);
    c.on_timer(t0 + s(3150));
    assert_eq!(c.state(), StateKind::Rebinding);
    let a = c.on_packet(
        t0 + s(3151),
        &reply(c.xid(), MAC, [10, 0, 2, 16], &lease_options(5)),
    );
    let new = Lease {
        address: Ipv4Addr::new(10, 0, 2, 16),
        ..expected_lease()
    };
    assert_eq!(
        a,
        vec![Action::Expire(expected_lease()), Action::Apply(new)]
    );
}

#[test]
fn nak_while_renewing_drops_the_lease() {
    let t0 = Instant::now();
    let mut c = bound(t0);
    c.on_timer(t0 + s(1800));
    let nak = [53, 1, 6, 54, 4, 10, 0, 2, 2, 255];
    let a = c.on_packet(t0 + s(1801), &reply(c.xid(), MAC, [0; 4], &nak));
    assert_eq!(a[0], Action::Expire(expected_lease()));
    assert_eq!(sent(&a)[0].0.message_type(), Some(MessageType::Discover));
}

#[test]
fn foreign_and_broken_packets_are_ignored() {
    let t0 = Instant::now();
    let mut c = Client::new(ClientConfig::new(MAC), 17, t0);
    c.start(t0);
    let xid = c.xid();
    let cases = [
        reply(xid ^ 1, MAC, ADDR, &lease_options(2)),
        reply(xid, [2, 0, 0, 0, 0, 9], ADDR, &lease_options(2)),
        {
            let mut b = reply(xid, MAC, ADDR, &lease_options(2));
            b[0] = 1; // a BOOTREQUEST, e.g. another client's
            b
        },
    ];
    for b in cases {
        assert_eq!(c.on_packet(t0, &b), vec![Action::Ignored(Ignored::NotOurs)]);
    }
    assert!(matches!(
        &c.on_packet(t0, &[1, 2, 3])[..],
        [Action::Ignored(Ignored::Codec(_))]
    ));
    // An ACK while selecting, a packet with no message type.
    for o in [lease_options(5), vec![255]] {
        let a = c.on_packet(t0, &reply(xid, MAC, ADDR, &o));
        assert!(matches!(
            &a[..],
            [Action::Ignored(Ignored::Unexpected { .. })]
        ));
    }
    assert_eq!(c.state(), StateKind::Selecting);
}

#[test]
fn decline_and_release() {
    let t0 = Instant::now();
    let mut c = bound(t0);
    let a = c.decline(t0);
    let p = sent(&a);
    assert_eq!(p[0].0.message_type(), Some(MessageType::Decline));
    assert_eq!(p[0].0.option(opt::REQUESTED_IP), Some(&ADDR[..]));
    assert_eq!(p[0].0.option(opt::SERVER_ID), Some(&SERVER[..]));
    assert_eq!(a[1], Action::Expire(expected_lease()));
    assert_eq!(c.next_timeout(), Some(t0 + s(10)));
    assert!(c.decline(t0).is_empty());

    let mut c = bound(t0);
    let a = c.release(t0 + s(5));
    let p = sent(&a);
    assert_eq!(p[0].1, Dest::Unicast(SERVER.into()));
    assert_eq!(p[0].0.message_type(), Some(MessageType::Release));
    assert_eq!(p[0].0.ciaddr, Ipv4Addr::from(ADDR));
    assert_eq!(c.state(), StateKind::Stopped);
    assert_eq!(c.next_timeout(), None);
    assert!(c.release(t0).is_empty());
}

#[test]
fn hostname_and_infinite_lease() {
    let t0 = Instant::now();
    let mut cfg = ClientConfig::new(MAC);
    cfg.hostname = Some("cp-1".into());
    cfg.broadcast_flag = false;
    let mut c = Client::new(cfg, 19, t0);
    let p = sent(&c.start(t0));
    assert_eq!(p[0].0.option(opt::HOSTNAME), Some(&b"cp-1"[..]));
    assert_eq!(p[0].0.flags, 0);
    c.on_packet(t0, &reply(c.xid(), MAC, ADDR, &lease_options(2)));
    let mut o = lease_options(5);
    o[11..15].fill(0xff); // lease time: infinity
    let a = c.on_packet(t0, &reply(c.xid(), MAC, ADDR, &o));
    let Action::Apply(l) = &a[0] else {
        panic!("{a:?}")
    };
    assert_eq!((l.t1, l.t2), (l.lease_time, l.lease_time));
    // Nothing to do for 136 years.
    assert!(c.next_timeout().unwrap() > t0 + s(100 * 365 * 86400));
    assert!(c.on_timer(t0 + s(10 * 365 * 86400)).is_empty());
}
