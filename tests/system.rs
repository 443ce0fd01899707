//! Real monitoring plugins (Debian's `monitoring-plugins-basic`) run as `script` checks
//! through the built binary: their exit codes become severities and their first line the
//! summary. `.ci/run` installs the package and runs this suite with
//! `cargo test -p klaxon --features system-tests --test system`; without the package the
//! suite fails and says how to install it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

const PLUGINS: &str = "/usr/lib/nagios/plugins";

fn plugin(name: &str) -> String {
    let path = Path::new(PLUGINS).join(name);
    assert!(
        path.exists(),
        "`{}` is missing: install Debian's monitoring-plugins-basic \
         (`apt-get install monitoring-plugins-basic`; .ci/run does this)",
        path.display()
    );
    path.display().to_string()
}

struct Case {
    job: &'static str,
    command: Vec<String>,
    exit: i32,
    severity: &'static str,
    summary_starts: &'static str,
    /// Perfdata labels the run must report, printed by `once` as `  label=value…`.
    perfdata: &'static [&'static str],
}

#[test]
fn monitoring_plugins_run_as_script_checks() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let args = |name: &str, rest: &[&str]| {
        let mut v = vec![plugin(name)];
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };
    let cases = vec![
        Case {
            job: "disk-ok",
            command: args("check_disk", &["-w", "1%", "-c", "1%", "-p", "/"]),
            exit: 0,
            severity: "ok",
            summary_starts: "DISK OK - free space: /",
            perfdata: &["/"],
        },
        Case {
            job: "disk-critical",
            command: args("check_disk", &["-w", "100%", "-c", "100%", "-p", "/"]),
            exit: 1,
            severity: "critical",
            summary_starts: "DISK CRITICAL - free space: /",
            perfdata: &["/"],
        },
        Case {
            job: "load",
            command: args(
                "check_load",
                &["-w", "1000,1000,1000", "-c", "2000,2000,2000"],
            ),
            exit: 0,
            severity: "ok",
            summary_starts: "LOAD OK - total load average:",
            perfdata: &["load1", "load5", "load15"],
        },
        Case {
            job: "procs",
            command: args("check_procs", &["-w", "1", "-c", "1"]),
            exit: 1,
            severity: "critical",
            summary_starts: "PROCS CRITICAL:",
            perfdata: &["procs"],
        },
        Case {
            job: "tcp-open",
            command: args("check_tcp", &["-H", "127.0.0.1", "-p", &port]),
            exit: 0,
            severity: "ok",
            summary_starts: "TCP OK - ",
            perfdata: &["time"],
        },
        Case {
            job: "tcp-refused",
            command: args("check_tcp", &["-H", "127.0.0.1", "-p", "9"]),
            exit: 1,
            severity: "critical",
            summary_starts: "connect to address 127.0.0.1 and port 9: Connection refused",
            perfdata: &[],
        },
        Case {
            job: "warning",
            command: args("check_dummy", &["1", "disk nearly full"]),
            exit: 1,
            severity: "warning",
            summary_starts: "WARNING: disk nearly full",
            perfdata: &[],
        },
        Case {
            job: "unknown",
            command: args("check_dummy", &["3", "cannot tell"]),
            exit: 1,
            severity: "unknown",
            summary_starts: "UNKNOWN: cannot tell",
            perfdata: &[],
        },
    ];

    let dir = tempfile::tempdir().unwrap();
    let mut config = String::from("[agent]\nstate_dir = \"state\"\n");
    for case in &cases {
        let argv: Vec<String> = case.command.iter().map(|a| format!("{a:?}")).collect();
        config.push_str(&format!(
            "[jobs.{}]\nevery = \"1h\"\n[jobs.{}.check]\ntype = \"script\"\ncommand = [{}]\n",
            case.job,
            case.job,
            argv.join(", ")
        ));
    }
    let path = dir.path().join("klaxon.toml");
    std::fs::write(&path, config).unwrap();

    for case in &cases {
        let out = Command::new(env!("CARGO_BIN_EXE_klaxon"))
            .arg("--config")
            .arg(&path)
            .args(["once", case.job, "--no-retry"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let prefix = format!("{}: {}: {}", case.job, case.severity, case.summary_starts);
        assert!(
            stdout.starts_with(&prefix),
            "{}: expected `{prefix}…`, got:\n{stdout}{}",
            case.job,
            String::from_utf8_lossy(&out.stderr)
        );
        // Performance data is not part of the summary; it comes through as metrics.
        assert!(!stdout.lines().next().unwrap().contains('|'), "{stdout}");
        for label in case.perfdata {
            let line = format!("  {label}=");
            assert!(
                stdout.lines().any(|l| l.starts_with(&line)),
                "{}: no `{label}` metric in:\n{stdout}",
                case.job
            );
        }
        assert_eq!(out.status.code(), Some(case.exit), "{}: {stdout}", case.job);
    }
}

/// Debian's Alertmanager binary; a loud failure when it is missing.
fn alertmanager_binary() -> &'static str {
    let binary = "/usr/bin/prometheus-alertmanager";
    assert!(
        Path::new(binary).exists(),
        "`{binary}` is missing: install Debian's prometheus-alertmanager \
         (`apt-get install prometheus-alertmanager`; .ci/run does this)"
    );
    binary
}

