//! Multi-document configs (Talos 1.12+): the v1alpha1 document plus
//! network documents, documents alone, every network kind, ignored kinds,
//! and errors placed by document and whole-file line.

use super::{errors, ok};
use crate::config::netdocs::AutoHostname;

/// A v1alpha1 document followed by `---` and `docs`.
fn with_v1(docs: &str) -> String {
    format!("version: v1alpha1\nmachine:\n  type: controlplane\n---\n{docs}")
}

const EVERY_KIND: &str = "\
apiVersion: v1alpha1
kind: LinkConfig
name: enp0s2
up: true
mtu: 9000
addresses:
  - address: 10.5.0.11/24
  - address: 2001:db8::1/64
    routePriority: 100
routes:
  - destination: 10.3.5.0/24
    gateway: 10.5.0.1
  - gateway: 10.5.0.1
    metric: 10
---
apiVersion: v1alpha1
kind: LinkAliasConfig
name: net0
selector:
  match: mac(link.permanent_addr) == \"00:1a:2b:3c:4d:5e\"
---
apiVersion: v1alpha1
kind: VLANConfig
name: net0.7
vlanID: 7
vlanMode: 802.1q
parent: net0
addresses:
  - address: 10.7.0.11/24
---
apiVersion: v1alpha1
kind: BondConfig
name: bond0
links: [eth1, eth2]
bondMode: active-backup
miimon: 100
primary: eth1
addresses:
  - address: 10.8.0.11/24
---
apiVersion: v1alpha1
kind: DummyLinkConfig
name: dummy0
hardwareAddr: 2e:3c:4d:5e:6f:70
addresses:
  - address: 192.168.1.100/32
---
apiVersion: v1alpha1
kind: DHCPv4Config
name: enp0s3
routeMetric: 512
ignoreHostname: true
clientIdentifier: duid
duidRaw: 00:01:00:01:23:45:67:89
---
apiVersion: v1alpha1
kind: HostnameConfig
hostname: cp1.example.com
---
apiVersion: v1alpha1
kind: ResolverConfig
nameservers:
  - address: 10.0.0.1
searchDomains:
  domains: [example.org]
  disableDefault: true
---
apiVersion: v1alpha1
kind: StaticHostConfig
name: 10.5.0.2
hostnames: [api.example.org]
---
apiVersion: v1alpha1
kind: Layer2VIPConfig
name: 10.5.0.100
link: enp0s2
";

#[test]
fn documents_parse() {
    // v1alpha1 + HostnameConfig, as `talosctl gen config` writes since 1.12.
    let p = ok(&with_v1(
        "apiVersion: v1alpha1\nkind: HostnameConfig\nauto: stable\n",
    ));
    let h = p.config.documents.hostname.expect("HostnameConfig");
    assert_eq!(h.spec.auto, Some(AutoHostname::Stable));
    assert_eq!(h.at.index, 2);
    assert_eq!(h.at.line, 5);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);

    // Documents only: no v1alpha1 document (Keel's defaults apply).
    let p = ok(EVERY_KIND);
    let d = &p.config.documents;
    let counts = [
        ("LinkConfig", d.links.len()),
        ("LinkAliasConfig", d.aliases.len()),
        ("VLANConfig", d.vlans.len()),
        ("BondConfig", d.bonds.len()),
        ("DummyLinkConfig", d.dummies.len()),
        ("DHCPv4Config", d.dhcp4.len()),
        ("HostnameConfig", usize::from(d.hostname.is_some())),
        ("ResolverConfig", usize::from(d.resolver.is_some())),
        ("StaticHostConfig", d.static_hosts.len()),
        ("Layer2VIPConfig", d.vips.len()),
    ];
    for (kind, n) in counts {
        assert_eq!(n, 1, "{kind}");
    }
    assert_eq!(
        d.vips[0].at.to_string(),
        "document 10 (Layer2VIPConfig 10.5.0.100)"
    );
    assert_eq!(d.vlans[0].spec.vlan_id.get(), 7);
    assert_eq!(d.links[0].spec.addresses[1].route_priority, Some(100));
    assert!(p.config.machine.network.interfaces.is_empty());

    // Every kind next to a v1alpha1 document too.
    ok(&with_v1(EVERY_KIND));
}

#[test]
fn kinds_keel_does_not_implement_are_warnings() {
    let text = with_v1(
        "apiVersion: v1alpha1\nkind: KubeletConfig\nimage: x\n---\napiVersion: v1alpha1\nkind: TimeSyncConfig\nntp:\n  servers: [time.example]\n---\napiVersion: v1alpha1\nkind: DHCPv6Config\nname: eth0\n",
    );
    let p = ok(&text);
    let got: Vec<String> = p.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        got,
        [
            "not supported by Keel, ignored: document 2 (KubeletConfig) (line 5)",
            "not supported by Keel, ignored: document 3 (TimeSyncConfig) (line 9)",
            "not supported by Keel, ignored: document 4 (DHCPv6Config eth0) (line 14)",
        ]
    );
}

