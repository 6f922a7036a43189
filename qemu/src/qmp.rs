//! A small synchronous QMP (QEMU Machine Protocol) client over a unix socket.
//!
//! QEMU is started with `-qmp unix:PATH,server=on,wait=off`. The protocol is
//! one JSON object per line: a greeting, then for every command exactly one
//! `{"return": …}` or `{"error": …}`, interleaved with asynchronous
//! `{"event": …}` messages, which this client records.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Default time to wait for a command's reply.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors talking QMP.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("connecting to QMP socket {path} (gave up after {waited:?}): {source}")]
    Connect {
        path: PathBuf,
        waited: Duration,
        #[source]
        source: io::Error,
    },
    #[error("QMP socket {path}: I/O error during {during}: {source}")]
    Io {
        path: PathBuf,
        during: String,
        #[source]
        source: io::Error,
    },
    #[error("QMP socket {path}: connection closed by QEMU during {during}")]
    Closed { path: PathBuf, during: String },
    #[error("QMP socket {path}: timed out after {timeout:?} during {during}")]
    Timeout {
        path: PathBuf,
        during: String,
        timeout: Duration,
    },
    #[error("QMP socket {path}: bad message {line:?}: {reason}")]
    Protocol {
        path: PathBuf,
        line: String,
        reason: String,
    },
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
}

/// An asynchronous QMP event, e.g. `SHUTDOWN`, `RESET`, `NIC_RX_FILTER_CHANGED`.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    pub event: String,
    /// The event's `data` member (`Value::Null` if absent).
    pub data: Value,
    /// QEMU's timestamp as (seconds, microseconds).
    pub timestamp: (u64, u64),
}

/// One parsed QMP message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The `{"QMP": {...}}` greeting; holds the inner object.
    Greeting(Value),
    /// A successful reply: `return` and the echoed `id`, if any.
    Return {
        value: Value,
        id: Option<Value>,
    },
    /// A failed reply: `error.class`, `error.desc` and the echoed `id`.
    Error {
        class: String,
        desc: String,
        id: Option<Value>,
    },
    Event(QmpEvent),
}

/// Parses one line of QMP output. The error is a human-readable reason.
pub fn parse_message(line: &str) -> Result<Message, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let id = obj.get("id").cloned();
    if let Some(g) = obj.get("QMP") {
        return Ok(Message::Greeting(g.clone()));
    }
    if let Some(r) = obj.get("return") {
        return Ok(Message::Return {
            value: r.clone(),
            id,
        });
    }
    if let Some(e) = obj.get("error") {
        let field = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        return Ok(Message::Error {
            class: field("class"),
            desc: field("desc"),
            id,
        });
    }
    if let Some(name) = obj.get("event") {
        let event = name
            .as_str()
            .ok_or("event name is not a string")?
            .to_owned();
        let ts = obj.get("timestamp");
        let part = |k: &str| ts.and_then(|t| t.get(k)).and_then(Value::as_u64);
        return Ok(Message::Event(QmpEvent {
            event,
            data: obj.get("data").cloned().unwrap_or(Value::Null),
            timestamp: (
                part("seconds").unwrap_or(0),
                part("microseconds").unwrap_or(0),
            ),
        }));
    }
    Err("none of QMP, return, error, event".into())
}

/// A connected QMP session (capabilities already negotiated).
pub struct Qmp {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    greeting: Value,
    events: Vec<QmpEvent>,
    next_id: u64,
    reply_timeout: Duration,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp").field("path", &self.path).finish()
    }
}

