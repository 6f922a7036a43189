//! Network settings from the kernel command line: `ip=`, `vlan=`,
//! `keel.hostname=` and `keel.network.interface.ignore=`.
//!
//! `ip=` follows the kernel's nfsroot syntax
//! (Documentation/admin-guide/nfs/nfsroot.rst):
//!
//! ```text
//! ip=<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:<dns0-ip>:<dns1-ip>:<ntp0-ip>
//! ```
//!
//! plus the extensions dracut (dracut.cmdline(7)) made common and that PXE
//! setups use: a whole value that is just an autoconf keyword (`ip=dhcp`),
//! `ip=<device>:<autoconf>[:<mtu>]`, IPv6 addresses in brackets, a netmask
//! given as a prefix length, one `ip=` per device, and
//! `vlan=<name>:<parent>`. The machine config wins over all of this for the
//! same link; that precedence lives with the code that applies both.
//!
//! Defaults follow the kernel's `ipconfig.c`: an empty `<autoconf>` means
//! `any` unless a client address is given, in which case the address is
//! static (the kernel only autoconfigures when it lacks an address); an
//! empty `<device>` means every device.

use std::net::{IpAddr, Ipv4Addr};

use crate::cmdline::Cmdline;

/// Longest interface name: `IFNAMSIZ` (16) minus the NUL, see netdevice(7).
pub const IFNAME_MAX: usize = 15;

/// How a link gets its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Autoconf {
    /// `off`, `none`: static (or nothing).
    Off,
    /// `on`, `any`: whatever works; Keel runs DHCPv4 (the kernel's `any`
    /// also means BOOTP and RARP, which Keel does not speak).
    Any,
    /// `dhcp`: DHCPv4.
    Dhcp,
    /// `dhcp6` (dracut): DHCPv6.
    Dhcp6,
    /// `auto6` (dracut): IPv6 router advertisements (SLAAC).
    Auto6,
}

impl Autoconf {
    fn parse(s: &str) -> Result<Autoconf, &'static str> {
        Ok(match s {
            "off" | "none" => Autoconf::Off,
            "on" | "any" => Autoconf::Any,
            "dhcp" => Autoconf::Dhcp,
            "dhcp6" => Autoconf::Dhcp6,
            "auto6" => Autoconf::Auto6,
            "bootp" | "rarp" | "both" | "either6" | "link6" | "ibft" | "single-dhcp" => {
                return Err("is not supported by Keel (use dhcp, dhcp6, auto6, any or off)")
            }
            _ => return Err("is not one of off, none, on, any, dhcp, dhcp6, auto6"),
        })
    }

    /// Which address families this touches, for the one-per-device rule.
    fn families(self, client: Option<IpAddr>) -> (bool, bool) {
        match (client, self) {
            (Some(IpAddr::V4(_)), _) | (None, Autoconf::Dhcp) => (true, false),
            (Some(IpAddr::V6(_)), _) | (None, Autoconf::Dhcp6 | Autoconf::Auto6) => (false, true),
            (None, Autoconf::Any | Autoconf::Off) => (true, true),
        }
    }
}

/// One `ip=` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpParam {
    pub client: Option<IpAddr>,
    /// The NFS server: parsed for completeness, Keel has no use for it.
    pub server: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
    /// From `<netmask>`, dotted quad or prefix length. `None` when empty:
    /// see [`IpParam::prefix_or_default`].
    pub prefix: Option<u8>,
    pub hostname: Option<String>,
    /// `None`: every device.
    pub device: Option<String>,
    pub autoconf: Autoconf,
    pub dns: Vec<IpAddr>,
    pub ntp: Option<IpAddr>,
    /// dracut's `ip=<device>:<autoconf>:<mtu>`.
    pub mtu: Option<u32>,
}

impl IpParam {
    fn auto(autoconf: Autoconf) -> IpParam {
        IpParam {
            client: None,
            server: None,
            gateway: None,
            prefix: None,
            hostname: None,
            device: None,
            autoconf,
            dns: Vec::new(),
            ntp: None,
            mtu: None,
        }
    }

    /// The prefix, or the kernel's default when `<netmask>` was empty: the
    /// classful mask of the client address (nfsroot.rst: "determined using
    /// the client IP address class"), /64 for IPv6.
    pub fn prefix_or_default(&self) -> Option<u8> {
        self.prefix.or(match self.client? {
            IpAddr::V4(a) => Some(match a.octets()[0] {
                0..=127 => 8,
                128..=191 => 16,
                _ => 24,
            }),
            IpAddr::V6(_) => Some(64),
        })
    }
}

