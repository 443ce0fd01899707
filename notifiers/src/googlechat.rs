//! The `googlechat` channel: a Google Chat space's incoming webhook taking a text
//! message, each alert in a thread of its own. Owns [`GoogleChatFormat`]: the pure
//! [`render`] of an alert into the message JSON, the pacing, and [`reply_url`]. Its
//! config (`webhook_url`, a secret: its `key` and `token` are the credential) and
//! runtime are [`crate::chat_hook`]'s.
//!
//! The request is documented at
//! <https://developers.google.com/workspace/chat/quickstart/webhooks>: a POST of
//! `{"text": …, "thread": {"threadKey": …}}` to
//! `https://chat.googleapis.com/v1/spaces/SPACE/messages?key=KEY&token=TOKEN`, with
//! `messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD` in the query so a message
//! whose thread key is new starts a thread and the next ones reply in it. The text
//! markup is at <https://developers.google.com/workspace/chat/format-messages>.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::Alert;
use crate::chat_hook::{ChatHook, HookConfig, HookFormat};
use crate::text::{self, ELLIPSIS};

/// Google Chat's limit on a text message.
pub const TEXT_CHARS: usize = 4_096;
/// The query parameter that makes a message reply in its thread.
pub const REPLY_OPTION: (&str, &str) =
    ("messageReplyOption", "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD");

/// The raw `[notifiers.NAME]` table of `type = "googlechat"`: only `webhook_url`.
pub type GoogleChatConfig = HookConfig<GoogleChatFormat>;
/// A `googlechat` notifier ready to send, to the webhook with [`REPLY_OPTION`].
pub type GoogleChat = ChatHook<GoogleChatFormat>;

/// What makes the `googlechat` channel itself.
#[derive(Debug)]
pub struct GoogleChatFormat;

impl HookFormat for GoogleChatFormat {
    /// A space takes one message a second from an app or webhook.
    const MIN_INTERVAL: Option<Duration> = Some(Duration::from_secs(1));

    fn render(alert: &Alert) -> Value {
        render(alert)
    }

    /// The webhook with [`REPLY_OPTION`] ([`reply_url`]).
    fn url(webhook_url: SecretString) -> SecretString {
        reply_url(webhook_url.expose_secret()).unwrap_or(webhook_url)
    }
}

/// The webhook URL with [`REPLY_OPTION`] in its query (in place of any
/// `messageReplyOption` it had), its other parameters (`key`, `token`) kept in order.
/// `None` when it is not a URL (validation has made sure it is).
pub fn reply_url(webhook_url: &str) -> Option<SecretString> {
    let mut url = url::Url::parse(webhook_url.trim()).ok()?;
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(name, _)| name != REPLY_OPTION.0)
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(REPLY_OPTION.0, REPLY_OPTION.1);
    Some(url.as_str().into())
}

/// Renders an alert as a Google Chat message in the alert's thread: `thread.threadKey`
/// is the alert id (shared by its failure, updates, reminders and recovery) and `text`
/// is the title in bold, one `Label: value` line per fact, and the output in a
/// monospace block, within [`TEXT_CHARS`].
///
/// Google Chat's text markup has no escape: a zero-width space after every `<`, `*`,
/// `_`, `~` and `` ` `` from the check or the config keeps it from opening a link, a
/// mention (`<users/all>`) or emphasis.
pub fn render(alert: &Alert) -> Value {
    let mut text = format!("*{}*", escape(&text::title(alert)));
    for (label, value) in text::facts(alert) {
        text.push('\n');
        text.push_str(label);
        text.push_str(": ");
        text.push_str(&escape(&value));
    }
    let output = text::output_tail(alert).map(|output| format!("\n{}", text::code_block(&output)));
    let output = output.unwrap_or_default();
    let room = TEXT_CHARS.saturating_sub(output.chars().count());
    let mut text = text::truncate(&text, room, ELLIPSIS).into_owned();
    text.push_str(&output);
    json!({
        "text": text,
        "thread": { "threadKey": alert.id },
    })
}

