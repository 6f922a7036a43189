//! The network task of PID 1: names links, plans and applies their
//! configuration, runs a DHCP client per link that wants one, and keeps
//! `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` (and the kernel's
//! hostname) in step with the config and the leases.
//!
//! It starts before any machine config exists (so DHCP can bring up the
//! network a config URL needs) and re-plans whenever something changes: the
//! config arrives, a link appears or goes (hotplug, from uevents), a lease
//! is granted or lost. Re-planning is cheap and applying is idempotent, so
//! "apply the whole plan again" is the one code path for every change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::dhcp::runner::{self, DhcpEvent, RunLink, RunOptions};
use super::dhcp::Lease;
use super::dns::{self, Hostname};
use super::ipcfg::NetParams;
use super::plan::{self, DhcpPlan, Inventory, Plan, Problem};
use super::rtnl::Rtnl;
use super::spec::{self, NetSpec};
use super::{apply, etc, naming, rename, sysfs};
use crate::config::Config;

/// Where the manager reads and writes, and the command line's say.
#[derive(Debug, Clone)]
pub struct Settings {
    pub sys_root: PathBuf,
    /// Where `hostname`, `hosts` and `resolv.conf` are written (`/etc`).
    pub etc_root: PathBuf,
    /// False for `net.ifnames=0`.
    pub ifnames: bool,
    pub params: NetParams,
    /// Call sethostname(2) (PID 1 does; tests in a namespace do not).
    pub set_kernel_hostname: bool,
}

/// What the manager is told.
#[derive(Debug)]
pub enum Event {
    /// A machine config was loaded.
    Config(Arc<Config>),
    /// A network link appeared (uevent `add`, subsystem `net`).
    LinkAdded(String),
    /// A network link went away.
    LinkRemoved(String),
}

/// What the manager publishes (for the VIP loop and the status API).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Every planned link exists, is configured, and every DHCP link holds
    /// a lease.
    pub configured: bool,
    /// Current DHCP leases by link.
    pub leases: BTreeMap<String, Lease>,
    /// The link each configured VIP lives on, once resolved.
    pub vip_links: BTreeMap<std::net::IpAddr, String>,
    /// A plan made from the machine config has been applied (as far as it
    /// could be: a missing link waits, an address the kernel refused is
    /// logged). What comes from the addresses the node has, such as etcd's
    /// advertised address and its certificates' SANs, waits for this:
    /// before it, only DHCP's addresses from before the config may be
    /// there.
    pub config_applied: bool,
}

/// How long a stopping DHCP client may take to release its lease and
/// remove what it applied (one RELEASE datagram and a few netlink calls).
const DHCP_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

struct Running {
    task: JoinHandle<()>,
    /// Asks the runner to release its lease and undo what it applied.
    stop: tokio::sync::oneshot::Sender<()>,
    /// What it was started with: a change restarts it.
    plan: DhcpPlan,
}

