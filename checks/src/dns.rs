//! The `dns` check: its config (`name`, `record`, `server`, `protocol`, `expect`,
//! `max_latency`), validation, and the runtime that asks one query with
//! hickory-resolver (no cache, no retries of its own: the job's `retry` retries) and
//! judges the answers.
//!
//! NXDOMAIN, SERVFAIL (and any other error code), no record of the type, a timeout and
//! an expected value missing from the answers are critical; the answers are the output.
//! Values are compared as DNS writes them, names without their final dot and in any
//! case: `93.184.216.34`, `10 mail.example.com`, a TXT record's text. Metric: `time`
//! (milliseconds).

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{Name, ResolveError, ResolveErrorKind, Resolver};
use serde::Deserialize;
use tokio::time::Instant;
use toml::Spanned;

use crate::validate::{self, ConfigIssue};
use crate::{BuildError, CheckPlugin, Metric, Outcome, Probe, Severity, Shared, metric, text};

/// The record types a `dns` check asks for.
pub const RECORDS: [&str; 10] = [
    "A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "SRV", "CAA", "PTR",
];

/// The `[jobs.NAME.check]` table of `type = "dns"`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// The name asked for; for `PTR`, an IP address may be given instead.
    pub name: Spanned<String>,
    /// One of [`RECORDS`]; default `A`.
    #[serde(default)]
    pub record: Option<Spanned<String>>,
    /// `host:port`, or a host alone (port 53); the host an IP address or a name (looked
    /// up through the system); default: the system's resolvers.
    #[serde(default)]
    pub server: Option<Spanned<String>>,
    /// `udp` (default) or `tcp`.
    #[serde(default)]
    pub protocol: Option<Spanned<String>>,
    /// Values that must all be among the answers.
    #[serde(default)]
    pub expect: Option<Spanned<Vec<String>>>,
    /// A slower answer is critical.
    #[serde(default)]
    pub max_latency: Option<Spanned<String>>,
}

/// A validated `dns` check.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsSpec {
    /// Fully qualified (no search domains are tried).
    pub name: Name,
    pub record: RecordType,
    /// `None`: the system's resolvers.
    pub server: Option<Server>,
    pub tcp: bool,
    pub expect: Vec<String>,
    pub max_latency: Option<Duration>,
}

/// The server asked: an address, or a name to look up first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Server {
    Addr(SocketAddr),
    Host(String, u16),
}

impl std::fmt::Display for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Server::Addr(addr) => write!(f, "{addr}"),
            Server::Host(host, port) => write!(f, "{host}:{port}"),
        }
    }
}

impl Server {
    /// The address to send to; a name is looked up on the checks' blocking pool.
    async fn addr(&self) -> Result<SocketAddr, String> {
        let (host, port) = match self {
            Server::Addr(addr) => return Ok(*addr),
            Server::Host(host, port) => (host, *port),
        };
        let shown = format!("{host}:{port}");
        validate::lookup(host, port)
            .await
            .map_err(|e| format!("server `{shown}`: {e}"))?
            .first()
            .copied()
            .ok_or_else(|| format!("server `{shown}` has no address"))
    }
}

impl DnsSpec {
    /// `example.com MX`, with ` @127.0.0.1:53` when a server is given.
    pub fn target(&self) -> String {
        let mut target = format!("{} {}", bare(&self.name), self.record);
        if let Some(server) = &self.server {
            target += &format!(" @{server}");
        }
        target
    }
}

/// A name as people write it: without its final dot.
fn bare(name: &Name) -> String {
    let text = name.to_utf8();
    text.strip_suffix('.').unwrap_or(&text).to_owned()
}

fn server(raw: &Spanned<String>, issues: &mut Vec<ConfigIssue>) -> Option<Server> {
    let text = raw.get_ref().trim();
    if let Ok(addr) = SocketAddr::from_str(text) {
        return Some(Server::Addr(addr));
    }
    if let Ok(ip) = IpAddr::from_str(text.trim_start_matches('[').trim_end_matches(']')) {
        return Some(Server::Addr(SocketAddr::new(ip, 53)));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().ok().filter(|p| *p > 0)),
        None => (text, Some(53)),
    };
    let name_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if let Some(port) = port
        && name_ok
    {
        return Some(Server::Host(host.to_owned(), port));
    }
    issues.push(ConfigIssue::new(
        raw.span(),
        format!(
            "`server`: expected `host:port` or a host, like `127.0.0.1:5353`, `[::1]:53` \
             or `ns1.example.com`, found `{text}`"
        ),
    ));
    None
}

