//! The `pushover` channel: a POST of `token`, `user`, `title`, `message`, `priority`
//! and `timestamp` as an HTML form to Pushover's messages API. Owns its config, the pure
//! [`render`] of an alert's fields (and [`render_digest`] of several), and
//! [`Pushover::send`].
//!
//! The API: <https://pushover.net/api> (the parameters, `priority` 1 for high and 0 for
//! normal, the limits of 250 characters of title and 1,024 of message, a 4xx never
//! to be retried, and "wait at least 5 seconds" before retrying a 5xx).

use std::fmt;
use std::time::Duration;

use klaxon_config_core::{SecretKey, Seg};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use toml::Spanned;
use url::Url;

use crate::http::{self, HttpShell};
use crate::push::{self, Urgency};
use crate::text::{self, ELLIPSIS};
use crate::validate::{self, ConfigIssue};
use crate::{Alert, BuildError, Channel, DeliveryError, NotifierPlugin};

/// Where messages go when `api_url` is not set.
pub const DEFAULT_API_URL: &str = "https://api.pushover.net/1/messages.json";
/// Pushover's limit on a title.
pub const TITLE_CHARS: usize = 250;
/// Pushover's limit on a message.
pub const MESSAGE_CHARS: usize = 1_024;
/// Pushover asks for at least this long between a failed try and the next.
pub const MIN_RETRY_WAIT: Duration = Duration::from_secs(5);

/// The raw `[notifiers.NAME]` table of `type = "pushover"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushoverConfig {
    token: Spanned<SecretString>,
    user: Spanned<SecretString>,
    api_url: Option<Spanned<String>>,
}

impl NotifierPlugin for PushoverConfig {
    type Spec = PushoverSpec;
    type Channel = Pushover;

    const SECRET_KEYS: &'static [SecretKey] = &[
        SecretKey::always(&[Seg::Key("token")]),
        SecretKey::always(&[Seg::Key("user")]),
        SecretKey::url(&[Seg::Key("api_url")]),
    ];

    /// Checks the application token and user key (not empty) and `api_url`, pushing
    /// every problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<PushoverSpec> {
        let token = validate::non_empty_secret(self.token, "token", issues);
        let user = validate::non_empty_secret(self.user, "user", issues);
        let api_url = match &self.api_url {
            Some(url) => validate::http_url(url, "api_url", issues),
            None => DEFAULT_API_URL.parse().ok(),
        };
        Some(PushoverSpec {
            token: token?,
            user: user?,
            api_url: api_url?,
        })
    }

    fn build(spec: &PushoverSpec, client: &reqwest::Client) -> Result<Pushover, BuildError> {
        Ok(Pushover::new(spec.clone(), client.clone()))
    }
}

/// A validated `pushover` notifier.
#[derive(Clone)]
pub struct PushoverSpec {
    /// The application's API token; never shown.
    pub token: SecretString,
    /// The user or group key to notify; never shown.
    pub user: SecretString,
    /// The messages endpoint.
    pub api_url: Url,
}

impl fmt::Debug for PushoverSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushoverSpec")
            .field("token", &format_args!("***"))
            .field("user", &format_args!("***"))
            .field("api_url", &self.api_url.as_str())
            .finish()
    }
}

/// Pushover's priority: 1 (high: bypasses quiet hours) for a critical alert, 0
/// (normal) for the rest.
fn priority(urgency: Urgency) -> u8 {
    match urgency {
        Urgency::Critical => 1,
        Urgency::Warning | Urgency::Low => 0,
    }
}

/// The fields of an alert's message, less the credentials: `title` ([`text::title`],
/// within [`TITLE_CHARS`]), `message` (the facts and output, [`push::body`], within
/// [`MESSAGE_CHARS`]), `priority`, and `timestamp` (the Unix time the run started, so
/// a late delivery shows when it happened). Plain text: without `html = 1` Pushover
/// renders no markup, so nothing needs escaping.
pub fn render(alert: &Alert) -> Value {
    fields(
        &text::title(alert),
        &push::body(alert, MESSAGE_CHARS),
        push::urgency(alert),
        alert.started_at.timestamp(),
    )
}

/// The fields of one message for several alerts: [`text::digest_title`], one line per
/// alert ([`push::digest_body`]), the priority of the most urgent and the time of the
/// latest.
pub fn render_digest(alerts: &[Alert]) -> Value {
    let latest = alerts
        .iter()
        .map(|a| a.started_at.timestamp())
        .max()
        .unwrap_or_default();
    fields(
        &text::digest_title(alerts),
        &push::digest_body(alerts, MESSAGE_CHARS),
        push::most_urgent(alerts),
        latest,
    )
}

