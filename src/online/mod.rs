//! Offline awareness (`agent.online`): whether this machine can reach the network, so
//! that a lost network (a laptop on a train) opens no alert.
//!
//! - **Probe rounds.** A round asks every target at once, each bounded by
//!   [`PROBE_TIMEOUT`]; the machine is online when any answers. [`watch`] runs a round
//!   every `every`, every [`OFFLINE_EVERY`] at most while offline (so the return is
//!   noticed soon), and at once when a run has just found the machine offline. One
//!   round runs at a time: callers that ask while one is going share its answer.
//! - **Not judged.** While offline, a network job's fire (`http`, `tcp`, `dns`, `ping`,
//!   `network = true`) is recorded as an `offline` run without running the check: it
//!   moves no alert state and sends nothing. A network run that fails while the agent
//!   still thinks it is online is judged only after a round confirms the network
//!   ([`Online::confirm`]); when no target answers, it is recorded `offline` instead.
//!   Local checks go on as ever.
//! - **Back online.** The first round that finds a target again ends the offline
//!   period: each of `agent.notify` gets one message through the outbox ("back online
//!   after 12m 30s; 37 runs not judged while offline") and the scheduler runs each job
//!   that had an `offline` run once `wake_delay` has passed, instead of at its next fire.
//!
//! Nothing of this exists when `agent.online` is unset: no task, no probe, no check of
//! state on a run.

mod target;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use klaxon_notifiers::{Alert, CheckInfo, Event, Severity};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use target::Target;

use crate::config::OnlineSettings;
use crate::runtime::Runtime;
use crate::store::NewMessage;
use crate::unwritten::{AGENT_JOB, agent_message};

/// How long a target has to answer in one round.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// While offline, rounds come at least this often (or every `every`, when shorter).
pub const OFFLINE_EVERY: Duration = Duration::from_secs(5);

/// What history says of a network run not judged because the machine was offline.
pub const OFFLINE: &str = "offline";

/// The machine's network as the agent sees it. One per agent, kept across reloads.
#[derive(Debug)]
pub struct Online {
    targets: Vec<Target>,
    every: Duration,
    client: reqwest::Client,
    state: Mutex<State>,
    /// One round at a time: when the last one ended, and whether a target answered.
    round: tokio::sync::Mutex<Option<(Instant, bool)>>,
    /// Wakes [`watch`] for a round now (a run found the machine offline).
    wake: Notify,
}

/// The offline period under way, if any.
#[derive(Debug, Default)]
pub struct State {
    offline: Option<Period>,
}

#[derive(Debug, Clone, PartialEq)]
struct Period {
    since: DateTime<Utc>,
    unjudged: u64,
    jobs: BTreeSet<String>,
}

/// An offline period that has ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Back {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Runs recorded `offline` in it.
    pub unjudged: u64,
    /// The jobs those runs were of, to run again now.
    pub jobs: Vec<String>,
}

/// What a round's answer changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    WentOffline,
    CameBack(Back),
}

impl State {
    /// A round at `now` found a target (`online`) or none.
    pub fn note(&mut self, online: bool, now: DateTime<Utc>) -> Option<Change> {
        match (online, self.offline.take()) {
            (false, None) => {
                self.offline = Some(Period {
                    since: now,
                    unjudged: 0,
                    jobs: BTreeSet::new(),
                });
                Some(Change::WentOffline)
            }
            (true, Some(period)) => Some(Change::CameBack(Back {
                since: period.since,
                until: now,
                unjudged: period.unjudged,
                jobs: period.jobs.into_iter().collect(),
            })),
            (_, period) => {
                self.offline = period;
                None
            }
        }
    }

    /// A run of `job` is not judged if the machine is offline: counted, and the time it
    /// went offline returned.
    pub fn not_judged(&mut self, job: &str) -> Option<DateTime<Utc>> {
        let period = self.offline.as_mut()?;
        period.unjudged += 1;
        if !period.jobs.contains(job) {
            period.jobs.insert(job.to_owned());
        }
        Some(period.since)
    }

    /// Since when the machine is offline, if it is.
    pub fn since(&self) -> Option<DateTime<Utc>> {
        self.offline.as_ref().map(|p| p.since)
    }
}

impl Back {
    /// How long the machine was offline.
    pub fn offline_for(&self) -> Duration {
        (self.until - self.since).to_std().unwrap_or_default()
    }

    /// The message's reason: `back online after 12m 30s; 37 runs not judged while
    /// offline`.
    pub fn summary(&self) -> String {
        let runs = match self.unjudged {
            1 => "1 run".to_owned(),
            n => format!("{n} runs"),
        };
        format!(
            "back online after {}; {runs} not judged while offline",
            klaxon_notifiers::text::human_duration(self.offline_for().as_millis() as u64)
        )
    }
}

