//! What the chat channels whose whole config is one secret webhook URL share
//! (`discord`, `mattermost`, `googlechat`): the raw `webhook_url` table and its
//! validation, the spec that never shows the URL, and the runtime that POSTs to it
//! through the shared `HttpShell`. What makes each channel itself is a
//! [`HookFormat`] in its own file: the pure `render`, its pacing, where its provider
//! says how long to wait after a 429, and the URL it posts to. Its config and runtime
//! are [`HookConfig`] and [`ChatHook`] of that format, so `type` still has a variant of
//! its own.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use klaxon_config_core::{SecretKey, Seg};
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use crate::http::{HttpShell, JsonRequest};
use crate::validate::{self, ConfigIssue};
use crate::{Alert, BuildError, Channel, DeliveryError, NotifierPlugin};

/// One webhook channel's own part.
pub trait HookFormat: fmt::Debug + Send + Sync + 'static {
    /// The least time between two messages (see [`NotifierPlugin::min_interval`]).
    const MIN_INTERVAL: Option<Duration> = None;

    /// Reads how long to wait from a 429's body, for providers that say it there; the
    /// `Retry-After` header is used when this finds nothing.
    const HINT: Option<fn(&str) -> Option<Duration>> = None;

    /// The JSON one alert is sent as.
    fn render(alert: &Alert) -> Value;

    /// Where to POST, from the configured `webhook_url`.
    fn url(webhook_url: SecretString) -> SecretString {
        webhook_url
    }
}

/// A `[notifiers.NAME]` table that is only `webhook_url`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatHookConfig {
    webhook_url: Spanned<SecretString>,
}

/// The raw table of the channel of format `F`: a [`ChatHookConfig`].
#[derive(Debug, Deserialize)]
#[serde(transparent, bound = "")]
pub struct HookConfig<F> {
    table: ChatHookConfig,
    #[serde(skip)]
    format: PhantomData<fn() -> F>,
}

impl<F: HookFormat> NotifierPlugin for HookConfig<F> {
    type Spec = ChatHookSpec;
    type Channel = ChatHook<F>;

    /// `webhook_url` is the credential.
    const SECRET_KEYS: &'static [SecretKey] = &[SecretKey::always(&[Seg::Key("webhook_url")])];

    /// Checks the webhook URL (`https`, or `http` to a loopback host: a test receiver or
    /// a local relay), pushing every problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<ChatHookSpec> {
        let webhook_url =
            validate::secret_webhook_url(self.table.webhook_url, "webhook_url", issues)?;
        Some(ChatHookSpec { webhook_url })
    }

    fn build(spec: &ChatHookSpec, client: &reqwest::Client) -> Result<ChatHook<F>, BuildError> {
        Ok(ChatHook::new(spec.clone(), client.clone()))
    }

    fn min_interval(_spec: &ChatHookSpec) -> Option<Duration> {
        F::MIN_INTERVAL
    }
}

/// A validated webhook channel.
#[derive(Clone)]
pub struct ChatHookSpec {
    /// The webhook; it holds the credential, so it is never shown.
    pub webhook_url: SecretString,
}

impl fmt::Debug for ChatHookSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatHookSpec")
            .field("webhook_url", &format_args!("***"))
            .finish()
    }
}

/// A webhook channel of format `F` ready to send; never shows its URL.
pub struct ChatHook<F> {
    url: SecretString,
    http: HttpShell,
    format: PhantomData<fn() -> F>,
}

impl<F: HookFormat> fmt::Debug for ChatHook<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatHook")
            .field("format", &format_args!("{}", std::any::type_name::<F>()))
            .field("url", &format_args!("***"))
            .field("http", &self.http)
            .finish()
    }
}

impl<F: HookFormat> ChatHook<F> {
    /// How long one delivery may take, answer included.
    pub const TIMEOUT: Duration = Duration::from_secs(10);

    /// A channel posting through `client` (the agent's shared HTTP client) to
    /// [`HookFormat::url`] of the spec's webhook.
    pub fn new(spec: ChatHookSpec, client: reqwest::Client) -> Self {
        Self {
            url: F::url(spec.webhook_url),
            http: HttpShell::shared(client, Self::TIMEOUT),
            format: PhantomData,
        }
    }

    /// The same channel with another delivery deadline than [`ChatHook::TIMEOUT`].
    pub fn with_timeout(self, timeout: Duration) -> Self {
        let http = self.http.with_timeout(timeout);
        Self { http, ..self }
    }
}

