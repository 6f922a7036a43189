//! PID 1's boot sequence (DESIGN.md, "Boot sequence") and its main loop.
//!
//! Every phase logs one line with its duration; the last boot line is
//! `keel: ready in N ms`. Nothing here may return or panic on bad input:
//! errors are logged and boot goes on.

pub mod hotplug;
pub mod kmsg;
pub mod mounts;
pub mod panic;
pub mod power;
pub mod services;

use std::path::Path;
use std::time::{Duration, Instant};

use log::LevelFilter;
use nix::time::{clock_gettime, ClockId};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::cmdline::Cmdline;
use crate::config::{self, source::SourceSettings, MachineType};
use crate::lock;
use crate::modules::{self, coldplug, ModuleIndex};
use crate::net::manager::{Event as NetEvent, Manager};
use crate::net::rtnl::Rtnl;
use crate::shutdown::{self, button, Trigger};
use crate::supervise::Reaper;

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

    fn done(self, detail: &str) {
        let ms = self.start.elapsed().as_millis();
        if detail.is_empty() {
            log::info!("phase {} done in {ms} ms", self.name);
        } else {
            log::info!("phase {} done in {ms} ms: {detail}", self.name);
        }
    }
}

/// PID 1's entry point. Never returns.
pub fn run() -> ! {
    let started = Instant::now();
    let kernel_ms = ms_since_kernel_start();
    panic::install();

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
    t_mounts.done(&format!("{mounted} mounted, {already} already there"));

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
    rt.block_on(pid1_main(cmdline, started));
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

async fn pid1_main(cmdline: Cmdline, started: Instant) {
    let cmdline = Arc::new(cmdline);
    // Handlers first, so a signal during the (blocking) boot phases is
    // queued rather than lost: signals with the default action are dropped
    // for PID 1 (signal(7), "init" protection in kernel/signal.c).
    let mut sigterm = signal(SignalKind::terminate()).ok();
    let mut sigint = signal(SignalKind::interrupt()).ok();
    if sigterm.is_none() || sigint.is_none() {
        log::error!("cannot install SIGTERM/SIGINT handlers; only the power button can shut down");
    }
    let reaper = match Reaper::start() {
        Ok(r) => Some(r),
        Err(e) => {
            log::error!("{e}; zombies will be reaped once a second instead");
            None
        }
    };
    // With CAD disabled, ctrl-alt-del sends SIGINT to PID 1 instead of an
    // immediate reboot (reboot(2), LINUX_REBOOT_CMD_CAD_OFF).
    if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
        log::warn!("cannot disable ctrl-alt-del reboot: {e}");
    }
    // The kernel runs this for request_module(); the image links
    // /sbin/modprobe to this binary.
    if let Err(e) = std::fs::write("/proc/sys/kernel/modprobe", "/sbin/modprobe\n") {
        log::warn!("cannot set /proc/sys/kernel/modprobe: {e}");
    }

    // Proxy settings and the like from keel.environment= apply to PID 1
    // and everything it starts. Set now, while PID 1 is still one thread
    // (setenv is not thread-safe against concurrent getenv).
    let settings = match SourceSettings::from_cmdline(&cmdline) {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}; ignoring the config parameters, looking for a config partition only");
            SourceSettings::default()
        }
    };
    for (k, v) in &settings.environment {
        std::env::set_var(k, v);
    }

    // Opened before modules load, so links and devices that appear from
    // here on are not missed: the socket queues their uevents.
    let uevents = match crate::uevent::UeventSocket::open() {
        Ok(s) => Some(s),
        Err(e) => {
            log::error!("{e}; hotplugged devices and links will not be handled");
            None
        }
    };

    // Phase: modules.
    let t = Phase::start("modules");
    // The index is read once; the coldplug state carries over to the
    // hotplug passes of the config loop.
    let index = match ModuleIndex::load(&modules::index_dir()) {
        Ok(i) => Some(Arc::new(i)),
        Err(e) => {
            log::error!("{e}; no modules will be loaded (is this the Keel initramfs?)");
            None
        }
    };
    let plug_state = Arc::new(std::sync::Mutex::new(coldplug::Coldplug::default()));
    let detail = match &index {
        Some(index) => load_modules(index, &mut lock(&plug_state), &cmdline),
        None => "no module index".into(),
    };
    t.done(&detail);

    // Phase: links. Name them, configure what the command line and (before
    // any config) DHCP ask for; the manager then serves config and hotplug.
    let t = Phase::start("links");
    let (net_tx, net_rx) = mpsc::unbounded_channel::<NetEvent>();
    let net_changed = Arc::new(tokio::sync::Notify::new());
    let mut net_status = None;
    match Rtnl::connect() {
        Ok(rtnl) => {
            let (params, errors) = crate::net::ipcfg::parse_lenient(&cmdline);
            for e in errors {
                log::error!("{e}; ignoring it");
            }
            let net_settings = crate::net::manager::Settings {
                sys_root: "/sys".into(),
                etc_root: "/etc".into(),
                ifnames: cmdline.get("net.ifnames") != Some("0"),
                params,
                set_kernel_hostname: true,
            };
            let (mut manager, mut status) = Manager::new(rtnl, net_settings);
            net_status = Some(status.clone());
            let summary = manager.start().await;
            t.done(&summary);
            tokio::spawn(manager.run(net_rx));
            let wake = net_changed.clone();
            tokio::spawn(async move {
                while status.changed().await.is_ok() {
                    wake.notify_one();
                }
            });
        }
        Err(e) => {
            t.done(&format!("{e}; the network stays unconfigured"));
        }
    }
    // True while the uevent listener runs: it coldplugs new devices as
    // they appear, so the config loop's own rescan is then not needed.
    let hotplug_live = Arc::new(AtomicBool::new(false));
    if let (Some(socket), Some(index)) = (uevents, index.clone()) {
        let plug_state = plug_state.clone();
        let plug_cmdline = cmdline.clone();
        let plug_fn = Arc::new(move || {
            plug(
                index.as_ref(),
                &mut lock(&plug_state),
                &plug_cmdline,
                "hotplug",
                4,
            );
        });
        let (net_tx, live) = (net_tx.clone(), hotplug_live.clone());
        live.store(true, Ordering::SeqCst);
        tokio::spawn(async move {
            hotplug::run(socket, plug_fn, net_tx).await;
            live.store(false, Ordering::SeqCst);
        });
    }

    let (tx, mut triggers) = mpsc::unbounded_channel::<Trigger>();
    // Held for the life of PID 1 so the channel never closes, which would
    // disable its select! branch below.
    let _tx_keep = tx.clone();
    let buttons = button::find(Path::new("/sys"), Path::new("/dev"));
    if buttons.is_empty() {
        log::warn!("no ACPI power button found (modules button and evdev); power-button shutdown unavailable");
    } else {
        let names: Vec<&str> = buttons.iter().map(|(n, _)| n.as_str()).collect();
        log::info!("watching power button on {}", names.join(", "));
        button::watch(buttons, move |dev| {
            let _ = tx.send(Trigger::PowerButton(dev.to_string()));
        });
    }

    // etcd, once started, is stopped before the shutdown sequence (whose
    // SIGTERM sweep would otherwise race the supervisor's restarts), and
    // the VIPs are released and resigned before etcd stops.
    let etcd_slot: Arc<std::sync::Mutex<Option<services::Etcd>>> = Arc::default();
    let vip_slot: Arc<std::sync::Mutex<Option<services::Vips>>> = Arc::default();
    let etcd_task: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>> = Arc::default();
    let services_reaper = reaper.clone();
    let boot_rest = {
        let (etcd_slot, etcd_task) = (etcd_slot.clone(), etcd_task.clone());
        let vip_slot = vip_slot.clone();
        let cmdline = cmdline.clone();
        async move {
            let t = Phase::start("config");
            let rescan_cmdline = cmdline.clone();
            let loaded = config::load::load_until_valid(
                settings,
                config::source::Env::default(),
                move || match &index {
                    // Fallback for a PID 1 without a uevent socket.
                    Some(index) if !hotplug_live.load(Ordering::SeqCst) => {
                        plug(index, &mut lock(&plug_state), &rescan_cmdline, "hotplug", 4);
                    }
                    _ => {}
                },
                || crate::net::has_ipv4_route(Path::new("/proc")),
                net_changed,
            )
            .await;
            match &loaded {
                Some(l) => {
                    t.done(&format!("loaded from {}", l.origin));
                    log::info!("config: {}", l.config.summary());
                    let _ = net_tx.send(NetEvent::Config(l.config.clone()));
                    if let Some(reaper) = services_reaper {
                        let controlplane = l.config.machine_type() == MachineType::Controlplane;
                        services::mount_var(&reaper, controlplane).await;
                        if let Some(status) = net_status {
                            // In a task: etcd may wait for its address, and
                            // `ready` means PID 1's own boot is done.
                            let (config, slot) = (l.config.clone(), etcd_slot.clone());
                            let vip_slot = vip_slot.clone();
                            let task = tokio::spawn(async move {
                                let net = status.clone();
                                let etcd =
                                    services::start_etcd(config.clone(), reaper, status).await;
                                if let Some(etcd) = &etcd {
                                    *lock(&vip_slot) = services::start_vips(&config, etcd, net);
                                }
                                *lock(&slot) = etcd;
                            });
                            *lock(&etcd_task) = Some(task);
                        }
                    }
                }
                None => t.done("no config (keel.config=none)"),
            }

            if cmdline.flag("keel.test.panic") {
                // Test-only (README, "Kernel parameters"): proves the panic
                // hook turns a PID 1 panic into a controlled reboot or
                // power-off.
                panic!("keel.test.panic is set: panicking on purpose");
            }

            let rss = rss_kb(Path::new("/proc"))
                .map(|k| format!("{k} kB"))
                .unwrap_or_else(|| "unknown".into());
            log::info!(
                "ready in {} ms (PID 1 RSS {rss})",
                started.elapsed().as_millis()
            );
            // PID 1 goes on serving whatever the later phases start.
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(boot_rest);

    let trigger = tokio::select! {
        _ = &mut boot_rest => unreachable!("the boot task never completes"),
        Some(_) = recv_opt(&mut sigterm) => Trigger::Sigterm,
        Some(_) = recv_opt(&mut sigint) => Trigger::CtrlAltDel,
        Some(t) = triggers.recv() => t,
    };
    if let Some(task) = lock(&etcd_task).take() {
        task.abort();
    }
    let vips = lock(&vip_slot).take();
    if let Some(vips) = vips {
        let t = Instant::now();
        vips.stop().await;
        log::info!(
            "vip: released and resigned in {} ms",
            t.elapsed().as_millis()
        );
    }
    let etcd = lock(&etcd_slot).take();
    if let Some(etcd) = etcd {
        let t = Instant::now();
        etcd.sup.stop().await;
        log::info!("etcd stopped in {} ms", t.elapsed().as_millis());
    }
    match reaper {
        Some(r) => shutdown::run(trigger, r).await,
        None => match Reaper::start() {
            Ok(r) => shutdown::run(trigger, r).await,
            Err(_) => power::final_reboot(trigger.power_off()),
        },
    }
}

async fn recv_opt(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// One coldplug pass over devices not handled before, logging what it
/// loaded and what failed. At boot it finds everything present; later
/// passes (`what` = "hotplug") pick up devices that appeared since, such as
/// a hot-plugged config disk: the kernel does not load modules for new
/// devices by itself, that is udev's job, which Keel does here.
fn plug(
    index: &ModuleIndex,
    state: &mut coldplug::Coldplug,
    cmdline: &Cmdline,
    what: &str,
    max_rounds: usize,
) -> coldplug::Report {
    let sys = Path::new("/sys");
    let mut loader = modules::Loader::new(index, sys, Some(cmdline));
    let report = state.run(sys, index, &mut loader, max_rounds);
    for (dev, e) in &report.failed {
        log::error!("{what} {} ({}): {e}", dev.path.display(), dev.modalias);
    }
    for dev in &report.no_module {
        log::debug!(
            "{what}: no module in the image for {} ({})",
            dev.path.display(),
            dev.modalias
        );
    }
    if !report.loaded.is_empty() {
        log::info!("{what} loaded: {}", report.loaded.join(" "));
    }
    report
}

/// Boot coldplug; returns the phase summary.
fn load_modules(index: &ModuleIndex, state: &mut coldplug::Coldplug, cmdline: &Cmdline) -> String {
    let report = plug(index, state, cmdline, "coldplug", 16);
    format!(
        "{} loaded, {} failed, {} devices without a module (keel.log=debug lists them), {} rounds",
        report.loaded.len(),
        report.failed.len(),
        report.no_module.len(),
        report.rounds
    )
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
