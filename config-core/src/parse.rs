//! How a plugin's table becomes its validated spec in one call: serde reads the table
//! into the plugin's raw struct (the file's shape), then the plugin's own validation
//! turns it into typed values. Both plugin crates' generated `parse` go through
//! [`parse_table`], so a check and a notifier fail the same two ways ([`ParseError`]).

use serde::de::{DeserializeOwned, Error as _};
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

use crate::ConfigIssue;

/// Why a plugin's table did not give a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The table does not have the plugin's shape (an unknown key, a wrong type, an
    /// unknown `type`): serde's error, located by it where it can say where.
    Shape(toml::de::Error),
    /// The table has the plugin's shape but its values are wrong: every problem, each
    /// at its place in the file.
    Invalid(Vec<ConfigIssue>),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Shape(e) => f.write_str(e.message()),
            ParseError::Invalid(issues) => {
                let messages: Vec<&str> = issues.iter().map(|i| i.message.as_str()).collect();
                f.write_str(&messages.join("; "))
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// Reads `table` as the raw struct `R`, then validates it with `validate`, which pushes
/// every problem it finds. A spec comes back only when there was none.
pub fn parse_table<R: DeserializeOwned, S>(
    table: Spanned<DeValue<'_>>,
    validate: impl FnOnce(R, &mut Vec<ConfigIssue>) -> Option<S>,
) -> Result<S, ParseError> {
    let raw = R::deserialize(ValueDeserializer::from(table)).map_err(ParseError::Shape)?;
    let mut issues = Vec::new();
    match validate(raw, &mut issues) {
        Some(spec) if issues.is_empty() => Ok(spec),
        _ => Err(ParseError::Invalid(issues)),
    }
}

/// The error for a `type` that is none of `types`, in serde's words (`unknown variant
/// …, expected one of …`), without a place: the caller knows where `type` was.
pub fn unknown_type(kind: &str, types: &'static [&'static str]) -> ParseError {
    ParseError::Shape(toml::de::Error::unknown_variant(kind, types))
}
