//! The dashboard: the agent's own pages on its listener (`agent.listen`).
//!
//! - `/` ([`overview`]): every job (state in words and colour, since when, last run and
//!   its summary, next run, the recent-runs bar and latency sparkline), open alerts,
//!   silences and acknowledgements, the outbox, and the agent itself (version, uptime,
//!   paths, scheduler lateness, health as `/healthz` says it).
//! - `/jobs/JOB` ([`job`]): one job's history, its duration/latency chart, its
//!   incidents and its config as validated, secrets shown as `***`.
//! - `/static/klaxon.css` and `/static/klaxon.js`: compiled into the binary.
//! - [`svg`]: the charts (the recent-runs bars, the latency sparkline, the job page's
//!   duration/latency chart) as inline SVG.
//! - [`auth`]: signing in with `agent.listen_token` (a stateless session cookie) and the
//!   CSRF token every state-changing form carries.
//! - [`actions`]: what the page's buttons do (silence, acknowledge, run now, retry or
//!   drop an outbox message), each a `POST` that needs a session.
//!
//! Pages are server-rendered from compile-time templates (`templates/`, askama); charts
//! are inline SVG made on the server. Every page is sent with a strict
//! `Content-Security-Policy` ([`CSP`]): nothing inline, nothing from elsewhere, which is
//! why style and script are files of their own. The page reads fully without
//! JavaScript; with it, `klaxon.js` fetches the same URL every few seconds and swaps
//! in the new `<main>`. Reading needs no token, like the badges: the pages show what
//! `klaxon status` shows, and never a secret (the config's secrets are redacting types,
//! and a notifier's last error is worded without its URL or password). Forms that
//! change something post to the sign-in and actions routes ([`Actions`]).
//!
//! Handlers are plain functions returning the listener's response type, so they do not
//! depend on how requests are routed.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

pub mod actions;
pub mod auth;
pub mod job;
pub mod overview;
pub mod svg;

use std::sync::Arc;

use askama::Template;
use hyper::HeaderMap;

use crate::liveness::{Health, Liveness};
use crate::runtime::Runtime;

/// What every page is sent with: its own files only, no inline script or style, no
/// frames, forms posted only back to the agent.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// How often, in seconds, the page refreshes its content when JavaScript runs.
pub const REFRESH_SECS: u32 = 5;

const CSS: &str = include_str!("static/klaxon.css");
const JS: &str = include_str!("static/klaxon.js");

type Body = Full<Bytes>;

/// `/` (`/?page=N`): the overview.
pub async fn overview_page(
    rt: Arc<Runtime>,
    alive: Arc<Liveness>,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Response<Body> {
    let wanted = overview::Paging::wanted(query);
    let here = if wanted > 1 {
        format!("/?page={wanted}")
    } else {
        "/".to_owned()
    };
    let actions = Actions::of(&rt, headers, &here);
    let page = crate::store::THREADS
        .run(move || {
            let now = rt.clock.now();
            let page =
                overview::gather(&rt, &alive, actions, wanted, now).map_err(|e| e.to_string())?;
            page.render()
                .map(|html| (StatusCode::OK, html))
                .map_err(|e| e.to_string())
        })
        .await;
    rendered("the overview", page)
}

/// `/jobs/NAME` (the segment as sent, percent-encoded): the job's page, or a 404 page
/// for a job the config does not have.
pub async fn job_page(
    rt: Arc<Runtime>,
    alive: Arc<Liveness>,
    segment: &str,
    headers: &HeaderMap,
) -> Response<Body> {
    let name = decode_segment(segment);
    let actions = Actions::of(&rt, headers, &format!("/jobs/{segment}"));
    let page = crate::store::THREADS
        .run(move || {
            let now = rt.clock.now();
            let (status, html) = match name.as_deref().and_then(|n| rt.config.job(n)) {
                Some(job) => {
                    let page =
                        job::gather(&rt, &alive, actions, job, now).map_err(|e| e.to_string())?;
                    (StatusCode::OK, page.render())
                }
                None => {
                    let what = match &name {
                        Some(name) => format!("There is no job `{name}` in the config."),
                        None => "That is not a job name.".to_owned(),
                    };
                    let frame = Frame::new(&rt, &alive, actions);
                    let page = job::NotFound { frame, what };
                    (StatusCode::NOT_FOUND, page.render())
                }
            };
            html.map(|html| (status, html)).map_err(|e| e.to_string())
        })
        .await;
    rendered("a job page", page)
}

/// A page read on the store's threads and rendered, or a 500 saying where to look.
fn rendered<E: std::fmt::Display>(
    what: &str,
    page: Result<Result<(StatusCode, String), String>, E>,
) -> Response<Body> {
    match page {
        Ok(Ok((status, html))) => html_response(status, html),
        Ok(Err(e)) => failed(what, &e),
        Err(e) => failed(what, &e),
    }
}

fn failed(what: &str, e: &dyn std::fmt::Display) -> Response<Body> {
    tracing::error!("dashboard: cannot serve {what}: {e}");
    html_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!(
            "<!doctype html><html lang=\"en\"><title>klaxon: error</title><p>cannot serve {what}; see the agent's log</p></html>"
        ),
    )
}

