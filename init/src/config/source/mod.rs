//! Where the machine config comes from: the kernel command line, a URL, or
//! a labelled partition.
//!
//! Precedence (docs/ARCHITECTURE.md, "Machine config"): the first source that
//! yields a config wins.
//!
//! 1. `keel.config.inline=` (plain or zstd YAML, base64) — [`inline`];
//! 2. `keel.config=<url>` once a link has a usable address — [`url`]
//!    (placeholders) and [`fetch`] (one HTTP(S) attempt);
//! 3. a filesystem labelled `KEEL-CONFIG` or `metal-iso` — [`label`].
//!
//! [`load_once`] makes one pass over the sources; PID 1's retry loop calls
//! it again after a [`Backoff`] delay until a config loads (a disk may be
//! inserted, a server may come up). Every source's content goes through the
//! same tail: zstd detection, then the `keel.config.sha256=` pin ([`pin`]).

pub mod backoff;
pub mod error;
pub mod fetch;
pub mod inline;
pub mod label;
pub mod pin;
pub mod settings;
pub mod url;

use std::path::PathBuf;
use std::time::Duration;

pub use backoff::Backoff;
pub use error::SourceError;
pub use fetch::Fetcher;
pub use label::{find_labelled, probe_label, read_config_from, Found, FsType};
pub use settings::SourceSettings;
pub use url::Placeholders;

/// The largest config accepted, after decompression: a Talos machine
/// config with inline TLS material is tens of KiB; 4 MiB is generous and
/// bounds memory against a hostile source.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// A config's bytes and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The YAML, decompressed and checked against the pin.
    pub bytes: Vec<u8>,
    /// `keel.config.inline`, the URL with placeholders substituted, or
    /// `/dev/vdb (vfat, label KEEL-CONFIG)`.
    pub origin: String,
}

/// What [`load_once`] needs from the machine; roots are parameters so
/// tests run on fixture trees.
#[derive(Debug, Clone)]
pub struct Env {
    /// `/sys`: DMI ids, links, block devices.
    pub sys_root: PathBuf,
    /// `/dev`: block device nodes.
    pub dev_root: PathBuf,
    /// `/run/keel`: where the config filesystem is mounted, briefly.
    pub run_dir: PathBuf,
    /// For `${hostname}`, if known yet.
    pub hostname: Option<String>,
}

impl Default for Env {
    fn default() -> Env {
        Env {
            sys_root: PathBuf::from("/sys"),
            dev_root: PathBuf::from("/dev"),
            run_dir: PathBuf::from("/run/keel"),
            hostname: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Inline,
    Url,
    Partition,
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SourceKind::Inline => "inline config",
            SourceKind::Url => "config URL",
            SourceKind::Partition => "config partition",
        })
    }
}

/// One source's failure in one pass.
#[derive(Debug)]
pub struct SourceFailure {
    pub kind: SourceKind,
    pub error: SourceError,
}

impl std::fmt::Display for SourceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.error)
    }
}

/// The result of one pass over the sources.
#[derive(Debug)]
pub enum LoadAttempt {
    /// The first source that yielded a config.
    Loaded(Fetched),
    /// `keel.config=none`: do not load, do not retry.
    Disabled,
    /// Every source tried, in precedence order, with why it failed.
    /// A `WaitingForNetwork` failure means: retry once a link is up.
    Failed(Vec<SourceFailure>),
}

/// One pass: inline → URL (only if `url_ready`: a link has a usable
/// address; otherwise a "waiting for network" failure) → partition.
/// `timeout` bounds the URL attempt.
pub fn load_once(
    settings: &SourceSettings,
    env: &Env,
    url_ready: bool,
    timeout: Duration,
) -> LoadAttempt {
    if settings.disabled {
        return LoadAttempt::Disabled;
    }
    let pin = settings.sha256.as_ref();
    let mut failures = Vec::new();
    let mut fail = |kind, error| failures.push(SourceFailure { kind, error });

    if let Some(inline) = &settings.inline {
        match finish(inline.param, inline.bytes.clone(), pin) {
            Ok(f) => return LoadAttempt::Loaded(f),
            Err(e) => fail(SourceKind::Inline, e),
        }
    }

    if let Some(url) = &settings.url {
        match try_url(settings, &url.template, env, url_ready, timeout) {
            Ok(f) => return LoadAttempt::Loaded(f),
            Err(e) => fail(SourceKind::Url, e),
        }
    }

    match try_partition(env, pin) {
        Ok(f) => return LoadAttempt::Loaded(f),
        Err(e) => fail(SourceKind::Partition, e),
    }
    LoadAttempt::Failed(failures)
}

