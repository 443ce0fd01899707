//! The `email` channel's config: an SMTP server, how to secure the connection, optional
//! credentials (the password a secret), sender and recipients. Rendering and sending come
//! with the SMTP runtime; until then [`crate::Notifier::build`] reports the type as
//! unsupported.

use std::fmt;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;
use toml::Spanned;

use crate::validate::{self, ConfigIssue};

/// The raw `[notifiers.NAME]` table of `type = "email"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    host: Spanned<String>,
    port: Option<Spanned<i64>>,
    tls: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<SecretString>>,
    from: Spanned<String>,
    to: Spanned<Vec<Spanned<String>>>,
    ca_file: Option<Spanned<String>>,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailTls {
    /// `starttls` (default): plain connect, then upgrade; port 587 by default.
    Starttls,
    /// `tls`: TLS from the first byte; port 465 by default.
    Tls,
    /// `none`: clear text, only to a loopback host; port 25 by default.
    None,
}

impl EmailTls {
    /// The port used when the config gives none.
    pub fn default_port(self) -> u16 {
        match self {
            EmailTls::Starttls => 587,
            EmailTls::Tls => 465,
            EmailTls::None => 25,
        }
    }
}

/// SMTP AUTH credentials.
#[derive(Clone)]
pub struct EmailCredentials {
    /// The AUTH user name.
    pub username: String,
    /// Never shown.
    pub password: SecretString,
}

impl fmt::Debug for EmailCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailCredentials")
            .field("username", &self.username)
            .field("password", &format_args!("***"))
            .finish()
    }
}

/// A validated `email` notifier.
#[derive(Debug, Clone)]
pub struct EmailSpec {
    /// The SMTP server's name or address.
    pub host: String,
    /// As configured, else [`EmailTls::default_port`].
    pub port: u16,
    /// How the connection is secured.
    pub tls: EmailTls,
    /// `username` and `password`, when set (always both).
    pub credentials: Option<EmailCredentials>,
    /// `alerts@example.com` or `klaxon <alerts@example.com>`, as written.
    pub from: String,
    /// At least one mailbox.
    pub to: Vec<String>,
    /// An extra trusted CA (PEM), as written; read when the transport is built.
    pub ca_file: Option<PathBuf>,
}

impl EmailConfig {
    /// Checks every key, pushing every problem to `issues`. `tls = "none"` is accepted
    /// only to a loopback host: anything else would put alerts, and any credentials, on
    /// the network in clear text.
    pub fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<EmailSpec> {
        let host = self.host.get_ref().trim().to_owned();
        if host.is_empty() {
            issues.push(ConfigIssue::new(
                self.host.span(),
                "`host` must not be empty",
            ));
        }
        let tls = match &self.tls {
            None => Some(EmailTls::Starttls),
            Some(tls) => match tls.get_ref().as_str() {
                "starttls" => Some(EmailTls::Starttls),
                "tls" => Some(EmailTls::Tls),
                "none" => Some(EmailTls::None),
                other => {
                    issues.push(ConfigIssue::new(
                        tls.span(),
                        format!("`tls` must be `starttls`, `tls` or `none`, found `{other}`"),
                    ));
                    None
                }
            },
        };
        let port = match &self.port {
            None => tls.map(EmailTls::default_port),
            Some(port) => match u16::try_from(*port.get_ref()) {
                Ok(p) if p > 0 => Some(p),
                _ => {
                    issues.push(ConfigIssue::new(
                        port.span(),
                        format!(
                            "`port` must be between 1 and 65535, found `{}`",
                            port.get_ref()
                        ),
                    ));
                    None
                }
            },
        };
        let has_credentials = self.username.is_some() || self.password.is_some();
        let credentials = credentials(self.username, self.password, issues);
        if let (Some(EmailTls::None), Some(tls)) = (tls, &self.tls)
            && !host.is_empty()
            && !validate::is_loopback_host(&host)
        {
            let rule = format!("`tls = \"none\"` is allowed only to a loopback host, not `{host}`");
            let message = if has_credentials {
                format!("credentials would be sent in clear text: {rule}")
            } else {
                rule
            };
            issues.push(ConfigIssue::new(tls.span(), message));
        }
        let from = validate::mailbox(&self.from, "from", issues);
        if self.to.get_ref().is_empty() {
            issues.push(ConfigIssue::new(
                self.to.span(),
                "`to` must list at least one address",
            ));
        }
        let to: Vec<Option<String>> = self
            .to
            .get_ref()
            .iter()
            .map(|to| validate::mailbox(to, "to", issues))
            .collect();
        let ca_file = validate::ca_file(self.ca_file, issues);
        Some(EmailSpec {
            host,
            port: port?,
            tls: tls?,
            credentials: credentials?,
            from: from?,
            to: to.into_iter().collect::<Option<_>>()?,
            ca_file: ca_file?,
        })
    }
}

