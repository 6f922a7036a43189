//! The few system calls std does not wrap: poll(2), and probing whether a
//! unix datagram socket path has a live owner.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

pub(crate) use libc::{POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT};

/// One descriptor to wait on.
pub(crate) fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// True if `revents` of `pfd` has any of `mask` (error and hang-up always
/// count, so the caller looks at the descriptor and sees the error).
pub(crate) fn ready(pfd: &libc::pollfd, mask: libc::c_short) -> bool {
    pfd.revents & (mask | POLLERR | POLLHUP | POLLNVAL) != 0
}

/// poll(2) over `fds`, `None` waiting forever. An interrupted wait returns
/// `Ok(0)` like a timeout; callers loop anyway.
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = match timeout {
        None => -1,
        Some(t) => libc::c_int::try_from(t.as_millis()).unwrap_or(libc::c_int::MAX),
    };
    // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd for the
    // whole call and its length is passed with it; poll only writes
    // `revents` inside it.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(n as usize)
}

/// Whether a process holds a unix datagram socket bound at `path`: a
/// connect succeeds. A socket file left behind by an exited process
/// refuses (ECONNREFUSED).
pub(crate) fn dgram_alive(path: &Path) -> bool {
    UnixDatagram::unbound()
        .and_then(|s| s.connect(path))
        .is_ok()
}

/// Drains a non-blocking wake-up socket.
pub(crate) fn drain(sock: &UnixDatagram) {
    let mut buf = [0u8; 64];
    while sock.recv(&mut buf).is_ok() {}
}

pub(crate) fn raw(s: &impl AsRawFd) -> RawFd {
    s.as_raw_fd()
}
