//! Kernel modules: the index in the image, loading with dependencies,
//! coldplug by modalias, and the `modprobe` usermode helper.

pub mod coldplug;
pub mod index;
pub mod load;

use std::path::{Path, PathBuf};

pub use index::{ModuleIndex, Resolved};
pub use load::{LoadError, Loader};

/// `/lib/modules/<release>` for the running kernel (uname(2) release).
pub fn index_dir() -> PathBuf {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    Path::new("/lib/modules").join(release)
}

/// Entry point when the binary runs as `modprobe`: the kernel's usermode
/// helper (`/proc/sys/kernel/modprobe`) calls `modprobe -q -- <name>` for
/// request_module() (`fs-vfat`, `rtnl-link-bond`, `net-pf-17`, ...).
/// Returns the exit code: 0 when every module loaded or is built in.
pub fn modprobe_main(args: &[String]) -> i32 {
    crate::boot::kmsg::init("keel-modprobe", log::LevelFilter::Info);
    let mut quiet = false;
    let mut names = Vec::new();
    let mut options_done = false;
    for a in args.iter().skip(1) {
        match a.as_str() {
            "--" if !options_done => options_done = true,
            "-q" | "--quiet" if !options_done => quiet = true,
            // -b (blacklist) and -v are accepted for compatibility; Keel has
            // no blacklist and logs what it loads anyway.
            s if !options_done && s.starts_with('-') => {}
            s => names.push(s.to_string()),
        }
    }
    // modprobe's syntax is `modprobe <module> [param=value ...]`.
    let Some((name, params)) = names.split_first() else {
        log::error!("modprobe: no module name given");
        return 1;
    };
    if !params.is_empty() {
        log::warn!("modprobe {name}: parameters {params:?} ignored; use {name}.<param>= on the kernel command line");
    }
    let dir = index_dir();
    let index = match ModuleIndex::load(&dir) {
        Ok(i) => i,
        Err(e) => {
            log::error!("modprobe {name}: {e}");
            return 1;
        }
    };
    let cmdline = crate::cmdline::Cmdline::read(Path::new("/proc/cmdline")).ok();
    // The kernel waits for what the module's init registers, not for
    // other drivers' probes (Loader::without_async_wait).
    let mut loader = Loader::new(&index, Path::new("/sys"), cmdline.as_ref()).without_async_wait();
    match index.resolve(name) {
        Resolved::Builtin(_) => 0,
        Resolved::Unknown => {
            // The kernel asks speculatively (-q) for aliases no image has,
            // e.g. net-pf-* families: not worth an error line each.
            if quiet {
                log::debug!("modprobe {name}: no module in the image provides it");
            } else {
                log::error!("modprobe {name}: no module in the image provides it");
            }
            1
        }
        Resolved::Modules(mods) => {
            let mut code = 0;
            for m in mods {
                match loader.load(&m) {
                    Ok(new) if !new.is_empty() => {
                        log::info!("modprobe {name}: loaded {}", new.join(", "))
                    }
                    Ok(_) => {}
                    Err(e) => {
                        log::error!("modprobe {name}: {e}");
                        code = 1;
                    }
                }
            }
            code
        }
    }
}
