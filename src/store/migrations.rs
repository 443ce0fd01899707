//! The schema, as the list of changes that build it: a database's `user_version` says
//! how many are applied; a change is only ever appended, never edited.

use std::path::Path;

use rusqlite::Connection;

use super::{StoreError, write_tx};

/// Brings the database on `conn` (at `path`) forward to [`SCHEMA_VERSION`], or fails
/// when a newer klaxon wrote it.
pub(super) fn bring_forward(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let user_version = |conn: &Connection| -> Result<i64, StoreError> {
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(open_err)
    };
    let version = user_version(conn)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
        });
    }
    if version < SCHEMA_VERSION {
        // Read again under the write lock: two processes opening an old database
        // at once bring it forward once.
        let tx = write_tx(conn).map_err(open_err)?;
        let version = user_version(&tx)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
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
    Ok(())
}

/// Schema changes, in order: the database's `user_version` says how many are applied.
/// A change is only ever appended, never edited, so any older database can be brought
/// forward.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // 8: what a check carries from one run to the next (a `log` check's read position)
    "
CREATE TABLE check_state (
    job   TEXT PRIMARY KEY,
    state TEXT NOT NULL            -- the check's own text (Probe::commit)
);
",
    // 9: silences (`klaxon silence`), and what silenced a run's alerts
    "
CREATE TABLE silences (
    id         INTEGER PRIMARY KEY,
    jobs       TEXT    NOT NULL,  -- JSON array of job names or globs
    starts_at  INTEGER NOT NULL,  -- unix ms
    ends_at    INTEGER NOT NULL,  -- unix ms; `silence expire` moves it to that moment
    comment    TEXT,
    created_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX silences_by_end ON silences (ends_at);
ALTER TABLE runs ADD COLUMN silenced TEXT;  -- a silence or maintenance window, by name
",
    // 10: the response time a run measured, as a column (the dashboard's sparklines read
    // it for every job at once; the metrics JSON is too slow to take apart per row).
    // Older runs are filled from their metrics by the rule of `dashboard::latency`.
    "
ALTER TABLE runs ADD COLUMN latency_ms REAL;  -- NULL when the check measures none
UPDATE runs SET latency_ms = (
    SELECT json_extract(m.value, '$.value') FROM json_each(runs.metrics) AS m
    WHERE json_extract(m.value, '$.name') IN ('latency_ms', 'connect_ms', 'rtt_avg')
       OR (json_extract(m.value, '$.name') = 'time' AND json_extract(m.value, '$.unit') = 'ms')
    LIMIT 1
) WHERE metrics IS NOT NULL;
",
];

pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;
