//! The DHCPv4 event loop for one link: drives a [`Client`] with tokio
//! timers and a [`Transport`], configures what a lease grants through
//! rtnetlink, and reports leases on a channel so the network manager can
//! rewrite resolv.conf and the hostname.
//!
//! What a lease puts on the link, and takes off again when it ends:
//! - the address with its prefix (the kernel adds the subnet route);
//! - the classless static routes of option 121 (RFC 3442), or else a
//!   default route via the first router of option 3, all with the
//!   configured metric (default 1024, as Talos) and the leased address as
//!   preferred source, so removing the address also removes them
//!   (fib_sync_down_addr() in net/ipv4/fib_semantics.c);
//! - the MTU of option 26 (RFC 2132 5.1), with the old MTU put back after.
//!
//! Failures to configure are logged and retried on the next renewal, which
//! re-applies the whole lease; the client keeps running either way.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use tokio::sync::mpsc::UnboundedSender;

use super::client::{Action, Client, ClientConfig, Dest, StateKind};
use super::lease::Lease;
use super::socket::Transport;
use crate::net::plan::ClientId;
use crate::net::rtnl::{RouteSpec, Rtnl};

pub use crate::net::DEFAULT_ROUTE_METRIC;
/// Retry delays for opening the sockets, doubling.
const REOPEN_FIRST: Duration = Duration::from_secs(1);
const REOPEN_MAX: Duration = Duration::from_secs(30);
/// Polling delays while a link is administratively down, doubling.
const LINK_POLL_FIRST: Duration = Duration::from_secs(1);
const LINK_POLL_MAX: Duration = Duration::from_secs(5);

/// The link to run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLink {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Metric of the routes a lease brings; [`DEFAULT_ROUTE_METRIC`] if
    /// `None`.
    pub route_metric: Option<u32>,
    /// Sent as option 12.
    pub hostname: Option<String>,
    /// Option 61; Talos's `clientIdentifier`.
    pub client_id: ClientId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhcpEvent {
    /// A lease was acquired or renewed and is configured on the link.
    Bound { link: String, lease: Lease },
    /// The lease ended (expired, refused, released, or the link went
    /// away); its address and routes are removed.
    Lost { link: String },
}

/// What the runner put on the link for the lease in force.
struct Applied {
    lease: Lease,
    routes: Vec<RouteSpec>,
    /// The link MTU before option 26 changed it.
    mtu_before: Option<u32>,
}

struct Runner {
    link: RunLink,
    opts: RunOptions,
    rtnl: Rtnl,
    events: UnboundedSender<DhcpEvent>,
    mtu: Option<u32>,
    applied: Option<Applied>,
    /// A send failed and was logged; later failures go to debug until one
    /// succeeds, so a link without carrier does not fill the log.
    send_failing: bool,
}

enum LinkWait {
    Up,
    Gone,
    Stopped,
}

/// Runs DHCP on `link` until the task is dropped or aborted. The caller
/// brings the link up; a link that goes down or away is waited for.
pub async fn run(link: RunLink, opts: RunOptions, rtnl: Rtnl, events: UnboundedSender<DhcpEvent>) {
    run_until(link, opts, rtnl, events, std::future::pending()).await
}