/// A rendered page as the listener sends it.
pub fn html_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(headers);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn secure(headers: &mut hyper::HeaderMap) {
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: a browser then sends `Origin: null` with the forms, which
    // the actions refuse.
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
}

/// `/static/NAME`: the stylesheet and the script; `None` for any other name.
pub fn asset(name: &str) -> Option<Response<Body>> {
    let (body, content_type) = match name {
        "klaxon.css" => (CSS, "text/css; charset=utf-8"),
        "klaxon.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return None,
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    secure(headers);
    // They change only with the binary; a restart's page asks again within the hour.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
    Some(response)
}

/// What every page has around its content: the header with the agent's name and
/// health, and what its forms can do.
#[derive(Debug)]
pub struct Frame {
    pub agent: String,
    /// `/healthz`'s verdict and reasons.
    pub healthy: bool,
    pub reasons: Vec<String>,
    pub actions: Actions,
    pub refresh: u32,
}

impl Frame {
    pub fn new(rt: &Runtime, alive: &Liveness, actions: Actions) -> Self {
        let (healthy, reasons) = match alive.health() {
            Health::Alive => (true, Vec::new()),
            Health::Unwell(reasons) => (false, reasons),
        };
        Self {
            agent: rt.config.agent.name.clone(),
            healthy,
            reasons,
            actions,
            refresh: REFRESH_SECS,
        }
    }
}

/// What the forms on a page can do, as the sign-in says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actions {
    /// `agent.listen_token` is not set: nothing can be changed from the page.
    NoToken,
    /// Not signed in: a link to the sign-in form (coming back to this page) instead
    /// of buttons.
    SignedOut { login: String },
    /// Signed in: every form carries these hidden fields (HTML, already escaped): the
    /// session's CSRF token and the page to come back to.
    SignedIn { fields: String },
}

impl Actions {
    /// What a request for the page at `here` may do from it: nothing without
    /// `agent.listen_token`, and nothing until signed in ([`auth::Access`]).
    pub fn of(rt: &Runtime, headers: &HeaderMap, here: &str) -> Self {
        match auth::Access::of(headers, rt.config.agent.listen_token.as_ref()) {
            auth::Access::NoToken => Actions::NoToken,
            auth::Access::SignedOut => Actions::SignedOut {
                login: auth::login_path(here),
            },
            auth::Access::SignedIn(session) => Actions::SignedIn {
                fields: format!(
                    "{}<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                    session.csrf_field(),
                    auth::NEXT_FIELD,
                    klaxon_notifiers::text::escape_html(here)
                ),
            },
        }
    }

    pub fn signed_in(&self) -> bool {
        matches!(self, Actions::SignedIn { .. })
    }

    pub fn no_token(&self) -> bool {
        matches!(self, Actions::NoToken)
    }

    /// The hidden fields of a form, empty when not signed in.
    pub fn fields(&self) -> &str {
        match self {
            Actions::SignedIn { fields } => fields,
            _ => "",
        }
    }
}

/// A job's state as the page words it (the words of the badge and `klaxon status`)
/// and the class that colours it. The word is always shown: colour is never alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub word: &'static str,
    pub class: &'static str,
}

impl State {
    pub fn of(severity: Option<crate::alert::SeverityName>) -> Self {
        use crate::alert::SeverityName as S;
        let (word, class) = match severity {
            Some(S::Ok) => ("up", "ok"),
            Some(S::Warning) => ("warning", "warning"),
            Some(S::Critical) => ("down", "critical"),
            Some(S::Unknown) => ("unknown", "unknown"),
            None => ("pending", "pending"),
        };
        Self { word, class }
    }

    /// A stored run's severity (`ok`, `critical`, … or `skipped`, `outbox`).
    pub fn of_run(severity: &str) -> Self {
        use crate::alert::SeverityName as S;
        match severity {
            "ok" => Self::of(Some(S::Ok)),
            "warning" => Self::of(Some(S::Warning)),
            "critical" => Self::of(Some(S::Critical)),
            "unknown" => Self::of(Some(S::Unknown)),
            "skipped" => Self {
                word: "skipped",
                class: "pending",
            },
            _ => Self {
                word: "note",
                class: "pending",
            },
        }
    }
}

/// A moment as the page shows it: relative (`5m ago`, `in 2h`) with the full time in
/// the job's zone beside it for `<time datetime>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct When {
    /// RFC 3339 in the zone, for `datetime` and `title`.
    pub iso: String,
    /// `2026-12-04 03:37:24`, in the zone.
    pub full: String,
    /// `5m ago`, `in 2h 3m`, `now`.
    pub rel: String,
}

