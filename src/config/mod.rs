//! The config file: found, read, interpolated, deserialized section by section, and
//! validated into the typed model the agent runs on.
//!
//! Every problem is collected (not just the first) and located as `FILE:LINE:COL`. Each
//! section, job, check and notifier is deserialized on its own, so a type error in one
//! job does not hide the problems of another.

mod diagnostic;
mod interpolate;
pub mod paths;
mod quiet;
mod raw;
pub use raw::ROUTING_KEYS;
mod secrets;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::DateTime;
use chrono_tz::Tz;
use klaxon_checks::CheckSpec;
use klaxon_config_core::{ConfigIssue, ParseError};
use klaxon_notifiers::NotifierSpec;
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

pub use diagnostic::{ConfigError, Diagnostic};
pub use interpolate::Env;
use interpolate::{Interpolator, Substituted};
use raw::{
    RawAgent, RawAlert, RawDefaults, RawHistory, RawJob, RawLog, RawRetry, RawRouting, Text,
};
use secrets::SecretValue;

use crate::alert::AlertPolicy;
use crate::retry::RetryPolicy;
use crate::schedule::{CronSchedule, Trigger};

/// What is allowed but risky about the listener: reachable from other machines with no
/// token, or a token that is empty (it lets nobody in); a `listen_url` whose buttons
/// cannot work.
fn listen_warnings(agent: &AgentSettings) -> Vec<String> {
    use secrecy::ExposeSecret;
    let mut warnings = Vec::new();
    if agent.listen_url.is_some() {
        if agent.listen_token.is_none() {
            warnings.push(
                "`agent.listen_url` is set but `listen_token` is not: messages carry no buttons"
                    .to_owned(),
            );
        }
        if agent.listen.is_none() {
            warnings.push(
                "`agent.listen_url` is set but `agent.listen` is not: no listener answers the buttons"
                    .to_owned(),
            );
        }
    }
    let Some(addr) = agent.listen else {
        return warnings;
    };
    warnings.extend(match &agent.listen_token {
        None if !addr.ip().is_loopback() => vec![format!(
            "`agent.listen` is `{addr}`, not a loopback address, and no `listen_token` is set: anyone who can reach it can read /status and post pings"
        )],
        Some(token) if token.expose_secret().is_empty() => {
            vec!["`agent.listen_token` is empty: /status and /ping refuse every request".to_owned()]
        }
        _ => Vec::new(),
    });
    warnings
}

/// A validated config: everything the agent needs, in typed values.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (absolute).
    pub file: PathBuf,
    pub agent: AgentSettings,
    pub log: LogSettings,
    pub history: Retention,
    /// In file order.
    pub notifiers: Vec<NotifierEntry>,
    /// In file order.
    pub jobs: Vec<Job>,
    /// `[[maintenance]]` windows, in file order.
    pub maintenance: Vec<crate::quiet::Maintenance>,
    /// `[defaults]`, validated: what `klaxon exec` runs with for a job the file lacks.
    pub defaults: JobDefaults,
    /// Things that are allowed but probably not meant (a job that notifies nobody).
    pub warnings: Vec<String>,
}

impl Config {
    /// The settings used when there is no config file at all (`klaxon exec` still runs
    /// its command): the default agent settings, no notifiers, no jobs.
    pub fn builtin() -> Config {
        let mut secrets = Vec::new();
        let mut loader = Loader {
            text: "",
            shown: Path::new(""),
            secrets: &mut secrets,
            base_dir: Path::new("."),
            diagnostics: Vec::new(),
            substituted: Vec::new(),
            unresolved: Vec::new(),
        };
        let agent = loader.agent(RawAgent::default());
        let log = loader.log(RawLog::default());
        let history = loader.history(RawHistory::default());
        let defaults = loader.quiet_defaults(&RawDefaults::default(), &[]);
        Config {
            file: PathBuf::new(),
            agent: agent.unwrap_or_else(|| AgentSettings {
                name: gethostname::gethostname().to_string_lossy().into_owned(),
                timezone: system_timezone(),
                state_dir: paths::default_state_dir(),
                max_concurrent: 64,
                listen: None,
                listen_url: None,
                listen_token: None,
                heartbeat: None,
                wake_delay: Duration::from_secs(15),
                group_wait: Duration::from_secs(5),
                online: None,
                notify: Vec::new(),
            }),
            log,
            history,
            notifiers: Vec::new(),
            jobs: Vec::new(),
            maintenance: Vec::new(),
            defaults,
            warnings: Vec::new(),
        }
    }

    pub fn job(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.name == name)
    }

    pub fn notifier(&self, name: &str) -> Option<&NotifierEntry> {
        self.notifiers.iter().find(|n| n.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub name: String,
    pub timezone: Tz,
    pub state_dir: PathBuf,
    pub max_concurrent: usize,
    pub listen: Option<SocketAddr>,
    /// `agent.listen_url`: where people reach the listener (the buttons call it).
    pub listen_url: Option<url::Url>,
    pub listen_token: Option<SecretString>,
    pub heartbeat: Option<AgentHeartbeat>,
    pub wake_delay: Duration,
    pub group_wait: Duration,
    /// `agent.online`: how the agent tells that the machine is offline (off when unset).
    pub online: Option<OnlineSettings>,
    /// `agent.notify`: who hears that the agent cannot write its state, or that it is
    /// back online (default: every notifier a job notifies, in file order).
    pub notify: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AgentHeartbeat {
    pub url: SecretString,
    pub every: Duration,
}

/// `agent.online`: the machine is online while one of `targets` answers; they are asked
/// every `every`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineSettings {
    pub targets: Vec<crate::online::Target>,
    pub every: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
    pub file: Option<PathBuf>,
    pub keep: usize,
}

/// `[history]`: how much of the past the state store keeps. Runs, pings and delivered
/// messages older than `keep` are pruned, and each job keeps at most `max_runs` runs
/// (and pings), the newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub keep: Duration,
    pub max_runs: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep: Duration::from_secs(90 * 86_400),
            max_runs: 10_000,
        }
    }
}

/// Which alerts a notifier takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinSeverity {
    Warning,
    Critical,
}

#[derive(Debug, Clone)]
pub struct NotifierEntry {
    pub name: String,
    pub spec: NotifierSpec,
    pub fallback: Option<String>,
    pub fallback_after: Duration,
    pub min_severity: MinSeverity,
    /// Quiet hours: its messages wait for their end (`quiet`).
    pub quiet: Option<crate::quiet::QuietHours>,
}

/// What a job gets from `[defaults]` (and the built-in defaults under it).
#[derive(Debug, Clone)]
pub struct JobDefaults {
    pub timeout: Duration,
    pub notify: Vec<String>,
    pub retry: RetryPolicy,
    pub alert: AlertPolicy,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub trigger: Trigger,
    /// The zone cron fields are read in, and times are shown in.
    pub timezone: Tz,
    /// Upper bound of a fixed per-job delay added to every fire.
    pub jitter: Option<Duration>,
    pub timeout: Duration,
    /// A run (all its tries; for a passive job, `/start` to its success ping) that
    /// takes longer is a warning that says so.
    pub max_duration: Option<Duration>,
    pub notify: Vec<String>,
    pub depends_on: Vec<String>,
    pub heartbeat: Option<SecretString>,
    pub retry: RetryPolicy,
    pub alert: AlertPolicy,
    pub misfire_grace: Option<Duration>,
    pub coalesce: bool,
    pub max_instances: u32,
    pub check: CheckSpec,
    /// Whether a run needs the network (`network`; by default the check's kind says):
    /// with `agent.online`, such runs are not judged while the machine is offline.
    pub network: bool,
    /// What is checked, for messages and logs: the check's target with every value
    /// that came from `${…}` replaced by `***`.
    pub target: String,
    /// The check's table as written, for the dashboard: dotted keys in file order, each
    /// value as TOML writes it after `${…}`, every secret the check plugins declare and
    /// every value that came from `${…}` shown as `***`.
    pub settings: Vec<(String, String)>,
}

