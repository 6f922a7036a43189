//! The DHCPv4 client's transport: how [`Client`](super::Client) packets
//! reach the wire and replies come back, for one link.
//!
//! - **Receive** on an `AF_PACKET`/`SOCK_DGRAM` socket bound to the link
//!   (packet(7)). Replies arrive before the link has an address, which a
//!   UDP socket cannot promise: a broadcast OFFER to 255.255.255.255 from
//!   a server the kernel has no route back to fails the reverse-path filter
//!   (`rp_filter`, ip-sysctl.rst) and never reaches a UDP socket. The
//!   socket carries a classic BPF filter that keeps only unfragmented UDP
//!   to port 68, so PID 1 is not woken for every IPv4 packet on the link
//!   (etcd and API server traffic) for as long as it runs.
//! - **Broadcast** (DISCOVER, REQUEST while selecting, REBINDING) through
//!   the same packet socket: the IPv4 and UDP headers are built here, the
//!   kernel adds the Ethernet header for `ff:ff:ff:ff:ff:ff`. The IP source
//!   is then exactly what RFC 2131 4.1 asks (0.0.0.0 without an address,
//!   the leased one when rebinding), not the outcome of the kernel's
//!   source address selection on a link that may have no address yet.
//! - **Unicast** (RENEWING, RELEASE) through a UDP socket bound to
//!   `<leased address>:68` and to the link with `SO_BINDTODEVICE`
//!   (socket(7)): the server may be off-link behind a relay, so the kernel
//!   must route it and resolve the next hop's MAC, which only a kernel
//!   socket does. Its replies (the server unicasts the ACK to `ciaddr`,
//!   RFC 2131 4.1) arrive on both sockets; the copy read second is a reply
//!   the state machine no longer expects and ignores. Reading the UDP
//!   socket anyway keeps its receive queue from filling up over months of
//!   renewals.
//!
//! UDP checksums of received packets are not verified: on veth and
//! virtio-net with checksum offload the packet socket sees the sender's
//! packet before the checksum is filled in (`TP_STATUS_CSUMNOTREADY`,
//! packet(7)), so a check would drop good replies. The Ethernet FCS covers
//! the frame on the wire, the IP header checksum is checked, and the DHCP
//! codec checks the message's structure.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{
    self, sockopt, AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType, SockaddrIn, SockaddrLike,
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::client::Dest;

pub const CLIENT_PORT: u16 = 68;
pub const SERVER_PORT: u16 = 67;
const IPPROTO_UDP: u8 = 17;
const IP_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;
/// RFC 791 "Don't Fragment". DHCP messages fit the 576-byte minimum, so
/// they are atomic datagrams and the ID may be 0 (RFC 6864 4.1).
const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAGMENT_OFFSET: u16 = 0x1fff;
/// RFC 1700's default TTL, as Linux's `IPDEFTTL`.
const TTL: u8 = 64;
/// asm-generic/socket.h; the same value on every Linux architecture.
/// libc exports it only for Android.
const SO_ATTACH_FILTER: libc::c_int = 26;
/// Large enough for any IPv4 packet, so `recv` never truncates.
const RECV_BUF: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("dhcp: {link}: {op}: {source}")]
    Io {
        link: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("dhcp: {link}: cannot unicast to {server} without a leased address")]
    NoSource { link: String, server: Ipv4Addr },
}

impl SocketError {
    /// The errno behind the error, if there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            SocketError::Io { source, .. } => source.raw_os_error().map(Errno::from_raw),
            SocketError::NoSource { .. } => None,
        }
    }
}

/// Why a received packet is not a DHCP reply for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("packet of {0} bytes is too short")]
    Short(usize),
    #[error("IP version {0}, not 4")]
    Version(u8),
    #[error("bad IP header length {0}")]
    HeaderLength(usize),
    #[error("IP total length {total} does not fit {got} bytes")]
    TotalLength { total: usize, got: usize },
    #[error("IP header checksum mismatch")]
    Checksum,
    #[error("IP fragment")]
    Fragment,
    #[error("IP protocol {0}, not UDP")]
    Protocol(u8),
    #[error("bad UDP length {0}")]
    UdpLength(usize),
    #[error("UDP destination port {0}, not {CLIENT_PORT}")]
    Port(u16),
}

/// A UDP datagram parsed out of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub payload: &'a [u8],
}

