//! What the chat channels whose whole config is one secret webhook URL share
//! (`discord`, `mattermost`, `googlechat`): the raw `webhook_url` table and its
//! validation, the spec that never shows the URL, and the runtime that sends to it
//! through the shared [`HttpShell`]. Each channel keeps its own config type (a newtype
//! of [`ChatHookConfig`], so its `type` has its own variant) and its own render.

use std::fmt;
use std::time::Duration;

use klaxon_config_core::{SecretKey, Seg};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use toml::Spanned;

use crate::DeliveryError;
use crate::http::{HttpShell, JsonRequest};
use crate::validate::{self, ConfigIssue};

/// A `[notifiers.NAME]` table that is only `webhook_url`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatHookConfig {
    webhook_url: Spanned<SecretString>,
}

impl ChatHookConfig {
    /// `webhook_url` is the credential.
    pub(crate) const SECRET_KEYS: &'static [SecretKey] =
        &[SecretKey::always(&[Seg::Key("webhook_url")])];

    /// Checks the webhook URL (`https`, or `http` to a loopback host: a test receiver or
    /// a local relay), pushing every problem to `issues`.
    pub(crate) fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<ChatHookSpec> {
        let webhook_url = validate::secret_webhook_url(self.webhook_url, "webhook_url", issues)?;
        Some(ChatHookSpec { webhook_url })
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

/// Sends JSON to one webhook within a deadline; never shows the URL.
pub(crate) struct ChatHook {
    url: SecretString,
    http: HttpShell,
}

impl fmt::Debug for ChatHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatHook")
            .field("url", &format_args!("***"))
            .field("http", &self.http)
            .finish()
    }
}

impl ChatHook {
    /// Sends to `url` through `client` (the agent's shared HTTP client), each delivery
    /// within `timeout`.
    pub(crate) fn new(url: SecretString, client: reqwest::Client, timeout: Duration) -> Self {
        let http = HttpShell::shared(client, timeout);
        Self { url, http }
    }

    /// The same hook with another delivery deadline.
    pub(crate) fn with_timeout(self, timeout: Duration) -> Self {
        let http = self.http.with_timeout(timeout);
        Self { http, ..self }
    }

    /// Sends `body` as `request` says (see [`HttpShell::send_json`]).
    pub(crate) async fn send(
        &self,
        request: JsonRequest,
        body: Vec<u8>,
    ) -> Result<(), DeliveryError> {
        (self.http)
            .send_json(request, self.url.expose_secret(), body)
            .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<ChatHookConfig, toml::de::Error> {
        toml::from_str(toml)
    }

    #[test]
    fn validates_the_webhook_without_showing_it() {
        let toml = "webhook_url = \"https://chat.example.com/hooks/SECRET\"";
        let config = parse(toml).unwrap();
        assert!(!format!("{config:?}").contains("SECRET"));
        let spec = config.validate(&mut Vec::new()).unwrap();
        assert_eq!(format!("{spec:?}"), "ChatHookSpec { webhook_url: *** }");
        let hook = ChatHook::new(
            spec.webhook_url,
            reqwest::Client::new(),
            Duration::from_secs(1),
        );
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
