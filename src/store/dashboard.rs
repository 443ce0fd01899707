//! What the dashboard's pages read: the recent runs of every job (the overview's bars
//! and sparklines) in one query, a job's incidents and its duration and latency series
//! (the job page), every job's alert state in one query.
//!
//! The overview of 1,000 jobs renders in a few milliseconds only if nothing is asked
//! once per job: each read here is one statement for all the jobs it is given, walking
//! the index of runs by job and start for each.
//!
//! A run's latency is the response time its check measured: an `http` check's
//! `latency_ms`, a `tcp` check's `connect_ms`, a `ping`'s `rtt_avg`, a `dns` check's
//! (or a script's) `time` in `ms`. It is kept in a column of its own ([`latency`] picks
//! it when the run is written; migration 10 filled older runs from their metrics): the
//! metrics JSON of 90,000 runs is too slow to take apart for one page. A run's
//! duration (`elapsed`) is the whole run, retries and their waits included, so it is
//! not the latency; the job page charts the latency where the check measures one and
//! the duration otherwise.
//!
//! A judged run is one with a result (`ok`, `warning`, `critical`, `unknown`); skipped
//! fires, interrupted runs and runs while the machine was offline are not judged (as
//! for the uptime badge), and the `outbox` records of messages handled by hand are not
//! runs at all.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use crate::alert::JobState;

use super::{Store, StoreError, from_ms, lock};

/// How many of a job's latest runs the overview's bar and sparkline show.
pub const RECENT_RUNS: usize = 90;

/// How a run counts: its result, or that it was not judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// Skipped, interrupted, offline: says nothing about the target.
    NotJudged,
    Ok,
    Warning,
    Unknown,
    Critical,
}

impl Verdict {
    /// The verdict of a run stored with `severity` (and `skipped`, set for fires that
    /// did not run).
    pub fn of(severity: &str, skipped: bool) -> Self {
        match severity {
            _ if skipped => Verdict::NotJudged,
            "ok" => Verdict::Ok,
            "warning" => Verdict::Warning,
            "critical" => Verdict::Critical,
            "unknown" => Verdict::Unknown,
            _ => Verdict::NotJudged,
        }
    }

    /// The CSS class the dashboard's SVG gives it (the page's stylesheet colours it):
    /// `sev-ok`, `sev-warning`, `sev-critical`, `sev-unknown`, `sev-none`.
    pub fn class(self) -> &'static str {
        match self {
            Verdict::Ok => "sev-ok",
            Verdict::Warning => "sev-warning",
            Verdict::Critical => "sev-critical",
            Verdict::Unknown => "sev-unknown",
            Verdict::NotJudged => "sev-none",
        }
    }

    /// Whether the run has a result.
    pub fn judged(self) -> bool {
        self != Verdict::NotJudged
    }

    /// From the rank the incidents query computes (0 none … 3 critical).
    fn from_rank(rank: i64) -> Self {
        match rank {
            1 => Verdict::Warning,
            2 => Verdict::Unknown,
            3 => Verdict::Critical,
            _ => Verdict::Ok,
        }
    }
}

/// One run as the dashboard draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentRun {
    pub started_at: DateTime<Utc>,
    /// As stored: `ok`, `warning`, `critical`, `unknown`, `skipped`, `interrupted`,
    /// `offline`.
    pub severity: String,
    pub verdict: Verdict,
    /// The whole run, retries included.
    pub elapsed: Duration,
    /// The response time the check measured, if it measures one ([`latency`]).
    pub latency_ms: Option<f64>,
    pub summary: String,
}

/// A stretch of a job's judged runs that were not ok: from the first of them to the
/// next ok run. Unjudged runs neither end nor start one.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// The start of its first not-ok run.
    pub from: DateTime<Utc>,
    /// The start of the ok run that ended it; `None` while it lasts.
    pub to: Option<DateTime<Utc>>,
    /// The worst result among its runs.
    pub worst: Verdict,
    /// How many judged runs it spans.
    pub runs: u64,
    /// The summary of its first run: why it went down.
    pub summary: String,
}

impl Incident {
    /// How long it lasted, or has lasted until `now` while it lasts.
    pub fn duration(&self, now: DateTime<Utc>) -> Duration {
        let end = self.to.unwrap_or(now);
        (end - self.from).to_std().unwrap_or_default()
    }
}

