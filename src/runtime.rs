//! Everything a running agent (or `klaxon once`) shares: the validated config, the
//! state store, each job's built check, each notifier, the concurrency limit and the
//! clock. Built once from a [`Config`]; nothing here is per run.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use klaxon_checks::Check;
use klaxon_notifiers::Notifier;
use klaxon_notifiers::buttons::Buttons;
use secrecy::ExposeSecret;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::heartbeat::Pinger;
use crate::store::Store;

/// Where wall-clock time comes from: the system in production, a controlled clock in
/// tests. Sleeping is always on tokio's clock.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;

    /// Whether `now` is the system's real-time clock, so that an OS timer set on that
    /// clock rings when `now` reads its deadline. The scheduler then finishes its waits
    /// on such a timer (sub-millisecond) rather than on tokio's 1 ms wheel alone. A test
    /// clock, driven by tokio's paused time, says no.
    fn is_system(&self) -> bool {
        false
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn is_system(&self) -> bool {
        true
    }
}

/// What `--dry-run` changes: messages are printed, not sent, and no state is written
/// to the real store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Live,
    DryRun,
}

pub struct Runtime {
    pub config: Config,
    pub store: Store,
    pub checks: HashMap<String, Arc<Check>>,
    pub notifiers: HashMap<String, Arc<Notifier>>,
    /// `agent.max_concurrent`: checks running at once, all jobs together.
    pub permits: Arc<Semaphore>,
    pub clock: Arc<dyn Clock>,
    pub mode: Mode,
    /// When each rate-limited notifier may send next.
    pub last_sent: std::sync::Mutex<HashMap<String, tokio::time::Instant>>,
    /// The agent's Prometheus metrics; a reload carries them into the new runtime.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Heartbeat pings (on the shared HTTP client); kept across reloads.
    pub pinger: Pinger,
    /// Where runs go while the store cannot be written (the agent only; `None` for
    /// `once`, `exec` and `ping`, which fail instead); kept across reloads.
    pub unwritten: Option<Arc<crate::unwritten::Unwritten>>,
    /// Whether the machine is online (`agent.online`, the agent only; `None` when unset
    /// and for `once`, which judges every run); kept across reloads.
    pub online: Option<Arc<crate::online::Online>>,
    /// The dashboard's bars and sparklines, drawn again only when a job's runs change.
    pub drawings: crate::dashboard::overview::Drawings,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("agent", &self.config.agent.name)
            .field("jobs", &self.config.jobs.len())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds checks and notifiers for every job and notifier, and opens the store
    /// (an in-memory one in dry-run mode, so a rehearsal leaves no trace).
    pub fn build(config: Config, mode: Mode, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let store = match mode {
            Mode::Live => Store::open(&config.agent.state_dir)?,
            Mode::DryRun => Store::open_in_memory()?,
        };
        Self::with_store(config, mode, clock, store)
    }

    /// Builds checks and notifiers on a store that is already open (a reload).
    pub fn with_store(
        config: Config,
        mode: Mode,
        clock: Arc<dyn Clock>,
        store: Store,
    ) -> anyhow::Result<Self> {
        let shared = klaxon_checks::Shared::new().context("cannot set up checks")?;
        let mut checks = HashMap::new();
        // Passive jobs (heartbeats) are fed by pings: they have nothing to run.
        for job in config.jobs.iter().filter(|j| j.check.is_active()) {
            let check =
                Check::build(&job.check, &shared).with_context(|| format!("job `{}`", job.name))?;
            checks.insert(job.name.clone(), Arc::new(check));
        }
        // Notifiers and pings follow no redirects, unlike the `http` check's client.
        let delivery = klaxon_notifiers::delivery_client()
            .context("cannot set up the HTTP client of notifiers")?;
        let buttons = buttons(&config);
        let mut notifiers = HashMap::new();
        for entry in &config.notifiers {
            let notifier = Notifier::build(&entry.spec, &delivery, buttons.as_ref())
                .with_context(|| format!("notifier `{}`", entry.name))?;
            notifiers.insert(entry.name.clone(), Arc::new(notifier));
        }
        let pinger = Pinger::new(delivery, mode);
        Ok(Self {
            permits: Arc::new(Semaphore::new(config.agent.max_concurrent)),
            config,
            store,
            checks,
            notifiers,
            clock,
            mode,
            last_sent: Default::default(),
            metrics: Default::default(),
            pinger,
            unwritten: None,
            online: None,
            drawings: Default::default(),
        })
    }
}

/// The buttons messages offer: with both `agent.listen_url` and `agent.listen_token`.
fn buttons(config: &Config) -> Option<Buttons> {
    let agent = &config.agent;
    let url = agent.listen_url.clone()?;
    // An empty token lets nobody in; tokens derived from it would be guessable.
    let token = (agent.listen_token.clone()).filter(|t| !t.expose_secret().is_empty())?;
    Some(Buttons::new(url, token))
}
