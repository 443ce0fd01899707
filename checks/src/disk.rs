//! The `disk` check: its config (`path`, `min_free` as a percentage or a size) and
//! validation. Its runtime comes in a later version; [`crate::Check::build`] reports it
//! as unsupported until then.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::validate::{self, ConfigIssue};

/// The `[jobs.NAME.check]` table of `type = "disk"`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// Any path on the file system to watch; `~` is expanded.
    pub path: Spanned<String>,
    /// `"10%"`, or a size like `"5GB"` (see [`MinFree`]).
    pub min_free: Spanned<String>,
}

/// How much free space the file system must keep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MinFree {
    /// Percent of the file system's size, more than 0 and less than 100.
    Percent(f64),
    /// Bytes: decimal units (`KB`, `MB`, `GB`, `TB`: powers of 1000) or binary ones
    /// (`KiB`, `MiB`, `GiB`, `TiB`: powers of 1024).
    Bytes(u64),
}

/// A validated `disk` check.
#[derive(Clone, Debug, PartialEq)]
pub struct DiskSpec {
    /// Absolute, `~` expanded.
    pub path: PathBuf,
    pub min_free: MinFree,
}

impl DiskSpec {
    /// The path watched.
    pub fn target(&self) -> String {
        self.path.display().to_string()
    }
}

impl DiskConfig {
    /// Checks every value, pushing each problem to `issues`.
    pub fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<DiskSpec> {
        let path = validate::path(&self.path, "path", issues).and_then(|p| {
            if p.is_absolute() {
                Some(p)
            } else {
                issues.push(ConfigIssue::new(
                    self.path.span(),
                    format!(
                        "`path` must be absolute or start with `~/`, found `{}`",
                        self.path.get_ref()
                    ),
                ));
                None
            }
        });
        let min_free = min_free(&self.min_free, issues);
        Some(DiskSpec {
            path: path?,
            min_free: min_free?,
        })
    }
}

fn min_free(raw: &Spanned<String>, issues: &mut Vec<ConfigIssue>) -> Option<MinFree> {
    let text = raw.get_ref();
    if let Some(percent) = validate::parse_percent(text) {
        if percent > 0.0 && percent < 100.0 {
            return Some(MinFree::Percent(percent));
        }
        issues.push(ConfigIssue::new(
            raw.span(),
            format!("`min_free`: `{text}` must be more than 0% and less than 100%"),
        ));
        return None;
    }
    match validate::parse_size(text) {
        Some(0) => {
            issues.push(ConfigIssue::new(
                raw.span(),
                "`min_free` must be greater than zero",
            ));
            None
        }
        Some(bytes) => Some(MinFree::Bytes(bytes)),
        None => {
            issues.push(ConfigIssue::new(
                raw.span(),
                format!(
                    "`min_free`: expected a percentage like `10%` or a size like `5GB`, \
                     found `{text}`"
                ),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::test_support::{config, issues_of, try_config};

    fn valid(text: &str) -> DiskSpec {
        config::<DiskConfig>(text)
            .validate(&mut Vec::new())
            .unwrap()
    }

    #[test]
    fn percent_and_size() {
        let spec = valid("path = \"/\"\nmin_free = \"10%\"");
        assert_eq!(spec.min_free, MinFree::Percent(10.0));
        assert_eq!(spec.target(), "/");
        let spec = valid("path = \"/var/lib\"\nmin_free = \"5GB\"");
        assert_eq!(spec.min_free, MinFree::Bytes(5_000_000_000));
        let spec = valid("path = \"/\"\nmin_free = \"512 MiB\"");
        assert_eq!(spec.min_free, MinFree::Bytes(512 << 20));
        if let Some(home) = std::env::home_dir() {
            let spec = valid("path = \"~/data\"\nmin_free = \"1%\"");
            assert_eq!(spec.path, home.join("data"));
        }
    }

    #[test]
    fn invalid_values_are_located() {
        let text = "path = \"data\"\nmin_free = \"lots\"";
        let issues = issues_of(text, DiskConfig::validate);
        let got: Vec<(&str, &str)> = issues
            .iter()
            .map(|i| (&text[i.span.clone()], i.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "\"data\"",
                    "`path` must be absolute or start with `~/`, found `data`"
                ),
                (
                    "\"lots\"",
                    "`min_free`: expected a percentage like `10%` or a size like `5GB`, found `lots`"
                ),
            ]
        );
        for (value, message) in [
            (
                "150%",
                "`min_free`: `150%` must be more than 0% and less than 100%",
            ),
            (
                "0%",
                "`min_free`: `0%` must be more than 0% and less than 100%",
            ),
            ("0GB", "`min_free` must be greater than zero"),
            (
                "10",
                "`min_free`: expected a percentage like `10%` or a size like `5GB`, found `10`",
            ),
        ] {
            let text = format!("path = \"/\"\nmin_free = \"{value}\"");
            let issues = issues_of(&text, DiskConfig::validate);
            let messages: Vec<&str> = issues.iter().map(|i| i.message.as_str()).collect();
            assert_eq!(messages, [message]);
            assert_eq!(&text[issues[0].span.clone()], format!("\"{value}\""));
        }
    }

    #[test]
    fn unknown_and_missing_keys_are_rejected() {
        let err = try_config::<DiskConfig>("path = \"/\"\nmin_free = \"1%\"\nmax_used = \"90%\"")
            .unwrap_err();
        assert!(
            err.message().starts_with("unknown field `max_used`"),
            "{err}"
        );
        let err = try_config::<DiskConfig>("path = \"/\"").unwrap_err();
        assert!(
            err.message().starts_with("missing field `min_free`"),
            "{err}"
        );
    }
}
