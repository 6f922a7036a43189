//! The DHCPv4 client state machine of RFC 2131 section 4.4 (figure 5),
//! without sockets or clocks: the event loop feeds it packets and timer
//! ticks with a monotonic `now`, and carries out the [`Action`]s it returns.
//!
//! Deliberate choices, each a place where RFC 2131 leaves room:
//! - No initial 1-10 s random wait (4.4.1 "SHOULD"): a node booting alone
//!   wants its address now, and the retransmission jitter already
//!   desynchronizes a rack that powers on at once. systemd-networkd does
//!   the same.
//! - The first OFFER wins (4.4.1 allows collecting several).
//! - A REQUEST in REQUESTING is sent [`MAX_REQUESTS`] times, then the client
//!   goes back to INIT (3.1.5).
//! - After a NAK the client restarts at once; repeated NAKs back off 4 s,
//!   8 s, ... 64 s so a confused server cannot make it spin.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::codec::{opt, CodecError, MessageType, Packet, FLAG_BROADCAST, OP_REPLY};
use super::lease::{Lease, LeaseError};

/// REQUEST transmissions in REQUESTING before starting over.
pub const MAX_REQUESTS: u32 = 4;
/// RFC 2131 4.1: retransmission delays double from 4 s up to 64 s.
const FIRST_DELAY: Duration = Duration::from_secs(4);
const MAX_DELAY: Duration = Duration::from_secs(64);
/// RFC 2131 4.4.5: in RENEWING and REBINDING, wait half the remaining time,
/// "down to a minimum of 60 seconds".
const MIN_RENEW_DELAY: Duration = Duration::from_secs(60);
/// RFC 2131 3.1.5: after a DECLINE, "SHOULD wait a minimum of ten seconds".
const DECLINE_WAIT: Duration = Duration::from_secs(10);

/// The options asked for in option 55 (RFC 2132 9.8). 121 comes before 3
/// as RFC 3442 section 4 asks, so servers that honour order send it.
pub const REQUESTED_OPTIONS: [u8; 11] = [
    opt::SUBNET_MASK,
    opt::CLASSLESS_ROUTES,
    opt::ROUTER,
    opt::DNS,
    opt::HOSTNAME,
    opt::DOMAIN_NAME,
    opt::BROADCAST,
    opt::MTU,
    opt::LEASE_TIME,
    opt::RENEWAL_TIME,
    opt::REBINDING_TIME,
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    pub mac: [u8; 6],
    /// Option 61. Default: type 1 (Ethernet) and the MAC (RFC 2132 9.14).
    pub client_id: Vec<u8>,
    /// Sent as option 12 so the server can register the name (dnsmasq
    /// does).
    pub hostname: Option<String>,
    /// RFC 2131 4.1: set the BROADCAST flag when the client "cannot receive
    /// unicast IP datagrams until its protocol software has been configured
    /// with an IP address" - true for a UDP socket on an unconfigured link.
    /// A packet-socket receiver may clear it.
    pub broadcast_flag: bool,
    /// Option 57 (RFC 2132 9.10): the largest message we accept; the link
    /// MTU, at least 576.
    pub max_message_size: u16,
}

impl ClientConfig {
    pub fn new(mac: [u8; 6]) -> ClientConfig {
        let mut client_id = vec![1];
        client_id.extend_from_slice(&mac);
        ClientConfig {
            mac,
            client_id,
            hostname: None,
            broadcast_flag: true,
            max_message_size: 1500,
        }
    }
}

/// Where a packet goes: UDP port 67 at this address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// 255.255.255.255 from 0.0.0.0 (or from the leased address when
    /// rebinding).
    Broadcast,
    Unicast(Ipv4Addr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send {
        packet: Vec<u8>,
        dest: Dest,
    },
    /// Configure this lease (address, routes, DNS ...); replaces any
    /// earlier one with the same address.
    Apply(Lease),
    /// This lease is gone (expired, NAKed, declined, released): remove its
    /// address and routes.
    Expire(Lease),
    /// A packet that changed nothing, and why: for debug logging.
    Ignored(Ignored),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    #[error("undecodable DHCP packet: {0}")]
    Codec(#[from] CodecError),
    #[error("DHCP packet for another client or transaction")]
    NotOurs,
    #[error("DHCP {kind:?} not expected in state {state:?}")]
    Unexpected {
        kind: Option<MessageType>,
        state: StateKind,
    },
    #[error("DHCP {kind:?} refused: {source}")]
    BadLease {
        kind: MessageType,
        #[source]
        source: LeaseError,
    },
    #[error("DHCP {kind:?} from server {from:?}, but we are talking to {server}")]
    OtherServer {
        kind: MessageType,
        from: Option<Ipv4Addr>,
        server: Ipv4Addr,
    },
}

/// The RFC 2131 figure 5 states Keel uses (INIT-REBOOT and REBOOTING are
/// not: PID 1 keeps no lease across boots).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    Init,
    Selecting,
    Requesting,
    Bound,
    Renewing,
    Rebinding,
    Stopped,
}

