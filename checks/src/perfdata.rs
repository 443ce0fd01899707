//! Performance data of monitoring plugins, as the monitoring-plugins development
//! guidelines define it, turned into [`Metric`]s.
//!
//! A plugin prints `TEXT | PERFDATA` on its first line; long output may follow, and the
//! first `|` in it starts more perfdata that runs to the end of the output:
//!
//! ```text
//! DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968
//! / 15272 MB (77%);
//! /boot 68 MB (69%); | /boot=68MB;88;93;0;98
//! /home=69357MB;253404;253409;0;253414
//! ```
//!
//! Each item is `'label'=value[UOM];[warn];[crit];[min];[max]`. Parsing is lenient
//! item by item: an item that does not fit is left out and the rest are kept, so odd
//! perfdata never costs a check its result.

use crate::Metric;

/// Units the guidelines allow, plus `GB`, which real plugins (`check_disk -u GB`) print.
const UNITS: &[&str] = &["s", "ms", "us", "%", "B", "KB", "MB", "GB", "TB", "c"];

/// At most this many metrics are kept from one output; a plugin printing more is
/// listing data, not reporting a few figures.
pub const MAX_METRICS: usize = 1000;

/// The metrics in a plugin's whole stdout: the first line's perfdata (after its first
/// `|`) and the perfdata that starts at the first `|` of the lines after it.
pub fn from_output(stdout: &str) -> Vec<Metric> {
    let (first, rest) = stdout.split_once('\n').unwrap_or((stdout, ""));
    let mut metrics = from_first_line(first);
    if let Some((_, more)) = rest.split_once('|') {
        metrics.extend(parse(more));
    }
    metrics.truncate(MAX_METRICS);
    metrics
}

/// The metrics after the first `|` of a plugin's first line of output.
pub fn from_first_line(line: &str) -> Vec<Metric> {
    line.split_once('|')
        .map(|(_, perfdata)| parse(perfdata))
        .unwrap_or_default()
}

/// Parses perfdata text (what follows the `|`): items separated by whitespace, line
/// breaks included. Items that do not parse are left out.
///
/// - A label is quoted with `'` when it holds spaces; `''` inside quotes is one `'`.
/// - The value is a finite number (`.` or, from plugins in some locales, `,` as the
///   decimal mark), followed directly by a unit of `s ms us % B KB MB GB TB c` or none.
///   `U` (a value the plugin could not determine) is left out.
/// - `warn` and `crit` are kept as written, when they are ranges
///   (`10`, `10:`, `~:10`, `10:20`, `@10:20`); `min` and `max` must be numbers. Any of
///   them may be empty, and trailing `;` are allowed.
pub fn parse(perfdata: &str) -> Vec<Metric> {
    let mut metrics = Vec::new();
    let mut rest = perfdata;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() || metrics.len() >= MAX_METRICS {
            return metrics;
        }
        let (label, after) = match label(rest) {
            Label::Found(label, after) => (label, after),
            Label::Junk(after) => {
                rest = after;
                continue;
            }
            Label::Unterminated => return metrics,
        };
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        if let Some(metric) = item(label, &after[..end]) {
            metrics.push(metric);
        }
        rest = &after[end..];
    }
}

enum Label<'a> {
    /// The label, and the text after its `=`.
    Found(String, &'a str),
    /// Not an item: the text after the junk word.
    Junk(&'a str),
    /// A quote that never closes: nothing after it can be read.
    Unterminated,
}

/// Reads a label and its `=` from the start of `text` (which starts with no space).
fn label(text: &str) -> Label<'_> {
    let after_word = |t: &str| t.find(char::is_whitespace).unwrap_or(t.len());
    if let Some(quoted) = text.strip_prefix('\'') {
        let mut label = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            if c != '\'' {
                label.push(c);
                continue;
            }
            if quoted[i + 1..].starts_with('\'') {
                label.push('\'');
                chars.next();
                continue;
            }
            let after = &quoted[i + 1..];
            return match after.strip_prefix('=') {
                Some(data) if !label.is_empty() => Label::Found(label, data),
                _ => Label::Junk(&after[after_word(after)..]),
            };
        }
        return Label::Unterminated;
    }
    let word_end = after_word(text);
    match text[..word_end].find('=') {
        Some(eq) if eq > 0 => Label::Found(text[..eq].to_owned(), &text[eq + 1..]),
        _ => Label::Junk(&text[word_end..]),
    }
}

