//! `klaxon exec` driven as cron would: the real binary wrapping real commands, with a
//! real on-disk store, a local webhook receiver for alerts and a local
//! Healthchecks-style receiver for pings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use klaxon_testkit::{Request, Response, Server};

mod common;
use common::{live_members, output, text};

fn klaxon(config: &Path) -> Command {
    let mut cmd = common::klaxon();
    cmd.arg("--config").arg(config);
    cmd
}

/// A config with a webhook notifier and a passive `nightly` job, in a temp dir.
fn setup(hook: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("klaxon.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[agent]
name = "ci"
state_dir = "state"
timezone = "UTC"

[defaults]
notify = ["hook"]
retry = {{ attempts = 1 }}

[notifiers.hook]
type = "webhook"
url = "{hook}"

[jobs.nightly]
schedule = "0 3 * * *"
retry = {{ attempts = 2, initial = "100ms", max = "100ms", jitter = 0.0 }}
[jobs.nightly.check]
type = "heartbeat"
grace = "1h"
"#
        ),
    )
    .unwrap();
    (dir, path)
}

fn history(config: &Path, job: &str) -> serde_json::Value {
    let out = klaxon(config)
        .args(["history", job, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exit_code_and_output_pass_through() {
    let hook = Server::start(|_| Response::status(200)).await;
    let (_dir, config) = setup(&hook.url("/hook"));
    let mut cmd = klaxon(&config);
    cmd.args(["exec", "--job", "other", "--", "sh", "-c"])
        .arg("echo to-stdout; echo to-stderr >&2; exit 3");
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "to-stdout\n");
    assert!(
        text(&out.stderr).starts_with("to-stderr\n"),
        "{}",
        text(&out.stderr)
    );

    let mut cmd = klaxon(&config);
    cmd.args(["exec", "--job", "other", "--", "sh", "-c", "echo fine"]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "fine\n");
    // Success is silent apart from the command itself: cron mails nothing.
    assert_eq!(text(&out.stderr), "");

    // `other` has no `[jobs.other]`, yet its runs are in history, newest first.
    let runs = history(&config, "other");
    let severities: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["severity"].as_str().unwrap())
        .collect();
    assert_eq!(severities, ["ok", "critical"], "{runs:#}");
    // A job with neither a config section nor runs is still an error naming the jobs.
    let out = klaxon(&config)
        .args(["history", "nosuch"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no job `nosuch`"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_alerts_with_the_output_tail_and_a_success_recovers() {
    let hook = Server::start(|_| Response::status(200)).await;
    let (_dir, config) = setup(&hook.url("/hook"));
    let mut cmd = klaxon(&config);
    cmd.args(["exec", "--job", "nightly", "--", "sh", "-c"])
        .arg("echo line one; echo the disk is full >&2; exit 3");
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    // `exec` waited for the delivery before it exited.
    let got = hook.requests();
    assert_eq!(got.len(), 1, "{got:#?}");
    let alert = got[0].json();
    assert_eq!(alert["event"].as_str(), Some("failure"));
    assert_eq!(alert["job"].as_str(), Some("nightly"));
    assert_eq!(alert["severity"].as_str(), Some("critical"));
    assert_eq!(alert["check"]["type"].as_str(), Some("exec"));
    assert_eq!(
        alert["check"]["target"].as_str(),
        Some("sh -c 'echo line one; echo the disk is full >&2; exit 3'")
    );
    assert_eq!(alert["summary"].as_str(), Some("exit 3"));
    assert_eq!(
        alert["output"].as_str(),
        Some("line one\nthe disk is full\n")
    );
    assert_eq!(alert["attempts"].as_u64(), Some(2));
    assert_eq!(alert["max_attempts"].as_u64(), Some(2));
    let next = alert["next_run"].as_str().unwrap();
    assert!(next.contains("T03:00:00"), "{next}");

    let mut cmd = klaxon(&config);
    cmd.args(["exec", "--job", "nightly", "--", "true"]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let got = hook.requests();
    assert_eq!(got.len(), 2);
    let recovery = got[1].json();
    assert_eq!(recovery["event"].as_str(), Some("recovery"));
    assert_eq!(recovery["id"], alert["id"]);

    let runs = history(&config, "nightly");
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["severity"].as_str(), Some("ok"));
    assert_eq!(runs[1]["severity"].as_str(), Some("critical"));
    assert_eq!(runs[1]["attempts"].as_u64(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_exec_of_a_running_job_is_skipped_and_recorded() {
    let hook = Server::start(|_| Response::status(200)).await;
    let (dir, config) = setup(&hook.url("/hook"));
    let marker = dir.path().join("started");
    let mut first = klaxon(&config);
    first
        .args(["exec", "--job", "nightly", "--", "sh", "-c"])
        .arg(format!("touch {}; sleep 2", marker.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut first = tokio::process::Command::from(first).spawn().unwrap();
    while !marker.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut second = klaxon(&config);
    second.args(["exec", "--job", "nightly", "--", "sh", "-c", "echo ran"]);
    let out = output(second).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "", "the second exec ran its command");
    assert!(
        text(&out.stderr).contains("skipped: still running"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(first.wait().await.unwrap().code(), Some(0));

    let runs = history(&config, "nightly");
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:#?}");
    let skipped: Vec<_> = runs
        .iter()
        .filter(|r| r["skipped"].as_str() == Some("still running"))
        .collect();
    assert_eq!(skipped.len(), 1, "{runs:#?}");
    assert_eq!(skipped[0]["severity"].as_str(), Some("skipped"));
    assert!(runs.iter().any(|r| r["severity"].as_str() == Some("ok")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lock_runs_alongside_and_notify_replaces_the_notifiers() {
    let hook = Server::start(|_| Response::status(200)).await;
    let other = Server::start(|_| Response::status(200)).await;
    let (dir, config) = setup(&hook.url("/hook"));
    let mut text_of_config = std::fs::read_to_string(&config).unwrap();
    text_of_config.push_str(&format!(
        "\n[notifiers.other]\ntype = \"webhook\"\nurl = \"{}\"\n",
        other.url("/other")
    ));
    std::fs::write(&config, text_of_config).unwrap();
    let marker = dir.path().join("started");
    let mut holder = klaxon(&config);
    holder
        .args(["exec", "--job", "nightly", "--", "sh", "-c"])
        .arg(format!("touch {}; sleep 3", marker.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut holder = tokio::process::Command::from(holder).spawn().unwrap();
    while !marker.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The lock is held, yet --no-lock runs; --notify sends to `other` instead of `hook`.
    let mut cmd = klaxon(&config);
    cmd.args([
        "exec",
        "--job",
        "nightly",
        "--no-lock",
        "--retries",
        "0",
        "--notify",
        "other",
        "--",
        "sh",
        "-c",
        "echo ran; exit 4",
    ]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ran\n");
    assert!(
        !text(&out.stderr).contains("still running"),
        "{}",
        text(&out.stderr)
    );
    let got = other.wait_for(1, Duration::from_secs(10)).await;
    let alert = got[0].json();
    assert_eq!(alert["job"].as_str(), Some("nightly"));
    assert_eq!(alert["event"].as_str(), Some("failure"));
    assert_eq!(alert["attempts"].as_u64(), Some(1));
    assert_eq!(alert["max_attempts"].as_u64(), Some(1));
    assert!(
        hook.requests()
            .iter()
            .all(|r| r.json()["event"].as_str() != Some("failure")),
        "the job's own notifier got the failure too"
    );
    assert_eq!(holder.wait().await.unwrap().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_does_not_block_the_next_exec() {
    let hook = Server::start(|_| Response::status(200)).await;
    let (dir, config) = setup(&hook.url("/hook"));
    let marker = dir.path().join("started");
    let mut holder = klaxon(&config);
    holder
        .args(["exec", "--job", "nightly", "--", "sh", "-c"])
        .arg(format!("touch {}; sleep 30", marker.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut holder = holder.spawn().unwrap();
    while !marker.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGKILL: klaxon gets no chance to unlock anything.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let lock = dir.path().join("state/locks/nightly.lock");
    assert!(lock.exists(), "the lock file stays behind");
    let mut next = klaxon(&config);
    next.args(["exec", "--job", "nightly", "--", "sh", "-c", "echo ran"]);
    let out = output(next).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ran\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_exits_124_and_kills_the_whole_group() {
    let hook = Server::start(|_| Response::status(200)).await;
    let (dir, config) = setup(&hook.url("/hook"));
    let pid_file = dir.path().join("pid");
    let mut cmd = klaxon(&config);
    cmd.args([
        "exec",
        "--job",
        "slow",
        "--timeout",
        "500ms",
        "--",
        "sh",
        "-c",
    ])
    .arg(format!(
        "echo $$ > {}; sleep 30 & sleep 30; wait",
        pid_file.display()
    ));
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("timed out after 500ms"));
    // The shell led its own group; nothing of it is left.
    let group: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(live_members(group), 0);
    let alert = hook.requests()[0].json();
    assert_eq!(alert["summary"].as_str(), Some("timed out after 500ms"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_pings_start_then_the_exit_code_with_one_run_id() {
    let hook = Server::start(|_| Response::status(200)).await;
    let hc = Server::start(|_| Response::status(200)).await;
    let (_dir, config) = setup(&hook.url("/hook"));
    let url = hc.url("/ping/0c4b");
    let rid = |r: &Request| r.path.split_once("rid=").unwrap().1.to_owned();

    let mut cmd = klaxon(&config);
    cmd.args(["exec", "--job", "other", "--heartbeat", &url, "--", "true"]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(0));
    let mut cmd = klaxon(&config);
    cmd.args([
        "exec",
        "--job",
        "other",
        "--heartbeat",
        &url,
        "--retries",
        "1",
    ])
    .args(["--", "sh", "-c", "echo broken >&2; exit 3"]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(!text(&out.stderr).contains("0c4b"), "{}", text(&out.stderr));

    let got = hc.requests();
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(got[0].path.starts_with("/ping/0c4b/start?rid="));
    assert!(got[1].path.starts_with("/ping/0c4b/0?rid="));
    assert_eq!(rid(&got[0]), rid(&got[1]));
    assert!(got[1].body.is_empty());
    // Two tries, one run: one start, one end.
    assert!(got[2].path.starts_with("/ping/0c4b/start?rid="));
    assert!(got[3].path.starts_with("/ping/0c4b/3?rid="));
    assert_eq!(rid(&got[2]), rid(&got[3]));
    assert_ne!(rid(&got[0]), rid(&got[2]));
    assert_eq!(got[3].text(), "exit 3\nbroken\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_before_running() {
    let hook = Server::start(|_| Response::status(200)).await;
    let (dir, config) = setup(&hook.url("/hook"));
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    for flags in [
        &["--notify", "nosuch"][..],
        &["--heartbeat", "ftp://secret-token@host/x"][..],
        &["--timeout", "soon"][..],
    ] {
        let mut cmd = klaxon(&config);
        cmd.args(["exec", "--job", "other"])
            .args(flags)
            .args(["--", "sh", "-c", &touch]);
        let out = output(cmd).await;
        assert_eq!(out.status.code(), Some(2), "{flags:?}");
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("secret-token"), "{stderr}");
        assert!(!marker.exists(), "{flags:?} ran the command");
        if flags[0] == "--notify" {
            assert!(
                stderr.contains("`--notify`: no notifier `nosuch`; notifiers: hook"),
                "{stderr}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_config_or_with_a_broken_one_the_command_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = common::klaxon();
    cmd.env("HOME", dir.path())
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .current_dir(dir.path())
        .args([
            "exec",
            "--job",
            "bare",
            "--retries",
            "0",
            "--",
            "sh",
            "-c",
            "echo hi; exit 4",
        ]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(text(&out.stdout), "hi\n");
    assert!(text(&out.stderr).contains("no config file"));
    assert!(dir.path().join("state/klaxon/locks/bare.lock").exists());

    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[jobs.x]\nschedule = 5\n").unwrap();
    let mut cmd = klaxon(&broken);
    cmd.env("HOME", dir.path())
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .args([
            "exec",
            "--job",
            "bare",
            "--retries",
            "0",
            "--",
            "sh",
            "-c",
            "exit 5",
        ]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(5));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("broken.toml:2:"), "{stderr}");
    assert!(stderr.contains("running `bare` anyway"), "{stderr}");
}

/// Starts `klaxon exec --job other ARGS… -- sh -c LINE` without waiting for it.
fn spawn_exec(config: &Path, args: &[&str], line: &str) -> tokio::process::Child {
    let mut cmd = klaxon(config);
    cmd.args(["exec", "--job", "other"])
        .args(args)
        .args(["--", "sh", "-c", line]);
    tokio::process::Command::from(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn wait_for_file(file: &Path) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(s) = std::fs::read_to_string(file)
            && s.ends_with('\n')
        {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "`{}` was never written",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn signal(child: &tokio::process::Child, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, signal).unwrap();
}

/// SIGTERM in the delay after a failed first try: exec exits 143 at once, the run is
/// `interrupted` in history, no one is alerted, and the heartbeat hears only `/start`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_between_tries_exits_143_and_alerts_no_one() {
    let hook = Server::start(|_| Response::status(200)).await;
    let hc = Server::start(|_| Response::status(200)).await;
    let (dir, config) = setup(&hook.url("/hook"));
    let tried = dir.path().join("tried");
    let url = hc.url("/ping/0c4b");
    let child = spawn_exec(
        &config,
        &["--retries", "2", "--heartbeat", &url],
        &format!("echo try >> '{}'; exit 1", tried.display()),
    );
    wait_for_file(&tried).await;
    // Inside the 2 s delay before the second try.
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("exec did not stop within 10 s of SIGTERM")
        .unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&tried).unwrap(), "try\n");
    assert!(hook.requests().is_empty(), "{:?}", hook.requests());
    let pings: Vec<String> = hc.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(pings.len(), 1, "{pings:?}");
    assert!(pings[0].starts_with("/ping/0c4b/start?rid="), "{pings:?}");
    let runs = history(&config, "other");
    assert_eq!(runs[0]["skipped"], "interrupted", "{runs:#}");
    assert_eq!(
        runs[0]["summary"], "interrupted by shutdown after try 1 of 3: exit 1",
        "{runs:#}"
    );
}

/// SIGTERM then at once SIGINT to an exec whose command ignores TERM: exec does not wait
/// out the 2 s grace; it SIGKILLs the group and exits `128 + N`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_kills_the_group_and_exits_at_once() {
    let hook = Server::start(|_| Response::status(200)).await;
    let (dir, config) = setup(&hook.url("/hook"));
    let group_file = dir.path().join("group");
    let child = spawn_exec(
        &config,
        &[],
        &format!(
            "trap '' TERM; sleep 60 & echo $$ > '{}'; wait",
            group_file.display()
        ),
    );
    let group: u32 = wait_for_file(&group_file).await.trim().parse().unwrap();
    let asked = std::time::Instant::now();
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    signal(&child, nix::sys::signal::Signal::SIGINT);
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("exec did not stop within 10 s")
        .unwrap();
    let took = asked.elapsed();
    // 128 + whichever signal klaxon saw second (both were sent at once).
    assert!(
        matches!(out.status.code(), Some(130 | 143)),
        "{:?}: {}",
        out.status,
        text(&out.stderr)
    );
    assert!(
        took < Duration::from_millis(1500),
        "took {took:?}: the second signal waited for the group's grace"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while live_members(group) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the command's group outlived exec"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(hook.requests().is_empty(), "{:?}", hook.requests());
}
