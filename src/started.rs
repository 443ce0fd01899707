//! Runs of passive jobs begun with `/ping/JOB/start` (the listener): when each began, so
//! that its success ping is judged against the job's `max_duration`, and, for a job with
//! one, a timer that records a warning while the run is still going once
//! `max_duration` has passed without the ping. Held in memory by the listener: a
//! restart forgets runs begun before it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::Job;
use crate::runner::Subject;
use crate::runtime::Runtime;

/// The runs begun and not yet ended, by job.
#[derive(Debug, Default)]
pub struct Started {
    runs: Mutex<HashMap<String, Begun>>,
    next: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Begun {
    /// Tells a later `/start` of the same job from this one.
    id: u64,
    at: DateTime<Utc>,
}

impl Started {
    /// A run of `job` begins now (a later `/start` replaces an earlier one). With
    /// `max_duration`, a warning is recorded when it passes before [`Started::end`].
    pub fn begin(self: &Arc<Self>, rt: &Arc<Runtime>, job: &Job) {
        let at = rt.clock.now();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(job.name.clone(), Begun { id, at });
        let Some(max) = job.max_duration else {
            return;
        };
        let (this, rt, job) = (self.clone(), rt.clone(), job.clone());
        tokio::spawn(async move {
            tokio::time::sleep(max).await;
            let current = this.lock().get(&job.name).is_some_and(|b| b.id == id);
            if current && let Err(e) = overdue(&rt, &job, at, max).await {
                tracing::error!(job = %job.name, "cannot record the overdue run: {e:#}");
            }
        });
    }

    /// Ends the run of `job` begun last, if one is going: when it began.
    pub fn end(&self, job: &str) -> Option<DateTime<Utc>> {
        self.lock().remove(job).map(|b| b.at)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Begun>> {
        // A panic while holding the lock leaves the map whole: go on with it.
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Records that `job`'s run begun `at` is still going after `max`: a warning run, whose
/// messages the agent's outbox sends.
async fn overdue(
    rt: &Arc<Runtime>,
    job: &Job,
    at: DateTime<Utc>,
    max: Duration,
) -> anyhow::Result<()> {
    let next_run = job.trigger.next_after(rt.clock.now());
    crate::runner::record_still_running(rt, &Subject::from(job), at, max, 1, next_run).await?;
    Ok(())
}
