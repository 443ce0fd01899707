//! Retention (`[history]`): what the store forgets, a little at a time.
//!
//! Runs, heartbeat pings and delivered messages older than `keep` are deleted, and each
//! job keeps at most `max_runs` runs and as many pings, the newest. Nothing else is: a
//! message still pending or given up on stays until it is delivered or handled
//! (`klaxon outbox`), and the messages of an alert that is still open stay while it is
//! (Alertmanager re-posting reads the last one).
//!
//! Each [`Store::prune_step`] deletes at most [`BATCH`] rows in one short transaction,
//! so the agent's own commits are never held up by more than one small delete: the
//! caller loops with a pause between steps until a step finds nothing to do.
//!
//! Age is found without an index on time: rows are appended as they happen, so the
//! oldest rows are the first by rowid. A step looks at the first [`BATCH`] rows only and
//! deletes those older than the cut-off; when none of them is, the table is done.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, TransactionBehavior, params};

use super::{Store, StoreError, ms};
use crate::config::Retention;

/// Rows one step deletes at most.
pub const BATCH: usize = 500;

/// What one step deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub runs: usize,
    pub pings: usize,
    pub messages: usize,
}

impl Pruned {
    pub fn total(&self) -> usize {
        self.runs + self.pings + self.messages
    }

    fn add(&mut self, other: Pruned) {
        self.runs += other.runs;
        self.pings += other.pings;
        self.messages += other.messages;
    }
}

/// Where a pass of pruning is: the kinds of work still to look at, in order. A pass
/// made of steps is resumable: each step takes the next piece of work.
#[derive(Debug, Clone)]
pub struct Pass {
    retention: Retention,
    /// Jobs whose `max_runs` is still to be enforced, the next one last.
    jobs: Vec<String>,
    aged_done: bool,
}

impl Pass {
    /// A pass over the whole store, capping the runs and pings of `jobs`.
    pub fn new(retention: Retention, jobs: impl IntoIterator<Item = String>) -> Self {
        let mut jobs: Vec<String> = jobs.into_iter().collect();
        jobs.reverse();
        Self {
            retention,
            jobs,
            aged_done: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.aged_done && self.jobs.is_empty()
    }
}

impl Store {
    /// One step of `pass` at `now`: deletes at most a few [`BATCH`]es of rows, in one
    /// immediate transaction, and moves the pass on when a piece of it is done.
    pub fn prune_step(&self, pass: &mut Pass, now: DateTime<Utc>) -> Result<Pruned, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut pruned = Pruned::default();
        if !pass.aged_done {
            let cutoff =
                ms(now - chrono::Duration::from_std(pass.retention.keep).unwrap_or_default());
            let aged = aged(&tx, cutoff)?;
            if aged.total() == 0 {
                pass.aged_done = true;
            }
            pruned.add(aged);
        } else if let Some(job) = pass.jobs.last() {
            let capped = capped(&tx, job, pass.retention.max_runs)?;
            if capped.runs < BATCH && capped.pings < BATCH {
                pass.jobs.pop();
            }
            pruned.add(capped);
        }
        tx.commit()?;
        drop(conn);
        if pruned.total() > 0 {
            self.committed();
        }
        Ok(pruned)
    }

    /// Runs `pass` to its end (tests and one-shot commands; the agent steps with pauses).
    pub fn prune(&self, mut pass: Pass, now: DateTime<Utc>) -> Result<Pruned, StoreError> {
        let mut total = Pruned::default();
        while !pass.is_done() {
            total.add(self.prune_step(&mut pass, now)?);
        }
        Ok(total)
    }
}

/// Rows older than `cutoff` among the first [`BATCH`] of each table.
fn aged(conn: &Connection, cutoff: i64) -> Result<Pruned, StoreError> {
    let batch = BATCH as i64;
    let [runs, pings] = [("runs", "finished_at"), ("pings", "at")].map(|(table, at)| {
        conn.prepare_cached(&format!(
            "DELETE FROM {table} WHERE rowid IN (
                 SELECT rowid FROM (SELECT rowid, {at} FROM {table} ORDER BY rowid LIMIT ?1)
                 WHERE {at} < ?2)"
        ))?
        .execute(params![batch, cutoff])
    });
    let (runs, pings) = (runs?, pings?);
    // Messages still pending or given up on, and those of open alerts, are skipped
    // over: they are few, and they are not the store's to forget.
    let open = serde_json::to_string(&open_alerts(conn)?)?;
    let messages = conn
        .prepare_cached(
            "DELETE FROM outbox WHERE id IN (
                 SELECT id FROM (
                     SELECT id, created_at FROM outbox
                     WHERE delivered_at IS NOT NULL
                       AND alert_id NOT IN (SELECT value FROM json_each(?3))
                     ORDER BY id LIMIT ?1)
                 WHERE created_at < ?2)",
        )?
        .execute(params![batch, cutoff, open])?;
    // Silences that ended before the cutoff (few: no batching needed). Not counted:
    // `Pruned` says how much history went.
    conn.prepare_cached("DELETE FROM silences WHERE ends_at < ?1")?
        .execute(params![cutoff])?;
    Ok(Pruned {
        runs,
        pings,
        messages,
    })
}

