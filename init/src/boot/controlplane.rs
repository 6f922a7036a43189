//! What PID 1 runs once a machine config is loaded: `/var` (see
//! [`crate::storage`]), then etcd on control-plane nodes, once the address
//! its peer URL names exists on a link, then one VIP election per
//! configured VIP (see [`crate::vip`]) against that etcd member. The
//! running pieces are a [`ControlPlane`], which [`super::services`] owns
//! and stops in order.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{Config, MachineType};
use crate::etcd::args::ClientTls;
use crate::etcd::{self, ArgsError, Health, Plan, Runtime, Supervisor};
use crate::net::manager::Status;
use crate::net::rtnl::Rtnl;
use crate::node::{EtcdSlot, NodeState};
use crate::storage::{self, VarSource};
use crate::supervise::Reaper;
use crate::vip;
use tokio::task::JoinHandle;

/// The image's mke2fs (image/src/assemble.rs).
const MKFS: &str = "/sbin/mke2fs";

/// Mounts `/var`. Formatting goes through the reaper; a failure falls
/// back to tmpfs, so etcd can still run (without persistence).
pub async fn mount_var(reaper: &Reaper, controlplane: bool, chosen: VarSource) {
    let mut source = chosen;
    if let VarSource::Format { device } = &source {
        log::info!(
            "var: {} is an empty partition named {}; formatting it as ext4",
            device.display(),
            storage::LABEL_VAR
        );
        if let Err(e) = storage::format(reaper, Path::new(MKFS), device).await {
            log::error!("var: {e}; using a tmpfs instead");
            source = VarSource::Tmpfs;
        }
    }
    match storage::mount_var(&source, Path::new("/var")) {
        Ok(what) => log::info!("var: /var on {what}"),
        Err(e) => log::error!("var: {e}"),
    }
    if source == VarSource::Tmpfs && controlplane {
        log::warn!(
            "var: no {} filesystem or empty partition: /var is a tmpfs, etcd data will not survive a reboot (the member rejoins its cluster after one)",
            storage::LABEL_VAR
        );
    }
}

/// How long etcd's start waits for the network to apply the machine
/// config ([`Status::config_applied`]).
const CONFIG_APPLIED_WAIT: Duration = Duration::from_secs(10);

