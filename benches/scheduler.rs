//! Scheduler benchmark: N jobs `every = "1s"`, a no-op dispatch, a measured window.
//!
//! ```text
//! cargo bench --bench scheduler                         # N = 100, 1000, 10000; 60 s each
//! cargo bench --bench scheduler -- --jobs 10000 --window 30 --jitter 1s --json out.json
//! ```
//!
//! Options (each also as an environment variable):
//!
//! | option | env | default | meaning |
//! |---|---|---|---|
//! | `--jobs N[,N…]` | `KLAXON_BENCH_JOBS` | `100,1000,10000` | job counts; several run one child process each |
//! | `--window S` | `KLAXON_BENCH_WINDOW` | `60` | measured window, whole seconds |
//! | `--warmup S` | `KLAXON_BENCH_WARMUP` | `5` | seconds after the first fire before the window |
//! | `--jitter D` | `KLAXON_BENCH_JITTER` | none | `jitter` of every job (e.g. `1s` spreads the fires over the second) |
//! | `--json PATH` | `KLAXON_BENCH_JSON` | none | also write the result as JSON (one N only) |
//! | `--measure-at W` | `KLAXON_BENCH_MEASURE_AT` | `task` | `task`: when the run's task starts; `dispatch`: when the loop hands the fire out (diagnostic: the loop's share) |
//!
//! The config is generated (tcp checks to 127.0.0.1:9, never run), loaded with
//! `klaxon::config::load`, and scheduled by `klaxon::scheduler::run_loop` on a runtime
//! built like the agent's (multi-thread, 2 workers). The dispatch does what the agent's
//! does before a check: it spawns one task per fire on a `TaskTracker`. That task is the
//! no-op check: its first action records `Utc::now() - fire.due` into a preallocated
//! buffer, so lateness is the run's actual start minus its intended fire (the nominal
//! time plus the job's jitter offset), hand-off to a worker included. With no `jitter`,
//! every job's fires fall on the same instant (all start when the agent does): the worst
//! case, a burst of N fires per second; the last fire of a burst is late by the time the
//! burst takes.
//!
//! Reported for fires whose nominal time lies in the window: p50/p99/max lateness,
//! fires expected vs dispatched (missed = expected - dispatched; skips are counted
//! separately), CPU seconds of the process during the window (getrusage RUSAGE_SELF)
//! and peak RSS (VmHWM). Not part of `cargo test`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use klaxon::config::Job;
use klaxon::runtime::{Clock, SystemClock};
use klaxon::scheduler::{Dispatch, Fire};
use nix::sys::resource::{UsageWho, getrusage};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const UNSET: i64 = i64::MIN;

struct Opts {
    jobs: Vec<usize>,
    window: u64,
    warmup: u64,
    jitter: Option<String>,
    json: Option<PathBuf>,
    at_dispatch: bool,
}

fn opts() -> Result<Opts, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut jobs = env("KLAXON_BENCH_JOBS").unwrap_or_else(|| "100,1000,10000".into());
    let mut window = env("KLAXON_BENCH_WINDOW").unwrap_or_else(|| "60".into());
    let mut warmup = env("KLAXON_BENCH_WARMUP").unwrap_or_else(|| "5".into());
    let mut jitter = env("KLAXON_BENCH_JITTER");
    let mut json = env("KLAXON_BENCH_JSON");
    let mut measure_at = env("KLAXON_BENCH_MEASURE_AT").unwrap_or_else(|| "task".into());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--jobs" => jobs = val()?,
            "--window" => window = val()?,
            "--warmup" => warmup = val()?,
            "--jitter" => jitter = Some(val()?),
            "--json" => json = Some(val()?),
            "--measure-at" => measure_at = val()?,
            // `cargo bench` passes `--bench` (and any filter): nothing to do with them.
            _ => {}
        }
    }
    let num = |s: &str, what: &str| {
        s.trim()
            .replace(['_', ','], "")
            .parse::<u64>()
            .map_err(|e| format!("{what} `{s}`: {e}"))
    };
    Ok(Opts {
        jobs: jobs
            .split(',')
            .map(|n| num(n, "--jobs").map(|n| n as usize))
            .collect::<Result<_, _>>()?,
        window: num(&window, "--window")?.max(1),
        warmup: num(&warmup, "--warmup")?,
        jitter,
        json: json.map(PathBuf::from),
        at_dispatch: match measure_at.as_str() {
            "task" => false,
            "dispatch" => true,
            other => return Err(format!("--measure-at `{other}`: expected task or dispatch")),
        },
    })
}

