//! What the push channels (`ntfy`, `pushover`, `telegram`, `gotify`) share: a message
//! cut to a provider's size limit, a digest that fits one, how urgent an alert is, and the
//! provider's endpoint below a configurable base URL (their secrets are masked by
//! `http::masked`).

use url::Url;

use crate::text::{self, ELLIPSIS};
use crate::{Alert, Event, Severity};

/// How urgent a message is, for the providers that rank them: an open alert by its
/// severity, a recovery or a test below both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Urgency {
    /// A recovery or a test message.
    Low,
    /// An open alert that is a warning.
    Warning,
    /// An open alert that is critical or unknown.
    Critical,
}

pub(crate) fn urgency(alert: &Alert) -> Urgency {
    match (alert.event, alert.severity) {
        (Event::Recovery | Event::Test, _) | (_, Severity::Ok) => Urgency::Low,
        (_, Severity::Warning) => Urgency::Warning,
        (_, Severity::Critical | Severity::Unknown) => Urgency::Critical,
    }
}

/// The most urgent of several messages (a digest's); low for none.
pub(crate) fn most_urgent(alerts: &[Alert]) -> Urgency {
    alerts.iter().map(urgency).max().unwrap_or(Urgency::Low)
}

/// The message below the title: one `Label: value` line per fact, then, with output, a
/// blank line, `Output:` and its tail ([`text::render_text`] without its first line),
/// cut to `max_chars` characters keeping the start.
pub(crate) fn body(alert: &Alert, max_chars: usize) -> String {
    let text = text::render_text(alert);
    let rest = text.split_once('\n').map_or("", |(_, rest)| rest);
    text::truncate(rest, max_chars, ELLIPSIS).into_owned()
}

/// A digest's message within `max_chars` characters: one `- LINE` line per message
/// ([`text::digest_lines`]), as many as fit, then a line naming the jobs of the rest
/// ([`text::and_more`]), itself cut to fit when even the names are too many.
pub(crate) fn digest_body(alerts: &[Alert], max_chars: usize) -> String {
    let lines: Vec<String> = text::digest_lines(alerts)
        .iter()
        .map(|line| format!("- {line}"))
        .collect();
    let join = |shown: usize| {
        let mut text = lines[..shown].join("\n");
        if shown < alerts.len() {
            if shown > 0 {
                text.push('\n');
            }
            text.push_str(&text::and_more(&alerts[shown..]));
        }
        text
    };
    let fits = |shown: usize| join(shown).chars().count() <= max_chars;
    if fits(alerts.len()) {
        return join(alerts.len());
    }
    // A line left out is named in fewer characters, so fewer lines only shorten the
    // text: search for the most that fit.
    let (mut shown, mut over) = (0, alerts.len());
    while over - shown > 1 {
        let mid = shown + (over - shown) / 2;
        if fits(mid) {
            shown = mid;
        } else {
            over = mid;
        }
    }
    text::truncate(&join(shown), max_chars, ELLIPSIS).into_owned()
}

/// `base` with `path` below its own path (`https://host/proxy` and `message` give
/// `https://host/proxy/message`), so a provider served below a prefix is reached.
pub(crate) fn endpoint(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}/{path}", url.path().trim_end_matches('/'));
    url.set_path(&joined);
    url
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn urgency_follows_the_event_and_severity() {
        assert_eq!(urgency(&fixtures::failure()), Urgency::Critical);
        assert_eq!(urgency(&fixtures::reminder()), Urgency::Critical);
        assert_eq!(urgency(&fixtures::update()), Urgency::Warning);
        assert_eq!(urgency(&fixtures::recovery()), Urgency::Low);
        let unknown = Alert {
            severity: Severity::Unknown,
            ..fixtures::failure()
        };
        assert_eq!(urgency(&unknown), Urgency::Critical);
        assert_eq!(most_urgent(&fixtures::digest()), Urgency::Critical);
        assert_eq!(most_urgent(&[]), Urgency::Low);
    }

    #[test]
    fn the_body_is_the_text_less_its_title() {
        assert_eq!(body(&fixtures::failure(), 10_000), wording::FAILURE_BODY);
        assert_eq!(
            body(&fixtures::reminder(), 10_000),
            wording::reminder_body()
        );
        assert_eq!(body(&fixtures::update(), 10_000), wording::UPDATE_BODY);
        assert_eq!(body(&fixtures::recovery(), 10_000), wording::RECOVERY_BODY);
        assert_eq!(body(&fixtures::update(), 20), "Severity: warning\nC…");
    }

    #[test]
    fn digests_fit_and_name_the_jobs_left_out() {
        let alerts = fixtures::digest();
        assert_eq!(digest_body(&alerts, 10_000), wording::DIGEST_BODY);
        assert_eq!(
            digest_body(&alerts, 100),
            "- DOWN api on macbook: HTTP 503 Service Unavailable (3 of 3 attempts, 7.2s)\n…and 2 more: disk, db"
        );
        assert_eq!(digest_body(&alerts, 30), "…and 3 more: api, disk, db");
        assert_eq!(digest_body(&alerts, 10), "…and 3 mo…");
        let storm = fixtures::storm(500, "HTTP 503");
        assert!(digest_body(&storm, 1024).chars().count() <= 1024);
    }

    #[test]
    fn endpoints_keep_the_base_path() {
        let cases = [
            (
                "https://gotify.example.com",
                "https://gotify.example.com/message",
            ),
            (
                "https://example.com/gotify/",
                "https://example.com/gotify/message",
            ),
            (
                "http://127.0.0.1:8080/a/b",
                "http://127.0.0.1:8080/a/b/message",
            ),
        ];
        for (base, expected) in cases {
            let url = endpoint(&base.parse().unwrap(), "message");
            assert_eq!(url.as_str(), expected, "{base}");
        }
    }
}

