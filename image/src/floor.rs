//! The benchmark floor: an initramfs with only busybox, etcd and the
//! virtio NIC modules, whose /init (`image/floor-init.sh`) brings eth0 up,
//! starts etcd and adds the VIP once etcd is healthy. `make bench-run`
//! boots it on the same three QEMU nodes as `make run` to tell how much of
//! Keel's time to a VIP is Keel's and how much is the kernel's, QEMU's
//! and etcd's.

use std::path::{Path, PathBuf};

use crate::assemble::{self, BuildError, ETCD};
use crate::kernel::Kernel;
use crate::modules::Index;
use crate::output::write_atomic;
use crate::tree::{Category, Tree};

/// The floor's /init.
pub const INIT: &str = include_str!("../floor-init.sh");

/// Where busybox comes from (`image/fetch-debs.sh <cache> busybox-static`).
pub const BUSYBOX_PACKAGE: &str = "busybox-static";

/// The modules the floor loads: the virtio-net chain (docs/ARCHITECTURE.md, "Facts measured under QEMU") and
/// nothing else; the closure adds virtio, virtio_ring, failover…
const MODULES: &[&str] = &["virtio_pci", "virtio_net"];

/// Writes `<out>/floor.cpio` from the packages in `cache` (the kernel's
/// modules, etcd, busybox); returns its path and size.
pub fn build(cache: &Path, out: &Path, mtime: u32) -> Result<(PathBuf, u64), BuildError> {
    let (cpio, _) = tree(cache)?.write_cpio(Vec::new(), mtime)?;
    std::fs::create_dir_all(out).map_err(|source| BuildError::OutDir {
        path: out.to_owned(),
        source,
    })?;
    let path = out.join("floor.cpio");
    write_atomic(&path, &cpio)?;
    Ok((path, cpio.len() as u64))
}

/// The floor image's tree.
fn tree(cache: &Path) -> Result<Tree, BuildError> {
    let busybox = cache.join(BUSYBOX_PACKAGE);
    if !busybox.join(".extracted").is_file() {
        return Err(BuildError::MissingPackage {
            package: BUSYBOX_PACKAGE.into(),
            cache: cache.to_owned(),
        });
    }
    let kernel = Kernel::from_cache(cache)?;
    let moddir = kernel.modules_dir();
    let index = Index::scan(&moddir)?;
    let wanted: Vec<String> = MODULES.iter().map(|m| m.to_string()).collect();
    let closure = index.closure(&wanted, Path::new("floor::MODULES"))?;

    let mut tree = assemble::base_tree()?;
    tree.dir("/bin", 0o755)?;
    tree.bytes("/init", 0o755, INIT, Category::Init)?;
    tree.host_file(
        "/bin/busybox",
        0o755,
        busybox.join("bin/busybox"),
        Category::Tools,
    )?;
    assemble::add_modules(&mut tree, &index, &closure, &kernel, &moddir)?;
    assemble::add_programs(&mut tree, cache, &[ETCD])?;
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Node;

    fn cache() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/cache")
    }

    /// From the real packages: what the script runs is there, the NIC
    /// modules with their dependencies, and nothing of Keel's.
    #[test]
    fn tree_has_busybox_etcd_and_the_nic_modules_only() {
        let tree = tree(&cache()).expect("run `make image` first (fills build/cache)");
        let release = Kernel::from_cache(&cache()).unwrap().release;
        let present = |p: &str| tree.get(p).is_some();
        for path in [
            "/init",
            "/bin/busybox",
            "/usr/bin/etcd",
            "/lib64/ld-linux-x86-64.so.2",
            "/etc/hosts",
            "/dev/console",
        ] {
            assert!(present(path), "{path} missing");
        }
        for (module, want) in [
            ("kernel/drivers/net/virtio_net.ko", true),
            ("kernel/drivers/virtio/virtio_pci.ko", true),
            ("kernel/drivers/virtio/virtio_ring.ko", true),
            ("kernel/net/core/failover.ko", true),
            ("kernel/drivers/block/virtio_blk.ko", false),
            ("kernel/drivers/ata/ahci.ko", false),
        ] {
            let path = format!("/lib/modules/{release}/{module}");
            assert_eq!(present(&path), want, "{path}");
        }
        for keel_only in ["/sbin/mke2fs", "/sbin/modprobe"] {
            assert!(
                !present(keel_only),
                "{keel_only} is Keel's, not the floor's"
            );
        }
        assert!(matches!(
            tree.get("/init"),
            Some(Node::File { perm: 0o755, .. })
        ));
    }

    #[test]
    fn missing_busybox_names_the_package() {
        let empty = tempfile::tempdir().unwrap();
        let err = tree(empty.path()).unwrap_err();
        assert!(
            matches!(&err, BuildError::MissingPackage { package, .. } if package == BUSYBOX_PACKAGE),
            "{err}"
        );
    }

    /// The script parses as sh (busybox's own, from the package) and
    /// reads the four parameters the bench passes.
    #[test]
    fn init_script_is_valid_sh_and_reads_the_bench_parameters() {
        let busybox = cache().join(BUSYBOX_PACKAGE).join("bin/busybox");
        assert!(
            busybox.is_file(),
            "{} is missing: run image/fetch-debs.sh build/cache {BUSYBOX_PACKAGE}",
            busybox.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("init");
        std::fs::write(&script, INIT).unwrap();
        let out = std::process::Command::new(&busybox)
            .args(["sh", "-n"])
            .arg(&script)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        for param in ["floor.name=", "floor.ip=", "floor.cluster=", "floor.vip="] {
            assert!(INIT.contains(param), "{param}");
        }
    }
}
