//! The config partition: a filesystem labelled `KEEL-CONFIG` (or Talos's
//! `metal-iso`) holding `config.yaml`.
//!
//! sysfs exposes no filesystem labels (that is blkid's job in userspace),
//! so each block device's superblock is read and parsed here, for the three
//! filesystems a config disk is made with: FAT (`mkfs.vfat -n`), ISO 9660
//! (`genisoimage -V`) and ext4 (`mkfs.ext4 -L`). Labels compare ASCII
//! case-insensitively: FAT tools upper-case labels, Talos's ISO is
//! lower-case `metal-iso`.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::error::SourceError;
use super::MAX_CONFIG_BYTES;

pub const LABEL_KEEL: &str = "KEEL-CONFIG";
pub const LABEL_TALOS: &str = "metal-iso";
/// The labels searched, in order of preference.
pub const LABELS: &[&str] = &[LABEL_KEEL, LABEL_TALOS];
/// The file read from the filesystem's root.
pub const CONFIG_FILE: &str = "config.yaml";

/// Bytes read from the start of a device: the ISO 9660 volume descriptor
/// set starts at 32 KiB; four 2 KiB descriptors are looked at.
pub const PROBE_BYTES: usize = ISO_VD_START + 4 * ISO_SECTOR;

const ISO_SECTOR: usize = 2048;
const ISO_VD_START: usize = 16 * ISO_SECTOR;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Vfat,
    Iso9660,
    Ext4,
}

/// The modules a config disk's mount asks for, by module name: FAT with
/// the codepage and iocharset the image's kernel defaults to (Debian:
/// CONFIG_FAT_DEFAULT_CODEPAGE=437, CONFIG_FAT_DEFAULT_IOCHARSET="ascii";
/// the mount fails without them), and ISO 9660. PID 1 loads them before
/// the disks are searched, in its first module pass: through the kernel's
/// request_module() each was a fork and exec of the modprobe helper
/// (~60 ms each under TCG), and, before the helper passed `async_probe=1`,
/// a wait for libata's port probes in the background pass
/// (`modules::Loader::without_async_wait`).
/// ext4 (a config on KEEL-VAR's filesystem type) is left to
/// request_module: rare, and the largest of them.
pub const CONFIG_MODULES: &[&str] = &["vfat", "nls_cp437", "nls_ascii", "isofs"];

impl FsType {
    /// The name mount(2) takes. ext2 and ext3 share ext4's magic; the ext4
    /// driver mounts them too.
    pub fn mount_type(self) -> &'static str {
        match self {
            FsType::Vfat => "vfat",
            FsType::Iso9660 => "iso9660",
            FsType::Ext4 => "ext4",
        }
    }
}

impl std::fmt::Display for FsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.mount_type())
    }
}

/// A device holding a filesystem with a wanted label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub device: PathBuf,
    pub fstype: FsType,
    pub label: String,
}

impl Found {
    /// `/dev/vdb (vfat, label KEEL-CONFIG)`: the origin shown in logs.
    pub fn origin(&self) -> String {
        format!(
            "{} ({}, label {})",
            self.device.display(),
            self.fstype,
            self.label
        )
    }
}

/// Recognizes a filesystem from the first bytes of a device and returns
/// its label (empty when it has none). ISO 9660 goes first: a hybrid ISO
/// also carries an MBR at offset 0 that could look like a boot sector.
pub fn probe_label(buf: &[u8]) -> Option<(FsType, String)> {
    probe_iso9660(buf)
        .map(|l| (FsType::Iso9660, l))
        .or_else(|| probe_ext4(buf).map(|l| (FsType::Ext4, l)))
        .or_else(|| probe_fat(buf).map(|l| (FsType::Vfat, l)))
}

