//! The machine config: Talos `v1alpha1` schema, validation, and sources.
//!
//! [`parse`] turns YAML text into a validated [`Config`] in three steps:
//! 1. `serde_norway` (the maintained fork of the deprecated `serde_yaml`,
//!    whose errors carry line and column) deserialises into the schema
//!    types, whose newtypes validate each value (`types`); unknown keys and
//!    wrong types fail here, with the path from `serde_path_to_error`;
//! 2. `yaml-rust2`'s marked event parser maps YAML paths to positions
//!    (`spans`), for errors serde cannot place;
//! 3. one cross-field pass (`validate`) reports every remaining problem.

pub mod bond;
mod docs_validate;
mod documents;
mod error;
pub mod etcd;
/// PID 1's config loop over the sources (written with `source`).
pub mod load;
mod merge;
pub mod netdocs;
mod parse;
pub mod schema;
pub mod source;
mod spans;
pub mod types;
mod unsupported;
mod validate;
mod view;

#[cfg(test)]
mod tests;

pub use error::{ConfigError, ConfigErrors, Segment, Warning, WarningKind, YamlPath};
pub use etcd::{CertificateAndKey, CertificateAuthority, Cluster, Etcd};
pub use parse::{parse, parse_bytes};
pub use schema::{
    Config, DeviceSelector, DhcpOptions, ExtraHost, Interface, Link, Machine, MachineType, Network,
    Route, Version, Vip, Vlan,
};
pub use unsupported::Unsupported;
pub use view::VipSpec;

/// A valid config and what the operator should hear about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub config: Config,
    /// Ignored Talos sections and deprecated values, in document order.
    pub warnings: Vec<Warning>,
}
