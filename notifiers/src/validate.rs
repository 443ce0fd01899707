//! What every notifier's validation shares beyond [`klaxon_config_core`] (the located
//! problem and durations, re-exported here): parsing of URLs and mailboxes, with the
//! rules that keep secrets and credentials off the wire and out of messages.

use std::net::IpAddr;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use toml::Spanned;
use url::Url;

pub use klaxon_config_core::{ConfigIssue, positive_duration};

/// Whether a host name or address can only mean this machine: `localhost`, 127.0.0.0/8
/// or `::1` (bracketed or not).
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether a parsed URL points at this machine (see [`is_loopback_host`]).
fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => is_loopback_host(name),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A chat webhook URL, which is itself the credential: it must be `https`, or `http` to a
/// loopback host (a local relay, or a test receiver). No message ever shows the value.
pub(crate) fn secret_webhook_url(
    value: Spanned<SecretString>,
    key: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<SecretString> {
    let span = value.span();
    let secret = value.into_inner();
    match https_or_loopback(secret.expose_secret(), key) {
        Ok(_) => Some(secret),
        Err(problem) => {
            issues.push(ConfigIssue::new(span, problem));
            None
        }
    }
}

/// A URL that credentials are sent to (a Matrix homeserver, which is given an access
/// token): `https`, or `http` to a loopback host. Messages may show it.
pub(crate) fn https_url(
    value: &Spanned<String>,
    key: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<Url> {
    https_or_loopback(value.get_ref(), key)
        .map_err(|problem| issues.push(ConfigIssue::new(value.span(), problem)))
        .ok()
}

/// `text` as an `https` URL, or an `http` one to a loopback host; the problem, which
/// never quotes `text`, otherwise.
fn https_or_loopback(text: &str, key: &str) -> Result<Url, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("`{key}` must not be empty"));
    }
    match Url::parse(text) {
        Err(_) => Err(format!("`{key}` is not a valid URL")),
        Ok(url) if url.scheme() == "https" => Ok(url),
        Ok(url) if url.scheme() == "http" && is_loopback_url(&url) => Ok(url),
        Ok(url) if url.scheme() == "http" => Err(format!(
            "`{key}` must use `https`: plain `http` is allowed only to a loopback host"
        )),
        Ok(url) => Err(format!(
            "`{key}` must be an `https` URL, found scheme `{}`",
            url.scheme()
        )),
    }
}

/// An `http` or `https` URL that is not a secret, so messages may show it.
pub(crate) fn http_url(
    value: &Spanned<String>,
    key: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<Url> {
    let text = value.get_ref().trim();
    let problem = match Url::parse(text) {
        Err(e) => format!("`{key}`: `{text}` is not a valid URL ({e})"),
        Ok(url) if matches!(url.scheme(), "http" | "https") => return Some(url),
        Ok(_) => format!("`{key}`: expected an `http` or `https` URL, found `{text}`"),
    };
    issues.push(ConfigIssue::new(value.span(), problem));
    None
}

/// The URL of a provider's API that a credential is sent to (in a header or the body):
/// `https`, or `http` to a loopback host (a local relay, or a test receiver), so the
/// credential never crosses a network in the clear. Unset, it is `default`.
pub(crate) fn api_url(
    value: Option<&Spanned<String>>,
    key: &str,
    default: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<Url> {
    let Some(value) = value else {
        return Url::parse(default).ok();
    };
    let url = http_url(value, key, issues)?;
    if url.scheme() == "http" && !is_loopback_url(&url) {
        issues.push(ConfigIssue::new(
            value.span(),
            format!("`{key}` must use `https`: plain `http` is allowed only to a loopback host"),
        ));
        return None;
    }
    Some(url)
}

/// A secret that must not be empty; no message shows the value.
pub(crate) fn non_empty_secret(
    value: Spanned<SecretString>,
    key: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<SecretString> {
    if value.get_ref().expose_secret().is_empty() {
        issues.push(ConfigIssue::new(
            value.span(),
            format!("`{key}` must not be empty"),
        ));
        return None;
    }
    Some(value.into_inner())
}

/// Checks a mailbox as `alerts@example.com` or `klaxon <alerts@example.com>` and returns
/// it trimmed. A shape check only: the SMTP library parses it fully when it is built.
pub(crate) fn mailbox(
    value: &Spanned<String>,
    key: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<String> {
    let text = value.get_ref().trim();
    let address = match text.rsplit_once('<') {
        Some((_, rest)) => rest.strip_suffix('>'),
        None => Some(text),
    };
    if address.is_some_and(is_address) {
        return Some(text.to_owned());
    }
    issues.push(ConfigIssue::new(
        value.span(),
        format!(
            "`{key}`: `{text}` is not a mailbox like `alerts@example.com` or \
             `klaxon <alerts@example.com>`"
        ),
    ));
    None
}

/// An extra trusted CA file (`ca_file`), as written: `Some(None)` when not set, `None`
/// when it is empty. It is read when the notifier is built.
pub(crate) fn ca_file(
    value: Option<Spanned<String>>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<Option<PathBuf>> {
    let Some(value) = value else {
        return Some(None);
    };
    if value.get_ref().trim().is_empty() {
        issues.push(ConfigIssue::new(
            value.span(),
            "`ca_file` must not be empty",
        ));
        return None;
    }
    Some(Some(PathBuf::from(value.into_inner())))
}

/// `local@domain`: one `@`, both sides non-empty, no spaces or angle brackets.
fn is_address(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    let plain = |part: &str| {
        !part.is_empty()
            && !part.contains('@')
            && !part.contains(|c: char| c.is_whitespace() || c == '<' || c == '>')
    };
    plain(local) && plain(domain) && !domain.starts_with('.') && !domain.ends_with('.')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "LOCALHOST.",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "example.com",
            "10.0.0.1",
            "128.0.0.1",
            "::2",
            "localhost.example.com",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn addresses() {
        for ok in [
            "a@b",
            "alerts@example.com",
            "first.last+tag@sub.example.org",
        ] {
            assert!(is_address(ok), "{ok}");
        }
        for bad in [
            "", "a", "@b", "a@", "a@b@c", "a b@c", "a@b.", "a@.b", "<a@b>",
        ] {
            assert!(!is_address(bad), "{bad}");
        }
    }
}
