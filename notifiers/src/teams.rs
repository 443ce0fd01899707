//! The `teams` channel: a Microsoft Teams webhook. Owns its config (`webhook_url`, a
//! secret, and `format`), the pure [`render`] of an alert into an Adaptive Card 1.5 in a
//! Workflows message (or, with `format = "messagecard"`, a legacy Office 365 connector
//! MessageCard), kept within Teams' payload limit, and [`Teams::send`].

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use klaxon_config_core::{SecretKey, Seg};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use toml::Spanned;

use crate::http::HttpShell;
use crate::validate::{self, ConfigIssue};
use crate::{Alert, BuildError, Channel, DeliveryError, Event, NotifierPlugin, Severity, text};

/// Teams refuses a message over about 28 KB; a rendered payload stays at or under this
/// many bytes of JSON.
pub const MAX_PAYLOAD_BYTES: usize = 27_000;
/// Ends a text that was cut to fit.
pub const TRUNCATED: &str = "…[truncated]";
/// The Adaptive Card version sent: the newest Teams renders.
pub const CARD_VERSION: &str = "1.5";

/// The raw `[notifiers.NAME]` table of `type = "teams"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsConfig {
    webhook_url: Spanned<SecretString>,
    format: Option<Spanned<String>>,
}

/// The card a Teams webhook takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamsFormat {
    /// `adaptivecard` (default): a Workflows webhook taking an Adaptive Card.
    AdaptiveCard,
    /// `messagecard`: a legacy Office 365 connector.
    MessageCard,
}

impl NotifierPlugin for TeamsConfig {
    type Spec = TeamsSpec;
    type Channel = Teams;

    const SECRET_KEYS: &'static [SecretKey] = &[SecretKey::always(&[Seg::Key("webhook_url")])];

    fn build(spec: &TeamsSpec, client: &reqwest::Client) -> Result<Teams, BuildError> {
        Ok(Teams::new(spec.clone(), client.clone()))
    }

    /// Checks the webhook URL (`https`, or `http` to a loopback host) and the format,
    /// pushing every problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<TeamsSpec> {
        let webhook_url = validate::secret_webhook_url(self.webhook_url, "webhook_url", issues);
        let format = match self.format {
            None => Some(TeamsFormat::AdaptiveCard),
            Some(format) => match format.get_ref().as_str() {
                "adaptivecard" => Some(TeamsFormat::AdaptiveCard),
                "messagecard" => Some(TeamsFormat::MessageCard),
                other => {
                    issues.push(ConfigIssue::new(
                        format.span(),
                        format!(
                            "`format` must be `adaptivecard` or `messagecard`, found `{other}`"
                        ),
                    ));
                    None
                }
            },
        };
        Some(TeamsSpec {
            webhook_url: webhook_url?,
            format: format?,
        })
    }
}

/// A validated `teams` notifier.
#[derive(Clone)]
pub struct TeamsSpec {
    /// The webhook; it is the credential, so it is never shown.
    pub webhook_url: SecretString,
    /// The card the webhook takes.
    pub format: TeamsFormat,
}

impl fmt::Debug for TeamsSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TeamsSpec")
            .field("webhook_url", &format_args!("***"))
            .field("format", &self.format)
            .finish()
    }
}

/// How many characters each text of a card may have; halved until the payload fits.
#[derive(Clone, Copy)]
struct Limits {
    /// The title, each fact's value, the context line.
    text: usize,
    /// The output tail.
    output: usize,
}

impl Limits {
    const START: Limits = Limits {
        text: 2_000,
        output: text::OUTPUT_CHARS,
    };
    /// Small enough that any alert fits: a dozen texts of this many characters.
    const FLOOR: usize = 100;

    fn halved(self) -> Option<Limits> {
        (self.text > Self::FLOOR).then(|| Limits {
            text: (self.text / 2).max(Self::FLOOR),
            output: (self.output / 2).max(Self::FLOOR),
        })
    }
}

/// Renders an alert for the webhook's `format`, within [`MAX_PAYLOAD_BYTES`]: texts are
/// cut with [`TRUNCATED`], the longest first, until the JSON fits.
///
/// [`TeamsFormat::AdaptiveCard`]: `{"type": "message", "attachments": [{"contentType":
/// "application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": CARD}]}`,
/// the card (version [`CARD_VERSION`]) a bold, wrapped title in the event's colour
/// (`Attention` for a critical problem, `Warning` for a warning, `Good` for a recovery,
/// `Accent` for a test), a `FactSet` of [`text::facts`], the output tail in a
/// monospace `TextBlock` when there is output, and a small, subtle
/// `klaxon on AGENT · alert ID`.
///
/// [`TeamsFormat::MessageCard`]: `{"@type": "MessageCard", "@context":
/// "https://schema.org/extensions", "summary", "themeColor", "title", "sections":
/// [{"facts": [{"name", "value"}], "text"}]}`, `text` (the output tail) only when there
/// is output.
///
/// Every text from the alert is escaped for the format's Markdown (and a MessageCard's
/// HTML), so a summary or output cannot add a link or emphasis: see [`escape`].
pub fn render(alert: &Alert, format: TeamsFormat) -> Value {
    let mut limits = Limits::START;
    loop {
        let payload = match format {
            TeamsFormat::AdaptiveCard => adaptive_card(alert, limits),
            TeamsFormat::MessageCard => message_card(alert, limits),
        };
        match limits.halved() {
            Some(smaller) if payload.to_string().len() > MAX_PAYLOAD_BYTES => limits = smaller,
            _ => return payload,
        }
    }
}

