//! The `process` check: its config (`name` and/or `cmdline`, `user`, `min`, `max`,
//! `max_cpu`, `max_memory`), validation, and the runtime that lists processes with
//! `sysinfo`, counts those matching every criterion and sums their CPU and memory.
//!
//! CPU use is a rate: it needs two samples of a process's CPU time. Each check keeps its
//! own `sysinfo::System` and the CPU times of its last matches between runs, so the
//! previous run is the first sample and the figure is the average since then; a run that
//! has no earlier sample of a matching process (the first run, a process started since)
//! takes a second one [`CPU_SAMPLE`] after the first. The rate is computed here from
//! CPU time over wall time, not taken from sysinfo's `cpu_usage`, which reads 0% for a
//! process that had used no CPU time at its first sample.
//!
//! A run that could list processes reports the metric `count` (with `min` and `max` as
//! its critical range), and `cpu_percent` and `memory_bytes` when `max_cpu` and
//! `max_memory` had them measured.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};
use tokio::time::Instant;
use toml::Spanned;

use crate::validate::{self, ConfigIssue};
use crate::{BuildError, CheckPlugin, Metric, Outcome, Probe, Severity, Shared, text};

/// How far apart two samples of CPU time are taken when a run needs both; at least
/// sysinfo's own floor ([`sysinfo::MINIMUM_CPU_UPDATE_INTERVAL`]), and long enough for
/// the kernel's 10 ms ticks to give a rate within a few percent.
pub const CPU_SAMPLE: Duration = Duration::from_millis(250);
const _: () = assert!(CPU_SAMPLE.as_millis() >= sysinfo::MINIMUM_CPU_UPDATE_INTERVAL.as_millis());

/// Linux cuts a process's name (`comm`) to 15 bytes.
const COMM_LEN: usize = 15;

/// The `[jobs.NAME.check]` table of `type = "process"`, as written.
///
/// It keeps the table's own location, to point at it when neither `name` nor `cmdline`
/// is there.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct ProcessConfig {
    pub table: Spanned<ProcessTable>,
}

/// The keys of a `process` check table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessTable {
    /// The process name, matched exactly.
    pub name: Option<Spanned<String>>,
    /// A regex searched in the whole command line.
    pub cmdline: Option<Spanned<String>>,
    pub user: Option<Spanned<String>>,
    pub min: Option<Spanned<i64>>,
    pub max: Option<Spanned<i64>>,
    /// Percent of one core.
    pub max_cpu: Option<Spanned<f64>>,
    pub max_memory: Option<Spanned<String>>,
}

/// A validated `process` check: processes matching every given criterion are counted.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    pub name: Option<String>,
    pub cmdline: Option<regex::Regex>,
    pub user: Option<String>,
    /// At least this many must run; 1 when not set.
    pub min: u32,
    /// At most this many may run.
    pub max: Option<u32>,
    /// Percent of one core, greater than zero (may exceed 100 on several cores).
    pub max_cpu: Option<f64>,
    /// Bytes of resident memory.
    pub max_memory: Option<u64>,
}

impl ProcessSpec {
    /// `postgres`, `` cmdline `regex` ``, or both, with ` (user NAME)` when set.
    pub fn target(&self) -> String {
        let mut parts = Vec::new();
        if let Some(name) = &self.name {
            parts.push(name.clone());
        }
        if let Some(re) = &self.cmdline {
            parts.push(format!("cmdline `{}`", re.as_str()));
        }
        let mut target = parts.join(", ");
        if let Some(user) = &self.user {
            target.push_str(&format!(" (user {user})"));
        }
        target
    }
}

impl CheckPlugin for ProcessConfig {
    type Spec = ProcessSpec;
    type Runtime = ProcessCheck;

    fn build(spec: &ProcessSpec, _shared: &Shared) -> Result<ProcessCheck, BuildError> {
        Ok(ProcessCheck::new(spec.clone()))
    }

    /// Checks every value, pushing each problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<ProcessSpec> {
        let before = issues.len();
        let span = self.table.span();
        let table = self.table.into_inner();

