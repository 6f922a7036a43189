//! PID 1's boot sequence (docs/ARCHITECTURE.md, "Boot sequence") and its
//! main loop.
//!
//! Every phase logs one line with its duration; the last boot line is
//! `keel: ready in N ms`. Nothing here may return or panic on bad input:
//! errors are logged and boot goes on.

pub mod controlplane;
pub mod hotplug;
pub mod kmsg;
pub mod mounts;
pub mod panic;
mod phases;
pub mod power;
pub mod services;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::LevelFilter;
use nix::time::{clock_gettime, ClockId};

use crate::cmdline::Cmdline;
use crate::node::{NodeState, PowerRequest};
use crate::shutdown;
use crate::supervise::Reaper;
use services::Services;

/// Milliseconds since the kernel started (CLOCK_BOOTTIME), to place init's
/// start on the kernel's own timeline.
fn ms_since_kernel_start() -> u128 {
    clock_gettime(ClockId::CLOCK_BOOTTIME)
        .map(|t| Duration::from(t).as_millis())
        .unwrap_or(0)
}

/// Log level from `keel.log=` (error, warn, info, debug), default info.
pub fn log_level(cmdline: &Cmdline) -> Result<LevelFilter, String> {
    match cmdline.get("keel.log") {
        None => Ok(LevelFilter::Info),
        Some(v) => v.parse().map_err(|_| {
            format!("kernel parameter keel.log={v}: expected error, warn, info, debug or trace")
        }),
    }
}

/// Resident set size of this process in kB, from `<proc_root>/self/status`.
pub fn rss_kb(proc_root: &Path) -> Option<u64> {
    let status = std::fs::read_to_string(proc_root.join("self/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

struct Phase {
    name: &'static str,
    start: Instant,
}

impl Phase {
    fn start(name: &'static str) -> Phase {
        Phase {
            name,
            start: Instant::now(),
        }
    }

    /// Logs the phase's duration and records it for the node API.
    fn done(self, detail: &str, node: &NodeState) {
        let ms = self.start.elapsed().as_millis();
        if detail.is_empty() {
            log::info!("phase {} done in {ms} ms", self.name);
        } else {
            log::info!("phase {} done in {ms} ms: {detail}", self.name);
        }
        node.phase(self.name, ms, detail);
    }
}

/// PID 1's entry point. Never returns.
pub fn run() -> ! {
    let started = Instant::now();
    let kernel_ms = ms_since_kernel_start();
    panic::install();
    let (node, power) = NodeState::new(started);

    // Phase 1: mounts, before logging (the logger needs /dev/kmsg).
    let t_mounts = Phase::start("mounts");
    let mount_outcomes = mounts::mount_boot_table();
    // /dev/kmsg drops user-space lines beyond a burst unless this is on
    // (Documentation/admin-guide/sysctl/kernel.rst, printk_devkmsg).
    let devkmsg = std::fs::write("/proc/sys/kernel/printk_devkmsg", "on\n");

    let cmdline = Cmdline::read(Path::new("/proc/cmdline"));
    let level = cmdline.as_ref().ok().map(log_level);
    kmsg::init(
        "keel",
        level
            .clone()
            .and_then(Result::ok)
            .unwrap_or(LevelFilter::Info),
    );
    log::info!(
        "keel {} started as PID 1, {kernel_ms} ms after kernel start",
        env!("CARGO_PKG_VERSION")
    );
    let cmdline = match cmdline {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}; going on with an empty command line");
            Cmdline::default()
        }
    };
    if let Some(Err(e)) = level {
        log::error!("{e}; using info");
    }
    match panic::action_from(&cmdline) {
        Ok(a) => panic::set_action(a),
        Err(e) => log::error!("{e}; panics will reboot"),
    }
    if let Err(e) = devkmsg {
        log::warn!("cannot set printk_devkmsg=on: {e}; some log lines may be rate-limited");
    }
    let (mut mounted, mut already) = (0, 0);
    for o in mount_outcomes {
        match o {
            mounts::MountOutcome::Mounted(_) => mounted += 1,
            mounts::MountOutcome::AlreadyMounted(t) => {
                already += 1;
                log::debug!("{t} already mounted, skipped");
            }
            mounts::MountOutcome::Failed(e) => log::error!("{e}"),
        }
    }
    t_mounts.done(
        &format!("{mounted} mounted, {already} already there"),
        &node,
    );

    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("cannot start the async runtime: {e}; PID 1 can only idle now");
            idle_forever();
        }
    };
    rt.block_on(pid1_main(cmdline, started, node, power));
    // pid1_main never returns; this keeps the type honest.
    idle_forever()
}

