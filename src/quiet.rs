//! What keeps klaxon quiet when asked, from the config: maintenance windows
//! (`[[maintenance]]`: a cron schedule and a duration, silencing some jobs) and a
//! notifier's quiet hours (`quiet = { from, to, timezone, except }`). Silences made by
//! hand live in the store (`crate::store::Silence`); acknowledgements in a job's alert
//! state.
//!
//! Both are computed in wall-clock time in their own zone with the same engine as job
//! schedules, so daylight saving time moves them as it moves jobs: a window whose start
//! falls in a spring-forward gap opens at the first instant after the gap, and a
//! fixed-time window opens once on a fall-back night.

use std::time::Duration;

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use klaxon_notifiers::Severity;

use crate::alert::Silenced;
use crate::schedule::CronSchedule;

/// `[[maintenance]]`: while a window is open, the jobs it names run and are recorded,
/// and their alerts are silenced.
#[derive(Debug, Clone)]
pub struct Maintenance {
    pub name: String,
    /// When each window opens, in its `timezone`.
    pub schedule: CronSchedule,
    pub duration: Duration,
    /// Job names or globs.
    pub jobs: Vec<String>,
}

impl Maintenance {
    /// Whether it names `job`.
    pub fn covers(&self, job: &str) -> bool {
        self.jobs.iter().any(|p| crate::store::job_matches(p, job))
    }

    /// When the window open at `t` closes, or `None` when none is open at `t`.
    /// Windows that overlap make one.
    pub fn open_until(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let length = chrono::Duration::from_std(self.duration).ok()?;
        // The first opening after `t - length` is the one that may still be open.
        let mut opened = self.schedule.next_after(t - length)?;
        if opened > t {
            return None;
        }
        let mut until = opened + length;
        while let Some(next) = self.schedule.next_after(opened) {
            if next > until || next > t + length {
                break;
            }
            until = next + length;
            opened = next;
        }
        Some(until)
    }
}

/// The maintenance window that silences `job` at `t` and lasts longest, if any.
pub fn maintenance(windows: &[Maintenance], job: &str, t: DateTime<Utc>) -> Option<Silenced> {
    windows
        .iter()
        .filter(|w| w.covers(job))
        .filter_map(|w| {
            Some(Silenced {
                by: format!("maintenance `{}`", w.name),
                until: w.open_until(t)?,
            })
        })
        .max_by_key(|s| s.until)
}

/// A notifier's quiet hours: from `from` to `to` each day in `timezone` (across
/// midnight when `to` is earlier), its messages are held, except those at or above
/// `except`, and sent as one digest when they end.
#[derive(Debug, Clone, PartialEq)]
pub struct QuietHours {
    pub from: NaiveTime,
    pub to: NaiveTime,
    pub timezone: Tz,
    /// Messages this severe or more go out anyway.
    pub except: Option<Severity>,
}

impl QuietHours {
    /// When the quiet hours that `t` falls in end, or `None` outside them.
    pub fn until(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.timezone);
        let now = local.time();
        let today = local.date_naive();
        let inside = if self.from <= self.to {
            self.from <= now && now < self.to
        } else {
            now >= self.from || now < self.to
        };
        if !inside {
            return None;
        }
        let end_day = if self.from > self.to && now >= self.from {
            today.succ_opt()?
        } else {
            today
        };
        Some(first_instant_at_or_after(
            self.timezone,
            end_day.and_time(self.to),
        ))
    }

    /// Whether a message of this severity (the alert's, a recovery's as ok) waits.
    pub fn holds(&self, severity: Severity) -> bool {
        match self.except {
            Some(except) => !at_least(severity, except),
            None => true,
        }
    }
}

/// Whether `s` is `floor` or more severe (unknown counts as critical).
fn at_least(s: Severity, floor: Severity) -> bool {
    fn level(s: Severity) -> u8 {
        match s {
            Severity::Ok => 0,
            Severity::Warning => 1,
            Severity::Critical | Severity::Unknown => 2,
        }
    }
    level(s) >= level(floor)
}

/// The instant a wall-clock time happens in `tz`: the earlier of two in a fall-back
/// overlap, the first instant after the gap in a spring-forward one.
fn first_instant_at_or_after(tz: Tz, wall: chrono::NaiveDateTime) -> DateTime<Utc> {
    let mut wall = wall;
    // A gap is at most a few hours; step a minute at a time to its end.
    for _ in 0..(24 * 60) {
        match tz.from_local_datetime(&wall) {
            chrono::LocalResult::Single(t) => return t.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(early, _) => return early.with_timezone(&Utc),
            chrono::LocalResult::None => wall += chrono::Duration::minutes(1),
        }
    }
    Utc.from_utc_datetime(&wall)
}

