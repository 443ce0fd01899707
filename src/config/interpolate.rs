//! `${VAR}`, `${file:PATH}` and `${keychain:SERVICE}` in config strings, replaced in the
//! parsed document before it is deserialized, so every other layer sees plain values and
//! every error still points at the string in the file.
//!
//! `$${` stands for a literal `${`. Substituted values are remembered (by span) so that
//! error messages about those strings can be scrubbed: they may be secrets.

use std::borrow::Cow;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Diagnostic;
use super::paths::expand_path;

/// Where `${NAME}` values come from: the process environment, then `env_file`.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// One value put into a string in place of a `${…}` reference, and where.
#[derive(Debug, Clone)]
pub struct Substituted {
    pub span: Range<usize>,
    pub value: String,
}

/// A `${file:PATH}` secret file that other users can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposedFile {
    /// Where the reference is in the config.
    pub span: Range<usize>,
    pub path: std::path::PathBuf,
    pub mode: u32,
}

pub struct Interpolator<'a> {
    pub env: &'a dyn Env,
    /// Directory `${file:relative}` paths are resolved against (the config's).
    pub base_dir: &'a Path,
    pub diagnostics: Vec<Diagnostic>,
    pub substituted: Vec<Substituted>,
    /// Secret files that are readable by group or others, once each.
    pub exposed_files: Vec<ExposedFile>,
}

impl Interpolator<'_> {
    pub fn table(&mut self, table: &mut DeTable<'_>) {
        for (_, value) in table.iter_mut() {
            self.value(value);
        }
    }

    fn value(&mut self, value: &mut Spanned<DeValue<'_>>) {
        let span = value.span();
        match value.get_mut() {
            DeValue::String(s) if s.contains("${") => {
                if let Some(new) = self.expand(s, &span) {
                    *s = Cow::Owned(new);
                }
            }
            DeValue::Array(items) => {
                for item in items.iter_mut() {
                    self.value(item);
                }
            }
            DeValue::Table(table) => self.table(table),
            _ => {}
        }
    }

    /// Expands one string; `None` (with a diagnostic) when a reference cannot be resolved.
    fn expand(&mut self, text: &str, span: &Range<usize>) -> Option<String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        let mut ok = true;
        while let Some(i) = rest.find("${") {
            if rest[..i].ends_with('$') {
                // `$${` is a literal `${`.
                out.push_str(&rest[..i - 1]);
                out.push_str("${");
                rest = &rest[i + 2..];
                continue;
            }
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let Some(end) = after.find('}') else {
                self.diagnostics.push(Diagnostic::at(
                    span.clone(),
                    "unclosed `${`: write `${NAME}`, or `$${` for a literal `${`",
                ));
                return None;
            };
            match self.resolve(&after[..end], span) {
                Ok(value) => {
                    out.push_str(&value);
                    self.substituted.push(Substituted {
                        span: span.clone(),
                        value,
                    });
                }
                Err(message) => {
                    self.diagnostics.push(Diagnostic::at(span.clone(), message));
                    ok = false;
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        ok.then_some(out)
    }

    fn resolve(&mut self, reference: &str, span: &Range<usize>) -> Result<String, String> {
        if let Some(path) = reference.strip_prefix("file:") {
            let path = expand_path(path.trim(), self.base_dir);
            let value = std::fs::read_to_string(&path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| format!("cannot read secret file `{}`: {e}", path.display()))?;
            if let Some(mode) = super::readable_by_others(&path)
                && !self.exposed_files.iter().any(|f| f.path == path)
            {
                self.exposed_files.push(ExposedFile {
                    span: span.clone(),
                    path,
                    mode,
                });
            }
            return Ok(value);
        }
        if let Some(service) = reference.strip_prefix("keychain:") {
            return keychain(service.trim());
        }
        let name = reference.trim();
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "`${{{reference}}}` is not a variable reference: use `${{NAME}}`, `${{file:PATH}}` or `${{keychain:SERVICE}}`"
            ));
        }
        self.env
            .var(name)
            .ok_or_else(|| format!("environment variable `{name}` is not set"))
    }
}

/// `${keychain:SERVICE}`: the password of the login keychain's generic password item for
/// SERVICE, as `security find-generic-password -w -s SERVICE` prints it. `security` is
/// looked up on `PATH` (`/usr/bin` on every Mac).
#[cfg(target_os = "macos")]
fn keychain(service: &str) -> Result<String, String> {
    keychain_via("security", service)
}

#[cfg(not(target_os = "macos"))]
fn keychain(service: &str) -> Result<String, String> {
    Err(format!(
        "`${{keychain:{service}}}` reads the macOS login keychain and is not available on this system: use `${{file:PATH}}` or `${{VAR}}`"
    ))
}

/// Runs `program find-generic-password -w -s SERVICE` and takes its first line of output.
/// Its stderr is kept out of the message: it may quote the item.
#[cfg(unix)]
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
fn keychain_via(program: &str, service: &str) -> Result<String, String> {
    if service.is_empty() {
        return Err("`${keychain:}` needs a service name: `${keychain:SERVICE}`".to_owned());
    }
    let output = std::process::Command::new(program)
        .args(["find-generic-password", "-w", "-s", service])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `security` to read keychain item `{service}`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "no login keychain item for service `{service}` (`security find-generic-password -s {service}` failed)"
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .trim_end_matches(['\n', '\r'])
        .to_owned())
}

