//! Issuing from a CA: Talos's own etcd CA (SEC1 key, as `talosctl gen`
//! writes it) and CAs made here; SANs, the chain (checked by rustls's
//! WebPKI verifier, what etcd-client uses), the key, and the CA errors.

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{ServerName, UnixTime};

use super::*;

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/talos")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A self-signed CA (or a leaf, with `ca: false`) made here: (crt, key).
fn make(ca: bool) -> (String, String) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = if ca {
        IsCa::Ca(rcgen::BasicConstraints::Unconstrained)
    } else {
        IsCa::ExplicitNoCa
    };
    p.distinguished_name.push(DnType::OrganizationName, "test");
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn verify(ca_pem: &str, leaf_pem: &str, name: &str) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let leaf = CertificateDer::from_pem_slice(leaf_pem.as_bytes()).unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    verifier
        .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
        .map(|_| ())
}

#[test]
fn issued_certificates_chain_to_the_ca_with_the_node_names() {
    let talos = (fixture("etcd-ca.crt"), fixture("etcd-ca.key"));
    let here = make(true);
    for (what, (crt, key)) in [("Talos's etcd CA (SEC1 key)", talos), ("a PKCS#8 CA", here)] {
        let ca =
            Ca::from_pem(&crt, &key, "ca.crt", "ca.key").unwrap_or_else(|e| panic!("{what}: {e}"));
        let leaf = Leaf {
            common_name: "node1".into(),
            dns: vec!["node1".into(), "localhost".into()],
            ips: vec![
                "10.5.0.11".parse().unwrap(),
                "127.0.0.1".parse().unwrap(),
                "::1".parse().unwrap(),
            ],
            server: true,
            client: true,
            ..Default::default()
        };
        let pair = ca.issue(&leaf).unwrap();
        // (name the client dials, accepted)
        let names = [
            ("10.5.0.11", true),
            ("127.0.0.1", true),
            ("::1", true),
            ("node1", true),
            ("localhost", true),
            ("10.5.0.12", false),
            ("node2", false),
        ];
        for (name, ok) in names {
            let got = verify(&crt, &pair.crt, name);
            assert_eq!(got.is_ok(), ok, "{what}: {name}: {got:?}");
        }
        // Another CA does not vouch for it.
        assert!(
            verify(&make(true).0, &pair.crt, "10.5.0.11").is_err(),
            "{what}"
        );
        // The key is the certificate's, and is PKCS#8.
        assert!(
            pair.key.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{what}"
        );
        crate::etcd::args::check_pair(&pair.crt, &pair.key, "crt", "key")
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        // Valid from about now for LIFETIME (Talos's CA outlives it).
        let der = CertificateDer::from_pem_slice(pair.crt.as_bytes()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let v = cert.validity();
        let life = v.not_after.timestamp() - v.not_before.timestamp();
        let want = i64::try_from(LIFETIME.as_secs()).unwrap() + 3600;
        assert!((life - want).abs() < 5, "{what}: lifetime {life} s");
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth, "{what}");
        assert!(!cert.is_ca(), "{what}");
    }
}

#[test]
fn a_client_only_certificate_is_not_a_server_one() {
    let (crt, key) = make(true);
    let ca = Ca::from_pem(&crt, &key, "c", "k").unwrap();
    let pair = ca
        .issue(&Leaf {
            common_name: "keel".into(),
            dns: Vec::new(),
            ips: Vec::new(),
            server: false,
            client: true,
            ..Default::default()
        })
        .unwrap();
    let der = CertificateDer::from_pem_slice(pair.crt.as_bytes()).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
}

#[test]
fn ca_errors_name_the_key() {
    let (ca_crt, ca_key) = make(true);
    let (other_crt, other_key) = make(true);
    let (leaf_crt, leaf_key) = make(false);
    let cases: Vec<(&str, String, String, X509Error)> = vec![
        (
            "key of another CA",
            ca_crt.clone(),
            other_key,
            X509Error::KeyMismatch {
                key: "ca.key".into(),
                crt: "ca.crt".into(),
            },
        ),
        (
            "not a CA",
            leaf_crt,
            leaf_key,
            X509Error::NotCa {
                key: "ca.crt".into(),
            },
        ),
        (
            "not PEM",
            "hello".into(),
            ca_key.clone(),
            X509Error::BadCertificate {
                key: "ca.crt".into(),
                reason: String::new(),
            },
        ),
        (
            "a key that is no key",
            other_crt,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
            X509Error::BadKey {
                key: "ca.key".into(),
                reason: String::new(),
            },
        ),
    ];
    for (what, crt, key, want) in cases {
        let got = Ca::from_pem(&crt, &key, "ca.crt", "ca.key").unwrap_err();
        let same = match (&got, &want) {
            (
                X509Error::BadCertificate { key: a, .. },
                X509Error::BadCertificate { key: b, .. },
            ) => a == b,
            (X509Error::BadKey { key: a, .. }, X509Error::BadKey { key: b, .. }) => a == b,
            (g, w) => g == w,
        };
        assert!(same, "{what}: got {got:?}");
        // Never the key's bytes in the message.
        assert!(!got.to_string().contains("BEGIN"), "{what}: {got}");
    }
    // Talos's machine CA is Ed25519: readable too (the node API's CA).
    Ca::from_pem(
        &fixture("machine-ca.crt"),
        &fixture("machine-ca.key"),
        "machine.ca.crt",
        "machine.ca.key",
    )
    .unwrap();
}

#[test]
fn der_lengths() {
    // (length, encoded length octets)
    let cases: [(usize, &[u8]); 4] = [
        (0, &[0x00]),
        (127, &[0x7f]),
        (128, &[0x81, 0x80]),
        (300, &[0x82, 0x01, 0x2c]),
    ];
    for (len, want) in cases {
        let got = tlv(0x04, &vec![0; len]);
        assert_eq!(&got[1..1 + want.len()], want, "{len}");
    }
}
