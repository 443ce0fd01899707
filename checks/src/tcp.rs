//! The `tcp` check: its config (`host`, `port`, `tls`), validation, and the runtime that
//! resolves the host, connects to the first address that answers and, with `tls`,
//! completes a TLS handshake verified against the platform's roots.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::time::Instant;
use toml::Spanned;

use crate::validate::ConfigIssue;
use crate::{Outcome, Severity, text};

/// The `[jobs.NAME.check]` table of `type = "tcp"`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// A host name or an IP address (IPv6 with or without brackets).
    pub host: Spanned<String>,
    pub port: Spanned<i64>,
    /// Complete a TLS handshake after connecting; `false` when not set.
    pub tls: Option<bool>,
}

/// A validated `tcp` check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSpec {
    /// Without brackets, also for IPv6.
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl TcpSpec {
    /// `host:port`, `[::1]:port` for IPv6 addresses.
    pub fn target(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl TcpConfig {
    /// Checks every value, pushing each problem to `issues`.
    pub fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<TcpSpec> {
        let raw = self.host.get_ref().trim();
        let unbracketed = raw
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(raw);
        let host = if unbracketed.is_empty()
            || unbracketed.contains(|c: char| c.is_whitespace() || "/@?#[]".contains(c))
        {
            issues.push(ConfigIssue::new(
                self.host.span(),
                format!(
                    "`host`: expected a host name or IP address like `db.example.com` or \
                     `10.0.0.5`, found `{}`",
                    self.host.get_ref()
                ),
            ));
            None
        } else {
            Some(unbracketed.to_owned())
        };
        let port = match u16::try_from(*self.port.get_ref()) {
            Ok(p) if p > 0 => Some(p),
            _ => {
                issues.push(ConfigIssue::new(
                    self.port.span(),
                    format!(
                        "`port` must be between 1 and 65535, found `{}`",
                        self.port.get_ref()
                    ),
                ));
                None
            }
        };
        Some(TcpSpec {
            host: host?,
            port: port?,
            tls: self.tls.unwrap_or(false),
        })
    }
}

/// A `tcp` check ready to run.
#[derive(Debug)]
pub struct TcpCheck {
    spec: TcpSpec,
    /// Set up once for `tls` checks; the reason when the platform verifier would not load.
    tls: Option<Result<Arc<rustls::ClientConfig>, String>>,
}

impl TcpCheck {
    /// Sets up TLS once for `tls` checks; a failure to load the platform's roots is
    /// reported by each run (`TLS: …`) rather than here.
    pub fn new(spec: TcpSpec) -> Self {
        let tls = spec.tls.then(tls_config);
        Self { spec, tls }
    }

    /// The validated settings this check runs with.
    pub fn spec(&self) -> &TcpSpec {
        &self.spec
    }

    /// Connects once (and shakes hands, with `tls`); `timeout` bounds it all.
    pub async fn run(&self, timeout: Duration) -> Outcome {
        let start = Instant::now();
        let result = tokio::time::timeout(timeout, self.connect()).await;
        let elapsed = start.elapsed();
        match result {
            Err(_) => Outcome::new(
                Severity::Critical,
                format!("timed out after {}", text::duration(timeout)),
                elapsed,
            ),
            Ok(Err(reason)) => Outcome::new(Severity::Critical, reason, elapsed),
            Ok(Ok(())) => {
                let how = if self.spec.tls { " (TLS)" } else { "" };
                let summary = format!(
                    "connected to {}{how} in {}",
                    self.spec.target(),
                    text::elapsed(elapsed)
                );
                Outcome::new(Severity::Ok, summary, elapsed)
            }
        }
    }

    async fn connect(&self) -> Result<(), String> {
        let addrs: Vec<SocketAddr> =
            tokio::net::lookup_host((self.spec.host.as_str(), self.spec.port))
                .await
                .map_err(|e| text::dns_failure(&e.to_string()))?
                .collect();
        // Like `TcpStream::connect`: every address in turn, reporting the last failure.
        let mut last = String::from("DNS: no address");
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = io_reason(&e),
            }
        }
        let stream = stream.ok_or(last)?;
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        let config = tls.as_ref().map_err(|e| format!("TLS: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        let name = ServerName::try_from(self.spec.host.clone())
            .map_err(|e| format!("TLS: `{}` cannot be verified: {e}", self.spec.host))?;
        connector
            .connect(name, stream)
            .await
            .map(drop)
            .map_err(
                |e| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    Some(tls) => format!("TLS: {tls}"),
                    None => format!("TLS: {}", io_reason(&e)),
                },
            )
    }
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
        .map_err(|e| format!("cannot load the platform's trusted roots: {e}"))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn io_reason(error: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match error.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset".into(),
        K::ConnectionAborted => "connection aborted".into(),
        K::HostUnreachable => "host unreachable".into(),
        K::NetworkUnreachable => "network unreachable".into(),
        K::UnexpectedEof => "connection closed by the other side".into(),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::test_support::{config, issues_of, try_config};

    fn check(host: &str, port: u16, tls: bool) -> TcpCheck {
        TcpCheck::new(TcpSpec {
            host: host.into(),
            port,
            tls,
        })
    }

    #[test]
    fn valid_configs() {
        let spec = config::<TcpConfig>("host = \"db.example.com\"\nport = 5432")
            .validate(&mut Vec::new())
            .unwrap();
        assert_eq!(spec.target(), "db.example.com:5432");
        assert!(!spec.tls);
        let spec = config::<TcpConfig>("host = \"[::1]\"\nport = 443\ntls = true")
            .validate(&mut Vec::new())
            .unwrap();
        assert_eq!((spec.host.as_str(), spec.tls), ("::1", true));
        assert_eq!(spec.target(), "[::1]:443");
    }

    #[test]
    fn invalid_values_are_located() {
        let text = "host = \"http://db/\"\nport = 70000";
        let issues = issues_of(text, TcpConfig::validate);
        let got: Vec<(&str, &str)> = issues
            .iter()
            .map(|i| (&text[i.span.clone()], i.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "\"http://db/\"",
                    "`host`: expected a host name or IP address like `db.example.com` or `10.0.0.5`, found `http://db/`"
                ),
                ("70000", "`port` must be between 1 and 65535, found `70000`"),
            ]
        );
        let issues = issues_of("host = \"\"\nport = 0", TcpConfig::validate);
        let messages: Vec<&str> = issues.iter().map(|i| i.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "`host`: expected a host name or IP address like `db.example.com` or `10.0.0.5`, found ``",
                "`port` must be between 1 and 65535, found `0`",
            ]
        );
    }

    #[test]
    fn unknown_and_mistyped_keys_are_rejected() {
        let err = try_config::<TcpConfig>("host = \"x\"\nport = 1\nssl = true").unwrap_err();
        assert!(err.message().starts_with("unknown field `ssl`"), "{err}");
        let text = "host = \"x\"\nport = \"80\"";
        let err = try_config::<TcpConfig>(text).unwrap_err();
        assert_eq!(&text[err.span().unwrap()], "\"80\"");
    }

    #[tokio::test]
    async fn connects_to_a_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let r = check("127.0.0.1", port, false)
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.severity, Severity::Ok);
        let prefix = format!("connected to 127.0.0.1:{port} in ");
        assert!(
            r.summary.starts_with(&prefix) && r.summary.ends_with("ms"),
            "{}",
            r.summary
        );
        // The connection really arrived.
        let accepted = tokio::time::timeout(Duration::from_secs(1), listener.accept()).await;
        assert!(accepted.unwrap().is_ok());
    }

    #[tokio::test]
    async fn a_closed_port_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let r = check("127.0.0.1", port, false)
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Critical, "connection refused")
        );
    }

    #[tokio::test]
    async fn an_unknown_host_is_a_dns_failure() {
        let r = check("no-such-host.invalid", 80, false)
            .run(Duration::from_secs(10))
            .await;
        assert_eq!(r.severity, Severity::Critical);
        assert!(r.summary.starts_with("DNS: "), "{}", r.summary);
    }

    #[tokio::test]
    async fn a_server_that_does_not_speak_tls_fails_the_handshake() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        let r = check("localhost", port, true)
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.severity, Severity::Critical);
        assert!(r.summary.starts_with("TLS: "), "{}", r.summary);
        server.abort();
    }

    #[tokio::test]
    async fn a_handshake_that_never_completes_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accepts (the kernel does, from the backlog) but never answers the ClientHello.
        let start = std::time::Instant::now();
        let r = check("localhost", port, true)
            .run(Duration::from_millis(300))
            .await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Critical, "timed out after 300ms")
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        drop(listener);
    }
}
