//! The `desktop` channel: a native notification on the machine the agent runs on, through
//! notify-rust. On Linux and the BSDs it calls `Notify` of the freedesktop Notifications
//! service on the D-Bus session bus
//! (<https://specifications.freedesktop.org/notification-spec/latest/protocol.html>);
//! on macOS it posts to Notification Center. Owns its config (`sound`), the pure
//! [`render`] of an alert into a [`Note`], and [`Desktop::send`].
//!
//! Without a session bus, or with no notification service on it, the delivery fails
//! with a reason that says so and is retried: the message waits in the outbox (until a
//! session starts, or the day is up) while the other notifiers deliver theirs.
//!
//! With [`Buttons`], a notification about an open alert on Linux and the BSDs offers the
//! actions `ack` ("Acknowledge") and `silence` ("Silence 1h"). klaxon itself performs a
//! pressed one: after `Notify` a task of the process waits for the service's
//! `ActionInvoked` for that notification, until it closes (`NotificationClosed`) or for
//! [`BUTTON_LIFETIME`], and then POSTs the button to the listener with its scoped token.
//! A process that exits (`klaxon once`) takes its buttons with it. macOS notifications
//! carry no actions.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::buttons::{Action, Button, Buttons};
use crate::text::{self, ELLIPSIS};
use crate::validate::ConfigIssue;
use crate::{Alert, BuildError, Channel, DeliveryError, Event, NotifierPlugin, Severity};

/// The name notifications are shown under.
pub const APP_NAME: &str = "klaxon";
/// At most this many characters of body; notification bubbles show a few lines.
pub const BODY_CHARS: usize = 1_000;
/// At most this many lines of a digest are listed before naming the rest.
pub const DIGEST_LINES: usize = 10;
/// The freedesktop sound played when `sound = true` (sound naming specification).
pub const SOUND_NAME: &str = "message-new-instant";
/// The sound macOS plays when `sound = true`.
pub const MAC_SOUND_NAME: &str = "Default";
/// How long the buttons of a notification that is never closed keep working.
pub const BUTTON_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// The raw `[notifiers.NAME]` table of `type = "desktop"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesktopConfig {
    sound: Option<Spanned<bool>>,
}

impl NotifierPlugin for DesktopConfig {
    type Spec = DesktopSpec;
    type Channel = Desktop;

    /// Nothing can be wrong: `sound` is a boolean or absent (off).
    fn validate(self, _issues: &mut Vec<ConfigIssue>) -> Option<DesktopSpec> {
        Some(DesktopSpec {
            sound: self.sound.is_some_and(Spanned::into_inner),
        })
    }

    fn build(spec: &DesktopSpec, client: &reqwest::Client) -> Result<Desktop, BuildError> {
        Self::build_with(spec, client, None)
    }

    /// Buttons are pressed through `client`, the agent's delivery client.
    fn build_with(
        spec: &DesktopSpec,
        client: &reqwest::Client,
        buttons: Option<&Buttons>,
    ) -> Result<Desktop, BuildError> {
        Ok(Desktop::new(spec.clone(), buttons.cloned(), client.clone()))
    }
}

/// A validated `desktop` notifier.
#[derive(Debug, Clone, PartialEq)]
pub struct DesktopSpec {
    /// Whether the notification plays a sound.
    pub sound: bool,
}

/// How insistent a notification is: the freedesktop `urgency` hint. A critical one
/// stays until it is dismissed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    Low,
    Normal,
    Critical,
}

/// One notification, ready to show.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    /// The title: `DOWN api on macbook`. Plain text everywhere.
    pub summary: String,
    /// The alert's summary, cut to [`BODY_CHARS`], as plain text (on Linux it is
    /// [escaped](escape) when it is sent, as the notification spec's body markup needs).
    pub body: String,
    pub urgency: Urgency,
    /// A freedesktop icon name.
    pub icon: &'static str,
    pub sound: bool,
    /// The buttons offered, in order (Linux and the BSDs only).
    pub actions: Vec<Action>,
}

/// The urgency and icon of an alert: critical (or unknown) failures and reminders are
/// `Critical` with `dialog-error`, warnings `Normal` with `dialog-warning`, recoveries
/// and tests `Low` with `dialog-information`.
fn tone(alert: &Alert) -> (Urgency, &'static str) {
    match (alert.event, alert.severity) {
        (Event::Recovery | Event::Test, _) | (_, Severity::Ok) => {
            (Urgency::Low, "dialog-information")
        }
        (_, Severity::Warning) => (Urgency::Normal, "dialog-warning"),
        _ => (Urgency::Critical, "dialog-error"),
    }
}

