//! The `gotify` channel: pushes to a self-hosted Gotify server (a POST of `title`,
//! `message` and `priority` as JSON to `/message`, the application's token in
//! `X-Gotify-Key`). Owns its config, the pure [`render`] of an alert (and
//! [`render_digest`] of several), and [`Gotify::send`].
//!
//! The API: <https://gotify.net/docs/pushmsg> (the request and its token header),
//! <https://gotify.net/api-docs#/message/createMessage> (the body),
//! <https://gotify.net/docs/msgextras> (`client::display` keeps the text plain), and
//! <https://github.com/gotify/android#message-priorities> (what each priority does on a
//! phone: 4 to 7 make a sound, 8 to 10 also vibrate).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use klaxon_config_core::{SecretKey, Seg};
use reqwest::header::{HeaderMap, HeaderName};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use toml::Spanned;
use url::Url;

use crate::http::{self, HttpShell};
use crate::push::{self, Urgency};
use crate::text;
use crate::validate::{self, ConfigIssue};
use crate::{Alert, BuildError, Channel, DeliveryError, NotifierPlugin};

/// The header that carries the application's token.
pub const TOKEN_HEADER: &str = "x-gotify-key";
/// How long a message may be (Gotify sets no limit; a phone shows this much whole).
pub const MESSAGE_CHARS: usize = 4_096;

/// The raw `[notifiers.NAME]` table of `type = "gotify"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GotifyConfig {
    url: Spanned<String>,
    token: Spanned<SecretString>,
    ca_file: Option<Spanned<String>>,
}

impl NotifierPlugin for GotifyConfig {
    type Spec = GotifySpec;
    type Channel = Gotify;

    const SECRET_KEYS: &'static [SecretKey] = &[
        SecretKey::always(&[Seg::Key("token")]),
        SecretKey::url(&[Seg::Key("url")]),
    ];

    /// Checks the server's URL, the token (not empty) and `ca_file`, pushing every
    /// problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<GotifySpec> {
        let url = validate::http_url(&self.url, "url", issues);
        let token = validate::non_empty_secret(self.token, "token", issues);
        let ca_file = validate::ca_file(self.ca_file, issues);
        Some(GotifySpec {
            url: url?,
            token: token?,
            ca_file: ca_file?,
        })
    }

    fn build(spec: &GotifySpec, client: &reqwest::Client) -> Result<Gotify, BuildError> {
        Gotify::new(spec.clone(), client)
    }
}

/// A validated `gotify` notifier.
#[derive(Clone)]
pub struct GotifySpec {
    /// The server; messages go to `/message` below it.
    pub url: Url,
    /// The application's token; never shown.
    pub token: SecretString,
    /// An extra trusted CA (PEM), as written; read when the client is built.
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for GotifySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GotifySpec")
            .field("url", &self.url.as_str())
            .field("token", &format_args!("***"))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Gotify's priority: 8 (sound and vibration) for a critical alert, 5 (sound) for a
/// warning, 4 (sound, the lowest that makes one) for a recovery or a test.
fn priority(urgency: Urgency) -> u8 {
    match urgency {
        Urgency::Critical => 8,
        Urgency::Warning => 5,
        Urgency::Low => 4,
    }
}

/// Renders an alert: `title` ([`text::title`]), `message` (the facts and output,
/// [`push::body`], within [`MESSAGE_CHARS`]), `priority`, and `extras` asking clients
/// to show the message as plain text, so nothing in it is markup and nothing needs
/// escaping.
pub fn render(alert: &Alert) -> Value {
    message(
        &text::title(alert),
        &push::body(alert, MESSAGE_CHARS),
        push::urgency(alert),
    )
}

/// Renders several alerts as one message: [`text::digest_title`], one line per alert
/// ([`push::digest_body`]), the priority of the most urgent.
pub fn render_digest(alerts: &[Alert]) -> Value {
    message(
        &text::digest_title(alerts),
        &push::digest_body(alerts, MESSAGE_CHARS),
        push::most_urgent(alerts),
    )
}

fn message(title: &str, body: &str, urgency: Urgency) -> Value {
    json!({
        "title": title,
        "message": body,
        "priority": priority(urgency),
        "extras": {"client::display": {"contentType": "text/plain"}},
    })
}

/// A `gotify` notifier ready to send.
#[derive(Debug)]
pub struct Gotify {
    spec: GotifySpec,
    /// `/message` below the server's URL.
    endpoint: Url,
    http: HttpShell,
}

impl Gotify {
    /// How long one delivery may take, answer included.
    pub const TIMEOUT: Duration = Duration::from_secs(10);

    /// A notifier posting through `client`, or through a client of its own that also
    /// trusts `ca_file` (failing with [`BuildError::Setup`] when it cannot be read).
    pub fn new(spec: GotifySpec, client: &reqwest::Client) -> Result<Self, BuildError> {
        let http = HttpShell::new(client, spec.ca_file.as_deref(), Self::TIMEOUT)?;
        let endpoint = push::endpoint(&spec.url, "message");
        Ok(Self {
            spec,
            endpoint,
            http,
        })
    }

    /// The same notifier with another delivery deadline than [`Gotify::TIMEOUT`].
    pub fn with_timeout(self, timeout: Duration) -> Self {
        let http = self.http.with_timeout(timeout);
        Self { http, ..self }
    }

