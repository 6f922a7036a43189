//! The steps of PID 1's boot, in the order [`super::pid1_main`] runs them.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, watch, Notify};

use super::services::Services;
use super::{controlplane, hotplug, rss_kb, Phase};
use crate::cmdline::Cmdline;
use crate::config::load::Loaded;
use crate::config::source::SourceSettings;
use crate::config::{self, MachineType};
use crate::lock;
use crate::modules::{self, coldplug, ModuleIndex};
use crate::net::manager::{self, Event as NetEvent, Manager, Status};
use crate::net::rtnl::Rtnl;
use crate::node::{ConfigInfo, EtcdSlot, NodeState};
use crate::shutdown::{button, Trigger};
use crate::storage::{self, VarSource};
use crate::supervise::Reaper;
use crate::uevent::UeventSocket;

/// What starts a shutdown: SIGTERM, SIGINT (ctrl-alt-del) and the ACPI
/// power button.
pub struct Triggers {
    sigterm: Option<Signal>,
    sigint: Option<Signal>,
    button_tx: mpsc::UnboundedSender<Trigger>,
    buttons: mpsc::UnboundedReceiver<Trigger>,
}

impl Triggers {
    /// Installs the signal handlers. Signals with the default action are
    /// dropped for PID 1 (signal(7), "init" protection in
    /// kernel/signal.c), so until this runs they are simply ignored.
    pub fn install() -> Triggers {
        let sigterm = signal(SignalKind::terminate()).ok();
        let sigint = signal(SignalKind::interrupt()).ok();
        if sigterm.is_none() || sigint.is_none() {
            log::error!(
                "cannot install SIGTERM/SIGINT handlers; only the power button can shut down"
            );
        }
        let (button_tx, buttons) = mpsc::unbounded_channel();
        Triggers {
            sigterm,
            sigint,
            button_tx,
            buttons,
        }
    }

    /// Watches every ACPI power button (needs the `button` and `evdev`
    /// modules, so after the modules phase).
    pub fn watch_power_buttons(&self) {
        let buttons = button::find(Path::new("/sys"), Path::new("/dev"));
        if buttons.is_empty() {
            log::warn!("no ACPI power button found (modules button and evdev); power-button shutdown unavailable");
            return;
        }
        let names: Vec<&str> = buttons.iter().map(|(n, _)| n.as_str()).collect();
        log::info!("watching power button on {}", names.join(", "));
        let tx = self.button_tx.clone();
        button::watch(buttons, move |dev| {
            let _ = tx.send(Trigger::PowerButton(dev.to_string()));
        });
    }

    /// The next trigger.
    pub async fn next(&mut self) -> Trigger {
        tokio::select! {
            Some(_) = recv(&mut self.sigterm) => Trigger::Sigterm,
            Some(_) = recv(&mut self.sigint) => Trigger::CtrlAltDel,
            // `button_tx` lives in self, so this never closes.
            Some(t) = self.buttons.recv() => t,
        }
    }
}

async fn recv(s: &mut Option<Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// The reaper, ctrl-alt-del as SIGINT, and the kernel's modprobe helper.
pub fn early_setup() -> Option<Reaper> {
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
    reaper
}

/// The config parameters; proxy settings and the like from
/// `keel.environment=` apply to PID 1 and everything it starts. Set now,
/// while PID 1 is still one thread (setenv is not thread-safe against a
/// concurrent getenv).
pub fn config_settings(cmdline: &Cmdline) -> SourceSettings {
    let settings = match SourceSettings::from_cmdline(cmdline) {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}; ignoring the config parameters, looking for a config partition only");
            SourceSettings::default()
        }
    };
    for (k, v) in &settings.environment {
        std::env::set_var(k, v);
    }
    settings
}

pub fn open_uevents() -> Option<UeventSocket> {
    match UeventSocket::open() {
        Ok(s) => Some(s),
        Err(e) => {
            log::error!("{e}; hotplugged devices and links will not be handled");
            None
        }
    }
}

/// The module index and the coldplug state, which carries over to the
/// hotplug passes.
#[derive(Clone)]
pub struct Modules {
    index: Option<Arc<ModuleIndex>>,
    state: Arc<Mutex<coldplug::Coldplug>>,
    /// True once a pass over every device present has run (the boot's
    /// first pass covers only what the links need).
    settled: Arc<watch::Sender<bool>>,
}

