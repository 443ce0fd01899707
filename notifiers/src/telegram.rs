//! The `telegram` channel: a bot sends each message to a chat with the Bot API's
//! `sendMessage` (a POST of `chat_id`, `text` in Telegram's HTML and `parse_mode` as
//! JSON to `/bot<token>/sendMessage`). Owns its config, the pure [`render`] of an
//! alert (and [`render_digest`] of several), and [`Telegram::send`].
//!
//! The bot's token is in the URL's path, so no reason, log line or `Debug` ever shows
//! that URL: the runtime builds it for each request and keeps only the spec.
//!
//! The API: <https://core.telegram.org/bots/api#sendmessage> (the method, a text of at
//! most 4,096 characters after entities parsing), <https://core.telegram.org/bots/api#html-style>
//! (every `<`, `>` and `&` that is not markup escaped), <https://core.telegram.org/bots/api#making-requests>
//! (the URL, and a refusal's JSON) and <https://core.telegram.org/bots/api#responseparameters>
//! (`retry_after`: how long a flood-limited bot must wait).

use std::fmt;
use std::time::Duration;

use klaxon_config_core::{SecretKey, Seg};
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use toml::Spanned;
use url::Url;

use crate::http::{self, BodyHint, HttpShell, JsonRequest, json_wait};
use crate::push;
use crate::text::{self, ELLIPSIS};
use crate::validate::{self, ConfigIssue};
use crate::{Alert, BuildError, Channel, DeliveryError, NotifierPlugin};

/// Where the Bot API is when `api_url` is not set.
pub const DEFAULT_API_URL: &str = "https://api.telegram.org";
/// Telegram's limit on a message's text after entities parsing, in UTF-16 code units
/// (as Telegram counts).
pub const TEXT_UNITS: usize = 4_096;
/// How much of the title, and of each fact's value, a message shows.
pub const LINE_CHARS: usize = 256;

/// The raw `[notifiers.NAME]` table of `type = "telegram"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    bot_token: Spanned<SecretString>,
    chat_id: Spanned<toml::Value>,
    api_url: Option<Spanned<String>>,
}

impl NotifierPlugin for TelegramConfig {
    type Spec = TelegramSpec;
    type Channel = Telegram;

    const SECRET_KEYS: &'static [SecretKey] = &[
        SecretKey::always(&[Seg::Key("bot_token")]),
        SecretKey::url(&[Seg::Key("api_url")]),
    ];

    /// Checks the bot token (nothing in it that would change the URL's path), the chat
    /// (a number or a `@channelusername`) and `api_url`, pushing every problem to
    /// `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<TelegramSpec> {
        let span = self.bot_token.span();
        let bot_token =
            validate::non_empty_secret(self.bot_token, "bot_token", issues).filter(|token| {
                // It becomes part of the URL's path: nothing may end or escape that.
                let fits = !token
                    .expose_secret()
                    .contains(|c: char| matches!(c, '/' | '?' | '#' | '%') || c.is_whitespace());
                if !fits {
                    issues.push(ConfigIssue::new(
                        span.clone(),
                        "`bot_token` must be the token @BotFather gives, like `123456:ABC-DEF…`",
                    ));
                }
                fits
            });
        let chat_id = match self.chat_id.get_ref() {
            toml::Value::Integer(id) => Some(ChatId::Id(*id)),
            toml::Value::String(name) if !name.trim().is_empty() => {
                Some(ChatId::Name(name.trim().to_owned()))
            }
            _ => {
                issues.push(ConfigIssue::new(
                    self.chat_id.span(),
                    "`chat_id` must be a chat's number or a channel's `@username`",
                ));
                None
            }
        };
        let api_url = match &self.api_url {
            Some(url) => validate::http_url(url, "api_url", issues),
            None => DEFAULT_API_URL.parse().ok(),
        };
        Some(TelegramSpec {
            bot_token: bot_token?,
            chat_id: chat_id?,
            api_url: api_url?,
        })
    }

    fn build(spec: &TelegramSpec, client: &reqwest::Client) -> Result<Telegram, BuildError> {
        Ok(Telegram::new(spec.clone(), client.clone()))
    }

    /// Telegram asks bots to send one message a second to a chat at most:
    /// <https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this>.
    fn min_interval(_spec: &TelegramSpec) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }
}