/// Renders an alert as a notification: the summary is the title without the reason
/// (`DOWN api on macbook`, `RECOVERED api on macbook after 1h 5m`), the body the
/// alert's summary (the reason), with the urgency and icon of [`tone`] and an action
/// for each of `buttons`.
pub fn render(alert: &Alert, spec: &DesktopSpec, buttons: &[Button]) -> Note {
    let (urgency, icon) = tone(alert);
    Note {
        summary: text::headline(alert),
        body: body(&alert.summary),
        urgency,
        icon,
        sound: spec.sound,
        actions: buttons.iter().map(|b| b.action).collect(),
    }
}

/// Renders several alerts as one notification: [`text::digest_title`] over the first
/// [`DIGEST_LINES`] of [`text::digest_lines`], one a line, then the jobs of the rest
/// ([`text::and_more`]); the urgency of the most urgent. A digest carries no buttons.
pub fn render_digest(alerts: &[Alert], spec: &DesktopSpec) -> Note {
    let mut lines = text::digest_lines(alerts);
    if lines.len() > DIGEST_LINES {
        lines.truncate(DIGEST_LINES - 1);
        lines.push(text::and_more(&alerts[DIGEST_LINES - 1..]));
    }
    let (urgency, icon) = alerts
        .iter()
        .map(tone)
        .max_by_key(|(urgency, _)| match urgency {
            Urgency::Low => 0,
            Urgency::Normal => 1,
            Urgency::Critical => 2,
        })
        .unwrap_or((Urgency::Low, "dialog-information"));
    Note {
        summary: text::digest_title(alerts),
        body: body(&lines.join("\n")),
        urgency,
        icon,
        sound: spec.sound,
        actions: Vec::new(),
    }
}

/// The body text: trimmed and cut to [`BODY_CHARS`].
fn body(text: &str) -> String {
    text::truncate(text.trim(), BODY_CHARS, ELLIPSIS).into_owned()
}

/// The notification spec's body markup is a small XML subset: `&`, `<` and `>` from a
/// monitored system must not become tags or entities.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A `desktop` notifier ready to send.
#[derive(Debug)]
pub struct Desktop {
    spec: DesktopSpec,
    timeout: Duration,
    buttons: Option<Buttons>,
    /// Presses buttons.
    client: reqwest::Client,
}

impl Desktop {
    /// How long the notification service may take to answer.
    pub const TIMEOUT: Duration = Duration::from_secs(10);

    /// A notifier offering `buttons` (if any) on notifications about an open alert and
    /// pressing them through `client`.
    pub fn new(spec: DesktopSpec, buttons: Option<Buttons>, client: reqwest::Client) -> Self {
        Self {
            spec,
            timeout: Self::TIMEOUT,
            buttons,
            client,
        }
    }

    /// Shows `note`, whose actions are `buttons`; every failure is worth a retry (a
    /// session may start later).
    async fn show(&self, note: Note, buttons: Vec<Button>) -> Result<(), DeliveryError> {
        let pressing = Pressing {
            buttons,
            client: self.client.clone(),
        };
        match tokio::time::timeout(self.timeout, show(note, pressing)).await {
            Ok(result) => result,
            Err(_) => Err(DeliveryError::Retry {
                reason: format!(
                    "the desktop notification service did not answer within {}",
                    humantime::format_duration(self.timeout)
                ),
                after: None,
            }),
        }
    }
}

impl Channel for Desktop {
    const MERGES: bool = true;

    /// Shows [`render`]'s notification. No session bus, no notification service on it,
    /// or no answer within [`Desktop::TIMEOUT`] are [`DeliveryError::Retry`].
    /// With buttons, a notification about an open alert offers them.
    async fn send(&self, alert: &Alert) -> Result<(), DeliveryError> {
        let buttons = (self.buttons.as_ref())
            .map(|b| b.for_alert(alert))
            .unwrap_or_default();
        self.show(render(alert, &self.spec, &buttons), buttons)
            .await
    }

    /// Shows [`render_digest`]'s one notification for several alerts.
    async fn send_digest(&self, alerts: &[Alert]) -> Result<(), DeliveryError> {
        self.show(render_digest(alerts, &self.spec), Vec::new())
            .await
    }
}

