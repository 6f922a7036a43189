//! The kernel parameters that say where the config comes from.
//!
//! | parameter | meaning |
//! | --- | --- |
//! | `keel.config.inline=<base64>` | the config itself (plain or zstd YAML) |
//! | `keel.config=<url>` | fetch it over http or https |
//! | `keel.config=none` | do not load a config at all |
//! | `keel.config=metal-iso` | Talos's spelling of "use the labelled filesystem": no URL |
//! | `keel.config.ca=<base64 PEM or DER, or /path>` | trust this CA (only) for the URL |
//! | `keel.config.sha256=<hex>` | pin the config content, whichever source yields it |
//! | `keel.environment=K=V` | repeatable; `http_proxy` and friends apply to the fetch |
//!
//! `talos.config=`, `talos.config.inline=` and `talos.environment=` are
//! accepted as aliases; when both spellings are present the `keel.*` one
//! wins. Every malformed value is an error naming its parameter, so the
//! operator sees which part of the command line to fix.

use std::path::PathBuf;

use base64::Engine as _;
use ureq::tls::{Certificate, PemItem};

use super::error::SourceError;
use crate::cmdline::Cmdline;

pub const PARAM_INLINE: &str = "keel.config.inline";
pub const PARAM_INLINE_TALOS: &str = "talos.config.inline";
pub const PARAM_URL: &str = "keel.config";
pub const PARAM_URL_TALOS: &str = "talos.config";
pub const PARAM_CA: &str = "keel.config.ca";
pub const PARAM_SHA256: &str = "keel.config.sha256";
pub const PARAM_ENV: &str = "keel.environment";
pub const PARAM_ENV_TALOS: &str = "talos.environment";

/// The config given on the command line, base64-decoded (it may still be
/// zstd-compressed: see [`super::inline`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineConfig {
    /// The parameter it came from (`keel.config.inline` or the alias).
    pub param: &'static str,
    pub bytes: Vec<u8>,
}

/// The config URL, placeholders not yet substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlConfig {
    pub param: &'static str,
    pub template: String,
}

/// Proxy settings from `keel.environment=`, read the way Go's
/// `golang.org/x/net/http/httpproxy.FromEnvironment` reads the process
/// environment (Talos is written in Go, so a Talos user's values behave the
/// same): upper-case names win over lower-case ones, there is no
/// `ALL_PROXY`, and `no_proxy` is a comma-separated list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub no_proxy: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct SourceSettings {
    /// `keel.config=none`: load nothing, not even the inline config.
    pub disabled: bool,
    pub inline: Option<InlineConfig>,
    pub url: Option<UrlConfig>,
    /// Trust anchors for https that replace the bundled webpki roots.
    ///
    /// Replace, not add: ureq 3 takes either its bundled Mozilla roots or an
    /// explicit list, and reaching the bundled list would need webpki-roots
    /// as a direct dependency. Replacing is also the stricter reading of
    /// "this config server is signed by my CA": no public CA can then
    /// impersonate it.
    pub ca: Option<Vec<Certificate<'static>>>,
    /// `keel.config.sha256=`: the SHA-256 of the final (decompressed) YAML.
    pub sha256: Option<[u8; 32]>,
    /// Every `keel.environment=K=V`, in order (talos.environment first).
    pub environment: Vec<(String, String)>,
    pub proxy: ProxyEnv,
}

impl SourceSettings {
    /// Whether the config may come from a disk: no inline config (which
    /// is tried first and cannot change) and loading not disabled.
    pub fn searches_disks(&self) -> bool {
        !self.disabled && self.inline.is_none()
    }

