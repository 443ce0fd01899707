//! Differential test: klaxon's cron fires against cronsim's, the reference the spec names.
//!
//! Generates random cron lines (every piece of syntax klaxon accepts, and some it must
//! reject) in zones with 1-hour, 30-minute and no DST shifts, starts them around the DST
//! transitions of 2025–2027 and at random instants, and checks that klaxon's next fires
//! equal cronsim's, and that both reject the same lines. cronsim runs in a throwaway venv
//! (`tests/cronsim/next_fires.py`), one process for all cases.
//!
//! `KLAXON_CRON_SEED` picks the cases (printed on every run), `KLAXON_CRON_CASES` how many.
//!
//! Where klaxon differs on purpose, the difference is applied here, by name:
//! - `@yearly`-style macros: cronsim has none; the case is sent as its Debian expansion.
//! - a line that parses but never fires: cronsim accepts it and yields nothing, klaxon
//!   rejects it (`never fires`) so a job cannot silently never run.
//! - fires at or before the start: cronsim computes a fixed-time job on the naive wall
//!   clock, so from a start in the second pass of a fall-back overlap it yields the first
//!   pass's instant, which is already past; `next_after` is strictly after its argument,
//!   so the helper drops those (the count is printed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use chrono::{DateTime, Duration, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use klaxon::schedule::CronSchedule;

/// The cronsim release the expectations come from; a seed reproduces a run only with it.
const CRONSIM: &str = "cronsim==2.8";
/// Zone rules for Python on machines without a system zone database (zoneinfo prefers
/// the system's).
const TZDATA: &str = "tzdata==2026.6";
const DEFAULT_SEED: u64 = 20_260_329;
const DEFAULT_CASES: usize = 3000;
const FIRES: usize = 5;

const ZONES: &[Tz] = &[
    chrono_tz::Europe::Berlin,
    chrono_tz::America::New_York,
    chrono_tz::Australia::Lord_Howe,
    chrono_tz::Asia::Kolkata,
    chrono_tz::UTC,
    chrono_tz::America::Sao_Paulo,
];

/// cronsim knows no macros; these are their meanings in Debian's crontab(5).
const MACROS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

#[test]
fn klaxon_fires_like_cronsim() {
    let seed = env_number("KLAXON_CRON_SEED", DEFAULT_SEED);
    let count = env_number("KLAXON_CRON_CASES", DEFAULT_CASES as u64) as usize;
    println!("cron differential: KLAXON_CRON_SEED={seed} KLAXON_CRON_CASES={count} ({CRONSIM})");
    let began = Instant::now();

    let venv = tempfile::tempdir().unwrap();
    let python = install_cronsim(venv.path());
    println!("venv ready in {:.1?}", began.elapsed());

    let mut generator = Generator::new(seed);
    let cases: Vec<Case> = (0..count).map(|_| generator.case()).collect();
    let answers = run_cronsim(&python, &cases);
    assert_eq!(
        answers.len(),
        cases.len(),
        "next_fires.py answered too few cases"
    );
    println!("cronsim answered in {:.1?}", began.elapsed());

    let mut shifts: Vec<DateTime<Utc>> = generator.transitions.concat();
    shifts.sort();
    let mut tally = Tally {
        shifts,
        ..Tally::default()
    };
    let mut failures = Vec::new();
    for (i, (case, answer)) in cases.iter().zip(&answers).enumerate() {
        if let Err(why) = compare(case, answer, &mut tally) {
            failures.push(format!(
                "case {i}: `{}` in {} from {}\n  {why}",
                case.expr,
                case.zone,
                case.start.to_rfc3339()
            ));
        }
    }
    println!(
        "{} cases: {} compared ({} fires, {} of them within 3 h of a DST shift in their zone), \
         {} rejected by both, {} macros, {} never fire, {} with past fires dropped; {:.1?}",
        cases.len(),
        tally.compared,
        tally.fires,
        tally.near_shift,
        tally.rejected,
        tally.macros,
        tally.never_fire,
        tally.dropped,
        began.elapsed()
    );
    // A short run (reproducing one case) is not expected to cover everything.
    if count >= 1000 {
        generator.coverage.check(count);
        assert!(
            tally.near_shift >= count / 3,
            "only {} fires fall near a DST shift; the generator should make at least {}",
            tally.near_shift,
            count / 3
        );
    }
    if !failures.is_empty() {
        let mut report = format!(
            "{} of {} cases differ from cronsim (KLAXON_CRON_SEED={seed} KLAXON_CRON_CASES={count}):\n",
            failures.len(),
            cases.len()
        );
        for f in failures.iter().take(60) {
            let _ = writeln!(report, "{f}");
        }
        if failures.len() > 60 {
            let _ = writeln!(report, "… and {} more", failures.len() - 60);
        }
        panic!("{report}");
    }
}

