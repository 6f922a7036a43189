use super::*;
use crate::cmdline::Cmdline;
use crate::config::Config;
use crate::net::ipcfg;
use crate::net::sysfs::test_nic;

fn nic(name: &str, mac: &str, bus: &str) -> LinkFacts {
    test_nic(name, mac, bus, "1AF4:1000", "virtio_net")
}

/// Two NICs renamed to predictable names, kernel names as altnames.
fn inventory() -> Inventory {
    let mut inv = Inventory {
        links: vec![
            nic("enp0s2", "52:54:00:00:00:02", "0000:00:02.0"),
            nic("enp0s3", "52:54:00:00:00:03", "0000:00:03.0"),
        ],
        ..Default::default()
    };
    inv.alt_names.insert("enp0s2".into(), vec!["eth0".into()]);
    inv.alt_names.insert("enp0s3".into(), vec!["eth1".into()]);
    inv
}

fn config(interfaces: &str) -> Config {
    let text = format!(
        "version: v1alpha1\nmachine:\n  type: worker\n  network:\n    interfaces:\n{}",
        interfaces
            .lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    );
    match crate::config::parse(&text) {
        Ok(p) => p.config,
        Err(e) => panic!("{text}\n{e}"),
    }
}

fn params(cmdline: &str) -> NetParams {
    let (p, errs) = ipcfg::parse_lenient(&Cmdline::parse(cmdline));
    assert!(errs.is_empty(), "{errs:?}");
    p
}

/// A compact view of a plan: `name: addrs | routes | dhcp | create`.
fn summary(p: &Plan) -> Vec<String> {
    p.links
        .iter()
        .map(|l| {
            let mut parts = vec![l.name.clone()];
            for (a, len) in &l.addresses {
                parts.push(format!("{a}/{len}"));
            }
            for r in &l.routes {
                let dest = r.dest.map_or("default".into(), |(a, n)| format!("{a}/{n}"));
                let via = r.gateway.map_or(String::new(), |g| format!(" via {g}"));
                parts.push(format!("{dest}{via} metric {}", r.metric));
            }
            if let Some(m) = l.mtu {
                parts.push(format!("mtu {m}"));
            }
            if let Some(d) = &l.dhcp {
                parts.push(format!("dhcp metric {}", d.route_metric));
            }
            match &l.create {
                Some(Create::Dummy) => parts.push("dummy".into()),
                Some(Create::Vlan { parent, id, .. }) => {
                    parts.push(format!("vlan {id} on {parent}"))
                }
                Some(Create::Bond {
                    members, primary, ..
                }) => parts.push(format!(
                    "bond [{}] primary {}",
                    members.join(" "),
                    primary.as_deref().unwrap_or("-")
                )),
                None => {}
            }
            parts.join(" | ")
        })
        .collect()
}

