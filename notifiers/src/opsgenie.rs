//! The `opsgenie` channel: Opsgenie's Alert API. Owns its config (`api_key`, a secret,
//! and `url`, the API's base), the pure [`render`] of an alert into the request
//! (create for a failure, update, reminder or test; close for a recovery), and
//! [`Opsgenie::send`].
//!
//! The API, as Opsgenie documents it: <https://docs.opsgenie.com/docs/alert-api>
//! ("Create Alert": `POST /v2/alerts`; "Close Alert":
//! `POST /v2/alerts/:identifier/close?identifierType=alias`), authenticated with
//! `Authorization: GenieKey KEY` (<https://docs.opsgenie.com/docs/authentication>). Both
//! answer `202 Accepted` (processed asynchronously); `4xx` is refused for good, `429`
//! (Opsgenie's rate limit) and `5xx` are retried. EU accounts set
//! `url = "https://api.eu.opsgenie.com"`. Opsgenie shows `message` and `description` as
//! plain text, so nothing is escaped beyond JSON's own.

use klaxon_config_core::{SecretKey, Seg};
use reqwest::header::{AUTHORIZATION, HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use toml::Spanned;
use url::Url;

use crate::http;
use crate::keyed::{Api, ApiRequest, Keyed, KeyedSpec};
use crate::text::{self, ELLIPSIS};
use crate::validate::ConfigIssue;
use crate::{Alert, BuildError, DeliveryError, Event, NotifierPlugin, Severity};

/// The API's base unless `url` says otherwise.
pub const DEFAULT_URL: &str = "https://api.opsgenie.com";
/// Opsgenie's limit on `message`.
pub const MESSAGE_CHARS: usize = 130;
/// Opsgenie's limit on `alias`.
pub const ALIAS_CHARS: usize = 512;
/// Opsgenie's limit on `description`.
pub const DESCRIPTION_CHARS: usize = 15_000;
/// Opsgenie's limit on `source`.
pub const SOURCE_CHARS: usize = 100;
/// Opsgenie's limit on a `details` value, as on a key.
pub const DETAIL_CHARS: usize = 8_000;

/// The raw `[notifiers.NAME]` table of `type = "opsgenie"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsgenieConfig {
    api_key: Spanned<SecretString>,
    url: Option<Spanned<String>>,
}

impl NotifierPlugin for OpsgenieConfig {
    type Spec = OpsgenieSpec;
    type Channel = Opsgenie;

    const SECRET_KEYS: &'static [SecretKey] = &[
        SecretKey::always(&[Seg::Key("api_key")]),
        SecretKey::url(&[Seg::Key("url")]),
    ];

    /// Checks the API key (not empty) and `url` (`https`, or `http` to a loopback host),
    /// pushing every problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<OpsgenieSpec> {
        KeyedSpec::validate(
            self.api_key,
            "api_key",
            self.url.as_ref(),
            DEFAULT_URL,
            issues,
        )
    }

    fn build(spec: &OpsgenieSpec, client: &reqwest::Client) -> Result<Opsgenie, BuildError> {
        Ok(Opsgenie::new(spec.clone(), client.clone()))
    }
}

/// A validated `opsgenie` notifier: the `api_key` and `url`.
pub type OpsgenieSpec = KeyedSpec;

/// One request to the Alert API: where it goes below the base, and its body.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The path's segments below the base URL, each percent-encoded when joined.
    pub path: Vec<String>,
    /// The query, `identifierType=alias` for a close.
    pub query: Option<&'static str>,
    pub body: Value,
}

impl Request {
    /// The full URL below `base` (whose own path, if any, is kept).
    pub fn url(&self, base: &Url) -> Url {
        let mut url = base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(&self.path);
        }
        url.set_query(self.query);
        url
    }
}

/// Opsgenie's priority: `P1` for critical (or unknown), `P3` for a warning, `P5` for a
/// test message.
fn priority(alert: &Alert) -> &'static str {
    match (alert.event, alert.severity) {
        (Event::Test, _) => "P5",
        (_, Severity::Warning) => "P3",
        _ => "P1",
    }
}

