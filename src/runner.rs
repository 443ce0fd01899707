//! One run of one job: the check with its retries, then the alert state machine, then
//! the run, the new state and the messages it makes due written in one transaction.
//! A failed check is a result; only the store failing is an error.
//!
//! A run cut short because klaxon is stopping (its script stopped, or a retry it still
//! had to make not started) is not a result: it is recorded as `interrupted`, moves no
//! alert state and sends nothing (see [`record_interrupted`]).
//! Nor is a network run while the machine is offline (`agent.online`): it is recorded
//! as `offline`, the same way (see [`crate::online`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use klaxon_checks::{CheckSpec, Outcome, Severity};
use klaxon_notifiers::CheckInfo;
use tokio_util::sync::CancellationToken;

pub use crate::alert::to_notifier_severity;
use crate::alert::{Route, Routes, Run, Transition};
use crate::config::Job;
use crate::heartbeat;
use crate::retry::{RetryPolicy, run_with_retry};
use crate::runtime::Runtime;
use crate::scheduler::Fire;
use crate::store::{Change, OutboxItem, RunRecord};

/// What a run did: its record and the messages it put in the outbox.
#[derive(Debug)]
pub struct Finished {
    pub record: RunRecord,
    pub severity: Severity,
    pub messages: Vec<OutboxItem>,
}

/// What history says of a run cut short by a shutdown: its severity and why.
pub const INTERRUPTED: &str = "interrupted";

impl Finished {
    /// Whether the run was cut short by a shutdown (and recorded as such).
    pub fn interrupted(&self) -> bool {
        self.record.skipped.as_deref() == Some(INTERRUPTED)
    }
}

/// Whether a run that ended this way was cut short by `stop`: its last try was stopped,
/// or it failed with tries left that `stop` kept from starting. An ok run, or a failure
/// on its last allowed try, is a result even when it ends after `stop`.
pub fn cut_short(stop: &CancellationToken, ok: bool, last_interrupted: bool, tries: Tries) -> bool {
    last_interrupted || (!ok && stop.is_cancelled() && tries.made < tries.allowed)
}

/// Why a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A fire of its schedule (kept as the run's `fire_at`).
    Fire(Fire),
    /// Asked for by a person (`klaxon once`, the dashboard's "Run now"): no fire of the
    /// schedule, so the schedule keeps its phase. `next_run` is when the schedule fires
    /// next, for the messages the run makes.
    Asked { next_run: Option<DateTime<Utc>> },
}

/// Runs `job` now: tries the check up to `retry.attempts()` times (fewer when `stop`
/// is cancelled), records the result and enqueues the messages it makes due.
pub async fn run_job(
    rt: &Arc<Runtime>,
    job: &Job,
    retry: &RetryPolicy,
    cause: Cause,
    stop: &CancellationToken,
) -> anyhow::Result<Finished> {
    let (next_run, fire_at) = match cause {
        Cause::Fire(f) => (f.next_run, Some(f.nominal)),
        Cause::Asked { next_run } => (next_run, None),
    };
    let check = rt
        .checks
        .get(&job.name)
        .ok_or_else(|| anyhow::anyhow!("job `{}` has no built check", job.name))?
        .clone();
    // Offline, a network check is not run: its answer would say nothing of its target.
    let online = rt.online.as_ref().filter(|_| job.network);
    if let Some(since) = online.and_then(|o| o.not_judged(&job.name)) {
        let times = Times {
            started_at: rt.clock.now(),
            elapsed: Duration::ZERO,
            fire_at,
        };
        let tries = Tries {
            made: 0,
            allowed: retry.attempts(),
        };
        return record_offline(rt, job, since, None, tries, times).await;
    }
    let pings = job
        .heartbeat
        .as_ref()
        .map(|url| rt.pinger.start_run(&job.name, url));
    if check.wants_restore() {
        let (store, name) = (rt.store.clone(), job.name.clone());
        let kept = crate::store::THREADS
            .run(move || store.carried(&name))
            .await??;
        check.restore(kept.as_deref());
    }
    let started_at = rt.clock.now();
    let clock = tokio::time::Instant::now();
    let timeout = job.timeout;
    let (result, attempts) = run_with_retry(
        retry,
        || {
            let check = check.clone();
            async move {
                let outcome = check.run_until(timeout, stop.cancelled()).await;
                if outcome.severity.is_ok() {
                    Ok(outcome)
                } else {
                    tracing::debug!(job = %job.name, summary = %outcome.summary, "try failed");
                    Err(outcome)
                }
            }
        },
        stop,
    )
    .await;
    let outcome = result.unwrap_or_else(|o| o);
    let elapsed = clock.elapsed();
    let tries = Tries {
        made: attempts,
        allowed: retry.attempts(),
    };
    let times = Times {
        started_at,
        elapsed,
        fire_at,
    };
    let ok = outcome.severity.is_ok();
    if cut_short(stop, ok, outcome.interrupted, tries) {
        // No end ping either: `/start` without an end is what a cut-short run is.
        drop(pings);
        let last = (!outcome.interrupted).then_some(outcome.summary.as_str());
        return record_interrupted(rt, &job.name, last, tries, times).await;
    }
    // A network run that failed is judged once a probe round says the network works.
    if let Some(online) = online.filter(|_| !ok)
        && let Some(since) = online
            .unjudged(&job.name, tokio::time::Instant::now(), rt.clock.now())
            .await
    {
        drop(pings);
        let last = Some(outcome.summary.as_str());
        return record_offline(rt, job, since, last, tries, times).await;
    }
    let outcome = over_time(outcome, elapsed, job.max_duration);
    if let Some(pings) = pings {
        let (signal, body) = end_ping(&outcome);
        pings.finish(signal, body);
    }
    let finished = record(rt, &Subject::from(job), outcome, tries, times, next_run).await?;
    carry(rt, &job.name, &check).await;
    Ok(finished)
}

