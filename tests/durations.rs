//! `max_duration` through the binary: a script run by `klaxon once` that takes longer
//! is a warning that says so; a `klaxon exec` command that runs too long, and a
//! heartbeat job's run begun with `/ping/JOB/start` on the agent's listener and not
//! ended in time, alert while they still run; against a local webhook receiver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use klaxon_testkit::{Response, Server};

mod common;
use common::{output, text};

fn klaxon(config: &Path) -> Command {
    let mut cmd = common::klaxon();
    cmd.arg("--config").arg(config);
    cmd
}

/// A config with a webhook notifier and `jobs`, in a temp dir.
fn setup(hook: &str, jobs: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("klaxon.toml");
    let config = format!(
        "[agent]\nname = \"ci\"\nstate_dir = \"state\"\ntimezone = \"UTC\"\n\
         [defaults]\nnotify = [\"hook\"]\nretry = {{ attempts = 1 }}\n\
         [notifiers.hook]\ntype = \"webhook\"\nurl = \"{hook}\"\n{jobs}"
    );
    std::fs::write(&path, config).unwrap();
    (dir, path)
}

/// The warning of a run still going after its 300ms.
fn assert_overdue(request: &klaxon_testkit::Request) {
    let alert = request.json();
    assert_eq!(alert["event"].as_str(), Some("failure"));
    assert_eq!(alert["severity"].as_str(), Some("warning"));
    assert_eq!(
        alert["summary"].as_str(),
        Some("still running after 300ms (max_duration 300ms)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_longer_than_max_duration_is_a_warning() {
    let hook = Server::start(|_| Response::status(200)).await;
    let jobs = "[jobs.backup]\nevery = \"1h\"\nmax_duration = \"100ms\"\n\
                [jobs.backup.check]\ntype = \"script\"\nshell = \"sleep 0.5; echo backed up\"\n\
                [jobs.quick]\nevery = \"1h\"\nmax_duration = \"1m\"\n\
                [jobs.quick.check]\ntype = \"script\"\nshell = \"echo backed up\"\n";
    let (_dir, config) = setup(&hook.url("/hook"), jobs);

    let mut cmd = klaxon(&config);
    cmd.args(["once", "backup"]);
    let out = output(cmd).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with("backup: warning: took ")
            && stdout.contains(" (max_duration 100ms): backed up (1 of 1 attempts"),
        "{stdout}"
    );
    let got = hook.requests();
    assert_eq!(got.len(), 1, "{got:#?}");
    let alert = got[0].json();
    assert_eq!(alert["severity"].as_str(), Some("warning"));
    assert!(
        alert["summary"]
            .as_str()
            .unwrap()
            .contains("(max_duration 100ms)"),
        "{alert:?}"
    );

    // Within its limit: ok.
    let mut cmd = klaxon(&config);
    cmd.args(["once", "quick"]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).starts_with("quick: ok: backed up"));

    // A bad value is located.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("\"100ms\"", "\"soon\""),
    )
    .unwrap();
    let out = klaxon(&config).arg("validate").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("klaxon.toml:13:16: `max_duration`"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_past_max_duration_alerts_while_it_still_runs() {
    let hook = Server::start(|_| Response::status(200)).await;
    // `import` has no table of its own: `[defaults]` apply to it.
    let jobs =
        "[jobs.nightly]\nschedule = \"0 3 * * *\"\n[jobs.nightly.check]\ntype = \"heartbeat\"\n";
    let (dir, config) = setup(&hook.url("/hook"), jobs);
    let go = dir.path().join("go");
    // Runs until the test lets it end.
    let line = format!(
        "while [ ! -e '{}' ]; do sleep 0.05; done; echo done",
        go.display()
    );
    let mut cmd = klaxon(&config);
    cmd.args(["exec", "--job", "import", "--max-duration", "300ms", "--"])
        .args(["sh", "-c", &line]);
    let mut child = tokio::process::Command::from(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let got = hook.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    // The command is still running: the warning came before its end.
    assert!(child.try_wait().unwrap().is_none(), "exec already exited");
    assert_overdue(&got[0]);

    std::fs::write(&go, "").unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // The run as a whole was too long: a warning too, so no second message.
    let out = klaxon(&config)
        .args(["history", "import", "--json"])
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let summaries: Vec<(&str, &str)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["severity"].as_str().unwrap(),
                r["summary"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(summaries.len(), 2, "{runs:#}");
    assert_eq!(
        summaries[1],
        ("warning", "still running after 300ms (max_duration 300ms)")
    );
    assert_eq!(summaries[0].0, "warning");
    assert!(
        summaries[0].1.starts_with("took ")
            && summaries[0].1.ends_with(" (max_duration 300ms): exit 0"),
        "{}",
        summaries[0].1
    );
    assert_eq!(hook.requests().len(), 1, "{:#?}", hook.requests());

    // A quick exec recovers.
    let mut cmd = klaxon(&config);
    cmd.args([
        "exec",
        "--job",
        "import",
        "--max-duration",
        "1m",
        "--",
        "true",
    ]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let got = hook.requests();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(got[1].json()["event"].as_str(), Some("recovery"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_started_without_its_ping_in_time_alerts_while_it_runs() {
    let hook = Server::start(|_| Response::status(200)).await;
    let (dir, config) = setup(
        &hook.url("/hook"),
        "[jobs.nightly]\nevery = \"1h\"\nmax_duration = \"300ms\"\n\
         [jobs.nightly.check]\ntype = \"heartbeat\"\ngrace = \"1h\"\n",
    );
    let text_config = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[agent]\n", "[agent]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(&config, text_config).unwrap();
    let log = dir.path().join("agent.log");
    let _agent = tokio::process::Command::from({
        let mut cmd = klaxon(&config);
        cmd.arg("run")
            .env("RUST_LOG", "klaxon=info,warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        cmd
    })
    .kill_on_drop(true)
    .spawn()
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let addr = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(rest) = text.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let client = reqwest::Client::new();
    let ping = |path: &str| {
        let request = client.post(format!("http://{addr}/ping/nightly{path}"));
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        }
    };

    ping("/start").await;
    let got = hook.wait_for(1, Duration::from_secs(20)).await;
    assert_overdue(&got[0]);

    // The success ping, late: the run was too long, a warning that says so.
    ping("").await;
    let out = klaxon(&config)
        .args(["history", "nightly", "--json"])
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let last = &runs[0];
    assert_eq!(last["severity"].as_str(), Some("warning"), "{runs:#}");
    let summary = last["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("took ") && summary.contains(" (max_duration 300ms): "),
        "{summary}"
    );

    // Started and ended in time: ok, and the alert recovers.
    ping("/start").await;
    ping("").await;
    let got = hook.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(got[1].json()["event"].as_str(), Some("recovery"));
}
