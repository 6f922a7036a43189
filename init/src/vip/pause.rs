//! Noticing that this node was paused: its monotonic clock stood still
//! while the world's did not.
//!
//! The fence (`fence.rs`) counts the lease down on CLOCK_MONOTONIC, which
//! does not advance while a VM is paused (QMP `stop`, live migration, a
//! host under memory pressure) or, on bare metal, while firmware holds
//! every CPU (an SMI storm): after the pause the fence runs late by its
//! length, while etcd's leader, which kept running, may have let the lease
//! expire and another node may hold the VIP. The gate (`gate.rs`) already
//! keeps such a node silent on the wire; this watchdog makes it drop the
//! VIP at once as well.
//!
//! The signal: the hardware real-time clock (`/sys/class/rtc/rtc0/
//! since_epoch`, whole seconds), which keeps counting through a pause —
//! it is a separate, battery-backed counter on bare metal, and QEMU's
//! emulated RTC follows the host's clock by default (`-rtc clock=host`).
//! Sampled every [`SAMPLE`] against CLOCK_MONOTONIC, and again right
//! before every answer or announcement for a VIP: the offset between the
//! two moves by the length of a pause.
//!
//! What it catches and misses:
//! - catches a pause of [`THRESHOLD`] + 1 s or more always, and most
//!   pauses longer than [`THRESHOLD`] (the RTC has whole seconds);
//! - misses shorter pauses: for those the margin of the fence (at least
//!   1 s) and the gate still hold;
//! - a system whose RTC is absent or unreadable (some VMs, `keel vip` on a
//!   host without /dev/rtc) has no watchdog; this is logged once;
//! - an RTC set forward by hand or by `hwclock --systohc` reads as a
//!   pause: the VIP is dropped once, needlessly but safely. An RTC set
//!   back is taken as the new base, silently;
//! - a monotonic clock that jumps forward after a pause (KVM's kvmclock
//!   can) makes the fence deadline pass by itself, the safe direction.
//!
//! Not used: CLOCK_BOOTTIME (it stops with the VM too) and the etcd
//! server's time (its responses carry no clock).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// How often the RTC is read.
pub const SAMPLE: Duration = Duration::from_millis(500);
/// How far the RTC must have moved ahead of the monotonic clock, beyond
/// the 1 s of its own resolution, to count as a pause. Oscillator drift
/// between two samples is micro-seconds.
pub const THRESHOLD: Duration = Duration::from_millis(250);
/// An RTC this far behind the base was set back: start again from it.
const SET_BACK: f64 = 5.0;

/// The offset tracker: pure, fed with (RTC seconds, monotonic time).
#[derive(Debug, Default)]
pub struct Detector {
    /// The largest offset RTC − monotonic seen since the last pause.
    base: Option<f64>,
}

impl Detector {
    /// One sample; the length of the pause it reveals, if any.
    ///
    /// The measured offset `floor(wall) − mono` lies within 1 s below the
    /// true one, so without a pause a new sample exceeds the largest seen
    /// by less than 1 s; a pause of P seconds raises it by P.
    pub fn sample(&mut self, rtc_secs: u64, mono: Duration) -> Option<Duration> {
        // u64 seconds since 1970 are exact in an f64 for the next few
        // hundred million years.
        #[allow(clippy::cast_precision_loss)]
        let offset = rtc_secs as f64 - mono.as_secs_f64();
        let Some(base) = self.base else {
            self.base = Some(offset);
            return None;
        };
        let jump = offset - base;
        if jump > 1.0 + THRESHOLD.as_secs_f64() {
            self.base = Some(offset);
            // The pause lies within 1 s of the jump either way.
            return Some(Duration::from_secs_f64(jump));
        }
        if offset > base || jump < -SET_BACK {
            self.base = Some(offset);
        }
        None
    }
}

