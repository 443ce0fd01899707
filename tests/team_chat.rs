//! The team-chat channels (`discord`, `mattermost`, `googlechat`, `matrix`) end to end:
//! the real binary's `klaxon once` failing and then recovering, each channel pointed at
//! a loopback receiver that stands in for the provider, answering as the provider does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use klaxon_testkit::{Request, Response, Server};

mod common;
use common::{klaxon, output, text};

const TOKEN: &str = "syt_bot_token";

/// A receiver for each channel.
struct Receivers {
    discord: Server,
    mattermost: Server,
    googlechat: Server,
    matrix: Server,
}

impl Receivers {
    fn all(&self) -> [(&str, &Server); 4] {
        [
            ("discord", &self.discord),
            ("mattermost", &self.mattermost),
            ("googlechat", &self.googlechat),
            ("matrix", &self.matrix),
        ]
    }
}

/// A config whose job `db` fails while the file `code` says so, told to every channel.
fn setup(dir: &Path, to: &Receivers) -> (PathBuf, PathBuf) {
    let code = dir.join("code");
    let config = format!(
        r#"[agent]
name = "ci"
state_dir = "{state}"
group_wait = "0s"

[notifiers.discord]
type = "discord"
webhook_url = "{discord}"

[notifiers.mattermost]
type = "mattermost"
webhook_url = "{mattermost}"

[notifiers.googlechat]
type = "googlechat"
webhook_url = "{googlechat}"

[notifiers.matrix]
type = "matrix"
homeserver = "{matrix}"
access_token = "{TOKEN}"
room_id = "!ops:example.org"

[jobs.db]
every = "1h"
notify = ["discord", "mattermost", "googlechat", "matrix"]
retry = {{ attempts = 1 }}
[jobs.db.check]
type = "script"
shell = "echo 'disk <full> & *read-only*'; exit $(cat {code})"
"#,
        state = dir.join("state").display(),
        discord = to.discord.url("/api/webhooks/1/hook-token"),
        mattermost = to.mattermost.url("/hooks/hook-key"),
        googlechat = to.googlechat.url("/v1/spaces/AAA/messages?key=k&token=t"),
        matrix = to.matrix.url("/"),
        code = code.display(),
    );
    let path = dir.join("klaxon.toml");
    std::fs::write(&path, config).unwrap();
    (path, code)
}

/// `klaxon once db` with the script exiting `exit`; klaxon's exit code.
async fn once(config: &Path, code: &Path, exit: &str) -> Option<i32> {
    std::fs::write(code, exit).unwrap();
    let mut cmd = klaxon();
    cmd.arg("--config").arg(config).args(["once", "db"]);
    let out = output(cmd).await;
    if out.status.code() == Some(2) {
        panic!("{}", text(&out.stderr));
    }
    out.status.code()
}

