//! Retrying a check within one run: a validated policy that yields the delays between
//! tries, and [`run_with_retry`], which lets backon drive the loop.
//!
//! `attempts` counts every try, the first included. The delay before try n+1 is
//! `min(max, initial × multiplier^(n-1))`, spread uniformly by ±`jitter` (a fraction).

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::Retryable;
use tokio_util::sync::CancellationToken;

/// A validated retry policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    attempts: u32,
    initial: Duration,
    max: Duration,
    multiplier: f64,
    jitter: f64,
}

impl RetryPolicy {
    /// Rejects policies that make no sense; the error names the offending key.
    pub fn try_new(
        attempts: u32,
        initial: Duration,
        max: Duration,
        multiplier: f64,
        jitter: f64,
    ) -> Result<Self, String> {
        if attempts == 0 {
            return Err("`attempts` counts the first try too and must be at least 1".into());
        }
        if !(multiplier.is_finite() && multiplier >= 1.0) {
            return Err(format!(
                "`multiplier` must be at least 1.0, found `{multiplier}`"
            ));
        }
        if !(jitter.is_finite() && (0.0..=1.0).contains(&jitter)) {
            return Err(format!(
                "`jitter` is a fraction from 0.0 to 1.0, found `{jitter}`"
            ));
        }
        if max < initial {
            return Err(format!(
                "`max` ({}) is shorter than `initial` ({})",
                humantime::format_duration(max),
                humantime::format_duration(initial)
            ));
        }
        Ok(Self {
            attempts,
            initial,
            max,
            multiplier,
            jitter,
        })
    }

    /// One try, no retry (`klaxon once --no-retry`).
    pub fn single() -> Self {
        Self {
            attempts: 1,
            initial: Duration::ZERO,
            max: Duration::ZERO,
            multiplier: 1.0,
            jitter: 0.0,
        }
    }

