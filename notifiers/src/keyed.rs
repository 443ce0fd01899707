//! What the paging channels (`pagerduty`, `opsgenie`) share: a provider's API reached
//! with one credential (sent in the body or a header, never in the URL) at a base URL
//! that defaults to the provider's and can be pointed elsewhere (an EU region, a relay,
//! a test receiver).

use std::fmt;

use secrecy::SecretString;
use toml::Spanned;
use url::Url;

use crate::validate::{self, ConfigIssue};

/// A validated paging notifier: its credential and where its API is.
#[derive(Clone)]
pub struct KeyedSpec {
    /// The routing or API key; never shown.
    pub key: SecretString,
    /// Where requests go (PagerDuty: the enqueue URL; Opsgenie: the API's base).
    pub url: Url,
}

impl KeyedSpec {
    /// Checks the key `key_name` (not empty) and `url` (`https`, or `http` to a loopback
    /// host; `default` when unset), pushing every problem to `issues`.
    pub(crate) fn validate(
        key: Spanned<SecretString>,
        key_name: &str,
        url: Option<&Spanned<String>>,
        default: &str,
        issues: &mut Vec<ConfigIssue>,
    ) -> Option<Self> {
        let key = validate::non_empty_secret(key, key_name, issues);
        let url = validate::api_url(url, "url", default, issues);
        Some(Self {
            key: key?,
            url: url?,
        })
    }
}

impl fmt::Debug for KeyedSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedSpec")
            .field("key", &format_args!("***"))
            .field("url", &self.url.as_str())
            .finish()
    }
}
