//! Applying a link plan over rtnetlink, as root, in a network namespace the
//! test creates and removes: veth links (this host kernel has no dummy,
//! 8021q or bonding driver; those are exercised under QEMU with the image's
//! kernel, tests/tests/network.rs).

mod common;

use std::net::IpAddr;
use std::path::Path;

use common::{block_on, Netns};
use keel::net::apply::apply;
use keel::net::plan::{LinkPlan, Plan, RoutePlan};
use keel::net::rtnl::Rtnl;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn route(dest: Option<(&str, u8)>, gw: &str, metric: u32) -> RoutePlan {
    RoutePlan {
        dest: dest.map(|(a, n)| (ip(a), n)),
        gateway: Some(ip(gw)),
        source: None,
        metric,
        mtu: None,
    }
}

fn link(name: &str) -> LinkPlan {
    LinkPlan::new(name, "test".into())
}

#[test]
fn plan_is_applied_and_reapplying_changes_nothing() {
    let ns = Netns::new("apply");
    ns.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
    let plan = Plan {
        links: vec![
            LinkPlan {
                mtu: Some(1400),
                addresses: vec![
                    (ip("10.9.0.2"), 24),
                    (ip("10.19.0.2"), 16),
                    (ip("fd00:9::2"), 64),
                ],
                routes: vec![
                    route(None, "10.9.0.1", 1024),
                    route(Some(("10.10.0.0", 16)), "10.9.0.1", 50),
                ],
                ..link("va")
            },
            LinkPlan {
                addresses: vec![(ip("10.9.0.1"), 24)],
                ..link("vb")
            },
            // A link that does not exist: an error naming it, the others
            // are still configured.
            LinkPlan {
                addresses: vec![(ip("10.99.0.1"), 24)],
                ..link("nosuch0")
            },
        ],
        ..Default::default()
    };
    let (first, second) = std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter();
            block_on(async {
                let rtnl = Rtnl::connect().unwrap();
                let first = apply(&rtnl, &plan, Path::new("/sys")).await;
                let second = apply(&rtnl, &plan, Path::new("/sys")).await;
                (first, second)
            })
        })
        .join()
        .unwrap()
    });
    assert_eq!(
        first.changes,
        [
            "va: MTU 1400",
            "va: up",
            "va: address 10.9.0.2/24",
            "va: address 10.19.0.2/16",
            "va: address fd00:9::2/64",
            "vb: up",
            "vb: address 10.9.0.1/24",
        ]
    );
    let errors: Vec<String> = first.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors, ["nosuch0 (test): link nosuch0 does not exist"]);
    assert!(second.changes.is_empty(), "{:?}", second.changes);

    let links = ns.ip_json(&["link", "show", "va"]);
    assert_eq!(links[0]["mtu"], 1400);
    assert!(links[0]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "UP"));
    let addrs = ns.ip_json(&["addr", "show", "va"]);
    let mut got: Vec<String> = addrs[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect();
    got.sort();
    assert_eq!(got, ["10.19.0.2/16", "10.9.0.2/24", "fd00:9::2/64"]);
    let routes = ns.ip_json(&["-4", "route", "show", "dev", "va"]);
    let mut got: Vec<String> = routes
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["gateway"].is_string())
        .map(|r| {
            format!(
                "{} via {} metric {}",
                r["dst"].as_str().unwrap(),
                r["gateway"].as_str().unwrap(),
                r["metric"]
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "10.10.0.0/16 via 10.9.0.1 metric 50",
            "default via 10.9.0.1 metric 1024"
        ]
    );
}
