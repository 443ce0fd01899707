//! `klaxon exec --job NAME [opts] -- CMD [ARGS…]`: wraps one command for cron or launchd
//! (see [`crate::exec`]). Settings come from `[jobs.NAME]` when the config has that job,
//! else from `[defaults]`; flags override them.
//!
//! The command matters more than its wrapper: with no config file it runs with the
//! built-in settings, and with a config that does not validate it still runs (the errors
//! go to stderr, which cron mails), without alerts, and exec exits with its code.
//! Mistakes in the flags themselves (`--notify` naming no notifier, a bad `--heartbeat`
//! URL) exit 2 before anything runs.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use klaxon_notifiers::CheckInfo;
use secrecy::SecretString;

use super::UsageError;
use crate::config::{self, Config, Env, LogSettings};
use crate::exec::{ExecPlan, Interrupt, Lock};
use crate::heartbeat;
use crate::runner::Subject;
use crate::runtime::{Mode, Runtime, SystemClock};

/// How long `exec` waits for its messages before leaving them to the agent.
const DELIVERY_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The job this command is: its settings, lock, history and alerts
    #[arg(long, value_name = "NAME")]
    job: String,
    /// Per try (e.g. 30s, 1h); default: the job's `timeout`
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Longer is a warning, sent while the command still runs; default: the job's
    /// `max_duration`
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    max_duration: Option<Duration>,
    /// Tries after the first one; default: the job's `retry.attempts` minus one
    #[arg(long, value_name = "N")]
    retries: Option<u32>,
    /// A notifier to alert (repeatable); replaces the job's `notify`
    #[arg(long = "notify", value_name = "NOTIFIER")]
    notify: Vec<String>,
    /// A Healthchecks-style ping URL; replaces the job's `heartbeat`
    #[arg(long, value_name = "URL")]
    heartbeat: Option<String>,
    /// Run even if another exec of this job is still running
    #[arg(long)]
    no_lock: bool,
    /// The command and its arguments (after `--`), run without a shell
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be greater than zero".into()),
        Err(e) => Err(format!("not a duration like `30s` or `5m`: {e}")),
    }
}

/// Where the settings came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    File,
    /// No config file anywhere.
    Missing,
    /// A config file that does not validate (already reported).
    Broken,
}

pub fn run(config: Option<&Path>, env: &dyn Env, args: ExecArgs) -> anyhow::Result<ExitCode> {
    let (config, source) = match config::locate(config, env) {
        Err(_) => (Config::builtin(), Source::Missing),
        Ok(path) => match config::load(&path, env) {
            Ok(config) => (config, Source::File),
            Err(e) => {
                eprintln!("{e}");
                (Config::builtin(), Source::Broken)
            }
        },
    };
    init_logging(&config.log, env);
    let plan = plan(&config, source, &args)?;
    match source {
        Source::File => {}
        Source::Missing => eprintln!(
            "klaxon exec: no config file; running `{}` with built-in settings (no alerts)",
            plan.subject.name
        ),
        Source::Broken => eprintln!(
            "klaxon exec: the config has errors; running `{}` anyway with built-in settings (no alerts)",
            plan.subject.name
        ),
    }
    // Only the alert path needs the store and notifiers: the config's checks are not built.
    let mut config = config;
    config.jobs.clear();
    let state_dir = config.agent.state_dir.clone();
    super::runtime()?.block_on(async move {
        let rt = Arc::new(Runtime::build(config, Mode::Live, Arc::new(SystemClock))?);
        let _lock = if args.no_lock {
            None
        } else {
            match crate::exec::lock(&state_dir, &plan.subject.name)? {
                Lock::Held(file) => Some(file),
                Lock::Busy => {
                    eprintln!(
                        "klaxon exec: `{}`: skipped: {}",
                        plan.subject.name,
                        crate::exec::STILL_RUNNING
                    );
                    crate::exec::record_skip(&rt, &plan.subject.name)?;
                    return Ok(ExitCode::SUCCESS);
                }
            }
        };
        let interrupt = Arc::new(Interrupt::default());
        // SIGINT and SIGTERM stop the command's group and end the run (exit 128 + N).
        super::watch_interrupts(interrupt.clone())?;
        let (finished, code) = crate::exec::run(&rt, &plan, &interrupt).await?;
        let (left, _) = tokio::join!(
            crate::delivery::deliver_within(&rt, finished.messages, DELIVERY_WAIT),
            rt.pinger.wait(heartbeat::EXIT_WAIT)
        );
        if left > 0 {
            eprintln!(
                "klaxon exec: {left} message(s) not delivered yet; they stay in the outbox for the agent to retry"
            );
        }
        crate::store::prune_for(&rt.store, rt.config.history, vec![plan.subject.name.clone()]);
        Ok(ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)))
    })
}

