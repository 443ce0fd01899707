//! `klaxon status [--json]` and `klaxon history JOB [--limit N] [--json]`: what the state
//! store knows, read directly (so they work while the agent runs, and without it).

use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;

use crate::config::{Env, Job};
use crate::schedule::Trigger;
use crate::store::Store;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Machine-readable output
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The job
    job: String,
    /// How many runs, newest first
    #[arg(long, default_value_t = 20, value_name = "N")]
    limit: usize,
    /// Machine-readable output
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct JobStatus {
    job: String,
    severity: String,
    since: Option<String>,
    consecutive_failures: u32,
    alert_open: bool,
    last_run: Option<String>,
    next_run: Option<String>,
    undelivered: u32,
    given_up: u32,
}

#[derive(Serialize)]
struct Run {
    started_at: String,
    finished_at: String,
    severity: String,
    attempts: u32,
    elapsed_ms: u64,
    summary: String,
    skipped: Option<String>,
}

fn rfc3339(t: DateTime<Utc>, job: &Job) -> String {
    t.with_timezone(&job.timezone).to_rfc3339()
}

/// When the job fires next, as far as the store can tell without the agent.
fn next_run(
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

pub fn status(config: Option<&Path>, env: &dyn Env, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let config = super::load(config, env)?;
    let store = Store::open(&config.agent.state_dir)?;
    let last_fires = store.last_fires()?;
    let undelivered = store.undelivered()?;
    let now = Utc::now();
    let mut rows = Vec::new();
    for job in &config.jobs {
        let state = store.job_state(&job.name)?;
        let (pending, given_up) = undelivered.get(&job.name).copied().unwrap_or_default();
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
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let dash = || "-".to_owned();
    println!(
        "{:<20} {:<9} {:<26} {:>8} {:<6} {:<26} {:<26} UNDELIVERED",
        "JOB", "SEVERITY", "SINCE", "FAILURES", "ALERT", "LAST RUN", "NEXT RUN"
    );
    for r in rows {
        let undelivered = match r.given_up {
            0 => r.undelivered.to_string(),
            n => format!("{} ({n} given up)", r.undelivered),
        };
        println!(
            "{:<20} {:<9} {:<26} {:>8} {:<6} {:<26} {:<26} {}",
            r.job,
            r.severity,
            r.since.unwrap_or_else(dash),
            r.consecutive_failures,
            if r.alert_open { "open" } else { "-" },
            r.last_run.unwrap_or_else(dash),
            r.next_run.unwrap_or_else(dash),
            undelivered
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn history(
    config: Option<&Path>,
    env: &dyn Env,
    args: HistoryArgs,
) -> anyhow::Result<ExitCode> {
    let config = super::load(config, env)?;
    let job = super::job(&config, &args.job)?;
    let store = Store::open(&config.agent.state_dir)?;
    let runs: Vec<Run> = store
        .history(&job.name, args.limit)?
        .into_iter()
        .map(|r| Run {
            started_at: rfc3339(r.started_at, &job),
            finished_at: rfc3339(r.finished_at, &job),
            severity: r.severity,
            attempts: r.attempts,
            elapsed_ms: r.elapsed.as_millis() as u64,
            summary: r.summary,
            skipped: r.skipped,
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    for r in runs {
        println!(
            "{}  {:<8}  {} attempt(s)  {:>6} ms  {}",
            r.started_at, r.severity, r.attempts, r.elapsed_ms, r.summary
        );
    }
    Ok(ExitCode::SUCCESS)
}
