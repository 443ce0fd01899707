//! The `slack` channel: an incoming webhook that takes a Block Kit message. Owns its
//! config (`webhook_url`, a secret), the pure [`render`] of an alert into Block Kit within
//! Slack's limits, and [`Slack::send`].

use std::fmt;
use std::time::Duration;

use klaxon_config_core::{SecretKey, Seg};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use toml::Spanned;

use crate::http::HttpShell;
use crate::text::{self, ELLIPSIS};
use crate::validate::{self, ConfigIssue};
use crate::{Alert, BuildError, Channel, DeliveryError, NotifierPlugin};

/// Slack's limit on a header block's text.
pub const HEADER_CHARS: usize = 150;
/// Slack's limit on a section's text (and the top-level `text` we send).
pub const TEXT_CHARS: usize = 3_000;
/// Slack's limit on each of a section's fields.
pub const FIELD_CHARS: usize = 2_000;
/// Slack's limit on fields in one section.
pub const FIELDS_PER_SECTION: usize = 10;
/// Slack's limit on blocks in one message.
pub const MAX_BLOCKS: usize = 50;
/// Slack's limit on a message's top-level `text` (a digest's; a single alert's `text`
/// is kept to [`TEXT_CHARS`]).
pub const MESSAGE_CHARS: usize = 40_000;
/// Ends a text that was cut to fit.
pub const TRUNCATED: &str = "…[truncated]";

/// The raw `[notifiers.NAME]` table of `type = "slack"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    webhook_url: Spanned<SecretString>,
}

impl NotifierPlugin for SlackConfig {
    type Spec = SlackSpec;
    type Channel = Slack;

    const SECRET_KEYS: &'static [SecretKey] = &[SecretKey::always(&[Seg::Key("webhook_url")])];

    /// Checks the webhook URL (`https`, or `http` to a loopback host), pushing every
    /// problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<SlackSpec> {
        let webhook_url = validate::secret_webhook_url(self.webhook_url, "webhook_url", issues)?;
        Some(SlackSpec { webhook_url })
    }

    fn build(spec: &SlackSpec, client: &reqwest::Client) -> Result<Slack, BuildError> {
        Ok(Slack::new(spec.clone(), client.clone()))
    }

    /// Slack's incoming webhooks take one message a second.
    fn min_interval(_spec: &SlackSpec) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }
}

/// A validated `slack` notifier.
#[derive(Clone)]
pub struct SlackSpec {
    /// The incoming webhook; it is the credential, so it is never shown.
    pub webhook_url: SecretString,
}

impl fmt::Debug for SlackSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackSpec")
            .field("webhook_url", &format_args!("***"))
            .finish()
    }
}

/// Renders an alert as a Slack message: `text` (the plain-text wording, for
/// notifications) and `blocks`: a header with the title, sections of `*Label*\nvalue`
/// fields, the output in a code block when there is output, and a context line
/// `klaxon on AGENT · alert ID`. Every text fits Slack's limits, cut with `…[truncated]`
/// (the header with `…`); `&`, `<` and `>` are escaped so no value can mention
/// `@channel` or forge a link.
pub fn render(alert: &Alert) -> Value {
    let mut blocks = vec![json!({
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": text::truncate(&text::title(alert), HEADER_CHARS, ELLIPSIS),
            "emoji": false,
        },
    })];
    let fields: Vec<Value> = text::facts(alert)
        .into_iter()
        .map(|(label, value)| {
            let field = format!("*{label}*\n{}", escape(&value));
            mrkdwn(&fit(&field, FIELD_CHARS))
        })
        .collect();
    let output = text::output_tail(alert).map(|output| {
        // A ``` inside the output would end the code block early.
        let output = escape(&output.replace("```", "`\u{200b}``"));
        let fenced = format!("```\n{}\n```", fit(&output, TEXT_CHARS - 8));
        json!({ "type": "section", "text": mrkdwn(&fenced) })
    });
    let room = MAX_BLOCKS - 2 - usize::from(output.is_some());
    blocks.extend(
        fields
            .chunks(FIELDS_PER_SECTION)
            .take(room)
            .map(|chunk| json!({ "type": "section", "fields": chunk })),
    );
    blocks.extend(output);
    let context = format!("klaxon on {} · alert {}", alert.agent, alert.id);
    blocks.push(json!({
        "type": "context",
        "elements": [mrkdwn(&fit(&escape(&context), TEXT_CHARS))],
    }));
    json!({
        "text": fit(&escape(&text::render_text(alert)), TEXT_CHARS),
        "blocks": blocks,
    })
}

