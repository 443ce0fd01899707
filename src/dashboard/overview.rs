//! `/`: the overview. [`gather`] reads what the page shows from the config, the store
//! (a handful of queries for all jobs together, never one per job) and the agent's own
//! counters; [`Overview`] is the page, rendered by `templates/overview.html`.

use std::collections::HashMap;

use askama::Template;
use chrono::{DateTime, Utc};

use super::{Actions, Frame, State, When, elapsed, job_href, span, svg};
use crate::alert::{JobState, OpenAlert};
use crate::liveness::Liveness;
use crate::runtime::Runtime;
use crate::store::{HeldMessage, RECENT_RUNS, RecentRun, Silence, StoreError};

/// Undelivered messages shown at most; the rest are counted (`klaxon outbox` lists all).
pub const OUTBOX_SHOWN: usize = 50;

/// The overview page.
#[derive(Debug, Template)]
#[template(path = "overview.html")]
pub struct Overview {
    pub frame: Frame,
    pub jobs: Vec<JobRow>,
    pub alerts: Vec<AlertRow>,
    pub silences: Vec<SilenceRow>,
    pub acks: Vec<AckRow>,
    pub outbox: Vec<OutboxRow>,
    /// Undelivered messages beyond [`OUTBOX_SHOWN`].
    pub outbox_more: usize,
    pub agent: AgentInfo,
}

impl Overview {
    /// How many jobs are in each state, the states that have any, worst first.
    pub fn counts(&self) -> Vec<(&'static str, &'static str, usize)> {
        let order = ["critical", "warning", "unknown", "pending", "ok"];
        order
            .iter()
            .filter_map(|class| {
                let mut rows = self.jobs.iter().filter(|j| j.state.class == *class);
                let word = rows.next()?.state.word;
                Some((word, *class, 1 + rows.count()))
            })
            .collect()
    }
}

/// One job's row in the jobs table.
#[derive(Debug)]
pub struct JobRow {
    pub name: String,
    pub href: String,
    pub state: State,
    /// What silences it and until when: `silence 3 (db upgrade) until 14:00`.
    pub silenced: Option<String>,
    pub acked: bool,
    pub alert_open: bool,
    pub since: Option<When>,
    pub last_run: Option<When>,
    pub summary: String,
    pub next_run: Option<When>,
    pub kind: &'static str,
    /// The recent-runs bar and the latency sparkline (SVG markup, made on the server).
    pub bar: String,
    pub spark: String,
}

/// How one notifier told of an open alert: `delivered`, `pending`, `given up`.
#[derive(Debug)]
pub struct Told {
    pub notifier: String,
    pub word: &'static str,
    pub class: &'static str,
}

/// An open alert.
#[derive(Debug)]
pub struct AlertRow {
    pub job: String,
    pub href: String,
    pub state: State,
    pub failing_since: When,
    /// How long it has been failing.
    pub elapsed: String,
    /// Failed runs in a row.
    pub failures: u32,
    pub told: Vec<Told>,
    /// Why nobody has been told yet, when nobody has.
    pub untold: Option<&'static str>,
    pub acked: Option<String>,
}

#[derive(Debug)]
pub struct SilenceRow {
    pub id: i64,
    pub jobs: String,
    pub starts: When,
    pub ends: When,
    pub by: String,
    pub comment: String,
}

#[derive(Debug)]
pub struct AckRow {
    pub job: String,
    pub href: String,
    pub by: String,
    pub at: When,
    pub comment: String,
}

#[derive(Debug)]
pub struct OutboxRow {
    pub id: i64,
    pub job: String,
    pub href: String,
    pub notifier: String,
    pub event: String,
    pub created: When,
    pub tries: u32,
    /// `pending` (with its next try) or `given up` (with when).
    pub state: &'static str,
    pub class: &'static str,
    pub when: When,
    /// The notifier's own wording of its last failure (never with its URL or secret).
    pub last_error: String,
}

/// One bucket of the scheduler's lateness.
#[derive(Debug)]
pub struct LateRow {
    pub bucket: String,
    pub count: u64,
    pub total: u64,
}