    /// The same policy with another number of tries (`klaxon exec --retries`).
    pub fn with_attempts(&self, attempts: u32) -> Result<Self, String> {
        Self::try_new(
            attempts,
            self.initial,
            self.max,
            self.multiplier,
            self.jitter,
        )
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The delay before try `n + 1` (n ≥ 1) without jitter.
    pub fn base_delay(&self, n: u32) -> Duration {
        let factor = self
            .multiplier
            .powi(n.saturating_sub(1).min(i32::MAX as u32) as i32);
        let secs = self.initial.as_secs_f64() * factor;
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// The delays between tries: `attempts - 1` of them, jittered.
    pub fn delays(&self) -> Delays {
        Delays {
            policy: self.clone(),
            n: 0,
        }
    }
}

/// Iterator over the jittered delays of a [`RetryPolicy`]; a backon backoff.
#[derive(Debug, Clone)]
pub struct Delays {
    policy: RetryPolicy,
    n: u32,
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.n + 1 >= self.policy.attempts {
            return None;
        }
        self.n += 1;
        let base = self.policy.base_delay(self.n);
        if self.policy.jitter == 0.0 {
            return Some(base);
        }
        let spread = (fastrand::f64() * 2.0 - 1.0) * self.policy.jitter;
        Some(Duration::from_secs_f64(
            (base.as_secs_f64() * (1.0 + spread)).max(0.0),
        ))
    }
}

/// Runs `attempt` until it returns `Ok` or the policy is spent, or `stop` is cancelled.
/// Returns the last result and how many tries were made.
///
/// A try in progress when `stop` fires runs to its end; a delay between tries is cut
/// short and no further try starts, so a shutdown never waits out a long backoff and
/// the run still ends with a real result.
pub async fn run_with_retry<T, F, Fut>(
    policy: &RetryPolicy,
    mut attempt: F,
    stop: &CancellationToken,
) -> (Result<T, T>, u32)
where
    T: Clone,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, T>>,
{
    let tries = Arc::new(AtomicU32::new(0));
    let last: Arc<Mutex<Option<T>>> = Arc::default();
    let (counted, remembered) = (tries.clone(), last.clone());
    let (try_stop, sleep_stop) = (stop.clone(), stop.clone());
    let result = (move || {
        let previous = if try_stop.is_cancelled() {
            remembered.lock().unwrap_or_else(|p| p.into_inner()).take()
        } else {
            None
        };
        let next = previous.is_none().then(|| {
            counted.fetch_add(1, Ordering::Relaxed);
            attempt()
        });
        let remembered = remembered.clone();
        async move {
            match (next, previous) {
                (Some(fut), _) => {
                    let result = fut.await;
                    if let Err(e) = &result {
                        *remembered.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                    }
                    result
                }
                (None, Some(previous)) => Err(previous),
                (None, None) => unreachable!("a try either runs or returns the previous one"),
            }
        }
    })
    .retry(policy.delays())
    .sleep(move |delay| {
        let stop = sleep_stop.clone();
        async move {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stop.cancelled() => {}
            }
        }
    })
    .when(|_| !stop.is_cancelled())
    .await;
    (result, tries.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn policy(attempts: u32, jitter: f64) -> RetryPolicy {
        RetryPolicy::try_new(
            attempts,
            Duration::from_secs(2),
            Duration::from_secs(60),
            2.0,
            jitter,
        )
        .unwrap()
    }

    #[test]
    fn delays_grow_and_cap() {
        let d: Vec<_> = policy(8, 0.0).delays().map(|d| d.as_secs()).collect();
        assert_eq!(d, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(policy(1, 0.0).delays().count(), 0);
    }

    #[test]
    fn jitter_stays_within_its_band() {
        for _ in 0..200 {
            for (i, d) in policy(6, 0.2).delays().enumerate() {
                let base = policy(6, 0.0).base_delay(i as u32 + 1).as_secs_f64();
                let got = d.as_secs_f64();
                assert!(
                    got >= base * 0.8 - 1e-9 && got <= base * 1.2 + 1e-9,
                    "{got} vs {base}"
                );
            }
        }
    }

    #[test]
    fn huge_exponents_saturate_at_max() {
        let p = RetryPolicy::try_new(
            u32::MAX,
            Duration::from_secs(1),
            Duration::from_secs(3600),
            10.0,
            0.0,
        )
        .unwrap();
        assert_eq!(p.base_delay(u32::MAX), Duration::from_secs(3600));
        assert_eq!(p.base_delay(1_000), Duration::from_secs(3600));
    }

    #[test]
    fn rejects_nonsense() {
        let s = Duration::from_secs(1);
        assert!(
            RetryPolicy::try_new(0, s, s, 2.0, 0.0)
                .unwrap_err()
                .contains("`attempts`")
        );
        assert!(
            RetryPolicy::try_new(1, s, s, 0.5, 0.0)
                .unwrap_err()
                .contains("`multiplier`")
        );
        assert!(RetryPolicy::try_new(1, s, s, f64::NAN, 0.0).is_err());
        assert!(
            RetryPolicy::try_new(1, s, s, 2.0, 1.5)
                .unwrap_err()
                .contains("`jitter`")
        );
        assert!(
            RetryPolicy::try_new(1, s * 2, s, 2.0, 0.0)
                .unwrap_err()
                .contains("shorter than")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_ok_and_counts_tries() {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let start = tokio::time::Instant::now();
        let (result, tries) = run_with_retry(
            &policy(5, 0.0),
            move || {
                let n = c.fetch_add(1, Ordering::Relaxed) + 1;
                async move { if n < 3 { Err(n) } else { Ok(n) } }
            },
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(result, Ok(3));
        assert_eq!(tries, 3);
        // Slept 2 s then 4 s on paused time.
        assert_eq!(start.elapsed(), Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_the_last_failure_when_spent() {
        let never = CancellationToken::new();
        let (result, tries) =
            run_with_retry(&policy(3, 0.0), || async { Err::<u32, u32>(7) }, &never).await;
        assert_eq!((result, tries), (Err(7), 3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_during_a_delay_ends_the_run_with_the_last_result() {
        let stop = CancellationToken::new();
        let trigger = stop.clone();
        // The first try fails at once; the stop comes 1 s into the 2 s delay.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            trigger.cancel();
        });
        let start = tokio::time::Instant::now();
        let mut n = 0;
        let (result, tries) = run_with_retry(
            &policy(5, 0.0),
            || {
                n += 1;
                let n = n;
                async move { Err::<u32, u32>(n) }
            },
            &stop,
        )
        .await;
        assert_eq!((result, tries), (Err(1), 1));
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_during_a_try_lets_it_finish_and_stops_there() {
        let stop = CancellationToken::new();
        let trigger = stop.clone();
        let (result, tries) = run_with_retry(
            &policy(5, 0.0),
            || {
                let trigger = trigger.clone();
                async move {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    trigger.cancel();
                    Err::<u32, u32>(9)
                }
            },
            &stop,
        )
        .await;
        assert_eq!((result, tries), (Err(9), 1));
    }
}