impl<F: HookFormat> Channel for ChatHook<F> {
    /// POSTs [`HookFormat::render`]'s JSON. 2xx is delivered; 408, 429 (after the wait
    /// [`HookFormat::HINT`] reads from the body, else `Retry-After`), 5xx, connection
    /// errors and timeouts are [`DeliveryError::Retry`]; other statuses are
    /// [`DeliveryError::Reject`] quoting the start of the answer. No reason contains the
    /// webhook URL or a part of its path or query.
    async fn send(&self, alert: &Alert) -> Result<(), DeliveryError> {
        let body = F::render(alert).to_string().into_bytes();
        let request = JsonRequest {
            hint: F::HINT,
            ..JsonRequest::post(HeaderMap::new())
        };
        (self.http)
            .send_json(request, self.url.expose_secret(), body)
            .await
    }
}

/// For the channels' tests: sends the fixture's failure through a channel of format `F`
/// to a local receiver answering `answer`, its webhook at `path` (path and query), and
/// checks a failure's reason never shows `SECRET`, which the path is to hold.
#[cfg(test)]
pub(crate) async fn send_to<F: HookFormat>(
    path: &str,
    answer: klaxon_testkit::Response,
) -> (Result<(), DeliveryError>, klaxon_testkit::Server) {
    let server = klaxon_testkit::Server::start(move |_| answer.clone()).await;
    let spec = ChatHookSpec {
        webhook_url: server.url(path).into(),
    };
    let result = ChatHook::<F>::new(spec, reqwest::Client::new())
        .send(&crate::fixtures::failure())
        .await;
    if let Err(error) = &result {
        let text = format!("{error} {error:?}");
        assert!(!text.contains("SECRET"), "{text}");
    }
    (result, server)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Plain;

    impl HookFormat for Plain {
        fn render(alert: &Alert) -> Value {
            serde_json::json!({ "text": alert.summary })
        }
    }

    fn parse(toml: &str) -> Result<HookConfig<Plain>, toml::de::Error> {
        toml::from_str(toml)
    }

    #[test]
    fn validates_the_webhook_without_showing_it() {
        let toml = "webhook_url = \"https://chat.example.com/hooks/SECRET\"";
        let config = parse(toml).unwrap();
        assert!(!format!("{config:?}").contains("SECRET"));
        let spec = config.validate(&mut Vec::new()).unwrap();
        assert_eq!(format!("{spec:?}"), "ChatHookSpec { webhook_url: *** }");
        let hook = ChatHook::<Plain>::new(spec, reqwest::Client::new());
        assert!(!format!("{hook:?}").contains("SECRET"));

        for (url, message) in [
            ("", "`webhook_url` must not be empty"),
            (
                "chat.example.com/SECRET",
                "`webhook_url` is not a valid URL",
            ),
            (
                "http://chat.example.com/SECRET",
                "`webhook_url` must use `https`: plain `http` is allowed only to a loopback host",
            ),
        ] {
            let toml = format!("webhook_url = \"{url}\"");
            let mut issues = Vec::new();
            assert!(parse(&toml).unwrap().validate(&mut issues).is_none());
            assert_eq!(issues, [ConfigIssue::new(14..toml.len(), message)], "{url}");
        }
        let error = parse("webhook_url = \"https://x\"\nchannel = \"ops\"").unwrap_err();
        assert!(
            error.message().starts_with("unknown field `channel`"),
            "{error}"
        );
        assert_eq!(
            parse("").unwrap_err().message(),
            "missing field `webhook_url`"
        );
    }

    #[test]
    fn each_channel_reads_only_a_webhook_url() {
        use crate::{discord, googlechat, mattermost};
        let ok = "webhook_url = \"https://chat.example.com/hooks/SECRET\"";
        let bad = "webhook_url = \"https://x\"\nusername = \"k\"";
        let unknown = |e: toml::de::Error| e.message().starts_with("unknown field `username`");
        assert!(toml::from_str::<discord::DiscordConfig>(ok).is_ok());
        assert!(toml::from_str::<discord::DiscordConfig>(bad).is_err_and(unknown));
        assert!(toml::from_str::<mattermost::MattermostConfig>(ok).is_ok());
        assert!(toml::from_str::<mattermost::MattermostConfig>(bad).is_err_and(unknown));
        assert!(toml::from_str::<googlechat::GoogleChatConfig>(ok).is_ok());
        assert!(toml::from_str::<googlechat::GoogleChatConfig>(bad).is_err_and(unknown));
    }
}
