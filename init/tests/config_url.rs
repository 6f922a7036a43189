//! Host integration: the config URL source against local HTTP servers on
//! 127.0.0.1 (std TcpListener + threads, no extra crates).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel::cmdline::Cmdline;
use keel::config::source::pin::sha256_hex;
use keel::config::source::{
    load_once, Backoff, Env, Fetcher, LoadAttempt, SourceError, SourceKind, SourceSettings,
};

const CONFIG: &[u8] = b"version: v1alpha1\nmachine:\n  type: controlplane\n";

/// Request lines a server saw, in order.
type Seen = Arc<Mutex<Vec<String>>>;

/// Serves every connection on its own thread with `handler(request line,
/// stream)`. The accept thread lives until the test process exits.
fn server<F>(handler: F) -> (SocketAddr, Seen)
where
    F: Fn(&str, &mut BufReader<TcpStream>) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let handler = Arc::new(handler);
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (seen, handler) = (seen2.clone(), handler.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                if let Some(line) = read_head(&mut reader) {
                    seen.lock().unwrap().push(line.clone());
                    handler(&line, &mut reader);
                }
            });
        }
    });
    (addr, seen)
}

/// Reads a request head; returns its request line.
fn read_head(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
            break;
        }
    }
    Some(first.trim_end().to_string())
}

fn respond(reader: &mut BufReader<TcpStream>, status: &str, body: &[u8]) {
    let s = reader.get_mut();
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
    let _ = s.flush();
}

fn settings(line: &str) -> SourceSettings {
    SourceSettings::from_cmdline(&Cmdline::parse(line)).unwrap()
}

/// An environment with empty sysfs/dev trees: no partition to fall back to.
fn empty_env(dir: &std::path::Path, hostname: Option<&str>) -> Env {
    Env {
        sys_root: dir.join("sys"),
        dev_root: dir.join("dev"),
        run_dir: dir.join("run"),
        hostname: hostname.map(str::to_string),
    }
}

const T: Duration = Duration::from_secs(5);

