//! Delivering what the outbox holds. Messages are already durable when they get here;
//! this sends each through its notifier and records how it went. What a try's outcome
//! means (delivered, retry after `Retry-After` or backoff, give up, copy to the
//! `fallback`) is decided by the pure [`policy`], table-tested on its own; this module
//! carries the decision out: marks, metrics, logs, the fallback copy. Slack gets at most
//! one message a second per notifier, as its webhooks allow.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use klaxon_notifiers::DeliveryError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::DeliveryResult;
use crate::runtime::{Mode, Runtime};
use crate::store::{Mark, OutboxItem};

mod policy;
pub use policy::GIVE_UP_AFTER;
pub(crate) use policy::backoff;
use policy::{Decision, Facts, Tried, Why};

/// Messages of one notifier sent at the same time (to different jobs' alerts), so a
/// storm of a hundred alerts to a webhook is not a hundred round trips in a row.
const IN_FLIGHT: usize = 8;

/// A new message makes the delivery loop read the whole outbox (not only take what this
/// process handed over) when its last read is older than this.
const READ_AFTER: Duration = Duration::from_secs(30);

/// How often the delivery loop checks whether another process (`once`, `ping`,
/// `exec`) wrote the store when the agent has no doorbell (`Store::listen_for_others`
/// failed): one `PRAGMA data_version`, no disk read. `deliver_within` also looks this
/// often at a message another process holds.
const POLL: Duration = Duration::from_secs(1);

/// How one delivery try went.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    Delivered,
    /// Will be tried again after this long.
    Deferred(Duration),
    /// Refused for good, or its notifier no longer exists.
    GaveUp,
}

/// Tries to deliver one message and records the outcome in the store.
pub async fn deliver(rt: &Runtime, item: &OutboxItem) -> Delivery {
    let (delivery, mark) = try_once(rt, item).await;
    if let Some(mark) = mark {
        record(rt.store.mark(&[mark]));
    }
    delivery
}

/// Tries to deliver one message; the outcome is for the caller to record (`None`: it
/// is recorded already).
async fn try_once(rt: &Runtime, item: &OutboxItem) -> (Delivery, Option<Mark>) {
    let Some(notifier) = configured(rt, item) else {
        return (Delivery::GaveUp, None);
    };
    if rt.mode == Mode::DryRun {
        print_dry_run(
            rt,
            &item.notifier,
            &klaxon_notifiers::text::render_text(&item.alert),
        );
        return (
            Delivery::Delivered,
            Some(Mark::delivered(item.id, rt.clock.now())),
        );
    }
    pace(rt, &item.notifier).await;
    let result = send(rt, &item.notifier, notifier, &item.alert).await;
    let (delivery, mark) = settle(rt, item, result, true);
    (delivery, Some(mark))
}

/// Sends one message through the notifier `name` now, paced like the outbox's, without
/// the outbox (for what is sent while the store cannot be written). The outcome is
/// counted in the delivery metrics; the caller retries.
pub(crate) async fn send_now(
    rt: &Runtime,
    name: &str,
    alert: &klaxon_notifiers::Alert,
) -> Result<(), DeliveryError> {
    let Some(notifier) = rt.notifiers.get(name) else {
        return Err(DeliveryError::Reject {
            reason: "notifier no longer configured".into(),
        });
    };
    pace(rt, name).await;
    let result = send(rt, name, notifier, alert).await;
    let counted = match &result {
        Ok(()) => DeliveryResult::Delivered,
        Err(DeliveryError::Retry { .. }) => DeliveryResult::Retry,
        Err(DeliveryError::Reject { .. }) => DeliveryResult::Rejected,
    };
    rt.metrics.delivery(name, counted);
    result
}

/// Sends one message through `notifier` (named `name`). Each Alertmanager replica that
/// did not take it is logged (by `host:port` only) and counted, even when another
/// replica took it and it counts as delivered.
async fn send(
    rt: &Runtime,
    name: &str,
    notifier: &klaxon_notifiers::Notifier,
    alert: &klaxon_notifiers::Alert,
) -> Result<(), DeliveryError> {
    let posted = notifier.send_to_replicas(alert).await;
    for failed in &posted.failed {
        tracing::warn!(
            job = %alert.job,
            notifier = %name,
            replica = %failed.replica,
            event = alert.event.as_str(),
            "alertmanager replica did not take the message: {}",
            failed.error
        );
        rt.metrics.replica_failure(name, &failed.replica);
    }
    posted.result
}