/// [`run`] until `stop` completes; then the lease is released (RFC 2131
/// 4.4.6) and its address and routes removed before returning.
pub async fn run_until<S: Future<Output = ()>>(
    link: RunLink,
    opts: RunOptions,
    rtnl: Rtnl,
    events: UnboundedSender<DhcpEvent>,
    stop: S,
) {
    let mut r = Runner {
        link,
        opts,
        rtnl,
        events,
        mtu: None,
        applied: None,
        send_failing: false,
    };
    tokio::pin!(stop);
    'session: loop {
        let Some(mut t) = r.open(&mut stop).await else {
            return;
        };
        let mut client = Client::new(r.client_config(), seed(r.link.mac), Instant::now());
        let actions = client.start(Instant::now());
        r.carry_out(&mut t, &client, actions).await;
        loop {
            let actions = tokio::select! {
                () = stop.as_mut() => {
                    let actions = client.release(Instant::now());
                    r.carry_out(&mut t, &client, actions).await;
                    return;
                }
                () = sleep_until(client.next_timeout()) => client.on_timer(Instant::now()),
                got = t.recv() => match got {
                    Ok(payload) => client.on_packet(Instant::now(), &payload),
                    // The link was set down (Transport::recv); the
                    // socket receives again once it is back up.
                    Err(e) if e.errno() == Some(Errno::ENETDOWN) => {
                        match r.wait_link_up(&mut stop, t.ifindex()).await {
                            LinkWait::Up if client.lease().is_none() => {
                                // Whatever went out while the link was
                                // down was lost: start over now rather
                                // than after the retransmission delay.
                                client.start(Instant::now())
                            }
                            LinkWait::Up => {
                                r.restore().await;
                                Vec::new()
                            }
                            LinkWait::Gone => {
                                r.drop_lease(&mut t).await;
                                continue 'session;
                            }
                            LinkWait::Stopped => {
                                r.drop_lease(&mut t).await;
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        log::warn!("{e}; reopening");
                        r.drop_lease(&mut t).await;
                        // Not at once: an error that comes back straight
                        // away would make this a busy loop.
                        tokio::select! {
                            () = stop.as_mut() => return,
                            () = tokio::time::sleep(REOPEN_FIRST) => continue 'session,
                        }
                    }
                },
            };
            r.carry_out(&mut t, &client, actions).await;
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

impl Runner {
    fn name(&self) -> &str {
        &self.link.name
    }

    fn metric(&self) -> u32 {
        self.opts.route_metric.unwrap_or(DEFAULT_ROUTE_METRIC)
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new(self.link.mac);
        c.hostname = self.opts.hostname.clone();
        match &self.opts.client_id {
            ClientId::Mac => {}
            ClientId::None => c.client_id.clear(),
            // RFC 4361 section 6.1: type 255, a 4-byte IAID (here the
            // MAC's last four bytes, stable per link), then the DUID.
            ClientId::Duid(duid) => {
                let mut id = vec![255];
                id.extend_from_slice(&self.link.mac[2..]);
                id.extend_from_slice(duid);
                c.client_id = id;
            }
        }
        // RFC 2132 9.10: at least 576; the link MTU bounds what can arrive.
        let mtu = self.mtu.unwrap_or(1500).max(576);
        c.max_message_size = u16::try_from(mtu).unwrap_or(u16::MAX);
        // Left set although the packet socket could take unicast replies
        // before the address is configured (RFC 2131 4.1 allows the flag
        // either way): a unicast to an address the host does not have yet
        // would also reach the IP stack, which on a forwarding node
        // (Kubernetes sets ip_forward) may route it out another link.
        c.broadcast_flag = true;
        c
    }

    /// Resolves the link by name (its index changes if it is re-created)
    /// and opens the sockets, retrying with backoff; `None` if stopped.
    async fn open<S: Future<Output = ()>>(&mut self, stop: &mut Pin<&mut S>) -> Option<Transport> {
        let mut delay = REOPEN_FIRST;
        let mut warned = false;
        loop {
            let attempt = match self.rtnl.link(&self.link.name).await {
                Ok(Some(l)) => {
                    self.link.ifindex = l.index;
                    self.link.mac = l.mac.unwrap_or(self.link.mac);
                    self.mtu = l.mtu;
                    Transport::open(&self.link.name, l.index).map_err(|e| e.to_string())
                }
                Ok(None) => Err(format!("dhcp: {}: link does not exist", self.name())),
                Err(e) => Err(format!("dhcp: {}: {e}", self.name())),
            };
            match attempt {
                Ok(t) => {
                    if warned {
                        log::info!("dhcp: {}: link is back, starting over", self.name());
                    }
                    return Some(t);
                }
                Err(e) if !warned => {
                    log::warn!("{e}; retrying");
                    warned = true;
                }
                Err(e) => log::debug!("{e}"),
            }
            tokio::select! {
                () = stop.as_mut() => return None,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(REOPEN_MAX);
        }
    }

    /// Polls the link after ENETDOWN until it is up again, gone (or
    /// re-created under another index), or the runner is stopped.
    async fn wait_link_up<S: Future<Output = ()>>(
        &mut self,
        stop: &mut Pin<&mut S>,
        ifindex: u32,
    ) -> LinkWait {
        let mut delay = LINK_POLL_FIRST;
        let mut logged = false;
        loop {
            match self.rtnl.link(&self.link.name).await {
                Ok(Some(l)) if l.index == ifindex && l.up => {
                    if logged {
                        log::info!("dhcp: {}: link is up again", self.name());
                    }
                    return LinkWait::Up;
                }
                Ok(Some(l)) if l.index == ifindex => {
                    if !logged {
                        log::info!("dhcp: {}: link is down, waiting", self.name());
                        logged = true;
                    }
                }
                Ok(_) => {
                    log::info!("dhcp: {}: link went away", self.name());
                    return LinkWait::Gone;
                }
                Err(e) => log::debug!("dhcp: {}: {e}", self.name()),
            }
            tokio::select! {
                () = stop.as_mut() => return LinkWait::Stopped,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(LINK_POLL_MAX);
        }
    }

    async fn carry_out(&mut self, t: &mut Transport, client: &Client, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send { packet, dest } => {
                    let leased = self.applied.as_ref().map(|a| a.lease.address);
                    let source = source(leased, client.state(), dest);
                    match t.send(&packet, dest, source) {
                        Ok(()) => self.send_failing = false,
                        Err(e) if self.send_failing => log::debug!("{e}"),
                        Err(e) => {
                            log::warn!("{e}");
                            self.send_failing = true;
                        }
                    }
                }
                Action::Apply(lease) => self.apply(lease).await,
                Action::Expire(_) => self.drop_lease(t).await,
                Action::Ignored(why) => log::debug!("dhcp: {}: {why}", self.name()),
            }
        }
    }

    async fn apply(&mut self, lease: Lease) {
        let renewed = self
            .applied
            .as_ref()
            .is_some_and(|a| (a.lease.address, a.lease.prefix) == (lease.address, lease.prefix));
        self.configure(lease.clone()).await;
        let verb = if renewed { "renewed lease" } else { "lease" };
        log::info!("dhcp: {}: {verb} {}", self.name(), summary(&lease));
        let _ = self.events.send(DhcpEvent::Bound {
            link: self.link.name.clone(),
            lease,
        });
    }

    /// Puts the lease in force back after the link was down: the kernel
    /// flushed the routes through it (fib_disable_ip() on NETDEV_DOWN).
    async fn restore(&mut self) {
        if let Some(lease) = self.applied.as_ref().map(|a| a.lease.clone()) {
            self.configure(lease).await;
            log::info!("dhcp: {}: link is up, routes restored", self.name());
        }
    }

    /// Makes the link carry `lease`: address, MTU, routes; removes the
    /// routes of the previous application that this one no longer has.
    async fn configure(&mut self, lease: Lease) {
        let name = self.link.name.clone();
        let warn = |e: &dyn std::fmt::Display| log::warn!("dhcp: {name}: {e}");
        let addr = IpAddr::V4(lease.address);
        if let Err(e) = self.rtnl.add_address(&name, addr, lease.prefix).await {
            warn(&e);
        }
        let previous = self.applied.take();
        let mut mtu_before = previous.as_ref().and_then(|a| a.mtu_before);
        match lease.mtu.map(u32::from) {
            Some(m) => {
                mtu_before = mtu_before.or(self.mtu);
                match self.rtnl.set_mtu(&name, m).await {
                    Ok(()) => self.mtu = Some(m),
                    Err(e) => warn(&e),
                }
            }
            None => {
                if let Some(m) = mtu_before.take() {
                    self.put_back_mtu(m).await;
                }
            }
        }
        let routes = routes_for(&lease, self.link.ifindex, self.metric());
        for old in previous.iter().flat_map(|a| &a.routes) {
            if !routes.contains(old) {
                if let Err(e) = self.rtnl.del_route(old).await {
                    warn(&e);
                }
            }
        }
        for r in &routes {
            if let Err(e) = self.rtnl.add_route(r).await {
                warn(&e);
            }
        }
        self.applied = Some(Applied {
            lease,
            routes,
            mtu_before,
        });
    }

    async fn put_back_mtu(&mut self, m: u32) {
        match self.rtnl.set_mtu(&self.link.name, m).await {
            Ok(()) => self.mtu = Some(m),
            Err(e) => log::debug!("dhcp: {}: restore MTU: {e}", self.name()),
        }
    }

    /// Takes the lease in force off the link. Errors go to debug: the
    /// usual cause is that the link itself is gone, and with it all of it.
    async fn drop_lease(&mut self, t: &mut Transport) {
        t.forget_address();
        let Some(a) = self.applied.take() else {
            return;
        };
        let name = self.link.name.clone();
        for r in a.routes.iter().rev() {
            if let Err(e) = self.rtnl.del_route(r).await {
                log::debug!("dhcp: {name}: {e}");
            }
        }
        let addr = IpAddr::V4(a.lease.address);
        if let Err(e) = self.rtnl.del_address(&name, addr, a.lease.prefix).await {
            log::debug!("dhcp: {name}: {e}");
        }
        if let Some(m) = a.mtu_before {
            self.put_back_mtu(m).await;
        }
        log::info!(
            "dhcp: {name}: lost lease {}/{}",
            a.lease.address,
            a.lease.prefix
        );
        let _ = self.events.send(DhcpEvent::Lost { link: name });
    }
}

/// The IP source of a message (RFC 2131 4.1): 0.0.0.0 until a lease is
/// held; the leased address for renewing and rebinding, whose state the
/// client has entered by the time it asks to send.
fn source(leased: Option<Ipv4Addr>, state: StateKind, dest: Dest) -> Ipv4Addr {
    match (dest, state) {
        (Dest::Unicast(_), _) | (_, StateKind::Renewing | StateKind::Rebinding) => {
            leased.unwrap_or(Ipv4Addr::UNSPECIFIED)
        }
        _ => Ipv4Addr::UNSPECIFIED,
    }
}

fn in_subnet(net: Ipv4Addr, prefix: u8, a: Ipv4Addr) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(net) & mask == u32::from(a) & mask
}

/// The routes a lease asks for, in the order to add them. Option 121
/// replaces option 3 (RFC 3442 section 1: a client that gets both "MUST
/// ignore the Router option"; [`Lease`] has already dropped the routers).
pub fn routes_for(lease: &Lease, oif: u32, metric: u32) -> Vec<RouteSpec> {
    let v4 = IpAddr::V4;
    let spec = |dest: Option<(Ipv4Addr, u8)>, gateway: Option<Ipv4Addr>| RouteSpec {
        dest: dest.map(|(a, p)| (v4(a), p)),
        gateway: gateway.map(v4),
        source: Some(v4(lease.address)),
        metric: Some(metric),
        mtu: None,
        oif,
    };
    let mut via: Vec<(Option<(Ipv4Addr, u8)>, Ipv4Addr)> = Vec::new();
    let mut onlink: Vec<(Ipv4Addr, u8)> = Vec::new();
    for r in &lease.routes {
        let dest = (r.prefix > 0).then_some((r.destination, r.prefix));
        match (r.gateway.is_unspecified(), dest) {
            (true, Some(d)) => onlink.push(d),
            (true, None) => onlink.push((Ipv4Addr::UNSPECIFIED, 0)),
            (false, dest) => via.push((dest, r.gateway)),
        }
    }
    if lease.routes.is_empty() {
        if let Some(gw) = lease.routers.first() {
            via.push((None, *gw));
        }
    }
    // A gateway outside the leased subnet and every on-link route (a /32
    // lease, as some clouds hand out) needs an on-link host route first:
    // the kernel refuses a route via an unreachable gateway (ENETUNREACH).
    for (_, gw) in &via {
        let reachable = in_subnet(lease.address, lease.prefix, *gw)
            || onlink.iter().any(|(n, p)| in_subnet(*n, *p, *gw));
        if !reachable {
            onlink.push((*gw, 32));
        }
    }
    // On-link routes first, so the gateways they make reachable are there
    // when the routes via them go in.
    let mut out: Vec<RouteSpec> = onlink
        .into_iter()
        .map(|(n, p)| spec((p > 0).then_some((n, p)), None))
        .collect();
    out.extend(via.into_iter().map(|(d, gw)| spec(d, Some(gw))));
    out.dedup();
    out
}

/// The log line's body: "10.0.2.15/24 from 10.0.2.2, router 10.0.2.2, dns
/// 10.0.2.3, 86400 s".
pub fn summary(lease: &Lease) -> String {
    let router = lease.routers.first().copied().or_else(|| {
        lease
            .routes
            .iter()
            .find(|r| r.prefix == 0)
            .map(|r| r.gateway)
    });
    let router = router.map_or("no router".to_string(), |r| format!("router {r}"));
    let dns = match lease.dns.as_slice() {
        [] => "no dns".to_string(),
        d => format!(
            "dns {}",
            d.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        ),
    };
    let mut s = format!(
        "{}/{} from {}, {router}, {dns}",
        lease.address, lease.prefix, lease.server_id
    );
    if !lease.routes.is_empty() {
        s += &format!(", {} classless routes", lease.routes.len());
    }
    if let Some(m) = lease.mtu {
        s += &format!(", mtu {m}");
    }
    if lease.lease_time.as_secs() >= u64::from(u32::MAX) {
        s += ", infinite";
    } else {
        s += &format!(", {} s", lease.lease_time.as_secs());
    }
    s
}

/// A seed for the transaction ids (RFC 2131 4.1 wants them random, so
/// clients on one link do not collide): the MAC makes nodes differ, the
/// clocks make restarts differ. The wall clock alone is not enough, as it
/// may read 1970 at boot on machines without a battery-backed RTC.
fn seed(mac: [u8; 6]) -> u64 {
    use nix::time::{clock_gettime, ClockId};
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let boot = clock_gettime(ClockId::CLOCK_BOOTTIME).map_or(0, |t| {
        (t.tv_sec() as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(t.tv_nsec() as u64)
    });
    let mut m = [0u8; 8];
    m[2..].copy_from_slice(&mac);
    splitmix64(u64::from_be_bytes(m) ^ splitmix64(wall ^ boot.rotate_left(29)))
}

/// SplitMix64 (Steele, Lea, Flood 2014): spreads the inputs' few changing
/// bits over the whole word.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::dhcp::lease::Route;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn lease() -> Lease {
        Lease {
            address: ip("10.0.2.15"),
            prefix: 24,
            routers: vec![ip("10.0.2.2")],
            dns: vec![ip("10.0.2.3")],
            domain: None,
            hostname: None,
            broadcast: None,
            mtu: None,
            routes: Vec::new(),
            lease_time: Duration::from_secs(86400),
            t1: Duration::from_secs(43200),
            t2: Duration::from_secs(75600),
            server_id: ip("10.0.2.2"),
        }
    }

    fn route(d: &str, p: u8, g: &str) -> Route {
        Route {
            destination: ip(d),
            prefix: p,
            gateway: ip(g),
        }
    }

    /// Routes as (destination, gateway) strings.
    fn shown(routes: &[RouteSpec]) -> Vec<String> {
        routes
            .iter()
            .map(|r| {
                assert_eq!(r.metric, Some(77));
                assert_eq!(r.oif, 3);
                let d = r.dest.map_or("default".into(), |(a, p)| format!("{a}/{p}"));
                let g = r.gateway.map_or("link".into(), |g| g.to_string());
                format!("{d} via {g}")
            })
            .collect()
    }

    #[test]
    fn routes_table() {
        let mut cloud = lease();
        cloud.prefix = 32;
        cloud.routers = vec![ip("10.0.2.1")];
        let mut classless = lease();
        classless.routers.clear();
        classless.routes = vec![
            route("10.9.0.0", 16, "10.0.2.9"),
            route("0.0.0.0", 0, "172.16.0.1"),
            route("172.16.0.0", 30, "0.0.0.0"),
            route("192.168.7.0", 24, "192.168.99.1"),
        ];
        let mut none = lease();
        none.routers.clear();
        let cases: [(&str, Lease, &[&str]); 4] = [
            ("router in the subnet", lease(), &["default via 10.0.2.2"]),
            (
                "/32 lease",
                cloud,
                &["10.0.2.1/32 via link", "default via 10.0.2.1"],
            ),
            (
                "option 121: on-link first, host route to a far gateway",
                classless,
                &[
                    "172.16.0.0/30 via link",
                    "192.168.99.1/32 via link",
                    "10.9.0.0/16 via 10.0.2.9",
                    "default via 172.16.0.1",
                    "192.168.7.0/24 via 192.168.99.1",
                ],
            ),
            ("no router", none, &[]),
        ];
        for (name, l, want) in cases {
            let got = routes_for(&l, 3, 77);
            assert_eq!(shown(&got), want, "{name}");
            assert!(
                got.iter().all(|r| r.source == Some(IpAddr::V4(l.address))),
                "{name}"
            );
        }
    }

    #[test]
    fn summary_lines() {
        let mut two = lease();
        two.dns.push(ip("10.0.2.4"));
        two.mtu = Some(1400);
        let mut classless = lease();
        classless.routers.clear();
        classless.dns.clear();
        classless.routes = vec![route("0.0.0.0", 0, "10.0.2.1")];
        classless.lease_time = Duration::from_secs(u32::MAX.into());
        let cases = [
            (
                lease(),
                "10.0.2.15/24 from 10.0.2.2, router 10.0.2.2, dns 10.0.2.3, 86400 s",
            ),
            (
                two,
                "10.0.2.15/24 from 10.0.2.2, router 10.0.2.2, dns 10.0.2.3 10.0.2.4, mtu 1400, 86400 s",
            ),
            (
                classless,
                "10.0.2.15/24 from 10.0.2.2, router 10.0.2.1, no dns, 1 classless routes, infinite",
            ),
        ];
        for (l, want) in cases {
            assert_eq!(summary(&l), want);
        }
    }

    #[test]
    fn seeds_differ_by_mac_and_time() {
        let a = seed([2, 0, 0, 0, 0, 1]);
        let b = seed([2, 0, 0, 0, 0, 2]);
        assert_ne!(a, b);
        assert_ne!(seed([2, 0, 0, 0, 0, 1]), a, "the clock moved on");
        assert_ne!(splitmix64(0), splitmix64(1));
    }

    #[test]
    fn source_addresses() {
        let zero = Ipv4Addr::UNSPECIFIED;
        let leased = Some(ip("10.0.2.15"));
        let server = Dest::Unicast(ip("10.0.2.2"));
        let cases = [
            (None, StateKind::Selecting, Dest::Broadcast, zero),
            (None, StateKind::Requesting, Dest::Broadcast, zero),
            (
                leased,
                StateKind::Rebinding,
                Dest::Broadcast,
                ip("10.0.2.15"),
            ),
            (leased, StateKind::Renewing, server, ip("10.0.2.15")),
            // RELEASE: the client has stopped, the lease is still applied.
            (leased, StateKind::Stopped, server, ip("10.0.2.15")),
            // DECLINE goes out from 0.0.0.0 before the lease is dropped.
            (leased, StateKind::Init, Dest::Broadcast, zero),
        ];
        for (leased, state, dest, want) in cases {
            assert_eq!(source(leased, state, dest), want, "{state:?} {dest:?}");
        }
    }
}
