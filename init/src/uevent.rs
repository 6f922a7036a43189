//! Kernel uevents for hotplug: a `NETLINK_KOBJECT_UEVENT` socket bound to
//! the kernel's multicast group, read through Tokio.
//!
//! A kernel uevent is one datagram, `action@devpath\0` followed by
//! `KEY=VALUE\0` pairs (`lib/kobject_uevent.c`: `alloc_uevent_skb()` puts
//! the header, then the `kobj_uevent_env` buffer, whose `add_uevent_var()`
//! ends every pair with a NUL). The pairs always include `ACTION`,
//! `DEVPATH`, `SUBSYSTEM` and `SEQNUM`; net devices add `INTERFACE` and
//! `IFINDEX` (`netdev_uevent()` in `net/core/net-sysfs.c`), most buses a
//! `MODALIAS`.
//!
//! Network namespaces: a net device's uevents go only to uevent sockets in
//! the device's namespace (`kobject_uevent_net_broadcast()`: the kobject is
//! tagged with its netns); other devices' uevents go to sockets in every
//! namespace owned by the initial user namespace. So the socket is opened
//! in the namespace whose links the caller cares about (PID 1: the root).

use std::collections::BTreeMap;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    bind, recvmsg, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// The kernel's multicast group on `NETLINK_KOBJECT_UEVENT`; udevd
/// re-broadcasts processed events on group 2, which Keel has no use for
/// (there is no udevd in the image).
const GROUP_KERNEL: u32 = 1;

/// `SO_RCVBUF` asked for: coldplug and module loads raise uevents in
/// bursts (hundreds at a time on a large machine), and whatever does not
/// fit is dropped with ENOBUFS. udevd and systemd's sd-device ask for
/// 128 MiB. The kernel doubles the value for bookkeeping (socket(7)) and
/// charges each queued datagram its whole skb (about 1.5 KiB for a typical
/// uevent), so 1 MiB queues on the order of a thousand events; memory is
/// only used while events wait.
const RCVBUF: usize = 1 << 20;

/// Receive buffer for one datagram. The kernel's environment buffer is
/// `UEVENT_BUFFER_SIZE` (2048, `include/linux/kobject.h`) plus the
/// `action@devpath` header; longer datagrams are reported as truncated.
const MSG_MAX: usize = 8192;

/// What a uevent datagram starts with when udevd (libudev's
/// `device_monitor_send()`) sent it: the string, its NUL, then a binary
/// `monitor_netlink_header` with magic `0xfeedcafe`.
const LIBUDEV_PREFIX: &[u8] = b"libudev\0";

/// One kernel uevent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uevent {
    /// `add`, `remove`, `change`, `move`, `online`, `offline`, `bind`,
    /// `unbind` (`kobject_actions[]` in `lib/kobject_uevent.c`).
    pub action: String,
    /// The device's path below `/sys`, `/devices/virtual/net/veth0`.
    pub devpath: String,
    /// `SUBSYSTEM=`: `net`, `pci`, `virtio`, `block`, ...
    pub subsystem: Option<String>,
    /// Every `KEY=VALUE` pair, `ACTION`, `DEVPATH` and `SUBSYSTEM`
    /// included. Bytes that are not UTF-8 (possible in a link name, which
    /// may hold any byte but `/`, `:` and white space) are replaced.
    pub vars: BTreeMap<String, String>,
}

/// Why a datagram is not a kernel uevent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("a udevd (libudev) message, not a kernel uevent")]
    Libudev,
    #[error("no action@devpath header in {0:?}")]
    Header(String),
}