impl Online {
    pub fn new(settings: &OnlineSettings, client: reqwest::Client) -> Self {
        Self {
            targets: settings.targets.clone(),
            every: settings.every,
            client,
            state: Mutex::default(),
            round: tokio::sync::Mutex::new(None),
            wake: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Since when the machine is offline, if it is (for `/status` and metrics).
    pub fn offline_since(&self) -> Option<DateTime<Utc>> {
        self.state().since()
    }

    /// Whether a run of `job` is not to be judged because the machine is offline; if
    /// so it is counted, and the time it went offline returned.
    pub fn not_judged(&self, job: &str) -> Option<DateTime<Utc>> {
        self.state().not_judged(job)
    }

    /// The targets, as shown: `1.1.1.1:53, https://example.com/`.
    pub fn describe(&self) -> String {
        self.targets
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether the machine is online, for a network run that failed at `asked`: a round
    /// that ended after `asked` answers, or a new one is made. When no target answers,
    /// the offline period begins (at `now`) and [`watch`] is woken to follow it.
    pub async fn confirm(&self, asked: Instant, now: DateTime<Utc>) -> bool {
        self.offline_after(None, asked, now).await.is_none()
    }

    /// [`Online::confirm`] for a failed run of `job`: when no target answers, the run
    /// is counted as not judged in the same step that notes the machine offline (so a
    /// return noticed meanwhile cannot slip between them), and the time the machine
    /// went offline returned.
    pub async fn unjudged(
        &self,
        job: &str,
        asked: Instant,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        self.offline_after(Some(job), asked, now).await
    }

    async fn offline_after(
        &self,
        job: Option<&str>,
        asked: Instant,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if self.round(asked).await {
            return None;
        }
        let (went, since) = {
            let mut state = self.state();
            let went = state.note(false, now) == Some(Change::WentOffline);
            (
                went,
                match job {
                    Some(job) => state.not_judged(job),
                    None => state.since(),
                },
            )
        };
        if went {
            self.went_offline();
            self.wake.notify_one();
        }
        since
    }

    fn went_offline(&self) {
        tracing::warn!(
            targets = %self.describe(),
            "offline: no target of agent.online answers; network checks are not judged until one does"
        );
    }

    /// One round, or the answer of one that ended after `asked`.
    async fn round(&self, asked: Instant) -> bool {
        let mut last = self.round.lock().await;
        if let Some((ended, online)) = *last
            && ended >= asked
        {
            return online;
        }
        let mut asking = tokio::task::JoinSet::new();
        for target in &self.targets {
            let (target, client) = (target.clone(), self.client.clone());
            asking.spawn(async move { target.answers(&client, PROBE_TIMEOUT).await });
        }
        let mut online = false;
        while let Some(answer) = asking.join_next().await {
            if answer.unwrap_or(false) {
                online = true;
                break;
            }
        }
        asking.abort_all();
        *last = Some((Instant::now(), online));
        online
    }

    /// How long [`watch`] waits for its next round.
    fn wait(&self) -> Duration {
        match self.offline_since() {
            Some(_) => self.every.min(OFFLINE_EVERY),
            None => self.every,
        }
    }
}

/// Follows the network until `stop`: a round at start, then every `every` (see the
/// module doc). On the way back, `agent.notify` of the newest runtime hears of it and
/// the jobs not judged are sent to `resume` (the scheduler runs them).
pub async fn watch(
    online: Arc<Online>,
    runtimes: watch::Receiver<Arc<Runtime>>,
    resume: mpsc::UnboundedSender<Vec<String>>,
    stop: CancellationToken,
) {
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(online.wait()) => {}
                () = online.wake.notified() => {}
            }
        }
        first = false;
        let found = tokio::select! {
            () = stop.cancelled() => return,
            found = online.round(Instant::now()) => found,
        };
        let rt = runtimes.borrow().clone();
        let change = online.state().note(found, rt.clock.now());
        match change {
            Some(Change::WentOffline) => online.went_offline(),
            Some(Change::CameBack(back)) => {
                tracing::info!(
                    offline_for = %humantime::format_duration(Duration::from_secs(back.offline_for().as_secs())),
                    not_judged = back.unjudged,
                    "online again: {}; network checks resume after wake_delay",
                    back.summary()
                );
                // An offline spell in which no run went unjudged (a wake-up whose
                // network came back within `wake_delay`) told nobody anything false.
                if back.unjudged > 0 {
                    tell(&rt, &online, &back).await;
                }
                if resume.send(back.jobs).is_err() {
                    return;
                }
            }
            None => {}
        }
    }
}

