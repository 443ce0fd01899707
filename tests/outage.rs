//! A receiver that is down for ten minutes of simulated time, while the agent is killed
//! twice: every alert arrives afterwards, once, in order per job, and no retry comes
//! earlier than its backoff allows.
//!
//! Time is a test clock driven in 5-second steps; the runs are recorded through
//! `runner::record` (the agent's own path) and the outbox is worked through
//! `outbox::round` (one turn of the agent's delivery loop) against a real loopback
//! receiver and the real on-disk store. A "kill" aborts the round in flight and drops
//! the runtime without any flush; the next runtime opens the store from disk. (The real
//! SIGKILL of the binary, in real time, is `alerts_survive_a_receiver_outage_and_two_kills`
//! in tests/cli.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use klaxon::runner::{self, Times, Tries};
use klaxon::runtime::{Clock, Mode, Runtime};
use klaxon_checks::{Outcome, Severity};
use klaxon_testkit::{Response, Server};
use tokio_util::sync::CancellationToken;

/// A POST the receiver got: when (simulated), whether it answered 2xx, the body.
type Post = (DateTime<Utc>, bool, serde_json::Value);

#[derive(Debug)]
struct TestClock(Mutex<DateTime<Utc>>);

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

impl TestClock {
    fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

fn runtime(config: &std::path::Path, clock: &Arc<TestClock>) -> Arc<Runtime> {
    let env = |_: &str| None;
    let config = klaxon::config::load(config, &env).expect("config");
    Arc::new(Runtime::build(config, Mode::Live, clock.clone()).expect("runtime"))
}

/// A config in a temp dir: `jobs` (tcp checks that never run) all notifying the
/// `webhook` notifier `hook` at `hook`, `group_wait = "0s"`. Returns the dir and the
/// config's path.
fn config(hook: &Server, jobs: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = format!(
        "[agent]\nname = \"ci\"\nstate_dir = \"state\"\ngroup_wait = \"0s\"\n\
         [defaults]\nnotify = [\"hook\"]\n\
         [notifiers.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        hook.url("/hook")
    );
    for job in jobs {
        config.push_str(&format!(
            "[jobs.{job}]\nevery = \"1m\"\n[jobs.{job}.check]\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = 9\n"
        ));
    }
    let path = dir.path().join("klaxon.toml");
    std::fs::write(&path, config).unwrap();
    (dir, path)
}

async fn record(rt: &Arc<Runtime>, job: &str, severity: Severity) {
    let job = rt.config.job(job).unwrap().clone();
    // The run ends now, as a run that just finished does.
    let times = Times {
        started_at: rt.clock.now() - chrono::Duration::milliseconds(20),
        elapsed: Duration::from_millis(20),
        fire_at: None,
    };
    let tries = Tries {
        made: 3,
        allowed: 3,
    };
    let outcome = Outcome::new(severity, "HTTP 503", Duration::from_millis(20));
    runner::record(
        rt,
        &runner::Subject::from(&job),
        outcome,
        tries,
        times,
        None,
    )
    .await
    .expect("record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_minutes_down_two_kills_every_alert_once_in_order() {
    let start: DateTime<Utc> = "2026-11-24T09:00:00Z".parse().unwrap();
    let clock = Arc::new(TestClock(Mutex::new(start)));
    let up = Arc::new(AtomicBool::new(false));
    // Every POST: (simulated time, up?, body).
    let seen: Arc<Mutex<Vec<Post>>> = Arc::default();
    let (flag, log, now) = (up.clone(), seen.clone(), clock.clone());
    let hook = Server::start(move |r| {
        let up = flag.load(Ordering::SeqCst);
        log.lock().unwrap().push((now.now(), up, r.json()));
        if up {
            Response::ok("ok")
        } else {
            Response::status(503)
        }
    })
    .await;

    let (dir, path) = config(&hook, &["a", "b", "c"]);

    // What happens when, in simulated seconds from the start.
    let script: &[(i64, &str, Severity)] = &[
        (0, "a", Severity::Critical),
        (60, "b", Severity::Critical),
        (120, "c", Severity::Critical),
        (180, "a", Severity::Ok), // a recovers while nobody can be told
        (360, "a", Severity::Critical), // and fails again: a second alert
        (420, "c", Severity::Warning), // an update while still down
        (660, "b", Severity::Ok), // after the receiver is back
    ];
    // A kill in the first round after each of these that has a retry to send.
    let kill_after = [240, 420];
    let mut kills = Vec::new();
    let back_up = 600;
    let step = chrono::Duration::seconds(5);

    let mut rt = runtime(&path, &clock);
    let stop = CancellationToken::new();
    // When each round may next run (as the agent's worker sleeps until then).
    let mut wake: Option<DateTime<Utc>> = Some(start);
    for t in (0..=900).step_by(5) {
        let now = clock.now();
        assert_eq!((now - start).num_seconds(), t);
        if t == back_up {
            up.store(true, Ordering::SeqCst);
        }
        let due = wake.is_some_and(|w| w <= now);
        if due && kill_after.get(kills.len()).is_some_and(|k| t >= *k) {
            kills.push(t);
            // A kill in the middle of a round: the round is aborted wherever it is,
            // the runtime is dropped without flushing, and a new one starts from disk.
            let (r, s) = (rt.clone(), stop.clone());
            let before = hook.requests().len();
            let flight = tokio::spawn(async move { runner_round(&r, &s).await });
            // Killed once its POST has reached the receiver, before the answer is
            // recorded.
            hook.wait_for(before + 1, Duration::from_secs(10)).await;
            flight.abort();
            let _ = flight.await;
            drop(rt);
            rt = runtime(&path, &clock);
            // A starting agent works its outbox at once.
            wake = Some(now);
        }
        let mut enqueued = false;
        for (at, job, severity) in script {
            if *at == t {
                record(&rt, job, *severity).await;
                enqueued = true;
            }
        }
        if enqueued || wake.is_some_and(|w| w <= now) {
            wake = runner_round(&rt, &stop).await;
        }
        clock.advance(step);
    }

    assert_eq!(kills.len(), 2, "{kills:?}");
    let seen = seen.lock().unwrap().clone();
    let accepted: Vec<&serde_json::Value> = seen
        .iter()
        .filter(|(_, up, _)| *up)
        .map(|(_, _, b)| b)
        .collect();
    let key = |b: &serde_json::Value| {
        (
            b["job"].as_str().unwrap().to_owned(),
            b["event"].as_str().unwrap().to_owned(),
            b["id"].as_str().unwrap().to_owned(),
        )
    };
    // Exactly once each.
    let mut keys: Vec<_> = accepted.iter().map(|b| key(b)).collect();
    let total = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), total, "a message arrived twice: {accepted:#?}");
    // In order per job.
    let events = |job: &str| -> Vec<String> {
        accepted
            .iter()
            .filter(|b| b["job"] == job)
            .map(|b| b["event"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        events("a"),
        ["failure", "recovery", "failure"],
        "{accepted:#?}"
    );
    assert_eq!(events("b"), ["failure", "recovery"], "{accepted:#?}");
    assert_eq!(events("c"), ["failure", "update"], "{accepted:#?}");
    // a's two alerts are two ids; its recovery closes the first.
    let a: Vec<_> = accepted.iter().filter(|b| b["job"] == "a").collect();
    assert_eq!(a[0]["id"], a[1]["id"]);
    assert_ne!(a[0]["id"], a[2]["id"]);
    // Nothing got through while the receiver was down, and everything that was
    // waiting arrived within the first retry interval after it came back.
    for (at, up, body) in &seen {
        if *up {
            let since_back = (*at - start).num_seconds() - back_up;
            if body["job"] != "b" || body["event"] != "recovery" {
                assert!(
                    (0..=600).contains(&since_back),
                    "{body} arrived {since_back}s after the receiver came back"
                );
            }
        }
    }
    // Retries of one message back off: consecutive tries of the first failure of `a`
    // are at least 5 s, then 10 s, ... apart (the backoff doubles from 5 s).
    let first_id = a[0]["id"].as_str().unwrap();
    let tries: Vec<i64> = seen
        .iter()
        .filter(|(_, _, b)| b["id"] == first_id && b["event"] == "failure")
        .map(|(at, _, _)| (*at - start).num_seconds())
        .collect();
    assert!(tries.len() >= 4, "{tries:?}");
    for pair in tries.windows(3) {
        let (d1, d2) = (pair[1] - pair[0], pair[2] - pair[1]);
        // A restart retries at once; otherwise the gap does not shrink.
        if !kills.iter().any(|k| (pair[1]..=pair[2]).contains(k)) {
            assert!(d2 >= d1.min(600), "backoff shrank: {tries:?}");
        }
    }
    // The store agrees: nothing is left to deliver.
    let store = klaxon::store::Store::open(&dir.path().join("state")).unwrap();
    assert!(store.pending().unwrap().is_empty());
}

async fn runner_round(rt: &Arc<Runtime>, stop: &CancellationToken) -> Option<DateTime<Utc>> {
    klaxon::delivery::round(rt, stop).await
}

/// The delivery loop is a pipeline, not rounds: while one job's message hangs at a slow
/// receiver, a new message of another job goes out at once, and the slow job's next
/// message still waits for the first to be answered. Real time, the agent's own
/// `outbox::worker`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_delivery_holds_up_only_its_own_job() {
    let start: DateTime<Utc> = "2026-11-24T09:00:00Z".parse().unwrap();
    let clock = Arc::new(TestClock(Mutex::new(start)));
    let hang = Duration::from_secs(4);
    let hook = Server::start(move |r| {
        let body = r.json();
        if body["job"] == "a" && body["event"] == "failure" {
            Response::ok("ok").delay(hang)
        } else {
            Response::ok("ok")
        }
    })
    .await;
    let (_dir, path) = config(&hook, &["a", "b"]);
    let rt = runtime(&path, &clock);
    let stop = CancellationToken::new();
    let worker = tokio::spawn(klaxon::delivery::worker(rt.clone(), stop.clone()));

    record(&rt, "a", Severity::Critical).await;
    hook.wait_for(1, Duration::from_secs(10)).await;
    // a's failure is at the receiver, unanswered for `hang`.
    let since = std::time::Instant::now();
    record(&rt, "a", Severity::Ok).await;
    record(&rt, "b", Severity::Critical).await;
    let got = hook.wait_for(2, Duration::from_secs(10)).await;
    let b_took = since.elapsed();
    let seen = |got: &[klaxon_testkit::Request]| -> Vec<(String, String)> {
        got.iter()
            .map(|r| {
                let b = r.json();
                let s = |k: &str| b[k].as_str().unwrap().to_owned();
                (s("job"), s("event"))
            })
            .collect()
    };
    assert_eq!(
        seen(&got)[1],
        ("b".into(), "failure".into()),
        "{:?}",
        seen(&got)
    );
    assert!(b_took < hang / 2, "b's alert waited {b_took:?} behind a's");
    let got = hook.wait_for(3, Duration::from_secs(10)).await;
    let recovery_took = since.elapsed();
    assert_eq!(
        seen(&got),
        [("a", "failure"), ("b", "failure"), ("a", "recovery")]
            .map(|(j, e)| (j.to_owned(), e.to_owned())),
    );
    assert!(
        recovery_took >= hang / 2,
        "a's recovery went out {recovery_took:?} after its failure, before that was answered"
    );
    stop.cancel();
    worker.await.unwrap();
    assert!(rt.store.pending().unwrap().is_empty());
    assert_eq!(hook.requests().len(), 3, "a message went out twice");
}

/// A message another process put in the outbox (`klaxon once`, `klaxon ping` leave what
/// they could not deliver) is not handed over to the agent's loop, yet the loop sees
/// that another connection wrote the store (within its one-second poll) and reads the
/// outbox: it goes out without waiting for the agent's own next message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_from_another_process_goes_out_without_the_agents_next_one() {
    let start: DateTime<Utc> = "2026-11-24T09:00:00Z".parse().unwrap();
    let clock = Arc::new(TestClock(Mutex::new(start)));
    let hook = Server::start(|_| Response::ok("ok")).await;
    let (_dir, path) = config(&hook, &["a", "b"]);
    let rt = runtime(&path, &clock);
    // The other process: its own runtime and connection on the same state directory.
    let other = runtime(&path, &clock);
    let stop = CancellationToken::new();
    let worker = tokio::spawn(klaxon::delivery::worker_reading_after(
        rt.clone(),
        stop.clone(),
        Duration::from_secs(3600),
    ));
    // The loop is idle, its first read done, before the other process writes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    record(&other, "a", Severity::Critical).await;
    assert_eq!(hook_jobs(&hook, 1).await, ["a"]);
    // The agent's own messages are still handed over.
    record(&rt, "b", Severity::Critical).await;
    assert_eq!(hook_jobs(&hook, 2).await, ["a", "b"]);
    stop.cancel();
    worker.await.unwrap();
    assert!(rt.store.pending().unwrap().is_empty());
    assert_eq!(hook.requests().len(), 2, "a message went out twice");
}