/// Keeps what the check carries into its next run (a `log` check's read position) once
/// the run is recorded. When this write fails the check goes on from where it is: only
/// a restart before the next successful write would judge those lines again.
async fn carry(rt: &Arc<Runtime>, job: &str, check: &klaxon_checks::Check) {
    let Some(state) = check.commit() else {
        return;
    };
    let (store, name) = (rt.store.clone(), job.to_owned());
    match crate::store::THREADS
        .run(move || store.carry(&name, &state))
        .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(job = %job, "cannot keep the check's position: {e}"),
        Err(e) => tracing::warn!(job = %job, "cannot keep the check's position: {e}"),
    }
}

/// `max_duration` judged on a run that took `elapsed`: longer is at least a warning
/// that says so (`took 3.2s (max_duration 2s): …`); a worse run keeps its severity and
/// says it too.
pub fn over_time(mut outcome: Outcome, elapsed: Duration, max: Option<Duration>) -> Outcome {
    let Some(max) = max.filter(|max| elapsed > *max) else {
        return outcome;
    };
    let phrase = format!(
        "took {} (max_duration {})",
        klaxon_notifiers::text::human_duration(elapsed.as_millis() as u64),
        humantime::format_duration(max)
    );
    if outcome.severity < Severity::Warning {
        outcome.severity = Severity::Warning;
        outcome.summary = format!("{phrase}: {}", outcome.summary);
    } else {
        outcome.summary = format!("{}; {phrase}", outcome.summary);
    }
    outcome
}

/// Records the warning of a run begun `started_at` and still going after its
/// `max_duration` (an `exec` command, a heartbeat's `/start` without its end yet):
/// `still running after 10m (max_duration 10m)`, a run of its own (one try of
/// `allowed`) so it alerts while the run goes on.
pub async fn record_still_running(
    rt: &Arc<Runtime>,
    job: &Subject,
    started_at: DateTime<Utc>,
    max: Duration,
    allowed: u32,
    next_run: Option<DateTime<Utc>>,
) -> anyhow::Result<Finished> {
    let max_text = humantime::format_duration(max);
    let outcome = Outcome::new(
        Severity::Warning,
        format!("still running after {max_text} (max_duration {max_text})"),
        max,
    );
    let tries = Tries { made: 1, allowed };
    let times = Times {
        started_at,
        elapsed: max,
        fire_at: None,
    };
    record(rt, job, outcome, tries, times, next_run).await
}

/// Records a run cut short by a shutdown in history as `interrupted`, with what its
/// last try said if that try finished (`last`), without touching the job's alert state
/// or sending anything.
pub async fn record_interrupted(
    rt: &Arc<Runtime>,
    job: &str,
    last: Option<&str>,
    tries: Tries,
    times: Times,
) -> anyhow::Result<Finished> {
    let Tries { made, allowed } = tries;
    let summary = match last {
        Some(last) => format!("interrupted by shutdown after try {made} of {allowed}: {last}"),
        None => format!("interrupted by shutdown during try {made} of {allowed}"),
    };
    tracing::info!(job = %job, attempts = made, "{summary}; no alert state changed");
    record_unjudged(rt, job, INTERRUPTED, summary, made, times).await
}

