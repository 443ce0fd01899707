//! Bounded pools of dedicated threads for blocking work, apart from tokio's blocking
//! pool, so that work stuck in one pool (a `statfs` on a dead network mount) cannot
//! starve another (the state store's commits).
//!
//! A pool starts a thread when work is queued and none is idle, up to its size; its
//! threads then live as long as the process. Work beyond that waits in the queue. A
//! thread stuck in a system call stays stuck: its pool has one thread fewer until the
//! call returns, and the process exits without waiting for it.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Condvar, Mutex, MutexGuard};

/// The pool of checks' blocking work: `disk`'s `statfs`, `process` sampling, and the
/// name lookups of `tcp` and `http` checks.
pub static CHECKS: Pool = Pool::new("klaxon-check", CHECK_THREADS);

/// How many threads [`CHECKS`] has at most.
pub const CHECK_THREADS: usize = 8;

type Task = Box<dyn FnOnce() + Send>;

/// Why work sent to a [`Pool`] gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum Lost {
    #[error("it panicked")]
    Panicked,
    #[error("no thread could be started to run it")]
    NoThread,
}

/// A bounded set of named threads running closures in the order they were queued.
pub struct Pool {
    name: &'static str,
    size: usize,
    state: Mutex<State>,
    ready: Condvar,
}

struct State {
    queue: VecDeque<Task>,
    threads: usize,
    idle: usize,
}

