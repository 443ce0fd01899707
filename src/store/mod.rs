//! The on-disk state: one SQLite database (WAL) in `state_dir` holding every run, each
//! job's alert state, and the outbox of messages to deliver.
//!
//! A run, the state it leads to and the messages it makes due are written in one
//! transaction, so a crash can neither lose an alert nor send one twice: a restart finds
//! an open alert open, and undelivered messages still in the outbox.

//!
//! What each file owns:
//! - this one: the handle ([`Store`]: one connection, opened and brought forward), the
//!   types it speaks in, and the reads of runs and job states;
//! - [`migrations`]: the schema;
//! - [`commit`]: the batched commit of runs (with their job's new state and messages)
//!   and of delivery outcomes;
//! - [`outbox`]: the outbox table, its claims and the reads delivery takes work from;
//! - [`bell`]: how the delivery loop is woken for new messages;
//! - `carried`: what a check carries from run to run (a `log` check's read position);
//! - `history`: pruning old runs; `health`: the write probe behind `/healthz`;
//!   `by_hand`: `klaxon outbox` (list, retry, drop); `silences`: `klaxon silence`;
//!   `uptime`: the share of a job's judged runs that were ok (the uptime badge);
//!   `dashboard`: what the dashboard's pages read (recent runs of every job in one
//!   query, a job's incidents, its duration and latency series).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::alert::JobState;

mod bell;
mod by_hand;
mod carried;
mod commit;
mod dashboard;
mod health;
mod history;
mod migrations;
mod outbox;
mod silences;
mod uptime;

pub use by_hand::{Held, HeldMessage};
use commit::Pending;
use commit::insert_run;
pub use commit::{Change, Durable, NewMessage};
pub use dashboard::{Incident, RECENT_RUNS, RecentRun, Verdict, latency};
pub use history::{Pass as PrunePass, Pruned, keep_pruning, prune_for};
use migrations::SCHEMA_VERSION;
pub use outbox::{CLAIM_LEASE, Due, Fresh, Mark, OutboxItem};
pub use silences::{NewSilence, Silence, check_pattern, matches as job_matches};
pub use uptime::Uptime;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory `{path}`: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make the state file `{path}` private: {source}")]
    File {
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
    #[error("state database: cannot commit: {0}")]
    Commit(String),
    #[error("state database: the recording task stopped")]
    Stopped,
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
    /// What silenced its alerts (a silence or a maintenance window), if anything.
    pub silenced: Option<String>,
}

/// The state database. Cheap to clone; all clones share one connection.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    /// Runs handed to [`Store::record`] and not committed yet.
    queue: Arc<Mutex<Vec<Pending>>>,
    /// Whether a task is committing the queue.
    committing: Arc<std::sync::atomic::AtomicBool>,
    /// Group commits since the last checkpoint, and the connection that checkpoints.
    commits: Arc<std::sync::atomic::AtomicU32>,
    checkpointer: Arc<Mutex<Option<Connection>>>,
    /// Messages committed since the delivery loop last looked, once it asked for them
    /// ([`Store::hand_over`]): it takes these without reading the outbox again.
    fresh: Arc<Mutex<Option<Vec<Fresh>>>>,
    /// Rung when this process commits messages: the delivery loop waits on it. It
    /// lives with the store, not with one config's runtime, so a run that started
    /// before a reload still wakes the loop of the config after it.
    ready: Arc<tokio::sync::Notify>,
    /// Why the last commit of runs failed, until a commit succeeds (for `/healthz`).
    write_error: Arc<Mutex<Option<String>>>,
    /// Who this store is in the outbox's claims: unique per process and open.
    owner: Arc<str>,
    /// `PRAGMA data_version` when last asked: it changes when another connection
    /// (another process) commits.
    data_version: Arc<std::sync::atomic::AtomicI64>,
    /// The agent's doorbell for other processes' writes ([`Store::listen_for_others`]),
    /// once it listens.
    bell: Arc<std::sync::OnceLock<tokio::net::UnixDatagram>>,
    /// Every job's latest runs, once the dashboard asked ([`Store::recent_runs`]).
    recent: Arc<Mutex<dashboard::Remembered>>,
    /// Each job's alert state as last read by [`Store::job_states`], with the JSON it
    /// was parsed from and which jobs' states were written since.
    states: Arc<Mutex<dashboard::StateCache>>,
}

/// How long a statement waits for another connection's write lock (another klaxon
/// process, or the checkpointer) before it fails with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A transaction that writes: `BEGIN IMMEDIATE` takes the write lock at once, waiting
/// up to [`BUSY_TIMEOUT`] for it. A deferred transaction that reads first would fail
/// at its first write, without waiting, when another process wrote in between
/// (SQLITE_BUSY on upgrade in WAL mode).
fn write_tx(conn: &mut Connection) -> Result<Transaction<'_>, rusqlite::Error> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
}

