//! The dashboard in a real browser: Debian's `chromium`, headless, driven through
//! `chromedriver` (WebDriver, by fantoccini) against the real `klaxon run` with script jobs
//! that fail and recover when the test writes their outcome file. Accessibility is checked
//! by axe-core run inside the page, light and dark (`prefers-color-scheme` emulated through
//! chromedriver's DevTools bridge).
//!
//! Needs `chromium` and `chromium-driver` (Debian) and axe-core from npm, whose `axe.min.js`
//! `KLAXON_AXE_JS` names; `.ci/run` installs all three. A missing one fails the suite with
//! what to install, it never skips. `KLAXON_CHROMIUM` and `KLAXON_CHROMEDRIVER` override the
//! programs' paths.
//!
//! `KLAXON_SCREENSHOTS=DIR` (e.g. `docs`, relative to the repository) makes
//! `screenshots_of_a_realistic_agent` write its PNGs there; without it they go to a temp
//! dir and are only checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value as Json, json};

mod common;

const TOKEN: &str = "dashboard-token-7c41e0";

/// A program the suite needs, at `default` or where `env` says; missing is a failure that
/// says what to install.
fn program(env: &str, default: &str, package: &str) -> PathBuf {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.is_file(),
        "`{}` not found: install Debian's `{package}` (`.ci/run` does), or set {env} to the program",
        path.display()
    );
    path
}

/// axe-core's browser bundle, which `KLAXON_AXE_JS` names.
fn axe_source() -> String {
    let Some(path) = std::env::var_os("KLAXON_AXE_JS") else {
        panic!(
            "KLAXON_AXE_JS is not set: it names axe-core's `axe.min.js` \
             (`npm install --prefix DIR axe-core`, then DIR/node_modules/axe-core/axe.min.js; `.ci/run` does)"
        );
    };
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "KLAXON_AXE_JS=`{}` cannot be read ({e}): install axe-core from npm there",
            Path::new(&path).display()
        )
    })
}

/// Polls `probe` every 200 ms until it gives `Ok`, for 30 s at most; then fails saying
/// `what` never happened and what `probe` saw last.
async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                tokio::time::Instant::now() < deadline,
                "never {what}; last seen:\n{seen}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Kills a child's whole process group (chromedriver and the chromium it started, or an
/// agent and its scripts) and reaps the child.
fn kill_group(child: &mut Child) {
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
}

/// `chromedriver` on an ephemeral loopback port, in a process group of its own.
struct Chromedriver {
    child: Child,
    port: u16,
}

impl Chromedriver {
    fn start() -> Self {
        let path = program(
            "KLAXON_CHROMEDRIVER",
            "/usr/bin/chromedriver",
            "chromium-driver",
        );
        let mut child = Command::new(&path)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start `{}`: {e}", path.display()));
        let stdout = child.stdout.take().unwrap();
        let mut seen = String::new();
        let mut port = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                port = rest.trim_end_matches('.').parse().ok();
                break;
            }
        }
        let Some(port) = port else {
            kill_group(&mut child);
            panic!("chromedriver never said its port:\n{seen}");
        };
        Self { child, port }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// A chromium DevTools command through chromedriver (`goog/cdp/execute`).
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Json,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (hyper::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (hyper::Method::POST, Some(body.to_string()))
    }
}

