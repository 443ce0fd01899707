//! The batched (group) commit: runs and delivery outcomes queued by many callers are
//! written in one transaction by one task on the store's threads, and each caller gets
//! its own result once its data is durable. A run is written with its job's new state
//! and the messages it makes due ([`Change`]), in the same transaction. The agent's
//! delivery loop gets each new message as its row is inserted, with a [`Durable`] that
//! opens when the transaction has committed ([`Early`]): it builds the request while
//! the commit runs, and writes it only then.

use std::path::Path;

use rusqlite::{Connection, params};

use super::outbox::{InsertClaims, insert_message, write_marks};
use super::silences::{Silence, SilenceReads};
use super::{
    BUSY_TIMEOUT, CLAIM_LEASE, Fresh, JobState, Mark, OutboxItem, RunRecord, Store, StoreError,
    THREADS, lock, ms, state_in, write_tx,
};
use crate::alert::Silenced;

pub use crate::alert::NewMessage;

/// What recording a run does to its job's state and outbox.
#[derive(Debug, Clone)]
pub enum Change {
    /// The run moves its job's alert: the store applies the pure transition to the
    /// state stored before it (and to its dependencies' states, for `depends_on`), in
    /// the transaction that writes the run.
    Alert(Box<crate::alert::Transition>),
    /// The job's state after the run and its messages, decided already (a run kept in
    /// memory while the store could not be written, whose messages went from there).
    Decided {
        state: Box<JobState>,
        messages: Vec<NewMessage>,
    },
}

/// A write to the store, committed together with others (see [`Store::record`]).
pub(super) enum Write {
    /// A run, with what it does to its job's state and outbox.
    Run(Box<(RunRecord, Change)>),
    /// How delivery tries went.
    Marks(Vec<Mark>),
}

/// What a [`Write`] gives back.
pub(super) enum Written {
    Run(Vec<Fresh>),
    Marks,
}

/// A write waiting for the next group commit, and where its outcome goes.
pub(super) struct Pending {
    write: Write,
    done: tokio::sync::oneshot::Sender<Result<Written, StoreError>>,
}

/// Group commits between two WAL checkpoints. SQLite's own checkpoint (every 1,000
/// pages) would run in the committing thread, `fsync` included, and stall the writes
/// queued behind it; klaxon checkpoints from a second connection instead, which lets
/// writers go on. Counted in commits, not time: an idle agent does not wake for it.
pub(super) const CHECKPOINT_EVERY: u32 = 100;

fn write_one(
    conn: &Connection,
    write: &Write,
    reads: &mut TxReads<'_>,
) -> Result<Written, StoreError> {
    Ok(match write {
        Write::Run(write) => Written::Run(write_run(conn, &write.0, &write.1, reads)?),
        Write::Marks(marks) => {
            write_marks(conn, marks)?;
            Written::Marks
        }
    })
}

/// What the writes of one transaction share: the claims at insert, the silences read,
/// and where messages go before the commit.
pub(super) struct TxReads<'a> {
    /// With the delivery loop's claimer: see [`write_run`].
    claims: Option<InsertClaims<'a>>,
    silences: SilenceReads,
    /// With the delivery loop taking messages before their transaction commits.
    early: Option<Early<'a>>,
}

impl<'a> TxReads<'a> {
    pub(super) fn new(claimer: Option<&'a str>, early: Option<Early<'a>>) -> Self {
        Self {
            claims: claimer.map(InsertClaims::new),
            silences: SilenceReads::default(),
            early,
        }
    }
}

/// Hands a claimed message over to the delivery loop as soon as its row is inserted,
/// before its transaction (of one run) commits, with the [`Durable`] that says when it has: the
/// loop takes it and builds its request meanwhile, and writes it only once its row is
/// durable (and never if the transaction rolls back). The commit is still the first
/// thing; only what precedes the write no longer waits for it.
pub(super) struct Early<'a> {
    store: &'a Store,
    durable: Durable,
}

impl<'a> Early<'a> {
    pub(super) fn new(store: &'a Store, durable: Durable) -> Self {
        Self { store, durable }
    }
}

/// Whether the transaction that handed a message over early ([`Early`]) committed. The
/// committing thread says so once `COMMIT` returned; a transaction rolled back (or a
/// thread gone) says no.
#[derive(Clone, Debug)]
pub struct Durable(tokio::sync::watch::Receiver<Option<bool>>);

