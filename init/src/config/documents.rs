//! A machine config file as Talos reads it since 1.12: YAML documents
//! separated by `---`, one of them (optionally) the v1alpha1 document, the
//! others `apiVersion: v1alpha1` documents with a `kind:`.
//!
//! The file is split into documents by their `---` lines (YAML 1.2 section
//! 9.2: a document marker is three dashes at the start of a line, which no
//! content can hold), so each document is parsed on its own, with the line
//! where it starts: every error and warning then carries the line in the
//! whole file and names its document. A document is the v1alpha1 one when
//! it has no `kind` (Talos recognises it by `machine`, `cluster`, `debug` or
//! `persist`; Keel also accepts Talos snippets with `version` only). Kinds
//! Keel implements are decoded strictly ([`super::netdocs`]); any other
//! kind is accepted with one warning, so a Talos 1.14 config with its ~27
//! documents loads.

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::docs_validate as v;
use super::error::{ConfigError, Warning, WarningKind, YamlPath};
use super::netdocs::{
    BondConfig, Dhcp4Config, Doc, DocRef, Documents, DummyLinkConfig, HostnameConfig,
    Layer2VipConfig, LinkAliasConfig, LinkConfig, ResolverConfig, StaticHostConfig, VlanConfig,
};
use super::parse::{one, schema_error, syntax_error};
use super::spans::{Spans, MAX_NESTING};

/// One document's text and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece<'a> {
    pub text: &'a str,
    /// The line in the whole file where `text` starts (1-based).
    pub first_line: usize,
}

/// Splits `text` at its `---` document markers. Content after `--- ` on
/// the marker line starts the next document; a `...` line ends one.
pub fn split(text: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut start = 0; // byte offset of the current document
    let mut start_line = 1;
    let mut offset = 0;
    let mut ended = false;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let marker = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        if marker || bare == "..." {
            if !ended {
                pieces.push(Piece {
                    text: &text[start..offset],
                    first_line: start_line,
                });
            }
            ended = bare == "...";
            // The document starts after the dashes (same line, same
            // columns are lost only for content on the marker line).
            start = offset + if marker { 3 } else { line.len() };
            start_line = i + 1;
            if marker && bare.len() == 3 {
                start = offset + line.len();
                start_line = i + 2;
            }
            if marker {
                ended = false;
            }
        }
        offset += line.len();
    }
    if !ended {
        pieces.push(Piece {
            text: &text[start..],
            first_line: start_line,
        });
    }
    pieces
}

/// The keys every document is classified by.
#[derive(Deserialize)]
struct Header {
    kind: Option<String>,
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    name: Option<serde_norway::Value>,
}

/// What one piece of the file is.
pub(crate) enum Class {
    /// Empty (blank or comments only).
    Empty,
    /// The v1alpha1 document, for the caller to parse.
    V1alpha1,
    /// A kind Keel implements (stored into `Documents`), or ignored.
    Document,
}

/// Places an error found in document `at` (of a file with several) in the
/// whole file: the line shifted, the path prefixed with the document.
pub(crate) fn place(mut e: ConfigError, first_line: usize, at: Option<&DocRef>) -> ConfigError {
    if let Some(l) = e.line.as_mut() {
        *l += first_line - 1;
    }
    if let Some(at) = at {
        e.path = if e.path == YamlPath::root().to_string() {
            at.to_string()
        } else {
            format!("{at}: {}", e.path)
        };
    }
    e
}

pub(crate) fn place_warning(mut w: Warning, first_line: usize, at: Option<&DocRef>) -> Warning {
    if let Some(l) = w.line.as_mut() {
        *l += first_line - 1;
    }
    if let Some(at) = at {
        w.path = format!("{at}: {}", w.path);
    }
    w
}