fn fields(title: &str, message: &str, urgency: Urgency, timestamp: i64) -> Value {
    json!({
        "title": text::truncate(title, TITLE_CHARS, ELLIPSIS),
        "message": message,
        "priority": priority(urgency),
        "timestamp": timestamp,
    })
}

/// The form POSTed: `token`, `user`, then each of `fields` in the order of their names
/// (strings as they are, numbers in decimal), `application/x-www-form-urlencoded`.
pub fn form(token: &str, user: &str, fields: &Value) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("token", token).append_pair("user", user);
    for (name, value) in fields.as_object().into_iter().flatten() {
        match value {
            Value::String(text) => form.append_pair(name, text),
            other => form.append_pair(name, &other.to_string()),
        };
    }
    form.finish()
}

/// A `pushover` notifier ready to send.
#[derive(Debug)]
pub struct Pushover {
    spec: PushoverSpec,
    http: HttpShell,
}

impl Pushover {
    /// How long one delivery may take, answer included.
    pub const TIMEOUT: Duration = Duration::from_secs(10);

    pub fn new(spec: PushoverSpec, client: reqwest::Client) -> Self {
        let http = HttpShell::shared(client, Self::TIMEOUT);
        Self { spec, http }
    }

    /// The same notifier with another delivery deadline than [`Pushover::TIMEOUT`].
    pub fn with_timeout(self, timeout: Duration) -> Self {
        let http = self.http.with_timeout(timeout);
        Self { http, ..self }
    }

    async fn post(&self, fields: &Value) -> Result<(), DeliveryError> {
        let (token, user) = (
            self.spec.token.expose_secret(),
            self.spec.user.expose_secret(),
        );
        let body = form(token, user, fields).into_bytes();
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let sent = (self.http)
            .post_json_with(self.spec.api_url.clone(), headers, body)
            .await;
        let encoded: Vec<String> = [token, user]
            .iter()
            .map(|s| url::form_urlencoded::byte_serialize(s.as_bytes()).collect())
            .collect();
        let sent = http::masked(sent, &[token, user, &encoded[0], &encoded[1]]);
        sent.map_err(|error| match error {
            DeliveryError::Retry { reason, after } => DeliveryError::Retry {
                reason,
                after: Some(after.map_or(MIN_RETRY_WAIT, |a| a.max(MIN_RETRY_WAIT))),
            },
            reject => reject,
        })
    }
}

impl Channel for Pushover {
    const MERGES: bool = true;

    /// POSTs [`form`] of [`render`]'s fields. 2xx is delivered; 408, 429, 5xx,
    /// connection errors and timeouts are [`DeliveryError::Retry`], after at least
    /// [`MIN_RETRY_WAIT`] (or the answer's longer `Retry-After`); other statuses are
    /// [`DeliveryError::Reject`]. No reason shows the token or the user key.
    async fn send(&self, alert: &Alert) -> Result<(), DeliveryError> {
        self.post(&render(alert)).await
    }

    /// POSTs [`render_digest`]'s fields, classified as [`Pushover::send`]'s.
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

    fn validate(toml: &str) -> (Option<PushoverSpec>, Vec<ConfigIssue>) {
        fixtures::validated::<PushoverConfig>(toml)
    }

    #[test]
    fn validates_its_table() {
        let (spec, issues) = validate("token = \"a-SECRET\"\nuser = \"u-SECRET\"");
        assert_eq!(issues, []);
        assert_eq!(
            format!("{:?}", spec.unwrap()),
            "PushoverSpec { token: ***, user: ***, api_url: \"https://api.pushover.net/1/messages.json\" }"
        );
        let toml = "token = \"\"\nuser = \"\"\napi_url = \"nope\"";
        let (spec, issues) = validate(toml);
        assert!(spec.is_none());
        assert_eq!(
            issues,
            [
                ConfigIssue::new(8..10, "`token` must not be empty"),
                ConfigIssue::new(18..20, "`user` must not be empty"),
                ConfigIssue::new(
                    31..37,
                    "`api_url`: `nope` is not a valid URL (relative URL without a base)"
                ),
            ]
        );
        let error = toml::from_str::<PushoverConfig>("token = \"a\"\nuser = \"u\"\nsound = \"x\"")
            .unwrap_err();
        assert!(
            error.message().starts_with("unknown field `sound`"),
            "{error}"
        );
        let error = toml::from_str::<PushoverConfig>("token = \"a\"").unwrap_err();
        assert_eq!(error.message(), "missing field `user`");
    }

