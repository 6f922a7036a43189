//! The persistent data partition: `/var`, where etcd keeps its data
//! (`/var/lib/etcd`) and Keel its etcd certificates (`/var/lib/keel`).
//!
//! Where `/var` comes from, first match wins:
//! 1. a filesystem labelled `KEEL-VAR` (ext4; ext2/3 mount as ext4):
//!    mounted read-write;
//! 2. a GPT partition named `KEEL-VAR` (sysfs `uevent` `PARTNAME=`, see
//!    Documentation/ABI/testing/sysfs-block) that is empty — no filesystem
//!    recognised and its first [`EMPTY_CHECK_BYTES`] all zero — is
//!    formatted as ext4 labelled `KEEL-VAR`, then mounted. A partition with
//!    anything on it is never formatted: a disk is data until proven empty;
//! 3. otherwise a tmpfs, with a warning that etcd's data will not survive a
//!    reboot (the etcd issue's rejoin path brings such a member back).

use std::io::Read;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

use crate::config::source::label::{
    block_devices, device_path, find_labelled, probe_label, FsType, PROBE_BYTES,
};
use crate::supervise::{Exit, Reaper};

pub const LABEL_VAR: &str = "KEEL-VAR";

/// How much of a partition must be zero for it to count as empty: enough
/// to cover every superblock and partition-table signature blkid knows at
/// the start of a device (ISO 9660 descriptors end below 64 KiB; btrfs's
/// superblock sits at 64 KiB).
pub const EMPTY_CHECK_BYTES: usize = 1 << 20;

/// etcd's WAL pre-allocates 64 MB segments, and the next one in advance
/// (docs/ARCHITECTURE.md, "Facts measured under QEMU": ~160 MB for a data dir): a tmpfs limit, not a reservation.
pub const TMPFS_SIZE: &str = "75%";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarSource {
    /// An existing `KEEL-VAR` filesystem.
    Mount {
        device: PathBuf,
        fstype: FsType,
    },
    /// An empty partition named `KEEL-VAR`, to format first.
    Format {
        device: PathBuf,
    },
    Tmpfs,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot format {device} as ext4: {detail}")]
    Format { device: PathBuf, detail: String },
    #[error("cannot mount {what} on {target}: {source}")]
    Mount {
        what: String,
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot create {path}: {source}")]
    Mkdir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Decides where `/var` comes from (reads sysfs and the devices only).
pub fn choose(sys_root: &Path, dev_root: &Path) -> VarSource {
    if let Some(f) = find_labelled(sys_root, dev_root, &[LABEL_VAR])
        .into_iter()
        .find(|f| f.fstype == FsType::Ext4)
    {
        return VarSource::Mount {
            device: f.device,
            fstype: f.fstype,
        };
    }
    for name in partitions_named(sys_root, LABEL_VAR) {
        let device = device_path(dev_root, &name);
        match is_empty(&device) {
            Ok(true) => return VarSource::Format { device },
            Ok(false) => log::warn!(
                "{}: partition named {LABEL_VAR} holds data but no {LABEL_VAR} ext4 filesystem; not formatting it",
                device.display()
            ),
            Err(e) => log::warn!("{}: cannot read: {e}", device.display()),
        }
    }
    VarSource::Tmpfs
}

/// Whether `/var` is a tmpfs, from `<proc>/self/mountinfo` (proc(5): the
/// mount point is field 5, the filesystem type follows the ` - `
/// separator). The last mount on `/var` counts; none at all reads as a
/// tmpfs (nothing persistent there).
pub fn var_on_tmpfs(proc_root: &Path) -> bool {
    let text = std::fs::read_to_string(proc_root.join("self/mountinfo")).unwrap_or_default();
    text.lines()
        .rev()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let fstype = right.split(' ').next()?;
            (point == "/var").then_some(fstype == "tmpfs")
        })
        .next()
        .unwrap_or(true)
}

