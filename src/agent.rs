//! The long-running agent: one lock per state directory, the scheduler, and the outbox
//! worker, all under one shutdown token. Shutdown is bounded: scheduling stops at once,
//! running scripts' process groups get SIGTERM and, 2 s later, SIGKILL; other running
//! checks get [`GRACE`] to finish; no further retries start. Runs cut short that way are
//! recorded as `interrupted` and alert no one. Then the agent flushes the outbox and
//! returns.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tokio::sync::mpsc;

use crate::config::{Config, ConfigError};
use crate::dispatch::{AgentDispatch, Running};
use crate::runtime::{Mode, Runtime, SystemClock};
use crate::scheduler::{Dispatch, Reload, Remembered};

/// How long running checks may take to finish after a shutdown signal (a script is
/// stopped within [`klaxon_checks::group::KILL_GRACE`] of it).
pub const GRACE: Duration = Duration::from_secs(10);

/// How long a stopping agent tries to deliver what its last runs enqueued.
pub const FLUSH: Duration = Duration::from_secs(5);

/// Takes the agent lock in `state_dir`: one agent per state directory. The OS releases
/// it when the process ends, however it ends.
pub fn lock(state_dir: &Path) -> anyhow::Result<File> {
    crate::lockfile::try_lock(state_dir, "agent.lock")?.ok_or_else(|| {
        anyhow::anyhow!(
            "another klaxon agent is running with the state directory `{}`",
            state_dir.display()
        )
    })
}

/// Where a reload gets the new config from (the file the agent was started with).
pub type Loader = Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// Runs the agent until `shutdown` is cancelled. Each message on `reload_requests`
/// (SIGHUP, `--watch`) reloads the config through `loader`.
pub async fn run(
    config: Config,
    mode: Mode,
    shutdown: CancellationToken,
    mut reload_requests: mpsc::Receiver<()>,
    loader: Loader,
) -> anyhow::Result<()> {
    let _lock = match mode {
        Mode::Live => Some(lock(&config.agent.state_dir)?),
        Mode::DryRun => None,
    };
    let mut built = Runtime::build(config, mode, Arc::new(SystemClock))?;
    built.unwritten = Some(Arc::default());
    // `agent.online` is read at start, like `agent.heartbeat`: a reload keeps it.
    if let Some(settings) = &built.config.agent.online {
        let client = built.pinger.http().clone();
        built.online = Some(Arc::new(crate::online::Online::new(settings, client)));
    }
    let mut rt = Arc::new(built);
    if mode == Mode::Live
        && let Err(e) = rt.store.listen_for_others()
    {
        tracing::warn!(
            "cannot open the outbox doorbell in the state directory ({e}); \
             looking every second for messages other klaxon processes leave"
        );
    }
    tracing::info!(
        agent = %rt.config.agent.name,
        config = %rt.config.file.display(),
        state = %rt.store.path().display(),
        jobs = rt.config.jobs.len(),
        notifiers = rt.config.notifiers.len(),
        dry_run = mode == Mode::DryRun,
        "klaxon started"
    );
    let alive = Arc::new(crate::liveness::Liveness::new());
    // Runs asked for on the dashboard: from the listener to the scheduler.
    let (ask, asks) = mpsc::channel(8);
    let listener = crate::listener::Listener::start(&rt, alive.clone(), ask, &shutdown).await?;
    // The store outlives reloads, and so does its probe.
    let probe = tokio::spawn(crate::liveness::probe(
        rt.store.clone(),
        alive.clone(),
        rt.clock.clone(),
        shutdown.child_token(),
    ));
    let pool_probe = tokio::spawn(crate::liveness::probe_pool(
        alive.clone(),
        shutdown.child_token(),
    ));
    // While the store cannot be written: runs kept in memory are written when it can
    // again, and `agent.notify` is told (with the notifiers of the newest config).
    let unwritten = rt.unwritten.clone().unwrap_or_default();
    let flusher = tokio::spawn(crate::unwritten::keep_flushing(
        unwritten.clone(),
        rt.store.clone(),
        shutdown.child_token(),
    ));
    let (runtimes, watched) = tokio::sync::watch::channel(rt.clone());
    let (resume, resumes) = mpsc::unbounded_channel();
    let online = rt.online.clone().map(|online| {
        tokio::spawn(crate::online::watch(
            online,
            watched.clone(),
            resume,
            shutdown.child_token(),
        ))
    });
    let watcher = tokio::spawn(crate::unwritten::watch(
        watched,
        alive.clone(),
        shutdown.child_token(),
    ));
    let tracker = TaskTracker::new();
    let running = Running::default();
    // The outbox outlives the scheduler: runs that finish during shutdown still get
    // their messages out.
    let mut outbox = Outbox::start(&rt);
    let mut pruner = Pruner::start(&rt);
    let remembered = rt
        .store
        .last_fires(rt.config.jobs.iter().map(|j| j.name.as_str()))?
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
    let dispatch = |rt: &Arc<Runtime>| -> Arc<dyn Dispatch> {
        Arc::new(AgentDispatch {
            rt: rt.clone(),
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
            running: running.clone(),
        })
    };
    // The agent's own heartbeat, while it runs (its URL and interval are read at start).
    let beat = rt.config.agent.heartbeat.clone().map(|hb| {
        let pinger = rt.pinger.clone();
        tokio::spawn(crate::heartbeat::agent_beat(
            pinger,
            hb.url,
            hb.every,
            shutdown.child_token(),
        ))
    });
    let (reload_tx, reloads) = mpsc::channel(1);
    let scheduler = tokio::spawn(crate::scheduler::run_loop(
        jobs_of(&rt),
        remembered,
        rt.clock.clone(),
        rt.config.agent.wake_delay,
        dispatch(&rt),
        shutdown.clone(),
        reloads,
        resumes,
        asks,
        alive,
    ));

    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            request = reload_requests.recv() => {
                if request.is_none() {
                    // Nobody can ask for reloads any more; wait for shutdown alone.
                    shutdown.cancelled().await;
                    break;
                }
                match reloaded(&rt, &loader, mode) {
                    Ok(new) => {
                        let reload = Reload {
                            jobs: jobs_of(&new),
                            dispatch: dispatch(&new),
                            wake_delay: new.config.agent.wake_delay,
                        };
                        if reload_tx.send(reload).await.is_err() {
                            break;
                        }
                        outbox.stop().await;
                        outbox = Outbox::start(&new);
                        pruner.stop().await;
                        pruner = Pruner::start(&new);
                        listener.reload(&new);
                        runtimes.send_replace(new.clone());
                        tracing::info!(
                            jobs = new.config.jobs.len(),
                            notifiers = new.config.notifiers.len(),
                            "config reloaded"
                        );
                        rt = new;
                    }
                    Err(e) => tracing::error!("config reload failed; the running config stays:\n{e:#}"),
                }
            }
        }
    }
    let _ = scheduler.await;
    if let Some(online) = online {
        let _ = online.await;
    }
    listener.stop().await;
    let _ = probe.await;
    let _ = pool_probe.await;
    pruner.stop().await;

    tracker.close();
    if tokio::time::timeout(GRACE, tracker.wait()).await.is_err() {
        tracing::warn!(
            "{} run(s) still going after {}s; stopping them",
            tracker.len(),
            GRACE.as_secs()
        );
        // Scripts were stopped within 2 s; make sure no group outlives the agent.
        klaxon_checks::group::kill_all();
    }
    outbox.stop().await;
    let _ = (flusher.await, watcher.await);
    crate::unwritten::flush_once(&unwritten, &rt.store).await;
    if !unwritten.is_empty() {
        tracing::warn!(
            "{} run(s) could not be written to the state store and are lost (their messages were sent from memory)",
            unwritten.len()
        );
    }
    if let Some(beat) = beat {
        let _ = beat.await;
    }
    let due = rt.store.due(rt.clock.now()).unwrap_or_default();
    let flush = async {
        if !due.is_empty() {
            let left = crate::delivery::deliver_within(&rt, due, FLUSH).await;
            if left > 0 {
                tracing::warn!(
                    "{left} message(s) not delivered yet; they are kept for the next start"
                );
            }
        }
    };
    // Heartbeat pings of the last runs go out beside the outbox, within the same bound.
    tokio::join!(flush, rt.pinger.wait(FLUSH));
    // Messages read but not started (waiting for a slot or a group window) are let go
    // for the next process that delivers.
    if let Err(e) = rt.store.release_claims() {
        tracing::error!(%e, "cannot update the outbox");
    }
    tracing::info!("klaxon stopped");
    Ok(())
}

