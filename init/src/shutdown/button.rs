//! The ACPI power button, read from its evdev device.
//!
//! QEMU's `system_powerdown` and a real server's front-panel button raise an
//! ACPI event that the `button` driver turns into an input device named
//! "Power Button" (drivers/acpi/button.c); with `evdev` loaded it appears as
//! /dev/input/eventN and sends EV_KEY / KEY_POWER (include/uapi/linux/
//! input-event-codes.h). Without both modules the press is silently lost.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

const EV_KEY: u16 = 0x01;
const KEY_POWER: u16 = 116;
/// sizeof(struct input_event) on 64-bit: struct timeval (16) + type (2) +
/// code (2) + value (4); include/uapi/linux/input.h.
pub const EVENT_SIZE: usize = 24;

/// Event devices whose input device is called "Power Button", as
/// (`eventN`, /dev path), from `<sys_root>/class/input/eventN/device/name`.
pub fn find(sys_root: &Path, dev_root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(sys_root.join("class/input")) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("event") {
            continue;
        }
        let dev_name = std::fs::read_to_string(e.path().join("device/name")).unwrap_or_default();
        if dev_name.trim() == "Power Button" {
            out.push((name.clone(), dev_root.join("input").join(&name)));
        }
    }
    out.sort();
    out
}

/// True when one raw input_event is a power-button press (value 1; 0 is
/// the release, 2 autorepeat).
pub fn is_power_press(ev: &[u8; EVENT_SIZE]) -> bool {
    let ty = u16::from_ne_bytes([ev[16], ev[17]]);
    let code = u16::from_ne_bytes([ev[18], ev[19]]);
    let value = i32::from_ne_bytes([ev[20], ev[21], ev[22], ev[23]]);
    ty == EV_KEY && code == KEY_POWER && value == 1
}

/// Watches each device on a thread of its own (blocking reads: one thread
/// per button is cheaper than wiring evdev into the async runtime) and calls
/// `on_press` for every press.
pub fn watch<F>(devices: Vec<(String, PathBuf)>, on_press: F)
where
    F: Fn(&str) + Send + Sync + Clone + 'static,
{
    for (name, path) in devices {
        let f = on_press.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("button-{name}"))
            .spawn(move || {
                let mut file = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) => {
                        log::error!("power button {}: cannot open: {e}", path.display());
                        return;
                    }
                };
                let mut ev = [0u8; EVENT_SIZE];
                while file.read_exact(&mut ev).is_ok() {
                    if is_power_press(&ev) {
                        f(&name);
                    }
                }
                log::warn!("power button {}: device closed", path.display());
            });
        if let Err(e) = spawned {
            log::error!("power button: cannot start watcher thread: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ty: u16, code: u16, value: i32) -> [u8; EVENT_SIZE] {
        let mut b = [0u8; EVENT_SIZE];
        b[16..18].copy_from_slice(&ty.to_ne_bytes());
        b[18..20].copy_from_slice(&code.to_ne_bytes());
        b[20..24].copy_from_slice(&value.to_ne_bytes());
        b
    }

    #[test]
    fn press_table() {
        let cases = [
            (ev(EV_KEY, KEY_POWER, 1), true),
            (ev(EV_KEY, KEY_POWER, 0), false),
            (ev(EV_KEY, KEY_POWER, 2), false),
            (ev(EV_KEY, 115, 1), false),
            (ev(0, 0, 0), false), // EV_SYN
        ];
        for (e, want) in cases {
            assert_eq!(is_power_press(&e), want, "{e:?}");
        }
    }

    #[test]
    fn finds_power_buttons_by_name() {
        let t = tempfile::tempdir().unwrap();
        let sys = t.path();
        for (ev, name) in [
            ("event0", "Power Button"),
            ("event1", "AT Translated Set 2 keyboard"),
            ("event2", "Power Button"),
        ] {
            let d = sys.join("class/input").join(ev).join("device");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("name"), format!("{name}\n")).unwrap();
        }
        std::fs::create_dir_all(sys.join("class/input/input3")).unwrap();
        let got = find(sys, Path::new("/dev"));
        assert_eq!(
            got,
            vec![
                ("event0".to_string(), PathBuf::from("/dev/input/event0")),
                ("event2".to_string(), PathBuf::from("/dev/input/event2")),
            ]
        );
    }
}