/// `value[UOM];[warn];[crit];[min];[max]` for `label`, or `None` when it does not fit.
fn item(label: String, data: &str) -> Option<Metric> {
    let mut fields = data.split(';');
    let value_and_unit = fields.next()?;
    let (warn, crit, min, max) = (fields.next(), fields.next(), fields.next(), fields.next());
    if fields.any(|extra| !extra.is_empty()) {
        return None;
    }
    let split = value_and_unit
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | ',' | '-' | '+' | 'e' | 'E')))
        .unwrap_or(value_and_unit.len());
    let (value, unit) = value_and_unit.split_at(split);
    let value = number(value)?;
    let unit = match unit {
        "" => None,
        u if UNITS.contains(&u) => Some(u.to_owned()),
        _ => return None,
    };
    Some(Metric {
        name: label,
        value,
        unit,
        warn: optional(warn, range)?,
        crit: optional(crit, range)?,
        min: optional(min, number)?,
        max: optional(max, number)?,
    })
}

/// `Some(None)` for a missing or empty field, `Some(Some(v))` when it parses, `None`
/// (the item is bad) when it does not.
fn optional<T>(field: Option<&str>, parse: impl Fn(&str) -> Option<T>) -> Option<Option<T>> {
    match field {
        None | Some("") => Some(None),
        Some(text) => parse(text).map(Some),
    }
}

/// A finite number; a lone `,` is read as the decimal mark.
fn number(text: &str) -> Option<f64> {
    let looks_numeric = text.bytes().any(|b| b.is_ascii_digit())
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b',' | b'-' | b'+' | b'e' | b'E'));
    if !looks_numeric {
        return None;
    }
    let parsed = if !text.contains('.') && text.matches(',').count() == 1 {
        text.replace(',', ".").parse::<f64>()
    } else {
        text.parse::<f64>()
    };
    parsed.ok().filter(|v| v.is_finite())
}

