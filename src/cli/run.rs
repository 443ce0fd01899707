//! `klaxon run`: the agent in the foreground. The first SIGINT or SIGTERM stops it
//! gracefully (exit 0); a second one exits at once.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::config::Env;
use crate::runtime::Mode;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run checks for real but send nothing: print each message instead
    #[arg(long)]
    dry_run: bool,
}

pub fn run(config: Option<&Path>, env: &dyn Env, args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = super::load(config, env)?;
    super::init_logging(&config.log);
    let mode = if args.dry_run {
        Mode::DryRun
    } else {
        Mode::Live
    };
    super::runtime()?.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(watch_signals(shutdown.clone()));
        crate::agent::run(config, mode, shutdown).await
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(unix)]
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop klaxon with SIGKILL");
        return;
    };
    let mut seen = 0;
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => {
                tracing::warn!("SIGHUP: reloading the config is not supported yet; restart klaxon to apply changes");
                continue;
            }
        };
        seen += 1;
        if seen == 1 {
            tracing::info!("{name}: shutting down (send it again to exit at once)");
            shutdown.cancel();
        } else {
            tracing::warn!("{name} again: exiting now");
            std::process::exit(130);
        }
    }
}

#[cfg(not(unix))]
async fn watch_signals(shutdown: CancellationToken) {
    let _ = tokio::signal::ctrl_c().await;
    shutdown.cancel();
    let _ = tokio::signal::ctrl_c().await;
    std::process::exit(130);
}