/// Delivers several due messages of one notifier as one digest (channels a person
/// reads); each message is then settled as if it had been sent alone. Returns the
/// outcomes to record.
async fn deliver_digest(rt: &Runtime, name: &str, items: &[OutboxItem]) -> Vec<Mark> {
    let Some(notifier) = items.first().and_then(|i| configured(rt, i)) else {
        return Vec::new();
    };
    let alerts: Vec<_> = items.iter().map(|i| i.alert.clone()).collect();
    if rt.mode == Mode::DryRun {
        print_dry_run(
            rt,
            name,
            &klaxon_notifiers::text::render_digest_text(&alerts),
        );
        return items
            .iter()
            .map(|i| Mark::delivered(i.id, rt.clock.now()))
            .collect();
    }
    pace(rt, name).await;
    let result = notifier.send_digest(&alerts).await;
    match &result {
        Ok(()) => tracing::info!(notifier = %name, messages = items.len(), "digest delivered"),
        Err(e) => tracing::error!(
            notifier = %name,
            messages = items.len(),
            jobs = %items.iter().map(|i| i.alert.job.as_str()).collect::<Vec<_>>().join(","),
            "digest not delivered: {e}"
        ),
    }
    items
        .iter()
        .map(|item| settle(rt, item, result.clone(), false).1)
        .collect()
}

/// The notifier of a message, or `None` (and the message given up) when the config no
/// longer has it.
fn configured<'a>(rt: &'a Runtime, item: &OutboxItem) -> Option<&'a klaxon_notifiers::Notifier> {
    let notifier = rt.notifiers.get(&item.notifier).map(|n| n.as_ref());
    if notifier.is_none() {
        tracing::error!(
            job = %item.alert.job,
            notifier = %item.notifier,
            "message for a notifier that is no longer configured; keeping it undelivered"
        );
        record(rt.store.mark(&[Mark::GaveUp {
            id: item.id,
            error: "notifier no longer configured".into(),
            at: rt.clock.now(),
        }]));
        rt.metrics.delivery(&item.notifier, DeliveryResult::GaveUp);
    }
    notifier
}

fn print_dry_run(rt: &Runtime, name: &str, text: &str) {
    let kind = rt.config.notifier(name).map_or("?", |n| n.spec.kind());
    println!("[dry-run] would send to `{name}` ({kind}):\n{text}\n");
}

/// Waits until a rate-limited notifier may send again.
async fn pace(rt: &Runtime, name: &str) {
    let Some(gap) = rt.config.notifier(name).and_then(|n| n.spec.min_interval()) else {
        return;
    };
    let wait = {
        let mut last = rt.last_sent.lock().unwrap_or_else(|p| p.into_inner());
        let now = tokio::time::Instant::now();
        let at = last.get(name).map_or(now, |prev| (*prev + gap).max(now));
        last.insert(name.to_owned(), at);
        at - now
    };
    tokio::time::sleep(wait).await;
}

