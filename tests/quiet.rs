//! Quiet when asked, through the binary: silences (`klaxon silence`, `/api/silences`),
//! acknowledgements (`klaxon ack`, `/api/ack/JOB`) and maintenance windows, each against
//! a real loopback webhook receiver that records what it got, with the real on-disk
//! store. Quiet hours are tested in `tests/outage.rs`, where the clock is driven.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use klaxon_testkit::{Request, Response, Server};

mod common;
use common::text;

/// A temp dir with a config whose job `db` fails until the file `ok` exists, and a
/// webhook notifier `hook`.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(hook: &Server, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok");
        let config = format!(
            "[agent]\nname = \"box\"\nstate_dir = \"state\"\ntimezone = \"UTC\"\n{extra_agent}\n\
             [notifiers.hook]\ntype = \"webhook\"\nurl = \"{url}\"\n\n\
             [defaults]\nnotify = [\"hook\"]\nretry = {{ attempts = 1 }}\n\n\
             [jobs.db]\nevery = \"1h\"\nalert = {{ remind = \"1s\" }}\n\
             [jobs.db.check]\ntype = \"script\"\nshell = \"test -f '{ok}' || exit 2\"\n\n\
             [jobs.web]\nevery = \"1h\"\n\
             [jobs.web.check]\ntype = \"script\"\nshell = \"test -f '{ok}.web' || exit 2\"\n\
             {extra}",
            extra_agent = "",
            url = hook.url("/hook"),
            ok = ok.display(),
        );
        std::fs::write(dir.path().join("klaxon.toml"), config).unwrap();
        Self { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("klaxon.toml")
    }

    fn klaxon(&self, args: &[&str]) -> Output {
        common::klaxon()
            .env("USER", "ann")
            .arg("--config")
            .arg(self.config())
            .args(args)
            .output()
            .expect("run klaxon")
    }

    /// `klaxon ARGS`, which must exit 0; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.klaxon(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "klaxon {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `klaxon once JOB`, with the exit code it must have.
    fn once(&self, job: &str, code: i32) {
        let out = self.klaxon(&["once", job]);
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
    }

    fn recover(&self, job: &str) {
        let name = if job == "db" { "ok" } else { "ok.web" };
        std::fs::write(self.dir.path().join(name), "").unwrap();
    }
}

/// The events the receiver got, as `job:event`.
fn events(hook: &Server) -> Vec<String> {
    hook.requests()
        .iter()
        .map(|r: &Request| {
            let b = r.json();
            format!(
                "{}:{}",
                b["job"].as_str().unwrap(),
                b["event"].as_str().unwrap()
            )
        })
        .collect()
}

/// A silence holds a new alert; when it ends, a job still failing is alerted once,
/// then; history and status say what silenced it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_holds_a_new_alert_and_its_end_sends_it_once() {
    let hook = Server::start(|_| Response::ok("ok")).await;
    let setup = Setup::new(&hook, "");
    let id = setup.ok(&[
        "silence",
        "add",
        "d*",
        "--for",
        "1h",
        "--comment",
        "upgrade",
    ]);
    let id = id.trim();
    assert!(id.parse::<i64>().is_ok(), "{id}");

    setup.once("db", 1);
    assert!(
        events(&hook).is_empty(),
        "sent while silenced: {:?}",
        events(&hook)
    );
    let history = setup.ok(&["history", "db"]);
    assert!(
        history.contains(&format!("[silenced: silence {id} (upgrade)]")),
        "{history}"
    );
    let status: serde_json::Value = serde_json::from_str(&setup.ok(&["status", "--json"])).unwrap();
    let db = &status[0];
    assert_eq!(db["job"], "db");
    assert_eq!(db["silenced_by"], format!("silence {id} (upgrade)"));
    assert!(db["silenced_until"].as_str().is_some(), "{db}");
    assert!(status[1]["silenced_until"].is_null(), "web is not silenced");
    let list: serde_json::Value =
        serde_json::from_str(&setup.ok(&["silence", "list", "--json"])).unwrap();
    assert_eq!(list[0]["jobs"][0], "d*");
    assert_eq!(list[0]["created_by"], "ann");

    let expired = setup.ok(&["silence", "expire", id]);
    assert!(
        expired.starts_with(&format!("silence {id} ended at ")),
        "{expired}"
    );
    assert_eq!(
        setup.ok(&["silence", "list"]).trim(),
        "no silences in force"
    );
    setup.once("db", 1);
    assert_eq!(events(&hook), ["db:failure"]);
    setup.recover("db");
    setup.once("db", 0);
    assert_eq!(events(&hook), ["db:failure", "db:recovery"]);

    // Expiring an unknown silence is a usage error.
    let out = setup.klaxon(&["silence", "expire", "999"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no silence `999`"),
        "{}",
        text(&out.stderr)
    );
}

