//! One measured number a check reports beside its severity: a latency, a count, a
//! size. The shape follows the performance data of the monitoring-plugins guidelines
//! (`'label'=value[UOM];[warn];[crit];[min];[max]`), so a script's perfdata and the
//! built-in checks' own figures are one type.

use serde::{Deserialize, Serialize};

/// A named value with its unit and, where known, its thresholds and bounds.
///
/// Values are always finite: a check never reports NaN or infinity, so every metric
/// survives a round trip through JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// `latency_ms`, `free_bytes`, or a script's perfdata label (`load1`, `/`).
    pub name: String,
    pub value: f64,
    /// Unit of measure as perfdata writes it: `ms`, `s`, `us`, `%`, `B`, `KB`, `MB`,
    /// `GB`, `TB`, `c` (a counter); `None` for a plain number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The warning threshold, as a monitoring-plugins range (`10`, `10:`, `~:5`, `@1:3`),
    /// in the metric's unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn: Option<String>,
    /// The critical threshold, as a range like [`Metric::warn`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crit: Option<String>,
    /// The least value possible, where there is one (`0` for a size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The greatest value possible, where there is one (`100` for a percentage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

impl Metric {
    /// A plain number without unit, thresholds or bounds.
    pub fn new(name: impl Into<String>, value: f64) -> Self {
        Self {
            name: name.into(),
            value,
            unit: None,
            warn: None,
            crit: None,
            min: None,
            max: None,
        }
    }

    /// Sets the unit of measure.
    pub fn with_unit(mut self, unit: impl Into<String>) -> Self {
        self.unit = Some(unit.into());
        self
    }

    /// Sets the warning range.
    pub fn with_warn(mut self, range: impl Into<String>) -> Self {
        self.warn = Some(range.into());
        self
    }

    /// Sets the critical range.
    pub fn with_crit(mut self, range: impl Into<String>) -> Self {
        self.crit = Some(range.into());
        self
    }

    /// Sets the least possible value.
    pub fn with_min(mut self, min: f64) -> Self {
        self.min = Some(min);
        self
    }

    /// Sets the greatest possible value.
    pub fn with_max(mut self, max: f64) -> Self {
        self.max = Some(max);
        self
    }
}

/// A duration in milliseconds with microsecond precision, as `latency_ms` and
/// `connect_ms` report it.
pub(crate) fn millis(d: std::time::Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn json_round_trip_leaves_out_what_is_unset() {
        let plain = Metric::new("status", 200.0);
        let json = serde_json::to_string(&plain).unwrap();
        assert_eq!(json, r#"{"name":"status","value":200.0}"#);
        assert_eq!(serde_json::from_str::<Metric>(&json).unwrap(), plain);

        let full = Metric::new("/", 8923.0)
            .with_unit("MB")
            .with_warn("9473")
            .with_crit("10000")
            .with_min(0.0)
            .with_max(10527.0);
        let json = serde_json::to_string(&full).unwrap();
        assert_eq!(
            json,
            r#"{"name":"/","value":8923.0,"unit":"MB","warn":"9473","crit":"10000","min":0.0,"max":10527.0}"#
        );
        assert_eq!(serde_json::from_str::<Metric>(&json).unwrap(), full);
    }

    #[test]
    fn millis_keep_microseconds() {
        assert_eq!(
            millis(std::time::Duration::from_micros(1_234_567)),
            1234.567
        );
        assert_eq!(millis(std::time::Duration::ZERO), 0.0);
    }
}