        if table.name.is_none() && table.cmdline.is_none() {
            issues.push(ConfigIssue::new(
                span,
                "a process check needs `name` (the process name) or `cmdline` (a regex \
                 over the command line)",
            ));
        }
        let name = table.name.and_then(|n| not_empty(n, "name", issues));
        let cmdline = table
            .cmdline
            .as_ref()
            .and_then(|c| validate::regex(c, "cmdline", issues));
        let user = table.user.and_then(|u| not_empty(u, "user", issues));
        let min = table
            .min
            .as_ref()
            .map_or(Some(1), |m| count(m, "min", issues));
        let max = table.max.as_ref().and_then(|m| count(m, "max", issues));
        if let (Some(lo), Some(hi), Some(raw)) = (min, max, &table.max)
            && hi < lo
        {
            issues.push(ConfigIssue::new(
                raw.span(),
                format!("`max` ({hi}) must not be less than `min` ({lo})"),
            ));
        }
        let max_cpu = table.max_cpu.as_ref().and_then(|c| {
            let value = *c.get_ref();
            if value.is_finite() && value > 0.0 {
                Some(value)
            } else {
                issues.push(ConfigIssue::new(
                    c.span(),
                    format!("`max_cpu` must be a percentage greater than zero, found `{value}`"),
                ));
                None
            }
        });
        let max_memory = table.max_memory.as_ref().and_then(|m| {
            let bytes = validate::size(m, "max_memory", issues)?;
            if bytes == 0 {
                issues.push(ConfigIssue::new(
                    m.span(),
                    "`max_memory` must be greater than zero",
                ));
                return None;
            }
            Some(bytes)
        });

        if issues.len() > before {
            return None;
        }
        Some(ProcessSpec {
            name,
            cmdline,
            user,
            min: min?,
            max,
            max_cpu,
            max_memory,
        })
    }
}

/// A `process` check ready to run.
#[derive(Debug)]
pub struct ProcessCheck {
    spec: ProcessSpec,
    /// The process list of the previous run, for CPU rates; one run at a time uses it.
    sampler: Arc<tokio::sync::Mutex<Sampler>>,
}

/// A process list kept between runs, and the CPU time of the last matches.
struct Sampler {
    system: System,
    /// CPU time of each process that matched last run, for the next run's rates.
    cpu: HashMap<Pid, CpuSample>,
}

/// One process's CPU time at one instant.
#[derive(Clone, Copy, Debug)]
struct CpuSample {
    /// Tells a reused pid from the process that had it before.
    start_time: u64,
    /// User and system time, in milliseconds.
    cpu_ms: u64,
    at: std::time::Instant,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("processes", &self.system.processes().len())
            .field("cpu_samples", &self.cpu.len())
            .finish()
    }
}

/// What one run found: the matching processes, added up.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessUsage {
    /// How many processes match every criterion.
    pub count: u32,
    /// Their CPU use added up, in percent of one core; `None` unless `max_cpu` is set.
    pub cpu: Option<f64>,
    /// Their resident memory added up, in bytes; `None` unless `max_memory` is set.
    pub memory: Option<u64>,
}

impl ProcessCheck {
    /// Starts with an empty process list; the first run fills it.
    pub fn new(spec: ProcessSpec) -> Self {
        Self {
            spec,
            sampler: Arc::new(tokio::sync::Mutex::new(Sampler {
                system: System::new(),
                cpu: HashMap::new(),
            })),
        }
    }

    /// The validated settings this check runs with.
    pub fn spec(&self) -> &ProcessSpec {
        &self.spec
    }
}

impl Probe for ProcessCheck {
    /// Lists processes once (twice when a CPU rate needs it); `timeout` bounds it all.
    async fn run(&self, timeout: Duration) -> Outcome {
        let start = Instant::now();
        let result = tokio::time::timeout(timeout, self.measure()).await;
        let elapsed = start.elapsed();
        match result {
            Err(_) => Outcome::new(Severity::Critical, text::timed_out(timeout), elapsed),
            Ok(Err((severity, reason))) => Outcome::new(severity, reason, elapsed),
            Ok(Ok(usage)) => self.judge(usage, elapsed),
        }
    }
}

impl ProcessCheck {
    /// Counts and measures the matching processes; a severity and a reason when the
    /// processes cannot be judged (an unknown `user`).
    pub async fn measure(&self) -> Result<ProcessUsage, (Severity, String)> {
        // Held by the blocking thread, so a run that timed out still finishes its
        // refresh before the next one starts.
        let mut sampler = self.sampler.clone().lock_owned().await;
        let spec = self.spec.clone();
        crate::blocking::CHECKS
            .run(move || sample(&mut sampler, &spec))
            .await
            .map_err(|e| {
                (
                    Severity::Unknown,
                    format!("the measuring thread failed: {e}"),
                )
            })?
    }

