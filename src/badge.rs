//! Badges for READMEs (`/badge/JOB.svg`, `/badge/JOB/uptime.svg` on the listener): a
//! flat SVG in the style of shields.io, a grey label on the left and a coloured message
//! on the right. Rendering is a pure function of the badge; the listener reads the
//! job's status row and uptime and serves what comes out.
//!
//! The state is in the text as well as in the colour, and in a `<title>` (and
//! `aria-label`) for screen readers. Widths come from Verdana's advance widths at
//! 11 px (what shields.io measures with), so no font is needed to lay a badge out.

use std::time::Duration;

use klaxon_notifiers::text::escape_html as escape;

use crate::alert::SeverityName;
use crate::store::Uptime;

/// The window of the uptime badge. History older than `[history] keep` is pruned, so a
/// shorter `keep` shortens it.
pub const UPTIME_WINDOW: Duration = Duration::from_secs(30 * 86_400);

/// The uptime badge's label.
pub const UPTIME_LABEL: &str = "uptime 30d";

/// A message's colour (shields.io's named colours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    BrightGreen,
    Green,
    Yellow,
    Orange,
    Red,
    Blue,
    Grey,
}

impl Colour {
    pub fn hex(self) -> &'static str {
        match self {
            Colour::BrightGreen => "#4c1",
            Colour::Green => "#97ca00",
            Colour::Yellow => "#dfb317",
            Colour::Orange => "#fe7d37",
            Colour::Red => "#e05d44",
            Colour::Blue => "#007ec6",
            Colour::Grey => "#9f9f9f",
        }
    }
}

/// The label's background.
const LABEL_COLOUR: &str = "#555";

/// Space left and right of each part's text, in pixels.
const PADDING: u32 = 5;

/// A badge: its two texts and the message's colour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Badge {
    pub label: String,
    pub message: String,
    pub colour: Colour,
}

impl Badge {
    /// The status badge of `job`: `silenced` while a silence or maintenance window
    /// covers it (as `klaxon status` says), else its last severity as `up`,
    /// `down`, `warning` or `unknown`, and `pending` before its first run.
    pub fn status(job: &str, severity: Option<SeverityName>, silenced: bool) -> Self {
        let (message, colour) = if silenced {
            ("silenced", Colour::Blue)
        } else {
            match severity {
                Some(SeverityName::Ok) => ("up", Colour::BrightGreen),
                Some(SeverityName::Critical) => ("down", Colour::Red),
                Some(SeverityName::Warning) => ("warning", Colour::Orange),
                Some(SeverityName::Unknown) => ("unknown", Colour::Grey),
                None => ("pending", Colour::Grey),
            }
        };
        Self {
            label: job.to_owned(),
            message: message.to_owned(),
            colour,
        }
    }

    /// The uptime badge: the share of judged runs that were ok, rounded down to two
    /// decimals (`100%` only when every run was ok), or `no data` when none was judged.
    pub fn uptime(uptime: Uptime) -> Self {
        let Uptime { ok, judged } = uptime;
        let (message, colour) = if judged == 0 {
            ("no data".to_owned(), Colour::Grey)
        } else {
            let message = if ok >= judged {
                "100%".to_owned()
            } else {
                let hundredths = ok * 10_000 / judged;
                format!("{}.{:02}%", hundredths / 100, hundredths % 100)
            };
            // Thresholds on the exact share, not the rounded text.
            let colour = if ok * 1000 >= judged * 999 {
                Colour::BrightGreen
            } else if ok * 100 >= judged * 99 {
                Colour::Green
            } else if ok * 100 >= judged * 95 {
                Colour::Yellow
            } else {
                Colour::Red
            };
            (message, colour)
        };
        Self {
            label: UPTIME_LABEL.to_owned(),
            message,
            colour,
        }
    }

    /// The badge as an SVG document.
    pub fn svg(&self) -> String {
        let label_width = text_width(&self.label) + 2 * PADDING;
        let message_width = text_width(&self.message) + 2 * PADDING;
        let width = label_width + message_width;
        let label_x = tenths(label_width * 5);
        let message_x = tenths(label_width * 10 + message_width * 5);
        let (label, message) = (escape(&self.label), escape(&self.message));
        let colour = self.colour.hex();
        format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" aria-label="{label}: {message}">
<title>{label}: {message}</title>
<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>
<clipPath id="r"><rect width="{width}" height="20" rx="3" fill="#fff"/></clipPath>
<g clip-path="url(#r)"><rect width="{label_width}" height="20" fill="{LABEL_COLOUR}"/><rect x="{label_width}" width="{message_width}" height="20" fill="{colour}"/><rect width="{width}" height="20" fill="url(#s)"/></g>
<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">
<text x="{label_x}" y="15" fill="#010101" fill-opacity=".3">{label}</text><text x="{label_x}" y="14">{label}</text>
<text x="{message_x}" y="15" fill="#010101" fill-opacity=".3">{message}</text><text x="{message_x}" y="14">{message}</text>
</g>
</svg>
"##
        )
    }
}

