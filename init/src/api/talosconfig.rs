//! Talos's client config (`talosconfig`), so a Talos user's credentials
//! reach a Keel node unchanged: YAML with `context` (the current one) and
//! `contexts.<name>` holding `endpoints`, `nodes`, and `ca`, `crt`, `key`
//! (each base64 of PEM; Talos writes its Ed25519 client key under the PEM
//! label `ED25519 PRIVATE KEY`, PKCS#8 inside). Talos's lookup order when
//! no file is named: `$TALOSCONFIG`, then `~/.talos/config`.
//!
//! Where Keel differs: Talos's client dials an *endpoint* and apid there
//! proxies to the *nodes*; a Keel node serves only itself, so the client
//! dials each node directly (`--nodes`, else the context's `nodes`, else
//! its `endpoints`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum TalosconfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a talosconfig: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{path}: no context {name:?}, expected one of: {known}")]
    NoContext {
        path: PathBuf,
        name: String,
        known: String,
    },
    #[error("{path}: no current context (`context:`) and no --context")]
    NoCurrent { path: PathBuf },
    #[error("{path}: contexts.{context}.{key}: {reason}")]
    Field {
        path: PathBuf,
        context: String,
        key: &'static str,
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
struct File {
    context: Option<String>,
    #[serde(default)]
    contexts: BTreeMap<String, RawContext>,
}

/// Talos has more keys (`auth`, `cluster`); they are not Keel's business.
#[derive(Debug, Deserialize)]
struct RawContext {
    #[serde(default)]
    endpoints: Vec<String>,
    #[serde(default)]
    nodes: Vec<String>,
    #[serde(default)]
    ca: String,
    #[serde(default)]
    crt: String,
    #[serde(default)]
    key: String,
}

/// One context, decoded: what the client needs to reach nodes.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub context: String,
    pub endpoints: Vec<String>,
    pub nodes: Vec<String>,
    /// PEM.
    pub ca: String,
    pub crt: String,
    pub key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials {{ context: {:?}, endpoints: {:?}, nodes: {:?}, key: <redacted> }}",
            self.context, self.endpoints, self.nodes
        )
    }
}

/// Where the talosconfig is when no `--talosconfig` is given.
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("TALOSCONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".talos").join("config")
}

/// Reads `path` and picks `context` (else the file's current one).
pub fn load(path: &Path, context: Option<&str>) -> Result<Credentials, TalosconfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| TalosconfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path, context)
}

/// Parses talosconfig text (`path` only names it in errors).
pub fn parse(
    text: &str,
    path: &Path,
    context: Option<&str>,
) -> Result<Credentials, TalosconfigError> {
    let file: File = serde_norway::from_str(text).map_err(|e| TalosconfigError::Parse {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let name = match context.map(str::to_owned).or(file.context) {
        Some(n) => n,
        None => {
            return Err(TalosconfigError::NoCurrent {
                path: path.to_owned(),
            })
        }
    };
    let Some(raw) = file.contexts.get(&name) else {
        return Err(TalosconfigError::NoContext {
            path: path.to_owned(),
            name,
            known: if file.contexts.is_empty() {
                "none".to_owned()
            } else {
                file.contexts.keys().cloned().collect::<Vec<_>>().join(", ")
            },
        });
    };
    let field = |key: &'static str, value: &str, label: fn(&str) -> bool| {
        decode(value, label).map_err(|reason| TalosconfigError::Field {
            path: path.to_owned(),
            context: name.clone(),
            key,
            reason,
        })
    };
    Ok(Credentials {
        ca: field("ca", &raw.ca, |l| l == "CERTIFICATE")?,
        crt: field("crt", &raw.crt, |l| l == "CERTIFICATE")?,
        key: field("key", &raw.key, |l| l.ends_with("PRIVATE KEY"))?,
        endpoints: raw.endpoints.clone(),
        nodes: raw.nodes.clone(),
        context: name,
    })
}

/// base64 of PEM whose first label satisfies `label`.
fn decode(value: &str, label: fn(&str) -> bool) -> Result<String, String> {
    if value.trim().is_empty() {
        return Err("missing, expected base64-encoded PEM".to_owned());
    }
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| format!("invalid base64 ({e}), expected base64-encoded PEM"))?;
    let text = String::from_utf8(bytes).map_err(|_| "not PEM text".to_owned())?;
    let found = text
        .trim_start()
        .strip_prefix("-----BEGIN ")
        .and_then(|r| r.split_once("-----"))
        .map(|(l, _)| l.to_owned());
    match found {
        Some(l) if label(&l) => Ok(text),
        Some(l) => Err(format!("a PEM {l} block, not the expected kind")),
        None => Err("not a PEM block".to_owned()),
    }
}

