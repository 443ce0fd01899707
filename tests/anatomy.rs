//! The plugin anatomy (README "Writing a plugin"): every type registered in `checks!`
//! and `notifiers!` parses from its table in `config/reference.toml` the way the agent
//! reads it (`CheckSpec::parse`, `NotifierSpec::parse`: straight to the validated spec),
//! keeps its `type` through `kind()`, and is documented in README.md. A type registered
//! without its example or its documentation fails here.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use klaxon_checks::CheckSpec;
use klaxon_config_core::ParseError;
use klaxon_notifiers::NotifierSpec;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn reference_path() -> PathBuf {
    root().join("config/reference.toml")
}

/// Stand-ins for the secrets the reference reads from the environment.
fn env(name: &str) -> Option<String> {
    match name {
        "SLACK_WEBHOOK_URL" => Some("https://hooks.slack.com/services/T0/B0/x".to_owned()),
        "TEAMS_WEBHOOK_URL" => Some("https://example.webhook.office.com/x".to_owned()),
        "DISCORD_WEBHOOK_URL" | "MATTERMOST_WEBHOOK_URL" | "GOOGLECHAT_WEBHOOK_URL" => {
            Some("https://hooks.example.com/x".to_owned())
        }
        "MATRIX_ACCESS_TOKEN" => Some("not-a-real-secret".to_owned()),
        "SMTP_PASSWORD" | "HOOK_SECRET" | "KLAXON_TOKEN" => Some("not-a-real-secret".to_owned()),
        "PAGERDUTY_ROUTING_KEY" | "OPSGENIE_API_KEY" => Some("not-a-real-secret".to_owned()),
        "NTFY_TOPIC" | "NTFY_TOKEN" | "PUSHOVER_TOKEN" | "PUSHOVER_USER" => {
            Some("not-a-real-secret".to_owned())
        }
        "TELEGRAM_BOT_TOKEN" | "GOTIFY_TOKEN" => Some("not-a-real-secret".to_owned()),
        _ => None,
    }
}

/// The reference with every `${NAME}` it reads from the environment replaced by its
/// [`env`] stand-in, as the agent replaces it before a plugin sees its table.
fn reference() -> String {
    let mut text = std::fs::read_to_string(reference_path()).unwrap();
    while let Some(start) = text.find("${") {
        let end = start + text[start..].find('}').unwrap();
        let name = &text[start + 2..end];
        // `${file:PATH}` and the like are only named in comments.
        let value = env(name).unwrap_or_else(|| name.replace(':', "="));
        text.replace_range(start..=end, &value);
    }
    text
}

fn table<'a>(value: &'a Spanned<DeValue<'static>>, what: &str) -> &'a DeTable<'static> {
    match value.get_ref() {
        DeValue::Table(t) => t,
        _ => panic!("{what} is not a table"),
    }
}

/// A plugin's table in the reference: its `type`, and the rest as the agent hands it to
/// the plugin's `parse`.
struct Example {
    at: String,
    kind: String,
    body: Spanned<DeValue<'static>>,
}

fn example(at: String, value: &Spanned<DeValue<'static>>, shared: &[&str]) -> Example {
    let mut body = table(value, &at).clone();
    let kind = body
        .remove("type")
        .and_then(|t| t.get_ref().as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("{at} has no `type`"));
    for key in shared {
        body.remove(*key);
    }
    Example {
        at,
        kind,
        body: Spanned::new(value.span(), DeValue::Table(body)),
    }
}

/// Every `[jobs.NAME.check]` and every `[notifiers.NAME]` of the reference.
fn examples() -> (Vec<Example>, Vec<Example>) {
    let text: &'static str = reference().leak();
    let doc = DeTable::parse(text).unwrap().into_inner();
    let mut checks = Vec::new();
    for (name, job) in table(doc.get("jobs").unwrap(), "jobs") {
        let at = format!("jobs.{}", name.get_ref());
        if let Some(check) = table(job, &at).get("check") {
            checks.push(example(format!("{at}.check"), check, &[]));
        }
    }
    let mut notifiers = Vec::new();
    for (name, value) in table(doc.get("notifiers").unwrap(), "notifiers") {
        let at = format!("notifiers.{}", name.get_ref());
        // The keys every notifier table shares, which the agent takes off before the
        // channel's own deserializer sees the rest.
        notifiers.push(example(at, value, klaxon::config::ROUTING_KEYS));
    }
    (checks, notifiers)
}

