//! The node API's client (`keel --talosconfig ... status`): blocking HTTPS
//! with the talosconfig's client certificate, through ureq (already in the
//! binary for config URLs). The server is verified against the
//! talosconfig's `ca` (the machine CA), by the address dialled.

use std::io::BufRead;
use std::time::Duration;

use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
use ureq::Agent;

use super::status::Status;
use super::talosconfig::Credentials;

/// How long one request may take (a follow stream is not bounded).
pub const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the talosconfig's {what} is not usable: {reason}")]
    Credentials { what: &'static str, reason: String },
    #[error("{node}: {source}")]
    Http {
        node: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("{node}: {reason}")]
    Refused {
        node: String,
        status: u16,
        reason: String,
    },
    #[error("{node}: unexpected answer: {reason}")]
    Answer { node: String, reason: String },
}

/// A client for one node.
pub struct NodeClient {
    agent: Agent,
    follow_agent: Agent,
    base: String,
    node: String,
}

/// One log line as the API sends it.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
pub struct LogLine {
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub at_s: f64,
    #[serde(default)]
    pub level: String,
    #[serde(default)]
    pub text: String,
    /// Set instead of the rest when a follower fell behind.
    #[serde(default)]
    pub missed: Option<u64>,
}

fn tls(creds: &Credentials) -> Result<TlsConfig, ClientError> {
    let bad = |what: &'static str, reason: String| ClientError::Credentials { what, reason };
    let ca = Certificate::from_pem(creds.ca.as_bytes()).map_err(|e| bad("ca", e.to_string()))?;
    let crt = Certificate::from_pem(creds.crt.as_bytes()).map_err(|e| bad("crt", e.to_string()))?;
    let block = ::pem::parse(&creds.key).map_err(|e| bad("key", e.to_string()))?;
    // Talos labels its Ed25519 key `ED25519 PRIVATE KEY`, which only Go
    // reads; the DER inside is PKCS#8, so it is relabelled `PRIVATE KEY`.
    let pem = match block.tag() {
        "ED25519 PRIVATE KEY" => ::pem::encode(&::pem::Pem::new("PRIVATE KEY", block.contents())),
        _ => creds.key.clone(),
    };
    let key = PrivateKey::from_pem(pem.as_bytes()).map_err(|e| bad("key", e.to_string()))?;
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&[ca]))
        .client_cert(Some(ClientCert::new_with_certs(&[crt], key)))
        .build())
}

/// `host[:port]` with the API's port by default; IPv6 in brackets.
pub fn authority(node: &str) -> String {
    if node.starts_with('[') {
        return if node.contains("]:") {
            node.to_owned()
        } else {
            format!("{node}:{}", super::PORT)
        };
    }
    match node.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]:{}", super::PORT),
        Ok(ip) => format!("{ip}:{}", super::PORT),
        Err(_) if node.contains(':') => node.to_owned(),
        Err(_) => format!("{node}:{}", super::PORT),
    }
}

impl NodeClient {
    pub fn new(creds: &Credentials, node: &str) -> Result<NodeClient, ClientError> {
        let tls = tls(creds)?;
        let build = |timeout: Option<Duration>| -> Agent {
            Agent::config_builder()
                .tls_config(tls.clone())
                .http_status_as_error(false)
                .timeout_global(timeout)
                .timeout_connect(Some(Duration::from_secs(5)))
                .user_agent(concat!("keel/", env!("CARGO_PKG_VERSION")))
                .build()
                .into()
        };
        Ok(NodeClient {
            agent: build(Some(TIMEOUT)),
            follow_agent: build(None),
            base: format!("https://{}", authority(node)),
            node: node.to_owned(),
        })
    }

    fn http(&self, e: ureq::Error) -> ClientError {
        ClientError::Http {
            node: self.node.clone(),
            source: Box::new(e),
        }
    }

    /// The answer's JSON, or the API's `error` as [`ClientError::Refused`].
    fn read(
        &self,
        mut r: ureq::http::Response<ureq::Body>,
    ) -> Result<serde_json::Value, ClientError> {
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().map_err(|e| self.http(e))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ClientError::Answer {
                node: self.node.clone(),
                reason: format!("HTTP {status}, not JSON ({e})"),
            })?;
        if status >= 400 {
            let reason = value["error"].as_str().unwrap_or("refused").to_owned();
            return Err(ClientError::Refused {
                node: self.node.clone(),
                status,
                reason,
            });
        }
        Ok(value)
    }

    pub fn status(&self) -> Result<Status, ClientError> {
        let r = self
            .agent
            .get(format!("{}/v1/status", self.base))
            .call()
            .map_err(|e| self.http(e))?;
        let v = self.read(r)?;
        serde_json::from_value(v).map_err(|e| ClientError::Answer {
            node: self.node.clone(),
            reason: e.to_string(),
        })
    }

    /// `bootstrap`, `reboot` or `shutdown`: the API's message.
    pub fn act(&self, action: &str) -> Result<String, ClientError> {
        let r = self
            .agent
            .post(format!("{}/v1/{action}", self.base))
            .send_empty()
            .map_err(|e| self.http(e))?;
        let v = self.read(r)?;
        Ok(v["message"].as_str().unwrap_or("").to_owned())
    }

    /// The last `lines` (all with `None`) of `source` (`keel`, `etcd`), and
    /// with `follow` every later line, each handed to `each`; returns when
    /// the node closes the stream (or `each` says stop).
    pub fn logs(
        &self,
        source: &str,
        lines: Option<usize>,
        follow: bool,
        mut each: impl FnMut(LogLine) -> bool,
    ) -> Result<(), ClientError> {
        let n = lines.map_or("all".to_owned(), |n| n.to_string());
        let url = format!(
            "{}/v1/logs?source={source}&lines={n}&follow={follow}",
            self.base
        );
        let agent = if follow {
            &self.follow_agent
        } else {
            &self.agent
        };
        let mut r = agent.get(url).call().map_err(|e| self.http(e))?;
        if r.status().as_u16() >= 400 {
            self.read(r)?;
            return Ok(());
        }
        let reader = std::io::BufReader::new(r.body_mut().as_reader());
        for line in reader.lines() {
            let line = line.map_err(|e| ClientError::Answer {
                node: self.node.clone(),
                reason: e.to_string(),
            })?;
            if line.is_empty() {
                continue;
            }
            let parsed: LogLine = serde_json::from_str(&line).map_err(|e| ClientError::Answer {
                node: self.node.clone(),
                reason: format!("log line is not JSON: {e}"),
            })?;
            if !each(parsed) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        let table = [
            ("10.5.0.11", "10.5.0.11:50443"),
            ("10.5.0.11:6000", "10.5.0.11:6000"),
            ("fd00::1", "[fd00::1]:50443"),
            ("[fd00::1]", "[fd00::1]:50443"),
            ("[fd00::1]:6000", "[fd00::1]:6000"),
            ("cp1.example", "cp1.example:50443"),
            ("cp1.example:7", "cp1.example:7"),
        ];
        for (node, want) in table {
            assert_eq!(authority(node), want, "{node}");
        }
    }
}
