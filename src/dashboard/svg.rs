//! The dashboard's charts as inline SVG: pure functions from runs to markup, drawn on
//! the server so the page needs no script to show them.
//!
//! Every chart is an `<svg role="img">` with an `aria-label` saying in words what it
//! shows, and every segment of a bar carries a `<title>` (its time, result and
//! summary) that the browser shows on hover and screen readers read. Text from the
//! store is escaped. Nothing is coloured here: a segment's class names its result
//! ([`Verdict::class`]: `sev-ok`, `sev-warning`, `sev-critical`, `sev-unknown`,
//! `sev-none` for runs not judged) and lines have the classes `spark` and `line`, so
//! the page's stylesheet colours them for light and dark. There are no `style`
//! attributes (the page's Content-Security-Policy allows no inline style); the
//! presentation attributes used (`preserveAspectRatio`, `vector-effect`) are not
//! style. Charts scale to the box the stylesheet gives them.
//!
//! What a test can count:
//! - [`bar`] (the overview): one `<rect>` per stretch of consecutive runs with the same
//!   stored severity, oldest left, each as wide as its runs; at most
//!   [`RECENT_RUNS`] runs. No runs: no `<rect>`, and the label says so.
//! - [`run_bar`] (the job page): one `<rect>` per run, at most [`RECENT_RUNS`].
//! - [`sparkline`]: one `<polyline class="spark">` with one point per run that
//!   measured a latency, among the last [`SPARK_RUNS`] (a lone point is written
//!   twice, so its round cap shows as a dot); `None` when none of them measured one.
//! - [`chart`]: one `<polyline class="line">` with one point per judged run (two
//!   for a lone one), and the axis labels as `<text>`: the greatest and least value
//!   (`class="axis y"`) and the first and last run's time (`class="axis x"`).

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Timelike, Utc};
use klaxon_notifiers::text::escape_html as escape;

use crate::store::{RECENT_RUNS, RecentRun, Verdict};

/// How many of the latest runs the sparkline draws: as many as the bar, each point
/// at its run's slot.
pub const SPARK_RUNS: usize = RECENT_RUNS;

/// Height of the bars' view box; the width is one unit per run slot.
const BAR_HEIGHT: u32 = 12;
/// Height of the sparkline's view box (its points are whole units: short to write).
const SPARK_HEIGHT: u32 = 40;
/// The job page chart's view box and its plot area within.
const CHART_WIDTH: u32 = 600;
const CHART_HEIGHT: u32 = 200;
const PLOT_LEFT: f64 = 64.0;
const PLOT_RIGHT: f64 = 590.0;
const PLOT_TOP: f64 = 12.0;
const PLOT_BOTTOM: f64 = 172.0;

/// The overview's bar of a job's latest runs (oldest first, at most [`RECENT_RUNS`]
/// are drawn: the newest), one `<rect>` per stretch of runs with the same result, so
/// a job that has been fine for its last 90 runs costs one segment.
pub fn bar(runs: &[RecentRun]) -> String {
    let runs = newest(runs);
    let mut stretches: Vec<&[RecentRun]> = Vec::with_capacity(4);
    let mut start = 0;
    for i in 1..=runs.len() {
        if i == runs.len() || !same(&runs[i], &runs[start]) {
            stretches.push(&runs[start..i]);
            start = i;
        }
    }
    let mut out = String::with_capacity(192 + stretches.len() * 192);
    bar_open(&mut out, &stretches);
    let mut x = RECENT_RUNS - runs.len();
    for stretch in stretches {
        let (first, last) = (&stretch[0], &stretch[stretch.len() - 1]);
        segment_open(&mut out, x, stretch.len(), last.verdict);
        span(&mut out, first.started_at, last.started_at);
        out.push_str(": ");
        out.push_str(&count(stretch.len(), "run", "runs"));
        out.push(' ');
        push_escaped(&mut out, &last.severity);
        out.push_str("; last: ");
        push_escaped(&mut out, &last.summary);
        out.push_str("</title></rect>");
        x += stretch.len();
    }
    out.push_str("</svg>");
    out
}

