//! The `matrix` channel: a message in a Matrix room, sent through the client-server API
//! with a bot account's access token. Owns its config (`homeserver`, `access_token`, a
//! secret, and `room_id`), the pure [`render`] of an alert into an `m.room.message`
//! event with an HTML `formatted_body`, the transaction id that makes a redelivery
//! harmless ([`txn_id`]), and [`Matrix::send`].
//!
//! The request is `PUT /_matrix/client/v3/rooms/{roomId}/send/m.room.message/{txnId}`
//! with `Authorization: Bearer TOKEN`
//! (<https://spec.matrix.org/v1.11/client-server-api/#put_matrixclientv3roomsroomidsendeventtypetxnid>);
//! the body is an `m.text` message (<https://spec.matrix.org/v1.11/client-server-api/#mtext>)
//! in the `org.matrix.custom.html` format; a 429 (`M_LIMIT_EXCEEDED`) says how long to
//! wait in `retry_after_ms`
//! (<https://spec.matrix.org/v1.11/client-server-api/#rate-limiting>).

use std::fmt;
use std::time::Duration;

use klaxon_config_core::{SecretKey, Seg};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use toml::Spanned;
use url::Url;

use crate::http::{self, HttpShell, JsonRequest, json_wait};
use crate::text::{self, ELLIPSIS};
use crate::validate::{self, ConfigIssue};
use crate::{Alert, BuildError, Channel, DeliveryError, NotifierPlugin};

/// How much of the summary a message shows: an event must stay under Matrix's 64 KiB,
/// and the summary appears twice in both bodies, HTML-escaped in one.
pub const SUMMARY_CHARS: usize = 1_000;

/// The raw `[notifiers.NAME]` table of `type = "matrix"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixConfig {
    homeserver: Spanned<String>,
    access_token: Spanned<SecretString>,
    room_id: Spanned<String>,
}

impl NotifierPlugin for MatrixConfig {
    type Spec = MatrixSpec;
    type Channel = Matrix;

    const SECRET_KEYS: &'static [SecretKey] = &[SecretKey::always(&[Seg::Key("access_token")])];

    /// Checks the homeserver (`https`, or `http` to a loopback host, with no query), the
    /// access token (not empty) and the room id (`!…`, not an alias), pushing every
    /// problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<MatrixSpec> {
        let homeserver =
            validate::https_url(&self.homeserver, "homeserver", issues).and_then(|url| {
                if url.query().is_none() && url.fragment().is_none() {
                    return Some(url);
                }
                issues.push(ConfigIssue::new(
                    self.homeserver.span(),
                    "`homeserver` must be the server's base URL, without a query or fragment",
                ));
                None
            });
        let access_token = validate::non_empty_secret(self.access_token, "access_token", issues);
        let room_id = room_id(&self.room_id, issues);
        Some(MatrixSpec {
            homeserver: homeserver?,
            access_token: access_token?,
            room_id: room_id?,
        })
    }

    fn build(spec: &MatrixSpec, client: &reqwest::Client) -> Result<Matrix, BuildError> {
        Ok(Matrix::new(spec.clone(), client.clone()))
    }
}

/// A room id as Matrix writes it: `!` and an opaque part (`!abc:example.org`; rooms of
/// version 12 have no `:server`). An alias (`#ops:example.org`) must be resolved first.
fn room_id(value: &Spanned<String>, issues: &mut Vec<ConfigIssue>) -> Option<String> {
    let text = value.get_ref().trim();
    let problem = if text.starts_with('#') {
        format!(
            "`room_id`: `{text}` is a room alias; use the room's id (`!…`, in the room's \
             settings under Advanced)"
        )
    } else if !text.starts_with('!') || text.len() < 2 || text.contains(char::is_whitespace) {
        format!("`room_id`: `{text}` is not a room id like `!abc123:example.org`")
    } else {
        return Some(text.to_owned());
    };
    issues.push(ConfigIssue::new(value.span(), problem));
    None
}

/// A validated `matrix` notifier.
#[derive(Clone)]
pub struct MatrixSpec {
    /// The homeserver's base URL (`https://matrix.example.org`).
    pub homeserver: Url,
    /// The bot's access token; never shown.
    pub access_token: SecretString,
    /// The room the messages go to (`!abc:example.org`).
    pub room_id: String,
}

