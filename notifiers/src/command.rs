//! The `command` channel: runs a program with its arguments (no shell) with the alert JSON
//! of SPEC.md "Messages" on stdin. Owns its config (`command`, `timeout`) and
//! [`Command::send`]; the JSON is [`crate::webhook::render`]'s, byte for byte.
//!
//! The program runs in its own process group with stdout and stderr captured, each
//! bounded to [`OUTPUT_BYTES`]. Exit 0 is delivered; another exit or a timeout is worth a
//! retry; a program that cannot be started is rejected. On timeout, or if the delivery
//! is dropped half way, the whole group is killed.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use toml::Spanned;

use crate::validate::{self, ConfigIssue};
use crate::{Alert, BuildError, Channel, DeliveryError, NotifierPlugin};

/// Bytes of each of stdout and stderr kept; the rest is read and dropped, so a chatty
/// program never blocks on a full pipe.
pub const OUTPUT_BYTES: usize = 64 * 1024;
/// Characters of the program's stderr line a reason quotes.
const REASON_CHARS: usize = crate::http::BODY_CHARS;
/// After the program exits, how long processes it left behind may hold its output open.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

/// How long a notification command may run when the config does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The raw `[notifiers.NAME]` table of `type = "command"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    command: Spanned<Vec<Spanned<String>>>,
    timeout: Option<Spanned<String>>,
}

impl NotifierPlugin for CommandConfig {
    type Spec = CommandSpec;
    type Channel = Command;

    fn build(spec: &CommandSpec, _client: &reqwest::Client) -> Result<Command, BuildError> {
        Ok(Command::new(spec.clone()))
    }

    /// Checks that the command names a program and that `timeout` is a positive
    /// duration, pushing every problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<CommandSpec> {
        let argv: Vec<String> = self
            .command
            .get_ref()
            .iter()
            .map(|arg| arg.get_ref().clone())
            .collect();
        let program_ok = match self.command.get_ref().first() {
            None => {
                issues.push(ConfigIssue::new(
                    self.command.span(),
                    "`command` must not be empty: give the program and its arguments as a list",
                ));
                false
            }
            Some(program) if program.get_ref().trim().is_empty() => {
                issues.push(ConfigIssue::new(
                    program.span(),
                    "`command`: the program must not be empty",
                ));
                false
            }
            Some(_) => true,
        };
        let timeout = match &self.timeout {
            None => Some(DEFAULT_TIMEOUT),
            Some(timeout) => validate::positive_duration(timeout, "timeout", issues),
        };
        Some(CommandSpec {
            argv: program_ok.then_some(argv)?,
            timeout: timeout?,
        })
    }
}

/// A validated `command` notifier.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// The program, then its arguments; never empty.
    pub argv: Vec<String>,
    /// Killed (with its process group) after this long.
    pub timeout: Duration,
}

/// A `command` notifier ready to run.
#[derive(Debug)]
pub struct Command {
    spec: CommandSpec,
}

/// How one run ended, before it is judged.
enum Ended {
    Exited(ExitStatus),
    TimedOut,
    Lost(std::io::Error),
}

impl Command {
    /// Nothing is started until [`Command::send`].
    pub fn new(spec: CommandSpec) -> Self {
        Self { spec }
    }
}

impl Channel for Command {
    /// Runs the program once with [`crate::webhook::render`]'s JSON on stdin and waits
    /// at most the spec's `timeout` for it.
    ///
    /// Exit 0 is delivered. Another exit is [`DeliveryError::Retry`]: ``"`prog` exited
    /// with 3: FIRST LINE OF STDERR"`` (of stdout when stderr is empty); so is a timeout,
    /// after which the program's whole process group is killed. A program that cannot be
    /// started is [`DeliveryError::Reject`]: ``"cannot run `prog`: …"``. Reasons name the
    /// program, never its arguments, which may hold a secret.
    async fn send(&self, alert: &Alert) -> Result<(), DeliveryError> {
        let program = self.spec.argv[0].as_str();
        let deadline = Instant::now() + self.spec.timeout;
        let mut child = self.command().spawn().map_err(|e| DeliveryError::Reject {
            reason: format!("cannot run `{program}`: {e}"),
        })?;
        // `process_group(0)` made the child the leader of a group with its own id.
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        let mut guard = GroupGuard(group);

        let stdin = child.stdin.take();
        let body = crate::webhook::render(alert);
        // A program that exits without reading its input is no error: its exit says.
        let writer = tokio::spawn(async move {
            if let Some(mut stdin) = stdin {
                let _ = stdin.write_all(&body).await;
                let _ = stdin.shutdown().await;
            }
        });
        let stdout = child.stdout.take().map(|s| tokio::spawn(read_bounded(s)));
        let stderr = child.stderr.take().map(|s| tokio::spawn(read_bounded(s)));

        let ended = match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(Ok(status)) => Ended::Exited(status),
            Ok(Err(e)) => Ended::Lost(e),
            Err(_) => Ended::TimedOut,
        };
        if !matches!(ended, Ended::Exited(_)) {
            kill_group(group);
            let _ = child.wait().await;
        }
        writer.abort();
        // What is still running in the group may hold the pipes open: the output read
        // so far is enough, and the group is stopped with the guard.
        let drain_until = deadline.min(Instant::now() + DRAIN_AFTER_EXIT);
        let stdout = collect(stdout, drain_until).await;
        let stderr = collect(stderr, drain_until).await;
        if let Ended::Exited(status) = &ended
            && status.success()
        {
            // Leave whatever the program started in the background alone.
            guard.0 = None;
        }
        drop(guard);

