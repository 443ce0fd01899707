//! The `script` check: its config keys (`command` or `shell`, `env`, `cwd`), their
//! validation, and the runtime that runs a monitoring plugin in its own process group
//! and maps its exit code the monitoring-plugins way (0 ok, 1 warning, 2 critical,
//! 3 unknown, anything else critical).
//!
//! Output is captured bounded: of each stream the first [`HEAD_BYTES`] and the last
//! [`TAIL_BYTES`] are kept, whatever the script prints. On timeout the whole group gets
//! SIGTERM, then SIGKILL after [`KILL_GRACE`]; the child is always reaped.
//!
//! A script that exits is reported with the metrics of its performance data (see
//! [`crate::perfdata`]). When its stdout was longer than was kept, only the first
//! line's perfdata is read: the start of the later perfdata may be in what was dropped.
//! Output that is not UTF-8 is read lossily (`U+FFFD` for bad bytes).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use klaxon_config_core::{SecretKey, Seg};
use serde::Deserialize;
use tokio::time::Instant;
use toml::Spanned;

use crate::group::{self, Ending, exit_text};
use crate::validate::{self, ConfigIssue};
use crate::{BuildError, CheckPlugin, Outcome, Probe, Severity, Shared};

pub use crate::group::{HEAD_BYTES, KILL_GRACE, TAIL_BYTES};

/// The `[jobs.NAME.check]` table of `type = "script"`, as written.
///
/// It keeps the table's own location, to point at it when neither `command` nor `shell`
/// is there.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct ScriptConfig {
    pub table: Spanned<ScriptTable>,
}

/// The keys of a `script` check table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptTable {
    /// Program and arguments, run without a shell.
    pub command: Option<Spanned<Vec<Spanned<String>>>>,
    /// A line run through `/bin/sh -c`.
    pub shell: Option<Spanned<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, Spanned<String>>,
    pub cwd: Option<Spanned<String>>,
}

/// What a script check runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// argv: the program, then its arguments.
    Command(Vec<String>),
    /// A line for `/bin/sh -c`.
    Shell(String),
}

/// A validated `script` check.
#[derive(Clone)]
pub struct ScriptSpec {
    pub program: Program,
    /// Added to the agent's environment.
    pub env: Vec<(String, String)>,
    /// `~` expanded; the agent's working directory when `None`.
    pub cwd: Option<PathBuf>,
}

impl fmt::Debug for ScriptSpec {
    // Environment values are often secrets: show the names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptSpec")
            .field("program", &self.program)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .finish()
    }
}

impl ScriptSpec {
    /// The command line, arguments quoted where they need it, or the shell line.
    pub fn target(&self) -> String {
        match &self.program {
            Program::Command(argv) => command_line(argv),
            Program::Shell(line) => line.clone(),
        }
    }

    /// The program started: `command`'s first word, or `/bin/sh`.
    pub fn program_name(&self) -> &str {
        match &self.program {
            Program::Command(argv) => argv.first().map_or("", String::as_str),
            Program::Shell(_) => "/bin/sh",
        }
    }
}

