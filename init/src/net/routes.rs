//! The main routing table as the kernel lists it in `/proc/net/route`
//! (IPv4) and `/proc/net/ipv6_route` (IPv6), for the node API's status.
//! Formats: proc(5) ("/proc/net/route"), and net/ipv6/route.c
//! `ipv6_route_native_seq_show` for IPv6 (destination, prefix, source,
//! source prefix, next hop, metric, refcount, use, flags, device; hex).
//! A read of two small text files beats a netlink dump here: no socket,
//! and a fixture is a file.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// RTF_UP (include/uapi/linux/route.h): the route is usable.
const RTF_UP: u32 = 0x0001;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub link: String,
    pub destination: IpAddr,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    pub metric: u32,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dest = if self.prefix == 0 {
            "default".to_owned()
        } else {
            format!("{}/{}", self.destination, self.prefix)
        };
        write!(f, "{dest}")?;
        if let Some(g) = self.gateway {
            write!(f, " via {g}")?;
        }
        write!(f, " dev {} metric {}", self.link, self.metric)
    }
}

/// Every usable route of both families under `<proc_root>/net`; missing
/// files (no IPv6) give nothing.
pub fn read(proc_root: &Path) -> Vec<Route> {
    let mut out = Vec::new();
    if let Ok(text) = std::fs::read_to_string(proc_root.join("net/route")) {
        out.extend(text.lines().skip(1).filter_map(parse_v4));
    }
    if let Ok(text) = std::fs::read_to_string(proc_root.join("net/ipv6_route")) {
        out.extend(text.lines().filter_map(parse_v6));
    }
    out
}

/// `Iface Destination Gateway Flags RefCnt Use Metric Mask ...`; addresses
/// are the kernel's u32 in host (little-endian) byte order, as hex.
fn parse_v4(line: &str) -> Option<Route> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 8 {
        return None;
    }
    let word = |s: &str| u32::from_str_radix(s, 16).ok();
    let addr = |s: &str| word(s).map(|w| Ipv4Addr::from(w.to_le_bytes()));
    let flags = word(f[3])?;
    if flags & RTF_UP == 0 {
        return None;
    }
    let gateway = addr(f[2])?;
    let mask = word(f[7])?;
    let prefix = u8::try_from(mask.count_ones()).ok()?;
    Some(Route {
        link: f[0].to_owned(),
        destination: IpAddr::V4(addr(f[1])?),
        prefix,
        gateway: (!gateway.is_unspecified()).then_some(IpAddr::V4(gateway)),
        metric: f[6].parse().ok()?,
    })
}

/// `dest plen src splen nexthop metric refcnt use flags dev`, hex. The
/// file lists every table: the kernel's own entries for the node's
/// addresses (a /128 without a gateway), multicast (`ff00::/8`) and
/// loopback's are left out, as `ip -6 route` (main table) leaves them.
fn parse_v6(line: &str) -> Option<Route> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 10 {
        return None;
    }
    let v6 = |s: &str| u128::from_str_radix(s, 16).ok().map(Ipv6Addr::from);
    let flags = u32::from_str_radix(f[8], 16).ok()?;
    if flags & RTF_UP == 0 {
        return None;
    }
    let gateway = v6(f[4])?;
    let destination = v6(f[0])?;
    let prefix = u8::from_str_radix(f[1], 16).ok()?;
    if f[9] == "lo" || destination.is_multicast() || (prefix == 128 && gateway.is_unspecified()) {
        return None;
    }
    Some(Route {
        link: f[9].to_owned(),
        destination: IpAddr::V6(destination),
        prefix,
        gateway: (!gateway.is_unspecified()).then_some(IpAddr::V6(gateway)),
        metric: u32::from_str_radix(f[5], 16).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("net")).unwrap();
        std::fs::write(
            t.path().join("net/route"),
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             eth0\t00000000\t010200C0\t0003\t0\t0\t1024\t00000000\t0\t0\t0\n\
             eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
             eth1\t0000050A\t00000000\t0000\t0\t0\t0\t0000FFFF\t0\t0\t0\n",
        )
        .unwrap();
        std::fs::write(
            t.path().join("net/ipv6_route"),
            "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n\
             00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0\n\
             00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n\
             fe800000000000005054fffe00000012 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001     eth0\n\
             ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001     eth0\n",
        )
        .unwrap();
        let got: Vec<String> = read(t.path()).iter().map(Route::to_string).collect();
        assert_eq!(
            got,
            [
                "default via 192.0.2.1 dev eth0 metric 1024",
                "192.0.2.0/24 dev eth0 metric 0",
                "fd00::/64 dev eth0 metric 256",
                "default via fd00::1 dev eth0 metric 1024",
            ]
        );
        assert!(read(Path::new("/nonexistent")).is_empty());
    }
}
