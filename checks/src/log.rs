//! The `log` check: its config (`path`, `pattern`, `warn_matches`/`max_matches`,
//! `start`), validation, and the runtime that reads what was appended to a log file
//! since the last run and counts the new lines matching `pattern`.
//!
//! **Where it left off.** The probe keeps its own position (device, inode and byte
//! offset of the file it reads) in memory; the agent keeps it across restarts through
//! the generic [`Probe::commit`] / [`Probe::restore`] pair, as a small JSON text in its
//! store (`check_state`), so this crate needs nothing from the root one. That is the
//! least invasive shape found: the check interface gains two defaulted methods that
//! every other kind ignores, the root crate persists an opaque text per job after the
//! run is recorded, and the probe alone knows what the text means. Every try of a run
//! starts from the last commit, so a retry judges the same new lines (plus any appended
//! since) rather than finding nothing new and passing.
//!
//! **Rotation.** The file the position is in stays open between runs. When `path` names
//! another file (rename + new file: a new inode), the rest of the old one is read
//! through that open file first, then the new file from its start; after a restart,
//! with no old file open, the new file is read from its start. A file shorter than the
//! position was truncated (copytruncate) and is read from its start. So no line is
//! missed or read twice. A line still being written (no newline yet) is left for the
//! next run, except at the end of a rotated-away file, which grows no more.
//!
//! **Bounded.** The file is streamed in 64 KiB blocks; each line is matched on its
//! first 8 KiB, and only the last 5 matching lines are kept, with secrets masked. A
//! run reads for at most three quarters of its `timeout`; what is left is read by the
//! next run (the summary says so). Reads run on [`crate::blocking::CHECKS`], one at a
//! time per check.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use regex::Regex;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::validate::{self, ConfigIssue};
use crate::{BuildError, CheckPlugin, Metric, Outcome, Probe, Severity, Shared, text};

/// How many matching lines the output shows, the last ones.
pub const SHOWN: usize = 5;
/// How much of each line is matched and kept.
pub const LINE_MAX: usize = 8 << 10;
const BLOCK: usize = 64 << 10;

/// The `[jobs.NAME.check]` table of `type = "log"`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// The log file; `~` is expanded.
    pub path: Spanned<String>,
    /// A regex; each new line matching it counts.
    pub pattern: Spanned<String>,
    /// More new matching lines than this in one run is a warning.
    #[serde(default)]
    pub warn_matches: Option<Spanned<i64>>,
    /// More than this is critical; default 0 (any match), unless only `warn_matches`
    /// is set.
    #[serde(default)]
    pub max_matches: Option<Spanned<i64>>,
    /// `end` (default) or `beginning`: where to start in a file seen for the first time.
    #[serde(default)]
    pub start: Option<Spanned<String>>,
}

/// Where reading starts in a file seen for the first time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Only lines appended from now on count.
    End,
    /// The lines already there count too.
    Beginning,
}

/// A validated `log` check.
#[derive(Clone, Debug)]
pub struct LogSpec {
    /// Absolute, `~` expanded.
    pub path: PathBuf,
    pub pattern: Regex,
    pub warn_matches: Option<u64>,
    pub max_matches: Option<u64>,
    pub start: Start,
}

impl LogSpec {
    /// The file read.
    pub fn target(&self) -> String {
        self.path.display().to_string()
    }
}

impl CheckPlugin for LogConfig {
    type Spec = LogSpec;
    type Runtime = LogCheck;

    fn build(spec: &LogSpec, _shared: &Shared) -> Result<LogCheck, BuildError> {
        Ok(LogCheck::new(spec.clone()))
    }