fn unique(types: &[&str]) {
    let set: BTreeSet<&str> = types.iter().copied().collect();
    assert_eq!(
        set.len(),
        types.len(),
        "a `type` is registered twice: {types:?}"
    );
}

#[test]
fn every_type_is_registered_once() {
    unique(CheckSpec::TYPES);
    unique(NotifierSpec::TYPES);
}

/// Every one of `types` has an example in the reference, which its crate's `parse`
/// (`read`: the `type`, the rest of the table; the kind of the spec read back) reads
/// and validates as that type, and a misspelt `type` is refused naming every
/// registered one.
fn each_type_reads_as_itself(
    what: &str,
    types: &[&str],
    examples: &[Example],
    read: impl Fn(&str, Spanned<DeValue<'static>>) -> Result<&'static str, ParseError>,
) {
    for kind in types {
        let found: Vec<&Example> = examples.iter().filter(|e| e.kind == *kind).collect();
        assert!(
            !found.is_empty(),
            "{what} type `{kind}` has no example table in config/reference.toml"
        );
        for e in found {
            let read = read(kind, e.body.clone()).unwrap_or_else(|err| panic!("{}: {err}", e.at));
            assert_eq!(read, *kind, "{}", e.at);
        }
    }
    let empty = Spanned::new(0..0, DeValue::Table(DeTable::new()));
    let Err(ParseError::Shape(err)) = read("no-such-type", empty) else {
        panic!("a misspelt {what} `type` was not refused as the wrong shape");
    };
    for kind in types {
        assert!(err.message().contains(kind), "{err}");
    }
}

#[test]
fn every_check_type_parses_from_its_reference_example_and_keeps_its_kind() {
    let (checks, _) = examples();
    each_type_reads_as_itself("check", CheckSpec::TYPES, &checks, |kind, body| {
        CheckSpec::parse(kind, body).map(|spec| spec.kind())
    });
}

#[test]
fn every_notifier_type_parses_from_its_reference_example_and_keeps_its_kind() {
    let (_, notifiers) = examples();
    each_type_reads_as_itself("notifier", NotifierSpec::TYPES, &notifiers, |kind, body| {
        NotifierSpec::parse(kind, body).map(|spec| spec.kind())
    });
}

#[test]
fn the_reference_validates_to_every_type_and_keeps_each_kind() {
    let config = klaxon::config::load(&reference_path(), &env).unwrap();
    let (checks, notifiers) = examples();

    // Validated, each table keeps the `type` it was written with.
    let written: Vec<&str> = checks.iter().map(|e| e.kind.as_str()).collect();
    let validated: Vec<&str> = config.jobs.iter().map(|j| j.check.kind()).collect();
    assert_eq!(validated, written);
    let written: Vec<&str> = notifiers.iter().map(|e| e.kind.as_str()).collect();
    let validated: Vec<&str> = config.notifiers.iter().map(|n| n.spec.kind()).collect();
    assert_eq!(validated, written);

    let checks: BTreeSet<&str> = config.jobs.iter().map(|j| j.check.kind()).collect();
    assert_eq!(checks, CheckSpec::TYPES.iter().copied().collect());
    let notifiers: BTreeSet<&str> = config.notifiers.iter().map(|n| n.spec.kind()).collect();
    assert_eq!(notifiers, NotifierSpec::TYPES.iter().copied().collect());
}

/// The text of README's `### TITLE` section, up to the next heading of its level or
/// above.
fn section(readme: &str, title: &str) -> String {
    let start = readme
        .find(&format!("\n### {title}\n"))
        .unwrap_or_else(|| panic!("README.md has no `### {title}`"));
    let rest = &readme[start + 1..];
    let end = rest[4..]
        .find("\n## ")
        .into_iter()
        .chain(rest[4..].find("\n### "))
        .min()
        .map_or(rest.len(), |e| e + 4);
    rest[..end].to_owned()
}

#[test]
fn every_type_is_documented_in_the_readme() {
    let readme = std::fs::read_to_string(Path::new(&root()).join("README.md")).unwrap();
    let checks = section(&readme, "Checks");
    for kind in CheckSpec::TYPES {
        assert!(
            checks.contains(&format!("\n**`{kind}`**")),
            "README.md's `### Checks` has no `**`{kind}`**` paragraph"
        );
    }
    let notifiers = section(&readme, "Notifiers");
    for kind in NotifierSpec::TYPES {
        assert!(
            notifiers.contains(&format!("\n| `{kind}` |")),
            "README.md's `### Notifiers` table has no `{kind}` row"
        );
    }
}
