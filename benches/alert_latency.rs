//! Alert latency benchmark: a check's final failure is known → the `webhook` receiver
//! has the POST. The durable part is included: `klaxon::runner::record` writes the run,
//! the new alert state and the message in one SQLite transaction (WAL,
//! `synchronous = NORMAL`) before `klaxon::delivery::worker` sends it.
//!
//! ```text
//! cargo bench --bench alert_latency                              # 500 singles, 20 storms of 100
//! cargo bench --bench alert_latency -- --singles 200 --storms 5 --json out.json
//! cargo bench --bench alert_latency -- --hook http://127.0.0.1:18090/hook \
//!     --hook-log /tmp/peers/webhook.log                          # the peers' receiver
//! ```
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `--singles N` | `500` | isolated alerts measured (after `--warmup` more) |
//! | `--warmup N` | `20` | isolated alerts and 1 storm run first and not counted |
//! | `--storms N` | `20` | storms measured |
//! | `--storm-size N` | `100` | jobs failing at once in a storm |
//! | `--gap-ms N` | `10` | pause between two isolated alerts (the agent is idle again) |
//! | `--state-dir DIR` | temp dir under `target/tmp` | where `klaxon.db` goes (a real disk, not tmpfs) |
//! | `--hook URL` + `--hook-log PATH` | in-process receiver | POST to an external receiver that logs `<epoch> <json>` per POST (`bench/peers/webhook_receiver.py`) |
//! | `--log PATH` | none | install the agent's `info` text log, written to PATH (its cost is then included) |
//! | `--json PATH` | none | also write the results as JSON |
//! | `--components N` | `200` | then time the parts alone, N times each (in-process receiver only; 0: skip) |
//!
//! Set-up: a generated config (`group_wait = "0s"`, `alert.after = 1`, one `webhook`
//! notifier, jobs with a `tcp` check that never runs), `Runtime::build(.., Mode::Live,
//! SystemClock)`, its outbox doorbell bound (`Store::listen_for_others`), and
//! `delivery::worker` spawned on a runtime built like the agent's (2 workers, at most 4
//! blocking threads). The measuring code runs as a task on that
//! runtime, as the scheduler's runs do.
//!
//! * isolated alert: t0 = just before `record` of a critical outcome of job `single`;
//!   latency = arrival of its `failure` message − t0. The alert is then closed with an
//!   ok outcome, whose `recovery` message is waited for (and reported too).
//! * storm: t0 = one instant, then `--storm-size` tasks each `record` a critical outcome
//!   of their own job at once; latency of each alert = its arrival − t0 (so queueing
//!   behind the other 99 counts). Then all are closed the same way (recovery storm).
//!
//! Arrival, in-process: a minimal HTTP/1.1 server on its own OS thread (current-thread
//! tokio runtime, its own `TcpListener`), stamping the time when the whole body has been
//! read, before it answers `200 ok` — so the agent's two workers are not shared with it.
//! With `--hook-log`, the arrival is the external receiver's stamp (aiohttp: handler
//! entered, headers parsed, body not yet read), exactly as for the Python peers.
//! All times are wall-clock (as `time.time()` in the peers). Not part of `cargo test`.

use std::io::{BufRead, Seek};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::Utc;
use klaxon::config::Job;
use klaxon::runner::{self, Times, Tries};
use klaxon::runtime::{Mode, Runtime, SystemClock};
use klaxon_checks::{Outcome, Severity};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct Opts {
    singles: usize,
    warmup: usize,
    storms: usize,
    storm_size: usize,
    gap: Duration,
    state_dir: Option<PathBuf>,
    hook: Option<(String, PathBuf)>,
    log: Option<PathBuf>,
    json: Option<PathBuf>,
    components: usize,
}

fn opts() -> Result<Opts, String> {
    let mut o = Opts {
        singles: 500,
        warmup: 20,
        storms: 20,
        storm_size: 100,
        gap: Duration::from_millis(10),
        state_dir: None,
        hook: None,
        log: None,
        json: None,
        components: 200,
    };
    let (mut hook, mut hook_log) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        let num = |s: String| s.parse::<usize>().map_err(|e| format!("{a} `{s}`: {e}"));
        match a.as_str() {
            "--singles" => o.singles = num(val()?)?,
            "--warmup" => o.warmup = num(val()?)?,
            "--storms" => o.storms = num(val()?)?,
            "--storm-size" => o.storm_size = num(val()?)?.max(1),
            "--gap-ms" => o.gap = Duration::from_millis(num(val()?)? as u64),
            "--state-dir" => o.state_dir = Some(val()?.into()),
            "--hook" => hook = Some(val()?),
            "--hook-log" => hook_log = Some(PathBuf::from(val()?)),
            "--log" => o.log = Some(val()?.into()),
            "--json" => o.json = Some(val()?.into()),
            "--components" => o.components = num(val()?)?,
            // `cargo bench` passes `--bench` (and any filter).
            _ => {}
        }
    }
    o.hook = match (hook, hook_log) {
        (Some(h), Some(l)) => Some((h, l)),
        (None, None) => None,
        _ => return Err("--hook and --hook-log go together".into()),
    };
    Ok(o)
}

