//! The per-job alert state machine: a pure function of (state, run, policy) → (new state,
//! events). It is the only place that decides a message is due; the store persists its
//! result in the same transaction as the run that caused it.
//!
//! `after` consecutive non-ok runs open an alert; `recover_after` consecutive ok runs
//! close it (a recovery message if `resolved`); a change between warning and critical
//! while open sends an update; `remind` repeats an open alert, checked at each run.
//!
//! While a job in `depends_on` is failing, the alert is opened but *held*: nothing is
//! sent. If the job still fails once its dependencies are fine, the failure goes out
//! then; if it recovers while held, nothing was said, so nothing is.

mod transition;
pub use transition::{
    NewMessage, Route, Routes, Run, Silenced, Subject, Transition, to_notifier_severity,
};

use std::time::Duration;

use chrono::{DateTime, Utc};
use klaxon_checks::Severity;
use serde::{Deserialize, Serialize};

/// When a job's runs turn into messages.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertPolicy {
    pub after: u32,
    pub recover_after: u32,
    pub remind: Option<Duration>,
    pub resolved: bool,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        Self {
            after: 1,
            recover_after: 1,
            remind: None,
            resolved: true,
        }
    }
}

/// What the store keeps per job between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// Severity of the last run; `None` before the first.
    pub severity: Option<SeverityName>,
    /// When `severity` last changed.
    #[serde(with = "klaxon_notifiers::rfc3339::option", default)]
    pub since: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    pub consecutive_ok: u32,
    /// Start of the first failed run of the current streak.
    #[serde(with = "klaxon_notifiers::rfc3339::option", default)]
    pub failing_since: Option<DateTime<Utc>>,
    #[serde(with = "klaxon_notifiers::rfc3339::option", default)]
    pub last_success: Option<DateTime<Utc>>,
    #[serde(with = "klaxon_notifiers::rfc3339::option", default)]
    pub last_run: Option<DateTime<Utc>>,
    pub open: Option<OpenAlert>,
}

/// An alert that has been sent and not yet resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAlert {
    pub id: String,
    pub severity: SeverityName,
    #[serde(with = "klaxon_notifiers::rfc3339")]
    pub opened_at: DateTime<Utc>,
    #[serde(with = "klaxon_notifiers::rfc3339")]
    pub failing_since: DateTime<Utc>,
    /// When a message about it last went out (for `remind`).
    #[serde(with = "klaxon_notifiers::rfc3339")]
    pub last_sent: DateTime<Utc>,
    /// Opened while a dependency was failing, and not sent yet.
    #[serde(default)]
    pub held: bool,
    /// The notifiers that were sent a message about this alert, so that each hears how
    /// it ended even when its `min_severity` no longer matches (critical, then warning,
    /// then ok). `None` in states written before klaxon recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub told: Option<Vec<String>>,
    /// Opened (or let go by its dependencies) while the job was silenced, and not sent
    /// yet: the failure goes out at the first run after the silence if the job still
    /// fails.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unsent: bool,
    /// Who acknowledged it, when: no reminders since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked: Option<Ack>,
}

/// An acknowledgement of an open alert (`klaxon ack`, `POST /api/ack/JOB`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    #[serde(with = "klaxon_notifiers::rfc3339")]
    pub at: DateTime<Utc>,
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// What keeps a run's alert messages from going out, though the alert state moves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holds {
    /// A job in `depends_on` is failing.
    pub dependency: bool,
    /// A silence or a maintenance window covers the job.
    pub silenced: bool,
}

/// A severity as stored (lowercase name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeverityName {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl From<Severity> for SeverityName {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Ok => SeverityName::Ok,
            Severity::Warning => SeverityName::Warning,
            Severity::Critical => SeverityName::Critical,
            Severity::Unknown => SeverityName::Unknown,
        }
    }
}

impl From<SeverityName> for Severity {
    fn from(s: SeverityName) -> Self {
        match s {
            SeverityName::Ok => Severity::Ok,
            SeverityName::Warning => Severity::Warning,
            SeverityName::Critical => Severity::Critical,
            SeverityName::Unknown => Severity::Unknown,
        }
    }
}

impl JobState {
    /// Whether the job's last run was not ok (what `depends_on` waits on).
    pub fn is_failing(&self) -> bool {
        self.severity.is_some_and(|s| s != SeverityName::Ok)
    }
}

impl SeverityName {
    /// Unknown is alerted as critical: they are the same level for updates.
    fn level(self) -> u8 {
        match self {
            SeverityName::Ok => 0,
            SeverityName::Warning => 1,
            SeverityName::Critical | SeverityName::Unknown => 2,
        }
    }
}

