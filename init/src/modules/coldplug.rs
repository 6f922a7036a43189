//! Coldplug: load the modules for the devices that are already present.
//!
//! Every device the kernel knows that a module could drive has a
//! `modalias` attribute (Documentation/ABI/testing/sysfs-bus-*); matching
//! it against modules.alias is exactly what udev's `kmod load
//! $env{MODALIAS}` does. Loading a bus driver creates new devices
//! (virtio_pci brings virtioN, which needs virtio_net), so the scan repeats
//! until a round finds no new device.
//!
//! The devices are found where sysfs lists them by subsystem, each bus's
//! `devices` directory and each class (Documentation/admin-guide/
//! sysfs-rules.rst: "/sys/bus/<bus>/devices" and "/sys/class/<class>"
//! hold symlinks to every device of that subsystem), as libudev's
//! enumerator does, not by walking the `/sys/devices` tree: most of its
//! directories are attributes and groups (`power`, `queues`, `mq`, a
//! NIC's per-queue directories), and under TCG the walk cost 50–110 ms
//! each time (a boot walks it 5 times: 0.4–0.5 s of CPU in the first
//! `make bench-run` sample, before etcd could start).

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use super::index::{ModuleIndex, Resolved};
use super::load::{LoadError, Loader};

/// A device with a modalias and no driver bound yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Path below the sysfs root, e.g. `devices/pci0000:00/0000:00:02.0`.
    pub path: PathBuf,
    pub modalias: String,
}

