//! Alertmanager's re-posting: a firing alert is posted again every `resend_every`, so
//! that Alertmanager does not resolve it on its own while klaxon still sees it failing.
//! Which notifiers want this is theirs to say (`NotifierSpec::resend_every`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::send::{print_dry_run, send};
use crate::runtime::{Mode, Runtime};

/// Posts every firing alert again to the Alertmanager notifiers of its job, every
/// `resend_every` (the shortest of them), so that Alertmanager does not resolve an alert
/// on its own (after its `resolve_timeout`) while klaxon still sees it failing. Returns
/// at once when no Alertmanager notifier is configured: no timer for those who have none.
pub async fn resend_firing(rt: Arc<Runtime>, stop: CancellationToken) {
    let targets: Vec<(&str, Duration)> = rt
        .config
        .notifiers
        .iter()
        .filter_map(|n| Some((n.name.as_str(), n.spec.resend_every()?)))
        .collect();
    let Some(every) = targets.iter().map(|(_, d)| *d).min() else {
        return;
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        for job in &rt.config.jobs {
            let Ok(state) = rt.store.job_state(&job.name) else {
                continue;
            };
            let Some(open) = state.open.filter(|o| !o.held) else {
                continue;
            };
            let Ok(Some(alert)) = rt.store.last_message(&open.id) else {
                continue;
            };
            // Only those told about the alert (its `min_severity` let them hear it);
            // states from before klaxon recorded that fall back to the job's notifiers.
            let told = |n: &str| open.told.as_ref().is_none_or(|t| t.iter().any(|t| t == n));
            for (name, _) in targets
                .iter()
                .filter(|(n, _)| job.notify.iter().any(|j| j == n) && told(n))
            {
                let Some(notifier) = rt.notifiers.get(*name) else {
                    continue;
                };
                if rt.mode == Mode::DryRun {
                    print_dry_run(
                        rt.as_ref(),
                        name,
                        &klaxon_notifiers::text::render_text(&alert),
                    );
                    continue;
                }
                if let Err(e) = send(rt.as_ref(), name, notifier, &alert).await {
                    tracing::warn!(job = %job.name, notifier = %name, "re-posting a firing alert failed: {e}");
                }
            }
        }
    }
}