#[test]
fn plan_table() {
    struct Case {
        what: &'static str,
        config: Option<&'static str>,
        cmdline: &'static str,
        want: &'static [&'static str],
        problems: &'static [&'static str],
    }
    let cases = [
        Case {
            what: "no config: DHCP on every physical link",
            config: None,
            cmdline: "",
            want: &["enp0s2 | dhcp metric 1024", "enp0s3 | dhcp metric 1024"],
            problems: &[],
        },
        Case {
            what: "no config, one link ignored on the command line (by kernel name)",
            config: None,
            cmdline: "keel.network.interface.ignore=eth1",
            want: &["enp0s2 | dhcp metric 1024"],
            problems: &[],
        },
        Case {
            what: "ip= static on a device by kernel name, gateway becomes default route",
            config: None,
            cmdline: "ip=10.0.0.5::10.0.0.1:255.255.255.0:node:eth0:off",
            want: &["enp0s2 | 10.0.0.5/24 | default via 10.0.0.1 metric 1024"],
            problems: &[],
        },
        Case {
            what: "ip=dhcp without device: all physical links",
            config: None,
            cmdline: "ip=dhcp",
            want: &["enp0s2 | dhcp metric 1024", "enp0s3 | dhcp metric 1024"],
            problems: &[],
        },
        Case {
            what: "ip= static without device: first physical link only",
            config: None,
            cmdline: "ip=10.0.0.5:::255.255.255.0:::off",
            want: &["enp0s2 | 10.0.0.5/24"],
            problems: &[],
        },
        Case {
            what: "config wins over ip= for the same link; ip= keeps the other",
            config: Some("- interface: enp0s2\n  addresses: [192.168.1.2/24]"),
            cmdline: "ip=eth0:dhcp ip=eth1:dhcp",
            want: &["enp0s2 | 192.168.1.2/24", "enp0s3 | dhcp metric 1024"],
            problems: &[],
        },
        Case {
            what: "config with interfaces: no DHCP fallback on the other link",
            config: Some("- interface: eth1\n  addresses: [192.168.1.3/24]\n  mtu: 9000"),
            cmdline: "",
            want: &["enp0s3 | 192.168.1.3/24 | mtu 9000"],
            problems: &[],
        },
        Case {
            what: "repeated entries for one link are merged; legacy cidr; routes and metrics",
            config: Some(
                "- interface: enp0s2\n  addresses: [10.1.0.2/24]\n  routes:\n    - network: 0.0.0.0/0\n      gateway: 10.1.0.1\n- interface: enp0s2\n  cidr: 10.2.0.2/16\n  routes:\n    - network: 10.9.0.0/16\n      gateway: 10.2.0.1\n      metric: 50",
            ),
            cmdline: "",
            want: &["enp0s2 | 10.1.0.2/24 | 10.2.0.2/16 | default via 10.1.0.1 metric 1024 | 10.9.0.0/16 via 10.2.0.1 metric 50"],
            problems: &[],
        },
        Case {
            what: "selector by MAC, DHCP with route metric",
            config: Some(
                "- deviceSelector:\n    hardwareAddr: 52:54:00:00:00:03\n  dhcp: true\n  dhcpOptions:\n    routeMetric: 7",
            ),
            cmdline: "",
            want: &["enp0s3 | dhcp metric 7"],
            problems: &[],
        },
        Case {
            what: "selector matching two links is an error and configures nothing",
            config: Some("- deviceSelector:\n    driver: virtio*\n  addresses: [10.0.0.9/24]"),
            cmdline: "",
            want: &[],
            problems: &["machine.network.interfaces (deviceSelector{driver: virtio*}): matches 2 links (enp0s2, enp0s3), expected exactly one; not configuring it"],
        },
        Case {
            what: "selector matching nothing waits",
            config: Some("- deviceSelector:\n    hardwareAddr: 52:54:00:00:00:99\n  addresses: [10.0.0.9/24]"),
            cmdline: "",
            want: &[],
            problems: &["machine.network.interfaces (deviceSelector{hardwareAddr: 52:54:00:00:00:99}): waiting for a matching link to appear"],
        },
        Case {
            what: "named link that does not exist waits",
            config: Some("- interface: eth7\n  dhcp: true"),
            cmdline: "",
            want: &[],
            problems: &["machine.network.interfaces (interface eth7): waiting for link eth7 to appear"],
        },
        Case {
            what: "ignore: true leaves the link alone, even from ip=",
            config: Some("- interface: eth0\n  ignore: true"),
            cmdline: "ip=dhcp",
            want: &["enp0s3 | dhcp metric 1024"],
            problems: &[],
        },
        Case {
            what: "VLANs after their parent, long names shortened",
            config: Some(
                "- interface: enp0s2\n  vlans:\n    - vlanId: 100\n      addresses: [10.100.0.2/24]\n    - vlanId: 4094\n      dhcp: true",
            ),
            cmdline: "",
            want: &[
                "enp0s2",
                "enp0s2.100 | 10.100.0.2/24 | vlan 100 on enp0s2",
                "enp0s2.4094 | dhcp metric 1024 | vlan 4094 on enp0s2",
            ],
            problems: &[],
        },
        Case {
            what: "bond over named and selected members, dummy link",
            config: Some(
                "- interface: bond0\n  addresses: [10.3.0.2/24]\n  bond:\n    mode: active-backup\n    miimon: 100\n    primary: eth0\n    interfaces: [eth0]\n    deviceSelectors:\n      - hardwareAddr: 52:54:00:00:00:03\n- interface: dummy0\n  dummy: true\n  addresses: [169.254.1.1/32]",
            ),
            cmdline: "",
            want: &[
                "dummy0 | 169.254.1.1/32 | dummy",
                "bond0 | 10.3.0.2/24 | bond [enp0s2 enp0s3] primary enp0s2",
            ],
            problems: &[],
        },
        Case {
            what: "vlan= on the command line with ip= for it",
            config: None,
            cmdline: "vlan=eth0.5:eth0 ip=10.5.0.2::10.5.0.1:24::eth0.5:off",
            want: &["eth0.5 | 10.5.0.2/24 | default via 10.5.0.1 metric 1024 | vlan 5 on enp0s2"],
            problems: &[],
        },
    ];
    let inv = inventory();
    for c in cases {
        let cfg = c.config.map(config);
        let spec = cfg.as_ref().map(crate::net::spec::from_config);
        let p = plan(spec.as_ref(), &params(c.cmdline), &inv);
        assert_eq!(summary(&p), c.want, "{}", c.what);
        let problems: Vec<String> = p.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems, c.problems, "{}", c.what);
    }
}

