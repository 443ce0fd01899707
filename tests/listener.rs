//! End-to-end tests of the listener (`agent.listen`): the real `klaxon run` binds port 0,
//! logs `listening on ADDR`, and the tests talk to it over HTTP. `/metrics` is read
//! with a Prometheus text-format parser; checks and notifiers are real loopback servers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use klaxon_testkit::{Response, Server};
use prometheus_parse::{Scrape, Value};

const TOKEN: &str = "canary-listen-token-8d1f0c";

mod common;

fn klaxon(dir: &Path) -> Command {
    let mut cmd = common::klaxon();
    cmd.env("RUST_LOG", "klaxon=debug,warn")
        .env("KLAXON_TOKEN", TOKEN)
        .arg("--config")
        .arg(dir.join("klaxon.toml"));
    cmd
}

/// A `klaxon run` in a temp dir, killed on drop; its stderr goes to a file.
struct Agent {
    dir: tempfile::TempDir,
    child: Child,
    addr: SocketAddr,
}

impl Agent {
    async fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("klaxon.toml"), config).unwrap();
        let child = klaxon(dir.path())
            .arg("run")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap())
            .spawn()
            .expect("start klaxon run");
        let mut agent = Self {
            dir,
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let log = agent.wait_for_log("listening on ").await;
        let addr = log.split("listening on ").nth(1).unwrap();
        let addr = addr.split_whitespace().next().unwrap();
        agent.addr = addr
            .parse()
            .unwrap_or_else(|_| panic!("`{addr}` in:\n{log}"));
        agent
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    async fn wait_for_log(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no `{needle}` in the log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("klaxon.toml")
    }

    async fn metrics(&self) -> Metrics {
        let response = reqwest::get(self.url("/metrics")).await.unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        let text = response.text().await.unwrap();
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        Metrics { scrape, text }
    }

    /// Scrapes until `ready` holds (15 s at most).
    async fn metrics_until(&self, what: &str, ready: impl Fn(&Metrics) -> bool) -> Metrics {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let metrics = self.metrics().await;
            if ready(&metrics) {
                return metrics;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never {what}:\n{}\n{}",
                metrics.text,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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
    fn stop(mut self) -> (i32, String) {
        self.signal("TERM");
        for _ in 0..150 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code().unwrap_or(-1), self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("agent did not stop within 15 s of SIGTERM:\n{}", self.log());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One scrape, parsed.
struct Metrics {
    scrape: Scrape,
    text: String,
}

impl Metrics {
    /// The value of the sample `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .find_map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
                _ => None,
            })
    }

    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.value(name, labels).is_some()
    }

    /// The job label of every `klaxon_job_up` sample, sorted.
    fn up_jobs(&self) -> Vec<String> {
        let mut jobs: Vec<String> = self
            .scrape
            .samples
            .iter()
            .filter(|s| s.metric == "klaxon_job_up")
            .filter_map(|s| s.labels.get("job").map(str::to_owned))
            .collect();
        jobs.sort();
        jobs
    }
}

fn agent_section(extra: &str) -> String {
    format!(
        "[agent]\nname = \"ci\"\nstate_dir = \"state\"\ntimezone = \"UTC\"\nlisten = \"127.0.0.1:0\"\ngroup_wait = \"0s\"\n{extra}\n"
    )
}

fn http_job(name: &str, url: &str) -> String {
    format!(
        "[jobs.{name}]\nevery = \"1s\"\n[jobs.{name}.check]\ntype = \"http\"\nurl = \"{url}\"\n"
    )
}

