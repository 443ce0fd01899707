//! `/`: the overview. [`gather`] reads what the page shows from the config, the store
//! (a handful of queries for all jobs together, never one per job) and the agent's own
//! counters; [`Overview`] is the page, rendered by `templates/overview.html`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use askama::Template;
use chrono::{DateTime, Utc};

use super::{Actions, Frame, State, When, job_href, span, svg};
use crate::alert::{JobState, OpenAlert};
use crate::liveness::Liveness;
use crate::runtime::Runtime;
use crate::store::{HeldMessage, RECENT_RUNS, RecentRun, Silence, StoreError};

/// Undelivered messages shown at most; the rest are counted (`klaxon outbox` lists all).
pub const OUTBOX_SHOWN: usize = 50;

/// Jobs on one page of the overview (`/?page=N`), worst first: a fleet of a thousand
/// is ten pages, each quick to render and light to send, the failing jobs on the first.
pub const PAGE_JOBS: usize = 100;

/// Open alerts listed at most; the rest are counted (their jobs lead the jobs table).
pub const ALERTS_SHOWN: usize = 100;

/// The overview page.
#[derive(Debug, Template)]
#[template(path = "overview.html")]
pub struct Overview {
    pub frame: Frame,
    /// How many jobs are in each state, worst first: (word, class, count).
    pub counts: Vec<(&'static str, &'static str, usize)>,
    pub total: usize,
    pub paging: Paging,
    /// This page's jobs, worst first, then in config order.
    pub jobs: Vec<JobRow>,
    pub alerts: Vec<AlertRow>,
    /// Open alerts beyond [`ALERTS_SHOWN`].
    pub alerts_more: usize,
    pub silences: Vec<SilenceRow>,
    pub acks: Vec<AckRow>,
    pub outbox: Vec<OutboxRow>,
    /// Undelivered messages beyond [`OUTBOX_SHOWN`].
    pub outbox_more: usize,
    pub agent: AgentInfo,
}

/// Which page of jobs this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// From 1.
    pub page: usize,
    pub pages: usize,
    /// The page's first and last job, counted from 1 (0 and 0 without jobs).
    pub first: usize,
    pub last: usize,
}

impl Paging {
    /// Page `wanted` (from `/?page=N`; the last one when beyond it) of `total` jobs.
    pub fn new(wanted: usize, total: usize) -> Self {
        let pages = total.div_ceil(PAGE_JOBS).max(1);
        let page = wanted.clamp(1, pages);
        let first = (page - 1) * PAGE_JOBS;
        Self {
            page,
            pages,
            first: (first + 1).min(total),
            last: (first + PAGE_JOBS).min(total),
        }
    }

    /// The page a query string asks for (`page=N`), 1 when it says none.
    pub fn wanted(query: Option<&str>) -> usize {
        query
            .unwrap_or_default()
            .split('&')
            .find_map(|pair| pair.strip_prefix("page="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(1)
    }

    /// The page numbers to link to.
    pub fn numbers(&self) -> std::ops::RangeInclusive<usize> {
        1..=self.pages
    }
}

/// Where a job goes on the overview: failing first, then unknown, not run yet, ok.
fn rank(state: Option<&JobState>) -> u8 {
    use crate::alert::SeverityName as S;
    match state.and_then(|s| s.severity) {
        Some(S::Critical) => 0,
        Some(S::Warning) => 1,
        Some(S::Unknown) => 2,
        None => 3,
        Some(S::Ok) => 4,
    }
}

/// The config's jobs in the overview's order: worst first, then as the config has them.
pub fn ordered<'a>(
    config: &'a crate::config::Config,
    states: &HashMap<String, Arc<JobState>>,
) -> Vec<&'a crate::config::Job> {
    // Each job's rank looked up once, not at every comparison.
    let mut jobs: Vec<_> = config
        .jobs
        .iter()
        .map(|j| (rank(states.get(&j.name).map(|s| &**s)), j))
        .collect();
    jobs.sort_by_key(|(rank, _)| *rank);
    jobs.into_iter().map(|(_, j)| j).collect()
}

/// Each job's bar and sparkline as last drawn, by job: a job whose recent runs are
/// the ones they were drawn from is not drawn again (most rows of a page refreshed
/// every few seconds). The runtime holds it; a reload starts afresh.
#[derive(Debug, Default)]
pub struct Drawings(Mutex<HashMap<String, Drawn>>);

#[derive(Debug)]
struct Drawn {
    /// The runs drawn. A weak pointer keeps their allocation, so that the store's
    /// memory of runs cannot change them in place ([`Arc::make_mut`] moves them to a
    /// new one): the same address is the same runs.
    runs: Weak<Vec<RecentRun>>,
    bar: Arc<str>,
    spark: Arc<str>,
}

