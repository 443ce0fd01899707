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
//! Routing is axum's [`Router`] ([`router`]); a path it knows with a method it does not
//! take is a `405` with `Allow`, before any token is asked for. A handler is an async
//! function of axum extractors (`State<Shared>`, `Path<String>`, `Uri`, `HeaderMap`,
//! [`Authorized`] or [`Caller`] first when it needs the token, a body last, read with
//! [`read`]) returning `Response<Full<Bytes>>`: a route is one line in [`router`], and a
//! plain function elsewhere (the dashboard's) attaches through such a handler, as
//! [`overview`], [`job_page`] and [`sign`] do.
//!
//! The listener binds once, at start: a port in use is an error that stops the agent.
//! It serves the agent's current runtime, which a reload replaces; it stops accepting
//! at shutdown. The connections are hyper's (hyper-util), with the router as their
//! service: a client that is slow to send its headers is dropped after
//! [`HEADER_TIMEOUT`], one that is slow to send a body it must send gets a `408` after
//! [`BODY_TIMEOUT`] (tower-http), at most [`MAX_CONNECTIONS`] are open at once, and a
//! connection is closed (between requests) after [`CONNECTION_LIFETIME`].

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::routing::{delete, get, post};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tower_http::timeout::{RequestBodyTimeout, TimeoutError};

use klaxon_notifiers::buttons::{Action, scoped_token};

use crate::dashboard::{actions, auth};
use crate::liveness::{Health, Liveness};
use crate::runtime::Runtime;
use crate::scheduler::RunNow;
use crate::started::Started;

/// How long a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send the body of a request that reads one (`/api`).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

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
        tracing::info!("dashboard: {}", dashboard_url(bound));
        let (runtime, current) = watch::channel(rt.clone());
        let stop = shutdown.child_token();
        let shared = Shared {
            runtime: current,
            alive,
            started: Arc::default(),
            asks,
        };
        let task = tokio::spawn(serve(tcp, router(shared), Limits::default(), stop.clone()));
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

/// Where a browser on this machine reaches a listener bound to `addr`: an unspecified
/// address (`0.0.0.0`, `[::]`) on loopback.
pub fn dashboard_addr(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// The agent's page for a listener bound to `addr`: `http://ADDR/`, as
/// [`dashboard_addr`] reaches it.
pub fn dashboard_url(addr: SocketAddr) -> String {
    format!("http://{}/", dashboard_addr(addr))
}

/// Bounds on what one client can hold.
#[derive(Debug, Clone, Copy)]
struct Limits {
    header_timeout: Duration,
    body_timeout: Duration,
    max_connections: usize,
    lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: HEADER_TIMEOUT,
            body_timeout: BODY_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            lifetime: CONNECTION_LIFETIME,
        }
    }
}

/// What every handler shares: the router's state.
#[derive(Clone)]
pub(crate) struct Shared {
    runtime: watch::Receiver<Arc<Runtime>>,
    alive: Arc<Liveness>,
    /// Runs of passive jobs begun with `/ping/JOB/start`, across reloads.
    started: Arc<Started>,
    /// Runs asked for on the dashboard, to the scheduler.
    asks: mpsc::Sender<RunNow>,
}

impl Shared {
    /// The agent's current runtime (a reload replaces it).
    pub(crate) fn runtime(&self) -> Arc<Runtime> {
        self.runtime.borrow().clone()
    }
}

/// The address of the client, put on each request by [`connection`].
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

/// Every route. Open routes take no token; [`Authorized`] asks for `listen_token`
/// when one is set; [`Caller`] is the API's (the token always, or a button's).
fn router(shared: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        // `{job}` is `JOB.svg` here: matchit has no suffixes.
        .route("/badge/{job}", get(status_badge))
        .route("/badge/{job}/uptime.svg", get(uptime_badge))
        .route("/ping/{job}", get(ping::<false>).post(ping::<false>))
        .route("/ping/{job}/start", get(ping::<true>).post(ping::<true>))
        .route("/api/silences", get(list_silences).post(add_silence))
        .route("/api/silences/{id}", delete(expire_silence))
        .route("/api/ack/{job}", post(ack))
        .route("/", get(overview))
        .route("/jobs/{job}", get(job_page))
        .route("/static/{name}", get(asset))
        .route(auth::LOGIN, get(login_page).post(sign::<true>))
        .route(auth::LOGOUT, post(sign::<false>))
        .route("/jobs/{job}/silence", post(action))
        .route("/jobs/{job}/ack", post(action))
        .route("/jobs/{job}/run", post(action))
        .route("/outbox/{id}/retry", post(action))
        .route("/outbox/{id}/drop", post(action))
        .fallback(not_found)
        .with_state(shared)
}

