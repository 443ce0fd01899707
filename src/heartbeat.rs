//! Heartbeat pings to Healthchecks-style services (the Healthchecks.io ping protocol):
//! `URL/start` before a run, the bare `URL` on ok, `URL/fail` on a final failure and
//! `URL/<exit code>` (for `klaxon exec`), each with the run's id as `rid` and, where
//! there is one, the output (at most [`BODY_LIMIT`] bytes, its tail) as POST body.
//!
//! Pings never hold up a job: they are sent by background tasks. The pings of one run
//! go out in order from one task, which sends `/start`, then waits for the run's end.
//! A ping is retried on 408, 429 (honouring a short `Retry-After`), 5xx and connection
//! errors, a few times within [`RetryWindow`]; another answer is logged and dropped. A
//! 3xx is such an answer: pings follow no redirects ([`klaxon_notifiers::delivery_client`]).
//! Ping URLs carry the check's id, so they are secrets: logs name the job and the kind
//! of ping, never the URL.

use std::fmt;
use std::time::Duration;

use klaxon_notifiers::DeliveryError;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use crate::runtime::Mode;

/// The largest body sent: Healthchecks keeps the first 100 kB of a ping's body; the end
/// of the output (where a failing command says why) is the part worth keeping.
pub const BODY_LIMIT: usize = 100_000;

/// How long a process that is about to exit (`once`, `exec`, `ping`) waits for its pings.
pub const EXIT_WAIT: Duration = Duration::from_secs(10);

/// What a ping says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Start,
    Success,
    Fail,
    /// An exit code: 0 is success, anything else a failure.
    Exit(i32),
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signal::Start => f.write_str("start"),
            Signal::Success => f.write_str("success"),
            Signal::Fail => f.write_str("fail"),
            Signal::Exit(code) => write!(f, "exit {code}"),
        }
    }
}

/// The URL of one ping: `base` with the signal's path segment added (a trailing slash
/// is not doubled) and `rid` appended to the query it may already have.
pub fn ping_url(base: &str, signal: Signal, rid: Option<&str>) -> Result<Url, String> {
    let mut url = Url::parse(base).map_err(|e| format!("not a URL: {e}"))?;
    let segment = match signal {
        Signal::Start => Some("start".to_owned()),
        Signal::Success => None,
        Signal::Fail => Some("fail".to_owned()),
        Signal::Exit(code) => Some(code.to_string()),
    };
    if let Some(segment) = segment {
        url.path_segments_mut()
            .map_err(|()| "the URL cannot take a path".to_owned())?
            .pop_if_empty()
            .push(&segment);
    }
    if let Some(rid) = rid {
        url.query_pairs_mut().append_pair("rid", rid);
    }
    Ok(url)
}

