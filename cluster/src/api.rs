//! `make run` through the node API: each node's status polled in the
//! background (what the status view shows where the API has the answer),
//! and the one `bootstrap` a cluster without a member list needs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel::api::client::NodeClient;
use keel::api::status::Status;
use keel::api::talosconfig::Credentials;

/// How often each node's status is asked for.
const POLL: Duration = Duration::from_secs(1);

/// One node's last answer, and the last error since.
#[derive(Clone, Default)]
struct Polled {
    status: Option<(Instant, Status)>,
    error: Option<String>,
}

/// The last answer of each node's API (node `n` at `n - 1`).
#[derive(Clone, Default)]
pub struct Statuses(Arc<Mutex<Vec<Polled>>>);

impl Statuses {
    /// Node `n`'s status if it answered within the last few seconds.
    pub fn get(&self, n: usize) -> Option<Status> {
        let v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match v.get(n - 1).and_then(|p| p.status.as_ref()) {
            Some((at, s)) if at.elapsed() < STALE => Some(s.clone()),
            _ => None,
        }
    }

    /// Why node `n`'s API did not answer last time, if it did not.
    pub fn error(&self, n: usize) -> Option<String> {
        let v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        v.get(n - 1).and_then(|p| p.error.clone())
    }

    fn set(&self, n: usize, r: Result<Status, String>) {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() < n {
            v.resize(n, Polled::default());
        }
        match r {
            Ok(s) => {
                v[n - 1] = Polled {
                    status: Some((Instant::now(), s)),
                    error: None,
                }
            }
            Err(e) => v[n - 1].error = Some(e),
        }
    }
}

/// An answer older than this is not shown (the node stopped answering).
const STALE: Duration = Duration::from_secs(10);

/// Polls every node's API (`ports[n - 1]` on 127.0.0.1) forever, in
/// background threads.
pub fn watch(creds: &Credentials, ports: &[u16]) -> anyhow::Result<Statuses> {
    let statuses = Statuses::default();
    for (i, port) in ports.iter().enumerate() {
        let client = NodeClient::new(creds, &format!("127.0.0.1:{port}"))?;
        let s = statuses.clone();
        std::thread::spawn(move || loop {
            let t = Instant::now();
            s.set(i + 1, client.status().map_err(|e| e.to_string()));
            std::thread::sleep(POLL.saturating_sub(t.elapsed()));
        });
    }
    Ok(statuses)
}

/// What the bootstrapper did, for the status view.
#[derive(Clone, Default)]
pub struct Bootstrap(Arc<Mutex<String>>);

impl Bootstrap {
    pub fn said(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn say(&self, what: String) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = what;
    }
}

/// Once node `n`'s etcd waits for a bootstrap, asks it to bootstrap (in a
/// background thread); what happened shows in the returned handle. A node
/// whose etcd already runs (a data dir from an earlier run) needs none.
pub fn bootstrap(
    creds: &Credentials,
    port: u16,
    n: usize,
    statuses: Statuses,
) -> anyhow::Result<Bootstrap> {
    let client = NodeClient::new(creds, &format!("127.0.0.1:{port}"))?;
    let said = Bootstrap::default();
    said.say(format!(
        "bootstrap: waiting for node{n}'s etcd to wait for one"
    ));
    let out = said.clone();
    std::thread::spawn(move || loop {
        if let Some(e) = statuses.error(n) {
            out.say(format!("bootstrap: waiting for node{n}'s API: {e}"));
        }
        match statuses.get(n).map(|s| s.etcd.state) {
            Some(state) if state == "waiting" => match client.act("bootstrap") {
                Ok(m) => {
                    out.say(format!("bootstrap: node{n}: {m}"));
                    return;
                }
                Err(e) => out.say(format!("bootstrap: node{n}: {e}")),
            },
            // "starting" comes before "waiting": the supervisor asks the
            // seeds for a few seconds before it knows nobody answers.
            Some(state) if state != "pending" && state != "starting" => {
                out.say(format!("bootstrap: not needed: node{n}'s etcd is {state}"));
                return;
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(500));
    });
    Ok(said)
}
