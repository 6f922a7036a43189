//! The node API server: TLS accept, the client's roles, HTTP/1.1 routing.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_rustls::TlsAcceptor;

use super::tls::{self, Names, ServerCert};
use super::{Action, Role};
use crate::logbuf::{Line, LogBuffer};
use crate::node::{EtcdSlot, NodeState, PowerRequest};

type Body = BoxBody<Bytes, Infallible>;

/// How long a client gets to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of log lines.
const DEFAULT_LINES: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen on port {port}: {source}")]
    Listen {
        port: u16,
        #[source]
        source: std::io::Error,
    },
}

/// Who is asking, from the verified client certificate.
#[derive(Debug, Clone)]
struct Client {
    role: Option<Role>,
    orgs: Vec<String>,
    cn: String,
    addr: SocketAddr,
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cn = if self.cn.is_empty() { "-" } else { &self.cn };
        write!(f, "{} (CN {cn}, O {})", self.addr, self.orgs.join(","))
    }
}

/// A listener on every address, IPv6 and IPv4 (the wildcard `[::]` is
/// dual-stack unless IPv6 is off, then `0.0.0.0`).
pub async fn listen(port: u16) -> Result<TcpListener, ApiError> {
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
    match TcpListener::bind(v6).await {
        Ok(l) => Ok(l),
        Err(_) => TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))
            .await
            .map_err(|source| ApiError::Listen { port, source }),
    }
}

/// The server's TLS and what it serves.
pub struct Server {
    pub cert: Arc<ServerCert>,
    acceptor: TlsAcceptor,
    state: Arc<NodeState>,
}

impl Server {
    /// `ca` is `machine.ca`, `accepted` the PEM of `machine.acceptedCAs`.
    pub fn new(
        ca: crate::x509::Ca,
        accepted: &[String],
        names: Names,
        state: Arc<NodeState>,
    ) -> Result<Server, ApiError> {
        let mut client_cas = vec![ca.crt_pem.clone()];
        client_cas.extend(accepted.iter().cloned());
        let cert = ServerCert::new(ca, names)?;
        let config = tls::server_config(cert.clone(), &client_cas)?;
        Ok(Server {
            cert,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            state,
        })
    }

