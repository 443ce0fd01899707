//! The `ntfy` channel: publishes to an ntfy topic as JSON (a POST of `topic`, `title`,
//! `message`, `priority` and `tags` to the server's root URL), on ntfy.sh or a server of
//! one's own, logging in with an access token or a username and password. Owns its
//! config, the pure [`render`] of an alert (and [`render_digest`] of several), and
//! [`Ntfy::send`]. With [`Buttons`] (`agent.listen_url` and `listen_token` set), a
//! message about an open alert carries "Acknowledge" and "Silence 1h" as `http` actions
//! that the phone posts to the listener with a token scoped to that action and job.
//!
//! The API: <https://docs.ntfy.sh/publish/#publish-as-json> (the body),
//! <https://docs.ntfy.sh/publish/#message-priority> (priorities 1 to 5),
//! <https://docs.ntfy.sh/publish/#access-tokens> and
//! <https://docs.ntfy.sh/publish/#username-password> (the `Authorization` header),
//! <https://docs.ntfy.sh/publish/#limitations> (a message of at most 4,096 bytes),
//! <https://docs.ntfy.sh/publish/#action-buttons> (`actions`, the `http` action's
//! `url`, `method`, `headers`, `body` and `clear`).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use klaxon_config_core::{SecretKey, Seg};
use reqwest::header::{AUTHORIZATION, HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use toml::Spanned;
use url::Url;

use crate::buttons::{Button, Buttons};
use crate::http::{self, HttpShell};
use crate::push::{self, Urgency};
use crate::text::{self, ELLIPSIS};
use crate::validate::{self, ConfigIssue};
use crate::{Alert, BuildError, Channel, DeliveryError, Event, NotifierPlugin};

/// Where messages go when `url` is not set.
pub const DEFAULT_URL: &str = "https://ntfy.sh";
/// ntfy's limit on a message, in bytes; a longer one becomes an attachment.
pub const MESSAGE_BYTES: usize = 4_096;
/// How long a title may be (ntfy sets none; a notification shows one line).
pub const TITLE_CHARS: usize = 250;

/// The raw `[notifiers.NAME]` table of `type = "ntfy"`. `url` is the server's root
/// (ntfy is not served below a path).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NtfyConfig {
    url: Option<Spanned<String>>,
    topic: Spanned<SecretString>,
    token: Option<Spanned<SecretString>>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<SecretString>>,
    ca_file: Option<Spanned<String>>,
}

impl NotifierPlugin for NtfyConfig {
    type Spec = NtfySpec;
    type Channel = Ntfy;

    /// The topic too: on a public server whoever knows it reads the messages.
    const SECRET_KEYS: &'static [SecretKey] = &[
        SecretKey::always(&[Seg::Key("topic")]),
        SecretKey::always(&[Seg::Key("token")]),
        SecretKey::always(&[Seg::Key("password")]),
        SecretKey::url(&[Seg::Key("url")]),
    ];

    /// Checks the URL, the topic (ntfy's `[-_A-Za-z0-9]{1,64}`), and that the login is
    /// one of a token or a username with its password, pushing every problem to
    /// `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<NtfySpec> {
        let url = match &self.url {
            Some(url) => validate::http_url(url, "url", issues).filter(|parsed| {
                // ntfy takes JSON at its root only; POSTed to `/TOPIC`, the JSON itself
                // would be published as the text of a message.
                let root = parsed.path() == "/";
                if !root {
                    issues.push(ConfigIssue::new(
                        url.span(),
                        "`url` is the server (like `https://ntfy.sh`), not a topic's URL: \
                         name the topic in `topic`",
                    ));
                }
                root
            }),
            None => DEFAULT_URL.parse().ok(),
        };
        let topic = valid_topic(self.topic, issues);
        let auth = auth(self.token, self.username, self.password, issues);
        let ca_file = validate::ca_file(self.ca_file, issues);
        Some(NtfySpec {
            url: url?,
            topic: topic?,
            auth: auth?,
            ca_file: ca_file?,
        })
    }

    fn build(spec: &NtfySpec, client: &reqwest::Client) -> Result<Ntfy, BuildError> {
        Ntfy::new(spec.clone(), client)
    }

    fn build_with(
        spec: &NtfySpec,
        client: &reqwest::Client,
        buttons: Option<&Buttons>,
    ) -> Result<Ntfy, BuildError> {
        Ok(Ntfy::new(spec.clone(), client)?.with_buttons(buttons.cloned()))
    }
}

