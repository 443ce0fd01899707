//! Silences (`klaxon silence`, `/api/silences`): "stop telling me about these jobs until
//! then". A silence names jobs by name or glob (`backup-*`) and covers them from its
//! start until its end; expiring one by hand moves its end to that moment, so history
//! keeps what was silenced when (until `[history] keep` prunes it). They live in the
//! store, not the config, so `klaxon silence` works whether or not the agent runs; the
//! agent reads them in the transaction that records each run.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError, from_ms, ms, write_tx};

/// One silence, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Silence {
    pub id: i64,
    /// Job names or globs (`*`, `?`, `[abc]`).
    pub jobs: Vec<String>,
    #[serde(serialize_with = "rfc3339")]
    pub starts_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub ends_at: DateTime<Utc>,
    pub comment: Option<String>,
    /// Who made it: the user who ran `klaxon silence`, or `api`.
    pub created_by: String,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339())
}

impl Silence {
    /// Whether it names `job`, by name or glob.
    pub fn covers(&self, job: &str) -> bool {
        self.jobs.iter().any(|p| matches(p, job))
    }

    /// Whether it is in force at `t`.
    pub fn active_at(&self, t: DateTime<Utc>) -> bool {
        self.starts_at <= t && t < self.ends_at
    }

    /// How messages and history name it: `silence 3 (db upgrade)`.
    pub fn describe(&self) -> String {
        match &self.comment {
            Some(c) => format!("silence {} ({c})", self.id),
            None => format!("silence {}", self.id),
        }
    }

    /// What it does to a run it covers: silenced, by it, until its end.
    pub fn silenced(&self) -> crate::alert::Silenced {
        crate::alert::Silenced {
            by: self.describe(),
            until: self.ends_at,
        }
    }
}

/// Whether the job name or glob `pattern` matches `job`.
pub fn matches(pattern: &str, job: &str) -> bool {
    match glob::Pattern::new(pattern) {
        Ok(p) => p.matches(job),
        Err(_) => pattern == job,
    }
}

/// Checks a job name or glob given to `klaxon silence` or the API.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.trim().is_empty() {
        return Err("a job name or glob must not be empty".into());
    }
    glob::Pattern::new(pattern)
        .map(|_| ())
        .map_err(|e| format!("`{pattern}` is not a valid glob: {e}"))
}

/// A silence to add.
#[derive(Debug, Clone)]
pub struct NewSilence {
    pub jobs: Vec<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub comment: Option<String>,
    pub created_by: String,
}

const COLUMNS: &str = "id, jobs, starts_at, ends_at, comment, created_by, created_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Silence, String)> {
    Ok((
        Silence {
            id: r.get(0)?,
            jobs: Vec::new(),
            starts_at: from_ms(r.get(2)?),
            ends_at: from_ms(r.get(3)?),
            comment: r.get(4)?,
            created_by: r.get(5)?,
            created_at: from_ms(r.get(6)?),
        },
        r.get(1)?,
    ))
}

fn decode((mut silence, jobs): (Silence, String)) -> Result<Silence, StoreError> {
    silence.jobs = serde_json::from_str(&jobs)?;
    Ok(silence)
}

/// The silence in force at `at` that covers `job` and ends last, on `conn`.
pub(super) fn silence_in(
    conn: &Connection,
    job: &str,
    at: DateTime<Utc>,
) -> Result<Option<Silence>, StoreError> {
    Ok(SilenceReads::default().of(conn, job, at)?.cloned())
}

/// The silences the runs of one transaction are checked against, read from the table
/// once, not once a run: a storm of a hundred runs in one group commit is one read.
/// The transaction holds the write lock and writes no silence, so what was read stays
/// what is stored until it ends.
#[derive(Default)]
pub(super) struct SilenceReads {
    /// The silences that end after `from`, ending last first: every one in force at
    /// `from` or later.
    read: Option<(DateTime<Utc>, Vec<Silence>)>,
}

impl SilenceReads {
    /// The silence in force at `at` that covers `job` and ends last.
    pub(super) fn of(
        &mut self,
        conn: &Connection,
        job: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<&Silence>, StoreError> {
        if self.read.as_ref().is_none_or(|(from, _)| at < *from) {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM silences WHERE ends_at > ?1 ORDER BY ends_at DESC, id"
            ))?;
            let silences = stmt
                .query_map(params![ms(at)], row)?
                .map(|r| decode(r?))
                .collect::<Result<Vec<_>, _>>()?;
            self.read = Some((at, silences));
        }
        Ok(self
            .read
            .as_ref()
            .and_then(|(_, silences)| silences.iter().find(|s| s.active_at(at) && s.covers(job))))
    }
}