/// `vlan=<name>:<parent>` (dracut.cmdline(7)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanParam {
    pub name: String,
    pub parent: String,
    /// From the name: `vlan0005`, `vlan5`, `eth0.0005`, `eth0.5` all mean 5,
    /// the four naming schemes of dracut and vconfig(8).
    pub id: u16,
}

/// Everything network-related the command line says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetParams {
    pub ip: Vec<IpParam>,
    pub vlans: Vec<VlanParam>,
    /// `keel.network.interface.ignore=`, in order, without duplicates.
    pub ignore: Vec<String>,
    /// `keel.hostname=`.
    pub hostname: Option<String>,
}

impl NetParams {
    /// The command line's hostname: `keel.hostname=` wins over an `ip=`
    /// hostname (the first one given).
    pub fn hostname(&self) -> Option<&str> {
        self.hostname
            .as_deref()
            .or_else(|| self.ip.iter().find_map(|p| p.hostname.as_deref()))
    }

    /// The `ip=` entries that apply to `link`: those naming it, and those
    /// naming no device.
    pub fn ip_for<'a>(&'a self, link: &'a str) -> impl Iterator<Item = &'a IpParam> + 'a {
        self.ip
            .iter()
            .filter(move |p| p.device.as_deref().is_none_or(|d| d == link))
    }

    pub fn is_ignored(&self, link: &str) -> bool {
        self.ignore.iter().any(|i| i == link)
    }
}

/// The fields of `ip=`, named as nfsroot.rst names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpField {
    Client,
    Server,
    Gateway,
    Netmask,
    Hostname,
    Device,
    Autoconf,
    Dns0,
    Dns1,
    Ntp0,
    Mtu,
}

impl std::fmt::Display for IpField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IpField::Client => "<client-ip>",
            IpField::Server => "<server-ip>",
            IpField::Gateway => "<gw-ip>",
            IpField::Netmask => "<netmask>",
            IpField::Hostname => "<hostname>",
            IpField::Device => "<device>",
            IpField::Autoconf => "<autoconf>",
            IpField::Dns0 => "<dns0-ip>",
            IpField::Dns1 => "<dns1-ip>",
            IpField::Ntp0 => "<ntp0-ip>",
            IpField::Mtu => "<mtu>",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpcfgError {
    #[error("ip={value}: {field} {text:?} {reason}")]
    IpField {
        value: String,
        field: IpField,
        text: String,
        reason: String,
    },
    #[error("ip={value}: {count} fields, at most 10 (client:server:gw:netmask:hostname:device:autoconf:dns0:dns1:ntp0)")]
    IpTooManyFields { value: String, count: usize },
    #[error("ip={value}: unbalanced brackets around an IPv6 address")]
    IpBrackets { value: String },
    #[error("ip={value}: device {device} is already configured for the same address family by ip={earlier}")]
    IpDuplicate {
        value: String,
        device: String,
        earlier: String,
    },
    #[error("vlan={value}: {reason}")]
    Vlan { value: String, reason: String },
    #[error("keel.network.interface.ignore={value}: {reason}")]
    Ignore { value: String, reason: String },
    #[error("keel.hostname={value}: {reason}")]
    Hostname { value: String, reason: String },
}

/// Parses the network parameters; every malformed parameter is reported.
pub fn from_cmdline(cmdline: &Cmdline) -> Result<NetParams, Vec<IpcfgError>> {
    let (params, errors) = parse_lenient(cmdline);
    if errors.is_empty() {
        Ok(params)
    } else {
        Err(errors)
    }
}

