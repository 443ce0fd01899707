//! Signing in to the dashboard, and the CSRF token of its forms.
//!
//! Reading the dashboard needs nothing; what changes state ([`super::actions`]) needs a
//! session, which `agent.listen_token` opens:
//!
//! - `GET /login` ([`LOGIN`]) is a small sign-in form; `POST /login` takes the token
//!   (`token=...`, form-encoded), compares it with `agent.listen_token` in constant
//!   time and, when it matches, sets the session cookie [`COOKIE`] and answers
//!   `303 See Other` to `/` (or to the form's `next`, a path on this listener only:
//!   never an open redirect). A wrong token is a 401 with the form again. The token is
//!   never logged, echoed or put in the cookie.
//! - The cookie is a stateless session: `EXPIRES.NONCE.MAC`, a random nonce and its
//!   expiry ([`SESSION_FOR`]) signed with HMAC-SHA256 keyed by the token. Nothing is
//!   kept on the agent: a changed token ends every session, and so does the expiry. It
//!   is `HttpOnly; SameSite=Strict; Path=/`, and not `Secure`: the listener speaks
//!   plain HTTP (on loopback, usually), where a browser would not send a `Secure`
//!   cookie back.
//! - `POST /logout` ([`LOGOUT`]) clears the cookie.
//! - Every form that changes state carries a hidden `csrf` field ([`CSRF_FIELD`]): an
//!   HMAC of the session's nonce under another label than the session's, so it is known
//!   only to a page the agent rendered for that session. A POST without it, or with a
//!   wrong one, is a 403; so is a POST whose `Origin` is present and not this
//!   listener's own ([`same_origin`]).
//!
//! What the pages call:
//! - [`Access::of`]`(headers, agent.listen_token)`: whether actions are off (no token
//!   configured: say that they need `agent.listen_token`), the visitor is signed out
//!   (link to [`login_path`]), or signed in with a [`Session`];
//! - [`Session::from_headers`], the signed-in case alone;
//! - [`Session::csrf_field`]: the hidden `<input>` every state-changing form carries,
//!   [`LOGOUT`]'s included; a form may also carry a hidden [`NEXT_FIELD`] (a local path)
//!   saying where to go back to;
//! - [`LOGIN`], [`LOGOUT`], [`login_path`], and the actions' paths in
//!   [`super::actions`].
//!
//! A page with forms must not send `Referrer-Policy: no-referrer`: under it a browser
//! sends `Origin: null` with the form, which is refused as another site's
//! (`same-origin` keeps the `Referer` and the `Origin` on this listener).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use hyper::header::{CACHE_CONTROL, COOKIE as COOKIE_HEADER, HOST, HeaderValue, LOCATION, ORIGIN};
use hyper::{HeaderMap, Response, StatusCode};
use klaxon_notifiers::text::escape_html as escape;
use klaxon_notifiers::webhook::hmac_sha256_hex;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::listener::Body;
use crate::runtime::Runtime;

/// The dashboard's stylesheet, which these pages share.
const STYLESHEET: &str = "/static/klaxon.css";

/// The sign-in form's path: `GET` shows it, `POST` signs in.
pub const LOGIN: &str = "/login";
/// `POST` signs out.
pub const LOGOUT: &str = "/logout";
/// The session cookie's name.
pub const COOKIE: &str = "klaxon_session";
/// How long a session lasts.
pub const SESSION_FOR: Duration = Duration::from_secs(12 * 60 * 60);
/// The hidden form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// The form field (or `/login` query parameter) saying where to go afterwards: a path
/// on this listener.
pub const NEXT_FIELD: &str = "next";

/// What the session's MAC and the CSRF token are computed under: two labels, so that
/// neither can stand for the other (nor for a button's scoped token, whose messages
/// start with `ack` or `silence`).
const SESSION_LABEL: &str = "klaxon-dashboard-session";
const CSRF_LABEL: &str = "klaxon-dashboard-csrf";

/// Bytes of randomness in a session's nonce.
const NONCE_BYTES: usize = 16;

/// A signed-in visitor: a session cookie the current `agent.listen_token` signed, not
/// expired.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    /// Lowercase hex.
    nonce: String,
    /// Unix seconds.
    expires: i64,
    csrf: String,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("expires", &self.expires_at())
            .field("csrf", &format_args!("***"))
            .finish_non_exhaustive()
    }
}

/// HMAC-SHA256 of `LABEL\0MESSAGE` keyed by the token, in hex.
fn mac(token: &str, label: &str, message: &str) -> String {
    hmac_sha256_hex(token.as_bytes(), format!("{label}\0{message}").as_bytes())
}