/// Lateness of the fires in the window, written by the runs' tasks on any worker.
struct Samples {
    /// Nominal time (ns since the epoch) of the first fire: every job starts there.
    start: AtomicI64,
    t0: AtomicI64,
    t1: AtomicI64,
    /// Preallocated; `len` counts the slots taken. No lock, no reallocation.
    lateness_ns: Vec<AtomicI64>,
    len: AtomicUsize,
    skipped: AtomicU64,
}

impl Samples {
    fn in_window(&self, nominal: DateTime<Utc>) -> bool {
        let t0 = self.t0.load(Ordering::Relaxed);
        let n = ns(nominal);
        t0 != UNSET && n >= t0 && n < self.t1.load(Ordering::Relaxed)
    }

    fn push(&self, late: i64) {
        let k = self.len.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = self.lateness_ns.get(k) {
            slot.store(late, Ordering::Relaxed);
        }
    }

    fn take(&self) -> Vec<i64> {
        let len = self.len.load(Ordering::Acquire).min(self.lateness_ns.len());
        self.lateness_ns[..len]
            .iter()
            .map(|v| v.load(Ordering::Relaxed))
            .collect()
    }
}

/// The no-op dispatch: one task per fire, as the agent's dispatch spawns one per run.
struct Recorder {
    /// Leaked: it lives as long as the process, and the tasks need no refcount for it.
    samples: &'static Samples,
    tracker: TaskTracker,
    at_dispatch: bool,
}

