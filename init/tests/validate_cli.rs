//! `keel validate FILE`, run as the operator runs it: the built binary on
//! fixture files, checking exit codes and the exact lines printed.

use std::path::Path;
use std::process::{Command, Output};

fn validate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("validate")
        .args(args)
        // Relative paths, so the printed file names are stable.
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"))
        .output()
        .expect("run keel")
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn valid_config_prints_a_summary_and_warnings() {
    let out = validate(&["keel/node1.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        lines(&out.stdout),
        [
            "keel/node1.yaml: valid controlplane config (one v1alpha1 document)",
            "  hostname     node1 (machine.network.hostname)",
            "  eth0         10.5.0.11/24; route default via 10.5.0.1; VIP 10.5.0.10 (TTL 3 s) [machine.network.interfaces (interface eth0)]",
            "  deviceSelector{hardwareAddr: 52:54:00:*, driver: virtio_net} DHCP (route metric 1024) [machine.network.interfaces (deviceSelector{hardwareAddr: 52:54:00:*, driver: virtio_net})]",
            "  lo           169.254.116.108/32 [machine.network.interfaces (interface lo)]",
            "  DNS          nameservers 10.5.0.1",
            "  etcd         member node1 of a static cluster of 3 (initialCluster: node1, node2, node3); TLS: mTLS with the config's own peer/server certificates; clients on every address",
            "  node API     off (no machine.ca)",
            "  ignored      machine: kubelet",
        ]
    );
    assert_eq!(
        lines(&out.stderr),
        ["keel/node1.yaml: warning: not supported by Keel, ignored: machine.kubelet (line 26)"]
    );
}

/// A multi-document config (the Talos 1.12+ way): what the node will do,
/// with the document behind each line.
#[test]
fn multi_document_config_says_what_the_node_does() {
    let out = validate(&["keel/node1-documents.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        lines(&out.stdout),
        [
            "keel/node1-documents.yaml: valid controlplane config (documents: v1alpha1, HostnameConfig, LinkAliasConfig, LinkConfig, VLANConfig, Layer2VIPConfig, ResolverConfig)",
            "  hostname     node1 (HostnameConfig)",
            "  net0         10.5.0.11/24; route default via 10.5.0.1; VIP 10.5.0.100 (TTL 5 s) [document 4 (LinkConfig net0)]",
            "  net0.7       VLAN 7 on net0; 10.7.0.11/24 [document 5 (VLANConfig net0.7)]",
            "  net0         alias: the one physical link where glob(\"52:54:00:00:00:*\", mac(link.permanent_addr)) [document 3 (LinkAliasConfig net0)]",
            "  DNS          nameservers 10.5.0.1",
            "  etcd         member node1 of a static cluster of 3 (initialCluster: node1, node2, node3); TLS: mTLS for peers and clients, certificates issued at boot from cluster.etcd.ca; clients on every address",
            "  node API     off (no machine.ca)",
            "  ignored      document 8 (KubeletConfig)",
        ]
    );
    assert_eq!(
        lines(&out.stderr),
        ["keel/node1-documents.yaml: warning: not supported by Keel, ignored: document 8 (KubeletConfig) (line 55)"]
    );
}

#[test]
fn every_talos_snippet_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/talos-snippets");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".yaml") {
            let out = validate(&[&format!("talos-snippets/{name}")]);
            assert_eq!(out.status.code(), Some(0), "{name}: {out:?}");
            n += 1;
        }
    }
    assert_eq!(n, 14);
}

#[test]
fn invalid_config_prints_every_error_and_exits_1() {
    let out = validate(&["broken/node1-broken.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    assert_eq!(
        lines(&out.stderr),
        [
            "broken/node1-broken.yaml: machine.network.interfaces[0].vip.ip (line 10, column 15): VIP 10.5.0.11 is also a static address at machine.network.interfaces[0].addresses[0], expected an address no node has statically (Keel adds and removes it)",
            "broken/node1-broken.yaml: machine.network.interfaces[1].mtu (line 12, column 14): mtu 9000 conflicts with mtu 1500 in an earlier entry for eth0, expected the same value or none",
            "broken/node1-broken.yaml: cluster.etcd (line 15, column 5): no cluster.etcd.ca: etcd would listen in plaintext on the node's address; expected cluster.etcd.ca (Keel issues this node's certificates from it, as Talos does), or allowInsecure: true to run etcd without TLS on purpose",
            "broken/node1-broken.yaml: cluster.etcd.initialCluster (line 16, column 7): this node's member name `node1` (from machine.network.hostname) is not in initialCluster, expected one of: node2, node3",
            "broken/node1-broken.yaml: invalid config: 4 errors",
        ]
    );
}

#[test]
fn type_error_names_path_line_and_column() {
    let out = validate(&["broken/vlan-id.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        lines(&out.stderr),
        [
            "broken/vlan-id.yaml: machine.network.interfaces[0].vlans[1].vlanId (line 8, column 21): VLAN id 5000 is out of range, expected 1 to 4094",
            "broken/vlan-id.yaml: invalid config: 1 error",
        ]
    );
}

#[test]
fn unreadable_file_is_1_and_usage_errors_are_2() {
    let out = validate(&["no/such/file.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(lines(&out.stderr)[0].starts_with("no/such/file.yaml: cannot read: "));
    assert_eq!(validate(&[]).status.code(), Some(2));
    assert_eq!(validate(&["a.yaml", "b.yaml"]).status.code(), Some(2));
    assert_eq!(validate(&["--bogus"]).status.code(), Some(2));
}

/// What `talosctl gen config` writes (Talos 1.13), unchanged: no member
/// list, so the cluster forms the Talos way; `machine.ca` turns the node
/// API on.
#[test]
fn talosctl_config_forms_its_cluster_by_bootstrap_and_serves_the_api() {
    let out = validate(&["talos/v1.13-controlplane.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = lines(&out.stdout);
    let row = |key: &str| {
        stdout
            .iter()
            .find(|l| l.starts_with(&format!("  {key:<12} ")))
            .cloned()
            .unwrap_or_else(|| panic!("no {key} line in {stdout:#?}"))
    };
    assert!(
        row("etcd").contains("formed the Talos way (no initialCluster): never started by itself; one `keel bootstrap` starts it on one node, the others join as learners through base:2379 (cluster.controlPlane.endpoint)"),
        "{stdout:#?}"
    );
    assert_eq!(
        row("node API"),
        "  node API     port 50443, mutual TLS: clients need a certificate signed by machine.ca"
    );
    // machine.ca, certSANs and controlPlane are read, not ignored.
    let stderr = lines(&out.stderr).join("\n");
    for key in ["machine.ca ", "machine.certSANs", "cluster.controlPlane"] {
        assert!(!stderr.contains(key), "{key} reported as ignored: {stderr}");
    }
}
