//! Typed access to a `serde_yaml::Value` tree for the LiteLLM reader, which walks
//! the document by hand so that it can warn about every key it does not use.

use std::time::Duration;

use serde_yaml::Value;

use super::bounds::{self, Zero};
use super::lines::{join_index, join_key};
use super::validate::{Diags, Named};
use super::values::{de, NumOrText};

/// The message for every key keyrelay reads past.
pub(crate) const IGNORED: &str = "ignored: not implemented by keyrelay";

/// Warns about every key of a section keyrelay does not read.
pub(crate) fn ignore_all(diags: &mut Diags<'_>, value: &Value, path: &str) {
    match value {
        Value::Mapping(_) => {
            for (key, _) in entries(diags, value, path) {
                diags.warn(&join_key(path, &key), IGNORED);
            }
        }
        Value::Null => {}
        _ => diags.warn(path, IGNORED),
    }
}

/// The string-keyed entries of a mapping; anything else is reported.
pub(crate) fn entries<'v>(diags: &mut Diags<'_>, value: &'v Value, path: &str) -> Vec<(String, &'v Value)> {
    let map = match value {
        Value::Mapping(m) => m,
        Value::Null => return Vec::new(),
        _ => {
            diags.error(path, "expected a mapping");
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        match k {
            Value::String(s) => out.push((s.clone(), v)),
            Value::Number(n) => out.push((n.to_string(), v)),
            _ => diags.error(path, "keys must be strings"),
        }
    }
    out
}

pub(crate) fn string(diags: &mut Diags<'_>, value: &Value, path: &str) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => {
            diags.error(path, "expected a string");
            None
        }
    }
}

/// A whole number checked against `min..=max` (see `bounds`).
pub(crate) fn count<T: TryFrom<u64>>(
    diags: &mut Diags<'_>,
    value: &Value,
    path: &str,
    min: u64,
    max: u64,
) -> Option<T> {
    let n: u64 = de(diags, value.clone(), path)?;
    bounds::count_at(diags, path, n, min, max)
}

/// LiteLLM durations are numbers of seconds; `30s` style strings are accepted too.
pub(crate) fn seconds(diags: &mut Diags<'_>, value: &Value, path: &str, max: Duration, zero: Zero) -> Option<Duration> {
    let raw: NumOrText = de(diags, value.clone(), path)?;
    bounds::duration_at(diags, path, &raw, max, zero)
}

/// A list of alias names (a single name is accepted as a list of one).
pub(crate) fn names(diags: &mut Diags<'_>, value: &Value, path: &str) -> Vec<Named> {
    match value {
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let at = join_index(path, i);
                string(diags, v, &at).map(|value| Named { value, path: at })
            })
            .collect(),
        Value::String(s) => vec![Named { value: s.clone(), path: path.to_owned() }],
        Value::Null => Vec::new(),
        _ => {
            diags.error(path, "expected a list of model names");
            Vec::new()
        }
    }
}