fn ns(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

impl Dispatch for Recorder {
    fn run(&self, _job: &Arc<Job>, fire: Fire) {
        let samples = self.samples;
        if samples.start.load(Ordering::Relaxed) == UNSET {
            samples
                .start
                .compare_exchange(
                    UNSET,
                    ns(fire.nominal),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .ok();
        }
        if self.at_dispatch {
            if samples.in_window(fire.nominal) {
                samples.push(ns(Utc::now()) - ns(fire.due));
            }
            self.tracker.spawn(async {});
            return;
        }
        self.tracker.spawn(async move {
            let started = Utc::now();
            if samples.in_window(fire.nominal) {
                samples.push(ns(started) - ns(fire.due));
            }
        });
    }

    fn skip(&self, _job: &Arc<Job>, nominal: DateTime<Utc>, _why: String) {
        if self.samples.in_window(nominal) {
            self.samples.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn config_text(n: usize, jitter: Option<&str>) -> String {
    let mut s = String::with_capacity(n * 110);
    for i in 0..n {
        let _ = write!(s, "[jobs.j{i}]\nevery = \"1s\"\n");
        if let Some(j) = jitter {
            let _ = writeln!(s, "jitter = \"{j}\"");
        }
        let _ = write!(
            s,
            "[jobs.j{i}.check]\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = 9\n"
        );
    }
    s
}

fn cpu_seconds() -> f64 {
    getrusage(UsageWho::RUSAGE_SELF).map_or(f64::NAN, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Nearest-rank percentile of sorted values (as `bench/peers/common.py` does).
fn pct(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let k = ((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[k])
}

fn ms(v: Option<i64>) -> serde_json::Value {
    v.map_or(serde_json::Value::Null, |v| {
        serde_json::json!(v as f64 / 1e6)
    })
}

fn run_one(n: usize, o: &Opts) -> Result<serde_json::Value, String> {
    let dir = std::env::temp_dir().join(format!("klaxon-bench-sched-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("klaxon.toml");
    std::fs::write(&path, config_text(n, o.jitter.as_deref())).map_err(|e| e.to_string())?;
    let config = klaxon::config::load(&path, &|_: &str| None).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    let jobs: Vec<Arc<Job>> = config.jobs.into_iter().map(Arc::new).collect();
    let rss_before = status_kib("VmRSS:");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // Room for every fire of the window plus a spare second: no reallocation.
    let samples: &'static Samples = Box::leak(Box::new(Samples {
        start: AtomicI64::new(UNSET),
        t0: AtomicI64::new(UNSET),
        t1: AtomicI64::new(UNSET),
        lateness_ns: (0..n * (o.window as usize + 2))
            .map(|_| AtomicI64::new(0))
            .collect(),
        len: AtomicUsize::new(0),
        skipped: AtomicU64::new(0),
    }));
    let recorder = Arc::new(Recorder {
        samples,
        tracker: TaskTracker::new(),
        at_dispatch: o.at_dispatch,
    });
    let (window, warmup) = (o.window as i64, o.warmup as i64);
    let jitter_tail = if o.jitter.is_some() { 1 } else { 0 };
    let (cpu, start) = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let (_reload_tx, reloads) = mpsc::channel(1);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let task = tokio::spawn(klaxon::scheduler::run_loop(
            jobs,
            HashMap::new(),
            clock,
            Duration::from_secs(15),
            recorder.clone(),
            shutdown.clone(),
            reloads,
            mpsc::unbounded_channel().1,
            mpsc::channel(1).1,
            Default::default(),
        ));
        // Every job's first fire is the loop's start (a fresh agent runs each at once).
        while samples.start.load(Ordering::Relaxed) == UNSET {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let start = samples.start.load(Ordering::Relaxed);
        let sec = 1_000_000_000i64;
        let t0 = start + warmup * sec;
        let t1 = t0 + window * sec;
        samples.t1.store(t1, Ordering::Relaxed);
        samples.t0.store(t0, Ordering::Relaxed);
        let until = |t: i64| {
            let d = t - ns(Utc::now());
            tokio::time::sleep(Duration::from_nanos(d.max(0) as u64))
        };
        until(t0).await;
        let c0 = cpu_seconds();
        until(t1).await;
        let c1 = cpu_seconds();
        // Fires of the window that are still late (and, with jitter, not yet due).
        until(t1 + jitter_tail * sec + sec / 2).await;
        shutdown.cancel();
        let _ = task.await;
        recorder.tracker.close();
        recorder.tracker.wait().await;
        (c1 - c0, start)
    });
    drop(runtime);
    let mut lat = samples.take();
    lat.sort_unstable();
    let expected = n as u64 * o.window;
    let dispatched = lat.len() as u64;
    let skipped = samples.skipped.load(Ordering::Relaxed);
    let hwm = status_kib("VmHWM:");
    Ok(serde_json::json!({
        "tool": "klaxon",
        "n": n,
        "interval_s": 1,
        "jitter": o.jitter,
        "measured_at": if o.at_dispatch { "dispatch" } else { "task start" },
        "warmup_s": o.warmup,
        "window_s": o.window,
        "start_epoch": start as f64 / 1e9,
        "expected_runs": expected,
        "executed_runs": dispatched,
        "missed_runs": expected as i64 - dispatched as i64,
        "skipped": skipped,
        "lateness": {
            "count": dispatched,
            "p50_ms": ms(pct(&lat, 50.0)),
            "p90_ms": ms(pct(&lat, 90.0)),
            "p99_ms": ms(pct(&lat, 99.0)),
            "max_ms": ms(lat.last().copied()),
            "min_ms": ms(lat.first().copied()),
        },
        "cpu_s": cpu,
        "cpu_pct": 100.0 * cpu / o.window as f64,
        "rss_before_kib": rss_before,
        "lateness_buffer_kib": (n * (o.window as usize + 2) * 8) / 1024,
        "vmhwm_kib": hwm,
    }))
}

fn print_row(r: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().map_or("n/a".into(), |v| format!("{v:.3}"));
    let l = &r["lateness"];
    println!(
        "N={:<6} jitter={:<5} late p50 {} ms  p99 {} ms  max {} ms | fires {}/{} missed {} skipped {} | CPU {:.2} s = {:.1} % of a core | peak RSS {:.1} MiB",
        r["n"],
        r["jitter"].as_str().unwrap_or("none"),
        f(&l["p50_ms"]),
        f(&l["p99_ms"]),
        f(&l["max_ms"]),
        r["executed_runs"],
        r["expected_runs"],
        r["missed_runs"],
        r["skipped"],
        r["cpu_s"].as_f64().unwrap_or(f64::NAN),
        r["cpu_pct"].as_f64().unwrap_or(f64::NAN),
        r["vmhwm_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0,
    );
}

fn main() {
    let o = match opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("scheduler bench: {e}");
            std::process::exit(2);
        }
    };
    if o.jobs.len() == 1 {
        match run_one(o.jobs[0], &o) {
            Ok(r) => {
                print_row(&r);
                if let Some(path) = &o.json
                    && let Err(e) = std::fs::write(path, r.to_string())
                {
                    eprintln!("cannot write {}: {e}", path.display());
                    std::process::exit(1);
                }
            }
            Err(e) => {
                eprintln!("scheduler bench: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    // One child per N, so each reports its own peak RSS.
    let Ok(exe) = std::env::current_exe() else {
        eprintln!("scheduler bench: cannot find its own executable");
        std::process::exit(1);
    };
    let mut failed = false;
    for n in &o.jobs {
        let mut cmd = Command::new(&exe);
        cmd.args(["--jobs", &n.to_string()])
            .args(["--window", &o.window.to_string()])
            .args(["--warmup", &o.warmup.to_string()])
            .env_remove("KLAXON_BENCH_JOBS")
            .env_remove("KLAXON_BENCH_JSON");
        if let Some(j) = &o.jitter {
            cmd.args(["--jitter", j]);
        }
        if o.at_dispatch {
            cmd.args(["--measure-at", "dispatch"]);
        }
        failed |= !cmd.status().is_ok_and(|s| s.success());
    }
    if failed {
        std::process::exit(1);
    }
}
