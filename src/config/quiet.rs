//! Validating `[[maintenance]]` windows and a notifier's `quiet` hours: every mistake
//! is located at the value that has it.

use chrono::NaiveTime;
use chrono_tz::Tz;
use klaxon_notifiers::Severity;

use super::diagnostic::Diagnostic;
use super::raw::{RawMaintenance, RawQuiet, Text};
use super::{Job, Loader, Value, unknown};
use crate::quiet::{Maintenance, QuietHours};
use crate::schedule::CronSchedule;

impl<'a> Loader<'a> {
    /// `quiet = { from = "22:00", to = "07:00", timezone, except = "critical" }`; the
    /// zone defaults to the agent's.
    pub(super) fn quiet(&mut self, raw: RawQuiet, agent_tz: Tz) -> Option<QuietHours> {
        let from = self.clock_time(&raw.from, "from");
        let to = self.clock_time(&raw.to, "to");
        let timezone = match &raw.timezone {
            Some(tz) => self.timezone(tz),
            None => Some(agent_tz),
        };
        let except = match &raw.except {
            None => Some(None),
            Some(e) => match e.get_ref().trim() {
                "warning" => Some(Some(Severity::Warning)),
                "critical" => Some(Some(Severity::Critical)),
                other => {
                    self.diagnostics.push(Diagnostic::at(
                        e.span(),
                        format!(
                            "`except`: {}",
                            unknown("severity", other, None, &["warning", "critical"])
                        ),
                    ));
                    None
                }
            },
        };
        let (from, to, timezone, except) = (from?, to?, timezone?, except?);
        if from == to {
            self.diagnostics.push(Diagnostic::at(
                raw.to.span(),
                "`quiet`: `from` and `to` are the same time; quiet hours need a length",
            ));
            return None;
        }
        Some(QuietHours {
            from,
            to,
            timezone,
            except,
        })
    }

    fn clock_time(&mut self, value: &Text, key: &str) -> Option<NaiveTime> {
        match NaiveTime::parse_from_str(value.get_ref().trim(), "%H:%M") {
            Ok(t) => Some(t),
            Err(_) => {
                self.diagnostics.push(Diagnostic::at(
                    value.span(),
                    format!(
                        "`{key}`: expected a time of day like `22:00`, found `{}`",
                        value.get_ref()
                    ),
                ));
                None
            }
        }
    }

    /// The `[[maintenance]]` array: each window's schedule is read in its `timezone`
    /// (default the agent's), and each of its `jobs` must name a job or be a glob.
    pub(super) fn maintenance(
        &mut self,
        section: Option<Value<'a>>,
        agent_tz: Tz,
        jobs: &[Job],
    ) -> Vec<Maintenance> {
        let Some(section) = section else {
            return Vec::new();
        };
        let Some(raw): Option<Vec<RawMaintenance>> = self.deserialize(section, "`[[maintenance]]`")
        else {
            return Vec::new();
        };
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        let mut out = Vec::new();
        for window in raw {
            let name = window.name.get_ref().trim().to_owned();
            if name.is_empty() {
                self.diagnostics.push(Diagnostic::at(
                    window.name.span(),
                    "`[[maintenance]]`: `name` must not be empty",
                ));
            }
            let tz = match &window.timezone {
                Some(tz) => self.timezone(tz),
                None => Some(agent_tz),
            };
            let schedule = tz.and_then(|tz| {
                CronSchedule::parse(window.schedule.get_ref(), tz)
                    .map_err(|e| {
                        self.diagnostics.push(Diagnostic::at(
                            window.schedule.span(),
                            format!("`schedule`: {e}"),
                        ));
                    })
                    .ok()
            });
            let duration = self.positive_duration(&window.duration, "duration");
            let mut patterns = Vec::new();
            if window.jobs.get_ref().is_empty() {
                self.diagnostics.push(Diagnostic::at(
                    window.jobs.span(),
                    format!("maintenance `{name}`: `jobs` must name at least one job"),
                ));
            }
            for pattern in window.jobs.get_ref() {
                let p = pattern.get_ref().trim();
                let glob = p.contains(['*', '?', '[']);
                if let Err(e) = crate::store::check_pattern(p) {
                    self.diagnostics
                        .push(Diagnostic::at(pattern.span(), format!("`jobs`: {e}")));
                } else if !glob && !names.contains(&p) {
                    self.diagnostics.push(Diagnostic::at(
                        pattern.span(),
                        format!("maintenance `{name}`: {}", unknown("job", p, None, &names)),
                    ));
                } else {
                    patterns.push(p.to_owned());
                }
            }
            if let (Some(schedule), Some(duration)) = (schedule, duration)
                && !name.is_empty()
                && patterns.len() == window.jobs.get_ref().len()
                && !patterns.is_empty()
            {
                out.push(Maintenance {
                    name,
                    schedule,
                    duration,
                    jobs: patterns,
                });
            }
        }
        out
    }
}