/// Block devices whose `uevent` says `PARTNAME=<name>` (GPT partition
/// names), sorted.
pub fn partitions_named(sys_root: &Path, name: &str) -> Vec<String> {
    let class = sys_root.join("class/block");
    block_devices(sys_root)
        .into_iter()
        .filter(|dev| {
            std::fs::read_to_string(class.join(dev).join("uevent"))
                .is_ok_and(|t| t.lines().any(|l| l.strip_prefix("PARTNAME=") == Some(name)))
        })
        .collect()
}

/// True when no filesystem is recognised and the first
/// [`EMPTY_CHECK_BYTES`] (or the whole device, if smaller) are zero.
pub fn is_empty(device: &Path) -> std::io::Result<bool> {
    let mut buf = Vec::with_capacity(EMPTY_CHECK_BYTES);
    std::fs::File::open(device)?
        .take(EMPTY_CHECK_BYTES as u64)
        .read_to_end(&mut buf)?;
    if probe_label(&buf[..buf.len().min(PROBE_BYTES)]).is_some() {
        return Ok(false);
    }
    Ok(buf.iter().all(|b| *b == 0))
}

/// Formats `device` as ext4 labelled `KEEL-VAR` with `mkfs` (the image's
/// `/sbin/mke2fs`), through the reaper (PID 1's only waiter).
pub async fn format(reaper: &Reaper, mkfs: &Path, device: &Path) -> Result<(), StorageError> {
    let err = |detail: String| StorageError::Format {
        device: device.to_owned(),
        detail,
    };
    let mut cmd = std::process::Command::new(mkfs);
    cmd.args(["-q", "-F", "-t", "ext4", "-L", LABEL_VAR])
        .arg(device)
        .stdin(std::process::Stdio::null());
    let child = reaper.spawn(&mut cmd).map_err(|e| err(e.to_string()))?;
    match child.exit.await {
        Ok(Exit::Code(0)) => Ok(()),
        Ok(exit) => Err(err(format!("{} {exit}", mkfs.display()))),
        Err(_) => Err(err("the reaper dropped the exit status".into())),
    }
}