impl Drawings {
    /// `job`'s bar and sparkline (an empty sparkline when it measures no latency) of
    /// `runs` (`None`: it has none).
    pub fn of(&self, job: &str, runs: Option<&Arc<Vec<RecentRun>>>) -> (Arc<str>, Arc<str>) {
        let Some(runs) = runs else {
            return (svg::bar(&[]).into(), Arc::from(""));
        };
        let mut drawn = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = drawn.get(job)
            && std::ptr::eq(d.runs.as_ptr(), Arc::as_ptr(runs))
        {
            return (Arc::clone(&d.bar), Arc::clone(&d.spark));
        }
        let d = Drawn {
            runs: Arc::downgrade(runs),
            bar: svg::bar(runs).into(),
            spark: svg::sparkline(runs).unwrap_or_default().into(),
        };
        let out = (Arc::clone(&d.bar), Arc::clone(&d.spark));
        drawn.insert(job.to_owned(), d);
        out
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
    pub bar: Arc<str>,
    pub spark: Arc<str>,
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
    /// `pending` or `given up`.
    pub state: &'static str,
    pub class: &'static str,
    /// `next try`, `due`, `gave up`, and when.
    pub when_label: &'static str,
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
    /// Every job's state (a job never run has none); shared with the store.
    pub states: Arc<HashMap<String, Arc<JobState>>>,
    /// Each job's recent runs, oldest first.
    pub runs: HashMap<String, Arc<Vec<RecentRun>>>,
    pub last_fires: HashMap<String, DateTime<Utc>>,
    pub silences: Vec<Silence>,
    pub held: Vec<HeldMessage>,
}

impl Reads {
    /// Every job's state, and the recent runs of the jobs on `paging`'s page: one
    /// statement for each kind of read, whatever the number of jobs.
    pub fn read(rt: &Runtime, paging: Paging, now: DateTime<Utc>) -> Result<Self, StoreError> {
        let states = rt.store.job_states()?;
        let order = ordered(&rt.config, &states);
        let shown = || page_of(&order, paging).iter().map(|j| j.name.as_str());
        Ok(Self {
            runs: rt.store.recent_runs(shown(), RECENT_RUNS)?,
            last_fires: rt.store.last_fires(shown())?,
            states,
            silences: rt.store.silences(now, false)?,
            held: rt.store.held()?,
        })
    }
}

/// The jobs of `paging`'s page of `order`.
fn page_of<'a, 'b>(
    order: &'b [&'a crate::config::Job],
    paging: Paging,
) -> &'b [&'a crate::config::Job] {
    let start = paging.first.saturating_sub(1).min(order.len());
    &order[start..paging.last.max(start).min(order.len())]
}

/// Page `wanted` of the overview of `rt` as of `now`.
pub fn gather(
    rt: &Runtime,
    alive: &Liveness,
    actions: Actions,
    wanted: usize,
    now: DateTime<Utc>,
) -> Result<Overview, StoreError> {
    let paging = Paging::new(wanted, rt.config.jobs.len());
    let reads = Reads::read(rt, paging, now)?;
    Ok(build(rt, alive, actions, paging, &reads, now))
}

