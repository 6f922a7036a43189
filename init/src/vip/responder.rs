//! Answering for the VIP from PID 1 instead of the kernel.
//!
//! The holder keeps the VIP on `lo`, where the kernel accepts traffic for
//! it (Linux's weak host model: a local address is local on every link)
//! but never answers ARP or neighbour solicitations for it on the VIP's
//! link: with `arp_ignore = 1` there the kernel replies only for
//! addresses configured on the link the request came in on
//! (Documentation/networking/ip-sysctl.rst), and ndisc_recv_ns() in
//! net/ipv6/ndisc.c looks the target up on the receiving device only.
//! This is how LVS direct-routing real servers keep a shared address
//! quiet. PID 1 reads the requests for the VIP from a packet socket
//! (packet(7)) and answers each only after etcd confirmed the lease in a
//! round trip that started after the request was read (`gate.rs`): a
//! node resumed from a pause, whose lease may be gone, says nothing for
//! the VIP until etcd says it still holds it.
//!
//! `arp_announce = 2` keeps the kernel from using the VIP as the sender
//! address of its own ARP requests (the best local address of the
//! outgoing link is used instead), which would be an unchecked claim.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::announce::{icmpv6_checksum, ArpForm, ALL_NODES, ALL_NODES_MAC, ARP_FRAME_LEN};
use crate::net::dhcp::socket::{packet_addr, socklen};

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ICMPV6: u8 = 58;
const NEIGHBOR_SOLICITATION: u8 = 135;
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// Solicited and override flags of a neighbour advertisement (RFC 4861
/// section 4.4).
const NA_SOLICITED: u8 = 0x40;
const NA_OVERRIDE: u8 = 0x20;
const OPT_TARGET_LL_ADDR: u8 = 2;
/// Ethernet + IPv6 + NS (24 bytes, no options).
const NS_MIN_LEN: usize = 14 + 40 + 24;
/// Ethernet + IPv6 + NA + target link-layer address option.
pub const NA_FRAME_LEN: usize = 86;

/// The sysctls that keep the kernel from answering for (or announcing) an
/// address on `lo` on the VIP's link, under `root` (`/proc/sys` on a
/// node), for link `link`. Per link, not `all`: the node's other links
/// keep Linux's weak-host ARP for the node's own addresses (a host that
/// reaches a node address through another NIC, as QEMU's user-mode
/// networking does in `make run`). The kernel uses the larger of `all`
/// and the link's value for both (IN_DEV_ARP_IGNORE, IN_DEV_ARP_ANNOUNCE
/// in include/linux/inetdevice.h).
pub const SYSCTLS: [(&str, &str); 2] = [("arp_ignore", "1"), ("arp_announce", "2")];