/// Starts etcd once its plan can be made: on a control-plane node, when
/// the peer address exists. Errors in the config (not this node, bad
/// certificates) are logged and etcd is not started; PID 1 and the network
/// go on.
async fn start_etcd(
    config: Arc<Config>,
    reaper: Reaper,
    mut net: watch::Receiver<Status>,
    node: &NodeState,
) -> Option<Etcd> {
    if config.machine_type() == MachineType::Worker {
        log::info!("etcd: worker node, not running etcd");
        return None;
    }
    let not_started = |why: String| {
        log::error!("etcd: not starting etcd: {why}");
        node.set_etcd(EtcdSlot::Pending(format!("not started: {why}")));
    };
    let rtnl = match Rtnl::connect() {
        Ok(r) => r,
        Err(e) => {
            not_started(e.to_string());
            return None;
        }
    };
    // The machine config's addresses first: it reached the network
    // manager before this start, but a busy node may not have applied it
    // yet, and a node without a member list would advertise (and put in
    // its certificates) only the DHCP address it had before the config
    // (seen in `make bench-run`: node1 bootstrapped its cluster on the
    // user-net address, and no peer could join). Bounded: a manager that
    // cannot apply it must not hold etcd forever.
    let applied = tokio::time::timeout(CONFIG_APPLIED_WAIT, net.wait_for(|s| s.config_applied));
    if !matches!(applied.await, Ok(Ok(_))) {
        log::warn!(
            "etcd: the network has not applied the machine config after {} s; choosing etcd's addresses from those the node has",
            CONFIG_APPLIED_WAIT.as_secs()
        );
    }
    let mut waiting_logged = false;
    let (mut plan, addresses) = loop {
        let networks = rtnl.node_networks().await;
        let mut rt = Runtime::new(
            networks.iter().map(|(a, _)| *a).collect(),
            etcd::DATA_DIR.into(),
            etcd::PKI_DIR.into(),
        );
        rt.subnets = networks;
        // Names the member when the config does not (DHCP, auto: stable).
        rt.hostname = kernel_hostname();
        rt.var_persistent = !storage::var_on_tmpfs(Path::new("/proc"));
        match Plan::from_config(&config, &rt) {
            Ok(plan) => break (plan, rt.addresses),
            // The address comes with the network (static or DHCP): wait.
            Err(e @ (ArgsError::PeerAddressNotOnNode { .. } | ArgsError::NoNodeAddress { .. })) => {
                if !std::mem::replace(&mut waiting_logged, true) {
                    log::info!("etcd: waiting for the network: {e}");
                    node.set_etcd(EtcdSlot::Pending(format!("waiting for the network: {e}")));
                }
                // Re-check on every network change, and at least every few
                // seconds (an address added by hand raises no event here).
                let _ = tokio::time::timeout(Duration::from_secs(5), net.changed()).await;
            }
            Err(e) => {
                not_started(e.to_string());
                return None;
            }
        }
    };
    let hostname = node_hostname(&config, &plan.name);
    let vips: Vec<IpAddr> = crate::net::spec::from_config(&config)
        .vips
        .iter()
        .map(|v| v.ip)
        .collect();
    if let Err(e) = plan.issue_certificates(&hostname, &addresses, &vips) {
        not_started(e.to_string());
        return None;
    }
    if plan.issue.is_some() {
        log::info!(
            "etcd: issued this node's peer, server and client certificates from cluster.etcd.ca ({hostname}, {} addresses; valid {} days, renewed after {})",
            addresses.iter().filter(|a| !a.is_loopback()).count(),
            crate::x509::LIFETIME.as_secs() / 86400,
            humantime(crate::x509::renew_after())
        );
    }
    if plan.insecure {
        log::warn!("etcd: running WITHOUT TLS (cluster.etcd.allowInsecure: true): anyone who reaches its ports can read and change every key, remove members and take the VIP");
    }
    match &plan.formation {
        etcd::args::Formation::Static => log::info!("etcd: starting member {}", plan.name),
        etcd::args::Formation::Discovered { .. } => log::info!(
            "etcd: member {} has no member list: it joins a running cluster, or starts one on a bootstrap request",
            plan.name
        ),
    }
    let (endpoint, tls, member) = (
        plan.local_endpoint.clone(),
        plan.client_tls.clone(),
        plan.name.clone(),
    );
    let renew = plan.issue.is_some().then(|| {
        let plan = plan.clone();
        tokio::spawn(renew_certificates(plan, hostname, vips, rtnl))
    });
    let sup = Arc::new(Supervisor::start(
        reaper,
        etcd::Settings::new(etcd::BINARY, plan),
    ));
    node.set_etcd(EtcdSlot::Running {
        sup: sup.clone(),
        member: member.clone(),
    });
    Some(Etcd {
        sup,
        endpoint,
        tls,
        member,
        renew,
    })
}

/// The hostname the certificates name: the config's, else the kernel's
/// (DHCP, `auto: stable`), else the member name.
fn node_hostname(config: &Config, member: &str) -> String {
    let spec = crate::net::spec::from_config(config);
    spec.host
        .hostname
        .map(|h| h.split('.').next().unwrap_or(&h).to_owned())
        .or_else(kernel_hostname)
        .unwrap_or_else(|| member.to_owned())
}

/// The kernel's hostname, unless unset (`(none)`, the kernel's default).
fn kernel_hostname() -> Option<String> {
    nix::unistd::gethostname()
        .ok()?
        .into_string()
        .ok()
        .filter(|h| !h.is_empty() && h != "(none)" && h != "localhost")
}

fn humantime(d: Duration) -> String {
    format!("{} days", d.as_secs() / 86400)
}

/// Issues the certificates again every [`crate::x509::renew_after`], with
/// the node's addresses of the moment, and writes them where etcd reads
/// them: etcd loads its certificate files at every new TLS handshake, and
/// Keel's clients read theirs at every connect, so nothing restarts.
async fn renew_certificates(mut plan: Plan, hostname: String, vips: Vec<IpAddr>, rtnl: Rtnl) {
    let mut wait = crate::x509::renew_after();
    loop {
        tokio::time::sleep(wait).await;
        let addresses = rtnl.node_addresses().await;
        let renewed = plan
            .issue_certificates(&hostname, &addresses, &vips)
            .map_err(|e| e.to_string())
            .and_then(|()| match &plan.tls {
                Some(m) => etcd::pki::write(&plan.pki_dir, m).map_err(|e| e.to_string()),
                None => Ok(()),
            });
        wait = match renewed {
            Ok(()) => {
                log::info!("etcd: certificates renewed");
                crate::x509::renew_after()
            }
            Err(e) => {
                log::error!("etcd: renewing the certificates failed: {e}; trying again in an hour");
                Duration::from_secs(3600)
            }
        };
    }
}

