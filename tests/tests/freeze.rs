//! End to end under QEMU: the VIP holder frozen (QMP `stop`) for longer
//! than twice the TTL, then resumed (`cont`). The switch is the observer:
//! it sends an ARP probe for the VIP every 50 ms throughout and records
//! every frame.
//!
//! - another node takes the VIP while the holder is frozen;
//! - after the resume, the old holder never claims the VIP again: no ARP
//!   reply and no gratuitous ARP with the VIP as sender from its MAC —
//!   neither for the probes queued while it was frozen nor for new ones,
//!   nor a refresh announcement (docs/ARCHITECTURE.md, "The VIP");
//! - it says on its console that it noticed the pause and dropped the VIP.

use std::time::{Duration, Instant};

use keel_switch::{Frame, MacAddr, WhoHas};
use keel_tests::cluster::{l2_mac, one_cluster, Cluster, Spec, VIP};

const TTL: u32 = 5;
const FREEZE: Duration = Duration::from_secs(12);
const AFTER: Duration = Duration::from_secs(10);
const PROBE: Duration = Duration::from_millis(50);

fn spec() -> Spec {
    Spec {
        vip_ttl: Some(TTL),
        ..Spec::peer()
    }
}

fn mac_of(n: usize) -> MacAddr {
    l2_mac(n).parse().unwrap()
}

/// Probes every 50 ms for `d`.
fn claims_of(frames: &[Frame]) -> Vec<(Instant, MacAddr)> {
    keel_switch::claims(frames, VIP)
}

/// Probes every 50 ms for `d`.
fn probe_for(c: &Cluster, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        WhoHas::new(VIP, PROBE).macs(&c.switch);
    }
}

#[test]
fn a_frozen_holder_never_claims_the_vip_after_it_resumes() {
    let _one = one_cluster();
    let c = Cluster::start([spec(), spec(), spec()]);
    let macs = WhoHas::new(VIP, Duration::from_millis(500))
        .tries(60)
        .macs(&c.switch);
    let h = match macs[..] {
        [m] => (1..=3).find(|&n| mac_of(n) == m).unwrap(),
        _ => c.fail(&format!("want exactly one MAC for {VIP}, got {macs:?}")),
    };
    // Past the announcement burst, so a refresh may fall right after the
    // resume.
    probe_for(&c, Duration::from_secs(3));

    let frozen_at = Instant::now();
    c.ok(c.freeze(h, true));
    probe_for(&c, FREEZE);
    let resumed_at = Instant::now();
    c.ok(c.freeze(h, false));
    probe_for(&c, AFTER);

    let during = claims_of(&c.switch.frames_since(frozen_at));
    let new = during
        .iter()
        .find(|(at, m)| *at < resumed_at && *m != mac_of(h))
        .copied();
    let Some((took_at, new_mac)) = new else {
        c.fail(&format!(
            "nobody took {VIP} while node{h} was frozen for {FREEZE:?}"
        ))
    };
    eprintln!(
        "node{h} frozen; {new_mac} claimed {VIP} after {:.1} s",
        (took_at - frozen_at).as_secs_f64()
    );
    let stale: Vec<f64> = during
        .iter()
        .filter(|(at, m)| *at >= resumed_at && *m == mac_of(h))
        .map(|(at, _)| (*at - resumed_at).as_secs_f64())
        .collect();
    if !stale.is_empty() {
        c.fail(&format!(
            "node{h} claimed {VIP} after its resume, at {stale:?} s, while {new_mac} held it"
        ));
    }
    let after: Vec<MacAddr> = during
        .iter()
        .filter(|(at, _)| *at >= resumed_at + Duration::from_secs(2))
        .map(|(_, m)| *m)
        .collect();
    if after.iter().any(|m| *m != new_mac) || after.is_empty() {
        c.fail(&format!(
            "after the resume want only {new_mac} answering, got {after:?}"
        ));
    }
    c.wait(h, 0, "was paused for about", Duration::from_secs(30));
    for l in c.log(h).lines().filter(|l| l.contains("vip")) {
        eprintln!("node{h}: {l}");
    }
    c.wait(
        h,
        0,
        "vip 10.5.0.100: released from",
        Duration::from_secs(30),
    );
}
