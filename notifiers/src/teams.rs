//! The `teams` channel's config: a Microsoft Teams webhook (`webhook_url`, a secret) and
//! the card `format` it takes. Rendering and sending come with the Teams runtime; until
//! then [`crate::Notifier::build`] reports the type as unsupported.

use std::fmt;

use secrecy::SecretString;
use serde::Deserialize;
use toml::Spanned;

use crate::validate::{self, ConfigIssue};

/// The raw `[notifiers.NAME]` table of `type = "teams"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsConfig {
    webhook_url: Spanned<SecretString>,
    format: Option<Spanned<String>>,
}

/// The card a Teams webhook takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamsFormat {
    /// `adaptivecard` (default): a Workflows webhook taking an Adaptive Card.
    AdaptiveCard,
    /// `messagecard`: a legacy Office 365 connector.
    MessageCard,
}

impl TeamsConfig {
    /// Checks the webhook URL (`https`, or `http` to a loopback host) and the format,
    /// pushing every problem to `issues`.
    pub fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<TeamsSpec> {
        let webhook_url = validate::secret_webhook_url(self.webhook_url, "webhook_url", issues);
        let format = match self.format {
            None => Some(TeamsFormat::AdaptiveCard),
            Some(format) => match format.get_ref().as_str() {
                "adaptivecard" => Some(TeamsFormat::AdaptiveCard),
                "messagecard" => Some(TeamsFormat::MessageCard),
                other => {
                    issues.push(ConfigIssue::new(
                        format.span(),
                        format!(
                            "`format` must be `adaptivecard` or `messagecard`, found `{other}`"
                        ),
                    ));
                    None
                }
            },
        };
        Some(TeamsSpec {
            webhook_url: webhook_url?,
            format: format?,
        })
    }
}

/// A validated `teams` notifier.
#[derive(Clone)]
pub struct TeamsSpec {
    /// The webhook; it is the credential, so it is never shown.
    pub webhook_url: SecretString,
    /// The card the webhook takes.
    pub format: TeamsFormat,
}

impl fmt::Debug for TeamsSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TeamsSpec")
            .field("webhook_url", &format_args!("***"))
            .field("format", &self.format)
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn validate(toml: &str) -> (Option<TeamsSpec>, Vec<ConfigIssue>) {
        let config: TeamsConfig = toml::from_str(toml).unwrap();
        let mut issues = Vec::new();
        (config.validate(&mut issues), issues)
    }

    fn span_of(toml: &str, needle: &str) -> std::ops::Range<usize> {
        let at = toml.find(needle).unwrap();
        at..at + needle.len()
    }

    #[test]
    fn accepts_both_formats() {
        let url = "https://prod.westeurope.logic.azure.com/workflows/SECRET";
        let (spec, issues) = validate(&format!("webhook_url = \"{url}\""));
        assert_eq!(issues, []);
        let spec = spec.unwrap();
        assert_eq!(spec.webhook_url.expose_secret(), url);
        assert_eq!(spec.format, TeamsFormat::AdaptiveCard);
        let (spec, _) = validate(&format!(
            "webhook_url = \"{url}\"\nformat = \"messagecard\""
        ));
        assert_eq!(spec.map(|s| s.format), Some(TeamsFormat::MessageCard));
    }

    #[test]
    fn collects_every_problem() {
        let toml = "webhook_url = \"http://outlook.office.com/webhook/SECRET\"\n\
                    format = \"card\"";
        let (spec, issues) = validate(toml);
        assert!(spec.is_none());
        assert_eq!(
            issues,
            [
                ConfigIssue::new(
                    span_of(toml, "\"http://outlook.office.com/webhook/SECRET\""),
                    "`webhook_url` must use `https`: plain `http` is allowed only to a loopback host"
                ),
                ConfigIssue::new(
                    span_of(toml, "\"card\""),
                    "`format` must be `adaptivecard` or `messagecard`, found `card`"
                ),
            ]
        );
        assert!(!format!("{issues:?}").contains("SECRET"));
    }

    #[test]
    fn rejects_unknown_keys() {
        let error = toml::from_str::<TeamsConfig>("webhook_url = \"https://x\"\ntitle = \"x\"")
            .unwrap_err();
        assert!(
            error.message().starts_with("unknown field `title`"),
            "{error}"
        );
    }

    #[test]
    fn never_shows_the_webhook() {
        let (spec, _) = validate("webhook_url = \"https://example.com/SECRET\"");
        assert_eq!(
            format!("{:?}", spec.unwrap()),
            "TeamsSpec { webhook_url: ***, format: AdaptiveCard }"
        );
    }
}
