//! When a job fires: a cron line in an IANA zone, a fixed interval, or one instant.
//!
//! Cron follows Debian cron as cronsim (the engine behind Healthchecks) implements it,
//! down to its quirks, so that the spec can point at one reference and a differential
//! test (`tests/cron_differential.rs`) can hold klaxon to it. The evaluation below is a
//! port of cronsim 2.8's `CronSim`: croner, which this module used to wrap, differs in
//! syntax (it takes `?`, `15W`, Quartz-style `L` and rejects `5/15`), in the
//! day-of-month/day-of-week rule (cron ANDs them when either field starts with `*`, not
//! only when it is `*`) and around DST, and each difference would have needed its own
//! patch on top of croner's search. What klaxon adds to cronsim: `@hourly`-style macros,
//! rejecting a line that never fires, and `next_after` is strictly after its argument.
//!
//! The cron evaluation is derived from cronsim 2.8, Copyright (c) 2021, Pēteris Caune,
//! under the BSD 3-Clause license: see `LICENSES/cronsim-BSD-3-Clause.txt`.

use std::fmt;
use std::time::Duration;

use chrono::offset::LocalResult;
use chrono::{
    DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta,
    TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

/// A parsed cron line bound to the zone its fields are read in.
#[derive(Clone)]
pub struct CronSchedule {
    expr: String,
    spec: Spec,
    tz: Tz,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?} in {})", self.expr, self.tz)
    }
}

const MACROS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

impl CronSchedule {
    /// Parses `expr` for zone `tz`. The error says what is wrong, without location.
    pub fn parse(expr: &str, tz: Tz) -> Result<Self, String> {
        let trimmed = expr.trim();
        let fields = if trimmed.starts_with('@') {
            MACROS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(trimmed))
                .map(|(_, fields)| *fields)
                .ok_or_else(|| {
                    let names: Vec<_> = MACROS.iter().map(|(n, _)| format!("`{n}`")).collect();
                    format!(
                        "`{trimmed}` is not a cron macro; klaxon knows {}",
                        names.join(", ")
                    )
                })?
        } else {
            trimmed
        };
        let spec = Spec::parse(fields).map_err(|e| match e {
            SpecError::FieldCount(count) => format!(
                "`{trimmed}` has {count} fields; cron takes 5 (minute hour day-of-month month day-of-week) or 6 with seconds first"
            ),
            SpecError::Field { field, term } => {
                let hint = hint(field, &term);
                format!("`{trimmed}` is not a valid cron expression: bad {field} `{term}`{hint}")
            }
            SpecError::NoSuchDay => format!("`{trimmed}` never fires"),
        })?;
        let schedule = Self {
            expr: trimmed.to_owned(),
            spec,
            tz,
        };
        // A line like `0 0 */40 2 5#5` parses but never fires (cronsim accepts it and
        // yields nothing); say so now rather than leave a job that silently never runs.
        let probe = DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default(); // 2026-01-01
        if schedule.next_after(probe).is_none() {
            return Err(format!("`{trimmed}` never fires"));
        }
        Ok(schedule)
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The first fire strictly after `t`, or `None` if there is none within 50 years.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut walk = Walk::new(&self.spec, self.tz, t);
        // A fixed-time line is walked on the naive wall clock, so from a start in the
        // second pass of a fall-back overlap cronsim yields the first pass's instants,
        // which are already past. They are skipped: a fixed-time job fires once, in the
        // first pass. The bound only guards against a bug looping forever.
        for _ in 0..100_000 {
            let fire = walk.next()?;
            if fire > t {
                return Some(fire);
            }
        }
        None
    }
}

/// A hint for syntax other cron dialects accept and Debian's does not.
fn hint(field: &str, term: &str) -> &'static str {
    if term.contains('?') {
        "; cron has no `?`, use `*`"
    } else if field == "day-of-month" && term.contains('W') {
        "; `W` is accepted only as `LW`, the last weekday of the month"
    } else if field == "day-of-week" && term.contains('L') {
        "; `L` in day-of-week takes a day number, like `5L` for the last Friday"
    } else {
        ""
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Second,
    Minute,
    Hour,
    Day,
    Month,
    Weekday,
}

const SYMBOLIC_DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const SYMBOLIC_MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
/// Days in each month (index 1–12), February in a leap year.
const DAYS_IN_MONTH: [u32; 13] = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Second => "second",
            Kind::Minute => "minute",
            Kind::Hour => "hour",
            Kind::Day => "day-of-month",
            Kind::Month => "month",
            Kind::Weekday => "day-of-week",
        }
    }

    /// The values a field takes; day-of-week 7 is Sunday, like 0.
    fn range(self) -> (u32, u32) {
        match self {
            Kind::Second | Kind::Minute => (0, 59),
            Kind::Hour => (0, 23),
            Kind::Day => (1, 31),
            Kind::Month => (1, 12),
            Kind::Weekday => (0, 7),
        }
    }
}

