//! The one timer loop that fires every job.
//!
//! Fires are computed in wall-clock time (cron in each job's zone) and kept in a heap.
//! The loop sleeps on tokio's clock until the earliest one is due, or at most
//! [`CLOCK_CHECK`], so that a changed wall clock is noticed. No task sleeps per job, and
//! nothing polls on a fixed tick.
//!
//! - **Precision.** tokio's timer wheel has 1 ms ticks and rounds a sleep up, so a fire
//!   would start 0–2 ms late. On the system clock (Linux) the loop therefore wakes on an
//!   `Alarm` (a timerfd on the real-time clock, read through tokio's reactor), which
//!   rings within microseconds of the deadline; tokio's sleep then only bounds the wait.
//!   Fires less than `WAKE_QUANTUM_NS` apart share one wake, which bounds the wake-ups
//!   when thousands of jobs are spread over a second. All fires due at one instant are
//!   handed out in one pass, and an interval job's fire (the usual case) costs no
//!   allocation: the heap is keyed by integer nanoseconds.
//!
//! What a fire *does* is not decided here: the loop hands each fire, or each fire it
//! skips and why, to a [`Dispatch`]. The agent's dispatcher runs checks; tests and the
//! benchmark record what happened. Time comes from a [`Clock`], so tests pause tokio's
//! clock and move the wall clock by hand.
//!
//! - **Misfires.** Fires found overdue (the machine was busy, asleep, or the agent was
//!   down) follow the job's policy. With `coalesce` they run once, as the latest of them.
//!   A fire later than `misfire_grace` is skipped. Every skip is reported.
//! - **Sleep and clock changes.** Each wake compares how far the wall clock moved with
//!   how far tokio's (monotonic) clock did.
//!   - A forward jump (a sleeping laptop, a clock set ahead) holds overdue jobs until
//!     `wake_delay` has passed, so the network can come back first.
//!   - A backward jump moves `every` jobs back with the clock, so they keep their
//!     interval; cron and `at` fires are never dispatched twice.
//! - **Back online.** Jobs whose runs were not judged while the machine was offline
//!   (`agent.online`) come in on `resumes`: each runs again once `wake_delay` has
//!   passed (and any hold after a wake with it), as its last fire, instead of waiting
//!   for its next one.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use klaxon_checks::CheckSpec;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Job;
use crate::runtime::Clock;
use crate::schedule::Trigger;

/// The longest the loop sleeps without re-reading the wall clock.
pub const CLOCK_CHECK: Duration = Duration::from_secs(30);

/// A wall-clock move this much larger (or smaller) than the monotonic clock's is a jump.
const JUMP: Duration = Duration::from_secs(5);

/// Without `coalesce`, at most this many missed fires of one job are caught up at once;
/// the rest are skipped (a clock jump of days must not start a storm of runs).
pub const MAX_CATCH_UP: usize = 10;

/// The least time between two wakes when the loop times its waits on an [`Alarm`]:
/// fires due within it of each other are handed out in one wake, each at most this late.
/// It bounds the wake-ups of many spread fires (10,000 jobs a second: ≤ 2,000 wakes).
const WAKE_QUANTUM_NS: i64 = 500_000;

/// Missed fires counted one by one before the rest are skipped over in one step.
const MAX_COUNTED: usize = 1_000;

/// One fire handed to a [`Dispatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fire {
    /// When the schedule said the job fires.
    pub nominal: DateTime<Utc>,
    /// When it was due: `nominal` plus the job's jitter offset (or a heartbeat's grace).
    pub due: DateTime<Utc>,
    /// When the job is due next, if ever.
    pub next_run: Option<DateTime<Utc>>,
}

/// What the loop asks for. Implementations must not block: they spawn.
pub trait Dispatch: Send + Sync {
    /// Run `job` for this fire.
    fn run(&self, job: &Arc<Job>, fire: Fire);
    /// `job`'s fire at `nominal` will not run, for the reason given.
    fn skip(&self, job: &Arc<Job>, nominal: DateTime<Utc>, why: String);
    /// Run the active `job` now, out of its schedule, because a person asked
    /// ([`RunNow`]); `next_run` is its next fire. By default a fire at `now`; the
    /// agent's dispatch records it as no fire and starts nothing while a run of the job
    /// is going.
    fn run_now(&self, job: &Arc<Job>, now: DateTime<Utc>, next_run: Option<DateTime<Utc>>) -> Ran {
        let fire = Fire {
            nominal: now,
            due: now,
            next_run,
        };
        self.run(job, fire);
        Ran::Started
    }
}

/// A person asks for a job to run now, out of its schedule (the dashboard's "Run now"):
/// the loop hands it to its [`Dispatch`] beside the fires, and answers on `reply`.
#[derive(Debug)]
pub struct RunNow {
    pub job: String,
    pub reply: tokio::sync::oneshot::Sender<Ran>,
}

/// What came of a [`RunNow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// The run has started (it may wait for one of `agent.max_concurrent` permits).
    Started,
    /// A run of the job is still going: none was started.
    AlreadyRunning,
    /// The job is passive (a `heartbeat`): it runs when it is pinged.
    Passive,
    /// The schedule has no job of that name.
    NoSuchJob,
}

/// What is remembered of a job's schedule across restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Remembered {
    /// The nominal time of the last fire that was run or skipped.
    pub last_fire: Option<DateTime<Utc>>,
}

/// A new set of jobs to schedule (a config reload).
pub struct Reload {
    pub jobs: Vec<Arc<Job>>,
    pub dispatch: Arc<dyn Dispatch>,
    pub wake_delay: Duration,
}

