//! What every check's validation shares beyond [`klaxon_config_core`] (the located
//! problem, durations and sizes, re-exported here): percentages, paths and regexes.

use std::path::{Path, PathBuf};

use toml::Spanned;

pub use klaxon_config_core::{ConfigIssue, duration, parse_size, positive_duration, size};

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

/// [`path`], which must then be absolute (`~/` counts: it is expanded).
pub(crate) fn absolute_path(
    value: &Spanned<String>,
    key: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<PathBuf> {
    let p = path(value, key, issues)?;
    if p.is_absolute() {
        return Some(p);
    }
    issues.push(ConfigIssue::new(
        value.span(),
        format!(
            "`{key}` must be absolute or start with `~/`, found `{}`",
            value.get_ref()
        ),
    ));
    None
}

/// An optional count, 0 or more: `Some(None)` when it is not set, `None` (reported as
/// `key`) when it is negative.
pub(crate) fn count(
    raw: &Option<Spanned<i64>>,
    key: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<Option<u64>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    match u64::try_from(*raw.get_ref()) {
        Ok(n) => Some(Some(n)),
        Err(_) => {
            issues.push(ConfigIssue::new(
                raw.span(),
                format!("`{key}` must be 0 or more, found {}", raw.get_ref()),
            ));
            None
        }
    }
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

/// A host name or IP address (IPv6 with or without brackets), without its brackets.
pub(crate) fn host(value: &Spanned<String>, issues: &mut Vec<ConfigIssue>) -> Option<String> {
    let raw = value.get_ref().trim();
    let unbracketed = raw
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(raw);
    if unbracketed.is_empty()
        || unbracketed.contains(|c: char| c.is_whitespace() || "/@?#[]".contains(c))
    {
        issues.push(ConfigIssue::new(
            value.span(),
            format!(
                "`host`: expected a host name or IP address like `db.example.com` or \
                 `10.0.0.5`, found `{}`",
                value.get_ref()
            ),
        ));
        return None;
    }
    Some(unbracketed.to_owned())
}

/// Resolves `host` on the checks' pool (as `tokio::net::lookup_host` would on tokio's: a
/// slow resolver holds a thread for as long as it likes); failures start with `DNS: `.
pub(crate) async fn lookup(host: &str, port: u16) -> Result<Vec<std::net::SocketAddr>, String> {
    let host = host.to_owned();
    let addrs = crate::blocking::CHECKS
        .run(move || std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port)))
        .await
        .map_err(|e| format!("DNS: the lookup failed: {e}"))?
        .map_err(|e| crate::text::dns_failure(&e.to_string()))?;
    Ok(addrs.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

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
