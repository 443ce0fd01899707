//! The `file` check: its config (`path` as a file, a directory or a glob; `max_age`,
//! `min_size`, `max_size`, `min_count`, `exists`), validation, and the runtime that looks
//! at what matches and judges the newest match: "is the nightly backup fresh?".
//!
//! A directory stands for the files directly in it (subdirectories are not entered and
//! not counted); a glob for the files it matches. The newest match is the one with the
//! latest modification time; its age and size are judged, and the number of matches
//! against `min_count`. With `exists = false` the check is critical while anything
//! matches. Metrics: `age` (seconds), `size` (bytes) and `count`.
//!
//! Every look at the file system runs on [`crate::blocking::CHECKS`]; while one is still
//! stuck (a hung network mount) no new one starts, and runs say since when it is stuck.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use toml::Spanned;

use crate::validate::{self, ConfigIssue};
use crate::{BuildError, CheckPlugin, Metric, Outcome, Probe, Severity, Shared, text};

/// The `[jobs.NAME.check]` table of `type = "file"`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// A file, a directory or a glob (`~/backups/*.sql.gz`); `~` is expanded.
    pub path: Spanned<String>,
    /// The newest match must have been modified at most this long ago.
    #[serde(default)]
    pub max_age: Option<Spanned<String>>,
    /// The newest match must be at least this big.
    #[serde(default)]
    pub min_size: Option<Spanned<String>>,
    /// The newest match must be at most this big.
    #[serde(default)]
    pub max_size: Option<Spanned<String>>,
    /// At least this many files must match (default 1 for a directory or a glob).
    #[serde(default)]
    pub min_count: Option<Spanned<i64>>,
    /// `false`: critical while anything matches (default `true`).
    #[serde(default)]
    pub exists: Option<Spanned<bool>>,
}

/// What `path` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A file or a directory (which one is seen at run time).
    Path(PathBuf),
    /// A glob pattern over absolute paths.
    Glob(String),
}

/// A configured limit and how the config wrote it, for summaries.
#[derive(Clone, Debug, PartialEq)]
pub struct Limit<T> {
    pub value: T,
    pub written: String,
}

/// A validated `file` check.
#[derive(Clone, Debug, PartialEq)]
pub struct FileSpec {
    /// Absolute, `~` expanded.
    pub target: Target,
    /// `path` as written (`~/backups/*.gz`), for summaries.
    pub written: String,
    pub max_age: Option<Limit<Duration>>,
    pub min_size: Option<Limit<u64>>,
    pub max_size: Option<Limit<u64>>,
    /// `None`: one match is enough.
    pub min_count: Option<u64>,
    pub exists: bool,
}

impl FileSpec {
    /// The path or glob watched, as written.
    pub fn target(&self) -> String {
        self.written.clone()
    }
}

