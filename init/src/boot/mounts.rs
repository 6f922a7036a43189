//! The pseudo filesystems PID 1 mounts before anything else, and the reverse
//! on shutdown.
//!
//! Mounting is idempotent: a target that is already a mount point (listed in
//! `/proc/self/mountinfo`, see proc(5)) is skipped, so Keel can run after
//! another early init (or a kernel with `CONFIG_DEVTMPFS_MOUNT`) without
//! stacking a second mount on top.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

/// One entry of the boot mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MsFlags,
    pub data: &'static str,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// The boot mount table, in mount order (parents before children).
pub fn boot_table() -> Vec<MountSpec> {
    vec![
        MountSpec {
            source: "proc",
            target: "/proc",
            fstype: "proc",
            flags: NOSUID_NODEV_NOEXEC,
            data: "",
        },
        MountSpec {
            source: "sysfs",
            target: "/sys",
            fstype: "sysfs",
            flags: NOSUID_NODEV_NOEXEC,
            data: "",
        },
        MountSpec {
            source: "devtmpfs",
            target: "/dev",
            fstype: "devtmpfs",
            flags: MsFlags::MS_NOSUID,
            data: "mode=0755",
        },
        MountSpec {
            source: "devpts",
            target: "/dev/pts",
            fstype: "devpts",
            flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
            // gid 5 is "tty" on Debian; ptmxmode makes /dev/pts/ptmx usable.
            data: "gid=5,mode=0620,ptmxmode=0666",
        },
        MountSpec {
            source: "shm",
            target: "/dev/shm",
            fstype: "tmpfs",
            flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
            data: "mode=1777",
        },
        MountSpec {
            source: "run",
            target: "/run",
            fstype: "tmpfs",
            flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
            data: "mode=0755",
        },
        MountSpec {
            source: "tmp",
            target: "/tmp",
            fstype: "tmpfs",
            flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
            data: "mode=1777",
        },
        MountSpec {
            source: "cgroup2",
            target: "/sys/fs/cgroup",
            fstype: "cgroup2",
            flags: NOSUID_NODEV_NOEXEC,
            // nsdelegate: the cgroup namespace root is a delegation boundary
            // (Documentation/admin-guide/cgroup-v2.rst).
            data: "nsdelegate",
        },
    ]
}

/// One line of `/proc/self/mountinfo`: only the fields Keel needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// Parses mountinfo text (proc(5): fields 5 = mount point, then after the
/// ` - ` separator: fstype, source). Octal escapes (`\040` for a space) are
/// decoded. Malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            let fstype = r.next()?;
            let source = r.next().unwrap_or("");
            Some(MountInfo {
                mount_point: PathBuf::from(unescape(mount_point)),
                fstype: fstype.to_string(),
                source: unescape(source),
            })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What to do with each entry of the table, given what is mounted already.
