//! Forwarding, recording and injection between fake VM sockets (no QEMU).

mod common;

use std::net::Ipv4Addr;
use std::thread;
use std::time::{Duration, Instant};

use common::{eth, eventually, FakeVm, MAC0, MAC1, MAC2};
use keel_switch::{
    arp_probe, arp_reply, parse_arp, MacAddr, Switch, SwitchError, SwitchOptions, HOST_MAC,
};

fn three_vms() -> (tempfile::TempDir, Switch, [FakeVm; 3]) {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::start(dir.path(), 3).unwrap();
    let vms = [0, 1, 2].map(|i| FakeVm::attach(&switch, i));
    (dir, switch, vms)
}

#[test]
fn broadcast_is_flooded_to_every_other_port() {
    let (_dir, switch, [vm0, vm1, vm2]) = three_vms();
    let frame = eth(MacAddr::BROADCAST, MAC0, b"hello all");
    vm0.send(&frame);
    assert_eq!(vm1.expect(), frame);
    assert_eq!(vm2.expect(), frame);
    vm0.expect_nothing();
    vm1.expect_nothing();
    let stats = switch.stats();
    assert_eq!(stats.ports[0].rx_frames, 1);
    assert_eq!(stats.ports[0].tx_frames, 0);
    assert_eq!((stats.ports[1].tx_frames, stats.ports[2].tx_frames), (1, 1));
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
}

#[test]
fn multicast_and_unknown_unicast_are_flooded() {
    let (_dir, _switch, [vm0, vm1, vm2]) = three_vms();
    let multicast = eth(
        MacAddr::new(0x33, 0x33, 0, 0, 0, 1),
        MAC0,
        b"ipv6 all-nodes",
    );
    let unknown = eth(
        MacAddr::new(0x52, 0x54, 0, 0, 0, 0x99),
        MAC0,
        b"who are you",
    );
    for frame in [multicast, unknown] {
        vm0.send(&frame);
        assert_eq!(vm1.expect(), frame);
        assert_eq!(vm2.expect(), frame);
        vm0.expect_nothing();
    }
}

#[test]
fn learned_unicast_goes_only_to_its_port() {
    let (_dir, switch, [vm0, vm1, vm2]) = three_vms();
    // VM 1 speaks first: the switch learns MAC1 on port 1.
    vm1.send(&eth(MacAddr::BROADCAST, MAC1, b"I am here"));
    vm0.expect();
    vm2.expect();
    let unicast = eth(MAC1, MAC0, b"just for you");
    vm0.send(&unicast);
    assert_eq!(vm1.expect(), unicast);
    vm2.expect_nothing();
    vm0.expect_nothing();
    // The reply is unicast too: MAC0 was learned from the frame above.
    let reply = eth(MAC0, MAC1, b"thanks");
    vm1.send(&reply);
    assert_eq!(vm0.expect(), reply);
    vm2.expect_nothing();
    assert_eq!(switch.mac_table(), vec![(MAC0, 0), (MAC1, 1)]);
}

#[test]
fn a_mac_moving_port_is_relearned() {
    let (_dir, switch, [vm0, vm1, vm2]) = three_vms();
    let shared = MacAddr::new(0x02, 0, 0, 0, 0, 0x42);
    vm1.send(&eth(MacAddr::BROADCAST, shared, b"on port 1"));
    vm0.drain();
    vm2.drain();
    vm2.send(&eth(MacAddr::BROADCAST, shared, b"now on port 2"));
    vm0.drain();
    vm1.drain();
    assert!(switch.mac_table().contains(&(shared, 2)));
    let to_shared = eth(shared, MAC0, b"where are you");
    vm0.send(&to_shared);
    assert_eq!(vm2.expect(), to_shared);
    vm1.expect_nothing();
}

#[test]
fn injection_reaches_every_port_and_is_recorded_on_the_host_port() {
    let (_dir, switch, vms) = three_vms();
    let probe = arp_probe(
        Ipv4Addr::new(10, 5, 0, 100),
        HOST_MAC,
        Ipv4Addr::UNSPECIFIED,
    );
    let before = Instant::now();
    switch.inject(&probe).unwrap();
    for vm in &vms {
        assert_eq!(vm.expect(), probe);
    }
    let frames = switch.frames();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].port, switch.host_port());
    assert_eq!(switch.host_port(), 3);
    assert!(frames[0].at >= before);
    assert_eq!(frames[0].bytes, probe);
    assert_eq!(switch.stats().injected, 1);
    // A VM's reply to the host MAC is recorded, not flooded to the VMs.
    let reply = arp_reply(
        MAC1,
        Ipv4Addr::new(10, 5, 0, 100),
        HOST_MAC,
        Ipv4Addr::UNSPECIFIED,
    );
    vms[1].send(&reply);
    eventually("the reply in the history", || switch.frames().len() == 2);
    vms[0].expect_nothing();
    vms[2].expect_nothing();
    assert!(matches!(
        switch.inject(&[0u8; 10]),
        Err(SwitchError::BadFrame { len: 10, .. })
    ));
}