impl PartialEq for Durable {
    fn eq(&self, other: &Self) -> bool {
        self.0.same_channel(&other.0)
    }
}

impl Durable {
    /// A new gate and what opens it: `send(Some(true))` once committed; dropped
    /// without that, the transaction did not commit.
    pub(super) fn gate() -> (tokio::sync::watch::Sender<Option<bool>>, Self) {
        let (tx, rx) = tokio::sync::watch::channel(None);
        (tx, Self(rx))
    }

    /// `true` once the transaction committed; `false` if it never will.
    pub async fn wait(mut self) -> bool {
        matches!(
            self.0.wait_for(Option::is_some).await.map(|v| *v),
            Ok(Some(true))
        )
    }
}

/// One run, its job's new state and its messages, on an open transaction. With the
/// transaction's claimer, each message that has no older undelivered one of its job
/// and notifier (whichever process wrote it) is inserted claimed by their owner, as
/// [`Store::claim_keys`] would claim it: in the same transaction, so no other process
/// can slip one in before it; those are handed over [`Early`] when it applies. The
/// messages are inserted first, so that the rest of the transaction runs while the
/// delivery loop prepares them.
fn write_run(
    conn: &Connection,
    run: &RunRecord,
    change: &Change,
    reads: &mut TxReads<'_>,
) -> Result<Vec<Fresh>, StoreError> {
    let before = state_in(conn, &run.job)?;
    let (state, messages, silenced) = match change {
        Change::Alert(transition) => {
            // A silence added a moment ago (by `klaxon silence`, whether or not the
            // agent runs) holds this run's messages.
            let stored = reads
                .silences
                .of(conn, &run.job, run.finished_at)?
                .map(Silence::silenced);
            let silenced = Silenced::longer(stored, transition.maintenance.clone());
            let (state, messages) = transition.apply_reading(
                &before,
                &|job| state_in(conn, job),
                silenced.is_some(),
            )?;
            (state, messages, silenced.map(|s| s.by))
        }
        Change::Decided { state, messages } => ((**state).clone(), messages.clone(), None),
    };
    let mut items = Vec::with_capacity(messages.len());
    let until = ms(run.finished_at) + CLAIM_LEASE.as_millis() as i64;
    for m in messages {
        let claim = match reads.claims.as_mut() {
            Some(claims) => claims.claim(conn, &m.notifier, &m.alert.job)?,
            None => None,
        };
        let item = insert_message(
            conn,
            m,
            run.finished_at,
            claim.map(|owner| (owner, until)),
            false,
        )?;
        let durable = match (&reads.early, claim) {
            (Some(early), Some(_)) => {
                let fresh = Fresh {
                    item: item.clone(),
                    claimed: true,
                    durable: Some(early.durable.clone()),
                };
                early.store.fresh([fresh]);
                Some(early.durable.clone())
            }
            _ => None,
        };
        items.push(Fresh {
            item,
            claimed: claim.is_some(),
            durable,
        });
    }
    insert_run(conn, run, silenced.as_deref())?;
    conn.prepare_cached(
        "INSERT INTO job_state (job, state) VALUES (?1, ?2)
         ON CONFLICT (job) DO UPDATE SET state = excluded.state",
    )?
    .execute(params![run.job, serde_json::to_string(&state)?])?;
    Ok(items)
}

/// Writes `run` to history; `silenced` names what silenced it when the run itself does
/// not say.
pub(super) fn insert_run(
    conn: &Connection,
    run: &RunRecord,
    silenced: Option<&str>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO runs (job, started_at, finished_at, severity, attempts, elapsed_ms, summary, output, skipped, metrics, fire_at, silenced, latency_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
            run.job,
            ms(run.started_at),
            ms(run.finished_at),
            run.severity,
            run.attempts,
            run.elapsed.as_millis() as i64,
            run.summary,
            run.output,
            run.skipped,
            (!run.metrics.is_empty())
                .then(|| serde_json::to_string(&run.metrics))
                .transpose()?,
            run.fire_at.map(ms),
            run.silenced.as_deref().or(silenced),
            super::dashboard::latency(&run.metrics),
        ],
    )?;
    Ok(())
}

