//! What the dashboard's buttons do: each a form-encoded `POST` that needs a session
//! ([`super::auth`]) and its CSRF token, and answers `303 See Other` back to the page
//! it came from (the form's `next` field, else the `Referer` on this listener, else
//! `/`). A refusal or a failure is a small page saying why, with its status.
//!
//! | path | what it does | recorded as |
//! | --- | --- | --- |
//! | `POST /jobs/JOB/silence` ([`silence_path`]) | silences the job for [`SILENCE_FOR`] | by [`BY`] |
//! | `POST /jobs/JOB/ack` ([`ack_path`]) | acknowledges its open alert (409 without one) | by [`BY`] |
//! | `POST /jobs/JOB/run` ([`run_path`]) | runs it now, out of its schedule (409 while a run is going, or for a passive job) | a run in history, with no fire |
//! | `POST /outbox/ID/retry` ([`retry_path`]) | makes an undelivered message due now, its tries reset | `sent again by hand` in history |
//! | `POST /outbox/ID/drop` ([`drop_path`]) | removes an undelivered message | `dropped by hand` in history |
//!
//! Silences and acknowledgements are the API's ([`crate::api::add`], [`crate::api::ack`]);
//! retry and drop are what `klaxon outbox retry/drop` does ([`crate::store::Store::retry_held`],
//! [`crate::store::Store::drop_held`]); a run now is asked of the scheduler
//! ([`crate::scheduler::RunNow`]), which hands it out like a fire. With no
//! `agent.listen_token` configured every action is refused (403), as `/api` is.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::header::REFERER;
use hyper::{HeaderMap, Response, StatusCode};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

pub use klaxon_notifiers::buttons::SILENCE_FOR;

use super::auth::{self, BAD_CSRF, CSRF_FIELD, Form, NEXT_FIELD, Session};
use crate::listener::Body;
use crate::runtime::Runtime;
use crate::scheduler::{Ran, RunNow};
use crate::store::Held;

/// Who a silence or an acknowledgement made on the dashboard is recorded as.
pub const BY: &str = "dashboard";

/// `POST`: silences `job` for [`SILENCE_FOR`].
pub fn silence_path(job: &str) -> String {
    format!("/jobs/{job}/silence")
}

/// `POST`: acknowledges `job`'s open alert.
pub fn ack_path(job: &str) -> String {
    format!("/jobs/{job}/ack")
}

/// `POST`: runs `job` now.
pub fn run_path(job: &str) -> String {
    format!("/jobs/{job}/run")
}

/// `POST`: sends the undelivered message `id` again.
pub fn retry_path(id: i64) -> String {
    format!("/outbox/{id}/retry")
}

/// `POST`: drops the undelivered message `id`.
pub fn drop_path(id: i64) -> String {
    format!("/outbox/{id}/drop")
}

/// One of the dashboard's actions, as its path names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    Silence(&'a str),
    Ack(&'a str),
    Run(&'a str),
    Retry(i64),
    Drop(i64),
}

impl<'a> Action<'a> {
    /// The action at `path`, if it is one (any method: the listener allows POST alone).
    pub fn at(path: &'a str) -> Option<Self> {
        let (kind, rest) = path.strip_prefix('/')?.split_once('/')?;
        let (subject, verb) = rest.split_once('/')?;
        if subject.is_empty() || verb.contains('/') {
            return None;
        }
        match (kind, verb) {
            ("jobs", "silence") => Some(Action::Silence(subject)),
            ("jobs", "ack") => Some(Action::Ack(subject)),
            ("jobs", "run") => Some(Action::Run(subject)),
            ("outbox", "retry") => subject.parse().ok().map(Action::Retry),
            ("outbox", "drop") => subject.parse().ok().map(Action::Drop),
            _ => None,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Action::Silence(_) => "silence",
            Action::Ack(_) => "acknowledge",
            Action::Run(_) => "run now",
            Action::Retry(_) => "retry",
            Action::Drop(_) => "drop",
        }
    }
}

/// What a refused action is told when no `agent.listen_token` is configured.
pub const NO_TOKEN: &str = "forbidden: the dashboard's actions need `agent.listen_token` set (they change what klaxon sends and runs)";

/// Performs `action` for a request with `headers` and form `body`, if its session and
/// CSRF token allow it. `asks` reaches the scheduler (for a run now).
pub async fn perform(
    rt: &Arc<Runtime>,
    asks: &mpsc::Sender<RunNow>,
    action: Action<'_>,
    headers: &HeaderMap,
    body: &Bytes,
    peer: SocketAddr,
) -> Response<Body> {
    let Some(token) = &rt.config.agent.listen_token else {
        return auth::refused(StatusCode::FORBIDDEN, NO_TOKEN, auth::HOME);
    };
    let what = format!("dashboard action `{}`", action.what());
    if let Some(refused) = auth::from_elsewhere(rt, headers, peer, &what) {
        return refused;
    }
    let listen_url = rt.config.agent.listen_url.as_ref();
    let fields = Form::parse(body);
    let back = back(headers, listen_url, &fields);
    let Some(session) = Session::from_headers(headers, token) else {
        tracing::warn!(%peer, action = action.what(), "dashboard action refused: not signed in");
        return auth::refused(
            StatusCode::FORBIDDEN,
            "sign in first: this action needs a session (yours may have expired, or the token changed); nothing was changed",
            (&auth::login_path(&back), "Sign in"),
        );
    };
    if !session.csrf_is(fields.get(CSRF_FIELD)) {
        tracing::warn!(%peer, action = action.what(), "dashboard action refused: no CSRF token or a wrong one");
        return auth::refused(StatusCode::FORBIDDEN, BAD_CSRF, (&back, "Back"));
    }
    let done = match action {
        Action::Silence(job) => silence(rt, job).await,
        Action::Ack(job) => ack(rt, job).await,
        Action::Run(job) => run(asks, job).await,
        Action::Retry(id) => outbox(rt, id, false).await,
        Action::Drop(id) => outbox(rt, id, true).await,
    };
    match done {
        Ok(()) => {
            tracing::info!(%peer, action = action.what(), "dashboard action done");
            auth::see_other(&back, None)
        }
        Err((status, message)) => auth::refused(status, &message, (&back, "Back")),
    }
}

/// Where to send the browser afterwards: the form's `next`, else the `Referer` if it
/// is a page of this listener, else `/`.
fn back(headers: &HeaderMap, listen_url: Option<&url::Url>, fields: &Form) -> String {
    if let Some(next) = fields.get(NEXT_FIELD).and_then(auth::safe_next) {
        return next.to_owned();
    }
    let referer = headers
        .get(REFERER)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| url::Url::parse(r).ok());
    if let Some(referer) = referer
        && auth::is_own(&referer.origin().ascii_serialization(), headers, listen_url)
    {
        let path = match referer.query() {
            Some(query) => format!("{}?{query}", referer.path()),
            None => referer.path().to_owned(),
        };
        if auth::safe_next(&path).is_some() {
            return path;
        }
    }
    "/".to_owned()
}

