//! The agent's HTTP listener (`agent.listen`): `/healthz`, `/metrics`, `/status`,
//! `/ping/JOB` and the badges, over HTTP/1.1.
//!
//! - `/healthz` is 200 while the scheduler loop turns and 503 when it has stalled
//!   ([`Liveness`]); `/metrics` is the Prometheus exposition ([`crate::metrics`]). Both
//!   are open: they say nothing secret, and probes and scrapers rarely carry tokens.
//! - `/` and `/jobs/JOB` are the dashboard's pages, `/static/...` their stylesheet and
//!   script ([`crate::dashboard`]); open like the badges: they show what
//!   `klaxon status` shows and never a secret.
//! - `/badge/JOB.svg` and `/badge/JOB/uptime.svg` ([`crate::badge`]) are open too: a
//!   README's image cannot carry a token. They tell anyone who reaches the listener
//!   the job's state and uptime.
//! - `/status` (the rows of `klaxon status --json`), `/ping/JOB` (a ping for a
//!   passive job, as `klaxon ping` records it; GET, HEAD and POST as Healthchecks
//!   accepts them; a body is ignored, never read) and `/ping/JOB/start` (a run of the
//!   job begins, judged against its `max_duration`: [`crate::started`]) need `Authorization: Bearer TOKEN`
//!   when `agent.listen_token` is set. The token is compared in constant time and never
//!   logged, whether presented or expected.
//! - The API (`/api/...`, [`crate::api`]) always needs the token. A notification button
//!   presents a token scoped to one action on one job
//!   ([`klaxon_notifiers::buttons::scoped_token`]): it is taken for `POST /api/ack/JOB`
//!   of that job, or for a `POST /api/silences` of that job alone for `1h` (what the
//!   button sends, checked by [`crate::api::add`] on its one reading of the body), and
//!   refused everywhere else; what a button does is recorded as done by a button. It
//!   too is compared in constant time and never logged.
//! - The dashboard's sign-in (`/login`, `/logout`: [`crate::dashboard::auth`]) and its
//!   actions (`POST /jobs/JOB/silence|ack|run`, `POST /outbox/ID/retry|drop`:
//!   [`crate::dashboard::actions`]) take a session cookie and a CSRF token, not a bearer
//!   token; a run now is asked of the scheduler through the listener's `asks`.
//!
//! The listener binds once, at start: a port in use is an error that stops the agent.
//! It serves the agent's current runtime, which a reload replaces; it stops accepting
//! at shutdown. A client that is slow to send its headers is dropped after
//! [`HEADER_TIMEOUT`], at most [`MAX_CONNECTIONS`] are open at once, and a connection
//! is closed (between requests) after [`CONNECTION_LIFETIME`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use klaxon_notifiers::buttons::{Action, scoped_token};

use crate::dashboard::{actions, auth};
use crate::liveness::{Health, Liveness};
use crate::runtime::Runtime;
use crate::scheduler::RunNow;
use crate::started::Started;

/// How long a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 64;

/// A kept-alive connection is closed, between requests, after this long.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// How long requests in flight at shutdown may take to finish.
const STOP_WAIT: Duration = Duration::from_secs(5);

pub(crate) type Body = Full<Bytes>;

/// The running listener, or nothing when `agent.listen` is not set: the agent calls
/// the same three methods either way.
#[derive(Debug)]
pub struct Listener {
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    /// The address from the config (the bound one differs when it asked for port 0).
    configured: SocketAddr,
    runtime: watch::Sender<Arc<Runtime>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Binds `agent.listen`, if set, and serves it until `shutdown`. Failing to bind is
    /// an error naming the address: the agent does not run without the listener it
    /// was asked for. `asks` reaches the scheduler (the dashboard's "Run now").
    pub async fn start(
        rt: &Arc<Runtime>,
        alive: Arc<Liveness>,
        asks: mpsc::Sender<RunNow>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let Some(addr) = rt.config.agent.listen else {
            return Ok(Self { running: None });
        };
        let tcp = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on `{addr}` (`agent.listen`)"))?;
        let bound = tcp
            .local_addr()
            .context("the listener has no local address")?;
        tracing::info!(
            token = rt.config.agent.listen_token.is_some(),
            "listening on {bound}"
        );
        let (runtime, current) = watch::channel(rt.clone());
        let stop = shutdown.child_token();
        let state = State {
            runtime: current,
            alive,
            started: Arc::default(),
            asks,
        };
        let task = tokio::spawn(serve(tcp, state, Limits::default(), stop.clone()));
        Ok(Self {
            running: Some(Running {
                configured: addr,
                runtime,
                stop,
                task,
            }),
        })
    }

