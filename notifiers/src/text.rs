//! The one wording every channel shares: an alert's title, its labelled facts, its output
//! tail, and how durations and timestamps are written. Channels lay these out in their
//! own format (Block Kit, Adaptive Card, email); they never word an alert themselves.

use std::borrow::Cow;

use chrono::{DateTime, FixedOffset};

use crate::{Alert, Event, Severity};

/// At most this many of the output's last lines are shown.
pub const OUTPUT_LINES: usize = 20;
/// At most this many characters of output are shown, the marker included.
pub const OUTPUT_CHARS: usize = 2_000;
/// Marks where text was cut.
pub const ELLIPSIS: &str = "…";

/// The one-line headline: what happened to which job on which agent.
///
/// `DOWN api on macbook: HTTP 503` (failure, critical or unknown), `WARNING …` (failure,
/// warning), `CHANGED api on macbook is now warning: …` (update), `STILL DOWN …`
/// (reminder), `RECOVERED api on macbook after 1h 5m` (recovery), `TEST message from
/// klaxon on macbook` (test). Line breaks in the summary become spaces.
pub fn title(alert: &Alert) -> String {
    let Alert { job, agent, .. } = alert;
    let summary = one_line(&alert.summary);
    match alert.event {
        Event::Failure if alert.severity == Severity::Warning => {
            format!("WARNING {job} on {agent}: {summary}")
        }
        Event::Failure => format!("DOWN {job} on {agent}: {summary}"),
        Event::Update => format!(
            "CHANGED {job} on {agent} is now {}: {summary}",
            alert.severity.as_str()
        ),
        Event::Reminder => format!("STILL DOWN {job} on {agent}: {summary}"),
        Event::Recovery => match alert.downtime_ms {
            Some(ms) => format!("RECOVERED {job} on {agent} after {}", human_duration(ms)),
            None => format!("RECOVERED {job} on {agent}"),
        },
        Event::Test => format!("TEST message from klaxon on {agent}"),
    }
}

/// [`title`] without the reason after its colon, for a notification whose body is the
/// summary: `DOWN api on macbook`, `CHANGED api on macbook is now warning`, `RECOVERED
/// api on macbook after 1h 5m` (a recovery's and a test's title have no reason).
pub fn headline(alert: &Alert) -> String {
    let title = title(alert);
    let reason = format!(": {}", one_line(&alert.summary));
    match title.strip_suffix(&reason) {
        Some(headline)
            if matches!(
                alert.event,
                Event::Failure | Event::Update | Event::Reminder
            ) =>
        {
            headline.to_owned()
        }
        _ => title,
    }
}

/// The labelled facts below the title, in this order, each only where it applies:
/// `Severity`, `Check` (`type target`), `Reason` (the summary), `Attempts` (`3 of 3`),
/// `Elapsed`, `Failing since`, `Last success` (or `never`), `Next run` (or `none`),
/// `Downtime`, `Alert` (the id).
///
/// `Last success` is left out of recoveries (it is the run that recovered) and
/// `Downtime` is only on recoveries. A test message has only `Reason` (when there is a
/// summary) and `Alert`: it is about the channel, not about a job.
pub fn facts(alert: &Alert) -> Vec<(&'static str, String)> {
    let mut facts = Vec::new();
    let test = alert.event == Event::Test;
    if !test {
        facts.push(("Severity", alert.severity.as_str().to_owned()));
        let check = if alert.check.target.is_empty() {
            alert.check.kind.clone()
        } else {
            format!("{} {}", alert.check.kind, alert.check.target)
        };
        facts.push(("Check", check));
    }
    if !alert.summary.is_empty() {
        facts.push(("Reason", alert.summary.clone()));
    }
    if !test {
        facts.push((
            "Attempts",
            format!("{} of {}", alert.attempts, alert.max_attempts),
        ));
        facts.push(("Elapsed", human_duration(alert.elapsed_ms)));
        if let Some(since) = &alert.failing_since {
            facts.push(("Failing since", timestamp(since)));
        }
        if alert.event != Event::Recovery {
            let last = alert
                .last_success
                .as_ref()
                .map_or("never".into(), timestamp);
            facts.push(("Last success", last));
        }
        let next = alert.next_run.as_ref().map_or("none".into(), timestamp);
        facts.push(("Next run", next));
        if let (Event::Recovery, Some(ms)) = (alert.event, alert.downtime_ms) {
            facts.push(("Downtime", human_duration(ms)));
        }
        if let Some(ack) = &alert.acknowledged {
            let comment = ack
                .comment
                .as_ref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default();
            facts.push((
                "Acknowledged",
                format!("by {} at {}{comment}", ack.by, timestamp(&ack.at)),
            ));
        }
    }
    if !alert.id.is_empty() {
        facts.push(("Alert", alert.id.clone()));
    }
    facts
}