/// Why the uevent socket failed.
#[derive(Debug, thiserror::Error)]
pub enum UeventError {
    #[error("cannot open a NETLINK_KOBJECT_UEVENT socket: {0}")]
    Open(#[source] io::Error),
    /// ENOBUFS: the receive buffer overflowed and the kernel dropped
    /// uevents (netlink(7)). The socket stays usable; what was missed has
    /// to be found by rescanning `/sys`.
    #[error("uevents were lost (ENOBUFS: receive buffer overflowed); rescan /sys")]
    Overflow,
    #[error("cannot receive from the uevent socket: {0}")]
    Recv(#[source] io::Error),
}

impl Uevent {
    /// Parses one datagram. Pairs without `=` and empty pairs are skipped;
    /// the header's action and devpath are what counts.
    pub fn parse(msg: &[u8]) -> Result<Uevent, ParseError> {
        if msg.starts_with(LIBUDEV_PREFIX) {
            return Err(ParseError::Libudev);
        }
        let mut parts = msg.split(|&b| b == 0);
        let header = String::from_utf8_lossy(parts.next().unwrap_or_default());
        let (action, devpath) = header
            .split_once('@')
            .filter(|(a, d)| !a.is_empty() && d.starts_with('/'))
            .ok_or_else(|| ParseError::Header(header.chars().take(80).collect()))?;
        let vars: BTreeMap<String, String> = parts
            .filter_map(|p| {
                let p = String::from_utf8_lossy(p);
                let (k, v) = p.split_once('=')?;
                (!k.is_empty()).then(|| (k.to_owned(), v.to_owned()))
            })
            .collect();
        Ok(Uevent {
            action: action.to_owned(),
            devpath: devpath.to_owned(),
            subsystem: vars.get("SUBSYSTEM").cloned(),
            vars,
        })
    }

    /// The value of `key`, if the event carries it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// `MODALIAS=`: what to load a module for (`pci:v00001AF4d00001000...`).
    pub fn modalias(&self) -> Option<&str> {
        self.get("MODALIAS").filter(|m| !m.is_empty())
    }

    /// `INTERFACE=`: the link name, on `net` events.
    pub fn interface(&self) -> Option<&str> {
        self.get("INTERFACE").filter(|i| !i.is_empty())
    }

    /// `IFINDEX=`, on `net` events.
    pub fn ifindex(&self) -> Option<u32> {
        self.get("IFINDEX")?.parse().ok()
    }

    /// `SEQNUM=`: the kernel's uevent sequence number
    /// (`/sys/kernel/uevent_seqnum` is the latest).
    pub fn seqnum(&self) -> Option<u64> {
        self.get("SEQNUM")?.parse().ok()
    }
}

/// A `NETLINK_KOBJECT_UEVENT` socket subscribed to kernel uevents, in the
/// network namespace of the thread that opened it.
pub struct UeventSocket {
    fd: AsyncFd<OwnedFd>,
}

impl UeventSocket {
    /// Opens and binds the socket. Must run inside a Tokio runtime with I/O
    /// enabled (Keel's is built with `enable_all`); outside one this is an
    /// error rather than Tokio's panic.
    pub fn open() -> Result<UeventSocket, UeventError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(UeventError::Open(io::Error::other(
                "not inside a Tokio runtime",
            )));
        }
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkKObjectUEvent,
        )
        .map_err(|e| UeventError::Open(e.into()))?;
        set_rcvbuf(&fd);
        // nl_pid 0: the kernel assigns the port id (netlink(7)).
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, GROUP_KERNEL))
            .map_err(|e| UeventError::Open(e.into()))?;
        // SAFETY: the AsyncFd owns `fd`, an open socket; nothing else
        // closes or replaces it, so it stays open and `as_raw_fd` returns
        // the same descriptor until the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| UeventError::Open(e.into()))?;
        Ok(UeventSocket { fd })
    }

    /// The next kernel uevent. Datagrams that are not one (udevd's, one
    /// sent by a process rather than the kernel, truncated or malformed
    /// ones) are logged and skipped. After [`UeventError::Overflow`] the
    /// socket can be read on.
    pub async fn recv(&self) -> Result<Uevent, UeventError> {
        let mut buf = vec![0u8; MSG_MAX];
        loop {
            let mut guard = self.fd.readable().await.map_err(UeventError::Recv)?;
            let got = match guard.try_io(|fd| recv_datagram(fd.get_ref(), &mut buf)) {
                Ok(got) => got,
                // Spurious readiness: try_io cleared it, wait again.
                Err(_would_block) => continue,
            };
            let dgram = match got {
                Ok(d) => d,
                Err(e) if e.raw_os_error() == Some(Errno::ENOBUFS as i32) => {
                    log::warn!("uevent socket overflowed (ENOBUFS): uevents were lost");
                    return Err(UeventError::Overflow);
                }
                Err(e) => return Err(UeventError::Recv(e)),
            };
            match check(&dgram, &buf) {
                Ok(event) => return Ok(event),
                Err(Skip::Debug(why)) => log::debug!("uevent socket: {why}"),
                Err(Skip::Warn(why)) => log::warn!("uevent socket: {why}"),
            }
        }
    }
}