/// How long `/var` waits for the deferred modules before it is chosen
/// without them (a driver whose probe hangs must not hold the boot).
pub const SETTLE_LIMIT: Duration = Duration::from_secs(10);

impl Modules {
    /// One hotplug pass over devices not handled before.
    fn plug(&self, cmdline: &Cmdline) {
        if let Some(index) = &self.index {
            plug(
                index,
                &mut lock(&self.state),
                cmdline,
                "hotplug",
                4,
                coldplug::Pass::All,
            );
        }
        self.settled.send_replace(true);
    }

    /// Loads, on a thread of its own, the modules the modules phase left
    /// (`coldplug::early`: storage controllers and everything else) while
    /// the links and config phases go on; wakes `wake` when done, so a
    /// config loop that found no disk looks again at once.
    ///
    /// At normal priority from the start: on q35 `/var` waits for the AHCI
    /// stack, whose module loading takes CPU (~0.3 s under TCG) but whose
    /// longest part is libata's debounce of each empty port
    /// (drivers/ata/libata-sata.c `sata_link_debounce`), a sleep. Run
    /// alongside the links and config phases, the sleep is hidden behind
    /// them; the links phase takes ~0.2 s longer for the shared CPU. At
    /// idle priority (SCHED_IDLE, tried in an earlier version) the thread
    /// got no CPU on a busy one-CPU node until `/var` waited for it, and
    /// the whole stack then ran after the config: `make bench-run`
    /// measured /init → etcd's start 0.3 s shorter this way (median of 9
    /// nodes, 1.74 s against 2.05 s).
    pub fn load_deferred(&self, cmdline: Arc<Cmdline>, wake: Arc<Notify>) {
        let Some(index) = self.index.clone() else {
            return;
        };
        let (state, settled, c) = (self.state.clone(), self.settled.clone(), cmdline.clone());
        let spawned = std::thread::Builder::new()
            .name("coldplug".into())
            .spawn(move || {
                let t = std::time::Instant::now();
                let r = plug(
                    &index,
                    &mut lock(&state),
                    &c,
                    "coldplug",
                    16,
                    coldplug::Pass::All,
                );
                log::info!(
                    "modules: the rest of the hardware in {} ms ({} loaded, {} failed; {} rounds, {} ms in sysfs)",
                    t.elapsed().as_millis(),
                    r.loaded.len(),
                    r.failed.len(),
                    r.rounds,
                    r.scanning.as_millis()
                );
                settled.send_replace(true);
                wake.notify_one();
            });
        if let Err(e) = spawned {
            log::error!("modules: cannot start the background pass: {e}; loading them now");
            self.plug(&cmdline);
        }
    }

    /// Whether every device present has had its modules loaded.
    pub fn settled(&self) -> bool {
        *self.settled.borrow()
    }

    /// Waits until [`Modules::settled`], at most `limit`; false when the
    /// limit passed.
    pub async fn wait_settled(&self, limit: Duration) -> bool {
        let mut rx = self.settled.subscribe();
        let settled = tokio::time::timeout(limit, rx.wait_for(|s| *s)).await;
        settled.is_ok()
    }
}

