//! The `desktop` notifier against a real D-Bus session bus: the test starts
//! `dbus-daemon --session` (Debian's `dbus-daemon`, which `.ci/run` installs) on a socket
//! of its own and registers a freedesktop Notifications service on it that records every
//! `Notify` call. `klaxon once` then shows a failure and its recovery there, as the
//! notification server of a desktop session would get them; `klaxon run` with a
//! listener shows a DOWN with buttons and acknowledges when the service says "ack" was
//! pressed. Run with
//! `cargo test -p klaxon --features system-tests --test system_desktop`.
#![cfg(all(unix, not(target_os = "macos")))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zbus::OwnedVariant;

mod common;
use common::{klaxon, output, text};

/// One `Notify` call as the service received it.
#[derive(Debug, Clone, PartialEq)]
struct Shown {
    app_name: String,
    icon: String,
    summary: String,
    body: String,
    /// Each hint in GVariant text form: `byte 0x02`, `"message-new-instant"`, `true`.
    hints: BTreeMap<String, String>,
    /// Action keys and labels, in turn.
    actions: Vec<String>,
}

/// What a notification server offers on `org.freedesktop.Notifications`.
struct Recorder {
    shown: Arc<Mutex<Vec<Shown>>>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Recorder {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: String,
        _replaces_id: u32,
        app_icon: String,
        summary: String,
        body: String,
        actions: Vec<String>,
        hints: std::collections::HashMap<String, OwnedVariant>,
        _expire_timeout: i32,
    ) -> u32 {
        let mut shown = self.shown.lock().unwrap();
        shown.push(Shown {
            app_name,
            icon: app_icon,
            summary,
            body,
            hints: hints
                .iter()
                .map(|(k, v)| (k.clone(), (**v).to_string()))
                .collect(),
            actions,
        });
        u32::try_from(shown.len()).unwrap()
    }

    fn get_capabilities(&self) -> Vec<String> {
        ["actions", "body", "body-markup", "sound"]
            .map(String::from)
            .to_vec()
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "recorder".into(),
            "klaxon tests".into(),
            "1".into(),
            "1.2".into(),
        )
    }
}

/// A session bus of the test's own; killed when dropped.
struct Bus {
    daemon: Child,
    address: String,
}

