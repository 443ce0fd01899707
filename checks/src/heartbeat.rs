//! The `heartbeat` check: a passive check fed by pings (`klaxon ping JOB`, `/ping/JOB`).
//! This module owns its config (`grace`) and validation; the agent decides when a ping
//! is overdue, so there is no runtime here.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::text;
use crate::validate::{self, ConfigIssue};

/// The `[jobs.NAME.check]` table of `type = "heartbeat"`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// How late a ping may be after its expected time; `0s` when not set.
    pub grace: Option<Spanned<String>>,
}

/// A validated `heartbeat` check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatSpec {
    /// How late a ping may arrive after the job's scheduled time before it is missed.
    pub grace: Duration,
}

impl HeartbeatSpec {
    /// `pings with 1h grace`: there is no target beyond the pings themselves.
    pub fn target(&self) -> String {
        format!("pings with {} grace", text::duration(self.grace))
    }
}

impl HeartbeatConfig {
    /// Checks every value, pushing each problem to `issues`.
    pub fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<HeartbeatSpec> {
        let grace = match &self.grace {
            None => Duration::ZERO,
            Some(g) => validate::duration(g, "grace", issues)?,
        };
        Some(HeartbeatSpec { grace })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::test_support::{config, issues_of, try_config};

    #[test]
    fn grace_is_a_duration_defaulting_to_zero() {
        let spec = config::<HeartbeatConfig>("grace = \"1h\"")
            .validate(&mut Vec::new())
            .unwrap();
        assert_eq!(spec.grace, Duration::from_secs(3600));
        assert_eq!(spec.target(), "pings with 1h grace");
        let spec = config::<HeartbeatConfig>("")
            .validate(&mut Vec::new())
            .unwrap();
        assert_eq!(spec.grace, Duration::ZERO);
    }

    #[test]
    fn invalid_values_are_located() {
        let text = "grace = \"an hour\"";
        let issues = issues_of(text, HeartbeatConfig::validate);
        assert_eq!(issues.len(), 1);
        assert_eq!(&text[issues[0].span.clone()], "\"an hour\"");
        assert_eq!(
            issues[0].message,
            "`grace`: expected a duration like `30s`, `5m` or `1h30m`, found `an hour`"
        );
        let err = try_config::<HeartbeatConfig>("grace = \"1h\"\nevery = \"1d\"").unwrap_err();
        assert!(err.message().starts_with("unknown field `every`"), "{err}");
        let text = "grace = 60";
        let err = try_config::<HeartbeatConfig>(text).unwrap_err();
        assert_eq!(&text[err.span().unwrap()], "60");
    }
}