/// Classifies `piece` (document `index`) and, for kinds Keel implements,
/// decodes it into `docs`. The v1alpha1 document is left to the caller.
pub(crate) fn read(
    piece: &Piece<'_>,
    index: usize,
    several: bool,
    docs: &mut Documents,
    warnings: &mut Vec<Warning>,
) -> Result<(Class, Option<DocRef>), Vec<ConfigError>> {
    let spans = Spans::build(piece.text);
    let here = |e: ConfigError, at: Option<&DocRef>| place(e, piece.first_line, at);
    let unnamed = DocRef {
        index,
        kind: "?".into(),
        name: None,
        line: piece.first_line,
    };
    // A file of one document keeps plain paths until its kind is known.
    let unnamed = several.then_some(&unnamed);
    if let Some(pos) = spans.too_deep {
        return Err(vec![here(
            ConfigError {
                path: YamlPath::root().to_string(),
                line: Some(pos.line),
                column: Some(pos.column),
                message: format!(
                    "nested more than {MAX_NESTING} levels deep, expected a machine config"
                ),
            },
            unnamed,
        )]);
    }
    match serde_norway::from_str::<Option<IgnoredAny>>(piece.text) {
        Ok(Some(_)) => {}
        Ok(None) => return Ok((Class::Empty, None)),
        Err(e) => return Err(vec![here(syntax_error(&e), unnamed)]),
    }
    let header: Header = match serde_norway::from_str(piece.text) {
        Ok(h) => h,
        // Not a mapping: serde says what it found.
        Err(e) => return Err(vec![here(syntax_error(&e), unnamed)]),
    };
    let name = header.name.as_ref().and_then(|v| match v {
        serde_norway::Value::String(s) => Some(s.clone()),
        serde_norway::Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let Some(kind) = header.kind else {
        if header.api_version.is_some() {
            let pos = spans.key(&YamlPath::root().key("apiVersion"));
            return Err(vec![here(
                ConfigError {
                    path: "apiVersion".into(),
                    line: pos.map(|p| p.line),
                    column: pos.map(|p| p.column),
                    message: "a document with apiVersion needs a kind, expected `kind: <Kind>` (or no apiVersion for the v1alpha1 document)".into(),
                },
                unnamed,
            )]);
        }
        return Ok((Class::V1alpha1, None));
    };
    let at = DocRef {
        index,
        kind: kind.clone(),
        name,
        line: piece.first_line,
    };
    match header.api_version.as_deref() {
        Some("v1alpha1") => {}
        other => {
            let (path, message) = match other {
                None => (
                    "kind".to_owned(),
                    format!("document of kind {kind} has no apiVersion, expected `apiVersion: v1alpha1`"),
                ),
                Some(v) => (
                    "apiVersion".to_owned(),
                    format!("unknown apiVersion {v:?} for kind {kind}, expected v1alpha1"),
                ),
            };
            let pos = spans.value(&YamlPath::root().key(&path));
            return Err(vec![here(
                ConfigError {
                    path,
                    line: pos.map(|p| p.line),
                    column: pos.map(|p| p.column),
                    message,
                },
                Some(&at),
            )]);
        }
    }
    // Decodes the document as `$ty`, runs its own checks, stores it.
    macro_rules! decode {
        ($ty:ty, $check:expr, $store:expr) => {{
            let de = serde_norway::Deserializer::from_str(piece.text);
            match serde_path_to_error::deserialize::<_, $ty>(de) {
                Ok(spec) => {
                    let check: &dyn Fn(&$ty) -> Vec<ConfigError> = &$check;
                    let problems = check(&spec);
                    if !problems.is_empty() {
                        return Err(problems.into_iter().map(|e| here(e, Some(&at))).collect());
                    }
                    $store(Doc {
                        at: at.clone(),
                        spec,
                    })
                }
                Err(e) => {
                    let errors = schema_error(e, &spans).0;
                    return Err(errors.into_iter().map(|e| here(e, Some(&at))).collect());
                }
            }
        }};
    }
    let s = &spans;
    match kind.as_str() {
        "LinkConfig" => decode!(
            LinkConfig,
            |d: &LinkConfig| v::common(&d.common(), s),
            |d| docs.links.push(d)
        ),
        "DummyLinkConfig" => decode!(
            DummyLinkConfig,
            |d: &DummyLinkConfig| v::common(&d.common(), s),
            |d| docs.dummies.push(d)
        ),
        "VLANConfig" => decode!(
            VlanConfig,
            |d: &VlanConfig| v::common(&d.common(), s),
            |d| docs.vlans.push(d)
        ),
        "BondConfig" => decode!(
            BondConfig,
            |d: &BondConfig| {
                let links: Vec<String> = d.links.iter().map(|l| l.to_string()).collect();
                let mut e = v::common(&d.common(), s);
                e.extend(v::bond(&links, d.primary.as_ref().map(|p| p.as_str()), s));
                e
            },
            |d| docs.bonds.push(d)
        ),
        "LinkAliasConfig" => decode!(
            LinkAliasConfig,
            |d: &LinkAliasConfig| v::alias(&d.selector.match_, s),
            |d| docs.aliases.push(d)
        ),
        "DHCPv4Config" => decode!(
            Dhcp4Config,
            |d: &Dhcp4Config| v::dhcp4(d.client_identifier, d.duid_raw.as_deref(), s),
            |d| docs.dhcp4.push(d)
        ),
        "StaticHostConfig" => decode!(
            StaticHostConfig,
            |d: &StaticHostConfig| v::static_host(d.hostnames.is_empty(), s),
            |d| docs.static_hosts.push(d)
        ),
        "Layer2VIPConfig" => decode!(Layer2VipConfig, |_: &Layer2VipConfig| Vec::new(), |d| docs
            .vips
            .push(d)),
        "HostnameConfig" | "ResolverConfig" => {
            let first = match kind.as_str() {
                "HostnameConfig" => docs.hostname.as_ref().map(|d| d.at.clone()),
                _ => docs.resolver.as_ref().map(|d| d.at.clone()),
            };
            if let Some(first) = first {
                return Err(vec![here(
                    ConfigError {
                        path: YamlPath::root().to_string(),
                        line: Some(1),
                        column: Some(1),
                        message: format!(
                            "a second {kind} (the first is {first}, line {}), expected one per config",
                            first.line
                        ),
                    },
                    Some(&at),
                )]);
            }
            if kind == "HostnameConfig" {
                decode!(
                    HostnameConfig,
                    |d: &HostnameConfig| v::hostname(d, s),
                    |d| docs.hostname = Some(d)
                )
            } else {
                decode!(
                    ResolverConfig,
                    |d: &ResolverConfig| {
                        let p: Vec<Option<&str>> = d
                            .nameservers
                            .iter()
                            .map(|n| n.protocol.as_deref())
                            .collect();
                        v::nameserver_protocols(&p, s)
                    },
                    |d| docs.resolver = Some(d)
                )
            }
        }
        _ => warnings.push(Warning {
            path: at.to_string(),
            line: Some(piece.first_line),
            kind: WarningKind::Unsupported,
        }),
    }
    Ok((Class::Document, Some(at)))
}

/// The error for a file whose only document is empty.
pub(crate) fn empty() -> Vec<ConfigError> {
    one(ConfigError {
        path: YamlPath::root().to_string(),
        line: None,
        column: None,
        message: "empty document, expected a Talos v1alpha1 machine config (`machine:`, `cluster:`) or network documents".to_owned(),
    })
    .0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_at_markers() {
        // (text, [(first line, text)])
        let cases: &[(&str, &[(usize, &str)])] = &[
            ("a: 1\n", &[(1, "a: 1\n")]),
            ("a: 1\n---\nb: 2\n", &[(1, "a: 1\n"), (3, "b: 2\n")]),
            ("---\na: 1\n", &[(1, ""), (2, "a: 1\n")]),
            ("a: 1\n--- \nb: 2\n", &[(1, "a: 1\n"), (2, " \nb: 2\n")]),
            ("a: 1\n...\n---\nb: 2\n", &[(1, "a: 1\n"), (4, "b: 2\n")]),
            ("a: |\n  ---x\n", &[(1, "a: |\n  ---x\n")]),
            (
                "a: 1\r\n---\r\nb: 2\r\n",
                &[(1, "a: 1\r\n"), (3, "b: 2\r\n")],
            ),
        ];
        for (text, want) in cases {
            let got: Vec<(usize, &str)> = split(text)
                .into_iter()
                .map(|p| (p.first_line, p.text))
                .collect();
            assert_eq!(got, *want, "{text:?}");
        }
    }
}
