//! The `http` check: its config keys, their validation, and the runtime that sends one
//! request, reads at most `max_body` of the answer and judges status, body, JSON values
//! and latency.
//!
//! Most checks share one [`reqwest::Client`] ([`default_client`]); a check with its own
//! TLS settings (`ca_file`, `tls_verify = false`) builds its own in [`HttpCheck::new`].
//!
//! With `cert_warn` or `cert_crit`, the leaf certificate of the server that gave the
//! final answer (after redirects) is read from the response and its `notAfter` judged.
//!
//! Credentials come from `basic_auth` or `bearer_token`, held as [`SecretString`] from
//! the config on: `Debug`, targets, summaries and errors never show them.
//!
//! Every answer is reported with the metrics `latency_ms` (request sent to body read),
//! `status` (the code) and `body_bytes` (bytes read, at most `max_body`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use klaxon_config_core::{SecretKey, Seg};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use toml::Spanned;
use url::Url;

use crate::cert::{self, certificate_expiry};
use crate::validate::{self, ConfigIssue};
use crate::{BuildError, CheckPlugin, Metric, Outcome, Probe, Severity, Shared, metric, text};

/// How many redirects a check follows before it fails.
pub const MAX_REDIRECTS: usize = 10;

/// `max_body` when the config does not set it: 1 MiB.
pub const DEFAULT_MAX_BODY: u64 = 1 << 20;

/// How much of the body a failed check keeps as its output.
const OUTPUT_BYTES: usize = 2048;

/// The `[jobs.NAME.check]` table of `type = "http"`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub url: Spanned<String>,
    pub method: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    pub body: Option<String>,
    /// Integers (`200`) and classes (`"2xx"`); checked in [`HttpConfig::validate`].
    pub expect_status: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    pub body_contains: Option<String>,
    pub body_regex: Option<Spanned<String>>,
    /// JSON pointer → expected value.
    #[serde(default)]
    pub json: BTreeMap<String, Spanned<toml::Value>>,
    pub warn_latency: Option<Spanned<String>>,
    pub max_latency: Option<Spanned<String>>,
    pub cert_warn: Option<Spanned<String>>,
    pub cert_crit: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub tls_verify: Option<bool>,
    pub max_body: Option<Spanned<String>>,
    /// `basic_auth = { username = "u", password = "${SECRET}" }`: HTTP Basic
    /// authentication (RFC 7617). Both must be non-empty, and the username holds no `:`.
    /// Not together with `bearer_token`, an `Authorization` header or credentials in
    /// `url`.
    pub basic_auth: Option<Spanned<BasicAuthConfig>>,
    /// `bearer_token = "${TOKEN}"`: sent as `Authorization: Bearer TOKEN` (RFC 6750).
    /// Must be non-empty; not together with `basic_auth`, an `Authorization` header or
    /// credentials in `url`.
    pub bearer_token: Option<Spanned<SecretString>>,
}

/// The `basic_auth` table of an `http` check, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// Sent as written; no `:` (it separates the two).
    pub username: Spanned<String>,
    /// Usually `${VAR}` or `${file:PATH}`; redacted from the moment it is read.
    pub password: Spanned<SecretString>,
}

/// Credentials an `http` check sends in its `Authorization` header.
#[derive(Clone)]
pub enum Auth {
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        /// Not a secret: `Debug` shows it.
        username: String,
        /// Shown as `***`.
        password: SecretString,
    },
    /// `Authorization: Bearer TOKEN`.
    Bearer(SecretString),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &format_args!("***"))
                .finish(),
            Auth::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

/// Which response statuses count as success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusRule {
    /// Exactly this code.
    Code(u16),
    /// Any code of this hundred: `Class(2)` is `2xx`.
    Class(u8),
    /// Any code in this inclusive range; the default is `200..=399`.
    Range(u16, u16),
}

impl StatusRule {
    /// Whether `code` satisfies this rule.
    pub fn matches(self, code: u16) -> bool {
        match self {
            StatusRule::Code(c) => c == code,
            StatusRule::Class(c) => code / 100 == u16::from(c),
            StatusRule::Range(lo, hi) => (lo..=hi).contains(&code),
        }
    }

    fn parse(value: &toml::Value) -> Option<StatusRule> {
        let code_in_range = |n: i64| u16::try_from(n).ok().filter(|c| (100..=599).contains(c));
        match value {
            toml::Value::Integer(n) => code_in_range(*n).map(StatusRule::Code),
            toml::Value::String(s) => {
                let s = s.trim();
                let b = s.as_bytes();
                if b.len() == 3
                    && (b'1'..=b'5').contains(&b[0])
                    && s[1..].eq_ignore_ascii_case("xx")
                {
                    Some(StatusRule::Class(b[0] - b'0'))
                } else if b.len() == 3 && b.iter().all(u8::is_ascii_digit) {
                    s.parse().ok().and_then(code_in_range).map(StatusRule::Code)
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

/// A validated `http` check.
#[derive(Clone)]
pub struct HttpSpec {
    pub url: Url,
    pub method: Method,
    /// Values are marked sensitive, so `Debug` does not print them.
    pub headers: HeaderMap,
    pub body: Option<String>,
    /// Never empty: `[Range(200, 399)]` when the config says nothing.
    pub expect_status: Vec<StatusRule>,
    pub body_contains: Option<String>,
    pub body_regex: Option<regex::Regex>,
    /// JSON pointer and the value expected there, in key order.
    pub json: Vec<(String, serde_json::Value)>,
    pub warn_latency: Option<Duration>,
    pub max_latency: Option<Duration>,
    /// Warning when the server's certificate expires within this.
    pub cert_warn: Option<Duration>,
    /// Critical when the server's certificate expires within this (or has expired).
    pub cert_crit: Option<Duration>,
    /// An extra trusted root (PEM), `~` expanded; read when the check is built.
    pub ca_file: Option<PathBuf>,
    pub tls_verify: bool,
    /// Read at most this many bytes of a response body.
    pub max_body: u64,
    /// Credentials from `basic_auth` or `bearer_token`.
    pub auth: Option<Auth>,
}

impl fmt::Debug for HttpSpec {
    // The URL may carry a password and the body a token: print neither.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSpec")
            .field("url", &self.target())
            .field("method", &self.method)
            .field("headers", &self.headers)
            .field(
                "body",
                &self.body.as_ref().map(|b| format!("{} bytes", b.len())),
            )
            .field("expect_status", &self.expect_status)
            .field("body_contains", &self.body_contains)
            .field("body_regex", &self.body_regex)
            .field("json", &self.json)
            .field("warn_latency", &self.warn_latency)
            .field("max_latency", &self.max_latency)
            .field("cert_warn", &self.cert_warn)
            .field("cert_crit", &self.cert_crit)
            .field("ca_file", &self.ca_file)
            .field("tls_verify", &self.tls_verify)
            .field("max_body", &self.max_body)
            .field("auth", &self.auth)
            .finish()
    }
}

impl HttpSpec {
    /// The URL, with a password in it shown as `***`.
    pub fn target(&self) -> String {
        let mut url = self.url.clone();
        if url.password().is_some() {
            // Cannot fail: the URL has a host, or it could not have had a password.
            let _ = url.set_password(Some("***"));
        }
        url.to_string()
    }
}

impl CheckPlugin for HttpConfig {
    type Spec = HttpSpec;
    type Runtime = HttpCheck;

    const NETWORK: bool = true;

    const SECRET_KEYS: &'static [SecretKey] = &[
        SecretKey::url(&[Seg::Key("url")]),
        SecretKey::always(&[Seg::Key("headers"), Seg::SecretName]),
        SecretKey::always(&[Seg::Key("basic_auth"), Seg::Key("password")]),
        SecretKey::always(&[Seg::Key("bearer_token")]),
    ];

    fn build(spec: &HttpSpec, shared: &Shared) -> Result<HttpCheck, BuildError> {
        HttpCheck::new(spec.clone(), shared)
    }

    /// Checks every value, pushing each problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<HttpSpec> {
        let before = issues.len();
        let url = parse_url(&self.url, issues);

        let method = match &self.method {
            None => Some(Method::GET),
            Some(m) => {
                // Methods are case-sensitive, but nobody means `get` as a different verb.
                let upper = m.get_ref().trim().to_ascii_uppercase();
                let parsed = Method::from_bytes(upper.as_bytes()).ok();
                if parsed.is_none() || upper.is_empty() {
                    issues.push(ConfigIssue::new(
                        m.span(),
                        format!("`method`: `{}` is not an HTTP method", m.get_ref()),
                    ));
                }
                parsed
            }
        };

        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
                issues.push(ConfigIssue::new(
                    value.span(),
                    format!("`headers`: `{name}` is not a valid header name"),
                ));
                continue;
            };
            match HeaderValue::from_str(value.get_ref()) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    headers.append(header, v);
                }
                // The value may be a secret: name the header, not the value.
                Err(_) => issues.push(ConfigIssue::new(
                    value.span(),
                    format!(
                        "`headers`: the value of `{name}` is not a valid header value \
                         (control characters or line breaks)"
                    ),
                )),
            }
        }

        let expect_status = match &self.expect_status {
            None => vec![StatusRule::Range(200, 399)],
            Some(list) => {
                if list.get_ref().is_empty() {
                    issues.push(ConfigIssue::new(
                        list.span(),
                        "`expect_status` must not be empty: leave it out to accept 200-399",
                    ));
                }
                list.get_ref()
                    .iter()
                    .filter_map(|v| {
                        let rule = StatusRule::parse(v.get_ref());
                        if rule.is_none() {
                            let shown = match v.get_ref() {
                                toml::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            issues.push(ConfigIssue::new(
                                v.span(),
                                format!(
                                    "`expect_status`: `{shown}` is not a status code or class \
                                     like `200` or `2xx`"
                                ),
                            ));
                        }
                        rule
                    })
                    .collect()
            }
        };

        let body_regex = self
            .body_regex
            .as_ref()
            .and_then(|r| validate::regex(r, "body_regex", issues));

        let mut json = Vec::new();
        for (pointer, expected) in &self.json {
            if !is_json_pointer(pointer) {
                issues.push(ConfigIssue::new(
                    expected.span(),
                    format!("`json`: `{pointer}` is not a JSON pointer like `/status`"),
                ));
                continue;
            }
            match to_json(expected.get_ref()) {
                Some(value) => json.push((pointer.clone(), value)),
                None => issues.push(ConfigIssue::new(
                    expected.span(),
                    format!(
                        "`json`: the value for `{pointer}` cannot be written as JSON \
                         (`nan` and `inf` cannot)"
                    ),
                )),
            }
        }

        let warn_latency = self
            .warn_latency
            .as_ref()
            .and_then(|d| validate::positive_duration(d, "warn_latency", issues));
        let max_latency = self
            .max_latency
            .as_ref()
            .and_then(|d| validate::positive_duration(d, "max_latency", issues));
        if let (Some(w), Some(m), Some(raw_w), Some(raw_m)) = (
            warn_latency,
            max_latency,
            &self.warn_latency,
            &self.max_latency,
        ) && w >= m
        {
            issues.push(ConfigIssue::new(
                raw_w.span(),
                format!(
                    "`warn_latency` (`{}`) must be less than `max_latency` (`{}`)",
                    raw_w.get_ref(),
                    raw_m.get_ref()
                ),
            ));
        }

        let (cert_warn, cert_crit) =
            cert::limits(self.cert_warn.as_ref(), self.cert_crit.as_ref(), issues);

        let ca_file = self
            .ca_file
            .as_ref()
            .and_then(|p| validate::path(p, "ca_file", issues));

        let max_body = match &self.max_body {
            None => Some(DEFAULT_MAX_BODY),
            Some(raw) => validate::size(raw, "max_body", issues).and_then(|n| {
                if n == 0 {
                    issues.push(ConfigIssue::new(
                        raw.span(),
                        "`max_body` must be greater than zero",
                    ));
                    None
                } else {
                    Some(n)
                }
            }),
        };

        let auth = auth(
            self.basic_auth,
            self.bearer_token,
            AuthElsewhere {
                header: self
                    .headers
                    .keys()
                    .any(|k| k.eq_ignore_ascii_case("authorization")),
                url: url
                    .as_ref()
                    .is_some_and(|u| !u.username().is_empty() || u.password().is_some()),
            },
            issues,
        );

        if issues.len() > before {
            return None;
        }
        Some(HttpSpec {
            url: url?,
            method: method?,
            headers,
            body: self.body,
            expect_status,
            body_contains: self.body_contains,
            body_regex,
            json,
            warn_latency,
            max_latency,
            cert_warn,
            cert_crit,
            ca_file,
            tls_verify: self.tls_verify.unwrap_or(true),
            max_body: max_body?,
            auth,
        })
    }
}