/// The latency among a run's metrics: the first of `latency_ms`, `connect_ms`,
/// `rtt_avg`, or `time` in `ms`. Migration 10 applies the same rule in SQL.
pub fn latency(metrics: &[klaxon_checks::Metric]) -> Option<f64> {
    metrics
        .iter()
        .find(|m| {
            matches!(m.name.as_str(), "latency_ms" | "connect_ms" | "rtt_avg")
                || (m.name == "time" && m.unit.as_deref() == Some("ms"))
        })
        .map(|m| m.value)
}

/// `names` as the JSON array the queries take apart with `json_each`: one statement for
/// any number of jobs, without building SQL.
pub(super) fn json_names<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<String, StoreError> {
    Ok(serde_json::to_string(
        &names.into_iter().collect::<Vec<_>>(),
    )?)
}

/// What the store remembers of every job's latest [`RECENT_RUNS`] runs for the
/// overview, once it was first asked (an agent whose page nobody opens keeps nothing):
/// each later ask reads only the runs written since, by any process, found by their
/// id. Runs pruned from the store stay here until newer ones push them out (only a
/// `max_runs` under [`RECENT_RUNS`] shows the difference).
#[derive(Debug, Default)]
pub(super) struct Remembered {
    /// Every run with an id up to this one has been read.
    through: i64,
    /// Each job's latest runs, oldest first; a job is here once its history was read.
    jobs: HashMap<String, Arc<Vec<RecentRun>>>,
}

/// Every job's alert state as [`Store::job_states`] last read it.
#[derive(Default)]
pub(super) struct StateCache {
    /// `PRAGMA data_version` at the last read; `None` before the first. While it is
    /// the same, no other connection has committed: only `dirty` can have changed.
    version: Option<i64>,
    /// The jobs whose state this store wrote since the last read.
    dirty: HashSet<String>,
    /// Each job's state as stored, to parse only what changed.
    texts: HashMap<String, String>,
    states: Arc<HashMap<String, Arc<JobState>>>,
}

impl StateCache {
    /// Has the next read look again at `job`'s state: called with the connection
    /// held, before its state is written (a write rolled back is read again for
    /// nothing).
    pub(super) fn dirty(&mut self, job: &str) {
        if self.version.is_some() && !self.dirty.contains(job) {
            self.dirty.insert(job.to_owned());
        }
    }

    fn bring_up_to_date(&mut self, conn: &rusqlite::Connection) -> Result<(), StoreError> {
        let version: i64 = conn.pragma_query_value(None, "data_version", |r| r.get(0))?;
        if self.version == Some(version) {
            let mut stmt = conn.prepare_cached("SELECT state FROM job_state WHERE job = ?1")?;
            for job in std::mem::take(&mut self.dirty) {
                let text: Option<String> = stmt.query_row([&job], |r| r.get(0)).optional()?;
                match text {
                    Some(text) => self.update(&job, &text)?,
                    None => self.forget(&job),
                }
            }
            return Ok(());
        }
        // One pass over the table (a row per job ever run) costs less than a lookup
        // per job.
        self.dirty.clear();
        let mut seen = HashSet::with_capacity(self.texts.len());
        let mut stmt = conn.prepare_cached("SELECT job, state FROM job_state")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let job = r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
            let text = r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            self.update(job, text)?;
            seen.insert(job.to_owned());
        }
        let gone: Vec<String> = self
            .texts
            .keys()
            .filter(|j| !seen.contains(*j))
            .cloned()
            .collect();
        for job in gone {
            self.forget(&job);
        }
        self.version = Some(version);
        Ok(())
    }

    fn update(&mut self, job: &str, text: &str) -> Result<(), StoreError> {
        if self.texts.get(job).is_some_and(|t| t == text) {
            return Ok(());
        }
        let state = Arc::new(serde_json::from_str::<JobState>(text)?);
        Arc::make_mut(&mut self.states).insert(job.to_owned(), state);
        self.texts.insert(job.to_owned(), text.to_owned());
        Ok(())
    }

    fn forget(&mut self, job: &str) {
        if self.texts.remove(job).is_some() {
            Arc::make_mut(&mut self.states).remove(job);
        }
    }
}

