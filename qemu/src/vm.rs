//! One QEMU virtual machine: its configuration ([`VmConfig`]), the command
//! line rendered from it, and the handle of a running instance ([`Vm`]).
//!
//! The guest console is ttyS0; QEMU writes everything it prints to the
//! serial log file, which [`Vm::wait_for_line`] polls. QEMU's own stderr
//! goes to `<serial log>.qemu-stderr` next to it, so a failed start is
//! diagnosable from the files alone.

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::accel::{self, Accel};
use crate::qmp::{Qmp, QmpError};
use crate::serial::{self, LineMatch, Scan, SerialError};

/// The QEMU binary used unless [`VmConfig::qemu`] says otherwise.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// How often the serial log and the process are polled.
const POLL: Duration = Duration::from_millis(50);

/// How long [`Vm::kill`] waits after SIGTERM before sending SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// Lines of serial / stderr output quoted in error messages.
const TAIL_LINES: usize = 15;

/// Errors starting or observing a VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("starting {program}: {source}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Serial(#[from] SerialError),
    #[error("timed out after {timeout:?} waiting for {what} in {path}; last lines:\n{tail}")]
    LineTimeout {
        what: String,
        path: PathBuf,
        timeout: Duration,
        tail: String,
    },
    /// QEMU exited while something was being waited for.
    #[error(transparent)]
    Exited(Box<QemuExited>),
    #[error("waiting for QEMU (pid {pid}): {source}")]
    Wait {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("QEMU (pid {pid}) still running after {timeout:?}")]
    ExitTimeout { pid: u32, timeout: Duration },
    #[error("this VM was started without a QMP socket")]
    NoQmp,
    #[error(transparent)]
    Qmp(#[from] QmpError),
}

/// Details of an unexpected QEMU exit, with the ends of both logs.
#[derive(Debug, thiserror::Error)]
#[error(
    "QEMU (pid {pid}) exited with {status} while waiting for {what}; \
     serial log {serial_path} ends with:\n{serial_tail}\n\
     QEMU stderr {stderr_path}:\n{stderr_tail}"
)]
pub struct QemuExited {
    pub pid: u32,
    pub status: ExitStatus,
    pub what: String,
    pub serial_path: PathBuf,
    pub serial_tail: String,
    pub stderr_path: PathBuf,
    pub stderr_tail: String,
}

pub type Result<T, E = VmError> = std::result::Result<T, E>;

/// QEMU machine type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Machine {
    /// `q35` (PCIe, ICH9).
    #[default]
    Q35,
    /// `pc` (i440fx, PCI with ACPI hotplug slots).
    Pc,
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Machine::Q35 => "q35",
            Machine::Pc => "pc",
        })
    }
}

/// An unknown machine name.
#[derive(Debug, thiserror::Error)]
#[error("unknown machine {name:?} (expected q35 or pc)")]
pub struct ParseMachineError {
    pub name: String,
}

impl FromStr for Machine {
    type Err = ParseMachineError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "q35" => Ok(Machine::Q35),
            "pc" => Ok(Machine::Pc),
            _ => Err(ParseMachineError { name: s.into() }),
        }
    }
}

/// A network card: a `-netdev` backend plus the `-device` the guest sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// The `-netdev` value, e.g. `user,id=n0`. Without `id=`, `n<index>` is
    /// added when rendering.
    pub netdev: String,
    /// Device model, `virtio-net-pci` by default.
    pub model: String,
    /// `mac=` for the device, e.g. `52:54:00:12:34:01`.
    pub mac: Option<String>,
    /// Extra device properties, e.g. `bus=rp1`, `addr=0x5`, `acpi-index=7`,
    /// `id=nic0`.
    pub props: Vec<String>,
}

impl Nic {
    /// A NIC on the given `-netdev` spec with the default model.
    pub fn new(netdev: impl Into<String>) -> Nic {
        Nic {
            netdev: netdev.into(),
            model: "virtio-net-pci".into(),
            mac: None,
            props: Vec::new(),
        }
    }

    /// User-mode (slirp) networking: `user,id=<id>`.
    pub fn user(id: &str) -> Nic {
        Nic::new(format!("user,id={id}"))
    }

