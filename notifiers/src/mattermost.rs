//! The `mattermost` channel: a Mattermost incoming webhook taking Slack-compatible JSON
//! (`text` and one attachment tinted by the event). Owns [`MattermostFormat`]: the pure
//! [`render`] of an alert into that JSON. Its config (`webhook_url`, a secret) and
//! runtime are [`crate::chat_hook`]'s.
//!
//! The request is documented at
//! <https://developers.mattermost.com/integrate/webhooks/incoming/> (a POST of JSON to
//! `https://HOST/hooks/KEY`) and the attachment's fields at
//! <https://developers.mattermost.com/integrate/reference/message-attachments/>.

use serde_json::{Value, json};

use crate::Alert;
use crate::chat_hook::{ChatHook, HookConfig, HookFormat};
use crate::text::{self, ELLIPSIS};

/// How long a text may be: Mattermost servers before 5.0 kept posts to 4,000
/// characters (newer ones to 16,383), so every server shows the whole of it.
pub const TEXT_CHARS: usize = 4_000;
/// How long a field's value may be, so a long check target does not swamp the message.
pub const FIELD_CHARS: usize = 1_000;

/// The raw `[notifiers.NAME]` table of `type = "mattermost"`: only `webhook_url`.
pub type MattermostConfig = HookConfig<MattermostFormat>;
/// A `mattermost` notifier ready to send.
pub type Mattermost = ChatHook<MattermostFormat>;

/// What makes the `mattermost` channel itself: its [`render`]; a 429 says how long to
/// wait in `Retry-After`.
#[derive(Debug)]
pub struct MattermostFormat;

impl HookFormat for MattermostFormat {
    fn render(alert: &Alert) -> Value {
        render(alert)
    }
}

