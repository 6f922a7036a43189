//! What sysfs says about a network link, read from a sysfs root passed in
//! (so unit tests run on fixture trees under `init/tests/fixtures/sysfs/`).
//!
//! Attribute meanings follow the kernel ABI documents
//! `Documentation/ABI/testing/sysfs-class-net` (`type`, `address`,
//! `addr_assign_type`, `dev_port`, `dev_id`, `phys_port_name`, `iflink`) and
//! `Documentation/ABI/testing/sysfs-bus-pci` (`acpi_index`, `index`,
//! `label`, `ari_enabled`, `config`, `/sys/bus/pci/slots`). The device walk
//! mirrors systemd-udevd's `net_id` builtin
//! (`src/udev/udev-builtin-net_id.c`): the net device's `device` link, virtio
//! skipped, then the PCI function.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// `ARPHRD_ETHER` from `<linux/if_arp.h>`: the `type` of Ethernet, Wi-Fi
/// and WWAN links (and of dummy, bond, bridge, veth, VLAN links too).
pub const ARPHRD_ETHER: u16 = 1;

/// Why a link could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    #[error("{path}: no such link")]
    NoLink { path: PathBuf },
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: cannot parse {value:?}")]
    Parse { path: PathBuf, value: String },
}

/// One network link as sysfs shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkFacts {
    /// The kernel's current name (`eth0`).
    pub name: String,
    pub ifindex: u32,
    /// `iflink`: the ifindex of the lower link; differs from `ifindex` for
    /// stacked links (VLAN, veth peer, macvlan).
    pub iflink: Option<u32>,
    /// `type`: the ARPHRD_* hardware type (1 is Ethernet).
    pub arphrd: u16,
    /// `DEVTYPE=` from the link's `uevent` (`wlan`, `wwan`, `vlan`, `bond`,
    /// `bridge`); None for plain Ethernet.
    pub devtype: Option<String>,
    /// Current MAC address, lowercase with colons; None when empty.
    pub address: Option<String>,
    /// `addr_assign_type`: 0 permanent, 1 random, 2 stolen, 3 set by user
    /// space (sysfs-class-net).
    pub addr_assign_type: Option<u8>,
    /// The permanent (burnt-in) address when sysfs shows it: a bond
    /// member's `bonding_slave/perm_hwaddr`, or the current address while
    /// `addr_assign_type` is 0. The link layer may overwrite it with
    /// ethtool's permanent address, which sysfs does not export.
    pub permanent_addr: Option<String>,
    pub dev_port: Option<u32>,
    pub dev_id: Option<u32>,
    /// None when unreadable: most drivers fail the read with EOPNOTSUPP.
    pub phys_port_name: Option<String>,
    /// Link kind seen from sysfs: `bond`, `bridge`, `vlan`, `tun`, or
    /// `stacked` (iflink differs from ifindex); None for a plain link.
    pub kind: Option<String>,
    /// The hardware behind the link; None for virtual links.
    pub device: Option<DeviceFacts>,
}

/// The device behind a link (`<link>/device`) and its parents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFacts {
    /// The device's path below `/sys/devices`
    /// (`pci0000:00/0000:00:03.0/virtio2`).
    pub path: String,
    /// Subsystems from the device up (`["virtio", "pci"]`), for display.
    pub subsystems: Vec<String>,
    /// The driver bound to the device (`virtio_net`), else the PCI
    /// function's.
    pub driver: Option<String>,
    /// Talos's `busPath`: the PCI slot name (`0000:00:03.0`), or the
    /// device's path below `/sys/devices` when it is not directly on PCI.
    pub bus_path: String,
    /// The PCI function in the device's ancestry, if any.
    pub pci: Option<PciFacts>,
    /// The USB interface (`1-1.1:1.0`) when the device sits on USB.
    pub usb_interface: Option<String>,
}

