//! The `tcp` check: its config (`host`, `port`, `tls`, `starttls`, `ca_file`,
//! `tls_verify`, `cert_warn`, `cert_crit`), validation, and the runtime that resolves
//! the host, connects to the first address that answers and, with `tls`, completes a TLS
//! handshake verified against the platform's roots (plus `ca_file`), or not verified at
//! all with `tls_verify = false`. With `starttls` (`smtp`, `imap`, `pop3`) the handshake
//! follows the mail protocol's upgrade ([`crate::starttls`]). After a handshake the
//! output names the server certificate's subject and `notAfter`, and `cert_warn` and
//! `cert_crit` judge how long it has left, as for `http`.
//!
//! A connection made is reported with the metric `connect_ms`: resolving, connecting
//! and, with `tls`, the dialogue and the handshake.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::time::Instant;
use toml::Spanned;

use crate::cert::{self, CertInfo};
use crate::starttls::Starttls;
use crate::validate::{self, ConfigIssue};
use crate::{BuildError, CheckPlugin, Metric, Outcome, Probe, Severity, Shared, metric, text};

/// The `[jobs.NAME.check]` table of `type = "tcp"`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// A host name or an IP address (IPv6 with or without brackets).
    pub host: Spanned<String>,
    pub port: Spanned<i64>,
    /// Complete a TLS handshake after connecting; `false` when not set.
    pub tls: Option<Spanned<bool>>,
    /// `smtp`, `imap` or `pop3`: upgrade the plain connection with the protocol's
    /// STARTTLS before the handshake (which it implies).
    pub starttls: Option<Spanned<String>>,
    /// An extra trusted root (PEM) for the handshake; needs `tls = true`.
    pub ca_file: Option<Spanned<String>>,
    /// `false` accepts any certificate (the summary then says "unverified"); needs
    /// `tls = true`.
    pub tls_verify: Option<Spanned<bool>>,
    /// Warn when the server's certificate expires within this; needs a handshake.
    pub cert_warn: Option<Spanned<String>>,
    /// Critical when the server's certificate expires within this; needs a handshake.
    pub cert_crit: Option<Spanned<String>>,
}

/// A validated `tcp` check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSpec {
    /// Without brackets, also for IPv6.
    pub host: String,
    pub port: u16,
    /// Whether a TLS handshake follows the connection (`tls = true` or `starttls`).
    pub tls: bool,
    /// The mail protocol whose upgrade comes before the handshake.
    pub starttls: Option<Starttls>,
    /// An extra trusted root (PEM), `~` expanded; read when the check is built.
    pub ca_file: Option<PathBuf>,
    /// `true` unless the config says `tls_verify = false`.
    pub tls_verify: bool,
    pub cert_warn: Option<Duration>,
    pub cert_crit: Option<Duration>,
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

impl CheckPlugin for TcpConfig {
    type Spec = TcpSpec;
    type Runtime = TcpCheck;

    const NETWORK: bool = true;

    fn build(spec: &TcpSpec, _shared: &Shared) -> Result<TcpCheck, BuildError> {
        TcpCheck::try_new(spec.clone())
    }

    /// Checks every value, pushing each problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<TcpSpec> {
        let before = issues.len();
        let host = validate::host(&self.host, issues);
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
        let starttls = self.starttls.as_ref().and_then(|raw| {
            let parsed = Starttls::parse(raw.get_ref());
            if parsed.is_none() {
                issues.push(ConfigIssue::new(
                    raw.span(),
                    format!(
                        "`starttls` must be {}, found `{}`",
                        Starttls::NAMES,
                        raw.get_ref()
                    ),
                ));
            }
            parsed
        });
        if let (Some(raw), Some(_)) = (&self.tls, &self.starttls)
            && !*raw.get_ref()
        {
            issues.push(ConfigIssue::new(
                raw.span(),
                "`starttls` upgrades the connection to TLS: remove `tls = false`",
            ));
        }
        let tls = self.tls.as_ref().is_some_and(|t| *t.get_ref()) || self.starttls.is_some();
        let (cert_warn, cert_crit) =
            cert::limits(self.cert_warn.as_ref(), self.cert_crit.as_ref(), issues);
        for (raw, key) in [
            (&self.cert_warn, "cert_warn"),
            (&self.cert_crit, "cert_crit"),
        ] {
            if let Some(raw) = raw {
                needs_tls(tls, raw.span(), key, issues);
            }
        }
        let ca_file = self.ca_file.as_ref().and_then(|p| {
            needs_tls(tls, p.span(), "ca_file", issues);
            validate::path(p, "ca_file", issues)
        });
        let tls_verify = self.tls_verify.as_ref().is_none_or(|v| *v.get_ref());
        if let Some(v) = &self.tls_verify {
            needs_tls(tls, v.span(), "tls_verify", issues);
        }
        if issues.len() > before {
            return None;
        }
        Some(TcpSpec {
            host: host?,
            port: port?,
            tls,
            starttls,
            ca_file,
            tls_verify,
            cert_warn,
            cert_crit,
        })
    }
}