/// The facts of one finished run the state machine needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunFacts {
    pub severity: Severity,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// A message the run makes due.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertEvent {
    Failure,
    Update,
    Reminder,
    /// With how long the job was failing.
    Recovery {
        downtime: Duration,
    },
}

/// Applies one run to a job's state. `job` names the alert id; `holds` says what keeps
/// messages back: a failing dependency (the alert is held: if the job still fails once
/// the dependency is fine, the failure goes out then), a silence (nothing goes out but
/// a recovery of an alert people were told about; a failure never sent goes out at the
/// first run after the silence if the job still fails; reminders and updates are
/// skipped, not saved up).
pub fn step(
    job: &str,
    state: &JobState,
    run: &RunFacts,
    policy: &AlertPolicy,
    holds: Holds,
) -> (JobState, Vec<AlertEvent>) {
    let held = holds.dependency;
    let silenced = holds.silenced;
    let mut next = state.clone();
    let mut events = Vec::new();
    let severity = SeverityName::from(run.severity);
    if next.severity != Some(severity) {
        next.since = Some(run.finished_at);
    }
    next.severity = Some(severity);
    next.last_run = Some(run.finished_at);

    if run.severity.is_ok() {
        next.consecutive_ok += 1;
        next.consecutive_failures = 0;
        next.last_success = Some(run.finished_at);
        if let Some(open) = &next.open {
            if next.consecutive_ok >= policy.recover_after {
                let downtime = (run.finished_at - open.failing_since)
                    .to_std()
                    .unwrap_or_default();
                // A held or silenced alert was never sent: its recovery is not news
                // either.
                if policy.resolved && !open.held && !open.unsent {
                    events.push(AlertEvent::Recovery { downtime });
                }
                next.open = None;
                next.failing_since = None;
            }
        } else {
            next.failing_since = None;
        }
        return (next, events);
    }

    next.consecutive_failures += 1;
    next.consecutive_ok = 0;
    let failing_since = *next.failing_since.get_or_insert(run.started_at);
    match &mut next.open {
        None if next.consecutive_failures >= policy.after => {
            next.open = Some(OpenAlert {
                id: format!("{job}-{}", failing_since.timestamp_millis()),
                severity,
                opened_at: run.finished_at,
                failing_since,
                last_sent: run.finished_at,
                held,
                told: Some(Vec::new()),
                unsent: !held && silenced,
                acked: None,
            });
            if !held && !silenced {
                events.push(AlertEvent::Failure);
            }
        }
        None => {}
        Some(open) if (open.held && !held) || (open.unsent && !silenced) => {
            // The dependencies are fine (or the silence is over) and this job still
            // fails: say so now, once.
            open.held = false;
            open.severity = severity;
            open.last_sent = run.finished_at;
            open.unsent = silenced;
            if !silenced {
                events.push(AlertEvent::Failure);
            }
        }
        // Still held (a dependency is failing) or silenced, never sent.
        Some(open) if open.held || open.unsent => open.severity = severity,
        Some(open) => {
            // Under a silence the state moves as if the message went out, so its end
            // does not repeat an unchanged state.
            if open.severity.level() != severity.level() {
                open.severity = severity;
                open.last_sent = run.finished_at;
                if !silenced {
                    events.push(AlertEvent::Update);
                }
            } else if let Some(remind) = policy.remind.filter(|_| open.acked.is_none()) {
                let since_sent = (run.finished_at - open.last_sent)
                    .to_std()
                    .unwrap_or_default();
                if since_sent >= remind {
                    open.last_sent = run.finished_at;
                    if !silenced {
                        events.push(AlertEvent::Reminder);
                    }
                }
            }
        }
    }
    (next, events)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + min * 60, 0).unwrap()
    }

    /// Feeds runs one minute apart (each lasting 10 s) and collects the events.
    fn play(policy: &AlertPolicy, runs: &[Severity]) -> Vec<Vec<AlertEvent>> {
        let mut state = JobState::default();
        runs.iter()
            .enumerate()
            .map(|(i, &severity)| {
                let run = RunFacts {
                    severity,
                    started_at: t(i as i64),
                    finished_at: t(i as i64) + chrono::Duration::seconds(10),
                };
                let (next, events) = step("api", &state, &run, policy, Holds::default());
                state = next;
                events
            })
            .collect()
    }

    use AlertEvent::*;
    use Severity::{Critical as C, Ok as O, Unknown as U, Warning as W};

    fn rec(min: u64) -> AlertEvent {
        Recovery {
            downtime: Duration::from_secs(min * 60 + 10),
        }
    }

    #[test]
    fn table() {
        let default = AlertPolicy::default();
        let after3 = AlertPolicy {
            after: 3,
            recover_after: 2,
            ..AlertPolicy::default()
        };
        let quiet = AlertPolicy {
            resolved: false,
            ..AlertPolicy::default()
        };
        let remind = AlertPolicy {
            remind: Some(Duration::from_secs(120)),
            ..AlertPolicy::default()
        };
        type Case<'a> = (
            &'a str,
            &'a AlertPolicy,
            Vec<Severity>,
            Vec<Vec<AlertEvent>>,
        );
        let cases: Vec<Case> = vec![
            (
                "all ok is silent",
                &default,
                vec![O, O, O],
                vec![vec![], vec![], vec![]],
            ),
            (
                "one failure opens, recovery closes with downtime",
                &default,
                vec![O, C, C, O, O],
                vec![vec![], vec![Failure], vec![], vec![rec(2)], vec![]],
            ),
            (
                "after 3 / recover_after 2",
                &after3,
                vec![C, C, O, C, C, C, C, O, O, O],
                vec![
                    vec![],
                    vec![],
                    vec![],
                    vec![],
                    vec![],
                    vec![Failure],
                    vec![],
                    vec![],
                    vec![rec(5)],
                    vec![],
                ],
            ),
            (
                "warning to critical is an update, unknown counts as critical",
                &default,
                vec![W, C, U, W, O],
                vec![
                    vec![Failure],
                    vec![Update],
                    vec![],
                    vec![Update],
                    vec![rec(4)],
                ],
            ),
            (
                "resolved = false closes silently",
                &quiet,
                vec![C, O, C],
                vec![vec![Failure], vec![], vec![Failure]],
            ),
            (
                "remind repeats while open",
                &remind,
                vec![C, C, C, C, C, O],
                vec![
                    vec![Failure],
                    vec![],
                    vec![Reminder],
                    vec![],
                    vec![Reminder],
                    vec![rec(5)],
                ],
            ),
        ];
        for (name, policy, runs, want) in cases {
            assert_eq!(play(policy, &runs), want, "{name}");
        }
    }

    #[test]
    fn a_failing_dependency_holds_the_alert() {
        let policy = AlertPolicy::default();
        let run = |m, severity| RunFacts {
            severity,
            started_at: t(m),
            finished_at: t(m) + chrono::Duration::seconds(10),
        };
        // (run severity, dependency failing) → events
        let play = |steps: &[(Severity, bool)]| {
            let mut state = JobState::default();
            steps
                .iter()
                .enumerate()
                .map(|(i, &(severity, held))| {
                    let holds = Holds {
                        dependency: held,
                        silenced: false,
                    };
                    let (next, events) =
                        step("api", &state, &run(i as i64, severity), &policy, holds);
                    state = next;
                    events
                })
                .collect::<Vec<_>>()
        };
        // Held while the dependency fails; still failing after it recovered: sent then.
        assert_eq!(
            play(&[(C, true), (C, true), (C, false), (O, false)]),
            [vec![], vec![], vec![Failure], vec![rec(3)]]
        );
        // Recovered while held: nothing was said, so nothing is.
        assert_eq!(
            play(&[(C, true), (O, true), (O, false)]),
            [vec![], vec![], vec![]]
        );
        assert_eq!(play(&[(C, true), (O, false)]), [vec![], vec![]]);
        // A dependency that fails after the alert went out changes nothing.
        assert_eq!(
            play(&[(C, false), (C, true), (O, true)]),
            [vec![Failure], vec![], vec![rec(2)]]
        );
    }

    #[test]
    fn the_alert_id_is_stable_for_one_outage() {
        let policy = AlertPolicy::default();
        let run = |m, severity| RunFacts {
            severity,
            started_at: t(m),
            finished_at: t(m) + chrono::Duration::seconds(10),
        };
        let (s1, _) = step(
            "api",
            &JobState::default(),
            &run(0, C),
            &policy,
            Holds::default(),
        );
        let (s2, e2) = step("api", &s1, &run(1, W), &policy, Holds::default());
        assert_eq!(e2, [Update]);
        assert_eq!(s1.open.as_ref().unwrap().id, s2.open.as_ref().unwrap().id);
        assert_eq!(
            s2.open.unwrap().id,
            format!("api-{}", t(0).timestamp_millis())
        );
        assert_eq!(s2.consecutive_failures, 2);
        assert_eq!(s2.failing_since, Some(t(0)));
    }
}