/// Wall-clock nanoseconds since the epoch.
fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// One POST as the receiver got it: when, the alert's `job` and `event`, and the body.
#[derive(Debug)]
struct Arrival {
    at_ns: i64,
    job: String,
    event: String,
    body: Vec<u8>,
}

/// The two fields the measurement needs, borrowed from the body: the receiver runs on
/// the same two cores as the agent, so it does not build a `serde_json::Value` of every
/// POST (that cost the agent's storm some 5 % of its CPU).
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    job: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    event: std::borrow::Cow<'a, str>,
}

fn arrival(at_ns: i64, body: &[u8]) -> Option<Arrival> {
    let head: Head<'_> = serde_json::from_slice(body).ok()?;
    Some(Arrival {
        at_ns,
        job: head.job.into_owned(),
        event: head.event.into_owned(),
        body: body.to_vec(),
    })
}

/// The in-process receiver: its own thread and current-thread runtime. Returns its port.
fn start_receiver(tx: mpsc::UnboundedSender<Arrival>) -> Result<u16, String> {
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("receiver".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = port_tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = port_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = port_tx.send(
                    listener
                        .local_addr()
                        .map(|a| a.port())
                        .map_err(|e| e.to_string()),
                );
                while let Ok((sock, _)) = listener.accept().await {
                    let _ = sock.set_nodelay(true);
                    tokio::spawn(serve(sock, tx.clone()));
                }
            });
        })
        .map_err(|e| e.to_string())?;
    port_rx.recv().map_err(|e| e.to_string())?
}

/// HTTP/1.1 keep-alive, `Content-Length` bodies only (what reqwest sends for a JSON POST).
async fn serve(mut sock: tokio::net::TcpStream, tx: mpsc::UnboundedSender<Arrival>) {
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // Whole head, then whole body, possibly over several reads.
        let (head_len, body_len) = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]);
                let len = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                break (end + 4, len);
            }
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        while buf.len() < head_len + body_len {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let at = now_ns();
        if let Some(a) = arrival(at, &buf[head_len..head_len + body_len]) {
            let _ = tx.send(a);
        }
        buf.drain(..head_len + body_len);
        if sock.write_all(OK).await.is_err() {
            return;
        }
    }
}

