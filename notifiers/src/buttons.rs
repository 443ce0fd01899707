//! Buttons on a message: "Acknowledge" and "Silence 1h", for the channels that can carry
//! them (ntfy's `http` actions, desktop notifications on Linux). A button calls the
//! agent's listener (`agent.listen_url`) with a token that is good for that one action
//! on that one job: [`scoped_token`], an HMAC-SHA256 keyed by `agent.listen_token` over
//! the action and the job. The full token never leaves the machine; the listener checks
//! a scoped token against the route and job it is presented for ([`scoped_token`] again,
//! compared in constant time).
//!
//! Owns [`Buttons`] (what the agent hands to a channel when it builds it), the pure
//! [`Buttons::for_alert`] (which messages offer buttons, and what each does), and
//! [`Button::press`] (the call, for channels where klaxon itself performs it).

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use url::Url;

use crate::webhook::hmac_sha256_hex;
use crate::{Alert, Event};

/// How long the "Silence 1h" button silences a job, as `/api/silences` takes it.
pub const SILENCE_FOR: &str = "1h";
/// Who a button's acknowledgement or silence is recorded as.
pub const PRESSED_BY: &str = "notification button";
/// How long the listener may take to answer a pressed button.
pub const PRESS_TIMEOUT: Duration = Duration::from_secs(10);

/// What a button does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `POST /api/ack/JOB`.
    Ack,
    /// `POST /api/silences` for the job alone, for [`SILENCE_FOR`].
    Silence,
}

impl Action {
    /// The action's key: in the scoped token, and as the desktop notification's action.
    pub fn key(self) -> &'static str {
        match self {
            Action::Ack => "ack",
            Action::Silence => "silence",
        }
    }

    /// What the button says.
    pub fn label(self) -> &'static str {
        match self {
            Action::Ack => "Acknowledge",
            Action::Silence => "Silence 1h",
        }
    }

    /// The action whose [key](Action::key) is `key`.
    pub fn from_key(key: &str) -> Option<Action> {
        [Action::Ack, Action::Silence]
            .into_iter()
            .find(|a| a.key() == key)
    }
}

/// The bearer token that lets a button do `action` on `job` and nothing else: the
/// lowercase hex of HMAC-SHA256 keyed by `listen_token` over `ACTION\0JOB`.
pub fn scoped_token(listen_token: &str, action: Action, job: &str) -> String {
    let message = format!("{}\0{job}", action.key());
    hmac_sha256_hex(listen_token.as_bytes(), message.as_bytes())
}

/// Where the agent's listener is reached and the token buttons are derived from: both
/// `agent.listen_url` and `agent.listen_token` set.
#[derive(Clone)]
pub struct Buttons {
    listen_url: Url,
    listen_token: SecretString,
}

impl fmt::Debug for Buttons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buttons")
            .field("listen_url", &self.listen_url.as_str())
            .field("listen_token", &format_args!("***"))
            .finish()
    }
}

impl Buttons {
    /// Buttons that call the listener at `listen_url` (a base URL; the API's paths are
    /// appended to its path) with tokens derived from `listen_token`.
    pub fn new(listen_url: Url, listen_token: SecretString) -> Self {
        Self {
            listen_url,
            listen_token,
        }
    }

    /// The buttons `alert` offers: "Acknowledge" and "Silence 1h" while its alert is
    /// open (a failure, an update, a reminder) and nobody has acknowledged it yet (then
    /// only "Silence 1h"); none on a recovery or a test.
    pub fn for_alert(&self, alert: &Alert) -> Vec<Button> {
        if !matches!(
            alert.event,
            Event::Failure | Event::Update | Event::Reminder
        ) {
            return Vec::new();
        }
        let mut actions = Vec::new();
        if alert.acknowledged.is_none() {
            actions.push(Action::Ack);
        }
        actions.push(Action::Silence);
        actions
            .into_iter()
            .map(|action| self.button(action, &alert.job))
            .collect()
    }

    fn button(&self, action: Action, job: &str) -> Button {
        let mut url = self.listen_url.clone();
        let (path, body): (&[&str], _) = match action {
            Action::Ack => (&["api", "ack", job], json!({ "by": PRESSED_BY })),
            Action::Silence => (
                &["api", "silences"],
                json!({ "jobs": [job], "for": SILENCE_FOR, "by": PRESSED_BY }),
            ),
        };
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(path);
        }
        let token = scoped_token(self.listen_token.expose_secret(), action, job);
        Button {
            action,
            url,
            token: token.into(),
            body: body.to_string(),
        }
    }
}

/// One button: a POST of `body` (JSON) to `url` with `Authorization: Bearer TOKEN`.
#[derive(Clone)]
pub struct Button {
    pub action: Action,
    pub url: Url,
    /// The [scoped token](scoped_token); never shown.
    pub token: SecretString,
    pub body: String,
}

impl fmt::Debug for Button {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Button")
            .field("action", &self.action)
            .field("url", &self.url.as_str())
            .field("token", &format_args!("***"))
            .field("body", &self.body)
            .finish()
    }
}

