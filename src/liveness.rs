//! Whether the agent is doing its work, for the listener's `/healthz`: the scheduler
//! loop turns, the state store can be written and answers, and no message waits past
//! its time.
//!
//! - The scheduler loop stamps a [`Liveness`] at the top of every turn. It wakes at least
//!   every [`CLOCK_CHECK`] to re-read the wall clock, so a stamp older than
//!   [`STALLED_AFTER`] (three of those) means the loop is stuck (a dispatch that blocks, a
//!   dead task).
//! - [`probe`] writes to the store every [`PROBE_EVERY`] on the store's threads and reads
//!   the oldest message that is due. A probe not back after [`STUCK_AFTER`] means the
//!   store or its threads are stuck; a probe that failed, or a run's commit that
//!   failed since the last good commit, means the state cannot be written; a message due
//!   for more than [`OVERDUE_AFTER`] means delivery is stuck.
//!
//! Ages are measured on the monotonic clock, which stands still while the machine
//! sleeps: a laptop that wakes after a night is not "stalled".

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::scheduler::CLOCK_CHECK;
use crate::store::Store;

/// How long without a turn of the scheduler loop makes the agent unhealthy.
pub const STALLED_AFTER: Duration = Duration::from_secs(3 * CLOCK_CHECK.as_secs());

/// How often the store is probed: as often as the scheduler re-reads the clock, so an
/// idle agent wakes no more often for it (and writes one small row each time).
pub const PROBE_EVERY: Duration = CLOCK_CHECK;

/// How long a probe may take before the store (or its threads) counts as stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(60);

/// How long a message may stay due and unsent before delivery counts as stuck.
pub const OVERDUE_AFTER: Duration = Duration::from_secs(300);

/// The time of the scheduler loop's last turn, and what the last store probe found.
#[derive(Debug)]
pub struct Liveness {
    origin: Instant,
    /// Milliseconds from `origin` to the last turn.
    last: AtomicU64,
    /// Milliseconds from `origin` to the start of the probe under way, plus one (0: none).
    probing: AtomicU64,
    /// What the last probe that came back found.
    found: Mutex<Probed>,
    /// Rung when a probe comes back (for [`Liveness::probed`]).
    probed: tokio::sync::Notify,
    /// Like `probing`, for the no-op sent through the checks' blocking pool.
    pool_probing: AtomicU64,
}

#[derive(Debug, Default, Clone)]
struct Probed {
    /// Why the store could not be written, if it could not.
    error: Option<String>,
    /// For how long the oldest due message has been due.
    overdue: Option<Duration>,
}

/// What `/healthz` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Alive,
    /// What is wrong, one reason each.
    Unwell(Vec<String>),
}

impl Default for Liveness {
    fn default() -> Self {
        Self::new()
    }
}

impl Liveness {
    /// A stamp taken now: a loop that is about to start counts as alive.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            last: AtomicU64::new(0),
            probing: AtomicU64::new(0),
            found: Mutex::default(),
            probed: tokio::sync::Notify::new(),
            pool_probing: AtomicU64::new(0),
        }
    }

    /// Waits until a probe comes back (one that came back since the last call counts).
    pub async fn probed(&self) {
        self.probed.notified().await;
    }

    /// Called by the scheduler loop on each turn.
    pub fn beat(&self) {
        self.beat_at(Instant::now());
    }

    fn beat_at(&self, at: Instant) {
        self.last.store(self.ms(at), Ordering::Relaxed);
    }

    fn ms(&self, at: Instant) -> u64 {
        let ms = at.saturating_duration_since(self.origin).as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX)
    }

    /// How long the probe stamped in `stamp` (ms from `origin` plus one; 0: none under
    /// way) has been out at `now`, when that is more than [`STUCK_AFTER`].
    fn stuck(&self, stamp: &AtomicU64, now: Instant) -> Option<Duration> {
        let at = stamp.load(Ordering::Relaxed).checked_sub(1)?;
        let waited = now.saturating_duration_since(self.origin + Duration::from_millis(at));
        (waited > STUCK_AFTER).then_some(waited)
    }

    fn stamp(&self, stamp: &AtomicU64, at: Instant) {
        stamp.store(self.ms(at) + 1, Ordering::Relaxed);
    }

    fn probe_started(&self, at: Instant) {
        self.stamp(&self.probing, at);
    }

    fn probe_ended(&self, found: Probed) {
        self.probing.store(0, Ordering::Relaxed);
        *self.found.lock().unwrap_or_else(|p| p.into_inner()) = found;
        self.probed.notify_one();
    }

    /// Why the state cannot be written, as the last probe found (a probe's write or a
    /// run's commit failed), if it cannot.
    pub fn store_error(&self) -> Option<String> {
        self.found
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .error
            .clone()
    }

    /// How long since this stamp was made (at the agent's start): its uptime.
    pub fn uptime(&self) -> Duration {
        self.origin.elapsed()
    }

    pub fn health(&self) -> Health {
        self.health_at(Instant::now())
    }

    fn health_at(&self, now: Instant) -> Health {
        let mut reasons = Vec::new();
        let last = self.origin + Duration::from_millis(self.last.load(Ordering::Relaxed));
        let age = now.saturating_duration_since(last);
        if age > STALLED_AFTER {
            reasons.push(format!(
                "stalled: the scheduler loop has not turned for {}",
                whole_seconds(age)
            ));
        }
        if let Some(waited) = self.stuck(&self.probing, now) {
            reasons.push(format!(
                "stuck: the state store has not answered for {} (a write or the store's threads are stuck)",
                whole_seconds(waited)
            ));
        }
        if let Some(waited) = self.stuck(&self.pool_probing, now) {
            reasons.push(format!(
                "stalled: all {} threads of the checks' blocking pool have been busy for {} (checks stuck in statfs, DNS or process sampling)",
                klaxon_checks::blocking::CHECK_THREADS,
                whole_seconds(waited)
            ));
        }
        let found = self.found.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(error) = found.error {
            reasons.push(format!("cannot write its state: {error}"));
        }
        if let Some(overdue) = found.overdue.filter(|d| *d > OVERDUE_AFTER) {
            reasons.push(format!(
                "delivery is stuck: a message has been due for {} and is not sent",
                whole_seconds(overdue)
            ));
        }
        if reasons.is_empty() {
            Health::Alive
        } else {
            Health::Unwell(reasons)
        }
    }
}