/// Mounts `/var` from `source` at `target` and creates the directories
/// etcd and Keel use. Returns a description for the log.
pub fn mount_var(source: &VarSource, target: &Path) -> Result<String, StorageError> {
    std::fs::create_dir_all(target).map_err(|e| StorageError::Mkdir {
        path: target.to_owned(),
        source: e,
    })?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let what = match source {
        VarSource::Mount { device, .. } | VarSource::Format { device } => {
            mount(
                Some(device.as_path()),
                target,
                Some("ext4"),
                flags,
                None::<&str>,
            )
            .map_err(|e| StorageError::Mount {
                what: device.display().to_string(),
                target: target.to_owned(),
                source: e,
            })?;
            format!("{} (ext4, label {LABEL_VAR})", device.display())
        }
        VarSource::Tmpfs => {
            let data = format!("mode=0755,size={TMPFS_SIZE}");
            mount(
                Some("tmpfs"),
                target,
                Some("tmpfs"),
                flags,
                Some(data.as_str()),
            )
            .map_err(|e| StorageError::Mount {
                what: "tmpfs".into(),
                target: target.to_owned(),
                source: e,
            })?;
            format!("tmpfs (size {TMPFS_SIZE} of RAM)")
        }
    };
    for (dir, mode) in [("lib/etcd", 0o700), ("lib/keel", 0o700)] {
        let path = target.join(dir);
        std::fs::create_dir_all(&path).map_err(|e| StorageError::Mkdir {
            path: path.clone(),
            source: e,
        })?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
    }
    Ok(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(root: &Path, name: &str, uevent: &str, size: u64) {
        let d = root.join("class/block").join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("uevent"), uevent).unwrap();
        std::fs::write(d.join("size"), format!("{size}\n")).unwrap();
    }

    #[test]
    fn partitions_by_gpt_name() {
        let t = tempfile::tempdir().unwrap();
        block(t.path(), "vda", "MAJOR=254\nDEVTYPE=disk\n", 100);
        block(
            t.path(),
            "vda1",
            "MAJOR=254\nDEVTYPE=partition\nPARTN=1\nPARTNAME=KEEL-VAR\n",
            50,
        );
        block(
            t.path(),
            "vda2",
            "DEVTYPE=partition\nPARTNAME=KEEL-VARX\n",
            50,
        );
        assert_eq!(partitions_named(t.path(), LABEL_VAR), ["vda1"]);
        assert!(partitions_named(Path::new("/nonexistent"), LABEL_VAR).is_empty());
    }

    #[test]
    fn choose_table() {
        // Devices are files under a fake /dev: a zeroed partition, one
        // with stray data, and an ext4 filesystem labelled KEEL-VAR.
        let mut ext4 = vec![0u8; 4096];
        ext4[1024 + 0x38..1024 + 0x3a].copy_from_slice(&0xEF53u16.to_le_bytes());
        ext4[1024 + 0x78..1024 + 0x78 + 8].copy_from_slice(b"KEEL-VAR");
        let mut junk = vec![0u8; 8192];
        junk[5000] = 1;
        struct Case {
            what: &'static str,
            devices: Vec<(&'static str, &'static str, Vec<u8>)>,
            want: fn(&Path) -> VarSource,
        }
        let cases = [
            Case {
                what: "labelled filesystem wins",
                devices: vec![
                    ("vda1", "PARTNAME=KEEL-VAR\n", vec![0; 4096]),
                    ("vdb", "DEVTYPE=disk\n", ext4.clone()),
                ],
                want: |d| VarSource::Mount {
                    device: d.join("vdb"),
                    fstype: FsType::Ext4,
                },
            },
            Case {
                what: "empty named partition is formatted",
                devices: vec![("vda1", "PARTNAME=KEEL-VAR\n", vec![0; 4096])],
                want: |d| VarSource::Format {
                    device: d.join("vda1"),
                },
            },
            Case {
                what: "named partition with data is never formatted",
                devices: vec![("vda1", "PARTNAME=KEEL-VAR\n", junk.clone())],
                want: |_| VarSource::Tmpfs,
            },
            Case {
                what: "nothing: tmpfs",
                devices: vec![("vda", "DEVTYPE=disk\n", vec![0; 4096])],
                want: |_| VarSource::Tmpfs,
            },
        ];
        for c in cases {
            let t = tempfile::tempdir().unwrap();
            let dev = t.path().join("dev");
            std::fs::create_dir_all(&dev).unwrap();
            for (name, uevent, bytes) in &c.devices {
                block(t.path(), name, uevent, bytes.len() as u64 / 512);
                std::fs::write(dev.join(name), bytes).unwrap();
            }
            assert_eq!(choose(t.path(), &dev), (c.want)(&dev), "{}", c.what);
        }
    }

    #[test]
    fn var_kind_from_mountinfo() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("self")).unwrap();
        let root = "22 1 0:20 / / rw - rootfs rootfs rw\n";
        // (mountinfo, tmpfs?)
        let cases = [
            (root.to_owned(), true),
            (
                format!("{root}40 22 254:2 / /var rw,relatime - ext4 /dev/vdb rw\n"),
                false,
            ),
            (
                format!("{root}40 22 0:31 / /var rw - tmpfs tmpfs rw,size=75%\n"),
                true,
            ),
            (
                format!("{root}40 22 0:31 / /var/lib rw - ext4 /dev/vdb rw\n"),
                true,
            ),
        ];
        for (text, want) in cases {
            std::fs::write(t.path().join("self/mountinfo"), &text).unwrap();
            assert_eq!(var_on_tmpfs(t.path()), want, "{text}");
        }
    }
}
