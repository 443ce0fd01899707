//! `[log] file`: the real binary writes its log to a daily file, keeps `keep` of them,
//! and leaves only warnings and errors on stderr.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::klaxon;

/// A port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Two jobs, one up and one down, both reporting to the `log` notifier.
fn config(log: &Path, format: &str, keep: u32, up_port: u16) -> String {
    format!(
        r#"
[agent]
name = "logtest"
state_dir = "state"
group_wait = "0s"

[log]
level = "info"
format = "{format}"
file = "{log}"
keep = {keep}

[defaults]
notify = ["console"]
retry = {{ attempts = 1 }}

[notifiers.console]
type = "log"

[jobs.up]
every = "1s"
[jobs.up.check]
type = "tcp"
host = "127.0.0.1"
port = {up_port}

[jobs.down]
every = "1s"
[jobs.down.check]
type = "tcp"
host = "127.0.0.1"
port = {down}
"#,
        log = log.display(),
        down = closed_port(),
    )
}

/// Today's file of `log.file = DIR/klaxon.log`: the UTC date, as tracing-appender names it.
fn todays_file(dir: &Path) -> PathBuf {
    dir.join(format!(
        "klaxon.{}.log",
        chrono::Utc::now().format("%Y-%m-%d")
    ))
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn run_logs_to_a_daily_file_keeps_keep_files_and_leaves_warnings_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs/klaxon");
    std::fs::create_dir_all(&logs).unwrap();
    // Older days' files, named as tracing-appender names them, and launchd's stderr file
    // beside them (same prefix and suffix, but not one of ours).
    let old = [
        "klaxon.2020-01-01.log",
        "klaxon.2020-01-02.log",
        "klaxon.2020-01-03.log",
        "klaxon.2020-01-04.log",
        "klaxon.2020-01-05.log",
    ];
    for name in old.iter().rev() {
        std::fs::write(logs.join(name), "old\n").unwrap();
    }
    std::fs::write(logs.join("klaxon.err.log"), "launchd's stderr\n").unwrap();

    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_port = up.local_addr().unwrap().port();
    let config_path = dir.path().join("klaxon.toml");
    std::fs::write(
        &config_path,
        config(&logs.join("klaxon.log"), "text", 3, up_port),
    )
    .unwrap();
    let stderr_path = dir.path().join("stderr.txt");
    let mut child = klaxon()
        .arg("--config")
        .arg(&config_path)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();

    let today = todays_file(&logs);
    // The down job's alert is a WARN event: it reaches stderr at once.
    wait_until("the alert on stderr", Duration::from_secs(20), || {
        std::fs::read_to_string(&stderr_path).is_ok_and(|s| s.contains("DOWN down on logtest"))
    });
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));

    let file = std::fs::read_to_string(&today).unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    // Everything at `info` is in the file, up to the very last line (written out when
    // the process ended).
    assert!(file.contains("INFO klaxon::runner: ok: "), "{file}");
    assert!(file.contains("job=up"), "{file}");
    assert!(
        file.contains("WARN klaxon::alert: DOWN down on logtest"),
        "{file}"
    );
    assert!(file.contains("SIGTERM: shutting down"), "{file}");
    assert!(
        file.trim_end().ends_with("klaxon stopped"),
        "the last line is missing:\n{file}"
    );
    assert!(!file.contains('\x1b'), "ANSI codes in the file:\n{file}");
    // stderr: warnings and errors only.
    assert!(
        stderr.contains("WARN klaxon::alert: DOWN down on logtest"),
        "{stderr}"
    );
    assert!(!stderr.contains(" INFO "), "INFO on stderr:\n{stderr}");
    assert!(!stderr.contains("klaxon stopped"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr}");
    // keep = 3: today's and the two newest older days; launchd's file stays.
    let today_name = today.file_name().unwrap().to_str().unwrap().to_owned();
    let mut expected = vec![
        "klaxon.2020-01-04.log".to_owned(),
        "klaxon.2020-01-05.log".to_owned(),
        today_name.clone(),
        "klaxon.err.log".to_owned(),
        "klaxon.log".to_owned(),
    ];
    expected.sort();
    assert_eq!(names_in(&logs), expected);
    // The configured name is a symlink to today's file.
    assert_eq!(
        std::fs::read_link(logs.join("klaxon.log")).unwrap(),
        logs.join(&today_name)
    );
    assert_eq!(
        std::fs::read_to_string(logs.join("klaxon.log")).unwrap(),
        file
    );
    drop(up);
}

fn once(config: &Path, job: &str) -> Output {
    klaxon()
        .arg("--config")
        .arg(config)
        .args(["once", job])
        .output()
        .unwrap()
}

#[test]
fn json_lines_in_the_file_parse_with_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    let config_path = dir.path().join("klaxon.toml");
    std::fs::write(
        &config_path,
        config(
            &logs.join("klaxon.log"),
            "json",
            7,
            up.local_addr().unwrap().port(),
        ),
    )
    .unwrap();

    // `once` acts for the agent: it logs to the same file.
    let out = once(&config_path, "down");
    assert_eq!(out.status.code(), Some(1));
    let out = once(&config_path, "up");
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("\"INFO\""), "INFO on stderr:\n{stderr}");

    let file = std::fs::read_to_string(todays_file(&logs)).unwrap();
    let lines: Vec<serde_json::Value> = file
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!lines.is_empty());
    for line in &lines {
        for key in ["timestamp", "level", "target"] {
            assert!(line[key].is_string(), "no `{key}` in {line}");
        }
        assert!(
            line["fields"]["message"].is_string(),
            "no message in {line}"
        );
    }
    let critical = lines
        .iter()
        .find(|l| l["fields"]["job"] == "down" && l["level"] == "WARN")
        .unwrap_or_else(|| panic!("no WARN line for job `down`:\n{file}"));
    assert_eq!(critical["target"], "klaxon::runner");
    assert_eq!(critical["fields"]["severity"], "critical");
    let ok = lines
        .iter()
        .find(|l| l["fields"]["job"] == "up" && l["level"] == "INFO")
        .unwrap_or_else(|| panic!("no INFO line for job `up`:\n{file}"));
    assert!(
        ok["fields"]["message"]
            .as_str()
            .unwrap()
            .starts_with("ok: ")
    );
}

#[test]
fn a_log_file_that_cannot_be_written_falls_back_to_stderr() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the log's directory should be.
    std::fs::write(dir.path().join("blocker"), "").unwrap();
    let log = dir.path().join("blocker/klaxon.log");
    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    let config_path = dir.path().join("klaxon.toml");
    std::fs::write(
        &config_path,
        config(&log, "text", 7, up.local_addr().unwrap().port()),
    )
    .unwrap();
    let out = once(&config_path, "up");
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "warning: cannot write the log file `{}`",
            log.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("logging to stderr only"), "{stderr}");
    // The whole log is on stderr then.
    assert!(stderr.contains("INFO klaxon::runner: ok: "), "{stderr}");
}
