//! Predictable link names, computed the way systemd-udevd's `net_id`
//! builtin does (`src/udev/udev-builtin-net_id.c`, naming scheme v255;
//! `man 7 systemd.net-naming-scheme`), chosen in the order of
//! `NamePolicy=onboard slot path` and then `mac`.
//!
//! Covered: `eno<index>` (ACPI `_DSM` index, else SMBIOS type 41),
//! `ens<slot>` (`/sys/bus/pci/slots`), `enp<bus>s<slot>` with `P<domain>`,
//! `f<function>` and the `n<phys_port_name>`/`d<dev_port>` port suffix,
//! USB behind a PCI host (`enp0s20f0u2`), `enx<mac>`, and the `wl`/`ww`
//! prefixes for Wi-Fi and WWAN. Deliberately left out:
//! - `NAMING_USB_HOST` (v253): a USB NIC on a non-PCI host controller (a
//!   Raspberry Pi's) keeps the MAC name it had before v253;
//! - `NAMING_ZERO_ACPI_INDEX` (v250): an onboard index of 0 is ignored;
//! - SR-IOV VF and representor names, devicetree aliases, s390 (ccw,
//!   `function_id`), vio, xen, bcma, netdevsim, InfiniBand.
//!
//! Kernel names that are not replaced: virtual links (no `device`), stacked
//! links (`iflink != ifindex`) and non-Ethernet links.

use super::sysfs::{LinkFacts, PciFacts, ARPHRD_ETHER};

/// `IFNAMSIZ - 1`: the longest name the kernel accepts for a link. udev
/// builds longer names for alternative names (`ALTIFNAMSIZ`); Keel renames
/// to the chosen name, so a longer candidate is dropped.
pub const MAX_NAME_LEN: usize = 15;

/// The largest onboard index udev trusts (`ONBOARD_16BIT_INDEX_MAX`,
/// `NAMING_16BIT_INDEX`): "Some BIOSes report rubbish indexes that are
/// excessively high".
pub const MAX_ONBOARD_INDEX: u64 = 65535;

/// Every predictable name a link could get, the one chosen, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameCandidates {
    /// `eno…`: udev's `ID_NET_NAME_ONBOARD`.
    pub onboard: Option<String>,
    /// `ens…`: `ID_NET_NAME_SLOT`.
    pub slot: Option<String>,
    /// `enp…`: `ID_NET_NAME_PATH`.
    pub path: Option<String>,
    /// `enx…`: `ID_NET_NAME_MAC`.
    pub mac: Option<String>,
    /// The first of onboard, slot, path, mac; None keeps the kernel name.
    pub chosen: Option<String>,
    /// One line per candidate (and for the choice), for `keel links`.
    pub why: Vec<String>,
}

impl NameCandidates {
    /// The candidate names that exist, in policy order, with their policy.
    pub fn all(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("onboard", &self.onboard),
            ("slot", &self.slot),
            ("path", &self.path),
            ("mac", &self.mac),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.as_deref()?)))
    }
}

/// The name to rename the link to, or None to keep its kernel name.
/// `ifnames` is false for `net.ifnames=0` on the kernel command line.
pub fn chosen_name(facts: &LinkFacts, ifnames: bool) -> Option<String> {
    if !ifnames {
        return None;
    }
    candidates(facts).chosen
}

