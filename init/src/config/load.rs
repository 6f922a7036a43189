//! PID 1's config loop: try the sources in precedence order until one
//! yields a valid config, forever if need be.
//!
//! No config, or a bad one, is never fatal (docs/ARCHITECTURE.md, "Boot sequence"): the
//! partition may be plugged in later, the URL may come up or be fixed. Each
//! distinct failure is logged once in plain words; the same failure
//! repeated is only summarised once a minute, so a node waiting for its
//! config does not flood the console.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::source::{self, Backoff, Env, LoadAttempt, SourceSettings};
use super::{parse, Config};

/// How long one URL attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Without a URL only local sources are polled: cheap, so poll often enough
/// that a config disk plugged in by hand is picked up within seconds.
const LOCAL_POLL_CAP: Duration = Duration::from_secs(3);
/// How long a pass that found no config goes unreported while the storage
/// drivers still load.
const DEVICES_WAIT: Duration = Duration::from_secs(10);
/// How often an unchanged failure is repeated in the log.
const REPEAT_EVERY: Duration = Duration::from_secs(60);

/// A valid config and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Arc<Config>,
    pub origin: String,
    /// The config's warnings (ignored Talos keys and the like), as logged.
    pub warnings: Vec<String>,
}

/// Logs a failure report unless it is the same as the last one and was
/// logged less than [`REPEAT_EVERY`] ago.
struct Reporter {
    last: String,
    at: Option<Instant>,
    attempts_since: u32,
}

impl Reporter {
    fn report(&mut self, report: String, error: bool) {
        let stale = self.at.is_none_or(|t| t.elapsed() >= REPEAT_EVERY);
        if report != self.last || stale {
            let again = if report == self.last && self.attempts_since > 0 {
                format!(" (still, after {} more attempts)", self.attempts_since)
            } else {
                String::new()
            };
            for (i, line) in report.lines().enumerate() {
                let line = if i == 0 {
                    format!("{line}{again}")
                } else {
                    format!("  {line}")
                };
                if error {
                    log::error!("{line}");
                } else {
                    log::warn!("{line}");
                }
            }
            self.last = report;
            self.at = Some(Instant::now());
            self.attempts_since = 0;
        } else {
            self.attempts_since += 1;
        }
    }
}

/// Loops until a valid config is found. `None` when loading is disabled
/// (`keel.config=none`). `rescan` runs before every pass but the first
/// (the boot's own coldplug has just run): it coldplugs
/// devices that appeared since (a hot-plugged config disk needs its block
/// driver loaded before its label can be read). `url_ready` says whether a
/// link has a usable address for the URL source. `wake` cuts a retry delay
/// short: the network manager signals it when links or leases change, so
/// the URL is tried as soon as DHCP has an address, not seconds later.
/// While `devices_settled` is false (storage drivers still loading) a pass
/// that found no config is not reported, and the next one follows `wake`.
pub async fn load_until_valid<R, U, S>(
    settings: SourceSettings,
    env: Env,
    rescan: R,
    url_ready: U,
    devices_settled: S,
    wake: Arc<tokio::sync::Notify>,
) -> Option<Loaded>
where
    R: Fn() + Send + Sync + Clone + 'static,
    U: Fn() -> bool + Send + Sync + Clone + 'static,
    S: Fn() -> bool,
{
    let settings = Arc::new(settings);
    let begun = Instant::now();
    let seed = source::backoff::seed_from(&[env.sys_root.to_string_lossy().as_bytes()]);
    let mut backoff = Backoff::with_seed(seed);
    let mut reporter = Reporter {
        last: String::new(),
        at: None,
        attempts_since: 0,
    };
    let mut first = true;
    loop {
        let rescan_now = !std::mem::take(&mut first);
        let (s, e, r, u) = (
            settings.clone(),
            env.clone(),
            rescan.clone(),
            url_ready.clone(),
        );
        // Sources do blocking I/O (HTTP, mount, superblock reads): keep them
        // off the runtime thread so signals are still handled meanwhile.
        let attempt = tokio::task::spawn_blocking(move || {
            if rescan_now {
                r();
            }
            source::load_once(&s, &e, u(), ATTEMPT_TIMEOUT)
        })
        .await;
        let attempt = match attempt {
            Ok(a) => a,
            Err(e) => {
                log::error!("config loading task failed: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        match attempt {
            LoadAttempt::Disabled => {
                log::info!("config loading disabled (keel.config=none)");
                return None;
            }
            LoadAttempt::Loaded(fetched) => match std::str::from_utf8(&fetched.bytes) {
                Err(e) => reporter.report(
                    format!(
                        "config from {} is not UTF-8 text: {e}; retrying",
                        fetched.origin
                    ),
                    true,
                ),
                Ok(text) => match parse(text) {
                    Ok(parsed) => {
                        for w in &parsed.warnings {
                            log::warn!("config from {}: {w}", fetched.origin);
                        }
                        return Some(Loaded {
                            config: Arc::new(parsed.config),
                            origin: fetched.origin,
                            warnings: parsed.warnings.iter().map(|w| w.to_string()).collect(),
                        });
                    }
                    Err(errors) => {
                        // An inline config cannot change without a reboot;
                        // a URL or a disk can be fixed in place.
                        let advice = if fetched.origin.contains("inline") {
                            "reboot with a fixed parameter"
                        } else {
                            "fix it and Keel will pick it up"
                        };
                        reporter.report(
                            format!(
                                "config from {} is invalid; {advice}:\n{errors}",
                                fetched.origin
                            ),
                            true,
                        )
                    }
                },
            },
            LoadAttempt::Failed(_) if !devices_settled() && begun.elapsed() < DEVICES_WAIT => {
                // Storage drivers are still loading (the boot loads them
                // in the background): the disk may not be there yet. Not a
                // failure to report; look again when they are in (a
                // driver that hangs is reported after DEVICES_WAIT).
                tokio::select! {
                    _ = tokio::time::sleep(LOCAL_POLL_CAP) => {}
                    _ = wake.notified() => {}
                }
                continue;
            }
            LoadAttempt::Failed(failures) => {
                let mut report = String::from("no machine config yet; retrying:");
                for f in &failures {
                    report.push('\n');
                    report.push_str(&f.to_string());
                }
                reporter.report(report, false);
            }
        }
        let delay = backoff.next_delay();
        let delay = if settings.url.is_some() {
            delay
        } else {
            delay.min(LOCAL_POLL_CAP)
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = wake.notified() => {}
        }
    }
}
