//! Which config values are secrets, found in the parsed document before `${…}` is
//! replaced, so that the file's own text can be judged: a secret written literally in a
//! file others can read is warned about, and error snippets never show a secret's text.
//!
//! Each plugin declares the secret keys of its own table (`SECRET_KEYS` of
//! `klaxon_notifiers::NotifierPlugin` and `klaxon_checks::CheckPlugin`); [`SECRET_FIELDS`]
//! lists the few outside any plugin. The validated model holds each as a `SecretString`.
//! A key one plugin declares is a secret in every table of its crate: a mistyped `type`
//! still has its secrets masked.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use klaxon_checks::CheckSpec;
use klaxon_config_core::{SecretKey, SecretKind as Kind};
use klaxon_notifiers::NotifierSpec;

/// Segment of a field path outside a plugin's table: a fixed key, or any key (`*`: a job
/// name).
#[derive(Debug, Clone, Copy)]
enum Seg {
    Key(&'static str),
    Any,
}

use Seg::{Any, Key};

/// Every place outside a plugin's table where a secret may be written in a config file.
const SECRET_FIELDS: &[(&[Seg], Kind)] = &[
    (&[Key("agent"), Key("listen_token")], Kind::Always),
    (&[Key("agent"), Key("heartbeat"), Key("url")], Kind::Always),
    (&[Key("jobs"), Any, Key("heartbeat")], Kind::Always),
];

/// A header or environment variable whose value is a credential.
fn names_a_secret(name: &str) -> bool {
    klaxon_checks::http::is_secret_name(name)
}

/// One secret value in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretValue {
    /// `notifiers.slack.webhook_url`
    pub field: String,
    /// The value's span in the file, quotes included.
    pub span: Range<usize>,
    /// Written in the file rather than taken from `${…}`.
    pub literal: bool,
}

/// Every secret value in `doc` (parsed, not yet interpolated), in file order.
pub fn find(doc: &DeTable<'_>) -> Vec<SecretValue> {
    let mut found = Vec::new();
    let mut path = Vec::new();
    walk_table(doc, &mut path, &mut found);
    found.sort_by_key(|s| s.span.start);
    found
}

/// Each step of a path: the key, or `None` for an array item.
type Path<'p> = Vec<Option<&'p str>>;

fn walk_table<'d>(table: &'d DeTable<'_>, path: &mut Path<'d>, found: &mut Vec<SecretValue>) {
    for (key, value) in table.iter() {
        path.push(Some(key.get_ref().as_ref()));
        walk(value, path, found);
        path.pop();
    }
}

fn walk<'d>(value: &'d Spanned<DeValue<'_>>, path: &mut Path<'d>, found: &mut Vec<SecretValue>) {
    match value.get_ref() {
        DeValue::String(text) => {
            let Some(kind) = kind_of(path) else { return };
            let reference = text.contains("${");
            let secret = match kind {
                Kind::Always => true,
                Kind::UrlCredentials => has_password(text),
            };
            if secret {
                found.push(SecretValue {
                    field: shown(path),
                    span: value.span(),
                    literal: !reference,
                });
            }
        }
        DeValue::Table(table) => walk_table(table, path, found),
        DeValue::Array(items) => {
            for item in items {
                path.push(None);
                walk(item, path, found);
                path.pop();
            }
        }
        _ => {}
    }
}

fn kind_of(path: &[Option<&str>]) -> Option<Kind> {
    let outside = SECRET_FIELDS.iter().find_map(|(pattern, kind)| {
        let matches = pattern.len() == path.len()
            && pattern
                .iter()
                .zip(path)
                .all(|(seg, step)| match (seg, step) {
                    (Key(k), Some(s)) => k == s,
                    (Any, Some(_)) => true,
                    _ => false,
                });
        matches.then_some(*kind)
    });
    outside.or_else(|| match path {
        [Some("notifiers"), Some(_), rest @ ..] => in_plugin(rest, NotifierSpec::SECRET_KEYS),
        [Some("jobs"), Some(_), Some("check"), rest @ ..] => {
            in_plugin(rest, CheckSpec::SECRET_KEYS)
        }
        _ => None,
    })
}

/// How `rest` (the path inside a plugin's table) holds a secret, by the keys its crate's
/// plugins declare.
fn in_plugin(rest: &[Option<&str>], keys: &[&[SecretKey]]) -> Option<Kind> {
    use klaxon_config_core::Seg as P;
    keys.iter().copied().flatten().find_map(|key| {
        let matches = key.path.len() == rest.len()
            && key
                .path
                .iter()
                .zip(rest)
                .all(|(seg, step)| match (seg, step) {
                    (P::Key(k), Some(s)) => k == s,
                    (P::SecretName, Some(s)) => names_a_secret(s),
                    (P::Item, None) => true,
                    _ => false,
                });
        matches.then_some(key.kind)
    })
}