#[test]
fn plain_fetch_and_status_errors() {
    let (addr, seen) = server(|line, r| {
        if line.starts_with("GET /cfg/node-1.yaml ") {
            respond(r, "200 OK", CONFIG)
        } else {
            respond(r, "404 Not Found", b"no")
        }
    });
    let s = settings("");
    let f = Fetcher::new(&s);
    let url = format!("http://{addr}/cfg/node-1.yaml");
    assert_eq!(f.fetch_once(&url, T).unwrap(), CONFIG);

    let e = f
        .fetch_once(&format!("http://{addr}/other"), T)
        .unwrap_err();
    assert!(matches!(e, SourceError::Status { status: 404, .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!("http://{addr}/other: server answered HTTP 404")
    );

    let e = f.clone().with_max_body(10).fetch_once(&url, T).unwrap_err();
    assert!(matches!(e, SourceError::TooLarge { limit: 10, .. }), "{e}");

    // The whole pipeline: cmdline → placeholder → fetch → origin.
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&format!(
        "talos.config=http://{addr}/cfg/${{hostname}}.yaml"
    ));
    match load_once(&s, &empty_env(dir.path(), Some("node-1")), true, T) {
        LoadAttempt::Loaded(f) => {
            assert_eq!(f.bytes, CONFIG);
            assert_eq!(f.origin, url);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        seen.lock().unwrap().first().map(String::as_str),
        Some("GET /cfg/node-1.yaml HTTP/1.1")
    );
}

#[test]
fn connection_refused_is_an_error() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = Fetcher::new(&settings(""))
        .fetch_once(&format!("http://127.0.0.1:{port}/c"), T)
        .unwrap_err();
    assert!(matches!(e, SourceError::Http { .. }), "{e}");
}

#[test]
fn retries_after_503_with_backoff() {
    let hits = Arc::new(AtomicUsize::new(0));
    let hits2 = hits.clone();
    let (addr, seen) = server(move |_, r| {
        if hits2.fetch_add(1, Ordering::SeqCst) < 2 {
            respond(r, "503 Service Unavailable", b"later")
        } else {
            respond(r, "200 OK", CONFIG)
        }
    });
    let f = Fetcher::new(&settings(""));
    let url = format!("http://{addr}/c");
    let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(50), 7);
    let mut errors = Vec::new();
    let body = loop {
        match f.fetch_once(&url, T) {
            Ok(b) => break b,
            Err(e) => {
                errors.push(e);
                assert!(errors.len() < 10, "never succeeded: {errors:?}");
                let d = backoff.next_delay();
                assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(50));
                std::thread::sleep(d);
            }
        }
    };
    assert_eq!(body, CONFIG);
    assert_eq!(errors.len(), 2);
    for e in &errors {
        assert!(matches!(e, SourceError::Status { status: 503, .. }), "{e}");
    }
    assert_eq!(backoff.attempts(), 2);
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[test]
fn per_attempt_timeout() {
    // Accepts, reads the request, and never answers.
    let (addr, _) = server(|_, _| std::thread::sleep(Duration::from_secs(30)));
    let f = Fetcher::new(&settings(""));
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    let e = f
        .fetch_once(&format!("http://{addr}/c"), timeout)
        .unwrap_err();
    let took = start.elapsed();
    assert!(matches!(e, SourceError::Timeout { .. }), "{e}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(e.to_string().ends_with("no answer within 300ms"), "{e}");
}

/// A forward proxy that answers for any target: CONNECT is tunnelled
/// (the tunnelled request is answered by the proxy itself), an
/// absolute-form request is answered directly.
fn proxy() -> (SocketAddr, Seen) {
    server(|line, r| {
        if line.starts_with("CONNECT ") {
            let _ = r
                .get_mut()
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
            if read_head(r).is_some() {
                respond(r, "200 OK", b"from: proxy\n");
            }
        } else {
            respond(r, "200 OK", b"from: proxy\n");
        }
    })
}

#[test]
fn proxy_from_keel_environment_and_no_proxy() {
    let (origin, origin_seen) = server(|_, r| respond(r, "200 OK", b"from: origin\n"));
    let (proxy, proxy_seen) = proxy();
    let url = format!("http://{origin}/c");
    let dir = tempfile::tempdir().unwrap();
    let env = empty_env(dir.path(), None);

    // The process environment must not matter: only keel.environment=.
    let s = settings(&format!(
        "keel.config={url} keel.environment=http_proxy=http://{proxy}"
    ));
    match load_once(&s, &env, true, T) {
        LoadAttempt::Loaded(f) => assert_eq!(f.bytes, b"from: proxy\n"),
        other => panic!("{other:?}"),
    }
    {
        let seen = proxy_seen.lock().unwrap();
        // ureq tunnels plain http through CONNECT; an absolute-form GET
        // would be equally "through the proxy".
        let connect = format!("CONNECT {origin} HTTP/1.1");
        let absolute = format!("GET {url} HTTP/1.1");
        assert!(
            seen.first() == Some(&connect) || seen.first() == Some(&absolute),
            "{seen:?}"
        );
    }
    assert!(origin_seen.lock().unwrap().is_empty());

    // An https proxy variable does not apply to an http URL, and no_proxy
    // (upper or lower case) bypasses the proxy.
    for extra in [
        "keel.environment=no_proxy=127.0.0.1".to_string(),
        "keel.environment=NO_PROXY=localhost,127.0.0.0/8".to_string(),
        format!("keel.environment=no_proxy=127.0.0.1:{}", origin.port()),
    ] {
        let s = settings(&format!(
            "keel.config={url} keel.environment=http_proxy=http://{proxy} {extra}"
        ));
        match load_once(&s, &env, true, T) {
            LoadAttempt::Loaded(f) => assert_eq!(f.bytes, b"from: origin\n", "{extra}"),
            other => panic!("{extra}: {other:?}"),
        }
    }
    let s = settings(&format!(
        "keel.config={url} keel.environment=https_proxy=http://{proxy}"
    ));
    match load_once(&s, &env, true, T) {
        LoadAttempt::Loaded(f) => assert_eq!(f.bytes, b"from: origin\n"),
        other => panic!("{other:?}"),
    }
    assert_eq!(proxy_seen.lock().unwrap().len(), 1);
    assert_eq!(origin_seen.lock().unwrap().len(), 4);
}

#[test]
fn sha256_pin() {
    let (addr, _) = server(|_, r| respond(r, "200 OK", CONFIG));
    let dir = tempfile::tempdir().unwrap();
    let env = empty_env(dir.path(), None);
    let url = format!("http://{addr}/c");

    let good = sha256_hex(CONFIG);
    let s = settings(&format!("keel.config={url} keel.config.sha256={good}"));
    assert!(matches!(
        load_once(&s, &env, true, T),
        LoadAttempt::Loaded(_)
    ));

    let wrong = sha256_hex(b"something else");
    let s = settings(&format!("keel.config={url} keel.config.sha256={wrong}"));
    let LoadAttempt::Failed(failures) = load_once(&s, &env, true, T) else {
        panic!("a mismatching config was accepted");
    };
    assert_eq!(failures[0].kind, SourceKind::Url);
    match &failures[0].error {
        SourceError::Sha256Mismatch {
            origin,
            expected,
            actual,
        } => {
            assert_eq!(origin, &url);
            assert_eq!(expected, &wrong);
            assert_eq!(actual, &good);
        }
        e => panic!("{e}"),
    }
    assert_eq!(failures[1].kind, SourceKind::Partition);

    // Network not ready: the URL is not even tried.
    let LoadAttempt::Failed(failures) = load_once(&s, &env, false, T) else {
        panic!()
    };
    assert!(matches!(
        failures[0].error,
        SourceError::WaitingForNetwork { .. }
    ));
}