/// One row of the reads of recent runs: the job and its run.
fn recent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, RecentRun)> {
    let severity: String = r.get(1)?;
    Ok((
        r.get(0)?,
        RecentRun {
            started_at: from_ms(r.get(2)?),
            verdict: Verdict::of(&severity, r.get(3)?),
            severity,
            elapsed: Duration::from_millis(r.get::<_, i64>(4)?.max(0) as u64),
            latency_ms: r.get(5)?,
            summary: r.get(6)?,
        },
    ))
}

/// `run` in its place in `runs` (oldest first; a run that finished late may have
/// started before others), keeping the newest [`RECENT_RUNS`].
fn remember(runs: &mut Vec<RecentRun>, run: RecentRun) {
    let at = runs.partition_point(|r| r.started_at <= run.started_at);
    runs.insert(at, run);
    if runs.len() > RECENT_RUNS {
        runs.drain(..runs.len() - RECENT_RUNS);
    }
}

impl Store {
    /// The latest `per_job` runs (at most [`RECENT_RUNS`]: what the store remembers)
    /// of each of `jobs`, skipped and unjudged ones included, the `outbox` records not;
    /// oldest first. A job without runs has no entry.
    ///
    /// The first call reads every job's history in one statement; later ones read only
    /// the runs written since (one statement for all jobs), and the history of a job
    /// not asked for before. The lists are shared, not copied.
    pub fn recent_runs<'a>(
        &self,
        jobs: impl IntoIterator<Item = &'a str>,
        per_job: usize,
    ) -> Result<HashMap<String, Arc<Vec<RecentRun>>>, StoreError> {
        let jobs: Vec<&str> = jobs.into_iter().collect();
        let conn = self.conn();
        let mut memory = lock(&self.recent);
        let memory = &mut *memory;
        if memory.jobs.is_empty() {
            // Nothing remembered to bring up to date: start from the newest run.
            memory.through = conn
                .prepare_cached("SELECT coalesce(max(id), 0) FROM runs")?
                .query_row([], |r| r.get(0))?;
        }
        // The runs written since the last look, of the jobs whose history is here.
        let mut stmt = conn.prepare_cached(
            "SELECT job, severity, started_at, skipped IS NOT NULL, elapsed_ms, latency_ms,
                    summary, id
             FROM runs WHERE id > ?1 AND severity != 'outbox' ORDER BY id",
        )?;
        let mut rows = stmt.query(params![memory.through])?;
        while let Some(r) = rows.next()? {
            let (job, run) = recent_row(r)?;
            memory.through = memory.through.max(r.get(7)?);
            if let Some(runs) = memory.jobs.get_mut(&job) {
                remember(Arc::make_mut(runs), run);
            }
        }
        // The history, up to what was read, of the jobs asked for the first time.
        let new: Vec<&str> = jobs
            .iter()
            .copied()
            .filter(|j| !memory.jobs.contains_key(*j))
            .collect();
        if !new.is_empty() {
            let mut stmt = conn.prepare_cached(
                "SELECT j.value, r.severity, r.started_at, r.skipped IS NOT NULL, r.elapsed_ms,
                        r.latency_ms, r.summary
                 FROM json_each(?1) AS j
                 JOIN runs AS r ON r.id IN (
                     SELECT id FROM runs
                     WHERE job = j.value AND severity != 'outbox' AND id <= ?2
                     ORDER BY started_at DESC, id DESC LIMIT ?3)
                 ORDER BY j.key, r.started_at, r.id",
            )?;
            let mut rows = stmt.query(params![
                json_names(new.iter().copied())?,
                memory.through,
                RECENT_RUNS as i64
            ])?;
            for job in &new {
                memory.jobs.insert((*job).to_owned(), Arc::default());
            }
            while let Some(r) = rows.next()? {
                let (job, run) = recent_row(r)?;
                if let Some(runs) = memory.jobs.get_mut(&job) {
                    Arc::make_mut(runs).push(run);
                }
            }
        }
        let mut out = HashMap::with_capacity(jobs.len());
        for job in jobs {
            let Some(runs) = memory.jobs.get(job).filter(|r| !r.is_empty()) else {
                continue;
            };
            let runs = if runs.len() > per_job {
                Arc::new(runs[runs.len() - per_job..].to_vec())
            } else {
                Arc::clone(runs)
            };
            out.insert(job.to_owned(), runs);
        }
        Ok(out)
    }

    /// The latest `limit` runs of `job`, oldest first, read from the store (any
    /// number): the job page's chart of duration and latency over time.
    pub fn series(&self, job: &str, limit: usize) -> Result<Vec<RecentRun>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT job, severity, started_at, skipped IS NOT NULL, elapsed_ms, latency_ms,
                    summary
             FROM runs WHERE job = ?1 AND severity != 'outbox'
             ORDER BY started_at DESC, id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![job, limit as i64], recent_row)?;
        let mut runs = rows
            .map(|r| r.map(|(_, run)| run))
            .collect::<Result<Vec<_>, _>>()?;
        runs.reverse();
        Ok(runs)
    }

    /// The latest `limit` incidents of `job`, newest first, from its whole kept
    /// history, in one statement (window functions over the job's judged runs).
    pub fn incidents(&self, job: &str, limit: usize) -> Result<Vec<Incident>, StoreError> {
        let conn = self.conn();
        // A group is an ok run and the not-ok runs after it (group 0: those before the
        // first ok run); its not-ok runs are an incident, ended by the next group's ok.
        let mut stmt = conn.prepare_cached(
            "WITH judged AS (
                 SELECT started_at, severity, summary,
                        sum(severity = 'ok') OVER w AS oks,
                        lag(severity = 'ok', 1, 1) OVER w AS was_up
                 FROM runs
                 WHERE job = ?1 AND skipped IS NULL
                   AND severity IN ('ok', 'warning', 'critical', 'unknown')
                 WINDOW w AS (ORDER BY started_at, id)
             ),
             groups AS (
                 SELECT oks, min(started_at) AS first_ms,
                        min(started_at) FILTER (WHERE severity != 'ok') AS from_ms,
                        count(*) FILTER (WHERE severity != 'ok') AS runs,
                        max(CASE severity WHEN 'warning' THEN 1 WHEN 'unknown' THEN 2
                                          WHEN 'critical' THEN 3 ELSE 0 END) AS worst,
                        max(CASE WHEN severity != 'ok' AND was_up THEN summary END) AS summary
                 FROM judged GROUP BY oks
             ),
             ended AS (
                 SELECT from_ms, lead(first_ms) OVER (ORDER BY oks) AS to_ms, runs, worst,
                        summary
                 FROM groups
             )
             SELECT from_ms, to_ms, runs, worst, summary FROM ended WHERE runs > 0
             ORDER BY from_ms DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![job, limit as i64], |r| {
            Ok(Incident {
                from: from_ms(r.get(0)?),
                to: r.get::<_, Option<i64>>(1)?.map(from_ms),
                runs: r.get::<_, i64>(2)?.max(0) as u64,
                worst: Verdict::from_rank(r.get(3)?),
                summary: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every job's alert state, by job (a job never run has none). The first call
    /// reads the whole table; after it, while no other connection has written (`PRAGMA
    /// data_version` says), only the jobs this store wrote since are read again, and a
    /// state is parsed only when its text changed. The map is shared with the next
    /// call, and changed in place when no page holds it any more.
    pub fn job_states(&self) -> Result<Arc<HashMap<String, Arc<JobState>>>, StoreError> {
        let conn = self.conn();
        let mut cache = lock(&self.states);
        let read = cache.bring_up_to_date(&conn);
        if read.is_err() {
            // What was dirty may not have been read: start again from the table.
            cache.version = None;
        }
        read?;
        Ok(Arc::clone(&cache.states))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use klaxon_checks::Metric;
    use rusqlite::Connection;

    use super::*;
    use crate::store::RunRecord;
    use crate::store::migrations::MIGRATIONS;
    use crate::store::tests::{run, t};

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn judged(store: &Store, r: &RunRecord) {
        store
            .record_run(r, |_| (JobState::default(), vec![]))
            .unwrap();
    }

    fn unjudged(store: &Store, job: &str, at: i64, severity: &str) {
        let mut r = run(job, at, severity);
        r.skipped = Some(severity.into());
        r.metrics.clear();
        store.record_skip(&r).unwrap();
    }

    fn said(job: &str, at: i64, severity: &str, summary: &str) -> RunRecord {
        let mut r = run(job, at, severity);
        r.summary = summary.into();
        r
    }

    #[test]
    fn recent_runs_of_every_job_come_from_one_query_oldest_first() {
        let (_dir, store) = open();
        for at in 0..5 {
            judged(&store, &said("api", at * 10, "ok", &format!("run {at}")));
        }
        unjudged(&store, "api", 45, "skipped");
        // A message handled by hand is recorded in the history, but is no run.
        store.record_skip(&run("api", 46, "outbox")).unwrap();
        let mut tcp = run("db", 3, "critical");
        tcp.metrics = vec![Metric::new("connect_ms", 4.25).with_unit("ms")];
        tcp.elapsed = Duration::from_millis(2500);
        judged(&store, &tcp);
        let mut script = run("db", 4, "ok");
        script.metrics = vec![Metric::new("time", 1.5).with_unit("s")];
        judged(&store, &script);

        let recent = store.recent_runs(["api", "db", "never"], 3).unwrap();
        assert_eq!(recent.len(), 2, "a job without runs has no entry");
        let api: Vec<_> = recent["api"]
            .iter()
            .map(|r| {
                (
                    r.started_at,
                    r.severity.as_str(),
                    r.verdict,
                    r.summary.as_str(),
                )
            })
            .collect();
        assert_eq!(
            api,
            [
                (t(30), "ok", Verdict::Ok, "run 3"),
                (t(40), "ok", Verdict::Ok, "run 4"),
                (t(45), "skipped", Verdict::NotJudged, "HTTP 500"),
            ]
        );
        assert_eq!(recent["api"][0].latency_ms, Some(12.5));
        assert_eq!(recent["api"][2].latency_ms, None);
        assert_eq!(recent["api"][0].elapsed, Duration::from_millis(1000));
        assert_eq!(
            *recent["db"],
            [
                RecentRun {
                    started_at: t(3),
                    severity: "critical".into(),
                    verdict: Verdict::Critical,
                    elapsed: Duration::from_millis(2500),
                    latency_ms: Some(4.25),
                    summary: "HTTP 500".into(),
                },
                RecentRun {
                    started_at: t(4),
                    severity: "ok".into(),
                    verdict: Verdict::Ok,
                    elapsed: Duration::from_millis(1000),
                    // A script's `time` in seconds is not taken for a latency.
                    latency_ms: None,
                    summary: "HTTP 500".into(),
                },
            ]
        );
        assert!(store.recent_runs([], 90).unwrap().is_empty());
        assert_eq!(store.series("api", 2).unwrap(), recent["api"][1..]);
        assert!(store.series("never", 2).unwrap().is_empty());
    }

    /// After the first read, what the store remembers is brought up to date with the
    /// runs written since, by this process or another, in their places by start.
    #[test]
    fn recent_runs_follow_what_is_written_after_the_first_read() {
        let (dir, store) = open();
        for at in 0..3 {
            judged(&store, &said("api", at, "ok", "old"));
        }
        let first = store.recent_runs(["api"], RECENT_RUNS).unwrap();
        assert_eq!(first["api"].len(), 3);

        // Another process (another connection to the same file) records runs: one that
        // started before the newest (it finished late), and a job not asked for yet.
        let other = Store::open(dir.path()).unwrap();
        judged(&other, &said("api", 10, "critical", "down"));
        judged(&other, &said("api", 1, "warning", "late"));
        judged(&other, &said("db", 5, "ok", "db up"));
        store.record_skip(&run("api", 11, "outbox")).unwrap();
        let started = |runs: &[RecentRun]| -> Vec<(DateTime<Utc>, String)> {
            runs.iter()
                .map(|r| (r.started_at, r.summary.clone()))
                .collect()
        };
        let now = store.recent_runs(["api", "db"], RECENT_RUNS).unwrap();
        assert_eq!(
            started(&now["api"]),
            [
                (t(0), "old".into()),
                (t(1), "old".into()),
                (t(1), "late".into()),
                (t(2), "old".into()),
                (t(10), "down".into()),
            ]
        );
        assert_eq!(started(&now["db"]), [(t(5), "db up".into())]);
        // What was handed out before is not changed under its holder.
        assert_eq!(first["api"].len(), 3);
        // Fewer than remembered: the newest.
        assert_eq!(
            started(&store.recent_runs(["api"], 2).unwrap()["api"]),
            [(t(2), "old".into()), (t(10), "down".into())]
        );

        // At most RECENT_RUNS are kept, the newest.
        for at in 100..200 {
            judged(&store, &said("api", at, "ok", &format!("run {at}")));
        }
        let api = &store.recent_runs(["api"], RECENT_RUNS).unwrap()["api"];
        assert_eq!(api.len(), RECENT_RUNS);
        assert_eq!(api[0].started_at, t(110));
        assert_eq!(api[RECENT_RUNS - 1].started_at, t(199));
        // A fresh store reads the same from disk.
        let fresh = Store::open(dir.path()).unwrap();
        assert_eq!(
            fresh.recent_runs(["api"], RECENT_RUNS).unwrap()["api"],
            *api
        );
    }

    #[test]
    fn a_job_named_like_sql_or_json_is_only_a_name() {
        let (_dir, store) = open();
        let odd = r#"a"b', ) OR 1=1 --"#;
        judged(&store, &run(odd, 0, "ok"));
        judged(&store, &run("other", 0, "ok"));
        let recent = store.recent_runs([odd], 90).unwrap();
        assert_eq!(recent.keys().collect::<Vec<_>>(), [odd]);
    }

    #[test]
    fn incidents_are_stretches_of_judged_runs_that_were_not_ok() {
        let (_dir, store) = open();
        // Down from the first run until 30; unjudged runs in between change nothing.
        judged(&store, &said("api", 0, "warning", "slow"));
        unjudged(&store, "api", 5, "interrupted");
        judged(&store, &said("api", 10, "critical", "HTTP 500"));
        unjudged(&store, "api", 15, "offline");
        judged(&store, &said("api", 20, "warning", "slower"));
        judged(&store, &said("api", 30, "ok", "HTTP 200"));
        unjudged(&store, "api", 35, "skipped");
        judged(&store, &said("api", 40, "ok", "HTTP 200"));
        // A single bad run, ended by the next ok.
        judged(&store, &said("api", 50, "unknown", "cannot tell"));
        judged(&store, &said("api", 60, "ok", "HTTP 200"));
        // Down since 70 and still down.
        judged(&store, &said("api", 70, "critical", "refused"));
        unjudged(&store, "api", 75, "skipped");
        judged(&store, &said("api", 80, "warning", "slow"));
        judged(&store, &said("db", 70, "critical", "another job"));

        let incidents = store.incidents("api", 10).unwrap();
        assert_eq!(
            incidents,
            [
                Incident {
                    from: t(70),
                    to: None,
                    worst: Verdict::Critical,
                    runs: 2,
                    summary: "refused".into(),
                },
                Incident {
                    from: t(50),
                    to: Some(t(60)),
                    worst: Verdict::Unknown,
                    runs: 1,
                    summary: "cannot tell".into(),
                },
                Incident {
                    from: t(0),
                    to: Some(t(30)),
                    worst: Verdict::Critical,
                    runs: 3,
                    summary: "slow".into(),
                },
            ]
        );
        assert_eq!(incidents[0].duration(t(100)), Duration::from_secs(30));
        assert_eq!(incidents[2].duration(t(100)), Duration::from_secs(30));
        assert_eq!(store.incidents("api", 1).unwrap(), incidents[..1]);
        assert!(store.incidents("never", 10).unwrap().is_empty());

        let (_dir, fine) = open();
        judged(&fine, &run("api", 0, "ok"));
        judged(&fine, &run("api", 1, "ok"));
        assert!(fine.incidents("api", 10).unwrap().is_empty());
    }

    #[test]
    fn job_states_are_read_once_then_only_what_changed() {
        let (dir, store) = open();
        let down = JobState {
            consecutive_failures: 2,
            ..JobState::default()
        };
        store
            .record_run(&run("api", 0, "critical"), |_| (down.clone(), vec![]))
            .unwrap();
        store
            .record_run(&run("db", 0, "ok"), |_| (JobState::default(), vec![]))
            .unwrap();
        let states = store.job_states().unwrap();
        assert_eq!(states.len(), 2, "a job never run has no state");
        assert_eq!(*states["api"], down);
        assert_eq!(*states["db"], JobState::default());
        // Unchanged: the state parsed last time. Changed: the new one.
        let again = store.job_states().unwrap();
        assert!(Arc::ptr_eq(&states["api"], &again["api"]));
        let again_db = Arc::clone(&again["db"]);
        drop((states, again));
        let worse = JobState {
            consecutive_failures: 3,
            ..down.clone()
        };
        store
            .record_run(&run("api", 10, "critical"), |_| (worse.clone(), vec![]))
            .unwrap();
        let after = store.job_states().unwrap();
        assert_eq!(*after["api"], worse);
        assert!(
            Arc::ptr_eq(&after["db"], &again_db),
            "only the job written is read again"
        );
        drop(after);

        // Another process's write is seen too (the table is read again).
        let other = Connection::open(dir.path().join("klaxon.db")).unwrap();
        let flapping = JobState {
            consecutive_failures: 7,
            ..JobState::default()
        };
        other
            .execute(
                "UPDATE job_state SET state = ?1 WHERE job = 'db'",
                [serde_json::to_string(&flapping).unwrap()],
            )
            .unwrap();
        other
            .execute("DELETE FROM job_state WHERE job = 'api'", [])
            .unwrap();
        let seen = store.job_states().unwrap();
        assert_eq!(*seen["db"], flapping);
        assert!(!seen.contains_key("api"), "a state deleted is gone");
    }

    #[test]
    fn latency_is_the_measured_response_time_of_each_kind_of_check() {
        let m = |name: &str, unit: Option<&str>| {
            let mut m = Metric::new(name, 7.0);
            m.unit = unit.map(str::to_owned);
            vec![Metric::new("status", 200.0), m]
        };
        assert_eq!(latency(&m("latency_ms", Some("ms"))), Some(7.0));
        assert_eq!(latency(&m("connect_ms", Some("ms"))), Some(7.0));
        assert_eq!(latency(&m("rtt_avg", Some("ms"))), Some(7.0));
        assert_eq!(latency(&m("time", Some("ms"))), Some(7.0));
        assert_eq!(latency(&m("time", Some("s"))), None);
        assert_eq!(latency(&m("free_bytes", Some("B"))), None);
        assert_eq!(latency(&[]), None);
    }

    /// Runs written before migration 10 get their latency from their metrics, by the
    /// same rule as new ones.
    #[test]
    fn older_runs_get_their_latency_from_their_metrics() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("klaxon.db")).unwrap();
            for migration in &MIGRATIONS[..9] {
                conn.execute_batch(migration).unwrap();
            }
            conn.pragma_update(None, "user_version", 9).unwrap();
            let metrics = [
                (
                    1,
                    Some(r#"[{"name":"latency_ms","value":12.5,"unit":"ms"}]"#),
                ),
                (
                    2,
                    Some(
                        r#"[{"name":"loss","value":0.0,"unit":"%"},{"name":"rtt_avg","value":0.75,"unit":"ms"}]"#,
                    ),
                ),
                (3, Some(r#"[{"name":"time","value":3.0,"unit":"ms"}]"#)),
                (4, Some(r#"[{"name":"time","value":3.0,"unit":"s"}]"#)),
                (5, None),
            ];
            for (at, metrics) in metrics {
                conn.execute(
                    "INSERT INTO runs (job, started_at, finished_at, severity, attempts, elapsed_ms, summary, metrics)
                     VALUES ('api', ?1, ?1, 'ok', 1, 9, 'fine', ?2)",
                    rusqlite::params![t(at).timestamp_millis(), metrics],
                )
                .unwrap();
            }
        }
        let store = Store::open(dir.path()).unwrap();
        let latencies: Vec<_> = store.recent_runs(["api"], 90).unwrap()["api"]
            .iter()
            .map(|r| r.latency_ms)
            .collect();
        assert_eq!(latencies, [Some(12.5), Some(0.75), Some(3.0), None, None]);
    }
}
