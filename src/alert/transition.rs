//! What one finished run does to its job, as a pure function: `before + run + routes →
//! after + messages`. The runner builds a [`Transition`] from the run and the config
//! (the routes: which notifiers the job's messages may go to); the store applies it in
//! the transaction that writes the run, to the state stored before it
//! ([`crate::store::Store::record`]), and so does the in-memory keeper while the store
//! cannot be written ([`crate::unwritten`]). Nothing here reads a clock, the config or
//! the store, so the store never holds the runtime.

use std::time::Duration;

use chrono::{DateTime, Utc};
use klaxon_checks::{Outcome, Severity};
use klaxon_notifiers::{Alert, CheckInfo, Event};

use super::{AlertEvent, AlertPolicy, Holds, JobState, RunFacts};
use crate::config::MinSeverity;

/// What a run is recorded against: the job's name and alerting settings, and what was
/// run, for messages (a job's check, or the command `klaxon exec` ran).
#[derive(Debug, Clone)]
pub struct Subject {
    pub name: String,
    pub timezone: chrono_tz::Tz,
    pub notify: Vec<String>,
    pub depends_on: Vec<String>,
    pub alert: AlertPolicy,
    pub check: CheckInfo,
}

/// A message to put in the outbox with the run that made it due.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub notifier: String,
    pub alert: Alert,
}

/// One notifier a job's messages may go to, and the least severity it hears of.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub notifier: String,
    pub min_severity: MinSeverity,
}

/// Where a job's messages may go, as the config said when the run ended: the agent's
/// name (it signs every message) and the job's notifiers that are configured, in the
/// job's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Routes {
    pub agent: String,
    pub notifiers: Vec<Route>,
}

/// The facts of a finished run that messages carry.
#[derive(Debug, Clone)]
pub struct Run {
    pub outcome: Outcome,
    pub attempts: u32,
    pub max_attempts: u32,
    pub elapsed: Duration,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub next_run: Option<DateTime<Utc>>,
}

/// What silences a run's messages (a silence or a maintenance window, by name), and
/// until when.
#[derive(Debug, Clone, PartialEq)]
pub struct Silenced {
    pub by: String,
    pub until: DateTime<Utc>,
}

impl Silenced {
    /// Of two silences, the one that lasts longer.
    pub fn longer(a: Option<Silenced>, b: Option<Silenced>) -> Option<Silenced> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.until > a.until { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}

/// A run, what it was run against, and where its messages may go.
#[derive(Debug, Clone)]
pub struct Transition {
    pub job: Subject,
    pub run: Run,
    pub routes: Routes,
    /// The maintenance window the run ended in, if any (silences are the store's to
    /// add: they are read in the transaction that records the run).
    pub maintenance: Option<Silenced>,
}

impl Transition {
    /// [`Transition::apply`], with `held` read from the states of the jobs this one
    /// depends on (`state_of`: as of the same transaction, or as kept in memory).
    pub fn apply_reading<E>(
        &self,
        before: &JobState,
        state_of: &dyn Fn(&str) -> Result<JobState, E>,
        silenced: bool,
    ) -> Result<(JobState, Vec<NewMessage>), E> {
        let mut held = false;
        for dep in &self.job.depends_on {
            if state_of(dep)?.is_failing() {
                held = true;
                break;
            }
        }
        if held && !self.run.outcome.severity.is_ok() {
            tracing::info!(job = %self.job.name, "a dependency is failing: alerts of this job are held");
        }
        let holds = Holds {
            dependency: held,
            silenced,
        };
        Ok(self.apply(before, holds))
    }

    /// The job's state after the run and the messages the run makes due, given the
    /// state before it and what holds messages back.
    pub fn apply(&self, before: &JobState, holds: Holds) -> (JobState, Vec<NewMessage>) {
        let facts = RunFacts {
            severity: self.run.outcome.severity,
            started_at: self.run.started_at,
            finished_at: self.run.finished_at,
        };
        let (mut after, events) =
            super::step(&self.job.name, before, &facts, &self.job.alert, holds);
        let messages = self.messages(&events, before, &mut after);
        (after, messages)
    }

