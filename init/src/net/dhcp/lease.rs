//! Typed option values (RFC 2132, RFC 3442) and the [`Lease`] an ACK grants.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::codec::{opt, Packet};

/// A classless static route (RFC 3442). `gateway` 0.0.0.0 means on-link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub destination: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

/// What a DHCPACK grants, ready to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    /// From option 1; the classful default when the server sent none.
    pub prefix: u8,
    /// Option 3, in preference order. Empty when option 121 is present:
    /// RFC 3442 says a client that receives both "MUST ignore the Router
    /// option", the default route (if any) is then among `routes`.
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub hostname: Option<String>,
    pub broadcast: Option<Ipv4Addr>,
    /// Option 26; values below 68 (RFC 2132 5.1's minimum) are dropped.
    pub mtu: Option<u16>,
    pub routes: Vec<Route>,
    /// Option 51. 0xffffffff ("infinity", RFC 2132 9.2) is kept as that
    /// many seconds (136 years), which no timer reaches.
    pub lease_time: Duration,
    /// Option 58, or 0.5 * lease (RFC 2131 4.4.5).
    pub t1: Duration,
    /// Option 59, or 0.875 * lease (RFC 2131 4.4.5).
    pub t2: Duration,
    pub server_id: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("DHCP option {code} ({name}) is missing")]
    Missing { code: u8, name: &'static str },
    #[error("DHCP option {code} ({name}) is malformed: {reason}")]
    Malformed {
        code: u8,
        name: &'static str,
        reason: String,
    },
    #[error("DHCP offered address {address} is not usable")]
    BadAddress { address: Ipv4Addr },
}

fn name(code: u8) -> &'static str {
    match code {
        opt::SUBNET_MASK => "subnet mask",
        opt::ROUTER => "router",
        opt::DNS => "domain name server",
        opt::HOSTNAME => "host name",
        opt::DOMAIN_NAME => "domain name",
        opt::MTU => "interface MTU",
        opt::BROADCAST => "broadcast address",
        opt::LEASE_TIME => "IP address lease time",
        opt::SERVER_ID => "server identifier",
        opt::MESSAGE => "message",
        opt::RENEWAL_TIME => "renewal (T1) time",
        opt::REBINDING_TIME => "rebinding (T2) time",
        opt::CLASSLESS_ROUTES => "classless static route",
        _ => "option",
    }
}

fn malformed(code: u8, reason: impl Into<String>) -> LeaseError {
    LeaseError::Malformed {
        code,
        name: name(code),
        reason: reason.into(),
    }
}

/// A list of addresses: a non-empty multiple of 4 bytes.
pub fn addresses(p: &Packet, code: u8) -> Result<Vec<Ipv4Addr>, LeaseError> {
    match p.option(code) {
        None => Ok(Vec::new()),
        Some(d) if d.is_empty() || d.len() % 4 != 0 => Err(malformed(
            code,
            format!("{} bytes, not a multiple of 4", d.len()),
        )),
        Some(d) => Ok(d
            .chunks_exact(4)
            .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
            .collect()),
    }
}

/// Exactly one address.
pub fn single_address(p: &Packet, code: u8) -> Result<Option<Ipv4Addr>, LeaseError> {
    let a = addresses(p, code)?;
    match a.len() {
        0 => Ok(None),
        1 => Ok(Some(a[0])),
        n => Err(malformed(code, format!("{n} addresses, want one"))),
    }
}

pub fn seconds(p: &Packet, code: u8) -> Result<Option<Duration>, LeaseError> {
    p.option(code)
        .map(|d| {
            <[u8; 4]>::try_from(d)
                .map(|b| Duration::from_secs(u32::from_be_bytes(b).into()))
                .map_err(|_| malformed(code, format!("{} bytes, want 4", d.len())))
        })
        .transpose()
}

/// Text options (12, 15): NVT ASCII; some servers NUL-terminate it, which
/// RFC 2132 section 2 says clients should tolerate.
pub fn text(p: &Packet, code: u8) -> Result<Option<String>, LeaseError> {
    let Some(d) = p.option(code) else {
        return Ok(None);
    };
    let d = d.split(|b| *b == 0).next().unwrap_or_default();
    let s = std::str::from_utf8(d)
        .ok()
        .filter(|s| s.is_ascii())
        .ok_or_else(|| malformed(code, "not ASCII"))?;
    let s = s.trim().trim_end_matches('.');
    Ok((!s.is_empty()).then(|| s.to_string()))
}

