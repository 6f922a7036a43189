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
//!
//! A write to /dev/kmsg returns only once the console drivers have printed
//! the record (a slow serial console makes that milliseconds per line), so
//! the records go through a bounded queue to a writer thread: the caller
//! never waits; when the queue is full, records are dropped and counted.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Records waiting for the writer thread; beyond this they are dropped
/// and counted. A serial console at 115200 baud writes ~11 KB/s, so a
/// burst of logging can outrun it; the fence and the election must never
/// wait for it (docs/ARCHITECTURE.md, "Rules a PID 1 keeps").
pub const QUEUE: usize = 1024;
/// How long [`Log::flush`] waits for the queue to drain (before reboot).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

enum Sink {
    Kmsg(Queue),
    Stderr,
}

/// The sending side of the writer thread's queue.
struct Queue {
    tx: SyncSender<Vec<u8>>,
    /// Records dropped since the writer last said so.
    dropped: Arc<AtomicU64>,
    /// Records queued and not yet written.
    pending: Arc<AtomicU64>,
}

impl Queue {
    /// Starts the writer thread for `file`. It never reads the environment,
    /// so PID 1 may still set it (`keel.environment=`) afterwards.
    fn start<W: Write + Send + 'static>(file: W) -> std::io::Result<Queue> {
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let pending = Arc::new(AtomicU64::new(0));
        let (d, p) = (dropped.clone(), pending.clone());
        std::thread::Builder::new()
            .name("kmsg".into())
            .spawn(move || write_loop(file, &rx, &d, &p))?;
        Ok(Queue {
            tx,
            dropped,
            pending,
        })
    }

    fn push(&self, rec: Vec<u8>) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.tx.try_send(rec).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The writer thread: one write(2) per record; after a record, says how
/// many were dropped meanwhile, if any.
fn write_loop(mut f: impl Write, rx: &Receiver<Vec<u8>>, dropped: &AtomicU64, pending: &AtomicU64) {
    while let Ok(rec) = rx.recv() {
        let _ = f.write_all(&rec);
        pending.fetch_sub(1, Ordering::SeqCst);
        let n = dropped.swap(0, Ordering::Relaxed);
        if n > 0 {
            let line = format!("{n} log lines dropped: the console could not keep up");
            for rec in format_records("keel", Level::Warn, &line) {
                let _ = f.write_all(&rec);
            }
        }
    }
}

pub struct KmsgLogger {
    prefix: &'static str,
    sink: Sink,
}

impl KmsgLogger {
    fn write(&self, level: Level, message: &str) {
        match &self.sink {
            Sink::Kmsg(q) => {
                for rec in format_records(self.prefix, level, message) {
                    q.push(rec);
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

    /// Waits (bounded) until the writer has written everything queued:
    /// before reboot(2), so the last lines reach the console.
    fn flush(&self) {
        if let Sink::Kmsg(q) = &self.sink {
            let end = Instant::now() + FLUSH_TIMEOUT;
            while q.pending.load(Ordering::SeqCst) > 0 && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Installs the logger: /dev/kmsg when it can be opened, stderr otherwise
/// (the CLI run by an operator, or a broken /dev). Returns which sink won.
pub fn init(prefix: &'static str, level: LevelFilter) -> &'static str {
    let opened = OpenOptions::new().write(true).open("/dev/kmsg");
    let (sink, name) = match opened.and_then(Queue::start) {
        Ok(q) => (Sink::Kmsg(q), "/dev/kmsg"),
        Err(_) => (Sink::Stderr, "stderr"),
    };
    let logger = Box::leak(Box::new(KmsgLogger { prefix, sink }));
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

#[cfg(test)]
mod queue_tests {
    use super::*;
    use std::sync::Mutex;

    /// A console that takes 1 ms per record.
    #[derive(Clone, Default)]
    struct Slow(Arc<Mutex<Vec<u8>>>);

    impl Write for Slow {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(Duration::from_millis(1));
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A console that cannot keep up: the caller never waits, the excess
    /// is dropped and counted, and the count is written out afterwards.
    #[test]
    fn full_queue_drops_and_counts() {
        let out = Slow::default();
        let q = Queue::start(out.clone()).unwrap();
        let n = QUEUE * 4;
        let start = Instant::now();
        for i in 0..n {
            q.push(format!("<6>keel: line {i}\n").into_bytes());
        }
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "push waited for the console"
        );
        let logger = KmsgLogger {
            prefix: "keel",
            sink: Sink::Kmsg(q),
        };
        logger.flush();
        let Sink::Kmsg(q) = &logger.sink else {
            unreachable!()
        };
        assert_eq!(
            q.pending.load(Ordering::SeqCst),
            0,
            "flush waits for the queue"
        );
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let written = text.lines().filter(|l| l.contains(": line ")).count();
        let said: u64 = text
            .lines()
            .filter_map(|l| l.strip_prefix("<4>keel: "))
            .filter_map(|l| l.split(' ').next()?.parse::<u64>().ok())
            .sum();
        assert!(
            said > 0,
            "nothing said about dropped lines: {written} written"
        );
        assert_eq!(
            written as u64 + said + q.dropped.load(Ordering::SeqCst),
            n as u64,
            "every line written or counted as dropped"
        );
    }
}
