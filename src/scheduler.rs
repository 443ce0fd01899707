//! The one timer loop that fires every job. Fires are computed in wall-clock time (in
//! each job's zone) and kept in a heap; the loop sleeps on tokio's clock until the
//! earliest one is due, or at most 30 s so that a changed wall clock (sleep, NTP) is
//! noticed. No task sleeps per job, and nothing polls on a fixed tick.
//!
//! A fire that finds `max_instances` runs of its job still going is skipped and
//! recorded; runs beyond `agent.max_concurrent` wait for a permit.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use klaxon_checks::CheckSpec;

use crate::config::Job;
use crate::runtime::Runtime;
use crate::schedule::Trigger;
use crate::store::RunRecord;

/// The longest the loop sleeps without re-reading the wall clock.
pub const CLOCK_CHECK: Duration = Duration::from_secs(30);

/// How long after its nominal fire a job is handled: a passive job when its ping's
/// `grace` has run out; an active one after its jitter offset.
fn delay(job: &Job) -> Duration {
    match &job.check {
        CheckSpec::Heartbeat(h) => h.grace,
        _ => jitter_offset(job),
    }
}

/// A fixed offset in `[0, jitter)` for a job, the same on every start, so that jobs
/// sharing a schedule spread out while each keeps its phase across restarts.
pub fn jitter_offset(job: &Job) -> Duration {
    let Some(jitter) = job.jitter.filter(|j| !j.is_zero()) else {
        return Duration::ZERO;
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    job.name.hash(&mut h);
    let nanos = jitter.as_nanos().max(1) as u64;
    Duration::from_nanos(h.finish() % nanos)
}

fn add(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t + chrono::Duration::from_std(d).unwrap_or_default()
}

/// The first fire of a job when the agent starts at `now`, or `None` if it has none.
fn first_fire(rt: &Runtime, job: &Job, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match &job.trigger {
        // Interval jobs run at start, then every interval: a fresh agent shows results
        // at once instead of after the first interval. A heartbeat job's first ping is
        // expected one interval after start.
        Trigger::Every(interval) if !job.check.is_active() => Some(add(now, *interval)),
        Trigger::Every(_) => Some(now),
        Trigger::Cron(c) => c.next_after(now),
        Trigger::At(at) => {
            let at = at.with_timezone(&Utc);
            if at > now {
                return Some(at);
            }
            // A one-shot whose time passed while the agent was down runs once, unless
            // it already ran.
            let ran = rt
                .store
                .job_state(&job.name)
                .map(|s| s.last_run.is_some())
                .unwrap_or(true);
            (!ran).then_some(now)
        }
    }
}

/// The fire after one that was due at `due`, when handled at `now`. Fires missed in
/// between (a busy or sleeping machine) are coalesced into the one just handled.
fn next_fire(job: &Job, due: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match &job.trigger {
        Trigger::Every(interval) => {
            let mut next = add(due, *interval);
            if next <= now {
                // Keep the phase: skip whole intervals.
                let step = interval.as_nanos().max(1);
                let behind = (now - next).to_std().unwrap_or_default().as_nanos();
                let skip = behind / step + 1;
                next = add(
                    next,
                    Duration::from_nanos((skip * step).min(u64::MAX as u128) as u64),
                );
            }
            Some(next)
        }
        trigger => trigger.next_after(due.max(now)),
    }
}

/// Runs the loop until `shutdown`; job runs are spawned on `tracker`.
pub async fn run(rt: Arc<Runtime>, shutdown: CancellationToken, tracker: TaskTracker) {
    let jobs: Vec<Arc<Job>> = rt.config.jobs.iter().cloned().map(Arc::new).collect();
    let running: Vec<Arc<AtomicU32>> = jobs.iter().map(|_| Arc::default()).collect();
    let offsets: Vec<Duration> = jobs.iter().map(|j| delay(j)).collect();
    // Heap of (nominal fire time, job index); a job is due at nominal + its offset.
    let mut heap = BinaryHeap::new();
    let now = rt.clock.now();
    for (i, job) in jobs.iter().enumerate() {
        if let Some(first) = first_fire(&rt, job, now) {
            heap.push(Reverse((first, i)));
        }
    }
    tracing::info!(jobs = heap.len(), "scheduler started");

    loop {
        let now = rt.clock.now();
        while let Some(&Reverse((nominal, i))) = heap.peek() {
            if add(nominal, offsets[i]) > now {
                break;
            }
            heap.pop();
            let job = &jobs[i];
            // Coalescing is judged on nominal times: a passive job handled `grace`
            // after its fire still expects the pings of the fires within that grace.
            let lag = (now - add(nominal, offsets[i])).max(chrono::Duration::zero());
            let next = next_fire(job, nominal, nominal + lag);
            if let Some(next) = next {
                heap.push(Reverse((next, i)));
            }
            let next_run = next.map(|n| add(n, offsets[i]));
            if job.check.is_active() {
                fire(&rt, job, &running[i], next_run, &shutdown, &tracker);
            } else {
                let (rt, job) = (rt.clone(), job.clone());
                tracker.spawn(async move {
                    let result =
                        crate::runner::evaluate_heartbeat(&rt, &job, nominal, next_run).await;
                    if let Err(e) = result {
                        tracing::error!(job = %job.name, "heartbeat could not be recorded: {e:#}");
                    }
                });
            }
        }
        let wait = heap
            .peek()
            .map(|Reverse((nominal, i))| {
                (add(*nominal, offsets[*i]) - now)
                    .to_std()
                    .unwrap_or_default()
            })
            .unwrap_or(CLOCK_CHECK)
            .min(CLOCK_CHECK);
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!("scheduler stopped");
}

fn fire(
    rt: &Arc<Runtime>,
    job: &Arc<Job>,
    running: &Arc<AtomicU32>,
    next_run: Option<DateTime<Utc>>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) {
    let already = running.load(Ordering::Acquire);
    if already >= job.max_instances {
        let now = rt.clock.now();
        let why = format!("max_instances reached: {already} run(s) still going");
        tracing::warn!(job = %job.name, "fire skipped: {why}");
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
        };
        if let Err(e) = rt.store.record_skip(&record) {
            tracing::error!(job = %job.name, %e, "cannot record a skipped fire");
        }
        return;
    }
    running.fetch_add(1, Ordering::AcqRel);
    let rt = rt.clone();
    let job = job.clone();
    let running = running.clone();
    let stop = shutdown.child_token();
    tracker.spawn(async move {
        let permit = tokio::select! {
            permit = rt.permits.clone().acquire_owned() => permit.ok(),
            () = stop.cancelled() => None,
        };
        if permit.is_some()
            && let Err(e) = crate::runner::run_job(&rt, &job, &job.retry, next_run, &stop).await
        {
            tracing::error!(job = %job.name, "run could not be recorded: {e:#}");
        }
        running.fetch_sub(1, Ordering::AcqRel);
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn job(trigger: Trigger, jitter: Option<Duration>) -> Job {
        let config = crate::config::tests_support::minimal_job();
        Job {
            trigger,
            jitter,
            ..config
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + s, 0).unwrap()
    }

    #[test]
    fn every_keeps_its_phase_and_coalesces_missed_fires() {
        let j = job(Trigger::Every(Duration::from_secs(10)), None);
        assert_eq!(next_fire(&j, t(0), t(0)), Some(t(10)));
        assert_eq!(next_fire(&j, t(0), t(3)), Some(t(10)));
        // Handled 35 s late: the fires at 10, 20, 30 collapse into this one.
        assert_eq!(next_fire(&j, t(0), t(35)), Some(t(40)));
        assert_eq!(next_fire(&j, t(0), t(40)), Some(t(50)));
    }

    #[test]
    fn jitter_is_stable_and_bounded() {
        let jitter = Duration::from_secs(30);
        let a = jitter_offset(&job(Trigger::Every(Duration::from_secs(60)), Some(jitter)));
        let b = jitter_offset(&job(Trigger::Every(Duration::from_secs(60)), Some(jitter)));
        assert_eq!(a, b);
        assert!(a < jitter);
        assert_eq!(
            jitter_offset(&job(Trigger::Every(Duration::from_secs(60)), None)),
            Duration::ZERO
        );
    }
}
