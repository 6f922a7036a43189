//! The sending side of one VM port: a socket connected to the VM's bound
//! path, and a short queue for when the VM is not reading.
//!
//! Each port sends from its own unbound datagram socket *connected* to the
//! VM's path. A connected unix datagram socket polls writable only when the
//! peer's receive queue has room (`net.unix.max_dgram_qlen`, only 10
//! datagrams by default), so the switch waits for the VM instead of
//! spinning or dropping bursts. A VM that is not there (no socket, or a
//! socket file left by an exited QEMU) drops the frames sent to it, like a
//! switch port with no link; a restarted QEMU binds the path again and is
//! reconnected on the next frame.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::SwitchError;
use crate::switch::PortStats;
use crate::sys;

/// Frames queued per port while its VM's socket is full; more are dropped
/// (tail drop), as a switch with a small buffer would.
pub const EGRESS_QUEUE: usize = 128;

pub(crate) struct Egress {
    sock: UnixDatagram,
    /// The VM's socket (what QEMU binds as `local.path`).
    path: PathBuf,
    connected: bool,
    queue: VecDeque<Arc<[u8]>>,
}

impl Egress {
    pub(crate) fn new(path: PathBuf) -> Result<Egress, SwitchError> {
        let setup = |source| SwitchError::Setup {
            path: path.clone(),
            source,
        };
        let sock = UnixDatagram::unbound().map_err(setup)?;
        sock.set_nonblocking(true).map_err(setup)?;
        Ok(Egress {
            sock,
            path,
            connected: false,
            queue: VecDeque::new(),
        })
    }

    pub(crate) fn fd(&self) -> RawFd {
        sys::raw(&self.sock)
    }

    /// Frames are waiting for the VM to make room: poll for writable.
    pub(crate) fn backlogged(&self) -> bool {
        self.connected && !self.queue.is_empty()
    }

    /// Queues a frame and sends what the VM accepts now. Errors that are
    /// not about the VM being absent or busy are returned (the frame they
    /// concern is dropped); counters go to `stats`.
    pub(crate) fn send(
        &mut self,
        frame: Arc<[u8]>,
        stats: &mut PortStats,
        errors: &mut Vec<SwitchError>,
    ) {
        if self.queue.len() >= EGRESS_QUEUE {
            stats.tx_dropped += 1;
            return;
        }
        self.queue.push_back(frame);
        self.flush(stats, errors);
    }

    /// Sends queued frames until the queue is empty or the VM's socket is
    /// full.
    pub(crate) fn flush(&mut self, stats: &mut PortStats, errors: &mut Vec<SwitchError>) {
        // One reconnect per flush: a peer that refuses again right after a
        // successful connect is gone for good (for now).
        let mut reconnected = false;
        while !self.queue.is_empty() {
            if !self.connected {
                match self.connect() {
                    Ok(()) => {}
                    Err(e) if peer_absent(&e) => {
                        stats.tx_no_peer += self.queue.len() as u64;
                        self.queue.clear();
                        return;
                    }
                    Err(source) => {
                        stats.tx_dropped += self.queue.len() as u64;
                        self.queue.clear();
                        errors.push(SwitchError::Send {
                            path: self.path.clone(),
                            source,
                        });
                        return;
                    }
                }
            }
            let frame = &self.queue[0];
            match self.sock.send(frame) {
                Ok(_) => {
                    stats.tx_frames += 1;
                    stats.tx_bytes += frame.len() as u64;
                    self.queue.pop_front();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The VM's socket closed (QEMU exited or restarted): the
                // kernel has dropped the association; connect again.
                Err(e) if peer_gone(&e) && !reconnected => {
                    self.connected = false;
                    reconnected = true;
                }
                Err(e) if peer_gone(&e) => {
                    self.connected = false;
                    stats.tx_no_peer += self.queue.len() as u64;
                    self.queue.clear();
                    return;
                }
                Err(source) => {
                    stats.tx_dropped += 1;
                    self.queue.pop_front();
                    errors.push(SwitchError::Send {
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Connects to the VM's socket now (used to wait for a VM to start).
    pub(crate) fn try_connect(&mut self) -> bool {
        self.connected || self.connect().is_ok()
    }

    fn connect(&mut self) -> io::Result<()> {
        self.sock.connect(&self.path)?;
        self.connected = true;
        Ok(())
    }
}

/// No VM listens: no socket file, or one left behind by an exited QEMU.
fn peer_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

/// The connected VM socket went away.
fn peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::NotConnected
    )
}
