//! The `ping` check: its config (`host`, `count`, `interval`, `warn_loss`, `max_loss`,
//! `warn_rtt`, `max_rtt`, `ip`), validation, and the runtime that sends ICMP echo
//! requests from an unprivileged datagram socket (`SOCK_DGRAM`, `IPPROTO_ICMP`: no root,
//! no setuid, no raw socket) and judges the loss and the average round trip.
//!
//! Where the system forbids such sockets (Linux's `net.ipv4.ping_group_range` leaves
//! the user's group out), the result says so and names the sysctl that allows it.
//!
//! A run that got replies is reported with the metrics `rtt_min`, `rtt_avg`, `rtt_max`
//! (milliseconds) and `loss` (percent); one without replies with `loss` alone.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::time::Instant;
use toml::Spanned;

use crate::validate::{self, ConfigIssue};
use crate::{BuildError, CheckPlugin, Metric, Outcome, Probe, Severity, Shared, metric, text};

/// The most echo requests one run sends.
pub const MAX_COUNT: i64 = 100;
/// How long the last request's reply is waited for, unless `max_rtt` (or `interval`)
/// is longer.
const REPLY_WAIT: Duration = Duration::from_secs(1);
/// Bytes of payload after the 8-byte ICMP header.
const PAYLOAD: usize = 16;

/// The `[jobs.NAME.check]` table of `type = "ping"`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PingConfig {
    /// A host name or an IP address.
    pub host: Spanned<String>,
    /// Echo requests per run; 3 when not set.
    pub count: Option<Spanned<i64>>,
    /// Between two requests; `200ms` when not set.
    pub interval: Option<Spanned<String>>,
    /// More loss than this is a warning; `20%` when not set.
    pub warn_loss: Option<Spanned<String>>,
    /// More loss than this is critical; `60%` when not set.
    pub max_loss: Option<Spanned<String>>,
    /// An average round trip longer than this is a warning.
    pub warn_rtt: Option<Spanned<String>>,
    /// An average round trip longer than this is critical.
    pub max_rtt: Option<Spanned<String>>,
    /// `v4`, `v6` or `any` (the default): which of the host's addresses to ping.
    pub ip: Option<Spanned<String>>,
}

/// Which addresses of a host name are pinged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpVersion {
    V4,
    V6,
    Any,
}

/// A validated `ping` check.
#[derive(Clone, Debug, PartialEq)]
pub struct PingSpec {
    pub host: String,
    pub count: u16,
    pub interval: Duration,
    /// Percent.
    pub warn_loss: f64,
    /// Percent.
    pub max_loss: f64,
    pub warn_rtt: Option<Duration>,
    pub max_rtt: Option<Duration>,
    pub ip: IpVersion,
}

impl PingSpec {
    /// The host pinged.
    pub fn target(&self) -> String {
        self.host.clone()
    }
}

fn loss(
    raw: Option<&Spanned<String>>,
    key: &str,
    default: f64,
    issues: &mut Vec<ConfigIssue>,
) -> Option<f64> {
    let Some(raw) = raw else {
        return Some(default);
    };
    match validate::parse_percent(raw.get_ref()) {
        Some(p) if (0.0..100.0).contains(&p) => Some(p),
        _ => {
            issues.push(ConfigIssue::new(
                raw.span(),
                format!(
                    "`{key}` must be a percentage from 0% to less than 100%, like `20%`, found `{}`",
                    raw.get_ref()
                ),
            ));
            None
        }
    }
}

/// Pushes an issue at `raw_warn` when the warning level is not below the critical one.
fn ordered<T: PartialOrd>(
    warn: Option<T>,
    crit: Option<T>,
    raw_warn: Option<&Spanned<String>>,
    keys: (&str, &str),
    issues: &mut Vec<ConfigIssue>,
) {
    if let (Some(w), Some(c), Some(raw)) = (warn, crit, raw_warn)
        && w >= c
    {
        issues.push(ConfigIssue::new(
            raw.span(),
            format!("`{}` must be less than `{}`", keys.0, keys.1),
        ));
    }
}

impl CheckPlugin for PingConfig {
    type Spec = PingSpec;
    type Runtime = PingCheck;

    const NETWORK: bool = true;