/// A PCI function and what firmware and the kernel say about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PciFacts {
    /// `0000:00:03.0`.
    pub slot_name: String,
    pub domain: u32,
    pub bus: u32,
    pub slot: u32,
    pub function: u32,
    /// True when the link's device is this function, only virtio in
    /// between (udev's `NET_PCI`; onboard names need it).
    pub direct: bool,
    /// `PCI_ID` in Talos's form, `1AF4:1000`.
    pub id: Option<String>,
    pub driver: Option<String>,
    /// ACPI `_DSM` instance number (`acpi_index`).
    pub acpi_index: Option<u64>,
    /// SMBIOS type 41 device instance (`index`).
    pub smbios_index: Option<u64>,
    /// Firmware label (`label`), ACPI or SMBIOS.
    pub label: Option<String>,
    /// `ari_enabled`: slot and function form one 8-bit function number.
    pub ari: bool,
    /// The multifunction bit (0x80) of the header type byte at offset 0x0e
    /// of `config`, when readable.
    pub header_multifunction: Option<bool>,
    /// Other functions of the same device (`0000:03:00.1`), the fallback
    /// when `config` cannot be read.
    pub sibling_functions: Vec<String>,
    /// Every `/sys/bus/pci/slots/<name>/address`, sorted by name.
    pub hotplug_slots: Vec<HotplugSlot>,
}

/// One entry of `/sys/bus/pci/slots`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotplugSlot {
    pub name: String,
    /// `domain:bus:slot`, without the function (`0000:00:03`).
    pub address: String,
}

impl PciFacts {
    /// Multifunction as udev's `is_pci_multifunction` sees it (header type
    /// bit), falling back to sibling functions; with the reason.
    pub fn multifunction(&self) -> (bool, String) {
        match self.header_multifunction {
            Some(true) => (true, "config header type has the multifunction bit".into()),
            Some(false) => (false, "config header type is single-function".into()),
            None if self.sibling_functions.is_empty() => {
                (false, "no config; no sibling functions".into())
            }
            None => (
                true,
                format!(
                    "no config; sibling functions {}",
                    self.sibling_functions.join(", ")
                ),
            ),
        }
    }
}

impl LinkFacts {
    /// Ethernet, backed by a device, and of no link kind: what Talos's
    /// `physical: true` selects.
    pub fn is_physical(&self) -> bool {
        self.arphrd == ARPHRD_ETHER && self.device.is_some() && self.kind.is_none()
    }

    pub fn driver(&self) -> Option<&str> {
        self.device.as_ref()?.driver.as_deref()
    }

    pub fn bus_path(&self) -> Option<&str> {
        Some(self.device.as_ref()?.bus_path.as_str())
    }

    pub fn pci(&self) -> Option<&PciFacts> {
        self.device.as_ref()?.pci.as_ref()
    }

    /// The PCI id of the link's own PCI function (not of a USB host
    /// controller above it).
    pub fn pci_id(&self) -> Option<&str> {
        self.pci().filter(|p| p.direct)?.id.as_deref()
    }
}

