//! The `discord` channel: a Discord webhook taking one embed per message. Owns its
//! [`DiscordFormat`]: the pure [`render`] of an alert into the webhook's JSON within
//! Discord's embed limits, the pacing, and the `retry_after` of a 429's body, which the
//! send honours. Its config (`webhook_url`, a secret) and runtime are
//! [`crate::chat_hook`]'s.
//!
//! The request is Discord's "Execute Webhook"
//! (<https://discord.com/developers/docs/resources/webhook#execute-webhook>): a POST of
//! JSON to `https://discord.com/api/webhooks/ID/TOKEN`, whose embed limits are listed at
//! <https://discord.com/developers/docs/resources/message#embed-object-embed-limits> and
//! whose 429 body (`{"message": …, "retry_after": 1.5, "global": false}`, seconds as a
//! float) at <https://discord.com/developers/docs/topics/rate-limits#exceeding-a-rate-limit>.

use std::time::Duration;

use chrono::SecondsFormat;
use serde_json::{Value, json};

use crate::Alert;
use crate::chat_hook::{ChatHook, HookConfig, HookFormat};
use crate::http::json_wait;
use crate::text::{self, ELLIPSIS};

/// Discord's limit on an embed's title.
pub const TITLE_CHARS: usize = 256;
/// Discord's limit on an embed's description.
pub const DESCRIPTION_CHARS: usize = 4_096;
/// Discord's limit on a field's value.
pub const FIELD_CHARS: usize = 1_024;
/// Discord's limit on a footer's text.
pub const FOOTER_CHARS: usize = 2_048;
/// Discord's limit on all of an embed's texts together.
pub const EMBED_CHARS: usize = 6_000;

/// The raw `[notifiers.NAME]` table of `type = "discord"`: only `webhook_url`.
pub type DiscordConfig = HookConfig<DiscordFormat>;
/// A `discord` notifier ready to send.
pub type Discord = ChatHook<DiscordFormat>;

/// What makes the `discord` channel itself.
#[derive(Debug)]
pub struct DiscordFormat;

impl HookFormat for DiscordFormat {
    /// A webhook takes about 30 messages a minute; one every two seconds stays under it.
    const MIN_INTERVAL: Option<Duration> = Some(Duration::from_secs(2));
    /// A 429's body has `retry_after`, in seconds (a float, more precise than the
    /// `Retry-After` header's whole seconds).
    const HINT: Option<fn(&str) -> Option<Duration>> = Some(retry_after);

    fn render(alert: &Alert) -> Value {
        render(alert)
    }
}

/// Renders an alert as a Discord webhook message with one embed: the title, the reason
/// as the description (then the output in a code block, when there is output), the
/// other facts as fields, the colour of the event ([`text::colour`]), the run's start as
/// the timestamp, and a footer `klaxon on AGENT · alert ID`.
///
/// Every text from the check or the config is escaped as Markdown
/// ([`text::escape_markdown`]), and `allowed_mentions` is empty, so no value can ping
/// anyone, add a link or emphasis. Each text fits Discord's limits, the embed's whole
/// included.
pub fn render(alert: &Alert) -> Value {
    let title = text::escape_markdown(&text::title(alert), TITLE_CHARS, ELLIPSIS);
    let footer = text::truncate(
        &format!("klaxon on {} · alert {}", alert.agent, alert.id),
        FOOTER_CHARS,
        ELLIPSIS,
    )
    .into_owned();
    let facts = text::markdown_fields(alert, FIELD_CHARS);
    let used = title.chars().count()
        + footer.chars().count()
        + facts
            .iter()
            .map(|(label, value, _)| label.chars().count() + value.chars().count())
            .sum::<usize>();
    let room = DESCRIPTION_CHARS.min(EMBED_CHARS.saturating_sub(used));
    let fields: Vec<Value> = facts
        .into_iter()
        .map(|(label, value, short)| json!({ "name": label, "value": value, "inline": short }))
        .collect();
    json!({
        "allowed_mentions": { "parse": [] },
        "embeds": [{
            "title": title,
            "description": text::markdown_body(alert, room),
            "color": text::colour(alert),
            "fields": fields,
            "timestamp": alert.started_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            "footer": { "text": footer },
        }],
    })
}

