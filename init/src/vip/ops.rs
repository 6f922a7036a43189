//! What the election loop does to the world, as two small traits: the
//! link (add, announce, remove the address) and etcd (lease, campaign,
//! keepalives, resign). [`super::election`] is written against them only,
//! so a unit test drives it with recording fakes (election_tests.rs) and
//! PID 1 with the real ones here: rtnetlink plus a packet socket, and
//! etcd-client. The shape follows youki's `Syscall` trait with its
//! recording `TestHelperSyscall`.

use std::net::IpAddr;
use std::time::Duration;

use etcd_client::{Client, GetOptions, LeaderKey, ResignOptions, WatchFilterType, WatchOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

use std::path::{Path, PathBuf};

use super::announce::Announcer;
use super::responder::{quiet_kernel, Asked, Listener};
use crate::etcd::args::ClientTls;
use crate::etcd::health;
use crate::net::rtnl::{host_prefix, Link, Rtnl};

/// A failed operation, as one line for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OpError(pub String);

impl OpError {
    fn from(e: impl std::fmt::Display) -> OpError {
        OpError(e.to_string())
    }
}

/// The link side of one VIP.
// Used only inside this crate, with concrete types whose futures are
// Send (PID 1 spawns the loop); no caller needs a `Send` bound spelled out.
#[allow(async_fn_in_trait)]
pub trait LinkOps {
    /// Whether `link` is up with carrier; an error when it does not exist.
    async fn ready(&self, link: &str) -> Result<bool, OpError>;
    /// Gets ready to take the VIP on `link` before the campaign, so a win
    /// has only the address to add: looks the links up and quiets the
    /// kernel (`responder.rs`). Best effort: [`LinkOps::add`] does what is
    /// left undone.
    async fn prepare(&self, _link: &str) {}
    /// Takes `ip` for `link`: the address goes on `lo` (where the kernel
    /// accepts its traffic but never answers for it on `link`,
    /// `responder.rs`), and `link` gets ready to answer and announce;
    /// returns the index of the link the address went on, which survives
    /// a rename.
    async fn add(&self, link: &str, ip: IpAddr) -> Result<u32, OpError>;
    /// One announcement: gratuitous ARP in both forms, or an unsolicited
    /// neighbour advertisement.
    fn announce(&self, ip: IpAddr) -> Result<(), OpError>;
    /// The next request for `ip` read on the link (pending while nothing
    /// listens, before [`LinkOps::add`]).
    async fn asked(&self) -> Result<Asked, OpError>;
    /// Answers a request for `ip`: it is at this link's MAC.
    fn answer(&self, ip: IpAddr, asked: &Asked) -> Result<(), OpError>;
    /// Removes `ip` from the link with index `index` (absent: success).
    async fn remove(&self, index: u32, ip: IpAddr) -> Result<(), OpError>;
    /// The index of every link that has `ip` now.
    async fn holders(&self, ip: IpAddr) -> Result<Vec<u32>, OpError>;
    /// The address cannot be removed and the lease that keeps everyone
    /// else from taking the VIP is about to go: in PID 1 this panics, and
    /// the panic hook reboots the node, which takes the address with it.
    fn last_resort(&self, why: &str);
}

/// This node's campaign key once it has won, enough to resign it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldKey {
    pub key: Vec<u8>,
    pub rev: i64,
    pub lease: i64,
}

/// What etcd tells the loop, through one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdEvent {
    /// The keepalive sent at `sent` was acknowledged with this TTL (0: the
    /// lease is gone).
    Ack { ttl: i64, sent: Instant },
    /// A keepalive could not reach the local member at all (its
    /// connection is broken).
    KeepaliveLost,
    /// The campaign won: a write, a linearizable read or a watched
    /// release found this node's key, with its lease, the first live one
    /// in the election (`campaign.rs`).
    Won(HeldKey),
    /// The campaign failed.
    CampaignFailed(String),
    /// The election's leader now: its key and campaign value.
    Leader { key: Vec<u8>, value: String },
    /// The observe stream, or the watch on this node's key, ended or
    /// failed.
    ObserveLost,
    /// etcd deleted this node's campaign key after the win (its lease was
    /// revoked or expired), seen on a watch of the key itself.
    KeyGone,
    /// The answer to [`TermOps::check`] `round`: whether this node's key
    /// still exists with its lease in a linearizable read (None: the read
    /// did not complete).
    Checked { round: u64, alive: Option<bool> },
}

