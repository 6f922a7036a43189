//! Broken configs: each error names the exact path, line and column, and
//! says what was expected.

use super::errors;

/// (what, config, path, line, column, message fragment)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    usize,
    usize,
    &'static str,
);

const IFACE: &str = "machine:\n  network:\n    interfaces:\n";

const CASES: &[Case] = &[
    ("unknown key", "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        foo: 1\n",
        "machine.network.interfaces[0].foo", 5, 9, "unknown field `foo`, expected one of `interface`"),
    ("unknown machine section", "machine:\n  kubelett: {}\n",
        "machine.kubelett", 2, 3, "unknown field `kubelett`"),
    ("unknown top-level key", "machines: {}\n", "machines", 1, 1, "unknown field `machines`"),
    ("wrong type", "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        dhcp: \"yes\"\n",
        "machine.network.interfaces[0].dhcp", 5, 15, "invalid type: string \"yes\", expected a boolean"),
    ("wrong type: mapping for list", "machine:\n  network:\n    nameservers: {a: 1}\n",
        "machine.network.nameservers", 3, 18, "invalid type: map, expected a sequence"),
    ("huge number", "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        mtu: 99999999999\n",
        "machine.network.interfaces[0].mtu", 5, 14, "expected an integer from 0 to 4294967295"),
    ("VLAN id too big", "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        vlans:\n          - vlanId: 5000\n",
        "machine.network.interfaces[0].vlans[0].vlanId", 6, 21, "VLAN id 5000 is out of range, expected 1 to 4094"),
    ("VLAN id zero", "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        vlans:\n          - vlanId: 0\n",
        "machine.network.interfaces[0].vlans[0].vlanId", 6, 21, "VLAN id 0 is out of range"),
    ("VLAN id missing", "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        vlans:\n          - dhcp: true\n",
        "machine.network.interfaces[0].vlans[0]", 6, 13, "missing field `vlanId`"),
    ("name too long", "machine:\n  network:\n    interfaces:\n      - interface: enp0s31f6abcdefgh\n",
        "machine.network.interfaces[0].interface", 4, 20, "expected 1 to 15 bytes"),
    ("bad bond member name", "machine:\n  network:\n    interfaces:\n      - interface: bond0\n        bond:\n          interfaces: [eth0, \"a/b\"]\n",
        "machine.network.interfaces[0].bond.interfaces[1]", 6, 30, "interface name \"a/b\" is invalid"),
    ("interface and deviceSelector", "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        deviceSelector:\n          driver: virtio\n",
        "machine.network.interfaces[0]", 4, 9, "both `interface` and `deviceSelector` are set, expected exactly one"),
    ("neither interface nor deviceSelector", "machine:\n  network:\n    interfaces:\n      - dhcp: true\n",
        "machine.network.interfaces[0]", 4, 9, "neither `interface` nor `deviceSelector` is set"),
    ("empty selector", "machine:\n  network:\n    interfaces:\n      - deviceSelector: {}\n        dhcp: true\n",
        "machine.network.interfaces[0].deviceSelector", 4, 25, "empty deviceSelector, expected at least one of busPath"),
    ("empty bond selector", "machine:\n  network:\n    interfaces:\n      - interface: bond0\n        bond:\n          deviceSelectors:\n            - {}\n",
        "machine.network.interfaces[0].bond.deviceSelectors[0]", 7, 15, "empty deviceSelector"),
    ("invalid CIDR", "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        addresses:\n          - 10.0.0.1/24\n          - 10.0.0.300/24\n",
        "machine.network.interfaces[0].addresses[1]", 7, 13, "\"10.0.0.300/24\" is not a CIDR, expected an address with prefix length"),
    ("prefix too long", "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        cidr: fd00::1/129\n",
        "machine.network.interfaces[0].cidr", 5, 15, "is not a CIDR"),
    ("invalid IP", "machine:\n  network:\n    nameservers:\n      - 10.0.0.1\n      - dns.example.com\n",
        "machine.network.nameservers[1]", 5, 9, "\"dns.example.com\" is not an IP address, expected IPv4"),
    ("invalid gateway", "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        routes:\n          - gateway: 10.0.0\n",
        "machine.network.interfaces[0].routes[0].gateway", 6, 22, "is not an IP address"),
    ("invalid MAC glob", "machine:\n  network:\n    interfaces:\n      - deviceSelector:\n          hardwareAddr: \"00:zz:*\"\n",
        "machine.network.interfaces[0].deviceSelector.hardwareAddr", 5, 25, "is not a MAC address or glob"),
    ("invalid MAC", "machine:\n  network:\n    interfaces:\n      - deviceSelector:\n          permanentAddr: \"00:50:56:8e:8f\"\n",
        "machine.network.interfaces[0].deviceSelector.permanentAddr", 5, 26, "\"00:50:56:8e:8f\" is not a MAC address, expected six hex bytes"),
    ("bond mode", "machine:\n  network:\n    interfaces:\n      - interface: bond0\n        bond:\n          mode: 802.3az\n",
        "machine.network.interfaces[0].bond.mode", 6, 17, "unknown variant `802.3az`, expected one of `balance-rr`"),
    ("lacp rate", "machine:\n  network:\n    interfaces:\n      - interface: bond0\n        bond:\n          lacpRate: medium\n",
        "machine.network.interfaces[0].bond.lacpRate", 6, 21, "unknown variant `medium`, expected `slow` or `fast`"),
    ("xmit hash policy", "machine:\n  network:\n    interfaces:\n      - interface: bond0\n        bond:\n          xmitHashPolicy: layer4\n",
        "machine.network.interfaces[0].bond.xmitHashPolicy", 6, 27, "unknown variant `layer4`"),
    ("VIP ttl too short", "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        vip:\n          ip: 10.0.0.5\n          ttl: 1\n",
        "machine.network.interfaces[0].vip.ttl", 7, 16, "VIP ttl 1 is out of range, expected 2 to 3600 seconds"),
    ("version", "version: v1alpha2\nmachine: {}\n", "version", 1, 10, "unknown variant `v1alpha2`, expected `v1alpha1`"),
    ("machine type", "machine:\n  type: master\n", "machine.type", 2, 9, "unknown variant `master`, expected one of `controlplane`, `worker`, `init`"),
    ("hostname", "machine:\n  network:\n    hostname: node_1\n", "machine.network.hostname", 3, 15, "is not a valid host name"),
    ("peer URL", "cluster:\n  etcd:\n    initialCluster:\n      node1: 10.0.0.1:2380\n",
        "cluster.etcd.initialCluster.node1", 4, 14, "is not a peer URL, expected `http://` or `https://`"),
    ("base64 not PEM", "cluster:\n  etcd:\n    ca:\n      crt: aGVsbG8=\n",
        "cluster.etcd.ca.crt", 4, 12, "not a PEM CERTIFICATE block, expected base64-encoded PEM"),
    ("not base64", "cluster:\n  etcd:\n    peer:\n      crt: \"%%%\"\n      key: x\n",
        "cluster.etcd.peer.crt", 4, 12, "invalid base64"),
    ("subnet", "cluster:\n  etcd:\n    advertisedSubnets: [\"!10.0.0.0/99\"]\n",
        "cluster.etcd.advertisedSubnets[0]", 3, 25, "is not a subnet"),
    ("duplicate struct key", "machine:\n  network:\n    hostname: a\n    hostname: b\n",
        "machine.network.hostname", 4, 5, "duplicate key `hostname`"),
    ("duplicate map key", "machine:\n  env:\n    A: 1\n    A: 2\n", "machine.env.A", 4, 5, "duplicate key `A`"),
    ("YAML syntax", "machine:\n  network:\n    interfaces: [\n", "(document)", 4, 1, "did not find expected node content"),
    ("tab indentation", "machine:\n\tnetwork: {}\n", "(document)", 2, 1, "found character that cannot start any token"),
    ("not a mapping", "hello\n", "(document)", 1, 1, "invalid type: string \"hello\", expected a mapping"),
    ("deep nesting", "machine:\n  kubelet: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n",
        "(document)", 2, 138, "nested more than 128 levels deep"),
    ("VIP is a static address", "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        addresses: [10.0.0.5/24]\n      - interface: eth1\n        vip:\n          ip: 10.0.0.5\n",
        "machine.network.interfaces[1].vip.ip", 8, 15, "VIP 10.0.0.5 is also a static address at machine.network.interfaces[0].addresses[0]"),
    ("VIP is a static VLAN address", "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        vip:\n          ip: 10.0.1.5\n        vlans:\n          - vlanId: 7\n            cidr: 10.0.1.5/24\n",
        "machine.network.interfaces[0].vip.ip", 6, 15, "also a static address at machine.network.interfaces[0].vlans[0].cidr"),
    ("VIP twice", "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        vip:\n          ip: 10.0.0.5\n      - interface: eth1\n        vlans:\n          - vlanId: 100\n            vip:\n              ip: 10.0.0.5\n",
        "machine.network.interfaces[1].vlans[0].vip.ip", 11, 19, "VIP 10.0.0.5 is already configured at machine.network.interfaces[0].vip, expected each VIP once"),
    ("conflicting MTU", "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        mtu: 1500\n      - interface: eth0\n        mtu: 9000\n",
        "machine.network.interfaces[1].mtu", 7, 14, "mtu 9000 conflicts with mtu 1500 in an earlier entry for eth0"),
    ("conflicting VLAN MTU", "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        vlans: [{vlanId: 5, mtu: 1400}]\n      - interface: eth0\n        vlans: [{vlanId: 5, mtu: 1500}]\n",
        "machine.network.interfaces[1].vlans[0].mtu", 7, 34, "mtu 1500 conflicts with mtu 1400 in an earlier entry for eth0.5"),
    ("route family", "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        routes:\n          - network: 10.0.0.0/8\n            gateway: fd00::1\n",
        "machine.network.interfaces[0].routes[0].gateway", 7, 22, "gateway fd00::1 is IPv6 but the route's network is IPv4"),
    ("bond by selector", "machine:\n  network:\n    interfaces:\n      - deviceSelector: {driver: e1000e}\n        bond:\n          mode: balance-rr\n",
        "machine.network.interfaces[0].bond", 6, 11, "a bond is created by Keel and needs a name"),
    ("member not in initialCluster", "machine:\n  network:\n    hostname: node1\ncluster:\n  etcd:\n    initialCluster:\n      node2: https://10.0.0.2:2380\n      node3: https://10.0.0.3:2380\n    allowInsecure: true\n",
        "cluster.etcd.initialCluster", 7, 7, "this node's member name `node1` (from machine.network.hostname) is not in initialCluster, expected one of: node2, node3"),
    ("memberName not in initialCluster", "cluster:\n  etcd:\n    memberName: a\n    initialCluster:\n      b: https://10.0.0.2:2380\n    allowInsecure: true\n",
        "cluster.etcd.initialCluster", 5, 7, "`a` (from cluster.etcd.memberName) is not in initialCluster"),
    ("no member name", "cluster:\n  etcd:\n    initialCluster:\n      b: https://10.0.0.2:2380\n    allowInsecure: true\n",
        "cluster.etcd.initialCluster", 4, 7, "expected cluster.etcd.memberName or machine.network.hostname"),
    ("force-new-cluster", "cluster:\n  etcd:\n    allowInsecure: true\n    extraArgs:\n      force-new-cluster: \"true\"\n",
        "cluster.etcd.extraArgs.force-new-cluster", 5, 26, "refused: every start of etcd would make this node a cluster of one"),
    ("extraArgs Keel owns", "cluster:\n  etcd:\n    allowInsecure: true\n    extraArgs:\n      --data-dir: /tmp\n",
        "cluster.etcd.extraArgs.--data-dir", 5, 19, "Keel sets --data-dir itself"),
    ("env name", "machine:\n  env:\n    \"A=B\": 1\n", "machine.env.A=B", 3, 12, "invalid environment variable \"A=B\""),
    ("empty document", "# nothing here\n", "(document)", 0, 0, "empty document, expected a Talos v1alpha1 machine config"),
];