/// A silence asked for (by `klaxon silence add` or `POST /api/silences`), checked:
/// job names or globs, and either a length (`for`, like `2h`) or an end (`until`, an
/// RFC 3339 time, or a time of day `HH:MM` today or tomorrow in `tz`). The error says
/// what is wrong.
pub fn silence_request(
    jobs: Vec<String>,
    length: Option<&str>,
    until: Option<&str>,
    comment: Option<String>,
    created_by: String,
    now: DateTime<Utc>,
    tz: Tz,
) -> Result<crate::store::NewSilence, String> {
    if jobs.is_empty() {
        return Err("name at least one job (a name or a glob like `backup-*`)".into());
    }
    for job in &jobs {
        crate::store::check_pattern(job)?;
    }
    let ends_at = match (length, until) {
        (Some(_), Some(_)) => return Err("give `for` or `until`, not both".into()),
        (None, None) => return Err("say how long: `for` (like `2h`) or `until` (a time)".into()),
        (Some(length), None) => {
            let d = humantime::parse_duration(length.trim()).map_err(|_| {
                format!("`for`: expected a duration like `30m` or `2h`, found `{length}`")
            })?;
            if d.is_zero() {
                return Err("`for` must be greater than zero".into());
            }
            now + chrono::Duration::from_std(d)
                .map_err(|_| format!("`for`: `{length}` is too long"))?
        }
        (None, Some(until)) => parse_until(until.trim(), now, tz)?,
    };
    if ends_at <= now {
        return Err(format!(
            "`until` is in the past ({}): a silence must end later than now",
            ends_at.with_timezone(&tz).to_rfc3339()
        ));
    }
    Ok(crate::store::NewSilence {
        jobs,
        starts_at: now,
        ends_at,
        comment: comment.filter(|c| !c.trim().is_empty()),
        created_by,
    })
}

