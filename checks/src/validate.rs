//! What every check's validation shares: a located problem, and parsing of the value
//! types the config writes as strings: durations, sizes, percentages, paths and regexes.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

/// One problem in a check's config, at a byte range of the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub span: Range<usize>,
    pub message: String,
}

impl ConfigIssue {
    pub fn new(span: Range<usize>, message: impl Into<String>) -> Self {
        Self {
            span,
            message: message.into(),
        }
    }
}

/// Parses a humantime duration ("30s", "5m", "1h30m"), reporting `key` on failure.
pub(crate) fn duration(
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
pub(crate) fn positive_duration(
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
pub(crate) fn parse_size(text: &str) -> Option<u64> {
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
pub(crate) fn size(
    value: &Spanned<String>,
    key: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<u64> {
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

/// Parses a percentage like `10%` or `2.5%` into its number (`10.0`); `None` when the
/// text does not end in `%` or the number is not finite.
pub(crate) fn parse_percent(text: &str) -> Option<f64> {
    let number = text.trim().strip_suffix('%')?.trim_end();
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    number.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Expands a leading `~` or `~/` to `home`. Other paths, `~user` among them, are returned
/// as they are; `None` when the path needs a home directory and there is none.
pub(crate) fn expand_home(path: &str, home: Option<&Path>) -> Option<PathBuf> {
    match path.strip_prefix('~') {
        Some("") => home.map(Path::to_path_buf),
        Some(rest) if rest.starts_with('/') => home.map(|h| h.join(rest.trim_start_matches('/'))),
        _ => Some(PathBuf::from(path)),
    }
}

/// Expands `~` in a configured path with the user's home directory, reporting `key` when
/// there is none.
pub(crate) fn path(
    value: &Spanned<String>,
    key: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<PathBuf> {
    if value.get_ref().is_empty() {
        issues.push(ConfigIssue::new(
            value.span(),
            format!("`{key}` must not be empty"),
        ));
        return None;
    }
    let expanded = expand_home(value.get_ref(), std::env::home_dir().as_deref());
    if expanded.is_none() {
        issues.push(ConfigIssue::new(
            value.span(),
            format!(
                "`{key}`: cannot expand `~` in `{}`: the home directory is unknown",
                value.get_ref()
            ),
        ));
    }
    expanded
}

/// Compiles a regex, reporting `key` and regex's own one-line reason on failure.
pub(crate) fn regex(
    value: &Spanned<String>,
    key: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<regex::Regex> {
    match regex::Regex::new(value.get_ref()) {
        Ok(r) => Some(r),
        Err(e) => {
            issues.push(ConfigIssue::new(
                value.span(),
                format!(
                    "`{key}`: `{}` is not a valid regex: {}",
                    value.get_ref(),
                    regex_reason(&e)
                ),
            ));
            None
        }
    }
}

/// regex's syntax errors draw a caret diagram over several lines; a config message needs
/// only the closing `error: …` line.
fn regex_reason(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_owned)
        .unwrap_or_else(|| text.lines().map(str::trim).collect::<Vec<_>>().join(" "))
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

    #[test]
    fn percents() {
        assert_eq!(parse_percent("10%"), Some(10.0));
        assert_eq!(parse_percent(" 2.5 %"), Some(2.5));
        for bad in ["10", "%", "x%", "-5%", "1e2%"] {
            assert_eq!(parse_percent(bad), None, "{bad}");
        }
    }

    #[test]
    fn home_expansion() {
        let home = Path::new("/home/u");
        assert_eq!(expand_home("~", Some(home)), Some(PathBuf::from("/home/u")));
        assert_eq!(
            expand_home("~/backups", Some(home)),
            Some(PathBuf::from("/home/u/backups"))
        );
        assert_eq!(expand_home("/srv", None), Some(PathBuf::from("/srv")));
        assert_eq!(
            expand_home("~bob/x", Some(home)),
            Some(PathBuf::from("~bob/x"))
        );
        assert_eq!(expand_home("~/x", None), None);
    }

    #[test]
    fn regex_reason_is_one_line() {
        let mut issues = Vec::new();
        let value = Spanned::new(3..6, "(".to_owned());
        assert!(regex(&value, "body_regex", &mut issues).is_none());
        assert_eq!(
            issues,
            vec![ConfigIssue::new(
                3..6,
                "`body_regex`: `(` is not a valid regex: unclosed group"
            )]
        );
    }
}
