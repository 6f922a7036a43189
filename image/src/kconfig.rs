//! Checks the kernel's build configuration against the options Keel needs
//! (`kernel-config/required.config`), so a kernel that cannot boot the image
//! (no zstd initramfs, no devtmpfs, no virtio) is rejected at build time with
//! the option named, instead of failing silently under QEMU.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KconfigError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: expected CONFIG_NAME=value[|value...], got {text:?}")]
    Syntax {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error(
        "kernel config {config} does not meet {required}:\n  {}",
        problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
    )]
    Unmet {
        config: PathBuf,
        required: PathBuf,
        problems: Vec<Problem>,
    },
}

/// One line of `required.config`: the option and the values it may have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub option: String,
    pub allowed: Vec<String>,
}

/// An option the kernel lacks or has with a value not allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub option: String,
    pub allowed: Vec<String>,
    /// `None` when the option is not set at all.
    pub actual: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let need = self.allowed.join(" or ");
        match &self.actual {
            None => write!(f, "kernel option {} is not set (need {need})", self.option),
            Some(v) => write!(f, "kernel option {}={v} (need {need})", self.option),
        }
    }
}

/// Parses `required.config`: `CONFIG_X=y` or `CONFIG_X=y|m` per line,
/// `#` starts a comment (whole line or trailing).
pub fn parse_required(text: &str, path: &Path) -> Result<Vec<Requirement>, KconfigError> {
    let mut reqs = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let syntax = || KconfigError::Syntax {
            path: path.to_owned(),
            line: i + 1,
            text: raw.to_owned(),
        };
        let (option, values) = line.split_once('=').ok_or_else(syntax)?;
        let option = option.trim();
        let allowed: Vec<String> = values.split('|').map(|v| v.trim().to_owned()).collect();
        let valid_name = option.starts_with("CONFIG_")
            && option.len() > "CONFIG_".len()
            && option
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !valid_name || allowed.iter().any(String::is_empty) {
            return Err(syntax());
        }
        reqs.push(Requirement {
            option: option.to_owned(),
            allowed,
        });
    }
    Ok(reqs)
}

/// Parses a kernel `.config`: `CONFIG_X=value` lines; `# CONFIG_X is not
/// set` and other comments mean the option is absent.
pub fn parse_kernel_config(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("CONFIG_"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Every requirement the config does not meet, in requirement order.
pub fn check(reqs: &[Requirement], config: &BTreeMap<String, String>) -> Vec<Problem> {
    reqs.iter()
        .filter_map(|req| {
            let actual = config.get(&req.option);
            match actual {
                Some(v) if req.allowed.contains(v) => None,
                _ => Some(Problem {
                    option: req.option.clone(),
                    allowed: req.allowed.clone(),
                    actual: actual.cloned(),
                }),
            }
        })
        .collect()
}

/// Reads both files and fails with every unmet option listed. Returns the
/// number of options checked.
pub fn check_files(required: &Path, kernel_config: &Path) -> Result<usize, KconfigError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| KconfigError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let reqs = parse_required(&read(required)?, required)?;
    let config = parse_kernel_config(&read(kernel_config)?);
    let problems = check(&reqs, &config);
    if problems.is_empty() {
        Ok(reqs.len())
    } else {
        Err(KconfigError::Unmet {
            config: kernel_config.to_owned(),
            required: required.to_owned(),
            problems,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KERNEL: &str = "\
# Automatically generated file; DO NOT EDIT.
CONFIG_DEVTMPFS=y
# CONFIG_RD_ZSTD is not set
CONFIG_VIRTIO_NET=m
CONFIG_BONDING=y
CONFIG_NLS_DEFAULT=\"utf8\"
";

    fn req(line: &str) -> Vec<Requirement> {
        parse_required(line, Path::new("required.config")).unwrap()
    }

    #[test]
    fn table() {
        let config = parse_kernel_config(KERNEL);
        let cases: &[(&str, Option<&str>)] = &[
            ("CONFIG_DEVTMPFS=y", None),
            ("CONFIG_VIRTIO_NET=y|m", None),
            ("CONFIG_BONDING=y|m", None),
            ("CONFIG_NLS_DEFAULT=\"utf8\"", None),
            (
                "CONFIG_RD_ZSTD=y",
                Some("kernel option CONFIG_RD_ZSTD is not set (need y)"),
            ),
            (
                "CONFIG_MISSING=y|m",
                Some("kernel option CONFIG_MISSING is not set (need y or m)"),
            ),
            (
                "CONFIG_VIRTIO_NET=y",
                Some("kernel option CONFIG_VIRTIO_NET=m (need y)"),
            ),
        ];
        for (line, want) in cases {
            let problems = check(&req(line), &config);
            let got = problems.first().map(ToString::to_string);
            assert_eq!(got.as_deref(), *want, "{line}");
        }
    }

    #[test]
    fn comments_and_blank_lines() {
        let reqs = req("# why\n\nCONFIG_A=y # trailing why\n  CONFIG_B=y|m\n");
        assert_eq!(
            reqs,
            [
                Requirement {
                    option: "CONFIG_A".into(),
                    allowed: vec!["y".into()],
                },
                Requirement {
                    option: "CONFIG_B".into(),
                    allowed: vec!["y".into(), "m".into()],
                },
            ]
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        for bad in [
            "CONFIG_A",
            "A=y",
            "CONFIG_A=",
            "CONFIG_A=y||m",
            "CONFIG_a=y",
        ] {
            let err = parse_required(&format!("# c\n{bad}\n"), Path::new("r")).unwrap_err();
            assert!(err.to_string().starts_with("r:2:"), "{bad}: {err}");
        }
    }

    #[test]
    fn unmet_lists_every_problem() {
        let dir = tempfile::tempdir().unwrap();
        let required = dir.path().join("required.config");
        let config = dir.path().join("config");
        std::fs::write(
            &required,
            "CONFIG_RD_ZSTD=y\nCONFIG_DEVTMPFS=y\nCONFIG_X=m\n",
        )
        .unwrap();
        std::fs::write(&config, KERNEL).unwrap();
        let err = check_files(&required, &config).unwrap_err().to_string();
        assert!(err.contains("CONFIG_RD_ZSTD is not set (need y)"), "{err}");
        assert!(err.contains("CONFIG_X is not set (need m)"), "{err}");
        assert!(!err.contains("DEVTMPFS"), "{err}");
    }

    /// The checked-in kernel-config/required.config stays parseable.
    #[test]
    fn repository_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel-config/required.config");
        let reqs = parse_required(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
        assert!(reqs.iter().any(|r| r.option == "CONFIG_RD_ZSTD"));
    }
}
