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

/// Debian's Alertmanager, started on loopback: a failing job's alert is readable at
/// `GET /api/v2/alerts` with klaxon's labels, stays firing past Alertmanager's
/// `resolve_timeout` because klaxon re-posts it, and is resolved by the recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_keeps_a_firing_alert_until_the_recovery() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use klaxon_testkit::{Response, Server};

    let binary = "/usr/bin/prometheus-alertmanager";
    assert!(
        Path::new(binary).exists(),
        "`{binary}` is missing: install Debian's prometheus-alertmanager \
         (`apt-get install prometheus-alertmanager`; .ci/run does this)"
    );
    let dir = tempfile::tempdir().unwrap();
    let am_config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &am_config,
        "global:\n  resolve_timeout: 5s\nroute:\n  receiver: nobody\n  group_wait: 1s\nreceivers:\n  - name: nobody\n",
    )
    .unwrap();
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
