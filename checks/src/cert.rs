//! Certificate expiry, shared by the `http` and `tcp` checks: the `cert_warn` and
//! `cert_crit` limits and their validation, reading a server certificate's subject and
//! `notAfter`, and judging how long it has left.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use toml::Spanned;

use crate::validate::{self, ConfigIssue};
use crate::{Outcome, Severity, text};

/// Validates `cert_warn` and `cert_crit` (positive durations, `cert_crit` the smaller),
/// pushing every problem to `issues`.
pub(crate) fn limits(
    raw_warn: Option<&Spanned<String>>,
    raw_crit: Option<&Spanned<String>>,
    issues: &mut Vec<ConfigIssue>,
) -> (Option<Duration>, Option<Duration>) {
    let warn = raw_warn.and_then(|d| validate::positive_duration(d, "cert_warn", issues));
    let crit = raw_crit.and_then(|d| validate::positive_duration(d, "cert_crit", issues));
    if let (Some(w), Some(c), Some(raw_w), Some(raw_c)) = (warn, crit, raw_warn, raw_crit)
        && c >= w
    {
        issues.push(ConfigIssue::new(
            raw_c.span(),
            format!(
                "`cert_crit` (`{}`) must be less than `cert_warn` (`{}`): it is the \
                 later, more urgent threshold",
                raw_c.get_ref(),
                raw_w.get_ref()
            ),
        ));
    }
    (warn, crit)
}

/// What a server certificate says about itself that expiry checks report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CertInfo {
    /// The subject's distinguished name, e.g. `CN=mail.example.com`.
    pub subject: String,
    pub not_after: SystemTime,
}

impl CertInfo {
    /// `subject: CN=…` and `notAfter: 2026-12-05T17:00:00Z`, one per line, for a
    /// check's output.
    pub fn describe(&self) -> String {
        format!(
            "subject: {}\nnotAfter: {}",
            self.subject,
            humantime::format_rfc3339_seconds(self.not_after)
        )
    }
}

/// Every certificate in a `ca_file` (PEM), for the `http` and `tcp` checks; failures
/// name the key and the file.
pub(crate) fn read_ca_file(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("`ca_file` `{shown}`: {e}"))?;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("`ca_file` `{shown}`: not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err(format!("`ca_file` `{shown}`: no PEM certificate in it"));
    }
    Ok(certs)
}

/// A DER certificate's subject and `notAfter`.
pub(crate) fn not_after(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("cannot read the server's certificate: {e}"))?;
    let secs = cert.validity().not_after.timestamp();
    let since_epoch = Duration::from_secs(secs.unsigned_abs());
    let not_after = if secs >= 0 {
        SystemTime::UNIX_EPOCH + since_epoch
    } else {
        SystemTime::UNIX_EPOCH - since_epoch
    };
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        not_after,
    })
}

/// Judges a certificate that expires at `expiry`: "certificate expires in 12 days",
/// warning within `warn`, critical within `crit`; "certificate expired 2 days ago",
/// critical.
pub(crate) fn certificate_expiry(
    expiry: SystemTime,
    now: SystemTime,
    warn: Option<Duration>,
    crit: Option<Duration>,
) -> (Severity, String) {
    match expiry.duration_since(now) {
        Err(past) => (
            Severity::Critical,
            format!("certificate expired {} ago", text::rough(past.duration())),
        ),
        Ok(left) => {
            let severity = if crit.is_some_and(|c| left <= c) {
                Severity::Critical
            } else if warn.is_some_and(|w| left <= w) {
                Severity::Warning
            } else {
                Severity::Ok
            };
            (
                severity,
                format!("certificate expires in {}", text::rough(left)),
            )
        }
    }
}

/// Adds a certificate's judgement to a judged answer: the worse of the two decides the
/// severity, and both are named when both matter.
pub(crate) fn merge(mut outcome: Outcome, severity: Severity, phrase: String) -> Outcome {
    if severity > outcome.severity {
        outcome.summary = if outcome.severity.is_ok() {
            phrase
        } else {
            format!("{phrase}; {}", outcome.summary)
        };
        outcome.severity = severity;
    } else if outcome.severity.is_ok() || !severity.is_ok() {
        outcome.summary = format!("{}; {phrase}", outcome.summary);
    }
    outcome
}
