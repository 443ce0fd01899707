//! When a job fires: a cron line in an IANA zone, a fixed interval, or one instant.
//!
//! Cron follows Debian cron as cronsim implements it: 5 fields, or 6 with seconds first,
//! `@hourly`-style macros, names, the day-of-month/day-of-week OR rule, `L`, `W`, `#`.
//! croner evaluates the fields; this module restricts the syntax to what cron accepts
//! (no year field, no Quartz extensions) and expands the macros.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed cron line bound to the zone its fields are read in.
#[derive(Clone)]
pub struct CronSchedule {
    expr: String,
    cron: Cron,
    tz: Tz,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?} in {})", self.expr, self.tz)
    }
}

const MACROS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

impl CronSchedule {
    /// Parses `expr` for zone `tz`. The error says what is wrong, without location.
    pub fn parse(expr: &str, tz: Tz) -> Result<Self, String> {
        let trimmed = expr.trim();
        let fields = if trimmed.starts_with('@') {
            MACROS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(trimmed))
                .map(|(_, fields)| *fields)
                .ok_or_else(|| {
                    let names: Vec<_> = MACROS.iter().map(|(n, _)| format!("`{n}`")).collect();
                    format!(
                        "`{trimmed}` is not a cron macro; klaxon knows {}",
                        names.join(", ")
                    )
                })?
        } else {
            trimmed
        };
        let count = fields.split_whitespace().count();
        if count != 5 && count != 6 {
            return Err(format!(
                "`{trimmed}` has {count} fields; cron takes 5 (minute hour day-of-month month day-of-week) or 6 with seconds first"
            ));
        }
        let seconds = if count == 6 {
            Seconds::Required
        } else {
            Seconds::Disallowed
        };
        let cron = CronParser::builder()
            .seconds(seconds)
            .year(Year::Disallowed)
            .build()
            .parse(fields)
            .map_err(|e| format!("`{trimmed}` is not a valid cron expression: {e}"))?;
        let schedule = Self {
            expr: trimmed.to_owned(),
            cron,
            tz,
        };
        // A line like `0 0 30 2 *` parses but never fires; say so now rather than
        // leave a job that silently never runs.
        let probe = DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default(); // 2026-01-01
        if schedule.next_after(probe).is_none() {
            return Err(format!("`{trimmed}` never fires"));
        }
        Ok(schedule)
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The first fire strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

/// What makes a job fire.
#[derive(Debug, Clone)]
pub enum Trigger {
    Cron(Box<CronSchedule>),
    Every(Duration),
    At(DateTime<FixedOffset>),
}

impl Trigger {
    /// The first fire strictly after `t` (for `every`, one interval after `t`).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Trigger::Cron(c) => c.next_after(t),
            Trigger::Every(d) => chrono::Duration::from_std(*d).ok().map(|d| t + d),
            Trigger::At(at) => {
                let at = at.with_timezone(&Utc);
                (at > t).then_some(at)
            }
        }
    }

    /// How `jobs` shows it: the cron line, `every 30s`, or `at <RFC 3339>`.
    pub fn describe(&self) -> String {
        match self {
            Trigger::Cron(c) => c.expr().to_owned(),
            Trigger::Every(d) => format!("every {}", humantime::format_duration(*d)),
            Trigger::At(at) => format!("at {}", at.to_rfc3339()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn fires(expr: &str, tz: Tz, from: &str, n: usize) -> Vec<String> {
        let s = CronSchedule::parse(expr, tz).unwrap();
        let mut t = utc(from);
        (0..n)
            .map(|_| {
                t = s.next_after(t).unwrap();
                t.with_timezone(&tz).to_rfc3339()
            })
            .collect()
    }

    #[test]
    fn berlin_spring_forward_moves_into_the_first_instant_after_the_gap() {
        assert_eq!(
            fires(
                "30 2 * * *",
                chrono_tz::Europe::Berlin,
                "2026-03-28T12:00:00+01:00",
                3
            ),
            [
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00",
                "2026-03-31T02:30:00+02:00"
            ]
        );
    }

    #[test]
    fn berlin_fall_back_fires_a_fixed_time_job_once() {
        assert_eq!(
            fires(
                "30 2 * * *",
                chrono_tz::Europe::Berlin,
                "2026-10-24T12:00:00+02:00",
                2
            ),
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
        );
    }

    #[test]
    fn berlin_fall_back_fires_a_wildcard_job_on_each_real_occurrence() {
        assert_eq!(
            fires(
                "30 * * * *",
                chrono_tz::Europe::Berlin,
                "2026-10-25T01:00:00+02:00",
                3
            ),
            [
                "2026-10-25T01:30:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:30:00+01:00"
            ]
        );
    }

    #[test]
    fn macros_seconds_and_or_rule() {
        let tz = chrono_tz::UTC;
        assert_eq!(
            fires("@hourly", tz, "2026-01-01T00:10:00Z", 2),
            ["2026-01-01T01:00:00+00:00", "2026-01-01T02:00:00+00:00"]
        );
        assert_eq!(
            fires("*/20 * * * * *", tz, "2026-01-01T00:00:00Z", 2),
            ["2026-01-01T00:00:20+00:00", "2026-01-01T00:00:40+00:00"]
        );
        // Day 13 OR Friday: 2026-02-06 is a Friday, 2026-02-13 both.
        assert_eq!(
            fires("0 0 13 * FRI", tz, "2026-02-01T00:00:00Z", 3),
            [
                "2026-02-06T00:00:00+00:00",
                "2026-02-13T00:00:00+00:00",
                "2026-02-20T00:00:00+00:00"
            ]
        );
    }

    #[test]
    fn rejects_what_cron_rejects() {
        let tz = chrono_tz::UTC;
        for (expr, want) in [
            ("* * * *", "`* * * *` has 4 fields; cron takes 5"),
            ("0 0 * * * * 2026", "has 7 fields"),
            ("@reboot", "`@reboot` is not a cron macro"),
            ("61 * * * *", "`61 * * * *` is not a valid cron expression"),
            ("0 0 30 2 *", "`0 0 30 2 *` never fires"),
        ] {
            let err = CronSchedule::parse(expr, tz).unwrap_err();
            assert!(err.contains(want), "{expr}: {err}");
        }
    }
}