#[test]
fn frames_are_recorded_in_order_with_ports_and_subscribers_see_them() {
    let (_dir, switch, [vm0, vm1, vm2]) = three_vms();
    let rx = switch.subscribe();
    let start = Instant::now();
    let sent = [
        (0, eth(MacAddr::BROADCAST, MAC0, b"one")),
        (1, eth(MacAddr::BROADCAST, MAC1, b"two")),
        (2, eth(MacAddr::BROADCAST, MAC2, b"three")),
    ];
    for (port, frame) in &sent {
        [&vm0, &vm1, &vm2][*port].send(frame);
        // Wait for each so the order across ports is defined.
        eventually("the frame recorded", || {
            switch.frames().last().map(|f| &f.bytes) == Some(frame)
        });
    }
    let frames = switch.frames();
    let got: Vec<(usize, Vec<u8>)> = frames.iter().map(|f| (f.port, f.bytes.clone())).collect();
    assert_eq!(got, sent.to_vec());
    assert!(frames.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(frames[0].at >= start);
    let streamed: Vec<_> = (0..3)
        .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
        .collect();
    assert_eq!(streamed, frames);
    assert_eq!(switch.frames_since(frames[1].at), frames[1..].to_vec());
    switch.clear_frames();
    assert!(switch.frames().is_empty());
}

#[test]
fn history_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let options = SwitchOptions {
        history_frames: 5,
        ..SwitchOptions::default()
    };
    let switch = Switch::start_with(dir.path(), 1, options).unwrap();
    for i in 0..10u8 {
        switch.inject(&eth(MacAddr::BROADCAST, MAC0, &[i])).unwrap();
    }
    let frames = switch.frames();
    assert_eq!(frames.len(), 5);
    assert_eq!(frames[0].bytes.last(), Some(&5));
    assert_eq!(switch.stats().history_evicted, 5);
}

#[test]
fn who_has_collects_the_replies_vms_send_back() {
    let (_dir, switch, [vm0, vm1, vm2]) = three_vms();
    let vip = Ipv4Addr::new(10, 5, 0, 100);
    // VMs 1 and 2 both claim the VIP (a split brain the tests must see);
    // VM 2 also answers for another address, which must not count.
    let responder = |vm: FakeVm, mac: MacAddr, also: Option<Ipv4Addr>| {
        thread::spawn(move || {
            let probe = vm.expect();
            let arp = parse_arp(&probe).expect("an ARP probe");
            assert!(arp.is_probe(), "{arp}");
            assert_eq!(arp.target_ip, vip);
            for ip in std::iter::once(vip).chain(also) {
                vm.send(&arp_reply(mac, ip, arp.sender_mac, arp.sender_ip));
            }
            vm
        })
    };
    let t1 = responder(vm1, MAC1, None);
    let t2 = responder(vm2, MAC2, Some(Ipv4Addr::new(10, 5, 0, 7)));
    let asked = Instant::now();
    let replies = switch.who_has(vip, Duration::from_millis(1500));
    t1.join().unwrap();
    t2.join().unwrap();
    let mut macs: Vec<MacAddr> = replies.iter().map(|(m, _)| *m).collect();
    macs.sort();
    assert_eq!(macs, vec![MAC1, MAC2]);
    assert!(replies.iter().all(|(_, at)| *at >= asked));
    // The probe reached the silent VM too, and nothing else did.
    assert!(parse_arp(&vm0.expect()).unwrap().is_probe());
    vm0.expect_nothing();
    assert!(switch
        .who_has(Ipv4Addr::new(10, 5, 0, 200), Duration::from_millis(100))
        .is_empty());
}

#[test]
fn frames_for_an_absent_vm_are_counted_not_errors() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::start(dir.path(), 2).unwrap();
    let vm0 = FakeVm::attach(&switch, 0);
    assert!(!switch.peer_alive(1));
    vm0.send(&eth(MacAddr::BROADCAST, MAC0, b"anyone?"));
    eventually("the drop counted", || {
        switch.stats().ports[1].tx_no_peer == 1
    });
    assert!(switch.errors().is_empty(), "{:?}", switch.errors());
}

#[test]
fn a_restarted_vm_is_reconnected() {
    let (_dir, switch, [vm0, vm1, _vm2]) = three_vms();
    let first = eth(MacAddr::BROADCAST, MAC0, b"first");
    vm0.send(&first);
    assert_eq!(vm1.expect(), first);
    // QEMU exits (its socket file stays behind) and a new one binds again.
    drop(vm1);
    assert!(!switch.peer_alive(1));
    vm0.send(&eth(MacAddr::BROADCAST, MAC0, b"while down"));
    eventually("the drop counted", || {
        switch.stats().ports[1].tx_no_peer == 1
    });
    let vm1 = FakeVm::attach(&switch, 1);
    switch.wait_for_peer(1, Duration::from_secs(5)).unwrap();
    let second = eth(MacAddr::BROADCAST, MAC0, b"second");
    vm0.send(&second);
    assert_eq!(vm1.expect(), second);
    assert!(switch.errors().is_empty(), "{:?}", switch.errors());
}