/// An alert that went out before the silence is not sent again when it ends (nor are
/// its reminders during it); its recovery is still sent. An alert that opened and
/// closed inside a silence sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_repeats_nothing_and_an_outage_inside_it_sends_nothing() {
    let hook = Server::start(|_| Response::ok("ok")).await;
    let setup = Setup::new(&hook, "");
    setup.once("db", 1);
    assert_eq!(events(&hook), ["db:failure"]);
    let id = setup.ok(&["silence", "add", "db", "web", "--for", "1h"]);
    std::thread::sleep(Duration::from_millis(1100));
    setup.once("db", 1);
    // web fails and recovers inside the silence.
    setup.once("web", 1);
    setup.recover("web");
    setup.once("web", 0);
    assert_eq!(
        events(&hook),
        ["db:failure"],
        "no reminder, nothing for web"
    );
    setup.ok(&["silence", "expire", id.trim()]);
    setup.once("db", 1);
    setup.once("web", 0);
    assert_eq!(
        events(&hook),
        ["db:failure"],
        "the end of the silence repeats nothing"
    );
    setup.recover("db");
    setup.once("db", 0);
    assert_eq!(events(&hook), ["db:failure", "db:recovery"]);
}

/// `klaxon ack` stops reminders; the recovery says who acknowledged the alert, when,
/// and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_alert_is_not_reminded_and_its_recovery_says_who() {
    let hook = Server::start(|_| Response::ok("ok")).await;
    let setup = Setup::new(&hook, "");
    let out = setup.klaxon(&["ack", "db"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("job `db` has no open alert to acknowledge"),
        "{}",
        text(&out.stderr)
    );
    setup.once("db", 1);
    std::thread::sleep(Duration::from_millis(1100));
    setup.once("db", 1);
    assert_eq!(events(&hook), ["db:failure", "db:reminder"], "remind works");
    let acked = setup.ok(&["ack", "db", "--comment", "on it"]);
    assert!(acked.contains("acknowledged"), "{acked}");
    let status = setup.ok(&["status"]);
    assert!(status.contains("acknowledged by ann at "), "{status}");
    std::thread::sleep(Duration::from_millis(1100));
    setup.once("db", 1);
    assert_eq!(
        events(&hook),
        ["db:failure", "db:reminder"],
        "no reminder after ack"
    );
    setup.recover("db");
    setup.once("db", 0);
    let got = hook.requests();
    assert_eq!(got.len(), 3);
    let recovery = got[2].json();
    assert_eq!(recovery["event"], "recovery");
    assert_eq!(recovery["acknowledged"]["by"], "ann");
    assert_eq!(recovery["acknowledged"]["comment"], "on it");
    assert!(recovery["acknowledged"]["at"].as_str().is_some());
}

/// A maintenance window that is open silences the jobs it names, by glob; history and
/// status name the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_maintenance_window_silences_its_jobs() {
    let hook = Server::start(|_| Response::ok("ok")).await;
    let window = "\n[[maintenance]]\nname = \"always\"\nschedule = \"* * * * *\"\n\
                  duration = \"5m\"\ntimezone = \"Europe/Berlin\"\njobs = [\"d?\"]\n";
    let setup = Setup::new(&hook, window);
    setup.once("db", 1);
    setup.once("web", 1);
    assert_eq!(events(&hook), ["web:failure"], "db is in maintenance");
    let history = setup.ok(&["history", "db"]);
    assert!(
        history.contains("[silenced: maintenance `always`]"),
        "{history}"
    );
    let status: serde_json::Value = serde_json::from_str(&setup.ok(&["status", "--json"])).unwrap();
    assert_eq!(status[0]["silenced_by"], "maintenance `always`");
}

/// A running `klaxon run` with the listener, killed on drop.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(config: &Path, log: &Path) -> Self {
        let stderr = std::fs::File::create(log).unwrap();
        let child = common::klaxon()
            .arg("--config")
            .arg(config)
            .arg("run")
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
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

