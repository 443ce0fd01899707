//! `klaxon exec`: one command wrapped the way a scheduled job is run. A per-job lock in
//! `state_dir/locks/` stops overlapping runs; the command runs in its own process group
//! with the job's timeout and retries, its output passed through as it comes; the run
//! goes into history and the alert state machine like any job's; heartbeat pings
//! `/start` and `/<exit code>`.
//!
//! Exit codes: the command's final exit code; `124` when it timed out (as timeout(1)
//! does); `128 + N` when it was killed by signal N (or klaxon was, by SIGINT/SIGTERM);
//! `126`/`127` when it could not be started (not executable / not found), as shells do.
//!
//! A run cut short by SIGINT/SIGTERM is recorded as `interrupted` and alerts no one (see
//! [`crate::runner::record_interrupted`]); exec still exits `128 + N`.

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use klaxon_checks::group::{self, Ending};
use klaxon_checks::{Outcome, Severity};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::heartbeat::{self, Signal};
use crate::retry::{RetryPolicy, run_with_retry};
use crate::runner::{Finished, Subject, Times, Tries};
use crate::runtime::Runtime;
use crate::schedule::Trigger;
use crate::store::RunRecord;

/// Why a second `exec` of a job did not run, as history shows it.
pub const STILL_RUNNING: &str = "still running";

/// Everything one `exec` runs with, settled from the config and the flags.
#[derive(Debug, Clone)]
pub struct ExecPlan {
    pub subject: Subject,
    /// Program and arguments, run without a shell.
    pub argv: Vec<String>,
    pub timeout: Duration,
    /// Longer than this is a warning, sent while the command still runs.
    pub max_duration: Option<Duration>,
    pub retry: RetryPolicy,
    pub heartbeat: Option<SecretString>,
    /// The job's schedule, when the config has the job: for "next run" in messages.
    pub trigger: Option<Trigger>,
    /// The job is a passive `heartbeat` job: a successful exec also counts as its ping.
    pub passive: bool,
}

/// The per-job lock: held for the whole exec, released by the OS however it ends.
#[derive(Debug)]
pub enum Lock {
    Held(File),
    /// Another exec of the job holds it.
    Busy,
}

/// Takes `state_dir/locks/<job>.lock` without waiting.
pub fn lock(state_dir: &Path, job: &str) -> anyhow::Result<Lock> {
    let held = crate::lockfile::try_lock(&state_dir.join("locks"), &format!("{job}.lock"))?;
    Ok(held.map_or(Lock::Busy, Lock::Held))
}

/// Records that an exec of `job` was skipped because another one still runs.
pub fn record_skip(rt: &Runtime, job: &str) -> anyhow::Result<()> {
    let now = rt.clock.now();
    rt.store.record_skip(&RunRecord {
        job: job.to_owned(),
        started_at: now,
        finished_at: now,
        severity: "skipped".into(),
        attempts: 0,
        elapsed: Duration::ZERO,
        summary: format!("skipped: {STILL_RUNNING}"),
        output: None,
        skipped: Some(STILL_RUNNING.into()),
        metrics: Vec::new(),
        fire_at: None,
        silenced: None,
    })?;
    Ok(())
}

/// One try: its exit code (as `exec` exits with it), summary and output.
#[derive(Debug, Clone)]
struct Tried {
    code: i32,
    summary: String,
    output: String,
    /// Stopped by the interrupt before the command ended.
    interrupted: bool,
}

/// The signal that interrupted klaxon, if one did (for the exit code).
#[derive(Debug, Default)]
pub struct Interrupt {
    pub stop: CancellationToken,
    signal: AtomicI32,
}

impl Interrupt {
    /// Stops the run because klaxon got `signal`.
    pub fn fire(&self, signal: i32) {
        self.signal.store(signal, Ordering::Release);
        self.stop.cancel();
    }

    /// What exec exits with when interrupted: `128 + N` (N is SIGTERM's when no signal
    /// was recorded).
    pub fn exit_code(&self) -> i32 {
        match self.signal.load(Ordering::Acquire) {
            0 => 128 + 15,
            signal => 128 + signal,
        }
    }
}

