//! Test helpers: deserialize a check table from TOML text the way the root crate does,
//! through `ValueDeserializer` over a spanned value, so spans are real file offsets; and
//! real TLS: a test CA, certificates made with `rcgen`, and an HTTPS server on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::ConfigIssue;

/// Deserializes `text` (the body of a check table, without `type`) as `T`.
pub(crate) fn try_config<T: DeserializeOwned>(text: &str) -> Result<T, toml::de::Error> {
    let table = DeTable::parse(text)?;
    // The document's own span is empty; a check table spans its text, as in a file.
    let value = Spanned::new(0..text.len(), DeValue::Table(table.into_inner()));
    T::deserialize(ValueDeserializer::from(value))
}

/// Like [`try_config`], panicking with serde's message when it fails.
pub(crate) fn config<T: DeserializeOwned>(text: &str) -> T {
    try_config(text).unwrap_or_else(|e| panic!("{text}\n{e}"))
}

/// The issues validation reports for `text`; asserts that it returned no spec.
pub(crate) fn issues_of<T: DeserializeOwned, S>(
    text: &str,
    validate: impl FnOnce(T, &mut Vec<ConfigIssue>) -> Option<S>,
) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    let spec = validate(config(text), &mut issues);
    assert!(spec.is_none(), "validation of {text:?} returned a spec");
    assert!(!issues.is_empty());
    issues
}

/// [`issues_of`] as `[the text each issue points at, its message]`, to compare whole.
pub(crate) fn located<T: DeserializeOwned, S>(
    text: &str,
    validate: impl FnOnce(T, &mut Vec<ConfigIssue>) -> Option<S>,
) -> Vec<[String; 2]> {
    issues_of(text, validate)
        .into_iter()
        .map(|i| [text[i.span.clone()].to_owned(), i.message])
        .collect()
}

/// Asserts the issues validation reports for `text`, each as the text it points at and
/// its message.
pub(crate) fn assert_located<T: DeserializeOwned, S>(
    text: &str,
    validate: impl FnOnce(T, &mut Vec<ConfigIssue>) -> Option<S>,
    expected: &[(&str, &str)],
) {
    let issues = issues_of(text, validate);
    let got: Vec<(&str, &str)> = issues
        .iter()
        .map(|i| (&text[i.span.clone()], i.message.as_str()))
        .collect();
    assert_eq!(got, expected, "{text}");
}

/// A certificate and its private key, as a TLS server serves them.
pub(crate) struct Leaf {
    pub cert: rustls::pki_types::CertificateDer<'static>,
    pub key: rustls::pki_types::PrivatePkcs8KeyDer<'static>,
    /// The certificate in PEM, to trust it directly.
    pub pem: String,
}

/// A test certificate authority: certificates it signs are trusted by a client given
/// [`TestCa::write_pem`] as its `ca_file`.
pub(crate) struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "klaxon test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = days_from_now(-30);
        params.not_after = days_from_now(3650);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// Writes the CA certificate into `dir`, for `ca_file`.
    pub fn write_pem(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.pem).unwrap();
        path
    }

    /// A server certificate for `names`, valid from a month ago until `days` from now
    /// (negative: already expired).
    pub fn leaf(&self, names: &[&str], days: i64) -> Leaf {
        let (params, key) = leaf_params(names, days);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf::from(cert, key)
    }
}

/// A self-signed server certificate for `names`, valid for `days` more.
pub(crate) fn self_signed(names: &[&str], days: i64) -> Leaf {
    let (params, key) = leaf_params(names, days);
    let cert = params.self_signed(&key).unwrap();
    Leaf::from(cert, key)
}

fn leaf_params(names: &[&str], days: i64) -> (rcgen::CertificateParams, rcgen::KeyPair) {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "klaxon test server");
    params.use_authority_key_identifier_extension = true;
    params
        .extended_key_usages
        .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    params.not_before = days_from_now(-30);
    // An hour more, so "in N days" still reads N when the test looks a little later.
    params.not_after = days_from_now(days) + time::Duration::hours(1);
    (params, rcgen::KeyPair::generate().unwrap())
}

impl Leaf {
    fn from(cert: rcgen::Certificate, key: rcgen::KeyPair) -> Self {
        Self {
            pem: cert.pem(),
            cert: cert.der().clone(),
            key: rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }
}

fn days_from_now(days: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from(std::time::SystemTime::now()) + time::Duration::days(days)
}

/// An HTTPS server on an ephemeral loopback port that answers every request with
/// `200 OK` and `ok`, serving one certificate. Stops when dropped.
pub(crate) struct TlsServer {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl TlsServer {
    pub async fn start(leaf: &Leaf) -> Self {
        use std::sync::Arc;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.cert.clone()], leaf.key.clone_key().into())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that rejects the certificate ends the handshake: fine.
                    let Ok(stream) = acceptor.accept(socket).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes_of("ok")),
                        ))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { port, task }
    }

    /// `https://localhost:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }
}

fn bytes_of(text: &'static str) -> hyper::body::Bytes {
    hyper::body::Bytes::from_static(text.as_bytes())
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
