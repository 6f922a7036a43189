//! Which hostname, nameservers, search domains and hosts lines the node
//! gets, from every source at once: a pure function from the config's host
//! settings, the kernel command line, the DHCP leases and the network plan
//! to the text of `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`.
//! [`super::manager`] writes what this returns.
//!
//! Precedence, Talos's (config over platform/command line over DHCP):
//! - hostname: `machine.network.hostname` (or `HostnameConfig`'s), then
//!   `keel.hostname=`, then an `ip=` hostname, then the first lease's
//!   (option 12) unless that link's `DHCPv4Config` says `ignoreHostname`,
//!   then `HostnameConfig`'s `auto: stable` name ([`stable_hostname`]);
//! - nameservers: the config's, else every `ip=`'s, else every lease's
//!   (option 6), at most three ([`dns::MAX_NAMESERVERS`]);
//! - search domains: the config's, else every lease's domain (option 15);
//!   the hostname's domain first unless `disableSearchDomain`;
//! - hosts: localhost, the hostname on the node's first planned
//!   non-loopback address (else the first lease's), the config's
//!   `extraHostEntries`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::dhcp::Lease;
use super::dns::{self, Hostname, HostnameSource, Resolver};
use super::ipcfg::NetParams;
use super::plan::Plan;
use super::spec::{AutoName, HostSpec};
use super::sysfs::LinkFacts;

/// Everything the files are made from.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// None before a config exists.
    pub config: Option<&'a HostSpec>,
    pub cmdline: &'a NetParams,
    pub leases: &'a BTreeMap<String, Lease>,
    pub plan: &'a Plan,
    /// What `auto: stable` derives the hostname from ([`machine_identity`]).
    pub identity: Option<&'a str>,
}

/// The rendered files and what was left out, for the caller to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub hostname: Option<Hostname>,
    pub resolv_conf: String,
    pub hosts: String,
    /// Candidates skipped (an invalid DHCP hostname, a fourth nameserver).
    pub notes: Vec<String>,
}

impl Files {
    /// `/etc/hostname`'s text, when there is a hostname.
    pub fn hostname_file(&self) -> Option<String> {
        self.hostname.as_ref().map(dns::render_hostname)
    }
}

pub fn render(s: Sources<'_>) -> Files {
    let first_lease = s.leases.values().next();
    let dhcp_hostname = s
        .leases
        .iter()
        .filter(|(link, _)| {
            let ignored = s.plan.link(link).and_then(|l| l.dhcp.as_ref());
            !ignored.is_some_and(|d| d.ignore_hostname)
        })
        .find_map(|(_, l)| l.hostname.as_deref());
    let (mut hostname, mut notes) = dns::choose_hostname(
        s.config.and_then(|c| c.hostname.as_deref()),
        s.cmdline.hostname(),
        dhcp_hostname,
    );
    if hostname.is_none() && s.config.is_some_and(|c| c.auto == AutoName::Stable) {
        hostname = s.identity.map(|id| Hostname {
            fqdn: stable_hostname(id),
            source: HostnameSource::Auto,
        });
    }

    let nameservers = match s.config.filter(|c| !c.nameservers.is_empty()) {
        Some(c) => c.nameservers.clone(),
        None => {
            let cmdline: Vec<IpAddr> = s
                .cmdline
                .ip
                .iter()
                .flat_map(|p| p.dns.iter().copied())
                .collect();
            if cmdline.is_empty() {
                s.leases
                    .values()
                    .flat_map(|l| l.dns.iter().map(|d| IpAddr::V4(*d)))
                    .collect()
            } else {
                cmdline
            }
        }
    };
    let mut search = s
        .config
        .map(|c| c.search_domains.clone())
        .unwrap_or_default();
    if search.is_empty() {
        search = s.leases.values().filter_map(|l| l.domain.clone()).collect();
    }
    let resolver = Resolver {
        nameservers,
        search,
        options: Vec::new(),
    };
    let disable = s.config.is_some_and(|c| c.disable_search_domain);
    let resolver = resolver.with_hostname_domain(hostname.as_ref(), disable);
    let resolv = dns::render_resolv_conf(&resolver);
    notes.extend(resolv.notes);

    let primary = s
        .plan
        .links
        .iter()
        .flat_map(|l| l.addresses.iter().map(|a| a.0))
        .find(|a| !a.is_loopback())
        .or_else(|| first_lease.map(|l| IpAddr::V4(l.address)));
    let extra = s.config.map(|c| c.extra_hosts.as_slice()).unwrap_or(&[]);
    Files {
        hosts: dns::render_hosts(hostname.as_ref(), primary, extra),
        resolv_conf: resolv.text,
        hostname,
        notes,
    }
}

/// What `auto: stable` names the machine after: the SMBIOS product UUID
/// (`<sys>/class/dmi/id/product_uuid`) when firmware gives a real one, else
/// the MAC (permanent if known) of the first physical link by bus path. It
/// survives reinstalls and a `/var` on tmpfs, which Talos's own source (a
/// random node id on its STATE partition) would not in Keel. None when
/// neither exists.
pub fn machine_identity(sys_root: &std::path::Path, links: &[LinkFacts]) -> Option<String> {
    let uuid = std::fs::read_to_string(sys_root.join("class/dmi/id/product_uuid"))
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_default();
    // Firmware that leaves the field unset fills it with zeros, ones or
    // this well-known placeholder.
    let placeholder = uuid.is_empty()
        || uuid.chars().all(|c| c == '0' || c == '-')
        || uuid.chars().all(|c| c == 'f' || c == '-')
        || uuid == "03000200-0400-0500-0006-000700080009";
    if !placeholder {
        return Some(format!("uuid:{uuid}"));
    }
    let mut physical: Vec<&LinkFacts> = links.iter().filter(|l| l.is_physical()).collect();
    physical.sort_by(|a, b| a.bus_path().cmp(&b.bus_path()).then(a.name.cmp(&b.name)));
    physical
        .iter()
        .find_map(|l| l.permanent_addr.clone().or_else(|| l.address.clone()))
        .map(|mac| format!("mac:{mac}"))
}

/// `keel-xxx-yyy` from `identity`, Talos's stable-hostname scheme with
/// Keel's prefix: the first 8 bytes of SHA-256, big-endian, in base 36,
/// characters 2-4 and 5-7.
pub fn stable_hostname(identity: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(identity.as_bytes());
    let mut n = u64::from_be_bytes(hash[..8].try_into().unwrap_or([0; 8]));
    let mut digits = Vec::new();
    while n > 0 {
        let d = u32::try_from(n % 36).unwrap_or(0);
        digits.push(char::from_digit(d, 36).unwrap_or('0'));
        n /= 36;
    }
    // Thirteen base-36 digits hold 64 bits; pad as Talos's encoder does.
    while digits.len() < 13 {
        digits.push('0');
    }
    let b36: String = digits.iter().rev().collect();
    format!("keel-{}-{}", &b36[1..4], &b36[4..7])
}

#[cfg(test)]
#[path = "etc_tests.rs"]
mod tests;