/// Renders an alert as a Mattermost webhook message: `text` is the title, and one
/// attachment carries the rest: `fallback` (the plain text, for notifications), `color`
/// (`#RRGGBB`, [`text::colour`]), `text` (the reason, then the output in a code block),
/// the other facts as `fields` (the check and the alert id full width, the rest
/// `short`), and the footer `klaxon on AGENT · alert ID`.
///
/// Every text Mattermost renders as Markdown is escaped ([`text::escape_markdown`]), so
/// no value can mention `@channel`, add a link or emphasis.
pub fn render(alert: &Alert) -> Value {
    let fields: Vec<Value> = text::markdown_fields(alert, FIELD_CHARS)
        .into_iter()
        .map(|(label, value, short)| json!({ "title": label, "value": value, "short": short }))
        .collect();
    let footer = format!("klaxon on {} · alert {}", alert.agent, alert.id);
    json!({
        "text": text::escape_markdown(&text::title(alert), TEXT_CHARS, ELLIPSIS),
        "attachments": [{
            "fallback": text::truncate(&text::render_text(alert), TEXT_CHARS, ELLIPSIS),
            "color": format!("#{:06X}", text::colour(alert)),
            "text": text::markdown_body(alert, TEXT_CHARS),
            "fields": fields,
            "footer": text::truncate(&footer, TEXT_CHARS, ELLIPSIS),
        }],
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::DeliveryError;
    use crate::fixtures;
    use klaxon_testkit::{Response, Server};
    use std::time::Duration;

    fn field(title: &str, value: &str, short: bool) -> Value {
        json!({ "title": title, "value": value, "short": short })
    }

    /// The fields every event of the fixture's outage shows first.
    fn head(severity: &str) -> Vec<Value> {
        vec![
            field("Severity", severity, true),
            field("Check", "http https://api.example.com/health", false),
        ]
    }

    fn message(title: &str, colour: &str, body: &str, fields: Vec<Value>) -> Value {
        json!({
            "text": title,
            "attachments": [{
                "fallback": "",
                "color": colour,
                "text": body,
                "fields": fields,
                "footer": "klaxon on macbook · alert api-20260329T001502Z",
            }],
        })
    }

    /// `render`, with the fallback checked to be the plain text and then blanked.
    fn rendered(alert: &Alert) -> Value {
        let mut message = render(alert);
        let fallback = &mut message["attachments"][0]["fallback"];
        assert_eq!(fallback.as_str().unwrap(), text::render_text(alert));
        *fallback = json!("");
        message
    }

    #[test]
    fn renders_a_failure_and_a_reminder() {
        let mut fields = head("critical");
        fields.extend([
            field("Attempts", "3 of 3", true),
            field("Elapsed", "7.2s", true),
            field("Failing since", "2026-03-29 10:15:02 +11:00", true),
            field("Last success", "2026-03-29 10:10:01 +11:00", true),
            field("Next run", "2026-03-29 10:20:00 +11:00", true),
            field("Alert", "api-20260329T001502Z", false),
        ]);
        let body = "HTTP 503 Service Unavailable\n\
                    ```\nupstream connect error\nreset reason: overflow\n```";
        assert_eq!(
            rendered(&fixtures::failure()),
            message(
                "DOWN api on macbook: HTTP 503 Service Unavailable",
                "#E01E5A",
                body,
                fields.clone()
            )
        );
        fields[6] = field("Next run", "2026-03-29 14:20:00 +11:00", true);
        assert_eq!(
            rendered(&fixtures::reminder()),
            message(
                "STILL DOWN api on macbook: HTTP 503 Service Unavailable",
                "#E01E5A",
                body,
                fields
            )
        );
    }

    #[test]
    fn renders_an_update_and_a_recovery() {
        let mut fields = head("warning");
        fields.extend([
            field("Attempts", "1 of 3", true),
            field("Elapsed", "2.4s", true),
            field("Failing since", "2026-03-29 10:15:02 +11:00", true),
            field("Last success", "2026-03-29 10:10:01 +11:00", true),
            field("Next run", "2026-03-29 10:40:00 +11:00", true),
            field("Alert", "api-20260329T001502Z", false),
        ]);
        assert_eq!(
            rendered(&fixtures::update()),
            message(
                "CHANGED api on macbook is now warning: latency 2.4s \\> 2s",
                "#ECB22E",
                "latency 2.4s \\> 2s",
                fields
            )
        );
        let mut fields = head("ok");
        fields.extend([
            field("Attempts", "1 of 3", true),
            field("Elapsed", "180ms", true),
            field("Failing since", "2026-03-29 10:15:02 +11:00", true),
            field("Next run", "2026-03-29 11:25:00 +11:00", true),
            field("Downtime", "1h 5m", true),
            field("Alert", "api-20260329T001502Z", false),
        ]);
        assert_eq!(
            rendered(&fixtures::recovery()),
            message(
                "RECOVERED api on macbook after 1h 5m",
                "#2EB67D",
                "HTTP 200 OK",
                fields
            )
        );
    }

    #[test]
    fn values_cannot_mention_link_or_format() {
        let alert = Alert {
            summary: "@channel see ~town-square [here](https://evil.example)".into(),
            ..fixtures::update()
        };
        let message = render(&alert);
        assert_eq!(
            message["attachments"][0]["text"],
            "@\u{200b}channel see \\~town-square \\[here\\]\\(https://evil.example\\)"
        );
        // The fallback is plain text: Mattermost shows it unrendered.
        let fallback = message["attachments"][0]["fallback"].as_str().unwrap();
        assert!(
            fallback.contains("@channel see ~town-square [here]"),
            "{fallback}"
        );
    }

    // --- delivery against a real local receiver ---

    const SECRET_PATH: &str = "/hooks/SECRET-KEY";

    async fn send_to(answer: Response) -> (Result<(), DeliveryError>, Server) {
        crate::chat_hook::send_to::<MattermostFormat>(SECRET_PATH, answer).await
    }

    #[tokio::test]
    async fn posts_the_rendered_message() {
        let (result, server) = send_to(Response::ok("ok")).await;
        result.unwrap();
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].method, "POST");
        assert_eq!(requests[0].path, SECRET_PATH);
        assert_eq!(requests[0].header("content-type"), Some("application/json"));
        assert_eq!(requests[0].json(), render(&fixtures::failure()));
    }

    #[tokio::test]
    async fn answers_are_classified() {
        let (result, _server) = send_to(Response::status(429).header("Retry-After", "4")).await;
        assert_eq!(
            result.unwrap_err(),
            DeliveryError::Retry {
                reason: "HTTP 429 Too Many Requests".into(),
                after: Some(Duration::from_secs(4)),
            }
        );
        let (result, _server) = send_to(Response::status(503)).await;
        assert!(matches!(
            result,
            Err(DeliveryError::Retry { after: None, .. })
        ));
        let refusal = r#"{"id": "web.incoming_webhook.invalid.app_error", "status_code": 400}"#;
        let (result, _server) = send_to(Response::status(400).body(refusal)).await;
        assert_eq!(
            result.unwrap_err(),
            DeliveryError::Reject {
                reason: format!("HTTP 400 Bad Request: {refusal}")
            }
        );
    }
}