/// Records a network run of `job` while the machine is offline (since `since`) as
/// `offline`: not run at all, or run with `last` its last try's summary. Like an
/// interrupted run, it moves no alert state and sends nothing.
pub async fn record_offline(
    rt: &Arc<Runtime>,
    job: &Job,
    since: DateTime<Utc>,
    last: Option<&str>,
    tries: Tries,
    times: Times,
) -> anyhow::Result<Finished> {
    let since =
        klaxon_notifiers::text::timestamp(&since.with_timezone(&job.timezone).fixed_offset());
    let offline = format!("offline since {since} (no target of agent.online answers)");
    let summary = match last {
        Some(last) => format!(
            "not judged: {offline}; try {} of {}: {last}",
            tries.made, tries.allowed
        ),
        None => format!("not run: {offline}"),
    };
    // Each fire while offline would log a line; the agent said once that it is offline.
    match last {
        Some(_) => tracing::info!(job = %job.name, "{summary}; no alert state changed"),
        None => tracing::debug!(job = %job.name, "{summary}; no alert state changed"),
    }
    record_unjudged(
        rt,
        &job.name,
        crate::online::OFFLINE,
        summary,
        tries.made,
        times,
    )
    .await
}

/// Writes a run that is no result (`why`: `interrupted`, `offline`) to history, as its
/// severity and its `skipped`, leaving the job's alert state alone.
async fn record_unjudged(
    rt: &Arc<Runtime>,
    job: &str,
    why: &str,
    summary: String,
    attempts: u32,
    times: Times,
) -> anyhow::Result<Finished> {
    let record = RunRecord {
        job: job.to_owned(),
        started_at: times.started_at,
        finished_at: times.finished_at(),
        severity: why.into(),
        attempts,
        elapsed: times.elapsed,
        summary,
        output: None,
        skipped: Some(why.into()),
        metrics: Vec::new(),
        fire_at: times.fire_at,
        silenced: None,
    };
    let store = rt.store.clone();
    let written = record.clone();
    crate::store::THREADS
        .run(move || store.record_skip(&written))
        .await??;
    Ok(Finished {
        record,
        // A run that is no result says nothing about the target.
        severity: Severity::Unknown,
        messages: Vec::new(),
    })
}

/// The ping that ends a run: success on ok, else `/fail` with the summary and output.
fn end_ping(outcome: &Outcome) -> (heartbeat::Signal, Option<String>) {
    if outcome.severity.is_ok() {
        (heartbeat::Signal::Success, None)
    } else {
        let body = heartbeat::failure_body(&outcome.summary, outcome.output.as_deref());
        (heartbeat::Signal::Fail, Some(body))
    }
}

/// When a run happened, and for which scheduled fire.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    pub started_at: DateTime<Utc>,
    pub elapsed: Duration,
    pub fire_at: Option<DateTime<Utc>>,
}

impl Times {
    /// When the run ended: its start plus its elapsed time.
    pub fn finished_at(&self) -> DateTime<Utc> {
        self.started_at + chrono::Duration::from_std(self.elapsed).unwrap_or_default()
    }
}

/// Tries made out of tries allowed, for history and messages.
#[derive(Debug, Clone, Copy)]
pub struct Tries {
    pub made: u32,
    pub allowed: u32,
}

/// Evaluates a passive `heartbeat` job whose ping was expected at `expected` (its grace
/// has run out, or a ping just arrived) and records the result.
pub async fn evaluate_heartbeat(
    rt: &Arc<Runtime>,
    job: &Job,
    expected: DateTime<Utc>,
    fire_at: Option<DateTime<Utc>>,
    next_run: Option<DateTime<Utc>>,
) -> anyhow::Result<Finished> {
    evaluate_run(rt, job, expected, fire_at, next_run, None).await
}

