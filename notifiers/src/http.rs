//! How the HTTP channels deliver: one request of a JSON body (a POST, or what a
//! [`JsonRequest`] says) with a deadline, the answer classified as delivered, worth a
//! retry (after the receiver's `Retry-After`, or the wait a provider gives in a 429's
//! body), or rejected. Reasons never contain the URL, which for chat webhooks is the
//! credential itself.
//!
//! Redirects are never followed: reqwest would turn the POST into a GET on a 301, 302
//! or 303, the GET could answer 200, and the message would count as delivered while no
//! receiver ever read it. A 3xx is a rejection naming the status and the host it points
//! to (never its path or query, which may be another webhook's credential).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};

use crate::{BuildError, DeliveryError};

/// How much of a refusing receiver's body a reason quotes.
pub(crate) const BODY_CHARS: usize = 500;
/// A receiver's `Retry-After` is honoured up to this; undelivered messages are given up
/// on after a day anyway.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);
/// Bytes of a response body read at most: enough for [`BODY_CHARS`] characters.
const BODY_BYTES: usize = 4 * BODY_CHARS;

/// POSTs `body` as `application/json` to `url` and classifies the answer: 2xx is
/// delivered; 408, 429 and 5xx are worth a retry (honouring `Retry-After`); a 3xx is
/// rejected naming the host of its `Location` (see [`redirect_error`]; `client` must
/// follow no redirects, as [`delivery_client`]'s do); other statuses are rejected with
/// the start of the receiver's body; connection errors and timeouts
/// (the whole exchange must finish within `timeout`) are worth a retry.
pub(crate) async fn post_json<U>(
    client: &reqwest::Client,
    url: U,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(), DeliveryError>
where
    U: reqwest::IntoUrl + AsRef<str> + Clone,
{
    post_json_with(client, url, HeaderMap::new(), body, timeout).await
}

/// [`post_json`] with more request headers (a signature, a `User-Agent`). `url` is a
/// `&str` or, for a notifier that keeps its URL parsed, a [`url::Url`] (not parsed
/// again for every message).
pub(crate) async fn post_json_with<U>(
    client: &reqwest::Client,
    url: U,
    headers: HeaderMap,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(), DeliveryError>
where
    U: reqwest::IntoUrl + AsRef<str> + Clone,
{
    let request = JsonRequest::post(headers);
    send_json(client, request, url, body, timeout).await
}

/// Reads how long to wait from the body of a 429, for providers that put their retry
/// hint there rather than (or more precisely than) in `Retry-After` (Telegram's
/// `parameters.retry_after`, Discord's `retry_after`, Matrix's `retry_after_ms`; see
/// [`json_wait`]). A plain `fn`, so a channel passes one without capturing anything.
pub(crate) type BodyHint = fn(&str) -> Option<Duration>;

/// How a channel's request differs from a plain POST: its method (Matrix PUTs), its
/// extra headers, and where a 429 says how long to wait.
pub(crate) struct JsonRequest {
    pub(crate) method: Method,
    pub(crate) headers: HeaderMap,
    /// Consulted first on a 429; `Retry-After` when it finds nothing.
    pub(crate) hint: Option<BodyHint>,
}

impl JsonRequest {
    /// A POST with `headers` and no hint in the body.
    pub(crate) fn post(headers: HeaderMap) -> Self {
        Self {
            method: Method::POST,
            headers,
            hint: None,
        }
    }
}

/// The number at JSON `pointer` in `body` times `unit` (`retry_after` seconds as a
/// float, `retry_after_ms`), capped as `Retry-After` is: a [`BodyHint`]'s work.
pub(crate) fn json_wait(body: &str, pointer: &str, unit: Duration) -> Option<Duration> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let n = value.pointer(pointer)?.as_f64()?;
    let wait = Duration::try_from_secs_f64(n * unit.as_secs_f64()).ok()?;
    Some(wait.min(MAX_RETRY_AFTER))
}

/// [`post_json_with`] for any [`JsonRequest`]: the same classification, with a 429's
/// wait read from its body by the request's hint when it has one.
pub(crate) async fn send_json<U>(
    client: &reqwest::Client,
    request: JsonRequest,
    url: U,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(), DeliveryError>
where
    U: reqwest::IntoUrl + AsRef<str> + Clone,
{
    prepare_json(client, request, url, body, timeout)
        .finish()
        .await
}

/// [`send_json`]'s request, built and not sent yet: reqwest's request (headers merged,
/// the URL turned into the request's URI, the body in place) made, nothing written.
/// [`Prepared::finish`] sends it and classifies the answer. A message whose outbox row
/// is still being committed is prepared so, and only its write waits for the commit.
pub(crate) struct Prepared<F, U> {
    sending: F,
    url: U,
    timeout: Duration,
    hint: Option<BodyHint>,
}

/// Builds what [`send_json`] sends, without sending it (see [`Prepared`]).
pub(crate) fn prepare_json<U>(
    client: &reqwest::Client,
    request: JsonRequest,
    url: U,
    body: Vec<u8>,
    timeout: Duration,
) -> Prepared<impl Future<Output = reqwest::Result<reqwest::Response>> + Send + use<U>, U>
where
    U: reqwest::IntoUrl + AsRef<str> + Clone,
{
    let JsonRequest {
        method,
        headers,
        hint,
    } = request;
    // reqwest does the request's set-up here, when the future is made; the connection
    // is only checked out, and the request written, when it is polled.
    let sending = client
        .request(method, url.clone())
        .header(CONTENT_TYPE, "application/json")
        .headers(headers)
        .timeout(timeout)
        .body(body)
        .send();
    Prepared {
        sending,
        url,
        timeout,
        hint,
    }
}

impl<F, U> Prepared<F, U>
where
    F: Future<Output = reqwest::Result<reqwest::Response>>,
    U: AsRef<str>,
{
    /// Sends the request and classifies the answer as [`send_json`] does.
    pub(crate) async fn finish(self) -> Result<(), DeliveryError> {
        let Prepared {
            sending,
            url,
            timeout,
            hint,
        } = self;
        let mut response = match sending.await {
            Ok(response) => response,
            Err(e) => return Err(transport_error(&e.without_url(), timeout, url.as_ref())),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status.is_redirection() {
            // Its body is not quoted: it often spells out the `Location`.
            return Err(redirect_error(status, response.headers(), url.as_ref()));
        }
        let header = retry_after(response.headers(), SystemTime::now());
        let body = read_prefix(&mut response).await;
        let hinted = hint.filter(|_| status == StatusCode::TOO_MANY_REQUESTS);
        let after = hinted.and_then(|read| read(&body)).or(header);
        Err(status_error(status, after, &body, url.as_ref()))
    }
}

/// What every HTTP channel's runtime holds: the client it posts through (the agent's
/// [`delivery_client`], or one of its own that also trusts the channel's `ca_file`) and
/// how long one delivery may take. Cheap to clone (the client is shared).
#[derive(Debug, Clone)]
pub(crate) struct HttpShell {
    client: reqwest::Client,
    timeout: Duration,
}

impl HttpShell {
    /// A shell posting through `client`, or through a client of its own that also
    /// trusts `ca_file` ([`client_with_ca`]), with `timeout` for each delivery.
    pub(crate) fn new(
        client: &reqwest::Client,
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, BuildError> {
        let client = match ca_file {
            Some(path) => client_with_ca(path)?,
            None => client.clone(),
        };
        Ok(Self { client, timeout })
    }

    /// A shell posting through the agent's `client`, for a channel without a `ca_file`.
    pub(crate) fn shared(client: reqwest::Client, timeout: Duration) -> Self {
        Self { client, timeout }
    }

    /// The same shell with another delivery deadline.
    pub(crate) fn with_timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }

    /// [`post_json`] through this shell's client and deadline.
    pub(crate) async fn post_json<U>(&self, url: U, body: Vec<u8>) -> Result<(), DeliveryError>
    where
        U: reqwest::IntoUrl + AsRef<str> + Clone,
    {
        post_json(&self.client, url, body, self.timeout).await
    }

    /// [`post_json_with`] through this shell's client and deadline.
    pub(crate) async fn post_json_with<U>(
        &self,
        url: U,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<(), DeliveryError>
    where
        U: reqwest::IntoUrl + AsRef<str> + Clone,
    {
        post_json_with(&self.client, url, headers, body, self.timeout).await
    }

    /// [`prepare_json`] of a POST with `headers`, through this shell's client and
    /// deadline.
    pub(crate) fn prepare_post<U>(
        &self,
        url: U,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Prepared<impl Future<Output = reqwest::Result<reqwest::Response>> + Send + use<U>, U>
    where
        U: reqwest::IntoUrl + AsRef<str> + Clone,
    {
        prepare_json(
            &self.client,
            JsonRequest::post(headers),
            url,
            body,
            self.timeout,
        )
    }

    /// [`send_json`] through this shell's client and deadline.
    pub(crate) async fn send_json<U>(
        &self,
        request: JsonRequest,
        url: U,
        body: Vec<u8>,
    ) -> Result<(), DeliveryError>
    where
        U: reqwest::IntoUrl + AsRef<str> + Clone,
    {
        send_json(&self.client, request, url, body, self.timeout).await
    }
}

/// POSTs `body` as `text/plain` (a heartbeat ping's output) and classifies the answer
/// as [`post_json`] does; reasons never contain the URL.
pub async fn post_text(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        reqwest::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    post_json_with(client, url, headers, body, timeout).await
}

/// `klaxon/VERSION`: how klaxon names itself to receivers.
pub(crate) const USER_AGENT: &str = concat!("klaxon/", env!("CARGO_PKG_VERSION"));

/// The client notifiers and heartbeat pings share: reqwest's defaults (rustls with the
/// platform's roots, proxies from the environment), a `klaxon/VERSION` user agent, and
/// no redirects followed (see the module's notes). Not the `http` check's client, which
/// follows redirects.
pub fn delivery_client() -> Result<reqwest::Client, reqwest::Error> {
    client_builder().build()
}

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
}

/// A client of its own for a notifier with an extra trusted CA: the PEM file at `path`
/// (a leading `~` is the user's home), merged with the platform's roots; like
/// [`delivery_client`]'s, it follows no redirects. Fails when the file cannot be read
/// or holds no certificate.
pub(crate) fn client_with_ca(path: &Path) -> Result<reqwest::Client, BuildError> {
    let path = expand_home(path, std::env::home_dir().as_deref());
    let shown = path.display();
    let pem = std::fs::read(&path)
        .map_err(|e| BuildError::Setup(format!("cannot read `ca_file` `{shown}`: {e}")))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        BuildError::Setup(format!("`ca_file` `{shown}` is not a PEM certificate: {e}"))
    })?;
    if certs.is_empty() {
        return Err(BuildError::Setup(format!(
            "`ca_file` `{shown}` holds no PEM certificate"
        )));
    }
    client_builder()
        .tls_certs_merge(certs)
        .build()
        .map_err(|e| {
            BuildError::Setup(format!(
                "cannot set up an HTTP client trusting `ca_file` `{shown}`: {e}"
            ))
        })
}

/// `~` or `~/rest` with `home` in front; any other path (`~user` among them) as it is,
/// and `~` itself when there is no home.
pub(crate) fn expand_home(path: &Path, home: Option<&Path>) -> PathBuf {
    // Component-wise: `~other` is not `~`.
    match (path.strip_prefix("~"), home) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_path_buf(),
    }
}

/// The delivery error for a non-2xx answer.
fn status_error(
    status: StatusCode,
    after: Option<Duration>,
    body: &str,
    url: &str,
) -> DeliveryError {
    let mut reason = format!("HTTP {status}");
    let said = crate::text::truncate(body.trim(), BODY_CHARS, crate::text::ELLIPSIS);
    if !said.is_empty() {
        reason.push_str(": ");
        // One line, so a log line stays one line.
        reason.push_str(&said.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    let reason = scrub(reason, url);
    if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        DeliveryError::Retry { reason, after }
    } else {
        DeliveryError::Reject { reason }
    }
}

/// The rejection of a 3xx answer: `HTTP 301 Moved Permanently: redirect to host
/// `example.com` is not followed; use the final URL`. Only the host (and an explicit
/// port) of the `Location`, resolved against the request's URL, is named: its path and
/// query may be a credential. Without a usable `Location` no host is named.
fn redirect_error(status: StatusCode, headers: &HeaderMap, url: &str) -> DeliveryError {
    let host = headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|location| url::Url::parse(url).ok()?.join(location.trim()).ok())
        .and_then(|target| {
            let host = target.host_str()?.to_owned();
            Some(match target.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            })
        });
    let reason = match host {
        Some(host) => {
            format!("HTTP {status}: redirect to host `{host}` is not followed; use the final URL")
        }
        None => format!("HTTP {status}: redirect is not followed; use the final URL"),
    };
    DeliveryError::Reject {
        reason: scrub(reason, url),
    }
}

