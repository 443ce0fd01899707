//! Timestamps in JSON, for `#[serde(with = "klaxon_notifiers::rfc3339")]` (and
//! `rfc3339::option` for an `Option`): the same text as chrono's own `Serialize`
//! (RFC 3339, `Z` for UTC, as many fraction digits as the time has), made in one piece.
//! chrono's impl hands serde_json one character at a time, each escaped on its own, and
//! that was the largest single cost of storing and sending an alert. Reading takes the
//! RFC 3339 fast path first and chrono's lenient parser only when that fails.

use std::fmt;

use chrono::{DateTime, FixedOffset, SecondsFormat, TimeZone, Utc};
use serde::{Deserializer, Serializer, de};

/// A time zone a timestamp can be read into.
pub trait Zone: TimeZone + Sized {
    fn from_fixed(at: DateTime<FixedOffset>) -> DateTime<Self>;
}

impl Zone for FixedOffset {
    fn from_fixed(at: DateTime<FixedOffset>) -> DateTime<Self> {
        at
    }
}

impl Zone for Utc {
    fn from_fixed(at: DateTime<FixedOffset>) -> DateTime<Self> {
        at.with_timezone(&Utc)
    }
}

/// The text chrono's `Serialize` writes for `at`.
fn text<Tz: TimeZone>(at: &DateTime<Tz>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub fn serialize<Tz: TimeZone, S: Serializer>(at: &DateTime<Tz>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&text(at))
}

pub fn deserialize<'de, Tz: Zone, D: Deserializer<'de>>(d: D) -> Result<DateTime<Tz>, D::Error> {
    d.deserialize_str(Visitor).map(Tz::from_fixed)
}

struct Visitor;

impl de::Visitor<'_> for Visitor {
    type Value = DateTime<FixedOffset>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an RFC 3339 formatted date and time string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        DateTime::parse_from_rfc3339(v)
            .or_else(|_| v.parse())
            .map_err(E::custom)
    }
}

/// The same for an `Option` (`null` when `None`); a missing field reads as `None`
/// with `#[serde(default)]` beside it.
pub mod option {
    use super::*;

    pub fn serialize<Tz: TimeZone, S: Serializer>(
        at: &Option<DateTime<Tz>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => super::serialize(at, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, Tz: Zone, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<DateTime<Tz>>, D::Error> {
        d.deserialize_option(OptionVisitor)
            .map(|at| at.map(Tz::from_fixed))
    }

    struct OptionVisitor;

    impl<'de> de::Visitor<'de> for OptionVisitor {
        type Value = Option<DateTime<FixedOffset>>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an RFC 3339 formatted date and time string or null")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(Visitor).map(Some)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    /// Written by chrono's own impls, for comparison.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Chrono {
        fixed: DateTime<FixedOffset>,
        utc: DateTime<Utc>,
        maybe: Option<DateTime<Utc>>,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Ours {
        #[serde(with = "super")]
        fixed: DateTime<FixedOffset>,
        #[serde(with = "super")]
        utc: DateTime<Utc>,
        #[serde(with = "super::option", default)]
        maybe: Option<DateTime<Utc>>,
    }

    fn both(fixed: &str, utc: &str, maybe: Option<&str>) -> (Chrono, Ours) {
        let fixed = DateTime::parse_from_rfc3339(fixed).unwrap();
        let utc = DateTime::parse_from_rfc3339(utc)
            .unwrap()
            .with_timezone(&Utc);
        let maybe = maybe.map(|m| DateTime::parse_from_rfc3339(m).unwrap().with_timezone(&Utc));
        (Chrono { fixed, utc, maybe }, Ours { fixed, utc, maybe })
    }

    #[test]
    fn writes_what_chrono_writes_and_reads_it_back() {
        let cases = [
            ("2026-03-29T10:15:02+11:00", "2026-03-28T23:15:02Z", None),
            (
                "2026-03-29T10:15:02.5-03:30",
                "2026-03-28T23:15:02.123Z",
                Some("2026-11-24T14:42:26.123456789Z"),
            ),
            (
                "1999-12-31T23:59:60.250+00:00",
                "2026-01-01T00:00:00.000001Z",
                Some("2026-01-01T00:00:00Z"),
            ),
        ];
        for (fixed, utc, maybe) in cases {
            let (chrono, ours) = both(fixed, utc, maybe);
            let written = serde_json::to_string(&ours).unwrap();
            assert_eq!(written, serde_json::to_string(&chrono).unwrap());
            assert_eq!(serde_json::from_str::<Ours>(&written).unwrap(), ours);
            assert_eq!(serde_json::from_str::<Chrono>(&written).unwrap(), chrono);
        }
    }

    #[test]
    fn reads_what_chrono_reads() {
        // Not RFC 3339 (a space for `T`), but chrono's parser takes it.
        let json = r#"{"fixed":"2026-03-29 10:15:02+11:00","utc":"2026-03-28T23:15:02Z"}"#;
        let ours: Ours = serde_json::from_str(json).unwrap();
        let chrono: Chrono = serde_json::from_str(json).unwrap();
        assert_eq!(
            (ours.fixed, ours.utc, ours.maybe),
            (chrono.fixed, chrono.utc, None)
        );
        let null =
            r#"{"fixed":"2026-03-29T10:15:02+11:00","utc":"2026-03-28T23:15:02Z","maybe":null}"#;
        assert_eq!(serde_json::from_str::<Ours>(null).unwrap().maybe, None);
    }

    #[test]
    fn a_bad_timestamp_is_an_error_that_says_what_was_expected() {
        let json = r#"{"fixed":"yesterday","utc":"2026-03-28T23:15:02Z"}"#;
        let err = serde_json::from_str::<Ours>(json).unwrap_err().to_string();
        assert!(err.contains("input contains invalid characters"), "{err}");
        let json = r#"{"fixed":17,"utc":"2026-03-28T23:15:02Z"}"#;
        let err = serde_json::from_str::<Ours>(json).unwrap_err().to_string();
        assert!(
            err.contains("an RFC 3339 formatted date and time string"),
            "{err}"
        );
    }
}
