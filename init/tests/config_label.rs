//! Host integration: label probing on filesystem images built with the real
//! tools (`mkfs.vfat` + `mcopy`, `genisoimage`, `mkfs.ext4`), and, as root
//! with loop devices, `read_config_from` on a loop-attached image.
//!
//! A missing tool or capability skips that part with a message on stderr
//! rather than failing: the unit tests cover the parsing on synthetic
//! superblocks, this covers what the tools really write.

use std::path::{Path, PathBuf};
use std::process::Command;

use keel::config::source::label::{find_labelled, probe_device, LABELS};
use keel::config::source::{read_config_from, Found, FsType, SourceError};

const CONFIG: &[u8] = b"version: v1alpha1\nmachine:\n  type: controlplane\n";

/// Finds a tool on PATH or in the sbin directories (not always on a
/// non-login root PATH).
fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

fn run(tool: &Path, args: &[&str]) {
    let out = Command::new(tool).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        tool.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sparse(path: &Path, size: u64) {
    std::fs::File::create(path).unwrap().set_len(size).unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A directory holding `config.yaml`, the content of every image.
fn content_dir(dir: &Path) -> PathBuf {
    let c = dir.join("content");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(c.join("config.yaml"), CONFIG).unwrap();
    c
}

fn vfat(dir: &Path, name: &str, label: &str, fat32: bool) -> Option<PathBuf> {
    let (mkfs, mcopy) = (tool("mkfs.vfat")?, tool("mcopy")?);
    let img = dir.join(name);
    // FAT32 needs at least 65525 clusters: 40 MiB of 512-byte clusters.
    sparse(&img, if fat32 { 40 << 20 } else { 4 << 20 });
    let mut args = vec!["-n", label];
    if fat32 {
        args.extend(["-F", "32", "-s", "1"]);
    }
    args.push(s(&img));
    run(&mkfs, &args);
    let src = content_dir(dir).join("config.yaml");
    run(&mcopy, &["-i", s(&img), s(&src), "::config.yaml"]);
    Some(img)
}

fn iso(dir: &Path, name: &str, label: &str) -> Option<PathBuf> {
    let genisoimage = tool("genisoimage")?;
    let img = dir.join(name);
    let content = content_dir(dir);
    run(
        &genisoimage,
        &["-quiet", "-V", label, "-o", s(&img), s(&content)],
    );
    Some(img)
}

fn ext4(dir: &Path, name: &str, label: &str) -> Option<PathBuf> {
    let mkfs = tool("mkfs.ext4")?;
    let img = dir.join(name);
    let content = content_dir(dir);
    run(
        &mkfs,
        &["-q", "-F", "-L", label, "-d", s(&content), s(&img), "4M"],
    );
    Some(img)
}

fn skip(what: &str) {
    eprintln!("SKIP: {what}");
}

#[test]
fn probe_images_built_by_the_real_tools() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    type Build = fn(&Path) -> Option<PathBuf>;
    let table: &[(&str, Build, FsType, &str)] = &[
        (
            "fat12/16",
            |d| vfat(d, "a.img", "KEEL-CONFIG", false),
            FsType::Vfat,
            "KEEL-CONFIG",
        ),
        (
            "fat32",
            |d| vfat(d, "b.img", "KEEL-CONFIG", true),
            FsType::Vfat,
            "KEEL-CONFIG",
        ),
        (
            "fat other",
            |d| vfat(d, "c.img", "OTHER", false),
            FsType::Vfat,
            "OTHER",
        ),
        (
            "iso",
            |d| iso(d, "d.iso", "KEEL-CONFIG"),
            FsType::Iso9660,
            "KEEL-CONFIG",
        ),
        (
            "iso talos",
            |d| iso(d, "e.iso", "metal-iso"),
            FsType::Iso9660,
            "metal-iso",
        ),
        (
            "iso other",
            |d| iso(d, "f.iso", "CDROM"),
            FsType::Iso9660,
            "CDROM",
        ),
        (
            "ext4",
            |d| ext4(d, "g.img", "KEEL-CONFIG"),
            FsType::Ext4,
            "KEEL-CONFIG",
        ),
        (
            "ext4 other",
            |d| ext4(d, "h.img", "KEEL-VAR"),
            FsType::Ext4,
            "KEEL-VAR",
        ),
    ];
    let mut probed = 0;
    for (name, build, fstype, label) in table {
        let Some(img) = build(d) else {
            skip(&format!("{name}: tool not installed"));
            continue;
        };
        let got = probe_device(&img).unwrap();
        assert_eq!(got, Some((*fstype, label.to_string())), "{name}");
        probed += 1;
    }
    assert!(probed >= 2, "no image tools available at all");
}

/// find_labelled over a fixture /sys/class/block whose "device nodes" are
/// the image files.
#[test]
fn find_labelled_over_image_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sys, dev) = (d.join("sys"), d.join("dev"));
    std::fs::create_dir_all(&dev).unwrap();
    let add = |name: &str, img: Option<PathBuf>| {
        let Some(img) = img else {
            skip(&format!("{name}: tool not installed"));
            return false;
        };
        let class = sys.join("class/block").join(name);
        std::fs::create_dir_all(&class).unwrap();
        let sectors = std::fs::metadata(&img).unwrap().len() / 512;
        std::fs::write(class.join("size"), format!("{sectors}\n")).unwrap();
        std::fs::rename(&img, dev.join(name)).unwrap();
        true
    };
    let have_fat = add("vdb", vfat(d, "x.img", "OTHER", false));
    add("vdc", vfat(d, "y.img", "KEEL-CONFIG", false));
    let have_iso = add("sr0", iso(d, "z.iso", "metal-iso"));
    add("vdd", ext4(d, "w.img", "KEEL-VAR"));
    let found = find_labelled(&sys, &dev, LABELS);
    let mut want = Vec::new();
    if have_fat {
        want.push(Found {
            device: dev.join("vdc"),
            fstype: FsType::Vfat,
            label: "KEEL-CONFIG".into(),
        });
    }
    if have_iso {
        want.push(Found {
            device: dev.join("sr0"),
            fstype: FsType::Iso9660,
            label: "metal-iso".into(),
        });
    }
    assert_eq!(found, want);
}