/// The page from what was read: pure but for the agent's counters.
pub fn build(
    rt: &Runtime,
    alive: &Liveness,
    actions: Actions,
    paging: Paging,
    reads: &Reads,
    now: DateTime<Utc>,
) -> Overview {
    let config = &rt.config;
    let default_state = JobState::default();
    let order = ordered(config, &reads.states);
    let mut counts: Vec<(&'static str, &'static str, usize)> = Vec::new();
    let mut alerts = Vec::new();
    let mut alerts_more = 0;
    let mut acks = Vec::new();
    for job in &order {
        let state = reads.states.get(&job.name).map_or(&default_state, |s| s);
        let word = State::of(state.severity);
        match counts.last_mut() {
            Some((w, _, n)) if *w == word.word => *n += 1,
            _ => counts.push((word.word, word.class, 1)),
        }
        let Some(open) = &state.open else { continue };
        let href = job_href(&job.name);
        if alerts.len() < ALERTS_SHOWN {
            alerts.push(alert_row(job, &href, state, open, &reads.held, now));
        } else {
            alerts_more += 1;
        }
        if let Some(ack) = &open.acked {
            acks.push(AckRow {
                job: job.name.clone(),
                href,
                by: ack.by.clone(),
                at: When::new(ack.at, now, job.timezone),
                comment: ack.comment.clone().unwrap_or_default(),
            });
        }
    }
    let shown = page_of(&order, paging);
    let mut jobs = Vec::with_capacity(shown.len());
    for job in shown {
        let tz = job.timezone;
        let state = reads.states.get(&job.name).map_or(&default_state, |s| s);
        let recent = reads.runs.get(&job.name);
        let runs = recent.map_or(&[][..], |r| r.as_slice());
        let (bar, spark) = rt.drawings.of(&job.name, recent);
        let last = runs.iter().rev().find(|r| r.verdict.judged());
        let silence = crate::status::silenced(config, &reads.silences, &job.name, now);
        let href = job_href(&job.name);
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
            bar,
            spark,
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
        counts,
        total: config.jobs.len(),
        paging,
        jobs,
        alerts,
        alerts_more,
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
    } else if job.notify.is_empty() {
        Some("nobody: the job notifies no one")
    } else {
        Some("nobody: no notifier of the job takes this severity")
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
    let (state, class, when_label, when) = match m.gave_up_at {
        Some(t) => ("given up", "critical", "gave up", t),
        None if m.next_attempt_at <= now => ("pending", "warning", "due", m.next_attempt_at),
        None => ("pending", "warning", "next try", m.next_attempt_at),
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
        when_label,
        when: When::new(when, now, tz),
        last_error: m.last_error.clone().unwrap_or_default(),
    }
}

fn agent_info(rt: &Runtime, alive: &Liveness) -> AgentInfo {
    let counts = rt.metrics.lateness();
    let fires: u64 = counts.iter().map(|(_, n)| n).sum();
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
                total: fires.max(1),
            })
        })
        // Buckets no fire fell in say nothing: a short table of where fires did.
        .filter(|row| row.count > 0)
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
    } else if s < 60.0 {
        format!("{} s", s.round())
    } else {
        span(std::time::Duration::from_secs_f64(s))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;
    use crate::alert::SeverityName;
    use crate::config::tests_support::load_text;
    use crate::runtime::{Mode, SystemClock};
    use crate::store::Verdict;

    fn runtime(jobs: usize) -> Runtime {
        let mut text = String::from("[agent]\nname = \"web-01\"\ntimezone = \"UTC\"\n");
        for i in 0..jobs {
            text.push_str(&format!(
                "[jobs.service-{i:04}]\nevery = \"1m\"\n[jobs.service-{i:04}.check]\ntype = \"http\"\nurl = \"https://service-{i:04}.example.com/health\"\n"
            ));
        }
        let config = load_text(&text).unwrap();
        Runtime::build(config, Mode::DryRun, Arc::new(SystemClock)).unwrap()
    }

    /// What a day of a typical job looks like: 90 runs a minute apart measuring a
    /// latency, with a short outage in the middle (three stretches of the bar).
    fn reads(rt: &Runtime, now: DateTime<Utc>) -> Reads {
        let mut reads = Reads::default();
        for job in &rt.config.jobs {
            let runs: Vec<RecentRun> = (0..RECENT_RUNS)
                .map(|i| {
                    let down = (40..44).contains(&i);
                    RecentRun {
                        started_at: now - chrono::Duration::minutes((RECENT_RUNS - i) as i64),
                        severity: if down { "critical" } else { "ok" }.to_owned(),
                        verdict: if down { Verdict::Critical } else { Verdict::Ok },
                        elapsed: Duration::from_millis(120 + (i as u64 * 37) % 90),
                        latency_ms: (!down).then_some(100.0 + (i * 37 % 90) as f64),
                        summary: if down {
                            "connection refused".to_owned()
                        } else {
                            "200 OK in 131 ms".to_owned()
                        },
                    }
                })
                .collect();
            let state = JobState {
                severity: Some(SeverityName::Ok),
                since: Some(now - chrono::Duration::minutes(46)),
                last_run: Some(now - chrono::Duration::seconds(20)),
                ..JobState::default()
            };
            Arc::make_mut(&mut reads.states).insert(job.name.clone(), Arc::new(state));
            reads.runs.insert(job.name.clone(), Arc::new(runs));
            reads
                .last_fires
                .insert(job.name.clone(), now - chrono::Duration::seconds(20));
        }
        reads
    }

    fn overview(jobs: usize) -> (Overview, String) {
        let rt = runtime(jobs);
        let now = Utc::now();
        let paging = Paging::new(1, jobs);
        let reads = reads(&rt, now);
        let page = build(&rt, &Liveness::new(), Actions::NoToken, paging, &reads, now);
        let html = page.render().unwrap();
        (page, html)
    }

    #[test]
    fn a_thousand_typical_jobs_weigh_at_most_300_kb_and_twenty_at_most_60() {
        let (page, html) = overview(1000);
        assert_eq!(page.total, 1000);
        assert_eq!(page.jobs.len(), PAGE_JOBS);
        assert!(html.len() <= 300 * 1024, "{} bytes", html.len());
        let (_, html) = overview(20);
        assert!(html.len() <= 60 * 1024, "{} bytes", html.len());
    }

    #[test]
    fn each_job_is_a_row_with_its_state_bar_and_sparkline() {
        let (page, html) = overview(3);
        assert_eq!(
            html.matches("<tr><th scope=\"row\"><a href=\"/jobs/service-")
                .count(),
            3
        );
        assert_eq!(html.matches("<svg class=\"bar\"").count(), 3);
        assert_eq!(html.matches("<svg class=\"sparkline\"").count(), 3);
        // Up, down for four runs, up again: three stretches each.
        let bar = &page.jobs[0].bar;
        assert_eq!(bar.matches("<rect").count(), 3, "{bar}");
        assert_eq!(page.counts, [("up", "ok", 3)]);
        assert!(html.contains("<span class=\"st ok\">3 up</span>"), "{html}");
        assert!(html.contains("No open alerts."));
    }

    #[test]
    fn a_bar_is_drawn_again_only_when_its_runs_change() {
        let rt = runtime(1);
        let now = Utc::now();
        let reads = reads(&rt, now);
        let mut runs = Arc::clone(&reads.runs["service-0000"]);
        let (bar, spark) = rt.drawings.of("service-0000", Some(&runs));
        assert_eq!(bar.matches("<rect").count(), 3, "{bar}");
        let (again, _) = rt.drawings.of("service-0000", Some(&runs));
        assert!(Arc::ptr_eq(&bar, &again), "the same runs: not drawn again");
        // The store's memory of runs changes them with `make_mut`: the only strong
        // reference is the one changed, and yet the bar is drawn anew.
        drop(reads);
        let mut down = runs.last().unwrap().clone();
        down.severity = "critical".to_owned();
        down.verdict = Verdict::Critical;
        down.latency_ms = Some(900.0);
        Arc::make_mut(&mut runs).push(down);
        let (after, spark_after) = rt.drawings.of("service-0000", Some(&runs));
        assert_eq!(after.matches("<rect").count(), 4, "{after}");
        assert_ne!(spark, spark_after);
        let (none, no_spark) = rt.drawings.of("service-0000", None);
        assert!(!none.contains("critical") && no_spark.is_empty(), "{none}");
    }

    #[test]
    fn pages_hold_a_hundred_jobs_worst_first() {
        assert_eq!(Paging::wanted(Some("page=3")), 3);
        assert_eq!(Paging::wanted(Some("x=1&page=2")), 2);
        assert_eq!(Paging::wanted(Some("page=two")), 1);
        assert_eq!(Paging::wanted(None), 1);
        let p = Paging::new(2, 250);
        assert_eq!((p.page, p.pages, p.first, p.last), (2, 3, 101, 200));
        let p = Paging::new(9, 250);
        assert_eq!((p.page, p.first, p.last), (3, 201, 250));
        let p = Paging::new(0, 0);
        assert_eq!((p.page, p.pages, p.first, p.last), (1, 1, 0, 0));

        let rt = runtime(250);
        let now = Utc::now();
        let mut reads = reads(&rt, now);
        // The last job in the config is down: it leads the first page.
        Arc::make_mut(
            Arc::make_mut(&mut reads.states)
                .get_mut("service-0249")
                .unwrap(),
        )
        .severity = Some(SeverityName::Critical);
        let first = build(
            &rt,
            &Liveness::new(),
            Actions::NoToken,
            Paging::new(1, 250),
            &reads,
            now,
        );
        assert_eq!(first.jobs[0].name, "service-0249");
        assert_eq!(first.jobs[1].name, "service-0000");
        assert_eq!(first.counts, [("down", "critical", 1), ("up", "ok", 249)]);
        let html = first.render().unwrap();
        assert!(html.contains("Jobs 1–100 of 250, worst first"), "{html}");
        assert!(html.contains("<a href=\"/?page=1\" aria-current=\"page\">1</a>"));
        assert!(html.contains("<a href=\"/?page=3\">3</a>"));
        let last = build(
            &rt,
            &Liveness::new(),
            Actions::NoToken,
            Paging::new(3, 250),
            &reads,
            now,
        );
        assert_eq!(last.jobs.len(), 50);
        assert_eq!(last.jobs[49].name, "service-0248");
    }

    #[test]
    fn lateness_lists_the_buckets_fires_fell_in() {
        let rt = runtime(1);
        let due = Utc::now();
        for late_ms in [0, 0, 3, 2_000, 400_000] {
            rt.metrics
                .dispatched(due, due + chrono::Duration::milliseconds(late_ms));
        }
        let info = agent_info(&rt, &Liveness::new());
        assert_eq!(info.fires, 5);
        let rows: Vec<_> = info
            .lateness
            .iter()
            .map(|r| (r.bucket.as_str(), r.count))
            .collect();
        assert_eq!(
            rows,
            [
                ("≤ 1 ms", 2),
                ("1 ms – 5 ms", 1),
                ("1 s – 5 s", 1),
                ("> 5m", 1)
            ]
        );
    }
}
