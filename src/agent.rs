//! The long-running agent: one lock per state directory, the scheduler, and the outbox
//! worker, all under one shutdown token. Shutdown is bounded: scheduling stops at once,
//! running checks get [`GRACE`] to finish (no further retries start), then the agent
//! returns.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::dispatch::{AgentDispatch, Running};
use crate::runtime::{Mode, Runtime, SystemClock};
use crate::scheduler::Remembered;

/// How long running checks may take to finish after a shutdown signal.
pub const GRACE: Duration = Duration::from_secs(10);

/// How long a stopping agent tries to deliver what its last runs enqueued.
pub const FLUSH: Duration = Duration::from_secs(5);

/// Takes the agent lock in `state_dir`: one agent per state directory. The OS releases
/// it when the process ends, however it ends.
pub fn lock(state_dir: &Path) -> anyhow::Result<File> {
    std::fs::create_dir_all(state_dir).with_context(|| {
        format!(
            "cannot create the state directory `{}`",
            state_dir.display()
        )
    })?;
    let path = state_dir.join("agent.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open `{}`", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another klaxon agent is running with the state directory `{}`",
            state_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock `{}`", path.display()))
        }
    }
}

/// Runs the agent until `shutdown` is cancelled.
pub async fn run(config: Config, mode: Mode, shutdown: CancellationToken) -> anyhow::Result<()> {
    let _lock = match mode {
        Mode::Live => Some(lock(&config.agent.state_dir)?),
        Mode::DryRun => None,
    };
    let rt = Arc::new(Runtime::build(config, mode, Arc::new(SystemClock))?);
    tracing::info!(
        agent = %rt.config.agent.name,
        config = %rt.config.file.display(),
        state = %rt.store.path().display(),
        jobs = rt.config.jobs.len(),
        notifiers = rt.config.notifiers.len(),
        dry_run = mode == Mode::DryRun,
        "klaxon started"
    );
    let tracker = TaskTracker::new();
    // The outbox outlives the scheduler: runs that finish during shutdown still get
    // their messages out.
    let outbox_stop = CancellationToken::new();
    let worker = tokio::spawn(crate::outbox::worker(rt.clone(), outbox_stop.clone()));
    let remembered = rt
        .store
        .last_fires()?
        .into_iter()
        .map(|(job, at)| {
            (
                job,
                Remembered {
                    last_fire: Some(at),
                },
            )
        })
        .collect();
    let dispatch = Arc::new(AgentDispatch {
        rt: rt.clone(),
        tracker: tracker.clone(),
        shutdown: shutdown.clone(),
        running: Running::default(),
    });
    let jobs = rt.config.jobs.iter().cloned().map(Arc::new).collect();
    let (_reload, reloads) = tokio::sync::mpsc::channel(1);
    crate::scheduler::run_loop(
        jobs,
        remembered,
        rt.clock.clone(),
        rt.config.agent.wake_delay,
        dispatch,
        shutdown.clone(),
        reloads,
    )
    .await;

    tracker.close();
    if tokio::time::timeout(GRACE, tracker.wait()).await.is_err() {
        tracing::warn!(
            "{} run(s) still going after {}s; stopping them",
            tracker.len(),
            GRACE.as_secs()
        );
    }
    outbox_stop.cancel();
    let _ = worker.await;
    let due = rt.store.due(rt.clock.now()).unwrap_or_default();
    if !due.is_empty() {
        let left = crate::outbox::deliver_within(&rt, due, FLUSH).await;
        if left > 0 {
            tracing::warn!("{left} message(s) not delivered yet; they are kept for the next start");
        }
    }
    tracing::info!("klaxon stopped");
    Ok(())
}