/// A job whose check fails at once (nothing listens on the discard port).
fn failing_job(name: &str, notify: &str) -> String {
    format!(
        "[jobs.{name}]\nevery = \"1h\"\nnotify = [{notify}]\nretry = {{ attempts = 1 }}\n[jobs.{name}.check]\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = 9\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_runs_lateness_deliveries_and_the_outbox() {
    let target = Server::start(|_| Response::ok("ok")).await;
    let slack = Server::start(|_| Response::ok("ok")).await;
    let down = Server::start(|_| Response::status(503)).await;
    let config = format!(
        "{}[notifiers.slack]\ntype = \"slack\"\nwebhook_url = \"{}\"\n[notifiers.down]\ntype = \"webhook\"\nurl = \"{}\"\n{}{}",
        agent_section(""),
        slack.url("/hook"),
        down.url("/hook"),
        http_job("good", &target.url("/health")),
        failing_job("bad", "\"slack\", \"down\""),
    );
    let agent = Agent::start(&config).await;

    let runs_ok =
        |m: &Metrics| m.value("klaxon_runs_total", &[("job", "good"), ("severity", "ok")]);
    let first = agent
        .metrics_until("every metric had a value", |m| {
            runs_ok(m).is_some()
                && m.has(
                    "klaxon_runs_total",
                    &[("job", "bad"), ("severity", "critical")],
                )
                && m.has(
                    "klaxon_deliveries_total",
                    &[("notifier", "slack"), ("result", "delivered")],
                )
                && m.has(
                    "klaxon_deliveries_total",
                    &[("notifier", "down"), ("result", "retry")],
                )
                && m.has("klaxon_job_up", &[("job", "bad")])
        })
        .await;
    assert_eq!(first.value("klaxon_job_up", &[("job", "good")]), Some(1.0));
    assert_eq!(first.value("klaxon_job_up", &[("job", "bad")]), Some(0.0));
    // The message `down` refused is still waiting in the outbox.
    let pending = first.value("klaxon_outbox_messages", &[("state", "pending")]);
    assert!(pending >= Some(1.0), "{}", first.text);
    assert_eq!(
        first.value("klaxon_outbox_messages", &[("state", "given_up")]),
        Some(0.0)
    );
    // Each run's duration was observed, in a histogram with the same labels.
    let durations = first
        .scrape
        .samples
        .iter()
        .find(|s| s.metric == "klaxon_run_duration_seconds" && s.labels.get("job") == Some("bad"))
        .expect("a duration histogram for `bad`");
    let Value::Histogram(buckets) = &durations.value else {
        panic!("not a histogram: {durations:?}");
    };
    let all = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
    assert_eq!(all.count, 1.0);
    // Every fire dispatched was timed.
    let lateness = first
        .scrape
        .samples
        .iter()
        .find(|s| s.metric == "klaxon_scheduler_lateness_seconds")
        .expect("a lateness histogram");
    let Value::Histogram(buckets) = &lateness.value else {
        panic!("not a histogram: {lateness:?}");
    };
    assert!(
        buckets
            .iter()
            .any(|b| b.less_than.is_infinite() && b.count >= 2.0)
    );
    assert!(first.value("klaxon_scheduler_lateness_seconds_count", &[]) >= Some(2.0));
    assert_eq!(
        first.value(
            "klaxon_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );

    // `good` runs every second: its counter goes up.
    let before = runs_ok(&first).unwrap();
    agent
        .metrics_until("the run counter went up", |m| runs_ok(m) > Some(before))
        .await;
    let (code, _) = agent.stop();
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_status_need_the_token_and_a_ping_makes_the_job_ok() {
    let config = format!(
        "{}[jobs.beat]\nevery = \"1h\"\n[jobs.beat.check]\ntype = \"heartbeat\"\ngrace = \"1h\"\n{}",
        agent_section("listen_token = \"${KLAXON_TOKEN}\""),
        failing_job("web", ""),
    );
    let agent = Agent::start(&config).await;
    let client = reqwest::Client::new();
    let ping = agent.url("/ping/beat");

    // Open endpoints need no token.
    let health = client.get(agent.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");
    assert_eq!(
        client
            .get(agent.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    for (request, why) in [
        (client.post(&ping), "no bearer token"),
        (
            client.post(&ping).bearer_auth("wrong-token"),
            "wrong bearer token",
        ),
        (
            client.post(&ping).basic_auth("x", Some(TOKEN)),
            "wrong bearer token",
        ),
        (client.get(agent.url("/status")), "no bearer token"),
    ] {
        let refused = request.send().await.unwrap();
        assert_eq!(refused.status(), 401);
        assert_eq!(
            refused.headers()["www-authenticate"].to_str().unwrap(),
            "Bearer realm=\"klaxon\""
        );
        agent
            .wait_for_log(&format!("listener request refused: {why}"))
            .await;
    }
    let status = |job: &str| {
        let out = klaxon(agent.dir.path())
            .args(["status", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["job"] == job)
            .cloned()
            .unwrap();
        (rows, row["severity"].as_str().unwrap().to_owned())
    };
    assert_eq!(status("beat").1, "pending");

    let accepted = client
        .post(&ping)
        .bearer_auth(TOKEN)
        .body("log line")
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
    assert_eq!(status("beat").1, "ok");
    // Healthchecks clients ping with GET and HEAD too.
    for request in [client.get(&ping), client.head(&ping)] {
        let response = request.bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }

    let unknown = client
        .post(agent.url("/ping/nope"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    agent.wait_for_log("ping for an unknown job").await;
    let active = client
        .post(agent.url("/ping/web"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(active.status(), 409);
    assert!(
        active
            .text()
            .await
            .unwrap()
            .contains("only passive jobs take pings")
    );
    let wrong_method = client
        .delete(&ping)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "GET, HEAD, POST");

    // `/status` is `klaxon status --json`, once `web` has run (nothing changes after).
    while status("web").1 == "pending" {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let served = client
        .get(agent.url("/status"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "application/json");
    let served: serde_json::Value = serde_json::from_str(&served.text().await.unwrap()).unwrap();
    assert_eq!(served, status("web").0);
    assert_eq!(served[1]["severity"], "critical", "{served:#}");

    let (code, log) = agent.stop();
    assert_eq!(code, 0);
    assert!(log.contains("ping received"), "{log}");
    assert!(!log.contains(TOKEN), "the token is in the log:\n{log}");
    assert!(
        !log.contains("wrong-token"),
        "a presented token is in the log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_serving_and_drops_removed_jobs_from_job_up() {
    let target = Server::start(|_| Response::ok("ok")).await;
    let url = target.url("/health");
    let agent = Agent::start(&format!(
        "{}{}{}",
        agent_section(""),
        http_job("a", &url),
        http_job("b", &url)
    ))
    .await;
    let runs_a = |m: &Metrics| m.value("klaxon_runs_total", &[("job", "a"), ("severity", "ok")]);
    let before = agent
        .metrics_until("both jobs were up", |m| m.up_jobs() == ["a", "b"])
        .await;

    std::fs::write(
        agent.config(),
        format!(
            "{}{}{}",
            agent_section(""),
            http_job("a", &url),
            http_job("c", &url)
        ),
    )
    .unwrap();
    agent.signal("HUP");
    agent.wait_for_log("config reloaded").await;
    let after = agent
        .metrics_until("the reloaded jobs were up", |m| m.up_jobs() == ["a", "c"])
        .await;
    // The registry outlived the reload: counters kept counting.
    assert!(runs_a(&after) >= runs_a(&before), "{}", after.text);
    let status = reqwest::get(agent.url("/status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let jobs: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["job"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["a", "c"]);
    let (code, log) = agent.stop();
    assert_eq!(code, 0);
    assert!(!log.contains("`agent.listen` changed"), "{log}");
}

#[test]
fn a_port_in_use_stops_the_agent_with_an_error_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config =
        agent_section("").replace("127.0.0.1:0", &addr.to_string()) + &failing_job("web", "");
    std::fs::write(dir.path().join("klaxon.toml"), config).unwrap();
    let out = klaxon(dir.path()).arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "error: cannot listen on `{addr}` (`agent.listen`): "
        )),
        "{stderr}"
    );
}

#[test]
fn validate_warns_about_a_listener_open_to_other_machines() {
    let dir = tempfile::tempdir().unwrap();
    let write = |agent: &str| {
        std::fs::write(
            dir.path().join("klaxon.toml"),
            format!("{agent}{}", failing_job("web", "")),
        )
        .unwrap();
        let out = klaxon(dir.path()).arg("validate").output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let open = write("[agent]\nlisten = \"0.0.0.0:9850\"\n");
    assert!(
        open.contains("warning: `agent.listen` is `0.0.0.0:9850`, not a loopback address, and no `listen_token` is set"),
        "{open}"
    );
    assert!(
        !write("[agent]\nlisten = \"0.0.0.0:9850\"\nlisten_token = \"${KLAXON_TOKEN}\"\n")
            .contains("`agent.listen`")
    );
    assert!(!write("[agent]\nlisten = \"[::1]:9850\"\n").contains("`agent.listen`"));
    let empty = write("[agent]\nlisten = \"127.0.0.1:9850\"\nlisten_token = \"\"\n");
    assert!(
        empty.contains("warning: `agent.listen_token` is empty"),
        "{empty}"
    );
    // A `listen_url` whose buttons cannot work: no token to scope, no listener.
    let alone = write("[agent]\nlisten_url = \"https://box.example.com:9850\"\n");
    for warning in [
        "warning: `agent.listen_url` is set but `listen_token` is not: messages carry no buttons",
        "warning: `agent.listen_url` is set but `agent.listen` is not: no listener answers the buttons",
    ] {
        assert!(alone.contains(warning), "{alone}");
    }
    let whole = write(
        "[agent]\nlisten = \"0.0.0.0:9850\"\nlisten_token = \"${KLAXON_TOKEN}\"\n\
         listen_url = \"https://box.example.com:9850\"\n",
    );
    assert!(!whole.contains("listen_url"), "{whole}");
}

/// `urls = [up, down]`: the agent counts the message delivered (the replica that is up
/// took it) and counts the replica that is down in
/// `klaxon_alertmanager_replica_failures_total`, by `host:port`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_each_alertmanager_replica_that_failed() {
    let up = Server::start(|_| Response::ok("")).await;
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let config = format!(
        "{}[notifiers.am]\ntype = \"alertmanager\"\nurls = [\"{}\", \"http://{down}/secret-prefix-7f3a/\"]\n{}",
        agent_section(""),
        up.url(""),
        failing_job("bad", "\"am\""),
    );
    let agent = Agent::start(&config).await;
    let down = down.to_string();
    let failed = |m: &Metrics| {
        m.value(
            "klaxon_alertmanager_replica_failures_total",
            &[("notifier", "am"), ("replica", &down)],
        )
    };
    let metrics = agent
        .metrics_until("the replica that is down was counted", |m| {
            failed(m).is_some()
        })
        .await;
    assert_eq!(failed(&metrics), Some(1.0), "{}", metrics.text);
    assert_eq!(
        metrics.value(
            "klaxon_deliveries_total",
            &[("notifier", "am"), ("result", "delivered")]
        ),
        Some(1.0),
        "{}",
        metrics.text
    );
    assert!(
        !metrics.has(
            "klaxon_deliveries_total",
            &[("notifier", "am"), ("result", "retry")]
        ),
        "{}",
        metrics.text
    );
    assert_eq!(
        metrics.value("klaxon_outbox_messages", &[("state", "pending")]),
        Some(0.0)
    );
    assert_eq!(up.requests().len(), 1);
    let (code, log) = agent.stop();
    assert_eq!(code, 0);
    assert!(!log.contains("secret-prefix"), "{log}");
}

/// One badge over HTTP: `200`, an SVG that no cache keeps; its text.
async fn badge(agent: &Agent, path: &str) -> String {
    let response = reqwest::get(agent.url(path)).await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    assert_eq!(response.headers()["cache-control"], "no-cache, max-age=0");
    response.text().await.unwrap()
}

/// The badges need no token (one is set), follow the job from `up` to `down` when its
/// target stops answering, and the uptime badge is the share of ok runs in history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn badges_follow_the_job_and_the_uptime_is_the_runs_in_history() {
    let target = Server::start(|_| Response::ok("ok")).await;
    let config = format!(
        "{}[jobs.web]\nevery = \"1s\"\nretry = {{ attempts = 1 }}\n[jobs.web.check]\ntype = \"http\"\nurl = \"{}\"\n\
         [jobs.beat]\nevery = \"1h\"\n[jobs.beat.check]\ntype = \"heartbeat\"\ngrace = \"1h\"\n",
        agent_section("listen_token = \"${KLAXON_TOKEN}\""),
        target.url("/health"),
    );
    let agent = Agent::start(&config).await;

    // A job that has not run yet: pending, and no data for its uptime.
    let beat = badge(&agent, "/badge/beat.svg").await;
    assert!(beat.contains("<title>beat: pending</title>"), "{beat}");
    assert!(beat.contains("fill=\"#9f9f9f\""), "{beat}");
    let beat = badge(&agent, "/badge/beat/uptime.svg").await;
    assert!(
        beat.contains("<title>uptime 30d: no data</title>"),
        "{beat}"
    );

    let until = async |what: &str, colour: &str| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let svg = badge(&agent, "/badge/web.svg").await;
            if svg.contains(&format!("<title>web: {what}</title>")) {
                assert!(svg.contains(&format!("fill=\"{colour}\"")), "{svg}");
                assert!(svg.contains(&format!(">{what}</text>")), "{svg}");
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the badge never said `{what}`:\n{svg}\n{}",
                agent.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    until("up", "#4c1").await;
    let all_up = badge(&agent, "/badge/web/uptime.svg").await;
    assert!(
        all_up.contains("<title>uptime 30d: 100%</title>"),
        "{all_up}"
    );
    // The target stops answering: nothing listens on its port any more.
    drop(target);
    until("down", "#e05d44").await;

    // The job runs every second: read the badge on both sides of history, until
    // no run came in between.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let (svg, ok, judged) = loop {
        let before = badge(&agent, "/badge/web/uptime.svg").await;
        let out = klaxon(agent.dir.path())
            .args(["history", "web", "--limit", "100000", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let after = badge(&agent, "/badge/web/uptime.svg").await;
        if before == after {
            let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let judged: Vec<&str> = runs
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["skipped"].is_null())
                .map(|r| r["severity"].as_str().unwrap())
                .filter(|s| ["ok", "warning", "critical", "unknown"].contains(s))
                .collect();
            let ok = judged.iter().filter(|s| **s == "ok").count() as u64;
            break (after, ok, judged.len() as u64);
        }
        assert!(tokio::time::Instant::now() < deadline, "runs kept coming");
    };
    assert!(0 < ok && ok < judged, "{ok} of {judged} ok");
    let hundredths = ok * 10_000 / judged;
    let share = format!("{}.{:02}%", hundredths / 100, hundredths % 100);
    assert!(
        svg.contains(&format!("<title>uptime 30d: {share}</title>")),
        "{ok} of {judged}:\n{svg}"
    );
    // Below 95 %, red: a down run among fewer than twenty.
    assert!(judged < 20, "{judged} runs");
    assert!(svg.contains("fill=\"#e05d44\""), "{svg}");

    let unknown = reqwest::get(agent.url("/badge/nope.svg")).await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.text().await.unwrap(), "no job `nope`\n");
    let unknown = reqwest::get(agent.url("/badge/nope/uptime.svg"))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let (code, log) = agent.stop();
    assert_eq!(code, 0);
    assert!(!log.contains("listener request refused"), "{log}");
}
