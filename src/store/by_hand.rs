//! The outbox as a person handles it (`klaxon outbox`): every undelivered message,
//! pending or given up, and sending one again or dropping it by hand. Each retry or drop
//! is written to the job's history (a row of severity `outbox`) in the same transaction.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::{RunRecord, Store, StoreError, from_ms, insert_run, ms};

/// An undelivered message as `klaxon outbox` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldMessage {
    pub id: i64,
    pub job: String,
    pub notifier: String,
    pub event: String,
    pub created_at: DateTime<Utc>,
    /// Delivery tries so far.
    pub tries: u32,
    pub next_attempt_at: DateTime<Utc>,
    /// When delivery was given up (refused for good, or a day of failures).
    pub gave_up_at: Option<DateTime<Utc>>,
    /// The last try's error, as the notifier worded it (without its URL or password).
    pub last_error: Option<String>,
}

/// Which undelivered messages an action applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    One(i64),
    All,
}

impl Store {
    /// Every undelivered message, pending or given up, oldest first.
    pub fn held(&self) -> Result<Vec<HeldMessage>, StoreError> {
        held_in(&self.conn(), Held::All)
    }

    /// Makes the chosen undelivered messages due at `now` again, their tries reset and
    /// their day of retries counted from `now`, and has the agent read the outbox.
    /// Returns them as they were before.
    pub fn retry_held(
        &self,
        which: Held,
        now: DateTime<Utc>,
    ) -> Result<Vec<HeldMessage>, StoreError> {
        let retried = self.by_hand(which, now, "sent again", |conn, id| {
            conn.prepare_cached(
                "UPDATE outbox SET attempts = 0, gave_up_at = NULL, next_attempt_at = ?2,
                        created_at = ?2
                 WHERE id = ?1",
            )?
            .execute(params![id, ms(now)])
        })?;
        if !retried.is_empty() && self.listens() {
            // The agent's own retry (the dashboard's): its loop must read them now.
            self.ring_for_a_read();
        }
        Ok(retried)
    }

    /// Removes the chosen undelivered messages from the outbox. Returns them.
    pub fn drop_held(
        &self,
        which: Held,
        now: DateTime<Utc>,
    ) -> Result<Vec<HeldMessage>, StoreError> {
        self.by_hand(which, now, "dropped", |conn, id| {
            conn.prepare_cached("DELETE FROM outbox WHERE id = ?1")?
                .execute(params![id])
        })
    }

    /// Applies `change` to each chosen message and writes `done` to its job's history,
    /// all in one transaction.
    fn by_hand(
        &self,
        which: Held,
        now: DateTime<Utc>,
        done: &str,
        change: impl Fn(&Connection, i64) -> rusqlite::Result<usize>,
    ) -> Result<Vec<HeldMessage>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let messages = held_in(&tx, which)?;
        for m in &messages {
            change(&tx, m.id)?;
            insert_run(&tx, &history_row(m, done, now), None)?;
        }
        tx.commit()?;
        drop(conn);
        self.committed();
        Ok(messages)
    }
}

/// The history entry of a message handled by hand: `message 3 to `hook` (failure)
/// dropped by hand after 1 try; it was given up: HTTP 400 Bad Request`.
fn history_row(m: &HeldMessage, done: &str, now: DateTime<Utc>) -> RunRecord {
    let tries = match m.tries {
        1 => "1 try".to_owned(),
        n => format!("{n} tries"),
    };
    let state = if m.gave_up_at.is_some() {
        "it was given up"
    } else {
        "it was pending"
    };
    let mut summary = format!(
        "message {} to `{}` ({}) {done} by hand after {tries}; {state}",
        m.id, m.notifier, m.event
    );
    if let Some(error) = &m.last_error {
        summary.push_str(": ");
        summary.push_str(error);
    }
    RunRecord {
        job: m.job.clone(),
        started_at: now,
        finished_at: now,
        severity: "outbox".into(),
        attempts: 0,
        elapsed: std::time::Duration::ZERO,
        summary,
        output: None,
        skipped: None,
        metrics: Vec::new(),
        fire_at: None,
        silenced: None,
    }
}

fn held_in(conn: &Connection, which: Held) -> Result<Vec<HeldMessage>, StoreError> {
    let id = match which {
        Held::One(id) => Some(id),
        Held::All => None,
    };
    let mut stmt = conn.prepare_cached(
        "SELECT id, job, notifier, event, created_at, attempts, next_attempt_at, gave_up_at, last_error
         FROM outbox WHERE delivered_at IS NULL AND (?1 IS NULL OR id = ?1) ORDER BY id",
    )?;
    let rows = stmt.query_map(params![id], |r| {
        Ok(HeldMessage {
            id: r.get(0)?,
            job: r.get(1)?,
            notifier: r.get(2)?,
            event: r.get(3)?,
            created_at: from_ms(r.get(4)?),
            tries: r.get(5)?,
            next_attempt_at: from_ms(r.get(6)?),
            gave_up_at: r.get::<_, Option<i64>>(7)?.map(from_ms),
            last_error: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::Mark;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    /// A store with one message to `hook` from job `api`, enqueued at `t(100)`.
    fn one_message() -> (Store, i64) {
        let store = Store::open_in_memory().unwrap();
        let id = {
            let conn = store.conn();
            conn.execute(
                "INSERT INTO outbox (alert_id, job, notifier, event, payload, created_at, next_attempt_at)
                 VALUES ('a1', 'api', 'hook', 'failure', '{}', ?1, ?1)",
                params![ms(t(100))],
            )
            .unwrap();
            conn.last_insert_rowid()
        };
        (store, id)
    }

    #[test]
    fn a_given_up_message_sent_again_is_due_now_with_its_tries_reset() {
        let (store, id) = one_message();
        store
            .mark(&[Mark::GaveUp {
                id,
                error: "HTTP 400 Bad Request".into(),
                at: t(110),
            }])
            .unwrap();
        assert_eq!(store.undelivered().unwrap()["api"], (0, 1));
        let held = store.held().unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].tries, 1);
        assert_eq!(held[0].gave_up_at, Some(t(110)));

        let retried = store.retry_held(Held::One(id), t(200)).unwrap();
        assert_eq!(retried, held);
        assert_eq!(store.undelivered().unwrap()["api"], (1, 0));
        let now = &store.held().unwrap()[0];
        assert_eq!((now.tries, now.gave_up_at), (0, None));
        assert_eq!((now.next_attempt_at, now.created_at), (t(200), t(200)));
        let history = store.history("api", 10).unwrap();
        assert_eq!(history[0].severity, "outbox");
        assert_eq!(
            history[0].summary,
            format!(
                "message {id} to `hook` (failure) sent again by hand after 1 try; it was given up: HTTP 400 Bad Request"
            )
        );
    }

    #[test]
    fn a_dropped_message_leaves_the_outbox_and_the_counts() {
        let (store, id) = one_message();
        assert_eq!(store.retry_held(Held::One(id + 1), t(200)).unwrap(), []);
        let dropped = store.drop_held(Held::All, t(200)).unwrap();
        assert_eq!(dropped.len(), 1);
        assert!(store.held().unwrap().is_empty());
        assert!(store.pending().unwrap().is_empty());
        assert!(store.undelivered().unwrap().is_empty());
        let history = store.history("api", 10).unwrap();
        assert_eq!(
            history[0].summary,
            format!(
                "message {id} to `hook` (failure) dropped by hand after 0 tries; it was pending"
            )
        );
    }
}