/// TLS settings only mean something for a handshake: say so rather than ignore them.
fn needs_tls(tls: bool, span: std::ops::Range<usize>, key: &str, issues: &mut Vec<ConfigIssue>) {
    if !tls {
        issues.push(ConfigIssue::new(
            span,
            format!("`{key}` applies only to a TLS handshake: add `tls = true`"),
        ));
    }
}

/// A `tcp` check ready to run.
#[derive(Debug)]
pub struct TcpCheck {
    spec: TcpSpec,
    /// Set up once for `tls` checks; the reason when it could not be.
    tls: Option<Result<Arc<rustls::ClientConfig>, String>>,
}

impl TcpCheck {
    /// Sets up TLS once for `tls` checks; a failure (the platform's roots, `ca_file`)
    /// is reported by each run (`TLS: …`) rather than here. [`TcpCheck::try_new`]
    /// reports it at once.
    pub fn new(spec: TcpSpec) -> Self {
        let tls = spec
            .tls
            .then(|| tls_config(spec.ca_file.as_deref(), spec.tls_verify));
        Self { spec, tls }
    }

    /// Like [`TcpCheck::new`], but fails when TLS cannot be set up: `ca_file` cannot be
    /// read or holds no certificate, or the platform's roots do not load.
    pub fn try_new(spec: TcpSpec) -> Result<Self, BuildError> {
        let check = Self::new(spec);
        if let Some(Err(reason)) = &check.tls {
            return Err(BuildError::Other(reason.clone()));
        }
        Ok(check)
    }

    /// The validated settings this check runs with.
    pub fn spec(&self) -> &TcpSpec {
        &self.spec
    }
}

impl Probe for TcpCheck {
    /// Connects once (and shakes hands, with `tls`); `timeout` bounds it all.
    async fn run(&self, timeout: Duration) -> Outcome {
        let start = Instant::now();
        let result = tokio::time::timeout(timeout, self.connect()).await;
        let elapsed = start.elapsed();
        let mut outcome = match result {
            Err(_) => Outcome::new(Severity::Critical, text::timed_out(timeout), elapsed),
            Ok(Err(reason)) => Outcome::new(Severity::Critical, reason, elapsed),
            Ok(Ok(certificate)) => {
                let how = match (self.spec.starttls, self.spec.tls) {
                    (Some(p), _) => format!(" ({} STARTTLS)", p.label()),
                    (None, true) => " (TLS)".to_owned(),
                    (None, false) => String::new(),
                };
                let summary = format!(
                    "connected to {}{how} in {}",
                    self.spec.target(),
                    text::elapsed(elapsed)
                );
                let outcome = Outcome::new(Severity::Ok, summary, elapsed).with_metric(
                    Metric::new("connect_ms", metric::millis(elapsed))
                        .with_unit("ms")
                        .with_min(0.0),
                );
                self.with_certificate(outcome, certificate, SystemTime::now())
            }
        };
        if self.spec.tls && !self.spec.tls_verify {
            outcome.summary.push_str(" (unverified)");
        }
        outcome
    }
}