/// Records how a delivery try of one message went: delivered; retried later (or given
/// up after a day); refused for good. A message that is not getting through goes to the
/// notifier's fallback. `log` is false for a digest, which logs once for all.
fn settle(
    rt: &Runtime,
    item: &OutboxItem,
    result: Result<(), DeliveryError>,
    log: bool,
) -> (Delivery, Mark) {
    let alert = &item.alert;
    let now = rt.clock.now();
    let tried = match &result {
        Ok(()) => Tried::Taken,
        Err(DeliveryError::Retry { after, .. }) => Tried::Failed { after: *after },
        Err(DeliveryError::Reject { .. }) => Tried::Refused,
    };
    let facts = Facts {
        age: (now - item.created_at).to_std().unwrap_or_default(),
        attempts: item.attempts,
        fallback_after: rt
            .config
            .notifier(&item.notifier)
            .map_or(Duration::MAX, |n| n.fallback_after),
    };
    let reason = match result {
        Ok(()) => String::new(),
        Err(DeliveryError::Retry { reason, .. } | DeliveryError::Reject { reason }) => reason,
    };
    match policy::decide(tried, facts) {
        Decision::Delivered => {
            if log {
                tracing::info!(
                    job = %alert.job,
                    notifier = %item.notifier,
                    event = alert.event.as_str(),
                    "delivered"
                );
            }
            rt.metrics
                .delivery(&item.notifier, DeliveryResult::Delivered);
            (Delivery::Delivered, Mark::delivered(item.id, now))
        }
        Decision::GiveUp(Why::TooOld) => {
            tracing::error!(
                job = %alert.job,
                notifier = %item.notifier,
                event = alert.event.as_str(),
                "giving up on a message after {} of failed deliveries: {reason}",
                humantime::format_duration(GIVE_UP_AFTER)
            );
            give_up(rt, item, reason, DeliveryResult::GaveUp)
        }
        Decision::GiveUp(Why::Refused) => {
            if log {
                tracing::error!(
                    job = %alert.job,
                    notifier = %item.notifier,
                    event = alert.event.as_str(),
                    "delivery refused, not retrying: {reason}"
                );
            }
            give_up(rt, item, reason, DeliveryResult::Rejected)
        }
        Decision::Retry {
            wait,
            fallback: copy,
        } => {
            if copy {
                fallback(rt, item);
            }
            if log {
                tracing::error!(
                    job = %alert.job,
                    notifier = %item.notifier,
                    event = alert.event.as_str(),
                    retry_in = %humantime::format_duration(wait),
                    "delivery failed: {reason}"
                );
            }
            let next = now + chrono::Duration::from_std(wait).unwrap_or_default();
            rt.metrics.delivery(&item.notifier, DeliveryResult::Retry);
            let mark = Mark::Failed {
                id: item.id,
                error: reason,
                next_attempt_at: next,
            };
            (Delivery::Deferred(wait), mark)
        }
    }
}

/// A message that will not be tried again (refused, or a day old): counted, copied to
/// the notifier's fallback, and marked with `reason`.
fn give_up(
    rt: &Runtime,
    item: &OutboxItem,
    reason: String,
    counted_as: DeliveryResult,
) -> (Delivery, Mark) {
    rt.metrics.delivery(&item.notifier, counted_as);
    fallback(rt, item);
    let mark = Mark::GaveUp {
        id: item.id,
        error: reason,
        at: rt.clock.now(),
    };
    (Delivery::GaveUp, mark)
}

/// Copies a message that cannot get through to its notifier's `fallback`, once.
fn fallback(rt: &Runtime, item: &OutboxItem) {
    if item.fallback_sent {
        return;
    }
    let Some(target) = rt
        .config
        .notifier(&item.notifier)
        .and_then(|n| n.fallback.clone())
    else {
        return;
    };
    match rt.store.enqueue_fallback(item, &target, rt.clock.now()) {
        Ok(Some(_)) => {
            tracing::warn!(
                job = %item.alert.job,
                notifier = %item.notifier,
                fallback = %target,
                "the message is not getting through; its fallback gets it too"
            );
        }
        Ok(None) => {}
        Err(e) => tracing::error!(%e, "cannot enqueue the fallback message"),
    }
}

fn record(result: Result<(), crate::store::StoreError>) {
    if let Err(e) = result {
        tracing::error!(%e, "cannot update the outbox");
    }
}

