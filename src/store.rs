//! The on-disk state: one SQLite database (WAL) in `state_dir` holding every run, each
//! job's alert state, and the outbox of messages to deliver.
//!
//! A run, the state it leads to and the messages it makes due are written in one
//! transaction, so a crash can neither lose an alert nor send one twice: a restart finds
//! an open alert open, and undelivered messages still in the outbox.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::alert::JobState;

/// Schema changes, in order: the database's `user_version` says how many are applied.
/// A change is only ever appended, never edited, so any older database can be brought
/// forward.
const MIGRATIONS: &[&str] = &[
    // 1: runs, job state, outbox
    "
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    job         TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,  -- unix ms
    finished_at INTEGER NOT NULL,
    severity    TEXT    NOT NULL,
    attempts    INTEGER NOT NULL,
    elapsed_ms  INTEGER NOT NULL,
    summary     TEXT    NOT NULL,
    output      TEXT,
    skipped     TEXT               -- why a fire did not run, for skipped fires
);
CREATE INDEX runs_by_job ON runs (job, started_at);
CREATE TABLE job_state (
    job   TEXT PRIMARY KEY,
    state TEXT NOT NULL            -- JSON of alert::JobState
);
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    alert_id        TEXT    NOT NULL,
    job             TEXT    NOT NULL,
    notifier        TEXT    NOT NULL,
    event           TEXT    NOT NULL,
    payload         TEXT    NOT NULL,  -- JSON of klaxon_notifiers::Alert
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    gave_up_at      INTEGER,           -- rejected by the receiver: not retried
    last_error      TEXT
);
CREATE INDEX outbox_pending ON outbox (delivered_at, next_attempt_at);
",
    // 2: heartbeat pings; metrics of each run
    "
CREATE TABLE pings (
    job TEXT    NOT NULL,
    at  INTEGER NOT NULL               -- unix ms
);
CREATE INDEX pings_by_job ON pings (job, at);
ALTER TABLE runs ADD COLUMN metrics TEXT;  -- JSON array of klaxon_checks::Metric
",
    // 3: the scheduled fire each run was for, so a restart continues after it
    "
ALTER TABLE runs ADD COLUMN fire_at INTEGER;  -- unix ms; NULL for runs by hand
CREATE INDEX runs_by_fire ON runs (job, fire_at);
",
    // 4: a message's fallback copy is made once
    "
ALTER TABLE outbox ADD COLUMN fallback_sent INTEGER NOT NULL DEFAULT 0;
",
];

const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory `{path}`: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state database `{path}`: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "state database `{path}` was written by a newer klaxon (schema {found}, this one knows {SCHEMA_VERSION})"
    )]
    TooNew { path: PathBuf, found: i64 },
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("state database holds a record this klaxon cannot read: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// One finished (or skipped) run, as history keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub job: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub severity: String,
    pub attempts: u32,
    pub elapsed: Duration,
    pub summary: String,
    pub output: Option<String>,
    pub skipped: Option<String>,
    /// Latency, perfdata, counts: what the check measured.
    pub metrics: Vec<klaxon_checks::Metric>,
    /// The scheduled fire this run was for; `None` for `once`, pings and `exec`.
    pub fire_at: Option<DateTime<Utc>>,
}

/// A message waiting in (or taken from) the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub id: i64,
    pub notifier: String,
    pub alert: klaxon_notifiers::Alert,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    /// When it was put in the outbox (first failure of delivery counts from here).
    pub created_at: DateTime<Utc>,
    /// Whether a copy already went to the notifier's `fallback`.
    pub fallback_sent: bool,
}

/// A message to put in the outbox with the run that made it due.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub notifier: String,
    pub alert: klaxon_notifiers::Alert,
}