#[test]
fn ignored_links_are_listed() {
    let p = plan(
        Some(&crate::net::spec::from_config(&config(
            "- interface: eth1\n  ignore: true",
        ))),
        &params("keel.network.interface.ignore=enp0s2"),
        &inventory(),
    );
    assert_eq!(p.ignored, ["enp0s2", "enp0s3"]);
    assert!(p.links.is_empty());
}

#[test]
fn vlan_names() {
    let cases = [
        ("eth0", 5, "eth0.5"),
        ("enp0s2", 4094, "enp0s2.4094"),
        ("enp129s0f1", 100, "enp129s0f1.100"),
        ("enp129s0f1np0", 100, "enp129sf64a.100"),
        ("enP1p129s0f1", 4094, "enP1p16b33.4094"),
    ];
    for (parent, vid, want) in cases {
        let got = vlan_name(parent, vid);
        assert!(got.len() <= IFNAME_MAX, "{got}");
        assert_eq!(got, want, "{parent}.{vid}");
    }
    // Same prefix, different parents: different names.
    assert_ne!(
        vlan_name("enp129s0f1np0", 100),
        vlan_name("enp129s0f1np1", 100)
    );
}

#[test]
fn inventory_finds_by_alt_name() {
    let inv = inventory();
    assert_eq!(inv.find("eth1").map(|l| l.name.as_str()), Some("enp0s3"));
    assert_eq!(inv.find("enp0s2").map(|l| l.name.as_str()), Some("enp0s2"));
    assert!(inv.find("eth9").is_none());
}

/// Each VIP is placed on the link its interface resolves to (by name,
/// altname or selector), or on the VLAN link; the address itself is not
/// in the plan (the election adds it).
#[test]
fn vip_links() {
    /// (what, interfaces YAML, expected (VIP, link) pairs)
    type Case = (
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
    );
    let cases: &[Case] = &[
        (
            "VIP on a link named by its altname",
            "- interface: eth0\n  addresses: [10.5.0.2/24]\n  vip:\n    ip: 10.5.0.100",
            &[("10.5.0.100", "enp0s2")],
        ),
        (
            "VIP on a link found by selector, VIP on its VLAN",
            "- deviceSelector:\n    hardwareAddr: 52:54:00:00:00:03\n  addresses: [10.5.0.3/24]\n  vip:\n    ip: 10.5.0.100\n  vlans:\n    - vlanId: 7\n      addresses: [10.7.0.3/24]\n      vip:\n        ip: 10.7.0.100",
            &[("10.5.0.100", "enp0s3"), ("10.7.0.100", "enp0s3.7")],
        ),
        (
            "selector that matches nothing: no link for the VIP yet",
            "- deviceSelector:\n    hardwareAddr: 52:54:00:00:00:99\n  vip:\n    ip: 10.5.0.100",
            &[],
        ),
    ];
    for (what, yaml, want) in cases {
        let spec = crate::net::spec::from_config(&config(yaml));
        let p = plan(Some(&spec), &params(""), &inventory());
        let got: Vec<(String, String)> = p
            .vips
            .iter()
            .map(|(ip, l)| (ip.to_string(), l.clone()))
            .collect();
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want, "{what}");
        for l in &p.links {
            assert!(
                l.addresses.iter().all(|(a, _)| !p.vips.contains_key(a)),
                "{what}: a VIP is in the plan's addresses: {l:?}"
            );
        }
    }
}

