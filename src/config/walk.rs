//! Typed access to a `serde_yaml::Value` tree for the LiteLLM reader, which walks
//! the document by hand so that it can warn about every key it does not use.

use std::time::Duration;

use serde_yaml::Value;

use super::bounds::{self, Zero};
use super::lines::join_index;
use super::validate::{Diags, Named};
use super::values::{de, NumOrText};

/// The message for every key keyrelay reads past.
pub(crate) const IGNORED: &str = "ignored: not implemented by keyrelay";

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

/// A string; `null` (`api_base: null`, `api_base:`) is "not set", as for pydantic's
/// optional fields.
pub(crate) fn string(diags: &mut Diags<'_>, value: &Value, path: &str) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => None,
        _ => {
            diags.error(path, "expected a string");
            None
        }
    }
}

/// A whole number checked against `min..=max` (see `bounds`), read as LiteLLM reads
/// it (PyYAML's YAML 1.1, then pydantic): `20_000`, `"100"` and `100.0` are 100-ish
/// numbers too, and `null` is "not set".
pub(crate) fn count<T: TryFrom<u64>>(
    diags: &mut Diags<'_>,
    value: &Value,
    path: &str,
    min: u64,
    max: u64,
) -> Option<T> {
    let n: u64 = match lenient_number(value) {
        Some(Lenient::Null) => return None,
        Some(Lenient::Whole(n)) => n,
        Some(Lenient::Fraction(_)) | None => de(diags, value.clone(), path)?,
    };
    bounds::count_at(diags, path, n, min, max)
}

/// LiteLLM durations are numbers of seconds (ints or floats, also in strings or with
/// YAML 1.1 underscores); `30s` style strings are accepted too; `null` is "not set".
pub(crate) fn seconds(diags: &mut Diags<'_>, value: &Value, path: &str, max: Duration, zero: Zero) -> Option<Duration> {
    let raw = match lenient_number(value) {
        Some(Lenient::Null) => return None,
        Some(Lenient::Whole(n)) => NumOrText::Int(n),
        Some(Lenient::Fraction(f)) => NumOrText::Float(f),
        None => de(diags, value.clone(), path)?,
    };
    bounds::duration_at(diags, path, &raw, max, zero)
}

enum Lenient {
    Null,
    Whole(u64),
    Fraction(f64),
}

/// A number as PyYAML and pydantic see it, where serde_yaml (YAML 1.2) sees text:
/// `20_000` (YAML 1.1 allows `_` between digits), `"100"` (pydantic's lax mode),
/// `+5`. `None` for anything else, which the strict path then reports.
fn lenient_number(value: &Value) -> Option<Lenient> {
    let text = match value {
        Value::Null => return Some(Lenient::Null),
        Value::Number(n) => {
            if let Some(n) = n.as_u64() {
                return Some(Lenient::Whole(n));
            }
            let f = n.as_f64()?;
            return whole(f).map(Lenient::Whole).or(Some(Lenient::Fraction(f)).filter(|_| f >= 0.0));
        }
        Value::String(s) => s.trim(),
        _ => return None,
    };
    let text = text.strip_prefix('+').unwrap_or(text);
    let digits_only = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    // Underscores only between digits: `_1` and `1_` are words, not numbers.
    let well_placed = !text.starts_with('_') && !text.ends_with('_') && !text.contains("__");
    let plain: String = text.chars().filter(|&c| c != '_').collect();
    if !well_placed || plain.is_empty() {
        return None;
    }
    if digits_only(&plain) {
        return plain.parse().ok().map(Lenient::Whole);
    }
    match plain.split_once('.') {
        Some((int, frac)) if digits_only(int) && (frac.is_empty() || digits_only(frac)) => {
            let f: f64 = plain.parse().ok()?;
            Some(whole(f).map_or(Lenient::Fraction(f), Lenient::Whole))
        }
        _ => None,
    }
}

/// `100.0` -> 100, as pydantic takes an exact float for an int.
fn whole(f: f64) -> Option<u64> {
    // 2^53: beyond it a float no longer holds every whole number.
    (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f <= 9_007_199_254_740_992.0).then_some(f as u64)
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