/// SO_RCVBUFFORCE lifts the `net.core.rmem_max` cap but needs
/// CAP_NET_ADMIN (socket(7)); without it, SO_RCVBUF gets what the cap
/// allows. Neither failing is fatal: the default buffer still works, it
/// just overflows sooner.
fn set_rcvbuf(fd: &OwnedFd) {
    if setsockopt(fd, sockopt::RcvBufForce, &RCVBUF).is_ok() {
        return;
    }
    if let Err(e) = setsockopt(fd, sockopt::RcvBuf, &RCVBUF) {
        log::warn!("uevent socket: cannot set SO_RCVBUF to {RCVBUF}: {e}");
    }
}

/// One datagram as `recvmsg(2)` returned it.
struct Datagram {
    len: usize,
    /// The sender's `nl_pid`; None when the kernel gave no address.
    sender: Option<u32>,
    truncated: bool,
}

fn recv_datagram(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<NetlinkAddr>(fd.as_raw_fd(), &mut iov, None, MsgFlags::empty())?;
    Ok(Datagram {
        len: msg.bytes,
        sender: msg.address.map(|a| a.pid()),
        truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
    })
}

enum Skip {
    Debug(String),
    Warn(String),
}

/// Accepts a datagram only from the kernel: netlink(7) gives the sender's
/// `nl_pid` as 0 for the kernel, and the kernel stamps every user-space
/// message with the sending socket's nonzero port id
/// (`netlink_sendmsg()`), so it cannot be forged. Only CAP_NET_ADMIN may
/// send to this group at all (it allows unprivileged receive only,
/// `NL_CFG_F_NONROOT_RECV` in `uevent_net_init()`), but a privileged
/// sender is still not the kernel.
fn check(d: &Datagram, buf: &[u8]) -> Result<Uevent, Skip> {
    match d.sender {
        Some(0) => {}
        Some(pid) => return Err(Skip::Warn(format!("ignored a message from port id {pid}"))),
        None => return Err(Skip::Warn("ignored a message without a sender".into())),
    }
    if d.truncated {
        return Err(Skip::Warn(format!(
            "ignored a uevent longer than {} bytes",
            buf.len()
        )));
    }
    Uevent::parse(&buf[..d.len.min(buf.len())]).map_err(|e| match e {
        ParseError::Libudev => Skip::Debug(e.to_string()),
        ParseError::Header(_) => Skip::Warn(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn recorded_uevents() {
        let net_add: &[u8] = b"add@/devices/virtual/net/kv0\0ACTION=add\0\
            DEVPATH=/devices/virtual/net/kv0\0SUBSYSTEM=net\0INTERFACE=kv0\0\
            IFINDEX=3\0SEQNUM=4711\0";
        let pci_add: &[u8] = b"add@/devices/pci0000:00/0000:00:03.0\0ACTION=add\0\
            DEVPATH=/devices/pci0000:00/0000:00:03.0\0SUBSYSTEM=pci\0PCI_CLASS=20000\0\
            PCI_ID=1AF4:1000\0PCI_SUBSYS_ID=1AF4:0001\0PCI_SLOT_NAME=0000:00:03.0\0\
            MODALIAS=pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\0SEQNUM=812\0";
        let net_remove: &[u8] = b"remove@/devices/virtual/net/kv0\0ACTION=remove\0\
            DEVPATH=/devices/virtual/net/kv0\0SUBSYSTEM=net\0INTERFACE=kv0\0\
            IFINDEX=3\0SEQNUM=4712\0";
        // A driver's odd pair (no `=`) and a value holding `=` survive.
        let odd: &[u8] = b"change@/devices/virtual/misc/x\0ACTION=change\0JUNK\0\0K=a=b\0";

        let got = Uevent::parse(net_add).unwrap();
        assert_eq!(
            got,
            Uevent {
                action: "add".into(),
                devpath: "/devices/virtual/net/kv0".into(),
                subsystem: Some("net".into()),
                vars: vars(&[
                    ("ACTION", "add"),
                    ("DEVPATH", "/devices/virtual/net/kv0"),
                    ("SUBSYSTEM", "net"),
                    ("INTERFACE", "kv0"),
                    ("IFINDEX", "3"),
                    ("SEQNUM", "4711"),
                ]),
            }
        );
        assert_eq!(
            (got.interface(), got.ifindex(), got.seqnum(), got.modalias()),
            (Some("kv0"), Some(3), Some(4711), None)
        );

        let got = Uevent::parse(pci_add).unwrap();
        assert_eq!(
            (
                got.action.as_str(),
                got.subsystem.as_deref(),
                got.interface()
            ),
            ("add", Some("pci"), None)
        );
        assert_eq!(
            got.modalias(),
            Some("pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00")
        );
        assert_eq!(got.get("PCI_SLOT_NAME"), Some("0000:00:03.0"));

        let got = Uevent::parse(net_remove).unwrap();
        assert_eq!(
            (got.action.as_str(), got.interface(), got.ifindex()),
            ("remove", Some("kv0"), Some(3))
        );

        let got = Uevent::parse(odd).unwrap();
        assert_eq!(got.subsystem, None);
        assert_eq!(got.vars, vars(&[("ACTION", "change"), ("K", "a=b")]));
    }

    #[test]
    fn rejected_datagrams() {
        let mut libudev = b"libudev\0".to_vec();
        libudev.extend_from_slice(&0xfeed_cafe_u32.to_be_bytes());
        libudev.extend_from_slice(&[0x28, 0, 0, 0]);
        libudev.extend_from_slice(b"ACTION=add\0SUBSYSTEM=net\0");
        let cases: &[(&[u8], ParseError)] = &[
            (&libudev, ParseError::Libudev),
            (b"", ParseError::Header(String::new())),
            (b"add\0ACTION=add\0", ParseError::Header("add".into())),
            (b"@/devices/x\0", ParseError::Header("@/devices/x".into())),
            (
                b"add@devices/x\0ACTION=add\0",
                ParseError::Header("add@devices/x".into()),
            ),
            (
                b"ACTION=add\0DEVPATH=/devices/x\0",
                ParseError::Header("ACTION=add".into()),
            ),
        ];
        for (msg, want) in cases {
            assert_eq!(
                Uevent::parse(msg).as_ref(),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(msg)
            );
        }
    }

    #[test]
    fn only_the_kernel_is_believed() {
        let buf = b"add@/devices/virtual/net/kv0\0SUBSYSTEM=net\0INTERFACE=kv0\0";
        let dgram = |sender, truncated| Datagram {
            len: buf.len(),
            sender,
            truncated,
        };
        assert!(check(&dgram(Some(0), false), buf).is_ok());
        assert!(matches!(
            check(&dgram(Some(4242), false), buf),
            Err(Skip::Warn(w)) if w.contains("4242")
        ));
        assert!(matches!(
            check(&dgram(None, false), buf),
            Err(Skip::Warn(_))
        ));
        assert!(matches!(
            check(&dgram(Some(0), true), buf),
            Err(Skip::Warn(_))
        ));
    }

    #[test]
    fn open_outside_a_runtime_is_an_error() {
        assert!(matches!(UeventSocket::open(), Err(UeventError::Open(_))));
    }
}
