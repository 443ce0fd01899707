//! `klaxon outbox [--json]`, `klaxon outbox retry ID|--all` and `klaxon outbox drop
//! ID|--all`: the undelivered messages (pending and given up), read and changed in the
//! state store directly. Each retry and drop is written to the job's history.

use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde::Serialize;

use super::UsageError;
use crate::config::Env;
use crate::store::{Held, HeldMessage, Store};

#[derive(Debug, Args)]
pub struct OutboxArgs {
    #[command(subcommand)]
    action: Option<Action>,
    /// Machine-readable output (of the list)
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Make undelivered messages due now again, their tries reset
    Retry(Which),
    /// Remove undelivered messages from the outbox
    Drop(Which),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct Which {
    /// The message's ID (from `klaxon outbox`)
    id: Option<i64>,
    /// Every undelivered message
    #[arg(long)]
    all: bool,
}

impl Which {
    fn held(&self) -> Held {
        match self.id {
            Some(id) if !self.all => Held::One(id),
            _ => Held::All,
        }
    }
}

#[derive(Serialize)]
struct Message {
    id: i64,
    job: String,
    notifier: String,
    event: String,
    /// `pending` or `given_up`.
    state: &'static str,
    created_at: String,
    age_seconds: i64,
    tries: u32,
    /// When the next try is due (pending messages).
    next_attempt_at: Option<String>,
    gave_up_at: Option<String>,
    last_error: Option<String>,
}

impl Message {
    fn of(m: HeldMessage, now: DateTime<Utc>) -> Self {
        let given_up = m.gave_up_at.is_some();
        Self {
            id: m.id,
            job: m.job,
            notifier: m.notifier,
            event: m.event,
            state: if given_up { "given_up" } else { "pending" },
            created_at: m.created_at.to_rfc3339(),
            age_seconds: (now - m.created_at).num_seconds().max(0),
            tries: m.tries,
            next_attempt_at: (!given_up).then(|| m.next_attempt_at.to_rfc3339()),
            gave_up_at: m.gave_up_at.map(|t| t.to_rfc3339()),
            last_error: m.last_error,
        }
    }
}

pub fn run(config: Option<&Path>, env: &dyn Env, args: OutboxArgs) -> anyhow::Result<ExitCode> {
    let config = super::load(config, env)?;
    let store = Store::open(&config.agent.state_dir)?;
    let now = Utc::now();
    match args.action {
        None => list(&store, now, args.json),
        Some(Action::Retry(which)) => {
            let done = store.retry_held(which.held(), now)?;
            report(&which, &done, "will be sent again")?;
            if !done.is_empty() {
                println!(
                    "a running agent sends them at its next read of the outbox; `klaxon run` sends them when it starts"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Action::Drop(which)) => {
            let done = store.drop_held(which.held(), now)?;
            report(&which, &done, "dropped")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn list(store: &Store, now: DateTime<Utc>, json: bool) -> anyhow::Result<ExitCode> {
    let messages: Vec<Message> = store
        .held()?
        .into_iter()
        .map(|m| Message::of(m, now))
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&messages)?);
        return Ok(ExitCode::SUCCESS);
    }
    if messages.is_empty() {
        println!("the outbox is empty: every message was delivered");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>6} {:<20} {:<16} {:<9} {:<9} {:>10} {:>5} LAST ERROR",
        "ID", "JOB", "NOTIFIER", "EVENT", "STATE", "AGE", "TRIES"
    );
    for m in messages {
        let age = humantime::format_duration(std::time::Duration::from_secs(
            m.age_seconds.unsigned_abs(),
        ));
        println!(
            "{:>6} {:<20} {:<16} {:<9} {:<9} {:>10} {:>5} {}",
            m.id,
            m.job,
            m.notifier,
            m.event,
            m.state.replace('_', " "),
            age.to_string(),
            m.tries,
            m.last_error.as_deref().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per message handled; an ID that is not an undelivered message is a usage
/// error.
fn report(which: &Which, done: &[HeldMessage], what: &str) -> anyhow::Result<()> {
    if let (Held::One(id), []) = (which.held(), done) {
        return Err(UsageError(format!(
            "no undelivered message `{id}` in the outbox (see `klaxon outbox`)"
        ))
        .into());
    }
    if done.is_empty() {
        println!("the outbox is empty: nothing {what}");
    }
    for m in done {
        println!(
            "message {} of job `{}` to `{}` ({}) {what}",
            m.id, m.job, m.notifier, m.event
        );
    }
    Ok(())
}
