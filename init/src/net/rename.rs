//! Giving links their predictable names, as systemd-udevd does with
//! `NamePolicy=onboard slot path` then `mac` (see [`super::naming`]), and
//! recording the kernel name and every other candidate as alternative names
//! (IFLA_ALT_IFNAME, ip-link(8) `property add altname`), so config can name
//! a link any of those ways.
//!
//! The kernel refuses to rename a link that is up (`dev_change_name()` in
//! net/core/dev.c returns EBUSY), so only links that are down are renamed:
//! at boot every NIC is down until Keel brings it up. A clash (the target
//! name is held by another link that is itself being renamed, e.g. after a
//! NIC swap) is resolved by moving the links through temporary names first,
//! as udev does with its `rename<N>` names.

use std::collections::BTreeSet;

use super::naming;
use super::rtnl::{Rtnl, RtnlError};
use super::sysfs::LinkFacts;

/// One rename, in execution order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub from: String,
    pub to: String,
}

/// The renames to run and the targets that cannot be had, with why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenamePlan {
    pub steps: Vec<Step>,
    /// (link, why it keeps its name).
    pub refused: Vec<(String, String)>,
}

/// A temporary name no predictable or kernel name can take: the kernel's
/// own names are `eth<N>`, udev's are `en…`.
fn temp_name(ifindex: u32) -> String {
    format!("keeltmp{ifindex}")
}

/// Plans the renames for `links` (only those with a device: virtual links
/// keep their names). `up` names links that are up, which cannot be
/// renamed. Pure, so clash handling is tested as a table.
pub fn plan_renames(links: &[LinkFacts], ifnames: bool, up: &BTreeSet<String>) -> RenamePlan {
    let mut out = RenamePlan::default();
    let mut moves: Vec<(&LinkFacts, String)> = Vec::new();
    let mut taken: BTreeSet<String> = BTreeSet::new();
    for l in links.iter().filter(|l| l.device.is_some()) {
        let Some(target) = naming::chosen_name(l, ifnames) else {
            continue;
        };
        if target == l.name {
            continue;
        }
        if up.contains(&l.name) {
            out.refused.push((
                l.name.clone(),
                format!("is up, cannot be renamed to {target} (the kernel refuses: EBUSY)"),
            ));
            continue;
        }
        if !taken.insert(target.clone()) {
            out.refused.push((
                l.name.clone(),
                format!("{target} is already the name chosen for another link"),
            ));
            continue;
        }
        moves.push((l, target));
    }
    // A target held by a link that stays where it is: refuse.
    let moving: BTreeSet<&str> = moves.iter().map(|(l, _)| l.name.as_str()).collect();
    moves.retain(|(l, target)| {
        let blocked = links
            .iter()
            .any(|o| o.name == *target && !moving.contains(o.name.as_str()));
        if blocked {
            out.refused.push((
                l.name.clone(),
                format!("{target} is the name of another link that keeps its name"),
            ));
        }
        !blocked
    });
    let clash = moves
        .iter()
        .any(|(_, target)| moves.iter().any(|(o, _)| &o.name == target));
    if clash {
        for (l, _) in &moves {
            out.steps.push(Step {
                from: l.name.clone(),
                to: temp_name(l.ifindex),
            });
        }
        for (l, target) in &moves {
            out.steps.push(Step {
                from: temp_name(l.ifindex),
                to: target.clone(),
            });
        }
    } else {
        for (l, target) in moves {
            out.steps.push(Step {
                from: l.name.clone(),
                to: target,
            });
        }
    }
    out
}

/// The alternative names a link should carry: its kernel name (when it was
/// renamed) and every predictable candidate other than its current name.
pub fn alt_names(facts: &LinkFacts, kernel_name: &str, current: &str) -> Vec<String> {
    let mut names = vec![kernel_name.to_owned()];
    names.extend(naming::candidates(facts).all().map(|(_, n)| n.to_owned()));
    let mut seen = BTreeSet::new();
    names.retain(|n| n != current && seen.insert(n.clone()));
    names
}