/// [`evaluate_heartbeat`] for a ping that ends a run begun `ran` ago (`/start`), judged
/// against `max_duration` too.
async fn evaluate_run(
    rt: &Arc<Runtime>,
    job: &Job,
    expected: DateTime<Utc>,
    fire_at: Option<DateTime<Utc>>,
    next_run: Option<DateTime<Utc>>,
    ran: Option<Duration>,
) -> anyhow::Result<Finished> {
    let CheckSpec::Heartbeat(spec) = &job.check else {
        anyhow::bail!("job `{}` is not a heartbeat job", job.name);
    };
    let now = rt.clock.now();
    let last_ping = rt.store.last_ping(&job.name)?;
    let outcome = klaxon_checks::heartbeat::evaluate(
        spec,
        last_ping.map(SystemTime::from),
        SystemTime::from(expected),
        SystemTime::from(now),
    );
    let outcome = match ran {
        Some(ran) => over_time(outcome, ran, job.max_duration),
        None => outcome,
    };
    // A passive job's own heartbeat URL hears each evaluation: success or `/fail`.
    if let Some(url) = &job.heartbeat {
        let (signal, body) = end_ping(&outcome);
        rt.pinger.send(&job.name, url, signal, body);
    }
    let tries = Tries {
        made: 1,
        allowed: 1,
    };
    let times = Times {
        started_at: now,
        elapsed: Duration::ZERO,
        fire_at,
    };
    record(rt, &Subject::from(job), outcome, tries, times, next_run).await
}

/// Records a ping of a passive job at `at` (from `klaxon ping` or the listener) and the
/// ok run it amounts to, which closes an open alert like any ok run. `started`: the
/// ping ends a run begun then (`/ping/JOB/start`), judged against `max_duration`.
pub async fn ping(
    rt: &Arc<Runtime>,
    job: &Job,
    at: DateTime<Utc>,
    started: Option<DateTime<Utc>>,
) -> anyhow::Result<Finished> {
    if job.check.is_active() {
        anyhow::bail!("job `{}` is not a heartbeat job", job.name);
    }
    rt.store.record_ping(&job.name, at)?;
    let next_run = job.trigger.next_after(at);
    let ran = started.map(|s| (at - s).to_std().unwrap_or_default());
    evaluate_run(rt, job, at, None, next_run, ran).await
}

pub use crate::alert::Subject;

impl From<&Job> for Subject {
    fn from(job: &Job) -> Self {
        Self {
            name: job.name.clone(),
            timezone: job.timezone,
            notify: job.notify.clone(),
            depends_on: job.depends_on.clone(),
            alert: job.alert.clone(),
            check: CheckInfo {
                kind: job.check.kind().to_owned(),
                target: job.target.clone(),
            },
        }
    }
}

/// Records one run's outcome: history, the alert state it leads to and the messages it
/// makes due, in one transaction; then wakes the outbox.
pub async fn record(
    rt: &Arc<Runtime>,
    job: &Subject,
    outcome: Outcome,
    tries: Tries,
    times: Times,
    next_run: Option<DateTime<Utc>>,
) -> anyhow::Result<Finished> {
    let finished_at = times.finished_at();
    let Times {
        started_at,
        elapsed,
        fire_at,
    } = times;
    log_result(job, &outcome, tries.made, tries.allowed, elapsed);
    let attempts = tries.made;

    let record = RunRecord {
        job: job.name.clone(),
        started_at,
        finished_at,
        severity: outcome.severity.to_string(),
        attempts,
        elapsed,
        summary: outcome.summary.clone(),
        output: outcome.output.clone(),
        skipped: None,
        metrics: outcome.metrics.clone(),
        fire_at,
        silenced: None,
    };
    let severity = outcome.severity;
    let transition = Transition {
        job: job.clone(),
        routes: routes(rt, job),
        run: Run {
            outcome,
            attempts,
            max_attempts: tries.allowed,
            elapsed,
            started_at,
            finished_at,
            next_run,
        },
        maintenance: crate::quiet::maintenance(&rt.config.maintenance, &job.name, finished_at),
    };
    let jobs =
        || std::iter::once(job.name.as_str()).chain(job.depends_on.iter().map(String::as_str));
    // A job with runs kept in memory (or a dependency with some) goes on from them.
    let kept = rt.unwritten.as_ref().filter(|u| u.holds(jobs()));
    let recorded = match kept {
        Some(_) => Err(crate::store::StoreError::Commit(
            "earlier runs are not written yet".into(),
        )),
        None => {
            let change = Change::Alert(Box::new(transition.clone()));
            rt.store.record(record.clone(), change).await
        }
    };
    let messages = match (recorded, &rt.unwritten) {
        (Ok(messages), _) => messages,
        (Err(e), Some(unwritten)) => {
            if kept.is_some() {
                tracing::debug!(job = %job.name, "earlier runs are kept in memory: so is this one");
            } else {
                tracing::warn!(
                    job = %job.name,
                    "the run cannot be written ({e}): it is kept in memory and its messages are sent from there"
                );
            }
            let store = rt.store.clone();
            let names: Vec<String> = jobs().map(str::to_owned).collect();
            let name = job.name.clone();
            // What the store holds of these jobs, and the silence covering this one
            // (reads work on a full disk), in one trip to a blocking thread.
            let (stored, stored_silence) = tokio::task::spawn_blocking(move || {
                let states = names
                    .into_iter()
                    .filter_map(|n| store.job_state(&n).ok().map(|s| (n, s)))
                    .collect::<std::collections::HashMap<_, _>>();
                let silence = store.silence_of(&name, finished_at).ok().flatten();
                (states, silence.map(|s| s.silenced()))
            })
            .await?;
            let mut record = record.clone();
            record.silenced =
                crate::alert::Silenced::longer(stored_silence, transition.maintenance.clone())
                    .map(|s| s.by);
            let due = unwritten.keep(record, &stored, &transition);
            unwritten.send(rt, due);
            Vec::new()
        }
        (Err(e), None) => return Err(e.into()),
    };
    rt.metrics.run(&job.name, severity, elapsed);
    Ok(Finished {
        record,
        severity,
        messages,
    })
}