impl Store {
    /// Records a run in one transaction with the state and messages `apply` decides
    /// from the job's stored state (for tests). Returns the outbox items as stored.
    /// (The agent records through [`Store::record`].)
    #[cfg(test)]
    pub fn record_run(
        &self,
        run: &RunRecord,
        apply: impl Fn(&JobState) -> (JobState, Vec<NewMessage>) + Send,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let (state, messages) = apply(&self.job_state(&run.job)?);
        let write = Write::Run(Box::new((
            run.clone(),
            Change::Decided {
                state: Box::new(state),
                messages,
            },
        )));
        match self.commit_writes(vec![write]).pop() {
            Some(Ok(Written::Run(items))) => Ok(items.into_iter().map(|f| f.item).collect()),
            Some(Err(e)) => Err(e),
            _ => Err(StoreError::Stopped),
        }
    }

    /// Records a run like [`Store::record_run`], committed together with the other
    /// writes waiting at that moment (group commit): when a hundred checks fail at
    /// once, their runs, states and messages take a few transactions, not a hundred,
    /// and each caller still gets its own result once its data is durable.
    pub async fn record(
        &self,
        run: RunRecord,
        change: Change,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        match self.queued(Write::Run(Box::new((run, change)))).await? {
            Written::Run(items) => Ok(items.into_iter().map(|f| f.item).collect()),
            Written::Marks => Err(StoreError::Stopped),
        }
    }

    /// Queues delivery outcomes for the next group commit at once (they are committed
    /// even if nobody waits); the returned future says when and how it went.
    pub fn mark_queued(
        &self,
        marks: Vec<Mark>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + use<> {
        let result = (!marks.is_empty()).then(|| self.enqueue(Write::Marks(marks)));
        async move {
            match result {
                Some(result) => result.await.unwrap_or(Err(StoreError::Stopped)).map(|_| ()),
                None => Ok(()),
            }
        }
    }

    async fn queued(&self, write: Write) -> Result<Written, StoreError> {
        self.enqueue(write)
            .await
            .unwrap_or(Err(StoreError::Stopped))
    }

    fn enqueue(&self, write: Write) -> tokio::sync::oneshot::Receiver<Result<Written, StoreError>> {
        use std::sync::atomic::Ordering::SeqCst;
        let (done, result) = tokio::sync::oneshot::channel();
        lock(&self.queue).push(Pending { write, done });
        if !self.committing.swap(true, SeqCst) {
            // The committing task is spawned, not run by this caller, so a caller that
            // is cancelled cannot strand the others' writes.
            tokio::spawn(self.clone().commit_queue());
        }
        result
    }

    /// Commits what is queued, batch after batch, until the queue is empty.
    async fn commit_queue(self) {
        use std::sync::atomic::Ordering::SeqCst;
        loop {
            let batch = std::mem::take(&mut *lock(&self.queue));
            if batch.is_empty() {
                self.committing.store(false, SeqCst);
                // A write queued between the take and the store above found the flag
                // still set: take it on, unless a new task already has.
                if lock(&self.queue).is_empty() || self.committing.swap(true, SeqCst) {
                    return;
                }
                continue;
            }
            let store = self.clone();
            let committed = THREADS
                .run(move || {
                    let (writes, dones): (Vec<_>, Vec<_>) =
                        batch.into_iter().map(|p| (p.write, p.done)).unzip();
                    let results = store.commit_writes(writes);
                    for (done, result) in dones.into_iter().zip(results) {
                        let _ = done.send(result);
                    }
                })
                .await;
            if let Err(e) = committed {
                // The senders went with the task: every caller of that batch gets
                // `Stopped`, and the queue goes on.
                tracing::error!(%e, "writing to the state database failed");
            }
        }
    }

    /// Counts a commit; every [`CHECKPOINT_EVERY`] commits, checkpoints on a thread
    /// of its own.
    pub(super) fn committed(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        lock(&self.write_error).take();
        self.ring();
        if self.commits.fetch_add(1, SeqCst) + 1 >= CHECKPOINT_EVERY {
            self.commits.store(0, SeqCst);
            let store = self.clone();
            let spawned = std::thread::Builder::new()
                .name("klaxon-checkpoint".into())
                .spawn(move || store.checkpoint());
            if let Err(e) = spawned {
                tracing::warn!(%e, "cannot start a checkpoint");
            }
        }
    }

    /// Copies what the WAL holds into the database (PASSIVE: writers are not blocked)
    /// from a connection of its own. A checkpoint already running makes this a no-op.
    pub fn checkpoint(&self) {
        if self.path == Path::new(":memory:") {
            return;
        }
        let Ok(mut guard) = self.checkpointer.try_lock() else {
            return;
        };
        if guard.is_none() {
            match Connection::open(&self.path) {
                Ok(conn) => {
                    let _ = conn.busy_timeout(BUSY_TIMEOUT);
                    *guard = Some(conn);
                }
                Err(e) => {
                    tracing::warn!(%e, "cannot open the state database to checkpoint it");
                    return;
                }
            }
        }
        if let Some(conn) = guard.as_ref()
            && let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::warn!(%e, "checkpointing the state database failed");
        }
    }

