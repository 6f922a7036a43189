//! Unit tests for command-line rendering and the `Vm` handle (the latter
//! with a fake "QEMU" shell script, so no emulator is needed).

use super::*;

/// A kernel boot without the default RNG device, so each case below shows
/// only what it sets.
fn base() -> VmConfig {
    VmConfig {
        rng: false,
        ..VmConfig::boot(
            "/b/vmlinux",
            "/b/initramfs.cpio",
            "console=ttyS0",
            "/r/n0.log",
        )
    }
}

/// The arguments every config starts with.
const PREFIX: &[&str] = &[
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-machine",
];

#[test]
fn renders_a_table_of_configs() {
    struct Case {
        name: &'static str,
        config: VmConfig,
        expected: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "defaults with kernel",
            config: VmConfig::boot(
                "/b/vmlinux",
                "/b/initramfs.cpio",
                "console=ttyS0",
                "/r/n0.log",
            ),
            expected: &[
                "q35",
                "-accel",
                "tcg",
                "-smp",
                "1",
                "-m",
                "384",
                "-kernel",
                "/b/vmlinux",
                "-append",
                "console=ttyS0",
                "-initrd",
                "/b/initramfs.cpio",
                "-chardev",
                "file,id=s0,path=/r/n0.log",
                "-serial",
                "chardev:s0",
                "-device",
                "virtio-rng-pci",
            ],
        },
        Case {
            name: "kvm, pc, memory, qmp, no-reboot",
            config: VmConfig {
                accel: Accel::Kvm,
                machine: Machine::Pc,
                memory_mib: 256,
                cpus: 2,
                qmp_socket: Some("/r/n0.qmp".into()),
                no_reboot: true,
                ..base()
            },
            expected: &[
                "pc",
                "-accel",
                "kvm",
                "-cpu",
                "host",
                "-smp",
                "2",
                "-m",
                "256",
                "-kernel",
                "/b/vmlinux",
                "-append",
                "console=ttyS0",
                "-initrd",
                "/b/initramfs.cpio",
                "-chardev",
                "file,id=s0,path=/r/n0.log",
                "-serial",
                "chardev:s0",
                "-qmp",
                "unix:/r/n0.qmp,server=on,wait=off",
                "-no-reboot",
            ],
        },
        Case {
            name: "interactive console",
            config: VmConfig {
                interactive: true,
                ..base()
            },
            expected: &[
                "q35",
                "-accel",
                "tcg",
                "-smp",
                "1",
                "-m",
                "384",
                "-kernel",
                "/b/vmlinux",
                "-append",
                "console=ttyS0",
                "-initrd",
                "/b/initramfs.cpio",
                "-chardev",
                "stdio,id=s0,mux=on,logfile=/r/n0.log,signal=off",
                "-serial",
                "chardev:s0",
                "-mon",
                "chardev=s0,mode=readline",
            ],
        },
        Case {
            name: "no kernel: firmware boot, append dropped",
            config: VmConfig {
                kernel: None,
                initrd: None,
                extra_args: vec!["-boot".into(), "n".into()],
                ..base()
            },
            expected: &[
                "q35",
                "-accel",
                "tcg",
                "-smp",
                "1",
                "-m",
                "384",
                "-chardev",
                "file,id=s0,path=/r/n0.log",
                "-serial",
                "chardev:s0",
                "-boot",
                "n",
            ],
        },
        Case {
            name: "empty append is omitted",
            config: VmConfig {
                append: String::new(),
                initrd: None,
                ..base()
            },
            expected: &[
                "q35",
                "-accel",
                "tcg",
                "-smp",
                "1",
                "-m",
                "384",
                "-kernel",
                "/b/vmlinux",
                "-chardev",
                "file,id=s0,path=/r/n0.log",
                "-serial",
                "chardev:s0",
            ],
        },
        Case {
            name: "nics: ids, macs, props, models",
            config: VmConfig {
                kernel: None,
                initrd: None,
                nics: vec![
                    Nic::user("n0"),
                    Nic::new("user,ipv6=off").with_mac("52:54:00:00:00:02"),
                    Nic::stream_unix("sw", Path::new("/r/sw,1.sock"))
                        .with_prop("bus=rp1")
                        .with_prop("acpi-index=7"),
                    Nic::dgram_unix("dg", Path::new("/r/a"), Path::new("/r/b")).with_model("e1000"),
                ],
                ..base()
            },
            expected: &[
                "q35",
                "-accel",
                "tcg",
                "-smp",
                "1",
                "-m",
                "384",
                "-chardev",
                "file,id=s0,path=/r/n0.log",
                "-serial",
                "chardev:s0",
                "-netdev",
                "user,id=n0",
                "-device",
                "virtio-net-pci,netdev=n0",
                "-netdev",
                "user,ipv6=off,id=n1",
                "-device",
                "virtio-net-pci,netdev=n1,mac=52:54:00:00:00:02",
                "-netdev",
                "stream,id=sw,server=off,addr.type=unix,addr.path=/r/sw,,1.sock",
                "-device",
                "virtio-net-pci,netdev=sw,bus=rp1,acpi-index=7",
                "-netdev",
                "dgram,id=dg,local.type=unix,local.path=/r/a,remote.type=unix,remote.path=/r/b",
                "-device",
                "e1000,netdev=dg",
            ],
        },
        Case {
            name: "drives: virtio with serial, read-only qcow2, cdrom",
            config: VmConfig {
                kernel: None,
                initrd: None,
                drives: vec![
                    Drive::new("/r/var.img").with_serial("KEEL-VAR"),
                    Drive {
                        format: DriveFormat::Qcow2,
                        read_only: true,
                        ..Drive::new("/r/x.qcow2")
                    },
                    Drive {
                        interface: DriveInterface::Cdrom,
                        ..Drive::new("/r/config.iso")
                    },
                ],
                ..base()
            },
            expected: &[
                "q35",
                "-accel",
                "tcg",
                "-smp",
                "1",
                "-m",
                "384",
                "-chardev",
                "file,id=s0,path=/r/n0.log",
                "-serial",
                "chardev:s0",
                "-drive",
                "file=/r/var.img,format=raw,if=none,id=d0",
                "-device",
                "virtio-blk-pci,drive=d0,serial=KEEL-VAR",
                "-drive",
                "file=/r/x.qcow2,format=qcow2,if=none,id=d1,readonly=on",
                "-device",
                "virtio-blk-pci,drive=d1",
                "-drive",
                "file=/r/config.iso,format=raw,if=none,id=d2,media=cdrom,readonly=on",
                "-device",
                "ide-cd,drive=d2",
            ],
        },
    ];
    for case in cases {
        let got = case.config.args();
        let want: Vec<String> = PREFIX
            .iter()
            .chain(case.expected)
            .map(|s| s.to_string())
            .collect();
        assert_eq!(got, want, "case {:?}", case.name);
    }
}

