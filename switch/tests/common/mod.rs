//! Fake VMs for the switch tests: a unix datagram socket bound where QEMU
//! would bind `local.path`, sending to the switch's port like QEMU does.

#![allow(dead_code)]

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use keel_switch::{MacAddr, Switch};

pub const MAC0: MacAddr = MacAddr::new(0x52, 0x54, 0x00, 0x12, 0x34, 0x00);
pub const MAC1: MacAddr = MacAddr::new(0x52, 0x54, 0x00, 0x12, 0x34, 0x01);
pub const MAC2: MacAddr = MacAddr::new(0x52, 0x54, 0x00, 0x12, 0x34, 0x02);

/// How long a test waits for a frame that should come.
pub const ARRIVES: Duration = Duration::from_secs(5);
/// How long a test waits to be sure a frame does not come.
pub const QUIET: Duration = Duration::from_millis(200);

pub struct FakeVm {
    pub sock: UnixDatagram,
    pub port_path: PathBuf,
}

impl FakeVm {
    /// Binds VM `port`'s path (unlinking a stale file first, as QEMU does).
    pub fn attach(switch: &Switch, port: usize) -> FakeVm {
        let _ = std::fs::remove_file(switch.vm_path(port));
        let sock = UnixDatagram::bind(switch.vm_path(port)).expect("bind fake VM socket");
        FakeVm {
            sock,
            port_path: switch.port_path(port).to_path_buf(),
        }
    }

    pub fn send(&self, frame: &[u8]) {
        self.sock
            .send_to(frame, &self.port_path)
            .expect("send to the switch port");
    }

    /// The next frame within `timeout`, if any.
    pub fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.sock.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = vec![0u8; 70_000];
        match self.sock.recv(&mut buf) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("fake VM recv: {e}"),
        }
    }

    /// The next frame, failing the test if none comes.
    pub fn expect(&self) -> Vec<u8> {
        self.recv(ARRIVES).expect("a frame reaches the VM")
    }

    /// Fails the test if a frame arrives within [`QUIET`].
    pub fn expect_nothing(&self) {
        if let Some(f) = self.recv(QUIET) {
            panic!("unexpected frame reached the VM: {f:02x?}");
        }
    }

    /// Every frame arriving until none has come for [`QUIET`].
    pub fn drain(&self) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        while let Some(f) = self.recv(QUIET) {
            v.push(f);
        }
        v
    }
}

/// An Ethernet frame with a recognisable payload.
pub fn eth(dst: MacAddr, src: MacAddr, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&0x88b5u16.to_be_bytes()); // local experimental
    f.extend_from_slice(payload);
    f
}

/// Waits until `cond` holds (the switch works on its own thread).
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + ARRIVES;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