fn is_glob(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

impl CheckPlugin for FileConfig {
    type Spec = FileSpec;
    type Runtime = FileCheck;

    fn build(spec: &FileSpec, _shared: &Shared) -> Result<FileCheck, BuildError> {
        Ok(FileCheck::new(spec.clone()))
    }

    /// Checks every value, pushing each problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<FileSpec> {
        let before = issues.len();
        let target = validate::absolute_path(&self.path, "path", issues).and_then(|p| {
            let text = p.to_string_lossy().into_owned();
            if !is_glob(&text) {
                return Some(Target::Path(p));
            }
            match glob::Pattern::new(&text) {
                Ok(_) => Some(Target::Glob(text)),
                Err(e) => {
                    issues.push(ConfigIssue::new(
                        self.path.span(),
                        format!(
                            "`path`: `{}` is not a valid glob: {}",
                            self.path.get_ref(),
                            e.msg
                        ),
                    ));
                    None
                }
            }
        });
        let max_age = self.max_age.as_ref().and_then(|raw| {
            validate::positive_duration(raw, "max_age", issues).map(|value| Limit {
                value,
                written: raw.get_ref().trim().to_owned(),
            })
        });
        let size = |raw: &Option<Spanned<String>>, key: &str, issues: &mut Vec<ConfigIssue>| {
            raw.as_ref().and_then(|raw| {
                validate::size(raw, key, issues).map(|value| Limit {
                    value,
                    written: text::bytes(value),
                })
            })
        };
        let min_size = size(&self.min_size, "min_size", issues);
        let max_size = size(&self.max_size, "max_size", issues);
        if let (Some(min), Some(max), Some(raw)) = (&min_size, &max_size, &self.max_size)
            && max.value < min.value
        {
            issues.push(ConfigIssue::new(
                raw.span(),
                format!(
                    "`max_size` ({}) is less than `min_size` ({})",
                    max.written, min.written
                ),
            ));
        }
        let min_count = validate::count(&self.min_count, "min_count", issues).flatten();
        let exists = self.exists.as_ref().is_none_or(|e| *e.get_ref());
        if !exists {
            let limits = [
                ("max_age", self.max_age.as_ref().map(Spanned::span)),
                ("min_size", self.min_size.as_ref().map(Spanned::span)),
                ("max_size", self.max_size.as_ref().map(Spanned::span)),
                ("min_count", self.min_count.as_ref().map(Spanned::span)),
            ];
            for (key, span) in limits {
                if let Some(span) = span {
                    issues.push(ConfigIssue::new(
                        span,
                        format!("`{key}` judges what exists: it cannot go with `exists = false`"),
                    ));
                }
            }
        }
        if issues.len() > before {
            return None;
        }
        Some(FileSpec {
            target: target?,
            written: self.path.get_ref().clone(),
            max_age,
            min_size,
            max_size,
            min_count,
            exists,
        })
    }
}

/// One matching file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    pub path: PathBuf,
    pub modified: SystemTime,
    pub size: u64,
}

/// What a look at the file system found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// `path` (not a glob) does not exist.
    Missing,
    /// A file, the files of a directory or of a glob: how many, and the newest.
    Files {
        /// `path` is a directory.
        dir: bool,
        count: u64,
        newest: Option<Match>,
    },
}

/// Looks at `target` (blocking): what matches, or why it cannot be read.
pub fn scan(target: &Target) -> Result<Found, String> {
    let cannot = |path: &Path, e: std::io::Error| format!("cannot read `{}`: {e}", path.display());
    let mut count = 0;
    let mut newest: Option<Match> = None;
    let mut add = |path: PathBuf, meta: std::fs::Metadata| {
        count += 1;
        // A file system without modification times reads as the epoch: very old.
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if newest.as_ref().is_none_or(|n| modified > n.modified) {
            newest = Some(Match {
                path,
                modified,
                size: meta.len(),
            });
        }
    };
    let dir = match target {
        Target::Path(path) => {
            let meta = match std::fs::metadata(path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
                Err(e) => return Err(cannot(path, e)),
            };
            if meta.is_dir() {
                for entry in std::fs::read_dir(path).map_err(|e| cannot(path, e))? {
                    let entry = entry.map_err(|e| cannot(path, e))?;
                    let file = entry.path();
                    // Gone since it was listed, or a dangling link: not a match.
                    if let Ok(meta) = std::fs::metadata(&file)
                        && !meta.is_dir()
                    {
                        add(file, meta);
                    }
                }
                true
            } else {
                add(path.clone(), meta);
                false
            }
        }
        Target::Glob(pattern) => {
            let paths = glob::glob(pattern).map_err(|e| format!("`{pattern}`: {}", e.msg))?;
            for path in paths {
                let path = path.map_err(|e| {
                    let at = e.path().to_path_buf();
                    cannot(&at, e.into())
                })?;
                if let Ok(meta) = std::fs::metadata(&path)
                    && !meta.is_dir()
                {
                    add(path, meta);
                }
            }
            false
        }
    };
    Ok(Found::Files { dir, count, newest })
}