/// Headless chromium with a fresh profile, through its own chromedriver.
struct Browser {
    client: Client,
    base: String,
    // Dropped after the client: chromedriver ends chromium, then the profile goes.
    _driver: Chromedriver,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(base: String) -> Self {
        let chromium = program("KLAXON_CHROMIUM", "/usr/bin/chromium", "chromium");
        let driver = Chromedriver::start();
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = Capabilities::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium, "args": args }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .unwrap_or_else(|e| panic!("chromium through chromedriver: {e}"));
        Self {
            client,
            base,
            _driver: driver,
            _profile: profile,
        }
    }

    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    async fn eval(&self, script: &str) -> Json {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("{e}\nin:\n{script}"))
    }

    async fn text(&self, script: &str) -> String {
        match self.eval(script).await {
            Json::String(s) => s,
            other => panic!("`{script}` gave {other}, not a string"),
        }
    }

    /// The HTTP status of the document now shown (Navigation Timing's `responseStatus`).
    async fn status_code(&self) -> u64 {
        self.eval("return performance.getEntriesByType('navigation')[0].responseStatus")
            .await
            .as_u64()
            .unwrap()
    }

    /// The path of the document now shown.
    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// The overview's job rows as the page shows them now.
    async fn rows(&self) -> Vec<Row> {
        let rows = self
            .eval(
                "return [...document.querySelectorAll('table.jobs tbody tr')].map(tr => {
                    const spark = tr.querySelector('svg.sparkline polyline');
                    const sum = tr.querySelector('.sum');
                    return {
                        job: tr.querySelector('th a').textContent,
                        state: tr.querySelector('.st').textContent,
                        summary: sum ? sum.textContent : '',
                        tags: [...tr.querySelectorAll('.tag')].map(t => t.textContent),
                        segments: tr.querySelectorAll('svg.bar rect').length,
                        titled: tr.querySelectorAll('svg.bar rect > title').length,
                        points: spark ? spark.getAttribute('points').trim().split(/\\s+/).length : null,
                    };
                })",
            )
            .await;
        serde_json::from_value(rows).unwrap()
    }

    /// The overview's row of `job`.
    async fn row(&self, job: &str) -> Row {
        let rows = self.rows().await;
        rows.iter()
            .find(|r| r.job == job)
            .cloned()
            .unwrap_or_else(|| panic!("no row for `{job}` in {rows:#?}"))
    }

    /// Types `token` into the sign-in form and sends it, as a person would.
    async fn sign_in(&self, token: &str) {
        self.goto("/login").await;
        let field = self.client.find(Locator::Id("token")).await.unwrap();
        field.send_keys(token).await.unwrap();
        let button = self
            .client
            .find(Locator::Css("main form button[type=submit]"))
            .await
            .unwrap();
        self.navigating(async || button.click().await.unwrap())
            .await;
    }

    /// Clicks the button `label` (its visible words; a hidden job name may follow for
    /// screen readers) of the form posting to `action` on the page now shown
    /// (a real click: the form goes with its hidden fields), and checks that the answer
    /// led back to the page (a 303 to it).
    async fn press(&self, action: &str, label: &str) {
        let back = self.path().await;
        let css = format!("form[action=\"{action}\"] button");
        self.navigating(async || {
            // The page's refresh may swap the form for a fresh copy between finding the
            // button and clicking it (a stale element): find it again then.
            let mut last = String::new();
            for _ in 0..5 {
                let mut found = None;
                for button in self.client.find_all(Locator::Css(&css)).await.unwrap() {
                    if button
                        .text()
                        .await
                        .is_ok_and(|text| text.starts_with(label))
                    {
                        found = Some(button);
                    }
                }
                let Some(button) = found else {
                    last = format!("no `{label}` button posting to {action}");
                    continue;
                };
                match button.click().await {
                    Ok(()) => return,
                    Err(e) => last = e.to_string(),
                }
            }
            panic!("cannot press `{label}`: {last}");
        })
        .await;
        let (path, status) = (self.path().await, self.status_code().await);
        assert!(
            path == back && status == 200,
            "`{label}` led to {path} ({status}), not back to {back}:\n{}",
            self.text("return document.body.innerText").await
        );
    }

    /// Does `act` (a click, a submit) and waits for the new document it leads to, which
    /// may be at the same address (a 303 back to the page): a mark left in the old one
    /// tells them apart.
    async fn navigating(&self, act: impl AsyncFnOnce()) {
        self.eval("window.__klaxonOld = true; return null").await;
        act().await;
        eventually("the next page", async || {
            let script =
                "return window.__klaxonOld === undefined && document.readyState === 'complete'";
            match self.eval(script).await {
                Json::Bool(true) => Ok(()),
                other => Err(format!("{other} at {}", self.path().await)),
            }
        })
        .await;
    }

    /// Emulates `prefers-color-scheme: scheme` and checks that the page sees it.
    async fn color_scheme(&self, scheme: &str) {
        self.client
            .issue_cmd(Cdp {
                cmd: "Emulation.setEmulatedMedia",
                params: json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] }),
            })
            .await
            .unwrap_or_else(|e| panic!("emulate {scheme}: {e}"));
        let query = format!("return matchMedia('(prefers-color-scheme: {scheme})').matches");
        assert_eq!(
            self.eval(&query).await,
            Json::Bool(true),
            "{scheme} not emulated"
        );
    }

    /// axe-core's violations on the page as it is now, one line each (none: empty).
    async fn axe_violations(&self, axe: &str) -> Vec<String> {
        self.client
            .execute(&format!("{axe}\n;return typeof axe"), Vec::new())
            .await
            .unwrap_or_else(|e| panic!("inject axe-core: {e}"));
        let result = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] })
                    .then(r => done({
                        passed: r.passes.length,
                        violations: r.violations.map(v =>
                            `${v.id} (${v.impact}): ${v.help}\n` + v.nodes.map(n =>
                                `    ${n.target.join(' ')}: ${n.failureSummary.replace(/\\n/g, ' ')}`
                            ).join('\\n')),
                    }))
                    .catch(e => done({ passed: 0, violations: ['axe failed: ' + e] }));",
                Vec::new(),
            )
            .await
            .unwrap_or_else(|e| panic!("run axe-core: {e}"));
        // Rules that passed: proof that axe looked at a page, not at nothing.
        assert!(
            result["passed"].as_u64().unwrap() >= 10,
            "axe-core checked little: {result}"
        );
        serde_json::from_value(result["violations"].clone()).unwrap()
    }

    /// [`Browser::axe_violations`] of each of `pages`, light and dark, each line saying
    /// where.
    async fn axe_pages(&self, axe: &str, pages: &[&str]) -> Vec<String> {
        let signed_in = !self.client.get_all_cookies().await.unwrap().is_empty();
        let mut found = Vec::new();
        for page in pages {
            for scheme in ["light", "dark"] {
                self.color_scheme(scheme).await;
                self.goto(page).await;
                for v in self.axe_violations(axe).await {
                    found.push(format!("{page} ({scheme}, signed in: {signed_in}): {v}"));
                }
            }
        }
        found
    }

    /// A PNG of the whole page (not only the window): the window grows to the page's height.
    async fn screenshot(&self) -> Vec<u8> {
        let height = self
            .eval("return document.documentElement.scrollHeight")
            .await
            .as_u64()
            .unwrap();
        let height = u32::try_from(height).unwrap().clamp(600, 4000);
        self.client.set_window_size(1280, height).await.unwrap();
        let png = self.client.screenshot().await.unwrap();
        self.client.set_window_size(1280, 900).await.unwrap();
        png
    }

    async fn close(self) {
        let Self { client, .. } = self;
        client.close().await.unwrap();
    }
}