/// ECMA-119 §8: volume descriptors from sector 16, each with a type byte
/// and the standard identifier `CD001`; the Primary Volume Descriptor
/// (type 1, §8.4) has the 32-byte Volume Identifier at offset 40 (0x28),
/// padded with spaces. Type 255 terminates the set.
fn probe_iso9660(buf: &[u8]) -> Option<String> {
    let mut at = ISO_VD_START;
    while let Some(vd) = buf.get(at..at + ISO_SECTOR) {
        if &vd[1..6] != b"CD001" {
            return None;
        }
        match vd[0] {
            1 => return Some(text(&vd[40..72])),
            255 => return None,
            _ => at += ISO_SECTOR,
        }
    }
    None
}

/// The ext2/3/4 superblock at byte 1024: `s_magic` (0xEF53, little-endian)
/// at 0x38 and the 16-byte `s_volume_name` at 0x78
/// (Documentation/filesystems/ext4/super.rst).
fn probe_ext4(buf: &[u8]) -> Option<String> {
    let sb = buf.get(1024..1024 + 0x88)?;
    if sb[0x38..0x3A] != [0x53, 0xEF] {
        return None;
    }
    Some(text(&sb[0x78..0x88]))
}

/// FAT boot sector (Microsoft "FAT32 File System Specification", 2000):
/// signature 0x55 0xAA at 510; the extended BPB's boot signature 0x29
/// says the volume label and file-system type fields are present, at 0x2B
/// and 0x36 for FAT12/16, at 0x47 and 0x52 for FAT32. "NO NAME" is the
/// spec's spelling of "no label".
fn probe_fat(buf: &[u8]) -> Option<String> {
    let bs = buf.get(..512)?;
    if bs[510..512] != [0x55, 0xAA] {
        return None;
    }
    let label = if bs[0x42] == 0x29 && &bs[0x52..0x5A] == b"FAT32   " {
        &bs[0x47..0x52]
    } else if bs[0x26] == 0x29 && &bs[0x36..0x39] == b"FAT" {
        &bs[0x2B..0x36]
    } else {
        return None;
    };
    let label = text(label);
    Some(if label == "NO NAME" {
        String::new()
    } else {
        label
    })
}

/// A fixed-size label field: cut at the first NUL, trailing spaces removed.
/// Bytes are decoded as UTF-8 with replacement; FAT labels are in the OEM
/// code page, but the labels Keel looks for are ASCII.
fn text(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end])
        .trim_end_matches(' ')
        .to_string()
}

/// Reads the first [`PROBE_BYTES`] of `path` and probes them.
pub fn probe_device(path: &Path) -> std::io::Result<Option<(FsType, String)>> {
    let mut buf = Vec::with_capacity(PROBE_BYTES);
    File::open(path)?
        .take(PROBE_BYTES as u64)
        .read_to_end(&mut buf)?;
    Ok(probe_label(&buf))
}