/// A `file` check ready to run.
#[derive(Debug)]
pub struct FileCheck {
    spec: FileSpec,
    busy: crate::blocking::OneAtATime,
}

impl FileCheck {
    /// Opens nothing: every run looks afresh.
    pub fn new(spec: FileSpec) -> Self {
        Self {
            spec,
            busy: Default::default(),
        }
    }

    /// Judges what a look found, `now`.
    pub fn judge(&self, found: &Found, now: SystemTime, elapsed: Duration) -> Outcome {
        let spec = &self.spec;
        let written = &spec.written;
        let (dir, count, newest) = match found {
            Found::Missing => {
                let severity = if spec.exists {
                    Severity::Critical
                } else {
                    Severity::Ok
                };
                return Outcome::new(severity, format!("`{written}` does not exist"), elapsed)
                    .with_metric(self.count_metric(0));
            }
            Found::Files { dir, count, newest } => (*dir, *count, newest.as_ref()),
        };
        let many = dir || matches!(spec.target, Target::Glob(_));
        let none = || {
            if dir {
                format!("no files in `{written}`")
            } else {
                format!("no file matches `{written}`")
            }
        };
        let Some(newest) = newest else {
            let bad = if spec.exists {
                spec.min_count.unwrap_or(1) > 0
            } else {
                false
            };
            let severity = if bad {
                Severity::Critical
            } else {
                Severity::Ok
            };
            let mut summary = none();
            if bad && spec.min_count.is_some() {
                summary = format!("{summary} (min {})", spec.min_count.unwrap_or(1));
            }
            return Outcome::new(severity, summary, elapsed).with_metric(self.count_metric(0));
        };
        let age = now.duration_since(newest.modified).unwrap_or_default();
        let shown = home_to_tilde(&newest.path);
        let metrics = vec![
            self.age_metric(age),
            self.size_metric(newest.size),
            self.count_metric(count),
        ];
        if !spec.exists {
            let summary = if many {
                format!(
                    "{} in `{written}`, newest {} old: {shown}",
                    files(count),
                    compact(age)
                )
            } else {
                format!("`{written}` exists ({} old)", compact(age))
            };
            return Outcome::new(Severity::Critical, summary, elapsed).with_metrics(metrics);
        }
        let mut bad = false;
        let mut flag = |failed: bool, text: String| {
            bad |= failed;
            if failed { text } else { String::new() }
        };
        let age_note = spec.max_age.as_ref().map_or(String::new(), |max| {
            flag(age > max.value, format!(" (max {})", max.written))
        });
        let mut size_note = spec.min_size.as_ref().map_or(String::new(), |min| {
            flag(newest.size < min.value, format!(" (min {})", min.written))
        });
        if let Some(max) = &spec.max_size {
            size_note += &flag(newest.size > max.value, format!(" (max {})", max.written));
        }
        let count_note = spec.min_count.map_or(String::new(), |min| {
            flag(count < min, format!(" (min {min})"))
        });
        let age_text = format!("{} old{age_note}", compact(age));
        let size_text = format!("{}{size_note}", text::bytes(newest.size));
        let summary = if many {
            format!(
                "newest of {}{count_note} is {age_text}, {size_text}: {shown}",
                files(count)
            )
        } else {
            format!("{shown} is {age_text}, {size_text}")
        };
        let severity = if bad {
            Severity::Critical
        } else {
            Severity::Ok
        };
        Outcome::new(severity, summary, elapsed).with_metrics(metrics)
    }

    fn age_metric(&self, age: Duration) -> Metric {
        let mut m = Metric::new("age", age.as_secs_f64().floor())
            .with_unit("s")
            .with_min(0.0);
        if let Some(max) = &self.spec.max_age {
            m.crit = Some(max.value.as_secs().to_string());
        }
        m
    }

