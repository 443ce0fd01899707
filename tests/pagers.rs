//! The paging channels end to end: `klaxon once` against a loopback receiver that
//! speaks each provider's API. A failing run opens the provider's alert (after the
//! receiver's own `Retry-After` on a first 503), a passing run closes that same alert,
//! and a refusal (4xx) is given up at once, left in the outbox as `given_up`. And the
//! `desktop` channel with no session bus: it says so, and its message waits in the
//! outbox while the other notifiers deliver theirs (tests/system_desktop.rs shows it
//! on a real bus).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use klaxon_testkit::{Request, Response, Server};

mod common;
use common::{klaxon, output, text};

const SECRET: &str = "pager-s3cret-9f2c";

/// A job `db` whose check exits with the code in the file `code`.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    /// The job told to `[notifiers.pager]`, whose table (after its name) is `notifier`.
    fn new(notifier: &str) -> Self {
        Self::with(&format!("[notifiers.pager]\n{notifier}\n"), r#""pager""#)
    }

    /// The job told to `notify` (a TOML list's items), with the tables `notifiers`.
    fn with(notifiers: &str, notify: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            r#"[agent]
name = "ci"
state_dir = "{state}"

{notifiers}
[jobs.db]
every = "1h"
notify = [{notify}]
retry = {{ attempts = 1 }}
[jobs.db.check]
type = "script"
shell = "echo 'db is down'; exit $(cat {code})"
"#,
            state = dir.path().join("state").display(),
            code = dir.path().join("code").display(),
        );
        std::fs::write(dir.path().join("klaxon.toml"), config).unwrap();
        Self { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("klaxon.toml")
    }

    /// `klaxon once db` with the check exiting `exit`; the exit code `once` ends with.
    async fn once(&self, exit: &str) -> i32 {
        self.once_in(exit, |_| {}).await
    }

    /// [`Setup::once`] in the environment `env` makes.
    async fn once_in(&self, exit: &str, env: impl FnOnce(&mut std::process::Command)) -> i32 {
        std::fs::write(self.dir.path().join("code"), exit).unwrap();
        let mut cmd = klaxon();
        cmd.arg("--config").arg(self.config()).args(["once", "db"]);
        env(&mut cmd);
        let out = output(cmd).await;
        let stderr = text(&out.stderr);
        assert!(!stderr.contains(SECRET), "{stderr}");
        assert!(!text(&out.stdout).contains(SECRET));
        out.status.code().unwrap_or(-1)
    }

    fn outbox(&self) -> serde_json::Value {
        let out = klaxon()
            .arg("--config")
            .arg(self.config())
            .args(["outbox", "--json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let listed = text(&out.stdout);
        assert!(!listed.contains(SECRET), "{listed}");
        serde_json::from_str(&listed).unwrap()
    }
}

/// A receiver that answers its first request with a 503 asking for a retry in a second,
/// then `accepted` for ever after.
async fn busy_then(accepted: Response) -> Server {
    let seen = Arc::new(AtomicUsize::new(0));
    Server::start(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            Response::status(503).header("Retry-After", "1")
        } else {
            accepted.clone()
        }
    })
    .await
}

fn bodies(requests: &[Request]) -> Vec<serde_json::Value> {
    requests.iter().map(|r| r.json()).collect()
}

