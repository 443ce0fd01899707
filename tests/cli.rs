//! End-to-end tests of the `klaxon` binary: each test writes a config, starts the real
//! executable, and talks to it through real loopback servers (the checked target and a
//! Slack-style receiver). Agents are killed on drop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use klaxon_testkit::{Request, Response, Server};

mod common;
use common::text;

fn klaxon() -> Command {
    let mut cmd = common::klaxon();
    cmd.env(
        "RUST_LOG",
        "klaxon=debug,klaxon_checks=debug,klaxon_notifiers=debug,warn",
    );
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run klaxon")
}

/// A temp dir with a `klaxon.toml` in it.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("klaxon.toml"), config).unwrap();
        Self { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("klaxon.toml")
    }

    fn agent(&self, name: &str) -> Agent {
        self.agent_with(name, &[])
    }

    fn agent_with(&self, name: &str, args: &[&str]) -> Agent {
        Agent::start(
            &self.config(),
            &self.dir.path().join(format!("{name}.log")),
            args,
        )
    }

    fn rewrite(&self, config: &str) {
        std::fs::write(self.config(), config).unwrap();
    }
}

/// A running `klaxon run`, killed on drop; its stderr goes to a file.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(config: &Path, log: &Path, args: &[&str]) -> Self {
        let stderr = std::fs::File::create(log).unwrap();
        let child = klaxon()
            .arg("--config")
            .arg(config)
            .arg("run")
            .args(args)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start klaxon run");
        Self {
            child,
            log: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// SIGTERM, then the exit code (within 15 s).
    fn stop(mut self) -> i32 {
        self.signal("TERM");
        for _ in 0..150 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("agent did not stop within 15 s of SIGTERM:\n{}", self.log());
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn slack_text(r: &Request) -> String {
    r.json()["text"]
        .as_str()
        .expect("slack payload has text")
        .to_owned()
}

fn spine_config(target: &str, slack: &str) -> String {
    format!(
        r#"
[agent]
name = "ci"
state_dir = "state"
timezone = "UTC"

[defaults]
notify = ["slack"]

[notifiers.slack]
type = "slack"
webhook_url = "{slack}"

[jobs.api]
every = "1s"
timeout = "2s"
retry = {{ attempts = 3, initial = "100ms", max = "200ms", multiplier = 2.0, jitter = 0.0 }}
[jobs.api.check]
type = "http"
url = "{target}"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_then_a_recovery_each_send_exactly_one_message() {
    let target = Server::sequence(
        [500, 500, 500].map(Response::status),
        Response::ok("all good"),
    )
    .await;
    let slack = Server::start(|_| Response::ok("ok")).await;
    let setup = Setup::new(&spine_config(&target.url("/health"), &slack.url("/hook")));
    let agent = setup.agent("agent");

    let got = slack.wait_for(2, Duration::from_secs(20)).await;
    // Further runs keep passing: nothing else may be sent.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let all = slack.requests();
    assert_eq!(
        all.len(),
        2,
        "{:#?}",
        all.iter().map(slack_text).collect::<Vec<_>>()
    );

    let failure = slack_text(&got[0]);
    assert!(failure.starts_with("DOWN api on ci: HTTP 500"), "{failure}");
    for fact in [
        "Attempts: 3 of 3",
        "Reason: HTTP 500",
        "Elapsed: ",
        "Check: http ",
        "Severity: critical",
    ] {
        assert!(failure.contains(fact), "missing {fact:?} in:\n{failure}");
    }
    assert!(
        got[0].json()["blocks"]
            .as_array()
            .is_some_and(|b| !b.is_empty())
    );

    let recovery = slack_text(&got[1]);
    assert!(
        recovery.starts_with("RECOVERED api on ci after "),
        "{recovery}"
    );
    assert!(recovery.contains("Downtime: "), "{recovery}");
    let id = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("Alert: "))
            .map(str::to_owned)
    };
    assert_eq!(
        id(&failure),
        id(&recovery),
        "failure and recovery share the alert id"
    );
    assert!(id(&failure).is_some());

    // 3 tries in the first run, then one per run.
    assert!(target.requests().len() >= 4);
    assert_eq!(agent.stop(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_neither_repeats_nor_forgets_an_open_alert() {
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
    let target = Server::start(move |_| {
        if flag.load(Ordering::SeqCst) {
            Response::ok("ok")
        } else {
            Response::status(503)
        }
    })
    .await;
    let slack = Server::start(|_| Response::ok("ok")).await;
    let setup = Setup::new(&spine_config(&target.url("/health"), &slack.url("/hook")));

    let first = setup.agent("first");
    slack.wait_for(1, Duration::from_secs(20)).await;
    // Let it run (and fail) a couple more times, then kill it without warning.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first.kill();

    let mut second = setup.agent("second");
    let before = target.requests().len();
    while target.requests().len() < before + 6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        slack.requests().len(),
        1,
        "the restarted agent re-sent the open alert"
    );
    assert!(second.is_running());

    healthy.store(true, Ordering::SeqCst);
    let got = slack.wait_for(2, Duration::from_secs(20)).await;
    let recovery = slack_text(&got[1]);
    assert!(
        recovery.starts_with("RECOVERED api on ci after "),
        "{recovery}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(slack.requests().len(), 2);
    assert_eq!(second.stop(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_is_logged_and_the_message_delivered_later() {
    let target = Server::start(|_| Response::status(500)).await;
    let slack_up = Arc::new(AtomicBool::new(false));
    let flag = slack_up.clone();
    let slack = Server::start(move |_| {
        if flag.load(Ordering::SeqCst) {
            Response::ok("ok")
        } else {
            Response::status(503).body("upstream down")
        }
    })
    .await;
    let setup = Setup::new(&spine_config(&target.url("/health"), &slack.url("/hook")));
    let mut agent = setup.agent("agent");
    slack.wait_for(1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = agent.log();
    assert!(
        log.lines()
            .any(|l| l.contains("delivery failed") && l.contains("job=api")),
        "{log}"
    );
    assert!(
        !log.contains(&slack.url("/hook")),
        "the webhook URL leaked into the log"
    );
    assert!(agent.is_running());

    slack_up.store(true, Ordering::SeqCst);
    // The outbox retries with backoff (5 s after the first failure).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let delivered = slack
            .requests()
            .iter()
            .filter(|r| slack_text(r).starts_with("DOWN api"))
            .count();
        if delivered >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never redelivered:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(agent.stop(), 0);
}

/// SIGTERM in the 1 min delay after a failed first try: the agent stops at once, starts
/// no second try, and sends nothing for the run it cut short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_retry_delay_stops_promptly_and_sends_nothing() {
    let target = Server::start(|_| Response::status(500)).await;
    let slack = Server::start(|_| Response::ok("ok")).await;
    let config = spine_config(&target.url("/health"), &slack.url("/hook")).replace(
        "initial = \"100ms\", max = \"200ms\"",
        "initial = \"1m\", max = \"1m\"",
    );
    let setup = Setup::new(&config);
    let agent = setup.agent("agent");
    target.wait_for(1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = std::time::Instant::now();
    let log = agent.log.clone();
    assert_eq!(agent.stop(), 0);
    // Far less than the 1 min retry delay or the 10 s grace.
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "took {:?}",
        stopping.elapsed()
    );
    assert!(
        slack.requests().is_empty(),
        "{}",
        std::fs::read_to_string(log).unwrap()
    );
    assert_eq!(
        target.requests().len(),
        1,
        "a try started after the shutdown signal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_bounds_checks_across_all_jobs() {
    // Each request takes 400 ms; with one permit for three jobs, no two overlap.
    let target = Server::start(|_| Response::ok("ok").delay(Duration::from_millis(400))).await;
    let mut config = String::from("[agent]\nstate_dir = \"state\"\nmax_concurrent = 1\n");
    for job in ["a", "b", "c"] {
        config.push_str(&format!(
            "[jobs.{job}]\nevery = \"1s\"\n[jobs.{job}.check]\ntype = \"http\"\nurl = \"{}\"\n",
            target.url(&format!("/{job}"))
        ));
    }
    let setup = Setup::new(&config);
    let agent = setup.agent("agent");
    let got = target.wait_for(6, Duration::from_secs(20)).await;
    for pair in got.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(390),
            "two checks overlapped: {gap:?} apart"
        );
    }
    let mut paths: Vec<_> = got.iter().map(|r| r.path.clone()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths, ["/a", "/b", "/c"], "every job got its turn");
    assert_eq!(agent.stop(), 0);
}

#[test]
fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let setup = Setup::new(&format!(
        "[agent]\nstate_dir = \"state\"\n[jobs.stuck]\nevery = \"1m\"\ntimeout = \"1m\"\n[jobs.stuck.check]\ntype = \"script\"\nshell = \"trap '' TERM; echo started > '{}'; sleep 60\"\n",
        started.display()
    ));
    // The script ignores SIGTERM, so the first signal alone would wait for its SIGKILL.
    let agent = setup.agent("agent");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the script never started:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    agent.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    let asked = std::time::Instant::now();
    let code = agent.stop();
    assert_eq!(
        code,
        130,
        "{}",
        std::fs::read_to_string(setup.dir.path().join("agent.log")).unwrap()
    );
    // Well before the 10 s grace for the running check would have run out.
    assert!(asked.elapsed() < Duration::from_secs(5));
}

fn http_job(name: &str, url: &str) -> String {
    format!(
        "[jobs.{name}]\nevery = \"1s\"\n[jobs.{name}.check]\ntype = \"http\"\nurl = \"{url}\"\n"
    )
}

async fn wait_for_log(agent: &Agent, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let log = agent.log();
        if log.contains(needle) {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no `{needle}` in the log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_a_broken_config_keeps_the_old_one_running() {
    let old = Server::start(|_| Response::ok("ok")).await;
    let new = Server::start(|_| Response::ok("ok")).await;
    let base = "[agent]\nstate_dir = \"state\"\n";
    let setup = Setup::new(&format!("{base}{}", http_job("old", &old.url("/"))));
    let mut agent = setup.agent("agent");
    old.wait_for(1, Duration::from_secs(20)).await;

    setup.rewrite(&format!("{base}[jobs.old]\nevery = \"soon\"\n"));
    agent.signal("HUP");
    let log = wait_for_log(&agent, "config reload failed").await;
    assert!(
        log.contains("klaxon.toml:4:9: `every`: expected a duration"),
        "{log}"
    );
    let before = old.requests().len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(old.requests().len() > before, "the old job stopped running");
    assert!(agent.is_running());

    setup.rewrite(&format!(
        "{base}{}{}",
        http_job("old", &old.url("/")),
        http_job("new", &new.url("/"))
    ));
    agent.signal("HUP");
    new.wait_for(1, Duration::from_secs(15)).await;
    wait_for_log(&agent, "config reloaded").await;
    assert_eq!(agent.stop(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reloads_when_the_config_file_changes() {
    let first = Server::start(|_| Response::ok("ok")).await;
    let second = Server::start(|_| Response::ok("ok")).await;
    let base = "[agent]\nstate_dir = \"state\"\n";
    let setup = Setup::new(&format!("{base}{}", http_job("first", &first.url("/"))));
    let agent = setup.agent_with("agent", &["--watch"]);
    first.wait_for(1, Duration::from_secs(20)).await;
    setup.rewrite(&format!("{base}{}", http_job("second", &second.url("/"))));
    second.wait_for(1, Duration::from_secs(15)).await;
    wait_for_log(&agent, "config reloaded").await;
    // The removed job stops.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = first.requests().len();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(first.requests().len(), seen, "a removed job kept running");
    assert_eq!(agent.stop(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_runs_one_job_alerts_and_sets_the_exit_code() {
    let target = Server::start(|r| {
        if r.path == "/up" {
            Response::ok("ok")
        } else {
            Response::status(503)
        }
    })
    .await;
    let slack = Server::start(|_| Response::ok("ok")).await;
    let config = format!(
        "{}\n[jobs.web]\nevery = \"1h\"\n[jobs.web.check]\ntype = \"http\"\nurl = \"{}\"\n",
        spine_config(&target.url("/down"), &slack.url("/hook")),
        target.url("/up")
    );
    let setup = Setup::new(&config);

    let ok = run(klaxon()
        .arg("--config")
        .arg(setup.config())
        .args(["once", "web"]));
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(
        text(&ok.stdout).starts_with("web: ok: HTTP 200"),
        "{}",
        text(&ok.stdout)
    );

    let failed =
        run(klaxon()
            .arg("--config")
            .arg(setup.config())
            .args(["once", "api", "--no-retry"]));
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed.stderr));
    let stdout = text(&failed.stdout);
    assert!(stdout.starts_with("api: critical: HTTP 503"), "{stdout}");
    assert!(stdout.contains("(1 of 1 attempts"), "{stdout}");
    // `once` waited for the message to be delivered before exiting.
    let got = slack.requests();
    assert_eq!(got.len(), 1);
    assert!(slack_text(&got[0]).contains("Attempts: 1 of 1"));

    let dry = run(klaxon()
        .arg("--config")
        .arg(setup.config())
        .args(["once", "api", "--dry-run"]));
    assert_eq!(dry.status.code(), Some(1));
    assert!(text(&dry.stdout).contains("[dry-run] would send to `slack` (slack):\nDOWN api on ci"));
    assert_eq!(slack.requests().len(), 1, "--dry-run sent a message");

    let unknown = run(klaxon()
        .arg("--config")
        .arg(setup.config())
        .args(["once", "nope"]));
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("no job `nope`"),
        "{}",
        text(&unknown.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_history_read_the_store() {
    let target = Server::start(|_| Response::status(503)).await;
    // A receiver that is down: the message stays undelivered.
    let slack = Server::start(|_| Response::status(500)).await;
    let config = format!(
        "{}\n[jobs.idle]\nschedule = \"0 3 * * *\"\n[jobs.idle.check]\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = 9\n",
        spine_config(&target.url("/health"), &slack.url("/hook"))
    );
    let setup = Setup::new(&config);
    let once =
        run(klaxon()
            .arg("--config")
            .arg(setup.config())
            .args(["once", "api", "--no-retry"]));
    assert_eq!(once.status.code(), Some(1), "{}", text(&once.stderr));

    let out = run(klaxon()
        .arg("--config")
        .arg(setup.config())
        .args(["status", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let api = &status[0];
    assert_eq!(api["job"], "api");
    assert_eq!(api["severity"], "critical");
    assert_eq!(api["consecutive_failures"], 1);
    assert_eq!(api["alert_open"], true);
    assert_eq!(api["undelivered"], 1);
    assert_eq!(api["given_up"], 0);
    assert!(api["last_run"].as_str().unwrap().ends_with("+00:00"));
    let idle = &status[1];
    assert_eq!(idle["severity"], "pending");
    assert_eq!(idle["last_run"], serde_json::Value::Null);
    assert!(idle["next_run"].as_str().unwrap().contains("T03:00:00"));
    assert!(!text(&out.stdout).contains(&slack.url("/hook")));

    let table = run(klaxon().arg("--config").arg(setup.config()).arg("status"));
    let table = text(&table.stdout);
    assert!(table.starts_with("JOB "), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("api ") && l.contains("critical") && l.contains("open")),
        "{table}"
    );

    let history = run(klaxon()
        .arg("--config")
        .arg(setup.config())
        .args(["history", "api", "--json"]));
    let runs: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["severity"], "critical");
    assert_eq!(runs[0]["attempts"], 1);
    assert!(runs[0]["summary"].as_str().unwrap().starts_with("HTTP 503"));
    assert_eq!(runs[0]["skipped"], serde_json::Value::Null);
    let unknown = run(klaxon()
        .arg("--config")
        .arg(setup.config())
        .args(["history", "nope"]));
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn a_hanging_target_times_out() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = rt.block_on(Server::start(|_| {
        Response::ok("late").delay(Duration::from_secs(30))
    }));
    let setup = Setup::new(&format!(
        "[agent]\nstate_dir = \"state\"\n[jobs.slow]\nevery = \"1m\"\ntimeout = \"300ms\"\n[jobs.slow.check]\ntype = \"http\"\nurl = \"{}\"\n",
        target.url("/")
    ));
    let out =
        run(klaxon()
            .arg("--config")
            .arg(setup.config())
            .args(["once", "slow", "--no-retry"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("timed out after 300ms"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn jobs_shows_cron_fires_across_both_dst_changes() {
    let setup = Setup::new(
        "[jobs.nightly]\nschedule = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"\n[jobs.nightly.check]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\n",
    );
    let spring = run(klaxon().arg("--config").arg(setup.config()).args([
        "jobs",
        "--next",
        "3",
        "--from",
        "2026-03-28T12:00:00+01:00",
    ]));
    assert_eq!(spring.status.code(), Some(0), "{}", text(&spring.stderr));
    assert_eq!(
        text(&spring.stdout),
        "nightly  30 2 * * *  (Europe/Berlin)\n  2026-03-29T03:00:00+02:00\n  2026-03-30T02:30:00+02:00\n  2026-03-31T02:30:00+02:00\n"
    );
    let autumn = run(klaxon().arg("--config").arg(setup.config()).args([
        "jobs",
        "--next",
        "3",
        "--from",
        "2026-10-24T12:00:00+02:00",
        "--json",
    ]));
    let json: serde_json::Value = serde_json::from_slice(&autumn.stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{
            "job": "nightly",
            "schedule": "30 2 * * *",
            "timezone": "Europe/Berlin",
            "next": ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00", "2026-10-27T02:30:00+01:00"]
        }])
    );
    let bad = run(klaxon()
        .arg("--config")
        .arg(setup.config())
        .args(["jobs", "--from", "tomorrow"]));
    assert_eq!(bad.status.code(), Some(2));
}

/// Every broken config in tests/fixtures/invalid/ fails `validate` with exit 2 and
/// exactly the error in its `.expected` file.
#[test]
fn broken_configs_give_located_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let mut fixtures: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 12, "only {} fixtures", fixtures.len());
    let mut failures = Vec::new();
    for fixture in &fixtures {
        let name = fixture.file_name().unwrap().to_str().unwrap();
        let out = run(klaxon()
            .current_dir(&dir)
            .env_remove("KLAXON_TEST_UNSET_WEBHOOK")
            .args(["validate", "--config", name]));
        let stderr = text(&out.stderr);
        let expected_path = fixture.with_extension("expected");
        if std::env::var_os("KLAXON_BLESS").is_some() {
            std::fs::write(&expected_path, &stderr).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("missing {}", expected_path.display()));
        if out.status.code() != Some(2) || stderr != expected {
            failures.push(format!(
                "{name}: exit {:?}\n--- expected\n{expected}--- got\n{stderr}",
                out.status.code()
            ));
        }
        assert!(!stderr.contains("panicked"), "{name} panicked: {stderr}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn validate_summarises_a_good_config() {
    let setup = Setup::new(
        "[notifiers.console]\ntype = \"log\"\n[jobs.a]\nevery = \"1m\"\nnotify = [\"console\"]\n[jobs.a.check]\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = 22\n",
    );
    let out = run(klaxon().arg("--config").arg(setup.config()).arg("validate"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{}: ok, 1 job, 1 notifier\n", setup.config().display())
    );
}

#[test]
fn a_notifier_that_cannot_be_set_up_is_refused_by_run() {
    let setup = Setup::new(
        "[agent]\nstate_dir = \"state\"\n[notifiers.oncall]\ntype = \"email\"\nhost = \"127.0.0.1\"\ntls = \"starttls\"\nca_file = \"/nonexistent/ca.pem\"\nfrom = \"k@example.com\"\nto = [\"o@example.com\"]\n[jobs.a]\nevery = \"1m\"\nnotify = [\"oncall\"]\n[jobs.a.check]\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = 9\n",
    );
    let out = run(klaxon().arg("--config").arg(setup.config()).arg("run"));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).lines().last().unwrap(),
        "error: notifier `oncall`: cannot read `ca_file` `/nonexistent/ca.pem`: No such file or directory (os error 2)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_heartbeat_alerts_and_a_ping_recovers_it() {
    let slack = Server::start(|_| Response::ok("ok")).await;
    let setup = Setup::new(&format!(
        "[agent]\nname = \"ci\"\nstate_dir = \"state\"\ngroup_wait = \"0s\"\n[defaults]\nnotify = [\"slack\"]\n[notifiers.slack]\ntype = \"slack\"\nwebhook_url = \"{}\"\n[jobs.beat]\nevery = \"2s\"\n[jobs.beat.check]\ntype = \"heartbeat\"\ngrace = \"1s\"\n[jobs.web]\nevery = \"1h\"\n[jobs.web.check]\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = 9\n",
        slack.url("/hook")
    ));
    let agent = setup.agent("agent");
    // No ping by start + 2 s + 1 s grace: the job is down. (`web` alerts too; skip it.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let failure = loop {
        let found = slack
            .requests()
            .into_iter()
            .map(|r| slack_text(&r))
            .find(|t| t.contains(" beat on ci"));
        if let Some(t) = found {
            break t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no heartbeat alert:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        failure.starts_with("DOWN beat on ci: no ping since "),
        "{failure}"
    );
    assert!(
        failure.contains("Check: heartbeat pings with 1s grace"),
        "{failure}"
    );

    let pinged = run(klaxon()
        .arg("--config")
        .arg(setup.config())
        .args(["ping", "beat"]));
    assert_eq!(pinged.status.code(), Some(0), "{}", text(&pinged.stderr));
    assert!(text(&pinged.stdout).starts_with("beat: ping recorded at "));
    // The ping's own process delivered the recovery before exiting.
    let recovery = slack
        .requests()
        .into_iter()
        .map(|r| slack_text(&r))
        .find(|t| t.starts_with("RECOVERED beat on ci after "));
    assert!(
        recovery.is_some(),
        "{:#?}",
        slack.requests().iter().map(slack_text).collect::<Vec<_>>()
    );
    assert_eq!(agent.stop(), 0);

    let active = run(klaxon()
        .arg("--config")
        .arg(setup.config())
        .args(["ping", "web"]));
    assert_eq!(active.status.code(), Some(2));
    assert!(text(&active.stderr).contains("only passive jobs take pings"));
    let unknown = run(klaxon()
        .arg("--config")
        .arg(setup.config())
        .args(["ping", "nope"]));
    assert_eq!(unknown.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dependency_holds_alerts_until_it_recovers() {
    let network_up = Arc::new(AtomicBool::new(false));
    let flag = network_up.clone();
    let network = Server::start(move |_| {
        if flag.load(Ordering::SeqCst) {
            Response::ok("ok")
        } else {
            Response::status(502)
        }
    })
    .await;
    let api = Server::start(|_| Response::status(500)).await;
    let slack = Server::start(|_| Response::ok("ok")).await;
    // `api` fires from the next second on, after `network` has run once.
    let setup = Setup::new(&format!(
        "[agent]\nname = \"ci\"\nstate_dir = \"state\"\ngroup_wait = \"0s\"\n[defaults]\nnotify = [\"slack\"]\nretry = {{ attempts = 1 }}\n[notifiers.slack]\ntype = \"slack\"\nwebhook_url = \"{}\"\n[jobs.network]\nevery = \"1s\"\n[jobs.network.check]\ntype = \"http\"\nurl = \"{}\"\n[jobs.api]\nschedule = \"* * * * * *\"\ndepends_on = [\"network\"]\n[jobs.api.check]\ntype = \"http\"\nurl = \"{}\"\n",
        slack.url("/hook"),
        network.url("/"),
        api.url("/")
    ));
    let agent = setup.agent("agent");
    api.wait_for(3, Duration::from_secs(20)).await;
    let titles = || -> Vec<String> {
        slack
            .requests()
            .iter()
            .map(|r| slack_text(r).lines().next().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(
        titles(),
        ["DOWN network on ci: HTTP 502 Bad Gateway"],
        "{}",
        agent.log()
    );

    network_up.store(true, Ordering::SeqCst);
    let got = slack.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 3);
    let titles = titles();
    assert!(
        titles[1].starts_with("RECOVERED network on ci after "),
        "{titles:?}"
    );
    assert_eq!(titles[2], "DOWN api on ci: HTTP 500 Internal Server Error");
    assert_eq!(agent.stop(), 0);
}

fn fallback_config(slack: &str, hook: &str, target: &str) -> String {
    format!(
        "[agent]\nname = \"ci\"\nstate_dir = \"state\"\ngroup_wait = \"0s\"\n[defaults]\nnotify = [\"slack\"]\nretry = {{ attempts = 1 }}\n[notifiers.slack]\ntype = \"slack\"\nwebhook_url = \"{slack}\"\nfallback = \"hook\"\nfallback_after = \"2s\"\n[notifiers.hook]\ntype = \"webhook\"\nurl = \"{hook}\"\n[jobs.api]\nevery = \"1h\"\n[jobs.api.check]\ntype = \"http\"\nurl = \"{target}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_message_goes_to_the_fallback_at_once() {
    let target = Server::start(|_| Response::status(503)).await;
    let slack = Server::start(|_| Response::status(404).body("no_service")).await;
    let hook = Server::start(|_| Response::ok("ok")).await;
    let setup = Setup::new(&fallback_config(
        &slack.url("/x"),
        &hook.url("/h"),
        &target.url("/"),
    ));
    let agent = setup.agent("agent");
    let got = hook.wait_for(1, Duration::from_secs(20)).await;
    let alert = got[0].json();
    assert_eq!(
        (alert["event"].as_str(), alert["job"].as_str()),
        (Some("failure"), Some("api"))
    );
    let log = agent.log();
    assert!(
        log.contains("delivery refused, not retrying: HTTP 404 Not Found: no_service"),
        "{log}"
    );
    assert!(log.contains("its fallback gets it too"), "{log}");
    assert_eq!(slack.requests().len(), 1);
    assert_eq!(agent.stop(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_keeps_failing_goes_to_the_fallback_after_fallback_after() {
    let target = Server::start(|_| Response::status(503)).await;
    let slack = Server::start(|_| Response::status(500)).await;
    let hook = Server::start(|_| Response::ok("ok")).await;
    let setup = Setup::new(&fallback_config(
        &slack.url("/x"),
        &hook.url("/h"),
        &target.url("/"),
    ));
    let agent = setup.agent("agent");
    slack.wait_for(1, Duration::from_secs(20)).await;
    // The first failure is younger than fallback_after (2 s); the retry 5 s later is not.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(hook.requests().is_empty(), "fallback before fallback_after");
    let got = hook.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].json()["job"], "api");
    assert!(slack.requests().len() >= 2);
    assert_eq!(agent.stop(), 0);
}

/// The receiver is down while alerts pile up and the agent is killed twice: afterwards
/// every message arrives exactly once after the receiver took it, in order per job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_survive_a_receiver_outage_and_two_kills() {
    let up = Arc::new(AtomicBool::new(false));
    let healthy = Arc::new(AtomicBool::new(false));
    // The bodies the receiver answered 2xx to, in order.
    let accepted: Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Arc::default();
    let healthy_flag = healthy.clone();
    let target = Server::start(move |_| {
        if healthy_flag.load(Ordering::SeqCst) {
            Response::ok("ok")
        } else {
            Response::status(500)
        }
    })
    .await;
    let (up_flag, taken) = (up.clone(), accepted.clone());
    let hook = Server::start(move |r| {
        if up_flag.load(Ordering::SeqCst) {
            taken.lock().unwrap().push(r.json());
            Response::ok("ok")
        } else {
            Response::status(503)
        }
    })
    .await;
    let mut config = format!(
        "[agent]\nname = \"ci\"\nstate_dir = \"state\"\n[defaults]\nnotify = [\"hook\"]\nretry = {{ attempts = 1 }}\n[notifiers.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        hook.url("/hook")
    );
    for job in ["a", "b"] {
        config.push_str(&format!(
            "[jobs.{job}]\nevery = \"1s\"\n[jobs.{job}.check]\ntype = \"http\"\nurl = \"{}\"\n",
            target.url("/")
        ));
    }
    let setup = Setup::new(&config);

    // Until the receiver has been tried with `event` of both jobs (each try of a job
    // may be a retry of the same message, so a count of requests is not enough).
    let tried_both = |event: &'static str| {
        let hook = &hook;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let jobs: std::collections::HashSet<String> = hook
                    .requests()
                    .iter()
                    .map(|r| r.json())
                    .filter(|b| b["event"] == event)
                    .map(|b| b["job"].as_str().unwrap_or_default().to_owned())
                    .collect();
                if jobs.len() == 2 {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no {event} of both jobs tried: {jobs:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // Receiver down: both jobs fail, their failures cannot be delivered. Kill.
    let first = setup.agent("first");
    tried_both("failure").await;
    first.kill();
    // Still down: the jobs recover under a second agent, which is killed too.
    healthy.store(true, Ordering::SeqCst);
    let second = setup.agent("second");
    // Until both recoveries are in the outbox behind their failures (2 undelivered
    // messages per job), as `status` reads the store.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let out = run(klaxon()
            .arg("--config")
            .arg(setup.config())
            .args(["status", "--json"]));
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let queued = status
            .as_array()
            .map(|jobs| jobs.iter().filter(|j| j["undelivered"] == 2).count());
        if queued == Some(2) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "recoveries not queued: {status}\n{}",
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    second.kill();
    assert!(accepted.lock().unwrap().is_empty());
    // The receiver comes back; a third agent delivers what the outbox kept.
    up.store(true, Ordering::SeqCst);
    let third = setup.agent("third");
    // The third agent keeps the backoff the stored attempts call for (5 s doubling):
    // on a loaded machine the first two agents may have made a few tries each.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while accepted.lock().unwrap().len() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all delivered:\n{}\ntried: {:?}\nfirst:\n{}\nsecond:\n{}",
            third.log(),
            hook.requests()
                .iter()
                .map(|r| {
                    let b = r.json();
                    format!(
                        "{}/{}",
                        b["job"].as_str().unwrap_or("?"),
                        b["event"].as_str().unwrap_or("?")
                    )
                })
                .collect::<Vec<_>>(),
            std::fs::read_to_string(setup.dir.path().join("first.log")).unwrap_or_default(),
            std::fs::read_to_string(setup.dir.path().join("second.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got: Vec<(String, String, String)> = accepted
        .lock()
        .unwrap()
        .iter()
        .map(|m| {
            let field = |k: &str| m[k].as_str().unwrap().to_owned();
            (field("job"), field("event"), field("id"))
        })
        .collect();
    assert_eq!(got.len(), 4, "each message exactly once: {got:#?}");
    for job in ["a", "b"] {
        let events: Vec<_> = got.iter().filter(|(j, _, _)| j == job).collect();
        assert_eq!(
            events
                .iter()
                .map(|(_, e, _)| e.as_str())
                .collect::<Vec<_>>(),
            ["failure", "recovery"],
            "in order for job {job}: {got:#?}"
        );
        assert_eq!(events[0].2, events[1].2, "one alert id per outage");
    }
    assert_eq!(third.stop(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_honoured() {
    let target = Server::start(|_| Response::status(500)).await;
    let slack = Server::sequence(
        [Response::status(429).header("Retry-After", "3")],
        Response::ok("ok"),
    )
    .await;
    let setup = Setup::new(&format!(
        "[agent]\nstate_dir = \"state\"\n[defaults]\nnotify = [\"slack\"]\nretry = {{ attempts = 1 }}\n[notifiers.slack]\ntype = \"slack\"\nwebhook_url = \"{}\"\n[jobs.api]\nevery = \"1h\"\n[jobs.api.check]\ntype = \"http\"\nurl = \"{}\"\n",
        slack.url("/hook"),
        target.url("/")
    ));
    let agent = setup.agent("agent");
    let got = slack.wait_for(2, Duration::from_secs(30)).await;
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_secs(3),
        "retried {gap:?} after a 429 with Retry-After: 3"
    );
    assert!(
        gap < Duration::from_secs(5),
        "waited {gap:?}, not the 3 s asked (backoff would be 5 s)"
    );
    assert_eq!(got[0].body, got[1].body, "the retry sends the same message");
    assert_eq!(agent.stop(), 0);
}

/// Every job named in the Slack messages received so far.
fn jobs_named(requests: &[Request], jobs: &[String]) -> Vec<String> {
    jobs.iter()
        .filter(|job| {
            let needle = format!("DOWN {job} on ");
            requests.iter().any(|r| slack_text(r).contains(&needle))
        })
        .cloned()
        .collect()
}

fn storm_config(slack: &str, target: &str, jobs: &[String], group_wait: &str) -> String {
    let mut config = format!(
        "[agent]\nstate_dir = \"state\"\ngroup_wait = \"{group_wait}\"\n[defaults]\nnotify = [\"slack\"]\nretry = {{ attempts = 1 }}\n[notifiers.slack]\ntype = \"slack\"\nwebhook_url = \"{slack}\"\n"
    );
    for job in jobs {
        config.push_str(&format!(
            "[jobs.{job}]\nevery = \"1h\"\n[jobs.{job}.check]\ntype = \"http\"\nurl = \"{target}\"\n"
        ));
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_gets_at_most_one_message_a_second() {
    let target = Server::start(|_| Response::status(500)).await;
    let slack = Server::start(|_| Response::ok("ok")).await;
    let jobs: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
    let setup = Setup::new(&storm_config(
        &slack.url("/hook"),
        &target.url("/"),
        &jobs,
        "0s",
    ));
    let agent = setup.agent("agent");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while jobs_named(&slack.requests(), &jobs).len() < jobs.len() {
        assert!(tokio::time::Instant::now() < deadline, "{}", agent.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What queued behind the limit went out together, one message a second at most.
    let got = slack.requests();
    assert!(
        got.len() < jobs.len(),
        "{} messages for {} alerts",
        got.len(),
        jobs.len()
    );
    for pair in got.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(950),
            "two Slack messages {gap:?} apart"
        );
    }
    assert_eq!(agent.stop(), 0);
}

/// A run whose commit waits (another connection holds the store's write lock when the
/// first failure is to be recorded) does not let two Slack messages out closer than the
/// limit: a rate-limited channel is paced by when it is posted to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_commit_does_not_squeeze_two_slack_messages_together() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state/klaxon.db");
    let locked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let target = {
        let (db, locked) = (db.clone(), locked.clone());
        Server::start(move |_| {
            // The first check's request: take the write lock before answering, so the
            // run's commit waits for it, and let go of it 700 ms later.
            if !locked.swap(true, std::sync::atomic::Ordering::SeqCst) {
                let conn = rusqlite::Connection::open(&db).unwrap();
                conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(700));
                    conn.execute_batch("COMMIT").unwrap();
                });
            }
            Response::status(500)
        })
        .await
    };
    let slack = Server::start(|_| Response::ok("ok")).await;
    let jobs: Vec<String> = ["a", "b"].map(String::from).to_vec();
    std::fs::write(
        dir.path().join("klaxon.toml"),
        storm_config(&slack.url("/hook"), &target.url("/"), &jobs, "0s"),
    )
    .unwrap();
    let setup = Setup { dir };
    let agent = setup.agent("agent");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while jobs_named(&slack.requests(), &jobs).len() < jobs.len() {
        assert!(tokio::time::Instant::now() < deadline, "{}", agent.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(locked.load(std::sync::atomic::Ordering::SeqCst));
    let got = slack.requests();
    for pair in got.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(950),
            "two Slack messages {gap:?} apart:\n{}",
            agent.log()
        );
    }
    assert_eq!(agent.stop(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_200_failures_reaches_slack_as_digests_naming_every_job() {
    let target = Server::start(|_| Response::status(503)).await;
    let slack = Server::start(|_| Response::ok("ok")).await;
    let jobs: Vec<String> = (0..200).map(|i| format!("job{i:03}")).collect();
    let setup = Setup::new(&storm_config(
        &slack.url("/hook"),
        &target.url("/"),
        &jobs,
        "2s",
    ));
    let agent = setup.agent("agent");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while jobs_named(&slack.requests(), &jobs).len() < jobs.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "named {} of 200:\n{}",
            jobs_named(&slack.requests(), &jobs).len(),
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got = slack.requests();
    assert!(got.len() <= 5, "{} messages for a storm of 200", got.len());
    for r in &got {
        let body = r.json();
        assert!(body["blocks"].as_array().unwrap().len() <= 50);
    }
    for pair in got.windows(2) {
        assert!(pair[1].at - pair[0].at >= Duration::from_millis(950));
    }
    assert_eq!(agent.stop(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_says_whether_a_message_was_delivered() {
    let up = Server::start(|_| Response::ok("ok")).await;
    let down = Server::start(|_| Response::status(500).body("no")).await;
    let setup = Setup::new(&format!(
        "[agent]\nname = \"ci\"\n[notifiers.up]\ntype = \"slack\"\nwebhook_url = \"{}\"\n[notifiers.down]\ntype = \"webhook\"\nurl = \"{}\"\n[jobs.a]\nevery = \"1m\"\n[jobs.a.check]\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = 9\n",
        up.url("/hook"),
        down.url("/hook")
    ));
    let ok = run(klaxon()
        .arg("--config")
        .arg(setup.config())
        .args(["notify", "test", "up"]));
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert_eq!(text(&ok.stdout), "up (slack): delivered\n");
    let sent = slack_text(&up.requests()[0]);
    assert!(sent.starts_with("TEST message from klaxon on ci"), "{sent}");

    let failed = run(klaxon()
        .arg("--config")
        .arg(setup.config())
        .args(["notify", "test", "down"]));
    assert_eq!(failed.status.code(), Some(1));
    assert_eq!(
        text(&failed.stdout),
        "down (webhook): not delivered: HTTP 500 Internal Server Error: no\n"
    );
    assert!(!text(&failed.stdout).contains(&down.url("/hook")));
    let json = down.requests()[0].json();
    assert_eq!(json["event"], "test");

    let unknown = run(klaxon()
        .arg("--config")
        .arg(setup.config())
        .args(["notify", "test", "nope"]));
    assert_eq!(unknown.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_does_not_follow_a_redirect() {
    let target = Server::start(|_| Response::ok("ok")).await;
    let location = target.url("/secret-path?token=abc");
    let hop = Server::start(move |_| Response::status(301).header("Location", &location)).await;
    let setup = Setup::new(&format!(
        "[agent]\nname = \"ci\"\n[notifiers.hook]\ntype = \"webhook\"\nurl = \"{}\"\n[jobs.a]\nevery = \"1m\"\n[jobs.a.check]\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = 9\n",
        hop.url("/hook")
    ));
    let out = run(klaxon()
        .arg("--config")
        .arg(setup.config())
        .args(["notify", "test", "hook"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout,
        format!(
            "hook (webhook): not delivered: HTTP 301 Moved Permanently: redirect to host `{}` is not followed; use the final URL\n",
            target.addr()
        )
    );
    assert!(!stdout.contains("secret-path") && !stdout.contains("token"));
    assert_eq!(hop.requests().len(), 1);
    assert!(target.requests().is_empty());
}

#[test]
fn a_missing_config_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(klaxon()
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .arg("validate"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no config file"),
        "{}",
        text(&out.stderr)
    );
    let out = run(klaxon().args(["validate", "--config", "/nonexistent/klaxon.toml"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read the config file"));
}

/// A run still retrying when SIGHUP reloads the config records its DOWN after the
/// reload; the delivery loop of the new config is woken for it and sends it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_does_not_strand_the_message_of_a_run_in_flight() {
    let hook = Server::start(|_| Response::ok("ok")).await;
    let dir = tempfile::tempdir().unwrap();
    let tries = dir.path().join("tries");
    let config = |comment: &str| {
        format!(
            "# {comment}\n[agent]\nstate_dir = \"state\"\n\n\
             [notifiers.hook]\ntype = \"webhook\"\nurl = \"{url}\"\n\n\
             [jobs.db]\nevery = \"1h\"\nnotify = [\"hook\"]\n\
             retry = {{ attempts = 2, initial = \"3s\", jitter = 0.0 }}\n\
             [jobs.db.check]\ntype = \"script\"\nshell = \"echo try >> '{tries}'; exit 2\"\n",
            url = hook.url("/hook"),
            tries = tries.display(),
        )
    };
    let setup = Setup::new(&config("first"));
    let agent = setup.agent("agent");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while std::fs::read_to_string(&tries)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first try did not run:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Between the two tries: the run is in flight on the old config's runtime.
    setup.rewrite(&config("second"));
    agent.signal("HUP");
    wait_for_log(&agent, "config reloaded").await;
    assert_eq!(
        std::fs::read_to_string(&tries).unwrap().lines().count(),
        1,
        "the reload came after the second try:\n{}",
        agent.log()
    );
    let got = hook.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(got[0].json()["event"], "failure", "{}", agent.log());
    assert_eq!(got[0].json()["job"], "db");
    assert_eq!(agent.stop(), 0);
}

/// A server that answers `down` until its switch is set, then `200 ok`.
async fn switched(down: Response) -> (Server, Arc<AtomicBool>) {
    let up = Arc::new(AtomicBool::new(false));
    let flag = up.clone();
    let server = Server::start(move |_| {
        if flag.load(Ordering::SeqCst) {
            Response::ok("ok")
        } else {
            down.clone()
        }
    })
    .await;
    (server, up)
}

/// `klaxon --config CONFIG ARGS…`, which must exit 0; its stdout.
fn ok_stdout(config: &Path, args: &[&str]) -> String {
    let out = run(klaxon().arg("--config").arg(config).args(args));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_lists_given_up_messages_sends_them_again_and_drops_them() {
    let (target, healthy) = switched(Response::status(503)).await;
    let (hook, accepting) = switched(Response::status(400).body("bad payload")).await;
    // The token in the webhook's path is a secret: no output may show it.
    let secret = "s3cr3t-token";
    let config = format!(
        "[agent]\nname = \"ci\"\nstate_dir = \"state\"\ngroup_wait = \"0s\"\n[defaults]\nnotify = [\"hook\"]\nretry = {{ attempts = 1 }}\n[notifiers.hook]\ntype = \"webhook\"\nurl = \"{}\"\n[jobs.api]\nevery = \"1h\"\n[jobs.api.check]\ntype = \"http\"\nurl = \"{}\"\n",
        hook.url(&format!("/hook/{secret}")),
        target.url("/")
    );
    let setup = Setup::new(&config);
    let config = setup.config();

    // A 400 is a refusal: the DOWN message is given up at once.
    let once = run(klaxon().arg("--config").arg(&config).args(["once", "api"]));
    assert_eq!(once.status.code(), Some(1), "{}", text(&once.stderr));
    assert_eq!(hook.requests().len(), 1);

    let listed = ok_stdout(&config, &["outbox", "--json"]);
    assert!(!listed.contains(secret), "{listed}");
    let messages: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let messages = messages.as_array().unwrap();
    assert_eq!(messages.len(), 1, "{listed}");
    let m = &messages[0];
    assert_eq!(
        (
            &m["job"],
            &m["notifier"],
            &m["event"],
            &m["state"],
            &m["tries"]
        ),
        (
            &"api".into(),
            &"hook".into(),
            &"failure".into(),
            &"given_up".into(),
            &1.into()
        ),
        "{listed}"
    );
    assert_eq!(
        m["last_error"], "HTTP 400 Bad Request: bad payload",
        "{listed}"
    );
    assert!(m["age_seconds"].as_i64().unwrap() >= 0);
    let id = m["id"].as_i64().unwrap().to_string();
    let table = ok_stdout(&config, &["outbox"]);
    assert!(
        table.lines().any(|l| l.contains("api")
            && l.contains("given up")
            && l.contains("HTTP 400 Bad Request: bad payload")),
        "{table}"
    );
    assert!(!table.contains(secret), "{table}");

    // Sent again once the receiver takes it: the agent delivers it when it starts.
    accepting.store(true, Ordering::SeqCst);
    let retried = ok_stdout(&config, &["outbox", "retry", &id]);
    assert!(
        retried.contains(&format!(
            "message {id} of job `api` to `hook` (failure) will be sent again"
        )),
        "{retried}"
    );
    let agent = setup.agent("agent");
    let got = hook.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got[1].json()["event"], "failure");
    assert_eq!(agent.stop(), 0);
    assert_eq!(ok_stdout(&config, &["outbox", "--json"]).trim(), "[]");

    // A second refusal (the recovery), dropped: status stops counting it.
    accepting.store(false, Ordering::SeqCst);
    healthy.store(true, Ordering::SeqCst);
    let recovered = run(klaxon().arg("--config").arg(&config).args(["once", "api"]));
    assert_eq!(
        recovered.status.code(),
        Some(0),
        "{}",
        text(&recovered.stderr)
    );
    let status: serde_json::Value =
        serde_json::from_str(&ok_stdout(&config, &["status", "--json"])).unwrap();
    assert_eq!(status[0]["given_up"], 1);
    let dropped = ok_stdout(&config, &["outbox", "drop", "--all"]);
    assert!(dropped.contains("(recovery) dropped"), "{dropped}");
    assert_eq!(ok_stdout(&config, &["outbox", "--json"]).trim(), "[]");
    let status: serde_json::Value =
        serde_json::from_str(&ok_stdout(&config, &["status", "--json"])).unwrap();
    assert_eq!(
        (&status[0]["given_up"], &status[0]["undelivered"]),
        (&0.into(), &0.into())
    );

    // Both are in the job's history.
    let history: serde_json::Value =
        serde_json::from_str(&ok_stdout(&config, &["history", "api", "--json"])).unwrap();
    let notes: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["severity"] == "outbox")
        .map(|r| r["summary"].as_str().unwrap())
        .collect();
    assert_eq!(notes.len(), 2, "{history}");
    assert!(
        notes[0].contains("(recovery) dropped by hand after 1 try; it was given up: HTTP 400"),
        "{notes:?}"
    );
    assert!(
        notes[1].starts_with(&format!(
            "message {id} to `hook` (failure) sent again by hand"
        )),
        "{notes:?}"
    );

    // An ID that is not in the outbox is a usage error.
    let missing = run(klaxon()
        .arg("--config")
        .arg(&config)
        .args(["outbox", "drop", &id]));
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains(&format!("no undelivered message `{id}`")),
        "{}",
        text(&missing.stderr)
    );
}
