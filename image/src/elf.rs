//! Finds what a dynamically linked executable needs at run time: its
//! program interpreter (`PT_INTERP`) and the transitive closure of its
//! `DT_NEEDED` libraries, resolved inside extracted package trees (never
//! the build host's `/`), so the image depends only on the .debs.
//!
//! Several package trees are searched as one filesystem, the way the image
//! merges them: layers, the first tree that has a path wins. Libraries of
//! one program often come from several packages (mke2fs: libext2fs2,
//! libcom-err2, libblkid1, libuuid1 and libc6).

use std::collections::{BTreeSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};

use object::elf::{FileHeader64, DT_NEEDED, PT_INTERP};
use object::read::elf::{FileHeader, ProgramHeader};
use object::Endianness;

/// Where the dynamic loader of an x86-64 Debian system finds libraries
/// without an ld.so.cache (the image has none), in its order.
pub const SEARCH_DIRS: &[&str] = &["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64"];

/// Symlink hops allowed while resolving one path (Linux's limit is 40).
const MAX_LINKS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid 64-bit ELF file")]
    Parse {
        path: PathBuf,
        #[source]
        source: object::read::Error,
    },
    #[error("library {name} (needed by {needed_by}) not found in {dirs:?} under any of {}", list(.roots))]
    NotFound {
        name: String,
        needed_by: PathBuf,
        roots: Vec<PathBuf>,
        dirs: &'static [&'static str],
    },
    #[error("interpreter {interp} of {elf} not found under any of {}", list(.roots))]
    NoInterpreter {
        interp: PathBuf,
        elf: PathBuf,
        roots: Vec<PathBuf>,
    },
    #[error("too many levels of symbolic links resolving {path} under {}", list(.roots))]
    Loop { path: PathBuf, roots: Vec<PathBuf> },
    #[error("{path} under {root} is not a regular file")]
    NotAFile { path: PathBuf, root: PathBuf },
}

/// `a, b, c` for error messages.
fn list(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}

fn owned<P: AsRef<Path>>(roots: &[P]) -> Vec<PathBuf> {
    roots.iter().map(|r| r.as_ref().to_owned()).collect()
}

/// One thing the image must contain for the executable to run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Needed {
    /// A regular file, copied from `source` to `image_path`.
    File {
        image_path: PathBuf,
        source: PathBuf,
    },
    /// A symlink as it is in the tree (e.g. `/lib64/ld-linux-x86-64.so.2`
    /// pointing at the real loader).
    Symlink {
        image_path: PathBuf,
        target: PathBuf,
    },
}

impl Needed {
    pub fn image_path(&self) -> &Path {
        match self {
            Needed::File { image_path, .. } | Needed::Symlink { image_path, .. } => image_path,
        }
    }
}

/// What one ELF file asks for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dynamic {
    pub interpreter: Option<PathBuf>,
    pub needed: Vec<String>,
}

/// Reads `PT_INTERP` and the `DT_NEEDED` entries of an ELF64 file.
pub fn read_dynamic(path: &Path) -> Result<Dynamic, ElfError> {
    let data = std::fs::read(path).map_err(|source| ElfError::Read {
        path: path.to_owned(),
        source,
    })?;
    let err = |source| ElfError::Parse {
        path: path.to_owned(),
        source,
    };
    let header = FileHeader64::<Endianness>::parse(&*data).map_err(err)?;
    let endian = header.endian().map_err(err)?;
    let mut dynamic = Dynamic::default();
    for segment in header.program_headers(endian, &*data).map_err(err)? {
        if segment.p_type(endian) == PT_INTERP {
            if let Some(interp) = segment.interpreter(endian, &*data).map_err(err)? {
                dynamic.interpreter = Some(PathBuf::from(String::from_utf8_lossy(interp).as_ref()));
            }
        }
    }
    let sections = header.sections(endian, &*data).map_err(err)?;
    let table = sections.dynamic_table(endian, &*data).map_err(err)?;
    for entry in table.iter() {
        if entry.tag == DT_NEEDED {
            let name = table.string(entry).map_err(err)?;
            dynamic
                .needed
                .push(String::from_utf8_lossy(name).into_owned());
        }
    }
    Ok(dynamic)
}