    /// Serves `rt` from now on (a reload). The address cannot change without a restart.
    pub fn reload(&self, rt: &Arc<Runtime>) {
        let wanted = rt.config.agent.listen;
        match &self.running {
            Some(running) => {
                if wanted != Some(running.configured) {
                    tracing::warn!(
                        "`agent.listen` changed; the listener stays on `{}` until klaxon restarts",
                        running.configured
                    );
                }
                running.runtime.send_replace(rt.clone());
            }
            None if wanted.is_some() => {
                tracing::warn!(
                    "`agent.listen` was added; the listener starts when klaxon restarts"
                );
            }
            None => {}
        }
    }

    /// Stops accepting and waits (briefly) for requests in flight.
    pub async fn stop(self) {
        if let Some(running) = self.running {
            running.stop.cancel();
            let _ = running.task.await;
        }
    }
}

/// Bounds on what one client can hold.
#[derive(Debug, Clone, Copy)]
struct Limits {
    header_timeout: Duration,
    max_connections: usize,
    lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: HEADER_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            lifetime: CONNECTION_LIFETIME,
        }
    }
}

#[derive(Clone)]
struct State {
    runtime: watch::Receiver<Arc<Runtime>>,
    alive: Arc<Liveness>,
    /// Runs of passive jobs begun with `/ping/JOB/start`, across reloads.
    started: Arc<Started>,
    /// Runs asked for on the dashboard, to the scheduler.
    asks: mpsc::Sender<RunNow>,
}