/// Renames the links of `links` (sysfs facts, kernel names) that need it,
/// then adds alternative names. Returns one log line per change and per
/// refusal; errors name the link.
pub async fn apply(
    rtnl: &Rtnl,
    links: &[LinkFacts],
    ifnames: bool,
) -> (Vec<String>, Vec<RtnlError>) {
    let mut log = Vec::new();
    let mut errors = Vec::new();
    let current = match rtnl.links().await {
        Ok(l) => l,
        Err(e) => return (log, vec![e]),
    };
    let up: BTreeSet<String> = current
        .iter()
        .filter(|l| l.up)
        .map(|l| l.name.clone())
        .collect();
    let plan = plan_renames(links, ifnames, &up);
    for (name, why) in &plan.refused {
        log.push(format!("{name}: keeps its name: {why}"));
    }
    for s in &plan.steps {
        match rtnl.rename(&s.from, &s.to).await {
            Ok(()) if !s.to.starts_with("keeltmp") => {
                log.push(format!("{}: renamed to {}", s.from, s.to))
            }
            Ok(()) => {}
            Err(e) => errors.push(e),
        }
    }
    // Final names by ifindex, for the altnames.
    let after = rtnl.links().await.unwrap_or_default();
    for l in links.iter().filter(|l| l.device.is_some()) {
        let Some(now) = after.iter().find(|a| a.index == l.ifindex) else {
            continue;
        };
        let wanted = alt_names(l, &l.name, &now.name);
        let missing: Vec<&str> = wanted
            .iter()
            .map(String::as_str)
            .filter(|w| !now.alt_names.iter().any(|a| a == w))
            .collect();
        if missing.is_empty() {
            continue;
        }
        match rtnl.add_alt_names(&now.name, &missing).await {
            Ok(()) => log.push(format!(
                "{}: alternative names {}",
                now.name,
                missing.join(", ")
            )),
            Err(e) => errors.push(e),
        }
    }
    (log, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::sysfs::{DeviceFacts, PciFacts};

    /// A virtio NIC on PCI bus 0, slot `slot` (q35: `enp0s<slot>`).
    fn nic(name: &str, ifindex: u32, slot: u32) -> LinkFacts {
        LinkFacts {
            name: name.into(),
            ifindex,
            arphrd: 1,
            address: Some(format!("52:54:00:00:00:{slot:02x}")),
            addr_assign_type: Some(0),
            device: Some(DeviceFacts {
                bus_path: format!("0000:00:{slot:02x}.0"),
                pci: Some(PciFacts {
                    slot_name: format!("0000:00:{slot:02x}.0"),
                    slot,
                    direct: true,
                    header_multifunction: Some(false),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn virtual_link(name: &str, ifindex: u32) -> LinkFacts {
        LinkFacts {
            name: name.into(),
            ifindex,
            arphrd: 1,
            kind: Some("bond".into()),
            ..Default::default()
        }
    }

    fn steps(p: &RenamePlan) -> Vec<String> {
        p.steps
            .iter()
            .map(|s| format!("{}>{}", s.from, s.to))
            .collect()
    }

    #[test]
    fn rename_table() {
        struct Case {
            what: &'static str,
            links: Vec<LinkFacts>,
            ifnames: bool,
            up: &'static [&'static str],
            steps: &'static [&'static str],
            refused: &'static [&'static str],
        }
        let cases = [
            Case {
                what: "two NICs get path names",
                links: vec![nic("eth0", 2, 2), nic("eth1", 3, 3)],
                ifnames: true,
                up: &[],
                steps: &["eth0>enp0s2", "eth1>enp0s3"],
                refused: &[],
            },
            Case {
                what: "net.ifnames=0 keeps kernel names",
                links: vec![nic("eth0", 2, 2), nic("eth1", 3, 3)],
                ifnames: false,
                up: &[],
                steps: &[],
                refused: &[],
            },
            Case {
                what: "already named: nothing to do; virtual links are never renamed",
                links: vec![nic("enp0s2", 2, 2), virtual_link("bond0", 9)],
                ifnames: true,
                up: &[],
                steps: &[],
                refused: &[],
            },
            Case {
                what: "a link that is up is not renamed",
                links: vec![nic("eth0", 2, 2), nic("eth1", 3, 3)],
                ifnames: true,
                up: &["eth1"],
                steps: &["eth0>enp0s2"],
                refused: &["eth1"],
            },
            Case {
                what:
                    "swap: each target held by the other moving link goes through temporary names",
                links: vec![nic("enp0s3", 2, 2), nic("enp0s2", 3, 3)],
                ifnames: true,
                up: &[],
                steps: &[
                    "enp0s3>keeltmp2",
                    "enp0s2>keeltmp3",
                    "keeltmp2>enp0s2",
                    "keeltmp3>enp0s3",
                ],
                refused: &[],
            },
            Case {
                what: "target held by a link that stays: refused",
                links: vec![nic("eth0", 2, 2), virtual_link("enp0s2", 7)],
                ifnames: true,
                up: &[],
                steps: &[],
                refused: &["eth0"],
            },
        ];
        for c in cases {
            let up = c.up.iter().map(|s| s.to_string()).collect();
            let p = plan_renames(&c.links, c.ifnames, &up);
            assert_eq!(steps(&p), c.steps, "{}", c.what);
            let refused: Vec<&str> = p.refused.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(refused, c.refused, "{}", c.what);
        }
    }

    #[test]
    fn alt_names_hold_kernel_name_and_other_candidates() {
        let l = nic("eth0", 2, 2);
        assert_eq!(alt_names(&l, "eth0", "enp0s2"), ["eth0", "enx525400000002"]);
        // net.ifnames=0: the predictable names become altnames.
        assert_eq!(alt_names(&l, "eth0", "eth0"), ["enp0s2", "enx525400000002"]);
    }
}