async fn json(r: reqwest::Response) -> serde_json::Value {
    serde_json::from_str(&r.text().await.unwrap()).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The listener's API: silences added, listed and expired, an alert acknowledged, all
/// behind `listen_token`; without the token it is refused, and without a
/// `listen_token` configured the API is off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_api_adds_lists_and_expires_silences_and_acknowledges() {
    let hook = Server::start(|_| Response::ok("ok")).await;
    let port = free_port();
    let setup = Setup::new(&hook, "");
    let config = std::fs::read_to_string(setup.config()).unwrap().replacen(
        "timezone = \"UTC\"\n",
        &format!(
            "timezone = \"UTC\"\nlisten = \"127.0.0.1:{port}\"\nlisten_token = \"tok-3f9a\"\n"
        ),
        1,
    );
    std::fs::write(setup.config(), config).unwrap();
    setup.recover("web");
    let agent = Agent::start(&setup.config(), &setup.dir.path().join("agent.log"));
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "no listener:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let auth = |r: reqwest::RequestBuilder| r.bearer_auth("tok-3f9a");

    let refused = client
        .get(format!("{base}/api/silences"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let bad = auth(client.post(format!("{base}/api/silences")))
        .body(r#"{"jobs": ["db"], "for": "soon"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let why = json(bad).await;
    assert!(
        why["error"]
            .as_str()
            .unwrap()
            .contains("expected a duration"),
        "{why}"
    );

    let added = auth(client.post(format!("{base}/api/silences")))
        .body(r#"{"jobs": ["db"], "for": "2h", "comment": "deploy"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    let silence = json(added).await;
    assert_eq!(silence["created_by"], "api");
    let id = silence["id"].as_i64().unwrap();
    let list = json(
        auth(client.get(format!("{base}/api/silences")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["comment"], "deploy");
    // `klaxon silence list` reads the same store.
    assert!(setup.ok(&["silence", "list"]).contains("deploy"));
    let gone = auth(client.delete(format!("{base}/api/silences/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 200);
    let missing = auth(client.delete(format!("{base}/api/silences/999")))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Acknowledging: `web` (ok) has nothing open; `db` failed at the agent's start.
    let none = auth(client.post(format!("{base}/api/ack/web")))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 409);
    let unknown = auth(client.post(format!("{base}/api/ack/nope")))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    hook.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(events(&hook), ["db:failure"], "{}", agent.log());
    let acked = auth(client.post(format!("{base}/api/ack/db")))
        .body(r#"{"by": "bob", "comment": "looking"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(acked.status(), 200);
    let body = json(acked).await;
    assert_eq!(body["acknowledged"]["by"], "bob");
    let status = json(
        auth(client.get(format!("{base}/status")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status[0]["acknowledged"]["comment"], "looking");
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("klaxon_job_silenced{job=\"db\"} 0"),
        "{metrics}"
    );
    drop(agent);

    // Without a `listen_token` the API is off.
    let config = std::fs::read_to_string(setup.config())
        .unwrap()
        .replace("listen_token = \"tok-3f9a\"\n", "");
    std::fs::write(setup.config(), config).unwrap();
    let _agent = Agent::start(&setup.config(), &setup.dir.path().join("agent2.log"));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "no listener");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let off = client
        .get(format!("{base}/api/silences"))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 403);
}

/// The buttons of an ntfy message, pressed as the phone would: the agent (listener,
/// `listen_url`, `listen_token`) sends a failing job's DOWN to an ntfy receiver with
/// "Acknowledge" and "Silence 1h" as `http` actions; the test performs each action's
/// request (URL, method, headers, body as received) against the real listener, and
/// `klaxon status` shows the alert acknowledged and the job silenced for an hour. Each
/// action's token is refused for another job, another route, and another silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntfy_buttons_acknowledge_and_silence_through_the_listener() {
    let hook = Server::start(|_| Response::ok("ok")).await;
    let ntfy = Server::start(|_| Response::ok("{\"id\":\"x\"}")).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let setup = Setup::new(
        &hook,
        &format!(
            "\n[notifiers.phone]\ntype = \"ntfy\"\nurl = \"{}\"\ntopic = \"alerts\"\n",
            ntfy.url("/")
        ),
    );
    let config = std::fs::read_to_string(setup.config())
        .unwrap()
        .replacen(
            "timezone = \"UTC\"\n",
            &format!(
                "timezone = \"UTC\"\nlisten = \"127.0.0.1:{port}\"\nlisten_token = \"tok-3f9a\"\n\
                 listen_url = \"{base}/\"\n"
            ),
            1,
        )
        .replacen("notify = [\"hook\"]", "notify = [\"hook\", \"phone\"]", 1);
    std::fs::write(setup.config(), config).unwrap();
    setup.recover("web");
    let agent = Agent::start(&setup.config(), &setup.dir.path().join("agent.log"));
    ntfy.wait_for(1, Duration::from_secs(15)).await;
    let message = ntfy.requests()[0].json();
    assert_eq!(message["title"], "DOWN db on box: exit 2", "{message}");
    let actions = message["actions"].as_array().unwrap().clone();
    let labels: Vec<&str> = actions
        .iter()
        .map(|a| a["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["Acknowledge", "Silence 1h"]);
    let log = || agent.log();
    assert!(!message.to_string().contains("tok-3f9a"), "{message}");

    let client = reqwest::Client::new();
    // What an `http` action does: its method, URL, headers and body.
    let press = |action: &serde_json::Value, url: &str, body: Option<&str>| {
        let mut request = client.request(
            action["method"].as_str().unwrap().parse().unwrap(),
            url.to_owned(),
        );
        for (name, value) in action["headers"].as_object().unwrap() {
            request = request.header(name.as_str(), value.as_str().unwrap());
        }
        let body = body
            .or(action["body"].as_str())
            .unwrap_or_default()
            .to_owned();
        async move { request.body(body).send().await.unwrap().status().as_u16() }
    };
    let (ack, silence) = (&actions[0], &actions[1]);
    let (ack_url, silence_url) = (
        ack["url"].as_str().unwrap(),
        silence["url"].as_str().unwrap(),
    );
    assert_eq!(ack_url, format!("{base}/api/ack/db"));
    assert_eq!(silence_url, format!("{base}/api/silences"));
    let refused = [
        (
            "ack token, another job",
            press(ack, &format!("{base}/api/ack/web"), None).await,
        ),
        (
            "ack token, the silence route",
            press(ack, silence_url, Some(silence["body"].as_str().unwrap())).await,
        ),
        (
            "ack token, /status",
            client
                .get(format!("{base}/status"))
                .header(
                    "authorization",
                    ack["headers"]["Authorization"].as_str().unwrap(),
                )
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        ),
        (
            "silence token, the ack route",
            press(silence, ack_url, Some("")).await,
        ),
        (
            "silence token, another job",
            press(silence, silence_url, Some(r#"{"jobs":["web"],"for":"1h"}"#)).await,
        ),
        (
            "silence token, two jobs",
            press(
                silence,
                silence_url,
                Some(r#"{"jobs":["db","web"],"for":"1h"}"#),
            )
            .await,
        ),
        (
            "silence token, longer",
            press(silence, silence_url, Some(r#"{"jobs":["db"],"for":"30d"}"#)).await,
        ),
        (
            "no token, the button's silence",
            client
                .post(silence_url)
                .body(silence["body"].as_str().unwrap().to_owned())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        ),
    ];
    for (what, status) in refused {
        assert_eq!(status, 401, "{what}: {}", log());
    }
    let listed = setup.ok(&["silence", "list"]);
    assert_eq!(listed.trim(), "no silences in force");

    assert_eq!(press(ack, ack_url, None).await, 200, "{}", log());
    assert_eq!(press(silence, silence_url, None).await, 201, "{}", log());
    let status: serde_json::Value = serde_json::from_str(&setup.ok(&["status", "--json"])).unwrap();
    let db = &status[0];
    assert_eq!(db["job"], "db");
    assert_eq!(db["acknowledged"]["by"], "notification button", "{db}");
    let silences: serde_json::Value =
        serde_json::from_str(&setup.ok(&["silence", "list", "--json"])).unwrap();
    let made = &silences[0];
    assert_eq!(made["jobs"], serde_json::json!(["db"]));
    assert_eq!(made["created_by"], "notification button");
    let at =
        |v: &serde_json::Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert_eq!(
        at(&made["ends_at"]) - at(&made["starts_at"]),
        chrono::TimeDelta::hours(1)
    );
    assert_eq!(db["silenced_by"], format!("silence {}", made["id"]), "{db}");
    assert_eq!(at(&db["silenced_until"]), at(&made["ends_at"]));
    // The full token still works everywhere.
    let full = client
        .post(format!("{base}/api/ack/db"))
        .bearer_auth("tok-3f9a")
        .send()
        .await
        .unwrap();
    assert_eq!(full.status(), 200);
    let logged = log();
    assert!(!logged.contains("tok-3f9a"), "{logged}");
    for action in &actions {
        let header = action["headers"]["Authorization"].as_str().unwrap();
        let token = header.strip_prefix("Bearer ").unwrap();
        assert!(!logged.contains(token), "{logged}");
    }
}

mod quiet_hours {
    //! Quiet hours, with the clock driven: runs are recorded through `runner::record`
    //! (the agent's own path) and the outbox is worked through `delivery::round` (one
    //! turn of the delivery loop) against a real loopback Slack-style receiver.

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use chrono::{DateTime, Utc};
    use klaxon::runner::{self, Times, Tries};
    use klaxon::runtime::{Clock, Mode, Runtime};
    use klaxon_checks::{Outcome, Severity};
    use klaxon_testkit::{Response, Server};
    use tokio_util::sync::CancellationToken;

    #[derive(Debug)]
    struct TestClock(Mutex<DateTime<Utc>>);

    impl Clock for TestClock {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    async fn record(rt: &Arc<Runtime>, job: &str, severity: Severity, summary: &str) {
        let job = rt.config.job(job).unwrap().clone();
        let times = Times {
            started_at: rt.clock.now(),
            elapsed: Duration::ZERO,
            fire_at: None,
        };
        let tries = Tries {
            made: 1,
            allowed: 1,
        };
        let outcome = Outcome::new(severity, summary, Duration::ZERO);
        runner::record(
            rt,
            &runner::Subject::from(&job),
            outcome,
            tries,
            times,
            None,
        )
        .await
        .unwrap();
    }

    fn texts(slack: &Server) -> Vec<String> {
        slack
            .requests()
            .iter()
            .map(|r| r.json()["text"].as_str().unwrap().to_owned())
            .collect()
    }

    /// From 22:00 to 07:00 (UTC here) warnings and recoveries wait; a critical alert
    /// goes at once. At 07:00 what waited is one digest, in which a job that failed and
    /// recovered meanwhile is one line: "down 23:00–23:30".
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quiet_hours_hold_all_but_critical_and_send_one_digest_at_their_end() {
        let slack = Server::start(|_| Response::ok("ok")).await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = format!(
            "[agent]\nname = \"box\"\nstate_dir = \"state\"\ngroup_wait = \"0s\"\n\
             [defaults]\nnotify = [\"chat\"]\n\
             [notifiers.chat]\ntype = \"slack\"\nwebhook_url = \"{}\"\n\
             quiet = {{ from = \"22:00\", to = \"07:00\", timezone = \"UTC\", except = \"critical\" }}\n",
            slack.url("/hook")
        );
        for job in ["db", "web", "api"] {
            config.push_str(&format!(
                "[jobs.{job}]\nevery = \"1m\"\n[jobs.{job}.check]\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = 9\n"
            ));
        }
        let path = dir.path().join("klaxon.toml");
        std::fs::write(&path, config).unwrap();
        let env = |_: &str| None;
        let config = klaxon::config::load(&path, &env).unwrap();
        let start: DateTime<Utc> = "2026-11-24T23:00:00Z".parse().unwrap();
        let clock = Arc::new(TestClock(Mutex::new(start)));
        let rt = Arc::new(Runtime::build(config, Mode::Live, clock.clone()).unwrap());
        let stop = CancellationToken::new();
        let at = |s: &str| *clock.0.lock().unwrap() = s.parse().unwrap();

        record(&rt, "db", Severity::Warning, "slow").await;
        let wake = klaxon::delivery::round(&rt, &stop).await;
        assert!(
            texts(&slack).is_empty(),
            "a warning went out in quiet hours"
        );
        assert_eq!(wake, Some("2026-11-25T07:00:00Z".parse().unwrap()));

        record(&rt, "web", Severity::Critical, "HTTP 503").await;
        klaxon::delivery::round(&rt, &stop).await;
        let sent = texts(&slack);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(sent[0].starts_with("DOWN web on box"), "{sent:?}");

        at("2026-11-24T23:30:00Z");
        record(&rt, "db", Severity::Ok, "fast again").await;
        at("2026-11-24T23:40:00Z");
        record(&rt, "api", Severity::Warning, "disk 85%").await;
        klaxon::delivery::round(&rt, &stop).await;
        assert_eq!(texts(&slack).len(), 1, "held until 07:00");

        at("2026-11-25T07:00:00Z");
        klaxon::delivery::round(&rt, &stop).await;
        let sent = texts(&slack);
        assert_eq!(sent.len(), 2, "one digest: {sent:?}");
        let digest = &sent[1];
        assert!(
            digest.starts_with("2 alerts on box: 1 warning, 1 recovered"),
            "{digest}"
        );
        assert!(
            digest.contains("RECOVERED db on box after 30m (down 23:00–23:30)"),
            "{digest}"
        );
        assert!(digest.contains("WARNING api on box: disk 85%"), "{digest}");
        assert!(!digest.contains("WARNING db"), "{digest}");
        assert!(rt.store.pending().unwrap().is_empty());
    }
}
