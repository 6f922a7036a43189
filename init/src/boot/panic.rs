//! The panic hook for PID 1.
//!
//! If PID 1 exits, the kernel panics with "Attempted to kill init!" and the
//! machine hangs or reboots with nothing useful on the console. Instead the
//! hook logs the panic to /dev/kmsg (bypassing the logger, whose lock may be
//! held), syncs, and reboots or powers off as `keel.panic=` asks (default:
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
        kmsg::emergency(&format!(
            "syncing and {verb} (keel.panic= chooses reboot or poweroff)"
        ));
        nix::unistd::sync();
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