/// What each provider shows as the message's headline.
fn headline(channel: &str, r: &Request) -> String {
    let body = r.json();
    let headline = match channel {
        "discord" => body["embeds"][0]["title"].as_str(),
        "mattermost" => body["text"].as_str(),
        "googlechat" => body["text"].as_str(),
        _ => body["body"].as_str(),
    };
    let headline = headline.unwrap_or_default();
    headline.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_channel_hears_a_failure_and_its_recovery_through_once() {
    let to = Receivers {
        discord: Server::start(|_| Response::status(204)).await,
        mattermost: Server::start(|_| Response::ok("ok")).await,
        googlechat: Server::start(|_| Response::ok("{}")).await,
        matrix: Server::start(|_| Response::ok(r#"{"event_id": "$1"}"#)).await,
    };
    let dir = tempfile::tempdir().unwrap();
    let (config, code) = setup(dir.path(), &to);
    assert_eq!(once(&config, &code, "2").await, Some(1));
    assert_eq!(once(&config, &code, "0").await, Some(0));

    for (channel, server) in to.all() {
        let got = server.wait_for(2, Duration::from_secs(10)).await;
        assert_eq!(got.len(), 2, "{channel}");
        let headlines: Vec<String> = got.iter().map(|r| headline(channel, r)).collect();
        // The script's line is the summary, written as each format needs.
        let expected = match channel {
            "discord" | "mattermost" => [
                "DOWN db on ci: disk \\<full\\> & \\*read-only\\*",
                "RECOVERED db on ci after",
            ],
            "googlechat" => [
                "*DOWN db on ci: disk <\u{200b}full> & *\u{200b}read-only*\u{200b}*",
                "*RECOVERED db on ci after",
            ],
            _ => [
                "DOWN db on ci: disk <full> & *read-only*",
                "RECOVERED db on ci after",
            ],
        };
        assert_eq!(headlines[0], expected[0], "{channel}");
        assert!(
            headlines[1].starts_with(expected[1]),
            "{channel}: {headlines:?}"
        );
        for r in &got {
            assert_eq!(
                r.header("content-type"),
                Some("application/json"),
                "{channel}"
            );
        }
    }

    // Discord and Mattermost: Markdown from the check is escaped.
    let discord = to.discord.requests()[0].json();
    let description = discord["embeds"][0]["description"].as_str().unwrap();
    assert!(
        description.contains("disk \\<full\\> & \\*read-only\\*"),
        "{description}"
    );
    assert_eq!(
        discord["allowed_mentions"]["parse"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let mattermost = to.mattermost.requests()[0].json();
    assert_eq!(mattermost["attachments"][0]["color"], "#E01E5A");
    assert_eq!(
        to.mattermost.requests()[1].json()["attachments"][0]["color"],
        "#2EB67D"
    );

    // Google Chat: one thread per alert, replying in it.
    let chat = to.googlechat.requests();
    let key = |r: &Request| r.json()["thread"]["threadKey"].as_str().unwrap().to_owned();
    assert!(key(&chat[0]).starts_with("db-"), "{}", key(&chat[0]));
    assert_eq!(key(&chat[0]), key(&chat[1]));
    for r in &chat {
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.path,
            "/v1/spaces/AAA/messages?key=k&token=t\
             &messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
        );
    }

    // Matrix: a PUT per message, each with its own transaction, HTML escaped.
    let matrix = to.matrix.requests();
    let prefix = "/_matrix/client/v3/rooms/%21ops%3Aexample.org/send/m.room.message/klaxon.db-";
    for r in &matrix {
        assert_eq!(r.method, "PUT");
        assert!(r.path.starts_with(prefix), "{}", r.path);
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(r.json()["msgtype"], "m.text");
        assert_eq!(r.json()["format"], "org.matrix.custom.html");
    }
    assert!(matrix[0].path.contains(".failure."), "{}", matrix[0].path);
    assert!(matrix[1].path.contains(".recovery."), "{}", matrix[1].path);
    let html = matrix[0].json()["formatted_body"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        html.contains("<pre><code>disk &lt;full&gt; &amp; *read-only*</code></pre>"),
        "{html}"
    );
}

/// Each provider's failure answers through `once`: a 429 waits the hint in its body (the
/// header's hour would leave the message in the outbox), a 5xx is tried again, a 4xx is
/// given up at once; a Matrix retry reuses its transaction id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_answers_are_retried_or_given_up_as_each_provider_means() {
    let hour = |status: u16, body: &str| {
        Response::status(status)
            .header("Retry-After", "3600")
            .header("Content-Type", "application/json")
            .body(body.to_owned())
    };
    let to = Receivers {
        discord: Server::sequence(
            [hour(429, r#"{"message": "You are being rate limited.", "retry_after": 0.2, "global": false}"#)],
            Response::status(204),
        )
        .await,
        mattermost: Server::sequence([Response::status(503)], Response::ok("ok")).await,
        googlechat: Server::sequence(
            [Response::status(400).body(r#"{"error": {"code": 400, "status": "INVALID_ARGUMENT"}}"#)],
            Response::ok("{}"),
        )
        .await,
        matrix: Server::sequence(
            [hour(429, r#"{"errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests", "retry_after_ms": 200}"#)],
            Response::ok(r#"{"event_id": "$1"}"#),
        )
        .await,
    };
    let dir = tempfile::tempdir().unwrap();
    let (config, code) = setup(dir.path(), &to);
    assert_eq!(once(&config, &code, "2").await, Some(1));

    // Tried again and delivered: the same message twice.
    for (channel, server) in [
        ("discord", &to.discord),
        ("mattermost", &to.mattermost),
        ("matrix", &to.matrix),
    ] {
        let got = server.requests();
        assert_eq!(got.len(), 2, "{channel}: {got:#?}");
        assert_eq!(got[0].body, got[1].body, "{channel}");
    }
    let matrix = to.matrix.requests();
    assert_eq!(
        matrix[0].path, matrix[1].path,
        "a retry keeps its transaction id"
    );
    // Refused for good: tried once, given up, its reason kept.
    assert_eq!(to.googlechat.requests().len(), 1);
    let mut cmd = klaxon();
    cmd.arg("--config").arg(&config).args(["outbox", "--json"]);
    let out = output(cmd).await;
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let left: Vec<(String, String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
            (s("notifier"), s("state"), s("last_error"))
        })
        .collect();
    assert_eq!(
        left,
        [(
            "googlechat".to_owned(),
            "given_up".to_owned(),
            r#"HTTP 400 Bad Request: {"error": {"code": 400, "status": "INVALID_ARGUMENT"}}"#
                .to_owned()
        )]
    );
}
