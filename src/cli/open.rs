//! `klaxon open`: opens the agent's page (`http://LISTEN/`, from `agent.listen`) in the
//! user's browser, with `open` on macOS and `xdg-open` elsewhere, and prints the address
//! (for a machine without a browser, or a terminal over SSH).

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

use super::UsageError;
use crate::config::Env;

/// The program that opens a URL in the user's browser.
const OPENER: &str = if cfg!(target_os = "macos") {
    "open"
} else {
    "xdg-open"
};

/// How long the check that something listens may take.
const PROBE_WAIT: Duration = Duration::from_millis(500);

pub fn run(config: Option<&Path>, env: &dyn Env) -> anyhow::Result<ExitCode> {
    let config = super::load(config, env)?;
    let Some(addr) = config.agent.listen else {
        return Err(UsageError(format!(
            "`agent.listen` is not set in `{}`: the agent serves no page (add `listen = \"127.0.0.1:8377\"` to `[agent]`)",
            config.file.display()
        ))
        .into());
    };
    if addr.port() == 0 {
        return Err(UsageError(format!(
            "`agent.listen` is `{addr}` in `{}`: port 0 is whichever port the agent was given; its log says `dashboard: …`",
            config.file.display()
        ))
        .into());
    }
    let url = crate::listener::dashboard_url(addr);
    println!("dashboard: {url}");
    let target = crate::listener::dashboard_addr(addr);
    if std::net::TcpStream::connect_timeout(&target, PROBE_WAIT).is_err() {
        eprintln!(
            "warning: nothing answers on `{target}`: is `klaxon run` running with this config?"
        );
    }
    let status = Command::new(OPENER).arg(&url).status().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!("cannot open a browser: `{OPENER}` is not installed (not on PATH); open {url} yourself")
        } else {
            anyhow::anyhow!("cannot run `{OPENER}`: {e}; open {url} yourself")
        }
    })?;
    if !status.success() {
        anyhow::bail!("`{OPENER} {url}` failed ({status}); open {url} yourself");
    }
    Ok(ExitCode::SUCCESS)
}