/// Whether a URL carries a password (or a `${…}` in its user part). Unparsable text is
/// not judged here: validation reports it without echoing it.
fn has_password(text: &str) -> bool {
    let Some((_, rest)) = text.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// `jobs.api.check.headers.Authorization`; array items as `[]`.
fn shown(path: &[Option<&str>]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Some(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            None => out.push_str("[]"),
        }
    }
    out
}

/// The rows of job `job`'s check table (its `type` already taken out) as the dashboard
/// shows them: dotted keys in file order, each value as written after `${…}`, with every
/// secret the check plugins declare shown as `***` (a URL's password only) and every
/// value that came from `${…}` as `***` too.
pub fn check_rows<'d>(
    job: &'d str,
    table: &'d DeTable<'_>,
    substituted: &[super::interpolate::Substituted],
) -> Vec<(String, String)> {
    let mut path: Path<'d> = vec![Some("jobs"), Some(job), Some("check")];
    let mut out = Vec::new();
    for (key, value) in table.iter() {
        path.push(Some(key.get_ref().as_ref()));
        rows_of(
            value,
            &mut path,
            toml_key(key.get_ref()),
            substituted,
            &mut out,
        );
        path.pop();
    }
    out
}

fn rows_of<'d>(
    value: &'d Spanned<DeValue<'_>>,
    path: &mut Path<'d>,
    key: String,
    substituted: &[super::interpolate::Substituted],
    out: &mut Vec<(String, String)>,
) {
    let nested =
        |v: &Spanned<DeValue<'_>>| matches!(v.get_ref(), DeValue::Table(_) | DeValue::Array(_));
    match value.get_ref() {
        DeValue::Table(table) => {
            for (k, v) in table.iter() {
                path.push(Some(k.get_ref().as_ref()));
                let key = format!("{key}.{}", toml_key(k.get_ref()));
                rows_of(v, path, key, substituted, out);
                path.pop();
            }
        }
        DeValue::Array(items) if !items.iter().any(nested) => {
            path.push(None);
            let shown: Vec<String> = items
                .iter()
                .map(|item| shown_scalar(item.get_ref(), path, substituted))
                .collect();
            path.pop();
            out.push((key, format!("[{}]", shown.join(", "))));
        }
        DeValue::Array(items) => {
            for (n, item) in items.iter().enumerate() {
                path.push(None);
                rows_of(item, path, format!("{key}[{n}]"), substituted, out);
                path.pop();
            }
        }
        scalar => out.push((key, shown_scalar(scalar, path, substituted))),
    }
}

/// A key as TOML would write it: bare when it can be, else quoted.
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// A scalar as TOML would write it, its secret parts as `***`.
fn shown_scalar(
    value: &DeValue<'_>,
    path: &[Option<&str>],
    substituted: &[super::interpolate::Substituted],
) -> String {
    match value {
        DeValue::String(text) => match kind_of(path) {
            Some(Kind::Always) => "***".to_owned(),
            kind => {
                let text = super::interpolate::redact(text, substituted);
                let text = match kind {
                    Some(Kind::UrlCredentials) => without_password(&text),
                    _ => text,
                };
                format!("{text:?}")
            }
        },
        DeValue::Integer(n) => n.to_string(),
        DeValue::Float(f) => f.to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(d) => d.to_string(),
        DeValue::Array(_) | DeValue::Table(_) => String::new(),
    }
}

/// `https://user:***@host/…`: a URL with the password of its user part masked.
fn without_password(text: &str) -> String {
    if !has_password(text) {
        return text.to_owned();
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return text.to_owned();
    };
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    format!("{scheme}://{user}:***@{host}{tail}")
}

