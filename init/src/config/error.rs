//! Errors and warnings from parsing and validating a machine config.
//!
//! Every error names the YAML path in the same notation the Talos docs and
//! `serde_path_to_error` use (`machine.network.interfaces[1].vlans[0].vlanId`)
//! plus the line and column, so an operator can find the spot in an editor.

use std::fmt;

/// One step of a YAML path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A path from the document root to a node, e.g.
/// `machine.network.interfaces[1].vlans[0].vlanId`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct YamlPath(pub Vec<Segment>);

impl YamlPath {
    pub fn root() -> YamlPath {
        YamlPath(Vec::new())
    }

    /// The path one mapping key further down.
    pub fn key(&self, key: &str) -> YamlPath {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        YamlPath(segments)
    }

    /// The path one sequence entry further down.
    pub fn index(&self, index: usize) -> YamlPath {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        YamlPath(segments)
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// One problem in a config: where it is and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The YAML path, e.g. `machine.network.interfaces[1].vlans[0].vlanId`;
    /// `(document)` for the whole document.
    pub path: String,
    /// 1-based line, when the position is known.
    pub line: Option<usize>,
    /// 1-based column, when the position is known.
    pub column: Option<usize>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)?;
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, " (line {line}, column {column})")?,
            (Some(line), None) => write!(f, " (line {line})")?,
            _ => {}
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a config (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One error per line.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .first()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Why a valid config still deserves the operator's attention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarningKind {
    /// A Talos key Keel accepts (so Talos configs load unchanged) but does
    /// not act on.
    Unsupported,
    /// A value Talos itself has deprecated; the message says what it means.
    Deprecated(String),
    /// A valid value with a consequence worth knowing (a feature it turns
    /// off); the message says which.
    Note(String),
}

/// A non-fatal finding: an ignored Talos section or a deprecated value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub path: String,
    /// 1-based line of the key, when known.
    pub line: Option<usize>,
    pub kind: WarningKind,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            WarningKind::Unsupported => {
                write!(f, "not supported by Keel, ignored: {}", self.path)?;
                if let Some(line) = self.line {
                    write!(f, " (line {line})")?;
                }
                Ok(())
            }
            WarningKind::Deprecated(message) | WarningKind::Note(message) => {
                f.write_str(&self.path)?;
                if let Some(line) = self.line {
                    write!(f, " (line {line})")?;
                }
                write!(f, ": {message}")
            }
        }
    }
}