/// Phase "modules": coldplug what the links need (the network
/// controllers, the power button: `coldplug::early`) and load `preload`
/// (the config disk's filesystems); the rest follows in the background
/// ([`Modules::load_deferred`]).
pub fn modules(cmdline: &Cmdline, node: &NodeState, preload: &[&str]) -> Modules {
    let t = Phase::start("modules");
    let index = match ModuleIndex::load(&modules::index_dir()) {
        Ok(i) => Some(Arc::new(i)),
        Err(e) => {
            log::error!("{e}; no modules will be loaded (is this the Keel initramfs?)");
            None
        }
    };
    let m = Modules {
        settled: Arc::new(watch::channel(index.is_none()).0),
        index,
        state: Arc::default(),
    };
    let detail = match &m.index {
        Some(index) => {
            let report = plug(
                index,
                &mut lock(&m.state),
                cmdline,
                "coldplug",
                16,
                coldplug::Pass::Early,
            );
            let mut loader = modules::Loader::new(index, Path::new("/sys"), Some(cmdline));
            let mut loaded = Vec::new();
            for name in preload {
                match loader.load(name) {
                    Ok(new) => loaded.extend(new),
                    Err(e) => log::warn!("{e}; it loads on demand instead"),
                }
            }
            if !loaded.is_empty() {
                log::info!("config filesystems loaded: {}", loaded.join(" "));
            }
            format!(
                "{} loaded, {} failed, {} devices without a module (keel.log=debug lists them), {} rounds ({} ms in sysfs); the rest in the background",
                report.loaded.len(),
                report.failed.len(),
                report.no_module.len(),
                report.rounds,
                report.scanning.as_millis()
            )
        }
        None => "no module index".into(),
    };
    t.done(&detail, node);
    m
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
    pass: coldplug::Pass,
) -> coldplug::Report {
    let sys = Path::new("/sys");
    let mut loader = modules::Loader::new(index, sys, Some(cmdline));
    let report = state.run(sys, index, &mut loader, max_rounds, pass);
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

/// The network manager's handles.
#[derive(Clone)]
pub struct Net {
    pub events: mpsc::UnboundedSender<NetEvent>,
    /// None when rtnetlink could not be opened.
    pub status: Option<watch::Receiver<Status>>,
    /// Notified on every status change (the config loop retries a URL).
    pub changed: Arc<Notify>,
}

/// Phase "links": name the links, configure what the command line and
/// (before any config) DHCP ask for; the manager then serves config and
/// hotplug as a service.
/// `changed` is [`Net::changed`], made by the caller so the background
/// module pass, started before this phase, can wake the config loop too.
pub async fn links(
    cmdline: &Cmdline,
    services: &mut Services,
    node: &NodeState,
    changed: Arc<Notify>,
) -> Net {
    let t = Phase::start("links");
    let (events, rx) = mpsc::unbounded_channel::<NetEvent>();
    let rtnl = match Rtnl::connect() {
        Ok(r) => r,
        Err(e) => {
            t.done(&format!("{e}; the network stays unconfigured"), node);
            return Net {
                events,
                status: None,
                changed,
            };
        }
    };
    let (params, errors) = crate::net::ipcfg::parse_lenient(cmdline);
    for e in errors {
        log::error!("{e}; ignoring it");
    }
    let settings = manager::Settings {
        sys_root: "/sys".into(),
        etc_root: "/etc".into(),
        ifnames: cmdline.get("net.ifnames") != Some("0"),
        params,
        set_kernel_hostname: true,
    };
    let (mut manager, mut status) = Manager::new(rtnl, settings);
    let net = Net {
        events,
        status: Some(status.clone()),
        changed: changed.clone(),
    };
    t.done(&manager.start().await, node);
    services.spawn("network manager", manager.run(rx));
    services.spawn("network status", async move {
        while status.changed().await.is_ok() {
            changed.notify_one();
        }
    });
    net
}

/// Hotplug from uevents: modules for new devices, new links to the
/// network manager. Returns a flag that is true while the listener runs:
/// it coldplugs new devices as they appear, so the config loop's own
/// rescan is then not needed.
pub fn hotplug(
    services: &mut Services,
    uevents: Option<UeventSocket>,
    modules: &Modules,
    cmdline: &Arc<Cmdline>,
    net: &Net,
) -> Arc<AtomicBool> {
    let live = Arc::new(AtomicBool::new(false));
    let (Some(socket), Some(_)) = (uevents, &modules.index) else {
        return live;
    };
    let (m, c) = (modules.clone(), cmdline.clone());
    let plug_fn = Arc::new(move || m.plug(&c));
    let (tx, flag) = (net.events.clone(), live.clone());
    live.store(true, Ordering::SeqCst);
    services.spawn("hotplug", async move {
        hotplug::run(socket, plug_fn, tx).await;
        flag.store(false, Ordering::SeqCst);
    });
    live
}

/// Phase "config": load the machine config (retrying until one is valid),
/// hand it to the network manager and mount `/var`. None with
/// `keel.config=none`.
pub async fn config(
    settings: SourceSettings,
    modules: Modules,
    cmdline: Arc<Cmdline>,
    hotplug_live: Arc<AtomicBool>,
    net: Net,
    reaper: Option<Reaper>,
    node: Arc<NodeState>,
) -> Option<Loaded> {
    let t = Phase::start("config");
    let (m, settled) = (modules.clone(), modules.clone());
    let loaded = config::load::load_until_valid(
        settings,
        config::source::Env::default(),
        move || {
            // Fallback for a PID 1 without a uevent socket.
            if !hotplug_live.load(Ordering::SeqCst) {
                m.plug(&cmdline);
            }
        },
        || crate::net::has_ipv4_route(Path::new("/proc")),
        // Asked only while the config has not been found: the background
        // pass is waited for from then on.
        move || settled.settled(),
        net.changed.clone(),
    )
    .await;
    let Some(l) = loaded else {
        t.done("no config (keel.config=none)", &node);
        return None;
    };
    t.done(&format!("loaded from {}", l.origin), &node);
    log::info!("config: {}", l.config.summary());
    node.set_config(ConfigInfo {
        origin: l.origin.clone(),
        summary: l.config.summary(),
        warnings: l.warnings.clone(),
    });
    let _ = net.events.send(NetEvent::Config(l.config.clone()));
    if let Some(reaper) = &reaper {
        let controlplane = l.config.machine_type() == MachineType::Controlplane;
        controlplane::mount_var(reaper, controlplane, choose_var(&modules).await).await;
    }
    Some(l)
}

/// Where `/var` comes from. A KEEL-VAR disk behind a storage controller
/// appears only once its modules are in: finding none while they still
/// load proves nothing, so then it waits for them and looks again.
async fn choose_var(modules: &Modules) -> VarSource {
    let (sys, dev) = (Path::new("/sys"), Path::new("/dev"));
    let first = storage::choose(sys, dev);
    if first != VarSource::Tmpfs || modules.settled() {
        return first;
    }
    if !modules.wait_settled(SETTLE_LIMIT).await {
        log::warn!(
            "var: the storage drivers are still loading after {} s; choosing /var without the disks they may bring",
            SETTLE_LIMIT.as_secs()
        );
    }
    storage::choose(sys, dev)
}

/// Boot is done: the control plane starts (on its own time: etcd may wait
/// for its address) and PID 1 says `ready`.
pub fn ready(
    services: &mut Services,
    loaded: Option<Loaded>,
    net: &Net,
    reaper: Option<Reaper>,
    cmdline: &Cmdline,
    started: Instant,
    node: &Arc<NodeState>,
) {
    let configured = loaded.is_some();
    if let (Some(l), Some(status)) = (&loaded, net.status.clone()) {
        let (config, node) = (l.config.clone(), node.clone());
        services.spawn("node API", crate::api::run(config, node, status));
    }
    if let Some(l) = &loaded {
        node.set_etcd(match l.config.machine_type() {
            MachineType::Worker => EtcdSlot::Worker,
            _ => EtcdSlot::Pending("waiting for the network".to_owned()),
        });
    }
    if let (Some(l), Some(reaper), Some(status)) = (loaded, reaper, net.status.clone()) {
        let node = node.clone();
        services.start_control_plane(move |shutdown| {
            controlplane::start(l.config, reaper, status, shutdown, node)
        });
    }
    if test_panic(cmdline, configured) {
        // Test-only (README, "Kernel parameters"): proves the panic hook
        // turns a PID 1 panic into a controlled reboot or power-off.
        panic!("keel.test.panic is set: panicking on purpose");
    }
    let rss = rss_kb(Path::new("/proc"))
        .map(|k| format!("{k} kB"))
        .unwrap_or_else(|| "unknown".into());
    log::info!(
        "ready in {} ms (PID 1 RSS {rss})",
        started.elapsed().as_millis()
    );
}

/// Whether to panic on purpose before `ready`: only from the kernel's own
/// command line and only on a node without a machine config
/// (`keel.config=none`, the test boots), so no config source (a URL, a
/// disk, an inline config) can ever make a node panic.
fn test_panic(cmdline: &Cmdline, configured: bool) -> bool {
    if !cmdline.flag("keel.test.panic") {
        return false;
    }
    if configured {
        log::warn!("keel.test.panic ignored: it is honoured only with keel.config=none");
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_panic_only_without_a_config() {
        // (kernel command line, a config was loaded, panics)
        let cases = [
            ("keel.config=none keel.test.panic", false, true),
            ("keel.test.panic", true, false),
            ("keel.config=none keel.test.panic=0", false, false),
            ("keel.config=none", false, false),
        ];
        for (line, configured, want) in cases {
            assert_eq!(
                test_panic(&Cmdline::parse(line), configured),
                want,
                "{line} {configured}"
            );
        }
    }
}