#[derive(Default)]
struct Tally {
    compared: usize,
    fires: usize,
    rejected: usize,
    macros: usize,
    never_fire: usize,
    dropped: usize,
    /// Fires within 3 hours of a DST shift in the case's zone, where the rules differ.
    near_shift: usize,
    /// Every zone's shifts, sorted.
    shifts: Vec<DateTime<Utc>>,
}

impl Tally {
    fn near_shift(&self, zone: Tz, t: DateTime<Utc>) -> bool {
        let window = Duration::hours(3);
        let i = self.shifts.partition_point(|s| *s < t - window);
        self.shifts[i..]
            .iter()
            .take_while(|s| **s <= t + window)
            .any(|s| offset(zone, *s - window) != offset(zone, *s + window))
    }
}

fn offset(zone: Tz, t: DateTime<Utc>) -> chrono::FixedOffset {
    zone.offset_from_utc_datetime(&t.naive_utc()).fix()
}

fn compare(case: &Case, answer: &serde_json::Value, tally: &mut Tally) -> Result<(), String> {
    if let Some(crash) = answer.get("crash") {
        return Err(format!("cronsim crashed: {crash}"));
    }
    let ours = CronSchedule::parse(&case.expr, case.zone);
    if case.cronsim_expr != case.expr {
        tally.macros += 1;
    }
    if let Some(error) = answer.get("error") {
        return match ours {
            Ok(_) => Err(format!("cronsim rejects it ({error}), klaxon accepts it")),
            Err(_) => {
                tally.rejected += 1;
                Ok(())
            }
        };
    }
    let theirs: Vec<String> = answer["fires"]
        .as_array()
        .ok_or_else(|| format!("bad answer {answer}"))?
        .iter()
        .map(|f| f.as_str().unwrap_or_default().to_owned())
        .collect();
    let exhausted = answer["exhausted"].as_bool().unwrap_or(false);
    if answer["dropped"].as_u64().unwrap_or(0) > 0 {
        tally.dropped += 1;
    }
    let schedule = match ours {
        Ok(s) => s,
        // Deliberate: klaxon refuses a line with no fire at all.
        Err(e) if e.ends_with("never fires") && theirs.is_empty() && exhausted => {
            tally.never_fire += 1;
            return Ok(());
        }
        Err(e) => return Err(format!("klaxon rejects it ({e}), cronsim accepts it")),
    };
    let mut fires = Vec::new();
    let mut t = case.start;
    for _ in 0..FIRES {
        match schedule.next_after(t) {
            Some(f) => {
                if tally.near_shift(case.zone, f) {
                    tally.near_shift += 1;
                }
                fires.push(f.with_timezone(&case.zone).to_rfc3339());
                t = f;
            }
            None => break,
        }
    }
    // cronsim gives up after 50 years without a fire; klaxon's `None` must be at the same
    // place, and where cronsim did not give up, klaxon must have found all the fires.
    let want_len = if exhausted { theirs.len() } else { FIRES };
    if fires != theirs || fires.len() != want_len {
        return Err(format!(
            "klaxon {fires:?}\n  cronsim {theirs:?}{}",
            if exhausted { " (then no more)" } else { "" }
        ));
    }
    tally.compared += 1;
    tally.fires += fires.len();
    Ok(())
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}=`{v}` is not a number")),
        Err(_) => default,
    }
}