/// Renders an alert as an Alert API request.
///
/// A recovery closes the alert by its alias: `POST /v2/alerts/ALIAS/close
/// ?identifierType=alias` with `source` and a `note` (the title). Every other message
/// creates it (`POST /v2/alerts`; Opsgenie folds a create with the alias of an open
/// alert into it): `message` (the title, cut to [`MESSAGE_CHARS`]), `alias` (the alert
/// id), `description` (the whole text), `priority`, `source` (the agent), `entity` (the
/// job) and `details` (the facts and the output's tail, as strings).
pub fn render(alert: &Alert) -> Request {
    let alias = text::truncate(&alert.id, ALIAS_CHARS, "").into_owned();
    let source = text::truncate(&alert.agent, SOURCE_CHARS, ELLIPSIS);
    if alert.event == Event::Recovery {
        return Request {
            path: vec!["v2".into(), "alerts".into(), alias, "close".into()],
            query: Some("identifierType=alias"),
            body: json!({
                "source": source,
                "note": text::truncate(&text::title(alert), DESCRIPTION_CHARS, ELLIPSIS),
            }),
        };
    }
    let details: Map<String, Value> = text::details(alert)
        .into_iter()
        .map(|(label, value)| {
            let value = text::truncate(&value, DETAIL_CHARS, ELLIPSIS).into_owned();
            (label.to_owned(), Value::String(value))
        })
        .collect();
    Request {
        path: vec!["v2".into(), "alerts".into()],
        query: None,
        body: json!({
            "message": text::truncate(&text::title(alert), MESSAGE_CHARS, ELLIPSIS),
            "alias": alias,
            "description": text::truncate(&text::render_text(alert), DESCRIPTION_CHARS, ELLIPSIS),
            "priority": priority(alert),
            "source": source,
            "entity": alert.job,
            "details": details,
        }),
    }
}

/// An `opsgenie` notifier ready to send: it POSTs [`render`]'s request with
/// `Authorization: GenieKey KEY` (a `401`, a wrong key, or a `422`, a request Opsgenie
/// refuses, is refused for good).
pub type Opsgenie = Keyed<AlertApi>;

/// Opsgenie's Alert API.
#[derive(Debug)]
pub struct AlertApi;

