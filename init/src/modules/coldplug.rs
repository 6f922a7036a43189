//! Coldplug: load the modules for the devices that are already present.
//!
//! Every device the kernel knows has a `modalias` attribute under
//! /sys/devices (Documentation/ABI/testing/sysfs-bus-*); matching it against
//! modules.alias is exactly what udev's `kmod load $env{MODALIAS}` does.
//! Loading a bus driver creates new devices (virtio_pci brings virtioN,
//! which needs virtio_net), so the scan repeats until a round finds no new
//! device.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::index::{ModuleIndex, Resolved};
use super::load::{LoadError, Loader};

/// A device with a modalias and no driver bound yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Path below the sysfs root, e.g. `devices/pci0000:00/0000:00:02.0`.
    pub path: PathBuf,
    pub modalias: String,
}

/// Lists unbound devices with a modalias under `<sys_root>/devices`.
/// Symlinks are not followed (sysfs is full of cycles through them);
/// devices that already have a driver are skipped, since no module could
/// do more for them.
pub fn scan(sys_root: &Path) -> Vec<Device> {
    scan_pruned(sys_root, &[])
}

/// [`scan`] without the subtrees `prune` (paths below the sysfs root).
pub fn scan_pruned(sys_root: &Path, prune: &[&str]) -> Vec<Device> {
    let pruned: Vec<PathBuf> = prune.iter().map(|p| sys_root.join(p)).collect();
    let mut out = Vec::new();
    let mut stack = vec![sys_root.join("devices")];
    while let Some(dir) = stack.pop() {
        if pruned.contains(&dir) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut has_modalias = false;
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() && entry.file_name() == "modalias" {
                has_modalias = true;
            }
        }
        if has_modalias && !dir.join("driver").exists() {
            if let Ok(alias) = std::fs::read_to_string(dir.join("modalias")) {
                let alias = alias.trim();
                if !alias.is_empty() {
                    out.push(Device {
                        path: dir.strip_prefix(sys_root).unwrap_or(&dir).to_path_buf(),
                        modalias: alias.to_string(),
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Which devices a coldplug pass handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// What the links need ([`early`]), without walking the subtrees
    /// where no such device lives ([`EARLY_PRUNE`]).
    Early,
    /// Every device.
    All,
}

/// Not walked by the early pass: software devices (`virtual`: loopback,
/// ttys, block loops...) and `system` (CPUs, memory blocks, NUMA nodes,
/// clock sources), where no network controller or power button lives.
/// Together they are most of sysfs's directories, and the early pass
/// walks it three times (under TCG that was 40% of the phase).
pub const EARLY_PRUNE: &[&str] = &["devices/virtual", "devices/system"];

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
        let (wanted, prune): (fn(&Device) -> bool, &[&str]) = match pass {
            Pass::Early => (early, EARLY_PRUNE),
            Pass::All => (|_| true, &[]),
        };
        let mut report = Report::default();
        while report.rounds < max_rounds {
            let t = std::time::Instant::now();
            let found = scan_pruned(sys_root, prune);
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

    fn dev(root: &Path, rel: &str, alias: &str, bound: bool) {
        let d = root.join(rel);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("modalias"), format!("{alias}\n")).unwrap();
        if bound {
            fs::create_dir_all(root.join("bus/pci/drivers/x")).unwrap();
            std::os::unix::fs::symlink(root.join("bus/pci/drivers/x"), d.join("driver")).unwrap();
        }
    }

    #[test]
    fn scan_finds_unbound_devices_only() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let nic = "devices/pci0000:00/0000:00:02.0";
        dev(
            root,
            nic,
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
            false,
        );
        dev(
            root,
            "devices/pci0000:00/0000:00:00.0",
            "pci:v00008086d000029C0sv00001AF4sd00001100bc06sc00i00",
            true,
        );
        dev(
            root,
            "devices/LNXSYSTM:00/LNXPWRBN:00",
            "acpi:LNXPWRBN:",
            false,
        );
        // A symlink loop like sysfs's `subsystem` links must not be followed.
        std::os::unix::fs::symlink("..", root.join(nic).join("subsystem")).unwrap();
        let got = scan(root);
        let paths: Vec<&str> = got.iter().map(|d| d.path.to_str().unwrap()).collect();
        assert_eq!(paths, vec!["devices/LNXSYSTM:00/LNXPWRBN:00", nic]);
        assert_eq!(
            got[1].modalias,
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"
        );

        // The early pass does not walk the software and system subtrees.
        let cpu = "devices/system/cpu/cpu0";
        let uinput = "devices/virtual/input/input9";
        dev(
            root,
            cpu,
            "cpu:type:x86,ven0000fam0006mod003F:feature:,0000",
            false,
        );
        dev(
            root,
            uinput,
            "input:b0006v0000p0000e0000-e0,1,kramlsfw",
            false,
        );
        let all: Vec<PathBuf> = scan(root).into_iter().map(|d| d.path).collect();
        let early: Vec<PathBuf> = scan_pruned(root, EARLY_PRUNE)
            .into_iter()
            .map(|d| d.path)
            .collect();
        for p in [cpu, uinput] {
            assert!(all.contains(&PathBuf::from(p)), "{p} in {all:?}");
            assert!(!early.contains(&PathBuf::from(p)), "{p} in {early:?}");
        }
        assert!(early.contains(&PathBuf::from(nic)), "{early:?}");
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
