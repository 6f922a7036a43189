//! Shared helpers for Keel's integration and end-to-end tests: where the
//! built artifacts are, and booting them under QEMU.

pub mod cluster;
pub mod console;
pub mod etcd;
pub mod vipnet;

use std::path::{Path, PathBuf};

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The build directory (`KEEL_BUILD` or `<root>/build`).
pub fn build_dir() -> PathBuf {
    std::env::var_os("KEEL_BUILD")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("build"))
}

/// A build artifact that must exist; a missing one fails the test with the
/// command that makes it (never a silent skip).
pub fn artifact(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run `make image` (or `make test`, which builds it) first",
        path.display()
    );
    path
}

/// The static init binary built for the musl target.
pub fn init_binary() -> PathBuf {
    artifact(workspace_root().join("target/x86_64-unknown-linux-musl/release/keel"))
}

/// How long a boot under TCG may take before a test gives up. A boot takes
/// a few seconds; this is generous for a loaded shared machine.
pub const BOOT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The kernel command line every test boot starts from.
pub const BASE_APPEND: &str = "console=ttyS0 printk_devkmsg=on panic=-1";

/// Boots the built kernel and uncompressed initramfs with one user-mode
/// NIC, a QMP socket and `-no-reboot` (a guest reboot ends QEMU, so tests
/// can observe it). The temp dir holds the console log and QMP socket and
/// must outlive the VM.
pub fn boot_vm(extra_append: &str) -> (tempfile::TempDir, keel_qemu::Vm) {
    boot_vm_with(extra_append, |_| {})
}

/// [`boot_vm`] with a hook to adjust the VM (disks, devices) before it
/// starts.
pub fn boot_vm_with(
    extra_append: &str,
    adjust: impl FnOnce(&mut keel_qemu::VmConfig),
) -> (tempfile::TempDir, keel_qemu::Vm) {
    let build = build_dir();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = keel_qemu::VmConfig::boot(
        artifact(build.join("vmlinux")),
        artifact(build.join("initramfs.cpio")),
        format!("{BASE_APPEND} {extra_append}"),
        dir.path().join("console.log"),
    );
    cfg.qmp_socket = Some(dir.path().join("qmp.sock"));
    cfg.nics = vec![keel_qemu::Nic::user("n0")];
    cfg.no_reboot = true;
    adjust(&mut cfg);
    let vm = cfg.spawn().expect("QEMU starts");
    (dir, vm)
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for a QEMU
/// `hostfwd=` (QEMU cannot report a port it picked itself). Another
/// process could take it in between; on this test machine nothing does.
pub fn free_local_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// Serves `body` once over HTTP on 127.0.0.1 (a free port, returned) and
/// hands back the request line and headers it got. Guests reach it at
/// QEMU user networking's gateway, 10.0.2.2.
pub fn serve_once(body: &'static str) -> (u16, std::thread::JoinHandle<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let n = conn.read(&mut buf).unwrap();
        let request = String::from_utf8_lossy(&buf[..n]).into_owned();
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        request
    });
    (port, server)
}