    pub fn from_cmdline(cmdline: &Cmdline) -> Result<SourceSettings, SourceError> {
        let mut s = SourceSettings::default();

        // `keel.config` wins over `talos.config` whatever its value, so an
        // operator can override a Talos-era parameter left on the line.
        let url = pick(cmdline, PARAM_URL, PARAM_URL_TALOS);
        match url {
            Some((_, v)) if v.eq_ignore_ascii_case("none") => s.disabled = true,
            // Talos: `talos.config=metal-iso` means "read the ISO"; the
            // labelled-filesystem source runs anyway, so there is no URL.
            Some((_, "metal-iso")) => {}
            Some((param, v)) => s.url = Some(parse_url(param, v)?),
            None => {}
        }

        if let Some((param, v)) = pick(cmdline, PARAM_INLINE, PARAM_INLINE_TALOS) {
            s.inline = Some(InlineConfig {
                param,
                bytes: decode_base64(param, v)?,
            });
        }

        if let Some(v) = cmdline.get(PARAM_CA) {
            s.ca = Some(parse_ca(v)?);
        }

        if let Some(v) = cmdline.get(PARAM_SHA256) {
            s.sha256 = Some(super::pin::parse_sha256(PARAM_SHA256, v)?);
        }

        for param in [PARAM_ENV_TALOS, PARAM_ENV] {
            for v in cmdline.get_all(param) {
                s.environment.push(parse_env(param, v)?);
            }
        }
        s.proxy = proxy_env(&s.environment)?;
        Ok(s)
    }
}

/// The value of `primary` if given, else of `alias`, with the name used.
fn pick<'a>(
    cmdline: &'a Cmdline,
    primary: &'static str,
    alias: &'static str,
) -> Option<(&'static str, &'a str)> {
    cmdline
        .get(primary)
        .map(|v| (primary, v))
        .or_else(|| cmdline.get(alias).map(|v| (alias, v)))
}

fn bad(param: &str, reason: impl Into<String>) -> SourceError {
    SourceError::BadParam {
        param: param.to_string(),
        reason: reason.into(),
    }
}

fn parse_url(param: &'static str, v: &str) -> Result<UrlConfig, SourceError> {
    let lower = v.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(bad(
            param,
            format!("{v:?} is not an http:// or https:// URL (or none)"),
        ));
    }
    if v.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(bad(param, "the URL contains spaces or control characters"));
    }
    Ok(UrlConfig {
        param,
        template: v.to_string(),
    })
}

/// Standard base64 (RFC 4648 §4), padding optional and whitespace ignored:
/// values are pasted from `base64 -w0` or wrapped output, and the kernel
/// keeps quoted whitespace in a value.
pub fn decode_base64(param: &str, v: &str) -> Result<Vec<u8>, SourceError> {
    use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurposeConfig};
    const ENGINE: general_purpose::GeneralPurpose = general_purpose::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let compact: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err(bad(param, "the value is empty"));
    }
    ENGINE
        .decode(compact.as_bytes())
        .map_err(|source| SourceError::Base64 {
            param: param.to_string(),
            source,
        })
}

/// `keel.config.ca=`: an absolute path (a file in the initramfs) or the
/// file's content in base64, since a command line cannot carry PEM's line
/// breaks. Either way the content is PEM (every CERTIFICATE block is used)
/// or a single DER certificate.
fn parse_ca(v: &str) -> Result<Vec<Certificate<'static>>, SourceError> {
    let bytes = if v.starts_with('/') {
        let path = PathBuf::from(v);
        std::fs::read(&path).map_err(|source| SourceError::CaRead { path, source })?
    } else {
        decode_base64(PARAM_CA, v)?
    };
    parse_certificates(&bytes).map_err(|reason| bad(PARAM_CA, reason))
}

/// PEM (all CERTIFICATE blocks) or one DER certificate.
pub fn parse_certificates(bytes: &[u8]) -> Result<Vec<Certificate<'static>>, String> {
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(bytes) {
            match item {
                Ok(PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => return Err(format!("bad PEM: {e}")),
            }
        }
        if certs.is_empty() {
            return Err("the PEM holds no CERTIFICATE block".into());
        }
        return Ok(certs);
    }
    // A DER certificate is an ASN.1 SEQUENCE (tag 0x30), X.690 §8.9.
    if bytes.first() == Some(&0x30) {
        return Ok(vec![Certificate::from_der(bytes).to_owned()]);
    }
    Err("neither PEM nor a DER certificate".into())
}

