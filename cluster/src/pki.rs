//! The etcd CA of a `make run` cluster: made once per run directory (as
//! `talosctl gen config` makes one per cluster: ECDSA P-256, SEC1 key) and
//! rendered into every node's config, so the nodes run etcd with mTLS;
//! plus a client certificate for the operator's `etcdctl`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA's certificate and key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ca {
    pub crt: String,
    pub key: String,
}

impl Ca {
    /// The CA kept in `dir` (`etcd-ca.crt`, `etcd-ca.key`), made if
    /// missing.
    pub fn load_or_make(dir: &Path) -> anyhow::Result<Ca> {
        let (crt, key) = (dir.join("etcd-ca.crt"), dir.join("etcd-ca.key"));
        if let (Ok(c), Ok(k)) = (std::fs::read_to_string(&crt), std::fs::read_to_string(&key)) {
            return Ok(Ca { crt: c, key: k });
        }
        let ca = Ca::make()?;
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        write_private(&key, &ca.key)?;
        std::fs::write(&crt, &ca.crt).with_context(|| format!("write {}", crt.display()))?;
        Ok(ca)
    }

    /// A new self-signed CA, `O=etcd`, as Talos's `NewEtcdCA`.
    pub fn make() -> anyhow::Result<Ca> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = ca_params()?.self_signed(&key)?;
        Ok(Ca {
            crt: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// `crt` base64-encoded, as a Talos config carries it.
    pub fn crt_b64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.crt)
    }

    pub fn key_b64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.key)
    }

    /// A client certificate for `etcdctl` in `dir` (`etcdctl.crt`,
    /// `etcdctl.key`, and `etcd-ca.crt` next to them); returns the paths.
    pub fn client_files(&self, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
        let (crt, key) = (dir.join("etcdctl.crt"), dir.join("etcdctl.key"));
        let pair = self.client("etcdctl")?;
        write_private(&key, &pair.1)?;
        std::fs::write(&crt, &pair.0).with_context(|| format!("write {}", crt.display()))?;
        Ok((crt, key))
    }

    /// A client certificate (crt, key) named `cn`, signed by this CA.
    pub fn client(&self, cn: &str) -> anyhow::Result<(String, String)> {
        let ca_key = KeyPair::from_pem(&self.key).context("the CA key")?;
        let issuer = Issuer::new(ca_params()?, ca_key);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::OrganizationName, "etcd");
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    Ok(p)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}

/// The cluster's machine (OS) CA, as `talosctl gen config` makes it
/// (Ed25519, `O=talos`), kept in the run directory: every node's
/// `machine.ca`, from which each issues its node API certificate.
pub fn machine_ca(dir: &Path) -> anyhow::Result<Ca> {
    let (crt, key) = (dir.join("machine-ca.crt"), dir.join("machine-ca.key"));
    if let (Ok(c), Ok(k)) = (std::fs::read_to_string(&crt), std::fs::read_to_string(&key)) {
        return Ok(Ca { crt: c, key: k });
    }
    let (_, pair) = keel::x509::Ca::generate(
        "",
        "talos",
        keel::x509::KeyKind::Ed25519,
        std::time::Duration::from_secs(10 * 365 * 86400),
    )?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    write_private(&key, &pair.key)?;
    std::fs::write(&crt, &pair.crt).with_context(|| format!("write {}", crt.display()))?;
    Ok(Ca {
        crt: pair.crt,
        key: pair.key,
    })
}

/// An admin talosconfig (`dir/talosconfig`, context `keel-run`) for the
/// machine CA `ca`: an `O=os:admin` client certificate valid a year, the
/// nodes as `nodes` (`127.0.0.1:<forwarded port>`). Returns its
/// credentials and path.
pub fn talosconfig(
    dir: &Path,
    ca: &Ca,
    nodes: Vec<String>,
) -> anyhow::Result<(keel::api::talosconfig::Credentials, PathBuf)> {
    let issuer = keel::x509::Ca::from_pem(&ca.crt, &ca.key, "machine-ca.crt", "machine-ca.key")?;
    let admin = issuer.issue(&keel::x509::Leaf {
        organization: vec!["os:admin".to_owned()],
        client: true,
        lifetime: Some(std::time::Duration::from_secs(365 * 86400)),
        ..keel::x509::Leaf::default()
    })?;
    let creds = keel::api::talosconfig::Credentials {
        context: "keel-run".to_owned(),
        endpoints: Vec::new(),
        nodes,
        ca: ca.crt.clone(),
        crt: admin.crt,
        key: admin.key,
    };
    let path = dir.join("talosconfig");
    write_private(&path, &keel::api::talosconfig::render(&creds))?;
    Ok((creds, path))
}
