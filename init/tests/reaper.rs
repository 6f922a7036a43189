//! The reaper as the sole owner of waitpid(-1), in its own test process
//! (a test binary of its own, so no other test's children are reaped).
//! The process makes itself a child subreaper (prctl(2)
//! PR_SET_CHILD_SUBREAPER) so orphans come to it as they would to PID 1.

use std::process::Command;
use std::time::Duration;

use keel::supervise::{Exit, Reaper};

#[test]
fn reaper_delivers_statuses_and_reaps_orphans() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let reaper = Reaper::start().unwrap();
        let cases: &[(&str, Exit)] = &[
            ("exit 3", Exit::Code(3)),
            ("exit 0", Exit::Code(0)),
            ("kill -TERM $$", Exit::Signal(15)),
            ("kill -KILL $$", Exit::Signal(9)),
        ];
        for (script, want) in cases {
            let child = reaper
                .spawn(Command::new("/bin/sh").args(["-c", script]))
                .unwrap();
            let got = tokio::time::timeout(Duration::from_secs(10), child.exit)
                .await
                .expect("exit status delivered")
                .unwrap();
            assert_eq!(got, *want, "{script}");
        }

        // A grandchild orphaned by its parent is reparented to us and must be
        // reaped, not left as a zombie.
        let child = reaper
            .spawn(Command::new("/bin/sh").args(["-c", "sleep 0.2 & exit 0"]))
            .unwrap();
        child.exit.await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while reaper.orphans_reaped() < 1 {
            assert!(tokio::time::Instant::now() < deadline, "orphan not reaped");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}