/// Renders several alerts as one message for the webhook's `format`, within
/// [`MAX_PAYLOAD_BYTES`].
///
/// [`TeamsFormat::AdaptiveCard`]: the same message and card as [`render`], its body a
/// bold [`text::digest_title`] in the colour of the worst message, a `TextBlock` with
/// [`text::digest_lines`] as a list (`- LINE` each), and a small, subtle
/// `klaxon on AGENT · N alerts`. [`TeamsFormat::MessageCard`]: the digest title as
/// `summary` and `title`, the list as the one section's `text`.
///
/// Too big, the lines are cut (down to 100 characters each); still too big, the last
/// lines give way to a `TextBlock` (a second section) naming their jobs
/// ([`text::and_more`]), so every job is still named.
pub fn render_digest(alerts: &[Alert], format: TeamsFormat) -> Value {
    let title = text::digest_title(alerts);
    let lines = text::digest_lines(alerts);
    let agent = alerts.first().map_or("", |a| a.agent.as_str());
    let context = format!("klaxon on {agent} · {} alerts", alerts.len());
    let tone = alerts.iter().map(Tone::of).max().unwrap_or(Tone::Info);
    // Each text cut to `chars`, the first `shown` lines listed, the jobs of the rest
    // named in at most `more_chars` characters.
    let build = |chars: usize, shown: usize, more_chars: usize| {
        let digest = Digest {
            title: fit(&title, chars, format),
            list: lines[..shown]
                .iter()
                .map(|line| format!("- {}", fit(line, chars, format)))
                .collect::<Vec<_>>()
                .join("\n"),
            more: (shown < alerts.len())
                .then(|| fit(&text::and_more(&alerts[shown..]), more_chars, format)),
            context: fit(&context, chars, format),
            tone,
        };
        match format {
            TeamsFormat::AdaptiveCard => digest.adaptive_card(),
            TeamsFormat::MessageCard => digest.message_card(),
        }
    };
    let fits = |payload: &Value| payload.to_string().len() <= MAX_PAYLOAD_BYTES;
    let all = alerts.len();
    let mut chars = Limits::START.text;
    loop {
        let payload = build(chars, all, 0);
        if fits(&payload) {
            return payload;
        }
        if chars <= Limits::FLOOR {
            break;
        }
        chars = (chars / 2).max(Limits::FLOOR);
    }
    // Each line shown takes more room than its job's name in the list of the rest, so
    // the fewer lines shown, the smaller the payload: search for the most that fit.
    let (mut shown, mut over) = (0, all);
    while over - shown > 1 {
        let mid = shown + (over - shown) / 2;
        if fits(&build(chars, mid, MAX_PAYLOAD_BYTES)) {
            shown = mid;
        } else {
            over = mid;
        }
    }
    // Only when the job names alone are too many for the payload: cut their list too.
    let mut more_chars = MAX_PAYLOAD_BYTES;
    loop {
        let payload = build(chars, shown, more_chars);
        if fits(&payload) || more_chars <= Limits::FLOOR {
            return payload;
        }
        more_chars /= 2;
    }
}

/// A digest's texts, cut to size.
struct Digest {
    title: String,
    list: String,
    more: Option<String>,
    context: String,
    tone: Tone,
}

impl Digest {
    fn adaptive_card(self) -> Value {
        let mut body = vec![json!({
            "type": "TextBlock",
            "text": self.title,
            "weight": "Bolder",
            "size": "Medium",
            "wrap": true,
            "color": self.tone.color(),
        })];
        if !self.list.is_empty() {
            body.push(json!({ "type": "TextBlock", "text": self.list, "wrap": true }));
        }
        if let Some(more) = self.more {
            body.push(json!({ "type": "TextBlock", "text": more, "wrap": true }));
        }
        body.push(json!({
            "type": "TextBlock",
            "text": self.context,
            "size": "Small",
            "isSubtle": true,
            "wrap": true,
        }));
        adaptive_message(body)
    }

    fn message_card(self) -> Value {
        let mut sections = Vec::new();
        if !self.list.is_empty() {
            sections.push(json!({ "text": self.list }));
        }
        if let Some(more) = self.more {
            sections.push(json!({ "text": more }));
        }
        json!({
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": self.title,
            "themeColor": self.tone.theme(),
            "title": self.title,
            "sections": sections,
        })
    }
}

/// How bad an event is, in the words of each card format; ordered from least to most
/// urgent, so a digest takes the colour of its worst message.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tone {
    Info,
    Good,
    Warning,
    Bad,
}

impl Tone {
    fn of(alert: &Alert) -> Tone {
        match (alert.event, alert.severity) {
            (Event::Recovery, _) | (_, Severity::Ok) => Tone::Good,
            (Event::Test, _) => Tone::Info,
            (_, Severity::Warning) => Tone::Warning,
            (_, Severity::Critical | Severity::Unknown) => Tone::Bad,
        }
    }

