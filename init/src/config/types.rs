//! Value types that validate on parse (`#[serde(try_from = ...)]`), so a
//! deserialised config cannot hold a malformed name, address or id.
//!
//! Each `TryFrom` error is a [`ValueError`]; its text becomes the error
//! message, after the YAML path, line and column.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use base64::Engine as _;
use serde::Deserialize;

/// Why a scalar was rejected; each message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("interface name {0:?} is invalid, expected 1 to 15 bytes without `/`, `:` or whitespace, and not `.` or `..`")]
    InterfaceName(String),
    #[error("{0:?} is not a MAC address, expected six hex bytes like `00:50:56:8e:8f:e4`")]
    Mac(String),
    #[error("{0:?} is not a MAC address or glob, expected hex digits, `:` and glob characters (`*`, `?`, `[...]`), e.g. `00:50:*`")]
    MacPattern(String),
    #[error(
        "{0:?} is not a valid glob pattern, expected a non-empty pattern with `*`, `?` or `[...]`"
    )]
    Glob(String),
    #[error("{0:?} is not an IP address, expected IPv4 (`10.0.0.1`) or IPv6 (`fd00::1`)")]
    Ip(String),
    #[error("{0:?} is not a CIDR, expected an address with prefix length like `10.0.0.5/24` or `fd00::5/64`")]
    Cidr(String),
    #[error(
        "{0:?} is not a subnet, expected a CIDR like `10.0.0.0/8`, optionally negated with `!`"
    )]
    Subnet(String),
    #[error("VLAN id {0} is out of range, expected 1 to 4094")]
    VlanId(i64),
    #[error("VIP ttl {0} is out of range, expected 2 to 3600 seconds")]
    VipTtl(u64),
    #[error("{0:?} is not a valid host name, expected dot-separated labels of letters, digits and `-` (1 to 63 bytes each, 253 in all)")]
    DomainName(String),
    #[error("{0:?} is not a valid etcd member name, expected 1 to 253 bytes without whitespace, `=` or `,`")]
    MemberName(String),
    #[error("{0:?} is not a peer URL, expected `http://` or `https://`, a host and a port, like `https://10.5.0.11:2380`")]
    PeerUrl(String),
    #[error("{0:?} is not an endpoint URL, expected `https://` (or `http://`), a host and an optional port, like `https://10.5.0.100:6443`")]
    EndpointUrl(String),
    #[error(
        "invalid base64 ({0}), expected base64-encoded PEM as in Talos (`base64 -w0 file.pem`)"
    )]
    Base64(String),
    #[error("base64 decodes to something that is not a PEM {0} block, expected base64-encoded PEM as in Talos (`base64 -w0 file.pem`)")]
    NotPem(&'static str),
}

/// A Linux network interface name, checked as the kernel's
/// `dev_valid_name()` does: 1 to 15 bytes (`IFNAMSIZ` minus the NUL), no
/// `/`, `:` or whitespace, and not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct InterfaceName(String);

impl InterfaceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InterfaceName {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        let ok = !s.is_empty()
            && s.len() <= 15
            && s != "."
            && s != ".."
            && !s
                .chars()
                .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace());
        if ok {
            Ok(InterfaceName(s))
        } else {
            Err(ValueError::InterfaceName(s))
        }
    }
}

