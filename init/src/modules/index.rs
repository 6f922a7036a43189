//! The module index the image builder writes into
//! `/lib/modules/<release>/`, in kmod's own text formats (modules.dep(5),
//! modprobe.d(5) for `alias`/`softdep` lines), so an operator's knowledge of
//! depmod output applies as is.
//!
//! Resolving is what modprobe(8) does: a name (dashes and underscores are
//! the same) is a module; anything else is matched against the alias
//! patterns with fnmatch(3) semantics, and every module that matches is
//! loaded. The load order is: soft pre-dependencies, hard dependencies
//! (deepest first), the module, soft post-dependencies.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

/// A module name, normalised to underscores as the kernel reports it.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

#[derive(Debug, Default, Clone)]
pub struct ModuleIndex {
    /// Directory the relative paths in modules.dep are relative to.
    pub root: PathBuf,
    /// Module name → (path relative to root, direct+indirect deps by name).
    modules: BTreeMap<String, ModuleEntry>,
    /// (pattern, module name), in file order.
    aliases: Vec<(glob::Pattern, String)>,
    /// Module name → (pre, post) soft dependencies.
    softdeps: BTreeMap<String, (Vec<String>, Vec<String>)>,
    /// Modules built into the kernel (modules.builtin).
    builtin: HashSet<String>,
}

#[derive(Debug, Clone)]
struct ModuleEntry {
    path: PathBuf,
    deps: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot read module index {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {what}")]
    Syntax {
        path: String,
        line: usize,
        what: String,
    },
}

/// What a name or alias resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Loadable modules, each to be loaded with its dependencies.
    Modules(Vec<String>),
    /// Built into the kernel: nothing to load.
    Builtin(String),
    /// Nothing in the index matches.
    Unknown,
}

