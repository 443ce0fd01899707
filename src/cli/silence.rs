//! `klaxon silence add|list|expire` and `klaxon ack JOB`: written to the state store
//! directly, so they work whether or not the agent runs; a running agent reads them at
//! each run's commit.

use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use super::UsageError;
use crate::config::{Config, Env};
use crate::store::{Silence, Store};

#[derive(Debug, Args)]
pub struct SilenceArgs {
    #[command(subcommand)]
    action: SilenceAction,
}

#[derive(Debug, Subcommand)]
enum SilenceAction {
    /// Silence jobs for a while: they still run and are recorded; no alerts go out
    Add {
        /// Job names or globs (`backup-*`)
        #[arg(required = true, value_name = "PATTERN")]
        jobs: Vec<String>,
        /// How long, like `2h` or `30m`
        #[arg(long = "for", value_name = "DURATION", conflicts_with = "until")]
        length: Option<String>,
        /// Until when: an RFC 3339 time, or `HH:MM` (the next such time, agent's zone)
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Why (shown in `status`, history and messages)
        #[arg(long)]
        comment: Option<String>,
    },
    /// The silences in force (and with `--all`, the ended ones kept in history)
    List {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
        /// Ended silences too
        #[arg(long)]
        all: bool,
    },
    /// End a silence now
    Expire {
        /// The silence's ID (from `klaxon silence list`)
        id: i64,
    },
}

#[derive(Debug, Args)]
pub struct AckArgs {
    /// The job whose open alert is acknowledged
    job: String,
    /// Why, or what is being done (shown in the recovery)
    #[arg(long)]
    comment: Option<String>,
}

/// Who is running this, for `created_by` and acknowledgements.
pub fn user(env: &dyn Env) -> String {
    env.var("USER")
        .or_else(|| env.var("LOGNAME"))
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

pub fn silence(
    config: Option<&Path>,
    env: &dyn Env,
    args: SilenceArgs,
) -> anyhow::Result<ExitCode> {
    let config = super::load(config, env)?;
    let store = Store::open(&config.agent.state_dir)?;
    let now = Utc::now();
    match args.action {
        SilenceAction::Add {
            jobs,
            length,
            until,
            comment,
        } => {
            let new = crate::quiet::silence_request(
                jobs,
                length.as_deref(),
                until.as_deref(),
                comment,
                user(env),
                now,
                config.agent.timezone,
            )
            .map_err(UsageError)?;
            let matched = matched_jobs(&config, &new.jobs);
            let silence = store.add_silence(new, now)?;
            println!("{}", silence.id);
            eprintln!(
                "silence {} until {}: {}",
                silence.id,
                local(&config, silence.ends_at),
                if matched.is_empty() {
                    "no job of this config matches it yet".to_owned()
                } else {
                    matched.join(", ")
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        SilenceAction::List { json, all } => {
            let silences = store.silences(now, all)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&silences)?);
                return Ok(ExitCode::SUCCESS);
            }
            if silences.is_empty() {
                println!("no silences in force");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:>4} {:<24} {:<26} {:<26} {:<10} COMMENT",
                "ID", "JOBS", "FROM", "UNTIL", "BY"
            );
            for s in silences {
                print_row(&config, &s, now);
            }
            Ok(ExitCode::SUCCESS)
        }
        SilenceAction::Expire { id } => match store.expire_silence(id, now)? {
            Some(s) => {
                println!("silence {} ended at {}", s.id, local(&config, s.ends_at));
                Ok(ExitCode::SUCCESS)
            }
            None => Err(UsageError(format!(
                "no silence `{id}` (see `klaxon silence list --all`)"
            ))
            .into()),
        },
    }
}

pub fn ack(config: Option<&Path>, env: &dyn Env, args: AckArgs) -> anyhow::Result<ExitCode> {
    let config = super::load(config, env)?;
    let job = super::job(&config, &args.job)?;
    let store = Store::open(&config.agent.state_dir)?;
    let now = Utc::now();
    let ack = crate::alert::Ack {
        at: now,
        by: user(env),
        comment: args.comment.filter(|c| !c.trim().is_empty()),
    };
    match store.ack(&job.name, ack)? {
        Some(open) => {
            println!(
                "alert {} of `{}` acknowledged: no more reminders; its recovery will say so",
                open.id, job.name
            );
            Ok(ExitCode::SUCCESS)
        }
        None => Err(UsageError(format!(
            "job `{}` has no open alert to acknowledge",
            job.name
        ))
        .into()),
    }
}

/// The jobs of `config` the patterns match.
fn matched_jobs(config: &Config, patterns: &[String]) -> Vec<String> {
    config
        .jobs
        .iter()
        .filter(|j| {
            patterns
                .iter()
                .any(|p| crate::store::job_matches(p, &j.name))
        })
        .map(|j| j.name.clone())
        .collect()
}

fn local(config: &Config, t: DateTime<Utc>) -> String {
    t.with_timezone(&config.agent.timezone).to_rfc3339()
}

fn print_row(config: &Config, s: &Silence, now: DateTime<Utc>) {
    let ended = if s.ends_at <= now { " (ended)" } else { "" };
    println!(
        "{:>4} {:<24} {:<26} {:<26} {:<10} {}{ended}",
        s.id,
        s.jobs.join(","),
        local(config, s.starts_at),
        local(config, s.ends_at),
        s.created_by,
        s.comment.as_deref().unwrap_or("-"),
    );
}
