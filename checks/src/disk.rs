//! The `disk` check: its config (`path`, `min_free` as a percentage or a size),
//! validation, and the runtime that asks `statvfs` how much of the file system holding
//! `path` an unprivileged user may still fill.
//!
//! A measured file system is reported with the metrics `free_bytes`, `total_bytes` and
//! `free_percent` (the last only when the file system has a size); `min_free` is the
//! critical range of the one it limits.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::time::Instant;
use toml::Spanned;

use crate::validate::{self, ConfigIssue};
use crate::{BuildError, CheckPlugin, Metric, Outcome, Probe, Severity, Shared, text};

/// The `[jobs.NAME.check]` table of `type = "disk"`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// Any path on the file system to watch; `~` is expanded.
    pub path: Spanned<String>,
    /// `"10%"`, or a size like `"5GB"` (see [`MinFree`]).
    pub min_free: Spanned<String>,
}

/// How much free space the file system must keep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MinFree {
    /// Percent of the file system's size, more than 0 and less than 100.
    Percent(f64),
    /// Bytes: decimal units (`KB`, `MB`, `GB`, `TB`: powers of 1000) or binary ones
    /// (`KiB`, `MiB`, `GiB`, `TiB`: powers of 1024).
    Bytes(u64),
}

/// A validated `disk` check.
#[derive(Clone, Debug, PartialEq)]
pub struct DiskSpec {
    /// Absolute, `~` expanded.
    pub path: PathBuf,
    pub min_free: MinFree,
}

impl DiskSpec {
    /// The path watched.
    pub fn target(&self) -> String {
        self.path.display().to_string()
    }
}

impl MinFree {
    /// `10%` or `5.0 GB`, as summaries write the limit.
    pub fn describe(self) -> String {
        match self {
            MinFree::Percent(p) => format!("{}%", text::number(p)),
            MinFree::Bytes(b) => text::bytes(b),
        }
    }
}

impl CheckPlugin for DiskConfig {
    type Spec = DiskSpec;
    type Runtime = DiskCheck;

    fn build(spec: &DiskSpec, _shared: &Shared) -> Result<DiskCheck, BuildError> {
        Ok(DiskCheck::new(spec.clone()))
    }

    /// Checks every value, pushing each problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<DiskSpec> {
        let path = validate::absolute_path(&self.path, "path", issues);
        let min_free = min_free(&self.min_free, issues);
        Some(DiskSpec {
            path: path?,
            min_free: min_free?,
        })
    }
}

fn min_free(raw: &Spanned<String>, issues: &mut Vec<ConfigIssue>) -> Option<MinFree> {
    let text = raw.get_ref();
    if let Some(percent) = validate::parse_percent(text) {
        if percent > 0.0 && percent < 100.0 {
            return Some(MinFree::Percent(percent));
        }
        issues.push(ConfigIssue::new(
            raw.span(),
            format!("`min_free`: `{text}` must be more than 0% and less than 100%"),
        ));
        return None;
    }
    match validate::parse_size(text) {
        Some(0) => {
            issues.push(ConfigIssue::new(
                raw.span(),
                "`min_free` must be greater than zero",
            ));
            None
        }
        Some(bytes) => Some(MinFree::Bytes(bytes)),
        None => {
            issues.push(ConfigIssue::new(
                raw.span(),
                format!(
                    "`min_free`: expected a percentage like `10%` or a size like `5GB`, \
                     found `{text}`"
                ),
            ));
            None
        }
    }
}

/// The space of one file system, in bytes, as `statvfs` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskUsage {
    /// What unprivileged users may still write (`f_bavail × f_frsize`): the blocks
    /// reserved for root are not free to the services a check watches.
    pub free: u64,
    /// The file system's size (`f_blocks × f_frsize`).
    pub total: u64,
}

impl DiskUsage {
    /// `free` as a percentage of `total`; `None` for a file system without a size
    /// (`/proc` and other virtual ones).
    pub fn free_percent(self) -> Option<f64> {
        (self.total > 0).then(|| self.free as f64 * 100.0 / self.total as f64)
    }

