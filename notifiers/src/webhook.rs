//! The `webhook` channel's config: a URL that receives the alert JSON of SPEC.md
//! "Messages", optionally signed with a shared `secret` (HMAC-SHA256 in
//! `X-Klaxon-Signature`). Sending comes with the webhook runtime; until then
//! [`crate::Notifier::build`] reports the type as unsupported.

use std::fmt;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;
use toml::Spanned;
use url::Url;

use crate::validate::{self, ConfigIssue};

/// The raw `[notifiers.NAME]` table of `type = "webhook"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    url: Spanned<String>,
    secret: Option<Spanned<SecretString>>,
    ca_file: Option<Spanned<String>>,
}

impl WebhookConfig {
    /// Checks the URL (`http` or `https`), the secret (not empty) and `ca_file`, pushing
    /// every problem to `issues`.
    pub fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<WebhookSpec> {
        let url = validate::http_url(&self.url, "url", issues);
        let secret = match self.secret {
            None => Some(None),
            Some(secret) => validate::non_empty_secret(secret, "secret", issues).map(Some),
        };
        let ca_file = validate::ca_file(self.ca_file, issues);
        Some(WebhookSpec {
            url: url?,
            secret: secret?,
            ca_file: ca_file?,
        })
    }
}

/// A validated `webhook` notifier.
#[derive(Clone)]
pub struct WebhookSpec {
    /// Where the alert JSON is POSTed.
    pub url: Url,
    /// Signs each body when set; never shown.
    pub secret: Option<SecretString>,
    /// An extra trusted CA (PEM), as written; read when the client is built.
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for WebhookSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSpec")
            .field("url", &self.url.as_str())
            .field("secret", &self.secret.as_ref().map(|_| format_args!("***")))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn validate(toml: &str) -> (Option<WebhookSpec>, Vec<ConfigIssue>) {
        let config: WebhookConfig = toml::from_str(toml).unwrap();
        let mut issues = Vec::new();
        (config.validate(&mut issues), issues)
    }

    fn span_of(toml: &str, needle: &str) -> std::ops::Range<usize> {
        let at = toml.find(needle).unwrap();
        at..at + needle.len()
    }

    #[test]
    fn accepts_the_spec_example() {
        let (spec, issues) =
            validate("url = \"https://example.com/hook\"\nsecret = \"s3cr3t-SECRET\"");
        assert_eq!(issues, []);
        let spec = spec.unwrap();
        assert_eq!(spec.url.as_str(), "https://example.com/hook");
        assert_eq!(
            spec.secret.as_ref().map(|s| s.expose_secret()),
            Some("s3cr3t-SECRET")
        );
        assert_eq!(
            format!("{spec:?}"),
            "WebhookSpec { url: \"https://example.com/hook\", secret: Some(***), ca_file: None }"
        );
        let (spec, issues) = validate("url = \"http://10.0.0.7:8080/hook\"");
        assert_eq!(issues, []);
        assert!(spec.is_some_and(|s| s.secret.is_none()));
    }

    #[test]
    fn collects_every_problem() {
        let toml = "url = \"ftp://example.com/hook\"\nsecret = \"\"";
        let (spec, issues) = validate(toml);
        assert!(spec.is_none());
        assert_eq!(
            issues,
            [
                ConfigIssue::new(
                    span_of(toml, "\"ftp://example.com/hook\""),
                    "`url`: expected an `http` or `https` URL, found `ftp://example.com/hook`"
                ),
                ConfigIssue::new(span_of(toml, "\"\""), "`secret` must not be empty"),
            ]
        );
        let toml = "url = \"example.com/hook\"";
        assert_eq!(
            validate(toml).1,
            [ConfigIssue::new(
                span_of(toml, "\"example.com/hook\""),
                "`url`: `example.com/hook` is not a valid URL (relative URL without a base)"
            )]
        );
    }

    #[test]
    fn rejects_unknown_keys() {
        let error =
            toml::from_str::<WebhookConfig>("url = \"https://x\"\nmethod = \"PUT\"").unwrap_err();
        assert!(
            error.message().starts_with("unknown field `method`"),
            "{error}"
        );
    }
}
