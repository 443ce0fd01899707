//! The outbox table: messages waiting to be delivered, their claims (which process is
//! sending one, until when), the outcomes of delivery tries, and the reads the delivery
//! loop takes its work from, in order per job and notifier across processes.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::commit::Durable;
use super::{Store, StoreError, from_ms, lock, ms, write_tx};
use crate::alert::NewMessage;

/// How long a claim on an outbox message lasts: a process that reads a message to send
/// it claims it, and no other process sends it until the claim is released (the try is
/// recorded) or lapses (its owner died). Far longer than a delivery try takes (the
/// built-in notifiers time out after 10 to 30 s), so a live owner keeps its claim.
pub const CLAIM_LEASE: Duration = Duration::from_secs(5 * 60);

/// A message waiting in (or taken from) the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub id: i64,
    pub notifier: String,
    pub alert: klaxon_notifiers::Alert,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    /// When it was put in the outbox (first failure of delivery counts from here).
    pub created_at: DateTime<Utc>,
    /// Whether a copy already went to the notifier's `fallback`.
    pub fallback_sent: bool,
}

/// A message handed over to the delivery loop ([`Store::take_fresh`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Fresh {
    pub item: OutboxItem,
    /// Claimed for this store by the transaction that inserted it, no older message
    /// of its job and notifier being undelivered then: it may be sent without
    /// claiming it again.
    pub claimed: bool,
    /// Handed over before its transaction committed: written only once this says it
    /// did ([`Durable::wait`]). `None`: committed already.
    pub durable: Option<Durable>,
}

/// How a delivery try of one outbox message went, to be recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Mark {
    Delivered {
        id: i64,
        at: DateTime<Utc>,
    },
    /// Not delivered; tried again at `next_attempt_at`.
    Failed {
        id: i64,
        error: String,
        next_attempt_at: DateTime<Utc>,
    },
    /// Refused for good (or its notifier is gone): not tried again.
    GaveUp {
        id: i64,
        error: String,
        at: DateTime<Utc>,
    },
}

impl Mark {
    pub fn delivered(id: i64, at: DateTime<Utc>) -> Self {
        Self::Delivered { id, at }
    }
}

/// What [`Store::due_except`] found.
#[derive(Debug, Default)]
pub struct Due {
    /// Due and not taken, oldest first.
    pub items: Vec<OutboxItem>,
    /// (notifier, job) with an undelivered message that is not due yet, or that another
    /// process is sending: a newer message of these must wait for it.
    pub blocked: std::collections::HashSet<(String, String)>,
    /// (notifier, job) with a newer message behind one in `taken`.
    pub behind: std::collections::HashSet<(String, String)>,
}

/// Which (notifier, job) a claim is for: all, or these.
type Keys<'a> = Option<&'a std::collections::HashSet<(String, String)>>;

/// An undelivered outbox row, its payload not decoded yet.
struct PendingRow {
    id: i64,
    job: String,
    notifier: String,
    payload: String,
    attempts: u32,
    next_attempt_at: i64,
    created_at: i64,
    fallback_sent: bool,
    claimed_by: Option<String>,
    claim_until: Option<i64>,
}

impl PendingRow {
    fn decode(self) -> Result<OutboxItem, StoreError> {
        Ok(OutboxItem {
            id: self.id,
            notifier: self.notifier,
            alert: serde_json::from_str(&self.payload)?,
            attempts: self.attempts,
            next_attempt_at: from_ms(self.next_attempt_at),
            created_at: from_ms(self.created_at),
            fallback_sent: self.fallback_sent,
        })
    }
}

