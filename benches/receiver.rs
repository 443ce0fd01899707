//! The alert benchmark's shared webhook receiver: one process of its own that every
//! implementation (klaxon, the Python peers) posts to, so the headline compares like
//! with like. It does what `../shared/bench/peers/webhook_receiver.py` does, faster:
//! for each POST it appends `<t_arrival> <body>` to `--out`, `t_arrival` being the
//! wall-clock time (seconds, 6 decimals) taken when the handler is entered (headers
//! parsed), before the body is read; it answers `200 ok` as Slack does.
//!
//! ```text
//! cargo bench --bench receiver -- --out /tmp/peers/webhook.log [--port 18090]
//! ```
//!
//! One thread (a current-thread tokio runtime), HTTP/1.1 with keep-alive, the log
//! written with one `write` per POST (line-buffered, as the Python receiver's is).

use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut out, mut port) = (None, 18090u16);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = args.next(),
            "--port" => port = args.next().ok_or("--port needs a value")?.parse()?,
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    let out = out.ok_or("--out PATH is required")?;
    let log = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out)?,
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        eprintln!("receiver: listening on 127.0.0.1:{port}, writing {out}");
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let log = log.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| hook(req, log.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    })
}

async fn hook(
    req: Request<Incoming>,
    log: Arc<Mutex<std::fs::File>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let arrived = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    // One line per POST: JSON bodies are compact, but a newline inside one would split
    // the record.
    let body: Vec<u8> = body
        .iter()
        .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
        .collect();
    let mut line = format!("{arrived:.6} ").into_bytes();
    line.extend_from_slice(&body);
    line.push(b'\n');
    if let Ok(mut file) = log.lock() {
        let _ = file.write_all(&line);
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}
