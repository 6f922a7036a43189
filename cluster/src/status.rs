//! A node's state as its serial console tells it: the `keel:` lines PID 1
//! writes to /dev/kmsg (boot phases, link names, etcd health, VIP role),
//! read from the console log QEMU writes.

use std::fmt;

/// What the status view shows for one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStatus {
    /// The last boot or shutdown milestone: `booting`, `modules`, `links`,
    /// `config`, `ready`, `shutting down`, `off`.
    pub phase: String,
    /// Link names Keel gave the NICs.
    pub links: Vec<String>,
    /// Whether the network config is fully applied.
    pub configured: bool,
    /// etcd's health: `-` (not started), `starting`, `healthy`, …
    pub etcd: String,
    /// `holder`, `follower (held by …)`, `released`, `waiting`, or `-`.
    pub vip: String,
}

impl NodeStatus {
    /// Reads a console log from the start of the current boot.
    pub fn parse(console: &str) -> NodeStatus {
        let mut s = NodeStatus {
            phase: "booting".into(),
            etcd: "-".into(),
            vip: "-".into(),
            ..NodeStatus::default()
        };
        for line in console.lines() {
            if line.contains("reboot: Power down") || line.contains("reboot: Restarting system") {
                s.phase = "off".into();
            }
            let Some(msg) = line.split_once("keel: ").map(|(_, m)| m.trim_end()) else {
                continue;
            };
            if let Some(rest) = msg.strip_prefix("phase ") {
                if let Some((name, _)) = rest.split_once(" done") {
                    s.phase = name.to_string();
                }
            } else if msg.starts_with("ready in") {
                s.phase = "ready".into();
            } else if msg.starts_with("shutdown: ") && msg.contains("received") {
                s.phase = "shutting down".into();
            } else if let Some(rest) = msg.strip_prefix("network: link ") {
                // `network: link eth0 → enp0s1: candidates …`
                if let Some(name) = rest.split(" → ").nth(1).and_then(|r| r.split(':').next()) {
                    if !s.links.iter().any(|l| l == name) {
                        s.links.push(name.to_string());
                    }
                }
            } else if msg.starts_with("network: all links configured") {
                s.configured = true;
            } else if msg.starts_with("etcd: starting member") {
                s.etcd = "starting".into();
            } else if msg.starts_with("etcd: not bootstrapped; waiting") {
                s.etcd = "waiting".into();
            } else if let Some(rest) = msg.strip_prefix("etcd is ") {
                let rest = rest.strip_prefix("a ").unwrap_or(rest);
                s.etcd = rest.split([' ', ':']).next().unwrap_or(rest).to_string();
            } else if msg.starts_with("etcd stopped") {
                s.etcd = "stopped".into();
            } else if let Some(rest) = msg.strip_prefix("vip ") {
                let Some((_, what)) = rest.split_once(": ") else {
                    continue;
                };
                if what.starts_with("holder on") {
                    s.vip = "holder".into();
                } else if let Some(by) = what.strip_prefix("follower, held by ") {
                    s.vip = format!("follower (held by {by})");
                } else if what.starts_with("released") {
                    s.vip = "released".into();
                } else if what.starts_with("waiting") && s.vip != "holder" {
                    s.vip = "waiting".into();
                } else if what.starts_with("campaigning") && s.vip == "-" {
                    s.vip = "campaigning".into();
                }
            }
        }
        s
    }
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let links = if self.links.is_empty() {
            "-".to_string()
        } else {
            self.links.join(",")
        };
        let net = if self.configured { "configured" } else { "…" };
        write!(
            f,
            "{:<13} links {links} ({net})  etcd {:<9} vip {}",
            self.phase, self.etcd, self.vip
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines() {
        let boot = "\
[    0.000000] Linux version 6.1.0
[    1.000000] keel: phase mounts done in 3 ms
[    2.100000] keel: phase modules done in 700 ms: 15 modules
[    2.200000] keel: network: link eth0 → enp0s1: candidates [path enp0s1], driver virtio_net
[    2.300000] keel: phase links done in 150 ms: 1 link
[    2.600000] keel: phase config done in 200 ms: loaded from label KEEL-CONFIG
[    2.700000] keel: network: all links configured for the machine config (1 links) in 90 ms
[    2.800000] keel: ready in 1200 ms (PID 1 RSS 6000 kB)
[    2.900000] keel: etcd: starting member node1
[    3.000000] keel: vip 10.5.0.100: campaigning on enp0s1 as node1/node1 (TTL 5 s)
";
        let healthy = "[    5.000000] keel: etcd is healthy (was starting)\n";
        let waiting = "[    3.100000] keel: etcd: not bootstrapped; waiting for a bootstrap request or a member to join through 10.5.0.100:2379 (VIP)\n";
        let learner = "[    4.000000] keel: etcd is a learner (was starting): a non-voting member catching up\n";
        let holder =
            "[    6.000000] keel: vip 10.5.0.100: holder on enp0s1 (this node: node1/node1)\n";
        let follower = "[    6.000000] keel: vip 10.5.0.100: follower, held by node2/node2\n";
        let off = "[    9.000000] keel: shutdown: power button received, going to power off\n[    9.000100] keel: vip 10.5.0.100: released from enp0s1 after 3.0 s: shutting down\n[   10.000000] keel: etcd stopped in 200 ms\n[   11.000000] reboot: Power down\n";
        // (console, phase, etcd, vip)
        let cases = [
            ("", "booting", "-", "-"),
            (boot, "ready", "starting", "campaigning"),
            (
                &format!("{boot}{waiting}"),
                "ready",
                "waiting",
                "campaigning",
            ),
            (
                &format!("{boot}{learner}"),
                "ready",
                "learner",
                "campaigning",
            ),
            (
                &format!("{boot}{healthy}"),
                "ready",
                "healthy",
                "campaigning",
            ),
            (
                &format!("{boot}{healthy}{holder}"),
                "ready",
                "healthy",
                "holder",
            ),
            (
                &format!("{boot}{healthy}{follower}"),
                "ready",
                "healthy",
                "follower (held by node2/node2)",
            ),
            (
                &format!("{boot}{healthy}{holder}{off}"),
                "off",
                "stopped",
                "released",
            ),
        ];
        for (console, phase, etcd, vip) in cases {
            let s = NodeStatus::parse(console);
            assert_eq!(
                (s.phase.as_str(), s.etcd.as_str(), s.vip.as_str()),
                (phase, etcd, vip),
                "{console}"
            );
        }
        let s = NodeStatus::parse(boot);
        assert_eq!(s.links, ["enp0s1"]);
        assert!(s.configured);
    }
}
