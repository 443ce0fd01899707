//! The state store on a filesystem that fills up: a 4 MB tmpfs mounted under the state
//! directory (needs root; `.ci/run` runs this suite as root). `/healthz` turns 503 and
//! names the reason while the store cannot be written, and 200 again once it can.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::{klaxon, output, text};
use klaxon_testkit::{Response, Server};

/// A tmpfs mounted at a path, lazily unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Self {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this suite mounts a tmpfs and needs root (run it as root, as .ci/run does)"
        );
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount -t tmpfs failed");
        Self(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

struct Agent(std::process::Child, PathBuf);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Agent {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

/// Starts `klaxon run` on `config`, logging to `log`; returns it and its listener's URL.
async fn start(config: &Path, log: &Path) -> (Agent, String) {
    let child = klaxon()
        .env("RUST_LOG", "klaxon=info")
        .arg("--config")
        .arg(config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let agent = Agent(child, log.to_path_buf());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let base = loop {
        let text = agent.log();
        if let Some(addr) = text.split("listening on ").nth(1) {
            break format!("http://{}", addr.split_whitespace().next().unwrap());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no listener:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    (agent, base)
}

/// Fills the filesystem of `mount` up with a file `filler` in it.
fn fill(mount: &Mount) -> PathBuf {
    let filler = mount.0.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status()
        .expect("run dd");
    filler
}

async fn healthz(client: &reqwest::Client, base: &str) -> (u16, String) {
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Asks `probe` every 250 ms until it gives a value; fails after `secs` with what it
/// said last and the agent's log.
async fn eventually<T>(
    agent: &Agent,
    secs: u64,
    what: &str,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) => assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: {last}\n{}",
                agent.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn wait_health(
    client: &reqwest::Client,
    base: &str,
    agent: &Agent,
    want: impl Fn(u16, &str) -> bool,
    what: &str,
) -> String {
    // The probe runs every 30 s: two of its turns and some.
    eventually(agent, 90, what, async || {
        let (status, body) = healthz(client, base).await;
        if want(status, &body) {
            Ok(body)
        } else {
            Err(format!("/healthz still says {status} {body}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_store_turns_healthz_503_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mount = Mount::tmpfs(&dir.path().join("disk"), "4m");
    let state = mount.0.join("state");
    let config = dir.path().join("klaxon.toml");
    // A run a second, each with 20 kB of output: the WAL needs new pages all the time.
    std::fs::write(
        &config,
        format!(
            "[agent]\nname = \"ci\"\nstate_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\n\n\
             [jobs.busy]\nevery = \"1s\"\n[jobs.busy.check]\ntype = \"script\"\n\
             shell = \"head -c 20000 /dev/urandom | base64; exit 2\"\n",
            state.display()
        ),
    )
    .unwrap();
    let (agent, base) = start(&config, &dir.path().join("agent.log")).await;
    let client = reqwest::Client::new();
    wait_health(
        &client,
        &base,
        &agent,
        |s, _| s == 200,
        "before the disk fills",
    )
    .await;

    // Fill the disk up.
    let filler = fill(&mount);
    let body = wait_health(
        &client,
        &base,
        &agent,
        |s, b| s == 503 && b.contains("cannot write its state"),
        "with the disk full",
    )
    .await;
    eprintln!("/healthz with the disk full: {body}");
    assert_eq!(body.lines().count(), 1, "one line: {body}");
    assert!(
        body.to_lowercase().contains("full"),
        "the reason names the full disk: {body}"
    );

    // Space again: the next run's commit succeeds and health comes back.
    std::fs::remove_file(&filler).unwrap();
    wait_health(
        &client,
        &base,
        &agent,
        |s, _| s == 200,
        "after space came back",
    )
    .await;
    drop(agent);
    drop(mount);
}

/// The JSON bodies `server` got that `want` takes, waited for until there are `n`.
async fn wait_json(
    server: &Server,
    agent: &Agent,
    n: usize,
    what: &str,
    want: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    eventually(agent, 90, what, async || {
        let got: Vec<serde_json::Value> = server
            .requests()
            .iter()
            .map(|r| r.json())
            .filter(|j| want(j))
            .collect();
        if got.len() >= n {
            Ok(got)
        } else {
            Err(format!("got {got:?}"))
        }
    })
    .await
}

/// With the store's disk full, a job that starts failing still alerts (from memory),
/// and so does its recovery; `agent.notify` hears that the agent cannot write its
/// state, and that it can again once space is back; the runs made meanwhile are in
/// history afterwards, and nothing is sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_disk_full_runs_alert_from_memory_and_agent_notify_is_told() {
    let hook = Server::start(|_| Response::ok("")).await;
    let ops = Server::start(|_| Response::ok("")).await;
    let dir = tempfile::tempdir().unwrap();
    let mount = Mount::tmpfs(&dir.path().join("disk"), "4m");
    let state = mount.0.join("state");
    let flag = dir.path().join("failing");
    let config = dir.path().join("klaxon.toml");
    // `flaky` runs every second (each commit needs new WAL pages), fails while the flag
    // file exists, and tells `hook`. No job writes much: the freed space must last.
    std::fs::write(
        &config,
        format!(
            "[agent]\nname = \"ci\"\nstate_dir = \"{state}\"\nlisten = \"127.0.0.1:0\"\n\
             group_wait = \"0s\"\nnotify = [\"ops\"]\n\n\
             [notifiers.hook]\ntype = \"webhook\"\nurl = \"{hook}\"\n\
             [notifiers.ops]\ntype = \"webhook\"\nurl = \"{ops}\"\n\n\
             [jobs.flaky]\nevery = \"1s\"\nnotify = [\"hook\"]\nretry = {{ attempts = 1 }}\n\
             [jobs.flaky.check]\ntype = \"script\"\n\
             shell = \"if [ -e '{flag}' ]; then echo broken; exit 2; fi; echo fine\"\n",
            state = state.display(),
            hook = hook.url("/hook"),
            ops = ops.url("/ops"),
            flag = flag.display(),
        ),
    )
    .unwrap();
    let (agent, base) = start(&config, &dir.path().join("agent.log")).await;
    let client = reqwest::Client::new();
    wait_health(
        &client,
        &base,
        &agent,
        |s, _| s == 200,
        "before the disk fills",
    )
    .await;

    let filler = fill(&mount);
    wait_health(
        &client,
        &base,
        &agent,
        |s, b| s == 503 && b.contains("cannot write its state"),
        "with the disk full",
    )
    .await;
    // The person is told, by the agent itself.
    let told = wait_json(&ops, &agent, 1, "the agent's own failure", |j| {
        j["event"] == "failure"
    })
    .await;
    let summary = told[0]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("klaxon on ci cannot write its state: "),
        "{summary}"
    );
    assert_eq!(told[0]["job"], "klaxon");
    assert_eq!(told[0]["check"]["type"], "agent");

    // A job starts failing while nothing can be written: its DOWN still goes out.
    std::fs::write(&flag, "").unwrap();
    let down = wait_json(&hook, &agent, 1, "flaky's DOWN", |j| {
        j["event"] == "failure"
    })
    .await;
    assert_eq!(down[0]["job"], "flaky");
    assert_eq!(down[0]["summary"], "broken");
    assert!(
        agent.log().contains("delivered from memory"),
        "sent from memory, not from the outbox:\n{}",
        agent.log()
    );
    // Consecutive runs count from memory: one failure, not one per run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    std::fs::remove_file(&flag).unwrap();
    wait_json(&hook, &agent, 1, "flaky's RECOVERED", |j| {
        j["event"] == "recovery"
    })
    .await;
    let (status, body) = healthz(&client, &base).await;
    assert_eq!(status, 503, "still full: {body}");

    // Space again: the runs kept in memory are written, and the person hears it.
    std::fs::remove_file(&filler).unwrap();
    let back = wait_json(&ops, &agent, 1, "the agent's own recovery", |j| {
        j["event"] == "recovery"
    })
    .await;
    assert_eq!(back[0]["id"], told[0]["id"], "one outage, one alert id");
    assert_eq!(back[0]["summary"], "klaxon on ci can write its state again");
    wait_health(
        &client,
        &base,
        &agent,
        |s, _| s == 200,
        "after space came back",
    )
    .await;

    let mut history = klaxon();
    history
        .arg("--config")
        .arg(&config)
        .args(["history", "flaky", "--json", "--limit", "1000"]);
    let out = output(history).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed: Vec<&serde_json::Value> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["severity"] == "critical")
        .collect();
    assert!(
        failed.len() >= 2,
        "the runs made while the disk was full are in history: {runs:#}"
    );
    assert!(failed.iter().all(|r| r["summary"] == "broken"), "{runs:#}");

    // Nothing twice: one DOWN and one RECOVERED of flaky, one of each for the agent.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let events = |server: &Server| -> Vec<String> {
        server
            .requests()
            .iter()
            .map(|r| r.json()["event"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(events(&hook), ["failure", "recovery"]);
    assert_eq!(events(&ops), ["failure", "recovery"]);
    drop(agent);
    drop(mount);
}