/// [`facts`] and, when there is output, `Output` with its [`output_tail`]: what a
/// channel that takes key/value details (PagerDuty's `custom_details`, Opsgenie's
/// `details`) attaches.
pub fn details(alert: &Alert) -> Vec<(&'static str, String)> {
    let mut details = facts(alert);
    details.extend(output_tail(alert).map(|output| ("Output", output)));
    details
}

/// The whole message as plain text: the title, one `Label: value` line per fact, then,
/// when there is output, a blank line, `Output:` and the output's tail.
pub fn render_text(alert: &Alert) -> String {
    let mut text = title(alert);
    for (label, value) in facts(alert) {
        text.push('\n');
        text.push_str(label);
        text.push_str(": ");
        text.push_str(&value);
    }
    if let Some(output) = output_tail(alert) {
        text.push_str("\n\nOutput:\n");
        text.push_str(&output);
    }
    text
}

/// The headline of a digest: how many messages, on which agent, and how many of each
/// kind, leaving out kinds with none, in this order: `down` (a failure or reminder that
/// is critical or unknown), `warning` (a failure or reminder that is a warning),
/// `changed` (an update), `recovered`, `test`.
///
/// `3 alerts on macbook: 2 down, 1 recovered`. The agent is the first message's (one
/// agent sends them all).
pub fn digest_title(alerts: &[Alert]) -> String {
    let mut counts = [0_usize; 5];
    for alert in alerts {
        let kind = match alert.event {
            Event::Failure | Event::Reminder if alert.severity == Severity::Warning => 1,
            Event::Failure | Event::Reminder => 0,
            Event::Update => 2,
            Event::Recovery => 3,
            Event::Test => 4,
        };
        counts[kind] += 1;
    }
    let names = ["down", "warning", "changed", "recovered", "test"];
    let kinds: Vec<String> = counts
        .iter()
        .zip(names)
        .filter(|(count, _)| **count > 0)
        .map(|(count, name)| format!("{count} {name}"))
        .collect();
    let n = alerts.len();
    let mut title = format!("{n} {}", if n == 1 { "alert" } else { "alerts" });
    if let Some(first) = alerts.first() {
        title.push_str(" on ");
        title.push_str(&first.agent);
    }
    if !kinds.is_empty() {
        title.push_str(": ");
        title.push_str(&kinds.join(", "));
    }
    title
}

/// One line per message of a digest, in order: its [`title`] and, for a failure, update
/// or reminder, the attempts and elapsed time: `DOWN api on macbook: HTTP 503 (3 of 3
/// attempts, 7.2s)`. A recovery's title already says how long the job was down; a test
/// has nothing more to say.
///
/// A recovery's line also says when the job was down, in the alert's own offset:
/// `RECOVERED api on macbook after 30m (down 23:10–23:40)`.
pub fn digest_lines(alerts: &[Alert]) -> Vec<String> {
    alerts
        .iter()
        .map(|alert| {
            let title = title(alert);
            match alert.event {
                Event::Failure | Event::Update | Event::Reminder => format!(
                    "{title} ({} of {} {}, {})",
                    alert.attempts,
                    alert.max_attempts,
                    if alert.max_attempts == 1 {
                        "attempt"
                    } else {
                        "attempts"
                    },
                    human_duration(alert.elapsed_ms)
                ),
                Event::Recovery => match (alert.failing_since, alert.downtime_ms) {
                    (Some(from), Some(ms)) => {
                        let to = from + chrono::Duration::milliseconds(ms as i64);
                        format!(
                            "{title} (down {}–{})",
                            from.format("%H:%M"),
                            to.format("%H:%M")
                        )
                    }
                    _ => title,
                },
                Event::Test => title,
            }
        })
        .collect()
}

