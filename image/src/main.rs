//! keel-image: kernel + initramfs for Keel from Debian packages.
//! Run `image/fetch-debs.sh <cache>` first to fill the cache.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use keel_image::assemble::{self, Compression, Options};

const USAGE: &str = "\
usage: keel-image --cache <dir> --init <static-binary> --out <dir>
                  [--compression none|zstd|both] [--kernel-config <dir>]
                  [--zstd-level <1-22>]
       keel-image --floor --cache <dir> --out <dir>

  --cache          packages extracted by image/fetch-debs.sh (kernel, etcd-server,
                   e2fsprogs and their libraries)
  --init           the static PID 1 binary, installed as /init
  --out            output directory: initramfs.cpio[.zst], vmlinuz, vmlinux, kernel.release,
                   boot.ipxe (with the .zst)
  --compression    which archives to write (default: both)
  --kernel-config  directory with required.config and modules.list (default: kernel-config)
  --zstd-level     zstd level for initramfs.cpio.zst (default: 19)
  --floor          write only <out>/floor.cpio: busybox + etcd + the virtio NIC
                   modules, the floor image `make bench-run` compares Keel with

Entries get mtime SOURCE_DATE_EPOCH if set, else 0.";

/// What to build.
enum Job {
    Image(Options),
    Floor {
        cache: PathBuf,
        out: PathBuf,
        mtime: u32,
    },
}

fn parse_args() -> Result<Job> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let (mut cache, mut init, mut out) = (None, None, None);
    let mut kernel_config = PathBuf::from("kernel-config");
    let mut compression = Compression::Both;
    let mut zstd_level = 19;
    let mut floor = false;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("cache") => cache = Some(PathBuf::from(parser.value()?)),
            Long("init") => init = Some(PathBuf::from(parser.value()?)),
            Long("out") => out = Some(PathBuf::from(parser.value()?)),
            Long("floor") => floor = true,
            Long("kernel-config") => kernel_config = PathBuf::from(parser.value()?),
            Long("compression") => {
                compression = match parser.value()?.string()?.as_str() {
                    "none" => Compression::None,
                    "zstd" => Compression::Zstd,
                    "both" => Compression::Both,
                    other => bail!("--compression: expected none, zstd or both, got {other:?}"),
                }
            }
            Long("zstd-level") => {
                zstd_level = parser.value()?.parse()?;
                if !(1..=22).contains(&zstd_level) {
                    bail!("--zstd-level: expected 1 to 22, got {zstd_level}");
                }
            }
            Short('h') | Long("help") => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => bail!("{}\n\n{USAGE}", arg.unexpected()),
        }
    }
    let missing = |name: &str| anyhow::anyhow!("--{name} is required\n\n{USAGE}");
    if floor {
        return Ok(Job::Floor {
            cache: cache.ok_or_else(|| missing("cache"))?,
            out: out.ok_or_else(|| missing("out"))?,
            mtime: source_date_epoch()?,
        });
    }
    Ok(Job::Image(Options {
        cache: cache.ok_or_else(|| missing("cache"))?,
        init: init.ok_or_else(|| missing("init"))?,
        out: out.ok_or_else(|| missing("out"))?,
        kernel_config,
        compression,
        zstd_level,
        mtime: source_date_epoch()?,
    }))
}

/// The reproducible-builds convention for a fixed timestamp; newc stores
/// 32-bit mtimes.
fn source_date_epoch() -> Result<u32> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v.trim().parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds below 2^32")
        }),
        _ => Ok(0),
    }
}

fn run() -> Result<()> {
    let start = Instant::now();
    match parse_args()? {
        Job::Image(opts) => {
            let report = assemble::build(&opts).context("building the Keel image")?;
            print!("{}", keel_image::report::render(&report));
        }
        Job::Floor { cache, out, mtime } => {
            let (path, bytes) = keel_image::floor::build(&cache, &out, mtime)
                .context("building the floor image")?;
            println!("wrote {} ({bytes} bytes)", path.display());
        }
    }
    println!("total time: {:.2}s", start.elapsed().as_secs_f64());
    Ok(())
}

/// Errors are printed as their cause chain, one cause per line, without
/// anyhow's backtrace (RUST_BACKTRACE is often set in CI; a backtrace of
/// the builder says nothing about a missing kernel option).
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("keel-image: error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
