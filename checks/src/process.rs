//! The `process` check: its config (`name` and/or `cmdline`, `user`, `min`, `max`,
//! `max_cpu`, `max_memory`) and validation. Its runtime comes in a later version;
//! [`crate::Check::build`] reports it as unsupported until then.

use serde::Deserialize;
use toml::Spanned;

use crate::validate::{self, ConfigIssue};

/// The `[jobs.NAME.check]` table of `type = "process"`, as written.
///
/// It keeps the table's own location, to point at it when neither `name` nor `cmdline`
/// is there.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct ProcessConfig {
    pub table: Spanned<ProcessTable>,
}

/// The keys of a `process` check table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessTable {
    /// The process name, matched exactly.
    pub name: Option<Spanned<String>>,
    /// A regex searched in the whole command line.
    pub cmdline: Option<Spanned<String>>,
    pub user: Option<Spanned<String>>,
    pub min: Option<Spanned<i64>>,
    pub max: Option<Spanned<i64>>,
    /// Percent of one core.
    pub max_cpu: Option<Spanned<f64>>,
    pub max_memory: Option<Spanned<String>>,
}

/// A validated `process` check: processes matching every given criterion are counted.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    pub name: Option<String>,
    pub cmdline: Option<regex::Regex>,
    pub user: Option<String>,
    /// At least this many must run; 1 when not set.
    pub min: u32,
    /// At most this many may run.
    pub max: Option<u32>,
    /// Percent of one core, greater than zero (may exceed 100 on several cores).
    pub max_cpu: Option<f64>,
    /// Bytes of resident memory.
    pub max_memory: Option<u64>,
}

impl ProcessSpec {
    /// `postgres`, `` cmdline `regex` ``, or both, with ` (user NAME)` when set.
    pub fn target(&self) -> String {
        let mut parts = Vec::new();
        if let Some(name) = &self.name {
            parts.push(name.clone());
        }
        if let Some(re) = &self.cmdline {
            parts.push(format!("cmdline `{}`", re.as_str()));
        }
        let mut target = parts.join(", ");
        if let Some(user) = &self.user {
            target.push_str(&format!(" (user {user})"));
        }
        target
    }
}

impl ProcessConfig {
    /// Checks every value, pushing each problem to `issues`.
    pub fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<ProcessSpec> {
        let before = issues.len();
        let span = self.table.span();
        let table = self.table.into_inner();

        if table.name.is_none() && table.cmdline.is_none() {
            issues.push(ConfigIssue::new(
                span,
                "a process check needs `name` (the process name) or `cmdline` (a regex \
                 over the command line)",
            ));
        }
        let name = table.name.and_then(|n| not_empty(n, "name", issues));
        let cmdline = table
            .cmdline
            .as_ref()
            .and_then(|c| validate::regex(c, "cmdline", issues));
        let user = table.user.and_then(|u| not_empty(u, "user", issues));
        let min = table
            .min
            .as_ref()
            .map_or(Some(1), |m| count(m, "min", issues));
        let max = table.max.as_ref().and_then(|m| count(m, "max", issues));
        if let (Some(lo), Some(hi), Some(raw)) = (min, max, &table.max)
            && hi < lo
        {
            issues.push(ConfigIssue::new(
                raw.span(),
                format!("`max` ({hi}) must not be less than `min` ({lo})"),
            ));
        }
        let max_cpu = table.max_cpu.as_ref().and_then(|c| {
            let value = *c.get_ref();
            if value.is_finite() && value > 0.0 {
                Some(value)
            } else {
                issues.push(ConfigIssue::new(
                    c.span(),
                    format!("`max_cpu` must be a percentage greater than zero, found `{value}`"),
                ));
                None
            }
        });
        let max_memory = table.max_memory.as_ref().and_then(|m| {
            let bytes = validate::size(m, "max_memory", issues)?;
            if bytes == 0 {
                issues.push(ConfigIssue::new(
                    m.span(),
                    "`max_memory` must be greater than zero",
                ));
                return None;
            }
            Some(bytes)
        });

        if issues.len() > before {
            return None;
        }
        Some(ProcessSpec {
            name,
            cmdline,
            user,
            min: min?,
            max,
            max_cpu,
            max_memory,
        })
    }
}

fn not_empty(value: Spanned<String>, key: &str, issues: &mut Vec<ConfigIssue>) -> Option<String> {
    if value.get_ref().trim().is_empty() {
        issues.push(ConfigIssue::new(
            value.span(),
            format!("`{key}` must not be empty"),
        ));
        return None;
    }
    Some(value.into_inner())
}

