//! etcd's output: forwarded line by line to the log with an `etcd: `
//! prefix, kept in a bounded ring buffer, and scanned for the few messages
//! that mean etcd cannot work with its data dir or membership.
//!
//! etcd 3.5 (the image's) logs only through zap, one JSON object per line
//! (`{"level":"warn","ts":...,"caller":...,"msg":...,<fields>}`); the line
//! is rendered as `msg key=value ...` for the console and the ring (the
//! timestamp and the Go source position only add width on an 80-column
//! serial console), at its own level, so etcd's errors are errors on the
//! console too. etcd 3.4's capnslog lines (`2024-01-02 03:04:05.678901 W |
//! rafthttp: ...`, levels C, E, W, N, I, D) are still understood, for a
//! host-test etcd or an older binary.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::logbuf::LogBuffer;

/// Default bounds of the ring: whichever is reached first.
pub const RING_LINES: usize = 500;
pub const RING_BYTES: usize = 256 * 1024;
/// A longer line is cut (a runaway line must not flush the whole ring).
pub const MAX_LINE: usize = 4096;

/// The ring shared between the reader task, the supervisor handle and the
/// node API (which follows it).
pub type SharedRing = Arc<LogBuffer>;

/// A message that means etcd will not become healthy as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// This member and a peer belong to different clusters (rafthttp:
    /// "cluster ID mismatch"); the log line cannot tell which one is
    /// wrong (both sides log it), so it is only reported. The check before
    /// a start ([`super::rejoin`]) decides by majority.
    ClusterIdMismatch,
    /// Started `new` with an empty data dir, but the peers know this
    /// member as started (etcdserver: "member ... has already been
    /// bootstrapped").
    AlreadyBootstrapped,
    /// The peers removed this member (etcdserver: "the member has been
    /// permanently removed from the cluster").
    Removed,
}

impl Problem {
    pub fn explain(self) -> &'static str {
        match self {
            Problem::ClusterIdMismatch => "etcd reports a cluster ID mismatch with a peer: this member's data dir or the peer's belongs to a different cluster (the member whose cluster ID a majority does not share is the odd one; Keel refuses to start it once it restarts); Keel never wipes a data dir that holds data: remove the odd member's by hand for it to rejoin",
            Problem::AlreadyBootstrapped => "the etcd data dir is empty but the cluster already knows this member as started; automatic rejoin needs a peer's client API on its node address (cluster.etcd.clientOnNodeAddress: true on the peers)",
            Problem::Removed => "this member was removed from the etcd cluster; Keel never wipes a data dir that holds data: remove it by hand and the member rejoins",
        }
    }
}

/// Which problem, if any, `line` reports.
pub fn classify(line: &str) -> Option<Problem> {
    if line.contains("cluster ID mismatch") {
        Some(Problem::ClusterIdMismatch)
    } else if line.contains("has already been bootstrapped") {
        Some(Problem::AlreadyBootstrapped)
    } else if line.contains("has been permanently removed from the cluster") {
        Some(Problem::Removed)
    } else {
        None
    }
}

/// The log level of one etcd line.
pub fn level(line: &str) -> log::Level {
    // zap JSON: {"level":"warn",...}
    if let Some(rest) = line.split("\"level\":\"").nth(1) {
        return match rest.split('"').next().unwrap_or("") {
            "debug" => log::Level::Debug,
            "warn" => log::Level::Warn,
            "error" | "dpanic" | "panic" | "fatal" => log::Level::Error,
            _ => log::Level::Info,
        };
    }
    // capnslog: "<date> <time> L | pkg: message"
    let mut words = line.split(' ');
    match (words.nth(2), words.next()) {
        (Some("C" | "E"), Some("|")) => log::Level::Error,
        (Some("W"), Some("|")) => log::Level::Warn,
        (Some("D"), Some("|")) => log::Level::Debug,
        _ => log::Level::Info,
    }
}

