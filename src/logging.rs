//! Where the log goes: stderr, and with `[log] file` also a file rotated daily.
//!
//! With a file, the file gets every event at the configured level and stderr only
//! warnings and errors, so that launchd's `StandardErrorPath` (or the journal) stays small
//! and holds what a person must look at. Without one, stderr gets everything. The file
//! never holds ANSI colour codes; stderr has them only when it is a terminal.
//!
//! `log.file = "~/Library/Logs/klaxon/klaxon.log"` writes `klaxon.YYYY-MM-DD.log` (the
//! UTC date; a new file at midnight UTC), through `tracing-appender`, and keeps a symlink
//! `klaxon.log` pointing at today's file. The `keep` newest dated files are kept; older
//! ones are removed at start and at each rollover.
//!
//! Pruning is ours, not `tracing-appender`'s `max_log_files`: that one picks files by
//! prefix and suffix alone (so `klaxon.err.log`, launchd's stderr beside the log, would
//! be taken for an old log and deleted), orders them by creation time rather than by the
//! date in the name, and keeps one file fewer after a restart on the same day.

use std::ffi::OsStr;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::Level;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::{LogFormat, LogSettings};

/// Events with this target go to the log file only: the binary prints the same text to
/// stderr itself (a command's final error).
pub const FILE_ONLY: &str = "klaxon::exit";

/// The file writer's worker thread guard: dropping it writes out the lines still queued.
static GUARD: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// Sets up logging for this process: `RUST_LOG` if set, else the config's level for
/// klaxon's own crates and `warn` for libraries. A log file that cannot be opened is
/// reported on stderr, and everything is logged to stderr instead. Does nothing when
/// logging was already set up.
pub fn init(settings: &LogSettings) {
    let filter = || {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            let level = &settings.level;
            EnvFilter::new(format!(
                "warn,klaxon={level},klaxon_checks={level},klaxon_notifiers={level}"
            ))
        })
    };
    let file = settings
        .file
        .as_deref()
        .and_then(|path| match LogFile::open(path, settings.keep) {
            Ok(file) => Some(file),
            Err(e) => {
                eprintln!(
                    "warning: cannot write the log file `{}`: {e}; logging to stderr only",
                    path.display()
                );
                None
            }
        });
    let ansi = io::stderr().is_terminal();
    let stderr = match settings.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(io::stderr)
            .with_ansi(ansi)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(io::stderr)
            .with_ansi(false)
            .boxed(),
    };
    let Some(file) = file else {
        let stderr = stderr
            .with_filter(filter_fn(|m| m.target() != FILE_ONLY))
            .with_filter(filter());
        let _ = Registry::default().with(stderr).try_init();
        return;
    };
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        // A full queue (128k lines) holds the logging thread back rather than dropping
        // lines: an alert agent's log must not have holes.
        .lossy(false)
        .thread_name("klaxon-log")
        .finish(file);
    let to_file = match settings.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .with_ansi(false)
            .boxed(),
    };
    // Warnings and errors only: the file has the rest.
    let stderr = stderr
        .with_filter(filter_fn(|m| {
            *m.level() <= Level::WARN && m.target() != FILE_ONLY
        }))
        .with_filter(filter());
    if Registry::default()
        .with(stderr)
        .with(to_file.with_filter(filter()))
        .try_init()
        .is_ok()
        && let Ok(mut slot) = GUARD.lock()
    {
        *slot = Some(guard);
    }
}

/// Writes out what is still queued for the log file and stops its thread. Later events
/// no longer reach the file. Called once, when the command is done.
pub fn flush() {
    let guard = GUARD.lock().ok().and_then(|mut slot| slot.take());
    drop(guard);
}

/// Whether events reach a log file (so a final error should be logged there too).
pub fn has_file() -> bool {
    GUARD.lock().is_ok_and(|slot| slot.is_some())
}

/// How the dated files of one `log.file` are named: `PREFIX.YYYY-MM-DD[.SUFFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Naming {
    dir: PathBuf,
    prefix: String,
    suffix: Option<String>,
    /// The configured name itself (`klaxon.log`): a symlink to today's file.
    link: String,
}

