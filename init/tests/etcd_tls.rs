//! Host integration: a 3-member etcd cluster with mutual TLS on peers and
//! clients, certificates made by the test (rcgen), supervised by
//! `keel::etcd::Supervisor` on 127.0.0.21-23 with the real etcd (the image's).
//! The members reach Healthy (so Keel's own probe authenticates with the
//! peer certificate), the PKI dir is private, a client with the right
//! certificate reads and writes, and clients without one (or without TLS)
//! are refused. Its own test binary: the reaper owns `waitpid(-1)` for the
//! whole process.

mod common;
mod etcd_support;

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use etcd_support::*;
use keel::etcd::health::Health;
use keel::etcd::pki;
use keel::supervise::Reaper;

async fn read(endpoint: &str, opts: ConnectOptions) -> Result<(), String> {
    let opts = opts
        .with_timeout(Duration::from_secs(3))
        .with_connect_timeout(Duration::from_secs(3));
    let mut c = Client::connect([endpoint], Some(opts))
        .await
        .map_err(|e| e.to_string())?;
    let r = tokio::time::timeout(Duration::from_secs(5), c.get("k", None)).await;
    match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

#[test]
fn mtls_cluster_refuses_clients_without_certificates() {
    require_etcd();
    common::log_to_stderr();
    let tmp = tempfile::Builder::new()
        .prefix("keel-etcd-tls-")
        .tempdir_in("/tmp")
        .unwrap();
    let root = tmp.path().to_owned();
    let t0 = Instant::now();

    common::block_on(async move {
        let reaper = Reaper::start().unwrap();
        let specs = specs(3, 20, 32380, 32379, 32370);
        let certs = make_pki(&specs);
        let plans: Vec<_> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (data, pki) = dirs(&root, s);
                plan(&yaml(&specs, i, "keel-tls", Some(&certs)), s, &data, &pki)
            })
            .collect();
        assert!(plans[0].local_endpoint.starts_with("https://"));
        let sups: Vec<_> = plans.iter().map(|p| start(&reaper, p.clone())).collect();
        for (i, s) in sups.iter().enumerate() {
            wait_health(
                s,
                Health::Healthy,
                Duration::from_secs(30),
                &format!("m{}", i + 1),
            )
            .await;
        }
        eprintln!("=== healthy after {:.1} s", t0.elapsed().as_secs_f64());

        // The PKI dir: 0700, files 0600, no CA key.
        let dir = &plans[0].pki_dir;
        assert_eq!(std::fs::metadata(dir).unwrap().mode() & 0o777, 0o700);
        for name in [
            pki::CA_CRT,
            pki::PEER_CRT,
            pki::PEER_KEY,
            pki::SERVER_CRT,
            pki::SERVER_KEY,
        ] {
            let m = std::fs::metadata(dir.join(name)).unwrap();
            assert_eq!(m.mode() & 0o777, 0o600, "{name}");
        }
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 5);
        // Key material never reaches the log (nor etcd's own output).
        let key_line = certs.members[0].0 .1.lines().nth(1).unwrap().to_owned();
        assert!(sups
            .iter()
            .all(|s| s.output().iter().all(|l| !l.contains(&key_line))));

        let ca = Certificate::from_pem(&certs.ca);
        let ((crt, key), _) = &certs.members[1];
        let with_cert = ConnectOptions::new().with_tls(
            TlsOptions::new()
                .ca_certificate(ca.clone())
                .identity(Identity::from_pem(crt, key)),
        );
        let without_cert = ConnectOptions::new().with_tls(TlsOptions::new().ca_certificate(ca));
        // Through the node address of m2 and the loopback one of m1.
        let node_endpoint = format!("https://{}:{}", specs[1].ip, specs[1].client_port);
        let cases: Vec<(&str, String, ConnectOptions, bool)> = vec![
            (
                "client certificate, node address",
                node_endpoint.clone(),
                with_cert.clone(),
                true,
            ),
            (
                "client certificate, loopback",
                plans[0].local_endpoint.clone(),
                with_cert,
                true,
            ),
            (
                "no client certificate",
                node_endpoint.clone(),
                without_cert.clone(),
                false,
            ),
            (
                "no client certificate, loopback",
                plans[0].local_endpoint.clone(),
                without_cert,
                false,
            ),
            (
                "no TLS at all",
                node_endpoint.replace("https://", "http://"),
                ConnectOptions::new(),
                false,
            ),
        ];
        for (what, endpoint, opts, ok) in cases {
            let r = read(&endpoint, opts).await;
            assert_eq!(r.is_ok(), ok, "{what} ({endpoint}): {r:?}");
            eprintln!("=== {what}: {r:?}");
        }
        for s in &sups {
            s.stop().await;
        }
        eprintln!("=== stopped after {:.1} s", t0.elapsed().as_secs_f64());
    });
    drop(tmp);
}
