//! The `pagerduty` channel: PagerDuty's Events API v2. Owns its config (`routing_key`, a
//! secret, and `url`), the pure [`render`] of an alert into an event (`trigger` for a
//! failure, update, reminder or test; `resolve` for a recovery, with the same
//! `dedup_key`), and [`Pagerduty::send`].
//!
//! The API, as PagerDuty documents it:
//! <https://developer.pagerduty.com/docs/events-api-v2/trigger-events/> and
//! <https://developer.pagerduty.com/docs/events-api-v2/resolve-events/>. A `POST` of
//! JSON to `/v2/enqueue`; `202 Accepted` is success, `400` an event it refuses (not
//! retried), `429` its rate limit and `5xx` its trouble (both retried). The texts are
//! plain: PagerDuty renders no markup in `summary` or `custom_details`, so nothing is
//! escaped beyond JSON's own.

use klaxon_config_core::{SecretKey, Seg};
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use toml::Spanned;

use crate::keyed::{Api, ApiRequest, Keyed, KeyedSpec};
use crate::text::{self, ELLIPSIS};
use crate::validate::ConfigIssue;
use crate::{Alert, BuildError, DeliveryError, Event, NotifierPlugin, Severity};

/// Where events go unless `url` says otherwise.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// PagerDuty's limit on `payload.summary`.
pub const SUMMARY_CHARS: usize = 1_024;
/// PagerDuty's limit on `dedup_key`.
pub const DEDUP_KEY_CHARS: usize = 255;

/// The raw `[notifiers.NAME]` table of `type = "pagerduty"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerdutyConfig {
    routing_key: Spanned<SecretString>,
    url: Option<Spanned<String>>,
}

impl NotifierPlugin for PagerdutyConfig {
    type Spec = PagerdutySpec;
    type Channel = Pagerduty;

    const SECRET_KEYS: &'static [SecretKey] = &[
        SecretKey::always(&[Seg::Key("routing_key")]),
        SecretKey::url(&[Seg::Key("url")]),
    ];

    /// Checks the routing key (not empty) and `url` (`https`, or `http` to a loopback
    /// host), pushing every problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<PagerdutySpec> {
        KeyedSpec::validate(
            self.routing_key,
            "routing_key",
            self.url.as_ref(),
            DEFAULT_URL,
            issues,
        )
    }

    fn build(spec: &PagerdutySpec, client: &reqwest::Client) -> Result<Pagerduty, BuildError> {
        Ok(Pagerduty::new(spec.clone(), client.clone()))
    }
}

/// A validated `pagerduty` notifier: the `routing_key` and `url`.
pub type PagerdutySpec = KeyedSpec;

/// PagerDuty's severity for an alert: `critical` (critical or unknown), `warning`, and
/// `info` for a test message.
fn severity(alert: &Alert) -> &'static str {
    match (alert.event, alert.severity) {
        (Event::Test, _) => "info",
        (_, Severity::Warning) => "warning",
        _ => "critical",
    }
}

/// Renders an alert as an Events API v2 event for `routing_key`.
///
/// A recovery is `{"routing_key", "event_action": "resolve", "dedup_key"}`. Every other
/// message is a `trigger` with `dedup_key` = the alert id (so reminders and updates join
/// the open incident, and the recovery resolves it), `client` = `klaxon`, and a
/// `payload` of `summary` (the title, cut to [`SUMMARY_CHARS`]), `source` (the agent),
/// `severity` (`critical`, `warning`, or `info` for a test), `timestamp` (when the run
/// started), `component` (the job), `class` (the check type) and `custom_details` (the
/// facts and the output's tail).
pub fn render(alert: &Alert, routing_key: &str) -> Value {
    let dedup_key = text::truncate(&alert.id, DEDUP_KEY_CHARS, "");
    if alert.event == Event::Recovery {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        });
    }
    let details: Map<String, Value> = text::details(alert)
        .into_iter()
        .map(|(label, value)| (label.to_owned(), Value::String(value)))
        .collect();
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "client": "klaxon",
        "payload": {
            "summary": text::truncate(&text::title(alert), SUMMARY_CHARS, ELLIPSIS),
            "source": alert.agent,
            "severity": severity(alert),
            "timestamp": alert.started_at.to_rfc3339(),
            "component": alert.job,
            "class": alert.check.kind,
            "custom_details": details,
        },
    })
}

/// A `pagerduty` notifier ready to send: it POSTs [`render`]'s event to `url` (a `400`,
/// an invalid event or key, is refused for good).
pub type Pagerduty = Keyed<EventsApi>;

/// PagerDuty's Events API v2.
#[derive(Debug)]
pub struct EventsApi;