/// What the delivery loop has taken from the outbox and not finished with: messages
/// waiting for a free slot, being sent, or sent with their outcome not committed yet.
/// A taken message is not taken again, and a job's later message to the same notifier
/// waits until the earlier one is settled, so nothing is sent twice by one agent and a
/// recovery never overtakes its failure.
///
/// Taking is a pipeline, not rounds: messages committed while others are being sent are
/// taken at once and go out beside them, each notifier with at most its number of
/// slots in flight ([`IN_FLIGHT`]; one for a channel a person reads).
struct Flights {
    /// Outbox ids taken.
    taken: HashSet<i64>,
    /// (notifier, job) of the messages taken.
    busy: HashSet<(String, String)>,
    /// (notifier, job) whose newer messages were left in the outbox because an older
    /// one was taken: the outbox is read again when that one is settled.
    behind: HashSet<(String, String)>,
    /// (notifier, job) with a message waiting for a later retry (as of the last read,
    /// and failed since): a newer message handed over is left for a read then.
    held: HashSet<(String, String)>,
    /// Work not started yet, per notifier, oldest first, with what it holds.
    waiting: Vec<(String, VecDeque<(Work, Hold)>)>,
    /// Slots in use per notifier. A slot is freed when its send is done, before the
    /// outcome is committed.
    active: HashMap<String, usize>,
    sending: tokio::task::JoinSet<Landed>,
    /// What each task took, to release it however the task ends.
    holds: HashMap<tokio::task::Id, Hold>,
    freed_tx: mpsc::UnboundedSender<String>,
    freed_rx: mpsc::UnboundedReceiver<String>,
}

/// Messages of one notifier sent by one task: one job's in order, or a digest.
enum Work {
    Chain(Vec<OutboxItem>),
    Digest(Vec<OutboxItem>),
}

impl Work {
    fn items(&self) -> &[OutboxItem] {
        match self {
            Work::Chain(items) | Work::Digest(items) => items,
        }
    }
}

/// What a piece of work holds while it is taken: its notifier, outbox ids and jobs.
struct Hold {
    notifier: String,
    ids: Vec<i64>,
    jobs: HashSet<String>,
}

impl Hold {
    fn of(notifier: &str, work: &Work) -> Self {
        Self {
            notifier: notifier.to_owned(),
            ids: work.items().iter().map(|i| i.id).collect(),
            jobs: work.items().iter().map(|i| i.alert.job.clone()).collect(),
        }
    }

    fn keys(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.jobs.iter().map(|j| (self.notifier.clone(), j.clone()))
    }
}

/// How a task's messages went, once their outcomes are committed.
#[derive(Default)]
struct Landed {
    /// The earliest retry it scheduled.
    retry_at: Option<DateTime<Utc>>,
    /// A message was given up with later ones of its job behind it: read the outbox
    /// again for those.
    more: bool,
}

impl Landed {
    /// Keeps the earliest retry a mark schedules.
    fn note(&mut self, mark: &Mark) {
        if let Mark::Failed {
            next_attempt_at, ..
        } = mark
        {
            self.retry_at = earliest(self.retry_at, Some(*next_attempt_at));
        }
    }
}

/// A notifier's slot, given back when the send is done (or the task ends anyhow).
struct Slot {
    freed: mpsc::UnboundedSender<String>,
    notifier: Option<String>,
}

impl Slot {
    fn free(&mut self) {
        if let Some(name) = self.notifier.take() {
            let _ = self.freed.send(name);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.free();
    }
}

impl Flights {
    fn new() -> Self {
        let (freed_tx, freed_rx) = mpsc::unbounded_channel();
        Self {
            taken: HashSet::new(),
            busy: HashSet::new(),
            behind: HashSet::new(),
            held: HashSet::new(),
            waiting: Vec::new(),
            active: HashMap::new(),
            sending: tokio::task::JoinSet::new(),
            holds: HashMap::new(),
            freed_tx,
            freed_rx,
        }
    }

    /// Reads the outbox and takes what is due at `now` and not taken yet. Returns
    /// when a held group's window ends (a channel a person reads waits `group_wait` for
    /// more).
    fn take_due(&mut self, rt: &Runtime, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let due = match rt.store.due_except(now, &self.taken) {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(%e, "cannot read the outbox");
                return None;
            }
        };
        self.held = due.blocked;
        self.behind.extend(due.behind);
        self.take(rt, now, due.items)
    }

