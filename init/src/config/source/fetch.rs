//! One HTTP(S) GET of the config URL, with ureq 3 (rustls + ring).
//!
//! Proxies come from `keel.environment=` (see [`ProxyEnv`]), never from
//! PID 1's own environment: ureq's default config would read the process
//! environment, so the proxy is always set explicitly, `None` included.
//!
//! ureq sends every proxied request through a CONNECT tunnel (RFC 9110
//! §9.3.6), plain http included; it has no absolute-form (RFC 9112 §3.2.2)
//! forwarding. Proxies that only allow CONNECT to port 443 (squid's default
//! `http_access deny CONNECT !SSL_ports`) therefore refuse an `http://`
//! config URL on port 80: use https, or allow the port on the proxy.

use std::net::IpAddr;
use std::time::Duration;

use ureq::http::Uri;
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::{Agent, Proxy};

use super::error::SourceError;
use super::settings::{ProxyEnv, SourceSettings};
use super::MAX_CONFIG_BYTES;

/// Fetches the config URL; cheap to build, holds no connections.
#[derive(Debug, Clone)]
pub struct Fetcher {
    proxy: ProxyEnv,
    ca: Option<Vec<Certificate<'static>>>,
    max_body: u64,
}

impl Fetcher {
    pub fn new(settings: &SourceSettings) -> Fetcher {
        Fetcher {
            proxy: settings.proxy.clone(),
            ca: settings.ca.clone(),
            max_body: MAX_CONFIG_BYTES,
        }
    }

    /// Caps the response body (default [`MAX_CONFIG_BYTES`]).
    pub fn with_max_body(mut self, max_body: u64) -> Fetcher {
        self.max_body = max_body;
        self
    }

    /// The proxy URL used for `url`, or `None` for a direct connection.
    pub fn proxy_for(&self, url: &str) -> Result<Option<String>, SourceError> {
        let target = Target::parse(url)?;
        let proxy = match target.https {
            true => &self.proxy.https_proxy,
            false => &self.proxy.http_proxy,
        };
        let Some(proxy) = proxy else { return Ok(None) };
        let bypass = self
            .proxy
            .no_proxy
            .as_deref()
            .is_some_and(|list| no_proxy_matches(list, &target.host, target.port));
        Ok((!bypass).then(|| proxy.clone()))
    }

    /// One GET of `url` (placeholders already substituted), bounded by
    /// `timeout` as a whole: resolve, connect, TLS, headers and body.
    /// Anything but `200 OK` is an error carrying the status.
    pub fn fetch_once(&self, url: &str, timeout: Duration) -> Result<Vec<u8>, SourceError> {
        let proxy = match self.proxy_for(url)? {
            Some(p) => Some(parse_proxy(&p).map_err(|reason| SourceError::BadParam {
                param: super::settings::PARAM_ENV.to_string(),
                reason: format!("proxy {p}: {reason}"),
            })?),
            None => None,
        };
        let mut tls = TlsConfig::builder();
        if let Some(ca) = &self.ca {
            tls = tls.root_certs(RootCerts::new_with_certs(ca));
        }
        let agent: Agent = Agent::config_builder()
            .proxy(proxy)
            .tls_config(tls.build())
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .max_redirects(5)
            .user_agent(concat!("keel/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let map = |e: ureq::Error| map_error(url, timeout, e);
        let mut response = agent.get(url).call().map_err(map)?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(SourceError::Status {
                url: url.to_string(),
                status,
            });
        }
        response
            .body_mut()
            .with_config()
            .limit(self.max_body)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(limit) => SourceError::TooLarge {
                    origin: url.to_string(),
                    limit,
                },
                e => map(e),
            })
    }
}

fn map_error(url: &str, timeout: Duration, e: ureq::Error) -> SourceError {
    match e {
        ureq::Error::Timeout(_) => SourceError::Timeout {
            url: url.to_string(),
            timeout,
        },
        ureq::Error::BadUri(reason) => SourceError::BadUrl {
            url: url.to_string(),
            reason,
        },
        e => SourceError::Http {
            url: url.to_string(),
            source: Box::new(e),
        },
    }
}

/// A proxy URL as Go's httpproxy accepts it: `http://` or `https://`, or
/// no scheme (meaning http). SOCKS needs a ureq feature Keel does not build.
pub fn parse_proxy(value: &str) -> Result<Proxy, String> {
    if let Some((scheme, _)) = value.split_once("://") {
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(format!(
                "unsupported proxy scheme {scheme:?} (http or https)"
            ));
        }
    }
    Proxy::new(value).map_err(|e| format!("not a valid proxy URL: {e}"))
}

/// The parts of the target URL that proxy selection needs.
struct Target {
    https: bool,
    host: String,
    port: u16,
}

impl Target {
    fn parse(url: &str) -> Result<Target, SourceError> {
        let bad = |reason: &str| SourceError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: ureq::http::uri::InvalidUri| bad(&e.to_string()))?;
        let https = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(Target {
            https,
            host: host.to_ascii_lowercase(),
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
        })
    }
}

