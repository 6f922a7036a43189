//! Choosing QEMU's accelerator: TCG (always works, slow), KVM (fast, but on
//! some hosts `/dev/kvm` opens fine and guests still hang), or `Auto`, which
//! proves KVM with a short real boot before trusting it.

use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::vm::VmConfig;

/// How long the `Auto` probe lets a KVM guest take to print `Linux version`.
pub const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(8);

/// The line a booting kernel prints once its console is up.
const KERNEL_BANNER: &str = "Linux version";

/// QEMU accelerator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Accel {
    /// `-accel tcg`: software emulation.
    #[default]
    Tcg,
    /// `-accel kvm -cpu host`.
    Kvm,
    /// KVM if a probe boot of the same kernel shows it working, else TCG.
    Auto,
}

impl Accel {
    /// QEMU arguments for a concrete accelerator. `Auto` renders as QEMU's own
    /// fallback list (`-accel kvm -accel tcg`), which cannot detect a hanging
    /// KVM; [`crate::vm::VmConfig::spawn`] resolves `Auto` by probing first.
    pub fn args(self) -> Vec<String> {
        let v: &[&str] = match self {
            Accel::Tcg => &["-accel", "tcg"],
            Accel::Kvm => &["-accel", "kvm", "-cpu", "host"],
            Accel::Auto => &["-accel", "kvm", "-accel", "tcg"],
        };
        v.iter().map(|s| s.to_string()).collect()
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
            Accel::Auto => "auto",
        })
    }
}

/// An unknown accelerator name.
#[derive(Debug, thiserror::Error)]
#[error("unknown accelerator {name:?} (expected tcg, kvm or auto)")]
pub struct ParseAccelError {
    pub name: String,
}

impl FromStr for Accel {
    type Err = ParseAccelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcg" => Ok(Accel::Tcg),
            "kvm" => Ok(Accel::Kvm),
            "auto" => Ok(Accel::Auto),
            _ => Err(ParseAccelError { name: s.into() }),
        }
    }
}

/// Outcome of [`probe_kvm`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmProbe {
    /// The kernel printed its banner under KVM after `elapsed`.
    Usable { elapsed: Duration },
    /// KVM is not usable here; `reason` says why (for logs).
    Unusable { reason: String },
}

/// The accelerator to actually use, and why, after resolving `Auto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `Tcg` or `Kvm`, never `Auto`.
    pub accel: Accel,
    /// Set when `Auto` fell back to TCG (the probe's reason) or chose KVM.
    pub note: Option<String>,
}

/// Checks that `/dev/kvm` can be opened read-write.
pub fn kvm_openable() -> Result<(), String> {
    let dev = Path::new("/dev/kvm");
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .map(drop)
        .map_err(|e| format!("cannot open {}: {e}", dev.display()))
}

/// Boots `kernel` under KVM (no initrd, serial to a temporary file) for at
/// most [`KVM_PROBE_TIMEOUT`] and reports whether it printed `Linux version`.
/// Nothing is cached: every call probes again.
pub fn probe_kvm(kernel: &Path) -> KvmProbe {
    probe_kvm_with(kernel, KVM_PROBE_TIMEOUT)
}

/// [`probe_kvm`] with an explicit timeout.
pub fn probe_kvm_with(kernel: &Path, timeout: Duration) -> KvmProbe {
    let unusable = |reason: String| KvmProbe::Unusable { reason };
    if let Err(reason) = kvm_openable() {
        return unusable(reason);
    }
    let dir = match ProbeDir::create() {
        Ok(d) => d,
        Err(e) => return unusable(format!("creating a probe directory: {e}")),
    };
    let config = VmConfig {
        kernel: Some(kernel.to_owned()),
        append: "console=ttyS0 panic=-1 loglevel=4".into(),
        memory_mib: 256,
        accel: Accel::Kvm,
        serial_log: dir.0.join("probe.console.log"),
        no_reboot: true,
        ..VmConfig::default()
    };
    let start = Instant::now();
    let vm = match config.spawn() {
        Ok(vm) => vm,
        Err(e) => return unusable(format!("starting QEMU with KVM: {e}")),
    };
    let result = match vm.wait_for_line(KERNEL_BANNER, timeout) {
        Ok(_) => KvmProbe::Usable {
            elapsed: start.elapsed(),
        },
        Err(e) => unusable(format!(
            "a KVM probe boot of {} did not print {KERNEL_BANNER:?}: {e}",
            kernel.display()
        )),
    };
    drop(vm);
    result
}

/// Resolves `Auto` for a VM that boots `kernel` (without a kernel there is
/// nothing to probe with, so `Auto` only checks that `/dev/kvm` opens).
pub fn resolve(accel: Accel, kernel: Option<&Path>) -> Resolved {
    match accel {
        Accel::Tcg | Accel::Kvm => Resolved { accel, note: None },
        Accel::Auto => {
            let probe = match kernel {
                Some(k) => probe_kvm(k),
                None => match kvm_openable() {
                    Ok(()) => KvmProbe::Usable {
                        elapsed: Duration::ZERO,
                    },
                    Err(reason) => KvmProbe::Unusable { reason },
                },
            };
            match probe {
                KvmProbe::Usable { elapsed } => Resolved {
                    accel: Accel::Kvm,
                    note: Some(format!("KVM probe boot succeeded in {elapsed:.1?}")),
                },
                KvmProbe::Unusable { reason } => Resolved {
                    accel: Accel::Tcg,
                    note: Some(format!("falling back to TCG: {reason}")),
                },
            }
        }
    }
}

/// A unique temporary directory, removed on drop.
struct ProbeDir(PathBuf);

impl ProbeDir {
    fn create() -> std::io::Result<ProbeDir> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "keel-kvm-probe-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)?;
        Ok(ProbeDir(path))
    }
}

impl Drop for ProbeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_parses() {
        assert_eq!(Accel::Tcg.args(), ["-accel", "tcg"]);
        assert_eq!(Accel::Kvm.args(), ["-accel", "kvm", "-cpu", "host"]);
        assert_eq!(Accel::default(), Accel::Tcg);
        for a in [Accel::Tcg, Accel::Kvm, Accel::Auto] {
            assert_eq!(a.to_string().parse::<Accel>().unwrap(), a);
        }
        assert_eq!("KVM".parse::<Accel>().unwrap(), Accel::Kvm);
        let err = "hvf".parse::<Accel>().unwrap_err();
        assert!(err.to_string().contains("hvf"));
    }

    #[test]
    fn concrete_accels_resolve_to_themselves() {
        for a in [Accel::Tcg, Accel::Kvm] {
            assert_eq!(
                resolve(a, Some(Path::new("/nonexistent"))),
                Resolved {
                    accel: a,
                    note: None
                }
            );
        }
    }

    #[test]
    fn probe_with_missing_kernel_is_unusable() {
        // Whether or not /dev/kvm opens, a kernel that does not exist cannot
        // print a banner.
        match probe_kvm_with(Path::new("/nonexistent/vmlinux"), Duration::from_secs(3)) {
            KvmProbe::Unusable { reason } => assert!(!reason.is_empty()),
            other => panic!("{other:?}"),
        }
    }
}