    /// Whether the free space is below `min`.
    pub fn is_below(self, min: MinFree) -> bool {
        match min {
            MinFree::Bytes(b) => self.free < b,
            MinFree::Percent(p) => self.free_percent().is_some_and(|free| free < p),
        }
    }
}

/// A `disk` check ready to run.
///
/// Each try's `statvfs` runs on [`crate::blocking::CHECKS`]. A try whose call has not
/// returned is remembered: no new one starts while it is stuck (see [`DiskCheck::run_until`]).
#[derive(Debug)]
pub struct DiskCheck {
    spec: DiskSpec,
    last: Arc<Mutex<Option<Try>>>,
}

/// The last `statvfs` started: when, its answer once it has one, and whether a run
/// already said it is stuck.
#[derive(Debug)]
struct Try {
    since: SystemTime,
    answer: Answer,
    reported: bool,
}

type Answer = tokio::sync::watch::Receiver<Option<Result<DiskUsage, String>>>;

/// What a run does about the last try.
enum Next {
    /// Waits for a new try's answer, for at most the timeout.
    Fresh(Answer),
    /// Says that the last try is still stuck, and since when.
    Stuck(SystemTime),
    /// Waits for the stuck try's answer (it was already reported), until interrupted.
    Wait(Answer),
}

impl DiskCheck {
    /// Opens nothing: every run asks the file system afresh.
    pub fn new(spec: DiskSpec) -> Self {
        Self {
            spec,
            last: Arc::new(Mutex::new(None)),
        }
    }

    /// The validated settings this check runs with.
    pub fn spec(&self) -> &DiskSpec {
        &self.spec
    }

    /// Reads the file system's usage; the reason, ready for a summary, when it cannot.
    ///
    /// `statvfs` blocks (for as long as a hung network mount likes): call it from a
    /// blocking thread, as [`DiskCheck::run`] does.
    // `c_ulong` and `fsblkcnt_t` are u64 here but u32 on some platforms.
    #[allow(clippy::useless_conversion)]
    pub fn usage(&self) -> Result<DiskUsage, String> {
        let path = &self.spec.path;
        let stat = nix::sys::statvfs::statvfs(path.as_path())
            .map_err(|e| format!("cannot stat `{}`: {}", path.display(), e.desc()))?;
        let frsize = u64::from(stat.fragment_size());
        let (blocks, available) = (u64::from(stat.blocks()), u64::from(stat.blocks_available()));
        Ok(DiskUsage {
            free: available.saturating_mul(frsize),
            total: blocks.saturating_mul(frsize),
        })
    }
}

impl Probe for DiskCheck {
    /// Measures once; `timeout` bounds the wait for the file system to answer.
    async fn run(&self, timeout: Duration) -> Outcome {
        self.run_until(timeout, std::future::pending()).await
    }

    /// Measures once, unless the last try's `statvfs` has still not returned (a hung
    /// network mount): then no new thread is started. The first run to find it stuck is
    /// critical, `still stuck in statfs since TIME`; the runs after that wait for the
    /// stuck call to return (and judge its answer) or for `interrupt`.
    async fn run_until(
        &self,
        timeout: Duration,
        interrupt: impl std::future::Future<Output = ()>,
    ) -> Outcome {
        let start = Instant::now();
        match self.next() {
            Next::Fresh(mut answer) => {
                match tokio::time::timeout(timeout, answer.wait_for(Option::is_some)).await {
                    Err(_) => Outcome::new(
                        Severity::Critical,
                        text::timed_out(timeout),
                        start.elapsed(),
                    ),
                    Ok(answered) => self.answered(answered.map(|a| a.clone()), start),
                }
            }
            Next::Stuck(since) => Outcome::new(
                Severity::Critical,
                format!(
                    "still stuck in statfs since {}",
                    humantime::format_rfc3339_seconds(since)
                ),
                start.elapsed(),
            ),
            Next::Wait(mut answer) => {
                tokio::select! {
                    answered = answer.wait_for(Option::is_some) => {
                        self.answered(answered.map(|a| a.clone()), start)
                    }
                    () = interrupt => Outcome::new(
                        Severity::Unknown,
                        "interrupted while still stuck in statfs",
                        start.elapsed(),
                    )
                    .mark_interrupted(),
                }
            }
        }
    }
}

