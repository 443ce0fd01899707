//! The canary: one string put into every secret field of one config (through environment
//! variables, `${file:…}` files and literal values), then every command run against
//! receivers that accept, refuse (echoing the request path, which holds the canary) or
//! are not there. The canary must never appear in anything klaxon writes: stdout,
//! stderr, the log file, the state store, or the bodies it sends.
//!
//! To cover another command, add it to [`commands`]; to cover another kind of output,
//! add it to [`collect`].
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use klaxon_testkit::{Request, Response, Server};

const CANARY: &str = "canary-7d3f9a1e";

/// A port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal SMTP server that offers AUTH and refuses every login, quoting what it got.
fn smtp_refusing_logins() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || smtp_session(stream));
        }
    });
    port
}

fn smtp_session(stream: TcpStream) {
    let mut out = stream.try_clone().unwrap();
    let mut lines = BufReader::new(stream);
    let _ = out.write_all(b"220 canary smtp\r\n");
    let mut line = String::new();
    while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
        let command = line.trim_end().to_owned();
        line.clear();
        let upper = command.to_ascii_uppercase();
        let answer = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            "250-canary\r\n250 AUTH PLAIN LOGIN\r\n".to_owned()
        } else if upper.starts_with("AUTH") {
            format!("535 5.7.8 authentication failed: {command}\r\n")
        } else if upper.starts_with("QUIT") {
            let _ = out.write_all(b"221 bye\r\n");
            return;
        } else {
            "502 no\r\n".to_owned()
        };
        if out.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Everything a run of the suite sets up: receivers, files, the environment.
struct World {
    dir: tempfile::TempDir,
    ok: Server,
    bad: Server,
    target: Server,
    /// A paging API refusing every request, quoting its body and `Authorization`.
    pager: Server,
    /// The push channels' receiver: `/ok/…` and ntfy's bearer login (at the root, where
    /// ntfy takes JSON) are accepted, anything else is refused quoting the whole request
    /// (path, headers and body).
    push: Server,
    env: Vec<(String, String)>,
    /// Files that hold the canary on purpose (the configs and `${file:…}` secrets).
    inputs: Vec<PathBuf>,
}

