//! Every config shipped in `config/` parses and validates: they are what users copy. The
//! runnable example runs, and its log names the page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

mod common;

#[test]
fn every_shipped_config_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        // Stand-ins for the secrets the examples read from the environment.
        let env = |name: &str| match name {
            "SLACK_WEBHOOK_URL" => Some("https://hooks.slack.com/services/T0/B0/x".to_owned()),
            "TEAMS_WEBHOOK_URL" => Some("https://example.webhook.office.com/x".to_owned()),
            "DISCORD_WEBHOOK_URL" | "MATTERMOST_WEBHOOK_URL" | "GOOGLECHAT_WEBHOOK_URL" => {
                Some("https://hooks.example.com/x".to_owned())
            }
            "MATRIX_ACCESS_TOKEN" => Some("not-a-real-secret".to_owned()),
            "SMTP_PASSWORD" | "HOOK_SECRET" | "KLAXON_TOKEN" => {
                Some("not-a-real-secret".to_owned())
            }
            "PAGERDUTY_ROUTING_KEY" | "OPSGENIE_API_KEY" => Some("not-a-real-secret".to_owned()),
            "NTFY_TOPIC" | "NTFY_TOKEN" | "PUSHOVER_TOKEN" | "PUSHOVER_USER" => {
                Some("not-a-real-secret".to_owned())
            }
            "TELEGRAM_BOT_TOKEN" | "GOTIFY_TOKEN" => Some("not-a-real-secret".to_owned()),
            _ => None,
        };
        let config = klaxon::config::load(&path, &env)
            .unwrap_or_else(|e| panic!("{} does not validate:\n{e}", path.display()));
        assert!(!config.jobs.is_empty(), "{}", path.display());
        seen += 1;
    }
    assert!(
        seen >= 2,
        "expected the runnable example and the reference in config/"
    );
}

#[test]
fn the_runnable_example_needs_no_secret_and_shows_alerts_in_the_log() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/klaxon.toml");
    let config = klaxon::config::load(&path, &|_: &str| None).unwrap();
    assert!(config.notifiers.iter().all(|n| n.spec.kind() == "log"));
    assert!(config.jobs.iter().all(|j| j.notify == ["console"]));
}

/// README's first command prints the page's address: the shipped config listens on
/// loopback, and the agent logs `dashboard: http://ADDR/` (here on a free port, so the
/// test does not take the shipped one, with its state in a temp dir).
#[test]
fn the_runnable_example_listens_on_loopback_and_logs_the_dashboard() {
    use std::io::{Read, Write};
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/klaxon.toml");
    let config = klaxon::config::load(&shipped, &|_: &str| None).unwrap();
    let listen = config
        .agent
        .listen
        .expect("the example sets `agent.listen`");
    assert!(listen.ip().is_loopback(), "{listen}");
    let text = std::fs::read_to_string(&shipped).unwrap();
    let fixed = format!("listen = \"{listen}\"");
    assert!(text.contains(&fixed), "{fixed}");
    let dir = tempfile::tempdir().unwrap();
    let text = text
        .replace(&fixed, "listen = \"127.0.0.1:0\"")
        .replace("state_dir = \"../.klaxon-demo\"", "state_dir = \"state\"");
    std::fs::write(dir.path().join("klaxon.toml"), text).unwrap();
    let log = dir.path().join("agent.log");
    let mut agent = common::klaxon()
        .arg("--config")
        .arg(dir.path().join("klaxon.toml"))
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let url = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(rest) = text.split("dashboard: ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no `dashboard:` in the log:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let addr = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("`{url}`"));
    // The address answers: the listener is the one the log names.
    let mut stream = std::net::TcpStream::connect(format!("127.0.0.1:{addr}")).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
}
