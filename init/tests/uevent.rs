//! Host integration: kernel uevents through Keel's NETLINK_KOBJECT_UEVENT
//! socket. Needs root (CAP_SYS_ADMIN for setns, CAP_NET_ADMIN for the
//! links and SO_RCVBUFFORCE).
//!
//! A net device's uevents reach only uevent sockets in the device's
//! network namespace (`kobject_uevent_net_broadcast()`), so the test thread
//! enters a fresh namespace first and opens the socket there: it then sees
//! the links it creates and none of the host's.

mod common;

use std::time::Duration;

use common::{block_on, Netns};
use keel::uevent::{Uevent, UeventError, UeventSocket};

/// Reads uevents until one for `name` with `action` arrives.
async fn wait_for(sock: &UeventSocket, action: &str, name: &str) -> Uevent {
    loop {
        match sock.recv().await {
            Ok(ev) if ev.action == action && ev.interface() == Some(name) => return ev,
            Ok(_) => {}
            // Lost events are no failure here: the wanted one may still come.
            Err(UeventError::Overflow) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn veth_add_and_remove_arrive_in_the_links_namespace() {
    let ns = Netns::new("uevent");
    ns.enter();
    block_on(async {
        let sock = UeventSocket::open().unwrap();
        ns.ip(&["link", "add", "ue0", "type", "veth", "peer", "name", "ue0p"]);
        let ifindex: u32 = ns.ip_json(&["link", "show", "ue0"])[0]["ifindex"]
            .as_u64()
            .unwrap()
            .try_into()
            .unwrap();

        let add = tokio::time::timeout(Duration::from_secs(5), wait_for(&sock, "add", "ue0"))
            .await
            .expect("no add uevent for ue0 within 5 s");
        assert_eq!(add.subsystem.as_deref(), Some("net"));
        assert_eq!(add.devpath, "/devices/virtual/net/ue0");
        assert_eq!(add.ifindex(), Some(ifindex));
        assert!(add.seqnum().is_some(), "{add:?}");
        assert_eq!(add.get("ACTION"), Some("add"));

        ns.ip(&["link", "del", "ue0"]);
        let remove = tokio::time::timeout(Duration::from_secs(5), wait_for(&sock, "remove", "ue0"))
            .await
            .expect("no remove uevent for ue0 within 5 s");
        assert_eq!(remove.subsystem.as_deref(), Some("net"));
        assert!(remove.seqnum() > add.seqnum(), "{add:?} then {remove:?}");
    });
}

#[test]
fn links_of_another_namespace_are_not_seen() {
    let here = Netns::new("uevent-here");
    let there = Netns::new("uevent-there");
    here.enter();
    block_on(async {
        let sock = UeventSocket::open().unwrap();
        there.ip(&["link", "add", "uf0", "type", "veth", "peer", "name", "uf0p"]);
        here.ip(&["link", "add", "ug0", "type", "veth", "peer", "name", "ug0p"]);
        // Both adds were raised before this reads anything, the other
        // namespace's first; so once ug0's arrives, uf0's would have too.
        let seen = tokio::time::timeout(Duration::from_secs(5), async {
            let mut names = Vec::new();
            loop {
                let ev = sock.recv().await.unwrap();
                if let Some(i) = ev.interface() {
                    names.push(i.to_owned());
                }
                if ev.interface() == Some("ug0") {
                    return names;
                }
            }
        })
        .await
        .expect("no uevent for ug0 within 5 s");
        assert!(!seen.iter().any(|n| n.starts_with("uf0")), "{seen:?}");
    });
}