/// The block devices and partitions under `<sys_root>/class/block` that
/// can hold a filesystem, sorted by name: not `ram*` (the kernel's RAM
/// disks), and with a readable, non-zero `size` (unattached loop devices
/// and empty CD drives have 0).
pub fn block_devices(sys_root: &Path) -> Vec<String> {
    let class = sys_root.join("class/block");
    let Ok(entries) = std::fs::read_dir(&class) else {
        log::debug!("cannot list {}", class.display());
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with("ram"))
        .filter(|n| {
            std::fs::read_to_string(class.join(n).join("size"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .is_some_and(|size| size > 0)
        })
        .collect();
    names.sort();
    names
}

/// The device node of sysfs block device `name`. The kernel writes '/' in
/// a device name as '!' in sysfs (`cciss!c0d0` is /dev/cciss/c0d0).
pub fn device_path(dev_root: &Path, name: &str) -> std::path::PathBuf {
    dev_root.join(name.replace('!', "/"))
}

/// Every block device and partition under `<sys_root>/class/block` whose
/// filesystem carries one of `labels`, opened as `<dev_root>/<name>`;
/// ordered by the labels' order, then by device name.
///
/// Skipped: `ram*` (the kernel's RAM disks), and devices whose `size` is 0
/// or unreadable (unattached loop devices, empty CD drives). Devices that
/// cannot be opened or read are skipped with a debug log: a config disk is
/// looked for again on the next retry.
pub fn find_labelled(sys_root: &Path, dev_root: &Path, labels: &[&str]) -> Vec<Found> {
    let mut found = Vec::new();
    for name in block_devices(sys_root) {
        let device = device_path(dev_root, &name);
        match probe_device(&device) {
            Ok(Some((fstype, label))) => {
                if labels.iter().any(|l| l.eq_ignore_ascii_case(&label)) {
                    found.push(Found {
                        device,
                        fstype,
                        label,
                    });
                }
            }
            Ok(None) => {}
            Err(e) => log::debug!("cannot probe {}: {e}", device.display()),
        }
    }
    let rank = |f: &Found| {
        labels
            .iter()
            .position(|l| l.eq_ignore_ascii_case(&f.label))
            .unwrap_or(usize::MAX)
    };
    found.sort_by_key(rank); // stable: device order kept within a label
    found
}

static MOUNT_SEQ: AtomicU32 = AtomicU32::new(0);

/// A mounted config filesystem; unmounted and its directory removed on
/// drop, so every return path of [`read_config_from`] cleans up.
struct Mounted {
    target: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // A plain unmount first; if something still holds it (EBUSY),
        // detach it lazily (umount(2) MNT_DETACH) rather than leave it.
        if let Err(e) = umount2(&self.target, MntFlags::empty()) {
            log::warn!("unmount {}: {e}; detaching", self.target.display());
            if let Err(e) = umount2(&self.target, MntFlags::MNT_DETACH) {
                log::warn!("detach {}: {e}", self.target.display());
                return;
            }
        }
        if let Err(e) = std::fs::remove_dir(&self.target) {
            log::debug!("remove {}: {e}", self.target.display());
        }
    }
}

/// Mounts `found` read-only under `mount_dir` (e.g. `/run/keel`), reads
/// [`CONFIG_FILE`] and unmounts, on every path.
///
/// Flags: MS_RDONLY (the disk is not ours to change), MS_NOSUID, MS_NODEV
/// and MS_NOEXEC (it is untrusted media). ext4 also gets `noload`: a
/// read-only mount still replays a dirty journal, writing to the device
/// (Documentation/admin-guide/ext4.rst).
pub fn read_config_from(found: &Found, mount_dir: &Path) -> Result<Vec<u8>, SourceError> {
    let origin = found.origin();
    let fstype = found.fstype.mount_type();
    let mount_err = |target: &Path, action: &'static str, source: nix::Error| SourceError::Mount {
        device: found.device.clone(),
        fstype: fstype.to_string(),
        target: target.to_path_buf(),
        action,
        source,
    };
    let io_to_nix =
        |e: std::io::Error| nix::Error::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO));

    std::fs::create_dir_all(mount_dir).map_err(|e| mount_err(mount_dir, "create", io_to_nix(e)))?;
    let target = loop {
        let seq = MOUNT_SEQ.fetch_add(1, Ordering::Relaxed);
        let t = mount_dir.join(format!("config-mnt-{}-{seq}", std::process::id()));
        match std::fs::create_dir(&t) {
            Ok(()) => break t,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(mount_err(&t, "create", io_to_nix(e))),
        }
    };
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let data = match found.fstype {
        FsType::Ext4 => Some("noload"),
        FsType::Vfat | FsType::Iso9660 => None,
    };
    if let Err(e) = mount(Some(&found.device), &target, Some(fstype), flags, data) {
        let _ = std::fs::remove_dir(&target);
        return Err(mount_err(&target, "mount", e));
    }
    let mounted = Mounted { target };
    read_regular_file(&origin, &mounted.target.join(CONFIG_FILE))
}