/// A request that got no answer: always worth a retry.
fn transport_error(e: &reqwest::Error, timeout: Duration, url: &str) -> DeliveryError {
    let reason = if e.is_timeout() {
        format!("no answer within {}", humantime::format_duration(timeout))
    } else {
        // The innermost cause says what happened ("Connection refused"); reqwest's own
        // layers only say where it happened.
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        let what = if e.is_connect() {
            "cannot connect"
        } else {
            "request failed"
        };
        format!("{what}: {cause}")
    };
    DeliveryError::Retry {
        reason: scrub(reason, url),
        after: None,
    }
}

/// `Retry-After` as seconds or an HTTP-date (relative to `now`), capped at a day.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The first [`BODY_BYTES`] of the body as text; whatever arrived if reading fails.
async fn read_prefix(response: &mut reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(BODY_BYTES);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A credential as a header value marked sensitive (kept out of reqwest's debug
/// output), or a [`DeliveryError::Reject`] with `reason` when a header cannot carry it.
pub(crate) fn secret_header(value: &str, reason: &str) -> Result<HeaderValue, DeliveryError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| DeliveryError::Reject {
        reason: reason.into(),
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// `result` with every one of `secrets` (of four characters or more: shorter would
/// blank out unrelated words) replaced by `***` in its reason, for channels whose
/// secret travels where the shared shell does not know to mask it (a token in the URL's
/// path, in a header or in the body: the push channels, Matrix's bearer token), should a receiver echo it.
pub(crate) fn masked(
    result: Result<(), DeliveryError>,
    secrets: &[&str],
) -> Result<(), DeliveryError> {
    rewording(result, |mut reason| {
        for secret in secrets.iter().filter(|s| s.chars().count() >= 4) {
            reason = reason.replace(secret, "***");
        }
        reason
    })
}

/// Belt and braces: a reason must not carry the URL even if an error or a receiver
/// echoes it, nor the parts of it that are the credential of a chat webhook: the path
/// (`/services/T000/B000/XXXX`), the query, and a password.
fn scrub(reason: String, url: &str) -> String {
    let mut reason = reason;
    let parsed = url::Url::parse(url).ok();
    let normalized = parsed
        .as_ref()
        .map(|u| u.as_str().to_owned())
        .unwrap_or_default();
    let mut forms = vec![url.to_owned(), normalized];
    if let Some(u) = &parsed {
        // A bare `/` or a short word would blank out unrelated text.
        forms.push(u.path().to_owned());
        forms.extend(u.query().map(str::to_owned));
        // Each value on its own too: a receiver may quote one (`token=…`) alone.
        forms.extend(u.query_pairs().map(|(_, value)| value.into_owned()));
        forms.extend(u.password().map(str::to_owned));
        forms.push(u.path().trim_start_matches('/').to_owned());
    }
    forms.retain(|f| f.chars().count() >= 4);
    for form in forms {
        if reason.contains(&form) {
            reason = reason.replace(&form, "***");
        }
    }
    reason
}

/// `result` with every appearance of `secret` (a credential sent in a header or the
/// body, which a receiver could echo in its answer) in its reason shown as `***`.
pub(crate) fn hiding(result: Result<(), DeliveryError>, secret: &str) -> Result<(), DeliveryError> {
    rewording(result, |reason| {
        if secret.is_empty() {
            reason
        } else {
            reason.replace(secret, "***")
        }
    })
}

/// `result` with its reason, whether worth a retry or not, passed through `reword`.
fn rewording(
    result: Result<(), DeliveryError>,
    reword: impl Fn(String) -> String,
) -> Result<(), DeliveryError> {
    result.map_err(|error| match error {
        DeliveryError::Retry { reason, after } => DeliveryError::Retry {
            reason: reword(reason),
            after,
        },
        DeliveryError::Reject { reason } => DeliveryError::Reject {
            reason: reword(reason),
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn reasons_lose_the_url_and_its_credential_parts() {
        let url = "https://u:pa55word@hooks.example.com/services/T0/B0/XXXX?token=qqqq";
        let echoed = format!(
            "HTTP 404: no hook {url}, path /services/T0/B0/XXXX, services/T0/B0/XXXX, token=qqqq, pa55word"
        );
        assert_eq!(
            scrub(echoed, url),
            "HTTP 404: no hook ***, path ***, ***, ***, ***"
        );
        // A short path is left: it says nothing secret and would blank out words.
        assert_eq!(
            scrub("HTTP 400: bad /x".into(), "http://127.0.0.1:9/x"),
            "HTTP 400: bad /x"
        );
    }

    fn headers(retry_after: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(retry_after).unwrap());
        headers
    }

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Sun, 29 Mar 2026 00:00:00 GMT").unwrap();
        let cases = [
            ("3", Some(Duration::from_secs(3))),
            (" 120 ", Some(Duration::from_secs(120))),
            (
                "Sun, 29 Mar 2026 00:01:30 GMT",
                Some(Duration::from_secs(90)),
            ),
            ("Sat, 28 Mar 2026 23:59:00 GMT", Some(Duration::ZERO)),
            ("999999999", Some(MAX_RETRY_AFTER)),
            ("soon", None),
            ("-1", None),
        ];
        for (value, expected) in cases {
            assert_eq!(retry_after(&headers(value), now), expected, "{value}");
        }
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn waits_read_from_a_body() {
        let secs = Duration::from_secs(1);
        let ms = Duration::from_millis(1);
        let cases = [
            (r#"{"retry_after": 1.5}"#, "/retry_after", secs, Some(1_500)),
            (
                r#"{"retry_after_ms": 2000}"#,
                "/retry_after_ms",
                ms,
                Some(2_000),
            ),
            (
                r#"{"parameters": {"retry_after": 3}}"#,
                "/parameters/retry_after",
                secs,
                Some(3_000),
            ),
            (
                r#"{"retry_after": 1e12}"#,
                "/retry_after",
                secs,
                Some(86_400_000),
            ),
            (
                r#"{"ok":false,"error_code":429,"parameters":{"retry_after":7}}"#,
                "/retry_after",
                secs,
                None,
            ),
            (r#"{"retry_after": 0.5}"#, "/retry_after", secs, Some(500)),
            (r#"{"retry_after": -1}"#, "/retry_after", secs, None),
            (r#"{"retry_after": "soon"}"#, "/retry_after", secs, None),
            (r#"{"retry_after": "3"}"#, "/retry_after", secs, None),
            (r#"{"other": 1}"#, "/retry_after", secs, None),
            ("rate limited", "/retry_after", secs, None),
        ];
        for (body, pointer, unit, expected) in cases {
            let expected = expected.map(Duration::from_millis);
            assert_eq!(json_wait(body, pointer, unit), expected, "{body}");
        }
    }

    #[tokio::test]
    async fn a_body_hint_outranks_retry_after_on_a_429_only() {
        use klaxon_testkit::{Response, Server};
        let hint: BodyHint = |body| json_wait(body, "/retry_after", Duration::from_secs(1));
        let client = delivery_client().unwrap();
        let answer = |status| {
            Response::status(status)
                .header("Retry-After", "7")
                .body(r#"{"retry_after": 0.25}"#)
        };
        let mut afters = Vec::new();
        for (status, body) in [(429, true), (503, true), (429, false)] {
            let server = Server::start(move |_| {
                if body {
                    answer(status)
                } else {
                    Response::status(status).header("Retry-After", "7")
                }
            })
            .await;
            let request = JsonRequest {
                method: Method::PUT,
                headers: HeaderMap::new(),
                hint: Some(hint),
            };
            let error = send_json(
                &client,
                request,
                server.url("/x"),
                b"{}".to_vec(),
                Duration::from_secs(5),
            )
            .await
            .unwrap_err();
            assert_eq!(server.requests()[0].method, "PUT");
            let DeliveryError::Retry { after, .. } = error else {
                panic!("not a retry: {error:?}");
            };
            afters.push(after);
        }
        assert_eq!(
            afters,
            [
                Some(Duration::from_millis(250)),
                Some(Duration::from_secs(7)),
                Some(Duration::from_secs(7)),
            ]
        );
    }

    #[tokio::test]
    async fn a_body_hint_serves_without_retry_after_and_never_turns_a_refusal() {
        use klaxon_testkit::{Response, Server};
        let body = r#"{"ok":false,"parameters":{"retry_after":9}}"#;
        let hint: BodyHint =
            |body| json_wait(body, "/parameters/retry_after", Duration::from_secs(1));
        let client = delivery_client().unwrap();
        let send = |url: String, hint| {
            let client = client.clone();
            async move {
                let request = JsonRequest {
                    hint,
                    ..JsonRequest::post(HeaderMap::new())
                };
                send_json(
                    &client,
                    request,
                    url,
                    b"{}".to_vec(),
                    Duration::from_secs(5),
                )
                .await
                .unwrap_err()
            }
        };
        let flooded = Server::start(move |_| Response::status(429).body(body)).await;
        let after = |e: DeliveryError| match e {
            DeliveryError::Retry { after, .. } => after,
            DeliveryError::Reject { reason } => panic!("rejected: {reason}"),
        };
        assert_eq!(
            after(send(flooded.url("/x"), Some(hint)).await),
            Some(Duration::from_secs(9))
        );
        assert_eq!(after(send(flooded.url("/x"), None).await), None);
        assert_eq!(flooded.requests()[0].method, "POST");
        // A refusal stays a refusal, whatever its body says.
        let refusing = Server::start(move |_| Response::status(400).body(body)).await;
        let error = send(refusing.url("/x"), Some(hint)).await;
        assert!(matches!(error, DeliveryError::Reject { .. }), "{error:?}");
    }

    #[test]
    fn home_expansion() {
        let home = Path::new("/home/me");
        let cases = [
            ("~", "/home/me"),
            ("~/certs/ca.pem", "/home/me/certs/ca.pem"),
            ("~other/ca.pem", "~other/ca.pem"),
            ("/etc/ssl/ca.pem", "/etc/ssl/ca.pem"),
            ("certs/~/ca.pem", "certs/~/ca.pem"),
        ];
        for (path, expected) in cases {
            assert_eq!(
                expand_home(Path::new(path), Some(home)),
                PathBuf::from(expected),
                "{path}"
            );
        }
        assert_eq!(expand_home(Path::new("~/x"), None), PathBuf::from("~/x"));
    }

    #[tokio::test]
    async fn a_redirect_is_rejected_and_not_followed() {
        use klaxon_testkit::{Response, Server};
        let target = Server::start(|_| Response::status(200)).await;
        let location = target.url("/secret-path?token=abc");
        let host = target.addr().to_string();
        let hop = Server::start(move |_| Response::status(301).header("Location", &location)).await;
        let client = delivery_client().unwrap();
        let error = post_json(
            &client,
            hop.url("/hook"),
            b"{}".to_vec(),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        let DeliveryError::Reject { reason } = &error else {
            panic!("not a rejection: {error:?}");
        };
        assert_eq!(
            reason,
            &format!(
                "HTTP 301 Moved Permanently: redirect to host `{host}` is not followed; use the final URL"
            )
        );
        assert!(!reason.contains("secret-path") && !reason.contains("token"));
        assert_eq!(hop.requests().len(), 1);
        assert!(target.requests().is_empty());
    }

    #[test]
    fn redirect_reasons_name_only_the_host() {
        let url = "https://hooks.example.com/T0/SECRET";
        let with = |location: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(l) = location {
                headers.insert(LOCATION, HeaderValue::from_str(l).unwrap());
            }
            redirect_error(StatusCode::FOUND, &headers, url).to_string()
        };
        let named = |host: &str| {
            format!("HTTP 302 Found: redirect to host `{host}` is not followed; use the final URL")
        };
        assert_eq!(
            with(Some("https://u:pw@new.example.com/x?token=1")),
            named("new.example.com")
        );
        assert_eq!(with(Some("/moved/SECRET2")), named("hooks.example.com"));
        assert_eq!(with(Some("http://[::1]:8080/p")), named("[::1]:8080"));
        let unnamed = "HTTP 302 Found: redirect is not followed; use the final URL";
        assert_eq!(with(None), unnamed);
        assert_eq!(with(Some("mailto:x")), unnamed);
    }

    #[test]
    fn classification() {
        let url = "https://hooks.example.com/T0/SECRET";
        let cases = [
            (408, true),
            (429, true),
            (500, true),
            (503, true),
            (400, false),
            (401, false),
            (404, false),
            (410, false),
            (302, false),
        ];
        for (code, retry) in cases {
            let status = StatusCode::from_u16(code).unwrap();
            let error = status_error(status, None, "", url);
            assert_eq!(
                matches!(error, DeliveryError::Retry { .. }),
                retry,
                "{code}: {error}"
            );
        }
    }

    #[test]
    fn reasons_quote_the_body_but_never_the_url() {
        let url = "https://hooks.example.com/T0/SECRET";
        let error = status_error(
            StatusCode::NOT_FOUND,
            None,
            &format!("no_service\n(posting to {url})"),
            url,
        );
        assert_eq!(
            error,
            DeliveryError::Reject {
                reason: "HTTP 404 Not Found: no_service (posting to ***)".into()
            }
        );
        let long = status_error(StatusCode::BAD_REQUEST, None, &"x".repeat(5_000), url);
        assert_eq!(
            long.to_string(),
            format!("HTTP 400 Bad Request: {}…", "x".repeat(BODY_CHARS - 1))
        );
    }

    #[test]
    fn masking_replaces_each_secret() {
        let error = Err(DeliveryError::Reject {
            reason: "HTTP 401: bad token s3cr3t-token for user u".into(),
        });
        assert_eq!(
            masked(error, &["s3cr3t-token", "u"]),
            Err(DeliveryError::Reject {
                reason: "HTTP 401: bad token *** for user u".into()
            })
        );
        let error = Err(DeliveryError::Retry {
            reason: "HTTP 503: s3cr3t".into(),
            after: None,
        });
        assert_eq!(
            masked(error, &["s3cr3t"]),
            Err(DeliveryError::Retry {
                reason: "HTTP 503: ***".into(),
                after: None
            })
        );
        assert_eq!(masked(Ok(()), &["x"]), Ok(()));
    }
}