        match ended {
            Ended::Exited(status) if status.success() => Ok(()),
            Ended::Exited(status) => {
                let mut reason = format!("`{program}` {}", exit_text(status));
                let said = first_line(&stderr).or_else(|| first_line(&stdout));
                if let Some(said) = said {
                    reason.push_str(": ");
                    reason.push_str(&said);
                }
                Err(DeliveryError::Retry {
                    reason,
                    after: None,
                })
            }
            Ended::TimedOut => Err(DeliveryError::Retry {
                reason: format!(
                    "`{program}` did not finish within {}",
                    humantime::format_duration(self.spec.timeout)
                ),
                after: None,
            }),
            Ended::Lost(e) => Err(DeliveryError::Retry {
                reason: format!("lost track of `{program}`: {e}"),
                after: None,
            }),
        }
    }
}

impl Command {
    fn command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.spec.argv[0]);
        command
            .args(&self.spec.argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            // If the delivery is dropped, tokio kills and reaps the child; the guard
            // kills the rest of its group.
            .kill_on_drop(true);
        command
    }
}

/// `exited with 3` or `was killed by signal 9`.
fn exit_text(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// The first non-blank line, trimmed and cut to [`REASON_CHARS`].
fn first_line(output: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(output);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(crate::text::truncate(line, REASON_CHARS, crate::text::ELLIPSIS).into_owned())
}

/// Reads a stream to its end, keeping its first [`OUTPUT_BYTES`].
async fn read_bounded(mut stream: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = OUTPUT_BYTES - kept.len();
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// A reader's output, or nothing if it has not finished by `until`.
async fn collect(reader: Option<tokio::task::JoinHandle<Vec<u8>>>, until: Instant) -> Vec<u8> {
    let Some(mut reader) = reader else {
        return Vec::new();
    };
    match tokio::time::timeout_at(until, &mut reader).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => Vec::new(),
        Err(_) => {
            reader.abort();
            Vec::new()
        }
    }
}

fn kill_group(group: Option<Pid>) {
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGKILL);
    }
}

