//! A blocking etcd v3 client for the end-to-end tests: `etcd-client` (the
//! same gRPC client Keel's health check uses) on a private single-threaded
//! tokio runtime, with per-request timeouts, so a test can talk to a
//! guest's etcd from plain `#[test]` code.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use etcd_client::{Client, ConnectOptions, GetOptions};

/// How long one request may take. TCG guests are slow, not that slow.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A member as `MemberList` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: u64,
    /// Empty for a member that was added but has not started yet.
    pub name: String,
    pub peer_urls: Vec<String>,
    /// Empty until the member has started and published itself.
    pub client_urls: Vec<String>,
}

/// One etcd endpoint (`http://host:port`).
pub struct Etcd {
    rt: tokio::runtime::Runtime,
    client: Client,
    endpoint: String,
}

impl Etcd {
    /// A client for `endpoint`. The connection is made lazily, so this
    /// succeeds even while the endpoint is not reachable yet.
    pub fn new(endpoint: &str) -> Result<Etcd> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("tokio runtime")?;
        let options = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        let client = rt
            .block_on(Client::connect([endpoint], Some(options)))
            .with_context(|| format!("etcd client for {endpoint}"))?;
        Ok(Etcd {
            rt,
            client,
            endpoint: endpoint.to_owned(),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn run<T, F>(&mut self, what: &str, f: impl FnOnce(Client) -> F) -> Result<T>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        let fut = f(self.client.clone());
        match self
            .rt
            .block_on(async { tokio::time::timeout(REQUEST_TIMEOUT, fut).await })
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(anyhow!("{what} through {}: {e}", self.endpoint)),
            Err(_) => Err(anyhow!(
                "{what} through {}: no answer within {REQUEST_TIMEOUT:?}",
                self.endpoint
            )),
        }
    }

    /// `Put`: committed through the cluster's quorum before it returns.
    pub fn put(&mut self, key: &str, value: &str) -> Result<()> {
        let (k, v) = (key.to_owned(), value.to_owned());
        self.run(&format!("put {key}"), |mut c| async move {
            c.put(k, v, None).await.map(drop)
        })
    }

    /// `Get` of one key as text. `serializable`: answered from this
    /// member's own store (what it holds locally) instead of a linearizable
    /// read through the leader.
    pub fn get(&mut self, key: &str, serializable: bool) -> Result<Option<String>> {
        let k = key.to_owned();
        let resp = self.run(&format!("get {key}"), |mut c| async move {
            let opts = serializable.then(|| GetOptions::new().with_serializable());
            c.get(k, opts).await
        })?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => Ok(Some(
                kv.value_str()
                    .map_err(|e| anyhow!("value of {key} is not UTF-8: {e}"))?
                    .to_owned(),
            )),
        }
    }

    /// The name of the member this one follows as raft leader (`Status`,
    /// then the member list).
    pub fn leader_name(&mut self) -> Result<String> {
        let status = self.run("status", |mut c| async move { c.status().await })?;
        let leader = status.leader();
        self.members()?
            .into_iter()
            .find(|m| m.id == leader && leader != 0)
            .map(|m| m.name)
            .ok_or_else(|| anyhow!("no leader known through {} ({leader:x})", self.endpoint))
    }

    /// `MemberList` (linearizable: through the leader).
    pub fn members(&mut self) -> Result<Vec<MemberInfo>> {
        let resp = self.run("member list", |mut c| async move { c.member_list().await })?;
        Ok(resp
            .members()
            .iter()
            .map(|m| MemberInfo {
                id: m.id(),
                name: m.name().to_owned(),
                peer_urls: m.peer_urls().to_vec(),
                client_urls: m.client_urls().to_vec(),
            })
            .collect())
    }
}

/// Calls `f` until it succeeds or `timeout` passes; the error names `what`
/// and carries the last failure.
pub fn retry<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("{what}: still failing after {timeout:?}")))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}