#[derive(Debug)]
pub struct AgentInfo {
    pub version: &'static str,
    pub uptime: String,
    pub config: String,
    pub state_dir: String,
    pub lateness: Vec<LateRow>,
    pub fires: u64,
}

/// What the page needs of the store, read once for all jobs.
#[derive(Debug, Default)]
pub struct Reads {
    pub states: HashMap<String, JobState>,
    /// Each job's recent runs, oldest first.
    pub runs: HashMap<String, std::sync::Arc<Vec<RecentRun>>>,
    pub last_fires: HashMap<String, DateTime<Utc>>,
    pub silences: Vec<Silence>,
    pub held: Vec<HeldMessage>,
}

impl Reads {
    /// One statement for each kind of read, whatever the number of jobs.
    pub fn read(rt: &Runtime, now: DateTime<Utc>) -> Result<Self, StoreError> {
        let names = || rt.config.jobs.iter().map(|j| j.name.as_str());
        Ok(Self {
            states: rt.store.job_states(names())?,
            runs: rt.store.recent_runs(names(), RECENT_RUNS)?,
            last_fires: rt.store.last_fires(names())?,
            silences: rt.store.silences(now, false)?,
            held: rt.store.held()?,
        })
    }
}

/// The overview of `rt` as of `now`.
pub fn gather(
    rt: &Runtime,
    alive: &Liveness,
    actions: Actions,
    now: DateTime<Utc>,
) -> Result<Overview, StoreError> {
    let reads = Reads::read(rt, now)?;
    Ok(build(rt, alive, actions, &reads, now))
}

/// The page from what was read: pure but for the agent's counters.
pub fn build(
    rt: &Runtime,
    alive: &Liveness,
    actions: Actions,
    reads: &Reads,
    now: DateTime<Utc>,
) -> Overview {
    let config = &rt.config;
    let default_state = JobState::default();
    let mut jobs = Vec::with_capacity(config.jobs.len());
    let mut alerts = Vec::new();
    let mut acks = Vec::new();
    for job in &config.jobs {
        let tz = job.timezone;
        let state = reads.states.get(&job.name).unwrap_or(&default_state);
        let runs = reads.runs.get(&job.name).map_or(&[][..], |r| r.as_slice());
        let last = runs.iter().rev().find(|r| r.verdict.judged());
        let silence = crate::status::silenced(config, &reads.silences, &job.name, now);
        let href = job_href(&job.name);
        if let Some(open) = &state.open {
            alerts.push(alert_row(job, &href, state, open, &reads.held, now));
            if let Some(ack) = &open.acked {
                acks.push(AckRow {
                    job: job.name.clone(),
                    href: href.clone(),
                    by: ack.by.clone(),
                    at: When::new(ack.at, now, tz),
                    comment: ack.comment.clone().unwrap_or_default(),
                });
            }
        }
        jobs.push(JobRow {
            name: job.name.clone(),
            state: State::of(state.severity),
            silenced: silence
                .map(|s| format!("{} until {}", s.by, When::new(s.until, now, tz).full)),
            acked: state.open.as_ref().is_some_and(|o| o.acked.is_some()),
            alert_open: state.open.is_some(),
            since: state.since.map(|t| When::new(t, now, tz)),
            last_run: state.last_run.map(|t| When::new(t, now, tz)),
            summary: last.map(|r| r.summary.clone()).unwrap_or_default(),
            next_run: crate::status::next_run(job, reads.last_fires.get(&job.name).copied(), now)
                .map(|t| When::new(t, now, tz)),
            kind: job.check.kind(),
            bar: svg::bar(runs),
            spark: svg::sparkline(runs).unwrap_or_default(),
            href,
        });
    }
    let outbox_more = reads.held.len().saturating_sub(OUTBOX_SHOWN);
    let outbox = reads
        .held
        .iter()
        .take(OUTBOX_SHOWN)
        .map(|m| outbox_row(rt, m, now))
        .collect();
    let silences = reads
        .silences
        .iter()
        .filter(|s| s.ends_at > now)
        .map(|s| SilenceRow {
            id: s.id,
            jobs: s.jobs.join(", "),
            starts: When::new(s.starts_at, now, config.agent.timezone),
            ends: When::new(s.ends_at, now, config.agent.timezone),
            by: s.created_by.clone(),
            comment: s.comment.clone().unwrap_or_default(),
        })
        .collect();
    Overview {
        frame: Frame::new(rt, alive, actions),
        jobs,
        alerts,
        silences,
        acks,
        outbox,
        outbox_more,
        agent: agent_info(rt, alive),
    }
}