impl When {
    pub fn new(t: DateTime<Utc>, now: DateTime<Utc>, tz: Tz) -> Self {
        let local = t.with_timezone(&tz);
        let (past, gap) = if t <= now {
            (true, now - t)
        } else {
            (false, t - now)
        };
        let rel = match span(gap.to_std().unwrap_or_default()) {
            s if s == "0s" => "now".to_owned(),
            s if past => format!("{s} ago"),
            s => format!("in {s}"),
        };
        Self {
            iso: local.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            full: local.format("%Y-%m-%d %H:%M:%S").to_string(),
            rel,
        }
    }
}

/// A length of time in at most two units: `42s`, `5m 3s`, `3h 2m`, `2d 4h`.
pub fn span(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let (d_, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d_, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) if sec == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h {m}m"),
        (_, 0, _) => format!("{d_}d"),
        _ => format!("{d_}d {h}h"),
    }
}

/// A run's duration: `340 ms`, `2.4 s`, `3m 10s`.
pub fn elapsed(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        span(d)
    }
}

/// `/jobs/NAME` with the name as one escaped path segment.
pub fn job_href(name: &str) -> String {
    let mut href = String::with_capacity(6 + name.len());
    href.push_str("/jobs/");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            href.push(b as char);
        } else {
            href.push_str(&format!("%{b:02X}"));
        }
    }
    href
}

/// A path segment as the client sent it, percent-decoded; `None` when it does not
/// decode to UTF-8.
pub fn decode_segment(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn spans_read_in_two_units_at_most() {
        let s = std::time::Duration::from_secs;
        assert_eq!(span(s(0)), "0s");
        assert_eq!(span(s(42)), "42s");
        assert_eq!(span(s(300)), "5m");
        assert_eq!(span(s(303)), "5m 3s");
        assert_eq!(span(s(3 * 3600 + 120 + 5)), "3h 2m");
        assert_eq!(span(s(7200)), "2h");
        assert_eq!(span(s(2 * 86_400 + 4 * 3600 + 59)), "2d 4h");
        assert_eq!(span(s(86_400 + 60)), "1d");
        assert_eq!(elapsed(std::time::Duration::from_millis(340)), "340 ms");
        assert_eq!(elapsed(std::time::Duration::from_millis(2440)), "2.4 s");
        assert_eq!(elapsed(s(190)), "3m 10s");
    }

    #[test]
    fn moments_are_relative_with_the_full_time_in_the_zone() {
        let now = utc("2026-12-04T03:37:24Z");
        let w = When::new(utc("2026-12-04T03:32:24Z"), now, chrono_tz::Europe::Berlin);
        assert_eq!(w.rel, "5m ago");
        assert_eq!(w.full, "2026-12-04 04:32:24");
        assert_eq!(w.iso, "2026-12-04T04:32:24+01:00");
        assert_eq!(When::new(now, now, Tz::UTC).rel, "now");
        let soon = When::new(now + chrono::Duration::milliseconds(300), now, Tz::UTC);
        assert_eq!(soon.rel, "now");
        let later = When::new(utc("2026-12-04T05:40:24Z"), now, Tz::UTC);
        assert_eq!(later.rel, "in 2h 3m");
    }

    #[test]
    fn job_links_escape_the_name_as_one_segment() {
        assert_eq!(job_href("db.dump-1_x"), "/jobs/db.dump-1_x");
        assert_eq!(job_href("a/b c<d>"), "/jobs/a%2Fb%20c%3Cd%3E");
        assert_eq!(decode_segment("a%2Fb%20c%3Cd%3E").unwrap(), "a/b c<d>");
        assert_eq!(decode_segment("plain").unwrap(), "plain");
        assert_eq!(decode_segment("bad%zz"), None);
        assert_eq!(decode_segment("cut%4"), None);
        assert_eq!(decode_segment("%ff"), None);
    }

    #[test]
    fn every_state_has_a_word() {
        use crate::alert::SeverityName as S;
        let words: Vec<_> = [
            Some(S::Ok),
            Some(S::Warning),
            Some(S::Critical),
            Some(S::Unknown),
            None,
        ]
        .into_iter()
        .map(|s| State::of(s).word)
        .collect();
        assert_eq!(words, ["up", "warning", "down", "unknown", "pending"]);
        assert_eq!(State::of_run("critical").word, "down");
        assert_eq!(State::of_run("skipped").word, "skipped");
    }

    #[test]
    fn pages_carry_a_strict_policy_and_assets_are_known_by_name() {
        let page = html_response(StatusCode::OK, "<p>x</p>".into());
        let csp = page.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        let css = asset("klaxon.css").unwrap();
        assert_eq!(css.headers()[CONTENT_TYPE], "text/css; charset=utf-8");
        assert!(asset("klaxon.js").is_some());
        assert!(asset("../Cargo.toml").is_none());
        assert!(asset("").is_none());
    }
}
