//! Network links. Naming, selectors and configuration build on this.

pub mod apply;
pub mod cel;
pub mod dhcp;
pub mod dns;
pub mod etc;
pub mod ethtool;
pub mod ipcfg;
pub mod manager;
pub mod naming;
pub mod plan;
pub mod rename;
pub mod routes;
pub mod rtnl;
pub mod selector;
pub mod spec;
pub mod sysfs;

use std::path::Path;

/// Talos's default metric for static and DHCP routes
/// (`DefaultRouteMetric` in pkg/machinery/nethelpers), so that routes with
/// the usual smaller metrics win.
pub const DEFAULT_ROUTE_METRIC: u32 = 1024;

/// Names of the links the kernel has, from `<sys_root>/class/net`, sorted.
pub fn link_names(sys_root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(sys_root.join("class/net"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// True when the kernel has an IPv4 route through a link other than
/// loopback (`<proc_root>/net/route`, proc(5)): a link has a usable address,
/// so a config URL can be tried.
pub fn has_ipv4_route(proc_root: &Path) -> bool {
    std::fs::read_to_string(proc_root.join("net/route"))
        .map(|t| {
            t.lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().next())
                .any(|iface| iface != "lo")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_from_fixture() {
        let t = tempfile::tempdir().unwrap();
        for l in ["lo", "eth1", "eth0"] {
            std::fs::create_dir_all(t.path().join("class/net").join(l)).unwrap();
        }
        assert_eq!(link_names(t.path()), vec!["eth0", "eth1", "lo"]);
        assert!(link_names(Path::new("/nonexistent")).is_empty());
    }

    #[test]
    fn ipv4_route_table() {
        let header =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";
        let cases = [
            ("", false),
            (
                "lo\t0000007F\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n",
                false,
            ),
            (
                "eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
                true,
            ),
        ];
        for (rows, want) in cases {
            let t = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(t.path().join("net")).unwrap();
            std::fs::write(t.path().join("net/route"), format!("{header}{rows}")).unwrap();
            assert_eq!(has_ipv4_route(t.path()), want, "{rows}");
        }
        assert!(!has_ipv4_route(Path::new("/nonexistent")));
    }
}
