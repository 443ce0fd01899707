//! Check throughput: how many *validated* checks per second klaxon's check runtime
//! completes against one local server (a benchmark, not a test; `cargo test` never runs
//! it). By default an `http` check (bench/http_checks.sh); `--type` and `--table` give
//! any other check, as its `[jobs.NAME.check]` table would (bench/checks.sh: `dns`).
//!
//! K tasks on a multi-thread tokio runtime each loop `Check::run` on their own check
//! (as K jobs would), all sharing one `Shared` client like the agent does. The default
//! `http` check parses the status (`expect_status = [200]`) and the body
//! (`body_contains`); only outcomes of severity `ok` that finish inside the measurement
//! window are counted.
//!
//!     cargo bench -p klaxon-checks --bench check_throughput -- \
//!         --url http://127.0.0.1:18080/ --concurrency 64 --duration 10 --warmup 2
//!     cargo bench -p klaxon-checks --bench check_throughput -- --type dns \
//!         --table 'name = "a.test"
//!     server = "127.0.0.1:5353"
//!     expect = ["10.0.0.1"]' --concurrency 1 --duration 10
//!
//! Every flag also reads an environment variable (`KLAXON_BENCH_URL`,
//! `KLAXON_BENCH_CONCURRENCY`, `KLAXON_BENCH_DURATION`, `KLAXON_BENCH_WARMUP`,
//! `KLAXON_BENCH_THREADS`, `KLAXON_BENCH_BODY`, `KLAXON_BENCH_TYPE`,
//! `KLAXON_BENCH_TABLE`, `KLAXON_BENCH_JSON`, `KLAXON_BENCH_WATCH_PIDS`); flags win. `--watch-pids 12,13` also reports the CPU those
//! processes (the server) used in the window, and the whole machine's busy CPU, so the
//! split between klaxon, the server and anything else running is known.
//! Prints a human summary and one `RESULT {json}` line; `--json PATH` also writes it.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use klaxon_checks::{Check, CheckSpec, Shared};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Bounds one check; a check this slow on loopback is an error, not a data point.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

struct Opts {
    url: String,
    concurrency: usize,
    duration: f64,
    warmup: f64,
    /// Runtime worker threads; 0 = tokio's default (one per core).
    threads: usize,
    body_contains: String,
    /// The check's `type`; `http` unless given.
    kind: String,
    /// The check's table as TOML; unless given, the `http` check of `url`.
    table: Option<String>,
    json: Option<String>,
    watch_pids: Vec<u32>,
}

fn parse_opts() -> Result<Opts, String> {
    let env = |k: &str| std::env::var(k).ok();
    let mut url = env("KLAXON_BENCH_URL");
    let mut concurrency = env("KLAXON_BENCH_CONCURRENCY");
    let mut duration = env("KLAXON_BENCH_DURATION");
    let mut warmup = env("KLAXON_BENCH_WARMUP");
    let mut threads = env("KLAXON_BENCH_THREADS");
    let mut body = env("KLAXON_BENCH_BODY");
    let mut kind = env("KLAXON_BENCH_TYPE");
    let mut table = env("KLAXON_BENCH_TABLE");
    let mut json = env("KLAXON_BENCH_JSON");
    let mut watch = env("KLAXON_BENCH_WATCH_PIDS");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let slot = match arg.as_str() {
            "--url" => &mut url,
            "--concurrency" | "-c" => &mut concurrency,
            "--duration" | "-d" => &mut duration,
            "--warmup" => &mut warmup,
            "--threads" => &mut threads,
            "--body-contains" => &mut body,
            "--type" => &mut kind,
            "--table" => &mut table,
            "--json" => &mut json,
            "--watch-pids" => &mut watch,
            // `cargo bench` passes `--bench` to every harness-less bench.
            "--bench" => continue,
            other => return Err(format!("unknown argument `{other}`")),
        };
        *slot = Some(args.next().ok_or(format!("`{arg}` needs a value"))?);
    }
    fn num<T: std::str::FromStr>(v: Option<String>, default: T, name: &str) -> Result<T, String> {
        v.map_or(Ok(default), |s| {
            s.parse()
                .map_err(|_| format!("`{name}`: `{s}` is not a number"))
        })
    }
    Ok(Opts {
        url: url.unwrap_or_else(|| "http://127.0.0.1:18080/".to_owned()),
        concurrency: num(concurrency, 64, "concurrency")?.max(1),
        duration: num(duration, 10.0, "duration")?,
        warmup: num(warmup, 2.0, "warmup")?,
        threads: num(threads, 0, "threads")?,
        body_contains: body.unwrap_or_else(|| "ok".to_owned()),
        kind: kind.unwrap_or_else(|| "http".to_owned()),
        table,
        json,
        watch_pids: watch
            .unwrap_or_default()
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| p.trim().parse().map_err(|_| format!("`watch-pids`: `{p}`")))
            .collect::<Result<_, _>>()?,
    })
}