/// Serves one request with `router`: the peer's address goes on it, its body must arrive
/// within `body_timeout`, and a `405` says what to use.
fn respond<B>(
    router: &Router,
    peer: SocketAddr,
    body_timeout: Duration,
    mut req: Request<B>,
) -> impl Future<Output = Result<axum::response::Response, Infallible>> + use<B>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    req.extensions_mut().insert(Peer(peer));
    let timed = RequestBodyTimeout::new(router.clone(), body_timeout);
    ServiceExt::<Request<B>>::map_response(timed, method_not_allowed).oneshot(req)
}

async fn serve(tcp: TcpListener, router: Router, limits: Limits, stop: CancellationToken) {
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
        let (router, stop) = (router.clone(), stop.clone());
        connections.spawn(async move {
            connection(stream, peer, router, limits, stop).await;
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
    router: Router,
    limits: Limits,
    stop: CancellationToken,
) {
    let service =
        service_fn(move |req: Request<Incoming>| respond(&router, peer, limits.body_timeout, req));
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

/// Who sent a request and to where, for the log of a refusal.
fn peer_and_path(parts: &Parts) -> (SocketAddr, String) {
    let peer = parts
        .extensions
        .get::<Peer>()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |p| p.0);
    (peer, parts.uri.path().to_owned())
}

/// A request allowed what `listen_token` guards: it presented the token, or none is
/// set. Otherwise the request is refused with a `401` before its handler runs.
pub(crate) struct Authorized;

impl FromRequestParts<Shared> for Authorized {
    type Rejection = Response<Body>;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Shared,
    ) -> Result<Self, Self::Rejection> {
        let rt = shared.runtime();
        let presented = parts.headers.get(AUTHORIZATION);
        match &rt.config.agent.listen_token {
            None => Ok(Self),
            Some(token) if authorized(presented, token) => Ok(Self),
            Some(_) => {
                let (peer, path) = peer_and_path(parts);
                Err(refuse(peer, &path, presented.is_some()))
            }
        }
    }
}

/// Who calls the API, which always needs `listen_token`: a request is refused with a
/// `403` when none is set (before anything else), and each handler says which tokens
/// it takes ([`Caller::unless_full`], [`Caller::button`]) before it reads a body.
pub(crate) struct Caller {
    token: SecretString,
    presented: Option<HeaderValue>,
    /// It presented the full token.
    full: bool,
    peer: SocketAddr,
    path: String,
}

impl FromRequestParts<Shared> for Caller {
    type Rejection = Response<Body>;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Shared,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = shared.runtime().config.agent.listen_token.clone() else {
            return Err(text(
                StatusCode::FORBIDDEN,
                "forbidden: /api needs `agent.listen_token` set (it changes what klaxon sends)",
            ));
        };
        let presented = parts.headers.get(AUTHORIZATION).cloned();
        let (peer, path) = peer_and_path(parts);
        Ok(Self {
            full: authorized(presented.as_ref(), &token),
            token,
            presented,
            peer,
            path,
        })
    }
}

impl Caller {
    /// The 401 for this caller.
    fn refuse(&self) -> Response<Body> {
        refuse(self.peer, &self.path, self.presented.is_some())
    }

    /// The 401, unless it presented the full token.
    fn unless_full(&self) -> Option<Response<Body>> {
        (!self.full).then(|| self.refuse())
    }

    /// Whether it presented a button's token for `action` on `job`.
    fn button(&self, action: Action, job: &str) -> bool {
        scoped(self.presented.as_ref(), &self.token, action, job)
    }
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

async fn not_found() -> Response<Body> {
    text(
        StatusCode::NOT_FOUND,
        "not found: try /, /jobs/JOB, /healthz, /metrics, /status, /ping/JOB, /badge/JOB.svg, /badge/JOB/uptime.svg, /api/silences or /api/ack/JOB",
    )
}

/// axum's `405` (a known path, a method it does not take) with a body that says what
/// to use, and `Allow` written `GET, HEAD` as before. (Outside the router: axum adds
/// `Allow` after its layers.)
fn method_not_allowed(response: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let allow = response
        .headers()
        .get(ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .replace(',', ", ");
    let mut response = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed: use {allow}"),
    );
    if let Ok(allow) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(ALLOW, allow);
    }
    response.into_response()
}