    async fn post(&self, message: &Value) -> Result<(), DeliveryError> {
        let token = self.spec.token.expose_secret();
        let value = http::secret_header(token, "the token cannot be sent in an HTTP header")?;
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static(TOKEN_HEADER), value);
        let body = message.to_string().into_bytes();
        let sent = (self.http)
            .post_json_with(self.endpoint.clone(), headers, body)
            .await;
        http::masked(sent, &[token])
    }
}

impl Channel for Gotify {
    const MERGES: bool = true;

    /// POSTs [`render`]'s JSON to `/message` with the token in [`TOKEN_HEADER`]. 2xx
    /// is delivered; 408, 429 (with its `Retry-After`), 5xx, connection errors and
    /// timeouts are [`DeliveryError::Retry`]; other statuses are
    /// [`DeliveryError::Reject`]. No reason shows the token.
    async fn send(&self, alert: &Alert) -> Result<(), DeliveryError> {
        self.post(&render(alert)).await
    }

    /// POSTs [`render_digest`]'s JSON, classified as [`Gotify::send`]'s.
    async fn send_digest(&self, alerts: &[Alert]) -> Result<(), DeliveryError> {
        self.post(&render_digest(alerts)).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::push::wording;
    use klaxon_testkit::{Response, Server};

    fn validate(toml: &str) -> (Option<GotifySpec>, Vec<ConfigIssue>) {
        fixtures::validated::<GotifyConfig>(toml)
    }

    #[test]
    fn validates_its_table() {
        let (spec, issues) =
            validate("url = \"https://push.example.com/gotify\"\ntoken = \"AbC-SECRET\"");
        assert_eq!(issues, []);
        let spec = spec.unwrap();
        assert_eq!(
            format!("{spec:?}"),
            "GotifySpec { url: \"https://push.example.com/gotify\", token: ***, ca_file: None }"
        );
        let toml = "url = \"push.example.com\"\ntoken = \"\"";
        let (spec, issues) = validate(toml);
        assert!(spec.is_none());
        assert_eq!(
            issues,
            [
                ConfigIssue::new(
                    6..24,
                    "`url`: `push.example.com` is not a valid URL (relative URL without a base)"
                ),
                ConfigIssue::new(33..35, "`token` must not be empty"),
            ]
        );
        let error = toml::from_str::<GotifyConfig>("url = \"https://x\"\ntoken = \"t\"\napp = 1")
            .unwrap_err();
        assert!(
            error.message().starts_with("unknown field `app`"),
            "{error}"
        );
        let error = toml::from_str::<GotifyConfig>("url = \"https://x\"").unwrap_err();
        assert_eq!(error.message(), "missing field `token`");
    }

    fn expected(title: &str, message: &str, priority: u8) -> Value {
        json!({
            "title": title,
            "message": message,
            "priority": priority,
            "extras": {"client::display": {"contentType": "text/plain"}},
        })
    }

    #[test]
    fn renders_each_event_and_a_digest() {
        let cases = [
            (
                render(&fixtures::failure()),
                expected(wording::FAILURE_TITLE, wording::FAILURE_BODY, 8),
            ),
            (
                render(&fixtures::update()),
                expected(wording::UPDATE_TITLE, wording::UPDATE_BODY, 5),
            ),
            (
                render(&fixtures::reminder()),
                expected(wording::REMINDER_TITLE, &wording::reminder_body(), 8),
            ),
            (
                render(&fixtures::recovery()),
                expected(wording::RECOVERY_TITLE, wording::RECOVERY_BODY, 4),
            ),
            (
                render_digest(&fixtures::digest()),
                expected(wording::DIGEST_TITLE, wording::DIGEST_BODY, 8),
            ),
        ];
        for (rendered, json) in cases {
            assert_eq!(rendered, json);
        }
    }

    fn gotify(url: &str) -> Gotify {
        let spec = GotifySpec {
            url: url.parse().unwrap(),
            token: "AbC-SECRET".into(),
            ca_file: None,
        };
        Gotify::new(spec, &reqwest::Client::new()).unwrap()
    }

    #[tokio::test]
    async fn posts_to_message_below_the_base_path() {
        let server = Server::start(|_| Response::ok("{\"id\":1}")).await;
        let alert = fixtures::failure();
        for (base, path) in [("", "/message"), ("/gotify/", "/gotify/message")] {
            gotify(&server.url(base)).send(&alert).await.unwrap();
            let requests = server.requests();
            let request = requests.last().unwrap();
            assert_eq!(request.method, "POST");
            assert_eq!(request.path, path);
            assert_eq!(request.header("x-gotify-key"), Some("AbC-SECRET"));
            assert_eq!(request.header("content-type"), Some("application/json"));
            assert_eq!(request.json(), render(&alert));
        }
        let alerts = fixtures::digest();
        gotify(&server.url("")).send_digest(&alerts).await.unwrap();
        assert_eq!(
            server.requests().last().unwrap().json(),
            render_digest(&alerts)
        );
    }

    #[tokio::test]
    async fn answers_are_classified_and_the_token_never_shown() {
        let send = |url: String, timeout| async move {
            let gotify = gotify(&url).with_timeout(timeout);
            gotify.send(&fixtures::failure()).await
        };
        push::assert_answers_classified(send, &["AbC-SECRET"]).await;
    }
}