/// Runs the plan: tries, heartbeat pings, the record. Returns the run and the exit code.
pub async fn run(
    rt: &Arc<Runtime>,
    plan: &ExecPlan,
    interrupt: &Interrupt,
) -> anyhow::Result<(Finished, i32)> {
    let name = &plan.subject.name;
    let pings = plan
        .heartbeat
        .as_ref()
        .map(|url| rt.pinger.start_run(name, url));
    let started_at = rt.clock.now();
    let clock = tokio::time::Instant::now();
    let tries = run_with_retry(
        &plan.retry,
        || async {
            let tried = try_once(plan, interrupt).await;
            if tried.code == 0 {
                Ok(tried)
            } else {
                tracing::debug!(job = %name, summary = %tried.summary, "try failed");
                Err(tried)
            }
        },
        &interrupt.stop,
    );
    let (result, attempts) = match plan.max_duration {
        None => tries.await,
        Some(max) => {
            tokio::pin!(tries);
            tokio::select! {
                done = &mut tries => done,
                () = tokio::time::sleep(max) => {
                    // Overdue: the warning goes out now, while the command runs on.
                    let (done, warned) = tokio::join!(tries, warn_overdue(rt, plan, max, started_at));
                    warned?;
                    done
                }
            }
        }
    };
    let tried = result.unwrap_or_else(|t| t);
    let elapsed = clock.elapsed();
    let tries = Tries {
        made: attempts,
        allowed: plan.retry.attempts(),
    };
    let times = Times {
        started_at,
        elapsed,
        fire_at: None,
    };
    if crate::runner::cut_short(&interrupt.stop, tried.code == 0, tried.interrupted, tries) {
        // No end ping: `/start` without an end is what a cut-short run is.
        drop(pings);
        let last = (!tried.interrupted).then_some(tried.summary.as_str());
        let finished = crate::runner::record_interrupted(rt, name, last, tries, times).await?;
        return Ok((finished, interrupt.exit_code()));
    }
    if let Some(pings) = pings {
        let body =
            (tried.code != 0).then(|| heartbeat::failure_body(&tried.summary, Some(&tried.output)));
        pings.finish(Signal::Exit(tried.code), body);
    }
    let severity = if tried.code == 0 {
        Severity::Ok
    } else {
        Severity::Critical
    };
    let outcome = Outcome::new(severity, tried.summary.clone(), elapsed).with_output(tried.output);
    let outcome = crate::runner::over_time(outcome, elapsed, plan.max_duration);
    let finished_at = times.finished_at();
    if plan.passive && severity.is_ok() {
        rt.store.record_ping(name, finished_at)?;
    }
    let next_run = plan
        .trigger
        .as_ref()
        .and_then(|t| t.next_after(rt.clock.now()));
    let finished =
        crate::runner::record(rt, &plan.subject, outcome, tries, times, next_run).await?;
    Ok((finished, tried.code))
}

/// Records that the command is still running after `max` (a warning run of its own,
/// which moves the alert state) and delivers the messages it makes due at once.
async fn warn_overdue(
    rt: &Arc<Runtime>,
    plan: &ExecPlan,
    max: Duration,
    started_at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let next_run = plan
        .trigger
        .as_ref()
        .and_then(|t| t.next_after(rt.clock.now()));
    let allowed = plan.retry.attempts();
    let finished =
        crate::runner::record_still_running(rt, &plan.subject, started_at, max, allowed, next_run)
            .await?;
    let left =
        crate::delivery::deliver_within(rt, finished.messages, crate::heartbeat::EXIT_WAIT).await;
    if left > 0 {
        tracing::warn!(job = %plan.subject.name, "{left} message(s) about the overdue run not delivered yet; they stay in the outbox");
    }
    Ok(())
}

async fn try_once(plan: &ExecPlan, interrupt: &Interrupt) -> Tried {
    let program = plan.argv[0].as_str();
    let mut command = tokio::process::Command::new(program);
    command.args(&plan.argv[1..]).stdin(Stdio::null());
    let ran = match group::run(command, plan.timeout, true, interrupt.stop.cancelled()).await {
        Ok(ran) => ran,
        Err(e) => {
            let code = match e.kind() {
                std::io::ErrorKind::NotFound => 127,
                _ => 126,
            };
            let summary = format!("cannot run `{program}`: {e}");
            eprintln!("klaxon exec: {summary}");
            return Tried {
                code,
                summary,
                output: String::new(),
                interrupted: false,
            };
        }
    };
    let code = match &ran.ending {
        Ending::Exited(status) => match (status.code(), status.signal()) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 1,
        },
        Ending::TimedOut => 124,
        Ending::Interrupted => interrupt.exit_code(),
        Ending::Lost(_) => 1,
    };
    Tried {
        code,
        summary: ran.ending.describe(program, plan.timeout),
        output: ran.output(),
        interrupted: matches!(ran.ending, Ending::Interrupted),
    }
}
