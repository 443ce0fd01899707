//! `klaxon ping JOB`: records a heartbeat for a passive (`heartbeat`) job. It writes the
//! state store directly, so it works whether or not the agent runs; a recovery it causes
//! is delivered before it exits (up to 10 s), the rest is left to the agent.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::UsageError;
use crate::config::Env;
use crate::runtime::{Mode, Runtime, SystemClock};

const DELIVERY_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct PingArgs {
    /// The heartbeat job that is alive
    job: String,
}

pub fn run(config: Option<&Path>, env: &dyn Env, args: PingArgs) -> anyhow::Result<ExitCode> {
    let config = super::load(config, env)?;
    super::init_logging(&config.log);
    let job = super::job(&config, &args.job)?;
    if job.check.is_active() {
        return Err(UsageError(format!(
            "job `{}` is a `{}` check, not a `heartbeat`: only passive jobs take pings",
            job.name,
            job.check.kind()
        ))
        .into());
    }
    super::runtime()?.block_on(async move {
        let rt = Arc::new(Runtime::build(config, Mode::Live, Arc::new(SystemClock))?);
        let now = rt.clock.now();
        let finished = crate::runner::ping(&rt, &job, now, None).await?;
        println!(
            "{}: ping recorded at {}",
            job.name,
            now.with_timezone(&job.timezone).to_rfc3339()
        );
        let (left, _) = tokio::join!(
            crate::delivery::deliver_within(&rt, finished.messages, DELIVERY_WAIT),
            rt.pinger.wait(crate::heartbeat::EXIT_WAIT)
        );
        if left > 0 {
            eprintln!("{left} message(s) not delivered yet; they stay in the outbox for the agent");
        }
        Ok(ExitCode::SUCCESS)
    })
}
