//! Puts the pieces together: checks the kernel, chooses the modules, finds
//! etcd's libraries, lays out the image tree, writes the archives and the
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
    /// Archives written, with their sizes.
    pub archives: Vec<(PathBuf, u64)>,
    pub kernel: Installed,
    pub timings: Vec<(&'static str, Duration)>,
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

    let etcd = opts.cache.join("etcd-server/usr/bin/etcd");
    let libc_root = opts.cache.join("libc6");
    let etcd_needs = elf::needed_closure(&etcd, &libc_root)?;

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
    tree.host_file("/init", 0o755, &opts.init, Category::Init)?;
    // The init is a multi-call binary; the kernel's usermode helper runs
    // /sbin/modprobe for request_module() (fs-vfat, rtnl-link-bond, ...).
    tree.symlink("/sbin/modprobe", "/init", Category::Other)?;
    tree.bytes("/etc/hosts", 0o644, HOSTS, Category::Other)?;

    add_modules(&mut tree, &index, &closure, &kernel, &moddir)?;

    tree.host_file("/usr/bin/etcd", 0o755, &etcd, Category::Etcd)?;
    for item in &etcd_needs {
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
                tree.host_file(image_path, perm, source, Category::Etcd)?
            }
            Needed::Symlink { image_path, target } => {
                tree.symlink(image_path, target.to_string_lossy(), Category::Etcd)?
            }
        }
    }
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
        archives.push((path, cpio.len() as u64));
    }
    if opts.compression.zstd() {
        let compressed = compress::zstd(&cpio, opts.zstd_level)?;
        let path = opts.out.join("initramfs.cpio.zst");
        write_atomic(&path, &compressed)?;
        archives.push((path, compressed.len() as u64));
        lap("zstd", &mut timings);
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

/// `/lib/modules/<release>/`: the closure's .ko files at their package
/// paths, the indexes for exactly those, and the package's builtin lists
/// (modprobe must know a built-in module is "already loaded").
fn add_modules(
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
