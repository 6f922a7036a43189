//! A `log` backend that writes to `/dev/kmsg`, so Keel's lines land in the
//! kernel ring buffer with the kernel's timestamps and show on every console
//! the kernel prints to (and in `dmesg`).
//!
//! Each `write(2)` to /dev/kmsg is one record; a leading `<N>` sets its
//! priority (Documentation/ABI/testing/dev-kmsg). Lines longer than the
//! kernel's record limit are truncated by the kernel, so long messages are
//! split at newlines into separate records. /dev/kmsg writes are
//! rate-limited unless `printk_devkmsg=on` (kernel parameter or
//! `/proc/sys/kernel/printk_devkmsg`), which boot sets before logging.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// syslog(3) priority for a `log` level (the `<N>` prefix).
pub fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,                // LOG_ERR
        Level::Warn => 4,                 // LOG_WARNING
        Level::Info => 6,                 // LOG_INFO
        Level::Debug | Level::Trace => 7, // LOG_DEBUG
    }
}

/// Formats one record as the bytes of one or more kmsg writes.
pub fn format_records(prefix: &str, level: Level, message: &str) -> Vec<Vec<u8>> {
    let pri = priority(level);
    let lines: Vec<&str> = if message.is_empty() {
        vec![""]
    } else {
        message.lines().collect()
    };
    lines
        .into_iter()
        .map(|line| {
            // The kernel keeps at most ~1 KiB per record; leave room for the
            // prefix and the priority.
            let line = truncate_at_char_boundary(line, 960);
            format!("<{pri}>{prefix}: {line}\n").into_bytes()
        })
        .collect()
}

fn truncate_at_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

enum Sink {
    Kmsg(File),
    Stderr,
}

pub struct KmsgLogger {
    prefix: &'static str,
    sink: Mutex<Sink>,
}

impl KmsgLogger {
    fn write(&self, level: Level, message: &str) {
        let mut sink = match self.sink.lock() {
            Ok(g) => g,
            // A poisoned lock only means another thread panicked mid-write;
            // the file handle is still fine.
            Err(p) => p.into_inner(),
        };
        match &mut *sink {
            Sink::Kmsg(f) => {
                for rec in format_records(self.prefix, level, message) {
                    let _ = f.write_all(&rec);
                }
            }
            Sink::Stderr => {
                let _ = writeln!(std::io::stderr(), "{}: {}", self.prefix, message);
            }
        }
    }
}

impl Log for KmsgLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            let message = record.args().to_string();
            self.write(record.level(), &message);
            // etcd's forwarded output has a buffer of its own.
            if record.target() != "etcd" {
                crate::logbuf::keel().push(record.level(), message);
            }
        }
    }

    fn flush(&self) {}
}

/// Installs the logger: /dev/kmsg when it can be opened, stderr otherwise
/// (the CLI run by an operator, or a broken /dev). Returns which sink won.
pub fn init(prefix: &'static str, level: LevelFilter) -> &'static str {
    let (sink, name) = match OpenOptions::new().write(true).open("/dev/kmsg") {
        Ok(f) => (Sink::Kmsg(f), "/dev/kmsg"),
        Err(_) => (Sink::Stderr, "stderr"),
    };
    let logger = Box::leak(Box::new(KmsgLogger {
        prefix,
        sink: Mutex::new(sink),
    }));
    // A second init (tests) keeps the first logger; that is fine.
    let _ = log::set_logger(logger);
    log::set_max_level(level);
    name
}

/// Writes one line straight to /dev/kmsg and the console without the `log`
/// machinery: for the panic hook, where locks may be poisoned or held.
pub fn emergency(message: &str) {
    if let Ok(mut f) = OpenOptions::new().write(true).open("/dev/kmsg") {
        for rec in format_records("keel", Level::Error, message) {
            let _ = f.write_all(&rec);
        }
    } else {
        let _ = writeln!(std::io::stderr(), "keel: {message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_table() {
        let cases: &[(Level, &str, &[&str])] = &[
            (Level::Error, "boom", &["<3>keel: boom\n"]),
            (Level::Warn, "careful", &["<4>keel: careful\n"]),
            (Level::Info, "ready in 5 ms", &["<6>keel: ready in 5 ms\n"]),
            (Level::Debug, "detail", &["<7>keel: detail\n"]),
            (Level::Trace, "more", &["<7>keel: more\n"]),
            (Level::Info, "", &["<6>keel: \n"]),
            (
                Level::Warn,
                "two\nlines",
                &["<4>keel: two\n", "<4>keel: lines\n"],
            ),
        ];
        for (level, msg, want) in cases {
            let got: Vec<String> = format_records("keel", *level, msg)
                .into_iter()
                .map(|b| String::from_utf8(b).unwrap())
                .collect();
            assert_eq!(got, *want, "{level} {msg:?}");
        }
    }

    #[test]
    fn long_lines_are_truncated_on_a_char_boundary() {
        let msg = "é".repeat(1000);
        let rec = &format_records("keel", Level::Info, &msg)[0];
        assert!(rec.len() < 1024);
        assert!(String::from_utf8(rec.clone()).is_ok());
    }
}