/// Which chat a bot writes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatId {
    /// A user's, group's or channel's number (groups' are negative).
    Id(i64),
    /// A public channel's `@username`.
    Name(String),
}

/// A validated `telegram` notifier.
#[derive(Clone)]
pub struct TelegramSpec {
    /// The bot's token; never shown.
    pub bot_token: SecretString,
    pub chat_id: ChatId,
    /// The Bot API server (Telegram's, or one's own `telegram-bot-api`).
    pub api_url: Url,
}

impl fmt::Debug for TelegramSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramSpec")
            .field("bot_token", &format_args!("***"))
            .field("chat_id", &self.chat_id)
            .field("api_url", &self.api_url.as_str())
            .finish()
    }
}

/// Escapes text for Telegram's HTML: `&`, `<` and `>`, so nothing from a monitored
/// system can add markup or a link.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// How long a text is as Telegram counts it.
fn units(text: &str) -> usize {
    text.encode_utf16().count()
}

/// The end of `text` within `room` UTF-16 units, starting with `…` when cut.
fn tail_within(text: &str, room: usize) -> String {
    if units(text) <= room {
        return text.to_owned();
    }
    let mut kept = 0;
    let start = text
        .char_indices()
        .rev()
        .take_while(|(_, c)| {
            kept += c.len_utf16();
            kept < room
        })
        .last()
        .map_or(text.len(), |(i, _)| i);
    format!("{ELLIPSIS}{}", &text[start..])
}

/// An alert as Telegram HTML: the title in bold, one `<b>Label:</b> value` line per
/// fact, and the output's tail in a `<pre>` block, every value escaped. The title and
/// each value are cut to [`LINE_CHARS`], the output to what is left of [`TEXT_UNITS`].
pub fn html(alert: &Alert) -> String {
    let title = text::truncate(&text::title(alert), LINE_CHARS, ELLIPSIS).into_owned();
    let mut shown = units(&title);
    let mut html = format!("<b>{}</b>", escape(&title));
    for (label, value) in text::facts(alert) {
        let value = text::truncate(&value, LINE_CHARS, ELLIPSIS);
        shown += units(&format!("\n{label}: {value}"));
        html.push_str(&format!("\n<b>{label}:</b> {}", escape(&value)));
    }
    if let Some(output) = text::output_tail(alert) {
        let output = tail_within(&output, TEXT_UNITS.saturating_sub(shown + 2));
        html.push_str(&format!("\n\n<pre>{}</pre>", escape(&output)));
    }
    html
}

/// Several alerts as Telegram HTML: [`text::digest_title`] in bold, a blank line, then
/// one `- LINE` line per alert ([`push::digest_body`]), escaped, within [`TEXT_UNITS`].
pub fn html_digest(alerts: &[Alert]) -> String {
    let title = text::truncate(&text::digest_title(alerts), LINE_CHARS, ELLIPSIS).into_owned();
    let room = TEXT_UNITS - units(&title) - 2;
    // The digest is cut in characters; a character outside the BMP counts twice.
    let mut chars = room;
    let body = loop {
        let body = push::digest_body(alerts, chars);
        match units(&body).checked_sub(room) {
            Some(over) if over > 0 => chars -= over,
            _ => break body,
        }
    };
    format!("<b>{}</b>\n\n{}", escape(&title), escape(&body))
}

/// The `sendMessage` body for an alert: `chat_id`, `text` ([`html`]), `parse_mode`
/// `HTML`, and no link preview (a check's URL would otherwise be fetched by Telegram).
pub fn render(alert: &Alert, chat_id: &ChatId) -> Value {
    message(chat_id, &html(alert))
}

/// The `sendMessage` body for several alerts, with [`html_digest`] as its text.
pub fn render_digest(alerts: &[Alert], chat_id: &ChatId) -> Value {
    message(chat_id, &html_digest(alerts))
}

fn message(chat_id: &ChatId, text: &str) -> Value {
    let chat_id = match chat_id {
        ChatId::Id(id) => json!(id),
        ChatId::Name(name) => json!(name),
    };
    json!({
        "chat_id": chat_id,
        "text": text,
        "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": true},
    })
}

/// A flood-limited bot's wait, from the refusal's `parameters.retry_after`.
const RETRY_HINT: BodyHint =
    |body| json_wait(body, "/parameters/retry_after", Duration::from_secs(1));

