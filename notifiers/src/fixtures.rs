//! Test-only: one fixed outage of job `api`, as each event reports it, so every channel's
//! exact-payload tests describe the same alert; a CA certificate for `ca_file` tests; and
//! the config-test helpers every channel's validation tests use.

use chrono::{DateTime, FixedOffset};

use crate::{Alert, CheckInfo, Event, Severity};

fn at(rfc3339: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
}

/// The failure that opened the alert: critical after 3 of 3 attempts, with output.
pub(crate) fn failure() -> Alert {
    Alert {
        version: 1,
        event: Event::Failure,
        job: "api".into(),
        agent: "macbook".into(),
        severity: Severity::Critical,
        check: CheckInfo {
            kind: "http".into(),
            target: "https://api.example.com/health".into(),
        },
        summary: "HTTP 503 Service Unavailable".into(),
        output: Some("upstream connect error\nreset reason: overflow\n".into()),
        attempts: 3,
        max_attempts: 3,
        elapsed_ms: 7213,
        started_at: at("2026-03-29T10:15:02+11:00"),
        failing_since: Some(at("2026-03-29T10:15:02+11:00")),
        last_success: Some(at("2026-03-29T10:10:01+11:00")),
        next_run: Some(at("2026-03-29T10:20:00+11:00")),
        downtime_ms: None,
        id: "api-20260329T001502Z".into(),
        acknowledged: None,
    }
}

/// The same outage, still open four hours later.
pub(crate) fn reminder() -> Alert {
    Alert {
        event: Event::Reminder,
        started_at: at("2026-03-29T14:15:03+11:00"),
        next_run: Some(at("2026-03-29T14:20:00+11:00")),
        ..failure()
    }
}

/// The same outage, now only a warning (no output this time).
pub(crate) fn update() -> Alert {
    Alert {
        event: Event::Update,
        severity: Severity::Warning,
        summary: "latency 2.4s > 2s".into(),
        output: None,
        attempts: 1,
        elapsed_ms: 2412,
        started_at: at("2026-03-29T10:35:00+11:00"),
        next_run: Some(at("2026-03-29T10:40:00+11:00")),
        ..failure()
    }
}

/// The same outage, closed after 1 h 5 min.
pub(crate) fn recovery() -> Alert {
    Alert {
        event: Event::Recovery,
        severity: Severity::Ok,
        summary: "HTTP 200 OK".into(),
        output: None,
        attempts: 1,
        elapsed_ms: 180,
        started_at: at("2026-03-29T11:20:01+11:00"),
        last_success: Some(at("2026-03-29T11:20:01+11:00")),
        next_run: Some(at("2026-03-29T11:25:00+11:00")),
        downtime_ms: Some(3_900_000),
        ..failure()
    }
}

/// A digest's three messages from one agent: job `api` down (the failure above), job
/// `disk` a warning, job `db` recovered.
pub(crate) fn digest() -> Vec<Alert> {
    let warning = Alert {
        job: "disk".into(),
        severity: Severity::Warning,
        check: CheckInfo {
            kind: "script".into(),
            target: "check_disk /".into(),
        },
        summary: "disk 85% full".into(),
        output: None,
        attempts: 2,
        elapsed_ms: 1_350,
        id: "disk-20260329T001501Z".into(),
        ..failure()
    };
    let recovered = Alert {
        job: "db".into(),
        check: CheckInfo {
            kind: "tcp".into(),
            target: "db.internal:5432".into(),
        },
        summary: "connected".into(),
        id: "db-20260328T231000Z".into(),
        ..recovery()
    };
    vec![failure(), warning, recovered]
}

/// `n` failures of jobs `job-000`, `job-001`, … with `summary`: a storm.
pub(crate) fn storm(n: usize, summary: &str) -> Vec<Alert> {
    (0..n)
        .map(|i| Alert {
            job: format!("job-{i:03}"),
            summary: summary.into(),
            id: format!("job-{i:03}-20260329T001502Z"),
            ..failure()
        })
        .collect()
}

/// A self-signed CA certificate (P-256, valid until 2126; its key was thrown away): what a
/// `ca_file` holds.
pub(crate) const TEST_CA_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIBmTCCAT+gAwIBAgIUCEWbIEdznTiIDvZFtUnaDqqDajgwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOa2xheG9uIHRlc3QgQ0EwIBcNMjYxMTI0MDUyMDQ5WhgPMjEy
NjEwMzEwNTIwNDlaMBkxFzAVBgNVBAMMDmtsYXhvbiB0ZXN0IENBMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEzDfgbBA+b72AQ1Q+PmF/CbXZY513UGg1u/ZbYb5D
l3LbAM635Kxxpsj38K73uhD9zjDuy7r/4KnXTPByyH/PA6NjMGEwHQYDVR0OBBYE
FGrizn4H5RNE8BbwlVhC637PLNNjMB8GA1UdIwQYMBaAFGrizn4H5RNE8BbwlVhC
637PLNNjMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgIEMAoGCCqGSM49
BAMCA0gAMEUCIH6f9ic3yHGIjjpohOBUa+OkDfYloBY2A8i6IrdIoVfSAiEAlOzH
Ox/LbK+D9JQZxqBYS3bwY3y7BEpnaFVZReEzbN4=
-----END CERTIFICATE-----
";

/// A channel's table read from `toml` and validated: the spec, and every problem.
#[allow(clippy::unwrap_used)]
pub(crate) fn validated<C: crate::NotifierPlugin>(
    toml: &str,
) -> (Option<C::Spec>, Vec<crate::ConfigIssue>) {
    let config: C = toml::from_str(toml).unwrap();
    let mut issues = Vec::new();
    (config.validate(&mut issues), issues)
}

/// Where `needle`'s first appearance in `toml` is, as a config issue's span.
#[allow(clippy::unwrap_used)]
pub(crate) fn span_of(toml: &str, needle: &str) -> std::ops::Range<usize> {
    let at = toml.find(needle).unwrap();
    at..at + needle.len()
}
