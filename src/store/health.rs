//! The store's side of `/healthz` ([`crate::liveness`]): a small write that proves the
//! database takes writes, and how long the oldest due message has waited.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{TransactionBehavior, params};

use super::{Store, StoreError, lock, ms};

impl Store {
    /// Writes the probe's time and returns for how long the oldest message that is due
    /// has been due (`None` when none is). Only the first undelivered message of each
    /// job and notifier counts: the ones behind it wait for it by design.
    pub fn probe(&self, now: DateTime<Utc>) -> Result<Option<Duration>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO agent (key, value) VALUES ('probed_at', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![ms(now)],
        )?;
        tx.commit()?;
        let oldest: Option<i64> = conn
            .prepare_cached(
                "SELECT min(o.next_attempt_at) FROM outbox o
                 JOIN (SELECT min(id) AS id FROM outbox
                       WHERE delivered_at IS NULL AND gave_up_at IS NULL
                       GROUP BY notifier, job) head ON o.id = head.id
                 WHERE o.next_attempt_at <= ?1",
            )?
            .query_row(params![ms(now)], |r| r.get(0))?;
        Ok(oldest.map(|at| Duration::from_millis(u64::try_from(ms(now) - at).unwrap_or(0))))
    }

    /// Why the last commit of runs failed, if no commit succeeded since.
    pub fn write_error(&self) -> Option<String> {
        lock(&self.write_error).clone()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use klaxon_notifiers::Event;

    use super::*;
    use crate::alert::JobState;
    use crate::store::tests::{alert, run, t};
    use crate::store::{Mark, NewMessage};

    #[test]
    fn the_probe_writes_and_measures_only_the_heads_that_are_due() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.probe(t(0)).unwrap(), None);
        let message = || NewMessage {
            notifier: "hook".into(),
            alert: alert(Event::Failure),
        };
        let first = store
            .record_run(&run("api", 0, "critical"), |_| {
                (JobState::default(), vec![message()])
            })
            .unwrap();
        let due_since = first[0].next_attempt_at;
        let overdue = store
            .probe(due_since + chrono::Duration::seconds(600))
            .unwrap();
        assert_eq!(overdue, Some(Duration::from_secs(600)));
        // Its retry is later, and the message queued behind it waits for it: nothing is
        // overdue, however old the second one is.
        store
            .mark(&[Mark::Failed {
                id: first[0].id,
                error: "HTTP 500".into(),
                next_attempt_at: t(10_000),
            }])
            .unwrap();
        store
            .record_run(&run("api", 1, "critical"), |_| {
                (JobState::default(), vec![message()])
            })
            .unwrap();
        assert_eq!(store.probe(t(5_000)).unwrap(), None);
        assert_eq!(store.write_error(), None);
    }
}