/// Creates a venv under `dir` and installs cronsim from PyPI; returns its python.
fn install_cronsim(dir: &Path) -> PathBuf {
    let venv = dir.join("venv");
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run `python3 -m venv` (this test needs python3 with venv): {e}")
        });
    assert!(
        status.success(),
        "`python3 -m venv {}` failed ({status}); this test needs python3 with the venv module",
        venv.display()
    );
    let python = if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    };
    let out = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            CRONSIM,
            TZDATA,
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run pip in {}: {e}", venv.display()));
    assert!(
        out.status.success(),
        "`pip install {CRONSIM} {TZDATA}` failed ({}); this test needs network access to PyPI\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    python
}

/// Runs every case through one `next_fires.py` process; one JSON answer per case.
fn run_cronsim(python: &Path, cases: &[Case]) -> Vec<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cronsim/next_fires.py");
    let mut child = Command::new(python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let mut input = String::new();
    for case in cases {
        let line = serde_json::json!({
            "expr": case.cronsim_expr,
            "zone": case.zone.name(),
            "start": case.start.to_rfc3339(),
            "n": FIRES,
        });
        let _ = writeln!(input, "{line}");
    }
    // Written from another thread so a full stdout pipe cannot stall both sides.
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let answers: Vec<serde_json::Value> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    writer.join().unwrap().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "next_fires.py failed: {status}");
    answers
}

struct Case {
    /// What klaxon parses.
    expr: String,
    /// What cronsim parses: `expr`, or a macro's expansion.
    cronsim_expr: String,
    zone: Tz,
    start: DateTime<Utc>,
}

/// Which syntax the generated lines used, so a change to the generator cannot quietly
/// stop covering a feature.
#[derive(Default)]
struct Coverage {
    seconds: usize,
    macros: usize,
    names: usize,
    ranges: usize,
    steps: usize,
    lists: usize,
    last_day: usize,
    last_weekday: usize,
    last_dow: usize,
    nth_dow: usize,
    invalid: usize,
    near_dst: usize,
}

