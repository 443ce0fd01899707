//! Test-only helpers shared by every crate's tests: a real HTTP/1.1 server on an
//! ephemeral loopback port whose answers the test scripts and whose requests it records, and
//! a mail server that upgrades with STARTTLS ([`mail`]).
//!
//! Nothing here is mocked: the server speaks HTTP through hyper over a real socket, so
//! the clients under test run exactly as they do against a remote endpoint. Beside it,
//! [`append`]: a log line written the way a service writes its log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod mail;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, e.g. `/hook?x=1`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When it arrived, on tokio's clock.
    pub at: tokio::time::Instant,
}

impl Request {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json_lite::Value {
        serde_json_lite::parse(&self.body)
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering (a slow or hanging target).
    pub delay: Duration,
}

impl Response {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Self::status(200).body(body)
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Handler = Box<dyn FnMut(&Request) -> Response + Send>;

struct Shared {
    handler: Mutex<Handler>,
    requests: Mutex<Vec<Request>>,
    arrived: Notify,
}

/// A running server; it stops when dropped.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Starts a server on `127.0.0.1:0` that answers every request with `handler`.
    pub async fn start(handler: impl FnMut(&Request) -> Response + Send + 'static) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), handler).await
    }

    /// Starts a server on a given address (to bring one back on the port it had).
    pub async fn start_on(
        addr: SocketAddr,
        handler: impl FnMut(&Request) -> Response + Send + 'static,
    ) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind test server");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            handler: Mutex::new(Box::new(handler)),
            requests: Mutex::new(Vec::new()),
            arrived: Notify::new(),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Self { addr, shared, task }
    }

    /// Answers the scripted responses in order, then `then` for ever after.
    pub async fn sequence(script: impl IntoIterator<Item = Response>, then: Response) -> Self {
        let mut queue: VecDeque<Response> = script.into_iter().collect();
        Self::start(move |_| queue.pop_front().unwrap_or_else(|| then.clone())).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Replaces how the server answers from now on.
    pub fn set_handler(&self, handler: impl FnMut(&Request) -> Response + Send + 'static) {
        *self.shared.handler.lock().unwrap() = Box::new(handler);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests have arrived; panics after `timeout` with what did.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.arrived.notified();
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "waited {timeout:?} for {n} requests to {}, got {}: {:#?}",
                    self.addr,
                    got.len(),
                    got.iter()
                        .map(|r| (&r.method, &r.path, r.text()))
                        .collect::<Vec<_>>()
                );
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| handle(req, shared.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    shared: Arc<Shared>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let request = Request {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        at: tokio::time::Instant::now(),
    };
    let response = (shared.handler.lock().unwrap())(&request);
    shared.requests.lock().unwrap().push(request);
    shared.arrived.notify_waiters();
    if !response.delay.is_zero() {
        tokio::time::sleep(response.delay).await;
    }
    let mut builder = hyper::Response::builder().status(response.status);
    for (k, v) in &response.headers {
        builder = builder.header(k, v);
    }
    Ok(builder.body(Full::new(Bytes::from(response.body))).unwrap())
}

/// JSON for assertions without pulling serde into every test: re-exported serde_json.
/// Appends `text` to the file at `path` (created if missing), as a service appends to
/// its log: opened with `O_APPEND`, written, closed.
pub fn append(path: &std::path::Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

pub mod serde_json_lite {
    pub use serde_json::Value;

    /// Parses JSON, panicking with the text when it is not JSON.
    pub fn parse(body: &[u8]) -> Value {
        serde_json::from_slice(body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(body)))
    }
}
