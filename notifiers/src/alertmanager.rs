//! The `alertmanager` channel's config: one or more Prometheus Alertmanager URLs, every
//! one of which gets each alert (a cluster deduplicates). Sending comes with the
//! Alertmanager runtime; until then [`crate::Notifier::build`] reports the type as
//! unsupported.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;
use url::Url;

use crate::validate::{self, ConfigIssue};

/// The raw `[notifiers.NAME]` table of `type = "alertmanager"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    urls: Spanned<Vec<Spanned<String>>>,
    ca_file: Option<Spanned<String>>,
}

impl AlertmanagerConfig {
    /// Checks that there is at least one URL and that each is `http` or `https`, pushing
    /// every problem to `issues`.
    pub fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<AlertmanagerSpec> {
        if self.urls.get_ref().is_empty() {
            issues.push(ConfigIssue::new(
                self.urls.span(),
                "`urls` must list at least one Alertmanager URL",
            ));
        }
        let urls: Vec<Option<Url>> = self
            .urls
            .get_ref()
            .iter()
            .map(|url| validate::http_url(url, "urls", issues))
            .collect();
        let ca_file = validate::ca_file(self.ca_file, issues);
        let urls: Vec<Url> = urls.into_iter().collect::<Option<_>>()?;
        if urls.is_empty() {
            return None;
        }
        Some(AlertmanagerSpec {
            urls,
            ca_file: ca_file?,
        })
    }
}

/// A validated `alertmanager` notifier.
#[derive(Debug, Clone)]
pub struct AlertmanagerSpec {
    /// At least one base URL, e.g. `http://127.0.0.1:9093`.
    pub urls: Vec<Url>,
    /// An extra trusted CA (PEM), as written; read when the client is built.
    pub ca_file: Option<PathBuf>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn validate(toml: &str) -> (Option<AlertmanagerSpec>, Vec<ConfigIssue>) {
        let config: AlertmanagerConfig = toml::from_str(toml).unwrap();
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
            validate("urls = [\"http://127.0.0.1:9093\", \"https://am.example.com\"]");
        assert_eq!(issues, []);
        let urls: Vec<String> = spec.unwrap().urls.iter().map(Url::to_string).collect();
        assert_eq!(urls, ["http://127.0.0.1:9093/", "https://am.example.com/"]);
    }

    #[test]
    fn collects_every_problem() {
        let toml =
            "urls = [\"http://ok:9093\", \"am:9093\", \"unix:///run/am.sock\"]\nca_file = \" \"";
        let (spec, issues) = validate(toml);
        assert!(spec.is_none());
        assert_eq!(
            issues,
            [
                ConfigIssue::new(
                    span_of(toml, "\"am:9093\""),
                    "`urls`: expected an `http` or `https` URL, found `am:9093`"
                ),
                ConfigIssue::new(
                    span_of(toml, "\"unix:///run/am.sock\""),
                    "`urls`: expected an `http` or `https` URL, found `unix:///run/am.sock`"
                ),
                ConfigIssue::new(span_of(toml, "\" \""), "`ca_file` must not be empty"),
            ]
        );
        let toml = "urls = []";
        assert_eq!(
            validate(toml).1,
            [ConfigIssue::new(
                span_of(toml, "[]"),
                "`urls` must list at least one Alertmanager URL"
            )]
        );
    }

    #[test]
    fn rejects_unknown_keys() {
        let error = toml::from_str::<AlertmanagerConfig>("url = \"http://x\"").unwrap_err();
        assert!(
            error.message().starts_with("unknown field `url`"),
            "{error}"
        );
    }
}
