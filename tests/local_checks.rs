//! The `file` and `log` checks through the real binary: `klaxon once` and the agent,
//! against real directories and log files in a temp dir.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime};

use klaxon_testkit::{Response, Server, append};

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

/// Runs `once` on `job`: asserts its exit code and that its first line starts with
/// `lead`; returns its stdout.
fn once_says(config: &Path, job: &str, code: i32, lead: &str) -> String {
    let out = once(config, job);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{stdout}{}",
        text(&out.stderr)
    );
    assert!(stdout.starts_with(lead), "{stdout}");
    stdout
}

/// `klaxon run` on `config`, quiet.
fn start_agent(config: &Path) -> std::process::Child {
    common::klaxon()
        .arg("--config")
        .arg(config)
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
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
    let lead = format!(
        "backup: critical: newest of 1 file is 2d 3h old (max 26h), 2.0 KB: {}",
        old.display()
    );
    once_says(&config, "backup", 1, &lead);

    let fresh = backups.join("db-2026-12-02.sql.gz");
    std::fs::write(&fresh, vec![0u8; 4096]).unwrap();
    set_age(&fresh, Duration::from_secs(3 * 3600));
    let lead = "backup: ok: newest of 2 files is 3h old, 4.1 KB: ";
    once_says(&config, "backup", 0, lead);
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
    let mut agent = start_agent(&config);
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

fn log_job(log: &Path) -> String {
    format!(
        "[jobs.app]\nevery = \"1h\"\n[jobs.app.check]\ntype = \"log\"\npath = \"{}\"\n\
         pattern = \"ERROR\"\nmax_matches = 1\n",
        log.display()
    )
}

/// Each `once` is a new process: the position is kept in the store between them, through
/// a rename rotation and a copytruncate.
#[test]
fn once_reads_only_what_was_appended_since_the_last_process() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "ERROR from before klaxon looked\n");
    let config = write_config(dir.path(), &log_job(&log));
    let lead = format!(
        "app: ok: no new line matches `ERROR` in {} (0 lines read)",
        log.display()
    );
    once_says(&config, "app", 0, &lead);

    append(&log, "ERROR one\ninfo\nERROR two token=abc123\n");
    let lead = format!(
        "app: critical: 2 new lines match `ERROR` (max 1) in {} (3 lines read)",
        log.display()
    );
    once_says(&config, "app", 1, &lead);

    // The lines are not read again by the next process.
    append(&log, "ERROR three\n");
    once_says(&config, "app", 0, "app: ok: 1 new line matches `ERROR` in");

    // Rename + new file between two processes: the new file from its start.
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    append(&log, "ERROR four\nERROR five\n");
    let stdout = once_says(
        &config,
        "app",
        1,
        "app: critical: 2 new lines match `ERROR` (max 1)",
    );
    assert!(stdout.contains("(2 lines read); rotated"), "{stdout}");

    // Copytruncate: the file is shorter than the position, and is read from its start.
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    append(&log, "ERROR six\n");
    let stdout = once_says(&config, "app", 0, "app: ok: 1 new line matches `ERROR` in");
    assert!(stdout.contains("; truncated"), "{stdout}");
}

/// The agent follows the log across a restart: lines written while it was down count
/// once, in its first run after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_alerts_on_new_error_lines_across_a_restart() {
    let hook = Server::start(|_| Response::ok("ok")).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "ERROR old\n");
    let config = write_config(
        dir.path(),
        &format!(
            "[notifiers.hook]\ntype = \"webhook\"\nurl = \"{}\"\n\
             [jobs.app]\nevery = \"1s\"\nnotify = [\"hook\"]\nretry = {{ attempts = 1 }}\n\
             alert = {{ resolved = false }}\n\
             [jobs.app.check]\ntype = \"log\"\npath = \"{}\"\npattern = \"ERROR\"\n",
            hook.url("/hook"),
            log.display()
        ),
    );
    let start = || start_agent(&config);
    let history = || {
        let out = common::klaxon()
            .arg("--config")
            .arg(&config)
            .args(["history", "app", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .map(|v| v.as_array().map_or(0, Vec::len))
            .unwrap_or(0)
    };
    let mut agent = start();
    // Wait until it has run once (and so taken the end of the file as its start).
    for _ in 0..100 {
        if history() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(hook.requests().is_empty(), "the old line alerted");

    append(
        &log,
        "ERROR written while klaxon was down password=hunter2\n",
    );
    let mut agent = start();
    let got = hook.wait_for(1, Duration::from_secs(20)).await;
    let _ = agent.kill();
    let _ = agent.wait();
    let alert = got[0].json();
    assert_eq!(alert["severity"], "critical", "{alert}");
    assert!(
        alert["summary"]
            .as_str()
            .unwrap()
            .starts_with("1 new line matches `ERROR` (max 0)"),
        "{alert}"
    );
    assert_eq!(
        alert["output"], "ERROR written while klaxon was down password=***",
        "{alert}"
    );
    assert!(!got[0].text().contains("hunter2"));
}
