//! klaxon's notification channels. One module per channel owns its raw config struct,
//! its validated spec, a pure `render` of an [`Alert`] into the channel's payload, and a
//! `send` that delivers it; this root holds the closed enums that dispatch with `match`.
//!
//! Several messages for one person-read channel go out as one digest
//! ([`Notifier::send_digest`]), each channel's `render_digest` apart from its send.
//! The wording every channel shares lives in [`text`]. Delivery failures are classified
//! ([`DeliveryError::Retry`] or [`DeliveryError::Reject`]) so the caller can decide
//! whether to try again; nothing here retries on its own.

pub mod alertmanager;
pub mod command;
pub mod email;
#[cfg(test)]
mod fixtures;
mod http;
pub mod log;
pub mod rfc3339;
pub mod slack;
pub mod teams;
pub mod text;
mod validate;
pub mod webhook;

use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

pub use http::{delivery_client, post_text};
pub use validate::ConfigIssue;

/// The severity an alert reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
            Severity::Unknown => "unknown",
        }
    }
}

/// Why a message is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// An alert opened.
    Failure,
    /// An open alert changed between warning and critical.
    Update,
    /// An open alert is still open.
    Reminder,
    /// An open alert closed.
    Recovery,
    /// `klaxon notify test`.
    Test,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Failure => "failure",
            Event::Update => "update",
            Event::Reminder => "reminder",
            Event::Recovery => "recovery",
            Event::Test => "test",
        }
    }
}

/// What was checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckInfo {
    /// The check type: `http`, `script`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The URL, command, host:port, … (never a secret).
    pub target: String,
}

/// One message about one job: the JSON of SPEC.md "Messages", field for field. The
/// `webhook` and `command` channels send exactly this; the others render it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Always 1.
    pub version: u32,
    pub event: Event,
    pub job: String,
    pub agent: String,
    pub severity: Severity,
    pub check: CheckInfo,
    pub summary: String,
    /// A script's last lines of output, a response body's start; `None` when empty.
    pub output: Option<String>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub elapsed_ms: u64,
    /// When the run that caused this message started.
    #[serde(with = "rfc3339")]
    pub started_at: DateTime<FixedOffset>,
    #[serde(with = "rfc3339::option", default)]
    pub failing_since: Option<DateTime<FixedOffset>>,
    #[serde(with = "rfc3339::option", default)]
    pub last_success: Option<DateTime<FixedOffset>>,
    #[serde(with = "rfc3339::option", default)]
    pub next_run: Option<DateTime<FixedOffset>>,
    /// On recovery: how long the job was failing.
    pub downtime_ms: Option<u64>,
    /// Stable id of the alert this message belongs to (failure, reminders, updates and
    /// recovery of one outage share it); stays the same across redeliveries.
    pub id: String,
}

/// The raw `[notifiers.NAME]` table, less the keys every notifier shares (`type`,
/// `fallback`, `fallback_after`, `min_severity`), which the agent handles.
#[derive(Debug)]
pub enum NotifierConfig {
    Slack(slack::SlackConfig),
    Teams(teams::TeamsConfig),
    Email(email::EmailConfig),
    Webhook(webhook::WebhookConfig),
    Alertmanager(alertmanager::AlertmanagerConfig),
    Command(command::CommandConfig),
    Log(log::LogConfig),
}

impl NotifierConfig {
    /// The values `type` may take.
    pub const TYPES: &'static [&'static str] = &[
        "slack",
        "teams",
        "email",
        "webhook",
        "alertmanager",
        "command",
        "log",
    ];

    /// Deserializes the rest of a notifier table whose `type` is `kind`.
    pub fn deserialize<'de, D>(kind: &str, de: D) -> Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        use serde::de::Error;
        Ok(match kind {
            "slack" => NotifierConfig::Slack(Deserialize::deserialize(de)?),
            "teams" => NotifierConfig::Teams(Deserialize::deserialize(de)?),
            "email" => NotifierConfig::Email(Deserialize::deserialize(de)?),
            "webhook" => NotifierConfig::Webhook(Deserialize::deserialize(de)?),
            "alertmanager" => NotifierConfig::Alertmanager(Deserialize::deserialize(de)?),
            "command" => NotifierConfig::Command(Deserialize::deserialize(de)?),
            "log" => NotifierConfig::Log(Deserialize::deserialize(de)?),
            other => return Err(D::Error::unknown_variant(other, Self::TYPES)),
        })
    }

    /// Turns the raw table into typed settings, pushing every problem to `issues`.
    /// Returns `None` when there was at least one.
    pub fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<NotifierSpec> {
        let before = issues.len();
        let spec = match self {
            NotifierConfig::Slack(c) => c.validate(issues).map(NotifierSpec::Slack),
            NotifierConfig::Teams(c) => c.validate(issues).map(NotifierSpec::Teams),
            NotifierConfig::Email(c) => c.validate(issues).map(NotifierSpec::Email),
            NotifierConfig::Webhook(c) => c.validate(issues).map(NotifierSpec::Webhook),
            NotifierConfig::Alertmanager(c) => c.validate(issues).map(NotifierSpec::Alertmanager),
            NotifierConfig::Command(c) => c.validate(issues).map(NotifierSpec::Command),
            NotifierConfig::Log(c) => c.validate(issues).map(NotifierSpec::Log),
        };
        if issues.len() > before { None } else { spec }
    }
}

