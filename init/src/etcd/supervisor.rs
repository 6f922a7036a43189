//! etcd as a supervised child: spawn, forward output, probe, restart with
//! backoff, stop.
//!
//! One task per [`Supervisor`] runs the loop: write the PKI files, decide
//! how to start ([`super::rejoin::prepare`] for a static member list,
//! [`super::join::prepare`] without one: that may wait for a bootstrap
//! request, [`Supervisor::bootstrap`]), spawn etcd through the
//! [`Reaper`] (which owns `waitpid`; the exit arrives on a oneshot), watch
//! it until it exits or a stop is asked, wait out the backoff, repeat.
//! Every failure on the way (PKI write, rejoin, spawn, exit) is logged and
//! retried with the same backoff: PID 1 never gives up on etcd and never
//! exits because of it.
//!
//! etcd runs in its own session (setsid), so it is the leader of its own
//! process group: a stop signals the whole group, and a Ctrl-C on a test's
//! terminal does not reach it. Its stdin is /dev/null; stdout and stderr
//! share one pipe whose lines go to [`super::output`].
//!
//! Stop ([`Supervisor::stop`]): SIGTERM to the group (etcd shuts down
//! cleanly on SIGTERM, transferring leadership first), up to
//! [`Settings::stop_timeout`] (10 s) for it to exit, then SIGKILL. The VIP
//! loop must resign before this is called; the caller sequences the two.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::args::{Formation, Plan, Start};
use super::backoff::Backoff;
use super::health::{self, Event, Health, MemberView};
use super::join::{self, BootstrapRequest};
use super::output::{self, Problem, SharedRing};
use super::{pki, rejoin};
use crate::lock;
use crate::supervise::{Exit, Reaper};

pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot create a pipe for etcd's output: {0}")]
    Pipe(#[source] std::io::Error),
    #[error(transparent)]
    Spawn(#[from] crate::supervise::reaper::ReaperError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Rejoin(#[from] rejoin::RejoinError),
    #[error(transparent)]
    Join(#[from] join::JoinError),
}

/// How long a bootstrap request waits for the supervisor's answer.
const BOOTSTRAP_REPLY: Duration = Duration::from_secs(15);
/// How long an exit waits for the rest of etcd's output to be read.
const OUTPUT_DRAIN: Duration = Duration::from_millis(500);

/// What the supervisor runs and how.
#[derive(Debug, Clone)]
pub struct Settings {
    pub binary: PathBuf,
    pub plan: Plan,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    pub stop_timeout: Duration,
    pub backoff: Backoff,
    pub ring_lines: usize,
    pub ring_bytes: usize,
}

impl Settings {
    /// The defaults: probe every 2 s with a 2 s timeout, 10 s to stop,
    /// restarts 1 s doubling to 30 s, the last 500 lines / 256 KiB kept.
    pub fn new(binary: impl Into<PathBuf>, plan: Plan) -> Settings {
        Settings {
            binary: binary.into(),
            plan,
            probe_interval: health::PROBE_INTERVAL,
            probe_timeout: health::PROBE_TIMEOUT,
            stop_timeout: STOP_TIMEOUT,
            backoff: Backoff::default(),
            ring_lines: output::RING_LINES,
            ring_bytes: output::RING_BYTES,
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    pid: Option<Pid>,
    attempts: u32,
    starts: u32,
    last_error: Option<String>,
    /// Waiting for a bootstrap request or a member to join through this.
    waiting: Option<String>,
}

/// The handle: health, output, current pid, stop. Dropping it without
/// [`Supervisor::stop`] kills etcd's process group (SIGKILL) and ends the
/// task, so a test that panics leaves nothing running.
pub struct Supervisor {
    health: watch::Receiver<Health>,
    view: watch::Receiver<Option<MemberView>>,
    answering: health::AnsweringRx,
    ring: SharedRing,
    shared: Arc<Mutex<Shared>>,
    stop: watch::Sender<bool>,
    done: watch::Receiver<bool>,
    bootstrap: mpsc::Sender<BootstrapRequest>,
    discovered: bool,
    plan: Plan,
}

impl Supervisor {
    /// Starts supervising on the current tokio runtime.
    pub fn start(reaper: Reaper, settings: Settings) -> Supervisor {
        let (state_tx, health) = watch::channel(Health::Starting);
        let (view_tx, view) = watch::channel(None);
        let (answering_tx, answering) = watch::channel(None);
        let ring: SharedRing = Arc::new(crate::logbuf::LogBuffer::new(
            settings.ring_lines,
            settings.ring_bytes,
        ));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, done) = watch::channel(false);
        let (bootstrap, requests) = mpsc::channel(4);
        let discovered = matches!(settings.plan.formation, Formation::Discovered { .. });
        let plan = settings.plan.clone();
        let task = Task {
            reaper,
            settings,
            state: state_tx,
            view: view_tx,
            answering: answering_tx,
            ring: ring.clone(),
            shared: shared.clone(),
            stop: stop_rx,
            requests: tokio::sync::Mutex::new(requests),
        };
        tokio::spawn(async move {
            task.run().await;
            let _ = done_tx.send(true);
        });
        Supervisor {
            health,
            view,
            answering,
            ring,
            shared,
            stop,
            done,
            bootstrap,
            discovered,
            plan,
        }
    }

    /// What it runs: the member's name, endpoints, TLS.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// What this member last said about itself (ID, leader, learner).
    pub fn view(&self) -> Option<MemberView> {
        self.view.borrow().clone()
    }

    /// Where a node without a member list waits for its cluster, while it
    /// waits ([`super::join`]).
    pub fn waiting(&self) -> Option<String> {
        lock(&self.shared).waiting.clone()
    }

    /// Asks this node to start a new cluster (the node API's `bootstrap`).
    /// Accepted only on a node without a member list that is waiting, has
    /// no data, and finds no running member; the reply says what happens
    /// or why not.
    pub async fn bootstrap(&self) -> Result<String, String> {
        if !self.discovered {
            return Err("this node's etcd cluster is formed from cluster.etcd.initialCluster (static members); bootstrap is only for configs without it".to_owned());
        }
        if self.waiting().is_none() {
            let health = *self.health.borrow();
            return Err(match (health, self.view()) {
                (Health::Starting | Health::Restarting, None) => format!(
                    "etcd data directory is not empty or this node is joining: etcd is {health}, not waiting for a bootstrap"
                ),
                (_, Some(v)) => format!(
                    "etcd is already running here (member {:x} of cluster {:x}, {health}): the cluster exists",
                    v.id, v.cluster_id
                ),
                (h, None) => format!("etcd is {h}, not waiting for a bootstrap"),
            });
        }
        let (reply, rx) = oneshot::channel();
        self.bootstrap
            .try_send(BootstrapRequest { reply })
            .map_err(|_| "another bootstrap request is being handled".to_owned())?;
        match tokio::time::timeout(BOOTSTRAP_REPLY, rx).await {
            Ok(Ok(r)) => r,
            _ => Err(
                "etcd did not answer the bootstrap request in time; see the node's log".to_owned(),
            ),
        }
    }

    /// The health state; `changed()`/`wait_for` on it to follow changes.
    pub fn health(&self) -> watch::Receiver<Health> {
        self.health.clone()
    }

    /// The health probe's connection while the member answers as a voter
    /// with a leader ([`health::Answering`]).
    pub fn answering(&self) -> health::AnsweringRx {
        self.answering.clone()
    }

    /// The last lines etcd wrote, oldest first.
    pub fn output(&self) -> Vec<String> {
        self.ring.texts()
    }

    /// etcd's output buffer, for the node API (`logs`, follow mode).
    pub fn log(&self) -> SharedRing {
        self.ring.clone()
    }

    /// etcd's pid (and process group) while it runs.
    pub fn pid(&self) -> Option<Pid> {
        lock(&self.shared).pid
    }

    /// How many times the supervisor tried to start etcd (PKI, rejoin,
    /// spawn), successful or not.
    pub fn attempts(&self) -> u32 {
        lock(&self.shared).attempts
    }

    /// How many times etcd was spawned.
    pub fn starts(&self) -> u32 {
        lock(&self.shared).starts
    }

    /// The last error the supervisor reported (rejoin, spawn, a fatal etcd
    /// message), if any.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.shared).last_error.clone()
    }

    /// Stops etcd (SIGTERM, then SIGKILL after the stop timeout) and the
    /// supervision; returns once etcd has exited. Idempotent.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let mut done = self.done.clone();
        let _ = done.wait_for(|d| *d).await;
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if !*self.done.borrow() {
            if let Some(pid) = lock(&self.shared).pid {
                let _ = killpg(pid, Signal::SIGKILL);
            }
        }
    }
}

struct Task {
    reaper: Reaper,
    settings: Settings,
    state: watch::Sender<Health>,
    view: watch::Sender<Option<MemberView>>,
    answering: health::Answering,
    ring: SharedRing,
    shared: Arc<Mutex<Shared>>,
    stop: watch::Receiver<bool>,
    requests: tokio::sync::Mutex<mpsc::Receiver<BootstrapRequest>>,
}

/// How one run of etcd ended.
enum Ended {
    Exited {
        exit: Option<Exit>,
        healthy_for: Duration,
        /// etcd's last error line of this run.
        said: Option<String>,
    },
    Stopped,
}

impl Task {
    fn event(&self, e: Event) {
        self.state.send_if_modified(|h| {
            let n = health::next(*h, e);
            let changed = n != *h;
            *h = n;
            changed
        });
    }

    fn report(&self, err: &str) {
        log::error!("etcd: {err}");
        lock(&self.shared).last_error = Some(err.to_owned());
    }

    async fn run(self) {
        for f in self.settings.plan.overridden() {
            log::warn!("etcd: cluster.etcd.extraArgs.{f} replaces the --{f} Keel sets");
        }
        let mut stop = self.stop.clone();
        let mut backoff = self.settings.backoff.clone();
        loop {
            if *stop.borrow() {
                break;
            }
            let start = tokio::select! {
                r = self.prepare() => r,
                _ = stopped(&mut stop) => break,
            };
            let delay = match start {
                Ok(start) => match self.run_once(&start, &mut stop).await {
                    Ok(Ended::Stopped) => break,
                    Ok(Ended::Exited {
                        exit,
                        healthy_for,
                        said,
                    }) => {
                        let delay = backoff.next_delay(healthy_for);
                        let how = exit.map_or("ended (status lost)".to_owned(), |e| e.to_string());
                        let why = said.map_or(String::new(), |s| format!(" ({s})"));
                        let msg = format!("etcd exited: {how}{why}; restarting in {delay:?}");
                        if exit == Some(Exit::Code(0)) {
                            log::warn!("{msg}");
                        } else {
                            log::error!("{msg}");
                            lock(&self.shared).last_error = Some(msg);
                        }
                        delay
                    }
                    Err(e) => {
                        let delay = backoff.next_delay(Duration::ZERO);
                        self.report(&format!("{e}; retrying in {delay:?}"));
                        delay
                    }
                },
                Err(e) => {
                    let delay = backoff.next_delay(Duration::ZERO);
                    self.report(&format!("{e}; retrying in {delay:?}"));
                    delay
                }
            };
            self.event(Event::Exited);
            let stopped = tokio::select! {
                _ = tokio::time::sleep(delay) => false,
                _ = stopped(&mut stop) => true,
            };
            if stopped {
                break;
            }
        }
        self.event(Event::Stopped);
        lock(&self.shared).pid = None;
    }

    async fn prepare(&self) -> Result<Start, SupervisorError> {
        let first = {
            let mut shared = lock(&self.shared);
            shared.attempts += 1;
            shared.attempts == 1
        };
        // Certificates Keel issued are written once here and then kept
        // fresh by their renewal (boot/controlplane.rs): a restart must not
        // put the first, older ones back.
        let issued = self.settings.plan.issue.is_some();
        if let Some(m) = self.settings.plan.tls.as_ref().filter(|_| first || !issued) {
            pki::write(&self.settings.plan.pki_dir, m)?;
        }
        let plan = &self.settings.plan;
        let start = match &plan.formation {
            Formation::Static => rejoin::prepare(plan, first).await?,
            Formation::Discovered { seeds } => {
                let mut requests = self.requests.lock().await;
                let shared = self.shared.clone();
                let report = move |w: Option<String>| lock(&shared).waiting = w;
                let waiting = join::Waiting {
                    requests: &mut requests,
                    report: &report,
                };
                let start = join::prepare(plan, seeds, waiting).await;
                lock(&self.shared).waiting = None;
                // A request that arrived after the decision: not waiting.
                while let Ok(r) = requests.try_recv() {
                    let _ = r.reply.send(Err(
                        "this node is joining or restarting etcd, not waiting for a bootstrap"
                            .to_owned(),
                    ));
                }
                start?
            }
        };
        Ok(start)
    }

    fn spawn(
        &self,
        start: &Start,
    ) -> Result<(crate::supervise::Child, std::os::fd::OwnedFd), SupervisorError> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| SupervisorError::Pipe(e.into()))?;
        let write2 = write.try_clone().map_err(SupervisorError::Pipe)?;
        let mut cmd = Command::new(&self.settings.binary);
        cmd.args(self.settings.plan.args(start))
            .stdin(Stdio::null())
            .stdout(Stdio::from(write))
            .stderr(Stdio::from(write2));
        // SAFETY: the closure runs in the child between fork and exec, and
        // calls only setsid(2), which is async-signal-safe; it allocates
        // nothing and touches no lock.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()
                    .map(drop)
                    .map_err(std::io::Error::from)
            });
        }
        let child = self.reaper.spawn(&mut cmd)?;
        // `cmd` holds the parent's copies of the pipe's write end: closing
        // them now lets the reader see EOF once etcd's group is gone.
        drop(cmd);
        Ok((child, read))
    }

    async fn run_once(
        &self,
        start: &Start,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Ended, SupervisorError> {
        log::info!(
            "etcd: starting {} ({} member{}, initial-cluster-state {})",
            self.settings.plan.name,
            start.initial_cluster.len(),
            if start.initial_cluster.len() == 1 {
                ""
            } else {
                "s"
            },
            start.state.as_str()
        );
        let (mut child, read) = self.spawn(start)?;
        let pid = child.pid;
        let first_line = self.ring.next_seq();
        {
            let mut s = lock(&self.shared);
            s.pid = Some(pid);
            s.starts += 1;
        }
        self.event(Event::Spawned);
        let (problems_tx, mut problems) = mpsc::unbounded_channel();
        let forwarder = match tokio::net::unix::pipe::Receiver::from_owned_fd(read) {
            Ok(pipe) => Some(tokio::spawn(output::forward(
                pipe,
                self.ring.clone(),
                problems_tx,
            ))),
            Err(e) => {
                log::error!("etcd: cannot read its output: {e}");
                None
            }
        };
        let plan = &self.settings.plan;
        let prober = tokio::spawn(health::run(
            plan.local_endpoint.clone(),
            plan.client_tls.clone(),
            self.settings.probe_interval,
            self.settings.probe_timeout,
            self.state.clone(),
            self.view.clone(),
            self.answering.clone(),
        ));
        // A learner (joined, or restarted before its promotion) asks the
        // voters to promote it; a voter of a cluster without a static list
        // records its peers for the next join.
        let mut promotion: Option<tokio::task::JoinHandle<()>> = None;
        let mut recorded = false;
        let mut marked = false;
        let discovered = match &plan.formation {
            Formation::Discovered { seeds } => Some(seeds.clone()),
            Formation::Static => None,
        };
        let mut states = self.state.subscribe();
        let mut healthy_since: Option<Instant> = None;
        let mut longest = Duration::ZERO;
        let mut reported: Vec<Problem> = Vec::new();
        let ended = loop {
            tokio::select! {
                exit = &mut child.exit => break Ended::Exited { exit: exit.ok(), healthy_for: Duration::ZERO, said: None },
                _ = stopped(stop) => {
                    terminate(pid, &mut child.exit, self.settings.stop_timeout).await;
                    break Ended::Stopped;
                }
                Some(p) = problems.recv() => {
                    if !reported.contains(&p) {
                        reported.push(p);
                        self.report(p.explain());
                    }
                }
                Ok(()) = states.changed() => {
                    let now = Instant::now();
                    let health = *states.borrow_and_update();
                    if let Some(seeds) = &discovered {
                        if health == Health::Learner && promotion.is_none() {
                            let id = self.view.borrow().as_ref().map_or(0, |v| v.id);
                            let hint = start.learner.as_ref().map(|(_, e)| e.clone()).unwrap_or_default();
                            promotion = Some(tokio::spawn(promote(plan.clone(), seeds.clone(), id, hint)));
                        }
                        if health == Health::Healthy && !recorded {
                            recorded = true;
                            tokio::spawn(record_peers(plan.clone()));
                        }
                    }
                    if health == Health::Healthy && !marked && plan.var_persistent {
                        marked = true;
                        tokio::spawn(mark_disk(plan.clone()));
                    }
                    let healthy = health == Health::Healthy;
                    match (healthy, healthy_since) {
                        (true, None) => healthy_since = Some(now),
                        (false, Some(t)) => {
                            longest = longest.max(now - t);
                            healthy_since = None;
                        }
                        _ => {}
                    }
                }
            }
        };
        prober.abort();
        if let Some(p) = promotion {
            p.abort();
        }
        let _ = self.view.send(None);
        self.answering.send_replace(None);
        lock(&self.shared).pid = None;
        Ok(match ended {
            Ended::Exited { exit, .. } => {
                if let Some(t) = healthy_since {
                    longest = longest.max(Instant::now() - t);
                }
                // etcd's last words (a fatal "listener failed ... address
                // already in use", "cannot fetch cluster info ...") are the
                // reason an operator needs next to the exit status; the pipe
                // is read to its end first (the child is gone, so it ends
                // at once; bounded in case a grandchild holds it open).
                if let Some(f) = forwarder {
                    let _ = tokio::time::timeout(OUTPUT_DRAIN, f).await;
                }
                Ended::Exited {
                    exit,
                    healthy_for: longest,
                    said: self
                        .ring
                        .last_at(log::Level::Error, first_line)
                        .map(|l| l.text),
                }
            }
            Ended::Stopped => Ended::Stopped,
        })
    }
}

