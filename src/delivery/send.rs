//! One delivery try of one message, or of a digest of several, and carrying out what
//! the [`policy`](super::policy) decides of its outcome: the mark to commit, metrics,
//! logs, the copy to the notifier's `fallback`. A rate-limited notifier (Slack: one
//! message a second per webhook) is paced here, at the interval it declares.

use std::time::Duration;

use klaxon_notifiers::alertmanager::Posted;
use klaxon_notifiers::{DeliveryError, Release};

use super::policy::{self, Decision, Facts, GIVE_UP_AFTER, Tried, Why};
use crate::metrics::DeliveryResult;
use crate::runtime::{Mode, Runtime};
use crate::store::{Durable, Mark, OutboxItem};

/// How one delivery try went.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Delivery {
    Delivered,
    /// Will be tried again after this long.
    Deferred(Duration),
    /// Refused for good, or its notifier no longer exists.
    GaveUp,
}

/// Tries to deliver one message; the outcome is for the caller to record (`None`: it
/// is recorded already). A message handed over before its transaction committed comes
/// with its [`Durable`]: its request is built at once and written only once that says
/// the row is durable. `None` when it says the transaction rolled back: nothing was
/// sent, nothing is to be recorded.
pub(super) async fn try_once(
    rt: &Runtime,
    item: &OutboxItem,
    durable: Option<Durable>,
) -> Option<(Delivery, Option<Mark>)> {
    let release: Release = match durable {
        Some(durable) => Box::pin(durable.wait()),
        None => Box::pin(std::future::ready(true)),
    };
    let notifier = match rt.notifiers.get(&item.notifier) {
        Some(notifier) if rt.mode != Mode::DryRun => notifier,
        _ => {
            // Nothing to prepare: giving up writes to the store, a dry run prints.
            if !release.await {
                return None;
            }
            if configured(rt, item).is_none() {
                return Some((Delivery::GaveUp, None));
            }
            print_dry_run(
                rt,
                &item.notifier,
                &klaxon_notifiers::text::render_text(&item.alert),
            );
            let mark = Mark::delivered(item.id, rt.clock.now());
            return Some((Delivery::Delivered, Some(mark)));
        }
    };
    // A rate-limited channel is paced by when it is posted to: its message waits for
    // the commit first, or a slow commit would post it late, right before the next
    // one's slot. The others are prepared while the commit runs.
    let release: Release = if min_interval(rt, &item.notifier).is_some() {
        if !release.await {
            return None;
        }
        Box::pin(std::future::ready(true))
    } else {
        release
    };
    pace(rt, &item.notifier).await;
    let posted = notifier.send_when(&item.alert, release).await?;
    note_replicas(rt, &item.notifier, &item.alert, &posted);
    let (delivery, mark) = settle(rt, item, posted.result, true);
    Some((delivery, Some(mark)))
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

/// Sends one message through `notifier` (named `name`), its replicas' failures noted
/// ([`note_replicas`]).
pub(super) async fn send(
    rt: &Runtime,
    name: &str,
    notifier: &klaxon_notifiers::Notifier,
    alert: &klaxon_notifiers::Alert,
) -> Result<(), DeliveryError> {
    let posted = notifier.send_to_replicas(alert).await;
    note_replicas(rt, name, alert, &posted);
    posted.result
}

/// Each Alertmanager replica that did not take a message is logged (by `host:port`
/// only) and counted, even when another replica took it and it counts as delivered.
fn note_replicas(rt: &Runtime, name: &str, alert: &klaxon_notifiers::Alert, posted: &Posted) {
    for failed in &posted.failed {
        tracing::warn!(
            job = %alert.job,
            notifier = %name,
            replica = %failed.replica,
            event = alert.event.as_str(),
            "a replica did not take the message: {}",
            failed.error
        );
        rt.metrics.replica_failure(name, &failed.replica);
    }
}

/// Delivers several due messages of one notifier as one digest (channels a person
/// reads); each message is then settled as if it had been sent alone. Returns the
/// outcomes to record.
pub(super) async fn deliver_digest(rt: &Runtime, name: &str, items: &[OutboxItem]) -> Vec<Mark> {
    let Some(notifier) = items.first().and_then(|i| configured(rt, i)) else {
        return Vec::new();
    };
    // A failure whose recovery is in the same digest is said once, by the recovery.
    let alerts = klaxon_notifiers::text::collapse(
        &items.iter().map(|i| i.alert.clone()).collect::<Vec<_>>(),
    );
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

pub(super) fn print_dry_run(rt: &Runtime, name: &str, text: &str) {
    let kind = rt.config.notifier(name).map_or("?", |n| n.spec.kind());
    println!("[dry-run] would send to `{name}` ({kind}):\n{text}\n");
}

/// How far apart the notifier `name`'s messages must be, if it is rate-limited.
fn min_interval(rt: &Runtime, name: &str) -> Option<Duration> {
    rt.config.notifier(name).and_then(|n| n.spec.min_interval())
}

/// Waits until a rate-limited notifier may send again.
async fn pace(rt: &Runtime, name: &str) {
    let Some(gap) = min_interval(rt, name) else {
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

pub(super) fn record(result: Result<(), crate::store::StoreError>) {
    if let Err(e) = result {
        tracing::error!(%e, "cannot update the outbox");
    }
}