#[test]
fn a_slow_vm_gets_its_frames_in_order_once_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::start(dir.path(), 2).unwrap();
    let vm0 = FakeVm::attach(&switch, 0);
    let vm1 = FakeVm::attach(&switch, 1);
    // More frames than the kernel queues for one unix datagram socket
    // (net.unix.max_dgram_qlen, 10 by default): the rest wait in the switch.
    let n = 60u8;
    for i in 0..n {
        switch.inject(&eth(MacAddr::BROADCAST, MAC2, &[i])).unwrap();
    }
    let qlen: u64 = std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .map_or(10, |s| s.trim().parse().unwrap());
    if qlen + 1 < u64::from(n) {
        let held = switch.stats().ports[1].tx_frames;
        assert!(held <= qlen + 1, "{held} frames sent to a VM not reading");
    }
    let got: Vec<u8> = vm1.drain().iter().map(|f| *f.last().unwrap()).collect();
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    assert_eq!(vm0.drain().len(), n as usize);
    let stats = switch.stats();
    assert_eq!(stats.ports[1].tx_dropped, 0);
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
}

#[test]
fn start_refuses_bad_setups_and_replaces_stale_sockets() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Switch::start(dir.path(), 0),
        Err(SwitchError::NoPorts)
    ));
    let long = dir.path().join("x".repeat(120));
    let err = Switch::start(&long, 1).unwrap_err();
    assert!(matches!(err, SwitchError::PathTooLong { .. }), "{err}");
    assert!(err.to_string().contains("port0.sock"), "{err}");

    let switch = Switch::start(dir.path().join("l2"), 2).unwrap();
    let err = Switch::start(dir.path().join("l2"), 2).unwrap_err();
    assert!(matches!(err, SwitchError::InUse { .. }), "{err}");
    assert!(err.to_string().contains("port0.sock"), "{err}");
    let port0 = switch.port_path(0).to_path_buf();
    drop(switch);
    assert!(!port0.exists(), "the socket is removed on drop");

    // A socket file left by a killed switch is replaced.
    let stale = std::os::unix::net::UnixDatagram::bind(&port0).unwrap();
    drop(stale);
    let switch = Switch::start(dir.path().join("l2"), 2).unwrap();
    assert!(matches!(
        switch.wait_for_peer(5, Duration::ZERO),
        Err(SwitchError::NoSuchPort { port: 5, ports: 2 })
    ));
    let err = switch
        .wait_for_peer(0, Duration::from_millis(50))
        .unwrap_err();
    assert!(err.to_string().contains("vm0.sock"), "{err}");
}

#[test]
fn netdev_names_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::start(dir.path(), 1).unwrap();
    assert_eq!(
        switch.netdev("n0", 0),
        format!(
            "dgram,id=n0,local.type=unix,local.path={},remote.type=unix,remote.path={}",
            dir.path().join("vm0.sock").display(),
            dir.path().join("port0.sock").display()
        )
    );
    // keel-qemu renders the same netdev.
    let nic = keel_qemu::Nic::dgram_unix("n0", switch.vm_path(0), switch.port_path(0));
    assert_eq!(nic.netdev, switch.netdev("n0", 0));
}

/// A partition: an isolated port neither sends to nor hears the other VM
/// ports, while the host port still sees it and reaches it; joined again,
/// it forwards as before.
#[test]
fn an_isolated_port_reaches_only_the_host() {
    let (_dir, switch, [vm0, vm1, vm2]) = three_vms();
    switch.isolate(0, true).unwrap();
    let from0 = eth(MacAddr::BROADCAST, MAC0, b"from the cut-off side");
    let since = Instant::now();
    vm0.send(&from0);
    let from1 = eth(MacAddr::BROADCAST, MAC1, b"from the majority");
    vm1.send(&from1);
    assert_eq!(vm2.expect(), from1);
    vm1.expect_nothing();
    vm2.expect_nothing();
    vm0.expect_nothing();
    eventually("both recorded", || switch.frames_since(since).len() == 2);
    let probe = arp_probe(
        Ipv4Addr::new(10, 5, 0, 100),
        HOST_MAC,
        Ipv4Addr::UNSPECIFIED,
    );
    switch.inject(&probe).unwrap();
    assert_eq!(vm0.expect(), probe, "the host reaches the isolated port");
    assert_eq!(vm1.expect(), probe);
    assert_eq!(vm2.expect(), probe);
    switch.isolate(0, false).unwrap();
    vm0.send(&from0);
    assert_eq!(vm1.expect(), from0);
    assert_eq!(vm2.expect(), from0);
    assert!(switch.isolate(7, true).is_err());
}