impl fmt::Debug for MatrixSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MatrixSpec")
            .field("homeserver", &self.homeserver.as_str())
            .field("access_token", &format_args!("***"))
            .field("room_id", &self.room_id)
            .finish()
    }
}

/// Renders an alert as an `m.room.message` event: `msgtype` `m.text` (not `m.notice`,
/// which clients' default push rules keep silent), `body` the plain text
/// ([`text::render_text`]), and `formatted_body` the same in HTML: the title in bold,
/// the facts as a list, the output in `<pre><code>`. Every value from the check or the
/// config is HTML-escaped in `formatted_body`, so none can add markup or a link.
pub fn render(alert: &Alert) -> Value {
    let bounded = Alert {
        summary: text::truncate(&alert.summary, SUMMARY_CHARS, ELLIPSIS).into_owned(),
        ..alert.clone()
    };
    let alert = &bounded;
    let mut html = format!(
        "<p><strong>{}</strong></p>\n<ul>\n",
        text::escape_html(&text::title(alert))
    );
    for (label, value) in text::facts(alert) {
        html.push_str(&format!(
            "<li><b>{label}</b>: {}</li>\n",
            text::escape_html(&value)
        ));
    }
    html.push_str("</ul>");
    if let Some(output) = text::output_tail(alert) {
        html.push_str(&format!(
            "\n<pre><code>{}</code></pre>",
            text::escape_html(&output)
        ));
    }
    json!({
        "msgtype": "m.text",
        "body": text::render_text(alert),
        "format": "org.matrix.custom.html",
        "formatted_body": html,
    })
}

/// The transaction id of one message: the same for every redelivery of it, so the
/// homeserver drops a repeat (a retry after an answer that was lost) instead of posting
/// it twice, and different for every other message.
///
/// A notifier is not given the outbox row's id, so the id is made of what identifies
/// one message among those stored: the alert id (shared by one outage's messages), the
/// event, and the start of the run that caused it, to the nanosecond. One run causes at
/// most one message of each event per alert, and a stored message is redelivered with
/// all three unchanged.
pub fn txn_id(alert: &Alert) -> String {
    format!(
        "klaxon.{}.{}.{}.{:09}",
        alert.id,
        alert.event.as_str(),
        alert.started_at.timestamp(),
        alert.started_at.timestamp_subsec_nanos()
    )
}