/// A `telegram` notifier ready to send.
#[derive(Debug)]
pub struct Telegram {
    spec: TelegramSpec,
    http: HttpShell,
}

impl Telegram {
    /// How long one delivery may take, answer included.
    pub const TIMEOUT: Duration = Duration::from_secs(10);

    pub fn new(spec: TelegramSpec, client: reqwest::Client) -> Self {
        let http = HttpShell::shared(client, Self::TIMEOUT);
        Self { spec, http }
    }

    /// The same notifier with another delivery deadline than [`Telegram::TIMEOUT`].
    pub fn with_timeout(self, timeout: Duration) -> Self {
        let http = self.http.with_timeout(timeout);
        Self { http, ..self }
    }

    async fn post(&self, message: &Value) -> Result<(), DeliveryError> {
        let token = self.spec.bot_token.expose_secret();
        let url = push::endpoint(&self.spec.api_url, &format!("bot{token}/sendMessage"));
        let body = message.to_string().into_bytes();
        let request = JsonRequest {
            hint: Some(RETRY_HINT),
            ..JsonRequest::post(HeaderMap::new())
        };
        let sent = self.http.send_json(request, url, body).await;
        http::masked(sent, &[token])
    }
}

impl Channel for Telegram {
    const MERGES: bool = true;

    /// POSTs [`render`]'s JSON to `/bot<token>/sendMessage`. 2xx is delivered; 408,
    /// 429 (after its `parameters.retry_after`, else its `Retry-After`) and 5xx (after
    /// its `Retry-After`), connection errors and timeouts are
    /// [`DeliveryError::Retry`]; other statuses (a chat not found, a bot blocked) are
    /// [`DeliveryError::Reject`]. No reason shows the token.
    async fn send(&self, alert: &Alert) -> Result<(), DeliveryError> {
        self.post(&render(alert, &self.spec.chat_id)).await
    }

    /// POSTs [`render_digest`]'s JSON, classified as [`Telegram::send`]'s.
    async fn send_digest(&self, alerts: &[Alert]) -> Result<(), DeliveryError> {
        self.post(&render_digest(alerts, &self.spec.chat_id)).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fixtures;
    use klaxon_testkit::{Response, Server};

    const TOKEN: &str = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11";

    fn validate(toml: &str) -> (Option<TelegramSpec>, Vec<ConfigIssue>) {
        fixtures::validated::<TelegramConfig>(toml)
    }

    #[test]
    fn validates_its_table() {
        let (spec, issues) = validate(&format!("bot_token = \"{TOKEN}\"\nchat_id = -1001234"));
        assert_eq!(issues, []);
        assert_eq!(
            format!("{:?}", spec.unwrap()),
            "TelegramSpec { bot_token: ***, chat_id: Id(-1001234), api_url: \"https://api.telegram.org/\" }"
        );
        let (spec, _) = validate(&format!(
            "bot_token = \"{TOKEN}\"\nchat_id = \"@ops\"\napi_url = \"http://127.0.0.1:8081\""
        ));
        let spec = spec.unwrap();
        assert_eq!(spec.chat_id, ChatId::Name("@ops".into()));
        assert_eq!(
            TelegramConfig::min_interval(&spec),
            Some(Duration::from_secs(1))
        );
        assert_eq!(spec.api_url.as_str(), "http://127.0.0.1:8081/");

        let toml = "bot_token = \"1:a/SECRET\"\nchat_id = 1.5\napi_url = \"x\"";
        let (spec, issues) = validate(toml);
        assert!(spec.is_none());
        assert_eq!(
            issues,
            [
                ConfigIssue::new(
                    12..24,
                    "`bot_token` must be the token @BotFather gives, like `123456:ABC-DEF…`"
                ),
                ConfigIssue::new(
                    35..38,
                    "`chat_id` must be a chat's number or a channel's `@username`"
                ),
                ConfigIssue::new(
                    49..52,
                    "`api_url`: `x` is not a valid URL (relative URL without a base)"
                ),
            ]
        );
        let (_, issues) = validate("bot_token = \"\"\nchat_id = \" \"");
        let messages: Vec<&str> = issues.iter().map(|i| i.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "`bot_token` must not be empty",
                "`chat_id` must be a chat's number or a channel's `@username`"
            ]
        );
        let error = toml::from_str::<TelegramConfig>("bot_token = \"1:a\"\nchat = 1").unwrap_err();
        assert!(
            error.message().starts_with("unknown field `chat`"),
            "{error}"
        );
    }

