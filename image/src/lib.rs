//! keel-image: builds Keel's boot artifacts from Debian packages.
//!
//! One module per concern: `kconfig` (kernel options check), `modinfo` and
//! `modules` (module index, closure, depmod-format indexes), `elf` (etcd's
//! shared-library closure), `cpio` and `tree` (the reproducible archive),
//! `compress`, `kernel` (vmlinuz/vmlinux), `output` (atomic writes),
//! `assemble` (the build itself) and `report` (the summary); `floor` builds
//! the busybox + etcd image the boot benchmark compares Keel with.

pub mod assemble;
pub mod compress;
pub mod cpio;
pub mod elf;
pub mod floor;
pub mod kconfig;
pub mod kernel;
pub mod modinfo;
pub mod modules;
pub mod output;
pub mod pxe;
pub mod report;
pub mod tree;