#[derive(Debug, Clone, Copy)]
struct Offer {
    address: Ipv4Addr,
    server_id: Ipv4Addr,
}

/// Lease deadlines; `None` is never (an infinite lease).
#[derive(Debug, Clone, Copy)]
struct Times {
    t1: Option<Instant>,
    t2: Option<Instant>,
    expiry: Option<Instant>,
}

impl Times {
    /// RFC 2131 4.4.1: times count from when the REQUEST was sent.
    fn new(sent: Instant, l: &Lease) -> Times {
        Times {
            t1: sent.checked_add(l.t1),
            t2: sent.checked_add(l.t2),
            expiry: sent.checked_add(l.lease_time),
        }
    }
}

fn due(t: Option<Instant>, now: Instant) -> bool {
    t.is_some_and(|t| now >= t)
}

#[derive(Debug, Clone)]
enum State {
    Init {
        restart_at: Instant,
    },
    Selecting {
        next_tx: Instant,
        attempt: u32,
    },
    Requesting {
        offer: Offer,
        first_tx: Instant,
        next_tx: Instant,
        attempt: u32,
    },
    Bound {
        lease: Lease,
        times: Times,
    },
    /// RENEWING (unicast to the server) and REBINDING (broadcast to any).
    Extending {
        rebinding: bool,
        lease: Lease,
        times: Times,
        first_tx: Instant,
        next_tx: Instant,
    },
    Stopped,
}

/// One client per link.
#[derive(Debug, Clone)]
pub struct Client {
    config: ClientConfig,
    state: State,
    rng: u64,
    xid: u32,
    /// Start of the current acquisition or renewal, for `secs`.
    since: Instant,
    naks: u32,
}

impl Client {
    /// A client in INIT; `seed` feeds the transaction ids and the jitter
    /// (from the kernel's random pool in production, fixed in tests).
    pub fn new(config: ClientConfig, seed: u64, now: Instant) -> Client {
        Client {
            config,
            state: State::Init { restart_at: now },
            // xorshift needs a non-zero state.
            rng: seed | 1,
            xid: 0,
            since: now,
            naks: 0,
        }
    }