/// RFC 3442 section 3: each route is a prefix width (0..=32), the
/// significant octets of the destination (ceil(width / 8)), the router.
pub fn classless_routes(d: &[u8]) -> Result<Vec<Route>, LeaseError> {
    let code = opt::CLASSLESS_ROUTES;
    let mut out = Vec::new();
    let mut i = 0;
    while i < d.len() {
        let prefix = d[i];
        if prefix > 32 {
            return Err(malformed(code, format!("prefix width {prefix} > 32")));
        }
        let n = usize::from(prefix).div_ceil(8);
        let end = i + 1 + n + 4;
        let bytes = d
            .get(i + 1..end)
            .ok_or_else(|| malformed(code, format!("route at byte {i} is truncated")))?;
        let mut dest = [0u8; 4];
        dest[..n].copy_from_slice(&bytes[..n]);
        // Bits past the width must be zero in a well-formed route; mask
        // them so the kernel does not refuse the route.
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        out.push(Route {
            destination: Ipv4Addr::from(u32::from_be_bytes(dest) & mask),
            prefix,
            gateway: Ipv4Addr::new(bytes[n], bytes[n + 1], bytes[n + 2], bytes[n + 3]),
        });
        i = end;
    }
    Ok(out)
}

/// The classful prefix (RFC 791's classes), used when option 1 is absent.
pub fn classful_prefix(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

impl Lease {
    /// Reads a DHCPACK. RFC 2131 table 3 says an ACK to a REQUEST MUST
    /// carry the lease time (51) and server identifier (54); without either
    /// there is nothing safe to renew against, so the ACK is refused rather
    /// than given a made-up lease.
    pub fn from_ack(p: &Packet) -> Result<Lease, LeaseError> {
        let address = p.yiaddr;
        if address.is_unspecified()
            || address.is_broadcast()
            || address.is_loopback()
            || address.is_multicast()
        {
            return Err(LeaseError::BadAddress { address });
        }
        let required = |code| LeaseError::Missing {
            code,
            name: name(code),
        };
        let lease_time = seconds(p, opt::LEASE_TIME)?.ok_or_else(|| required(opt::LEASE_TIME))?;
        let server_id = address_or_missing(p, opt::SERVER_ID)?;
        let prefix = match single_address(p, opt::SUBNET_MASK)? {
            None => classful_prefix(address),
            Some(m) => {
                let m = u32::from(m);
                if m.leading_ones() + m.trailing_zeros() != 32 {
                    return Err(malformed(opt::SUBNET_MASK, "not a contiguous mask"));
                }
                // At most 32.
                u8::try_from(m.leading_ones()).unwrap_or(32)
            }
        };
        let routes = p
            .option(opt::CLASSLESS_ROUTES)
            .map(classless_routes)
            .transpose()?;
        let routers = match routes {
            Some(_) => Vec::new(),
            None => addresses(p, opt::ROUTER)?,
        };
        let mtu = p
            .option(opt::MTU)
            .map(|d| {
                <[u8; 2]>::try_from(d)
                    .map(u16::from_be_bytes)
                    .map_err(|_| malformed(opt::MTU, format!("{} bytes, want 2", d.len())))
            })
            .transpose()?
            .filter(|m| *m >= 68);
        let (t1, t2) = timers(
            lease_time,
            seconds(p, opt::RENEWAL_TIME)?,
            seconds(p, opt::REBINDING_TIME)?,
        );
        Ok(Lease {
            address,
            prefix,
            routers,
            dns: addresses(p, opt::DNS)?,
            domain: text(p, opt::DOMAIN_NAME)?,
            hostname: text(p, opt::HOSTNAME)?,
            broadcast: single_address(p, opt::BROADCAST)?,
            mtu,
            routes: routes.unwrap_or_default(),
            lease_time,
            t1,
            t2,
            server_id,
        })
    }
}

fn address_or_missing(p: &Packet, code: u8) -> Result<Ipv4Addr, LeaseError> {
    single_address(p, code)?.ok_or(LeaseError::Missing {
        code,
        name: name(code),
    })
}

/// T1 and T2 with RFC 2131 4.4.5's defaults. Values that break
/// T1 < T2 < lease are replaced by the defaults, as systemd-networkd does:
/// a renewal after expiry would drop the address for nothing.
fn timers(lease: Duration, t1: Option<Duration>, t2: Option<Duration>) -> (Duration, Duration) {
    if lease.as_secs() == u64::from(u32::MAX) {
        return (lease, lease);
    }
    let d1 = lease / 2;
    let d2 = lease * 7 / 8;
    let t2 = t2.filter(|t| *t < lease).unwrap_or(d2);
    let t1 = t1.filter(|t| *t < t2).unwrap_or(d1.min(t2));
    (t1, t2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::dhcp::codec::MessageType;

    #[test]
    fn classless_routes_rfc3442_examples() {
        // RFC 3442 section 3's encodings: 0/0 via 10.0.0.1 (width 0, no
        // octets), 10.0.0.0/8, 10.17.0.0/16, 10.27.129.0/24, 10.229.0.128/25.
        let d = [
            0, 10, 0, 0, 1, //
            8, 10, 10, 0, 0, 2, //
            16, 10, 17, 10, 0, 0, 3, //
            24, 10, 27, 129, 10, 0, 0, 4, //
            25, 10, 229, 0, 128, 10, 0, 0, 5, //
            32, 192, 168, 1, 1, 0, 0, 0, 0,
        ];
        let r = classless_routes(&d).unwrap();
        let want = [
            ("0.0.0.0", 0, "10.0.0.1"),
            ("10.0.0.0", 8, "10.0.0.2"),
            ("10.17.0.0", 16, "10.0.0.3"),
            ("10.27.129.0", 24, "10.0.0.4"),
            ("10.229.0.128", 25, "10.0.0.5"),
            ("192.168.1.1", 32, "0.0.0.0"),
        ];
        assert_eq!(r.len(), want.len());
        for (got, (d, p, g)) in r.iter().zip(want) {
            assert_eq!(
                (got.destination, got.prefix, got.gateway),
                (d.parse().unwrap(), p, g.parse().unwrap())
            );
        }
        // Stray host bits are masked: 11/7 is 10.0.0.0/7.
        assert_eq!(
            classless_routes(&[7, 11, 1, 1, 1, 1]).unwrap()[0].destination,
            Ipv4Addr::new(10, 0, 0, 0)
        );
        assert!(classless_routes(&[33, 1, 1, 1, 1, 1, 1, 1, 1]).is_err());
        assert!(classless_routes(&[24, 10, 0, 0, 1]).is_err());
    }

    #[test]
    fn timer_defaults() {
        let s = Duration::from_secs;
        assert_eq!(timers(s(3600), None, None), (s(1800), s(3150)));
        assert_eq!(
            timers(s(3600), Some(s(600)), Some(s(1200))),
            (s(600), s(1200))
        );
        // T2 beyond the lease: default T2; T1 beyond T2: default T1.
        assert_eq!(
            timers(s(3600), Some(s(3000)), Some(s(4000))),
            (s(3000), s(3150))
        );
        assert_eq!(timers(s(3600), Some(s(3200)), None), (s(1800), s(3150)));
        let inf = s(u32::MAX.into());
        assert_eq!(timers(inf, Some(s(5)), None), (inf, inf));
    }

    #[test]
    fn option_errors_name_the_option() {
        let mut p = Packet::request(1, [0; 6], MessageType::Ack);
        p.yiaddr = Ipv4Addr::new(10, 0, 0, 5);
        assert_eq!(
            Lease::from_ack(&p).unwrap_err().to_string(),
            "DHCP option 51 (IP address lease time) is missing"
        );
        p.push(opt::LEASE_TIME, vec![0, 0, 14]);
        assert!(matches!(
            Lease::from_ack(&p),
            Err(LeaseError::Malformed { code: 51, .. })
        ));
        p.options.pop();
        p.push(opt::LEASE_TIME, 3600u32.to_be_bytes());
        assert!(matches!(
            Lease::from_ack(&p),
            Err(LeaseError::Missing { code: 54, .. })
        ));
        p.push(opt::SERVER_ID, [10, 0, 0, 1]);
        p.push(opt::DNS, [1, 1, 1]);
        assert!(matches!(
            Lease::from_ack(&p),
            Err(LeaseError::Malformed { code: 6, .. })
        ));
        p.options.pop();
        p.push(opt::SUBNET_MASK, [255, 0, 255, 0]);
        assert!(matches!(
            Lease::from_ack(&p),
            Err(LeaseError::Malformed { code: 1, .. })
        ));
        p.options.pop();
        p.push(opt::MTU, [0, 40]);
        let l = Lease::from_ack(&p).unwrap();
        assert_eq!((l.prefix, l.mtu), (8, None));
        p.yiaddr = Ipv4Addr::UNSPECIFIED;
        assert!(matches!(
            Lease::from_ack(&p),
            Err(LeaseError::BadAddress { .. })
        ));
    }
}