/// Promotes learner `id` through the voters `hint` names, else through the
/// seeds and known peers.
async fn promote(plan: Plan, seeds: Vec<super::args::Seed>, id: u64, hint: Vec<String>) {
    let endpoints = if hint.is_empty() {
        let known = join::read_peers(&join::peers_file(&plan));
        join::targets(&plan, &seeds, &known)
            .await
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    } else {
        hint
    };
    join::promote(plan, id, endpoints).await;
}

/// Says in the cluster that this member's data is on a disk
/// ([`rejoin::var_key`]): if the node comes back on a tmpfs, it will not
/// remove the member. Best effort, once per start.
async fn mark_disk(plan: Plan) {
    let key = rejoin::var_key(&plan.peer_url);
    let put = async {
        let mut c = health::connect(
            &plan.local_endpoint,
            plan.client_tls.as_ref(),
            rejoin::PEER_TIMEOUT,
        )
        .await
        .map_err(|e| e.to_string())?;
        c.put(key.as_str(), "disk", None)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(rejoin::PEER_TIMEOUT, put).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => log::warn!("etcd: cannot write {key}: {e}"),
        Err(_) => log::warn!("etcd: cannot write {key}: timed out"),
    }
}

/// Writes the members' client URLs (but this node's) to the known-peers
/// file, read as seeds next time this node joins.
async fn record_peers(plan: Plan) {
    let list = match health::connect(
        &plan.local_endpoint,
        plan.client_tls.as_ref(),
        rejoin::PEER_TIMEOUT,
    )
    .await
    {
        Ok(mut c) => c.member_list().await,
        Err(e) => {
            log::debug!("etcd: cannot record the peers: {e}");
            return;
        }
    };
    let Ok(list) = list else { return };
    let own = list.header().map_or(0, |h| h.member_id());
    let urls: Vec<String> = list
        .members()
        .iter()
        .filter(|m| m.id() != own)
        .flat_map(|m| m.client_urls().iter().cloned())
        .collect();
    if let Err(e) = join::write_peers(&join::peers_file(&plan), &urls) {
        log::warn!("etcd: cannot write the known peers: {e}");
    }
}

/// Resolves once a stop is asked (or the handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// SIGTERM to the group, `timeout` for the exit, then SIGKILL (and a last
/// short wait, so the pid is reaped before the supervisor reports stopped).
async fn terminate(pid: Pid, exit: &mut oneshot::Receiver<Exit>, timeout: Duration) {
    // Already exited (and reaped: the pid may be reused): nothing to signal.
    if let Ok(e) = exit.try_recv() {
        log::info!("etcd stopped: {e}");
        return;
    }
    log::info!("etcd: stopping (SIGTERM to process group {pid})");
    let _ = killpg(pid, Signal::SIGTERM);
    match tokio::time::timeout(timeout, &mut *exit).await {
        Ok(r) => {
            if let Ok(e) = r {
                log::info!("etcd stopped: {e}");
            }
        }
        Err(_) => {
            log::warn!("etcd did not stop within {timeout:?}, sending SIGKILL");
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = tokio::time::timeout(Duration::from_secs(5), exit).await;
        }
    }
}