fn valid_topic(
    topic: Spanned<SecretString>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<SecretString> {
    let span = topic.span();
    let topic = validate::non_empty_secret(topic, "topic", issues)?;
    let name = topic.expose_secret();
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.chars().count() > 64 || !name.chars().all(allowed) {
        issues.push(ConfigIssue::new(
            span,
            "`topic` must be 1 to 64 letters, digits, `-` or `_`",
        ));
        return None;
    }
    Some(topic)
}

/// The login: `Some(None)` for none, `None` when the keys given do not make one.
fn auth(
    token: Option<Spanned<SecretString>>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<SecretString>>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<Option<NtfyAuth>> {
    match (token, username, password) {
        (None, None, None) => Some(None),
        (Some(token), None, None) => {
            let token = validate::non_empty_secret(token, "token", issues)?;
            Some(Some(NtfyAuth::Token(token)))
        }
        (Some(token), _, _) => {
            issues.push(ConfigIssue::new(
                token.span(),
                "`token` and `username`/`password` are two ways to log in: set one",
            ));
            None
        }
        (None, Some(username), Some(password)) => {
            let name = username.get_ref().trim();
            let name = if name.is_empty() || name.contains(':') {
                issues.push(ConfigIssue::new(
                    username.span(),
                    "`username` must not be empty nor contain `:`",
                ));
                None
            } else {
                Some(name.to_owned())
            };
            let password = validate::non_empty_secret(password, "password", issues);
            Some(Some(NtfyAuth::Basic {
                username: name?,
                password: password?,
            }))
        }
        (None, Some(username), None) => {
            issues.push(ConfigIssue::new(
                username.span(),
                "`username` needs a `password`",
            ));
            None
        }
        (None, None, Some(password)) => {
            issues.push(ConfigIssue::new(
                password.span(),
                "`password` needs a `username`",
            ));
            None
        }
    }
}

/// A validated `ntfy` notifier.
#[derive(Clone)]
pub struct NtfySpec {
    /// The server, whose root URL takes the JSON.
    pub url: Url,
    /// The topic; never shown.
    pub topic: SecretString,
    pub auth: Option<NtfyAuth>,
    /// An extra trusted CA (PEM), as written; read when the client is built.
    pub ca_file: Option<PathBuf>,
}

/// How an `ntfy` notifier logs in.
#[derive(Clone)]
pub enum NtfyAuth {
    /// `Authorization: Bearer TOKEN`.
    Token(SecretString),
    /// `Authorization: Basic base64(USERNAME:PASSWORD)`.
    Basic {
        username: String,
        password: SecretString,
    },
}

impl NtfyAuth {
    /// The `Authorization` header's value.
    fn header(&self) -> String {
        match self {
            NtfyAuth::Token(token) => format!("Bearer {}", token.expose_secret()),
            NtfyAuth::Basic { username, password } => {
                let pair = format!("{username}:{}", password.expose_secret());
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                format!("Basic {encoded}")
            }
        }
    }
}

impl fmt::Debug for NtfyAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NtfyAuth::Token(_) => f.write_str("Token(***)"),
            NtfyAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &format_args!("***"))
                .finish(),
        }
    }
}

impl fmt::Debug for NtfySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NtfySpec")
            .field("url", &self.url.as_str())
            .field("topic", &format_args!("***"))
            .field("auth", &self.auth)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// ntfy's priority: 5 (max) for a critical alert, 4 (high) for a warning, 3 (default)
/// for a recovery or a test.
fn priority(urgency: Urgency) -> u8 {
    match urgency {
        Urgency::Critical => 5,
        Urgency::Warning => 4,
        Urgency::Low => 3,
    }
}

/// The tag ntfy shows as an emoji before the title.
fn emoji(urgency: Urgency, test: bool) -> &'static str {
    match urgency {
        _ if test => "bell",
        Urgency::Critical => "rotating_light",
        Urgency::Warning => "warning",
        Urgency::Low => "white_check_mark",
    }
}

