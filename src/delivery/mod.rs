//! The delivery wing: how a message in the outbox reaches its notifier. Messages are
//! durable before they get here (the store commits them with the run that made them
//! due); delivery sends each, records how the try went, and tries again until it is
//! delivered or given up. Read top to bottom:
//!
//! - [`driver`]: the loop, one for the agent, `once`, `ping`, `exec` and the agent's
//!   last flush, differing only in how long it runs;
//! - [`flights`]: the in-flight set: what the loop has taken, which slots are busy,
//!   and the order per job and notifier (a recovery never overtakes its failure);
//! - [`send`]: one try of one message (or one digest) and carrying out its outcome:
//!   marks, metrics, logs, the fallback copy, pacing;
//! - [`policy`]: the pure decision of what a try's outcome means (delivered, retry
//!   after `Retry-After` or backoff, give up, copy to the `fallback`), table-tested;
//! - [`resend`]: Alertmanager's re-posting of firing alerts.
//!
//! What is particular to a notifier (Slack's pacing, a channel a person reads getting
//! digests, Alertmanager's re-posting and replicas) is asked of the notifier
//! (`NotifierSpec::min_interval`, `Notifier::merges`, `NotifierSpec::resend_every`,
//! `Notifier::send_to_replicas`), not decided here by its type.

mod driver;
mod flights;
mod policy;
mod resend;
mod send;

pub use driver::{deliver_within, round, worker, worker_reading_after};
pub use policy::GIVE_UP_AFTER;
pub(crate) use policy::backoff;
pub use resend::resend_firing;
pub(crate) use send::send_now;