/// `no_proxy` matching with the rules of Go's `httpproxy` package (what
/// Talos users' values were written for): a comma-separated list of
/// `*` (everything), IP addresses, CIDR prefixes, and domain names with an
/// optional `:port`. `example.com` matches the name and its subdomains;
/// `.example.com` and `*.example.com` match subdomains only. Unlike Go,
/// loopback is not implicitly exempt: list it if it should be.
pub fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let host = host.to_ascii_lowercase();
    let host_ip: Option<IpAddr> = host.parse().ok();
    list.split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            if let Some((net, len)) = entry.split_once('/') {
                return match (net.parse::<IpAddr>(), len.parse::<u8>(), host_ip) {
                    (Ok(net), Ok(len), Some(ip)) => in_prefix(ip, net, len),
                    _ => false,
                };
            }
            if let Ok(ip) = entry.trim_start_matches('[').trim_end_matches(']').parse() {
                return host_ip == Some(ip);
            }
            let (name, want_port) = split_port(&entry);
            if want_port.is_some_and(|p| p != port) {
                return false;
            }
            if let Ok(ip) = name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
            {
                return host_ip == Some(ip);
            }
            let name = name.strip_prefix('*').unwrap_or(name);
            if name.starts_with('.') {
                host.ends_with(name)
            } else {
                host == name || host.ends_with(&format!(".{name}"))
            }
        })
}

/// `name:port` → (`name`, port); a bare IPv6 literal is not split.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    match entry.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') || name.ends_with(']') => match port.parse() {
            Ok(p) => (name, Some(p)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

fn in_prefix(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_table() {
        let table: &[(&str, &str, u16, bool)] = &[
            ("", "a.example", 80, false),
            ("*", "a.example", 80, true),
            ("example.com", "example.com", 80, true),
            ("example.com", "cfg.example.com", 80, true),
            ("example.com", "badexample.com", 80, false),
            (".example.com", "example.com", 80, false),
            (".example.com", "cfg.example.com", 80, true),
            ("*.example.com", "cfg.example.com", 80, true),
            ("*.example.com", "example.com", 80, false),
            ("EXAMPLE.com", "Cfg.Example.COM", 80, true),
            ("example.com:8080", "example.com", 80, false),
            ("example.com:8080", "example.com", 8080, true),
            (" other , example.com ", "example.com", 80, true),
            ("10.0.0.0/8", "10.1.2.3", 80, true),
            ("10.0.0.0/8", "11.1.2.3", 80, false),
            ("10.0.0.0/8", "ten.example", 80, false),
            ("10.0.0.0/33", "10.1.2.3", 80, false),
            ("0.0.0.0/0", "1.2.3.4", 80, true),
            ("127.0.0.1", "127.0.0.1", 1234, true),
            ("127.0.0.1:99", "127.0.0.1", 1234, false),
            ("127.0.0.1:1234", "127.0.0.1", 1234, true),
            ("::1", "::1", 80, true),
            ("[::1]", "::1", 80, true),
            ("[::1]:80", "::1", 80, true),
            ("fd00::/8", "fd12::1", 80, true),
            ("fd00::/8", "fe80::1", 80, false),
        ];
        for (list, host, port, want) in table {
            assert_eq!(
                no_proxy_matches(list, host, *port),
                *want,
                "{list:?} {host} {port}"
            );
        }
    }

    fn fetcher(proxy: ProxyEnv) -> Fetcher {
        let s = SourceSettings {
            proxy,
            ..Default::default()
        };
        Fetcher::new(&s)
    }

    #[test]
    fn proxy_selection() {
        let f = fetcher(ProxyEnv {
            http_proxy: Some("http://p:3128".into()),
            https_proxy: Some("http://s:3128".into()),
            no_proxy: Some(".lan".into()),
        });
        let table: &[(&str, Option<&str>)] = &[
            ("http://cfg.example/x", Some("http://p:3128")),
            ("https://cfg.example/x", Some("http://s:3128")),
            ("HTTPS://cfg.example/x", Some("http://s:3128")),
            ("http://cfg.lan/x", None),
            ("https://cfg.lan:8443/x", None),
        ];
        for (url, want) in table {
            assert_eq!(f.proxy_for(url).unwrap().as_deref(), *want, "{url}");
        }
        assert_eq!(
            fetcher(ProxyEnv::default()).proxy_for("http://a/").unwrap(),
            None
        );
        for bad in ["ftp://a/", "http:///x", "not a url"] {
            assert!(f.proxy_for(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn proxy_parsing() {
        assert!(parse_proxy("http://p:3128").is_ok());
        assert!(parse_proxy("p:3128").is_ok());
        assert!(parse_proxy("HTTPS://p").is_ok());
        assert!(parse_proxy("socks5://p:1080")
            .unwrap_err()
            .contains("socks5"));
        assert!(parse_proxy("http://").is_err());
    }
}
