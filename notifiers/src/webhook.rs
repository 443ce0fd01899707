//! The `webhook` channel: POSTs the alert JSON of SPEC.md "Messages" exactly, optionally
//! signed with a shared `secret` (HMAC-SHA256 of the body in `X-Klaxon-Signature`, and of
//! `TIMESTAMP.BODY` in `X-Klaxon-Signature-256` with `X-Klaxon-Timestamp`). Owns its config
//! (`url`, `secret`, `ca_file`), the pure [`render`] of the body and its [`signature`],
//! and [`Webhook::send`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use klaxon_config_core::{SecretKey, Seg};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use toml::Spanned;
use url::Url;

use crate::alertmanager::Posted;
use crate::http::HttpShell;
use crate::validate::{self, ConfigIssue};
use crate::{Alert, BuildError, Channel, DeliveryError, NotifierPlugin};

/// The header that carries the body's signature when a `secret` is set. Kept for
/// receivers written before [`SIGNATURE_256_HEADER`]; it can be replayed.
pub const SIGNATURE_HEADER: &str = "x-klaxon-signature";
/// The Unix time, in seconds, at which a signed request was sent.
pub const TIMESTAMP_HEADER: &str = "x-klaxon-timestamp";
/// The signature of `TIMESTAMP.BODY` ([`timestamped_signature`]): a receiver that also
/// checks the timestamp is recent refuses replays.
pub const SIGNATURE_256_HEADER: &str = "x-klaxon-signature-256";

/// The raw `[notifiers.NAME]` table of `type = "webhook"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    url: Spanned<String>,
    secret: Option<Spanned<SecretString>>,
    ca_file: Option<Spanned<String>>,
}

impl NotifierPlugin for WebhookConfig {
    type Spec = WebhookSpec;
    type Channel = Webhook;

    const SECRET_KEYS: &'static [SecretKey] = &[
        SecretKey::always(&[Seg::Key("secret")]),
        SecretKey::url(&[Seg::Key("url")]),
    ];

    fn build(spec: &WebhookSpec, client: &reqwest::Client) -> Result<Webhook, BuildError> {
        Webhook::new(spec.clone(), client)
    }

    /// Checks the URL (`http` or `https`), the secret (not empty) and `ca_file`, pushing
    /// every problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<WebhookSpec> {
        let url = validate::http_url(&self.url, "url", issues);
        let secret = match self.secret {
            None => Some(None),
            Some(secret) => validate::non_empty_secret(secret, "secret", issues).map(Some),
        };
        let ca_file = validate::ca_file(self.ca_file, issues);
        Some(WebhookSpec {
            url: url?,
            secret: secret?,
            ca_file: ca_file?,
        })
    }
}

/// A validated `webhook` notifier.
#[derive(Clone)]
pub struct WebhookSpec {
    /// Where the alert JSON is POSTed.
    pub url: Url,
    /// Signs each body when set; never shown.
    pub secret: Option<SecretString>,
    /// An extra trusted CA (PEM), as written; read when the client is built.
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for WebhookSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSpec")
            .field("url", &self.url.as_str())
            .field("secret", &self.secret.as_ref().map(|_| format_args!("***")))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The body a webhook receives: the [`Alert`] serialized as JSON, field for field.
pub fn render(alert: &Alert) -> Vec<u8> {
    #[allow(clippy::expect_used)]
    // Strings, numbers and timestamps, no maps with non-string keys: this cannot fail.
    serde_json::to_vec(alert).expect("an alert serializes to JSON")
}

/// `sha256=` and the lowercase hex HMAC-SHA256 of `body` keyed with `secret`: the value
/// of [`SIGNATURE_HEADER`]. A receiver recomputes it over the raw body it got.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hmac_sha256_hex(secret, body))
}