/// The state database. Cheap to clone; all clones share one connection.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl Store {
    /// Opens (creating if needed) `state_dir/klaxon.db`.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Dir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join("klaxon.db");
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        Self::init(conn, path)
    }

    /// A store that lives only as long as this process (`--dry-run`).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: PathBuf::from(":memory:"),
            source,
        })?;
        Self::init(conn, PathBuf::from(":memory:"))
    }

    fn init(conn: Connection, path: PathBuf) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        // WAL lets `klaxon status` read while the agent writes; NORMAL sync is durable
        // across process crashes (an OS crash may lose the last commit, not corrupt).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(open_err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path,
                found: version,
            });
        }
        let mut conn = conn;
        let tx = conn.transaction().map_err(open_err)?;
        for migration in &MIGRATIONS[version.max(0) as usize..] {
            tx.execute_batch(migration).map_err(open_err)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(open_err)?;
        tx.commit().map_err(open_err)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (its own transaction
        // rolls back), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stored state of a job (default before its first run).
    pub fn job_state(&self, job: &str) -> Result<JobState, StoreError> {
        let conn = self.conn();
        let json: Option<String> = conn
            .query_row(
                "SELECT state FROM job_state WHERE job = ?1",
                params![job],
                |r| r.get(0),
            )
            .optional()?;
        Ok(match json {
            Some(json) => serde_json::from_str(&json)?,
            None => JobState::default(),
        })
    }

    /// Records a run in one transaction with what it causes: `apply` gets the job's
    /// stored state and returns the new state and the messages to enqueue. Returns the
    /// outbox items as stored.
    pub fn record_run(
        &self,
        run: &RunRecord,
        apply: impl FnOnce(&JobState) -> (JobState, Vec<NewMessage>),
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let stored: Option<String> = tx
            .query_row(
                "SELECT state FROM job_state WHERE job = ?1",
                params![run.job],
                |r| r.get(0),
            )
            .optional()?;
        let before = match stored {
            Some(json) => serde_json::from_str(&json)?,
            None => JobState::default(),
        };
        let (state, messages) = apply(&before);
        insert_run(&tx, run)?;
        tx.execute(
            "INSERT INTO job_state (job, state) VALUES (?1, ?2)
             ON CONFLICT (job) DO UPDATE SET state = excluded.state",
            params![run.job, serde_json::to_string(&state)?],
        )?;
        let mut items = Vec::with_capacity(messages.len());
        for m in messages {
            tx.execute(
                "INSERT INTO outbox (alert_id, job, notifier, event, payload, created_at, next_attempt_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![
                    m.alert.id,
                    m.alert.job,
                    m.notifier,
                    m.alert.event.as_str(),
                    serde_json::to_string(&m.alert)?,
                    ms(run.finished_at),
                ],
            )?;
            items.push(OutboxItem {
                id: tx.last_insert_rowid(),
                notifier: m.notifier,
                alert: m.alert,
                attempts: 0,
                next_attempt_at: run.finished_at,
                created_at: run.finished_at,
                fallback_sent: false,
            });
        }
        tx.commit()?;
        Ok(items)
    }

    /// Records a fire that did not run (and why) without touching alert state.
    pub fn record_skip(&self, run: &RunRecord) -> Result<(), StoreError> {
        insert_run(&self.conn(), run)
    }

    /// Per job: messages not delivered yet, and messages given up on.
    pub fn undelivered(&self) -> Result<HashMap<String, (u32, u32)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT job,
                    sum(delivered_at IS NULL AND gave_up_at IS NULL),
                    sum(delivered_at IS NULL AND gave_up_at IS NOT NULL)
             FROM outbox GROUP BY job",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                (r.get::<_, u32>(1)?, r.get::<_, u32>(2)?),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The latest message (not a recovery) of an alert, as it was enqueued.
    pub fn last_message(
        &self,
        alert_id: &str,
    ) -> Result<Option<klaxon_notifiers::Alert>, StoreError> {
        let payload: Option<String> = self
            .conn()
            .query_row(
                "SELECT payload FROM outbox WHERE alert_id = ?1 AND event != 'recovery'
                 ORDER BY id DESC LIMIT 1",
                params![alert_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(payload.map(|p| serde_json::from_str(&p)).transpose()?)
    }

    /// The nominal time of each job's last scheduled fire (run or skipped).
    pub fn last_fires(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT job, max(fire_at) FROM runs WHERE fire_at IS NOT NULL GROUP BY job")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = HashMap::new();
        for row in rows {
            let (job, at) = row?;
            out.insert(job, from_ms(at));
        }
        Ok(out)
    }

    /// Records a heartbeat ping for a passive job.
    pub fn record_ping(&self, job: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO pings (job, at) VALUES (?1, ?2)",
            params![job, ms(at)],
        )?;
        Ok(())
    }

    /// The latest ping of a job.
    pub fn last_ping(&self, job: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<i64> = self.conn().query_row(
            "SELECT max(at) FROM pings WHERE job = ?1",
            params![job],
            |r| r.get(0),
        )?;
        Ok(at.map(from_ms))
    }

    /// Marks a message delivered.
    pub fn delivered(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE outbox SET delivered_at = ?2, attempts = attempts + 1, last_error = NULL WHERE id = ?1",
            params![id, ms(at)],
        )?;
        Ok(())
    }

    /// Records a failed delivery and when to try again.
    pub fn delivery_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3 WHERE id = ?1",
            params![id, error, ms(next_attempt_at)],
        )?;
        Ok(())
    }

    /// Puts a copy of `item` in the outbox for `fallback`, once: the original is marked
    /// so it is not copied again. Returns the copy.
    pub fn enqueue_fallback(
        &self,
        item: &OutboxItem,
        fallback: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OutboxItem>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let marked = tx.execute(
            "UPDATE outbox SET fallback_sent = 1 WHERE id = ?1 AND fallback_sent = 0",
            params![item.id],
        )?;
        if marked == 0 {
            return Ok(None);
        }
        tx.execute(
            "INSERT INTO outbox (alert_id, job, notifier, event, payload, created_at, next_attempt_at, fallback_sent)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 1)",
            params![
                item.alert.id,
                item.alert.job,
                fallback,
                item.alert.event.as_str(),
                serde_json::to_string(&item.alert)?,
                ms(now),
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Some(OutboxItem {
            id,
            notifier: fallback.to_owned(),
            alert: item.alert.clone(),
            attempts: 0,
            next_attempt_at: now,
            created_at: now,
            // A fallback's own fallback is not followed: no chains, no loops.
            fallback_sent: true,
        }))
    }

    /// Records that a message will not be delivered (the receiver refused it for good).
    pub fn gave_up(&self, id: i64, error: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, gave_up_at = ?3 WHERE id = ?1",
            params![id, error, ms(at)],
        )?;
        Ok(())
    }

    /// Undelivered messages whose next attempt is due at `now`, oldest first.
    ///
    /// In order per job and notifier: a message is not due while an older one of the
    /// same job to the same notifier is undelivered, so a recovery never overtakes its
    /// failure, even when the failure's retry comes later.
    pub fn due(&self, now: DateTime<Utc>) -> Result<Vec<OutboxItem>, StoreError> {
        let mut blocked = std::collections::HashSet::new();
        let mut due = Vec::new();
        for item in self.pending()? {
            let key = (item.notifier.clone(), item.alert.job.clone());
            if blocked.contains(&key) {
                continue;
            }
            if item.next_attempt_at > now {
                blocked.insert(key);
                continue;
            }
            due.push(item);
        }
        Ok(due)
    }

    /// Undelivered messages, oldest first.
    pub fn pending(&self) -> Result<Vec<OutboxItem>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, notifier, payload, attempts, next_attempt_at, created_at, fallback_sent
             FROM outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                (
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ),
                (
                    r.get::<_, u32>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, bool>(6)?,
                ),
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let ((id, notifier, payload), (attempts, next, created, fallback_sent)) = row?;
            out.push(OutboxItem {
                id,
                notifier,
                alert: serde_json::from_str(&payload)?,
                attempts,
                next_attempt_at: from_ms(next),
                created_at: from_ms(created),
                fallback_sent,
            });
        }
        Ok(out)
    }

    /// The last `limit` runs of a job, newest first.
    pub fn history(&self, job: &str, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT job, started_at, finished_at, severity, attempts, elapsed_ms, summary, output, skipped, metrics, fire_at
             FROM runs WHERE job = ?1 ORDER BY started_at DESC, id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![job, limit as i64], |r| {
            Ok(RunRecord {
                job: r.get(0)?,
                started_at: from_ms(r.get(1)?),
                finished_at: from_ms(r.get(2)?),
                severity: r.get(3)?,
                attempts: r.get(4)?,
                elapsed: Duration::from_millis(r.get::<_, i64>(5)?.max(0) as u64),
                summary: r.get(6)?,
                output: r.get(7)?,
                skipped: r.get(8)?,
                metrics: Vec::new(),
                fire_at: r.get::<_, Option<i64>>(10)?.map(from_ms),
            })
            .map(|run| (run, r.get::<_, Option<String>>(9)))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (mut run, metrics) = row?;
            if let Some(json) = metrics? {
                run.metrics = serde_json::from_str(&json)?;
            }
            out.push(run);
        }
        Ok(out)
    }
}

