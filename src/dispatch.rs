//! The agent's [`Dispatch`]: what a fire does in a running agent. An active job's run is
//! spawned (waiting for one of `agent.max_concurrent` permits), unless `max_instances`
//! runs of it are still going, which makes the fire a recorded skip. A passive job's fire
//! evaluates its heartbeat. Skips the scheduler decides on are recorded in history. A
//! run a person asks for (the dashboard's "Run now") is no fire: it is recorded without
//! one, and not started while a run of the job is going.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Job;
use crate::runner::Cause;
use crate::runtime::Runtime;
use crate::scheduler::{Dispatch, Fire, Ran};
use crate::store::RunRecord;

/// Runs in progress per job name; shared across reloads so a reload does not forget
/// what is still running.
pub type Running = Arc<Mutex<HashMap<String, Arc<AtomicU32>>>>;

pub struct AgentDispatch {
    pub rt: Arc<Runtime>,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
    pub running: Running,
}

impl AgentDispatch {
    fn counter(&self, job: &str) -> Arc<AtomicU32> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        // Looked up before inserting: no allocation for the name on each fire.
        if let Some(counter) = running.get(job) {
            return counter.clone();
        }
        running.entry(job.to_owned()).or_default().clone()
    }
}

impl AgentDispatch {
    /// Spawns a run of the active `job`, counted in `running` while it goes.
    fn start(&self, job: Arc<Job>, cause: Cause, running: Arc<AtomicU32>) {
        running.fetch_add(1, Ordering::AcqRel);
        let rt = self.rt.clone();
        let stop = self.shutdown.child_token();
        self.tracker.spawn(async move {
            let permit = tokio::select! {
                permit = rt.permits.clone().acquire_owned() => permit.ok(),
                () = stop.cancelled() => None,
            };
            if permit.is_some()
                && let Err(e) = crate::runner::run_job(&rt, &job, &job.retry, cause, &stop).await
            {
                tracing::error!(job = %job.name, "run could not be recorded: {e:#}");
            }
            running.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

impl Dispatch for AgentDispatch {
    fn run(&self, job: &Arc<Job>, fire: Fire) {
        self.rt.metrics.dispatched(fire.due, self.rt.clock.now());
        let (rt, job) = (self.rt.clone(), job.clone());
        if !job.check.is_active() {
            self.tracker.spawn(async move {
                let result = crate::runner::evaluate_heartbeat(
                    &rt,
                    &job,
                    fire.nominal,
                    Some(fire.nominal),
                    fire.next_run,
                )
                .await;
                if let Err(e) = result {
                    tracing::error!(job = %job.name, "heartbeat could not be recorded: {e:#}");
                }
            });
            return;
        }
        let running = self.counter(&job.name);
        let already = running.load(Ordering::Acquire);
        if already >= job.max_instances {
            self.skip(
                &job,
                fire.nominal,
                format!("max_instances reached: {already} run(s) still going"),
            );
            return;
        }
        self.start(job, Cause::Fire(fire), running);
    }

    fn run_now(&self, job: &Arc<Job>, _now: DateTime<Utc>, next_run: Option<DateTime<Utc>>) -> Ran {
        // Whatever `max_instances` allows the schedule, a person asking does not start
        // a second run beside one that is going.
        let running = self.counter(&job.name);
        if running.load(Ordering::Acquire) > 0 {
            return Ran::AlreadyRunning;
        }
        self.start(job.clone(), Cause::Asked { next_run }, running);
        Ran::Started
    }

    fn skip(&self, job: &Arc<Job>, nominal: DateTime<Utc>, why: String) {
        tracing::warn!(job = %job.name, fire = %nominal.to_rfc3339(), "fire skipped: {why}");
        let now = self.rt.clock.now();
        let record = RunRecord {
            job: job.name.clone(),
            started_at: now,
            finished_at: now,
            severity: "skipped".into(),
            attempts: 0,
            elapsed: Duration::ZERO,
            summary: why.clone(),
            output: None,
            skipped: Some(why),
            metrics: Vec::new(),
            fire_at: Some(nominal),
            silenced: None,
        };
        let rt = self.rt.clone();
        let recorded = crate::store::THREADS.run(move || {
            let written = rt.store.record_skip(&record);
            (record.job, written)
        });
        self.tracker.spawn(async move {
            match recorded.await {
                Ok((_, Ok(()))) => {}
                Ok((job, Err(e))) => {
                    tracing::error!(job = %job, %e, "cannot record a skipped fire");
                }
                Err(e) => tracing::error!(%e, "cannot record a skipped fire"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::tests_support::load_text;
    use crate::runtime::{Mode, SystemClock};

    /// The agent's dispatch (dry run) with one job `slow`, a script of a second, with
    /// `extra` keys.
    fn slow(extra: &str) -> (Arc<Runtime>, TaskTracker, AgentDispatch, Arc<Job>) {
        let config = load_text(&format!(
            "[jobs.slow]\nevery = \"1h\"\n{extra}[jobs.slow.check]\ntype = \"script\"\nshell = \"sleep 1; echo done\"\n",
        ))
        .unwrap();
        let rt = Arc::new(Runtime::build(config, Mode::DryRun, Arc::new(SystemClock)).unwrap());
        let tracker = TaskTracker::new();
        let dispatch = AgentDispatch {
            rt: rt.clone(),
            tracker: tracker.clone(),
            shutdown: CancellationToken::new(),
            running: Running::default(),
        };
        let job = Arc::new(rt.config.jobs[0].clone());
        (rt, tracker, dispatch, job)
    }

    /// Once every run has ended: `slow`'s history as (fire, severity, summary).
    async fn finished(
        rt: &Runtime,
        tracker: &TaskTracker,
    ) -> Vec<(Option<DateTime<Utc>>, String, String)> {
        tracker.close();
        tracker.wait().await;
        let history = rt.store.history("slow", 10).unwrap();
        history
            .into_iter()
            .map(|r| (r.fire_at, r.severity, r.summary))
            .collect()
    }

    #[tokio::test]
    async fn a_fire_that_finds_max_instances_running_is_skipped_and_recorded() {
        let (rt, tracker, dispatch, job) = slow("");
        // The store keeps milliseconds.
        let first = DateTime::from_timestamp_millis(rt.clock.now().timestamp_millis()).unwrap();
        let second = first + chrono::Duration::seconds(1);
        for nominal in [first, second] {
            dispatch.run(
                &job,
                Fire {
                    nominal,
                    due: nominal,
                    next_run: None,
                },
            );
        }
        let summary = finished(&rt, &tracker).await;
        let summary: Vec<_> = summary
            .iter()
            .map(|(f, sev, sum)| (*f, sev.as_str(), sum.as_str()))
            .collect();
        assert_eq!(summary.len(), 2, "{summary:?}");
        assert!(
            summary.contains(&(Some(first), "ok", "done")),
            "{summary:?}"
        );
        assert!(
            summary.contains(&(
                Some(second),
                "skipped",
                "max_instances reached: 1 run(s) still going"
            )),
            "{summary:?}"
        );
    }

    #[tokio::test]
    async fn a_run_asked_for_is_no_fire_and_is_not_started_beside_a_going_one() {
        let (rt, tracker, dispatch, job) = slow("max_instances = 2\n");
        let now = rt.clock.now();
        let next = now + chrono::Duration::hours(1);
        assert_eq!(dispatch.run_now(&job, now, Some(next)), Ran::Started);
        // `max_instances = 2` would let the schedule start another; asking does not.
        assert_eq!(dispatch.run_now(&job, now, Some(next)), Ran::AlreadyRunning);
        let runs = finished(&rt, &tracker).await;
        assert_eq!(runs, [(None, "ok".into(), "done".into())]);
        assert!(rt.store.last_fires(["slow"]).unwrap().is_empty());
    }
}
