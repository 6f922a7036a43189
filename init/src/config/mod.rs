//! The machine config: Talos `v1alpha1` schema, validation, and sources.

pub mod source;
