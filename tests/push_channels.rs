//! The push channels (`ntfy`, `pushover`, `telegram`, `gotify`) end to end: `klaxon once`
//! with each pointed at a local receiver that checks the request its provider
//! documents. A failure is refused once in the provider's own way (5xx or 429 with its
//! retry hint), retried and delivered; the recovery follows; a refusal (4xx) is never
//! retried. No secret shows in klaxon's output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use klaxon_testkit::{Request, Response, Server};

mod common;
use common::{klaxon, output, text};

const NTFY_TOKEN: &str = "tk_ntfy7c1e0a";
const PUSHOVER_TOKEN: &str = "azPushoverTok3n";
const PUSHOVER_USER: &str = "uPushoverUs3r";
const TELEGRAM_TOKEN: &str = "123456:TelegramT0ken";
const GOTIFY_TOKEN: &str = "AGotifyT0ken";
const SECRETS: [&str; 5] = [
    NTFY_TOKEN,
    PUSHOVER_TOKEN,
    PUSHOVER_USER,
    TELEGRAM_TOKEN,
    GOTIFY_TOKEN,
];

/// One receiver per channel.
struct Receivers {
    ntfy: Server,
    pushover: Server,
    telegram: Server,
    gotify: Server,
}

impl Receivers {
    /// Each receiver answers `first` to the first request and 200 after.
    async fn start(first: [Response; 4]) -> Self {
        let [ntfy, pushover, telegram, gotify] = first;
        let ok = |body: &str| Response::ok(body.to_owned());
        Self {
            ntfy: Server::sequence([ntfy], ok("{\"id\":\"m1\"}")).await,
            pushover: Server::sequence([pushover], ok("{\"status\":1}")).await,
            telegram: Server::sequence([telegram], ok("{\"ok\":true,\"result\":{}}")).await,
            gotify: Server::sequence([gotify], ok("{\"id\":1}")).await,
        }
    }

    fn config(&self, dir: &Path, code: &Path) -> PathBuf {
        let config = format!(
            r#"[agent]
name = "ci"
state_dir = "{state}"

[notifiers.phone]
type = "ntfy"
url = "{ntfy}"
topic = "ops-alerts"
token = "{NTFY_TOKEN}"

[notifiers.pushover]
type = "pushover"
token = "{PUSHOVER_TOKEN}"
user = "{PUSHOVER_USER}"
api_url = "{pushover}"

[notifiers.telegram]
type = "telegram"
bot_token = "{TELEGRAM_TOKEN}"
chat_id = -1001234
api_url = "{telegram}"

[notifiers.gotify]
type = "gotify"
url = "{gotify}"
token = "{GOTIFY_TOKEN}"

[jobs.db]
every = "1h"
notify = ["phone", "pushover", "telegram", "gotify"]
retry = {{ attempts = 1 }}
[jobs.db.check]
type = "script"
shell = "echo 'db <down> & out'; exit $(cat {code})"
"#,
            state = dir.join("state").display(),
            ntfy = self.ntfy.url("/"),
            pushover = self.pushover.url("/1/messages.json"),
            telegram = self.telegram.url(""),
            gotify = self.gotify.url("/gotify"),
            code = code.display(),
        );
        let path = dir.join("klaxon.toml");
        std::fs::write(&path, config).unwrap();
        path
    }
}

/// Runs `klaxon once db` with the check exiting `exit`; returns its stderr and stdout.
async fn once(config: &Path, code: &Path, exit: &str, expect: i32) -> String {
    std::fs::write(code, exit).unwrap();
    let mut cmd = klaxon();
    cmd.env("RUST_LOG", "warn,klaxon=debug,klaxon_notifiers=debug")
        .arg("--config")
        .arg(config)
        .args(["once", "db"]);
    let out = output(cmd).await;
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(expect), "{all}");
    for secret in SECRETS {
        assert!(!all.contains(secret), "{secret} shown:\n{all}");
    }
    all
}