/// Width and height from a PNG's IHDR, after checking the signature.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
    (be(&png[16..20]), be(&png[20..24]))
}

/// One job's row on the overview, as the browser sees it.
#[derive(Debug, Clone, serde::Deserialize)]
struct Row {
    job: String,
    /// The state's word (`up`, `down`, …).
    state: String,
    /// The last run's summary.
    summary: String,
    /// `silenced`, `acknowledged`.
    tags: Vec<String>,
    /// `<rect>`s in the bar of recent runs.
    segments: usize,
    /// `<rect>`s that carry a `<title>`.
    titled: usize,
    /// Points of the latency sparkline (none: `None`).
    points: Option<usize>,
}

/// The stretches of consecutive runs with the same severity among the newest 90 of
/// `history` (newest first, as `klaxon history` gives it): the overview bar's segments.
fn stretches(history: &[Json]) -> usize {
    let newest: Vec<&Json> = history.iter().take(90).collect();
    if newest.is_empty() {
        return 0;
    }
    1 + newest
        .windows(2)
        .filter(|w| w[0]["severity"] != w[1]["severity"])
        .count()
}

/// A `klaxon run` in a temp dir, in a process group of its own (its scripts too), killed
/// on drop; its stderr goes to a file.
struct Agent {
    dir: tempfile::TempDir,
    child: Child,
    addr: SocketAddr,
}