pub fn plan<'a>(table: &'a [MountSpec], mounted: &[MountInfo]) -> Vec<(&'a MountSpec, bool)> {
    let present: HashSet<&Path> = mounted.iter().map(|m| m.mount_point.as_path()).collect();
    table
        .iter()
        .map(|spec| (spec, !present.contains(Path::new(spec.target))))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot create mount point {target}: {source}")]
    Mkdir {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot mount {fstype} on {target}: {source}")]
    Mount {
        fstype: String,
        target: String,
        #[source]
        source: nix::Error,
    },
}

/// Result of mounting one entry, for the boot log.
#[derive(Debug)]
pub enum MountOutcome {
    Mounted(&'static str),
    AlreadyMounted(&'static str),
    Failed(MountError),
}

/// Mounts the boot table. /proc is mounted first (if needed) so mountinfo
/// can be read for the idempotence check of everything else.
pub fn mount_boot_table() -> Vec<MountOutcome> {
    let table = boot_table();
    let mut outcomes = Vec::new();
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default();
    let (proc_spec, rest) = table.split_first().expect("table starts with /proc");
    let proc_needed = !mounted.iter().any(|m| m.mount_point == Path::new("/proc"));
    if proc_needed {
        outcomes.push(do_mount(proc_spec));
    } else {
        outcomes.push(MountOutcome::AlreadyMounted(proc_spec.target));
    }
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default();
    for (spec, needed) in plan(rest, &mounted) {
        outcomes.push(if needed {
            do_mount(spec)
        } else {
            MountOutcome::AlreadyMounted(spec.target)
        });
    }
    outcomes
}

fn do_mount(spec: &MountSpec) -> MountOutcome {
    if let Err(source) = std::fs::create_dir_all(spec.target) {
        return MountOutcome::Failed(MountError::Mkdir {
            target: spec.target.into(),
            source,
        });
    }
    let data = (!spec.data.is_empty()).then_some(spec.data);
    match nix::mount::mount(
        Some(spec.source),
        spec.target,
        Some(spec.fstype),
        spec.flags,
        data,
    ) {
        Ok(()) => MountOutcome::Mounted(spec.target),
        Err(source) => MountOutcome::Failed(MountError::Mount {
            fstype: spec.fstype.into(),
            target: spec.target.into(),
            source,
        }),
    }
}

/// Mount points to take down at shutdown: everything except the rootfs and
/// the API filesystems the shutdown path still needs, deepest first
/// (reverse mount order, which mountinfo lists in).
pub fn shutdown_order(mounted: &[MountInfo]) -> Vec<PathBuf> {
    const KEEP: &[&str] = &["/", "/proc", "/sys", "/dev"];
    mounted
        .iter()
        .rev()
        .filter(|m| !KEEP.iter().any(|k| m.mount_point == Path::new(k)))
        .map(|m| m.mount_point.clone())
        .collect()
}

/// Unmounts one mount point; when it is busy, remounts it read-only so the
/// data on it is consistent even though it stays mounted.
pub fn unmount_or_remount_ro(target: &Path) -> Result<&'static str, nix::Error> {
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) => Ok("unmounted"),
        Err(_) => nix::mount::mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map(|()| "remounted read-only"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
1 1 0:2 / / rw - rootfs rootfs rw
22 1 0:20 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
23 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
24 1 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw,size=4k
30 1 0:30 / /mnt/with\\040space rw - vfat /dev/vdb ro
31 1 0:31 / /var rw,relatime shared:5 - ext4 /dev/vda rw
";

    #[test]
    fn mountinfo_parses_fields_and_escapes() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(m.len(), 6);
        assert_eq!(m[1].mount_point, PathBuf::from("/proc"));
        assert_eq!(m[1].fstype, "proc");
        assert_eq!(m[4].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(m[4].source, "/dev/vdb");
        // Optional fields ("shared:5") before the separator do not shift
        // the fstype.
        assert_eq!(m[5].fstype, "ext4");
    }

    #[test]
    fn plan_skips_what_is_mounted() {
        let table = boot_table();
        let mounted = parse_mountinfo(MOUNTINFO);
        let plan: Vec<(&str, bool)> = plan(&table, &mounted)
            .into_iter()
            .map(|(s, needed)| (s.target, needed))
            .collect();
        assert_eq!(
            plan,
            vec![
                ("/proc", false),
                ("/sys", false),
                ("/dev", false),
                ("/dev/pts", true),
                ("/dev/shm", true),
                ("/run", true),
                ("/tmp", true),
                ("/sys/fs/cgroup", true),
            ]
        );
    }

    #[test]
    fn table_mounts_parents_first() {
        let table = boot_table();
        for (i, spec) in table.iter().enumerate() {
            for later in &table[i + 1..] {
                assert!(
                    !Path::new(spec.target).starts_with(later.target),
                    "{} must come after its parent {}",
                    spec.target,
                    later.target
                );
            }
        }
        let targets: Vec<&str> = table.iter().map(|s| s.target).collect();
        for needed in [
            "/proc",
            "/sys",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/run",
            "/tmp",
            "/sys/fs/cgroup",
        ] {
            assert!(targets.contains(&needed), "{needed} missing");
        }
    }

    #[test]
    fn shutdown_keeps_api_filesystems_and_goes_deepest_first() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(
            shutdown_order(&m),
            vec![PathBuf::from("/var"), PathBuf::from("/mnt/with space")]
        );
    }
}