impl Naming {
    /// `dir/klaxon.log` → prefix `klaxon`, suffix `log`; `dir/klaxon` → no suffix.
    fn of(path: &Path) -> io::Result<Self> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
        let name = path
            .file_name()
            .and_then(OsStr::to_str)
            .ok_or_else(|| invalid("the path must end in a UTF-8 file name"))?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let (prefix, suffix) = match name.rsplit_once('.') {
            Some((prefix, suffix)) if !prefix.is_empty() && !suffix.is_empty() => {
                (prefix.to_owned(), Some(suffix.to_owned()))
            }
            _ => (name.to_owned(), None),
        };
        Ok(Self {
            dir,
            prefix,
            suffix,
            link: name.to_owned(),
        })
    }

    /// The name the appender gives the file of `day` (days since the epoch, UTC).
    fn file_of(&self, day: u64) -> String {
        let date = chrono::DateTime::from_timestamp(day as i64 * 86_400, 0)
            .unwrap_or_default()
            .format("%Y-%m-%d");
        match &self.suffix {
            Some(suffix) => format!("{}.{date}.{suffix}", self.prefix),
            None => format!("{}.{date}", self.prefix),
        }
    }

    /// The date in `name` when it is one of our dated files, as `YYYY-MM-DD`.
    fn date_of<'n>(&self, name: &'n str) -> Option<&'n str> {
        let rest = name.strip_prefix(&self.prefix)?.strip_prefix('.')?;
        let date = match &self.suffix {
            Some(suffix) => rest.strip_suffix(suffix)?.strip_suffix('.')?,
            None => rest,
        };
        let b = date.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let shaped = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && digits(0..4)
            && digits(5..7)
            && digits(8..10);
        shaped.then_some(date)
    }

    /// Removes all but the `keep` newest dated files (by the date in their names).
    /// Anything else in the directory is left alone.
    fn prune(&self, keep: usize) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut dated: Vec<(String, PathBuf)> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let date = self.date_of(&name)?.to_owned();
                Some((date, e.path()))
            })
            .collect();
        dated.sort();
        let excess = dated.len().saturating_sub(keep);
        for (_, path) in &dated[..excess] {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(file = %path.display(), %e, "cannot remove an old log file");
            }
        }
    }
}

/// The rolling file, pruned whenever a new day's file is started.
struct LogFile {
    appender: RollingFileAppender,
    naming: Naming,
    keep: usize,
    day: u64,
}

impl LogFile {
    fn open(path: &Path, keep: usize) -> io::Result<Self> {
        let naming = Naming::of(path)?;
        // A new log directory is 0700; an existing one is the user's and left as it is.
        if !naming.dir.is_dir() {
            crate::private::dir(&naming.dir)?;
        }
        // The appender opens today's file for appending: made 0600 first, it stays so.
        crate::private::file(&naming.dir.join(naming.file_of(utc_day())))?;
        let mut builder = RollingFileAppender::builder()
            .rotation(Rotation::DAILY)
            .filename_prefix(&naming.prefix);
        if let Some(suffix) = &naming.suffix {
            builder = builder.filename_suffix(suffix);
        }
        // The configured name points at today's file, unless something that is not
        // our symlink already has that name (the appender would delete it).
        let link = naming.dir.join(&naming.link);
        if std::fs::symlink_metadata(&link).map_or(true, |m| m.file_type().is_symlink()) {
            builder = builder.latest_symlink(&naming.link);
        }
        let appender = builder
            .build(&naming.dir)
            .map_err(|e| io::Error::other(e.to_string()))?;
        naming.prune(keep);
        Ok(Self {
            appender,
            naming,
            keep,
            day: utc_day(),
        })
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A new day: make its file 0600 before the appender rolls over to it.
        let before = utc_day();
        if before != self.day {
            self.private_file(before);
        }
        let written = self.appender.write(buf)?;
        // The appender has just rolled over if the day changed: prune after it did (and
        // tighten the new file, should midnight have passed during this write).
        let today = utc_day();
        if today != self.day {
            if today != before {
                self.private_file(today);
            }
            self.day = today;
            self.naming.prune(self.keep);
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.appender.flush()
    }
}

impl LogFile {
    /// Makes the dated file of `day` exist with mode 0600.
    fn private_file(&self, day: u64) {
        let path = self.naming.dir.join(self.naming.file_of(day));
        if let Err(e) = crate::private::file(&path) {
            tracing::warn!(file = %path.display(), %e, "cannot make the log file private");
        }
    }
}

/// Days since the Unix epoch, in UTC: the appender rotates at UTC midnight.
fn utc_day() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_come_from_the_configured_file() {
        let n = Naming::of(Path::new("/var/log/klaxon/klaxon.log")).unwrap();
        assert_eq!(n.dir, Path::new("/var/log/klaxon"));
        assert_eq!(
            (n.prefix.as_str(), n.suffix.as_deref()),
            ("klaxon", Some("log"))
        );
        let n = Naming::of(Path::new("/tmp/agent")).unwrap();
        assert_eq!((n.prefix.as_str(), n.suffix.as_deref()), ("agent", None));
        let n = Naming::of(Path::new("/tmp/.hidden")).unwrap();
        assert_eq!((n.prefix.as_str(), n.suffix.as_deref()), (".hidden", None));
    }

