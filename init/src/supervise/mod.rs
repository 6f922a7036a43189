//! Child processes: the reaper that owns `waitpid(-1)`; supervision with
//! restart and backoff builds on it.

pub mod reaper;

pub use reaper::{Child, Exit, Reaper};