    /// Takes the messages committed since the last look ([`Store::take_fresh`])
    /// without reading the whole outbox, except a job's message that must wait for an
    /// older one (left for the read that comes with that one's retry or landing). One
    /// claimed as it was inserted had no older message of its job and notifier
    /// undelivered: it is taken as it is. The others are claimed first, in one
    /// transaction that looks at their jobs alone: another process may be sending an
    /// older message of the same job and notifier.
    fn take_fresh(&mut self, rt: &Runtime, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut claimed = Vec::new();
        let mut keys = HashSet::new();
        for fresh in rt.store.take_fresh() {
            let item = fresh.item;
            if self.taken.contains(&item.id) {
                continue;
            }
            if fresh.claimed {
                claimed.push(item);
                continue;
            }
            let key = (item.notifier, item.alert.job);
            if !self.held.contains(&key) {
                keys.insert(key);
            }
        }
        // Taken before the claim below, which then leaves a newer message of their
        // jobs behind them.
        let wake = self.take(rt, now, claimed);
        if keys.is_empty() {
            return wake;
        }
        let due = match rt.store.claim_keys(now, &self.taken, &keys) {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(%e, "cannot read the outbox");
                return wake;
            }
        };
        self.held.extend(due.blocked);
        self.behind.extend(due.behind);
        earliest(wake, self.take(rt, now, due.items))
    }

    fn take(
        &mut self,
        rt: &Runtime,
        now: DateTime<Utc>,
        ready: Vec<OutboxItem>,
    ) -> Option<DateTime<Utc>> {
        let group_wait = chrono::Duration::from_std(rt.config.agent.group_wait).unwrap_or_default();
        let mut wake: Option<DateTime<Utc>> = None;
        let mut groups: Vec<(String, Vec<OutboxItem>)> = Vec::new();
        for item in ready {
            let key = (item.notifier.clone(), item.alert.job.clone());
            if self.busy.contains(&key) {
                self.behind.insert(key);
                continue;
            }
            match groups.iter_mut().find(|(n, _)| *n == item.notifier) {
                Some((_, items)) => items.push(item),
                None => groups.push((item.notifier.clone(), vec![item])),
            }
        }
        for (name, items) in groups {
            let merges = rt.notifiers.get(&name).is_some_and(|n| n.merges());
            if merges && group_wait > chrono::Duration::zero() {
                let oldest = items.iter().map(|i| i.created_at).min().unwrap_or(now);
                let ready = oldest + group_wait;
                if ready > now {
                    wake = earliest(wake, Some(ready));
                    // Newer messages of these jobs wait for them.
                    self.held
                        .extend(items.into_iter().map(|i| (name.clone(), i.alert.job)));
                    continue;
                }
            }
            // A digest is for several jobs; one job's failure and recovery stay two
            // messages, in order.
            let jobs = items
                .iter()
                .map(|i| i.alert.job.as_str())
                .collect::<HashSet<_>>()
                .len();
            let work = if merges && jobs > 1 {
                vec![Work::Digest(items)]
            } else {
                chains(items).into_iter().map(Work::Chain).collect()
            };
            let work: Vec<_> = work
                .into_iter()
                .map(|w| {
                    let hold = Hold::of(&name, &w);
                    self.taken.extend(&hold.ids);
                    self.busy.extend(hold.keys());
                    (w, hold)
                })
                .collect();
            match self.waiting.iter_mut().find(|(n, _)| *n == name) {
                Some((_, queue)) => queue.extend(work),
                None => self.waiting.push((name, work.into())),
            }
        }
        wake
    }

    /// Starts waiting work in the slots that are free.
    fn start(&mut self, rt: &Arc<Runtime>) {
        while let Ok(name) = self.freed_rx.try_recv() {
            self.free(&name);
        }
        for (name, queue) in &mut self.waiting {
            let slots = slots(rt, name);
            let active = self.active.entry(name.clone()).or_default();
            while *active < slots {
                let Some((work, hold)) = queue.pop_front() else {
                    break;
                };
                *active += 1;
                let slot = Slot {
                    freed: self.freed_tx.clone(),
                    notifier: Some(name.clone()),
                };
                let task = self
                    .sending
                    .spawn(send_work(rt.clone(), name.clone(), work, slot));
                self.holds.insert(task.id(), hold);
            }
        }
        self.waiting.retain(|(_, queue)| !queue.is_empty());
    }

    fn free(&mut self, name: &str) {
        if let Some(n) = self.active.get_mut(name) {
            *n = n.saturating_sub(1);
        }
    }

    /// Waits for a slot to free or a task to land. `None` when nothing is being sent.
    async fn next(&mut self) -> Option<Landed> {
        loop {
            if self.sending.is_empty() {
                return None;
            }
            tokio::select! {
                Some(name) = self.freed_rx.recv() => {
                    self.free(&name);
                    return Some(Landed::default());
                }
                joined = self.sending.join_next_with_id() => {
                    let (id, landed) = match joined {
                        Some(Ok((id, landed))) => (id, landed),
                        Some(Err(e)) => {
                            tracing::error!(%e, "a delivery task failed");
                            (e.id(), Landed { retry_at: None, more: true })
                        }
                        None => continue,
                    };
                    let mut more = landed.more;
                    if let Some(hold) = self.holds.remove(&id) {
                        for id in &hold.ids {
                            self.taken.remove(id);
                        }
                        for key in hold.keys() {
                            self.busy.remove(&key);
                            more |= self.behind.remove(&key);
                            // A retry is due later: newer messages wait for it.
                            if landed.retry_at.is_some() {
                                self.held.insert(key);
                            }
                        }
                    }
                    return Some(Landed { retry_at: landed.retry_at, more });
                }
            }
        }
    }

    fn idle(&self) -> bool {
        self.sending.is_empty() && self.waiting.is_empty()
    }
}

