//! The `file` and `log` checks through the real binary: `klaxon once` and the agent,
//! against real directories and log files in a temp dir.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime};

use klaxon_testkit::{Response, Server};

mod common;
use common::text;

/// Writes `klaxon.toml` into `dir` with a state dir beside it and `jobs`.
fn write_config(dir: &Path, jobs: &str) -> std::path::PathBuf {
    let config = dir.join("klaxon.toml");
    std::fs::write(
        &config,
        format!("[agent]\nname = \"ci\"\nstate_dir = \"state\"\ntimezone = \"UTC\"\n{jobs}"),
    )
    .unwrap();
    config
}

fn once(config: &Path, job: &str) -> Output {
    common::klaxon()
        .arg("--config")
        .arg(config)
        .args(["once", job, "--no-retry"])
        .output()
        .expect("run klaxon")
}

fn set_age(path: &Path, age: Duration) {
    let at = filetime::FileTime::from_system_time(SystemTime::now() - age);
    filetime::set_file_mtime(path, at).unwrap();
}

#[test]
fn once_judges_the_newest_backup_of_a_glob() {
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let old = backups.join("db-2026-11-30.sql.gz");
    std::fs::write(&old, vec![0u8; 2048]).unwrap();
    set_age(&old, Duration::from_secs(51 * 3600 + 120));
    let config = write_config(
        dir.path(),
        &format!(
            "[jobs.backup]\nevery = \"1h\"\n[jobs.backup.check]\ntype = \"file\"\n\
             path = \"{}/db-*.sql.gz\"\nmax_age = \"26h\"\nmin_size = \"1KB\"\n",
            backups.display()
        ),
    );
    let out = once(&config, "backup");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!(
            "backup: critical: newest of 1 file is 2d 3h old (max 26h), 2.0 KB: {}",
            old.display()
        )),
        "{stdout}"
    );

    let fresh = backups.join("db-2026-12-02.sql.gz");
    std::fs::write(&fresh, vec![0u8; 4096]).unwrap();
    set_age(&fresh, Duration::from_secs(3 * 3600));
    let out = once(&config, "backup");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("backup: ok: newest of 2 files is 3h old, 4.1 KB: "),
        "{}",
        text(&out.stdout)
    );
}

/// The agent runs a `file` job on its schedule and alerts when a lock file appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_alerts_while_a_file_exists() {
    let hook = Server::start(|_| Response::ok("ok")).await;
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("stale.lock");
    std::fs::write(&lock, "1").unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[notifiers.hook]\ntype = \"webhook\"\nurl = \"{}\"\n\
             [jobs.lock]\nevery = \"1s\"\nnotify = [\"hook\"]\n\
             retry = {{ attempts = 1 }}\n[jobs.lock.check]\ntype = \"file\"\n\
             path = \"{}\"\nexists = false\n",
            hook.url("/hook"),
            lock.display()
        ),
    );
    let mut agent = common::klaxon()
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let got = hook.wait_for(1, Duration::from_secs(20)).await;
    let _ = agent.kill();
    let _ = agent.wait();
    let alert = got[0].json();
    assert_eq!(alert["job"], "lock", "{alert}");
    assert_eq!(alert["severity"], "critical", "{alert}");
    let summary = alert["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(&format!("`{}` exists (", lock.display())),
        "{summary}"
    );
}