impl FromStr for InterfaceName {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        Self::try_from(s.to_owned())
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A 48-bit MAC address; accepts `:` or `-` separators (as Go's
/// `net.ParseMAC`, which Talos uses), displays lowercase with `:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct MacAddress(pub [u8; 6]);

impl FromStr for MacAddress {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let err = || ValueError::Mac(s.to_owned());
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for byte in out.iter_mut() {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddress(out))
    }
}

impl TryFrom<String> for MacAddress {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        s.parse()
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A MAC address or a glob over the lowercase `aa:bb:...` form, as Talos's
/// `deviceSelector.hardwareAddr`/`permanentAddr` take (`00:50:*`). Stored
/// lowercase; a value without glob characters must be a full MAC address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct MacPattern(String);

impl MacPattern {
    /// The pattern, lowercase, to match against a link's `aa:bb:...` address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_glob(&self) -> bool {
        self.0.contains(['*', '?', '['])
    }
}

impl TryFrom<String> for MacPattern {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        let lower = s.to_ascii_lowercase();
        let chars_ok = !lower.is_empty()
            && lower.chars().all(|c| {
                c.is_ascii_hexdigit() || matches!(c, ':' | '*' | '?' | '[' | ']' | '!' | '-')
            });
        if !chars_ok {
            return Err(ValueError::MacPattern(s));
        }
        let pattern = MacPattern(lower);
        if pattern.is_glob() {
            glob::Pattern::new(&pattern.0).map_err(|_| ValueError::MacPattern(s))?;
            Ok(pattern)
        } else {
            let mac: MacAddress = pattern.0.parse().map_err(|_| ValueError::Mac(s))?;
            Ok(MacPattern(mac.to_string()))
        }
    }
}

impl fmt::Display for MacPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A shell-style glob (`*`, `?`, `[...]`), as Talos device selectors take
/// for `busPath`, `pciID` and `driver`. A plain string matches itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Glob(String);

impl Glob {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Glob {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        if s.is_empty() || glob::Pattern::new(&s).is_err() {
            return Err(ValueError::Glob(s));
        }
        Ok(Glob(s))
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IPv4 or IPv6 address (no prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Ip(pub IpAddr);

impl Ip {
    pub fn addr(&self) -> IpAddr {
        self.0
    }
}

impl TryFrom<String> for Ip {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        s.trim().parse().map(Ip).map_err(|_| ValueError::Ip(s))
    }
}

impl fmt::Display for Ip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An address with a prefix length. The host part is kept:
/// `10.0.0.201/8` is the address 10.0.0.201 on a /8, not the network
/// 10.0.0.0/8. Like Talos (`parseIPOrIPPrefix` in machined's address
/// controller), a bare address means a full-length prefix (/32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        (prefix <= max_prefix(addr)).then_some(Cidr { addr, prefix })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// `0.0.0.0/0` or `::/0`.
    pub fn is_default_route(&self) -> bool {
        self.prefix == 0
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

impl FromStr for Cidr {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let err = || ValueError::Cidr(s.to_owned());
        let t = s.trim();
        let (addr, prefix) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| err())?;
        let prefix = match prefix {
            // `u8::from_str` accepts a leading `+`; a prefix is digits only.
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| err())?
            }
            Some(_) => return Err(err()),
            None => max_prefix(addr),
        };
        Cidr::new(addr, prefix).ok_or_else(err)
    }
}

impl TryFrom<String> for Cidr {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        s.parse()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A subnet filter as in Talos's `cluster.etcd.advertisedSubnets` and
/// `listenSubnets`: a CIDR that selects node addresses, or `!CIDR` to
/// exclude them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SubnetFilter {
    pub exclude: bool,
    pub cidr: Cidr,
}

impl TryFrom<String> for SubnetFilter {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        let t = s.trim();
        let (exclude, rest) = match t.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let cidr = rest.parse().map_err(|_| ValueError::Subnet(s.clone()))?;
        Ok(SubnetFilter { exclude, cidr })
    }
}

impl fmt::Display for SubnetFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bang = if self.exclude { "!" } else { "" };
        write!(f, "{bang}{}", self.cidr)
    }
}

/// An 802.1Q VLAN id: 1 to 4094 (0 and 4095 are reserved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "i64")]
pub struct VlanId(u16);

impl VlanId {
    pub fn get(&self) -> u16 {
        self.0
    }
}

