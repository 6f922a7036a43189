//! The last step of every shutdown path: reboot(2).

use std::time::Duration;

use nix::sys::reboot::{reboot, RebootMode};

/// Powers off or reboots the machine. Never returns: if the syscall fails
/// (it cannot for PID 1 with CAP_SYS_BOOT, but PID 1 must not exit whatever
/// happens), it logs and sleeps forever.
pub fn final_reboot(power_off: bool) -> ! {
    let mode = if power_off {
        RebootMode::RB_POWER_OFF
    } else {
        RebootMode::RB_AUTOBOOT
    };
    // The last lines (queued for the kmsg writer) reach the console first.
    log::logger().flush();
    // reboot(2) returns only on error.
    let Err(e) = reboot(mode);
    super::kmsg::emergency(&format!("reboot({mode:?}) failed: {e}; halting here"));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
