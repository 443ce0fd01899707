//! The `alertmanager` channel: POSTs each alert to `/api/v2/alerts` of every configured
//! Prometheus Alertmanager (a cluster deduplicates, and gossips what one replica took to
//! the others, so one replica taking it is a delivery). Owns its config (`urls`,
//! `ca_file`), the pure [`render`] of an alert into Alertmanager's `postableAlerts`, and
//! [`Alertmanager::send`].
//!
//! Alertmanager tells alerts apart by their labels, and klaxon's carry the severity (for
//! routing). So an update also resolves the alert at the severity it left, and a
//! recovery resolves both severities: whichever was firing ends, and resolving one that
//! never fired notifies nobody.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, SecondsFormat};
use klaxon_config_core::{SecretKey, Seg};
use serde::Deserialize;
use serde_json::{Value, json};
use toml::Spanned;
use url::Url;

use crate::http::HttpShell;
use crate::validate::{self, ConfigIssue};
use crate::{Alert, BuildError, Channel, DeliveryError, Event, NotifierPlugin, Severity, text};

/// The `alertname` label of every job alert.
pub const ALERT_NAME: &str = "KlaxonJobFailed";
/// The `alertname` label of `klaxon notify test`.
pub const TEST_ALERT_NAME: &str = "KlaxonTest";

/// The raw `[notifiers.NAME]` table of `type = "alertmanager"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    urls: Spanned<Vec<Spanned<String>>>,
    ca_file: Option<Spanned<String>>,
    resend_every: Option<Spanned<String>>,
}

/// How often a firing alert is posted again when the config does not say: Alertmanager
/// resolves an alert it has not heard of for its `resolve_timeout` (5 minutes by
/// default), and Prometheus re-sends every minute for the same reason.
pub const DEFAULT_RESEND_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl NotifierPlugin for AlertmanagerConfig {
    type Spec = AlertmanagerSpec;
    type Channel = Alertmanager;

    const SECRET_KEYS: &'static [SecretKey] = &[SecretKey::url(&[Seg::Key("urls"), Seg::Item])];

    fn build(
        spec: &AlertmanagerSpec,
        client: &reqwest::Client,
    ) -> Result<Alertmanager, BuildError> {
        Alertmanager::new(spec.clone(), client)
    }

    /// Alertmanager resolves an alert it has not heard of for its `resolve_timeout`.
    fn resend_every(spec: &AlertmanagerSpec) -> Option<Duration> {
        Some(spec.resend_every)
    }

    /// Checks that there is at least one URL and that each is `http` or `https`, pushing
    /// every problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<AlertmanagerSpec> {
        if self.urls.get_ref().is_empty() {
            issues.push(ConfigIssue::new(
                self.urls.span(),
                "`urls` must list at least one Alertmanager URL",
            ));
        }
        let urls: Vec<Option<Url>> = self
            .urls
            .get_ref()
            .iter()
            .map(|url| validate::http_url(url, "urls", issues))
            .collect();
        let ca_file = validate::ca_file(self.ca_file, issues);
        let resend_every = match &self.resend_every {
            Some(d) => validate::positive_duration(d, "resend_every", issues),
            None => Some(DEFAULT_RESEND_EVERY),
        };
        let urls: Vec<Url> = urls.into_iter().collect::<Option<_>>()?;
        if urls.is_empty() {
            return None;
        }
        Some(AlertmanagerSpec {
            urls,
            ca_file: ca_file?,
            resend_every: resend_every?,
        })
    }
}

/// A validated `alertmanager` notifier.
#[derive(Debug, Clone)]
pub struct AlertmanagerSpec {
    /// At least one base URL, e.g. `http://127.0.0.1:9093`.
    pub urls: Vec<Url>,
    /// An extra trusted CA (PEM), as written; read when the client is built.
    pub ca_file: Option<PathBuf>,
    /// How often the agent posts a firing alert again, so Alertmanager keeps it firing.
    pub resend_every: std::time::Duration,
}

