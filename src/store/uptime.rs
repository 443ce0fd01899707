//! A job's uptime over a window (the `/badge/JOB/uptime.svg` badge): how many of its
//! judged runs since a moment were ok, counted by one aggregate query on the index of
//! runs by job and start, however long the history.
//!
//! A judged run is one with a result: `ok`, `warning`, `critical` or `unknown`. Skipped
//! fires, runs cut short by a shutdown (`interrupted`), runs while the machine was
//! offline and the `outbox` records of messages handled by hand say nothing about the
//! target and are not counted. A silenced run is counted by its result: a silence mutes
//! the alerts, not the outage.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{Store, StoreError, ms};

/// Judged runs of a job in a window, and how many of them were ok.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Uptime {
    pub ok: u64,
    pub judged: u64,
}

impl Store {
    /// The judged runs of `job` started at or after `since`, and the ok ones among them.
    /// History older than `[history] keep` is gone, so the window is at most that.
    pub fn uptime(&self, job: &str, since: DateTime<Utc>) -> Result<Uptime, StoreError> {
        let (judged, ok): (i64, i64) = self
            .conn()
            .prepare_cached(
                "SELECT count(*), coalesce(sum(severity = 'ok'), 0) FROM runs
                 WHERE job = ?1 AND started_at >= ?2 AND skipped IS NULL
                   AND severity IN ('ok', 'warning', 'critical', 'unknown')",
            )?
            .query_row(params![job, ms(since)], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(Uptime {
            ok: ok.max(0) as u64,
            judged: judged.max(0) as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::alert::JobState;
    use crate::store::tests::{run, t};

    #[test]
    fn counts_judged_runs_in_the_window_and_the_ok_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let judged = |r: crate::store::RunRecord| {
            store
                .record_run(&r, |_| (JobState::default(), vec![]))
                .unwrap();
        };
        // Before the window: not counted.
        judged(run("api", 0, "critical"));
        for (at, severity) in [(10, "ok"), (11, "ok"), (12, "warning"), (13, "critical")] {
            judged(run("api", at, severity));
        }
        judged(run("api", 14, "unknown"));
        // A silenced run counts by its result.
        let mut silenced = run("api", 15, "ok");
        silenced.silenced = Some("silence 1".into());
        judged(silenced);
        // Another job's runs are its own.
        judged(run("db", 16, "critical"));
        // Runs that are no result: a skipped fire, an interrupted run, an offline one,
        // and the record of a message handled by hand.
        for (at, severity) in [(17, "skipped"), (18, "interrupted"), (19, "offline")] {
            let mut r = run("api", at, severity);
            r.skipped = Some(severity.into());
            store.record_skip(&r).unwrap();
        }
        store.record_skip(&run("api", 20, "outbox")).unwrap();

        assert_eq!(
            store.uptime("api", t(10)).unwrap(),
            Uptime { ok: 3, judged: 6 }
        );
        assert_eq!(
            store.uptime("api", t(0)).unwrap(),
            Uptime { ok: 3, judged: 7 }
        );
        assert_eq!(store.uptime("nope", t(0)).unwrap(), Uptime::default());
    }
}
