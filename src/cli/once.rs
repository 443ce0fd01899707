//! `klaxon once JOB`: run one job now with its retries and alerts, wait up to 30 s for
//! its messages, and exit 1 unless it was ok. SIGINT or SIGTERM cuts the run short (a
//! script is stopped: SIGTERM, SIGKILL 2 s later): it is recorded as `interrupted`,
//! alerts no one, and once exits `128 + N`; a second signal exits at once.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::UsageError;
use crate::config::Env;
use crate::exec::Interrupt;
use crate::retry::RetryPolicy;
use crate::runtime::{Mode, Runtime, SystemClock};
use clap::Args;

/// How long `once` waits for its messages before leaving them to the agent.
const DELIVERY_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub struct OnceArgs {
    /// The job to run
    job: String,
    /// Run the check for real but send nothing: print each message instead
    #[arg(long)]
    dry_run: bool,
    /// Try once, without the job's retries
    #[arg(long)]
    no_retry: bool,
}

pub fn run(config: Option<&Path>, env: &dyn Env, args: OnceArgs) -> anyhow::Result<ExitCode> {
    let config = super::load(config, env)?;
    super::init_logging(&config.log);
    let job = super::job(&config, &args.job)?;
    if !job.check.is_active() {
        return Err(UsageError(format!(
            "job `{}` is a passive `{}` check: it is fed by pings, not run",
            job.name,
            job.check.kind()
        ))
        .into());
    }
    let mode = if args.dry_run {
        Mode::DryRun
    } else {
        Mode::Live
    };
    let retry = if args.no_retry {
        RetryPolicy::single()
    } else {
        job.retry.clone()
    };
    super::runtime()?.block_on(async move {
        let rt = Arc::new(Runtime::build(config, mode, Arc::new(SystemClock))?);
        let interrupt = Arc::new(Interrupt::default());
        super::watch_interrupts(interrupt.clone())?;
        // A run by hand says when the schedule would fire next.
        let cause = crate::runner::Cause::Asked {
            next_run: job.trigger.next_after(rt.clock.now()),
        };
        let finished = crate::runner::run_job(&rt, &job, &retry, cause, &interrupt.stop).await?;
        let interrupted = finished.interrupted();
        let r = &finished.record;
        println!(
            "{}: {}: {} ({} of {} attempts, {})",
            job.name,
            r.severity,
            r.summary,
            r.attempts,
            retry.attempts(),
            klaxon_notifiers::text::human_duration(r.elapsed.as_millis() as u64)
        );
        for m in &r.metrics {
            println!("  {}", perfdata(m));
        }
        let (left, _) = tokio::join!(
            crate::delivery::deliver_within(&rt, finished.messages, DELIVERY_WAIT),
            rt.pinger.wait(crate::heartbeat::EXIT_WAIT)
        );
        if left > 0 {
            eprintln!(
                "{left} message(s) not delivered yet; they stay in the outbox for the agent to retry"
            );
        }
        crate::store::prune_for(&rt.store, rt.config.history, vec![job.name.clone()]);
        Ok(if interrupted {
            ExitCode::from(u8::try_from(interrupt.exit_code()).unwrap_or(1))
        } else if finished.severity.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}

/// A metric as monitoring-plugins perfdata: `label=value[UOM];[warn];[crit];[min];[max]`.
fn perfdata(m: &klaxon_checks::Metric) -> String {
    let label = if m.name.contains([' ', '=', '\'']) {
        format!("'{}'", m.name.replace('\'', "''"))
    } else {
        m.name.clone()
    };
    let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let fields = [
        m.warn.clone().unwrap_or_default(),
        m.crit.clone().unwrap_or_default(),
        num(m.min),
        num(m.max),
    ];
    let tail = fields.join(";");
    let tail = tail.trim_end_matches(';');
    let unit = m.unit.as_deref().unwrap_or("");
    if tail.is_empty() {
        format!("{label}={}{unit}", m.value)
    } else {
        format!("{label}={}{unit};{tail}", m.value)
    }
}

#[cfg(test)]
mod tests {
    use super::perfdata;
    use klaxon_checks::Metric;

    #[test]
    fn metrics_print_as_perfdata() {
        assert_eq!(perfdata(&Metric::new("count", 3.0)), "count=3");
        assert_eq!(
            perfdata(
                &Metric::new("load1", 0.15)
                    .with_warn("5")
                    .with_crit("10")
                    .with_min(0.0)
            ),
            "load1=0.15;5;10;0"
        );
        assert_eq!(
            perfdata(&Metric::new("my disk", 80.0).with_unit("%").with_max(100.0)),
            "'my disk'=80%;;;;100"
        );
    }
}