fn equal(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

impl Session {
    /// The session the request's cookie holds, if `token` (`agent.listen_token`) signed
    /// it and it has not expired. An empty token signs nothing.
    pub fn from_headers(headers: &HeaderMap, token: &SecretString) -> Option<Self> {
        Self::from_headers_at(headers, token.expose_secret(), Utc::now())
    }

    fn from_headers_at(headers: &HeaderMap, token: &str, now: DateTime<Utc>) -> Option<Self> {
        cookies(headers, COOKIE).find_map(|value| Self::verify(value, token, now))
    }

    /// The session a cookie value `EXPIRES.NONCE.MAC` holds, checked against `token`.
    fn verify(value: &str, token: &str, now: DateTime<Utc>) -> Option<Self> {
        if token.is_empty() {
            return None;
        }
        let mut parts = value.splitn(3, '.');
        let (expires, nonce, presented) = (parts.next()?, parts.next()?, parts.next()?);
        let expected = mac(token, SESSION_LABEL, &format!("{expires}.{nonce}"));
        if !equal(presented, &expected) {
            return None;
        }
        let expires: i64 = expires.parse().ok()?;
        (now.timestamp() < expires).then(|| Self::signed(token, nonce.to_owned(), expires))
    }

    fn signed(token: &str, nonce: String, expires: i64) -> Self {
        let csrf = mac(token, CSRF_LABEL, &nonce);
        Self {
            nonce,
            expires,
            csrf,
        }
    }

    /// A new session signed by `token`, and its cookie's value.
    fn start(token: &str, now: DateTime<Utc>) -> Result<(Self, String), getrandom::Error> {
        let mut bytes = [0u8; NONCE_BYTES];
        getrandom::fill(&mut bytes)?;
        let nonce: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let expires = now.timestamp().saturating_add(SESSION_FOR.as_secs() as i64);
        let signature = mac(token, SESSION_LABEL, &format!("{expires}.{nonce}"));
        let value = format!("{expires}.{nonce}.{signature}");
        Ok((Self::signed(token, nonce, expires), value))
    }

    /// When the session ends.
    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.expires, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// The session's CSRF token (what [`Session::csrf_field`] carries).
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// The hidden field every state-changing form carries:
    /// `<input type="hidden" name="csrf" value="...">`.
    pub fn csrf_field(&self) -> String {
        format!(
            "<input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{}\">",
            self.csrf
        )
    }

    /// Whether a form's `csrf` field is this session's, compared in constant time.
    pub(crate) fn csrf_is(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| equal(p, &self.csrf))
    }
}

/// What a visitor may do with the dashboard's forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No `agent.listen_token` is configured: actions are off.
    NoToken,
    /// Not signed in (or the session expired, or the token changed).
    SignedOut,
    SignedIn(Session),
}

impl Access {
    /// The access of a request with `headers`, `token` being `agent.listen_token`.
    pub fn of(headers: &HeaderMap, token: Option<&SecretString>) -> Self {
        match token {
            None => Access::NoToken,
            Some(token) => match Session::from_headers(headers, token) {
                Some(session) => Access::SignedIn(session),
                None => Access::SignedOut,
            },
        }
    }
}

/// The values of the cookie `name` in a request's `Cookie` headers.
fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(COOKIE_HEADER)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(move |pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key.trim() == name).then(|| value.trim().trim_matches('"'))
        })
}

/// `path` if it is a path on this listener to send a browser to: it starts with one
/// `/`, and holds no backslash, no control character and nothing but ASCII (so no
/// `//host`, `/\host` or `https://host`).
pub fn safe_next(path: &str) -> Option<&str> {
    let local = path.starts_with('/')
        && !path.starts_with("//")
        && path.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    local.then_some(path)
}

/// The sign-in form's path, coming back to `next` (a local path) afterwards.
pub fn login_path(next: &str) -> String {
    match safe_next(next).filter(|n| *n != "/") {
        Some(next) => format!(
            "{LOGIN}?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair(NEXT_FIELD, next)
                .finish()
        ),
        None => LOGIN.to_owned(),
    }
}

/// Whether a request's `Origin`, if it has one, is this listener's own: the origin of
/// its `Host` (over `http`, or `https` behind a proxy), or of `agent.listen_url`. A
/// browser sends `Origin` with every cross-origin POST (and `null` from a sandbox or
/// a redirect), so a form on another site is refused here even before its CSRF token
/// is checked.
pub fn same_origin(headers: &HeaderMap, listen_url: Option<&url::Url>) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    origin
        .to_str()
        .is_ok_and(|origin| is_own(origin, headers, listen_url))
}