/// One term's session with etcd: a lease, its keepalives and a campaign.
// Used only inside this crate, with concrete types whose futures are
// Send (PID 1 spawns the loop); no caller needs a `Send` bound spelled out.
#[allow(async_fn_in_trait)]
pub trait TermOps {
    /// Grants the lease; returns the TTL etcd granted.
    async fn grant(&mut self, ttl: Duration) -> Result<Duration, OpError>;
    /// Resigns campaigns this node left on earlier leases of this boot (a
    /// killed process, a term that could not revoke), so nobody waits for
    /// them: only leases it recorded (`record.rs`), never a key that
    /// merely carries the same value.
    async fn resign_stale(&mut self);
    /// Starts observing and campaigning; from here on everything etcd
    /// says comes on `events`.
    async fn start(&mut self, events: mpsc::Sender<EtcdEvent>) -> Result<(), OpError>;
    /// Sends one keepalive in the background; its acknowledgement comes on
    /// `events` with its send time. False when it could not be sent.
    async fn keep_alive(&mut self) -> bool;
    /// Starts a linearizable read of `key` (in the background; the answer
    /// comes on `events` as [`EtcdEvent::Checked`] with `round`): the
    /// confirmation the gate waits for (`gate.rs`).
    fn check(&mut self, key: &HeldKey, round: u64);
    /// Resigns `key` (best effort, bounded): marks it released
    /// (`campaign.rs`), which only a node whose address is gone may do.
    async fn resign(&mut self, key: &HeldKey);
    /// Revokes the lease (best effort, bounded).
    async fn revoke(&mut self);
}

/// Opens a [`TermOps`] session per term.
// Used only inside this crate, with concrete types whose futures are
// Send (PID 1 spawns the loop); no caller needs a `Send` bound spelled out.
#[allow(async_fn_in_trait)]
pub trait EtcdOps {
    type Term: TermOps;
    async fn term(&self) -> Result<Self::Term, OpError>;
}

/// Observe is opened again this many times in a row, this far apart,
/// before its loss ends the term.
const OBSERVE_TRIES: u32 = 5;
const OBSERVE_RETRY: Duration = Duration::from_millis(200);