impl Pool {
    /// A pool of at most `size` threads named `name`; none is started yet.
    pub const fn new(name: &'static str, size: usize) -> Self {
        Self {
            name,
            size,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                threads: 0,
                idle: 0,
            }),
            ready: Condvar::new(),
        }
    }

    /// Runs `work` on one of the pool's threads; the future is its answer. Dropping
    /// the future does not stop the work: its answer is then dropped.
    pub fn run<T, F>(&'static self, work: F) -> impl Future<Output = Result<T, Lost>> + Send
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.submit(Box::new(move || {
            let _ = done.send(std::panic::catch_unwind(AssertUnwindSafe(work)));
        }));
        async move {
            match answer.await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(_)) => Err(Lost::Panicked),
                Err(_) => Err(Lost::NoThread),
            }
        }
    }

    /// Queues `work` on one of the pool's threads, wanting no answer.
    pub fn spawn(&'static self, work: impl FnOnce() + Send + 'static) {
        self.submit(Box::new(move || {
            let _ = std::panic::catch_unwind(AssertUnwindSafe(work));
        }));
    }

    fn submit(&'static self, task: Task) {
        let mut state = self.lock();
        state.queue.push_back(task);
        if state.idle > 0 || state.threads >= self.size {
            self.ready.notify_one();
            return;
        }
        let spawned = std::thread::Builder::new()
            .name(self.name.into())
            .spawn(move || self.work());
        match spawned {
            Ok(_) => state.threads += 1,
            Err(e) => {
                tracing::error!(pool = self.name, %e, "cannot start a thread");
                if state.threads == 0 {
                    // No thread will ever take the queue: its callers get `NoThread`.
                    state.queue.clear();
                }
            }
        }
    }

    fn work(&'static self) {
        loop {
            let task = {
                let mut state = self.lock();
                loop {
                    if let Some(task) = state.queue.pop_front() {
                        break task;
                    }
                    state.idle += 1;
                    state = self
                        .ready
                        .wait(state)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    state.idle -= 1;
                }
            };
            task();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Tasks run outside the lock and catch their panics: a poisoned lock still
        // holds a consistent queue.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One check's blocking work, one piece at a time: while the last piece has not
/// returned (a read stuck on a hung network mount), no new one is started, so a stuck
/// check holds at most one thread of [`CHECKS`].
#[derive(Debug, Default)]
pub struct OneAtATime {
    /// When the piece still running started; `None` when none is.
    since: std::sync::Arc<Mutex<Option<std::time::SystemTime>>>,
}

/// Clears [`OneAtATime::since`] when the work ends, panicking or not.
struct Done(std::sync::Arc<Mutex<Option<std::time::SystemTime>>>);

impl Drop for Done {
    fn drop(&mut self) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

impl OneAtATime {
    /// Runs `work` on [`CHECKS`], unless the last work is still running: then
    /// `Err(since when)`.
    pub fn run<T, F>(
        &self,
        work: F,
    ) -> Result<impl Future<Output = Result<T, Lost>> + Send + use<T, F>, std::time::SystemTime>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let mut since = self
            .since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(since) = *since {
            return Err(since);
        }
        *since = Some(std::time::SystemTime::now());
        let done = Done(self.since.clone());
        Ok(CHECKS.run(move || {
            let _done = done;
            work()
        }))
    }

    /// A check's try whose work may fail or get stuck: runs `work` as
    /// [`OneAtATime::run`] within `timeout`, and `judge` on its answer (with the time
    /// taken). `work`'s `Err(reason)` is critical with that reason; so is a timeout
    /// (`timed out after 5s`), and the last work still stuck
    /// (``still stuck reading `WHAT` since TIME``); a panic is unknown.
    pub async fn try_within<T, F>(
        &self,
        what: &str,
        timeout: std::time::Duration,
        work: F,
        judge: impl FnOnce(T, std::time::Duration) -> crate::Outcome,
    ) -> crate::Outcome
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, String> + Send + 'static,
    {
        use crate::{Outcome, Severity};
        let start = tokio::time::Instant::now();
        let answer = match self.run(work) {
            Ok(answer) => answer,
            Err(since) => {
                let since = humantime::format_rfc3339_seconds(since);
                let summary = format!("still stuck reading `{what}` since {since}");
                return Outcome::new(Severity::Critical, summary, start.elapsed());
            }
        };
        match tokio::time::timeout(timeout, answer).await {
            Err(_) => {
                let summary = crate::text::timed_out(timeout);
                Outcome::new(Severity::Critical, summary, start.elapsed())
            }
            Ok(Err(lost)) => Outcome::new(
                Severity::Unknown,
                format!("reading `{what}` failed: {lost}"),
                start.elapsed(),
            ),
            Ok(Ok(Err(reason))) => Outcome::new(Severity::Critical, reason, start.elapsed()),
            Ok(Ok(Ok(value))) => judge(value, start.elapsed()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn work_stuck_on_every_thread_of_one_pool_does_not_delay_another_pool() {
        static STUCK: Pool = Pool::new("test-stuck", 2);
        static FREE: Pool = Pool::new("test-free", 1);
        let (release, held) = std::sync::mpsc::channel::<()>();
        let held = std::sync::Arc::new(Mutex::new(held));
        let mut stuck = Vec::new();
        for _ in 0..3 {
            let held = held.clone();
            stuck.push(STUCK.run(move || {
                let _ = held.lock().unwrap().recv();
            }));
        }
        let answer = tokio::time::timeout(Duration::from_secs(5), FREE.run(|| 41 + 1)).await;
        assert_eq!(answer.unwrap().unwrap(), 42);
        assert_eq!(
            STUCK.lock().threads,
            2,
            "the stuck pool stays within its size"
        );
        for _ in 0..3 {
            release.send(()).unwrap();
        }
        for s in stuck {
            s.await.unwrap();
        }
    }

    #[tokio::test]
    async fn one_at_a_time_starts_nothing_while_the_last_work_runs() {
        let one = OneAtATime::default();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let first = one.run(move || held.recv().is_ok()).unwrap();
        assert!(one.run(|| ()).is_err(), "a second piece started");
        release.send(()).unwrap();
        assert!(first.await.unwrap());
        assert_eq!(one.run(|| 7).unwrap().await.unwrap(), 7);
        // A piece that panics lets the next one start.
        assert!(matches!(
            one.run(|| panic!("boom")).unwrap().await,
            Err(Lost::Panicked)
        ));
        assert_eq!(one.run(|| 8).unwrap().await.unwrap(), 8);
    }

    #[tokio::test]
    async fn a_panic_is_an_error_and_the_pool_goes_on() {
        static POOL: Pool = Pool::new("test-panic", 1);
        assert!(matches!(
            POOL.run(|| panic!("boom")).await,
            Err(Lost::Panicked)
        ));
        assert_eq!(POOL.run(|| 7).await.unwrap(), 7);
    }
}