impl World {
    async fn new() -> Self {
        let ok = Server::start(|_| Response::ok("ok")).await;
        // A receiver refusing for good, quoting the path it was asked for.
        let bad = Server::start(|r: &Request| {
            Response::status(400).body(format!("no such hook: {} (POST {})", r.path, r.path))
        })
        .await;
        // A checked target refusing the credentials, quoting them and the path.
        let target = Server::start(|r: &Request| {
            let auth = r.header("authorization").unwrap_or("none").to_owned();
            let key = r.header("x-api-key").unwrap_or("none").to_owned();
            let status = if r.path.starts_with("/bearer") || r.path.starts_with("/header") {
                401
            } else {
                500
            };
            Response::status(status).body(format!(
                "denied {} with authorization `{auth}` and key `{key}`",
                r.path
            ))
        })
        .await;
        let pager = Server::start(|r: &Request| {
            let auth = r.header("authorization").unwrap_or("none").to_owned();
            Response::status(400).body(format!(
                "refused {} with authorization `{auth}`: {}",
                r.path,
                r.text()
            ))
        })
        .await;
        let push = Server::start(|r: &Request| {
            let bearer = r
                .header("authorization")
                .is_some_and(|a| a.starts_with("Bearer "));
            if r.path.starts_with("/ok/") || (r.path == "/" && bearer) {
                return Response::ok("{\"ok\":true,\"status\":1}");
            }
            let headers: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            Response::status(401).body(format!(
                "refused {} {} {}",
                r.path,
                headers.join(", "),
                r.text()
            ))
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let mut world = Self {
            dir,
            ok,
            bad,
            target,
            pager,
            push,
            env: vec![
                ("LISTEN_TOKEN".into(), format!("token-{CANARY}")),
                ("SLACK_OK_URL".into(), String::new()),
                ("SMTP_PASSWORD".into(), format!("pw-{CANARY}")),
                ("API_TOKEN".into(), format!("api-{CANARY}")),
                ("PD_ROUTING_KEY".into(), format!("pd-{CANARY}")),
                ("NTFY_TOKEN".into(), format!("tk-{CANARY}")),
                ("NTFY_TOPIC".into(), format!("topic-{CANARY}")),
                ("PUSHOVER_TOKEN".into(), format!("app-{CANARY}")),
                ("PUSHOVER_USER".into(), format!("user-{CANARY}")),
                ("TELEGRAM_BOT_TOKEN".into(), format!("7:tg-{CANARY}")),
                ("GOTIFY_TOKEN".into(), format!("gotify-{CANARY}")),
                ("MATRIX_TOKEN".into(), format!("mx-{CANARY}")),
            ],
            inputs: Vec::new(),
        };
        world.env[1].1 = world.ok.url(&format!("/slack/{CANARY}"));
        world.input("hook_secret", &format!("hmac-{CANARY}\n"), 0o600);
        world.input("basic_pw", &format!("basic-{CANARY}\n"), 0o600);
        world.input("ntfy_pw", &format!("ntfy-{CANARY}\n"), 0o600);
        // Readable by the group: `validate` warns about it.
        let hb = world.ok.url(&format!("/hb/{CANARY}"));
        world.input("hb_url", &hb, 0o640);
        let config = world.config();
        world.input("klaxon.toml", &config, 0o644);
        for (name, text) in broken_configs(&world) {
            world.input(name, &text, 0o644);
        }
        world
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn input(&mut self, name: &str, text: &str, mode: u32) {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        self.inputs.push(path);
    }

    fn config(&self) -> String {
        let ok = self.ok.addr().port();
        let bad = self.bad.addr().port();
        let target = self.target.addr().port();
        let pager = self.pager.addr().port();
        let push = self.push.addr().port();
        let closed = closed_port();
        let smtp = smtp_refusing_logins();
        let payloads = self.path("command-payloads.json");
        format!(
            r#"
[agent]
name = "canarytest"
state_dir = "state"
group_wait = "0s"
listen = "127.0.0.1:0"
listen_token = "${{LISTEN_TOKEN}}"
heartbeat = {{ url = "http://127.0.0.1:{ok}/agent-ping/{CANARY}", every = "1h" }}

[log]
level = "debug"
file = "logs/klaxon.log"

[defaults]
retry = {{ attempts = 1 }}
notify = ["slack_ok", "slack_bad", "hook_ok", "hook_bad", "cmd", "console", "pd", "og",
          "discord_ok", "discord_bad", "mattermost_ok", "mattermost_bad",
          "googlechat_ok", "googlechat_bad", "matrix_ok", "matrix_bad"]

[notifiers.slack_ok]
type = "slack"
webhook_url = "${{SLACK_OK_URL}}"

[notifiers.slack_bad]
type = "slack"
webhook_url = "http://127.0.0.1:{bad}/slack/{CANARY}"

[notifiers.discord_ok]
type = "discord"
webhook_url = "http://127.0.0.1:{ok}/discord/{CANARY}"

[notifiers.discord_bad]
type = "discord"
webhook_url = "http://127.0.0.1:{bad}/discord/{CANARY}"

[notifiers.mattermost_ok]
type = "mattermost"
webhook_url = "http://127.0.0.1:{ok}/mattermost/{CANARY}"

[notifiers.mattermost_bad]
type = "mattermost"
webhook_url = "http://127.0.0.1:{bad}/mattermost/{CANARY}"

[notifiers.googlechat_ok]
type = "googlechat"
webhook_url = "http://127.0.0.1:{ok}/googlechat/v1/spaces/S/messages?key=k&token={CANARY}"

[notifiers.googlechat_bad]
type = "googlechat"
webhook_url = "http://127.0.0.1:{bad}/googlechat/v1/spaces/S/messages?key=k&token={CANARY}"

[notifiers.matrix_ok]
type = "matrix"
homeserver = "http://127.0.0.1:{ok}/matrix"
access_token = "${{MATRIX_TOKEN}}"
room_id = "!room:example.org"

[notifiers.matrix_bad]
type = "matrix"
homeserver = "http://127.0.0.1:{bad}/matrix"
access_token = "literal-mx-{CANARY}"
room_id = "!room:example.org"

# Quotes the `Authorization` header it was sent.
[notifiers.matrix_echo]
type = "matrix"
homeserver = "http://127.0.0.1:{target}/matrix"
access_token = "${{MATRIX_TOKEN}}"
room_id = "!room:example.org"

[notifiers.teams_closed]
type = "teams"
webhook_url = "http://127.0.0.1:{closed}/teams/{CANARY}"

[notifiers.hook_ok]
type = "webhook"
url = "http://127.0.0.1:{ok}/webhook/{CANARY}"
secret = "${{file:hook_secret}}"

[notifiers.hook_bad]
type = "webhook"
url = "http://127.0.0.1:{bad}/webhook/{CANARY}"
secret = "literal-{CANARY}"

[notifiers.am_closed]
type = "alertmanager"
urls = ["http://am:{CANARY}@127.0.0.1:{closed}"]

[notifiers.mail]
type = "email"
host = "127.0.0.1"
port = {smtp}
tls = "none"
username = "alerts"
password = "${{SMTP_PASSWORD}}"
from = "klaxon <alerts@example.com>"
to = ["oncall@example.com"]

[notifiers.cmd]
type = "command"
command = ["/bin/sh", "-c", "cat >> '{payloads}'; echo >> '{payloads}'"]

[notifiers.console]
type = "log"

[notifiers.pd]
type = "pagerduty"
routing_key = "${{PD_ROUTING_KEY}}"
url = "http://127.0.0.1:{pager}/v2/enqueue"

[notifiers.og]
type = "opsgenie"
api_key = "og-{CANARY}"
url = "http://127.0.0.1:{pager}/opsgenie"

[notifiers.ntfy_ok]
type = "ntfy"
url = "http://127.0.0.1:{push}"
topic = "topic-{CANARY}"
token = "${{NTFY_TOKEN}}"

[notifiers.ntfy_bad]
type = "ntfy"
url = "http://127.0.0.1:{push}"
topic = "${{NTFY_TOPIC}}"
username = "klaxon"
password = "${{file:ntfy_pw}}"

[notifiers.pushover_ok]
type = "pushover"
token = "${{PUSHOVER_TOKEN}}"
user = "user-{CANARY}"
api_url = "http://127.0.0.1:{push}/ok/pushover"

[notifiers.pushover_bad]
type = "pushover"
token = "literal-{CANARY}"
user = "${{PUSHOVER_USER}}"
api_url = "http://127.0.0.1:{push}/bad/pushover"

[notifiers.telegram_ok]
type = "telegram"
bot_token = "${{TELEGRAM_BOT_TOKEN}}"
chat_id = 42
api_url = "http://127.0.0.1:{push}/ok/telegram"

[notifiers.telegram_bad]
type = "telegram"
bot_token = "1:{CANARY}"
chat_id = "@ops"
api_url = "http://127.0.0.1:{push}/bad/telegram"

[notifiers.gotify_ok]
type = "gotify"
url = "http://127.0.0.1:{push}/ok/gotify"
token = "${{GOTIFY_TOKEN}}"

[notifiers.gotify_bad]
type = "gotify"
url = "http://127.0.0.1:{push}/bad/gotify"
token = "gotify-{CANARY}"

[jobs.bearer]
every = "1h"
heartbeat = "${{file:hb_url}}"
[jobs.bearer.check]
type = "http"
url = "http://127.0.0.1:{target}/bearer"
bearer_token = "${{API_TOKEN}}"

[jobs.basic]
every = "1h"
[jobs.basic.check]
type = "http"
url = "http://127.0.0.1:{target}/basic"
basic_auth = {{ username = "user", password = "${{file:basic_pw}}" }}

[jobs.header]
every = "1h"
[jobs.header.check]
type = "http"
url = "http://127.0.0.1:{target}/header"
headers = {{ Authorization = "Bearer {CANARY}", "X-Api-Key" = "key-{CANARY}" }}

[jobs.userinfo]
every = "1h"
[jobs.userinfo.check]
type = "http"
url = "http://user:{CANARY}@127.0.0.1:{target}/userinfo"

[jobs.script]
every = "1h"
[jobs.script.check]
type = "script"
shell = "echo CRITICAL - the script failed; exit 2"
env = {{ PGPASSWORD = "pg-{CANARY}" }}

[jobs.push]
every = "1h"
notify = {push_notifiers:?}
[jobs.push.check]
type = "script"
shell = "exit 2"

[jobs.slow-notifiers]
every = "1h"
notify = ["teams_closed", "am_closed", "mail"]
[jobs.slow-notifiers.check]
type = "tcp"
host = "127.0.0.1"
port = {closed}
"#,
            payloads = payloads.display(),
            push_notifiers = PUSH_OK.iter().chain(&PUSH_BAD).collect::<Vec<_>>(),
        )
    }

    fn klaxon(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_klaxon"));
        cmd.current_dir(self.dir.path())
            .env_remove("KLAXON_CONFIG")
            .env(
                "RUST_LOG",
                "warn,klaxon=trace,klaxon_checks=trace,klaxon_notifiers=trace",
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(args);
        cmd
    }
}

/// Configs with errors, each holding the canary: on the line of the error, in a value
/// that fails to parse, and in a substituted value of the wrong type.
fn broken_configs(world: &World) -> Vec<(&'static str, String)> {
    let job = "[jobs.a]\nevery = \"1m\"\n[jobs.a.check]\ntype = \"tcp\"\nhost = \"127.0.0.1\"\n";
    vec![
        (
            "broken-url.toml",
            format!(
                "[notifiers.s]\ntype = \"slack\"\nwebhook_url = \"ftp://hooks.example.com/{CANARY}\"\n{job}port = 1\n"
            ),
        ),
        (
            "broken-syntax.toml",
            format!("[notifiers.m]\ntype = \"webhook\"\nsecret = \"{CANARY}\n{job}port = 1\n"),
        ),
        (
            "broken-type.toml",
            format!(
                "[notifiers.m]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{}/x\"\nsecret = \"{CANARY}\"\n{job}port = \"${{API_TOKEN}}\"\n",
                world.ok.addr().port()
            ),
        ),
    ]
}

/// The push channels' notifiers that deliver, and those refused.
const PUSH_OK: [&str; 4] = ["ntfy_ok", "pushover_ok", "telegram_ok", "gotify_ok"];
const PUSH_BAD: [&str; 4] = ["ntfy_bad", "pushover_bad", "telegram_bad", "gotify_bad"];

/// A command to run, and the exit codes it may end with.
struct Step {
    args: Vec<String>,
    exits: &'static [i32],
    /// Run as the agent for this long, then SIGTERM.
    agent_for: Option<Duration>,
}

fn step(args: &[&str], exits: &'static [i32]) -> Step {
    Step {
        args: args.iter().map(|a| a.to_string()).collect(),
        exits,
        agent_for: None,
    }
}

/// Every command the suite runs, in order.
fn commands() -> Vec<Step> {
    let mut steps = vec![
        step(&["validate"], &[0]),
        step(&["jobs"], &[0]),
        step(&["jobs", "--json"], &[0]),
    ];
    for job in ["bearer", "basic", "header", "userinfo", "script", "push"] {
        steps.push(step(&["once", job], &[1]));
    }
    for notifier in [
        "slack_ok",
        "hook_ok",
        "cmd",
        "console",
        "discord_ok",
        "mattermost_ok",
        "googlechat_ok",
        "matrix_ok",
    ] {
        steps.push(step(&["notify", "test", notifier], &[0]));
    }
    for notifier in [
        "slack_bad",
        "hook_bad",
        "teams_closed",
        "am_closed",
        "mail",
        "pd",
        "og",
        "discord_bad",
        "mattermost_bad",
        "googlechat_bad",
        "matrix_bad",
        "matrix_echo",
    ] {
        steps.push(step(&["notify", "test", notifier], &[1]));
    }
    for notifier in PUSH_OK {
        steps.push(step(&["notify", "test", notifier], &[0]));
    }
    for notifier in PUSH_BAD {
        steps.push(step(&["notify", "test", notifier], &[1]));
    }
    // `exec`: the job's heartbeat (from a `${file:}`), and one given on the command line.
    steps.push(step(
        &[
            "exec",
            "--job",
            "bearer",
            "--",
            "sh",
            "-c",
            "echo out; exit 3",
        ],
        &[3],
    ));
    steps.push(Step {
        args: vec![
            "exec".into(),
            "--job".into(),
            "adhoc".into(),
            "--retries".into(),
            "0".into(),
            "--notify".into(),
            "hook_bad".into(),
            "--heartbeat".into(),
            format!("http://127.0.0.1:{}/exec-hb/{CANARY}", closed_port()),
            "--".into(),
            "false".into(),
        ],
        exits: &[1],
        agent_for: None,
    });
    steps.push(Step {
        args: vec!["run".into()],
        exits: &[0],
        agent_for: Some(Duration::from_secs(4)),
    });
    steps.push(step(&["status"], &[0]));
    steps.push(step(&["status", "--json"], &[0]));
    for job in ["bearer", "userinfo", "slow-notifiers"] {
        steps.push(step(&["history", job], &[0]));
        steps.push(step(&["history", job, "--json"], &[0]));
    }
    for broken in ["broken-url.toml", "broken-syntax.toml", "broken-type.toml"] {
        steps.push(step(&["--config", broken, "validate"], &[2]));
        steps.push(step(&["--config", broken, "run"], &[2]));
    }
    steps
}

/// Asks the running agent's listener (its address is in the log) for everything it
/// serves, with the right token, a wrong one holding the canary, and none; the answers
/// become outputs.
fn listener_answers(world: &World) -> Vec<Output> {
    let log_dir = world.path("logs");
    let log: String = std::fs::read_dir(&log_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    let addr = log
        .lines()
        .rev()
        .find_map(|l| l.split("listening on ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `listening on` in the log:\n{log}"))
        .to_owned();
    let token = format!("token-{CANARY}");
    let wrong = format!("wrong-{CANARY}");
    let mut out = Vec::new();
    for (method, path, auth, expect) in [
        ("GET", "/healthz", None, 200),
        ("GET", "/metrics", None, 200),
        ("GET", "/status", Some(token.as_str()), 200),
        ("GET", "/status", Some(wrong.as_str()), 401),
        ("GET", "/status", None, 401),
        ("POST", "/ping/bearer", Some(token.as_str()), 409),
        ("POST", "/ping/nosuch", Some(token.as_str()), 404),
        ("POST", "/ping/bearer", Some(wrong.as_str()), 401),
    ] {
        let mut stream = TcpStream::connect(&addr).unwrap();
        let auth = auth.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = Vec::new();
        std::io::Read::read_to_end(&mut stream, &mut answer).unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {expect}")),
            "{method} {path}: {text}"
        );
        out.push(Output {
            what: format!("listener answer to {method} {path}"),
            bytes: answer,
        });
    }
    out
}

/// One named output, to search for the canary.
struct Output {
    what: String,
    bytes: Vec<u8>,
}

/// Runs one step; its stdout and stderr become outputs.
fn run(world: &World, step: &Step, outputs: &mut Vec<Output>) {
    let args: Vec<&str> = step.args.iter().map(String::as_str).collect();
    let mut cmd = world.klaxon(&args);
    let shown = format!("klaxon {}", step.args.join(" "));
    let (code, stdout, stderr) = match step.agent_for {
        None => {
            let out = cmd.output().unwrap();
            (out.status.code(), out.stdout, out.stderr)
        }
        Some(wait) => {
            let child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            std::thread::sleep(wait);
            outputs.extend(listener_answers(world));
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            let out = child.wait_with_output().unwrap();
            (out.status.code(), out.stdout, out.stderr)
        }
    };
    let code = code.unwrap_or(-1);
    assert!(
        step.exits.contains(&code),
        "`{shown}` exited {code}, expected one of {:?}\nstdout:\n{}\nstderr:\n{}",
        step.exits,
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    outputs.push(Output {
        what: format!("stdout of `{shown}`"),
        bytes: stdout,
    });
    outputs.push(Output {
        what: format!("stderr of `{shown}`"),
        bytes: stderr,
    });
}

/// Everything klaxon wrote or sent besides the commands' own output: each file in the
/// work directory that is not an input (the log files, `klaxon.db` and its WAL, the
/// command notifier's payloads), and the body of every request a receiver got (their
/// paths hold the canary by design). PagerDuty's routing key is sent in the body, as
/// its API requires, so that one field is taken out of the pager's bodies first (and
/// checked to be the key); Opsgenie's key is sent only in `Authorization`.
fn collect(world: &World, outputs: &mut Vec<Output>) {
    let mut stack = vec![world.dir.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if !world.inputs.contains(&path) && path.is_file() && !path.is_symlink() {
                // (Sockets, such as the agent's `outbox.bell`, hold no bytes to read.)
                outputs.push(Output {
                    what: format!("file {}", path.display()),
                    bytes: std::fs::read(&path).unwrap(),
                });
            }
        }
    }
    // ntfy's topic and Pushover's keys travel in the body by design: everything else
    // in those bodies is searched.
    for r in world.push.requests() {
        let bytes = if r.path.contains("/pushover") {
            let kept: Vec<(String, String)> = url::form_urlencoded::parse(&r.body)
                .into_owned()
                .filter(|(k, _)| k != "token" && k != "user")
                .collect();
            format!("{kept:?}").into_bytes()
        } else if r.path == "/" {
            let mut body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            body.as_object_mut().unwrap().remove("topic");
            body.to_string().into_bytes()
        } else {
            r.body
        };
        outputs.push(Output {
            what: format!("body of {} {} to the push receiver", r.method, r.path),
            bytes,
        });
    }
    for (name, server) in [
        ("ok", &world.ok),
        ("bad", &world.bad),
        ("target", &world.target),
    ] {
        for r in server.requests() {
            outputs.push(Output {
                what: format!("body of {} {} to the {name} receiver", r.method, r.path),
                bytes: r.body,
            });
        }
    }
    for r in world.pager.requests() {
        let mut body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        if r.path.starts_with("/v2/enqueue") {
            let key = body.as_object_mut().unwrap().remove("routing_key");
            assert_eq!(key, Some(format!("pd-{CANARY}").into()), "{}", r.text());
        } else {
            let auth = r.header("authorization");
            assert_eq!(auth, Some(format!("GenieKey og-{CANARY}").as_str()));
        }
        outputs.push(Output {
            what: format!("body of {} {} to the pager", r.method, r.path),
            bytes: body.to_string().into_bytes(),
        });
    }
}

fn leaks(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| {
            let text = String::from_utf8_lossy(&o.bytes);
            let at = text.find(CANARY)?;
            let from = text[..at]
                .char_indices()
                .rev()
                .nth(160)
                .map_or(0, |(i, _)| i);
            let to = (at + CANARY.len() + 80).min(text.len());
            let to = (to..=text.len())
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(text.len());
            Some(format!("{}:\n  …{}…", o.what, &text[from..to]))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_never_appears_in_anything_klaxon_writes_or_sends() {
    let world = World::new().await;
    let mut outputs = Vec::new();
    let steps = commands();
    let world = tokio::task::spawn_blocking(move || {
        for step in &steps {
            run(&world, step, &mut outputs);
        }
        (world, outputs)
    })
    .await
    .unwrap();
    let (world, mut outputs) = world;
    collect(&world, &mut outputs);

    // The suite did reach everything it is meant to search.
    let names: Vec<&str> = outputs.iter().map(|o| o.what.as_str()).collect();
    for expected in ["klaxon.db", "command-payloads.json", "logs/klaxon."] {
        assert!(
            names.iter().any(|n| n.contains(expected)),
            "no output named {expected}: {names:#?}"
        );
    }
    let sent = |server: &Server, prefix: &str| {
        server
            .requests()
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .count()
    };
    assert!(sent(&world.ok, "/slack/") >= 2, "slack_ok got nothing");
    let ntfy = world
        .push
        .requests()
        .iter()
        .filter(|r| r.path == "/")
        .count();
    assert!(ntfy >= 4, "ntfy_ok and ntfy_bad sent {ntfy} in all");
    for path in ["/ok/pushover", "/ok/telegram", "/ok/gotify", "/bad/"] {
        assert!(
            sent(&world.push, path) >= 2,
            "the push receiver got nothing at {path}"
        );
    }
    assert!(sent(&world.ok, "/webhook/") >= 2, "hook_ok got nothing");
    assert!(sent(&world.bad, "/slack/") >= 2, "slack_bad got nothing");
    assert!(
        sent(&world.target, "/bearer") >= 2,
        "the target got nothing"
    );
    for channel in ["discord", "mattermost", "googlechat", "matrix"] {
        let prefix = format!("/{channel}/");
        assert!(sent(&world.ok, &prefix) >= 2, "{channel} ok got nothing");
        assert!(sent(&world.bad, &prefix) >= 2, "{channel} bad got nothing");
    }
    assert!(
        sent(&world.target, "/matrix/") >= 1,
        "matrix_echo got nothing"
    );
    assert!(sent(&world.ok, "/hb/") >= 2, "no job heartbeat pings");
    assert!(sent(&world.pager, "/v2/enqueue") >= 2, "pd got nothing");
    assert!(
        sent(&world.pager, "/opsgenie/v2/alerts") >= 2,
        "og got nothing"
    );
    assert!(sent(&world.ok, "/agent-ping/") >= 1, "no agent heartbeat");
    assert!(
        names.iter().any(|n| n.contains("listener answer")),
        "the listener was not asked"
    );
    let validate = outputs
        .iter()
        .find(|o| o.what == "stderr of `klaxon validate`")
        .unwrap();
    let warnings = String::from_utf8_lossy(&validate.bytes);
    for field in [
        "`notifiers.slack_bad.webhook_url` is a secret written in the config",
        "`notifiers.am_closed.urls[]` is a secret written in the config",
        "`notifiers.discord_bad.webhook_url` is a secret written in the config",
        "`notifiers.mattermost_bad.webhook_url` is a secret written in the config",
        "`notifiers.googlechat_bad.webhook_url` is a secret written in the config",
        "`notifiers.matrix_bad.access_token` is a secret written in the config",
        "`jobs.header.check.headers.Authorization` is a secret written in the config",
        "`jobs.userinfo.check.url` is a secret written in the config",
        "`notifiers.og.api_key` is a secret written in the config",
        "`notifiers.ntfy_ok.topic` is a secret written in the config",
        "`notifiers.pushover_ok.user` is a secret written in the config",
        "`notifiers.pushover_bad.token` is a secret written in the config",
        "`notifiers.telegram_bad.bot_token` is a secret written in the config",
        "`notifiers.gotify_bad.token` is a secret written in the config",
        "secret file `",
    ] {
        assert!(
            warnings.contains(field),
            "no warning {field:?}:\n{warnings}"
        );
    }

    let found = leaks(&outputs);
    assert!(
        found.is_empty(),
        "the canary `{CANARY}` leaked {} time(s):\n{}",
        found.len(),
        found.join("\n")
    );
}
