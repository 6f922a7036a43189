//! Text → validated [`Config`]: YAML syntax, then the schema, then the
//! cross-field pass, each error placed by path, line and column.

use super::documents::{self, Class};
use super::error::{ConfigError, ConfigErrors, Segment, YamlPath};
use super::netdocs::{DocRef, Documents};
use super::schema::Config;
use super::spans::Spans;
use super::{docs_validate, validate, Parsed};

/// Parses and validates a machine config: one or more YAML documents
/// ([`super::documents`]). Never panics; on failure every cross-field
/// problem is reported (a syntax or type error stops its document at the
/// first, since what follows it cannot be read reliably).
pub fn parse(text: &str) -> Result<Parsed, ConfigErrors> {
    let pieces = documents::split(text);
    // Errors of a file with one document keep their plain paths.
    let several = pieces
        .iter()
        .filter(|p| p.text.lines().any(|l| !blank(l)))
        .count()
        > 1;
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut docs = Documents::default();
    let mut v1: Option<(Config, Spans, usize, Option<DocRef>)> = None;
    let mut seen = 0;
    for (i, piece) in pieces.iter().enumerate() {
        let index = i + 1;
        match documents::read(piece, index, several, &mut docs, &mut warnings) {
            Err(e) => errors.extend(e),
            Ok((Class::Empty, _)) => {}
            Ok((Class::Document, _)) => seen += 1,
            Ok((Class::V1alpha1, _)) => {
                seen += 1;
                let at = several.then(|| DocRef {
                    index,
                    kind: "v1alpha1".into(),
                    name: None,
                    line: piece.first_line,
                });
                if let Some((_, _, _, Some(first))) = &v1 {
                    errors.push(documents::place(
                        ConfigError {
                            path: YamlPath::root().to_string(),
                            line: Some(1),
                            column: Some(1),
                            message: format!(
                                "a second v1alpha1 document (the first is {first}, line {}), expected one",
                                first.line
                            ),
                        },
                        piece.first_line,
                        at.as_ref(),
                    ));
                    continue;
                }
                let spans = Spans::build(piece.text);
                let de = serde_norway::Deserializer::from_str(piece.text);
                match serde_path_to_error::deserialize::<_, Config>(de) {
                    Ok(config) => {
                        docs.v1alpha1 = Some(index);
                        v1 = Some((config, spans, piece.first_line, at));
                    }
                    Err(e) => errors.extend(
                        schema_error(e, &spans)
                            .0
                            .into_iter()
                            .map(|e| documents::place(e, piece.first_line, at.as_ref())),
                    ),
                }
            }
        }
    }
    if seen == 0 && errors.is_empty() {
        return Err(ConfigErrors(documents::empty()));
    }
    let (config, v1_spans) = match v1 {
        Some((mut config, spans, first_line, at)) => {
            // The documents first: the v1alpha1 checks read some of them
            // (the hostname names the etcd member).
            config.documents = std::mem::take(&mut docs);
            let (e, w) = validate::validate(&config, &spans);
            errors.extend(
                e.into_iter()
                    .map(|e| documents::place(e, first_line, at.as_ref())),
            );
            warnings.extend(
                w.into_iter()
                    .map(|w| documents::place_warning(w, first_line, at.as_ref())),
            );
            (config, Some((spans, first_line, at)))
        }
        None => (
            Config {
                documents: docs,
                ..Config::default()
            },
            None,
        ),
    };
    let (e, w) = docs_validate::validate(
        &config,
        v1_spans.as_ref().map(|(s, l, a)| (s, *l, a.as_ref())),
    );
    errors.extend(e);
    warnings.extend(w);
    if errors.is_empty() {
        let pos = |line: Option<usize>| line.unwrap_or(usize::MAX);
        warnings.sort_by_key(|w| pos(w.line));
        Ok(Parsed { config, warnings })
    } else {
        errors.sort_by_key(|e| (e.line.unwrap_or(usize::MAX), e.column.unwrap_or(0)));
        Err(ConfigErrors(errors))
    }
}

/// A line with nothing but white space or a comment.
fn blank(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// A YAML syntax error, placed where the parser found it.
pub(crate) fn syntax_error(e: &serde_norway::Error) -> ConfigError {
    let location = e.location();
    ConfigError {
        path: YamlPath::root().to_string(),
        line: location.as_ref().map(|l| l.line()),
        column: location.as_ref().map(|l| l.column()),
        message: clean_message(&e.to_string(), location.map(|l| (l.line(), l.column()))),
    }
}

/// [`parse`] for raw bytes (a file, an HTTP body): invalid UTF-8 is an
/// error with its position, not a panic or a lossy guess.
pub fn parse_bytes(bytes: &[u8]) -> Result<Parsed, ConfigErrors> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            // Columns count characters, as the YAML parsers do.
            let column = String::from_utf8_lossy(&good[line_start..]).chars().count() + 1;
            Err(one(ConfigError {
                path: YamlPath::root().to_string(),
                line: Some(line),
                column: Some(column),
                message: format!(
                    "invalid UTF-8 at byte {}, expected UTF-8 text",
                    e.valid_up_to()
                ),
            }))
        }
    }
}

