//! `[history]`: the store forgets runs older than `keep` and beyond `max_runs` per job,
//! through the real binary and the real on-disk store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

mod common;
use common::{klaxon, output, text};

fn write_config(dir: &Path, history: &str) -> std::path::PathBuf {
    let config = format!(
        "[agent]\nname = \"ci\"\nstate_dir = \"{state}\"\n\n{history}\n\n\
         [notifiers.console]\ntype = \"log\"\n\n\
         [jobs.db]\nevery = \"1h\"\nnotify = [\"console\"]\n\
         [jobs.db.check]\ntype = \"script\"\nshell = \"echo fine\"\n",
        state = dir.join("state").display(),
    );
    let path = dir.join("klaxon.toml");
    std::fs::write(&path, config).unwrap();
    path
}

async fn once(config: &Path) {
    let mut cmd = klaxon();
    cmd.arg("--config").arg(config).args(["once", "db"]);
    let out = output(cmd).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
}

async fn runs(config: &Path) -> Vec<serde_json::Value> {
    let mut cmd = klaxon();
    cmd.arg("--config")
        .arg(config)
        .args(["history", "db", "--json", "--limit", "1000"]);
    let out = output(cmd).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    runs.as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_keeps_the_newest_max_runs_of_its_job() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[history]\nmax_runs = 3");
    let mut started = Vec::new();
    for _ in 0..5 {
        once(&config).await;
        let newest = runs(&config).await[0]["started_at"].clone();
        started.push(newest);
    }
    let kept: Vec<_> = runs(&config)
        .await
        .iter()
        .map(|r| r["started_at"].clone())
        .collect();
    let newest: Vec<_> = started.iter().rev().take(3).cloned().collect();
    assert_eq!(kept, newest, "the three newest runs are kept");
}

/// Runs older than `keep` (moved 100 days back in the real database) are pruned by a
/// running agent, a little while after it starts; the recent ones stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_prunes_runs_older_than_keep() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[history]\nkeep = \"90d\"");
    for _ in 0..4 {
        once(&config).await;
    }
    let db = rusqlite::Connection::open(dir.path().join("state/klaxon.db")).unwrap();
    let hundred_days_ms = 100 * 86_400_000_i64;
    let moved = db
        .execute(
            "UPDATE runs SET started_at = started_at - ?1, finished_at = finished_at - ?1
             WHERE rowid IN (SELECT rowid FROM runs ORDER BY rowid LIMIT 3)",
            [hundred_days_ms],
        )
        .unwrap();
    assert_eq!(moved, 3);
    drop(db);
    assert_eq!(runs(&config).await.len(), 4);

    let log = dir.path().join("agent.log");
    let mut agent = klaxon();
    agent
        .env("RUST_LOG", "klaxon=info")
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut agent = agent.spawn().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let left = loop {
        let left = runs(&config).await;
        // The recent run by `once` and the agent's own first run.
        if left.len() == 2 {
            break left;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "old runs were not pruned ({} left):\n{}",
            left.len(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let cutoff = chrono::Utc::now() - chrono::Duration::days(90);
    for run in &left {
        let at = chrono::DateTime::parse_from_rfc3339(run["started_at"].as_str().unwrap()).unwrap();
        assert!(at > cutoff, "an old run was kept: {run}");
    }
    // The pass logs what it pruned once it is over.
    let logged = loop {
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        if logged.contains("pruned the history") {
            break logged;
        }
        assert!(tokio::time::Instant::now() < deadline, "{logged}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(logged.contains("runs=3"), "{logged}");
    agent.kill().unwrap();
    agent.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_history_settings_are_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[history]\nkeep = \"soon\"\nmax_runs = 0");
    let mut cmd = klaxon();
    cmd.arg("--config").arg(&config).arg("validate");
    let out = output(cmd).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("klaxon.toml:6:8: `keep`: expected a duration"),
        "{err}"
    );
    assert!(
        err.contains("klaxon.toml:7:12: `max_runs` must be from 1 to 100000000, found `0`"),
        "{err}"
    );
}