/// One item of a parsed field, as cronsim's `Field.parse` returns them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Item {
    Value(u32),
    /// Day-of-month `L`.
    Last,
    /// Day-of-month `LW`.
    LastWeekday,
    /// Day-of-week `5L`: the last such weekday of the month.
    LastOf(u32),
    /// Day-of-week `5#2`: the nth such weekday of the month.
    Nth(u32, u32),
}

struct BadTerm;

/// cronsim's `Field.parse`, branch for branch (the order of the checks decides what a
/// term like `5-5/2` or `L/3` means).
fn parse_field(kind: Kind, s: &str, out: &mut Vec<Item>) -> Result<(), BadTerm> {
    let (lo, hi) = kind.range();
    if s == "*" {
        out.extend((lo..=hi).map(Item::Value));
        return Ok(());
    }
    if s.contains(',') {
        for term in s.split(',') {
            parse_field(kind, term, out)?;
        }
        return Ok(());
    }
    if kind == Kind::Weekday && s.contains('L') {
        // Everything but the last character, which must then be the `L`.
        let value = s.char_indices().last().map_or("", |(i, _)| &s[..i]);
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadTerm);
        }
        out.push(Item::LastOf(int(kind, value)?));
        return Ok(());
    }
    if kind == Kind::Weekday
        && let Some((term, nth)) = s.split_once('#')
    {
        let nth = digits(nth)?;
        if !(1..=5).contains(&nth) {
            return Err(BadTerm);
        }
        out.push(Item::Nth(int(kind, term)?, nth as u32));
        return Ok(());
    }
    if let Some((term, step)) = s.split_once('/') {
        let step = digits(step)?;
        if step == 0 {
            return Err(BadTerm);
        }
        let mut items = Vec::new();
        parse_field(kind, term, &mut items)?;
        items.sort();
        items.dedup();
        let step = usize::try_from(step).unwrap_or(usize::MAX);
        match items.as_slice() {
            [Item::Last | Item::LastWeekday] => out.extend(items),
            // One start value steps through to the end of the range, even `5-5/2`.
            [Item::Value(start)] => out.extend((*start..=hi).step_by(step).map(Item::Value)),
            _ => out.extend(items.into_iter().step_by(step)),
        }
        return Ok(());
    }
    if let Some((start, end)) = s.split_once('-') {
        let (start, end) = (int(kind, start)?, int(kind, end)?);
        if end < start {
            return Err(BadTerm);
        }
        out.extend((start..=end).map(Item::Value));
        return Ok(());
    }
    if kind == Kind::Day && s == "LW" {
        out.push(Item::LastWeekday);
        return Ok(());
    }
    if kind == Kind::Day && s == "L" {
        out.push(Item::Last);
        return Ok(());
    }
    out.push(Item::Value(int(kind, s)?));
    Ok(())
}

/// A value of the field: a number in range, or a month or weekday name.
fn int(kind: Kind, s: &str) -> Result<u32, BadTerm> {
    if kind == Kind::Month
        && let Some(i) = SYMBOLIC_MONTHS.iter().position(|n| *n == s)
    {
        return Ok(i as u32 + 1);
    }
    if kind == Kind::Weekday
        && let Some(i) = SYMBOLIC_DAYS.iter().position(|n| *n == s)
    {
        return Ok(i as u32);
    }
    let v = digits(s)?;
    let (lo, hi) = kind.range();
    u32::try_from(v)
        .ok()
        .filter(|v| (lo..=hi).contains(v))
        .ok_or(BadTerm)
}

/// A non-empty run of ASCII digits; a number too large for `u64` is out of every range.
fn digits(s: &str) -> Result<u64, BadTerm> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BadTerm);
    }
    Ok(s.parse().unwrap_or(u64::MAX))
}

enum SpecError {
    FieldCount(usize),
    Field {
        field: &'static str,
        term: String,
    },
    /// Day-of-month and day-of-week are ANDed and no chosen month has the day.
    NoSuchDay,
}

