//! Whether the scheduler loop is still making progress, for the listener's `/healthz`.
//!
//! The loop stamps a [`Liveness`] at the top of every turn. It wakes at least every
//! [`CLOCK_CHECK`] to re-read the wall clock, so a stamp older than [`STALLED_AFTER`]
//! (three of those) means the loop is stuck (a dispatch that blocks, a dead task).
//! Ages are measured on the monotonic clock, which stands still while the machine
//! sleeps: a laptop that wakes after a night is not "stalled".

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::scheduler::CLOCK_CHECK;

/// How long without a turn of the scheduler loop makes the agent unhealthy.
pub const STALLED_AFTER: Duration = Duration::from_secs(3 * CLOCK_CHECK.as_secs());

/// The time of the scheduler loop's last turn.
#[derive(Debug)]
pub struct Liveness {
    origin: Instant,
    /// Milliseconds from `origin` to the last turn.
    last: AtomicU64,
}

/// What `/healthz` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Alive,
    /// No turn for this long.
    Stalled(Duration),
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
        }
    }

    /// Called by the scheduler loop on each turn.
    pub fn beat(&self) {
        self.beat_at(Instant::now());
    }

    fn beat_at(&self, at: Instant) {
        let ms = at.saturating_duration_since(self.origin).as_millis();
        self.last
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn health(&self) -> Health {
        self.health_at(Instant::now())
    }

    fn health_at(&self, now: Instant) -> Health {
        let last = self.origin + Duration::from_millis(self.last.load(Ordering::Relaxed));
        let age = now.saturating_duration_since(last);
        if age > STALLED_AFTER {
            Health::Stalled(age)
        } else {
            Health::Alive
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
            Health::Stalled(STALLED_AFTER + Duration::from_secs(5))
        );
        // A turn brings it back.
        alive.beat_at(late);
        assert_eq!(alive.health_at(late + CLOCK_CHECK), Health::Alive);
    }

    #[test]
    fn the_threshold_is_three_clock_checks() {
        assert_eq!(STALLED_AFTER, Duration::from_secs(90));
    }
}
