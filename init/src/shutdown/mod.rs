//! Graceful shutdown: stop every process with a deadline, sync, unmount,
//! then power off or reboot.
//!
//! Triggers: SIGTERM (power off), SIGINT — which is how the kernel delivers
//! ctrl-alt-del once `reboot(RB_DISABLE_CAD)` is set (reboot(2)) — (reboot,
//! as sysvinit's `ctrlaltdel` and systemd do), and the ACPI power button
//! (power off).

pub mod button;

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::boot::mounts;
use crate::supervise::Reaper;

/// Why the machine is going down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Sigterm,
    CtrlAltDel,
    PowerButton(String),
    /// `reboot` or `shutdown` through the node API, by this client.
    Api {
        power_off: bool,
        by: String,
    },
}

impl Trigger {
    pub fn power_off(&self) -> bool {
        match self {
            Trigger::CtrlAltDel => false,
            Trigger::Api { power_off, .. } => *power_off,
            _ => true,
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Sigterm => write!(f, "SIGTERM"),
            Trigger::CtrlAltDel => write!(f, "ctrl-alt-del (SIGINT)"),
            Trigger::PowerButton(dev) => write!(f, "power button ({dev})"),
            Trigger::Api { power_off, by } => write!(
                f,
                "node API {} request from {by}",
                if *power_off { "shutdown" } else { "reboot" }
            ),
        }
    }
}

/// How long processes get between SIGTERM and SIGKILL.
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// PF_KTHREAD from include/linux/sched.h: set in /proc/PID/stat's flags for
/// kernel threads, which kill(-1, ...) also counts but which never exit.
const PF_KTHREAD: u64 = 0x0020_0000;

/// Pids of user-space processes other than PID 1, from `<proc_root>`.
/// kill(-1, 0) cannot answer "is anything left?" because the kernel counts
/// kernel threads as signalled (kill_something_info in kernel/signal.c).
pub fn user_processes(proc_root: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return pids;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == 1 {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        if let Some((state, flags)) = stat_state_flags(&stat) {
            // Zombies are gone as far as shutdown is concerned: the reaper
            // collects them.
            if flags & PF_KTHREAD == 0 && state != 'Z' {
                pids.push(pid);
            }
        }
    }
    pids.sort_unstable();
    pids
}

/// (state, flags) from /proc/PID/stat (proc(5): field 3 state, field 9
/// flags). comm (field 2) may hold spaces and parentheses, so split after
/// the last ')'.
fn stat_state_flags(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let flags = fields.get(6)?.parse().ok()?;
    Some((state, flags))
}

/// Runs the shutdown sequence and never returns.
pub async fn run(trigger: Trigger, reaper: Reaper) -> ! {
    let power_off = trigger.power_off();
    let total = Instant::now();

    let t = Instant::now();
    stop_processes(&reaper).await;
    log::info!(
        "shutdown phase stop-processes done in {} ms",
        t.elapsed().as_millis()
    );

    let t = Instant::now();
    nix::unistd::sync();
    log::info!("shutdown phase sync done in {} ms", t.elapsed().as_millis());

    let t = Instant::now();
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|s| mounts::parse_mountinfo(&s))
        .unwrap_or_default();
    for target in mounts::shutdown_order(&mounted) {
        match mounts::unmount_or_remount_ro(&target) {
            Ok(how) => log::debug!("shutdown: {} {how}", target.display()),
            Err(e) => log::warn!(
                "shutdown: cannot unmount or remount {}: {e}",
                target.display()
            ),
        }
    }
    nix::unistd::sync();
    log::info!(
        "shutdown phase unmount done in {} ms",
        t.elapsed().as_millis()
    );

    log::info!(
        "shutdown complete in {} ms, {}",
        total.elapsed().as_millis(),
        if power_off {
            "powering off"
        } else {
            "rebooting"
        }
    );
    crate::boot::power::final_reboot(power_off)
}

/// SIGTERM to every process, wait up to the deadline, then SIGKILL.
async fn stop_processes(reaper: &Reaper) {
    let proc_root = Path::new("/proc");
    if user_processes(proc_root).is_empty() {
        return;
    }
    // kill(-1, sig) signals every process except PID 1 (kill(2)).
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    let deadline = Instant::now() + STOP_DEADLINE;
    while Instant::now() < deadline {
        reaper.drain();
        if user_processes(proc_root).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = user_processes(proc_root);
    log::warn!(
        "shutdown: {} process(es) still running after {} s, sending SIGKILL: {left:?}",
        left.len(),
        STOP_DEADLINE.as_secs()
    );
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && !user_processes(proc_root).is_empty() {
        reaper.drain();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_table() {
        let cases: &[(&str, Option<(char, u64)>)] = &[
            (
                "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0",
                Some(('S', 2129984)),
            ),
            (
                "77 (etcd) S 1 77 77 0 -1 4194560 10 0",
                Some(('S', 4194560)),
            ),
            (
                "78 (a b) (c)) Z 1 78 78 0 -1 4194564 0",
                Some(('Z', 4194564)),
            ),
            ("garbage", None),
        ];
        for (line, want) in cases {
            assert_eq!(stat_state_flags(line), *want, "{line}");
        }
    }

    #[test]
    fn user_processes_skip_init_kernel_threads_and_zombies() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        let write = |pid: &str, stat: &str| {
            std::fs::create_dir_all(p.join(pid)).unwrap();
            std::fs::write(p.join(pid).join("stat"), stat).unwrap();
        };
        write("1", "1 (init) S 0 1 1 0 -1 4194560 0");
        write("2", "2 (kthreadd) S 0 0 0 0 -1 2129984 0");
        write("40", "40 (etcd) S 1 40 40 0 -1 4194560 0");
        write("41", "41 (sh) Z 1 41 41 0 -1 4194564 0");
        write("7", "7 (kworker/0:1) I 2 0 0 0 -1 69238880 0");
        std::fs::create_dir_all(p.join("self")).unwrap();
        assert_eq!(user_processes(p), vec![40]);
    }

    #[test]
    fn triggers() {
        assert!(Trigger::Sigterm.power_off());
        assert!(Trigger::PowerButton("event0".into()).power_off());
        assert!(!Trigger::CtrlAltDel.power_off());
    }
}
