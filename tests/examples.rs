//! Every config shipped in `config/` parses and validates: they are what users copy.
#![allow(clippy::unwrap_used)]

use std::path::Path;

#[test]
fn every_shipped_config_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        // Stand-ins for the secrets the examples read from the environment.
        let env = |name: &str| match name {
            "SLACK_WEBHOOK_URL" => Some("https://hooks.slack.com/services/T0/B0/x".to_owned()),
            "TEAMS_WEBHOOK_URL" => Some("https://example.webhook.office.com/x".to_owned()),
            "DISCORD_WEBHOOK_URL" | "MATTERMOST_WEBHOOK_URL" | "GOOGLECHAT_WEBHOOK_URL" => {
                Some("https://hooks.example.com/x".to_owned())
            }
            "MATRIX_ACCESS_TOKEN" => Some("not-a-real-secret".to_owned()),
            "SMTP_PASSWORD" | "HOOK_SECRET" | "KLAXON_TOKEN" => {
                Some("not-a-real-secret".to_owned())
            }
            "PAGERDUTY_ROUTING_KEY" | "OPSGENIE_API_KEY" => Some("not-a-real-secret".to_owned()),
            "NTFY_TOPIC" | "NTFY_TOKEN" | "PUSHOVER_TOKEN" | "PUSHOVER_USER" => {
                Some("not-a-real-secret".to_owned())
            }
            "TELEGRAM_BOT_TOKEN" | "GOTIFY_TOKEN" => Some("not-a-real-secret".to_owned()),
            _ => None,
        };
        let config = klaxon::config::load(&path, &env)
            .unwrap_or_else(|e| panic!("{} does not validate:\n{e}", path.display()));
        assert!(!config.jobs.is_empty(), "{}", path.display());
        seen += 1;
    }
    assert!(
        seen >= 2,
        "expected the runnable example and the reference in config/"
    );
}

#[test]
fn the_runnable_example_needs_no_secret_and_shows_alerts_in_the_log() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/klaxon.toml");
    let config = klaxon::config::load(&path, &|_: &str| None).unwrap();
    assert!(config.notifiers.iter().all(|n| n.spec.kind() == "log"));
    assert!(config.jobs.iter().all(|j| j.notify == ["console"]));
}