/// The jobs of the first `n` POSTs, once there are `n`.
async fn hook_jobs(hook: &Server, n: usize) -> Vec<String> {
    hook.wait_for(n, Duration::from_secs(10))
        .await
        .iter()
        .map(|r| r.json()["job"].as_str().unwrap().to_owned())
        .collect()
}

/// Stopped while a send is under way, the delivery loop lets it land: its outcome is
/// committed before `worker` returns, so the shutdown flush that follows does not send
/// it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_loop_records_the_send_under_way_before_returning() {
    let start: DateTime<Utc> = "2026-11-24T09:00:00Z".parse().unwrap();
    let clock = Arc::new(TestClock(Mutex::new(start)));
    let hook = Server::start(|_| Response::ok("ok").delay(Duration::from_secs(1))).await;
    let (_dir, path) = config(&hook, &["a"]);
    let rt = runtime(&path, &clock);
    let stop = CancellationToken::new();
    let worker = tokio::spawn(klaxon::delivery::worker(rt.clone(), stop.clone()));
    record(&rt, "a", Severity::Critical).await;
    hook.wait_for(1, Duration::from_secs(10)).await;
    stop.cancel();
    worker.await.unwrap();
    assert!(
        rt.store.due(clock.now()).unwrap().is_empty(),
        "the answered message is still due: a flush would send it again"
    );
    assert_eq!(hook.requests().len(), 1);
}

