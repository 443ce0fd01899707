#![allow(clippy::unwrap_used)]
use super::commit::CHECKPOINT_EVERY;
use super::migrations::MIGRATIONS;
use super::*;
use crate::alert::{OpenAlert, SeverityName};
use klaxon_notifiers::{Alert, CheckInfo, Event, Severity};
use std::collections::HashSet;

pub(super) fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_790_000_000 + s, 0).unwrap()
}

pub(super) fn alert(event: Event) -> Alert {
    Alert {
        version: 1,
        event,
        job: "api".into(),
        agent: "box".into(),
        severity: Severity::Critical,
        check: CheckInfo {
            kind: "http".into(),
            target: "http://x/".into(),
        },
        summary: "HTTP 500".into(),
        output: None,
        attempts: 3,
        max_attempts: 3,
        elapsed_ms: 1200,
        started_at: t(0).fixed_offset(),
        failing_since: Some(t(0).fixed_offset()),
        last_success: None,
        next_run: None,
        downtime_ms: None,
        id: "api-1".into(),
        acknowledged: None,
    }
}

pub(super) fn run(job: &str, at: i64, severity: &str) -> RunRecord {
    RunRecord {
        job: job.into(),
        started_at: t(at),
        finished_at: t(at + 1),
        severity: severity.into(),
        attempts: 3,
        elapsed: Duration::from_millis(1000),
        summary: "HTTP 500".into(),
        output: Some("body".into()),
        skipped: None,
        metrics: vec![klaxon_checks::Metric::new("latency_ms", 12.5).with_unit("ms")],
        fire_at: Some(t(at)),
        silenced: None,
    }
}

/// A store in a temp dir whose stored state of `job` cannot be read: a run of it
/// fails to be written.
fn with_unreadable_state(job: &str) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .conn()
        .execute(
            "INSERT INTO job_state (job, state) VALUES (?1, 'not json')",
            [job],
        )
        .unwrap();
    (dir, store)
}

/// Runs recorded at the same moment share transactions, yet each caller gets its
/// own outcome, and a run whose state change fails is left out alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_recorded_together_are_committed_together_and_apart() {
    // job7's stored state cannot be read: its write fails, alone.
    let (dir, store) = with_unreadable_state("job7");
    let mut tasks = Vec::new();
    for i in 0..60 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let job = format!("job{i}");
            let mut a = alert(Event::Failure);
            a.job = format!("job{i}");
            a.id = format!("job{i}-1");
            let change = Change::Decided {
                state: Box::new(JobState {
                    consecutive_failures: 1,
                    ..JobState::default()
                }),
                messages: vec![NewMessage {
                    notifier: "hook".into(),
                    alert: a,
                }],
            };
            (i, store.record(run(&job, i, "critical"), change).await)
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        let (i, result) = task.await.unwrap();
        if i == 7 {
            assert!(matches!(result, Err(StoreError::Corrupt(_))), "{result:?}");
            continue;
        }
        let items = result.unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].alert.job, format!("job{i}"));
        assert!(ids.insert(items[0].id), "outbox ids are distinct");
    }
    // Everything but job7 is durable: a second connection sees it.
    let reopened = Store::open(dir.path()).unwrap();
    assert_eq!(reopened.pending().unwrap().len(), 59);
    assert!(reopened.history("job7", 10).unwrap().is_empty());
    assert_eq!(reopened.history("job8", 10).unwrap().len(), 1);
    assert!(reopened.job_state("job7").is_err(), "left as it was");
    assert_eq!(reopened.job_state("job8").unwrap().consecutive_failures, 1);

    // Delivery outcomes go through the same queue.
    let due = store.due(t(100)).unwrap();
    let marks = due
        .iter()
        .map(|item| match item.alert.job.as_str() {
            "job8" => Mark::Failed {
                id: item.id,
                error: "HTTP 503".into(),
                next_attempt_at: t(200),
            },
            "job9" => Mark::GaveUp {
                id: item.id,
                error: "HTTP 400".into(),
                at: t(100),
            },
            _ => Mark::delivered(item.id, t(100)),
        })
        .collect();
    store.mark_queued(marks).await.unwrap();
    let left = reopened.pending().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].alert.job, "job8");
    assert_eq!(left[0].attempts, 1);
    assert_eq!(reopened.next_retry(t(100)).unwrap(), Some(t(200)));
    assert_eq!(reopened.undelivered().unwrap()["job9"], (0, 1));
}

