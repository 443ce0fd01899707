//! The delivery loop: one driver for the agent, `once`, `ping`, `exec` and the agent's
//! last flush, differing only in how long it runs ([`Until`]).
//!
//! It reads the outbox, takes what is due into the in-flight set ([`Flights`]), starts
//! what has a free slot, and waits for the first of: a send landing, new messages
//! committed by this process (the store's `ready`), another process ringing the
//! doorbell (or, without one, a `PRAGMA data_version` look every [`POLL`]), a retry or
//! group window coming due, or the end.
//!
//! - **The agent** runs it until its stop token ([`worker`]) over the whole outbox.
//! - **A one-shot process** (`once`, `ping`, `exec`) and the agent's flush at shutdown
//!   run it with a deadline over their own messages' (notifier, job) pairs
//!   ([`deliver_within`]): until those messages are delivered or given up, or until the
//!   next try could only start after the deadline. An older undelivered message of the
//!   same job and notifier goes first, whoever wrote it; one that another process has
//!   claimed is waited for. With a deadline nothing waits for a group window: no more
//!   messages are coming to group with. What is left stays in the outbox for the agent.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::flights::{Flights, Scope};
use crate::runtime::Runtime;
use crate::store::OutboxItem;

/// A new message makes the agent's loop read the whole outbox (not only take what this
/// process handed over) when its last read is older than this.
const READ_AFTER: Duration = Duration::from_secs(30);

/// How often the loop checks whether another process wrote the store when it has no
/// doorbell (a one-shot process; an agent whose `Store::listen_for_others` failed): one
/// `PRAGMA data_version`, no disk read. A message another process holds is looked at
/// this often too.
const POLL: Duration = Duration::from_secs(1);

/// How long a driver runs.
pub enum Until {
    /// Until the token is cancelled, over the whole outbox (the agent). Then it starts
    /// nothing more and lets what is being sent land, so the outcomes are committed.
    Stopped(CancellationToken),
    /// Until each of `items` is delivered or given up, or until the next try could only
    /// start after `deadline`, over the (notifier, job) pairs of `items`.
    Settled {
        items: Vec<OutboxItem>,
        deadline: DateTime<Utc>,
    },
}

/// How a driver's run ended.
#[derive(Debug, Default)]
pub struct Driven {
    /// How many of the `Settled` items are still undelivered.
    pub left: usize,
    /// When a next run is needed for what is waiting (a retry, a group window).
    pub wake: Option<DateTime<Utc>>,
}

/// The agent's delivery loop, until `stop`.
///
/// Due messages are taken per notifier. For a channel a person reads, new messages wait
/// until the oldest of them is `group_wait` old; then, when they are about several jobs,
/// all of them go out as one digest: a storm of failures is one message, not hundreds.
/// Messages that queued up behind a rate limit are merged the same way.
pub async fn worker(rt: Arc<Runtime>, stop: CancellationToken) {
    drive(&rt, Until::Stopped(stop), READ_AFTER).await;
}

/// [`worker`] with another interval than [`READ_AFTER`] (for tests).
#[doc(hidden)]
pub async fn worker_reading_after(rt: Arc<Runtime>, stop: CancellationToken, read_after: Duration) {
    drive(&rt, Until::Stopped(stop), read_after).await;
}

/// Delivers `items` (and retries them) until each is delivered or given up, or until
/// `within` has passed; what is left stays in the outbox for the agent. Returns how
/// many of `items` are left.
pub async fn deliver_within(rt: &Arc<Runtime>, items: Vec<OutboxItem>, within: Duration) -> usize {
    if items.is_empty() {
        return 0;
    }
    let deadline = rt.clock.now() + chrono::Duration::from_std(within).unwrap_or_default();
    drive(rt, Until::Settled { items, deadline }, READ_AFTER)
        .await
        .left
}

/// One turn at the clock's `now`: sends what is due (digests where they apply), lets
/// it land, and returns when the next turn is needed for what is waiting (a group's
/// window ending, a retry coming due), or `None` when nothing waits. A turn is the
/// driver with a deadline of now over every due message (for tests that drive a
/// clock by hand).
pub async fn round(rt: &Arc<Runtime>, stop: &CancellationToken) -> Option<DateTime<Utc>> {
    let now = rt.clock.now();
    let items = match rt.store.due(now) {
        Ok(items) if !stop.is_cancelled() => items,
        _ => return rt.store.next_retry(now).ok().flatten(),
    };
    let until = Until::Settled {
        items,
        deadline: now,
    };
    // The next retry, counted from the turn's start, so that a message that came due
    // meanwhile gets a turn at once.
    let driven = drive(rt, until, READ_AFTER).await;
    earliest(driven.wake, rt.store.next_retry(now).ok().flatten())
}

