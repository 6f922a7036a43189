//! `make run`: a control plane of Keel nodes under QEMU on one L2 segment
//! (a [`keel_switch::Switch`]), each booted from the built kernel and
//! initramfs with its own `KEEL-CONFIG` disk rendered from one template,
//! and a status view read from the consoles and the switch.
//!
//! - [`nodes`]: the per-node facts (name, MAC, address) and the config
//!   rendered from the template, and the config disk.
//! - [`status`]: what a node's console says about it (boot phase, links,
//!   etcd, VIP role).
//! - [`api`]: each node's status through its node API, and the one
//!   bootstrap a cluster without a member list needs.
//! - [`cluster`]: the running nodes and the actions on them (power off,
//!   kill, link down/up, restart); the one multi-node QEMU harness of the
//!   workspace (the end-to-end tests build on it too).
//! - [`disk`]: a node's `KEEL-VAR` disk.
//! - [`floor`]: the benchmark floor's initramfs with a node's etcd
//!   certificates.
//! - [`faults`]: what `make bench-faults` measures in the frame record.

pub mod api;
pub mod cluster;
pub mod disk;
pub mod faults;
pub mod floor;
pub mod nodes;
pub mod pki;
pub mod status;

pub use cluster::{Cluster, Image, NodeConfig, NodeSetup, Options};
pub use nodes::{config_disk, render, Cas, NodeSpec, Topology};
pub use status::NodeStatus;