    fn size_metric(&self, size: u64) -> Metric {
        let mut m = Metric::new("size", size as f64)
            .with_unit("B")
            .with_min(0.0);
        let min = self.spec.min_size.as_ref().map(|l| l.value);
        let max = self.spec.max_size.as_ref().map(|l| l.value);
        m.crit = match (min, max) {
            (Some(min), Some(max)) => Some(format!("{min}:{max}")),
            (Some(min), None) => Some(format!("{min}:")),
            (None, Some(max)) => Some(max.to_string()),
            (None, None) => None,
        };
        m
    }

    fn count_metric(&self, count: u64) -> Metric {
        let mut m = Metric::new("count", count as f64).with_min(0.0);
        if let Some(min) = self.spec.min_count {
            m.crit = Some(format!("{min}:"));
        }
        m
    }
}

fn files(n: u64) -> String {
    if n == 1 {
        "1 file".into()
    } else {
        format!("{n} files")
    }
}

/// A path under the home directory as `~/…`, the way configs write it.
fn home_to_tilde(path: &Path) -> String {
    if let Some(home) = std::env::home_dir()
        && !home.as_os_str().is_empty()
        && home != Path::new("/")
        && let Ok(rest) = path.strip_prefix(&home)
    {
        return format!("~/{}", rest.display());
    }
    path.display().to_string()
}

