//! The command line: one enum of subcommands, one module each. Every subcommand returns
//! its exit code or an error; [`main`] picks the code for errors: `2` for usage and
//! configuration errors, `1` for everything else.

mod exec;
mod jobs;
mod notify;
mod once;
mod open;
mod outbox;
mod ping;
mod run;
mod service;
mod silence;
mod status;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, ConfigError, LogSettings};

#[derive(Debug, Parser)]
#[command(
    name = "klaxon",
    version,
    about = "A monitoring agent: scheduled checks, retries, and alerts that arrive"
)]
pub struct Cli {
    /// The config file (else $KLAXON_CONFIG, else ./klaxon.toml, else ~/.config/klaxon/klaxon.toml)
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent in the foreground until SIGINT or SIGTERM
    Run(run::RunArgs),
    /// Check the config and print a summary, or every error with its location
    Validate,
    /// Show each job's schedule and next fire times
    Jobs(jobs::JobsArgs),
    /// Run one job now, with its retries and alerts
    Once(once::OnceArgs),
    /// Record a heartbeat for a passive (`heartbeat`) job
    Ping(ping::PingArgs),
    /// Wrap one command (for cron or launchd): lock, timeout, retries, heartbeat, alerts
    Exec(exec::ExecArgs),
    /// Open the agent's page (`agent.listen`) in the browser, and print its address
    Open,
    /// Send a test message through a notifier
    Notify(notify::NotifyArgs),
    /// Each job's state: severity, since when, failures, alert, last and next run
    Status(status::StatusArgs),
    /// Past runs of one job, newest first
    History(status::HistoryArgs),
    /// Undelivered messages (pending and given up); send them again or drop them
    Outbox(outbox::OutboxArgs),
    /// Silence jobs' alerts for a while (`add`), list silences, end one (`expire`)
    Silence(silence::SilenceArgs),
    /// Acknowledge a job's open alert: no more reminders; the recovery still goes out
    Ack(silence::AckArgs),
    /// Run the agent at login as a launchd LaunchAgent (macOS)
    Launchd(service::LaunchdArgs),
    /// Run the agent at login as a systemd user service (Linux)
    Systemd(service::SystemdArgs),
}

/// A mistake in how klaxon was called (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parses the arguments, runs the subcommand, and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = |name: &str| std::env::var(name).ok();
    let result = match cli.command {
        Command::Validate => validate::run(cli.config.as_deref(), &env),
        Command::Jobs(args) => jobs::run(cli.config.as_deref(), &env, args),
        Command::Run(args) => run::run(cli.config.as_deref(), &env, args),
        Command::Once(args) => once::run(cli.config.as_deref(), &env, args),
        Command::Ping(args) => ping::run(cli.config.as_deref(), &env, args),
        Command::Exec(args) => exec::run(cli.config.as_deref(), &env, args),
        Command::Open => open::run(cli.config.as_deref(), &env),
        Command::Notify(args) => notify::run(cli.config.as_deref(), &env, args),
        Command::Status(args) => status::status(cli.config.as_deref(), &env, args),
        Command::History(args) => status::history(cli.config.as_deref(), &env, args),
        Command::Outbox(args) => outbox::run(cli.config.as_deref(), &env, args),
        Command::Silence(args) => silence::silence(cli.config.as_deref(), &env, args),
        Command::Ack(args) => silence::ack(cli.config.as_deref(), &env, args),
        Command::Launchd(args) => service::launchd(cli.config.as_deref(), &env, args),
        Command::Systemd(args) => service::systemd(cli.config.as_deref(), &env, args),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(config) = e.downcast_ref::<ConfigError>() {
                eprintln!("{config}");
                ExitCode::from(2)
            } else {
                eprintln!("error: {e:#}");
                if crate::logging::has_file() {
                    tracing::error!(target: crate::logging::FILE_ONLY, "{e:#}");
                }
                // A check or notifier the config asks for but that cannot be set up (a
                // type this version cannot run, an unreadable `ca_file`) is a
                // configuration error.
                let config_problem = e.chain().any(|c| {
                    c.is::<UsageError>()
                        || c.is::<klaxon_checks::BuildError>()
                        || c.is::<klaxon_notifiers::BuildError>()
                });
                if config_problem {
                    ExitCode::from(2)
                } else {
                    ExitCode::from(1)
                }
            }
        }
    };
    crate::logging::flush();
    code
}

/// Finds and loads the config; both failures are configuration errors (exit 2).
fn load(flag: Option<&std::path::Path>, env: &dyn config::Env) -> anyhow::Result<Config> {
    let path = config::locate(flag, env).map_err(UsageError)?;
    let config = config::load(&path, env)?;
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(config)
}

/// The job of that name, or a usage error listing the jobs there are.
fn job(config: &Config, name: &str) -> anyhow::Result<crate::config::Job> {
    match config.job(name) {
        Some(job) => Ok(job.clone()),
        None => {
            let names: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
            Err(UsageError(format!(
                "no job `{name}` in `{}`; jobs: {}",
                config.file.display(),
                names.join(", ")
            ))
            .into())
        }
    }
}

/// Sets up logging for a command that acts for the agent (see [`crate::logging`]).
fn init_logging(settings: &LogSettings) {
    crate::logging::init(settings);
}

/// A multi-threaded runtime sized for a small agent. The state store and the checks'
/// blocking work (`statfs`, process sampling, name lookups) have threads of their own
/// ([`crate::store::THREADS`], [`klaxon_checks::blocking::CHECKS`]), so a stuck check
/// cannot delay a commit; tokio's blocking pool is left the little else that blocks
/// (file reads of logs and configs), capped at a few threads.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .enable_all()
        .build()?)
}

/// For `once` and `exec`: the first SIGINT or SIGTERM fires `interrupt` (the run stops:
/// a script's group gets SIGTERM, then SIGKILL 2 s later); a second one SIGKILLs every
/// running group and exits at once with `128 + N`.
fn watch_interrupts(interrupt: std::sync::Arc<crate::exec::Interrupt>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        let mut seen = false;
        loop {
            let number = tokio::select! {
                _ = int.recv() => 2,
                _ = term.recv() => 15,
            };
            if seen {
                exit_now(128 + number);
            }
            seen = true;
            interrupt.fire(number);
        }
    });
    Ok(())
}

/// Exits at once with `code` (a second signal), SIGKILLing every script or command
/// group still running first, so that none outlives klaxon.
fn exit_now(code: i32) -> ! {
    klaxon_checks::group::kill_all();
    std::process::exit(code)
}
