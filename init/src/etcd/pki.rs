//! The etcd certificates and keys on disk, for etcd's `--*-file` flags.
//!
//! etcd reads TLS material only from files (etcd's "Transport security
//! model" guide: `--cert-file`, `--key-file`, `--trusted-ca-file` and their
//! `--peer-` twins), so the PEM from the config is written to a directory
//! only root can enter (0700), each file 0600. Every file is written to a
//! temporary name, synced and renamed over the old one, so etcd never reads
//! a half-written key after a reboot or a config change. The CA's private
//! key (`cluster.etcd.ca.key`) is never written: etcd does not need it.
//! Nothing here logs file contents.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The file names inside the PKI dir.
pub const CA_CRT: &str = "ca.crt";
pub const PEER_CRT: &str = "peer.crt";
pub const PEER_KEY: &str = "peer.key";
pub const SERVER_CRT: &str = "server.crt";
pub const SERVER_KEY: &str = "server.key";
/// Keel's own client identity (health probe, elections, rejoin), when
/// Keel issued it.
pub const CLIENT_CRT: &str = "client.crt";
pub const CLIENT_KEY: &str = "client.key";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot create the etcd PKI directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A certificate and its key, PEM text.
#[derive(Clone, PartialEq, Eq)]
pub struct Pair {
    pub crt: String,
    pub key: String,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Pair {{ crt: {} bytes, key: <redacted> }}",
            self.crt.len()
        )
    }
}

/// The TLS material etcd runs with; `ca` verifies both peers and clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    pub ca: String,
    pub peer: Option<Pair>,
    pub server: Option<Pair>,
    /// Keel's client certificate, when Keel issued the others.
    pub client: Option<Pair>,
}

/// Writes `material` into `dir`, creating it (and its parents) if needed.
/// A pair absent from `material` is removed from `dir`, so a stale key does
/// not outlive the config that carried it.
pub fn write(dir: &Path, material: &Material) -> Result<(), PkiError> {
    let dir_err = |source| PkiError::Dir {
        path: dir.to_owned(),
        source,
    };
    fs::create_dir_all(dir).map_err(dir_err)?;
    // create_dir_all honours the umask; make sure of 0700 even for a
    // directory that existed.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(dir_err)?;
    write_file(&dir.join(CA_CRT), &material.ca)?;
    for (pair, crt, key) in [
        (&material.peer, PEER_CRT, PEER_KEY),
        (&material.server, SERVER_CRT, SERVER_KEY),
        (&material.client, CLIENT_CRT, CLIENT_KEY),
    ] {
        match pair {
            Some(p) => {
                write_file(&dir.join(crt), &p.crt)?;
                write_file(&dir.join(key), &p.key)?;
            }
            None => {
                for name in [crt, key] {
                    let path = dir.join(name);
                    match fs::remove_file(&path) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(PkiError::Write { path, source: e })
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    // The renames are durable once the directory is synced.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(dir_err)
}

/// Writes `text` to `path` atomically with mode 0600.
fn write_file(path: &Path, text: &str) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: path.to_owned(),
        source,
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    // A leftover from an interrupted write would make create_new fail.
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    let written = f.write_all(text.as_bytes()).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn pair(tag: &str) -> Pair {
        Pair {
            crt: format!("crt {tag}"),
            key: format!("key {tag}"),
        }
    }

    #[test]
    fn writes_modes_and_removes_stale_pairs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/etcd-pki");
        let full = Material {
            ca: "ca".into(),
            peer: Some(pair("peer")),
            server: Some(pair("server")),
            client: None,
        };
        write(&dir, &full).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        for (name, want) in [
            (CA_CRT, "ca"),
            (PEER_CRT, "crt peer"),
            (PEER_KEY, "key peer"),
            (SERVER_CRT, "crt server"),
            (SERVER_KEY, "key server"),
        ] {
            let p = dir.join(name);
            assert_eq!(fs::read_to_string(&p).unwrap(), want, "{name}");
            assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600, "{name}");
        }
        // Rewritten without the server pair: its files go, nothing stays
        // behind under a temporary name.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let peer_only = Material {
            server: None,
            ..full
        };
        write(&dir, &peer_only).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [CA_CRT, PEER_CRT, PEER_KEY]);
    }

    #[test]
    fn debug_does_not_show_keys() {
        let s = format!("{:?}", pair("secret"));
        assert!(!s.contains("key secret"), "{s}");
    }
}
