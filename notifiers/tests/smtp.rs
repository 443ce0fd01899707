//! The `email` channel against a real SMTP server: Debian's `python3-aiosmtpd`, run by
//! `tests/smtp/server.py` on a loopback port, once plain, once with STARTTLS and AUTH,
//! once with TLS from the first byte, once dropping the connection mid-DATA. What the
//! server received is parsed by Python's own MIME parser, not ours.
//!
//! Needs `python3-aiosmtpd` (installed by `.ci/run`); fails, never skips, without it.
//! Run with `cargo test -p klaxon-notifiers --features system-tests --test smtp`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use chrono::DateTime;
use klaxon_notifiers::email::{Email, EmailCredentials, EmailSpec, EmailTls};
use klaxon_notifiers::{Alert, Channel, CheckInfo, DeliveryError, Event, Severity};
use secrecy::SecretString;
use serde_json::Value;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp/server.py");
/// What `server.py` accepts.
const USER: &str = "klaxon";
const PASSWORD: &str = "correct-horse-battery";
const WRONG_PASSWORD: &str = "wrong-Password-4711";

/// A Python that has aiosmtpd: Debian's own first (a pyenv or venv `python3` earlier on
/// `PATH` does not see Debian's packages).
fn python() -> &'static str {
    static PYTHON: OnceLock<&'static str> = OnceLock::new();
    PYTHON.get_or_init(|| {
        ["/usr/bin/python3", "python3"]
            .into_iter()
            .find(|python| {
                Command::new(python)
                    .args(["-c", "import aiosmtpd"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .unwrap_or_else(|| {
                panic!(
                    "no python3 with aiosmtpd: this suite runs a real SMTP server; install it \
                     with `sudo apt-get install -y python3-aiosmtpd` (Debian/Ubuntu)"
                )
            })
    })
}

/// A self-signed certificate for `localhost` and `127.0.0.1`, written to a temp dir.
struct Cert {
    dir: tempfile::TempDir,
}

impl Cert {
    fn new() -> Self {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), certified.cert.pem()).unwrap();
        std::fs::write(
            dir.path().join("key.pem"),
            certified.signing_key.serialize_pem(),
        )
        .unwrap();
        Self { dir }
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }
}

/// `server.py serve` in one mode; killed when dropped.
struct Server {
    child: Child,
    // Held open: the server stops when it closes.
    _stdin: ChildStdin,
    port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(mode: &str, cert: Option<&Cert>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(python());
        command.arg(SCRIPT).arg("serve").arg(dir.path()).arg(mode);
        if let Some(cert) = cert {
            command.arg(cert.cert()).arg(cert.key());
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("server.py {mode} printed {line:?}, not its port"));
        Self {
            child,
            _stdin: stdin,
            port,
            dir,
        }
    }

    /// Every message the server accepted, as Python's MIME parser reads it, with its
    /// envelope.
    fn messages(&self) -> Vec<(Value, Value)> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "eml"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|path| {
                let out = Command::new(python())
                    .arg(SCRIPT)
                    .arg("parse")
                    .arg(path)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let envelope = std::fs::read(path.with_extension("json")).unwrap();
                (
                    serde_json::from_slice(&out.stdout).unwrap(),
                    serde_json::from_slice(&envelope).unwrap(),
                )
            })
            .collect()
    }

    /// Every AUTH attempt the server saw.
    fn auth_log(&self) -> Vec<Value> {
        let log = std::fs::read_to_string(self.dir.path().join("auth.jsonl")).unwrap_or_default();
        log.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn spec(&self, tls: EmailTls) -> EmailSpec {
        EmailSpec {
            host: "127.0.0.1".into(),
            port: self.port,
            tls,
            credentials: None,
            from: "klaxon <alerts@example.com>".into(),
            to: vec!["oncall@example.com".into(), "Ops <ops@example.com>".into()],
            ca_file: None,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn credentials(password: &str) -> Option<EmailCredentials> {
    Some(EmailCredentials {
        username: USER.into(),
        password: SecretString::from(password),
    })
}

fn trusting(spec: EmailSpec, cert: &Cert) -> EmailSpec {
    EmailSpec {
        ca_file: Some(cert.cert()),
        ..spec
    }
}

fn send(spec: EmailSpec, alert: &Alert) -> Result<(), DeliveryError> {
    let email = Email::new(spec)
        .unwrap()
        .with_timeout(Duration::from_secs(10));
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(email.send(alert))
}

fn failure() -> Alert {
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap();
    Alert {
        version: 1,
        event: Event::Failure,
        job: "api".into(),
        agent: "macbook".into(),
        severity: Severity::Critical,
        check: CheckInfo {
            kind: "http".into(),
            target: "https://api.example.com/health".into(),
        },
        summary: "HTTP 503 Service Unavailable".into(),
        output: Some("upstream connect error\nreset reason: <overflow> & more\n".into()),
        attempts: 3,
        max_attempts: 3,
        elapsed_ms: 7213,
        started_at: at("2026-03-29T10:15:02+11:00"),
        failing_since: Some(at("2026-03-29T10:15:02+11:00")),
        last_success: Some(at("2026-03-29T10:10:01+11:00")),
        next_run: Some(at("2026-03-29T10:20:00+11:00")),
        downtime_ms: None,
        id: "api-20260329T001502Z".into(),
        acknowledged: None,
    }
}

fn recovery() -> Alert {
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap();
    Alert {
        event: Event::Recovery,
        severity: Severity::Ok,
        summary: "HTTP 200 OK".into(),
        output: None,
        attempts: 1,
        elapsed_ms: 180,
        started_at: at("2026-03-29T11:20:01+11:00"),
        last_success: Some(at("2026-03-29T11:20:01+11:00")),
        next_run: Some(at("2026-03-29T11:25:00+11:00")),
        downtime_ms: Some(3_900_000),
        ..failure()
    }
}

fn header<'a>(message: &'a Value, name: &str) -> Vec<&'a str> {
    message["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h[1].as_str().unwrap())
        .collect()
}

/// The one message the server got: multipart/alternative with a text and an HTML part,
/// the exact subject, sender and recipients, and every SPEC fact in both parts.
fn assert_delivered(server: &Server, subject: &str, facts: &[&str]) -> Value {
    let messages = server.messages();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let (message, envelope) = messages.into_iter().next().unwrap();
    assert_eq!(message["defects"], serde_json::json!([]), "{message:#}");
    assert_eq!(
        message["content_type"], "multipart/alternative",
        "{message:#}"
    );
    let parts = message["parts"].as_array().unwrap();
    let types: Vec<&str> = parts
        .iter()
        .map(|p| p["content_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["text/plain", "text/html"], "{message:#}");
    assert!(parts.iter().all(|p| p["charset"] == "utf-8"), "{message:#}");

    assert_eq!(header(&message, "Subject"), [subject]);
    assert_eq!(header(&message, "From"), ["klaxon <alerts@example.com>"]);
    assert_eq!(
        header(&message, "To"),
        ["oncall@example.com, Ops <ops@example.com>"]
    );
    assert_eq!(header(&message, "Date").len(), 1, "{message:#}");
    assert_eq!(header(&message, "Message-ID").len(), 1, "{message:#}");
    assert_eq!(header(&message, "Auto-Submitted"), ["auto-generated"]);
    assert_eq!(envelope["mail_from"], "alerts@example.com");
    assert_eq!(
        envelope["rcpt_tos"],
        serde_json::json!(["oncall@example.com", "ops@example.com"])
    );

    // On the wire lines end in CRLF; the parser keeps them.
    let text = parts[0]["body"].as_str().unwrap().replace("\r\n", "\n");
    let html = parts[1]["body"].as_str().unwrap().replace("\r\n", "\n");
    for fact in facts {
        assert!(text.contains(fact), "{fact:?} in the text part:\n{text}");
    }
    // The HTML part has the same labelled facts, label and value in one table row.
    for fact in facts.iter().filter(|f| !f.contains('\n')) {
        let (label, value) = fact.split_once(": ").unwrap();
        let row = format!("<tr><th align=\"left\">{label}</th><td>{value}</td></tr>");
        assert!(html.contains(&row), "{row:?} in the HTML part:\n{html}");
    }
    message
}

const FAILURE_FACTS: &[&str] = &[
    "DOWN api on macbook: HTTP 503 Service Unavailable\n",
    "Severity: critical",
    "Check: http https://api.example.com/health",
    "Reason: HTTP 503 Service Unavailable",
    "Attempts: 3 of 3",
    "Elapsed: 7.2s",
    "Failing since: 2026-03-29 10:15:02 +11:00",
    "Last success: 2026-03-29 10:10:01 +11:00",
    "Next run: 2026-03-29 10:20:00 +11:00",
    "Alert: api-20260329T001502Z",
    "Output:\nupstream connect error\nreset reason: <overflow> & more",
];

const RECOVERY_FACTS: &[&str] = &[
    "RECOVERED api on macbook after 1h 5m\n",
    "Severity: ok",
    "Check: http https://api.example.com/health",
    "Reason: HTTP 200 OK",
    "Attempts: 1 of 3",
    "Elapsed: 180ms",
    "Failing since: 2026-03-29 10:15:02 +11:00",
    "Next run: 2026-03-29 11:25:00 +11:00",
    "Downtime: 1h 5m",
    "Alert: api-20260329T001502Z",
];

#[test]
fn plain_to_loopback_is_delivered() {
    let server = Server::start("plain", None);
    send(server.spec(EmailTls::None), &failure()).unwrap();
    let message = assert_delivered(
        &server,
        "[klaxon] DOWN api on macbook: HTTP 503 Service Unavailable",
        FAILURE_FACTS,
    );
    let html = message["parts"][1]["body"]
        .as_str()
        .unwrap()
        .replace("\r\n", "\n");
    assert!(
        html.contains(
            "<pre>upstream connect error\nreset reason: &lt;overflow&gt; &amp; more</pre>"
        ),
        "{html}"
    );
    assert_eq!(server.auth_log(), Vec::<Value>::new());
}

#[test]
fn starttls_with_auth_is_delivered() {
    let cert = Cert::new();
    let server = Server::start("starttls-auth", Some(&cert));
    let spec = EmailSpec {
        credentials: credentials(PASSWORD),
        ..trusting(server.spec(EmailTls::Starttls), &cert)
    };
    send(spec, &recovery()).unwrap();
    assert_delivered(
        &server,
        "[klaxon] RECOVERED api on macbook after 1h 5m",
        RECOVERY_FACTS,
    );
    let (_, envelope) = server.messages().remove(0);
    assert_eq!(envelope["authenticated"], true);
    assert_eq!(envelope["tls"], true);
    let auth = server.auth_log();
    assert_eq!(auth.len(), 1, "{auth:?}");
    assert_eq!(auth[0]["login"], USER);
    assert_eq!(auth[0]["success"], true);
}

#[test]
fn implicit_tls_is_delivered() {
    let cert = Cert::new();
    let server = Server::start("tls", Some(&cert));
    send(trusting(server.spec(EmailTls::Tls), &cert), &failure()).unwrap();
    assert_delivered(
        &server,
        "[klaxon] DOWN api on macbook: HTTP 503 Service Unavailable",
        FAILURE_FACTS,
    );
}

#[test]
fn a_wrong_password_is_rejected_without_showing_it() {
    let cert = Cert::new();
    let server = Server::start("starttls-auth", Some(&cert));
    let spec = EmailSpec {
        credentials: credentials(WRONG_PASSWORD),
        ..trusting(server.spec(EmailTls::Starttls), &cert)
    };
    let error = send(spec, &failure()).unwrap_err();
    let DeliveryError::Reject { reason } = &error else {
        panic!("{error:?}");
    };
    assert!(
        reason.starts_with(&format!(
            "authentication as `{USER}` at `127.0.0.1:{}` failed: SMTP 535",
            server.port
        )),
        "{reason}"
    );
    assert!(!reason.contains(WRONG_PASSWORD), "{reason}");
    assert!(!format!("{error:?}").contains(WRONG_PASSWORD));
    assert_eq!(server.auth_log()[0]["success"], false);
    assert!(server.messages().is_empty());
}

#[test]
fn missing_credentials_are_rejected() {
    let cert = Cert::new();
    let server = Server::start("starttls-auth", Some(&cert));
    let spec = trusting(server.spec(EmailTls::Starttls), &cert);
    let error = send(spec, &failure()).unwrap_err();
    let DeliveryError::Reject { reason } = &error else {
        panic!("{error:?}");
    };
    assert!(
        reason.starts_with(&format!(
            "`127.0.0.1:{}` requires authentication and no `username` and `password` are \
             set: SMTP 530",
            server.port
        )),
        "{reason}"
    );
    assert!(server.messages().is_empty());
}

#[test]
fn an_untrusted_certificate_is_rejected() {
    let cert = Cert::new();
    for (mode, tls) in [
        ("starttls-auth", EmailTls::Starttls),
        ("tls", EmailTls::Tls),
    ] {
        let server = Server::start(mode, Some(&cert));
        let spec = EmailSpec {
            credentials: credentials(PASSWORD),
            ..server.spec(tls)
        };
        let error = send(spec, &failure()).unwrap_err();
        let DeliveryError::Reject { reason } = &error else {
            panic!("{mode}: {error:?}");
        };
        assert!(
            reason.starts_with(&format!("TLS with `127.0.0.1:{}` failed: ", server.port)),
            "{mode}: {reason}"
        );
        assert!(reason.contains("certificate"), "{mode}: {reason}");
        assert!(
            reason.ends_with("trust it with `ca_file`"),
            "{mode}: {reason}"
        );
        // Nothing, least of all the password, went to a server we could not verify.
        assert_eq!(server.auth_log(), Vec::<Value>::new(), "{mode}");
        assert!(server.messages().is_empty(), "{mode}");
    }
}

#[test]
fn tls_towards_a_plain_server_is_rejected() {
    let server = Server::start("plain", None);
    let error = send(server.spec(EmailTls::Tls), &failure()).unwrap_err();
    let DeliveryError::Reject { reason } = &error else {
        panic!("{error:?}");
    };
    assert!(
        reason.starts_with(&format!("TLS with `127.0.0.1:{}` failed: ", server.port)),
        "{reason}"
    );
    assert!(
        reason.contains("`tls = \"tls\"` needs a server"),
        "{reason}"
    );
}

#[test]
fn a_connection_dropped_mid_data_is_retried() {
    let server = Server::start("drop-data", None);
    let error = send(server.spec(EmailTls::None), &failure()).unwrap_err();
    assert_eq!(
        error,
        DeliveryError::Retry {
            reason: format!(
                "`127.0.0.1:{}` closed the connection before answering",
                server.port
            ),
            after: None,
        }
    );
}

#[test]
fn a_digest_is_one_message_naming_every_job() {
    let server = Server::start("plain", None);
    let db = Alert {
        job: "db".into(),
        id: "db-20260328T231000Z".into(),
        ..recovery()
    };
    let email = Email::new(server.spec(EmailTls::None))
        .unwrap()
        .with_timeout(Duration::from_secs(10));
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(email.send_digest(&[failure(), db]))
        .unwrap();
    let messages = server.messages();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let (message, envelope) = &messages[0];
    assert_eq!(message["defects"], serde_json::json!([]), "{message:#}");
    assert_eq!(
        header(message, "Subject"),
        ["[klaxon] 2 alerts on macbook: 1 down, 1 recovered"]
    );
    assert_eq!(header(message, "Auto-Submitted"), ["auto-generated"]);
    assert_eq!(
        envelope["rcpt_tos"],
        serde_json::json!(["oncall@example.com", "ops@example.com"])
    );
    let parts = message["parts"].as_array().unwrap();
    let types: Vec<&str> = parts
        .iter()
        .map(|p| p["content_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["text/plain", "text/html"], "{message:#}");
    let text = parts[0]["body"].as_str().unwrap().replace("\r\n", "\n");
    assert_eq!(
        text.trim_end(),
        "2 alerts on macbook: 1 down, 1 recovered\n\
         \n\
         - DOWN api on macbook: HTTP 503 Service Unavailable (3 of 3 attempts, 7.2s)\n\
         - RECOVERED db on macbook after 1h 5m (down 10:15–11:20)"
    );
    let html = parts[1]["body"].as_str().unwrap().replace("\r\n", "\n");
    assert!(
        html.contains(
            "<ul>\n\
             <li>DOWN api on macbook: HTTP 503 Service Unavailable (3 of 3 attempts, 7.2s)</li>\n\
             <li>RECOVERED db on macbook after 1h 5m (down 10:15–11:20)</li>\n\
             </ul>"
        ),
        "{html}"
    );
}