/// Follows an external receiver's log (`<epoch seconds> <json>` per line) from its
/// current end, passing on this agent's messages.
fn tail_log(
    path: PathBuf,
    agent: String,
    tx: mpsc::UnboundedSender<Arrival>,
) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.seek(std::io::SeekFrom::End(0))
        .map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("tail".into())
        .spawn(move || {
            let mut r = std::io::BufReader::new(f);
            let mut partial = String::new();
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    Ok(0) => std::thread::sleep(Duration::from_micros(500)),
                    Ok(_) if !line.ends_with('\n') => partial.push_str(&line),
                    Ok(_) => {
                        partial.push_str(&line);
                        let line = std::mem::take(&mut partial);
                        let Some((t, js)) = line.trim_end().split_once(' ') else {
                            continue;
                        };
                        let Ok(v) = serde_json::from_str::<Value>(js) else {
                            continue;
                        };
                        if v["agent"].as_str() != Some(agent.as_str()) {
                            continue;
                        }
                        let at = t.parse::<f64>().map_or(0, |s| (s * 1e9).round() as i64);
                        if let Some(a) = arrival(at, js.as_bytes())
                            && tx.send(a).is_err()
                        {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn config_text(agent: &str, state: &std::path::Path, hook: &str, storm: usize) -> String {
    let mut s = format!(
        "[agent]\nname = \"{agent}\"\nstate_dir = {state:?}\ngroup_wait = \"0s\"\n\n\
         [notifiers.hook]\ntype = \"webhook\"\nurl = \"{hook}\"\n\n\
         [defaults]\nnotify = [\"hook\"]\nalert = {{ after = 1, recover_after = 1, resolved = true }}\n\n",
        state = state.display().to_string(),
    );
    let job = |s: &mut String, name: &str| {
        s.push_str(&format!(
            "[jobs.{name}]\nevery = \"1h\"\n[jobs.{name}.check]\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = 9\n\n"
        ));
    };
    job(&mut s, "single");
    for i in 0..storm {
        job(&mut s, &format!("storm{i}"));
    }
    s
}

/// Nearest-rank percentile of sorted values (as `bench/peers/common.py` does).
fn pct(sorted: &[i64], p: f64) -> i64 {
    let k = ((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[k]
}

/// `lat_stats` of `bench/peers/common.py`, from nanoseconds.
fn stats(v: &[i64]) -> Value {
    let mut v = v.to_vec();
    v.sort_unstable();
    if v.is_empty() {
        return json!({ "count": 0 });
    }
    let ms = |ns: i64| ns as f64 / 1e6;
    json!({
        "count": v.len(),
        "p50_ms": ms(pct(&v, 50.0)),
        "p90_ms": ms(pct(&v, 90.0)),
        "p99_ms": ms(pct(&v, 99.0)),
        "max_ms": ms(v[v.len() - 1]),
        "min_ms": ms(v[0]),
        "mean_ms": v.iter().sum::<i64>() as f64 / v.len() as f64 / 1e6,
    })
}

fn outcome(severity: Severity) -> Outcome {
    let summary = if severity.is_ok() {
        "connected in 0.1 ms"
    } else {
        "cannot connect to 127.0.0.1:9: Connection refused"
    };
    Outcome::new(severity, summary, Duration::from_micros(100))
}

async fn record(rt: &Arc<Runtime>, job: &Job, severity: Severity) -> Result<usize, String> {
    let times = Times {
        started_at: Utc::now(),
        elapsed: Duration::from_micros(100),
        fire_at: None,
    };
    let tries = Tries {
        made: 1,
        allowed: 1,
    };
    runner::record(rt, &job.into(), outcome(severity), tries, times, None)
        .await
        .map(|f| f.messages.len())
        .map_err(|e| format!("record: {e:#}"))
}

/// Waits for the next `n` messages of `event`; returns each job's arrival.
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
    n: usize,
    event: &str,
) -> Result<Vec<Arrival>, String> {
    let mut got = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(a)) if a.event == event => got.push(a),
            Ok(Some(a)) => return Err(format!("unexpected {} of {}", a.event, a.job)),
            Ok(None) => return Err("receiver gone".into()),
            Err(_) => {
                return Err(format!(
                    "only {}/{n} {event} messages within 30 s",
                    got.len()
                ));
            }
        }
    }
    Ok(got)
}

#[derive(Default)]
struct Samples {
    failure: Vec<i64>,
    recovery: Vec<i64>,
    /// The last failure message, as the receiver got it.
    sample: Vec<u8>,
    /// `record` call: the trip to the store's thread, the SQLite transaction and its
    /// commit, and then whatever the worker woken by the commit runs before the caller
    /// (the delivery loop and the send it starts are woken first).
    record_call: Vec<i64>,
    /// Per storm: the first and the last arrival − t0.
    storm_first: Vec<i64>,
    storm_last: Vec<i64>,
}

async fn singles(
    rt: &Arc<Runtime>,
    job: &Job,
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
    o: &Opts,
) -> Result<Samples, String> {
    let mut s = Samples::default();
    for i in 0..o.warmup + o.singles {
        let keep = i >= o.warmup;
        tokio::time::sleep(o.gap).await;
        let t0 = now_ns();
        let n = record(rt, job, Severity::Critical).await?;
        let t1 = now_ns();
        if n != 1 {
            return Err(format!("a failure made {n} messages, not 1"));
        }
        let a = collect(rx, 1, "failure").await?;
        if keep {
            s.failure.push(a[0].at_ns - t0);
            s.record_call.push(t1 - t0);
        }
        s.sample = a.into_iter().next().map(|a| a.body).unwrap_or_default();
        tokio::time::sleep(o.gap).await;
        let t0 = now_ns();
        record(rt, job, Severity::Ok).await?;
        let a = collect(rx, 1, "recovery").await?;
        if keep {
            s.recovery.push(a[0].at_ns - t0);
        }
    }
    Ok(s)
}

async fn storms(
    rt: &Arc<Runtime>,
    jobs: &[Arc<Job>],
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
    o: &Opts,
) -> Result<Samples, String> {
    let mut s = Samples::default();
    let warm = usize::from(o.warmup > 0);
    for i in 0..warm + o.storms {
        let keep = i >= warm;
        for (severity, event) in [(Severity::Critical, "failure"), (Severity::Ok, "recovery")] {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let t0 = now_ns();
            let tasks: Vec<_> = jobs
                .iter()
                .map(|job| {
                    let (rt, job) = (rt.clone(), job.clone());
                    tokio::spawn(async move {
                        let r = record(&rt, &job, severity).await;
                        (r, now_ns())
                    })
                })
                .collect();
            let mut ends = Vec::with_capacity(tasks.len());
            for t in tasks {
                let (r, end) = t.await.map_err(|e| e.to_string())?;
                r?;
                ends.push(end - t0);
            }
            let got = collect(rx, jobs.len(), event).await?;
            if keep {
                let lat: Vec<i64> = got.iter().map(|a| a.at_ns - t0).collect();
                let last = lat.iter().copied().max().unwrap_or(0);
                let first = lat.iter().copied().min().unwrap_or(0);
                if severity.is_ok() {
                    s.recovery.extend(lat);
                } else {
                    s.failure.extend(lat);
                    s.record_call.extend(ends);
                    s.storm_last.push(last);
                    s.storm_first.push(first);
                }
            }
        }
    }
    Ok(s)
}

/// Where an alert's time goes, each part alone and in turn (the agent idle otherwise):
/// a `spawn_blocking` round trip (as `record` makes), `store.delivered` (one autocommit UPDATE: what the worker writes after each POST),
/// `store.pending` (the worker's outbox read, with nothing pending, over the history the
/// run left), and the `webhook` notifier's `send` of a real alert (keep-alive POST) with
/// its arrival.
async fn components(
    rt: &Arc<Runtime>,
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
    sample: Vec<u8>,
    n: usize,
) -> Result<Value, String> {
    let alert: klaxon_notifiers::Alert =
        serde_json::from_slice(&sample).map_err(|e| format!("alert JSON: {e}"))?;
    let hook = rt
        .notifiers
        .get("hook")
        .cloned()
        .ok_or("no notifier `hook`")?;
    let (mut delivered, mut pending, mut send, mut post_arrival, mut hop) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // The worker marks the last message delivered just after the receiver got it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !rt.store.pending().map_err(|e| e.to_string())?.is_empty() {
        if tokio::time::Instant::now() > deadline {
            return Err("messages still pending after 5 s".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for _ in 0..n {
        let t0 = now_ns();
        rt.store
            .mark(&[klaxon::store::Mark::delivered(1, Utc::now())])
            .map_err(|e| e.to_string())?;
        delivered.push(now_ns() - t0);
        let t0 = now_ns();
        tokio::task::spawn_blocking(|| ())
            .await
            .map_err(|e| e.to_string())?;
        hop.push(now_ns() - t0);
        let t0 = now_ns();
        let left = rt.store.pending().map_err(|e| e.to_string())?.len();
        pending.push(now_ns() - t0);
        if left != 0 {
            return Err(format!("{left} messages still pending"));
        }
        let t0 = now_ns();
        hook.send(&alert)
            .await
            .map_err(|e| format!("send: {e:?}"))?;
        send.push(now_ns() - t0);
        let a = collect(rx, 1, alert.event.as_str()).await?;
        post_arrival.push(a[0].at_ns - t0);
    }
    Ok(json!({
        "spawn_blocking_hop": stats(&hop),
        "store_delivered": stats(&delivered),
        "store_pending_empty": stats(&pending),
        "webhook_send": stats(&send),
        "webhook_send_to_arrival": stats(&post_arrival),
    }))
}

fn run(o: &Opts) -> Result<Value, String> {
    let agent = format!("klaxon-bench-{}", std::process::id());
    let tmp = match &o.state_dir {
        Some(d) => tempfile::Builder::new()
            .prefix("alert-bench-")
            .tempdir_in(d),
        None => {
            let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
            let _ = std::fs::create_dir_all(&base);
            tempfile::Builder::new()
                .prefix("alert-bench-")
                .tempdir_in(base)
        }
    }
    .map_err(|e| e.to_string())?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (hook, receiver) = match &o.hook {
        Some((url, log)) => {
            tail_log(log.clone(), agent.clone(), tx)?;
            (url.clone(), format!("external, {}", log.display()))
        }
        None => {
            let port = start_receiver(tx)?;
            (
                format!("http://127.0.0.1:{port}/hook"),
                "in-process".to_owned(),
            )
        }
    };
    let path = tmp.path().join("klaxon.toml");
    let state = tmp.path().join("state");
    std::fs::write(&path, config_text(&agent, &state, &hook, o.storm_size))
        .map_err(|e| e.to_string())?;
    let config = klaxon::config::load(&path, &|_: &str| None).map_err(|e| e.to_string())?;
    if let Some(log) = &o.log {
        let file = std::fs::File::create(log).map_err(|e| e.to_string())?;
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .try_init();
    }
    let jobs: Vec<Arc<Job>> = config.jobs.iter().cloned().map(Arc::new).collect();
    let single = jobs
        .iter()
        .find(|j| j.name == "single")
        .cloned()
        .ok_or("no job `single`")?;
    let storm_jobs: Vec<Arc<Job>> = jobs.into_iter().filter(|j| j.name != "single").collect();

    // As the agent's (`cli::runtime`).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (single_s, storm_s, parts) = runtime.block_on(async {
        let rt = Arc::new(
            Runtime::build(config, Mode::Live, Arc::new(SystemClock)).map_err(|e| e.to_string())?,
        );
        // As the agent does in `Mode::Live`: with its doorbell bound, a commit rings
        // nobody (without it, every commit would knock on a socket that is not there).
        rt.store
            .listen_for_others()
            .map_err(|e| format!("outbox doorbell: {e}"))?;
        let stop = CancellationToken::new();
        let worker = tokio::spawn(klaxon::delivery::worker(rt.clone(), stop.clone()));
        let measure = tokio::spawn({
            let (rt, o) = (rt.clone(), o.clone());
            async move {
                let a = singles(&rt, &single, &mut rx, &o).await?;
                let b = storms(&rt, &storm_jobs, &mut rx, &o).await?;
                let c = if o.components > 0 && o.hook.is_none() {
                    components(&rt, &mut rx, a.sample.clone(), o.components).await?
                } else {
                    Value::Null
                };
                Ok::<_, String>((a, b, c))
            }
        });
        let r = measure.await.map_err(|e| e.to_string());
        stop.cancel();
        let _ = worker.await;
        r?
    })?;
    drop(runtime);
    let db = state.join("klaxon.db");
    Ok(json!({
        "tool": "klaxon",
        "receiver": receiver,
        "state_db": db.display().to_string(),
        "durable": "SQLite WAL, synchronous=NORMAL: run + state + outbox row in one commit before the POST",
        "singles": o.singles,
        "storms": o.storms,
        "storm_size": o.storm_size,
        "single": {
            "failure": stats(&single_s.failure),
            "recovery": stats(&single_s.recovery),
            "record_call": stats(&single_s.record_call),
        },
        "storm": {
            "failure": stats(&storm_s.failure),
            "recovery": stats(&storm_s.recovery),
            "record_call": stats(&storm_s.record_call),
            "first_of_storm": stats(&storm_s.storm_first),
            "last_of_storm": stats(&storm_s.storm_last),
        },
        "components": parts,
    }))
}

fn line(name: &str, v: &Value) {
    let f = |k: &str| v[k].as_f64().map_or("n/a".into(), |x| format!("{x:.3}"));
    println!(
        "{name:<26} n={:<5} p50 {} ms  p90 {} ms  p99 {} ms  max {} ms",
        v["count"],
        f("p50_ms"),
        f("p90_ms"),
        f("p99_ms"),
        f("max_ms")
    );
}

fn main() {
    let o = match opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("alert_latency bench: {e}");
            std::process::exit(2);
        }
    };
    let r = match run(&o) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("alert_latency bench: {e}");
            std::process::exit(1);
        }
    };
    println!("receiver: {}", r["receiver"].as_str().unwrap_or("?"));
    line("single: failure", &r["single"]["failure"]);
    line("single: recovery", &r["single"]["recovery"]);
    line("single: record() call", &r["single"]["record_call"]);
    line("storm: failure (per alert)", &r["storm"]["failure"]);
    line("storm: recovery", &r["storm"]["recovery"]);
    line("storm: record() calls", &r["storm"]["record_call"]);
    line("storm: first of each storm", &r["storm"]["first_of_storm"]);
    line("storm: last of each storm", &r["storm"]["last_of_storm"]);
    if let Some(c) = r["components"].as_object() {
        for (k, v) in c {
            line(&format!("part: {k}"), v);
        }
    }
    if let Some(path) = &o.json
        && let Err(e) = std::fs::write(path, r.to_string())
    {
        eprintln!("alert_latency bench: {}: {e}", path.display());
        std::process::exit(1);
    }
}
