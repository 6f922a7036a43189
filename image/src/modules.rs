//! The kernel module set of the image: an index of every `.ko` in the kernel
//! package, the closure of `kernel-config/modules.list` over `depends` and
//! `softdep`, and the text indexes (`modules.dep`, `modules.alias`,
//! `modules.softdep`) the init's modprobe reads.
//!
//! Debian's kernel .deb ships no modules.dep (it is made by depmod at install
//! time), and the image carries only a subset of the 4000 modules, so the
//! indexes are computed here, for exactly the modules carried.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::modinfo::{self, normalize_name, ModInfo, ModinfoError};

#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Modinfo(#[from] ModinfoError),
    #[error("module {name} is provided twice: {first} and {second}")]
    Duplicate {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("{list}: module {name} is neither a .ko in the kernel package nor built in (modules.builtin)")]
    UnknownListed { list: PathBuf, name: String },
    #[error("module {module} depends on {dependency}, which is not in the kernel package")]
    MissingDependency { module: String, dependency: String },
    #[error("dependency cycle among modules: {}", modules.join(", "))]
    Cycle { modules: Vec<String> },
}

/// One loadable module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Path relative to `lib/modules/<release>/`, e.g. `kernel/fs/fat/vfat.ko`.
    pub rel_path: PathBuf,
    pub info: ModInfo,
}

/// Every loadable module of a kernel, by normalized name, plus the names
/// built into the kernel image.
#[derive(Debug, Default, Clone)]
pub struct Index {
    pub modules: BTreeMap<String, Module>,
    pub builtin: BTreeSet<String>,
}

/// The modules to carry, with what was noted on the way.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Closure {
    pub modules: BTreeSet<String>,
    /// Listed names that are built into the kernel (nothing to carry).
    pub builtin: Vec<String>,
    /// `(module, softdep name)` pairs that match no module: modprobe skips
    /// those at load time too, so they are reported, not fatal.
    pub unresolved_softdeps: Vec<(String, String)>,
}

/// Parses modules.list: one module name per line, `#` comments.
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(normalize_name)
        .collect()
}

/// A module's name from its `.ko` file name (kmod's rule: stem, `-` → `_`).
fn name_from_path(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    Some(normalize_name(file.strip_suffix(".ko")?))
}

impl Index {
    /// Reads every `.ko` under `moddir` (`lib/modules/<release>`) and its
    /// `modules.builtin`.
    pub fn scan(moddir: &Path) -> Result<Index, ModulesError> {
        let mut index = Index::default();
        let builtin_path = moddir.join("modules.builtin");
        let builtin =
            std::fs::read_to_string(&builtin_path).map_err(|source| ModulesError::Read {
                path: builtin_path.clone(),
                source,
            })?;
        index.builtin = builtin
            .lines()
            .filter_map(|l| name_from_path(Path::new(l.trim())))
            .collect();
        let mut files = Vec::new();
        walk_ko(moddir, moddir, &mut files)?;
        for rel_path in files {
            let info = modinfo::read_module(&moddir.join(&rel_path))?;
            let name = match &info.name {
                Some(n) => n.clone(),
                None => name_from_path(&rel_path).unwrap_or_default(),
            };
            index.insert(name, Module { rel_path, info })?;
        }
        Ok(index)
    }

    /// Adds a module; two files claiming one name is an error because
    /// depmod's tie-breaking (search order in depmod.conf) is not modeled.
    pub fn insert(&mut self, name: String, module: Module) -> Result<(), ModulesError> {
        if let Some(first) = self.modules.get(&name) {
            return Err(ModulesError::Duplicate {
                name,
                first: first.rel_path.clone(),
                second: module.rel_path,
            });
        }
        self.modules.insert(name, module);
        Ok(())
    }