/// Breaks Google Chat's markup (see [`render`]).
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        escaped.push(c);
        if matches!(c, '<' | '*' | '_' | '~' | '`') {
            escaped.push('\u{200b}');
        }
    }
    escaped
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::{DeliveryError, NotifierPlugin};
    use klaxon_testkit::{Response, Server};

    fn message(text: &str) -> Value {
        json!({ "text": text, "thread": { "threadKey": "api-20260329T001502Z" } })
    }

    #[test]
    fn renders_a_failure_and_a_reminder() {
        let text = |title: &str, next: &str| {
            format!(
                "*{title}*\n\
                 Severity: critical\n\
                 Check: http https://api.example.com/health\n\
                 Reason: HTTP 503 Service Unavailable\n\
                 Attempts: 3 of 3\n\
                 Elapsed: 7.2s\n\
                 Failing since: 2026-03-29 10:15:02 +11:00\n\
                 Last success: 2026-03-29 10:10:01 +11:00\n\
                 Next run: {next}\n\
                 Alert: api-20260329T001502Z\n\
                 ```\nupstream connect error\nreset reason: overflow\n```"
            )
        };
        assert_eq!(
            render(&fixtures::failure()),
            message(&text(
                "DOWN api on macbook: HTTP 503 Service Unavailable",
                "2026-03-29 10:20:00 +11:00"
            ))
        );
        assert_eq!(
            render(&fixtures::reminder()),
            message(&text(
                "STILL DOWN api on macbook: HTTP 503 Service Unavailable",
                "2026-03-29 14:20:00 +11:00"
            ))
        );
    }

    #[test]
    fn renders_an_update_and_a_recovery_in_the_same_thread() {
        assert_eq!(
            render(&fixtures::update()),
            message(
                "*CHANGED api on macbook is now warning: latency 2.4s > 2s*\n\
                 Severity: warning\n\
                 Check: http https://api.example.com/health\n\
                 Reason: latency 2.4s > 2s\n\
                 Attempts: 1 of 3\n\
                 Elapsed: 2.4s\n\
                 Failing since: 2026-03-29 10:15:02 +11:00\n\
                 Last success: 2026-03-29 10:10:01 +11:00\n\
                 Next run: 2026-03-29 10:40:00 +11:00\n\
                 Alert: api-20260329T001502Z"
            )
        );
        assert_eq!(
            render(&fixtures::recovery()),
            message(
                "*RECOVERED api on macbook after 1h 5m*\n\
                 Severity: ok\n\
                 Check: http https://api.example.com/health\n\
                 Reason: HTTP 200 OK\n\
                 Attempts: 1 of 3\n\
                 Elapsed: 180ms\n\
                 Failing since: 2026-03-29 10:15:02 +11:00\n\
                 Next run: 2026-03-29 11:25:00 +11:00\n\
                 Downtime: 1h 5m\n\
                 Alert: api-20260329T001502Z"
            )
        );
    }

    #[test]
    fn values_cannot_mention_link_or_format() {
        let alert = Alert {
            summary: "<users/all> <https://evil.example|here> *now*".into(),
            output: None,
            ..fixtures::update()
        };
        let text = render(&alert)["text"].as_str().unwrap().to_owned();
        let z = '\u{200b}';
        assert!(
            text.contains(&format!(
                "Reason: <{z}users/all> <{z}https://evil.example|here> *{z}now*{z}\n"
            )),
            "{text}"
        );
    }

    #[test]
    fn long_messages_fit_and_keep_the_output() {
        let alert = Alert {
            summary: "s".repeat(10_000),
            ..fixtures::failure()
        };
        let text = render(&alert)["text"].as_str().unwrap().to_owned();
        assert_eq!(text.chars().count(), TEXT_CHARS);
        assert!(text.ends_with("reset reason: overflow\n```"), "{text}");
    }

    #[test]
    fn the_reply_option_joins_the_webhooks_query() {
        let cases = [
            (
                "https://chat.googleapis.com/v1/spaces/S/messages?key=K&token=T",
                "https://chat.googleapis.com/v1/spaces/S/messages?key=K&token=T\
                 &messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD",
            ),
            (
                "https://chat.example.com/hook?messageReplyOption=MESSAGE_REPLY_OPTION_UNSPECIFIED&key=K",
                "https://chat.example.com/hook?key=K\
                 &messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD",
            ),
            (
                "http://127.0.0.1:9/hook",
                "http://127.0.0.1:9/hook?messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(reply_url(url).unwrap().expose_secret(), expected, "{url}");
        }
    }

    #[test]
    fn validates_the_webhook_without_showing_it() {
        let parse = |toml: &str| toml::from_str::<GoogleChatConfig>(toml);
        let toml =
            "webhook_url = \"https://chat.googleapis.com/v1/spaces/S/messages?key=K&token=SECRET\"";
        let config = parse(toml).unwrap();
        assert!(!format!("{config:?}").contains("SECRET"));
        let spec = config.validate(&mut Vec::new()).unwrap();
        assert_eq!(format!("{spec:?}"), "ChatHookSpec { webhook_url: *** }");
        let chat = GoogleChat::new(spec, reqwest::Client::new());
        assert!(!format!("{chat:?}").contains("SECRET"));
        let error = parse("webhook_url = \"https://x\"\nthread = \"t\"").unwrap_err();
        assert!(
            error.message().starts_with("unknown field `thread`"),
            "{error}"
        );
    }

    // --- delivery against a real local receiver ---

    const SECRET_QUERY: &str = "key=KEY&token=SECRET-TOKEN";

    async fn send_to(answer: Response) -> (Result<(), DeliveryError>, Server) {
        crate::chat_hook::send_to::<GoogleChatFormat>(
            &format!("/v1/spaces/AAA/messages?{SECRET_QUERY}"),
            answer,
        )
        .await
    }

    #[tokio::test]
    async fn posts_the_message_replying_in_the_alerts_thread() {
        let (result, server) = send_to(Response::ok("{}")).await;
        result.unwrap();
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].method, "POST");
        assert_eq!(
            requests[0].path,
            format!(
                "/v1/spaces/AAA/messages?{SECRET_QUERY}\
                 &messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
            )
        );
        assert_eq!(requests[0].header("content-type"), Some("application/json"));
        assert_eq!(requests[0].json(), render(&fixtures::failure()));
    }

    #[tokio::test]
    async fn answers_are_classified() {
        let quota = r#"{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}"#;
        let limited = Response::status(429).header("Retry-After", "5").body(quota);
        let (result, _server) = send_to(limited).await;
        assert_eq!(
            result.unwrap_err(),
            DeliveryError::Retry {
                reason: format!("HTTP 429 Too Many Requests: {quota}"),
                after: Some(Duration::from_secs(5)),
            }
        );
        let (result, _server) = send_to(Response::status(500)).await;
        assert!(matches!(
            result,
            Err(DeliveryError::Retry { after: None, .. })
        ));
        let denied =
            format!(r#"{{"error": {{"code": 403, "message": "bad token in ?{SECRET_QUERY}"}}}}"#);
        let (result, _server) = send_to(Response::status(403).body(denied)).await;
        let error = result.unwrap_err();
        assert!(matches!(error, DeliveryError::Reject { .. }), "{error:?}");
    }
}