/// A 429's wait: the body's `retry_after`, in seconds.
fn retry_after(body: &str) -> Option<Duration> {
    json_wait(body, "/retry_after", Duration::from_secs(1))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::DeliveryError;
    use crate::fixtures;
    use klaxon_testkit::{Response, Server};

    fn field(name: &str, value: &str, inline: bool) -> Value {
        json!({ "name": name, "value": value, "inline": inline })
    }

    fn message(title: &str, description: &str, color: u32, fields: Vec<Value>, at: &str) -> Value {
        json!({
            "allowed_mentions": { "parse": [] },
            "embeds": [{
                "title": title,
                "description": description,
                "color": color,
                "fields": fields,
                "timestamp": at,
                "footer": { "text": "klaxon on macbook · alert api-20260329T001502Z" },
            }],
        })
    }

    /// The fields of the fixture's outage: severity, then attempts and elapsed time, and
    /// what follows them as `rest` (label, value).
    fn fields(severity: &str, attempts: &str, elapsed: &str, rest: &[(&str, &str)]) -> Vec<Value> {
        let mut fields = vec![
            field("Severity", severity, true),
            field("Check", "http https://api.example.com/health", false),
            field("Attempts", attempts, true),
            field("Elapsed", elapsed, true),
            field("Failing since", "2026-03-29 10:15:02 +11:00", true),
        ];
        fields.extend(rest.iter().map(|(label, value)| field(label, value, true)));
        fields.push(field("Alert", "api-20260329T001502Z", false));
        fields
    }

    const LAST: (&str, &str) = ("Last success", "2026-03-29 10:10:01 +11:00");
    const OUTPUT: &str =
        "HTTP 503 Service Unavailable\n```\nupstream connect error\nreset reason: overflow\n```";

    #[test]
    fn renders_a_failure_and_a_reminder() {
        let next = |at| fields("critical", "3 of 3", "7.2s", &[LAST, ("Next run", at)]);
        assert_eq!(
            render(&fixtures::failure()),
            message(
                "DOWN api on macbook: HTTP 503 Service Unavailable",
                OUTPUT,
                0xE0_1E_5A,
                next("2026-03-29 10:20:00 +11:00"),
                "2026-03-29T10:15:02+11:00",
            )
        );
        assert_eq!(
            render(&fixtures::reminder()),
            message(
                "STILL DOWN api on macbook: HTTP 503 Service Unavailable",
                OUTPUT,
                0xE0_1E_5A,
                next("2026-03-29 14:20:00 +11:00"),
                "2026-03-29T14:15:03+11:00",
            )
        );
    }

    #[test]
    fn renders_an_update_and_a_recovery() {
        assert_eq!(
            render(&fixtures::update()),
            message(
                "CHANGED api on macbook is now warning: latency 2.4s \\> 2s",
                "latency 2.4s \\> 2s",
                0xEC_B2_2E,
                fields(
                    "warning",
                    "1 of 3",
                    "2.4s",
                    &[LAST, ("Next run", "2026-03-29 10:40:00 +11:00")]
                ),
                "2026-03-29T10:35:00+11:00",
            )
        );
        assert_eq!(
            render(&fixtures::recovery()),
            message(
                "RECOVERED api on macbook after 1h 5m",
                "HTTP 200 OK",
                0x2E_B6_7D,
                fields(
                    "ok",
                    "1 of 3",
                    "180ms",
                    &[
                        ("Next run", "2026-03-29 11:25:00 +11:00"),
                        ("Downtime", "1h 5m")
                    ]
                ),
                "2026-03-29T11:20:01+11:00",
            )
        );
    }

    #[test]
    fn values_cannot_ping_link_or_format() {
        let alert = Alert {
            summary: "@everyone [click](https://evil.example) **now**".into(),
            output: Some("``` closed early\n@here".into()),
            ..fixtures::failure()
        };
        let embed = &render(&alert)["embeds"][0];
        assert_eq!(
            embed["description"],
            "@\u{200b}everyone \\[click\\]\\(https://evil.example\\) \\*\\*now\\*\\*\n\
             ```\n`\u{200b}`` closed early\n@here\n```"
        );
        assert_eq!(
            embed["title"],
            "DOWN api on macbook: @\u{200b}everyone \\[click\\]\\(https://evil.example\\) \\*\\*now\\*\\*"
        );
    }

    /// Every text of the embed, for the limits.
    fn chars(embed: &Value) -> usize {
        let mut n = embed["title"].as_str().unwrap().chars().count()
            + embed["description"].as_str().unwrap().chars().count()
            + embed["footer"]["text"].as_str().unwrap().chars().count();
        for field in embed["fields"].as_array().unwrap() {
            n += field["name"].as_str().unwrap().chars().count();
            n += field["value"].as_str().unwrap().chars().count();
        }
        n
    }

    #[test]
    fn huge_values_fit_discords_limits() {
        let alert = Alert {
            summary: "*".repeat(10_000),
            output: Some("x".repeat(10_000)),
            check: crate::CheckInfo {
                kind: "http".into(),
                target: "y".repeat(5_000),
            },
            agent: "a".repeat(5_000),
            ..fixtures::failure()
        };
        let message = render(&alert);
        let embed = &message["embeds"][0];
        let title = embed["title"].as_str().unwrap();
        assert_eq!(title.chars().count(), TITLE_CHARS);
        let description = embed["description"].as_str().unwrap();
        assert!(description.chars().count() <= DESCRIPTION_CHARS);
        // The output keeps its end, the reason its escapes whole.
        assert!(description.ends_with("xxx\n```"), "{description}");
        assert!(description.starts_with("\\*\\*"), "{description}");
        for field in embed["fields"].as_array().unwrap() {
            assert!(field["value"].as_str().unwrap().chars().count() <= FIELD_CHARS);
        }
        assert!(embed["footer"]["text"].as_str().unwrap().chars().count() <= FOOTER_CHARS);
        assert!(chars(embed) <= EMBED_CHARS, "{}", chars(embed));
    }

    // --- delivery against a real local receiver ---

    const SECRET_PATH: &str = "/api/webhooks/123/SECRET-TOKEN";

    async fn send_to(answer: Response) -> (Result<(), DeliveryError>, Server) {
        crate::chat_hook::send_to::<DiscordFormat>(SECRET_PATH, answer).await
    }

    #[tokio::test]
    async fn posts_the_rendered_message() {
        let (result, server) = send_to(Response::status(204)).await;
        result.unwrap();
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, SECRET_PATH);
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.json(), render(&fixtures::failure()));
    }

    #[tokio::test]
    async fn a_rate_limit_waits_the_bodys_retry_after() {
        let limited = Response::status(429)
            .header("Retry-After", "2")
            .header("Content-Type", "application/json")
            .body(r#"{"message": "You are being rate limited.", "retry_after": 1.5, "global": false}"#);
        let (result, _server) = send_to(limited).await;
        assert_eq!(
            result.unwrap_err(),
            DeliveryError::Retry {
                reason:
                    "HTTP 429 Too Many Requests: {\"message\": \"You are being rate limited.\", \
                         \"retry_after\": 1.5, \"global\": false}"
                        .into(),
                after: Some(Duration::from_millis(1_500)),
            }
        );
        // Without one in the body, the header's.
        let (result, _server) = send_to(Response::status(429).header("Retry-After", "2")).await;
        let DeliveryError::Retry { after, .. } = result.unwrap_err() else {
            panic!("not a retry");
        };
        assert_eq!(after, Some(Duration::from_secs(2)));
    }

    #[tokio::test]
    async fn server_errors_are_retried_and_refusals_rejected() {
        let (result, _server) = send_to(Response::status(502).body("bad gateway")).await;
        assert_eq!(
            result.unwrap_err(),
            DeliveryError::Retry {
                reason: "HTTP 502 Bad Gateway: bad gateway".into(),
                after: None,
            }
        );
        let refusal = r#"{"message": "Unknown Webhook", "code": 10015}"#;
        let (result, _server) =
            send_to(Response::status(404).body(format!("{refusal} {SECRET_PATH}"))).await;
        assert_eq!(
            result.unwrap_err(),
            DeliveryError::Reject {
                reason: format!("HTTP 404 Not Found: {refusal} ***")
            }
        );
    }
}