async fn serve(tcp: TcpListener, state: State, limits: Limits, stop: CancellationToken) {
    let connections = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, usually: wait rather than spin.
                    tracing::warn!(%e, "the listener cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (state, stop) = (state.clone(), stop.clone());
        connections.spawn(async move {
            connection(stream, peer, state, limits, stop).await;
            drop(permit);
        });
    }
    drop(tcp);
    connections.close();
    if tokio::time::timeout(STOP_WAIT, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "listener requests still going after {}s; leaving them",
            STOP_WAIT.as_secs()
        );
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: State,
    limits: Limits,
    stop: CancellationToken,
) {
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(req, &state, peer).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, %e, "listener connection ended with an error");
            }
            return;
        }
        () = stop.cancelled() => {}
        () = tokio::time::sleep(limits.lifetime) => {}
    }
    // Finish the request in progress, if any, then close.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(STOP_WAIT, conn).await;
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Healthz,
    Metrics,
    Status,
    Ping(&'a str),
    /// `/api/silences`: GET lists, POST adds.
    Silences,
    /// `DELETE /api/silences/ID`.
    Silence(&'a str),
    /// `POST /api/ack/JOB`.
    Ack(&'a str),
    /// `/ping/JOB/start`: a run of the job begins.
    Start(&'a str),
    /// `/badge/JOB.svg`: the job's status badge.
    Badge(&'a str),
    /// `/badge/JOB/uptime.svg`: the job's uptime badge.
    UptimeBadge(&'a str),
    /// `/`: the dashboard's overview.
    Overview,
    /// `/jobs/JOB`: a job's page (the segment still percent-encoded).
    JobPage(&'a str),
    /// `/static/NAME`: the dashboard's stylesheet and script.
    Static(&'a str),
    /// `/login`: GET the form, POST signs in.
    Login,
    /// `POST /logout`.
    Logout,
    /// `POST /jobs/JOB/ACTION` or `POST /outbox/ID/ACTION`: the dashboard's buttons.
    Action(actions::Action<'a>),
    NotFound,
    /// A known path with a method it does not take; the value for `Allow`.
    MethodNotAllowed(&'static str),
}

fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    let (found, allow) = match path {
        "/healthz" => (Route::Healthz, "GET, HEAD"),
        "/metrics" => (Route::Metrics, "GET, HEAD"),
        "/status" => (Route::Status, "GET, HEAD"),
        "/api/silences" => (Route::Silences, "GET, HEAD, POST"),
        "/" => (Route::Overview, "GET, HEAD"),
        auth::LOGIN => (Route::Login, "GET, HEAD, POST"),
        auth::LOGOUT => (Route::Logout, "POST"),
        _ => {
            let segment = |prefix: &str| {
                path.strip_prefix(prefix)
                    .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            };
            if let Some(job) = segment("/ping/") {
                (Route::Ping(job), "GET, HEAD, POST")
            } else if let Some(id) = segment("/api/silences/") {
                (Route::Silence(id), "DELETE")
            } else if let Some(job) = segment("/jobs/") {
                (Route::JobPage(job), "GET, HEAD")
            } else if let Some(name) = segment("/static/") {
                (Route::Static(name), "GET, HEAD")
            } else if let Some(job) = segment("/api/ack/") {
                (Route::Ack(job), "POST")
            } else if let Some(job) = path
                .strip_prefix("/ping/")
                .and_then(|rest| rest.strip_suffix("/start"))
                .filter(|job| !job.is_empty() && !job.contains('/'))
            {
                (Route::Start(job), "GET, HEAD, POST")
            } else if let Some(job) = path
                .strip_prefix("/badge/")
                .and_then(|rest| rest.strip_suffix("/uptime.svg"))
                .filter(|job| !job.is_empty() && !job.contains('/'))
            {
                (Route::UptimeBadge(job), "GET, HEAD")
            } else if let Some(action) = actions::Action::at(path) {
                (Route::Action(action), "POST")
            } else if let Some(job) = segment("/badge/")
                .and_then(|rest| rest.strip_suffix(".svg"))
                .filter(|job| !job.is_empty())
            {
                (Route::Badge(job), "GET, HEAD")
            } else {
                return Route::NotFound;
            }
        }
    };
    let read = method == Method::GET || method == Method::HEAD;
    let takes = match found {
        Route::Ping(_) | Route::Start(_) | Route::Silences | Route::Login => {
            read || method == Method::POST
        }
        Route::Silence(_) => method == Method::DELETE,
        Route::Ack(_) | Route::Logout | Route::Action(_) => method == Method::POST,
        _ => read,
    };
    if takes {
        found
    } else {
        Route::MethodNotAllowed(allow)
    }
}

/// Whether an `Authorization` header carries `token` as a bearer token. The comparison
/// takes the same time wherever the two differ; an empty token matches nothing.
fn authorized(header: Option<&HeaderValue>, token: &SecretString) -> bool {
    bearer_is(header, token.expose_secret())
}

/// Whether an `Authorization` header carries the token scoped to `action` on `job`
/// (derived from `token`, which must not be empty), compared as [`authorized`] does.
fn scoped(header: Option<&HeaderValue>, token: &SecretString, action: Action, job: &str) -> bool {
    let token = token.expose_secret();
    !token.is_empty() && bearer_is(header, &scoped_token(token, action, job))
}

fn bearer_is(header: Option<&HeaderValue>, expected: &str) -> bool {
    let presented = header
        .and_then(|h| h.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().as_bytes());
    match presented {
        Some(presented) if !expected.is_empty() => presented.ct_eq(expected.as_bytes()).into(),
        _ => false,
    }
}

/// What a request may do: everything its route allows (no token needed, or the full
/// token), or only what a button's scoped token allows; `None` when refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Full,
    /// A scoped token for this action; its job is checked against the request's.
    Scoped(Action),
}

/// The 401 for a request without a token good for it; the log says why, never what
/// was presented.
fn refuse(peer: SocketAddr, path: &str, presented: bool) -> Response<Body> {
    let why = if presented {
        "wrong bearer token"
    } else {
        "no bearer token"
    };
    tracing::warn!(%peer, path, "listener request refused: {why}");
    let mut response = text(
        StatusCode::UNAUTHORIZED,
        "unauthorized: this endpoint needs `Authorization: Bearer TOKEN` (`agent.listen_token`)",
    );
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"klaxon\""),
    );
    response
}

pub(crate) fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut body = body.into();
    body.push('\n');
    reply(status, "text/plain; charset=utf-8", body)
}

async fn handle(req: Request<Incoming>, state: &State, peer: SocketAddr) -> Response<Body> {
    let rt = state.runtime.borrow().clone();
    let path = req.uri().path().to_owned();
    let path = path.as_str();
    let method = req.method().clone();
    let found = route(&method, path);
    let api = matches!(found, Route::Silences | Route::Silence(_) | Route::Ack(_));
    if api && rt.config.agent.listen_token.is_none() {
        return text(
            StatusCode::FORBIDDEN,
            "forbidden: /api needs `agent.listen_token` set (it changes what klaxon sends)",
        );
    }
    let needs_token = api || matches!(found, Route::Status | Route::Ping(_) | Route::Start(_));
    let presented = req.headers().get(AUTHORIZATION);
    let grant = match (needs_token, &rt.config.agent.listen_token) {
        (false, _) | (true, None) => Some(Grant::Full),
        (true, Some(token)) if authorized(presented, token) => Some(Grant::Full),
        (true, Some(token)) => match found {
            Route::Ack(job) if scoped(presented, token, Action::Ack, job) => {
                Some(Grant::Scoped(Action::Ack))
            }
            // The job is in the body: the token is checked once it is read (with no
            // token at all, nothing is read).
            Route::Silences if method == Method::POST && presented.is_some() => {
                Some(Grant::Scoped(Action::Silence))
            }
            _ => None,
        },
    };
    if grant.is_none() {
        return refuse(peer, path, presented.is_some());
    }
    match found {
        Route::Healthz => match state.alive.health() {
            Health::Alive => text(StatusCode::OK, "ok"),
            Health::Unwell(reasons) => text(StatusCode::SERVICE_UNAVAILABLE, reasons.join("; ")),
        },
        Route::Metrics => {
            let rendered = crate::store::THREADS
                .run(move || {
                    let offline = rt
                        .online
                        .as_ref()
                        .is_some_and(|o| o.offline_since().is_some());
                    rt.metrics.render(&rt.config, &rt.store, offline)
                })
                .await;
            match rendered {
                Ok(Ok(body)) => reply(StatusCode::OK, crate::metrics::CONTENT_TYPE, body),
                Ok(Err(e)) => failed("metrics", &e),
                Err(e) => failed("metrics", &e),
            }
        }
        Route::Status => {
            let rows = crate::store::THREADS
                .run(move || crate::status::rows(&rt.config, &rt.store, rt.clock.now()))
                .await;
            let json = match rows {
                Ok(Ok(rows)) => serde_json::to_string_pretty(&rows),
                Ok(Err(e)) => return failed("status", &e),
                Err(e) => return failed("status", &e),
            };
            match json {
                Ok(json) => reply(StatusCode::OK, "application/json", json),
                Err(e) => failed("status", &e),
            }
        }
        Route::Overview => {
            let (headers, query) = (req.headers(), req.uri().query());
            crate::dashboard::overview_page(rt, state.alive.clone(), headers, query).await
        }
        Route::JobPage(job) => {
            crate::dashboard::job_page(rt, state.alive.clone(), job, req.headers()).await
        }
        Route::Static(name) => crate::dashboard::asset(name)
            .unwrap_or_else(|| text(StatusCode::NOT_FOUND, format!("no file `{name}`"))),
        Route::Badge(name) => badge(rt, name, false).await,
        Route::UptimeBadge(name) => badge(rt, name, true).await,
        Route::Ping(name) => ping(&rt, &state.started, name, peer, false).await,
        Route::Start(name) => ping(&rt, &state.started, name, peer, true).await,
        Route::Silences if method != Method::POST => answer(crate::api::list(&rt).await),
        Route::Silences => {
            let button = (grant == Some(Grant::Scoped(Action::Silence))).then(|| {
                (
                    req.headers().get(AUTHORIZATION).cloned(),
                    rt.config.agent.listen_token.clone(),
                )
            });
            match body(req).await {
                Ok(body) => {
                    let good_for = |job: &str| match &button {
                        Some((presented, Some(token))) => {
                            scoped(presented.as_ref(), token, Action::Silence, job)
                        }
                        _ => false,
                    };
                    let button = button
                        .is_some()
                        .then_some(&good_for as &(dyn Fn(&str) -> bool + Sync));
                    match crate::api::add(&rt, &body, button).await {
                        Some(added) => answer(added),
                        None => refuse(peer, path, true),
                    }
                }
                Err(response) => response,
            }
        }
        Route::Silence(id) => answer(crate::api::expire(&rt, id).await),
        Route::Ack(job) => match body(req).await {
            Ok(body) => {
                let button = grant == Some(Grant::Scoped(Action::Ack));
                answer(crate::api::ack(&rt, job, &body, button).await)
            }
            Err(response) => response,
        },
        Route::Login if method != Method::POST => {
            auth::login_page(&rt, req.headers(), req.uri().query())
        }
        Route::Login => match form(req).await {
            Ok((headers, body)) => auth::login(&rt, &headers, &body, peer),
            Err(response) => response,
        },
        Route::Logout => match form(req).await {
            Ok((headers, body)) => auth::logout(&rt, &headers, &body, peer),
            Err(response) => response,
        },
        Route::Action(action) => match form(req).await {
            Ok((headers, body)) => {
                actions::perform(&rt, &state.asks, action, &headers, &body, peer).await
            }
            Err(response) => response,
        },
        Route::NotFound => text(
            StatusCode::NOT_FOUND,
            "not found: try /, /jobs/JOB, /healthz, /metrics, /status, /ping/JOB, /badge/JOB.svg, /badge/JOB/uptime.svg, /api/silences or /api/ack/JOB",
        ),
        Route::MethodNotAllowed(allow) => {
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method not allowed: use {allow}"),
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
            response
        }
    }
}

/// A job's status badge, or (`uptime`) its uptime badge over
/// [`crate::badge::UPTIME_WINDOW`]; `404` for a job the config does not have.
async fn badge(rt: Arc<Runtime>, name: &str, uptime: bool) -> Response<Body> {
    use crate::badge::{Badge, UPTIME_WINDOW};
    let wanted = name.to_owned();
    let read = crate::store::THREADS
        .run(move || {
            let now = rt.clock.now();
            let job = rt.config.job(&wanted)?;
            let name = job.name.as_str();
            Some(if uptime {
                let since = now - chrono::Duration::from_std(UPTIME_WINDOW).unwrap_or_default();
                rt.store.uptime(name, since).map(Badge::uptime)
            } else {
                // What `klaxon status` says of one job: its last severity, and whether a
                // silence or a maintenance window covers it now.
                rt.store.silence_of(name, now).and_then(|silence| {
                    let silenced = crate::alert::Silenced::longer(
                        silence.map(|s| s.silenced()),
                        crate::quiet::maintenance(&rt.config.maintenance, name, now),
                    )
                    .is_some();
                    let state = rt.store.job_state(name)?;
                    Ok(Badge::status(name, state.severity, silenced))
                })
            })
        })
        .await;
    let badge = match read {
        Ok(Some(Ok(badge))) => badge,
        Ok(None) => return text(StatusCode::NOT_FOUND, format!("no job `{name}`")),
        Ok(Some(Err(e))) => return failed("a badge", &e),
        Err(e) => return failed("a badge", &e),
    };
    let mut response = reply(StatusCode::OK, "image/svg+xml", badge.svg());
    // GitHub's image proxy keeps an image as long as it may: a badge must be asked anew.
    response.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, max-age=0"),
    );
    response
}

/// A ping (`start`: `/ping/JOB/start`, a run begins) for a passive job.
async fn ping(
    rt: &Arc<Runtime>,
    started: &Arc<Started>,
    name: &str,
    peer: SocketAddr,
    start: bool,
) -> Response<Body> {
    let Some(job) = rt.config.job(name) else {
        tracing::warn!(job = ?name, %peer, "ping for an unknown job");
        return text(StatusCode::NOT_FOUND, format!("no job `{name}`"));
    };
    if job.check.is_active() {
        tracing::warn!(job = %job.name, %peer, "ping for an active job refused");
        return text(
            StatusCode::CONFLICT,
            format!(
                "job `{}` is a `{}` check, not a `heartbeat`: only passive jobs take pings",
                job.name,
                job.check.kind()
            ),
        );
    }
    if start {
        started.begin(rt, job);
        tracing::info!(job = %job.name, %peer, "start ping received");
        return text(StatusCode::OK, "OK");
    }
    let begun = started.end(&job.name);
    match crate::runner::ping(rt, job, rt.clock.now(), begun).await {
        Ok(_) => {
            tracing::info!(job = %job.name, %peer, "ping received");
            text(StatusCode::OK, "OK")
        }
        Err(e) => failed("ping", &e),
    }
}

fn answer((status, json): crate::api::Answer) -> Response<Body> {
    let mut body = serde_json::to_string_pretty(&json).unwrap_or_default();
    body.push('\n');
    reply(status, "application/json", body)
}

/// A request's body, at most [`crate::api::MAX_BODY`] bytes.
async fn body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    use http_body_util::{BodyExt, Limited};
    match Limited::new(req.into_body(), crate::api::MAX_BODY)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body too large or cut off (at most {} bytes)",
                crate::api::MAX_BODY
            ),
        )),
    }
}