/// Whether `origin` (`scheme://host[:port]`) is this listener's, for a request with
/// `headers` (its `Host`).
pub(crate) fn is_own(origin: &str, headers: &HeaderMap, listen_url: Option<&url::Url>) -> bool {
    let origin = origin.trim().trim_end_matches('/');
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    let from_host = host.is_some_and(|host| {
        ["http", "https"]
            .iter()
            .any(|scheme| origin.eq_ignore_ascii_case(&format!("{scheme}://{host}")))
    });
    let from_url =
        listen_url.is_some_and(|u| origin.eq_ignore_ascii_case(&u.origin().ascii_serialization()));
    from_host || from_url
}

/// The fields of a form-encoded body (the first value of each name).
#[derive(Debug, Default)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub(crate) fn parse(body: &[u8]) -> Self {
        Self(url::form_urlencoded::parse(body).into_owned().collect())
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A small HTML page: the sign-in form, or why a form was refused. No script and no
/// inline style, under the dashboard's strict policy.
pub(crate) fn html(status: StatusCode, title: &str, main: &str) -> Response<Body> {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} · klaxon</title>\n<link rel=\"stylesheet\" href=\"{STYLESHEET}\">\n</head>\n<body>\n<main>\n{main}\n</main>\n</body>\n</html>\n",
        escape(title)
    );
    let mut response = crate::listener::reply(status, "text/html; charset=utf-8", body);
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        hyper::header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A refusal as a page: what went wrong, and a way on.
pub(crate) fn refused(status: StatusCode, message: &str, link: (&str, &str)) -> Response<Body> {
    let (href, label) = link;
    html(
        status,
        "Refused",
        &format!(
            "<h1>Refused</h1>\n<p role=\"alert\">{}</p>\n<p><a href=\"{}\">{}</a></p>",
            escape(message),
            escape(href),
            escape(label)
        ),
    )
}