fn count(value: &Spanned<i64>, key: &str, issues: &mut Vec<ConfigIssue>) -> Option<u32> {
    let n = *value.get_ref();
    let counted = u32::try_from(n).ok();
    if counted.is_none() {
        issues.push(ConfigIssue::new(
            value.span(),
            format!("`{key}` must be a count of processes, 0 or more, found `{n}`"),
        ));
    }
    counted
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::test_support::{config, issues_of, try_config};

    fn valid(text: &str) -> ProcessSpec {
        config::<ProcessConfig>(text)
            .validate(&mut Vec::new())
            .unwrap()
    }

    #[test]
    fn full_and_minimal_configs() {
        let spec = valid(
            "name = \"postgres\"\ncmdline = \"-D /var/lib/pg\"\nuser = \"pg\"\nmin = 2\nmax = 8\nmax_cpu = 90\nmax_memory = \"2GB\"",
        );
        assert_eq!(spec.name.as_deref(), Some("postgres"));
        assert!(
            spec.cmdline
                .as_ref()
                .unwrap()
                .is_match("postgres -D /var/lib/pg")
        );
        assert_eq!((spec.min, spec.max), (2, Some(8)));
        assert_eq!(spec.max_cpu, Some(90.0));
        assert_eq!(spec.max_memory, Some(2_000_000_000));
        assert_eq!(
            spec.target(),
            "postgres, cmdline `-D /var/lib/pg` (user pg)"
        );

        let spec = valid("cmdline = \"node .*server\\\\.js\"");
        assert_eq!((spec.min, spec.max), (1, None));
        assert_eq!(spec.target(), "cmdline `node .*server\\.js`");

        let spec = valid("name = \"crond\"\nmin = 0\nmax = 0\nmax_cpu = 12.5");
        assert_eq!((spec.min, spec.max, spec.max_cpu), (0, Some(0), Some(12.5)));
    }

    #[test]
    fn invalid_values_are_located() {
        let text = "name = \"\"\ncmdline = \"[\"\nuser = \" \"\nmin = -1\nmax = 5000000000\nmax_cpu = 0.0\nmax_memory = \"2 gigs\"";
        let issues = issues_of(text, ProcessConfig::validate);
        let got: Vec<(&str, &str)> = issues
            .iter()
            .map(|i| (&text[i.span.clone()], i.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("\"\"", "`name` must not be empty"),
                (
                    "\"[\"",
                    "`cmdline`: `[` is not a valid regex: unclosed character class"
                ),
                ("\" \"", "`user` must not be empty"),
                (
                    "-1",
                    "`min` must be a count of processes, 0 or more, found `-1`"
                ),
                (
                    "5000000000",
                    "`max` must be a count of processes, 0 or more, found `5000000000`"
                ),
                (
                    "0.0",
                    "`max_cpu` must be a percentage greater than zero, found `0`"
                ),
                (
                    "\"2 gigs\"",
                    "`max_memory`: expected a size like `500MB`, `2GB` or `1GiB`, found `2 gigs`"
                ),
            ]
        );

        let text = "name = \"x\"\nmin = 3\nmax = 2";
        let issues = issues_of(text, ProcessConfig::validate);
        assert_eq!(issues.len(), 1);
        assert_eq!(
            issues[0].message,
            "`max` (2) must not be less than `min` (3)"
        );
        assert_eq!(&text[issues[0].span.clone()], "2");

        let text = "user = \"root\"";
        let issues = issues_of(text, ProcessConfig::validate);
        assert_eq!(issues.len(), 1);
        assert_eq!(
            issues[0].message,
            "a process check needs `name` (the process name) or `cmdline` (a regex over the command line)"
        );
        assert_eq!(&text[issues[0].span.clone()], text);

        let text = "name = \"x\"\nmax_memory = \"0MB\"";
        let issues = issues_of(text, ProcessConfig::validate);
        assert_eq!(issues[0].message, "`max_memory` must be greater than zero");
    }

    #[test]
    fn unknown_and_mistyped_keys_are_rejected() {
        let err = try_config::<ProcessConfig>("name = \"x\"\nmax_mem = \"1GB\"").unwrap_err();
        assert!(
            err.message().starts_with("unknown field `max_mem`"),
            "{err}"
        );
        let text = "name = \"x\"\nmin = \"one\"";
        let err = try_config::<ProcessConfig>(text).unwrap_err();
        assert_eq!(&text[err.span().unwrap()], "\"one\"");
    }
}