/// All candidates for a link, with the reasoning.
pub fn candidates(facts: &LinkFacts) -> NameCandidates {
    let mut c = NameCandidates::default();
    let keep = |c: &mut NameCandidates, why: String| {
        c.why.push(format!("{why}: keeps its kernel name"));
    };
    let Some(prefix) = prefix(facts) else {
        keep(
            &mut c,
            format!(
                "type={} is not Ethernet (ARPHRD_ETHER={ARPHRD_ETHER})",
                facts.arphrd
            ),
        );
        return c;
    };
    // udev: "skip stacked devices, like VLANs, ..." (device_is_stacked).
    if let Some(iflink) = facts.iflink.filter(|&l| l != facts.ifindex) {
        keep(
            &mut c,
            format!(
                "stacked link (iflink={iflink} != ifindex={})",
                facts.ifindex
            ),
        );
        return c;
    }
    let Some(device) = &facts.device else {
        let kind = facts.kind.as_deref().unwrap_or("virtual");
        keep(&mut c, format!("{kind} link without a device"));
        return c;
    };

    // Explained last, as it is last in the policy order.
    let mut mac_why = Vec::new();
    c.mac = mac_name(facts, prefix, &mut mac_why);

    // names_pci runs only when the PCI function is the device's direct
    // parent (virtio aside); names_usb passes the USB port specifier as a
    // suffix to the slot and path names of the PCI host controller, and
    // makes no onboard name.
    match (&device.pci, &device.usb_interface) {
        (None, _) => c.why.push(format!(
            "onboard, slot, path: not on PCI (device {}, subsystems {})",
            device.path,
            match device.subsystems.join(" → ") {
                s if s.is_empty() => "unknown".to_string(),
                s => s,
            }
        )),
        (Some(pci), None) if pci.direct => {
            c.onboard = onboard_name(facts, pci, prefix, &mut c.why);
            c.slot = slot_name(facts, pci, prefix, "", &mut c.why);
            c.path = path_name(facts, pci, prefix, "", &mut c.why);
        }
        (Some(pci), None) => c.why.push(format!(
            "onboard, slot, path: another bus between the link and PCI {} ({})",
            pci.slot_name,
            device.subsystems.join(" → ")
        )),
        (Some(pci), Some(intf)) => match usb_specifier(intf) {
            None => c.why.push(format!(
                "onboard, slot, path: cannot parse USB interface {intf:?}"
            )),
            Some(usb) => {
                c.why.push(format!(
                    "onboard: not for a device behind USB (host controller {})",
                    pci.slot_name
                ));
                c.slot = slot_name(facts, pci, prefix, &usb, &mut c.why);
                c.path = path_name(facts, pci, prefix, &usb, &mut c.why);
            }
        },
    }

    c.why.append(&mut mac_why);
    let chosen = [
        ("onboard", &c.onboard),
        ("slot", &c.slot),
        ("path", &c.path),
        ("mac", &c.mac),
    ]
    .into_iter()
    .find_map(|(k, v)| Some((k, v.clone()?)));
    match chosen {
        Some((policy, name)) => {
            c.why.push(format!(
                "chosen: {name} ({policy}; policy order onboard slot path mac)"
            ));
            c.chosen = Some(name);
        }
        None => keep(&mut c, "chosen: no candidate".to_string()),
    }
    c
}

/// One console line per link at boot: the name it gets and the facts
/// selectors see (the full reasoning is `keel links`, or `keel.log=debug`).
pub fn summary_line(facts: &LinkFacts, ifnames: bool) -> String {
    let c = candidates(facts);
    let target = match (&c.chosen, ifnames) {
        (Some(n), true) if *n != facts.name => format!(" → {n}"),
        (Some(n), false) => format!(" (net.ifnames=0; would be {n})"),
        _ => String::new(),
    };
    let others: Vec<String> = c.all().map(|(k, v)| format!("{k} {v}")).collect();
    let dash = |v: Option<&str>| v.unwrap_or("-").to_string();
    format!(
        "link {}{target}: candidates [{}], driver {}, busPath {}, pciID {}, hardwareAddr {}",
        facts.name,
        others.join(", "),
        dash(facts.driver()),
        dash(facts.bus_path()),
        dash(facts.pci_id()),
        dash(facts.address.as_deref()),
    )
}

/// The operator's view of one link for `keel links`: the names, why, and
/// what device selectors would see.
pub fn describe(facts: &LinkFacts, ifnames: bool) -> String {
    use std::fmt::Write;
    let c = candidates(facts);
    let mut out = String::new();
    let dash = |v: Option<&str>| v.unwrap_or("-").to_string();
    let chosen = match (&c.chosen, ifnames) {
        (Some(n), true) => n.clone(),
        (Some(n), false) => format!("{} (net.ifnames=0; would be {n})", facts.name),
        (None, _) => format!("{} (kept)", facts.name),
    };
    let _ = writeln!(out, "{}: {chosen}", facts.name);
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(out, "  {:<14} {v}", format!("{k}:"));
    };
    kv(
        "kernel name",
        format!("{} (ifindex {})", facts.name, facts.ifindex),
    );
    kv("chosen", chosen);
    kv("onboard", dash(c.onboard.as_deref()));
    kv("slot", dash(c.slot.as_deref()));
    kv("path", dash(c.path.as_deref()));
    kv("mac", dash(c.mac.as_deref()));
    kv("driver", dash(facts.driver()));
    kv("busPath", dash(facts.bus_path()));
    kv("pciID", dash(facts.pci_id()));
    kv("hardwareAddr", dash(facts.address.as_deref()));
    kv(
        "permanentAddr",
        match &facts.permanent_addr {
            Some(a) => format!("{a} (from sysfs)"),
            None => "- (not in sysfs; ethtool knows)".to_string(),
        },
    );
    kv("physical", facts.is_physical().to_string());
    if let Some(k) = &facts.kind {
        kv("kind", k.clone());
    }
    if let Some(d) = &facts.device {
        let subs = if d.subsystems.is_empty() {
            String::new()
        } else {
            format!(" ({})", d.subsystems.join(" → "))
        };
        kv("device", format!("{}{subs}", d.path));
    }
    if let Some(label) = facts.pci().and_then(|p| p.label.as_deref()) {
        kv("label", label.to_string());
    }
    let _ = writeln!(out, "  why:");
    for w in &c.why {
        let _ = writeln!(out, "    {w}");
    }
    out
}