fn log_result(job: &Subject, outcome: &Outcome, attempts: u32, max: u32, elapsed: Duration) {
    let elapsed_ms = elapsed.as_millis() as u64;
    if outcome.severity.is_ok() {
        tracing::info!(job = %job.name, attempts, elapsed_ms, "ok: {}", outcome.summary);
    } else {
        tracing::warn!(
            job = %job.name,
            severity = %outcome.severity,
            attempts,
            max_attempts = max,
            elapsed_ms,
            "{}: {}",
            outcome.severity,
            outcome.summary
        );
    }
}

/// Where `job`'s messages may go under `rt`'s config: its notifiers that are
/// configured, each with its `min_severity`.
fn routes(rt: &Runtime, job: &Subject) -> Routes {
    Routes {
        agent: rt.config.agent.name.clone(),
        notifiers: job
            .notify
            .iter()
            .filter_map(|name| {
                let entry = rt.config.notifier(name)?;
                Some(Route {
                    notifier: name.clone(),
                    min_severity: entry.min_severity,
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_longer_than_max_duration_is_a_warning_that_says_so() {
        let ok = Outcome::new(Severity::Ok, "exit 0", Duration::ZERO);
        let max = Some(Duration::from_secs(2));
        let r = over_time(ok.clone(), Duration::from_millis(3200), max);
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Warning, "took 3.2s (max_duration 2s): exit 0")
        );
        // Within the limit, or without one: unchanged.
        assert_eq!(over_time(ok.clone(), Duration::from_secs(2), max), ok);
        assert_eq!(over_time(ok.clone(), Duration::from_secs(9), None), ok);
        // Worse already: kept, and the duration named too.
        let failed = Outcome::new(Severity::Critical, "exit 2", Duration::ZERO);
        let r = over_time(failed, Duration::from_secs(5), max);
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Critical, "exit 2; took 5.0s (max_duration 2s)")
        );
    }

    #[test]
    fn a_run_is_cut_short_only_when_the_stop_kept_it_from_a_result() {
        let stopped = CancellationToken::new();
        stopped.cancel();
        let running = CancellationToken::new();
        let tries = |made, allowed| Tries { made, allowed };
        // (stop, ok, last try stopped, tries) -> cut short
        let table = [
            (&stopped, false, false, tries(1, 3), true), // failed, retries left unmade
            (&stopped, false, false, tries(3, 3), false), // failed on its last try: a result
            (&stopped, true, false, tries(1, 3), false), // ok: a result
            (&stopped, false, true, tries(1, 1), true),  // its script was stopped
            (&running, false, false, tries(3, 3), false), // no stop: a plain failure
        ];
        for (stop, ok, last, tries, want) in table {
            assert_eq!(
                cut_short(stop, ok, last, tries),
                want,
                "ok {ok}, last stopped {last}, {tries:?}"
            );
        }
    }
}