#[test]
fn errors_name_the_document_and_the_line_in_the_whole_file() {
    // (what, text, path, line, column, message fragment)
    let cases: &[(&str, String, &str, usize, usize, &str)] = &[
        (
            "bad address",
            with_v1("apiVersion: v1alpha1\nkind: LinkConfig\nname: eth0\naddresses:\n  - address: 10.0.0.300/24\n"),
            "document 2 (LinkConfig eth0): addresses[0].address",
            9,
            14,
            "10.0.0.300/24",
        ),
        (
            "unknown field in a kind Keel implements",
            with_v1("apiVersion: v1alpha1\nkind: LinkConfig\nname: eth0\nspeed: 1000\n"),
            "document 2 (LinkConfig eth0): speed",
            8,
            1,
            "unknown field `speed`",
        ),
        (
            "no kind",
            with_v1("apiVersion: v1alpha1\nname: eth0\n"),
            "document 2 (?): apiVersion",
            5,
            1,
            "needs a kind",
        ),
        (
            "unknown apiVersion",
            with_v1("apiVersion: v1beta1\nkind: LinkConfig\nname: eth0\n"),
            "document 2 (LinkConfig eth0): apiVersion",
            5,
            13,
            "unknown apiVersion \"v1beta1\" for kind LinkConfig",
        ),
        (
            "two HostnameConfig",
            with_v1("apiVersion: v1alpha1\nkind: HostnameConfig\nauto: stable\n---\napiVersion: v1alpha1\nkind: HostnameConfig\nhostname: a\n"),
            "document 3 (HostnameConfig)",
            9,
            1,
            "a second HostnameConfig (the first is document 2 (HostnameConfig), line 5)",
        ),
        (
            "Layer2VIPConfig on a link nothing creates",
            with_v1("apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: 10.5.0.100\nlink: net9\n"),
            "document 2 (Layer2VIPConfig 10.5.0.100)",
            5,
            0,
            "link net9 is not configured or created by any document",
        ),
        (
            "HostnameConfig and machine.network.hostname",
            "machine:\n  network:\n    hostname: a\n---\napiVersion: v1alpha1\nkind: HostnameConfig\nauto: stable\n".to_owned(),
            "document 2 (HostnameConfig)",
            5,
            0,
            "and so does document 1 (v1alpha1): machine.network.hostname (line 3)",
        ),
        (
            "ResolverConfig and machine.network.nameservers",
            "machine:\n  network:\n    nameservers: [10.0.0.1]\n---\napiVersion: v1alpha1\nkind: ResolverConfig\nnameservers:\n  - address: 10.0.0.2\n".to_owned(),
            "document 2 (ResolverConfig)",
            5,
            0,
            "machine.network.nameservers (line 3)",
        ),
        (
            "auto stable with a hostname",
            with_v1("apiVersion: v1alpha1\nkind: HostnameConfig\nauto: stable\nhostname: a\n"),
            "document 2 (HostnameConfig): hostname",
            8,
            11,
            "auto: stable and hostname are both set",
        ),
        (
            "duid without duidRaw",
            with_v1("apiVersion: v1alpha1\nkind: DHCPv4Config\nname: eth0\nclientIdentifier: duid\n"),
            "document 2 (DHCPv4Config eth0): clientIdentifier",
            8,
            19,
            "duidRaw is not set",
        ),
        (
            "selector Keel cannot evaluate",
            with_v1("apiVersion: v1alpha1\nkind: LinkAliasConfig\nname: net0\nselector:\n  match: link.speed > 100\n"),
            "document 2 (LinkAliasConfig net0): selector.match",
            9,
            10,
            "`link.speed` is not a field Keel evaluates",
        ),
        (
            "a link in two link documents",
            with_v1("apiVersion: v1alpha1\nkind: LinkConfig\nname: eth0\n---\napiVersion: v1alpha1\nkind: VLANConfig\nname: eth0\nvlanID: 4\nparent: eth1\n"),
            "document 3 (VLANConfig eth0)",
            9,
            0,
            "link eth0 is already configured by document 2 (LinkConfig eth0) (line 5)",
        ),
        (
            "a VIP that is a static address",
            with_v1("apiVersion: v1alpha1\nkind: LinkConfig\nname: eth0\naddresses:\n  - address: 10.5.0.100/24\n---\napiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: 10.5.0.100\nlink: eth0\n"),
            "document 3 (Layer2VIPConfig 10.5.0.100)",
            11,
            0,
            "VIP 10.5.0.100 is also a static address at document 2 (LinkConfig eth0)",
        ),
        (
            "a route into another table",
            with_v1("apiVersion: v1alpha1\nkind: LinkConfig\nname: eth0\nroutes:\n  - gateway: 10.0.0.1\n    table: \"100\"\n"),
            "document 2 (LinkConfig eth0): routes[0].table",
            10,
            12,
            "routing table \"100\" is not supported by Keel",
        ),
        (
            "v1alpha1 errors in a multi-document file name the document",
            "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        mtu: nope\n---\napiVersion: v1alpha1\nkind: HostnameConfig\nauto: stable\n".to_owned(),
            "document 1 (v1alpha1): machine.network.interfaces[0].mtu",
            5,
            14,
            "invalid type",
        ),
    ];
    let mut failures = Vec::new();
    for (what, text, path, line, column, fragment) in cases {
        let errs = errors(text);
        let e = &errs.0[0];
        let want_column = (*column != 0).then_some(*column);
        if e.path != *path
            || e.line != Some(*line)
            || e.column != want_column
            || !e.message.contains(fragment)
        {
            failures.push(format!(
                "{what}:\n  got  {e}\n  want {path} (line {line}, column {column}): ...{fragment}..."
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