/// Writes [`SYSCTLS`] for `link` under `root`; the first failure names its
/// file.
pub fn quiet_kernel(root: &Path, link: &str) -> Result<(), ResponderError> {
    for (key, value) in SYSCTLS {
        let path = root.join("net/ipv4/conf").join(link).join(key);
        std::fs::write(&path, value).map_err(|source| ResponderError::Sysctl {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ResponderError {
    #[error("cannot set {path}: {source} (without it the kernel would answer ARP for the VIP on its own)")]
    Sysctl {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("link {link}: {op}: {source}")]
    Socket {
        link: String,
        op: &'static str,
        #[source]
        source: Errno,
    },
}

/// A request for the VIP seen on the link: who asked, to answer them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// An ARP request (or RFC 5227 probe, sender 0.0.0.0) for the VIP.
    Arp { mac: [u8; 6], ip: Ipv4Addr },
    /// A neighbour solicitation for the VIP (source `::` during DAD).
    Ns { mac: [u8; 6], ip: Ipv6Addr },
}

/// An ARP request for `vip` in `frame` (Ethernet header first), if it is
/// one. Gratuitous ARP (sender IP = the VIP) is another node's claim, not
/// a question: it gets no answer.
pub fn parse_arp(frame: &[u8], vip: Ipv4Addr) -> Option<Asked> {
    let a = frame.get(14..42)?;
    let is_request = frame[12..14] == ETH_P_ARP.to_be_bytes()
        && a[0..2] == [0, 1]
        && a[2..4] == [0x08, 0x00]
        && a[4] == 6
        && a[5] == 4
        && a[6..8] == [0, 1];
    let sender_ip = Ipv4Addr::new(a[14], a[15], a[16], a[17]);
    let target_ip = Ipv4Addr::new(a[24], a[25], a[26], a[27]);
    if !is_request || target_ip != vip || sender_ip == vip {
        return None;
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&a[8..14]);
    Some(Asked::Arp { mac, ip: sender_ip })
}

/// A neighbour solicitation for `vip` in `frame`, if it is a valid one
/// (RFC 4861 section 7.1.1: hop limit 255, code 0, checksum, target not
/// multicast; no extension headers, as the BPF filter already assumes).
pub fn parse_ns(frame: &[u8], vip: Ipv6Addr) -> Option<Asked> {
    if frame.len() < NS_MIN_LEN || frame[12..14] != ETH_P_IPV6.to_be_bytes() {
        return None;
    }
    let ip = &frame[14..54];
    let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let icmp = frame.get(54..54 + payload_len)?;
    if ip[6] != ICMPV6 || ip[7] != 255 || icmp.len() < 24 {
        return None;
    }
    if icmp[0] != NEIGHBOR_SOLICITATION || icmp[1] != 0 {
        return None;
    }
    let octets = |b: &[u8]| {
        let mut o = [0u8; 16];
        o.copy_from_slice(b);
        Ipv6Addr::from(o)
    };
    let (src, dst, target) = (
        octets(&ip[8..24]),
        octets(&ip[24..40]),
        octets(&icmp[8..24]),
    );
    if target != vip || icmpv6_checksum(&src, &dst, icmp) != 0 {
        return None;
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&frame[6..12]);
    Some(Asked::Ns { mac, ip: src })
}

/// The ARP reply to `to_mac`/`to_ip`: `vip` is at `mac`.
pub fn arp_reply(
    mac: [u8; 6],
    vip: Ipv4Addr,
    to_mac: [u8; 6],
    to_ip: Ipv4Addr,
) -> [u8; ARP_FRAME_LEN] {
    let mut f = super::announce::gratuitous_arp(mac, vip, ArpForm::Reply);
    f[0..6].copy_from_slice(&to_mac);
    f[32..38].copy_from_slice(&to_mac);
    f[38..42].copy_from_slice(&to_ip.octets());
    f
}

/// The neighbour advertisement answering a solicitation from `to_ip`
/// (`to_mac`): solicited and override, to the asker; to all nodes without
/// the solicited flag when it asked from `::` (RFC 4861 section 7.2.4).
pub fn solicited_na(
    mac: [u8; 6],
    vip: Ipv6Addr,
    to_mac: [u8; 6],
    to_ip: Ipv6Addr,
) -> [u8; NA_FRAME_LEN] {
    let (dst, dst_mac, flags) = match to_ip.is_unspecified() {
        true => (ALL_NODES, ALL_NODES_MAC, NA_OVERRIDE),
        false => (to_ip, to_mac, NA_SOLICITED | NA_OVERRIDE),
    };
    let mut f = [0u8; NA_FRAME_LEN];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    let ip = &mut f[14..54];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&32u16.to_be_bytes());
    ip[6] = ICMPV6;
    ip[7] = 255;
    ip[8..24].copy_from_slice(&vip.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    let icmp = &mut f[54..86];
    icmp[0] = NEIGHBOR_ADVERTISEMENT;
    icmp[4] = flags;
    icmp[8..24].copy_from_slice(&vip.octets());
    icmp[24] = OPT_TARGET_LL_ADDR;
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(&mac);
    let sum = icmpv6_checksum(&vip, &dst, &f[54..86]);
    f[56..58].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The Ethernet multicast address of `ip`'s solicited-node group
/// (ff02::1:ffXX:XXXX, RFC 4291 section 2.7.1; RFC 2464 section 7).
pub fn solicited_node_mac(ip: Ipv6Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x33, 0x33, 0xff, o[13], o[14], o[15]]
}

/// A packet socket on one link that receives the requests for one VIP.
pub struct Listener {
    link: String,
    vip: IpAddr,
    fd: AsyncFd<OwnedFd>,
    buf: Vec<u8>,
}

impl Listener {
    /// Opens it on `link` (index `ifindex`). Needs CAP_NET_RAW; answers
    /// go out through the announcing socket.
    pub fn open(link: &str, ifindex: u32, vip: IpAddr) -> Result<Listener, ResponderError> {
        let err = |op| {
            let link = link.to_string();
            move |source: Errno| ResponderError::Socket { link, op, source }
        };
        // Protocol 0: nothing is received until bind() names one, after
        // the filter is attached (packet(7)).
        let fd = socket::socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(err("open packet socket"))?;
        let protocol = match vip {
            IpAddr::V4(_) => ETH_P_ARP,
            IpAddr::V6(v6) => {
                attach_ns_filter(&fd).map_err(err("attach socket filter"))?;
                join(&fd, ifindex, solicited_node_mac(v6))
                    .map_err(err("join solicited-node group"))?;
                ETH_P_IPV6
            }
        };
        socket::bind(fd.as_raw_fd(), &packet_addr(ifindex, protocol, [0; 6]))
            .map_err(err("bind packet socket"))?;
        // SAFETY: the AsyncFd owns `fd`, an open socket that nothing else
        // closes, so its raw fd names the same socket until it is dropped.
        let fd =
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| {
                let e: io::Error = e.into();
                err("register packet socket")(Errno::from_raw(e.raw_os_error().unwrap_or(0)))
            })?;
        Ok(Listener {
            link: link.to_string(),
            vip,
            fd,
            buf: vec![0; 2048],
        })
    }

    /// The next request for the VIP. Cancel-safe: nothing is read until
    /// the socket is ready.
    pub async fn next(&mut self) -> Result<Asked, ResponderError> {
        loop {
            let mut guard = self
                .fd
                .readable()
                .await
                .map_err(|e| ResponderError::Socket {
                    link: self.link.clone(),
                    op: "wait for a request",
                    source: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                })?;
            let buf = &mut self.buf;
            let n = match guard.try_io(|fd| {
                socket::recv(fd.as_raw_fd(), buf, MsgFlags::empty()).map_err(io::Error::from)
            }) {
                Err(_would_block) => continue,
                Ok(Ok(n)) => n,
                // ENETDOWN while the link is down: the carrier check ends
                // the term; keep waiting meanwhile.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENETDOWN) => continue,
                Ok(Err(e)) => {
                    return Err(ResponderError::Socket {
                        link: self.link.clone(),
                        op: "receive",
                        source: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                    })
                }
            };
            let frame = &self.buf[..n];
            let asked = match self.vip {
                IpAddr::V4(v4) => parse_arp(frame, v4),
                IpAddr::V6(v6) => parse_ns(frame, v6),
            };
            if let Some(a) = asked {
                return Ok(a);
            }
        }
    }
}

/// A classic BPF program that passes only ICMPv6 neighbour solicitations
/// without extension headers (IPv6 next header at frame offset 20, the
/// ICMPv6 type at 54), so PID 1 does not read every IPv6 frame.
fn attach_ns_filter(fd: &OwnedFd) -> Result<(), Errno> {
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    const LDB_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let mut code = [
        op(LDB_ABS, 0, 0, 20),
        op(JEQ_K, 0, 3, u32::from(ICMPV6)),
        op(LDB_ABS, 0, 0, 54),
        op(JEQ_K, 0, 1, u32::from(NEIGHBOR_SOLICITATION)),
        op(RET_K, 0, 0, 0xffff),
        op(RET_K, 0, 0, 0),
    ];
    crate::net::dhcp::socket::attach_filter(fd, &mut code)
}

/// Joins the link-layer multicast group `mac` on link `ifindex`, so a NIC
/// that filters multicast passes the solicitations (packet(7),
/// PACKET_ADD_MEMBERSHIP): the VIP is not on the link, so the kernel did
/// not join its solicited-node group there.
fn join(fd: &OwnedFd, ifindex: u32, mac: [u8; 6]) -> Result<(), Errno> {
    let mut address = [0u8; 8];
    address[..6].copy_from_slice(&mac);
    let mreq = libc::packet_mreq {
        mr_ifindex: i32::try_from(ifindex).map_err(|_| Errno::EINVAL)?,
        mr_type: u16::try_from(libc::PACKET_MR_MULTICAST).map_err(|_| Errno::EINVAL)?,
        mr_alen: 6,
        mr_address: address,
    };
    // SAFETY: fd is an open packet socket; `mreq` is a live packet_mreq of
    // the size passed, copied by the kernel.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&raw const mreq).cast(),
            socklen::<libc::packet_mreq>(),
        )
    };
    Errno::result(rc).map(drop)
}

#[cfg(test)]
#[path = "responder_tests.rs"]
mod tests;