/// Renders an alert as Alertmanager's `postableAlerts`: a JSON array of alerts, each with
/// `labels` (`alertname` [`ALERT_NAME`], `job`, `agent`, `severity` `warning` or
/// `critical`), `annotations` (`summary`: [`text::title`], `description`:
/// [`text::render_text`]), `startsAt` (when the job started failing) and, for an alert
/// that ends, `endsAt` (when that was observed: the run's start plus its elapsed time).
///
/// A failure or reminder is one firing alert. An update is the firing alert at its new
/// severity and the other severity's ended. A recovery ends both severities. A test is a
/// firing [`TEST_ALERT_NAME`] (Alertmanager resolves it after its `resolve_timeout`).
pub fn render(alert: &Alert) -> Value {
    let starts_at = rfc3339(&alert.failing_since.unwrap_or(alert.started_at));
    let observed = alert.started_at
        + chrono::Duration::milliseconds(i64::try_from(alert.elapsed_ms).unwrap_or(i64::MAX));
    let ends_at = rfc3339(&observed);
    let one = |name: &str, severity: &str, ends_at: Option<&str>| {
        let mut entry = json!({
            "labels": {
                "alertname": name,
                "job": alert.job,
                "agent": alert.agent,
                "severity": severity,
            },
            "annotations": {
                "summary": text::title(alert),
                "description": text::render_text(alert),
            },
            "startsAt": starts_at,
        });
        if let (Some(ends_at), Value::Object(map)) = (ends_at, &mut entry) {
            map.insert("endsAt".into(), ends_at.into());
        }
        entry
    };
    let firing = label(alert.severity);
    let other = if firing == "critical" {
        "warning"
    } else {
        "critical"
    };
    Value::Array(match alert.event {
        Event::Failure | Event::Reminder => vec![one(ALERT_NAME, firing, None)],
        Event::Update => vec![
            one(ALERT_NAME, firing, None),
            one(ALERT_NAME, other, Some(&ends_at)),
        ],
        Event::Recovery => vec![
            one(ALERT_NAME, "critical", Some(&ends_at)),
            one(ALERT_NAME, "warning", Some(&ends_at)),
        ],
        Event::Test => vec![one(TEST_ALERT_NAME, "warning", None)],
    })
}

/// The `severity` label: `warning`, or `critical` for anything worse (or unknown).
fn label(severity: Severity) -> &'static str {
    match severity {
        Severity::Warning => "warning",
        Severity::Ok | Severity::Critical | Severity::Unknown => "critical",
    }
}

fn rfc3339(at: &DateTime<FixedOffset>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `scheme://host:port` of a URL: enough to tell which Alertmanager failed, never a
/// path, query or user info that may hold a credential.
fn origin(url: &Url) -> String {
    format!("{}://{}", url.scheme(), host_port(url))
}

/// `host:port` of a URL: how a replica is named in logs and metrics, never with a path,
/// query or user info that may hold a credential.
fn host_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// `BASE/api/v2/alerts`, keeping a path prefix the base may have.
fn endpoint(base: &Url) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(["api", "v2", "alerts"]);
    }
    url
}

/// An `alertmanager` notifier ready to send.
#[derive(Debug)]
pub struct Alertmanager {
    spec: AlertmanagerSpec,
    http: HttpShell,
}

impl Alertmanager {
    /// How long one delivery may take, answers included (all URLs are tried at once).
    pub const TIMEOUT: Duration = Duration::from_secs(10);

    /// A notifier posting through `client` (the agent's shared HTTP client), or through
    /// a client of its own that also trusts `ca_file`. Fails with
    /// [`BuildError::Setup`] when that file cannot be read or holds no certificate.
    pub fn new(spec: AlertmanagerSpec, client: &reqwest::Client) -> Result<Self, BuildError> {
        let http = HttpShell::new(client, spec.ca_file.as_deref(), Self::TIMEOUT)?;
        Ok(Self { spec, http })
    }

    /// The same notifier with another delivery deadline than [`Alertmanager::TIMEOUT`].
    pub fn with_timeout(self, timeout: Duration) -> Self {
        let http = self.http.with_timeout(timeout);
        Self { http, ..self }
    }