/// How long after its nominal fire a job is handled: a passive job when its ping's
/// `grace` has run out; an active one after its jitter offset.
fn delay(job: &Job) -> Duration {
    match &job.check {
        CheckSpec::Heartbeat(h) => h.grace,
        _ => jitter_offset(job),
    }
}

/// A fixed offset in `[0, jitter)` for a job, the same on every start, so that jobs
/// sharing a schedule spread out while each keeps its phase across restarts.
pub fn jitter_offset(job: &Job) -> Duration {
    let Some(jitter) = job.jitter.filter(|j| !j.is_zero()) else {
        return Duration::ZERO;
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    job.name.hash(&mut h);
    let nanos = jitter.as_nanos().max(1) as u64;
    Duration::from_nanos(h.finish() % nanos)
}

fn add(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn sub(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn shift(t: DateTime<Utc>, d: chrono::Duration) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn human(d: chrono::Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.num_seconds().max(0) as u64)).to_string()
}

/// What decides a job's timing: a reload keeps a job's place in time when these are
/// unchanged, even if other keys (the check, the notifiers) changed.
fn timing_key(job: &Job) -> String {
    format!(
        "{}|{}|{:?}|{:?}|{}",
        job.trigger.describe(),
        job.timezone,
        job.jitter,
        delay(job),
        job.check.is_active()
    )
}

/// The first nominal fire of a job when the loop starts at `now`.
///
/// An interval job that never ran fires at once (a fresh agent shows results at once);
/// one that ran before keeps its phase. A heartbeat's first ping is expected one
/// interval after start. A cron job continues after its last fire, so a fire missed
/// while the agent was down is overdue now and follows the misfire policy.
fn first_fire(job: &Job, remembered: Remembered, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let last = remembered.last_fire;
    match &job.trigger {
        Trigger::Every(interval) => match last {
            // The clock was set back while the agent was down: start over from now.
            Some(last) if last > now => Some(add(now, *interval)),
            Some(last) => Some(add(last, *interval)),
            None if !job.check.is_active() => Some(add(now, *interval)),
            None => Some(now),
        },
        Trigger::Cron(c) => match last {
            Some(last) => c.next_after(last),
            None => c.next_after(now),
        },
        Trigger::At(at) => {
            let at = at.with_timezone(&chrono::Utc);
            match last {
                Some(last) if last >= at => None,
                _ => Some(at),
            }
        }
    }
}

/// The fires of a job that are due at `now`, oldest first, starting with `nominal`, and
/// the nominal time of the one after them.
fn due_fires(
    job: &Job,
    nominal: DateTime<Utc>,
    delay: Duration,
    now: DateTime<Utc>,
) -> (Vec<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let horizon = sub(now, delay);
    if let Trigger::Every(interval) = &job.trigger {
        // Arithmetic, not iteration: a week asleep with `every = "1s"` is one step.
        let step = interval.as_nanos().max(1);
        let behind = (horizon - nominal).to_std().unwrap_or_default().as_nanos();
        let count = (behind / step + 1).min(u128::from(u32::MAX)) as u32;
        let last = add(nominal, interval.saturating_mul(count.saturating_sub(1)));
        let first_counted = count.saturating_sub(MAX_COUNTED as u32);
        let fires = (first_counted..count)
            .map(|k| add(nominal, interval.saturating_mul(k)))
            .collect::<Vec<_>>();
        let fires = if fires.is_empty() {
            vec![nominal]
        } else {
            fires
        };
        return (fires, Some(add(last, *interval)));
    }
    let mut fires = vec![nominal];
    let mut next = job.trigger.next_after(nominal);
    while let Some(n) = next {
        if n > horizon {
            break;
        }
        if fires.len() == MAX_COUNTED {
            // Too many to count: skip over the rest to the next fire after now.
            fires.push(n);
            next = job.trigger.next_after(horizon);
            break;
        }
        fires.push(n);
        next = job.trigger.next_after(n);
    }
    (fires, next)
}

struct Slot {
    job: Arc<Job>,
    /// Next nominal fire.
    next: Option<DateTime<Utc>>,
    delay: Duration,
    /// The last nominal fire handed out: never hand out one at or before it again.
    last_fired: Option<DateTime<Utc>>,
    /// What the hot path adds per fire, converted once: the interval of an `every` job,
    /// and `delay`.
    every: Option<chrono::Duration>,
    delay_c: chrono::Duration,
}

impl Slot {
    fn new(job: Arc<Job>, next: Option<DateTime<Utc>>, last_fired: Option<DateTime<Utc>>) -> Self {
        let delay = delay(&job);
        let every = match &job.trigger {
            Trigger::Every(interval) => chrono::Duration::from_std(*interval).ok(),
            _ => None,
        };
        Self {
            job,
            next,
            delay,
            last_fired,
            every,
            delay_c: chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX),
        }
    }
}

/// Nanoseconds since the epoch: the heap's key. Beyond 2262 a fire sorts last.
fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

struct Timeline {
    slots: Vec<Slot>,
    /// (due in ns since the epoch, slot index): integer keys keep a burst of fires cheap.
    heap: BinaryHeap<Reverse<(i64, u32)>>,
}

impl Timeline {
    fn new(
        jobs: Vec<Arc<Job>>,
        remembered: &HashMap<String, Remembered>,
        now: DateTime<Utc>,
    ) -> Self {
        let slots = jobs
            .into_iter()
            .map(|job| {
                let r = remembered.get(&job.name).copied().unwrap_or_default();
                Slot::new(job.clone(), first_fire(&job, r, now), r.last_fire)
            })
            .collect();
        let mut timeline = Self {
            slots,
            heap: BinaryHeap::new(),
        };
        timeline.rebuild();
        timeline
    }

