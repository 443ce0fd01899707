//! One target of `agent.online`: a `host:port` the agent connects to over TCP, or an
//! http(s) URL it sends a `HEAD` to. A target answers when the connection is made, or
//! when any HTTP response comes back (a 404 or a 503 is an answer: the network works).

use std::fmt;
use std::time::Duration;

/// A target of `agent.online.targets`, as validated from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `host:port`: a TCP connection is an answer.
    Tcp { host: String, port: u16 },
    /// `http://` or `https://`: any HTTP response is an answer.
    Http(url::Url),
}

impl Target {
    /// Reads `host:port` (`[::1]:53` for an IPv6 address) or an http(s) URL. The error
    /// says what is wrong, in the config's wording.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.starts_with("http://") || text.starts_with("https://") {
            return match url::Url::parse(text) {
                Ok(url) if url.host().is_some() => Ok(Self::Http(url)),
                Ok(_) => Err(format!("`{text}` has no host")),
                Err(e) => Err(format!("`{text}` is not a URL: {e}")),
            };
        }
        if text.contains("://") {
            return Err(format!(
                "`{text}`: a URL target must be http:// or https://; other targets are `host:port`"
            ));
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(format!(
                "expected `host:port` or an http(s) URL, found `{text}`"
            ));
        };
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty()
            || host.contains(['/', ' '])
            || (host.contains(':') && !text.starts_with('['))
        {
            return Err(format!(
                "expected `host:port` (an IPv6 address in brackets: `[::1]:53`), found `{text}`"
            ));
        }
        match port.parse::<u16>() {
            Ok(port) if port > 0 => Ok(Self::Tcp {
                host: host.to_owned(),
                port,
            }),
            _ => Err(format!(
                "the port of `{text}` must be a number from 1 to 65535"
            )),
        }
    }

    /// Whether the target answers within `timeout`. `client` sends the HTTP requests.
    pub async fn answers(&self, client: &reqwest::Client, timeout: Duration) -> bool {
        let asked = async {
            match self {
                Self::Tcp { host, port } => tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .is_ok(),
                Self::Http(url) => client.head(url.clone()).send().await.is_ok(),
            }
        };
        tokio::time::timeout(timeout, asked).await.unwrap_or(false)
    }
}

/// As the config named it, less a URL's credentials, query and fragment (which may hold
/// a secret): for logs, messages and `status`.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "{host}:{port}"),
            Self::Http(url) => {
                let mut shown = url.clone();
                let _ = shown.set_username("");
                let _ = shown.set_password(None);
                shown.set_query(None);
                shown.set_fragment(None);
                write!(f, "{shown}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn targets_are_host_port_or_http_urls() {
        let tcp = |host: &str, port| Target::Tcp {
            host: host.into(),
            port,
        };
        assert_eq!(Target::parse("1.1.1.1:53"), Ok(tcp("1.1.1.1", 53)));
        assert_eq!(Target::parse("dns.google:443"), Ok(tcp("dns.google", 443)));
        assert_eq!(
            Target::parse("[2606:4700::1111]:53"),
            Ok(tcp("2606:4700::1111", 53))
        );
        assert!(matches!(
            Target::parse("https://example.com"),
            Ok(Target::Http(u)) if u.as_str() == "https://example.com/"
        ));
        let table = [
            (
                "1.1.1.1",
                "expected `host:port` or an http(s) URL, found `1.1.1.1`",
            ),
            (
                "1.1.1.1:dns",
                "the port of `1.1.1.1:dns` must be a number from 1 to 65535",
            ),
            (
                "1.1.1.1:0",
                "the port of `1.1.1.1:0` must be a number from 1 to 65535",
            ),
            (
                ":53",
                "expected `host:port` (an IPv6 address in brackets: `[::1]:53`), found `:53`",
            ),
            (
                "::1:53",
                "expected `host:port` (an IPv6 address in brackets: `[::1]:53`), found `::1:53`",
            ),
            (
                "ftp://example.com",
                "`ftp://example.com`: a URL target must be http:// or https://; other targets are `host:port`",
            ),
            ("https://", "`https://` is not a URL: empty host"),
        ];
        for (text, want) in table {
            assert_eq!(Target::parse(text), Err(want.to_owned()), "{text}");
        }
    }

    #[tokio::test]
    async fn a_target_answers_by_a_connection_or_any_http_response() {
        let client = reqwest::Client::new();
        let timeout = Duration::from_secs(5);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = Target::parse(&listener.local_addr().unwrap().to_string()).unwrap();
        assert!(
            tcp.answers(&client, timeout).await,
            "a listening port answers"
        );
        drop(listener);
        assert!(
            !tcp.answers(&client, timeout).await,
            "a closed port does not"
        );
        // A 503 is an answer: the network works, whatever the server thinks of itself.
        let server = klaxon_testkit::Server::start(|_| klaxon_testkit::Response::status(503)).await;
        let http = Target::parse(&server.url("/up")).unwrap();
        assert!(http.answers(&client, timeout).await);
        assert_eq!(server.requests()[0].method, "HEAD");
        let addr = server.addr();
        drop(server);
        let gone = Target::parse(&format!("http://{addr}/up")).unwrap();
        assert!(
            !gone.answers(&client, timeout).await,
            "nothing listens: no answer"
        );
    }

    #[test]
    fn a_target_is_shown_without_what_may_be_secret() {
        let shown = |t: &str| Target::parse(t).map(|t| t.to_string());
        assert_eq!(
            shown("https://user:pw@example.com/up?token=s3cret#x"),
            Ok("https://example.com/up".to_owned())
        );
        assert_eq!(shown("[::1]:53"), Ok("[::1]:53".to_owned()));
        assert_eq!(shown("1.1.1.1:53"), Ok("1.1.1.1:53".to_owned()));
    }
}
