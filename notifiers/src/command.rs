//! The `command` channel's config: a program and its arguments (no shell) that gets the
//! alert JSON of SPEC.md "Messages" on stdin, and how long it may run. Running it comes
//! with the command runtime; until then [`crate::Notifier::build`] reports the type as
//! unsupported.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::validate::{self, ConfigIssue};

/// How long a notification command may run when the config does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The raw `[notifiers.NAME]` table of `type = "command"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    command: Spanned<Vec<Spanned<String>>>,
    timeout: Option<Spanned<String>>,
}

impl CommandConfig {
    /// Checks that the command names a program and that `timeout` is a positive
    /// duration, pushing every problem to `issues`.
    pub fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<CommandSpec> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn validate(toml: &str) -> (Option<CommandSpec>, Vec<ConfigIssue>) {
        let config: CommandConfig = toml::from_str(toml).unwrap();
        let mut issues = Vec::new();
        (config.validate(&mut issues), issues)
    }

    fn span_of(toml: &str, needle: &str) -> std::ops::Range<usize> {
        let at = toml.find(needle).unwrap();
        at..at + needle.len()
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
}
