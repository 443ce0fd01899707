//! What the agent does while its state store cannot be written (a full disk, a
//! read-only filesystem): it keeps alerting from memory, writes what it kept once the
//! store takes writes again, and tells a person (`agent.notify`) that it cannot write.
//!
//! - A run whose commit fails still moves its job's alert state: the state it leads to
//!   is kept here, and the job's next runs start from it (so `after = 3` counts across
//!   the outage), as do the jobs that depend on it. The messages the run makes due are
//!   sent straight through their notifiers, one (notifier, job) at a time in order,
//!   retried with the outbox's backoff for up to [`GIVE_UP_AFTER`].
//! - Every [`FLUSH_EVERY`] the kept runs are written, each job's in order, each with the
//!   state it led to, and each once (a run leaves memory when its commit succeeded).
//!   Their messages were sent from memory and are not put in the outbox.
//! - At most [`KEEP_PER_JOB`] runs are kept per job; beyond that the oldest is dropped
//!   from history with a warning (the state it led to is in the newer ones).
//! - What is lost if the process dies before the store is back: the kept runs, the state
//!   they led to (the next start continues from the last state written), and messages
//!   still being retried.
//!
//! The person is told by [`watch`]: when `/healthz` says the state cannot be written (a
//! run's commit or the health probe's write failed; read after each probe), each of
//! `agent.notify` gets one
//! failure "klaxon on AGENT cannot write its state: REASON" (job `klaxon`, check type
//! `agent`, target the state directory), retried in memory until delivered or the
//! outage ends; once a probe found writes working and no commit failed for
//! [`RECOVERED_AFTER`] after it, those that got it get a recovery.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use klaxon_notifiers::{Alert, CheckInfo, DeliveryError, Event, Severity};
use tokio_util::sync::CancellationToken;

use crate::alert::{JobState, Transition};
use crate::delivery::{GIVE_UP_AFTER, backoff, send_now};
use crate::liveness::Liveness;
use crate::runtime::Runtime;
use crate::store::{Change, NewMessage, RunRecord, Store, StoreError};

/// Runs kept per job while the store cannot be written.
pub const KEEP_PER_JOB: usize = 1000;

/// How often kept runs are offered to the store again.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// How long writes must work again before the outage counts as over (a nearly full
/// disk lets some writes through).
pub const RECOVERED_AFTER: Duration = Duration::from_secs(10);

/// The job name of the agent's own messages.
pub const AGENT_JOB: &str = "klaxon";

/// Runs not written yet and messages being sent from memory. One per agent, kept
/// across reloads.
#[derive(Debug, Default)]
pub struct Unwritten {
    inner: Mutex<Inner>,
    /// One flush at a time.
    flushing: tokio::sync::Mutex<()>,
    /// Rung when a run is kept: the flusher sleeps until then.
    kept: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Inner {
    /// Per job: runs not written yet, oldest first.
    runs: HashMap<String, VecDeque<Kept>>,
    next: u64,
    /// Per (notifier, job): messages being sent from memory, oldest first; the first
    /// is the one being tried.
    chains: HashMap<(String, String), VecDeque<Alert>>,
}

#[derive(Debug, Clone)]
struct Kept {
    seq: u64,
    run: RunRecord,
    /// The job's state after this run.
    after: JobState,
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Unwritten {
    /// Whether runs of any of `jobs` wait here: a new run of such a job is kept too,
    /// after them, and reads their states.
    pub fn holds<'a>(&self, mut jobs: impl Iterator<Item = &'a str>) -> bool {
        let inner = lock(&self.inner);
        jobs.any(|j| inner.runs.get(j).is_some_and(|q| !q.is_empty()))
    }

