//! The `email` channel: an SMTP server, how to secure the connection (`starttls`, `tls`
//! or `none`), optional credentials (the password a secret), sender and recipients. Owns
//! its config, the pure [`render`] of an alert into a subject, a text part and an HTML
//! part with the same wording, and [`Email::send`], which delivers them as one
//! `multipart/alternative` message through lettre over tokio and rustls.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use klaxon_config_core::{SecretKey, Seg};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, header};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use toml::Spanned;

use crate::text;
use crate::validate::{self, ConfigIssue};
use crate::{Alert, BuildError, Channel, DeliveryError, NotifierPlugin};

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

impl NotifierPlugin for EmailConfig {
    type Spec = EmailSpec;
    type Channel = Email;

    const SECRET_KEYS: &'static [SecretKey] = &[SecretKey::always(&[Seg::Key("password")])];

    fn build(spec: &EmailSpec, _client: &reqwest::Client) -> Result<Email, BuildError> {
        Email::new(spec.clone())
    }

    /// Checks every key, pushing every problem to `issues`. `tls = "none"` is accepted
    /// only to a loopback host: anything else would put alerts, and any credentials, on
    /// the network in clear text.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<EmailSpec> {
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

/// One alert as an email: what [`Email::send`] puts in the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// `[klaxon] ` and the title: `[klaxon] DOWN api on macbook: HTTP 503`.
    pub subject: String,
    /// The `text/plain` part: [`text::render_text`].
    pub text: String,
    /// The `text/html` part: the title, the same facts in a table, the output in `<pre>`.
    pub html: String,
}

/// What every subject starts with, so a mail filter can sort alerts.
pub const SUBJECT_PREFIX: &str = "[klaxon] ";

/// Renders an alert as an email: the subject is [`SUBJECT_PREFIX`] and the shared title,
/// the text part the shared plain-text wording, and the HTML part the same title, facts
/// and output tail with every value escaped.
pub fn render(alert: &Alert) -> Rendered {
    let title = text::title(alert);
    let mut html = format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n\
         </head>\n<body>\n<h2>{t}</h2>\n<table>\n",
        t = text::escape_html(&title)
    );
    for (label, value) in text::facts(alert) {
        html.push_str(&format!(
            "<tr><th align=\"left\">{label}</th><td>{}</td></tr>\n",
            text::escape_html(&value).replace('\n', "<br>")
        ));
    }
    html.push_str("</table>\n");
    if let Some(output) = text::output_tail(alert) {
        html.push_str(&format!(
            "<p><strong>Output:</strong></p>\n<pre>{}</pre>\n",
            text::escape_html(&output)
        ));
    }
    html.push_str("</body>\n</html>\n");
    Rendered {
        subject: format!("{SUBJECT_PREFIX}{title}"),
        text: text::render_text(alert),
        html,
    }
}

/// Renders several alerts as one email: the subject is [`SUBJECT_PREFIX`] and
/// [`text::digest_title`], the text part [`text::render_digest_text`], and the HTML part
/// the same title and a list of [`text::digest_lines`], every line escaped.
pub fn render_digest(alerts: &[Alert]) -> Rendered {
    let title = text::digest_title(alerts);
    let mut html = format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n\
         </head>\n<body>\n<h2>{t}</h2>\n<ul>\n",
        t = text::escape_html(&title)
    );
    for line in text::digest_lines(alerts) {
        html.push_str(&format!("<li>{}</li>\n", text::escape_html(&line)));
    }
    html.push_str("</ul>\n</body>\n</html>\n");
    Rendered {
        subject: format!("{SUBJECT_PREFIX}{title}"),
        text: text::render_digest_text(alerts),
        html,
    }
}

