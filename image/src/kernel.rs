//! The kernel side of the build: find the extracted kernel package and its
//! release, copy `vmlinuz`, and extract the uncompressed `vmlinux` that QEMU
//! boots directly through the PVH entry point (skipping ~3 s of in-guest xz
//! decompression under TCG, see docs/ARCHITECTURE.md, "Facts measured under QEMU").

use std::path::{Path, PathBuf};

use crate::output::{write_atomic, OutputError};

/// Start of an xz stream: the magic bytes of the stream header.
pub const XZ_MAGIC: &[u8; 6] = b"\xFD7zXZ\x00";
const ELF_MAGIC: &[u8; 4] = b"\x7FELF";

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("reading {path} (run image/fetch-debs.sh <cache-dir> first?)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: expected a package name like linux-image-<release>, got {name:?}")]
    BadPackageName { path: PathBuf, name: String },
    #[error("kernel package {dir} has no {what} for release {release}")]
    Incomplete {
        dir: PathBuf,
        what: &'static str,
        release: String,
    },
    #[error("{path}: no xz stream decompresses to an ELF vmlinux ({tried} xz magics tried)")]
    NoVmlinux { path: PathBuf, tried: usize },
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// An extracted kernel package.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `<cache>/linux-image-<release>`.
    pub dir: PathBuf,
    /// e.g. `6.1.0-56-amd64`.
    pub release: String,
}

fn read(path: &Path) -> Result<Vec<u8>, KernelError> {
    std::fs::read(path).map_err(|source| KernelError::Read {
        path: path.to_owned(),
        source,
    })
}

impl Kernel {
    /// The kernel named in `<cache>/kernel-package` (written by
    /// fetch-debs.sh), checked to be complete.
    pub fn from_cache(cache: &Path) -> Result<Kernel, KernelError> {
        let name_file = cache.join("kernel-package");
        let name = String::from_utf8_lossy(&read(&name_file)?)
            .trim()
            .to_owned();
        let release = name
            .strip_prefix("linux-image-")
            .filter(|r| !r.is_empty() && !r.contains('/'))
            .ok_or_else(|| KernelError::BadPackageName {
                path: name_file.clone(),
                name: name.clone(),
            })?
            .to_owned();
        let kernel = Kernel {
            dir: cache.join(&name),
            release,
        };
        for (what, path) in [
            ("boot/config-<release>", kernel.config()),
            ("boot/vmlinuz-<release>", kernel.vmlinuz()),
            (
                "lib/modules/<release>/modules.builtin",
                kernel.modules_dir().join("modules.builtin"),
            ),
        ] {
            if !path.is_file() {
                return Err(KernelError::Incomplete {
                    dir: kernel.dir.clone(),
                    what,
                    release: kernel.release.clone(),
                });
            }
        }
        Ok(kernel)
    }

    pub fn config(&self) -> PathBuf {
        self.dir
            .join("boot")
            .join(format!("config-{}", self.release))
    }

    pub fn vmlinuz(&self) -> PathBuf {
        self.dir
            .join("boot")
            .join(format!("vmlinuz-{}", self.release))
    }

    pub fn modules_dir(&self) -> PathBuf {
        self.dir.join("lib/modules").join(&self.release)
    }
}

/// Decompresses the kernel's embedded xz payload. The x86 boot stub keeps
/// the compressed kernel as a raw xz stream (x86 BCJ + LZMA2, which is why
/// this uses liblzma), followed by other data; decoding stops at the end of
/// the first stream. Each occurrence of the magic is tried in turn in case
/// the bytes also occur by chance before the real stream.
pub fn extract_vmlinux(vmlinuz: &[u8]) -> Option<(usize, Vec<u8>)> {
    let starts: Vec<usize> = vmlinuz
        .windows(XZ_MAGIC.len())
        .enumerate()
        .filter(|(_, w)| w == XZ_MAGIC)
        .map(|(i, _)| i)
        .collect();
    starts
        .into_iter()
        .find_map(|start| decode_one_stream(&vmlinuz[start..]).map(|out| (start, out)))
}

/// Decodes the xz stream at the start of `data`, stopping at its end.
/// `None` if it is not a valid stream or does not decode to an ELF file.
fn decode_one_stream(data: &[u8]) -> Option<Vec<u8>> {
    use liblzma::stream::{Action, Status, Stream};
    // Without the CONCATENATED flag liblzma reports StreamEnd at the end of
    // the first stream, which is what lets the trailing bytes be ignored.
    let mut stream = Stream::new_stream_decoder(u64::MAX, 0).ok()?;
    let mut out = Vec::with_capacity(data.len() * 4);
    loop {
        let consumed = usize::try_from(stream.total_in()).ok()?;
        let input = &data[consumed..];
        let action = if input.is_empty() {
            Action::Finish
        } else {
            Action::Run
        };
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(1 << 20));
        }
        let produced = out.len();
        match stream.process_vec(input, &mut out, action) {
            Ok(Status::StreamEnd) => break,
            // Input exhausted and nothing more comes out: truncated stream.
            Ok(_) if input.is_empty() && out.len() == produced => return None,
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    out.starts_with(ELF_MAGIC).then_some(out)
}