    fn rebuild(&mut self) {
        self.heap = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.next.map(|n| Reverse((nanos(add(n, s.delay)), i as u32))))
            .collect();
    }

    /// Replaces the jobs; those whose timing did not change keep their next fire.
    fn reload(&mut self, jobs: Vec<Arc<Job>>, now: DateTime<Utc>) {
        let mut old: HashMap<String, Slot> = self
            .slots
            .drain(..)
            .map(|s| (s.job.name.clone(), s))
            .collect();
        self.slots = jobs
            .into_iter()
            .map(|job| match old.remove(&job.name) {
                Some(slot) if timing_key(&slot.job) == timing_key(&job) => Slot { job, ..slot },
                Some(slot) => {
                    let remembered = Remembered {
                        last_fire: slot.last_fired,
                    };
                    Slot::new(
                        job.clone(),
                        first_fire(&job, remembered, now),
                        slot.last_fired,
                    )
                }
                None => Slot::new(
                    job.clone(),
                    first_fire(&job, Remembered::default(), now),
                    None,
                ),
            })
            .collect();
        self.rebuild();
    }

    /// The wall clock went back by `by`: interval jobs go back with it.
    fn clock_went_back(&mut self, by: chrono::Duration) {
        for slot in &mut self.slots {
            if let (Trigger::Every(_), Some(next)) = (&slot.job.trigger, slot.next) {
                slot.next = Some(next - by);
                slot.last_fired = slot.last_fired.map(|l| l - by);
            }
        }
        self.rebuild();
    }

    /// Runs each of `jobs` (by name) that is still scheduled and active now, as its last
    /// fire: the machine is back online and their runs were not judged.
    fn resume(&self, jobs: &[String], now: DateTime<Utc>, dispatch: &dyn Dispatch) {
        for slot in &self.slots {
            if !slot.job.check.is_active() || !jobs.contains(&slot.job.name) {
                continue;
            }
            let fire = Fire {
                nominal: slot.last_fired.unwrap_or(now),
                due: now,
                next_run: slot.next.map(|n| shift(n, slot.delay_c)),
            };
            tracing::info!(job = %slot.job.name, "back online: running again");
            dispatch.run(&slot.job, fire);
        }
    }

    /// Hands a run of the job named `name` to `dispatch` now, as [`RunNow`] asks.
    fn run_now(&self, name: &str, now: DateTime<Utc>, dispatch: &dyn Dispatch) -> Ran {
        let Some(slot) = self.slots.iter().find(|s| s.job.name == name) else {
            return Ran::NoSuchJob;
        };
        if !slot.job.check.is_active() {
            return Ran::Passive;
        }
        let next_run = slot.next.map(|n| shift(n, slot.delay_c));
        dispatch.run_now(&slot.job, now, next_run)
    }

    /// When the earliest fire is due, in ns since the epoch.
    fn next_due(&self) -> Option<i64> {
        self.heap.peek().map(|Reverse((due, _))| *due)
    }

    /// Hands every fire due at `now` to `dispatch`, by each job's misfire policy.
    fn fire_due(&mut self, now: DateTime<Utc>, dispatch: &dyn Dispatch) {
        let now_ns = nanos(now);
        while let Some(&Reverse((due, i))) = self.heap.peek() {
            if due > now_ns {
                break;
            }
            self.heap.pop();
            let slot = &mut self.slots[i as usize];
            let Some(nominal) = slot.next else { continue };
            // The usual case, kept free of allocation: an interval job whose next fire is
            // not due yet fires once.
            if let Some((next, next_due)) = slot.every.and_then(|step| {
                let next = nominal.checked_add_signed(step)?;
                Some((next, next.checked_add_signed(slot.delay_c)?))
            }) && next_due > now
            {
                slot.next = Some(next);
                slot.last_fired = Some(nominal);
                self.heap.push(Reverse((nanos(next_due), i)));
                apply_policy(
                    &slot.job,
                    &[nominal],
                    slot.delay_c,
                    now,
                    Some(next_due),
                    dispatch,
                );
                continue;
            }
            let (mut fires, next) = due_fires(&slot.job, nominal, slot.delay, now);
            // Never hand out a fire twice (after the clock went back, or across restarts).
            if let Some(last) = slot.last_fired
                && !matches!(slot.job.trigger, Trigger::Every(_))
            {
                fires.retain(|f| *f > last);
            }
            slot.next = next;
            let next_run = next.map(|n| shift(n, slot.delay_c));
            if let Some(next_run) = next_run {
                self.heap.push(Reverse((nanos(next_run), i)));
            }
            let Some(&latest) = fires.last() else {
                continue;
            };
            slot.last_fired = Some(latest);
            apply_policy(&slot.job, &fires, slot.delay_c, now, next_run, dispatch);
        }
    }
}