/// The messages of a digest as it is worded: a failure, update or reminder whose
/// recovery is in the same digest (all of it happened while the messages waited, in
/// quiet hours say) is left out, so the outage is one line, its recovery's.
pub fn collapse(alerts: &[Alert]) -> Vec<Alert> {
    alerts
        .iter()
        .filter(|a| {
            a.event == Event::Recovery
                || a.id.is_empty()
                || !alerts
                    .iter()
                    .any(|r| r.event == Event::Recovery && r.id == a.id)
        })
        .cloned()
        .collect()
}

/// A digest as plain text: [`digest_title`], a blank line, then each of
/// [`digest_lines`] as `- LINE`.
pub fn render_digest_text(alerts: &[Alert]) -> String {
    let mut text = digest_title(alerts);
    text.push('\n');
    for line in digest_lines(alerts) {
        text.push_str("\n- ");
        text.push_str(&line);
    }
    text
}

/// Names the jobs of messages a digest had no room to show: `…and 3 more: api, db,
/// disk`. Channels use it so every job is still named when their limits are reached.
pub fn and_more(alerts: &[Alert]) -> String {
    let jobs: Vec<&str> = alerts.iter().map(|a| a.job.as_str()).collect();
    format!("{ELLIPSIS}and {} more: {}", alerts.len(), jobs.join(", "))
}

/// The part of `alert.output` a message shows: its last [`OUTPUT_LINES`] lines and at
/// most [`OUTPUT_CHARS`] characters, trailing line breaks removed. Where lines were left
/// out the tail starts with a line `…`; where a line was cut it starts with `…`.
/// `None` when there is no output.
pub fn output_tail(alert: &Alert) -> Option<String> {
    let output = alert.output.as_deref()?.trim_end_matches(['\n', '\r']);
    if output.trim().is_empty() {
        return None;
    }
    let start = output
        .rmatch_indices('\n')
        .nth(OUTPUT_LINES - 1)
        .map_or(0, |(i, _)| i + 1);
    let tail = &output[start..];
    let marker = if start > 0 { "…\n" } else { "" };
    let chars = tail.chars().count();
    if chars + marker.chars().count() <= OUTPUT_CHARS {
        return Some(format!("{marker}{tail}"));
    }
    // Keep the end: the last lines of a failing command say why it failed.
    let keep = OUTPUT_CHARS - ELLIPSIS.chars().count();
    let cut = tail
        .char_indices()
        .nth(chars - keep)
        .map_or(tail.len(), |(i, _)| i);
    Some(format!("{ELLIPSIS}{}", &tail[cut..]))
}

/// A measured duration, short: `850ms` under a second, `7.2s` (one decimal, rounded
/// down) under a minute, then the two largest units: `2m 13s`, `1h 5m`, `2d 3h`, with a
/// zero second unit left out (`2m`).
pub fn human_duration(ms: u64) -> String {
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    if ms < 60_000 {
        return format!("{}.{}s", ms / 1_000, ms % 1_000 / 100);
    }
    let secs = ms / 1_000;
    let (big, big_unit, small, small_unit) = if secs < 3_600 {
        (secs / 60, "m", secs % 60, "s")
    } else if secs < 86_400 {
        (secs / 3_600, "h", secs % 3_600 / 60, "m")
    } else {
        (secs / 86_400, "d", secs % 86_400 / 3_600, "h")
    };
    if small == 0 {
        format!("{big}{big_unit}")
    } else {
        format!("{big}{big_unit} {small}{small_unit}")
    }
}

/// A point in time as `2026-03-29 10:15:02 +11:00`, in the offset it was given in.
pub fn timestamp(at: &DateTime<FixedOffset>) -> String {
    at.format("%Y-%m-%d %H:%M:%S %:z").to_string()
}