/// The Internet checksum (RFC 1071): the one's complement of the one's
/// complement sum of 16-bit words, an odd last byte padded with zero.
pub(crate) fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    // Chunks are concatenated; all but the last have even length here.
    for c in chunks {
        let mut words = c.chunks_exact(2);
        for w in &mut words {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [b] = words.remainder() {
            sum += u32::from(*b) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // Folded to 16 bits just above.
    !u16::try_from(sum).unwrap_or(0xffff)
}

/// A length in a 16-bit header field. DHCP packets are far below 64 KiB
/// (RFC 2131: 576 bytes unless the client offers more, at most the MTU).
fn len16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// An IPv4 packet (RFC 791, no options) carrying a UDP datagram (RFC 768)
/// with its checksum over the pseudo header.
pub fn build_ip_udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = UDP_HEADER_LEN + payload.len();
    let total = IP_HEADER_LEN + udp_len;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]); // version 4, IHL 5; TOS 0
    p.extend_from_slice(&len16(total).to_be_bytes());
    p.extend_from_slice(&[0, 0]); // identification
    p.extend_from_slice(&FLAG_DF.to_be_bytes());
    p.extend_from_slice(&[TTL, IPPROTO_UDP, 0, 0]); // checksum below
    p.extend_from_slice(&src.ip().octets());
    p.extend_from_slice(&dst.ip().octets());
    let ip_sum = checksum(&[&p[..IP_HEADER_LEN]]);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());

    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&len16(udp_len).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    let pseudo = pseudo_header(*src.ip(), *dst.ip(), udp_len);
    // RFC 768: a computed checksum of zero is sent as all ones, since zero
    // means "no checksum".
    let udp_sum = match checksum(&[&pseudo, &p[IP_HEADER_LEN..]]) {
        0 => 0xffff,
        s => s,
    };
    p[IP_HEADER_LEN + 6..IP_HEADER_LEN + 8].copy_from_slice(&udp_sum.to_be_bytes());
    p
}

fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, udp_len: usize) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[..4].copy_from_slice(&src.octets());
    h[4..8].copy_from_slice(&dst.octets());
    h[9] = IPPROTO_UDP;
    h[10..].copy_from_slice(&len16(udp_len).to_be_bytes());
    h
}

/// Parses an IPv4 packet as a packet socket hands it over (no link-layer
/// header; Ethernet padding may follow the IP total length) and returns
/// the UDP datagram to `port`.
pub fn parse_ip_udp(p: &[u8], port: u16) -> Result<Datagram<'_>, HeaderError> {
    if p.len() < IP_HEADER_LEN {
        return Err(HeaderError::Short(p.len()));
    }
    if p[0] >> 4 != 4 {
        return Err(HeaderError::Version(p[0] >> 4));
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if ihl < IP_HEADER_LEN || ihl > p.len() {
        return Err(HeaderError::HeaderLength(ihl));
    }
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if total < ihl || total > p.len() {
        return Err(HeaderError::TotalLength {
            total,
            got: p.len(),
        });
    }
    // Summing a header that includes its checksum gives 0 when it is right.
    if checksum(&[&p[..ihl]]) != 0 {
        return Err(HeaderError::Checksum);
    }
    let frag = u16::from_be_bytes([p[6], p[7]]);
    if frag & (FLAG_MF | FRAGMENT_OFFSET) != 0 {
        return Err(HeaderError::Fragment);
    }
    if p[9] != IPPROTO_UDP {
        return Err(HeaderError::Protocol(p[9]));
    }
    let udp = &p[ihl..total];
    if udp.len() < UDP_HEADER_LEN {
        return Err(HeaderError::Short(p.len()));
    }
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if udp_len < UDP_HEADER_LEN || udp_len > udp.len() {
        return Err(HeaderError::UdpLength(udp_len));
    }
    let dst_port = u16::from_be_bytes([udp[2], udp[3]]);
    if dst_port != port {
        return Err(HeaderError::Port(dst_port));
    }
    let ip = |o: usize| Ipv4Addr::new(p[o], p[o + 1], p[o + 2], p[o + 3]);
    Ok(Datagram {
        src: SocketAddrV4::new(ip(12), u16::from_be_bytes([udp[0], udp[1]])),
        dst: SocketAddrV4::new(ip(16), dst_port),
        payload: &udp[UDP_HEADER_LEN..udp_len],
    })
}

