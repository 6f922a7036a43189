//! The benchmark floor's per-node initramfs: `floor.cpio` (busybox + etcd,
//! `keel-image --floor`) with a second cpio archive appended that holds
//! the node's etcd certificates. The floor's etcd then runs with TLS on
//! every listener and mutual TLS between peers, as Keel's does (a Talos
//! config's etcd always has its CA): the floor does the same work Keel
//! must, less everything else. The kernel unpacks concatenated archives
//! one after the other (Documentation/driver-api/early-userspace/
//! buffer-format.rst), so the certificates land in `/etc/etcd`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use keel_image::cpio::Writer;

use crate::nodes::NodeSpec;
use crate::pki::Ca;

/// Where the floor's /init (image/floor-init.sh) looks for them.
pub const CERT_DIR: &str = "etc/etcd";

/// Writes `dir/<hostname>.floor.cpio`: `base` followed by the node's
/// certificates, issued from `ca` as Keel issues its own
/// (init/src/etcd/args.rs): a server certificate for the node's address,
/// its name, 127.0.0.1 and localhost, and a peer certificate for its
/// address, each usable as client and server. Returns its path.
pub fn initrd(base: &Path, dir: &Path, ca: &Ca, node: &NodeSpec) -> anyhow::Result<PathBuf> {
    let issuer = keel::x509::Ca::from_pem(&ca.crt, &ca.key, "etcd-ca.crt", "etcd-ca.key")?;
    let leaf = |dns: Vec<String>, ips: Vec<std::net::IpAddr>| keel::x509::Leaf {
        common_name: node.hostname.clone(),
        dns,
        ips,
        server: true,
        client: true,
        ..Default::default()
    };
    let addr = std::net::IpAddr::V4(node.address);
    let server = issuer.issue(&leaf(
        vec![node.hostname.clone(), "localhost".to_owned()],
        vec![addr, std::net::Ipv4Addr::LOCALHOST.into()],
    ))?;
    let peer = issuer.issue(&leaf(vec![node.hostname.clone()], vec![addr]))?;
    let mut out = std::fs::read(base).with_context(|| format!("read {}", base.display()))?;
    let mut w = Writer::new(&mut out, 0);
    w.dir("etc", 0o755)?;
    w.dir(CERT_DIR, 0o755)?;
    for (name, text, perm) in [
        ("ca.crt", ca.crt.as_str(), 0o644),
        ("server.crt", server.crt.as_str(), 0o644),
        ("server.key", server.key.as_str(), 0o600),
        ("peer.crt", peer.crt.as_str(), 0o644),
        ("peer.key", peer.key.as_str(), 0o600),
    ] {
        let bytes = text.as_bytes();
        w.file(
            &format!("{CERT_DIR}/{name}"),
            perm,
            bytes.len() as u64,
            &mut &bytes[..],
        )?;
    }
    w.finish()?;
    let path = dir.join(format!("{}.floor.cpio", node.hostname));
    std::fs::write(&path, &out).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_the_certificates_after_the_base_archive() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("floor.cpio");
        std::fs::write(&base, b"BASE ARCHIVE").unwrap();
        let ca = Ca::make().unwrap();
        let topology = crate::Topology::new(3, "10.5.0.100".parse().unwrap()).unwrap();
        let node = &topology.nodes[1];
        let path = initrd(&base, dir.path(), &ca, node).unwrap();
        assert_eq!(path, dir.path().join("node2.floor.cpio"));
        let out = std::fs::read(&path).unwrap();
        assert!(out.starts_with(b"BASE ARCHIVE"));
        let text = String::from_utf8_lossy(&out[12..]);
        // newc headers ("070701"), the files by name, the CA as given.
        assert!(text.starts_with("070701"), "{text}");
        for name in ["ca.crt", "server.crt", "server.key", "peer.crt", "peer.key"] {
            assert!(text.contains(&format!("{CERT_DIR}/{name}")), "{name}");
        }
        assert!(text.contains(&ca.crt));
        assert!(text.contains("TRAILER!!!"));
    }
}
