//! The permanent (burnt-in) MAC address of a link, which sysfs does not
//! export: the `SIOCETHTOOL` ioctl with `ETHTOOL_GPERMADDR`, as `ethtool -P`
//! does it (`struct ethtool_perm_addr` in `include/uapi/linux/ethtool.h`,
//! `ethtool_get_perm_addr()` in `net/ethtool/ioctl.c`).
//!
//! Why by hand: the ethtool generic netlink family has no permanent address
//! message (`Documentation/networking/ethtool-netlink.rst` maps
//! `ETHTOOL_GPERMADDR` to rtnetlink's `IFLA_PERM_ADDRESS`), so the `ethtool`
//! crate cannot read it, and `IFLA_PERM_ADDRESS` (Linux 5.6+) would need an
//! async rtnetlink round trip per dump. Naming and selectors work on
//! [`LinkFacts`] read synchronously from sysfs, before any runtime exists;
//! one ioctl on a throwaway socket fits there, for one 6-byte read.
//!
//! Like every netdevice ioctl (netdevice(7)), it acts on the network
//! namespace of the socket, so of the thread that opens it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::libc;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

use super::sysfs::LinkFacts;
use crate::config::types::MacAddress;

/// `SIOCETHTOOL` from `<linux/sockios.h>`. `libc::Ioctl` is the request
/// type of `ioctl(2)` in the libc at hand: `c_int` for musl (the image),
/// `c_ulong` for glibc (host tests).
const SIOCETHTOOL: libc::Ioctl = 0x8946;
/// `ETHTOOL_GPERMADDR` from `<linux/ethtool.h>`.
const ETHTOOL_GPERMADDR: u32 = 0x20;
/// `MAX_ADDR_LEN` from `<linux/netdevice.h>`: the longest hardware address
/// a link can have. The kernel fails the request with ETOOSMALL unless
/// `size` is at least the link's `addr_len`, so ask for the maximum.
const MAX_ADDR_LEN: usize = 32;
/// `IFNAMSIZ` from `<linux/if.h>`, the terminating NUL included.
const IFNAMSIZ: usize = 16;

/// `struct ethtool_perm_addr` followed by its flexible `data[]` array: the
/// kernel reads `cmd` and `size`, writes back `size = dev->addr_len`, then
/// copies `addr_len` bytes right after the header.
#[repr(C)]
struct PermAddrRequest {
    cmd: u32,
    size: u32,
    data: [u8; MAX_ADDR_LEN],
}

/// Why a link's permanent address could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EthtoolError {
    #[error("link {link}: not a valid interface name (at most 15 bytes, no NUL)")]
    Name { link: String },
    #[error("link {link}: cannot open a socket for SIOCETHTOOL: {source}")]
    Socket {
        link: String,
        #[source]
        source: io::Error,
    },
    /// ENODEV when there is no such link in this network namespace.
    #[error("link {link}: SIOCETHTOOL ETHTOOL_GPERMADDR: {source}")]
    Ioctl {
        link: String,
        #[source]
        source: io::Error,
    },
}

/// The permanent MAC address of `ifname` in the calling thread's network
/// namespace. `Ok(None)` when the link has none: virtual links (veth,
/// bridge, bond, lo) report an all-zero address, links whose hardware
/// address is not 6 bytes (tunnels, InfiniBand) are not Ethernet, and a
/// driver may refuse the request with EOPNOTSUPP.
pub fn permanent_addr(ifname: &str) -> Result<Option<[u8; 6]>, EthtoolError> {
    let sock = open_socket().map_err(|source| EthtoolError::Socket {
        link: ifname.to_owned(),
        source,
    })?;
    permanent_addr_on(&sock, ifname)
}

/// Sets [`LinkFacts::permanent_addr`] (lowercase, colon separated) on every
/// link ethtool reports a permanent address for. A link without one keeps
/// what sysfs gave (a bond member's `perm_hwaddr`, or nothing); a link that
/// cannot be asked (gone since sysfs was read) is logged and kept as is.
pub fn fill_permanent_addrs(links: &mut [LinkFacts]) {
    if links.is_empty() {
        return;
    }
    let sock = match open_socket() {
        Ok(s) => s,
        Err(e) => {
            log::warn!("permanent addresses: cannot open a socket for SIOCETHTOOL: {e}");
            return;
        }
    };
    for link in links {
        match permanent_addr_on(&sock, &link.name) {
            // MacAddress displays as sysfs prints: lowercase, with colons.
            Ok(Some(mac)) => link.permanent_addr = Some(MacAddress(mac).to_string()),
            Ok(None) => {}
            Err(e) => log::warn!("{e}"),
        }
    }
}

/// netdevice(7): "any socket's file descriptor regardless of the family or
/// type" reaches the device ioctls; `ethtool` itself uses AF_INET datagram.
fn open_socket() -> io::Result<OwnedFd> {
    socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)
}

