//! `klaxon validate`: parse and check the config; a one-line summary, or every error.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Env;

pub fn run(config: Option<&Path>, env: &dyn Env) -> anyhow::Result<ExitCode> {
    let config = super::load(config, env)?;
    println!(
        "{}: ok, {} job{}, {} notifier{}",
        config.file.display(),
        config.jobs.len(),
        if config.jobs.len() == 1 { "" } else { "s" },
        config.notifiers.len(),
        if config.notifiers.len() == 1 { "" } else { "s" },
    );
    Ok(ExitCode::SUCCESS)
}
