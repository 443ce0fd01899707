//! klaxon's check plugins. One module per kind owns its raw config struct (what the TOML
//! says, implementing [`CheckPlugin`]), its validated spec (typed values, no I/O) and its
//! runtime (implementing [`Probe`]). This root registers each kind with one line of
//! `checks!` (see `plugin.rs`), which makes the one closed enum, [`CheckSpec`], that
//! dispatches over them with `match`.
//!
//! Config flows raw → validated → built: [`CheckSpec::parse`] reads the file's table as
//! the kind's raw struct and validates it, collecting every problem with its location,
//! and [`Check::build`] makes clients: one [`Check`] whatever the kind. Running a check
//! never fails: every problem with the target is an [`Outcome`] with a severity and a
//! summary.

pub mod blocking;
mod cert;
pub mod disk;
pub mod dns;
pub mod file;
pub mod group;
pub mod heartbeat;
pub mod http;
pub mod log;
mod metric;
pub mod perfdata;
pub mod ping;
#[macro_use]
mod plugin;
pub mod process;
pub mod script;
pub mod starttls;
pub mod tcp;
#[cfg(test)]
mod test_support;
mod text;
mod validate;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use klaxon_config_core::{ParseError, SecretKey};
pub use metric::Metric;
pub use plugin::{Check, CheckPlugin, Passive, Probe};
pub use validate::ConfigIssue;

/// How a check went, ordered from best to worst (`unknown` is alerted as critical).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// All is well.
    Ok,
    /// Worth a look: a limit's warning level was passed.
    Warning,
    /// Failed.
    Critical,
    /// The check could not tell (a plugin's exit 3, an unknown user).
    Unknown,
}

impl Severity {
    /// `ok`, `warning`, `critical` or `unknown`, as the config and JSON write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
            Severity::Unknown => "unknown",
        }
    }

    /// Whether this is [`Severity::Ok`].
    pub fn is_ok(self) -> bool {
        self == Severity::Ok
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ok" => Ok(Severity::Ok),
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            "unknown" => Ok(Severity::Unknown),
            other => Err(format!("unknown severity `{other}`")),
        }
    }
}

/// The result of one try of a check.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub severity: Severity,
    /// One line saying what was found: "HTTP 503 Service Unavailable", "timed out after 5s".
    pub summary: String,
    /// Longer text where there is some: a script's output, the start of a response body.
    pub output: Option<String>,
    /// How long this try took.
    pub duration: Duration,
    /// What the try measured, in the order the check reports it: an HTTP check's
    /// `latency_ms`, a script's perfdata. Empty when nothing was measured (a timeout, a
    /// refused connection).
    pub metrics: Vec<Metric>,
    /// The try was stopped before it finished because klaxon is stopping: its result
    /// says nothing about the target.
    pub interrupted: bool,
}

impl Outcome {
    /// An outcome without output or metrics.
    pub fn new(severity: Severity, summary: impl Into<String>, duration: Duration) -> Self {
        Self {
            severity,
            summary: summary.into(),
            output: None,
            duration,
            metrics: Vec::new(),
            interrupted: false,
        }
    }

    /// Marks the try as stopped before it finished (see [`Outcome::interrupted`]).
    pub fn mark_interrupted(mut self) -> Self {
        self.interrupted = true;
        self
    }

    /// Sets the output; empty text leaves it `None`.
    pub fn with_output(mut self, output: impl Into<String>) -> Self {
        let output = output.into();
        self.output = (!output.is_empty()).then_some(output);
        self
    }

    /// Adds one metric after those already there.
    pub fn with_metric(mut self, metric: Metric) -> Self {
        self.metrics.push(metric);
        self
    }

    /// Adds metrics after those already there.
    pub fn with_metrics(mut self, metrics: impl IntoIterator<Item = Metric>) -> Self {
        self.metrics.extend(metrics);
        self
    }
}

// The kinds: one line each (see [`plugin`]). The order is the order `type`'s values are
// listed in messages.
checks! {
    Http(http::HttpConfig) = "http",
    Script(script::ScriptConfig) = "script",
    Process(process::ProcessConfig) = "process",
    Tcp(tcp::TcpConfig) = "tcp",
    Disk(disk::DiskConfig) = "disk",
    Heartbeat(heartbeat::HeartbeatConfig) = "heartbeat",
    File(file::FileConfig) = "file",
    Log(log::LogConfig) = "log",
    Dns(dns::DnsConfig) = "dns",
    Ping(ping::PingConfig) = "ping",
}

/// What checks share at run time: one HTTP client (connection pool, TLS roots) for all
/// HTTP checks that need no special TLS settings.
#[derive(Clone, Debug)]
pub struct Shared {
    /// The client of HTTP checks without TLS settings of their own.
    pub http: reqwest::Client,
}

impl Shared {
    /// Builds the shared HTTP client ([`http::default_client`]).
    pub fn new() -> Result<Self, BuildError> {
        Ok(Self {
            http: http::default_client()?,
        })
    }
}

/// Why a check could not be built from a valid spec.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("check type `{0}` is accepted by the config but cannot run in this version yet")]
    Unsupported(&'static str),
    #[error("could not set up the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("{0}")]
    Other(String),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use toml::Spanned;
    use toml::de::{DeTable, DeValue};

    fn spec(kind: &str, text: &str) -> CheckSpec {
        // The document's own span is empty; a check table spans its text, as in a file.
        let table = DeValue::Table(DeTable::parse(text).unwrap().into_inner());
        CheckSpec::parse(kind, Spanned::new(0..text.len(), table)).unwrap()
    }

    #[tokio::test]
    async fn process_and_disk_build_and_run_heartbeat_does_not() {
        // The agent runs checks from many tasks at once.
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Check>();

        let shared = Shared::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let disk = spec(
            "disk",
            &format!(
                "path = {:?}\nmin_free = \"1B\"",
                dir.path().display().to_string()
            ),
        );
        let r = Check::build(&disk, &shared)
            .unwrap()
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);

        // Nothing runs under this name; `min = 0` makes that fine.
        let process = spec("process", "name = \"no-such-klaxon-process\"\nmin = 0");
        let r = Check::build(&process, &shared)
            .unwrap()
            .run(Duration::from_secs(5))
            .await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Ok, "no process matching `no-such-klaxon-process`")
        );

        let heartbeat = spec("heartbeat", "grace = \"1h\"");
        let err = Check::build(&heartbeat, &shared).unwrap_err();
        assert!(matches!(err, BuildError::Unsupported("heartbeat")), "{err}");
    }
}
