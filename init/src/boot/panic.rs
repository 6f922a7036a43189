//! The panic hook for PID 1.
//!
//! If PID 1 exits, the kernel panics with "Attempted to kill init!" and the
//! machine hangs or reboots with nothing useful on the console. Instead the
//! hook logs the panic to /dev/kmsg (bypassing the logger, whose lock may be
//! held), takes the VIPs off (lo down), syncs (bounded), and reboots or powers off as `keel.panic=` asks (default:
//! reboot, so an unattended server retries its boot). It never returns: with
//! `panic = "abort"` returning would abort PID 1.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::cmdline::Cmdline;

use super::kmsg;

const REBOOT: u8 = 0;
const POWEROFF: u8 = 1;

static MODE: AtomicU8 = AtomicU8::new(REBOOT);

/// What the hook does after logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicAction {
    Reboot,
    PowerOff,
}

#[derive(Debug, thiserror::Error)]
#[error("kernel parameter keel.panic={value}: expected `reboot` or `poweroff`")]
pub struct PanicParamError {
    value: String,
}

/// Reads `keel.panic=` (`reboot`, the default, or `poweroff`).
pub fn action_from(cmdline: &Cmdline) -> Result<PanicAction, PanicParamError> {
    match cmdline.get("keel.panic") {
        None | Some("reboot") => Ok(PanicAction::Reboot),
        Some("poweroff") => Ok(PanicAction::PowerOff),
        Some(other) => Err(PanicParamError {
            value: other.to_string(),
        }),
    }
}

pub fn set_action(action: PanicAction) {
    let v = match action {
        PanicAction::Reboot => REBOOT,
        PanicAction::PowerOff => POWEROFF,
    };
    MODE.store(v, Ordering::SeqCst);
}

/// How long the panic hook waits for sync(2): a disk that hangs must not
/// keep a broken node on the network.
const SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// sync(2) in a thread, waited for at most `timeout` (sync itself cannot
/// be interrupted).
fn bounded_sync(timeout: std::time::Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new().spawn(move || {
        nix::unistd::sync();
        let _ = tx.send(());
    });
    match spawned {
        Ok(_) => {
            if rx.recv_timeout(timeout).is_err() {
                kmsg::emergency("sync did not finish in time; going on without it");
            }
        }
        Err(_) => nix::unistd::sync(),
    }
}

/// Installs the hook. Call first thing in PID 1.
pub fn install() {
    std::panic::set_hook(Box::new(|info| {
        let action = if MODE.load(Ordering::SeqCst) == POWEROFF {
            PanicAction::PowerOff
        } else {
            PanicAction::Reboot
        };
        kmsg::emergency(&format!("PID 1 panicked: {info}"));
        let verb = match action {
            PanicAction::Reboot => "rebooting",
            PanicAction::PowerOff => "powering off",
        };
        // The VIPs live on lo (vip/responder.rs): with lo down the kernel
        // drops their traffic at once, before a sync that may take long.
        if let Err(e) = crate::net::ethtool::set_down("lo") {
            kmsg::emergency(&format!("cannot set lo down: {e}"));
        }
        kmsg::emergency(&format!(
            "syncing (at most {} s) and {verb} (keel.panic= chooses reboot or poweroff)",
            SYNC_TIMEOUT.as_secs()
        ));
        bounded_sync(SYNC_TIMEOUT);
        super::power::final_reboot(action == PanicAction::PowerOff);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_table() {
        let cases: &[(&str, Option<PanicAction>)] = &[
            ("", Some(PanicAction::Reboot)),
            ("keel.panic=reboot", Some(PanicAction::Reboot)),
            ("keel.panic=poweroff", Some(PanicAction::PowerOff)),
            ("keel.panic=halt", None),
            ("keel.panic", None),
        ];
        for (line, want) in cases {
            let got = action_from(&Cmdline::parse(line)).ok();
            assert_eq!(got, *want, "{line}");
        }
        let err = action_from(&Cmdline::parse("keel.panic=halt")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel parameter keel.panic=halt: expected `reboot` or `poweroff`"
        );
    }
}