    fn build(spec: &PingSpec, _shared: &Shared) -> Result<PingCheck, BuildError> {
        Ok(PingCheck { spec: spec.clone() })
    }

    /// Checks every value, pushing each problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<PingSpec> {
        let before = issues.len();
        let host = validate::host(&self.host, issues);
        let count = match &self.count {
            None => Some(3),
            Some(raw) => match u16::try_from(*raw.get_ref()) {
                Ok(n) if n >= 1 && i64::from(n) <= MAX_COUNT => Some(n),
                _ => {
                    issues.push(ConfigIssue::new(
                        raw.span(),
                        format!(
                            "`count` must be between 1 and {MAX_COUNT}, found `{}`",
                            raw.get_ref()
                        ),
                    ));
                    None
                }
            },
        };
        let interval = match &self.interval {
            None => Some(Duration::from_millis(200)),
            Some(raw) => validate::positive_duration(raw, "interval", issues),
        };
        let warn_loss = loss(self.warn_loss.as_ref(), "warn_loss", 20.0, issues);
        let max_loss = loss(self.max_loss.as_ref(), "max_loss", 60.0, issues);
        // Only when both are written: a lone `warn_loss = "70%"` is checked against the
        // default `max_loss` too, which says which key to change.
        ordered(
            warn_loss,
            max_loss,
            self.warn_loss.as_ref(),
            ("warn_loss", "max_loss"),
            issues,
        );
        let warn_rtt = self
            .warn_rtt
            .as_ref()
            .and_then(|d| validate::positive_duration(d, "warn_rtt", issues));
        let max_rtt = self
            .max_rtt
            .as_ref()
            .and_then(|d| validate::positive_duration(d, "max_rtt", issues));
        ordered(
            warn_rtt,
            max_rtt,
            self.warn_rtt.as_ref(),
            ("warn_rtt", "max_rtt"),
            issues,
        );
        let ip = match self.ip.as_ref().map(|raw| (raw, raw.get_ref().as_str())) {
            None | Some((_, "any")) => Some(IpVersion::Any),
            Some((_, "v4")) => Some(IpVersion::V4),
            Some((_, "v6")) => Some(IpVersion::V6),
            Some((raw, other)) => {
                issues.push(ConfigIssue::new(
                    raw.span(),
                    format!("`ip` must be `v4`, `v6` or `any`, found `{other}`"),
                ));
                None
            }
        };
        if issues.len() > before {
            return None;
        }
        Some(PingSpec {
            host: host?,
            count: count?,
            interval: interval?,
            warn_loss: warn_loss?,
            max_loss: max_loss?,
            warn_rtt,
            max_rtt,
            ip: ip?,
        })
    }
}

/// A `ping` check ready to run.
#[derive(Debug)]
pub struct PingCheck {
    spec: PingSpec,
}

/// What one run measured: the round trips of the replies that came back.
#[derive(Debug)]
struct Pinged {
    addr: IpAddr,
    sent: u16,
    rtts: Vec<Duration>,
}

impl Probe for PingCheck {
    /// Sends `count` requests `interval` apart; `timeout` bounds it all.
    async fn run(&self, timeout: Duration) -> Outcome {
        let start = Instant::now();
        let result = tokio::time::timeout(timeout, self.ping()).await;
        let elapsed = start.elapsed();
        match result {
            Err(_) => Outcome::new(Severity::Critical, text::timed_out(timeout), elapsed),
            Ok(Err(reason)) => Outcome::new(Severity::Critical, reason, elapsed),
            Ok(Ok(pinged)) => self.judge(&pinged, elapsed),
        }
    }
}