/// `n` tenths of a pixel, as SVG takes it (`12` → `1.2`).
fn tenths(n: u32) -> String {
    match n % 10 {
        0 => (n / 10).to_string(),
        d => format!("{}.{d}", n / 10),
    }
}

/// Verdana's advance widths of `' '..='~'`, in font units (2048 to the em).
const VERDANA: [u16; 95] = [
    720, 806, 940, 1716, 1303, 2204, 1493, 550, 909, 909, 1303, 1716, 745, 909, 745,
    1294, // ' '../
    1303, 1303, 1303, 1303, 1303, 1303, 1303, 1303, 1303, 1303, // 0..9
    909, 909, 1716, 1716, 1716, 1118, 2048, // :..@
    1401, 1405, 1430, 1577, 1294, 1178, 1587, 1540, 862, 929, 1425, 1145, 1730, 1532, 1616, 1236,
    1616, 1441, 1399, 1243, 1502, 1401, 2036, 1405, 1240, 1399, // A..Z
    909, 1294, 909, 1716, 1303, 1303, // [..`
    1229, 1276, 1070, 1276, 1210, 720, 1276, 1296, 562, 705, 1198, 562, 1992, 1296, 1243, 1276,
    1276, 874, 1064, 807, 1296, 1198, 1665, 1198, 1198, 1063, // a..z
    1302, 909, 1302, 1716, // {..~
];