impl TryFrom<i64> for VlanId {
    type Error = ValueError;
    fn try_from(n: i64) -> Result<Self, ValueError> {
        match u16::try_from(n) {
            Ok(id @ 1..=4094) => Ok(VlanId(id)),
            _ => Err(ValueError::VlanId(n)),
        }
    }
}

impl fmt::Display for VlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// **Keel extension** `vip.ttl`: the lease time of the VIP election, in
/// seconds. When the node holding the VIP goes away, another control-plane
/// node takes the address over within about this time. Default 5, range 2
/// to 3600 (a shorter lease would flap on a briefly slow etcd). Talos has
/// no such key: its election timing is fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u64")]
pub struct VipTtl(u32);

impl VipTtl {
    pub const DEFAULT_SECONDS: u32 = 5;
    pub const MIN_SECONDS: u32 = 2;
    pub const MAX_SECONDS: u32 = 3600;

    pub fn seconds(&self) -> u32 {
        self.0
    }
}

impl Default for VipTtl {
    fn default() -> Self {
        VipTtl(Self::DEFAULT_SECONDS)
    }
}

impl TryFrom<u64> for VipTtl {
    type Error = ValueError;
    fn try_from(n: u64) -> Result<Self, ValueError> {
        match u32::try_from(n) {
            Ok(s) if (Self::MIN_SECONDS..=Self::MAX_SECONDS).contains(&s) => Ok(VipTtl(s)),
            _ => Err(ValueError::VipTtl(n)),
        }
    }
}

/// A DNS name (host name or search domain): dot-separated RFC 1123 labels
/// of letters, digits and `-`, 1 to 63 bytes each, 253 in all; a trailing
/// dot is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct DomainName(String);

impl DomainName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DomainName {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        let body = s.strip_suffix('.').unwrap_or(&s);
        let ok = !body.is_empty()
            && body.len() <= 253
            && body.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if ok {
            Ok(DomainName(s))
        } else {
            Err(ValueError::DomainName(s))
        }
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An etcd member name. etcd itself allows almost anything, but Keel
/// builds `--initial-cluster name=url,...` from it, so `=`, `,` and
/// whitespace are refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct MemberName(String);

impl MemberName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MemberName {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        let ok = !s.is_empty()
            && s.len() <= 253
            && !s
                .chars()
                .any(|c| c == '=' || c == ',' || c.is_whitespace() || c.is_control());
        if ok {
            Ok(MemberName(s))
        } else {
            Err(ValueError::MemberName(s))
        }
    }
}

impl fmt::Display for MemberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An etcd peer URL: `http` or `https`, a host (IPv4, `[IPv6]` or a DNS
/// name) and an explicit port, e.g. `https://10.5.0.11:2380`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct PeerUrl {
    url: String,
    tls: bool,
    host: String,
    port: u16,
}

impl PeerUrl {
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// `https`.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The host, without brackets for IPv6.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl TryFrom<String> for PeerUrl {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        parse_peer_url(&s).ok_or(ValueError::PeerUrl(s))
    }
}

fn parse_peer_url(s: &str) -> Option<PeerUrl> {
    let (tls, host, port) = parse_url(s)?;
    Some(PeerUrl {
        url: s.to_owned(),
        tls,
        host,
        port: port?,
    })
}

/// `http(s)://host[:port][/]`: whether it is `https`, the host (IPv6
/// without brackets; a DNS name must be a valid [`DomainName`]) and the
/// port if given.
fn parse_url(s: &str) -> Option<(bool, String, Option<u16>)> {
    let (tls, rest) = if let Some(rest) = s.strip_prefix("https://") {
        (true, rest)
    } else {
        (false, s.strip_prefix("http://")?)
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (host, port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let is_ip = host.parse::<std::net::Ipv4Addr>().is_ok();
        if !is_ip {
            DomainName::try_from(host.to_owned()).ok()?;
        }
        (host, port)
    };
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(p.parse::<u16>().ok().filter(|p| *p != 0)?)
        }
    };
    Some((tls, host.to_owned(), port))
}