/// Runs or skips the due `fires` of one job by its `misfire_grace` and `coalesce`.
fn apply_policy(
    job: &Arc<Job>,
    fires: &[DateTime<Utc>],
    delay: chrono::Duration,
    now: DateTime<Utc>,
    next_run: Option<DateTime<Utc>>,
    dispatch: &dyn Dispatch,
) {
    let lateness = |f: DateTime<Utc>| now - shift(f, delay);
    let in_grace = |f: DateTime<Utc>| match job.misfire_grace {
        Some(grace) => lateness(f) <= chrono::Duration::from_std(grace).unwrap_or_default(),
        None => true,
    };
    let grace_text = || {
        job.misfire_grace
            .map(|g| humantime::format_duration(g).to_string())
            .unwrap_or_default()
    };
    let fire = |nominal| Fire {
        nominal,
        due: shift(nominal, delay),
        next_run,
    };
    if job.coalesce || fires.len() == 1 {
        let (&latest, earlier) = fires.split_last().unwrap_or((&now, &[]));
        if let Some(&first) = earlier.first() {
            dispatch.skip(
                job,
                first,
                format!(
                    "coalesced: {} missed fire(s) from {} ran once, as the fire of {}",
                    earlier.len(),
                    first.to_rfc3339(),
                    latest.to_rfc3339()
                ),
            );
        }
        if in_grace(latest) {
            dispatch.run(job, fire(latest));
        } else {
            dispatch.skip(
                job,
                latest,
                format!(
                    "missed by {} (misfire_grace {})",
                    human(lateness(latest)),
                    grace_text()
                ),
            );
        }
        return;
    }
    let (runnable, late): (Vec<_>, Vec<_>) = fires.iter().partition(|f| in_grace(**f));
    if let Some(&&first) = late.first() {
        dispatch.skip(
            job,
            first,
            format!(
                "{} missed fire(s) later than misfire_grace ({})",
                late.len(),
                grace_text()
            ),
        );
    }
    let skipped = runnable.len().saturating_sub(MAX_CATCH_UP);
    if let Some(&&first) = runnable.first().filter(|_| skipped > 0) {
        dispatch.skip(
            job,
            first,
            format!("{skipped} missed fire(s) not caught up: at most {MAX_CATCH_UP} run at once"),
        );
    }
    for &&f in &runnable[skipped..] {
        dispatch.run(job, fire(f));
    }
}

/// A one-shot OS timer on the real-time clock that rings through tokio's reactor. The
/// loop's worker, parked in `epoll_wait`, wakes within microseconds of the deadline,
/// where tokio's timer wheel rounds a sleep up to its next millisecond and lands 0–2 ms
/// late. Linux only (timerfd); elsewhere there is none, and tokio's timer alone is used.
#[cfg(target_os = "linux")]
mod alarm {
    use std::io;
    use std::os::fd::{AsFd, AsRawFd, RawFd};

    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    struct Fd(TimerFd);

    impl AsRawFd for Fd {
        fn as_raw_fd(&self) -> RawFd {
            self.0.as_fd().as_raw_fd()
        }
    }

    pub struct Alarm(AsyncFd<Fd>);

    impl Alarm {
        /// `None` when no timer can be made: the loop then times fires on tokio's alone.
        pub fn new() -> Option<Self> {
            let flags = TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC;
            // tokio deprecates its safe constructor because a foreign `AsRawFd` could hand
            // out a different descriptor over time (its replacement is `unsafe`, which this
            // crate forbids). `Fd` always returns the one its `TimerFd` owns for its life.
            #[allow(deprecated)]
            let made = TimerFd::new(ClockId::CLOCK_REALTIME, flags)
                .map_err(io::Error::from)
                .and_then(|fd| AsyncFd::with_interest(Fd(fd), Interest::READABLE));
            match made {
                Ok(fd) => Some(Self(fd)),
                Err(e) => {
                    tracing::debug!(%e, "no timerfd: fires are timed on tokio's 1 ms timer");
                    None
                }
            }
        }

        /// Rings when the wall clock reads `at` (ns since the epoch); false if not set.
        pub fn set(&self, at: i64) -> bool {
            // A zero deadline would disarm the timer.
            let at = at.max(1);
            let when = TimeSpec::new(
                at.div_euclid(1_000_000_000) as _,
                at.rem_euclid(1_000_000_000) as _,
            );
            let flags = TimerSetTimeFlags::TFD_TIMER_ABSTIME;
            self.0
                .get_ref()
                .0
                .set(Expiration::OneShot(when), flags)
                .is_ok()
        }

        pub fn unset(&self) {
            let _ = self.0.get_ref().0.unset();
        }

        /// Returns once it has rung.
        pub async fn rung(&self) {
            loop {
                let Ok(mut ready) = self.0.readable().await else {
                    return std::future::pending().await;
                };
                match ready.try_io(|fd| fd.get_ref().0.wait().map_err(io::Error::from)) {
                    Ok(Ok(())) => {
                        // Consumed: the next ring comes as a new edge.
                        ready.clear_ready();
                        return;
                    }
                    // A failed read: wait for the next edge (tokio's sleep is the fallback).
                    Ok(Err(_)) => ready.clear_ready(),
                    // Not rung yet (readiness was stale): cleared by `try_io`.
                    Err(_) => {}
                }
            }
        }
    }
}

#[cfg(target_os = "linux")]
use alarm::Alarm;

/// No OS alarm on this platform: the type has no values, so no code path uses one.
#[cfg(not(target_os = "linux"))]
enum Alarm {}

#[cfg(not(target_os = "linux"))]
impl Alarm {
    fn new() -> Option<Self> {
        None
    }
    fn set(&self, _at: i64) -> bool {
        match *self {}
    }
    fn unset(&self) {
        match *self {}
    }
    async fn rung(&self) {
        match *self {}
    }
}