/// The interpreter and every library `elf` needs, transitively, resolved in
/// `roots` (extracted package trees, or `/`), searched as layers: for each
/// path the loader would try, the first root that has it wins. `elf` itself
/// is not in the result. Symlinks met on the way (the last component of a
/// looked-up path) are returned as symlinks so the image keeps the same
/// layout; the result is sorted by image path.
///
/// RPATH/RUNPATH and `$ORIGIN` are not honoured: Debian's system libraries
/// do not use them, and etcd and mke2fs link only system libraries.
pub fn needed_closure<P: AsRef<Path>>(elf: &Path, roots: &[P]) -> Result<Vec<Needed>, ElfError> {
    let roots: Vec<&Path> = roots.iter().map(AsRef::as_ref).collect();
    let mut items: BTreeSet<Needed> = BTreeSet::new();
    let mut seen_files: BTreeSet<PathBuf> = BTreeSet::from([elf.to_owned()]);
    let mut queue: VecDeque<PathBuf> = VecDeque::from([elf.to_owned()]);
    while let Some(host_file) = queue.pop_front() {
        let dynamic = read_dynamic(&host_file)?;
        if let Some(interp) = &dynamic.interpreter {
            let image_path = normalize(Path::new("/").join(interp).as_path());
            match resolve_file(&roots, &image_path)? {
                Some((real, chain)) => {
                    items.extend(chain);
                    if seen_files.insert(real.clone()) {
                        queue.push_back(real);
                    }
                }
                None => {
                    return Err(ElfError::NoInterpreter {
                        interp: interp.clone(),
                        elf: host_file.clone(),
                        roots: owned(&roots),
                    })
                }
            }
        }
        for name in &dynamic.needed {
            let (real, chain) = find_library(&roots, name)?.ok_or_else(|| ElfError::NotFound {
                name: name.clone(),
                needed_by: host_file.clone(),
                roots: owned(&roots),
                dirs: SEARCH_DIRS,
            })?;
            items.extend(chain);
            if seen_files.insert(real.clone()) {
                queue.push_back(real);
            }
        }
    }
    Ok(items.into_iter().collect())
}

