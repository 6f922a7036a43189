//! Puts the pieces together: checks the kernel, chooses the modules, finds
//! the libraries of the programs carried (etcd, mke2fs), lays out the image
//! tree, writes the archives and the
//! kernel files. Every input comes from the extracted .debs in the cache
//! plus the init binary; nothing is read from the build host's `/`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::compress::{self, CompressError};
use crate::elf::{self, ElfError, Needed};
use crate::kconfig::{self, KconfigError};
use crate::kernel::{self, Installed, Kernel, KernelError};
use crate::modules::{self, Closure, Index, ModulesError};
use crate::output::{write_atomic, OutputError};
use crate::tree::{Category, Node, Sizes, Tree, TreeError};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Kconfig(#[from] KconfigError),
    #[error(transparent)]
    Modules(#[from] ModulesError),
    #[error(transparent)]
    Elf(#[from] ElfError),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error(transparent)]
    Compress(#[from] CompressError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("init binary {path} is dynamically linked (interpreter {interp}); PID 1 must be static: build it for x86_64-unknown-linux-musl")]
    InitNotStatic { path: PathBuf, interp: PathBuf },
    #[error("package {package} is not extracted in {cache} (no .extracted marker): run image/fetch-debs.sh {cache}")]
    MissingPackage { package: String, cache: PathBuf },
    #[error("creating output directory {path}")]
    OutDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
    Both,
}

impl Compression {
    fn plain(self) -> bool {
        matches!(self, Compression::None | Compression::Both)
    }

    fn zstd(self) -> bool {
        matches!(self, Compression::Zstd | Compression::Both)
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub cache: PathBuf,
    pub init: PathBuf,
    pub out: PathBuf,
    pub kernel_config: PathBuf,
    pub compression: Compression,
    pub zstd_level: i32,
    /// Every entry's mtime (0, or SOURCE_DATE_EPOCH).
    pub mtime: u32,
}

/// What a build produced, for the summary.
#[derive(Debug, Clone)]
pub struct Report {
    pub release: String,
    pub options_checked: usize,
    pub closure: Closure,
    pub listed: usize,
    pub sizes: Sizes,
    /// Archives written (or found up to date), with their sizes.
    pub archives: Vec<Archive>,
    pub kernel: Installed,
    pub timings: Vec<(&'static str, Duration)>,
}

#[derive(Debug, Clone)]
pub struct Archive {
    pub path: PathBuf,
    pub bytes: u64,
    /// False when an identical archive was already there (the zstd stamp
    /// matched) and nothing was written.
    pub written: bool,
}

/// Image directories that exist before any mount: mount points for the
/// init, and the places etcd and the loader expect.
const DIRS: &[(&str, u32)] = &[
    ("/dev", 0o755),
    ("/etc", 0o755),
    ("/lib", 0o755),
    ("/lib64", 0o755),
    ("/mnt", 0o755),
    ("/proc", 0o555),
    ("/root", 0o700),
    ("/run", 0o755),
    ("/sbin", 0o755),
    ("/sys", 0o555),
    ("/tmp", 0o1777),
    ("/usr/bin", 0o755),
    ("/var", 0o755),
];

/// etcd resolves "localhost" through /etc/hosts (there is no DNS this early).
const HOSTS: &str = "127.0.0.1 localhost\n::1 localhost\n";

/// A dynamically linked program the image carries, taken from an extracted
/// package together with the closure of its libraries.
#[derive(Debug)]
pub(crate) struct Program {
    /// Where it goes in the image (mode 0755).
    image_path: &'static str,
    /// The package it comes from, and its path inside that package.
    package: &'static str,
    package_path: &'static str,
    /// The packages its libraries (and the loader) come from, searched as
    /// layers in this order (see [`elf::needed_closure`]).
    lib_packages: &'static [&'static str],
    /// Other names for it: (image path, symlink target), as in the package.
    links: &'static [(&'static str, &'static str)],
    category: Category,
}

pub(crate) const ETCD: Program = Program {
    image_path: "/usr/bin/etcd",
    package: "etcd-server",
    package_path: "usr/bin/etcd",
    lib_packages: &["libc6"],
    links: &[],
    category: Category::Etcd,
};

/// Every package named here must be fetched by image/fetch-debs.sh.
pub(crate) const PROGRAMS: &[Program] = &[
    ETCD,
    // The init formats an empty KEEL-VAR partition as ext4 at boot. Its
    // built-in defaults equal Debian's /etc/mke2fs.conf (both come from
    // e2fsprogs' mke2fs.conf.in), so the config file is not carried.
    Program {
        image_path: "/sbin/mke2fs",
        package: "e2fsprogs",
        package_path: "sbin/mke2fs",
        lib_packages: &[
            "libc6",
            "libext2fs2",
            "libcom-err2",
            "libblkid1",
            "libuuid1",
        ],
        links: &[("/sbin/mkfs.ext4", "mke2fs")],
        category: Category::Tools,
    },
];

fn read_text(path: &Path) -> Result<String, BuildError> {
    std::fs::read_to_string(path).map_err(|source| BuildError::Read {
        path: path.to_owned(),
        source,
    })
}

pub fn build(opts: &Options) -> Result<Report, BuildError> {
    let mut timings = Vec::new();
    let mut clock = Instant::now();
    let mut lap = |name: &'static str, timings: &mut Vec<_>| {
        timings.push((name, clock.elapsed()));
        clock = Instant::now();
    };

    let kernel = Kernel::from_cache(&opts.cache)?;
    let options_checked = kconfig::check_files(
        &opts.kernel_config.join("required.config"),
        &kernel.config(),
    )?;

    let init_dynamic = elf::read_dynamic(&opts.init)?;
    if let Some(interp) = init_dynamic.interpreter {
        return Err(BuildError::InitNotStatic {
            path: opts.init.clone(),
            interp,
        });
    }

    let moddir = kernel.modules_dir();
    let index = Index::scan(&moddir)?;
    let list_path = opts.kernel_config.join("modules.list");
    let listed = modules::parse_list(&read_text(&list_path)?);
    let closure = index.closure(&listed, &list_path)?;
    lap("modules index", &mut timings);

    let mut tree = base_tree()?;
    tree.host_file("/init", 0o755, &opts.init, Category::Init)?;
    // The init is a multi-call binary; the kernel's usermode helper runs
    // /sbin/modprobe for request_module() (fs-vfat, rtnl-link-bond, ...).
    tree.symlink("/sbin/modprobe", "/init", Category::Other)?;

    add_modules(&mut tree, &index, &closure, &kernel, &moddir)?;

    add_programs(&mut tree, &opts.cache, PROGRAMS)?;
    lap("layout", &mut timings);

    let (cpio, sizes) = tree.write_cpio(Vec::new(), opts.mtime)?;
    lap("cpio", &mut timings);

    std::fs::create_dir_all(&opts.out).map_err(|source| BuildError::OutDir {
        path: opts.out.clone(),
        source,
    })?;
    let mut archives = Vec::new();
    if opts.compression.plain() {
        let path = opts.out.join("initramfs.cpio");
        write_atomic(&path, &cpio)?;
        archives.push(Archive {
            path,
            bytes: cpio.len() as u64,
            written: true,
        });
    }
    if opts.compression.zstd() {
        let archive = write_zstd(&opts.out.join("initramfs.cpio.zst"), &cpio, opts.zstd_level)?;
        lap(
            if archive.written {
                "zstd"
            } else {
                "zstd (up to date)"
            },
            &mut timings,
        );
        archives.push(archive);
        // PXE boots the compressed initramfs: the script goes with it.
        let script = opts.out.join("boot.ipxe");
        write_atomic(&script, crate::pxe::BOOT_IPXE.as_bytes())?;
    }

    let kernel_files = kernel::install(&kernel, &opts.out)?;
    lap("kernel", &mut timings);

    Ok(Report {
        release: kernel.release,
        options_checked,
        closure,
        listed: listed.len(),
        sizes,
        archives,
        kernel: kernel_files,
        timings,
    })
}

/// What every image starts from (Keel's and the benchmark floor's): the
/// [`DIRS`], /dev/console and /etc/hosts.
pub(crate) fn base_tree() -> Result<Tree, BuildError> {
    let mut tree = Tree::new();
    for (dir, perm) in DIRS {
        tree.dir(dir, *perm)?;
    }
    // The kernel opens /dev/console for init's stdin/out/err before /init
    // runs, before devtmpfs can be mounted: the node must be in the archive.
    tree.add(
        "/dev/console",
        Node::CharDev {
            perm: 0o600,
            major: 5,
            minor: 1,
        },
    )?;
    tree.bytes("/etc/hosts", 0o644, HOSTS, Category::Other)?;
    Ok(tree)
}

/// Writes `path` (and its stamp, `<path>.stamp`, after it) unless the
/// stamp says the archive there was made from these bytes at this level.
fn write_zstd(path: &Path, cpio: &[u8], level: i32) -> Result<Archive, BuildError> {
    let mut stamp_path = path.as_os_str().to_owned();
    stamp_path.push(".stamp");
    let stamp_path = PathBuf::from(stamp_path);
    if let (Ok(meta), Ok(old)) = (
        std::fs::metadata(path),
        std::fs::read_to_string(&stamp_path),
    ) {
        if old == compress::stamp(cpio, level, meta.len()) {
            return Ok(Archive {
                path: path.to_owned(),
                bytes: meta.len(),
                written: false,
            });
        }
    }
    let compressed = compress::zstd(cpio, level)?;
    write_atomic(path, &compressed)?;
    let stamp = compress::stamp(cpio, level, compressed.len() as u64);
    write_atomic(&stamp_path, stamp.as_bytes())?;
    Ok(Archive {
        path: path.to_owned(),
        bytes: compressed.len() as u64,
        written: true,
    })
}

/// Every program, its links, and the closure of its libraries. A library
/// two programs share (libc) is added once, in the category of the first.
pub(crate) fn add_programs(
    tree: &mut Tree,
    cache: &Path,
    programs: &[Program],
) -> Result<(), BuildError> {
    for program in programs {
        for package in std::iter::once(&program.package).chain(program.lib_packages) {
            if !cache.join(package).join(".extracted").is_file() {
                return Err(BuildError::MissingPackage {
                    package: package.to_string(),
                    cache: cache.to_owned(),
                });
            }
        }
        let source = cache.join(program.package).join(program.package_path);
        let roots: Vec<PathBuf> = program.lib_packages.iter().map(|p| cache.join(p)).collect();
        let needs = elf::needed_closure(&source, &roots)?;
        tree.host_file(program.image_path, 0o755, &source, program.category)?;
        for (link, target) in program.links {
            tree.symlink(link, *target, program.category)?;
        }
        for item in &needs {
            match item {
                Needed::File { image_path, source } => {
                    // Keep the package's permission bits (dpkg-deb -x kept them).
                    let perm = std::fs::metadata(source)
                        .map_err(|e| BuildError::Read {
                            path: source.clone(),
                            source: e,
                        })?
                        .permissions()
                        .mode()
                        & 0o7777;
                    tree.host_file(image_path, perm, source, program.category)?
                }
                Needed::Symlink { image_path, target } => {
                    tree.symlink(image_path, target.to_string_lossy(), program.category)?
                }
            }
        }
    }
    Ok(())
}

/// `/lib/modules/<release>/`: the closure's .ko files at their package
/// paths, the indexes for exactly those, and the package's builtin lists
/// (modprobe must know a built-in module is "already loaded").
pub(crate) fn add_modules(
    tree: &mut Tree,
    index: &Index,
    closure: &Closure,
    kernel: &Kernel,
    moddir: &Path,
) -> Result<(), BuildError> {
    let image_dir = Path::new("/lib/modules").join(&kernel.release);
    for name in &closure.modules {
        let rel = &index.modules[name].rel_path;
        tree.host_file(
            image_dir.join(rel),
            0o644,
            moddir.join(rel),
            Category::Modules,
        )?;
    }
    let generated = [
        ("modules.dep", index.modules_dep(&closure.modules)?),
        ("modules.alias", index.modules_alias(&closure.modules)),
        ("modules.softdep", index.modules_softdep(&closure.modules)),
    ];
    for (file, text) in generated {
        tree.bytes(image_dir.join(file), 0o644, text, Category::Modules)?;
    }
    for file in ["modules.builtin", "modules.builtin.modinfo"] {
        let source = moddir.join(file);
        if source.is_file() {
            tree.host_file(image_dir.join(file), 0o644, source, Category::Modules)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Contents;
    use std::collections::BTreeSet;

    /// The cache `make image` fills (`build/cache`), or `None` (test
    /// skipped) when image/fetch-debs.sh has not been run for every
    /// package the programs need.
    /// The package cache `make image` fills (`make test` builds the image
    /// first). A missing cache fails the test: a skip must not pass.
    fn real_cache() -> PathBuf {
        let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/cache");
        for p in PROGRAMS {
            for pkg in std::iter::once(&p.package).chain(p.lib_packages) {
                assert!(
                    cache.join(pkg).join(".extracted").is_file(),
                    "{} lacks {pkg}: run `make image` (or image/fetch-debs.sh build/cache) first",
                    cache.display()
                );
            }
        }
        cache
    }

    /// What `path` finally names in `tree`, following symlinks the way the
    /// kernel would inside the image.
    fn follow<'t>(tree: &'t Tree, path: &Path) -> Option<(PathBuf, &'t Node)> {
        let mut path = path.to_owned();
        for _ in 0..40 {
            match tree.get(&path)? {
                Node::Symlink { target, .. } => {
                    // Lexically, as the kernel walks `..` in the image
                    // (trixie's /lib64/ld-linux-x86-64.so.2 →
                    // ../lib/x86_64-linux-gnu/...).
                    let mut next = path.parent()?.to_owned();
                    for part in Path::new(target).components() {
                        match part {
                            std::path::Component::ParentDir => {
                                next.pop();
                            }
                            std::path::Component::RootDir => next = PathBuf::from("/"),
                            std::path::Component::Normal(p) => next.push(p),
                            std::path::Component::CurDir | std::path::Component::Prefix(_) => {}
                        }
                    }
                    path = next;
                }
                node => return Some((path, node)),
            }
        }
        None
    }

    /// In the tree built from the real packages: /usr/bin/etcd and
    /// /sbin/mke2fs (with /sbin/mkfs.ext4) are there, each library they
    /// need is a regular file the loader finds in the image, transitively,
    /// and the loader itself is there.
    #[test]
    fn programs_and_their_libraries() {
        let cache = real_cache();
        let mut tree = Tree::new();
        add_programs(&mut tree, &cache, PROGRAMS).unwrap();

        for (program, category) in [
            ("/usr/bin/etcd", Category::Etcd),
            ("/sbin/mke2fs", Category::Tools),
        ] {
            assert!(
                matches!(
                    tree.get(program),
                    Some(Node::File { perm: 0o755, category: c, .. }) if *c == category
                ),
                "{program}: {:?}",
                tree.get(program)
            );
        }
        assert_eq!(
            tree.get("/sbin/mkfs.ext4"),
            Some(&Node::Symlink {
                target: "mke2fs".into(),
                category: Category::Tools
            })
        );

        // The loader's view: walk every ELF file's NEEDED from the two
        // programs, each resolved in the image's search dirs.
        let mut seen = BTreeSet::new();
        let mut queue: Vec<PathBuf> = vec!["/usr/bin/etcd".into(), "/sbin/mke2fs".into()];
        while let Some(path) = queue.pop() {
            let Some((
                real,
                Node::File {
                    contents: Contents::HostFile(source),
                    ..
                },
            )) = follow(&tree, &path)
            else {
                panic!("{} is not a file in the image", path.display());
            };
            if !seen.insert(real) {
                continue;
            }
            let dynamic = elf::read_dynamic(source).unwrap();
            queue.extend(dynamic.interpreter);
            for name in dynamic.needed {
                let found = elf::SEARCH_DIRS
                    .iter()
                    .map(|dir| Path::new("/").join(dir).join(&name))
                    .find(|p| follow(&tree, p).is_some())
                    .unwrap_or_else(|| {
                        panic!("{name} (needed by {}) not in the image", path.display())
                    });
                queue.push(found);
            }
        }
        let names: BTreeSet<String> = seen
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for prefix in [
            "libext2fs.so.2",
            "libe2p.so.2",
            "libcom_err.so.2",
            "libblkid.so.1",
            "libuuid.so.1",
            "libc.so.6",
            "ld-linux-x86-64.so.2",
        ] {
            assert!(
                names.iter().any(|n| n.starts_with(prefix)),
                "{prefix} missing from {names:?}"
            );
        }
        assert!(tree.get("/lib64/ld-linux-x86-64.so.2").is_some());
    }

    #[test]
    fn missing_package_names_fetch_debs() {
        let cache = tempfile::tempdir().unwrap();
        let err = add_programs(&mut Tree::new(), cache.path(), PROGRAMS).unwrap_err();
        assert!(
            matches!(&err, BuildError::MissingPackage { package, .. } if package == "etcd-server"),
            "{err}"
        );
        assert!(err.to_string().contains("run image/fetch-debs.sh"), "{err}");
    }
}