impl Qmp {
    /// Connects to `path`, retrying until the socket accepts or `timeout`
    /// passes (QEMU creates it shortly after start), reads the greeting and
    /// negotiates capabilities.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        Self::connect_while(path, timeout, || true)
    }

    /// Like [`Qmp::connect`], but gives up early once `keep_trying` returns
    /// false (e.g. because QEMU exited).
    pub fn connect_while(
        path: &Path,
        timeout: Duration,
        mut keep_trying: impl FnMut() -> bool,
    ) -> Result<Qmp, QmpError> {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(source) => {
                    let retriable = matches!(
                        source.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                    );
                    if !retriable || start.elapsed() >= timeout || !keep_trying() {
                        return Err(QmpError::Connect {
                            path: path.to_owned(),
                            waited: start.elapsed(),
                            source,
                        });
                    }
                    thread::sleep(Duration::from_millis(25));
                }
            }
        };
        let io_err = |during: &str, source| QmpError::Io {
            path: path.to_owned(),
            during: during.into(),
            source,
        };
        let writer = stream.try_clone().map_err(|e| io_err("connect", e))?;
        let mut qmp = Qmp {
            path: path.to_owned(),
            reader: BufReader::new(stream),
            writer,
            greeting: Value::Null,
            events: Vec::new(),
            next_id: 1,
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
        };
        let remaining = timeout
            .saturating_sub(start.elapsed())
            .max(Duration::from_secs(5));
        loop {
            match qmp.read_message("greeting", remaining)? {
                Message::Greeting(g) => {
                    qmp.greeting = g;
                    break;
                }
                Message::Event(e) => qmp.events.push(e),
                other => {
                    return Err(QmpError::Protocol {
                        path: qmp.path.clone(),
                        line: format!("{other:?}"),
                        reason: "expected the greeting".into(),
                    })
                }
            }
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// The greeting's contents (`version`, `capabilities`).
    pub fn greeting(&self) -> &Value {
        &self.greeting
    }

    /// Socket path this session is connected to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets how long [`Qmp::execute`] waits for a reply.
    pub fn set_reply_timeout(&mut self, timeout: Duration) {
        self.reply_timeout = timeout;
    }

    /// Every event received so far, oldest first.
    pub fn events(&self) -> &[QmpEvent] {
        &self.events
    }

    /// Removes and returns the events received so far.
    pub fn take_events(&mut self) -> Vec<QmpEvent> {
        std::mem::take(&mut self.events)
    }

    /// Runs a command and returns its `return` value. Events that arrive
    /// before the reply are recorded (see [`Qmp::events`]).
    pub fn execute(&mut self, cmd: &str, args: Option<Value>) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut req = json!({ "execute": cmd, "id": id });
        if let Some(a) = args {
            req["arguments"] = a;
        }
        let mut line = req.to_string();
        line.push('\n');
        let during = format!("command {cmd}");
        self.writer
            .write_all(line.as_bytes())
            .map_err(|source| QmpError::Io {
                path: self.path.clone(),
                during: during.clone(),
                source,
            })?;
        let deadline = Instant::now() + self.reply_timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_message(&during, left)? {
                Message::Event(e) => self.events.push(e),
                Message::Greeting(_) => {}
                Message::Return { id: rid, .. } | Message::Error { id: rid, .. }
                    if rid
                        .as_ref()
                        .and_then(Value::as_u64)
                        .is_some_and(|r| r != id) =>
                {
                    // A reply to an earlier command we gave up on: skip it.
                }
                Message::Return { value, .. } => return Ok(value),
                Message::Error { class, desc, .. } => {
                    return Err(QmpError::Command {
                        command: cmd.into(),
                        class,
                        desc,
                    })
                }
            }
        }
    }

    /// Waits until an event named `name` arrives (or was already recorded and
    /// not taken) and returns it; it stays in [`Qmp::events`].
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Result<QmpEvent, QmpError> {
        if let Some(e) = self.events.iter().find(|e| e.event == name) {
            return Ok(e.clone());
        }
        let deadline = Instant::now() + timeout;
        let during = format!("waiting for event {name}");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Message::Event(e) = self.read_message(&during, left)? {
                self.events.push(e.clone());
                if e.event == name {
                    return Ok(e);
                }
            }
        }
    }

    /// `query-status`: returns e.g. `{"status":"running","running":true,…}`.
    pub fn query_status(&mut self) -> Result<Value, QmpError> {
        self.execute("query-status", None)
    }

    /// Presses the ACPI power button (reaches the guest only if it loaded
    /// `button` and `evdev`).
    pub fn system_powerdown(&mut self) -> Result<(), QmpError> {
        self.execute("system_powerdown", None).map(drop)
    }

    /// Hard reset of the machine.
    pub fn system_reset(&mut self) -> Result<(), QmpError> {
        self.execute("system_reset", None).map(drop)
    }

    /// Sets a NIC's link (device or netdev id) up or down; the guest sees the
    /// carrier change within about half a second.
    pub fn set_link(&mut self, name: &str, up: bool) -> Result<(), QmpError> {
        self.execute("set_link", Some(json!({ "name": name, "up": up })))
            .map(drop)
    }

    /// Limits block backend `device` (a `-drive id=`) to `iops` operations
    /// a second, reads and writes together; 0 lifts every limit. The
    /// guest sees a disk that got slow, not an error (QMP
    /// `block_set_io_throttle`: every rate argument is required).
    pub fn block_set_io_throttle(&mut self, device: &str, iops: u64) -> Result<(), QmpError> {
        let args = json!({
            "device": device,
            "bps": 0, "bps_rd": 0, "bps_wr": 0,
            "iops": iops, "iops_rd": 0, "iops_wr": 0,
        });
        self.execute("block_set_io_throttle", Some(args)).map(drop)
    }

    /// Ends QEMU at once (the guest sees nothing). QEMU may close the socket
    /// right after, so a closed connection counts as success.
    pub fn quit(&mut self) -> Result<(), QmpError> {
        match self.execute("quit", None) {
            Ok(_) | Err(QmpError::Closed { .. }) => Ok(()),
            Err(QmpError::Io { source, .. })
                if matches!(
                    source.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn read_message(&mut self, during: &str, timeout: Duration) -> Result<Message, QmpError> {
        let timeout_err = || QmpError::Timeout {
            path: self.path.clone(),
            during: during.into(),
            timeout,
        };
        if timeout.is_zero() {
            return Err(timeout_err());
        }
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .map_err(|source| QmpError::Io {
                path: self.path.clone(),
                during: during.into(),
                source,
            })?;
        let mut line = String::new();
        loop {
            match self.reader.read_line(&mut line) {
                Ok(0) => {
                    return Err(QmpError::Closed {
                        path: self.path.clone(),
                        during: during.into(),
                    })
                }
                Ok(_) if line.trim().is_empty() => line.clear(),
                Ok(_) => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(timeout_err())
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(QmpError::Io {
                        path: self.path.clone(),
                        during: during.into(),
                        source,
                    })
                }
            }
        }
        parse_message(line.trim()).map_err(|reason| QmpError::Protocol {
            path: self.path.clone(),
            line: line.trim().to_owned(),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_greeting() {
        let line = r#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian"}, "capabilities": ["oob"]}}"#;
        match parse_message(line).unwrap() {
            Message::Greeting(g) => assert_eq!(g["version"]["qemu"]["major"], 7),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_return_with_and_without_id() {
        assert_eq!(
            parse_message(r#"{"return": {}}"#).unwrap(),
            Message::Return {
                value: json!({}),
                id: None
            }
        );
        assert_eq!(
            parse_message(r#"{"return": {"status": "running", "running": true}, "id": 3}"#)
                .unwrap(),
            Message::Return {
                value: json!({"status": "running", "running": true}),
                id: Some(json!(3))
            }
        );
    }

    #[test]
    fn parses_error() {
        let line =
            r#"{"id": 2, "error": {"class": "GenericError", "desc": "Device 'n9' not found"}}"#;
        assert_eq!(
            parse_message(line).unwrap(),
            Message::Error {
                class: "GenericError".into(),
                desc: "Device 'n9' not found".into(),
                id: Some(json!(2))
            }
        );
    }

    #[test]
    fn parses_event() {
        let line = r#"{"timestamp": {"seconds": 1700000000, "microseconds": 123456}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}"#;
        assert_eq!(
            parse_message(line).unwrap(),
            Message::Event(QmpEvent {
                event: "SHUTDOWN".into(),
                data: json!({"guest": true, "reason": "guest-shutdown"}),
                timestamp: (1700000000, 123456),
            })
        );
        let bare = r#"{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}"#;
        match parse_message(bare).unwrap() {
            Message::Event(e) => {
                assert_eq!(e.event, "STOP");
                assert_eq!(e.data, Value::Null);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_message("not json").is_err());
        assert!(parse_message("[1,2]").is_err());
        assert!(parse_message(r#"{"foo": 1}"#).is_err());
        assert!(parse_message(r#"{"event": 5}"#).is_err());
    }

    /// A fake QMP server on a socketpair-backed listener: greeting, an event
    /// before the reply, a stale reply, an error reply.
    #[test]
    fn execute_skips_events_and_reports_errors() {
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            writeln!(s, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            r.read_line(&mut line).unwrap();
            assert!(line.contains("qmp_capabilities"), "{line}");
            writeln!(s, r#"{{"return": {{}}, "id": 1}}"#).unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            assert!(line.contains(r#""execute":"set_link""#), "{line}");
            assert!(line.contains(r#""name":"n0""#), "{line}");
            writeln!(
                s,
                r#"{{"event": "NIC_RX_FILTER_CHANGED", "data": {{"name": "n0"}}, "timestamp": {{"seconds": 1, "microseconds": 0}}}}"#
            )
            .unwrap();
            writeln!(s, r#"{{"return": {{"stale": true}}, "id": 99}}"#).unwrap();
            writeln!(s, r#"{{"return": {{}}, "id": 2}}"#).unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            writeln!(
                s,
                r#"{{"error": {{"class": "CommandNotFound", "desc": "The command nope has not been found"}}, "id": 3}}"#
            )
            .unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            assert!(line.contains("quit"), "{line}");
            // Close without replying, as QEMU may do on quit.
        });
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        qmp.set_link("n0", false).unwrap();
        assert_eq!(qmp.events().len(), 1);
        assert_eq!(qmp.events()[0].event, "NIC_RX_FILTER_CHANGED");
        match qmp.execute("nope", None) {
            Err(QmpError::Command { class, desc, .. }) => {
                assert_eq!(class, "CommandNotFound");
                assert!(desc.contains("nope"));
            }
            other => panic!("{other:?}"),
        }
        qmp.quit().unwrap();
        server.join().unwrap();
        assert_eq!(qmp.take_events().len(), 1);
        assert!(qmp.events().is_empty());
    }

    #[test]
    fn connect_gives_up_on_missing_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.sock");
        let start = Instant::now();
        let err = Qmp::connect(&path, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, QmpError::Connect { .. }), "{err}");
        assert!(err.to_string().contains("absent.sock"));
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
