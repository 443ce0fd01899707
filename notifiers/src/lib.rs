//! klaxon's notification channels. One module per channel owns its raw config struct
//! (implementing [`NotifierPlugin`]: validation, secret keys, pacing), its validated
//! spec, a pure `render` of an [`Alert`] into the channel's payload, and a runtime
//! implementing [`Channel`] that delivers it. This root registers each channel with one
//! line of `notifiers!` (see `plugin.rs`), which makes the one closed enum,
//! [`NotifierSpec`]: [`NotifierSpec::parse`] reads a table straight to the validated
//! spec, and [`Notifier::build`] makes the [`Notifier`] that sends, one struct whatever
//! the channel. The HTTP channels share one shell (`http.rs`): client, deadline,
//! `ca_file`, and the answer's classification.
//!
//! Several messages for one person-read channel go out as one digest
//! ([`Notifier::send_digest`]), each channel's `render_digest` apart from its send.
//! The wording every channel shares lives in [`text`]. Delivery failures are classified
//! ([`DeliveryError::Retry`] or [`DeliveryError::Reject`]) so the caller can decide
//! whether to try again; nothing here retries on its own. [`buttons`] are what a
//! message about an open alert may offer ("Acknowledge", "Silence 1h") on the channels
//! that can show them.

pub mod alertmanager;
pub mod buttons;
pub mod chat_hook;
pub mod command;
pub mod desktop;
pub mod discord;
pub mod email;
#[cfg(test)]
mod fixtures;
pub mod googlechat;
pub mod gotify;
mod http;
pub mod keyed;
pub mod log;
pub mod matrix;
pub mod mattermost;
pub mod ntfy;
pub mod opsgenie;
pub mod pagerduty;
#[macro_use]
mod plugin;
mod push;
pub mod pushover;
pub mod rfc3339;
pub mod slack;
pub mod teams;
pub mod telegram;
pub mod text;
mod validate;
pub mod webhook;

use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

pub use http::{delivery_client, post_text};
pub use klaxon_config_core::{ParseError, SecretKey};
pub use plugin::{Channel, Notifier, NotifierPlugin, Release};
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
    /// Who acknowledged the alert (`klaxon ack`), when, and why; `None` when nobody did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<Acknowledged>,
}

/// An acknowledgement of an alert, as messages carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acknowledged {
    pub by: String,
    #[serde(with = "rfc3339")]
    pub at: DateTime<FixedOffset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

// The channels: one line each (see [`plugin`]). The order is the order `type`'s
// values are listed in messages.
notifiers! {
    Slack(slack::SlackConfig) = "slack",
    Teams(teams::TeamsConfig) = "teams",
    Discord(discord::DiscordConfig) = "discord",
    Mattermost(mattermost::MattermostConfig) = "mattermost",
    GoogleChat(googlechat::GoogleChatConfig) = "googlechat",
    Matrix(matrix::MatrixConfig) = "matrix",
    Email(email::EmailConfig) = "email",
    Webhook(webhook::WebhookConfig) = "webhook",
    Alertmanager(alertmanager::AlertmanagerConfig) = "alertmanager",
    Command(command::CommandConfig) = "command",
    Log(log::LogConfig) = "log",
    Ntfy(ntfy::NtfyConfig) = "ntfy",
    Pushover(pushover::PushoverConfig) = "pushover",
    Telegram(telegram::TelegramConfig) = "telegram",
    Gotify(gotify::GotifyConfig) = "gotify",
    Pagerduty(pagerduty::PagerdutyConfig) = "pagerduty",
    Opsgenie(opsgenie::OpsgenieConfig) = "opsgenie",
    Desktop(desktop::DesktopConfig) = "desktop",
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use klaxon_testkit::{Response, Server};

    fn build(spec: NotifierSpec) -> Notifier {
        Notifier::build(&spec, &reqwest::Client::new(), None).unwrap()
    }

    fn slack(url: &str) -> Notifier {
        build(NotifierSpec::Slack(slack::SlackSpec {
            webhook_url: url.into(),
        }))
    }

    fn webhook(url: &str) -> Notifier {
        build(NotifierSpec::Webhook(webhook::WebhookSpec {
            url: url.parse().unwrap(),
            secret: None,
            ca_file: None,
        }))
    }

    #[test]
    fn only_channels_a_person_reads_merge() {
        let merging: Vec<(&str, bool)> = [
            build(NotifierSpec::Log(log::LogSpec)),
            slack("https://hooks.example.com/x"),
            webhook("https://example.com/hook"),
            build(NotifierSpec::Command(command::CommandSpec {
                argv: vec!["true".into()],
                timeout: command::DEFAULT_TIMEOUT,
            })),
        ]
        .iter()
        .map(|n| (n.kind(), n.merges()))
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