/// Like [`from_cmdline`], but keeps what parsed: PID 1 logs the errors and
/// carries on with the good parameters rather than leaving the node offline.
pub fn parse_lenient(cmdline: &Cmdline) -> (NetParams, Vec<IpcfgError>) {
    let mut out = NetParams::default();
    let mut errors = Vec::new();
    // (value, device, v4, v6) of the accepted ip= entries.
    let mut seen: Vec<(String, String, bool, bool)> = Vec::new();
    for value in cmdline.get_all("ip") {
        match parse_ip(value) {
            Ok(p) => {
                let device = p.device.clone().unwrap_or_else(|| "(every device)".into());
                let (v4, v6) = p.autoconf.families(p.client);
                if let Some((earlier, ..)) = seen
                    .iter()
                    .find(|(_, d, e4, e6)| *d == device && ((v4 && *e4) || (v6 && *e6)))
                {
                    errors.push(IpcfgError::IpDuplicate {
                        value: value.into(),
                        device,
                        earlier: earlier.clone(),
                    });
                    continue;
                }
                seen.push((value.into(), device, v4, v6));
                out.ip.push(p);
            }
            Err(e) => errors.push(e),
        }
    }
    for value in cmdline.get_all("vlan") {
        match parse_vlan(value) {
            Ok(v) if out.vlans.iter().any(|o| o.name == v.name) => errors.push(IpcfgError::Vlan {
                value: value.into(),
                reason: format!("VLAN {} is defined twice", v.name),
            }),
            Ok(v) => out.vlans.push(v),
            Err(reason) => errors.push(IpcfgError::Vlan {
                value: value.into(),
                reason,
            }),
        }
    }
    for value in cmdline.get_all("keel.network.interface.ignore") {
        match check_ifname(value) {
            Ok(()) if out.ignore.iter().any(|i| i == value) => {}
            Ok(()) => out.ignore.push(value.into()),
            Err(reason) => errors.push(IpcfgError::Ignore {
                value: value.into(),
                reason: reason.into(),
            }),
        }
    }
    if let Some(value) = cmdline.get("keel.hostname") {
        match super::dns::check_hostname(value) {
            Ok(()) => out.hostname = Some(value.into()),
            Err(reason) => errors.push(IpcfgError::Hostname {
                value: value.into(),
                reason: reason.into(),
            }),
        }
    }
    (out, errors)
}

/// The kernel's `dev_valid_name()` (net/core/dev.c): 1..=15 bytes, not `.`
/// or `..`, no `/`, `:` or whitespace.
pub fn check_ifname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("an interface name cannot be empty")
    } else if name.len() > IFNAME_MAX {
        Err("an interface name has at most 15 bytes (IFNAMSIZ)")
    } else if name == "." || name == ".." {
        Err("an interface name cannot be . or ..")
    } else if name.contains(['/', ':']) || name.contains(char::is_whitespace) {
        Err("an interface name cannot contain /, : or whitespace")
    } else {
        Ok(())
    }
}

/// Splits on `:` outside `[...]`.
fn split_fields(value: &str) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    let (mut start, mut in_brackets) = (0, false);
    for (i, c) in value.char_indices() {
        match c {
            '[' if !in_brackets => in_brackets = true,
            ']' if in_brackets => in_brackets = false,
            '[' | ']' => return None,
            ':' if !in_brackets => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_brackets {
        return None;
    }
    out.push(&value[start..]);
    Some(out)
}

/// An address field: IPv4 bare, IPv6 in brackets (it contains colons).
fn parse_addr(text: &str) -> Result<IpAddr, String> {
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| "is not an IPv6 address".into());
    }
    text.parse::<Ipv4Addr>()
        .map(IpAddr::V4)
        .map_err(|_| "is not an IPv4 address (IPv6 goes in brackets)".into())
}

/// Dotted-quad netmask (contiguous) or prefix length, checked against the
/// client's family when there is one.
fn parse_prefix(text: &str, client: Option<IpAddr>) -> Result<u8, String> {
    let max = match client {
        Some(IpAddr::V4(_)) => 32,
        _ => 128,
    };
    if text.contains('.') {
        if matches!(client, Some(IpAddr::V6(_))) {
            return Err("is a dotted-quad netmask for an IPv6 client".into());
        }
        let m = u32::from(
            text.parse::<Ipv4Addr>()
                .map_err(|_| "is neither a netmask nor a prefix length".to_string())?,
        );
        if m.leading_ones() + m.trailing_zeros() != 32 {
            return Err("is not a contiguous netmask".into());
        }
        // At most 32.
        return Ok(u8::try_from(m.leading_ones()).unwrap_or(32));
    }
    match text.parse::<u8>() {
        Ok(p) if p <= max => Ok(p),
        _ => Err(format!("is not a prefix length 0..={max}")),
    }
}

fn opt<'a>(fields: &[&'a str], i: usize) -> Option<&'a str> {
    fields.get(i).copied().filter(|f| !f.is_empty())
}