/// Reads the RTC's seconds since the epoch under `sys` (`/sys` on a node).
pub fn read_rtc(sys: &Path) -> Option<u64> {
    std::fs::read_to_string(rtc_path(sys))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn rtc_path(sys: &Path) -> PathBuf {
    sys.join("class/rtc/rtc0/since_epoch")
}

/// The watchdog: the detector, the clock it counts from, and where pauses
/// are counted. Cloned into each election, which also samples it right
/// before it sends anything for a VIP ([`Watchdog::paused_now`]).
#[derive(Clone)]
pub struct Watchdog {
    sys: PathBuf,
    state: Arc<Mutex<(Detector, Instant)>>,
    tx: Arc<watch::Sender<u64>>,
}

impl Watchdog {
    /// A watchdog reading the RTC under `sys`, and the counter of pauses
    /// it finds (the elections drop their VIPs on a change).
    pub fn new(sys: PathBuf) -> (Watchdog, watch::Receiver<u64>) {
        let (tx, rx) = watch::channel(0);
        let w = Watchdog {
            sys,
            state: Arc::new(Mutex::new((Detector::default(), Instant::now()))),
            tx: Arc::new(tx),
        };
        (w, rx)
    }

    /// Samples the RTC now; true when it reveals a pause (logged and
    /// counted). An election calls this right before it answers or
    /// announces: a confirmation from etcd that arrived just before a
    /// pause is stale after it, and the periodic sample may come up to
    /// [`SAMPLE`] later. One sysfs read (the CMOS RTC's driver may wait
    /// out an update cycle, under 10 ms, once a second).
    pub fn paused_now(&self) -> bool {
        let Some(rtc) = read_rtc(&self.sys) else {
            return false;
        };
        let found = {
            let mut st = crate::lock(&self.state);
            let mono = st.1.elapsed();
            st.0.sample(rtc, mono)
        };
        let Some(p) = found else { return false };
        log::warn!(
            "vip: this node was paused for about {:.1} s (the real-time clock moved on while the monotonic clock stood still): dropping every VIP before anything else",
            p.as_secs_f64()
        );
        self.tx.send_modify(|n| *n += 1);
        true
    }

    /// Samples every [`SAMPLE`] for as long as PID 1 runs.
    pub async fn run(self) {
        if read_rtc(&self.sys).is_none() {
            log::warn!(
                "vip: no readable real-time clock at {}: a pause of this node (a frozen VM) is noticed only through etcd",
                rtc_path(&self.sys).display()
            );
            return;
        }
        let mut tick = tokio::time::interval(SAMPLE);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.paused_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (RTC seconds, monotonic ms, the pause it reveals in whole seconds).
    type Sample = (u64, u64, Option<u64>);

    #[test]
    fn table() {
        let ms = Duration::from_millis;
        let cases: Vec<(&str, Vec<Sample>)> = vec![
            (
                "steady, crossing second boundaries",
                (0..20)
                    .map(|i| (1000 + (i * 500 + 300) / 1000, i * 500, None))
                    .collect(),
            ),
            (
                "a 12 s pause",
                vec![(1000, 0, None), (1000, 500, None), (1013, 1000, Some(12))],
            ),
            (
                "a 2.5 s pause (always caught)",
                vec![(1000, 900, None), (1003, 1400, Some(2))],
            ),
            (
                "half a second: missed",
                vec![(1000, 0, None), (1001, 500, None)],
            ),
            (
                "RTC set back: the new base, no pause",
                vec![
                    (1000, 0, None),
                    (900, 500, None),
                    (900, 1000, None),
                    (901, 1500, None),
                ],
            ),
            (
                "after a pause the new base holds",
                vec![
                    (1000, 0, None),
                    (1010, 500, Some(9)),
                    (1010, 1000, None),
                    (1011, 1500, None),
                ],
            ),
        ];
        for (name, samples) in cases {
            let mut d = Detector::default();
            for (i, (rtc, mono, want)) in samples.into_iter().enumerate() {
                let got = d.sample(rtc, ms(mono)).map(|p| p.as_secs());
                assert_eq!(got, want, "{name}: sample {i}");
            }
        }
    }

    #[test]
    fn reads_the_rtc_under_a_root() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(read_rtc(t.path()), None);
        let dir = t.path().join("class/rtc/rtc0");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("since_epoch"), "1795000000\n").unwrap();
        assert_eq!(read_rtc(t.path()), Some(1_795_000_000));
    }
}