/// `text` as an http:// or https:// URL with a host.
fn web_url(text: &str) -> Option<url::Url> {
    url::Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// Whether `name` may name a job or notifier: letters, digits, `-`, `_` and `.`, and
/// not dots alone (`.` and `..` would be path steps in `/ping/JOB` and `/api/ack/JOB`).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.chars().all(|c| c == '.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Finds the config file: `--config`, else `$KLAXON_CONFIG`, else `./klaxon.toml`, else
/// `~/.config/klaxon/klaxon.toml`.
pub fn locate(flag: Option<&Path>, env: &dyn Env) -> Result<PathBuf, String> {
    if let Some(path) = flag {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = env.var("KLAXON_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let local = PathBuf::from("klaxon.toml");
    if local.exists() {
        return Ok(local);
    }
    let user = paths::home_dir().map(|h| h.join(".config/klaxon/klaxon.toml"));
    match user {
        Some(path) if path.exists() => Ok(path),
        other => Err(format!(
            "no config file: pass `--config PATH`, set `KLAXON_CONFIG`, or create `./klaxon.toml`{}",
            other
                .map(|p| format!(" or `{}`", p.display()))
                .unwrap_or_default()
        )),
    }
}

/// Reads and validates the config at `path`. `env` supplies `${NAME}` values (the
/// process environment in the binary; a map in tests).
pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
    let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigError::file_level(path, format!("cannot read the config file: {e}")))?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
            return Err(ConfigError::new(
                path,
                &lossy,
                vec![Diagnostic::at(
                    at..at + 1,
                    "the config is not UTF-8 text (is this a binary file?)",
                )],
            ));
        }
    };
    let meaningful = text
        .lines()
        .map(str::trim)
        .any(|l| !l.is_empty() && !l.starts_with('#'));
    if !meaningful {
        return Err(ConfigError::file_level(
            path,
            "the config is empty: define at least one job as a `[jobs.NAME]` table with a `[jobs.NAME.check]`",
        ));
    }
    let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut secrets = Vec::new();
    Loader {
        text: &text,
        shown: path,
        base_dir: &base_dir,
        diagnostics: Vec::new(),
        substituted: Vec::new(),
        unresolved: Vec::new(),
        secrets: &mut secrets,
    }
    .load(env, file.clone())
    // Errors quote lines of the file: never with a secret written in it.
    .map_err(|diagnostics| ConfigError::new(path, &secrets::mask(&text, &secrets), diagnostics))
}

struct Loader<'a> {
    text: &'a str,
    /// The config file as named on the command line, for warnings.
    shown: &'a Path,
    base_dir: &'a Path,
    diagnostics: Vec<Diagnostic>,
    substituted: Vec<Substituted>,
    /// Strings whose `${…}` could not be resolved: already reported, so later
    /// complaints about the same value would only repeat the problem.
    unresolved: Vec<std::ops::Range<usize>>,
    /// Every secret value in the file (see [`secrets`]).
    secrets: &'a mut Vec<SecretValue>,
}

type Value<'a> = Spanned<DeValue<'a>>;

impl<'a> Loader<'a> {
    fn load(mut self, env: &dyn Env, file: PathBuf) -> Result<Config, Vec<Diagnostic>> {
        let (doc, errors) = DeTable::parse_recoverable(self.text);
        *self.secrets = secrets::find(doc.get_ref());
        if !errors.is_empty() {
            return Err(errors
                .iter()
                .map(|e| Diagnostic {
                    span: e.span(),
                    message: tidy_parse_error(self.text, e.message(), e.span()),
                })
                .collect());
        }
        let mut doc = doc.into_inner();

        let env_vars = self.env_file(&doc);
        let combined = |name: &str| {
            env.var(name)
                .or_else(|| env_vars.as_ref().and_then(|m| m.get(name).cloned()))
        };
        let mut interpolator = Interpolator {
            env: &combined,
            base_dir: self.base_dir,
            diagnostics: Vec::new(),
            substituted: Vec::new(),
            exposed_files: Vec::new(),
        };
        interpolator.table(&mut doc);
        let exposed_files = std::mem::take(&mut interpolator.exposed_files);
        self.unresolved = interpolator
            .diagnostics
            .iter()
            .filter_map(|d| d.span.clone())
            .collect();
        self.diagnostics.append(&mut interpolator.diagnostics);
        self.substituted = interpolator.substituted;

        let mut sections: HashMap<&str, Value<'a>> = HashMap::new();
        for (key, value) in doc {
            let name = key.get_ref().as_ref();
            match raw::SECTIONS.iter().find(|s| **s == name) {
                Some(section) => {
                    sections.insert(section, value);
                }
                None => self.diagnostics.push(Diagnostic::at(
                    key.span(),
                    unknown("section", name, None, raw::SECTIONS),
                )),
            }
        }

        let mut agent: RawAgent = self.section(&mut sections, "agent").unwrap_or_default();
        let agent_notify = agent.notify.take();
        let log: RawLog = self.section(&mut sections, "log").unwrap_or_default();
        let defaults: RawDefaults = self.section(&mut sections, "defaults").unwrap_or_default();
        let agent = self.agent(agent);
        let log = self.log(log);
        let history: RawHistory = self.section(&mut sections, "history").unwrap_or_default();
        let history = self.history(history);
        let tz = agent.as_ref().map_or(chrono_tz::UTC, |a| a.timezone);
        let (notifiers, declared) = self.notifiers(sections.remove("notifiers"), tz);
        let jobs = self.jobs(sections.remove("jobs"), &defaults, &agent, &declared);
        let maintenance = self.maintenance(sections.remove("maintenance"), tz, &jobs);
        let agent_notify = self.agent_notify(agent_notify.as_deref(), &declared, &jobs);
        let agent = agent.map(|agent| AgentSettings {
            notify: agent_notify,
            ..agent
        });

        if self.diagnostics.is_empty() && jobs.is_empty() {
            self.diagnostics.push(Diagnostic::whole_file(
                "no jobs defined: add a `[jobs.NAME]` table with a `[jobs.NAME.check]`",
            ));
        }
        if !self.diagnostics.is_empty() {
            return Err(self.diagnostics);
        }
        let mut warnings: Vec<String> = exposed_files
            .iter()
            .map(|exposed| self.exposed_file_warning(exposed))
            .collect();
        warnings.extend(self.literal_secret_warnings());
        warnings.extend(jobs.iter().filter(|j| j.notify.is_empty()).map(|j| {
            format!(
                "job `{}` notifies nobody: set `notify` on it or in `[defaults]`",
                j.name
            )
        }));
        warnings.extend(agent.as_ref().map(listen_warnings).unwrap_or_default());
        let defaults = self.quiet_defaults(&defaults, &declared);
        // `agent` has no diagnostics here, so every field was filled.
        Ok(Config {
            file,
            agent: agent.ok_or_else(Vec::new)?,
            log,
            history,
            notifiers,
            jobs,
            maintenance,
            defaults,
            warnings,
        })
    }