/// The fields of a cron line as sets, and how the line treats DST.
#[derive(Debug, Clone)]
struct Spec {
    seconds: u64,
    minutes: u64,
    hours: u32,
    /// Bits 1–31.
    days: u32,
    last_day: bool,
    last_weekday: bool,
    /// Bits 1–12.
    months: u16,
    /// Bits 0–6, Sunday 0.
    weekdays: u8,
    /// Weekdays whose last occurrence in the month matches (`5L`), bits 0–6.
    last_of: u8,
    /// Per weekday, which occurrences in the month match (`5#2`), bits 1–5.
    nth: [u8; 7],
    /// Debian cron ANDs day-of-month and day-of-week when either starts with `*`.
    day_and: bool,
    /// A 5-field line whose minute and hour do not start with `*` runs on the local wall
    /// clock: once in a fall-back overlap, at the end of a spring-forward gap.
    wall_clock: bool,
}

impl Spec {
    fn parse(expr: &str) -> Result<Self, SpecError> {
        let upper = expr.to_uppercase();
        let mut parts: Vec<&str> = upper.split_whitespace().collect();
        let count = parts.len();
        if count == 5 {
            parts.insert(0, "0");
        }
        if parts.len() != 6 {
            return Err(SpecError::FieldCount(count));
        }
        let kinds = [
            Kind::Second,
            Kind::Minute,
            Kind::Hour,
            Kind::Day,
            Kind::Month,
            Kind::Weekday,
        ];
        let mut items: [Vec<Item>; 6] = Default::default();
        for ((kind, part), out) in kinds.iter().zip(&parts).zip(&mut items) {
            parse_field(*kind, part, out).map_err(|BadTerm| SpecError::Field {
                field: kind.name(),
                term: (*part).to_owned(),
            })?;
        }
        let day_and = parts[3].starts_with('*') || parts[5].starts_with('*');
        let wall_clock = count == 5 && !parts[1].starts_with('*') && !parts[2].starts_with('*');
        let bits = |items: &[Item]| {
            items.iter().fold(0u64, |acc, i| match i {
                Item::Value(v) => acc | 1 << v,
                _ => acc,
            })
        };
        let mut spec = Spec {
            seconds: bits(&items[0]),
            minutes: bits(&items[1]),
            hours: bits(&items[2]) as u32,
            days: bits(&items[3]) as u32,
            last_day: items[3].contains(&Item::Last),
            last_weekday: items[3].contains(&Item::LastWeekday),
            months: bits(&items[4]) as u16,
            weekdays: 0,
            last_of: 0,
            nth: [0; 7],
            day_and,
            wall_clock,
        };
        for item in &items[5] {
            match *item {
                Item::Value(d) => spec.weekdays |= 1 << (d % 7),
                Item::LastOf(d) => spec.last_of |= 1 << (d % 7),
                Item::Nth(d, n) => spec.nth[(d % 7) as usize] |= 1 << n,
                Item::Last | Item::LastWeekday => {}
            }
        }
        // cronsim rejects an ANDed day no chosen month has (`0 0 30 2 *`).
        if day_and && !spec.last_day && !spec.last_weekday {
            let first_day = spec.days.trailing_zeros();
            let longest = (1..=12)
                .filter(|m| spec.months & (1 << m) != 0)
                .map(|m| DAYS_IN_MONTH[m])
                .max()
                .unwrap_or(0);
            if first_day > 29 && first_day > longest {
                return Err(SpecError::NoSuchDay);
            }
        }
        Ok(spec)
    }

    fn match_dom(&self, d: NaiveDate) -> bool {
        let day = d.day();
        if self.days & (1 << day) != 0 {
            return true;
        }
        if self.last_weekday && day >= 26 && day == last_weekday(d) {
            return true;
        }
        self.last_day && day >= 28 && day == days_in_month(d)
    }

    fn match_dow(&self, d: NaiveDate) -> bool {
        let dow = d.weekday().num_days_from_sunday();
        if self.weekdays & (1 << dow) != 0 {
            return true;
        }
        if self.last_of & (1 << dow) != 0 && d.day() + 7 > days_in_month(d) {
            return true;
        }
        let nth = d.day().div_ceil(7);
        self.nth[dow as usize] & (1 << nth) != 0
    }

    fn match_day(&self, d: NaiveDate) -> bool {
        if self.day_and {
            self.match_dom(d) && self.match_dow(d)
        } else {
            self.match_dom(d) || self.match_dow(d)
        }
    }
}

fn days_in_month(d: NaiveDate) -> u32 {
    let first = d.with_day(1).unwrap_or(d);
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(first);
    (next - first).num_days() as u32
}

/// The date of the last Monday–Friday of `d`'s month.
fn last_weekday(d: NaiveDate) -> u32 {
    let last = days_in_month(d);
    match d.with_day(last).map(|l| l.weekday()) {
        Some(chrono::Weekday::Sun) => last - 2,
        Some(chrono::Weekday::Sat) => last - 1,
        _ => last,
    }
}