/// `text` cut to at most `max_chars` characters, `marker` included (a marker longer
/// than `max_chars` is kept whole), at a character boundary; unchanged when it fits.
/// Channels use it for their payload limits.
pub fn truncate<'a>(text: &'a str, max_chars: usize, marker: &str) -> Cow<'a, str> {
    let Some((end, _)) = text.char_indices().nth(max_chars) else {
        return Cow::Borrowed(text);
    };
    let keep = max_chars.saturating_sub(marker.chars().count());
    let cut = text[..end].char_indices().nth(keep).map_or(end, |(i, _)| i);
    Cow::Owned(format!("{}{marker}", &text[..cut]))
}

/// The colour of an alert for chat formats that tint a message (`0xRRGGBB`): red for
/// a critical or unknown failure, amber for a warning, green for a recovery, blue for a
/// test.
pub fn colour(alert: &Alert) -> u32 {
    match (alert.event, alert.severity) {
        (Event::Recovery, _) | (_, Severity::Ok) => 0x2E_B6_7D,
        (Event::Test, _) => 0x1D_9B_D1,
        (_, Severity::Warning) => 0xEC_B2_2E,
        (_, Severity::Critical | Severity::Unknown) => 0xE0_1E_5A,
    }
}

/// The characters Markdown-flavoured chat formats (Discord, Mattermost) give a meaning:
/// each is written with a backslash before it, which both render as the character.
const MARKDOWN_SPECIAL: &str = "\\`*_~|<>#[]()";

/// HTML's five special characters as entities, so no value can add markup (the
/// `email` and `matrix` channels' HTML bodies).
pub fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// `text` as it must be written in a Markdown-flavoured chat message so it shows as
/// written: ``\ ` * _ ~ | < > # [ ] ( )`` backslash-escaped (no emphasis, no code,
/// no link, no quote, no heading), and a zero-width space after every `@` so no value
/// can mention `@everyone` or `@channel`. At most `max_chars` characters, cut with
/// `marker` between two characters, never inside an escape.
pub fn escape_markdown(text: &str, max_chars: usize, marker: &str) -> String {
    let escaped = |c: char, out: &mut String| {
        if MARKDOWN_SPECIAL.contains(c) {
            out.push('\\');
        }
        out.push(c);
        if c == '@' {
            out.push('\u{200b}');
        }
    };
    let mut whole = String::with_capacity(text.len());
    for c in text.chars() {
        escaped(c, &mut whole);
    }
    if whole.chars().count() <= max_chars {
        return whole;
    }
    let room = max_chars.saturating_sub(marker.chars().count());
    let (mut cut, mut chars) = (String::new(), 0);
    for c in text.chars() {
        let mut one = String::new();
        escaped(c, &mut one);
        let width = one.chars().count();
        if chars + width > room {
            break;
        }
        cut.push_str(&one);
        chars += width;
    }
    cut.push_str(marker);
    cut
}

/// `text` inside a Markdown code block: a line of three backticks before and after,
/// and a zero-width space inside every two backticks in a row, so no three inside can
/// end the block early. Code blocks show their text as written, so nothing else is
/// escaped.
pub fn code_block(text: &str) -> String {
    fence(&unfenced(text))
}

fn unfenced(text: &str) -> String {
    text.replace("``", "`\u{200b}`")
}

fn fence(safe: &str) -> String {
    format!("```\n{safe}\n```")
}

/// The facts a Markdown-flavoured chat message lays out as fields beside its body
/// ([`markdown_body`] has the reason): `(label, value, short)`, each value
/// [`escape_markdown`]d within `max_chars`; `short` for all but the check and the alert
/// id, which take a line of their own.
pub fn markdown_fields(alert: &Alert, max_chars: usize) -> Vec<(&'static str, String, bool)> {
    facts(alert)
        .into_iter()
        .filter(|(label, _)| *label != "Reason")
        .map(|(label, value)| {
            let short = !matches!(label, "Check" | "Alert");
            (label, escape_markdown(&value, max_chars, ELLIPSIS), short)
        })
        .collect()
}

