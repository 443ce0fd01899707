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
use fantoccini::{Client, ClientBuilder};
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

    /// Waits (20 s at most) until `script` returns true, then its last value of `show`.
    async fn wait_until(&self, what: &str, script: &str, show: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if self.eval(script).await == Json::Bool(true) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never {what}; the page has:\n{}",
                self.text(show).await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
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
                    .then(r => done(r.violations.map(v =>
                        `${v.id} (${v.impact}): ${v.help}\n` + v.nodes.map(n =>
                            `    ${n.target.join(' ')}: ${n.failureSummary.replace(/\\n/g, ' ')}`
                        ).join('\\n'))))
                    .catch(e => done(['axe failed: ' + e]));",
                Vec::new(),
            )
            .await
            .unwrap_or_else(|e| panic!("run axe-core: {e}"));
        serde_json::from_value(result).unwrap()
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

/// A `klaxon run` in a temp dir, in a process group of its own (its scripts too), killed
/// on drop; its stderr goes to a file.
struct Agent {
    dir: tempfile::TempDir,
    child: Child,
    addr: SocketAddr,
}

impl Agent {
    /// `jobs` is TOML with `DIR` standing for the agent's directory.
    async fn start(jobs: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
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
        let path = self.dir.path().join(job);
        std::fs::write(path.with_extension("tmp"), format!("{exit}\n{line}\n")).unwrap();
        std::fs::rename(path.with_extension("tmp"), path).unwrap();
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

    /// Waits (20 s at most) until the store says `job` is `severity`.
    async fn wait_severity(&self, job: &str, severity: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let row = self.status(job).await;
            if row["severity"] == severity {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "`{job}` never {severity}: {row}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
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

/// The badges load in chromium as SVG documents and say what the store says.
#[tokio::test(flavor = "multi_thread")]
async fn badges_load_as_svg_in_chromium() {
    let agent = Agent::start(&script_job("flaky", "1s")).await;
    let browser = Browser::start(agent.base()).await;
    agent.wait_severity("flaky", "ok").await;

    browser.goto("/badge/flaky.svg").await;
    let root = browser
        .text("return document.documentElement.namespaceURI + ' ' + document.documentElement.textContent")
        .await;
    assert!(root.starts_with("http://www.w3.org/2000/svg "), "{root}");
    assert!(root.contains("up"), "{root}");

    agent.outcome("flaky", 2, "CRITICAL - broken");
    agent.wait_severity("flaky", "critical").await;
    browser.goto("/badge/flaky.svg").await;
    let root = browser
        .text("return document.documentElement.textContent")
        .await;
    assert!(root.contains("down"), "{root}");
    browser.close().await;
}
