//! Reads a kernel module's `.modinfo` section: the NUL-separated
//! `key=value` strings that modinfo(8) and depmod(8) read. The image builder
//! needs four keys: `name`, `alias`, `depends` and `softdep`.

use std::path::{Path, PathBuf};

use object::elf::FileHeader64;
use object::read::elf::{FileHeader, SectionHeader};
use object::Endianness;

#[derive(Debug, thiserror::Error)]
pub enum ModinfoError {
    #[error("reading module {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("module {path} is not a valid 64-bit ELF object")]
    Elf {
        path: PathBuf,
        #[source]
        source: object::read::Error,
    },
    #[error("module {path} has no .modinfo section")]
    NoModinfo { path: PathBuf },
}

/// The parts of `.modinfo` the image builder uses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ModInfo {
    /// `name=` (absent in very old modules; the file stem is used then).
    pub name: Option<String>,
    /// `alias=` patterns in section order (fnmatch syntax).
    pub aliases: Vec<String>,
    /// `depends=`: modules whose symbols this one uses.
    pub depends: Vec<String>,
    /// Raw `softdep=` values (`pre: a b post: c`), for modules.softdep.
    pub softdeps: Vec<String>,
    /// Names from every softdep's `pre:` part.
    pub softdep_pre: Vec<String>,
    /// Names from every softdep's `post:` part.
    pub softdep_post: Vec<String>,
}

/// Module names treat `-` and `_` alike; the kernel and kmod store `_`.
pub fn normalize_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Parses raw `.modinfo` bytes. Unknown keys are ignored, and so are the
/// empty strings that alignment padding leaves between entries.
pub fn parse(bytes: &[u8]) -> ModInfo {
    let mut info = ModInfo::default();
    for entry in bytes.split(|&b| b == 0) {
        let Ok(entry) = std::str::from_utf8(entry) else {
            continue; // parm descriptions may be in any encoding; we never need them
        };
        let Some((key, value)) = entry.split_once('=') else {
            continue;
        };
        match key {
            "name" => info.name = Some(normalize_name(value)),
            "alias" => info.aliases.push(value.to_owned()),
            "depends" => info.depends.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(normalize_name),
            ),
            "softdep" => {
                let (pre, post) = parse_softdep(value);
                info.softdep_pre.extend(pre);
                info.softdep_post.extend(post);
                info.softdeps.push(value.trim().to_owned());
            }
            _ => {}
        }
    }
    info
}

/// Splits `pre: a b post: c` into its two lists. Names are kept as written:
/// they may be aliases (`crypto-crc32c`), resolved later against the index.
pub fn parse_softdep(value: &str) -> (Vec<String>, Vec<String>) {
    #[derive(Clone, Copy)]
    enum Part {
        None,
        Pre,
        Post,
    }
    let (mut pre, mut post) = (Vec::new(), Vec::new());
    let mut part = Part::None;
    for token in value.split_whitespace() {
        match token {
            "pre:" => part = Part::Pre,
            "post:" => part = Part::Post,
            name => match part {
                Part::Pre => pre.push(name.to_owned()),
                Part::Post => post.push(name.to_owned()),
                // kmod ignores names before the first "pre:"/"post:".
                Part::None => {}
            },
        }
    }
    (pre, post)
}

/// The `.modinfo` section of an ELF module, as raw bytes.
pub fn modinfo_section(data: &[u8], path: &Path) -> Result<Vec<u8>, ModinfoError> {
    let elf_err = |source| ModinfoError::Elf {
        path: path.to_owned(),
        source,
    };
    let header = FileHeader64::<Endianness>::parse(data).map_err(elf_err)?;
    let endian = header.endian().map_err(elf_err)?;
    let sections = header.sections(endian, data).map_err(elf_err)?;
    let (_, section) = sections
        .section_by_name(endian, b".modinfo")
        .ok_or_else(|| ModinfoError::NoModinfo {
            path: path.to_owned(),
        })?;
    Ok(section.data(endian, data).map_err(elf_err)?.to_vec())
}

/// Reads and parses a `.ko` file's `.modinfo`.
pub fn read_module(path: &Path) -> Result<ModInfo, ModinfoError> {
    let data = std::fs::read(path).map_err(|source| ModinfoError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(parse(&modinfo_section(&data, path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parse_table() {
        let cases: Vec<(&[u8], ModInfo)> = vec![
            (b"", ModInfo::default()),
            (
                // Real layout: padding NULs between entries, a trailing NUL.
                b"license=GPL\0\0\0alias=virtio:d00000004v*\0depends=virtio,virtio_ring\0\
                  retpoline=Y\0intree=Y\0name=virtio_rng\0vermagic=6.1.0 SMP\0",
                ModInfo {
                    name: Some("virtio_rng".into()),
                    aliases: v(&["virtio:d00000004v*"]),
                    depends: v(&["virtio", "virtio_ring"]),
                    ..ModInfo::default()
                },
            ),
            (
                b"depends=\0name=nls_cp437\0",
                ModInfo {
                    name: Some("nls_cp437".into()),
                    ..ModInfo::default()
                },
            ),
            (
                b"softdep=pre: crypto-crc32c\0alias=fs-ext4\0alias=ext3\0depends=jbd2,mbcache,crc16\0name=ext4\0",
                ModInfo {
                    name: Some("ext4".into()),
                    aliases: v(&["fs-ext4", "ext3"]),
                    depends: v(&["jbd2", "mbcache", "crc16"]),
                    softdeps: v(&["pre: crypto-crc32c"]),
                    softdep_pre: v(&["crypto-crc32c"]),
                    softdep_post: vec![],
                },
            ),
            (
                // Dashes in names are normalized; softdep names are not (aliases).
                b"name=virtio-rng\0depends=a-b\0softdep=pre: x-y post: z\0softdep=post: w\0",
                ModInfo {
                    name: Some("virtio_rng".into()),
                    depends: v(&["a_b"]),
                    softdeps: v(&["pre: x-y post: z", "post: w"]),
                    softdep_pre: v(&["x-y"]),
                    softdep_post: v(&["z", "w"]),
                    ..ModInfo::default()
                },
            ),
            (
                // Not UTF-8 and no '=' : skipped.
                b"parm=x:\xff\xfe\0garbage\0name=m\0",
                ModInfo {
                    name: Some("m".into()),
                    ..ModInfo::default()
                },
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(parse(bytes), want, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn softdep_parts() {
        let cases = [
            ("pre: a b post: c", (v(&["a", "b"]), v(&["c"]))),
            ("post: c pre: a", (v(&["a"]), v(&["c"]))),
            ("  pre:   a  ", (v(&["a"]), vec![])),
            ("junk pre: a", (v(&["a"]), vec![])),
            ("", (vec![], vec![])),
        ];
        for (input, want) in cases {
            assert_eq!(parse_softdep(input), want, "{input:?}");
        }
    }

    #[test]
    fn non_elf_is_an_error() {
        let err = modinfo_section(b"not an elf", Path::new("x.ko")).unwrap_err();
        assert!(err.to_string().contains("x.ko"), "{err}");
    }
}