impl DiskCheck {
    /// Starts a try unless the last one is stuck.
    fn next(&self) -> Next {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(stuck) = last.as_mut().filter(|t| t.answer.borrow().is_none()) {
            if stuck.reported {
                return Next::Wait(stuck.answer.clone());
            }
            stuck.reported = true;
            return Next::Stuck(stuck.since);
        }
        let (tell, answer) = tokio::sync::watch::channel(None);
        let check = DiskCheck::new(self.spec.clone());
        // The thread cannot be stopped: a try that outlives its run's timeout is kept
        // in `last` until it returns.
        crate::blocking::CHECKS.spawn(move || {
            let _ = tell.send(Some(check.usage()));
        });
        *last = Some(Try {
            since: SystemTime::now(),
            answer: answer.clone(),
            reported: false,
        });
        Next::Fresh(answer)
    }

    fn answered(
        &self,
        answer: Result<Option<Result<DiskUsage, String>>, tokio::sync::watch::error::RecvError>,
        start: Instant,
    ) -> Outcome {
        let elapsed = start.elapsed();
        match answer {
            Ok(Some(Ok(usage))) => self.judge(usage, elapsed),
            Ok(Some(Err(reason))) => Outcome::new(Severity::Critical, reason, elapsed),
            Ok(None) | Err(_) => {
                Outcome::new(Severity::Unknown, "the measuring thread failed", elapsed)
            }
        }
    }

    /// `12.3 GB free of 250.0 GB (4.9%) on /`, critical with ` (min 10%)` when below
    /// `min_free`.
    pub fn judge(&self, usage: DiskUsage, elapsed: Duration) -> Outcome {
        let path = self.spec.path.display();
        let metrics = self.metrics(usage);
        let Some(percent) = usage.free_percent() else {
            return Outcome::new(
                Severity::Unknown,
                format!("the file system of `{path}` reports no size"),
                elapsed,
            )
            .with_metrics(metrics);
        };
        let summary = format!(
            "{} free of {} ({percent:.1}%) on {path}",
            text::bytes(usage.free),
            text::bytes(usage.total)
        );
        let outcome = if usage.is_below(self.spec.min_free) {
            let summary = format!("{summary} (min {})", self.spec.min_free.describe());
            Outcome::new(Severity::Critical, summary, elapsed)
        } else {
            Outcome::new(Severity::Ok, summary, elapsed)
        };
        outcome.with_metrics(metrics)
    }

    /// `free_bytes`, `total_bytes` and, when the file system has a size, `free_percent`;
    /// `min_free` is the critical range (`N:`, below N is critical) of the one it limits.
    fn metrics(&self, usage: DiskUsage) -> Vec<Metric> {
        let mut free = Metric::new("free_bytes", usage.free as f64)
            .with_unit("B")
            .with_min(0.0)
            .with_max(usage.total as f64);
        if let MinFree::Bytes(min) = self.spec.min_free {
            free.crit = Some(format!("{min}:"));
        }
        let total = Metric::new("total_bytes", usage.total as f64)
            .with_unit("B")
            .with_min(0.0);
        let mut metrics = vec![free, total];
        if let Some(percent) = usage.free_percent() {
            let mut share = Metric::new("free_percent", percent)
                .with_unit("%")
                .with_min(0.0)
                .with_max(100.0);
            if let MinFree::Percent(min) = self.spec.min_free {
                share.crit = Some(format!("{}:", text::number(min)));
            }
            metrics.push(share);
        }
        metrics
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::test_support::{config, issues_of, try_config};

    fn valid(text: &str) -> DiskSpec {
        config::<DiskConfig>(text)
            .validate(&mut Vec::new())
            .unwrap()
    }

    #[test]
    fn percent_and_size() {
        let spec = valid("path = \"/\"\nmin_free = \"10%\"");
        assert_eq!(spec.min_free, MinFree::Percent(10.0));
        assert_eq!(spec.target(), "/");
        let spec = valid("path = \"/var/lib\"\nmin_free = \"5GB\"");
        assert_eq!(spec.min_free, MinFree::Bytes(5_000_000_000));
        let spec = valid("path = \"/\"\nmin_free = \"512 MiB\"");
        assert_eq!(spec.min_free, MinFree::Bytes(512 << 20));
        if let Some(home) = std::env::home_dir() {
            let spec = valid("path = \"~/data\"\nmin_free = \"1%\"");
            assert_eq!(spec.path, home.join("data"));
        }
    }

    #[test]
    fn invalid_values_are_located() {
        let text = "path = \"data\"\nmin_free = \"lots\"";
        let issues = issues_of(text, DiskConfig::validate);
        let got: Vec<(&str, &str)> = issues
            .iter()
            .map(|i| (&text[i.span.clone()], i.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "\"data\"",
                    "`path` must be absolute or start with `~/`, found `data`"
                ),
                (
                    "\"lots\"",
                    "`min_free`: expected a percentage like `10%` or a size like `5GB`, found `lots`"
                ),
            ]
        );
        for (value, message) in [
            (
                "150%",
                "`min_free`: `150%` must be more than 0% and less than 100%",
            ),
            (
                "0%",
                "`min_free`: `0%` must be more than 0% and less than 100%",
            ),
            ("0GB", "`min_free` must be greater than zero"),
            (
                "10",
                "`min_free`: expected a percentage like `10%` or a size like `5GB`, found `10`",
            ),
        ] {
            let text = format!("path = \"/\"\nmin_free = \"{value}\"");
            let issues = issues_of(&text, DiskConfig::validate);
            let messages: Vec<&str> = issues.iter().map(|i| i.message.as_str()).collect();
            assert_eq!(messages, [message]);
            assert_eq!(&text[issues[0].span.clone()], format!("\"{value}\""));
        }
    }