/// A refusal is not retried: one request, and the message is `given_up` in the outbox.
async fn a_refusal_is_given_up(notifier: &str) {
    let setup = Setup::new(notifier);
    assert_eq!(setup.once("2").await, 1);
    let outbox = setup.outbox();
    let messages = outbox.as_array().unwrap();
    assert_eq!(messages.len(), 1, "{outbox}");
    assert_eq!(messages[0]["state"], "given_up", "{outbox}");
    assert!(
        messages[0]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("HTTP 4"),
        "{outbox}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_triggers_then_resolves_the_same_incident() {
    let accepted = Response::status(202)
        .body(r#"{"status":"success","message":"Event processed","dedup_key":"x"}"#);
    let server = busy_then(accepted).await;
    let setup = Setup::new(&format!(
        "type = \"pagerduty\"\nrouting_key = \"{SECRET}\"\nurl = \"{}\"",
        server.url("/v2/enqueue")
    ));

    assert_eq!(setup.once("2").await, 1);
    server.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(setup.once("0").await, 0);
    let requests = server.wait_for(3, Duration::from_secs(20)).await;
    for r in &requests {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/v2/enqueue")
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let bodies = bodies(&requests);
    // The 503 was retried with the same event.
    assert_eq!(bodies[0], bodies[1]);
    let trigger = &bodies[1];
    assert_eq!(trigger["routing_key"], SECRET);
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["client"], "klaxon");
    let payload = &trigger["payload"];
    assert_eq!(payload["summary"], "DOWN db on ci: db is down");
    assert_eq!(payload["source"], "ci");
    assert_eq!(payload["severity"], "critical");
    assert_eq!(payload["component"], "db");
    assert_eq!(payload["class"], "script");
    assert_eq!(payload["custom_details"]["Reason"], "db is down");
    let dedup_key = trigger["dedup_key"].as_str().unwrap();
    assert!(dedup_key.starts_with("db-"), "{dedup_key}");
    assert_eq!(
        bodies[2],
        serde_json::json!({
            "routing_key": SECRET,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        })
    );
    assert_eq!(setup.outbox(), serde_json::json!([]));

    // 400: PagerDuty refuses the event, for good.
    let refusal = Response::status(400).body(
        r#"{"status":"invalid event","message":"Event object is invalid","errors":["Length of 'routing_key' is incorrect (should be 32 characters)"]}"#,
    );
    let refusing = Server::start(move |_| refusal.clone()).await;
    a_refusal_is_given_up(&format!(
        "type = \"pagerduty\"\nrouting_key = \"{SECRET}\"\nurl = \"{}\"",
        refusing.url("/v2/enqueue")
    ))
    .await;
    assert_eq!(refusing.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opsgenie_creates_then_closes_the_alert_by_alias() {
    let accepted = Response::status(202)
        .body(r#"{"result":"Request will be processed","took":0.1,"requestId":"r"}"#);
    let server = busy_then(accepted).await;
    let setup = Setup::new(&format!(
        "type = \"opsgenie\"\napi_key = \"{SECRET}\"\nurl = \"{}\"",
        server.url("")
    ));

    assert_eq!(setup.once("1").await, 1);
    server.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(setup.once("0").await, 0);
    let requests = server.wait_for(3, Duration::from_secs(20)).await;
    let auth = format!("GenieKey {SECRET}");
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("authorization"), Some(auth.as_str()));
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    assert_eq!(requests[0].path, "/v2/alerts");
    assert_eq!(requests[1].path, "/v2/alerts");
    let bodies = bodies(&requests);
    assert_eq!(bodies[0], bodies[1]);
    let create = &bodies[1];
    assert_eq!(create["message"], "WARNING db on ci: db is down");
    assert_eq!(create["priority"], "P3");
    assert_eq!(create["source"], "ci");
    assert_eq!(create["entity"], "db");
    assert_eq!(create["details"]["Severity"], "warning");
    let alias = create["alias"].as_str().unwrap();
    assert!(alias.starts_with("db-"), "{alias}");
    assert!(
        create["description"]
            .as_str()
            .unwrap()
            .starts_with("WARNING db on ci: db is down\nSeverity: warning\n"),
        "{create}"
    );
    assert_eq!(
        requests[2].path,
        format!("/v2/alerts/{alias}/close?identifierType=alias")
    );
    assert_eq!(bodies[2]["source"], "ci");
    assert!(
        bodies[2]["note"]
            .as_str()
            .unwrap()
            .starts_with("RECOVERED db on ci"),
        "{}",
        bodies[2]
    );
    assert_eq!(setup.outbox(), serde_json::json!([]));

    // 422: Opsgenie refuses the request, for good.
    let refusal =
        Response::status(422).body(r#"{"message":"Request body is not processable","took":0.0}"#);
    let refusing = Server::start(move |_| refusal.clone()).await;
    a_refusal_is_given_up(&format!(
        "type = \"opsgenie\"\napi_key = \"{SECRET}\"\nurl = \"{}\"",
        refusing.url("")
    ))
    .await;
    assert_eq!(refusing.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_bus_the_desktop_message_waits_and_the_others_go() {
    let hook = Server::start(|_| Response::status(204)).await;
    let setup = Setup::with(
        &format!(
            "[notifiers.popup]\ntype = \"desktop\"\n\n[notifiers.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
            hook.url("/hook")
        ),
        r#""popup", "hook""#,
    );
    // No bus address, and a runtime directory without a `bus` socket.
    let runtime = tempfile::tempdir().unwrap();
    let code = setup
        .once_in("2", |cmd| {
            cmd.env_remove("DBUS_SESSION_BUS_ADDRESS")
                .env("XDG_RUNTIME_DIR", runtime.path());
        })
        .await;
    assert_eq!(code, 1);
    let got = hook.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json()["event"], "failure");

    let outbox = setup.outbox();
    let messages = outbox.as_array().unwrap();
    assert_eq!(messages.len(), 1, "{outbox}");
    assert_eq!(
        (&messages[0]["notifier"], &messages[0]["state"]),
        (&"popup".into(), &"pending".into())
    );
    assert_eq!(
        messages[0]["last_error"],
        "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set and there is no \
         $XDG_RUNTIME_DIR/bus): desktop notifications need the agent to run in a desktop \
         session"
    );
}