pub(crate) fn one(error: ConfigError) -> ConfigErrors {
    ConfigErrors(vec![error])
}

/// Converts serde's first error, placing it by path (serde_norway's own
/// position is that of the enclosing key for values checked by
/// `try_from`).
pub(crate) fn schema_error(
    e: serde_path_to_error::Error<serde_norway::Error>,
    spans: &Spans,
) -> ConfigErrors {
    let mut segments = Vec::new();
    for segment in e.path().iter() {
        match segment {
            serde_path_to_error::Segment::Map { key } => segments.push(Segment::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => {
                segments.push(Segment::Key(variant.clone()))
            }
            serde_path_to_error::Segment::Seq { index } => segments.push(Segment::Index(*index)),
            serde_path_to_error::Segment::Unknown => break,
        }
    }
    let path = YamlPath(segments);
    let inner = e.inner();
    let serde_pos = inner.location().map(|l| (l.line(), l.column()));
    let message = clean_message(&inner.to_string(), serde_pos);

    // A duplicated struct key: the span tree knows exactly where each is.
    if message.starts_with("duplicate field") {
        let dups = spans.duplicate_keys();
        if !dups.is_empty() {
            return ConfigErrors(dups);
        }
    }
    let pos = if message.starts_with("unknown field") {
        spans.key(&path)
    } else {
        spans.value(&path)
    };
    let (line, column) = match (pos, serde_pos) {
        (Some(p), _) => (Some(p.line), Some(p.column)),
        (None, Some((l, c))) => (Some(l), Some(c)),
        (None, None) => {
            let p = spans.nearest(&path);
            (p.map(|p| p.line), p.map(|p| p.column))
        }
    };
    one(ConfigError {
        path: path.to_string(),
        line,
        column,
        message,
    })
}

/// serde_norway's text is `<path>: <message> at line L column C`; keep the
/// message (path and position are reported separately) and name Rust
/// integer types in YAML terms.
fn clean_message(text: &str, pos: Option<(usize, usize)>) -> String {
    let mut msg = text.to_owned();
    if let Some((line, column)) = pos {
        let suffix = format!(" at line {line} column {column}");
        if let Some(at) = msg.find(&suffix) {
            msg.replace_range(at..at + suffix.len(), "");
        }
    }
    if let Some((prefix, rest)) = msg.split_once(": ") {
        let is_path = !prefix.is_empty()
            && !prefix.contains(char::is_whitespace)
            && !prefix.contains(['`', '"', '\''])
            && prefix != "invalid";
        if is_path {
            msg = rest.to_owned();
        }
    }
    const INTEGERS: &[(&str, &str)] = &[
        ("expected u8", "expected an integer from 0 to 255"),
        ("expected u16", "expected an integer from 0 to 65535"),
        ("expected u32", "expected an integer from 0 to 4294967295"),
        ("expected u64", "expected a non-negative integer"),
        ("expected i64", "expected an integer"),
    ];
    for (from, to) in INTEGERS {
        if let Some(at) = msg.find(from) {
            let end = at + from.len();
            // Only whole words (`u32`, not `u32x`).
            if !msg[end..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
                msg.replace_range(at..end, to);
            }
        }
    }
    const STRUCT: &str = "expected struct ";
    if let Some(at) = msg.find(STRUCT) {
        // `expected struct Interface` names a Rust type; YAML has mappings.
        let name_at = at + STRUCT.len();
        let end = msg[name_at..]
            .find([',', ' '])
            .map_or(msg.len(), |e| name_at + e);
        msg.replace_range(at..end, "expected a mapping");
    }
    shorten_words(&msg)
}

/// Values are echoed in messages; a 5000-digit number should not be.
fn shorten_words(msg: &str) -> String {
    const MAX: usize = 80;
    msg.split(' ')
        .map(|word| {
            if word.chars().count() <= MAX {
                word.to_owned()
            } else {
                let head: String = word.chars().take(MAX / 2).collect();
                let tail: String = word.chars().skip(word.chars().count() - 8).collect();
                format!("{head}…{tail}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
