//! The image's file tree, kept in memory until it is serialized: paths map
//! to what should be there (directory, file from the build host or from
//! bytes, symlink, device node). A `BTreeMap` keyed by `Path` orders entries
//! component-wise, so a directory always precedes its contents and the
//! archive order never depends on the order things were added.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use crate::cpio::{CpioError, Writer};

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("image path {path:?} must be absolute and plain (no '..')")]
    BadPath { path: PathBuf },
    #[error("image path {path} added twice with different contents ({first} and {second})")]
    Conflict {
        path: PathBuf,
        first: String,
        second: String,
    },
    #[error("image path {path} needs {parent} to be a directory")]
    NotADirectory { path: PathBuf, parent: PathBuf },
    #[error("reading {source_path} for image path {path}")]
    Read {
        path: PathBuf,
        source_path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image path {path} is not valid UTF-8")]
    NotUtf8 { path: PathBuf },
    #[error(transparent)]
    Cpio(#[from] CpioError),
}

/// What part of the image an entry belongs to, for the size breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    Init,
    Modules,
    Etcd,
    /// Programs the init runs besides etcd (mke2fs), with the libraries
    /// etcd does not already bring.
    Tools,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    /// Read from the build host at serialization time.
    HostFile(PathBuf),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir {
        perm: u32,
    },
    File {
        perm: u32,
        contents: Contents,
        category: Category,
    },
    Symlink {
        target: String,
        category: Category,
    },
    CharDev {
        perm: u32,
        major: u32,
        minor: u32,
    },
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Dir { .. } => write!(f, "a directory"),
            Node::File {
                contents: Contents::HostFile(p),
                ..
            } => write!(f, "file {}", p.display()),
            Node::File {
                contents: Contents::Bytes(b),
                ..
            } => write!(f, "{} bytes of data", b.len()),
            Node::Symlink { target, .. } => write!(f, "symlink to {target}"),
            Node::CharDev { major, minor, .. } => write!(f, "char device {major}:{minor}"),
        }
    }
}

impl Node {
    /// Equal but for the size category: one entry wanted by two parts of
    /// the image (libc, for etcd and for mke2fs).
    fn same_entry(&self, other: &Node) -> bool {
        match (self, other) {
            (
                Node::File { perm, contents, .. },
                Node::File {
                    perm: other_perm,
                    contents: other_contents,
                    ..
                },
            ) => perm == other_perm && contents == other_contents,
            (Node::Symlink { target, .. }, Node::Symlink { target: other, .. }) => target == other,
            _ => self == other,
        }
    }
}

/// Bytes of file data (and symlink targets) per category, plus the count
/// of kernel modules.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sizes {
    pub by_category: BTreeMap<Category, u64>,
    pub module_count: usize,
    /// Size of the whole archive.
    pub archive: u64,
}

#[derive(Debug, Default, Clone)]
pub struct Tree {
    /// Keys are relative (`usr/bin/etcd`), the form cpio names take.
    nodes: BTreeMap<PathBuf, Node>,
}