    fn check(path: &std::path::Path, min_free: MinFree) -> DiskCheck {
        DiskCheck::new(DiskSpec {
            path: path.to_path_buf(),
            min_free,
        })
    }

    /// What `df` would say for the same file system, from `statvfs` read here.
    fn expected_usage(path: &std::path::Path) -> DiskUsage {
        let stat = nix::sys::statvfs::statvfs(path).unwrap();
        let frsize = stat.fragment_size() as u64;
        DiskUsage {
            free: stat.blocks_available() as u64 * frsize,
            total: stat.blocks() as u64 * frsize,
        }
    }

    #[tokio::test]
    async fn measures_the_file_system_of_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        let usage = check(path, MinFree::Percent(1.0)).usage().unwrap();
        let expected = expected_usage(path);
        assert!(usage.total > 0);
        assert_eq!(usage.total, expected.total);
        // Other processes write meanwhile: allow a few MB of drift.
        assert!(
            usage.free.abs_diff(expected.free) < 64 << 20,
            "{usage:?} {expected:?}"
        );

        // A limit of one byte is always met; the summary names the path and the numbers.
        let r = check(path, MinFree::Bytes(1))
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        let suffix = format!(" on {}", path.display());
        assert!(r.summary.ends_with(&suffix), "{}", r.summary);
        assert!(
            r.summary
                .contains(&format!(" free of {} (", text::bytes(usage.total))),
            "{}",
            r.summary
        );

