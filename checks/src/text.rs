//! How checks write times and captured bytes into summaries and output.

use std::time::Duration;

/// A configured span of time as the config writes it: `5s`, `1m 30s`, `250ms`.
pub(crate) fn duration(d: Duration) -> String {
    // Sub-millisecond parts are noise in a message and humantime would print them.
    let d = Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    humantime::format_duration(d).to_string()
}

/// The summary of a check that did not finish within `timeout`: `timed out after 5s`.
pub(crate) fn timed_out(timeout: Duration) -> String {
    format!("timed out after {}", duration(timeout))
}

/// A measured time, short: `12ms` below a second, else seconds with one decimal
/// (`2.3s`, `2s`).
pub(crate) fn elapsed(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let text = format!("{:.1}", d.as_secs_f64());
    format!("{}s", text.strip_suffix(".0").unwrap_or(&text))
}

/// A size for a summary, in the decimal units disks are sold in and the config writes:
/// `512 B`, `1.5 KB`, `12.3 GB`, `250.0 GB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    // Round first, so 999.96 KB reads `1.0 MB`, not `1000.0 KB`.
    while (value * 10.0).round() / 10.0 >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A configured number as the config wrote it: `10`, `2.5`, `90`.
pub(crate) fn number(n: f64) -> String {
    // `Display` for f64 prints no `.0` for whole numbers and never uses exponents.
    n.to_string()
}

/// A span in its largest whole unit, rounded down: `89 days`, `1 day`, `5 hours`,
/// `1 minute`, `less than a minute`.
pub(crate) fn rough(span: Duration) -> String {
    let secs = span.as_secs();
    let (n, unit) = if secs >= 86_400 {
        (secs / 86_400, "day")
    } else if secs >= 3600 {
        (secs / 3600, "hour")
    } else if secs >= 60 {
        (secs / 60, "minute")
    } else {
        return "less than a minute".to_owned();
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// `TLS: ` and why a handshake failed, shorter than rustls says it where it is wordy:
/// `TLS: certificate expired 2 days ago`, `TLS: certificate signed by an unknown issuer`.
pub(crate) fn tls_failure(error: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match error {
        rustls::Error::InvalidCertificate(C::ExpiredContext { time, not_after }) => {
            let ago = time.as_secs().saturating_sub(not_after.as_secs());
            format!(
                "TLS: certificate expired {} ago",
                rough(Duration::from_secs(ago))
            )
        }
        rustls::Error::InvalidCertificate(C::Expired) => "TLS: certificate expired".into(),
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "TLS: certificate not valid yet".into()
        }
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "TLS: certificate signed by an unknown issuer".into()
        }
        other => format!("TLS: {other}"),
    }
}

/// The rustls error an I/O error carries, through any number of I/O errors wrapped in
/// each other (hyper-rustls wraps twice). `io::Error::source` skips the error it wraps,
/// so walking `source()` alone never finds it.
pub(crate) fn tls_error_in(error: &std::io::Error) -> Option<&rustls::Error> {
    let inner = error.get_ref()?;
    if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    tls_error_in(inner.downcast_ref::<std::io::Error>()?)
}

/// The first `max` bytes as text, invalid UTF-8 replaced.
pub(crate) fn lossy_prefix(bytes: &[u8], max: usize) -> String {
    let cut = &bytes[..bytes.len().min(max)];
    let text = String::from_utf8_lossy(cut);
    if cut.len() < bytes.len() {
        format!("{text}[… {} more bytes …]", bytes.len() - cut.len())
    } else {
        text.into_owned()
    }
}

/// `DNS: no such host` when the resolver says the name does not exist (in the wordings
/// of glibc, musl and macOS), else `DNS: ` and its own message.
pub(crate) fn dns_failure(message: &str) -> String {
    const NOT_FOUND: [&str; 4] = [
        "Name or service not known",
        "nodename nor servname provided",
        "No address associated with hostname",
        "Name does not resolve",
    ];
    if NOT_FOUND.iter().any(|m| message.contains(m)) {
        "DNS: no such host".into()
    } else {
        format!("DNS: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_secs(5)), "5s");
        assert_eq!(duration(Duration::from_millis(1500)), "1s 500ms");
        assert_eq!(duration(Duration::from_nanos(5_000_000_123)), "5s");
        assert_eq!(elapsed(Duration::from_micros(12_700)), "12ms");
        assert_eq!(elapsed(Duration::from_millis(2300)), "2.3s");
        assert_eq!(elapsed(Duration::from_millis(2010)), "2s");
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1500), "1.5 KB");
        assert_eq!(bytes(999_960), "1.0 MB");
        assert_eq!(bytes(12_300_000_000), "12.3 GB");
        assert_eq!(bytes(250_000_000_000), "250.0 GB");
        assert_eq!(bytes(u64::MAX), "18446.7 PB");
        assert_eq!(number(10.0), "10");
        assert_eq!(number(2.5), "2.5");
    }

    #[test]
    fn rough_spans() {
        assert_eq!(rough(Duration::from_secs(89 * 86_400 + 5)), "89 days");
        assert_eq!(rough(Duration::from_secs(86_400)), "1 day");
        assert_eq!(rough(Duration::from_secs(7199)), "1 hour");
        assert_eq!(rough(Duration::from_secs(120)), "2 minutes");
        assert_eq!(rough(Duration::from_secs(59)), "less than a minute");
    }

    #[test]
    fn dns() {
        let glibc = "failed to lookup address information: Name or service not known";
        assert_eq!(dns_failure(glibc), "DNS: no such host");
        let again = "failed to lookup address information: Temporary failure in name resolution";
        assert_eq!(dns_failure(again), format!("DNS: {again}"));
    }

    #[test]
    fn prefix() {
        assert_eq!(lossy_prefix(b"hello", 10), "hello");
        assert_eq!(lossy_prefix(b"hello", 2), "he[… 3 more bytes …]");
        assert_eq!(lossy_prefix(b"a\xffb", 10), "a\u{fffd}b");
    }
}
