//! Real QEMU, no guest kernel: start paused (`-S`) with the devices a Keel
//! test uses, talk QMP, and quit. Fast (well under a second per VM), and it
//! proves the rendered command line is accepted by the installed QEMU.

use std::path::Path;
use std::time::Duration;

use keel_qemu::{Drive, DriveInterface, Machine, Nic, VmConfig, VmError};
use serde_json::json;

fn paused(dir: &Path, machine: Machine) -> VmConfig {
    VmConfig {
        machine,
        serial_log: dir.join("run/console.log"),
        qmp_socket: Some(dir.join("run/vm.qmp")),
        extra_args: vec!["-S".into()],
        ..VmConfig::default()
    }
}

#[test]
fn query_status_then_quit() {
    let dir = tempfile::tempdir().unwrap();
    let vm = paused(dir.path(), Machine::Q35).spawn().unwrap();
    let mut qmp = vm.qmp(Duration::from_secs(10)).unwrap();
    assert_eq!(qmp.greeting()["version"]["qemu"]["major"], 7);
    let status = qmp.query_status().unwrap();
    assert_eq!(status["status"], "prelaunch", "{status}");
    assert_eq!(status["running"], false);
    let err = qmp.execute("no-such-command", None).unwrap_err();
    assert!(err.to_string().contains("no-such-command"), "{err}");
    qmp.quit().unwrap();
    let exit = vm.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(exit.success(), "{exit}");
    drop(vm);
    assert!(!dir.path().join("run/vm.qmp").exists());
}

#[test]
fn nics_drives_and_set_link_on_both_machines() {
    for machine in [Machine::Q35, Machine::Pc] {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("var.img");
        std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
        let iso = dir.path().join("config.iso");
        std::fs::write(&iso, vec![0u8; 64 << 10]).unwrap();
        let config = VmConfig {
            nics: vec![
                Nic::user("n0").with_mac("52:54:00:12:34:01"),
                Nic::new("user").with_prop("id=nic1"),
            ],
            drives: vec![
                Drive::new(&disk).with_serial("KEEL-VAR"),
                Drive {
                    interface: DriveInterface::Cdrom,
                    ..Drive::new(&iso)
                },
            ],
            no_reboot: true,
            ..paused(dir.path(), machine)
        };
        let vm = config.spawn().unwrap();
        let mut qmp = vm
            .qmp(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{machine}: {e}\n{}", config.command_line()));
        // By netdev id and by device id.
        qmp.set_link("n0", false).unwrap();
        qmp.set_link("nic1", false).unwrap();
        qmp.set_link("n1", true).unwrap();
        let err = qmp.set_link("n9", true).unwrap_err();
        assert!(err.to_string().contains("n9"), "{err}");
        let block = qmp.execute("query-block", None).unwrap();
        let text = block.to_string();
        assert!(
            text.contains("var.img") && text.contains("config.iso"),
            "{text}"
        );
        // The var disk (the first drive, backend d0) throttled to 1 IOPS
        // and back; an unknown backend is an error naming it.
        qmp.block_set_io_throttle("d0", 1).unwrap();
        let block = qmp.execute("query-block", None).unwrap();
        let d0 = block
            .as_array()
            .and_then(|a| a.iter().find(|b| b["device"] == "d0"))
            .unwrap_or_else(|| panic!("{block}"));
        assert_eq!(d0["inserted"]["iops"], 1, "{d0}");
        qmp.block_set_io_throttle("d0", 0).unwrap();
        let err = qmp.block_set_io_throttle("d9", 1).unwrap_err();
        assert!(err.to_string().contains("d9"), "{err}");
        let nets = qmp
            .execute(
                "qom-get",
                Some(json!({"path": "/machine/peripheral/nic1", "property": "mac"})),
            )
            .unwrap();
        assert!(nets.is_string(), "{nets}");
        qmp.quit().unwrap();
        assert!(vm.wait_exit(Duration::from_secs(10)).unwrap().success());
    }
}

#[test]
fn bad_arguments_surface_qemu_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let vm = VmConfig {
        extra_args: vec!["-device".into(), "no-such-device".into()],
        ..paused(dir.path(), Machine::Q35)
    }
    .spawn()
    .unwrap();
    let err = vm.qmp(Duration::from_secs(10)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, VmError::Exited(_)), "{text}");
    assert!(text.contains("no-such-device"), "{text}");
}