/// Looks `name` up the way the loader does: a name with a `/` is a path,
/// anything else is searched for in [`SEARCH_DIRS`] (each directory in all
/// roots before the next directory, as in the merged image).
fn find_library(roots: &[&Path], name: &str) -> Result<Option<(PathBuf, Vec<Needed>)>, ElfError> {
    if name.contains('/') {
        return resolve_file(roots, &normalize(&Path::new("/").join(name)));
    }
    // Every directory as it is named first, then with the merged-/usr
    // aliases ([`usr_merged`]), so a package that has the file at the
    // looked-up path wins over one reached through an alias.
    for merged in [false, true] {
        for dir in SEARCH_DIRS {
            let image_path = Path::new("/").join(dir).join(name);
            if let Some(found) = resolve(roots, &image_path, merged)? {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}

/// Resolves `image_path` (absolute, inside the image made of `roots`) to a
/// regular file. Each hop looks in the roots in order and takes the first
/// that has the path, so a symlink in one package may point at a file in
/// another. Returns the host path of that file and the entries that
/// reproduce the lookup in the image: a `Symlink` for each final-component
/// symlink, then the `File`. Directory symlinks are followed (within one
/// root) for reading only; the entries keep the looked-up directory,
/// because the image has real directories (e.g. a merged-/usr host's
/// `/lib` → `usr/lib` would otherwise put the file where the loader does
/// not look). `Ok(None)` when nothing is there.
/// Paths are taken as named first, then with the merged-/usr aliases.
pub fn resolve_file(
    roots: &[&Path],
    image_path: &Path,
) -> Result<Option<(PathBuf, Vec<Needed>)>, ElfError> {
    match resolve(roots, image_path, false)? {
        Some(found) => Ok(Some(found)),
        None => resolve(roots, image_path, true),
    }
}

/// [`resolve_file`], with (`merged`) or without the [`usr_merged`] aliases.
fn resolve(
    roots: &[&Path],
    image_path: &Path,
    merged: bool,
) -> Result<Option<(PathBuf, Vec<Needed>)>, ElfError> {
    let mut chain = Vec::new();
    let mut nominal = normalize(image_path);
    for _ in 0..MAX_LINKS {
        let (Some(parent), Some(file_name)) = (nominal.parent(), nominal.file_name()) else {
            return Ok(None);
        };
        let Some((root, host, meta)) = lookup(roots, parent, file_name, merged)? else {
            return Ok(None);
        };
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&host).map_err(|source| ElfError::Read {
                path: host.clone(),
                source,
            })?;
            let next = normalize(&parent.join(&target));
            chain.push(Needed::Symlink {
                image_path: nominal,
                target,
            });
            nominal = next;
        } else if meta.is_file() {
            chain.push(Needed::File {
                image_path: nominal,
                source: host.clone(),
            });
            return Ok(Some((host, chain)));
        } else {
            return Err(ElfError::NotAFile {
                path: nominal,
                root: root.to_owned(),
            });
        }
    }
    Err(ElfError::Loop {
        path: image_path.to_owned(),
        roots: owned(roots),
    })
}

/// The first root holding `parent/file_name` (without following a final
/// symlink): that root, the host path and its metadata; with `merged`, the
/// [`usr_merged`] alias of `parent` is tried after `parent` in every root.
fn lookup<'r>(
    roots: &[&'r Path],
    parent: &Path,
    file_name: &OsStr,
    merged: bool,
) -> Result<Option<(&'r Path, PathBuf, std::fs::Metadata)>, ElfError> {
    let alias = if merged { usr_merged(parent) } else { None };
    for dir in std::iter::once(parent).chain(alias.as_deref()) {
        for root in roots {
            let host = resolve_dir(root, dir)?.join(file_name);
            match std::fs::symlink_metadata(&host) {
                Ok(meta) => return Ok(Some((root, host, meta))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(ElfError::Read { path: host, source }),
            }
        }
    }
    Ok(None)
}

/// `/usr/<dir>` for a directory under `/lib`, `/lib64`, `/bin` or `/sbin`.
/// Packages built for a merged /usr (Debian trixie's libc6 ships
/// `/usr/lib64/ld-linux-x86-64.so.2`, while etcd's interpreter is
/// `/lib64/ld-linux-x86-64.so.2`) rely on the system's `/lib64 → usr/lib64`
/// links, which no package carries; the image keeps the looked-up path
/// (real directories under `/lib`), so both layouts resolve.
fn usr_merged(dir: &Path) -> Option<PathBuf> {
    let rel = dir.strip_prefix("/").ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    matches!(first, "lib" | "lib64" | "bin" | "sbin").then(|| Path::new("/usr").join(rel))
}

/// The host path of directory `dir` (absolute, inside `root`), following
/// symlinks component by component with absolute targets taken relative to
/// `root`, like a chroot would: the host's own `/` is never consulted.
fn resolve_dir(root: &Path, dir: &Path) -> Result<PathBuf, ElfError> {
    let mut resolved = PathBuf::from("/");
    let mut pending: VecDeque<OsString> = components(dir);
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        let host = root.join(candidate.strip_prefix("/").expect("absolute"));
        match std::fs::symlink_metadata(&host) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_LINKS {
                    return Err(ElfError::Loop {
                        path: dir.to_owned(),
                        roots: vec![root.to_owned()],
                    });
                }
                let target = std::fs::read_link(&host).map_err(|source| ElfError::Read {
                    path: host.clone(),
                    source,
                })?;
                if target.is_absolute() {
                    resolved = PathBuf::from("/");
                }
                for part in components(&target).into_iter().rev() {
                    pending.push_front(part);
                }
            }
            // A missing or non-symlink component: keep it; a later stat of
            // the file reports "not found".
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved.strip_prefix("/").expect("absolute")))
}