impl PingCheck {
    async fn ping(&self) -> Result<Pinged, String> {
        let addr = self.resolve().await?;
        let socket = open(addr)?;
        let target = SocketAddr::new(addr, 0);
        let spec = &self.spec;
        let mut sent_at: Vec<Option<Instant>> = vec![None; usize::from(spec.count)];
        let mut rtts = Vec::new();
        let first = Instant::now();
        let wait = spec
            .max_rtt
            .unwrap_or(REPLY_WAIT)
            .max(REPLY_WAIT)
            .max(spec.interval);
        let mut next = 0u16;
        let mut buf = [0u8; 1500];
        loop {
            let due = first + spec.interval * u32::from(next);
            let last_sent = next == spec.count;
            let deadline = if last_sent {
                first + spec.interval * u32::from(spec.count - 1) + wait
            } else {
                due
            };
            if last_sent && rtts.len() == usize::from(spec.count) {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    if last_sent {
                        break;
                    }
                    let packet = echo_request(addr.is_ipv6(), next);
                    socket
                        .send_to(&packet, target)
                        .await
                        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
                    sent_at[usize::from(next)] = Some(Instant::now());
                    next += 1;
                }
                received = socket.recv_from(&mut buf) => {
                    let (n, _) = received.map_err(|e| format!("cannot receive from {addr}: {e}"))?;
                    if let Some(seq) = echo_reply_seq(&buf[..n], addr.is_ipv6())
                        && let Some(slot) = sent_at.get_mut(usize::from(seq))
                        && let Some(at) = slot.take()
                    {
                        rtts.push(at.elapsed());
                    }
                }
            }
        }
        Ok(Pinged {
            addr,
            sent: spec.count,
            rtts,
        })
    }

    /// The first of the host's addresses that `ip` allows.
    async fn resolve(&self) -> Result<IpAddr, String> {
        let spec = &self.spec;
        if let Ok(ip) = spec.host.parse::<IpAddr>() {
            return match (spec.ip, ip) {
                (IpVersion::V4, IpAddr::V6(_)) | (IpVersion::V6, IpAddr::V4(_)) => Err(format!(
                    "`{ip}` is not an IP{} address (`ip`)",
                    if spec.ip == IpVersion::V4 { "v4" } else { "v6" }
                )),
                _ => Ok(ip),
            };
        }
        let addrs = validate::lookup(&spec.host, 0).await?;
        addrs
            .iter()
            .map(SocketAddr::ip)
            .find(|ip| match spec.ip {
                IpVersion::Any => true,
                IpVersion::V4 => ip.is_ipv4(),
                IpVersion::V6 => ip.is_ipv6(),
            })
            .ok_or_else(|| match spec.ip {
                IpVersion::V4 => "DNS: no IPv4 address".to_owned(),
                IpVersion::V6 => "DNS: no IPv6 address".to_owned(),
                IpVersion::Any => "DNS: no address".to_owned(),
            })
    }

    fn judge(&self, pinged: &Pinged, elapsed: Duration) -> Outcome {
        let spec = &self.spec;
        let received = pinged.rtts.len();
        let sent = usize::from(pinged.sent);
        let loss = 100.0 * (sent - received) as f64 / sent as f64;
        let mut loss_metric = Metric::new("loss", (loss * 10.0).round() / 10.0)
            .with_unit("%")
            .with_min(0.0)
            .with_max(100.0);
        loss_metric.warn = Some(text::number(spec.warn_loss));
        loss_metric.crit = Some(text::number(spec.max_loss));
        let lost = format!("{}% loss", text::number(loss.round()));
        if received == 0 {
            return Outcome::new(
                Severity::Critical,
                format!("no reply from {} ({sent} sent)", pinged.addr),
                elapsed,
            )
            .with_metric(loss_metric);
        }
        let min = pinged.rtts.iter().min().copied().unwrap_or_default();
        let max = pinged.rtts.iter().max().copied().unwrap_or_default();
        let avg = pinged.rtts.iter().sum::<Duration>() / received as u32;
        let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
        let rtt = |name: &str, d: Duration| {
            Metric::new(name, (metric::millis(d) * 1000.0).round() / 1000.0)
                .with_unit("ms")
                .with_min(0.0)
        };
        let mut avg_metric = rtt("rtt_avg", avg);
        avg_metric.warn = spec.warn_rtt.map(|d| text::number(metric::millis(d)));
        avg_metric.crit = spec.max_rtt.map(|d| text::number(metric::millis(d)));
        let metrics = [
            rtt("rtt_min", min),
            avg_metric,
            rtt("rtt_max", max),
            loss_metric,
        ];
        let measured = format!(
            "{received} of {sent} replies from {}, rtt min/avg/max {}/{}/{} ms",
            pinged.addr,
            ms(min),
            ms(avg),
            ms(max)
        );
        let (severity, why) = if loss > spec.max_loss {
            (
                Severity::Critical,
                format!("{lost} (max {}%)", text::number(spec.max_loss)),
            )
        } else if let Some(m) = spec.max_rtt.filter(|m| avg > *m) {
            (
                Severity::Critical,
                format!("slow: rtt avg {} ms (max {})", ms(avg), text::duration(m)),
            )
        } else if loss > spec.warn_loss {
            (
                Severity::Warning,
                format!("{lost} (warn {}%)", text::number(spec.warn_loss)),
            )
        } else if let Some(w) = spec.warn_rtt.filter(|w| avg > *w) {
            (
                Severity::Warning,
                format!("slow: rtt avg {} ms (warn {})", ms(avg), text::duration(w)),
            )
        } else {
            (Severity::Ok, String::new())
        };
        let summary = if severity.is_ok() {
            measured
        } else {
            format!("{why}: {measured}")
        };
        Outcome::new(severity, summary, elapsed).with_metrics(metrics)
    }
}