fn jobs_of(rt: &Runtime) -> Vec<Arc<crate::config::Job>> {
    rt.config.jobs.iter().cloned().map(Arc::new).collect()
}

/// Loads the config again and builds its runtime on the same store.
fn reloaded(current: &Arc<Runtime>, loader: &Loader, mode: Mode) -> anyhow::Result<Arc<Runtime>> {
    let config = loader()?;
    if config.agent.state_dir != current.config.agent.state_dir {
        anyhow::bail!(
            "`agent.state_dir` cannot change while the agent runs (from `{}` to `{}`): restart klaxon",
            current.config.agent.state_dir.display(),
            config.agent.state_dir.display()
        );
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    if config.agent.online != current.config.agent.online {
        tracing::warn!("`agent.online` changed; it is read at start: restart klaxon to use it");
    }
    let mut new = Runtime::with_store(config, mode, current.clock.clone(), current.store.clone())?;
    new.metrics = current.metrics.clone(); // counters survive reloads
    // Pings of runs from before the reload are still waited for at shutdown.
    new.pinger = current.pinger.clone();
    // Runs kept while the store cannot be written are written by the same agent.
    new.unwritten = current.unwritten.clone();
    // So does what is known of the network.
    new.online = current.online.clone();
    Ok(Arc::new(new))
}

/// The outbox worker of one runtime (its notifiers), and its Alertmanager resender.
struct Outbox {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    resender: tokio::task::JoinHandle<()>,
}

impl Outbox {
    fn start(rt: &Arc<Runtime>) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(crate::delivery::worker(rt.clone(), stop.clone()));
        let resender = tokio::spawn(crate::delivery::resend_firing(rt.clone(), stop.clone()));
        Self {
            stop,
            task,
            resender,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
        let _ = self.resender.await;
    }
}

/// The history pruning of one runtime (its `[history]` and its jobs).
struct Pruner {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Pruner {
    fn start(rt: &Arc<Runtime>) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(crate::store::keep_pruning(
            rt.store.clone(),
            rt.config.history,
            rt.config.jobs.iter().map(|j| j.name.clone()).collect(),
            rt.clock.clone(),
            stop.clone(),
        ));
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}
