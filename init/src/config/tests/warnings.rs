//! Warnings: ignored Talos sections (exact text) and deprecated values.

use super::ok;
use crate::config::etcd::Cluster;
use crate::config::schema::{Config, Machine, Network};
use crate::config::{Interface, MachineType, Vip};

fn warnings(text: &str) -> Vec<String> {
    ok(text).warnings.iter().map(|w| w.to_string()).collect()
}

#[test]
fn unsupported_sections_are_named_once_each() {
    let text = "version: v1alpha1\ndebug: false\nmachine:\n  kubelet:\n    image: x\n  registries: {}\n  network:\n    kubespan: {enabled: true}\n    interfaces:\n      - interface: br0\n        bridge: {interfaces: [eth0]}\n        vip:\n          ip: 10.0.0.9\n          hcloud: {apiToken: x}\ncluster:\n  clusterName: demo\n  network: {dnsDomain: cluster.local}\n  etcd:\n    image: gcr.io/etcd\n    allowInsecure: true\n";
    assert_eq!(
        warnings(text),
        [
            "not supported by Keel, ignored: debug (line 2)",
            "not supported by Keel, ignored: machine.kubelet (line 4)",
            "not supported by Keel, ignored: machine.registries (line 6)",
            "not supported by Keel, ignored: machine.network.kubespan (line 8)",
            "not supported by Keel, ignored: machine.network.interfaces[0].bridge (line 11)",
            "not supported by Keel, ignored: machine.network.interfaces[0].vip.hcloud (line 14)",
            "not supported by Keel, ignored: cluster.clusterName (line 16)",
            "not supported by Keel, ignored: cluster.network (line 17)",
            "not supported by Keel, ignored: cluster.etcd.image (line 19)",
        ]
    );
}

/// Every declared Talos key is accepted, with any content, and warned about.
#[test]
fn every_unsupported_key_is_accepted() {
    let sections: [(&str, &[&str]); 6] = [
        ("", Config::UNSUPPORTED_KEYS),
        ("machine", Machine::UNSUPPORTED_KEYS),
        ("machine.network", Network::UNSUPPORTED_KEYS),
        ("cluster", Cluster::UNSUPPORTED_KEYS),
        ("machine.network.interfaces[0]", Interface::UNSUPPORTED_KEYS),
        ("machine.network.interfaces[0].vip", Vip::UNSUPPORTED_KEYS),
    ];
    let mut text = String::from("debug: true\npersist: true\nmachine:\n");
    for key in Machine::UNSUPPORTED_KEYS {
        text += &format!("  {key}: {{any: [thing, 1]}}\n");
    }
    text += "  network:\n    kubespan: null\n    interfaces:\n      - interface: eth0\n";
    for key in Interface::UNSUPPORTED_KEYS {
        text += &format!("        {key}: 1\n");
    }
    text += "        vip:\n          ip: 10.0.0.1\n          equinixMetal: {}\n          hcloud: {}\ncluster:\n";
    for key in Cluster::UNSUPPORTED_KEYS {
        text += &format!("  {key}: [x]\n");
    }
    let got = warnings(&text);
    let total: usize = sections.iter().map(|(_, keys)| keys.len()).sum();
    assert_eq!(got.len(), total, "{got:#?}");
    for (parent, keys) in sections {
        for key in keys {
            let path = if parent.is_empty() {
                key.to_string()
            } else {
                format!("{parent}.{key}")
            };
            let want = format!("not supported by Keel, ignored: {path} (line");
            assert!(
                got.iter().any(|w| w.starts_with(&want)),
                "no warning for {path}"
            );
        }
    }
    // Everything of Talos's but what Keel reads (machine.type, env,
    // network, ca, acceptedCAs, certSANs; cluster.etcd, controlPlane).
    assert!(Machine::UNSUPPORTED_KEYS.len() >= 21);
    assert!(Cluster::UNSUPPORTED_KEYS.len() >= 23);
}

#[test]
fn init_is_a_deprecated_alias() {
    let p = ok("machine:\n  type: init\n");
    assert_eq!(p.config.machine_type(), MachineType::Controlplane);
    let w: Vec<String> = p.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        w,
        ["machine.type (line 2): `init` is deprecated in Talos, treated as `controlplane`"]
    );
    assert_eq!(
        ok("machine:\n  type: worker\n").config.machine_type(),
        MachineType::Worker
    );
    assert_eq!(
        ok("machine: {}\n").config.machine_type(),
        MachineType::Controlplane
    );
    assert!(ok("machine:\n  type: controlplane\n").warnings.is_empty());
}

#[test]
fn etcd_extensions_and_defaults() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let cert = b64("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    let key = b64("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n");
    let text = format!(
        "machine:\n  network:\n    hostname: node1\ncluster:\n  etcd:\n    ca: {{crt: {cert}, key: {key}}}\n    peer: {{crt: {cert}, key: {key}}}\n    extraArgs: {{heartbeat-interval: 250}}\n    advertisedSubnets: [10.5.0.0/24, \"!10.5.0.1/32\"]\n    initialCluster:\n      node1: https://10.5.0.11:2380\n      node2: https://10.5.0.12:2380\n"
    );
    let p = ok(&text);
    assert!(p.warnings.is_empty());
    let c = p.config;
    let etcd = c.cluster.etcd.as_ref().unwrap();
    assert_eq!(etcd.initial_cluster_token, "keel");
    // Unset: on by default with TLS.
    assert_eq!(etcd.client_on_node_address, None);
    assert!(etcd.clients_on_node_address());
    assert!(etcd.server.is_none());
    assert_eq!(etcd.extra_args["heartbeat-interval"], "250");
    assert!(etcd.advertised_subnets[1].exclude);
    assert!(etcd
        .ca
        .as_ref()
        .unwrap()
        .crt
        .pem()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(c.etcd_member_name(), Some("node1"));
    assert_eq!(
        c.summary(),
        "controlplane config: hostname node1, 0 interfaces (0 static addresses, 0 DHCP), 0 VIPs, etcd member node1 of 2"
    );
}
