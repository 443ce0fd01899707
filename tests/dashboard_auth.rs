//! Signing in to the dashboard and its actions, through the real `klaxon run`: the
//! listener on an ephemeral port, real script jobs, a real webhook receiver, the real
//! on-disk store read back through `klaxon status --json`, `history --json`,
//! `outbox --json` and the store itself. Cookies are handled by hand, as a browser
//! would: the session cookie from `Set-Cookie`, the CSRF token from the page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;
use std::time::Duration;

use klaxon_testkit::{Response as Reply, Server};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

mod common;

const TOKEN: &str = "canary-dashboard-token-5e2b9d";

/// A `klaxon run` in a temp dir, killed on drop; its stderr goes to a file. Every
/// response it gives is kept, to show the token is in none of them.
struct Agent {
    dir: tempfile::TempDir,
    child: Child,
    addr: SocketAddr,
    client: reqwest::Client,
    seen: Mutex<String>,
}

/// What a response said.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: impl reqwest::header::AsHeaderName) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_default()
    }
}

/// The config: `db` fails (its messages go to `hook`), `slow` counts its runs in the
/// file `runs` and takes 2 s, `beat` is passive.
fn config(dir: &Path, hook: &Server, token: bool) -> String {
    let runs = dir.join("runs");
    let token = if token {
        "listen_token = \"${KLAXON_TOKEN}\"\n"
    } else {
        ""
    };
    format!(
        "[agent]\nname = \"box\"\nstate_dir = \"state\"\ntimezone = \"UTC\"\n\
         listen = \"127.0.0.1:0\"\n{token}\n\
         [notifiers.hook]\ntype = \"webhook\"\nurl = \"{url}\"\n\n\
         [defaults]\nnotify = [\"hook\"]\nretry = {{ attempts = 1 }}\n\n\
         [jobs.db]\nevery = \"1h\"\n[jobs.db.check]\ntype = \"script\"\nshell = \"exit 2\"\n\n\
         [jobs.slow]\nevery = \"1h\"\n[jobs.slow.check]\ntype = \"script\"\n\
         shell = \"echo x >> '{runs}'; sleep 2; echo \\\"run $(grep -c x '{runs}')\\\"\"\n\n\
         [jobs.beat]\nevery = \"1h\"\n[jobs.beat.check]\ntype = \"heartbeat\"\ngrace = \"1m\"\n",
        url = hook.url("/hook"),
        runs = runs.display(),
    )
}

