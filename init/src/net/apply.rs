//! Carrying out a [`Plan`] over rtnetlink. Every step compares with what
//! the kernel has first (or relies on EEXIST being success, see
//! [`super::rtnl`]), so applying the same plan twice changes nothing and
//! reports no changes the second time.
//!
//! Order per link: create (dummy, VLAN, bond + enslave members), MTU, up,
//! addresses, routes. Routes come after addresses because the kernel
//! refuses a gateway that is not reachable through the link (ENETUNREACH,
//! fib_check_nh() in net/ipv4/fib_semantics.c). One link's failure does not
//! stop the others.

use std::path::Path;

use super::plan::{Create, LinkPlan, Plan};
use super::rtnl::{RouteSpec, Rtnl, RtnlError};

/// What applying did: one line per change, and the errors.
#[derive(Debug, Default)]
pub struct Report {
    pub changes: Vec<String>,
    pub errors: Vec<ApplyError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{link} ({origin}): {source}")]
    Rtnl {
        link: String,
        origin: String,
        #[source]
        source: RtnlError,
    },
    #[error("{link} ({origin}): cannot set bond primary {primary} through {path}: {source}")]
    Primary {
        link: String,
        origin: String,
        primary: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Applies every link of `plan`. `sys_root` is where the bond `primary`
/// attribute is written (bonding.rst: `/sys/class/net/<bond>/bonding/
/// primary`, which takes a member's name, rather than rtnetlink's
/// IFLA_BOND_PRIMARY, which needs a changelink request on a live bond).
pub async fn apply(rtnl: &Rtnl, plan: &Plan, sys_root: &Path) -> Report {
    let mut report = Report::default();
    for lp in &plan.links {
        if let Err(source) = apply_link(rtnl, lp, sys_root, &mut report.changes).await {
            report.errors.push(match source {
                Failure::Rtnl(source) => ApplyError::Rtnl {
                    link: lp.name.clone(),
                    origin: lp.origin.clone(),
                    source,
                },
                Failure::Primary {
                    primary,
                    path,
                    source,
                } => ApplyError::Primary {
                    link: lp.name.clone(),
                    origin: lp.origin.clone(),
                    primary,
                    path,
                    source,
                },
            });
        }
    }
    report
}

enum Failure {
    Rtnl(RtnlError),
    Primary {
        primary: String,
        path: String,
        source: std::io::Error,
    },
}

impl From<RtnlError> for Failure {
    fn from(e: RtnlError) -> Failure {
        Failure::Rtnl(e)
    }
}

async fn apply_link(
    rtnl: &Rtnl,
    lp: &LinkPlan,
    sys_root: &Path,
    changes: &mut Vec<String>,
) -> Result<(), Failure> {
    let name = lp.name.as_str();
    let found = rtnl.link(name).await?;
    let existed = found.is_some();
    match &lp.create {
        Some(Create::Dummy) if !existed => {
            rtnl.ensure_dummy(name).await?;
            changes.push(format!("{name}: created dummy link"));
        }
        Some(Create::Vlan { parent, id }) => {
            // A VLAN carries nothing while its parent is down.
            let p = rtnl
                .link(parent)
                .await?
                .ok_or_else(|| RtnlError::NoSuchLink(parent.clone()))?;
            if !p.up {
                rtnl.set_up(parent).await?;
                changes.push(format!("{parent}: up (parent of {name})"));
            }
            if !existed {
                rtnl.ensure_vlan(name, parent, *id).await?;
                changes.push(format!("{name}: created VLAN {id} on {parent}"));
            }
        }
        Some(Create::Bond {
            settings,
            members,
            primary,
        }) => {
            if !existed {
                rtnl.ensure_bond(name, settings).await?;
                changes.push(format!("{name}: created bond"));
            }
            let bond = rtnl
                .link(name)
                .await?
                .ok_or_else(|| RtnlError::NoSuchLink(name.to_owned()))?;
            for m in members {
                let member = rtnl.link(m).await?;
                if member.is_some_and(|l| l.controller != Some(bond.index)) {
                    rtnl.enslave(m, name).await?;
                    changes.push(format!("{name}: enslaved {m}"));
                }
            }
            if let Some(p) = primary {
                set_primary(sys_root, name, p, changes)?;
            }
        }
        _ => {}
    }
    let link = match (found, &lp.create) {
        (Some(l), None) => l,
        // Created or changed (bond members) above: look again.
        _ => rtnl
            .link(name)
            .await?
            .ok_or_else(|| RtnlError::NoSuchLink(name.to_owned()))?,
    };
    // One lookup per link: every rtnetlink lookup by name is a full dump
    // of the links, which adds up under emulation.
    if let Some(mtu) = lp.mtu {
        if link.mtu != Some(mtu) {
            rtnl.set_link_mtu(&link, mtu).await?;
            changes.push(format!("{name}: MTU {mtu}"));
        }
    }
    if !link.up {
        rtnl.set_link_up(&link).await?;
        changes.push(format!("{name}: up"));
    }
    let have = rtnl.link_addresses(&link).await?;
    for &(ip, prefix) in &lp.addresses {
        if !have.contains(&(ip, prefix)) {
            rtnl.add_link_address(&link, ip, prefix).await?;
            changes.push(format!("{name}: address {ip}/{prefix}"));
        }
    }
    for r in &lp.routes {
        let spec = RouteSpec {
            dest: r.dest,
            gateway: r.gateway,
            source: r.source,
            metric: Some(r.metric),
            mtu: r.mtu,
            oif: link.index,
        };
        // EEXIST is success, so this is idempotent, but it cannot tell a
        // new route from an old one; routes are logged by the caller from
        // the plan instead.
        rtnl.add_route(&spec).await?;
    }
    Ok(())
}

fn set_primary(
    sys_root: &Path,
    bond: &str,
    primary: &str,
    changes: &mut Vec<String>,
) -> Result<(), Failure> {
    let path = sys_root
        .join("class/net")
        .join(bond)
        .join("bonding/primary");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current.trim() == primary {
        return Ok(());
    }
    std::fs::write(&path, primary).map_err(|source| Failure::Primary {
        primary: primary.to_owned(),
        path: path.display().to_string(),
        source,
    })?;
    changes.push(format!("{bond}: primary {primary}"));
    Ok(())
}
