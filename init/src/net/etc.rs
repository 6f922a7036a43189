//! Which hostname, nameservers, search domains and hosts lines the node
//! gets, from every source at once: a pure function from the config's host
//! settings, the kernel command line, the DHCP leases and the network plan
//! to the text of `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`.
//! [`super::manager`] writes what this returns.
//!
//! Precedence, Talos's (config over platform/command line over DHCP):
//! - hostname: `machine.network.hostname`, then `keel.hostname=`, then an
//!   `ip=` hostname, then the first lease's (option 12);
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
use super::dns::{self, Hostname, Resolver};
use super::ipcfg::NetParams;
use super::plan::Plan;
use super::spec::HostSpec;

/// Everything the files are made from.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// None before a config exists.
    pub config: Option<&'a HostSpec>,
    pub cmdline: &'a NetParams,
    pub leases: &'a BTreeMap<String, Lease>,
    pub plan: &'a Plan,
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
    let (hostname, mut notes) = dns::choose_hostname(
        s.config.and_then(|c| c.hostname.as_deref()),
        s.cmdline.hostname(),
        first_lease.and_then(|l| l.hostname.as_deref()),
    );

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

#[cfg(test)]
#[path = "etc_tests.rs"]
mod tests;
