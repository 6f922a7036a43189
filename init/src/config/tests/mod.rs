//! Unit tests for config parsing and validation: the Talos snippet
//! fixtures, a table of broken configs, interface merging, and warnings.

mod broken;
mod documents;
mod etcd_ca;
mod fixtures;
mod merging;
mod warnings;

use super::{parse, Config, ConfigErrors, Parsed};

/// Parses `text`, failing the test with every error if it is invalid.
fn ok(text: &str) -> Parsed {
    match parse(text) {
        Ok(p) => p,
        Err(e) => panic!("expected a valid config, got:\n{e}\n--- config:\n{text}"),
    }
}

fn config(text: &str) -> Config {
    ok(text).config
}

/// Parses `text`, failing the test if it is valid.
fn errors(text: &str) -> ConfigErrors {
    match parse(text) {
        Ok(p) => panic!(
            "expected errors, got a valid config: {:?}\n--- config:\n{text}",
            p.config
        ),
        Err(e) => e,
    }
}
