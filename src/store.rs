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
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::alert::JobState;

mod by_hand;
mod health;
mod history;
pub use by_hand::{Held, HeldMessage};
pub use history::{Pass as PrunePass, Pruned, keep_pruning, prune_for};

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
    // 5: who is sending a message (one process at a time), until when
    "
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;      -- the store (process) sending it
ALTER TABLE outbox ADD COLUMN claim_until INTEGER;  -- unix ms; the claim lapses then
",
    // 6: what `status` and re-posting read, found without a scan however long the
    // history: an alert's messages by its id
    "
CREATE INDEX outbox_by_alert ON outbox (alert_id, id);
",
    // 7: the agent's own small facts (the health probe's write)
    "
CREATE TABLE agent (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
",
];

/// How long a claim on an outbox message lasts: a process that reads a message to send
/// it claims it, and no other process sends it until the claim is released (the try is
/// recorded) or lapses (its owner died). Far longer than a delivery try takes (the
/// built-in notifiers time out after 10 to 30 s), so a live owner keeps its claim.
pub const CLAIM_LEASE: Duration = Duration::from_secs(5 * 60);

const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

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

/// How a delivery try of one outbox message went, to be recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Mark {
    Delivered {
        id: i64,
        at: DateTime<Utc>,
    },
    /// Not delivered; tried again at `next_attempt_at`.
    Failed {
        id: i64,
        error: String,
        next_attempt_at: DateTime<Utc>,
    },
    /// Refused for good (or its notifier is gone): not tried again.
    GaveUp {
        id: i64,
        error: String,
        at: DateTime<Utc>,
    },
}

impl Mark {
    pub fn delivered(id: i64, at: DateTime<Utc>) -> Self {
        Self::Delivered { id, at }
    }
}

pub use crate::alert::NewMessage;

/// What recording a run does to its job's state and outbox.
#[derive(Debug, Clone)]
pub enum Change {
    /// The run moves its job's alert: the store applies the pure transition to the
    /// state stored before it (and to its dependencies' states, for `depends_on`), in
    /// the transaction that writes the run.
    Alert(Box<crate::alert::Transition>),
    /// The job's state after the run and its messages, decided already (a run kept in
    /// memory while the store could not be written, whose messages went from there).
    Decided {
        state: JobState,
        messages: Vec<NewMessage>,
    },
}

impl Change {
    /// The new state and the messages to enqueue, given the state before and a reader
    /// of other jobs' states as of the same transaction.
    pub fn apply(
        &self,
        before: &JobState,
        state_of: &dyn Fn(&str) -> Result<JobState, StoreError>,
    ) -> Result<(JobState, Vec<NewMessage>), StoreError> {
        match self {
            Change::Alert(transition) => transition.apply_reading(before, state_of),
            Change::Decided { state, messages } => Ok((state.clone(), messages.clone())),
        }
    }
}

/// A write to the store, committed together with others (see [`Store::record`]).
enum Write {
    /// A run, with what it does to its job's state and outbox.
    Run(Box<(RunRecord, Change)>),
    /// How delivery tries went.
    Marks(Vec<Mark>),
}

/// What a [`Write`] gives back.
enum Written {
    Run(Vec<OutboxItem>),
    Marks,
}

/// A write waiting for the next group commit, and where its outcome goes.
struct Pending {
    write: Write,
    done: tokio::sync::oneshot::Sender<Result<Written, StoreError>>,
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
    fresh: Arc<Mutex<Option<Vec<OutboxItem>>>>,
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
}

/// The doorbell's file in the state directory: a Unix datagram socket the agent binds.
/// Another process (`once`, `ping`, `exec`) that commits sends it one byte, so the
/// agent reads the outbox at once instead of polling for such writes.
const BELL: &str = "outbox.bell";

/// What [`Store::due_except`] found.
#[derive(Debug, Default)]
pub struct Due {
    /// Due and not taken, oldest first.
    pub items: Vec<OutboxItem>,
    /// (notifier, job) with an undelivered message that is not due yet, or that another
    /// process is sending: a newer message of these must wait for it.
    pub blocked: std::collections::HashSet<(String, String)>,
    /// (notifier, job) with a newer message behind one in `taken`.
    pub behind: std::collections::HashSet<(String, String)>,
}

/// Which (notifier, job) a claim is for: all, or these.
type Keys<'a> = Option<&'a std::collections::HashSet<(String, String)>>;

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