    /// Checks every value, pushing each problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<LogSpec> {
        let before = issues.len();
        let path = validate::absolute_path(&self.path, "path", issues);
        let pattern = validate::regex(&self.pattern, "pattern", issues);
        let warn = validate::count(&self.warn_matches, "warn_matches", issues);
        let max = validate::count(&self.max_matches, "max_matches", issues);
        let start = match self.start.as_ref().map(|s| (s, s.get_ref().as_str())) {
            None | Some((_, "end")) => Some(Start::End),
            Some((_, "beginning")) => Some(Start::Beginning),
            Some((raw, other)) => {
                issues.push(ConfigIssue::new(
                    raw.span(),
                    format!("`start`: expected `end` or `beginning`, found `{other}`"),
                ));
                None
            }
        };
        let (warn, max) = (warn?, max?);
        // Without either, any match is critical; with only a warning level, nothing is.
        let max = match (warn, max) {
            (None, None) => Some(0),
            (_, max) => max,
        };
        if let (Some(w), Some(m), Some(raw)) = (warn, max, &self.warn_matches)
            && w >= m
        {
            issues.push(ConfigIssue::new(
                raw.span(),
                format!("`warn_matches` ({w}) must be less than `max_matches` ({m})"),
            ));
        }
        if issues.len() > before {
            return None;
        }
        Some(LogSpec {
            path: path?,
            pattern: pattern?,
            warn_matches: warn,
            max_matches: max,
            start: start?,
        })
    }
}

/// Where reading left off: a byte offset in one file, named by device and inode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The configured path, so a changed config does not reuse another file's offset.
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    /// The first byte not read yet: the start of a line.
    pub offset: u64,
}

/// A [`Cursor`] and, when this process has it open, the file it is in (which may have
/// been renamed away from `path` since).
#[derive(Clone, Debug)]
struct Position {
    cursor: Cursor,
    file: Option<Arc<File>>,
}

/// What one try read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub lines: u64,
    pub bytes: u64,
    pub matches: u64,
    /// The last [`SHOWN`] matching lines, masked.
    pub last: VecDeque<String>,
    /// The file was rotated (a new inode) since the last run.
    pub rotated: bool,
    /// The file was truncated since the last run.
    pub truncated: bool,
    /// The try stopped at its deadline with more to read.
    pub more: bool,
    /// `path` is gone (the rest of the old file was read).
    pub gone: bool,
}

/// What the probe remembers.
#[derive(Debug, Default)]
struct Memory {
    /// Where the last run left off.
    committed: Option<Position>,
    /// Where the last try of the current run left off.
    pending: Option<Position>,
    /// The state was handed back by the agent (or needs none).
    restored: bool,
}

/// A `log` check ready to run.
#[derive(Debug)]
pub struct LogCheck {
    spec: Arc<LogSpec>,
    memory: Arc<Mutex<Memory>>,
    busy: crate::blocking::OneAtATime,
}

impl LogCheck {
    /// Opens nothing until its first run.
    pub fn new(spec: LogSpec) -> Self {
        Self {
            spec: Arc::new(spec),
            memory: Default::default(),
            busy: Default::default(),
        }
    }

    fn memory(&self) -> MutexGuard<'_, Memory> {
        self.memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Judges what a try read.
    pub fn judge(&self, tally: &Tally, elapsed: Duration) -> Outcome {
        let spec = &self.spec;
        let n = tally.matches;
        let what = match n {
            0 => "no new line matches".to_owned(),
            1 => "1 new line matches".to_owned(),
            n => format!("{n} new lines match"),
        };
        let (severity, limit) = match (spec.warn_matches, spec.max_matches) {
            (_, Some(max)) if n > max => (Severity::Critical, format!(" (max {max})")),
            (Some(warn), _) if n > warn => (Severity::Warning, format!(" (warn {warn})")),
            _ => (Severity::Ok, String::new()),
        };
        let mut summary = format!(
            "{what} `{}`{limit} in {} ({} read)",
            spec.pattern.as_str(),
            spec.path.display(),
            lines(tally.lines)
        );
        for (yes, note) in [
            (tally.rotated, "rotated"),
            (tally.truncated, "truncated"),
            (tally.gone, "the file is gone"),
            (tally.more, "more to read next run"),
        ] {
            if yes {
                summary += "; ";
                summary += note;
            }
        }
        let output: Vec<&str> = tally.last.iter().map(String::as_str).collect();
        let mut matches = Metric::new("matches", n as f64).with_min(0.0);
        matches.warn = spec.warn_matches.map(|w| w.to_string());
        matches.crit = spec.max_matches.map(|m| m.to_string());
        Outcome::new(severity, summary, elapsed)
            .with_output(output.join("\n"))
            .with_metric(matches)
            .with_metric(Metric::new("lines", tally.lines as f64).with_min(0.0))
            .with_metric(
                Metric::new("bytes", tally.bytes as f64)
                    .with_unit("B")
                    .with_min(0.0),
            )
    }
}