/// Renders several alerts as one Slack message: `text` is [`text::render_digest_text`]
/// (escaped, cut to [`MESSAGE_CHARS`]); `blocks` are a header with
/// [`text::digest_title`], sections of `• LINE` lines ([`text::digest_lines`]), each
/// section at most [`TEXT_CHARS`], and a context line `klaxon on AGENT · N alerts`.
///
/// Within [`MAX_BLOCKS`]: when the lines do not all fit, the last sections name the jobs
/// of those left out ([`text::and_more`]), split between names across as many sections
/// as it takes, so every job is named in the blocks.
pub fn render_digest(alerts: &[Alert]) -> Value {
    let mut blocks = vec![json!({
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": text::truncate(&text::digest_title(alerts), HEADER_CHARS, ELLIPSIS),
            "emoji": false,
        },
    })];
    blocks.extend(
        digest_sections(alerts, MAX_BLOCKS - 2)
            .iter()
            .map(|section| json!({ "type": "section", "text": mrkdwn(section) })),
    );
    let agent = alerts.first().map_or("", |a| a.agent.as_str());
    let context = format!("klaxon on {agent} · {} alerts", alerts.len());
    blocks.push(json!({
        "type": "context",
        "elements": [mrkdwn(&fit(&escape(&context), TEXT_CHARS))],
    }));
    json!({
        "text": fit(&escape(&text::render_digest_text(alerts)), MESSAGE_CHARS),
        "blocks": blocks,
    })
}

/// The texts of at most `room` sections: the first `shown` lines, then the jobs of the
/// rest, for the largest `shown` that fits.
fn digest_sections(alerts: &[Alert], room: usize) -> Vec<String> {
    let lines: Vec<String> = text::digest_lines(alerts)
        .iter()
        .map(|line| fit(&format!("• {}", escape(line)), TEXT_CHARS))
        .collect();
    let sections = |shown: usize| {
        let mut sections = pack(lines[..shown].iter().map(String::as_str), "\n");
        if shown < alerts.len() {
            let rest = escape(&text::and_more(&alerts[shown..]));
            // Split after a name's comma: never inside a name or an entity.
            sections.extend(pack(rest.split_inclusive(", "), ""));
        }
        sections
    };
    let all = sections(alerts.len());
    if all.len() <= room {
        return all;
    }
    // Showing one line fewer names its job in a few characters instead: the sections
    // needed shrink as `shown` does, so search for the most lines that leave room.
    let (mut fits, mut over) = (0, alerts.len());
    while over - fits > 1 {
        let mid = fits + (over - fits) / 2;
        if sections(mid).len() <= room {
            fits = mid;
        } else {
            over = mid;
        }
    }
    let mut sections = sections(fits);
    // Only when the job names alone need more than `room` sections.
    sections.truncate(room);
    sections
}

/// `parts` joined with `separator` into as few texts of at most [`TEXT_CHARS`] as the
/// order allows; a part longer than that is cut.
fn pack<'a>(parts: impl Iterator<Item = &'a str>, separator: &str) -> Vec<String> {
    let mut packed: Vec<String> = Vec::new();
    let separator_chars = separator.chars().count();
    let mut chars = 0;
    for part in parts {
        let part = fit(part, TEXT_CHARS);
        let len = part.chars().count();
        match packed.last_mut() {
            Some(last) if chars + separator_chars + len <= TEXT_CHARS => {
                last.push_str(separator);
                last.push_str(&part);
                chars += separator_chars + len;
            }
            _ => {
                packed.push(part);
                chars = len;
            }
        }
    }
    packed
}

fn mrkdwn(text: &str) -> Value {
    json!({ "type": "mrkdwn", "text": text })
}