/// The width of `text` in Verdana at 11 px, rounded up to a whole pixel. A character
/// outside printable ASCII counts as a whole em, so a badge is never too narrow.
fn text_width(text: &str) -> u32 {
    let units: u32 = text
        .chars()
        .map(|c| match c {
            ' '..='~' => u32::from(VERDANA[c as usize - ' ' as usize]),
            _ => 2048,
        })
        .sum();
    (units * 11).div_ceil(2048)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The status badge of `job` whose last run was `severity` (`pending`: none yet).
    fn status(job: &str, severity: &str, silenced: bool) -> Badge {
        let severity = match severity {
            "ok" => Some(SeverityName::Ok),
            "warning" => Some(SeverityName::Warning),
            "critical" => Some(SeverityName::Critical),
            "unknown" => Some(SeverityName::Unknown),
            _ => None,
        };
        Badge::status(job, severity, silenced)
    }

    fn uptime(ok: u64, judged: u64) -> Badge {
        Badge::uptime(Uptime { ok, judged })
    }

    #[test]
    fn the_status_badge_says_the_state_in_words_and_colour() {
        for (severity, silenced, message, colour) in [
            ("ok", false, "up", "#4c1"),
            ("critical", false, "down", "#e05d44"),
            ("warning", false, "warning", "#fe7d37"),
            ("unknown", false, "unknown", "#9f9f9f"),
            ("pending", false, "pending", "#9f9f9f"),
            ("critical", true, "silenced", "#007ec6"),
            ("ok", true, "silenced", "#007ec6"),
        ] {
            let badge = status("backup", severity, silenced);
            assert_eq!(badge.label, "backup");
            assert_eq!(
                (badge.message.as_str(), badge.colour.hex()),
                (message, colour),
                "{severity}, silenced: {silenced}"
            );
        }
    }

    #[test]
    fn uptime_is_rounded_down_and_coloured_by_thresholds() {
        for (ok, judged, message, colour) in [
            (0, 0, "no data", Colour::Grey),
            (5, 5, "100%", Colour::BrightGreen),
            (9999, 10_000, "99.99%", Colour::BrightGreen),
            (999, 1000, "99.90%", Colour::BrightGreen),
            (4991, 5000, "99.82%", Colour::Green),
            (99, 100, "99.00%", Colour::Green),
            (989, 1000, "98.90%", Colour::Yellow),
            (19, 20, "95.00%", Colour::Yellow),
            (2, 3, "66.66%", Colour::Red),
            (0, 7, "0.00%", Colour::Red),
        ] {
            let badge = uptime(ok, judged);
            assert_eq!(badge.label, "uptime 30d");
            assert_eq!(
                (badge.message.as_str(), badge.colour),
                (message, colour),
                "{ok} of {judged}"
            );
        }
    }

    #[test]
    fn widths_follow_verdana_at_11px() {
        assert_eq!(text_width(""), 0);
        // Seven digits of 1303 units: 7.0 px each, like shields.io's table.
        assert_eq!(text_width("0000000"), 49);
        assert_eq!(text_width("up"), 14);
        assert_eq!(text_width("down"), 30);
        assert_eq!(text_width("iii"), 10);
        assert_eq!(text_width("WWW"), 33);
        // Anything else counts as an em.
        assert_eq!(text_width("é"), 11);
    }

    #[test]
    fn an_up_badge_is_this_svg() {
        let svg = status("backup", "ok", false).svg();
        assert_eq!(
            svg,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="74" height="20" role="img" aria-label="backup: up">
<title>backup: up</title>
<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>
<clipPath id="r"><rect width="74" height="20" rx="3" fill="#fff"/></clipPath>
<g clip-path="url(#r)"><rect width="50" height="20" fill="#555"/><rect x="50" width="24" height="20" fill="#4c1"/><rect width="74" height="20" fill="url(#s)"/></g>
<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">
<text x="25" y="15" fill="#010101" fill-opacity=".3">backup</text><text x="25" y="14">backup</text>
<text x="62" y="15" fill="#010101" fill-opacity=".3">up</text><text x="62" y="14">up</text>
</g>
</svg>
"##
        );
    }

    #[test]
    fn an_uptime_badge_is_this_svg() {
        let svg = uptime(4991, 5000).svg();
        assert_eq!(
            svg,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="128" height="20" role="img" aria-label="uptime 30d: 99.82%">
<title>uptime 30d: 99.82%</title>
<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>
<clipPath id="r"><rect width="128" height="20" rx="3" fill="#fff"/></clipPath>
<g clip-path="url(#r)"><rect width="74" height="20" fill="#555"/><rect x="74" width="54" height="20" fill="#97ca00"/><rect width="128" height="20" fill="url(#s)"/></g>
<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">
<text x="37" y="15" fill="#010101" fill-opacity=".3">uptime 30d</text><text x="37" y="14">uptime 30d</text>
<text x="101" y="15" fill="#010101" fill-opacity=".3">99.82%</text><text x="101" y="14">99.82%</text>
</g>
</svg>
"##
        );
    }

    #[test]
    fn special_characters_are_escaped() {
        let badge = Badge {
            label: r#"a<b>&"c'"#.into(),
            message: "down".into(),
            colour: Colour::Red,
        };
        let svg = badge.svg();
        let escaped = "a&lt;b&gt;&amp;&quot;c&#39;";
        assert!(
            svg.contains(&format!("<title>{escaped}: down</title>")),
            "{svg}"
        );
        assert!(
            svg.contains(&format!("aria-label=\"{escaped}: down\"")),
            "{svg}"
        );
        assert!(!svg.contains("a<b"), "{svg}");
    }

    /// Every badge is well-formed XML whose root is an `svg` with a `title` saying the
    /// label and message, and the text of both drawn (twice: shadow and text).
    #[test]
    fn badges_parse_as_xml_with_their_words_in_title_and_text() {
        use quick_xml::Reader;
        use quick_xml::events::Event;

        let badges = [
            status("backup", "critical", false),
            status("db.nightly_dump-2", "ok", true),
            uptime(0, 0),
            uptime(2, 3),
            Badge {
                label: r#"<&>"'"#.into(),
                message: "x & y".into(),
                colour: Colour::Yellow,
            },
        ];
        for badge in badges {
            let svg = badge.svg();
            let mut reader = Reader::from_str(&svg);
            reader.config_mut().check_end_names = true;
            let (mut path, mut roots) = (Vec::<String>::new(), Vec::new());
            let (mut title, mut texts, mut content) = (String::new(), Vec::new(), String::new());
            loop {
                match reader.read_event() {
                    Ok(Event::Start(e)) => {
                        let name = e.name().as_ref().to_owned();
                        if path.is_empty() {
                            roots.push(name.clone());
                        }
                        path.push(name);
                        content.clear();
                    }
                    Ok(Event::Empty(e)) => assert!(!path.is_empty(), "{:?}", e.name()),
                    Ok(Event::End(_)) => {
                        let text = std::mem::take(&mut content);
                        match path.pop().as_deref() {
                            Some("title") => title = text,
                            Some("text") => texts.push(text),
                            _ => assert!(text.trim().is_empty(), "stray {text:?} in\n{svg}"),
                        }
                    }
                    Ok(Event::Text(t)) => content.push_str(&t.xml10_content()),
                    // Quick-xml hands each entity (`&amp;`) over on its own.
                    Ok(Event::GeneralRef(r)) => match r.resolve_char_ref().unwrap() {
                        Some(c) => content.push(c),
                        None => {
                            let name = r.into_inner();
                            let resolved = quick_xml::escape::resolve_xml_entity(&name);
                            content.push_str(resolved.unwrap_or_else(|| panic!("&{name};")));
                        }
                    },
                    Ok(Event::Eof) => break,
                    Ok(_) => {}
                    Err(e) => panic!("not XML: {e}\n{svg}"),
                }
            }
            assert!(path.is_empty(), "unclosed {path:?}\n{svg}");
            assert_eq!(roots, ["svg"], "{svg}");
            assert_eq!(title, format!("{}: {}", badge.label, badge.message));
            assert_eq!(
                texts,
                [&*badge.label, &badge.label, &badge.message, &badge.message]
            );
        }
    }
}