/// The oldest runs and pings of `job` beyond the newest `max`, at most a [`BATCH`] of
/// each.
fn capped(conn: &Connection, job: &str, max: u32) -> Result<Pruned, StoreError> {
    let batch = BATCH as i64;
    // The index on (job, time) finds the `max`-th newest row; everything before it
    // goes, oldest first.
    let [runs, pings] = [("runs", "started_at"), ("pings", "at")].map(|(table, at)| {
        conn.prepare_cached(&format!(
            "DELETE FROM {table} WHERE rowid IN (
                 SELECT rowid FROM {table} WHERE job = ?1 AND {at} < (
                     SELECT {at} FROM {table} WHERE job = ?1
                     ORDER BY {at} DESC LIMIT 1 OFFSET ?2 - 1)
                 ORDER BY {at} LIMIT ?3)"
        ))?
        .execute(params![job, max, batch])
    });
    let (runs, pings) = (runs?, pings?);
    Ok(Pruned {
        runs,
        pings,
        messages: 0,
    })
}

/// The ids of alerts open now (their messages are kept).
fn open_alerts(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT state FROM job_state")?;
    let states = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut open = Vec::new();
    for state in states {
        let state: crate::alert::JobState = serde_json::from_str(&state?)?;
        if let Some(alert) = state.open {
            open.push(alert.id);
        }
    }
    Ok(open)
}

/// How long after the agent starts its first pass runs, and the time between passes.
pub const FIRST_PASS: std::time::Duration = std::time::Duration::from_secs(10);
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// The pause between two steps, so the agent's commits get the database in between.
const PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// The agent's pruning: a pass [`FIRST_PASS`] after start and every [`EVERY`] after,
/// capping the runs of `jobs`, until `stop`. Steps run on the store's threads with a
/// pause between them.
pub async fn keep_pruning(
    store: Store,
    retention: Retention,
    jobs: Vec<String>,
    clock: std::sync::Arc<dyn crate::runtime::Clock>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut wait = FIRST_PASS;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = EVERY;
        let mut pass = Pass::new(retention, jobs.iter().cloned());
        let mut total = Pruned::default();
        let (mut steps, mut longest) = (0u32, std::time::Duration::ZERO);
        let began = std::time::Instant::now();
        while !pass.is_done() && !stop.is_cancelled() {
            let (store, mut step, now) = (store.clone(), pass.clone(), clock.now());
            let done = super::THREADS
                .run(move || {
                    let started = std::time::Instant::now();
                    let pruned = store.prune_step(&mut step, now);
                    (step, pruned, started.elapsed())
                })
                .await;
            match done {
                Ok((step, Ok(pruned), took)) => {
                    pass = step;
                    total.add(pruned);
                    steps += 1;
                    longest = longest.max(took);
                }
                Ok((_, Err(e), _)) => {
                    tracing::warn!(%e, "pruning the history failed; trying again at the next pass");
                    break;
                }
                Err(_) => break,
            }
            tokio::time::sleep(PAUSE).await;
        }
        if total.total() > 0 {
            tracing::info!(
                runs = total.runs,
                pings = total.pings,
                messages = total.messages,
                steps,
                longest_step_ms = longest.as_millis() as u64,
                pass_ms = began.elapsed().as_millis() as u64,
                "pruned the history (older than `history.keep` or beyond `history.max_runs`)"
            );
        }
    }
}

/// How long a one-shot command spends pruning at most.
pub const ONE_SHOT: std::time::Duration = std::time::Duration::from_millis(100);

