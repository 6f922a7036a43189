//! What PID 1 runs once a machine config is loaded: `/var` (see
//! [`crate::storage`]), then etcd on control-plane nodes, once the address
//! its peer URL names exists on a link.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{Config, MachineType};
use crate::etcd::{self, ArgsError, Plan, Runtime, Supervisor};
use crate::net::manager::Status;
use crate::net::rtnl::Rtnl;
use crate::storage::{self, VarSource};
use crate::supervise::Reaper;

/// The image's mke2fs (image/src/assemble.rs).
const MKFS: &str = "/sbin/mke2fs";

/// Mounts `/var`. Formatting goes through the reaper; a failure falls
/// back to tmpfs, so etcd can still run (without persistence).
pub async fn mount_var(reaper: &Reaper, controlplane: bool) {
    let mut source = storage::choose(Path::new("/sys"), Path::new("/dev"));
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

/// Every address on the node's links but loopback.
async fn node_addresses(rtnl: &Rtnl) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for l in rtnl.links().await.unwrap_or_default() {
        if l.name == "lo" {
            continue;
        }
        if let Ok(addrs) = rtnl.link_addresses(&l).await {
            out.extend(addrs.into_iter().map(|(a, _)| a));
        }
    }
    out
}

/// Starts etcd once its plan can be made: on a control-plane node, when
/// the peer address exists. Errors in the config (not this node, bad
/// certificates) are logged and etcd is not started; PID 1 and the network
/// go on.
pub async fn start_etcd(
    config: Arc<Config>,
    reaper: Reaper,
    mut net: watch::Receiver<Status>,
) -> Option<Supervisor> {
    if config.machine_type() == MachineType::Worker {
        log::info!("etcd: worker node, not running etcd");
        return None;
    }
    let rtnl = match Rtnl::connect() {
        Ok(r) => r,
        Err(e) => {
            log::error!("etcd: {e}; not starting etcd");
            return None;
        }
    };
    let mut waiting_logged = false;
    let plan = loop {
        let rt = Runtime::new(
            node_addresses(&rtnl).await,
            etcd::DATA_DIR.into(),
            etcd::PKI_DIR.into(),
        );
        match Plan::from_config(&config, &rt) {
            Ok(plan) => break plan,
            // The address comes with the network (static or DHCP): wait.
            Err(e @ (ArgsError::PeerAddressNotOnNode { .. } | ArgsError::NoNodeAddress { .. })) => {
                if !std::mem::replace(&mut waiting_logged, true) {
                    log::info!("etcd: waiting for the network: {e}");
                }
                // Re-check on every network change, and at least every few
                // seconds (an address added by hand raises no event here).
                let _ = tokio::time::timeout(Duration::from_secs(5), net.changed()).await;
            }
            Err(e) => {
                log::error!("etcd: not starting etcd: {e}");
                return None;
            }
        }
    };
    log::info!("etcd: starting member {}", plan.name);
    Some(Supervisor::start(
        reaper,
        etcd::Settings::new(etcd::BINARY, plan),
    ))
}
