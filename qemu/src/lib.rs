//! QEMU launchers and QMP helpers for Keel images.
//!
//! - [`vm`]: [`VmConfig`] renders a QEMU command line and starts it; the
//!   [`Vm`] handle watches the serial console and never leaks QEMU.
//! - [`accel`]: TCG, KVM, or `Auto` (a short KVM probe boot, else TCG).
//! - [`qmp`]: a small synchronous QMP client.
//! - [`serial`]: line scanning over the serial log file.

pub mod accel;
pub mod qmp;
pub mod serial;
pub mod vm;

pub use accel::{probe_kvm, Accel, KvmProbe};
pub use qmp::{Qmp, QmpError, QmpEvent};
pub use serial::LineMatch;
pub use vm::{Drive, DriveFormat, DriveInterface, Machine, Nic, QemuExited, Vm, VmConfig, VmError};
