//! scripts/deps.sh on machines it cannot serve: each case must end with
//! exit 1 and one line on stderr that names what is missing and what to do.
//!
//! The machines are made with PATH: a directory of symlinks to the real
//! tools a case has, and stubs where a case needs "nothing is installed"
//! (a `dpkg-query` that knows no package) or a tool `nobody` cannot reach
//! (root's rustup proxies). The not-root case runs the script as `nobody`
//! (setpriv from util-linux), so it needs root.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Case {
    name: &'static str,
    /// Real tools symlinked into the case's PATH.
    tools: &'static [&'static str],
    /// Stub executables: (name, shell body).
    stubs: &'static [(&'static str, &'static str)],
    /// Run as uid/gid 65534 (nobody) instead of root.
    as_nobody: bool,
    /// Every one must appear in the one stderr line.
    says: &'static [&'static str],
}

fn which(tool: &str) -> PathBuf {
    ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .chain(
            std::env::var("CARGO_HOME")
                .ok()
                .map(|h| Path::new(&h).join("bin").join(tool)),
        )
        .chain(
            std::env::var("HOME")
                .ok()
                .map(|h| Path::new(&h).join(".cargo/bin").join(tool)),
        )
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{tool} not found on this machine"))
}

#[test]
fn deps_script_names_what_is_missing_in_one_line() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/deps.sh");
    let cases = [
        Case {
            name: "no apt-get",
            tools: &[],
            stubs: &[],
            as_nobody: false,
            says: &["apt-get not found", "Debian"],
        },
        Case {
            name: "no Rust toolchain",
            tools: &["apt-get", "dpkg-query"],
            stubs: &[],
            as_nobody: false,
            says: &[
                "Rust (cargo, rustc) not found",
                "rustup",
                "https://sh.rustup.rs",
            ],
        },
        Case {
            name: "not root, no sudo, packages missing",
            tools: &["apt-get", "id", "grep"],
            stubs: &[
                ("dpkg-query", "exit 1 # knows no package"),
                ("cargo", "exit 0"),
                ("rustc", "exit 0"),
            ],
            as_nobody: true,
            says: &[
                "not root and sudo not found",
                "libprotobuf-dev",
                "qemu-system-x86",
            ],
        },
    ];
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for tool in case.tools {
            symlink(which(tool), bin.join(tool)).unwrap();
        }
        for (name, body) in case.stubs {
            let stub = bin.join(name);
            std::fs::write(&stub, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // A copy the unprivileged user can read.
        let copy = dir.path().join("deps.sh");
        std::fs::copy(&script, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();

        let mut cmd = if case.as_nobody {
            let mut c = Command::new(which("setpriv"));
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
            c.arg(which("bash"));
            c
        } else {
            Command::new(which("bash"))
        };
        let out = cmd
            .arg(&copy)
            .env_clear()
            .env("PATH", &bin)
            .env("HOME", dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", case.name);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}: not one line: {stderr}", case.name);
        assert!(lines[0].starts_with("deps: "), "{}: {stderr}", case.name);
        for want in case.says {
            assert!(
                lines[0].contains(want),
                "{}: {want:?} not in {stderr}",
                case.name
            );
        }
        assert!(
            out.stdout.is_empty(),
            "{}: installed something: {}",
            case.name,
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