/// A validated notifier: typed values (secrets in redacting types), nothing connected.
#[derive(Debug, Clone)]
pub enum NotifierSpec {
    Slack(slack::SlackSpec),
    Teams(teams::TeamsSpec),
    Email(email::EmailSpec),
    Webhook(webhook::WebhookSpec),
    Alertmanager(alertmanager::AlertmanagerSpec),
    Command(command::CommandSpec),
    Log(log::LogSpec),
}

impl NotifierSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            NotifierSpec::Slack(_) => "slack",
            NotifierSpec::Teams(_) => "teams",
            NotifierSpec::Email(_) => "email",
            NotifierSpec::Webhook(_) => "webhook",
            NotifierSpec::Alertmanager(_) => "alertmanager",
            NotifierSpec::Command(_) => "command",
            NotifierSpec::Log(_) => "log",
        }
    }

    /// The least time between two messages to this notifier, for channels whose
    /// receiver limits the rate: Slack's incoming webhooks take one message a second.
    pub fn min_interval(&self) -> Option<std::time::Duration> {
        match self {
            NotifierSpec::Slack(_) => Some(std::time::Duration::from_secs(1)),
            _ => None,
        }
    }

    /// How often a firing alert is posted again, for receivers that forget an alert
    /// that is not repeated: Alertmanager resolves it after its `resolve_timeout`.
    pub fn resend_every(&self) -> Option<std::time::Duration> {
        match self {
            NotifierSpec::Alertmanager(s) => Some(s.resend_every),
            _ => None,
        }
    }
}

/// Why a notifier could not be built from a valid spec.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// What the notifier needs beside its spec cannot be had: its `ca_file` cannot be
    /// read or holds no certificate, or its own HTTP client cannot be set up.
    #[error("{0}")]
    Setup(String),
}

/// Why a delivery failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth another try: timeouts, connection errors, 408, 429, 5xx. `after` is the
    /// receiver's own `Retry-After`, when it gave one.
    #[error("{reason}")]
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Trying again will not help: other 4xx, a payload the receiver refuses.
    #[error("{reason}")]
    Reject { reason: String },
}

/// A notifier ready to send.
#[derive(Debug)]
pub enum Notifier {
    Slack(slack::Slack),
    Teams(teams::Teams),
    // Boxed: lettre's transport makes it several times the size of the others.
    Email(Box<email::Email>),
    Webhook(webhook::Webhook),
    Alertmanager(alertmanager::Alertmanager),
    Command(command::Command),
    Log(log::Log),
}

impl Notifier {
    /// Builds the runtime for a spec. `client` is the agent's [`delivery_client`], which
    /// follows no redirects (a 3xx is a rejection, not a delivery); a
    /// notifier with its own `ca_file` builds a client (or, for email, TLS settings) of
    /// its own, and fails with [`BuildError::Setup`] when that file cannot be read or
    /// holds no certificate.
    pub fn build(spec: &NotifierSpec, client: &reqwest::Client) -> Result<Notifier, BuildError> {
        Ok(match spec {
            NotifierSpec::Slack(s) => Notifier::Slack(slack::Slack::new(s.clone(), client.clone())),
            NotifierSpec::Teams(s) => Notifier::Teams(teams::Teams::new(s.clone(), client.clone())),
            NotifierSpec::Webhook(s) => {
                Notifier::Webhook(webhook::Webhook::new(s.clone(), client)?)
            }
            NotifierSpec::Alertmanager(s) => {
                Notifier::Alertmanager(alertmanager::Alertmanager::new(s.clone(), client)?)
            }
            NotifierSpec::Command(s) => Notifier::Command(command::Command::new(s.clone())),
            NotifierSpec::Log(s) => Notifier::Log(log::Log::new(s.clone())),
            NotifierSpec::Email(s) => Notifier::Email(Box::new(email::Email::new(s.clone())?)),
        })
    }

    /// Whether this channel merges several messages into one digest: the channels a
    /// person reads (slack, teams, email, log). Machine channels (webhook, alertmanager,
    /// command) take each message on its own, and the agent sends them one by one.
    pub fn merges(&self) -> bool {
        match self {
            Notifier::Slack(_) | Notifier::Teams(_) | Notifier::Email(_) | Notifier::Log(_) => true,
            Notifier::Webhook(_) | Notifier::Alertmanager(_) | Notifier::Command(_) => false,
        }
    }