/// A form's headers (its cookie, `Origin`, `Referer`) and body, as [`body`] reads it.
async fn form(req: Request<Incoming>) -> Result<(hyper::HeaderMap, Bytes), Response<Body>> {
    let headers = req.headers().clone();
    Ok((headers, body(req).await?))
}

fn failed(what: &str, e: &dyn std::fmt::Display) -> Response<Body> {
    tracing::error!("listener: cannot serve {what}: {e}");
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("cannot serve {what}; see the agent's log"),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::config::tests_support::load_text;
    use crate::runtime::{Mode, SystemClock};

    #[test]
    fn routes_take_the_methods_healthchecks_clients_use() {
        let (get, head, post, put) = (Method::GET, Method::HEAD, Method::POST, Method::PUT);
        assert_eq!(route(&get, "/healthz"), Route::Healthz);
        assert_eq!(route(&head, "/metrics"), Route::Metrics);
        assert_eq!(route(&get, "/status"), Route::Status);
        for method in [&get, &head, &post] {
            assert_eq!(
                route(method, "/ping/nightly-import"),
                Route::Ping("nightly-import")
            );
        }
        assert_eq!(
            route(&post, "/status"),
            Route::MethodNotAllowed("GET, HEAD")
        );
        assert_eq!(
            route(&put, "/ping/a"),
            Route::MethodNotAllowed("GET, HEAD, POST")
        );
        assert_eq!(route(&post, "/ping/a/start"), Route::Start("a"));
        assert_eq!(route(&get, "/badge/backup.svg"), Route::Badge("backup"));
        assert_eq!(route(&head, "/badge/db.dump.svg"), Route::Badge("db.dump"));
        assert_eq!(
            route(&get, "/badge/backup/uptime.svg"),
            Route::UptimeBadge("backup")
        );
        assert_eq!(
            route(&post, "/badge/backup.svg"),
            Route::MethodNotAllowed("GET, HEAD")
        );
        assert_eq!(route(&get, "/"), Route::Overview);
        assert_eq!(route(&head, "/jobs/backup"), Route::JobPage("backup"));
        assert_eq!(
            route(&get, "/static/klaxon.css"),
            Route::Static("klaxon.css")
        );
        assert_eq!(
            route(&post, "/jobs/backup"),
            Route::MethodNotAllowed("GET, HEAD")
        );
        assert_eq!(route(&get, "/login"), Route::Login);
        assert_eq!(route(&post, "/login"), Route::Login);
        assert_eq!(route(&post, "/logout"), Route::Logout);
        assert_eq!(route(&get, "/logout"), Route::MethodNotAllowed("POST"));
        assert_eq!(
            route(&post, "/jobs/db/run"),
            Route::Action(actions::Action::Run("db"))
        );
        assert_eq!(
            route(&get, "/outbox/3/drop"),
            Route::MethodNotAllowed("POST")
        );
        for path in [
            "/jobs/",
            "/jobs/a/b",
            "/static/a/b.css",
            "/ping",
            "/ping/",
            "/ping/a/b",
            "/ping//start",
            "/ping/a/b/start",
            "/healthz/",
            "/statusx",
            "/badge/",
            "/badge/.svg",
            "/badge/backup",
            "/badge/a/b.svg",
            "/badge//uptime.svg",
            "/badge/a/b/uptime.svg",
        ] {
            assert_eq!(route(&get, path), Route::NotFound, "{path}");
        }
    }

    #[test]
    fn only_the_exact_bearer_token_is_authorized() {
        let token = SecretString::from("s3cret-token");
        let header = |v: &str| HeaderValue::from_str(v).unwrap();
        assert!(authorized(Some(&header("Bearer s3cret-token")), &token));
        assert!(authorized(Some(&header("bearer  s3cret-token ")), &token));
        for wrong in [
            "Bearer s3cret-toke",
            "Bearer s3cret-token2",
            "Bearer ",
            "Basic s3cret-token",
            "s3cret-token",
            "Bearers3cret-token",
        ] {
            assert!(!authorized(Some(&header(wrong)), &token), "{wrong}");
        }
        assert!(!authorized(None, &token));
        // An empty token (a variable that expanded to nothing) lets nobody in.
        let empty = SecretString::from("");
        assert!(!authorized(Some(&header("Bearer ")), &empty));
        assert!(!authorized(Some(&header("Bearer x")), &empty));
    }

    async fn start(limits: Limits) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let config = load_text(
            "[jobs.beat]\nevery = \"1h\"\n[jobs.beat.check]\ntype = \"heartbeat\"\ngrace = \"1m\"\n",
        )
        .unwrap();
        let rt = Arc::new(Runtime::build(config, Mode::DryRun, Arc::new(SystemClock)).unwrap());
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let state = State {
            runtime: watch::channel(rt).1,
            alive: Arc::new(Liveness::new()),
            started: Arc::default(),
            asks: mpsc::channel(1).0,
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(tcp, state, limits, stop.clone()));
        (addr, stop, task)
    }

    async fn exchange(stream: &mut TcpStream, request: &str) -> String {
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = vec![0; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn a_client_slow_with_its_headers_is_dropped_and_others_are_served() {
        let limits = Limits {
            header_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let (addr, stop, task) = start(limits).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        // Meanwhile another client is served.
        let mut quick = TcpStream::connect(addr).await.unwrap();
        let answer = exchange(&mut quick, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nok\n"), "{answer}");
        // The slow one gets a 408 or a closed connection, well before the test gives up.
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the slow connection is still open");
        let rest = String::from_utf8_lossy(&rest);
        assert!(
            rest.is_empty() || rest.starts_with("HTTP/1.1 408"),
            "{rest}"
        );
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_wait_and_shutdown_stops_accepting() {
        let limits = Limits {
            max_connections: 1,
            ..Limits::default()
        };
        let (addr, stop, task) = start(limits).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        let answer = exchange(&mut first, "GET /status HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("\"job\": \"beat\""), "{answer}");
        // The first connection is kept alive: the second is not served meanwhile.
        let mut second = TcpStream::connect(addr).await.unwrap();
        second
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0; 64];
        let waited = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
        assert!(waited.is_err(), "served beyond the connection limit");
        drop(first);
        let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
        stop.cancel();
        task.await.unwrap();
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "still accepting after stop"
        );
    }
}