fn insert_run(conn: &Connection, run: &RunRecord) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO runs (job, started_at, finished_at, severity, attempts, elapsed_ms, summary, output, skipped, metrics, fire_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            run.job,
            ms(run.started_at),
            ms(run.finished_at),
            run.severity,
            run.attempts,
            run.elapsed.as_millis() as i64,
            run.summary,
            run.output,
            run.skipped,
            (!run.metrics.is_empty())
                .then(|| serde_json::to_string(&run.metrics))
                .transpose()?,
            run.fire_at.map(ms),
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::alert::{OpenAlert, SeverityName};
    use klaxon_notifiers::{Alert, CheckInfo, Event, Severity};

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + s, 0).unwrap()
    }

    fn alert(event: Event) -> Alert {
        Alert {
            version: 1,
            event,
            job: "api".into(),
            agent: "box".into(),
            severity: Severity::Critical,
            check: CheckInfo {
                kind: "http".into(),
                target: "http://x/".into(),
            },
            summary: "HTTP 500".into(),
            output: None,
            attempts: 3,
            max_attempts: 3,
            elapsed_ms: 1200,
            started_at: t(0).fixed_offset(),
            failing_since: Some(t(0).fixed_offset()),
            last_success: None,
            next_run: None,
            downtime_ms: None,
            id: "api-1".into(),
        }
    }

    fn run(job: &str, at: i64, severity: &str) -> RunRecord {
        RunRecord {
            job: job.into(),
            started_at: t(at),
            finished_at: t(at + 1),
            severity: severity.into(),
            attempts: 3,
            elapsed: Duration::from_millis(1000),
            summary: "HTTP 500".into(),
            output: Some("body".into()),
            skipped: None,
            metrics: vec![klaxon_checks::Metric::new("latency_ms", 12.5).with_unit("ms")],
            fire_at: Some(t(at)),
        }
    }

    #[test]
    fn a_run_its_state_and_its_messages_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let state = JobState {
            severity: Some(SeverityName::Critical),
            consecutive_failures: 1,
            open: Some(OpenAlert {
                id: "api-1".into(),
                severity: SeverityName::Critical,
                opened_at: t(1),
                failing_since: t(0),
                last_sent: t(1),
                held: false,
            }),
            ..JobState::default()
        };
        {
            let store = Store::open(dir.path()).unwrap();
            let items = store
                .record_run(&run("api", 0, "critical"), |before| {
                    assert_eq!(before, &JobState::default());
                    (
                        state.clone(),
                        vec![NewMessage {
                            notifier: "slack".into(),
                            alert: alert(Event::Failure),
                        }],
                    )
                })
                .unwrap();
            assert_eq!(items.len(), 1);
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.job_state("api").unwrap(), state);
        assert_eq!(store.job_state("other").unwrap(), JobState::default());
        let pending = store.pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].alert, alert(Event::Failure));
        store.delivered(pending[0].id, t(2)).unwrap();
        assert!(store.pending().unwrap().is_empty());
        assert_eq!(
            store.history("api", 10).unwrap(),
            [run("api", 0, "critical")]
        );
    }

    #[test]
    fn history_is_newest_first_and_limited() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0..5 {
            store
                .record_run(&run("api", i * 10, "ok"), |_| (JobState::default(), vec![]))
                .unwrap();
        }
        assert_eq!(
            store.last_fires().unwrap(),
            HashMap::from([("api".to_owned(), t(40))])
        );
        let h = store.history("api", 2).unwrap();
        assert_eq!(
            h.iter().map(|r| r.started_at).collect::<Vec<_>>(),
            [t(40), t(30)]
        );
    }

    #[test]
    fn failed_deliveries_stay_pending_with_their_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let items = store
            .record_run(&run("api", 0, "critical"), |_| {
                let message = NewMessage {
                    notifier: "slack".into(),
                    alert: alert(Event::Failure),
                };
                (JobState::default(), vec![message])
            })
            .unwrap();
        store
            .delivery_failed(items[0].id, "HTTP 500", t(60))
            .unwrap();
        let pending = store.pending().unwrap();
        assert_eq!(pending[0].attempts, 1);
        assert!(store.due(t(59)).unwrap().is_empty());
        assert_eq!(store.due(t(60)).unwrap().len(), 1);
        let copy = store
            .enqueue_fallback(&pending[0], "oncall", t(70))
            .unwrap()
            .unwrap();
        assert_eq!(
            (copy.notifier.as_str(), copy.alert.id.as_str()),
            ("oncall", "api-1")
        );
        assert!(
            store
                .enqueue_fallback(&pending[0], "oncall", t(71))
                .unwrap()
                .is_none()
        );
        store.gave_up(items[0].id, "HTTP 400", t(61)).unwrap();
        let left = store.pending().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].notifier, "oncall");
        assert!(left[0].fallback_sent);
    }

    #[test]
    fn a_database_from_schema_1_is_brought_forward_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("klaxon.db")).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO runs (job, started_at, finished_at, severity, attempts, elapsed_ms, summary)
                 VALUES ('api', 1790000000000, 1790000001000, 'critical', 3, 1000, 'HTTP 500')",
                [],
            )
            .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let history = store.history("api", 10).unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].summary, "HTTP 500");
        store.record_ping("beat", t(5)).unwrap();
        store.record_ping("beat", t(9)).unwrap();
        assert_eq!(store.last_ping("beat").unwrap(), Some(t(9)));
        assert_eq!(store.last_ping("other").unwrap(), None);
        let version: i64 = store
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn a_message_is_not_due_before_an_older_one_of_its_job() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let enqueue = |at: i64, event: Event| {
            store
                .record_run(&run("api", at, "critical"), |_| {
                    let message = NewMessage {
                        notifier: "slack".into(),
                        alert: alert(event),
                    };
                    (JobState::default(), vec![message])
                })
                .unwrap()
                .remove(0)
        };
        let failure = enqueue(0, Event::Failure);
        let recovery = enqueue(10, Event::Recovery);
        // The failure's retry is later than the recovery's first try.
        store
            .delivery_failed(failure.id, "HTTP 503", t(100))
            .unwrap();
        assert!(
            store.due(t(50)).unwrap().is_empty(),
            "the recovery overtook its failure"
        );
        let due: Vec<i64> = store.due(t(100)).unwrap().iter().map(|i| i.id).collect();
        assert_eq!(due, [failure.id, recovery.id]);
    }

    #[test]
    fn refuses_a_database_from_the_future() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join("klaxon.db")).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Store::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("newer klaxon (schema 99"), "{err}");
    }
}