/// `segment` percent-encoded for a URL path: every byte but the unreserved
/// `A-Z a-z 0-9 - . _ ~`, so a room id's `!` and `:` are sent as `%21` and `%3A`.
fn encode_segment(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Where a message is PUT: the homeserver's base, then
/// `/_matrix/client/v3/rooms/ROOM/send/m.room.message/TXN`, both encoded.
pub fn send_url(homeserver: &Url, room_id: &str, txn: &str) -> String {
    format!(
        "{}/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
        homeserver.as_str().trim_end_matches('/'),
        encode_segment(room_id),
        encode_segment(txn)
    )
}

/// A 429's wait: the body's `retry_after_ms`.
fn retry_after(body: &str) -> Option<Duration> {
    json_wait(body, "/retry_after_ms", Duration::from_millis(1))
}

/// A `matrix` notifier ready to send.
#[derive(Debug)]
pub struct Matrix {
    spec: MatrixSpec,
    http: HttpShell,
}

impl Matrix {
    /// How long one delivery may take, answer included.
    pub const TIMEOUT: Duration = Duration::from_secs(10);

    /// A notifier sending through `client` (the agent's shared HTTP client).
    pub fn new(spec: MatrixSpec, client: reqwest::Client) -> Self {
        let http = HttpShell::shared(client, Self::TIMEOUT);
        Self { spec, http }
    }

    /// The same notifier with another delivery deadline than [`Matrix::TIMEOUT`].
    pub fn with_timeout(self, timeout: Duration) -> Self {
        let http = self.http.with_timeout(timeout);
        Self { http, ..self }
    }
}

impl Channel for Matrix {
    /// PUTs [`render`]'s event to [`send_url`] with the message's [`txn_id`] and
    /// `Authorization: Bearer TOKEN`. 2xx is delivered; 408, 429 (after the body's
    /// `retry_after_ms`, else `Retry-After`), 5xx, connection errors and timeouts are
    /// [`DeliveryError::Retry`]; other statuses (`M_FORBIDDEN`, `M_UNKNOWN_TOKEN`) are
    /// [`DeliveryError::Reject`] quoting the start of the answer. No reason contains
    /// the access token, even if the homeserver echoes it.
    async fn send(&self, alert: &Alert) -> Result<(), DeliveryError> {
        let token = self.spec.access_token.expose_secret();
        let mut headers = HeaderMap::new();
        let bearer = http::secret_header(
            &format!("Bearer {token}"),
            "`access_token` holds characters an HTTP header cannot carry",
        )?;
        headers.insert(AUTHORIZATION, bearer);
        let request = JsonRequest {
            method: Method::PUT,
            headers,
            hint: Some(retry_after),
        };
        let url = send_url(&self.spec.homeserver, &self.spec.room_id, &txn_id(alert));
        let body = render(alert).to_string().into_bytes();
        let result = self.http.send_json(request, url, body).await;
        http::masked(result, &[token])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fixtures;
    use klaxon_testkit::{Request, Response, Server};

    fn html(title: &str, facts: &[(&str, &str)], output: bool) -> String {
        let mut html = format!("<p><strong>{title}</strong></p>\n<ul>\n");
        for (label, value) in facts {
            html.push_str(&format!("<li><b>{label}</b>: {value}</li>\n"));
        }
        html.push_str("</ul>");
        if output {
            html.push_str(
                "\n<pre><code>upstream connect error\nreset reason: overflow</code></pre>",
            );
        }
        html
    }

    fn event(alert: &Alert, formatted_body: String) -> Value {
        json!({
            "msgtype": "m.text",
            "body": text::render_text(alert),
            "format": "org.matrix.custom.html",
            "formatted_body": formatted_body,
        })
    }

    const CHECK: (&str, &str) = ("Check", "http https://api.example.com/health");
    const SINCE: (&str, &str) = ("Failing since", "2026-03-29 10:15:02 +11:00");
    const LAST: (&str, &str) = ("Last success", "2026-03-29 10:10:01 +11:00");
    const ID: (&str, &str) = ("Alert", "api-20260329T001502Z");

    #[test]
    fn renders_a_failure_and_a_reminder() {
        let failing = |next| {
            [
                ("Severity", "critical"),
                CHECK,
                ("Reason", "HTTP 503 Service Unavailable"),
                ("Attempts", "3 of 3"),
                ("Elapsed", "7.2s"),
                SINCE,
                LAST,
                ("Next run", next),
                ID,
            ]
        };
        let failure = fixtures::failure();
        assert_eq!(
            render(&failure),
            event(
                &failure,
                html(
                    "DOWN api on macbook: HTTP 503 Service Unavailable",
                    &failing("2026-03-29 10:20:00 +11:00"),
                    true
                )
            )
        );
        let reminder = fixtures::reminder();
        assert_eq!(
            render(&reminder),
            event(
                &reminder,
                html(
                    "STILL DOWN api on macbook: HTTP 503 Service Unavailable",
                    &failing("2026-03-29 14:20:00 +11:00"),
                    true
                )
            )
        );
    }

    #[test]
    fn renders_an_update_and_a_recovery() {
        let update = fixtures::update();
        assert_eq!(
            render(&update),
            event(
                &update,
                html(
                    "CHANGED api on macbook is now warning: latency 2.4s &gt; 2s",
                    &[
                        ("Severity", "warning"),
                        CHECK,
                        ("Reason", "latency 2.4s &gt; 2s"),
                        ("Attempts", "1 of 3"),
                        ("Elapsed", "2.4s"),
                        SINCE,
                        LAST,
                        ("Next run", "2026-03-29 10:40:00 +11:00"),
                        ID,
                    ],
                    false
                )
            )
        );
        let recovery = fixtures::recovery();
        assert_eq!(
            render(&recovery),
            event(
                &recovery,
                html(
                    "RECOVERED api on macbook after 1h 5m",
                    &[
                        ("Severity", "ok"),
                        CHECK,
                        ("Reason", "HTTP 200 OK"),
                        ("Attempts", "1 of 3"),
                        ("Elapsed", "180ms"),
                        SINCE,
                        ("Next run", "2026-03-29 11:25:00 +11:00"),
                        ("Downtime", "1h 5m"),
                        ID,
                    ],
                    false
                )
            )
        );
    }

    #[test]
    fn values_cannot_add_markup() {
        let alert = Alert {
            summary: "<a href=\"https://evil.example\">x</a> & 'y'".into(),
            output: Some("</code></pre><b>".into()),
            ..fixtures::failure()
        };
        let formatted = render(&alert)["formatted_body"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(formatted.contains(
            "<li><b>Reason</b>: &lt;a href=&quot;https://evil.example&quot;&gt;x&lt;/a&gt; &amp; &#39;y&#39;</li>"
        ));
        assert!(formatted.ends_with("<pre><code>&lt;/code&gt;&lt;/pre&gt;&lt;b&gt;</code></pre>"));
    }

    #[test]
    fn a_huge_summary_keeps_the_event_small() {
        let alert = Alert {
            summary: "&".repeat(100_000),
            ..fixtures::failure()
        };
        assert!(render(&alert).to_string().len() < 32 * 1024);
    }

    #[test]
    fn each_message_has_its_own_stable_txn() {
        let messages = [
            fixtures::failure(),
            fixtures::update(),
            fixtures::reminder(),
            fixtures::recovery(),
        ];
        let ids: Vec<String> = messages.iter().map(txn_id).collect();
        assert_eq!(
            ids[0],
            "klaxon.api-20260329T001502Z.failure.1774739702.000000000"
        );
        let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), messages.len(), "{ids:?}");
        // A redelivery is the stored message read back: the same id.
        for alert in &messages {
            let stored = serde_json::to_string(alert).unwrap();
            let read: Alert = serde_json::from_str(&stored).unwrap();
            assert_eq!(txn_id(&read), txn_id(alert));
        }
        // Two reminders of one outage, from two runs.
        let later = Alert {
            started_at: fixtures::reminder().started_at + chrono::Duration::hours(4),
            ..fixtures::reminder()
        };
        assert_ne!(txn_id(&later), ids[2]);
    }

    #[test]
    fn the_path_is_encoded() {
        let homeserver = Url::parse("https://matrix.example.org/prefix/").unwrap();
        assert_eq!(
            send_url(
                &homeserver,
                "!abc/def:example.org",
                "klaxon.a b.failure.1.000000000"
            ),
            "https://matrix.example.org/prefix/_matrix/client/v3/rooms/%21abc%2Fdef%3Aexample.org\
             /send/m.room.message/klaxon.a%20b.failure.1.000000000"
        );
    }

    // --- validation ---

    fn validate(toml: &str) -> (Option<MatrixSpec>, Vec<ConfigIssue>) {
        fixtures::validated::<MatrixConfig>(toml)
    }

    #[test]
    fn validates_and_never_shows_the_token() {
        let (spec, issues) = validate(
            "homeserver = \"https://matrix.example.org\"\naccess_token = \"syt_SECRET\"\nroom_id = \"!abc:example.org\"",
        );
        assert_eq!(issues, []);
        assert_eq!(
            format!("{:?}", spec.unwrap()),
            "MatrixSpec { homeserver: \"https://matrix.example.org/\", access_token: ***, \
             room_id: \"!abc:example.org\" }"
        );
        let toml = "homeserver = \"http://matrix.example.org?x=1\"\naccess_token = \"\"\nroom_id = \"#ops:example.org\"";
        let (spec, issues) = validate(toml);
        assert!(spec.is_none());
        let messages: Vec<&str> = issues.iter().map(|i| i.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "`homeserver` must use `https`: plain `http` is allowed only to a loopback host",
                "`access_token` must not be empty",
                "`room_id`: `#ops:example.org` is a room alias; use the room's id (`!…`, in the \
                 room's settings under Advanced)",
            ]
        );
        let (_, issues) = validate(
            "homeserver = \"https://m.example.org/?x=1\"\naccess_token = \"t\"\nroom_id = \"abc\"",
        );
        let messages: Vec<&str> = issues.iter().map(|i| i.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "`homeserver` must be the server's base URL, without a query or fragment",
                "`room_id`: `abc` is not a room id like `!abc123:example.org`",
            ]
        );
        let error =
            toml::from_str::<MatrixConfig>("homeserver = \"x\"\nroom = \"!a\"").unwrap_err();
        assert!(
            error.message().starts_with("unknown field `room`"),
            "{error}"
        );
    }

    // --- delivery against a real local receiver ---

    const TOKEN: &str = "syt_SECRET_TOKEN";
    const ROOM: &str = "!room:example.org";

    fn matrix(server: &Server) -> Matrix {
        let spec = MatrixSpec {
            homeserver: Url::parse(&server.url("/")).unwrap(),
            access_token: TOKEN.into(),
            room_id: ROOM.into(),
        };
        Matrix::new(spec, reqwest::Client::new())
    }

    async fn send_to(
        answer: impl FnMut(&Request) -> Response + Send + 'static,
    ) -> (Result<(), DeliveryError>, Server) {
        let server = Server::start(answer).await;
        let result = matrix(&server).send(&fixtures::failure()).await;
        if let Err(error) = &result {
            let text = format!("{error} {error:?}");
            assert!(!text.contains("SECRET"), "{text}");
        }
        (result, server)
    }

    #[tokio::test]
    async fn puts_the_event_with_its_txn_and_token() {
        let (result, server) = send_to(|_| Response::ok(r#"{"event_id": "$e"}"#)).await;
        result.unwrap();
        // A redelivery of the same message: the same path.
        matrix(&server).send(&fixtures::failure()).await.unwrap();
        matrix(&server).send(&fixtures::recovery()).await.unwrap();
        let requests = server.requests();
        let path = "/_matrix/client/v3/rooms/%21room%3Aexample.org/send/m.room.message/\
                    klaxon.api-20260329T001502Z.failure.1774739702.000000000";
        let recovery = "/_matrix/client/v3/rooms/%21room%3Aexample.org/send/m.room.message/\
                        klaxon.api-20260329T001502Z.recovery.1774743601.000000000";
        let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, [path, path, recovery]);
        let request = &requests[0];
        assert_eq!(request.method, "PUT");
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.json(), render(&fixtures::failure()));
    }

    #[tokio::test]
    async fn a_rate_limit_waits_the_bodys_retry_after_ms() {
        let limited = r#"{"errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests", "retry_after_ms": 2500}"#;
        let (result, _server) = send_to(move |_| Response::status(429).body(limited)).await;
        assert_eq!(
            result.unwrap_err(),
            DeliveryError::Retry {
                reason: format!("HTTP 429 Too Many Requests: {limited}"),
                after: Some(Duration::from_millis(2_500)),
            }
        );
        let (result, _server) = send_to(|_| Response::status(429).header("Retry-After", "3")).await;
        let DeliveryError::Retry { after, .. } = result.unwrap_err() else {
            panic!("not a retry");
        };
        assert_eq!(after, Some(Duration::from_secs(3)));
    }

    #[tokio::test]
    async fn refusals_are_rejected_without_the_token() {
        // A homeserver quoting the header it was sent.
        let (result, _server) = send_to(|r: &Request| {
            let auth = r.header("authorization").unwrap_or_default().to_owned();
            Response::status(401).body(format!(
                r#"{{"errcode": "M_UNKNOWN_TOKEN", "error": "unknown token {auth}"}}"#
            ))
        })
        .await;
        assert_eq!(
            result.unwrap_err(),
            DeliveryError::Reject {
                reason: r#"HTTP 401 Unauthorized: {"errcode": "M_UNKNOWN_TOKEN", "error": "unknown token Bearer ***"}"#
                    .into()
            }
        );
        let (result, _server) = send_to(|_| Response::status(502)).await;
        assert!(matches!(
            result,
            Err(DeliveryError::Retry { after: None, .. })
        ));
    }
}