/// One etcd line as the console shows it: zap JSON as `msg key=value ...`
/// (values compact JSON, strings bare), anything else as it is.
pub fn render(line: &str) -> String {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_str::<serde_json::Value>(line)
    else {
        return line.to_owned();
    };
    let mut out = match fields.get("msg") {
        Some(serde_json::Value::String(m)) => m.trim_end().to_owned(),
        _ => String::new(),
    };
    for (key, value) in &fields {
        // A Go stack trace (on etcd's errors) is many lines of frames;
        // the message says what went wrong.
        if matches!(
            key.as_str(),
            "level" | "ts" | "caller" | "msg" | "stacktrace"
        ) {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(key);
        out.push('=');
        match value {
            serde_json::Value::String(v) if !v.is_empty() && !v.contains(' ') => out.push_str(v),
            v => out.push_str(&v.to_string()),
        }
    }
    out
}

/// Reads `pipe` to its end: each line goes to the log (`etcd: ` prefix),
/// into `ring`, and, when it reports a [`Problem`], to `problems`.
pub async fn forward<R: AsyncRead + Unpin>(
    pipe: R,
    ring: SharedRing,
    problems: tokio::sync::mpsc::UnboundedSender<Problem>,
) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let end = buf.len().min(MAX_LINE);
        let text = String::from_utf8_lossy(&buf[..end]);
        let line = text.trim_end_matches(['\n', '\r']);
        if line.is_empty() {
            continue;
        }
        let shown = render(line);
        let level = level(line);
        // Target `etcd`: on the console, but not in PID 1's own log buffer
        // (this ring is etcd's).
        log::log!(target: "etcd", level, "etcd: {shown}");
        if let Some(p) = classify(line) {
            let _ = problems.send(p);
        }
        ring.push(level, shown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_problems() {
        let table: &[(&str, log::Level, Option<Problem>)] = &[
            ("2024-01-02 03:04:05.678901 I | etcdserver: published", log::Level::Info, None),
            ("2024-01-02 03:04:05.678901 W | rafthttp: health check failed", log::Level::Warn, None),
            ("2024-01-02 03:04:05.678901 E | rafthttp: request cluster ID mismatch (got 1 want 2)", log::Level::Error, Some(Problem::ClusterIdMismatch)),
            ("2024-01-02 03:04:05.678901 C | etcdmain: member 8e9e05c52164694d has already been bootstrapped", log::Level::Error, Some(Problem::AlreadyBootstrapped)),
            ("2024-01-02 03:04:05.678901 E | etcdserver: the member has been permanently removed from the cluster", log::Level::Error, Some(Problem::Removed)),
            ("2024-01-02 03:04:05.678901 D | raft: x", log::Level::Debug, None),
            (r#"{"level":"warn","ts":"2024","msg":"x"}"#, log::Level::Warn, None),
            (r#"{"level":"fatal","msg":"y"}"#, log::Level::Error, None),
            ("plain text", log::Level::Info, None),
        ];
        for (line, lvl, problem) in table {
            assert_eq!(level(line), *lvl, "{line}");
            assert_eq!(classify(line), *problem, "{line}");
        }
    }

    #[test]
    fn zap_lines_render_as_message_and_fields() {
        let table: &[(&str, &str)] = &[
            (
                r#"{"level":"info","ts":"2026-11-29T20:12:22.520065Z","caller":"etcdserver/raft.go:505","msg":"starting local member","local-member-id":"bdae9bbc11dd390d","cluster-id":"d1cfaf999eb97a2a"}"#,
                "starting local member local-member-id=bdae9bbc11dd390d cluster-id=d1cfaf999eb97a2a",
            ),
            (
                r#"{"level":"warn","msg":"Running: ","args":["etcd","--name","n1"],"pre-vote":true,"note":"two words"}"#,
                r#"Running: args=["etcd","--name","n1"] pre-vote=true note="two words""#,
            ),
            (r#"{"level":"info","ts":"x"}"#, ""),
            ("2024-01-02 03:04:05.678901 I | etcdserver: published", "2024-01-02 03:04:05.678901 I | etcdserver: published"),
            ("{not json", "{not json"),
        ];
        for (line, want) in table {
            assert_eq!(render(line), *want, "{line}");
        }
    }

    #[tokio::test]
    async fn forward_splits_lines_and_cuts_long_ones() {
        let long = "x".repeat(MAX_LINE + 10);
        let input = format!("one\r\n\ntwo\n{long}\nlast without newline");
        let ring = Arc::new(LogBuffer::new(10, 1 << 20));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        forward(input.as_bytes(), ring.clone(), tx).await;
        let lines = ring.texts();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], "one");
        assert_eq!(lines[1], "two");
        assert_eq!(lines[2].len(), MAX_LINE);
        assert_eq!(lines[3], "last without newline");
        assert!(rx.try_recv().is_err());
    }
}
