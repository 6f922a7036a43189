//! Link, address and route operations over rtnetlink (the `rtnetlink`
//! crate), each idempotent: applying the same config twice changes nothing,
//! and "already exists" from the kernel (EEXIST, rtnetlink(7)) is success.
//!
//! The handle talks to the network namespace of the thread that opened the
//! socket, which is what lets tests run each case in a namespace of its own.

use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::link::{
    BondLacpRate, BondMode, BondXmitHashPolicy, InfoBond, InfoData, LinkAttribute, LinkFlags,
    LinkInfo, LinkMessage, VlanProtocol,
};
use netlink_packet_route::route::{RouteAttribute, RouteMessage, RouteMetric};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, LinkBond, LinkDummy, LinkUnspec, LinkVlan, RouteMessageBuilder};

/// errno values rtnetlink errors carry (negated in the netlink message).
const EEXIST: i32 = 17;
const ENODEV: i32 = 19;
const EBUSY: i32 = 16;

#[derive(Debug, thiserror::Error)]
pub enum RtnlError {
    #[error("cannot open a netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    #[error("link {link}: {what}: {source}")]
    Link {
        link: String,
        what: &'static str,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("link {0} does not exist")]
    NoSuchLink(String),
    #[error("route {route}: {source}")]
    Route {
        route: String,
        #[source]
        source: rtnetlink::Error,
    },
}

/// What Keel needs to know of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `IFLA_INFO_KIND` (`bond`, `vlan`, `veth`, `dummy`, ...); `None` for
    /// physical NICs and loopback.
    pub kind: Option<String>,
    pub up: bool,
    /// IFF_LOWER_UP: the link has carrier (netdevice(7)); a VIP is given
    /// up on a link that loses it.
    pub carrier: bool,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
    /// Index of the bond (or bridge) this link is enslaved to.
    pub controller: Option<u32>,
    pub alt_names: Vec<String>,
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

fn is_exists(e: &rtnetlink::Error) -> bool {
    errno(e) == Some(EEXIST)
}

/// The prefix length of a single-host address: 32 for IPv4, 128 for IPv6.
pub fn host_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn link_from(msg: &LinkMessage) -> Link {
    let mut l = Link {
        index: msg.header.index,
        name: String::new(),
        kind: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        carrier: msg.header.flags.contains(LinkFlags::LowerUp),
        mtu: None,
        mac: None,
        controller: None,
        alt_names: Vec::new(),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Mtu(m) => l.mtu = Some(*m),
            LinkAttribute::Address(a) if a.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(a);
                l.mac = Some(mac);
            }
            LinkAttribute::Controller(c) => l.controller = Some(*c),
            LinkAttribute::PropList(props) => {
                for p in props {
                    if let netlink_packet_route::link::Prop::AltIfName(n) = p {
                        l.alt_names.push(n.clone());
                    }
                }
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        l.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    l
}

/// A connection to the kernel's routing netlink.
#[derive(Clone)]
pub struct Rtnl {
    handle: Handle,
}

/// Bond settings Keel applies (the rest of Talos's bond options are
/// accepted by the config and applied later).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BondSettings {
    pub mode: Option<BondMode>,
    pub miimon: Option<u32>,
    pub updelay: Option<u32>,
    pub downdelay: Option<u32>,
    pub lacp_rate: Option<BondLacpRate>,
    pub xmit_hash_policy: Option<BondXmitHashPolicy>,
}

/// A route to ensure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination network; `None` is the default route.
    pub dest: Option<(IpAddr, u8)>,
    pub gateway: Option<IpAddr>,
    pub source: Option<IpAddr>,
    pub metric: Option<u32>,
    pub mtu: Option<u32>,
    pub oif: u32,
}

impl std::fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.dest {
            Some((ip, len)) => write!(f, "{ip}/{len}")?,
            None => write!(f, "default")?,
        }
        if let Some(g) = self.gateway {
            write!(f, " via {g}")?;
        }
        if let Some(s) = self.source {
            write!(f, " src {s}")?;
        }
        if let Some(m) = self.metric {
            write!(f, " metric {m}")?;
        }
        if let Some(m) = self.mtu {
            write!(f, " mtu {m}")?;
        }
        write!(f, " dev #{}", self.oif)
    }
}

