//! etcd under supervision: the command line from the config, the TLS
//! material on disk, the health probe, restarts with backoff, rejoining a
//! cluster after data loss, and stopping on shutdown.
//!
//! The pieces, in the order PID 1 uses them:
//! - [`args`]: the validated config plus what the node knows at run time
//!   ([`args::Runtime`]: its addresses, data and PKI dirs) become a
//!   [`args::Plan`]; [`args::Plan::args`] renders etcd's flags for one start;
//! - [`pki`]: the CA, peer and server certificates and keys, written mode
//!   0600 into a 0700 directory before etcd starts;
//! - [`rejoin`]: before every start, `new` or `existing`, and the membership
//!   changes a member with an empty data dir needs to come back;
//! - [`supervisor`]: the child process (through the [`Reaper`], the sole
//!   owner of `waitpid`), its output, restarts with [`backoff`], stop;
//! - [`health`]: the quorum-read probe and the `Starting → Healthy ↔
//!   Unhealthy` state published on a `tokio::sync::watch` channel.
//!
//! Shutdown order: the VIP loop resigns before etcd stops (its lease and
//! election keys live in etcd). The caller sequences that: resign the VIPs,
//! then [`supervisor::Supervisor::stop`].
//!
//! [`Reaper`]: crate::supervise::Reaper

pub mod args;
pub mod backoff;
pub mod health;
pub mod join;
pub mod output;
pub mod pki;
pub mod rejoin;
pub mod supervisor;
pub mod wal;

pub use args::{ArgsError, ClusterState, Member, Plan, Runtime, Start};
pub use health::Health;
pub use supervisor::{Settings, Supervisor};

/// Where PID 1 keeps etcd's data (`--data-dir`), on the `KEEL-VAR`
/// partition or tmpfs mounted at `/var`.
pub const DATA_DIR: &str = "/var/lib/etcd";

/// Where PID 1 writes the etcd certificates and keys.
pub const PKI_DIR: &str = "/var/lib/keel/etcd-pki";

/// The etcd binary in the image (Debian trixie's `etcd-server` 3.5).
pub const BINARY: &str = "/usr/bin/etcd";