fn form(request: &Request) -> Vec<(String, String)> {
    url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// The wait between a refused try and the next, on the receiver's clock.
fn gap(requests: &[Request]) -> Duration {
    requests[1].at - requests[0].at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_channel_retries_its_providers_way_then_hears_the_recovery() {
    let receivers = Receivers::start([
        Response::status(429).header("Retry-After", "1"),
        // Pushover gives no hint; it asks for 5 seconds at least.
        Response::status(500).body("{\"status\":0}"),
        Response::status(429).body(
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1","parameters":{"retry_after":1}}"#,
        ),
        Response::status(503).header("Retry-After", "1"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let code = dir.path().join("code");
    let config = receivers.config(dir.path(), &code);

    let said = once(&config, &code, "2", 1).await;
    assert!(!said.contains("not delivered yet"), "{said}");
    let said = once(&config, &code, "0", 0).await;
    assert!(!said.contains("not delivered yet"), "{said}");
    let wait = Duration::from_secs(10);

    // ntfy: a JSON publish to the root with the bearer token.
    let ntfy = receivers.ntfy.wait_for(3, wait).await;
    assert!(gap(&ntfy) >= Duration::from_millis(900), "{:?}", gap(&ntfy));
    for r in &ntfy {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/"));
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {NTFY_TOKEN}").as_str())
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let (failure, recovery) = (ntfy[1].json(), ntfy[2].json());
    assert_eq!(ntfy[0].json(), failure, "the retry sends the same message");
    assert_eq!(failure["topic"], "ops-alerts");
    assert_eq!(failure["title"], "DOWN db on ci: db <down> & out");
    assert_eq!(failure["priority"], 5);
    assert_eq!(failure["tags"][0], "rotating_light");
    assert!(
        failure["message"]
            .as_str()
            .unwrap()
            .contains("Output:\ndb <down> & out")
    );
    assert_eq!(recovery["priority"], 3);
    assert!(
        recovery["title"]
            .as_str()
            .unwrap()
            .starts_with("RECOVERED db on ci")
    );

    // Pushover: a form with the credentials, after at least 5 seconds.
    let pushover = receivers.pushover.wait_for(3, wait).await;
    assert!(
        gap(&pushover) >= Duration::from_millis(4_900),
        "{:?}",
        gap(&pushover)
    );
    for r in &pushover {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/1/messages.json")
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        let form = form(r);
        assert_eq!(field(&form, "token"), PUSHOVER_TOKEN);
        assert_eq!(field(&form, "user"), PUSHOVER_USER);
        assert!(field(&form, "timestamp").parse::<i64>().is_ok(), "{form:?}");
    }
    let (failure, recovery) = (form(&pushover[1]), form(&pushover[2]));
    assert_eq!(field(&failure, "title"), "DOWN db on ci: db <down> & out");
    assert_eq!(field(&failure, "priority"), "1");
    assert!(field(&recovery, "title").starts_with("RECOVERED db on ci"));
    assert_eq!(field(&recovery, "priority"), "0");

    // Telegram: sendMessage below the bot's token, HTML escaped, after `retry_after`.
    let telegram = receivers.telegram.wait_for(3, wait).await;
    assert!(
        gap(&telegram) >= Duration::from_millis(900),
        "{:?}",
        gap(&telegram)
    );
    for r in &telegram {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, format!("/bot{TELEGRAM_TOKEN}/sendMessage"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        let body = r.json();
        assert_eq!(body["chat_id"], -1001234);
        assert_eq!(body["parse_mode"], "HTML");
    }
    let failure = telegram[1].json();
    let html = failure["text"].as_str().unwrap();
    assert!(
        html.starts_with("<b>DOWN db on ci: db &lt;down&gt; &amp; out</b>\n"),
        "{html}"
    );
    assert!(
        html.ends_with("<pre>db &lt;down&gt; &amp; out</pre>"),
        "{html}"
    );
    let recovery = telegram[2].json();
    assert!(
        recovery["text"]
            .as_str()
            .unwrap()
            .starts_with("<b>RECOVERED db on ci")
    );

    // Gotify: /message below the server's path, the token in its header.
    let gotify = receivers.gotify.wait_for(3, wait).await;
    assert!(
        gap(&gotify) >= Duration::from_millis(900),
        "{:?}",
        gap(&gotify)
    );
    for r in &gotify {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/gotify/message")
        );
        assert_eq!(r.header("x-gotify-key"), Some(GOTIFY_TOKEN));
    }
    let (failure, recovery) = (gotify[1].json(), gotify[2].json());
    assert_eq!(failure["title"], "DOWN db on ci: db <down> & out");
    assert_eq!(failure["priority"], 8);
    assert_eq!(
        failure["extras"]["client::display"]["contentType"],
        "text/plain"
    );
    assert_eq!(recovery["priority"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_not_retried_and_shows_no_secret() {
    let receivers = Receivers::start([(); 4].map(|()| Response::status(401))).await;
    // Each refuses quoting the whole request, as a careless server might.
    for server in [
        &receivers.ntfy,
        &receivers.pushover,
        &receivers.telegram,
        &receivers.gotify,
    ] {
        server.set_handler(move |r: &Request| {
            let headers: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            Response::status(if r.path.contains("bot") { 403 } else { 401 }).body(format!(
                "refused {} {} {}",
                r.path,
                headers.join(", "),
                r.text()
            ))
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let code = dir.path().join("code");
    let config = receivers.config(dir.path(), &code);
    let said = once(&config, &code, "2", 1).await;
    assert!(
        !said.contains("not delivered yet"),
        "given up at once: {said}"
    );
    // Each refusal is logged, the credentials it quoted masked.
    for notifier in ["phone", "pushover", "telegram", "gotify"] {
        let line = said
            .lines()
            .find(|l| l.contains(&format!("notifier={notifier} ")))
            .unwrap_or_else(|| panic!("no line for {notifier}: {said}"));
        assert!(
            line.contains("delivery refused, not retrying: HTTP 40"),
            "{line}"
        );
        assert!(line.contains("***"), "{line}");
    }
    for server in [
        &receivers.ntfy,
        &receivers.pushover,
        &receivers.telegram,
        &receivers.gotify,
    ] {
        assert_eq!(server.requests().len(), 1, "{said}");
    }
}