/// etcd and the VIP elections on it, once started.
pub struct ControlPlane {
    pub etcd: Etcd,
    pub vips: Option<Vips>,
}

/// Starts etcd (once its address exists) and then the VIP elections on
/// it; None on a worker or when etcd cannot start (logged).
pub async fn start(
    config: Arc<Config>,
    reaper: Reaper,
    net: watch::Receiver<Status>,
    shutdown: watch::Receiver<bool>,
    node: Arc<NodeState>,
) -> Option<ControlPlane> {
    let etcd = start_etcd(config.clone(), reaper, net.clone(), &node).await?;
    let vips = start_vips(&config, &etcd, net, shutdown, &node);
    Some(ControlPlane { etcd, vips })
}

/// The running etcd member and what a local client needs.
pub struct Etcd {
    /// Shared with the node API (status, logs, bootstrap).
    pub sup: Arc<Supervisor>,
    /// The member's loopback client URL.
    pub endpoint: String,
    pub tls: Option<ClientTls>,
    pub member: String,
    /// Renews the certificates Keel issued.
    renew: Option<JoinHandle<()>>,
}

impl Etcd {
    /// Stops etcd (SIGTERM, then SIGKILL after the deadline) and the
    /// certificate renewal.
    pub async fn stop(self) {
        if let Some(r) = self.renew {
            r.abort();
        }
        self.sup.stop().await;
    }
}

/// The running VIP elections.
pub struct Vips {
    tasks: Vec<JoinHandle<()>>,
    /// The pause watchdog the elections listen to (`vip/pause.rs`).
    watchdog: JoinHandle<()>,
    /// Keeps etcd's leadership off this node while it holds a VIP
    /// (`vip/leadership.rs`).
    leadership: JoinHandle<()>,
    states: Vec<(IpAddr, watch::Receiver<vip::VipState>)>,
}

/// How long shutdown waits for the elections to remove their addresses and
/// resign (each resign and revoke has a 1 s deadline of its own).
const VIP_STOP_TIMEOUT: Duration = Duration::from_secs(3);

impl Vips {
    /// Each VIP's election state (`waiting-for-etcd`, `follower(leader=…)`,
    /// `holder(since …)`), for the status view.
    pub fn states(&self) -> Vec<(IpAddr, vip::VipState)> {
        self.states
            .iter()
            .map(|(ip, rx)| (*ip, rx.borrow().clone()))
            .collect()
    }

    /// Waits (bounded) until every election, told to stop by the shutdown
    /// signal, has released its VIP and resigned; called before etcd is
    /// stopped.
    pub async fn stopped(self) {
        self.leadership.abort();
        for t in self.tasks {
            let _ = tokio::time::timeout(VIP_STOP_TIMEOUT, t).await;
        }
        self.watchdog.abort();
    }
}

