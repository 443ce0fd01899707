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

use klaxon_notifiers::DeliveryError;
use tokio_util::sync::CancellationToken;

use crate::runtime::{Mode, Runtime};
use crate::store::OutboxItem;

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
    let alert = &item.alert;
    let now = || rt.clock.now();
    let Some(notifier) = rt.notifiers.get(&item.notifier) else {
        tracing::error!(
            job = %alert.job,
            notifier = %item.notifier,
            "message for a notifier that is no longer configured; keeping it undelivered"
        );
        if let Err(e) = rt
            .store
            .gave_up(item.id, "notifier no longer configured", now())
        {
            tracing::error!(%e, "cannot update the outbox");
        }
        return Delivery::GaveUp;
    };
    if rt.mode == Mode::DryRun {
        println!(
            "[dry-run] would send to `{}` ({}):\n{}\n",
            item.notifier,
            rt.config
                .notifier(&item.notifier)
                .map_or("?", |n| n.spec.kind()),
            klaxon_notifiers::text::render_text(alert)
        );
        record(rt.store.delivered(item.id, now()));
        return Delivery::Delivered;
    }
    if let Some(gap) = rt
        .config
        .notifier(&item.notifier)
        .and_then(|n| min_interval(&n.spec))
    {
        let wait = {
            let mut last = rt.last_sent.lock().unwrap_or_else(|p| p.into_inner());
            let now = tokio::time::Instant::now();
            let at = last
                .get(&item.notifier)
                .map_or(now, |prev| (*prev + gap).max(now));
            last.insert(item.notifier.clone(), at);
            at - now
        };
        tokio::time::sleep(wait).await;
    }
    match notifier.send(alert).await {
        Ok(()) => {
            tracing::info!(
                job = %alert.job,
                notifier = %item.notifier,
                event = alert.event.as_str(),
                "delivered"
            );
            record(rt.store.delivered(item.id, now()));
            Delivery::Delivered
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
                record(rt.store.gave_up(item.id, &reason, now()));
                fallback(rt, item);
                return Delivery::GaveUp;
            }
            let fallback_after = rt
                .config
                .notifier(&item.notifier)
                .map_or(Duration::MAX, |n| n.fallback_after);
            if age >= fallback_after {
                fallback(rt, item);
            }
            let wait = after.unwrap_or_else(|| backoff(item.attempts));
            tracing::error!(
                job = %alert.job,
                notifier = %item.notifier,
                event = alert.event.as_str(),
                retry_in = %humantime::format_duration(wait),
                "delivery failed: {reason}"
            );
            let next = now() + chrono::Duration::from_std(wait).unwrap_or_default();
            record(rt.store.delivery_failed(item.id, &reason, next));
            Delivery::Deferred(wait)
        }
        Err(DeliveryError::Reject { reason }) => {
            tracing::error!(
                job = %alert.job,
                notifier = %item.notifier,
                event = alert.event.as_str(),
                "delivery refused, not retrying: {reason}"
            );
            record(rt.store.gave_up(item.id, &reason, now()));
            fallback(rt, item);
            Delivery::GaveUp
        }
    }
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
pub async fn worker(rt: Arc<Runtime>, stop: CancellationToken) {
    loop {
        let due = match rt.store.due(rt.clock.now()) {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(%e, "cannot read the outbox");
                Vec::new()
            }
        };
        for item in &due {
            if stop.is_cancelled() {
                return;
            }
            deliver(&rt, item).await;
        }
        let now = rt.clock.now();
        // With nothing pending the worker sleeps until a run enqueues something: an
        // idle agent has no timer here. A message written by another process (`once`,
        // `ping`) is picked up at the next wake-up or start.
        let next_retry = rt
            .store
            .pending()
            .ok()
            .and_then(|p| p.iter().map(|i| i.next_attempt_at).min());
        let wait = next_retry.map(|next| {
            (next - now)
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
        for mut item in left {
            match deliver(rt, &item).await {
                Delivery::Delivered | Delivery::GaveUp => {}
                Delivery::Deferred(wait) => {
                    item.attempts += 1;
                    soonest = soonest.min(wait);
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