/// An age in its two largest units: `2d 3h`, `5h 12m`, `3m 4s`, `12s`.
pub(crate) fn compact(d: Duration) -> String {
    let secs = d.as_secs();
    let parts = [
        (secs / 86_400, "d"),
        (secs / 3600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    let first = parts.iter().position(|(n, _)| *n > 0).unwrap_or(3);
    let mut out = format!("{}{}", parts[first].0, parts[first].1);
    if let Some((n, unit)) = parts.get(first + 1)
        && *n > 0
    {
        out += &format!(" {n}{unit}");
    }
    out
}

impl Probe for FileCheck {
    /// Looks once; `timeout` bounds the wait for the file system to answer.
    async fn run(&self, timeout: Duration) -> Outcome {
        let target = self.spec.target.clone();
        let judge = |found: Found, elapsed| self.judge(&found, SystemTime::now(), elapsed);
        self.busy
            .try_within(&self.spec.written, timeout, move || scan(&target), judge)
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::test_support::{config, located};
    use filetime::FileTime;

    const HOUR: u64 = 3600;

    fn valid(text: &str) -> FileSpec {
        config::<FileConfig>(text)
            .validate(&mut Vec::new())
            .unwrap()
    }

    /// Writes `bytes` bytes to `dir/name`, last modified `age` ago.
    fn file(dir: &Path, name: &str, bytes: usize, age: Duration) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, vec![b'x'; bytes]).unwrap();
        let at = FileTime::from_system_time(SystemTime::now() - age);
        filetime::set_file_mtime(&path, at).unwrap();
        path
    }

    async fn run(text: &str) -> Outcome {
        let spec = valid(text);
        FileCheck::new(spec).run(Duration::from_secs(5)).await
    }

    #[test]
    fn compact_ages() {
        assert_eq!(
            compact(Duration::from_secs(2 * 86_400 + 3 * 3600 + 59)),
            "2d 3h"
        );
        assert_eq!(compact(Duration::from_secs(2 * 86_400 + 59)), "2d");
        assert_eq!(compact(Duration::from_secs(5 * 3600 + 12 * 60)), "5h 12m");
        assert_eq!(compact(Duration::from_secs(184)), "3m 4s");
        assert_eq!(compact(Duration::from_secs(12)), "12s");
        assert_eq!(compact(Duration::ZERO), "0s");
    }

    #[test]
    fn values_and_globs() {
        let spec = valid("path = \"/srv/backups/*.sql.gz\"\nmax_age = \"26h\"");
        assert_eq!(spec.target, Target::Glob("/srv/backups/*.sql.gz".into()));
        assert_eq!(spec.max_age.unwrap().value, Duration::from_secs(26 * HOUR));
        assert!(spec.exists);
        let spec = valid("path = \"/srv/db\"\nmin_size = \"1MB\"\nmax_size = \"2GiB\"");
        assert_eq!(spec.target, Target::Path("/srv/db".into()));
        assert_eq!(spec.min_size.unwrap().value, 1_000_000);
        assert_eq!(spec.max_size.unwrap().value, 2 << 30);
        let spec = valid("path = \"/tmp/lock\"\nexists = false");
        assert!(!spec.exists);
        if let Some(home) = std::env::home_dir() {
            let spec = valid("path = \"~/backups\"\nmin_count = 3");
            assert_eq!(spec.target, Target::Path(home.join("backups")));
            assert_eq!(spec.min_count, Some(3));
            assert_eq!(spec.target(), "~/backups");
        }
    }

    #[test]
    fn invalid_values_are_located() {
        let text = "path = \"backups\"\nmax_age = \"soon\"\nmin_size = \"2MB\"\n\
                    max_size = \"1MB\"\nmin_count = -1";
        let got = located(text, FileConfig::validate);
        assert_eq!(
            got,
            [
                [
                    "\"backups\"",
                    "`path` must be absolute or start with `~/`, found `backups`"
                ],
                [
                    "\"soon\"",
                    "`max_age`: expected a duration like `30s`, `5m` or `1h30m`, found `soon`"
                ],
                [
                    "\"1MB\"",
                    "`max_size` (1.0 MB) is less than `min_size` (2.0 MB)"
                ],
                ["-1", "`min_count` must be 0 or more, found -1"],
            ]
        );
        let text = "path = \"/srv/[x\"\nexists = false\nmax_age = \"1h\"";
        let got = located(text, FileConfig::validate);
        assert_eq!(
            got,
            [
                [
                    "\"/srv/[x\"",
                    "`path`: `/srv/[x` is not a valid glob: invalid range pattern"
                ],
                [
                    "\"1h\"",
                    "`max_age` judges what exists: it cannot go with `exists = false`"
                ],
            ]
        );
    }

    #[tokio::test]
    async fn the_newest_backup_in_a_directory_is_judged() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        file(d, "db-1.sql.gz", 2000, Duration::from_secs(75 * HOUR));
        file(d, "db-2.sql.gz", 3000, Duration::from_secs(51 * HOUR + 60));
        std::fs::create_dir(d.join("old")).unwrap();
        let text = format!("path = {:?}\nmax_age = \"26h\"", d.display().to_string());
        let r = run(&text).await;
        assert_eq!(r.severity, Severity::Critical, "{}", r.summary);
        let newest = d.join("db-2.sql.gz");
        assert_eq!(
            r.summary,
            format!(
                "newest of 2 files is 2d 3h old (max 26h), 3.0 KB: {}",
                home_to_tilde(&newest)
            )
        );
        let names: Vec<(&str, f64)> = r
            .metrics
            .iter()
            .map(|m| (m.name.as_str(), m.value))
            .collect();
        assert_eq!(
            names,
            [
                ("age", (51 * HOUR + 60) as f64),
                ("size", 3000.0),
                ("count", 2.0)
            ]
        );
        assert_eq!(r.metrics[0].crit.as_deref(), Some("93600"));

        // A fresh one arrives: ok.
        file(d, "db-3.sql.gz", 4000, Duration::from_secs(HOUR));
        let r = run(&text).await;
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        assert!(
            r.summary
                .starts_with("newest of 3 files is 1h old, 4.0 KB: "),
            "{}",
            r.summary
        );
    }

    #[tokio::test]
    async fn globs_sizes_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        file(d, "a.sql.gz", 10, Duration::from_secs(HOUR));
        file(d, "b.sql.gz", 5000, Duration::from_secs(2 * HOUR));
        file(d, "c.log", 1, Duration::from_secs(60));
        let glob = format!("{}/*.sql.gz", d.display());
        let r = run(&format!(
            "path = {glob:?}\nmin_size = \"1KB\"\nmin_count = 3"
        ))
        .await;
        assert_eq!(r.severity, Severity::Critical);
        assert_eq!(
            r.summary,
            format!(
                "newest of 2 files (min 3) is 1h old, 10 B (min 1.0 KB): {}",
                home_to_tilde(&d.join("a.sql.gz"))
            )
        );
        assert_eq!(r.metrics[1].crit.as_deref(), Some("1000:"));
        assert_eq!(r.metrics[2].crit.as_deref(), Some("3:"));
        let r = run(&format!("path = {glob:?}\nmax_size = \"5B\"")).await;
        assert_eq!(r.severity, Severity::Critical);
        assert!(r.summary.contains("10 B (max 5 B)"), "{}", r.summary);
        let r = run(&format!(
            "path = {glob:?}\nmin_count = 2\nmax_size = \"1KB\""
        ))
        .await;
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);

        let none = format!("{}/*.tar", d.display());
        let r = run(&format!("path = {none:?}")).await;
        assert_eq!(
            (r.severity, r.summary.clone()),
            (Severity::Critical, format!("no file matches `{none}`"))
        );
        let r = run(&format!("path = {none:?}\nmin_count = 0")).await;
        assert_eq!(r.severity, Severity::Ok);
        let empty = d.join("empty");
        std::fs::create_dir(&empty).unwrap();
        let r = run(&format!("path = {:?}", empty.display().to_string())).await;
        assert_eq!(
            (r.severity, r.summary.clone()),
            (
                Severity::Critical,
                format!("no files in `{}`", empty.display())
            )
        );
        assert_eq!(r.metrics, [Metric::new("count", 0.0).with_min(0.0)]);
    }

    #[tokio::test]
    async fn one_file_and_exists_false() {
        let dir = tempfile::tempdir().unwrap();
        let lock = file(dir.path(), "lock", 3, Duration::from_secs(130));
        let path = format!("{:?}", lock.display().to_string());
        let r = run(&format!("path = {path}\nmax_age = \"1h\"")).await;
        assert_eq!(
            (r.severity, r.summary.clone()),
            (
                Severity::Ok,
                format!("{} is 2m 10s old, 3 B", home_to_tilde(&lock))
            )
        );
        let r = run(&format!("path = {path}\nexists = false")).await;
        assert_eq!(
            (r.severity, r.summary.clone()),
            (
                Severity::Critical,
                format!("`{}` exists (2m 10s old)", lock.display())
            )
        );
        std::fs::remove_file(&lock).unwrap();
        let r = run(&format!("path = {path}\nexists = false")).await;
        assert_eq!(
            (r.severity, r.summary.clone()),
            (Severity::Ok, format!("`{}` does not exist", lock.display()))
        );
        let r = run(&format!("path = {path}")).await;
        assert_eq!(r.severity, Severity::Critical);
        let glob = format!("{}/*.pid", dir.path().display());
        file(dir.path(), "a.pid", 1, Duration::from_secs(5));
        let r = run(&format!("path = {glob:?}\nexists = false")).await;
        assert_eq!(r.severity, Severity::Critical);
        assert!(r.summary.starts_with("1 file in `"), "{}", r.summary);
    }

    #[tokio::test]
    async fn an_unreadable_directory_is_critical_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        // A file where a directory is expected on the way: `ENOTDIR`, as for any user.
        let blocker = file(dir.path(), "plain", 1, Duration::ZERO);
        let inner = blocker.join("x");
        let r = run(&format!("path = {:?}", inner.display().to_string())).await;
        assert_eq!(r.severity, Severity::Critical);
        assert_eq!(
            r.summary,
            format!(
                "cannot read `{}`: Not a directory (os error 20)",
                inner.display()
            )
        );
    }
}