impl ModuleIndex {
    /// Loads modules.dep (required), modules.alias, modules.softdep and
    /// modules.builtin (optional) from `dir`.
    pub fn load(dir: &Path) -> Result<ModuleIndex, IndexError> {
        let read = |name: &str, required: bool| -> Result<Option<String>, IndexError> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(s) => Ok(Some(s)),
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(IndexError::Read {
                    path: path.display().to_string(),
                    source,
                }),
            }
        };
        let dep = read("modules.dep", true)?.unwrap_or_default();
        let alias = read("modules.alias", false)?.unwrap_or_default();
        let softdep = read("modules.softdep", false)?.unwrap_or_default();
        let builtin = read("modules.builtin", false)?.unwrap_or_default();
        let mut idx =
            ModuleIndex::parse(&dep, &alias, &softdep, &builtin).map_err(|e| match e {
                IndexError::Syntax { path, line, what } => IndexError::Syntax {
                    path: dir.join(path).display().to_string(),
                    line,
                    what,
                },
                other => other,
            })?;
        idx.root = dir.to_path_buf();
        Ok(idx)
    }

    /// Parses the four files' contents.
    pub fn parse(
        dep: &str,
        alias: &str,
        softdep: &str,
        builtin: &str,
    ) -> Result<ModuleIndex, IndexError> {
        let mut idx = ModuleIndex::default();
        for (n, line) in dep.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (path, deps) = line.split_once(':').ok_or_else(|| IndexError::Syntax {
                path: "modules.dep".into(),
                line: n + 1,
                what: "expected `path.ko: deps...`".into(),
            })?;
            let name = name_from_path(path);
            idx.modules.insert(
                name,
                ModuleEntry {
                    path: PathBuf::from(path),
                    deps: deps.split_whitespace().map(name_from_path).collect(),
                },
            );
        }
        for (n, line) in alias.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut w = line.split_whitespace();
            let (Some("alias"), Some(pat), Some(module)) = (w.next(), w.next(), w.next()) else {
                return Err(IndexError::Syntax {
                    path: "modules.alias".into(),
                    line: n + 1,
                    what: "expected `alias <pattern> <module>`".into(),
                });
            };
            let pattern = glob::Pattern::new(pat).map_err(|e| IndexError::Syntax {
                path: "modules.alias".into(),
                line: n + 1,
                what: format!("bad pattern {pat:?}: {e}"),
            })?;
            idx.aliases.push((pattern, normalize(module)));
        }
        for (n, line) in softdep.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut w = line.split_whitespace();
            let (Some("softdep"), Some(module)) = (w.next(), w.next()) else {
                return Err(IndexError::Syntax {
                    path: "modules.softdep".into(),
                    line: n + 1,
                    what: "expected `softdep <module> pre: ... post: ...`".into(),
                });
            };
            let (mut pre, mut post) = (Vec::new(), Vec::new());
            let mut into_post = false;
            for word in w {
                match word {
                    "pre:" => into_post = false,
                    "post:" => into_post = true,
                    m if into_post => post.push(normalize(m)),
                    m => pre.push(normalize(m)),
                }
            }
            idx.softdeps.insert(normalize(module), (pre, post));
        }
        for line in builtin.lines() {
            let line = line.trim();
            if !line.is_empty() {
                idx.builtin.insert(name_from_path(line));
            }
        }
        Ok(idx)
    }

    pub fn len(&self) -> usize {
        self.modules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// Absolute path of a module's `.ko`.
    pub fn path_of(&self, module: &str) -> Option<PathBuf> {
        self.modules.get(module).map(|e| self.root.join(&e.path))
    }

    /// Resolves a module name or an alias (`fs-vfat`, `rtnl-link-bond`, a
    /// device modalias) the way modprobe does.
    pub fn resolve(&self, name: &str) -> Resolved {
        let norm = normalize(name);
        if self.modules.contains_key(&norm) {
            return Resolved::Modules(vec![norm]);
        }
        if self.builtin.contains(&norm) {
            return Resolved::Builtin(norm);
        }
        // kmod matches aliases with fnmatch(pattern, name, 0): no special
        // meaning for '/', so match_with the default (non-path) options.
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: false,
            require_literal_leading_dot: false,
        };
        let mut found: BTreeSet<String> = BTreeSet::new();
        for (pat, module) in &self.aliases {
            if pat.matches_with(name, opts) {
                found.insert(module.clone());
            }
        }
        if found.is_empty() {
            Resolved::Unknown
        } else if found.iter().all(|m| self.builtin.contains(m)) {
            Resolved::Builtin(found.into_iter().next().unwrap_or_default())
        } else {
            Resolved::Modules(
                found
                    .into_iter()
                    .filter(|m| !self.builtin.contains(m))
                    .collect(),
            )
        }
    }

    /// The modules to insert, in order, to load `module`: soft pre deps,
    /// hard deps (each before the modules that need it), the module, soft
    /// post deps. Built-in and unknown soft deps are skipped (softdeps are
    /// hints); an unknown hard dep is reported by the loader when its file
    /// is missing.
    pub fn load_order(&self, module: &str) -> Vec<String> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        self.visit(&normalize(module), &mut order, &mut seen);
        order
    }

    fn visit(&self, module: &str, order: &mut Vec<String>, seen: &mut HashSet<String>) {
        if self.builtin.contains(module) || !seen.insert(module.to_string()) {
            return;
        }
        let (pre, post) = self.softdeps.get(module).cloned().unwrap_or_default();
        for m in pre.iter().flat_map(|m| self.soft_targets(m)) {
            self.visit(&m, order, seen);
        }
        if let Some(entry) = self.modules.get(module) {
            // modules.dep lists the transitive closure; visiting each one
            // recursively orders them correctly whatever order the file
            // used.
            for d in &entry.deps {
                self.visit(d, order, seen);
            }
        }
        order.push(module.to_string());
        for m in post.iter().flat_map(|m| self.soft_targets(m)) {
            self.visit(&m, order, seen);
        }
    }

    /// Soft dependencies name modules or aliases (`softdep ext4 pre:
    /// crc32c`, where crc32c is an alias of crc32c_generic), as in
    /// modprobe.d(5).
    fn soft_targets(&self, name: &str) -> Vec<String> {
        match self.resolve(name) {
            Resolved::Modules(v) => v,
            Resolved::Builtin(_) | Resolved::Unknown => Vec::new(),
        }
    }
}