impl Store {
    /// Adds a silence; returns it with its id.
    pub fn add_silence(&self, new: NewSilence, now: DateTime<Utc>) -> Result<Silence, StoreError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        tx.prepare_cached(
            "INSERT INTO silences (jobs, starts_at, ends_at, comment, created_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            serde_json::to_string(&new.jobs)?,
            ms(new.starts_at),
            ms(new.ends_at),
            new.comment,
            new.created_by,
            ms(now),
        ])?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        drop(conn);
        self.committed();
        Ok(Silence {
            id,
            jobs: new.jobs,
            starts_at: new.starts_at,
            ends_at: new.ends_at,
            comment: new.comment,
            created_by: new.created_by,
            created_at: now,
        })
    }

    /// Silences that have not ended at `now` (with `all`, the ended ones too, newest
    /// first after them).
    pub fn silences(&self, now: DateTime<Utc>, all: bool) -> Result<Vec<Silence>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM silences WHERE ?1 OR ends_at > ?2
             ORDER BY ends_at <= ?2, starts_at, id"
        ))?;
        let rows = stmt.query_map(params![all, ms(now)], row)?;
        rows.map(|r| decode(r?)).collect()
    }

    /// Ends silence `id` at `now`. `Ok(None)`: no such silence; a silence that has
    /// ended already is returned as it is.
    pub fn expire_silence(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Silence>, StoreError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        tx.prepare_cached("UPDATE silences SET ends_at = ?2 WHERE id = ?1 AND ends_at > ?2")?
            .execute(params![id, ms(now)])?;
        let silence = tx
            .prepare_cached(&format!("SELECT {COLUMNS} FROM silences WHERE id = ?1"))?
            .query_row(params![id], row)
            .optional()?
            .map(decode)
            .transpose()?;
        tx.commit()?;
        drop(conn);
        self.committed();
        Ok(silence)
    }

    /// The silence in force at `at` that covers `job` and ends last.
    pub fn silence_of(&self, job: &str, at: DateTime<Utc>) -> Result<Option<Silence>, StoreError> {
        silence_in(&self.conn(), job, at)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + min * 60, 0).unwrap()
    }

    fn new(jobs: &[&str], from: i64, to: i64, comment: Option<&str>) -> NewSilence {
        NewSilence {
            jobs: jobs.iter().map(|j| j.to_string()).collect(),
            starts_at: t(from),
            ends_at: t(to),
            comment: comment.map(str::to_owned),
            created_by: "ann".into(),
        }
    }

    #[test]
    fn a_silence_covers_its_jobs_by_name_or_glob_while_in_force_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let backup = store
            .add_silence(new(&["backup-*"], 0, 60, Some("disk swap")), t(0))
            .unwrap();
        let api = store
            .add_silence(new(&["api"], 0, 120, None), t(0))
            .unwrap();
        assert_ne!(backup.id, api.id);
        let store = Store::open(dir.path()).unwrap();
        let of = |job: &str, at| store.silence_of(job, t(at)).unwrap().map(|s| s.id);
        assert_eq!(of("backup-db", 30), Some(backup.id));
        assert_eq!(of("backup-db", 60), None, "ended");
        assert_eq!(of("backups", 30), None);
        assert_eq!(of("api", 90), Some(api.id));
        assert_eq!(of("web", 30), None);
        assert_eq!(
            store
                .silence_of("backup-db", t(1))
                .unwrap()
                .unwrap()
                .describe(),
            format!("silence {} (disk swap)", backup.id)
        );
    }

    #[test]
    fn expiring_ends_a_silence_now_and_keeps_it_for_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s = store
            .add_silence(new(&["api"], 0, 120, None), t(0))
            .unwrap();
        assert_eq!(store.silences(t(10), false).unwrap().len(), 1);
        let expired = store.expire_silence(s.id, t(10)).unwrap().unwrap();
        assert_eq!(expired.ends_at, t(10));
        assert!(store.silence_of("api", t(11)).unwrap().is_none());
        assert!(store.silences(t(11), false).unwrap().is_empty());
        assert_eq!(
            store.silences(t(11), true).unwrap(),
            std::slice::from_ref(&expired)
        );
        // Expiring again changes nothing; an unknown id is `None`.
        assert_eq!(
            store.expire_silence(s.id, t(20)).unwrap().unwrap().ends_at,
            t(10)
        );
        assert!(store.expire_silence(999, t(20)).unwrap().is_none());
    }

    #[test]
    fn a_bad_glob_is_refused_with_what_is_wrong() {
        assert!(check_pattern("backup-*").is_ok());
        let err = check_pattern("backup-[").unwrap_err();
        assert!(err.starts_with("`backup-[` is not a valid glob"), "{err}");
        assert!(check_pattern(" ").is_err());
    }
}