impl Rtnl {
    /// Opens a socket in the calling thread's network namespace; the
    /// connection task runs on the current tokio runtime.
    pub fn connect() -> Result<Rtnl, RtnlError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(RtnlError::Connect)?;
        tokio::spawn(conn);
        Ok(Rtnl { handle })
    }

    /// Every link. A dump that raced with a change (a link renamed or
    /// created meanwhile) ends in EBUSY (netlink's NLM_F_DUMP_INTR,
    /// see netlink(7) and rtnl_dump_ifinfo() in net/core/rtnetlink.c) and
    /// is simply retried.
    pub async fn links(&self) -> Result<Vec<Link>, RtnlError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.links_once().await {
                Err(source) if errno(&source) == Some(EBUSY) && attempt < 5 => continue,
                Err(source) => {
                    return Err(RtnlError::Link {
                        link: "*".into(),
                        what: "list links",
                        source,
                    })
                }
                Ok(out) => return Ok(out),
            }
        }
    }

    async fn links_once(&self) -> Result<Vec<Link>, rtnetlink::Error> {
        let mut out = Vec::new();
        let mut s = self.handle.link().get().execute();
        while let Some(msg) = s.try_next().await? {
            out.push(link_from(&msg));
        }
        Ok(out)
    }

    /// The link called `name` (its name or one of its altnames).
    pub async fn link(&self, name: &str) -> Result<Option<Link>, RtnlError> {
        Ok(self
            .links()
            .await?
            .into_iter()
            .find(|l| l.name == name || l.alt_names.iter().any(|a| a == name)))
    }

    async fn need(&self, name: &str) -> Result<Link, RtnlError> {
        self.link(name)
            .await?
            .ok_or_else(|| RtnlError::NoSuchLink(name.to_string()))
    }

    async fn set(&self, link: &str, what: &'static str, msg: LinkMessage) -> Result<(), RtnlError> {
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|source| RtnlError::Link {
                link: link.to_string(),
                what,
                source,
            })
    }

    pub async fn set_up(&self, name: &str) -> Result<(), RtnlError> {
        self.set_link_up(&self.need(name).await?).await
    }

    /// [`Rtnl::set_up`] for a link already looked up (saves a dump).
    pub async fn set_link_up(&self, l: &Link) -> Result<(), RtnlError> {
        if l.up {
            return Ok(());
        }
        self.set(
            &l.name,
            "set up",
            LinkUnspec::new_with_index(l.index).up().build(),
        )
        .await
    }

    pub async fn set_down(&self, name: &str) -> Result<(), RtnlError> {
        let l = self.need(name).await?;
        if !l.up {
            return Ok(());
        }
        self.set(
            name,
            "set down",
            LinkUnspec::new_with_index(l.index).down().build(),
        )
        .await
    }

    pub async fn set_mtu(&self, name: &str, mtu: u32) -> Result<(), RtnlError> {
        self.set_link_mtu(&self.need(name).await?, mtu).await
    }

    /// [`Rtnl::set_mtu`] for a link already looked up.
    pub async fn set_link_mtu(&self, l: &Link, mtu: u32) -> Result<(), RtnlError> {
        if l.mtu == Some(mtu) {
            return Ok(());
        }
        self.set(
            &l.name,
            "set MTU",
            LinkUnspec::new_with_index(l.index).mtu(mtu).build(),
        )
        .await
    }

    /// Renames a link. The kernel refuses to rename a link that is up
    /// (EBUSY, dev_change_name() in net/core/dev.c), so callers bring it
    /// down first.
    pub async fn rename(&self, name: &str, new_name: &str) -> Result<(), RtnlError> {
        let l = self.need(name).await?;
        self.set(
            name,
            "rename",
            LinkUnspec::new_with_index(l.index).name(new_name).build(),
        )
        .await
    }

    /// Adds alternative names (IFLA_ALT_IFNAME), skipping those it has.
    pub async fn add_alt_names(&self, name: &str, alt: &[&str]) -> Result<(), RtnlError> {
        let l = self.need(name).await?;
        let missing: Vec<&str> = alt
            .iter()
            .copied()
            .filter(|a| *a != l.name && !l.alt_names.iter().any(|x| x == a))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        self.handle
            .link()
            .property_add(l.index)
            .alt_ifname(&missing)
            .execute()
            .await
            .map_err(|source| RtnlError::Link {
                link: name.to_string(),
                what: "add alternative names",
                source,
            })
    }

    async fn add_link(
        &self,
        name: &str,
        what: &'static str,
        msg: LinkMessage,
    ) -> Result<(), RtnlError> {
        match self.handle.link().add(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_exists(&e) => Ok(()),
            Err(source) => Err(RtnlError::Link {
                link: name.to_string(),
                what,
                source,
            }),
        }
    }

    pub async fn ensure_dummy(&self, name: &str) -> Result<(), RtnlError> {
        self.add_link(name, "create dummy", LinkDummy::new(name).build())
            .await
    }

    /// Creates a VLAN link: 802.1Q, or 802.1ad (QinQ) with `qinq`.
    pub async fn ensure_vlan(
        &self,
        name: &str,
        parent: &str,
        vid: u16,
        qinq: bool,
    ) -> Result<(), RtnlError> {
        let p = self.need(parent).await?;
        let mut vlan = LinkVlan::new(name, p.index, vid);
        if qinq {
            vlan = vlan.protocol(VlanProtocol::Ieee8021Ad);
        }
        self.add_link(name, "create VLAN", vlan.build()).await
    }

    /// Sets a link's MAC address (`hardwareAddr` of a link Keel creates).
    pub async fn set_link_mac(&self, l: &Link, mac: [u8; 6]) -> Result<(), RtnlError> {
        self.set(
            &l.name,
            "set MAC address",
            LinkUnspec::new_with_index(l.index)
                .address(mac.to_vec())
                .build(),
        )
        .await
    }

    /// [`Rtnl::set_down`] for a link already looked up.
    pub async fn set_link_down(&self, l: &Link) -> Result<(), RtnlError> {
        self.set(
            &l.name,
            "set down",
            LinkUnspec::new_with_index(l.index).down().build(),
        )
        .await
    }

    /// Creates the bond (or updates it while it is down: most bond options
    /// can only change without slaves, Documentation/networking/bonding.rst).
    pub async fn ensure_bond(&self, name: &str, s: &BondSettings) -> Result<(), RtnlError> {
        let mut info = Vec::new();
        if let Some(m) = s.mode {
            info.push(InfoBond::Mode(m));
        }
        if let Some(v) = s.miimon {
            info.push(InfoBond::MiiMon(v));
        }
        if let Some(v) = s.updelay {
            info.push(InfoBond::UpDelay(v));
        }
        if let Some(v) = s.downdelay {
            info.push(InfoBond::DownDelay(v));
        }
        if let Some(r) = s.lacp_rate {
            info.push(InfoBond::AdLacpRate(r));
        }
        if let Some(p) = s.xmit_hash_policy {
            info.push(InfoBond::XmitHashPolicy(p));
        }
        let existing = self.link(name).await?;
        let msg = LinkBond::new(name)
            .set_info_data(InfoData::Bond(info))
            .build();
        match existing {
            None => self.add_link(name, "create bond", msg).await,
            Some(l) if l.kind.as_deref() == Some("bond") => Ok(()),
            Some(_) => Err(RtnlError::Link {
                link: name.to_string(),
                what: "create bond",
                source: rtnetlink::Error::RequestFailed,
            }),
        }
    }

    /// Enslaves `member` to `bond`. The kernel wants bond members down
    /// (bond_enslave() in drivers/net/bonding/bond_main.c).
    pub async fn enslave(&self, member: &str, bond: &str) -> Result<(), RtnlError> {
        let b = self.need(bond).await?;
        let m = self.need(member).await?;
        if m.controller == Some(b.index) {
            return Ok(());
        }
        if m.up {
            self.set_down(member).await?;
        }
        self.set(
            member,
            "enslave",
            LinkUnspec::new_with_index(m.index)
                .controller(b.index)
                .build(),
        )
        .await
    }

    /// Addresses on a link as (address, prefix length).
    pub async fn addresses(&self, name: &str) -> Result<Vec<(IpAddr, u8)>, RtnlError> {
        self.link_addresses(&self.need(name).await?).await
    }

    /// Every address on the node's links but loopback's, in link order
    /// (what certificates name and what a node is reached at).
    pub async fn node_addresses(&self) -> Vec<IpAddr> {
        self.node_networks()
            .await
            .into_iter()
            .map(|(a, _)| a)
            .collect()
    }

    /// [`Rtnl::node_addresses`] with their prefix lengths.
    pub async fn node_networks(&self) -> Vec<(IpAddr, u8)> {
        let mut out = Vec::new();
        for l in self.links().await.unwrap_or_default() {
            if l.name == "lo" {
                continue;
            }
            if let Ok(addrs) = self.link_addresses(&l).await {
                out.extend(addrs);
            }
        }
        out
    }

    /// [`Rtnl::addresses`] for a link already looked up.
    pub async fn link_addresses(&self, l: &Link) -> Result<Vec<(IpAddr, u8)>, RtnlError> {
        let name = &l.name;
        let mut out = Vec::new();
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(l.index)
            .execute();
        loop {
            match s.try_next().await {
                Ok(Some(msg)) => {
                    for a in &msg.attributes {
                        if let netlink_packet_route::address::AddressAttribute::Address(ip) = a {
                            out.push((*ip, msg.header.prefix_len));
                        }
                    }
                }
                Ok(None) => break,
                Err(source) => {
                    return Err(RtnlError::Link {
                        link: name.to_string(),
                        what: "list addresses",
                        source,
                    })
                }
            }
        }
        Ok(out)
    }

    /// Adds an address; one that is already there is success.
    pub async fn add_address(&self, name: &str, ip: IpAddr, prefix: u8) -> Result<(), RtnlError> {
        self.add_link_address(&self.need(name).await?, ip, prefix)
            .await
    }

    /// [`Rtnl::add_address`] for a link already looked up.
    pub async fn add_link_address(
        &self,
        l: &Link,
        ip: IpAddr,
        prefix: u8,
    ) -> Result<(), RtnlError> {
        self.add_link_address_with(l, ip, prefix, None).await
    }

    /// [`Rtnl::add_link_address`] with the metric of the prefix route the
    /// kernel adds for it (IFA_RT_PRIORITY, rtnetlink(7); Talos's
    /// `routePriority`).
    pub async fn add_link_address_with(
        &self,
        l: &Link,
        ip: IpAddr,
        prefix: u8,
        priority: Option<u32>,
    ) -> Result<(), RtnlError> {
        use netlink_packet_route::address::AddressAttribute;
        let mut req = self.handle.address().add(l.index, ip, prefix);
        if let Some(p) = priority {
            req.message_mut()
                .attributes
                .push(AddressAttribute::RoutePriority(p));
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_exists(&e) => Ok(()),
            Err(source) => Err(RtnlError::Link {
                link: l.name.clone(),
                what: "add address",
                source,
            }),
        }
    }

    /// Adds a host address (/32 or /128, scope global) for a VIP. IPv6
    /// gets IFA_F_NODAD: duplicate address detection would keep it
    /// tentative (unusable) for a second or more (ipv6(7), RFC 4862 5.4),
    /// and the election already guarantees a single owner. It is also
    /// added deprecated (preferred lifetime 0, valid forever): it still
    /// receives, but source address selection avoids it (RFC 6724 rule
    /// 3), so connections this node opens to peers in the same /64 do not
    /// come from the VIP and break when it moves.
    pub async fn add_host_address(&self, l: &Link, ip: IpAddr) -> Result<(), RtnlError> {
        use netlink_packet_route::address::{AddressAttribute, AddressFlags, CacheInfo};
        let prefix = host_prefix(ip);
        let mut req = self.handle.address().add(l.index, ip, prefix);
        if ip.is_ipv6() {
            let attrs = &mut req.message_mut().attributes;
            attrs.push(AddressAttribute::Flags(AddressFlags::Nodad));
            let mut lifetimes = CacheInfo::default();
            lifetimes.ifa_preferred = 0;
            lifetimes.ifa_valid = u32::MAX; // INFINITY_LIFE_TIME
            attrs.push(AddressAttribute::CacheInfo(lifetimes));
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_exists(&e) => Ok(()),
            Err(source) => Err(RtnlError::Link {
                link: l.name.clone(),
                what: "add address",
                source,
            }),
        }
    }

    /// Removes an address; one that is not there is success.
    pub async fn del_address(&self, name: &str, ip: IpAddr, prefix: u8) -> Result<(), RtnlError> {
        let l = self.need(name).await?;
        self.del_address_at(l.index, name, ip, prefix).await
    }

    /// [`Rtnl::del_address`] by link index (`name` is for errors only):
    /// the index stays the same when a link is renamed.
    pub async fn del_address_at(
        &self,
        index: u32,
        name: &str,
        ip: IpAddr,
        prefix: u8,
    ) -> Result<(), RtnlError> {
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(ip)
            .set_prefix_length_filter(prefix)
            .execute();
        while let Some(msg) = s.try_next().await.map_err(|source| RtnlError::Link {
            link: name.to_string(),
            what: "find address",
            source,
        })? {
            match self.handle.address().del(msg).execute().await {
                Ok(()) => {}
                Err(e) if errno(&e) == Some(99) || errno(&e) == Some(ENODEV) => {}
                Err(source) => {
                    return Err(RtnlError::Link {
                        link: name.to_string(),
                        what: "delete address",
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// The indexes of every link that has `ip` (any prefix), from one dump
    /// of all addresses.
    pub async fn links_with_address(&self, ip: IpAddr) -> Result<Vec<u32>, RtnlError> {
        let mut out = Vec::new();
        let mut s = self.handle.address().get().set_address_filter(ip).execute();
        loop {
            match s.try_next().await {
                Ok(Some(msg)) => {
                    if !out.contains(&msg.header.index) {
                        out.push(msg.header.index);
                    }
                }
                Ok(None) => return Ok(out),
                Err(source) => {
                    return Err(RtnlError::Link {
                        link: "*".to_string(),
                        what: "list addresses",
                        source,
                    })
                }
            }
        }
    }

    /// Adds a route; one that is already there is success.
    pub async fn add_route(&self, r: &RouteSpec) -> Result<(), RtnlError> {
        let msg = route_message(r, true);
        debug_assert!(matches!(
            msg.header.address_family,
            AddressFamily::Inet | AddressFamily::Inet6
        ));
        match self.handle.route().add(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_exists(&e) => Ok(()),
            Err(source) => Err(RtnlError::Route {
                route: r.to_string(),
                source,
            }),
        }
    }

    /// Removes a route that [`Rtnl::add_route`] added, identified by
    /// destination, gateway, metric and output link (the keys the kernel
    /// matches in fib_table_delete()); one that is not there (ESRCH, e.g.
    /// removed with its link or its source address) is success.
    pub async fn del_route(&self, r: &RouteSpec) -> Result<(), RtnlError> {
        const ESRCH: i32 = 3;
        // Matched by destination, gateway, metric and link only.
        let msg = route_message(r, false);
        match self.handle.route().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(ESRCH) || errno(&e) == Some(ENODEV) => Ok(()),
            Err(source) => Err(RtnlError::Route {
                route: r.to_string(),
                source,
            }),
        }
    }
}

/// The netlink message for `r`. `full` adds the preferred source and the
/// route MTU (for adding; a delete matches without them).
fn route_message(r: &RouteSpec, full: bool) -> RouteMessage {
    let v6 = matches!(r.dest.map(|d| d.0), Some(IpAddr::V6(_)))
        || matches!(r.gateway, Some(IpAddr::V6(_)));
    let mut msg = if v6 {
        let mut b = RouteMessageBuilder::<std::net::Ipv6Addr>::new().output_interface(r.oif);
        if let Some((IpAddr::V6(d), len)) = r.dest {
            b = b.destination_prefix(d, len);
        }
        if let Some(IpAddr::V6(g)) = r.gateway {
            b = b.gateway(g);
        }
        if let (Some(IpAddr::V6(s)), true) = (r.source, full) {
            b = b.pref_source(s);
        }
        if let Some(m) = r.metric {
            b = b.priority(m);
        }
        b.build()
    } else {
        let mut b = RouteMessageBuilder::<std::net::Ipv4Addr>::new().output_interface(r.oif);
        if let Some((IpAddr::V4(d), len)) = r.dest {
            b = b.destination_prefix(d, len);
        }
        if let Some(IpAddr::V4(g)) = r.gateway {
            b = b.gateway(g);
        }
        if let (Some(IpAddr::V4(s)), true) = (r.source, full) {
            b = b.pref_source(s);
        }
        if let Some(m) = r.metric {
            b = b.priority(m);
        }
        b.build()
    };
    if let (Some(mtu), true) = (r.mtu, full) {
        msg.attributes
            .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
    }
    msg
}
