//! DHCPv4 client core (RFC 2131, options from RFC 2132 and RFC 3442), as
//! pure code: [`codec`] turns bytes into [`Packet`]s and back, [`lease`]
//! reads the options into a [`Lease`], [`client`] is the state machine.
//! [`socket`] is the transport (a packet socket and a UDP socket per link)
//! and [`runner`] the event loop that drives a [`Client`] with it and
//! carries out its [`Action`]s (send, apply lease, expire lease) through
//! rtnetlink.
//!
//! # Why hand-written, not `dhcproto` or `mozim`
//!
//! - `mozim` is a complete client that opens its own raw and UDP sockets and
//!   runs its own timers; PID 1 has one event loop that also reaps children,
//!   watches links and runs the VIP election, and it must decide when a
//!   lease is applied or dropped. Wrapping mozim would give up that control.
//! - `dhcproto` (0.15) is only a codec, which fits, but it brings
//!   `hickory-proto` (a DNS library, for domain-name options Keel does not
//!   request), `rand` 0.10, `ipnet` and a proc-macro crate into a static
//!   binary whose size matters (it ships in the initramfs).
//! - The part Keel needs is small and fixed: the 236-byte BOOTP header, the
//!   magic cookie, a dozen options, overload (RFC 2132 9.3) and long options
//!   (RFC 3396). That is a few hundred lines, tested here against byte
//!   layouts written out from the RFCs, with errors that name the option.
//!
//! If Keel later needs DHCPv6 or many more options, `dhcproto` is the crate
//! to revisit; the state machine does not depend on the codec's types
//! beyond [`Packet`].

pub mod client;
pub mod codec;
pub mod lease;
pub mod runner;
pub mod socket;

pub use client::{Action, Client, ClientConfig, Dest, Ignored, StateKind};
pub use codec::{CodecError, MessageType, Packet};
pub use lease::{Lease, LeaseError, Route};
pub use runner::{run, run_until, DhcpEvent, RunLink, RunOptions, DEFAULT_ROUTE_METRIC};
pub use socket::{SocketError, Transport};
