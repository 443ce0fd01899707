//! `klaxon notify test NOTIFIER`: sends a test message through one notifier now, and
//! says whether it was delivered (exit 0) or why not (exit 1). Nothing is written to the
//! outbox: a test that fails is not retried.

use std::path::Path;
use std::process::ExitCode;

use chrono::Utc;
use clap::{Args, Subcommand};
use klaxon_notifiers::{Alert, CheckInfo, Event, Notifier, Severity};

use super::UsageError;
use crate::config::Env;

#[derive(Debug, Args)]
pub struct NotifyArgs {
    #[command(subcommand)]
    command: NotifyCommand,
}

#[derive(Debug, Subcommand)]
enum NotifyCommand {
    /// Send a test message through one notifier
    Test {
        /// The notifier, as named in `[notifiers.NAME]`
        notifier: String,
    },
}

pub fn run(config: Option<&Path>, env: &dyn Env, args: NotifyArgs) -> anyhow::Result<ExitCode> {
    let NotifyCommand::Test { notifier: name } = args.command;
    let config = super::load(config, env)?;
    super::init_logging(&config.log);
    let Some(entry) = config.notifier(&name) else {
        let names: Vec<&str> = config.notifiers.iter().map(|n| n.name.as_str()).collect();
        return Err(UsageError(format!(
            "no notifier `{name}` in `{}`; notifiers: {}",
            config.file.display(),
            names.join(", ")
        ))
        .into());
    };
    let client = klaxon_notifiers::delivery_client()?;
    // A test message carries no buttons.
    let notifier = Notifier::build(&entry.spec, &client, None)
        .map_err(|e| anyhow::Error::new(e).context(format!("notifier `{name}`")))?;
    let alert = test_alert(&config.agent.name, &name, config.agent.timezone);
    let posted = super::runtime()?.block_on(notifier.send_to_replicas(&alert));
    let code = match &posted.result {
        Ok(()) => {
            println!("{name} ({}): delivered", entry.spec.kind());
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{name} ({}): not delivered: {e}", entry.spec.kind());
            ExitCode::from(1)
        }
    };
    // Delivered when one Alertmanager replica took it; say which did not.
    if posted.result.is_ok() {
        for failed in &posted.failed {
            println!(
                "  replica `{}` did not take it: {}",
                failed.replica, failed.error
            );
        }
    }
    Ok(code)
}

fn test_alert(agent: &str, notifier: &str, tz: chrono_tz::Tz) -> Alert {
    let now = Utc::now().with_timezone(&tz).fixed_offset();
    Alert {
        version: 1,
        event: Event::Test,
        job: "klaxon-test".to_owned(),
        agent: agent.to_owned(),
        severity: Severity::Ok,
        check: CheckInfo {
            kind: "test".to_owned(),
            target: format!("notifier {notifier}"),
        },
        summary: format!(
            "a test message from klaxon: notifier `{notifier}` works if you can read this"
        ),
        output: None,
        attempts: 1,
        max_attempts: 1,
        elapsed_ms: 0,
        started_at: now,
        failing_since: None,
        last_success: None,
        next_run: None,
        downtime_ms: None,
        id: format!("test-{}", now.timestamp_millis()),
        acknowledged: None,
    }
}