/// A random (version 4) UUID, the run id Healthchecks pairs `/start` with its end by.
pub fn run_id() -> String {
    let mut b = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The last `limit` bytes of `text` at most, starting on a character boundary.
pub fn tail(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The body of a failure ping: the summary, then the output, cut to [`BODY_LIMIT`].
pub fn failure_body(summary: &str, output: Option<&str>) -> String {
    let full = match output.filter(|o| !o.is_empty()) {
        Some(output) => format!("{summary}\n{output}"),
        None => summary.to_owned(),
    };
    tail(&full, BODY_LIMIT).to_owned()
}

/// How hard one ping is tried: `tries` in all, backing off from `first_delay`
/// (doubling), none starting after `window` from the first; each try `timeout` long.
#[derive(Debug, Clone, Copy)]
pub struct RetryWindow {
    pub tries: u32,
    pub first_delay: Duration,
    pub window: Duration,
    pub timeout: Duration,
}

impl Default for RetryWindow {
    fn default() -> Self {
        Self {
            tries: 5,
            first_delay: Duration::from_secs(2),
            window: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Sends pings in the background and keeps track of the ones still going, so a process
/// can wait for them before it exits. Cheap to clone; clones share the tracking.
#[derive(Debug, Clone)]
pub struct Pinger {
    http: reqwest::Client,
    mode: Mode,
    retry: RetryWindow,
    tracker: TaskTracker,
}

impl Pinger {
    /// The client pings go out through: the agent's delivery client, which follows no
    /// redirects.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn new(http: reqwest::Client, mode: Mode) -> Self {
        Self {
            http,
            mode,
            retry: RetryWindow::default(),
            tracker: TaskTracker::new(),
        }
    }

    pub fn with_retry(mut self, retry: RetryWindow) -> Self {
        self.retry = retry;
        self
    }

    /// Starts the pings of one run of `job`: `/start` goes out now, in the background;
    /// the returned handle sends the end ping after it, with the same run id.
    pub fn start_run(&self, job: &str, url: &SecretString) -> RunPings {
        let rid = run_id();
        let (end_tx, end_rx) = oneshot::channel::<(Signal, Option<String>)>();
        let this = self.clone();
        let (job, url, rid2) = (job.to_owned(), url.clone(), rid.clone());
        self.tracker.spawn(async move {
            this.ping(&job, &url, Signal::Start, Some(&rid2), None)
                .await;
            // A run that ends without saying how (its record failed) sends nothing more.
            if let Ok((signal, body)) = end_rx.await {
                this.ping(&job, &url, signal, Some(&rid2), body).await;
            }
        });
        RunPings { rid, end: end_tx }
    }

    /// Sends one ping without a run id, in the background (the agent's own heartbeat, a
    /// passive job's evaluation).
    pub fn send(&self, who: &str, url: &SecretString, signal: Signal, body: Option<String>) {
        let this = self.clone();
        let (who, url) = (who.to_owned(), url.clone());
        self.tracker.spawn(async move {
            this.ping(&who, &url, signal, None, body).await;
        });
    }

    /// Waits for the pings still going, at most `within`; `false` if some were not done.
    pub async fn wait(&self, within: Duration) -> bool {
        self.tracker.close();
        let done = tokio::time::timeout(within, self.tracker.wait())
            .await
            .is_ok();
        self.tracker.reopen();
        if !done {
            tracing::warn!(
                pings = self.tracker.len(),
                "heartbeat ping(s) not sent within {}s; giving up on them",
                within.as_secs()
            );
        }
        done
    }

    /// One ping, with its retries. `who` is the job (or `agent`), for the logs.
    async fn ping(
        &self,
        who: &str,
        url: &SecretString,
        signal: Signal,
        rid: Option<&str>,
        body: Option<String>,
    ) {
        let target = match ping_url(url.expose_secret(), signal, rid) {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(job = who, ping = %signal, "heartbeat URL unusable: {e}");
                return;
            }
        };
        let body = body.unwrap_or_default();
        if self.mode == Mode::DryRun {
            let with_body = if body.is_empty() {
                String::new()
            } else {
                format!(", with a {}-byte body", body.len())
            };
            println!("[dry-run] would ping the heartbeat of `{who}`: {signal}{with_body}");
            return;
        }
        let started = Instant::now();
        let mut delay = self.retry.first_delay;
        for attempt in 1..=self.retry.tries {
            let sent = klaxon_notifiers::post_text(
                &self.http,
                target.as_str(),
                body.clone().into_bytes(),
                self.retry.timeout,
            )
            .await;
            let (again, after, why) = match sent {
                Ok(()) => {
                    tracing::debug!(job = who, ping = %signal, attempt, "heartbeat ping sent");
                    return;
                }
                Err(DeliveryError::Retry { reason, after }) => (true, after, reason),
                Err(DeliveryError::Reject { reason }) => (false, None, reason),
            };
            let wait = after.unwrap_or(delay);
            let spent = started.elapsed();
            let last = attempt == self.retry.tries || spent + wait > self.retry.window;
            if !again || last {
                tracing::warn!(
                    job = who,
                    ping = %signal,
                    attempts = attempt,
                    "heartbeat ping not sent: {why}"
                );
                return;
            }
            tracing::debug!(job = who, ping = %signal, attempt, "heartbeat ping failed, retrying: {why}");
            tokio::time::sleep(wait).await;
            delay = delay.saturating_mul(2);
        }
    }
}

/// The end of one run's pings (see [`Pinger::start_run`]).
#[derive(Debug)]
pub struct RunPings {
    rid: String,
    end: oneshot::Sender<(Signal, Option<String>)>,
}

impl RunPings {
    /// The run id shared by this run's pings.
    pub fn rid(&self) -> &str {
        &self.rid
    }

    /// Sends the end ping after `/start` (not waiting for either).
    pub fn finish(self, signal: Signal, body: Option<String>) {
        let _ = self.end.send((signal, body));
    }
}

/// The agent's own heartbeat: a success ping at start, then every `every`, until `stop`.
pub async fn agent_beat(
    pinger: Pinger,
    url: SecretString,
    every: Duration,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => pinger.send("agent", &url, Signal::Success, None),
            () = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use klaxon_testkit::{Response, Server};

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn fast() -> RetryWindow {
        RetryWindow {
            tries: 5,
            first_delay: Duration::from_millis(50),
            window: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        }
    }

    fn pinger() -> Pinger {
        Pinger::new(klaxon_notifiers::delivery_client().unwrap(), Mode::Live).with_retry(fast())
    }

    fn paths(server: &Server) -> Vec<String> {
        server.requests().into_iter().map(|r| r.path).collect()
    }

    #[test]
    fn urls_keep_the_query_and_do_not_double_a_slash() {
        let u = |base: &str, s| ping_url(base, s, Some("R")).unwrap().to_string();
        assert_eq!(
            u("https://hc-ping.com/abc", Signal::Start),
            "https://hc-ping.com/abc/start?rid=R"
        );
        assert_eq!(
            u("https://hc-ping.com/abc/", Signal::Fail),
            "https://hc-ping.com/abc/fail?rid=R"
        );
        assert_eq!(
            u("https://hc-ping.com/abc", Signal::Success),
            "https://hc-ping.com/abc?rid=R"
        );
        assert_eq!(
            u("https://hc.example/ping/k/slug?create=1", Signal::Exit(3)),
            "https://hc.example/ping/k/slug/3?create=1&rid=R"
        );
        assert_eq!(
            ping_url("http://h/x?a=b", Signal::Success, None)
                .unwrap()
                .to_string(),
            "http://h/x?a=b"
        );
    }

    #[test]
    fn run_ids_are_uuid_v4() {
        let id = run_id();
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!("89ab".contains(&parts[3][..1]));
        assert_ne!(id, run_id());
    }

    #[test]
    fn bodies_keep_the_tail_on_a_char_boundary() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("abc", 3), "abc");
        // `é` is two bytes: a cut inside it moves past it.
        assert_eq!(tail("aéb", 2), "b");
        let long = format!("{}END", "é".repeat(BODY_LIMIT));
        let body = failure_body("exit 1", Some(&long));
        assert!(body.len() <= BODY_LIMIT && body.len() >= BODY_LIMIT - 1);
        assert!(body.ends_with("END"));
        assert_eq!(failure_body("HTTP 503", None), "HTTP 503");
        assert_eq!(failure_body("exit 2", Some("boom\n")), "exit 2\nboom\n");
    }

    #[tokio::test]
    async fn start_then_success_with_one_run_id() {
        let server = Server::start(|_| Response::status(200)).await;
        let p = pinger();
        let run = p.start_run("api", &secret(&server.url("/ping/abc")));
        let rid = run.rid().to_owned();
        run.finish(Signal::Success, None);
        assert!(p.wait(Duration::from_secs(5)).await);
        assert_eq!(
            paths(&server),
            [
                format!("/ping/abc/start?rid={rid}"),
                format!("/ping/abc?rid={rid}")
            ]
        );
        assert!(server.requests().iter().all(|r| r.method == "POST"));
    }

    #[tokio::test]
    async fn start_then_fail_with_the_output_as_body() {
        let server = Server::start(|_| Response::status(200)).await;
        let p = pinger();
        let run = p.start_run("api", &secret(&server.url("/p")));
        let rid = run.rid().to_owned();
        let output = format!("{}last line\n", "x".repeat(300_000));
        run.finish(Signal::Fail, Some(failure_body("exit 1", Some(&output))));
        p.wait(Duration::from_secs(5)).await;
        let got = server.requests();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].path, format!("/p/start?rid={rid}"));
        assert!(got[0].body.is_empty());
        assert_eq!(got[1].path, format!("/p/fail?rid={rid}"));
        assert_eq!(got[1].body.len(), BODY_LIMIT);
        assert!(got[1].text().ends_with("xxlast line\n"));
    }

    #[tokio::test]
    async fn retries_a_503_then_stops_at_the_200() {
        let server = Server::sequence([Response::status(503)], Response::status(200)).await;
        let p = pinger();
        p.send("api", &secret(&server.url("/p")), Signal::Success, None);
        p.wait(Duration::from_secs(5)).await;
        assert_eq!(paths(&server), ["/p", "/p"]);
    }

    #[tokio::test]
    async fn retries_429_and_408_but_not_404() {
        let server = Server::sequence(
            [
                Response::status(429).header("Retry-After", "0"),
                Response::status(408),
            ],
            Response::status(404),
        )
        .await;
        let p = pinger();
        p.send("api", &secret(&server.url("/p")), Signal::Fail, None);
        p.wait(Duration::from_secs(5)).await;
        // 429, 408, then the 404 ends it: no fourth try.
        assert_eq!(server.requests().len(), 3);
    }

    #[tokio::test]
    async fn gives_up_after_its_tries() {
        let server = Server::start(|_| Response::status(500)).await;
        let p = pinger();
        p.send("api", &secret(&server.url("/p")), Signal::Success, None);
        p.wait(Duration::from_secs(5)).await;
        assert_eq!(server.requests().len(), 5);
    }

    #[tokio::test]
    async fn a_slow_start_still_arrives_before_the_end() {
        let server = Server::start(|r| {
            if r.path.contains("/start") {
                Response::status(200).delay(Duration::from_millis(400))
            } else {
                Response::status(200)
            }
        })
        .await;
        let p = pinger();
        let run = p.start_run("api", &secret(&server.url("/p")));
        // The run is over long before `/start` is answered.
        run.finish(Signal::Exit(0), None);
        p.wait(Duration::from_secs(5)).await;
        let got = paths(&server);
        assert_eq!(got.len(), 2);
        assert!(got[0].starts_with("/p/start?rid="), "{got:?}");
        assert!(got[1].starts_with("/p/0?rid="), "{got:?}");
    }

    #[tokio::test]
    async fn an_unreachable_receiver_is_retried_then_dropped() {
        // A port nothing listens on: connection refused on every try.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let p = pinger();
        p.send(
            "api",
            &secret(&format!("http://{addr}/p")),
            Signal::Success,
            None,
        );
        assert!(p.wait(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn dry_run_sends_nothing() {
        let server = Server::start(|_| Response::status(200)).await;
        let p = Pinger::new(reqwest::Client::new(), Mode::DryRun);
        let run = p.start_run("api", &secret(&server.url("/p")));
        run.finish(Signal::Fail, Some("boom".into()));
        p.send("agent", &secret(&server.url("/p")), Signal::Success, None);
        p.wait(Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(server.requests().is_empty());
    }

    #[tokio::test]
    async fn the_agent_beats_until_stopped() {
        let server = Server::start(|_| Response::status(200)).await;
        let p = pinger();
        let stop = CancellationToken::new();
        let beat = tokio::spawn(agent_beat(
            p.clone(),
            secret(&server.url("/agent")),
            Duration::from_millis(100),
            stop.clone(),
        ));
        let got = server.wait_for(3, Duration::from_secs(10)).await;
        stop.cancel();
        beat.await.unwrap();
        p.wait(Duration::from_secs(5)).await;
        assert!(got.iter().all(|r| r.path == "/agent"));
        let after = server.requests().len();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(server.requests().len(), after, "no beat after the stop");
    }
}