/// The agent's loop takes a message as soon as its row is inserted and builds its
/// request while the transaction goes on, but writes it only once the row is durable:
/// every POST finds its row committed, seen from another connection. A run whose
/// transaction rolls back after its message was inserted (a trigger refuses its
/// history row) sends nothing; the runs of a storm recorded after it, in group
/// commits, go out once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_written_only_once_its_row_is_durable() {
    let start: DateTime<Utc> = "2026-11-24T09:00:00Z".parse().unwrap();
    let clock = Arc::new(TestClock(Mutex::new(start)));
    let db = Arc::new(Mutex::new(None::<std::path::PathBuf>));
    let seen = Arc::new(Mutex::new(Vec::<(String, bool)>::new()));
    let hook = Server::start({
        let (db, seen) = (db.clone(), seen.clone());
        move |r| {
            let job = r.json()["job"].as_str().unwrap().to_owned();
            let path = db.lock().unwrap().clone().unwrap();
            let conn = rusqlite::Connection::open(path).unwrap();
            let rows: i64 = conn
                .query_row(
                    "SELECT count(*) FROM outbox WHERE job = ?1 AND event = 'failure'",
                    [&job],
                    |r| r.get(0),
                )
                .unwrap();
            seen.lock().unwrap().push((job, rows == 1));
            Response::ok("ok")
        }
    })
    .await;
    let jobs: Vec<String> = (0..40).map(|i| format!("j{i}")).collect();
    let names: Vec<&str> = jobs.iter().map(String::as_str).collect();
    let (dir, path) = config(&hook, &names);
    let rt = runtime(&path, &clock);
    let file = dir.path().join("state").join("klaxon.db");
    rusqlite::Connection::open(&file)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse_j7 BEFORE INSERT ON runs WHEN NEW.job = 'j7'
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
    *db.lock().unwrap() = Some(file);
    let stop = CancellationToken::new();
    let worker = tokio::spawn(klaxon::delivery::worker(rt.clone(), stop.clone()));
    // The loop is idle, its first read done and its hand-over asked for.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // j7 alone: its message is handed over early, then its transaction rolls back.
    let job = rt.config.job("j7").unwrap().clone();
    let times = Times {
        started_at: rt.clock.now(),
        elapsed: Duration::from_millis(20),
        fire_at: None,
    };
    let tries = Tries {
        made: 3,
        allowed: 3,
    };
    let outcome = Outcome::new(Severity::Critical, "HTTP 503", Duration::ZERO);
    let subject = runner::Subject::from(&job);
    let refused = runner::record(&rt, &subject, outcome, tries, times, None).await;
    assert!(refused.is_err(), "j7's run was written");
    // Then the others at once, in group commits.
    let tasks: Vec<_> = names
        .iter()
        .filter(|job| **job != "j7")
        .map(|job| {
            let (rt, job) = (rt.clone(), (*job).to_owned());
            tokio::spawn(async move { record(&rt, &job, Severity::Critical).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let arrived = || seen.lock().unwrap().len();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while arrived() < 39 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Anything sent twice would have come by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    worker.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let mut sent: Vec<&str> = seen
        .iter()
        .map(|(job, durable)| {
            assert!(durable, "{job}'s failure arrived without its row committed");
            job.as_str()
        })
        .collect();
    sent.sort_unstable();
    let mut expected: Vec<&str> = names.iter().copied().filter(|j| *j != "j7").collect();
    expected.sort_unstable();
    assert_eq!(sent, expected, "each failure once, none of j7");
}