impl Coverage {
    fn check(&self, cases: usize) {
        let want = cases / 100;
        for (name, seen) in [
            ("6-field lines", self.seconds),
            ("macros", self.macros),
            ("names", self.names),
            ("ranges", self.ranges),
            ("steps", self.steps),
            ("lists", self.lists),
            ("`L` day-of-month", self.last_day),
            ("`LW`", self.last_weekday),
            ("`nL` day-of-week", self.last_dow),
            ("`#`", self.nth_dow),
            ("invalid pieces", self.invalid),
            ("starts near a DST transition", self.near_dst),
        ] {
            assert!(
                seen >= want,
                "only {seen} of {cases} cases have {name}; the generator should make at least {want}"
            );
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Field {
    Second,
    Minute,
    Hour,
    Day,
    Month,
    Weekday,
}

impl Field {
    fn range(self) -> (u32, u32) {
        match self {
            Field::Second | Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::Day => (1, 31),
            Field::Month => (1, 12),
            Field::Weekday => (0, 7),
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Field::Month => &[
                "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
            ],
            Field::Weekday => &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
            _ => &[],
        }
    }
}

struct Generator {
    rng: fastrand::Rng,
    /// DST transitions of 2025–2027 in each zone of `ZONES` (none for zones without DST).
    transitions: Vec<Vec<DateTime<Utc>>>,
    coverage: Coverage,
}

impl Generator {
    fn new(seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            transitions: ZONES.iter().map(|z| transitions(*z)).collect(),
            coverage: Coverage::default(),
        }
    }

    fn case(&mut self) -> Case {
        // The first three zones shift their clocks; they get most of the cases.
        let zone_index = if self.rng.u8(..10) < 7 {
            self.rng.usize(..3)
        } else {
            self.rng.usize(3..ZONES.len())
        };
        let zone = ZONES[zone_index];
        let start = self.start(zone_index);
        let (expr, cronsim_expr) = self.expr();
        Case {
            expr,
            cronsim_expr,
            zone,
            start,
        }
    }

    /// Mostly within a day or so of a DST transition, else anywhere in 2025–2027; whole
    /// seconds, minutes or quarter hours, now and then with milliseconds.
    fn start(&mut self, zone_index: usize) -> DateTime<Utc> {
        let near = &self.transitions[zone_index];
        let base = if !near.is_empty() && self.rng.u8(..100) < 75 {
            self.coverage.near_dst += 1;
            let t = near[self.rng.usize(..near.len())];
            let spread = if self.rng.bool() {
                -4 * 3600..=3600
            } else {
                -30 * 3600..=26 * 3600
            };
            t + Duration::seconds(self.rng.i64(spread))
        } else {
            let from = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
            from + Duration::seconds(self.rng.i64(0..3 * 365 * 86_400))
        };
        let secs = base.timestamp();
        let secs = match self.rng.u8(..10) {
            0..=3 => secs,
            4..=6 => secs - secs.rem_euclid(60),
            _ => secs - secs.rem_euclid(900),
        };
        let nanos = if self.rng.u8(..20) == 0 {
            self.rng.u32(1..1000) * 1_000_000
        } else {
            0
        };
        DateTime::from_timestamp(secs, nanos).unwrap()
    }

    fn expr(&mut self) -> (String, String) {
        let roll = self.rng.u8(..100);
        if roll < 5 {
            self.coverage.macros += 1;
            let (name, fields) = MACROS[self.rng.usize(..MACROS.len())];
            let name = if self.rng.bool() {
                name.to_owned()
            } else {
                name.to_uppercase()
            };
            return (name, fields.to_owned());
        }
        if roll < 7 {
            self.coverage.invalid += 1;
            let bad = [
                "* * * *",
                "0 0 * * * * *",
                "@reboot",
                "@every 5m",
                "",
                "0 0 1 1 * 2026",
            ];
            let e = bad[self.rng.usize(..bad.len())].to_owned();
            return (e.clone(), e);
        }
        let seconds = roll < 27;
        // Most lines are daily-ish with DST-prone hours, so they fire near the start
        // and meet the transitions; the rest use any day, month and weekday.
        let dst_prone = self.rng.u8(..10) < 6;
        let mut fields = Vec::new();
        if seconds {
            self.coverage.seconds += 1;
            fields.push(self.field(Field::Second));
        }
        fields.push(self.field(Field::Minute));
        fields.push(if dst_prone {
            self.dst_hour()
        } else {
            self.field(Field::Hour)
        });
        if dst_prone && self.rng.u8(..4) != 0 {
            fields.push("*".to_owned());
            fields.push("*".to_owned());
            fields.push(if self.rng.bool() {
                "*".to_owned()
            } else {
                self.field(Field::Weekday)
            });
        } else {
            fields.push(self.field(Field::Day));
            fields.push(self.field(Field::Month));
            fields.push(self.field(Field::Weekday));
        }
        let sep = if self.rng.u8(..20) == 0 { "\t " } else { " " };
        let mut e = fields.join(sep);
        if self.rng.u8(..10) == 0 {
            e = e.to_lowercase();
        }
        if self.rng.u8(..20) == 0 {
            e = format!("  {e} ");
        }
        (e.clone(), e)
    }

    /// An hour field around where zones shift their clocks (01:00–03:00 local).
    fn dst_hour(&mut self) -> String {
        let choices = [
            "2", "1", "3", "0", "1-3", "2-4", "*", "*/2", "1/2", "2,3", "1,2", "0-23", "*/3", "23",
        ];
        let h = choices[self.rng.usize(..choices.len())];
        self.note_term(h);
        h.to_owned()
    }

    fn field(&mut self, field: Field) -> String {
        let roll = self.rng.u8(..100);
        if roll < 25 {
            return "*".to_owned();
        }
        if roll < 35 {
            self.coverage.lists += 1;
            let n = self.rng.usize(2..=4);
            return (0..n)
                .map(|_| self.term(field))
                .collect::<Vec<_>>()
                .join(",");
        }
        self.term(field)
    }

    fn term(&mut self, field: Field) -> String {
        let (lo, hi) = field.range();
        let roll = self.rng.u8(..100);
        let t = match roll {
            0..=29 => self.value(field),
            30..=39 => format!("*/{}", self.step(field)),
            40..=51 => {
                let a = self.rng.u32(lo..=hi);
                let b = self.rng.u32(a..=hi);
                format!("{}-{}", self.spell(field, a), self.spell(field, b))
            }
            52..=59 => {
                let a = self.rng.u32(lo..=hi);
                let b = self.rng.u32(a..=hi);
                format!(
                    "{}-{}/{}",
                    self.spell(field, a),
                    self.spell(field, b),
                    self.step(field)
                )
            }
            60..=66 => format!("{}/{}", self.value(field), self.step(field)),
            67..=84 => match field {
                Field::Day => ["L", "LW", "L", "LW", "L/2", "LW/3"][self.rng.usize(..6)].to_owned(),
                Field::Weekday if self.rng.bool() => format!("{}L", self.rng.u32(0..=7)),
                Field::Weekday => {
                    let d = self.rng.u32(0..=7);
                    format!("{}#{}", self.spell(field, d), self.rng.u32(1..=5))
                }
                _ => self.value(field),
            },
            85..=96 => self.value(field),
            _ => {
                // Pieces cron rejects, or that croner accepts and cron does not.
                let bad = match field {
                    Field::Day => vec!["15W", "W", "LW-3", "L-2", "?", "0", "32", "1-", "5-3"],
                    Field::Weekday => {
                        vec!["L", "FRIL", "5#6", "5#0", "?", "8", "1-7L", "SUN-SAT#2"]
                    }
                    Field::Month => vec!["0", "13", "JANUARY", "?", "12-1"],
                    Field::Hour => vec!["24", "-1", "*/0", "2-1", "H"],
                    _ => vec!["60", "*/0", "a", "5--6", "59-0"],
                };
                self.coverage.invalid += 1;
                bad[self.rng.usize(..bad.len())].to_owned()
            }
        };
        self.note_term(&t);
        t
    }

    fn note_term(&mut self, t: &str) {
        if t.contains('-') {
            self.coverage.ranges += 1;
        }
        if t.contains('/') {
            self.coverage.steps += 1;
        }
        if t.contains('#') {
            self.coverage.nth_dow += 1;
        }
        if t.starts_with("LW") {
            self.coverage.last_weekday += 1;
        } else if t.starts_with('L') {
            self.coverage.last_day += 1;
        }
        if t.len() == 2 && t.ends_with('L') && t.as_bytes()[0].is_ascii_digit() {
            self.coverage.last_dow += 1;
        }
        if t.bytes()
            .any(|b| b.is_ascii_uppercase() && b != b'L' && b != b'W')
        {
            self.coverage.names += 1;
        }
    }

    /// A value, biased towards the ones DST and month ends make interesting.
    fn value(&mut self, field: Field) -> String {
        let (lo, hi) = field.range();
        let v = match (field, self.rng.u8(..3)) {
            (Field::Minute | Field::Second, 0) => [0, 15, 30, 45, 59][self.rng.usize(..5)],
            (Field::Day, 0) => [28, 29, 30, 31, 1][self.rng.usize(..5)],
            (Field::Month, 0) => [2, 3, 10, 11, 4][self.rng.usize(..5)],
            _ => self.rng.u32(lo..=hi),
        };
        self.spell(field, v)
    }

    /// `v` as a number, or as a name where the field has names, now and then.
    fn spell(&mut self, field: Field, v: u32) -> String {
        let names = field.names();
        let index = match field {
            Field::Month => v as usize - 1,
            _ => v as usize,
        };
        if index < names.len() && self.rng.u8(..3) == 0 {
            names[index].to_owned()
        } else if self.rng.u8(..30) == 0 {
            format!("0{v}")
        } else {
            v.to_string()
        }
    }

    fn step(&mut self, field: Field) -> u32 {
        let (_, hi) = field.range();
        match self.rng.u8(..10) {
            0 => self.rng.u32(hi..hi + 10),
            _ => self.rng.u32(1..=hi.min(15)),
        }
    }
}

/// The instants in 2025–2027 where `zone`'s UTC offset changes.
fn transitions(zone: Tz) -> Vec<DateTime<Utc>> {
    let offset = |t| offset(zone, t);
    let mut found = Vec::new();
    let mut t = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let end = Utc.with_ymd_and_hms(2028, 1, 1, 0, 0, 0).unwrap();
    while t < end {
        let next = t + Duration::hours(1);
        if offset(t) != offset(next) {
            // Bisect to the second.
            let (mut lo, mut hi) = (t, next);
            while hi - lo > Duration::seconds(1) {
                let mid = lo + (hi - lo) / 2;
                if offset(mid) == offset(lo) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            found.push(hi);
        }
        t = next;
    }
    found
}