    /// An Adaptive Card `TextBlock` colour.
    fn color(&self) -> &'static str {
        match self {
            Tone::Bad => "Attention",
            Tone::Warning => "Warning",
            Tone::Good => "Good",
            Tone::Info => "Accent",
        }
    }

    /// A MessageCard `themeColor`: Teams' own red, amber, green and blue.
    fn theme(&self) -> &'static str {
        match self {
            Tone::Bad => "D13438",
            Tone::Warning => "FFAA44",
            Tone::Good => "107C10",
            Tone::Info => "0078D4",
        }
    }
}

/// `text` cut to `max` characters with [`TRUNCATED`], then [`escape`]d for `format`
/// (the marker itself is ours and left as is).
fn fit(text: &str, max: usize, format: TeamsFormat) -> String {
    match text::truncate(text, max, TRUNCATED) {
        Cow::Borrowed(whole) => escape(whole, format),
        Cow::Owned(cut) => {
            let kept = cut.strip_suffix(TRUNCATED).unwrap_or(&cut);
            format!("{}{TRUNCATED}", escape(kept, format))
        }
    }
}

/// `text` (from the monitored system or the config) made literal in Teams' Markdown, so
/// no value can add a link, emphasis, a code span, a list or a heading.
///
/// Everywhere: `\`, `` ` ``, `*`, `_`, `[`, `]`, `~`, `|`, `<`, `>` and `&` (a link
/// needs `[`, an image `![`, an autolink `<`). At the start of a line (after spaces):
/// `-`, `+`, `#` and `=` (lists, headings, rules), and the `.` or `)` that ends leading
/// digits before a space (numbered lists). Elsewhere `-`, `.`, `(`… cannot start markup and stay as
/// they are, so dates and hosts read plainly in the JSON.
///
/// An Adaptive Card `TextBlock` renders no HTML: every character is backslash-escaped.
/// A MessageCard renders HTML as well: `&`, `<` and `>` become entities.
fn escape(text: &str, format: TeamsFormat) -> String {
    let mut escaped = String::with_capacity(text.len() + text.len() / 8);
    // Only spaces since the line began; only digits after them.
    let (mut line_start, mut digits) = (true, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '&' | '<' | '>' if format == TeamsFormat::MessageCard => escaped.push_str(match c {
                '&' => "&amp;",
                '<' => "&lt;",
                _ => "&gt;",
            }),
            '\\' | '`' | '*' | '_' | '[' | ']' | '~' | '|' | '<' | '>' | '&' => {
                escaped.push('\\');
                escaped.push(c);
            }
            '-' | '+' | '#' | '=' if line_start => {
                escaped.push('\\');
                escaped.push(c);
            }
            '.' | ')' if digits && chars.peek().is_none_or(|next| next.is_whitespace()) => {
                escaped.push('\\');
                escaped.push(c);
            }
            c => escaped.push(c),
        }
        (line_start, digits) = match c {
            '\n' | '\r' => (true, false),
            ' ' | '\t' if line_start => (true, false),
            '0'..='9' if line_start || digits => (false, true),
            _ => (false, false),
        };
    }
    escaped
}

fn adaptive_card(alert: &Alert, limits: Limits) -> Value {
    let cut = |text: &str, max: usize| fit(text, max, TeamsFormat::AdaptiveCard);
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": cut(&text::title(alert), limits.text),
        "weight": "Bolder",
        "size": "Medium",
        "wrap": true,
        "color": Tone::of(alert).color(),
    })];
    let facts: Vec<Value> = text::facts(alert)
        .into_iter()
        .map(|(label, value)| json!({ "title": label, "value": cut(&value, limits.text) }))
        .collect();
    if !facts.is_empty() {
        body.push(json!({ "type": "FactSet", "facts": facts }));
    }
    if let Some(output) = text::output_tail(alert) {
        body.push(json!({
            "type": "TextBlock",
            "text": cut(&output, limits.output),
            "fontType": "Monospace",
            "wrap": true,
        }));
    }
    body.push(json!({
        "type": "TextBlock",
        "text": cut(&format!("klaxon on {} · alert {}", alert.agent, alert.id), limits.text),
        "size": "Small",
        "isSubtle": true,
        "wrap": true,
    }));
    adaptive_message(body)
}

/// A Workflows message holding one Adaptive Card with `body`.
fn adaptive_message(body: Vec<Value>) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": CARD_VERSION,
                "body": body,
            },
        }],
    })
}

fn message_card(alert: &Alert, limits: Limits) -> Value {
    let cut = |text: &str, max: usize| fit(text, max, TeamsFormat::MessageCard);
    let title = cut(&text::title(alert), limits.text);
    let facts: Vec<Value> = text::facts(alert)
        .into_iter()
        .map(|(label, value)| json!({ "name": label, "value": cut(&value, limits.text) }))
        .collect();
    let mut section = json!({ "facts": facts });
    if let (Some(output), Value::Object(map)) = (text::output_tail(alert), &mut section) {
        map.insert("text".into(), cut(&output, limits.output).into());
    }
    json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": title,
        "themeColor": Tone::of(alert).theme(),
        "title": title,
        "sections": [section],
    })
}

/// A `teams` notifier ready to send.
#[derive(Debug)]
pub struct Teams {
    spec: TeamsSpec,
    http: HttpShell,
}

impl Teams {
    /// How long one delivery may take, answer included.
    pub const TIMEOUT: Duration = Duration::from_secs(10);