/// The socket filter: accept unfragmented UDP to port 68, drop the rest.
/// On a `SOCK_DGRAM` packet socket the filter sees the packet from the
/// network header (packet_rcv() in net/packet/af_packet.c), so offsets are
/// IPv4 header offsets. Instructions as in
/// Documentation/networking/filter.rst; a jump goes to the next
/// instruction plus its offset.
fn filter() -> [libc::sock_filter; 9] {
    use libc::{
        BPF_ABS, BPF_B, BPF_H, BPF_IND, BPF_JEQ, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_LDX,
        BPF_MSH, BPF_RET,
    };
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        // BPF instruction classes and modes are one byte (linux/bpf_common.h).
        code: u16::try_from(code).unwrap_or(0),
        jt,
        jf,
        k,
    };
    [
        /* 0 */ op(BPF_LD | BPF_B | BPF_ABS, 0, 0, 9), // A = protocol
        /* 1 */ op(BPF_JMP | BPF_JEQ | BPF_K, 0, 6, IPPROTO_UDP.into()),
        /* 2 */ op(BPF_LD | BPF_H | BPF_ABS, 0, 0, 6), // A = flags, offset
        /* 3 */ op(BPF_JMP | BPF_JSET | BPF_K, 4, 0, FRAGMENT_OFFSET.into()),
        /* 4 */ op(BPF_LDX | BPF_B | BPF_MSH, 0, 0, 0), // X = IHL * 4
        /* 5 */ op(BPF_LD | BPF_H | BPF_IND, 0, 0, 2), // A = UDP dst port
        /* 6 */ op(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, CLIENT_PORT.into()),
        /* 7 */ op(BPF_RET | BPF_K, 0, 0, u32::MAX), // accept it all
        /* 8 */ op(BPF_RET | BPF_K, 0, 0, 0), // drop
    ]
}

/// ETH_P_IP from linux/if_ether.h: IPv4 frames.
const ETH_P_IP: u16 = 0x0800;

/// The size of `T` as a socket option or address length (a few bytes).
/// Attaches the classic BPF program `code` to socket `fd` (socket(7)
/// SO_ATTACH_FILTER): the kernel drops what it rejects before the socket
/// queues it. Shared with the VIP's packet socket (`vip/responder.rs`).
pub(crate) fn attach_filter(fd: &OwnedFd, code: &mut [libc::sock_filter]) -> Result<(), Errno> {
    let fprog = libc::sock_fprog {
        len: len16(code.len()),
        filter: code.as_mut_ptr(),
    };
    // SAFETY: fd is an open socket; fprog points at `code`, which outlives
    // the call (the kernel copies the program), and the length passed is
    // the size of the sock_fprog it points at.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_FILTER,
            (&raw const fprog).cast(),
            socklen::<libc::sock_fprog>(),
        )
    };
    Errno::result(rc).map(drop)
}

pub(crate) fn socklen<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// `sockaddr_ll` for `bind` and `sendto` on the link, for IPv4 frames.
fn link_addr(ifindex: u32, dest: [u8; 6]) -> LinkAddr {
    packet_addr(ifindex, ETH_P_IP, dest)
}

/// `sockaddr_ll` (packet(7)) for link `ifindex`, EtherType `protocol`,
/// destination MAC `dest`.
pub(crate) fn packet_addr(ifindex: u32, protocol: u16, dest: [u8; 6]) -> LinkAddr {
    // SAFETY: sockaddr_ll is plain old data; all zeroes is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::sa_family_t::try_from(libc::AF_PACKET).unwrap_or(17);
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&dest);
    let len = socklen::<libc::sockaddr_ll>();
    // SAFETY: the pointer is to a live, initialized sockaddr_ll of exactly
    // `len` bytes with sa_family AF_PACKET, which is what from_raw reads.
    unsafe { LinkAddr::from_raw((&raw const sll).cast(), Some(len)) }
        .expect("a sockaddr_ll of the right size and family")
}

/// What the receive path waits for. A socket error (the packet socket's
/// ENETDOWN) raises only EPOLLERR (datagram_poll() in net/core/datagram.c),
/// which tokio reports as [`Interest::ERROR`], not as readable. Sends are
/// non-blocking calls that do not wait.
const RECV_INTEREST: Interest = Interest::READABLE.add(Interest::ERROR);

