//! The etcd CA in the config: Talos's (only `cluster.etcd.ca`, crt + key)
//! is valid; a CA without its key, a CA that is not a CA, a key that is
//! not the certificate's, and plaintext etcd without `allowInsecure` are
//! errors naming the key and line.

use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

use super::{errors, ok};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn fixture(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/talos")
        .join(name);
    b64(&std::fs::read_to_string(p).unwrap())
}

/// A self-signed certificate (CA or not) and its key, base64 PEM.
fn made(ca: bool) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    let cert = p.self_signed(&key).unwrap();
    (b64(&cert.pem()), b64(&key.serialize_pem()))
}

fn with_ca(crt: &str, key: Option<&str>) -> String {
    let key = key.map_or(String::new(), |k| format!("      key: {k}\n"));
    format!("machine:\n  type: controlplane\ncluster:\n  etcd:\n    ca:\n      crt: {crt}\n{key}")
}

#[test]
fn etcd_ca_in_the_config() {
    // Talos's own: valid as it is.
    ok(&with_ca(
        &fixture("etcd-ca.crt"),
        Some(&fixture("etcd-ca.key")),
    ));
    let (ca_crt, ca_key) = made(true);
    let (other_crt, other_key) = made(true);
    let (leaf_crt, leaf_key) = made(false);
    let _ = other_crt;
    // (what, config, path, line, message fragment)
    let cases = [
        ("CA without its key", with_ca(&ca_crt, None), "cluster.etcd.ca", 6, "cluster.etcd.ca has no key"),
        ("key of another CA", with_ca(&ca_crt, Some(&other_key)), "cluster.etcd.ca.key", 7, "cluster.etcd.ca.key does not belong to the certificate in cluster.etcd.ca.crt"),
        ("not a CA", with_ca(&leaf_crt, Some(&leaf_key)), "cluster.etcd.ca.crt", 6, "cluster.etcd.ca.crt is not a CA certificate"),
        (
            "no CA: plaintext on the node address",
            "machine:\n  type: controlplane\ncluster:\n  etcd:\n    advertisedSubnets: [10.0.0.0/8]\n".to_owned(),
            "cluster.etcd",
            5,
            "etcd would listen in plaintext",
        ),
    ];
    for (what, text, path, line, fragment) in cases {
        let errs = errors(&text);
        let e = &errs.0[0];
        assert_eq!(errs.len(), 1, "{what}: {errs}");
        assert_eq!((e.path.as_str(), e.line), (path, Some(line)), "{what}: {e}");
        assert!(e.message.contains(fragment), "{what}: {e}");
        assert!(
            !e.to_string().contains(&ca_key[..20]),
            "{what}: key material in {e}"
        );
    }
    // A worker runs no etcd: nothing to say.
    ok("machine:\n  type: worker\ncluster:\n  etcd:\n    advertisedSubnets: [10.0.0.0/8]\n");
    // Without a CA on purpose.
    ok("cluster:\n  etcd:\n    allowInsecure: true\n");
}