/// What has been logged and still holds, by topic: a line is logged when
/// it appears, and again if it goes away and comes back (a link that
/// returns, an error that recurs), never on every re-plan while it holds.
#[derive(Debug, Default)]
struct Reported(BTreeMap<&'static str, BTreeSet<String>>);

impl Reported {
    /// Replaces `topic`'s current lines; returns those that are new.
    fn update(
        &mut self,
        topic: &'static str,
        now: impl IntoIterator<Item = String>,
    ) -> Vec<String> {
        let now: BTreeSet<String> = now.into_iter().collect();
        let before = self.0.insert(topic, now.clone()).unwrap_or_default();
        now.into_iter().filter(|l| !before.contains(l)).collect()
    }
}

pub struct Manager {
    rtnl: Rtnl,
    settings: Settings,
    /// The machine config's network, once a config is loaded.
    spec: Option<NetSpec>,
    dhcp: BTreeMap<String, Running>,
    leases: BTreeMap<String, Lease>,
    dhcp_tx: mpsc::UnboundedSender<DhcpEvent>,
    dhcp_rx: mpsc::UnboundedReceiver<DhcpEvent>,
    reported: Reported,
    status: watch::Sender<Status>,
    /// When the current work began (start, or the config's arrival), for
    /// the "configured in N ms" line.
    since: Instant,
    announced: bool,
    /// A reconcile with the machine config's spec has run.
    config_applied: bool,
    last_plan: Plan,
    hostname: Option<String>,
    /// What `auto: stable` names the node after, read at start.
    identity: Option<String>,
}

impl Manager {
    pub fn new(rtnl: Rtnl, settings: Settings) -> (Manager, watch::Receiver<Status>) {
        let (dhcp_tx, dhcp_rx) = mpsc::unbounded_channel();
        let (status, rx) = watch::channel(Status::default());
        let m = Manager {
            rtnl,
            settings,
            spec: None,
            dhcp: BTreeMap::new(),
            leases: BTreeMap::new(),
            dhcp_tx,
            dhcp_rx,
            reported: Reported::default(),
            status,
            since: Instant::now(),
            announced: false,
            config_applied: false,
            last_plan: Plan::default(),
            hostname: None,
            identity: None,
        };
        (m, rx)
    }

    /// Names every link and applies the plan once: the boot's "links"
    /// phase. Returns a one-line summary.
    pub async fn start(&mut self) -> String {
        // Loopback first: the kernel gives `lo` 127.0.0.1/8 and ::1 when it
        // comes up (net/ipv4/devinet.c, inetdev_event), and etcd's client
        // URL and /etc/hosts' localhost depend on it.
        match self.rtnl.set_up("lo").await {
            Ok(()) => log::debug!("network: lo up"),
            Err(e) => log::error!("network: {e}"),
        }
        let links = sysfs::read_links(&self.settings.sys_root);
        self.identity = etc::machine_identity(&self.settings.sys_root, &links);
        for l in links.iter().filter(|l| l.device.is_some()) {
            log::info!(
                "network: {}",
                naming::summary_line(l, self.settings.ifnames)
            );
            log::debug!("{}", naming::describe(l, self.settings.ifnames));
        }
        self.name(&links).await;
        self.reconcile().await;
        let p = &self.last_plan;
        let dhcp = p.links.iter().filter(|l| l.dhcp.is_some()).count();
        format!(
            "{} links, {} configured ({} static, {} DHCP), {} ignored",
            links.len(),
            p.links.len(),
            p.links.len() - dhcp,
            dhcp,
            p.ignored.len()
        )
    }

    /// Serves events until the sender goes away (never, in PID 1).
    pub async fn run(mut self, mut events: mpsc::UnboundedReceiver<Event>) {
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => self.on_event(ev).await,
                    None => return,
                },
                Some(ev) = self.dhcp_rx.recv() => self.on_dhcp(ev).await,
            }
        }
    }

    async fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Config(c) => {
                self.spec = Some(spec::from_config(&c));
                self.since = Instant::now();
                self.announced = false;
            }
            Event::LinkAdded(name) => match sysfs::read_link(&self.settings.sys_root, &name) {
                Ok(facts) => {
                    // Links Keel creates (VLAN, bond, dummy) appear too;
                    // only hardware is news for the console.
                    let line = naming::summary_line(&facts, self.settings.ifnames);
                    if facts.device.is_some() {
                        log::info!("network: appeared: {line}");
                    } else {
                        log::debug!("network: appeared: {line}");
                    }
                    self.name(std::slice::from_ref(&facts)).await;
                }
                // Most likely a kernel name Keel has renamed since: the
                // uevent was queued before the rename.
                Err(sysfs::SysfsError::NoLink { .. }) => {
                    log::debug!("network: link {name} appeared and is gone or renamed")
                }
                Err(e) => log::warn!("network: link {name} appeared but {e}"),
            },
            Event::LinkRemoved(name) => {
                log::info!("network: link {name} went away");
                if let Some(r) = self.dhcp.remove(&name) {
                    r.task.abort();
                }
                self.leases.remove(&name);
            }
        }
        self.reconcile().await;
    }

    async fn on_dhcp(&mut self, ev: DhcpEvent) {
        match ev {
            DhcpEvent::Bound { link, lease } => {
                self.leases.insert(link, lease);
            }
            DhcpEvent::Lost { link } => {
                self.leases.remove(&link);
            }
        }
        self.write_files();
        self.publish();
    }

    async fn name(&mut self, links: &[sysfs::LinkFacts]) {
        let (lines, errors) = rename::apply(&self.rtnl, links, self.settings.ifnames).await;
        for l in lines {
            log::info!("network: {l}");
        }
        for e in errors {
            log::error!("network: {e}");
        }
    }

    /// The links as they are now: sysfs facts, ethtool's permanent
    /// addresses, rtnetlink's alternative names.
    async fn inventory(&self) -> Inventory {
        let mut links = sysfs::read_links(&self.settings.sys_root);
        super::ethtool::fill_permanent_addrs(&mut links);
        let mut alt_names = BTreeMap::new();
        match self.rtnl.links().await {
            Ok(ls) => {
                for l in ls {
                    alt_names.insert(l.name, l.alt_names);
                }
            }
            Err(e) => log::error!("network: {e}"),
        }
        Inventory { links, alt_names }
    }

    async fn reconcile(&mut self) {
        let inv = self.inventory().await;
        let plan = plan::plan(self.spec.as_ref(), &self.settings.params, &inv);
        let new = self
            .reported
            .update("problems", plan.problems.iter().map(ToString::to_string));
        for p in &plan.problems {
            let line = p.to_string();
            match p {
                _ if !new.contains(&line) => {}
                Problem::Waiting { .. } => log::warn!("network: {line}"),
                Problem::Ambiguous { .. } => log::error!("network: {line}"),
            }
        }
        let aliases = plan
            .aliases
            .iter()
            .map(|(a, l)| format!("link alias {a} is {l}"));
        for line in self.reported.update("aliases", aliases) {
            log::info!("network: {line}");
        }
        self.stop_dhcp(&plan).await;
        let report = apply::apply(&self.rtnl, &plan, &self.settings.sys_root).await;
        for c in &report.changes {
            log::info!("network: {c}");
        }
        let errors = report.errors.iter().map(ToString::to_string);
        for line in self.reported.update("apply errors", errors) {
            log::error!("network: {line}");
        }
        let routes = plan.links.iter().flat_map(|lp| {
            lp.routes.iter().map(move |r| {
                format!(
                    "{}: route {} via {} metric {}",
                    lp.name,
                    r.dest
                        .map_or("default".to_string(), |(a, n)| format!("{a}/{n}")),
                    r.gateway.map_or("-".to_string(), |g| g.to_string()),
                    r.metric
                )
            })
        });
        for line in self.reported.update("routes", routes) {
            log::info!("network: {line}");
        }
        self.start_dhcp(&plan).await;
        self.last_plan = plan;
        // Files and hostname before "configured" is announced, so whoever
        // waits for that line finds them in place.
        self.write_files();
        self.config_applied |= self.spec.is_some();
        self.publish_with(report.errors.is_empty());
    }

    /// Stops the DHCP clients the plan no longer wants; before applying,
    /// so a link that becomes a bond member is not still running one.
    async fn stop_dhcp(&mut self, plan: &Plan) {
        let wanted = dhcp_links(plan);
        let stale: Vec<String> = self
            .dhcp
            .iter()
            .filter(|(name, r)| wanted.get(name.as_str()) != Some(&&r.plan))
            .map(|(n, _)| n.clone())
            .collect();
        for name in stale {
            if let Some(r) = self.dhcp.remove(&name) {
                // The runner sends a RELEASE and removes the address,
                // routes and MTU it applied, then ends. Wait for that
                // before applying: the config may give the link the very
                // address the lease had, and a removal that lands after the
                // apply would take the static address away.
                let _ = r.stop.send(());
                let mut task = r.task;
                if tokio::time::timeout(DHCP_STOP_TIMEOUT, &mut task)
                    .await
                    .is_err()
                {
                    log::warn!("network: {name}: DHCP client did not stop in time; aborting it");
                    task.abort();
                }
                log::info!(
                    "network: {name}: DHCP stopped ({})",
                    plan_reason(plan, &name)
                );
            }
            self.leases.remove(&name);
        }
    }

    /// Starts a DHCP client for every planned DHCP link that has none.
    async fn start_dhcp(&mut self, plan: &Plan) {
        for (name, dhcp) in dhcp_links(plan) {
            if self.dhcp.contains_key(name) {
                continue;
            }
            let link = match self.rtnl.link(name).await {
                Ok(Some(l)) => l,
                _ => continue, // not there yet: a later re-plan starts it
            };
            let origin = plan.link(name).map_or("", |l| l.origin.as_str());
            log::info!("network: {name}: DHCP started ({origin})");
            let Some(mac) = link.mac else {
                log::error!("network: {name}: no MAC address, cannot run DHCP");
                continue;
            };
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(runner::run_until(
                RunLink {
                    name: name.to_owned(),
                    ifindex: link.index,
                    mac,
                },
                RunOptions {
                    route_metric: Some(dhcp.route_metric),
                    hostname: self.hostname.clone(),
                    client_id: dhcp.client_id.clone(),
                },
                self.rtnl.clone(),
                self.dhcp_tx.clone(),
                async move {
                    let _ = stopped.await;
                },
            ));
            self.dhcp.insert(
                name.to_owned(),
                Running {
                    task,
                    stop,
                    plan: dhcp.clone(),
                },
            );
        }
    }

    fn publish(&mut self) {
        self.publish_with(true);
    }

    fn publish_with(&mut self, applied: bool) {
        let p = &self.last_plan;
        let waiting = p
            .problems
            .iter()
            .any(|x| matches!(x, Problem::Waiting { .. }));
        let dhcp_done = p
            .links
            .iter()
            .filter(|l| l.dhcp.is_some())
            .all(|l| self.leases.contains_key(&l.name));
        let configured = applied && !waiting && dhcp_done;
        if configured && !self.announced {
            self.announced = true;
            let stage = if self.spec.is_some() {
                "for the machine config"
            } else {
                "before any config"
            };
            log::info!(
                "network: all links configured {stage} ({} links) in {} ms",
                p.links.len(),
                self.since.elapsed().as_millis()
            );
        }
        let status = Status {
            configured,
            leases: self.leases.clone(),
            vip_links: p.vips.clone(),
            config_applied: self.config_applied,
        };
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
    }

    /// Hostname, hosts and resolv.conf ([`etc::render`] decides what).
    fn write_files(&mut self) {
        let files = etc::render(etc::Sources {
            config: self.spec.as_ref().map(|s| &s.host),
            cmdline: &self.settings.params,
            leases: &self.leases,
            plan: &self.last_plan,
            identity: self.identity.as_deref(),
        });
        for n in self.reported.update("etc notes", files.notes.clone()) {
            log::warn!("network: {n}");
        }
        let mut failed = Vec::new();
        let hostname_file = files.hostname_file();
        let writes = [
            ("resolv.conf", Some(&files.resolv_conf)),
            ("hosts", Some(&files.hosts)),
            ("hostname", hostname_file.as_ref()),
        ];
        for (file, text) in writes {
            let Some(text) = text else { continue };
            let path = self.settings.etc_root.join(file);
            if std::fs::read_to_string(&path).is_ok_and(|t| &t == text) {
                continue;
            }
            if let Err(e) = dns::write_atomically(&path, text.as_bytes()) {
                failed.push(format!("cannot write {}: {e}", path.display()));
            }
        }
        for line in self.reported.update("etc writes", failed) {
            log::error!("network: {line}");
        }
        if let Some(h) = &files.hostname {
            self.set_hostname(h);
        }
    }

    fn set_hostname(&mut self, h: &Hostname) {
        let short = h.short().to_owned();
        if self.hostname.as_deref() == Some(short.as_str()) {
            return;
        }
        if self.settings.set_kernel_hostname {
            if let Err(e) = nix::unistd::sethostname(&short) {
                log::error!("network: sethostname({short}): {e}");
                return;
            }
        }
        log::info!("network: hostname {short} (from {:?})", h.source);
        self.hostname = Some(short);
    }
}

