//! End-to-end tests of the dashboard's pages (`/`, `/jobs/JOB`, `/static/...`) over
//! plain HTTP: the real `klaxon run` with real script jobs that fail and recover, a real
//! loopback receiver for its notifier, and the real on-disk store. The real browser
//! (scripts, accessibility, screenshots) is `tests/system_dashboard.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use klaxon_testkit::{Response, Server};

mod common;

/// Secrets put in the configs: none may ever show on a page.
const TOKEN: &str = "canary-listen-token-5b0e7d1c";
const HOOK_SECRET: &str = "T0CANARY1/B0CANARY2/xq7VbWn3Kp9sLr2Tz8Yc4Hd6";
const BEARER: &str = "canary-bearer-4f1d9e2a77";
const PING_SECRET: &str = "3f2c8e51-canary-ping-uuid";
const ENV_SECRET: &str = "canary-env-value-a81b";
/// A literal header secret and a URL's password, in the config file itself.
const HEADER_SECRET: &str = "canary-header-key-5e0d";
const URL_PASSWORD: &str = "canary-url-pass-77c1";

/// A `klaxon run` in a temp dir, killed on drop; its stderr goes to a file.
struct Agent {
    dir: tempfile::TempDir,
    child: Child,
    addr: SocketAddr,
}

