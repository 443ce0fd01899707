//! The `heartbeat` check: a passive check fed by pings (`klaxon ping JOB`, `/ping/JOB`).
//! This module owns its config (`grace`), validation, and [`evaluate`], the pure rule
//! that says whether a ping is overdue; the agent keeps the pings and decides when to
//! ask, so there is no runtime here.

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use toml::Spanned;

use crate::validate::{self, ConfigIssue};
use crate::{BuildError, CheckPlugin, Outcome, Passive, Severity, Shared, text};

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

impl CheckPlugin for HeartbeatConfig {
    type Spec = HeartbeatSpec;
    type Runtime = Passive;

    const ACTIVE: bool = false;

    fn build(_spec: &HeartbeatSpec, _shared: &Shared) -> Result<Passive, BuildError> {
        Err(BuildError::Unsupported("heartbeat"))
    }

    /// Checks every value, pushing each problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<HeartbeatSpec> {
        let grace = match &self.grace {
            None => Duration::ZERO,
            Some(g) => validate::duration(g, "grace", issues)?,
        };
        Some(HeartbeatSpec { grace })
    }
}

/// Judges a heartbeat job at `now`, given its latest ping and the latest time its
/// schedule expected one (its last fire at or before `now`).
///
/// A ping counts for a fire when it arrives at or after it. The job is late once `now`
/// is past `last_expected_fire + grace` with no ping since that fire: critical,
/// `no ping since FIRE (expected by FIRE+GRACE)`, with the last ping (or `never pinged`)
/// as output. Before that it is ok: `pinged at PING` when the ping came, `waiting for a
/// ping, due by FIRE+GRACE` while it may still come. The agent evaluates when a ping
/// arrives and when a fire's grace runs out; times are written in RFC 3339, UTC.
///
/// Judging runs nothing, so the outcome's `duration` is zero and it has no metrics.
pub fn evaluate(
    spec: &HeartbeatSpec,
    last_ping: Option<SystemTime>,
    last_expected_fire: SystemTime,
    now: SystemTime,
) -> Outcome {
    let due = last_expected_fire
        .checked_add(spec.grace)
        .unwrap_or(last_expected_fire);
    let time = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    match last_ping {
        Some(ping) if ping >= last_expected_fire => Outcome::new(
            Severity::Ok,
            format!("pinged at {}", time(ping)),
            Duration::ZERO,
        ),
        _ if now <= due => Outcome::new(
            Severity::Ok,
            format!("waiting for a ping, due by {}", time(due)),
            Duration::ZERO,
        ),
        last => Outcome::new(
            Severity::Critical,
            format!(
                "no ping since {} (expected by {})",
                time(last_expected_fire),
                time(due)
            ),
            Duration::ZERO,
        )
        .with_output(match last {
            Some(ping) => format!("last ping at {}", time(ping)),
            None => "never pinged".to_owned(),
        }),
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
    fn late_only_after_the_grace_without_a_ping_since_the_fire() {
        let at = |rfc: &str| humantime::parse_rfc3339(rfc).unwrap();
        let spec = HeartbeatSpec {
            grace: Duration::from_secs(3600),
        };
        let fire = at("2026-03-29T03:00:00Z");
        let before = Some(at("2026-03-28T03:12:00Z"));
        let after = Some(at("2026-03-29T03:20:00Z"));
        let late = "no ping since 2026-03-29T03:00:00Z (expected by 2026-03-29T04:00:00Z)";
        // The last ping, now, and the severity, summary and output expected.
        type Row<'a> = (
            Option<SystemTime>,
            &'a str,
            Severity,
            &'a str,
            Option<&'a str>,
        );
        let table: [Row; 8] = [
            // A ping after the fire: ok, at any time.
            (
                after,
                "2026-03-29T03:30:00Z",
                Severity::Ok,
                "pinged at 2026-03-29T03:20:00Z",
                None,
            ),
            (
                after,
                "2026-03-29T09:00:00Z",
                Severity::Ok,
                "pinged at 2026-03-29T03:20:00Z",
                None,
            ),
            // A ping exactly at the fire counts.
            (
                Some(fire),
                "2026-03-29T05:00:00Z",
                Severity::Ok,
                "pinged at 2026-03-29T03:00:00Z",
                None,
            ),
            // Only an older ping: fine within the grace, up to its last second.
            (
                before,
                "2026-03-29T03:30:00Z",
                Severity::Ok,
                "waiting for a ping, due by 2026-03-29T04:00:00Z",
                None,
            ),
            (
                before,
                "2026-03-29T04:00:00Z",
                Severity::Ok,
                "waiting for a ping, due by 2026-03-29T04:00:00Z",
                None,
            ),
            // Past it: late.
            (
                before,
                "2026-03-29T04:00:01Z",
                Severity::Critical,
                late,
                Some("last ping at 2026-03-28T03:12:00Z"),
            ),
            (
                None,
                "2026-03-29T04:30:00Z",
                Severity::Critical,
                late,
                Some("never pinged"),
            ),
            (
                None,
                "2026-03-29T03:59:00Z",
                Severity::Ok,
                "waiting for a ping, due by 2026-03-29T04:00:00Z",
                None,
            ),
        ];
        for (ping, now, severity, summary, output) in table {
            let r = evaluate(&spec, ping, fire, at(now));
            assert_eq!(
                (r.severity, r.summary.as_str(), r.output.as_deref()),
                (severity, summary, output),
                "ping {ping:?} now {now}"
            );
            // Judging is no try: it takes no time and measures nothing.
            assert_eq!((r.duration, r.metrics.len()), (Duration::ZERO, 0));
        }

        // No grace: late from the first second after the fire.
        let strict = HeartbeatSpec {
            grace: Duration::ZERO,
        };
        let r = evaluate(&strict, before, fire, at("2026-03-29T03:00:01Z"));
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (
                Severity::Critical,
                "no ping since 2026-03-29T03:00:00Z (expected by 2026-03-29T03:00:00Z)"
            )
        );
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