/// `303 See Other` to `location` (a local path), with `cookie` set if given.
pub(crate) fn see_other(location: &str, cookie: Option<String>) -> Response<Body> {
    let mut response =
        crate::listener::reply(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(location) {
        headers.insert(LOCATION, location);
    }
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(hyper::header::SET_COOKIE, cookie);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The message of a page that cannot sign anyone in.
const NO_TOKEN: &str = "signing in needs `agent.listen_token` set in the config: without it the dashboard can be read but changes nothing";

/// The sign-in page, `message` (if any) above the form.
fn form(status: StatusCode, next: Option<&str>, message: Option<&str>) -> Response<Body> {
    let alert = message
        .map(|m| format!("<p role=\"alert\">{}</p>\n", escape(m)))
        .unwrap_or_default();
    let next = next
        .and_then(safe_next)
        .map(|n| {
            format!(
                "<input type=\"hidden\" name=\"{NEXT_FIELD}\" value=\"{}\">\n",
                escape(n)
            )
        })
        .unwrap_or_default();
    html(
        status,
        "Sign in",
        &format!(
            "<h1>Sign in to klaxon</h1>\n{alert}\
             <p>Signing in lets this browser silence and acknowledge alerts, run jobs and \
             handle the outbox. Reading the dashboard needs no sign-in.</p>\n\
             <form method=\"post\" action=\"{LOGIN}\">\n{next}\
             <label for=\"token\">Listen token (<code>agent.listen_token</code>)</label>\n\
             <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>\n\
             <button type=\"submit\">Sign in</button>\n</form>\n\
             <p><a href=\"/\">Back to the dashboard</a></p>"
        ),
    )
}

/// `GET /login[?next=PATH]`: the form, or (signed in already) when the session ends
/// and a button to sign out.
pub fn login_page(rt: &Runtime, headers: &HeaderMap, query: Option<&str>) -> Response<Body> {
    let Some(token) = &rt.config.agent.listen_token else {
        return refused(StatusCode::OK, NO_TOKEN, HOME);
    };
    let query = Form::parse(query.unwrap_or_default().as_bytes());
    let Some(session) = Session::from_headers(headers, token) else {
        return form(StatusCode::OK, query.get(NEXT_FIELD), None);
    };
    let until = session
        .expires_at()
        .with_timezone(&rt.config.agent.timezone)
        .format("%Y-%m-%d %H:%M %Z");
    html(
        StatusCode::OK,
        "Signed in",
        &format!(
            "<h1>Signed in</h1>\n<p>This browser is signed in to klaxon until {until}.</p>\n\
             <form method=\"post\" action=\"{LOGOUT}\">\n{}\n\
             <button type=\"submit\">Sign out</button>\n</form>\n\
             <p><a href=\"/\">Back to the dashboard</a></p>",
            session.csrf_field()
        ),
    )
}

/// `POST /login`: the token from the form, compared with `agent.listen_token`.
pub fn login(rt: &Runtime, headers: &HeaderMap, body: &Bytes, peer: SocketAddr) -> Response<Body> {
    let Some(token) = &rt.config.agent.listen_token else {
        return refused(StatusCode::FORBIDDEN, NO_TOKEN, HOME);
    };
    if let Some(refused) = from_elsewhere(rt, headers, peer, "sign-in") {
        return refused;
    }
    let fields = Form::parse(body);
    let next = fields.get(NEXT_FIELD);
    let token = token.expose_secret();
    let presented = fields.get("token").unwrap_or_default();
    if token.is_empty() || !equal(presented, token) {
        tracing::warn!(%peer, "sign-in refused: wrong token");
        return form(
            StatusCode::UNAUTHORIZED,
            next,
            Some("That is not the listen token (`agent.listen_token`). Try again."),
        );
    }
    let (_, value) = match Session::start(token, Utc::now()) {
        Ok(started) => started,
        Err(e) => {
            tracing::error!(%e, "cannot sign in: no randomness for a session");
            return refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot start a session; see the agent's log",
                (LOGIN, "Try again"),
            );
        }
    };
    tracing::info!(%peer, "signed in to the dashboard");
    let cookie = format!(
        "{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_FOR.as_secs()
    );
    see_other(next.and_then(safe_next).unwrap_or("/"), Some(cookie))
}

/// The way on from a refusal: the dashboard.
pub(crate) const HOME: (&str, &str) = ("/", "Back to the dashboard");

/// The refusal of a form `what` (`sign-in`, an action) sent from another site, if it
/// was ([`same_origin`]).
pub(crate) fn from_elsewhere(
    rt: &Runtime,
    headers: &HeaderMap,
    peer: SocketAddr,
    what: &str,
) -> Option<Response<Body>> {
    if same_origin(headers, rt.config.agent.listen_url.as_ref()) {
        return None;
    }
    tracing::warn!(%peer, "{what} refused: the form came from another site");
    Some(refused(StatusCode::FORBIDDEN, CROSS_ORIGIN, HOME))
}

/// What a refused cross-site form is told.
pub(crate) const CROSS_ORIGIN: &str = "this form was sent from another site (its `Origin` is not this listener's): nothing was changed";

/// What a form without this session's CSRF token is told.
pub(crate) const BAD_CSRF: &str = "this form's CSRF token is missing or not this session's (the page may be older than your sign-in): reload the page and try again; nothing was changed";

/// `POST /logout`: clears the cookie. With a session, the form must carry its CSRF
/// token; without one there is nothing to end.
pub fn logout(rt: &Runtime, headers: &HeaderMap, body: &Bytes, peer: SocketAddr) -> Response<Body> {
    if let Some(refused) = from_elsewhere(rt, headers, peer, "sign-out") {
        return refused;
    }
    let session = rt
        .config
        .agent
        .listen_token
        .as_ref()
        .and_then(|token| Session::from_headers(headers, token));
    let fields = Form::parse(body);
    if let Some(session) = session {
        if !session.csrf_is(fields.get(CSRF_FIELD)) {
            tracing::warn!(%peer, "sign-out refused: no CSRF token or a wrong one");
            return refused(StatusCode::FORBIDDEN, BAD_CSRF, HOME);
        }
        tracing::info!(%peer, "signed out of the dashboard");
    }
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    see_other(
        fields.get(NEXT_FIELD).and_then(safe_next).unwrap_or("/"),
        Some(cookie),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TOKEN: &str = "s3cret-listen-token";

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE_HEADER,
            HeaderValue::from_str(&format!("theme=dark; {COOKIE}={value}; other=1")).unwrap(),
        );
        headers
    }

    #[test]
    fn a_session_lasts_until_it_expires() {
        let (session, value) = Session::start(TOKEN, t(1_000)).unwrap();
        let headers = with_cookie(&value);
        assert_eq!(
            Session::from_headers_at(&headers, TOKEN, t(1_000)),
            Some(session.clone())
        );
        let end = 1_000 + SESSION_FOR.as_secs() as i64;
        assert_eq!(session.expires_at(), t(end));
        assert!(Session::from_headers_at(&headers, TOKEN, t(end - 1)).is_some());
        assert!(Session::from_headers_at(&headers, TOKEN, t(end)).is_none());
        // The token is nowhere in the cookie or the CSRF token.
        assert!(!value.contains(TOKEN) && !session.csrf().contains(TOKEN));
    }

    #[test]
    fn a_changed_token_ends_every_session() {
        let (_, value) = Session::start(TOKEN, t(1_000)).unwrap();
        let headers = with_cookie(&value);
        assert!(Session::from_headers_at(&headers, "another-token", t(1_000)).is_none());
        assert!(Session::from_headers_at(&headers, "", t(1_000)).is_none());
        // An empty token signs nothing, not even with itself.
        let (_, empty) = Session::start("", t(1_000)).unwrap();
        assert!(Session::from_headers_at(&with_cookie(&empty), "", t(1_000)).is_none());
    }

    #[test]
    fn a_tampered_cookie_is_no_session() {
        let (_, value) = Session::start(TOKEN, t(1_000)).unwrap();
        let (expires, rest) = value.split_once('.').unwrap();
        let (nonce, signature) = rest.split_once('.').unwrap();
        let later: i64 = expires.parse::<i64>().unwrap() + 3_600;
        let flipped = {
            let mut s = signature.to_owned();
            let last = if s.ends_with('0') { "1" } else { "0" };
            s.pop();
            s + last
        };
        for tampered in [
            format!("{later}.{nonce}.{signature}"),
            format!("{expires}.{}.{signature}", "0".repeat(nonce.len())),
            format!("{expires}.{nonce}.{flipped}"),
            format!("{expires}.{nonce}"),
            format!("{expires}.{nonce}.{}", &signature[..10]),
            String::new(),
            "garbage".into(),
        ] {
            assert!(
                Session::from_headers_at(&with_cookie(&tampered), TOKEN, t(1_000)).is_none(),
                "{tampered}"
            );
        }
        // Without the cookie, or under another name, there is no session.
        assert!(Session::from_headers_at(&HeaderMap::new(), TOKEN, t(1_000)).is_none());
        let mut other = HeaderMap::new();
        other.insert(
            COOKIE_HEADER,
            HeaderValue::from_str(&format!("not_{COOKIE}={value}")).unwrap(),
        );
        assert!(Session::from_headers_at(&other, TOKEN, t(1_000)).is_none());
    }

    #[test]
    fn the_csrf_token_is_the_sessions_own_and_differs_from_its_signature() {
        let (a, value) = Session::start(TOKEN, t(1_000)).unwrap();
        let (b, _) = Session::start(TOKEN, t(1_000)).unwrap();
        assert_ne!(a.csrf(), b.csrf(), "two sessions share a CSRF token");
        assert!(a.csrf_is(Some(a.csrf())));
        assert!(!a.csrf_is(Some(b.csrf())));
        assert!(!a.csrf_is(None));
        assert!(!a.csrf_is(Some("")));
        assert!(
            !value.contains(a.csrf()),
            "the cookie gives the CSRF token away"
        );
        // The same session read back has the same token.
        let again = Session::from_headers_at(&with_cookie(&value), TOKEN, t(2_000)).unwrap();
        assert_eq!(again.csrf(), a.csrf());
        assert_eq!(
            a.csrf_field(),
            format!(
                "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
                a.csrf()
            )
        );
        assert!(!format!("{a:?}").contains(a.csrf()));
    }

    #[test]
    fn only_local_paths_are_gone_back_to() {
        for good in ["/", "/jobs/db", "/jobs/db?x=1#top"] {
            assert_eq!(safe_next(good), Some(good));
        }
        for bad in [
            "",
            "//evil.example",
            "/\\evil.example",
            "https://evil.example/",
            "evil.example",
            "/a b",
            "/\r\nSet-Cookie: x",
            "/é",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
        assert_eq!(login_path("/jobs/db"), "/login?next=%2Fjobs%2Fdb");
        assert_eq!(login_path("/"), "/login");
        assert_eq!(login_path("//evil.example"), "/login");
    }

    #[test]
    fn only_this_listeners_origin_may_post() {
        let headers = |origin: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
            if let Some(o) = origin {
                h.insert(ORIGIN, HeaderValue::from_str(o).unwrap());
            }
            h
        };
        let url = url::Url::parse("https://klaxon.example.org/base/").unwrap();
        assert!(same_origin(&headers(None), None));
        assert!(same_origin(&headers(Some("http://127.0.0.1:8080")), None));
        assert!(same_origin(
            &headers(Some("https://klaxon.example.org")),
            Some(&url)
        ));
        for bad in [
            "http://evil.example",
            "http://127.0.0.1:8081",
            "null",
            "http://127.0.0.1:8080.evil.example",
        ] {
            assert!(!same_origin(&headers(Some(bad)), Some(&url)), "{bad}");
        }
    }
}