fn try_url(
    settings: &SourceSettings,
    template: &str,
    env: &Env,
    url_ready: bool,
    timeout: Duration,
) -> Result<Fetched, SourceError> {
    if !url_ready {
        return Err(SourceError::WaitingForNetwork {
            url: template.to_string(),
        });
    }
    let url =
        Placeholders::from_sys(&env.sys_root, env.hostname.as_deref()).substitute(template)?;
    let bytes = Fetcher::new(settings).fetch_once(&url, timeout)?;
    finish(&url, bytes, settings.sha256.as_ref())
}

/// Tries each labelled filesystem in preference order; the first that
/// yields a config wins, else the last error.
fn try_partition(env: &Env, pin: Option<&[u8; 32]>) -> Result<Fetched, SourceError> {
    let mut last = SourceError::NoLabelledFilesystem {
        labels: label::LABELS.join(" or "),
    };
    for found in find_labelled(&env.sys_root, &env.dev_root, label::LABELS) {
        let origin = found.origin();
        match read_config_from(&found, &env.run_dir).and_then(|b| finish(&origin, b, pin)) {
            Ok(f) => return Ok(f),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The common tail: zstd detection and the sha256 pin.
pub fn finish(
    origin: &str,
    bytes: Vec<u8>,
    pin: Option<&[u8; 32]>,
) -> Result<Fetched, SourceError> {
    let bytes = inline::decode_content(origin, bytes)?;
    pin::verify(origin, pin, &bytes)?;
    Ok(Fetched {
        bytes,
        origin: origin.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdline::Cmdline;

    fn env(dir: &std::path::Path) -> Env {
        Env {
            sys_root: dir.join("sys"),
            dev_root: dir.join("dev"),
            run_dir: dir.join("run"),
            hostname: None,
        }
    }

    fn settings(line: &str) -> SourceSettings {
        SourceSettings::from_cmdline(&Cmdline::parse(line)).unwrap()
    }

    fn failures(a: LoadAttempt) -> Vec<String> {
        match a {
            LoadAttempt::Failed(f) => f.iter().map(|f| f.to_string()).collect(),
            other => panic!("expected failures, got {other:?}"),
        }
    }

    #[test]
    fn precedence_and_failures() {
        let dir = tempfile::tempdir().unwrap();
        let env = env(dir.path());
        let t = Duration::from_secs(1);

        // "a: 1\n" inline wins over everything.
        let s = settings("keel.config.inline=YTogMQo= keel.config=http://192.0.2.1/c");
        match load_once(&s, &env, true, t) {
            LoadAttempt::Loaded(f) => {
                assert_eq!(
                    (f.bytes.as_slice(), f.origin.as_str()),
                    (&b"a: 1\n"[..], "keel.config.inline")
                )
            }
            other => panic!("{other:?}"),
        }

        assert!(matches!(
            load_once(
                &settings("keel.config=none keel.config.inline=YQ=="),
                &env,
                true,
                t
            ),
            LoadAttempt::Disabled
        ));

        // Nothing configured: only the partition is tried.
        assert_eq!(
            failures(load_once(&settings(""), &env, false, t)),
            vec!["config partition: no filesystem labelled KEEL-CONFIG or metal-iso found on any block device"]
        );

        // A pinned inline config that does not match falls through, and the
        // URL waits for the network.
        let s = settings(&format!(
            "talos.config.inline=YQ== keel.config=http://c/${{uuid}} keel.config.sha256={}",
            "0".repeat(64)
        ));
        let f = failures(load_once(&s, &env, false, t));
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(
            f[0].starts_with("inline config: talos.config.inline: sha256 mismatch"),
            "{}",
            f[0]
        );
        assert_eq!(
            f[1],
            "config URL: http://c/${uuid}: waiting for network (no link has a usable address yet)"
        );
        assert!(
            f[2].starts_with("config partition: no filesystem"),
            "{}",
            f[2]
        );

        // Network up, but this machine has no DMI UUID.
        let f = failures(load_once(&s, &env, true, t));
        assert!(
            f[1].contains("placeholder ${uuid} has no value"),
            "{}",
            f[1]
        );
    }

    #[test]
    fn finish_pins_decompressed_content() {
        let yaml = b"machine: {}\n";
        let z = ruzstd::encoding::compress_to_vec(
            &yaml[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let mut pin = [0u8; 32];
        hex::decode_to_slice(pin::sha256_hex(yaml), &mut pin).unwrap();
        assert_eq!(finish("x", z.clone(), Some(&pin)).unwrap().bytes, yaml);
        let mut zpin = [0u8; 32];
        hex::decode_to_slice(pin::sha256_hex(&z), &mut zpin).unwrap();
        assert!(matches!(
            finish("x", z, Some(&zpin)),
            Err(SourceError::Sha256Mismatch { .. })
        ));
    }
}