    /// Judges what [`ProcessCheck::measure`] found against `min`, `max`, `max_cpu` and
    /// `max_memory`.
    pub fn judge(&self, usage: ProcessUsage, elapsed: Duration) -> Outcome {
        let metrics = self.metrics(usage);
        self.judged(usage, elapsed).with_metrics(metrics)
    }

    /// `count`, and `cpu_percent` and `memory_bytes` where measured, each with its
    /// limit as the critical range.
    fn metrics(&self, usage: ProcessUsage) -> Vec<Metric> {
        let spec = &self.spec;
        let mut count = Metric::new("count", f64::from(usage.count)).with_min(0.0);
        count.crit = match (spec.min, spec.max) {
            (0, None) => None,
            (min, None) => Some(format!("{min}:")),
            (min, Some(max)) => Some(format!("{min}:{max}")),
        };
        let mut metrics = vec![count];
        if let Some(cpu) = usage.cpu {
            let mut m = Metric::new("cpu_percent", cpu).with_unit("%").with_min(0.0);
            m.crit = spec.max_cpu.map(text::number);
            metrics.push(m);
        }
        if let Some(memory) = usage.memory {
            let mut m = Metric::new("memory_bytes", memory as f64)
                .with_unit("B")
                .with_min(0.0);
            m.crit = spec.max_memory.map(|b| b.to_string());
            metrics.push(m);
        }
        metrics
    }

    fn judged(&self, usage: ProcessUsage, elapsed: Duration) -> Outcome {
        let spec = &self.spec;
        let matching = self.matching();
        let counted = match usage.count {
            0 => format!("no process {matching}"),
            1 => format!("1 process {matching}"),
            n => format!("{n} processes {matching}"),
        };
        let critical = |summary: String| Outcome::new(Severity::Critical, summary, elapsed);
        if usage.count < spec.min {
            return critical(format!("{counted} (min {})", spec.min));
        }
        if let Some(max) = spec.max
            && usage.count > max
        {
            return critical(format!("{counted} (max {max})"));
        }
        let uses = if usage.count == 1 { "uses" } else { "use" };
        if let (Some(max), Some(cpu)) = (spec.max_cpu, usage.cpu)
            && cpu > max
        {
            return critical(format!(
                "{counted} {uses} {cpu:.1}% CPU (max {}%)",
                text::number(max)
            ));
        }
        if let (Some(max), Some(memory)) = (spec.max_memory, usage.memory)
            && memory > max
        {
            return critical(format!(
                "{counted} {uses} {} of memory (max {})",
                text::bytes(memory),
                text::bytes(max)
            ));
        }
        let mut measured = Vec::new();
        if let Some(cpu) = usage.cpu {
            measured.push(format!("{cpu:.1}% CPU"));
        }
        if let Some(memory) = usage.memory {
            measured.push(format!("{} of memory", text::bytes(memory)));
        }
        let summary = if measured.is_empty() {
            counted
        } else {
            format!("{counted} ({})", measured.join(", "))
        };
        Outcome::new(Severity::Ok, summary, elapsed)
    }

    /// `` matching `postgres` ``, `` matching `postgres` with cmdline `-D /x` ``, with
    /// `` owned by `pg` `` when `user` is set.
    fn matching(&self) -> String {
        let spec = &self.spec;
        let mut what = match (&spec.name, &spec.cmdline) {
            (Some(name), Some(re)) => {
                format!("matching `{name}` with cmdline `{}`", re.as_str())
            }
            (Some(name), None) => format!("matching `{name}`"),
            (None, Some(re)) => format!("matching `{}`", re.as_str()),
            // Validation requires one of them.
            (None, None) => "matching".to_owned(),
        };
        if let Some(user) = &spec.user {
            what.push_str(&format!(" owned by `{user}`"));
        }
        what
    }
}