/// Planned DHCP links and how each runs DHCP.
fn dhcp_links(plan: &Plan) -> BTreeMap<&str, &DhcpPlan> {
    plan.links
        .iter()
        .filter_map(|l| Some((l.name.as_str(), l.dhcp.as_ref()?)))
        .collect()
}

fn plan_reason(plan: &Plan, name: &str) -> &'static str {
    if plan.ignored.iter().any(|i| i == name) {
        "ignored"
    } else if plan.link(name).is_some() {
        "the config sets it up differently"
    } else {
        "the config does not ask for it"
    }
}

#[cfg(test)]
mod tests {
    use super::Reported;

    /// (lines now, lines logged): a line is logged when it appears, not
    /// while it holds, and again when it comes back after clearing.
    #[test]
    fn reported_logs_on_change() {
        let steps: &[(&[&str], &[&str])] = &[
            (&["a: waiting"], &["a: waiting"]),
            (&["a: waiting"], &[]),
            (&["a: waiting", "b: error"], &["b: error"]),
            (&["b: error"], &[]),
            (&[], &[]),
            (&["a: waiting"], &["a: waiting"]),
        ];
        let mut r = Reported::default();
        for (i, (now, logged)) in steps.iter().enumerate() {
            let got = r.update("t", now.iter().map(|s| s.to_string()));
            assert_eq!(got, *logged, "step {i}");
        }
        // Topics are independent.
        assert_eq!(
            r.update("other", ["a: waiting".to_string()]),
            ["a: waiting"]
        );
    }
}
