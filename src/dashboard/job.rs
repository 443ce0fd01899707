//! `/jobs/JOB`: one job's page — its state, a chart of its runs' duration (or the
//! latency its check measured) over time, its incidents, its recent history, and its
//! config as validated, secrets shown as `***`. [`NotFound`] is the page for a name the
//! config does not have.

use askama::Template;
use chrono::{DateTime, Utc};

use super::{Actions, Frame, State, When, elapsed, job_href, span, svg};
use crate::config::Job;
use crate::liveness::Liveness;
use crate::runtime::Runtime;
use crate::store::{Incident, RunRecord, StoreError, Verdict};

/// Runs in the history table.
pub const HISTORY_ROWS: usize = 100;

/// Incidents listed, newest first.
pub const INCIDENTS_SHOWN: usize = 20;

/// Runs in the duration/latency chart.
pub const CHART_RUNS: usize = 500;

#[derive(Debug, Template)]
#[template(path = "job.html")]
pub struct JobPage {
    pub frame: Frame,
    pub name: String,
    pub href: String,
    pub state: State,
    pub since: Option<When>,
    pub silenced: Option<String>,
    pub alert_open: bool,
    pub acked: bool,
    pub kind: &'static str,
    pub target: String,
    pub next_run: Option<When>,
    /// The bar of its last runs, one segment each, and the duration/latency chart
    /// (SVG markup).
    pub bar: String,
    pub chart: String,
    pub has_runs: bool,
    pub incidents: Vec<IncidentRow>,
    pub runs: Vec<RunRow>,
    pub config: Vec<(&'static str, String)>,
    /// The check's own table as written, secrets as `***`.
    pub settings: Vec<(String, String)>,
}

/// One run in the history table.
#[derive(Debug)]
pub struct RunRow {
    pub started: When,
    pub state: State,
    pub duration: String,
    pub attempts: u32,
    pub summary: String,
    /// Why it was skipped, what silenced it.
    pub note: String,
}

/// A time the job was down (or warning): from its first failed run to the run that
/// recovered, or still going.
#[derive(Debug)]
pub struct IncidentRow {
    pub state: State,
    pub from: When,
    pub to: Option<When>,
    pub length: String,
    /// Judged runs it spans, and why it began (its first run's summary).
    pub runs: u64,
    pub summary: String,
}

/// The page for a job the config does not have.
#[derive(Debug, Template)]
#[template(path = "not_found.html")]
pub struct NotFound {
    pub frame: Frame,
    pub what: String,
}

/// The page of `job` as of `now`.
pub fn gather(
    rt: &Runtime,
    alive: &Liveness,
    actions: Actions,
    job: &Job,
    now: DateTime<Utc>,
) -> Result<JobPage, StoreError> {
    let state = rt.store.job_state(&job.name)?;
    let runs = rt.store.history(&job.name, HISTORY_ROWS)?;
    let last_fires = rt.store.last_fires([job.name.as_str()])?;
    let silences = rt.store.silences(now, false)?;
    let series = rt.store.series(&job.name, CHART_RUNS)?;
    let incidents = rt.store.incidents(&job.name, INCIDENTS_SHOWN)?;
    let tz = job.timezone;
    let silence = crate::status::silenced(&rt.config, &silences, &job.name, now);
    Ok(JobPage {
        frame: Frame::new(rt, alive, actions),
        name: job.name.clone(),
        href: job_href(&job.name),
        state: State::of(state.severity),
        since: state.since.map(|t| When::new(t, now, tz)),
        silenced: silence.map(|s| format!("{} until {}", s.by, When::new(s.until, now, tz).full)),
        alert_open: state.open.is_some(),
        acked: state.open.as_ref().is_some_and(|o| o.acked.is_some()),
        kind: job.check.kind(),
        target: job.target.clone(),
        next_run: crate::status::next_run(job, last_fires.get(&job.name).copied(), now)
            .map(|t| When::new(t, now, tz)),
        bar: svg::run_bar(&series),
        chart: svg::chart(&series),
        has_runs: !series.is_empty(),
        incidents: incidents
            .iter()
            .map(|i| incident_row(i, now, job))
            .collect(),
        runs: runs.iter().map(|r| run_row(r, now, job)).collect(),
        config: config_rows(rt, job),
        settings: job.settings.clone(),
    })
}

fn incident_row(incident: &Incident, now: DateTime<Utc>, job: &Job) -> IncidentRow {
    let state = match incident.worst {
        Verdict::Warning => State::of_run("warning"),
        Verdict::Unknown => State::of_run("unknown"),
        _ => State::of_run("critical"),
    };
    IncidentRow {
        state,
        from: When::new(incident.from, now, job.timezone),
        to: incident.to.map(|t| When::new(t, now, job.timezone)),
        length: span(incident.duration(now)),
        runs: incident.runs,
        summary: incident.summary.clone(),
    }
}

fn run_row(run: &RunRecord, now: DateTime<Utc>, job: &Job) -> RunRow {
    let mut note = run
        .skipped
        .clone()
        .map(|s| format!("skipped: {s}"))
        .unwrap_or_default();
    if let Some(by) = &run.silenced {
        if !note.is_empty() {
            note.push_str("; ");
        }
        note.push_str("silenced by ");
        note.push_str(by);
    }
    RunRow {
        started: When::new(run.started_at, now, job.timezone),
        state: if run.skipped.is_some() {
            State::of_run("skipped")
        } else {
            State::of_run(&run.severity)
        },
        duration: elapsed(run.elapsed),
        attempts: run.attempts,
        summary: run.summary.clone(),
        note,
    }
}

/// The job's settings as validated, in the order of the reference config. A secret
/// (the heartbeat URL) is only said to be there.
fn config_rows(rt: &Runtime, job: &Job) -> Vec<(&'static str, String)> {
    let d = |d: std::time::Duration| humantime::format_duration(d).to_string();
    let list = |names: &[String]| {
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    };
    let notify = job
        .notify
        .iter()
        .map(|n| match rt.config.notifier(n) {
            Some(entry) => format!("{n} ({})", entry.spec.kind()),
            None => n.clone(),
        })
        .collect::<Vec<_>>();
    let mut rows = vec![
        ("schedule", job.trigger.describe()),
        ("timezone", job.timezone.name().to_owned()),
        ("check", format!("{} {}", job.check.kind(), job.target)),
        ("timeout", d(job.timeout)),
        ("attempts", job.retry.attempts().to_string()),
        (
            "alert",
            format!(
                "after {} failed run(s), recovered after {} ok run(s)",
                job.alert.after, job.alert.recover_after
            ),
        ),
        (
            "remind",
            job.alert.remind.map_or_else(|| "never".to_owned(), d),
        ),
        (
            "resolved",
            if job.alert.resolved {
                "sent"
            } else {
                "not sent"
            }
            .to_owned(),
        ),
        ("notify", list(&notify)),
        ("depends_on", list(&job.depends_on)),
    ];
    let optional = [
        ("max_duration", job.max_duration),
        ("jitter", job.jitter),
        ("misfire_grace", job.misfire_grace),
    ];
    rows.extend(
        optional
            .into_iter()
            .filter_map(|(key, value)| Some((key, d(value?)))),
    );
    rows.push((
        "heartbeat",
        if job.heartbeat.is_some() {
            "***"
        } else {
            "none"
        }
        .to_owned(),
    ));
    rows.push(("coalesce", job.coalesce.to_string()));
    rows.push(("max_instances", job.max_instances.to_string()));
    rows.push(("network", job.network.to_string()));
    rows
}
