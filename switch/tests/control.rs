//! The control socket's line protocol.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;

use common::{eth, FakeVm, MAC0, MAC1};
use keel_switch::{arp_reply, control, parse_arp, MacAddr, Switch, SwitchError, SwitchOptions};

const TIMEOUT: Duration = Duration::from_secs(10);

fn switch_with_control(ports: usize) -> (tempfile::TempDir, Switch) {
    let dir = tempfile::tempdir().unwrap();
    let options = SwitchOptions {
        control: true,
        ..SwitchOptions::default()
    };
    let switch = Switch::start_with(dir.path(), ports, options).unwrap();
    assert_eq!(
        switch.control_path(),
        Some(dir.path().join("control").as_path())
    );
    (dir, switch)
}

#[test]
fn who_has_lists_the_macs_that_answer() {
    let (_dir, switch) = switch_with_control(2);
    let path = switch.control_path().unwrap().to_path_buf();
    let vm0 = FakeVm::attach(&switch, 0);
    let vm1 = FakeVm::attach(&switch, 1);
    let vip = Ipv4Addr::new(10, 5, 0, 100);
    let responder = thread::spawn(move || {
        let arp = parse_arp(&vm1.expect()).unwrap();
        vm1.send(&arp_reply(MAC1, vip, arp.sender_mac, arp.sender_ip));
        vm1
    });
    let lines = control::request(&path, "who-has 10.5.0.100 1000", TIMEOUT).unwrap();
    responder.join().unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let words: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(words[0], MAC1.to_string());
    assert_eq!(words[1], "port=1");
    assert!(
        words[2].starts_with("after=") && words[2].ends_with("ms"),
        "{lines:?}"
    );
    assert!(parse_arp(&vm0.expect()).unwrap().is_probe());

    let none = control::request(&path, "who-has 10.5.0.101 50", TIMEOUT).unwrap();
    assert!(none.is_empty(), "{none:?}");
}

#[test]
fn ports_macs_and_stats() {
    let (_dir, switch) = switch_with_control(2);
    let path = switch.control_path().unwrap().to_path_buf();
    let vm0 = FakeVm::attach(&switch, 0);
    vm0.send(&eth(MacAddr::BROADCAST, MAC0, b"hi"));
    common::eventually("the frame", || switch.stats().ports[0].rx_frames == 1);

    let ports = control::request(&path, "ports", TIMEOUT).unwrap();
    assert_eq!(
        ports,
        (0..2)
            .map(|i| format!(
                "port {i} switch={} vm={}",
                switch.port_path(i).display(),
                switch.vm_path(i).display()
            ))
            .collect::<Vec<_>>()
    );
    let macs = control::request(&path, "macs", TIMEOUT).unwrap();
    assert_eq!(macs, vec![format!("{MAC0} port=0")]);
    let stats = control::request(&path, "stats", TIMEOUT).unwrap();
    assert_eq!(
        stats,
        vec![
            "port 0 rx=1 tx=0 no-peer=0 dropped=0",
            "port 1 rx=0 tx=0 no-peer=1 dropped=0",
            "injected=0 errors=0",
        ]
    );
    assert_eq!(control::request(&path, "help", TIMEOUT).unwrap().len(), 5);
}

#[test]
fn errors_are_answered_and_the_connection_stays_usable() {
    let (_dir, switch) = switch_with_control(1);
    let path = switch.control_path().unwrap().to_path_buf();
    for (command, want) in [
        ("frobnicate", "unknown command"),
        ("who-has", "wrong arguments"),
        ("who-has 10.5.0", "not an IPv4 address"),
        ("who-has 10.5.0.1 99999", "wait must be"),
        ("ports extra", "wrong arguments"),
    ] {
        match control::request(&path, command, TIMEOUT) {
            Err(SwitchError::ControlReply { message, .. }) => {
                assert!(message.contains(want), "{command}: {message}")
            }
            other => panic!("{command}: {other:?}"),
        }
    }
    // Several commands on one connection; blank lines are ignored.
    let mut stream = UnixStream::connect(&path).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(b"bogus\n\nmacs\nports\n").unwrap();
    let lines: Vec<String> = BufReader::new(stream)
        .lines()
        .take(5)
        .map(Result::unwrap)
        .collect();
    assert!(lines[0].starts_with("error unknown command"), "{lines:?}");
    assert_eq!(
        &lines[1..],
        [
            "end",
            "end",
            &format!(
                "port 0 switch={} vm={}",
                switch.port_path(0).display(),
                switch.vm_path(0).display()
            ),
            "end"
        ]
    );
}

#[test]
fn the_control_socket_goes_away_with_the_switch() {
    let (_dir, switch) = switch_with_control(1);
    let path = switch.control_path().unwrap().to_path_buf();
    drop(switch);
    assert!(!path.exists());
    let err = control::request(&path, "ports", TIMEOUT).unwrap_err();
    assert!(err.to_string().contains("control"), "{err}");
}