/// The buttons of a notification being shown, and the client that presses them.
#[cfg_attr(target_os = "macos", allow(dead_code))]
struct Pressing {
    buttons: Vec<Button>,
    client: reqwest::Client,
}

fn retry(reason: String) -> DeliveryError {
    DeliveryError::Retry {
        reason,
        after: None,
    }
}

/// Calls `Notify` on the session bus, as notify-rust does through zbus; with buttons,
/// leaves a task waiting for one to be pressed ([`wait_for_press`]).
#[cfg(all(unix, not(target_os = "macos")))]
async fn show(note: Note, pressing: Pressing) -> Result<(), DeliveryError> {
    use notify_rust::{Hint, Notification};

    // zbus would fall back to `$XDG_RUNTIME_DIR/bus`, as D-Bus does.
    let runtime_bus = std::env::var_os("XDG_RUNTIME_DIR")
        .map(|dir| std::path::PathBuf::from(dir).join("bus"))
        .filter(|bus| bus.exists());
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() && runtime_bus.is_none() {
        return Err(retry(
            "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set and there is no \
             $XDG_RUNTIME_DIR/bus): desktop notifications need the agent to run in a \
             desktop session"
                .into(),
        ));
    }
    let mut notification = Notification::new();
    notification
        .appname(APP_NAME)
        .summary(&note.summary)
        .body(&escape(&note.body))
        .icon(note.icon)
        .urgency(match note.urgency {
            Urgency::Low => notify_rust::Urgency::Low,
            Urgency::Normal => notify_rust::Urgency::Normal,
            Urgency::Critical => notify_rust::Urgency::Critical,
        });
    if note.sound {
        notification.hint(Hint::SoundName(SOUND_NAME.into()));
    } else {
        notification.hint(Hint::SuppressSound(true));
    }
    for action in &note.actions {
        notification.action(action.key(), action.label());
    }
    match notification.show_async().await {
        Ok(handle) => {
            if !pressing.buttons.is_empty() {
                tokio::spawn(wait_for_press(handle, pressing));
            }
            Ok(())
        }
        Err(e) => Err(retry(format!("cannot show a desktop notification: {e}"))),
    }
}

/// Waits for the service's `ActionInvoked` for `handle`'s notification (until it is
/// closed, or [`BUTTON_LIFETIME`]) and presses the button it names.
#[cfg(all(unix, not(target_os = "macos")))]
async fn wait_for_press(handle: notify_rust::NotificationHandle, pressing: Pressing) {
    let mut invoked = None;
    let waited = tokio::time::timeout(
        BUTTON_LIFETIME,
        handle.wait_for_action_async(|response| {
            if let notify_rust::NotificationResponse::Action(key) = response {
                invoked = Action::from_key(key);
            }
        }),
    )
    .await;
    if waited.is_err() {
        return;
    }
    let Some(button) = pressing.buttons.iter().find(|b| Some(b.action) == invoked) else {
        return;
    };
    match button.press(&pressing.client).await {
        Ok(()) => tracing::info!(
            notifier = "desktop",
            action = button.action.key(),
            "desktop notification button pressed"
        ),
        Err(reason) => tracing::warn!(
            notifier = "desktop",
            action = button.action.key(),
            "a desktop notification button failed: {reason}"
        ),
    }
}