/// Other places the config already puts credentials in.
struct AuthElsewhere {
    /// `headers` has an `Authorization` header.
    header: bool,
    /// `url` has a user name or password, which reqwest would send as Basic auth.
    url: bool,
}

/// Validates `basic_auth` and `bearer_token`: at most one of them, not beside other
/// credentials, no empty values. Messages never quote a secret.
fn auth(
    basic: Option<Spanned<BasicAuthConfig>>,
    bearer: Option<Spanned<SecretString>>,
    elsewhere: AuthElsewhere,
    issues: &mut Vec<ConfigIssue>,
) -> Option<Auth> {
    if let (Some(_), Some(token)) = (&basic, &bearer) {
        issues.push(ConfigIssue::new(
            token.span(),
            "set either `basic_auth` or `bearer_token`, not both",
        ));
        return None;
    }
    let beside_other_credentials =
        |key: &str, span: std::ops::Range<usize>, issues: &mut Vec<ConfigIssue>| {
            if elsewhere.header {
                issues.push(ConfigIssue::new(
                    span.clone(),
                    format!(
                        "set either `{key}` or an `Authorization` header in `headers`, not both"
                    ),
                ));
            }
            if elsewhere.url {
                issues.push(ConfigIssue::new(
                    span,
                    format!("set either `{key}` or credentials in `url`, not both"),
                ));
            }
        };
    if let Some(basic) = basic {
        beside_other_credentials("basic_auth", basic.span(), issues);
        let BasicAuthConfig { username, password } = basic.into_inner();
        let before = issues.len();
        if username.get_ref().is_empty() {
            issues.push(ConfigIssue::new(
                username.span(),
                "`basic_auth.username` must not be empty",
            ));
        } else if username.get_ref().contains(':') {
            // RFC 7617: the colon separates the two; a server would split it there.
            issues.push(ConfigIssue::new(
                username.span(),
                "`basic_auth.username` must not contain `:`",
            ));
        } else if username.get_ref().chars().any(char::is_control) {
            issues.push(ConfigIssue::new(
                username.span(),
                "`basic_auth.username` contains control characters",
            ));
        }
        if password.get_ref().expose_secret().is_empty() {
            issues.push(ConfigIssue::new(
                password.span(),
                "`basic_auth.password` must not be empty",
            ));
        }
        return (issues.len() == before).then(|| Auth::Basic {
            username: username.into_inner(),
            password: password.into_inner(),
        });
    }
    let token = bearer?;
    beside_other_credentials("bearer_token", token.span(), issues);
    let secret = token.get_ref().expose_secret();
    if secret.is_empty() {
        issues.push(ConfigIssue::new(
            token.span(),
            "`bearer_token` must not be empty",
        ));
        return None;
    }
    // Valid alone is valid after `Bearer `; no copy of the secret is made.
    if HeaderValue::from_str(secret).is_err() {
        issues.push(ConfigIssue::new(
            token.span(),
            "`bearer_token` is not a valid header value (control characters or line breaks)",
        ));
        return None;
    }
    Some(Auth::Bearer(token.into_inner()))
}

fn parse_url(raw: &Spanned<String>, issues: &mut Vec<ConfigIssue>) -> Option<Url> {
    let text = raw.get_ref().trim();
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
        Ok(url) => {
            issues.push(ConfigIssue::new(
                raw.span(),
                format!(
                    "`url`: scheme `{}` is not supported, use `http` or `https`",
                    url.scheme()
                ),
            ));
            None
        }
        Err(e) => {
            // The URL may hold a password; the parse error alone says what is wrong.
            issues.push(ConfigIssue::new(
                raw.span(),
                format!("`url` is not a valid URL: {e}"),
            ));
            None
        }
    }
}

/// RFC 6901: empty (the whole document) or `/`-separated tokens where `~` is only ever
/// `~0` or `~1`.
fn is_json_pointer(p: &str) -> bool {
    if !(p.is_empty() || p.starts_with('/')) {
        return false;
    }
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return false;
        }
    }
    true
}