/// Reads a regular file of at most [`MAX_CONFIG_BYTES`]. O_NOFOLLOW and
/// the file-type check keep untrusted media from pointing Keel at another
/// file through a symlink, or from blocking it on a FIFO (opened
/// O_NONBLOCK, so open(2) itself cannot block).
pub fn read_regular_file(origin: &str, path: &Path) -> Result<Vec<u8>, SourceError> {
    let read_err = |source| SourceError::Read {
        origin: origin.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(read_err)?;
    let ft = file.metadata().map_err(read_err)?.file_type();
    if !ft.is_file() || ft.is_fifo() {
        return Err(SourceError::NotAFile {
            origin: origin.to_string(),
            path: path.to_path_buf(),
        });
    }
    let mut out = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(read_err)?;
    if out.len() as u64 > MAX_CONFIG_BYTES {
        return Err(SourceError::TooLarge {
            origin: origin.to_string(),
            limit: MAX_CONFIG_BYTES,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn fat16(label: &[u8; 11]) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[0..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
        b[0x26] = 0x29;
        b[0x2B..0x36].copy_from_slice(label);
        b[0x36..0x3E].copy_from_slice(b"FAT16   ");
        b[510..512].copy_from_slice(&[0x55, 0xAA]);
        b
    }

    fn fat32(label: &[u8; 11]) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[0..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
        b[0x42] = 0x29;
        b[0x47..0x52].copy_from_slice(label);
        b[0x52..0x5A].copy_from_slice(b"FAT32   ");
        b[510..512].copy_from_slice(&[0x55, 0xAA]);
        b
    }

    fn iso(label: &str, first_type: u8) -> Vec<u8> {
        let mut b = vec![0u8; PROBE_BYTES];
        let mut put = |at: usize, ty: u8| {
            b[at] = ty;
            b[at + 1..at + 6].copy_from_slice(b"CD001");
            b[at + 6] = 1;
        };
        put(ISO_VD_START, first_type);
        let pvd = if first_type == 1 {
            ISO_VD_START
        } else {
            put(ISO_VD_START + ISO_SECTOR, 1);
            ISO_VD_START + ISO_SECTOR
        };
        let mut id = [b' '; 32];
        id[..label.len()].copy_from_slice(label.as_bytes());
        b[pvd + 40..pvd + 72].copy_from_slice(&id);
        b
    }

    fn ext4(label: &str) -> Vec<u8> {
        let mut b = vec![0u8; 2048];
        b[1024 + 0x38..1024 + 0x3A].copy_from_slice(&[0x53, 0xEF]);
        b[1024 + 0x78..1024 + 0x78 + label.len()].copy_from_slice(label.as_bytes());
        b
    }

    #[test]
    fn probe_table() {
        let mut no_sig = fat16(b"KEEL-CONFIG");
        no_sig[511] = 0;
        let mut no_bootsig = fat16(b"KEEL-CONFIG");
        no_bootsig[0x26] = 0x28;
        let mut not_fat = fat16(b"KEEL-CONFIG");
        not_fat[0x36..0x39].copy_from_slice(b"NTF");
        let mut iso_terminated = iso("X", 255);
        iso_terminated[ISO_VD_START + ISO_SECTOR] = 1;
        type Case<'a> = (&'a str, Vec<u8>, Option<(FsType, &'a str)>);
        let table: Vec<Case> = vec![
            (
                "fat16",
                fat16(b"KEEL-CONFIG"),
                Some((FsType::Vfat, "KEEL-CONFIG")),
            ),
            (
                "fat16 short",
                fat16(b"CFG        "),
                Some((FsType::Vfat, "CFG")),
            ),
            (
                "fat16 no name",
                fat16(b"NO NAME    "),
                Some((FsType::Vfat, "")),
            ),
            (
                "fat32",
                fat32(b"KEEL-CONFIG"),
                Some((FsType::Vfat, "KEEL-CONFIG")),
            ),
            ("fat no 55aa", no_sig, None),
            ("fat no 0x29", no_bootsig, None),
            ("not fat", not_fat, None),
            (
                "iso",
                iso("KEEL-CONFIG", 1),
                Some((FsType::Iso9660, "KEEL-CONFIG")),
            ),
            (
                "iso boot record first",
                iso("metal-iso", 0),
                Some((FsType::Iso9660, "metal-iso")),
            ),
            ("iso terminator", iso_terminated, None),
            (
                "iso truncated",
                iso("KEEL-CONFIG", 1)[..ISO_VD_START + 100].to_vec(),
                None,
            ),
            (
                "ext4",
                ext4("KEEL-CONFIG"),
                Some((FsType::Ext4, "KEEL-CONFIG")),
            ),
            (
                "ext4 16 bytes",
                ext4("0123456789abcdef"),
                Some((FsType::Ext4, "0123456789abcdef")),
            ),
            ("ext4 unlabelled", ext4(""), Some((FsType::Ext4, ""))),
            ("zeros", vec![0; PROBE_BYTES], None),
            ("empty", vec![], None),
            ("short", vec![0x55; 100], None),
        ];
        for (name, buf, want) in table {
            let got = probe_label(&buf);
            let got = got.as_ref().map(|(t, l)| (*t, l.as_str()));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn probe_never_panics() {
        let mut x = 0x1234_5678u32;
        for len in [
            0,
            1,
            511,
            512,
            1100,
            1160,
            2048,
            ISO_VD_START + 5,
            PROBE_BYTES,
        ] {
            let mut buf = vec![0u8; len];
            for _ in 0..200 {
                for b in buf.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    *b = x.to_le_bytes()[0];
                }
                let _ = probe_label(&buf);
            }
        }
    }

    /// A fixture /sys/class/block plus "device nodes" that are plain files.
    #[test]
    fn find_labelled_in_fixture() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys");
        let dev = dir.path().join("dev");
        fs::create_dir_all(dev.join("cciss")).unwrap();
        let add = |name: &str, size: &str, content: Option<Vec<u8>>| {
            let d = sys.join("class/block").join(name);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("size"), format!("{size}\n")).unwrap();
            if let Some(c) = content {
                fs::write(dev.join(name.replace('!', "/")), c).unwrap();
            }
        };
        add("ram0", "8192", Some(fat16(b"KEEL-CONFIG")));
        add("loop0", "0", Some(fat16(b"KEEL-CONFIG")));
        add("sr0", "0", None);
        add("vda", "8192", Some(vec![0; 4096]));
        add("vda1", "4096", Some(ext4("KEEL-VAR")));
        add("vdb", "4096", Some(iso("metal-iso", 1)));
        add("vdc", "4096", Some(fat32(b"KEEL-CONFIG")));
        add("vdd", "4096", None); // sysfs entry but no node: skipped
        add("cciss!c0d0", "4096", Some(ext4("keel-config")));
        let found = find_labelled(&sys, &dev, LABELS);
        let got: Vec<(String, FsType, &str)> = found
            .iter()
            .map(|f| {
                let rel = f.device.strip_prefix(&dev).unwrap().display().to_string();
                (rel, f.fstype, f.label.as_str())
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("cciss/c0d0".to_string(), FsType::Ext4, "keel-config"),
                ("vdc".to_string(), FsType::Vfat, "KEEL-CONFIG"),
                ("vdb".to_string(), FsType::Iso9660, "metal-iso"),
            ]
        );
        assert_eq!(
            found[1].origin(),
            format!("{} (vfat, label KEEL-CONFIG)", dev.join("vdc").display())
        );
        assert!(find_labelled(&dir.path().join("nowhere"), &dev, LABELS).is_empty());
    }

    #[test]
    fn regular_file_reading() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.yaml");
        fs::write(&f, "a: 1\n").unwrap();
        assert_eq!(read_regular_file("o", &f).unwrap(), b"a: 1\n");
        let link = dir.path().join("link.yaml");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        let e = read_regular_file("o", &link).unwrap_err().to_string();
        assert!(e.starts_with("o: cannot read"), "{e}");
        let e = read_regular_file("o", dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        nix::unistd::mkfifo(&dir.path().join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = read_regular_file("o", &dir.path().join("fifo"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let big = dir.path().join("big.yaml");
        fs::write(
            &big,
            vec![b'a'; usize::try_from(MAX_CONFIG_BYTES).unwrap() + 1],
        )
        .unwrap();
        let e = read_regular_file("o", &big).unwrap_err();
        assert!(matches!(e, SourceError::TooLarge { .. }), "{e}");
    }
}
