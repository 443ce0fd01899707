//! The `[notifiers.*]` examples of SPEC.md "Configuration", read the way the agent reads
//! them: the shared keys taken off, the rest through `NotifierSpec::parse`, which reads it
//! as the channel's raw table and validates it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use klaxon_notifiers::{ConfigIssue, NotifierSpec, ParseError};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// SPEC.md's notifier examples, with its `${VAR}` secrets already substituted.
const SPEC_EXAMPLE: &str = r#"
[notifiers.slack]
type = "slack"
webhook_url = "https://hooks.slack.com/services/T0/B0/SLACKSECRET"
fallback = "oncall"
fallback_after = "5m"

[notifiers.teams]
type = "teams"
webhook_url = "https://prod.logic.azure.com/workflows/TEAMSSECRET"

[notifiers.oncall]
type = "email"
host = "smtp.example.com"
port = 587
tls = "starttls"
username = "alerts@example.com"
password = "SMTPSECRET"
from = "klaxon <alerts@example.com>"
to = ["oncall@example.com"]
min_severity = "critical"

[notifiers.hook]
type = "webhook"
url = "https://example.com/hook"
secret = "HOOKSECRET"

[notifiers.am]
type = "alertmanager"
urls = ["http://127.0.0.1:9093"]

[notifiers.desktop]
type = "command"
command = ["/usr/local/bin/notify-me"]

[notifiers.console]
type = "log"
"#;

/// Every notifier of a document as (name, kind, parse result), shared keys removed.
fn notifiers(source: &str) -> Vec<(String, String, Result<NotifierSpec, ParseError>)> {
    let doc = DeTable::parse(source).unwrap();
    let Some(DeValue::Table(notifiers)) = doc.get_ref().get("notifiers").map(|v| v.get_ref())
    else {
        panic!("no [notifiers]");
    };
    let mut out = Vec::new();
    for (name, value) in notifiers {
        let DeValue::Table(table) = value.get_ref() else {
            panic!("notifiers.{} is not a table", name.get_ref());
        };
        let mut table = table.clone();
        let kind = table
            .remove("type")
            .and_then(|t| t.get_ref().as_str().map(str::to_owned))
            .unwrap();
        for shared in ["fallback", "fallback_after", "min_severity"] {
            table.remove(shared);
        }
        let body = Spanned::new(value.span(), DeValue::Table(table));
        let spec = NotifierSpec::parse(&kind, body);
        out.push((name.get_ref().to_string(), kind, spec));
    }
    out
}

#[test]
fn every_spec_example_validates() {
    let found = notifiers(SPEC_EXAMPLE);
    let kinds: Vec<&str> = found.iter().map(|(_, kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "slack",
            "teams",
            "email",
            "webhook",
            "alertmanager",
            "command",
            "log"
        ]
    );
    for (name, kind, spec) in found {
        let spec = spec.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(spec.kind(), kind);
        let debug = format!("{spec:?}");
        assert!(!debug.contains("SECRET"), "{name} shows a secret: {debug}");
    }
}

#[test]
fn problems_are_located_in_the_file() {
    let source = "[notifiers.chat]\ntype = \"slack\"\nwebhook_url = \"http://hooks.slack.com/X\"\n";
    let (_, _, spec) = notifiers(source).remove(0);
    let at = source.find("\"http://").unwrap();
    assert_eq!(
        spec.unwrap_err(),
        ParseError::Invalid(vec![ConfigIssue::new(
            at..at + "\"http://hooks.slack.com/X\"".len(),
            "`webhook_url` must use `https`: plain `http` is allowed only to a loopback host"
        )])
    );
}

#[test]
fn unknown_keys_and_types_are_rejected() {
    let source =
        "[notifiers.chat]\ntype = \"slack\"\nwebhook_url = \"https://x\"\nchannel = \"#ops\"\n";
    let (_, _, spec) = notifiers(source).remove(0);
    let Err(ParseError::Shape(error)) = spec else {
        panic!("{spec:?}");
    };
    assert!(
        error.message().starts_with("unknown field `channel`"),
        "{error}"
    );
    let at = source.find("channel").unwrap();
    assert_eq!(error.span(), Some(at..at + "channel".len()));

    let source = "[notifiers.x]\ntype = \"pager\"\n";
    let (_, _, spec) = notifiers(source).remove(0);
    let Err(ParseError::Shape(error)) = spec else {
        panic!("{spec:?}");
    };
    assert!(
        error.message().starts_with("unknown variant `pager`"),
        "{error}"
    );
}
