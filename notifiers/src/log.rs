//! The `log` channel: writes the message to the agent's own log (target `klaxon::alert`),
//! for a console or a log shipper to pick up. It has no settings and cannot fail.

use serde::Deserialize;

use crate::validate::ConfigIssue;
use crate::{Alert, BuildError, Channel, DeliveryError, Event, NotifierPlugin};

/// The raw `[notifiers.NAME]` table of `type = "log"`: no keys of its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {}

impl NotifierPlugin for LogConfig {
    type Spec = LogSpec;
    type Channel = Log;

    /// There is nothing to check; kept for the same shape as every channel.
    fn validate(self, _issues: &mut Vec<ConfigIssue>) -> Option<LogSpec> {
        Some(LogSpec)
    }

    fn build(spec: &LogSpec, _client: &reqwest::Client) -> Result<Log, BuildError> {
        Ok(Log::new(spec.clone()))
    }
}

/// A validated `log` notifier.
#[derive(Debug, Clone)]
pub struct LogSpec;

/// A `log` notifier ready to send.
#[derive(Debug)]
pub struct Log {
    _spec: LogSpec,
}

impl Log {
    /// The notifier for a spec.
    pub fn new(spec: LogSpec) -> Self {
        Self { _spec: spec }
    }
}

impl Channel for Log {
    const MERGES: bool = true;

    /// Logs [`crate::text::render_text`] at WARN for failures, updates and reminders and
    /// at INFO for recoveries and tests, with `job` and `event` fields. Always delivered.
    async fn send(&self, alert: &Alert) -> Result<(), DeliveryError> {
        let text = crate::text::render_text(alert);
        let event = alert.event.as_str();
        match alert.event {
            Event::Failure | Event::Update | Event::Reminder => {
                tracing::warn!(target: "klaxon::alert", job = %alert.job, event, "{text}");
            }
            Event::Recovery | Event::Test => {
                tracing::info!(target: "klaxon::alert", job = %alert.job, event, "{text}");
            }
        }
        Ok(())
    }

    /// Logs [`crate::text::render_digest_text`] as one event with `event = "digest"` and
    /// `alerts` (how many): at WARN when any of them is a failure, update or reminder, at
    /// INFO when all are recoveries and tests, as [`Log::send`] would log each. Always
    /// delivered.
    async fn send_digest(&self, alerts: &[Alert]) -> Result<(), DeliveryError> {
        let text = crate::text::render_digest_text(alerts);
        let count = alerts.len();
        let problem = alerts
            .iter()
            .any(|a| matches!(a.event, Event::Failure | Event::Update | Event::Reminder));
        if problem {
            tracing::warn!(target: "klaxon::alert", event = "digest", alerts = count, "{text}");
        } else {
            tracing::info!(target: "klaxon::alert", event = "digest", alerts = count, "{text}");
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::fmt::Write as _;
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event as TracingEvent, Level, Metadata, Subscriber};

    use super::*;
    use crate::fixtures;

    /// One logged event: level, target and `name=value` fields.
    type Logged = (Level, String, Vec<(String, String)>);

    /// A subscriber that keeps every event, so a test can read exactly what was logged.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<Logged>>>);

    struct Fields(Vec<(String, String)>);

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let mut text = String::new();
            let _ = write!(text, "{value:?}");
            self.0.push((field.name().to_owned(), text));
        }

        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.push((field.name().to_owned(), value.to_owned()));
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &TracingEvent<'_>) {
            let mut fields = Fields(Vec::new());
            event.record(&mut fields);
            let meta = event.metadata();
            self.0
                .lock()
                .unwrap()
                .push((*meta.level(), meta.target().to_owned(), fields.0));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    async fn logged(alert: &Alert) -> Vec<Logged> {
        let capture = Capture::default();
        let _guard = tracing::subscriber::set_default(capture.clone());
        Log::new(LogSpec).send(alert).await.unwrap();
        capture.0.lock().unwrap().clone()
    }

    fn expected(level: Level, alert: &Alert) -> Vec<Logged> {
        vec![(
            level,
            "klaxon::alert".to_owned(),
            vec![
                ("message".to_owned(), crate::text::render_text(alert)),
                ("job".to_owned(), "api".to_owned()),
                ("event".to_owned(), alert.event.as_str().to_owned()),
            ],
        )]
    }

    #[tokio::test]
    async fn problems_are_warnings() {
        for alert in [
            fixtures::failure(),
            fixtures::update(),
            fixtures::reminder(),
        ] {
            assert_eq!(logged(&alert).await, expected(Level::WARN, &alert));
        }
    }

    #[tokio::test]
    async fn good_news_is_info() {
        let test = Alert {
            event: Event::Test,
            ..fixtures::failure()
        };
        for alert in [fixtures::recovery(), test] {
            assert_eq!(logged(&alert).await, expected(Level::INFO, &alert));
        }
    }

    async fn logged_digest(alerts: &[Alert]) -> Vec<Logged> {
        let capture = Capture::default();
        let _guard = tracing::subscriber::set_default(capture.clone());
        Log::new(LogSpec).send_digest(alerts).await.unwrap();
        capture.0.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn a_digest_is_one_event() {
        let digest = |level, text: &str, alerts: &str| {
            vec![(
                level,
                "klaxon::alert".to_owned(),
                vec![
                    ("message".to_owned(), text.to_owned()),
                    ("event".to_owned(), "digest".to_owned()),
                    ("alerts".to_owned(), alerts.to_owned()),
                ],
            )]
        };
        assert_eq!(
            logged_digest(&fixtures::digest()).await,
            digest(
                Level::WARN,
                "3 alerts on macbook: 1 down, 1 warning, 1 recovered\n\
                 \n\
                 - DOWN api on macbook: HTTP 503 Service Unavailable (3 of 3 attempts, 7.2s)\n\
                 - WARNING disk on macbook: disk 85% full (2 of 3 attempts, 1.3s)\n\
                 - RECOVERED db on macbook after 1h 5m (down 10:15–11:20)",
                "3"
            )
        );
        let recoveries = [fixtures::recovery(), fixtures::recovery()];
        assert_eq!(
            logged_digest(&recoveries).await,
            digest(
                Level::INFO,
                &crate::text::render_digest_text(&recoveries),
                "2"
            )
        );
    }

    #[test]
    fn takes_no_keys() {
        let config: LogConfig = toml::from_str("").unwrap();
        assert!(config.validate(&mut Vec::new()).is_some());
        let error = toml::from_str::<LogConfig>("level = \"warn\"").unwrap_err();
        assert!(
            error.message().starts_with("unknown field `level`"),
            "{error}"
        );
    }
}
