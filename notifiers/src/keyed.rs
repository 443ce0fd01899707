//! What the paging channels (`pagerduty`, `opsgenie`) share: a provider's API reached
//! with one credential (sent in the body or a header, never in the URL) at a base URL
//! that defaults to the provider's and can be pointed elsewhere (an EU region, a relay,
//! a test receiver). Each provider's module says how an alert becomes a request
//! ([`Api`]); the runtime that posts it ([`Keyed`]) is this one.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use toml::Spanned;
use url::Url;

use crate::http::{self, HttpShell};
use crate::validate::{self, ConfigIssue};
use crate::{Alert, Channel, DeliveryError};

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

/// One request to a provider's API: where, with which extra headers, and its JSON body.
pub struct ApiRequest {
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// How one provider's API takes an alert.
pub trait Api: fmt::Debug + Send + Sync + 'static {
    /// The request for `alert` to the API `spec` names. A key no request can carry is a
    /// [`DeliveryError::Reject`].
    fn request(alert: &Alert, spec: &KeyedSpec) -> Result<ApiRequest, DeliveryError>;
}

/// A paging notifier ready to send, posting what its [`Api`] makes of each alert.
#[derive(Debug)]
pub struct Keyed<A> {
    spec: KeyedSpec,
    http: HttpShell,
    api: PhantomData<fn() -> A>,
}

impl<A: Api> Keyed<A> {
    /// How long one delivery may take, answer included.
    pub const TIMEOUT: Duration = Duration::from_secs(10);

    /// A notifier posting through `client` (the agent's shared HTTP client).
    pub fn new(spec: KeyedSpec, client: reqwest::Client) -> Self {
        Self {
            spec,
            http: HttpShell::shared(client, Self::TIMEOUT),
            api: PhantomData,
        }
    }

    /// The same notifier with another delivery deadline than [`Keyed::TIMEOUT`].
    pub fn with_timeout(self, timeout: Duration) -> Self {
        let http = self.http.with_timeout(timeout);
        Self { http, ..self }
    }
}

impl<A: Api> Channel for Keyed<A> {
    /// POSTs the [`Api`]'s request. 2xx (both providers answer 202) is delivered; 408,
    /// 429 (with its `Retry-After`, when given), 5xx, connection errors and timeouts are
    /// [`DeliveryError::Retry`]; other statuses are [`DeliveryError::Reject`] quoting the
    /// start of the answer. No reason contains the key, even when the answer quotes it.
    async fn send(&self, alert: &Alert) -> Result<(), DeliveryError> {
        let ApiRequest { url, headers, body } = A::request(alert, &self.spec)?;
        let sent = self.http.post_json_with(url, headers, body).await;
        http::hiding(sent, self.spec.key.expose_secret())
    }
}