    /// A notifier posting through `client` (the agent's shared HTTP client).
    pub fn new(spec: TeamsSpec, client: reqwest::Client) -> Self {
        let http = HttpShell::shared(client, Self::TIMEOUT);
        Self { spec, http }
    }

    /// The same notifier with another delivery deadline than [`Teams::TIMEOUT`].
    pub fn with_timeout(self, timeout: Duration) -> Self {
        let http = self.http.with_timeout(timeout);
        Self { http, ..self }
    }
}

impl Channel for Teams {
    const MERGES: bool = true;

    /// POSTs [`render`]'s JSON to the webhook. Any 2xx is delivered (a Workflows webhook
    /// answers `202 Accepted` with no body); 408, 429 (with its `Retry-After`), 5xx,
    /// connection errors and timeouts are [`DeliveryError::Retry`]; other statuses are
    /// [`DeliveryError::Reject`] quoting the start of the answer. No reason contains the
    /// webhook URL.
    async fn send(&self, alert: &Alert) -> Result<(), DeliveryError> {
        let body = render(alert, self.spec.format).to_string().into_bytes();
        (self.http)
            .post_json(self.spec.webhook_url.expose_secret(), body)
            .await
    }

    /// POSTs [`render_digest`]'s JSON to the webhook: one message for several alerts,
    /// answers classified as [`Teams::send`] does.
    async fn send_digest(&self, alerts: &[Alert]) -> Result<(), DeliveryError> {
        let body = render_digest(alerts, self.spec.format)
            .to_string()
            .into_bytes();
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

    fn validate(toml: &str) -> (Option<TeamsSpec>, Vec<ConfigIssue>) {
        fixtures::validated::<TeamsConfig>(toml)
    }

    #[test]
    fn accepts_both_formats() {
        let url = "https://prod.westeurope.logic.azure.com/workflows/SECRET";
        let (spec, issues) = validate(&format!("webhook_url = \"{url}\""));
        assert_eq!(issues, []);
        let spec = spec.unwrap();
        assert_eq!(spec.webhook_url.expose_secret(), url);
        assert_eq!(spec.format, TeamsFormat::AdaptiveCard);
        let (spec, _) = validate(&format!(
            "webhook_url = \"{url}\"\nformat = \"messagecard\""
        ));
        assert_eq!(spec.map(|s| s.format), Some(TeamsFormat::MessageCard));
    }

    #[test]
    fn collects_every_problem() {
        let toml = "webhook_url = \"http://outlook.office.com/webhook/SECRET\"\n\
                    format = \"card\"";
        let (spec, issues) = validate(toml);
        assert!(spec.is_none());
        assert_eq!(
            issues,
            [
                ConfigIssue::new(
                    span_of(toml, "\"http://outlook.office.com/webhook/SECRET\""),
                    "`webhook_url` must use `https`: plain `http` is allowed only to a loopback host"
                ),
                ConfigIssue::new(
                    span_of(toml, "\"card\""),
                    "`format` must be `adaptivecard` or `messagecard`, found `card`"
                ),
            ]
        );
        assert!(!format!("{issues:?}").contains("SECRET"));
    }

    #[test]
    fn rejects_unknown_keys() {
        let error = toml::from_str::<TeamsConfig>("webhook_url = \"https://x\"\ntitle = \"x\"")
            .unwrap_err();
        assert!(
            error.message().starts_with("unknown field `title`"),
            "{error}"
        );
    }

    #[test]
    fn never_shows_the_webhook() {
        let (spec, _) = validate("webhook_url = \"https://example.com/SECRET\"");
        assert_eq!(
            format!("{:?}", spec.unwrap()),
            "TeamsSpec { webhook_url: ***, format: AdaptiveCard }"
        );
    }

    // --- Adaptive Card ---

    fn message(body: Value) -> Value {
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.5",
                    "body": body,
                },
            }],
        })
    }

    fn title(text: &str, color: &str) -> Value {
        json!({
            "type": "TextBlock",
            "text": text,
            "weight": "Bolder",
            "size": "Medium",
            "wrap": true,
            "color": color,
        })
    }

    fn facts(facts: &[(&str, &str)]) -> Value {
        let facts: Vec<Value> = facts
            .iter()
            .map(|(title, value)| json!({"title": title, "value": value}))
            .collect();
        json!({"type": "FactSet", "facts": facts})
    }

    fn output() -> Value {
        json!({
            "type": "TextBlock",
            "text": "upstream connect error\nreset reason: overflow",
            "fontType": "Monospace",
            "wrap": true,
        })
    }

    fn context() -> Value {
        json!({
            "type": "TextBlock",
            "text": "klaxon on macbook · alert api-20260329T001502Z",
            "size": "Small",
            "isSubtle": true,
            "wrap": true,
        })
    }

    fn card(alert: &Alert) -> Value {
        render(alert, TeamsFormat::AdaptiveCard)
    }

    #[test]
    fn renders_a_failure() {
        assert_eq!(
            card(&fixtures::failure()),
            message(json!([
                title(
                    "DOWN api on macbook: HTTP 503 Service Unavailable",
                    "Attention"
                ),
                facts(&[
                    ("Severity", "critical"),
                    ("Check", "http https://api.example.com/health"),
                    ("Reason", "HTTP 503 Service Unavailable"),
                    ("Attempts", "3 of 3"),
                    ("Elapsed", "7.2s"),
                    ("Failing since", "2026-03-29 10:15:02 +11:00"),
                    ("Last success", "2026-03-29 10:10:01 +11:00"),
                    ("Next run", "2026-03-29 10:20:00 +11:00"),
                    ("Alert", "api-20260329T001502Z"),
                ]),
                output(),
                context(),
            ]))
        );
    }

    #[test]
    fn renders_a_reminder() {
        assert_eq!(
            card(&fixtures::reminder()),
            message(json!([
                title(
                    "STILL DOWN api on macbook: HTTP 503 Service Unavailable",
                    "Attention"
                ),
                facts(&[
                    ("Severity", "critical"),
                    ("Check", "http https://api.example.com/health"),
                    ("Reason", "HTTP 503 Service Unavailable"),
                    ("Attempts", "3 of 3"),
                    ("Elapsed", "7.2s"),
                    ("Failing since", "2026-03-29 10:15:02 +11:00"),
                    ("Last success", "2026-03-29 10:10:01 +11:00"),
                    ("Next run", "2026-03-29 14:20:00 +11:00"),
                    ("Alert", "api-20260329T001502Z"),
                ]),
                output(),
                context(),
            ]))
        );
    }

    #[test]
    fn renders_an_update() {
        assert_eq!(
            card(&fixtures::update()),
            message(json!([
                // `>` would start a quote at the start of a line: escaped.
                title(
                    "CHANGED api on macbook is now warning: latency 2.4s \\> 2s",
                    "Warning"
                ),
                facts(&[
                    ("Severity", "warning"),
                    ("Check", "http https://api.example.com/health"),
                    ("Reason", "latency 2.4s \\> 2s"),
                    ("Attempts", "1 of 3"),
                    ("Elapsed", "2.4s"),
                    ("Failing since", "2026-03-29 10:15:02 +11:00"),
                    ("Last success", "2026-03-29 10:10:01 +11:00"),
                    ("Next run", "2026-03-29 10:40:00 +11:00"),
                    ("Alert", "api-20260329T001502Z"),
                ]),
                context(),
            ]))
        );
    }

    #[test]
    fn renders_a_recovery() {
        assert_eq!(
            card(&fixtures::recovery()),
            message(json!([
                title("RECOVERED api on macbook after 1h 5m", "Good"),
                facts(&[
                    ("Severity", "ok"),
                    ("Check", "http https://api.example.com/health"),
                    ("Reason", "HTTP 200 OK"),
                    ("Attempts", "1 of 3"),
                    ("Elapsed", "180ms"),
                    ("Failing since", "2026-03-29 10:15:02 +11:00"),
                    ("Next run", "2026-03-29 11:25:00 +11:00"),
                    ("Downtime", "1h 5m"),
                    ("Alert", "api-20260329T001502Z"),
                ]),
                context(),
            ]))
        );
    }

    /// A summary and output from the monitored system, and names from the config, full of
    /// Markdown and HTML.
    fn injection() -> Alert {
        Alert {
            job: "api_*x*".into(),
            agent: "mac[1](http://a.example)".into(),
            summary: "[click](http://evil.example) **bold** <b>x</b>".into(),
            output: Some("a ` b ``c``\n# head\n - item\n1. one\n  12) two\n> quote\n".into()),
            check: crate::CheckInfo {
                kind: "http".into(),
                target: "https://x.example/_a_&amp;".into(),
            },
            ..fixtures::failure()
        }
    }

    #[test]
    fn values_cannot_add_links_or_markup() {
        let alert = injection();
        let reason = r"\[click\](http://evil.example) \*\*bold\*\* \<b\>x\</b\>";
        let output = "a \\` b \\`\\`c\\`\\`\n\\# head\n \\- item\n1\\. one\n  12\\) two\n\\> quote";
        assert_eq!(
            card(&alert),
            message(json!([
                title(
                    &format!(r"DOWN api\_\*x\* on mac\[1\](http://a.example): {reason}"),
                    "Attention"
                ),
                facts(&[
                    ("Severity", "critical"),
                    ("Check", r"http https://x.example/\_a\_\&amp;"),
                    ("Reason", reason),
                    ("Attempts", "3 of 3"),
                    ("Elapsed", "7.2s"),
                    ("Failing since", "2026-03-29 10:15:02 +11:00"),
                    ("Last success", "2026-03-29 10:10:01 +11:00"),
                    ("Next run", "2026-03-29 10:20:00 +11:00"),
                    ("Alert", "api-20260329T001502Z"),
                ]),
                {"type": "TextBlock", "text": output, "fontType": "Monospace", "wrap": true},
                {
                    "type": "TextBlock",
                    "text": r"klaxon on mac\[1\](http://a.example) · alert api-20260329T001502Z",
                    "size": "Small",
                    "isSubtle": true,
                    "wrap": true,
                },
            ]))
        );
        // A MessageCard renders HTML too: `<`, `>` and `&` are entities there.
        let reason = r"\[click\](http://evil.example) \*\*bold\*\* &lt;b&gt;x&lt;/b&gt;";
        let title = format!(r"DOWN api\_\*x\* on mac\[1\](http://a.example): {reason}");
        let payload = render(&alert, TeamsFormat::MessageCard);
        assert_eq!(payload["title"], title.as_str());
        assert_eq!(payload["summary"], title.as_str());
        assert_eq!(
            payload["sections"][0]["facts"][1]["value"],
            r"http https://x.example/\_a\_&amp;amp;"
        );
        assert_eq!(payload["sections"][0]["facts"][2]["value"], reason);
        assert_eq!(
            payload["sections"][0]["text"],
            output.replace(r"\>", "&gt;")
        );
        // Digests escape their lines, title and context too.
        for format in [TeamsFormat::AdaptiveCard, TeamsFormat::MessageCard] {
            let json = render_digest(&[alert.clone(), alert.clone()], format).to_string();
            assert!(!json.contains("[click]"), "{json}");
            assert!(!json.contains("**bold**"), "{json}");
            assert!(!json.contains("<b>"), "{json}");
            assert!(json.contains(r"\\[click\\]"), "{json}");
        }
        assert!(validates(&card(&alert)));
    }

    #[test]
    fn escaping_keeps_plain_text_plain() {
        for format in [TeamsFormat::AdaptiveCard, TeamsFormat::MessageCard] {
            for plain in [
                "HTTP 503 (3 of 3 attempts, 7.2s)",
                "job-1, job-10",
                "2026-03-29 +11:00",
            ] {
                assert_eq!(escape(plain, format), plain);
            }
            assert_eq!(escape("-1.5 = x\n+2", format), "\\-1.5 = x\n\\+2");
            assert_eq!(escape("3. x\n=\n\\", format), "3\\. x\n\\=\n\\\\");
            assert_eq!(escape("7.2s\n10)", format), "7.2s\n10\\)");
        }
        // Cutting escapes what is kept and leaves the marker whole.
        assert_eq!(
            fit(&"*".repeat(50), 20, TeamsFormat::AdaptiveCard),
            format!("{}{TRUNCATED}", r"\*".repeat(8))
        );
    }

    #[test]
    fn colours_follow_severity() {
        let colour =
            |alert: Alert| card(&alert)["attachments"][0]["content"]["body"][0]["color"].clone();
        let warning = Alert {
            severity: Severity::Warning,
            ..fixtures::failure()
        };
        let unknown = Alert {
            severity: Severity::Unknown,
            ..fixtures::reminder()
        };
        let test = Alert {
            event: Event::Test,
            ..fixtures::failure()
        };
        assert_eq!(colour(warning), "Warning");
        assert_eq!(colour(unknown), "Attention");
        assert_eq!(colour(test), "Accent");
    }

    /// Microsoft's Adaptive Card 1.5 schema (draft-06), compiled once per test. A copy
    /// lives in the crate so the test runs from a plain checkout.
    fn card_schema() -> jsonschema::Validator {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/adaptive-card-1.5.json"
        );
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        jsonschema::draft6::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap()
    }

    fn validates(payload: &Value) -> bool {
        card_schema().is_valid(&payload["attachments"][0]["content"])
    }

    #[test]
    fn every_card_matches_the_adaptive_card_schema() {
        let validator = card_schema();
        let huge = Alert {
            summary: "x".repeat(100_000),
            output: Some("line\n".repeat(10_000)),
            ..fixtures::failure()
        };
        let test = Alert {
            event: Event::Test,
            ..fixtures::failure()
        };
        for alert in [
            fixtures::failure(),
            fixtures::reminder(),
            fixtures::update(),
            fixtures::recovery(),
            test,
            huge,
            injection(),
        ] {
            let payload = card(&alert);
            let content = &payload["attachments"][0]["content"];
            let errors: Vec<String> = validator
                .iter_errors(content)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert_eq!(errors, Vec::<String>::new(), "{:?}", alert.event);
        }
        // The validator does reject what is not a card: a property TextBlock lacks, an
        // element that does not exist, a FactSet without facts.
        type Break = fn(&mut Value);
        let breaks: [(&str, Break); 3] = [
            ("unknown property", |c| c["body"][0]["emoji"] = json!(false)),
            ("unknown element", |c| {
                c["body"][0] = json!({"type": "NoSuchElement"})
            }),
            ("no facts", |c| c["body"][1] = json!({"type": "FactSet"})),
        ];
        for (what, break_it) in breaks {
            let mut content = card(&fixtures::failure())["attachments"][0]["content"].clone();
            assert!(validator.is_valid(&content));
            break_it(&mut content);
            assert!(!validator.is_valid(&content), "{what}");
        }
    }

    // --- digests ---

    #[test]
    fn renders_a_digest() {
        let list = "- DOWN api on macbook: HTTP 503 Service Unavailable (3 of 3 attempts, 7.2s)\n\
                    - WARNING disk on macbook: disk 85% full (2 of 3 attempts, 1.3s)\n\
                    - RECOVERED db on macbook after 1h 5m (down 10:15–11:20)";
        assert_eq!(
            render_digest(&fixtures::digest(), TeamsFormat::AdaptiveCard),
            message(json!([
                title(
                    "3 alerts on macbook: 1 down, 1 warning, 1 recovered",
                    "Attention"
                ),
                {"type": "TextBlock", "text": list, "wrap": true},
                {
                    "type": "TextBlock",
                    "text": "klaxon on macbook · 3 alerts",
                    "size": "Small",
                    "isSubtle": true,
                    "wrap": true,
                },
            ]))
        );
        assert_eq!(
            render_digest(&fixtures::digest(), TeamsFormat::MessageCard),
            json!({
                "@type": "MessageCard",
                "@context": "https://schema.org/extensions",
                "summary": "3 alerts on macbook: 1 down, 1 warning, 1 recovered",
                "themeColor": "D13438",
                "title": "3 alerts on macbook: 1 down, 1 warning, 1 recovered",
                "sections": [{"text": list}],
            })
        );
    }

    #[test]
    fn a_digest_takes_the_colour_of_its_worst_message() {
        let colour = |alerts: &[Alert]| {
            render_digest(alerts, TeamsFormat::AdaptiveCard)["attachments"][0]["content"]["body"][0]
                ["color"]
                .clone()
        };
        let test = Alert {
            event: Event::Test,
            ..fixtures::failure()
        };
        assert_eq!(
            colour(&[fixtures::recovery(), fixtures::update()]),
            "Warning"
        );
        assert_eq!(colour(&[fixtures::recovery(), test.clone()]), "Good");
        assert_eq!(colour(&[test.clone(), test]), "Accent");
    }

    /// Every digest card: valid against the schema, within the payload limit, every job
    /// named (as a whole word, so `job-1` is not found in `job-10`).
    #[test]
    fn every_digest_fits_matches_the_schema_and_names_every_job() {
        let validator = card_schema();
        let cases = [
            ("3 alerts", fixtures::digest()),
            (
                "200 alerts",
                fixtures::storm(200, "HTTP 503 Service Unavailable"),
            ),
            ("200 long lines", fixtures::storm(200, &"\"é".repeat(5_000))),
            (
                "2,000 alerts",
                fixtures::storm(2_000, "HTTP 503 Service Unavailable"),
            ),
        ];
        for (what, alerts) in cases {
            for format in [TeamsFormat::AdaptiveCard, TeamsFormat::MessageCard] {
                let payload = render_digest(&alerts, format);
                let json = payload.to_string();
                assert!(
                    json.len() <= MAX_PAYLOAD_BYTES,
                    "{what} {format:?}: {} bytes",
                    json.len()
                );
                let texts: String = match format {
                    TeamsFormat::AdaptiveCard => {
                        let content = &payload["attachments"][0]["content"];
                        let errors: Vec<String> = validator
                            .iter_errors(content)
                            .map(|e| format!("{} at {}", e, e.instance_path()))
                            .collect();
                        assert_eq!(errors, Vec::<String>::new(), "{what}");
                        content["body"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|b| format!("{}\n", b["text"].as_str().unwrap()))
                            .collect()
                    }
                    TeamsFormat::MessageCard => payload["sections"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| format!("{}\n", s["text"].as_str().unwrap()))
                        .collect(),
                };
                let words: std::collections::HashSet<&str> =
                    texts.split([' ', ',', '\n']).collect();
                for alert in &alerts {
                    assert!(
                        words.contains(alert.job.as_str()),
                        "{what} {format:?}: {} not named",
                        alert.job
                    );
                }
            }
        }
        // 200 ordinary alerts are listed whole; 2,000 leave the rest to a list of names.
        let storm = render_digest(
            &fixtures::storm(200, "HTTP 503 Service Unavailable"),
            TeamsFormat::AdaptiveCard,
        );
        assert!(!storm.to_string().contains("more: "));
        let big = render_digest(
            &fixtures::storm(2_000, "HTTP 503 Service Unavailable"),
            TeamsFormat::AdaptiveCard,
        );
        let more = big["attachments"][0]["content"]["body"][2]["text"]
            .as_str()
            .unwrap();
        assert!(more.starts_with("…and "), "{more}");
        assert!(more.ends_with(", job-1999"), "{more}");
    }

    // --- MessageCard ---

    #[test]
    fn renders_message_cards() {
        let failure_facts = json!([
            {"name": "Severity", "value": "critical"},
            {"name": "Check", "value": "http https://api.example.com/health"},
            {"name": "Reason", "value": "HTTP 503 Service Unavailable"},
            {"name": "Attempts", "value": "3 of 3"},
            {"name": "Elapsed", "value": "7.2s"},
            {"name": "Failing since", "value": "2026-03-29 10:15:02 +11:00"},
            {"name": "Last success", "value": "2026-03-29 10:10:01 +11:00"},
            {"name": "Next run", "value": "2026-03-29 10:20:00 +11:00"},
            {"name": "Alert", "value": "api-20260329T001502Z"},
        ]);
        assert_eq!(
            render(&fixtures::failure(), TeamsFormat::MessageCard),
            json!({
                "@type": "MessageCard",
                "@context": "https://schema.org/extensions",
                "summary": "DOWN api on macbook: HTTP 503 Service Unavailable",
                "themeColor": "D13438",
                "title": "DOWN api on macbook: HTTP 503 Service Unavailable",
                "sections": [{
                    "facts": failure_facts,
                    "text": "upstream connect error\nreset reason: overflow",
                }],
            })
        );
        let reminder = render(&fixtures::reminder(), TeamsFormat::MessageCard);
        assert_eq!(
            reminder["title"],
            "STILL DOWN api on macbook: HTTP 503 Service Unavailable"
        );
        assert_eq!(reminder["themeColor"], "D13438");
        let update = render(&fixtures::update(), TeamsFormat::MessageCard);
        assert_eq!(update["themeColor"], "FFAA44");
        assert_eq!(update["sections"][0].get("text"), None);
        assert_eq!(
            render(&fixtures::recovery(), TeamsFormat::MessageCard),
            json!({
                "@type": "MessageCard",
                "@context": "https://schema.org/extensions",
                "summary": "RECOVERED api on macbook after 1h 5m",
                "themeColor": "107C10",
                "title": "RECOVERED api on macbook after 1h 5m",
                "sections": [{
                    "facts": [
                        {"name": "Severity", "value": "ok"},
                        {"name": "Check", "value": "http https://api.example.com/health"},
                        {"name": "Reason", "value": "HTTP 200 OK"},
                        {"name": "Attempts", "value": "1 of 3"},
                        {"name": "Elapsed", "value": "180ms"},
                        {"name": "Failing since", "value": "2026-03-29 10:15:02 +11:00"},
                        {"name": "Next run", "value": "2026-03-29 11:25:00 +11:00"},
                        {"name": "Downtime", "value": "1h 5m"},
                        {"name": "Alert", "value": "api-20260329T001502Z"},
                    ],
                }],
            })
        );
    }

    #[test]
    fn huge_alerts_fit_the_payload_limit() {
        let alert = Alert {
            summary: "\u{1}é".repeat(200_000),
            check: crate::CheckInfo {
                kind: "http".into(),
                target: format!("https://example.com/{}", "\"".repeat(100_000)),
            },
            output: Some("\u{7}\n".repeat(100_000)),
            id: "x".repeat(50_000),
            agent: "a".repeat(50_000),
            ..fixtures::failure()
        };
        for format in [TeamsFormat::AdaptiveCard, TeamsFormat::MessageCard] {
            let bytes = render(&alert, format).to_string().len();
            assert!(bytes <= MAX_PAYLOAD_BYTES, "{format:?}: {bytes} bytes");
        }
        let payload = card(&alert);
        let body = &payload["attachments"][0]["content"]["body"];
        let title = body[0]["text"].as_str().unwrap();
        assert!(title.starts_with("DOWN api on aaa"), "{title}");
        assert!(title.ends_with(TRUNCATED));
        // An ordinary alert is not cut at all.
        assert!(!card(&fixtures::failure()).to_string().contains(TRUNCATED));
    }

    // --- delivery against a real local receiver ---

    const SECRET_PATH: &str = "/workflows/SECRET/triggers/manual/paths/invoke";

    fn teams(url: &str, format: TeamsFormat) -> Teams {
        let spec = TeamsSpec {
            webhook_url: url.into(),
            format,
        };
        Teams::new(spec, reqwest::Client::new())
    }

    #[tokio::test]
    async fn an_accepted_empty_answer_is_delivered() {
        let server = Server::start(|_| Response::status(202)).await;
        for format in [TeamsFormat::AdaptiveCard, TeamsFormat::MessageCard] {
            teams(&server.url(SECRET_PATH), format)
                .send(&fixtures::failure())
                .await
                .unwrap();
        }
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].path, SECRET_PATH);
        assert_eq!(requests[0].header("content-type"), Some("application/json"));
        assert_eq!(requests[0].json(), card(&fixtures::failure()));
        assert_eq!(
            requests[1].json(),
            render(&fixtures::failure(), TeamsFormat::MessageCard)
        );
    }

    #[tokio::test]
    async fn delivers_a_digest_as_one_message() {
        let server = Server::start(|_| Response::status(202)).await;
        let alerts = fixtures::digest();
        for format in [TeamsFormat::AdaptiveCard, TeamsFormat::MessageCard] {
            teams(&server.url(SECRET_PATH), format)
                .send_digest(&alerts)
                .await
                .unwrap();
        }
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(
            requests[0].json(),
            render_digest(&alerts, TeamsFormat::AdaptiveCard)
        );
        assert_eq!(
            requests[1].json(),
            render_digest(&alerts, TeamsFormat::MessageCard)
        );
    }

    #[tokio::test]
    async fn failures_are_classified_without_the_url() {
        let cases = [
            (
                Response::status(429).header("Retry-After", "12"),
                DeliveryError::Retry {
                    reason: "HTTP 429 Too Many Requests".into(),
                    after: Some(Duration::from_secs(12)),
                },
            ),
            (
                Response::status(502),
                DeliveryError::Retry {
                    reason: "HTTP 502 Bad Gateway".into(),
                    after: None,
                },
            ),
            (
                Response::status(400).body(r#"{"error":{"code":"InvalidRequestContent"}}"#),
                DeliveryError::Reject {
                    reason: r#"HTTP 400 Bad Request: {"error":{"code":"InvalidRequestContent"}}"#
                        .into(),
                },
            ),
        ];
        for (response, expected) in cases {
            let server = Server::start(move |_| response.clone()).await;
            let url = server.url(SECRET_PATH);
            let error = teams(&url, TeamsFormat::AdaptiveCard)
                .send(&fixtures::failure())
                .await
                .unwrap_err();
            assert_eq!(error, expected);
            let text = format!("{error} {error:?}");
            assert!(!text.contains("SECRET"), "{text}");
        }
    }

    #[tokio::test]
    async fn a_hanging_webhook_times_out_and_is_retried() {
        let server = Server::start(|_| Response::ok("").delay(Duration::from_secs(30))).await;
        let error = teams(&server.url(SECRET_PATH), TeamsFormat::AdaptiveCard)
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
}
