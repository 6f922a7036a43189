//! Thread scheduling policy for PID 1's background work (sched(7)).
//!
//! Raw system calls: musl's `sched_setscheduler()` is a stub that fails
//! with ENOSYS (POSIX makes it process-wide, Linux's call is per thread),
//! and nix has no wrapper; the kernel's own call takes a thread id.

use nix::libc;

/// The calling thread's id (gettid(2)).
pub fn current_tid() -> i32 {
    // SAFETY: gettid(2) takes no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    i32::try_from(tid).unwrap_or(0)
}

/// Puts thread `tid` under SCHED_IDLE (it runs only when nothing else
/// wants the CPU) or back under SCHED_OTHER; both take priority 0
/// (sched_setscheduler(2)).
pub fn set_idle(tid: i32, idle: bool) -> std::io::Result<()> {
    let policy = if idle {
        libc::SCHED_IDLE
    } else {
        libc::SCHED_OTHER
    };
    // The kernel's `struct sched_param` is one int (include/uapi/linux/
    // sched/types.h); musl's libc type adds POSIX sporadic-server fields.
    #[repr(C)]
    struct Param {
        sched_priority: libc::c_int,
    }
    let param = Param { sched_priority: 0 };
    // SAFETY: the kernel reads one `struct sched_param` from `&param`,
    // which lives on this stack for the whole call; the call changes only
    // thread `tid`'s policy.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_setscheduler,
            tid,
            policy,
            &param as *const Param,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thread `tid`'s policy (sched_getscheduler(2)).
    fn policy(tid: i32) -> std::io::Result<i32> {
        // SAFETY: sched_getscheduler(2) takes a thread id and reads no memory.
        let r = unsafe { libc::syscall(libc::SYS_sched_getscheduler, tid) };
        i32::try_from(r)
            .ok()
            .filter(|p| *p >= 0)
            .ok_or_else(std::io::Error::last_os_error)
    }

    #[test]
    fn idle_and_back_on_a_thread_of_its_own() {
        // A thread of its own: the test harness's threads are shared.
        std::thread::spawn(|| {
            let tid = current_tid();
            assert!(tid > 0);
            for (idle, want) in [
                (true, libc::SCHED_IDLE),
                (false, libc::SCHED_OTHER),
                (true, libc::SCHED_IDLE),
                (false, libc::SCHED_OTHER),
            ] {
                set_idle(tid, idle).unwrap();
                assert_eq!(policy(tid).unwrap(), want, "idle {idle}");
            }
        })
        .join()
        .unwrap();
    }
}