/// cronsim's iterator state: a wall-clock time, read in the zone (with PEP 495's `fold`
/// to pick an occurrence) or, for a wall-clock line, naive until a fire is found.
struct Walk<'a> {
    spec: &'a Spec,
    tz: Tz,
    wall: NaiveDateTime,
    fold: bool,
}

impl<'a> Walk<'a> {
    fn new(spec: &'a Spec, tz: Tz, start: DateTime<Utc>) -> Self {
        let start = start.naive_utc();
        let start = start.with_nanosecond(0).unwrap_or(start);
        let (wall, fold) = from_utc(tz, start);
        Self {
            spec,
            tz,
            wall,
            fold: fold && !spec.wall_clock,
        }
    }

    /// cronsim's `__next__`: one second on, then forward to the next match.
    fn next(&mut self) -> Option<DateTime<Utc>> {
        self.tick(1);
        self.advance()?;
        if self.spec.wall_clock {
            // A time in a spring-forward gap moves to the first real minute after it;
            // one in a fall-back overlap is read in its first pass.
            while matches!(
                self.tz.offset_from_local_datetime(&self.wall),
                LocalResult::None
            ) {
                self.wall += TimeDelta::minutes(1);
            }
            return Some(to_utc(self.tz, self.wall, false).and_utc());
        }
        Some(to_utc(self.tz, self.wall, self.fold).and_utc())
    }

    /// Moves by `seconds` of real time (or of wall clock, for a wall-clock line).
    fn tick(&mut self, seconds: i64) {
        let step = TimeDelta::seconds(seconds);
        if self.spec.wall_clock {
            self.wall += step;
        } else {
            (self.wall, self.fold) =
                from_utc(self.tz, to_utc(self.tz, self.wall, self.fold) + step);
        }
    }

    fn set_wall(&mut self, wall: Option<NaiveDateTime>) {
        if let Some(wall) = wall {
            self.wall = wall;
        }
    }

    /// Midnight of `date`, first occurrence (cronsim's `datetime.combine`).
    fn set_midnight(&mut self, date: NaiveDate) {
        self.wall = date.and_time(NaiveTime::MIN);
        self.fold = false;
    }

    fn advance(&mut self) -> Option<()> {
        let start_year = self.wall.year();
        loop {
            self.advance_month();
            // Give up after 50 years without a match, as cronsim does.
            if self.wall.year() > start_year + 50 {
                return None;
            }
            if self.advance_day()
                || self.advance_hour()
                || self.advance_minute()
                || self.advance_second()
            {
                continue;
            }
            return Some(());
        }
    }

    fn advance_second(&mut self) -> bool {
        let seconds = self.spec.seconds;
        if seconds & (1 << self.wall.second()) != 0 {
            return false;
        }
        if seconds.count_ones() == 1 {
            let target = i64::from(seconds.trailing_zeros());
            self.tick((target - i64::from(self.wall.second())).rem_euclid(60));
        }
        while seconds & (1 << self.wall.second()) == 0 {
            self.tick(1);
            if self.wall.second() == 0 {
                break;
            }
        }
        true
    }

    fn advance_minute(&mut self) -> bool {
        let minutes = self.spec.minutes;
        if minutes & (1 << self.wall.minute()) != 0 {
            return false;
        }
        self.set_wall(self.wall.with_second(0));
        if minutes.count_ones() == 1 {
            let target = i64::from(minutes.trailing_zeros());
            self.tick((target - i64::from(self.wall.minute())).rem_euclid(60) * 60);
        }
        while minutes & (1 << self.wall.minute()) == 0 {
            self.tick(60);
            if self.wall.minute() == 0 {
                break;
            }
        }
        true
    }

    fn advance_hour(&mut self) -> bool {
        let hours = self.spec.hours;
        if hours & (1 << self.wall.hour()) != 0 {
            return false;
        }
        self.set_wall(self.wall.with_minute(0).and_then(|w| w.with_second(0)));
        while hours & (1 << self.wall.hour()) == 0 {
            self.tick(3600);
            if self.wall.hour() == 0 {
                break;
            }
        }
        true
    }

    fn advance_day(&mut self) -> bool {
        let mut needle = self.wall.date();
        if self.spec.match_day(needle) {
            return false;
        }
        while !self.spec.match_day(needle) {
            needle = needle.succ_opt().unwrap_or(needle);
            if needle.day() == 1 {
                // A new month: back to the loop to check it.
                break;
            }
        }
        self.set_midnight(needle);
        true
    }

    fn advance_month(&mut self) {
        if self.spec.months & (1 << self.wall.month()) != 0 {
            return;
        }
        let mut needle = self.wall.date();
        while self.spec.months & (1 << needle.month()) == 0 {
            let first = needle.with_day(1).unwrap_or(needle);
            needle = first
                .checked_add_months(chrono::Months::new(1))
                .unwrap_or(first);
        }
        self.set_midnight(needle);
    }
}