impl Bus {
    fn start(dir: &Path) -> Self {
        let socket = dir.join("bus");
        let mut daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .arg(format!("--address=unix:path={}", socket.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "`dbus-daemon` is missing: install Debian's dbus-daemon and \
                 dbus-session-bus-common (.ci/run does this)",
            );
        let mut line = String::new();
        BufReader::new(daemon.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line.trim().to_owned();
        assert!(address.starts_with("unix:path="), "{address}");
        Self { daemon, address }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// A [`Recorder`] serving `org.freedesktop.Notifications` on `bus`: its connection (the
/// service lives as long as it) and what it was asked to show.
async fn serve(bus: &Bus) -> (zbus::Connection, Arc<Mutex<Vec<Shown>>>) {
    let shown = Arc::new(Mutex::new(Vec::new()));
    let server = zbus::connection::Builder::address(bus.address.as_str())
        .name("org.freedesktop.Notifications")
        .serve_at(
            "/org/freedesktop/Notifications",
            Recorder {
                shown: shown.clone(),
            },
        )
        .build()
        .await
        .unwrap();
    (server, shown)
}

fn config(dir: &Path, sound: bool) -> std::path::PathBuf {
    config_with(dir, sound, "")
}

/// The config, with `agent` keys added.
fn config_with(dir: &Path, sound: bool, agent: &str) -> std::path::PathBuf {
    let config = format!(
        r#"[agent]
name = "ci"
state_dir = "{state}"
{agent}

[notifiers.popup]
type = "desktop"
sound = {sound}

[jobs.db]
every = "1h"
notify = ["popup"]
retry = {{ attempts = 1 }}
[jobs.db.check]
type = "script"
shell = "echo 'db <down> & out'; exit $(cat {code})"
"#,
        state = dir.join("state").display(),
        code = dir.join("code").display(),
    );
    let path = dir.join("klaxon.toml");
    std::fs::write(&path, config).unwrap();
    path
}

async fn once(config: &Path, bus: &Bus, exit: &str) -> i32 {
    std::fs::write(config.with_file_name("code"), exit).unwrap();
    let mut cmd = klaxon();
    cmd.arg("--config")
        .arg(config)
        .args(["once", "db"])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address);
    let out = output(cmd).await;
    assert!(
        !text(&out.stderr).contains("cannot show"),
        "{}",
        text(&out.stderr)
    );
    out.status.code().unwrap_or(-1)
}

fn hints(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_and_recovery_show_on_the_session_bus() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::start(dir.path());
    let (_server, shown) = serve(&bus).await;

    let loud = config(dir.path(), true);
    assert_eq!(once(&loud, &bus, "2").await, 1);
    assert_eq!(once(&loud, &bus, "0").await, 0);
    let quiet = config(dir.path(), false);
    assert_eq!(once(&quiet, &bus, "1").await, 1);

    let shown = shown.lock().unwrap().clone();
    assert_eq!(
        shown,
        [
            Shown {
                app_name: "klaxon".into(),
                icon: "dialog-error".into(),
                summary: "DOWN db on ci".into(),
                // The check's text is escaped for the spec's body markup.
                body: "db &lt;down&gt; &amp; out".into(),
                hints: hints(&[
                    ("sound-name", "\"message-new-instant\""),
                    ("urgency", "byte 0x02"),
                ]),
                // No `listen_url`: no buttons.
                actions: Vec::new(),
            },
            Shown {
                app_name: "klaxon".into(),
                icon: "dialog-information".into(),
                summary: shown[1].summary.clone(),
                body: "db &lt;down&gt; &amp; out".into(),
                hints: hints(&[
                    ("sound-name", "\"message-new-instant\""),
                    ("urgency", "byte 0x00"),
                ]),
                actions: Vec::new(),
            },
            Shown {
                app_name: "klaxon".into(),
                icon: "dialog-warning".into(),
                summary: "WARNING db on ci".into(),
                body: "db &lt;down&gt; &amp; out".into(),
                hints: hints(&[("suppress-sound", "true"), ("urgency", "byte 0x01")]),
                actions: Vec::new(),
            },
        ]
    );
    assert!(
        shown[1].summary.starts_with("RECOVERED db on ci after "),
        "{}",
        shown[1].summary
    );
}

/// A bus with no notification service on it: the delivery fails naming the missing
/// service and the message waits in the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_without_a_notification_service_keeps_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::start(dir.path());
    let path = config(dir.path(), false);
    std::fs::write(dir.path().join("code"), "2").unwrap();
    let mut cmd = klaxon();
    cmd.arg("--config")
        .arg(&path)
        .args(["once", "db"])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address);
    let out = tokio::time::timeout(Duration::from_secs(60), output(cmd))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let listed = klaxon()
        .arg("--config")
        .arg(&path)
        .args(["outbox", "--json"])
        .output()
        .unwrap();
    let messages: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(messages[0]["state"], "pending", "{messages}");
    let error = messages[0]["last_error"].as_str().unwrap();
    assert!(
        error.starts_with("cannot show a desktop notification: ")
            && error.contains("org.freedesktop.Notifications"),
        "{error}"
    );
}

/// A running `klaxon run`, killed on drop.
struct Agent {
    child: Child,
    log: std::path::PathBuf,
}

impl Agent {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The buttons of a desktop notification: `klaxon run` with a listener, `listen_url` and
/// `listen_token` shows the DOWN with the actions `ack` ("Acknowledge") and `silence`
/// ("Silence 1h"); when the notification service emits `ActionInvoked` with `ack` for
/// it, the agent calls its own listener with the scoped token and `klaxon status` shows
/// the alert acknowledged by the button.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pressed_acknowledge_button_acknowledges_through_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::start(dir.path());
    let (server, shown) = serve(&bus).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = config_with(
        dir.path(),
        false,
        &format!(
            "timezone = \"UTC\"\nlisten = \"127.0.0.1:{port}\"\nlisten_token = \"tok-d35k\"\n\
             listen_url = \"http://127.0.0.1:{port}\""
        ),
    );
    std::fs::write(dir.path().join("code"), "2").unwrap();
    let log = dir.path().join("agent.log");
    let child = klaxon()
        .arg("--config")
        .arg(&path)
        .arg("run")
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start klaxon run");
    let agent = Agent { child, log };

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let down = loop {
        if let Some(first) = shown.lock().unwrap().first().cloned() {
            break first;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing shown:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(down.summary, "DOWN db on ci");
    assert_eq!(
        down.actions,
        ["ack", "Acknowledge", "silence", "Silence 1h"]
    );

    // The Recorder numbers notifications from 1. The agent starts waiting for the
    // signal once `Notify` has answered, so the press is repeated until it lands (as a
    // person would press again); after the first, nobody is waiting for more.
    let acknowledged = loop {
        server
            .emit_signal(
                None::<zbus::names::BusName<'_>>,
                "/org/freedesktop/Notifications",
                "org.freedesktop.Notifications",
                "ActionInvoked",
                &(1u32, "ack"),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let out = klaxon()
            .arg("--config")
            .arg(&path)
            .args(["status", "--json"])
            .output()
            .unwrap();
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if !status[0]["acknowledged"].is_null() {
            break status[0]["acknowledged"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not acknowledged:\n{}",
            agent.log()
        );
    };
    assert_eq!(acknowledged["by"], "notification button", "{acknowledged}");
    let logged = agent.log();
    assert!(
        logged.contains("desktop notification button pressed"),
        "{logged}"
    );
    assert!(!logged.contains("tok-d35k"), "{logged}");
    // Nothing else was shown: the silence button was not pressed, nothing recovered.
    assert_eq!(shown.lock().unwrap().len(), 1);
}
