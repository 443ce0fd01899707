//! The listener's API for silences and acknowledgements (`agent.listen_token`
//! required): `GET /api/silences`, `POST /api/silences`, `DELETE /api/silences/ID`,
//! `POST /api/ack/JOB`. Each answers JSON; a mistake in the request is a 400 that says
//! what is wrong. They write the same store as `klaxon silence` and `klaxon ack`. A
//! notification button's scoped token is taken for one job's ack or silence only (see
//! [`crate::listener`]).

use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

use klaxon_notifiers::buttons::{PRESSED_BY, SILENCE_FOR};

use crate::runtime::Runtime;

/// The largest request body taken.
pub const MAX_BODY: usize = 64 * 1024;

/// `POST /api/silences`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceRequest {
    jobs: Vec<String>,
    #[serde(rename = "for")]
    length: Option<String>,
    until: Option<String>,
    comment: Option<String>,
    /// Who asks (default `api`).
    by: Option<String>,
}

/// `POST /api/ack/JOB`: both optional; an empty body is fine.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    comment: Option<String>,
    by: Option<String>,
}

/// An answer: status and JSON body.
pub type Answer = (StatusCode, serde_json::Value);

fn error(status: StatusCode, message: impl Into<String>) -> Answer {
    (status, json!({ "error": message.into() }))
}

fn store_failed(e: impl std::fmt::Display) -> Answer {
    tracing::error!("listener api: the state store failed: {e}");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the state store failed; see the agent's log",
    )
}

fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Answer> {
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))
}

/// `GET /api/silences`: the silences in force.
pub async fn list(rt: &Arc<Runtime>) -> Answer {
    let (store, now) = (rt.store.clone(), rt.clock.now());
    match crate::store::THREADS
        .run(move || store.silences(now, false))
        .await
    {
        Ok(Ok(silences)) => (StatusCode::OK, json!(silences)),
        Ok(Err(e)) => store_failed(e),
        Err(e) => store_failed(e),
    }
}

/// `POST /api/silences`: adds one; 201 with it.
///
/// With `button` (a request carrying a notification button's scoped token, which
/// `button` checks against a job), only what a "Silence 1h" button asks for is taken:
/// one job the token is good for, `for` [`SILENCE_FOR`], no `until`, recorded as by
/// [`PRESSED_BY`]; anything else is `None`, refused.
pub async fn add(
    rt: &Arc<Runtime>,
    body: &Bytes,
    button: Option<&(dyn Fn(&str) -> bool + Sync)>,
) -> Option<Answer> {
    let mut request: SilenceRequest = match parse(body) {
        Ok(r) => r,
        Err(answer) => return Some(answer),
    };
    if let Some(good_for) = button {
        let one_job = matches!(request.jobs.as_slice(), [job] if good_for(job));
        if !one_job || request.length.as_deref() != Some(SILENCE_FOR) || request.until.is_some() {
            return None;
        }
        request.by = Some(PRESSED_BY.into());
        request.comment = None;
    }
    let now = rt.clock.now();
    let new = match crate::quiet::silence_request(
        request.jobs,
        request.length.as_deref(),
        request.until.as_deref(),
        request.comment,
        request.by.unwrap_or_else(|| "api".into()),
        now,
        rt.config.agent.timezone,
    ) {
        Ok(new) => new,
        Err(e) => return Some(error(StatusCode::BAD_REQUEST, e)),
    };
    let store = rt.store.clone();
    Some(
        match crate::store::THREADS
            .run(move || store.add_silence(new, now))
            .await
        {
            Ok(Ok(silence)) => {
                tracing::info!(id = silence.id, jobs = ?silence.jobs, "silence added through the listener");
                (StatusCode::CREATED, json!(silence))
            }
            Ok(Err(e)) => store_failed(e),
            Err(e) => store_failed(e),
        },
    )
}

/// `DELETE /api/silences/ID`: ends it now.
pub async fn expire(rt: &Arc<Runtime>, id: &str) -> Answer {
    let Ok(id) = id.parse::<i64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not a silence id"),
        );
    };
    let (store, now) = (rt.store.clone(), rt.clock.now());
    match crate::store::THREADS
        .run(move || store.expire_silence(id, now))
        .await
    {
        Ok(Ok(Some(silence))) => (StatusCode::OK, json!(silence)),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, format!("no silence `{id}`")),
        Ok(Err(e)) => store_failed(e),
        Err(e) => store_failed(e),
    }
}

/// `POST /api/ack/JOB`: acknowledges its open alert.
///
/// With `button` (the request carries the job's "Acknowledge" button token), the
/// acknowledgement is recorded as by [`PRESSED_BY`], whatever the body says.
pub async fn ack(rt: &Arc<Runtime>, job: &str, body: &Bytes, button: bool) -> Answer {
    let mut request: AckRequest = if body.iter().all(u8::is_ascii_whitespace) {
        AckRequest::default()
    } else {
        match parse(body) {
            Ok(r) => r,
            Err(answer) => return answer,
        }
    };
    if button {
        request.by = Some(PRESSED_BY.into());
        request.comment = None;
    }
    let Some(job) = rt.config.job(job) else {
        return error(StatusCode::NOT_FOUND, format!("no job `{job}`"));
    };
    let ack = crate::alert::Ack {
        at: rt.clock.now(),
        by: request.by.unwrap_or_else(|| "api".into()),
        comment: request.comment.filter(|c| !c.trim().is_empty()),
    };
    let (store, name) = (rt.store.clone(), job.name.clone());
    match crate::store::THREADS
        .run(move || store.ack(&name, ack))
        .await
    {
        Ok(Ok(Some(open))) => {
            tracing::info!(job = %job.name, alert = %open.id, "alert acknowledged through the listener");
            (
                StatusCode::OK,
                json!({ "job": job.name, "alert": open.id, "acknowledged": open.acked.map(|a| json!({
                    "by": a.by, "at": a.at.to_rfc3339(), "comment": a.comment })) }),
            )
        }
        Ok(Ok(None)) => error(
            StatusCode::CONFLICT,
            format!("job `{}` has no open alert to acknowledge", job.name),
        ),
        Ok(Err(e)) => store_failed(e),
        Err(e) => store_failed(e),
    }
}