/// The job page's bar of its latest runs (oldest first, at most [`RECENT_RUNS`]): one
/// `<rect>` per run.
pub fn run_bar(runs: &[RecentRun]) -> String {
    let runs = newest(runs);
    let singles: Vec<&[RecentRun]> = runs.chunks(1).collect();
    let mut out = String::with_capacity(192 + runs.len() * 160);
    bar_open(&mut out, &singles);
    let offset = RECENT_RUNS - runs.len();
    for (i, run) in runs.iter().enumerate() {
        segment_open(&mut out, offset + i, 1, run.verdict);
        day_minute(&mut out, run.started_at);
        out.push_str(" UTC: ");
        push_escaped(&mut out, &run.severity);
        out.push_str("; ");
        push_escaped(&mut out, &run.summary);
        out.push_str("</title></rect>");
    }
    out.push_str("</svg>");
    out
}

/// Whether two runs are of one stretch: the same stored severity (compared as words
/// only among the unjudged, whose verdict is one for several words).
fn same(a: &RecentRun, b: &RecentRun) -> bool {
    a.verdict == b.verdict && (a.verdict.judged() || a.severity == b.severity)
}

/// The latency of the latest [`SPARK_RUNS`] runs as a line, scaled from the least to
/// the greatest value, one slot a run (newest at the right); `None` when none of them
/// measured a latency (a script, a disk check), so the page can leave it out.
pub fn sparkline(runs: &[RecentRun]) -> Option<String> {
    let runs = &runs[runs.len().saturating_sub(SPARK_RUNS)..];
    let offset = SPARK_RUNS - runs.len();
    let points: Vec<(usize, f64)> = runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.latency_ms.map(|v| (offset + i, v)))
        .collect();
    let (least, greatest) = bounds(points.iter().map(|p| p.1))?;
    let last = points[points.len() - 1].1;
    let label = format!(
        "latency of the last {}: {} to {}, last {}",
        count(points.len(), "run", "runs"),
        millis(least),
        millis(greatest),
        millis(last)
    );
    let height = f64::from(SPARK_HEIGHT);
    let mut coords = String::with_capacity(points.len() * 6);
    for (x, v) in lone_twice(&points) {
        // Whole units: the sparkline is small, and short numbers keep the page light.
        let y = (height - 1.0 - scale(v, least, greatest) * (height - 2.0)).round();
        push_number(&mut coords, x);
        coords.push(',');
        push_number(&mut coords, y.max(0.0) as usize);
        coords.push(' ');
    }
    Some(format!(
        r#"<svg class="sparkline" viewBox="0 0 {} {SPARK_HEIGHT}" preserveAspectRatio="none" role="img" aria-label="{}"><polyline class="spark" points="{}" vector-effect="non-scaling-stroke"/></svg>"#,
        SPARK_RUNS - 1,
        escape(&label),
        coords.trim_end()
    ))
}