/// Refreshes the process list (what the spec needs of it, no threads) and adds up the
/// processes that match. Blocking: reads `/proc` or asks the kernel, and may sleep
/// [`CPU_SAMPLE`].
fn sample(sampler: &mut Sampler, spec: &ProcessSpec) -> Result<ProcessUsage, (Severity, String)> {
    let uid = match &spec.user {
        None => None,
        Some(name) => match nix::unistd::User::from_name(name) {
            Ok(Some(user)) => Some(user.uid.as_raw()),
            Ok(None) => return Err((Severity::Unknown, format!("no user named `{name}`"))),
            Err(e) => {
                return Err((
                    Severity::Unknown,
                    format!("cannot look up user `{name}`: {}", e.desc()),
                ));
            }
        },
    };
    let wants_cpu = spec.max_cpu.is_some();
    let needs_cmd =
        spec.cmdline.is_some() || spec.name.as_ref().is_some_and(|n| n.len() > COMM_LEN);
    // Command lines and owners change (postgres rewrites its argv, daemons drop root
    // after starting): read them every time they are needed.
    let mut kind = ProcessRefreshKind::nothing().without_tasks();
    if needs_cmd {
        kind = kind.with_cmd(UpdateKind::Always);
    }
    if uid.is_some() {
        kind = kind.with_user(UpdateKind::Always);
    }
    if wants_cpu {
        kind = kind.with_cpu();
    }
    if spec.max_memory.is_some() {
        kind = kind.with_memory();
    }

    sampler
        .system
        .refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
    let mut at = std::time::Instant::now();
    let own = Pid::from_u32(std::process::id());
    let matched: Vec<Pid> = sampler
        .system
        .processes()
        .iter()
        .filter(|(pid, p)| **pid != own && matches(spec, uid, p))
        .map(|(pid, _)| *pid)
        .collect();

    let mut earlier = std::mem::take(&mut sampler.cpu);
    // A rate needs an earlier sample of the same process, far enough back; when one is
    // missing (the first run, a process started since, a retry right after a run), take
    // a second sample of just the matches and measure every rate over that.
    if wants_cpu {
        let processes = sampler.system.processes();
        let usable = |pid: &Pid| {
            let p = &processes[pid];
            earlier.get(pid).is_some_and(|e| {
                e.start_time == p.start_time() && at.duration_since(e.at) >= CPU_SAMPLE
            })
        };
        if !matched.iter().all(usable) {
            earlier = cpu_samples(processes, &matched, at);
            std::thread::sleep(CPU_SAMPLE);
            let cpu_only = ProcessRefreshKind::nothing().without_tasks().with_cpu();
            sampler.system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&matched),
                true,
                cpu_only,
            );
            at = std::time::Instant::now();
        }
    }

    let processes = sampler.system.processes();
    let alive: Vec<&sysinfo::Process> = matched.iter().filter_map(|p| processes.get(p)).collect();
    let cpu = wants_cpu.then(|| {
        alive
            .iter()
            .filter_map(|p| {
                let e = earlier.get(&p.pid())?;
                let wall = at.duration_since(e.at).as_secs_f64();
                let used = p.accumulated_cpu_time().saturating_sub(e.cpu_ms) as f64 / 1000.0;
                (e.start_time == p.start_time() && wall > 0.0).then(|| used * 100.0 / wall)
            })
            .sum()
    });
    if wants_cpu {
        sampler.cpu = cpu_samples(processes, &matched, at);
    }
    Ok(ProcessUsage {
        count: u32::try_from(alive.len()).unwrap_or(u32::MAX),
        cpu,
        memory: spec
            .max_memory
            .map(|_| alive.iter().map(|p| p.memory()).sum()),
    })
}

/// The CPU time of each of `pids` still in `processes`, as of `at`.
fn cpu_samples(
    processes: &HashMap<Pid, sysinfo::Process>,
    pids: &[Pid],
    at: std::time::Instant,
) -> HashMap<Pid, CpuSample> {
    pids.iter()
        .filter_map(|pid| {
            let p = processes.get(pid)?;
            let sample = CpuSample {
                start_time: p.start_time(),
                cpu_ms: p.accumulated_cpu_time(),
                at,
            };
            Some((*pid, sample))
        })
        .collect()
}

/// Whether `p` matches every criterion the spec sets.
fn matches(spec: &ProcessSpec, uid: Option<u32>, p: &sysinfo::Process) -> bool {
    if let Some(name) = &spec.name
        && !name_matches(name, p.name(), p.cmd().first().map(OsStr::new))
    {
        return false;
    }
    if let Some(uid) = uid
        && p.user_id().map(|u| **u) != Some(uid)
    {
        return false;
    }
    if let Some(re) = &spec.cmdline {
        let line = p
            .cmd()
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        if !re.is_match(&line) {
            return false;
        }
    }
    true
}