/// `kernel/drivers/net/virtio_net.ko` → `virtio_net`.
fn name_from_path(path: &str) -> String {
    let file = path.trim().rsplit('/').next().unwrap_or(path);
    let stem = file
        .strip_suffix(".ko")
        .or_else(|| file.split(".ko.").next())
        .unwrap_or(file);
    normalize(stem)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const DEP: &str = "\
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/net/bonding/bonding.ko: kernel/net/tls/tls.ko
kernel/net/tls/tls.ko:
kernel/fs/ext4/ext4.ko: kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/crypto/crc32c_generic.ko:
";
    pub const ALIAS: &str = "\
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
alias rtnl-link-bond bonding
alias fs-ext4 ext4
alias crypto-crc32c crc32c_generic
alias crc32c crc32c_generic
alias acpi*:LNXPWRBN:* button
alias input:b*v*p*e*-e*k*r*a*m*l*s*f*w* evdev
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
";
    pub const SOFTDEP: &str = "softdep ext4 pre: crc32c\nsoftdep bonding post: crc32c_generic\n";
    pub const BUILTIN: &str = "kernel/drivers/acpi/button.ko\nkernel/drivers/input/evdev.ko\n";

    pub fn fixture() -> ModuleIndex {
        ModuleIndex::parse(DEP, ALIAS, SOFTDEP, BUILTIN).unwrap()
    }

    #[test]
    fn resolve_table() {
        let idx = fixture();
        let m = |v: &[&str]| Resolved::Modules(v.iter().map(|s| s.to_string()).collect());
        let cases: Vec<(&str, Resolved)> = vec![
            ("virtio_net", m(&["virtio_net"])),
            ("virtio-net", m(&["virtio_net"])),
            (
                "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
                m(&["virtio_pci"]),
            ),
            ("virtio:d00000001v00001AF4", m(&["virtio_net"])),
            ("virtio:d00000002v00001AF4", Resolved::Unknown),
            ("rtnl-link-bond", m(&["bonding"])),
            ("fs-ext4", m(&["ext4"])),
            ("acpi:LNXPWRBN:", Resolved::Builtin("button".into())),
            (
                "input:b0019v0000p0001e0000-e0,1,k74,ramlsfw",
                Resolved::Builtin("evdev".into()),
            ),
            // Case matters in modaliases (hex digits are upper case).
            ("pci:v00001af4d00001000sv0sd0bc02sc00i00", Resolved::Unknown),
            (
                "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00",
                m(&["e1000"]),
            ),
            ("no-such-thing", Resolved::Unknown),
        ];
        for (name, want) in cases {
            assert_eq!(idx.resolve(name), want, "{name}");
        }
    }

    #[test]
    fn load_order_table() {
        let idx = fixture();
        let cases: &[(&str, &[&str])] = &[
            ("virtio", &["virtio"]),
            (
                "virtio_pci",
                &[
                    "virtio_pci_modern_dev",
                    "virtio_pci_legacy_dev",
                    "virtio_ring",
                    "virtio",
                    "virtio_pci",
                ],
            ),
            (
                "virtio_net",
                &[
                    "failover",
                    "net_failover",
                    "virtio_ring",
                    "virtio",
                    "virtio_net",
                ],
            ),
            // softdep pre "crc32c" is an alias of crc32c_generic.
            ("ext4", &["crc32c_generic", "mbcache", "jbd2", "ext4"]),
            ("bonding", &["tls", "bonding", "crc32c_generic"]),
            ("button", &[]),
        ];
        for (module, want) in cases {
            assert_eq!(idx.load_order(module), *want, "{module}");
        }
    }

    #[test]
    fn every_dependency_precedes_its_user() {
        let idx = fixture();
        for name in idx.modules.keys() {
            let order = idx.load_order(name);
            for (i, m) in order.iter().enumerate() {
                for d in &idx.modules[m].deps {
                    let pos = order.iter().position(|x| x == d).unwrap();
                    assert!(pos < i, "{d} must load before {m} (for {name})");
                }
            }
        }
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let e = ModuleIndex::parse("ok.ko:\nbroken line\n", "", "", "").unwrap_err();
        assert_eq!(e.to_string(), "modules.dep:2: expected `path.ko: deps...`");
        let e = ModuleIndex::parse("", "alias only-two\n", "", "").unwrap_err();
        assert!(e.to_string().starts_with("modules.alias:1:"), "{e}");
    }
}