impl CheckPlugin for DnsConfig {
    type Spec = DnsSpec;
    type Runtime = DnsCheck;

    const NETWORK: bool = true;

    fn build(spec: &DnsSpec, _shared: &Shared) -> Result<DnsCheck, BuildError> {
        Ok(DnsCheck::new(spec.clone()))
    }

    /// Checks every value, pushing each problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<DnsSpec> {
        let before = issues.len();
        let record = match &self.record {
            None => Some(RecordType::A),
            Some(raw) => {
                let upper = raw.get_ref().trim().to_ascii_uppercase();
                if RECORDS.contains(&upper.as_str()) {
                    RecordType::from_str(&upper).ok()
                } else {
                    issues.push(ConfigIssue::new(
                        raw.span(),
                        format!(
                            "`record`: expected one of {}, found `{}`",
                            RECORDS.join(", "),
                            raw.get_ref()
                        ),
                    ));
                    None
                }
            }
        };
        let text = self.name.get_ref().trim();
        let name = match (record, IpAddr::from_str(text)) {
            (Some(RecordType::PTR), Ok(ip)) => Some(Name::from(ip)),
            _ => match Name::from_utf8(text) {
                Ok(name) if !text.is_empty() => Some(name),
                Ok(_) | Err(_) => {
                    issues.push(ConfigIssue::new(
                        self.name.span(),
                        format!("`name`: `{text}` is not a valid DNS name"),
                    ));
                    None
                }
            },
        }
        .map(|mut name| {
            name.set_fqdn(true);
            name
        });
        let server = self.server.as_ref().and_then(|raw| server(raw, issues));
        let tcp = match self.protocol.as_ref().map(|p| (p, p.get_ref().as_str())) {
            None | Some((_, "udp")) => false,
            Some((_, "tcp")) => true,
            Some((raw, other)) => {
                issues.push(ConfigIssue::new(
                    raw.span(),
                    format!("`protocol`: expected `udp` or `tcp`, found `{other}`"),
                ));
                false
            }
        };
        let expect = self
            .expect
            .as_ref()
            .map_or_else(Vec::new, |e| e.get_ref().clone());
        if let Some(raw) = &self.expect
            && expect.iter().any(|e| e.trim().is_empty())
        {
            issues.push(ConfigIssue::new(
                raw.span(),
                "`expect` must not hold an empty value",
            ));
        }
        let max_latency = self
            .max_latency
            .as_ref()
            .and_then(|raw| validate::positive_duration(raw, "max_latency", issues));
        if issues.len() > before {
            return None;
        }
        Some(DnsSpec {
            name: name?,
            record: record?,
            server,
            tcp,
            expect,
            max_latency,
        })
    }
}

/// A `dns` check ready to run.
#[derive(Debug)]
pub struct DnsCheck {
    spec: DnsSpec,
}

impl DnsCheck {
    /// Opens nothing: each run sets up its resolver afresh.
    pub fn new(spec: DnsSpec) -> Self {
        Self { spec }
    }

