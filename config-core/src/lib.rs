//! What both plugin crates (`klaxon-checks`, `klaxon-notifiers`) share to validate
//! their config, and nothing else: a located problem ([`ConfigIssue`]), the one way a
//! table becomes a validated spec ([`parse_table`], failing with [`ParseError`]),
//! parsing of the durations and sizes the config writes as strings, and how a plugin
//! declares which of its keys hold secrets ([`SecretKey`]). A leaf: it depends on no
//! other klaxon crate, so the plugin crates stay independent of each other and of the
//! agent.

mod parse;
mod secret;

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

pub use parse::{ParseError, parse_table, unknown_type};
pub use secret::{SecretKey, SecretKind, Seg};

/// One problem in a plugin's config, at a byte range of the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Byte range of the offending value (or key) in the config file.
    pub span: Range<usize>,
    /// What is wrong: lowercase, no trailing period, values in backticks.
    pub message: String,
}

impl ConfigIssue {
    /// A problem at `span`.
    pub fn new(span: Range<usize>, message: impl Into<String>) -> Self {
        Self {
            span,
            message: message.into(),
        }
    }
}

/// Parses a humantime duration ("30s", "5m", "1h30m"), reporting `key` on failure.
pub fn duration(
    value: &Spanned<String>,
    key: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<Duration> {
    match humantime::parse_duration(value.get_ref().trim()) {
        Ok(d) => Some(d),
        Err(_) => {
            issues.push(ConfigIssue::new(
                value.span(),
                format!(
                    "`{key}`: expected a duration like `30s`, `5m` or `1h30m`, found `{}`",
                    value.get_ref()
                ),
            ));
            None
        }
    }
}

/// Like [`duration`], but zero is rejected too: for limits where zero means nothing.
pub fn positive_duration(
    value: &Spanned<String>,
    key: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<Duration> {
    let d = duration(value, key, issues)?;
    if d.is_zero() {
        issues.push(ConfigIssue::new(
            value.span(),
            format!("`{key}` must be greater than zero"),
        ));
        return None;
    }
    Some(d)
}

/// Parses a size in bytes: a number, optional spaces, then a unit.
///
/// Units are case-insensitive: `B`; decimal `KB`, `MB`, `GB`, `TB` (powers of 1000, as
/// disks are sold); binary `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024). The number may
/// have a fraction (`1.5GB`). A bare number is rejected: `500` could mean anything.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    let multiplier: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return None,
    };
    let bytes = (number * multiplier as f64).round();
    // Above 2^64 the cast would saturate silently; no real size is that large.
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Parses a size with [`parse_size`], reporting `key` on failure.
pub fn size(value: &Spanned<String>, key: &str, issues: &mut Vec<ConfigIssue>) -> Option<u64> {
    let parsed = parse_size(value.get_ref());
    if parsed.is_none() {
        issues.push(ConfigIssue::new(
            value.span(),
            format!(
                "`{key}`: expected a size like `500MB`, `2GB` or `1GiB`, found `{}`",
                value.get_ref()
            ),
        ));
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("500MB"), Some(500_000_000));
        assert_eq!(parse_size("2GB"), Some(2_000_000_000));
        assert_eq!(parse_size("1.5 GB"), Some(1_500_000_000));
        assert_eq!(parse_size("1KiB"), Some(1024));
        assert_eq!(parse_size("1mib"), Some(1 << 20));
        assert_eq!(parse_size("3GiB"), Some(3 << 30));
        assert_eq!(parse_size("7B"), Some(7));
        assert_eq!(parse_size("2TB"), Some(2_000_000_000_000));
        for bad in [
            "", "500", "MB", "1.MB", ".5MB", "1..2MB", "5 GiGs", "-1MB", "1e3MB",
        ] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert_eq!(parse_size("99999999999TiB"), None);
    }
}
