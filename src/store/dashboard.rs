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

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::params;

use crate::alert::JobState;

use super::{Store, StoreError, from_ms};

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
fn json_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<String, StoreError> {
    Ok(serde_json::to_string(
        &names.into_iter().collect::<Vec<_>>(),
    )?)
}

impl Store {
    /// The latest `per_job` runs of each of `jobs` (skipped and unjudged ones included,
    /// the `outbox` records not), oldest first. A job without runs has no entry. One
    /// statement for all the jobs.
    pub fn recent_runs<'a>(
        &self,
        jobs: impl IntoIterator<Item = &'a str>,
        per_job: usize,
    ) -> Result<HashMap<String, Vec<RecentRun>>, StoreError> {
        let names = json_names(jobs)?;
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT j.value, r.started_at, r.severity, r.skipped IS NOT NULL, r.elapsed_ms,
                    r.latency_ms, r.summary
             FROM json_each(?1) AS j
             JOIN runs AS r ON r.id IN (
                 SELECT id FROM runs WHERE job = j.value AND severity != 'outbox'
                 ORDER BY started_at DESC, id DESC LIMIT ?2)
             ORDER BY j.key, r.started_at, r.id",
        )?;
        let mut rows = stmt.query(params![names, per_job as i64])?;
        let mut out: HashMap<String, Vec<RecentRun>> = HashMap::new();
        let mut current: Option<(String, Vec<RecentRun>)> = None;
        while let Some(r) = rows.next()? {
            let job: String = r.get(0)?;
            let severity: String = r.get(2)?;
            let run = RecentRun {
                started_at: from_ms(r.get(1)?),
                verdict: Verdict::of(&severity, r.get(3)?),
                severity,
                elapsed: Duration::from_millis(r.get::<_, i64>(4)?.max(0) as u64),
                latency_ms: r.get(5)?,
                summary: r.get(6)?,
            };
            match &mut current {
                Some((name, runs)) if *name == job => runs.push(run),
                _ => {
                    if let Some((name, runs)) = current.replace((job, vec![run])) {
                        out.insert(name, runs);
                    }
                }
            }
        }
        if let Some((name, runs)) = current {
            out.insert(name, runs);
        }
        Ok(out)
    }

    /// The latest `limit` runs of `job`, oldest first: the job page's chart of
    /// duration and latency over time.
    pub fn series(&self, job: &str, limit: usize) -> Result<Vec<RecentRun>, StoreError> {
        Ok(self
            .recent_runs([job], limit)?
            .remove(job)
            .unwrap_or_default())
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

    /// The stored alert state of each of `jobs` that has one, in one statement (a job
    /// without an entry is in the default state: never run).
    pub fn job_states<'a>(
        &self,
        jobs: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashMap<String, JobState>, StoreError> {
        let names = json_names(jobs)?;
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT s.job, s.state FROM json_each(?1) AS j JOIN job_state AS s ON s.job = j.value",
        )?;
        let mut rows = stmt.query(params![names])?;
        let mut out = HashMap::new();
        while let Some(r) = rows.next()? {
            let json: String = r.get(1)?;
            out.insert(r.get(0)?, serde_json::from_str(&json)?);
        }
        Ok(out)
    }
}