/// Talos `cluster.controlPlane.endpoint`: the URL the cluster's API is
/// reached at, `https://<host>[:port]` (`talosctl gen config` writes
/// `https://<VIP or name>:6443`). Keel uses its host to find a running
/// etcd member when joining (`<host>:2379`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct EndpointUrl {
    url: String,
    host: String,
}

impl EndpointUrl {
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The host, without brackets for IPv6: an IP address or a DNS name.
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl TryFrom<String> for EndpointUrl {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        match parse_url(&s) {
            Some((_, host, _)) => Ok(EndpointUrl { url: s, host }),
            None => Err(ValueError::EndpointUrl(s)),
        }
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl fmt::Display for PeerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// Decodes Talos-style base64 PEM and checks the armour: the first block's
/// label must satisfy `label_ok`. Whitespace inside the base64 is ignored
/// (YAML folded strings).
fn decode_pem(
    s: &str,
    what: &'static str,
    label_ok: fn(&str) -> bool,
) -> Result<String, ValueError> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| ValueError::Base64(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| ValueError::NotPem(what))?;
    let body = text.trim_start();
    let label = body
        .strip_prefix("-----BEGIN ")
        .and_then(|rest| rest.split_once("-----"))
        .map(|(label, _)| label)
        .ok_or(ValueError::NotPem(what))?;
    if !label_ok(label) || !body.contains(&format!("-----END {label}-----")) {
        return Err(ValueError::NotPem(what));
    }
    Ok(text)
}

/// A certificate, written base64-encoded PEM as Talos does; holds the
/// decoded PEM text.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct CertPem(String);

impl CertPem {
    /// The PEM text (`-----BEGIN CERTIFICATE-----...`).
    pub fn pem(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CertPem {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        decode_pem(&s, "CERTIFICATE", |l| l == "CERTIFICATE").map(CertPem)
    }
}

impl fmt::Debug for CertPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertPem({} bytes)", self.0.len())
    }
}

/// A private key, written base64-encoded PEM as Talos does (any
/// `... PRIVATE KEY` block); holds the decoded PEM text. `Debug` does not
/// print it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct KeyPem(String);

