//! Inserting modules with finit_module(2), dependencies first.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::File;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::kmod::ModuleInitFlags;

use super::index::ModuleIndex;
use crate::cmdline::Cmdline;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("module {module} is not in the image's module index")]
    NotInIndex { module: String },
    #[error("module {module}: cannot open {path}: {source}")]
    Open {
        module: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("module {module}: the kernel refused {path}: {source}")]
    Init {
        module: String,
        path: String,
        #[source]
        source: Errno,
    },
    #[error("module {module}: dependency failed: {dep}")]
    Dependency {
        module: String,
        #[source]
        dep: Box<LoadError>,
    },
}

/// Loads modules from one index, remembering what it has loaded.
pub struct Loader<'a> {
    index: &'a ModuleIndex,
    sys_root: PathBuf,
    cmdline: Option<&'a Cmdline>,
    /// Each module gets `async_probe=1` (see [`Loader::without_async_wait`]).
    async_probe: bool,
    done: HashSet<String>,
}

impl<'a> Loader<'a> {
    /// `sys_root` is where sysfs is mounted (`/sys`), used to see which
    /// modules are already live; `cmdline` supplies `module.param=value`
    /// parameters as modprobe(8) does.
    pub fn new(index: &'a ModuleIndex, sys_root: &Path, cmdline: Option<&'a Cmdline>) -> Self {
        Loader {
            index,
            sys_root: sys_root.to_path_buf(),
            cmdline,
            async_probe: false,
            done: HashSet::new(),
        }
    }

    /// Loads each module with the generic `async_probe=1` parameter
    /// (kernel/module/main.c, `unknown_module_param_cb`). Without it,
    /// finit_module(2) of any module ends by waiting for every
    /// asynchronous probe in the system (`do_init_module` →
    /// `async_synchronize_full`): a VLAN's 8021q, requested while libata
    /// debounced q35's empty SATA ports in the background pass, waited
    /// ~0.4 s for them. The modules the kernel requests (a filesystem, a
    /// link type, a protocol) are needed for what their init registers,
    /// which still happens before finit_module returns; a driver's own
    /// device probes merely run asynchronously.
    pub fn without_async_wait(mut self) -> Self {
        self.async_probe = true;
        self
    }

    /// The parameter string for `module`: the kernel command line's
    /// `module.param=value` ones, as modprobe(8) does, then `async_probe=1`
    /// when asked for.
    pub fn params(&self, module: &str) -> String {
        let mut params = self
            .cmdline
            .map(|c| c.module_params(module))
            .unwrap_or_default();
        if self.async_probe {
            params.push("async_probe=1".to_owned());
        }
        params.join(" ")
    }

    /// True when the kernel already has the module (loaded earlier, by the
    /// kernel's own modprobe call, or by a previous round).
    /// /sys/module/<name>/initstate exists only for loadable modules
    /// (kernel/module/sysfs.c), so built-ins with parameters do not count.
    pub fn is_loaded(&self, module: &str) -> bool {
        self.done.contains(module)
            || self
                .sys_root
                .join("module")
                .join(module)
                .join("initstate")
                .exists()
    }

    /// Loads `module` and everything it needs. Returns the modules this call
    /// inserted (empty if all were already there).
    pub fn load(&mut self, module: &str) -> Result<Vec<String>, LoadError> {
        let order = self.index.load_order(module);
        if order.is_empty() {
            // Built in: nothing to do.
            return Ok(Vec::new());
        }
        let mut inserted = Vec::new();
        for m in &order {
            if self.is_loaded(m) {
                continue;
            }
            match self.insert(m) {
                Ok(true) => inserted.push(m.clone()),
                Ok(false) => {}
                Err(e) if m == module => return Err(e),
                Err(e) => {
                    return Err(LoadError::Dependency {
                        module: module.to_string(),
                        dep: Box::new(e),
                    })
                }
            }
            self.done.insert(m.clone());
        }
        Ok(inserted)
    }

    /// Inserts one module. `Ok(false)` when the kernel says it is already
    /// loaded (EEXIST), which is success.
    fn insert(&self, module: &str) -> Result<bool, LoadError> {
        let path = self
            .index
            .path_of(module)
            .ok_or_else(|| LoadError::NotInIndex {
                module: module.to_string(),
            })?;
        let file = File::open(&path).map_err(|source| LoadError::Open {
            module: module.to_string(),
            path: path.display().to_string(),
            source,
        })?;
        let params = self.params(module);
        // A parameter string cannot contain NUL: it came from /proc/cmdline,
        // which is NUL-free by construction.
        let params = CString::new(params).unwrap_or_default();
        match nix::kmod::finit_module(&file, &params, ModuleInitFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::EEXIST) => Ok(false),
            Err(source) => Err(LoadError::Init {
                module: module.to_string(),
                path: path.display().to_string(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_from_the_command_line_and_async_probe() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("modules.dep"), "kernel/net/8021q/8021q.ko:\n").unwrap();
        let index = ModuleIndex::load(t.path()).unwrap();
        let sys = t.path().join("sys");
        let cmdline = Cmdline::parse("8021q.gvrp=1 bonding.max_bonds=0 quiet");
        // (command line, async probe, module, parameters)
        let cases = [
            (None, false, "8021q", ""),
            (None, true, "8021q", "async_probe=1"),
            (Some(&cmdline), false, "8021q", "gvrp=1"),
            (Some(&cmdline), true, "8021q", "gvrp=1 async_probe=1"),
            (Some(&cmdline), true, "vfat", "async_probe=1"),
        ];
        for (c, async_probe, module, want) in cases {
            let mut loader = Loader::new(&index, &sys, c);
            if async_probe {
                loader = loader.without_async_wait();
            }
            assert_eq!(loader.params(module), want, "{module} {async_probe}");
        }
    }

    /// A missing .ko and one the kernel refuses each give an error naming
    /// the module and the file; the dependency chain is named too.
    #[test]
    fn load_errors_name_module_and_file() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join("modules.dep"),
            "kernel/missing.ko:\nkernel/garbage.ko:\nkernel/user.ko: kernel/garbage.ko\n",
        )
        .unwrap();
        std::fs::create_dir_all(t.path().join("kernel")).unwrap();
        // Not an ELF object: finit_module(2) rejects it (ENOEXEC as root,
        // EPERM otherwise) without side effects.
        std::fs::write(t.path().join("kernel/garbage.ko"), b"not a module").unwrap();
        let index = ModuleIndex::load(t.path()).unwrap();
        let sys = t.path().join("sys");
        let mut loader = Loader::new(&index, &sys, None);

        let e = loader.load("missing").unwrap_err();
        assert!(matches!(e, LoadError::Open { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.starts_with("module missing: cannot open "), "{msg}");
        assert!(msg.contains("kernel/missing.ko"), "{msg}");

        let e = loader.load("garbage").unwrap_err();
        assert!(matches!(e, LoadError::Init { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("module garbage: the kernel refused "),
            "{e}"
        );

        let e = loader.load("user").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("module user: dependency failed: module garbage:"),
            "{e}"
        );
    }
}
