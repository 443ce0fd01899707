//! Edges of delivery, each through the real binary against a loopback receiver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use klaxon_testkit::{Response, Server};

mod common;
use common::{klaxon, output, text};

/// critical → warning → ok: a notifier with `min_severity = "critical"` heard the
/// failure, so it hears the de-escalation and the recovery too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_only_notifier_hears_how_its_alert_ended() {
    let hook = Server::start(|_| Response::ok("ok")).await;
    let dir = tempfile::tempdir().unwrap();
    let code = dir.path().join("code");
    let config = format!(
        r#"[agent]
name = "ci"
state_dir = "{state}"

[notifiers.pager]
type = "webhook"
url = "{url}"
min_severity = "critical"

[jobs.db]
every = "1h"
notify = ["pager"]
retry = {{ attempts = 1 }}
[jobs.db.check]
type = "script"
shell = "exit $(cat {code})"
"#,
        state = dir.path().join("state").display(),
        url = hook.url("/hook"),
        code = code.display(),
    );
    let path = dir.path().join("klaxon.toml");
    std::fs::write(&path, config).unwrap();
    let mut events = Vec::new();
    for (exit, expect) in [("2", 1), ("1", 1), ("0", 0)] {
        std::fs::write(&code, exit).unwrap();
        let mut cmd = klaxon();
        cmd.arg("--config").arg(&path).args(["once", "db"]);
        let out = output(cmd).await;
        assert_eq!(out.status.code(), Some(expect), "{}", text(&out.stderr));
        events = hook
            .wait_for(events.len() + 1, Duration::from_secs(10))
            .await
            .iter()
            .map(|r| {
                let body = r.json();
                format!(
                    "{} {}",
                    body["event"].as_str().unwrap_or("?"),
                    body["severity"].as_str().unwrap_or("?")
                )
            })
            .collect();
    }
    assert_eq!(
        events,
        ["failure critical", "update warning", "recovery ok"],
        "every notifier told about an alert is told how it ended"
    );
}

/// `klaxon run --dry-run` prints what it would re-post to Alertmanager and posts
/// nothing, however often `resend_every` comes round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_never_reposts_to_alertmanager() {
    let am = Server::start(|_| Response::ok("")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"[agent]
name = "ci"
state_dir = "{state}"

[notifiers.am]
type = "alertmanager"
urls = ["{url}"]
resend_every = "1s"

[jobs.db]
every = "1h"
notify = ["am"]
retry = {{ attempts = 1 }}
[jobs.db.check]
type = "script"
shell = "exit 2"
"#,
        state = dir.path().join("state").display(),
        url = am.url(""),
    );
    let path = dir.path().join("klaxon.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = tokio::process::Command::from({
        let mut cmd = klaxon();
        cmd.arg("--config").arg(&path).args(["run", "--dry-run"]);
        cmd
    })
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .kill_on_drop(true)
    .spawn()
    .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let stdout = text(&out.stdout);
    assert!(am.requests().is_empty(), "--dry-run posted to Alertmanager");
    assert!(
        stdout.matches("[dry-run] would send to `am`").count() >= 2,
        "the failure and at least one re-post are printed: {stdout}"
    );
}

