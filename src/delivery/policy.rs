//! What to do after one delivery try, decided from facts alone: no clock, no store, no
//! notifier. The delivery loop ([`super::settle`]) carries the decision out (marks,
//! metrics, logs, the fallback copy).
//!
//! - Taken (2xx, SMTP accepted): delivered.
//! - Refused for good (a 4xx other than 408 and 429): given up now, and the fallback
//!   gets a copy.
//! - Failed and worth another try: tried again after the receiver's `Retry-After`, or
//!   else after [`backoff`]; once the message is [`GIVE_UP_AFTER`] old it is given up
//!   instead, and once it is `fallback_after` old the fallback gets a copy too.

use std::time::Duration;

/// How long a message is retried before it is given up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Backoff between delivery tries of one message: 5 s doubling to 10 min.
pub fn backoff(attempts: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << attempts.min(16));
    Duration::from_secs(secs.min(600))
}

/// How a try went, as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tried {
    Taken,
    /// Worth another try; `after` is the receiver's `Retry-After`, if it gave one.
    Failed {
        after: Option<Duration>,
    },
    Refused,
}

/// What is known of the message when its try landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// Since the message was enqueued.
    pub age: Duration,
    /// Tries made before this one.
    pub attempts: u32,
    /// The notifier's `fallback_after`.
    pub fallback_after: Duration,
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Delivered,
    /// Try again after `wait`; `fallback`: copy it to the notifier's fallback now.
    Retry {
        wait: Duration,
        fallback: bool,
    },
    /// Not tried again; it goes to the fallback.
    GiveUp(Why),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The receiver refused it.
    Refused,
    /// Failing for [`GIVE_UP_AFTER`].
    TooOld,
}

pub fn decide(tried: Tried, facts: Facts) -> Decision {
    match tried {
        Tried::Taken => Decision::Delivered,
        Tried::Refused => Decision::GiveUp(Why::Refused),
        Tried::Failed { .. } if facts.age >= GIVE_UP_AFTER => Decision::GiveUp(Why::TooOld),
        Tried::Failed { after } => Decision::Retry {
            wait: after.unwrap_or_else(|| backoff(facts.attempts)),
            fallback: facts.age >= facts.fallback_after,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn facts(age: Duration, attempts: u32) -> Facts {
        Facts {
            age,
            attempts,
            fallback_after: 10 * MIN,
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let got: Vec<u64> = (0..10).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(got, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
        assert_eq!(backoff(u32::MAX), Duration::from_secs(600));
    }

    #[test]
    fn decisions() {
        let secs = Duration::from_secs;
        let failed = Tried::Failed { after: None };
        let retry = |wait, fallback| Decision::Retry { wait, fallback };
        let table = [
            // (how it went, age, tries before, decision)
            (Tried::Taken, secs(0), 0, Decision::Delivered),
            (Tried::Taken, GIVE_UP_AFTER * 2, 40, Decision::Delivered),
            (Tried::Refused, secs(0), 0, Decision::GiveUp(Why::Refused)),
            (failed, secs(0), 0, retry(secs(5), false)),
            (failed, secs(30), 3, retry(secs(40), false)),
            // The receiver's Retry-After wins over backoff.
            (
                Tried::Failed {
                    after: Some(secs(90)),
                },
                secs(30),
                0,
                retry(secs(90), false),
            ),
            // From `fallback_after` on, each retry also asks for the fallback copy (made once).
            (failed, 10 * MIN - secs(1), 5, retry(secs(160), false)),
            (failed, 10 * MIN, 5, retry(secs(160), true)),
            (failed, GIVE_UP_AFTER - secs(1), 200, retry(secs(600), true)),
            (failed, GIVE_UP_AFTER, 200, Decision::GiveUp(Why::TooOld)),
            (
                Tried::Failed {
                    after: Some(secs(5)),
                },
                GIVE_UP_AFTER,
                0,
                Decision::GiveUp(Why::TooOld),
            ),
        ];
        for (tried, age, attempts, want) in table {
            assert_eq!(
                decide(tried, facts(age, attempts)),
                want,
                "{tried:?} at age {age:?} after {attempts} tries"
            );
        }
    }
}