    /// Begins acquisition: sends the first DISCOVER.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        self.select(now, Vec::new())
    }

    pub fn state(&self) -> StateKind {
        match &self.state {
            State::Init { .. } => StateKind::Init,
            State::Selecting { .. } => StateKind::Selecting,
            State::Requesting { .. } => StateKind::Requesting,
            State::Bound { .. } => StateKind::Bound,
            State::Extending {
                rebinding: false, ..
            } => StateKind::Renewing,
            State::Extending {
                rebinding: true, ..
            } => StateKind::Rebinding,
            State::Stopped => StateKind::Stopped,
        }
    }

    /// The lease in force, if any.
    pub fn lease(&self) -> Option<&Lease> {
        match &self.state {
            State::Bound { lease, .. } | State::Extending { lease, .. } => Some(lease),
            _ => None,
        }
    }

    /// The current transaction id.
    pub fn xid(&self) -> u32 {
        self.xid
    }

    /// When the event loop should call [`Client::on_timer`] next.
    pub fn next_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Init { restart_at } => Some(*restart_at),
            State::Selecting { next_tx, .. } | State::Requesting { next_tx, .. } => Some(*next_tx),
            State::Bound { times, .. } => [times.t1, times.t2, times.expiry]
                .into_iter()
                .flatten()
                .min(),
            State::Extending {
                rebinding,
                times,
                next_tx,
                ..
            } => {
                let stage = if *rebinding { times.expiry } else { times.t2 };
                Some(stage.map_or(*next_tx, |s| s.min(*next_tx)))
            }
            State::Stopped => None,
        }
    }

    /// Handles whatever is due at `now`; early or spurious calls do nothing.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        match self.state.clone() {
            State::Init { restart_at } if now >= restart_at => self.select(now, Vec::new()),
            State::Selecting { next_tx, attempt } if now >= next_tx => {
                let attempt = attempt + 1;
                self.state = State::Selecting {
                    next_tx: now + self.backoff(attempt),
                    attempt,
                };
                vec![self.send_discover(now)]
            }
            State::Requesting {
                offer,
                first_tx,
                next_tx,
                attempt,
            } if now >= next_tx => {
                if attempt + 1 >= MAX_REQUESTS {
                    return self.select(now, Vec::new());
                }
                let attempt = attempt + 1;
                self.state = State::Requesting {
                    offer,
                    first_tx,
                    next_tx: now + self.backoff(attempt),
                    attempt,
                };
                vec![self.send_request_selecting(now, offer)]
            }
            State::Bound { lease, times } | State::Extending { lease, times, .. }
                if due(times.expiry, now) =>
            {
                // RFC 2131 4.4.5: "the client MUST immediately discontinue
                // all network processing with the address, and restart".
                self.select(now, vec![Action::Expire(lease)])
            }
            State::Bound { lease, times }
            | State::Extending {
                rebinding: false,
                lease,
                times,
                ..
            } if due(times.t2, now) => self.extend(now, lease, times, true),
            State::Bound { lease, times } if due(times.t1, now) => {
                self.extend(now, lease, times, false)
            }
            State::Extending {
                rebinding,
                lease,
                times,
                first_tx,
                next_tx,
            } if now >= next_tx => {
                let a = self.send_extend(now, &lease, rebinding);
                self.state = State::Extending {
                    next_tx: now + extend_delay(now, &times, rebinding),
                    rebinding,
                    lease,
                    times,
                    first_tx,
                };
                vec![a]
            }
            _ => Vec::new(),
        }
    }

    /// Handles one UDP payload received on port 68.
    pub fn on_packet(&mut self, now: Instant, bytes: &[u8]) -> Vec<Action> {
        let p = match Packet::decode(bytes) {
            Ok(p) => p,
            Err(e) => return vec![Action::Ignored(e.into())],
        };
        if p.op != OP_REPLY || p.xid != self.xid || p.hardware_address() != self.config.mac {
            return vec![Action::Ignored(Ignored::NotOurs)];
        }
        let kind = p.message_type();
        let server = p
            .option(opt::SERVER_ID)
            .and_then(|d| <[u8; 4]>::try_from(d).ok());
        let server = server.map(Ipv4Addr::from);
        let unexpected = |state| vec![Action::Ignored(Ignored::Unexpected { kind, state })];
        let other = |kind, ours| {
            vec![Action::Ignored(Ignored::OtherServer {
                kind,
                from: server,
                server: ours,
            })]
        };
        match (self.state.clone(), kind) {
            (State::Selecting { .. }, Some(MessageType::Offer)) => {
                // Validate the offer as an ACK would be, minus the lease
                // time (RFC 2131 table 3 makes it a MUST in OFFERs too, but
                // the ACK is what counts).
                let address = p.yiaddr;
                let Some(server_id) = server else {
                    return vec![Action::Ignored(Ignored::BadLease {
                        kind: MessageType::Offer,
                        source: LeaseError::Missing {
                            code: opt::SERVER_ID,
                            name: "server identifier",
                        },
                    })];
                };
                if address.is_unspecified() || address.is_broadcast() || address.is_multicast() {
                    return vec![Action::Ignored(Ignored::BadLease {
                        kind: MessageType::Offer,
                        source: LeaseError::BadAddress { address },
                    })];
                }
                let offer = Offer { address, server_id };
                self.state = State::Requesting {
                    offer,
                    first_tx: now,
                    next_tx: now + self.backoff(0),
                    attempt: 0,
                };
                vec![self.send_request_selecting(now, offer)]
            }
            (
                State::Requesting {
                    offer, first_tx, ..
                },
                Some(k @ MessageType::Ack),
            ) => {
                if server != Some(offer.server_id) {
                    return other(k, offer.server_id);
                }
                self.bind(first_tx, &p, None)
            }
            (
                State::Extending {
                    lease, first_tx, ..
                },
                Some(MessageType::Ack),
            ) => self.bind(first_tx, &p, Some(lease)),
            (State::Requesting { offer, .. }, Some(k @ MessageType::Nak)) => {
                if server != Some(offer.server_id) {
                    return other(k, offer.server_id);
                }
                self.nak(now, Vec::new())
            }
            // In REBINDING any server may answer, so any may refuse.
            (
                State::Extending {
                    rebinding, lease, ..
                },
                Some(k @ MessageType::Nak),
            ) => {
                if !rebinding && server.is_some_and(|s| s != lease.server_id) {
                    return other(k, lease.server_id);
                }
                self.nak(now, vec![Action::Expire(lease)])
            }
            _ => unexpected(self.state()),
        }
    }

    /// The caller found the bound address in use (ARP probe, RFC 2131
    /// 2.2): DECLINE it and try again after ten seconds.
    pub fn decline(&mut self, now: Instant) -> Vec<Action> {
        let State::Bound { lease, .. } = self.state.clone() else {
            return Vec::new();
        };
        let mut p = self.packet(MessageType::Decline, now);
        // RFC 2131 table 5: DECLINE has no flags, ciaddr 0, options 50, 54.
        p.flags = 0;
        p.push(opt::REQUESTED_IP, lease.address.octets());
        p.push(opt::SERVER_ID, lease.server_id.octets());
        let send = Action::Send {
            packet: p.encode(),
            dest: Dest::Broadcast,
        };
        self.state = State::Init {
            restart_at: now + DECLINE_WAIT,
        };
        vec![send, Action::Expire(lease)]
    }

    /// Gives the lease back (RFC 2131 4.4.6, unicast to the server) and
    /// stops; for shutdown.
    pub fn release(&mut self, now: Instant) -> Vec<Action> {
        let lease = self.lease().cloned();
        self.state = State::Stopped;
        let Some(lease) = lease else {
            return Vec::new();
        };
        let mut p = self.packet(MessageType::Release, now);
        p.flags = 0;
        p.secs = 0;
        p.ciaddr = lease.address;
        p.push(opt::SERVER_ID, lease.server_id.octets());
        vec![
            Action::Send {
                packet: p.encode(),
                dest: Dest::Unicast(lease.server_id),
            },
            Action::Expire(lease),
        ]
    }

    fn bind(&mut self, first_tx: Instant, p: &Packet, old: Option<Lease>) -> Vec<Action> {
        let lease = match Lease::from_ack(p) {
            Ok(l) => l,
            Err(source) => {
                return vec![Action::Ignored(Ignored::BadLease {
                    kind: MessageType::Ack,
                    source,
                })]
            }
        };
        let mut out = Vec::new();
        if let Some(old) = old.filter(|o| (o.address, o.prefix) != (lease.address, lease.prefix)) {
            out.push(Action::Expire(old));
        }
        self.naks = 0;
        self.state = State::Bound {
            times: Times::new(first_tx, &lease),
            lease: lease.clone(),
        };
        out.push(Action::Apply(lease));
        out
    }

    fn nak(&mut self, now: Instant, out: Vec<Action>) -> Vec<Action> {
        self.naks += 1;
        if self.naks == 1 {
            return self.select(now, out);
        }
        let delay = FIRST_DELAY
            .saturating_mul(1 << (self.naks - 2).min(5))
            .min(MAX_DELAY);
        self.state = State::Init {
            restart_at: now + delay,
        };
        out
    }

    /// INIT -> SELECTING: new transaction, DISCOVER.
    fn select(&mut self, now: Instant, mut out: Vec<Action>) -> Vec<Action> {
        self.xid = self.new_xid();
        self.since = now;
        self.state = State::Selecting {
            next_tx: now + self.backoff(0),
            attempt: 0,
        };
        out.push(self.send_discover(now));
        out
    }

    /// BOUND -> RENEWING (T1) or -> REBINDING (T2).
    fn extend(&mut self, now: Instant, lease: Lease, times: Times, rebinding: bool) -> Vec<Action> {
        // A renewal is a new exchange; rebinding continues it, so a late
        // answer to the last unicast REQUEST still counts.
        let first_tx = match &self.state {
            State::Extending { first_tx, .. } => *first_tx,
            _ => {
                self.xid = self.new_xid();
                self.since = now;
                now
            }
        };
        let a = self.send_extend(now, &lease, rebinding);
        self.state = State::Extending {
            rebinding,
            next_tx: now + extend_delay(now, &times, rebinding),
            lease,
            times,
            first_tx,
        };
        vec![a]
    }

    fn send_extend(&self, now: Instant, lease: &Lease, rebinding: bool) -> Action {
        // RFC 2131 table 5 and 4.3.2: RENEWING/REBINDING fill ciaddr and
        // carry neither option 50 nor 54.
        let mut p = self.packet(MessageType::Request, now);
        p.flags = 0;
        p.ciaddr = lease.address;
        self.push_common(&mut p);
        Action::Send {
            packet: p.encode(),
            dest: if rebinding {
                Dest::Broadcast
            } else {
                Dest::Unicast(lease.server_id)
            },
        }
    }

    fn send_discover(&self, now: Instant) -> Action {
        let mut p = self.packet(MessageType::Discover, now);
        self.push_common(&mut p);
        Action::Send {
            packet: p.encode(),
            dest: Dest::Broadcast,
        }
    }

    /// SELECTING's REQUEST (RFC 2131 4.3.2): options 50 and 54, ciaddr 0,
    /// broadcast.
    fn send_request_selecting(&self, now: Instant, offer: Offer) -> Action {
        let mut p = self.packet(MessageType::Request, now);
        p.push(opt::REQUESTED_IP, offer.address.octets());
        p.push(opt::SERVER_ID, offer.server_id.octets());
        self.push_common(&mut p);
        Action::Send {
            packet: p.encode(),
            dest: Dest::Broadcast,
        }
    }

    /// Header and options 53, 61.
    fn packet(&self, kind: MessageType, now: Instant) -> Packet {
        let mut p = Packet::request(self.xid, self.config.mac, kind);
        // RFC 2131 table 5: "seconds elapsed since client began address
        // acquisition or renewal process".
        let secs = now.saturating_duration_since(self.since).as_secs();
        p.secs = u16::try_from(secs).unwrap_or(u16::MAX);
        if self.config.broadcast_flag {
            p.flags = FLAG_BROADCAST;
        }
        if !self.config.client_id.is_empty() {
            p.push(opt::CLIENT_ID, self.config.client_id.clone());
        }
        p
    }

    /// Options 57, 12 and 55, which DISCOVER and REQUEST share.
    fn push_common(&self, p: &mut Packet) {
        p.push(
            opt::MAX_MESSAGE_SIZE,
            self.config.max_message_size.max(576).to_be_bytes(),
        );
        if let Some(h) = &self.config.hostname {
            p.push(opt::HOSTNAME, h.as_bytes());
        }
        p.push(opt::PARAMETER_LIST, REQUESTED_OPTIONS);
    }

    /// RFC 2131 4.1: 4 s doubling to 64 s, each randomized by +-1 s.
    fn backoff(&mut self, attempt: u32) -> Duration {
        let base = FIRST_DELAY
            .saturating_mul(1 << attempt.min(4))
            .min(MAX_DELAY);
        let jitter_ms = (self.random() % 2001) as i64 - 1000;
        if jitter_ms >= 0 {
            base + Duration::from_millis(jitter_ms as u64)
        } else {
            base - Duration::from_millis(jitter_ms.unsigned_abs())
        }
    }

    /// xorshift64* (Vigna 2016): plenty for xids and jitter, no crate.
    /// A transaction id ([`Self::random`] is already 32 bits wide).
    fn new_xid(&mut self) -> u32 {
        u32::try_from(self.random()).unwrap_or(0)
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32
    }
}

/// RFC 2131 4.4.5: half the time left until T2 (renewing) or expiry
/// (rebinding), at least 60 s.
fn extend_delay(now: Instant, times: &Times, rebinding: bool) -> Duration {
    let until = if rebinding { times.expiry } else { times.t2 };
    until
        .map(|t| t.saturating_duration_since(now) / 2)
        .unwrap_or(MIN_RENEW_DELAY)
        .max(MIN_RENEW_DELAY)
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