/// The normal and `..` components of a path (`.` and `/` dropped).
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// Lexically normalizes an absolute path (`.` dropped, `..` pops, never
/// above `/`).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for part in components(path) {
        if part == ".." {
            out.pop();
        } else {
            out.push(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn file<'a>(items: &'a [Needed], path: &str) -> Option<&'a Needed> {
        items.iter().find(|i| i.image_path() == Path::new(path))
    }

    /// /bin/ls on the build host (Debian: libselinux, libc, the loader).
    #[test]
    fn host_ls() {
        let ls = Path::new("/bin/ls");
        let dynamic = read_dynamic(ls).unwrap();
        if dynamic.interpreter.is_none() {
            eprintln!("/bin/ls is static here: skipping");
            return;
        }
        let items = needed_closure(ls, &[Path::new("/")]).unwrap();
        let names: Vec<String> = items
            .iter()
            .map(|i| {
                i.image_path()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert!(names.iter().any(|n| n == "libc.so.6"), "{items:#?}");
        let interp = dynamic.interpreter.unwrap();
        assert!(
            file(&items, interp.to_str().unwrap()).is_some(),
            "{items:#?}"
        );
        // Every chain ends in a real file that exists on the host.
        for item in &items {
            if let Needed::File { source, .. } = item {
                assert!(source.is_file(), "{source:?}");
            }
        }
        // Sorted, no duplicates.
        let mut sorted = items.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, items);
    }

    /// A fixture root shaped like the libc6 .deb: the interpreter is an
    /// absolute symlink, libc is found in the first search dir, and a
    /// directory symlink inside the root must not escape to the host.
    #[test]
    fn fixture_root() {
        let ls = Path::new("/bin/ls");
        let dynamic = read_dynamic(ls).unwrap();
        if dynamic.interpreter.is_none() {
            eprintln!("/bin/ls is static here: skipping");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let lib = r.join("lib/x86_64-linux-gnu");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::create_dir_all(r.join("lib64")).unwrap();
        // Every library /bin/ls needs is a copy of the host's libc: no
        // NEEDED of its own but the loader, which keeps the fixture small.
        let host = needed_closure(ls, &[Path::new("/")]).unwrap();
        let host_libc = host
            .iter()
            .find_map(|i| match i {
                Needed::File { source, .. } if source.ends_with("libc.so.6") => {
                    Some(source.clone())
                }
                _ => None,
            })
            .unwrap();
        for name in &dynamic.needed {
            std::fs::copy(&host_libc, lib.join(name)).unwrap();
        }
        // The loader: a real file plus /lib64's absolute symlink to it, as
        // in the libc6 package.
        let interp = dynamic.interpreter.clone().unwrap();
        let interp_name = interp.file_name().unwrap();
        std::fs::copy(&host_libc, lib.join(interp_name)).unwrap();
        symlink(
            Path::new("/lib/x86_64-linux-gnu").join(interp_name),
            r.join("lib64").join(interp_name),
        )
        .unwrap();

        let items = needed_closure(ls, &[r]).unwrap();
        let lib_name = |n: &str| format!("/lib/x86_64-linux-gnu/{n}");
        for name in &dynamic.needed {
            assert_eq!(
                file(&items, &lib_name(name)),
                Some(&Needed::File {
                    image_path: lib_name(name).into(),
                    source: lib.join(name),
                })
            );
        }
        assert_eq!(
            file(&items, interp.to_str().unwrap()),
            Some(&Needed::Symlink {
                image_path: interp.clone(),
                target: Path::new("/lib/x86_64-linux-gnu").join(interp_name),
            })
        );
        for item in &items {
            if let Needed::File { source, .. } = item {
                assert!(source.starts_with(r), "escaped the root: {source:?}");
            }
        }

        // Without the library the error names it.
        std::fs::remove_file(lib.join("libc.so.6")).unwrap();
        let err = needed_closure(ls, &[r]).unwrap_err().to_string();
        assert!(err.contains("library libc.so.6"), "{err}");
    }

    /// Package trees searched as layers, as the image merges them: each
    /// library is found in the tree that has it, the first tree wins a path
    /// present in two, a directory earlier in [`SEARCH_DIRS`] wins over an
    /// earlier tree, and a symlink in one tree may point into another.
    #[test]
    fn roots_are_layers() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let (lib, usr_lib) = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu");
        for root in [&a, &b] {
            for d in [lib, usr_lib] {
                std::fs::create_dir_all(root.join(d)).unwrap();
            }
        }
        std::fs::write(a.join(lib).join("libone.so.1"), b"a").unwrap();
        std::fs::write(b.join(lib).join("libone.so.1"), b"b").unwrap();
        symlink("libtwo.so.1.0", b.join(usr_lib).join("libtwo.so.1")).unwrap();
        std::fs::write(a.join(usr_lib).join("libtwo.so.1.0"), b"a").unwrap();
        std::fs::write(a.join(usr_lib).join("libthree.so.3"), b"a").unwrap();
        std::fs::write(b.join(lib).join("libthree.so.3"), b"b").unwrap();
        let (a, b) = (a.as_path(), b.as_path());

        let source = |roots: &[&Path], name: &str| {
            let (host, _) = find_library(roots, name).unwrap().unwrap();
            host
        };
        assert_eq!(
            source(&[a, b], "libone.so.1"),
            a.join(lib).join("libone.so.1")
        );
        assert_eq!(
            source(&[b, a], "libone.so.1"),
            b.join(lib).join("libone.so.1")
        );
        assert_eq!(
            source(&[a, b], "libthree.so.3"),
            b.join(lib).join("libthree.so.3")
        );
        let (_, chain) = find_library(&[a, b], "libtwo.so.1").unwrap().unwrap();
        assert_eq!(
            chain,
            [
                Needed::Symlink {
                    image_path: "/usr/lib/x86_64-linux-gnu/libtwo.so.1".into(),
                    target: "libtwo.so.1.0".into()
                },
                Needed::File {
                    image_path: "/usr/lib/x86_64-linux-gnu/libtwo.so.1.0".into(),
                    source: a.join(usr_lib).join("libtwo.so.1.0")
                },
            ]
        );
        assert_eq!(find_library(&[b], "libtwo.so.1").unwrap(), None);
        assert_eq!(find_library(&[a, b], "libnone.so.0").unwrap(), None);
    }

    /// /bin/ls's closure with its libraries split over two fixture package
    /// trees (libc and the loader in one, the rest in another, under
    /// /usr/lib): every library is found, and a missing one is reported with
    /// every tree searched.
    #[test]
    fn closure_across_roots() {
        let ls = Path::new("/bin/ls");
        let dynamic = read_dynamic(ls).unwrap();
        let Some(interp) = dynamic.interpreter.clone() else {
            eprintln!("/bin/ls is static here: skipping");
            return;
        };
        let host_libc = needed_closure(ls, &[Path::new("/")])
            .unwrap()
            .into_iter()
            .find_map(|i| match i {
                Needed::File { source, .. } if source.ends_with("libc.so.6") => Some(source),
                _ => None,
            })
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (libc6, other) = (dir.path().join("libc6"), dir.path().join("other"));
        let libc_dir = libc6.join("lib/x86_64-linux-gnu");
        let other_dir = other.join("usr/lib/x86_64-linux-gnu");
        std::fs::create_dir_all(&libc_dir).unwrap();
        std::fs::create_dir_all(&other_dir).unwrap();
        // Copies of the host's libc stand in for every library: no NEEDED
        // of their own but the loader.
        let interp_name = interp.file_name().unwrap();
        std::fs::copy(&host_libc, libc_dir.join(interp_name)).unwrap();
        std::fs::copy(&host_libc, libc_dir.join("libc.so.6")).unwrap();
        let others: Vec<&String> = dynamic
            .needed
            .iter()
            .filter(|n| *n != "libc.so.6")
            .collect();
        for name in &others {
            std::fs::copy(&host_libc, other_dir.join(name)).unwrap();
        }
        let interp_dir = libc6.join(interp.parent().unwrap().strip_prefix("/").unwrap());
        if !interp_dir.join(interp_name).exists() {
            std::fs::create_dir_all(&interp_dir).unwrap();
            symlink(
                Path::new("/lib/x86_64-linux-gnu").join(interp_name),
                interp_dir.join(interp_name),
            )
            .unwrap();
        }

        let items = needed_closure(ls, &[&libc6, &other]).unwrap();
        assert_eq!(
            file(&items, "/lib/x86_64-linux-gnu/libc.so.6"),
            Some(&Needed::File {
                image_path: "/lib/x86_64-linux-gnu/libc.so.6".into(),
                source: libc_dir.join("libc.so.6"),
            })
        );
        for name in &others {
            let image_path = format!("/usr/lib/x86_64-linux-gnu/{name}");
            assert_eq!(
                file(&items, &image_path),
                Some(&Needed::File {
                    image_path: image_path.clone().into(),
                    source: other_dir.join(name),
                })
            );
        }
        assert!(
            file(&items, interp.to_str().unwrap()).is_some(),
            "{items:#?}"
        );

        // A tree left out: the error names the library and both trees.
        std::fs::remove_file(libc_dir.join("libc.so.6")).unwrap();
        let err = needed_closure(ls, &[&libc6, &other])
            .unwrap_err()
            .to_string();
        assert!(err.contains("library libc.so.6"), "{err}");
        assert!(
            err.contains(&format!("{}, {}", libc6.display(), other.display())),
            "{err}"
        );
    }

    /// Debian trixie's libc6 is built for a merged /usr: the loader is at
    /// /usr/lib64 and /usr/lib/x86_64-linux-gnu, while the program's
    /// interpreter says /lib64. The closure resolves through the aliases
    /// and keeps the looked-up paths; a file at the named path still wins.
    #[test]
    fn merged_usr_packages_resolve_through_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let (libc6, old) = (dir.path().join("libc6"), dir.path().join("old"));
        std::fs::create_dir_all(libc6.join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::fs::create_dir_all(libc6.join("usr/lib64")).unwrap();
        std::fs::create_dir_all(old.join("lib/x86_64-linux-gnu")).unwrap();
        std::fs::write(libc6.join("usr/lib/x86_64-linux-gnu/ld.so"), b"l").unwrap();
        symlink(
            "../lib/x86_64-linux-gnu/ld.so",
            libc6.join("usr/lib64/ld.so"),
        )
        .unwrap();
        std::fs::write(libc6.join("usr/lib/x86_64-linux-gnu/libc.so.6"), b"c").unwrap();
        std::fs::write(libc6.join("usr/lib/x86_64-linux-gnu/libz.so.1"), b"new").unwrap();
        std::fs::write(old.join("lib/x86_64-linux-gnu/libz.so.1"), b"old").unwrap();
        let roots = [libc6.as_path(), old.as_path()];

        let (host, chain) = resolve_file(&roots, Path::new("/lib64/ld.so"))
            .unwrap()
            .unwrap();
        assert_eq!(host, libc6.join("usr/lib/x86_64-linux-gnu/ld.so"));
        assert_eq!(
            chain,
            [
                Needed::Symlink {
                    image_path: "/lib64/ld.so".into(),
                    target: "../lib/x86_64-linux-gnu/ld.so".into()
                },
                Needed::File {
                    image_path: "/lib/x86_64-linux-gnu/ld.so".into(),
                    source: host.clone()
                },
            ]
        );
        let table: &[(&str, &str, &Path)] = &[
            // Found at its own path, /usr/lib/x86_64-linux-gnu (a search
            // dir), before any alias is tried.
            ("libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", &libc6),
            // Found at the named /lib path in the old tree before any alias.
            ("libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1", &old),
        ];
        for (name, image_path, root) in table {
            let (host, chain) = find_library(&roots, name).unwrap().unwrap();
            assert!(host.starts_with(root), "{name}: {host:?}");
            assert_eq!(
                chain.last().unwrap().image_path(),
                Path::new(image_path),
                "{name}"
            );
        }
        assert_eq!(usr_merged(Path::new("/etc/x")), None);
        assert_eq!(usr_merged(Path::new("/libexec")), None);
        assert_eq!(usr_merged(Path::new("/sbin")), Some("/usr/sbin".into()));
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        std::fs::write(r.join("usr/lib/libx.so.1.2"), b"x").unwrap();
        // Merged-/usr style directory symlink, absolute and relative file links.
        symlink("usr/lib", r.join("lib")).unwrap();
        symlink("libx.so.1.2", r.join("usr/lib/libx.so.1")).unwrap();
        symlink("/lib/libx.so.1", r.join("usr/lib/abs")).unwrap();
        symlink("/etc", r.join("usr/lib/escape")).unwrap();
        symlink("loop", r.join("usr/lib/loop")).unwrap();

        let (host, chain) = resolve_file(&[r], Path::new("/lib/abs")).unwrap().unwrap();
        assert_eq!(host, r.join("usr/lib/libx.so.1.2"));
        assert_eq!(
            chain,
            [
                Needed::Symlink {
                    image_path: "/lib/abs".into(),
                    target: "/lib/libx.so.1".into()
                },
                Needed::Symlink {
                    image_path: "/lib/libx.so.1".into(),
                    target: "libx.so.1.2".into()
                },
                Needed::File {
                    image_path: "/lib/libx.so.1.2".into(),
                    source: r.join("usr/lib/libx.so.1.2")
                },
            ]
        );
        // /etc inside the root does not exist, whatever the host has.
        assert_eq!(
            resolve_file(&[r], Path::new("/lib/escape/hostname")).unwrap(),
            None
        );
        assert!(matches!(
            resolve_file(&[r], Path::new("/lib/loop")),
            Err(ElfError::Loop { .. })
        ));
    }
}
