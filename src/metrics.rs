//! The agent's Prometheus metrics, served by the listener at `/metrics`.
//!
//! Counters and histograms are updated where things happen (a run recorded, a fire
//! dispatched, a delivery settled). What the state store already knows (whether each
//! job is up, how many messages wait in the outbox) is read at scrape time, so it is
//! right whichever process wrote it (`klaxon once`, `klaxon ping`) and a job a reload
//! removed is no longer reported. One [`Metrics`] lives for the whole agent: a reload
//! carries it into the new runtime, so counters never go back to zero.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use klaxon_checks::Severity;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::config::Config;
use crate::store::{Store, StoreError};

/// What `/metrics` answers with: OpenMetrics text, which Prometheus negotiates and reads.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Run durations, in seconds: from a quick TCP connect to a script that takes minutes.
const RUN_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

/// Scheduler lateness, in seconds: normally milliseconds; seconds under load; minutes
/// or more after a sleep (`wake_delay`) or with a busy `max_concurrent`.
const LATENESS_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    job: String,
    severity: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    notifier: String,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabels {
    notifier: String,
    replica: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutboxLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// How one delivery try of one message ended (the `result` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryResult {
    /// The receiver took it.
    Delivered,
    /// It failed and will be tried again.
    Retry,
    /// The receiver refused it for good (a 4xx other than 408 and 429).
    Rejected,
    /// Given up: failing for a day, or its notifier is no longer configured.
    GaveUp,
}