    /// `FILE:LINE:COL` of a byte offset, for warnings.
    fn location(&self, offset: usize) -> String {
        let (line, col) = diagnostic::line_col(self.text, offset);
        format!("{}:{line}:{col}", self.shown.display())
    }

    fn exposed_file_warning(&self, exposed: &interpolate::ExposedFile) -> String {
        let path = exposed.path.display();
        format!(
            "{}: secret file `{path}` can be read by other users (mode {:04o}): run `chmod 600 {path}`",
            self.location(exposed.span.start),
            exposed.mode & 0o7777,
        )
    }

    /// Secrets written in the file itself, when others can read the file.
    fn literal_secret_warnings(&self) -> Vec<String> {
        let Some(mode) = readable_by_others(self.shown) else {
            return Vec::new();
        };
        let file = self.shown.display();
        self.secrets
            .iter()
            .filter(|s| s.literal)
            .map(|s| {
                format!(
                    "{}: `{}` is a secret written in the config, which other users can read (mode {:04o}): \
                     use `${{VAR}}` or `${{file:PATH}}` instead, or run `chmod 600 {file}`",
                    self.location(s.span.start),
                    s.field,
                    mode & 0o7777,
                )
            })
            .collect()
    }

    /// Reads `agent.env_file` (before interpolation: it cannot use variables itself).
    fn env_file(&mut self, doc: &DeTable<'_>) -> Option<HashMap<String, String>> {
        let agent = doc.get("agent")?.get_ref().as_table()?;
        let value = agent.get("env_file")?;
        let name = value.get_ref().as_str()?;
        let path = paths::expand_path(name, self.base_dir);
        let iter = match dotenvy::from_path_iter(&path) {
            Ok(iter) => iter,
            Err(e) => {
                self.diagnostics.push(Diagnostic::at(
                    value.span(),
                    format!(
                        "cannot read `env_file` `{}`: {}",
                        path.display(),
                        io_reason(&e)
                    ),
                ));
                return None;
            }
        };
        let mut vars = HashMap::new();
        for item in iter {
            match item {
                Ok((k, v)) => {
                    vars.insert(k, v);
                }
                Err(e) => {
                    self.diagnostics.push(Diagnostic::at(
                        value.span(),
                        format!("`env_file` `{}`: {e}", path.display()),
                    ));
                    return None;
                }
            }
        }
        Some(vars)
    }

    fn section<T: DeserializeOwned>(
        &mut self,
        sections: &mut HashMap<&str, Value<'a>>,
        name: &str,
    ) -> Option<T> {
        let value = sections.remove(name)?;
        self.deserialize(value, &format!("`[{name}]`"))
    }