        // More free space than the disk has is never met.
        let too_much = usage.total.saturating_mul(2);
        let r = check(path, MinFree::Bytes(too_much))
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.severity, Severity::Critical);
        let suffix = format!(" on {} (min {})", path.display(), text::bytes(too_much));
        assert!(r.summary.ends_with(&suffix), "{}", r.summary);
    }

    #[tokio::test]
    async fn percent_limits_compare_with_the_free_share() {
        let dir = tempfile::tempdir().unwrap();
        let usage = expected_usage(dir.path());
        let percent = usage.free_percent().unwrap();
        // Below what is free: ok. Above it (when the disk is not nearly empty): critical.
        if percent > 2.0 {
            let r = check(dir.path(), MinFree::Percent(percent - 1.0))
                .run(Duration::from_secs(5))
                .await;
            assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        }
        if percent < 98.0 {
            let r = check(dir.path(), MinFree::Percent(percent + 1.0))
                .run(Duration::from_secs(5))
                .await;
            assert_eq!(r.severity, Severity::Critical, "{}", r.summary);
            assert!(r.summary.contains("%) on "), "{}", r.summary);
            assert!(r.summary.ends_with("%)"), "{}", r.summary);
        }
    }

    #[tokio::test]
    async fn a_missing_path_is_critical() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let r = check(&missing, MinFree::Percent(10.0))
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.severity, Severity::Critical);
        assert_eq!(
            r.summary,
            format!(
                "cannot stat `{}`: No such file or directory",
                missing.display()
            )
        );
    }

    #[test]
    fn summaries() {
        let c = check(std::path::Path::new("/"), MinFree::Percent(10.0));
        let usage = DiskUsage {
            free: 12_300_000_000,
            total: 250_000_000_000,
        };
        let r = c.judge(usage, Duration::ZERO);
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (
                Severity::Critical,
                "12.3 GB free of 250.0 GB (4.9%) on / (min 10%)"
            )
        );
        let c = check(std::path::Path::new("/"), MinFree::Bytes(5_000_000_000));
        let r = c.judge(usage, Duration::ZERO);
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Ok, "12.3 GB free of 250.0 GB (4.9%) on /")
        );
        let r = c.judge(DiskUsage { free: 0, total: 0 }, Duration::ZERO);
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Unknown, "the file system of `/` reports no size")
        );
        assert_eq!(MinFree::Percent(2.5).describe(), "2.5%");
    }

    #[test]
    fn unknown_and_missing_keys_are_rejected() {
        let err = try_config::<DiskConfig>("path = \"/\"\nmin_free = \"1%\"\nmax_used = \"90%\"")
            .unwrap_err();
        assert!(
            err.message().starts_with("unknown field `max_used`"),
            "{err}"
        );
        let err = try_config::<DiskConfig>("path = \"/\"").unwrap_err();
        assert!(
            err.message().starts_with("missing field `min_free`"),
            "{err}"
        );
    }

    #[test]
    fn judged_outcomes_carry_metrics_with_the_limit() {
        let usage = DiskUsage {
            free: 12_300_000_000,
            total: 250_000_000_000,
        };
        let r = check(std::path::Path::new("/"), MinFree::Percent(10.0))
            .judge(usage, Duration::from_millis(3));
        assert_eq!(r.duration, Duration::from_millis(3));
        assert_eq!(
            r.metrics,
            [
                Metric::new("free_bytes", 12_300_000_000.0)
                    .with_unit("B")
                    .with_min(0.0)
                    .with_max(250_000_000_000.0),
                Metric::new("total_bytes", 250_000_000_000.0)
                    .with_unit("B")
                    .with_min(0.0),
                Metric::new("free_percent", 4.92)
                    .with_unit("%")
                    .with_min(0.0)
                    .with_max(100.0)
                    .with_crit("10:"),
            ]
        );
        let r = check(std::path::Path::new("/"), MinFree::Bytes(5_000_000_000))
            .judge(usage, Duration::ZERO);
        assert_eq!(r.metrics[0].crit.as_deref(), Some("5000000000:"));
        assert_eq!(r.metrics[2].crit, None);
        // Without a size, no percentage.
        let r = check(std::path::Path::new("/proc"), MinFree::Percent(10.0))
            .judge(DiskUsage { free: 0, total: 0 }, Duration::ZERO);
        let names: Vec<&str> = r.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["free_bytes", "total_bytes"]);
    }

    #[tokio::test]
    async fn every_outcome_carries_its_duration() {
        let dir = tempfile::tempdir().unwrap();
        let start = std::time::Instant::now();
        let r = check(dir.path(), MinFree::Bytes(1))
            .run(Duration::from_secs(5))
            .await;
        let took = start.elapsed();
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        assert!(
            r.duration > Duration::ZERO && r.duration <= took,
            "{:?}",
            r.duration
        );
        assert_eq!(r.metrics.len(), 3);

        let start = std::time::Instant::now();
        let r = check(&dir.path().join("nope"), MinFree::Bytes(1))
            .run(Duration::from_secs(5))
            .await;
        let took = start.elapsed();
        assert_eq!(r.severity, Severity::Critical);
        assert!(
            r.duration > Duration::ZERO && r.duration <= took,
            "{:?}",
            r.duration
        );
        assert_eq!(r.metrics, []);
    }
}