impl DeliveryResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry => "retry",
            Self::Rejected => "rejected",
            Self::GaveUp => "gave_up",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    run_duration: Family<RunLabels, Histogram, fn() -> Histogram>,
    job_up: Family<JobLabels, Gauge>,
    job_silenced: Family<JobLabels, Gauge>,
    lateness: Histogram,
    /// The same observations per bucket of [`LATENESS_BUCKETS`] (and one past the last),
    /// for the dashboard: the Prometheus histogram does not hand its buckets back.
    lateness_counts: [AtomicU64; LATENESS_BUCKETS.len() + 1],
    deliveries: Family<DeliveryLabels, Counter>,
    replica_failures: Family<ReplicaLabels, Counter>,
    outbox: Family<OutboxLabels, Gauge>,
    offline: Gauge,
    /// One scrape at a time: each refills the gauges read from the store.
    scrape: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let runs = Family::<RunLabels, Counter>::default();
        registry.register(
            "klaxon_runs",
            "Runs of each job (retries included in one run), by resulting severity",
            runs.clone(),
        );
        let run_duration: Family<RunLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(RUN_BUCKETS));
        registry.register_with_unit(
            "klaxon_run_duration",
            "How long each run took, from its first try's start to its last try's end",
            Unit::Seconds,
            run_duration.clone(),
        );
        let job_silenced = Family::<JobLabels, Gauge>::default();
        registry.register(
            "klaxon_job_silenced",
            "1 while a silence or a maintenance window silences the job's alerts, else 0",
            job_silenced.clone(),
        );
        let job_up = Family::<JobLabels, Gauge>::default();
        registry.register(
            "klaxon_job_up",
            "1 when the job's current severity is ok, 0 when warning, critical or unknown; absent before its first run",
            job_up.clone(),
        );
        let lateness = Histogram::new(LATENESS_BUCKETS);
        registry.register_with_unit(
            "klaxon_scheduler_lateness",
            "How long after it was due each fire was dispatched",
            Unit::Seconds,
            lateness.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "klaxon_deliveries",
            "Delivery tries of outbox messages, by notifier and result (delivered, retry, rejected, gave_up)",
            deliveries.clone(),
        );
        let replica_failures = Family::<ReplicaLabels, Counter>::default();
        registry.register(
            "klaxon_alertmanager_replica_failures",
            "Posts to one Alertmanager replica (host:port) that it did not take, whether or not another replica took the message",
            replica_failures.clone(),
        );
        let outbox = Family::<OutboxLabels, Gauge>::default();
        registry.register(
            "klaxon_outbox_messages",
            "Messages in the outbox not delivered: pending (still tried) or given_up",
            outbox.clone(),
        );
        let offline = Gauge::default();
        registry.register(
            "klaxon_offline",
            "1 while no target of agent.online answers (network checks are not judged), else 0",
            offline.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "klaxon_build_info",
            "The klaxon version running",
            build.clone(),
        );
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        Self {
            registry,
            runs,
            run_duration,
            job_up,
            job_silenced,
            lateness,
            lateness_counts: Default::default(),
            deliveries,
            replica_failures,
            outbox,
            offline,
            scrape: Mutex::new(()),
        }
    }

    /// A run of `job` ended with `severity` after `elapsed`.
    pub fn run(&self, job: &str, severity: Severity, elapsed: Duration) {
        let labels = RunLabels {
            job: job.to_owned(),
            severity: severity.to_string(),
        };
        self.runs.get_or_create(&labels).inc();
        self.run_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// A fire due at `due` was dispatched at `now`.
    pub fn dispatched(&self, due: DateTime<Utc>, now: DateTime<Utc>) {
        let late = (now - due).to_std().unwrap_or_default();
        self.lateness.observe(late.as_secs_f64());
        let bucket = LATENESS_BUCKETS
            .iter()
            .position(|le| late.as_secs_f64() <= *le)
            .unwrap_or(LATENESS_BUCKETS.len());
        self.lateness_counts[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// Scheduler lateness so far: per bucket, its upper bound in seconds (`None`: past
    /// the last) and how many fires were that late (not cumulative).
    pub fn lateness(&self) -> Vec<(Option<f64>, u64)> {
        self.lateness_counts
            .iter()
            .enumerate()
            .map(|(i, n)| (LATENESS_BUCKETS.get(i).copied(), n.load(Ordering::Relaxed)))
            .collect()
    }

    /// A delivery try through `notifier` ended with `result`.
    pub fn delivery(&self, notifier: &str, result: DeliveryResult) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                notifier: notifier.to_owned(),
                result: result.as_str(),
            })
            .inc();
    }

    /// A post of a message through Alertmanager notifier `notifier` was not taken by its
    /// replica `replica` (`host:port`).
    pub fn replica_failure(&self, notifier: &str, replica: &str) {
        self.replica_failures
            .get_or_create(&ReplicaLabels {
                notifier: notifier.to_owned(),
                replica: replica.to_owned(),
            })
            .inc();
    }

    /// The exposition: the counters as they are, the gauges read from `store` for the
    /// jobs of `config` (the running config), and whether the machine is `offline`.
    /// Blocks on the store.
    pub fn render(
        &self,
        config: &Config,
        store: &Store,
        offline: bool,
    ) -> Result<String, StoreError> {
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.offline.set(i64::from(offline));
        self.job_up.clear();
        let now = Utc::now();
        let silences = store.silences(now, false)?;
        for job in &config.jobs {
            let silenced = crate::status::silenced(config, &silences, &job.name, now).is_some();
            self.job_silenced
                .get_or_create(&JobLabels {
                    job: job.name.clone(),
                })
                .set(i64::from(silenced));
            if let Some(severity) = store.job_state(&job.name)?.severity {
                let up = Severity::from(severity).is_ok();
                self.job_up
                    .get_or_create(&JobLabels {
                        job: job.name.clone(),
                    })
                    .set(i64::from(up));
            }
        }
        let (pending, given_up) = store
            .undelivered()?
            .values()
            .fold((0, 0), |(p, g), (jp, jg)| {
                (p + i64::from(*jp), g + i64::from(*jg))
            });
        for (state, count) in [("pending", pending), ("given_up", given_up)] {
            self.outbox
                .get_or_create(&OutboxLabels { state })
                .set(count);
        }
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            // Writing to a String cannot fail; say so rather than serve half a page.
            let _ = write!(text, "# encoding failed: {e}");
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::tests_support::load_text;

    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().parse().unwrap())
    }

    #[test]
    fn counters_and_store_gauges_are_rendered_with_their_names_and_labels() {
        let config = load_text(
            "[jobs.api]\nevery = \"1h\"\n[jobs.api.check]\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = 9\n",
        )
        .unwrap();
        let store = Store::open_in_memory().unwrap();
        let metrics = Metrics::new();
        metrics.run("api", Severity::Critical, Duration::from_millis(300));
        metrics.run("api", Severity::Critical, Duration::from_millis(30));
        let due = Utc::now();
        metrics.dispatched(due, due + chrono::Duration::milliseconds(20));
        // A clock that went back does not make a negative lateness.
        metrics.dispatched(due, due - chrono::Duration::seconds(1));
        metrics.delivery("slack", DeliveryResult::Delivered);
        metrics.delivery("slack", DeliveryResult::Retry);
        metrics.delivery("slack", DeliveryResult::Retry);
        metrics.replica_failure("am", "10.0.0.7:9093");

        let text = metrics.render(&config, &store, false).unwrap();
        assert_eq!(sample(&text, "klaxon_offline "), Some(0.0), "{text}");
        let offline = metrics.render(&config, &store, true).unwrap();
        assert_eq!(sample(&offline, "klaxon_offline "), Some(1.0), "{offline}");
        let runs = "klaxon_runs_total{job=\"api\",severity=\"critical\"} ";
        assert_eq!(sample(&text, runs), Some(2.0), "{text}");
        let count = "klaxon_run_duration_seconds_count{job=\"api\",severity=\"critical\"} ";
        assert_eq!(sample(&text, count), Some(2.0), "{text}");
        let bucket =
            "klaxon_run_duration_seconds_bucket{le=\"0.05\",job=\"api\",severity=\"critical\"} ";
        assert_eq!(sample(&text, bucket), Some(1.0), "{text}");
        assert_eq!(
            sample(&text, "klaxon_scheduler_lateness_seconds_count "),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                "klaxon_scheduler_lateness_seconds_bucket{le=\"0.001\"} "
            ),
            Some(1.0),
            "{text}"
        );
        // The dashboard's copy: one fire in the first bucket, one in `0.025`.
        let lateness = metrics.lateness();
        assert_eq!(lateness.len(), LATENESS_BUCKETS.len() + 1);
        assert_eq!(lateness[0], (Some(0.001), 1));
        assert_eq!(lateness[3], (Some(0.025), 1));
        assert_eq!(lateness.iter().map(|(_, n)| n).sum::<u64>(), 2);
        let retries = "klaxon_deliveries_total{notifier=\"slack\",result=\"retry\"} ";
        assert_eq!(sample(&text, retries), Some(2.0), "{text}");
        let replica = "klaxon_alertmanager_replica_failures_total{notifier=\"am\",replica=\"10.0.0.7:9093\"} ";
        assert_eq!(sample(&text, replica), Some(1.0), "{text}");
        assert_eq!(
            sample(&text, "klaxon_outbox_messages{state=\"pending\"} "),
            Some(0.0)
        );
        let build = format!(
            "klaxon_build_info{{version=\"{}\"}} ",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(sample(&text, &build), Some(1.0), "{text}");
        // Never ran as far as the store knows: no up/down yet.
        assert!(!text.contains("klaxon_job_up{"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn delivery_results_have_stable_label_values() {
        let all = [
            DeliveryResult::Delivered,
            DeliveryResult::Retry,
            DeliveryResult::Rejected,
            DeliveryResult::GaveUp,
        ];
        let names: Vec<_> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(names, ["delivered", "retry", "rejected", "gave_up"]);
    }
}