/// Slots of a notifier: one message at a time for a rate-limited channel or one a
/// person reads (its storms are digests), [`IN_FLIGHT`] for the others.
fn slots(rt: &Runtime, name: &str) -> usize {
    let paced = rt
        .config
        .notifier(name)
        .is_some_and(|n| n.spec.min_interval().is_some());
    let merges = rt.notifiers.get(name).is_some_and(|n| n.merges());
    if paced || merges { 1 } else { IN_FLIGHT }
}

/// Due messages of one notifier split per job, each job's oldest first, jobs in the
/// order of their oldest message.
fn chains(items: Vec<OutboxItem>) -> Vec<Vec<OutboxItem>> {
    let mut chains: Vec<Vec<OutboxItem>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for item in items {
        match index.get(&item.alert.job) {
            Some(&i) => chains[i].push(item),
            None => {
                index.insert(item.alert.job.clone(), chains.len());
                chains.push(vec![item]);
            }
        }
    }
    chains
}

/// Sends one task's messages. A job's messages go in order, each outcome committed
/// before the next is tried, stopping at the first that does not get through (the
/// rest wait for their turn in the outbox). The slot is given back as soon as the last
/// send is done; the task lands when its outcomes are durable.
async fn send_work(rt: Arc<Runtime>, name: String, work: Work, mut slot: Slot) -> Landed {
    let mut landed = Landed::default();
    match work {
        Work::Digest(items) => {
            let marks = deliver_digest(&rt, &name, &items).await;
            for mark in &marks {
                landed.note(mark);
            }
            let committed = rt.store.mark_queued(marks);
            slot.free();
            record(committed.await);
        }
        Work::Chain(items) => {
            for (n, item) in items.iter().enumerate() {
                let (delivery, mark) = try_once(&rt, item).await;
                if let Some(mark) = &mark {
                    landed.note(mark);
                }
                let committed = rt.store.mark_queued(mark.into_iter().collect());
                let last = n + 1 == items.len();
                if delivery != Delivery::Delivered || last {
                    landed.more = delivery == Delivery::GaveUp && !last;
                    slot.free();
                    record(committed.await);
                    break;
                }
                // Recorded before the job's next message is tried.
                record(committed.await);
            }
        }
    }
    landed
}