/// The job's settings (or `[defaults]`), with the flags applied.
fn plan(config: &Config, source: Source, args: &ExecArgs) -> anyhow::Result<ExecPlan> {
    let name = &args.job;
    // As in the config, and no leading dot: the name is also a lock file's.
    if !crate::config::valid_name(name) || name.starts_with('.') {
        return Err(UsageError(format!(
            "`--job {name}`: a job name uses letters, digits, `-`, `_` and `.`"
        ))
        .into());
    }
    if args.command.first().is_none_or(String::is_empty) {
        return Err(UsageError("no command given after `--`".into()).into());
    }
    let job = config.job(name);
    let d = &config.defaults;
    let mut subject = Subject {
        name: name.clone(),
        timezone: job.map_or(config.agent.timezone, |j| j.timezone),
        notify: job.map_or_else(|| d.notify.clone(), |j| j.notify.clone()),
        depends_on: job.map(|j| j.depends_on.clone()).unwrap_or_default(),
        alert: job.map_or_else(|| d.alert.clone(), |j| j.alert.clone()),
        check: CheckInfo {
            kind: "exec".into(),
            target: klaxon_checks::script::command_line(&args.command),
        },
    };
    let mut retry = job.map_or_else(|| d.retry.clone(), |j| j.retry.clone());
    if let Some(n) = args.retries {
        retry = retry
            .with_attempts(n.saturating_add(1))
            .map_err(|e| UsageError(format!("`--retries`: {e}")))?;
    }
    if !args.notify.is_empty() {
        if source == Source::Broken {
            eprintln!("klaxon exec: `--notify` ignored: the config has errors");
        } else {
            for n in &args.notify {
                if config.notifier(n).is_none() {
                    let known: Vec<&str> =
                        config.notifiers.iter().map(|n| n.name.as_str()).collect();
                    let known = if known.is_empty() {
                        "none are configured".to_owned()
                    } else {
                        format!("notifiers: {}", known.join(", "))
                    };
                    return Err(
                        UsageError(format!("`--notify`: no notifier `{n}`; {known}")).into(),
                    );
                }
            }
            subject.notify = args.notify.clone();
        }
    }
    let heartbeat = match &args.heartbeat {
        Some(url) => {
            let ok = url::Url::parse(url)
                .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .unwrap_or(false);
            if !ok {
                // The URL is a secret: the message does not repeat it.
                return Err(
                    UsageError("`--heartbeat` must be an http:// or https:// URL".into()).into(),
                );
            }
            Some(SecretString::from(url.clone()))
        }
        None => job.and_then(|j| j.heartbeat.clone()),
    };
    Ok(ExecPlan {
        subject,
        argv: args.command.clone(),
        timeout: args
            .timeout
            .unwrap_or_else(|| job.map_or(d.timeout, |j| j.timeout)),
        max_duration: args
            .max_duration
            .or_else(|| job.and_then(|j| j.max_duration)),
        retry,
        heartbeat,
        trigger: job.map(|j| j.trigger.clone()),
        passive: job.is_some_and(|j| !j.check.is_active()),
    })
}

/// Logs at `warn` at most (unless `RUST_LOG` says otherwise): a command that succeeds
/// silently leaves exec silent, so cron mails nothing.
fn init_logging(settings: &LogSettings, env: &dyn Env) {
    let quiet = matches!(settings.level.as_str(), "info" | "debug" | "trace");
    if quiet && env.var("RUST_LOG").is_none() {
        let mut settings = settings.clone();
        settings.level = "warn".into();
        super::init_logging(&settings);
    } else {
        super::init_logging(settings);
    }
}