/// The JSON a TOML value stands for; datetimes become their RFC 3339 text. `None` for
/// floats JSON cannot hold.
fn to_json(value: &toml::Value) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    Some(match value {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => J::Number(serde_json::Number::from_f64(*f)?),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(items) => J::Array(items.iter().map(to_json).collect::<Option<_>>()?),
        toml::Value::Table(t) => J::Object(
            t.iter()
                .map(|(k, v)| Some((k.clone(), to_json(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

/// JSON equality where numbers compare by value: `1` equals `1.0`.
fn json_eq(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) => match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
            (Some(x), Some(y), _, _) => x == y,
            (_, _, Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// The shared client: reqwest's defaults (rustls with the platform's roots, proxies from
/// the environment), a `klaxon/VERSION` user agent, at most [`MAX_REDIRECTS`]
/// redirects, and the server's certificate kept on each response for `cert_warn`.
pub fn default_client() -> Result<reqwest::Client, reqwest::Error> {
    client_builder().build()
}

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("klaxon/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        // Costs a copy of the leaf certificate (a few KB) per HTTPS response; one client
        // for every check, with or without `cert_warn`, is worth far more (one pool, one
        // load of the platform's roots).
        .tls_info(true)
        .dns_resolver(std::sync::Arc::new(PoolResolver))
}

/// Looks names up with the system resolver (as reqwest's default does) on the checks'
/// pool, not tokio's: a slow resolver holds one of [`crate::blocking::CHECKS`]' threads.
struct PoolResolver;

impl reqwest::dns::Resolve for PoolResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let looked_up = crate::blocking::CHECKS
            .run(move || std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), 0)));
        Box::pin(async move {
            let addrs = looked_up.await??;
            Ok(Box::new(addrs) as reqwest::dns::Addrs)
        })
    }
}

/// An `http` check ready to run.
#[derive(Debug)]
pub struct HttpCheck {
    spec: HttpSpec,
    client: reqwest::Client,
    /// What the request sends as credentials, kept out of what the check reports: a
    /// server may echo them back in its answer.
    credentials: Vec<SecretString>,
}

/// Whether a request header's value is a credential: `Authorization`,
/// `Proxy-Authorization`, `Cookie`, or a name that says token, secret, password or API
/// key (`X-Api-Key`, `X-Auth-Token`). Also used for script checks' `env` names.
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie"
    ) || [
        "token", "secret", "password", "passwd", "apikey", "api-key", "api_key",
    ]
    .iter()
    .any(|word| name.contains(word))
}

impl HttpSpec {
    /// The secret values this request carries: the `basic_auth` password or
    /// `bearer_token`, the URL's password, and the values of secret headers (whole, and
    /// the credential after a scheme like `Bearer `), and Basic auth's base64 form. Short values (under 4 characters)
    /// are left out: blanking them would garble the report more than it protects.
    fn credentials(&self) -> Vec<SecretString> {
        use base64::Engine as _;
        // What `Authorization: Basic` carries, which decodes to the password at once.
        let basic = |user: &str, password: &str| {
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        };
        let mut out: Vec<String> = Vec::new();
        match &self.auth {
            Some(Auth::Basic { username, password }) => {
                out.push(password.expose_secret().to_owned());
                out.push(basic(username, password.expose_secret()));
            }
            Some(Auth::Bearer(token)) => out.push(token.expose_secret().to_owned()),
            None => {}
        }
        if let Some(password) = self.url.password() {
            out.push(password.to_owned());
            let user = percent_decode(self.url.username()).unwrap_or_default();
            if let Ok(decoded) = percent_decode(password) {
                out.push(basic(&user, &decoded));
                out.push(decoded);
            }
        }
        for (name, value) in &self.headers {
            if !is_secret_name(name.as_str()) {
                continue;
            }
            if let Ok(value) = value.to_str() {
                out.push(value.to_owned());
                if let Some((_, credential)) = value.trim().split_once(' ') {
                    out.push(credential.trim().to_owned());
                }
            }
        }
        out.retain(|v| v.chars().count() >= 4);
        // Longest first, so a whole value goes before the part of it.
        out.sort_by_key(|v| std::cmp::Reverse(v.len()));
        out.dedup();
        out.into_iter().map(SecretString::from).collect()
    }
}

/// `%XX` escapes decoded, as a URL's password is sent.
fn percent_decode(text: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
}

/// `text` with every credential replaced by `***`.
fn without_credentials(text: &mut String, credentials: &[SecretString]) {
    for c in credentials {
        let c = c.expose_secret();
        if text.contains(c) {
            *text = text.replace(c, "***");
        }
    }
}

/// What one request brought back, before it is judged.
struct Fetched {
    status: StatusCode,
    body: Vec<u8>,
    /// The body was longer than `max_body` and was cut there.
    truncated: bool,
    /// The server certificate's `notAfter`, read only when `cert_warn` or `cert_crit`
    /// is set: `None` without TLS, the reason when the certificate would not parse.
    cert_expiry: Option<Result<SystemTime, String>>,
}

impl HttpCheck {
    /// Uses the shared client, or builds one for a check with its own TLS settings.
    /// Fails when `ca_file` cannot be read or holds no certificate.
    pub fn new(spec: HttpSpec, shared: &Shared) -> Result<Self, BuildError> {
        let credentials = spec.credentials();
        if spec.ca_file.is_none() && spec.tls_verify {
            let client = shared.http.clone();
            return Ok(Self {
                spec,
                client,
                credentials,
            });
        }
        let mut builder = client_builder();
        if let Some(path) = &spec.ca_file {
            let certs = cert::read_ca_file(path)
                .map_err(BuildError::Other)?
                .iter()
                .map(|der| reqwest::Certificate::from_der(der))
                .collect::<Result<Vec<_>, _>>()?;
            builder = builder.tls_certs_merge(certs);
        }
        if !spec.tls_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        Ok(Self {
            client: builder.build()?,
            spec,
            credentials,
        })
    }

    /// The validated settings this check runs with.
    pub fn spec(&self) -> &HttpSpec {
        &self.spec
    }
}

impl Probe for HttpCheck {
    /// Sends the request and judges the answer; `timeout` bounds the request and the
    /// reading of the body together.
    async fn run(&self, timeout: Duration) -> Outcome {
        let start = tokio::time::Instant::now();
        let result = tokio::time::timeout(timeout, self.fetch()).await;
        let elapsed = start.elapsed();
        let mut outcome = match result {
            Err(_) => Outcome::new(Severity::Critical, text::timed_out(timeout), elapsed),
            Ok(Err(e)) => Outcome::new(Severity::Critical, describe_error(e), elapsed),
            Ok(Ok(fetched)) => {
                let outcome = self.judge(&fetched, elapsed);
                self.with_certificate(outcome, &fetched, SystemTime::now())
                    .with_metrics(self.metrics(&fetched, elapsed))
            }
        };
        if !self.spec.tls_verify {
            outcome.summary.push_str(" (unverified)");
        }
        if !self.credentials.is_empty() {
            without_credentials(&mut outcome.summary, &self.credentials);
            if let Some(output) = &mut outcome.output {
                without_credentials(output, &self.credentials);
            }
        }
        outcome
    }
}

impl HttpCheck {
    async fn fetch(&self) -> Result<Fetched, reqwest::Error> {
        let spec = &self.spec;
        let mut request = self
            .client
            .request(spec.method.clone(), spec.url.clone())
            .headers(spec.headers.clone());
        if let Some(body) = &spec.body {
            request = request.body(body.clone());
        }
        // reqwest marks both headers sensitive, and drops them on a redirect to
        // another host.
        request = match &spec.auth {
            None => request,
            Some(Auth::Basic { username, password }) => {
                request.basic_auth(username, Some(password.expose_secret()))
            }
            Some(Auth::Bearer(token)) => request.bearer_auth(token.expose_secret()),
        };
        let mut response = request.send().await?;
        let status = response.status();
        let cert_expiry = if spec.cert_warn.is_some() || spec.cert_crit.is_some() {
            response
                .extensions()
                .get::<reqwest::tls::TlsInfo>()
                .and_then(reqwest::tls::TlsInfo::peer_certificate)
                .map(|der| cert::not_after(der).map(|c| c.not_after))
        } else {
            None
        };
        let max = usize::try_from(spec.max_body).unwrap_or(usize::MAX);
        let mut body = Vec::new();
        let mut truncated = false;
        // Chunk by chunk so that no more than `max_body` is ever held; dropping the
        // response after a cut closes the connection instead of draining it.
        while let Some(chunk) = response.chunk().await? {
            let room = max - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            status,
            body,
            truncated,
            cert_expiry,
        })
    }

    /// `latency_ms` (with `warn_latency` and `max_latency` as its ranges), `status` and
    /// `body_bytes`.
    fn metrics(&self, fetched: &Fetched, elapsed: Duration) -> [Metric; 3] {
        let mut latency = Metric::new("latency_ms", metric::millis(elapsed))
            .with_unit("ms")
            .with_min(0.0);
        latency.warn = self
            .spec
            .warn_latency
            .map(|d| text::number(metric::millis(d)));
        latency.crit = self
            .spec
            .max_latency
            .map(|d| text::number(metric::millis(d)));
        [
            latency,
            Metric::new("status", f64::from(fetched.status.as_u16())),
            Metric::new("body_bytes", fetched.body.len() as f64)
                .with_unit("B")
                .with_min(0.0),
        ]
    }

    /// Adds the certificate's expiry to a judged answer when `cert_warn` or `cert_crit`
    /// is set: the worse of the two decides the severity, and both are named when both
    /// matter.
    fn with_certificate(&self, outcome: Outcome, fetched: &Fetched, now: SystemTime) -> Outcome {
        let spec = &self.spec;
        if spec.cert_warn.is_none() && spec.cert_crit.is_none() {
            return outcome;
        }
        let (severity, phrase) = match &fetched.cert_expiry {
            None => (
                Severity::Unknown,
                "no TLS certificate to check (the answer did not come over HTTPS)".to_owned(),
            ),
            Some(Err(reason)) => (Severity::Unknown, reason.clone()),
            Some(Ok(expiry)) => certificate_expiry(*expiry, now, spec.cert_warn, spec.cert_crit),
        };
        cert::merge(outcome, severity, phrase)
    }

    fn judge(&self, fetched: &Fetched, elapsed: Duration) -> Outcome {
        let spec = &self.spec;
        let status = status_line(fetched.status);
        let failed = |summary: String| {
            Outcome::new(Severity::Critical, summary, elapsed)
                .with_output(text::lossy_prefix(&fetched.body, OUTPUT_BYTES))
        };
        // A body check that fails on a cut body should say it saw only part of it.
        let cut = if fetched.truncated {
            format!(
                " (read only the first {} bytes, see `max_body`)",
                spec.max_body
            )
        } else {
            String::new()
        };

        let code = fetched.status.as_u16();
        if !spec.expect_status.iter().any(|r| r.matches(code)) {
            return failed(status);
        }
        if spec.body_contains.is_some() || spec.body_regex.is_some() {
            let body = String::from_utf8_lossy(&fetched.body);
            if let Some(needle) = &spec.body_contains
                && !body.contains(needle.as_str())
            {
                return failed(format!("body lacks `{needle}`{cut}"));
            }
            if let Some(re) = &spec.body_regex
                && !re.is_match(&body)
            {
                return failed(format!("body does not match `{}`{cut}", re.as_str()));
            }
        }
        if !spec.json.is_empty() {
            let doc: serde_json::Value = match serde_json::from_slice(&fetched.body) {
                Ok(doc) => doc,
                Err(e) => return failed(format!("body is not JSON: {e}{cut}")),
            };
            for (pointer, expected) in &spec.json {
                match doc.pointer(pointer) {
                    None => return failed(format!("`{pointer}` is missing")),
                    Some(found) if !json_eq(found, expected) => {
                        return failed(format!(
                            "`{pointer}` is `{}`, expected `{}`",
                            short_json(found),
                            short_json(expected)
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        let took = text::elapsed(elapsed);
        if let Some(max) = spec.max_latency
            && elapsed > max
        {
            return failed(format!("slow: {took} (max {})", text::duration(max)));
        }
        if let Some(warn) = spec.warn_latency
            && elapsed > warn
        {
            let summary = format!("slow: {took} (warn {})", text::duration(warn));
            return Outcome::new(Severity::Warning, summary, elapsed);
        }
        Outcome::new(Severity::Ok, format!("{status} in {took}"), elapsed)
    }
}

/// `HTTP 503 Service Unavailable`, or `HTTP 599` for codes without a reason phrase.
fn status_line(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

/// A JSON value for a one-line message, cut at 100 characters.
fn short_json(value: &serde_json::Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// Says in a few words why a request got no answer: reqwest's own message is a chain
/// ("error sending request for url (…): client error (Connect): tcp connect error: …")
/// that repeats the URL, which may hold a password.
fn describe_error(error: reqwest::Error) -> String {
    use std::error::Error as _;
    if error.is_redirect() {
        return format!("too many redirects (more than {MAX_REDIRECTS}), or a redirect loop");
    }
    let mut dns = false;
    let mut innermost = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = error.source();
    while let Some(e) = source {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return text::tls_failure(tls);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(tls) = text::tls_error_in(io) {
                return text::tls_failure(tls);
            }
            use std::io::ErrorKind as K;
            match io.kind() {
                K::ConnectionRefused => return "connection refused".into(),
                K::ConnectionReset => return "connection reset".into(),
                K::ConnectionAborted => return "connection aborted".into(),
                K::HostUnreachable => return "host unreachable".into(),
                K::NetworkUnreachable => return "network unreachable".into(),
                K::UnexpectedEof => return "connection closed before a response".into(),
                _ => {}
            }
        }
        let message = e.to_string();
        if message == "dns error" {
            dns = true;
        }
        innermost = Some(message);
        source = e.source();
    }
    let is_body = error.is_body() || error.is_decode();
    let innermost = innermost.unwrap_or_else(|| error.without_url().to_string());
    if dns {
        return text::dns_failure(&innermost);
    }
    if is_body {
        return format!("reading the body: {innermost}");
    }
    innermost
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::test_support::{config, issues_of};
    use klaxon_testkit::{Response, Server};

    fn spec(extra: &str, url: &str) -> HttpSpec {
        let cfg: HttpConfig = config(&format!("url = \"{url}\"\n{extra}"));
        let mut issues = Vec::new();
        let spec = cfg.validate(&mut issues);
        assert!(issues.is_empty(), "{issues:?}");
        spec.unwrap()
    }

    fn check(extra: &str, url: &str) -> HttpCheck {
        let shared = Shared::new().unwrap();
        HttpCheck::new(spec(extra, url), &shared).unwrap()
    }

    async fn run_against(response: Response, extra: &str) -> Outcome {
        let server = Server::sequence([], response).await;
        check(extra, &server.url("/health"))
            .run(Duration::from_secs(5))
            .await
    }

    // --- validation -------------------------------------------------------------------

    #[test]
    fn full_config_validates() {
        let text = r#"
url = "https://user:hunter2@api.example.com/health"
method = "post"
headers = { Accept = "application/json", Authorization = "Bearer s3cret" }
body = "{}"
expect_status = [200, "2xx", "301"]
body_contains = "ok"
body_regex = 'version":\s*"2\.'
json = { "/status" = "ok", "/n" = 1, "/list" = [1, true] }
warn_latency = "500ms"
max_latency = "2s"
cert_warn = "14d"
cert_crit = "3d"
ca_file = "/etc/ssl/ca.pem"
tls_verify = false
max_body = "64KiB"
"#;
        let cfg: HttpConfig = config(text);
        let mut issues = Vec::new();
        let spec = cfg.validate(&mut issues).unwrap();
        assert!(issues.is_empty());
        assert_eq!(spec.method, Method::POST);
        assert_eq!(
            spec.expect_status,
            vec![
                StatusRule::Code(200),
                StatusRule::Class(2),
                StatusRule::Code(301)
            ]
        );
        assert_eq!(spec.max_body, 65536);
        assert_eq!(spec.warn_latency, Some(Duration::from_millis(500)));
        assert_eq!(spec.cert_crit, Some(Duration::from_secs(3 * 86400)));
        assert!(!spec.tls_verify);
        assert_eq!(spec.json.len(), 3);
        assert_eq!(spec.target(), "https://user:***@api.example.com/health");
        let debug = format!("{spec:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("s3cret"),
            "{debug}"
        );
    }

    #[test]
    fn defaults() {
        let spec = spec("", "http://localhost:8080/");
        assert_eq!(spec.method, Method::GET);
        assert_eq!(spec.expect_status, vec![StatusRule::Range(200, 399)]);
        assert_eq!(spec.max_body, DEFAULT_MAX_BODY);
        assert!(spec.tls_verify);
        assert_eq!(spec.target(), "http://localhost:8080/");
    }

    #[test]
    fn every_invalid_value_is_reported_at_its_place() {
        let text = r#"url = "ftp://example.com/"
method = "GE T"
headers = { "Bad Name" = "x", Good = "a\nb" }
expect_status = [200, "6xx", 42, true]
body_regex = "("
json = { status = "ok", "/x" = nan }
warn_latency = "3s"
max_latency = "2 parsecs"
cert_warn = "3d"
cert_crit = "14d"
max_body = "lots"
"#;
        let issues = issues_of::<HttpConfig, _>(text, HttpConfig::validate);
        let expected = [
            (
                "\"ftp://example.com/\"",
                "`url`: scheme `ftp` is not supported, use `http` or `https`",
            ),
            ("\"GE T\"", "`method`: `GE T` is not an HTTP method"),
            ("\"x\"", "`headers`: `Bad Name` is not a valid header name"),
            (
                "\"a\\nb\"",
                "`headers`: the value of `Good` is not a valid header value (control characters or line breaks)",
            ),
            (
                "\"6xx\"",
                "`expect_status`: `6xx` is not a status code or class like `200` or `2xx`",
            ),
            (
                "42",
                "`expect_status`: `42` is not a status code or class like `200` or `2xx`",
            ),
            (
                "true",
                "`expect_status`: `true` is not a status code or class like `200` or `2xx`",
            ),
            (
                "\"(\"",
                "`body_regex`: `(` is not a valid regex: unclosed group",
            ),
            (
                "nan",
                "`json`: the value for `/x` cannot be written as JSON (`nan` and `inf` cannot)",
            ),
            (
                "\"ok\"",
                "`json`: `status` is not a JSON pointer like `/status`",
            ),
            (
                "\"2 parsecs\"",
                "`max_latency`: expected a duration like `30s`, `5m` or `1h30m`, found `2 parsecs`",
            ),
            (
                "\"14d\"",
                "`cert_crit` (`14d`) must be less than `cert_warn` (`3d`): it is the later, more urgent threshold",
            ),
            (
                "\"lots\"",
                "`max_body`: expected a size like `500MB`, `2GB` or `1GiB`, found `lots`",
            ),
        ];
        let got: Vec<(&str, &str)> = issues
            .iter()
            .map(|i| (&text[i.span.clone()], i.message.as_str()))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn more_invalid_values() {
        let cases = [
            (
                "url = \"not a url\"",
                "`url` is not a valid URL: relative URL without a base",
            ),
            (
                "url = \"http://x/\"\nexpect_status = []",
                "`expect_status` must not be empty: leave it out to accept 200-399",
            ),
            (
                "url = \"http://x/\"\nwarn_latency = \"3s\"\nmax_latency = \"2s\"",
                "`warn_latency` (`3s`) must be less than `max_latency` (`2s`)",
            ),
            (
                "url = \"http://x/\"\nmax_latency = \"0s\"",
                "`max_latency` must be greater than zero",
            ),
            (
                "url = \"http://x/\"\nmax_body = \"0B\"",
                "`max_body` must be greater than zero",
            ),
            (
                "url = \"http://x/\"\nca_file = \"\"",
                "`ca_file` must not be empty",
            ),
        ];
        for (text, message) in cases {
            let issues = issues_of::<HttpConfig, _>(text, HttpConfig::validate);
            let messages: Vec<&str> = issues.iter().map(|i| i.message.as_str()).collect();
            assert_eq!(messages, [message], "{text}");
        }
    }

    #[test]
    fn serde_rejects_unknown_and_mistyped_keys() {
        let err = crate::test_support::try_config::<HttpConfig>("url = \"http://x/\"\nurll = 1")
            .unwrap_err();
        assert!(err.message().starts_with("unknown field `urll`"), "{err}");
        let err = crate::test_support::try_config::<HttpConfig>("method = \"GET\"").unwrap_err();
        assert!(err.message().starts_with("missing field `url`"), "{err}");
        let text = "url = \"http://x/\"\ntls_verify = \"no\"";
        let err = crate::test_support::try_config::<HttpConfig>(text).unwrap_err();
        assert_eq!(&text[err.span().unwrap()], "\"no\"");
    }

    #[test]
    fn status_rules() {
        assert!(StatusRule::Class(2).matches(204));
        assert!(!StatusRule::Class(2).matches(301));
        assert!(StatusRule::Range(200, 399).matches(399));
        assert!(!StatusRule::Range(200, 399).matches(404));
        assert_eq!(StatusRule::parse(&"5XX".into()), Some(StatusRule::Class(5)));
        assert_eq!(
            StatusRule::parse(&"404".into()),
            Some(StatusRule::Code(404))
        );
        assert_eq!(StatusRule::parse(&"600".into()), None);
        assert_eq!(StatusRule::parse(&toml::Value::Integer(99)), None);
    }

    #[test]
    fn json_pointers_and_equality() {
        assert!(is_json_pointer(""));
        assert!(is_json_pointer("/a~0b/~1/0"));
        assert!(!is_json_pointer("/a~2"));
        assert!(!is_json_pointer("a"));
        let one: serde_json::Value = serde_json::from_str("1.0").unwrap();
        assert!(json_eq(&one, &serde_json::json!(1)));
        assert!(!json_eq(
            &serde_json::json!([1, 2]),
            &serde_json::json!([1])
        ));
        assert!(json_eq(
            &serde_json::json!({"a": [1, {"b": 2.0}]}),
            &serde_json::json!({"a": [1.0, {"b": 2}]})
        ));
    }

    // --- running against a real server -------------------------------------------------

    #[tokio::test]
    async fn default_status_rule_accepts_2xx_and_3xx() {
        let ok = run_against(Response::ok("fine"), "").await;
        assert_eq!(ok.severity, Severity::Ok);
        assert!(ok.summary.starts_with("HTTP 200 OK in "), "{}", ok.summary);
        assert!(ok.summary.ends_with("ms"), "{}", ok.summary);
        assert_eq!(ok.output, None);

        let not_modified = run_against(Response::status(304), "").await;
        assert_eq!(
            not_modified.severity,
            Severity::Ok,
            "{}",
            not_modified.summary
        );

        let down = run_against(Response::status(503).body("db down"), "").await;
        assert_eq!(down.severity, Severity::Critical);
        assert_eq!(down.summary, "HTTP 503 Service Unavailable");
        assert_eq!(down.output.as_deref(), Some("db down"));

        let missing = run_against(Response::status(404), "").await;
        assert_eq!(missing.summary, "HTTP 404 Not Found");
        assert_eq!(missing.severity, Severity::Critical);
    }

    #[tokio::test]
    async fn explicit_codes_and_classes() {
        let only_200 = "expect_status = [200]";
        let r = run_against(Response::status(201), only_200).await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Critical, "HTTP 201 Created")
        );
        let r = run_against(Response::status(200), only_200).await;
        assert_eq!(r.severity, Severity::Ok);

        let classes = "expect_status = [\"4xx\", 503]";
        let r = run_against(Response::status(418), classes).await;
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        assert!(
            r.summary.starts_with("HTTP 418 I'm a teapot in "),
            "{}",
            r.summary
        );
        let r = run_against(Response::status(503), classes).await;
        assert_eq!(r.severity, Severity::Ok);
        let r = run_against(Response::status(200), classes).await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Critical, "HTTP 200 OK")
        );
        let r = run_against(Response::status(599), classes).await;
        assert_eq!(r.summary, "HTTP 599");
    }

    #[tokio::test]
    async fn body_contains_and_regex() {
        let r = run_against(Response::ok("status: ok"), "body_contains = \"ok\"").await;
        assert_eq!(r.severity, Severity::Ok);
        let r = run_against(Response::ok("status: bad"), "body_contains = \"ok\"").await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Critical, "body lacks `ok`")
        );
        assert_eq!(r.output.as_deref(), Some("status: bad"));

        let re = r#"body_regex = 'version":\s*"2\.'"#;
        let r = run_against(Response::ok(r#"{"version": "2.4"}"#), re).await;
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        let r = run_against(Response::ok(r#"{"version": "1.9"}"#), re).await;
        assert_eq!(r.severity, Severity::Critical);
        assert_eq!(r.summary, r#"body does not match `version":\s*"2\.`"#);
    }

    #[tokio::test]
    async fn json_pointers() {
        let cfg = "json = { \"/status\" = \"ok\", \"/db/replicas\" = 3 }";
        let r = run_against(
            Response::ok(r#"{"status": "ok", "db": {"replicas": 3.0}}"#),
            cfg,
        )
        .await;
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);

        let r = run_against(
            Response::ok(r#"{"status": "down", "db": {"replicas": 3}}"#),
            cfg,
        )
        .await;
        assert_eq!(r.severity, Severity::Critical);
        assert_eq!(r.summary, r#"`/status` is `"down"`, expected `"ok"`"#);

        let r = run_against(Response::ok(r#"{"status": "ok"}"#), cfg).await;
        assert_eq!(r.summary, "`/db/replicas` is missing");

        let r = run_against(Response::ok("<html>"), cfg).await;
        assert_eq!(r.severity, Severity::Critical);
        assert!(r.summary.starts_with("body is not JSON: "), "{}", r.summary);
        assert_eq!(r.output.as_deref(), Some("<html>"));
    }

    #[tokio::test]
    async fn latency_thresholds() {
        let cfg = "warn_latency = \"100ms\"\nmax_latency = \"400ms\"";
        let r = run_against(Response::ok("x"), cfg).await;
        assert_eq!(r.severity, Severity::Ok);

        let r = run_against(Response::ok("x").delay(Duration::from_millis(200)), cfg).await;
        assert_eq!(r.severity, Severity::Warning);
        assert!(
            r.summary.starts_with("slow: ") && r.summary.ends_with("ms (warn 100ms)"),
            "{}",
            r.summary
        );

        let r = run_against(Response::ok("x").delay(Duration::from_millis(600)), cfg).await;
        assert_eq!(r.severity, Severity::Critical);
        assert!(
            r.summary.starts_with("slow: ") && r.summary.ends_with("ms (max 400ms)"),
            "{}",
            r.summary
        );
        assert!(r.duration >= Duration::from_millis(600));
    }

    #[tokio::test]
    async fn a_hanging_server_times_out_on_time() {
        let server =
            Server::sequence([], Response::ok("late").delay(Duration::from_secs(30))).await;
        let check = check("", &server.url("/"));
        let start = std::time::Instant::now();
        let r = check.run(Duration::from_millis(300)).await;
        let took = start.elapsed();
        assert_eq!(r.severity, Severity::Critical);
        assert_eq!(r.summary, "timed out after 300ms");
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(2), "returned after {took:?}");
    }

    #[tokio::test]
    async fn connection_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let r = check("", &format!("http://{addr}/"))
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Critical, "connection refused")
        );
    }

    #[tokio::test]
    async fn unknown_host() {
        // `.invalid` never resolves (RFC 6761), and the resolver answers without a network.
        let r = check("", "http://no-such-host.invalid/")
            .run(Duration::from_secs(10))
            .await;
        assert_eq!(r.severity, Severity::Critical);
        assert!(r.summary.starts_with("DNS: "), "{}", r.summary);
    }

    #[tokio::test]
    async fn redirect_loop_fails_clearly() {
        let server = Server::start(|_| Response::status(302).header("Location", "/again")).await;
        let r = check("", &server.url("/"))
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.severity, Severity::Critical);
        assert_eq!(
            r.summary,
            "too many redirects (more than 10), or a redirect loop"
        );
        // The first request and ten redirects followed, then it gave up.
        assert_eq!(server.requests().len(), MAX_REDIRECTS + 1);
    }

    #[tokio::test]
    async fn redirects_are_followed() {
        let server = Server::start(|req| {
            if req.path == "/old" {
                Response::status(301).header("Location", "/new")
            } else {
                Response::ok("here")
            }
        })
        .await;
        let r = check("expect_status = [200]", &server.url("/old"))
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["/old", "/new"]);
    }

    #[tokio::test]
    async fn a_huge_body_is_read_only_up_to_max_body() {
        let big = vec![b'a'; 5_000_000];
        let server = Server::sequence([], Response::ok(big)).await;
        let check = check(
            "max_body = \"64KiB\"\nbody_contains = \"b\"",
            &server.url("/"),
        );
        let fetched = check.fetch().await.unwrap();
        assert_eq!(fetched.body.len(), 65536);
        assert!(fetched.truncated);

        let r = check.run(Duration::from_secs(5)).await;
        assert_eq!(r.severity, Severity::Critical);
        assert_eq!(
            r.summary,
            "body lacks `b` (read only the first 65536 bytes, see `max_body`)"
        );
        let output = r.output.unwrap();
        assert!(output.len() < 2100, "{}", output.len());
        assert!(output.ends_with("[… 63488 more bytes …]"), "{output}");

        // The default cap of 1 MiB applies too, and a cut body with no body rule is fine.
        let server = Server::sequence([], Response::ok(vec![b'a'; 5_000_000])).await;
        let default = check_default(&server).await;
        assert_eq!(default.body.len(), 1 << 20);
    }

    async fn check_default(server: &Server) -> Fetched {
        let check = check("", &server.url("/"));
        let r = check.run(Duration::from_secs(5)).await;
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        check.fetch().await.unwrap()
    }

    #[tokio::test]
    async fn method_headers_and_body_are_sent() {
        let server = Server::sequence([], Response::ok("ok")).await;
        let cfg = "method = \"put\"\nheaders = { \"X-Token\" = \"abc\", Accept = \"text/plain\" }\nbody = \"hello\"";
        let r = check(cfg, &server.url("/items?x=1"))
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.severity, Severity::Ok);
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let req = &requests[0];
        assert_eq!(req.method, "PUT");
        assert_eq!(req.path, "/items?x=1");
        assert_eq!(req.header("x-token"), Some("abc"));
        assert_eq!(req.header("accept"), Some("text/plain"));
        assert_eq!(req.text(), "hello");
        assert_eq!(
            req.header("user-agent"),
            Some(concat!("klaxon/", env!("CARGO_PKG_VERSION")))
        );
    }

    #[tokio::test]
    async fn unverified_checks_say_so() {
        let server = Server::sequence([], Response::status(500)).await;
        let r = check("tls_verify = false", &server.url("/"))
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.summary, "HTTP 500 Internal Server Error (unverified)");
    }

    // --- TLS and certificate expiry, against a real HTTPS server -----------------------

    use crate::test_support::{TestCa, TlsServer, self_signed};

    /// A check of `server` trusting `ca` through `ca_file`, with `extra` config.
    fn tls_check(
        ca: &TestCa,
        dir: &tempfile::TempDir,
        server: &TlsServer,
        extra: &str,
    ) -> HttpCheck {
        let ca_file = ca.write_pem(dir.path());
        let cfg = format!("ca_file = {:?}\n{extra}", ca_file.display().to_string());
        check(&cfg, &server.url("/health"))
    }

    const CERT_LIMITS: &str = "cert_warn = \"14d\"\ncert_crit = \"3d\"";

    #[tokio::test]
    async fn a_certificate_from_a_trusted_ca_is_ok() {
        let ca = TestCa::new();
        let dir = tempfile::tempdir().unwrap();
        let server = TlsServer::start(&ca.leaf(&["localhost"], 89)).await;

        let r = tls_check(&ca, &dir, &server, "")
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        assert!(
            r.summary.starts_with("HTTP 200 OK in ") && r.summary.ends_with("ms"),
            "{}",
            r.summary
        );

        // With limits, the expiry is added; twice, as the second request reuses the
        // pooled connection and must still see the certificate.
        let check = tls_check(&ca, &dir, &server, CERT_LIMITS);
        for _ in 0..2 {
            let r = check.run(Duration::from_secs(5)).await;
            assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
            assert!(
                r.summary.starts_with("HTTP 200 OK in ")
                    && r.summary.ends_with("ms; certificate expires in 89 days"),
                "{}",
                r.summary
            );
        }
    }

    #[tokio::test]
    async fn expiry_within_the_limits_warns_then_is_critical() {
        let ca = TestCa::new();
        let dir = tempfile::tempdir().unwrap();

        let server = TlsServer::start(&ca.leaf(&["localhost"], 10)).await;
        let r = tls_check(&ca, &dir, &server, CERT_LIMITS)
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Warning, "certificate expires in 10 days")
        );

        let server = TlsServer::start(&ca.leaf(&["localhost"], 2)).await;
        let r = tls_check(&ca, &dir, &server, CERT_LIMITS)
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Critical, "certificate expires in 2 days")
        );

        // Only `cert_crit`: 10 days left is fine.
        let server = TlsServer::start(&ca.leaf(&["localhost"], 10)).await;
        let r = tls_check(&ca, &dir, &server, "cert_crit = \"3d\"")
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        assert!(
            r.summary.ends_with("; certificate expires in 10 days"),
            "{}",
            r.summary
        );
    }

    #[tokio::test]
    async fn an_expired_certificate_is_critical() {
        let ca = TestCa::new();
        let dir = tempfile::tempdir().unwrap();
        let server = TlsServer::start(&ca.leaf(&["localhost"], -2)).await;

        // Verified: the handshake fails, and says why.
        let r = tls_check(&ca, &dir, &server, CERT_LIMITS)
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.severity, Severity::Critical);
        assert!(
            r.summary == "TLS: certificate expired 1 day ago",
            "{}",
            r.summary
        );

        // Unverified: the handshake succeeds and the expiry is read from the certificate.
        let r = check(
            &format!("tls_verify = false\n{CERT_LIMITS}"),
            &server.url("/"),
        )
        .run(Duration::from_secs(5))
        .await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (
                Severity::Critical,
                "certificate expired 1 day ago (unverified)"
            )
        );
    }

    #[tokio::test]
    async fn a_certificate_for_another_host_fails() {
        let ca = TestCa::new();
        let dir = tempfile::tempdir().unwrap();
        let server = TlsServer::start(&ca.leaf(&["other.example"], 89)).await;
        let r = tls_check(&ca, &dir, &server, "")
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.severity, Severity::Critical);
        assert_eq!(
            r.summary,
            "TLS: invalid peer certificate: certificate not valid for name \"localhost\"; \
             certificate is only valid for DnsName(\"other.example\")"
        );
    }

    #[tokio::test]
    async fn a_self_signed_certificate_needs_trust_or_tls_verify_false() {
        let leaf = self_signed(&["localhost"], 89);
        let server = TlsServer::start(&leaf).await;

        let r = check("", &server.url("/"))
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.severity, Severity::Critical);
        assert_eq!(r.summary, "TLS: certificate signed by an unknown issuer");

        let r = check("tls_verify = false", &server.url("/"))
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        assert!(
            r.summary.starts_with("HTTP 200 OK in ") && r.summary.ends_with("ms (unverified)"),
            "{}",
            r.summary
        );

        // Trusting the certificate itself through `ca_file` works too.
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("self.pem");
        std::fs::write(&pem, &leaf.pem).unwrap();
        let r = check(
            &format!("ca_file = {:?}\n{CERT_LIMITS}", pem.display().to_string()),
            &server.url("/"),
        )
        .run(Duration::from_secs(5))
        .await;
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        assert!(
            r.summary.ends_with("; certificate expires in 89 days"),
            "{}",
            r.summary
        );
    }

    #[tokio::test]
    async fn certificate_limits_on_plain_http_cannot_be_checked() {
        let r = run_against(Response::ok("fine"), CERT_LIMITS).await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (
                Severity::Unknown,
                "no TLS certificate to check (the answer did not come over HTTPS)"
            )
        );
        // A failed answer keeps its own summary first.
        let r = run_against(Response::status(503), CERT_LIMITS).await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (
                Severity::Unknown,
                "no TLS certificate to check (the answer did not come over HTTPS); HTTP 503 Service Unavailable"
            )
        );
    }

    #[test]
    fn expiry_phrases_and_severities() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let day = Duration::from_secs(86_400);
        let (warn, crit) = (Some(14 * day), Some(3 * day));
        let cases = [
            (
                now + 89 * day,
                Severity::Ok,
                "certificate expires in 89 days",
            ),
            (
                now + 14 * day + Duration::from_secs(1),
                Severity::Ok,
                "certificate expires in 14 days",
            ),
            (
                now + 14 * day,
                Severity::Warning,
                "certificate expires in 14 days",
            ),
            (
                now + 3 * day,
                Severity::Critical,
                "certificate expires in 3 days",
            ),
            (
                now + day,
                Severity::Critical,
                "certificate expires in 1 day",
            ),
            (
                now + Duration::from_secs(5 * 3600 + 59),
                Severity::Critical,
                "certificate expires in 5 hours",
            ),
            (
                now + Duration::from_secs(61),
                Severity::Critical,
                "certificate expires in 1 minute",
            ),
            (
                now + Duration::from_secs(59),
                Severity::Critical,
                "certificate expires in less than a minute",
            ),
            (
                now - Duration::from_secs(3600),
                Severity::Critical,
                "certificate expired 1 hour ago",
            ),
            (
                now - 40 * day,
                Severity::Critical,
                "certificate expired 40 days ago",
            ),
        ];
        for (expiry, severity, phrase) in cases {
            assert_eq!(
                certificate_expiry(expiry, now, warn, crit),
                (severity, phrase.to_owned())
            );
        }
        // Without `cert_crit`, only expiry itself is critical.
        assert_eq!(
            certificate_expiry(now + day, now, warn, None).0,
            Severity::Warning
        );
    }

    #[test]
    fn unreadable_ca_file_fails_the_build() {
        let shared = Shared::new().unwrap();
        let dir = std::env::temp_dir().join(format!("klaxon-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let s = spec(
            &format!("ca_file = {:?}", missing.display().to_string()),
            "https://x/",
        );
        let err = HttpCheck::new(s, &shared).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "`ca_file` `{}`: No such file or directory (os error 2)",
                missing.display()
            )
        );

        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let s = spec(
            &format!("ca_file = {:?}", junk.display().to_string()),
            "https://x/",
        );
        let err = HttpCheck::new(s, &shared).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("`ca_file` `{}`: no PEM certificate in it", junk.display())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // --- credentials ------------------------------------------------------------------

    #[test]
    fn credentials_validate_and_never_show() {
        let s = spec(
            "basic_auth = { username = \"user\", password = \"hunter2\" }",
            "http://x/",
        );
        assert!(
            matches!(&s.auth, Some(Auth::Basic { username, .. }) if username == "user"),
            "{:?}",
            s.auth
        );
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(
            debug.contains("auth: Some(Basic { username: \"user\", password: *** })"),
            "{debug}"
        );

        let s = spec("bearer_token = \"s3cret-token\"", "http://x/");
        assert!(matches!(s.auth, Some(Auth::Bearer(_))));
        let debug = format!("{s:?}");
        assert!(!debug.contains("s3cret-token"), "{debug}");
        assert!(debug.contains("auth: Some(Bearer(***))"), "{debug}");
        assert_eq!(s.target(), "http://x/");

        // The raw config does not print them either.
        let raw: HttpConfig = config(
            "url = \"http://x/\"\nbasic_auth = { username = \"u\", password = \"hunter2\" }\nbearer_token = \"s3cret-token\"",
        );
        let debug = format!("{raw:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("s3cret-token"),
            "{debug}"
        );
    }

    #[test]
    fn credential_mistakes_are_located() {
        let cases = [
            (
                "basic_auth = { username = \"u\", password = \"p\" }\nbearer_token = \"t\"",
                "\"t\"",
                vec!["set either `basic_auth` or `bearer_token`, not both"],
            ),
            (
                "headers = { authorization = \"Basic x\" }\nbasic_auth = { username = \"u\", password = \"p\" }",
                "{ username = \"u\", password = \"p\" }",
                vec!["set either `basic_auth` or an `Authorization` header in `headers`, not both"],
            ),
            (
                "headers = { Authorization = \"Bearer x\" }\nbearer_token = \"t\"",
                "\"t\"",
                vec![
                    "set either `bearer_token` or an `Authorization` header in `headers`, not both",
                ],
            ),
            (
                "basic_auth = { username = \"\", password = \"\" }",
                "\"\"",
                vec![
                    "`basic_auth.username` must not be empty",
                    "`basic_auth.password` must not be empty",
                ],
            ),
            (
                "basic_auth = { username = \"a:b\", password = \"p\" }",
                "\"a:b\"",
                vec!["`basic_auth.username` must not contain `:`"],
            ),
            (
                "basic_auth = { username = \"a\\nb\", password = \"p\" }",
                "\"a\\nb\"",
                vec!["`basic_auth.username` contains control characters"],
            ),
            (
                "bearer_token = \"\"",
                "\"\"",
                vec!["`bearer_token` must not be empty"],
            ),
            (
                "url = \"http://me:pw@x/\"\nbearer_token = \"t\"",
                "\"t\"",
                vec!["set either `bearer_token` or credentials in `url`, not both"],
            ),
            (
                "url = \"http://me@x/\"\nheaders = { AUTHORIZATION = \"x\" }\nbasic_auth = { username = \"u\", password = \"p\" }",
                "{ username = \"u\", password = \"p\" }",
                vec![
                    "set either `basic_auth` or an `Authorization` header in `headers`, not both",
                    "set either `basic_auth` or credentials in `url`, not both",
                ],
            ),
            (
                "bearer_token = \"line\\nbreak-s3cret\"",
                "\"line\\nbreak-s3cret\"",
                vec![
                    "`bearer_token` is not a valid header value (control characters or line breaks)",
                ],
            ),
        ];
        for (extra, at, messages) in cases {
            let text = if extra.starts_with("url") {
                extra.to_owned()
            } else {
                format!("url = \"http://x/\"\n{extra}")
            };
            let issues = issues_of::<HttpConfig, _>(&text, HttpConfig::validate);
            let got: Vec<&str> = issues.iter().map(|i| i.message.as_str()).collect();
            assert_eq!(got, messages, "{extra}");
            assert_eq!(&text[issues[0].span.clone()], at, "{extra}");
        }

        // A missing password is serde's error, and an unknown key inside the table too.
        let err = crate::test_support::try_config::<HttpConfig>(
            "url = \"http://x/\"\nbasic_auth = { username = \"u\" }",
        )
        .unwrap_err();
        assert!(
            err.message().starts_with("missing field `password`"),
            "{err}"
        );
        let err = crate::test_support::try_config::<HttpConfig>(
            "url = \"http://x/\"\nbasic_auth = { username = \"u\", password = \"p\", realm = \"r\" }",
        )
        .unwrap_err();
        assert!(err.message().starts_with("unknown field `realm`"), "{err}");
    }

    #[tokio::test]
    async fn credentials_a_server_echoes_are_kept_out_of_the_report() {
        // The server quotes every header it got, and the query, in its refusal.
        let echo = |r: &klaxon_testkit::Request| {
            let headers: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            Response::status(401).body(format!("denied {}\n{}", r.path, headers.join("\n")))
        };
        let cases = [
            ("bearer_token = \"tok-s3cret\"", "http://127.0.0.1:PORT/a"),
            (
                "basic_auth = { username = \"u\", password = \"pw-s3cret\" }",
                "http://127.0.0.1:PORT/a",
            ),
            (
                "headers = { Authorization = \"Token hdr-s3cret\", \"X-Api-Key\" = \"key-s3cret\" }",
                "http://127.0.0.1:PORT/a",
            ),
            ("", "http://user:url%2Ds3cret@127.0.0.1:PORT/a"),
        ];
        for (cfg, url) in cases {
            let server = Server::start(echo).await;
            let url = url.replace("PORT", &server.addr().port().to_string());
            let r = check(cfg, &url).run(Duration::from_secs(5)).await;
            let output = r.output.clone().unwrap();
            assert!(output.starts_with("denied /a"), "{output}");
            assert!(output.contains("***"), "{cfg}: {output}");
            assert!(!output.contains("s3cret"), "{cfg}: {output}");
            assert!(!r.summary.contains("s3cret"), "{cfg}: {}", r.summary);
        }
        // Headers that are not credentials are reported as they came.
        let server = Server::start(echo).await;
        let r = check("headers = { Accept = \"text/plain\" }", &server.url("/a"))
            .run(Duration::from_secs(5))
            .await;
        assert!(r.output.unwrap().contains("accept: text/plain"));
    }

    #[tokio::test]
    async fn credentials_are_sent_in_the_authorization_header() {
        let cases = [
            (
                "basic_auth = { username = \"user\", password = \"hunter2\" }",
                "Basic dXNlcjpodW50ZXIy",
            ),
            (
                // Spaces and non-ASCII are sent as UTF-8, as RFC 7617 recommends.
                "basic_auth = { username = \"o'brien\", password = \"päss word\" }",
                "Basic bydicmllbjpww6RzcyB3b3Jk",
            ),
            (
                "bearer_token = \"eyJhbGciOi.s3cret\"",
                "Bearer eyJhbGciOi.s3cret",
            ),
        ];
        for (cfg, expected) in cases {
            let server = Server::sequence([], Response::status(401)).await;
            let r = check(cfg, &server.url("/private"))
                .run(Duration::from_secs(5))
                .await;
            // The answer does not leak the credentials into the summary or output.
            assert_eq!(
                (r.severity, r.summary.as_str(), r.output.as_deref()),
                (Severity::Critical, "HTTP 401 Unauthorized", None),
                "{cfg}"
            );
            let requests = server.requests();
            assert_eq!(requests.len(), 1);
            assert_eq!(requests[0].header("authorization"), Some(expected), "{cfg}");
            let count = requests[0]
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                .count();
            assert_eq!(count, 1, "{cfg}");
        }

        // Without credentials, no header at all.
        let server = Server::sequence([], Response::ok("public")).await;
        check("", &server.url("/"))
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(server.requests()[0].header("authorization"), None);
    }

    // --- metrics ----------------------------------------------------------------------

    #[tokio::test]
    async fn answers_carry_latency_status_and_body_size() {
        let cfg = "warn_latency = \"500ms\"\nmax_latency = \"2s\"";
        let r = run_against(Response::status(503).body("db down"), cfg).await;
        assert_eq!(r.severity, Severity::Critical);
        let names: Vec<&str> = r.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["latency_ms", "status", "body_bytes"]);

        let latency = &r.metrics[0];
        assert_eq!(latency.unit.as_deref(), Some("ms"));
        assert_eq!(
            (
                latency.warn.as_deref(),
                latency.crit.as_deref(),
                latency.min
            ),
            (Some("500"), Some("2000"), Some(0.0))
        );
        // The latency is the try's own duration.
        assert_eq!(latency.value, crate::metric::millis(r.duration));
        assert!(latency.value > 0.0);

        assert_eq!(r.metrics[1], Metric::new("status", 503.0));
        assert_eq!(
            r.metrics[2],
            Metric::new("body_bytes", 7.0).with_unit("B").with_min(0.0)
        );

        // No answer, nothing measured.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let r = check("", &format!("http://{addr}/"))
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.summary, "connection refused");
        assert_eq!(r.metrics, []);
    }

    // --- hostile servers, over raw sockets ----------------------------------------------

    /// Serves every connection with `serve`, after reading the request head, on a
    /// loopback port; the task ends with the test's runtime.
    async fn raw_server<F, Fut>(serve: F) -> std::net::SocketAddr
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                tokio::spawn(serve(socket));
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_slow_drip_body_times_out_on_time() {
        use tokio::io::AsyncWriteExt;
        let addr = raw_server(|mut socket| async move {
            let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n";
            if socket.write_all(head).await.is_err() {
                return;
            }
            // One byte every 200 ms, forever: each read makes progress, none finishes.
            loop {
                if socket.write_all(b"x").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        let check = check("body_contains = \"ok\"", &format!("http://{addr}/"));
        let start = std::time::Instant::now();
        let r = check.run(Duration::from_millis(900)).await;
        let took = start.elapsed();
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Critical, "timed out after 900ms")
        );
        assert_eq!(r.metrics, []);
        assert!(r.duration >= Duration::from_millis(900), "{:?}", r.duration);
        assert!(r.duration <= took);
        assert!(took < Duration::from_secs(3), "returned after {took:?}");
    }

    #[tokio::test]
    async fn an_endless_chunked_body_is_cut_at_max_body() {
        use tokio::io::AsyncWriteExt;
        let addr = raw_server(|mut socket| async move {
            let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
            if socket.write_all(head).await.is_err() {
                return;
            }
            let chunk = format!("{:x}\r\n{}\r\n", 4096, "y".repeat(4096));
            // Until the client hangs up: the body has no end.
            while socket.write_all(chunk.as_bytes()).await.is_ok() {}
        })
        .await;
        let r = check("max_body = \"100KiB\"", &format!("http://{addr}/"))
            .run(Duration::from_secs(10))
            .await;
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        assert!(r.summary.starts_with("HTTP 200 OK in "), "{}", r.summary);
        assert_eq!(
            r.metrics[2],
            Metric::new("body_bytes", 102_400.0)
                .with_unit("B")
                .with_min(0.0)
        );

        // A body rule on the cut body fails and says it saw only part of it.
        let r = check(
            "max_body = \"100KiB\"\nbody_contains = \"end\"",
            &format!("http://{addr}/"),
        )
        .run(Duration::from_secs(10))
        .await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (
                Severity::Critical,
                "body lacks `end` (read only the first 102400 bytes, see `max_body`)"
            )
        );
        assert!(r.output.unwrap().len() < 2100);
    }

    #[tokio::test]
    async fn every_outcome_carries_its_duration() {
        // An answer after a delay.
        let server =
            Server::sequence([], Response::ok("x").delay(Duration::from_millis(300))).await;
        let start = std::time::Instant::now();
        let r = check("", &server.url("/"))
            .run(Duration::from_secs(5))
            .await;
        let took = start.elapsed();
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        assert!(r.duration >= Duration::from_millis(300), "{:?}", r.duration);
        assert!(r.duration <= took, "{:?} > {took:?}", r.duration);

        // A timeout: at least the timeout, at most the call.
        let server = Server::sequence([], Response::ok("x").delay(Duration::from_secs(30))).await;
        let start = std::time::Instant::now();
        let r = check("", &server.url("/"))
            .run(Duration::from_millis(200))
            .await;
        let took = start.elapsed();
        assert_eq!(r.summary, "timed out after 200ms");
        assert!(r.duration >= Duration::from_millis(200), "{:?}", r.duration);
        assert!(r.duration <= took, "{:?} > {took:?}", r.duration);

        // A failure to connect: short, but measured.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let start = std::time::Instant::now();
        let r = check("", &format!("http://{addr}/"))
            .run(Duration::from_secs(5))
            .await;
        let took = start.elapsed();
        assert_eq!(r.summary, "connection refused");
        assert!(
            r.duration > Duration::ZERO && r.duration <= took,
            "{:?}",
            r.duration
        );
    }
}