/// The loop itself.
async fn drive(rt: &Arc<Runtime>, until: Until, read_after: Duration) -> Driven {
    let (stop, deadline, mut left, scope) = match until {
        Until::Stopped(stop) => (Some(stop), None, HashSet::new(), Scope::All),
        Until::Settled { items, deadline } => {
            let keys = items
                .iter()
                .map(|i| (i.notifier.clone(), i.alert.job.clone()))
                .collect();
            let ids = items.iter().map(|i| i.id).collect();
            (None, Some(deadline), ids, Scope::Keys(keys))
        }
    };
    // With a deadline nothing waits for a group window.
    let group_wait = match deadline {
        None => rt.config.agent.group_wait,
        Some(_) => Duration::ZERO,
    };
    let mut flights = Flights::new(scope, group_wait);
    if deadline.is_none() {
        rt.store.hand_over();
    }
    let mut read = true;
    let mut last_read = tokio::time::Instant::now();
    let mut wake: Option<DateTime<Utc>> = None;
    loop {
        if stop.as_ref().is_some_and(CancellationToken::is_cancelled) {
            while flights.next().await.is_some() {}
            return Driven::default();
        }
        if read {
            read = false;
            last_read = tokio::time::Instant::now();
            let now = rt.clock.now();
            let window = flights.take_due(rt, now);
            wake = earliest(window, next_due(rt, &flights, now));
        }
        if let Some(deadline) = deadline {
            let now = rt.clock.now();
            if flights.idle() {
                // Another process may have sent some of them meanwhile.
                left = match rt.store.undelivered_of(&left) {
                    Ok(left) => left,
                    Err(e) => {
                        tracing::error!(%e, "cannot read the outbox");
                        break;
                    }
                };
                if left.is_empty() || wake.is_none_or(|at| at > deadline) {
                    break;
                }
            }
            if now > deadline {
                // Start nothing more; what is being sent lands first.
                while flights.next().await.is_some() {}
                left = rt.store.undelivered_of(&left).unwrap_or(left);
                break;
            }
        }
        flights.start(rt);
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
        let stopped = async {
            match &stop {
                Some(stop) => stop.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stopped => {}
            Some(landed) = flights.next() => {
                wake = earliest(wake, landed.retry_at);
                read |= landed.more || deadline.is_some();
            }
            () = rt.store.ready() => {
                // New messages of this process are handed over to the agent's loop
                // without a read. One written by another process (`once`, `ping`) is
                // read when that process rings the doorbell (or within `POLL` without
                // one), at a retry or group window coming due, or at the next start.
                if deadline.is_some() || last_read.elapsed() >= read_after {
                    read = true;
                } else {
                    let window = flights.take_fresh(rt, rt.clock.now());
                    wake = earliest(wake, window);
                }
            }
            () = rt.store.rung() => read = true,
            () = sleep_or_forever(wait) => {
                let now = rt.clock.now();
                read = wake.is_some_and(|at| at <= now)
                    || (wake.is_some() && last_read.elapsed() >= READ_AFTER)
                    || (poll.is_some() && rt.store.written_elsewhere());
            }
        }
    }
    // Messages read but not started (waiting for a slot) are let go for the next
    // process that delivers.
    if let Err(e) = rt.store.release_claims() {
        tracing::error!(%e, "cannot update the outbox");
    }
    Driven {
        left: left.len(),
        wake,
    }
}

/// When the next message in scope may be tried: the outbox's next retry (the agent),
/// or the heads of the scope's (notifier, job) pairs; a head another process holds is
/// looked at again within [`POLL`], as its claim is usually let go long before it
/// lapses.
fn next_due(rt: &Runtime, flights: &Flights, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match flights.scope() {
        Scope::All => rt.store.next_retry(now).ok().flatten(),
        Scope::Keys(keys) => {
            // A head due now that the read did not take waits for something with a
            // wake of its own (a landing, a group window, quiet hours): as with the
            // agent's next retry, only later times count.
            let heads: Vec<_> = rt
                .store
                .heads(now, keys)
                .unwrap_or_default()
                .into_iter()
                .filter(|(at, foreign)| *at > now || *foreign)
                .collect();
            let next = heads.iter().map(|(at, _)| *at).min()?;
            let poll = now + chrono::Duration::from_std(POLL).unwrap_or_default();
            let foreign = heads.iter().any(|(_, foreign)| *foreign);
            Some(if foreign { next.min(poll) } else { next })
        }
    }
}

async fn sleep_or_forever(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

pub(super) fn earliest(
    a: Option<DateTime<Utc>>,
    b: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