#[tokio::test]
async fn committed_messages_are_handed_over_once_and_a_read_takes_them_instead() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let record = |job: &'static str, at: i64| record_one(&store, job, at, Event::Failure);
    // Nobody asked: nothing is kept.
    record("a", 1).await;
    assert!(store.take_fresh().is_empty());

    store.hand_over();
    let b = record("b", 2).await;
    let c = record("c", 3).await;
    let fresh = store.take_fresh();
    let items: Vec<_> = fresh.iter().map(|f| f.item.clone()).collect();
    assert_eq!(items, [b[0].clone(), c[0].clone()]);
    assert!(
        fresh.iter().all(|f| f.claimed),
        "nothing older of their jobs"
    );
    assert!(store.take_fresh().is_empty(), "handed over once");

    // A read of the outbox answers for what was committed before it: it is not
    // handed over again.
    let d = record("d", 4).await;
    let due = store.due_except(t(100), &[b[0].id].into()).unwrap();
    let jobs: Vec<_> = due.items.iter().map(|i| i.alert.job.as_str()).collect();
    assert_eq!(jobs, ["a", "c", "d"]);
    assert_eq!(due.items[2], d[0]);
    assert!(store.take_fresh().is_empty());

    // A fallback copy is handed over too.
    let copy = store
        .enqueue_fallback(&d[0], "mail", t(5))
        .unwrap()
        .unwrap();
    assert_eq!(
        store.take_fresh(),
        [Fresh {
            item: copy,
            claimed: false,
            durable: None,
        }]
    );
}

/// A message the delivery loop takes before its transaction (of one run) commits waits
/// for it: the commit releases it, a rollback never does. A group commit of several
/// runs hands its messages over after it, together.
#[tokio::test]
async fn messages_handed_over_before_their_commit_go_only_once_it_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // A run of `bad` fails after its message is inserted: its transaction rolls back.
    store
        .conn()
        .execute_batch(
            "CREATE TRIGGER refuse_bad BEFORE INSERT ON runs WHEN NEW.job = 'bad'
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
    store.hand_over();
    let write = |job: &str, at: i64| {
        let change = one_message(job, Event::Failure);
        commit::Write::Run(Box::new((run(job, at, "critical"), change)))
    };
    let results = store.commit_writes(vec![write("bad", 1)]);
    assert!(results[0].is_err());
    let fresh = store.take_fresh();
    assert_eq!(fresh.len(), 1, "handed over as it was inserted");
    assert_eq!(fresh[0].item.alert.job, "bad");
    let early = fresh[0].durable.clone().unwrap();
    assert!(!early.wait().await, "a rolled-back row is never released");
    assert!(store.pending().unwrap().is_empty());

    // A transaction that commits releases what it handed over, once durable.
    store.commit_writes(vec![write("a", 2)]);
    let fresh = store.take_fresh();
    assert_eq!(fresh.len(), 1);
    assert!(fresh[0].claimed);
    assert!(fresh[0].durable.clone().unwrap().wait().await);
    let other = Store::open(dir.path()).unwrap();
    let jobs = |store: &Store| -> Vec<String> {
        let pending = store.pending().unwrap();
        pending.into_iter().map(|i| i.alert.job).collect()
    };
    assert_eq!(jobs(&other), ["a"]);

    // Several runs in one transaction: their messages come after the commit, together.
    store.commit_writes(vec![write("b", 3), write("c", 4)]);
    let fresh = store.take_fresh();
    let seen: Vec<(&str, bool)> = fresh
        .iter()
        .map(|f| (f.item.alert.job.as_str(), f.durable.is_none()))
        .collect();
    assert_eq!(seen, [("b", true), ("c", true)]);
    assert_eq!(jobs(&other), ["a", "b", "c"]);
    // A one-shot process hands nothing over, early or late.
    other.commit_writes(vec![write("d", 5)]);
    assert!(other.take_fresh().is_empty());
}