/// Renders an alert for `topic`: `title` ([`text::title`]), `message` (the facts and
/// output, [`push::body`], within [`MESSAGE_BYTES`]), `priority`, `tags` (an emoji),
/// and, when there are `buttons`, `actions`: one `http` action each, which POSTs the
/// button's body with its scoped token and clears the notification.
/// Plain text: ntfy renders no markup unless asked to, so nothing needs escaping.
pub fn render(alert: &Alert, topic: &str, buttons: &[Button]) -> Value {
    let urgency = push::urgency(alert);
    let mut message = message(
        topic,
        &text::title(alert),
        &push::body(alert, MESSAGE_BYTES),
        urgency,
        emoji(urgency, alert.event == Event::Test),
    );
    if !buttons.is_empty() {
        message["actions"] = buttons.iter().map(action).collect();
    }
    message
}

/// A button as an ntfy `http` action.
fn action(button: &Button) -> Value {
    json!({
        "action": "http",
        "label": button.action.label(),
        "url": button.url.as_str(),
        "method": "POST",
        "headers": { "Authorization": button.authorization() },
        "body": button.body,
        "clear": true,
    })
}

/// Renders several alerts as one message: [`text::digest_title`], one line per alert
/// ([`push::digest_body`]), the priority and emoji of the most urgent.
pub fn render_digest(alerts: &[Alert], topic: &str) -> Value {
    let urgency = push::most_urgent(alerts);
    let test = alerts.iter().all(|a| a.event == Event::Test);
    message(
        topic,
        &text::digest_title(alerts),
        &push::digest_body(alerts, MESSAGE_BYTES),
        urgency,
        emoji(urgency, test),
    )
}

fn message(topic: &str, title: &str, body: &str, urgency: Urgency, tag: &str) -> Value {
    json!({
        "topic": topic,
        "title": text::truncate(title, TITLE_CHARS, ELLIPSIS),
        "message": fit_bytes(body, MESSAGE_BYTES),
        "priority": priority(urgency),
        "tags": [tag],
    })
}

/// `text` cut with `…` to at most `max` bytes of UTF-8.
fn fit_bytes(text: &str, max: usize) -> String {
    let mut chars = max;
    loop {
        let cut = text::truncate(text, chars, ELLIPSIS);
        if cut.len() <= max || chars == 0 {
            return cut.into_owned();
        }
        chars = chars.saturating_sub((cut.len() - max).max(1));
    }
}

/// An `ntfy` notifier ready to send.
#[derive(Debug)]
pub struct Ntfy {
    spec: NtfySpec,
    http: HttpShell,
    buttons: Option<Buttons>,
}

impl Ntfy {
    /// How long one delivery may take, answer included.
    pub const TIMEOUT: Duration = Duration::from_secs(10);

    /// A notifier posting through `client`, or through a client of its own that also
    /// trusts `ca_file` (failing with [`BuildError::Setup`] when it cannot be read).
    pub fn new(spec: NtfySpec, client: &reqwest::Client) -> Result<Self, BuildError> {
        let http = HttpShell::new(client, spec.ca_file.as_deref(), Self::TIMEOUT)?;
        Ok(Self {
            spec,
            http,
            buttons: None,
        })
    }

    /// The same notifier, offering `buttons` on messages about an open alert.
    pub fn with_buttons(self, buttons: Option<Buttons>) -> Self {
        Self { buttons, ..self }
    }

    /// The same notifier with another delivery deadline than [`Ntfy::TIMEOUT`].
    pub fn with_timeout(self, timeout: Duration) -> Self {
        let http = self.http.with_timeout(timeout);
        Self { http, ..self }
    }

    /// POSTs `message` to the server's root with the login, masking the topic and
    /// the credentials in every reason.
    async fn post(&self, message: &Value, buttons: &[Button]) -> Result<(), DeliveryError> {
        let mut headers = HeaderMap::new();
        let login = self.spec.auth.as_ref().map(NtfyAuth::header);
        if let Some(login) = &login {
            let value = http::secret_header(login, "the login cannot be sent in an HTTP header")?;
            headers.insert(AUTHORIZATION, value);
        }
        let body = message.to_string().into_bytes();
        let sent = (self.http)
            .post_json_with(self.spec.url.clone(), headers, body)
            .await;
        let mut secrets = vec![self.spec.topic.expose_secret()];
        if let Some(login) = &login {
            secrets.push(login);
        }
        match &self.spec.auth {
            Some(NtfyAuth::Token(token)) => secrets.push(token.expose_secret()),
            Some(NtfyAuth::Basic { password, .. }) => secrets.push(password.expose_secret()),
            None => {}
        }
        secrets.extend(buttons.iter().map(|b| b.token.expose_secret()));
        http::masked(sent, &secrets)
    }
}