/// The agent's delivery loop: sends every due message, oldest first, and takes new
/// ones as they are committed, while earlier ones are still being sent; with nothing
/// under way it sleeps until the next retry is due, new messages arrive, or another
/// process rings the store's doorbell (every [`POLL`] it looks, without one). At `stop`
/// it starts nothing more, lets what is being sent land (so the outcomes are
/// committed and a flush after it does not send them again) and returns.
///
/// Due messages are taken per notifier. For a channel a person reads, new messages wait
/// until the oldest of them is `group_wait` old; then, when they are about several jobs,
/// all of them go out as one digest: a storm of failures is one message, not hundreds.
/// Messages that queued up behind a rate limit are merged the same way.
pub async fn worker(rt: Arc<Runtime>, stop: CancellationToken) {
    worker_reading_after(rt, stop, READ_AFTER).await;
}

/// [`worker`] with another interval than [`READ_AFTER`] (for tests).
#[doc(hidden)]
pub async fn worker_reading_after(rt: Arc<Runtime>, stop: CancellationToken, read_after: Duration) {
    let mut flights = Flights::new();
    rt.store.hand_over();
    let mut read = true;
    let mut last_read = tokio::time::Instant::now();
    let mut wake: Option<DateTime<Utc>> = None;
    loop {
        if stop.is_cancelled() {
            while flights.next().await.is_some() {}
            return;
        }
        if read {
            read = false;
            last_read = tokio::time::Instant::now();
            let now = rt.clock.now();
            let window = flights.take_due(&rt, now);
            wake = earliest(window, rt.store.next_retry(now).ok().flatten());
        }
        flights.start(&rt);
        // Until the next retry or group window. Other processes' writes ring the
        // doorbell; without one, look every `POLL`. With nothing pending and a
        // doorbell, an idle agent has no timer here.
        let poll = (!rt.store.listens()).then_some(POLL);
        let wait = match (wake, poll) {
            (Some(at), poll) => {
                let until = (at - rt.clock.now()).to_std().unwrap_or_default();
                Some(poll.map_or(until, |p| until.min(p)))
            }
            (None, poll) => poll,
        };
        tokio::select! {
            () = stop.cancelled() => {}
            Some(landed) = flights.next() => {
                wake = earliest(wake, landed.retry_at);
                read |= landed.more;
            }
            () = rt.store.ready() => {
                // New messages of this process are handed over without a read. One
                // written by another process (`once`, `ping`) is read when that
                // process rings the doorbell (or within `POLL` without one), at a
                // retry or group window coming due, or at the next start.
                if last_read.elapsed() >= read_after {
                    read = true;
                } else {
                    let window = flights.take_fresh(&rt, rt.clock.now());
                    wake = earliest(wake, window);
                }
            }
            () = rt.store.rung() => read = true,
            () = sleep_or_forever(wait) => {
                let now = rt.clock.now();
                read = wake.is_some_and(|at| at <= now)
                    || (wake.is_some() && last_read.elapsed() >= Duration::from_secs(30))
                    || (poll.is_some() && rt.store.written_elsewhere());
            }
        }
    }
}