/// Builds the check exactly as a config file would: the TOML table goes through
/// `CheckSpec::parse` over a spanned value (deserialized, then validated), then
/// `Check::build`. Returns the check and its target (what it checks, as messages name it).
fn build_check(opts: &Opts, shared: &Shared) -> Result<(Check, String), String> {
    let text = opts.table.clone().unwrap_or_else(|| {
        format!(
            "url = {:?}\nexpect_status = [200]\nbody_contains = {:?}\n",
            opts.url, opts.body_contains
        )
    });
    let table = DeTable::parse(&text).map_err(|e| e.to_string())?;
    let value = Spanned::new(0..text.len(), DeValue::Table(table.into_inner()));
    let spec = CheckSpec::parse(&opts.kind, value).map_err(|e| format!("invalid check: {e}"))?;
    let check = Check::build(&spec, shared).map_err(|e| e.to_string())?;
    Ok((check, spec.target()))
}

/// Linux reports CPU times in USER_HZ ticks, which is 100 on every Linux ABI.
const TICKS_PER_S: f64 = 100.0;

/// A process's CPU time (user + system, all threads) from `/proc/PID/stat`, in seconds.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may contain spaces: state is field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_S)
}

/// The machine's busy CPU time (all cores, everything but idle and iowait) from
/// `/proc/stat`, in seconds.
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let busy: u64 = ticks.iter().sum::<u64>() - ticks.get(3)? - ticks.get(4)?;
    Some(busy as f64 / TICKS_PER_S)
}

/// CPU seconds of this process, of the watched processes together, and of the machine.
fn cpu_snapshot(watch: &[u32]) -> (Option<f64>, Option<f64>, Option<f64>) {
    let watched = watch
        .iter()
        .map(|p| cpu_seconds(&p.to_string()))
        .sum::<Option<f64>>();
    (cpu_seconds("self"), watched, machine_busy_seconds())
}

#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    /// Latency of each validated check in the window, in microseconds.
    latencies_us: Vec<u32>,
    /// The first non-ok summary seen, to say what went wrong.
    first_error: Option<String>,
}

async fn worker(check: Arc<Check>, t0: Instant, t1: Instant) -> Tally {
    let mut tally = Tally::default();
    loop {
        let start = Instant::now();
        if start >= t1 {
            return tally;
        }
        let outcome = check.run(CHECK_TIMEOUT).await;
        let end = Instant::now();
        if end < t0 || end >= t1 {
            continue;
        }
        if outcome.severity.is_ok() {
            tally.ok += 1;
            let us = (end - start).as_micros();
            tally
                .latencies_us
                .push(u32::try_from(us).unwrap_or(u32::MAX));
        } else {
            tally.errors += 1;
            if tally.first_error.is_none() {
                tally.first_error = Some(outcome.summary);
            }
        }
    }
}

/// Nearest-rank percentile of a sorted slice, in milliseconds.
fn pct_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

