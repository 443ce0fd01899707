//! Test helpers: deserialize a check table from TOML text the way the root crate does,
//! through `ValueDeserializer` over a spanned value, so spans are real file offsets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::ConfigIssue;

/// Deserializes `text` (the body of a check table, without `type`) as `T`.
pub(crate) fn try_config<T: DeserializeOwned>(text: &str) -> Result<T, toml::de::Error> {
    let table = DeTable::parse(text)?;
    // The document's own span is empty; a check table spans its text, as in a file.
    let value = Spanned::new(0..text.len(), DeValue::Table(table.into_inner()));
    T::deserialize(ValueDeserializer::from(value))
}

/// Like [`try_config`], panicking with serde's message when it fails.
pub(crate) fn config<T: DeserializeOwned>(text: &str) -> T {
    try_config(text).unwrap_or_else(|e| panic!("{text}\n{e}"))
}

/// The issues validation reports for `text`; asserts that it returned no spec.
pub(crate) fn issues_of<T: DeserializeOwned, S>(
    text: &str,
    validate: impl FnOnce(T, &mut Vec<ConfigIssue>) -> Option<S>,
) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    let spec = validate(config(text), &mut issues);
    assert!(spec.is_none(), "validation of {text:?} returned a spec");
    assert!(!issues.is_empty());
    issues
}
