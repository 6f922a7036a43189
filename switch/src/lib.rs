//! A small userspace Ethernet switch for QEMU VMs, over unix datagram
//! sockets, that records every frame: one shared L2 segment for 1–3 test
//! VMs without root, namespaces or tap devices, observed from the host.
//!
//! # Transport: `-netdev dgram` over unix sockets
//!
//! Each VM NIC is a QEMU 7.2 `dgram` netdev on a pair of unix datagram
//! sockets:
//!
//! ```text
//! -netdev dgram,id=n0,local.type=unix,local.path=DIR/vm0.sock,remote.type=unix,remote.path=DIR/port0.sock
//! -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:01
//! ```
//!
//! - The switch binds `DIR/port<i>.sock` ([`Switch::port_path`]); QEMU
//!   sends every guest frame there (`remote.path`) as one datagram.
//! - QEMU binds `DIR/vm<i>.sock` ([`Switch::vm_path`], its `local.path`;
//!   QEMU unlinks a stale file there first, and leaves it behind when it
//!   exits). The switch sends that VM's frames to it, one frame per
//!   datagram, from a socket connected to that path.
//! - Either side may start first. Frames for a VM that is not running are
//!   dropped and counted ([`PortStats::tx_no_peer`]); a restarted QEMU is
//!   picked up on the next frame. [`Switch::netdev`] renders the
//!   `-netdev` value; `keel_qemu::Nic::dgram_unix(id, vm_path, port_path)`
//!   builds the same.
//!
//! Why datagrams rather than `-netdev stream` (a 4-byte big-endian length
//! before each frame on a stream socket): a datagram is exactly one frame,
//! so there is no framing to parse, no partial reads or writes to carry
//! over, and no connection state: a VM can start, stop and restart without
//! the switch accepting anything, and a frame is either delivered whole or
//! not at all. Flow control is still there: the connected sending socket
//! polls writable only when the VM's receive queue has room.
//!
//! # Forwarding
//!
//! A learning switch: the source MAC of every frame is learned on its
//! ingress port (aging [`MAC_AGING`]); broadcast, multicast and unknown
//! unicast are flooded to every other port; known unicast goes only to its
//! port. Frames from this process ([`Switch::inject`]) come in on a virtual
//! host port ([`Switch::host_port`], one past the last VM port), so replies
//! to them are recorded but not flooded to the VMs.
//!
//! # Observer
//!
//! Every frame that enters the switch, from a VM or injected, is recorded
//! with a monotonic timestamp and its ingress port ([`Frame`]): read the
//! bounded history with [`Switch::frames`], or get each frame as it comes
//! with [`Switch::subscribe`]. [`Frame::arp`] decodes ARP;
//! [`Switch::who_has`] probes for an IP and collects the replies.
//!
//! ```no_run
//! use std::time::Duration;
//! use keel_switch::Switch;
//!
//! let switch = Switch::start("/tmp/l2", 3)?;
//! // ... start QEMU with switch.netdev("n0", i) for VM i ...
//! for (mac, at) in switch.who_has("10.5.0.100".parse().unwrap(), Duration::from_millis(500)) {
//!     println!("{mac} answered at {at:?}");
//! }
//! let gratuitous = switch
//!     .frames()
//!     .iter()
//!     .filter(|f| f.arp().is_some_and(|a| a.is_gratuitous()))
//!     .count();
//! # Ok::<(), keel_switch::SwitchError>(())
//! ```
//!
//! The `keel-switch` binary runs one from the command line, with a
//! [`control`] socket answering `who-has` and friends.

pub mod control;
mod egress;
mod error;
mod frame;
mod nd;
mod probe;
mod switch;
mod sys;

pub use egress::EGRESS_QUEUE;
pub use error::SwitchError;
pub use frame::{
    arp_probe, arp_reply, gratuitous_arp, parse_arp, Arp, ArpOp, Ethernet, Frame, MacAddr,
    ParseMacError, ARP_LEN, ETHERNET_HEADER_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_VLAN,
};
pub use nd::{link_local, neighbor_solicitation, parse_na, solicited_node, Na, ETHERTYPE_IPV6};
pub use probe::{claims, Segment, WhoHas};
pub use switch::{
    Injector, PortStats, Stats, Switch, SwitchOptions, HOST_MAC, MAC_AGING, MAX_FRAME,
    SUBSCRIBER_QUEUE,
};