#[test]
fn auto_renders_qemu_fallback_list() {
    let a = VmConfig {
        accel: Accel::Auto,
        ..base()
    }
    .args();
    assert_eq!(&a[6..10], ["-accel", "kvm", "-accel", "tcg"]);
}

#[test]
fn stderr_log_sits_next_to_serial_log() {
    assert_eq!(base().stderr_log(), Path::new("/r/n0.log.qemu-stderr"));
}

#[test]
fn command_line_is_shell_quoted() {
    let c = VmConfig {
        append: "console=ttyS0 panic=-1".into(),
        ..base()
    };
    let line = c.command_line();
    assert!(
        line.starts_with("qemu-system-x86_64 -nodefaults "),
        "{line}"
    );
    assert!(line.contains("-append 'console=ttyS0 panic=-1'"), "{line}");
    assert_eq!(shell_quote("it's"), r"'it'\''s'");
    assert_eq!(shell_quote(""), "''");
}

#[test]
fn parses_machine_names() {
    assert_eq!("q35".parse::<Machine>().unwrap(), Machine::Q35);
    assert_eq!("pc".parse::<Machine>().unwrap(), Machine::Pc);
    assert!("virt".parse::<Machine>().is_err());
}

#[test]
fn finds_netdev_ids() {
    assert_eq!(Nic::user("n3").netdev_id(), Some("n3"));
    assert_eq!(Nic::new("user").netdev_id(), None);
    assert_eq!(option_value("stream,server=off,id=x", "id"), Some("x"));
}