/// The job page's chart over time of its judged runs (oldest first): their latency
/// where the check measures one (any run has one), their duration otherwise; with the
/// least and greatest value on the left and the first and last run's time below.
pub fn chart(runs: &[RecentRun]) -> String {
    let judged: Vec<&RecentRun> = runs.iter().filter(|r| r.verdict.judged()).collect();
    let measures_latency = judged.iter().any(|r| r.latency_ms.is_some());
    let (what, points): (&str, Vec<(DateTime<Utc>, f64)>) = if measures_latency {
        let points = judged
            .iter()
            .filter_map(|r| r.latency_ms.map(|v| (r.started_at, v)))
            .collect();
        ("latency", points)
    } else {
        let points = judged
            .iter()
            .map(|r| (r.started_at, r.elapsed.as_secs_f64() * 1000.0))
            .collect();
        ("duration", points)
    };
    let mut out = format!(
        r#"<svg class="chart" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img" aria-label="{}">"#,
        escape(&chart_label(what, &points))
    );
    let Some((least, greatest)) = bounds(points.iter().map(|p| p.1)) else {
        let _ = write!(
            out,
            r#"<text class="empty" x="{}" y="{}" text-anchor="middle">no runs yet</text></svg>"#,
            CHART_WIDTH / 2,
            CHART_HEIGHT / 2
        );
        return out;
    };
    let (t0, t1) = (points[0].0, points[points.len() - 1].0);
    let span = (t1 - t0).num_milliseconds() as f64;
    let _ = write!(
        out,
        r#"<line class="axis" x1="{PLOT_LEFT}" y1="{PLOT_BOTTOM}" x2="{PLOT_RIGHT}" y2="{PLOT_BOTTOM}"/><line class="axis" x1="{PLOT_LEFT}" y1="{PLOT_TOP}" x2="{PLOT_LEFT}" y2="{PLOT_BOTTOM}"/>"#
    );
    out.push_str(r#"<polyline class="line" points=""#);
    let mut first = true;
    for (at, v) in lone_twice(&points) {
        let x = if span > 0.0 {
            PLOT_LEFT + (at - t0).num_milliseconds() as f64 / span * (PLOT_RIGHT - PLOT_LEFT)
        } else {
            (PLOT_LEFT + PLOT_RIGHT) / 2.0
        };
        let y = PLOT_BOTTOM - scale(v, least, greatest) * (PLOT_BOTTOM - PLOT_TOP);
        let sep = if first { "" } else { " " };
        first = false;
        let _ = write!(out, "{sep}{x:.1},{y:.1}");
    }
    out.push_str(r#""/>"#);
    let _ = write!(
        out,
        r#"<text class="axis y" x="{}" y="{}" text-anchor="end">{}</text><text class="axis y" x="{}" y="{PLOT_BOTTOM}" text-anchor="end">{}</text>"#,
        PLOT_LEFT - 4.0,
        PLOT_TOP + 4.0,
        millis(greatest),
        PLOT_LEFT - 4.0,
        millis(least),
    );
    let _ = write!(
        out,
        r#"<text class="axis x" x="{PLOT_LEFT}" y="{}" text-anchor="start">{}</text><text class="axis x" x="{PLOT_RIGHT}" y="{}" text-anchor="end">{}</text></svg>"#,
        PLOT_BOTTOM + 20.0,
        time(t0),
        PLOT_BOTTOM + 20.0,
        time(t1),
    );
    out
}

/// The chart's words: what it plots, over which runs and time, and its range.
fn chart_label(what: &str, points: &[(DateTime<Utc>, f64)]) -> String {
    match (
        points.first(),
        points.last(),
        bounds(points.iter().map(|p| p.1)),
    ) {
        (Some(first), Some(last), Some((least, greatest))) => format!(
            "{what} of {} from {} to {}: {} to {}",
            count(points.len(), "run", "runs"),
            time(first.0),
            time(last.0),
            millis(least),
            millis(greatest)
        ),
        _ => format!("{what}: no runs yet"),
    }
}

/// The newest [`RECENT_RUNS`] of `runs` (oldest first).
fn newest(runs: &[RecentRun]) -> &[RecentRun] {
    &runs[runs.len().saturating_sub(RECENT_RUNS)..]
}

/// A bar's `<svg>` start tag onto `out`, its label counting the runs of `stretches`
/// by result.
fn bar_open(out: &mut String, stretches: &[&[RecentRun]]) {
    let mut tally: Vec<(&RecentRun, usize)> = Vec::new();
    for stretch in stretches {
        match tally.iter_mut().find(|(r, _)| same(r, &stretch[0])) {
            Some((_, n)) => *n += stretch.len(),
            None => tally.push((&stretch[0], stretch.len())),
        }
    }
    out.push_str(r#"<svg class="bar" viewBox="0 0 "#);
    let _ = write!(
        out,
        r#"{RECENT_RUNS} {BAR_HEIGHT}" preserveAspectRatio="none" role="img" aria-label=""#
    );
    if tally.is_empty() {
        out.push_str("no runs yet");
    } else {
        let runs: usize = tally.iter().map(|(_, n)| n).sum();
        let _ = write!(out, "last {}: ", count(runs, "run", "runs"));
        for (i, (run, n)) in tally.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{n} ");
            push_escaped(out, &run.severity);
        }
    }
    out.push_str(r#"">"#);
}

/// The start of one segment of a bar, up to its `<title>`'s text: `width` slots from
/// slot `x`, a fifth of a slot narrower so segments stand apart.
fn segment_open(out: &mut String, x: usize, width: usize, verdict: Verdict) {
    let _ = write!(
        out,
        r#"<rect x="{x}" width="{}.8" height="{BAR_HEIGHT}" class="{}"><title>"#,
        width - 1,
        verdict.class(),
    );
}

/// `text` onto `out` with HTML's special characters as entities; most text has none,
/// and goes as it is.
fn push_escaped(out: &mut String, text: &str) {
    if text.contains(['&', '<', '>', '"', '\'']) {
        out.push_str(&escape(text));
    } else {
        out.push_str(text);
    }
}

/// `n` onto `out`, by hand for the sparkline's small numbers (90,000 of them on the
/// overview of 1,000 jobs).
fn push_number(out: &mut String, n: usize) {
    if n < 10 {
        out.push(char::from(b'0' + n as u8));
    } else if n < 100 {
        out.push(char::from(b'0' + (n / 10) as u8));
        out.push(char::from(b'0' + (n % 10) as u8));
    } else {
        let _ = write!(out, "{n}");
    }
}

/// The least and greatest of `values`; `None` when there are none.
fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// Where `v` lies from `least` (0) to `greatest` (1); the middle when all are equal.
fn scale(v: f64, least: f64, greatest: f64) -> f64 {
    if greatest > least {
        (v - least) / (greatest - least)
    } else {
        0.5
    }
}

/// `points`, with a lone one twice: a polyline of one point draws nothing, one of a
/// zero-length segment draws its round cap.
fn lone_twice<T: Copy>(points: &[T]) -> impl Iterator<Item = T> + '_ {
    let again = (points.len() == 1).then(|| points[0]);
    points.iter().copied().chain(again)
}

/// From `first` to `last` in few words onto `out`: `2026-12-04 02:41 UTC` (one
/// minute), `2026-12-04 02:41–04:10 UTC` (one day), or both moments in full.
fn span(out: &mut String, first: DateTime<Utc>, last: DateTime<Utc>) {
    let minute = |t: DateTime<Utc>| t.timestamp().div_euclid(60);
    day_minute(out, first);
    if minute(first) == minute(last) {
        out.push_str(" UTC");
    } else if first.date_naive() == last.date_naive() {
        let (h, m) = (last.hour(), last.minute());
        let _ = write!(out, "–{h:02}:{m:02} UTC");
    } else {
        out.push_str(" UTC to ");
        day_minute(out, last);
        out.push_str(" UTC");
    }
}

/// A moment as the charts write it, in UTC to the minute: `2026-12-04 02:41 UTC`.
fn time(t: DateTime<Utc>) -> String {
    let mut out = String::with_capacity(20);
    day_minute(&mut out, t);
    out.push_str(" UTC");
    out
}

/// `2026-12-04 02:41` onto `out`. Written by hand: the overview writes thousands, and
/// chrono's `format` parses its pattern each time.
fn day_minute(out: &mut String, t: DateTime<Utc>) {
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute()
    );
}

/// Milliseconds as a person reads them: `4.2 ms`, `230 ms`, `1.5 s`.
fn millis(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// `n` and the noun for it: `1 run`, `3 runs`.
fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;
    use std::time::Duration;

    use quick_xml::events::{BytesStart, Event};
    use quick_xml::{Reader, XmlVersion};

    use super::*;

    /// An element of a chart: its name, attributes and text (entities resolved).
    #[derive(Debug)]
    struct Element {
        name: String,
        attrs: HashMap<String, String>,
        text: String,
    }

    /// The elements of `svg` in document order, checking it is one well-formed `<svg>`
    /// with no `style` anywhere.
    fn parse(svg: &str) -> Vec<Element> {
        fn element(e: &BytesStart) -> Element {
            let attrs = e
                .attributes()
                .map(|a| {
                    let a = a.unwrap();
                    let key = a.key.into_inner().to_owned();
                    let value = a.normalized_value(XmlVersion::Implicit1_0).unwrap();
                    (key, value.into_owned())
                })
                .collect();
            let name = e.name().into_inner().to_owned();
            Element {
                name,
                attrs,
                text: String::new(),
            }
        }
        let mut reader = Reader::from_str(svg);
        reader.config_mut().check_end_names = true;
        let (mut out, mut open, mut depth_zero_seen) = (Vec::<Element>::new(), Vec::new(), 0);
        loop {
            match reader.read_event() {
                Ok(Event::Start(e)) => {
                    if open.is_empty() {
                        depth_zero_seen += 1;
                    }
                    open.push(out.len());
                    out.push(element(&e));
                }
                Ok(Event::Empty(e)) => {
                    assert!(!open.is_empty(), "{svg}");
                    out.push(element(&e));
                }
                Ok(Event::End(_)) => {
                    open.pop();
                }
                Ok(Event::Text(t)) => {
                    let at = *open.last().unwrap();
                    out[at].text.push_str(&t.xml10_content());
                }
                Ok(Event::GeneralRef(r)) => {
                    let at = *open.last().unwrap();
                    let c = match r.resolve_char_ref().unwrap() {
                        Some(c) => c.to_string(),
                        None => {
                            let name = r.into_inner();
                            quick_xml::escape::resolve_xml_entity(&name)
                                .unwrap()
                                .to_owned()
                        }
                    };
                    out[at].text.push_str(&c);
                }
                Ok(Event::Eof) => break,
                Ok(_) => {}
                Err(e) => panic!("not XML: {e}\n{svg}"),
            }
        }
        assert!(open.is_empty(), "{svg}");
        assert_eq!(depth_zero_seen, 1, "{svg}");
        assert_eq!(out[0].name, "svg");
        assert_eq!(out[0].attrs["role"], "img");
        assert!(!out[0].attrs["aria-label"].is_empty());
        for e in &out {
            assert!(!e.attrs.contains_key("style"), "{svg}");
            assert!(
                !e.attrs.contains_key("fill"),
                "colour is the stylesheet's: {svg}"
            );
        }
        out
    }

    fn named<'a>(elements: &'a [Element], name: &str) -> Vec<&'a Element> {
        elements.iter().filter(|e| e.name == name).collect()
    }

    /// A rect's title: the `<title>` element right after it.
    fn titles(elements: &[Element]) -> Vec<String> {
        elements
            .windows(2)
            .filter(|w| w[0].name == "rect")
            .map(|w| {
                assert_eq!(w[1].name, "title");
                w[1].text.clone()
            })
            .collect()
    }

    fn runs(spec: &[(&str, Option<f64>)]) -> Vec<RecentRun> {
        spec.iter()
            .enumerate()
            .map(|(i, (severity, latency))| RecentRun {
                started_at: DateTime::from_timestamp(1_790_000_000 + 60 * i as i64, 0).unwrap(),
                severity: (*severity).into(),
                verdict: Verdict::of(severity, false),
                elapsed: Duration::from_millis(100 + 10 * i as u64),
                latency_ms: *latency,
                summary: format!("run {i}"),
            })
            .collect()
    }

    fn points(e: &Element) -> Vec<(f64, f64)> {
        e.attrs["points"]
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn the_bar_has_one_segment_per_stretch_of_equal_results() {
        // (runs, segments, their classes)
        let table: &[(&[&str], &[&str])] = &[
            (&[], &[]),
            (&["ok"], &["sev-ok"]),
            (&["ok"; 90], &["sev-ok"]),
            (
                &["ok", "ok", "critical", "critical", "skipped", "ok"],
                &["sev-ok", "sev-critical", "sev-none", "sev-ok"],
            ),
            (
                &["warning", "unknown", "interrupted", "offline"],
                &["sev-warning", "sev-unknown", "sev-none", "sev-none"],
            ),
        ];
        for (severities, classes) in table {
            let spec: Vec<_> = severities.iter().map(|s| (*s, None)).collect();
            let svg = bar(&runs(&spec));
            let elements = parse(&svg);
            let rects = named(&elements, "rect");
            let got: Vec<_> = rects.iter().map(|r| r.attrs["class"].as_str()).collect();
            assert_eq!(got, *classes, "{svg}");
            // The stretches fill the slots of the runs there are, from the right.
            let slots: f64 = rects
                .iter()
                .map(|r| r.attrs["width"].parse::<f64>().unwrap() + 0.2)
                .sum();
            assert!((slots - severities.len() as f64).abs() < 1e-9, "{svg}");
            if let Some(first) = rects.first() {
                assert_eq!(first.attrs["x"], (90 - severities.len()).to_string());
            }
        }
        let empty = parse(&bar(&[]));
        assert_eq!(empty[0].attrs["aria-label"], "no runs yet");
    }

    #[test]
    fn a_stretch_says_when_how_many_what_and_the_last_summary() {
        let svg = bar(&runs(&[("ok", None), ("ok", None), ("critical", None)]));
        let elements = parse(&svg);
        assert_eq!(
            titles(&elements),
            [
                "2026-09-21 14:13–14:14 UTC: 2 runs ok; last: run 1",
                "2026-09-21 14:15 UTC: 1 run critical; last: run 2",
            ]
        );
        assert_eq!(
            elements[0].attrs["aria-label"],
            "last 3 runs: 2 ok, 1 critical"
        );
    }

    #[test]
    fn a_stretch_over_days_names_both_days() {
        let mut r = runs(&[("ok", None), ("ok", None), ("ok", None)]);
        r[2].started_at = r[0].started_at + chrono::Duration::days(1);
        r[1].started_at = r[0].started_at;
        let elements = parse(&bar(&r[..2]));
        assert_eq!(
            titles(&elements),
            ["2026-09-21 14:13 UTC: 2 runs ok; last: run 1"]
        );
        let elements = parse(&bar(&r));
        assert_eq!(
            titles(&elements),
            ["2026-09-21 14:13 UTC to 2026-09-22 14:13 UTC: 3 runs ok; last: run 2"]
        );
    }

    #[test]
    fn bars_show_the_newest_90_runs() {
        let mut spec = vec![("critical", None); 10];
        spec.extend(vec![("ok", None); 95]);
        let all = runs(&spec);
        let elements = parse(&bar(&all));
        assert_eq!(named(&elements, "rect").len(), 1);
        assert_eq!(elements[0].attrs["aria-label"], "last 90 runs: 90 ok");
        let elements = parse(&run_bar(&all));
        let rects = named(&elements, "rect");
        assert_eq!(rects.len(), 90);
        assert_eq!(rects[0].attrs["x"], "0");
        assert_eq!(rects[89].attrs["x"], "89");
        assert_eq!(titles(&elements)[89], "2026-09-21 15:57 UTC: ok; run 104");
    }

    #[test]
    fn the_run_bar_has_one_segment_per_run() {
        for n in [0, 1, 2, 89, 90] {
            let spec = vec![("ok", None); n];
            let elements = parse(&run_bar(&runs(&spec)));
            let rects = named(&elements, "rect");
            assert_eq!(rects.len(), n);
            let xs: Vec<String> = rects.iter().map(|r| r.attrs["x"].clone()).collect();
            let want: Vec<String> = (90 - n..90).map(|x| x.to_string()).collect();
            assert_eq!(xs, want);
        }
        let elements = parse(&run_bar(&runs(&[("warning", None), ("skipped", None)])));
        assert_eq!(
            titles(&elements),
            [
                "2026-09-21 14:13 UTC: warning; run 0",
                "2026-09-21 14:14 UTC: skipped; run 1"
            ]
        );
    }

    #[test]
    fn text_from_the_store_is_escaped() {
        let mut r = runs(&[("ok", Some(1.0))]);
        r[0].summary = r#"<script>alert("x")</script> & 'y'"#.into();
        r[0].severity = "<b>".into();
        for svg in [bar(&r), run_bar(&r)] {
            assert!(!svg.contains("<script>"), "{svg}");
            assert!(!svg.contains("<b>"), "{svg}");
            let elements = parse(&svg);
            let title = &titles(&elements)[0];
            assert!(
                title.ends_with(r#"<script>alert("x")</script> & 'y'"#),
                "{title}"
            );
            assert!(elements[0].attrs["aria-label"].contains("1 <b>"));
        }
    }

    #[test]
    fn the_sparkline_has_one_point_per_measured_run() {
        assert_eq!(sparkline(&[]), None);
        assert_eq!(sparkline(&runs(&[("ok", None), ("critical", None)])), None);

        let svg = sparkline(&runs(&[
            ("ok", Some(10.0)),
            ("critical", None),
            ("ok", Some(30.0)),
            ("ok", Some(20.0)),
        ]))
        .unwrap();
        let elements = parse(&svg);
        let lines = named(&elements, "polyline");
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].attrs["class"], "spark");
        // At the bar's slots (the last four of 90); least at the bottom, greatest at
        // the top, of a box 40 high.
        assert_eq!(points(lines[0]), [(86.0, 39.0), (88.0, 1.0), (89.0, 20.0)]);
        // Only the last 90 runs are drawn.
        let mut many = vec![("ok", Some(1.0)); 110];
        many.extend([("ok", None), ("ok", Some(2.0))]);
        let last90 = parse(&sparkline(&runs(&many)).unwrap());
        let pts = points(named(&last90, "polyline")[0]);
        assert_eq!(pts.len(), 89);
        assert_eq!(pts[0].0, 0.0);
        assert_eq!(pts[88], (89.0, 1.0));
        assert_eq!(
            last90[0].attrs["aria-label"],
            "latency of the last 89 runs: 1.0 ms to 2.0 ms, last 2.0 ms"
        );
        assert_eq!(
            elements[0].attrs["aria-label"],
            "latency of the last 3 runs: 10 ms to 30 ms, last 20 ms"
        );
    }

    #[test]
    fn a_lone_or_flat_sparkline_is_drawn_in_the_middle() {
        let one = sparkline(&runs(&[("ok", Some(4.25))])).unwrap();
        let elements = parse(&one);
        assert_eq!(
            points(named(&elements, "polyline")[0]),
            [(89.0, 20.0), (89.0, 20.0)]
        );
        assert_eq!(
            elements[0].attrs["aria-label"],
            "latency of the last 1 run: 4.2 ms to 4.2 ms, last 4.2 ms"
        );
        let flat = sparkline(&runs(&[("ok", Some(7.0)); 5])).unwrap();
        let elements = parse(&flat);
        let ys: Vec<f64> = points(named(&elements, "polyline")[0])
            .iter()
            .map(|p| p.1)
            .collect();
        assert_eq!(ys, [20.0; 5]);
    }

    #[test]
    fn the_chart_plots_latency_with_its_range_and_time_on_the_axes() {
        let svg = chart(&runs(&[
            ("ok", Some(10.0)),
            ("skipped", None),
            ("critical", Some(1500.0)),
            ("ok", Some(20.0)),
        ]));
        let elements = parse(&svg);
        let line = named(&elements, "polyline");
        assert_eq!(line.len(), 1);
        assert_eq!(line[0].attrs["class"], "line");
        // Three measured runs from minute 0 to minute 3 across the plot (64..590).
        let pts = points(line[0]);
        assert_eq!(pts.len(), 3);
        assert_eq!(pts[0], (PLOT_LEFT, PLOT_BOTTOM));
        assert_eq!(pts[1].1, PLOT_TOP);
        assert_eq!(pts[2].0, PLOT_RIGHT);
        let axes: Vec<(&str, &str)> = named(&elements, "text")
            .iter()
            .map(|t| (t.attrs["class"].as_str(), t.text.as_str()))
            .collect();
        assert_eq!(
            axes,
            [
                ("axis y", "1.5 s"),
                ("axis y", "10 ms"),
                ("axis x", "2026-09-21 14:13 UTC"),
                ("axis x", "2026-09-21 14:16 UTC"),
            ]
        );
        assert_eq!(
            elements[0].attrs["aria-label"],
            "latency of 3 runs from 2026-09-21 14:13 UTC to 2026-09-21 14:16 UTC: 10 ms to 1.5 s"
        );
    }

    #[test]
    fn without_a_latency_the_chart_plots_the_duration() {
        let svg = chart(&runs(&[("ok", None), ("interrupted", None), ("ok", None)]));
        let elements = parse(&svg);
        assert_eq!(points(named(&elements, "polyline")[0]).len(), 2);
        assert!(
            elements[0].attrs["aria-label"].starts_with("duration of 2 runs"),
            "{svg}"
        );
        let texts: Vec<&str> = named(&elements, "text")
            .iter()
            .map(|t| t.text.as_str())
            .collect();
        assert_eq!(texts[..2], ["120 ms", "100 ms"]);
    }

    #[test]
    fn an_empty_lone_or_flat_chart_still_reads() {
        for input in [vec![], runs(&[("skipped", None)])] {
            let elements = parse(&chart(&input));
            assert!(named(&elements, "polyline").is_empty());
            assert_eq!(named(&elements, "text")[0].text, "no runs yet");
            assert_eq!(elements[0].attrs["aria-label"], "duration: no runs yet");
        }
        let one = parse(&chart(&runs(&[("ok", Some(5.0))])));
        let mid_x = (PLOT_LEFT + PLOT_RIGHT) / 2.0;
        let mid_y = (PLOT_TOP + PLOT_BOTTOM) / 2.0;
        assert_eq!(
            points(named(&one, "polyline")[0]),
            [(mid_x, mid_y), (mid_x, mid_y)]
        );
        let flat = parse(&chart(&runs(&[("ok", Some(5.0)); 3])));
        let pts = points(named(&flat, "polyline")[0]);
        assert!(pts.iter().all(|p| p.1 == mid_y), "{pts:?}");
        let texts: Vec<&str> = named(&flat, "text")
            .iter()
            .map(|t| t.text.as_str())
            .collect();
        assert_eq!(texts[..2], ["5.0 ms", "5.0 ms"]);
    }
}
