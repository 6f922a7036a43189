//! Certificates from a CA in the machine config, as Talos issues them at
//! boot: etcd's peer, server and client certificates from
//! `cluster.etcd.ca` (and the node API's from `machine.ca`).
//!
//! The CA arrives as Talos writes it: a PEM certificate and key, the key
//! PKCS#8 or SEC1 (`EC PRIVATE KEY`, what `talosctl gen` writes for the
//! etcd CA). It must be a CA (basicConstraints CA:TRUE) and the key must be
//! its certificate's. Each leaf gets a new ECDSA P-256 key (Talos follows
//! the CA's algorithm; P-256 is what its default CA is and what every
//! etcd and gRPC client speaks), a serial from that key, key usages
//! digitalSignature and keyEncipherment, and is valid for [`LIFETIME`]
//! from now, renewed well before (see `etcd::renew`). Keys never leave the
//! node and are never logged ([`Pair`]'s Debug redacts them).
//!
//! Choice of crate: rcgen on ring (ring is already in the binary through
//! rustls), with x509-parser for reading the CA certificate.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::etcd::pki::Pair;

/// How long an issued certificate is valid. Short enough that a leaked
/// key is not good for long, long enough that a node that misses a
/// renewal keeps working: Keel renews at two thirds ([`renew_after`]).
pub const LIFETIME: Duration = Duration::from_secs(30 * 86400);

/// When to renew a certificate issued now.
pub fn renew_after() -> Duration {
    LIFETIME * 2 / 3
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum X509Error {
    #[error("{key} is not a PEM certificate: {reason}")]
    BadCertificate { key: String, reason: String },
    #[error("{key} is not a CA certificate (basicConstraints CA:TRUE), expected the CA that signs the node certificates")]
    NotCa { key: String },
    #[error("{key} is not a usable private key: {reason}")]
    BadKey { key: String, reason: String },
    #[error("{key} does not belong to the certificate in {crt}")]
    KeyMismatch { key: String, crt: String },
    #[error("cannot issue a certificate for {what}: {reason}")]
    Issue { what: String, reason: String },
}

/// A CA that can sign.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM (the trust anchor to hand out).
    pub crt_pem: String,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca { key: <redacted> }")
    }
}

/// What to issue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Leaf {
    pub common_name: String,
    /// Subject `O` values: Talos carries a client's roles there
    /// (`os:admin`).
    pub organization: Vec<String>,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub server: bool,
    pub client: bool,
    /// How long it is valid; [`LIFETIME`] when `None`.
    pub lifetime: Option<Duration>,
}

/// The key algorithm of a CA [`Ca::generate`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// What Talos uses for its OS (machine) CA.
    Ed25519,
    /// What Talos uses for its etcd CA.
    EcdsaP256,
}

/// Checks that `pem` is a CA certificate (for `machine.acceptedCAs`).
pub fn certificate_is_ca(pem: &str, key: &str) -> Result<(), X509Error> {
    with_ca_certificate(pem, key, |_, _| Ok(()))
}

/// Parses `pem` (named `key` in errors), checks that it is a CA
/// certificate (basicConstraints CA), and hands its DER and parsed form to
/// `f`.
fn with_ca_certificate<T>(
    pem: &str,
    key: &str,
    f: impl FnOnce(
        &CertificateDer<'_>,
        &x509_parser::certificate::X509Certificate<'_>,
    ) -> Result<T, X509Error>,
) -> Result<T, X509Error> {
    let der =
        CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| X509Error::BadCertificate {
            key: key.to_owned(),
            reason: format!("no PEM CERTIFICATE block ({e})"),
        })?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| X509Error::BadCertificate {
            key: key.to_owned(),
            reason: e.to_string(),
        })?;
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|b| b.value.ca);
    if !is_ca {
        return Err(X509Error::NotCa {
            key: key.to_owned(),
        });
    }
    f(&der, &cert)
}

