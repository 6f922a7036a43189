//! Host integration: the permanent MAC through SIOCETHTOOL against the
//! real kernel, in a network namespace of its own. Needs root
//! (CAP_NET_ADMIN, CAP_SYS_ADMIN for setns).
//!
//! The host kernels these tests run on have veth and bridge but no dummy
//! driver; no virtual link has a permanent address, so the positive case
//! is checked read-only against the host's own NICs, and under QEMU
//! (virtio-net) by the end-to-end tests.

mod common;

use std::path::Path;

use common::Netns;
use keel::net::ethtool::{fill_permanent_addrs, permanent_addr, EthtoolError};
use keel::net::sysfs::{read_links, LinkFacts};

#[test]
fn virtual_links_have_no_permanent_address() {
    let ns = Netns::new("ethtool");
    ns.ip(&["link", "add", "pa0", "type", "veth", "peer", "name", "pa0p"]);
    ns.ip(&["link", "add", "pabr0", "type", "bridge"]);
    ns.enter();

    // veth and bridge draw a random address (eth_hw_addr_random sets
    // NET_ADDR_RANDOM), so register_netdevice leaves perm_addr zero; lo's
    // address is all zeros to begin with. The kernel answers all of them
    // (6.18 here: size 6, six zero bytes), not with EOPNOTSUPP.
    for link in ["pa0", "pa0p", "pabr0", "lo"] {
        assert_eq!(permanent_addr(link).unwrap(), None, "{link}");
    }

    let e = permanent_addr("nosuch0").unwrap_err();
    match &e {
        EthtoolError::Ioctl { link, source } => {
            assert_eq!(link, "nosuch0");
            assert_eq!(source.raw_os_error(), Some(nix::libc::ENODEV), "{e}");
        }
        other => panic!("want an ioctl error, got {other:?}"),
    }
    assert!(e.to_string().contains("nosuch0"), "{e}");

    // Nothing from ethtool: what sysfs gave stays, and a link gone since
    // sysfs was read keeps its facts too.
    let facts = |name: &str, perm: Option<&str>| LinkFacts {
        name: name.into(),
        permanent_addr: perm.map(str::to_owned),
        ..Default::default()
    };
    let mut links = vec![
        facts("pa0", None),
        facts("lo", None),
        facts("nosuch0", Some("52:54:00:00:00:01")),
    ];
    let before = links.clone();
    fill_permanent_addrs(&mut links);
    assert_eq!(links, before);
}

#[test]
fn host_nics_agree_with_sysfs() {
    // Read-only, in the test's own (root) namespace, whose links /sys
    // shows. A link whose address the driver set at registration
    // (addr_assign_type 0) and nobody changed since has that address as
    // its permanent one: register_netdevice copies dev_addr to perm_addr.
    let mut links = read_links(Path::new("/sys"));
    let sysfs: Vec<(String, Option<String>)> = links
        .iter()
        .map(|l| (l.name.clone(), l.permanent_addr.clone()))
        .collect();
    fill_permanent_addrs(&mut links);
    for (link, (name, from_sysfs)) in links.iter().zip(&sysfs) {
        assert_eq!(&link.name, name);
        let from_ethtool = permanent_addr(name)
            .unwrap()
            .map(|m| keel::config::types::MacAddress(m).to_string());
        if from_ethtool.is_some() {
            assert_eq!(&link.permanent_addr, &from_ethtool, "{name}");
        }
        if link.device.is_some() && from_sysfs.is_some() {
            assert_eq!(&from_ethtool, from_sysfs, "{name}");
        }
        eprintln!("{name}: sysfs {from_sysfs:?}, ethtool {from_ethtool:?}");
    }
}
