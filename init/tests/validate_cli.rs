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
        ["keel/node1.yaml: valid v1alpha1 controlplane config: hostname node1, 3 interfaces (2 static addresses, 1 DHCP), 1 VIP, etcd member node1 of 3"]
    );
    assert_eq!(
        lines(&out.stderr),
        ["keel/node1.yaml: warning: not supported by Keel, ignored: machine.kubelet (line 26)"]
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
            "broken/node1-broken.yaml: cluster.etcd.initialCluster (line 16, column 7): this node's member name `node1` (from machine.network.hostname) is not in initialCluster, expected one of: node2, node3",
            "broken/node1-broken.yaml: invalid config: 3 errors",
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