/// Runs the loop until `shutdown`. `remembered` is what the store knows of each job's
/// last fire; `reloads` brings new job sets (SIGHUP, `--watch`); `resumes` the jobs to
/// run again now that the machine is back online; `asks` the runs people ask for (the
/// listener's "Run now"); `alive` is stamped on every turn (the listener's `/healthz`).
#[allow(clippy::too_many_arguments)]
pub async fn run_loop(
    jobs: Vec<Arc<Job>>,
    remembered: HashMap<String, Remembered>,
    clock: Arc<dyn Clock>,
    mut wake_delay: Duration,
    mut dispatch: Arc<dyn Dispatch>,
    shutdown: CancellationToken,
    mut reloads: mpsc::Receiver<Reload>,
    mut resumes: mpsc::UnboundedReceiver<Vec<String>>,
    mut asks: mpsc::Receiver<RunNow>,
    alive: Arc<crate::liveness::Liveness>,
) {
    let mut timeline = Timeline::new(jobs, &remembered, clock.now());
    tracing::info!(jobs = timeline.slots.len(), "scheduler started");
    let mut last_wall = clock.now();
    let mut last_mono = tokio::time::Instant::now();
    // After a forward jump, overdue jobs wait until this (monotonic) instant.
    let mut hold: Option<tokio::time::Instant> = None;
    // Jobs to run again once the network is back, and from when.
    let mut resume: Option<(tokio::time::Instant, Vec<String>)> = None;
    let alarm = clock.is_system().then(Alarm::new).flatten();
    // tokio's sleep: the loop's timer without an alarm, and the ceiling of its waits
    // (CLOCK_CHECK) with one. Reset, not made anew, on each turn.
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    loop {
        alive.beat(); // for the listener's /healthz
        let wall = clock.now();
        let mono = tokio::time::Instant::now();
        let moved = wall - last_wall;
        let expected = chrono::Duration::from_std(mono - last_mono).unwrap_or_default();
        let drift = moved - expected;
        let jump = chrono::Duration::from_std(JUMP).unwrap_or_default();
        if drift > jump {
            tracing::info!(
                jumped = %human(drift),
                wake_delay = %humantime::format_duration(wake_delay),
                "the wall clock jumped forward (sleep or clock change); overdue jobs wait for wake_delay"
            );
            hold = Some(mono + wake_delay);
        } else if drift < -jump {
            tracing::warn!(
                back = %human(-drift),
                "the wall clock went back; no fire runs twice"
            );
            timeline.clock_went_back(-drift);
        }
        last_wall = wall;
        last_mono = mono;

        let held = hold.is_some_and(|h| mono < h);
        if !held {
            hold = None;
            timeline.fire_due(wall, dispatch.as_ref());
            if let Some((_, jobs)) = resume.take_if(|(at, _)| mono >= *at) {
                timeline.resume(&jobs, wall, dispatch.as_ref());
            }
        }
        // With an alarm, wake at the next fire, but at most once per WAKE_QUANTUM: fires
        // closer together than that (10,000 jobs spread over a second) share a wake.
        let target = timeline.next_due().map(|due| match alarm {
            Some(_) => due.max(nanos(wall).saturating_add(WAKE_QUANTUM_NS)),
            None => due,
        });
        let until_due = target
            .map(|t| Duration::from_nanos(t.saturating_sub(nanos(clock.now())).max(0) as u64))
            .unwrap_or(CLOCK_CHECK);
        let wait = match hold {
            Some(h) => h.saturating_duration_since(mono),
            None => until_due,
        }
        .min(CLOCK_CHECK)
        .min(
            resume
                .as_ref()
                .map_or(CLOCK_CHECK, |(at, _)| at.saturating_duration_since(mono)),
        );
        let ring = match (&alarm, hold, target) {
            (Some(alarm), None, Some(t)) if until_due < CLOCK_CHECK && resume.is_none() => {
                alarm.set(t)
            }
            (Some(alarm), ..) => {
                alarm.unset();
                false
            }
            _ => false,
        };
        if !ring {
            sleep.as_mut().reset(tokio::time::Instant::now() + wait);
        } else if sleep.deadline() < mono + CLOCK_CHECK / 2 || sleep.is_elapsed() {
            // The alarm times the wake; tokio's sleep only bounds it (a wall clock set
            // back delays a real-time alarm). Moved on every 15 s, not on every wake.
            sleep.as_mut().reset(mono + CLOCK_CHECK);
        }
        let rung = async {
            match &alarm {
                Some(alarm) if ring => alarm.rung().await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = &mut sleep => {}
            () = rung => {}
            Some(jobs) = resumes.recv() => {
                let at = tokio::time::Instant::now() + wake_delay;
                match resume.as_mut() {
                    Some((_, pending)) => pending.extend(jobs),
                    None => resume = Some((at, jobs)),
                }
            }
            Some(ask) = asks.recv() => {
                let ran = timeline.run_now(&ask.job, clock.now(), dispatch.as_ref());
                tracing::info!(job = %ask.job, ?ran, "a run was asked for");
                // The asker may have gone (a client that hung up): nothing to tell.
                let _ = ask.reply.send(ran);
            }
            reload = reloads.recv() => {
                if let Some(reload) = reload {
                    timeline.reload(reload.jobs, clock.now());
                    dispatch = reload.dispatch;
                    wake_delay = reload.wake_delay;
                    tracing::info!(jobs = timeline.slots.len(), "schedule reloaded");
                }
            }
        }
    }
    tracing::info!("scheduler stopped");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Mutex;

    use super::*;
    use crate::config::tests_support::load_text;

    /// A wall clock that runs with tokio's (paused) clock and can be jumped by hand.
    #[derive(Debug)]
    struct TestClock {
        start_wall: DateTime<Utc>,
        start_mono: tokio::time::Instant,
        offset: Mutex<chrono::Duration>,
    }

    impl TestClock {
        fn new(start: DateTime<Utc>) -> Arc<Self> {
            Arc::new(Self {
                start_wall: start,
                start_mono: tokio::time::Instant::now(),
                offset: Mutex::new(chrono::Duration::zero()),
            })
        }

        fn jump(&self, by: chrono::Duration) {
            *self.offset.lock().unwrap() += by;
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> DateTime<Utc> {
            let mono = tokio::time::Instant::now() - self.start_mono;
            self.start_wall
                + chrono::Duration::from_std(mono).unwrap()
                + *self.offset.lock().unwrap()
        }
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Event {
        Run {
            job: String,
            nominal: DateTime<Utc>,
            at: DateTime<Utc>,
        },
        Skip {
            job: String,
            nominal: DateTime<Utc>,
            why: String,
        },
    }

    struct Recorder {
        clock: Arc<TestClock>,
        events: Mutex<Vec<Event>>,
    }

    impl Dispatch for Recorder {
        fn run(&self, job: &Arc<Job>, fire: Fire) {
            self.events.lock().unwrap().push(Event::Run {
                job: job.name.clone(),
                nominal: fire.nominal,
                at: self.clock.now(),
            });
        }
        fn skip(&self, job: &Arc<Job>, nominal: DateTime<Utc>, why: String) {
            self.events.lock().unwrap().push(Event::Skip {
                job: job.name.clone(),
                nominal,
                why,
            });
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn jobs(toml: &str) -> Vec<Arc<Job>> {
        load_text(toml)
            .unwrap()
            .jobs
            .into_iter()
            .map(Arc::new)
            .collect()
    }

    fn tcp_job(name: &str, timing: &str) -> String {
        format!(
            "[jobs.{name}]\n{timing}\n[jobs.{name}.check]\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = 9\n"
        )
    }

    struct Harness {
        clock: Arc<TestClock>,
        recorder: Arc<Recorder>,
        shutdown: CancellationToken,
        reload: mpsc::Sender<Reload>,
        resume: mpsc::UnboundedSender<Vec<String>>,
        ask: mpsc::Sender<RunNow>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Harness {
        async fn start(toml: &str, start: &str, remembered: HashMap<String, Remembered>) -> Self {
            let clock = TestClock::new(t(start));
            let recorder = Arc::new(Recorder {
                clock: clock.clone(),
                events: Mutex::default(),
            });
            let shutdown = CancellationToken::new();
            let (reload, reloads) = mpsc::channel(1);
            let (resume, resumes) = mpsc::unbounded_channel();
            let (ask, asks) = mpsc::channel(1);
            let task = tokio::spawn(run_loop(
                jobs(toml),
                remembered,
                clock.clone(),
                Duration::from_secs(15),
                recorder.clone(),
                shutdown.clone(),
                reloads,
                resumes,
                asks,
                Default::default(),
            ));
            // Let the loop start before the test moves time.
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            Self {
                clock,
                recorder,
                shutdown,
                reload,
                resume,
                ask,
                task,
            }
        }

        fn events(&self) -> Vec<Event> {
            std::mem::take(&mut *self.recorder.events.lock().unwrap())
        }

        fn runs(&self) -> Vec<(String, DateTime<Utc>, DateTime<Utc>)> {
            self.events()
                .into_iter()
                .filter_map(|e| match e {
                    Event::Run { job, nominal, at } => Some((job, nominal, at)),
                    Event::Skip { .. } => None,
                })
                .collect()
        }

        async fn stop(self) {
            self.shutdown.cancel();
            self.task.await.unwrap();
        }
    }

    async fn advance(d: Duration) {
        // Step in small increments so the loop sees each instant it sleeps to.
        let step = Duration::from_millis(100);
        let mut left = d;
        while !left.is_zero() {
            let s = left.min(step);
            tokio::time::advance(s).await;
            tokio::task::yield_now().await;
            left -= s;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_fires_on_time_and_keeps_its_phase() {
        let h = Harness::start(
            &tcp_job("a", "every = \"10s\""),
            "2026-05-01T10:00:00Z",
            HashMap::new(),
        )
        .await;
        advance(Duration::from_secs(35)).await;
        let runs = h.runs();
        let nominal: Vec<_> = runs.iter().map(|r| r.1).collect();
        assert_eq!(
            nominal,
            ["10:00:00", "10:00:10", "10:00:20", "10:00:30"]
                .map(|s| t(&format!("2026-05-01T{s}Z")))
        );
        for (_, nominal, at) in runs {
            assert!(
                at - nominal < chrono::Duration::milliseconds(200),
                "late: {nominal} at {at}"
            );
        }
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_delays_every_fire_by_the_same_offset() {
        let toml = tcp_job("a", "every = \"10s\"\njitter = \"5s\"");
        let offset = jitter_offset(&jobs(&toml)[0]);
        let h = Harness::start(&toml, "2026-05-01T10:00:00Z", HashMap::new()).await;
        advance(Duration::from_secs(26)).await;
        for (_, nominal, at) in h.runs() {
            let late = (at - nominal).to_std().unwrap();
            assert!(
                late >= offset && late < offset + Duration::from_millis(200),
                "{late:?} vs {offset:?}"
            );
        }
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_two_hour_sleep_each_overdue_job_runs_once_after_wake_delay() {
        let toml = format!(
            "{}{}{}",
            tcp_job("minutely", "schedule = \"* * * * *\""),
            tcp_job("every", "every = \"30s\""),
            tcp_job("strict", "every = \"1m\"\nmisfire_grace = \"10s\"")
        );
        let h = Harness::start(&toml, "2026-05-01T10:00:30Z", HashMap::new()).await;
        advance(Duration::from_secs(1)).await;
        h.events();
        // The machine sleeps: tokio's clock stands still, the wall clock moves 2 h.
        h.clock.jump(chrono::Duration::hours(2));
        // The loop notices at its next wake (here when `every` is next due, 29 s on;
        // never more than 30 s), then holds overdue jobs for wake_delay (15 s).
        advance(Duration::from_secs(43)).await;
        assert_eq!(h.runs(), [], "ran before wake_delay");
        advance(Duration::from_secs(2)).await;
        let events = h.events();
        let runs: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::Run { job, .. } => Some(job.as_str()),
                _ => None,
            })
            .collect();
        let mut sorted = runs.clone();
        sorted.sort();
        assert_eq!(sorted, ["every", "minutely"], "{events:#?}");
        // The missed fires were coalesced, and `strict` was too late for its grace.
        assert!(events.iter().any(|e| matches!(e, Event::Skip { job, why, .. } if job == "minutely" && why.starts_with("coalesced: 120 missed fire(s)"))), "{events:#?}");
        assert!(events.iter().any(|e| matches!(e, Event::Skip { job, why, .. } if job == "strict" && why == "missed by 45s (misfire_grace 10s)")), "{events:#?}");
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn jobs_not_judged_while_offline_run_again_after_wake_delay_as_their_last_fire() {
        let toml = format!(
            "{}{}",
            tcp_job("api", "every = \"1h\""),
            tcp_job("other", "every = \"1h\"")
        );
        let h = Harness::start(&toml, "2026-05-01T10:00:00Z", HashMap::new()).await;
        advance(Duration::from_secs(1)).await;
        assert_eq!(h.runs().len(), 2, "both ran at start");
        advance(Duration::from_secs(60)).await;
        // Back online: `api` had a run that was not judged.
        h.resume.send(vec!["api".into()]).unwrap();
        advance(Duration::from_secs(14)).await;
        assert_eq!(h.runs(), [], "ran before wake_delay");
        advance(Duration::from_secs(2)).await;
        let runs = h.runs();
        let names: Vec<_> = runs.iter().map(|(job, ..)| job.as_str()).collect();
        assert_eq!(names, ["api"], "{runs:?}");
        // As its last fire: the schedule keeps its phase.
        assert_eq!(runs[0].1, t("2026-05-01T10:00:00Z"));
        advance(Duration::from_secs(3_600)).await;
        let nominals: Vec<_> = h.runs().into_iter().map(|(_, n, _)| n).collect();
        assert_eq!(nominals, [t("2026-05-01T11:00:00Z"); 2]);
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_asked_for_is_handed_out_at_once_and_the_schedule_keeps_its_phase() {
        let beat = "[jobs.beat]\nevery = \"1h\"\n[jobs.beat.check]\ntype = \"heartbeat\"\ngrace = \"1m\"\n";
        let toml = format!("{}{beat}", tcp_job("api", "every = \"1h\""));
        let h = Harness::start(&toml, "2026-05-01T10:00:00Z", HashMap::new()).await;
        advance(Duration::from_secs(1)).await;
        assert_eq!(h.runs().len(), 1, "api ran at start");
        advance(Duration::from_secs(600)).await;
        let ask = |job: &str| {
            let (reply, ran) = tokio::sync::oneshot::channel();
            let sent = h.ask.try_send(RunNow {
                job: job.into(),
                reply,
            });
            assert!(sent.is_ok());
            ran
        };
        assert_eq!(ask("api").await.unwrap(), Ran::Started);
        let runs = h.runs();
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!((runs[0].0.as_str(), runs[0].1), ("api", h.clock.now()));
        assert_eq!(ask("beat").await.unwrap(), Ran::Passive);
        assert_eq!(ask("nope").await.unwrap(), Ran::NoSuchJob);
        assert_eq!(h.runs(), []);
        // The next fire is where it was.
        advance(Duration::from_secs(3_000)).await;
        let nominals: Vec<_> = h.runs().into_iter().map(|(_, n, _)| n).collect();
        assert_eq!(nominals, [t("2026-05-01T11:00:00Z")]);
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_clock_set_back_never_runs_a_fire_twice() {
        let toml = format!(
            "{}{}",
            tcp_job("cron", "schedule = \"* * * * *\""),
            tcp_job("every", "every = \"20s\"")
        );
        let h = Harness::start(&toml, "2026-05-01T10:00:30Z", HashMap::new()).await;
        advance(Duration::from_secs(40)).await; // cron fires 10:01, every at :30, :50, 01:10
        let before = h.runs();
        assert!(
            before
                .iter()
                .any(|r| r.0 == "cron" && r.1 == t("2026-05-01T10:01:00Z"))
        );
        h.clock.jump(-chrono::Duration::minutes(30));
        advance(Duration::from_secs(60)).await;
        let after = h.runs();
        assert!(
            after.iter().all(|r| r.0 != "cron"),
            "cron re-ran after the clock went back: {after:?}"
        );
        // The interval job kept running every 20 s of real time.
        assert_eq!(
            after.iter().filter(|r| r.0 == "every").count(),
            3,
            "{after:?}"
        );
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn without_coalesce_missed_fires_are_caught_up_but_bounded() {
        let toml = tcp_job("a", "every = \"1m\"\ncoalesce = false");
        let h = Harness::start(&toml, "2026-05-01T10:00:00Z", HashMap::new()).await;
        advance(Duration::from_secs(1)).await;
        h.events();
        h.clock.jump(chrono::Duration::days(3));
        advance(Duration::from_secs(46)).await;
        let events = h.events();
        let runs = events
            .iter()
            .filter(|e| matches!(e, Event::Run { .. }))
            .count();
        assert_eq!(runs, MAX_CATCH_UP, "{events:#?}");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Skip { why, .. } if why.contains("not caught up")))
        );
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_continues_after_the_last_fire() {
        let toml = format!(
            "{}{}{}",
            tcp_job("every", "every = \"1h\""),
            tcp_job("cron", "schedule = \"0 * * * *\""),
            tcp_job("once", "at = \"2026-05-01T09:00:00Z\"")
        );
        let remembered = HashMap::from([
            (
                "every".to_owned(),
                Remembered {
                    last_fire: Some(t("2026-05-01T09:40:00Z")),
                },
            ),
            (
                "cron".to_owned(),
                Remembered {
                    last_fire: Some(t("2026-05-01T09:00:00Z")),
                },
            ),
            (
                "once".to_owned(),
                Remembered {
                    last_fire: Some(t("2026-05-01T09:00:00Z")),
                },
            ),
        ]);
        // Down from 09:40 to 10:20: the 10:00 cron fire was missed and runs once now;
        // the interval job keeps its phase (10:40); the one-shot already ran.
        let h = Harness::start(&toml, "2026-05-01T10:20:00Z", remembered).await;
        advance(Duration::from_secs(1)).await;
        let runs = h.runs();
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(
            (runs[0].0.as_str(), runs[0].1),
            ("cron", t("2026-05-01T10:00:00Z"))
        );
        advance(Duration::from_secs(20 * 60)).await;
        let runs = h.runs();
        assert_eq!(
            runs.iter().map(|r| (r.0.as_str(), r.1)).collect::<Vec<_>>(),
            [("every", t("2026-05-01T10:40:00Z"))]
        );
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_keeps_unchanged_jobs_in_phase_and_adds_new_ones() {
        let h = Harness::start(
            &tcp_job("a", "every = \"10s\""),
            "2026-05-01T10:00:00Z",
            HashMap::new(),
        )
        .await;
        advance(Duration::from_secs(5)).await;
        h.events();
        let new = format!(
            "{}{}",
            tcp_job("a", "every = \"10s\""),
            tcp_job("b", "every = \"1h\"")
        );
        h.reload
            .send(Reload {
                jobs: jobs(&new),
                dispatch: h.recorder.clone(),
                wake_delay: Duration::from_secs(15),
            })
            .await
            .ok()
            .unwrap();
        advance(Duration::from_secs(6)).await;
        let runs: Vec<_> = h.runs().into_iter().map(|r| (r.0, r.1)).collect();
        assert_eq!(runs.len(), 2, "{runs:?}");
        // The new job starts when the reload arrives; the unchanged one keeps its phase.
        assert_eq!(runs[0].0, "b");
        assert!(runs[0].1 - t("2026-05-01T10:00:05Z") < chrono::Duration::milliseconds(200));
        assert_eq!(runs[1], ("a".to_owned(), t("2026-05-01T10:00:10Z")));
        h.stop().await;
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_alarm_rings_at_its_deadline_and_not_before() {
        let alarm = Alarm::new().unwrap();
        for ms in [1, 5, 20] {
            let at = nanos(Utc::now()) + ms * 1_000_000;
            assert!(alarm.set(at));
            tokio::time::timeout(Duration::from_secs(5), alarm.rung())
                .await
                .unwrap();
            assert!(nanos(Utc::now()) >= at, "rang before its deadline");
        }
        // Unset, it stays silent.
        assert!(alarm.set(nanos(Utc::now()) + 10_000_000));
        alarm.unset();
        let rang = tokio::time::timeout(Duration::from_millis(100), alarm.rung()).await;
        assert!(rang.is_err(), "an unset alarm rang");
    }

    /// On the system clock (the alarm's path), fires start at or after they are due.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_the_system_clock_no_fire_is_handed_out_early() {
        struct Starts(Mutex<Vec<(DateTime<Utc>, DateTime<Utc>)>>);
        impl Dispatch for Starts {
            fn run(&self, _job: &Arc<Job>, fire: Fire) {
                self.0.lock().unwrap().push((fire.due, Utc::now()));
            }
            fn skip(&self, _job: &Arc<Job>, _nominal: DateTime<Utc>, why: String) {
                panic!("skipped: {why}");
            }
        }
        let toml = format!(
            "{}{}",
            tcp_job("a", "every = \"200ms\""),
            tcp_job("b", "every = \"300ms\"\njitter = \"100ms\"")
        );
        let starts = Arc::new(Starts(Mutex::default()));
        let shutdown = CancellationToken::new();
        let (_reload, reloads) = mpsc::channel(1);
        let task = tokio::spawn(run_loop(
            jobs(&toml),
            HashMap::new(),
            Arc::new(crate::runtime::SystemClock),
            Duration::from_secs(15),
            starts.clone(),
            shutdown.clone(),
            reloads,
            mpsc::unbounded_channel().1,
            mpsc::channel(1).1,
            Default::default(),
        ));
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        shutdown.cancel();
        task.await.unwrap();
        let starts = starts.0.lock().unwrap();
        assert!(starts.len() >= 8, "{starts:?}");
        for (due, at) in starts.iter() {
            assert!(at >= due, "handed out before it was due: {due} at {at}");
        }
    }

    #[test]
    fn due_fires_counts_every_intervals_arithmetically() {
        let job = &jobs(&tcp_job("a", "every = \"1s\""))[0];
        let start = t("2026-05-01T10:00:00Z");
        let (fires, next) = due_fires(
            job,
            start,
            Duration::ZERO,
            start + chrono::Duration::days(7),
        );
        assert_eq!(fires.len(), MAX_COUNTED);
        assert_eq!(*fires.last().unwrap(), start + chrono::Duration::days(7));
        assert_eq!(
            next,
            Some(start + chrono::Duration::days(7) + chrono::Duration::seconds(1))
        );
    }
}