/// Resign and revoke are best effort on this deadline: the address is
/// already gone, and a lease not revoked expires by itself.
pub const RESIGN_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a gate check may take before it counts as not done (the
/// waiting answers then wait for the next one).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The real link side: rtnetlink for the address, a packet socket for the
/// announcements.
pub struct RtnlLink {
    rtnl: Rtnl,
    /// What [`LinkOps::prepare`] found: the link and `lo`, quieted.
    prepared: std::sync::Mutex<Option<Prepared>>,
    announcer: std::sync::Mutex<Option<Announcer>>,
    /// Only the election loop awaits it, one request at a time.
    listener: tokio::sync::Mutex<Option<Listener>>,
}

impl RtnlLink {
    pub fn new(rtnl: Rtnl) -> RtnlLink {
        RtnlLink {
            rtnl,
            prepared: std::sync::Mutex::new(None),
            announcer: std::sync::Mutex::new(None),
            listener: tokio::sync::Mutex::new(None),
        }
    }
}

/// The VIP's link and `lo` as looked up for one term, with the kernel
/// quieted on the link.
#[derive(Debug, Clone)]
struct Prepared {
    /// The name asked for, and the link it named then.
    asked: String,
    link: Link,
    mac: [u8; 6],
    lo: Link,
}

impl RtnlLink {
    /// Looks `link` and `lo` up and quiets the kernel on `link`.
    async fn look_up(&self, link: &str) -> Result<Prepared, OpError> {
        let l = self
            .rtnl
            .link(link)
            .await
            .map_err(OpError::from)?
            .ok_or_else(|| OpError(format!("link {link} does not exist")))?;
        let mac = l
            .mac
            .ok_or_else(|| OpError(format!("link {link} has no MAC address")))?;
        // Before the address exists anywhere: without these the kernel
        // would answer for it on its own.
        quiet_kernel(Path::new("/proc/sys"), &l.name).map_err(OpError::from)?;
        let lo = self
            .rtnl
            .link("lo")
            .await
            .map_err(OpError::from)?
            .ok_or_else(|| OpError("link lo does not exist".into()))?;
        if !lo.up {
            // The kernel drops the local routes of a link that is down:
            // the VIP would answer ARP and then drop its traffic.
            return Err(OpError(
                "link lo is down: traffic for the VIP would be dropped".into(),
            ));
        }
        Ok(Prepared {
            asked: link.to_string(),
            link: l,
            mac,
            lo,
        })
    }
}

impl LinkOps for RtnlLink {
    async fn ready(&self, link: &str) -> Result<bool, OpError> {
        match self.rtnl.link(link).await {
            // The name now on another link (recreated): what was looked up
            // for the term is stale and forgotten, and the term ends as for
            // a link down (the next one looks it up afresh).
            Ok(Some(l)) => {
                let mut prepared = crate::lock(&self.prepared);
                let stale = prepared
                    .as_ref()
                    .is_some_and(|p| p.asked == link && p.link.index != l.index);
                if stale {
                    *prepared = None;
                }
                Ok(l.up && l.carrier && !stale)
            }
            Ok(None) => Err(OpError(format!("link {link} does not exist"))),
            Err(e) => Err(OpError::from(e)),
        }
    }

    async fn prepare(&self, link: &str) {
        let found = self.look_up(link).await;
        if let Err(e) = &found {
            log::debug!("vip: preparing {link}: {e}");
        }
        *crate::lock(&self.prepared) = found.ok();
    }

    async fn add(&self, link: &str, ip: IpAddr) -> Result<u32, OpError> {
        // Looked up at the term's start (a netlink round trip or two less
        // between the win and the first announcement: tens of ms on a
        // busy VM), or now; kept for `ready` to compare while held.
        let ready = crate::lock(&self.prepared)
            .clone()
            .filter(|p| p.asked == link);
        let p = match ready {
            Some(p) => p,
            None => {
                let p = self.look_up(link).await?;
                *crate::lock(&self.prepared) = Some(p.clone());
                p
            }
        };
        let announcer =
            Announcer::open(&p.link.name, p.link.index, p.mac).map_err(OpError::from)?;
        let listener = Listener::open(&p.link.name, p.link.index, ip).map_err(OpError::from)?;
        self.rtnl
            .add_host_address(&p.lo, ip)
            .await
            .map_err(OpError::from)?;
        *crate::lock(&self.announcer) = Some(announcer);
        *self.listener.lock().await = Some(listener);
        Ok(p.lo.index)
    }

    async fn asked(&self) -> Result<Asked, OpError> {
        let mut l = self.listener.lock().await;
        match l.as_mut() {
            Some(l) => l.next().await.map_err(OpError::from),
            None => std::future::pending().await,
        }
    }

    fn answer(&self, ip: IpAddr, asked: &Asked) -> Result<(), OpError> {
        match &*crate::lock(&self.announcer) {
            Some(a) => a.answer(ip, asked).map_err(OpError::from),
            None => Err(OpError("no announcing socket".into())),
        }
    }

    fn announce(&self, ip: IpAddr) -> Result<(), OpError> {
        match &*crate::lock(&self.announcer) {
            Some(a) => a.announce(ip).map_err(OpError::from),
            None => Err(OpError("no announcing socket".into())),
        }
    }

    async fn remove(&self, index: u32, ip: IpAddr) -> Result<(), OpError> {
        // Taken first: nothing can be sent for the VIP from here on.
        let announcer = crate::lock(&self.announcer).take();
        let listener = self.listener.lock().await.take();
        let sockets = (announcer, listener);
        let removed = self
            .rtnl
            .del_address_at(index, &format!("#{index}"), ip, host_prefix(ip))
            .await
            .map_err(OpError::from);
        // Closed off the release path: closing a packet socket waits for
        // an RCU grace period (net/packet/af_packet.c, packet_release →
        // synchronize_net()), tens of milliseconds each, and the resign
        // that lets the next holder in comes after this removal.
        if sockets.0.is_some() || sockets.1.is_some() {
            tokio::task::spawn_blocking(move || drop(sockets));
        }
        removed
    }

    async fn holders(&self, ip: IpAddr) -> Result<Vec<u32>, OpError> {
        self.rtnl
            .links_with_address(ip)
            .await
            .map_err(OpError::from)
    }

    fn last_resort(&self, why: &str) {
        // PID 1's panic hook (boot/panic.rs) logs this and reboots: the
        // reboot takes the address off the wire.
        panic!("{why}");
    }
}

/// The real etcd side: the local member's client URL.
pub struct EtcdClient {
    pub endpoint: String,
    pub tls: Option<ClientTls>,
    pub ttl: Duration,
    /// The election (key prefix) and this node's campaign value.
    pub name: String,
    pub identity: String,
    /// The record of the leases this node granted (`record.rs`).
    pub record: PathBuf,
    /// The health probe's connection to the same member, when there is
    /// one ([`health::Answering`]): a term starts on it without a TLS
    /// handshake of its own.
    pub shared: Option<health::AnsweringRx>,
}

impl EtcdOps for EtcdClient {
    type Term = EtcdTerm;

    async fn term(&self) -> Result<EtcdTerm, OpError> {
        let shared = self.shared.as_ref().and_then(|s| s.borrow().clone());
        let client = match shared {
            Some(c) => c,
            None => {
                // No per-request timeout on this client (nor on the
                // probe's): the campaign's watch blocks until this node
                // wins. Calls that must not block get their own deadlines.
                let opts = health::options(self.tls.as_ref(), self.ttl, false);
                health::connect_with(&self.endpoint, opts, self.ttl)
                    .await
                    .map_err(OpError::from)?
            }
        };
        Ok(EtcdTerm {
            client,
            name: self.name.clone(),
            identity: self.identity.clone(),
            record: self.record.clone(),
            ttl: self.ttl,
            lease: 0,
            granted: 0,
            tasks: Vec::new(),
            events: None,
        })
    }
}

/// One term on etcd-client.
pub struct EtcdTerm {
    client: Client,
    name: String,
    identity: String,
    record: PathBuf,
    ttl: Duration,
    lease: i64,
    /// The TTL etcd granted the lease, in seconds.
    granted: i64,
    /// The keepalives in flight, the observer, the campaign and the
    /// checks: dropped with the term.
    tasks: Vec<JoinHandle<()>>,
    /// Where the checks answer.
    events: Option<mpsc::Sender<EtcdEvent>>,
}

impl Drop for EtcdTerm {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// How one renewal went.
enum Renewal {
    /// Answered with this TTL (0: etcd does not know the lease).
    Acked(i64),
    /// Not answered: no leader, a timeout, an error status.
    Failed(String),
    /// The connection to the local member is broken.
    Broken(String),
}

/// One lease renewal on a keepalive stream of its own, within `limit`.
/// etcd-client's `lease_keep_alive` sends the first keepalive itself and
/// reads its answer (an unknown lease is its `LeaseKeepAliveError`); a
/// renewal refreshes the lease to the TTL it was granted with, `granted`.
async fn renew(mut client: Client, lease: i64, granted: i64, limit: Duration) -> Renewal {
    match timeout(limit, client.lease_keep_alive(lease)).await {
        Ok(Ok(_)) => Renewal::Acked(granted),
        Ok(Err(etcd_client::Error::LeaseKeepAliveError(m))) if m.contains("not found") => {
            Renewal::Acked(0)
        }
        Ok(Err(e @ etcd_client::Error::TransportError(_))) => Renewal::Broken(e.to_string()),
        Ok(Err(e)) => Renewal::Failed(e.to_string()),
        Err(_) => Renewal::Failed("timed out".into()),
    }
}

/// Waits until etcd deletes `key`, on a watch of that key alone from its
/// creation revision (events already past are replayed, so a deletion
/// before the watch started is seen too): [`EtcdEvent::KeyGone`], or
/// [`EtcdEvent::ObserveLost`] when the watch ends or etcd cancels it
/// (a compacted start revision). Why a watch of its own: the observe
/// stream reports a new leader only after the server's own linearizable
/// read (etcd's `concurrency.Election.Observe`), a round trip after the
/// deletion, while the node that wins next needs about as long for its
/// read: this event comes when the local member applies the deletion,
/// before any read, so a holder whose lease is revoked early (etcd's
/// stale-leader revocation: docs/ARCHITECTURE.md) drops the address,
/// as a rule, ahead of the next holder's win (a race with a margin of a
/// read; the gate keeps the wire when it is lost).
async fn watch_deleted(mut client: Client, key: &HeldKey) -> EtcdEvent {
    // Deletions only (etcd's `NoPut` filter): every event here is one.
    // Not `Event::event_type`: etcd-client 0.21 panics on a type it does
    // not know, and a panic reboots PID 1.
    let opts = WatchOptions::new()
        .with_start_revision(key.rev)
        .with_filters([WatchFilterType::NoPut]);
    let Ok(mut stream) = client.watch(key.key.clone(), Some(opts)).await else {
        return EtcdEvent::ObserveLost;
    };
    while let Ok(Some(r)) = stream.message().await {
        if !r.events().is_empty() {
            return EtcdEvent::KeyGone;
        }
        if r.canceled() {
            break;
        }
    }
    EtcdEvent::ObserveLost
}

async fn within<T>(
    what: &str,
    d: Duration,
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, OpError> {
    match timeout(d, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(OpError(format!("etcd {what}: {e}"))),
        Err(_) => Err(OpError(format!("etcd {what}: timed out"))),
    }
}

impl EtcdTerm {
    fn leader_key(&self, k: &HeldKey) -> LeaderKey {
        LeaderKey::new()
            .with_name(self.name.as_str())
            .with_key(k.key.as_slice())
            .with_rev(k.rev)
            .with_lease(k.lease)
    }
}

impl TermOps for EtcdTerm {
    async fn grant(&mut self, ttl: Duration) -> Result<Duration, OpError> {
        let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let grant = within("lease grant", self.ttl, self.client.lease_grant(secs, None)).await?;
        self.lease = grant.id();
        self.granted = grant.ttl();
        super::record::add(&self.record, &self.name, &self.identity, self.lease);
        // At least 1 s: the keepalive interval is derived from it, and a
        // zero period would panic tokio's interval (PID 1 must not panic).
        Ok(Duration::from_secs(grant.ttl().max(1).unsigned_abs()))
    }

    async fn resign_stale(&mut self) {
        // Nothing recorded (the first term of a boot): no read to wait for.
        if !super::record::any_other(&self.record, &self.name, &self.identity, self.lease) {
            return;
        }
        let prefix = format!("{}/", self.name);
        let opts = GetOptions::new().with_prefix();
        let Ok(resp) = within("get", RESIGN_TIMEOUT, self.client.get(prefix, Some(opts))).await
        else {
            return;
        };
        for kv in resp.kvs() {
            if kv.value() != self.identity.as_bytes()
                || kv.lease() == self.lease
                || !super::record::has(&self.record, &self.name, &self.identity, kv.lease())
            {
                continue;
            }
            let key = HeldKey {
                key: kv.key().to_vec(),
                rev: kv.create_revision(),
                lease: kv.lease(),
            };
            let opts = ResignOptions::new().with_leader(self.leader_key(&key));
            let resigned = within("resign", RESIGN_TIMEOUT, self.client.resign(Some(opts))).await;
            let _ = within(
                "revoke",
                RESIGN_TIMEOUT,
                self.client.lease_revoke(kv.lease()),
            )
            .await;
            log::info!(
                "vip {}: resigned a stale campaign of this node (lease {:x}){}",
                self.name,
                kv.lease(),
                if resigned.is_ok() {
                    ""
                } else {
                    " (resign failed; lease revoked)"
                }
            );
        }
    }

    async fn start(&mut self, events: mpsc::Sender<EtcdEvent>) -> Result<(), OpError> {
        // No renewal first: the grant, a raft write the leader answered
        // after applying it, already counts as the first acknowledgement
        // (the fence starts from its send time, `election::term`), and a
        // lease etcd no longer knows fails the campaign itself ("requested
        // lease not found"). It cost a round trip between etcd's health
        // and the VIP.
        self.events = Some(events.clone());
        // Observe in a task of its own: the call itself returns only with
        // the first leader (gRPC response headers come with the first
        // message), and there may be none until this node's campaign wins.
        let (mut election, name, tx) = (
            self.client.election_client(),
            self.name.clone(),
            events.clone(),
        );
        // The stream ends when etcd's Observe fails its own linearizable
        // read, which a raft leader change does ("etcdserver: leader
        // changed": the leader of a node shutting down hands over): it is
        // opened again, as etcd's own clients do, and only a stream that
        // keeps failing ends the term. The holder's safety does not rest
        // on it (the fence, the key watch and the gate do).
        self.tasks.push(tokio::spawn(async move {
            let mut failures = 0;
            while failures < OBSERVE_TRIES {
                if let Ok(mut stream) = election.observe(name.clone()).await {
                    while let Ok(Some(mut r)) = stream.message().await {
                        failures = 0;
                        if let Some(kv) = r.take_kv() {
                            let value = String::from_utf8_lossy(kv.value()).into_owned();
                            let ev = EtcdEvent::Leader {
                                key: kv.key().to_vec(),
                                value,
                            };
                            if tx.send(ev).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                failures += 1;
                tokio::time::sleep(OBSERVE_RETRY).await;
            }
            let _ = tx.send(EtcdEvent::ObserveLost).await;
        }));
        let campaign = super::campaign::run(
            self.client.clone(),
            self.name.clone(),
            self.identity.clone(),
            self.lease,
        );
        let watcher = self.client.clone();
        self.tasks.push(tokio::spawn(async move {
            let ev = campaign.await;
            let held = match &ev {
                EtcdEvent::Won(k) => Some(k.clone()),
                _ => None,
            };
            if events.send(ev).await.is_err() {
                return;
            }
            if let Some(k) = held {
                let gone = watch_deleted(watcher, &k).await;
                let _ = events.send(gone).await;
            }
        }));
        Ok(())
    }

    async fn keep_alive(&mut self) -> bool {
        let Some(tx) = self.events.clone() else {
            return false;
        };
        // Each keepalive on a stream of its own: etcd serves one stream's
        // requests in order, and a member forwards a renewal to the leader
        // it knows, waiting up to 5 s for a leader that froze or crashed
        // (server/etcdserver/v3_server.go, LeaseRenew; the peer transport's
        // read timeout). On one long-lived stream every later keepalive
        // would queue behind that one, past the fence; on its own stream
        // the next one, a tick later, reaches the new leader.
        let (client, lease, granted, ttl) =
            (self.client.clone(), self.lease, self.granted, self.ttl);
        let sent = Instant::now();
        self.tasks.retain(|t| !t.is_finished());
        self.tasks.push(tokio::spawn(async move {
            let ev = match renew(client, lease, granted, ttl).await {
                Renewal::Acked(ttl) => EtcdEvent::Ack { ttl, sent },
                Renewal::Broken(e) => {
                    log::debug!("vip: keepalive: {e}");
                    EtcdEvent::KeepaliveLost
                }
                // Transient (no leader yet, a timeout): the fence decides.
                Renewal::Failed(e) => {
                    log::debug!("vip: keepalive: {e}");
                    return;
                }
            };
            let _ = tx.send(ev).await;
        }));
        true
    }

    fn check(&mut self, key: &HeldKey, round: u64) {
        let Some(tx) = self.events.clone() else {
            return;
        };
        // A linearizable Get (etcd's default) is served only after the
        // member confirmed with a quorum that it is, or follows, the
        // current leader (ReadIndex). A keepalive acknowledgement is not
        // enough: etcd 3.5.16 skips the leadership check on lease renewal
        // when the member ticked in the last 3 ticks (`isActive`, PR
        // 18439), which a leader resumed from a pause always has, and its
        // lessor, paused too, still counts the lease as alive.
        let (mut client, held) = (self.client.clone(), key.clone());
        self.tasks.retain(|t| !t.is_finished());
        self.tasks.push(tokio::spawn(async move {
            let read = within("get", CHECK_TIMEOUT, client.get(held.key.clone(), None)).await;
            let alive = read.ok().map(|r| {
                r.kvs()
                    .iter()
                    .any(|kv| kv.lease() == held.lease && kv.create_revision() == held.rev)
            });
            let _ = tx.send(EtcdEvent::Checked { round, alive }).await;
        }));
    }

    async fn resign(&mut self, key: &HeldKey) {
        // Released, not deleted: the next node's campaign wins on this
        // write alone (`campaign.rs`); the revoke that follows deletes it.
        let txn = super::campaign::release_txn(key);
        let _ = within("release", RESIGN_TIMEOUT, self.client.txn(txn)).await;
    }

    async fn revoke(&mut self) {
        let _ = within(
            "revoke",
            RESIGN_TIMEOUT,
            self.client.lease_revoke(self.lease),
        )
        .await;
    }
}