/// An argv as one line, each argument quoted for a POSIX shell where it needs it.
pub fn command_line(argv: &[String]) -> String {
    argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,%+@".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

impl CheckPlugin for ScriptConfig {
    type Spec = ScriptSpec;
    type Runtime = ScriptCheck;

    const SECRET_KEYS: &'static [SecretKey] =
        &[SecretKey::always(&[Seg::Key("env"), Seg::SecretName])];

    fn build(spec: &ScriptSpec, _shared: &Shared) -> Result<ScriptCheck, BuildError> {
        Ok(ScriptCheck::new(spec.clone()))
    }

    /// Checks every value, pushing each problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<ScriptSpec> {
        let before = issues.len();
        let span = self.table.span();
        let table = self.table.into_inner();

        let program = match (table.command, table.shell) {
            (Some(_), Some(shell)) => {
                issues.push(ConfigIssue::new(
                    shell.span(),
                    "set either `command` or `shell`, not both",
                ));
                None
            }
            (None, None) => {
                issues.push(ConfigIssue::new(
                    span,
                    "a script check needs `command` (program and arguments) or `shell` \
                     (a line for `/bin/sh -c`)",
                ));
                None
            }
            (Some(command), None) => command_argv(command, issues).map(Program::Command),
            (None, Some(shell)) => {
                if shell.get_ref().trim().is_empty() {
                    issues.push(ConfigIssue::new(shell.span(), "`shell` must not be empty"));
                } else if shell.get_ref().contains('\0') {
                    issues.push(ConfigIssue::new(
                        shell.span(),
                        "`shell` contains a NUL character",
                    ));
                }
                Some(Program::Shell(shell.into_inner()))
            }
        };

        let mut env = Vec::new();
        for (name, value) in table.env {
            if name.is_empty() || name.contains(['=', '\0']) {
                issues.push(ConfigIssue::new(
                    value.span(),
                    format!("`env`: `{name}` is not a valid environment variable name"),
                ));
            } else if value.get_ref().contains('\0') {
                issues.push(ConfigIssue::new(
                    value.span(),
                    format!("`env`: the value of `{name}` contains a NUL character"),
                ));
            } else {
                env.push((name, value.into_inner()));
            }
        }

        let cwd = table
            .cwd
            .as_ref()
            .and_then(|c| validate::path(c, "cwd", issues));

        if issues.len() > before {
            return None;
        }
        Some(ScriptSpec {
            program: program?,
            env,
            cwd,
        })
    }
}

