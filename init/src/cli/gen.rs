//! `keel gen`: credentials and a config skeleton for users without Talos
//! tooling, made the way `talosctl gen config` makes them: a machine (OS)
//! CA, Ed25519, subject `O=talos`, 10 years; an etcd CA, ECDSA P-256,
//! `O=etcd`, 10 years; an admin client certificate from the machine CA,
//! `O=os:admin`, client auth, 1 year, in a `talosconfig`; and a v1alpha1
//! control-plane config carrying both CAs and the control-plane endpoint,
//! without an etcd member list (the cluster forms by one bootstrap).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;

use crate::api::talosconfig::{self, Credentials};
use crate::x509::{Ca, KeyKind, Leaf};

const YEAR: Duration = Duration::from_secs(365 * 86400);

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    pub out: PathBuf,
    pub name: String,
    /// `https://<VIP>:6443`: the control-plane endpoint; its host, when an
    /// address, is also the VIP in the skeleton.
    pub endpoint: String,
    pub force: bool,
}

/// The files written, in order.
pub fn generate(o: &Options) -> anyhow::Result<Vec<PathBuf>> {
    let talos = o.out.join("talosconfig");
    let config = o.out.join("controlplane.yaml");
    for f in [&talos, &config] {
        if f.exists() && !o.force {
            anyhow::bail!("{} exists; --force overwrites it", f.display());
        }
    }
    let endpoint = crate::config::types::EndpointUrl::try_from(o.endpoint.clone())
        .map_err(|e| anyhow::anyhow!("--endpoint: {e}"))?;
    let (machine_ca, machine_pair) = Ca::generate("", "talos", KeyKind::Ed25519, 10 * YEAR)?;
    let (_, etcd_pair) = Ca::generate("", "etcd", KeyKind::EcdsaP256, 10 * YEAR)?;
    let admin = machine_ca.issue(&Leaf {
        common_name: String::new(),
        organization: vec!["os:admin".to_owned()],
        client: true,
        lifetime: Some(YEAR),
        ..Leaf::default()
    })?;
    std::fs::create_dir_all(&o.out)?;
    let vip = endpoint.host().parse::<std::net::IpAddr>().ok();
    let creds = Credentials {
        context: o.name.clone(),
        endpoints: vip.map(|v| vec![v.to_string()]).unwrap_or_default(),
        nodes: Vec::new(),
        ca: machine_pair.crt.clone(),
        crt: admin.crt,
        key: admin.key,
    };
    write_private(&talos, &talosconfig::render(&creds))?;
    write_private(
        &config,
        &skeleton(&o.name, endpoint.as_str(), vip, &machine_pair, &etcd_pair),
    )?;
    Ok(vec![talos, config])
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn skeleton(
    name: &str,
    endpoint: &str,
    vip: Option<std::net::IpAddr>,
    machine: &crate::etcd::pki::Pair,
    etcd: &crate::etcd::pki::Pair,
) -> String {
    let vip = match vip {
        Some(ip) => format!("        vip:\n          ip: {ip}\n"),
        None => String::new(),
    };
    format!(
        "# Written by `keel gen`: a Talos v1alpha1 machine config for a Keel
# control-plane node (check it with `keel validate`). Every control-plane
# node boots this file, adapted to its network; no node has an etcd member
# list: bootstrap exactly one of them,
#   keel --talosconfig talosconfig --nodes <its address> bootstrap
# and the others join it as learners through the endpoint below.
# The keys are secrets: this file is mode 0600.
version: v1alpha1
machine:
  type: controlplane
  ca:
    crt: {}
    key: {}
  network:
    interfaces:
      - deviceSelector:
          physical: true
        dhcp: true
{vip}cluster:
  clusterName: {name}
  controlPlane:
    endpoint: {endpoint}
  etcd:
    ca:
      crt: {}
      key: {}
",
        b64(&machine.crt),
        b64(&machine.key),
        b64(&etcd.crt),
        b64(&etcd.key),
    )
}

/// Writes `text` to `path`, mode 0600 from the start (it holds keys).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// The skeleton is a valid config carrying both CAs, and the
    /// talosconfig's admin certificate is one the machine CA signed with
    /// the admin role.
    #[test]
    fn generates_a_valid_config_and_a_working_talosconfig() {
        let dir = tempfile::tempdir().unwrap();
        let o = Options {
            out: dir.path().join("out"),
            name: "demo".to_owned(),
            endpoint: "https://10.5.0.100:6443".to_owned(),
            force: false,
        };
        let files = generate(&o).unwrap();
        for f in &files {
            assert_eq!(std::fs::metadata(f).unwrap().mode() & 0o777, 0o600, "{f:?}");
        }
        let text = std::fs::read_to_string(&files[1]).unwrap();
        let parsed = crate::config::parse(&text).unwrap_or_else(|e| panic!("{text}\n{e}"));
        let c = parsed.config;
        assert!(c.cluster.etcd.as_ref().unwrap().initial_cluster.is_empty());
        assert_eq!(c.vips()[0].ip.to_string(), "10.5.0.100");
        let ca = c.machine.ca.as_ref().unwrap();
        let creds = talosconfig::load(&files[0], None).unwrap();
        assert_eq!(creds.ca, ca.crt.pem());
        assert_eq!(creds.endpoints, ["10.5.0.100"]);
        let der = rustls_pki_types::CertificateDer::from(
            ::pem::parse(&creds.crt).unwrap().contents().to_vec(),
        );
        let (orgs, _) = crate::api::tls::identity(&der);
        assert_eq!(orgs, ["os:admin"]);
        // A second run does not overwrite without --force.
        let err = generate(&o).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
    }
}