/// A threshold range, `[@][start:][end]` where `start` may be `~` (no lower bound).
fn range(text: &str) -> Option<String> {
    let bare = text.strip_prefix('@').unwrap_or(text);
    let ok = match bare.split_once(':') {
        None => number(bare).is_some(),
        Some((start, end)) => {
            (start == "~" || start.is_empty() || number(start).is_some())
                && (end.is_empty() || number(end).is_some())
                && !(start.is_empty() && end.is_empty())
        }
    };
    ok.then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// `name=value unit warn crit min max`, compactly, for table tests.
    fn m(
        name: &str,
        value: f64,
        unit: Option<&str>,
        warn: Option<&str>,
        crit: Option<&str>,
        min: Option<f64>,
        max: Option<f64>,
    ) -> Metric {
        Metric {
            name: name.into(),
            value,
            unit: unit.map(Into::into),
            warn: warn.map(Into::into),
            crit: crit.map(Into::into),
            min,
            max,
        }
    }

    #[test]
    fn real_plugin_output() {
        let cases: Vec<(&str, Vec<Metric>)> = vec![
            // check_load
            (
                "load1=0.150;5.000;10.000;0; load5=0.110;4.000;6.000;0; load15=0.090;3.000;4.000;0;",
                vec![
                    m(
                        "load1",
                        0.15,
                        None,
                        Some("5.000"),
                        Some("10.000"),
                        Some(0.0),
                        None,
                    ),
                    m(
                        "load5",
                        0.11,
                        None,
                        Some("4.000"),
                        Some("6.000"),
                        Some(0.0),
                        None,
                    ),
                    m(
                        "load15",
                        0.09,
                        None,
                        Some("3.000"),
                        Some("4.000"),
                        Some(0.0),
                        None,
                    ),
                ],
            ),
            // check_disk
            (
                "/=8923MB;9473;10000;0;10527",
                vec![m(
                    "/",
                    8923.0,
                    Some("MB"),
                    Some("9473"),
                    Some("10000"),
                    Some(0.0),
                    Some(10527.0),
                )],
            ),
            (
                "/=2643MB;5948;5958;0;5968 /boot=68MB;88;93;0;98",
                vec![
                    m(
                        "/",
                        2643.0,
                        Some("MB"),
                        Some("5948"),
                        Some("5958"),
                        Some(0.0),
                        Some(5968.0),
                    ),
                    m(
                        "/boot",
                        68.0,
                        Some("MB"),
                        Some("88"),
                        Some("93"),
                        Some(0.0),
                        Some(98.0),
                    ),
                ],
            ),
            // check_tcp
            (
                "time=0.000123s;;;0.000000;10.000000",
                vec![m(
                    "time",
                    0.000123,
                    Some("s"),
                    None,
                    None,
                    Some(0.0),
                    Some(10.0),
                )],
            ),
            // check_http
            (
                "time=0.006047s;;;0.000000 size=3852B;;;0",
                vec![
                    m("time", 0.006047, Some("s"), None, None, Some(0.0), None),
                    m("size", 3852.0, Some("B"), None, None, Some(0.0), None),
                ],
            ),
            // check_procs
            (
                "procs=215;250;400;0;",
                vec![m(
                    "procs",
                    215.0,
                    None,
                    Some("250"),
                    Some("400"),
                    Some(0.0),
                    None,
                )],
            ),
            // check_ping, check_swap
            (
                "rta=0.048000ms;100.000000;500.000000;0.000000 pl=0%;20;60;0",
                vec![
                    m(
                        "rta",
                        0.048,
                        Some("ms"),
                        Some("100.000000"),
                        Some("500.000000"),
                        Some(0.0),
                        None,
                    ),
                    m(
                        "pl",
                        0.0,
                        Some("%"),
                        Some("20"),
                        Some("60"),
                        Some(0.0),
                        None,
                    ),
                ],
            ),
            // Quoted labels, with spaces and an escaped quote.
            (
                "'my label'=5%;80;90",
                vec![m(
                    "my label",
                    5.0,
                    Some("%"),
                    Some("80"),
                    Some("90"),
                    None,
                    None,
                )],
            ),
            (
                "'it''s'=1c 'C:\\ Used Space'=12.5GB;;;0;40",
                vec![
                    m("it's", 1.0, Some("c"), None, None, None, None),
                    m(
                        "C:\\ Used Space",
                        12.5,
                        Some("GB"),
                        None,
                        None,
                        Some(0.0),
                        Some(40.0),
                    ),
                ],
            ),
            // Ranges of every shape, negatives, and a comma as the decimal mark.
            (
                "temp=-3.5;~:10;@-5:-1 users=4;2:;10:20 t=0,25s",
                vec![
                    m("temp", -3.5, None, Some("~:10"), Some("@-5:-1"), None, None),
                    m("users", 4.0, None, Some("2:"), Some("10:20"), None, None),
                    m("t", 0.25, Some("s"), None, None, None, None),
                ],
            ),
            ("", vec![]),
            ("   \n ", vec![]),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), expected, "{text}");
        }
    }

    #[test]
    fn bad_items_are_left_out_and_the_rest_kept() {
        let text = "a=1 junk b=U c=5furlongs 'd'=x e=1;2;3;4;5;6 =7 f=1;x g=nan h=inf \
                    i=1;;;zero j=2;1:2:3 k=2";
        let names: Vec<String> = parse(text).into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["a", "k"]);

        // An unterminated quote ends parsing; what came before stays.
        let names: Vec<String> = parse("a=1 'open=2 b=3")
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["a"]);
        // A quoted label without `=` is skipped with its word.
        let names: Vec<String> = parse("'x' y 'z'=1").into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["z"]);
    }

    #[test]
    fn first_line_and_long_output() {
        let stdout = "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n\
                      / 15272 MB (77%);\n\
                      /boot 68 MB (69%); | /boot=68MB;88;93;0;98\n\
                      /home=69357MB;253404;253409;0;253414\n";
        let names: Vec<String> = from_output(stdout).into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["/", "/boot", "/home"]);

        // Without perfdata anywhere, nothing; text on later lines is not perfdata.
        assert_eq!(from_output("OK\nload=5 looks like perfdata\n"), []);
        // Perfdata only in the long output.
        let names: Vec<String> = from_output("OK\nline\n| x=1 y=2\n")
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["x", "y"]);
        assert_eq!(from_first_line("OK | a=1")[0].value, 1.0);
    }

    #[test]
    fn metrics_are_capped() {
        let many: String = (0..MAX_METRICS + 50).map(|i| format!("m{i}=1 ")).collect();
        assert_eq!(parse(&many).len(), MAX_METRICS);
        let stdout = format!("OK | {many}\n| {many}");
        assert_eq!(from_output(&stdout).len(), MAX_METRICS);
    }
}
