//! The one owner of `waitpid(-1)`.
//!
//! PID 1 inherits every orphan on the system, so it must reap whatever
//! exits, and a supervisor must still learn its own child's exit status.
//! Both needs are met by one task: on SIGCHLD it drains `waitpid(-1,
//! WNOHANG)` and hands each status to the supervisor that registered the
//! pid; any other pid is an orphan and is just reaped. Nothing else in Keel
//! may wait for children (no `tokio::process::Child::wait`), or statuses
//! would be stolen.
//!
//! Race freedom: a child is spawned and registered while the state lock is
//! held, and the drain loop calls waitpid with the same lock held, so a
//! child that exits at once cannot be reaped before its waiter exists.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => match nix::sys::signal::Signal::try_from(*s) {
                Ok(sig) => write!(f, "killed by {sig}"),
                Err(_) => write!(f, "killed by signal {s}"),
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReaperError {
    #[error("cannot install the SIGCHLD handler: {0}")]
    Signal(#[source] std::io::Error),
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// A spawned child: its pid and a receiver for its exit.
#[derive(Debug)]
pub struct Child {
    pub pid: Pid,
    pub exit: oneshot::Receiver<Exit>,
}

#[derive(Default)]
struct State {
    waiters: HashMap<Pid, oneshot::Sender<Exit>>,
    orphans_reaped: u64,
}

#[derive(Clone)]
pub struct Reaper {
    state: Arc<Mutex<State>>,
}

impl Reaper {
    /// Installs the SIGCHLD handler and starts the reaping task on the
    /// current tokio runtime.
    pub fn start() -> Result<Reaper, ReaperError> {
        let mut sigchld = signal(SignalKind::child()).map_err(ReaperError::Signal)?;
        let reaper = Reaper {
            state: Arc::new(Mutex::new(State::default())),
        };
        let r = reaper.clone();
        tokio::spawn(async move {
            // Children that exited before the handler existed.
            r.drain();
            while sigchld.recv().await.is_some() {
                r.drain();
            }
        });
        Ok(reaper)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Poisoning cannot leave the map inconsistent (single inserts and
        // removes), so keep going rather than lose the reaper.
        crate::lock(&self.state)
    }

    /// Spawns `cmd` and registers it; its exit arrives on `Child::exit`.
    pub fn spawn(&self, cmd: &mut Command) -> Result<Child, ReaperError> {
        let mut state = self.lock();
        let child = cmd.spawn().map_err(|source| ReaperError::Spawn {
            program: cmd.get_program().to_string_lossy().into_owned(),
            source,
        })?;
        let pid = Pid::from_raw(child.id() as i32);
        // Dropping std's Child neither waits nor kills; the reaper owns it.
        drop(child);
        let (tx, rx) = oneshot::channel();
        state.waiters.insert(pid, tx);
        Ok(Child { pid, exit: rx })
    }

    /// Reaps every child that has exited.
    pub fn drain(&self) {
        let mut state = self.lock();
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => state.deliver(pid, Exit::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _core)) => {
                    state.deliver(pid, Exit::Signal(sig as i32))
                }
                // StillAlive: nothing more to reap now. Stopped/continued
                // states are not requested (no WUNTRACED).
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => continue,
                // ECHILD: no children at all.
                Err(_) => break,
            }
        }
    }

    /// Orphans reaped so far (for the status line and tests).
    pub fn orphans_reaped(&self) -> u64 {
        self.lock().orphans_reaped
    }
}

impl State {
    fn deliver(&mut self, pid: Pid, exit: Exit) {
        match self.waiters.remove(&pid) {
            // The supervisor may have stopped listening; that is fine.
            Some(tx) => {
                let _ = tx.send(exit);
            }
            None => {
                self.orphans_reaped += 1;
                log::debug!("reaped orphan {pid} ({exit})");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_display() {
        assert_eq!(Exit::Code(3).to_string(), "exit code 3");
        assert_eq!(Exit::Signal(9).to_string(), "killed by SIGKILL");
    }
}
