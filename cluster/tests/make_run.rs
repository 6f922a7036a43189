//! The 3-node scenario of `make run`, non-interactive (`--check`): the real
//! `keel-cluster` binary boots three nodes from the built image with
//! config disks rendered from `examples/cluster.yaml.tmpl`, and must see
//! every node ready with etcd healthy, exactly one MAC answering ARP for
//! the VIP, and after a graceful power-off of that node, another one.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn three_nodes_come_up_and_the_vip_moves_on_power_off() {
    let build = std::env::var_os("KEEL_BUILD")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("build"));
    assert!(
        build.join("vmlinux").exists(),
        "{} has no vmlinux: run `make image` (or `make test`) first",
        build.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keel-cluster"))
        .arg("--check")
        .args(["--accel", "tcg", "--nodes", "3", "--vip", "10.5.0.100"])
        .arg("--build")
        .arg(&build)
        .arg("--dir")
        .arg(dir.path())
        .arg("--template")
        .arg(root().join("examples/cluster.yaml.tmpl"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let consoles: String = (1..=3)
        .map(|n| {
            let log = std::fs::read_to_string(dir.path().join(format!("node{n}.console.log")))
                .unwrap_or_default();
            let keel: Vec<&str> = log.lines().filter(|l| l.contains("keel:")).collect();
            format!("=== node{n}\n{}\n", keel.join("\n"))
        })
        .collect();
    assert!(
        out.status.success(),
        "keel-cluster --check failed ({}):\n{stdout}\n{}\n{consoles}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "check: all 3 nodes ready, etcd healthy",
        "check: VIP 10.5.0.100 answered by node",
        "powered off; VIP 10.5.0.100 answered by node",
        "check: ok",
    ] {
        assert!(stdout.contains(want), "{want:?} missing:\n{stdout}");
    }
    // Every node got its config from its KEEL-CONFIG disk.
    for n in 1..=3 {
        let log = std::fs::read_to_string(dir.path().join(format!("node{n}.console.log"))).unwrap();
        assert!(
            log.contains("label KEEL-CONFIG") && log.contains(&format!("hostname node{n}")),
            "node{n} did not load its config disk:\n{consoles}"
        );
    }
    eprintln!("{stdout}");
}