impl Agent {
    async fn start(config: &str, dir: tempfile::TempDir) -> Self {
        std::fs::write(dir.path().join("klaxon.toml"), config).unwrap();
        let mut cmd = common::klaxon();
        cmd.env("RUST_LOG", "klaxon=debug,warn")
            .env("KLAXON_TOKEN", TOKEN)
            .env("CANARY_ENV", ENV_SECRET)
            .arg("--config")
            .arg(dir.path().join("klaxon.toml"))
            .arg("run")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap());
        let child = cmd.spawn().expect("start klaxon run");
        let mut agent = Self {
            dir,
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let log = agent.wait_for_log("listening on ").await;
        let addr = log.split("listening on ").nth(1).unwrap();
        let addr = addr.split_whitespace().next().unwrap();
        agent.addr = addr
            .parse()
            .unwrap_or_else(|_| panic!("`{addr}` in:\n{log}"));
        agent
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    async fn wait_for_log(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no `{needle}` in the log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn get(&self, path: &str) -> Page {
        let response = reqwest::get(self.url(path)).await.unwrap();
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let (content_type, csp) = (header("content-type"), header("content-security-policy"));
        Page {
            status,
            content_type,
            csp,
            body: response.text().await.unwrap(),
        }
    }

    /// Fetches `path` until `ready` holds (20 s at most).
    async fn page_until(&self, path: &str, what: &str, ready: impl Fn(&Page) -> bool) -> Page {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let page = self.get(path).await;
            if ready(&page) {
                return page;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path}: never {what}:\n{}\n{}",
                page.body,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Page {
    status: u16,
    content_type: Option<String>,
    csp: Option<String>,
    body: String,
}

impl Page {
    /// The `<tr>` of the jobs table whose row header links to `job`.
    fn job_row(&self, job: &str) -> Option<&str> {
        let link = format!("<th scope=\"row\"><a href=\"/jobs/{job}\">{job}</a>");
        let start = self.body.find(&link)?;
        let end = self.body[start..].find("</tr>")? + start;
        Some(&self.body[start..end])
    }

    /// The words of the state pill (`<span class="st CLASS">WORD</span>`) in `row`.
    fn state_in(row: &str) -> Option<&str> {
        let start = row.find("<span class=\"st ")?;
        let rest = &row[start..];
        let word = &rest[rest.find('>')? + 1..];
        Some(&word[..word.find('<')?])
    }

    fn state_of(&self, job: &str) -> Option<&str> {
        Self::state_in(self.job_row(job)?)
    }

    /// The `<rect>`s of the first `<svg class="bar"` in `html`.
    fn bar_segments(html: &str) -> Option<usize> {
        let start = html.find("<svg class=\"bar\"")?;
        let end = html[start..].find("</svg>")? + start;
        Some(html[start..end].matches("<rect").count())
    }

    /// Rows of the table that follows the heading with id `heading`.
    fn rows_after(&self, heading: &str) -> usize {
        rows_after(&self.body, heading)
    }

    fn assert_strict(&self, path: &str) {
        let csp = self
            .csp
            .as_deref()
            .unwrap_or_else(|| panic!("{path}: no CSP"));
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(
            self.content_type.as_deref(),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        assert!(
            self.body.starts_with("<!doctype html>\n<html lang=\"en\">"),
            "{path}"
        );
        // Nothing inline for the policy to refuse: no style attributes or elements, and
        // every script is a file.
        assert!(!self.body.contains(" style="), "{path}: inline style");
        assert!(!self.body.contains("<style"), "{path}: a style element");
        for script in self.body.split("<script").skip(1) {
            assert!(
                script.starts_with(" src=\"/static/"),
                "{path}: inline script"
            );
        }
    }
}

/// Rows of the table in the section of the heading with id `heading` in `html`.
fn rows_after(html: &str, heading: &str) -> usize {
    let start = html
        .find(&format!("id=\"{heading}\""))
        .unwrap_or_else(|| panic!("no #{heading} in:\n{html}"));
    let rest = &html[start..];
    let section = &rest[..rest.find("</section>").unwrap()];
    match section.find("<tbody>") {
        Some(body) => section[body..].matches("<tr>").count(),
        None => 0,
    }
}

/// A script job every second whose command exits 2 while `flag` exists in the agent's
/// working directory, printing `out`, and 0 with `fine` otherwise.
fn flaky_job(name: &str, flag: &str, out: &str) -> String {
    format!(
        "[jobs.{name}]\nevery = \"1s\"\nnotify = [\"chat\"]\nretry = {{ attempts = 1 }}\n\
         [jobs.{name}.check]\ntype = \"script\"\n\
         command = [\"sh\", \"-c\", \"if [ -e {flag} ]; then echo '{out}'; exit 2; fi; echo fine\"]\n"
    )
}

fn agent_section(extra: &str) -> String {
    format!(
        "[agent]\nname = \"dash-ci\"\nstate_dir = \"state\"\ntimezone = \"UTC\"\nlisten = \"127.0.0.1:0\"\ngroup_wait = \"0s\"\n{extra}\n"
    )
}

/// A config with jobs in each state and every kind of secret the pages could show.
fn config(receiver: &Server, pinged: &Server) -> String {
    let mut text = agent_section("listen_token = \"${KLAXON_TOKEN}\"");
    text.push_str(&format!(
        "[notifiers.chat]\ntype = \"slack\"\nwebhook_url = \"{}\"\n\n",
        receiver.url(&format!("/services/{HOOK_SECRET}"))
    ));
    text.push_str(&flaky_job(
        "flaky",
        "flaky.fail",
        "disk <b>full</b> & <script>alert(1)</script>",
    ));
    // Fails on its one run (every hour: it runs once, at start).
    text.push_str(
        "[jobs.broken]\nevery = \"1h\"\nnotify = [\"chat\"]\nretry = { attempts = 1 }\n\
         [jobs.broken.check]\ntype = \"script\"\ncommand = [\"sh\", \"-c\", \"echo nope; exit 2\"]\n\
         env = { CANARY = \"${CANARY_ENV}\" }\n",
    );
    text.push_str(&format!(
        "[jobs.\"db.dump-1_x\"]\nevery = \"1h\"\nheartbeat = \"{}\"\n\
         [jobs.\"db.dump-1_x\".check]\ntype = \"http\"\nurl = \"{}\"\n\
         headers = {{ Authorization = \"Bearer {BEARER}\", \"X-Api-Key\" = \"{HEADER_SECRET}\", \
         Accept = \"text/plain\" }}\n",
        pinged.url(&format!("/ping/{PING_SECRET}")),
        pinged
            .url("/health")
            .replacen("http://", &format!("http://probe:{URL_PASSWORD}@"), 1),
    ));
    text.push_str(
        "[jobs.beat]\nevery = \"1h\"\n[jobs.beat.check]\ntype = \"heartbeat\"\ngrace = \"1h\"\n",
    );
    text
}

fn secrets_absent(path: &str, body: &str) {
    for secret in [
        TOKEN,
        HOOK_SECRET,
        "xq7VbWn3Kp9sLr2Tz8Yc4Hd6",
        BEARER,
        PING_SECRET,
        ENV_SECRET,
        HEADER_SECRET,
        URL_PASSWORD,
    ] {
        assert!(
            !body.contains(secret),
            "{path} shows the secret `{secret}`:\n{body}"
        );
    }
}

fn flag(dir: &Path, name: &str) {
    std::fs::write(dir.join(name), "").unwrap();
}

async fn start_with_secrets() -> (Agent, Server, Server) {
    // The chat receiver refuses for now (500: retried), so the outbox has a message.
    let receiver = Server::start(|_| Response::status(500).body("busy")).await;
    let pinged = Server::start(|_| Response::ok("OK")).await;
    let dir = tempfile::tempdir().unwrap();
    flag(dir.path(), "flaky.fail");
    let agent = Agent::start(&config(&receiver, &pinged), dir).await;
    (agent, receiver, pinged)
}

#[tokio::test]
async fn the_overview_lists_every_job_in_words_and_bars_their_runs() {
    let (agent, _receiver, _pinged) = start_with_secrets().await;
    let page = agent
        .page_until("/", "flaky down twice", |p| {
            p.job_row("flaky")
                .and_then(|row| row.find("2 critical").map(|_| ()))
                .is_some()
        })
        .await;
    page.assert_strict("/");
    assert_eq!(page.state_of("flaky"), Some("down"), "{}", page.body);
    assert_eq!(page.state_of("broken"), Some("down"));
    assert_eq!(page.state_of("db.dump-1_x"), Some("up"));
    assert_eq!(page.state_of("beat"), Some("pending"));
    assert!(
        page.body
            .contains("<title>Overview · klaxon on dash-ci</title>")
    );
    // Both failing jobs have open alerts, told to `chat`, whose receiver refuses.
    assert_eq!(page.rows_after("alerts-h"), 2, "{}", page.body);
    assert!(
        page.body
            .contains("chat: <span class=\"st warning\">pending</span>")
    );
    assert!(page.rows_after("outbox-h") >= 2, "{}", page.body);
    // Signed out with a token configured: a way to sign in, no buttons.
    assert!(page.body.contains("<a href=\"/login\">Sign in to act</a>"));
    assert_eq!(page.body.matches("Sign in").count(), 1, "one prompt a page");
    assert!(!page.body.contains("<button type=\"submit\">Run now"));
    assert!(!page.body.contains("<form"));
    // The agent's facts.
    assert!(
        page.body
            .contains(&format!("<dd>{}</dd>", env!("CARGO_PKG_VERSION")))
    );
    assert!(page.body.contains("/klaxon.toml</code>"));
    assert!(page.body.contains("<span class=\"pill ok\">healthy</span>"));

    // One run each so far: one segment each; then flaky recovers: a second segment.
    let row = page.job_row("broken").unwrap();
    assert_eq!(Page::bar_segments(row), Some(1), "{row}");
    std::fs::remove_file(agent.dir.path().join("flaky.fail")).unwrap();
    let page = agent
        .page_until("/", "flaky up", |p| p.state_of("flaky") == Some("up"))
        .await;
    let row = page.job_row("flaky").unwrap();
    assert_eq!(Page::bar_segments(row), Some(2), "{row}");
    assert!(row.contains("<span class=\"sum\">fine</span>"), "{row}");
    // The script's output is text, never markup.
    let failed = agent.get("/jobs/flaky").await;
    assert!(
        failed.body.contains(
            "disk &#60;b&#62;full&#60;/b&#62; &#38; &#60;script&#62;alert(1)&#60;/script&#62;"
        ),
        "{}",
        failed.body
    );
    assert!(!failed.body.contains("<script>alert"));
    assert!(!failed.body.contains("<b>full"));
}

#[tokio::test]
async fn a_job_page_shows_its_history_incidents_chart_and_config() {
    let (agent, _receiver, pinged) = start_with_secrets().await;
    // The job that failed once: one run, one incident still going.
    let page = agent
        .page_until("/jobs/broken", "a run", |p| p.rows_after("history-h") == 1)
        .await;
    page.assert_strict("/jobs/broken");
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("<h1>broken <span class=\"st critical\">down</span></h1>")
    );
    assert_eq!(Page::bar_segments(&page.body), Some(1), "{}", page.body);
    assert!(page.body.contains("<svg class=\"chart\""));
    assert_eq!(page.rows_after("incidents-h"), 1, "{}", page.body);
    assert!(page.body.contains("<td>ongoing</td>"), "{}", page.body);
    assert!(page.body.contains("<span class=\"sum\">nope</span>"));
    assert!(
        page.body
            .contains("<code>schedule</code></th><td>every 1h</td>")
    );
    assert!(
        page.body
            .contains("<code>notify</code></th><td>chat (slack)</td>")
    );

    // A job that went down and came back: its incident has an end.
    agent
        .page_until("/jobs/flaky", "two failed runs", |p| {
            p.rows_after("history-h") >= 2
        })
        .await;
    std::fs::remove_file(agent.dir.path().join("flaky.fail")).unwrap();
    let page = agent
        .page_until("/jobs/flaky", "recovered", |p| {
            p.body
                .contains("<h1>flaky <span class=\"st ok\">up</span></h1>")
        })
        .await;
    assert_eq!(page.rows_after("incidents-h"), 1, "{}", page.body);
    assert!(!page.body.contains("<td>ongoing</td>"), "{}", page.body);
    let runs = page.rows_after("history-h");
    assert!(runs >= 3, "{}", page.body);
    assert!(
        page.body
            .contains("<span class=\"st ok\">up</span></td><td>")
    );
    assert!(
        page.body
            .contains("<span class=\"st critical\">down</span></td><td>")
    );

    // Secrets as validated: said to be there, never shown.
    let page = agent
        .page_until("/jobs/db.dump-1_x", "a run", |p| {
            p.rows_after("history-h") >= 1
        })
        .await;
    assert!(
        page.body
            .contains("<code>heartbeat</code></th><td>***</td>"),
        "{}",
        page.body
    );
    // The check's table as written, each secret masked where it sits; askama writes
    // `"` as `&#34;`.
    let row = |key: &str, value: &str| {
        format!("<th scope=\"row\"><code>{key}</code></th><td><code>{value}</code></td>")
    };
    for (key, value) in [
        ("type", "http".to_owned()),
        ("headers.Authorization", "***".to_owned()),
        ("headers.X-Api-Key", "***".to_owned()),
        ("headers.Accept", "&#34;text/plain&#34;".to_owned()),
        (
            "url",
            format!(
                "&#34;{}&#34;",
                pinged
                    .url("/health")
                    .replacen("http://", "http://probe:***@", 1)
            ),
        ),
    ] {
        assert!(
            page.body.contains(&row(key, &value)),
            "{key}:\n{}",
            page.body
        );
    }
    assert!(!page.body.contains("<pre>"), "no Debug dump: {}", page.body);
    let page = agent.get("/jobs/broken").await;
    for (key, value) in [
        (
            "command",
            "[&#34;sh&#34;, &#34;-c&#34;, &#34;echo nope; exit 2&#34;]",
        ),
        ("env.CANARY", "&#34;***&#34;"),
    ] {
        assert!(
            page.body.contains(&row(key, value)),
            "{key}:\n{}",
            page.body
        );
    }
}

#[tokio::test]
async fn no_page_shows_a_secret() {
    let (agent, receiver, pinged) = start_with_secrets().await;
    // Wait until the webhook has been tried and the heartbeat URL pinged: their URLs
    // are in the agent's hands and in the outbox's last error.
    receiver.wait_for(1, Duration::from_secs(15)).await;
    pinged.wait_for(2, Duration::from_secs(15)).await;
    agent
        .page_until("/", "a delivery error", |p| {
            p.body.contains("class=\"err\">") && !p.body.contains("class=\"err\"></td>")
        })
        .await;
    for path in [
        "/",
        "/jobs/flaky",
        "/jobs/broken",
        "/jobs/db.dump-1_x",
        "/jobs/beat",
        "/jobs/nope",
        "/static/klaxon.css",
        "/static/klaxon.js",
    ] {
        let page = agent.get(path).await;
        secrets_absent(path, &page.body);
    }
    secrets_absent("the log", &agent.log());
}

#[tokio::test]
async fn unknown_jobs_and_files_are_404_pages() {
    let (agent, _receiver, _pinged) = start_with_secrets().await;
    let page = agent.get("/jobs/nope").await;
    assert_eq!(page.status, 404);
    page.assert_strict("/jobs/nope");
    assert!(page.body.contains("There is no job `nope` in the config."));
    // A name no job can have, as the client encoded it: decoded and escaped.
    let page = agent.get("/jobs/%3Cimg%20src%3Dx%3E").await;
    assert_eq!(page.status, 404);
    assert!(
        page.body
            .contains("There is no job `&#60;img src=x&#62;` in the config."),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<img"));
    let page = agent.get("/jobs/%ff").await;
    assert_eq!(page.status, 404);
    assert!(page.body.contains("That is not a job name."));
    assert_eq!(agent.get("/static/nope.css").await.status, 404);
    assert_eq!(agent.get("/jobs/flaky/extra").await.status, 404);
    let css = agent.get("/static/klaxon.css").await;
    assert_eq!(css.status, 200);
    assert_eq!(css.content_type.as_deref(), Some("text/css; charset=utf-8"));
    assert!(css.body.contains("prefers-color-scheme: dark"));
    let js = agent.get("/static/klaxon.js").await;
    assert_eq!(
        js.content_type.as_deref(),
        Some("text/javascript; charset=utf-8")
    );
    assert!(js.body.contains("replaceWith"));
    // The pages take no other method.
    let client = reqwest::Client::new();
    let response = client.post(agent.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD");
}

#[tokio::test]
async fn without_a_listen_token_the_page_says_actions_need_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[jobs.ok]\nevery = \"1h\"\n[jobs.ok.check]\ntype = \"script\"\ncommand = [\"true\"]\n",
        agent_section("")
    );
    let agent = Agent::start(&config, dir).await;
    let page = agent
        .page_until("/", "ok up", |p| p.state_of("ok") == Some("up"))
        .await;
    assert!(
        page.body.contains("need <code>agent.listen_token</code>"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Sign in to act"));
    assert!(!page.body.contains("<form"));
    assert_eq!(page.rows_after("alerts-h"), 0);
    assert!(page.body.contains("No open alerts."));
    assert!(page.body.contains("Every message has been delivered."));
}

/// The session cookie `POST /login` sets for `token`, or `None` when refused.
async fn sign_in(agent: &Agent, token: &str) -> Option<String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .post(agent.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    let cookie = response.headers().get("set-cookie")?.to_str().unwrap();
    Some(cookie.split(';').next().unwrap().to_owned())
}

/// The value of the hidden `name` field in the first form of `html` posting to `action`.
fn hidden_in_form(html: &str, action: &str, name: &str) -> Option<String> {
    let start = html.find(&format!("<form method=\"post\" action=\"{action}\""))?;
    let form = &html[start..start + html[start..].find("</form>")?];
    let field = format!("name=\"{name}\" value=\"");
    let value = &form[form.find(&field)? + field.len()..];
    Some(value[..value.find('"')?].to_owned())
}

#[tokio::test]
async fn signed_in_the_pages_carry_forms_with_the_csrf_field_and_they_work() {
    let (agent, _receiver, _pinged) = start_with_secrets().await;
    assert_eq!(sign_in(&agent, "wrong-token").await, None);
    let cookie = sign_in(&agent, TOKEN).await.expect("signed in");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: &str| client.get(agent.url(path)).header("cookie", &cookie).send();
    // Wait for broken's alert: then it can be acknowledged too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let body = loop {
        let body = get("/").await.unwrap().text().await.unwrap();
        if body.contains("/jobs/broken/ack") {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no ack form:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    secrets_absent("/ signed in", &body);
    assert!(!body.contains("Sign in to act"), "{body}");
    assert!(body.contains("<button type=\"submit\" class=\"link\">Sign out</button>"));
    for action in [
        "/jobs/broken/silence",
        "/jobs/broken/ack",
        "/jobs/broken/run",
        "/jobs/flaky/run",
        "/outbox/1/retry",
        "/outbox/1/drop",
        "/logout",
    ] {
        let csrf = hidden_in_form(&body, action, "csrf")
            .unwrap_or_else(|| panic!("no form to {action} with a csrf field:\n{body}"));
        assert!(csrf.len() >= 32, "{action}: {csrf}");
        assert_eq!(hidden_in_form(&body, action, "next").as_deref(), Some("/"));
    }
    // The beat job is passive and has no alert: no acknowledge form for it.
    assert!(!body.contains("/jobs/beat/ack"));

    // A job page's forms come back to it; pressing "Run now" runs the job.
    let page = get("/jobs/broken").await.unwrap().text().await.unwrap();
    let csrf = hidden_in_form(&page, "/jobs/broken/run", "csrf").expect("run form");
    assert_eq!(
        hidden_in_form(&page, "/jobs/broken/run", "next").as_deref(),
        Some("/jobs/broken")
    );
    let runs_before = rows_after(&page, "history-h");
    let response = client
        .post(agent.url("/jobs/broken/run"))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&next=%2Fjobs%2Fbroken"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    assert_eq!(response.headers()["location"], "/jobs/broken");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = get("/jobs/broken").await.unwrap().text().await.unwrap();
        if rows_after(&page, "history-h") > runs_before {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new run:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