fn permanent_addr_on(sock: &OwnedFd, ifname: &str) -> Result<Option<[u8; 6]>, EthtoolError> {
    let name = ifr_name(ifname).ok_or_else(|| EthtoolError::Name {
        link: ifname.to_owned(),
    })?;
    let mut req = PermAddrRequest {
        cmd: ETHTOOL_GPERMADDR,
        size: MAX_ADDR_LEN.try_into().unwrap_or(u32::MAX),
        data: [0; MAX_ADDR_LEN],
    };
    let mut ifr = libc::ifreq {
        ifr_name: name,
        ifr_ifru: libc::__c_anonymous_ifr_ifru {
            ifru_data: (&raw mut req).cast(),
        },
    };
    // SAFETY: `sock` is an open socket for the whole call. `ifr` is a live,
    // properly laid out `struct ifreq` whose name is NUL terminated;
    // `dev_ethtool()` copies it in, then reads 8 bytes (`cmd`, `size`) from
    // `ifru_data` and writes back at most 8 + `size` bytes there, which
    // `req` (8 + MAX_ADDR_LEN bytes, `repr(C)`, borrowed mutably and not
    // otherwise touched until the call returns) holds.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &raw mut ifr) };
    if rc < 0 {
        let source = io::Error::last_os_error();
        if source.raw_os_error() == Some(libc::EOPNOTSUPP) {
            return Ok(None);
        }
        return Err(EthtoolError::Ioctl {
            link: ifname.to_owned(),
            source,
        });
    }
    Ok(perm_addr_from_reply(req.size, &req.data))
}

/// The MAC in a `ETHTOOL_GPERMADDR` reply: `size` is the link's `addr_len`
/// and `data` the kernel's `dev->perm_addr`, which is zero unless the
/// driver registered the link with `addr_assign_type` NET_ADDR_PERM
/// (`register_netdevice()` copies `dev_addr` to `perm_addr` only then) or
/// set it itself.
fn perm_addr_from_reply(size: u32, data: &[u8]) -> Option<[u8; 6]> {
    if size != 6 {
        return None;
    }
    let mac: [u8; 6] = data.get(..6)?.try_into().ok()?;
    (mac != [0; 6]).then_some(mac)
}

/// `SIOCGIFFLAGS`, `SIOCSIFFLAGS` from `<linux/sockios.h>`.
const SIOCGIFFLAGS: libc::Ioctl = 0x8913;
const SIOCSIFFLAGS: libc::Ioctl = 0x8914;

/// Sets link `ifname` down with two ioctls (netdevice(7)): synchronous
/// and allocation-free, for the panic hook, where no async runtime runs.
pub fn set_down(ifname: &str) -> io::Result<()> {
    let name = ifr_name(ifname).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let sock = open_socket()?;
    let mut ifr = libc::ifreq {
        ifr_name: name,
        ifr_ifru: libc::__c_anonymous_ifr_ifru { ifru_flags: 0 },
    };
    // SAFETY: `sock` is open for both calls; `ifr` is a live, properly laid
    // out `struct ifreq` with a NUL-terminated name, which the kernel
    // copies in and (SIOCGIFFLAGS) writes the flags back into.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCGIFFLAGS, &raw mut ifr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS just filled `ifru_flags`, the union member read.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    // IFF_UP is 1; the flags are a C short.
    ifr.ifr_ifru.ifru_flags = flags & !1;
    // SAFETY: as above; SIOCSIFFLAGS only reads `ifr`.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCSIFFLAGS, &raw mut ifr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The name as `ifr_name`: at most IFNAMSIZ - 1 bytes, NUL padded.
fn ifr_name(ifname: &str) -> Option<[libc::c_char; IFNAMSIZ]> {
    let bytes = ifname.as_bytes();
    if bytes.is_empty() || bytes.len() >= IFNAMSIZ || bytes.contains(&0) {
        return None;
    }
    let mut name = [0 as libc::c_char; IFNAMSIZ];
    for (d, s) in name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        let mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
        let mut data = [0u8; MAX_ADDR_LEN];
        data[..6].copy_from_slice(&mac);
        assert_eq!(perm_addr_from_reply(6, &data), Some(mac));
        // lo, veth, bridge: addr_len 6, never set.
        assert_eq!(perm_addr_from_reply(6, &[0; MAX_ADDR_LEN]), None);
        // ipip and sit have 4-byte addresses, tun in L3 mode none at all.
        assert_eq!(perm_addr_from_reply(4, &data), None);
        assert_eq!(perm_addr_from_reply(0, &data), None);
        // InfiniBand: 20 bytes, not a MAC.
        assert_eq!(perm_addr_from_reply(20, &data), None);
    }

    #[test]
    fn names() {
        let n = ifr_name("eth0").unwrap();
        assert_eq!(
            &n[..5],
            &[b'e' as libc::c_char, b't' as _, b'h' as _, b'0' as _, 0]
        );
        assert!(ifr_name("fifteen-bytes-x").is_some());
        assert!(ifr_name("sixteen-bytes-xx").is_none());
        assert!(ifr_name("").is_none());
        assert!(ifr_name("a\0b").is_none());
    }

    #[test]
    fn invalid_name_is_an_error_naming_the_link() {
        let e = permanent_addr("sixteen-bytes-xx").unwrap_err();
        assert!(matches!(e, EthtoolError::Name { .. }), "{e:?}");
        assert!(e.to_string().contains("sixteen-bytes-xx"), "{e}");
    }
}