/// Kills the program's group unless the run ended well, so nothing a stuck, failed or
/// abandoned notification command started outlives it.
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fixtures::{self, span_of};

    fn validate(toml: &str) -> (Option<CommandSpec>, Vec<ConfigIssue>) {
        fixtures::validated::<CommandConfig>(toml)
    }

    #[test]
    fn accepts_argv_and_timeout() {
        let (spec, issues) = validate("command = [\"/usr/local/bin/notify-me\"]");
        assert_eq!(issues, []);
        let spec = spec.unwrap();
        assert_eq!(spec.argv, ["/usr/local/bin/notify-me"]);
        assert_eq!(spec.timeout, DEFAULT_TIMEOUT);
        let (spec, issues) = validate("command = [\"notify\", \"--urgent\"]\ntimeout = \"5s\"");
        assert_eq!(issues, []);
        let spec = spec.unwrap();
        assert_eq!(spec.argv, ["notify", "--urgent"]);
        assert_eq!(spec.timeout, Duration::from_secs(5));
    }

    #[test]
    fn collects_every_problem() {
        let toml = "command = []\ntimeout = \"soon\"";
        let (spec, issues) = validate(toml);
        assert!(spec.is_none());
        assert_eq!(
            issues,
            [
                ConfigIssue::new(
                    span_of(toml, "[]"),
                    "`command` must not be empty: give the program and its arguments as a list"
                ),
                ConfigIssue::new(
                    span_of(toml, "\"soon\""),
                    "`timeout`: expected a duration like `30s`, `5m` or `1h30m`, found `soon`"
                ),
            ]
        );
        let toml = "command = [\" \", \"x\"]\ntimeout = \"0s\"";
        assert_eq!(
            validate(toml).1,
            [
                ConfigIssue::new(
                    span_of(toml, "\" \""),
                    "`command`: the program must not be empty"
                ),
                ConfigIssue::new(
                    span_of(toml, "\"0s\""),
                    "`timeout` must be greater than zero"
                ),
            ]
        );
    }

    #[test]
    fn rejects_a_shell_string_and_unknown_keys() {
        let error = toml::from_str::<CommandConfig>("command = \"notify-me\"").unwrap_err();
        assert!(error.message().contains("expected a sequence"), "{error}");
        let error =
            toml::from_str::<CommandConfig>("command = [\"x\"]\nshell = \"y\"").unwrap_err();
        assert!(
            error.message().starts_with("unknown field `shell`"),
            "{error}"
        );
    }

    // --- running real programs ---

    fn command(argv: &[&str], timeout: Duration) -> Command {
        Command::new(CommandSpec {
            argv: argv.iter().map(|a| (*a).to_owned()).collect(),
            timeout,
        })
    }

    fn sh(script: &str, timeout: Duration) -> Command {
        command(&["/bin/sh", "-c", script, "notify"], timeout)
    }

    const LONG: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn the_program_gets_the_alert_json_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("alert.json");
        let script = format!("cat > '{}'", out.display());
        for alert in [fixtures::failure(), fixtures::recovery()] {
            sh(&script, LONG).send(&alert).await.unwrap();
            let written = std::fs::read(&out).unwrap();
            assert_eq!(written, crate::webhook::render(&alert));
            let back: Alert = serde_json::from_slice(&written).unwrap();
            assert_eq!(back, alert);
        }
    }

    #[tokio::test]
    async fn arguments_are_passed_as_is_without_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("args");
        let script = format!("printf '%s|' \"$@\" > '{}'", out.display());
        command(
            &["/bin/sh", "-c", &script, "notify", "a b", "$HOME", "*"],
            LONG,
        )
        .send(&fixtures::failure())
        .await
        .unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "a b|$HOME|*|");
    }

    #[tokio::test]
    async fn a_failing_program_is_retried_quoting_stderr() {
        let error = sh(
            "cat > /dev/null; echo progress; echo 'relay refused: quota' >&2; echo more >&2; exit 3",
            LONG,
        )
        .send(&fixtures::failure())
        .await
        .unwrap_err();
        assert_eq!(
            error,
            DeliveryError::Retry {
                reason: "`/bin/sh` exited with 3: relay refused: quota".into(),
                after: None,
            }
        );
        // Without stderr, stdout says why; with neither, the exit alone.
        let error = sh("echo 'stdout only'; exit 1", LONG)
            .send(&fixtures::failure())
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "`/bin/sh` exited with 1: stdout only");
        let error = sh("exit 4", LONG)
            .send(&fixtures::failure())
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "`/bin/sh` exited with 4");
        let error = sh("kill -9 $$", LONG)
            .send(&fixtures::failure())
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "`/bin/sh` was killed by signal 9");
    }

    #[tokio::test]
    async fn a_hanging_program_is_killed_and_retried() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        // A child of the program that would outlive it if only the program were killed.
        let script = format!("sleep 30 & echo $! > '{}'; wait", pid_file.display());
        let error = sh(&script, Duration::from_millis(300))
            .send(&fixtures::failure())
            .await
            .unwrap_err();
        assert_eq!(
            error,
            DeliveryError::Retry {
                reason: "`/bin/sh` did not finish within 300ms".into(),
                after: None,
            }
        );
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild was killed with the group (a zombie until init reaps it). Read
        // from Linux's /proc, where CI runs; elsewhere this check passes unexercised.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let gone = state.is_empty() || state.contains(") Z ");
            if gone {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still running: {state}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_missing_program_is_rejected() {
        let error = command(&["/nonexistent/notify-me", "--token=SECRET"], LONG)
            .send(&fixtures::failure())
            .await
            .unwrap_err();
        assert_eq!(
            error,
            DeliveryError::Reject {
                reason:
                    "cannot run `/nonexistent/notify-me`: No such file or directory (os error 2)"
                        .into(),
            }
        );
    }

    #[tokio::test]
    async fn output_is_bounded_and_a_program_ignoring_stdin_is_fine() {
        // 1 MiB on each stream, stdin never read: neither side may block.
        let error = sh(
            "head -c 1048576 /dev/zero | tr '\\0' x; head -c 1048576 /dev/zero | tr '\\0' y >&2; exit 2",
            LONG,
        )
        .send(&fixtures::failure())
        .await
        .unwrap_err();
        let reason = error.to_string();
        assert!(
            reason.starts_with("`/bin/sh` exited with 2: yyyy"),
            "{}",
            &reason[..40]
        );
        assert_eq!(
            reason.chars().count(),
            "`/bin/sh` exited with 2: ".len() + REASON_CHARS
        );
        sh("exit 0", LONG).send(&fixtures::failure()).await.unwrap();
    }

    #[tokio::test]
    async fn reading_is_bounded() {
        let data = vec![b'z'; 3 * OUTPUT_BYTES + 5];
        let kept = read_bounded(&data[..]).await;
        assert_eq!(kept.len(), OUTPUT_BYTES);
    }
}
