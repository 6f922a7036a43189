//! Every way a config source can fail, each carrying what the operator needs
//! to find the cause: the kernel parameter, the URL, the device or path.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A kernel parameter's value is malformed.
    #[error("kernel parameter {param}: {reason}")]
    BadParam { param: String, reason: String },

    /// A kernel parameter that should be base64 is not.
    #[error("kernel parameter {param}: not valid base64: {source}")]
    Base64 {
        param: String,
        #[source]
        source: base64::DecodeError,
    },

    /// The CA file named by `keel.config.ca=` cannot be read.
    #[error("kernel parameter keel.config.ca: cannot read {path}: {source}")]
    CaRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Content starts with the zstd magic but does not decompress.
    #[error("{origin}: zstd data does not decompress: {reason}")]
    Zstd { origin: String, reason: String },

    /// Content (after decompression) is larger than Keel accepts.
    #[error("{origin}: config is larger than {limit} bytes")]
    TooLarge { origin: String, limit: u64 },

    /// The `keel.config.sha256=` pin does not match.
    #[error(
        "{origin}: sha256 mismatch: keel.config.sha256 expects {expected}, content has {actual}"
    )]
    Sha256Mismatch {
        origin: String,
        expected: String,
        actual: String,
    },

    /// `${name}` is not one of the placeholders Keel knows.
    #[error("{url}: unknown placeholder ${{{name}}} (known: ${{uuid}}, ${{serial}}, ${{mac}}, ${{hostname}})")]
    UnknownPlaceholder { url: String, name: String },

    /// `${name}` is known but this machine has no value for it.
    #[error("{url}: placeholder ${{{name}}} has no value on this machine ({hint})")]
    PlaceholderUnavailable {
        url: String,
        name: String,
        hint: String,
    },

    /// The URL itself is malformed (after substitution).
    #[error("{url}: bad URL: {reason}")]
    BadUrl { url: String, reason: String },

    /// The server answered, but not with 200.
    #[error("{url}: server answered HTTP {status}")]
    Status { url: String, status: u16 },

    /// One attempt took longer than its budget.
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },

    /// Connection, TLS, proxy or protocol failure.
    #[error("{url}: {source}")]
    Http {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },

    /// The URL source is configured but no link has a usable address yet.
    #[error("{url}: waiting for network (no link has a usable address yet)")]
    WaitingForNetwork { url: String },

    /// No block device carries a filesystem with one of the wanted labels.
    #[error("no filesystem labelled {labels} found on any block device")]
    NoLabelledFilesystem { labels: String },

    /// Creating the mount point, mounting or unmounting failed.
    #[error("{device}: cannot {action} {fstype} at {target}: {source}")]
    Mount {
        device: PathBuf,
        fstype: String,
        target: PathBuf,
        action: &'static str,
        #[source]
        source: nix::Error,
    },

    /// A file on a mounted config filesystem cannot be read.
    #[error("{origin}: cannot read {path}: {source}")]
    Read {
        origin: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `config.yaml` exists but is not a regular file.
    #[error("{origin}: {path} is not a regular file")]
    NotAFile { origin: String, path: PathBuf },
}
