//! The one error type of this crate.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Errors starting, using or querying a [`Switch`](crate::Switch). Every
/// variant about a socket names its path.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("a switch needs at least one port")]
    NoPorts,
    #[error("port {port} out of range (the switch has {ports} ports)")]
    NoSuchPort { port: usize, ports: usize },
    #[error(
        "socket path {path} is {len} bytes, longer than the {max} a unix socket address holds; \
         use a shorter directory"
    )]
    PathTooLong {
        path: PathBuf,
        len: usize,
        max: usize,
    },
    #[error("creating directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Another live process (a switch already running on the same
    /// directory, say) listens on this path.
    #[error("{path} is in use by another process")]
    InUse { path: PathBuf },
    /// Something other than a socket is where a socket must go.
    #[error("{path} exists and is not a socket; not replacing it")]
    NotASocket { path: PathBuf },
    #[error("removing stale socket {path}: {source}")]
    RemoveStale {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("binding {path}: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Setting up a socket (non-blocking mode, a socket option).
    #[error("setting up socket {path}: {source}")]
    Setup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("receiving on {path}: {source}")]
    Recv {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("sending to {path}: {source}")]
    Send {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("frame of {len} bytes on {path} is larger than the {max}-byte maximum")]
    Oversized {
        path: PathBuf,
        len: usize,
        max: usize,
    },
    #[error("frame of {len} bytes on {path} is shorter than an Ethernet header")]
    Runt { path: PathBuf, len: usize },
    #[error("frame of {len} bytes is not a valid Ethernet frame (14 to {max} bytes)")]
    BadFrame { len: usize, max: usize },
    #[error("no VM socket at {path} accepted a connection within {timeout:?}")]
    PeerTimeout { path: PathBuf, timeout: Duration },
    #[error("starting the switch thread: {source}")]
    Thread {
        #[source]
        source: io::Error,
    },
    #[error("waiting for events on the switch sockets in {dir}: {source}")]
    Poll {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Talking to a control socket (client side).
    #[error("control socket {path}: {source}")]
    Control {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The control socket answered `error ...`.
    #[error("control socket {path} answered: {message}")]
    ControlReply { path: PathBuf, message: String },
}
