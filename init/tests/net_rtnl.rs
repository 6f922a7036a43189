//! Host integration: Keel's rtnetlink operations against the real kernel,
//! each case in a network namespace of its own, checked with `ip -j`.
//! Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for setns).
//!
//! The links are veth pairs: the host kernels these tests run on have veth
//! and bridge but no dummy, 8021q or bonding drivers, so VLANs and bonds
//! are tested under QEMU with the image's own kernel (tests/).

mod common;

use std::net::IpAddr;

use common::{block_on, Netns};
use keel::net::rtnl::{RouteSpec, Rtnl};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn addresses_routes_and_mtu_are_applied_idempotently() {
    let ns = Netns::new("addr");
    ns.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d0p"]);
    ns.enter();
    block_on(async {
        let r = Rtnl::connect().unwrap();
        for _ in 0..2 {
            r.set_mtu("d0", 1400).await.unwrap();
            r.set_up("d0").await.unwrap();
            r.add_address("d0", ip("10.9.0.2"), 24).await.unwrap();
            r.add_address("d0", ip("fd00:9::2"), 64).await.unwrap();
            let oif = r.link("d0").await.unwrap().unwrap().index;
            let routes = [
                RouteSpec {
                    dest: Some((ip("10.10.0.0"), 16)),
                    gateway: Some(ip("10.9.0.1")),
                    source: Some(ip("10.9.0.2")),
                    metric: Some(100),
                    mtu: Some(1300),
                    oif,
                },
                RouteSpec {
                    dest: None,
                    gateway: Some(ip("10.9.0.1")),
                    source: None,
                    metric: Some(50),
                    mtu: None,
                    oif,
                },
            ];
            for route in &routes {
                r.add_route(route).await.unwrap();
            }
        }
        let addrs = r.addresses("d0").await.unwrap();
        assert!(addrs.contains(&(ip("10.9.0.2"), 24)), "{addrs:?}");
    });

    let link = &ns.ip_json(&["link", "show", "d0"])[0];
    assert_eq!(link["mtu"], 1400);
    assert!(link["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    let addr = ns.ip_json(&["addr", "show", "d0"]);
    let infos: Vec<(String, u64)> = addr[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["local"].as_str().unwrap().to_string(),
                a["prefixlen"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        infos.iter().filter(|(a, _)| a == "10.9.0.2").count(),
        1,
        "exactly one 10.9.0.2 after two applies: {infos:?}"
    );
    assert!(infos.contains(&("fd00:9::2".to_string(), 64)), "{infos:?}");

    let routes = ns.ip_json(&["route", "show"]);
    let routes = routes.as_array().unwrap();
    let default: Vec<_> = routes.iter().filter(|r| r["dst"] == "default").collect();
    assert_eq!(default.len(), 1, "{routes:?}");
    assert_eq!(default[0]["gateway"], "10.9.0.1");
    assert_eq!(default[0]["metric"], 50);
    let net: Vec<_> = routes
        .iter()
        .filter(|r| r["dst"] == "10.10.0.0/16")
        .collect();
    assert_eq!(net.len(), 1, "{routes:?}");
    assert_eq!(net[0]["metric"], 100);
    assert_eq!(net[0]["prefsrc"], "10.9.0.2");
    let text = ns.ip(&["route", "show", "10.10.0.0/16"]);
    assert!(text.contains("mtu 1300"), "{text}");
}

#[test]
fn rename_while_down_and_alternative_names() {
    let ns = Netns::new("rename");
    ns.ip(&[
        "link", "add", "eth7", "type", "veth", "peer", "name", "eth7p",
    ]);
    ns.enter();
    block_on(async {
        let r = Rtnl::connect().unwrap();
        r.set_down("eth7").await.unwrap();
        r.rename("eth7", "enp0s7").await.unwrap();
        r.add_alt_names("enp0s7", &["eth7", "ens7"]).await.unwrap();
        // Again: nothing to add, no error.
        r.add_alt_names("enp0s7", &["eth7", "ens7"]).await.unwrap();
        // Config may name the link by an altname.
        assert!(r.link("eth7").await.unwrap().is_some());
        assert!(r.link("ens7").await.unwrap().is_some());
    });
    let link = &ns.ip_json(&["link", "show", "enp0s7"])[0];
    let alt: Vec<&str> = link["altnames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(alt, vec!["eth7", "ens7"]);
}