fn pending_rows(conn: &Connection) -> Result<Vec<PendingRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, job, notifier, payload, attempts, next_attempt_at, created_at, fallback_sent,
                claimed_by, claim_until
         FROM outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(PendingRow {
            id: r.get(0)?,
            job: r.get(1)?,
            notifier: r.get(2)?,
            payload: r.get(3)?,
            attempts: r.get(4)?,
            next_attempt_at: r.get(5)?,
            created_at: r.get(6)?,
            fallback_sent: r.get(7)?,
            claimed_by: r.get(8)?,
            claim_until: r.get(9)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Inserts one message, made at `at` (its first try due then), claimed by
/// `claim`'s owner until its time when given; `fallback_sent` for a fallback's copy
/// (whose own fallback is not followed). Returns it as stored.
pub(super) fn insert_message(
    conn: &Connection,
    message: NewMessage,
    at: DateTime<Utc>,
    claim: Option<(&str, i64)>,
    fallback_sent: bool,
) -> Result<OutboxItem, StoreError> {
    let NewMessage { notifier, alert } = message;
    conn.prepare_cached(
        "INSERT INTO outbox (alert_id, job, notifier, event, payload, created_at, next_attempt_at,
                             claimed_by, claim_until, fallback_sent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        alert.id,
        alert.job,
        notifier,
        alert.event.as_str(),
        serde_json::to_string(&alert)?,
        ms(at),
        claim.map(|(owner, _)| owner),
        claim.map(|(_, until)| until),
        fallback_sent,
    ])?;
    Ok(OutboxItem {
        id: conn.last_insert_rowid(),
        notifier,
        alert,
        attempts: 0,
        next_attempt_at: at,
        created_at: at,
        fallback_sent,
    })
}

pub(super) fn write_marks(conn: &Connection, marks: &[Mark]) -> Result<(), StoreError> {
    for mark in marks {
        match mark {
            Mark::Delivered { id, at } => conn
                .prepare_cached(
                    "UPDATE outbox SET delivered_at = ?2, attempts = attempts + 1, last_error = NULL,
                            claimed_by = NULL, claim_until = NULL
                     WHERE id = ?1",
                )?
                .execute(params![id, ms(*at)])?,
            Mark::Failed {
                id,
                error,
                next_attempt_at,
            } => {
                // The newer messages of its job its sender claimed wait for it: they
                // are let go with it.
                conn.prepare_cached(
                    "UPDATE outbox SET claimed_by = NULL, claim_until = NULL
                     WHERE delivered_at IS NULL AND gave_up_at IS NULL
                       AND (notifier, job, claimed_by) =
                           (SELECT notifier, job, claimed_by FROM outbox WHERE id = ?1)",
                )?
                .execute(params![id])?;
                conn.prepare_cached(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3,
                                claimed_by = NULL, claim_until = NULL
                     WHERE id = ?1",
                )?
                .execute(params![id, error, ms(*next_attempt_at)])?
            }
            Mark::GaveUp { id, error, at } => conn
                .prepare_cached(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, gave_up_at = ?3,
                            claimed_by = NULL, claim_until = NULL
                     WHERE id = ?1",
                )?
                .execute(params![id, error, ms(*at)])?,
        };
    }
    Ok(())
}

impl Store {
    /// Per job: messages not delivered yet, and messages given up on.
    pub fn undelivered(&self) -> Result<HashMap<String, (u32, u32)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT job,
                    sum(delivered_at IS NULL AND gave_up_at IS NULL),
                    sum(delivered_at IS NULL AND gave_up_at IS NOT NULL)
             FROM outbox WHERE delivered_at IS NULL GROUP BY job",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                (r.get::<_, u32>(1)?, r.get::<_, u32>(2)?),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The latest message (not a recovery) of an alert, as it was enqueued.
    pub fn last_message(
        &self,
        alert_id: &str,
    ) -> Result<Option<klaxon_notifiers::Alert>, StoreError> {
        let payload: Option<String> = self
            .conn()
            .query_row(
                "SELECT payload FROM outbox WHERE alert_id = ?1 AND event != 'recovery'
                 ORDER BY id DESC LIMIT 1",
                params![alert_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(payload.map(|p| serde_json::from_str(&p)).transpose()?)
    }

    /// Records how delivery tries went, all in one transaction.
    pub fn mark(&self, marks: &[Mark]) -> Result<(), StoreError> {
        if marks.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        write_marks(&tx, marks)?;
        tx.commit()?;
        drop(conn);
        self.committed();
        Ok(())
    }

    /// Puts a copy of `item` in the outbox for `fallback`, once: the original is marked
    /// so it is not copied again. Returns the copy.
    pub fn enqueue_fallback(
        &self,
        item: &OutboxItem,
        fallback: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OutboxItem>, StoreError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let marked = tx
            .prepare_cached(
                "UPDATE outbox SET fallback_sent = 1 WHERE id = ?1 AND fallback_sent = 0",
            )?
            .execute(params![item.id])?;
        if marked == 0 {
            return Ok(None);
        }
        let message = NewMessage {
            notifier: fallback.to_owned(),
            alert: item.alert.clone(),
        };
        // A fallback's own fallback is not followed: no chains, no loops.
        let copy = insert_message(&tx, message, now, None, true)?;
        tx.commit()?;
        self.fresh([Fresh {
            item: copy.clone(),
            claimed: false,
            durable: None,
        }]);
        drop(conn);
        self.committed();
        Ok(Some(copy))
    }

    /// Puts the agent's own `messages` (not made by a run: "back online") in the
    /// outbox at `now`, in one transaction, for the delivery worker to send.
    pub fn enqueue_messages(
        &self,
        messages: Vec<NewMessage>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let fresh = messages
            .into_iter()
            .map(|m| {
                Ok(Fresh {
                    item: insert_message(&tx, m, now, None, false)?,
                    claimed: false,
                    durable: None,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        tx.commit()?;
        self.fresh(fresh);
        drop(conn);
        self.committed();
        Ok(())
    }

    /// Undelivered messages whose next attempt is due at `now`, oldest first.
    ///
    /// In order per job and notifier: a message is not due while an older one of the
    /// same job to the same notifier is undelivered, so a recovery never overtakes its
    /// failure, even when the failure's retry comes later.
    pub fn due(&self, now: DateTime<Utc>) -> Result<Vec<OutboxItem>, StoreError> {
        Ok(self
            .due_except(now, &std::collections::HashSet::new())?
            .items)
    }

    /// [`Store::due`] less the messages in `taken` (the delivery loop has them), and
    /// which jobs have a message waiting for a later retry. What was handed over is
    /// part of this answer: it is cleared, in the same lock as the read.
    ///
    /// What is returned is claimed for this store (see [`CLAIM_LEASE`]) in the same
    /// transaction that read it: a message another process claimed is not due here,
    /// nor are the newer ones of its job and notifier.
    pub fn due_except(
        &self,
        now: DateTime<Utc>,
        taken: &std::collections::HashSet<i64>,
    ) -> Result<Due, StoreError> {
        self.claim(now, taken, None)
    }

    /// [`Store::due_except`] for only these (notifier, job): each one's oldest
    /// undelivered messages, when due and not claimed by another process.
    pub fn claim_keys(
        &self,
        now: DateTime<Utc>,
        taken: &std::collections::HashSet<i64>,
        keys: &std::collections::HashSet<(String, String)>,
    ) -> Result<Due, StoreError> {
        self.claim(now, taken, Some(keys))
    }

    fn claim(
        &self,
        now: DateTime<Utc>,
        taken: &std::collections::HashSet<i64>,
        keys: Keys<'_>,
    ) -> Result<Due, StoreError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        if keys.is_none()
            && let Some(fresh) = lock(&self.fresh).as_mut()
        {
            fresh.clear();
        }
        let mut due = Due::default();
        let mut stopped = std::collections::HashSet::new();
        let mut after_taken = std::collections::HashSet::new();
        let until = ms(now) + CLAIM_LEASE.as_millis() as i64;
        // Only the messages that go out now are decoded.
        for row in pending_rows(&tx)? {
            let key = (row.notifier.clone(), row.job.clone());
            if keys.is_some_and(|keys| !keys.contains(&key)) {
                continue;
            }
            if stopped.contains(&key) {
                if after_taken.contains(&key) {
                    due.behind.insert(key);
                }
                continue;
            }
            if taken.contains(&row.id) {
                after_taken.insert(key.clone());
                stopped.insert(key);
                continue;
            }
            if from_ms(row.next_attempt_at) > now || self.claimed_elsewhere(&row, now) {
                stopped.insert(key.clone());
                due.blocked.insert(key);
                continue;
            }
            tx.prepare_cached("UPDATE outbox SET claimed_by = ?2, claim_until = ?3 WHERE id = ?1")?
                .execute(params![row.id, &*self.owner, until])?;
            due.items.push(row.decode()?);
        }
        tx.commit()?;
        Ok(due)
    }

    fn claimed_elsewhere(&self, row: &PendingRow, now: DateTime<Utc>) -> bool {
        row.claimed_by.as_deref().is_some_and(|o| o != &*self.owner)
            && row.claim_until.is_some_and(|until| until > ms(now))
    }

    /// Gives up this store's claims on messages it has not settled (a process that
    /// stops delivering), so another process need not wait for them to lapse.
    pub fn release_claims(&self) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE outbox SET claimed_by = NULL, claim_until = NULL
             WHERE claimed_by = ?1 AND delivered_at IS NULL AND gave_up_at IS NULL",
            params![&*self.owner],
        )?;
        Ok(())
    }

    /// Of `ids`, the messages not delivered nor given up yet (by any process).
    pub fn undelivered_of(
        &self,
        ids: &std::collections::HashSet<i64>,
    ) -> Result<std::collections::HashSet<i64>, StoreError> {
        Ok(self
            .pending_rows()?
            .into_iter()
            .map(|r| r.id)
            .filter(|id| ids.contains(id))
            .collect())
    }

    /// For each of `keys` with an undelivered message: when its oldest one may be
    /// tried (its next attempt, or when another process's claim on it lapses), and
    /// whether another process has it claimed.
    pub fn heads(
        &self,
        now: DateTime<Utc>,
        keys: &std::collections::HashSet<(String, String)>,
    ) -> Result<Vec<(DateTime<Utc>, bool)>, StoreError> {
        let mut seen = std::collections::HashSet::new();
        let mut heads = Vec::new();
        for row in self.pending_rows()? {
            let key = (row.notifier.clone(), row.job.clone());
            if !keys.contains(&key) || !seen.insert(key) {
                continue;
            }
            let foreign = self.claimed_elsewhere(&row, now);
            let mut at = row.next_attempt_at;
            if foreign {
                at = at.max(row.claim_until.unwrap_or(at));
            }
            heads.push((from_ms(at), foreign));
        }
        Ok(heads)
    }

    /// From now on, every message this store commits is also kept for
    /// [`Store::take_fresh`] until taken or until the outbox is read: the delivery loop
    /// asks for this, a process without one does not.
    ///
    /// Its messages are then claimed as they are inserted, when no older message of
    /// their job and notifier is undelivered (see [`Fresh::claimed`]): the loop that
    /// asked sends them without a second write. A process without one never claims at
    /// insert, so it leaves no claim that nobody is going to send.
    pub fn hand_over(&self) {
        lock(&self.fresh).get_or_insert_with(Vec::new);
    }

    /// Who claims this store's new messages as they are inserted: this store, once its
    /// delivery loop takes them ([`Store::hand_over`]).
    pub(super) fn claimer(&self) -> Option<&str> {
        lock(&self.fresh).is_some().then_some(&*self.owner)
    }

    /// The messages committed since the last call or the last read of the outbox,
    /// oldest first.
    pub fn take_fresh(&self) -> Vec<Fresh> {
        lock(&self.fresh)
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Keeps `items`, just committed, for [`Store::take_fresh`]; called with the
    /// connection still locked, so a read of the outbox sees them either as pending
    /// and clears them here, or not at all.
    /// Rings [`Store::ready`] when there are any.
    pub(super) fn fresh(&self, items: impl IntoIterator<Item = Fresh>) {
        let mut items = items.into_iter().peekable();
        if items.peek().is_none() {
            return;
        }
        if let Some(fresh) = lock(&self.fresh).as_mut() {
            fresh.extend(items);
        }
        self.ready.notify_one();
    }

    /// Undelivered messages, oldest first.
    pub fn pending(&self) -> Result<Vec<OutboxItem>, StoreError> {
        self.pending_rows()?
            .into_iter()
            .map(PendingRow::decode)
            .collect()
    }

    /// When the earliest message that was not due at `now` comes due: the first
    /// undelivered message of each job and notifier whose next attempt is after `now`
    /// (the ones behind it wait for it anyway), whichever process wrote it; one that
    /// another process has claimed, when that claim lapses. `now` is when the caller
    /// last asked [`Store::due`], so a message that came due since is not missed.
    pub fn next_retry(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<i64> = self
            .conn()
            .prepare_cached(
                "SELECT min(at) FROM (
                   SELECT CASE WHEN o.claimed_by IS NOT NULL AND o.claimed_by != ?2
                                    AND o.claim_until > o.next_attempt_at
                               THEN o.claim_until ELSE o.next_attempt_at END AS at
                   FROM outbox o
                   JOIN (SELECT min(id) AS id FROM outbox
                         WHERE delivered_at IS NULL AND gave_up_at IS NULL
                         GROUP BY notifier, job) head ON o.id = head.id)
                 WHERE at > ?1",
            )?
            .query_row(params![ms(now), &*self.owner], |r| r.get(0))?;
        Ok(at.map(from_ms))
    }

    fn pending_rows(&self) -> Result<Vec<PendingRow>, StoreError> {
        pending_rows(&self.conn())
    }
}

/// Claiming new messages as they are inserted, for the writes of one transaction.
pub(super) struct InsertClaims<'a> {
    owner: &'a str,
    /// (notifier, job) with an undelivered message: read from the outbox at the first
    /// message, then kept up to date with the messages inserted. A message of this
    /// transaction that is settled or rolled back later stays in it; that only leaves
    /// a newer message unclaimed, to be claimed when taken.
    busy: Option<std::collections::HashSet<(String, String)>>,
}

impl<'a> InsertClaims<'a> {
    pub(super) fn new(owner: &'a str) -> Self {
        Self { owner, busy: None }
    }

    /// The owner, when a new message of (`notifier`, `job`) is claimed at insert: no
    /// older one of them is undelivered. It is counted as undelivered from now on.
    pub(super) fn claim(
        &mut self,
        conn: &Connection,
        notifier: &str,
        job: &str,
    ) -> Result<Option<&'a str>, StoreError> {
        let busy = match &mut self.busy {
            Some(busy) => busy,
            None => self.busy.insert(undelivered_keys(conn)?),
        };
        let first = busy.insert((notifier.to_owned(), job.to_owned()));
        Ok(first.then_some(self.owner))
    }
}

/// (notifier, job) of the undelivered messages (not given up).
fn undelivered_keys(
    conn: &Connection,
) -> Result<std::collections::HashSet<(String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT notifier, job FROM outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL",
    )?;
    let keys = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(keys.collect::<Result<_, _>>()?)
}