    fn expected(title: &str, message: &str, priority: u8, timestamp: i64) -> Value {
        json!({
            "title": title,
            "message": message,
            "priority": priority,
            "timestamp": timestamp,
        })
    }

    #[test]
    fn renders_each_event_and_a_digest() {
        // 2026-03-29T10:15:02+11:00 and the later runs of the fixture outage.
        let cases = [
            (
                render(&fixtures::failure()),
                expected(
                    wording::FAILURE_TITLE,
                    wording::FAILURE_BODY,
                    1,
                    1_774_739_702,
                ),
            ),
            (
                render(&fixtures::update()),
                expected(
                    wording::UPDATE_TITLE,
                    wording::UPDATE_BODY,
                    0,
                    1_774_740_900,
                ),
            ),
            (
                render(&fixtures::reminder()),
                expected(
                    wording::REMINDER_TITLE,
                    &wording::reminder_body(),
                    1,
                    1_774_754_103,
                ),
            ),
            (
                render(&fixtures::recovery()),
                expected(
                    wording::RECOVERY_TITLE,
                    wording::RECOVERY_BODY,
                    0,
                    1_774_743_601,
                ),
            ),
            (
                render_digest(&fixtures::digest()),
                expected(
                    wording::DIGEST_TITLE,
                    wording::DIGEST_BODY,
                    1,
                    1_774_743_601,
                ),
            ),
        ];
        for (rendered, json) in cases {
            assert_eq!(rendered, json);
        }
    }

    #[test]
    fn long_texts_keep_to_the_limits() {
        let alert = Alert {
            summary: "x".repeat(2_000),
            ..fixtures::failure()
        };
        let fields = render(&alert);
        assert_eq!(
            fields["title"].as_str().unwrap().chars().count(),
            TITLE_CHARS
        );
        assert_eq!(
            fields["message"].as_str().unwrap().chars().count(),
            MESSAGE_CHARS
        );
        let storm = render_digest(&fixtures::storm(300, "HTTP 503"));
        assert!(storm["message"].as_str().unwrap().chars().count() <= MESSAGE_CHARS);
    }

    fn pushover(url: &str) -> Pushover {
        let spec = PushoverSpec {
            token: "azGDORePK8gMaC0QOYAMyEEuzJnyUi".into(),
            user: "uQiRzpo4DXghDmr9QzzfQu27cmVRsG".into(),
            api_url: url.parse().unwrap(),
        };
        Pushover::new(spec, reqwest::Client::new())
    }

    #[tokio::test]
    async fn posts_the_form_pushover_documents() {
        let server = Server::start(|_| Response::ok("{\"status\":1,\"request\":\"x\"}")).await;
        let alert = fixtures::recovery();
        pushover(&server.url("/1/messages.json"))
            .send(&alert)
            .await
            .unwrap();
        let requests = server.requests();
        let request = &requests[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/1/messages.json");
        assert_eq!(
            request.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        let got: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect();
        let pairs = [
            ("token", "azGDORePK8gMaC0QOYAMyEEuzJnyUi"),
            ("user", "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"),
            // The fields in the order of their names.
            ("message", wording::RECOVERY_BODY),
            ("priority", "0"),
            ("timestamp", "1774743601"),
            ("title", wording::RECOVERY_TITLE),
        ];
        let want: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn answers_are_classified_and_the_keys_never_shown() {
        // Each retry waits at least the 5 seconds Pushover asks for.
        let send = |url: String, timeout| async move {
            let pushover = pushover(&url).with_timeout(timeout);
            let sent = pushover.send(&fixtures::failure()).await;
            sent.map_err(|error| match error {
                DeliveryError::Retry { reason, after } => {
                    assert!(after >= Some(MIN_RETRY_WAIT), "{after:?}");
                    let after = after.filter(|a| *a > MIN_RETRY_WAIT);
                    DeliveryError::Retry { reason, after }
                }
                reject => reject,
            })
        };
        push::assert_answers_classified(
            send,
            &[
                "azGDORePK8gMaC0QOYAMyEEuzJnyUi",
                "uQiRzpo4DXghDmr9QzzfQu27cmVRsG",
            ],
        )
        .await;
    }
}
