//! What a delivery loop has taken from the outbox and not finished with, and the
//! tasks that send it: per notifier a number of slots, per (notifier, job) one chain
//! of messages at a time, in order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::driver::earliest;
use super::send::{Delivery, deliver_digest, record, try_once};
use crate::runtime::Runtime;
use crate::store::{Durable, Mark, OutboxItem};

/// Messages of one notifier sent at the same time (to different jobs' alerts), so a
/// storm of a hundred alerts to a webhook is not a hundred round trips in a row.
const IN_FLIGHT: usize = 8;

/// What the delivery loop has taken from the outbox and not finished with: messages
/// waiting for a free slot, being sent, or sent with their outcome not committed yet.
/// A taken message is not taken again, and a job's later message to the same notifier
/// waits until the earlier one is settled, so nothing is sent twice by one agent and a
/// recovery never overtakes its failure.
///
/// Taking is a pipeline, not rounds: messages committed while others are being sent are
/// taken at once and go out beside them, each notifier with at most its number of
/// slots in flight ([`IN_FLIGHT`]; one for a channel a person reads).
/// Which messages a delivery loop takes from the outbox.
pub(super) enum Scope {
    /// All (the agent).
    All,
    /// Those of these (notifier, job) pairs (a one-shot process: its own messages, and
    /// older ones of the same pairs, which go first).
    Keys(HashSet<(String, String)>),
}

pub(super) struct Flights {
    /// Which messages this loop takes.
    scope: Scope,
    /// How long new messages to a channel a person reads wait for more.
    group_wait: chrono::Duration,
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
    /// Messages taken before their transaction committed, and what says it did: their
    /// sends are prepared at once and written once it has.
    durable: HashMap<i64, Durable>,
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
pub(super) struct Landed {
    /// The earliest retry it scheduled.
    pub(super) retry_at: Option<DateTime<Utc>>,
    /// A message was given up with later ones of its job behind it: read the outbox
    /// again for those.
    pub(super) more: bool,
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
    pub(super) fn new(scope: Scope, group_wait: Duration) -> Self {
        let (freed_tx, freed_rx) = mpsc::unbounded_channel();
        Self {
            scope,
            group_wait: chrono::Duration::from_std(group_wait).unwrap_or_default(),
            taken: HashSet::new(),
            busy: HashSet::new(),
            behind: HashSet::new(),
            held: HashSet::new(),
            waiting: Vec::new(),
            active: HashMap::new(),
            sending: tokio::task::JoinSet::new(),
            holds: HashMap::new(),
            durable: HashMap::new(),
            freed_tx,
            freed_rx,
        }
    }

    /// Reads the outbox and takes what is due at `now` and not taken yet. Returns
    /// when a held group's window ends (a channel a person reads waits `group_wait` for
    /// more).
    pub(super) fn scope(&self) -> &Scope {
        &self.scope
    }

