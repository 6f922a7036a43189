//! The node API: what a node without a shell answers, authenticated as
//! Talos's API is (docs/ARCHITECTURE.md, "Node API"; README, "Node API").
//!
//! - **Transport**: HTTP/1.1 with JSON bodies over TLS 1.2/1.3, on every
//!   node address (the wildcard, so a VIP this node holds answers too),
//!   port [`PORT`] (not Talos's 50000: `talosctl` speaks gRPC there, and
//!   a `talosctl` user must not mistake one for the other). HTTP + JSON,
//!   not gRPC: `curl` and any script can use it, and hyper is already in
//!   the binary; Keel's own client is `keel --talosconfig`.
//! - **Authentication** ([`tls`]): mutual TLS. The server certificate is
//!   issued at boot from `machine.ca`; a client must present a
//!   certificate signed by `machine.ca` (or one of `machine.acceptedCAs`)
//!   and valid now: what a Talos `talosconfig` holds. Without
//!   `machine.ca` (and its key) the API is off; nothing is ever served
//!   without a verified client certificate.
//! - **Authorization** ([`Role`]): the client certificate's subject `O`
//!   values, Talos's roles: `os:reader` reads (status, logs),
//!   `os:operator` also reboots and shuts down, `os:admin` also
//!   bootstraps. A certificate with none of them is refused everything
//!   (403), as in Talos.
//!
//! Endpoints ([`server`]): `GET /v1/status`, `GET /v1/logs?source=keel|etcd
//! &lines=N&follow=true` (newline-delimited JSON), `POST /v1/bootstrap`,
//! `POST /v1/reboot`, `POST /v1/shutdown`.

pub mod client;
pub mod server;
pub mod status;
pub mod talosconfig;
pub mod tls;

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::net::manager::Status as NetStatus;
use crate::node::NodeState;

/// The node API's port.
pub const PORT: u16 = 50443;

/// Runs the node API for as long as PID 1 runs, if the config allows it
/// (`machine.ca` with its key); otherwise says on the console why it is
/// off and how to turn it on. Issues the server certificate again every
/// [`tls::SERVER_RENEW`] and whenever the node's addresses or hostname
/// change.
pub async fn run(config: Arc<Config>, state: Arc<NodeState>, mut net: watch::Receiver<NetStatus>) {
    let Some(ca) = &config.machine.ca else {
        log::info!("api: off: the config has no machine.ca (Talos's OS CA, which `talosctl gen config` and `keel gen` write); with it, this node serves its status, logs and bootstrap/reboot/shutdown on port {PORT} to clients holding a certificate it signed (a talosconfig)");
        return;
    };
    let Some(key) = &ca.key else {
        log::info!("api: off: machine.ca has no key, so this node cannot issue the API's server certificate; give it the key (as talosctl writes it for control-plane nodes)");
        return;
    };
    let ca = match crate::x509::Ca::from_pem(
        ca.crt.pem(),
        key.pem(),
        "machine.ca.crt",
        "machine.ca.key",
    ) {
        Ok(ca) => ca,
        Err(e) => {
            log::error!("api: off: {e}");
            return;
        }
    };
    let accepted: Vec<String> = config
        .machine
        .accepted_cas
        .iter()
        .map(|c| c.crt.pem().to_owned())
        .collect();
    let names = |rtnl: Option<&crate::net::rtnl::Rtnl>| {
        let config = config.clone();
        let rtnl = rtnl.cloned();
        async move {
            let addresses = match &rtnl {
                Some(r) => r.node_addresses().await,
                None => Vec::new(),
            };
            tls::Names {
                hostname: hostname(&config),
                cert_sans: config.machine.cert_sans.clone(),
                addresses,
            }
        }
    };
    let rtnl = crate::net::rtnl::Rtnl::connect().ok();
    let server = match server::Server::new(ca, &accepted, names(rtnl.as_ref()).await, state) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            log::error!("api: off: {e}");
            return;
        }
    };
    let listener = match server::listen(PORT).await {
        Ok(l) => l,
        Err(e) => {
            log::error!("api: off: {e}");
            return;
        }
    };
    log::info!("api: serving on port {PORT} (mutual TLS, clients certified by machine.ca)");
    let cert = server.cert.clone();
    let serving = tokio::spawn(server.serve(listener));
    let mut renew = tokio::time::interval(tls::SERVER_RENEW);
    renew.tick().await;
    loop {
        let force = tokio::select! {
            _ = renew.tick() => true,
            r = net.changed() => {
                if r.is_err() {
                    break;
                }
                false
            }
        };
        match cert.reissue(names(rtnl.as_ref()).await, force) {
            Ok(true) => log::debug!("api: server certificate issued again"),
            Ok(false) => {}
            Err(e) => log::error!("api: issuing the server certificate again failed: {e}"),
        }
    }
    let _ = serving.await;
}

