//! Keel: a minimal PID 1 for Kubernetes control-plane nodes.
//!
//! One module per concern (docs/ARCHITECTURE.md, "Layout"):
//! - [`boot`]: PID 1's boot sequence (mounts, kmsg logger, panic hook,
//!   hotplug) and its [`boot::services::Services`], which own every
//!   long-lived task and stop them in order;
//! - [`cli`]: the operator commands (`keel validate`, `keel links`,
//!   `keel cmdline`, `keel vip`);
//! - [`cmdline`]: the kernel command line;
//! - [`config`]: the machine config: schema, validation, sources;
//! - [`etcd`]: etcd's arguments, certificates, supervision, health, rejoin;
//! - [`modules`]: the image's module index, coldplug, the modprobe helper;
//! - [`net`]: links: naming, selectors, the network spec and plan,
//!   rtnetlink, DHCP, the `/etc` files;
//! - [`shutdown`]: what starts a shutdown and the sequence itself;
//! - [`storage`]: where `/var` comes from;
//! - [`supervise`]: the reaper and supervised children;
//! - [`uevent`]: kernel uevents (hotplug);
//! - [`vip`]: the VIP election;
//! - [`x509`]: certificates issued from the config's CAs.

pub mod api;
pub mod boot;
pub mod cli;
pub mod cmdline;
pub mod config;
pub mod etcd;
pub mod logbuf;
pub mod modules;
pub mod net;
pub mod node;
pub mod shutdown;
pub mod storage;
pub mod supervise;
pub mod uevent;
pub mod vip;
pub mod x509;

use std::ffi::OsString;
use std::path::Path;

/// The multi-call entry point: PID 1, `modprobe`, or the CLI.
pub fn entry(args: Vec<OsString>) {
    if nix::unistd::getpid().as_raw() == 1 {
        boot::run();
    }
    let argv0 = args
        .first()
        .map(|a| {
            Path::new(a)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    let code = if argv0 == "modprobe" {
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        modules::modprobe_main(&args)
    } else {
        cli::main(args)
    };
    std::process::exit(code);
}

/// Locks `m`, ignoring poisoning. PID 1 must not die because some holder
/// panicked (the panic hook reboots anyway); every mutex in Keel guards
/// state that single assignments keep consistent.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