/// A one-shot command's share of pruning: steps of one pass for at most [`ONE_SHOT`], so
/// a store used only by `klaxon once` or `klaxon exec` (from cron) stays bounded too.
pub fn prune_for(store: &Store, retention: Retention, jobs: Vec<String>) {
    let started = std::time::Instant::now();
    let mut pass = Pass::new(retention, jobs);
    while !pass.is_done() && started.elapsed() < ONE_SHOT {
        if let Err(e) = store.prune_step(&mut pass, chrono::Utc::now()) {
            tracing::warn!(%e, "pruning the history failed");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use klaxon_notifiers::Event;

    use super::*;
    use crate::alert::{JobState, OpenAlert, SeverityName};
    use crate::store::tests::{alert, run, t};
    use crate::store::{Mark, NewMessage};

    const DAY: i64 = 86_400;

    fn retention(keep_days: u64, max_runs: u32) -> Retention {
        Retention {
            keep: Duration::from_secs(keep_days * DAY as u64),
            max_runs,
        }
    }

    fn count(store: &Store, table: &str) -> i64 {
        store
            .conn()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn old_runs_and_pings_go_and_recent_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for day in 0..10 {
            store
                .record_run(&run("api", day * DAY, "ok"), |_| {
                    (JobState::default(), vec![])
                })
                .unwrap();
            store.record_ping("beat", t(day * DAY)).unwrap();
        }
        // At day 10 with `keep = 3d`: runs of days 7, 8 and 9 are newer than the cut-off.
        let pruned = store
            .prune(Pass::new(retention(3, 10_000), ["api".into()]), t(10 * DAY))
            .unwrap();
        assert_eq!((pruned.runs, pruned.pings), (7, 7));
        let left: Vec<_> = store
            .history("api", 100)
            .unwrap()
            .into_iter()
            .map(|r| r.started_at)
            .collect();
        assert_eq!(left, [t(9 * DAY), t(8 * DAY), t(7 * DAY)]);
        assert_eq!(store.last_ping("beat").unwrap(), Some(t(9 * DAY)));
        assert_eq!(count(&store, "pings"), 3);
    }

    #[test]
    fn each_job_keeps_its_newest_max_runs_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // More than a batch beyond the cap, so the cap takes several steps.
        let n = (BATCH * 2 + 7) as i64;
        for i in 0..n {
            store
                .record_run(&run("api", i, "ok"), |_| (JobState::default(), vec![]))
                .unwrap();
        }
        for i in 0..3 {
            store
                .record_run(&run("db", i, "ok"), |_| (JobState::default(), vec![]))
                .unwrap();
        }
        let mut pass = Pass::new(retention(365, 5), ["api".into(), "db".into()]);
        let mut steps = 0;
        while !pass.is_done() {
            let step = store.prune_step(&mut pass, t(n)).unwrap();
            assert!(step.runs <= BATCH, "a step deletes at most a batch");
            steps += 1;
        }
        assert!(steps >= 3, "{steps} steps");
        let api = store.history("api", 100).unwrap();
        assert_eq!(api.len(), 5);
        assert_eq!(api[0].started_at, t(n - 1));
        assert_eq!(api[4].started_at, t(n - 5));
        assert_eq!(store.history("db", 100).unwrap().len(), 3);
    }

    #[test]
    fn only_delivered_messages_of_closed_alerts_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let message = |id: &str| {
            let mut alert = alert(Event::Failure);
            alert.id = id.into();
            alert.job = id.into();
            NewMessage {
                notifier: "hook".into(),
                alert,
            }
        };
        let open = |id: &str| JobState {
            open: Some(OpenAlert {
                id: id.into(),
                severity: SeverityName::Critical,
                opened_at: t(0),
                failing_since: t(0),
                last_sent: t(0),
                held: false,
                told: None,
                unsent: false,
                acked: None,
            }),
            ..JobState::default()
        };
        // `closed`: delivered, its alert is over. `open`: delivered, its alert still open.
        // `pending` and `given-up`: not delivered.
        let mut ids = Vec::new();
        for (job, state) in [
            ("closed", JobState::default()),
            ("open", open("open")),
            ("pending", JobState::default()),
            ("given-up", JobState::default()),
        ] {
            let mut r = run(job, 0, "critical");
            r.job = job.into();
            let items = store
                .record_run(&r, |_| (state.clone(), vec![message(job)]))
                .unwrap();
            ids.push(items[0].id);
        }
        store
            .mark(&[
                Mark::Delivered {
                    id: ids[0],
                    at: t(1),
                },
                Mark::Delivered {
                    id: ids[1],
                    at: t(1),
                },
                Mark::GaveUp {
                    id: ids[3],
                    error: "HTTP 400".into(),
                    at: t(1),
                },
            ])
            .unwrap();
        let pruned = store
            .prune(
                Pass::new(retention(1, 10_000), Vec::<String>::new()),
                t(30 * DAY),
            )
            .unwrap();
        assert_eq!(pruned.messages, 1);
        let left: Vec<String> = store
            .conn()
            .prepare("SELECT job FROM outbox ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(left, ["open", "pending", "given-up"]);
        // The open alert's message is still there for re-posting.
        assert!(store.last_message("open").unwrap().is_some());
    }
}
