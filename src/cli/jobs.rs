//! `klaxon jobs`: each job's schedule, zone and next fire times.

use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, FixedOffset, Utc};
use clap::Args;
use serde::Serialize;

use crate::config::Env;

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// How many fire times to show per job
    #[arg(long, default_value_t = 3, value_name = "N")]
    next: usize,
    /// Show fires after this time (RFC 3339) instead of after now
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    from: Option<DateTime<FixedOffset>>,
    /// Machine-readable output
    #[arg(long)]
    json: bool,
}

fn parse_time(s: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(s)
        .map_err(|e| format!("expected an RFC 3339 time like 2026-03-29T00:00:00+01:00 ({e})"))
}

#[derive(Serialize)]
struct JobFires {
    job: String,
    schedule: String,
    timezone: String,
    next: Vec<String>,
}

pub fn run(config: Option<&Path>, env: &dyn Env, args: JobsArgs) -> anyhow::Result<ExitCode> {
    let config = super::load(config, env)?;
    let from = args.from.map_or_else(Utc::now, |t| t.with_timezone(&Utc));
    let rows: Vec<JobFires> = config
        .jobs
        .iter()
        .map(|job| {
            let mut next = Vec::with_capacity(args.next);
            let mut t = from;
            while next.len() < args.next {
                let Some(fire) = job.trigger.next_after(t) else {
                    break;
                };
                next.push(fire.with_timezone(&job.timezone).to_rfc3339());
                t = fire;
            }
            JobFires {
                job: job.name.clone(),
                schedule: job.trigger.describe(),
                timezone: job.timezone.name().to_owned(),
                next,
            }
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    for row in rows {
        println!("{}  {}  ({})", row.job, row.schedule, row.timezone);
        if row.next.is_empty() {
            println!("  no further fires");
        }
        for fire in row.next {
            println!("  {fire}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