    /// The resolver for one query: the given server, or the system's (read on the
    /// checks' blocking pool, as it reads files).
    async fn resolver(
        &self,
        timeout: Duration,
    ) -> Result<Resolver<TokioConnectionProvider>, String> {
        let protocol = if self.spec.tcp {
            Protocol::Tcp
        } else {
            Protocol::Udp
        };
        let (config, mut opts) = match &self.spec.server {
            Some(server) => {
                let addr = server.addr().await?;
                let mut config = ResolverConfig::new();
                config.add_name_server(NameServerConfig::new(addr, protocol));
                (config, ResolverOpts::default())
            }
            None => {
                let system = crate::blocking::CHECKS
                    .run(hickory_resolver::system_conf::read_system_conf)
                    .await
                    .map_err(|e| format!("cannot read the system's resolvers: {e}"))?
                    .map_err(|e| format!("cannot read the system's resolvers: {e}"))?;
                let (system, opts) = system;
                let servers: Vec<NameServerConfig> = system
                    .name_servers()
                    .iter()
                    .filter(|s| s.protocol == protocol)
                    .cloned()
                    .collect();
                if servers.is_empty() {
                    return Err("the system names no resolver".into());
                }
                (ResolverConfig::from_parts(None, vec![], servers), opts)
            }
        };
        opts.timeout = timeout;
        opts.attempts = 0;
        opts.cache_size = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.try_tcp_on_error = false;
        opts.preserve_intermediates = true;
        let mut builder = Resolver::builder_with_config(config, TokioConnectionProvider::default());
        *builder.options_mut() = opts;
        Ok(builder.build())
    }

    /// Judges the answers (or the error) of one query that took `elapsed`.
    pub fn judge(&self, answer: Result<Vec<String>, Failure>, elapsed: Duration) -> Outcome {
        let spec = &self.spec;
        let target = format!("{} {}", bare(&spec.name), spec.record);
        let mut time = Metric::new("time", metric::millis(elapsed))
            .with_unit("ms")
            .with_min(0.0);
        if let Some(max) = spec.max_latency {
            time.crit = Some(metric::millis(max).to_string());
        }
        let answers = match answer {
            Ok(answers) => answers,
            Err(failure) => {
                let summary = match failure {
                    Failure::NxDomain => format!("NXDOMAIN: {} does not exist", bare(&spec.name)),
                    Failure::NoRecords => {
                        format!("no {} record for {}", spec.record, bare(&spec.name))
                    }
                    Failure::Code(code) => format!("{code} for {target}"),
                    Failure::Timeout => "timed out".to_owned(),
                    Failure::Other(reason) => format!("DNS: {reason}"),
                };
                return Outcome::new(Severity::Critical, summary, elapsed).with_metric(time);
            }
        };
        let output = answers.join("\n");
        let normal: Vec<String> = answers.iter().map(|a| normalise(a, spec.record)).collect();
        let missing: Vec<&str> = spec
            .expect
            .iter()
            .filter(|e| !normal.contains(&normalise(e, spec.record)))
            .map(String::as_str)
            .collect();
        let shown = shown(&answers);
        let outcome = if !missing.is_empty() {
            Outcome::new(
                Severity::Critical,
                format!("{target} lacks {}; answers: {shown}", missing.join(", ")),
                elapsed,
            )
        } else if let Some(max) = spec.max_latency.filter(|max| elapsed > *max) {
            Outcome::new(
                Severity::Critical,
                format!(
                    "slow: {} (max {}): {target} {shown}",
                    text::elapsed(elapsed),
                    text::duration(max)
                ),
                elapsed,
            )
        } else {
            Outcome::new(
                Severity::Ok,
                format!("{target} {shown} in {}", text::elapsed(elapsed)),
                elapsed,
            )
        };
        outcome.with_output(output).with_metric(time)
    }
}

/// Up to 3 answers, then how many more.
fn shown(answers: &[String]) -> String {
    let mut text = answers
        .iter()
        .take(3)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if answers.len() > 3 {
        text += &format!(" (+{} more)", answers.len() - 3);
    }
    text
}