/// Starts one election per VIP in the config, each once the network plan
/// names its link. The campaign value is `<hostname>/<member>`.
fn start_vips(
    config: &Config,
    etcd: &Etcd,
    net: watch::Receiver<Status>,
    stop: watch::Receiver<bool>,
    node: &NodeState,
) -> Option<Vips> {
    let vips = crate::net::spec::from_config(config).vips;
    if vips.is_empty() {
        return None;
    }
    let hostname = config
        .hostname()
        .map(|h| h.to_owned())
        .or_else(|| nix::unistd::gethostname().ok()?.into_string().ok())
        .unwrap_or_default();
    let identity = format!("{hostname}/{}", etcd.member);
    let healthy = healthy_watch(etcd.sup.health(), etcd.sup.answering());
    let (dog, paused) = vip::pause::Watchdog::new("/sys".into());
    let watchdog = tokio::spawn(dog.clone().run());
    let longest_ttl = vips.iter().map(|v| v.ttl).max().unwrap_or_default();
    let mut states = Vec::new();
    let tasks = vips
        .into_iter()
        .map(|v| {
            let (state, state_rx) = watch::channel(vip::VipState::WaitingForEtcd);
            node.add_vip(v.ip, identity.clone(), state_rx.clone());
            states.push((v.ip, state_rx));
            let mut net = net.clone();
            let (endpoint, tls) = (etcd.endpoint.clone(), etcd.tls.clone());
            let shared = Some(etcd.sup.answering());
            let (identity, inputs) = (
                identity.clone(),
                vip::Inputs {
                    etcd_healthy: healthy.clone(),
                    stop: stop.clone(),
                    paused: paused.clone(),
                    watchdog: Some(dog.clone()),
                },
            );
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let placed = tokio::select! {
                    r = net.wait_for(|s| s.vip_links.contains_key(&v.ip)) => r.ok(),
                    _ = stop.wait_for(|s| *s) => None,
                };
                let Some(link) = placed.map(|s| s.vip_links[&v.ip].clone()) else {
                    return;
                };
                log::info!(
                    "vip {}: campaigning on {link} as {identity} (TTL {} s)",
                    v.ip,
                    v.ttl.as_secs()
                );
                let params = vip::Params {
                    record: vip::record::DEFAULT.into(),
                    ip: v.ip,
                    ttl: v.ttl,
                    link,
                    identity,
                };
                vip::run(params, endpoint, tls, shared, inputs, state).await;
            })
        })
        .collect();
    let leadership = tokio::spawn(vip::leadership::run(
        etcd.sup.clone(),
        etcd.endpoint.clone(),
        etcd.tls.clone(),
        states.clone(),
        longest_ttl + Duration::from_secs(1),
    ));
    Some(Vips {
        tasks,
        watchdog,
        leadership,
        states,
    })
}

/// Whether the elections may use etcd in state `h`, having been allowed
/// to (`was`) before it, while the member does (`answering`) or does not
/// answer as a voter with a leader: see [`healthy_watch`].
fn usable(was: bool, h: Health, answering: bool) -> bool {
    h == Health::Healthy || (was && h == Health::Unhealthy) || (h == Health::Starting && answering)
}

/// True once etcd has been healthy and for as long as it runs: a failed
/// probe (Unhealthy) keeps it true, a restart or a stop makes it false.
/// A probe fails while etcd elects a leader (a crashed or frozen leader,
/// a leadership hand-over), and a holder that dropped its VIP for that
/// would move it needlessly: what keeps a holder safe is its fence (no
/// acknowledged keepalive within TTL − margin drops the VIP) and the gate
/// (nothing is answered without a fresh linearizable read), both of which
/// fail closed while etcd has no leader.
///
/// True already while the member starts, once its `Status` names a
/// leader (`answering`, [`crate::etcd::health::Answering`]): the first
/// term's lease grant, a raft write, then runs alongside the probe's
/// quorum read rather than after it. Nothing is sent for a VIP before a
/// campaign has won, a write that needs the same quorum.
fn healthy_watch(
    mut health: watch::Receiver<Health>,
    mut answering: crate::etcd::health::AnsweringRx,
) -> watch::Receiver<bool> {
    let now = |h: &watch::Receiver<Health>, a: &crate::etcd::health::AnsweringRx| {
        (*h.borrow(), a.borrow().is_some())
    };
    let (h0, a0) = now(&health, &answering);
    let (tx, rx) = watch::channel(usable(false, h0, a0));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = health.changed() => if r.is_err() { break },
                r = answering.changed() => if r.is_err() { break },
            }
            let (h, a) = now(&health, &answering);
            let ok = usable(*tx.borrow(), h, a);
            tx.send_if_modified(|cur| std::mem::replace(cur, ok) != ok);
        }
        let _ = tx.send(false);
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_the_elections_use_etcd() {
        use Health as H;
        // (allowed before, health, answering as a voter with a leader, allowed)
        let cases = [
            (false, H::Starting, false, false),
            (false, H::Starting, true, true),
            (false, H::Healthy, false, true),
            (false, H::Healthy, true, true),
            (false, H::Unhealthy, false, false),
            (false, H::Unhealthy, true, false),
            (true, H::Unhealthy, false, true),
            (true, H::Healthy, true, true),
            (true, H::Restarting, false, false),
            (true, H::Stopped, false, false),
            (true, H::Learner, false, false),
            (true, H::Starting, false, false),
            (true, H::Starting, true, true),
        ];
        for (was, h, answering, want) in cases {
            assert_eq!(usable(was, h, answering), want, "{was} {h} {answering}");
        }
    }
}
