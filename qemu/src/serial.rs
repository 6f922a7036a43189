//! Reading the guest's serial console log: QEMU writes every byte the guest
//! sends to ttyS0 into a file, and tests poll that file for lines.
//!
//! Offsets are byte offsets into the log file, so a test can remember
//! "everything up to here" before an action and then wait only for output
//! that came after it.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A complete line found in the serial log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineMatch {
    /// The line without its terminator (`\n` or `\r\n`).
    pub line: String,
    /// Byte offset just past the line's `\n`: pass it to the next wait to
    /// continue after this line.
    pub end: u64,
}

/// Errors reading the serial log.
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    #[error("reading serial log {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What [`scan_lines`] found in a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// A complete line matched; `end` is relative to the buffer start.
    Found { line: String, end: usize },
    /// No complete line matched; the first `consumed` bytes are complete
    /// lines that need not be scanned again (a trailing partial line is not
    /// consumed, since the guest may still be writing it).
    NotFound { consumed: usize },
}

/// Scans the complete lines of `buf` for the first one `pred` accepts.
///
/// Lines are decoded lossily (the console may carry arbitrary bytes) and
/// lose their `\n` / `\r\n` terminator; a final line without `\n` is ignored.
pub fn scan_lines(buf: &[u8], mut pred: impl FnMut(&str) -> bool) -> Scan {
    let mut start = 0;
    while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
        let end = start + nl + 1;
        let raw = &buf[start..start + nl];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = String::from_utf8_lossy(raw);
        if pred(&line) {
            return Scan::Found {
                line: line.into_owned(),
                end,
            };
        }
        start = end;
    }
    Scan::NotFound { consumed: start }
}

/// Reads the log from `offset` to its current end. A missing file reads as
/// empty (QEMU may not have created it yet).
pub fn read_from(path: &Path, offset: u64) -> Result<Vec<u8>, SerialError> {
    let err = |source| SerialError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err(e)),
    };
    file.seek(SeekFrom::Start(offset)).map_err(err)?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).map_err(err)?;
    Ok(buf)
}

/// Current length of the log (0 if it does not exist yet).
pub fn len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The last `n` lines of a text file, lossily decoded; empty if unreadable.
/// Used to put context into error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let Ok(buf) = read_from(path, 0) else {
        return String::new();
    };
    tail_of(&String::from_utf8_lossy(&buf), n)
}

/// The last `n` lines of `text`, with `\r` removed.
pub fn tail_of(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    lines[from..]
        .iter()
        .map(|l| l.trim_end_matches('\r'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_first_matching_complete_line() {
        let buf = b"[    0.000000] Linux version 6.1\r\nsecond Linux line\r\n";
        assert_eq!(
            scan_lines(buf, |l| l.contains("Linux")),
            Scan::Found {
                line: "[    0.000000] Linux version 6.1".into(),
                end: 34
            }
        );
    }

    #[test]
    fn ignores_partial_trailing_line() {
        let buf = b"one\ntwo\nkeel: rea";
        assert_eq!(
            scan_lines(buf, |l| l.contains("keel")),
            Scan::NotFound { consumed: 8 }
        );
        assert_eq!(
            scan_lines(b"keel: ready\n", |l| l.contains("keel")),
            Scan::Found {
                line: "keel: ready".into(),
                end: 12
            }
        );
    }

    #[test]
    fn empty_and_blank_lines() {
        assert_eq!(scan_lines(b"", |_| true), Scan::NotFound { consumed: 0 });
        assert_eq!(
            scan_lines(b"\r\n\nx\n", |l| !l.is_empty()),
            Scan::Found {
                line: "x".into(),
                end: 5
            }
        );
    }

    #[test]
    fn invalid_utf8_is_lossy() {
        match scan_lines(b"\xff\xfeok\n", |l| l.ends_with("ok")) {
            Scan::Found { line, .. } => assert_eq!(line, "\u{fffd}\u{fffd}ok"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tail_takes_last_lines() {
        assert_eq!(tail_of("a\r\nb\r\nc\r\n", 2), "b\nc");
        assert_eq!(tail_of("a", 5), "a");
        assert_eq!(tail_of("", 5), "");
    }

    #[test]
    fn read_from_offset_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        assert!(read_from(&path, 0).unwrap().is_empty());
        assert_eq!(len(&path), 0);
        std::fs::write(&path, b"hello\nworld\n").unwrap();
        assert_eq!(read_from(&path, 6).unwrap(), b"world\n");
        assert_eq!(len(&path), 12);
        assert_eq!(tail(&path, 1), "world");
    }
}