/// Posts to Notification Center (blocking, so on tokio's blocking threads). Its
/// notifications carry no buttons.
#[cfg(not(all(unix, not(target_os = "macos"))))]
async fn show(note: Note, _pressing: Pressing) -> Result<(), DeliveryError> {
    let shown = tokio::task::spawn_blocking(move || {
        let mut notification = notify_rust::Notification::new();
        notification
            .appname(APP_NAME)
            .summary(&note.summary)
            .body(&note.body);
        if note.sound {
            notification.sound_name(MAC_SOUND_NAME);
        }
        // The handle posts the notification when it is dropped.
        notification.show().map(drop)
    })
    .await;
    match shown {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(retry(format!("cannot show a desktop notification: {e}"))),
        Err(e) => Err(retry(format!("cannot show a desktop notification: {e}"))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fixtures;

    const QUIET: DesktopSpec = DesktopSpec { sound: false };

    fn validate(toml: &str) -> Option<DesktopSpec> {
        let config: DesktopConfig = toml::from_str(toml).unwrap();
        let mut issues = Vec::new();
        let spec = config.validate(&mut issues);
        assert_eq!(issues, []);
        spec
    }

    #[test]
    fn sound_is_off_unless_asked_for() {
        assert_eq!(validate(""), Some(DesktopSpec { sound: false }));
        assert_eq!(validate("sound = true"), Some(DesktopSpec { sound: true }));
        let error = toml::from_str::<DesktopConfig>("sound = \"yes\"").unwrap_err();
        assert!(error.message().contains("expected a boolean"), "{error}");
        let error = toml::from_str::<DesktopConfig>("title = \"x\"").unwrap_err();
        assert!(
            error.message().starts_with("unknown field `title`"),
            "{error}"
        );
    }

    fn note(summary: &str, body: &str, urgency: Urgency, icon: &'static str) -> Note {
        Note {
            summary: summary.into(),
            body: body.into(),
            urgency,
            icon,
            sound: false,
            actions: Vec::new(),
        }
    }

    #[test]
    fn renders_each_event() {
        let cases = [
            (
                fixtures::failure(),
                note(
                    "DOWN api on macbook",
                    "HTTP 503 Service Unavailable",
                    Urgency::Critical,
                    "dialog-error",
                ),
            ),
            (
                fixtures::update(),
                note(
                    "CHANGED api on macbook is now warning",
                    "latency 2.4s > 2s",
                    Urgency::Normal,
                    "dialog-warning",
                ),
            ),
            (
                fixtures::reminder(),
                note(
                    "STILL DOWN api on macbook",
                    "HTTP 503 Service Unavailable",
                    Urgency::Critical,
                    "dialog-error",
                ),
            ),
            (
                fixtures::recovery(),
                note(
                    "RECOVERED api on macbook after 1h 5m",
                    "HTTP 200 OK",
                    Urgency::Low,
                    "dialog-information",
                ),
            ),
        ];
        for (alert, expected) in cases {
            assert_eq!(render(&alert, &QUIET, &[]), expected, "{:?}", alert.event);
        }
        let loud = render(&fixtures::failure(), &DesktopSpec { sound: true }, &[]);
        assert!(loud.sound);
    }

    #[test]
    fn an_open_alert_offers_its_buttons_as_actions() {
        let buttons = Buttons::new("http://127.0.0.1:9850".parse().unwrap(), "tok".into());
        let failure = fixtures::failure();
        let note = render(&failure, &QUIET, &buttons.for_alert(&failure));
        assert_eq!(note.actions, [Action::Ack, Action::Silence]);
        let keys: Vec<_> = note.actions.iter().map(|a| (a.key(), a.label())).collect();
        assert_eq!(keys, [("ack", "Acknowledge"), ("silence", "Silence 1h")]);
        let recovery = fixtures::recovery();
        assert_eq!(
            render(&recovery, &QUIET, &buttons.for_alert(&recovery)).actions,
            []
        );
    }

    #[test]
    fn markup_from_the_check_stays_text() {
        assert_eq!(
            escape("<b>disk</b> & <a href=\"http://x\">more</a>"),
            "&lt;b&gt;disk&lt;/b&gt; &amp; &lt;a href=\"http://x\"&gt;more&lt;/a&gt;"
        );
    }

    #[test]
    fn a_long_summary_is_cut() {
        let alert = Alert {
            summary: "x".repeat(5_000),
            ..fixtures::failure()
        };
        let body = render(&alert, &QUIET, &[]).body;
        assert_eq!(body.chars().count(), BODY_CHARS);
        assert!(body.ends_with(ELLIPSIS));
    }

    #[test]
    fn renders_a_digest() {
        assert_eq!(
            render_digest(&fixtures::digest(), &QUIET),
            note(
                "3 alerts on macbook: 1 down, 1 warning, 1 recovered",
                "DOWN api on macbook: HTTP 503 Service Unavailable (3 of 3 attempts, 7.2s)\n\
                 WARNING disk on macbook: disk 85% full (2 of 3 attempts, 1.3s)\n\
                 RECOVERED db on macbook after 1h 5m (down 10:15–11:20)",
                Urgency::Critical,
                "dialog-error",
            )
        );
        let storm = render_digest(&fixtures::storm(30, "down"), &QUIET);
        let lines: Vec<&str> = storm.body.lines().collect();
        assert_eq!(lines.len(), DIGEST_LINES);
        assert_eq!(
            lines[DIGEST_LINES - 1],
            format!(
                "…and 21 more: {}",
                (9..30)
                    .map(|i| format!("job-{i:03}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        );
    }
}