/// The name matches exactly; a name longer than Linux keeps also matches a process
/// whose cut name starts it, when its command's file name is the whole name.
fn name_matches(wanted: &str, comm: &OsStr, argv0: Option<&OsStr>) -> bool {
    if comm == wanted {
        return true;
    }
    let comm = comm.to_string_lossy();
    wanted.len() > COMM_LEN
        && comm.len() == COMM_LEN
        && wanted.starts_with(comm.as_ref())
        && argv0
            .and_then(|a| Path::new(a).file_name())
            .is_some_and(|f| f == wanted)
}

fn not_empty(value: Spanned<String>, key: &str, issues: &mut Vec<ConfigIssue>) -> Option<String> {
    if value.get_ref().trim().is_empty() {
        issues.push(ConfigIssue::new(
            value.span(),
            format!("`{key}` must not be empty"),
        ));
        return None;
    }
    Some(value.into_inner())
}

fn count(value: &Spanned<i64>, key: &str, issues: &mut Vec<ConfigIssue>) -> Option<u32> {
    let n = *value.get_ref();
    let counted = u32::try_from(n).ok();
    if counted.is_none() {
        issues.push(ConfigIssue::new(
            value.span(),
            format!("`{key}` must be a count of processes, 0 or more, found `{n}`"),
        ));
    }
    counted
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::test_support::{config, issues_of, try_config};

    fn valid(text: &str) -> ProcessSpec {
        config::<ProcessConfig>(text)
            .validate(&mut Vec::new())
            .unwrap()
    }

    #[test]
    fn full_and_minimal_configs() {
        let spec = valid(
            "name = \"postgres\"\ncmdline = \"-D /var/lib/pg\"\nuser = \"pg\"\nmin = 2\nmax = 8\nmax_cpu = 90\nmax_memory = \"2GB\"",
        );
        assert_eq!(spec.name.as_deref(), Some("postgres"));
        assert!(
            spec.cmdline
                .as_ref()
                .unwrap()
                .is_match("postgres -D /var/lib/pg")
        );
        assert_eq!((spec.min, spec.max), (2, Some(8)));
        assert_eq!(spec.max_cpu, Some(90.0));
        assert_eq!(spec.max_memory, Some(2_000_000_000));
        assert_eq!(
            spec.target(),
            "postgres, cmdline `-D /var/lib/pg` (user pg)"
        );

        let spec = valid("cmdline = \"node .*server\\\\.js\"");
        assert_eq!((spec.min, spec.max), (1, None));
        assert_eq!(spec.target(), "cmdline `node .*server\\.js`");

        let spec = valid("name = \"crond\"\nmin = 0\nmax = 0\nmax_cpu = 12.5");
        assert_eq!((spec.min, spec.max, spec.max_cpu), (0, Some(0), Some(12.5)));
    }

    #[test]
    fn invalid_values_are_located() {
        let text = "name = \"\"\ncmdline = \"[\"\nuser = \" \"\nmin = -1\nmax = 5000000000\nmax_cpu = 0.0\nmax_memory = \"2 gigs\"";
        let issues = issues_of(text, ProcessConfig::validate);
        let got: Vec<(&str, &str)> = issues
            .iter()
            .map(|i| (&text[i.span.clone()], i.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("\"\"", "`name` must not be empty"),
                (
                    "\"[\"",
                    "`cmdline`: `[` is not a valid regex: unclosed character class"
                ),
                ("\" \"", "`user` must not be empty"),
                (
                    "-1",
                    "`min` must be a count of processes, 0 or more, found `-1`"
                ),
                (
                    "5000000000",
                    "`max` must be a count of processes, 0 or more, found `5000000000`"
                ),
                (
                    "0.0",
                    "`max_cpu` must be a percentage greater than zero, found `0`"
                ),
                (
                    "\"2 gigs\"",
                    "`max_memory`: expected a size like `500MB`, `2GB` or `1GiB`, found `2 gigs`"
                ),
            ]
        );

        let text = "name = \"x\"\nmin = 3\nmax = 2";
        let issues = issues_of(text, ProcessConfig::validate);
        assert_eq!(issues.len(), 1);
        assert_eq!(
            issues[0].message,
            "`max` (2) must not be less than `min` (3)"
        );
        assert_eq!(&text[issues[0].span.clone()], "2");

        let text = "user = \"root\"";
        let issues = issues_of(text, ProcessConfig::validate);
        assert_eq!(issues.len(), 1);
        assert_eq!(
            issues[0].message,
            "a process check needs `name` (the process name) or `cmdline` (a regex over the command line)"
        );
        assert_eq!(&text[issues[0].span.clone()], text);

        let text = "name = \"x\"\nmax_memory = \"0MB\"";
        let issues = issues_of(text, ProcessConfig::validate);
        assert_eq!(issues[0].message, "`max_memory` must be greater than zero");
    }

    /// Processes the test started, killed and reaped when it ends, however it ends.
    struct Spawned(Vec<std::process::Child>);

    impl Drop for Spawned {
        fn drop(&mut self) {
            for child in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// A tag no other process on the machine has in its command line.
    fn unique() -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        format!("{:06}{n:03}", std::process::id())
    }

    /// `count` processes named `sleep` whose command line is `sleep 86400.TAG`; returns
    /// them and a regex matching exactly their command line. `spawn` returns once the
    /// child has exec'd, so its command line is already the new one.
    fn sleepers(count: usize) -> (Spawned, String) {
        let arg = format!("86400.{}", unique());
        let children = (0..count)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg(&arg)
                    .spawn()
                    .unwrap()
            })
            .collect();
        (
            Spawned(children),
            format!("^sleep {}$", regex::escape(&arg)),
        )
    }

    fn process_check(text: &str) -> ProcessCheck {
        ProcessCheck::new(valid(text))
    }

    async fn run(check: &ProcessCheck) -> (Severity, String) {
        let r = check.run(Duration::from_secs(10)).await;
        (r.severity, r.summary)
    }

    #[tokio::test]
    async fn counts_processes_by_cmdline_and_name() {
        let (mut spawned, re) = sleepers(3);
        let cfg = format!("cmdline = '{re}'");
        let found = run(&process_check(&cfg)).await;
        assert_eq!(
            found,
            (Severity::Ok, format!("3 processes matching `{re}`"))
        );
        let found = run(&process_check(&format!(
            "name = \"sleep\"\n{cfg}\nmin = 3\nmax = 3"
        )))
        .await;
        assert_eq!(
            found,
            (
                Severity::Ok,
                format!("3 processes matching `sleep` with cmdline `{re}`")
            )
        );
        // The name is matched exactly, not as a prefix or a pattern.
        let found = run(&process_check(&format!("name = \"slee\"\n{cfg}"))).await;
        assert_eq!(
            found,
            (
                Severity::Critical,
                format!("no process matching `slee` with cmdline `{re}` (min 1)")
            )
        );
        let found = run(&process_check(&format!("{cfg}\nmax = 2"))).await;
        assert_eq!(
            found,
            (
                Severity::Critical,
                format!("3 processes matching `{re}` (max 2)")
            )
        );
        let found = run(&process_check(&format!("{cfg}\nmin = 4"))).await;
        assert_eq!(
            found,
            (
                Severity::Critical,
                format!("3 processes matching `{re}` (min 4)")
            )
        );

        // Gone: the same check sees none of them.
        let check = process_check(&cfg);
        let mut one = spawned.0.remove(0);
        drop(spawned);
        assert_eq!(
            run(&check).await,
            (Severity::Ok, format!("1 process matching `{re}`"))
        );
        one.kill().unwrap();
        one.wait().unwrap();
        assert_eq!(
            run(&check).await,
            (
                Severity::Critical,
                format!("no process matching `{re}` (min 1)")
            )
        );
        // `min = 0, max = 0`: the process must not run.
        let absent = process_check(&format!("{cfg}\nmin = 0\nmax = 0"));
        assert_eq!(
            run(&absent).await,
            (Severity::Ok, format!("no process matching `{re}`"))
        );
    }

    #[tokio::test]
    async fn user_is_matched_by_uid() {
        let (_spawned, re) = sleepers(1);
        let me = nix::unistd::User::from_uid(nix::unistd::getuid())
            .unwrap()
            .unwrap()
            .name;
        let found = run(&process_check(&format!(
            "cmdline = '{re}'\nuser = \"{me}\""
        )))
        .await;
        assert_eq!(
            found,
            (
                Severity::Ok,
                format!("1 process matching `{re}` owned by `{me}`")
            )
        );
        // Someone else's: `nobody` exists on every Unix and is not who runs the tests.
        if me != "nobody" {
            let found = run(&process_check(&format!(
                "cmdline = '{re}'\nuser = \"nobody\""
            )))
            .await;
            assert_eq!(
                found,
                (
                    Severity::Critical,
                    format!("no process matching `{re}` owned by `nobody` (min 1)")
                )
            );
        }
        let found = run(&process_check(&format!(
            "cmdline = '{re}'\nuser = \"no-such-user-klaxon\""
        )))
        .await;
        assert_eq!(
            found,
            (
                Severity::Unknown,
                "no user named `no-such-user-klaxon`".to_owned()
            )
        );
    }

    #[tokio::test]
    async fn memory_is_the_sum_of_resident_sizes() {
        let (_spawned, re) = sleepers(2);
        let check = process_check(&format!("cmdline = '{re}'\nmax_memory = \"1KB\""));
        let usage = check.measure().await.unwrap();
        assert_eq!(usage.count, 2);
        // Two `sleep`s hold some hundreds of KB each, surely less than 1 GB.
        let memory = usage.memory.unwrap();
        assert!(memory > 2000 && memory < 1_000_000_000, "{memory}");
        let (severity, summary) = run(&check).await;
        assert_eq!(severity, Severity::Critical);
        let prefix = format!("2 processes matching `{re}` use ");
        assert!(
            summary.starts_with(&prefix) && summary.ends_with(" of memory (max 1.0 KB)"),
            "{summary}"
        );

        let check = process_check(&format!("cmdline = '{re}'\nmax_memory = \"1GB\""));
        let (severity, summary) = run(&check).await;
        assert_eq!(severity, Severity::Ok, "{summary}");
        assert!(
            summary.starts_with(&format!("2 processes matching `{re}` ("))
                && summary.ends_with(" of memory)"),
            "{summary}"
        );
    }

    #[tokio::test]
    async fn cpu_is_sampled_over_time() {
        let tag = format!("klaxon-busy-{}", unique());
        let busy = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("while :; do :; done; : {tag}"))
            .spawn()
            .unwrap();
        let _spawned = Spawned(vec![busy]);
        let (_idle, idle_re) = sleepers(1);

        // A busy loop takes most of a core; 5% leaves room for a loaded machine. The
        // first run samples twice; the second, once the sample interval has passed, uses
        // the first run as its first sample.
        let check = process_check(&format!("cmdline = '{tag}'\nmax_cpu = 5"));
        for _ in 0..2 {
            tokio::time::sleep(CPU_SAMPLE).await;
            let usage = check.measure().await.unwrap();
            assert_eq!(usage.count, 1);
            let cpu = usage.cpu.unwrap();
            assert!(cpu > 5.0, "{cpu}");
        }
        let (severity, summary) = run(&check).await;
        assert_eq!(severity, Severity::Critical);
        let prefix = format!("1 process matching `{tag}` uses ");
        assert!(
            summary.starts_with(&prefix) && summary.ends_with("% CPU (max 5%)"),
            "{summary}"
        );

        // A sleeping process uses none.
        let check = process_check(&format!("cmdline = '{idle_re}'\nmax_cpu = 50"));
        let (severity, summary) = run(&check).await;
        assert_eq!(
            (severity, summary),
            (
                Severity::Ok,
                format!("1 process matching `{idle_re}` (0.0% CPU)")
            )
        );
    }

    #[test]
    fn long_names_match_their_cut_form() {
        let name = "a-very-long-daemon-name";
        let comm = OsStr::new("a-very-long-dae");
        assert!(name_matches(
            name,
            comm,
            Some(OsStr::new("/usr/sbin/a-very-long-daemon-name"))
        ));
        assert!(!name_matches(
            name,
            comm,
            Some(OsStr::new("/usr/sbin/a-very-long-daemon"))
        ));
        assert!(!name_matches(name, comm, None));
        assert!(name_matches("sleep", OsStr::new("sleep"), None));
        assert!(!name_matches("sleep", OsStr::new("sleepy"), None));
    }

    #[test]
    fn judged_summaries() {
        let check =
            process_check("name = \"postgres\"\nmax = 2\nmax_cpu = 90\nmax_memory = \"2GB\"");
        let judge = |count, cpu, memory| {
            let r = check.judge(
                ProcessUsage {
                    count,
                    cpu: Some(cpu),
                    memory: Some(memory),
                },
                Duration::ZERO,
            );
            (r.severity, r.summary)
        };
        assert_eq!(
            judge(2, 12.5, 1_200_000_000),
            (
                Severity::Ok,
                "2 processes matching `postgres` (12.5% CPU, 1.2 GB of memory)".to_owned()
            )
        );
        assert_eq!(
            judge(0, 0.0, 0),
            (
                Severity::Critical,
                "no process matching `postgres` (min 1)".to_owned()
            )
        );
        assert_eq!(
            judge(5, 0.0, 0),
            (
                Severity::Critical,
                "5 processes matching `postgres` (max 2)".to_owned()
            )
        );
        assert_eq!(
            judge(1, 187.34, 0),
            (
                Severity::Critical,
                "1 process matching `postgres` uses 187.3% CPU (max 90%)".to_owned()
            )
        );
        assert_eq!(
            judge(2, 1.0, 2_500_000_000),
            (
                Severity::Critical,
                "2 processes matching `postgres` use 2.5 GB of memory (max 2.0 GB)".to_owned()
            )
        );
    }

    #[test]
    fn unknown_and_mistyped_keys_are_rejected() {
        let err = try_config::<ProcessConfig>("name = \"x\"\nmax_mem = \"1GB\"").unwrap_err();
        assert!(
            err.message().starts_with("unknown field `max_mem`"),
            "{err}"
        );
        let text = "name = \"x\"\nmin = \"one\"";
        let err = try_config::<ProcessConfig>(text).unwrap_err();
        assert_eq!(&text[err.span().unwrap()], "\"one\"");
    }

    #[test]
    fn judged_outcomes_carry_metrics_with_limits() {
        let check =
            process_check("name = \"pg\"\nmin = 2\nmax = 8\nmax_cpu = 90\nmax_memory = \"2GB\"");
        let usage = ProcessUsage {
            count: 3,
            cpu: Some(12.5),
            memory: Some(1_500_000),
        };
        let r = check.judge(usage, Duration::from_millis(7));
        assert_eq!(r.duration, Duration::from_millis(7));
        assert_eq!(
            r.metrics,
            [
                Metric::new("count", 3.0).with_min(0.0).with_crit("2:8"),
                Metric::new("cpu_percent", 12.5)
                    .with_unit("%")
                    .with_min(0.0)
                    .with_crit("90"),
                Metric::new("memory_bytes", 1_500_000.0)
                    .with_unit("B")
                    .with_min(0.0)
                    .with_crit("2000000000"),
            ]
        );
        // A failed judgement keeps them; without limits, only the count, unbounded.
        let r = check.judge(ProcessUsage { count: 1, ..usage }, Duration::ZERO);
        assert_eq!(r.severity, Severity::Critical);
        assert_eq!(r.metrics.len(), 3);
        let r = process_check("name = \"pg\"\nmin = 0").judge(
            ProcessUsage {
                count: 0,
                cpu: None,
                memory: None,
            },
            Duration::ZERO,
        );
        assert_eq!(r.metrics, [Metric::new("count", 0.0).with_min(0.0)]);
        let r = process_check("name = \"pg\"").judge(ProcessUsage::default(), Duration::ZERO);
        assert_eq!(r.metrics[0].crit.as_deref(), Some("1:"));
    }

    #[tokio::test]
    async fn every_outcome_carries_its_duration() {
        let (_spawned, re) = sleepers(1);
        // The first run with `max_cpu` samples twice, `CPU_SAMPLE` apart.
        let check = process_check(&format!("cmdline = '{re}'\nmax_cpu = 50"));
        let start = std::time::Instant::now();
        let r = check.run(Duration::from_secs(10)).await;
        let took = start.elapsed();
        assert_eq!(r.severity, Severity::Ok, "{}", r.summary);
        assert!(r.duration >= CPU_SAMPLE, "{:?}", r.duration);
        assert!(r.duration <= took, "{:?} > {took:?}", r.duration);
        let names: Vec<&str> = r.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["count", "cpu_percent"]);

        // A timeout shorter than the sample: at least the timeout.
        let fresh = process_check(&format!("cmdline = '{re}'\nmax_cpu = 50"));
        let start = std::time::Instant::now();
        let r = fresh.run(Duration::from_millis(50)).await;
        let took = start.elapsed();
        assert_eq!(r.summary, "timed out after 50ms");
        assert_eq!(r.metrics, []);
        assert!(r.duration >= Duration::from_millis(50), "{:?}", r.duration);
        assert!(r.duration <= took, "{:?} > {took:?}", r.duration);

        // An unknown user is judged without measuring, still timed.
        let start = std::time::Instant::now();
        let r = process_check("name = \"x\"\nuser = \"no-such-user-klaxon\"")
            .run(Duration::from_secs(5))
            .await;
        let took = start.elapsed();
        assert_eq!(r.severity, Severity::Unknown);
        assert!(
            r.duration > Duration::ZERO && r.duration <= took,
            "{:?}",
            r.duration
        );
    }
}
