//! YAML → validated config must never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match keel::config::parse(text) {
            Ok(parsed) => {
                let _ = parsed.config.interfaces();
                let _ = parsed.config.vips();
                for w in &parsed.warnings {
                    let _ = w.to_string();
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