/// An `email` notifier ready to send. Connects anew for every message: alerts are rare,
/// and lettre's pool would need a tokio runtime already when the notifier is built.
pub struct Email {
    spec: EmailSpec,
    from: Mailbox,
    to: Vec<Mailbox>,
    tls: Tls,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    timeout: Duration,
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The transport holds the password in the clear: only the spec, which redacts it.
        f.debug_struct("Email")
            .field("spec", &self.spec)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Email {
    /// How long one delivery may take, from connecting to the server's answer to the
    /// message.
    pub const TIMEOUT: Duration = Duration::from_secs(30);

    /// A notifier for `spec`: parses the mailboxes, reads `ca_file` (a leading `~` is the
    /// user's home) and sets up TLS as `tls` says. Fails with [`BuildError::Setup`] when
    /// a mailbox does not parse or `ca_file` cannot be read or holds no certificate.
    /// Connects to nothing.
    pub fn new(spec: EmailSpec) -> Result<Self, BuildError> {
        let from = mailbox(&spec.from, "from")?;
        let to = spec
            .to
            .iter()
            .map(|to| mailbox(to, "to"))
            .collect::<Result<Vec<_>, _>>()?;
        let tls = match spec.tls {
            EmailTls::None => Tls::None,
            EmailTls::Starttls => Tls::Required(tls_parameters(&spec)?),
            EmailTls::Tls => Tls::Wrapper(tls_parameters(&spec)?),
        };
        let transport = transport(&spec, tls.clone(), Self::TIMEOUT);
        Ok(Self {
            spec,
            from,
            to,
            tls,
            transport,
            timeout: Self::TIMEOUT,
        })
    }

    /// The same notifier with another delivery deadline than [`Email::TIMEOUT`]; it also
    /// bounds each single step (connecting, each SMTP command).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.transport = transport(&self.spec, self.tls.clone(), timeout);
        self.timeout = timeout;
        self
    }
}

impl Channel for Email {
    const MERGES: bool = true;

    /// Sends [`render`]'s subject and parts as one `multipart/alternative` message from
    /// `from` to every `to`, within the deadline. Connection errors, timeouts, a
    /// connection closed before the server's answer, and 4xx SMTP replies are
    /// [`DeliveryError::Retry`]; 5xx replies (a refused AUTH, a refused recipient), TLS
    /// failures (an untrusted certificate: set `ca_file`) and a server without STARTTLS
    /// or a usable AUTH mechanism are [`DeliveryError::Reject`]. No reason contains the
    /// password.
    async fn send(&self, alert: &Alert) -> Result<(), DeliveryError> {
        self.deliver(self.message(alert, SystemTime::now())?).await
    }

    /// Sends [`render_digest`]'s subject and parts as one message, as [`Email::send`]
    /// does. Its Message-ID is the same for every delivery attempt of the same
    /// messages.
    async fn send_digest(&self, alerts: &[Alert]) -> Result<(), DeliveryError> {
        self.deliver(self.digest_message(alerts, SystemTime::now())?)
            .await
    }
}

impl Email {
    async fn deliver(&self, message: Message) -> Result<(), DeliveryError> {
        let sent = tokio::time::timeout(self.timeout, self.transport.send(message)).await;
        match sent {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.classify(&e)),
            Err(_) => Err(DeliveryError::Retry {
                reason: format!(
                    "no answer from `{}` within {}",
                    self.server(),
                    humantime::format_duration(self.timeout)
                ),
                after: None,
            }),
        }
    }

    /// The message for `alert`, dated `date`. Its Message-ID is the same for every
    /// delivery attempt of one message, so a mail client can drop a duplicate after a
    /// retry; every message of one alert refers to the alert's own id, so clients thread
    /// an outage together.
    fn message(&self, alert: &Alert, date: SystemTime) -> Result<Message, DeliveryError> {
        let domain = self.from.email.domain();
        let id = message_id_part(&alert.id);
        let message_id = format!(
            "<{id}.{}.{}@{domain}>",
            alert.event.as_str(),
            alert.started_at.timestamp()
        );
        let references = format!("<{id}@{domain}>");
        self.build(render(alert), message_id, Some(references), date)
    }

    /// The message for a digest of `alerts`, dated `date`: its Message-ID is a hash of
    /// what identifies each message in it (alert id, event, run start), so a retry of
    /// the same digest keeps it. It refers to no one alert's thread.
    fn digest_message(&self, alerts: &[Alert], date: SystemTime) -> Result<Message, DeliveryError> {
        let mut identity = String::new();
        for alert in alerts {
            identity.push_str(&format!(
                "{}\n{}\n{}\n",
                alert.id,
                alert.event.as_str(),
                alert.started_at.timestamp()
            ));
        }
        let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, identity.as_bytes());
        let hex: String = hash.as_ref()[..12]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let message_id = format!(
            "<digest.{hex}.{}@{}>",
            alerts.len(),
            self.from.email.domain()
        );
        self.build(render_digest(alerts), message_id, None, date)
    }

    fn build(
        &self,
        rendered: Rendered,
        message_id: String,
        references: Option<String>,
        date: SystemTime,
    ) -> Result<Message, DeliveryError> {
        let Rendered {
            subject,
            text,
            html,
        } = rendered;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .date(date)
            .message_id(Some(message_id))
            .user_agent(crate::http::USER_AGENT.to_owned())
            .header(AutoSubmitted);
        if let Some(references) = references {
            builder = builder.references(references);
        }
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| DeliveryError::Reject {
                reason: format!("cannot build the message: {e}"),
            })
    }

    /// `host:port` (`[::1]:25` for an IPv6 address), as reasons name the server.
    fn server(&self) -> String {
        let host = &self.spec.host;
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{}", self.spec.port)
        } else {
            format!("{host}:{}", self.spec.port)
        }
    }

    /// The delivery error for what lettre reports, the password scrubbed out.
    fn classify(&self, e: &lettre::transport::smtp::Error) -> DeliveryError {
        let server = self.server();
        let error = classify(e, &server, self.spec.tls, self.spec.credentials.as_ref());
        match (error, &self.spec.credentials) {
            (DeliveryError::Retry { reason, after }, Some(c)) => DeliveryError::Retry {
                reason: scrub(reason, c),
                after,
            },
            (DeliveryError::Reject { reason }, Some(c)) => DeliveryError::Reject {
                reason: scrub(reason, c),
            },
            (error, None) => error,
        }
    }
}