impl KeyPem {
    /// The PEM text (`-----BEGIN ... PRIVATE KEY-----...`).
    pub fn pem(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyPem {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        decode_pem(&s, "PRIVATE KEY", |l| l.ends_with("PRIVATE KEY")).map(KeyPem)
    }
}

impl fmt::Debug for KeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPem(<redacted, {} bytes>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        for ok in [
            "eth0",
            "enp0s31f6",
            "bond0.100",
            "a",
            "123456789012345",
            "lo0",
            "wg-0",
        ] {
            assert!(InterfaceName::try_from(ok.to_owned()).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "1234567890123456",
            "a/b",
            "a b",
            "eth0:1",
            "tab\t",
        ] {
            assert!(InterfaceName::try_from(bad.to_owned()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn macs_and_patterns() {
        let mac: MacAddress = "00:50:56:8E:8F:E4".parse().unwrap();
        assert_eq!(mac.to_string(), "00:50:56:8e:8f:e4");
        assert_eq!("00-50-56-8e-8f-e4".parse::<MacAddress>().unwrap(), mac);
        for bad in [
            "00:50:56:8e:8f",
            "00:50:56:8e:8f:e4:00",
            "0:50:56:8e:8f:e4",
            "zz:50:56:8e:8f:e4",
            "",
        ] {
            assert!(bad.parse::<MacAddress>().is_err(), "{bad}");
        }
        let p = MacPattern::try_from("00:50:*".to_owned()).unwrap();
        assert!(p.is_glob());
        let p = MacPattern::try_from("00:50:56:8E:8F:E4".to_owned()).unwrap();
        assert_eq!(p.as_str(), "00:50:56:8e:8f:e4");
        for bad in ["00:5g:*", "00:50:56", "[", "eth*"] {
            assert!(MacPattern::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.0.0.201/8".parse().unwrap();
        assert_eq!((c.addr().to_string(), c.prefix()), ("10.0.0.201".into(), 8));
        assert_eq!("fd00::1".parse::<Cidr>().unwrap().prefix(), 128);
        assert_eq!("10.0.0.1".parse::<Cidr>().unwrap().prefix(), 32);
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().is_default_route());
        for bad in [
            "10.0.0.1/33",
            "fd00::1/129",
            "10.0.0.256/24",
            "10.0.0.1/",
            "10.0.0.1/+8",
            "10.0.0.1/a",
            "x/8",
            "",
            "10.0.0.1/0008",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let f = SubnetFilter::try_from("!10.0.0.0/8".to_owned()).unwrap();
        assert!(f.exclude);
        assert_eq!(f.to_string(), "!10.0.0.0/8");
    }

    #[test]
    fn vlan_ids_and_ttls() {
        assert!(VlanId::try_from(1).is_ok() && VlanId::try_from(4094).is_ok());
        for bad in [0, 4095, -1, i64::MAX] {
            assert!(VlanId::try_from(bad).is_err(), "{bad}");
        }
        assert_eq!(VipTtl::default().seconds(), 5);
        assert!(VipTtl::try_from(1).is_err() && VipTtl::try_from(2).is_ok());
        assert!(VipTtl::try_from(3600).is_ok() && VipTtl::try_from(u64::MAX).is_err());
    }

    #[test]
    fn names() {
        for ok in ["node1", "node-1.example.com", "node1.", "A1"] {
            assert!(DomainName::try_from(ok.to_owned()).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a..b", "a_b", &"a".repeat(64), "é"] {
            assert!(DomainName::try_from(bad.to_owned()).is_err(), "{bad}");
        }
        assert!(MemberName::try_from("node_1".to_owned()).is_ok());
        for bad in ["", "a=b", "a,b", "a b"] {
            assert!(MemberName::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn peer_urls() {
        let u = PeerUrl::try_from("https://10.5.0.11:2380".to_owned()).unwrap();
        assert!(u.is_tls() && u.host() == "10.5.0.11" && u.port() == 2380);
        let u = PeerUrl::try_from("http://[fd00::1]:2380/".to_owned()).unwrap();
        assert!(!u.is_tls() && u.host() == "fd00::1");
        assert!(PeerUrl::try_from("http://node1.example.com:2380".to_owned()).is_ok());
        for bad in [
            "10.5.0.11:2380",
            "ftp://a:1",
            "https://a",
            "https://a:0",
            "https://a:65536",
            "https://a:2380/x",
            "https://[zz]:1",
            "https://:1",
            "https://a:+1",
        ] {
            assert!(PeerUrl::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn pem() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let key = "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n";
        assert_eq!(CertPem::try_from(b64(cert)).unwrap().pem(), cert);
        assert_eq!(KeyPem::try_from(b64(key)).unwrap().pem(), key);
        assert!(format!("{:?}", KeyPem::try_from(b64(key)).unwrap()).contains("redacted"));
        assert_eq!(
            CertPem::try_from(b64(key)),
            Err(ValueError::NotPem("CERTIFICATE"))
        );
        assert_eq!(
            KeyPem::try_from(b64(cert)),
            Err(ValueError::NotPem("PRIVATE KEY"))
        );
        assert!(matches!(
            CertPem::try_from("not base64!".to_owned()),
            Err(ValueError::Base64(_))
        ));
        assert_eq!(
            CertPem::try_from(b64("hello")),
            Err(ValueError::NotPem("CERTIFICATE"))
        );
        let truncated = "-----BEGIN CERTIFICATE-----\nMIIB\n";
        assert!(CertPem::try_from(b64(truncated)).is_err());
    }
}