/// A Markdown-flavoured chat message's body: the reason ([`escape_markdown`]), then the
/// output's tail in a [`code_block`], within `room` characters: the output keeps its end
/// (where a failing command says why) and the reason is cut first.
pub fn markdown_body(alert: &Alert, room: usize) -> String {
    let output = output_tail(alert).map(|output| {
        let safe = unfenced(&output);
        // The fences and their line breaks take 8, the line break before them 1.
        let over = (safe.chars().count() + 9).saturating_sub(room / 2);
        if over == 0 {
            return fence(&safe);
        }
        // Keep the output's end.
        let kept: String = safe.chars().skip(over + ELLIPSIS.chars().count()).collect();
        fence(&format!("{ELLIPSIS}{kept}"))
    });
    let output_chars = output.as_ref().map_or(0, |o| o.chars().count() + 1);
    let mut description =
        escape_markdown(&alert.summary, room.saturating_sub(output_chars), ELLIPSIS);
    if let Some(output) = output {
        if !description.is_empty() {
            description.push('\n');
        }
        description.push_str(&output);
    }
    description
}

/// Line breaks become spaces, so a title stays one line.
fn one_line(text: &str) -> Cow<'_, str> {
    if text.contains(['\n', '\r']) {
        Cow::Owned(
            text.split(['\n', '\r'])
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
        )
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn markdown_is_escaped_and_cut_between_escapes() {
        assert_eq!(
            escape_markdown("*a* _b_ `c` [d](e) <f> #g ~h~ |i| \\ @here", 100, "…"),
            "\\*a\\* \\_b\\_ \\`c\\` \\[d\\]\\(e\\) \\<f\\> \\#g \\~h\\~ \\|i\\| \\\\ @\u{200b}here"
        );
        assert_eq!(escape_markdown("plain", 5, "…"), "plain");
        // `ab*` needs four characters; with the marker, only `ab` fits in four.
        assert_eq!(escape_markdown("ab*cd", 4, "…"), "ab…");
        assert_eq!(escape_markdown("ab*cd", 5, "…"), "ab\\*…");
        assert_eq!(escape_markdown("a@b", 3, "…"), "a…");
    }

    #[test]
    fn code_blocks_cannot_be_closed_early() {
        assert_eq!(
            code_block("x\n```\n````"),
            "```\nx\n`\u{200b}``\n`\u{200b}``\u{200b}`\n```"
        );
    }

    #[test]
    fn failure_text() {
        assert_eq!(
            render_text(&fixtures::failure()),
            "DOWN api on macbook: HTTP 503 Service Unavailable\n\
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
             reset reason: overflow"
        );
    }

    #[test]
    fn recovery_text() {
        assert_eq!(
            render_text(&fixtures::recovery()),
            "RECOVERED api on macbook after 1h 5m\n\
             Severity: ok\n\
             Check: http https://api.example.com/health\n\
             Reason: HTTP 200 OK\n\
             Attempts: 1 of 3\n\
             Elapsed: 180ms\n\
             Failing since: 2026-03-29 10:15:02 +11:00\n\
             Next run: 2026-03-29 11:25:00 +11:00\n\
             Downtime: 1h 5m\n\
             Alert: api-20260329T001502Z"
        );
    }

    #[test]
    fn titles() {
        let warning = Alert {
            severity: Severity::Warning,
            summary: "disk 85% full\n(/ on sda1)".into(),
            ..fixtures::failure()
        };
        let unknown = Alert {
            severity: Severity::Unknown,
            ..fixtures::failure()
        };
        let test = Alert {
            event: Event::Test,
            ..fixtures::failure()
        };
        let recovered_without_downtime = Alert {
            downtime_ms: None,
            ..fixtures::recovery()
        };
        let cases = [
            (
                fixtures::failure(),
                "DOWN api on macbook: HTTP 503 Service Unavailable",
            ),
            (unknown, "DOWN api on macbook: HTTP 503 Service Unavailable"),
            (warning, "WARNING api on macbook: disk 85% full (/ on sda1)"),
            (
                fixtures::update(),
                "CHANGED api on macbook is now warning: latency 2.4s > 2s",
            ),
            (
                fixtures::reminder(),
                "STILL DOWN api on macbook: HTTP 503 Service Unavailable",
            ),
            (fixtures::recovery(), "RECOVERED api on macbook after 1h 5m"),
            (recovered_without_downtime, "RECOVERED api on macbook"),
            (test, "TEST message from klaxon on macbook"),
        ];
        for (alert, expected) in cases {
            assert_eq!(title(&alert), expected, "{:?}", alert.event);
        }
    }

    #[test]
    fn facts_where_they_apply() {
        let never = Alert {
            last_success: None,
            next_run: None,
            failing_since: None,
            check: crate::CheckInfo {
                kind: "heartbeat".into(),
                target: String::new(),
            },
            ..fixtures::failure()
        };
        assert_eq!(
            facts(&never),
            [
                ("Severity", "critical".to_owned()),
                ("Check", "heartbeat".to_owned()),
                ("Reason", "HTTP 503 Service Unavailable".to_owned()),
                ("Attempts", "3 of 3".to_owned()),
                ("Elapsed", "7.2s".to_owned()),
                ("Last success", "never".to_owned()),
                ("Next run", "none".to_owned()),
                ("Alert", "api-20260329T001502Z".to_owned()),
            ]
        );
        let test = Alert {
            event: Event::Test,
            summary: "if you can read this, `slack` works".into(),
            ..fixtures::failure()
        };
        assert_eq!(
            facts(&test),
            [
                ("Reason", "if you can read this, `slack` works".to_owned()),
                ("Alert", "api-20260329T001502Z".to_owned()),
            ]
        );
    }

    #[test]
    fn human_durations() {
        let table = [
            (0, "0ms"),
            (850, "850ms"),
            (999, "999ms"),
            (1_000, "1.0s"),
            (7_213, "7.2s"),
            (59_999, "59.9s"),
            (60_000, "1m"),
            (120_000, "2m"),
            (133_000, "2m 13s"),
            (133_999, "2m 13s"),
            (3_599_999, "59m 59s"),
            (3_600_000, "1h"),
            (3_900_000, "1h 5m"),
            (86_399_000, "23h 59m"),
            (86_400_000, "1d"),
            (183_600_000, "2d 3h"),
            (u64::MAX, "213503982334d 14h"),
        ];
        for (ms, expected) in table {
            assert_eq!(human_duration(ms), expected, "{ms}ms");
        }
    }

    #[test]
    fn output_keeps_the_last_lines() {
        let lines: Vec<String> = (1..=25).map(|n| format!("line {n}")).collect();
        let alert = Alert {
            output: Some(lines.join("\n") + "\n\n"),
            ..fixtures::failure()
        };
        let expected = format!("…\n{}", lines[5..].join("\n"));
        assert_eq!(output_tail(&alert).as_deref(), Some(expected.as_str()));
    }

    #[test]
    fn output_keeps_the_last_characters() {
        // Multi-byte characters: the cut must land on a boundary.
        let alert = Alert {
            output: Some(format!("{}end", "é".repeat(3_000))),
            ..fixtures::failure()
        };
        let tail = output_tail(&alert).unwrap_or_default();
        assert_eq!(tail.chars().count(), OUTPUT_CHARS);
        assert_eq!(tail, format!("…{}end", "é".repeat(OUTPUT_CHARS - 4)));
    }

    #[test]
    fn no_output() {
        for output in [None, Some(String::new()), Some("\n \n".into())] {
            let alert = Alert {
                output,
                ..fixtures::failure()
            };
            assert_eq!(output_tail(&alert), None);
            assert!(!render_text(&alert).contains("Output:"));
        }
    }

    #[test]
    fn digest_text() {
        assert_eq!(
            render_digest_text(&fixtures::digest()),
            "3 alerts on macbook: 1 down, 1 warning, 1 recovered\n\
             \n\
             - DOWN api on macbook: HTTP 503 Service Unavailable (3 of 3 attempts, 7.2s)\n\
             - WARNING disk on macbook: disk 85% full (2 of 3 attempts, 1.3s)\n\
             - RECOVERED db on macbook after 1h 5m (down 10:15–11:20)"
        );
    }

    /// Held by quiet hours: api failed at 10:15 and recovered 1h 5m later; disk is
    /// still down. The outage of api is one line, its recovery's, with when it was down.
    #[test]
    fn a_failure_and_its_recovery_in_one_digest_are_one_line() {
        let alerts = collapse(&[
            fixtures::failure(),
            Alert {
                job: "disk".into(),
                id: "disk-1".into(),
                ..fixtures::failure()
            },
            fixtures::recovery(),
        ]);
        assert_eq!(
            digest_lines(&alerts),
            [
                "DOWN disk on macbook: HTTP 503 Service Unavailable (3 of 3 attempts, 7.2s)",
                "RECOVERED api on macbook after 1h 5m (down 10:15–11:20)",
            ]
        );
    }

    #[test]
    fn an_acknowledged_alert_says_who_and_when() {
        let alert = Alert {
            acknowledged: Some(crate::Acknowledged {
                by: "ann".into(),
                at: fixtures::failure().started_at + chrono::Duration::minutes(5),
                comment: Some("on it".into()),
            }),
            ..fixtures::recovery()
        };
        let all = facts(&alert);
        let ack = all
            .iter()
            .find(|(label, _)| *label == "Acknowledged")
            .unwrap();
        assert!(ack.1.starts_with("by ann at "), "{}", ack.1);
        assert!(ack.1.ends_with(": on it"), "{}", ack.1);
        assert!(
            facts(&fixtures::recovery())
                .iter()
                .all(|(l, _)| *l != "Acknowledged")
        );
    }

    #[test]
    fn digest_titles_count_each_kind() {
        let warning_reminder = Alert {
            severity: Severity::Warning,
            ..fixtures::reminder()
        };
        let unknown = Alert {
            severity: Severity::Unknown,
            ..fixtures::failure()
        };
        let test = Alert {
            event: Event::Test,
            ..fixtures::failure()
        };
        let cases = [
            (
                vec![fixtures::failure(), unknown, fixtures::recovery()],
                "3 alerts on macbook: 2 down, 1 recovered",
            ),
            (
                vec![
                    fixtures::reminder(),
                    warning_reminder,
                    fixtures::update(),
                    fixtures::update(),
                    test,
                ],
                "5 alerts on macbook: 1 down, 1 warning, 2 changed, 1 test",
            ),
            (
                vec![fixtures::recovery()],
                "1 alert on macbook: 1 recovered",
            ),
            (Vec::new(), "0 alerts"),
        ];
        for (alerts, expected) in cases {
            assert_eq!(digest_title(&alerts), expected);
        }
        // Another agent's message does not change whose digest it is.
        let elsewhere = Alert {
            agent: "server".into(),
            ..fixtures::recovery()
        };
        assert_eq!(
            digest_title(&[fixtures::failure(), elsewhere]),
            "2 alerts on macbook: 1 down, 1 recovered"
        );
    }

    #[test]
    fn digest_lines_say_attempts_except_for_good_news() {
        let single_try = Alert {
            max_attempts: 1,
            attempts: 1,
            ..fixtures::reminder()
        };
        let test = Alert {
            event: Event::Test,
            ..fixtures::failure()
        };
        assert_eq!(
            digest_lines(&[fixtures::update(), single_try, fixtures::recovery(), test]),
            [
                "CHANGED api on macbook is now warning: latency 2.4s > 2s (1 of 3 attempts, 2.4s)",
                "STILL DOWN api on macbook: HTTP 503 Service Unavailable (1 of 1 attempt, 7.2s)",
                "RECOVERED api on macbook after 1h 5m (down 10:15–11:20)",
                "TEST message from klaxon on macbook",
            ]
        );
    }

    #[test]
    fn and_more_names_every_job() {
        assert_eq!(and_more(&fixtures::digest()), "…and 3 more: api, disk, db");
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate("short", 5, "…"), "short");
        assert_eq!(truncate("longer", 5, "…"), "long…");
        assert_eq!(truncate("ééééé", 3, "…"), "éé…");
        assert_eq!(truncate("abc", 2, "[cut]"), "[cut]");
    }
}