/// udev's get_ifname_prefix, Ethernet-typed links only.
fn prefix(facts: &LinkFacts) -> Option<&'static str> {
    if facts.arphrd != ARPHRD_ETHER {
        return None;
    }
    Some(match facts.devtype.as_deref() {
        Some("wlan") => "wl",
        Some("wwan") => "ww",
        _ => "en",
    })
}

/// udev's get_port_specifier: the front panel port name
/// (`phys_port_name`), else a non-zero `dev_port` (several ports on one PCI
/// function).
fn port_specifier(facts: &LinkFacts) -> (String, String) {
    if let Some(p) = &facts.phys_port_name {
        return (format!("n{p}"), format!(", phys_port_name={p}"));
    }
    match facts.dev_port {
        Some(d) if d > 0 => (format!("d{d}"), format!(", dev_port={d}")),
        _ => (String::new(), String::new()),
    }
}

/// `en` + `x` + the 12 hex digits, for permanent addresses only
/// (names_mac: "check for NET_ADDR_PERM, skip random MAC addresses").
fn mac_name(facts: &LinkFacts, prefix: &str, why: &mut Vec<String>) -> Option<String> {
    let what = match facts.addr_assign_type {
        Some(0) => None,
        Some(1) => Some("1 (random)".to_string()),
        Some(2) => Some("2 (stolen from another device)".to_string()),
        Some(3) => Some("3 (set by user space)".to_string()),
        Some(n) => Some(n.to_string()),
        None => Some("unreadable".to_string()),
    };
    if let Some(what) = what {
        why.push(format!("mac: addr_assign_type={what}, no enx name"));
        return None;
    }
    let Some(addr) = &facts.address else {
        why.push("mac: no address".to_string());
        return None;
    };
    let hex: String = addr.split(':').collect();
    if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        why.push(format!("mac: {addr} is not a 6-byte MAC address"));
        return None;
    }
    fit(
        format!("{prefix}x{}", hex.to_ascii_lowercase()),
        format!("mac: addr_assign_type=0 (permanent) {addr}"),
        why,
    )
}

fn onboard_name(
    facts: &LinkFacts,
    pci: &PciFacts,
    prefix: &str,
    why: &mut Vec<String>,
) -> Option<String> {
    // pci_get_onboard_index: ACPI _DSM first, then SMBIOS type 41.
    let (idx, source) = match (pci.acpi_index, pci.smbios_index) {
        (Some(i), _) => (i, format!("acpi_index={i}")),
        (None, Some(i)) => (i, format!("SMBIOS index={i}")),
        (None, None) => {
            why.push(format!(
                "onboard: no acpi_index or SMBIOS index on {}",
                pci.slot_name
            ));
            return None;
        }
    };
    if idx == 0 {
        why.push(format!("onboard: {source} ignored (0)"));
        return None;
    }
    if idx > MAX_ONBOARD_INDEX {
        why.push(format!("onboard: {source} ignored (> {MAX_ONBOARD_INDEX})"));
        return None;
    }
    let (port, port_why) = port_specifier(facts);
    let label = match &pci.label {
        Some(l) => format!(", label {l:?}"),
        None => String::new(),
    };
    fit(
        format!("{prefix}o{idx}{port}"),
        format!("onboard: {source}{port_why}{label}"),
        why,
    )
}