impl Agent {
    /// `jobs` is TOML with `DIR` standing for the agent's directory; `outcomes` are the
    /// first [`Agent::outcome`]s of script jobs, written before the agent starts.
    async fn start(jobs: &str, outcomes: &[(&str, u8, &str)]) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), jobs, outcomes).await
    }

    /// [`Agent::start`] in `dir`, which the caller may have put files in.
    async fn start_in(dir: tempfile::TempDir, jobs: &str, outcomes: &[(&str, u8, &str)]) -> Self {
        for (job, exit, line) in outcomes {
            write_outcome(dir.path(), job, *exit, line);
        }
        let config = format!(
            "[agent]\nname = \"ci\"\nstate_dir = \"state\"\ntimezone = \"UTC\"\n\
             listen = \"127.0.0.1:0\"\nlisten_token = \"${{KLAXON_TOKEN}}\"\ngroup_wait = \"0s\"\n\n{}",
            jobs.replace("DIR", &dir.path().display().to_string())
        );
        std::fs::write(dir.path().join("klaxon.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
        let child = Self::klaxon(dir.path())
            .arg("run")
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start klaxon run");
        let mut agent = Self {
            dir,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let addr = loop {
            let log = agent.log();
            if let Some(rest) = log.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the agent never listened:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        agent.addr = addr;
        agent
    }

    fn klaxon(dir: &Path) -> Command {
        let mut cmd = common::klaxon();
        cmd.env("RUST_LOG", "klaxon=debug,warn")
            .env("KLAXON_TOKEN", TOKEN)
            .arg("--config")
            .arg(dir.join("klaxon.toml"));
        cmd
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets what the job whose script is [`script_job`] reports next: `exit` and `line`.
    fn outcome(&self, job: &str, exit: u8, line: &str) {
        write_outcome(self.dir.path(), job, exit, line);
    }

    /// `klaxon ARGS --json`, parsed.
    async fn json(&self, args: &[&str]) -> Json {
        let mut cmd = Self::klaxon(self.dir.path());
        cmd.args(args).arg("--json");
        let out = common::output(cmd).await;
        assert!(
            out.status.success(),
            "klaxon {args:?}: {}",
            common::text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The `status --json` row of `job`.
    async fn status(&self, job: &str) -> Json {
        let all = self.json(&["status"]).await;
        all.as_array()
            .unwrap()
            .iter()
            .find(|row| row["job"] == job)
            .cloned()
            .unwrap_or_else(|| panic!("no `{job}` in {all}"))
    }

    async fn history(&self, job: &str) -> Vec<Json> {
        let runs = self.json(&["history", job, "--limit", "1000"]).await;
        runs.as_array().unwrap().clone()
    }

    /// Waits until the store says `job` is `severity`.
    async fn wait_severity(&self, job: &str, severity: &str) {
        eventually(&format!("`{job}` {severity}"), async || {
            let row = self.status(job).await;
            if row["severity"] == severity {
                Ok(())
            } else {
                Err(format!("{row}\n{}", self.log()))
            }
        })
        .await;
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// Writes `DIR/JOB` whole at once (renamed into place): a run never reads half of it.
fn write_outcome(dir: &Path, job: &str, exit: u8, line: &str) {
    let path = dir.join(job);
    std::fs::write(path.with_extension("tmp"), format!("{exit}\n{line}\n")).unwrap();
    std::fs::rename(path.with_extension("tmp"), path).unwrap();
}

/// A script job whose outcome is the file `DIR/NAME`: its first line is the exit code (0
/// ok, 1 warning, 2 critical), its second the summary; ok until the test writes one.
fn script_job(name: &str, every: &str) -> String {
    format!(
        "[jobs.{name}]\nevery = \"{every}\"\nretry = {{ attempts = 1 }}\n[jobs.{name}.check]\n\
         type = \"script\"\n\
         shell = \"f='DIR/{name}'; [ -e \\\"$f\\\" ] || {{ echo 'OK - fine'; exit 0; }}; sed -n 2p \\\"$f\\\"; exit $(head -n 1 \\\"$f\\\")\"\n\n"
    )
}

/// A script job for the screenshots: `command` (a program in `DIR/bin`, found through
/// `PATH`, that [`screenshots_of_a_realistic_agent`] writes) reads its outcome from
/// `DIR/NAME` as [`script_job`]'s does, so the page shows a command a person would run.
fn demo_job(name: &str, every: &str, command: &str, extra: &str) -> String {
    format!(
        "[jobs.{name}]\nevery = \"{every}\"\nretry = {{ attempts = 1 }}\n{extra}[jobs.{name}.check]\n\
         type = \"script\"\nshell = \"{command}\"\nenv = {{ PATH = \"DIR/bin:/usr/bin:/bin\" }}\n\n"
    )
}

/// An `http` job on the test's own server, every second: it measures a latency.
fn http_job(name: &str, url: &str) -> String {
    format!(
        "[jobs.{name}]\nevery = \"1s\"\n[jobs.{name}.check]\ntype = \"http\"\nurl = \"{url}\"\n\n"
    )
}

/// A script job that has not run: its cron fire is on the 1st of January at 03:00.
fn pending_job(name: &str) -> String {
    format!(
        "[jobs.{name}]\nschedule = \"0 3 1 1 *\"\n[jobs.{name}.check]\ntype = \"script\"\nshell = \"true\"\n\n"
    )
}

/// A target that answers 200 after a delay that varies from request to request, so
/// the sparkline has a shape.
async fn target() -> klaxon_testkit::Server {
    let mut n = 0u64;
    klaxon_testkit::Server::start(move |_| {
        n += 1;
        klaxon_testkit::Response::ok("ok").delay(Duration::from_millis(5 + (n * 37) % 60))
    })
    .await
}

/// The overview lists every job with its state in words, a bar with one segment per
/// stretch of same-result runs and a sparkline with a point per measured run; the job
/// page has one segment per run; and a job that fails while the page is open turns
/// `down` on it by the page's own refresh, without a reload.
#[tokio::test(flavor = "multi_thread")]
async fn the_overview_shows_each_job_and_follows_a_failure_without_a_reload() {
    let web = target().await;
    let jobs = [
        http_job("web", &web.url("/health")),
        script_job("flaky", "1s"),
        script_job("wobbly", "1s"),
        script_job("broken", "1s"),
        script_job("mystery", "1s"),
        pending_job("nightly"),
    ]
    .concat();
    let outcomes = [
        ("wobbly", 1, "WARNING - 85% full"),
        ("broken", 2, "CRITICAL - refused"),
        ("mystery", 3, "UNKNOWN - no answer"),
    ];
    let agent = Agent::start(&jobs, &outcomes).await;
    for (job, severity) in [
        ("web", "ok"),
        ("flaky", "ok"),
        ("wobbly", "warning"),
        ("broken", "critical"),
        ("mystery", "unknown"),
    ] {
        agent.wait_severity(job, severity).await;
    }
    // flaky fails and recovers: ok, critical, ok in its history.
    agent.outcome("flaky", 2, "CRITICAL - failed once");
    agent.wait_severity("flaky", "critical").await;
    agent.outcome("flaky", 0, "OK - back");
    agent.wait_severity("flaky", "ok").await;

    let browser = Browser::start(agent.base()).await;
    browser.goto("/").await;
    assert_eq!(browser.status_code().await, 200);
    let rows = browser.rows().await;
    let words: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.job.as_str(), r.state.as_str()))
        .collect();
    for expected in [
        ("web", "up"),
        ("flaky", "up"),
        ("wobbly", "warning"),
        ("broken", "down"),
        ("mystery", "unknown"),
        ("nightly", "pending"),
    ] {
        assert!(words.contains(&expected), "{expected:?} not in {words:?}");
    }
    assert_eq!(rows.len(), 6, "{rows:#?}");
    let broken = browser.row("broken").await;
    assert_eq!(broken.summary, "CRITICAL - refused");

    // Segments: the job runs every second, so read its history on both sides of the page.
    for job in ["flaky", "web", "broken", "nightly"] {
        eventually(
            &format!("`{job}`'s bar and sparkline matching its history"),
            async || {
                let before = agent.history(job).await;
                browser.goto("/").await;
                let row = browser.row(job).await;
                let after = agent.history(job).await;
                let (least, most) = (before.len().min(90), after.len().min(90));
                let measured = job == "web";
                let points_ok = match row.points {
                    Some(n) => measured && (least..=most).contains(&n),
                    None => !measured,
                };
                if stretches(&before) == stretches(&after)
                    && row.segments == stretches(&after)
                    && row.titled == row.segments
                    && points_ok
                {
                    Ok(())
                } else {
                    Err(format!(
                        "{row:?}\nhistory: {} then {} runs, {} then {} stretches",
                        before.len(),
                        after.len(),
                        stretches(&before),
                        stretches(&after)
                    ))
                }
            },
        )
        .await;
    }
    assert_eq!(browser.row("flaky").await.segments, 3, "ok, critical, ok");
    assert_eq!(browser.row("nightly").await.segments, 0);

    // The job page: one segment per run, the history table, the chart.
    eventually("`flaky`'s page matching its history", async || {
        let before = agent.history("flaky").await.len();
        browser.goto("/jobs/flaky").await;
        let page = browser
            .eval(
                "return {
                    state: document.querySelector('h1 .st').textContent,
                    segments: document.querySelectorAll('svg.bar rect').length,
                    rows: document.querySelectorAll('table.history tbody tr').length,
                    line: document.querySelectorAll('svg.chart polyline.line').length,
                }",
            )
            .await;
        let after = agent.history("flaky").await.len();
        let runs = |n: &Json| usize::try_from(n.as_u64().unwrap()).unwrap();
        let in_range = |n: usize| (before.min(90)..=after.min(90)).contains(&n);
        if page["state"] == "up"
            && in_range(runs(&page["segments"]))
            && runs(&page["rows"]) > 0
            && page["line"] == 1
        {
            Ok(())
        } else {
            Err(format!("{page}\nhistory: {before} then {after} runs"))
        }
    })
    .await;

    // flaky fails while the overview is open: the page's script swaps in the new state.
    browser.goto("/").await;
    browser
        .eval("window.__klaxonStay = 'same document'; return null")
        .await;
    agent.outcome("flaky", 2, "CRITICAL - disk on fire");
    agent.wait_severity("flaky", "critical").await;
    eventually("`flaky` down on the open page", async || {
        let row = browser.row("flaky").await;
        if row.state == "down" && row.summary == "CRITICAL - disk on fire" {
            Ok(())
        } else {
            Err(format!("{row:?}"))
        }
    })
    .await;
    assert_eq!(
        browser.eval("return window.__klaxonStay").await,
        "same document",
        "the page was reloaded, not refreshed in place"
    );
    browser.close().await;
}

/// Signing in takes the listen token and refuses a wrong one; a form sent without its
/// CSRF token is refused and changes nothing; "Silence 1h", "Acknowledge" and "Run now"
/// change the store, as `klaxon status` and `klaxon history` read it.
#[tokio::test(flavor = "multi_thread")]
async fn sign_in_csrf_and_the_buttons_change_the_store() {
    let jobs = [script_job("flaky", "1h"), script_job("broken", "1h")].concat();
    let agent = Agent::start(&jobs, &[("broken", 2, "CRITICAL - refused")]).await;
    // Each runs once at start, then not for an hour.
    agent.wait_severity("flaky", "ok").await;
    agent.wait_severity("broken", "critical").await;
    let browser = Browser::start(agent.base()).await;

    // Signed out: no buttons, a way to sign in.
    browser.goto("/").await;
    let signed_out = browser
        .eval("return [document.querySelectorAll('form[action$=\"/silence\"]').length, !!document.querySelector('a[href^=\"/login\"]')]")
        .await;
    assert_eq!(signed_out, json!([0, true]));

    // A wrong token: 401, the form again saying why, no session cookie.
    browser.sign_in("not-the-token").await;
    assert_eq!(browser.status_code().await, 401);
    assert_eq!(browser.path().await, "/login");
    let alert = browser
        .text("return document.querySelector('[role=alert]').textContent")
        .await;
    assert!(!alert.is_empty());
    assert!(
        browser.client.find(Locator::Id("token")).await.is_ok(),
        "no form after a wrong token"
    );
    let cookies = browser.client.get_all_cookies().await.unwrap();
    assert!(
        cookies.iter().all(|c| c.name() != "klaxon_session"),
        "{cookies:?}"
    );

    // The right one: back on the overview, signed in, an HttpOnly SameSite=Strict cookie.
    browser.sign_in(TOKEN).await;
    assert_eq!(browser.path().await, "/");
    assert_eq!(browser.status_code().await, 200);
    let cookies = browser.client.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == "klaxon_session")
        .unwrap_or_else(|| panic!("no session cookie: {cookies:?}"));
    assert_eq!(session.http_only(), Some(true));
    // fantoccini does not re-export the cookie crate's `SameSite`.
    assert_eq!(format!("{:?}", session.same_site()), "Some(Strict)");
    assert!(!session.value().contains(TOKEN));
    assert_eq!(
        browser.text("return document.cookie").await,
        "",
        "the cookie is HttpOnly"
    );

    // "Silence 1h" without its CSRF field (removed in the page, then sent): 403, nothing
    // silenced.
    browser
        .navigating(async || {
            // One script: the page's refresh cannot swap the form back in between.
            let script =
                "const form = document.querySelector('form[action=\"/jobs/flaky/silence\"]');
                 form.querySelector('input[name=csrf]').remove();
                 form.submit();
                 return null";
            browser.eval(script).await;
        })
        .await;
    assert_eq!(browser.status_code().await, 403);
    let refused = browser
        .text("return document.querySelector('main').textContent")
        .await;
    assert!(
        refused.contains("Refused") && refused.contains("CSRF token is missing"),
        "{refused}"
    );
    let row = agent.status("flaky").await;
    assert!(
        row["silenced_until"].is_null(),
        "silenced without a CSRF token: {row}"
    );

    // "Silence 1h": the store has the silence, by the dashboard, for an hour.
    browser.goto("/").await;
    browser.press("/jobs/flaky/silence", "Silence 1h").await;
    let row = agent.status("flaky").await;
    let until = row["silenced_until"]
        .as_str()
        .unwrap_or_else(|| panic!("not silenced: {row}"));
    let until = chrono::DateTime::parse_from_rfc3339(until).unwrap();
    let left = until
        .signed_duration_since(chrono::Utc::now())
        .num_minutes();
    assert!((55..=60).contains(&left), "silenced for {left} min: {row}");
    let silences = agent.json(&["silence", "list"]).await;
    let made: Vec<(&Json, &Json)> = silences
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (&s["jobs"], &s["created_by"]))
        .collect();
    assert_eq!(
        made,
        [(&json!(["flaky"]), &json!("dashboard"))],
        "{silences}"
    );
    assert!(
        browser
            .row("flaky")
            .await
            .tags
            .contains(&"silenced".to_owned())
    );

    // "Acknowledge" on the open alert.
    assert_eq!(agent.status("broken").await["alert_open"], true);
    browser.press("/jobs/broken/ack", "Acknowledge").await;
    let row = agent.status("broken").await;
    assert!(
        !row["acknowledged"].is_null() && row["acknowledged"] != false,
        "{row}"
    );

    // "Run now" on the job page: one more run in history, out of its hourly schedule.
    let runs = agent.history("flaky").await.len();
    browser.goto("/jobs/flaky").await;
    browser.press("/jobs/flaky/run", "Run now").await;
    eventually("a run from \"Run now\"", async || {
        let now = agent.history("flaky").await.len();
        if now == runs + 1 {
            Ok(())
        } else {
            Err(format!("{runs} then {now} runs"))
        }
    })
    .await;
    browser.close().await;
}

/// axe-core, run inside the page, finds no violation on the sign-in form, the overview
/// and a job page (signed in, so with their forms), in light and dark.
#[tokio::test(flavor = "multi_thread")]
async fn axe_finds_no_violations_light_and_dark() {
    let axe = axe_source();
    let web = target().await;
    let jobs = [
        http_job("web", &web.url("/health")),
        script_job("flaky", "1s"),
        script_job("broken", "1s"),
        pending_job("nightly"),
    ]
    .concat();
    let agent = Agent::start(&jobs, &[("broken", 2, "CRITICAL - refused")]).await;
    agent.wait_severity("broken", "critical").await;
    agent.wait_severity("web", "ok").await;
    let browser = Browser::start(agent.base()).await;
    let mut found = browser.axe_pages(&axe, &["/login", "/"]).await;
    browser.sign_in(TOKEN).await;
    found.extend(
        browser
            .axe_pages(&axe, &["/", "/jobs/flaky", "/jobs/web"])
            .await,
    );
    assert!(found.is_empty(), "axe-core found:\n{}", found.join("\n"));
    browser.close().await;
}

/// The screenshots in docs/: the overview and a job page, light and dark, of an agent
/// with several jobs, one failing now after a recovery, history filled, an undelivered
/// message; axe-core finds no violation on them signed in either. With
/// `KLAXON_SCREENSHOTS=DIR` they are written there (`docs` for README's).
#[tokio::test(flavor = "multi_thread")]
async fn screenshots_of_a_realistic_agent() {
    let web = target().await;
    let api = target().await;
    // A webhook that refuses: the outbox holds its message, with its error.
    let hook = klaxon_testkit::Server::start(|_| klaxon_testkit::Response::status(503)).await;
    let jobs = [
        format!(
            "[notifiers.ops]\ntype = \"webhook\"\nurl = \"{}\"\n\n",
            hook.url("/hook")
        ),
        http_job("website", &web.url("/")),
        http_job("api-health", &api.url("/health")),
        demo_job(
            "backup",
            "2s",
            "check_backup --max-age 26h /srv/backups",
            "",
        ),
        demo_job("disk-root", "2s", "check_disk -w 20% -c 10% -p /", ""),
        demo_job(
            "queue-depth",
            "1s",
            "check_queue --warn 1000 --crit 3000",
            "notify = [\"ops\"]\n",
        ),
        demo_job("nightly-report", "1s", "report --nightly", "")
            .replace("every = \"1s\"", "schedule = \"0 3 1 1 *\""),
    ]
    .concat();
    let outcomes = [
        ("backup", 0, "OK - 14 GB in 3 min"),
        ("disk-root", 1, "DISK WARNING - 86% used on /"),
        ("queue-depth", 0, "OK - 12 messages waiting"),
    ];
    let dir = tempfile::Builder::new()
        .prefix("klaxon-demo.")
        .tempdir()
        .unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for (job, program) in [
        ("backup", "check_backup"),
        ("disk-root", "check_disk"),
        ("queue-depth", "check_queue"),
        ("nightly-report", "report"),
    ] {
        let script = bin.join(program);
        let outcome = dir.path().join(job);
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nf='{}'\n[ -e \"$f\" ] || {{ echo 'OK - fine'; exit 0; }}\nsed -n 2p \"$f\"\nexit $(head -n 1 \"$f\")\n",
                outcome.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    let agent = Agent::start_in(dir, &jobs, &outcomes).await;
    // History: a spell down and a recovery, then down again now.
    tokio::time::sleep(Duration::from_secs(12)).await;
    agent.outcome("queue-depth", 2, "CRITICAL - 4210 messages waiting");
    tokio::time::sleep(Duration::from_secs(5)).await;
    agent.outcome("queue-depth", 0, "OK - 40 messages waiting");
    tokio::time::sleep(Duration::from_secs(8)).await;
    agent.outcome("queue-depth", 2, "CRITICAL - 3880 messages waiting");
    agent.wait_severity("queue-depth", "critical").await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let out = std::env::var_os("KLAXON_SCREENSHOTS").map(|dir| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    });
    let scratch = tempfile::tempdir().unwrap();
    let dir = out.as_deref().unwrap_or(scratch.path());
    let browser = Browser::start(agent.base()).await;
    for (page, name) in [("/", "dashboard"), ("/jobs/queue-depth", "job")] {
        for scheme in ["light", "dark"] {
            browser.color_scheme(scheme).await;
            browser.goto(page).await;
            let png = browser.screenshot().await;
            let (width, height) = png_size(&png);
            assert_eq!(width, 1280, "{page} {scheme}");
            assert!(height >= 600, "{page} {scheme}: {height} px high");
            std::fs::write(dir.join(format!("{name}-{scheme}.png")), png).unwrap();
        }
    }
    // The page under the two schemes is not the same picture.
    let light = std::fs::read(dir.join("dashboard-light.png")).unwrap();
    let dark = std::fs::read(dir.join("dashboard-dark.png")).unwrap();
    assert_ne!(light, dark, "light and dark look the same");
    // The same pages, signed in (with their buttons), pass axe-core too.
    browser.sign_in(TOKEN).await;
    let found = browser
        .axe_pages(&axe_source(), &["/", "/jobs/queue-depth", "/jobs/website"])
        .await;
    assert!(found.is_empty(), "axe-core found:\n{}", found.join("\n"));
    browser.close().await;
}