fn xz_magic_count(data: &[u8]) -> usize {
    data.windows(XZ_MAGIC.len())
        .filter(|w| w == XZ_MAGIC)
        .count()
}

/// What [`install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub vmlinuz_bytes: u64,
    pub vmlinux_bytes: u64,
    /// False when an up-to-date vmlinux was already there.
    pub vmlinux_extracted: bool,
}

/// Writes `<out>/vmlinuz`, `<out>/vmlinux` (unless newer than the
/// package's vmlinuz already) and `<out>/kernel.release`.
pub fn install(kernel: &Kernel, out: &Path) -> Result<Installed, KernelError> {
    let src = kernel.vmlinuz();
    let vmlinuz = read(&src)?;
    let dest = out.join("vmlinuz");
    if std::fs::read(&dest).ok().as_deref() != Some(&vmlinuz[..]) {
        write_atomic(&dest, &vmlinuz)?;
    }
    let vmlinux_path = out.join("vmlinux");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (mtime(&vmlinux_path), mtime(&src)) {
        (Some(built), Some(source)) => built > source,
        _ => false,
    };
    let (vmlinux_bytes, extracted) = if fresh {
        (
            std::fs::metadata(&vmlinux_path)
                .map(|m| m.len())
                .unwrap_or(0),
            false,
        )
    } else {
        let (_, vmlinux) = extract_vmlinux(&vmlinuz).ok_or_else(|| KernelError::NoVmlinux {
            path: src.clone(),
            tried: xz_magic_count(&vmlinuz),
        })?;
        write_atomic(&vmlinux_path, &vmlinux)?;
        (vmlinux.len() as u64, true)
    };
    write_atomic(
        &out.join("kernel.release"),
        format!("{}\n", kernel.release).as_bytes(),
    )?;
    Ok(Installed {
        vmlinuz_bytes: vmlinuz.len() as u64,
        vmlinux_bytes,
        vmlinux_extracted: extracted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 1);
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn finds_the_stream_after_a_false_magic_and_ignores_trailing_bytes() {
        let elf = b"\x7FELF\x02\x01\x01 pretend kernel".repeat(100);
        let mut vmlinuz = b"boot stub ".to_vec();
        vmlinuz.extend_from_slice(XZ_MAGIC); // a stray magic: not a stream
        vmlinuz.extend_from_slice(b"junk");
        vmlinuz.extend_from_slice(&xz(&elf));
        vmlinuz.extend_from_slice(b"\x00\x10\x00\x00 trailing size and relocs");
        let (start, out) = extract_vmlinux(&vmlinuz).unwrap();
        assert_eq!(start, 20); // "boot stub " + stray magic + "junk"
        assert_eq!(out, elf);
    }

    #[test]
    fn non_elf_payload_is_rejected() {
        let mut vmlinuz = b"stub".to_vec();
        vmlinuz.extend_from_slice(&xz(b"not an elf"));
        assert_eq!(extract_vmlinux(&vmlinuz), None);
    }

    #[test]
    fn release_from_cache() {
        let cache = tempfile::tempdir().unwrap();
        let c = cache.path();
        std::fs::write(c.join("kernel-package"), "linux-image-6.1.0-56-amd64\n").unwrap();
        let err = Kernel::from_cache(c).unwrap_err().to_string();
        assert!(err.contains("boot/config-<release>"), "{err}");
        let k = c.join("linux-image-6.1.0-56-amd64");
        std::fs::create_dir_all(k.join("boot")).unwrap();
        std::fs::create_dir_all(k.join("lib/modules/6.1.0-56-amd64")).unwrap();
        std::fs::write(k.join("boot/config-6.1.0-56-amd64"), "").unwrap();
        std::fs::write(k.join("boot/vmlinuz-6.1.0-56-amd64"), "").unwrap();
        std::fs::write(k.join("lib/modules/6.1.0-56-amd64/modules.builtin"), "").unwrap();
        let kernel = Kernel::from_cache(c).unwrap();
        assert_eq!(kernel.release, "6.1.0-56-amd64");
        std::fs::write(c.join("kernel-package"), "etcd-server\n").unwrap();
        assert!(matches!(
            Kernel::from_cache(c),
            Err(KernelError::BadPackageName { .. })
        ));
    }
}
