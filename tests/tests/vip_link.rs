//! Host (root): the VIP's link side (`keel::vip::ops::RtnlLink`) on real
//! rtnetlink, in a network namespace this test creates with a veth pair.
//! What the term looks up before its campaign (`prepare`) is used by the
//! win, and goes stale — the term ends as for a link down — when the link
//! is recreated under the same name.

use std::net::IpAddr;
use std::process::Command;

use keel::net::rtnl::Rtnl;
use keel::vip::ops::{LinkOps, RtnlLink};
use keel_tests::vipnet::{enter_netns, sh};

/// Deletes the namespace however the test ends.
struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip_in(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "ip {args:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `vip0`, one end of a veth pair with both ends up (carrier).
fn veth(ns: &str) {
    sh(&[
        "ip", "-n", ns, "link", "add", "vip0", "type", "veth", "peer", "name", "vip0p",
    ]);
    sh(&["ip", "-n", ns, "link", "set", "vip0p", "up"]);
    sh(&["ip", "-n", ns, "link", "set", "vip0", "up"]);
}

#[test]
fn prepared_link_is_used_and_goes_stale_when_recreated() {
    let ns = Ns(format!("keel-viplink-{}", std::process::id()));
    sh(&["ip", "netns", "add", &ns.0]);
    sh(&["ip", "-n", &ns.0, "link", "set", "lo", "up"]);
    veth(&ns.0);
    let name = ns.0.clone();
    let vip: IpAddr = "10.9.9.9".parse().unwrap();
    std::thread::spawn(move || {
        enter_netns(&name);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let link = RtnlLink::new(Rtnl::connect().unwrap());
            link.prepare("vip0").await;
            assert_eq!(link.ready("vip0").await, Ok(true), "prepared");
            // The kernel is quieted on the link before any win.
            let ignore = std::fs::read_to_string("/proc/sys/net/ipv4/conf/vip0/arp_ignore");
            assert_eq!(ignore.unwrap().trim(), "1", "arp_ignore set by prepare");

            sh(&["ip", "-n", &name, "link", "del", "vip0"]);
            veth(&name);
            assert_eq!(link.ready("vip0").await, Ok(false), "recreated: stale");
            assert_eq!(link.ready("vip0").await, Ok(true), "forgotten, ready again");

            // A win after a fresh prepare: the address on lo, by lo's index.
            link.prepare("vip0").await;
            let index = link.add("vip0", vip).await.expect("added");
            assert!(
                ip_in(&name, &["-4", "addr", "show", "dev", "lo"]).contains("10.9.9.9/32"),
                "on lo"
            );
            link.announce(vip).expect("announced on the prepared link");
            assert_eq!(link.holders(vip).await, Ok(vec![index]));
            link.remove(index, vip).await.expect("removed");
            assert_eq!(link.holders(vip).await, Ok(vec![]));

            // Nothing prepared for this name: add looks it up and says
            // what is missing.
            let err = link.add("vip1", vip).await.unwrap_err();
            assert!(err.0.contains("link vip1 does not exist"), "{err}");
        });
    })
    .join()
    .expect("the namespace thread");
}