async fn measure(opts: &Opts) -> Result<serde_json::Value, String> {
    let shared = Shared::new().map_err(|e| e.to_string())?;
    // One check per task, as K jobs would have, sharing the client and its pool.
    let target = build_check(opts, &shared)?.1;
    let checks = (0..opts.concurrency)
        .map(|_| build_check(opts, &shared).map(|(c, _)| Arc::new(c)))
        .collect::<Result<Vec<_>, _>>()?;

    // Fail fast and clearly when the server is not there or does not validate.
    let probe = checks[0].run(CHECK_TIMEOUT).await;
    if !probe.severity.is_ok() {
        return Err(format!(
            "the {} check does not pass against {}: {}",
            opts.kind, target, probe.summary
        ));
    }

    let begin = Instant::now();
    let t0 = begin + Duration::from_secs_f64(opts.warmup);
    let t1 = t0 + Duration::from_secs_f64(opts.duration);
    let tasks: Vec<_> = checks
        .into_iter()
        .map(|c| tokio::spawn(worker(c, t0, t1)))
        .collect();

    tokio::time::sleep_until(t0.into()).await;
    let cpu0 = cpu_snapshot(&opts.watch_pids);
    let w0 = Instant::now();
    tokio::time::sleep_until(t1.into()).await;
    let cpu1 = cpu_snapshot(&opts.watch_pids);
    let window = w0.elapsed().as_secs_f64();

    let mut total = Tally::default();
    for task in tasks {
        let t = task.await.map_err(|e| format!("a worker failed: {e}"))?;
        total.ok += t.ok;
        total.errors += t.errors;
        total.latencies_us.extend(t.latencies_us);
        total.first_error = total.first_error.or(t.first_error);
    }
    total.latencies_us.sort_unstable();
    let delta = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
    let cpu = delta(cpu0.0, cpu1.0);
    let watched = delta(cpu0.1, cpu1.1).filter(|_| !opts.watch_pids.is_empty());
    let busy = delta(cpu0.2, cpu1.2);
    // Busy CPU of everything else on the machine: other builds, the kernel's own work.
    let other = busy.and_then(|b| Some(b - cpu? - watched.unwrap_or(0.0)));
    let pct = |v: Option<f64>| v.map(|c| 100.0 * c / window);
    let rate = total.ok as f64 / window;
    Ok(serde_json::json!({
        "type": opts.kind,
        "target": target,
        "concurrency": opts.concurrency,
        "threads": opts.threads,
        "window_s": window,
        "validated": total.ok,
        "errors": total.errors,
        "first_error": total.first_error,
        "checks_per_s": rate,
        "p50_ms": pct_ms(&total.latencies_us, 50.0),
        "p99_ms": pct_ms(&total.latencies_us, 99.0),
        "cpu_s": cpu,
        "cpu_pct": pct(cpu),
        "cpu_us_per_check": cpu.map(|c| 1e6 * c / total.ok.max(1) as f64),
        "watched_pids": opts.watch_pids,
        "watched_cpu_s": watched,
        "watched_cpu_pct": pct(watched),
        "watched_us_per_check": watched.map(|c| 1e6 * c / total.ok.max(1) as f64),
        "machine_busy_pct": pct(busy),
        "other_cpu_pct": pct(other),
    }))
}

fn main() -> ExitCode {
    let opts = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("check_throughput: {e}");
            return ExitCode::from(2);
        }
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if opts.threads > 0 {
        rt.worker_threads(opts.threads);
    }
    let result = rt
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(measure(&opts)));
    let r = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("check_throughput: {e}");
            return ExitCode::FAILURE;
        }
    };
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "klaxon {} checks: {:.0} validated/s (c={}, {:.1} s window), p50 {:.2} ms, \
         p99 {:.2} ms, CPU {:.2} s ({:.0} %, {:.1} us/check), errors {}",
        opts.kind,
        f("checks_per_s"),
        opts.concurrency,
        f("window_s"),
        f("p50_ms"),
        f("p99_ms"),
        f("cpu_s"),
        f("cpu_pct"),
        f("cpu_us_per_check"),
        r["errors"],
    );
    if !opts.watch_pids.is_empty() {
        println!(
            "  watched pids CPU {:.0} % ({:.1} us/check); machine busy {:.0} %, other {:.0} %",
            f("watched_cpu_pct"),
            f("watched_us_per_check"),
            f("machine_busy_pct"),
            f("other_cpu_pct"),
        );
    }
    if let Some(e) = r["first_error"].as_str() {
        println!("first error: {e}");
    }
    println!("RESULT {r}");
    if let Some(path) = &opts.json
        && let Err(e) = std::fs::write(path, format!("{r}\n"))
    {
        eprintln!("check_throughput: writing {path}: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