fn command_argv(
    command: Spanned<Vec<Spanned<String>>>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<Vec<String>> {
    let Some(first) = command.get_ref().first() else {
        issues.push(ConfigIssue::new(
            command.span(),
            "`command` must not be empty: give the program and its arguments",
        ));
        return None;
    };
    if first.get_ref().is_empty() {
        issues.push(ConfigIssue::new(
            first.span(),
            "`command`: the program name is empty",
        ));
    }
    for arg in command.get_ref() {
        if arg.get_ref().contains('\0') {
            issues.push(ConfigIssue::new(
                arg.span(),
                "`command`: an argument contains a NUL character",
            ));
        }
    }
    Some(
        command
            .into_inner()
            .into_iter()
            .map(Spanned::into_inner)
            .collect(),
    )
}

/// A `script` check ready to run.
#[derive(Debug)]
pub struct ScriptCheck {
    spec: ScriptSpec,
}

impl ScriptCheck {
    /// Nothing is started until [`ScriptCheck::run`].
    pub fn new(spec: ScriptSpec) -> Self {
        Self { spec }
    }

    /// The validated settings this check runs with.
    pub fn spec(&self) -> &ScriptSpec {
        &self.spec
    }
}

impl Probe for ScriptCheck {
    /// Runs the script once. Never fails: a script that cannot start is critical.
    ///
    /// `timeout` bounds the script; a timed-out group is given [`KILL_GRACE`] after
    /// SIGTERM, so the call can return up to that much later.
    async fn run(&self, timeout: Duration) -> Outcome {
        self.run_until(timeout, std::future::pending()).await
    }

    /// [`ScriptCheck::run`], stopped when `interrupt` completes: the group gets SIGTERM,
    /// then SIGKILL after [`KILL_GRACE`], and the outcome is [`Outcome::interrupted`]
    /// whatever the script exited with.
    async fn run_until(
        &self,
        timeout: Duration,
        interrupt: impl std::future::Future<Output = ()>,
    ) -> Outcome {
        let start = Instant::now();
        let ran = match group::run(self.command(), timeout, false, interrupt).await {
            Ok(ran) => ran,
            Err(e) => {
                let place = match &self.spec.cwd {
                    Some(cwd) if !cwd.is_dir() => format!(" in `{}`", cwd.display()),
                    _ => String::new(),
                };
                let summary = format!("cannot run `{}`{place}: {e}", self.spec.program_name());
                return Outcome::new(Severity::Critical, summary, start.elapsed());
            }
        };
        let output = ran.output();
        let elapsed = ran.elapsed;
        match ran.ending {
            Ending::Exited(status) => {
                let (severity, fallback) = judge(status);
                let first = first_line(&ran.stdout.head);
                let summary = match fallback {
                    Some(exit) if !first.is_empty() => format!("{exit}: {first}"),
                    Some(exit) => exit,
                    None if first.is_empty() => exit_text(status),
                    None => first,
                };
                Outcome::new(severity, summary, elapsed)
                    .with_output(output)
                    .with_metrics(ran.stdout.metrics())
            }
            Ending::Interrupted => Outcome::new(
                Severity::Critical,
                Ending::Interrupted.describe(self.spec.program_name(), timeout),
                elapsed,
            )
            .with_output(output)
            .mark_interrupted(),
            ending => Outcome::new(
                Severity::Critical,
                ending.describe(self.spec.program_name(), timeout),
                elapsed,
            )
            .with_output(output),
        }
    }
}

impl ScriptCheck {
    fn command(&self) -> tokio::process::Command {
        let mut command = match &self.spec.program {
            Program::Command(argv) => {
                let mut c = tokio::process::Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
            Program::Shell(line) => {
                let mut c = tokio::process::Command::new("/bin/sh");
                c.arg("-c").arg(line);
                c
            }
        };
        command
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        if let Some(cwd) = &self.spec.cwd {
            command.current_dir(cwd);
        }
        command
    }
}

/// Severity for an exit status, and the words that must lead the summary when the exit
/// is outside the plugin convention.
fn judge(status: ExitStatus) -> (Severity, Option<String>) {
    match status.code() {
        Some(0) => (Severity::Ok, None),
        Some(1) => (Severity::Warning, None),
        Some(2) => (Severity::Critical, None),
        Some(3) => (Severity::Unknown, None),
        _ => (Severity::Critical, Some(exit_text(status))),
    }
}

/// The plugin's status line: the first line of stdout without its `|` performance data.
fn first_line(stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().next().unwrap_or("");
    line.split('|').next().unwrap_or("").trim().to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::Metric;
    use crate::test_support::{config, issues_of, try_config};

    fn shell(line: &str) -> ScriptCheck {
        ScriptCheck::new(ScriptSpec {
            program: Program::Shell(line.to_owned()),
            env: Vec::new(),
            cwd: None,
        })
    }

    async fn run_shell(line: &str) -> Outcome {
        shell(line).run(Duration::from_secs(10)).await
    }

    /// Processes of `group` that are still running (zombies do not count: they are
    /// dead, waiting for whoever adopted them to reap them).
    fn live_members(group: i32) -> Vec<String> {
        let mut live = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid pgrp …; comm may hold spaces, so split after `)`.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.get(2) == Some(&group.to_string().as_str()) && fields[0] != "Z" {
                live.push(stat);
            }
        }
        live
    }

    // --- validation -------------------------------------------------------------------

    #[test]
    fn command_and_shell_configs() {
        let cfg: ScriptConfig = config(
            "command = [\"/usr/lib/nagios/plugins/check_disk\", \"-w\", \"20%\", \"-p\", \"/my dir\"]\nenv = { LC_ALL = \"C\", TOKEN = \"s3cret\" }\ncwd = \"/tmp\"",
        );
        let mut issues = Vec::new();
        let spec = cfg.validate(&mut issues).unwrap();
        assert!(issues.is_empty());
        assert_eq!(
            spec.target(),
            "/usr/lib/nagios/plugins/check_disk -w 20% -p '/my dir'"
        );
        assert_eq!(spec.env[0], ("LC_ALL".to_owned(), "C".to_owned()));
        assert_eq!(spec.cwd, Some(PathBuf::from("/tmp")));
        assert!(!format!("{spec:?}").contains("s3cret"));

        let cfg: ScriptConfig = config("shell = \"df -h / | tail -1\"");
        let spec = cfg.validate(&mut Vec::new()).unwrap();
        assert_eq!(spec.program, Program::Shell("df -h / | tail -1".into()));
        assert_eq!(spec.program_name(), "/bin/sh");
        assert_eq!(spec.target(), "df -h / | tail -1");
    }

    #[test]
    fn invalid_values_are_located() {
        let text = "command = [\"\", \"a\"]\nenv = { \"A=B\" = \"x\" }";
        let issues = issues_of(text, ScriptConfig::validate);
        let got: Vec<(&str, &str)> = issues
            .iter()
            .map(|i| (&text[i.span.clone()], i.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("\"\"", "`command`: the program name is empty"),
                (
                    "\"x\"",
                    "`env`: `A=B` is not a valid environment variable name"
                ),
            ]
        );

        let cases = [
            (
                "command = []",
                "[]",
                "`command` must not be empty: give the program and its arguments",
            ),
            ("shell = \"  \"", "\"  \"", "`shell` must not be empty"),
            (
                "command = [\"x\"]\nshell = \"y\"",
                "\"y\"",
                "set either `command` or `shell`, not both",
            ),
            (
                "cwd = \"/tmp\"",
                "cwd = \"/tmp\"",
                "a script check needs `command` (program and arguments) or `shell` (a line for `/bin/sh -c`)",
            ),
            (
                "shell = \"x\"\ncwd = \"\"",
                "\"\"",
                "`cwd` must not be empty",
            ),
        ];
        for (text, at, message) in cases {
            let issues = issues_of(text, ScriptConfig::validate);
            assert_eq!(issues.len(), 1, "{text}: {issues:?}");
            assert_eq!(issues[0].message, message, "{text}");
            assert_eq!(&text[issues[0].span.clone()], at, "{text}");
        }
    }

    #[test]
    fn unknown_and_mistyped_keys_are_rejected() {
        let text = "shell = \"x\"\nshel = \"y\"";
        let err = try_config::<ScriptConfig>(text).unwrap_err();
        assert!(err.message().starts_with("unknown field `shel`"), "{err}");
        let text = "command = \"/bin/true\"";
        let err = try_config::<ScriptConfig>(text).unwrap_err();
        assert_eq!(&text[err.span().unwrap()], "\"/bin/true\"");
    }

    // --- running real processes -------------------------------------------------------

    #[tokio::test]
    async fn exit_codes_map_to_severities() {
        let cases = [
            (
                "echo 'DISK OK - free space: 80%'; exit 0",
                Severity::Ok,
                "DISK OK - free space: 80%",
            ),
            (
                "echo 'DISK WARNING'; exit 1",
                Severity::Warning,
                "DISK WARNING",
            ),
            (
                "echo 'DISK CRITICAL'; exit 2",
                Severity::Critical,
                "DISK CRITICAL",
            ),
            (
                "echo 'cannot stat /x'; exit 3",
                Severity::Unknown,
                "cannot stat /x",
            ),
            ("exit 2", Severity::Critical, "exit 2"),
            ("true", Severity::Ok, "exit 0"),
            ("exit 137", Severity::Critical, "exit 137"),
            ("echo oops; exit 4", Severity::Critical, "exit 4: oops"),
            ("kill -9 $$", Severity::Critical, "killed by signal 9"),
        ];
        for (line, severity, summary) in cases {
            let r = run_shell(line).await;
            assert_eq!(
                (r.severity, r.summary.as_str()),
                (severity, summary),
                "{line}"
            );
        }
    }

    #[tokio::test]
    async fn perfdata_is_stripped_and_output_kept() {
        let r = run_shell(
            "echo 'OK - load 0.5 | load1=0.5;1;2 load5=0.4'; echo 'second line'; echo 'err text' >&2",
        )
        .await;
        assert_eq!(r.severity, Severity::Ok);
        assert_eq!(r.summary, "OK - load 0.5");
        assert_eq!(
            r.output.as_deref(),
            Some("OK - load 0.5 | load1=0.5;1;2 load5=0.4\nsecond line\nerr text\n")
        );
    }

    #[tokio::test]
    async fn command_env_and_cwd_are_used() {
        let dir = std::env::temp_dir();
        let check = ScriptCheck::new(ScriptSpec {
            program: Program::Command(vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo \"$GREETING from $(pwd) $0 $1\"".into(),
                "zero".into(),
                "one two".into(),
            ]),
            env: vec![("GREETING".into(), "hello".into())],
            cwd: Some(dir.clone()),
        });
        let r = check.run(Duration::from_secs(10)).await;
        let pwd = dir.canonicalize().unwrap();
        assert_eq!(
            r.summary,
            format!("hello from {} zero one two", pwd.display())
        );
    }

    #[tokio::test]
    async fn a_missing_program_is_critical() {
        let check = ScriptCheck::new(ScriptSpec {
            program: Program::Command(vec!["/nonexistent/check_thing".into()]),
            env: Vec::new(),
            cwd: None,
        });
        let r = check.run(Duration::from_secs(5)).await;
        assert_eq!(r.severity, Severity::Critical);
        assert_eq!(
            r.summary,
            "cannot run `/nonexistent/check_thing`: No such file or directory (os error 2)"
        );

        // A script without execute permission (root too needs one `x` bit to exec).
        use std::os::unix::fs::PermissionsExt;
        let script = std::env::temp_dir().join(format!("klaxon-noexec-{}", std::process::id()));
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
        let check = ScriptCheck::new(ScriptSpec {
            program: Program::Command(vec![script.display().to_string()]),
            env: Vec::new(),
            cwd: None,
        });
        let r = check.run(Duration::from_secs(5)).await;
        std::fs::remove_file(&script).unwrap();
        assert_eq!(r.severity, Severity::Critical);
        assert_eq!(
            r.summary,
            format!(
                "cannot run `{}`: Permission denied (os error 13)",
                script.display()
            )
        );

        let check = ScriptCheck::new(ScriptSpec {
            program: Program::Shell("true".into()),
            env: Vec::new(),
            cwd: Some("/nonexistent/dir".into()),
        });
        let r = check.run(Duration::from_secs(5)).await;
        assert_eq!(
            r.summary,
            "cannot run `/bin/sh` in `/nonexistent/dir`: No such file or directory (os error 2)"
        );
    }

    #[tokio::test]
    async fn a_hanging_script_and_its_children_are_killed() {
        let start = std::time::Instant::now();
        let r = shell("echo $$; sleep 100 & sleep 100")
            .run(Duration::from_millis(500))
            .await;
        let took = start.elapsed();
        assert_eq!(r.severity, Severity::Critical);
        assert_eq!(r.summary, "timed out after 500ms");
        assert!(
            took < Duration::from_millis(500) + KILL_GRACE + Duration::from_secs(1),
            "{took:?}"
        );
        let group: i32 = r.output.unwrap().trim().parse().unwrap();
        assert_eq!(live_members(group), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_script_ignoring_sigterm_gets_sigkill() {
        let start = std::time::Instant::now();
        let r = shell("trap '' TERM; echo $$; sleep 100 & sleep 100; sleep 100")
            .run(Duration::from_millis(300))
            .await;
        let took = start.elapsed();
        assert_eq!(r.summary, "timed out after 300ms");
        assert!(took >= Duration::from_millis(300) + KILL_GRACE, "{took:?}");
        assert!(
            took < Duration::from_millis(300) + KILL_GRACE + Duration::from_secs(2),
            "{took:?}"
        );
        let group: i32 = r.output.unwrap().trim().parse().unwrap();
        assert_eq!(live_members(group), Vec::<String>::new());
    }

    #[tokio::test]
    async fn background_processes_holding_output_are_stopped() {
        let start = std::time::Instant::now();
        let r = run_shell("echo $$; echo started; sleep 100 &").await;
        assert_eq!(r.severity, Severity::Ok);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        let group: i32 = r.summary.parse().unwrap();
        assert_eq!(live_members(group), Vec::<String>::new());
    }

    #[tokio::test]
    async fn cancelling_a_run_kills_its_group() {
        let pid_file = std::env::temp_dir().join(format!("klaxon-cancel-{}", std::process::id()));
        let line = format!("echo $$ > '{}'; sleep 100 & sleep 100", pid_file.display());
        let check = shell(&line);
        // Drop the run half way, as a shutdown that cancels its task would.
        let cancelled = tokio::time::timeout(
            Duration::from_millis(500),
            check.run(Duration::from_secs(60)),
        );
        assert!(cancelled.await.is_err());
        let group: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::fs::remove_file(&pid_file).unwrap();
        // SIGKILL is immediate, but the kernel tears processes down asynchronously.
        let mut live = live_members(group);
        for _ in 0..50 {
            if live.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            live = live_members(group);
        }
        assert_eq!(live, Vec::<String>::new());
    }

    #[tokio::test]
    async fn output_is_bounded() {
        // About 10 MB on stdout: a first line, then numbered lines.
        let r = run_shell("echo 'FIRST | perf=1'; seq 1 1500000; echo LAST; exit 1").await;
        assert_eq!(r.severity, Severity::Warning);
        assert_eq!(r.summary, "FIRST");
        let output = r.output.unwrap();
        assert!(
            output.len() <= HEAD_BYTES + TAIL_BYTES + 100,
            "{}",
            output.len()
        );
        assert!(output.starts_with("FIRST | perf=1\n1\n2\n"));
        assert!(output.ends_with("1500000\nLAST\n"));
        let total = "FIRST | perf=1\n".len()
            + (1..=1_500_000)
                .map(|n: u32| n.to_string().len() + 1)
                .sum::<usize>()
            + "LAST\n".len();
        let dropped = total - HEAD_BYTES - TAIL_BYTES;
        assert!(
            output.contains(&format!("[… {dropped} bytes dropped …]")),
            "no marker"
        );
    }

    #[tokio::test]
    async fn perfdata_becomes_metrics() {
        let r = run_shell(
            "echo 'DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968'; \
             echo '/ 15272 MB (77%);'; \
             echo \"/boot 68 MB (69%); | /boot=68MB;88;93;0;98 'my label'=5%;80;90\"; \
             echo 'junk=x /home=69357MB;253404;253409;0;253414'",
        )
        .await;
        assert_eq!(r.severity, Severity::Ok);
        assert_eq!(r.summary, "DISK OK - free space: / 3326 MB (56%);");
        assert_eq!(
            r.metrics,
            [
                Metric::new("/", 2643.0)
                    .with_unit("MB")
                    .with_warn("5948")
                    .with_crit("5958")
                    .with_min(0.0)
                    .with_max(5968.0),
                Metric::new("/boot", 68.0)
                    .with_unit("MB")
                    .with_warn("88")
                    .with_crit("93")
                    .with_min(0.0)
                    .with_max(98.0),
                Metric::new("my label", 5.0)
                    .with_unit("%")
                    .with_warn("80")
                    .with_crit("90"),
                Metric::new("/home", 69357.0)
                    .with_unit("MB")
                    .with_warn("253404")
                    .with_crit("253409")
                    .with_min(0.0)
                    .with_max(253414.0),
            ]
        );

        // Perfdata that does not parse never changes the result.
        let r = run_shell("echo 'WARNING - odd | =1 a=b;c x'; exit 1").await;
        assert_eq!(
            (r.severity, r.summary.as_str(), r.metrics.len()),
            (Severity::Warning, "WARNING - odd", 0)
        );
    }

    #[tokio::test]
    async fn only_first_line_perfdata_when_output_was_dropped() {
        // The later perfdata starts in the dropped middle; the first line's is whole.
        let r = run_shell("echo 'OK | a=1'; echo 'text | b=2'; seq 1 100000; echo 'c=3'").await;
        let names: Vec<&str> = r.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a"]);
        // A first line longer than the head kept is not read at all: it may be cut.
        let r =
            run_shell("printf 'OK | a=1 '; head -c 200000 /dev/zero | tr '\\0' 'x'; echo").await;
        assert_eq!(r.metrics, []);
    }

    #[tokio::test]
    async fn output_that_is_not_utf8_is_read_lossily() {
        let r =
            run_shell("printf '\\377\\376 ok | t=1s\\n\\377second\\n'; printf '\\200err\\n' >&2")
                .await;
        assert_eq!(r.severity, Severity::Ok);
        assert_eq!(r.summary, "\u{FFFD}\u{FFFD} ok");
        assert_eq!(
            r.output.as_deref(),
            Some("\u{FFFD}\u{FFFD} ok | t=1s\n\u{FFFD}second\n\u{FFFD}err\n")
        );
        assert_eq!(r.metrics, [Metric::new("t", 1.0).with_unit("s")]);

        // Invalid bytes split across the head and tail boundary are fine too.
        let r = run_shell(&format!(
            "head -c {} /dev/zero | tr '\\0' '\\377'; echo; exit 2",
            HEAD_BYTES + TAIL_BYTES + 10
        ))
        .await;
        assert_eq!(r.severity, Severity::Critical);
        assert!(r.summary.starts_with('\u{FFFD}'));
    }

    #[tokio::test]
    async fn huge_stderr_beside_small_stdout_is_bounded() {
        // About 10 MB on stderr.
        let r = run_shell("echo 'CRITICAL - broken | errors=3c'; seq 1 1500000 >&2; exit 2").await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Critical, "CRITICAL - broken")
        );
        assert_eq!(r.metrics, [Metric::new("errors", 3.0).with_unit("c")]);
        let output = r.output.unwrap();
        let stdout = "CRITICAL - broken | errors=3c\n";
        assert!(
            output.len() <= stdout.len() + HEAD_BYTES + TAIL_BYTES + 100,
            "{}",
            output.len()
        );
        // Stdout whole, then stderr's head, the marker and its tail.
        assert!(
            output.starts_with(&format!("{stdout}1\n2\n3\n")),
            "stdout first"
        );
        assert!(output.contains(" bytes dropped …]\n"), "no marker");
        assert!(output.ends_with("1499999\n1500000\n"));
    }

    #[tokio::test]
    async fn every_outcome_carries_its_duration() {
        // A script that runs a while.
        let start = std::time::Instant::now();
        let r = run_shell("sleep 0.3; echo done").await;
        let took = start.elapsed();
        assert_eq!(r.summary, "done");
        assert!(r.duration >= Duration::from_millis(300), "{:?}", r.duration);
        assert!(r.duration <= took, "{:?} > {took:?}", r.duration);

        // A timeout: the try lasts until the group is gone.
        let start = std::time::Instant::now();
        let r = shell("sleep 100").run(Duration::from_millis(200)).await;
        let took = start.elapsed();
        assert_eq!(r.summary, "timed out after 200ms");
        assert!(r.duration >= Duration::from_millis(200), "{:?}", r.duration);
        assert!(r.duration <= took, "{:?} > {took:?}", r.duration);

        // A program that cannot start.
        let check = ScriptCheck::new(ScriptSpec {
            program: Program::Command(vec!["/nonexistent/check_thing".into()]),
            env: Vec::new(),
            cwd: None,
        });
        let start = std::time::Instant::now();
        let r = check.run(Duration::from_secs(5)).await;
        let took = start.elapsed();
        assert_eq!(r.severity, Severity::Critical);
        assert!(
            r.duration > Duration::ZERO && r.duration <= took,
            "{:?}",
            r.duration
        );
    }
}