/// Lists unbound devices with a modalias, from every subsystem, or only
/// from `only` (`bus/<bus>` or `class/<class>`, below the sysfs root):
/// each device once, by its path under `<sys_root>/devices`. Devices that
/// already have a driver are skipped, since no module could do more for
/// them.
pub fn scan_in(sys_root: &Path, only: Option<&[&str]>) -> Vec<Device> {
    let listings: Vec<PathBuf> = match only {
        Some(names) => names.iter().map(|n| listing(&sys_root.join(n))).collect(),
        // And `devices/system`, where a bus's own root device lives
        // outside its listing: the `cpu` root carries the modalias of the
        // CPU's features (drivers/base/cpu.c, `print_cpu_modalias`), which
        // the crypto and CRC modules match.
        None => ["bus", "class"]
            .iter()
            .flat_map(|kind| children(&sys_root.join(kind)))
            .map(|dir| listing(&dir))
            .chain([sys_root.join("devices/system")])
            .collect(),
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for entry in listings.iter().flat_map(|l| children(l)) {
        let Some(path) = device_path(sys_root, &entry) else {
            continue;
        };
        if !seen.insert(path.clone()) {
            continue;
        }
        let dir = sys_root.join(&path);
        // Most entries have no modalias (memory blocks, ttys, block
        // devices): one failed open each.
        let Ok(alias) = std::fs::read_to_string(dir.join("modalias")) else {
            continue;
        };
        let alias = alias.trim();
        if alias.is_empty() || dir.join("driver").exists() {
            continue;
        }
        out.push(Device {
            path,
            modalias: alias.to_string(),
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Where a subsystem lists its devices: a bus in its `devices`
/// directory, a class in its own.
fn listing(subsystem: &Path) -> PathBuf {
    let devices = subsystem.join("devices");
    match subsystem.parent().and_then(|p| p.file_name()) {
        Some(kind) if kind == "bus" => devices,
        _ => subsystem.to_path_buf(),
    }
}

/// The entries of `dir` (none when it cannot be read).
fn children(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// The device a listing entry stands for, as a path below `sys_root`: the
/// target of its symlink (relative, as sysfs makes them, or absolute),
/// resolved without touching the filesystem again; the entry itself when
/// it is a directory.
fn device_path(sys_root: &Path, entry: &Path) -> Option<PathBuf> {
    let full = match std::fs::read_link(entry) {
        Ok(target) => normalize(&entry.parent()?.join(target)),
        Err(_) => entry.to_path_buf(),
    };
    full.strip_prefix(sys_root).ok().map(Path::to_path_buf)
}

/// `path` with its `.` and `..` components resolved lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Which devices a coldplug pass handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// What the links need ([`early`]), listed only where such devices
    /// are ([`EARLY_SUBSYSTEMS`]).
    Early,
    /// Every device.
    All,
}

/// Where the early pass looks: the subsystems of the devices
/// [`early`] takes (a later pass lists every subsystem).
pub const EARLY_SUBSYSTEMS: &[&str] = &["bus/pci", "bus/virtio", "bus/acpi", "class/input"];

/// Whether `dev` is needed before the links phase: network controllers
/// and what leads to them, and the power button. Everything else
/// (storage controllers and their disks, USB, sound, sensors...) loads in
/// a second pass after the links phase, alongside the config phase: on the q35 machine the AHCI
/// controller alone held the boot 0.35 s (ahci's module init waits for
/// its ports' asynchronous link probes, kernel/module/main.c
/// `do_init_module` → `async_synchronize_full`).
///
/// By modalias (the kernel's `file2alias.c` formats):
/// - `pci:` of base class 02 (network controller, PCI Code and ID
///   Assignment spec §1.3), or of the virtio vendor 1AF4: virtio_pci is
///   the transport of the virtio NIC;
/// - `virtio:` devices: the NIC itself (its disk and RNG come along, they
///   cost little and a virtio config disk is then there at once);
/// - `acpi:` power button (LNXPWRBN, PNP0C0C) and `input:` (evdev), so the
///   power button is watched from the start.
pub fn early(dev: &Device) -> bool {
    let m = dev.modalias.as_str();
    if let Some(pci) = m.strip_prefix("pci:") {
        let class = pci.find("bc").map(|i| &pci[i + 2..]);
        return pci.starts_with("v00001AF4") || class.is_some_and(|c| c.starts_with("02"));
    }
    if let Some(acpi) = m.strip_prefix("acpi:") {
        return acpi.starts_with("LNXPWRBN") || acpi.starts_with("PNP0C0C");
    }
    m.starts_with("virtio:") || m.starts_with("input:")
}

#[derive(Debug, Default)]
pub struct Report {
    /// Modules inserted, in load order.
    pub loaded: Vec<String>,
    /// Devices for which the image carries no module.
    pub no_module: Vec<Device>,
    /// Modules that failed to load, with the device that wanted them.
    pub failed: Vec<(Device, LoadError)>,
    pub rounds: usize,
    /// Time spent walking sysfs (every round, and the last that found
    /// nothing new).
    pub scanning: std::time::Duration,
}

/// Coldplug state kept across passes: devices already handled and modules
/// that failed, so a later pass (hotplug) neither redoes the work nor
/// repeats the same error every few seconds.
#[derive(Debug, Default)]
pub struct Coldplug {
    seen: HashSet<PathBuf>,
    failed_modules: HashSet<String>,
}

impl Coldplug {
    /// Handles the devices not seen before that `pass` takes, repeating
    /// until a round finds no new one (at most `max_rounds`); the others
    /// stay for a later pass.
    pub fn run(
        &mut self,
        sys_root: &Path,
        index: &ModuleIndex,
        loader: &mut Loader,
        max_rounds: usize,
        pass: Pass,
    ) -> Report {
        let (wanted, only): (fn(&Device) -> bool, _) = match pass {
            Pass::Early => (early, Some(EARLY_SUBSYSTEMS)),
            Pass::All => (|_| true, None),
        };
        let mut report = Report::default();
        while report.rounds < max_rounds {
            let t = std::time::Instant::now();
            let found = scan_in(sys_root, only);
            report.scanning += t.elapsed();
            let fresh: Vec<Device> = found
                .into_iter()
                .filter(|d| wanted(d) && self.seen.insert(d.path.clone()))
                .collect();
            if fresh.is_empty() {
                break;
            }
            report.rounds += 1;
            for dev in fresh {
                match index.resolve(&dev.modalias) {
                    Resolved::Modules(mods) => {
                        for m in mods {
                            if self.failed_modules.contains(&m) {
                                continue;
                            }
                            match loader.load(&m) {
                                Ok(new) => report.loaded.extend(new),
                                Err(e) => {
                                    self.failed_modules.insert(m);
                                    report.failed.push((dev.clone(), e));
                                }
                            }
                        }
                    }
                    Resolved::Builtin(_) => {}
                    Resolved::Unknown => report.no_module.push(dev),
                }
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn early_devices() {
        let cases = [
            // virtio-net and virtio-blk on PCI: virtio_pci either way.
            (
                "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
                true,
            ),
            (
                "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
                true,
            ),
            // Intel X710 (class 0200), Mellanox ConnectX (0200), an
            // Ethernet controller of any vendor.
            (
                "pci:v00008086d00001572sv00008086sd00000000bc02sc00i00",
                true,
            ),
            (
                "pci:v000015B3d00001017sv000015B3sd00000020bc02sc00i00",
                true,
            ),
            // AHCI (0106), NVMe (0108), USB xHCI (0C03), SMBus (0C05),
            // LPC bridge (0601): later.
            (
                "pci:v00008086d00002922sv00001AF5sd00001100bc01sc06i01",
                false,
            ),
            (
                "pci:v0000144Dd0000A808sv0000144Dsd0000A801bc01sc08i02",
                false,
            ),
            (
                "pci:v00008086d00001E31sv00008086sd00000000bc0Csc03i30",
                false,
            ),
            (
                "pci:v00008086d00002930sv00001AF5sd00001100bc0Csc05i00",
                false,
            ),
            (
                "pci:v00008086d00002918sv00001AF5sd00001100bc06sc01i00",
                false,
            ),
            ("virtio:d00000001v00001AF4", true),
            ("virtio:d00000002v00001AF4", true),
            ("acpi:LNXPWRBN:", true),
            ("acpi:PNP0C0C:", true),
            ("acpi:PNP0A08:PNP0A03:", false),
            ("input:b0019v0000p0001e0000-e0,1,k74,ramlsfw", true),
            ("usb:v0BDAp8153d3000dc00dsc00dp00icFFiscFFip00in00", false),
            ("scsi:t-0x00", false),
            ("platform:pcspkr", false),
        ];
        for (alias, want) in cases {
            let dev = Device {
                path: PathBuf::from("devices/x"),
                modalias: alias.into(),
            };
            assert_eq!(early(&dev), want, "{alias}");
        }
    }

    /// A device at `rel` (below the sysfs root), listed by `subsystem`
    /// (`bus/<bus>` or `class/<class>`) as sysfs does: a relative symlink
    /// named after it. `alias`: its modalias attribute, if any.
    fn dev(root: &Path, rel: &str, subsystem: &str, alias: Option<&str>, bound: bool) {
        let d = root.join(rel);
        fs::create_dir_all(&d).unwrap();
        if let Some(alias) = alias {
            fs::write(d.join("modalias"), format!("{alias}\n")).unwrap();
        }
        if bound {
            fs::create_dir_all(root.join("bus/pci/drivers/x")).unwrap();
            std::os::unix::fs::symlink("../../../bus/pci/drivers/x", d.join("driver")).unwrap();
        }
        let listing = match subsystem {
            "none" => return,
            s if s.starts_with("bus/") => root.join(s).join("devices"),
            s => root.join(s),
        };
        fs::create_dir_all(&listing).unwrap();
        let up = "../".repeat(listing.strip_prefix(root).unwrap().components().count());
        let name = Path::new(rel).file_name().unwrap();
        std::os::unix::fs::symlink(format!("{up}{rel}"), listing.join(name)).unwrap();
    }

    #[test]
    fn scan_finds_unbound_devices_only() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let nic = "devices/pci0000:00/0000:00:02.0";
        let nic_alias = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00";
        let cpu = "devices/system/cpu/cpu0";
        let uinput = "devices/virtual/input/input9";
        let button = "devices/LNXSYSTM:00/LNXPWRBN:00";
        // (path, listed by, modalias, bound, found by scan, by the early pass)
        type Case<'a> = (&'a str, &'a str, Option<&'a str>, bool, bool, bool);
        let cases: &[Case] = &[
            (nic, "bus/pci", Some(nic_alias), false, true, true),
            // A driver is bound already: nothing to load.
            (
                "devices/pci0000:00/0000:00:00.0",
                "bus/pci",
                Some("pci:v00008086d000029C0sv00001AF4sd00001100bc06sc00i00"),
                true,
                false,
                false,
            ),
            (
                button,
                "bus/acpi",
                Some("acpi:LNXPWRBN:"),
                false,
                true,
                true,
            ),
            // Not a subsystem the early pass lists (it would not take them
            // anyway), but the later pass does.
            (
                cpu,
                "bus/cpu",
                Some("cpu:type:x86,ven0000fam0006mod003F:feature:,0000"),
                false,
                true,
                false,
            ),
            (
                uinput,
                "class/input",
                Some("input:b0006v0000p0000e0000-e0,1,kramlsfw"),
                false,
                true,
                true,
            ),
            // A bus's root device, in no listing.
            (
                "devices/system/cpu",
                "none",
                Some("cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0001"),
                false,
                true,
                false,
            ),
            // Memory blocks, ttys: no modalias.
            (
                "devices/system/memory/memory0",
                "bus/memory",
                None,
                false,
                false,
                false,
            ),
            (
                "devices/virtual/tty/tty0",
                "class/tty",
                None,
                false,
                false,
                false,
            ),
            // An empty modalias.
            (
                "devices/platform/x",
                "bus/platform",
                Some(""),
                false,
                false,
                false,
            ),
        ];
        for (rel, subsystem, alias, bound, ..) in cases {
            dev(root, rel, subsystem, *alias, *bound);
        }
        // Listed twice (a class device of a bus device): found once.
        std::os::unix::fs::symlink(
            "../../devices/LNXSYSTM:00/LNXPWRBN:00",
            root.join("class/input/LNXPWRBN:00"),
        )
        .unwrap();
        // A symlink loop like sysfs's `subsystem` links is not followed.
        std::os::unix::fs::symlink("..", root.join(nic).join("subsystem")).unwrap();
        // A device in no subsystem's listing is not found.
        fs::create_dir_all(root.join("devices/orphan")).unwrap();
        fs::write(root.join("devices/orphan/modalias"), "pci:v1\n").unwrap();

        let all = scan_in(root, None);
        let early = scan_in(root, Some(EARLY_SUBSYSTEMS));
        let paths = |v: &[Device]| -> Vec<String> {
            v.iter().map(|d| d.path.display().to_string()).collect()
        };
        let want = |pick: fn(&Case) -> bool| {
            let mut w: Vec<String> = cases
                .iter()
                .filter(|c| pick(c))
                .map(|c| c.0.to_string())
                .collect();
            w.sort();
            w
        };
        assert_eq!(paths(&all), want(|c| c.4));
        assert_eq!(paths(&early), want(|c| c.5));
        let got_nic = all.iter().find(|d| d.path == Path::new(nic)).unwrap();
        assert_eq!(got_nic.modalias, nic_alias);
    }

    #[test]
    fn normalize_resolves_listing_symlinks() {
        let cases = [
            (
                "/s/bus/pci/devices/0000:00:02.0",
                "../../../devices/pci0000:00/0000:00:02.0",
                Some("devices/pci0000:00/0000:00:02.0"),
            ),
            (
                "/s/class/input/input3",
                "../../devices/platform/i8042/serio0/input/input3",
                Some("devices/platform/i8042/serio0/input/input3"),
            ),
            (
                "/s/class/input/input4",
                "/s/devices/virtual/input/input4",
                Some("devices/virtual/input/input4"),
            ),
            // Outside the sysfs root: not a device.
            ("/s/class/x/y", "../../../elsewhere", None),
        ];
        for (entry, target, want) in cases {
            let entry = Path::new(entry);
            let full = normalize(&entry.parent().unwrap().join(target));
            let got = full
                .strip_prefix("/s")
                .ok()
                .map(|p| p.display().to_string());
            assert_eq!(got.as_deref(), want, "{entry:?} -> {target}");
        }
    }

    #[test]
    fn matching_fixture_devices_against_the_index() {
        let idx = crate::modules::index::tests::fixture();
        let cases: &[(&str, &str)] = &[
            (
                "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
                "modules [\"virtio_pci\"]",
            ),
            ("virtio:d00000001v00001AF4", "modules [\"virtio_net\"]"),
            ("acpi:LNXPWRBN:", "builtin"),
            (
                "pci:v00008086d000029C0sv00001AF4sd00001100bc06sc00i00",
                "none",
            ),
        ];
        for (alias, want) in cases {
            let got = match idx.resolve(alias) {
                Resolved::Modules(m) => format!("modules {m:?}"),
                Resolved::Builtin(_) => "builtin".into(),
                Resolved::Unknown => "none".into(),
            };
            assert_eq!(&got, want, "{alias}");
        }
    }
}