    #[test]
    fn file_names_match_the_appenders() {
        let n = Naming::of(Path::new("/l/klaxon.log")).unwrap();
        // 2026-11-24 is day 20,781.
        assert_eq!(n.file_of(20_781), "klaxon.2026-11-24.log");
        assert!(n.date_of(&n.file_of(utc_day())).is_some());
        let n = Naming::of(Path::new("/l/agent")).unwrap();
        assert_eq!(n.file_of(20_781), "agent.2026-11-24");
    }

    #[cfg(unix)]
    #[test]
    fn a_new_days_file_is_0600_before_the_appender_opens_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut file = LogFile::open(&dir.path().join("klaxon.log"), 5).unwrap();
        let today = dir.path().join(file.naming.file_of(utc_day()));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&today), 0o600);
        // As at midnight: the day the writer knows is over, and today's file is new.
        std::fs::remove_file(&today).unwrap();
        file.day -= 1;
        file.write_all(b"line\n").unwrap();
        assert_eq!(mode(&today), 0o600);
    }

    #[test]
    fn only_dated_files_of_this_log_count() {
        let n = Naming::of(Path::new("/l/klaxon.log")).unwrap();
        assert_eq!(n.date_of("klaxon.2026-11-24.log"), Some("2026-11-24"));
        for other in [
            "klaxon.log",
            "klaxon.err.log",
            "klaxon.stderr.log",
            "klaxon.2026-11-24.log.gz",
            "klaxon.2026-11-24-10.log",
            "klaxonx.2026-11-24.log",
            "other.2026-11-24.log",
        ] {
            assert_eq!(n.date_of(other), None, "{other}");
        }
        let n = Naming::of(Path::new("/l/agent")).unwrap();
        assert_eq!(n.date_of("agent.2026-01-02"), Some("2026-01-02"));
        assert_eq!(n.date_of("agent.2026-01-02.log"), None);
    }

    #[test]
    fn pruning_keeps_the_newest_by_date_and_nothing_else_goes() {
        let dir = tempfile::tempdir().unwrap();
        let n = Naming::of(&dir.path().join("klaxon.log")).unwrap();
        // Created newest first, so creation time and name order disagree.
        let names = [
            "klaxon.2026-11-24.log",
            "klaxon.2026-11-23.log",
            "klaxon.2026-11-20.log",
            "klaxon.2025-12-31.log",
            "klaxon.err.log",
            "notes.txt",
        ];
        for name in names {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        n.prune(2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "klaxon.2026-11-23.log",
                "klaxon.2026-11-24.log",
                "klaxon.err.log",
                "notes.txt"
            ]
        );
    }
}