/// A run's change that leaves `job` in its default state with one message of `event`
/// to `hook`.
fn one_message(job: &str, event: Event) -> Change {
    let mut a = alert(event);
    a.job = job.into();
    Change::Decided {
        state: Box::new(JobState::default()),
        messages: vec![NewMessage {
            notifier: "hook".into(),
            alert: a,
        }],
    }
}

/// Records a run of `job` that makes one message of `event` to `hook`.
async fn record_one(store: &Store, job: &str, at: i64, event: Event) -> Vec<OutboxItem> {
    let change = one_message(job, event);
    store
        .record(run(job, at, "critical"), change)
        .await
        .unwrap()
}

/// The delivery loop's own messages are claimed by the transaction that inserts
/// them, unless an older message of their job and notifier is undelivered (from
/// this process or another): those are claimed when taken, after it. A store
/// without a delivery loop claims nothing at insert.
#[tokio::test]
async fn the_delivery_loops_messages_are_claimed_as_they_are_inserted() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Store::open(dir.path()).unwrap();
    let other = Store::open(dir.path()).unwrap();
    // A one-shot process: nothing claimed until it reads to send.
    let once = record_one(&other, "a", 1, Event::Failure).await;
    assert_eq!(agent.due(t(2)).unwrap(), once);
    agent.release_claims().unwrap();

    agent.hand_over();
    assert!(agent.take_fresh().is_empty());
    let b = record_one(&agent, "b", 3, Event::Failure).await;
    let b2 = record_one(&agent, "b", 4, Event::Recovery).await;
    let a = record_one(&agent, "a", 5, Event::Recovery).await;
    let fresh = agent.take_fresh();
    let claimed: Vec<_> = fresh.iter().map(|f| (f.item.id, f.claimed)).collect();
    assert_eq!(
        claimed,
        [(b[0].id, true), (b2[0].id, false), (a[0].id, false)],
        "b's recovery and a's are behind older messages"
    );
    // The other process sees b's failure claimed, so neither it nor b's recovery
    // is due there; a's messages are, in order.
    let due = other.due_except(t(6), &HashSet::new()).unwrap();
    let ids: Vec<_> = due.items.iter().map(|i| i.id).collect();
    assert_eq!(ids, [once[0].id, a[0].id]);
    assert!(due.blocked.contains(&("hook".to_owned(), "b".to_owned())));
    // The claim lapses like one taken by a read, counted from the run's end.
    let lapses = t(4) + chrono::Duration::from_std(CLAIM_LEASE).unwrap();
    assert_eq!(other.next_retry(t(6)).unwrap(), Some(lapses));
    // Given up on purpose (the agent stops), they are the other's at once.
    agent.release_claims().unwrap();
    let ids: Vec<_> = other.due(t(7)).unwrap().iter().map(|i| i.id).collect();
    assert_eq!(ids, [once[0].id, b[0].id, b2[0].id, a[0].id]);
}

/// SQLite's own checkpoints are off (they would `fsync` in the committing thread);
/// every CHECKPOINT_EVERY commits one runs from a connection of its own.
#[test]
fn the_wal_is_checkpointed_off_the_write_path_every_hundred_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let db = dir.path().join("klaxon.db");
    let size = || std::fs::metadata(&db).unwrap().len();
    let start = size();
    let record = |i: u32| {
        store
            .record_run(&run(&format!("job{i}"), i64::from(i), "ok"), |b| {
                (b.clone(), Vec::new())
            })
            .unwrap();
    };
    for i in 0..CHECKPOINT_EVERY - 1 {
        record(i);
    }
    assert_eq!(size(), start, "nothing is copied into the database yet");
    record(CHECKPOINT_EVERY);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while size() == start {
        assert!(std::time::Instant::now() < deadline, "no checkpoint");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Everything is still there, and writes go on.
    record(CHECKPOINT_EVERY + 1);
    assert_eq!(store.history("job5", 10).unwrap().len(), 1);
}

