//! Host integration: label probing on filesystem images built with the real
//! tools (`mkfs.vfat` + `mcopy`, `genisoimage`, `mkfs.ext4`), and, as root
//! with loop devices, `read_config_from` on a loop-attached image.
//!
//! The tools are installed by scripts/deps.sh and these tests run as root
//! (`make test`); a missing tool or loop device is a failure naming what
//! to install, never a silent skip. The unit tests cover the parsing on
//! synthetic superblocks; this covers what the tools really write.

use std::path::{Path, PathBuf};
use std::process::Command;

use keel::config::source::label::{find_labelled, probe_device, LABELS};
use keel::config::source::{read_config_from, Found, FsType, SourceError};

const CONFIG: &[u8] = b"version: v1alpha1\nmachine:\n  type: controlplane\n";

/// Finds a tool on PATH or in the sbin directories (not always on a
/// non-login root PATH); panics naming the Debian package that has it.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    let package = match name {
        "mkfs.vfat" => "dosfstools",
        "mcopy" => "mtools",
        "genisoimage" => "genisoimage",
        "mkfs.ext4" => "e2fsprogs",
        "losetup" => "mount",
        _ => "?",
    };
    found.unwrap_or_else(|| {
        panic!("{name} not found: install Debian's {package} (scripts/deps.sh lists it)")
    })
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

fn vfat(dir: &Path, name: &str, label: &str, fat32: bool) -> PathBuf {
    let (mkfs, mcopy) = (tool("mkfs.vfat"), tool("mcopy"));
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
    img
}

fn iso(dir: &Path, name: &str, label: &str) -> PathBuf {
    let genisoimage = tool("genisoimage");
    let img = dir.join(name);
    let content = content_dir(dir);
    run(
        &genisoimage,
        &["-quiet", "-V", label, "-o", s(&img), s(&content)],
    );
    img
}

fn ext4(dir: &Path, name: &str, label: &str) -> PathBuf {
    let mkfs = tool("mkfs.ext4");
    let img = dir.join(name);
    let content = content_dir(dir);
    run(
        &mkfs,
        &["-q", "-F", "-L", label, "-d", s(&content), s(&img), "4M"],
    );
    img
}

#[test]
fn probe_images_built_by_the_real_tools() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    type Build = fn(&Path) -> PathBuf;
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
    for (name, build, fstype, label) in table {
        let img = build(d);
        let got = probe_device(&img).unwrap();
        assert_eq!(got, Some((*fstype, label.to_string())), "{name}");
    }
}

/// find_labelled over a fixture /sys/class/block whose "device nodes" are
/// the image files.
#[test]
fn find_labelled_over_image_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sys, dev) = (d.join("sys"), d.join("dev"));
    std::fs::create_dir_all(&dev).unwrap();
    let add = |name: &str, img: PathBuf| {
        let class = sys.join("class/block").join(name);
        std::fs::create_dir_all(&class).unwrap();
        let sectors = std::fs::metadata(&img).unwrap().len() / 512;
        std::fs::write(class.join("size"), format!("{sectors}\n")).unwrap();
        std::fs::rename(&img, dev.join(name)).unwrap();
    };
    add("vdb", vfat(d, "x.img", "OTHER", false));
    add("vdc", vfat(d, "y.img", "KEEL-CONFIG", false));
    add("sr0", iso(d, "z.iso", "metal-iso"));
    add("vdd", ext4(d, "w.img", "KEEL-VAR"));
    let found = find_labelled(&sys, &dev, LABELS);
    let want = vec![
        Found {
            device: dev.join("vdc"),
            fstype: FsType::Vfat,
            label: "KEEL-CONFIG".into(),
        },
        Found {
            device: dev.join("sr0"),
            fstype: FsType::Iso9660,
            label: "metal-iso".into(),
        },
    ];
    assert_eq!(found, want);
}

/// A loop device, detached on drop so every path cleans up.
struct Loop(PathBuf);

impl Loop {
    fn attach(img: &Path) -> Loop {
        // /proc/self is owned by the process's effective uid.
        let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
        assert_eq!(uid, 0, "loop devices need root: run make test as root");
        let out = Command::new(tool("losetup"))
            .args(["--find", "--show", "--read-only", s(img)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup {}: {}",
            img.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Loop(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new(tool("losetup"))
            .arg("-d")
            .arg(&self.0)
            .status();
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
        let lo = Loop::attach(&img);
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
                // The error path, checked where the host lacks the module.
                assert_eq!(device, lo.0);
                eprintln!("{name}: the host kernel has no {name} filesystem: Mount error checked");
            }
            Err(e) => panic!("{name}: {e}"),
        }
        assert!(!mounted_under(&run_dir), "{name}: left mounted");
        let left: Vec<_> = std::fs::read_dir(&run_dir).unwrap().collect();
        assert!(left.is_empty(), "{name}: mount point left behind: {left:?}");
    }
}
