//! A `KEEL-VAR` disk for a node: what a real control-plane node keeps its
//! etcd data on.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

/// The disk's size: etcd's WAL pre-allocates 64 MB segments (and the next
/// one), so a few hundred MB. Sparse on the host.
pub const DISK_BYTES: u64 = 512 << 20;
/// Where sfdisk puts the first partition (its default alignment, 1 MiB).
pub const PARTITION_START: u64 = 2048 * 512;

/// Writes a sparse raw disk at `path` holding a GPT with one partition
/// named `KEEL-VAR` and nothing in it: the partition Keel formats as ext4
/// on first boot (init/src/storage.rs) and only mounts after that.
pub fn gpt_with_empty_keel_var(path: &Path) -> anyhow::Result<()> {
    File::create(path)
        .and_then(|f| f.set_len(DISK_BYTES))
        .with_context(|| format!("create {}", path.display()))?;
    let mut sfdisk = Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("sfdisk (Debian package fdisk, see scripts/deps.sh)")?;
    if let Some(mut stdin) = sfdisk.stdin.take() {
        write!(
            stdin,
            "label: gpt\nstart={}, type=L, name=KEEL-VAR\n",
            PARTITION_START / 512
        )
        .context("write to sfdisk")?;
    }
    let out = sfdisk.wait_with_output().context("sfdisk")?;
    if !out.status.success() {
        bail!(
            "sfdisk {}: {}: {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