/// Puts the "back online" message for each of `agent.notify` in the outbox.
async fn tell(rt: &Arc<Runtime>, online: &Online, back: &Back) {
    let messages: Vec<NewMessage> = rt
        .config
        .agent
        .notify
        .iter()
        .map(|notifier| NewMessage {
            notifier: notifier.clone(),
            alert: back_alert(rt, online, back),
        })
        .collect();
    if messages.is_empty() {
        return;
    }
    let (store, kept) = (rt.store.clone(), messages.clone());
    let now = back.until;
    let written = match crate::store::THREADS
        .run(move || store.enqueue_messages(kept, now))
        .await
    {
        Ok(written) => written.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = written {
        // The store cannot take it: sent from memory, as the agent sends a run's
        // messages when their run cannot be written.
        tracing::error!(%e, "cannot put the back-online message in the outbox; sending it from memory");
        if let Some(unwritten) = &rt.unwritten {
            unwritten.send(rt, messages);
        }
    }
}

/// The agent's message about an offline period that ended.
fn back_alert(rt: &Runtime, online: &Online, back: &Back) -> Alert {
    let check = CheckInfo {
        kind: "online".into(),
        target: online.describe(),
    };
    let id = format!("{AGENT_JOB}-offline-{}", back.since.timestamp_millis());
    let mut alert = agent_message(rt, check, back.since, back.until, id);
    alert.event = Event::Recovery;
    alert.severity = Severity::Ok;
    alert.summary = back.summary();
    alert.downtime_ms = Some(back.offline_for().as_millis() as u64);
    alert
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + s, 0).unwrap()
    }

    #[test]
    fn an_offline_period_counts_the_runs_it_did_not_judge_and_ends_once() {
        let mut state = State::default();
        // Online: nothing changes, and runs are judged.
        assert_eq!(state.note(true, at(0)), None);
        assert_eq!(state.not_judged("api"), None);
        // No target answers: offline from then, counted per run, jobs once each.
        assert_eq!(state.note(false, at(10)), Some(Change::WentOffline));
        assert_eq!(
            state.note(false, at(20)),
            None,
            "still offline: no new period"
        );
        assert_eq!(state.since(), Some(at(10)));
        for job in ["api", "dns", "api"] {
            assert_eq!(state.not_judged(job), Some(at(10)));
        }
        let Some(Change::CameBack(back)) = state.note(true, at(760)) else {
            panic!("the return is a change");
        };
        assert_eq!(
            back,
            Back {
                since: at(10),
                until: at(760),
                unjudged: 3,
                jobs: vec!["api".into(), "dns".into()],
            }
        );
        assert_eq!(state.since(), None);
        assert_eq!(state.note(true, at(770)), None, "back once, not again");
    }

    #[tokio::test]
    async fn a_failed_run_is_judged_only_when_a_round_confirms_the_network() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let settings = OnlineSettings {
            targets: vec![Target::parse(&listener.local_addr().unwrap().to_string()).unwrap()],
            every: Duration::from_secs(30),
        };
        let online = Online::new(&settings, reqwest::Client::new());
        assert!(
            online.confirm(Instant::now(), at(0)).await,
            "the target answers"
        );
        assert_eq!(online.offline_since(), None);
        assert_eq!(online.not_judged("api"), None);
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let before = Instant::now();
        assert!(
            !online.confirm(Instant::now(), at(5)).await,
            "nothing answers now"
        );
        assert_eq!(online.offline_since(), Some(at(5)));
        // A failure from before the last round ended shares its answer: no new round
        // (which would find the target back).
        let _back = tokio::net::TcpListener::bind(addr).await.unwrap();
        assert!(
            !online.confirm(before, at(6)).await,
            "the last round's answer"
        );
        assert_eq!(
            online.offline_since(),
            Some(at(5)),
            "one period, from the first"
        );
        assert_eq!(online.not_judged("api"), Some(at(5)));
    }

    #[test]
    fn the_back_online_message_says_how_long_and_how_many_runs() {
        let back = |secs, unjudged| Back {
            since: at(0),
            until: at(secs),
            unjudged,
            jobs: Vec::new(),
        };
        assert_eq!(
            back(750, 37).summary(),
            "back online after 12m 30s; 37 runs not judged while offline"
        );
        assert_eq!(
            back(7_260, 1).summary(),
            "back online after 2h 1m; 1 run not judged while offline"
        );
        assert_eq!(
            back(5, 0).summary(),
            "back online after 5.0s; 0 runs not judged while offline"
        );
    }
}