/// Renders one context as a talosconfig (what `keel gen` writes).
pub fn render(c: &Credentials) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let list = |v: &[String]| {
        if v.is_empty() {
            "[]".to_owned()
        } else {
            format!("[{}]", v.join(", "))
        }
    };
    format!(
        "context: {name}\ncontexts:\n    {name}:\n        endpoints: {}\n        nodes: {}\n        ca: {}\n        crt: {}\n        key: {}\n",
        list(&c.endpoints),
        list(&c.nodes),
        b64(&c.ca),
        b64(&c.crt),
        b64(&c.key),
        name = c.context,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    const CRT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str =
        "-----BEGIN ED25519 PRIVATE KEY-----\nMC4C\n-----END ED25519 PRIVATE KEY-----\n";

    fn file(extra: &str) -> String {
        format!(
            "context: prod\ncontexts:\n  prod:\n    endpoints: [10.5.0.100]\n    nodes: [10.5.0.11, 10.5.0.12]\n    ca: {ca}\n    crt: {ca}\n    key: {key}\n{extra}",
            ca = b64(CRT),
            key = b64(KEY)
        )
    }

    #[test]
    fn table() {
        let p = Path::new("talosconfig");
        // (text, --context, Ok(context, nodes) or the error's text)
        let other = format!(
            "  lab:\n    endpoints: [192.168.1.2]\n    ca: {}\n    crt: {}\n    key: {}\n    auth: {{siderov1: {{}}}}\n",
            b64(CRT),
            b64(CRT),
            b64(KEY)
        );
        type Case<'a> = (
            String,
            Option<&'a str>,
            Result<(&'a str, Vec<&'a str>), &'a str>,
        );
        let cases: Vec<Case> = vec![
            (file(""), None, Ok(("prod", vec!["10.5.0.11", "10.5.0.12"]))),
            (file(&other), Some("lab"), Ok(("lab", vec![]))),
            (
                file(""),
                Some("nope"),
                Err("no context \"nope\", expected one of: prod"),
            ),
            (
                file("").replacen("context: prod\n", "", 1),
                None,
                Err("no current context"),
            ),
            (
                file("").replacen(&b64(KEY), &b64(CRT), 1),
                None,
                Err("contexts.prod.key: a PEM CERTIFICATE block"),
            ),
            (
                file("").replacen(&b64(KEY), "not-base64", 1),
                None,
                Err("contexts.prod.key: invalid base64"),
            ),
            (
                "contexts: [1, 2]".to_owned(),
                None,
                Err("is not a talosconfig"),
            ),
        ];
        for (text, ctx, want) in cases {
            let got = parse(&text, p, ctx);
            match (got, want) {
                (Ok(c), Ok((name, nodes))) => {
                    assert_eq!(c.context, name);
                    assert_eq!(c.nodes, nodes);
                    assert_eq!(c.key, KEY);
                    assert_eq!(c.ca, CRT);
                }
                (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{e} / {want}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn render_parses_back() {
        let c = parse(&file(""), Path::new("x"), None).unwrap();
        let again = parse(&render(&c), Path::new("x"), None).unwrap();
        assert_eq!(again, c);
    }
}