    /// Turns state-machine events into one message per (event, notifier that takes
    /// it), and records in `after`'s open alert which notifiers were told.
    ///
    /// A failure, an update or a reminder goes to the routes whose `min_severity` the
    /// alert's severity meets; an update also goes to every notifier told about the
    /// alert before (a de-escalation from critical to warning reaches the critical-only
    /// notifier that heard the failure); a recovery goes to exactly those told. States
    /// written before klaxon recorded that fall back to `min_severity`.
    fn messages(
        &self,
        events: &[AlertEvent],
        before: &JobState,
        after: &mut JobState,
    ) -> Vec<NewMessage> {
        let Self {
            job, run, routes, ..
        } = self;
        let mut out = Vec::new();
        for event in events {
            // The open alert this message is about: still open, or just closed.
            let Some(open) = after.open.as_ref().or(before.open.as_ref()) else {
                continue;
            };
            let (kind, downtime_ms) = match event {
                AlertEvent::Failure => (Event::Failure, None),
                AlertEvent::Update => (Event::Update, None),
                AlertEvent::Reminder => (Event::Reminder, None),
                AlertEvent::Recovery { downtime } => {
                    (Event::Recovery, Some(downtime.as_millis() as u64))
                }
            };
            let alert_severity = Severity::from(open.severity);
            let tz = job.timezone;
            let local = |t: DateTime<Utc>| t.with_timezone(&tz).fixed_offset();
            let message = Alert {
                version: 1,
                event: kind,
                job: job.name.clone(),
                agent: routes.agent.clone(),
                severity: to_notifier_severity(run.outcome.severity),
                check: job.check.clone(),
                summary: run.outcome.summary.clone(),
                output: run.outcome.output.clone(),
                attempts: run.attempts,
                max_attempts: run.max_attempts,
                elapsed_ms: run.elapsed.as_millis() as u64,
                started_at: local(run.started_at),
                failing_since: Some(local(open.failing_since)),
                last_success: after.last_success.map(local),
                next_run: run.next_run.map(local),
                downtime_ms,
                id: open.id.clone(),
                acknowledged: open.acked.as_ref().map(|a| klaxon_notifiers::Acknowledged {
                    by: a.by.clone(),
                    at: local(a.at),
                    comment: a.comment.clone(),
                }),
            };
            let told = open.told.clone();
            let was_told = |name: &String| told.as_ref().is_some_and(|t| t.contains(name));
            let recipients = routes.notifiers.iter().filter(|route| {
                let wants = match route.min_severity {
                    MinSeverity::Warning => true,
                    MinSeverity::Critical => alert_severity >= Severity::Critical,
                };
                match (event, &told) {
                    (AlertEvent::Recovery { .. }, Some(_)) => was_told(&route.notifier),
                    (AlertEvent::Update, Some(_)) => wants || was_told(&route.notifier),
                    _ => wants,
                }
            });
            for route in recipients {
                out.push(NewMessage {
                    notifier: route.notifier.clone(),
                    alert: message.clone(),
                });
                if let Some(open) = after.open.as_mut() {
                    let told = open.told.get_or_insert_with(Vec::new);
                    if !told.contains(&route.notifier) {
                        told.push(route.notifier.clone());
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
impl Transition {
    /// A run of `job` at `at` with this severity, routed to one notifier `hook` that
    /// takes warnings, with the default alert policy (for tests).
    pub fn test(job: &str, severity: Severity, at: DateTime<Utc>) -> Self {
        Self {
            job: Subject {
                name: job.into(),
                timezone: chrono_tz::UTC,
                notify: vec!["hook".into()],
                depends_on: vec![],
                alert: AlertPolicy::default(),
                check: CheckInfo {
                    kind: "http".into(),
                    target: "http://127.0.0.1:1/".into(),
                },
            },
            run: Run {
                outcome: Outcome::new(severity, format!("{severity}"), Duration::ZERO),
                attempts: 1,
                max_attempts: 1,
                elapsed: Duration::ZERO,
                started_at: at,
                finished_at: at,
                next_run: None,
            },
            routes: Routes {
                agent: "test".into(),
                notifiers: vec![Route {
                    notifier: "hook".into(),
                    min_severity: MinSeverity::Warning,
                }],
            },
            maintenance: None,
        }
    }
}

pub fn to_notifier_severity(s: Severity) -> klaxon_notifiers::Severity {
    match s {
        Severity::Ok => klaxon_notifiers::Severity::Ok,
        Severity::Warning => klaxon_notifiers::Severity::Warning,
        Severity::Critical => klaxon_notifiers::Severity::Critical,
        Severity::Unknown => klaxon_notifiers::Severity::Unknown,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + min * 60, 0).unwrap()
    }

    /// `api` at minute `at`, two tries of three, routed to `chat` (warnings) and
    /// `pager` (critical only); `gone` is in the job's list but no longer configured.
    fn transition(severity: Severity, at: i64) -> Transition {
        let mut tr = Transition::test("api", severity, t(at));
        tr.job.notify = vec!["chat".into(), "pager".into(), "gone".into()];
        tr.run.attempts = 2;
        tr.run.max_attempts = 3;
        tr.run.elapsed = Duration::from_millis(1500);
        tr.run.next_run = Some(t(at + 1));
        tr.routes.agent = "box".into();
        tr.routes.notifiers = vec![
            Route {
                notifier: "chat".into(),
                min_severity: MinSeverity::Warning,
            },
            Route {
                notifier: "pager".into(),
                min_severity: MinSeverity::Critical,
            },
        ];
        tr
    }

    /// Who hears each step of critical → warning → ok: the critical-only notifier hears
    /// the failure, the de-escalation and the recovery; the other hears all three.
    #[test]
    fn every_notifier_told_about_an_alert_hears_how_it_ended() {
        let mut state = JobState::default();
        let mut heard = Vec::new();
        for (at, severity) in [
            (0, Severity::Critical),
            (1, Severity::Warning),
            (2, Severity::Ok),
        ] {
            let (after, messages) = transition(severity, at).apply(&state, Holds::default());
            heard.push(
                messages
                    .iter()
                    .map(|m| format!("{}:{}", m.notifier, m.alert.event.as_str()))
                    .collect::<Vec<_>>(),
            );
            state = after;
        }
        assert_eq!(
            heard,
            [
                vec!["chat:failure", "pager:failure"],
                vec!["chat:update", "pager:update"],
                vec!["chat:recovery", "pager:recovery"],
            ]
        );
        assert!(state.open.is_none());
    }

    #[test]
    fn a_warning_reaches_only_the_routes_that_take_warnings_and_carries_the_run() {
        let (after, messages) =
            transition(Severity::Warning, 0).apply(&JobState::default(), Holds::default());
        assert_eq!(messages.len(), 1);
        let m = &messages[0];
        assert_eq!(m.notifier, "chat");
        assert_eq!(
            (
                m.alert.agent.as_str(),
                m.alert.job.as_str(),
                m.alert.attempts,
                m.alert.max_attempts
            ),
            ("box", "api", 2, 3)
        );
        assert_eq!(m.alert.elapsed_ms, 1500);
        assert_eq!(m.alert.next_run, Some(t(1).fixed_offset()));
        assert_eq!(after.open.unwrap().told, Some(vec!["chat".to_owned()]));
    }

    #[test]
    fn a_held_alert_sends_nothing() {
        let (after, messages) = transition(Severity::Critical, 0).apply(
            &JobState::default(),
            Holds {
                dependency: true,
                silenced: false,
            },
        );
        assert!(messages.is_empty());
        assert!(after.open.unwrap().held);
    }
}
