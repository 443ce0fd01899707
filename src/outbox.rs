//! Delivering what the outbox holds. Messages are already durable when they get here;
//! this sends each through its notifier, marks it delivered on success, and on failure
//! schedules another try (the receiver's `Retry-After` when it gave one, else backoff)
//! or, when the receiver refused it for good, keeps it marked as given up.
//!
//! A message that keeps failing for the notifier's `fallback_after`, or is refused for
//! good, is copied once to the notifier's `fallback`. After [`GIVE_UP_AFTER`] of
//! failing it is given up, with an error in the log. Slack gets at most one message a
//! second per notifier, as its webhooks allow.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use klaxon_notifiers::DeliveryError;
use tokio_util::sync::CancellationToken;

use crate::metrics::DeliveryResult;
use crate::runtime::{Mode, Runtime};
use crate::store::{Mark, OutboxItem};

/// How long a message is retried before it is given up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// The least time between two messages to one notifier of this kind.
fn min_interval(spec: &klaxon_notifiers::NotifierSpec) -> Option<Duration> {
    match spec {
        klaxon_notifiers::NotifierSpec::Slack(_) => Some(Duration::from_secs(1)),
        _ => None,
    }
}

/// Backoff between delivery tries of one message: 5 s doubling to 10 min.
fn backoff(attempts: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << attempts.min(16));
    Duration::from_secs(secs.min(600))
}

/// Messages of one notifier sent at the same time (to different jobs' alerts), so a
/// storm of a hundred alerts to a webhook is not a hundred round trips in a row.
const IN_FLIGHT: usize = 8;

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
    let result = notifier.send(&item.alert).await;
    let (delivery, mark) = settle(rt, item, result, true);
    (delivery, Some(mark))
}

