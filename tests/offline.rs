//! Offline awareness (`agent.online`) through the real binary: the online targets are a
//! loopback TCP listener and a loopback HTTP server (answering 503: any answer counts)
//! that the test stops and starts again. While they are down, a network job against a
//! service that is down too records `offline` runs and sends nothing, and a local script
//! job is still judged and alerts; once they answer again, `agent.notify` gets exactly
//! one "back online" message with the duration and the count, and the network job is
//! judged again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use klaxon_testkit::{Response, Server};

mod common;
use common::{klaxon, text};

/// A loopback TCP listener that accepts (and drops) connections until it is dropped.
struct Listener {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    async fn start(addr: &str) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        Self { addr, task }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The running agent, killed on drop.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn json(r: &klaxon_testkit::Request) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap()
}

/// The (event, job) of each message a receiver got.
fn events(hook: &Server) -> Vec<(String, String)> {
    hook.requests()
        .iter()
        .map(json)
        .map(|m| {
            (
                m["event"].as_str().unwrap().to_owned(),
                m["job"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn history(config: &Path, job: &str) -> Vec<serde_json::Value> {
    let out = klaxon()
        .arg("--config")
        .arg(config)
        .args(["history", job, "--json", "--limit", "1000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits (at most 20 s) until `done`, with the agent's log in the panic.
async fn until(what: &str, log: &Path, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 20 s for {what}; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn config(
    dir: &Path,
    tcp: SocketAddr,
    http: &Server,
    service: &Server,
    hook: &Server,
    ops: &Server,
) -> PathBuf {
    let flag = dir.join("broken");
    let config = format!(
        r#"[agent]
name = "train"
state_dir = "state"
group_wait = "0s"
wake_delay = "0s"
notify = ["ops"]
online = {{ targets = ["{tcp}", "{http}"], every = "1s" }}

[defaults]
notify = ["hook"]
retry = {{ attempts = 1 }}

[notifiers.hook]
type = "webhook"
url = "{hook}"

[notifiers.ops]
type = "webhook"
url = "{ops}"

[jobs.api]
every = "1s"
timeout = "2s"
[jobs.api.check]
type = "http"
url = "{service}"

[jobs.local]
every = "1s"
[jobs.local.check]
type = "script"
shell = "if test -e '{flag}'; then echo disk full; exit 2; fi; echo fine"
"#,
        http = http.url("/generate_204"),
        service = service.url("/health"),
        hook = hook.url("/hook"),
        ops = ops.url("/ops"),
        flag = flag.display(),
    );
    let path = dir.join("klaxon.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_awareness_with_targets_that_stop_answering() {
    let tcp = Listener::start("127.0.0.1:0").await;
    let http = Server::start(|_| Response::status(503)).await;
    let service = Server::start(|_| Response::ok("ok")).await;
    let hook = Server::start(|_| Response::status(200)).await;
    let ops = Server::start(|_| Response::status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), tcp.addr, &http, &service, &hook, &ops);
    let log = dir.path().join("agent.log");
    let agent = Agent(
        klaxon()
            .arg("--config")
            .arg(&cfg)
            .arg("run")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    // Online: the network job is judged (ok).
    until("api's first ok run", &log, || service.requests().len() >= 2).await;

    // The network goes: every target stops answering, and so does the service.
    let (tcp_addr, http_addr, service_addr) = (tcp.addr, http.addr(), service.addr());
    drop((tcp, http));
    drop(service);
    until("the agent to notice it is offline", &log, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("offline: no target of agent.online answers")
    })
    .await;
    // A local check goes on: it breaks, and its alert goes out while offline.
    std::fs::write(dir.path().join("broken"), "").unwrap();
    until("local's DOWN", &log, || {
        events(&hook).contains(&("failure".into(), "local".into()))
    })
    .await;
    // A few seconds offline: api's fires are recorded, not judged.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        events(&hook),
        [("failure".to_owned(), "local".to_owned())],
        "only the local job alerted while offline"
    );
    assert!(ops.requests().is_empty(), "{:?}", events(&ops));

    // The network is back: the service first, then the targets.
    let service = Server::start_on(service_addr, |_| Response::ok("ok")).await;
    let _tcp = Listener::start(&tcp_addr.to_string()).await;
    let _http = Server::start_on(http_addr, |_| Response::status(503)).await;
    let back = ops.wait_for(1, Duration::from_secs(20)).await;
    let message = json(&back[0]);
    // api is judged again at once (wake_delay is 0 s).
    until("api judged again", &log, || !service.requests().is_empty()).await;
    // Nothing more comes to agent.notify.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ops.requests().len(), 1, "{:?}", events(&ops));
    drop(agent);

    let runs = history(&cfg, "api");
    let offline: Vec<_> = runs.iter().filter(|r| r["skipped"] == "offline").collect();
    assert!(offline.len() >= 3, "{runs:#?}");
    for run in &offline {
        assert_eq!(run["severity"], "offline", "{run:#?}");
        let summary = run["summary"].as_str().unwrap();
        assert!(
            summary.starts_with("not run: offline since ")
                || summary.starts_with("not judged: offline since "),
            "{summary}"
        );
    }
    // The failure that revealed the loss was not judged either: no api run failed.
    assert!(
        runs.iter()
            .all(|r| r["severity"] == "ok" || r["severity"] == "offline"),
        "{runs:#?}"
    );
    // Newest first: the last run, after the return, was judged ok.
    assert_eq!(runs[0]["severity"], "ok", "{runs:#?}");
    let local = history(&cfg, "local");
    assert!(
        local.iter().all(|r| r["skipped"].is_null()),
        "local runs are all judged: {local:#?}"
    );

    assert_eq!(message["event"], "recovery", "{message:#}");
    assert_eq!(message["job"], "klaxon");
    assert_eq!(message["agent"], "train");
    assert_eq!(message["check"]["type"], "online");
    let summary = message["summary"].as_str().unwrap();
    let want_tail = format!("; {} runs not judged while offline", offline.len());
    assert!(
        summary.starts_with("back online after ") && summary.ends_with(&want_tail),
        "{summary} (want …{want_tail})"
    );
    let downtime = message["downtime_ms"].as_u64().unwrap();
    assert!((3_000..60_000).contains(&downtime), "{downtime}");
    assert!(
        events(&hook).iter().all(|(_, job)| job != "api"),
        "{:?}",
        events(&hook)
    );
}