/// An RFC 3339 time, or `HH:MM`: the next time the clock in `tz` shows it.
fn parse_until(until: &str, now: DateTime<Utc>, tz: Tz) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(until) {
        return Ok(t.with_timezone(&Utc));
    }
    let time = NaiveTime::parse_from_str(until, "%H:%M").map_err(|_| {
        format!(
            "`until`: expected a time like `2026-12-03T18:00:00+01:00` or `18:00`, found `{until}`"
        )
    })?;
    let today = now.with_timezone(&tz).date_naive();
    let at = first_instant_at_or_after(tz, today.and_time(time));
    if at > now {
        return Ok(at);
    }
    let tomorrow = today.succ_opt().ok_or("`until` is out of range")?;
    Ok(first_instant_at_or_after(tz, tomorrow.and_time(time)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn window(schedule: &str, tz: Tz, hours: u64) -> Maintenance {
        Maintenance {
            name: "nightly".into(),
            schedule: CronSchedule::parse(schedule, tz).unwrap(),
            duration: Duration::from_secs(hours * 3600),
            jobs: vec!["db-*".into(), "backup".into()],
        }
    }

    #[test]
    fn a_window_is_open_from_its_fire_for_its_duration_and_covers_its_jobs() {
        let w = window("0 2 * * *", chrono_tz::Europe::Berlin, 2);
        // 02:00 Berlin in winter is 01:00 UTC.
        assert_eq!(w.open_until(utc("2026-01-10T00:59:59Z")), None);
        assert_eq!(
            w.open_until(utc("2026-01-10T01:00:00Z")),
            Some(utc("2026-01-10T03:00:00Z"))
        );
        assert_eq!(
            w.open_until(utc("2026-01-10T02:59:59Z")),
            Some(utc("2026-01-10T03:00:00Z"))
        );
        assert_eq!(w.open_until(utc("2026-01-10T03:00:00Z")), None);
        assert!(w.covers("db-main") && w.covers("backup") && !w.covers("backups"));
        let s = maintenance(&[w], "db-main", utc("2026-01-10T01:30:00Z")).unwrap();
        assert_eq!(s.by, "maintenance `nightly`");
    }

    /// Spring forward: 02:30 does not exist on the night of 2026-03-29 in Berlin; the
    /// window opens at 03:00 local (01:00 UTC), the first instant after the gap, and
    /// lasts its full hour.
    #[test]
    fn a_window_in_the_spring_forward_gap_opens_at_the_first_instant_after_it() {
        let w = window("30 2 * * *", chrono_tz::Europe::Berlin, 1);
        assert_eq!(w.open_until(utc("2026-03-29T00:59:00Z")), None);
        assert_eq!(
            w.open_until(utc("2026-03-29T01:00:00Z")),
            Some(utc("2026-03-29T02:00:00Z"))
        );
        let ny = window("30 2 * * *", chrono_tz::America::New_York, 1);
        // 2026-03-08: 02:00 → 03:00 EDT; 03:00 EDT is 07:00 UTC.
        assert_eq!(ny.open_until(utc("2026-03-08T06:59:00Z")), None);
        assert_eq!(
            ny.open_until(utc("2026-03-08T07:00:00Z")),
            Some(utc("2026-03-08T08:00:00Z"))
        );
    }

    /// Fall back: 01:30 happens twice on 2026-11-01 in New York (EDT, then EST); a
    /// fixed-time window opens once, at the first.
    #[test]
    fn a_fixed_time_window_opens_once_on_the_fall_back_night() {
        let w = window("30 1 * * *", chrono_tz::America::New_York, 0);
        let w = Maintenance {
            duration: Duration::from_secs(20 * 60),
            ..w
        };
        // 01:30 EDT = 05:30 UTC; the second 01:30 (EST) = 06:30 UTC.
        assert_eq!(
            w.open_until(utc("2026-11-01T05:40:00Z")),
            Some(utc("2026-11-01T05:50:00Z"))
        );
        assert_eq!(w.open_until(utc("2026-11-01T06:40:00Z")), None);
        let berlin = Maintenance {
            duration: Duration::from_secs(20 * 60),
            ..window("30 2 * * *", chrono_tz::Europe::Berlin, 0)
        };
        // 2026-10-25: 02:30 CEST = 00:30 UTC, 02:30 CET = 01:30 UTC.
        assert!(berlin.open_until(utc("2026-10-25T00:40:00Z")).is_some());
        assert_eq!(berlin.open_until(utc("2026-10-25T01:40:00Z")), None);
    }

    #[test]
    fn a_silence_asked_for_ends_after_its_length_or_at_its_time() {
        let now = utc("2026-01-10T12:00:00Z");
        let tz = chrono_tz::Europe::Berlin;
        let ask = |length: Option<&str>, until: Option<&str>| {
            silence_request(
                vec!["backup-*".into()],
                length,
                until,
                None,
                "ann".into(),
                now,
                tz,
            )
            .map(|s| s.ends_at)
        };
        assert_eq!(ask(Some("2h"), None), Ok(utc("2026-01-10T14:00:00Z")));
        // 18:00 Berlin = 17:00 UTC today; 08:00 Berlin has passed: tomorrow's.
        assert_eq!(ask(None, Some("18:00")), Ok(utc("2026-01-10T17:00:00Z")));
        assert_eq!(ask(None, Some("08:00")), Ok(utc("2026-01-11T07:00:00Z")));
        assert_eq!(
            ask(None, Some("2026-01-10T15:00:00+01:00")),
            Ok(utc("2026-01-10T14:00:00Z"))
        );
        assert!(
            ask(None, Some("2026-01-09T15:00:00Z"))
                .unwrap_err()
                .contains("in the past")
        );
        assert!(
            ask(Some("2h"), Some("18:00"))
                .unwrap_err()
                .contains("not both")
        );
        assert!(ask(None, None).is_err());
        assert!(
            ask(Some("soon"), None)
                .unwrap_err()
                .starts_with("`for`: expected a duration")
        );
        let bad = silence_request(
            vec!["x[".into()],
            Some("1h"),
            None,
            None,
            "a".into(),
            now,
            tz,
        );
        assert!(bad.unwrap_err().contains("not a valid glob"));
    }

    #[test]
    fn quiet_hours_across_midnight_end_at_their_end_in_their_zone() {
        let q = QuietHours {
            from: NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
            to: NaiveTime::from_hms_opt(7, 0, 0).unwrap(),
            timezone: chrono_tz::Europe::Berlin,
            except: Some(Severity::Critical),
        };
        // 23:10 Berlin (winter, UTC+1) = 22:10 UTC: quiet until 07:00 Berlin = 06:00 UTC.
        assert_eq!(
            q.until(utc("2026-01-10T22:10:00Z")),
            Some(utc("2026-01-11T06:00:00Z"))
        );
        assert_eq!(
            q.until(utc("2026-01-11T05:59:00Z")),
            Some(utc("2026-01-11T06:00:00Z"))
        );
        assert_eq!(q.until(utc("2026-01-11T06:00:00Z")), None);
        assert_eq!(q.until(utc("2026-01-11T12:00:00Z")), None);
        assert!(q.holds(Severity::Warning) && q.holds(Severity::Ok));
        assert!(!q.holds(Severity::Critical) && !q.holds(Severity::Unknown));
        let day = QuietHours {
            from: NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
            to: NaiveTime::from_hms_opt(17, 0, 0).unwrap(),
            timezone: chrono_tz::UTC,
            except: None,
        };
        assert_eq!(
            day.until(utc("2026-01-11T12:00:00Z")),
            Some(utc("2026-01-11T17:00:00Z"))
        );
        assert!(day.holds(Severity::Critical));
    }
}