    fn expected(text: &str) -> Value {
        json!({
            "chat_id": -1001234,
            "text": text,
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": true},
        })
    }

    #[test]
    fn renders_each_event() {
        let chat = ChatId::Id(-1001234);
        let cases = [
            (
                fixtures::failure(),
                "<b>DOWN api on macbook: HTTP 503 Service Unavailable</b>\n\
                 <b>Severity:</b> critical\n\
                 <b>Check:</b> http https://api.example.com/health\n\
                 <b>Reason:</b> HTTP 503 Service Unavailable\n\
                 <b>Attempts:</b> 3 of 3\n\
                 <b>Elapsed:</b> 7.2s\n\
                 <b>Failing since:</b> 2026-03-29 10:15:02 +11:00\n\
                 <b>Last success:</b> 2026-03-29 10:10:01 +11:00\n\
                 <b>Next run:</b> 2026-03-29 10:20:00 +11:00\n\
                 <b>Alert:</b> api-20260329T001502Z\n\
                 \n\
                 <pre>upstream connect error\nreset reason: overflow</pre>",
            ),
            (
                fixtures::update(),
                "<b>CHANGED api on macbook is now warning: latency 2.4s &gt; 2s</b>\n\
                 <b>Severity:</b> warning\n\
                 <b>Check:</b> http https://api.example.com/health\n\
                 <b>Reason:</b> latency 2.4s &gt; 2s\n\
                 <b>Attempts:</b> 1 of 3\n\
                 <b>Elapsed:</b> 2.4s\n\
                 <b>Failing since:</b> 2026-03-29 10:15:02 +11:00\n\
                 <b>Last success:</b> 2026-03-29 10:10:01 +11:00\n\
                 <b>Next run:</b> 2026-03-29 10:40:00 +11:00\n\
                 <b>Alert:</b> api-20260329T001502Z",
            ),
            (
                fixtures::recovery(),
                "<b>RECOVERED api on macbook after 1h 5m</b>\n\
                 <b>Severity:</b> ok\n\
                 <b>Check:</b> http https://api.example.com/health\n\
                 <b>Reason:</b> HTTP 200 OK\n\
                 <b>Attempts:</b> 1 of 3\n\
                 <b>Elapsed:</b> 180ms\n\
                 <b>Failing since:</b> 2026-03-29 10:15:02 +11:00\n\
                 <b>Next run:</b> 2026-03-29 11:25:00 +11:00\n\
                 <b>Downtime:</b> 1h 5m\n\
                 <b>Alert:</b> api-20260329T001502Z",
            ),
        ];
        for (alert, text) in &cases {
            assert_eq!(render(alert, &chat), expected(text), "{:?}", alert.event);
        }
        // The reminder is the failure, still down four hours later.
        let reminder = cases[0]
            .1
            .replace("<b>DOWN", "<b>STILL DOWN")
            .replace("10:20:00", "14:20:00");
        assert_eq!(render(&fixtures::reminder(), &chat), expected(&reminder));
        assert_eq!(
            render(&fixtures::failure(), &ChatId::Name("@ops".into()))["chat_id"],
            "@ops"
        );
    }

    #[test]
    fn renders_a_digest() {
        assert_eq!(
            render_digest(&fixtures::digest(), &ChatId::Id(-1001234)),
            expected(
                "<b>3 alerts on macbook: 1 down, 1 warning, 1 recovered</b>\n\
                 \n\
                 - DOWN api on macbook: HTTP 503 Service Unavailable (3 of 3 attempts, 7.2s)\n\
                 - WARNING disk on macbook: disk 85% full (2 of 3 attempts, 1.3s)\n\
                 - RECOVERED db on macbook after 1h 5m (down 10:15–11:20)"
            )
        );
    }