impl Button {
    /// The `Authorization` header's value.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.token.expose_secret())
    }

    /// Performs the call through `client`, within [`PRESS_TIMEOUT`]. A reason never
    /// shows the token.
    pub async fn press(&self, client: &reqwest::Client) -> Result<(), String> {
        let sent = client
            .post(self.url.clone())
            .timeout(PRESS_TIMEOUT)
            .header(reqwest::header::AUTHORIZATION, self.authorization())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(self.body.clone())
            .send()
            .await;
        let response =
            sent.map_err(|e| format!("cannot reach the listener: {}", e.without_url()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(format!("the listener answered {status}: {}", text.trim()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fixtures;
    use klaxon_testkit::{Response, Server};

    fn buttons(url: &str) -> Buttons {
        Buttons::new(url.parse().unwrap(), "tok-SECRET".into())
    }

    #[test]
    fn a_scoped_token_is_the_hmac_of_its_action_and_job() {
        // RFC 4231 test case 2's key and data, to pin the construction.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            scoped_token("Jefe", Action::Ack, "api"),
            hmac_sha256_hex(b"Jefe", b"ack\0api")
        );
        let ack = scoped_token("tok-SECRET", Action::Ack, "api");
        assert_eq!(ack.len(), 64);
        assert_eq!(ack, scoped_token("tok-SECRET", Action::Ack, "api"));
        for other in [
            scoped_token("tok-SECRET", Action::Silence, "api"),
            scoped_token("tok-SECRET", Action::Ack, "db"),
            scoped_token("tok-OTHER", Action::Ack, "api"),
        ] {
            assert_ne!(ack, other);
        }
        assert!(!ack.contains("tok-SECRET"));
    }

    #[test]
    fn open_alerts_offer_buttons_and_closed_ones_none() {
        let buttons = buttons("https://box.example.com:9850");
        let failure = buttons.for_alert(&fixtures::failure());
        let described: Vec<_> = failure
            .iter()
            .map(|b| (b.action, b.url.as_str(), b.body.as_str()))
            .collect();
        assert_eq!(
            described,
            [
                (
                    Action::Ack,
                    "https://box.example.com:9850/api/ack/api",
                    r#"{"by":"notification button"}"#
                ),
                (
                    Action::Silence,
                    "https://box.example.com:9850/api/silences",
                    r#"{"by":"notification button","for":"1h","jobs":["api"]}"#
                ),
            ]
        );
        assert_eq!(
            failure[0].authorization(),
            format!("Bearer {}", scoped_token("tok-SECRET", Action::Ack, "api"))
        );
        assert!(!format!("{failure:?}").contains(&scoped_token("tok-SECRET", Action::Ack, "api")));
        assert!(!format!("{buttons:?}").contains("SECRET"));
        assert_eq!(buttons.for_alert(&fixtures::reminder()).len(), 2);
        assert_eq!(buttons.for_alert(&fixtures::update()).len(), 2);
        assert!(buttons.for_alert(&fixtures::recovery()).is_empty());
        let test = Alert {
            event: Event::Test,
            ..fixtures::failure()
        };
        assert!(buttons.for_alert(&test).is_empty());
        let acked = Alert {
            acknowledged: Some(crate::Acknowledged {
                by: "ann".into(),
                at: fixtures::failure().started_at,
                comment: None,
            }),
            ..fixtures::reminder()
        };
        let left: Vec<_> = buttons.for_alert(&acked).iter().map(|b| b.action).collect();
        assert_eq!(left, [Action::Silence]);
    }

    #[test]
    fn a_listen_url_with_a_path_keeps_it() {
        for base in ["https://example.com/klaxon", "https://example.com/klaxon/"] {
            let ack = &buttons(base).for_alert(&fixtures::failure())[0];
            assert_eq!(ack.url.as_str(), "https://example.com/klaxon/api/ack/api");
        }
    }

    #[tokio::test]
    async fn pressing_posts_the_body_with_the_scoped_token() {
        let listener = Server::start(|r| {
            if r.path == "/api/ack/api" {
                Response::ok("{}")
            } else {
                Response::status(409).body("{\"error\":\"nothing open\"}")
            }
        })
        .await;
        let buttons = buttons(&listener.url("/"));
        let pressed = buttons.for_alert(&fixtures::failure());
        pressed[0].press(&reqwest::Client::new()).await.unwrap();
        let error = pressed[1].press(&reqwest::Client::new()).await.unwrap_err();
        assert_eq!(
            error,
            "the listener answered 409 Conflict: {\"error\":\"nothing open\"}"
        );
        let requests = listener.requests();
        assert_eq!(requests[0].method, "POST");
        let bearer = format!("Bearer {}", scoped_token("tok-SECRET", Action::Ack, "api"));
        assert_eq!(requests[0].header("authorization"), Some(bearer.as_str()));
        assert_eq!(requests[1].json()["jobs"][0], "api");
    }
}