    /// POSTs [`render`]'s JSON to `/api/v2/alerts` of every URL at once, as Prometheus
    /// does: delivered when at least one replica took it (2xx), since the replicas of a
    /// cluster gossip alerts to each other. Every replica that did not is in
    /// [`Posted::failed`], whether or not another took it.
    ///
    /// When none took it, each failure is named by its position and
    /// `scheme://host:port` (``alertmanager 2 of 2 (`http://10.0.0.7:9093`): HTTP 500 …``)
    /// and the whole is [`DeliveryError::Retry`] when any failure is worth a retry
    /// (honouring the longest `Retry-After`), [`DeliveryError::Reject`] when every
    /// replica refused it.
    pub async fn post(&self, alert: &Alert) -> Posted {
        let body = render(alert).to_string().into_bytes();
        // Spawned at once, awaited in order: the posts run side by side, and a task
        // that panicked is still known by its replica.
        let posts: Vec<_> = self
            .spec
            .urls
            .iter()
            .map(|base| {
                let (http, body) = (self.http.clone(), body.clone());
                let url = endpoint(base);
                tokio::spawn(async move { http.post_json(url, body).await })
            })
            .collect();
        let mut accepted = 0;
        let mut failures = Vec::new();
        for (index, post) in posts.into_iter().enumerate() {
            let error = match post.await {
                Ok(Ok(())) => {
                    accepted += 1;
                    continue;
                }
                Ok(Err(error)) => error,
                // Only a panic in the HTTP stack: treat it like a lost connection.
                Err(e) => DeliveryError::Retry {
                    reason: format!("delivery task failed: {e}"),
                    after: None,
                },
            };
            failures.push((index, error));
        }
        let result = if accepted > 0 {
            Ok(())
        } else {
            Err(self.none_took_it(&failures))
        };
        Posted {
            result,
            failed: failures
                .into_iter()
                .map(|(index, error)| ReplicaFailure {
                    replica: self.spec.urls.get(index).map(host_port).unwrap_or_default(),
                    error,
                })
                .collect(),
        }
    }

    /// The error of a delivery that no replica took, from each replica's failure.
    fn none_took_it(&self, failures: &[(usize, DeliveryError)]) -> DeliveryError {
        let total = self.spec.urls.len();
        let retry = failures
            .iter()
            .any(|(_, e)| matches!(e, DeliveryError::Retry { .. }));
        let after = failures
            .iter()
            .filter_map(|(_, e)| match e {
                DeliveryError::Retry { after, .. } => *after,
                DeliveryError::Reject { .. } => None,
            })
            .max();
        let reason = failures
            .iter()
            .map(|(index, error)| match self.spec.urls.get(*index) {
                Some(base) => format!(
                    "alertmanager {} of {total} (`{}`): {error}",
                    index + 1,
                    origin(base)
                ),
                None => error.to_string(),
            })
            .collect::<Vec<_>>()
            .join("; ");
        if retry {
            DeliveryError::Retry { reason, after }
        } else {
            DeliveryError::Reject { reason }
        }
    }
}

impl Channel for Alertmanager {
    /// POSTs [`render`]'s JSON to `/api/v2/alerts` of every URL at once; see
    /// [`Alertmanager::post`] for when that counts as delivered.
    async fn send(&self, alert: &Alert) -> Result<(), DeliveryError> {
        self.post(alert).await.result
    }

    async fn send_to_replicas(&self, alert: &Alert) -> Posted {
        self.post(alert).await
    }
}

/// How one [`Alertmanager::post`] went.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    /// Delivered when at least one replica took the alert.
    pub result: Result<(), DeliveryError>,
    /// Every replica that did not take it, in the order of `urls`.
    pub failed: Vec<ReplicaFailure>,
}

