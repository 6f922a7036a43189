//! The leases this node granted for its campaigns, so that it resigns only
//! its own stale campaigns (a killed election process, a term that ended
//! without revoking) and never one that merely carries the same value —
//! another machine with the same hostname and member name (a cloned VM, a
//! duplicated config), which would otherwise lose a VIP it holds.
//!
//! One line per lease: `<election> <campaign value> <lease id, hex>`. The
//! file lives on `/run` (a tmpfs): it is per boot by construction, and no
//! disk copy can carry it to another machine. A previous boot's campaign
//! is not resigned: its lease expires within a TTL, before a rebooted
//! node is up again in practice.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Where PID 1 keeps the record.
pub const DEFAULT: &str = "/run/keel/vip-leases";
/// Lines kept: older leases are long expired.
const KEEP: usize = 64;

/// Records that this node granted `lease` for `election` with `value`.
/// Best effort: without the record a stale campaign is left to expire.
pub fn add(path: &Path, election: &str, value: &str, lease: i64) {
    let mut lines: Vec<String> = read(path);
    lines.push(format!("{election} {value} {lease:x}"));
    let start = lines.len().saturating_sub(KEEP);
    let text: String = lines[start..].iter().map(|l| format!("{l}\n")).collect();
    let tmp = tmp_path(path);
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::File::create(&tmp))
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        log::warn!(
            "vip: cannot record lease {lease:x} in {}: {e}",
            path.display()
        );
    }
}

/// Whether this node recorded `lease` for `election` with `value`.
pub fn has(path: &Path, election: &str, value: &str, lease: i64) -> bool {
    let want = format!("{election} {value} {lease:x}");
    read(path).contains(&want)
}

/// Whether this node recorded any lease for `election` with `value` other
/// than `except` (the term's own): when none, there is nothing stale to
/// look for in etcd.
pub fn any_other(path: &Path, election: &str, value: &str, except: i64) -> bool {
    let (prefix, own) = (
        format!("{election} {value} "),
        format!("{election} {value} {except:x}"),
    );
    read(path)
        .iter()
        .any(|l| l.starts_with(&prefix) && *l != own)
}

fn read(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_was_recorded() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("run/keel/vip-leases");
        let e = "keel/vip/10.5.0.100";
        assert!(!has(&p, e, "node1/node1", 0x10));
        add(&p, e, "node1/node1", 0x10);
        assert!(!any_other(&p, e, "node1/node1", 0x10), "only its own");
        assert!(any_other(&p, e, "node1/node1", 0x12));
        assert!(!any_other(&p, e, "node2/node2", 0x12));
        add(&p, "keel/vip/10.7.0.100", "node1/node1", 0x11);
        // (election, value, lease, recorded)
        let cases = [
            (e, "node1/node1", 0x10, true),
            (e, "node1/node1", 0x11, false),
            (e, "node2/node2", 0x10, false),
            ("keel/vip/10.7.0.100", "node1/node1", 0x11, true),
        ];
        for (el, v, l, want) in cases {
            assert_eq!(has(&p, el, v, l), want, "{el} {v} {l:x}");
        }
        for i in 0..100 {
            add(&p, e, "node1/node1", 0x100 + i);
        }
        assert_eq!(read(&p).len(), KEEP);
        assert!(has(&p, e, "node1/node1", 0x100 + 99));
        assert!(!has(&p, e, "node1/node1", 0x10), "old lines dropped");
    }
}