impl Channel for Ntfy {
    const MERGES: bool = true;

    /// POSTs [`render`]'s JSON. 2xx is delivered; 408, 429 (with its `Retry-After`),
    /// 5xx, connection errors and timeouts are [`DeliveryError::Retry`]; other statuses
    /// are [`DeliveryError::Reject`]. No reason shows the topic or the login.
    /// With buttons, a message about an open alert carries them ([`Buttons::for_alert`]).
    async fn send(&self, alert: &Alert) -> Result<(), DeliveryError> {
        let buttons = (self.buttons.as_ref())
            .map(|b| b.for_alert(alert))
            .unwrap_or_default();
        let message = render(alert, self.spec.topic.expose_secret(), &buttons);
        self.post(&message, &buttons).await
    }

    /// POSTs [`render_digest`]'s JSON, classified as [`Ntfy::send`]'s. A digest names
    /// several jobs and carries no buttons.
    async fn send_digest(&self, alerts: &[Alert]) -> Result<(), DeliveryError> {
        self.post(&render_digest(alerts, self.spec.topic.expose_secret()), &[])
            .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fixtures::{self, span_of};
    use crate::push::wording;
    use klaxon_testkit::{Response, Server};

    fn validate(toml: &str) -> (Option<NtfySpec>, Vec<ConfigIssue>) {
        fixtures::validated::<NtfyConfig>(toml)
    }

    #[test]
    fn accepts_each_login() {
        let (spec, issues) = validate("topic = \"alerts-SECRET\"");
        assert_eq!(issues, []);
        let spec = spec.unwrap();
        assert_eq!(spec.url.as_str(), "https://ntfy.sh/");
        assert!(spec.auth.is_none());
        assert_eq!(
            format!("{spec:?}"),
            "NtfySpec { url: \"https://ntfy.sh/\", topic: ***, auth: None, ca_file: None }"
        );
        let (spec, issues) =
            validate("url = \"https://ntfy.example.com\"\ntopic = \"ops\"\ntoken = \"tk_SECRET\"");
        assert_eq!(issues, []);
        let spec = spec.unwrap();
        assert_eq!(spec.url.as_str(), "https://ntfy.example.com/");
        assert_eq!(format!("{:?}", spec.auth), "Some(Token(***))");
        let (spec, issues) =
            validate("topic = \"ops\"\nusername = \"phil\"\npassword = \"SECRET\"");
        assert_eq!(issues, []);
        let spec = spec.unwrap();
        assert_eq!(
            format!("{:?}", spec.auth),
            "Some(Basic { username: \"phil\", password: *** })"
        );
        assert!(!format!("{spec:?}").contains("SECRET"));
    }

    #[test]
    fn refuses_two_logins_or_half_of_one() {
        let cases = [
            (
                "topic = \"ops\"\ntoken = \"tk_1\"\nusername = \"phil\"\npassword = \"pw\"",
                "\"tk_1\"",
                "`token` and `username`/`password` are two ways to log in: set one",
            ),
            (
                "topic = \"ops\"\ntoken = \"tk_1\"\npassword = \"pw\"",
                "\"tk_1\"",
                "`token` and `username`/`password` are two ways to log in: set one",
            ),
            (
                "topic = \"ops\"\nusername = \"phil\"",
                "\"phil\"",
                "`username` needs a `password`",
            ),
            (
                "topic = \"ops\"\npassword = \"pw\"",
                "\"pw\"",
                "`password` needs a `username`",
            ),
            (
                "topic = \"ops\"\nusername = \"a:b\"\npassword = \"pw\"",
                "\"a:b\"",
                "`username` must not be empty nor contain `:`",
            ),
            (
                "topic = \"ops\"\ntoken = \"\"",
                "\"\"",
                "`token` must not be empty",
            ),
        ];
        for (toml, at, message) in cases {
            let (spec, issues) = validate(toml);
            assert!(spec.is_none(), "{toml}");
            assert_eq!(
                issues,
                [ConfigIssue::new(span_of(toml, at), message)],
                "{toml}"
            );
        }
    }

    #[test]
    fn collects_every_problem() {
        let toml = "url = \"ftp://ntfy.example.com\"\ntopic = \"no spaces/SECRET\"";
        let (spec, issues) = validate(toml);
        assert!(spec.is_none());
        assert_eq!(
            issues,
            [
                ConfigIssue::new(
                    span_of(toml, "\"ftp://ntfy.example.com\""),
                    "`url`: expected an `http` or `https` URL, found `ftp://ntfy.example.com`"
                ),
                ConfigIssue::new(
                    span_of(toml, "\"no spaces/SECRET\""),
                    "`topic` must be 1 to 64 letters, digits, `-` or `_`"
                ),
            ]
        );
        let toml = "url = \"https://ntfy.sh/alerts\"\ntopic = \"alerts\"";
        assert_eq!(
            validate(toml).1,
            [ConfigIssue::new(
                span_of(toml, "\"https://ntfy.sh/alerts\""),
                "`url` is the server (like `https://ntfy.sh`), not a topic's URL: \
                 name the topic in `topic`"
            )]
        );
        let toml = format!("topic = \"{}\"", "x".repeat(65));
        assert_eq!(validate(&toml).1.len(), 1);
        let error = toml::from_str::<NtfyConfig>("topic = \"a\"\nprio = 5").unwrap_err();
        assert!(
            error.message().starts_with("unknown field `prio`"),
            "{error}"
        );
        let error = toml::from_str::<NtfyConfig>("").unwrap_err();
        assert_eq!(error.message(), "missing field `topic`");
    }

    // --- rendering ---

    fn expected(title: &str, message: &str, priority: u8, tag: &str) -> Value {
        json!({
            "topic": "alerts",
            "title": title,
            "message": message,
            "priority": priority,
            "tags": [tag],
        })
    }

    #[test]
    fn renders_each_event() {
        let cases = [
            (
                fixtures::failure(),
                expected(
                    wording::FAILURE_TITLE,
                    wording::FAILURE_BODY,
                    5,
                    "rotating_light",
                ),
            ),
            (
                fixtures::update(),
                expected(wording::UPDATE_TITLE, wording::UPDATE_BODY, 4, "warning"),
            ),
            (
                fixtures::reminder(),
                expected(
                    wording::REMINDER_TITLE,
                    &wording::reminder_body(),
                    5,
                    "rotating_light",
                ),
            ),
            (
                fixtures::recovery(),
                expected(
                    wording::RECOVERY_TITLE,
                    wording::RECOVERY_BODY,
                    3,
                    "white_check_mark",
                ),
            ),
        ];
        for (alert, json) in cases {
            assert_eq!(render(&alert, "alerts", &[]), json, "{:?}", alert.event);
        }
    }

    #[test]
    fn renders_a_digest() {
        assert_eq!(
            render_digest(&fixtures::digest(), "alerts"),
            expected(
                wording::DIGEST_TITLE,
                wording::DIGEST_BODY,
                5,
                "rotating_light"
            )
        );
    }

    fn buttons() -> Buttons {
        Buttons::new(
            "https://box.example.com:9850".parse().unwrap(),
            "tok-SECRET".into(),
        )
    }

    #[test]
    fn an_open_alert_carries_http_actions_with_scoped_tokens() {
        use crate::buttons::{Action, scoped_token};
        let alert = fixtures::failure();
        let mut json = expected(
            wording::FAILURE_TITLE,
            wording::FAILURE_BODY,
            5,
            "rotating_light",
        );
        json["actions"] = json!([
            {
                "action": "http",
                "label": "Acknowledge",
                "url": "https://box.example.com:9850/api/ack/api",
                "method": "POST",
                "headers": {
                    "Authorization": format!("Bearer {}", scoped_token("tok-SECRET", Action::Ack, "api"))
                },
                "body": "{\"by\":\"notification button\"}",
                "clear": true,
            },
            {
                "action": "http",
                "label": "Silence 1h",
                "url": "https://box.example.com:9850/api/silences",
                "method": "POST",
                "headers": {
                    "Authorization": format!("Bearer {}", scoped_token("tok-SECRET", Action::Silence, "api"))
                },
                "body": "{\"by\":\"notification button\",\"for\":\"1h\",\"jobs\":[\"api\"]}",
                "clear": true,
            },
        ]);
        let rendered = render(&alert, "alerts", &buttons().for_alert(&alert));
        assert_eq!(rendered, json);
        assert!(!rendered.to_string().contains("tok-SECRET"));
        let recovery = fixtures::recovery();
        let rendered = render(&recovery, "alerts", &buttons().for_alert(&recovery));
        assert!(rendered.get("actions").is_none(), "{rendered}");
    }

    #[test]
    fn long_texts_fit_in_bytes() {
        let alert = Alert {
            summary: "é".repeat(5_000),
            output: Some("ü".repeat(5_000)),
            ..fixtures::failure()
        };
        let message = render(&alert, "alerts", &[]);
        let body = message["message"].as_str().unwrap();
        assert!(body.len() <= MESSAGE_BYTES, "{} bytes", body.len());
        assert!(body.ends_with(ELLIPSIS));
        let title = message["title"].as_str().unwrap();
        assert_eq!(title.chars().count(), TITLE_CHARS);
        let storm = render_digest(&fixtures::storm(1_000, "HTTP 503"), "alerts");
        assert!(storm["message"].as_str().unwrap().len() <= MESSAGE_BYTES);
        assert_eq!(fit_bytes("ab", 0), "…");
    }

    // --- delivery against a real local receiver ---

    fn ntfy(url: &str, auth: Option<NtfyAuth>) -> Ntfy {
        let spec = NtfySpec {
            url: url.parse().unwrap(),
            topic: "alerts-SECRET".into(),
            auth,
            ca_file: None,
        };
        Ntfy::new(spec, &reqwest::Client::new()).unwrap()
    }

    #[tokio::test]
    async fn publishes_as_json_with_each_login() {
        let server = Server::start(|_| Response::ok("{\"id\":\"x\"}")).await;
        let logins = [
            (None, None),
            (
                Some(NtfyAuth::Token("tk_SECRET".into())),
                Some("Bearer tk_SECRET"),
            ),
            (
                Some(NtfyAuth::Basic {
                    username: "phil".into(),
                    password: "mypass".into(),
                }),
                // `phil:mypass`, as ntfy's documentation encodes it.
                Some("Basic cGhpbDpteXBhc3M="),
            ),
        ];
        let alert = fixtures::failure();
        for (auth, header) in logins {
            ntfy(&server.url("/"), auth).send(&alert).await.unwrap();
            let requests = server.requests();
            let request = requests.last().unwrap();
            assert_eq!(request.method, "POST");
            assert_eq!(request.path, "/");
            assert_eq!(request.header("content-type"), Some("application/json"));
            assert_eq!(request.header("authorization"), header);
            assert_eq!(request.json(), render(&alert, "alerts-SECRET", &[]));
        }
        let alerts = fixtures::digest();
        ntfy(&server.url("/"), None)
            .send_digest(&alerts)
            .await
            .unwrap();
        let requests = server.requests();
        assert_eq!(requests.len(), 4);
        assert_eq!(requests[3].json(), render_digest(&alerts, "alerts-SECRET"));
    }

    #[tokio::test]
    async fn sends_buttons_on_an_open_alert_only() {
        let server = Server::start(|_| Response::ok("{\"id\":\"x\"}")).await;
        let built = NtfyConfig::build_with(
            &ntfy(&server.url("/"), None).spec,
            &reqwest::Client::new(),
            Some(&buttons()),
        )
        .unwrap();
        let (failure, recovery) = (fixtures::failure(), fixtures::recovery());
        built.send(&failure).await.unwrap();
        built.send(&recovery).await.unwrap();
        built.send_digest(&fixtures::digest()).await.unwrap();
        let requests = server.requests();
        let bodies: Vec<Value> = requests.iter().map(|r| r.json()).collect();
        assert_eq!(
            bodies,
            [
                render(&failure, "alerts-SECRET", &buttons().for_alert(&failure)),
                render(&recovery, "alerts-SECRET", &[]),
                render_digest(&fixtures::digest(), "alerts-SECRET"),
            ]
        );
        assert_eq!(bodies[0]["actions"].as_array().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn answers_are_classified_and_secrets_never_shown() {
        for auth in [
            NtfyAuth::Token("tk_SECRET".into()),
            NtfyAuth::Basic {
                username: "phil".into(),
                password: "pw-SECRET".into(),
            },
        ] {
            let login = auth.header();
            let send = |url: String, timeout| {
                let ntfy = ntfy(&url, Some(auth.clone())).with_timeout(timeout);
                async move { ntfy.send(&fixtures::failure()).await }
            };
            push::assert_answers_classified(
                send,
                &["alerts-SECRET", "tk_SECRET", "pw-SECRET", login.as_str()],
            )
            .await;
        }
    }
}