    /// Deserializes one value, turning a serde error into a located, readable diagnostic.
    fn deserialize<T: DeserializeOwned>(&mut self, value: Value<'a>, context: &str) -> Option<T> {
        let whole = value.span();
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(v) => Some(v),
            Err(e) => {
                self.shape_error(&e, context, &whole);
                None
            }
        }
    }

    fn humanize(&self, message: &str, context: &str, span: &std::ops::Range<usize>) -> String {
        let message = interpolate::scrub(message, span, &self.substituted);
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let (name, rest) = rest.split_once('`').unwrap_or((rest, ""));
            let expected = backticked(rest);
            return unknown("key", name, Some(context), &expected);
        }
        if let Some(rest) = message.strip_prefix("missing field `") {
            let name = rest.split('`').next().unwrap_or(rest);
            return format!("{context}: missing key `{name}`");
        }
        let message = match message.find("expected struct ") {
            Some(i) => format!("{}expected a table", &message[..i]),
            None => message,
        };
        let message = message
            .trim_end_matches('\n')
            .replacen("invalid type: ", "", 1);
        match self.key_before(span) {
            Some(key) => format!("`{key}`: {message}"),
            None => format!("{context}: {message}"),
        }
    }

    /// The bare key written just before a value (`key = value` on one line).
    fn key_before(&self, span: &std::ops::Range<usize>) -> Option<String> {
        let before = self.text.get(..span.start)?;
        let line = &before[before.rfind('\n').map_or(0, |i| i + 1)..];
        let line = line.trim_end().strip_suffix('=')?.trim_end();
        let key = line.rsplit([' ', '{', ',', '\t', '.']).next()?;
        let bare = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        bare.then(|| key.to_owned())
    }

    fn duration(&mut self, value: &Text, key: &str) -> Option<Duration> {
        self.core_issues(|issues| klaxon_config_core::duration(value, key, issues))
    }

    fn positive_duration(&mut self, value: &Text, key: &str) -> Option<Duration> {
        self.core_issues(|issues| klaxon_config_core::positive_duration(value, key, issues))
    }

    /// Runs one of [`klaxon_config_core`]'s validators, its problems becoming diagnostics.
    fn core_issues<T>(
        &mut self,
        validate: impl FnOnce(&mut Vec<ConfigIssue>) -> Option<T>,
    ) -> Option<T> {
        let mut issues = Vec::new();
        let value = validate(&mut issues);
        self.diagnostics.extend(
            issues
                .into_iter()
                .map(|i| Diagnostic::at(i.span, i.message)),
        );
        value
    }

    fn count(&mut self, value: &Spanned<i64>, key: &str, min: i64, max: i64) -> Option<u32> {
        let n = *value.get_ref();
        if n < min || n > max {
            self.diagnostics.push(Diagnostic::at(
                value.span(),
                format!("`{key}` must be from {min} to {max}, found `{n}`"),
            ));
            return None;
        }
        u32::try_from(n).ok()
    }

    fn timezone(&mut self, value: &Text) -> Option<Tz> {
        let name = value.get_ref().trim();
        match name.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
                let mut scored: Vec<(f64, &str)> = names
                    .iter()
                    .map(|n| {
                        (
                            strsim::jaro_winkler(&n.to_lowercase(), &name.to_lowercase()),
                            *n,
                        )
                    })
                    .collect();
                scored.sort_by(|a, b| b.0.total_cmp(&a.0));
                let close: Vec<String> = scored
                    .iter()
                    .take(3)
                    .filter(|(score, _)| *score > 0.85)
                    .map(|(_, n)| format!("`{n}`"))
                    .collect();
                let hint = if close.is_empty() {
                    "use an IANA name like `Europe/Berlin` or `UTC`".to_owned()
                } else {
                    format!("did you mean {}?", close.join(", "))
                };
                self.diagnostics.push(Diagnostic::at(
                    value.span(),
                    format!("unknown time zone `{name}`; {hint}"),
                ));
                None
            }
        }
    }

    fn agent(&mut self, raw: RawAgent) -> Option<AgentSettings> {
        let before = self.diagnostics.len();
        let name = raw
            .name
            .map(Spanned::into_inner)
            .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
        let timezone = match &raw.timezone {
            Some(tz) => self.timezone(tz),
            None => Some(system_timezone()),
        };
        let state_dir = raw
            .state_dir
            .map(|d| paths::expand_path(d.get_ref(), self.base_dir))
            .unwrap_or_else(paths::default_state_dir);
        let max_concurrent = raw
            .max_concurrent
            .map_or(Some(64), |v| self.count(&v, "max_concurrent", 1, 100_000))?;
        let listen = raw
            .listen
            .and_then(|l| match l.get_ref().parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    self.diagnostics.push(Diagnostic::at(
                        l.span(),
                        format!(
                            "`listen`: expected an address like `127.0.0.1:9850`, found `{}`",
                            l.get_ref()
                        ),
                    ));
                    None
                }
            });
        let listen_url = raw.listen_url.as_ref().and_then(|u| self.listen_url(u));
        let listen_token = raw.listen_token.map(|t| SecretString::from(t.into_inner()));
        let heartbeat = raw.heartbeat.and_then(|hb| {
            let url = self.http_url(&hb.url, "heartbeat.url")?;
            let every = match &hb.every {
                Some(e) => self.positive_duration(e, "heartbeat.every")?,
                None => Duration::from_secs(60),
            };
            Some(AgentHeartbeat { url, every })
        });
        let wake_delay = raw.wake_delay.map_or(Some(Duration::from_secs(15)), |d| {
            self.duration(&d, "wake_delay")
        });
        let group_wait = raw.group_wait.map_or(Some(Duration::from_secs(5)), |d| {
            self.duration(&d, "group_wait")
        });
        let online = raw.online.and_then(|o| self.online(o));
        if self.diagnostics.len() > before {
            return None;
        }
        Some(AgentSettings {
            name,
            timezone: timezone?,
            state_dir,
            max_concurrent: max_concurrent as usize,
            listen,
            listen_url,
            listen_token,
            heartbeat,
            wake_delay: wake_delay?,
            group_wait: group_wait?,
            online,
            notify: Vec::new(),
        })
    }

    /// `agent.online`: at least one target, each `host:port` or an http(s) URL, and a
    /// positive `every` (default 30 s).
    fn online(&mut self, raw: raw::RawOnline) -> Option<OnlineSettings> {
        let before = self.diagnostics.len();
        if raw.targets.get_ref().is_empty() {
            self.diagnostics.push(Diagnostic::at(
                raw.targets.span(),
                "`online.targets` must name at least one target (`host:port` or an http(s) URL)",
            ));
        }
        let targets: Vec<_> = raw
            .targets
            .get_ref()
            .iter()
            .filter_map(|t| match crate::online::Target::parse(t.get_ref()) {
                Ok(target) => Some(target),
                Err(e) => {
                    self.diagnostics
                        .push(Diagnostic::at(t.span(), format!("`online.targets`: {e}")));
                    None
                }
            })
            .collect();
        let every = match &raw.every {
            Some(e) => self.positive_duration(e, "online.every"),
            None => Some(Duration::from_secs(30)),
        };
        if self.diagnostics.len() > before {
            return None;
        }
        Some(OnlineSettings {
            targets,
            every: every?,
        })
    }

    /// `agent.notify`: each name must be a declared notifier. Unset, it is every
    /// notifier that some job notifies, in the order they are declared.
    fn agent_notify(
        &mut self,
        raw: Option<&[Text]>,
        declared: &[String],
        jobs: &[Job],
    ) -> Vec<String> {
        let Some(raw) = raw else {
            return declared
                .iter()
                .filter(|n| jobs.iter().any(|j| j.notify.contains(n)))
                .cloned()
                .collect();
        };
        let mut names: Vec<String> = Vec::new();
        for n in raw {
            if !declared.contains(n.get_ref()) {
                self.diagnostics.push(Diagnostic::at(
                    n.span(),
                    unknown("notifier", n.get_ref(), Some("`agent.notify`"), declared),
                ));
            } else if !names.contains(n.get_ref()) {
                names.push(n.get_ref().clone());
            }
        }
        names
    }

    /// `agent.listen_url`: an http(s) base URL the API's paths are appended to.
    fn listen_url(&mut self, value: &Text) -> Option<url::Url> {
        let Some(url) = web_url(value.get_ref()) else {
            self.diagnostics.push(Diagnostic::at(
                value.span(),
                "`listen_url` must be an http:// or https:// URL, like `https://box.example.com:9850`",
            ));
            return None;
        };
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            self.diagnostics.push(Diagnostic::at(
                value.span(),
                "`listen_url` is the listener's address: no query, fragment or login in it",
            ));
            return None;
        }
        Some(url)
    }

    /// A URL that may hold a secret (a ping URL with a UUID, a token): checked without
    /// ever echoing it.
    fn http_url(&mut self, value: &Text, key: &str) -> Option<SecretString> {
        if web_url(value.get_ref()).is_none() {
            self.diagnostics.push(Diagnostic::at(
                value.span(),
                format!("`{key}` must be an http:// or https:// URL"),
            ));
            return None;
        }
        Some(SecretString::from(value.get_ref().clone()))
    }

    fn log(&mut self, raw: RawLog) -> LogSettings {
        const LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];
        let level = match raw.level {
            Some(l) if LEVELS.contains(&l.get_ref().as_str()) => l.into_inner(),
            Some(l) => {
                self.diagnostics.push(Diagnostic::at(
                    l.span(),
                    unknown("log level", l.get_ref(), None, LEVELS),
                ));
                "info".to_owned()
            }
            None => "info".to_owned(),
        };
        let format = match raw.format.as_ref().map(|f| f.get_ref().as_str()) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                let span = raw.format.as_ref().map(Spanned::span).unwrap_or_default();
                self.diagnostics.push(Diagnostic::at(
                    span,
                    unknown("log format", other, None, &["text", "json"]),
                ));
                LogFormat::Text
            }
        };
        let keep = raw
            .keep
            .map_or(Some(7), |k| self.count(&k, "keep", 1, 10_000))
            .unwrap_or(7) as usize;
        LogSettings {
            level,
            format,
            file: raw
                .file
                .map(|f| paths::expand_path(f.get_ref(), self.base_dir)),
            keep,
        }
    }

    fn history(&mut self, raw: RawHistory) -> Retention {
        let default = Retention::default();
        let keep = raw.keep.and_then(|k| {
            let d = self.duration(&k, "keep")?;
            if d < Duration::from_secs(3600) {
                self.diagnostics.push(Diagnostic::at(
                    k.span(),
                    format!("`keep` must be at least 1h, found `{}`", k.get_ref()),
                ));
                return None;
            }
            Some(d)
        });
        let max_runs = raw
            .max_runs
            .and_then(|m| self.count(&m, "max_runs", 1, 100_000_000));
        Retention {
            keep: keep.unwrap_or(default.keep),
            max_runs: max_runs.unwrap_or(default.max_runs),
        }
    }

    /// The valid notifiers, and the names of all declared ones (a job naming a declared
    /// but broken notifier gets no second error about it).
    fn notifiers(
        &mut self,
        section: Option<Value<'a>>,
        tz: Tz,
    ) -> (Vec<NotifierEntry>, Vec<String>) {
        let Some(tables) = self.tables_of(section, "notifiers") else {
            return (Vec::new(), Vec::new());
        };
        let names: Vec<String> = tables.iter().map(|(n, _, _)| n.clone()).collect();
        let mut out = Vec::new();
        for (name, span, mut table) in tables {
            let context = format!("`[notifiers.{name}]`");
            let Some(kind) = self.take_type(&mut table, &span, &context, NotifierSpec::TYPES)
            else {
                continue;
            };
            let mut routing_table = DeTable::new();
            for key in raw::ROUTING_KEYS {
                if let Some((k, v)) = table.remove_entry(*key) {
                    routing_table.insert(k, v);
                }
            }
            let routing: Option<RawRouting> = self.deserialize(
                Spanned::new(span.clone(), DeValue::Table(routing_table)),
                &context,
            );
            let body = Spanned::new(span.clone(), DeValue::Table(table));
            let spec = match NotifierSpec::parse(&kind, body) {
                Ok(spec) => Some(spec),
                Err(ParseError::Shape(e)) => {
                    self.shape_error(&e, &context, &span);
                    continue;
                }
                Err(ParseError::Invalid(issues)) => {
                    self.plugin_issues(issues);
                    None
                }
            };
            let Some(routing) = routing else { continue };
            let fallback = routing.fallback.and_then(|f| {
                let target = f.get_ref();
                if target == &name {
                    self.diagnostics.push(Diagnostic::at(
                        f.span(),
                        format!("notifier `{name}` cannot be its own `fallback`"),
                    ));
                    None
                } else if names.contains(target) {
                    Some(target.clone())
                } else {
                    self.diagnostics.push(Diagnostic::at(
                        f.span(),
                        unknown("notifier", target, None, &names),
                    ));
                    None
                }
            });
            let fallback_after = routing
                .fallback_after
                .map_or(Some(Duration::from_secs(300)), |d| {
                    self.duration(&d, "fallback_after")
                });
            let min_severity = match routing.min_severity.as_ref().map(|m| m.get_ref().as_str()) {
                None | Some("warning") => MinSeverity::Warning,
                Some("critical") => MinSeverity::Critical,
                Some(other) => {
                    let at = routing
                        .min_severity
                        .as_ref()
                        .map(Spanned::span)
                        .unwrap_or_default();
                    self.diagnostics.push(Diagnostic::at(
                        at,
                        unknown("severity", other, None, &["warning", "critical"]),
                    ));
                    MinSeverity::Warning
                }
            };
            let quiet = match routing.quiet {
                Some(raw) => self.quiet(raw, tz).map(Some),
                None => Some(None),
            };
            if let (Some(spec), Some(fallback_after), Some(quiet)) = (spec, fallback_after, quiet) {
                out.push(NotifierEntry {
                    name,
                    spec,
                    fallback,
                    fallback_after,
                    min_severity,
                    quiet,
                });
            }
        }
        (out, names)
    }

    /// Reports what a plugin's validation found ([`ParseError::Invalid`]), each problem
    /// at its place, with substituted secrets masked; none at a value that came from an
    /// unset variable, which has its own error.
    fn plugin_issues(&mut self, issues: Vec<ConfigIssue>) {
        for ConfigIssue { span, message } in issues {
            if self.unresolved.contains(&span) {
                continue;
            }
            let message = interpolate::scrub(&message, &span, &self.substituted);
            self.diagnostics.push(Diagnostic::at(span, message));
        }
    }

    /// Reports a value of the wrong shape (a serde error, a plugin's
    /// [`ParseError::Shape`]) where serde found it, or at the whole `table` when it
    /// could not say; nothing where a `${…}` left unset was already reported.
    fn shape_error(
        &mut self,
        error: &toml::de::Error,
        context: &str,
        table: &std::ops::Range<usize>,
    ) {
        let at = error.span().unwrap_or(table.clone());
        if self.unresolved.contains(&at) {
            return;
        }
        let message = self.humanize(error.message(), context, &at);
        self.diagnostics.push(Diagnostic::at(at, message));
    }

    /// Splits a section of named tables (`[jobs.NAME]`, `[notifiers.NAME]`) into its
    /// entries, checking each name.
    fn tables_of(
        &mut self,
        section: Option<Value<'a>>,
        what: &str,
    ) -> Option<Vec<(String, std::ops::Range<usize>, DeTable<'a>)>> {
        let section = section?;
        let span = section.span();
        let DeValue::Table(table) = section.into_inner() else {
            self.diagnostics.push(Diagnostic::at(
                span,
                format!("`{what}` must be a table of `[{what}.NAME]` tables"),
            ));
            return None;
        };
        let mut out = Vec::new();
        for (key, value) in table {
            let name = key.get_ref().to_string();
            let span = value.span();
            if !valid_name(&name) {
                self.diagnostics.push(Diagnostic::at(
                    key.span(),
                    format!(
                        "`{name}` is not a valid name: use letters, digits, `-`, `_` and `.` \
                         (not dots alone)"
                    ),
                ));
                continue;
            }
            match value.into_inner() {
                DeValue::Table(t) => out.push((name, span, t)),
                other => self.diagnostics.push(Diagnostic::at(
                    span,
                    format!(
                        "`{what}.{name}` must be a table, found {}",
                        other.type_str()
                    ),
                )),
            }
        }
        Some(out)
    }

    /// Removes and checks the `type` key of a check or notifier table.
    fn take_type(
        &mut self,
        table: &mut DeTable<'a>,
        span: &std::ops::Range<usize>,
        context: &str,
        types: &[&str],
    ) -> Option<String> {
        let Some(value) = table.remove("type") else {
            self.diagnostics.push(Diagnostic::at(
                span.clone(),
                format!("{context}: missing key `type` (one of {})", quoted(types)),
            ));
            return None;
        };
        let at = value.span();
        match value.get_ref().as_str() {
            Some(kind) if types.contains(&kind) => Some(kind.to_owned()),
            Some(kind) => {
                self.diagnostics.push(Diagnostic::at(
                    at,
                    unknown("type", kind, Some(context), types),
                ));
                None
            }
            None => {
                self.diagnostics.push(Diagnostic::at(
                    at,
                    format!("`type`: expected a string, one of {}", quoted(types)),
                ));
                None
            }
        }
    }

    fn jobs(
        &mut self,
        section: Option<Value<'a>>,
        defaults: &RawDefaults,
        agent: &Option<AgentSettings>,
        notifier_names: &[String],
    ) -> Vec<Job> {
        let Some(tables) = self.tables_of(section, "jobs") else {
            return Vec::new();
        };
        let job_names: Vec<String> = tables.iter().map(|(n, _, _)| n.clone()).collect();
        let agent_tz = agent.as_ref().map_or(chrono_tz::UTC, |a| a.timezone);
        let mut jobs = Vec::new();
        for (name, span, mut table) in tables {
            let context = format!("`[jobs.{name}]`");
            let check = table.remove("check");
            let raw: Option<RawJob> =
                self.deserialize(Spanned::new(span.clone(), DeValue::Table(table)), &context);
            let (check, settings) = self.check(&name, &span, check).unzip();
            // The job's own keys are checked even when its check is broken.
            let Some(raw) = raw else {
                continue;
            };
            let before = self.diagnostics.len();
            let job = self.job(
                name,
                span,
                raw,
                check,
                settings.unwrap_or_default(),
                defaults,
                agent_tz,
                &job_names,
                notifier_names,
            );
            if self.diagnostics.len() == before {
                jobs.extend(job);
            }
        }
        self.dependency_cycles(&jobs);
        jobs
    }

    fn check(
        &mut self,
        job: &str,
        job_span: &std::ops::Range<usize>,
        value: Option<Value<'a>>,
    ) -> Option<(CheckSpec, Vec<(String, String)>)> {
        let context = format!("`[jobs.{job}.check]`");
        let Some(value) = value else {
            self.diagnostics.push(Diagnostic::at(
                job_span.clone(),
                format!(
                    "job `{job}` has no check: add a `[jobs.{job}.check]` table with a `type` ({})",
                    quoted(CheckSpec::TYPES)
                ),
            ));
            return None;
        };
        let span = value.span();
        let DeValue::Table(mut table) = value.into_inner() else {
            self.diagnostics
                .push(Diagnostic::at(span, format!("{context} must be a table")));
            return None;
        };
        let kind = self.take_type(&mut table, &span, &context, CheckSpec::TYPES)?;
        let settings = secrets::check_rows(job, &table, &self.substituted);
        let body = Spanned::new(span.clone(), DeValue::Table(table));
        match CheckSpec::parse(&kind, body) {
            Ok(spec) => Some((spec, settings)),
            Err(ParseError::Shape(e)) => {
                self.shape_error(&e, &context, &span);
                None
            }
            Err(ParseError::Invalid(issues)) => {
                self.plugin_issues(issues);
                None
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn job(
        &mut self,
        name: String,
        span: std::ops::Range<usize>,
        raw: RawJob,
        check: Option<CheckSpec>,
        settings: Vec<(String, String)>,
        defaults: &RawDefaults,
        agent_tz: Tz,
        job_names: &[String],
        notifier_names: &[String],
    ) -> Option<Job> {
        // Every field is checked even when an earlier one failed, so one pass over the
        // file reports every problem of the job.
        let timezone = match &raw.timezone {
            Some(tz) => self.timezone(tz),
            None => Some(agent_tz),
        };
        let trigger = self.trigger(&name, &span, &raw, timezone.unwrap_or(agent_tz));
        let jitter = raw.jitter.as_ref().and_then(|j| self.duration(j, "jitter"));
        let timeout = match raw.timeout.as_ref().or(defaults.timeout.as_ref()) {
            Some(t) => self.positive_duration(t, "timeout"),
            None => Some(Duration::from_secs(30)),
        };
        let max_duration = raw
            .max_duration
            .as_ref()
            .and_then(|d| self.positive_duration(d, "max_duration"));
        let notify = raw.notify.as_ref().or(defaults.notify.as_ref());
        let notify: Vec<String> = notify
            .map(|list| {
                list.iter()
                    .filter_map(|n| {
                        if notifier_names.contains(n.get_ref()) {
                            Some(n.get_ref().clone())
                        } else {
                            self.diagnostics.push(Diagnostic::at(
                                n.span(),
                                unknown("notifier", n.get_ref(), None, notifier_names),
                            ));
                            None
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let depends_on = raw
            .depends_on
            .iter()
            .flatten()
            .filter_map(|d| {
                let dep = d.get_ref();
                if dep == &name {
                    self.diagnostics.push(Diagnostic::at(
                        d.span(),
                        format!("job `{name}` cannot depend on itself"),
                    ));
                    None
                } else if job_names.contains(dep) {
                    Some(dep.clone())
                } else {
                    self.diagnostics.push(Diagnostic::at(
                        d.span(),
                        unknown("job", dep, None, job_names),
                    ));
                    None
                }
            })
            .collect();
        let heartbeat = raw
            .heartbeat
            .as_ref()
            .and_then(|h| self.http_url(h, "heartbeat"));
        let retry = self.retry(raw.retry.as_ref(), defaults.retry.as_ref(), &span);
        let alert = self.alert_policy(raw.alert.as_ref(), defaults.alert.as_ref());
        let misfire_grace = raw
            .misfire_grace
            .as_ref()
            .or(defaults.misfire_grace.as_ref())
            .and_then(|g| self.duration(g, "misfire_grace"));
        let max_instances = match raw
            .max_instances
            .as_ref()
            .or(defaults.max_instances.as_ref())
        {
            Some(m) => self.count(m, "max_instances", 1, 1_000),
            None => Some(1),
        };
        let network = match (&raw.network, &check) {
            (Some(n), Some(c)) if !c.is_active() => {
                self.diagnostics.push(Diagnostic::at(
                    n.span(),
                    "`network` is for jobs the agent runs; a `heartbeat` job is fed by pings",
                ));
                None
            }
            (Some(n), _) => Some(*n.get_ref()),
            (None, c) => Some(c.as_ref().is_some_and(CheckSpec::is_network)),
        };
        Some(Job {
            name,
            trigger: trigger?,
            timezone: timezone?,
            jitter,
            timeout: timeout?,
            max_duration,
            notify,
            depends_on,
            heartbeat,
            retry: retry?,
            alert: alert?,
            misfire_grace,
            coalesce: raw.coalesce.or(defaults.coalesce).unwrap_or(true),
            max_instances: max_instances?,
            network: network?,
            target: interpolate::redact(&check.as_ref()?.target(), &self.substituted),
            settings,
            check: check?,
        })
    }

    /// `[defaults]` as a job without settings of its own gets them. Its problems were
    /// reported with the jobs that inherit them; a value no job uses and that does not
    /// validate falls back to the built-in default here.
    fn quiet_defaults(&mut self, raw: &RawDefaults, notifiers: &[String]) -> JobDefaults {
        let mark = self.diagnostics.len();
        let builtin_retry = || {
            RetryPolicy::try_new(3, Duration::from_secs(2), Duration::from_secs(60), 2.0, 0.2)
                .unwrap_or_else(|_| RetryPolicy::single())
        };
        let timeout = raw
            .timeout
            .as_ref()
            .and_then(|t| self.positive_duration(t, "timeout"))
            .unwrap_or(Duration::from_secs(30));
        let retry = self
            .retry(None, raw.retry.as_ref(), &(0..0))
            .unwrap_or_else(builtin_retry);
        let alert = self.alert_policy(None, raw.alert.as_ref());
        let notify = raw
            .notify
            .iter()
            .flatten()
            .map(|n| n.get_ref().clone())
            .filter(|n| notifiers.contains(n))
            .collect();
        self.diagnostics.truncate(mark);
        JobDefaults {
            timeout,
            notify,
            retry,
            alert: alert.unwrap_or_default(),
        }
    }

    fn trigger(
        &mut self,
        name: &str,
        span: &std::ops::Range<usize>,
        raw: &RawJob,
        tz: Tz,
    ) -> Option<Trigger> {
        let given: Vec<(&str, &Text)> = [
            ("schedule", raw.schedule.as_ref()),
            ("every", raw.every.as_ref()),
            ("at", raw.at.as_ref()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        match given.as_slice() {
            [] => {
                self.diagnostics.push(Diagnostic::at(
                    span.clone(),
                    format!("job `{name}` needs exactly one of `schedule`, `every` or `at`"),
                ));
                None
            }
            [(key, value)] => match *key {
                "schedule" => match CronSchedule::parse(value.get_ref(), tz) {
                    Ok(c) => Some(Trigger::Cron(Box::new(c))),
                    Err(e) => {
                        self.diagnostics
                            .push(Diagnostic::at(value.span(), format!("`schedule`: {e}")));
                        None
                    }
                },
                "every" => self.positive_duration(value, "every").map(Trigger::Every),
                _ => match DateTime::parse_from_rfc3339(value.get_ref().trim()) {
                    Ok(at) => Some(Trigger::At(at)),
                    Err(_) => {
                        self.diagnostics.push(Diagnostic::at(
                            value.span(),
                            format!(
                                "`at`: expected an RFC 3339 time with offset like `2026-12-01T09:00:00+11:00`, found `{}`",
                                value.get_ref()
                            ),
                        ));
                        None
                    }
                },
            },
            [(first, _), (second, value), ..] => {
                self.diagnostics.push(Diagnostic::at(
                    value.span(),
                    format!(
                        "job `{name}` sets both `{first}` and `{second}`: use exactly one of `schedule`, `every` or `at`"
                    ),
                ));
                None
            }
        }
    }

    fn retry(
        &mut self,
        job: Option<&RawRetry>,
        defaults: Option<&RawRetry>,
        job_span: &std::ops::Range<usize>,
    ) -> Option<RetryPolicy> {
        let pick = |f: fn(&RawRetry) -> Option<&Text>| job.and_then(f).or(defaults.and_then(f));
        let attempts_value = job
            .and_then(|r| r.attempts.as_ref())
            .or(defaults.and_then(|r| r.attempts.as_ref()));
        let attempts = match attempts_value {
            Some(a) => self.count(a, "retry.attempts", 1, 100),
            None => Some(3),
        };
        let initial = match pick(|r| r.initial.as_ref()) {
            Some(d) => self.duration(d, "retry.initial"),
            None => Some(Duration::from_secs(2)),
        };
        let max = match pick(|r| r.max.as_ref()) {
            Some(d) => self.duration(d, "retry.max"),
            None => initial.map(|i| Duration::from_secs(60).max(i)),
        };
        let (attempts, initial, max) = (attempts?, initial?, max?);
        let multiplier_value = job
            .and_then(|r| r.multiplier.as_ref())
            .or(defaults.and_then(|r| r.multiplier.as_ref()));
        let jitter_value = job
            .and_then(|r| r.jitter.as_ref())
            .or(defaults.and_then(|r| r.jitter.as_ref()));
        let multiplier = multiplier_value.map_or(2.0, |m| *m.get_ref());
        let jitter = jitter_value.map_or(0.2, |j| *j.get_ref());
        match RetryPolicy::try_new(attempts, initial, max, multiplier, jitter) {
            Ok(p) => Some(p),
            Err(e) => {
                let at = if e.contains("`multiplier`") {
                    multiplier_value.map(Spanned::span)
                } else if e.contains("`jitter`") {
                    jitter_value.map(Spanned::span)
                } else {
                    pick(|r| r.max.as_ref()).map(Spanned::span)
                };
                self.diagnostics.push(Diagnostic::at(
                    at.unwrap_or_else(|| job_span.clone()),
                    format!("`retry`: {e}"),
                ));
                None
            }
        }
    }

    fn alert_policy(
        &mut self,
        job: Option<&RawAlert>,
        defaults: Option<&RawAlert>,
    ) -> Option<AlertPolicy> {
        let after = job
            .and_then(|a| a.after.as_ref())
            .or(defaults.and_then(|a| a.after.as_ref()));
        let recover_after = job
            .and_then(|a| a.recover_after.as_ref())
            .or(defaults.and_then(|a| a.recover_after.as_ref()));
        let remind = job
            .and_then(|a| a.remind.as_ref())
            .or(defaults.and_then(|a| a.remind.as_ref()));
        let resolved = job
            .and_then(|a| a.resolved)
            .or(defaults.and_then(|a| a.resolved));
        let after = match after {
            Some(a) => self.count(a, "alert.after", 1, 10_000),
            None => Some(1),
        };
        let recover_after = match recover_after {
            Some(a) => self.count(a, "alert.recover_after", 1, 10_000),
            None => Some(1),
        };
        let remind = match remind {
            Some(r) => self.positive_duration(r, "alert.remind").map(Some),
            None => Some(None),
        };
        Some(AlertPolicy {
            after: after?,
            recover_after: recover_after?,
            remind: remind?,
            resolved: resolved.unwrap_or(true),
        })
    }

    /// `depends_on` must not loop: a job cannot wait on itself through others.
    fn dependency_cycles(&mut self, jobs: &[Job]) {
        let deps: HashMap<&str, &[String]> = jobs
            .iter()
            .map(|j| (j.name.as_str(), j.depends_on.as_slice()))
            .collect();
        let mut reported = BTreeSet::new();
        for job in jobs {
            let mut path = vec![job.name.as_str()];
            if let Some(cycle) = find_cycle(&deps, &mut path) {
                // The same loop found from another of its jobs is reported once.
                let mut key = cycle[..cycle.len() - 1].to_vec();
                key.sort();
                if reported.insert(key) {
                    self.diagnostics.push(Diagnostic::whole_file(format!(
                        "`depends_on` forms a cycle: {}",
                        cycle.join(" → ")
                    )));
                }
            }
        }
    }
}

fn find_cycle<'a>(
    deps: &HashMap<&'a str, &'a [String]>,
    path: &mut Vec<&'a str>,
) -> Option<Vec<String>> {
    let current = *path.last()?;
    for dep in deps.get(current).copied().unwrap_or_default() {
        if let Some(i) = path.iter().position(|p| p == dep) {
            let mut cycle: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
            cycle.push(dep.clone());
            return Some(cycle);
        }
        if path.len() > deps.len() {
            return None;
        }
        path.push(dep.as_str());
        if let Some(c) = find_cycle(deps, path) {
            return Some(c);
        }
        path.pop();
    }
    None
}

/// The file's mode when its group or other users may read it (Unix only).
#[cfg(unix)]
pub(crate) fn readable_by_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o044 != 0).then_some(mode)
}

#[cfg(not(unix))]
pub(crate) fn readable_by_others(_path: &Path) -> Option<u32> {
    None
}

/// The zone of this machine, or UTC when it cannot be told.
pub fn system_timezone() -> Tz {
    iana_time_zone::get_timezone()
        .ok()
        .and_then(|name| name.parse().ok())
        .unwrap_or(chrono_tz::UTC)
}

/// "unknown key `scheduel` in `[jobs.api]`, did you mean `schedule`?"
fn unknown(what: &str, name: &str, context: Option<&str>, valid: &[impl AsRef<str>]) -> String {
    let place = context.map(|c| format!(" in {c}")).unwrap_or_default();
    let best = valid
        .iter()
        .map(|v| (strsim::damerau_levenshtein(name, v.as_ref()), v.as_ref()))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, v)) if d <= (name.chars().count() / 3).max(2) => {
            format!("unknown {what} `{name}`{place}, did you mean `{v}`?")
        }
        _ if valid.is_empty() => format!("unknown {what} `{name}`{place}"),
        _ => format!(
            "unknown {what} `{name}`{place}; expected one of {}",
            quoted(valid)
        ),
    }
}

fn quoted(items: &[impl AsRef<str>]) -> String {
    items
        .iter()
        .map(|i| format!("`{}`", i.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The backticked names in serde's "expected one of `a`, `b`" tail.
fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn tidy_parse_error(text: &str, message: &str, span: Option<std::ops::Range<usize>>) -> String {
    let first = message
        .trim()
        .lines()
        .next()
        .unwrap_or("invalid TOML")
        .trim();
    if let (true, Some(span)) = (first == "duplicate key", span) {
        let line_start = text[..span.start.min(text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let line = text[line_start..].lines().next().unwrap_or("").trim();
        if line.starts_with('[') {
            return format!("invalid TOML: the table `{line}` is defined twice");
        }
        if let Some(key) = text.get(span) {
            return format!("invalid TOML: `{key}` is set twice in the same table");
        }
    }
    format!("invalid TOML: {first}")
}

fn io_reason(e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Loads a config from TOML text (written to a temp file) with an empty environment.
    pub fn load_text(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("klaxon.toml");
        std::fs::write(&path, text).unwrap();
        load(&path, &|_: &str| None)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn values_from_variables_never_show_in_a_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("klaxon.toml");
        std::fs::write(
            &path,
            "[jobs.api]\nevery = \"1m\"\n[jobs.api.check]\ntype = \"http\"\nurl = \"https://api.example.com/health?token=${API_TOKEN}\"\n",
        )
        .unwrap();
        let env = |name: &str| (name == "API_TOKEN").then(|| "s3cr3t-t0ken".to_owned());
        let config = load(&path, &env).unwrap();
        assert_eq!(
            config.jobs[0].target,
            "https://api.example.com/health?token=***"
        );
    }

    #[test]
    fn defaults_are_inherited_key_by_key() {
        let config = tests_support::load_text(
            r#"
[defaults]
timeout = "7s"
retry = { attempts = 5, initial = "1s" }
alert = { after = 2, remind = "1h" }
[jobs.a]
every = "1m"
retry = { attempts = 2 }
alert = { resolved = false }
[jobs.a.check]
type = "tcp"
host = "127.0.0.1"
port = 1
"#,
        )
        .unwrap();
        let job = &config.jobs[0];
        assert_eq!(job.timeout, Duration::from_secs(7));
        assert_eq!(job.retry.attempts(), 2);
        assert_eq!(job.retry.base_delay(1), Duration::from_secs(1));
        assert_eq!(
            job.alert,
            AlertPolicy {
                after: 2,
                recover_after: 1,
                remind: Some(Duration::from_secs(3600)),
                resolved: false
            }
        );
        assert!(job.coalesce);
        assert_eq!(job.max_instances, 1);
        assert_eq!(
            config.warnings,
            ["job `a` notifies nobody: set `notify` on it or in `[defaults]`"]
        );
    }

    #[test]
    fn agent_online_is_off_unless_set_and_network_defaults_to_the_check_kind() {
        use crate::config::tests_support::load_text;
        let jobs = "[jobs.web]\nevery = \"1m\"\n[jobs.web.check]\ntype = \"http\"\nurl = \"http://127.0.0.1/\"\n\
                    [jobs.lan]\nevery = \"1m\"\nnetwork = false\n[jobs.lan.check]\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = 5432\n\
                    [jobs.sync]\nevery = \"1m\"\nnetwork = true\n[jobs.sync.check]\ntype = \"script\"\nshell = \"rsync\"\n\
                    [jobs.disk]\nevery = \"1m\"\n[jobs.disk.check]\ntype = \"disk\"\npath = \"/\"\nmin_free = \"1%\"\n";
        let config = load_text(jobs).unwrap();
        assert_eq!(config.agent.online, None);
        let network: Vec<_> = config
            .jobs
            .iter()
            .map(|j| (j.name.as_str(), j.network))
            .collect();
        assert_eq!(
            network,
            [
                ("web", true),
                ("lan", false),
                ("sync", true),
                ("disk", false)
            ]
        );
        let config = load_text(&format!(
            "[agent]\nonline = {{ targets = [\"1.1.1.1:53\", \"https://example.com\"] }}\n{jobs}"
        ))
        .unwrap();
        let online = config.agent.online.unwrap();
        assert_eq!(online.every, Duration::from_secs(30));
        let shown: Vec<_> = online.targets.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["1.1.1.1:53", "https://example.com/"]);
        let unknown = load_text(&format!(
            "[agent]\nonline = {{ targets = [\"1.1.1.1:53\"], evry = \"1m\" }}\n{jobs}"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            unknown.contains("unknown key `evry`") && unknown.contains("did you mean `every`?"),
            "{unknown}"
        );
    }

    #[test]
    fn agent_notify_defaults_to_the_notifiers_jobs_use_and_takes_a_list() {
        let notifiers = "[notifiers.a]\ntype = \"log\"\n[notifiers.b]\ntype = \"log\"\n\
                         [notifiers.c]\ntype = \"log\"\n";
        let jobs = "[jobs.x]\nevery = \"1m\"\nnotify = [\"c\"]\n[jobs.x.check]\ntype = \"tcp\"\nhost = \"h\"\nport = 1\n\
                    [jobs.y]\nevery = \"1m\"\nnotify = [\"a\", \"c\"]\n[jobs.y.check]\ntype = \"tcp\"\nhost = \"h\"\nport = 1\n";
        use crate::config::tests_support::load_text;
        let config = load_text(&format!("{notifiers}{jobs}")).unwrap();
        // In file order; `b` no job uses.
        assert_eq!(config.agent.notify, ["a", "c"]);
        let config = load_text(&format!(
            "[agent]\nnotify = [\"b\", \"b\"]\n{notifiers}{jobs}"
        ))
        .unwrap();
        assert_eq!(config.agent.notify, ["b"]);
        let config = load_text(&format!("[agent]\nnotify = []\n{notifiers}{jobs}")).unwrap();
        assert!(config.agent.notify.is_empty(), "an empty list tells no one");
    }

    #[test]
    fn env_file_supplies_variables_and_the_environment_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), "NAME=from-file\nHOST=127.0.0.1\n").unwrap();
        let path = dir.path().join("klaxon.toml");
        std::fs::write(
            &path,
            "[agent]\nenv_file = \".env\"\nname = \"${NAME}\"\n[jobs.a]\nevery = \"1m\"\n[jobs.a.check]\ntype = \"tcp\"\nhost = \"${HOST}\"\nport = 1\n",
        )
        .unwrap();
        let none = |_: &str| None;
        assert_eq!(load(&path, &none).unwrap().agent.name, "from-file");
        let env = |name: &str| (name == "NAME").then(|| "from-env".to_owned());
        assert_eq!(load(&path, &env).unwrap().agent.name, "from-env");
    }

    #[test]
    fn a_dependency_cycle_is_an_error() {
        let messages = refusals(
            r#"
[jobs.a]
every = "1m"
depends_on = ["b"]
[jobs.a.check]
type = "tcp"
host = "127.0.0.1"
port = 1
[jobs.b]
every = "1m"
depends_on = ["a"]
[jobs.b.check]
type = "tcp"
host = "127.0.0.1"
port = 1
"#,
        );
        assert_eq!(messages, ["`depends_on` forms a cycle: a → b → a"]);
    }

    #[test]
    fn a_name_of_dots_alone_is_refused_where_it_would_be_a_path_step() {
        for (name, valid) in [
            ("db-1.nightly", true),
            (".hidden", true),
            (".", false),
            ("..", false),
        ] {
            assert_eq!(valid_name(name), valid, "{name}");
        }
        let messages = refusals(
            r#"
[jobs.".."]
every = "1m"
[jobs."..".check]
type = "tcp"
host = "127.0.0.1"
port = 1
"#,
        );
        assert_eq!(
            messages,
            ["`..` is not a valid name: use letters, digits, `-`, `_` and `.` (not dots alone)"]
        );
    }

    /// The messages of a config that does not load.
    fn refusals(text: &str) -> Vec<String> {
        let err = tests_support::load_text(text).unwrap_err();
        err.diagnostics.into_iter().map(|d| d.message).collect()
    }
}