/// The UTC time of wall-clock `wall` in `tz`, as Python's zoneinfo reads it: in a
/// fall-back overlap `fold` picks the second pass; in a spring-forward gap, where no
/// such time exists, `fold` false reads it with the offset from before the shift and
/// true with the one after (PEP 495).
fn to_utc(tz: Tz, wall: NaiveDateTime, fold: bool) -> NaiveDateTime {
    match tz.offset_from_local_datetime(&wall) {
        LocalResult::Single(o) => wall - o.fix(),
        LocalResult::Ambiguous(a, b) => {
            let (a, b) = (wall - a.fix(), wall - b.fix());
            if fold { a.max(b) } else { a.min(b) }
        }
        LocalResult::None => {
            // Shifts are months apart, so a day either side is on each side of this one.
            let day = TimeDelta::days(1);
            let before = tz.offset_from_utc_datetime(&(wall - day)).fix();
            let after = tz.offset_from_utc_datetime(&(wall + day)).fix();
            wall - if fold { after } else { before }
        }
    }
}

/// Wall-clock time and fold of UTC time `utc` in `tz`.
fn from_utc(tz: Tz, utc: NaiveDateTime) -> (NaiveDateTime, bool) {
    let wall = utc + tz.offset_from_utc_datetime(&utc).fix();
    let fold = match tz.offset_from_local_datetime(&wall) {
        LocalResult::Ambiguous(a, b) => utc == (wall - a.fix()).max(wall - b.fix()),
        _ => false,
    };
    (wall, fold)
}

/// What makes a job fire.
#[derive(Debug, Clone)]
pub enum Trigger {
    Cron(Box<CronSchedule>),
    Every(Duration),
    At(DateTime<FixedOffset>),
}