/// One replica that did not take an alert.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaFailure {
    /// The replica's `host:port` (never a path, query or user info).
    pub replica: String,
    /// Why it did not take it.
    pub error: DeliveryError,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fixtures::{self, span_of};
    use klaxon_testkit::{Response, Server};

    fn validate(toml: &str) -> (Option<AlertmanagerSpec>, Vec<ConfigIssue>) {
        fixtures::validated::<AlertmanagerConfig>(toml)
    }

    #[test]
    fn accepts_the_spec_example() {
        let (spec, issues) =
            validate("urls = [\"http://127.0.0.1:9093\", \"https://am.example.com\"]");
        assert_eq!(issues, []);
        let urls: Vec<String> = spec.unwrap().urls.iter().map(Url::to_string).collect();
        assert_eq!(urls, ["http://127.0.0.1:9093/", "https://am.example.com/"]);
    }

    #[test]
    fn collects_every_problem() {
        let toml =
            "urls = [\"http://ok:9093\", \"am:9093\", \"unix:///run/am.sock\"]\nca_file = \" \"";
        let (spec, issues) = validate(toml);
        assert!(spec.is_none());
        assert_eq!(
            issues,
            [
                ConfigIssue::new(
                    span_of(toml, "\"am:9093\""),
                    "`urls`: expected an `http` or `https` URL, found `am:9093`"
                ),
                ConfigIssue::new(
                    span_of(toml, "\"unix:///run/am.sock\""),
                    "`urls`: expected an `http` or `https` URL, found `unix:///run/am.sock`"
                ),
                ConfigIssue::new(span_of(toml, "\" \""), "`ca_file` must not be empty"),
            ]
        );
        let toml = "urls = []";
        assert_eq!(
            validate(toml).1,
            [ConfigIssue::new(
                span_of(toml, "[]"),
                "`urls` must list at least one Alertmanager URL"
            )]
        );
    }

    #[test]
    fn rejects_unknown_keys() {
        let error = toml::from_str::<AlertmanagerConfig>("url = \"http://x\"").unwrap_err();
        assert!(
            error.message().starts_with("unknown field `url`"),
            "{error}"
        );
    }

    // --- rendering ---

    fn labels(severity: &str) -> Value {
        json!({
            "alertname": "KlaxonJobFailed",
            "job": "api",
            "agent": "macbook",
            "severity": severity,
        })
    }

    #[test]
    fn renders_a_failure() {
        assert_eq!(
            render(&fixtures::failure()),
            json!([{
                "labels": labels("critical"),
                "annotations": {
                    "summary": "DOWN api on macbook: HTTP 503 Service Unavailable",
                    "description": "DOWN api on macbook: HTTP 503 Service Unavailable\n\
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
                },
                "startsAt": "2026-03-29T10:15:02+11:00",
            }])
        );
    }

    #[test]
    fn renders_a_reminder_as_the_same_alert() {
        let reminder = render(&fixtures::reminder());
        let failure = render(&fixtures::failure());
        assert_eq!(reminder[0]["labels"], failure[0]["labels"]);
        assert_eq!(
            reminder,
            json!([{
                "labels": labels("critical"),
                "annotations": {
                    "summary": "STILL DOWN api on macbook: HTTP 503 Service Unavailable",
                    "description": "STILL DOWN api on macbook: HTTP 503 Service Unavailable\n\
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
                },
                "startsAt": "2026-03-29T10:15:02+11:00",
            }])
        );
    }

    #[test]
    fn renders_an_update_ending_the_other_severity() {
        let annotations = json!({
            "summary": "CHANGED api on macbook is now warning: latency 2.4s > 2s",
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
        });
        assert_eq!(
            render(&fixtures::update()),
            json!([
                {
                    "labels": labels("warning"),
                    "annotations": annotations,
                    "startsAt": "2026-03-29T10:15:02+11:00",
                },
                {
                    "labels": labels("critical"),
                    "annotations": annotations,
                    "startsAt": "2026-03-29T10:15:02+11:00",
                    "endsAt": "2026-03-29T10:35:02.412+11:00",
                },
            ])
        );
    }

    #[test]
    fn renders_a_recovery_ending_both_severities() {
        let annotations = json!({
            "summary": "RECOVERED api on macbook after 1h 5m",
            "description": "RECOVERED api on macbook after 1h 5m\n\
                            Severity: ok\n\
                            Check: http https://api.example.com/health\n\
                            Reason: HTTP 200 OK\n\
                            Attempts: 1 of 3\n\
                            Elapsed: 180ms\n\
                            Failing since: 2026-03-29 10:15:02 +11:00\n\
                            Next run: 2026-03-29 11:25:00 +11:00\n\
                            Downtime: 1h 5m\n\
                            Alert: api-20260329T001502Z",
        });
        let ended = |severity: &str| {
            json!({
                "labels": labels(severity),
                "annotations": annotations,
                "startsAt": "2026-03-29T10:15:02+11:00",
                "endsAt": "2026-03-29T11:20:01.180+11:00",
            })
        };
        assert_eq!(
            render(&fixtures::recovery()),
            json!([ended("critical"), ended("warning")])
        );
    }

    #[test]
    fn warnings_and_tests() {
        let warning = Alert {
            severity: Severity::Warning,
            ..fixtures::failure()
        };
        assert_eq!(render(&warning)[0]["labels"], labels("warning"));
        let unknown = Alert {
            severity: Severity::Unknown,
            ..fixtures::failure()
        };
        assert_eq!(render(&unknown)[0]["labels"], labels("critical"));
        let test = Alert {
            event: Event::Test,
            failing_since: None,
            ..fixtures::failure()
        };
        let rendered = render(&test);
        assert_eq!(rendered.as_array().map(Vec::len), Some(1));
        assert_eq!(rendered[0]["labels"]["alertname"], "KlaxonTest");
        assert_eq!(rendered[0]["startsAt"], "2026-03-29T10:15:02+11:00");
        assert_eq!(rendered[0].get("endsAt"), None);
    }

    #[test]
    fn endpoints_and_origins() {
        let cases = [
            (
                "http://127.0.0.1:9093",
                "http://127.0.0.1:9093/api/v2/alerts",
                "http://127.0.0.1:9093",
            ),
            (
                "https://am.example.com/",
                "https://am.example.com/api/v2/alerts",
                "https://am.example.com:443",
            ),
            (
                "https://user:SECRET@am.example.com/prefix/?token=SECRET",
                "https://user:SECRET@am.example.com/prefix/api/v2/alerts?token=SECRET",
                "https://am.example.com:443",
            ),
            (
                "http://[::1]:9093/am",
                "http://[::1]:9093/am/api/v2/alerts",
                "http://[::1]:9093",
            ),
        ];
        for (base, expected, shown) in cases {
            let base = Url::parse(base).unwrap();
            assert_eq!(endpoint(&base).as_str(), expected);
            assert_eq!(origin(&base), shown);
        }
    }

    // --- delivery against real local receivers ---

    fn alertmanager(urls: &[String]) -> Alertmanager {
        let spec = AlertmanagerSpec {
            urls: urls.iter().map(|u| Url::parse(u).unwrap()).collect(),
            ca_file: None,
            resend_every: DEFAULT_RESEND_EVERY,
        };
        Alertmanager::new(spec, &reqwest::Client::new()).unwrap()
    }

    #[tokio::test]
    async fn every_alertmanager_gets_the_alert() {
        let first = Server::start(|_| Response::ok("")).await;
        let second = Server::start(|_| Response::ok("")).await;
        let alert = fixtures::failure();
        alertmanager(&[first.url(""), second.url("/prefix/")])
            .send(&alert)
            .await
            .unwrap();
        for (server, path) in [
            (&first, "/api/v2/alerts"),
            (&second, "/prefix/api/v2/alerts"),
        ] {
            let requests = server.requests();
            assert_eq!(requests.len(), 1);
            assert_eq!(requests[0].method, "POST");
            assert_eq!(requests[0].path, path);
            assert_eq!(requests[0].header("content-type"), Some("application/json"));
            assert_eq!(requests[0].json(), render(&alert));
        }
    }

    #[tokio::test]
    async fn one_replica_taking_it_is_a_delivery_and_the_others_are_named() {
        let good = Server::start(|_| Response::ok("")).await;
        let bad = Server::start(|_| {
            Response::status(500)
                .header("Retry-After", "4")
                .body("cluster not ready")
        })
        .await;
        let dead = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let bad_url = bad.url("/").replace("127.0.0.1", "user:SECRET@127.0.0.1") + "?t=SECRET";
        let posted = alertmanager(&[
            good.url(""),
            bad_url,
            format!("http://{dead}/SECRET-prefix/"),
        ])
        .post(&fixtures::failure())
        .await;
        assert_eq!(posted.result, Ok(()));
        let failed: Vec<(&str, bool)> = posted
            .failed
            .iter()
            .map(|f| {
                (
                    f.replica.as_str(),
                    matches!(f.error, DeliveryError::Retry { .. }),
                )
            })
            .collect();
        let (bad_addr, dead_addr) = (bad.addr().to_string(), dead.to_string());
        assert_eq!(
            failed,
            [(bad_addr.as_str(), true), (dead_addr.as_str(), true)]
        );
        assert_eq!(
            posted.failed[0].error,
            DeliveryError::Retry {
                reason: "HTTP 500 Internal Server Error: cluster not ready".into(),
                after: Some(Duration::from_secs(4)),
            }
        );
        assert!(!format!("{posted:?}").contains("SECRET"), "{posted:?}");
        // Every replica was tried once, the password sent to the one that has it.
        assert_eq!(good.requests().len(), 1);
        assert_eq!(bad.requests().len(), 1);
        assert_eq!(
            bad.requests()[0].header("authorization"),
            Some("Basic dXNlcjpTRUNSRVQ=")
        );
    }

    #[tokio::test]
    async fn no_replica_taking_it_means_a_retry_after_the_longest_wait() {
        let soon = Server::start(|_| Response::status(503).header("Retry-After", "2")).await;
        let later = Server::start(|_| Response::status(429).header("Retry-After", "7")).await;
        let am = alertmanager(&[soon.url(""), later.url("")]);
        let posted = am.post(&fixtures::failure()).await;
        assert_eq!(
            posted.result,
            Err(DeliveryError::Retry {
                reason: format!(
                    "alertmanager 1 of 2 (`http://{}`): HTTP 503 Service Unavailable; \
                     alertmanager 2 of 2 (`http://{}`): HTTP 429 Too Many Requests",
                    soon.addr(),
                    later.addr()
                ),
                after: Some(Duration::from_secs(7)),
            })
        );
        assert_eq!(posted.failed.len(), 2);
        assert_eq!(am.send(&fixtures::failure()).await, posted.result);
    }

    #[tokio::test]
    async fn refusals_everywhere_are_rejected_and_any_retry_wins() {
        let refusing = Server::start(|_| Response::status(400).body("bad alert")).await;
        let error = alertmanager(&[refusing.url("")])
            .send(&fixtures::failure())
            .await
            .unwrap_err();
        assert_eq!(
            error,
            DeliveryError::Reject {
                reason: format!(
                    "alertmanager 1 of 1 (`http://{}`): HTTP 400 Bad Request: bad alert",
                    refusing.addr()
                ),
            }
        );
        let down = Server::start(|_| Response::status(503)).await;
        let error = alertmanager(&[refusing.url(""), down.url("")])
            .send(&fixtures::failure())
            .await
            .unwrap_err();
        assert_eq!(
            error,
            DeliveryError::Retry {
                reason: format!(
                    "alertmanager 1 of 2 (`http://{}`): HTTP 400 Bad Request: bad alert; \
                     alertmanager 2 of 2 (`http://{}`): HTTP 503 Service Unavailable",
                    refusing.addr(),
                    down.addr()
                ),
                after: None,
            }
        );
    }

    #[tokio::test]
    async fn a_hanging_alertmanager_times_out() {
        let hanging = Server::start(|_| Response::ok("").delay(Duration::from_secs(30))).await;
        let error = alertmanager(&[hanging.url("")])
            .with_timeout(Duration::from_millis(200))
            .send(&fixtures::failure())
            .await
            .unwrap_err();
        assert_eq!(
            error,
            DeliveryError::Retry {
                reason: format!(
                    "alertmanager 1 of 1 (`http://{}`): no answer within 200ms",
                    hanging.addr()
                ),
                after: None,
            }
        );
    }
}