impl Ca {
    /// Reads and checks a CA; `crt_key`/`key_key` name the config keys in
    /// errors (`cluster.etcd.ca.crt`).
    pub fn from_pem(
        crt_pem: &str,
        key_pem: &str,
        crt_key: &str,
        key_key: &str,
    ) -> Result<Ca, X509Error> {
        with_ca_certificate(crt_pem, crt_key, |der, cert| {
            Ca::from_parts(der, cert, crt_pem, key_pem, crt_key, key_key)
        })
    }

    fn from_parts(
        der: &CertificateDer<'_>,
        cert: &x509_parser::certificate::X509Certificate<'_>,
        crt_pem: &str,
        key_pem: &str,
        crt_key: &str,
        key_key: &str,
    ) -> Result<Ca, X509Error> {
        let key = key_pair(key_pem, key_key)?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(X509Error::KeyMismatch {
                key: key_key.to_owned(),
                crt: crt_key.to_owned(),
            });
        }
        let validity = cert.validity();
        let (not_before, not_after) = (
            validity.not_before.to_datetime(),
            validity.not_after.to_datetime(),
        );
        let issuer = Issuer::from_ca_cert_der(der, key).map_err(|e| X509Error::BadCertificate {
            key: crt_key.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Ca {
            issuer,
            crt_pem: crt_pem.to_owned(),
            not_before,
            not_after,
        })
    }