impl Trigger {
    /// The first fire strictly after `t` (for `every`, one interval after `t`).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Trigger::Cron(c) => c.next_after(t),
            Trigger::Every(d) => chrono::Duration::from_std(*d).ok().map(|d| t + d),
            Trigger::At(at) => {
                let at = at.with_timezone(&Utc);
                (at > t).then_some(at)
            }
        }
    }

    /// How `jobs` shows it: the cron line, `every 30s`, or `at <RFC 3339>`.
    pub fn describe(&self) -> String {
        match self {
            Trigger::Cron(c) => c.expr().to_owned(),
            Trigger::Every(d) => format!("every {}", humantime::format_duration(*d)),
            Trigger::At(at) => format!("at {}", at.to_rfc3339()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn fires(expr: &str, tz: Tz, from: &str, n: usize) -> Vec<String> {
        let s = CronSchedule::parse(expr, tz).unwrap();
        let mut t = utc(from);
        (0..n)
            .map(|_| {
                t = s.next_after(t).unwrap();
                t.with_timezone(&tz).to_rfc3339()
            })
            .collect()
    }

    #[test]
    fn berlin_spring_forward_moves_into_the_first_instant_after_the_gap() {
        assert_eq!(
            fires(
                "30 2 * * *",
                chrono_tz::Europe::Berlin,
                "2026-03-28T12:00:00+01:00",
                3
            ),
            [
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00",
                "2026-03-31T02:30:00+02:00"
            ]
        );
    }

    #[test]
    fn berlin_fall_back_fires_a_fixed_time_job_once() {
        assert_eq!(
            fires(
                "30 2 * * *",
                chrono_tz::Europe::Berlin,
                "2026-10-24T12:00:00+02:00",
                2
            ),
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
        );
    }

    #[test]
    fn berlin_fall_back_fires_a_wildcard_job_on_each_real_occurrence() {
        assert_eq!(
            fires(
                "30 * * * *",
                chrono_tz::Europe::Berlin,
                "2026-10-25T01:00:00+02:00",
                3
            ),
            [
                "2026-10-25T01:30:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:30:00+01:00"
            ]
        );
    }

    #[test]
    fn macros_seconds_and_or_rule() {
        let tz = chrono_tz::UTC;
        assert_eq!(
            fires("@hourly", tz, "2026-01-01T00:10:00Z", 2),
            ["2026-01-01T01:00:00+00:00", "2026-01-01T02:00:00+00:00"]
        );
        assert_eq!(
            fires("*/20 * * * * *", tz, "2026-01-01T00:00:00Z", 2),
            ["2026-01-01T00:00:20+00:00", "2026-01-01T00:00:40+00:00"]
        );
        // Day 13 OR Friday: 2026-02-06 is a Friday, 2026-02-13 both.
        assert_eq!(
            fires("0 0 13 * FRI", tz, "2026-02-01T00:00:00Z", 3),
            [
                "2026-02-06T00:00:00+00:00",
                "2026-02-13T00:00:00+00:00",
                "2026-02-20T00:00:00+00:00"
            ]
        );
    }

    #[test]
    fn rejects_what_cron_rejects() {
        let tz = chrono_tz::UTC;
        for (expr, want) in [
            ("* * * *", "`* * * *` has 4 fields; cron takes 5"),
            ("0 0 * * * * 2026", "has 7 fields"),
            ("@reboot", "`@reboot` is not a cron macro"),
            (
                "61 * * * *",
                "`61 * * * *` is not a valid cron expression: bad minute `61`",
            ),
            ("0 0 30 2 *", "`0 0 30 2 *` never fires"),
            ("*/0 * * * *", "bad minute `*/0`"),
            ("0 5-3 * * *", "bad hour `5-3`"),
            ("0 0 * * 5#6", "bad day-of-week `5#6`"),
        ] {
            let err = CronSchedule::parse(expr, tz).unwrap_err();
            assert!(err.contains(want), "{expr}: {err}");
        }
    }

    // The tests below pin each difference the differential test found between croner
    // (which this module wrapped before) and cronsim; expectations are cronsim 2.8's.

    #[test]
    fn croner_difference_rejects_syntax_other_crons_accept() {
        let tz = chrono_tz::UTC;
        for (expr, want) in [
            (
                "0 0 ? * *",
                "bad day-of-month `?`; cron has no `?`, use `*`",
            ),
            ("0 0 * * ?", "bad day-of-week `?`; cron has no `?`"),
            (
                "0 0 15W * *",
                "bad day-of-month `15W`; `W` is accepted only as `LW`",
            ),
            (
                "0 0 * * L",
                "bad day-of-week `L`; `L` in day-of-week takes a day number",
            ),
            ("0 0 * * FRIL", "bad day-of-week `FRIL`"),
            ("0 0 * * SUN-SAT#2", "bad day-of-week `SUN-SAT#2`"),
            // Day 31 ANDed with weekdays (the weekday field starts with `*`) in June.
            ("0 0 31 6 */5", "`0 0 31 6 */5` never fires"),
        ] {
            let err = CronSchedule::parse(expr, tz).unwrap_err();
            assert!(err.contains(want), "{expr}: {err}");
        }
    }

    #[test]
    fn croner_difference_a_single_start_steps_to_the_end_of_the_range() {
        let tz = chrono_tz::UTC;
        // croner rejects `5/20`; cron reads it as `5-59/20`.
        assert_eq!(
            fires("5/20 * * * *", tz, "2026-01-01T00:00:00Z", 4),
            [
                "2026-01-01T00:05:00+00:00",
                "2026-01-01T00:25:00+00:00",
                "2026-01-01T00:45:00+00:00",
                "2026-01-01T01:05:00+00:00"
            ]
        );
        // A range of one value with a step steps on to the end as well (cronsim).
        assert_eq!(
            fires("10-10/20 * * * *", tz, "2026-01-01T00:00:00Z", 3),
            [
                "2026-01-01T00:10:00+00:00",
                "2026-01-01T00:30:00+00:00",
                "2026-01-01T00:50:00+00:00"
            ]
        );
    }

    #[test]
    fn croner_difference_day_fields_are_anded_when_either_starts_with_a_star() {
        let tz = chrono_tz::UTC;
        // `*/10` starts with `*`: day 1, 11, 21 or 31 that is a Monday (croner ORs).
        assert_eq!(
            fires("0 0 */10 * 1", tz, "2026-01-01T00:00:00Z", 3),
            [
                "2026-05-11T00:00:00+00:00",
                "2026-06-01T00:00:00+00:00",
                "2026-08-31T00:00:00+00:00"
            ]
        );
        // The same days spelled out: day 1, 11, 21 or 31, or any Monday.
        assert_eq!(
            fires("0 0 1,11,21,31 * 1", tz, "2026-01-01T00:00:00Z", 3),
            [
                "2026-01-05T00:00:00+00:00",
                "2026-01-11T00:00:00+00:00",
                "2026-01-12T00:00:00+00:00"
            ]
        );
    }

    #[test]
    fn croner_difference_a_weekday_step_counts_7_as_sunday() {
        // `1/3` is 1, 4, 7: Monday, Thursday and Sunday.
        assert_eq!(
            fires("0 0 * * 1/3", chrono_tz::UTC, "2026-01-01T00:00:00Z", 4),
            [
                "2026-01-04T00:00:00+00:00",
                "2026-01-05T00:00:00+00:00",
                "2026-01-08T00:00:00+00:00",
                "2026-01-11T00:00:00+00:00"
            ]
        );
    }

    #[test]
    fn last_days_and_nth_weekdays() {
        let tz = chrono_tz::UTC;
        let from = "2026-01-01T00:00:00Z";
        assert_eq!(
            fires("0 0 L * *", tz, from, 3),
            [
                "2026-01-31T00:00:00+00:00",
                "2026-02-28T00:00:00+00:00",
                "2026-03-31T00:00:00+00:00"
            ]
        );
        assert_eq!(
            fires("0 0 LW * *", tz, from, 3),
            [
                "2026-01-30T00:00:00+00:00",
                "2026-02-27T00:00:00+00:00",
                "2026-03-31T00:00:00+00:00"
            ]
        );
        assert_eq!(
            fires("0 0 * * 5L", tz, from, 3),
            [
                "2026-01-30T00:00:00+00:00",
                "2026-02-27T00:00:00+00:00",
                "2026-03-27T00:00:00+00:00"
            ]
        );
        assert_eq!(
            fires("0 0 * jan-mar mon#2", tz, from, 3),
            [
                "2026-01-12T00:00:00+00:00",
                "2026-02-09T00:00:00+00:00",
                "2026-03-09T00:00:00+00:00"
            ]
        );
    }

    #[test]
    fn croner_difference_a_fixed_line_with_a_minute_step_fires_once_in_the_overlap() {
        // Neither minute nor hour starts with `*`, so the line is on the wall clock even
        // with a step: the first pass only (croner fired the second pass too).
        assert_eq!(
            fires(
                "15-33/9 1 * * *",
                chrono_tz::America::New_York,
                "2025-11-01T20:00:00Z",
                5
            ),
            [
                "2025-11-02T01:15:00-04:00",
                "2025-11-02T01:24:00-04:00",
                "2025-11-02T01:33:00-04:00",
                "2025-11-03T01:15:00-05:00",
                "2025-11-03T01:24:00-05:00"
            ]
        );
    }

    #[test]
    fn croner_difference_lord_howe_spring_forward_moves_into_the_half_hour_gap_end() {
        // 02:00 jumps to 02:30; croner skipped the 02:00 and 02:15 fires that day.
        let tz = chrono_tz::Australia::Lord_Howe;
        assert_eq!(
            fires("0 1,2 * * *", tz, "2027-10-01T11:00:00Z", 5),
            [
                "2027-10-02T01:00:00+10:30",
                "2027-10-02T02:00:00+10:30",
                "2027-10-03T01:00:00+10:30",
                "2027-10-03T02:30:00+11:00",
                "2027-10-04T01:00:00+11:00"
            ]
        );
        assert_eq!(
            fires("15 2 * * *", tz, "2025-10-04T12:00:00+10:30", 2),
            ["2025-10-05T02:30:00+11:00", "2025-10-06T02:15:00+11:00"]
        );
    }

    #[test]
    fn lord_howe_fall_back_fires_fixed_once_and_wildcards_on_each_occurrence() {
        // 02:00 (+11:00) goes back to 01:30 (+10:30).
        let tz = chrono_tz::Australia::Lord_Howe;
        assert_eq!(
            fires("30 1 * * *", tz, "2026-04-04T12:00:00+11:00", 2),
            ["2026-04-05T01:30:00+11:00", "2026-04-06T01:30:00+10:30"]
        );
        assert_eq!(
            fires("*/20 1 * * *", tz, "2026-04-05T00:30:00+11:00", 5),
            [
                "2026-04-05T01:00:00+11:00",
                "2026-04-05T01:20:00+11:00",
                "2026-04-05T01:40:00+11:00",
                "2026-04-05T01:40:00+10:30",
                "2026-04-06T01:00:00+10:30"
            ]
        );
        assert_eq!(
            fires("*/15 * * * *", tz, "2026-04-05T01:10:00+11:00", 6),
            [
                "2026-04-05T01:15:00+11:00",
                "2026-04-05T01:30:00+11:00",
                "2026-04-05T01:45:00+11:00",
                "2026-04-05T01:30:00+10:30",
                "2026-04-05T01:45:00+10:30",
                "2026-04-05T02:00:00+10:30"
            ]
        );
    }

    #[test]
    fn lord_howe_fall_back_skips_what_cronsim_skips() {
        // cronsim steps whole hours from 01:00 (+11:00) and lands on 01:30 (+10:30), then
        // 02:30: 02:00–02:29 (+10:30) are real but do not fire. klaxon keeps the quirk so
        // that it stays identical to the reference.
        assert_eq!(
            fires(
                "* 2 * * *",
                chrono_tz::Australia::Lord_Howe,
                "2026-04-05T01:45:00+11:00",
                2
            ),
            ["2026-04-05T02:30:00+10:30", "2026-04-05T02:31:00+10:30"]
        );
    }

    #[test]
    fn new_york_spring_forward_and_fall_back() {
        let tz = chrono_tz::America::New_York;
        assert_eq!(
            fires("30 2 * * *", tz, "2026-03-07T12:00:00-05:00", 3),
            [
                "2026-03-08T03:00:00-04:00",
                "2026-03-09T02:30:00-04:00",
                "2026-03-10T02:30:00-04:00"
            ]
        );
        assert_eq!(
            fires("30 1 * * *", tz, "2025-11-01T12:00:00-04:00", 2),
            ["2025-11-02T01:30:00-04:00", "2025-11-03T01:30:00-05:00"]
        );
        assert_eq!(
            fires("*/30 1 * * *", tz, "2025-11-02T04:00:00Z", 5),
            [
                "2025-11-02T01:00:00-04:00",
                "2025-11-02T01:30:00-04:00",
                "2025-11-02T01:00:00-05:00",
                "2025-11-02T01:30:00-05:00",
                "2025-11-03T01:00:00-05:00"
            ]
        );
    }

    #[test]
    fn zones_without_dst_fire_at_the_same_wall_time_every_day() {
        // Kolkata over Berlin's spring-forward night; São Paulo over the first Sunday of
        // November, where it shifted until 2019.
        assert_eq!(
            fires(
                "30 2 * * *",
                chrono_tz::Asia::Kolkata,
                "2026-03-28T12:00:00+05:30",
                3
            ),
            [
                "2026-03-29T02:30:00+05:30",
                "2026-03-30T02:30:00+05:30",
                "2026-03-31T02:30:00+05:30"
            ]
        );
        assert_eq!(
            fires(
                "0 0 * * *",
                chrono_tz::America::Sao_Paulo,
                "2026-10-31T12:00:00-03:00",
                3
            ),
            [
                "2026-11-01T00:00:00-03:00",
                "2026-11-02T00:00:00-03:00",
                "2026-11-03T00:00:00-03:00"
            ]
        );
    }

    #[test]
    fn six_field_lines_follow_real_time_across_dst() {
        // cronsim keeps Debian's wall-clock handling to 5-field lines: with seconds, 02:30
        // does not exist on the spring-forward night and exists twice on the fall-back one.
        let tz = chrono_tz::Europe::Berlin;
        assert_eq!(
            fires("0 30 2 * * *", tz, "2026-03-28T12:00:00+01:00", 2),
            ["2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"]
        );
        assert_eq!(
            fires("0 30 2 * * *", tz, "2026-10-24T12:00:00+02:00", 3),
            [
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:30:00+01:00",
                "2026-10-26T02:30:00+01:00"
            ]
        );
    }

    #[test]
    fn cronsim_difference_next_after_is_strictly_after_from_the_second_pass() {
        // From 02:30 in the second pass, cronsim's next `45 2 * * *` is 02:45 in the
        // first pass, 45 minutes ago; the job fired then, so the next is tomorrow.
        assert_eq!(
            fires(
                "45 2 * * *",
                chrono_tz::Europe::Berlin,
                "2026-10-25T02:30:00+01:00",
                2
            ),
            ["2026-10-26T02:45:00+01:00", "2026-10-27T02:45:00+01:00"]
        );
    }

    #[test]
    fn cronsim_difference_a_line_that_never_fires_is_rejected() {
        // Day 1 AND the fifth Friday: cronsim accepts it and yields nothing.
        let err = CronSchedule::parse("0 0 */40 2 5#5", chrono_tz::UTC).unwrap_err();
        assert_eq!(err, "`0 0 */40 2 5#5` never fires");
    }

    #[test]
    fn sub_second_starts_and_odd_spellings() {
        let tz = chrono_tz::UTC;
        assert_eq!(
            fires("0 0 1 * 5-7/2", tz, "2026-01-01T00:00:00.5Z", 3),
            [
                "2026-01-02T00:00:00+00:00",
                "2026-01-04T00:00:00+00:00",
                "2026-01-09T00:00:00+00:00"
            ]
        );
        assert_eq!(
            fires("\t*/30  00\t* * *  ", tz, "2026-01-01T00:00:00Z", 1),
            ["2026-01-01T00:30:00+00:00"]
        );
        assert_eq!(
            fires("@DAILY", tz, "2026-01-01T00:00:00Z", 1),
            ["2026-01-02T00:00:00+00:00"]
        );
    }
}