/// `text` with the content of every literal secret value overwritten by `*` (quotes,
/// line breaks and byte offsets stay), for showing lines of the file in errors. A
/// `${…}` reference is shown: its name is no secret.
pub fn mask(text: &str, secrets: &[SecretValue]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for s in secrets.iter().filter(|s| s.literal) {
        let end = s.span.end.min(bytes.len());
        for b in &mut bytes[s.span.start.min(end)..end] {
            if !matches!(b, b'"' | b'\'' | b'\n' | b'\r') {
                *b = b'*';
            }
        }
    }
    // Only ASCII bytes were written, each over a whole value: no character is split
    // except inside a masked value, where every byte became `*`.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn secrets(text: &str) -> Vec<(String, String, bool)> {
        let doc = DeTable::parse(text).unwrap();
        find(doc.get_ref())
            .into_iter()
            .map(|s| (s.field, text[s.span].to_owned(), s.literal))
            .collect()
    }

    #[test]
    fn finds_every_kind_of_secret_field() {
        let text = r#"
[agent]
listen_token = "tok"
heartbeat = { url = "${HB}", every = "1m" }
[notifiers.slack]
type = "slack"
webhook_url = "https://hooks.slack.com/services/T/B/x"
[notifiers.mail]
type = "email"
username = "me"
password = "${file:pw}"
[notifiers.hook]
type = "webhook"
url = "https://u:p@example.com/hook"
secret = "s"
[notifiers.am]
type = "alertmanager"
urls = ["http://127.0.0.1:9093", "http://a:${P}@10.0.0.1:9093"]
[jobs.api]
every = "1m"
heartbeat = "https://hc-ping.com/uuid"
[jobs.api.check]
type = "http"
url = "https://example.com/health"
headers = { Accept = "x", Authorization = "Bearer t", "X-Api-Key" = "k" }
basic_auth = { username = "u", password = "pw" }
bearer_token = "${T}"
[jobs.s.check]
type = "script"
env = { LC_ALL = "C", PGPASSWORD = "pg" }
"#;
        let got = secrets(text);
        let expected: Vec<(String, String, bool)> = [
            ("agent.listen_token", "\"tok\"", true),
            ("agent.heartbeat.url", "\"${HB}\"", false),
            (
                "notifiers.slack.webhook_url",
                "\"https://hooks.slack.com/services/T/B/x\"",
                true,
            ),
            ("notifiers.mail.password", "\"${file:pw}\"", false),
            (
                "notifiers.hook.url",
                "\"https://u:p@example.com/hook\"",
                true,
            ),
            ("notifiers.hook.secret", "\"s\"", true),
            (
                "notifiers.am.urls[]",
                "\"http://a:${P}@10.0.0.1:9093\"",
                false,
            ),
            ("jobs.api.heartbeat", "\"https://hc-ping.com/uuid\"", true),
            ("jobs.api.check.headers.Authorization", "\"Bearer t\"", true),
            ("jobs.api.check.headers.X-Api-Key", "\"k\"", true),
            ("jobs.api.check.basic_auth.password", "\"pw\"", true),
            ("jobs.api.check.bearer_token", "\"${T}\"", false),
            ("jobs.s.check.env.PGPASSWORD", "\"pg\"", true),
        ]
        .into_iter()
        .map(|(f, v, l)| (f.to_owned(), v.to_owned(), l))
        .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn masking_keeps_offsets_and_quotes() {
        let text = "a = 1\npassword = \"hunter2\"\n";
        let doc = DeTable::parse("[notifiers.m]\npassword = \"hunter2\"\n").unwrap();
        assert_eq!(find(doc.get_ref()).len(), 1);
        let start = text.find('"').unwrap();
        let s = SecretValue {
            field: "x".into(),
            span: start..start + 9,
            literal: true,
        };
        let masked = mask(text, &[s]);
        assert_eq!(masked, "a = 1\npassword = \"*******\"\n");
        assert_eq!(masked.len(), text.len());
    }

    fn rows(
        check: &str,
        substituted: &[super::super::interpolate::Substituted],
    ) -> Vec<(String, String)> {
        let doc = DeTable::parse(check).unwrap();
        check_rows("api", doc.get_ref(), substituted)
    }

    #[test]
    fn check_rows_are_the_table_as_written_with_secrets_masked() {
        let text = r#"
url = "https://me:hunter2@example.com:8443/health?x=1"
headers = { Authorization = "Bearer t0k", Accept = "application/json" }
basic_auth = { username = "me", password = "pw" }
expect = { status = [200, 204], body_contains = "ok \"quoted\"" }
timeout_factor = 1.5
follow = false
"#;
        let got = rows(text, &[]);
        let want = [
            ("url", r#""https://me:***@example.com:8443/health?x=1""#),
            ("headers.Authorization", "***"),
            ("headers.Accept", r#""application/json""#),
            ("basic_auth.username", r#""me""#),
            ("basic_auth.password", "***"),
            ("expect.status", "[200, 204]"),
            ("expect.body_contains", r#""ok \"quoted\"""#),
            ("timeout_factor", "1.5"),
            ("follow", "false"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn check_rows_mask_substituted_values_and_index_arrays_of_tables() {
        let text = r#"
command = ["backup", "--key", "s3cr3t-value"]
env = { PGPASSWORD = "pg", HOME = "/home/me" }
"odd.key" = [{ a = 1 }, { a = 2 }]
url = "https://example.com/no-password"
"#;
        let substituted = [super::super::interpolate::Substituted {
            span: 0..0,
            value: "s3cr3t-value".into(),
        }];
        let got = rows(text, &substituted);
        let want = [
            ("command", r#"["backup", "--key", "***"]"#),
            ("env.PGPASSWORD", "***"),
            ("env.HOME", r#""/home/me""#),
            (r#""odd.key"[0].a"#, "1"),
            (r#""odd.key"[1].a"#, "2"),
            ("url", r#""https://example.com/no-password""#),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(got, want);
    }
}