async fn healthz(State(shared): State<Shared>) -> Response<Body> {
    match shared.alive.health() {
        Health::Alive => text(StatusCode::OK, "ok"),
        Health::Unwell(reasons) => text(StatusCode::SERVICE_UNAVAILABLE, reasons.join("; ")),
    }
}

async fn metrics(State(shared): State<Shared>) -> Response<Body> {
    let rt = shared.runtime();
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

async fn status(_: Authorized, State(shared): State<Shared>) -> Response<Body> {
    let rt = shared.runtime();
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

/// `/badge/JOB.svg`.
async fn status_badge(State(shared): State<Shared>, Path(file): Path<String>) -> Response<Body> {
    match file.strip_suffix(".svg").filter(|job| !job.is_empty()) {
        Some(job) => badge(shared.runtime(), job, false).await,
        None => not_found().await,
    }
}

/// `/badge/JOB/uptime.svg`.
async fn uptime_badge(State(shared): State<Shared>, Path(job): Path<String>) -> Response<Body> {
    if job.is_empty() {
        // `/badge//uptime.svg`: matchit takes an empty segment.
        return not_found().await;
    }
    badge(shared.runtime(), &job, true).await
}

/// `/ping/JOB`, or (`START`) `/ping/JOB/start`.
async fn ping<const START: bool>(
    _: Authorized,
    State(shared): State<Shared>,
    Path(job): Path<String>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
) -> Response<Body> {
    if job.is_empty() {
        // `/ping//start`: matchit takes an empty segment.
        return not_found().await;
    }
    passive(&shared, &job, peer, START).await
}

/// `/`: the dashboard's overview.
async fn overview(State(shared): State<Shared>, uri: Uri, headers: HeaderMap) -> Response<Body> {
    let (rt, alive) = (shared.runtime(), shared.alive.clone());
    crate::dashboard::overview_page(rt, alive, &headers, uri.query()).await
}

/// `/jobs/JOB`: a job's page. It decodes the segment itself, so it gets it as sent.
async fn job_page(State(shared): State<Shared>, uri: Uri, headers: HeaderMap) -> Response<Body> {
    let segment = uri.path().strip_prefix("/jobs/").unwrap_or_default();
    crate::dashboard::job_page(shared.runtime(), shared.alive.clone(), segment, &headers).await
}

/// `/static/NAME`: the dashboard's stylesheet and script.
async fn asset(Path(name): Path<String>) -> Response<Body> {
    crate::dashboard::asset(&name)
        .unwrap_or_else(|| text(StatusCode::NOT_FOUND, format!("no file `{name}`")))
}

/// `GET /login`: the sign-in form.
async fn login_page(State(shared): State<Shared>, uri: Uri, headers: HeaderMap) -> Response<Body> {
    auth::login_page(&shared.runtime(), &headers, uri.query())
}

/// `POST /login` (`IN`) and `POST /logout`: the form and its headers, to [`auth`].
async fn sign<const IN: bool>(
    State(shared): State<Shared>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response<Body> {
    let body = match read(body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let rt = shared.runtime();
    if IN {
        auth::login(&rt, &headers, &body, peer)
    } else {
        auth::logout(&rt, &headers, &body, peer)
    }
}

/// `POST /jobs/JOB/ACTION` and `POST /outbox/ID/ACTION`: the dashboard's buttons.
async fn action(
    State(shared): State<Shared>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response<Body> {
    let Some(action) = actions::Action::at(uri.path()) else {
        return not_found().await;
    };
    match read(body).await {
        Ok(body) => {
            actions::perform(
                &shared.runtime(),
                &shared.asks,
                action,
                &headers,
                &body,
                peer,
            )
            .await
        }
        Err(response) => response,
    }
}

/// `GET /api/silences`.
async fn list_silences(caller: Caller, State(shared): State<Shared>) -> Response<Body> {
    if let Some(refused) = caller.unless_full() {
        return refused;
    }
    answer(crate::api::list(&shared.runtime()).await)
}

/// `POST /api/silences`: the full token, or (when another is presented) a button's,
/// whose job is checked once the body is read. With no token at all, nothing is read.
async fn add_silence(
    caller: Caller,
    State(shared): State<Shared>,
    body: axum::body::Body,
) -> Response<Body> {
    if !caller.full && caller.presented.is_none() {
        return caller.refuse();
    }
    let body = match read(body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let good_for = |job: &str| caller.button(Action::Silence, job);
    let button = (!caller.full).then_some(&good_for as &(dyn Fn(&str) -> bool + Sync));
    match crate::api::add(&shared.runtime(), &body, button).await {
        Some(added) => answer(added),
        None => refuse(caller.peer, &caller.path, true),
    }
}

/// `DELETE /api/silences/ID`.
async fn expire_silence(
    caller: Caller,
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> Response<Body> {
    if let Some(refused) = caller.unless_full() {
        return refused;
    }
    answer(crate::api::expire(&shared.runtime(), &id).await)
}

/// `POST /api/ack/JOB`: the full token, or the button's for this job.
async fn ack(
    caller: Caller,
    State(shared): State<Shared>,
    Path(job): Path<String>,
    body: axum::body::Body,
) -> Response<Body> {
    let button = !caller.full;
    if button && !caller.button(Action::Ack, &job) {
        return caller.refuse();
    }
    match read(body).await {
        Ok(body) => answer(crate::api::ack(&shared.runtime(), &job, &body, button).await),
        Err(response) => response,
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
async fn passive(shared: &Shared, name: &str, peer: SocketAddr, start: bool) -> Response<Body> {
    let (rt, started) = (&shared.runtime(), &shared.started);
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

/// A request's body, at most [`crate::api::MAX_BODY`] bytes, sent within the body
/// timeout.
async fn read(body: axum::body::Body) -> Result<Bytes, Response<Body>> {
    use http_body_util::{BodyExt, Limited};
    match Limited::new(body, crate::api::MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if timed_out(&*e) => Err(text(
            StatusCode::REQUEST_TIMEOUT,
            "request timeout: the body was not sent in time",
        )),
        Err(_) => Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body too large or cut off (at most {} bytes)",
                crate::api::MAX_BODY
            ),
        )),
    }
}

/// Whether reading a body failed because the client was too slow to send it.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source()).any(|e| e.is::<TimeoutError>())
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

    /// The runtime of a config with one heartbeat job `beat` and, maybe, a token.
    fn shared(token: Option<&str>) -> Shared {
        let agent = token.map_or_else(String::new, |t| {
            format!("[agent]\nlisten_token = \"{t}\"\n")
        });
        let config = load_text(&format!(
            "{agent}[jobs.beat]\nevery = \"1h\"\n[jobs.beat.check]\ntype = \"heartbeat\"\ngrace = \"1m\"\n"
        ))
        .unwrap();
        let rt = Arc::new(Runtime::build(config, Mode::DryRun, Arc::new(SystemClock)).unwrap());
        Shared {
            runtime: watch::channel(rt).1,
            alive: Arc::new(Liveness::new()),
            started: Arc::default(),
            asks: mpsc::channel(1).0,
        }
    }

    /// Status, `Allow` and body of one request served by the router.
    async fn call(router: &Router, method: &str, path: &str) -> (u16, String, String) {
        use http_body_util::BodyExt;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::default())
            .unwrap();
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let response = respond(router, peer, BODY_TIMEOUT, req).await.unwrap();
        let status = response.status().as_u16();
        let allow = response
            .headers()
            .get(ALLOW)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, allow, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn routes_take_the_methods_healthchecks_clients_use() {
        let router = router(shared(None));
        assert_eq!(call(&router, "GET", "/healthz").await.0, 200);
        assert_eq!(call(&router, "HEAD", "/metrics").await.0, 200);
        assert_eq!(call(&router, "GET", "/status").await.0, 200);
        for method in ["GET", "POST"] {
            let (status, _, body) = call(&router, method, "/ping/nightly-import").await;
            assert_eq!((status, body.as_str()), (404, "no job `nightly-import`\n"));
        }
        assert_eq!(call(&router, "HEAD", "/ping/nightly-import").await.0, 404);
        assert_eq!(call(&router, "POST", "/ping/beat").await.0, 200);
        assert_eq!(
            call(&router, "POST", "/status").await,
            (
                405,
                "GET, HEAD".to_owned(),
                "method not allowed: use GET, HEAD\n".to_owned()
            )
        );
        assert_eq!(call(&router, "PUT", "/ping/a").await.1, "GET, HEAD, POST");
        assert_eq!(
            call(&router, "DELETE", "/ping/a/start").await.1,
            "GET, HEAD, POST"
        );
        assert_eq!(call(&router, "POST", "/ping/beat/start").await.0, 200);
        assert_eq!(call(&router, "GET", "/badge/beat.svg").await.0, 200);
        assert_eq!(call(&router, "GET", "/badge/beat/uptime.svg").await.0, 200);
        assert_eq!(
            call(&router, "GET", "/badge/db.dump.svg").await.2,
            "no job `db.dump`\n"
        );
        assert_eq!(
            call(&router, "POST", "/badge/beat.svg").await.1,
            "GET, HEAD"
        );
        assert_eq!(call(&router, "GET", "/api/silences/1").await.1, "DELETE");
        assert_eq!(call(&router, "GET", "/api/ack/beat").await.1, "POST");
        // The dashboard's.
        assert_eq!(call(&router, "GET", "/").await.0, 200);
        assert_eq!(call(&router, "HEAD", "/jobs/beat").await.0, 200);
        assert_eq!(call(&router, "GET", "/static/klaxon.css").await.0, 200);
        assert_eq!(call(&router, "POST", "/jobs/beat").await.1, "GET, HEAD");
        assert_eq!(call(&router, "GET", "/login").await.0, 200);
        assert_eq!(call(&router, "GET", "/logout").await.1, "POST");
        assert_eq!(call(&router, "GET", "/jobs/beat/run").await.1, "POST");
        assert_eq!(call(&router, "GET", "/outbox/3/drop").await.1, "POST");
        for path in [
            "/jobs/",
            "/jobs/a/b",
            "/jobs/a/b/c",
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
            let (status, _, body) = call(&router, "GET", path).await;
            assert_eq!(status, 404, "{path}");
            assert!(
                body.starts_with("not found: try /, /jobs/JOB"),
                "{path}: {body}"
            );
        }
    }

    #[tokio::test]
    async fn the_api_is_forbidden_without_a_token_and_refused_without_the_right_one() {
        let open = router(shared(None));
        for (method, path) in [
            ("GET", "/api/silences"),
            ("POST", "/api/silences"),
            ("DELETE", "/api/silences/1"),
            ("POST", "/api/ack/beat"),
        ] {
            let (status, _, body) = call(&open, method, path).await;
            assert_eq!(status, 403, "{method} {path}");
            assert!(body.contains("`agent.listen_token`"), "{body}");
        }
        let guarded = router(shared(Some("t0ken")));
        for (method, path) in [
            ("GET", "/api/silences"),
            ("POST", "/api/silences"),
            ("DELETE", "/api/silences/1"),
            ("POST", "/api/ack/beat"),
            ("GET", "/status"),
            ("POST", "/ping/beat"),
            ("GET", "/ping/beat/start"),
        ] {
            assert_eq!(call(&guarded, method, path).await.0, 401, "{method} {path}");
        }
        // A method a path does not take is a 405 before any token is asked for.
        assert_eq!(call(&guarded, "PUT", "/api/silences").await.0, 405);
        assert_eq!(call(&guarded, "DELETE", "/status").await.0, 405);
        assert_eq!(call(&guarded, "GET", "/healthz").await.0, 200);
    }

    #[test]
    fn the_page_of_an_unspecified_address_is_on_loopback() {
        let url = |addr: &str| dashboard_url(addr.parse().unwrap());
        assert_eq!(url("0.0.0.0:9850"), "http://127.0.0.1:9850/");
        assert_eq!(url("[::]:9850"), "http://[::1]:9850/");
        assert_eq!(url("127.0.0.1:9850"), "http://127.0.0.1:9850/");
        assert_eq!(url("192.168.1.5:80"), "http://192.168.1.5:80/");
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

    async fn start(
        shared: Shared,
        limits: Limits,
    ) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(tcp, router(shared), limits, stop.clone()));
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
        let (addr, stop, task) = start(shared(None), limits).await;
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
        let (addr, stop, task) = start(shared(None), limits).await;
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

    #[tokio::test]
    async fn a_client_slow_with_a_body_it_must_send_gets_a_408() {
        let limits = Limits {
            body_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let (addr, stop, task) = start(shared(Some("t0ken")), limits).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        let answer = exchange(
            &mut slow,
            "POST /api/silences HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0ken\r\nContent-Length: 40\r\n\r\n{\"jobs\"",
        )
        .await;
        assert!(
            answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{answer}"
        );
        assert!(
            answer.ends_with("\r\n\r\nrequest timeout: the body was not sent in time\n"),
            "{answer}"
        );
        stop.cancel();
        task.await.unwrap();
    }
}
