//! Reading boot milestones off a serial console log, by the kernel's own
//! printk timestamps (`[    1.234567] ...`), so QEMU's start-up and the
//! host's load do not skew the numbers.

/// Milestones of one boot, in ms since the kernel started.
#[derive(Debug, Clone, PartialEq)]
pub struct BootMarks {
    pub init_ms: f64,
    pub modules_ms: f64,
    pub ready_ms: f64,
    pub rss_kb: u64,
}

/// The printk timestamp of a console line, in ms.
pub fn timestamp_ms(line: &str) -> Option<f64> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (ts, _) = rest.split_once(']')?;
    ts.trim().parse::<f64>().ok().map(|s| s * 1000.0)
}

fn first(log: &str, needle: &str) -> Option<(f64, String)> {
    log.lines()
        .find(|l| l.contains(needle))
        .and_then(|l| Some((timestamp_ms(l)?, l.to_string())))
}

/// Kernel start → `Run /init`, → modules phase done, → ready; and the RSS
/// from the ready line.
pub fn boot_marks(log: &str) -> Option<BootMarks> {
    let (init_ms, _) = first(log, "Run /init as init process")?;
    let (modules_ms, _) = first(log, "keel: phase modules done")?;
    let (ready_ms, line) = first(log, "keel: ready in")?;
    let rss_kb = line
        .split("PID 1 RSS ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(BootMarks {
        init_ms,
        modules_ms,
        ready_ms,
        rss_kb,
    })
}

/// Network milestones of one boot with a machine config, in ms.
#[derive(Debug, Clone, PartialEq)]
pub struct NetMarks {
    /// Kernel start → `Run /init`.
    pub init_ms: f64,
    /// How long the modules phase took (its own "done in N ms").
    pub modules_phase_ms: f64,
    /// How long the links phase took (naming + pre-config plan).
    pub links_phase_ms: f64,
    /// Kernel start → "network: all links configured for the machine
    /// config".
    pub configured_ms: f64,
}

impl NetMarks {
    /// /init → every link configured, minus the modules phase (module
    /// loading and driver probing, which depend on the hardware).
    pub fn init_to_configured_without_modules(&self) -> f64 {
        self.configured_ms - self.init_ms - self.modules_phase_ms
    }
}

/// The "done in N ms" duration of a `keel: phase <name> done in N ms` line.
fn phase_ms(log: &str, phase: &str) -> Option<f64> {
    let (_, line) = first(log, &format!("keel: phase {phase} done in "))?;
    line.split(" done in ")
        .nth(1)?
        .split(" ms")
        .next()?
        .parse()
        .ok()
}

pub fn net_marks(log: &str) -> Option<NetMarks> {
    let (init_ms, _) = first(log, "Run /init as init process")?;
    let (configured_ms, _) = first(
        log,
        "keel: network: all links configured for the machine config",
    )?;
    Some(NetMarks {
        init_ms,
        modules_phase_ms: phase_ms(log, "modules")?,
        links_phase_ms: phase_ms(log, "links")?,
        configured_ms,
    })
}

/// Panics, showing the whole log, unless every one of `wants` occurs in it.
pub fn assert_contains_all(log: &str, wants: &[&str]) {
    for want in wants {
        assert!(log.contains(want), "missing {want:?} in:\n{log}");
    }
}

/// Median of a non-empty sample (sorts it).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_table() {
        let cases = [
            ("[    1.234567] Run /init as init process", Some(1234.567)),
            ("[12345.000001] x", Some(12345000.001)),
            ("no timestamp", None),
            ("[bad] x", None),
        ];
        for (line, want) in cases {
            match (timestamp_ms(line), want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-6, "{line}: {g}"),
                (g, w) => assert_eq!(g, w, "{line}"),
            }
        }
    }

    #[test]
    fn marks_from_a_console_log() {
        let log = "\
[    0.000000] Linux version 6.1.0
[    1.900000] Run /init as init process
[    1.950000] keel: keel 0.1.0 started as PID 1, 1950 ms after kernel start
[    2.300000] keel: phase modules done in 350 ms: 17 loaded
[    2.310000] keel: ready in 360 ms (PID 1 RSS 2100 kB)
";
        let m = boot_marks(log).unwrap();
        assert_eq!(m.init_ms, 1900.0);
        assert_eq!(m.modules_ms, 2300.0);
        assert_eq!(m.ready_ms, 2310.0);
        assert_eq!(m.rss_kb, 2100);
        assert!(boot_marks("[ 1.0] Run /init as init process\n").is_none());
    }

    #[test]
    fn net_marks_from_a_console_log() {
        let log = "\
[    1.500000] Run /init as init process
[    2.000000] keel: phase modules done in 400 ms: 15 loaded
[    2.100000] keel: phase links done in 90 ms: 3 links
[    2.200000] keel: network: all links configured for the machine config (2 links) in 20 ms
";
        let m = net_marks(log).unwrap();
        assert_eq!(m.modules_phase_ms, 400.0);
        assert_eq!(m.links_phase_ms, 90.0);
        assert_eq!(m.init_to_configured_without_modules(), 300.0);
        assert!(net_marks("[ 1.0] Run /init as init process").is_none());
    }

    #[test]
    fn median_table() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }
}