/// `/usr/bin/etcd` → `usr/bin/etcd`, rejecting anything that could name a
/// path outside the image.
fn key(path: &Path) -> Result<PathBuf, TreeError> {
    let bad = || TreeError::BadPath {
        path: path.to_owned(),
    };
    let mut components = path.components();
    if components.next() != Some(Component::RootDir) {
        return Err(bad());
    }
    let mut out = PathBuf::new();
    for c in components {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return Err(bad()),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(bad());
    }
    Ok(out)
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Adds `node` at `path` (absolute), creating missing parents as 0755
    /// directories. Adding the same thing twice is fine (two binaries may
    /// need the same library; it keeps the first one's category); two
    /// different things is an error.
    pub fn add(&mut self, path: impl AsRef<Path>, node: Node) -> Result<(), TreeError> {
        let path = path.as_ref();
        let key = key(path)?;
        for parent in key
            .ancestors()
            .skip(1)
            .filter(|p| !p.as_os_str().is_empty())
        {
            match self.nodes.get(parent) {
                None => {
                    self.nodes
                        .insert(parent.to_owned(), Node::Dir { perm: 0o755 });
                }
                Some(Node::Dir { .. }) => {}
                Some(_) => {
                    return Err(TreeError::NotADirectory {
                        path: path.to_owned(),
                        parent: Path::new("/").join(parent),
                    })
                }
            }
        }
        match self.nodes.get(&key) {
            None => {
                self.nodes.insert(key, node);
                Ok(())
            }
            Some(existing) if existing.same_entry(&node) => Ok(()),
            // An implicit parent directory made explicit (possibly with
            // another mode): the explicit one wins.
            Some(Node::Dir { .. }) if matches!(node, Node::Dir { .. }) => {
                self.nodes.insert(key, node);
                Ok(())
            }
            Some(existing) => Err(TreeError::Conflict {
                path: path.to_owned(),
                first: existing.to_string(),
                second: node.to_string(),
            }),
        }
    }

    pub fn dir(&mut self, path: impl AsRef<Path>, perm: u32) -> Result<(), TreeError> {
        self.add(path, Node::Dir { perm })
    }

    pub fn host_file(
        &mut self,
        path: impl AsRef<Path>,
        perm: u32,
        source: impl Into<PathBuf>,
        category: Category,
    ) -> Result<(), TreeError> {
        self.file(path, perm, Contents::HostFile(source.into()), category)
    }

    pub fn bytes(
        &mut self,
        path: impl AsRef<Path>,
        perm: u32,
        bytes: impl Into<Vec<u8>>,
        category: Category,
    ) -> Result<(), TreeError> {
        self.file(path, perm, Contents::Bytes(bytes.into()), category)
    }

    fn file(
        &mut self,
        path: impl AsRef<Path>,
        perm: u32,
        contents: Contents,
        category: Category,
    ) -> Result<(), TreeError> {
        self.add(
            path,
            Node::File {
                perm,
                contents,
                category,
            },
        )
    }

    pub fn symlink(
        &mut self,
        path: impl AsRef<Path>,
        target: impl Into<String>,
        category: Category,
    ) -> Result<(), TreeError> {
        let target = target.into();
        self.add(path, Node::Symlink { target, category })
    }

    /// What is at `path` (absolute), if anything.
    pub fn get(&self, path: impl AsRef<Path>) -> Option<&Node> {
        self.nodes.get(&key(path.as_ref()).ok()?)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Serializes the tree as a newc archive with every mtime set to
    /// `mtime`. Output depends only on the tree and the file contents.
    pub fn write_cpio<W: Write>(&self, out: W, mtime: u32) -> Result<(W, Sizes), TreeError> {
        let mut writer = Writer::new(out, mtime);
        let mut sizes = Sizes::default();
        for (key, node) in &self.nodes {
            let name = key
                .to_str()
                .ok_or_else(|| TreeError::NotUtf8 { path: key.clone() })?;
            match node {
                Node::Dir { perm } => writer.dir(name, *perm)?,
                Node::CharDev { perm, major, minor } => {
                    writer.char_dev(name, *perm, *major, *minor)?
                }
                Node::Symlink { target, category } => {
                    writer.symlink(name, target)?;
                    *sizes.by_category.entry(*category).or_default() += target.len() as u64;
                }
                Node::File {
                    perm,
                    contents,
                    category,
                } => {
                    let size = match contents {
                        Contents::Bytes(bytes) => {
                            writer.file(name, *perm, bytes.len() as u64, &mut &bytes[..])?;
                            bytes.len() as u64
                        }
                        Contents::HostFile(source) => {
                            let err = |e| TreeError::Read {
                                path: Path::new("/").join(key),
                                source_path: source.clone(),
                                source: e,
                            };
                            let mut file = std::fs::File::open(source).map_err(err)?;
                            let len = file.metadata().map_err(err)?.len();
                            writer.file(name, *perm, len, &mut file)?;
                            len
                        }
                    };
                    *sizes.by_category.entry(*category).or_default() += size;
                    if *category == Category::Modules && name.ends_with(".ko") {
                        sizes.module_count += 1;
                    }
                }
            }
        }
        let (out, total) = writer.finish()?;
        sizes.archive = total;
        Ok((out, sizes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_first_and_sorted_by_component() {
        let mut t = Tree::new();
        t.bytes("/a-b", 0o644, "x", Category::Other).unwrap();
        t.bytes("/a/z", 0o644, "y", Category::Other).unwrap();
        t.dir("/a", 0o700).unwrap();
        t.symlink("/a/b/c", "/a/z", Category::Other).unwrap();
        let keys: Vec<String> = t.nodes.keys().map(|k| k.display().to_string()).collect();
        assert_eq!(keys, ["a", "a/b", "a/b/c", "a/z", "a-b"]);
        assert_eq!(t.nodes[Path::new("a")], Node::Dir { perm: 0o700 });
    }

    #[test]
    fn conflicts_and_bad_paths() {
        let mut t = Tree::new();
        t.symlink("/l", "x", Category::Other).unwrap();
        t.symlink("/l", "x", Category::Other).unwrap();
        let err = t.symlink("/l", "y", Category::Other).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image path /l added twice with different contents (symlink to x and symlink to y)"
        );
        assert!(matches!(
            t.bytes("/l/f", 0o644, "", Category::Other),
            Err(TreeError::NotADirectory { .. })
        ));
        for bad in ["relative", "/", "/a/../b"] {
            assert!(t.dir(bad, 0o755).is_err(), "{bad}");
        }
    }

    /// A file two programs need (libc) is one entry, counted once, in the
    /// category of the first program that added it.
    #[test]
    fn shared_entry_keeps_first_category() {
        let mut t = Tree::new();
        t.bytes("/lib/libc.so.6", 0o644, "libc", Category::Etcd)
            .unwrap();
        t.bytes("/lib/libc.so.6", 0o644, "libc", Category::Tools)
            .unwrap();
        t.symlink("/lib64/ld.so", "/lib/ld.so.2", Category::Etcd)
            .unwrap();
        t.symlink("/lib64/ld.so", "/lib/ld.so.2", Category::Tools)
            .unwrap();
        assert!(matches!(
            t.get("/lib/libc.so.6"),
            Some(Node::File {
                category: Category::Etcd,
                ..
            })
        ));
        assert!(t
            .bytes("/lib/libc.so.6", 0o755, "libc", Category::Tools)
            .is_err());
        let (_, sizes) = t.write_cpio(Vec::new(), 0).unwrap();
        assert_eq!(sizes.by_category[&Category::Etcd], 4 + 12);
        assert_eq!(sizes.by_category.get(&Category::Tools), None);
    }

    /// A fixture tree (host files and in-memory ones) serialized twice is
    /// byte-identical, whatever order it was built in and whatever the
    /// host files' own mtimes and owners are.
    #[test]
    fn reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("blob");
        std::fs::write(&host, vec![7u8; 1000]).unwrap();

        let build = |reverse: bool| {
            type Step<'a> = Box<dyn Fn(&mut Tree) + 'a>;
            let mut steps: Vec<Step> = vec![
                Box::new(|t| {
                    t.host_file("/usr/bin/etcd", 0o755, &host, Category::Etcd)
                        .unwrap()
                }),
                Box::new(|t| {
                    t.bytes(
                        "/etc/hosts",
                        0o644,
                        "127.0.0.1 localhost\n",
                        Category::Other,
                    )
                    .unwrap()
                }),
                Box::new(|t| {
                    t.symlink("/sbin/modprobe", "/init", Category::Other)
                        .unwrap()
                }),
                Box::new(|t| {
                    t.add(
                        "/dev/console",
                        Node::CharDev {
                            perm: 0o600,
                            major: 5,
                            minor: 1,
                        },
                    )
                    .unwrap()
                }),
                Box::new(|t| {
                    t.bytes("/lib/modules/r/kernel/a.ko", 0o644, "ko", Category::Modules)
                        .unwrap()
                }),
            ];
            if reverse {
                steps.reverse();
            }
            let mut t = Tree::new();
            for step in &steps {
                step(&mut t);
            }
            t.write_cpio(Vec::new(), 0).unwrap()
        };
        let (first, sizes) = build(false);
        // Touch the host file's mtime between builds: it must not matter.
        std::fs::File::options()
            .write(true)
            .open(&host)
            .unwrap()
            .set_modified(std::time::SystemTime::now())
            .unwrap();
        let (second, _) = build(true);
        assert_eq!(first, second);
        assert_eq!(sizes.archive, first.len() as u64);
        assert_eq!(sizes.module_count, 1);
        assert_eq!(sizes.by_category[&Category::Etcd], 1000);
        assert_eq!(first.len() % 512, 0);
    }
}