/// A PCI NIC with a permanent MAC, for the selector and plan tables.
#[cfg(test)]
pub(crate) fn test_nic(name: &str, mac: &str, bus: &str, id: &str, driver: &str) -> LinkFacts {
    LinkFacts {
        name: name.into(),
        arphrd: ARPHRD_ETHER,
        address: Some(mac.into()),
        addr_assign_type: Some(0),
        permanent_addr: Some(mac.into()),
        device: Some(DeviceFacts {
            driver: Some(driver.into()),
            bus_path: bus.into(),
            pci: Some(PciFacts {
                slot_name: bus.into(),
                direct: true,
                id: Some(id.into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Every link under `<sys_root>/class/net`, in ifindex order. A link that
/// cannot be read (it may vanish while we look) is logged and left out.
pub fn read_links(sys_root: &Path) -> Vec<LinkFacts> {
    let mut links: Vec<LinkFacts> = crate::net::link_names(sys_root)
        .iter()
        .filter_map(|n| match read_link(sys_root, n) {
            Ok(l) => Some(l),
            Err(e) => {
                log::warn!("{e}");
                None
            }
        })
        .collect();
    links.sort_by_key(|l| l.ifindex);
    links
}

/// Reads one link, `<sys_root>/class/net/<name>`.
pub fn read_link(sys_root: &Path, name: &str) -> Result<LinkFacts, SysfsError> {
    let dir = sys_root.join("class/net").join(name);
    if fs::symlink_metadata(&dir).is_err() {
        return Err(SysfsError::NoLink { path: dir });
    }
    let ifindex = required_num(&dir, "ifindex")?;
    let arphrd = required_num(&dir, "type")?;
    let uevent = read_uevent(&dir);
    let devtype = uevent_get(&uevent, "DEVTYPE");
    let address = attr(&dir, "address").filter(|a| !a.is_empty());
    let addr_assign_type = attr(&dir, "addr_assign_type").and_then(|v| v.parse().ok());
    let iflink = attr(&dir, "iflink").and_then(|v| v.parse().ok());
    let permanent_addr = attr(&dir, "bonding_slave/perm_hwaddr")
        .filter(|a| !a.is_empty())
        .or_else(|| {
            // lo and tunnels report 0 with an all-zero address: no MAC.
            address.clone().filter(|a| {
                addr_assign_type == Some(0) && a.bytes().any(|b| b != b'0' && b != b':')
            })
        });
    let kind = if dir.join("bonding").is_dir() || devtype.as_deref() == Some("bond") {
        Some("bond")
    } else if dir.join("bridge").is_dir() || devtype.as_deref() == Some("bridge") {
        Some("bridge")
    } else if devtype.as_deref() == Some("vlan") {
        Some("vlan")
    } else if dir.join("tun_flags").exists() {
        Some("tun")
    } else if iflink.is_some_and(|l| l != ifindex) {
        Some("stacked")
    } else {
        None
    };
    let device = if fs::symlink_metadata(dir.join("device")).is_ok() {
        Some(read_device(sys_root, &dir.join("device"))?)
    } else {
        None
    };
    Ok(LinkFacts {
        name: name.to_owned(),
        ifindex,
        iflink,
        arphrd,
        devtype,
        address: address.map(|a| a.to_ascii_lowercase()),
        addr_assign_type,
        permanent_addr: permanent_addr.map(|a| a.to_ascii_lowercase()),
        dev_port: attr(&dir, "dev_port").and_then(|v| v.parse().ok()),
        dev_id: attr(&dir, "dev_id").and_then(|v| parse_hex_or_dec(&v)),
        phys_port_name: attr(&dir, "phys_port_name").filter(|p| !p.is_empty()),
        kind: kind.map(str::to_owned),
        device,
    })
}

/// Walks from `<link>/device` up to `/sys/devices`.
fn read_device(sys_root: &Path, link: &Path) -> Result<DeviceFacts, SysfsError> {
    let canon = |p: &Path| {
        fs::canonicalize(p).map_err(|source| SysfsError::Read {
            path: p.to_owned(),
            source,
        })
    };
    let devices = canon(&sys_root.join("devices"))?;
    let start = canon(link)?;
    // The chain from the device up, each with its subsystem (the basename
    // of its `subsystem` link), as sd_device_get_parent walks it.
    let mut chain: Vec<(PathBuf, Option<String>)> = Vec::new();
    let mut cur = start.as_path();
    while cur.starts_with(&devices) && cur != devices {
        let subsystem = fs::read_link(cur.join("subsystem"))
            .ok()
            .and_then(|t| Some(t.file_name()?.to_string_lossy().into_owned()));
        chain.push((cur.to_owned(), subsystem));
        match cur.parent() {
            Some(p) => cur = p,
            None => break,
        }
    }
    let rel = |p: &Path| {
        p.strip_prefix(&devices)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let is = |s: &Option<String>, want: &str| s.as_deref() == Some(want);
    // udev's device_skip_virtio: "there can only ever be one virtio bus per
    // parent device, so we can safely ignore any virtio buses".
    let first_non_virtio = chain.iter().position(|(_, s)| !is(s, "virtio"));
    let pci_at = chain.iter().position(|(_, s)| is(s, "pci"));
    let pci = pci_at.map(|i| read_pci(sys_root, &chain[i].0, first_non_virtio == Some(i)));
    // names_usb: the nearest parent in subsystem usb of devtype
    // usb_interface (`1-1.1:1.0`).
    let usb_interface = chain
        .iter()
        .find(|(p, s)| {
            is(s, "usb")
                && uevent_get(&read_uevent(p), "DEVTYPE").as_deref() == Some("usb_interface")
        })
        .and_then(|(p, _)| Some(p.file_name()?.to_string_lossy().into_owned()));
    let driver = driver_of(&start).or_else(|| pci.as_ref().and_then(|p| p.driver.clone()));
    // A USB NIC shares its host controller's PCI function with every other
    // USB device: its own sysfs path is what tells it apart.
    let bus_path = match &pci {
        Some(p) if p.direct => p.slot_name.clone(),
        _ => rel(&start),
    };
    Ok(DeviceFacts {
        path: rel(&start),
        subsystems: chain.iter().filter_map(|(_, s)| s.clone()).collect(),
        driver,
        bus_path,
        pci,
        usb_interface,
    })
}

fn read_pci(sys_root: &Path, dir: &Path, direct: bool) -> PciFacts {
    let slot_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (domain, bus, slot, function) = parse_pci_slot_name(&slot_name).unwrap_or_default();
    let uevent = read_uevent(dir);
    // Talos's pciID is `VENDOR:DEVICE` in upper case hex, as PCI_ID has it;
    // fall back to the `vendor` and `device` files (`0x1af4`).
    let id = uevent_get(&uevent, "PCI_ID")
        .map(|s| s.to_ascii_uppercase())
        .or_else(|| {
            let hex = |n| {
                let v = attr(dir, n)?;
                u16::from_str_radix(v.trim_start_matches("0x"), 16).ok()
            };
            Some(format!("{:04X}:{:04X}", hex("vendor")?, hex("device")?))
        });
    // PCI_HEADER_TYPE is byte 0x0e of config space; bit 7 is multifunction.
    let header_multifunction = fs::read(dir.join("config"))
        .ok()
        .and_then(|c| c.get(0x0e).map(|b| b & 0x80 != 0));
    let prefix = slot_name.rsplit_once('.').map(|(p, _)| format!("{p}."));
    let mut sibling_functions: Vec<String> = match (&prefix, dir.parent()) {
        (Some(prefix), Some(parent)) => fs::read_dir(parent)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(prefix.as_str()) && *n != slot_name)
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    sibling_functions.sort();
    PciFacts {
        domain,
        bus,
        slot,
        function,
        direct,
        id,
        driver: uevent_get(&uevent, "DRIVER").or_else(|| driver_of(dir)),
        acpi_index: attr(dir, "acpi_index").and_then(|v| v.parse().ok()),
        smbios_index: attr(dir, "index").and_then(|v| v.parse().ok()),
        label: attr(dir, "label").filter(|l| !l.is_empty()),
        ari: attr(dir, "ari_enabled").as_deref() == Some("1"),
        header_multifunction,
        sibling_functions,
        hotplug_slots: hotplug_slots(sys_root),
        slot_name,
    }
}

/// `/sys/bus/pci/slots/*/address`, sorted by slot name.
fn hotplug_slots(sys_root: &Path) -> Vec<HotplugSlot> {
    let dir = sys_root.join("bus/pci/slots");
    let mut slots: Vec<HotplugSlot> = fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let address = attr(&e.path(), "address")?;
                    Some(HotplugSlot { name, address })
                })
                .collect()
        })
        .unwrap_or_default();
    slots.sort_by(|a, b| a.name.cmp(&b.name));
    slots
}

/// `DDDD:BB:SS.F` (hex, hex, hex, decimal) as udev's
/// `sscanf("%x:%x:%x.%u")`.
pub fn parse_pci_slot_name(s: &str) -> Option<(u32, u32, u32, u32)> {
    let (dbs, f) = s.rsplit_once('.')?;
    let mut it = dbs.split(':');
    let d = u32::from_str_radix(it.next()?, 16).ok()?;
    let b = u32::from_str_radix(it.next()?, 16).ok()?;
    let sl = u32::from_str_radix(it.next()?, 16).ok()?;
    if it.next().is_some() {
        return None;
    }
    Some((d, b, sl, f.parse().ok()?))
}

/// The driver: `DRIVER=` in the device's uevent, else its `driver` link.
fn driver_of(dir: &Path) -> Option<String> {
    uevent_get(&read_uevent(dir), "DRIVER").or_else(|| {
        let t = fs::read_link(dir.join("driver")).ok()?;
        Some(t.file_name()?.to_string_lossy().into_owned())
    })
}

fn read_uevent(dir: &Path) -> String {
    fs::read_to_string(dir.join("uevent")).unwrap_or_default()
}

fn uevent_get(uevent: &str, key: &str) -> Option<String> {
    uevent.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k == key && !v.is_empty()).then(|| v.to_owned())
    })
}

/// An optional attribute, trimmed. Any read error is "absent": the kernel
/// answers EOPNOTSUPP (`phys_port_name` on most drivers) or EINVAL
/// (`carrier`, `speed` while down) for attributes that exist but say
/// nothing.
fn attr(dir: &Path, name: &str) -> Option<String> {
    fs::read_to_string(dir.join(name))
        .ok()
        .map(|s| s.trim().to_owned())
}

fn required_num<T: std::str::FromStr>(dir: &Path, name: &str) -> Result<T, SysfsError> {
    let path = dir.join(name);
    let text = fs::read_to_string(&path).map_err(|source| SysfsError::Read {
        path: path.clone(),
        source,
    })?;
    text.trim().parse().map_err(|_| SysfsError::Parse {
        path,
        value: text.trim().to_owned(),
    })
}

/// `dev_id` is printed as `0x0`; `dev_port` as decimal.
fn parse_hex_or_dec(v: &str) -> Option<u32> {
    match v.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_slot_names() {
        assert_eq!(parse_pci_slot_name("0000:00:03.0"), Some((0, 0, 3, 0)));
        assert_eq!(
            parse_pci_slot_name("0001:1a:1f.7"),
            Some((1, 0x1a, 0x1f, 7))
        );
        assert_eq!(parse_pci_slot_name("0000:00:03"), None);
        assert_eq!(parse_pci_slot_name("virtio0"), None);
    }

    #[test]
    fn missing_link_is_an_error_with_the_path() {
        let e = read_link(Path::new("/nonexistent"), "eth0").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/class/net/eth0"), "{e}");
    }

    #[test]
    fn uevent_keys() {
        let u = "DRIVER=virtio_net\nMODALIAS=virtio:d00000001v00001AF4\nEMPTY=\n";
        assert_eq!(uevent_get(u, "DRIVER").as_deref(), Some("virtio_net"));
        assert_eq!(uevent_get(u, "EMPTY"), None);
        assert_eq!(uevent_get(u, "PCI_ID"), None);
    }

    #[test]
    fn fixture_facts() {
        let root = |c: &str| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/sysfs")
                .join(c)
        };
        let l = read_link(&root("i440fx-virtio-slot"), "eth0").unwrap();
        assert_eq!(
            (l.driver(), l.bus_path(), l.pci_id(), l.is_physical()),
            (
                Some("virtio_net"),
                Some("0000:00:03.0"),
                Some("1AF4:1000"),
                true
            )
        );
        let d = l.device.as_ref().unwrap();
        assert_eq!(d.subsystems, ["virtio", "pci"]);
        assert_eq!(
            d.pci.as_ref().unwrap().driver.as_deref(),
            Some("virtio-pci")
        );

        let l = read_link(&root("usb-pci"), "eth0").unwrap();
        assert_eq!(l.driver(), Some("r8152"));
        assert_eq!(
            l.bus_path(),
            Some("pci0000:00/0000:00:14.0/usb2/2-3/2-3:1.0")
        );
        assert_eq!(l.pci_id(), None);
        assert_eq!(l.device.unwrap().usb_interface.as_deref(), Some("2-3:1.0"));

        let l = read_link(&root("virtual"), "bond0").unwrap();
        assert_eq!((l.kind.as_deref(), l.is_physical()), (Some("bond"), false));
        assert_eq!(l.permanent_addr, None);
        let l = read_link(&root("virtual"), "lo").unwrap();
        assert_eq!((l.arphrd, l.permanent_addr), (772, None));
        let l = read_link(&root("virtual"), "veth0").unwrap();
        assert_eq!(l.kind.as_deref(), Some("stacked"));
    }

    #[test]
    fn dev_id_hex() {
        assert_eq!(parse_hex_or_dec("0x0"), Some(0));
        assert_eq!(parse_hex_or_dec("0x1f"), Some(31));
        assert_eq!(parse_hex_or_dec("2"), Some(2));
    }
}