/// The lowercase hex HMAC-SHA256 of `body` keyed with `secret` (also what a button's
/// scoped token is: [`crate::buttons::scoped_token`]).
pub fn hmac_sha256_hex(secret: &[u8], body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, body);
    let mut hex = String::with_capacity(2 * tag.as_ref().len());
    for byte in tag.as_ref() {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

/// [`signature`] of `TIMESTAMP.BODY`, `timestamp` in decimal Unix seconds: the value of
/// [`SIGNATURE_256_HEADER`].
pub fn timestamped_signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    signature(secret, &signed)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A `webhook` notifier ready to send.
#[derive(Debug)]
pub struct Webhook {
    spec: WebhookSpec,
    http: HttpShell,
}

impl Webhook {
    /// How long one delivery may take, answer included.
    pub const TIMEOUT: Duration = Duration::from_secs(10);

    /// A notifier posting through `client` (the agent's shared HTTP client), or through
    /// a client of its own that also trusts `ca_file`. Fails with
    /// [`BuildError::Setup`] when that file cannot be read or holds no certificate.
    pub fn new(spec: WebhookSpec, client: &reqwest::Client) -> Result<Self, BuildError> {
        let http = HttpShell::new(client, spec.ca_file.as_deref(), Self::TIMEOUT)?;
        Ok(Self { spec, http })
    }

    /// The same notifier with another delivery deadline than [`Webhook::TIMEOUT`].
    pub fn with_timeout(self, timeout: Duration) -> Self {
        let http = self.http.with_timeout(timeout);
        Self { http, ..self }
    }
}

impl Channel for Webhook {
    /// POSTs [`render`]'s body with `Content-Type: application/json`,
    /// `User-Agent: klaxon/VERSION` and, with a `secret`, [`SIGNATURE_HEADER`],
    /// [`TIMESTAMP_HEADER`] (now) and [`SIGNATURE_256_HEADER`]. 2xx is
    /// delivered; 408, 429 (with its `Retry-After`), 5xx, connection errors and timeouts
    /// are [`DeliveryError::Retry`]; other statuses are [`DeliveryError::Reject`]. No
    /// reason contains the URL or the secret.
    async fn send(&self, alert: &Alert) -> Result<(), DeliveryError> {
        self.prepare(alert).finish().await
    }

    /// Renders, signs and builds the request at once, and writes it when `release`
    /// says so: what precedes the write does not wait for the outbox's commit.
    async fn send_when(&self, alert: &Alert, release: crate::Release) -> Option<Posted> {
        let prepared = self.prepare(alert);
        if !release.await {
            return None;
        }
        Some(Posted {
            result: prepared.finish().await,
            failed: Vec::new(),
        })
    }
}

impl Webhook {
    /// The POST of `alert`, ready to be written (see [`Channel::send`]).
    fn prepare(
        &self,
        alert: &Alert,
    ) -> crate::http::Prepared<
        impl Future<Output = reqwest::Result<reqwest::Response>> + Send + use<>,
        Url,
    > {
        let body = render(alert);
        let mut headers = HeaderMap::new();
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(crate::http::USER_AGENT),
        );
        if let Some(secret) = &self.spec.secret {
            let secret = secret.expose_secret().as_bytes();
            // Each attempt signs anew, so a retry carries its own time.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let values = [
                (SIGNATURE_HEADER, signature(secret, &body)),
                (TIMESTAMP_HEADER, now.to_string()),
                (
                    SIGNATURE_256_HEADER,
                    timestamped_signature(secret, now, &body),
                ),
            ];
            for (name, value) in values {
                // Always ASCII: digits, `sha256=` and hex digits.
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(HeaderName::from_static(name), value);
                }
            }
        }
        self.http.prepare_post(self.spec.url.clone(), headers, body)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fixtures::{self, span_of};
    use klaxon_testkit::{Response, Server};
    use serde_json::{Value, json};

    fn validate(toml: &str) -> (Option<WebhookSpec>, Vec<ConfigIssue>) {
        fixtures::validated::<WebhookConfig>(toml)
    }

    #[test]
    fn accepts_the_spec_example() {
        let (spec, issues) =
            validate("url = \"https://example.com/hook\"\nsecret = \"s3cr3t-SECRET\"");
        assert_eq!(issues, []);
        let spec = spec.unwrap();
        assert_eq!(spec.url.as_str(), "https://example.com/hook");
        assert_eq!(
            spec.secret.as_ref().map(|s| s.expose_secret()),
            Some("s3cr3t-SECRET")
        );
        assert_eq!(
            format!("{spec:?}"),
            "WebhookSpec { url: \"https://example.com/hook\", secret: Some(***), ca_file: None }"
        );
        let (spec, issues) = validate("url = \"http://10.0.0.7:8080/hook\"");
        assert_eq!(issues, []);
        assert!(spec.is_some_and(|s| s.secret.is_none()));
    }

    #[test]
    fn collects_every_problem() {
        let toml = "url = \"ftp://example.com/hook\"\nsecret = \"\"";
        let (spec, issues) = validate(toml);
        assert!(spec.is_none());
        assert_eq!(
            issues,
            [
                ConfigIssue::new(
                    span_of(toml, "\"ftp://example.com/hook\""),
                    "`url`: expected an `http` or `https` URL, found `ftp://example.com/hook`"
                ),
                ConfigIssue::new(span_of(toml, "\"\""), "`secret` must not be empty"),
            ]
        );
        let toml = "url = \"example.com/hook\"";
        assert_eq!(
            validate(toml).1,
            [ConfigIssue::new(
                span_of(toml, "\"example.com/hook\""),
                "`url`: `example.com/hook` is not a valid URL (relative URL without a base)"
            )]
        );
    }

    #[test]
    fn rejects_unknown_keys() {
        let error =
            toml::from_str::<WebhookConfig>("url = \"https://x\"\nmethod = \"PUT\"").unwrap_err();
        assert!(
            error.message().starts_with("unknown field `method`"),
            "{error}"
        );
    }

    // --- rendering ---

    fn rendered(alert: &Alert) -> Value {
        serde_json::from_slice(&render(alert)).unwrap()
    }

    /// The fields every event of the fixture outage shares.
    fn common() -> Value {
        json!({
            "version": 1,
            "job": "api",
            "agent": "macbook",
            "check": {"type": "http", "target": "https://api.example.com/health"},
            "max_attempts": 3,
            "failing_since": "2026-03-29T10:15:02+11:00",
            "id": "api-20260329T001502Z",
        })
    }

    fn with(mut base: Value, fields: Value) -> Value {
        let (Value::Object(base_map), Value::Object(fields)) = (&mut base, fields) else {
            panic!("objects expected");
        };
        base_map.extend(fields);
        base
    }

    #[test]
    fn renders_a_failure() {
        assert_eq!(
            rendered(&fixtures::failure()),
            with(
                common(),
                json!({
                    "event": "failure",
                    "severity": "critical",
                    "summary": "HTTP 503 Service Unavailable",
                    "output": "upstream connect error\nreset reason: overflow\n",
                    "attempts": 3,
                    "elapsed_ms": 7213,
                    "started_at": "2026-03-29T10:15:02+11:00",
                    "last_success": "2026-03-29T10:10:01+11:00",
                    "next_run": "2026-03-29T10:20:00+11:00",
                    "downtime_ms": null,
                })
            )
        );
    }

    #[test]
    fn renders_a_reminder() {
        assert_eq!(
            rendered(&fixtures::reminder()),
            with(
                common(),
                json!({
                    "event": "reminder",
                    "severity": "critical",
                    "summary": "HTTP 503 Service Unavailable",
                    "output": "upstream connect error\nreset reason: overflow\n",
                    "attempts": 3,
                    "elapsed_ms": 7213,
                    "started_at": "2026-03-29T14:15:03+11:00",
                    "last_success": "2026-03-29T10:10:01+11:00",
                    "next_run": "2026-03-29T14:20:00+11:00",
                    "downtime_ms": null,
                })
            )
        );
    }

    #[test]
    fn renders_an_update() {
        assert_eq!(
            rendered(&fixtures::update()),
            with(
                common(),
                json!({
                    "event": "update",
                    "severity": "warning",
                    "summary": "latency 2.4s > 2s",
                    "output": null,
                    "attempts": 1,
                    "elapsed_ms": 2412,
                    "started_at": "2026-03-29T10:35:00+11:00",
                    "last_success": "2026-03-29T10:10:01+11:00",
                    "next_run": "2026-03-29T10:40:00+11:00",
                    "downtime_ms": null,
                })
            )
        );
    }

    #[test]
    fn renders_a_recovery() {
        assert_eq!(
            rendered(&fixtures::recovery()),
            with(
                common(),
                json!({
                    "event": "recovery",
                    "severity": "ok",
                    "summary": "HTTP 200 OK",
                    "output": null,
                    "attempts": 1,
                    "elapsed_ms": 180,
                    "started_at": "2026-03-29T11:20:01+11:00",
                    "last_success": "2026-03-29T11:20:01+11:00",
                    "next_run": "2026-03-29T11:25:00+11:00",
                    "downtime_ms": 3_900_000,
                })
            )
        );
    }

    #[test]
    fn the_body_is_the_alert_and_reads_back_as_one() {
        for alert in [fixtures::failure(), fixtures::recovery()] {
            let back: Alert = serde_json::from_slice(&render(&alert)).unwrap();
            assert_eq!(back, alert);
        }
    }

    #[test]
    fn signatures_are_hmac_sha256_in_lowercase_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    // --- delivery against a real local receiver ---

    const SECRET: &str = "s3cr3t-SECRET";

    fn webhook(url: &str, secret: Option<&str>) -> Webhook {
        let spec = WebhookSpec {
            url: Url::parse(url).unwrap(),
            secret: secret.map(SecretString::from),
            ca_file: None,
        };
        Webhook::new(spec, &reqwest::Client::new()).unwrap()
    }

    /// What a receiver does: recompute the signature over the raw body and compare.
    fn verifies(secret: &str, body: &[u8], header: &str) -> bool {
        let Some(hex) = header.strip_prefix("sha256=") else {
            return false;
        };
        let Some(tag) = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()
        else {
            return false;
        };
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
        aws_lc_rs::hmac::verify(&key, body, &tag).is_ok()
    }

    #[tokio::test]
    async fn posts_the_alert_json_signed() {
        let server = Server::start(|_| Response::status(204)).await;
        let alert = fixtures::failure();
        webhook(&server.url("/hook?team=ops"), Some(SECRET))
            .send(&alert)
            .await
            .unwrap();
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/hook?team=ops");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(
            request.header("user-agent"),
            Some(concat!("klaxon/", env!("CARGO_PKG_VERSION")))
        );
        assert_eq!(request.body, render(&alert));
        let signed = request.header("x-klaxon-signature").unwrap();
        assert_eq!(signed, signature(SECRET.as_bytes(), &request.body));
        assert!(verifies(SECRET, &request.body, signed));
        // A changed body, or another secret, no longer matches.
        let mut tampered = request.body.clone();
        let at = tampered.iter().position(|b| *b == b'3').unwrap();
        tampered[at] = b'4';
        assert!(!verifies(SECRET, &tampered, signed));
        assert!(!verifies("another secret", &request.body, signed));
    }

    #[tokio::test]
    async fn signs_the_timestamp_with_the_body() {
        let server = Server::start(|_| Response::status(204)).await;
        webhook(&server.url("/hook"), Some(SECRET))
            .send(&fixtures::failure())
            .await
            .unwrap();
        let request = &server.requests()[0];
        // What a receiver does: the timestamp is recent, and the signature of
        // `TIMESTAMP.BODY`, over the exact bytes received, matches.
        let timestamp = request.header("x-klaxon-timestamp").unwrap();
        let sent: u64 = timestamp.parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now.abs_diff(sent) <= 5, "sent {sent}, now {now}");
        let signed = request.header("x-klaxon-signature-256").unwrap();
        let mut message = format!("{timestamp}.").into_bytes();
        message.extend_from_slice(&request.body);
        assert!(verifies(SECRET, &message, signed));
        assert_eq!(
            signed,
            timestamped_signature(SECRET.as_bytes(), sent, &request.body)
        );
        // The old header is still there, over the body alone.
        let old = request.header("x-klaxon-signature").unwrap();
        assert!(verifies(SECRET, &request.body, old));
        // Another time no longer matches: a replayed body cannot be given a new date.
        let mut replayed = format!("{}.", sent + 1).into_bytes();
        replayed.extend_from_slice(&request.body);
        assert!(!verifies(SECRET, &replayed, signed));
        assert!(!verifies(SECRET, &request.body, signed));
    }

    /// `send_when` builds the request at once and writes nothing until it is
    /// released: then the same signed POST as `send`'s; released with `false`, it
    /// writes nothing at all.
    #[tokio::test]
    async fn a_prepared_post_is_written_only_once_released() {
        let server = Server::start(|_| Response::status(204)).await;
        let hook = webhook(&server.url("/hook"), Some(SECRET));
        let alert = fixtures::failure();
        let (go, release) = tokio::sync::oneshot::channel::<bool>();
        let sending = hook.send_when(
            &alert,
            Box::pin(async move { release.await.unwrap_or(false) }),
        );
        let sending = async {
            let posted = sending.await;
            (posted, server.requests().len())
        };
        let check = async {
            // Whatever the send did meanwhile, it wrote nothing before its release.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let before = server.requests().len();
            go.send(true).unwrap();
            before
        };
        let ((posted, after), before) = tokio::join!(sending, check);
        assert_eq!(before, 0, "written before it was released");
        assert_eq!(posted.unwrap().result, Ok(()));
        assert_eq!(after, 1);
        let request = &server.requests()[0];
        assert_eq!(request.body, render(&alert));
        let signed = request.header("x-klaxon-signature").unwrap();
        assert!(verifies(SECRET, &request.body, signed));

        let refused = hook
            .send_when(&alert, Box::pin(std::future::ready(false)))
            .await;
        assert_eq!(refused, None);
        assert_eq!(
            server.requests().len(),
            1,
            "a refused release wrote nothing"
        );
    }

    #[test]
    fn a_timestamped_signature_signs_timestamp_dot_body() {
        assert_eq!(
            timestamped_signature(b"Jefe", 1_700_000_000, b"{}"),
            signature(b"Jefe", b"1700000000.{}")
        );
    }

    #[tokio::test]
    async fn without_a_secret_there_is_no_signature() {
        let server = Server::start(|_| Response::ok("")).await;
        webhook(&server.url("/hook"), None)
            .send(&fixtures::recovery())
            .await
            .unwrap();
        let request = &server.requests()[0];
        assert_eq!(request.header("x-klaxon-signature"), None);
        assert_eq!(request.header("x-klaxon-signature-256"), None);
        assert_eq!(request.header("x-klaxon-timestamp"), None);
        assert_eq!(request.json(), rendered(&fixtures::recovery()));
    }

    #[tokio::test]
    async fn answers_are_classified_without_showing_url_or_secret() {
        let cases = [
            (
                Response::status(503).body("down for maintenance"),
                DeliveryError::Retry {
                    reason: "HTTP 503 Service Unavailable: down for maintenance".into(),
                    after: None,
                },
            ),
            (
                Response::status(429).header("Retry-After", "7"),
                DeliveryError::Retry {
                    reason: "HTTP 429 Too Many Requests".into(),
                    after: Some(Duration::from_secs(7)),
                },
            ),
            (
                Response::status(401).body("bad signature"),
                DeliveryError::Reject {
                    reason: "HTTP 401 Unauthorized: bad signature".into(),
                },
            ),
        ];
        for (response, expected) in cases {
            let server = Server::start(move |_| response.clone()).await;
            let url = server.url("/hook/TOKEN");
            let error = webhook(&url, Some(SECRET))
                .send(&fixtures::failure())
                .await
                .unwrap_err();
            assert_eq!(error, expected);
            let text = format!("{error} {error:?}");
            assert!(!text.contains(&url) && !text.contains(SECRET), "{text}");
        }
    }

    #[tokio::test]
    async fn a_hanging_receiver_times_out_and_is_retried() {
        let server = Server::start(|_| Response::ok("").delay(Duration::from_secs(30))).await;
        let error = webhook(&server.url("/hook"), None)
            .with_timeout(Duration::from_millis(200))
            .send(&fixtures::failure())
            .await
            .unwrap_err();
        assert_eq!(
            error,
            DeliveryError::Retry {
                reason: "no answer within 200ms".into(),
                after: None,
            }
        );
    }

    // --- ca_file ---

    fn with_ca(ca_file: &std::path::Path) -> Result<Webhook, BuildError> {
        let spec = WebhookSpec {
            url: Url::parse("https://hooks.internal.example/hook").unwrap(),
            secret: None,
            ca_file: Some(ca_file.to_path_buf()),
        };
        Webhook::new(spec, &reqwest::Client::new())
    }

    #[test]
    fn a_ca_file_gets_a_client_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, crate::fixtures::TEST_CA_PEM).unwrap();
        assert!(with_ca(&good).is_ok());

        let missing = dir.path().join("missing.pem");
        let error = with_ca(&missing).unwrap_err();
        let shown = missing.display();
        assert!(
            error
                .to_string()
                .starts_with(&format!("cannot read `ca_file` `{shown}`: ")),
            "{error}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert_eq!(
            with_ca(&empty).unwrap_err().to_string(),
            format!("`ca_file` `{}` holds no PEM certificate", empty.display())
        );
    }
}