/// Delivers several due messages of one notifier as one digest (channels a person
/// reads); each message is then settled as if it had been sent alone.
async fn deliver_digest(rt: &Runtime, name: &str, items: &[OutboxItem]) {
    let Some(notifier) = items.first().and_then(|i| configured(rt, i)) else {
        return;
    };
    let alerts: Vec<_> = items.iter().map(|i| i.alert.clone()).collect();
    if rt.mode == Mode::DryRun {
        print_dry_run(
            rt,
            name,
            &klaxon_notifiers::text::render_digest_text(&alerts),
        );
        let marks: Vec<_> = items
            .iter()
            .map(|i| Mark::delivered(i.id, rt.clock.now()))
            .collect();
        record(rt.store.mark(&marks));
        return;
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
    let marks: Vec<_> = items
        .iter()
        .map(|item| settle(rt, item, result.clone(), false).1)
        .collect();
    record(rt.store.mark(&marks));
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
    let Some(gap) = rt.config.notifier(name).and_then(|n| min_interval(&n.spec)) else {
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
    let now = || rt.clock.now();
    match result {
        Ok(()) => {
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
            (Delivery::Delivered, Mark::delivered(item.id, now()))
        }
        Err(DeliveryError::Retry { reason, after }) => {
            let age = (now() - item.created_at).to_std().unwrap_or_default();
            if age >= GIVE_UP_AFTER {
                tracing::error!(
                    job = %alert.job,
                    notifier = %item.notifier,
                    event = alert.event.as_str(),
                    "giving up on a message after {} of failed deliveries: {reason}",
                    humantime::format_duration(GIVE_UP_AFTER)
                );
                return give_up(rt, item, reason, DeliveryResult::GaveUp);
            }
            let fallback_after = rt
                .config
                .notifier(&item.notifier)
                .map_or(Duration::MAX, |n| n.fallback_after);
            if age >= fallback_after {
                fallback(rt, item);
            }
            let wait = after.unwrap_or_else(|| backoff(item.attempts));
            if log {
                tracing::error!(
                    job = %alert.job,
                    notifier = %item.notifier,
                    event = alert.event.as_str(),
                    retry_in = %humantime::format_duration(wait),
                    "delivery failed: {reason}"
                );
            }
            let next = now() + chrono::Duration::from_std(wait).unwrap_or_default();
            rt.metrics.delivery(&item.notifier, DeliveryResult::Retry);
            let mark = Mark::Failed {
                id: item.id,
                error: reason,
                next_attempt_at: next,
            };
            (Delivery::Deferred(wait), mark)
        }
        Err(DeliveryError::Reject { reason }) => {
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
    }
}

/// Delivers one notifier's due messages: each job's in order, stopping at the first
/// that does not get through (the rest wait for the next round), up to `in_flight`
/// jobs at once.
async fn deliver_per_job(rt: &Arc<Runtime>, items: Vec<OutboxItem>, in_flight: usize) {
    let mut chains: Vec<Vec<OutboxItem>> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for item in items {
        match index.get(&item.alert.job) {
            Some(&i) => chains[i].push(item),
            None => {
                index.insert(item.alert.job.clone(), chains.len());
                chains.push(vec![item]);
            }
        }
    }
    let mut chains = chains.into_iter();
    let mut sending = tokio::task::JoinSet::new();
    let mut pending = Vec::new();
    loop {
        while sending.len() < in_flight.max(1) {
            let Some(chain) = chains.next() else { break };
            let rt = rt.clone();
            sending.spawn(async move {
                let mut last = None;
                for (n, item) in chain.iter().enumerate() {
                    let (delivery, mark) = try_once(&rt, item).await;
                    // Queued for the next group commit at once, off the async threads.
                    let committed = rt.store.mark_queued(mark.into_iter().collect());
                    if delivery != Delivery::Delivered || n + 1 == chain.len() {
                        // The job's last try this round: its slot is free for another
                        // job while the outcome is committed.
                        last = Some(committed);
                        break;
                    }
                    // Recorded before the job's next message is tried.
                    record(committed.await);
                }
                last
            });
        }
        match sending.join_next().await {
            Some(Err(e)) => tracing::error!(%e, "a delivery task failed"),
            Some(Ok(last)) => pending.extend(last),
            None => break,
        }
    }
    // The round ends when all its outcomes are durable, so the next round does not
    // send again what went out in this one.
    for committed in pending {
        record(committed.await);
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
            rt.outbox_ready.notify_one();
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

/// The agent's delivery loop: sends every due message, oldest first, then sleeps until
/// the next retry is due or new messages arrive. Runs until `stop`.
///
/// Due messages are taken per notifier. For a channel a person reads, new messages wait
/// until the oldest of them is `group_wait` old; then, when they are about several jobs,
/// all of them go out as one digest: a storm of failures is one message, not hundreds.
/// Messages that queued up behind a rate limit are merged the same way.
pub async fn worker(rt: Arc<Runtime>, stop: CancellationToken) {
    loop {
        let wake = round(&rt, &stop).await;
        // With nothing pending the worker sleeps until a run enqueues something: an
        // idle agent has no timer here. A message written by another process (`once`,
        // `ping`) is picked up at the next wake-up or start.
        let now = rt.clock.now();
        let wait = wake.map(|at| {
            (at - now)
                .to_std()
                .unwrap_or_default()
                .min(Duration::from_secs(30))
        });
        tokio::select! {
            () = stop.cancelled() => return,
            () = rt.outbox_ready.notified() => {}
            () = sleep_or_forever(wait) => {}
        }
    }
}

/// One round of the worker at the clock's `now`: sends what is due (digests where they
/// apply) and returns when the next round is needed for what is waiting (a group's
/// window ending, a retry coming due), or `None` when nothing waits.
pub async fn round(rt: &Arc<Runtime>, stop: &CancellationToken) -> Option<DateTime<Utc>> {
    let group_wait = chrono::Duration::from_std(rt.config.agent.group_wait).unwrap_or_default();
    let now = rt.clock.now();
    let ready = match rt.store.due(now) {
        Ok(ready) => ready,
        Err(e) => {
            tracing::error!(%e, "cannot read the outbox");
            Vec::new()
        }
    };
    // When a held group's window ends.
    let mut wake: Option<DateTime<Utc>> = None;
    let mut groups: Vec<(String, Vec<OutboxItem>)> = Vec::new();
    for item in ready {
        match groups.iter_mut().find(|(n, _)| *n == item.notifier) {
            Some((_, items)) => items.push(item),
            None => groups.push((item.notifier.clone(), vec![item])),
        }
    }
    for (name, items) in groups {
        if stop.is_cancelled() {
            return None;
        }
        let merges = rt.notifiers.get(&name).is_some_and(|n| n.merges());
        if merges && group_wait > chrono::Duration::zero() {
            let oldest = items.iter().map(|i| i.created_at).min().unwrap_or(now);
            let ready = oldest + group_wait;
            if ready > now {
                wake = Some(wake.map_or(ready, |w| w.min(ready)));
                continue;
            }
        }
        // A digest is for several jobs; one job's failure and recovery stay two
        // messages, in order.
        let jobs = items
            .iter()
            .map(|i| i.alert.job.as_str())
            .collect::<std::collections::HashSet<_>>()
            .len();
        if merges && jobs > 1 {
            deliver_digest(rt, &name, &items).await;
        } else {
            // Rate-limited channels send one message at a time anyway.
            let paced = rt
                .config
                .notifier(&name)
                .is_some_and(|n| min_interval(&n.spec).is_some());
            let in_flight = if paced { 1 } else { IN_FLIGHT };
            deliver_per_job(rt, items, in_flight).await;
        }
    }
    // The next retry, read after this round, which may have failed deliveries and set
    // their next attempt; counted from the round's start, so that a message that came
    // due while the round ran gets a round at once.
    let next_retry = rt.store.next_retry(now).ok().flatten();
    match (wake, next_retry) {
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
        .filter_map(|n| match &n.spec {
            klaxon_notifiers::NotifierSpec::Alertmanager(s) => {
                Some((n.name.as_str(), s.resend_every))
            }
            _ => None,
        })
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
            for (name, _) in targets
                .iter()
                .filter(|(n, _)| job.notify.iter().any(|j| j == n))
            {
                let Some(notifier) = rt.notifiers.get(*name) else {
                    continue;
                };
                if let Err(e) = notifier.send(&alert).await {
                    tracing::warn!(job = %job.name, notifier = %name, "re-posting a firing alert failed: {e}");
                }
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

/// Delivers `items` (and retries them) until each is delivered or given up, or until
/// `within` has passed; what is left stays in the outbox for the agent.
pub async fn deliver_within(rt: &Runtime, items: Vec<OutboxItem>, within: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + within;
    let mut left = items;
    while !left.is_empty() {
        let mut next_round = Vec::new();
        let mut soonest = Duration::MAX;
        // In order per job and notifier, as in the store: after a failure, the later
        // messages of that job wait for the next round.
        let mut failed = std::collections::HashSet::new();
        for mut item in left {
            let key = (item.notifier.clone(), item.alert.job.clone());
            if failed.contains(&key) {
                next_round.push(item);
                continue;
            }
            match deliver(rt, &item).await {
                Delivery::Delivered | Delivery::GaveUp => {}
                Delivery::Deferred(wait) => {
                    item.attempts += 1;
                    soonest = soonest.min(wait);
                    failed.insert(key);
                    next_round.push(item);
                }
            }
        }
        left = next_round;
        if left.is_empty() || tokio::time::Instant::now() + soonest > deadline {
            break;
        }
        tokio::time::sleep(soonest).await;
    }
    left.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let got: Vec<u64> = (0..10).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(got, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
        assert_eq!(backoff(u32::MAX), Duration::from_secs(600));
    }
}
