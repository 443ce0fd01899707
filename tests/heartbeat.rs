//! Heartbeat pings sent by the real binary to a local Healthchecks-style receiver:
//! `klaxon once` pings `/start` then success or `/fail` with the output, `--dry-run`
//! sends nothing, and the agent pings its own heartbeat until it stops. The ping URL
//! never appears in what klaxon prints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use klaxon_testkit::{Request, Response, Server};

mod common;
use common::{output, text};

fn klaxon() -> Command {
    let mut cmd = common::klaxon();
    cmd.env("RUST_LOG", "klaxon=debug,warn");
    cmd
}

fn config(dir: &std::path::Path, ping: &str, shell: &str, agent_beat: &str) -> std::path::PathBuf {
    let path = dir.join("klaxon.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[agent]
name = "ci"
state_dir = "state"
timezone = "UTC"
{agent_beat}

[jobs.backup]
every = "1h"
heartbeat = "{ping}"
retry = {{ attempts = 1 }}
[jobs.backup.check]
type = "script"
shell = "{shell}"
"#
        ),
    )
    .unwrap();
    path
}

fn rid(r: &Request) -> String {
    r.path
        .split_once("rid=")
        .map(|(_, rid)| rid.to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_pings_start_then_success_or_fail_with_the_output() {
    let hc = Server::start(|_| Response::status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let ping = hc.url("/ping/5bf66975?create=1");

    let cfg = config(dir.path(), &ping, "echo all fine", "");
    let mut cmd = klaxon();
    cmd.arg("--config").arg(&cfg).args(["once", "backup"]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // `once` waits for its pings before it exits.
    let got = hc.requests();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[0]
            .path
            .starts_with("/ping/5bf66975/start?create=1&rid=")
    );
    assert!(got[1].path.starts_with("/ping/5bf66975?create=1&rid="));
    assert_eq!(rid(&got[0]), rid(&got[1]));
    assert_eq!(rid(&got[0]).len(), 36);

    let cfg = config(dir.path(), &ping, "echo disk on fire; exit 2", "");
    let mut cmd = klaxon();
    cmd.arg("--config").arg(&cfg).args(["once", "backup"]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    let got = hc.requests();
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(
        got[2]
            .path
            .starts_with("/ping/5bf66975/start?create=1&rid=")
    );
    assert!(got[3].path.starts_with("/ping/5bf66975/fail?create=1&rid="));
    assert_eq!(rid(&got[2]), rid(&got[3]));
    assert_ne!(rid(&got[0]), rid(&got[2]));
    assert_eq!(got[3].text(), "disk on fire\ndisk on fire\n");
    for out in [text(&out.stdout), text(&out.stderr)] {
        assert!(!out.contains("5bf66975"), "the ping URL leaked:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirected_ping_is_not_followed_nor_retried() {
    let target = Server::start(|_| Response::status(200)).await;
    let location = target.url("/secret-path?token=abc");
    let hc = Server::start(move |_| Response::status(301).header("Location", &location)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &hc.url("/ping/5bf66975"), "echo all fine", "");
    let mut cmd = klaxon();
    cmd.arg("--config").arg(&cfg).args(["once", "backup"]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // `/start` and the success ping, each once: a 3xx is not retried.
    assert_eq!(hc.requests().len(), 2, "{:#?}", hc.requests());
    assert!(target.requests().is_empty());
    let stderr = text(&out.stderr);
    let expected = format!(
        "heartbeat ping not sent: HTTP 301 Moved Permanently: redirect to host `{}` is not followed; use the final URL",
        target.addr()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!stderr.contains("secret-path") && !stderr.contains("token=abc"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_the_pings_and_sends_none() {
    let hc = Server::start(|_| Response::status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &hc.url("/ping/5bf66975"), "exit 2", "");
    let mut cmd = klaxon();
    cmd.arg("--config")
        .arg(&cfg)
        .args(["once", "backup", "--dry-run"]);
    let out = output(cmd).await;
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("[dry-run] would ping the heartbeat of `backup`: start"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[dry-run] would ping the heartbeat of `backup`: fail"),
        "{stdout}"
    );
    assert!(!stdout.contains("5bf66975"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(hc.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_pings_its_own_heartbeat_until_it_stops() {
    let hc = Server::start(|_| Response::status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let beat = format!(
        "heartbeat = {{ url = \"{}\", every = \"300ms\" }}",
        hc.url("/agent-7f3a")
    );
    let cfg = config(dir.path(), &hc.url("/job-7f3a"), "true", &beat);
    let log = dir.path().join("agent.log");
    let mut agent = klaxon()
        .arg("--config")
        .arg(&cfg)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // The job's first run pings twice; the agent beats at start and every 300 ms.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let beats = |hc: &Server| {
        hc.requests()
            .iter()
            .filter(|r| r.path == "/agent-7f3a")
            .count()
    };
    while beats(&hc) < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:#?}",
            hc.requests()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || agent.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let stopped = beats(&hc);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(beats(&hc), stopped, "a beat after the agent stopped");
    let job: Vec<_> = hc
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/job-7f3a"))
        .collect();
    assert!(job[0].path.starts_with("/job-7f3a/start?rid="), "{job:#?}");
    assert!(job[1].path.starts_with("/job-7f3a?rid="), "{job:#?}");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        !log.contains("7f3a"),
        "a ping URL leaked into the log:\n{log}"
    );
}