/// The network documents map onto the same plan as `machine.network`.
/// Each case is a whole config (documents, maybe a v1alpha1 document
/// first); the inventory is `enp0s2` (eth0, 52:54:00:00:00:02) and
/// `enp0s3` (eth1, …:03).
#[test]
fn documents_plan_table() {
    const V1: &str = "version: v1alpha1\nmachine:\n  type: worker\n";
    const ALIAS: &str = "apiVersion: v1alpha1\nkind: LinkAliasConfig\nname: net0\nselector:\n  match: mac(link.permanent_addr) == \"52:54:00:00:00:03\"\n---\n";
    struct Case {
        what: &'static str,
        yaml: String,
        want: &'static [&'static str],
        vips: &'static [(&'static str, &'static str)],
        problems: &'static [&'static str],
    }
    let cases = [
        Case {
            what: "LinkConfig: addresses with routePriority, routes, MTU; others stay unconfigured",
            yaml: format!("{V1}---\napiVersion: v1alpha1\nkind: LinkConfig\nname: eth0\nmtu: 9000\naddresses:\n  - address: 10.5.0.11/24\n    routePriority: 50\nroutes:\n  - gateway: 10.5.0.1\n  - destination: 10.9.0.0/16\n    gateway: 10.5.0.254\n    metric: 10\n"),
            want: &["enp0s2 | 10.5.0.11/24 | default via 10.5.0.1 metric 1024 | 10.9.0.0/16 via 10.5.0.254 metric 10 | mtu 9000"],
            vips: &[],
            problems: &[],
        },
        Case {
            what: "an alias names the link; the VIP and a VLAN use the alias",
            yaml: format!("{ALIAS}apiVersion: v1alpha1\nkind: LinkConfig\nname: net0\naddresses:\n  - address: 10.5.0.12/24\n---\napiVersion: v1alpha1\nkind: VLANConfig\nname: net0.7\nvlanID: 7\nparent: net0\naddresses:\n  - address: 10.7.0.12/24\n---\napiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: 10.5.0.100\nlink: net0\n---\napiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: 10.5.0.101\nlink: net0\n"),
            want: &["enp0s3 | 10.5.0.12/24", "net0.7 | 10.7.0.12/24 | vlan 7 on enp0s3"],
            vips: &[("10.5.0.100", "enp0s3"), ("10.5.0.101", "enp0s3")],
            problems: &[],
        },
        Case {
            what: "DHCPv4Config with a route metric; DummyLinkConfig; BondConfig of both NICs",
            yaml: "apiVersion: v1alpha1\nkind: DummyLinkConfig\nname: dummy0\naddresses:\n  - address: 192.168.1.100/32\n---\napiVersion: v1alpha1\nkind: BondConfig\nname: bond0\nlinks: [eth0, enp0s3]\nbondMode: active-backup\n---\napiVersion: v1alpha1\nkind: DHCPv4Config\nname: bond0\nrouteMetric: 512\n".to_owned(),
            want: &["dummy0 | 192.168.1.100/32 | dummy", "bond0 | dhcp metric 512 | bond [enp0s2 enp0s3] primary -"],
            vips: &[],
            problems: &[],
        },
        Case {
            what: "machine.network and a LinkConfig for one link: the document wins for MTU, addresses add",
            yaml: "machine:\n  type: worker\n  network:\n    interfaces:\n      - interface: eth0\n        mtu: 1400\n        addresses: [10.5.0.11/24]\n        vip:\n          ip: 10.5.0.100\n---\napiVersion: v1alpha1\nkind: LinkConfig\nname: eth0\nmtu: 9000\naddresses:\n  - address: 10.6.0.11/24\n".to_owned(),
            want: &["enp0s2 | 10.5.0.11/24 | 10.6.0.11/24 | mtu 9000"],
            vips: &[("10.5.0.100", "enp0s2")],
            problems: &[],
        },
        Case {
            what: "an alias that matches nothing: waiting, nothing configured for it",
            yaml: "apiVersion: v1alpha1\nkind: LinkAliasConfig\nname: net9\nselector:\n  match: link.driver == \"e1000\"\n---\napiVersion: v1alpha1\nkind: LinkConfig\nname: net9\naddresses:\n  - address: 10.5.0.13/24\n".to_owned(),
            want: &[],
            vips: &[],
            problems: &[
                // The alias's own line says why; its users add nothing.
                "link alias net9 (document 1 (LinkAliasConfig net9)): waiting for a link matching link.driver == \"e1000\"",
            ],
        },
        Case {
            what: "an alias that matches two links is an error for that alias",
            yaml: "apiVersion: v1alpha1\nkind: LinkAliasConfig\nname: net0\nselector:\n  match: link.driver == \"virtio_net\"\n---\napiVersion: v1alpha1\nkind: LinkConfig\nname: net0\naddresses:\n  - address: 10.5.0.13/24\n".to_owned(),
            want: &[],
            vips: &[],
            problems: &[
                "link alias net0 (document 1 (LinkAliasConfig net0)): matches 2 links (enp0s2, enp0s3), expected exactly one; not configuring it",
            ],
        },
    ];
    for c in cases {
        let parsed = match crate::config::parse(&c.yaml) {
            Ok(p) => p.config,
            Err(e) => panic!("{}: {e}\n{}", c.what, c.yaml),
        };
        let spec = crate::net::spec::from_config(&parsed);
        let p = plan(Some(&spec), &params(""), &inventory());
        assert_eq!(summary(&p), c.want, "{}", c.what);
        let vips: Vec<(String, String)> = p
            .vips
            .iter()
            .map(|(ip, l)| (ip.to_string(), l.clone()))
            .collect();
        let want: Vec<(String, String)> = c
            .vips
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(vips, want, "{}: VIPs", c.what);
        let problems: Vec<String> = p.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems, c.problems, "{}: problems", c.what);
    }
}