/// Slack's required escaping for message text.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Cuts escaped text to `max` characters with [`TRUNCATED`], never inside an entity.
fn fit(escaped: &str, max: usize) -> String {
    let cut = text::truncate(escaped, max, TRUNCATED);
    let Some(kept) = cut.strip_suffix(TRUNCATED).filter(|_| cut != escaped) else {
        return cut.into_owned();
    };
    // Every `&` starts an entity; one without its `;` was cut in half.
    let kept = match kept.rfind('&') {
        Some(at) if !kept[at..].contains(';') => &kept[..at],
        _ => kept,
    };
    format!("{kept}{TRUNCATED}")
}

/// A `slack` notifier ready to send.
#[derive(Debug)]
pub struct Slack {
    spec: SlackSpec,
    http: HttpShell,
}

impl Slack {
    /// How long one delivery may take, answer included.
    pub const TIMEOUT: Duration = Duration::from_secs(10);

    /// A notifier posting through `client` (the agent's shared HTTP client).
    pub fn new(spec: SlackSpec, client: reqwest::Client) -> Self {
        let http = HttpShell::shared(client, Self::TIMEOUT);
        Self { spec, http }
    }

    /// The same notifier with another delivery deadline than [`Slack::TIMEOUT`].
    pub fn with_timeout(self, timeout: Duration) -> Self {
        let http = self.http.with_timeout(timeout);
        Self { http, ..self }
    }
}

impl Channel for Slack {
    const MERGES: bool = true;

    /// POSTs [`render`]'s JSON to the webhook. 2xx is delivered; 408, 429 (with its
    /// `Retry-After`), 5xx, connection errors and timeouts are [`DeliveryError::Retry`];
    /// other statuses are [`DeliveryError::Reject`] quoting the start of Slack's answer.
    /// No reason contains the webhook URL.
    async fn send(&self, alert: &Alert) -> Result<(), DeliveryError> {
        let body = render(alert).to_string().into_bytes();
        (self.http)
            .post_json(self.spec.webhook_url.expose_secret(), body)
            .await
    }