fn lines(n: u64) -> String {
    if n == 1 {
        "1 line".into()
    } else {
        format!("{n} lines")
    }
}

/// Reads what was appended since `from` (blocking), stopping at `deadline`: the tally
/// and the position to go on from.
fn read(
    spec: &LogSpec,
    from: Option<Position>,
    deadline: Instant,
) -> Result<(Tally, Position), String> {
    let path = &spec.path;
    let cannot = |e: std::io::Error| format!("cannot read `{}`: {e}", path.display());
    let mut tally = Tally::default();
    let current = match File::open(path) {
        Ok(file) => {
            let meta = file.metadata().map_err(cannot)?;
            Some((Arc::new(file), meta.dev(), meta.ino()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(cannot(e)),
    };
    let same = |c: &Cursor, dev: u64, ino: u64| c.dev == dev && c.ino == ino;
    // The rest of a rotated-away file this process still has open comes first.
    if let Some(Position {
        cursor,
        file: Some(old),
    }) = &from
        && current
            .as_ref()
            .is_none_or(|(_, dev, ino)| !same(cursor, *dev, *ino))
    {
        tally.rotated = current.is_some();
        tally.gone = current.is_none();
        let end = old.metadata().map_err(cannot)?.len();
        let start = if end < cursor.offset {
            0
        } else {
            cursor.offset
        };
        let offset = scan(old, start, end, true, spec, deadline, &mut tally).map_err(cannot)?;
        if tally.more || current.is_none() {
            let cursor = Cursor {
                offset,
                ..cursor.clone()
            };
            return Ok((
                tally,
                Position {
                    cursor,
                    file: Some(old.clone()),
                },
            ));
        }
    }
    let Some((file, dev, ino)) = current else {
        return Err(format!("`{}` does not exist", path.display()));
    };
    let end = file.metadata().map_err(cannot)?.len();
    let start = match &from {
        Some(Position { cursor, .. }) if same(cursor, dev, ino) => {
            if end < cursor.offset {
                tally.truncated = true;
                0
            } else {
                cursor.offset
            }
        }
        Some(_) => {
            // Rotated while no old file was open here (a restart): the new file whole.
            tally.rotated = true;
            0
        }
        None => match spec.start {
            Start::End => end,
            Start::Beginning => 0,
        },
    };
    let offset = scan(&file, start, end, false, spec, deadline, &mut tally).map_err(cannot)?;
    let cursor = Cursor {
        path: path.clone(),
        dev,
        ino,
        offset,
    };
    Ok((
        tally,
        Position {
            cursor,
            file: Some(file),
        },
    ))
}

/// Reads `file` from `start` (the start of a line) up to `end`, counting lines and
/// matches into `tally`; returns the offset after the last whole line read. A last
/// line without its newline counts only when `last` (the file grows no more).
fn scan(
    file: &File,
    start: u64,
    end: u64,
    last: bool,
    spec: &LogSpec,
    deadline: Instant,
    tally: &mut Tally,
) -> std::io::Result<u64> {
    let mut block = vec![0u8; BLOCK];
    let mut line: Vec<u8> = Vec::new();
    let (mut at, mut done) = (start, start);
    let judge = |line: &[u8], tally: &mut Tally| {
        tally.lines += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = String::from_utf8_lossy(line);
        if spec.pattern.is_match(&text) {
            tally.matches += 1;
            if tally.last.len() == SHOWN {
                tally.last.pop_front();
            }
            tally.last.push_back(mask(&text));
        }
    };
    while at < end {
        if Instant::now() >= deadline {
            tally.more = true;
            break;
        }
        let want = usize::try_from(end - at).unwrap_or(BLOCK).min(BLOCK);
        let got = file.read_at(&mut block[..want], at)?;
        if got == 0 {
            break;
        }
        let mut rest = &block[..got];
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let room = LINE_MAX.saturating_sub(line.len());
            line.extend_from_slice(&rest[..nl.min(room)]);
            judge(&line, tally);
            line.clear();
            rest = &rest[nl + 1..];
            at += nl as u64 + 1;
            done = at;
        }
        let room = LINE_MAX.saturating_sub(line.len());
        line.extend_from_slice(&rest[..rest.len().min(room)]);
        at += rest.len() as u64;
    }
    if last && !tally.more && at > done {
        judge(&line, tally);
        done = at;
    }
    tally.bytes += done - start;
    Ok(done)
}

/// A log line with what looks like a secret replaced by `***`: values of `password=`,
/// `token: ` and the like, `Authorization` headers, and passwords in URLs.
pub fn mask(line: &str) -> String {
    static PATTERNS: std::sync::LazyLock<[(Regex, &str); 3]> = std::sync::LazyLock::new(|| {
        #[allow(clippy::expect_used)]
        let re = |p: &str| Regex::new(p).expect("a fixed regex");
        [
            (
                re(r"(?i)(authorization\s*[:=]\s*(?:(?:bearer|basic|token|digest)\s+)?)[^\s,;]+"),
                "${1}***",
            ),
            (
                re(concat!(
                    r#"(?i)((?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|"#,
                    r#"client[_-]?secret|private[_-]?key|session|cookie)["']?\s*[:=]\s*["']?)"#,
                    r#"[^\s"'&,;]+"#
                )),
                "${1}***",
            ),
            (re(r"(://[^/\s:@]+:)[^/\s@]+@"), "${1}***@"),
        ]
    });
    let mut line = text::lossy_prefix(line.as_bytes(), LINE_MAX);
    for (pattern, with) in PATTERNS.iter() {
        if pattern.is_match(&line) {
            line = pattern.replace_all(&line, *with).into_owned();
        }
    }
    line
}

impl Probe for LogCheck {
    /// Reads what was appended since the last run; `timeout` bounds the wait for the
    /// file system, and reading stops at three quarters of it.
    async fn run(&self, timeout: Duration) -> Outcome {
        let start = Instant::now();
        let from = self.memory().committed.clone();
        let spec = self.spec.clone();
        let deadline = start + timeout.mul_f64(0.75);
        let path = self.spec.path.display().to_string();
        let work = move || read(&spec, from, deadline);
        let judge = |(tally, position): (Tally, Position), elapsed| {
            self.memory().pending = Some(position);
            self.judge(&tally, elapsed)
        };
        self.busy.try_within(&path, timeout, work, judge).await
    }

    /// The position the run's last try reached, as JSON of a [`Cursor`].
    fn commit(&self) -> Option<String> {
        let mut memory = self.memory();
        let position = memory.pending.take()?;
        let text = serde_json::to_string(&position.cursor).ok();
        memory.committed = Some(position);
        text
    }

    fn wants_restore(&self) -> bool {
        !self.memory().restored
    }

    /// Takes the position a commit returned before a restart, unless it was for another
    /// path or this probe has read since.
    fn restore(&self, state: Option<&str>) {
        let mut memory = self.memory();
        memory.restored = true;
        let Some(cursor) = state.and_then(|s| serde_json::from_str::<Cursor>(s).ok()) else {
            return;
        };
        if memory.committed.is_none() && cursor.path == self.spec.path {
            memory.committed = Some(Position { cursor, file: None });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::Write;
    use std::path::Path;

    use super::*;
    use crate::test_support::{config, located};
    use klaxon_testkit::append;

    fn spec(path: &Path, extra: &str) -> LogSpec {
        let text = format!(
            "path = {:?}\npattern = \"ERROR\"\n{extra}",
            path.display().to_string()
        );
        config::<LogConfig>(&text)
            .validate(&mut Vec::new())
            .unwrap()
    }

    /// One run: a try, then its commit.
    async fn run(check: &LogCheck) -> Outcome {
        let r = check.run(Duration::from_secs(10)).await;
        check.commit();
        r
    }

    #[test]
    fn values_are_validated_and_located() {
        let text = "path = \"app.log\"\npattern = \"(\"\nwarn_matches = -1\nstart = \"middle\"";
        assert_eq!(
            located(text, LogConfig::validate),
            [
                [
                    "\"app.log\"",
                    "`path` must be absolute or start with `~/`, found `app.log`"
                ],
                [
                    "\"(\"",
                    "`pattern`: `(` is not a valid regex: unclosed group"
                ],
                ["-1", "`warn_matches` must be 0 or more, found -1"],
                [
                    "\"middle\"",
                    "`start`: expected `end` or `beginning`, found `middle`"
                ],
            ]
        );
        let text = "path = \"/l\"\npattern = \"x\"\nwarn_matches = 5\nmax_matches = 5";
        assert_eq!(
            located(text, LogConfig::validate),
            [[
                "5",
                "`warn_matches` (5) must be less than `max_matches` (5)"
            ]]
        );
        let dir = Path::new("/var/log/app.log");
        let s = spec(dir, "");
        assert_eq!(
            (s.warn_matches, s.max_matches, s.start),
            (None, Some(0), Start::End)
        );
        let s = spec(dir, "warn_matches = 2\nstart = \"beginning\"");
        assert_eq!(
            (s.warn_matches, s.max_matches, s.start),
            (Some(2), None, Start::Beginning)
        );
    }

    #[tokio::test]
    async fn only_new_lines_count_and_the_output_shows_the_last_five_masked() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "ERROR old, before the first run\n");
        let check = LogCheck::new(spec(&log, ""));
        let r = run(&check).await;
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        assert_eq!(
            r.summary,
            format!(
                "no new line matches `ERROR` in {} (0 lines read)",
                log.display()
            )
        );
        for i in 1..=7 {
            append(
                &log,
                &format!("info {i}\nERROR {i} login password=hunter{i} ok\n"),
            );
        }
        append(&log, "ERROR half a line");
        let r = run(&check).await;
        assert_eq!(r.severity, Severity::Critical);
        assert_eq!(
            r.summary,
            format!(
                "7 new lines match `ERROR` (max 0) in {} (14 lines read)",
                log.display()
            )
        );
        let output = r.output.unwrap();
        assert_eq!(
            output.lines().collect::<Vec<_>>(),
            (3..=7)
                .map(|i| format!("ERROR {i} login password=*** ok"))
                .collect::<Vec<_>>()
        );
        assert!(!output.contains("hunter"));
        assert_eq!(
            r.metrics[0],
            Metric::new("matches", 7.0).with_min(0.0).with_crit("0")
        );

        // The half line counts once it is whole; nothing is read twice.
        append(&log, " now\n");
        let r = run(&check).await;
        assert_eq!(r.metrics[0].value, 1.0, "{}", r.summary);
        assert_eq!(r.output.as_deref(), Some("ERROR half a line now"));
        let r = run(&check).await;
        assert_eq!(r.severity, Severity::Ok);
        assert_eq!(r.metrics[1].value, 0.0);
    }

    #[tokio::test]
    async fn a_retry_judges_the_same_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "");
        let check = LogCheck::new(spec(&log, "warn_matches = 0\nmax_matches = 2"));
        run(&check).await;
        append(&log, "ERROR a\n");
        let first = check.run(Duration::from_secs(10)).await;
        let retry = check.run(Duration::from_secs(10)).await;
        assert_eq!(first.severity, Severity::Warning);
        assert_eq!(retry.summary, first.summary);
        check.commit();
        append(&log, "ERROR b\nERROR c\nERROR d\n");
        let r = run(&check).await;
        assert_eq!(r.severity, Severity::Critical, "{}", r.summary);
    }

    #[tokio::test]
    async fn rename_rotation_finishes_the_old_file_then_reads_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "start\n");
        let check = LogCheck::new(spec(&log, "max_matches = 100"));
        run(&check).await;
        append(&log, "ERROR 1 before rotation\n");
        std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
        // Written by the service after the rename, to the old file it still has open.
        append(
            &dir.path().join("app.log.1"),
            "ERROR 2 late in the old file",
        );
        append(&log, "ERROR 3 in the new file\n");
        let r = run(&check).await;
        assert_eq!(r.metrics[0].value, 3.0, "{}", r.summary);
        assert!(
            r.summary.ends_with("(3 lines read); rotated"),
            "{}",
            r.summary
        );
        assert_eq!(
            r.output.as_deref(),
            Some("ERROR 1 before rotation\nERROR 2 late in the old file\nERROR 3 in the new file")
        );
        append(&log, "ERROR 4\n");
        let r = run(&check).await;
        assert_eq!(
            (r.metrics[0].value, r.output.as_deref()),
            (1.0, Some("ERROR 4"))
        );
    }

    #[tokio::test]
    async fn copytruncate_reads_the_file_again_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(
            &log,
            "a long first line, longer than what comes after the truncation\n",
        );
        let check = LogCheck::new(spec(&log, "start = \"beginning\""));
        let r = run(&check).await;
        assert_eq!((r.severity, r.metrics[1].value), (Severity::Ok, 1.0));
        std::fs::copy(&log, dir.path().join("app.log.1")).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&log)
            .unwrap();
        append(&log, "ERROR after\n");
        let r = run(&check).await;
        assert_eq!(r.output.as_deref(), Some("ERROR after"), "{}", r.summary);
        assert!(r.summary.ends_with("; truncated"), "{}", r.summary);
    }

    #[tokio::test]
    async fn a_restored_position_goes_on_where_the_last_process_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "ERROR seen before\n");
        let before = LogCheck::new(spec(&log, "start = \"beginning\""));
        assert!(before.wants_restore());
        before.restore(None);
        assert!(!before.wants_restore());
        before.run(Duration::from_secs(10)).await;
        let kept = before.commit().unwrap();
        drop(before);
        append(&log, "ERROR while stopped\n");

        let after = LogCheck::new(spec(&log, "start = \"beginning\""));
        after.restore(Some(&kept));
        let r = run(&after).await;
        assert_eq!(
            r.output.as_deref(),
            Some("ERROR while stopped"),
            "{}",
            r.summary
        );

        // Rotated while stopped: the new file from its start.
        let kept =
            serde_json::to_string(&after.memory().committed.as_ref().unwrap().cursor).unwrap();
        std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
        append(&log, "ERROR in the new file\n");
        let again = LogCheck::new(spec(&log, ""));
        again.restore(Some(&kept));
        let r = run(&again).await;
        assert_eq!(
            r.output.as_deref(),
            Some("ERROR in the new file"),
            "{}",
            r.summary
        );
        assert!(r.summary.ends_with("; rotated"), "{}", r.summary);

        // A position for another path is not taken.
        let other = LogCheck::new(spec(&dir.path().join("other.log"), ""));
        other.restore(Some(&kept));
        assert!(other.memory().committed.is_none());
    }

    #[tokio::test]
    async fn a_huge_append_is_streamed_and_keeps_five_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "");
        let check = LogCheck::new(spec(&log, "max_matches = 1000000"));
        run(&check).await;
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        let long = "x".repeat(3 * LINE_MAX);
        for i in 0..20_000 {
            writeln!(f, "ERROR {i} {}", if i % 1000 == 0 { &long } else { "" }).unwrap();
        }
        drop(f);
        let r = run(&check).await;
        assert_eq!(r.metrics[0].value, 20_000.0, "{}", r.summary);
        let output = r.output.unwrap();
        assert_eq!(output.lines().count(), SHOWN);
        assert!(output.starts_with("ERROR 19995 "), "{output}");
        let size = std::fs::metadata(&log).unwrap().len() as f64;
        assert_eq!(r.metrics[2].value, size);
    }

    #[tokio::test]
    async fn a_missing_file_is_critical() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("nope.log");
        let r = run(&LogCheck::new(spec(&log, ""))).await;
        assert_eq!(
            (r.severity, r.summary),
            (
                Severity::Critical,
                format!("`{}` does not exist", log.display())
            )
        );
    }

    #[test]
    fn masking() {
        for (line, masked) in [
            ("login password=hunter2 ok", "login password=*** ok"),
            ("{\"token\": \"abc.def\"}", "{\"token\": \"***\"}"),
            (
                "Authorization: Bearer eyJhbGci",
                "Authorization: Bearer ***",
            ),
            (
                "GET https://bob:s3cret@host/x",
                "GET https://bob:***@host/x",
            ),
            ("api_key=K1&x=1", "api_key=***&x=1"),
            ("nothing here", "nothing here"),
        ] {
            assert_eq!(mask(line), masked, "{line}");
        }
    }
}