    /// A stream client to a unix socket (frames carry a 4-byte big-endian
    /// length prefix), e.g. a test's L2 switch.
    pub fn stream_unix(id: &str, path: &Path) -> Nic {
        Nic::new(format!(
            "stream,id={id},server=off,addr.type=unix,addr.path={}",
            escape(path)
        ))
    }

    /// Datagrams between two unix socket paths (one frame per datagram).
    pub fn dgram_unix(id: &str, local: &Path, remote: &Path) -> Nic {
        Nic::new(format!(
            "dgram,id={id},local.type=unix,local.path={},remote.type=unix,remote.path={}",
            escape(local),
            escape(remote)
        ))
    }

    pub fn with_model(mut self, model: impl Into<String>) -> Nic {
        self.model = model.into();
        self
    }

    pub fn with_mac(mut self, mac: impl Into<String>) -> Nic {
        self.mac = Some(mac.into());
        self
    }

    pub fn with_prop(mut self, prop: impl Into<String>) -> Nic {
        self.props.push(prop.into());
        self
    }

    /// The `id=` in [`Nic::netdev`], if any (usable with QMP `set_link`).
    pub fn netdev_id(&self) -> Option<&str> {
        option_value(&self.netdev, "id")
    }

    fn render(&self, index: usize, out: &mut Vec<String>) {
        let (netdev, id) = match self.netdev_id() {
            Some(id) => (self.netdev.clone(), id.to_owned()),
            None => {
                let id = format!("n{index}");
                (format!("{},id={id}", self.netdev), id)
            }
        };
        let mut device = format!("{},netdev={id}", self.model);
        if let Some(mac) = &self.mac {
            device.push_str(&format!(",mac={mac}"));
        }
        for p in &self.props {
            device.push(',');
            device.push_str(p);
        }
        out.extend(["-netdev".into(), netdev, "-device".into(), device]);
    }
}

/// Disk image format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DriveFormat {
    #[default]
    Raw,
    Qcow2,
}

/// How a disk is attached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DriveInterface {
    /// `virtio-blk-pci` (`/dev/vdX` in the guest).
    #[default]
    Virtio,
    /// An ATAPI CD-ROM (`ide-cd`, `/dev/srN`), read-only.
    Cdrom,
}

/// An extra disk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Drive {
    pub path: PathBuf,
    pub format: DriveFormat,
    pub interface: DriveInterface,
    /// Serial number the guest sees (`/sys/block/vdX/serial`).
    pub serial: Option<String>,
    pub read_only: bool,
}

impl Drive {
    /// A raw virtio disk.
    pub fn new(path: impl Into<PathBuf>) -> Drive {
        Drive {
            path: path.into(),
            ..Drive::default()
        }
    }

    pub fn with_serial(mut self, serial: impl Into<String>) -> Drive {
        self.serial = Some(serial.into());
        self
    }

    fn render(&self, index: usize, out: &mut Vec<String>) {
        let id = format!("d{index}");
        let format = match self.format {
            DriveFormat::Raw => "raw",
            DriveFormat::Qcow2 => "qcow2",
        };
        let mut drive = format!(
            "file={},format={format},if=none,id={id}",
            escape(&self.path)
        );
        let model = match self.interface {
            DriveInterface::Virtio => "virtio-blk-pci",
            DriveInterface::Cdrom => {
                drive.push_str(",media=cdrom");
                "ide-cd"
            }
        };
        if self.read_only || self.interface == DriveInterface::Cdrom {
            drive.push_str(",readonly=on");
        }
        let mut device = format!("{model},drive={id}");
        if let Some(s) = &self.serial {
            device.push_str(&format!(",serial={}", s.replace(',', ",,")));
        }
        out.extend(["-drive".into(), drive, "-device".into(), device]);
    }
}

