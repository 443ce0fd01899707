//! `klaxon status [--json]` and `klaxon history JOB [--limit N] [--json]`: what the state
//! store knows, read directly (so they work while the agent runs, and without it).

use std::path::Path;
use std::process::ExitCode;

use chrono::Utc;
use clap::Args;
use serde::Serialize;

use crate::config::Env;
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
struct Run {
    started_at: String,
    finished_at: String,
    severity: String,
    attempts: u32,
    elapsed_ms: u64,
    summary: String,
    skipped: Option<String>,
    /// What silenced the run's alerts (a silence or a maintenance window).
    silenced: Option<String>,
}

pub fn status(config: Option<&Path>, env: &dyn Env, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let config = super::load(config, env)?;
    let store = Store::open(&config.agent.state_dir)?;
    let rows = crate::status::rows(&config, &store, Utc::now())?;
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
        let alert = match (r.alert_open, &r.acknowledged) {
            (true, Some(_)) => "acked",
            (true, None) => "open",
            _ => "-",
        };
        println!(
            "{:<20} {:<9} {:<26} {:>8} {:<6} {:<26} {:<26} {}",
            r.job,
            r.severity,
            r.since.unwrap_or_else(dash),
            r.consecutive_failures,
            alert,
            r.last_run.unwrap_or_else(dash),
            r.next_run.unwrap_or_else(dash),
            undelivered
        );
        if let (Some(until), Some(by)) = (&r.silenced_until, &r.silenced_by) {
            println!("{:<20} silenced until {until} by {by}", "");
        }
        if let Some(ack) = &r.acknowledged {
            let comment = ack
                .comment
                .as_ref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default();
            println!(
                "{:<20} acknowledged by {} at {}{comment}",
                "", ack.by, ack.at
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn history(
    config: Option<&Path>,
    env: &dyn Env,
    args: HistoryArgs,
) -> anyhow::Result<ExitCode> {
    let config = super::load(config, env)?;
    let store = Store::open(&config.agent.state_dir)?;
    let records = store.history(&args.job, args.limit)?;
    // `klaxon exec --job NAME` records runs of jobs the config need not have: those
    // are shown in the agent's time zone.
    let timezone = match config.job(&args.job) {
        Some(job) => job.timezone,
        None if !records.is_empty() => config.agent.timezone,
        None => super::job(&config, &args.job)?.timezone,
    };
    let local = |t: chrono::DateTime<chrono::Utc>| t.with_timezone(&timezone).to_rfc3339();
    let runs: Vec<Run> = records
        .into_iter()
        .map(|r| Run {
            started_at: local(r.started_at),
            finished_at: local(r.finished_at),
            severity: r.severity,
            attempts: r.attempts,
            elapsed_ms: r.elapsed.as_millis() as u64,
            summary: r.summary,
            skipped: r.skipped,
            silenced: r.silenced,
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    for r in runs {
        let silenced = r
            .silenced
            .map(|by| format!("  [silenced: {by}]"))
            .unwrap_or_default();
        println!(
            "{}  {:<8}  {} attempt(s)  {:>6} ms  {}{silenced}",
            r.started_at, r.severity, r.attempts, r.elapsed_ms, r.summary
        );
    }
    Ok(ExitCode::SUCCESS)
}