    /// How many runs wait here.
    pub fn len(&self) -> usize {
        lock(&self.inner).runs.values().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps `run`: `transition` is applied to the job's last known state (the newest
    /// kept, else `stored`), with its dependencies' known states (silenced when `run`
    /// says so), and the new state is kept with the run. Returns the messages it makes
    /// due.
    pub fn keep(
        &self,
        run: RunRecord,
        stored: &HashMap<String, JobState>,
        transition: &Transition,
    ) -> Vec<NewMessage> {
        let mut inner = lock(&self.inner);
        let known = |job: &str| -> JobState {
            inner
                .runs
                .get(job)
                .and_then(|q| q.back())
                .map(|k| k.after.clone())
                .or_else(|| stored.get(job).cloned())
                .unwrap_or_default()
        };
        let before = known(&run.job);
        let Ok((after, messages)) = transition.apply_reading::<std::convert::Infallible>(
            &before,
            &|job| Ok(known(job)),
            run.silenced.is_some(),
        );
        inner.next += 1;
        let seq = inner.next;
        let queue = inner.runs.entry(run.job.clone()).or_default();
        if queue.len() >= KEEP_PER_JOB
            && let Some(dropped) = queue.pop_front()
        {
            tracing::warn!(
                job = %dropped.run.job,
                started_at = %dropped.run.started_at.to_rfc3339(),
                "{KEEP_PER_JOB} runs of this job are waiting for the state store: the oldest is dropped from history"
            );
        }
        queue.push_back(Kept { seq, run, after });
        self.kept.notify_one();
        messages
    }

    /// Writes the kept runs, each job's in order, each with the state it led to; a
    /// run leaves memory once its commit succeeded. Stops at the first failure.
    /// Returns how many were written.
    pub async fn flush(&self, store: &Store) -> Result<usize, StoreError> {
        let _one = self.flushing.lock().await;
        let mut written = 0;
        loop {
            let next: Vec<Kept> = lock(&self.inner)
                .runs
                .values()
                .filter_map(|q| q.front().cloned())
                .collect();
            if next.is_empty() {
                return Ok(written);
            }
            for kept in next {
                let change = Change::Decided {
                    state: Box::new(kept.after.clone()),
                    messages: Vec::new(),
                };
                store.record(kept.run.clone(), change).await?;
                written += 1;
                let mut inner = lock(&self.inner);
                if let Some(queue) = inner.runs.get_mut(&kept.run.job) {
                    queue.retain(|k| k.seq != kept.seq);
                    if queue.is_empty() {
                        inner.runs.remove(&kept.run.job);
                    }
                }
            }
        }
    }

    /// Sends `messages` from memory: each (notifier, job) in order, each message
    /// retried until delivered, refused, or [`GIVE_UP_AFTER`].
    pub fn send(self: &Arc<Self>, rt: &Arc<Runtime>, messages: Vec<NewMessage>) {
        for message in messages {
            let key = (message.notifier.clone(), message.alert.job.clone());
            let start = {
                let mut inner = lock(&self.inner);
                let chain = inner.chains.entry(key.clone()).or_default();
                chain.push_back(message.alert);
                chain.len() == 1
            };
            if start {
                tokio::spawn(self.clone().send_chain(rt.clone(), key));
            }
        }
    }

    async fn send_chain(self: Arc<Self>, rt: Arc<Runtime>, key: (String, String)) {
        let never = CancellationToken::new();
        loop {
            let Some(alert) = lock(&self.inner)
                .chains
                .get(&key)
                .and_then(|c| c.front().cloned())
            else {
                return;
            };
            deliver(&rt, &key.0, &alert, &never).await;
            let mut inner = lock(&self.inner);
            if let Some(chain) = inner.chains.get_mut(&key) {
                chain.pop_front();
                if chain.is_empty() {
                    inner.chains.remove(&key);
                    return;
                }
            }
        }
    }
}

/// Sends `alert` through the notifier `name` until it is delivered (true), refused,
/// [`GIVE_UP_AFTER`] has passed, or `stop` (false).
async fn deliver(rt: &Runtime, name: &str, alert: &Alert, stop: &CancellationToken) -> bool {
    let start = tokio::time::Instant::now();
    let mut attempts = 0;
    loop {
        let result = tokio::select! {
            result = send_now(rt, name, alert) => result,
            () = stop.cancelled() => return false,
        };
        let (reason, after) = match result {
            Ok(()) => {
                tracing::info!(
                    job = %alert.job,
                    notifier = %name,
                    event = alert.event.as_str(),
                    "delivered from memory (the state store cannot be written)"
                );
                return true;
            }
            Err(DeliveryError::Reject { reason }) => {
                tracing::error!(
                    job = %alert.job,
                    notifier = %name,
                    event = alert.event.as_str(),
                    "delivery refused, not retrying: {reason}"
                );
                return false;
            }
            Err(DeliveryError::Retry { reason, after }) => (reason, after),
        };
        let wait = after.unwrap_or_else(|| backoff(attempts));
        attempts += 1;
        if start.elapsed() + wait >= GIVE_UP_AFTER {
            tracing::error!(
                job = %alert.job,
                notifier = %name,
                event = alert.event.as_str(),
                "giving up on a message sent from memory: {reason}"
            );
            return false;
        }
        tracing::error!(
            job = %alert.job,
            notifier = %name,
            event = alert.event.as_str(),
            retry_in = %humantime::format_duration(wait),
            "delivery from memory failed: {reason}"
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return false,
        }
    }
}

/// Offers the kept runs to the store every [`FLUSH_EVERY`] while there are some, until
/// `stop`. With none it sleeps until a run is kept.
pub async fn keep_flushing(unwritten: Arc<Unwritten>, store: Store, stop: CancellationToken) {
    loop {
        if unwritten.is_empty() {
            tokio::select! {
                () = stop.cancelled() => return,
                () = unwritten.kept.notified() => {}
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(FLUSH_EVERY) => {}
        }
        flush_once(&unwritten, &store).await;
    }
}

/// Writes what is kept, if anything, and says how it went.
pub async fn flush_once(unwritten: &Unwritten, store: &Store) {
    if unwritten.is_empty() {
        return;
    }
    match unwritten.flush(store).await {
        Ok(n) => tracing::info!(
            "the state store takes writes again: {n} run(s) kept in memory are written"
        ),
        Err(e) => tracing::debug!(
            kept = unwritten.len(),
            "the state store still cannot be written: {e}"
        ),
    }
}

/// One outage of the store, as told to `agent.notify`.
struct Outage {
    since: DateTime<Utc>,
    id: String,
    /// Writes have worked since then.
    clear_since: Option<tokio::time::Instant>,
    /// Ends the failure's retries.
    stop: CancellationToken,
    /// The notifiers that got the failure.
    told: Arc<Mutex<HashSet<String>>>,
}

/// Tells `agent.notify` when the state cannot be written and when it can again (see
/// the module doc), reading `/healthz`'s view after each probe (and each second while
/// an outage may be ending) and the newest runtime of `runtimes` for the notifiers.
pub async fn watch(
    runtimes: tokio::sync::watch::Receiver<Arc<Runtime>>,
    alive: Arc<Liveness>,
    stop: CancellationToken,
) {
    let mut outage: Option<Outage> = None;
    loop {
        let ending = outage.as_ref().is_some_and(|o| o.clear_since.is_some());
        tokio::select! {
            () = stop.cancelled() => return,
            () = alive.probed() => {}
            () = tokio::time::sleep(Duration::from_secs(1)), if ending => {}
        }
        let rt = runtimes.borrow().clone();
        // As `/healthz` last found it, or a commit that failed since.
        let error = alive.store_error().or_else(|| rt.store.write_error());
        match (error, outage.as_mut()) {
            (Some(reason), None) => outage = Some(begin(&rt, &reason, &stop)),
            (Some(_), Some(o)) => o.clear_since = None,
            (None, Some(o)) => {
                let clear = *o.clear_since.get_or_insert_with(tokio::time::Instant::now);
                if clear.elapsed() >= RECOVERED_AFTER
                    && let Some(o) = outage.take()
                {
                    end(&rt, o, &stop);
                }
            }
            (None, None) => {}
        }
    }
}

fn begin(rt: &Arc<Runtime>, reason: &str, stop: &CancellationToken) -> Outage {
    let since = rt.clock.now();
    let agent = &rt.config.agent;
    let targets = &agent.notify;
    tracing::error!(
        notify = %targets.join(","),
        "klaxon on {} cannot write its state: {reason}; runs still alert, from memory",
        agent.name
    );
    let outage = Outage {
        since,
        id: format!("{AGENT_JOB}-{}", since.timestamp_millis()),
        clear_since: None,
        stop: stop.child_token(),
        told: Arc::default(),
    };
    let mut alert = agent_alert(rt, &outage, since);
    alert.summary = format!("klaxon on {} cannot write its state: {reason}", agent.name);
    for name in targets {
        let (rt, name, alert) = (rt.clone(), name.clone(), alert.clone());
        let (stop, told) = (outage.stop.clone(), outage.told.clone());
        tokio::spawn(async move {
            if deliver(&rt, &name, &alert, &stop).await {
                told.lock().unwrap_or_else(|p| p.into_inner()).insert(name);
            }
        });
    }
    outage
}

fn end(rt: &Arc<Runtime>, outage: Outage, stop: &CancellationToken) {
    outage.stop.cancel();
    let now = rt.clock.now();
    let agent = &rt.config.agent;
    tracing::info!("klaxon on {} can write its state again", agent.name);
    let mut alert = agent_alert(rt, &outage, now);
    alert.event = Event::Recovery;
    alert.severity = Severity::Ok;
    alert.summary = format!("klaxon on {} can write its state again", agent.name);
    alert.downtime_ms = Some(
        (now - outage.since)
            .to_std()
            .unwrap_or_default()
            .as_millis() as u64,
    );
    let told: Vec<String> = outage
        .told
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect();
    for name in told {
        let (rt, alert, stop) = (rt.clone(), alert.clone(), stop.clone());
        tokio::spawn(async move { deliver(&rt, &name, &alert, &stop).await });
    }
}

/// The agent's own message about an outage of its store, as of `at`.
fn agent_alert(rt: &Runtime, outage: &Outage, at: DateTime<Utc>) -> Alert {
    let check = CheckInfo {
        kind: "agent".into(),
        target: rt.config.agent.state_dir.display().to_string(),
    };
    agent_message(rt, check, outage.since, at, outage.id.clone())
}

/// A message of the agent about itself (job [`AGENT_JOB`]), about `check`, as of `at`,
/// of a trouble that began `since`: a critical failure with no summary yet, which the
/// caller fills in (or turns into a recovery).
pub fn agent_message(
    rt: &Runtime,
    check: CheckInfo,
    since: DateTime<Utc>,
    at: DateTime<Utc>,
    id: String,
) -> Alert {
    let agent = &rt.config.agent;
    let local = |t: DateTime<Utc>| t.with_timezone(&agent.timezone).fixed_offset();
    Alert {
        version: 1,
        event: Event::Failure,
        job: AGENT_JOB.into(),
        agent: agent.name.clone(),
        severity: Severity::Critical,
        check,
        summary: String::new(),
        output: None,
        attempts: 1,
        max_attempts: 1,
        elapsed_ms: 0,
        started_at: local(at),
        failing_since: Some(local(since)),
        last_success: None,
        next_run: None,
        downtime_ms: None,
        id,
        acknowledged: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(i: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + i, 0).unwrap()
    }

    fn run(job: &str, i: i64, severity: &str) -> RunRecord {
        let t = at(i);
        RunRecord {
            job: job.into(),
            started_at: t,
            finished_at: t,
            severity: severity.into(),
            attempts: 1,
            elapsed: Duration::ZERO,
            summary: format!("run {i}"),
            output: None,
            skipped: None,
            metrics: Vec::new(),
            fire_at: Some(t),
            silenced: None,
        }
    }

    /// A critical run of `job` at minute `i`; `api` depends on `db`.
    fn critical(job: &str, i: i64) -> Transition {
        let mut t = Transition::test(job, klaxon_checks::Severity::Critical, at(i));
        if job == "api" {
            t.job.depends_on = vec!["db".into()];
        }
        t
    }

    #[tokio::test]
    async fn kept_runs_go_on_from_each_other_and_are_written_in_order_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let unwritten = Unwritten::default();
        let stored = HashMap::from([(
            "api".to_owned(),
            JobState {
                consecutive_failures: 5,
                ..JobState::default()
            },
        )]);
        // `db` fails (kept in memory); `api`, which depends on it, fails three times.
        let db = unwritten.keep(run("db", 0, "critical"), &stored, &critical("db", 0));
        assert_eq!(db.len(), 1, "db's own alert is sent");
        for i in 1..=3 {
            let messages = unwritten.keep(run("api", i, "critical"), &stored, &critical("api", i));
            // `db`'s kept state, failing, holds `api`'s alert.
            assert!(messages.is_empty(), "{messages:?}");
        }
        let kept = |job: &str| {
            lock(&unwritten.inner).runs[job]
                .back()
                .unwrap()
                .after
                .clone()
        };
        // `api` starts from the store's 5, then from what memory kept.
        assert_eq!(kept("api").consecutive_failures, 8);
        assert!(kept("api").open.unwrap().held);
        assert!(unwritten.holds(["api"].into_iter()));
        assert!(!unwritten.holds(["web"].into_iter()));
        assert_eq!(unwritten.len(), 4);

        assert_eq!(unwritten.flush(&store).await.unwrap(), 4);
        assert!(unwritten.is_empty());
        let summaries: Vec<_> = store
            .history("api", 10)
            .unwrap()
            .into_iter()
            .map(|r| r.summary)
            .collect();
        assert_eq!(summaries, ["run 3", "run 2", "run 1"]);
        assert_eq!(store.job_state("api").unwrap().consecutive_failures, 8);
        // Written once: nothing is left to write again.
        assert_eq!(unwritten.flush(&store).await.unwrap(), 0);
        assert_eq!(store.history("api", 10).unwrap().len(), 3);
    }

    #[test]
    fn at_most_keep_per_job_runs_are_kept_the_oldest_dropped() {
        let unwritten = Unwritten::default();
        for i in 0..=KEEP_PER_JOB as i64 {
            unwritten.keep(
                run("api", i, "critical"),
                &HashMap::new(),
                &critical("api", i),
            );
        }
        assert_eq!(unwritten.len(), KEEP_PER_JOB);
        let inner = lock(&unwritten.inner);
        let kept = &inner.runs["api"];
        assert_eq!(kept.front().unwrap().run.summary, "run 1");
        // The newest still carries every run's count.
        assert_eq!(
            kept.back().unwrap().after.consecutive_failures,
            KEEP_PER_JOB as u32 + 1
        );
    }
}