#[test]
fn table() {
    let mut failures = Vec::new();
    for (what, text, path, line, column, fragment) in CASES {
        let errs = errors(text);
        let e = &errs.0[0];
        let (want_line, want_column) = if *line == 0 {
            (None, None)
        } else {
            (Some(*line), Some(*column))
        };
        if e.path != *path
            || e.line != want_line
            || e.column != want_column
            || !e.message.contains(fragment)
        {
            failures.push(format!(
                "{what}:\n  got  {e}\n  want {path} (line {line}, column {column}): ...{fragment}..."
            ));
        }
        if errs.len() != 1 {
            failures.push(format!("{what}: expected 1 error, got:\n{errs}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_cross_field_error_is_reported() {
    let text = format!(
        "{IFACE}      - interface: eth0\n        addresses: [10.0.0.5/24]\n        vip:\n          ip: 10.0.0.5\n      - interface: eth0\n        mtu: 1500\n      - interface: eth0\n        mtu: 9000\ncluster:\n  etcd:\n    memberName: x\n    initialCluster:\n      a: https://10.0.0.2:2380\n      b: https://10.0.0.2:2380\n"
    );
    let got: Vec<String> = errors(&text).iter().map(|e| e.to_string()).collect();
    assert_eq!(
        got,
        [
            "machine.network.interfaces[0].vip.ip (line 7, column 15): VIP 10.0.0.5 is also a static address at machine.network.interfaces[0].addresses[0], expected an address no node has statically (Keel adds and removes it)",
            "machine.network.interfaces[2].mtu (line 11, column 14): mtu 9000 conflicts with mtu 1500 in an earlier entry for eth0, expected the same value or none",
            "cluster.etcd (line 14, column 5): no cluster.etcd.ca: etcd would listen in plaintext on the node's address; expected cluster.etcd.ca (Keel issues this node's certificates from it, as Talos does), or allowInsecure: true to run etcd without TLS on purpose",
            "cluster.etcd.initialCluster (line 16, column 7): this node's member name `x` (from cluster.etcd.memberName) is not in initialCluster, expected one of: a, b",
            "cluster.etcd.initialCluster.b (line 17, column 10): peer URL https://10.0.0.2:2380 is also member `a`'s, expected one URL per member",
        ]
    );
}

#[test]
fn invalid_utf8_has_a_position() {
    let errs =
        crate::config::parse_bytes(b"machine:\n  network:\n    hostname: n\xff1\n").unwrap_err();
    assert_eq!(
        errs.to_string(),
        "(document) (line 3, column 16): invalid UTF-8 at byte 35, expected UTF-8 text"
    );
}

#[test]
fn hostile_inputs_do_not_panic() {
    let laughs = {
        let mut s = String::from("machine:\n  kubelet:\n    a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        let mut prev = 'a';
        for name in 'b'..='i' {
            s += &format!(
                "    {name}: &{name} [{}]\n",
                vec![format!("*{prev}"); 9].join(",")
            );
            prev = name;
        }
        s
    };
    let deep_block: String = (0..300).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
    let inputs = [
        "[".repeat(100_000),
        "{a: ".repeat(50_000),
        format!("machine:\n  kubelet: {}{}\n", "[".repeat(1000), "]".repeat(1000)),
        deep_block,
        laughs,
        "machine:\n  network:\n    interfaces:\n      - &x {interface: eth0}\n      - *x\n      - *y\n".to_owned(),
        "machine: &m\n  env: *m\n".to_owned(),
        "? [a]\n: b\n".to_owned(),
        "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        vlans:\n          - vlanId: 99999999999999999999999999999999\n".to_owned(),
        "---\nmachine: {}\n---\nmachine: {}\n".to_owned(),
        "\u{feff}machine: {}\n".to_owned(),
        "machine: !!binary aGVsbG8=\n".to_owned(),
        "machine:\n  type: !custom controlplane\n".to_owned(),
        "\0".to_owned(),
        String::new(),
    ];
    for text in &inputs {
        match crate::config::parse(text) {
            Ok(p) => {
                let _ = (p.config.interfaces(), p.config.vips(), p.config.summary());
            }
            Err(e) => assert!(!e.is_empty() && !e.to_string().is_empty()),
        }
    }
}
