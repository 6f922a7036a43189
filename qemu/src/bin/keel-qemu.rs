//! `keel-qemu`: boot one Keel node under QEMU with its console on this
//! terminal (`Ctrl-A x` quits, `Ctrl-A c` toggles the QEMU monitor).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use keel_qemu::{Accel, Machine, Nic, VmConfig};

const DEFAULT_APPEND: &str = "console=ttyS0 printk_devkmsg=on panic=-1";

const USAGE: &str = "\
usage: keel-qemu --kernel VMLINUX --initrd INITRAMFS [options]

options:
  --kernel PATH      kernel to boot (uncompressed vmlinux boots fastest)
  --initrd PATH      initramfs
  --append TEXT      extra kernel parameters, added after
                     'console=ttyS0 printk_devkmsg=on panic=-1'
  --accel NAME       tcg (default), kvm, or auto (probe KVM, else TCG)
  --mem MIB          memory in MiB (default 384)
  --machine NAME     q35 (default) or pc
  --log PATH         serial console log (default build/run/node0.console.log)
  --qmp PATH         QMP socket (default build/run/node0.qmp)
  --nic SPEC         a NIC: 'user', 'none', or a -netdev spec such as
                     'stream,server=off,addr.type=unix,addr.path=SOCK';
                     repeatable, in eth0, eth1, ... order (default: user)
  --no-reboot        exit QEMU when the guest reboots
  --qemu-arg ARG     pass ARG to QEMU verbatim (repeatable)
  --dry-run          print the QEMU command line and exit
  -h, --help         this text

QEMU's own messages go to <log>.qemu-stderr. The exit code is QEMU's.";

struct Args {
    config: VmConfig,
    dry_run: bool,
}

fn parse_args() -> Result<Args> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let mut kernel = None;
    let mut initrd = None;
    let mut append = String::new();
    let mut nics: Option<Vec<Nic>> = None;
    let mut dry_run = false;
    let mut config = VmConfig {
        serial_log: PathBuf::from("build/run/node0.console.log"),
        qmp_socket: Some(PathBuf::from("build/run/node0.qmp")),
        interactive: true,
        ..VmConfig::default()
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long("kernel") => kernel = Some(PathBuf::from(parser.value()?)),
            Long("initrd") => initrd = Some(PathBuf::from(parser.value()?)),
            Long("append") => {
                let text = parser.value()?.string()?;
                if !append.is_empty() {
                    append.push(' ');
                }
                append.push_str(&text);
            }
            Long("accel") => config.accel = parser.value()?.string()?.parse()?,
            Long("mem") => {
                let v = parser.value()?.string()?;
                config.memory_mib = v.parse().with_context(|| format!("--mem {v:?}"))?;
            }
            Long("machine") => config.machine = parser.value()?.string()?.parse::<Machine>()?,
            Long("log") => config.serial_log = PathBuf::from(parser.value()?),
            Long("qmp") => config.qmp_socket = Some(PathBuf::from(parser.value()?)),
            Long("nic") => {
                let spec = parser.value()?.string()?;
                let list = nics.get_or_insert_with(Vec::new);
                match spec.as_str() {
                    "none" => {}
                    "user" => list.push(Nic::user(&format!("n{}", list.len()))),
                    _ => list.push(Nic::new(spec)),
                }
            }
            Long("no-reboot") => config.no_reboot = true,
            Long("qemu-arg") => config.extra_args.push(parser.value()?.string()?),
            Long("dry-run") => dry_run = true,
            Short('h') | Long("help") => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    let Some(kernel) = kernel else {
        bail!("--kernel is required\n\n{USAGE}")
    };
    let Some(initrd) = initrd else {
        bail!("--initrd is required\n\n{USAGE}")
    };
    for (what, path) in [("kernel", &kernel), ("initrd", &initrd)] {
        if !path.is_file() {
            bail!("{what} {} does not exist or is not a file", path.display());
        }
    }
    config.kernel = Some(kernel);
    config.initrd = Some(initrd);
    config.append = if append.is_empty() {
        DEFAULT_APPEND.to_owned()
    } else {
        format!("{DEFAULT_APPEND} {append}")
    };
    config.nics = nics.unwrap_or_else(|| vec![Nic::user("n0")]);
    Ok(Args { config, dry_run })
}

fn run() -> Result<ExitCode> {
    let Args { config, dry_run } = parse_args()?;
    if dry_run {
        println!("{}", config.command_line());
        return Ok(ExitCode::SUCCESS);
    }
    if config.accel == Accel::Auto {
        eprintln!(
            "keel-qemu: probing KVM with a short boot (up to {:?})...",
            keel_qemu::accel::KVM_PROBE_TIMEOUT
        );
    }
    let vm = config.spawn().context("starting QEMU")?;
    eprintln!("keel-qemu: serial log  {}", vm.serial_log_path().display());
    eprintln!("keel-qemu: QEMU stderr {}", vm.stderr_log_path().display());
    if let Some(q) = vm.qmp_socket() {
        eprintln!("keel-qemu: QMP socket  {}", q.display());
    }
    match vm.accel_note() {
        Some(note) => eprintln!("keel-qemu: accelerator {} ({note})", vm.accel()),
        None => eprintln!("keel-qemu: accelerator {}", vm.accel()),
    }
    eprintln!(
        "keel-qemu: pid {}; Ctrl-A x quits, Ctrl-A c toggles the monitor",
        vm.pid()
    );
    let status = vm.wait().context("waiting for QEMU")?;
    let code = match status.code() {
        Some(c) => c,
        None => {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        }
    };
    if code != 0 {
        let tail = keel_qemu::serial::tail(vm.stderr_log_path(), 10);
        if !tail.is_empty() {
            eprintln!("keel-qemu: QEMU exited with {status}:\n{tail}");
        }
    }
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keel-qemu: {e:#}");
            ExitCode::from(2)
        }
    }
}