impl TcpCheck {
    /// Adds what the handshake's certificate says: its subject and `notAfter` as the
    /// output, and with `cert_warn` or `cert_crit` its judged expiry to the summary.
    fn with_certificate(
        &self,
        outcome: Outcome,
        certificate: Option<Result<CertInfo, String>>,
        now: SystemTime,
    ) -> Outcome {
        let limits = self.spec.cert_warn.is_some() || self.spec.cert_crit.is_some();
        let (severity, phrase, outcome) = match certificate {
            None => return outcome,
            Some(Err(reason)) => (Severity::Unknown, reason, outcome),
            Some(Ok(info)) => {
                let (severity, phrase) = cert::certificate_expiry(
                    info.not_after,
                    now,
                    self.spec.cert_warn,
                    self.spec.cert_crit,
                );
                (severity, phrase, outcome.with_output(info.describe()))
            }
        };
        if limits {
            cert::merge(outcome, severity, phrase)
        } else {
            outcome
        }
    }

    /// Connects (and, with TLS, upgrades and shakes hands); with TLS, the server's
    /// certificate as read, or why it could not be.
    async fn connect(&self) -> Result<Option<Result<CertInfo, String>>, String> {
        let addrs = validate::lookup(&self.spec.host, self.spec.port).await?;
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
        let mut stream = stream.ok_or(last)?;
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        if let Some(protocol) = self.spec.starttls {
            stream = protocol.negotiate(stream).await?;
        }
        let config = tls.as_ref().map_err(|e| format!("TLS: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        let name = ServerName::try_from(self.spec.host.clone())
            .map_err(|e| format!("TLS: `{}` cannot be verified: {e}", self.spec.host))?;
        let mut session =
            connector
                .connect(name, stream)
                .await
                .map_err(|e| match text::tls_error_in(&e) {
                    Some(tls) => text::tls_failure(tls),
                    None => format!("TLS: {}", io_reason(&e)),
                })?;
        let certificate = match session.get_ref().1.peer_certificates() {
            Some([leaf, ..]) => cert::not_after(leaf),
            _ => Err("the server sent no certificate".to_owned()),
        };
        if let Some(protocol) = self.spec.starttls {
            // Leaving politely; the answer does not matter.
            use tokio::io::AsyncWriteExt;
            let _ = session.write_all(protocol.goodbye()).await;
            let _ = session.shutdown().await;
        }
        Ok(Some(certificate))
    }
}

fn tls_config(ca_file: Option<&Path>, verify: bool) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = if verify {
        let extra = match ca_file {
            Some(path) => cert::read_ca_file(path)?,
            None => Vec::new(),
        };
        let verifier =
            rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
                .map_err(|e| format!("cannot load the platform's trusted roots: {e}"))?;
        Arc::new(verifier)
    } else {
        Arc::new(Unverified(provider.clone()))
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// `tls_verify = false`: any certificate for any name is accepted. The handshake's
/// signatures are still checked, so the peer holds the key of the certificate it sent.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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
    use crate::test_support::{assert_located, config, issues_of, try_config};

    fn check(host: &str, port: u16, tls: bool) -> TcpCheck {
        TcpCheck::new(TcpSpec {
            host: host.into(),
            port,
            tls,
            starttls: None,
            ca_file: None,
            tls_verify: true,
            cert_warn: None,
            cert_crit: None,
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

    /// A server that greets in SSH, once.
    async fn ssh_server() -> (u16, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        (port, server)
    }

    #[tokio::test]
    async fn a_server_that_does_not_speak_tls_fails_the_handshake() {
        let (port, server) = ssh_server().await;
        let r = check("localhost", port, true)
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.severity, Severity::Critical);
        assert!(r.summary.starts_with("TLS: "), "{}", r.summary);
        server.abort();
    }

    #[test]
    fn tls_settings_need_tls() {
        let spec = config::<TcpConfig>(
            "host = \"db\"\nport = 5432\ntls = true\nca_file = \"/etc/ca.pem\"\ntls_verify = false",
        )
        .validate(&mut Vec::new())
        .unwrap();
        assert_eq!(spec.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert!(!spec.tls_verify);

        let text = "host = \"db\"\nport = 5432\nca_file = \"/etc/ca.pem\"\ntls_verify = false";
        let issues = issues_of(text, TcpConfig::validate);
        let got: Vec<(&str, &str)> = issues
            .iter()
            .map(|i| (&text[i.span.clone()], i.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "\"/etc/ca.pem\"",
                    "`ca_file` applies only to a TLS handshake: add `tls = true`"
                ),
                (
                    "false",
                    "`tls_verify` applies only to a TLS handshake: add `tls = true`"
                ),
            ]
        );
    }

    fn tls_check(port: u16, ca_file: Option<PathBuf>, tls_verify: bool) -> TcpCheck {
        TcpCheck::new(TcpSpec {
            host: "localhost".into(),
            port,
            tls: true,
            starttls: None,
            ca_file,
            tls_verify,
            cert_warn: None,
            cert_crit: None,
        })
    }

    #[tokio::test]
    async fn a_tls_handshake_with_a_trusted_ca_succeeds() {
        use crate::test_support::{TestCa, TlsServer};
        let ca = TestCa::new();
        let dir = tempfile::tempdir().unwrap();
        let server = TlsServer::start(&ca.leaf(&["localhost"], 30)).await;
        let ca_file = ca.write_pem(dir.path());

        let r = tls_check(server.port, Some(ca_file), true)
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        let prefix = format!("connected to localhost:{} (TLS) in ", server.port);
        assert!(
            r.summary.starts_with(&prefix) && r.summary.ends_with("ms"),
            "{}",
            r.summary
        );

        // The platform's roots alone do not know the test CA.
        let r = tls_check(server.port, None, true)
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (
                Severity::Critical,
                "TLS: certificate signed by an unknown issuer"
            )
        );

        // Unverified: any certificate will do, and the summary says so.
        let r = tls_check(server.port, None, false)
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        assert!(
            r.summary.starts_with(&prefix) && r.summary.ends_with("ms (unverified)"),
            "{}",
            r.summary
        );
    }

    #[tokio::test]
    async fn an_expired_certificate_fails_the_handshake() {
        use crate::test_support::{TestCa, TlsServer};
        let ca = TestCa::new();
        let dir = tempfile::tempdir().unwrap();
        let server = TlsServer::start(&ca.leaf(&["localhost"], -3)).await;
        let r = tls_check(server.port, Some(ca.write_pem(dir.path())), true)
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Critical, "TLS: certificate expired 2 days ago")
        );
    }

    #[test]
    fn an_unreadable_ca_file_fails_the_build() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let spec = TcpSpec {
            host: "localhost".into(),
            port: 443,
            tls: true,
            starttls: None,
            ca_file: Some(missing.clone()),
            tls_verify: true,
            cert_warn: None,
            cert_crit: None,
        };
        let err = TcpCheck::try_new(spec.clone()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "`ca_file` `{}`: No such file or directory (os error 2)",
                missing.display()
            )
        );
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let err = TcpCheck::try_new(TcpSpec {
            ca_file: Some(junk.clone()),
            ..spec
        })
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            format!("`ca_file` `{}`: no PEM certificate in it", junk.display())
        );
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

    #[tokio::test]
    async fn every_outcome_carries_its_duration_and_a_connection_its_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let start = std::time::Instant::now();
        let r = check("127.0.0.1", port, false)
            .run(Duration::from_secs(5))
            .await;
        let took = start.elapsed();
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        assert!(
            r.duration > Duration::ZERO && r.duration <= took,
            "{:?}",
            r.duration
        );
        assert_eq!(
            r.metrics,
            [Metric::new("connect_ms", metric::millis(r.duration))
                .with_unit("ms")
                .with_min(0.0)]
        );

        // Refused: timed, nothing measured.
        drop(listener);
        let start = std::time::Instant::now();
        let r = check("127.0.0.1", port, false)
            .run(Duration::from_secs(5))
            .await;
        let took = start.elapsed();
        assert_eq!(r.summary, "connection refused");
        assert!(
            r.duration > Duration::ZERO && r.duration <= took,
            "{:?}",
            r.duration
        );
        assert_eq!(r.metrics, []);

        // A handshake that never completes: at least the timeout.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let start = std::time::Instant::now();
        let r = check("127.0.0.1", port, true)
            .run(Duration::from_millis(200))
            .await;
        let took = start.elapsed();
        assert_eq!(r.summary, "timed out after 200ms");
        assert!(r.duration >= Duration::from_millis(200), "{:?}", r.duration);
        assert!(r.duration <= took, "{:?} > {took:?}", r.duration);
        assert_eq!(r.metrics, []);
        drop(listener);
    }

    #[test]
    fn starttls_and_certificate_limits_are_validated() {
        let spec = config::<TcpConfig>(
            "host = \"mail\"\nport = 587\nstarttls = \"smtp\"\ncert_warn = \"14d\"\ncert_crit = \"3d\"",
        )
        .validate(&mut Vec::new())
        .unwrap();
        assert_eq!(
            (spec.tls, spec.starttls, spec.cert_warn, spec.cert_crit),
            (
                true,
                Some(Starttls::Smtp),
                Some(Duration::from_secs(14 * 86400)),
                Some(Duration::from_secs(3 * 86400))
            )
        );

        let text = "host = \"mail\"\nport = 25\ntls = false\nstarttls = \"lmtp\"";
        assert_located(
            text,
            TcpConfig::validate,
            &[
                (
                    "\"lmtp\"",
                    "`starttls` must be `smtp`, `imap` or `pop3`, found `lmtp`",
                ),
                (
                    "false",
                    "`starttls` upgrades the connection to TLS: remove `tls = false`",
                ),
            ],
        );

        let text = "host = \"db\"\nport = 5432\ncert_warn = \"3d\"\ncert_crit = \"14d\"";
        assert_located(
            text,
            TcpConfig::validate,
            &[
                (
                    "\"14d\"",
                    "`cert_crit` (`14d`) must be less than `cert_warn` (`3d`): it is the later, more urgent threshold",
                ),
                (
                    "\"3d\"",
                    "`cert_warn` applies only to a TLS handshake: add `tls = true`",
                ),
                (
                    "\"14d\"",
                    "`cert_crit` applies only to a TLS handshake: add `tls = true`",
                ),
            ],
        );
    }

    fn expiry_check(port: u16, starttls: Option<Starttls>, ca_file: PathBuf) -> TcpCheck {
        TcpCheck::try_new(TcpSpec {
            host: "localhost".into(),
            port,
            tls: true,
            starttls,
            ca_file: Some(ca_file),
            tls_verify: true,
            cert_warn: Some(Duration::from_secs(14 * 86400)),
            cert_crit: Some(Duration::from_secs(3 * 86400)),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_near_expiry_warns_then_is_critical_naming_the_certificate() {
        use crate::test_support::{TestCa, TlsServer};
        let ca = TestCa::new();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = ca.write_pem(dir.path());

        let leaf = ca.leaf(&["localhost"], 10);
        let server = TlsServer::start(&leaf).await;
        let r = expiry_check(server.port, None, ca_file.clone())
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.severity, Severity::Warning, "{}", r.summary);
        // Worse than the connection: the certificate alone is the summary, as for `http`.
        assert_eq!(r.summary, "certificate expires in 10 days");
        let info = cert::not_after(&leaf.cert).unwrap();
        assert_eq!(
            r.output.as_deref(),
            Some(
                format!(
                    "subject: CN=klaxon test server\nnotAfter: {}",
                    humantime::format_rfc3339_seconds(info.not_after)
                )
                .as_str()
            )
        );

        let server = TlsServer::start(&ca.leaf(&["localhost"], 2)).await;
        let r = expiry_check(server.port, None, ca_file.clone())
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.severity, Severity::Critical, "{}", r.summary);
        assert_eq!(r.summary, "certificate expires in 2 days");

        // Far from expiry: ok, and the output still names the certificate.
        let server = TlsServer::start(&ca.leaf(&["localhost"], 90)).await;
        let r = expiry_check(server.port, None, ca_file)
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        let prefix = format!("connected to localhost:{} (TLS) in ", server.port);
        assert!(
            r.summary.starts_with(&prefix)
                && r.summary.ends_with("ms; certificate expires in 90 days"),
            "{}",
            r.summary
        );
        assert!(
            r.output
                .unwrap()
                .starts_with("subject: CN=klaxon test server\nnotAfter: ")
        );
    }

    #[tokio::test]
    async fn mail_servers_behind_starttls_have_their_certificates_judged() {
        use crate::test_support::TestCa;
        use klaxon_testkit::mail::{MailServer, Protocol};
        let ca = TestCa::new();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = ca.write_pem(dir.path());
        for (protocol, starttls, days, severity) in [
            (Protocol::Smtp, Starttls::Smtp, 5, Severity::Warning),
            (Protocol::Imap, Starttls::Imap, 2, Severity::Critical),
            (Protocol::Pop3, Starttls::Pop3, 30, Severity::Ok),
        ] {
            let leaf = ca.leaf(&["localhost"], days);
            let server = MailServer::start(
                protocol,
                Some((leaf.cert.clone(), leaf.key.clone_key().into())),
            )
            .await;
            let r = expiry_check(server.port, Some(starttls), ca_file.clone())
                .run(Duration::from_secs(5))
                .await;
            assert_eq!(r.severity, severity, "{protocol:?}: {}", r.summary);
            let phrase = format!("certificate expires in {days} days");
            if severity.is_ok() {
                let prefix = format!(
                    "connected to localhost:{} ({} STARTTLS) in ",
                    server.port,
                    starttls.label()
                );
                assert!(
                    r.summary.starts_with(&prefix) && r.summary.ends_with(&format!("ms; {phrase}")),
                    "{}",
                    r.summary
                );
            } else {
                assert_eq!(r.summary, phrase);
            }
            assert!(
                r.output
                    .as_deref()
                    .unwrap()
                    .starts_with("subject: CN=klaxon test server\n"),
                "{:?}",
                r.output
            );
        }
    }

    #[tokio::test]
    async fn a_mail_server_without_starttls_says_so() {
        use crate::test_support::TestCa;
        use klaxon_testkit::mail::{MailServer, Protocol};
        let ca = TestCa::new();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = ca.write_pem(dir.path());
        for (protocol, starttls, summary) in [
            (
                Protocol::Smtp,
                Starttls::Smtp,
                "SMTP: the server does not offer STARTTLS",
            ),
            (
                Protocol::Imap,
                Starttls::Imap,
                "IMAP: STARTTLS refused: `a1 BAD unknown command`",
            ),
            (
                Protocol::Pop3,
                Starttls::Pop3,
                "POP3: STLS refused: `-ERR unknown command`",
            ),
        ] {
            let server = MailServer::start(protocol, None).await;
            let r = expiry_check(server.port, Some(starttls), ca_file.clone())
                .run(Duration::from_secs(5))
                .await;
            assert_eq!(
                (r.severity, r.summary.as_str()),
                (Severity::Critical, summary)
            );
        }

        // Data after the server agreed (a STARTTLS injection) is refused, not carried
        // into the TLS session.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let injector = tokio::spawn(async move {
            use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
            let (socket, _) = listener.accept().await.unwrap();
            let mut socket = tokio::io::BufReader::new(socket);
            socket.get_mut().write_all(b"220 hi\r\n").await.unwrap();
            let mut line = String::new();
            socket.read_line(&mut line).await.unwrap();
            socket
                .get_mut()
                .write_all(b"250-hi\r\n250 STARTTLS\r\n")
                .await
                .unwrap();
            socket.read_line(&mut line).await.unwrap();
            // The answer and an injected line in one write.
            socket
                .get_mut()
                .write_all(b"220 go ahead\r\n250 injected\r\n")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        let r = expiry_check(port, Some(Starttls::Smtp), ca_file.clone())
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (
                Severity::Critical,
                "SMTP: the server sent more after agreeing to STARTTLS"
            )
        );
        injector.abort();

        // A server that is not a mail server at all.
        let (port, server) = ssh_server().await;
        let r = expiry_check(port, Some(Starttls::Smtp), ca_file)
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (
                Severity::Critical,
                "SMTP: the greeting was `SSH-2.0-OpenSSH_9.6`"
            )
        );
        server.abort();
    }
}
