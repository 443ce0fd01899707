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
