//! Several klaxon processes on one state directory at once, through the real binary:
//! the agent and the commands that write the store beside it (`ping`, `once`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

mod common;
use common::{klaxon, text};

/// A config file in `dir` whose state is `dir/state`; `jobs` is appended.
fn config(dir: &Path, jobs: &str) -> PathBuf {
    let config = format!(
        "[agent]\nname = \"ci\"\nstate_dir = \"{}\"\n\n{jobs}",
        dir.join("state").display()
    );
    let path = dir.join("klaxon.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// `klaxon run` on `path`, its stderr in `log`.
fn agent(path: &Path, log: &Path) -> tokio::process::Child {
    let mut cmd = klaxon();
    cmd.arg("--config").arg(path).arg("run");
    tokio::process::Command::from(cmd)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Stops the agent with SIGTERM and returns what it logged.
async fn stop(mut child: tokio::process::Child, log: &Path) -> String {
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().unwrap().to_string())
        .status()
        .expect("run kill");
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the agent stops within 30 s of SIGTERM")
        .unwrap();
    std::fs::read_to_string(log).unwrap()
}

fn try_count(db: &Path, sql: &str) -> rusqlite::Result<i64> {
    rusqlite::Connection::open(db)?.query_row(sql, [], |r| r.get(0))
}

fn count(db: &Path, sql: &str) -> i64 {
    try_count(db, sql).unwrap()
}

/// Waits until `sql` counts at least `n`.
async fn until_count(db: &Path, sql: &str, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // Before the agent made its schema, the file may be there without the tables.
    while !db.exists() || try_count(db, sql).unwrap_or(0) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for `{sql}` to reach {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With the agent writing a run every second for each of several jobs, bursts of 20
/// `klaxon ping` at once all succeed: every ping and its run is recorded, and neither
/// the pings nor the agent report a locked or busy database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_pings_at_once_beside_a_writing_agent_are_all_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut jobs = String::from(
        "[jobs.beat]\nevery = \"1h\"\n[jobs.beat.check]\ntype = \"heartbeat\"\ngrace = \"1h\"\n",
    );
    for i in 0..4 {
        jobs.push_str(&format!(
            "[jobs.tick{i}]\nevery = \"1s\"\n[jobs.tick{i}.check]\ntype = \"script\"\nshell = \"exit 0\"\n"
        ));
    }
    let path = config(dir.path(), &jobs);
    let db = dir.path().join("state/klaxon.db");
    let log = dir.path().join("agent.log");
    let agent = agent(&path, &log);
    // The agent is writing before the pings start.
    until_count(&db, "SELECT count(*) FROM runs WHERE job LIKE 'tick%'", 4).await;

    const BURSTS: usize = 3;
    const PINGS: usize = 20;
    for _ in 0..BURSTS {
        let pings: Vec<_> = (0..PINGS)
            .map(|_| {
                let mut cmd = klaxon();
                cmd.arg("--config").arg(&path).args(["ping", "beat"]);
                tokio::process::Command::from(cmd).output()
            })
            .collect();
        for out in futures_join(pings).await {
            let out = out.unwrap();
            let stderr = text(&out.stderr);
            assert!(
                out.status.success(),
                "a ping failed ({:?}): {stderr}",
                out.status
            );
            assert!(
                !stderr.contains("ERROR") && !stderr.contains("locked"),
                "{stderr}"
            );
        }
    }
    let ticks_before = count(&db, "SELECT count(*) FROM runs WHERE job LIKE 'tick%'");
    // The agent goes on recording after the bursts.
    until_count(
        &db,
        "SELECT count(*) FROM runs WHERE job LIKE 'tick%'",
        ticks_before + 4,
    )
    .await;
    let log = stop(agent, &log).await;

    let want = (BURSTS * PINGS) as i64;
    assert_eq!(
        count(&db, "SELECT count(*) FROM pings WHERE job = 'beat'"),
        want
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM runs WHERE job = 'beat'"),
        want,
        "every ping is a run in history"
    );
    for bad in ["ERROR", "locked", "busy", "could not be recorded"] {
        assert!(!log.contains(bad), "the agent logged `{bad}`:\n{log}");
    }
}

/// Awaits every future, concurrently.
async fn futures_join<F>(futures: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Two configs on one state directory and one webhook: `agent.toml` for the agent, whose
/// only job never alerts (so it sends nothing of its own), and `once.toml` with the job
/// `db` that `klaxon once` runs, failing while `dir/code` holds a non-zero exit code.
fn two_configs(dir: &Path, hook: &klaxon_testkit::Server) -> (PathBuf, PathBuf) {
    let notifier = format!(
        "[notifiers.hook]\ntype = \"webhook\"\nurl = \"{}\"\n\n",
        hook.url("/hook")
    );
    let agent = config(
        dir,
        &format!(
            "{notifier}[jobs.idle]\nevery = \"1h\"\nnotify = [\"hook\"]\n[jobs.idle.check]\ntype = \"heartbeat\"\ngrace = \"1h\"\n"
        ),
    );
    let agent_path = dir.join("agent.toml");
    std::fs::rename(&agent, &agent_path).unwrap();
    let once = config(
        dir,
        &format!(
            "{notifier}[jobs.db]\nevery = \"1h\"\nnotify = [\"hook\"]\nretry = {{ attempts = 1 }}\n[jobs.db.check]\ntype = \"script\"\nshell = \"exit $(cat {})\"\n",
            dir.join("code").display()
        ),
    );
    let once_path = dir.join("once.toml");
    std::fs::rename(&once, &once_path).unwrap();
    (agent_path, once_path)
}

/// `klaxon once db` with the job exiting `code`, not waited for.
fn once(dir: &Path, path: &Path, code: &str) -> tokio::process::Child {
    std::fs::write(dir.join("code"), code).unwrap();
    let mut cmd = klaxon();
    cmd.arg("--config").arg(path).args(["once", "db"]);
    tokio::process::Command::from(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// (event, alert id) of every POST the hook got.
fn posts(hook: &klaxon_testkit::Server) -> Vec<(String, String)> {
    hook.requests()
        .iter()
        .map(|r| {
            let body = r.json();
            (
                body["event"].as_str().unwrap_or("?").to_owned(),
                body["id"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

/// A receiver that answers the first POST 500 and every later one 200.
async fn answers_500_once() -> klaxon_testkit::Server {
    klaxon_testkit::Server::sequence(
        [klaxon_testkit::Response::status(500)],
        klaxon_testkit::Response::ok("ok"),
    )
    .await
}

fn assert_all_delivered(db: &Path) {
    let sql = "SELECT count(*) FROM outbox WHERE delivered_at IS NULL";
    assert_eq!(count(db, sql), 0, "a message is still undelivered");
}

/// A `klaxon once` is sending its failure (the receiver takes 2 s to answer) when the
/// agent starts and reads the outbox: the message is claimed by `once`, so the agent
/// does not send it too. The receiver gets it exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_being_sent_by_once_is_not_sent_by_the_agent_too() {
    let hook = klaxon_testkit::Server::start(|_| {
        klaxon_testkit::Response::ok("ok").delay(Duration::from_secs(2))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (agent_path, once_path) = two_configs(dir.path(), &hook);
    let sender = once(dir.path(), &once_path, "2");
    hook.wait_for(1, Duration::from_secs(20)).await;
    let log = dir.path().join("agent.log");
    let agent = agent(&agent_path, &log);
    let out = sender.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // Time for the agent to read the outbox and send what it thinks is pending.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let log = stop(agent, &log).await;
    let got = posts(&hook);
    assert_eq!(got.len(), 1, "the failure went out twice: {got:?}\n{log}");
    assert_eq!(got[0].0, "failure");
    let db = dir.path().join("state/klaxon.db");
    assert_all_delivered(&db);
}

/// A failure whose first delivery fails (500) is waiting for its retry in one `klaxon
/// once` when a second `klaxon once` records the recovery: the recovery waits for the
/// failure, though another process holds it, and the receiver hears DOWN first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_from_another_once_does_not_overtake_its_failure() {
    let hook = answers_500_once().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, once_path) = two_configs(dir.path(), &hook);
    let db = dir.path().join("state/klaxon.db");
    let first = once(dir.path(), &once_path, "2");
    // The failure's first try is answered 500 and recorded: it waits 5 s for a retry.
    until_count(&db, "SELECT coalesce(max(attempts), 0) FROM outbox", 1).await;
    let second = once(dir.path(), &once_path, "0");
    let second = second.wait_with_output().await.unwrap();
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    let first = first.wait_with_output().await.unwrap();
    assert_eq!(first.status.code(), Some(1), "{}", text(&first.stderr));
    let events: Vec<String> = posts(&hook).into_iter().map(|(e, _)| e).collect();
    assert_eq!(
        events,
        ["failure", "failure", "recovery"],
        "the recovery overtook its failure, or one was sent twice"
    );
    assert_all_delivered(&db);
}

/// A `klaxon once` whose receiver answered 500 dies while it waits for the retry: the
/// agent, already running, was not told, yet sends the message at its retry time
/// (5 s later) without a reload or restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_retries_a_message_left_by_another_process_on_time() {
    let hook = answers_500_once().await;
    let dir = tempfile::tempdir().unwrap();
    let (agent_path, once_path) = two_configs(dir.path(), &hook);
    let db = dir.path().join("state/klaxon.db");
    let log = dir.path().join("agent.log");
    let agent = agent(&agent_path, &log);
    until_count(
        &db,
        "SELECT count(*) FROM sqlite_master WHERE name = 'outbox'",
        1,
    )
    .await;
    // Well after the agent's first read of the outbox.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut sender = once(dir.path(), &once_path, "2");
    until_count(&db, "SELECT coalesce(max(attempts), 0) FROM outbox", 1).await;
    sender.start_kill().unwrap();
    sender.wait().await.unwrap();
    let got = hook.wait_for(2, Duration::from_secs(15)).await;
    let log = stop(agent, &log).await;
    assert_eq!(got.len(), 2, "{log}");
    let retry = got[1].at - got[0].at;
    assert!(
        retry >= Duration::from_secs(4),
        "sent before its retry time: {retry:?}"
    );
    assert_all_delivered(&db);
}