    /// POSTs [`render_digest`]'s JSON to the webhook: one message for several alerts,
    /// answers classified as [`Slack::send`] does.
    async fn send_digest(&self, alerts: &[Alert]) -> Result<(), DeliveryError> {
        let body = render_digest(alerts).to_string().into_bytes();
        (self.http)
            .post_json(self.spec.webhook_url.expose_secret(), body)
            .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fixtures::{self, span_of};
    use klaxon_testkit::{Response, Server};

    fn header(title: &str) -> Value {
        json!({"type": "header", "text": {"type": "plain_text", "text": title, "emoji": false}})
    }

    fn field(text: &str) -> Value {
        json!({"type": "mrkdwn", "text": text})
    }

    fn context() -> Value {
        json!({"type": "context", "elements": [
            {"type": "mrkdwn", "text": "klaxon on macbook · alert api-20260329T001502Z"}
        ]})
    }

    #[test]
    fn renders_a_failure() {
        assert_eq!(
            render(&fixtures::failure()),
            json!({
                "text": "DOWN api on macbook: HTTP 503 Service Unavailable\n\
                         Severity: critical\n\
                         Check: http https://api.example.com/health\n\
                         Reason: HTTP 503 Service Unavailable\n\
                         Attempts: 3 of 3\n\
                         Elapsed: 7.2s\n\
                         Failing since: 2026-03-29 10:15:02 +11:00\n\
                         Last success: 2026-03-29 10:10:01 +11:00\n\
                         Next run: 2026-03-29 10:20:00 +11:00\n\
                         Alert: api-20260329T001502Z\n\
                         \n\
                         Output:\n\
                         upstream connect error\n\
                         reset reason: overflow",
                "blocks": [
                    header("DOWN api on macbook: HTTP 503 Service Unavailable"),
                    {"type": "section", "fields": [
                        field("*Severity*\ncritical"),
                        field("*Check*\nhttp https://api.example.com/health"),
                        field("*Reason*\nHTTP 503 Service Unavailable"),
                        field("*Attempts*\n3 of 3"),
                        field("*Elapsed*\n7.2s"),
                        field("*Failing since*\n2026-03-29 10:15:02 +11:00"),
                        field("*Last success*\n2026-03-29 10:10:01 +11:00"),
                        field("*Next run*\n2026-03-29 10:20:00 +11:00"),
                        field("*Alert*\napi-20260329T001502Z"),
                    ]},
                    {"type": "section", "text": {
                        "type": "mrkdwn",
                        "text": "```\nupstream connect error\nreset reason: overflow\n```",
                    }},
                    context(),
                ],
            })
        );
    }

    #[test]
    fn renders_a_reminder() {
        assert_eq!(
            render(&fixtures::reminder()),
            json!({
                "text": "STILL DOWN api on macbook: HTTP 503 Service Unavailable\n\
                         Severity: critical\n\
                         Check: http https://api.example.com/health\n\
                         Reason: HTTP 503 Service Unavailable\n\
                         Attempts: 3 of 3\n\
                         Elapsed: 7.2s\n\
                         Failing since: 2026-03-29 10:15:02 +11:00\n\
                         Last success: 2026-03-29 10:10:01 +11:00\n\
                         Next run: 2026-03-29 14:20:00 +11:00\n\
                         Alert: api-20260329T001502Z\n\
                         \n\
                         Output:\n\
                         upstream connect error\n\
                         reset reason: overflow",
                "blocks": [
                    header("STILL DOWN api on macbook: HTTP 503 Service Unavailable"),
                    {"type": "section", "fields": [
                        field("*Severity*\ncritical"),
                        field("*Check*\nhttp https://api.example.com/health"),
                        field("*Reason*\nHTTP 503 Service Unavailable"),
                        field("*Attempts*\n3 of 3"),
                        field("*Elapsed*\n7.2s"),
                        field("*Failing since*\n2026-03-29 10:15:02 +11:00"),
                        field("*Last success*\n2026-03-29 10:10:01 +11:00"),
                        field("*Next run*\n2026-03-29 14:20:00 +11:00"),
                        field("*Alert*\napi-20260329T001502Z"),
                    ]},
                    {"type": "section", "text": {
                        "type": "mrkdwn",
                        "text": "```\nupstream connect error\nreset reason: overflow\n```",
                    }},
                    context(),
                ],
            })
        );
    }

    #[test]
    fn renders_an_update() {
        assert_eq!(
            render(&fixtures::update()),
            json!({
                "text": "CHANGED api on macbook is now warning: latency 2.4s &gt; 2s\n\
                         Severity: warning\n\
                         Check: http https://api.example.com/health\n\
                         Reason: latency 2.4s &gt; 2s\n\
                         Attempts: 1 of 3\n\
                         Elapsed: 2.4s\n\
                         Failing since: 2026-03-29 10:15:02 +11:00\n\
                         Last success: 2026-03-29 10:10:01 +11:00\n\
                         Next run: 2026-03-29 10:40:00 +11:00\n\
                         Alert: api-20260329T001502Z",
                "blocks": [
                    header("CHANGED api on macbook is now warning: latency 2.4s > 2s"),
                    {"type": "section", "fields": [
                        field("*Severity*\nwarning"),
                        field("*Check*\nhttp https://api.example.com/health"),
                        field("*Reason*\nlatency 2.4s &gt; 2s"),
                        field("*Attempts*\n1 of 3"),
                        field("*Elapsed*\n2.4s"),
                        field("*Failing since*\n2026-03-29 10:15:02 +11:00"),
                        field("*Last success*\n2026-03-29 10:10:01 +11:00"),
                        field("*Next run*\n2026-03-29 10:40:00 +11:00"),
                        field("*Alert*\napi-20260329T001502Z"),
                    ]},
                    context(),
                ],
            })
        );
    }

    #[test]
    fn renders_a_recovery() {
        assert_eq!(
            render(&fixtures::recovery()),
            json!({
                "text": "RECOVERED api on macbook after 1h 5m\n\
                         Severity: ok\n\
                         Check: http https://api.example.com/health\n\
                         Reason: HTTP 200 OK\n\
                         Attempts: 1 of 3\n\
                         Elapsed: 180ms\n\
                         Failing since: 2026-03-29 10:15:02 +11:00\n\
                         Next run: 2026-03-29 11:25:00 +11:00\n\
                         Downtime: 1h 5m\n\
                         Alert: api-20260329T001502Z",
                "blocks": [
                    header("RECOVERED api on macbook after 1h 5m"),
                    {"type": "section", "fields": [
                        field("*Severity*\nok"),
                        field("*Check*\nhttp https://api.example.com/health"),
                        field("*Reason*\nHTTP 200 OK"),
                        field("*Attempts*\n1 of 3"),
                        field("*Elapsed*\n180ms"),
                        field("*Failing since*\n2026-03-29 10:15:02 +11:00"),
                        field("*Next run*\n2026-03-29 11:25:00 +11:00"),
                        field("*Downtime*\n1h 5m"),
                        field("*Alert*\napi-20260329T001502Z"),
                    ]},
                    context(),
                ],
            })
        );
    }

    #[test]
    fn values_cannot_ping_or_link() {
        let alert = Alert {
            summary: "<!channel> see <https://evil.example|here> & ```".into(),
            output: Some("a ``` b <@U123>".into()),
            ..fixtures::failure()
        };
        let message = render(&alert);
        assert_eq!(
            message["blocks"][1]["fields"][2]["text"],
            "*Reason*\n&lt;!channel&gt; see &lt;https://evil.example|here&gt; &amp; ```"
        );
        assert_eq!(
            message["blocks"][2]["text"]["text"],
            "```\na `\u{200b}`` b &lt;@U123&gt;\n```"
        );
        // The header is plain text: Slack shows it as is.
        assert_eq!(
            message["blocks"][0]["text"]["text"],
            "DOWN api on macbook: <!channel> see <https://evil.example|here> & ```"
        );
    }

    /// Every `text` string anywhere in the message, with its JSON path.
    fn texts(value: &Value, path: String, out: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("text", Value::String(s)) => out.push((format!("{path}.text"), s.clone())),
                        _ => texts(v, format!("{path}.{k}"), out),
                    }
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    texts(v, format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn huge_alerts_fit_slack_limits() {
        let line = "<&> ".repeat(40);
        let alert = Alert {
            summary: "&".repeat(1_000_000),
            check: crate::CheckInfo {
                kind: "http".into(),
                target: format!("https://example.com/{}", "é".repeat(100_000)),
            },
            output: Some(format!("{line}\n").repeat(1_000_000 / line.len())),
            id: "x".repeat(10_000),
            ..fixtures::failure()
        };
        let message = render(&alert);
        let blocks = message["blocks"].as_array().cloned().unwrap_or_default();
        assert!(
            !blocks.is_empty() && blocks.len() <= MAX_BLOCKS,
            "{} blocks",
            blocks.len()
        );
        let header = blocks[0]["text"]["text"].as_str().unwrap_or_default();
        assert_eq!(header.chars().count(), HEADER_CHARS);
        assert!(header.ends_with(ELLIPSIS));
        let mut all = Vec::new();
        texts(&message, String::new(), &mut all);
        assert!(all.len() >= 12, "{all:?}");
        for (path, text) in &all {
            let chars = text.chars().count();
            assert!(chars <= TEXT_CHARS, "{path}: {chars} chars");
            // Cutting never leaves half an entity (the header is plain text, unescaped).
            if path != ".blocks[0].text.text" {
                let intact = text.match_indices('&').all(|(at, _)| {
                    ["&amp;", "&lt;", "&gt;"]
                        .iter()
                        .any(|e| text[at..].starts_with(e))
                });
                assert!(intact, "{path}");
            }
        }
        for field in blocks[1]["fields"].as_array().into_iter().flatten() {
            let chars = field["text"].as_str().unwrap_or_default().chars().count();
            assert!(chars <= FIELD_CHARS, "field: {chars} chars");
        }
        let reason = blocks[1]["fields"][2]["text"].as_str().unwrap_or_default();
        assert!(reason.ends_with(&format!("&amp;{TRUNCATED}")), "{reason}");
        assert_eq!(reason.chars().count(), FIELD_CHARS - 4);
    }

    #[test]
    fn fitting_never_splits_an_entity() {
        assert_eq!(fit("a&amp;b", 7), "a&amp;b");
        assert_eq!(fit(&escape("ab&&&&"), 15), "ab…[truncated]");
        assert_eq!(fit(&escape("abcd&&&&"), 21), "abcd&amp;…[truncated]");
    }

    // --- digests ---

    #[test]
    fn renders_a_digest() {
        assert_eq!(
            render_digest(&fixtures::digest()),
            json!({
                "text": "3 alerts on macbook: 1 down, 1 warning, 1 recovered\n\
                         \n\
                         - DOWN api on macbook: HTTP 503 Service Unavailable (3 of 3 attempts, 7.2s)\n\
                         - WARNING disk on macbook: disk 85% full (2 of 3 attempts, 1.3s)\n\
                         - RECOVERED db on macbook after 1h 5m (down 10:15–11:20)",
                "blocks": [
                    header("3 alerts on macbook: 1 down, 1 warning, 1 recovered"),
                    {"type": "section", "text": {
                        "type": "mrkdwn",
                        "text": "• DOWN api on macbook: HTTP 503 Service Unavailable (3 of 3 attempts, 7.2s)\n\
                                 • WARNING disk on macbook: disk 85% full (2 of 3 attempts, 1.3s)\n\
                                 • RECOVERED db on macbook after 1h 5m (down 10:15–11:20)",
                    }},
                    {"type": "context", "elements": [
                        {"type": "mrkdwn", "text": "klaxon on macbook · 3 alerts"}
                    ]},
                ],
            })
        );
    }

    #[test]
    fn digest_lines_cannot_ping_or_link() {
        let alerts = [
            Alert {
                summary: "<!channel> & <https://evil.example|here>".into(),
                ..fixtures::failure()
            },
            fixtures::recovery(),
        ];
        let message = render_digest(&alerts);
        assert_eq!(
            message["blocks"][1]["text"]["text"],
            "• DOWN api on macbook: &lt;!channel&gt; &amp; &lt;https://evil.example|here&gt; \
             (3 of 3 attempts, 7.2s)\n\
             • RECOVERED api on macbook after 1h 5m (down 10:15–11:20)"
        );
        assert!(
            message["text"]
                .as_str()
                .unwrap()
                .contains("&lt;!channel&gt; &amp; &lt;https")
        );
    }

    /// The limits every digest keeps, and every job named in the blocks (and, where
    /// `in_text`, in the top-level text).
    fn assert_digest_fits(alerts: &[Alert], in_text: bool) -> Vec<Value> {
        let message = render_digest(alerts);
        let blocks = message["blocks"].as_array().cloned().unwrap_or_default();
        assert!(blocks.len() <= MAX_BLOCKS, "{} blocks", blocks.len());
        let header = blocks[0]["text"]["text"].as_str().unwrap();
        assert!(header.chars().count() <= HEADER_CHARS, "{header}");
        let mut all = Vec::new();
        texts(&message, String::new(), &mut all);
        for (path, text) in &all {
            let chars = text.chars().count();
            let max = if path == ".text" {
                MESSAGE_CHARS
            } else {
                TEXT_CHARS
            };
            assert!(chars <= max, "{path}: {chars} chars");
        }
        // Every word, split where a job name ends, so `job-1` is not found in `job-10`.
        let words = |texts: Vec<&str>| -> std::collections::HashSet<String> {
            texts
                .iter()
                .flat_map(|t| t.split([' ', ',', '\n']))
                .map(str::to_owned)
                .collect()
        };
        let in_blocks = words(
            all.iter()
                .filter(|(path, _)| path.starts_with(".blocks"))
                .map(|(_, text)| text.as_str())
                .collect(),
        );
        let in_text = in_text.then(|| words(vec![message["text"].as_str().unwrap()]));
        for alert in alerts {
            assert!(
                in_blocks.contains(&alert.job),
                "{} not in the blocks",
                alert.job
            );
            if let Some(in_text) = &in_text {
                assert!(
                    in_text.contains(&alert.job),
                    "{} not in the text",
                    alert.job
                );
            }
        }
        blocks
    }

    #[test]
    fn a_storm_of_200_fits_and_names_every_job() {
        let blocks =
            assert_digest_fits(&fixtures::storm(200, "HTTP 503 Service Unavailable"), true);
        // Every line shown: nothing needed the `…and N more` list.
        assert!(!blocks.iter().any(|b| b.to_string().contains("more: ")));
        assert_eq!(blocks[0]["text"]["text"], "200 alerts on macbook: 200 down");
    }

    #[test]
    fn long_lines_leave_room_to_name_the_rest() {
        let alerts = fixtures::storm(200, &"<&>".repeat(1_000));
        let blocks = assert_digest_fits(&alerts, false);
        assert_eq!(blocks.len(), MAX_BLOCKS);
        let tail = blocks[MAX_BLOCKS - 2]["text"]["text"].as_str().unwrap();
        let shown = MAX_BLOCKS - 3;
        assert!(
            tail.starts_with(&format!("…and {} more: job-{shown:03}, ", 200 - shown)),
            "{tail}"
        );
        assert!(tail.ends_with("job-199"), "{tail}");
        // The long lines were cut whole entities at a time.
        let line = blocks[1]["text"]["text"].as_str().unwrap();
        assert!(line.ends_with(&format!("&amp;{TRUNCATED}")), "{line}");
    }

    #[test]
    fn many_jobs_are_named_across_several_sections() {
        // 3,000 lines need more than 48 sections; their names need several of their own.
        let alerts = fixtures::storm(3_000, "HTTP 503 Service Unavailable");
        let blocks = assert_digest_fits(&alerts, false);
        assert_eq!(blocks.len(), MAX_BLOCKS);
        let more: Vec<&str> = blocks
            .iter()
            .filter_map(|b| b["text"]["text"].as_str())
            .filter(|t| t.starts_with("job-") || t.starts_with("…and"))
            .collect();
        assert!(more.len() > 1, "{more:?}");
        assert!(more[0].starts_with("…and "), "{}", more[0]);
        assert!(more.last().unwrap().ends_with("job-2999"));
    }

    // --- validation ---

    fn parse(toml: &str) -> Result<SlackConfig, toml::de::Error> {
        toml::from_str(toml)
    }

    fn issues(toml: &str) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let spec = parse(toml).unwrap().validate(&mut issues);
        assert!(spec.is_none(), "{toml} should not validate");
        issues
    }

    #[test]
    fn accepts_https_and_loopback_http() {
        for url in [
            "https://hooks.slack.com/services/T0/B0/SECRET",
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "http://[::1]:9/hook",
        ] {
            let mut issues = Vec::new();
            let spec = parse(&format!("webhook_url = \"{url}\""))
                .unwrap()
                .validate(&mut issues);
            assert_eq!(issues, []);
            assert_eq!(
                spec.map(|s| s.webhook_url.expose_secret().to_owned()),
                Some(url.to_owned())
            );
        }
    }

    #[test]
    fn rejects_bad_urls_without_showing_them() {
        let cases = [
            ("", "`webhook_url` must not be empty"),
            ("hooks.slack.com/SECRET", "`webhook_url` is not a valid URL"),
            (
                "http://hooks.slack.com/SECRET",
                "`webhook_url` must use `https`: plain `http` is allowed only to a loopback host",
            ),
            (
                "ftp://hooks.slack.com/SECRET",
                "`webhook_url` must be an `https` URL, found scheme `ftp`",
            ),
        ];
        for (url, message) in cases {
            let toml = format!("webhook_url = \"{url}\"");
            assert_eq!(
                issues(&toml),
                [ConfigIssue::new(
                    span_of(&toml, &format!("\"{url}\"")),
                    message
                )],
                "{url}"
            );
        }
    }

    #[test]
    fn rejects_unknown_and_missing_keys() {
        let error = parse("webhook_url = \"https://x\"\nchanel = \"#ops\"").unwrap_err();
        assert!(
            error.message().starts_with("unknown field `chanel`"),
            "{error}"
        );
        let error = parse("").unwrap_err();
        assert_eq!(error.message(), "missing field `webhook_url`");
    }

    #[test]
    fn never_shows_the_webhook() {
        let toml = "webhook_url = \"https://hooks.slack.com/services/T0/B0/SECRET\"";
        let config = parse(toml).unwrap();
        assert!(!format!("{config:?}").contains("SECRET"));
        let spec = config.validate(&mut Vec::new()).unwrap();
        assert_eq!(format!("{spec:?}"), "SlackSpec { webhook_url: *** }");
    }

    // --- delivery against a real local receiver ---

    const SECRET_PATH: &str = "/services/T0/B0/SECRET";

    fn slack(server_url: &str) -> Slack {
        let spec = SlackSpec {
            webhook_url: server_url.into(),
        };
        Slack::new(spec, reqwest::Client::new())
    }

    fn assert_hides_url(error: &DeliveryError, url: &str) {
        let text = format!("{error} {error:?}");
        assert!(!text.contains(url) && !text.contains("SECRET"), "{text}");
    }

    #[tokio::test]
    async fn delivers_the_rendered_message() {
        let server = Server::start(|_| Response::ok("ok")).await;
        let alert = fixtures::failure();
        slack(&server.url(SECRET_PATH)).send(&alert).await.unwrap();
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, SECRET_PATH);
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.json(), render(&alert));
    }

    #[tokio::test]
    async fn delivers_a_digest_as_one_message() {
        let server = Server::start(|_| Response::ok("ok")).await;
        let alerts = fixtures::digest();
        slack(&server.url(SECRET_PATH))
            .send_digest(&alerts)
            .await
            .unwrap();
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].path, SECRET_PATH);
        assert_eq!(requests[0].header("content-type"), Some("application/json"));
        assert_eq!(requests[0].json(), render_digest(&alerts));
    }

    #[tokio::test]
    async fn server_errors_are_retried() {
        let server = Server::start(|_| Response::status(500).body("internal_error")).await;
        let url = server.url(SECRET_PATH);
        let error = slack(&url).send(&fixtures::failure()).await.unwrap_err();
        assert_eq!(
            error,
            DeliveryError::Retry {
                reason: "HTTP 500 Internal Server Error: internal_error".into(),
                after: None,
            }
        );
        assert_hides_url(&error, &url);
    }

    #[tokio::test]
    async fn rate_limits_are_retried_after_the_given_time() {
        let server = Server::start(|_| Response::status(429).header("Retry-After", "3")).await;
        let url = server.url(SECRET_PATH);
        let error = slack(&url).send(&fixtures::failure()).await.unwrap_err();
        assert_eq!(
            error,
            DeliveryError::Retry {
                reason: "HTTP 429 Too Many Requests".into(),
                after: Some(Duration::from_secs(3)),
            }
        );
        assert_hides_url(&error, &url);
    }

    #[tokio::test]
    async fn refusals_are_rejected_with_the_answer() {
        let server = Server::start(|_| Response::status(400).body("invalid_blocks")).await;
        let url = server.url(SECRET_PATH);
        let error = slack(&url).send(&fixtures::failure()).await.unwrap_err();
        assert_eq!(
            error,
            DeliveryError::Reject {
                reason: "HTTP 400 Bad Request: invalid_blocks".into()
            }
        );
        assert_hides_url(&error, &url);
    }

    #[tokio::test]
    async fn a_hanging_receiver_times_out_and_is_retried() {
        let server = Server::start(|_| Response::ok("ok").delay(Duration::from_secs(30))).await;
        let url = server.url(SECRET_PATH);
        let started = std::time::Instant::now();
        let error = slack(&url)
            .with_timeout(Duration::from_millis(200))
            .send(&fixtures::failure())
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            error,
            DeliveryError::Retry {
                reason: "no answer within 200ms".into(),
                after: None,
            }
        );
        assert_eq!(server.requests().len(), 1);
        assert_hides_url(&error, &url);
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried() {
        // A port that was just free: nothing listens there now.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}{SECRET_PATH}", listener.local_addr().unwrap());
        drop(listener);
        let error = slack(&url).send(&fixtures::failure()).await.unwrap_err();
        let DeliveryError::Retry { reason, after } = &error else {
            panic!("expected a retry, got {error:?}");
        };
        assert!(reason.starts_with("cannot connect: "), "{reason}");
        assert_eq!(*after, None);
        assert_hides_url(&error, &url);
    }
}