/// The name the server certificate carries: the config's hostname, else
/// the kernel's (DHCP, `auto: stable`), else `keel`.
fn hostname(config: &Config) -> String {
    config
        .hostname()
        .map(str::to_owned)
        .or_else(|| nix::unistd::gethostname().ok()?.into_string().ok())
        .filter(|h| !h.is_empty() && h != "(none)")
        .map(|h| h.split('.').next().unwrap_or(&h).to_owned())
        .unwrap_or_else(|| "keel".to_owned())
}

/// A Talos role, from the client certificate's subject `O`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Reader,
    Operator,
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "os:reader",
            Role::Operator => "os:operator",
            Role::Admin => "os:admin",
        }
    }

    /// The strongest role among a certificate's `O` values; `None` when it
    /// has none of Talos's (`os:etcd:backup` and `os:impersonator` grant
    /// nothing here).
    pub fn from_organizations(orgs: &[String]) -> Option<Role> {
        orgs.iter()
            .filter_map(|o| match o.as_str() {
                "os:admin" => Some(Role::Admin),
                "os:operator" => Some(Role::Operator),
                "os:reader" => Some(Role::Reader),
                _ => None,
            })
            .max()
    }
}

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Status,
    Logs,
    Reboot,
    Shutdown,
    Bootstrap,
}

impl Action {
    /// The least role allowed (Talos's machined: Bootstrap is admin only;
    /// Reboot and Shutdown admin or operator; reads any role).
    pub fn needs(self) -> Role {
        match self {
            Action::Status | Action::Logs => Role::Reader,
            Action::Reboot | Action::Shutdown => Role::Operator,
            Action::Bootstrap => Role::Admin,
        }
    }

    /// May a client with `role` do it?
    pub fn allowed(self, role: Option<Role>) -> bool {
        role.is_some_and(|r| r >= self.needs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_table() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        // (certificate O values, strongest role)
        let roles: &[(&[&str], Option<Role>)] = &[
            (&["os:admin"], Some(Role::Admin)),
            (&["os:reader", "os:operator"], Some(Role::Operator)),
            (&["os:reader"], Some(Role::Reader)),
            (&["talos"], None),
            (&["os:etcd:backup"], None),
            (&[], None),
        ];
        for (orgs, want) in roles {
            assert_eq!(Role::from_organizations(&s(orgs)), *want, "{orgs:?}");
        }
        // (action, role, allowed)
        let table: &[(Action, Option<Role>, bool)] = &[
            (Action::Status, Some(Role::Reader), true),
            (Action::Logs, Some(Role::Reader), true),
            (Action::Status, None, false),
            (Action::Reboot, Some(Role::Reader), false),
            (Action::Reboot, Some(Role::Operator), true),
            (Action::Shutdown, Some(Role::Operator), true),
            (Action::Bootstrap, Some(Role::Operator), false),
            (Action::Bootstrap, Some(Role::Admin), true),
            (Action::Shutdown, Some(Role::Admin), true),
        ];
        for (action, role, want) in table {
            assert_eq!(action.allowed(*role), *want, "{action:?} as {role:?}");
        }
    }
}
