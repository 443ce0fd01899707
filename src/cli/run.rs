//! `klaxon run`: the agent in the foreground. The first SIGINT or SIGTERM stops it
//! gracefully (exit 0); a second one SIGKILLs every running script's process group and
//! exits at once (130). SIGHUP, or a change to the config
//! file with `--watch`, reloads the config; a config that does not validate is
//! reported and the running one stays.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Args;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Env};
use crate::runtime::Mode;

/// How often `--watch` looks at the config file.
const WATCH_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run checks for real but send nothing: print each message instead
    #[arg(long)]
    dry_run: bool,
    /// Reload the config when its file changes (checked every 2 s)
    #[arg(long)]
    watch: bool,
}

pub fn run(flag: Option<&Path>, env: &dyn Env, args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = super::load(flag, env)?;
    super::init_logging(&config.log);
    let mode = if args.dry_run {
        Mode::DryRun
    } else {
        Mode::Live
    };
    let file = config.file.clone();
    let loader: crate::agent::Loader = {
        let file = file.clone();
        Box::new(move || config::load(&file, &|name: &str| std::env::var(name).ok()))
    };
    super::runtime()?.block_on(async move {
        let shutdown = CancellationToken::new();
        let (reload_tx, reload_rx) = mpsc::channel(1);
        tokio::spawn(watch_signals(shutdown.clone(), reload_tx.clone()));
        if args.watch {
            tokio::spawn(watch_file(file, reload_tx));
        }
        crate::agent::run(config, mode, shutdown, reload_rx, loader).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Asks for a reload whenever the file's modification time or size changes.
async fn watch_file(file: PathBuf, reload: mpsc::Sender<()>) {
    let stamp = |f: &Path| -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(f).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    };
    let mut last = stamp(&file);
    tracing::info!(config = %file.display(), "watching the config file for changes");
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let now = stamp(&file);
        if now.is_some() && now != last {
            last = now;
            tracing::info!("the config file changed; reloading");
            if reload.send(()).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(unix)]
async fn watch_signals(shutdown: CancellationToken, reload: mpsc::Sender<()>) {
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
                tracing::info!("SIGHUP: reloading the config");
                // A reload already waiting covers this one too.
                let _ = reload.try_send(());
                continue;
            }
        };
        seen += 1;
        if seen == 1 {
            tracing::info!("{name}: shutting down (send it again to exit at once)");
            shutdown.cancel();
        } else {
            tracing::warn!("{name} again: killing running scripts and exiting now");
            super::exit_now(130);
        }
    }
}

#[cfg(not(unix))]
async fn watch_signals(shutdown: CancellationToken, _reload: mpsc::Sender<()>) {
    let _ = tokio::signal::ctrl_c().await;
    shutdown.cancel();
    let _ = tokio::signal::ctrl_c().await;
    super::exit_now(130);
}