async fn sleep_or_forever(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

/// One turn of the delivery loop at the clock's `now`, to its end: sends what is due
/// (digests where they apply) and returns when the next turn is needed for what is
/// waiting (a group's window ending, a retry coming due), or `None` when nothing waits.
/// Messages committed meanwhile wait for the next turn.
pub async fn round(rt: &Arc<Runtime>, stop: &CancellationToken) -> Option<DateTime<Utc>> {
    let mut flights = Flights::new();
    let now = rt.clock.now();
    let window = flights.take_due(rt, now);
    loop {
        if !stop.is_cancelled() {
            flights.start(rt);
        }
        if flights.next().await.is_none() {
            break;
        }
    }
    debug_assert!(stop.is_cancelled() || flights.idle());
    // The next retry, read after this turn, which may have failed deliveries and set
    // their next attempt; counted from its start, so that a message that came due
    // meanwhile gets a turn at once.
    earliest(window, rt.store.next_retry(now).ok().flatten())
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Posts every firing alert again to the Alertmanager notifiers of its job, every
/// `resend_every` (the shortest of them), so that Alertmanager does not resolve an alert
/// on its own (after its `resolve_timeout`) while klaxon still sees it failing. Returns
/// at once when no Alertmanager notifier is configured: no timer for those who have none.
pub async fn resend_firing(rt: Arc<Runtime>, stop: CancellationToken) {
    let targets: Vec<(&str, Duration)> = rt
        .config
        .notifiers
        .iter()
        .filter_map(|n| Some((n.name.as_str(), n.spec.resend_every()?)))
        .collect();
    let Some(every) = targets.iter().map(|(_, d)| *d).min() else {
        return;
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        for job in &rt.config.jobs {
            let Ok(state) = rt.store.job_state(&job.name) else {
                continue;
            };
            let Some(open) = state.open.filter(|o| !o.held) else {
                continue;
            };
            let Ok(Some(alert)) = rt.store.last_message(&open.id) else {
                continue;
            };
            // Only those told about the alert (its `min_severity` let them hear it);
            // states from before klaxon recorded that fall back to the job's notifiers.
            let told = |n: &str| open.told.as_ref().is_none_or(|t| t.iter().any(|t| t == n));
            for (name, _) in targets
                .iter()
                .filter(|(n, _)| job.notify.iter().any(|j| j == n) && told(n))
            {
                let Some(notifier) = rt.notifiers.get(*name) else {
                    continue;
                };
                if rt.mode == Mode::DryRun {
                    print_dry_run(
                        rt.as_ref(),
                        name,
                        &klaxon_notifiers::text::render_text(&alert),
                    );
                    continue;
                }
                if let Err(e) = send(rt.as_ref(), name, notifier, &alert).await {
                    tracing::warn!(job = %job.name, notifier = %name, "re-posting a firing alert failed: {e}");
                }
            }
        }
    }
}

/// Delivers `items` (and retries them) until each is delivered or given up, or until
/// `within` has passed; what is left stays in the outbox for the agent. Returns how
/// many of `items` are left.
///
/// In order per job and notifier across processes: an older undelivered message of the
/// same job and notifier goes first (this process sends it when it is due and nobody
/// else has it claimed, or waits while another process sends it). Whoever sends one of
/// `items`, it is sent once at a time: each try is claimed in the outbox first.
pub async fn deliver_within(rt: &Runtime, items: Vec<OutboxItem>, within: Duration) -> usize {
    if items.is_empty() {
        return 0;
    }
    let deadline = rt.clock.now() + chrono::Duration::from_std(within).unwrap_or_default();
    let keys: HashSet<(String, String)> = items
        .iter()
        .map(|i| (i.notifier.clone(), i.alert.job.clone()))
        .collect();
    let mut left: HashSet<i64> = items.iter().map(|i| i.id).collect();
    while !left.is_empty() {
        let now = rt.clock.now();
        let due = match rt.store.claim_keys(now, &HashSet::new(), &keys) {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(%e, "cannot read the outbox");
                break;
            }
        };
        // After a failure, the later messages of that job wait for the next round.
        let mut failed = HashSet::new();
        for item in due.items {
            let key = (item.notifier.clone(), item.alert.job.clone());
            if failed.contains(&key) {
                continue;
            }
            if let Delivery::Deferred(_) = deliver(rt, &item).await {
                failed.insert(key);
            }
        }
        // Another process may have sent some of them meanwhile.
        left = match rt.store.undelivered_of(&left) {
            Ok(left) => left,
            Err(e) => {
                tracing::error!(%e, "cannot read the outbox");
                break;
            }
        };
        if left.is_empty() {
            break;
        }
        let now = rt.clock.now();
        let heads = rt.store.heads(now, &keys).unwrap_or_default();
        let Some(next) = heads.iter().map(|(at, _)| *at).min() else {
            break;
        };
        // A claim of another process is usually let go long before it lapses: look
        // again every `POLL`.
        let foreign = heads.iter().any(|(_, foreign)| *foreign);
        let mut wait = (next - now).to_std().unwrap_or_default();
        if foreign {
            wait = wait.min(POLL);
        }
        if now + chrono::Duration::from_std(wait).unwrap_or_default() > deadline {
            break;
        }
        tokio::time::sleep(wait).await;
    }
    record(rt.store.release_claims());
    left.len()
}