#[test]
fn a_run_its_state_and_its_messages_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let state = JobState {
        severity: Some(SeverityName::Critical),
        consecutive_failures: 1,
        open: Some(OpenAlert {
            id: "api-1".into(),
            severity: SeverityName::Critical,
            opened_at: t(1),
            failing_since: t(0),
            last_sent: t(1),
            held: false,
            told: Some(vec!["slack".into()]),
            unsent: false,
            acked: None,
        }),
        ..JobState::default()
    };
    {
        let store = Store::open(dir.path()).unwrap();
        let items = store
            .record_run(&run("api", 0, "critical"), |before| {
                assert_eq!(before, &JobState::default());
                (
                    state.clone(),
                    vec![NewMessage {
                        notifier: "slack".into(),
                        alert: alert(Event::Failure),
                    }],
                )
            })
            .unwrap();
        assert_eq!(items.len(), 1);
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.job_state("api").unwrap(), state);
    assert_eq!(store.job_state("other").unwrap(), JobState::default());
    let pending = store.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].alert, alert(Event::Failure));
    store.mark(&[Mark::delivered(pending[0].id, t(2))]).unwrap();
    assert!(store.pending().unwrap().is_empty());
    assert_eq!(
        store.history("api", 10).unwrap(),
        [run("api", 0, "critical")]
    );
}

#[test]
fn history_is_newest_first_and_limited() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..5 {
        store
            .record_run(&run("api", i * 10, "ok"), |_| (JobState::default(), vec![]))
            .unwrap();
    }
    assert_eq!(
        store.last_fires(["api", "other"]).unwrap(),
        HashMap::from([("api".to_owned(), t(40))])
    );
    let h = store.history("api", 2).unwrap();
    assert_eq!(
        h.iter().map(|r| r.started_at).collect::<Vec<_>>(),
        [t(40), t(30)]
    );
}

#[test]
fn failed_deliveries_stay_pending_with_their_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let items = store
        .record_run(&run("api", 0, "critical"), |_| {
            let message = NewMessage {
                notifier: "slack".into(),
                alert: alert(Event::Failure),
            };
            (JobState::default(), vec![message])
        })
        .unwrap();
    store
        .mark(&[Mark::Failed {
            id: items[0].id,
            error: "HTTP 500".into(),
            next_attempt_at: t(60),
        }])
        .unwrap();
    let pending = store.pending().unwrap();
    assert_eq!(pending[0].attempts, 1);
    assert!(store.due(t(59)).unwrap().is_empty());
    assert_eq!(store.due(t(60)).unwrap().len(), 1);
    let copy = store
        .enqueue_fallback(&pending[0], "oncall", t(70))
        .unwrap()
        .unwrap();
    assert_eq!(
        (copy.notifier.as_str(), copy.alert.id.as_str()),
        ("oncall", "api-1")
    );
    assert!(
        store
            .enqueue_fallback(&pending[0], "oncall", t(71))
            .unwrap()
            .is_none()
    );
    store
        .mark(&[Mark::GaveUp {
            id: items[0].id,
            error: "HTTP 400".into(),
            at: t(61),
        }])
        .unwrap();
    let left = store.pending().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].notifier, "oncall");
    assert!(left[0].fallback_sent);
}

#[test]
fn a_database_from_schema_1_is_brought_forward_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = Connection::open(dir.path().join("klaxon.db")).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO runs (job, started_at, finished_at, severity, attempts, elapsed_ms, summary)
             VALUES ('api', 1790000000000, 1790000001000, 'critical', 3, 1000, 'HTTP 500')",
            [],
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let history = store.history("api", 10).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].summary, "HTTP 500");
    store.record_ping("beat", t(5)).unwrap();
    store.record_ping("beat", t(9)).unwrap();
    assert_eq!(store.last_ping("beat").unwrap(), Some(t(9)));
    assert_eq!(store.last_ping("other").unwrap(), None);
    let version: i64 = store
        .conn()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