/// A configured mailbox as lettre's type.
fn mailbox(text: &str, key: &str) -> Result<Mailbox, BuildError> {
    text.parse()
        .map_err(|e| BuildError::Setup(format!("`{key}`: `{text}` is not a mailbox: {e}")))
}

/// TLS towards `spec.host`, trusting the platform's roots and `ca_file`'s certificates.
fn tls_parameters(spec: &EmailSpec) -> Result<TlsParameters, BuildError> {
    let mut builder = TlsParameters::builder(spec.host.clone());
    if let Some(path) = &spec.ca_file {
        for certificate in ca_certificates(path)? {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build_rustls()
        .map_err(|e| BuildError::Setup(format!("cannot set up TLS to `{}`: {e}", spec.host)))
}

/// Every certificate in the PEM file at `path`; fails when it cannot be read or holds
/// none.
fn ca_certificates(path: &Path) -> Result<Vec<Certificate>, BuildError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let path = crate::http::expand_home(path, std::env::home_dir().as_deref());
    let shown = path.display();
    let pem = std::fs::read(&path)
        .map_err(|e| BuildError::Setup(format!("cannot read `ca_file` `{shown}`: {e}")))?;
    let not_pem = |e: &dyn fmt::Display| {
        BuildError::Setup(format!("`ca_file` `{shown}` is not a PEM certificate: {e}"))
    };
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .map(|der| {
            let der = der.map_err(|e| not_pem(&e))?;
            Certificate::from_der(der.to_vec()).map_err(|e| not_pem(&e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if certificates.is_empty() {
        return Err(BuildError::Setup(format!(
            "`ca_file` `{shown}` holds no PEM certificate"
        )));
    }
    Ok(certificates)
}

/// The SMTP client: no pool, `timeout` on each step, AUTH when there are credentials.
fn transport(spec: &EmailSpec, tls: Tls, timeout: Duration) -> AsyncSmtpTransport<Tokio1Executor> {
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(spec.host.as_str())
        .port(spec.port)
        .tls(tls)
        .timeout(Some(timeout));
    if let Some(credentials) = &spec.credentials {
        builder = builder.credentials(Credentials::new(
            credentials.username.clone(),
            credentials.password.expose_secret().to_owned(),
        ));
    }
    builder.build()
}

/// The alert id as the left part of a Message-ID: characters a Message-ID may not hold
/// become `_`.
fn message_id_part(id: &str) -> String {
    let id: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() {
        "alert".to_owned()
    } else {
        id
    }
}

/// `Auto-Submitted: auto-generated` (RFC 3834): out-of-office replies and other robots
/// do not answer an alert.
#[derive(Clone)]
struct AutoSubmitted;

impl header::Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

/// Whether a failed delivery is worth another try, and why it failed. A TLS failure, a
/// 5xx reply and a client-side refusal (no STARTTLS, no usable AUTH mechanism) are
/// rejected: they need the config or the server changed. Anything about the connection
/// itself, a timeout and a 4xx reply are worth a retry.
fn classify(
    e: &lettre::transport::smtp::Error,
    server: &str,
    tls: EmailTls,
    credentials: Option<&EmailCredentials>,
) -> DeliveryError {
    let retry = |reason: String| DeliveryError::Retry {
        reason,
        after: None,
    };
    if let Some(tls_error) = rustls_error(e) {
        let hint = match tls_error {
            rustls::Error::InvalidCertificate(_) => {
                "; if the server's certificate is self-signed or from a private CA, \
                 trust it with `ca_file`"
            }
            rustls::Error::InvalidMessage(_) if tls == EmailTls::Tls => {
                "; `tls = \"tls\"` needs a server that speaks TLS from the first byte \
                 (usually port 465), `starttls` is for port 587"
            }
            _ => "",
        };
        return DeliveryError::Reject {
            reason: format!("TLS with `{server}` failed: {tls_error}{hint}"),
        };
    }
    if let Some(code) = e.status() {
        let said = innermost(e);
        let reply = format!("SMTP {code} {said}");
        if e.is_transient() {
            return retry(format!("`{server}` answered {}", reply.trim_end()));
        }
        let reason = match (code.to_string().as_str(), credentials) {
            ("534" | "535" | "538", Some(c)) => {
                format!(
                    "authentication as `{}` at `{server}` failed: {reply}",
                    c.username
                )
            }
            ("530", None) => format!(
                "`{server}` requires authentication and no `username` and `password` are \
                 set: {reply}"
            ),
            _ => format!("`{server}` refused: {reply}"),
        };
        return DeliveryError::Reject {
            reason: reason.trim_end().to_owned(),
        };
    }
    if e.is_timeout() {
        return retry(format!("no answer from `{server}` in time"));
    }
    if e.is_client() || e.is_tls() {
        return DeliveryError::Reject {
            reason: format!("cannot deliver through `{server}`: {}", innermost(e)),
        };
    }
    let cause = innermost(e);
    if e.is_response() {
        if cause == "incomplete response" {
            return retry(format!("`{server}` closed the connection before answering"));
        }
        return retry(format!("`{server}` gave a bad answer: {cause}"));
    }
    // lettre tells a failed connect from a failed exchange only in its wording.
    if e.to_string().starts_with("Connection error") {
        return retry(format!("cannot connect to `{server}`: {cause}"));
    }
    retry(format!("connection to `{server}` failed: {cause}"))
}

/// The rustls error somewhere in `e`'s causes, itself or inside an I/O error.
fn rustls_error(e: &lettre::transport::smtp::Error) -> Option<&rustls::Error> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(error) = cause {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        cause = error.source();
    }
    None
}

/// The innermost cause's message: what happened, not where ("Connection refused").
fn innermost(e: &lettre::transport::smtp::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    // One line, so a log line stays one line.
    cause
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Belt and braces: a reason never carries the password, plain or as AUTH PLAIN and
/// LOGIN send it (base64), even if a server echoes it back.
fn scrub(reason: String, credentials: &EmailCredentials) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    let password = credentials.password.expose_secret();
    if password.is_empty() {
        return reason;
    }
    let plain = format!("\0{}\0{password}", credentials.username);
    let mut reason = reason;
    for form in [
        STANDARD.encode(plain),
        STANDARD.encode(password),
        password.to_owned(),
    ] {
        if reason.contains(&form) {
            reason = reason.replace(&form, "***");
        }
    }
    reason
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fixtures::{self, span_of};

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
        fixtures::validated::<EmailConfig>(toml)
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

    fn spec(tls: EmailTls, port: u16) -> EmailSpec {
        EmailSpec {
            host: "127.0.0.1".into(),
            port,
            tls,
            credentials: Some(EmailCredentials {
                username: "alerts@example.com".into(),
                password: SecretString::from("hunter2-SECRET"),
            }),
            from: "klaxon <alerts@example.com>".into(),
            to: vec!["oncall@example.com".into(), "Ops <ops@example.com>".into()],
            ca_file: None,
        }
    }

    #[test]
    fn renders_a_failure() {
        let rendered = render(&fixtures::failure());
        assert_eq!(
            rendered.subject,
            "[klaxon] DOWN api on macbook: HTTP 503 Service Unavailable"
        );
        assert_eq!(rendered.text, text::render_text(&fixtures::failure()));
        assert_eq!(
            rendered.html,
            "<!DOCTYPE html>\n\
             <html>\n\
             <head>\n\
             <meta charset=\"utf-8\">\n\
             <title>DOWN api on macbook: HTTP 503 Service Unavailable</title>\n\
             </head>\n\
             <body>\n\
             <h2>DOWN api on macbook: HTTP 503 Service Unavailable</h2>\n\
             <table>\n\
             <tr><th align=\"left\">Severity</th><td>critical</td></tr>\n\
             <tr><th align=\"left\">Check</th><td>http https://api.example.com/health</td></tr>\n\
             <tr><th align=\"left\">Reason</th><td>HTTP 503 Service Unavailable</td></tr>\n\
             <tr><th align=\"left\">Attempts</th><td>3 of 3</td></tr>\n\
             <tr><th align=\"left\">Elapsed</th><td>7.2s</td></tr>\n\
             <tr><th align=\"left\">Failing since</th><td>2026-03-29 10:15:02 +11:00</td></tr>\n\
             <tr><th align=\"left\">Last success</th><td>2026-03-29 10:10:01 +11:00</td></tr>\n\
             <tr><th align=\"left\">Next run</th><td>2026-03-29 10:20:00 +11:00</td></tr>\n\
             <tr><th align=\"left\">Alert</th><td>api-20260329T001502Z</td></tr>\n\
             </table>\n\
             <p><strong>Output:</strong></p>\n\
             <pre>upstream connect error\n\
             reset reason: overflow</pre>\n\
             </body>\n\
             </html>\n"
        );
    }

    #[test]
    fn renders_a_recovery() {
        let rendered = render(&fixtures::recovery());
        assert_eq!(
            rendered,
            Rendered {
                subject: "[klaxon] RECOVERED api on macbook after 1h 5m".into(),
                text: "RECOVERED api on macbook after 1h 5m\n\
                       Severity: ok\n\
                       Check: http https://api.example.com/health\n\
                       Reason: HTTP 200 OK\n\
                       Attempts: 1 of 3\n\
                       Elapsed: 180ms\n\
                       Failing since: 2026-03-29 10:15:02 +11:00\n\
                       Next run: 2026-03-29 11:25:00 +11:00\n\
                       Downtime: 1h 5m\n\
                       Alert: api-20260329T001502Z"
                    .into(),
                html: "<!DOCTYPE html>\n\
                       <html>\n\
                       <head>\n\
                       <meta charset=\"utf-8\">\n\
                       <title>RECOVERED api on macbook after 1h 5m</title>\n\
                       </head>\n\
                       <body>\n\
                       <h2>RECOVERED api on macbook after 1h 5m</h2>\n\
                       <table>\n\
                       <tr><th align=\"left\">Severity</th><td>ok</td></tr>\n\
                       <tr><th align=\"left\">Check</th><td>http https://api.example.com/health</td></tr>\n\
                       <tr><th align=\"left\">Reason</th><td>HTTP 200 OK</td></tr>\n\
                       <tr><th align=\"left\">Attempts</th><td>1 of 3</td></tr>\n\
                       <tr><th align=\"left\">Elapsed</th><td>180ms</td></tr>\n\
                       <tr><th align=\"left\">Failing since</th><td>2026-03-29 10:15:02 +11:00</td></tr>\n\
                       <tr><th align=\"left\">Next run</th><td>2026-03-29 11:25:00 +11:00</td></tr>\n\
                       <tr><th align=\"left\">Downtime</th><td>1h 5m</td></tr>\n\
                       <tr><th align=\"left\">Alert</th><td>api-20260329T001502Z</td></tr>\n\
                       </table>\n\
                       </body>\n\
                       </html>\n"
                    .into(),
            }
        );
    }

    #[test]
    fn renders_a_digest() {
        assert_eq!(
            render_digest(&fixtures::digest()),
            Rendered {
                subject: "[klaxon] 3 alerts on macbook: 1 down, 1 warning, 1 recovered".into(),
                text: "3 alerts on macbook: 1 down, 1 warning, 1 recovered\n\
                       \n\
                       - DOWN api on macbook: HTTP 503 Service Unavailable (3 of 3 attempts, 7.2s)\n\
                       - WARNING disk on macbook: disk 85% full (2 of 3 attempts, 1.3s)\n\
                       - RECOVERED db on macbook after 1h 5m (down 10:15–11:20)"
                    .into(),
                html: "<!DOCTYPE html>\n\
                       <html>\n\
                       <head>\n\
                       <meta charset=\"utf-8\">\n\
                       <title>3 alerts on macbook: 1 down, 1 warning, 1 recovered</title>\n\
                       </head>\n\
                       <body>\n\
                       <h2>3 alerts on macbook: 1 down, 1 warning, 1 recovered</h2>\n\
                       <ul>\n\
                       <li>DOWN api on macbook: HTTP 503 Service Unavailable (3 of 3 attempts, 7.2s)</li>\n\
                       <li>WARNING disk on macbook: disk 85% full (2 of 3 attempts, 1.3s)</li>\n\
                       <li>RECOVERED db on macbook after 1h 5m (down 10:15–11:20)</li>\n\
                       </ul>\n\
                       </body>\n\
                       </html>\n"
                    .into(),
            }
        );
        let alerts = [
            Alert {
                job: "<b>x</b>".into(),
                ..fixtures::failure()
            },
            fixtures::recovery(),
        ];
        let html = render_digest(&alerts).html;
        assert!(
            html.contains("<li>DOWN &lt;b&gt;x&lt;/b&gt; on macbook"),
            "{html}"
        );
        assert!(!html.contains("<b>"), "{html}");
    }

    #[test]
    fn a_digest_message_keeps_its_id_across_retries() {
        let email = Email::new(spec(EmailTls::None, 25)).unwrap();
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(1_774_739_702);
        let message = email.digest_message(&fixtures::digest(), date).unwrap();
        let raw = String::from_utf8(message.formatted()).unwrap();
        let headers = raw.split("\r\n\r\n").next().unwrap();
        for expected in [
            "Subject: [klaxon] 3 alerts on macbook: 1 down, 1 warning, 1 recovered\r\n",
            "Auto-Submitted: auto-generated\r\n",
            "Content-Type: multipart/alternative;",
        ] {
            assert!(headers.contains(expected), "{expected:?} in\n{headers}");
        }
        assert!(!headers.contains("References:"), "{headers}");
        let id = message.headers().get_raw("Message-ID").unwrap().to_owned();
        assert!(
            id.starts_with("<digest.") && id.ends_with(".3@example.com>"),
            "{id}"
        );
        let again = email
            .digest_message(&fixtures::digest(), SystemTime::now())
            .unwrap();
        assert_eq!(again.headers().get_raw("Message-ID"), Some(id.as_str()));
        let other = email
            .digest_message(&fixtures::digest()[..2], date)
            .unwrap();
        assert_ne!(other.headers().get_raw("Message-ID"), Some(id.as_str()));
    }

    #[test]
    fn every_value_is_escaped_in_html() {
        let alert = Alert {
            job: "a<b>".into(),
            summary: "body \"<script>alert('x')</script>\" & more\nsecond line".into(),
            output: Some("<b>not bold</b> & </pre>".into()),
            ..fixtures::failure()
        };
        let html = render(&alert).html;
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(
            html.contains("<h2>DOWN a&lt;b&gt; on macbook: body &quot;&lt;script&gt;"),
            "{html}"
        );
        assert!(
            html.contains(
                "<td>body &quot;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot; \
                 &amp; more<br>second line</td>"
            ),
            "{html}"
        );
        assert!(
            html.contains("<pre>&lt;b&gt;not bold&lt;/b&gt; &amp; &lt;/pre&gt;</pre>"),
            "{html}"
        );
    }

    #[test]
    fn debug_never_shows_the_password() {
        let email = Email::new(spec(EmailTls::Starttls, 587)).unwrap();
        let debug = format!("{email:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("password: ***"), "{debug}");
        let notifier = crate::Notifier::build(
            &crate::NotifierSpec::Email(spec(EmailTls::Starttls, 587)),
            &reqwest::Client::new(),
            None,
        )
        .unwrap();
        assert!(!format!("{notifier:?}").contains("hunter2"));
    }

    #[test]
    fn builds_without_a_runtime_and_reads_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, fixtures::TEST_CA_PEM).unwrap();
        for tls in [EmailTls::Starttls, EmailTls::Tls, EmailTls::None] {
            let spec = EmailSpec {
                ca_file: Some(ca.clone()),
                ..spec(tls, 2525)
            };
            Email::new(spec).unwrap();
        }

        let missing = dir.path().join("missing.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let cases = [
            (&missing, "cannot read `ca_file`"),
            (&empty, "holds no PEM certificate"),
            (&broken, "is not a PEM certificate"),
        ];
        for (path, expected) in cases {
            let spec = EmailSpec {
                ca_file: Some(path.clone()),
                ..spec(EmailTls::Starttls, 587)
            };
            let error = Email::new(spec).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
            assert!(error.contains(&path.display().to_string()), "{error}");
        }
    }

    #[test]
    fn the_message_has_every_header_and_both_parts() {
        let email = Email::new(spec(EmailTls::None, 25)).unwrap();
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(1_774_739_702);
        let message = email.message(&fixtures::failure(), date).unwrap();
        let raw = String::from_utf8(message.formatted()).unwrap();
        let headers = raw.split("\r\n\r\n").next().unwrap();
        for expected in [
            "From: klaxon <alerts@example.com>\r\n",
            "To: oncall@example.com, Ops <ops@example.com>\r\n",
            "Subject: [klaxon] DOWN api on macbook: HTTP 503 Service Unavailable\r\n",
            "Date: Sat, 28 Mar 2026 23:15:02 +0000\r\n",
            "Message-ID: <api-20260329T001502Z.failure.1774739702@example.com>\r\n",
            "References: <api-20260329T001502Z@example.com>\r\n",
            "Auto-Submitted: auto-generated\r\n",
            "MIME-Version: 1.0\r\n",
            "Content-Type: multipart/alternative;",
        ] {
            assert!(headers.contains(expected), "{expected:?} in\n{headers}");
        }
        assert!(
            raw.contains("Content-Type: text/plain; charset=utf-8"),
            "{raw}"
        );
        assert!(
            raw.contains("Content-Type: text/html; charset=utf-8"),
            "{raw}"
        );
        // A redelivery of the same message keeps its Message-ID.
        let again = email
            .message(&fixtures::failure(), SystemTime::now())
            .unwrap();
        assert_eq!(
            again.headers().get_raw("Message-ID"),
            message.headers().get_raw("Message-ID")
        );
        let recovery = email.message(&fixtures::recovery(), date).unwrap();
        assert_ne!(
            recovery.headers().get_raw("Message-ID"),
            message.headers().get_raw("Message-ID")
        );
        assert_eq!(
            recovery.headers().get_raw("References"),
            message.headers().get_raw("References")
        );
    }

    #[test]
    fn reasons_name_the_server() {
        let email = |host: &str| {
            Email::new(EmailSpec {
                host: host.into(),
                ..spec(EmailTls::Starttls, 587)
            })
            .unwrap()
        };
        assert_eq!(email("smtp.example.com").server(), "smtp.example.com:587");
        assert_eq!(email("::1").server(), "[::1]:587");
    }

    #[test]
    fn message_ids_hold_only_allowed_characters() {
        assert_eq!(message_id_part("api-2026"), "api-2026");
        assert_eq!(message_id_part("a b<c>@d\"e"), "a_b_c__d_e");
        assert_eq!(message_id_part(""), "alert");
    }

    #[test]
    fn reasons_never_carry_the_password() {
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD;

        let credentials = EmailCredentials {
            username: "alerts".into(),
            password: SecretString::from("hunter2"),
        };
        let plain = STANDARD.encode("\0alerts\0hunter2");
        let login = STANDARD.encode("hunter2");
        let reason = format!("535 bad: hunter2 {plain} {login}");
        assert_eq!(scrub(reason, &credentials), "535 bad: *** *** ***");
    }

    /// A scripted SMTP server on loopback for one connection: greets with `greeting`
    /// (nothing when `None`), answers EHLO, and answers MAIL with `mail_reply`.
    async fn scripted(greeting: Option<&'static str>, mail_reply: &'static str) -> u16 {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let Some(greeting) = greeting else {
                // Hold the connection open and say nothing.
                tokio::time::sleep(Duration::from_secs(60)).await;
                return;
            };
            write.write_all(greeting.as_bytes()).await.unwrap();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let command = line.to_ascii_uppercase();
                let reply = if command.starts_with("EHLO") {
                    "250 scripted\r\n"
                } else if command.starts_with("MAIL") {
                    mail_reply
                } else if command.starts_with("QUIT") {
                    "221 bye\r\n"
                } else {
                    "250 ok\r\n"
                };
                if write.write_all(reply.as_bytes()).await.is_err() || command == "QUIT" {
                    return;
                }
            }
        });
        port
    }

    fn plain(port: u16) -> Email {
        let spec = EmailSpec {
            credentials: None,
            ..spec(EmailTls::None, port)
        };
        Email::new(spec).unwrap()
    }

    #[tokio::test]
    async fn smtp_replies_are_classified() {
        let port = scripted(Some("220 ready\r\n"), "451 4.3.0 try again later\r\n").await;
        assert_eq!(
            plain(port).send(&fixtures::failure()).await,
            Err(DeliveryError::Retry {
                reason: format!("`127.0.0.1:{port}` answered SMTP 451 4.3.0 try again later"),
                after: None,
            })
        );

        let port = scripted(Some("220 ready\r\n"), "550 5.7.1 relaying denied\r\n").await;
        assert_eq!(
            plain(port).send(&fixtures::failure()).await,
            Err(DeliveryError::Reject {
                reason: format!("`127.0.0.1:{port}` refused: SMTP 550 5.7.1 relaying denied"),
            })
        );

        let port = scripted(Some("554 no service\r\n"), "250 ok\r\n").await;
        assert_eq!(
            plain(port).send(&fixtures::failure()).await,
            Err(DeliveryError::Reject {
                reason: format!("`127.0.0.1:{port}` refused: SMTP 554 no service"),
            })
        );

        let port = scripted(Some("220 ready\r\n"), "250 ok\r\n").await;
        assert_eq!(plain(port).send(&fixtures::failure()).await, Ok(()));
    }

    #[tokio::test]
    async fn digests_are_sent_and_classified() {
        let port = scripted(Some("220 ready\r\n"), "250 ok\r\n").await;
        assert_eq!(plain(port).send_digest(&fixtures::digest()).await, Ok(()));
        let port = scripted(Some("220 ready\r\n"), "452 4.3.1 out of memory\r\n").await;
        assert_eq!(
            plain(port).send_digest(&fixtures::digest()).await,
            Err(DeliveryError::Retry {
                reason: format!("`127.0.0.1:{port}` answered SMTP 452 4.3.1 out of memory"),
                after: None,
            })
        );
    }

    #[tokio::test]
    async fn starttls_is_required_when_configured() {
        let port = scripted(Some("220 ready\r\n"), "250 ok\r\n").await;
        let spec = EmailSpec {
            credentials: None,
            ..spec(EmailTls::Starttls, port)
        };
        let error = Email::new(spec)
            .unwrap()
            .send(&fixtures::failure())
            .await
            .unwrap_err();
        assert_eq!(
            error,
            DeliveryError::Reject {
                reason: format!(
                    "cannot deliver through `127.0.0.1:{port}`: STARTTLS is not supported \
                     on this server"
                ),
            }
        );
    }

    #[tokio::test]
    async fn connection_problems_are_worth_a_retry() {
        // A port nothing listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = listener.local_addr().unwrap().port();
        drop(listener);
        let error = plain(closed).send(&fixtures::failure()).await.unwrap_err();
        assert!(
            matches!(&error, DeliveryError::Retry { reason, .. }
                if reason.starts_with(&format!("cannot connect to `127.0.0.1:{closed}`: "))),
            "{error:?}"
        );

        // A server that accepts and never greets.
        let silent = scripted(None, "").await;
        let error = plain(silent)
            .with_timeout(Duration::from_millis(300))
            .send(&fixtures::failure())
            .await
            .unwrap_err();
        assert!(matches!(error, DeliveryError::Retry { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("no answer from `127.0.0.1:{silent}`")),
            "{error}"
        );
    }
}