    /// Delivers several messages as one digest that names every job ([`text`] words it;
    /// each channel's `render_digest` lays it out within its limits). With one message
    /// it is [`Notifier::send`]; with none it sends nothing. A channel that does not
    /// [merge](Notifier::merges) sends each message in turn and stops at the first
    /// error, which it returns. Never retries by itself; never logs a secret.
    pub async fn send_digest(&self, alerts: &[Alert]) -> Result<(), DeliveryError> {
        match alerts {
            [] => return Ok(()),
            [alert] => return self.send(alert).await,
            _ => {}
        }
        match self {
            Notifier::Slack(n) => n.send_digest(alerts).await,
            Notifier::Teams(n) => n.send_digest(alerts).await,
            Notifier::Email(n) => n.send_digest(alerts).await,
            Notifier::Log(n) => n.send_digest(alerts).await,
            Notifier::Webhook(_) | Notifier::Alertmanager(_) | Notifier::Command(_) => {
                for alert in alerts {
                    self.send(alert).await?;
                }
                Ok(())
            }
        }
    }

    /// [`Notifier::send`], also naming every replica of an Alertmanager cluster that
    /// did not take the message, even when another did and it counts as delivered (see
    /// [`alertmanager::Alertmanager::post`]). The other channels have no replicas.
    pub async fn send_to_replicas(&self, alert: &Alert) -> alertmanager::Posted {
        match self {
            Notifier::Alertmanager(n) => n.post(alert).await,
            _ => alertmanager::Posted {
                result: self.send(alert).await,
                failed: Vec::new(),
            },
        }
    }

    /// Delivers one message. Never retries by itself; never logs a secret.
    pub async fn send(&self, alert: &Alert) -> Result<(), DeliveryError> {
        match self {
            Notifier::Slack(n) => n.send(alert).await,
            Notifier::Teams(n) => n.send(alert).await,
            Notifier::Email(n) => n.send(alert).await,
            Notifier::Webhook(n) => n.send(alert).await,
            Notifier::Alertmanager(n) => n.send(alert).await,
            Notifier::Command(n) => n.send(alert).await,
            Notifier::Log(n) => n.send(alert).await,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use klaxon_testkit::{Response, Server};

    fn slack(url: &str) -> Notifier {
        let spec = slack::SlackSpec {
            webhook_url: url.into(),
        };
        Notifier::Slack(slack::Slack::new(spec, reqwest::Client::new()))
    }

    fn webhook(url: &str) -> Notifier {
        let spec = webhook::WebhookSpec {
            url: url.parse().unwrap(),
            secret: None,
            ca_file: None,
        };
        Notifier::Webhook(webhook::Webhook::new(spec, &reqwest::Client::new()).unwrap())
    }

    #[test]
    fn only_channels_a_person_reads_merge() {
        let merging: Vec<(&str, bool)> = [
            Notifier::Log(log::Log::new(log::LogSpec)),
            slack("https://hooks.example.com/x"),
            webhook("https://example.com/hook"),
            Notifier::Command(command::Command::new(command::CommandSpec {
                argv: vec!["true".into()],
                timeout: command::DEFAULT_TIMEOUT,
            })),
        ]
        .iter()
        .map(|n| (kind(n), n.merges()))
        .collect();
        assert_eq!(
            merging,
            [
                ("log", true),
                ("slack", true),
                ("webhook", false),
                ("command", false)
            ]
        );
    }

    fn kind(notifier: &Notifier) -> &'static str {
        match notifier {
            Notifier::Slack(_) => "slack",
            Notifier::Teams(_) => "teams",
            Notifier::Email(_) => "email",
            Notifier::Webhook(_) => "webhook",
            Notifier::Alertmanager(_) => "alertmanager",
            Notifier::Command(_) => "command",
            Notifier::Log(_) => "log",
        }
    }

    #[tokio::test]
    async fn a_merging_channel_sends_one_digest() {
        let server = Server::start(|_| Response::ok("ok")).await;
        let alerts = fixtures::digest();
        slack(&server.url("/hook"))
            .send_digest(&alerts)
            .await
            .unwrap();
        // One message is sent as itself, none not at all.
        slack(&server.url("/hook"))
            .send_digest(&alerts[..1])
            .await
            .unwrap();
        slack(&server.url("/hook")).send_digest(&[]).await.unwrap();
        let bodies: Vec<_> = server.requests().iter().map(|r| r.json()).collect();
        assert_eq!(
            bodies,
            [slack::render_digest(&alerts), slack::render(&alerts[0])]
        );
    }

    #[tokio::test]
    async fn other_channels_send_each_in_turn_and_stop_at_the_first_error() {
        let server = Server::start(|_| Response::status(204)).await;
        let alerts = fixtures::digest();
        webhook(&server.url("/hook"))
            .send_digest(&alerts)
            .await
            .unwrap();
        let bodies: Vec<Vec<u8>> = server.requests().into_iter().map(|r| r.body).collect();
        let expected: Vec<Vec<u8>> = alerts.iter().map(webhook::render).collect();
        assert_eq!(bodies, expected);

        let failing = Server::start(|_| Response::status(400).body("no")).await;
        let error = webhook(&failing.url("/hook"))
            .send_digest(&alerts)
            .await
            .unwrap_err();
        assert_eq!(
            error,
            DeliveryError::Reject {
                reason: "HTTP 400 Bad Request: no".into()
            }
        );
        assert_eq!(failing.requests().len(), 1);
    }
}