/// An unprivileged ICMP socket for `addr`'s family, ready for tokio.
fn open(addr: IpAddr) -> Result<UdpSocket, String> {
    let (domain, protocol) = if addr.is_ipv6() {
        (Domain::IPV6, Protocol::ICMPV6)
    } else {
        (Domain::IPV4, Protocol::ICMPV4)
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(protocol)).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => forbidden(&e),
        _ => format!("ICMP: cannot open a ping socket: {e}"),
    })?;
    socket
        .set_nonblocking(true)
        .map_err(|e| format!("ICMP: {e}"))?;
    UdpSocket::from_std(std::net::UdpSocket::from(socket)).map_err(|e| format!("ICMP: {e}"))
}

/// Why the system refused a ping socket, and how to allow it.
fn forbidden(e: &std::io::Error) -> String {
    if cfg!(target_os = "linux") {
        format!(
            "ICMP: unprivileged ping is not allowed for this user's group ({e}): allow it with \
             `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"` (and in /etc/sysctl.d/ to keep it)"
        )
    } else {
        format!("ICMP: the system refused an unprivileged ping socket: {e}")
    }
}

/// An echo request (ICMP type 8, ICMPv6 type 128) with sequence number `seq`. The
/// kernel sets the identifier (the socket's) and, for ICMPv6, the checksum.
fn echo_request(v6: bool, seq: u16) -> [u8; 8 + PAYLOAD] {
    let mut packet = [0u8; 8 + PAYLOAD];
    packet[0] = if v6 { 128 } else { 8 };
    packet[6..8].copy_from_slice(&seq.to_be_bytes());
    packet[8..].copy_from_slice(b"klaxon ping\0\0\0\0\0");
    if !v6 {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// The Internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The sequence number of an echo reply (type 0, ICMPv6 129); `None` for anything
/// else. Some systems (macOS) hand an IPv4 datagram socket the IP header too.
fn echo_reply_seq(packet: &[u8], v6: bool) -> Option<u16> {
    let icmp = match packet.first() {
        Some(b) if !v6 && b >> 4 == 4 => packet.get(usize::from(b & 0x0f) * 4..)?,
        _ => packet,
    };
    let reply = if v6 { 129 } else { 0 };
    if icmp.len() < 8 || icmp[0] != reply {
        return None;
    }
    Some(u16::from_be_bytes([icmp[6], icmp[7]]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::test_support::{assert_located, config};

    #[test]
    fn defaults_and_values() {
        let spec = config::<PingConfig>("host = \"127.0.0.1\"")
            .validate(&mut Vec::new())
            .unwrap();
        assert_eq!(
            spec,
            PingSpec {
                host: "127.0.0.1".into(),
                count: 3,
                interval: Duration::from_millis(200),
                warn_loss: 20.0,
                max_loss: 60.0,
                warn_rtt: None,
                max_rtt: None,
                ip: IpVersion::Any,
            }
        );
        let spec = config::<PingConfig>(
            "host = \"[::1]\"\ncount = 5\ninterval = \"1s\"\nwarn_loss = \"0%\"\nmax_loss = \"50%\"\n\
             warn_rtt = \"50ms\"\nmax_rtt = \"200ms\"\nip = \"v6\"",
        )
        .validate(&mut Vec::new())
        .unwrap();
        assert_eq!(
            (
                spec.host.as_str(),
                spec.count,
                spec.warn_loss,
                spec.max_rtt,
                spec.ip
            ),
            (
                "::1",
                5,
                0.0,
                Some(Duration::from_millis(200)),
                IpVersion::V6
            )
        );
        assert_eq!(spec.target(), "::1");
    }

    #[test]
    fn invalid_values_are_located() {
        assert_located(
            "host = \"a b\"\ncount = 0\ninterval = \"0s\"\nwarn_loss = \"lots\"\nmax_loss = \"100%\"\nip = \"v5\"",
            PingConfig::validate,
            &[
                (
                    "\"a b\"",
                    "`host`: expected a host name or IP address like `db.example.com` or `10.0.0.5`, found `a b`",
                ),
                ("0", "`count` must be between 1 and 100, found `0`"),
                ("\"0s\"", "`interval` must be greater than zero"),
                (
                    "\"lots\"",
                    "`warn_loss` must be a percentage from 0% to less than 100%, like `20%`, found `lots`",
                ),
                (
                    "\"100%\"",
                    "`max_loss` must be a percentage from 0% to less than 100%, like `20%`, found `100%`",
                ),
                ("\"v5\"", "`ip` must be `v4`, `v6` or `any`, found `v5`"),
            ],
        );
        assert_located(
            "host = \"h\"\nwarn_loss = \"70%\"\nwarn_rtt = \"1s\"\nmax_rtt = \"1s\"",
            PingConfig::validate,
            &[
                ("\"70%\"", "`warn_loss` must be less than `max_loss`"),
                ("\"1s\"", "`warn_rtt` must be less than `max_rtt`"),
            ],
        );
    }

    #[test]
    fn packets_are_built_and_replies_read() {
        let request = echo_request(false, 7);
        assert_eq!((request[0], &request[6..8]), (8, &[0u8, 7][..]));
        // A correct checksum sums, with itself, to all ones.
        assert_eq!(checksum(&request), 0);
        assert_eq!(echo_request(true, 1)[0], 128);

        let mut reply = request;
        reply[0] = 0;
        assert_eq!(echo_reply_seq(&reply, false), Some(7));
        // With an IPv4 header before it (20 bytes, IHL 5), as macOS hands it over.
        let mut with_header = vec![0x45u8];
        with_header.extend([0; 19]);
        with_header.extend(reply);
        assert_eq!(echo_reply_seq(&with_header, false), Some(7));
        // Not a reply: our own request echoed back, a short packet.
        assert_eq!(echo_reply_seq(&request, false), None);
        assert_eq!(echo_reply_seq(&reply[..4], false), None);
        let mut v6 = echo_request(true, 9);
        v6[0] = 129;
        assert_eq!(echo_reply_seq(&v6, true), Some(9));
    }

    fn judged(text: &str, rtts_ms: &[u64], sent: u16) -> Outcome {
        let spec = config::<PingConfig>(text)
            .validate(&mut Vec::new())
            .unwrap();
        let pinged = Pinged {
            addr: "10.0.0.1".parse().unwrap(),
            sent,
            rtts: rtts_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
        };
        PingCheck { spec }.judge(&pinged, Duration::from_secs(1))
    }

    #[test]
    fn loss_and_round_trips_are_judged() {
        let base = "host = \"10.0.0.1\"\nwarn_rtt = \"50ms\"\nmax_rtt = \"100ms\"";
        let r = judged(base, &[10, 20, 30], 3);
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (
                Severity::Ok,
                "3 of 3 replies from 10.0.0.1, rtt min/avg/max 10.00/20.00/30.00 ms"
            )
        );
        let names: Vec<&str> = r.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["rtt_min", "rtt_avg", "rtt_max", "loss"]);
        assert_eq!(r.metrics[1].value, 20.0);
        assert_eq!(r.metrics[1].crit.as_deref(), Some("100"));
        assert_eq!(r.metrics[3].value, 0.0);

        let r = judged(base, &[10, 20], 3);
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (
                Severity::Warning,
                "33% loss (warn 20%): 2 of 3 replies from 10.0.0.1, rtt min/avg/max 10.00/15.00/20.00 ms"
            )
        );
        assert_eq!(r.metrics[3].value, 33.3);
        let r = judged(base, &[10], 3);
        assert_eq!(r.severity, Severity::Critical);
        assert!(
            r.summary.starts_with("67% loss (max 60%): 1 of 3"),
            "{}",
            r.summary
        );
        let r = judged(base, &[], 3);
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Critical, "no reply from 10.0.0.1 (3 sent)")
        );
        assert_eq!(r.metrics.len(), 1);
        assert_eq!(r.metrics[0].value, 100.0);

        let r = judged(base, &[60, 60, 60], 3);
        assert_eq!(r.severity, Severity::Warning);
        assert!(
            r.summary
                .starts_with("slow: rtt avg 60.00 ms (warn 50ms): "),
            "{}",
            r.summary
        );
        let r = judged(base, &[150, 150, 150], 3);
        assert_eq!(r.severity, Severity::Critical);
        assert!(
            r.summary
                .starts_with("slow: rtt avg 150.00 ms (max 100ms): "),
            "{}",
            r.summary
        );
    }

    /// Whether this process may open an unprivileged ICMP socket, as the kernel decides
    /// it (`ping_init_sock`): its effective group or one of its supplementary groups lies
    /// in `net.ipv4.ping_group_range`. Returns the range read, to quote in failures.
    #[cfg(target_os = "linux")]
    fn ping_allowed() -> (bool, String) {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
            .expect("reading /proc/sys/net/ipv4/ping_group_range");
        let bounds: Vec<u32> = range
            .split_whitespace()
            .map(|n| n.parse().expect("ping_group_range holds two numbers"))
            .collect();
        let (low, high) = (bounds[0], bounds[1]);
        let mut gids = nix::unistd::getgroups().expect("getgroups");
        gids.push(nix::unistd::getegid());
        let allowed = gids.iter().any(|gid| (low..=high).contains(&gid.as_raw()));
        (
            allowed,
            format!("ping_group_range `{}`, groups {gids:?}", range.trim()),
        )
    }

    /// macOS (the other platform klaxon runs on) gives every user ICMP datagram sockets.
    #[cfg(not(target_os = "linux"))]
    fn ping_allowed() -> (bool, String) {
        (true, "not Linux: no ping_group_range".to_owned())
    }

    #[tokio::test]
    async fn loopback_outcome_follows_ping_group_range() {
        let spec = config::<PingConfig>("host = \"127.0.0.1\"\ninterval = \"50ms\"")
            .validate(&mut Vec::new())
            .unwrap();
        let (allowed, why) = ping_allowed();
        let r = PingCheck { spec }.run(Duration::from_secs(5)).await;
        // The system suite (tests/system_ping.rs) sets the sysctl both ways; a change
        // while this ran would make the expectation stale, so say so instead.
        assert_eq!(
            ping_allowed().1,
            why,
            "ping_group_range changed during the test"
        );
        if allowed {
            assert_eq!(r.severity, Severity::Ok, "{why}: {}", r.summary);
            assert!(
                r.summary
                    .starts_with("3 of 3 replies from 127.0.0.1, rtt min/avg/max "),
                "{why}: {}",
                r.summary
            );
            let names: Vec<&str> = r.metrics.iter().map(|m| m.name.as_str()).collect();
            assert_eq!(names, ["rtt_min", "rtt_avg", "rtt_max", "loss"], "{why}");
            assert!(r.metrics[..3].iter().all(|m| m.value >= 0.0), "{why}");
            assert_eq!(r.metrics[3].value, 0.0, "{why}");
        } else {
            assert_eq!(r.severity, Severity::Critical, "{why}: {}", r.summary);
            assert!(
                r.summary
                    .starts_with("ICMP: unprivileged ping is not allowed for this user's group")
                    && r.summary
                        .contains("`sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"`"),
                "{why}: {}",
                r.summary
            );
            assert!(r.metrics.is_empty(), "{why}: {:?}", r.metrics);
        }
    }

    #[tokio::test]
    async fn an_address_of_the_wrong_family_is_refused() {
        let spec = config::<PingConfig>("host = \"::1\"\nip = \"v4\"")
            .validate(&mut Vec::new())
            .unwrap();
        let r = PingCheck { spec }.run(Duration::from_secs(5)).await;
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Critical, "`::1` is not an IPv4 address (`ip`)")
        );
    }
}