/// Everything needed to start one VM. Build it with struct-update syntax
/// over [`VmConfig::default`] or with [`VmConfig::boot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// QEMU binary; [`QEMU_BINARY`] by default (looked up in `PATH`).
    pub qemu: PathBuf,
    /// `-kernel` (an uncompressed `vmlinux` boots fastest via PVH). Without
    /// one, the firmware boots (e.g. PXE with `-boot n` in `extra_args`).
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    /// Kernel command line; ignored without a kernel.
    pub append: String,
    pub memory_mib: u32,
    pub cpus: u32,
    pub machine: Machine,
    pub accel: Accel,
    /// Where QEMU writes the guest console (ttyS0).
    pub serial_log: PathBuf,
    /// Also show the console on this process's terminal and take keyboard
    /// input from it (`Ctrl-A x` quits, `Ctrl-A c` toggles the monitor).
    pub interactive: bool,
    /// `-qmp unix:PATH,server=on,wait=off`.
    pub qmp_socket: Option<PathBuf>,
    /// NICs in `-device` order (the guest names them eth0, eth1, …).
    /// `-nodefaults` is always given, so there is no implicit NIC.
    pub nics: Vec<Nic>,
    pub drives: Vec<Drive>,
    /// `-no-reboot`: a guest reboot makes QEMU exit.
    pub no_reboot: bool,
    /// A virtio RNG (host `/dev/urandom`): the guest's entropy at boot, as
    /// a CPU's RDRAND gives it on real hardware and libvirt's default
    /// `<rng>` device in a VM. Without it a TCG guest (QEMU's default CPU
    /// has no RDRAND) waits seconds for the kernel's CRNG, and anything
    /// that makes a key or a TLS handshake waits with it.
    pub rng: bool,
    /// Appended verbatim at the end.
    pub extra_args: Vec<String>,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            qemu: PathBuf::from(QEMU_BINARY),
            kernel: None,
            initrd: None,
            append: String::new(),
            memory_mib: 384,
            cpus: 1,
            machine: Machine::default(),
            accel: Accel::default(),
            serial_log: PathBuf::from("console.log"),
            interactive: false,
            qmp_socket: None,
            nics: Vec::new(),
            drives: Vec::new(),
            no_reboot: false,
            rng: true,
            extra_args: Vec::new(),
        }
    }
}

impl VmConfig {
    /// A direct kernel boot with defaults for everything else.
    pub fn boot(
        kernel: impl Into<PathBuf>,
        initrd: impl Into<PathBuf>,
        append: impl Into<String>,
        serial_log: impl Into<PathBuf>,
    ) -> VmConfig {
        VmConfig {
            kernel: Some(kernel.into()),
            initrd: Some(initrd.into()),
            append: append.into(),
            serial_log: serial_log.into(),
            ..VmConfig::default()
        }
    }

    /// Where QEMU's own stdout/stderr go: `<serial_log>.qemu-stderr`.
    pub fn stderr_log(&self) -> PathBuf {
        let mut name = self.serial_log.as_os_str().to_owned();
        name.push(".qemu-stderr");
        PathBuf::from(name)
    }

    /// The QEMU arguments (without the program name). `Accel::Auto` renders
    /// as QEMU's own fallback list; [`VmConfig::spawn`] resolves it first.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = ["-nodefaults", "-no-user-config", "-display", "none"]
            .map(String::from)
            .into();
        a.extend(["-machine".into(), self.machine.to_string()]);
        a.extend(self.accel.args());
        a.extend(["-smp".into(), self.cpus.to_string()]);
        a.extend(["-m".into(), self.memory_mib.to_string()]);
        if let Some(k) = &self.kernel {
            a.extend(["-kernel".into(), k.display().to_string()]);
            if !self.append.is_empty() {
                a.extend(["-append".into(), self.append.clone()]);
            }
        }
        if let Some(i) = &self.initrd {
            a.extend(["-initrd".into(), i.display().to_string()]);
        }
        let log = escape(&self.serial_log);
        if self.interactive {
            a.extend([
                "-chardev".into(),
                format!("stdio,id=s0,mux=on,logfile={log},signal=off"),
                "-serial".into(),
                "chardev:s0".into(),
                "-mon".into(),
                "chardev=s0,mode=readline".into(),
            ]);
        } else {
            a.extend([
                "-chardev".into(),
                format!("file,id=s0,path={log}"),
                "-serial".into(),
                "chardev:s0".into(),
            ]);
        }
        if let Some(q) = &self.qmp_socket {
            a.extend([
                "-qmp".into(),
                format!("unix:{},server=on,wait=off", escape(q)),
            ]);
        }
        for (i, nic) in self.nics.iter().enumerate() {
            nic.render(i, &mut a);
        }
        for (i, drive) in self.drives.iter().enumerate() {
            drive.render(i, &mut a);
        }
        if self.rng {
            // After the NICs and disks: their PCI slots, and so the
            // guest's predictable link names, stay what they were.
            a.extend(["-device".into(), "virtio-rng-pci".into()]);
        }
        if self.no_reboot {
            a.push("-no-reboot".into());
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }

    /// The command line as one shell-quoted string, for logs.
    pub fn command_line(&self) -> String {
        std::iter::once(self.qemu.display().to_string())
            .chain(self.args())
            .map(|s| shell_quote(&s))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Starts QEMU. `Accel::Auto` is resolved first (a KVM probe boot of up
    /// to [`accel::KVM_PROBE_TIMEOUT`]); [`Vm::accel`] and [`Vm::accel_note`]
    /// tell what was chosen. A stale serial log and QMP socket are removed
    /// and missing parent directories created.
    pub fn spawn(&self) -> Result<Vm> {
        let resolved = accel::resolve(self.accel, self.kernel.as_deref());
        let config = VmConfig {
            accel: resolved.accel,
            ..self.clone()
        };
        let stderr_log = config.stderr_log();
        let mut paths = vec![&config.serial_log];
        paths.extend(config.qmp_socket.as_ref());
        for path in paths {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(|source| VmError::Io {
                    what: "creating directory",
                    path: dir.to_owned(),
                    source,
                })?;
            }
            remove_if_exists(path)?;
        }
        let stderr = File::create(&stderr_log).map_err(|source| VmError::Io {
            what: "creating",
            path: stderr_log.clone(),
            source,
        })?;
        let stdout = if config.interactive {
            Stdio::inherit()
        } else {
            Stdio::from(stderr.try_clone().map_err(|source| VmError::Io {
                what: "duplicating",
                path: stderr_log.clone(),
                source,
            })?)
        };
        let mut cmd = Command::new(&config.qemu);
        cmd.args(config.args())
            .stdin(if config.interactive {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stdout(stdout)
            .stderr(stderr);
        if !config.interactive {
            // A process group of its own: Ctrl-C at the terminal reaches
            // the launcher (which powers the VM off gracefully), not QEMU,
            // which would end the VM at once on SIGINT. An interactive VM
            // reads the terminal and must stay in its foreground group.
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        }
        let child = cmd.spawn().map_err(|source| VmError::Spawn {
            program: config.qemu.clone(),
            source,
        })?;
        Ok(Vm {
            pid: child.id(),
            child: Mutex::new(child),
            serial_log: config.serial_log,
            stderr_log,
            qmp_socket: config.qmp_socket,
            accel: resolved.accel,
            accel_note: resolved.note,
        })
    }
}

/// A running (or exited) QEMU. Dropping it kills QEMU if it still runs and
/// removes the QMP socket, so tests never leak VMs.
#[derive(Debug)]
pub struct Vm {
    pid: u32,
    child: Mutex<Child>,
    serial_log: PathBuf,
    stderr_log: PathBuf,
    qmp_socket: Option<PathBuf>,
    accel: Accel,
    accel_note: Option<String>,
}

impl Vm {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn serial_log_path(&self) -> &Path {
        &self.serial_log
    }

    pub fn stderr_log_path(&self) -> &Path {
        &self.stderr_log
    }

    pub fn qmp_socket(&self) -> Option<&Path> {
        self.qmp_socket.as_deref()
    }

    /// The accelerator in use (`Tcg` or `Kvm`).
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// Why `Auto` chose what it chose, if it was `Auto`.
    pub fn accel_note(&self) -> Option<&str> {
        self.accel_note.as_deref()
    }

    /// The whole serial log so far (lossy UTF-8, `\r` kept).
    pub fn serial_log(&self) -> String {
        let buf = serial::read_from(&self.serial_log, 0).unwrap_or_default();
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Current length of the serial log: remember it before an action, then
    /// wait from there for what the action should cause.
    pub fn serial_offset(&self) -> u64 {
        serial::len(&self.serial_log)
    }

    /// Waits for the first complete serial line (from the start of the log)
    /// containing `needle` and returns it.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Result<String> {
        self.wait_for_line_from(0, needle, timeout).map(|m| m.line)
    }

    /// Waits for the first complete line at or after byte `offset` containing
    /// `needle`.
    pub fn wait_for_line_from(
        &self,
        offset: u64,
        needle: &str,
        timeout: Duration,
    ) -> Result<LineMatch> {
        self.wait_for_line_matching(offset, &format!("{needle:?}"), timeout, |l| {
            l.contains(needle)
        })
    }

    /// Waits for the first complete line at or after byte `offset` that
    /// `pred` accepts. `what` describes it in errors. Fails early, with the
    /// tails of the serial log and QEMU's stderr, if QEMU exits.
    pub fn wait_for_line_matching(
        &self,
        offset: u64,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Result<LineMatch> {
        let deadline = Instant::now() + timeout;
        let mut pos = offset;
        loop {
            // Check for exit before reading, so output written just before
            // QEMU exited is still scanned.
            let exited = self.try_wait()?;
            let buf = serial::read_from(&self.serial_log, pos)?;
            match serial::scan_lines(&buf, &mut pred) {
                Scan::Found { line, end } => {
                    return Ok(LineMatch {
                        line,
                        end: pos + end as u64,
                    })
                }
                Scan::NotFound { consumed } => pos += consumed as u64,
            }
            if let Some(status) = exited {
                return Err(self.exited_error(status, what));
            }
            if Instant::now() >= deadline {
                return Err(VmError::LineTimeout {
                    what: what.into(),
                    path: self.serial_log.clone(),
                    timeout,
                    tail: serial::tail(&self.serial_log, TAIL_LINES),
                });
            }
            thread::sleep(POLL);
        }
    }

    /// Connects to the VM's QMP socket, waiting up to `timeout` for QEMU to
    /// create it (giving up early if QEMU exits).
    pub fn qmp(&self, timeout: Duration) -> Result<Qmp> {
        let path = self.qmp_socket.as_deref().ok_or(VmError::NoQmp)?;
        match Qmp::connect_while(path, timeout, || matches!(self.try_wait(), Ok(None))) {
            Ok(q) => Ok(q),
            // QEMU opens the socket before it checks devices, so a bad
            // command line can close a fresh connection: give it a moment to
            // exit and then report the exit (with its stderr) instead.
            Err(e) => match self.wait_exit(Duration::from_secs(1)) {
                Ok(status) => Err(self.exited_error(status, "the QMP socket")),
                Err(_) => Err(e.into()),
            },
        }
    }

    /// The exit status if QEMU has exited (reaping it), else `None`.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        self.child().try_wait().map_err(|source| VmError::Wait {
            pid: self.pid,
            source,
        })
    }

    /// Waits up to `timeout` for QEMU to exit on its own.
    pub fn wait_exit(&self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(VmError::ExitTimeout {
                    pid: self.pid,
                    timeout,
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Blocks until QEMU exits (for interactive use).
    pub fn wait(&self) -> Result<ExitStatus> {
        self.child().wait().map_err(|source| VmError::Wait {
            pid: self.pid,
            source,
        })
    }

    /// Stops QEMU if it still runs: SIGTERM (QEMU exits cleanly and restores
    /// the terminal), then SIGKILL after a short grace period. Returns the
    /// exit status.
    pub fn kill(&self) -> Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        // SAFETY: kill(2) on our own unreaped child's pid, which cannot have
        // been reused since the child is not reaped yet.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        match self.wait_exit(TERM_GRACE) {
            Ok(status) => Ok(status),
            Err(VmError::ExitTimeout { .. }) => {
                let mut child = self.child();
                let _ = child.kill();
                child.wait().map_err(|source| VmError::Wait {
                    pid: self.pid,
                    source,
                })
            }
            Err(e) => Err(e),
        }
    }

    fn child(&self) -> MutexGuard<'_, Child> {
        // A panic while holding the lock leaves the Child usable.
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn exited_error(&self, status: ExitStatus, what: &str) -> VmError {
        VmError::Exited(Box::new(QemuExited {
            pid: self.pid,
            status,
            what: what.into(),
            serial_path: self.serial_log.clone(),
            serial_tail: serial::tail(&self.serial_log, TAIL_LINES),
            stderr_path: self.stderr_log.clone(),
            stderr_tail: serial::tail(&self.stderr_log, TAIL_LINES),
        }))
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.kill();
        if let Some(q) = &self.qmp_socket {
            let _ = fs::remove_file(q);
        }
    }
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(VmError::Io {
            what: "removing stale",
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Escapes a path for use inside a QEMU option value (`,` doubles).
fn escape(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// The value of `key=` in a QEMU option string like `user,id=n0,ipv6=off`.
fn option_value<'a>(opts: &'a str, key: &str) -> Option<&'a str> {
    opts.split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests;