    pub(super) fn take_due(&mut self, rt: &Runtime, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let due = match &self.scope {
            Scope::All => rt.store.due_except(now, &self.taken),
            Scope::Keys(keys) => rt.store.claim_keys(now, &self.taken, keys),
        };
        let due = match due {
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
    pub(super) fn take_fresh(&mut self, rt: &Runtime, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut claimed = Vec::new();
        let mut keys = HashSet::new();
        for fresh in rt.store.take_fresh() {
            let item = fresh.item;
            if self.taken.contains(&item.id) {
                continue;
            }
            if fresh.claimed {
                if let Some(durable) = fresh.durable {
                    self.durable.insert(item.id, durable);
                }
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
        // One left for a later read (a group window, quiet hours) is read committed.
        let taken = &self.taken;
        self.durable.retain(|id, _| taken.contains(id));
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
        let group_wait = self.group_wait;
        let mut wake: Option<DateTime<Utc>> = None;
        let mut groups: Vec<(String, Vec<OutboxItem>)> = Vec::new();
        // Quiet hours hold a (notifier, job)'s messages when every one of them waits:
        // one severe enough to go now takes the older ones before it along, in order.
        let ready: Vec<(OutboxItem, Option<DateTime<Utc>>)> = ready
            .into_iter()
            .map(|item| {
                let until = quiet_until(rt, &item, now);
                (item, until)
            })
            .collect();
        let going: HashSet<(String, String)> = ready
            .iter()
            .filter(|(_, until)| until.is_none())
            .map(|(i, _)| (i.notifier.clone(), i.alert.job.clone()))
            .collect();
        for (item, quiet) in ready {
            let key = (item.notifier.clone(), item.alert.job.clone());
            if self.busy.contains(&key) {
                self.behind.insert(key);
                continue;
            }
            if !going.contains(&key)
                && let Some(until) = quiet
            {
                wake = earliest(wake, Some(until));
                self.held.insert(key);
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
            // What quiet hours held goes out as one digest when they end.
            let after_quiet = items.len() > 1 && items.iter().all(|i| held_by_quiet(rt, i, now));
            let work = if merges && (jobs > 1 || after_quiet) {
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
    pub(super) fn start(&mut self, rt: &Arc<Runtime>) {
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
                let durable = work
                    .items()
                    .iter()
                    .filter_map(|i| Some((i.id, self.durable.remove(&i.id)?)))
                    .collect();
                let task =
                    self.sending
                        .spawn(send_work(rt.clone(), name.clone(), work, durable, slot));
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
    pub(super) async fn next(&mut self) -> Option<Landed> {
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

    pub(super) fn idle(&self) -> bool {
        self.sending.is_empty() && self.waiting.is_empty()
    }
}

/// When the quiet hours of `item`'s notifier end, if `item` waits for them at `now`.
fn quiet_until(rt: &Runtime, item: &OutboxItem, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let quiet = rt.config.notifier(&item.notifier)?.quiet.as_ref()?;
    let until = quiet.until(now)?;
    quiet.holds(item.alert.severity).then_some(until)
}

/// Whether `item` was made in quiet hours of its notifier that are over at `now` (so
/// it waited for their end).
fn held_by_quiet(rt: &Runtime, item: &OutboxItem, now: DateTime<Utc>) -> bool {
    rt.config
        .notifier(&item.notifier)
        .and_then(|n| n.quiet.as_ref())
        .and_then(|q| {
            q.until(item.created_at)
                .filter(|_| q.holds(item.alert.severity))
        })
        .is_some_and(|end| end <= now)
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
/// send is done; the task lands when its outcomes are durable. A message in `durable`
/// was taken before its transaction committed: it is written once that is durable, and
/// not at all when it rolled back (then the outbox is read again for what it holds).
async fn send_work(
    rt: Arc<Runtime>,
    name: String,
    work: Work,
    mut durable: HashMap<i64, Durable>,
    mut slot: Slot,
) -> Landed {
    let mut landed = Landed::default();
    match work {
        Work::Digest(items) => {
            let mut kept = Vec::with_capacity(items.len());
            for item in items {
                let rolled_back = match durable.remove(&item.id) {
                    Some(d) => !d.wait().await,
                    None => false,
                };
                if rolled_back {
                    landed.more = true;
                } else {
                    kept.push(item);
                }
            }
            if kept.is_empty() {
                return landed;
            }
            let marks = deliver_digest(&rt, &name, &kept).await;
            for mark in &marks {
                landed.note(mark);
            }
            let committed = rt.store.mark_queued(marks);
            slot.free();
            record(committed.await);
        }
        Work::Chain(items) => {
            for (n, item) in items.iter().enumerate() {
                let Some((delivery, mark)) = try_once(&rt, item, durable.remove(&item.id)).await
                else {
                    // Rolled back: not sent, nothing to record.
                    landed.more = true;
                    break;
                };
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