type Failed = (StatusCode, String);

fn no_job(job: &str) -> Failed {
    (
        StatusCode::NOT_FOUND,
        format!("no job `{job}` in the config"),
    )
}

/// An API answer: fine when it succeeded, else its error.
fn answered((status, json): crate::api::Answer) -> Result<(), Failed> {
    if status.is_success() {
        return Ok(());
    }
    let message = json["error"]
        .as_str()
        .unwrap_or("the action failed")
        .to_owned();
    Err((status, message))
}

async fn silence(rt: &Arc<Runtime>, job: &str) -> Result<(), Failed> {
    if rt.config.job(job).is_none() {
        return Err(no_job(job));
    }
    let request = json!({ "jobs": [job], "for": SILENCE_FOR, "by": BY });
    let body = Bytes::from(request.to_string());
    match crate::api::add(rt, &body, None).await {
        Some(answer) => answered(answer),
        // Only a button's request can be refused, and this is none.
        None => Err((StatusCode::FORBIDDEN, "the silence was refused".into())),
    }
}

async fn ack(rt: &Arc<Runtime>, job: &str) -> Result<(), Failed> {
    let body = Bytes::from(json!({ "by": BY }).to_string());
    answered(crate::api::ack(rt, job, &body, false).await)
}

async fn run(asks: &mpsc::Sender<RunNow>, job: &str) -> Result<(), Failed> {
    let stopped = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the scheduler is not running (klaxon is stopping): nothing was started".to_owned(),
        )
    };
    let (reply, ran) = oneshot::channel();
    asks.send(RunNow {
        job: job.to_owned(),
        reply,
    })
    .await
    .map_err(|_| stopped())?;
    match ran.await.map_err(|_| stopped())? {
        Ran::Started => Ok(()),
        Ran::AlreadyRunning => Err((
            StatusCode::CONFLICT,
            format!("job `{job}` is running already: it was not started again"),
        )),
        Ran::Passive => Err((
            StatusCode::CONFLICT,
            format!("job `{job}` is a `heartbeat`: it is judged when it is pinged, not run"),
        )),
        Ran::NoSuchJob => Err(no_job(job)),
    }
}

/// `klaxon outbox retry ID` (or `drop`), written to the job's history.
async fn outbox(rt: &Arc<Runtime>, id: i64, drop: bool) -> Result<(), Failed> {
    let (store, now) = (rt.store.clone(), rt.clock.now());
    let done = crate::store::THREADS
        .run(move || {
            if drop {
                store.drop_held(Held::One(id), now)
            } else {
                store.retry_held(Held::One(id), now)
            }
        })
        .await;
    let failed = |e: &dyn std::fmt::Display| {
        tracing::error!("dashboard: the state store failed: {e}");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the state store failed; see the agent's log".to_owned(),
        )
    };
    match done {
        Ok(Ok(done)) if done.is_empty() => Err((
            StatusCode::NOT_FOUND,
            format!(
                "no undelivered message `{id}` in the outbox (it may have been delivered or dropped meanwhile)"
            ),
        )),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(failed(&e)),
        Err(e) => Err(failed(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_found_by_their_paths() {
        assert_eq!(Action::at(&silence_path("db")), Some(Action::Silence("db")));
        assert_eq!(Action::at(&ack_path("a.b-c")), Some(Action::Ack("a.b-c")));
        assert_eq!(Action::at(&run_path("db")), Some(Action::Run("db")));
        assert_eq!(Action::at(&retry_path(7)), Some(Action::Retry(7)));
        assert_eq!(Action::at(&drop_path(12)), Some(Action::Drop(12)));
        for path in [
            "/jobs/db",
            "/jobs//run",
            "/jobs/db/run/",
            "/jobs/db/run/x",
            "/jobs/db/start",
            "/outbox/x/retry",
            "/outbox/1/silence",
            "/other/db/run",
            "/",
        ] {
            assert_eq!(Action::at(path), None, "{path}");
        }
    }
}