/// A fake QEMU: a shell script that prints to the "serial log" it is given
/// (the value after `path=`) and then behaves as `$MODE` says.
fn fake_qemu(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("fake-qemu");
    let text = format!(
        "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in file,id=s0,path=*) LOG=\"${{a#file,id=s0,path=}}\";; esac; done\n{body}\n"
    );
    fs::write(&script, text).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn fake_config(dir: &Path, body: &str) -> VmConfig {
    VmConfig {
        qemu: fake_qemu(dir, body),
        serial_log: dir.join("run/node.log"),
        ..VmConfig::default()
    }
}

#[test]
fn waits_for_lines_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let vm = fake_config(
        dir.path(),
        r#"printf 'boot\r\nkeel: ready one\r\n' > "$LOG"; sleep 0.3; printf 'keel: ready two\r\npart' >> "$LOG"; sleep 30"#,
    )
    .spawn()
    .unwrap();
    let first = vm
        .wait_for_line_from(0, "keel: ready", Duration::from_secs(5))
        .unwrap();
    assert_eq!(first.line, "keel: ready one");
    let second = vm
        .wait_for_line_from(first.end, "keel: ready", Duration::from_secs(5))
        .unwrap();
    assert_eq!(second.line, "keel: ready two");
    assert_eq!(
        vm.wait_for_line("boot", Duration::from_secs(1)).unwrap(),
        "boot"
    );
    let m = vm
        .wait_for_line_matching(0, "a line ending in 'two'", Duration::from_secs(1), |l| {
            l.ends_with("two")
        })
        .unwrap();
    assert_eq!(m.end, second.end);
    // A partial line never matches.
    let err = vm
        .wait_for_line_from(second.end, "part", Duration::from_millis(300))
        .unwrap_err();
    assert!(matches!(err, VmError::LineTimeout { .. }), "{err}");
    assert!(err.to_string().contains("keel: ready two"), "{err}");
    assert!(vm.serial_log().contains("boot\r\n"));
    assert!(vm.try_wait().unwrap().is_none());
    let status = vm.kill().unwrap();
    assert!(!status.success());
    // kill is idempotent.
    assert_eq!(vm.kill().unwrap(), status);
}

#[test]
fn early_exit_is_reported_with_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let vm = fake_config(
        dir.path(),
        r#"echo 'early console' > "$LOG"; echo 'qemu: could not load kernel' >&2; exit 1"#,
    )
    .spawn()
    .unwrap();
    let start = Instant::now();
    let err = vm
        .wait_for_line("never", Duration::from_secs(20))
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    let text = err.to_string();
    assert!(matches!(err, VmError::Exited(_)), "{text}");
    assert!(text.contains("could not load kernel"), "{text}");
    assert!(text.contains("early console"), "{text}");
    assert_eq!(
        vm.wait_exit(Duration::from_secs(1)).unwrap().code(),
        Some(1)
    );
}

#[test]
fn wait_exit_times_out_and_drop_kills() {
    let dir = tempfile::tempdir().unwrap();
    let qmp = dir.path().join("q/vm.qmp");
    let vm = VmConfig {
        qmp_socket: Some(qmp.clone()),
        ..fake_config(dir.path(), r#": > "$LOG"; exec sleep 30"#)
    }
    .spawn()
    .unwrap();
    fs::write(&qmp, b"").unwrap(); // stands in for QEMU's socket
    let pid = vm.pid();
    let err = vm.wait_exit(Duration::from_millis(100)).unwrap_err();
    assert!(matches!(err, VmError::ExitTimeout { .. }), "{err}");
    drop(vm);
    assert!(!qmp.exists(), "QMP socket removed on drop");
    // The process is gone (reaped), so its /proc entry is too.
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn spawn_failure_names_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let err = VmConfig {
        qemu: dir.path().join("no-such-qemu"),
        serial_log: dir.path().join("log"),
        ..VmConfig::default()
    }
    .spawn()
    .unwrap_err();
    assert!(err.to_string().contains("no-such-qemu"), "{err}");
}

#[test]
fn qmp_without_socket_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let vm = fake_config(dir.path(), "exec sleep 30").spawn().unwrap();
    assert!(matches!(
        vm.qmp(Duration::from_millis(10)),
        Err(VmError::NoQmp)
    ));
}