impl Api for EventsApi {
    fn request(alert: &Alert, spec: &KeyedSpec) -> Result<ApiRequest, DeliveryError> {
        let body = render(alert, spec.key.expose_secret());
        Ok(ApiRequest {
            url: spec.url.clone(),
            headers: HeaderMap::new(),
            body: body.to_string().into_bytes(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::Channel;
    use crate::fixtures::{self, span_of};
    use klaxon_testkit::{Response, Server};
    use std::time::Duration;
    use url::Url;

    const KEY: &str = "R0UTING-KEY-SECRET";

    fn validate(toml: &str) -> (Option<PagerdutySpec>, Vec<ConfigIssue>) {
        fixtures::validated::<PagerdutyConfig>(toml)
    }

    #[test]
    fn accepts_a_key_with_the_default_or_another_url() {
        let (spec, issues) = validate(&format!("routing_key = \"{KEY}\""));
        assert_eq!(issues, []);
        let spec = spec.unwrap();
        assert_eq!(spec.url.as_str(), DEFAULT_URL);
        assert_eq!(spec.key.expose_secret(), KEY);
        assert_eq!(
            format!("{spec:?}"),
            format!("KeyedSpec {{ key: ***, url: \"{DEFAULT_URL}\" }}")
        );
        for url in [
            "https://events.eu.pagerduty.com/v2/enqueue",
            "http://127.0.0.1:9/v2/enqueue",
        ] {
            let (spec, issues) = validate(&format!("routing_key = \"k\"\nurl = \"{url}\""));
            assert_eq!(issues, []);
            assert_eq!(spec.unwrap().url.as_str(), url);
        }
    }

    #[test]
    fn collects_every_problem() {
        let toml = "routing_key = \"\"\nurl = \"http://events.example.com/v2/enqueue\"";
        let (spec, issues) = validate(toml);
        assert!(spec.is_none());
        assert_eq!(
            issues,
            [
                ConfigIssue::new(span_of(toml, "\"\""), "`routing_key` must not be empty"),
                ConfigIssue::new(
                    span_of(toml, "\"http://events.example.com/v2/enqueue\""),
                    "`url` must use `https`: plain `http` is allowed only to a loopback host"
                ),
            ]
        );
        let error =
            toml::from_str::<PagerdutyConfig>("routing_key = \"k\"\nseverity = \"x\"").unwrap_err();
        assert!(
            error.message().starts_with("unknown field `severity`"),
            "{error}"
        );
        let error = toml::from_str::<PagerdutyConfig>("").unwrap_err();
        assert_eq!(error.message(), "missing field `routing_key`");
    }

    // --- rendering ---

    fn trigger(severity: &str, summary: &str, timestamp: &str, details: Value) -> Value {
        json!({
            "routing_key": KEY,
            "event_action": "trigger",
            "dedup_key": "api-20260329T001502Z",
            "client": "klaxon",
            "payload": {
                "summary": summary,
                "source": "macbook",
                "severity": severity,
                "timestamp": timestamp,
                "component": "api",
                "class": "http",
                "custom_details": details,
            },
        })
    }

    /// The `custom_details` of the fixture's failure and reminder, which differ only in
    /// the next run.
    fn down_details(next_run: &str) -> Value {
        json!({
            "Severity": "critical",
            "Check": "http https://api.example.com/health",
            "Reason": "HTTP 503 Service Unavailable",
            "Attempts": "3 of 3",
            "Elapsed": "7.2s",
            "Failing since": "2026-03-29 10:15:02 +11:00",
            "Last success": "2026-03-29 10:10:01 +11:00",
            "Next run": next_run,
            "Alert": "api-20260329T001502Z",
            "Output": "upstream connect error\nreset reason: overflow",
        })
    }

    #[test]
    fn renders_a_failure() {
        assert_eq!(
            render(&fixtures::failure(), KEY),
            trigger(
                "critical",
                "DOWN api on macbook: HTTP 503 Service Unavailable",
                "2026-03-29T10:15:02+11:00",
                down_details("2026-03-29 10:20:00 +11:00")
            )
        );
    }

    #[test]
    fn renders_a_reminder() {
        assert_eq!(
            render(&fixtures::reminder(), KEY),
            trigger(
                "critical",
                "STILL DOWN api on macbook: HTTP 503 Service Unavailable",
                "2026-03-29T14:15:03+11:00",
                down_details("2026-03-29 14:20:00 +11:00")
            )
        );
    }

    #[test]
    fn renders_an_update() {
        assert_eq!(
            render(&fixtures::update(), KEY),
            trigger(
                "warning",
                "CHANGED api on macbook is now warning: latency 2.4s > 2s",
                "2026-03-29T10:35:00+11:00",
                json!({
                    "Severity": "warning",
                    "Check": "http https://api.example.com/health",
                    "Reason": "latency 2.4s > 2s",
                    "Attempts": "1 of 3",
                    "Elapsed": "2.4s",
                    "Failing since": "2026-03-29 10:15:02 +11:00",
                    "Last success": "2026-03-29 10:10:01 +11:00",
                    "Next run": "2026-03-29 10:40:00 +11:00",
                    "Alert": "api-20260329T001502Z",
                })
            )
        );
    }

    #[test]
    fn renders_a_recovery_as_a_resolve_of_the_same_key() {
        assert_eq!(
            render(&fixtures::recovery(), KEY),
            json!({
                "routing_key": KEY,
                "event_action": "resolve",
                "dedup_key": "api-20260329T001502Z",
            })
        );
    }

    #[test]
    fn a_test_is_an_info_trigger_and_long_texts_are_cut() {
        let test = Alert {
            event: Event::Test,
            severity: Severity::Ok,
            ..fixtures::failure()
        };
        assert_eq!(render(&test, KEY)["payload"]["severity"], "info");
        let long = Alert {
            summary: "x".repeat(2_000),
            id: "i".repeat(300),
            ..fixtures::failure()
        };
        let event = render(&long, KEY);
        let summary = event["payload"]["summary"].as_str().unwrap();
        assert_eq!(summary.chars().count(), SUMMARY_CHARS);
        assert!(summary.ends_with(ELLIPSIS));
        assert_eq!(event["dedup_key"], "i".repeat(DEDUP_KEY_CHARS));
    }

    // --- delivery against a real local receiver ---

    fn pagerduty(url: &str) -> Pagerduty {
        let spec = PagerdutySpec {
            key: KEY.into(),
            url: Url::parse(url).unwrap(),
        };
        Pagerduty::new(spec, crate::delivery_client().unwrap())
    }

    /// What PagerDuty answers an accepted event.
    fn accepted() -> Response {
        Response::status(202).body(
            r#"{"status":"success","message":"Event processed","dedup_key":"api-20260329T001502Z"}"#,
        )
    }

    #[tokio::test]
    async fn posts_the_trigger_then_the_resolve() {
        let server = Server::start(|_| accepted()).await;
        let url = server.url("/v2/enqueue");
        for alert in [fixtures::failure(), fixtures::recovery()] {
            pagerduty(&url).send(&alert).await.unwrap();
        }
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        for (request, alert) in requests
            .iter()
            .zip([fixtures::failure(), fixtures::recovery()])
        {
            assert_eq!(request.method, "POST");
            assert_eq!(request.path, "/v2/enqueue");
            assert_eq!(request.header("content-type"), Some("application/json"));
            assert_eq!(request.header("authorization"), None);
            assert_eq!(request.json(), render(&alert, KEY));
        }
    }

    #[tokio::test]
    async fn answers_are_classified_without_showing_the_key() {
        let cases = [
            (
                Response::status(400).body(format!(
                    r#"{{"status":"invalid event","message":"Event object is invalid","errors":["routing_key {KEY} unknown"]}}"#
                )),
                DeliveryError::Reject {
                    reason: "HTTP 400 Bad Request: {\"status\":\"invalid event\",\"message\":\
                             \"Event object is invalid\",\"errors\":[\"routing_key *** unknown\"]}"
                        .into(),
                },
            ),
            (
                Response::status(429).header("Retry-After", "30"),
                DeliveryError::Retry {
                    reason: "HTTP 429 Too Many Requests".into(),
                    after: Some(Duration::from_secs(30)),
                },
            ),
            (
                Response::status(429),
                DeliveryError::Retry {
                    reason: "HTTP 429 Too Many Requests".into(),
                    after: None,
                },
            ),
            (
                Response::status(502).body("bad gateway"),
                DeliveryError::Retry {
                    reason: "HTTP 502 Bad Gateway: bad gateway".into(),
                    after: None,
                },
            ),
        ];
        for (response, expected) in cases {
            let server = Server::start(move |_| response.clone()).await;
            let error = pagerduty(&server.url("/v2/enqueue"))
                .send(&fixtures::failure())
                .await
                .unwrap_err();
            assert_eq!(error, expected);
            assert!(!format!("{error:?}").contains(KEY));
        }
    }

    #[tokio::test]
    async fn a_redirect_is_refused_and_a_hang_retried() {
        let server =
            Server::start(|_| Response::status(307).header("Location", "https://elsewhere/x"))
                .await;
        let error = pagerduty(&server.url("/v2/enqueue"))
            .send(&fixtures::failure())
            .await
            .unwrap_err();
        assert_eq!(
            error,
            DeliveryError::Reject {
                reason: "HTTP 307 Temporary Redirect: redirect to host `elsewhere` is not \
                         followed; use the final URL"
                    .into()
            }
        );
        let server = Server::start(|_| accepted().delay(Duration::from_secs(30))).await;
        let error = pagerduty(&server.url("/v2/enqueue"))
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