    /// Makes writes in one transaction. One that cannot be made does not stop the
    /// others: the transaction is then rolled back and the writes made again, each in a
    /// savepoint of its own. Results are in the order of `writes`.
    ///
    /// The first try has no savepoints because they are not free: SQLite copies each
    /// page a savepoint changes into its sub-journal, and a storm's runs change many.
    pub(super) fn commit_writes(&self, writes: Vec<Write>) -> Vec<Result<Written, StoreError>> {
        let mut conn = self.conn();
        {
            let mut states = lock(&self.states);
            for write in &writes {
                if let Write::Run(run) = write {
                    states.dirty(&run.0.job);
                }
            }
        }
        let claimer = self.claimer();
        // Only a first try of one run hands its messages over before its commit: what
        // the try with savepoints commits is handed over after it, and so are the
        // messages of a group commit of several runs, together, so that a channel a
        // person reads gets a storm's messages as one digest.
        let runs = writes.iter().filter(|w| matches!(w, Write::Run(_))).count();
        let (open, durable) = Durable::gate();
        let together = write_tx(&mut conn).and_then(|tx| {
            let early = claimer
                .filter(|_| runs == 1)
                .map(|_| Early::new(self, durable));
            let mut reads = TxReads::new(claimer, early);
            let written = writes
                .iter()
                .map(|write| write_one(&tx, write, &mut reads))
                .collect::<Result<Vec<_>, _>>();
            match written {
                Ok(written) => tx.commit().map(|()| Some(written)),
                // Dropping `tx` rolls it back.
                Err(_) => Ok(None),
            }
        });
        let committed = match together {
            Ok(Some(written)) => {
                // Durable: what was handed over early may be written now.
                let _ = open.send(Some(true));
                Ok(written.into_iter().map(Ok).collect())
            }
            Ok(None) => {
                // What went early is not sent: its rows were rolled back.
                drop(open);
                Self::commit_apart(&mut conn, &writes, claimer)
            }
            Err(e) => Err(e),
        };
        if let Ok(results) = &committed {
            self.fresh(results.iter().flat_map(|r| {
                match r {
                    Ok(Written::Run(items)) => items
                        .iter()
                        .filter(|f| f.durable.is_none())
                        .cloned()
                        .collect(),
                    _ => Vec::new(),
                }
            }));
        }
        drop(conn);
        match committed {
            Ok(results) => {
                // Every write failing on its own is the store failing (a full disk),
                // not one bad record.
                match results.iter().find_map(|r| r.as_ref().err()) {
                    Some(e) if results.iter().all(Result::is_err) => {
                        *lock(&self.write_error) = Some(e.to_string());
                    }
                    _ => self.committed(),
                }
                results
            }
            Err(e) => {
                let why = e.to_string();
                *lock(&self.write_error) = Some(why.clone());
                (0..writes.len())
                    .map(|_| Err(StoreError::Commit(why.clone())))
                    .collect()
            }
        }
    }

    /// Makes writes in one transaction, each in a savepoint of its own; an error is
    /// the transaction's own (it could not begin or commit).
    fn commit_apart(
        conn: &mut Connection,
        writes: &[Write],
        claimer: Option<&str>,
    ) -> Result<Vec<Result<Written, StoreError>>, rusqlite::Error> {
        let mut tx = write_tx(conn)?;
        let mut reads = TxReads::new(claimer, None);
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            let result = tx.savepoint().map_err(StoreError::from).and_then(|sp| {
                let written = write_one(&sp, write, &mut reads)?;
                sp.commit()?;
                Ok(written)
            });
            results.push(result);
        }
        tx.commit()?;
        Ok(results)
    }
}