/// The fixture outage's texts ([`crate::fixtures`]) as every push channel words them:
/// each event's title and [`body`].
#[cfg(test)]
pub(crate) mod wording {
    pub(crate) const FAILURE_TITLE: &str = "DOWN api on macbook: HTTP 503 Service Unavailable";
    pub(crate) const REMINDER_TITLE: &str =
        "STILL DOWN api on macbook: HTTP 503 Service Unavailable";
    pub(crate) const UPDATE_TITLE: &str =
        "CHANGED api on macbook is now warning: latency 2.4s > 2s";
    pub(crate) const RECOVERY_TITLE: &str = "RECOVERED api on macbook after 1h 5m";
    pub(crate) const DIGEST_TITLE: &str = "3 alerts on macbook: 1 down, 1 warning, 1 recovered";

    pub(crate) const FAILURE_BODY: &str = "Severity: critical\n\
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
        reset reason: overflow";
    /// The failure's body, as the reminder four hours later words it.
    pub(crate) fn reminder_body() -> String {
        FAILURE_BODY.replace(
            "Next run: 2026-03-29 10:20:00",
            "Next run: 2026-03-29 14:20:00",
        )
    }
    pub(crate) const UPDATE_BODY: &str = "Severity: warning\n\
        Check: http https://api.example.com/health\n\
        Reason: latency 2.4s > 2s\n\
        Attempts: 1 of 3\n\
        Elapsed: 2.4s\n\
        Failing since: 2026-03-29 10:15:02 +11:00\n\
        Last success: 2026-03-29 10:10:01 +11:00\n\
        Next run: 2026-03-29 10:40:00 +11:00\n\
        Alert: api-20260329T001502Z";
    pub(crate) const RECOVERY_BODY: &str = "Severity: ok\n\
        Check: http https://api.example.com/health\n\
        Reason: HTTP 200 OK\n\
        Attempts: 1 of 3\n\
        Elapsed: 180ms\n\
        Failing since: 2026-03-29 10:15:02 +11:00\n\
        Next run: 2026-03-29 11:25:00 +11:00\n\
        Downtime: 1h 5m\n\
        Alert: api-20260329T001502Z";
    pub(crate) const DIGEST_BODY: &str = "- DOWN api on macbook: HTTP 503 Service Unavailable (3 of 3 attempts, 7.2s)\n\
         - WARNING disk on macbook: disk 85% full (2 of 3 attempts, 1.3s)\n\
         - RECOVERED db on macbook after 1h 5m (down 10:15–11:20)";
}

/// What every push channel's delivery must do with a receiver's answers, checked
/// against real local receivers: `send` posts one message to the receiver at the base
/// URL it is given, within the deadline it is given. A 5xx and a 429 (with its
/// `Retry-After`) are worth a retry, a 4xx is rejected quoting the answer, a refused
/// connection and a receiver that does not answer in time are retried; no reason holds
/// any of `secrets`, even when the receiver echoes the whole request back.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) async fn assert_answers_classified<F, Fut>(send: F, secrets: &[&str])
where
    F: Fn(String, std::time::Duration) -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::DeliveryError>>,
{
    use crate::DeliveryError;
    use klaxon_testkit::{Request, Response, Server};
    use std::time::Duration;

    fn echo(r: &Request) -> String {
        let headers: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{} {} {} {}", r.method, r.path, headers.join(" "), r.text())
    }
    let hidden = |error: &DeliveryError| {
        let text = format!("{error} {error:?}");
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} shown in {text}");
        }
    };
    let answers = [
        (Response::status(500), true, None),
        (Response::status(503), true, None),
        (
            Response::status(429).header("Retry-After", "30"),
            true,
            Some(Duration::from_secs(30)),
        ),
        (Response::status(400), false, None),
        (Response::status(401), false, None),
        (Response::status(403), false, None),
        (Response::status(404), false, None),
    ];
    for (answer, retried, wait) in answers {
        let status = answer.status;
        let server = Server::start(move |r| answer.clone().body(echo(r))).await;
        let error = send(server.url(""), Duration::from_secs(10))
            .await
            .unwrap_err();
        hidden(&error);
        match (&error, retried) {
            (DeliveryError::Retry { reason, after }, true) => {
                assert!(reason.starts_with(&format!("HTTP {status} ")), "{reason}");
                assert_eq!(*after, wait, "{status}");
            }
            (DeliveryError::Reject { reason }, false) => {
                assert!(reason.starts_with(&format!("HTTP {status} ")), "{reason}");
                assert!(reason.contains("POST "), "the answer is quoted: {reason}");
            }
            _ => panic!("{status}: {error:?}"),
        }
        assert_eq!(server.requests().len(), 1, "{status}: no retry of its own");
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let error = send(closed, Duration::from_secs(10)).await.unwrap_err();
    hidden(&error);
    assert!(
        matches!(&error, DeliveryError::Retry { reason, after: None } if reason.starts_with("cannot connect: ")),
        "{error:?}"
    );
    let hanging = Server::start(|_| Response::ok("").delay(Duration::from_secs(30))).await;
    let error = send(hanging.url(""), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        DeliveryError::Retry {
            reason: "no answer within 200ms".into(),
            after: None
        }
    );
}
