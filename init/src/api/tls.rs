//! The node API's TLS, as Talos's apid does it: a server certificate
//! issued at boot from `machine.ca` (CN the hostname; SANs the hostname,
//! `machine.certSANs`, every node address and loopback; server auth only;
//! valid a day, issued again every 12 hours and whenever the node's
//! addresses change), and client certificates required, verified against
//! `machine.ca` and `machine.acceptedCAs` (a `talosconfig` holds one).
//!
//! The roles a client has are its certificate's subject `O` values
//! (Talos: `os:admin`, `os:operator`, `os:reader`); see [`super::Role`].

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::x509::{Ca, Leaf, X509Error};

/// How long a server certificate is valid, and when it is issued again.
pub const SERVER_LIFETIME: Duration = Duration::from_secs(24 * 3600);
pub const SERVER_RENEW: Duration = Duration::from_secs(12 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Ca(#[from] X509Error),
    #[error("{what} is not usable for TLS: {reason}")]
    Unusable { what: String, reason: String },
}

/// What the server certificate names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub hostname: String,
    /// `machine.certSANs`: names and addresses.
    pub cert_sans: Vec<String>,
    pub addresses: Vec<IpAddr>,
}

impl Names {
    fn leaf(&self) -> Leaf {
        let mut dns = vec![self.hostname.clone()];
        let mut ips: Vec<IpAddr> = Vec::new();
        for san in &self.cert_sans {
            match san.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => dns.push(san.clone()),
            }
        }
        ips.extend(self.addresses.iter().copied());
        ips.extend([
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ]);
        let mut seen = std::collections::BTreeSet::new();
        ips.retain(|ip| seen.insert(*ip));
        dns.dedup();
        Leaf {
            common_name: self.hostname.clone(),
            dns,
            ips,
            server: true,
            client: false,
            lifetime: Some(SERVER_LIFETIME),
            ..Leaf::default()
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server certificate of the moment, swapped in place when reissued:
/// connections already up keep theirs, new handshakes get the new one.
#[derive(Debug)]
pub struct ServerCert {
    ca: Ca,
    current: Mutex<Arc<CertifiedKey>>,
    names: Mutex<Names>,
}

impl ServerCert {
    /// Issues the first certificate for `names`.
    pub fn new(ca: Ca, names: Names) -> Result<Arc<ServerCert>, TlsError> {
        let key = issue(&ca, &names)?;
        Ok(Arc::new(ServerCert {
            ca,
            current: Mutex::new(key),
            names: Mutex::new(names),
        }))
    }

    /// Issues a new certificate when `names` changed or `force`; true when
    /// it did.
    pub fn reissue(&self, names: Names, force: bool) -> Result<bool, TlsError> {
        if !force && *crate::lock(&self.names) == names {
            return Ok(false);
        }
        let key = issue(&self.ca, &names)?;
        *crate::lock(&self.current) = key;
        *crate::lock(&self.names) = names;
        Ok(true)
    }

    /// The CA certificate (PEM), the trust anchor clients need.
    pub fn ca_pem(&self) -> &str {
        &self.ca.crt_pem
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(crate::lock(&self.current).clone())
    }
}

fn issue(ca: &Ca, names: &Names) -> Result<Arc<CertifiedKey>, TlsError> {
    let pair = ca.issue(&names.leaf())?;
    let unusable = |reason: String| TlsError::Unusable {
        what: "the issued server certificate".to_owned(),
        reason,
    };
    let cert =
        CertificateDer::from_pem_slice(pair.crt.as_bytes()).map_err(|e| unusable(e.to_string()))?;
    let key =
        PrivateKeyDer::from_pem_slice(pair.key.as_bytes()).map_err(|e| unusable(e.to_string()))?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| unusable(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(vec![cert], signing)))
}

/// The server's TLS config: TLS 1.2 and 1.3 (rustls's safe defaults), a
/// client certificate required and verified against `client_cas` (PEM:
/// `machine.ca` and `machine.acceptedCAs`), HTTP/1.1 over ALPN.
pub fn server_config(
    cert: Arc<ServerCert>,
    client_cas: &[String],
) -> Result<ServerConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    for (i, pem) in client_cas.iter().enumerate() {
        let what = if i == 0 {
            "machine.ca.crt".to_owned()
        } else {
            format!("machine.acceptedCAs[{}].crt", i - 1)
        };
        let der =
            CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Unusable {
                what: what.clone(),
                reason: e.to_string(),
            })?;
        roots.add(der).map_err(|e| TlsError::Unusable {
            what,
            reason: e.to_string(),
        })?;
    }
    let unusable = |reason: String| TlsError::Unusable {
        what: "the client CA list".to_owned(),
        reason,
    };
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| unusable(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| unusable(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The client's identity from its (verified) certificate: the subject's
/// `O` values (roles) and its `CN`.
pub fn identity(der: &[u8]) -> (Vec<String>, String) {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return (Vec::new(), String::new());
    };
    let subject = cert.subject();
    let orgs = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or("")
        .to_owned();
    (orgs, cn)
}