/// Both or neither of `username` and `password`. `Some(None)`: no credentials.
fn credentials(
    username: Option<Spanned<String>>,
    password: Option<Spanned<SecretString>>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<Option<EmailCredentials>> {
    match (username, password) {
        (None, None) => Some(None),
        (Some(username), None) => {
            issues.push(ConfigIssue::new(
                username.span(),
                "`username` needs a `password`",
            ));
            None
        }
        (None, Some(password)) => {
            issues.push(ConfigIssue::new(
                password.span(),
                "`password` needs a `username`",
            ));
            None
        }
        (Some(username), Some(password)) => {
            let name = username.get_ref().trim().to_owned();
            if name.is_empty() {
                issues.push(ConfigIssue::new(
                    username.span(),
                    "`username` must not be empty",
                ));
            }
            let password = validate::non_empty_secret(password, "password", issues)?;
            (!name.is_empty()).then_some(Some(EmailCredentials {
                username: name,
                password,
            }))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const FULL: &str = r#"
host = "smtp.example.com"
port = 587
tls = "starttls"
username = "alerts@example.com"
password = "hunter2-SECRET"
from = "klaxon <alerts@example.com>"
to = ["oncall@example.com", "Ops <ops@example.com>"]
ca_file = "/etc/klaxon/ca.pem"
"#;

    fn validate(toml: &str) -> (Option<EmailSpec>, Vec<ConfigIssue>) {
        let config: EmailConfig = toml::from_str(toml).unwrap();
        let mut issues = Vec::new();
        (config.validate(&mut issues), issues)
    }

    fn span_of(toml: &str, needle: &str) -> std::ops::Range<usize> {
        let at = toml.find(needle).unwrap();
        at..at + needle.len()
    }

    #[test]
    fn accepts_the_spec_example() {
        let (spec, issues) = validate(FULL);
        assert_eq!(issues, []);
        let spec = spec.unwrap();
        assert_eq!(spec.host, "smtp.example.com");
        assert_eq!(spec.port, 587);
        assert_eq!(spec.tls, EmailTls::Starttls);
        let credentials = spec.credentials.clone().unwrap();
        assert_eq!(credentials.username, "alerts@example.com");
        assert_eq!(credentials.password.expose_secret(), "hunter2-SECRET");
        assert_eq!(spec.from, "klaxon <alerts@example.com>");
        assert_eq!(spec.to, ["oncall@example.com", "Ops <ops@example.com>"]);
        assert_eq!(spec.ca_file, Some(PathBuf::from("/etc/klaxon/ca.pem")));
        let debug = format!("{spec:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("password: ***"), "{debug}");
    }

    #[test]
    fn ports_default_by_tls() {
        for (tls, port) in [("starttls", 587), ("tls", 465), ("none", 25)] {
            let toml =
                format!("host = \"127.0.0.1\"\ntls = \"{tls}\"\nfrom = \"a@b\"\nto = [\"c@d\"]");
            let (spec, issues) = validate(&toml);
            assert_eq!(issues, []);
            assert_eq!(spec.map(|s| s.port), Some(port), "{tls}");
        }
        let (spec, _) = validate("host = \"h\"\nfrom = \"a@b\"\nto = [\"c@d\"]");
        assert_eq!(
            spec.map(|s| (s.tls, s.port)),
            Some((EmailTls::Starttls, 587))
        );
    }

    #[test]
    fn clear_text_only_to_loopback() {
        let local = "host = \"localhost\"\ntls = \"none\"\nusername = \"u\"\npassword = \"p\"\n\
                     from = \"a@b\"\nto = [\"c@d\"]";
        assert_eq!(validate(local).1, []);

        let with_credentials = "host = \"smtp.example.com\"\ntls = \"none\"\n\
                                username = \"u\"\npassword = \"SECRET\"\n\
                                from = \"a@b\"\nto = [\"c@d\"]";
        assert_eq!(
            validate(with_credentials).1,
            [ConfigIssue::new(
                span_of(with_credentials, "\"none\""),
                "credentials would be sent in clear text: `tls = \"none\"` is allowed only to \
                 a loopback host, not `smtp.example.com`"
            )]
        );

        let without = "host = \"10.0.0.5\"\ntls = \"none\"\nfrom = \"a@b\"\nto = [\"c@d\"]";
        assert_eq!(
            validate(without).1,
            [ConfigIssue::new(
                span_of(without, "\"none\""),
                "`tls = \"none\"` is allowed only to a loopback host, not `10.0.0.5`"
            )]
        );
    }

    #[test]
    fn collects_every_problem() {
        let toml = r#"
host = " "
port = 70000
tls = "ssl"
username = "alerts"
from = "klaxon alerts@example.com"
to = ["ok@example.com", "not an address"]
ca_file = ""
"#;
        let (spec, issues) = validate(toml);
        assert!(spec.is_none());
        assert_eq!(
            issues,
            [
                ConfigIssue::new(span_of(toml, "\" \""), "`host` must not be empty"),
                ConfigIssue::new(
                    span_of(toml, "\"ssl\""),
                    "`tls` must be `starttls`, `tls` or `none`, found `ssl`"
                ),
                ConfigIssue::new(
                    span_of(toml, "70000"),
                    "`port` must be between 1 and 65535, found `70000`"
                ),
                ConfigIssue::new(span_of(toml, "\"alerts\""), "`username` needs a `password`"),
                ConfigIssue::new(
                    span_of(toml, "\"klaxon alerts@example.com\""),
                    "`from`: `klaxon alerts@example.com` is not a mailbox like \
                     `alerts@example.com` or `klaxon <alerts@example.com>`"
                ),
                ConfigIssue::new(
                    span_of(toml, "\"not an address\""),
                    "`to`: `not an address` is not a mailbox like `alerts@example.com` or \
                     `klaxon <alerts@example.com>`"
                ),
                ConfigIssue::new(span_of(toml, "\"\""), "`ca_file` must not be empty"),
            ]
        );
    }

    #[test]
    fn credentials_come_in_pairs() {
        let toml = "host = \"h\"\npassword = \"SECRET\"\nfrom = \"a@b\"\nto = [\"c@d\"]";
        let (_, issues) = validate(toml);
        assert_eq!(
            issues,
            [ConfigIssue::new(
                span_of(toml, "\"SECRET\""),
                "`password` needs a `username`"
            )]
        );
        let toml =
            "host = \"h\"\nusername = \"u\"\npassword = \"\"\nfrom = \"a@b\"\nto = [\"c@d\"]";
        let (_, issues) = validate(toml);
        assert_eq!(
            issues,
            [ConfigIssue::new(
                span_of(toml, "\"\""),
                "`password` must not be empty"
            )]
        );
    }

    #[test]
    fn needs_a_recipient() {
        let toml = "host = \"h\"\nfrom = \"a@b\"\nto = []";
        assert_eq!(
            validate(toml).1,
            [ConfigIssue::new(
                span_of(toml, "[]"),
                "`to` must list at least one address"
            )]
        );
    }

    #[test]
    fn rejects_unknown_keys() {
        let error =
            toml::from_str::<EmailConfig>(&format!("{FULL}\nsmtp_host = \"x\"")).unwrap_err();
        assert!(
            error.message().starts_with("unknown field `smtp_host`"),
            "{error}"
        );
    }
}