fn alert_row(
    job: &crate::config::Job,
    href: &str,
    state: &JobState,
    open: &OpenAlert,
    held: &[HeldMessage],
    now: DateTime<Utc>,
) -> AlertRow {
    let told: Vec<Told> = open
        .told
        .iter()
        .flatten()
        .map(|notifier| {
            let waiting = held
                .iter()
                .rev()
                .find(|m| m.job == job.name && &m.notifier == notifier);
            let (word, class) = match waiting {
                None => ("delivered", "ok"),
                Some(m) if m.gave_up_at.is_some() => ("given up", "critical"),
                Some(_) => ("pending", "warning"),
            };
            Told {
                notifier: notifier.clone(),
                word,
                class,
            }
        })
        .collect();
    let untold = if !told.is_empty() {
        None
    } else if open.held {
        Some("held: a job it depends on is failing")
    } else if open.unsent {
        Some("not sent yet: the job is silenced")
    } else if open.told.is_none() {
        Some("not recorded")
    } else {
        Some("no notifier takes this severity")
    };
    AlertRow {
        job: job.name.clone(),
        href: href.to_owned(),
        state: State::of(Some(open.severity)),
        failing_since: When::new(open.failing_since, now, job.timezone),
        elapsed: span((now - open.failing_since).to_std().unwrap_or_default()),
        failures: state.consecutive_failures,
        told,
        untold,
        acked: open
            .acked
            .as_ref()
            .map(|a| format!("{}, {}", a.by, When::new(a.at, now, job.timezone).rel)),
    }
}

fn outbox_row(rt: &Runtime, m: &HeldMessage, now: DateTime<Utc>) -> OutboxRow {
    let tz = rt
        .config
        .job(&m.job)
        .map_or(rt.config.agent.timezone, |j| j.timezone);
    let (state, class, when) = match m.gave_up_at {
        Some(t) => ("given up", "critical", t),
        None => ("pending", "warning", m.next_attempt_at),
    };
    OutboxRow {
        id: m.id,
        href: job_href(&m.job),
        job: m.job.clone(),
        notifier: m.notifier.clone(),
        event: m.event.clone(),
        created: When::new(m.created_at, now, tz),
        tries: m.tries,
        state,
        class,
        when: When::new(when, now, tz),
        last_error: m.last_error.clone().unwrap_or_default(),
    }
}

fn agent_info(rt: &Runtime, alive: &Liveness) -> AgentInfo {
    let counts = rt.metrics.lateness();
    let fires = counts.iter().map(|(_, n)| n).sum();
    let lateness = counts
        .iter()
        .scan(None, |lower: &mut Option<f64>, (le, count)| {
            let bucket = match (*lower, le) {
                (None, Some(le)) => format!("≤ {}", seconds(*le)),
                (Some(lo), Some(le)) => format!("{} – {}", seconds(lo), seconds(*le)),
                (Some(lo), None) => format!("> {}", seconds(lo)),
                (None, None) => "any".to_owned(),
            };
            *lower = *le;
            Some(LateRow {
                bucket,
                count: *count,
                total: fires,
            })
        })
        .collect();
    AgentInfo {
        version: env!("CARGO_PKG_VERSION"),
        uptime: span(alive.uptime()),
        config: rt.config.file.display().to_string(),
        state_dir: rt.config.agent.state_dir.display().to_string(),
        lateness,
        fires,
    }
}

/// A bucket bound: `1 ms`, `250 ms`, `5 s`.
fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{} ms", (s * 1000.0).round())
    } else {
        elapsed(std::time::Duration::from_secs_f64(s))
    }
}