/// A value to compare: a TXT record as it is, else lower case, each word without its
/// final dot, addresses in their canonical form.
fn normalise(value: &str, record: RecordType) -> String {
    if record == RecordType::TXT {
        return value.to_owned();
    }
    value
        .split_whitespace()
        .map(|word| {
            if let Ok(ip) = IpAddr::from_str(word) {
                return ip.to_string();
            }
            word.strip_suffix('.').unwrap_or(word).to_ascii_lowercase()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a query gave no answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    NxDomain,
    /// The name exists but has no record of the type (NOERROR, no answers).
    NoRecords,
    /// Another error code: `SERVFAIL`, `REFUSED`.
    Code(String),
    Timeout,
    Other(String),
}

fn failure(error: &ResolveError) -> Failure {
    let ResolveErrorKind::Proto(proto) = error.kind() else {
        return Failure::Other(error.to_string());
    };
    match proto.kind() {
        ProtoErrorKind::NoRecordsFound { response_code, .. } => match *response_code {
            ResponseCode::NXDomain => Failure::NxDomain,
            ResponseCode::NoError => Failure::NoRecords,
            // `ServFail` → `SERVFAIL`, `Refused` → `REFUSED`: the names dig prints.
            code => Failure::Code(format!("{code:?}").to_ascii_uppercase()),
        },
        ProtoErrorKind::Timeout => Failure::Timeout,
        _ => Failure::Other(proto.to_string()),
    }
}

/// An answer as DNS writes it, names without their final dot.
fn value(data: &RData) -> String {
    match data {
        RData::A(a) => a.to_string(),
        RData::AAAA(a) => a.to_string(),
        RData::CNAME(n) => bare(&n.0),
        RData::NS(n) => bare(&n.0),
        RData::PTR(n) => bare(&n.0),
        RData::MX(mx) => format!("{} {}", mx.preference(), bare(mx.exchange())),
        RData::TXT(txt) => txt
            .txt_data()
            .iter()
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect(),
        RData::SRV(srv) => format!(
            "{} {} {} {}",
            srv.priority(),
            srv.weight(),
            srv.port(),
            bare(srv.target())
        ),
        RData::SOA(soa) => format!(
            "{} {} {} {} {} {} {}",
            bare(soa.mname()),
            bare(soa.rname()),
            soa.serial(),
            soa.refresh(),
            soa.retry(),
            soa.expire(),
            soa.minimum()
        ),
        other => other.to_string(),
    }
}

impl Probe for DnsCheck {
    /// Asks once; `timeout` bounds the whole query.
    async fn run(&self, timeout: Duration) -> Outcome {
        let start = Instant::now();
        let resolver = match self.resolver(timeout).await {
            Ok(resolver) => resolver,
            Err(reason) => return Outcome::new(Severity::Critical, reason, start.elapsed()),
        };
        let lookup = resolver.lookup(self.spec.name.clone(), self.spec.record);
        let answer = match tokio::time::timeout(timeout, lookup).await {
            Err(_) => Err(Failure::Timeout),
            Ok(Ok(lookup)) => {
                let wanted = self.spec.record;
                let answers: Vec<String> = lookup
                    .record_iter()
                    .filter(|r| r.record_type() == wanted)
                    .map(|r| value(r.data()))
                    .collect();
                if answers.is_empty() {
                    Err(Failure::NoRecords)
                } else {
                    Ok(answers)
                }
            }
            Ok(Err(e)) => Err(failure(&e)),
        };
        let elapsed = start.elapsed();
        if answer == Err(Failure::Timeout) {
            return Outcome::new(Severity::Critical, text::timed_out(timeout), elapsed);
        }
        self.judge(answer, elapsed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use hickory_resolver::proto::op::{Message, MessageType};
    use hickory_resolver::proto::rr::Record;
    use hickory_resolver::proto::rr::rdata::{A, MX, TXT};

    use super::*;
    use crate::test_support::{config, located};

    fn valid(text: &str) -> DnsSpec {
        config::<DnsConfig>(text).validate(&mut Vec::new()).unwrap()
    }

    #[test]
    fn values_are_validated_and_located() {
        let spec = valid("name = \"example.com\"");
        assert_eq!(
            (spec.record, spec.server.clone(), spec.tcp),
            (RecordType::A, None, false)
        );
        assert_eq!(spec.target(), "example.com A");
        let spec = valid(
            "name = \"example.com\"\nrecord = \"mx\"\nserver = \"127.0.0.1:5353\"\n\
             protocol = \"tcp\"\nexpect = [\"10 mail.example.com\"]\nmax_latency = \"1s\"",
        );
        assert_eq!(spec.record, RecordType::MX);
        assert!(spec.tcp);
        assert_eq!(spec.target(), "example.com MX @127.0.0.1:5353");
        let spec = valid("name = \"192.0.2.1\"\nrecord = \"PTR\"\nserver = \"::1\"");
        assert_eq!(bare(&spec.name), "1.2.0.192.in-addr.arpa");
        assert_eq!(spec.server, Some(Server::Addr("[::1]:53".parse().unwrap())));
        let spec = valid("name = \"example.com\"\nserver = \"ns1.example.com:5353\"");
        assert_eq!(
            spec.server,
            Some(Server::Host("ns1.example.com".into(), 5353))
        );
        assert_eq!(spec.target(), "example.com A @ns1.example.com:5353");

        let text = "name = \"\"\nrecord = \"AXFR\"\nserver = \"dns.example:port\"\n\
                    protocol = \"quic\"\nmax_latency = \"0s\"";
        assert_eq!(
            located(text, DnsConfig::validate),
            [
                [
                    "\"AXFR\"",
                    "`record`: expected one of A, AAAA, CNAME, MX, TXT, NS, SOA, SRV, CAA, PTR, found `AXFR`"
                ],
                ["\"\"", "`name`: `` is not a valid DNS name"],
                [
                    "\"dns.example:port\"",
                    "`server`: expected `host:port` or a host, like `127.0.0.1:5353`, `[::1]:53` or `ns1.example.com`, found `dns.example:port`"
                ],
                [
                    "\"quic\"",
                    "`protocol`: expected `udp` or `tcp`, found `quic`"
                ],
                ["\"0s\"", "`max_latency` must be greater than zero"],
            ]
        );
    }

    #[test]
    fn judgements() {
        let check = DnsCheck::new(valid(
            "name = \"example.com\"\nrecord = \"MX\"\nexpect = [\"10 MAIL.example.com.\"]\nmax_latency = \"1s\"",
        ));
        let ms = Duration::from_millis(12);
        let answers = vec![
            "10 mail.example.com".to_owned(),
            "20 backup.example.com".to_owned(),
        ];
        let r = check.judge(Ok(answers.clone()), ms);
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (
                Severity::Ok,
                "example.com MX 10 mail.example.com, 20 backup.example.com in 12ms"
            )
        );
        assert_eq!(
            r.output.as_deref(),
            Some("10 mail.example.com\n20 backup.example.com")
        );
        assert_eq!(
            r.metrics,
            [Metric::new("time", 12.0)
                .with_unit("ms")
                .with_min(0.0)
                .with_crit("1000")]
        );
        let r = check.judge(Ok(answers.clone()), Duration::from_millis(1500));
        assert_eq!(r.severity, Severity::Critical);
        assert!(
            r.summary.starts_with("slow: 1.5s (max 1s): "),
            "{}",
            r.summary
        );
        let r = check.judge(Ok(vec!["20 backup.example.com".into()]), ms);
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (
                Severity::Critical,
                "example.com MX lacks 10 MAIL.example.com.; answers: 20 backup.example.com"
            )
        );
        for (failure, summary) in [
            (Failure::NxDomain, "NXDOMAIN: example.com does not exist"),
            (Failure::NoRecords, "no MX record for example.com"),
            (
                Failure::Code("SERVFAIL".into()),
                "SERVFAIL for example.com MX",
            ),
        ] {
            let r = check.judge(Err(failure), ms);
            assert_eq!(
                (r.severity, r.summary.as_str()),
                (Severity::Critical, summary)
            );
        }
        assert_eq!(
            normalise("2001:DB8:0:0::1", RecordType::AAAA),
            "2001:db8::1"
        );
        assert_eq!(normalise("Hello World", RecordType::TXT), "Hello World");
    }

    /// A real DNS server on a loopback UDP port, built from hickory's own message
    /// types: `ok.test` has A and MX records and a TXT; `broken.test` answers
    /// SERVFAIL; every other name is NXDOMAIN.
    async fn serve(on: &str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let socket = tokio::net::UdpSocket::bind(on).await.unwrap();
        let addr = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut reply = Message::new();
                reply
                    .set_id(query.id())
                    .set_message_type(MessageType::Response)
                    .set_op_code(query.op_code())
                    .set_recursion_desired(query.recursion_desired())
                    .set_recursion_available(true)
                    .set_authoritative(true)
                    .add_queries(query.queries().to_vec());
                let q = &query.queries()[0];
                let name = q.name().clone();
                match (bare(&name).as_str(), q.query_type()) {
                    ("ok.test", RecordType::A) => {
                        for ip in [[10, 0, 0, 1], [10, 0, 0, 2]] {
                            reply.add_answer(Record::from_rdata(
                                name.clone(),
                                60,
                                RData::A(A::from(std::net::Ipv4Addr::from(ip))),
                            ));
                        }
                    }
                    ("ok.test", RecordType::MX) => {
                        let mx = MX::new(10, Name::from_utf8("mail.ok.test.").unwrap());
                        reply.add_answer(Record::from_rdata(name, 60, RData::MX(mx)));
                    }
                    ("ok.test", RecordType::TXT) => {
                        let txt = TXT::new(vec!["v=spf1 ".into(), "-all".into()]);
                        reply.add_answer(Record::from_rdata(name, 60, RData::TXT(txt)));
                    }
                    ("ok.test", _) => {}
                    ("broken.test", _) => {
                        reply.set_response_code(ResponseCode::ServFail);
                    }
                    _ => {
                        reply.set_response_code(ResponseCode::NXDomain);
                    }
                }
                let _ = socket.send_to(&reply.to_vec().unwrap(), from).await;
            }
        });
        (addr, task)
    }

    async fn ask(server: SocketAddr, rest: &str) -> Outcome {
        let spec = valid(&format!("server = \"{server}\"\n{rest}"));
        DnsCheck::new(spec).run(Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn asks_a_real_server_on_loopback() {
        let (server, task) = serve("127.0.0.1:0").await;
        let r = ask(server, "name = \"ok.test\"\nexpect = [\"10.0.0.2\"]").await;
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        assert!(
            r.summary.starts_with("ok.test A 10.0.0.1, 10.0.0.2 in "),
            "{}",
            r.summary
        );
        assert_eq!(r.metrics[0].name, "time");
        let r = ask(server, "name = \"ok.test\"\nrecord = \"MX\"").await;
        assert_eq!(
            r.output.as_deref(),
            Some("10 mail.ok.test"),
            "{}",
            r.summary
        );
        let r = ask(
            server,
            "name = \"ok.test\"\nrecord = \"TXT\"\nexpect = [\"v=spf1 -all\"]",
        )
        .await;
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        let r = ask(server, "name = \"ok.test\"\nexpect = [\"10.0.0.9\"]").await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (
                Severity::Critical,
                "ok.test A lacks 10.0.0.9; answers: 10.0.0.1, 10.0.0.2"
            )
        );
        let r = ask(server, "name = \"ok.test\"\nrecord = \"AAAA\"").await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Critical, "no AAAA record for ok.test")
        );
        let r = ask(server, "name = \"nope.test\"").await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Critical, "NXDOMAIN: nope.test does not exist")
        );
        let r = ask(server, "name = \"broken.test\"").await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Critical, "SERVFAIL for broken.test A")
        );
        task.abort();
    }

    #[tokio::test]
    async fn a_server_given_by_name_is_looked_up() {
        // Served on the address `localhost` names first, wherever it points.
        let first = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 0))
            .unwrap()
            .next()
            .unwrap();
        let (server, task) = serve(&first.to_string()).await;
        let spec = valid(&format!(
            "server = \"localhost:{}\"\nname = \"ok.test\"",
            server.port()
        ));
        let r = DnsCheck::new(spec).run(Duration::from_secs(5)).await;
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        task.abort();
        let spec = valid("server = \"no-such-host.invalid\"\nname = \"ok.test\"");
        let r = DnsCheck::new(spec).run(Duration::from_secs(5)).await;
        assert_eq!(r.severity, Severity::Critical);
        assert!(
            r.summary
                .starts_with("server `no-such-host.invalid:53`: DNS: "),
            "{}",
            r.summary
        );
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        // A bound socket that reads nothing: queries go unanswered.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = silent.local_addr().unwrap();
        let spec = valid(&format!("server = \"{server}\"\nname = \"ok.test\""));
        let r = DnsCheck::new(spec).run(Duration::from_millis(300)).await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Critical, "timed out after 300ms")
        );
    }
}
