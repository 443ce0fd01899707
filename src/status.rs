//! Each job's state as the store knows it: what `klaxon status --json` prints and the
//! listener's `/status` serves (the same rows, built here once).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{Config, Job};
use crate::schedule::Trigger;
use crate::store::{Store, StoreError};

/// One job's row; the JSON shape SPEC.md gives for `status`.
#[derive(Debug, Serialize)]
pub struct JobStatus {
    pub job: String,
    pub severity: String,
    pub since: Option<String>,
    pub consecutive_failures: u32,
    pub alert_open: bool,
    pub last_run: Option<String>,
    pub next_run: Option<String>,
    pub undelivered: u32,
    pub given_up: u32,
    /// Until when the job's alerts are silenced, and by what (a silence or a
    /// maintenance window), the one that lasts longest.
    pub silenced_until: Option<String>,
    pub silenced_by: Option<String>,
    /// Who acknowledged the open alert, and when.
    pub acknowledged: Option<Acknowledgement>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Acknowledgement {
    pub by: String,
    pub at: String,
    pub comment: Option<String>,
}

/// What silences `job` at `now`: one of `silences` (those in force, read once for all
/// jobs) or a maintenance window; the one that lasts longest.
pub fn silenced(
    config: &Config,
    silences: &[crate::store::Silence],
    job: &str,
    now: DateTime<Utc>,
) -> Option<crate::alert::Silenced> {
    let stored = silences
        .iter()
        .filter(|s| s.active_at(now) && s.covers(job))
        .max_by_key(|s| s.ends_at)
        .map(crate::store::Silence::silenced);
    crate::alert::Silenced::longer(
        stored,
        crate::quiet::maintenance(&config.maintenance, job, now),
    )
}

/// `t` in the job's zone, as RFC 3339.
pub fn rfc3339(t: DateTime<Utc>, job: &Job) -> String {
    t.with_timezone(&job.timezone).to_rfc3339()
}

/// When the job fires next, as far as the store can tell without the agent.
pub fn next_run(
    job: &Job,
    last_fire: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match &job.trigger {
        Trigger::Every(interval) => {
            let next = last_fire? + chrono::Duration::from_std(*interval).ok()?;
            Some(next.max(now))
        }
        trigger => trigger.next_after(now),
    }
}

/// The rows for every job of `config`, in config order, as of `now`.
pub fn rows(
    config: &Config,
    store: &Store,
    now: DateTime<Utc>,
) -> Result<Vec<JobStatus>, StoreError> {
    let last_fires = store.last_fires(config.jobs.iter().map(|j| j.name.as_str()))?;
    let undelivered = store.undelivered()?;
    let silences = store.silences(now, false)?;
    let mut rows = Vec::with_capacity(config.jobs.len());
    for job in &config.jobs {
        let state = store.job_state(&job.name)?;
        let (pending, given_up) = undelivered.get(&job.name).copied().unwrap_or_default();
        let silence = silenced(config, &silences, &job.name, now);
        let acknowledged =
            state
                .open
                .as_ref()
                .and_then(|o| o.acked.as_ref())
                .map(|a| Acknowledgement {
                    by: a.by.clone(),
                    at: rfc3339(a.at, job),
                    comment: a.comment.clone(),
                });
        rows.push(JobStatus {
            job: job.name.clone(),
            severity: match state.severity {
                Some(s) => klaxon_checks::Severity::from(s).to_string(),
                None => "pending".to_owned(),
            },
            since: state.since.map(|t| rfc3339(t, job)),
            consecutive_failures: state.consecutive_failures,
            alert_open: state.open.is_some(),
            last_run: state.last_run.map(|t| rfc3339(t, job)),
            next_run: next_run(job, last_fires.get(&job.name).copied(), now)
                .map(|t| rfc3339(t, job)),
            undelivered: pending,
            given_up,
            silenced_until: silence.as_ref().map(|s| rfc3339(s.until, job)),
            silenced_by: silence.map(|s| s.by),
            acknowledged,
        });
    }
    Ok(rows)
}