/// An Alertmanager config in `dir` that notifies nobody and resolves an alert not
/// posted again within `resolve_timeout`.
fn alertmanager_config(dir: &Path, resolve_timeout: &str) -> std::path::PathBuf {
    let path = dir.join("alertmanager.yml");
    std::fs::write(
        &path,
        format!(
            "global:\n  resolve_timeout: {resolve_timeout}\nroute:\n  receiver: nobody\n  group_wait: 1s\nreceivers:\n  - name: nobody\n"
        ),
    )
    .unwrap();
    path
}

/// Debian's Alertmanager, started on loopback: a failing job's alert is readable at
/// `GET /api/v2/alerts` with klaxon's labels, stays firing past Alertmanager's
/// `resolve_timeout` because klaxon re-posts it, and is resolved by the recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_keeps_a_firing_alert_until_the_recovery() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use klaxon_testkit::{Response, Server};

    let binary = alertmanager_binary();
    let dir = tempfile::tempdir().unwrap();
    let am_config = alertmanager_config(dir.path(), "5s");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let am_url = format!("http://127.0.0.1:{port}");
    let mut am = Command::new(binary)
        .arg(format!("--config.file={}", am_config.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("am.log")).unwrap())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(format!("{am_url}/-/ready")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(am.try_wait().unwrap().is_none(), "alertmanager exited");
        assert!(
            tokio::time::Instant::now() < deadline,
            "alertmanager never got ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let am = Kill(am);

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
    std::fs::write(
        dir.path().join("klaxon.toml"),
        format!(
            "[agent]\nname = \"ci\"\nstate_dir = \"state\"\n[defaults]\nnotify = [\"am\"]\nretry = {{ attempts = 1 }}\n[notifiers.am]\ntype = \"alertmanager\"\nurls = [\"{am_url}\"]\nresend_every = \"2s\"\n[jobs.api]\nevery = \"2s\"\n[jobs.api.check]\ntype = \"http\"\nurl = \"{}\"\n",
            target.url("/health")
        ),
    )
    .unwrap();
    // Killed when the test ends, however it ends (a live child would hold the test's
    // output pipe open).
    let agent = Kill(
        Command::new(env!("CARGO_BIN_EXE_klaxon"))
            .arg("--config")
            .arg(dir.path().join("klaxon.toml"))
            .arg("run")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let agent_log = || std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();

    // Alerts for job `api`, as Alertmanager has them now.
    let alerts = || async {
        let body = client
            .get(format!("{am_url}/api/v2/alerts"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let all: serde_json::Value = serde_json::from_slice(&body).unwrap();
        all.as_array()
            .unwrap()
            .iter()
            .filter(|a| a["labels"]["job"] == "api")
            .cloned()
            .collect::<Vec<_>>()
    };
    let firing = |a: &serde_json::Value| a["status"]["state"] == "active";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let alert = loop {
        if let Some(a) = alerts().await.into_iter().find(|a| firing(a)) {
            break a;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no alert reached Alertmanager:\n{}",
            agent_log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(alert["labels"]["alertname"], "KlaxonJobFailed");
    assert_eq!(alert["labels"]["agent"], "ci");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("DOWN api on ci: HTTP 503")
    );

    // Twice Alertmanager's resolve_timeout later, still firing: klaxon re-posted it.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        alerts().await.iter().any(firing),
        "the alert expired while the job still failed"
    );

    healthy.store(true, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while alerts().await.iter().any(firing) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the recovery did not resolve the alert:\n{}",
            agent_log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(agent);
    drop(am);
}

/// A child process killed (and reaped) when dropped, however the test ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port (bound, then let go).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A two-replica Alertmanager cluster gossiping on loopback and two agents posting to
/// both (`urls = [am1, am2]`). `am1` is killed after the first alerts arrived and
/// before the others fire: every alert of both agents shows exactly once in `am2`'s
/// API, and each agent's outbox is empty (delivered because one replica took it, not
/// retried for a day because the other is gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_replica_alertmanager_cluster_loses_no_alert_when_one_replica_dies() {
    use std::time::Duration;

    let binary = alertmanager_binary();
    let dir = tempfile::tempdir().unwrap();
    let am_config = alertmanager_config(dir.path(), "10m");
    let web = [free_port(), free_port()];
    let gossip = [free_port(), free_port()];
    let start = |i: usize| {
        let peer = gossip[1 - i];
        Reaped(
            Command::new(binary)
                .arg(format!("--config.file={}", am_config.display()))
                .arg(format!(
                    "--storage.path={}",
                    dir.path().join(format!("am{i}")).display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{}", web[i]))
                .arg(format!("--cluster.listen-address=127.0.0.1:{}", gossip[i]))
                .arg(format!(
                    "--cluster.advertise-address=127.0.0.1:{}",
                    gossip[i]
                ))
                .arg(format!("--cluster.peer=127.0.0.1:{peer}"))
                .arg("--cluster.settle-timeout=2s")
                .arg("--cluster.pushpull-interval=1s")
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(dir.path().join(format!("am{i}.log"))).unwrap())
                .spawn()
                .unwrap(),
        )
    };
    let mut replicas = vec![Some(start(0)), Some(start(1))];
    let urls: Vec<String> = web
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let am_log = |i: usize| {
        std::fs::read_to_string(dir.path().join(format!("am{i}.log"))).unwrap_or_default()
    };
    let client = reqwest::Client::new();

    // Both up and each seeing two peers in the cluster.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for (i, url) in urls.iter().enumerate() {
        loop {
            let peers = match client.get(format!("{url}/api/v2/status")).send().await {
                Ok(r) if r.status().is_success() => {
                    let body = r.bytes().await.unwrap();
                    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    status["cluster"]["peers"].as_array().map_or(0, Vec::len)
                }
                _ => 0,
            };
            if peers == 2 {
                break;
            }
            if let Some(Some(am)) = replicas.get_mut(i) {
                assert!(
                    am.0.try_wait().unwrap().is_none(),
                    "am{i} exited:\n{}",
                    am_log(i)
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "am{i} never saw both peers:\n{}",
                am_log(i)
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    // Jobs `early-*` fail from the start, `late-*` once their file says so (after the
    // kill). Each agent's alerts carry its own `agent` label.
    let jobs = ["early-a", "early-b", "late-a", "late-b"];
    let agents = ["east", "west"];
    let mut running = Vec::new();
    for agent in agents {
        let home = dir.path().join(agent);
        std::fs::create_dir_all(&home).unwrap();
        let mut config = format!(
            "[agent]\nname = \"{agent}\"\nstate_dir = \"state\"\n[notifiers.am]\ntype = \"alertmanager\"\nurls = [\"{}\", \"{}\"]\n",
            urls[0], urls[1]
        );
        for job in jobs {
            let code = home.join(format!("{job}.code"));
            std::fs::write(&code, if job.starts_with("early") { "2" } else { "0" }).unwrap();
            config.push_str(&format!(
                "[jobs.{job}]\nevery = \"1s\"\nnotify = [\"am\"]\nretry = {{ attempts = 1 }}\n[jobs.{job}.check]\ntype = \"script\"\nshell = \"exit $(cat {})\"\n",
                code.display()
            ));
        }
        std::fs::write(home.join("klaxon.toml"), config).unwrap();
        running.push(Reaped(
            Command::new(env!("CARGO_BIN_EXE_klaxon"))
                .arg("--config")
                .arg(home.join("klaxon.toml"))
                .arg("run")
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(home.join("agent.log")).unwrap())
                .spawn()
                .unwrap(),
        ));
    }
    let agent_logs = || {
        agents
            .iter()
            .map(|a| {
                let log = std::fs::read_to_string(dir.path().join(a).join("agent.log"));
                format!("--- {a}\n{}", log.unwrap_or_default())
            })
            .collect::<String>()
    };

    // (agent, job) of every active klaxon alert in one replica, once per alert.
    let active = |url: String| {
        let client = client.clone();
        async move {
            let Ok(response) = client.get(format!("{url}/api/v2/alerts")).send().await else {
                return Vec::new();
            };
            let body = response.bytes().await.unwrap_or_default();
            let all: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let mut seen: Vec<(String, String)> = all
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| {
                    a["labels"]["alertname"] == "KlaxonJobFailed"
                        && a["status"]["state"] == "active"
                })
                .map(|a| {
                    (
                        a["labels"]["agent"].as_str().unwrap_or("?").to_owned(),
                        a["labels"]["job"].as_str().unwrap_or("?").to_owned(),
                    )
                })
                .collect();
            seen.sort();
            seen
        }
    };
    let expected = |prefix: &str| {
        let mut all: Vec<(String, String)> = agents
            .iter()
            .flat_map(|a| {
                jobs.iter()
                    .filter(|j| j.starts_with(prefix))
                    .map(|j| (a.to_string(), j.to_string()))
            })
            .collect();
        all.sort();
        all
    };
    let wait_for = |url: String, want: Vec<(String, String)>, what: &'static str| {
        let active = &active;
        let agent_logs = &agent_logs;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let seen = active(url.clone()).await;
                if seen == want {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{what}: expected {want:?}, {url} has {seen:?}\n{}",
                    agent_logs()
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };

    // The early alerts reached both replicas; then am1 dies.
    for url in &urls {
        wait_for(url.clone(), expected("early"), "the early alerts").await;
    }
    drop(replicas[0].take());

    for agent in agents {
        for job in jobs.iter().filter(|j| j.starts_with("late")) {
            std::fs::write(dir.path().join(agent).join(format!("{job}.code")), "2").unwrap();
        }
    }
    wait_for(urls[1].clone(), expected(""), "every alert in the survivor").await;

    // Delivered (one replica took each), so nothing waits in either outbox; the dead
    // replica was logged by host:port.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for agent in agents {
        let home = dir.path().join(agent);
        loop {
            let out = Command::new(env!("CARGO_BIN_EXE_klaxon"))
                .arg("--config")
                .arg(home.join("klaxon.toml"))
                .args(["status", "--json"])
                .output()
                .unwrap();
            let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let waiting: u64 = rows
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    r["undelivered"].as_u64().unwrap_or(0) + r["given_up"].as_u64().unwrap_or(0)
                })
                .sum();
            if waiting == 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{agent} still has {waiting} undelivered message(s): {rows}\n{}",
                agent_logs()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let log = std::fs::read_to_string(home.join("agent.log")).unwrap();
        let replica = format!("replica=127.0.0.1:{}", web[0]);
        assert!(
            log.lines()
                .any(|l| l.contains("replica did not take the message") && l.contains(&replica)),
            "{agent} did not log the dead replica:\n{log}"
        );
    }
    // Still exactly once each, nothing lost.
    assert_eq!(active(urls[1].clone()).await, expected(""));
    drop(running);
    drop(replicas);
}