    /// Accepts connections until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (tcp, addr) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    log::warn!("api: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let me = self.clone();
            tokio::spawn(async move { me.connection(tcp, addr).await });
        }
    }

    async fn connection(self: Arc<Self>, tcp: tokio::net::TcpStream, addr: SocketAddr) {
        let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp)).await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                // The operator's first question when a client is refused;
                // a peer that hangs up mid-handshake (a port probe, a
                // client giving up) is not news.
                let text = e.to_string();
                if text.contains("eof") {
                    log::debug!("api: {addr}: closed during the TLS handshake: {text}");
                } else {
                    log::info!("api: {addr}: TLS handshake refused: {text}");
                }
                return;
            }
            Err(_) => {
                log::info!("api: {addr}: TLS handshake timed out");
                return;
            }
        };
        let (orgs, cn) = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| tls::identity(c))
            .unwrap_or_default();
        let client = Client {
            role: Role::from_organizations(&orgs),
            orgs,
            cn,
            addr,
        };
        let svc = hyper::service::service_fn(move |req| {
            let (me, client) = (self.clone(), client.clone());
            async move { Ok::<_, Infallible>(me.handle(req, &client).await) }
        });
        let io = hyper_util::rt::TokioIo::new(stream);
        if let Err(e) = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .await
        {
            log::debug!("api: {addr}: {e}");
        }
    }

    async fn handle(&self, req: Request<Incoming>, client: &Client) -> Response<Body> {
        let action = match (req.method(), req.uri().path()) {
            (&Method::GET, "/v1/status") => Action::Status,
            (&Method::GET, "/v1/logs") => Action::Logs,
            (&Method::POST, "/v1/bootstrap") => Action::Bootstrap,
            (&Method::POST, "/v1/reboot") => Action::Reboot,
            (&Method::POST, "/v1/shutdown") => Action::Shutdown,
            (m, p) => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("no such endpoint: {m} {p}; expected GET /v1/status, GET /v1/logs, POST /v1/bootstrap, /v1/reboot or /v1/shutdown"),
                )
            }
        };
        if !action.allowed(client.role) {
            log::info!("api: {client}: {action:?} refused: not authorized");
            return error(
                StatusCode::FORBIDDEN,
                format!(
                    "not authorized: {action:?} needs the role {} or stronger in the client certificate's subject O; this certificate has {}",
                    action.needs().name(),
                    if client.orgs.is_empty() { "none".to_owned() } else { client.orgs.join(", ") }
                ),
            );
        }
        match action {
            Action::Status => {
                json_response(StatusCode::OK, &super::status::gather(&self.state).await)
            }
            Action::Logs => self.logs(req.uri().query().unwrap_or("")),
            Action::Bootstrap => self.bootstrap(client).await,
            Action::Reboot | Action::Shutdown => {
                let power_off = action == Action::Shutdown;
                let what = if power_off { "shutdown" } else { "reboot" };
                log::info!("api: {client}: {what} requested");
                if self.state.request_power(PowerRequest {
                    power_off,
                    by: client.to_string(),
                }) {
                    message(
                        StatusCode::ACCEPTED,
                        format!("{what}: going down gracefully (VIPs released first, then etcd)"),
                    )
                } else {
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("{what}: PID 1 is already going down"),
                    )
                }
            }
        }
    }

    async fn bootstrap(&self, client: &Client) -> Response<Body> {
        log::info!("api: {client}: bootstrap requested");
        let refused = |why: String| {
            log::info!("api: bootstrap refused: {why}");
            error(StatusCode::CONFLICT, why)
        };
        match self.state.etcd() {
            EtcdSlot::Running { sup, .. } => match sup.bootstrap().await {
                Ok(what) => message(StatusCode::OK, what),
                Err(why) => refused(why),
            },
            EtcdSlot::Worker => {
                refused("bootstrap can only be performed on a control-plane node".to_owned())
            }
            EtcdSlot::Pending(why) => refused(format!(
                "bootstrap is not available yet: etcd has not started: {why}"
            )),
            EtcdSlot::Unknown => {
                refused("bootstrap is not available yet: no machine config".to_owned())
            }
        }
    }

    fn logs(&self, query: &str) -> Response<Body> {
        let mut source = "keel";
        let mut lines = Some(DEFAULT_LINES);
        let mut follow = false;
        for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            match k {
                "source" => source = v,
                "lines" if v == "all" => lines = None,
                "lines" => match v.parse() {
                    Ok(n) => lines = Some(n),
                    Err(_) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            format!("lines={v}: expected a number or `all`"),
                        )
                    }
                },
                "follow" => follow = v == "true" || v == "1",
                _ => {}
            }
        }
        let buffer: Arc<LogBuffer> = match source {
            "keel" => return stream_lines(crate::logbuf::keel(), lines, follow),
            "etcd" => match self.state.etcd() {
                EtcdSlot::Running { sup, .. } => sup.log(),
                _ => {
                    return error(
                        StatusCode::NOT_FOUND,
                        "etcd does not run on this node (yet)".to_owned(),
                    )
                }
            },
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("source={other}: expected keel or etcd"),
                )
            }
        };
        stream_lines(&buffer, lines, follow)
    }
}

/// One log line on the wire.
fn line_json(l: &Line) -> Bytes {
    let mut v = serde_json::to_vec(&json!({
        "seq": l.seq,
        "at_s": l.at.as_secs_f64(),
        "level": l.level.as_str().to_ascii_lowercase(),
        "text": l.text,
    }))
    .unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// The last `lines` of `buffer` as newline-delimited JSON; with `follow`,
/// every later line too, for as long as the client stays.
fn stream_lines(buffer: &LogBuffer, lines: Option<usize>, follow: bool) -> Response<Body> {
    let builder = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/x-ndjson");
    if !follow {
        let body: Vec<u8> = buffer
            .last(lines)
            .iter()
            .flat_map(|l| line_json(l).to_vec())
            .collect();
        return builder
            .body(Full::new(Bytes::from(body)).boxed())
            .unwrap_or_else(|_| Response::new(empty()));
    }
    let (backlog, rx) = buffer.follow(lines);
    let head = futures::stream::iter(
        backlog
            .into_iter()
            .map(|l| Ok::<_, Infallible>(Frame::data(line_json(&l)))),
    );
    let tail = futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(l) => Some((Ok(Frame::data(line_json(&l))), rx)),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                let mut v = serde_json::to_vec(&json!({ "missed": n })).unwrap_or_default();
                v.push(b'\n');
                Some((Ok(Frame::data(Bytes::from(v))), rx))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    });
    use futures::StreamExt;
    let body = StreamBody::new(head.chain(tail));
    builder
        .body(BodyExt::boxed(body))
        .unwrap_or_else(|_| Response::new(empty()))
}

fn empty() -> Body {
    Full::new(Bytes::new()).boxed()
}

fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap_or_else(|_| Response::new(empty()))
}

fn message(status: StatusCode, message: String) -> Response<Body> {
    json_response(status, &json!({ "message": message }))
}

fn error(status: StatusCode, error: String) -> Response<Body> {
    json_response(status, &json!({ "error": error }))
}