/// `attempts = 3`: the first try fails, SIGTERM comes before the second. The run was cut
/// short, not judged: history says `interrupted`, no alert opens, nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_between_tries_sends_nothing_and_records_interrupted() {
    let hook = Server::start(|_| Response::ok("ok")).await;
    let dir = tempfile::tempdir().unwrap();
    let tried = dir.path().join("tried");
    let config = format!(
        r#"[agent]
name = "ci"
state_dir = "{state}"

[notifiers.hook]
type = "webhook"
url = "{url}"

[jobs.db]
every = "1h"
notify = ["hook"]
retry = {{ attempts = 3, initial = "5s", max = "5s", jitter = 0.0 }}
[jobs.db.check]
type = "script"
shell = "echo try >> '{tried}'; exit 2"
"#,
        state = dir.path().join("state").display(),
        url = hook.url("/hook"),
        tried = tried.display(),
    );
    let path = dir.path().join("klaxon.toml");
    std::fs::write(&path, config).unwrap();
    let log = dir.path().join("agent.log");
    let mut agent = tokio::process::Command::from({
        let mut cmd = klaxon();
        cmd.arg("--config").arg(&path).arg("run");
        cmd
    })
    .stdout(std::process::Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap())
    .kill_on_drop(true)
    .spawn()
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !tried.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first try never ran:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Well inside the 5 s delay before the second try.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = nix::unistd::Pid::from_raw(agent.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), agent.wait())
        .await
        .expect("the agent did not stop within 15 s of SIGTERM")
        .unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert_eq!(std::fs::read_to_string(&tried).unwrap(), "try\n", "{log}");
    assert!(
        hook.requests().is_empty(),
        "a message was sent for a run the shutdown cut short: {:?}\n{log}",
        hook.requests().iter().map(|r| r.text()).collect::<Vec<_>>()
    );

    let mut cmd = klaxon();
    cmd.arg("--config")
        .arg(&path)
        .args(["history", "db", "--json"]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["skipped"], "interrupted", "{runs:#?}");
    assert_eq!(runs[0]["severity"], "interrupted", "{runs:#?}");
    assert_eq!(runs[0]["attempts"], 1, "{runs:#?}");
    assert_eq!(
        runs[0]["summary"], "interrupted by shutdown after try 1 of 3: exit 2",
        "{runs:#?}"
    );

    let mut cmd = klaxon();
    cmd.arg("--config").arg(&path).args(["status", "--json"]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["job"], "db");
    assert_eq!(rows[0]["alert_open"], false, "{rows:#?}");
    assert_eq!(rows[0]["consecutive_failures"], 0, "{rows:#?}");
    assert_eq!(rows[0]["severity"], "pending", "{rows:#?}");
}

/// An address nothing listens on: bound, then let go.
fn dead_addr() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// `urls = [up, down]` with `down` a closed port: the replica that is up took the alert,
/// so it is delivered (once, never retried) and nothing waits in the outbox; the one
/// that is down is logged by its `host:port` only. `notify test` says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_alertmanager_replica_taking_the_alert_delivers_it() {
    let up = Server::start(|_| Response::ok("")).await;
    let down = dead_addr();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"[agent]
name = "ci"
state_dir = "{state}"

[notifiers.am]
type = "alertmanager"
urls = ["{up}", "http://{down}/secret-prefix-7f3a/"]

[jobs.db]
every = "1h"
notify = ["am"]
retry = {{ attempts = 1 }}
[jobs.db.check]
type = "script"
shell = "exit 2"
"#,
        state = dir.path().join("state").display(),
        up = up.url(""),
    );
    let path = dir.path().join("klaxon.toml");
    std::fs::write(&path, config).unwrap();

    let mut cmd = klaxon();
    cmd.arg("--config").arg(&path).args(["once", "db"]);
    let out = output(cmd).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the job failed: {stderr}");
    assert!(!stderr.contains("not delivered yet"), "{stderr}");
    let requests = up.requests();
    assert_eq!(requests.len(), 1, "posted once, never retried");
    assert_eq!(requests[0].path, "/api/v2/alerts");
    assert_eq!(requests[0].json()[0]["labels"]["job"], "db");
    let warning = stderr
        .lines()
        .find(|l| l.contains("replica did not take the message"))
        .unwrap_or_else(|| panic!("no replica warning in:\n{stderr}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains(&format!("replica={down}")), "{warning}");
    assert!(!stderr.contains("secret-prefix"), "{stderr}");

    let mut cmd = klaxon();
    cmd.arg("--config").arg(&path).args(["status", "--json"]);
    let out = output(cmd).await;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["job"], "db");
    assert_eq!(rows[0]["undelivered"], 0, "{rows}");
    assert_eq!(rows[0]["given_up"], 0, "{rows}");

    let mut cmd = klaxon();
    cmd.arg("--config")
        .arg(&path)
        .args(["notify", "test", "am"]);
    let out = output(cmd).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with("am (alertmanager): delivered\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "  replica `{down}` did not take it: cannot connect"
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("secret-prefix"), "{stdout}");
    assert_eq!(up.requests().len(), 2);
}