/// The store's own threads: every blocking call into the store from async code (group
/// commits, skipped fires, `/status`, `/metrics`, the liveness probe, pruning) runs on
/// these, never on tokio's blocking pool or the checks' one, so that no stuck check can
/// delay a commit. Two: one connection serves them all, so a second only lets a read
/// queue on its lock while a commit runs instead of behind it in the pool.
pub static THREADS: klaxon_checks::blocking::Pool =
    klaxon_checks::blocking::Pool::new("klaxon-store", STORE_THREADS);

/// How many threads [`THREADS`] has at most.
pub const STORE_THREADS: usize = 2;

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
        crate::private::dir(state_dir).map_err(|source| StoreError::Dir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join("klaxon.db");
        // SQLite gives `-wal` and `-shm` the main file's mode: a 0600 database keeps
        // them private too. Ones left by an older klaxon are tightened here.
        crate::private::file(&path).map_err(|source| StoreError::File {
            path: path.clone(),
            source,
        })?;
        for sidecar in ["klaxon.db-wal", "klaxon.db-shm"] {
            let sidecar = state_dir.join(sidecar);
            crate::private::tighten(&sidecar, 0o600).map_err(|source| StoreError::File {
                path: sidecar,
                source,
            })?;
        }
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
        // Set first: another process (the agent, a `ping`) may hold the write lock
        // while this one switches to WAL or brings the schema forward.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // WAL lets `klaxon status` read while the agent writes; NORMAL sync is durable
        // across process crashes (an OS crash may lose the last commit, not corrupt).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        // Checkpoints come from `Store::checkpoint`, off the write path; the last
        // connection to close checkpoints too (SQLite does that itself).
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(open_err)?;
        let mut conn = conn;
        migrations::bring_forward(&mut conn, &path)?;
        // Every statement klaxon runs, parsed once.
        conn.set_prepared_statement_cache_capacity(32);
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
            queue: Arc::default(),
            committing: Arc::default(),
            commits: Arc::default(),
            checkpointer: Arc::default(),
            fresh: Arc::default(),
            ready: Arc::default(),
            write_error: Arc::default(),
            owner: format!("{}-{:08x}", std::process::id(), fastrand::u32(..)).into(),
            data_version: Arc::default(),
            bell: Arc::default(),
            recent: Arc::default(),
            states: Arc::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (its own transaction
        // rolls back), so a poisoned lock is still usable.
        lock(&self.conn)
    }

    /// The stored state of a job (default before its first run).
    pub fn job_state(&self, job: &str) -> Result<JobState, StoreError> {
        state_in(&self.conn(), job)
    }

    /// Acknowledges `job`'s open alert: no reminders from now on, and its recovery says
    /// who acknowledged it and when. Returns the alert; `Ok(None)` when the job has no
    /// open alert.
    pub fn ack(
        &self,
        job: &str,
        ack: crate::alert::Ack,
    ) -> Result<Option<crate::alert::OpenAlert>, StoreError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let mut state = state_in(&tx, job)?;
        let Some(open) = state.open.as_mut() else {
            return Ok(None);
        };
        open.acked = Some(ack);
        lock(&self.states).dirty(job);
        let open = open.clone();
        tx.prepare_cached("UPDATE job_state SET state = ?2 WHERE job = ?1")?
            .execute(params![job, serde_json::to_string(&state)?])?;
        tx.commit()?;
        drop(conn);
        self.committed();
        Ok(Some(open))
    }

    /// Records a fire that did not run (and why) without touching alert state.
    pub fn record_skip(&self, run: &RunRecord) -> Result<(), StoreError> {
        insert_run(&self.conn(), run, None)?;
        self.committed();
        Ok(())
    }

    /// The nominal time of the last scheduled fire (run or skipped) of each of `jobs`
    /// that has one. One statement for all of them (a statement each costs its file
    /// locks: a tenth of the overview of 1,000 jobs), one index lookup per job however
    /// long the history.
    pub fn last_fires<'a>(
        &self,
        jobs: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let names = dashboard::json_names(jobs)?;
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT j.value, (SELECT max(fire_at) FROM runs WHERE job = j.value)
             FROM json_each(?1) AS j",
        )?;
        let mut rows = stmt.query(params![names])?;
        let mut out = HashMap::new();
        while let Some(r) = rows.next()? {
            if let Some(at) = r.get::<_, Option<i64>>(1)? {
                out.insert(r.get(0)?, from_ms(at));
            }
        }
        Ok(out)
    }

    /// Records a heartbeat ping for a passive job.
    pub fn record_ping(&self, job: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO pings (job, at) VALUES (?1, ?2)",
            params![job, ms(at)],
        )?;
        self.committed();
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

    /// The last `limit` runs of a job, newest first.
    pub fn history(&self, job: &str, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT job, started_at, finished_at, severity, attempts, elapsed_ms, summary, output, skipped, metrics, fire_at, silenced
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
                silenced: r.get(11)?,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn state_in(conn: &Connection, job: &str) -> Result<JobState, StoreError> {
    let json: Option<String> = conn
        .prepare_cached("SELECT state FROM job_state WHERE job = ?1")?
        .query_row(params![job], |r| r.get(0))
        .optional()?;
    Ok(match json {
        Some(json) => serde_json::from_str(&json)?,
        None => JobState::default(),
    })
}

#[cfg(test)]
mod tests;
