//! Serde structs that mirror the TOML file, section by section. Nothing is interpreted
//! here: values that need checking stay `Spanned` strings or numbers so the validation
//! step can say where a problem is. A job's `check` table and a notifier's body are not
//! here: they are dispatched on their `type` to the plugin crates.

use serde::Deserialize;
use toml::Spanned;

pub type Text = Spanned<String>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub name: Option<Text>,
    pub timezone: Option<Text>,
    pub state_dir: Option<Text>,
    /// Read from the document before interpolation (it cannot use `${…}` itself);
    /// declared here so the key is known.
    #[allow(dead_code)]
    pub env_file: Option<Text>,
    pub max_concurrent: Option<Spanned<i64>>,
    pub listen: Option<Text>,
    pub listen_url: Option<Text>,
    pub listen_token: Option<Text>,
    pub heartbeat: Option<RawAgentHeartbeat>,
    pub wake_delay: Option<Text>,
    pub group_wait: Option<Text>,
    pub online: Option<RawOnline>,
    /// Validated with the notifiers (see `Loader::agent_notify`).
    pub notify: Option<Vec<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgentHeartbeat {
    pub url: Text,
    pub every: Option<Text>,
}

/// `agent.online = { targets = [...], every = "30s" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOnline {
    pub targets: Spanned<Vec<Text>>,
    pub every: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<Text>,
    pub format: Option<Text>,
    pub file: Option<Text>,
    pub keep: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHistory {
    pub keep: Option<Text>,
    pub max_runs: Option<Spanned<i64>>,
}

/// Keys a job may set and `[defaults]` may set for every job.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub timeout: Option<Text>,
    pub notify: Option<Vec<Text>>,
    pub retry: Option<RawRetry>,
    pub alert: Option<RawAlert>,
    pub misfire_grace: Option<Text>,
    pub coalesce: Option<bool>,
    pub max_instances: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub attempts: Option<Spanned<i64>>,
    pub initial: Option<Text>,
    pub max: Option<Text>,
    pub multiplier: Option<Spanned<f64>>,
    pub jitter: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlert {
    pub after: Option<Spanned<i64>>,
    pub recover_after: Option<Spanned<i64>>,
    pub remind: Option<Text>,
    pub resolved: Option<bool>,
}

/// `[jobs.NAME]` less its `check` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    pub schedule: Option<Text>,
    pub every: Option<Text>,
    pub at: Option<Text>,
    pub jitter: Option<Text>,
    pub timezone: Option<Text>,
    pub timeout: Option<Text>,
    pub max_duration: Option<Text>,
    pub notify: Option<Vec<Text>>,
    pub depends_on: Option<Vec<Text>>,
    pub heartbeat: Option<Text>,
    pub retry: Option<RawRetry>,
    pub alert: Option<RawAlert>,
    pub misfire_grace: Option<Text>,
    pub coalesce: Option<bool>,
    pub max_instances: Option<Spanned<i64>>,
    pub network: Option<Spanned<bool>>,
}

/// The keys every notifier has, taken out of its table before the rest goes to the
/// channel's own struct.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    pub fallback: Option<Text>,
    pub fallback_after: Option<Text>,
    pub min_severity: Option<Text>,
    pub quiet: Option<RawQuiet>,
}

/// A notifier's `quiet = { from, to, timezone, except }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuiet {
    pub from: Text,
    pub to: Text,
    pub timezone: Option<Text>,
    pub except: Option<Text>,
}

/// One `[[maintenance]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    pub name: Text,
    pub schedule: Text,
    pub duration: Text,
    pub timezone: Option<Text>,
    pub jobs: Spanned<Vec<Text>>,
}

/// The sections a config file may have, for did-you-mean on unknown ones.
pub const SECTIONS: &[&str] = &[
    "agent",
    "log",
    "history",
    "defaults",
    "notifiers",
    "jobs",
    "maintenance",
];

/// Notifier keys handled by the agent rather than the channel.
pub const ROUTING_KEYS: &[&str] = &["fallback", "fallback_after", "min_severity", "quiet"];
