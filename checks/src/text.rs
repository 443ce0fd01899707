//! How checks write times and captured bytes into summaries and output.

use std::time::Duration;

/// A configured span of time as the config writes it: `5s`, `1m 30s`, `250ms`.
pub(crate) fn duration(d: Duration) -> String {
    // Sub-millisecond parts are noise in a message and humantime would print them.
    let d = Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    humantime::format_duration(d).to_string()
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