    #[test]
    fn content_cannot_add_markup() {
        let alert = Alert {
            job: "<b>api</b>".into(),
            summary: "<a href=\"https://evil.example\">click</a> & more".into(),
            output: Some("</pre><i>x</i>".into()),
            ..fixtures::failure()
        };
        let text = html(&alert);
        assert!(text.starts_with(
            "<b>DOWN &lt;b&gt;api&lt;/b&gt; on macbook: &lt;a href=\"https://evil.example\"&gt;click&lt;/a&gt; &amp; more</b>"
        ), "{text}");
        assert!(
            text.ends_with("<pre>&lt;/pre&gt;&lt;i&gt;x&lt;/i&gt;</pre>"),
            "{text}"
        );
        let digest = html_digest(&[alert, fixtures::recovery()]);
        assert!(
            !digest.contains("<a") && !digest.contains("<i>"),
            "{digest}"
        );
    }

    /// The text as Telegram shows it: markup gone, entities replaced.
    fn shown(html: &str) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for c in html.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                _ if !in_tag => out.push(c),
                _ => {}
            }
        }
        out.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    }

    #[test]
    fn long_texts_fit_telegrams_limit() {
        let alert = Alert {
            summary: "<&>".repeat(1_000),
            output: Some(format!("{}\n", "😀&".repeat(3_000))),
            ..fixtures::failure()
        };
        let text = html(&alert);
        assert!(
            units(&shown(&text)) <= TEXT_UNITS,
            "{}",
            units(&shown(&text))
        );
        assert!(
            text.contains(&format!("<pre>{ELLIPSIS}")),
            "the output's end is kept"
        );
        assert!(text.ends_with("😀&amp;</pre>"));
        let storm = html_digest(&fixtures::storm(2_000, "<HTTP 503>"));
        assert!(units(&shown(&storm)) <= TEXT_UNITS);
        assert!(storm.contains("more: job-"));
        assert_eq!(tail_within("abc", 3), "abc");
        assert_eq!(tail_within("abcdef", 3), "…ef");
    }

    fn telegram(url: &str) -> Telegram {
        let spec = TelegramSpec {
            bot_token: TOKEN.into(),
            chat_id: ChatId::Id(-1001234),
            api_url: url.parse().unwrap(),
        };
        Telegram::new(spec, reqwest::Client::new())
    }

    #[tokio::test]
    async fn sends_the_message_to_the_bots_method() {
        let server = Server::start(|_| Response::ok("{\"ok\":true,\"result\":{}}")).await;
        let alert = fixtures::failure();
        telegram(&server.url("")).send(&alert).await.unwrap();
        let alerts = fixtures::digest();
        telegram(&server.url("/tg/"))
            .send_digest(&alerts)
            .await
            .unwrap();
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].method, "POST");
        assert_eq!(requests[0].path, format!("/bot{TOKEN}/sendMessage"));
        assert_eq!(requests[0].header("content-type"), Some("application/json"));
        assert_eq!(requests[0].json(), render(&alert, &ChatId::Id(-1001234)));
        assert_eq!(requests[1].path, format!("/tg/bot{TOKEN}/sendMessage"));
        assert_eq!(
            requests[1].json(),
            render_digest(&alerts, &ChatId::Id(-1001234))
        );
        assert!(!format!("{:?}", telegram(&server.url(""))).contains(TOKEN));
    }

    #[tokio::test]
    async fn answers_are_classified_and_the_token_never_shown() {
        let send = |url: String, timeout| async move {
            let telegram = telegram(&url).with_timeout(timeout);
            telegram.send(&fixtures::failure()).await
        };
        push::assert_answers_classified(send, &[TOKEN, "ABC-DEF1234ghIkl"]).await;
    }

    #[tokio::test]
    async fn a_flood_limit_waits_the_given_retry_after() {
        let flood = r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#;
        let server = Server::start(move |_| Response::status(429).body(flood)).await;
        let error = telegram(&server.url(""))
            .send(&fixtures::failure())
            .await
            .unwrap_err();
        assert_eq!(
            error,
            DeliveryError::Retry {
                reason: format!("HTTP 429 Too Many Requests: {flood}"),
                after: Some(Duration::from_secs(7)),
            }
        );
        let blocked = r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#;
        server.set_handler(move |_| Response::status(403).body(blocked));
        let error = telegram(&server.url(""))
            .send(&fixtures::failure())
            .await
            .unwrap_err();
        assert_eq!(
            error,
            DeliveryError::Reject {
                reason: format!("HTTP 403 Forbidden: {blocked}")
            }
        );
    }
}