/// `P<domain>` and `f<function>` as udev's get_pci_slot_specifiers builds
/// them, with the reason for the function part.
fn slot_specifiers(pci: &PciFacts) -> (String, Option<String>, String) {
    let domain = if pci.domain > 0 {
        format!("P{}", pci.domain)
    } else {
        String::new()
    };
    // ARI: "interpret the traditional 5-bit slot and 3-bit function number
    // as a single 8-bit function number".
    let func = if pci.ari {
        pci.function + pci.slot * 8
    } else {
        pci.function
    };
    let (multi, multi_why) = pci.multifunction();
    let f = (func > 0 || multi).then(|| format!("f{func}"));
    let f_why = match (&f, func > 0) {
        (Some(_), true) => format!("function {func}"),
        (Some(_), false) => format!("function 0, multifunction: {multi_why}"),
        (None, _) => format!("function 0, single function: {multi_why}"),
    };
    (domain, f, f_why)
}

fn slot_name(
    facts: &LinkFacts,
    pci: &PciFacts,
    prefix: &str,
    usb: &str,
    why: &mut Vec<String>,
) -> Option<String> {
    let dbs = pci
        .slot_name
        .rsplit_once('.')
        .map_or(pci.slot_name.as_str(), |(a, _)| a);
    // pci_get_hotplug_slot_from_address: numeric slot names > 0 whose
    // `address` is the function's `domain:bus:slot`. udev also walks up to
    // parent bridges, but since v255 a slot found on a bridge is not used
    // (NAMING_BRIDGE_NO_SLOT), so only the function's own slot counts.
    let hit = pci.hotplug_slots.iter().find(|s| {
        s.name.parse::<u32>().is_ok_and(|n| n > 0) && pci.slot_name.starts_with(&s.address)
    });
    let Some(hit) = hit else {
        let skipped: Vec<&str> = pci
            .hotplug_slots
            .iter()
            .filter(|s| s.address == dbs)
            .map(|s| s.name.as_str())
            .collect();
        if skipped.is_empty() {
            why.push(format!("slot: no /sys/bus/pci/slots entry for {dbs}"));
        } else {
            why.push(format!(
                "slot: /sys/bus/pci/slots/{} has address {dbs} but is not a number > 0",
                skipped.join(", ")
            ));
        }
        return None;
    };
    let (domain, f, f_why) = slot_specifiers(pci);
    let (port, port_why) = port_specifier(facts);
    fit(
        format!(
            "{prefix}{domain}s{}{}{port}{usb}",
            hit.name,
            f.unwrap_or_default()
        ),
        format!(
            "slot: /sys/bus/pci/slots/{}/address = {}; {f_why}{port_why}",
            hit.name, hit.address
        ),
        why,
    )
}

fn path_name(
    facts: &LinkFacts,
    pci: &PciFacts,
    prefix: &str,
    usb: &str,
    why: &mut Vec<String>,
) -> Option<String> {
    let (domain, f, f_why) = slot_specifiers(pci);
    let (port, port_why) = port_specifier(facts);
    let usb_why = if usb.is_empty() {
        String::new()
    } else {
        format!(", USB {usb}")
    };
    fit(
        format!(
            "{prefix}{domain}p{}s{}{}{port}{usb}",
            pci.bus,
            pci.slot,
            f.unwrap_or_default()
        ),
        format!(
            "path: PCI {}: domain {} bus {} slot {}; {f_why}{port_why}{usb_why}",
            pci.slot_name, pci.domain, pci.bus, pci.slot
        ),
        why,
    )
}

/// udev's get_usb_specifier: `1-1.2:1.0` → `u1u2`; configuration 1 and
/// interface 0 are left out, others add `c<N>` and `i<N>`.
pub fn usb_specifier(interface: &str) -> Option<String> {
    let (_, rest) = interface.split_once('-')?;
    let (ports, cfg_intf) = rest.split_once(':')?;
    let (config, intf) = cfg_intf.split_once('.')?;
    let mut s = format!("u{}", ports.replace('.', "u"));
    if config != "1" {
        s += &format!("c{config}");
    }
    if intf != "0" {
        s += &format!("i{intf}");
    }
    Some(s)
}

/// Keeps a name that fits IFNAMSIZ; explains either way.
fn fit(name: String, reason: String, why: &mut Vec<String>) -> Option<String> {
    if name.len() > MAX_NAME_LEN {
        why.push(format!(
            "{reason} → {name} is {} bytes, longer than {MAX_NAME_LEN}: skipped",
            name.len()
        ));
        None
    } else {
        why.push(format!("{reason} → {name}"));
        Some(name)
    }
}

#[cfg(test)]
#[path = "naming_tests.rs"]
mod tests;