fn idle_forever() -> ! {
    loop {
        // Still reap, so zombies do not pile up.
        let _ = nix::sys::wait::waitpid(None, None);
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The boot sequence (docs/ARCHITECTURE.md, "Boot sequence"), then
/// serving until shutdown. Each step is a function in [`phases`].
async fn pid1_main(
    cmdline: Cmdline,
    started: Instant,
    node: Arc<NodeState>,
    mut power: tokio::sync::mpsc::UnboundedReceiver<PowerRequest>,
) {
    let cmdline = Arc::new(cmdline);
    // Handlers first, so a signal during the (blocking) boot phases is
    // queued rather than lost.
    let mut triggers = phases::Triggers::install();
    let reaper = phases::early_setup();
    let settings = phases::config_settings(&cmdline);
    // Opened before modules load, so links and devices that appear from
    // here on are not missed: the socket queues their uevents.
    let uevents = phases::open_uevents();
    let preload = match settings.searches_disks() {
        true => crate::config::source::label::CONFIG_MODULES,
        false => &[],
    };
    let modules = phases::modules(&cmdline, &node, preload);
    let mut services = Services::new();
    // The rest of the hardware loads in the background while the links
    // and the config are set up (`Modules::load_deferred`).
    let changed = Arc::new(tokio::sync::Notify::new());
    modules.load_deferred(cmdline.clone(), changed.clone());
    let net = phases::links(&cmdline, &mut services, &node, changed).await;
    let hotplug_live = phases::hotplug(&mut services, uevents, &modules, &cmdline, &net);
    triggers.watch_power_buttons();
    let mut config = tokio::spawn(phases::config(
        settings,
        modules,
        cmdline.clone(),
        hotplug_live,
        net.clone(),
        reaper.clone(),
        node.clone(),
    ));
    let mut loading = true;
    let trigger = loop {
        tokio::select! {
            loaded = &mut config, if loading => {
                loading = false;
                let loaded = loaded.unwrap_or_else(|e| {
                    log::error!("the config task failed: {e}");
                    None
                });
                phases::ready(&mut services, loaded, &net, reaper.clone(), &cmdline, started, &node);
            }
            t = triggers.next() => break t,
            Some(req) = power.recv() => break shutdown::Trigger::Api {
                power_off: req.power_off,
                by: req.by,
            },
        }
    };
    config.abort();
    // Said first: the services' stop (the VIPs, etcd) comes before the
    // shutdown sequence, and its lines should read as part of it.
    log::info!(
        "shutdown: {trigger} received, going to {}: releasing the VIPs, then stopping etcd",
        if trigger.power_off() {
            "power off"
        } else {
            "reboot"
        }
    );
    services.stop().await;
    match reaper {
        Some(r) => shutdown::run(trigger, r).await,
        None => match Reaper::start() {
            Ok(r) => shutdown::run(trigger, r).await,
            Err(_) => power::final_reboot(trigger.power_off()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_level_table() {
        let cases: &[(&str, Result<LevelFilter, ()>)] = &[
            ("", Ok(LevelFilter::Info)),
            ("keel.log=debug", Ok(LevelFilter::Debug)),
            ("keel.log=warn", Ok(LevelFilter::Warn)),
            ("keel.log=loud", Err(())),
        ];
        for (line, want) in cases {
            let got = log_level(&Cmdline::parse(line)).map_err(|_| ());
            assert_eq!(got, *want, "{line}");
        }
    }

    #[test]
    fn rss_from_status_fixture() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("self")).unwrap();
        std::fs::write(
            t.path().join("self/status"),
            "Name:\tkeel\nVmPeak:\t  9000 kB\nVmRSS:\t    2345 kB\n",
        )
        .unwrap();
        assert_eq!(rss_kb(t.path()), Some(2345));
        assert_eq!(rss_kb(Path::new("/nonexistent")), None);
    }
}