/// Parses one `ip=` value.
pub fn parse_ip(value: &str) -> Result<IpParam, IpcfgError> {
    let err = |field, text: &str, reason: String| IpcfgError::IpField {
        value: value.into(),
        field,
        text: text.into(),
        reason,
    };
    // A bare keyword: `ip=dhcp`, `ip=off`. An empty value is "all
    // defaults", which is autoconf `any`.
    if !value.contains(':') && !value.contains('.') && !value.contains('[') {
        if value.is_empty() {
            return Ok(IpParam::auto(Autoconf::Any));
        }
        return Autoconf::parse(value)
            .map(IpParam::auto)
            .map_err(|r| err(IpField::Autoconf, value, r.into()));
    }
    let fields = split_fields(value).ok_or_else(|| IpcfgError::IpBrackets {
        value: value.into(),
    })?;
    // dracut's `<device>:<autoconf>[:<mtu>]`: the first field is a name,
    // not an address, and the second a keyword.
    if (2..=3).contains(&fields.len())
        && !fields[0].is_empty()
        && parse_addr(fields[0]).is_err()
        && Autoconf::parse(fields[1]).is_ok()
    {
        check_ifname(fields[0]).map_err(|r| err(IpField::Device, fields[0], r.into()))?;
        let mut p = IpParam::auto(Autoconf::parse(fields[1]).unwrap_or(Autoconf::Any));
        p.device = Some(fields[0].into());
        if let Some(m) = opt(&fields, 2) {
            // 68 is the IPv4 minimum MTU (RFC 791), 1280 IPv6's (RFC 8200);
            // the kernel refuses less than 68 on any link.
            p.mtu = Some(
                m.parse::<u32>()
                    .ok()
                    .filter(|m| (68..=65535).contains(m))
                    .ok_or_else(|| err(IpField::Mtu, m, "is not an MTU 68..=65535".into()))?,
            );
        }
        return Ok(p);
    }
    if fields.len() > 10 {
        return Err(IpcfgError::IpTooManyFields {
            value: value.into(),
            count: fields.len(),
        });
    }
    let addr = |i: usize, field: IpField| -> Result<Option<IpAddr>, IpcfgError> {
        opt(&fields, i)
            .map(|t| parse_addr(t).map_err(|r| err(field, t, r)))
            .transpose()
    };
    let client = addr(0, IpField::Client)?;
    let server = addr(1, IpField::Server)?;
    let gateway = addr(2, IpField::Gateway)?;
    if let (Some(c), Some(g)) = (client, gateway) {
        if c.is_ipv4() != g.is_ipv4() {
            let t = fields[2];
            return Err(err(
                IpField::Gateway,
                t,
                "is not the client address's family".into(),
            ));
        }
    }
    let prefix = opt(&fields, 3)
        .map(|t| parse_prefix(t, client).map_err(|r| err(IpField::Netmask, t, r)))
        .transpose()?;
    let hostname = opt(&fields, 4)
        .map(|t| {
            super::dns::check_hostname(t)
                .map(|()| t.to_string())
                .map_err(|r| err(IpField::Hostname, t, r.into()))
        })
        .transpose()?;
    let device = opt(&fields, 5)
        .map(|t| {
            check_ifname(t)
                .map(|()| t.to_string())
                .map_err(|r| err(IpField::Device, t, r.into()))
        })
        .transpose()?;
    let autoconf = match opt(&fields, 6) {
        Some(t) => Autoconf::parse(t).map_err(|r| err(IpField::Autoconf, t, r.into()))?,
        None if client.is_some() => Autoconf::Off,
        None => Autoconf::Any,
    };
    let dns = [addr(7, IpField::Dns0)?, addr(8, IpField::Dns1)?]
        .into_iter()
        .flatten()
        .collect();
    let ntp = addr(9, IpField::Ntp0)?;
    Ok(IpParam {
        client,
        server,
        gateway,
        prefix,
        hostname,
        device,
        autoconf,
        dns,
        ntp,
        mtu: None,
    })
}

/// Parses one `vlan=<name>:<parent>` value.
pub fn parse_vlan(value: &str) -> Result<VlanParam, String> {
    let (name, parent) = value
        .split_once(':')
        .ok_or("expected <name>:<parent>, e.g. vlan=eth0.100:eth0")?;
    check_ifname(name).map_err(|r| format!("<name> {name:?}: {r}"))?;
    check_ifname(parent).map_err(|r| format!("<parent> {parent:?}: {r}"))?;
    let digits = name
        .rsplit_once('.')
        .map(|(_, id)| id)
        .or_else(|| name.strip_prefix("vlan"))
        .ok_or_else(|| {
            format!("<name> {name:?}: the VLAN id comes from the name: <parent>.<id> or vlan<id>")
        })?;
    let id = digits
        .parse::<u16>()
        .ok()
        .filter(|id| (1..=4094).contains(id) && digits.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("<name> {name:?}: VLAN id {digits:?} is not 1..=4094 (802.1Q)"))?;
    if name == parent {
        return Err(format!("<name> {name:?} is its own parent"));
    }
    Ok(VlanParam {
        name: name.into(),
        parent: parent.into(),
        id,
    })
}

#[cfg(test)]
#[path = "ipcfg_tests.rs"]
mod tests;