/// Registers a non-blocking socket with tokio.
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns `fd`, an open socket; nothing else closes
    // or replaces it, so `as_raw_fd` names the same socket until the
    // AsyncFd is dropped.
    unsafe { AsyncFd::register_with_interest(fd, RECV_INTEREST) }.map_err(Into::into)
}

/// The sockets for one link.
pub struct Transport {
    link: String,
    ifindex: u32,
    packet: AsyncFd<OwnedFd>,
    /// The unicast socket and the address it is bound to, while a lease is
    /// held.
    udp: Option<(Ipv4Addr, AsyncFd<OwnedFd>)>,
    buf: Vec<u8>,
}

impl Transport {
    /// Opens the packet socket on link `ifindex` (called `link` in
    /// errors). Needs CAP_NET_RAW.
    pub fn open(link: &str, ifindex: u32) -> Result<Transport, SocketError> {
        let err = |op| {
            let link = link.to_string();
            move |e: Errno| SocketError::Io {
                link,
                op,
                source: e.into(),
            }
        };
        // Protocol 0: "no packets are received" until bind() names one
        // (packet(7)), so nothing from other links or unfiltered slips in
        // before the filter and the binding are in place.
        let fd = socket::socket(
            AddressFamily::Packet,
            SockType::Datagram,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(err("open packet socket"))?;
        attach_filter(&fd, &mut filter()).map_err(err("attach socket filter"))?;
        socket::bind(fd.as_raw_fd(), &link_addr(ifindex, [0; 6]))
            .map_err(err("bind packet socket"))?;
        let packet = register(fd).map_err(|source| SocketError::Io {
            link: link.to_string(),
            op: "register packet socket",
            source,
        })?;
        Ok(Transport {
            link: link.to_string(),
            ifindex,
            packet,
            udp: None,
            buf: vec![0; RECV_BUF],
        })
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    fn io_err(&self, op: &'static str) -> impl FnOnce(Errno) -> SocketError + '_ {
        move |e| SocketError::Io {
            link: self.link.clone(),
            op,
            source: e.into(),
        }
    }

    /// Sends a DHCP message. `source` is the IP source of broadcasts
    /// (0.0.0.0 until an address is leased, RFC 2131 4.1) and the address
    /// unicasts are sent from.
    pub fn send(
        &mut self,
        payload: &[u8],
        dest: Dest,
        source: Ipv4Addr,
    ) -> Result<(), SocketError> {
        match dest {
            Dest::Broadcast => {
                let ip = build_ip_udp(
                    SocketAddrV4::new(source, CLIENT_PORT),
                    SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT),
                    payload,
                );
                let to = link_addr(self.ifindex, [0xff; 6]);
                socket::sendto(self.packet.as_raw_fd(), &ip, &to, MsgFlags::empty())
                    .map_err(self.io_err("broadcast"))?;
            }
            Dest::Unicast(server) => {
                if source.is_unspecified() {
                    return Err(SocketError::NoSource {
                        link: self.link.clone(),
                        server,
                    });
                }
                let fd = self.unicast_socket(source)?;
                let to = SockaddrIn::from(SocketAddrV4::new(server, SERVER_PORT));
                socket::sendto(fd.as_raw_fd(), payload, &to, MsgFlags::empty())
                    .map_err(self.io_err("unicast"))?;
            }
        }
        Ok(())
    }

    /// The UDP socket bound to `source`:68 on the link, opened on first use.
    fn unicast_socket(&mut self, source: Ipv4Addr) -> Result<&AsyncFd<OwnedFd>, SocketError> {
        if self.udp.as_ref().is_some_and(|(a, _)| *a != source) {
            self.udp = None;
        }
        if self.udp.is_none() {
            let fd = socket::socket(
                AddressFamily::Inet,
                SockType::Datagram,
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
                None,
            )
            .map_err(self.io_err("open UDP socket"))?;
            // Before bind: two links may both hold a lease and each bind
            // port 68; sockets bound to different devices do not conflict.
            socket::setsockopt(&fd, sockopt::BindToDevice, &self.link.clone().into())
                .map_err(self.io_err("bind UDP socket to the link"))?;
            let at = SockaddrIn::from(SocketAddrV4::new(source, CLIENT_PORT));
            socket::bind(fd.as_raw_fd(), &at).map_err(self.io_err("bind UDP socket"))?;
            let fd = register(fd).map_err(|source| SocketError::Io {
                link: self.link.clone(),
                op: "register UDP socket",
                source,
            })?;
            self.udp = Some((source, fd));
        }
        Ok(&self.udp.as_ref().expect("opened above").1)
    }

    /// Closes the unicast socket: the lease is gone, and with it the
    /// address the socket is bound to.
    pub fn forget_address(&mut self) {
        self.udp = None;
    }

    /// The next DHCP payload sent to port 68 on this link. Cancel-safe:
    /// nothing is read until a socket is ready. Errors are the packet
    /// socket's: a link set down makes it report `ENETDOWN` once, and it
    /// receives again when the link comes back up (packet_notifier() in
    /// net/packet/af_packet.c); a removed link leaves it unbound for good.
    pub async fn recv(&mut self) -> Result<Vec<u8>, SocketError> {
        loop {
            let udp = async {
                match &self.udp {
                    Some((_, fd)) => fd.ready(RECV_INTEREST).await,
                    None => std::future::pending().await,
                }
            };
            let (ready, from_packet) = tokio::select! {
                g = self.packet.ready(RECV_INTEREST) => (g, true),
                g = udp => (g, false),
            };
            let mut guard = ready.map_err(|source| SocketError::Io {
                link: self.link.clone(),
                op: "wait for a packet",
                source,
            })?;
            let buf = &mut self.buf;
            let read = guard.try_io(|fd| {
                socket::recv(fd.as_raw_fd(), buf, MsgFlags::empty()).map_err(io::Error::from)
            });
            let n = match read {
                Err(_would_block) => continue,
                Ok(Ok(n)) => n,
                Ok(Err(e)) if !from_packet => {
                    // Not fatal: the packet socket sees the same replies.
                    log::debug!("dhcp: {}: UDP socket: {e}", self.link);
                    continue;
                }
                Ok(Err(source)) => {
                    return Err(SocketError::Io {
                        link: self.link.clone(),
                        op: "receive",
                        source,
                    })
                }
            };
            if !from_packet {
                // The kernel has checked the IP and UDP headers.
                return Ok(self.buf[..n].to_vec());
            }
            match parse_ip_udp(&self.buf[..n], CLIENT_PORT) {
                Ok(d) => return Ok(d.payload.to_vec()),
                Err(e) => log::debug!("dhcp: {}: dropped packet: {e}", self.link),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    /// Known-good packets; the expected bytes were computed with an
    /// independent RFC 1071 implementation (Python's `struct`).
    #[test]
    fn build_known_packets() {
        let cases: [(&str, &str, &[u8], &str); 3] = [
            (
                "0.0.0.0:68",
                "255.255.255.255:67",
                b"",
                "4500001c0000400040113ad200000000ffffffff 004400430008ff57",
            ),
            (
                "10.0.2.15:68",
                "10.0.2.2:67",
                b"\x01\x02\x03",
                "4500001f00004000401122be0a00020f0a000202 00440043000be33e 010203",
            ),
            // The UDP sum comes out 0 and is sent as ffff (RFC 768).
            (
                "10.0.0.1:68",
                "10.0.0.2:67",
                b"\xeb\x50",
                "4500001e00004000401126cd0a0000010a000002 00440043000affff eb50",
            ),
        ];
        for (src, dst, payload, want) in cases {
            let want = want.replace(' ', "");
            let got = build_ip_udp(sa(src), sa(dst), payload);
            assert_eq!(hex::encode(&got), want, "{src} -> {dst}");
            let d = parse_ip_udp(&got, SERVER_PORT).unwrap();
            assert_eq!((d.src, d.dst, d.payload), (sa(src), sa(dst), payload));
        }
    }

    #[test]
    fn checksum_rfc1071_example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        assert_eq!(
            checksum(&[&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]]),
            !0xddf2
        );
        // Odd length: the last byte is padded on the right.
        assert_eq!(checksum(&[&[0x01]]), !0x0100);
    }

    #[test]
    fn parse_rejects() {
        let good = build_ip_udp(sa("10.0.0.1:67"), sa("10.0.0.9:68"), b"hello");
        let with = |i: usize, v: u8| {
            let mut p = good.clone();
            p[i] = v;
            p
        };
        // Fix the header checksum after editing a header byte.
        let resum = |mut p: Vec<u8>| {
            p[10..12].fill(0);
            let s = checksum(&[&p[..20]]);
            p[10..12].copy_from_slice(&s.to_be_bytes());
            p
        };
        let cases: Vec<(Vec<u8>, HeaderError)> = vec![
            (good[..19].to_vec(), HeaderError::Short(19)),
            (with(0, 0x65), HeaderError::Version(6)),
            (with(0, 0x44), HeaderError::HeaderLength(16)),
            (
                resum(with(3, 0xff)),
                HeaderError::TotalLength {
                    total: 0xff,
                    got: good.len(),
                },
            ),
            (with(8, 1), HeaderError::Checksum),
            (resum(with(6, 0x20)), HeaderError::Fragment),
            (resum(with(7, 0x01)), HeaderError::Fragment),
            (resum(with(9, 6)), HeaderError::Protocol(6)),
            (with(25, 0xff), HeaderError::UdpLength(0xff)),
            (with(23, 67), HeaderError::Port(67)),
        ];
        for (p, want) in cases {
            assert_eq!(
                parse_ip_udp(&p, CLIENT_PORT),
                Err(want),
                "{}",
                hex::encode(&p)
            );
        }
        // Ethernet padding after the IP total length is ignored.
        let mut padded = good.clone();
        padded.extend_from_slice(&[0; 20]);
        assert_eq!(parse_ip_udp(&padded, 68).unwrap().payload, b"hello");
    }

    /// Runs the classic BPF program over a packet: just the instructions
    /// [`filter`] uses, with the kernel's semantics (a load past the end
    /// drops the packet).
    fn run_filter(prog: &[libc::sock_filter], p: &[u8]) -> u32 {
        use libc::*;
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let byte = |i: usize| p.get(i).map(|b| u32::from(*b));
        let half = |i: usize| Some(byte(i)? << 8 | byte(i + 1)?);
        loop {
            let i = &prog[pc];
            pc += 1;
            let code = u32::from(i.code);
            let k = i.k as usize;
            let loaded = match code {
                c if c == BPF_LD | BPF_B | BPF_ABS => Some(byte(k)),
                c if c == BPF_LD | BPF_H | BPF_ABS => Some(half(k)),
                c if c == BPF_LD | BPF_H | BPF_IND => Some(half(x as usize + k)),
                _ => None,
            };
            match loaded {
                Some(None) => return 0,
                Some(Some(v)) => a = v,
                None if code == BPF_LDX | BPF_B | BPF_MSH => match byte(k) {
                    Some(b) => x = (b & 0xf) * 4,
                    None => return 0,
                },
                None if code == BPF_JMP | BPF_JEQ | BPF_K || code == BPF_JMP | BPF_JSET | BPF_K => {
                    let hit = if code & 0xf0 == BPF_JEQ {
                        a == i.k
                    } else {
                        a & i.k != 0
                    };
                    pc += usize::from(if hit { i.jt } else { i.jf });
                }
                None if code == BPF_RET | BPF_K => return i.k,
                None => panic!("opcode {code:#x} not emulated"),
            }
        }
    }

    #[test]
    fn socket_filter_table() {
        let reply = build_ip_udp(sa("10.0.0.1:67"), sa("10.0.0.9:68"), b"dhcp");
        let to_server = build_ip_udp(sa("0.0.0.0:68"), sa("255.255.255.255:67"), b"dhcp");
        let with = |i: usize, v: u8| {
            let mut p = reply.clone();
            p[i] = v;
            p
        };
        // An IP option (IHL 6) moves the UDP header by 4 bytes.
        let mut with_option = reply.clone();
        with_option[0] = 0x46;
        with_option.splice(20..20, [1, 1, 1, 0]);
        let cases: [(&str, Vec<u8>, bool); 7] = [
            ("reply to port 68", reply.clone(), true),
            ("with an IP option", with_option, true),
            ("first fragment (MF)", with(6, 0x20), true),
            ("later fragment", with(7, 0x10), false),
            ("TCP", with(9, 6), false),
            ("to port 67", to_server, false),
            ("truncated", reply[..21].to_vec(), false),
        ];
        for (name, p, accept) in cases {
            assert_eq!(run_filter(&filter(), &p) != 0, accept, "{name}");
        }
    }
}