/// `K=V`: POSIX environment names (XBD §8.1) are letters, digits and `_`,
/// not starting with a digit. The value may be empty.
fn parse_env(param: &str, v: &str) -> Result<(String, String), SourceError> {
    let Some((k, val)) = v.split_once('=') else {
        return Err(bad(param, format!("{v:?} is not of the form NAME=value")));
    };
    let valid = !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(bad(param, format!("{k:?} is not a valid variable name")));
    }
    Ok((k.to_string(), val.to_string()))
}

/// The proxy variables, validated so a typo is reported at boot, not as a
/// mysterious fetch failure later.
fn proxy_env(env: &[(String, String)]) -> Result<ProxyEnv, SourceError> {
    // The last definition of a name wins, as with repeated `export`.
    let get = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let either = |upper: &str, lower: &str| get(upper).or_else(|| get(lower));
    let p = ProxyEnv {
        http_proxy: either("HTTP_PROXY", "http_proxy"),
        https_proxy: either("HTTPS_PROXY", "https_proxy"),
        no_proxy: either("NO_PROXY", "no_proxy"),
    };
    for (name, value) in [
        ("http_proxy", &p.http_proxy),
        ("https_proxy", &p.https_proxy),
    ] {
        if let Some(value) = value {
            super::fetch::parse_proxy(value)
                .map_err(|reason| bad(PARAM_ENV, format!("{name}={value}: {reason}")))?;
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(line: &str) -> Result<SourceSettings, SourceError> {
        SourceSettings::from_cmdline(&Cmdline::parse(line))
    }

    fn err(line: &str) -> String {
        match settings(line) {
            Ok(s) => panic!("{line:?} accepted: {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn urls_and_aliases() {
        type Case<'a> = (&'a str, Option<(&'a str, &'a str)>, bool);
        let table: &[Case] = &[
            ("", None, false),
            (
                "keel.config=http://a/c",
                Some(("keel.config", "http://a/c")),
                false,
            ),
            (
                "talos.config=https://b/c",
                Some(("talos.config", "https://b/c")),
                false,
            ),
            (
                "talos.config=http://t/ keel.config=http://k/",
                Some(("keel.config", "http://k/")),
                false,
            ),
            (
                "keel.config=http://k/ talos.config=http://t/",
                Some(("keel.config", "http://k/")),
                false,
            ),
            ("keel.config=none", None, true),
            ("talos.config=none", None, true),
            ("keel.config=NONE talos.config=http://t/", None, true),
            (
                "talos.config=none keel.config=http://k/",
                Some(("keel.config", "http://k/")),
                false,
            ),
            ("talos.config=metal-iso", None, false),
            (
                "keel.config=HTTP://x/${uuid}",
                Some(("keel.config", "HTTP://x/${uuid}")),
                false,
            ),
        ];
        for (line, url, disabled) in table {
            let s = settings(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            let got = s.url.as_ref().map(|u| (u.param, u.template.as_str()));
            assert_eq!(got, *url, "{line}");
            assert_eq!(s.disabled, *disabled, "{line}");
        }
    }

    #[test]
    fn inline_and_alias() {
        let s = settings("keel.config.inline=YQ== talos.config.inline=Yg==").unwrap();
        let i = s.inline.unwrap();
        assert_eq!(
            (i.param, i.bytes.as_slice()),
            ("keel.config.inline", &b"a"[..])
        );
        let s = settings("talos.config.inline=Yg").unwrap();
        let i = s.inline.unwrap();
        assert_eq!(
            (i.param, i.bytes.as_slice()),
            ("talos.config.inline", &b"b"[..])
        );
        // Quoted whitespace inside the value is ignored.
        let s = settings("keel.config.inline=\"YWJj ZGVm\"").unwrap();
        assert_eq!(s.inline.unwrap().bytes, b"abcdef");
    }

    #[test]
    fn bad_values_name_the_parameter() {
        let table: &[(&str, &str)] = &[
            ("keel.config=ftp://x/", "kernel parameter keel.config:"),
            ("talos.config=/var/c.yaml", "kernel parameter talos.config:"),
            ("keel.config=", "kernel parameter keel.config:"),
            (
                "keel.config.inline=!!!",
                "kernel parameter keel.config.inline: not valid base64",
            ),
            (
                "talos.config.inline=",
                "kernel parameter talos.config.inline:",
            ),
            (
                "keel.config.sha256=abc",
                "kernel parameter keel.config.sha256:",
            ),
            (
                "keel.config.ca=bm90IGEgY2VydA==",
                "kernel parameter keel.config.ca:",
            ),
            (
                "keel.config.ca=/nonexistent/ca.pem",
                "kernel parameter keel.config.ca: cannot read",
            ),
            (
                "keel.environment=novalue",
                "kernel parameter keel.environment:",
            ),
            ("keel.environment==x", "kernel parameter keel.environment:"),
            (
                "keel.environment=1A=x",
                "kernel parameter keel.environment:",
            ),
            (
                "talos.environment=A-B=x",
                "kernel parameter talos.environment:",
            ),
            (
                "keel.environment=http_proxy=ftp://p:1",
                "kernel parameter keel.environment: http_proxy=ftp://p:1",
            ),
            (
                "keel.environment=HTTPS_PROXY=socks5://p:1",
                "kernel parameter keel.environment: https_proxy=socks5://p:1",
            ),
        ];
        for (line, want) in table {
            let e = err(line);
            assert!(e.starts_with(want), "{line}: {e}");
        }
    }

    #[test]
    fn environment_and_proxy_precedence() {
        let s = settings(
            "talos.environment=http_proxy=http://t:1 keel.environment=http_proxy=http://k:1 \
             keel.environment=HTTPS_PROXY=http://up:2 keel.environment=https_proxy=http://low:2 \
             keel.environment=no_proxy=.lan,10.0.0.0/8 keel.environment=EMPTY=",
        )
        .unwrap();
        assert_eq!(s.environment.len(), 6);
        assert_eq!(s.environment[5], ("EMPTY".into(), "".into()));
        assert_eq!(s.proxy.http_proxy.as_deref(), Some("http://k:1"));
        assert_eq!(s.proxy.https_proxy.as_deref(), Some("http://up:2"));
        assert_eq!(s.proxy.no_proxy.as_deref(), Some(".lan,10.0.0.0/8"));
        let s = settings("keel.environment=http_proxy=").unwrap();
        assert_eq!(s.proxy.http_proxy, None);
    }

    #[test]
    fn ca_formats() {
        // Certificates are not validated here (rustls does that when it
        // builds the root store); only the container format is.
        let der = [0x30u8, 0x03, 0x02, 0x01, 0x01];
        let pem = format!(
            "junk\n-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n\
             -----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::engine::general_purpose::STANDARD.encode(der),
            base64::engine::general_purpose::STANDARD.encode(der),
        );
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let s = settings(&format!("keel.config.ca={}", b64(pem.as_bytes()))).unwrap();
        assert_eq!(s.ca.unwrap().len(), 2);
        let s = settings(&format!("keel.config.ca={}", b64(&der))).unwrap();
        assert_eq!(s.ca.unwrap()[0].der(), der);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, &pem).unwrap();
        let s = settings(&format!("keel.config.ca={}", path.display())).unwrap();
        assert_eq!(s.ca.unwrap().len(), 2);
        let key_only = "-----BEGIN PRIVATE KEY-----\nMAMCAQE=\n-----END PRIVATE KEY-----\n";
        let e = err(&format!("keel.config.ca={}", b64(key_only.as_bytes())));
        assert!(e.contains("no CERTIFICATE"), "{e}");
    }

    #[test]
    fn sha256_parsed() {
        let hex = "AB".repeat(32);
        let s = settings(&format!("keel.config.sha256={hex}")).unwrap();
        assert_eq!(s.sha256, Some([0xab; 32]));
    }
}