    /// A new self-signed CA (`keel gen`), valid for `lifetime` from an
    /// hour ago; returns it with its certificate and key as PEM.
    pub fn generate(
        common_name: &str,
        organization: &str,
        kind: KeyKind,
        lifetime: Duration,
    ) -> Result<(Ca, Pair), X509Error> {
        let err = |reason: String| X509Error::Issue {
            what: common_name.to_owned(),
            reason,
        };
        let alg = match kind {
            KeyKind::Ed25519 => &rcgen::PKCS_ED25519,
            KeyKind::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        };
        let key = KeyPair::generate_for(alg).map_err(|e| err(e.to_string()))?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| err(e.to_string()))?;
        let mut dn = DistinguishedName::new();
        if !common_name.is_empty() {
            dn.push(DnType::CommonName, common_name);
        }
        dn.push(DnType::OrganizationName, organization);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after =
            now + time::Duration::try_from(lifetime).map_err(|e| err(e.to_string()))?;
        let cert = params.self_signed(&key).map_err(|e| err(e.to_string()))?;
        let pair = Pair {
            crt: cert.pem(),
            key: key.serialize_pem(),
        };
        let ca = Ca::from_pem(&pair.crt, &pair.key, "generated CA", "generated CA key")?;
        Ok((ca, pair))
    }

    /// Issues `leaf` with a new key.
    pub fn issue(&self, leaf: &Leaf) -> Result<Pair, X509Error> {
        let err = |reason: String| X509Error::Issue {
            what: leaf.common_name.clone(),
            reason,
        };
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| err(e.to_string()))?;
        let mut params =
            CertificateParams::new(leaf.dns.clone()).map_err(|e| err(e.to_string()))?;
        params
            .subject_alt_names
            .extend(leaf.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let mut dn = DistinguishedName::new();
        for o in &leaf.organization {
            dn.push(DnType::OrganizationName, o.as_str());
        }
        dn.push(DnType::CommonName, leaf.common_name.as_str());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = [
            (leaf.server, ExtendedKeyUsagePurpose::ServerAuth),
            (leaf.client, ExtendedKeyUsagePurpose::ClientAuth),
        ]
        .into_iter()
        .filter_map(|(want, p)| want.then_some(p))
        .collect();
        // No serial given: rcgen derives it from the (new, random) public
        // key, so each certificate has its own.
        let (not_before, not_after) = self.validity(leaf.lifetime.unwrap_or(LIFETIME));
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| err(e.to_string()))?;
        Ok(Pair {
            crt: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// From an hour ago (clocks differ a little) for [`LIFETIME`]. A clock
    /// that reads earlier than the CA itself (no RTC, no time sync yet) is
    /// certainly wrong: the leaf then lives as long as the CA, so that
    /// peers with a right clock accept it, and Keel says so.
    fn validity(&self, lifetime: Duration) -> (time::OffsetDateTime, time::OffsetDateTime) {
        let now = time::OffsetDateTime::now_utc();
        if now < self.not_before {
            log::warn!(
                "the clock reads {now}, before the CA's own start ({}): issuing certificates valid until the CA expires",
                self.not_before
            );
            return (self.not_before, self.not_after);
        }
        let hour = time::Duration::hours(1);
        let life = time::Duration::try_from(lifetime).unwrap_or(time::Duration::days(30));
        (now - hour, (now + life).min(self.not_after))
    }
}

/// A private key from PEM: PKCS#8, or SEC1 (`EC PRIVATE KEY`), which ring
/// does not read and is wrapped into PKCS#8 here.
fn key_pair(pem: &str, key: &str) -> Result<KeyPair, X509Error> {
    let bad = |reason: &str| X509Error::BadKey {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    let block = ::pem::parse(pem).map_err(|_| bad("no PEM block"))?;
    // Talos labels its Ed25519 keys `ED25519 PRIVATE KEY`; the contents
    // are PKCS#8 as usual.
    let der = match block.tag() {
        "PRIVATE KEY" | "ED25519 PRIVATE KEY" => {
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(block.contents().to_vec()))
        }
        "EC PRIVATE KEY" => PrivateKeyDer::Sec1(block.contents().to_vec().into()),
        "RSA PRIVATE KEY" => PrivateKeyDer::Pkcs1(block.contents().to_vec().into()),
        _ => return Err(bad("no PEM PRIVATE KEY or EC PRIVATE KEY block")),
    };
    match der {
        PrivateKeyDer::Pkcs8(p) => KeyPair::try_from(&PrivateKeyDer::Pkcs8(p)).map_err(|_| {
            bad("PKCS#8 key of a type Keel cannot sign with (ECDSA P-256/P-384, Ed25519, RSA)")
        }),
        PrivateKeyDer::Sec1(s) => {
            for curve in [P256, P384] {
                let wrapped = sec1_to_pkcs8(s.secret_sec1_der(), curve);
                let pkcs8 = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(wrapped));
                if let Ok(k) = KeyPair::try_from(&pkcs8) {
                    return Ok(k);
                }
            }
            Err(bad(
                "EC key on a curve Keel cannot sign with (P-256, P-384)",
            ))
        }
        _ => Err(bad(
            "RSA PKCS#1 keys are not supported, expected PKCS#8 or an EC key",
        )),
    }
}

/// DER object identifiers (contents only) of the two curves ring signs on.
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// id-ecPublicKey, 1.2.840.10045.2.1.
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// RFC 5915 section 3 / RFC 5208: an ECPrivateKey inside a PrivateKeyInfo,
/// `SEQUENCE { INTEGER 0, SEQUENCE { ecPublicKey, curve }, OCTET STRING }`.
fn sec1_to_pkcs8(sec1: &[u8], curve: &[u8]) -> Vec<u8> {
    let mut alg = tlv(0x06, EC_PUBLIC_KEY);
    alg.extend(tlv(0x06, curve));
    let mut body = tlv(0x02, &[0]);
    body.extend(tlv(0x30, &alg));
    body.extend(tlv(0x04, sec1));
    tlv(0x30, &body)
}

/// One DER tag-length-value (definite length, X.690 8.1.3).
fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len.to_be_bytes()[std::mem::size_of::<usize>() - 1]);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len().to_be_bytes()[std::mem::size_of::<usize>() - 1]);
        out.extend(bytes);
    }
    out.extend_from_slice(value);
    out
}

#[cfg(test)]
#[path = "x509_tests.rs"]
mod tests;