    /// Module names a softdep entry stands for: the module of that name, or
    /// else every module with a matching alias (that is what modprobe loads).
    fn resolve_soft(&self, name: &str) -> Vec<String> {
        let normalized = normalize_name(name);
        if self.modules.contains_key(&normalized) {
            return vec![normalized];
        }
        self.modules
            .iter()
            .filter(|(_, m)| m.info.aliases.iter().any(|a| alias_matches(a, name)))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The closure of `wanted` over `depends` and softdeps (pre and post).
    /// `list` only names the list file in errors.
    pub fn closure(&self, wanted: &[String], list: &Path) -> Result<Closure, ModulesError> {
        let mut closure = Closure::default();
        let mut stack: Vec<String> = Vec::new();
        for name in wanted {
            if self.modules.contains_key(name) {
                stack.push(name.clone());
            } else if self.builtin.contains(name) {
                closure.builtin.push(name.clone());
            } else {
                return Err(ModulesError::UnknownListed {
                    list: list.to_owned(),
                    name: name.clone(),
                });
            }
        }
        while let Some(name) = stack.pop() {
            if !closure.modules.insert(name.clone()) {
                continue;
            }
            let info = &self.modules[&name].info;
            for dep in &info.depends {
                if !self.modules.contains_key(dep) {
                    return Err(ModulesError::MissingDependency {
                        module: name.clone(),
                        dependency: dep.clone(),
                    });
                }
                stack.push(dep.clone());
            }
            for soft in info.softdep_pre.iter().chain(&info.softdep_post) {
                let found = self.resolve_soft(soft);
                if found.is_empty() && !self.builtin.contains(&normalize_name(soft)) {
                    closure
                        .unresolved_softdeps
                        .push((name.clone(), soft.clone()));
                }
                stack.extend(found);
            }
        }
        closure.builtin.sort();
        closure.builtin.dedup();
        closure.unresolved_softdeps.sort();
        closure.unresolved_softdeps.dedup();
        Ok(closure)
    }

    /// Topological order of `set` with every module before the modules it
    /// depends on (depmod's order: a module's dependency list read from last
    /// to first is a valid load order). Ties broken by name, so the order is
    /// a pure function of the module set.
    fn user_first_order(&self, set: &BTreeSet<String>) -> Result<Vec<String>, ModulesError> {
        let deps_of = |n: &str| {
            self.modules[n]
                .info
                .depends
                .iter()
                .filter(|d| set.contains(*d))
        };
        let mut users: BTreeMap<&str, usize> = set.iter().map(|n| (n.as_str(), 0)).collect();
        for name in set {
            for dep in deps_of(name) {
                *users.get_mut(dep.as_str()).expect("dep in set") += 1;
            }
        }
        let mut ready: BTreeSet<&str> = users
            .iter()
            .filter(|(_, &count)| count == 0)
            .map(|(&n, _)| n)
            .collect();
        let mut order = Vec::with_capacity(set.len());
        while let Some(name) = ready.pop_first() {
            order.push(name.to_owned());
            for dep in deps_of(name) {
                let count = users.get_mut(dep.as_str()).expect("dep in set");
                *count -= 1;
                if *count == 0 {
                    ready.insert(dep);
                }
            }
        }
        if order.len() != set.len() {
            let mut modules: Vec<String> = users
                .into_iter()
                .filter(|(_, c)| *c > 0)
                .map(|(n, _)| n.to_owned())
                .collect();
            modules.sort();
            return Err(ModulesError::Cycle { modules });
        }
        Ok(order)
    }

    /// `modules.dep` for the modules in `set`, in depmod's text format:
    /// `kernel/a.ko: kernel/b.ko kernel/c.ko`, each line listing the full
    /// transitive dependencies. Lines are sorted by path.
    pub fn modules_dep(&self, set: &BTreeSet<String>) -> Result<String, ModulesError> {
        let order = self.user_first_order(set)?;
        let rank: BTreeMap<&str, usize> = order
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let mut lines = Vec::with_capacity(set.len());
        for name in set {
            let mut all = BTreeSet::new();
            let mut stack: Vec<&String> = self.modules[name].info.depends.iter().collect();
            while let Some(dep) = stack.pop() {
                if all.insert(dep.as_str()) {
                    stack.extend(self.modules[dep].info.depends.iter());
                }
            }
            let mut all: Vec<&str> = all.into_iter().collect();
            all.sort_by_key(|n| rank[n]);
            let mut line = format!("{}:", self.modules[name].rel_path.display());
            for dep in all {
                line.push(' ');
                line.push_str(&self.modules[dep].rel_path.display().to_string());
            }
            lines.push(line);
        }
        lines.sort();
        Ok(lines.into_iter().map(|l| l + "\n").collect())
    }

    /// `modules.alias` (`alias <pattern> <module>`) for the modules in
    /// `set`, by module name, aliases in the module's own order.
    pub fn modules_alias(&self, set: &BTreeSet<String>) -> String {
        let mut out = String::from("# Aliases extracted from modules themselves.\n");
        for name in set {
            for alias in &self.modules[name].info.aliases {
                out.push_str(&format!("alias {alias} {name}\n"));
            }
        }
        out
    }

    /// `modules.softdep` (`softdep <module> pre: a post: b`) for `set`.
    pub fn modules_softdep(&self, set: &BTreeSet<String>) -> String {
        let mut out = String::from("# Soft dependencies extracted from modules themselves.\n");
        for name in set {
            for softdep in &self.modules[name].info.softdeps {
                out.push_str(&format!("softdep {name} {softdep}\n"));
            }
        }
        out
    }
}

/// Collects `.ko` paths under `dir`, relative to `base`, in sorted order.
fn walk_ko(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ModulesError> {
    let read_err = |source| ModulesError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let file_type = entry.file_type().map_err(|source| ModulesError::Read {
            path: path.clone(),
            source,
        })?;
        if file_type.is_dir() {
            walk_ko(base, &path, out)?;
        } else if file_type.is_file() && path.extension().is_some_and(|e| e == "ko") {
            out.push(path.strip_prefix(base).expect("under base").to_owned());
        }
    }
    Ok(())
}

/// fnmatch(3) without flags, as kmod matches aliases (`*`, `?`, `[...]`),
/// except that `-` and `_` compare equal, as in kmod's alias normalization.
pub fn alias_matches(pattern: &str, name: &str) -> bool {
    fn eq(a: u8, b: u8) -> bool {
        let n = |c: u8| if c == b'-' { b'_' } else { c };
        n(a) == n(b)
    }
    fn class(pat: &[u8], c: u8) -> Option<(bool, usize)> {
        // pat starts after '['; returns (matched, bytes consumed incl. ']').
        let mut i = 0;
        let negate = matches!(pat.first(), Some(b'!' | b'^'));
        if negate {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        while i < pat.len() {
            if pat[i] == b']' && !first {
                return Some((matched != negate, i + 1));
            }
            first = false;
            if i + 2 < pat.len() && pat[i + 1] == b'-' && pat[i + 2] != b']' {
                matched |= pat[i] <= c && c <= pat[i + 2];
                i += 3;
            } else {
                matched |= pat[i] == c;
                i += 1;
            }
        }
        None // unterminated: '[' is literal
    }
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some(b'*') => (0..=s.len()).any(|i| go(&p[1..], &s[i..])),
            Some(b'?') => !s.is_empty() && go(&p[1..], &s[1..]),
            Some(b'[') => match (s.first(), class(&p[1..], *s.first().unwrap_or(&0))) {
                (Some(_), Some((true, used))) => go(&p[1 + used..], &s[1..]),
                (Some(_), Some((false, _))) | (None, Some(_)) => false,
                (_, None) => !s.is_empty() && s[0] == b'[' && go(&p[1..], &s[1..]),
            },
            Some(&c) => !s.is_empty() && eq(c, s[0]) && go(&p[1..], &s[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str, path: &str, depends: &[&str], soft: &str, aliases: &[&str]) -> Module {
        let (pre, post) = modinfo::parse_softdep(soft);
        Module {
            rel_path: path.into(),
            info: ModInfo {
                name: Some(name.into()),
                aliases: aliases.iter().map(|s| s.to_string()).collect(),
                depends: depends.iter().map(|s| s.to_string()).collect(),
                softdeps: if soft.is_empty() {
                    vec![]
                } else {
                    vec![soft.into()]
                },
                softdep_pre: pre,
                softdep_post: post,
            },
        }
    }

    /// The virtio-net stack as Debian 6.1 has it, plus ext4's alias softdep.
    fn index() -> Index {
        let mut index = Index::default();
        for m in [
            module("virtio", "kernel/drivers/virtio/virtio.ko", &[], "", &[]),
            module(
                "virtio_ring",
                "kernel/drivers/virtio/virtio_ring.ko",
                &[],
                "",
                &[],
            ),
            module(
                "virtio_pci_modern_dev",
                "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
                &[],
                "",
                &[],
            ),
            module(
                "virtio_pci_legacy_dev",
                "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
                &[],
                "",
                &[],
            ),
            module(
                "virtio_pci",
                "kernel/drivers/virtio/virtio_pci.ko",
                &[
                    "virtio_pci_modern_dev",
                    "virtio_pci_legacy_dev",
                    "virtio_ring",
                    "virtio",
                ],
                "",
                &["pci:v00001AF4d*sv*sd*bc*sc*i*"],
            ),
            module("failover", "kernel/net/core/failover.ko", &[], "", &[]),
            module(
                "net_failover",
                "kernel/drivers/net/net_failover.ko",
                &["failover"],
                "",
                &[],
            ),
            module(
                "virtio_net",
                "kernel/drivers/net/virtio_net.ko",
                &["virtio_ring", "virtio", "net_failover"],
                "",
                &["virtio:d00000001v*"],
            ),
            module(
                "crc32c_generic",
                "kernel/crypto/crc32c_generic.ko",
                &[],
                "",
                &["crypto-crc32c", "crc32c"],
            ),
            module(
                "crc32c_intel",
                "kernel/arch/x86/crypto/crc32c-intel.ko",
                &[],
                "",
                &["crypto-crc32c-intel", "crypto-crc32c"],
            ),
            module("jbd2", "kernel/fs/jbd2/jbd2.ko", &[], "", &[]),
            module(
                "ext4",
                "kernel/fs/ext4/ext4.ko",
                &["jbd2"],
                "pre: crypto-crc32c post: nothing-here",
                &["fs-ext4"],
            ),
            module("unrelated", "kernel/unrelated.ko", &[], "", &[]),
        ] {
            index.insert(m.info.name.clone().unwrap(), m).unwrap();
        }
        index.builtin.insert("unix".into());
        index
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn closure_follows_depends_and_softdeps() {
        let index = index();
        let c = index
            .closure(
                &names(&["virtio_net", "ext4", "unix"]),
                Path::new("modules.list"),
            )
            .unwrap();
        let got: Vec<&str> = c.modules.iter().map(String::as_str).collect();
        assert_eq!(
            got,
            [
                "crc32c_generic", // softdep alias crypto-crc32c matches both
                "crc32c_intel",
                "ext4",
                "failover",
                "jbd2",
                "net_failover",
                "virtio",
                "virtio_net",
                "virtio_ring",
            ]
        );
        assert_eq!(c.builtin, ["unix"]);
        assert_eq!(
            c.unresolved_softdeps,
            [("ext4".to_string(), "nothing-here".to_string())]
        );
    }

    #[test]
    fn closure_errors() {
        let mut index = index();
        let err = index
            .closure(&names(&["nope"]), Path::new("modules.list"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "modules.list: module nope is neither a .ko in the kernel package nor built in (modules.builtin)"
        );
        index
            .insert(
                "broken".into(),
                module("broken", "kernel/broken.ko", &["gone"], "", &[]),
            )
            .unwrap();
        let err = index
            .closure(&names(&["broken"]), Path::new("l"))
            .unwrap_err();
        assert!(
            matches!(err, ModulesError::MissingDependency { .. }),
            "{err}"
        );
    }

    #[test]
    fn modules_dep_is_depmod_format() {
        let index = index();
        let set = index
            .closure(&names(&["virtio_net", "virtio_pci"]), Path::new("l"))
            .unwrap()
            .modules;
        let dep = index.modules_dep(&set).unwrap();
        assert_eq!(
            dep,
            "kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
             kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
             kernel/drivers/virtio/virtio.ko:\n\
             kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko\n\
             kernel/drivers/virtio/virtio_pci_legacy_dev.ko:\n\
             kernel/drivers/virtio/virtio_pci_modern_dev.ko:\n\
             kernel/drivers/virtio/virtio_ring.ko:\n\
             kernel/net/core/failover.ko:\n"
        );
    }

    /// Loading each line's dependencies from last to first, then the module,
    /// never loads a module before one it depends on.
    #[test]
    fn modules_dep_order_loads_from_the_end() {
        let mut index = index();
        // A diamond plus a chain: d -> b, c; b -> a; c -> a; a -> z.
        for (n, deps) in [
            ("z", &[][..]),
            ("a", &["z"]),
            ("b", &["a"]),
            ("c", &["a"]),
            ("d", &["b", "c"]),
        ] {
            index
                .insert(
                    n.into(),
                    module(n, &format!("kernel/{n}.ko"), deps, "", &[]),
                )
                .unwrap();
        }
        let set: BTreeSet<String> = ["a", "b", "c", "d", "z"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let dep = index.modules_dep(&set).unwrap();
        let line = dep.lines().find(|l| l.starts_with("kernel/d.ko:")).unwrap();
        let mut loaded: Vec<String> = Vec::new();
        let deps: Vec<&str> = line.split_whitespace().skip(1).collect();
        for path in deps.into_iter().rev().chain(["kernel/d.ko"]) {
            let name = path.trim_start_matches("kernel/").trim_end_matches(".ko");
            for d in &index.modules[name].info.depends {
                assert!(loaded.contains(d), "{name} loaded before {d}: {line}");
            }
            loaded.push(name.to_owned());
        }
        assert_eq!(loaded.len(), 5);
    }

    #[test]
    fn cycles_are_reported() {
        let mut index = Index::default();
        index
            .insert("a".into(), module("a", "a.ko", &["b"], "", &[]))
            .unwrap();
        index
            .insert("b".into(), module("b", "b.ko", &["a"], "", &[]))
            .unwrap();
        let set: BTreeSet<String> = names(&["a", "b"]).into_iter().collect();
        let err = index.modules_dep(&set).unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle among modules: a, b");
    }

    #[test]
    fn alias_and_softdep_files() {
        let index = index();
        let set = index
            .closure(&names(&["ext4", "virtio_net"]), Path::new("l"))
            .unwrap()
            .modules;
        let alias = index.modules_alias(&set);
        assert!(
            alias.contains("alias crypto-crc32c crc32c_generic\n"),
            "{alias}"
        );
        assert!(
            alias.contains("alias virtio:d00000001v* virtio_net\n"),
            "{alias}"
        );
        assert!(
            !alias.contains("pci:v00001AF4"),
            "virtio_pci is not carried: {alias}"
        );
        let soft = index.modules_softdep(&set);
        assert_eq!(
            soft,
            "# Soft dependencies extracted from modules themselves.\n\
             softdep ext4 pre: crypto-crc32c post: nothing-here\n"
        );
    }

    #[test]
    fn list_parsing() {
        let list = "# virtio\nvirtio_net  # the NIC\n\n virtio-rng\n";
        assert_eq!(parse_list(list), ["virtio_net", "virtio_rng"]);
    }

    #[test]
    fn fnmatch() {
        let cases = [
            ("crypto-crc32c", "crypto-crc32c", true),
            ("crypto-crc32c", "crypto_crc32c", true),
            ("crypto-crc32c", "crypto-crc32", false),
            (
                "pci:v00008086d*sv*sd*bc*sc*i*",
                "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00",
                true,
            ),
            (
                "pci:v00008086d*sv*sd*bc*sc*i*",
                "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
                false,
            ),
            ("acpi*:PNP0C0[CD]:*", "acpi:PNP0C0C:", true),
            ("acpi*:PNP0C0[CD]:*", "acpi:PNP0C0E:", false),
            ("a[!x]c", "abc", true),
            ("a[!x]c", "axc", false),
            ("a[0-9]c", "a5c", true),
            ("a?c", "ac", false),
            ("a[b", "a[b", true),
        ];
        for (p, s, want) in cases {
            assert_eq!(alias_matches(p, s), want, "{p} vs {s}");
        }
    }

    /// The checked-in kernel-config/modules.list stays parseable.
    #[test]
    fn repository_list_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel-config/modules.list");
        let list = parse_list(&std::fs::read_to_string(path).unwrap());
        assert!(list.contains(&"virtio_net".to_string()));
        assert!(list.iter().all(|n| !n.contains(char::is_whitespace)));
    }
}