fn whole_seconds(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_secs(d.as_secs()))
}

/// Sends a no-op through the checks' blocking pool every [`PROBE_EVERY`] until `stop`:
/// one that waits more than [`STUCK_AFTER`] for a thread means every thread of the pool
/// is stuck, and no blocking check can run.
pub async fn probe_pool(
    alive: std::sync::Arc<Liveness>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        alive.stamp(&alive.pool_probing, Instant::now());
        tokio::select! {
            () = stop.cancelled() => return,
            _ = klaxon_checks::blocking::CHECKS.run(|| ()) => {}
        }
        alive.pool_probing.store(0, Ordering::Relaxed);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
}

/// Probes `store` every [`PROBE_EVERY`] until `stop`, on the store's threads, and keeps
/// what it finds in `alive`. A probe still under way is waited for, never doubled.
pub async fn probe(
    store: Store,
    alive: std::sync::Arc<Liveness>,
    clock: std::sync::Arc<dyn crate::runtime::Clock>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        alive.probe_started(Instant::now());
        let (store2, now) = (store.clone(), clock.now());
        let probed = crate::store::THREADS.run(move || store2.probe(now));
        let found = tokio::select! {
            () = stop.cancelled() => return,
            probed = probed => match probed {
                Ok(Ok(overdue)) => Probed {
                    error: store.write_error(),
                    overdue,
                },
                Ok(Err(e)) => Probed {
                    error: Some(e.to_string()),
                    overdue: None,
                },
                Err(e) => Probed {
                    error: Some(format!("the probe failed: {e}")),
                    overdue: None,
                },
            },
        };
        alive.probe_ended(found);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_turned_recently_is_alive_and_one_that_did_not_is_stalled() {
        let alive = Liveness::new();
        let start = alive.origin;
        assert_eq!(alive.health_at(start), Health::Alive);
        // Its longest sleep, and then some, is still fine.
        assert_eq!(alive.health_at(start + STALLED_AFTER), Health::Alive);
        let late = start + STALLED_AFTER + Duration::from_secs(5);
        assert_eq!(
            alive.health_at(late),
            Health::Unwell(vec![
                "stalled: the scheduler loop has not turned for 1m 35s".into()
            ])
        );
        // A turn brings it back.
        alive.beat_at(late);
        assert_eq!(alive.health_at(late + CLOCK_CHECK), Health::Alive);
    }

    #[test]
    fn a_store_that_does_not_answer_fails_or_lets_messages_wait_is_named() {
        let alive = Liveness::new();
        let start = alive.origin;
        alive.probe_started(start);
        assert_eq!(alive.health_at(start + STUCK_AFTER), Health::Alive);
        assert_eq!(
            alive.health_at(start + STUCK_AFTER + Duration::from_secs(1)),
            Health::Unwell(vec![
                "stuck: the state store has not answered for 1m 1s (a write or the store's threads are stuck)".into()
            ])
        );
        alive.probe_ended(Probed {
            error: Some("database or disk is full".into()),
            overdue: Some(OVERDUE_AFTER + Duration::from_secs(60)),
        });
        assert_eq!(
            alive.health_at(start + Duration::from_secs(1)),
            Health::Unwell(vec![
                "cannot write its state: database or disk is full".into(),
                "delivery is stuck: a message has been due for 6m and is not sent".into(),
            ])
        );
        // Due, but not for long: a delivery under way.
        alive.probe_ended(Probed {
            error: None,
            overdue: Some(Duration::from_secs(20)),
        });
        assert_eq!(
            alive.health_at(start + Duration::from_secs(1)),
            Health::Alive
        );
    }

    #[test]
    fn a_checks_pool_with_no_free_thread_is_named() {
        let alive = Liveness::new();
        let start = alive.origin;
        alive.stamp(&alive.pool_probing, start);
        assert_eq!(alive.health_at(start + STUCK_AFTER), Health::Alive);
        assert_eq!(
            alive.health_at(start + STUCK_AFTER + Duration::from_secs(9)),
            Health::Unwell(vec![format!(
                "stalled: all {} threads of the checks' blocking pool have been busy for 1m 9s (checks stuck in statfs, DNS or process sampling)",
                klaxon_checks::blocking::CHECK_THREADS
            )])
        );
        alive.pool_probing.store(0, Ordering::Relaxed);
        assert_eq!(
            alive.health_at(start + STUCK_AFTER + Duration::from_secs(10)),
            Health::Alive
        );
    }

    #[test]
    fn the_threshold_is_three_clock_checks() {
        assert_eq!(STALLED_AFTER, Duration::from_secs(90));
    }
}