/// Records a run of `api` with one message of `event` to `slack`.
fn enqueue(store: &Store, at: i64, event: Event) -> OutboxItem {
    store
        .record_run(&run("api", at, "critical"), |_| {
            let message = NewMessage {
                notifier: "slack".into(),
                alert: alert(event),
            };
            (JobState::default(), vec![message])
        })
        .unwrap()
        .remove(0)
}

#[test]
fn a_message_is_not_due_before_an_older_one_of_its_job() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let enqueue = |at: i64, event: Event| enqueue(&store, at, event);
    let failure = enqueue(0, Event::Failure);
    let recovery = enqueue(10, Event::Recovery);
    // The failure's retry is later than the recovery's first try.
    store
        .mark(&[Mark::Failed {
            id: failure.id,
            error: "HTTP 503".into(),
            next_attempt_at: t(100),
        }])
        .unwrap();
    assert!(
        store.due(t(50)).unwrap().is_empty(),
        "the recovery overtook its failure"
    );
    let due: Vec<i64> = store.due(t(100)).unwrap().iter().map(|i| i.id).collect();
    assert_eq!(due, [failure.id, recovery.id]);
    // The next wake-up is the failure's retry: the recovery behind it, though its
    // own time has come, waits for it.
    assert_eq!(store.next_retry(t(50)).unwrap(), Some(t(100)));
    // Asked with the time a round started, a retry that came due during the round
    // is not missed (it is in the past now, and the worker goes again at once).
    assert_eq!(store.next_retry(t(99)).unwrap(), Some(t(100)));
    assert_eq!(store.next_retry(t(100)).unwrap(), None);
}

/// Two processes on one database: what one read to send is claimed, so the other
/// neither sends it nor a newer message of that job and notifier, until the claim
/// is released by the outcome or lapses after `CLAIM_LEASE` (its owner died).
#[test]
fn a_claimed_message_is_sent_by_one_process_until_its_claim_lapses() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path()).unwrap();
    let b = Store::open(dir.path()).unwrap();
    let enqueue = |at: i64, event: Event| enqueue(&a, at, event);
    let failure = enqueue(0, Event::Failure);
    let claimed: Vec<i64> = a.due(t(1)).unwrap().iter().map(|i| i.id).collect();
    assert_eq!(claimed, [failure.id]);
    let recovery = enqueue(2, Event::Recovery);
    let other = b.due_except(t(3), &HashSet::new()).unwrap();
    assert!(other.items.is_empty(), "{:?}", other.items);
    let key = ("slack".to_owned(), "api".to_owned());
    assert!(other.blocked.contains(&key));
    let lapses = t(1) + chrono::Duration::from_std(CLAIM_LEASE).unwrap();
    assert_eq!(b.next_retry(t(3)).unwrap(), Some(lapses));
    // Its owner is still on it: the claim is renewed by its next read.
    let mine: Vec<i64> = a.due(t(3)).unwrap().iter().map(|i| i.id).collect();
    assert_eq!(mine, [failure.id, recovery.id]);
    // A failed try lets go of the message and of the newer one behind it.
    a.mark(&[Mark::Failed {
        id: failure.id,
        error: "HTTP 503".into(),
        next_attempt_at: t(10),
    }])
    .unwrap();
    assert!(b.due(t(9)).unwrap().is_empty());
    let taken: Vec<i64> = b.due(t(10)).unwrap().iter().map(|i| i.id).collect();
    assert_eq!(taken, [failure.id, recovery.id]);
    // b dies without an outcome: a gets them back once the claim lapses.
    let lapses = t(10) + chrono::Duration::from_std(CLAIM_LEASE).unwrap();
    assert!(
        a.due(lapses - chrono::Duration::seconds(1))
            .unwrap()
            .is_empty()
    );
    assert_eq!(a.due(lapses).unwrap().len(), 2);
    // Let go on purpose, they are b's to take at once.
    a.release_claims().unwrap();
    assert_eq!(b.due(lapses).unwrap().len(), 2);
}

#[test]
fn refuses_a_database_from_the_future() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let conn = Connection::open(dir.path().join("klaxon.db")).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Store::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("newer klaxon (schema 99"), "{err}");
}