impl Agent {
    async fn start(hook: &Server, token: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("klaxon.toml"),
            config(dir.path(), hook, token),
        )
        .unwrap();
        let mut cmd = common::klaxon();
        cmd.env("RUST_LOG", "klaxon=debug,warn")
            .env("KLAXON_TOKEN", TOKEN)
            .arg("--config")
            .arg(dir.path().join("klaxon.toml"));
        let child = common::spawn_run(cmd, &dir.path().join("agent.log"));
        let mut agent = Self {
            dir,
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            seen: Mutex::default(),
        };
        agent.addr = agent
            .until("a listener", || common::listening_on(&agent.log()))
            .await;
        agent
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Asks `ready` every 100 ms until it answers (15 s at most).
    async fn until<T>(&self, what: &str, ready: impl Fn() -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(done) = ready() {
                return done;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never {what}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `klaxon ARGS` on the agent's config, which must exit 0; its stdout.
    fn klaxon(&self, args: &[&str]) -> String {
        let mut cmd = common::klaxon();
        cmd.env("KLAXON_TOKEN", TOKEN);
        common::stdout_of(cmd, &self.dir.path().join("klaxon.toml"), args)
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.klaxon(args)).unwrap()
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap();
        let answer = Answer {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        };
        let mut seen = self.seen.lock().unwrap();
        seen.push_str(&format!("{:?}\n{}\n", answer.headers, answer.body));
        answer
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut request = self.client.get(self.url(path));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        self.send(request).await
    }

    /// A form POST with `cookie` (`NAME=VALUE`) and `headers`.
    async fn post(
        &self,
        path: &str,
        cookie: Option<&str>,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Answer {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// Signs in: the session cookie (`NAME=VALUE`) and the CSRF token the signed-in
    /// page's form carries.
    async fn sign_in(&self) -> (String, String) {
        let answer = self.post("/login", None, &[("token", TOKEN)], &[]).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let cookie = answer
            .header(SET_COOKIE)
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let page = self.get("/login", Some(&cookie)).await;
        assert_eq!(page.status, StatusCode::OK);
        (cookie, csrf_of(&page.body))
    }

    /// That neither the log nor any response carried the token.
    fn assert_token_kept(&self) {
        let log = self.log();
        assert!(!log.contains(TOKEN), "the token is in the log:\n{log}");
        let seen = self.seen.lock().unwrap();
        assert!(!seen.is_empty());
        assert!(!seen.contains(TOKEN), "the token is in a response:\n{seen}");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the hidden `csrf` field in a page.
fn csrf_of(page: &str) -> String {
    let field = "name=\"csrf\" value=\"";
    let at = page
        .find(field)
        .unwrap_or_else(|| panic!("no csrf field in:\n{page}"));
    let rest = &page[at + field.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_sets_a_strict_session_cookie_and_a_wrong_token_is_refused() {
    let hook = Server::start(|_| Reply::ok("ok")).await;
    let agent = Agent::start(&hook, true).await;

    let form = agent.get("/login?next=/jobs/db", None).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.header("content-type").starts_with("text/html"));
    assert!(
        form.header("content-security-policy")
            .starts_with("default-src 'self'")
    );
    for part in [
        "<label for=\"token\">",
        "<input id=\"token\" name=\"token\" type=\"password\"",
        "<button type=\"submit\">Sign in</button>",
        "name=\"next\" value=\"/jobs/db\"",
    ] {
        assert!(form.body.contains(part), "no `{part}` in:\n{}", form.body);
    }

    let wrong = agent
        .post(
            "/login",
            None,
            &[("token", "canary-dashboard-token-5e2b9")],
            &[],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.body.contains("That is not the listen token"),
        "{}",
        wrong.body
    );
    assert!(wrong.body.contains("type=\"password\""), "the form again");
    assert!(wrong.headers.get(SET_COOKIE).is_none());
    assert!(
        !wrong.body.contains("canary-dashboard-token-5e2b9"),
        "echoed"
    );
    let empty = agent.post("/login", None, &[], &[]).await;
    assert_eq!(empty.status, StatusCode::UNAUTHORIZED);

    let signed = agent.post("/login", None, &[("token", TOKEN)], &[]).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER);
    assert_eq!(signed.header(LOCATION), "/");
    let cookie = signed.header(SET_COOKIE);
    let (value, attributes) = cookie.split_once("; ").unwrap();
    assert!(value.starts_with("klaxon_session="), "{cookie}");
    assert_eq!(
        attributes,
        "HttpOnly; SameSite=Strict; Path=/; Max-Age=43200"
    );
    assert!(!cookie.contains(TOKEN));
    let (cookie, csrf) = agent.sign_in().await;
    assert_eq!(csrf.len(), 64, "{csrf}");

    // Back to a local page only: never to another site.
    let next = agent
        .post(
            "/login",
            None,
            &[("token", TOKEN), ("next", "/jobs/db")],
            &[],
        )
        .await;
    assert_eq!(next.header(LOCATION), "/jobs/db");
    for away in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
    ] {
        let open = agent
            .post("/login", None, &[("token", TOKEN), ("next", away)], &[])
            .await;
        assert_eq!(open.status, StatusCode::SEE_OTHER);
        assert_eq!(open.header(LOCATION), "/", "{away}");
    }

    // Signing out needs the session's CSRF token, and clears the cookie.
    let refused = agent.post("/logout", Some(&cookie), &[], &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let out = agent
        .post("/logout", Some(&cookie), &[("csrf", &csrf)], &[])
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(
        out.header(SET_COOKIE),
        "klaxon_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
    );
    assert!(agent.log().contains("signed in to the dashboard"));
    agent.assert_token_kept();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_the_sessions_csrf_token_or_from_another_site_are_refused() {
    let hook = Server::start(|_| Reply::ok("ok")).await;
    let agent = Agent::start(&hook, true).await;
    let (cookie, csrf) = agent.sign_in().await;
    let (_, other_csrf) = agent.sign_in().await;
    assert_ne!(csrf, other_csrf);
    let own = format!("http://{}", agent.addr);

    let no_session = agent
        .post("/jobs/db/silence", None, &[("csrf", &csrf)], &[])
        .await;
    assert_eq!(no_session.status, StatusCode::FORBIDDEN);
    assert!(
        no_session.body.contains("sign in first"),
        "{}",
        no_session.body
    );
    assert!(
        no_session.body.contains("href=\"/login\""),
        "{}",
        no_session.body
    );
    let forged = agent
        .post(
            "/jobs/db/silence",
            Some("klaxon_session=4102444800.00.00"),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    for fields in [
        vec![],
        vec![("csrf", "")],
        vec![("csrf", other_csrf.as_str())],
    ] {
        let refused = agent
            .post("/jobs/db/silence", Some(&cookie), &fields, &[])
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{fields:?}");
        assert!(
            refused
                .body
                .contains("CSRF token is missing or not this session"),
            "{}",
            refused.body
        );
    }
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let cross = agent
            .post(
                "/jobs/db/silence",
                Some(&cookie),
                &[("csrf", &csrf)],
                &[("origin", origin)],
            )
            .await;
        assert_eq!(cross.status, StatusCode::FORBIDDEN, "{origin}");
        assert!(
            cross.body.contains("sent from another site"),
            "{}",
            cross.body
        );
        let login = agent
            .post("/login", None, &[("token", TOKEN)], &[("origin", origin)])
            .await;
        assert_eq!(login.status, StatusCode::FORBIDDEN, "{origin}");
        assert!(login.headers.get(SET_COOKIE).is_none());
    }
    // Nothing was silenced.
    let status = agent.json(&["status", "--json"]);
    assert!(status[0]["silenced_until"].is_null(), "{status}");

    // The listener's own origin is taken, and the answer goes back to the page.
    let done = agent
        .post(
            "/jobs/db/silence",
            Some(&cookie),
            &[("csrf", &csrf)],
            &[("origin", &own), ("referer", &format!("{own}/jobs/db"))],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.header(LOCATION), "/jobs/db");
    // A referer elsewhere is not gone back to.
    let elsewhere = agent
        .post(
            "/jobs/db/silence",
            Some(&cookie),
            &[("csrf", &csrf)],
            &[("referer", "http://evil.example/jobs/db")],
        )
        .await;
    assert_eq!(elsewhere.header(LOCATION), "/");

    // A changed token (and a reload) ends every session.
    let config = agent.dir.path().join("klaxon.toml");
    let changed = std::fs::read_to_string(&config).unwrap().replace(
        "listen_token = \"${KLAXON_TOKEN}\"",
        "listen_token = \"another-token-71c3\"",
    );
    std::fs::write(&config, changed).unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &agent.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    agent
        .until("the reload", || {
            agent.log().contains("config reloaded").then_some(())
        })
        .await;
    let ended = agent
        .post("/jobs/db/silence", Some(&cookie), &[("csrf", &csrf)], &[])
        .await;
    assert_eq!(ended.status, StatusCode::FORBIDDEN);
    assert!(ended.body.contains("sign in first"), "{}", ended.body);
    let page = agent.get("/login", Some(&cookie)).await;
    assert!(
        page.body.contains("type=\"password\""),
        "still signed in:\n{}",
        page.body
    );
    agent.assert_token_kept();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboards_actions_change_the_store() {
    // Every message is refused for good: it stays in the outbox, given up.
    let hook = Server::start(|_| Reply::status(400)).await;
    let agent = Agent::start(&hook, true).await;
    let (cookie, csrf) = agent.sign_in().await;
    let act = |path: String| {
        let (agent, cookie, csrf) = (&agent, &cookie, &csrf);
        async move {
            agent
                .post(
                    &path,
                    Some(cookie),
                    &[("csrf", csrf), ("next", "/jobs/db")],
                    &[],
                )
                .await
        }
    };

    // `db` failed at start: its alert is open, and its message was given up.
    let given_up = agent
        .until("db's message given up", || {
            let outbox = agent.json(&["outbox", "--json"]);
            (outbox[0]["state"] == "given_up").then_some(outbox)
        })
        .await;
    let id = given_up[0]["id"].as_i64().unwrap();

    // Silence 1h, recorded as by the dashboard.
    let silenced = act("/jobs/db/silence".into()).await;
    assert_eq!(silenced.status, StatusCode::SEE_OTHER, "{}", silenced.body);
    assert_eq!(silenced.header(LOCATION), "/jobs/db");
    let status = agent.json(&["status", "--json"]);
    assert_eq!(status[0]["job"], "db");
    let silences = agent.json(&["silence", "list", "--json"]);
    assert_eq!(silences.as_array().unwrap().len(), 1, "{silences}");
    assert_eq!(silences[0]["jobs"], serde_json::json!(["db"]));
    assert_eq!(silences[0]["created_by"], "dashboard", "{silences}");
    assert_eq!(
        status[0]["silenced_by"],
        format!("silence {}", silences[0]["id"])
    );
    let until = chrono::DateTime::parse_from_rfc3339(status[0]["silenced_until"].as_str().unwrap())
        .unwrap();
    let left = until.signed_duration_since(chrono::Utc::now());
    assert!(
        left > chrono::Duration::minutes(55) && left <= chrono::Duration::hours(1),
        "{left}"
    );
    let unknown = act("/jobs/nope/silence".into()).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    assert_eq!(status[0]["alert_open"], true, "{status}");
    let acked = act("/jobs/db/ack".into()).await;
    assert_eq!(acked.status, StatusCode::SEE_OTHER, "{}", acked.body);
    let status = agent.json(&["status", "--json"]);
    assert_eq!(status[0]["acknowledged"]["by"], "dashboard", "{status}");
    let nothing_open = act("/jobs/slow/ack".into()).await;
    assert_eq!(nothing_open.status, StatusCode::CONFLICT);
    assert!(
        nothing_open.body.contains("no open alert"),
        "{}",
        nothing_open.body
    );

    // Run now: not beside the run going since the start, then once it has ended.
    let runs = || agent.json(&["history", "slow", "--json"]);
    let busy = act("/jobs/slow/run".into()).await;
    assert_eq!(busy.status, StatusCode::CONFLICT, "{}", busy.body);
    assert!(busy.body.contains("running already"), "{}", busy.body);
    agent
        .until("slow's first run", || {
            (runs().as_array().unwrap().len() == 1).then_some(())
        })
        .await;
    let ran = act("/jobs/slow/run".into()).await;
    assert_eq!(ran.status, StatusCode::SEE_OTHER, "{}", ran.body);
    let history = agent
        .until("slow's run now", || {
            let runs = runs();
            (runs.as_array().unwrap().len() == 2).then_some(runs)
        })
        .await;
    assert_eq!(history[0]["summary"], "run 2", "{history}");
    assert_eq!(history[1]["summary"], "run 1", "{history}");
    // A run asked for is no fire of the schedule: the store keeps none for it.
    let store = klaxon::store::Store::open(&agent.state_dir()).unwrap();
    let fires: Vec<_> = store
        .history("slow", 10)
        .unwrap()
        .iter()
        .map(|r| r.fire_at.is_some())
        .collect();
    assert_eq!(fires, [false, true]);
    let passive = act("/jobs/beat/run".into()).await;
    assert_eq!(passive.status, StatusCode::CONFLICT);
    assert!(passive.body.contains("heartbeat"), "{}", passive.body);
    assert_eq!(
        act("/jobs/nope/run".into()).await.status,
        StatusCode::NOT_FOUND
    );

    // Retry the given-up message: due again, sent again (and refused again).
    assert_eq!(hook.requests().len(), 1);
    let retried = act(format!("/outbox/{id}/retry")).await;
    assert_eq!(retried.status, StatusCode::SEE_OTHER, "{}", retried.body);
    agent
        .until("the message sent again", || {
            (hook.requests().len() == 2).then_some(())
        })
        .await;
    let history = agent.json(&["history", "db", "--json"]);
    assert!(
        history[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "message {id} to `hook` (failure) sent again by hand"
            )),
        "{history}"
    );
    agent
        .until("the message given up again", || {
            let outbox = agent.json(&["outbox", "--json"]);
            (outbox[0]["state"] == "given_up").then_some(())
        })
        .await;

    // Drop it: the outbox is empty, and history says so.
    let dropped = act(format!("/outbox/{id}/drop")).await;
    assert_eq!(dropped.status, StatusCode::SEE_OTHER, "{}", dropped.body);
    assert_eq!(agent.json(&["outbox", "--json"]), serde_json::json!([]));
    let history = agent.json(&["history", "db", "--json"]);
    assert!(
        history[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with(&format!("message {id} to `hook` (failure) dropped by hand")),
        "{history}"
    );
    let gone = act(format!("/outbox/{id}/drop")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert!(
        gone.body.contains("no undelivered message"),
        "{}",
        gone.body
    );
    agent.assert_token_kept();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_listen_token_every_action_is_refused() {
    let hook = Server::start(|_| Reply::ok("ok")).await;
    let agent = Agent::start(&hook, false).await;
    let page = agent.get("/login", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("needs `agent.listen_token`"),
        "{}",
        page.body
    );
    let login = agent.post("/login", None, &[("token", TOKEN)], &[]).await;
    assert_eq!(login.status, StatusCode::FORBIDDEN);
    assert!(login.headers.get(SET_COOKIE).is_none());
    for path in [
        "/jobs/db/silence",
        "/jobs/db/ack",
        "/jobs/slow/run",
        "/outbox/1/retry",
        "/outbox/1/drop",
    ] {
        let refused = agent.post(path, None, &[("csrf", "x")], &[]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            refused.body.contains("actions need `agent.listen_token`"),
            "{path}: {}",
            refused.body
        );
    }
    let status = agent.json(&["status", "--json"]);
    assert!(status[0]["silenced_until"].is_null(), "{status}");
}