/// Replaces every substituted value (of at least 4 characters, so that a short port
/// number does not blank out the text) in `text` with `***`.
pub fn redact(text: &str, substituted: &[Substituted]) -> String {
    let mut text = text.to_owned();
    for s in substituted {
        if s.value.chars().count() >= 4 {
            text = text.replace(&s.value, "***");
        }
    }
    text
}

/// Replaces every substituted value that occurs in `message` with `***`, for messages
/// about a span that had values substituted in.
pub fn scrub(message: &str, span: &Range<usize>, substituted: &[Substituted]) -> String {
    let mut message = message.to_owned();
    for s in substituted {
        let overlaps = s.span.start < span.end && span.start < s.span.end;
        if overlaps && !s.value.is_empty() {
            message = message
                .replace(&format!("{:?}", s.value), "\"***\"")
                .replace(&s.value, "***");
        }
    }
    message
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn expand(text: &str) -> Result<String, Vec<Diagnostic>> {
        let env = |name: &str| match name {
            "TOKEN" => Some("s3cret".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let dir = std::env::temp_dir();
        let mut i = Interpolator {
            env: &env,
            base_dir: &dir,
            diagnostics: Vec::new(),
            substituted: Vec::new(),
            exposed_files: Vec::new(),
        };
        i.expand(text, &(0..text.len())).ok_or(i.diagnostics)
    }

    #[test]
    fn replaces_variables_and_keeps_the_rest() {
        assert_eq!(expand("Bearer ${TOKEN}!").unwrap(), "Bearer s3cret!");
        assert_eq!(expand("${TOKEN}${EMPTY}${TOKEN}").unwrap(), "s3crets3cret");
        assert_eq!(expand("no refs $HOME").unwrap(), "no refs $HOME");
        assert_eq!(expand("$${TOKEN}").unwrap(), "${TOKEN}");
    }

    #[test]
    fn names_what_is_missing_or_malformed() {
        let d = expand("${NOPE} and ${ALSO_NOPE}").unwrap_err();
        let messages: Vec<_> = d.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "environment variable `NOPE` is not set",
                "environment variable `ALSO_NOPE` is not set"
            ]
        );
        assert_eq!(
            expand("${TOKEN").unwrap_err()[0].message,
            "unclosed `${`: write `${NAME}`, or `$${` for a literal `${`"
        );
        assert!(
            expand("${1X}").unwrap_err()[0]
                .message
                .contains("not a variable reference")
        );
    }

    /// A stand-in for macOS's `security`: answers for service `klaxon-smtp` only, and
    /// checks it was asked the way `security` wants.
    #[cfg(unix)]
    fn fake_security(dir: &Path) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("security");
        std::fs::write(
            &path,
            "#!/bin/sh\n[ \"$1 $2 $3 $4\" = \"find-generic-password -w -s klaxon-smtp\" ] || { echo 'security: item not found' >&2; exit 44; }\necho 'pa55 word'\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[cfg(unix)]
    #[test]
    fn keychain_items_come_from_security() {
        let dir = tempfile::tempdir().unwrap();
        let security = fake_security(dir.path());
        let security = security.to_str().unwrap();
        assert_eq!(keychain_via(security, "klaxon-smtp").unwrap(), "pa55 word");
        assert_eq!(
            keychain_via(security, "other").unwrap_err(),
            "no login keychain item for service `other` (`security find-generic-password -s other` failed)"
        );
        assert!(
            keychain_via("/nonexistent/security", "x")
                .unwrap_err()
                .starts_with("cannot run `security` to read keychain item `x`: ")
        );
        assert!(
            keychain_via(security, "")
                .unwrap_err()
                .contains("needs a service name")
        );
    }

    #[cfg(not(target_os = "macos"))]
    #[test]
    fn keychain_is_refused_off_macos() {
        let d = expand("${keychain:klaxon-smtp}").unwrap_err();
        assert_eq!(
            d[0].message,
            "`${keychain:klaxon-smtp}` reads the macOS login keychain and is not available on this system: use `${file:PATH}` or `${VAR}`"
        );
    }

    #[cfg(unix)]
    #[test]
    fn secret_files_others_can_read_are_noted_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        let closed = dir.path().join("closed");
        std::fs::write(&open, "a\n").unwrap();
        std::fs::write(&closed, "b\n").unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o600)).unwrap();
        let env = |_: &str| None;
        let mut i = Interpolator {
            env: &env,
            base_dir: dir.path(),
            diagnostics: Vec::new(),
            substituted: Vec::new(),
            exposed_files: Vec::new(),
        };
        let text = "${file:open}${file:closed}${file:open}";
        assert_eq!(i.expand(text, &(3..9)).unwrap(), "aba");
        assert_eq!(
            i.exposed_files,
            [ExposedFile {
                span: 3..9,
                path: open,
                mode: 0o100640
            }]
        );
    }

    #[test]
    fn scrub_hides_substituted_values() {
        let subs = [Substituted {
            span: 10..20,
            value: "hunter2".to_owned(),
        }];
        assert_eq!(
            scrub(
                "invalid type: string \"hunter2\", expected u16",
                &(12..14),
                &subs
            ),
            "invalid type: string \"***\", expected u16"
        );
        assert_eq!(scrub("hunter2", &(30..40), &subs), "hunter2");
    }
}
