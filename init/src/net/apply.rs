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
use super::rtnl::{Link, RouteSpec, Rtnl, RtnlError};

/// What applying did: one line per change, and the errors.
#[derive(Debug, Default)]
pub struct Report {
    pub changes: Vec<String>,
    pub errors: Vec<ApplyError>,
}

/// One link that could not be (fully) configured, and where its
/// configuration came from.
#[derive(Debug, thiserror::Error)]
#[error("{link} ({origin}): {failure}")]
pub struct ApplyError {
    pub link: String,
    pub origin: String,
    #[source]
    pub failure: Failure,
}

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Rtnl(#[from] RtnlError),
    #[error("cannot set bond primary {primary} through {path}: {source}")]
    Primary {
        primary: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The links as the kernel last reported them: one rtnetlink dump per
/// apply, refreshed only after Keel created or enslaved a link (every
/// lookup by name would otherwise be a full dump, which adds up under
/// emulation).
struct Known(Vec<Link>);

impl Known {
    fn find(&self, name: &str) -> Option<&Link> {
        self.0
            .iter()
            .find(|l| l.name == name || l.alt_names.iter().any(|a| a == name))
    }

    fn need(&self, name: &str) -> Result<Link, RtnlError> {
        self.find(name)
            .cloned()
            .ok_or_else(|| RtnlError::NoSuchLink(name.to_owned()))
    }

    async fn refresh(&mut self, rtnl: &Rtnl) -> Result<(), RtnlError> {
        self.0 = rtnl.links().await?;
        Ok(())
    }
}

/// Applies every link of `plan`. `sys_root` is where the bond `primary`
/// attribute is written (bonding.rst: `/sys/class/net/<bond>/bonding/
/// primary`, which takes a member's name, rather than rtnetlink's
/// IFLA_BOND_PRIMARY, which needs a changelink request on a live bond).
pub async fn apply(rtnl: &Rtnl, plan: &Plan, sys_root: &Path) -> Report {
    let mut report = Report::default();
    let mut known = Known(Vec::new());
    if let Err(e) = known.refresh(rtnl).await {
        report.errors.push(ApplyError {
            link: "*".into(),
            origin: "list links".into(),
            failure: e.into(),
        });
        return report;
    }
    for lp in &plan.links {
        if let Err(failure) = apply_link(rtnl, &mut known, lp, sys_root, &mut report.changes).await
        {
            report.errors.push(ApplyError {
                link: lp.name.clone(),
                origin: lp.origin.clone(),
                failure,
            });
        }
    }
    report
}

async fn apply_link(
    rtnl: &Rtnl,
    known: &mut Known,
    lp: &LinkPlan,
    sys_root: &Path,
    changes: &mut Vec<String>,
) -> Result<(), Failure> {
    let name = lp.name.as_str();
    let existed = known.find(name).is_some();
    match &lp.create {
        Some(Create::Dummy) if !existed => {
            rtnl.ensure_dummy(name).await?;
            changes.push(format!("{name}: created dummy link"));
            known.refresh(rtnl).await?;
        }
        Some(Create::Vlan { parent, id, qinq }) => {
            // A VLAN carries nothing while its parent is down.
            let p = known.need(parent)?;
            if !p.up {
                rtnl.set_link_up(&p).await?;
                changes.push(format!("{parent}: up (parent of {name})"));
            }
            if !existed {
                rtnl.ensure_vlan(name, parent, *id, *qinq).await?;
                let mode = if *qinq { " (802.1ad)" } else { "" };
                changes.push(format!("{name}: created VLAN {id}{mode} on {parent}"));
                known.refresh(rtnl).await?;
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
                known.refresh(rtnl).await?;
            }
            let bond = known.need(name)?;
            let mut enslaved = false;
            for m in members {
                if known
                    .find(m)
                    .is_some_and(|l| l.controller != Some(bond.index))
                {
                    rtnl.enslave(m, name).await?;
                    changes.push(format!("{name}: enslaved {m}"));
                    enslaved = true;
                }
            }
            if enslaved {
                known.refresh(rtnl).await?;
            }
            if let Some(p) = primary {
                set_primary(sys_root, name, p, changes)?;
            }
        }
        _ => {}
    }
    let link = known.need(name)?;
    if let Some(mac) = lp.mac.filter(|m| link.mac != Some(*m)) {
        rtnl.set_link_mac(&link, mac).await?;
        let text: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
        changes.push(format!("{name}: MAC {}", text.join(":")));
    }
    if let Some(mtu) = lp.mtu {
        if link.mtu != Some(mtu) {
            rtnl.set_link_mtu(&link, mtu).await?;
            changes.push(format!("{name}: MTU {mtu}"));
        }
    }
    if lp.up && !link.up {
        rtnl.set_link_up(&link).await?;
        changes.push(format!("{name}: up"));
    } else if !lp.up && link.up {
        // Talos's `up: false`: configured, but administratively down.
        rtnl.set_link_down(&link).await?;
        changes.push(format!("{name}: down (up: false)"));
    }
    let have = rtnl.link_addresses(&link).await?;
    for &(ip, prefix) in &lp.addresses {
        if !have.contains(&(ip, prefix)) {
            let priority = lp
                .priorities
                .iter()
                .find(|(a, _)| *a == (ip, prefix))
                .map(|(_, p)| *p);
            rtnl.add_link_address_with(&link, ip, prefix, priority)
                .await?;
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
