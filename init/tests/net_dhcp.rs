//! Host integration: Keel's DHCPv4 client (packet socket, UDP socket,
//! rtnetlink) against a real dnsmasq. Each DHCP case builds two network
//! namespaces joined by a veth pair: dnsmasq serves on one end, the runner
//! runs on the other on the test thread (which enters that namespace).
//! The server needs a namespace of its own: with both ends in one, the
//! kernel would deliver the client's unicast renewals to the server's
//! address over loopback instead of the veth. Needs root and
//! `/usr/sbin/dnsmasq` (Debian's dnsmasq-base).
//!
//! dnsmasq's shortest lease is two minutes, so renewal is made quick with
//! T1/T2 options (RFC 2132 9.11, 9.12), which dnsmasq sends as configured.
//! Expiry itself (two minutes of silence) is not waited for; the NAK case
//! removes a lease the same way (the client's `Expire` action).

mod common;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{block_on, log_to_stderr, Netns};
use keel::net::dhcp::{run_until, DhcpEvent, Lease, RunLink, RunOptions};
use keel::net::rtnl::Rtnl;
use tokio::sync::{mpsc, oneshot};

const DNSMASQ: &str = "/usr/sbin/dnsmasq";
const SERVER: &str = "10.77.0.1";

/// A dnsmasq in a namespace, killed on drop; its log is kept for
/// assertions and failure messages.
struct Dnsmasq {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Dnsmasq {
    fn start(ns: &Netns, dir: &Path, args: &[&str]) -> Dnsmasq {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name, DNSMASQ])
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                // DNS off: only DHCP is under test.
                "--port=0",
                "--bind-interfaces",
                "--interface=d0p",
                "--dhcp-authoritative",
                "--log-dhcp",
                "--log-facility=-",
                "--user=root",
                "--group=root",
            ])
            .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start dnsmasq");
        let log = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for r in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err) as _,
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            });
        }
        Dnsmasq { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits (without blocking the runtime) until a log line contains
    /// `needle`.
    async fn wait_for(&self, needle: &str) {
        for _ in 0..200 {
            if self.log().contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("dnsmasq never logged {needle:?}:\n{}", self.log());
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Server and client namespaces joined by veth d0p (server, 10.77.0.1/24)
/// and d0 (client), both up.
fn topology(tag: &str) -> (Netns, Netns) {
    let srv = Netns::new(&format!("{tag}s"));
    let cli = Netns::new(&format!("{tag}c"));
    cli.ip(&[
        "link", "add", "d0", "type", "veth", "peer", "name", "d0p", "netns", &srv.name,
    ]);
    srv.ip(&["addr", "add", &format!("{SERVER}/24"), "dev", "d0p"]);
    srv.ip(&["link", "set", "d0p", "up"]);
    cli.ip(&["link", "set", "d0", "up"]);
    (srv, cli)
}

/// The next event, or a failure that shows the server's log.
async fn next(rx: &mut mpsc::UnboundedReceiver<DhcpEvent>, d: &Dnsmasq) -> DhcpEvent {
    match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
        Ok(Some(ev)) => ev,
        _ => panic!("no DHCP event within 30 s; dnsmasq:\n{}", d.log()),
    }
}

async fn bound(rx: &mut mpsc::UnboundedReceiver<DhcpEvent>, d: &Dnsmasq) -> Lease {
    match next(rx, d).await {
        DhcpEvent::Bound { link, lease } => {
            assert_eq!(link, "d0");
            lease
        }
        other => panic!("expected a lease, got {other:?}; dnsmasq:\n{}", d.log()),
    }
}

/// IPv4 addresses on d0 as (address, prefix length).
fn addresses(ns: &Netns) -> Vec<(String, u64)> {
    let j = ns.ip_json(&["-4", "addr", "show", "d0"]);
    j[0]["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    (
                        i["local"].as_str().unwrap().to_string(),
                        i["prefixlen"].as_u64().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// IPv4 routes on d0 as "dst via gateway metric N src S" lines (the
/// kernel's subnet route, protocol kernel, left out).
fn routes(ns: &Netns) -> Vec<String> {
    let j = ns.ip_json(&["-4", "route", "show", "dev", "d0"]);
    j.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["protocol"] != "kernel")
        .map(|r| {
            format!(
                "{} via {} metric {} src {}",
                r["dst"].as_str().unwrap(),
                r["gateway"].as_str().unwrap_or("link"),
                r["metric"].as_u64().unwrap_or(0),
                r["prefsrc"].as_str().unwrap_or("-"),
            )
        })
        .collect()
}

fn mtu(ns: &Netns) -> u64 {
    ns.ip_json(&["link", "show", "d0"])[0]["mtu"]
        .as_u64()
        .unwrap()
}

fn in_range(a: Ipv4Addr, lo: u8, hi: u8) -> bool {
    let o = a.octets();
    o[..3] == [10, 77, 0] && (lo..=hi).contains(&o[3])
}

fn link(rtnl_link: &keel::net::rtnl::Link) -> RunLink {
    RunLink {
        name: rtnl_link.name.clone(),
        ifindex: rtnl_link.index,
        mac: rtnl_link.mac.unwrap(),
    }
}

#[test]
fn lease_is_applied_renewed_and_released() {
    log_to_stderr();
    let (srv, cli) = topology("dhcp-renew");
    let dir = tempfile::tempdir().unwrap();
    let d = Dnsmasq::start(
        &srv,
        dir.path(),
        &[
            "--dhcp-range=10.77.0.50,10.77.0.59,255.255.255.0,2m",
            "--dhcp-option=option:router,10.77.0.1",
            "--dhcp-option=option:dns-server,10.77.0.53,10.77.0.54",
            "--dhcp-option=option:mtu,1400",
            "--dhcp-option=option:T1,3",
            "--dhcp-option=option:T2,100",
        ],
    );
    cli.enter();
    block_on(async {
        d.wait_for("DHCP, IP range").await;
        let rtnl = Rtnl::connect().unwrap();
        let l = rtnl.link("d0").await.unwrap().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run_until(
            link(&l),
            RunOptions {
                route_metric: Some(77),
                hostname: Some("keel-test".into()),
                client_id: keel::net::plan::ClientId::Mac,
            },
            rtnl,
            tx,
            async {
                let _ = stopped.await;
            },
        ));

        let lease = bound(&mut rx, &d).await;
        let a = lease.address;
        assert!(in_range(a, 50, 59), "{lease:?}");
        assert_eq!(lease.prefix, 24);
        assert_eq!(lease.server_id, SERVER.parse::<Ipv4Addr>().unwrap());
        assert_eq!(
            lease.dns,
            ["10.77.0.53", "10.77.0.54"].map(|s| s.parse::<Ipv4Addr>().unwrap())
        );
        assert_eq!(lease.t1, Duration::from_secs(3));
        assert_eq!(addresses(&cli), [(a.to_string(), 24)]);
        assert_eq!(
            routes(&cli),
            [format!("default via {SERVER} metric 77 src {a}")]
        );
        assert_eq!(mtu(&cli), 1400);

        // T1 = 3 s: a unicast renewal, acknowledged, is the second lease.
        let renewed = bound(&mut rx, &d).await;
        assert_eq!(renewed.address, a);
        assert_eq!(addresses(&cli), [(a.to_string(), 24)]);
        d.wait_for(&format!("DHCPACK(d0p) {a}")).await;
        let log = d.log();
        assert!(
            log.matches(&format!("DHCPREQUEST(d0p) {a}")).count() >= 2,
            "{log}"
        );
        let leases = std::fs::read_to_string(dir.path().join("leases")).unwrap();
        assert!(
            leases.contains(&a.to_string()) && leases.contains("keel-test"),
            "{leases}"
        );

        // Stop: RELEASE, then the address, route and MTU are undone.
        stop.send(()).unwrap();
        task.await.unwrap();
        assert_eq!(
            next(&mut rx, &d).await,
            DhcpEvent::Lost { link: "d0".into() }
        );
        assert_eq!(addresses(&cli), []);
        assert_eq!(routes(&cli), Vec::<String>::new());
        assert_eq!(mtu(&cli), 1500);
        d.wait_for(&format!("DHCPRELEASE(d0p) {a}")).await;
    });
}

#[test]
fn nak_removes_the_lease_and_the_client_starts_over() {
    log_to_stderr();
    let (srv, cli) = topology("dhcp-nak");
    let dir = tempfile::tempdir().unwrap();
    let first_dir = dir.path().join("first");
    let second_dir = dir.path().join("second");
    std::fs::create_dir_all(&first_dir).unwrap();
    std::fs::create_dir_all(&second_dir).unwrap();
    // Option 121 (RFC 3442): with it, option 3 is ignored, and the
    // default route comes from the 0.0.0.0/0 entry.
    let common = [
        "--dhcp-option=option:router,10.77.0.1",
        "--dhcp-option=option:classless-static-route,10.99.0.0/16,10.77.0.1,0.0.0.0/0,10.77.0.1",
        "--dhcp-option=option:T1,3",
        "--dhcp-option=option:T2,6",
    ];
    let mut args = vec!["--dhcp-range=10.77.0.50,10.77.0.59,255.255.255.0,2m"];
    args.extend(common);
    let first = Dnsmasq::start(&srv, &first_dir, &args);
    cli.enter();
    block_on(async move {
        first.wait_for("DHCP, IP range").await;
        let rtnl = Rtnl::connect().unwrap();
        let l = rtnl.link("d0").await.unwrap().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (_stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run_until(
            link(&l),
            RunOptions::default(),
            rtnl,
            tx,
            async {
                let _ = stopped.await;
            },
        ));
        let lease = bound(&mut rx, &first).await;
        let a = lease.address;
        assert!(in_range(a, 50, 59), "{lease:?}");
        assert!(lease.routers.is_empty(), "option 121 overrides option 3");
        let want = [
            format!("10.99.0.0/16 via {SERVER} metric 1024 src {a}"),
            format!("default via {SERVER} metric 1024 src {a}"),
        ];
        let mut got = routes(&cli);
        got.sort();
        assert_eq!(got, want);

        // A server that knows nothing of the lease and serves another
        // range refuses the renewal (dnsmasq: "address not available").
        drop(first);
        let mut args = vec!["--dhcp-range=10.77.0.100,10.77.0.109,255.255.255.0,2m"];
        args.extend(common);
        let second = Dnsmasq::start(&srv, &second_dir, &args);
        second.wait_for("DHCP, IP range").await;

        assert_eq!(
            next(&mut rx, &second).await,
            DhcpEvent::Lost { link: "d0".into() }
        );
        let lease = bound(&mut rx, &second).await;
        let b = lease.address;
        assert!(in_range(b, 100, 109), "{lease:?}");
        second.wait_for("DHCPNAK(d0p)").await;
        assert_eq!(addresses(&cli), [(b.to_string(), 24)]);
        let mut got = routes(&cli);
        got.sort();
        assert_eq!(
            got,
            [
                format!("10.99.0.0/16 via {SERVER} metric 1024 src {b}"),
                format!("default via {SERVER} metric 1024 src {b}"),
            ]
        );
        task.abort();
    });
}

/// Polls `f` for up to 10 s without blocking the runtime.
async fn eventually<T: PartialEq + std::fmt::Debug>(want: T, f: impl Fn() -> T) {
    let mut got = f();
    for _ in 0..100 {
        if got == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        got = f();
    }
    assert_eq!(got, want);
}

#[test]
fn link_down_up_restores_routes_and_removal_drops_the_lease() {
    log_to_stderr();
    let (srv, cli) = topology("dhcp-flap");
    let dir = tempfile::tempdir().unwrap();
    let d = Dnsmasq::start(
        &srv,
        dir.path(),
        &[
            "--dhcp-range=10.77.0.50,10.77.0.59,255.255.255.0,2m",
            "--dhcp-option=option:router,10.77.0.1",
        ],
    );
    cli.enter();
    block_on(async {
        d.wait_for("DHCP, IP range").await;
        let rtnl = Rtnl::connect().unwrap();
        let l = rtnl.link("d0").await.unwrap().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(keel::net::dhcp::run(
            link(&l),
            RunOptions::default(),
            rtnl,
            tx,
        ));
        let a = bound(&mut rx, &d).await.address;
        let default = vec![format!("default via {SERVER} metric 1024 src {a}")];
        assert_eq!(routes(&cli), default);

        // Down: the kernel flushes the routes through the link but keeps
        // the address; up again, the runner puts the routes back.
        cli.ip(&["link", "set", "d0", "down"]);
        eventually(Vec::<String>::new(), || routes(&cli)).await;
        cli.ip(&["link", "set", "d0", "up"]);
        eventually(default.clone(), || routes(&cli)).await;
        assert_eq!(addresses(&cli), [(a.to_string(), 24)]);

        // Removed: the lease is reported lost.
        cli.ip(&["link", "del", "d0"]);
        assert_eq!(
            next(&mut rx, &d).await,
            DhcpEvent::Lost { link: "d0".into() }
        );
        task.abort();
    });
}

/// `Rtnl::del_route`, which the runner uses to take back routes a renewal
/// no longer has: it removes exactly the route it names, and a route that
/// is already gone is success.
#[test]
fn del_route_removes_exactly_its_route() {
    let ns = Netns::new("dhcp-delroute");
    ns.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d0p"]);
    ns.ip(&["link", "set", "d0", "up"]);
    ns.ip(&["addr", "add", "10.78.0.2/24", "dev", "d0"]);
    ns.enter();
    block_on(async {
        let rtnl = Rtnl::connect().unwrap();
        let oif = rtnl.link("d0").await.unwrap().unwrap().index;
        let spec = |metric| keel::net::rtnl::RouteSpec {
            dest: None,
            gateway: Some("10.78.0.1".parse().unwrap()),
            source: Some("10.78.0.2".parse().unwrap()),
            metric: Some(metric),
            mtu: None,
            oif,
        };
        rtnl.add_route(&spec(77)).await.unwrap();
        rtnl.add_route(&spec(78)).await.unwrap();
        rtnl.del_route(&spec(77)).await.unwrap();
        rtnl.del_route(&spec(77)).await.unwrap();
    });
    assert_eq!(
        routes(&ns),
        ["default via 10.78.0.1 metric 78 src 10.78.0.2"]
    );
}