impl Api for AlertApi {
    fn request(alert: &Alert, spec: &KeyedSpec) -> Result<ApiRequest, DeliveryError> {
        let key = spec.key.expose_secret();
        let auth = http::secret_header(
            &format!("GenieKey {key}"),
            "`api_key` holds characters an HTTP header cannot carry",
        )?;
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        let request = render(alert);
        Ok(ApiRequest {
            url: request.url(&spec.url),
            headers,
            body: request.body.to_string().into_bytes(),
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

    const KEY: &str = "eb243592-faa2-4ba2-a551q-1afdf565c889";

    fn validate(toml: &str) -> (Option<OpsgenieSpec>, Vec<ConfigIssue>) {
        fixtures::validated::<OpsgenieConfig>(toml)
    }

    #[test]
    fn accepts_a_key_with_the_default_or_the_eu_url() {
        let (spec, issues) = validate(&format!("api_key = \"{KEY}\""));
        assert_eq!(issues, []);
        let spec = spec.unwrap();
        assert_eq!(spec.url.as_str(), "https://api.opsgenie.com/");
        assert_eq!(spec.key.expose_secret(), KEY);
        assert_eq!(
            format!("{spec:?}"),
            "KeyedSpec { key: ***, url: \"https://api.opsgenie.com/\" }"
        );
        let (spec, issues) = validate("api_key = \"k\"\nurl = \"https://api.eu.opsgenie.com\"");
        assert_eq!(issues, []);
        assert_eq!(spec.unwrap().url.as_str(), "https://api.eu.opsgenie.com/");
    }

    #[test]
    fn collects_every_problem() {
        let toml = "api_key = \"\"\nurl = \"ftp://api.opsgenie.com\"";
        let (spec, issues) = validate(toml);
        assert!(spec.is_none());
        assert_eq!(
            issues,
            [
                ConfigIssue::new(span_of(toml, "\"\""), "`api_key` must not be empty"),
                ConfigIssue::new(
                    span_of(toml, "\"ftp://api.opsgenie.com\""),
                    "`url`: expected an `http` or `https` URL, found `ftp://api.opsgenie.com`"
                ),
            ]
        );
        let toml = "api_key = \"k\"\nurl = \"http://api.opsgenie.com\"";
        assert_eq!(
            validate(toml).1,
            [ConfigIssue::new(
                span_of(toml, "\"http://api.opsgenie.com\""),
                "`url` must use `https`: plain `http` is allowed only to a loopback host"
            )]
        );
        let error =
            toml::from_str::<OpsgenieConfig>("api_key = \"k\"\nteam = \"ops\"").unwrap_err();
        assert!(
            error.message().starts_with("unknown field `team`"),
            "{error}"
        );
    }

    // --- rendering ---

    const FAILURE_TEXT: &str = "Severity: critical\n\
                                Check: http https://api.example.com/health\n\
                                Reason: HTTP 503 Service Unavailable\n\
                                Attempts: 3 of 3\n\
                                Elapsed: 7.2s\n\
                                Failing since: 2026-03-29 10:15:02 +11:00\n\
                                Last success: 2026-03-29 10:10:01 +11:00";

    fn create(body: Value) -> Request {
        Request {
            path: vec!["v2".into(), "alerts".into()],
            query: None,
            body,
        }
    }

    /// The create of the fixture's failure or reminder, which differ only in the title
    /// and the next run.
    fn down(title: &str, next_run: &str) -> Request {
        create(json!({
            "message": title,
            "alias": "api-20260329T001502Z",
            "description": format!(
                "{title}\n{FAILURE_TEXT}\n\
                 Next run: {next_run}\n\
                 Alert: api-20260329T001502Z\n\
                 \n\
                 Output:\n\
                 upstream connect error\n\
                 reset reason: overflow"
            ),
            "priority": "P1",
            "source": "macbook",
            "entity": "api",
            "details": {
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
            },
        }))
    }

    #[test]
    fn renders_a_failure() {
        assert_eq!(
            render(&fixtures::failure()),
            down(
                "DOWN api on macbook: HTTP 503 Service Unavailable",
                "2026-03-29 10:20:00 +11:00"
            )
        );
    }

    #[test]
    fn renders_a_reminder() {
        assert_eq!(
            render(&fixtures::reminder()),
            down(
                "STILL DOWN api on macbook: HTTP 503 Service Unavailable",
                "2026-03-29 14:20:00 +11:00"
            )
        );
    }

    #[test]
    fn renders_an_update() {
        assert_eq!(
            render(&fixtures::update()),
            create(json!({
                "message": "CHANGED api on macbook is now warning: latency 2.4s > 2s",
                "alias": "api-20260329T001502Z",
                "description": "CHANGED api on macbook is now warning: latency 2.4s > 2s\n\
                                Severity: warning\n\
                                Check: http https://api.example.com/health\n\
                                Reason: latency 2.4s > 2s\n\
                                Attempts: 1 of 3\n\
                                Elapsed: 2.4s\n\
                                Failing since: 2026-03-29 10:15:02 +11:00\n\
                                Last success: 2026-03-29 10:10:01 +11:00\n\
                                Next run: 2026-03-29 10:40:00 +11:00\n\
                                Alert: api-20260329T001502Z",
                "priority": "P3",
                "source": "macbook",
                "entity": "api",
                "details": {
                    "Severity": "warning",
                    "Check": "http https://api.example.com/health",
                    "Reason": "latency 2.4s > 2s",
                    "Attempts": "1 of 3",
                    "Elapsed": "2.4s",
                    "Failing since": "2026-03-29 10:15:02 +11:00",
                    "Last success": "2026-03-29 10:10:01 +11:00",
                    "Next run": "2026-03-29 10:40:00 +11:00",
                    "Alert": "api-20260329T001502Z",
                },
            }))
        );
    }

    #[test]
    fn renders_a_recovery_as_a_close_by_alias() {
        assert_eq!(
            render(&fixtures::recovery()),
            Request {
                path: vec![
                    "v2".into(),
                    "alerts".into(),
                    "api-20260329T001502Z".into(),
                    "close".into()
                ],
                query: Some("identifierType=alias"),
                body: json!({
                    "source": "macbook",
                    "note": "RECOVERED api on macbook after 1h 5m",
                }),
            }
        );
    }

    #[test]
    fn urls_keep_the_base_and_encode_the_alias() {
        let odd = Alert {
            id: "a/b ?c".into(),
            ..fixtures::recovery()
        };
        for (base, expected) in [
            (
                "https://api.eu.opsgenie.com",
                "https://api.eu.opsgenie.com/v2/alerts/a%2Fb%20%3Fc/close?identifierType=alias",
            ),
            (
                "https://proxy.example/opsgenie/",
                "https://proxy.example/opsgenie/v2/alerts/a%2Fb%20%3Fc/close?identifierType=alias",
            ),
        ] {
            let url = render(&odd).url(&Url::parse(base).unwrap());
            assert_eq!(url.as_str(), expected);
        }
        let url = render(&fixtures::failure()).url(&Url::parse(DEFAULT_URL).unwrap());
        assert_eq!(url.as_str(), "https://api.opsgenie.com/v2/alerts");
    }

    #[test]
    fn a_test_is_p5_and_long_texts_are_cut() {
        let test = Alert {
            event: Event::Test,
            severity: Severity::Ok,
            ..fixtures::failure()
        };
        assert_eq!(render(&test).body["priority"], "P5");
        let long = Alert {
            summary: "x".repeat(20_000),
            agent: "a".repeat(200),
            ..fixtures::failure()
        };
        let body = render(&long).body;
        let chars = |v: &Value| v.as_str().unwrap().chars().count();
        assert_eq!(chars(&body["message"]), MESSAGE_CHARS);
        assert_eq!(chars(&body["description"]), DESCRIPTION_CHARS);
        assert_eq!(chars(&body["source"]), SOURCE_CHARS);
        assert_eq!(chars(&body["details"]["Reason"]), DETAIL_CHARS);
    }

    // --- delivery against a real local receiver ---

    fn opsgenie(base: &str) -> Opsgenie {
        let spec = OpsgenieSpec {
            key: KEY.into(),
            url: Url::parse(base).unwrap(),
        };
        Opsgenie::new(spec, crate::delivery_client().unwrap())
    }

    /// What Opsgenie answers a request it accepted.
    fn accepted() -> Response {
        Response::status(202).body(
            r#"{"result":"Request will be processed","took":0.302,"requestId":"43a29c5c-3dbf-4fa4-9c26-f4f71023e120"}"#,
        )
    }

    #[tokio::test]
    async fn creates_then_closes_by_alias() {
        let server = Server::start(|_| accepted()).await;
        let base = server.url("");
        for alert in [fixtures::failure(), fixtures::recovery()] {
            opsgenie(&base).send(&alert).await.unwrap();
        }
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/v2/alerts",
                "/v2/alerts/api-20260329T001502Z/close?identifierType=alias"
            ]
        );
        for (request, alert) in requests
            .iter()
            .zip([fixtures::failure(), fixtures::recovery()])
        {
            assert_eq!(request.method, "POST");
            assert_eq!(request.header("content-type"), Some("application/json"));
            let auth = format!("GenieKey {KEY}");
            assert_eq!(request.header("authorization"), Some(auth.as_str()));
            assert_eq!(request.json(), render(&alert).body);
        }
    }

    #[tokio::test]
    async fn answers_are_classified_without_showing_the_key() {
        let cases = [
            (
                Response::status(401).body(format!(
                    r#"{{"message":"Could not authenticate: GenieKey {KEY}","took":0.0}}"#
                )),
                DeliveryError::Reject {
                    reason: "HTTP 401 Unauthorized: {\"message\":\"Could not authenticate: \
                             GenieKey ***\",\"took\":0.0}"
                        .into(),
                },
            ),
            (
                Response::status(422).body(r#"{"message":"Request body is not processable"}"#),
                DeliveryError::Reject {
                    reason: "HTTP 422 Unprocessable Entity: {\"message\":\"Request body is not \
                             processable\"}"
                        .into(),
                },
            ),
            (
                Response::status(429).header("Retry-After", "5"),
                DeliveryError::Retry {
                    reason: "HTTP 429 Too Many Requests".into(),
                    after: Some(Duration::from_secs(5)),
                },
            ),
            (
                Response::status(503),
                DeliveryError::Retry {
                    reason: "HTTP 503 Service Unavailable".into(),
                    after: None,
                },
            ),
        ];
        for (response, expected) in cases {
            let server = Server::start(move |_| response.clone()).await;
            let error = opsgenie(&server.url(""))
                .send(&fixtures::failure())
                .await
                .unwrap_err();
            assert_eq!(error, expected);
            assert!(!format!("{error:?}").contains(KEY));
        }
    }

    #[tokio::test]
    async fn a_hanging_api_times_out_and_is_retried() {
        let server = Server::start(|_| accepted().delay(Duration::from_secs(30))).await;
        let error = opsgenie(&server.url(""))
            .with_timeout(Duration::from_millis(200))
            .send(&fixtures::recovery())
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