/// Group commits between two WAL checkpoints. SQLite's own checkpoint (every 1,000
/// pages) would run in the committing thread, `fsync` included, and stall the writes
/// queued behind it; klaxon checkpoints from a second connection instead, which lets
/// writers go on. Counted in commits, not time: an idle agent does not wake for it.
const CHECKPOINT_EVERY: u32 = 100;

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
        let user_version = |conn: &Connection| -> Result<i64, StoreError> {
            conn.pragma_query_value(None, "user_version", |r| r.get(0))
                .map_err(open_err)
        };
        let version = user_version(&conn)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path,
                found: version,
            });
        }
        let mut conn = conn;
        if version < SCHEMA_VERSION {
            // Read again under the write lock: two processes opening an old database
            // at once bring it forward once.
            let tx = write_tx(&mut conn).map_err(open_err)?;
            let version = user_version(&tx)?;
            if version > SCHEMA_VERSION {
                return Err(StoreError::TooNew {
                    path,
                    found: version,
                });
            }
            for migration in &MIGRATIONS[version.max(0) as usize..] {
                tx.execute_batch(migration).map_err(open_err)?;
            }
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(open_err)?;
            tx.commit().map_err(open_err)?;
        }
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

    /// Records a run in one transaction with the state and messages `apply` decides
    /// from the job's stored state (for tests). Returns the outbox items as stored.
    /// (The agent records through [`Store::record`].)
    #[cfg(test)]
    pub fn record_run(
        &self,
        run: &RunRecord,
        apply: impl Fn(&JobState) -> (JobState, Vec<NewMessage>) + Send,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let (state, messages) = apply(&self.job_state(&run.job)?);
        let write = Write::Run(Box::new((run.clone(), Change::Decided { state, messages })));
        match self.commit_writes(vec![write]).pop() {
            Some(Ok(Written::Run(items))) => Ok(items),
            Some(Err(e)) => Err(e),
            _ => Err(StoreError::Stopped),
        }
    }

    /// Records a run like [`Store::record_run`], committed together with the other
    /// writes waiting at that moment (group commit): when a hundred checks fail at
    /// once, their runs, states and messages take a few transactions, not a hundred,
    /// and each caller still gets its own result once its data is durable.
    pub async fn record(
        &self,
        run: RunRecord,
        change: Change,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        match self.queued(Write::Run(Box::new((run, change)))).await? {
            Written::Run(items) => Ok(items),
            Written::Marks => Err(StoreError::Stopped),
        }
    }

    /// Queues delivery outcomes for the next group commit at once (they are committed
    /// even if nobody waits); the returned future says when and how it went.
    pub fn mark_queued(
        &self,
        marks: Vec<Mark>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + use<> {
        let result = (!marks.is_empty()).then(|| self.enqueue(Write::Marks(marks)));
        async move {
            match result {
                Some(result) => result.await.unwrap_or(Err(StoreError::Stopped)).map(|_| ()),
                None => Ok(()),
            }
        }
    }

    async fn queued(&self, write: Write) -> Result<Written, StoreError> {
        self.enqueue(write)
            .await
            .unwrap_or(Err(StoreError::Stopped))
    }

    fn enqueue(&self, write: Write) -> tokio::sync::oneshot::Receiver<Result<Written, StoreError>> {
        use std::sync::atomic::Ordering::SeqCst;
        let (done, result) = tokio::sync::oneshot::channel();
        lock(&self.queue).push(Pending { write, done });
        if !self.committing.swap(true, SeqCst) {
            // The committing task is spawned, not run by this caller, so a caller that
            // is cancelled cannot strand the others' writes.
            tokio::spawn(self.clone().commit_queue());
        }
        result
    }

    /// Commits what is queued, batch after batch, until the queue is empty.
    async fn commit_queue(self) {
        use std::sync::atomic::Ordering::SeqCst;
        loop {
            let batch = std::mem::take(&mut *lock(&self.queue));
            if batch.is_empty() {
                self.committing.store(false, SeqCst);
                // A write queued between the take and the store above found the flag
                // still set: take it on, unless a new task already has.
                if lock(&self.queue).is_empty() || self.committing.swap(true, SeqCst) {
                    return;
                }
                continue;
            }
            let store = self.clone();
            let committed = THREADS
                .run(move || {
                    let (writes, dones): (Vec<_>, Vec<_>) =
                        batch.into_iter().map(|p| (p.write, p.done)).unzip();
                    let results = store.commit_writes(writes);
                    for (done, result) in dones.into_iter().zip(results) {
                        let _ = done.send(result);
                    }
                })
                .await;
            if let Err(e) = committed {
                // The senders went with the task: every caller of that batch gets
                // `Stopped`, and the queue goes on.
                tracing::error!(%e, "writing to the state database failed");
            }
        }
    }

    /// Counts a commit; every [`CHECKPOINT_EVERY`] commits, checkpoints on a thread
    /// of its own.
    fn committed(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        lock(&self.write_error).take();
        self.ring();
        if self.commits.fetch_add(1, SeqCst) + 1 >= CHECKPOINT_EVERY {
            self.commits.store(0, SeqCst);
            let store = self.clone();
            let spawned = std::thread::Builder::new()
                .name("klaxon-checkpoint".into())
                .spawn(move || store.checkpoint());
            if let Err(e) = spawned {
                tracing::warn!(%e, "cannot start a checkpoint");
            }
        }
    }

    /// Copies what the WAL holds into the database (PASSIVE: writers are not blocked)
    /// from a connection of its own. A checkpoint already running makes this a no-op.
    pub fn checkpoint(&self) {
        if self.path == Path::new(":memory:") {
            return;
        }
        let Ok(mut guard) = self.checkpointer.try_lock() else {
            return;
        };
        if guard.is_none() {
            match Connection::open(&self.path) {
                Ok(conn) => {
                    let _ = conn.busy_timeout(BUSY_TIMEOUT);
                    *guard = Some(conn);
                }
                Err(e) => {
                    tracing::warn!(%e, "cannot open the state database to checkpoint it");
                    return;
                }
            }
        }
        if let Some(conn) = guard.as_ref()
            && let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::warn!(%e, "checkpointing the state database failed");
        }
    }

    /// Makes writes in one transaction. One that cannot be made does not stop the
    /// others: the transaction is then rolled back and the writes made again, each in a
    /// savepoint of its own. Results are in the order of `writes`.
    ///
    /// The first try has no savepoints because they are not free: SQLite copies each
    /// page a savepoint changes into its sub-journal, and a storm's runs change many.
    fn commit_writes(&self, writes: Vec<Write>) -> Vec<Result<Written, StoreError>> {
        let mut conn = self.conn();
        let together = write_tx(&mut conn).and_then(|tx| {
            let written = writes
                .iter()
                .map(|write| write_one(&tx, write))
                .collect::<Result<Vec<_>, _>>();
            match written {
                Ok(written) => tx.commit().map(|()| Some(written)),
                // Dropping `tx` rolls it back.
                Err(_) => Ok(None),
            }
        });
        let committed = match together {
            Ok(Some(written)) => Ok(written.into_iter().map(Ok).collect()),
            Ok(None) => Self::commit_apart(&mut conn, &writes),
            Err(e) => Err(e),
        };
        if let Ok(results) = &committed {
            self.fresh(results.iter().flat_map(|r| match r {
                Ok(Written::Run(items)) => items.clone(),
                _ => Vec::new(),
            }));
        }
        drop(conn);
        match committed {
            Ok(results) => {
                // Every write failing on its own is the store failing (a full disk),
                // not one bad record.
                match results.iter().find_map(|r| r.as_ref().err()) {
                    Some(e) if results.iter().all(Result::is_err) => {
                        *lock(&self.write_error) = Some(e.to_string());
                    }
                    _ => self.committed(),
                }
                results
            }
            Err(e) => {
                let why = e.to_string();
                *lock(&self.write_error) = Some(why.clone());
                (0..writes.len())
                    .map(|_| Err(StoreError::Commit(why.clone())))
                    .collect()
            }
        }
    }

    /// Makes writes in one transaction, each in a savepoint of its own; an error is
    /// the transaction's own (it could not begin or commit).
    fn commit_apart(
        conn: &mut Connection,
        writes: &[Write],
    ) -> Result<Vec<Result<Written, StoreError>>, rusqlite::Error> {
        let mut tx = write_tx(conn)?;
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            let result = tx.savepoint().map_err(StoreError::from).and_then(|sp| {
                let written = write_one(&sp, write)?;
                sp.commit()?;
                Ok(written)
            });
            results.push(result);
        }
        tx.commit()?;
        Ok(results)
    }

    /// Records a fire that did not run (and why) without touching alert state.
    pub fn record_skip(&self, run: &RunRecord) -> Result<(), StoreError> {
        insert_run(&self.conn(), run)?;
        self.committed();
        Ok(())
    }

    /// Per job: messages not delivered yet, and messages given up on.
    pub fn undelivered(&self) -> Result<HashMap<String, (u32, u32)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT job,
                    sum(delivered_at IS NULL AND gave_up_at IS NULL),
                    sum(delivered_at IS NULL AND gave_up_at IS NOT NULL)
             FROM outbox WHERE delivered_at IS NULL GROUP BY job",
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

    /// The nominal time of the last scheduled fire (run or skipped) of each of `jobs`
    /// that has one. One index lookup per job, however long the history.
    pub fn last_fires<'a>(
        &self,
        jobs: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT max(fire_at) FROM runs WHERE job = ?1")?;
        let mut out = HashMap::new();
        for job in jobs {
            let at: Option<i64> = stmt.query_row(params![job], |r| r.get(0))?;
            if let Some(at) = at {
                out.insert(job.to_owned(), from_ms(at));
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

    /// Records how delivery tries went, all in one transaction.
    pub fn mark(&self, marks: &[Mark]) -> Result<(), StoreError> {
        if marks.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        write_marks(&tx, marks)?;
        tx.commit()?;
        drop(conn);
        self.committed();
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
        let tx = write_tx(&mut conn)?;
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
        let copy = OutboxItem {
            id,
            notifier: fallback.to_owned(),
            alert: item.alert.clone(),
            attempts: 0,
            next_attempt_at: now,
            created_at: now,
            // A fallback's own fallback is not followed: no chains, no loops.
            fallback_sent: true,
        };
        self.fresh([copy.clone()]);
        drop(conn);
        self.committed();
        Ok(Some(copy))
    }

    /// Undelivered messages whose next attempt is due at `now`, oldest first.
    ///
    /// In order per job and notifier: a message is not due while an older one of the
    /// same job to the same notifier is undelivered, so a recovery never overtakes its
    /// failure, even when the failure's retry comes later.
    pub fn due(&self, now: DateTime<Utc>) -> Result<Vec<OutboxItem>, StoreError> {
        Ok(self
            .due_except(now, &std::collections::HashSet::new())?
            .items)
    }

    /// [`Store::due`] less the messages in `taken` (the delivery loop has them), and
    /// which jobs have a message waiting for a later retry. What was handed over is
    /// part of this answer: it is cleared, in the same lock as the read.
    ///
    /// What is returned is claimed for this store (see [`CLAIM_LEASE`]) in the same
    /// transaction that read it: a message another process claimed is not due here,
    /// nor are the newer ones of its job and notifier.
    pub fn due_except(
        &self,
        now: DateTime<Utc>,
        taken: &std::collections::HashSet<i64>,
    ) -> Result<Due, StoreError> {
        self.claim(now, taken, None)
    }

    /// [`Store::due_except`] for only these (notifier, job): each one's oldest
    /// undelivered messages, when due and not claimed by another process.
    pub fn claim_keys(
        &self,
        now: DateTime<Utc>,
        taken: &std::collections::HashSet<i64>,
        keys: &std::collections::HashSet<(String, String)>,
    ) -> Result<Due, StoreError> {
        self.claim(now, taken, Some(keys))
    }

    fn claim(
        &self,
        now: DateTime<Utc>,
        taken: &std::collections::HashSet<i64>,
        keys: Keys<'_>,
    ) -> Result<Due, StoreError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        if keys.is_none()
            && let Some(fresh) = lock(&self.fresh).as_mut()
        {
            fresh.clear();
        }
        let mut due = Due::default();
        let mut stopped = std::collections::HashSet::new();
        let mut after_taken = std::collections::HashSet::new();
        let until = ms(now) + CLAIM_LEASE.as_millis() as i64;
        // Only the messages that go out now are decoded.
        for row in pending_rows(&tx)? {
            let key = (row.notifier.clone(), row.job.clone());
            if keys.is_some_and(|keys| !keys.contains(&key)) {
                continue;
            }
            if stopped.contains(&key) {
                if after_taken.contains(&key) {
                    due.behind.insert(key);
                }
                continue;
            }
            if taken.contains(&row.id) {
                after_taken.insert(key.clone());
                stopped.insert(key);
                continue;
            }
            if from_ms(row.next_attempt_at) > now || self.claimed_elsewhere(&row, now) {
                stopped.insert(key.clone());
                due.blocked.insert(key);
                continue;
            }
            tx.prepare_cached("UPDATE outbox SET claimed_by = ?2, claim_until = ?3 WHERE id = ?1")?
                .execute(params![row.id, &*self.owner, until])?;
            due.items.push(row.decode()?);
        }
        tx.commit()?;
        Ok(due)
    }

    fn claimed_elsewhere(&self, row: &PendingRow, now: DateTime<Utc>) -> bool {
        row.claimed_by.as_deref().is_some_and(|o| o != &*self.owner)
            && row.claim_until.is_some_and(|until| until > ms(now))
    }

    /// Gives up this store's claims on messages it has not settled (a process that
    /// stops delivering), so another process need not wait for them to lapse.
    pub fn release_claims(&self) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE outbox SET claimed_by = NULL, claim_until = NULL
             WHERE claimed_by = ?1 AND delivered_at IS NULL AND gave_up_at IS NULL",
            params![&*self.owner],
        )?;
        Ok(())
    }

    /// Of `ids`, the messages not delivered nor given up yet (by any process).
    pub fn undelivered_of(
        &self,
        ids: &std::collections::HashSet<i64>,
    ) -> Result<std::collections::HashSet<i64>, StoreError> {
        Ok(self
            .pending_rows()?
            .into_iter()
            .map(|r| r.id)
            .filter(|id| ids.contains(id))
            .collect())
    }

    /// For each of `keys` with an undelivered message: when its oldest one may be
    /// tried (its next attempt, or when another process's claim on it lapses), and
    /// whether another process has it claimed.
    pub fn heads(
        &self,
        now: DateTime<Utc>,
        keys: &std::collections::HashSet<(String, String)>,
    ) -> Result<Vec<(DateTime<Utc>, bool)>, StoreError> {
        let mut seen = std::collections::HashSet::new();
        let mut heads = Vec::new();
        for row in self.pending_rows()? {
            let key = (row.notifier.clone(), row.job.clone());
            if !keys.contains(&key) || !seen.insert(key) {
                continue;
            }
            let foreign = self.claimed_elsewhere(&row, now);
            let mut at = row.next_attempt_at;
            if foreign {
                at = at.max(row.claim_until.unwrap_or(at));
            }
            heads.push((from_ms(at), foreign));
        }
        Ok(heads)
    }

    /// Binds the doorbell in the state directory (the agent, holding the agent lock,
    /// so a file left there is a dead agent's and is replaced). Must run on a tokio
    /// runtime. Without it the delivery loop polls [`Store::written_elsewhere`].
    pub fn listen_for_others(&self) -> std::io::Result<()> {
        let Some(path) = self.bell_path() else {
            return Ok(());
        };
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let socket = tokio::net::UnixDatagram::bind(&path)?;
        let _ = self.bell.set(socket);
        Ok(())
    }

    /// Whether this store listens for other processes' writes.
    pub fn listens(&self) -> bool {
        self.bell.get().is_some()
    }

    /// Resolves when another process has rung the doorbell since the last time (never,
    /// when this store does not listen).
    pub async fn rung(&self) {
        let Some(bell) = self.bell.get() else {
            return std::future::pending().await;
        };
        let mut buf = [0u8; 8];
        let _ = bell.recv(&mut buf).await;
        // Several rings while the loop was busy need one read.
        while bell.try_recv(&mut buf).is_ok() {}
    }

    /// Tells a listening agent that this process committed (nothing when this store is
    /// the listener, or when no agent listens).
    fn ring(&self) {
        if self.listens() {
            return;
        }
        let Some(path) = self.bell_path() else {
            return;
        };
        if let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() {
            let _ = socket.set_nonblocking(true);
            let _ = socket.send_to(b"w", path);
        }
    }

    fn bell_path(&self) -> Option<PathBuf> {
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty())?;
        (self.path.as_os_str() != ":memory:").then(|| dir.join(BELL))
    }

    /// Whether another connection (another klaxon process) committed since the last
    /// call: its messages are in the outbox only, not handed over.
    pub fn written_elsewhere(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        let version: Result<i64, _> = self
            .conn()
            .pragma_query_value(None, "data_version", |r| r.get(0));
        match version {
            Ok(v) => self.data_version.swap(v, SeqCst) != v,
            Err(_) => true,
        }
    }

    /// From now on, every message this store commits is also kept for
    /// [`Store::take_fresh`] until taken or until the outbox is read: the delivery loop
    /// asks for this, a process without one does not.
    pub fn hand_over(&self) {
        lock(&self.fresh).get_or_insert_with(Vec::new);
    }

    /// The messages committed since the last call or the last read of the outbox,
    /// oldest first.
    pub fn take_fresh(&self) -> Vec<OutboxItem> {
        lock(&self.fresh)
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Keeps `items`, just committed, for [`Store::take_fresh`]; called with the
    /// connection still locked, so a read of the outbox sees them either as pending
    /// and clears them here, or not at all.
    /// Rings [`Store::ready`] when there are any.
    fn fresh(&self, items: impl IntoIterator<Item = OutboxItem>) {
        let mut items = items.into_iter().peekable();
        if items.peek().is_none() {
            return;
        }
        if let Some(fresh) = lock(&self.fresh).as_mut() {
            fresh.extend(items);
        }
        self.ready.notify_one();
    }

    /// Resolves when this process has committed messages since the last time it
    /// resolved (a commit before the first wait counts).
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Undelivered messages, oldest first.
    pub fn pending(&self) -> Result<Vec<OutboxItem>, StoreError> {
        self.pending_rows()?
            .into_iter()
            .map(PendingRow::decode)
            .collect()
    }

    /// When the earliest message that was not due at `now` comes due: the first
    /// undelivered message of each job and notifier whose next attempt is after `now`
    /// (the ones behind it wait for it anyway), whichever process wrote it; one that
    /// another process has claimed, when that claim lapses. `now` is when the caller
    /// last asked [`Store::due`], so a message that came due since is not missed.
    pub fn next_retry(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<i64> = self
            .conn()
            .prepare_cached(
                "SELECT min(at) FROM (
                   SELECT CASE WHEN o.claimed_by IS NOT NULL AND o.claimed_by != ?2
                                    AND o.claim_until > o.next_attempt_at
                               THEN o.claim_until ELSE o.next_attempt_at END AS at
                   FROM outbox o
                   JOIN (SELECT min(id) AS id FROM outbox
                         WHERE delivered_at IS NULL AND gave_up_at IS NULL
                         GROUP BY notifier, job) head ON o.id = head.id)
                 WHERE at > ?1",
            )?
            .query_row(params![ms(now), &*self.owner], |r| r.get(0))?;
        Ok(at.map(from_ms))
    }

    fn pending_rows(&self) -> Result<Vec<PendingRow>, StoreError> {
        pending_rows(&self.conn())
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

/// An undelivered outbox row, its payload not decoded yet.
struct PendingRow {
    id: i64,
    job: String,
    notifier: String,
    payload: String,
    attempts: u32,
    next_attempt_at: i64,
    created_at: i64,
    fallback_sent: bool,
    claimed_by: Option<String>,
    claim_until: Option<i64>,
}

impl PendingRow {
    fn decode(self) -> Result<OutboxItem, StoreError> {
        Ok(OutboxItem {
            id: self.id,
            notifier: self.notifier,
            alert: serde_json::from_str(&self.payload)?,
            attempts: self.attempts,
            next_attempt_at: from_ms(self.next_attempt_at),
            created_at: from_ms(self.created_at),
            fallback_sent: self.fallback_sent,
        })
    }
}

fn pending_rows(conn: &Connection) -> Result<Vec<PendingRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, job, notifier, payload, attempts, next_attempt_at, created_at, fallback_sent,
                claimed_by, claim_until
         FROM outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(PendingRow {
            id: r.get(0)?,
            job: r.get(1)?,
            notifier: r.get(2)?,
            payload: r.get(3)?,
            attempts: r.get(4)?,
            next_attempt_at: r.get(5)?,
            created_at: r.get(6)?,
            fallback_sent: r.get(7)?,
            claimed_by: r.get(8)?,
            claim_until: r.get(9)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
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

fn write_one(conn: &Connection, write: &Write) -> Result<Written, StoreError> {
    Ok(match write {
        Write::Run(write) => Written::Run(write_run(conn, &write.0, &write.1)?),
        Write::Marks(marks) => {
            write_marks(conn, marks)?;
            Written::Marks
        }
    })
}

fn write_marks(conn: &Connection, marks: &[Mark]) -> Result<(), StoreError> {
    for mark in marks {
        match mark {
            Mark::Delivered { id, at } => conn
                .prepare_cached(
                    "UPDATE outbox SET delivered_at = ?2, attempts = attempts + 1, last_error = NULL,
                            claimed_by = NULL, claim_until = NULL
                     WHERE id = ?1",
                )?
                .execute(params![id, ms(*at)])?,
            Mark::Failed {
                id,
                error,
                next_attempt_at,
            } => {
                // The newer messages of its job its sender claimed wait for it: they
                // are let go with it.
                conn.prepare_cached(
                    "UPDATE outbox SET claimed_by = NULL, claim_until = NULL
                     WHERE delivered_at IS NULL AND gave_up_at IS NULL
                       AND (notifier, job, claimed_by) =
                           (SELECT notifier, job, claimed_by FROM outbox WHERE id = ?1)",
                )?
                .execute(params![id])?;
                conn.prepare_cached(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3,
                                claimed_by = NULL, claim_until = NULL
                     WHERE id = ?1",
                )?
                .execute(params![id, error, ms(*next_attempt_at)])?
            }
            Mark::GaveUp { id, error, at } => conn
                .prepare_cached(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, gave_up_at = ?3,
                            claimed_by = NULL, claim_until = NULL
                     WHERE id = ?1",
                )?
                .execute(params![id, error, ms(*at)])?,
        };
    }
    Ok(())
}

/// One run, its job's new state and its messages, on an open transaction.
fn write_run(
    conn: &Connection,
    run: &RunRecord,
    change: &Change,
) -> Result<Vec<OutboxItem>, StoreError> {
    let before = state_in(conn, &run.job)?;
    let (state, messages) = change.apply(&before, &|job| state_in(conn, job))?;
    insert_run(conn, run)?;
    conn.prepare_cached(
        "INSERT INTO job_state (job, state) VALUES (?1, ?2)
         ON CONFLICT (job) DO UPDATE SET state = excluded.state",
    )?
    .execute(params![run.job, serde_json::to_string(&state)?])?;
    let mut items = Vec::with_capacity(messages.len());
    for m in messages {
        conn.prepare_cached(
            "INSERT INTO outbox (alert_id, job, notifier, event, payload, created_at, next_attempt_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        )?
        .execute(params![
            m.alert.id,
            m.alert.job,
            m.notifier,
            m.alert.event.as_str(),
            serde_json::to_string(&m.alert)?,
            ms(run.finished_at),
        ])?;
        items.push(OutboxItem {
            id: conn.last_insert_rowid(),
            notifier: m.notifier,
            alert: m.alert,
            attempts: 0,
            next_attempt_at: run.finished_at,
            created_at: run.finished_at,
            fallback_sent: false,
        });
    }
    Ok(items)
}

fn insert_run(conn: &Connection, run: &RunRecord) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO runs (job, started_at, finished_at, severity, attempts, elapsed_ms, summary, output, skipped, metrics, fire_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
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
    use std::collections::HashSet;

    pub(super) fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + s, 0).unwrap()
    }

    pub(super) fn alert(event: Event) -> Alert {
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

    pub(super) fn run(job: &str, at: i64, severity: &str) -> RunRecord {
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

    /// Runs recorded at the same moment share transactions, yet each caller gets its
    /// own outcome, and a run whose state change fails is left out alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_recorded_together_are_committed_together_and_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // job7's stored state cannot be read: its write fails, alone.
        store
            .conn()
            .execute(
                "INSERT INTO job_state (job, state) VALUES ('job7', 'not json')",
                [],
            )
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..60 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let job = format!("job{i}");
                let mut a = alert(Event::Failure);
                a.job = format!("job{i}");
                a.id = format!("job{i}-1");
                let change = Change::Decided {
                    state: JobState {
                        consecutive_failures: 1,
                        ..JobState::default()
                    },
                    messages: vec![NewMessage {
                        notifier: "hook".into(),
                        alert: a,
                    }],
                };
                (i, store.record(run(&job, i, "critical"), change).await)
            }));
        }
        let mut ids = std::collections::HashSet::new();
        for task in tasks {
            let (i, result) = task.await.unwrap();
            if i == 7 {
                assert!(matches!(result, Err(StoreError::Corrupt(_))), "{result:?}");
                continue;
            }
            let items = result.unwrap();
            assert_eq!(items.len(), 1);
            assert_eq!(items[0].alert.job, format!("job{i}"));
            assert!(ids.insert(items[0].id), "outbox ids are distinct");
        }
        // Everything but job7 is durable: a second connection sees it.
        let reopened = Store::open(dir.path()).unwrap();
        assert_eq!(reopened.pending().unwrap().len(), 59);
        assert!(reopened.history("job7", 10).unwrap().is_empty());
        assert_eq!(reopened.history("job8", 10).unwrap().len(), 1);
        assert!(reopened.job_state("job7").is_err(), "left as it was");
        assert_eq!(reopened.job_state("job8").unwrap().consecutive_failures, 1);

        // Delivery outcomes go through the same queue.
        let due = store.due(t(100)).unwrap();
        let marks = due
            .iter()
            .map(|item| match item.alert.job.as_str() {
                "job8" => Mark::Failed {
                    id: item.id,
                    error: "HTTP 503".into(),
                    next_attempt_at: t(200),
                },
                "job9" => Mark::GaveUp {
                    id: item.id,
                    error: "HTTP 400".into(),
                    at: t(100),
                },
                _ => Mark::delivered(item.id, t(100)),
            })
            .collect();
        store.mark_queued(marks).await.unwrap();
        let left = reopened.pending().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].alert.job, "job8");
        assert_eq!(left[0].attempts, 1);
        assert_eq!(reopened.next_retry(t(100)).unwrap(), Some(t(200)));
        assert_eq!(reopened.undelivered().unwrap()["job9"], (0, 1));
    }

    #[tokio::test]
    async fn committed_messages_are_handed_over_once_and_a_read_takes_them_instead() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let record = |job: &'static str, at: i64| {
            let store = store.clone();
            async move {
                let mut a = alert(Event::Failure);
                a.job = job.into();
                let change = Change::Decided {
                    state: JobState::default(),
                    messages: vec![NewMessage {
                        notifier: "hook".into(),
                        alert: a,
                    }],
                };
                store
                    .record(run(job, at, "critical"), change)
                    .await
                    .unwrap()
            }
        };
        // Nobody asked: nothing is kept.
        record("a", 1).await;
        assert!(store.take_fresh().is_empty());

        store.hand_over();
        let b = record("b", 2).await;
        let c = record("c", 3).await;
        let fresh = store.take_fresh();
        assert_eq!(fresh, [b[0].clone(), c[0].clone()]);
        assert!(store.take_fresh().is_empty(), "handed over once");

        // A read of the outbox answers for what was committed before it: it is not
        // handed over again.
        let d = record("d", 4).await;
        let due = store.due_except(t(100), &[b[0].id].into()).unwrap();
        let jobs: Vec<_> = due.items.iter().map(|i| i.alert.job.as_str()).collect();
        assert_eq!(jobs, ["a", "c", "d"]);
        assert_eq!(due.items[2], d[0]);
        assert!(store.take_fresh().is_empty());

        // A fallback copy is handed over too.
        let copy = store
            .enqueue_fallback(&d[0], "mail", t(5))
            .unwrap()
            .unwrap();
        assert_eq!(store.take_fresh(), [copy]);
    }

    /// SQLite's own checkpoints are off (they would `fsync` in the committing thread);
    /// every CHECKPOINT_EVERY commits one runs from a connection of its own.
    #[test]
    fn the_wal_is_checkpointed_off_the_write_path_every_hundred_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let db = dir.path().join("klaxon.db");
        let size = || std::fs::metadata(&db).unwrap().len();
        let start = size();
        let record = |i: u32| {
            store
                .record_run(&run(&format!("job{i}"), i64::from(i), "ok"), |b| {
                    (b.clone(), Vec::new())
                })
                .unwrap();
        };
        for i in 0..CHECKPOINT_EVERY - 1 {
            record(i);
        }
        assert_eq!(size(), start, "nothing is copied into the database yet");
        record(CHECKPOINT_EVERY);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while size() == start {
            assert!(std::time::Instant::now() < deadline, "no checkpoint");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Everything is still there, and writes go on.
        record(CHECKPOINT_EVERY + 1);
        assert_eq!(store.history("job5", 10).unwrap().len(), 1);
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
                told: Some(vec!["slack".into()]),
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
        store.mark(&[Mark::delivered(pending[0].id, t(2))]).unwrap();
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
            store.last_fires(["api", "other"]).unwrap(),
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
            .mark(&[Mark::Failed {
                id: items[0].id,
                error: "HTTP 500".into(),
                next_attempt_at: t(60),
            }])
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
        store
            .mark(&[Mark::GaveUp {
                id: items[0].id,
                error: "HTTP 400".into(),
                at: t(61),
            }])
            .unwrap();
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

    /// Records a run of `api` with one message of `event` to `slack`.
    fn enqueue(store: &Store, at: i64, event: Event) -> OutboxItem {
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
    }

    #[test]
    fn a_message_is_not_due_before_an_older_one_of_its_job() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let enqueue = |at: i64, event: Event| enqueue(&store, at, event);
        let failure = enqueue(0, Event::Failure);
        let recovery = enqueue(10, Event::Recovery);
        // The failure's retry is later than the recovery's first try.
        store
            .mark(&[Mark::Failed {
                id: failure.id,
                error: "HTTP 503".into(),
                next_attempt_at: t(100),
            }])
            .unwrap();
        assert!(
            store.due(t(50)).unwrap().is_empty(),
            "the recovery overtook its failure"
        );
        let due: Vec<i64> = store.due(t(100)).unwrap().iter().map(|i| i.id).collect();
        assert_eq!(due, [failure.id, recovery.id]);
        // The next wake-up is the failure's retry: the recovery behind it, though its
        // own time has come, waits for it.
        assert_eq!(store.next_retry(t(50)).unwrap(), Some(t(100)));
        // Asked with the time a round started, a retry that came due during the round
        // is not missed (it is in the past now, and the worker goes again at once).
        assert_eq!(store.next_retry(t(99)).unwrap(), Some(t(100)));
        assert_eq!(store.next_retry(t(100)).unwrap(), None);
    }

    /// Two processes on one database: what one read to send is claimed, so the other
    /// neither sends it nor a newer message of that job and notifier, until the claim
    /// is released by the outcome or lapses after `CLAIM_LEASE` (its owner died).
    #[test]
    fn a_claimed_message_is_sent_by_one_process_until_its_claim_lapses() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(dir.path()).unwrap();
        let b = Store::open(dir.path()).unwrap();
        let enqueue = |at: i64, event: Event| enqueue(&a, at, event);
        let failure = enqueue(0, Event::Failure);
        let claimed: Vec<i64> = a.due(t(1)).unwrap().iter().map(|i| i.id).collect();
        assert_eq!(claimed, [failure.id]);
        let recovery = enqueue(2, Event::Recovery);
        let other = b.due_except(t(3), &HashSet::new()).unwrap();
        assert!(other.items.is_empty(), "{:?}", other.items);
        let key = ("slack".to_owned(), "api".to_owned());
        assert!(other.blocked.contains(&key));
        let lapses = t(1) + chrono::Duration::from_std(CLAIM_LEASE).unwrap();
        assert_eq!(b.next_retry(t(3)).unwrap(), Some(lapses));
        // Its owner is still on it: the claim is renewed by its next read.
        let mine: Vec<i64> = a.due(t(3)).unwrap().iter().map(|i| i.id).collect();
        assert_eq!(mine, [failure.id, recovery.id]);
        // A failed try lets go of the message and of the newer one behind it.
        a.mark(&[Mark::Failed {
            id: failure.id,
            error: "HTTP 503".into(),
            next_attempt_at: t(10),
        }])
        .unwrap();
        assert!(b.due(t(9)).unwrap().is_empty());
        let taken: Vec<i64> = b.due(t(10)).unwrap().iter().map(|i| i.id).collect();
        assert_eq!(taken, [failure.id, recovery.id]);
        // b dies without an outcome: a gets them back once the claim lapses.
        let lapses = t(10) + chrono::Duration::from_std(CLAIM_LEASE).unwrap();
        assert!(
            a.due(lapses - chrono::Duration::seconds(1))
                .unwrap()
                .is_empty()
        );
        assert_eq!(a.due(lapses).unwrap().len(), 2);
        // Let go on purpose, they are b's to take at once.
        a.release_claims().unwrap();
        assert_eq!(b.due(lapses).unwrap().len(), 2);
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