/// A loop device, detached on drop so every path cleans up.
struct Loop(PathBuf);

impl Loop {
    fn attach(img: &Path) -> Option<Loop> {
        // /proc/self is owned by the process's effective uid.
        let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").ok()?) == 0;
        if !root {
            skip("not root: no loop devices");
            return None;
        }
        let losetup = tool("losetup")?;
        let out = Command::new(losetup)
            .args(["--find", "--show", "--read-only", s(img)])
            .output()
            .ok()?;
        if !out.status.success() {
            skip(&format!(
                "losetup: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return None;
        }
        Some(Loop(PathBuf::from(
            String::from_utf8_lossy(&out.stdout).trim(),
        )))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        if let Some(losetup) = tool("losetup") {
            let _ = Command::new(losetup).arg("-d").arg(&self.0).status();
        }
    }
}

fn mounted_under(dir: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|m| Path::new(m).starts_with(dir))
    })
}

/// Mounts each image through a real loop device. A filesystem the host
/// kernel lacks (vfat, iso9660 are often modules) must fail with a Mount
/// error naming the device, and still leave nothing mounted behind.
#[test]
fn read_config_through_loop_devices() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let images = [
        ("vfat", vfat(d, "v.img", "KEEL-CONFIG", false)),
        ("iso9660", iso(d, "i.iso", "KEEL-CONFIG")),
        ("ext4", ext4(d, "e.img", "KEEL-CONFIG")),
    ];
    for (name, img) in images {
        let Some(img) = img else {
            skip(&format!("{name}: tool not installed"));
            continue;
        };
        let Some(lo) = Loop::attach(&img) else {
            return;
        };
        let (fstype, label) = probe_device(&lo.0)
            .unwrap()
            .expect("probe via the loop device");
        assert_eq!(fstype.mount_type(), name);
        // The real /sys and /dev find it too.
        let found = find_labelled(Path::new("/sys"), Path::new("/dev"), LABELS);
        let found = found
            .into_iter()
            .find(|f| f.device == lo.0)
            .unwrap_or_else(|| panic!("{name}: {} not found via /sys/class/block", lo.0.display()));
        assert_eq!(found.label, label);

        let run_dir = d.join(format!("run-{name}"));
        match read_config_from(&found, &run_dir) {
            Ok(bytes) => assert_eq!(bytes, CONFIG, "{name}"),
            Err(SourceError::Mount {
                device,
                source: nix::errno::Errno::ENODEV,
                ..
            }) => {
                assert_eq!(device, lo.0);
                skip(&format!("{name}: the host kernel has no {name} filesystem"));
            }
            Err(e) => panic!("{name}: {e}"),
        }
        assert!(!mounted_under(&run_dir), "{name}: left mounted");
        let left: Vec<_> = std::fs::read_dir(&run_dir).unwrap().collect();
        assert!(left.is_empty(), "{name}: mount point left behind: {left:?}");
    }
}
