//! Scalar values both formats share: durations, sizes, addresses, secret names, and
//! a serde bridge that turns deserialization failures into diagnostics with a path.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::Deserialize;
use serde_path_to_error::Segment;

use super::keylike;
use super::lines::{join_index, join_key};
use super::validate::Diags;

/// A YAML scalar that may be written as a number or as text (`30`, `30s`, `32MiB`).
/// Kept raw so that a bad value becomes a diagnostic in the conversion pass, next to
/// every other error, instead of aborting deserialization.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NumOrText {
    Int(u64),
    Float(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for NumOrText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumOrText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumOrText, E> {
                Ok(NumOrText::Int(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumOrText, E> {
                u64::try_from(v).map(NumOrText::Int).map_err(|_| E::custom("must not be negative"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumOrText, E> {
                Ok(NumOrText::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NumOrText, E> {
                Ok(NumOrText::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `5s`, `2m`, `500ms`, `1h 30m` (humantime), or a plain number of seconds.
pub(crate) fn parse_duration(value: &NumOrText) -> Result<Duration, String> {
    match value {
        NumOrText::Int(secs) => Ok(Duration::from_secs(*secs)),
        NumOrText::Float(secs) => seconds_f64(*secs),
        NumOrText::Text(text) => {
            let text = text.trim();
            if let Ok(secs) = text.parse::<f64>() {
                return seconds_f64(secs);
            }
            humantime::parse_duration(text)
                .map_err(|e| format!("invalid duration {text:?} ({e}); use e.g. 5s, 2m, 500ms or a number of seconds"))
        }
    }
}

fn seconds_f64(secs: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("invalid duration {secs}: must be a non-negative number of seconds"))
}

/// A byte count: an integer, or a number with a `B`, `KB`, `MB`, `GB`, `KiB`, `MiB`
/// or `GiB` suffix (case-insensitive, space allowed).
pub(crate) fn parse_size(value: &NumOrText) -> Result<usize, String> {
    let bytes = match value {
        NumOrText::Int(n) => *n,
        NumOrText::Float(_) => return Err("a size must be a whole number of bytes or e.g. 32MiB".into()),
        NumOrText::Text(text) => {
            let text = text.trim();
            let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
            let (digits, unit) = text.split_at(split);
            let n: u64 = digits.parse().map_err(|_| format!("invalid size {text:?}; use e.g. 32MiB or 1048576"))?;
            let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "kb" | "k" => 1000,
                "mb" | "m" => 1000 * 1000,
                "gb" | "g" => 1000 * 1000 * 1000,
                "kib" | "ki" => 1 << 10,
                "mib" | "mi" => 1 << 20,
                "gib" | "gi" => 1 << 30,
                other => return Err(format!("unknown size unit {other:?}; use B, KB, MB, GB, KiB, MiB or GiB")),
            };
            n.checked_mul(mult).ok_or_else(|| format!("size {text:?} is too large"))?
        }
    };
    if bytes == 0 {
        return Err("must be greater than zero".into());
    }
    usize::try_from(bytes).map_err(|_| "size is too large".to_owned())
}

/// A socket address; `localhost:PORT` is accepted as `127.0.0.1:PORT`.
pub(crate) fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let normalized = match text.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => text.to_owned(),
    };
    normalized
        .parse()
        .map_err(|_| format!("invalid address {text:?}: expected IP:PORT, e.g. 127.0.0.1:4000 or [::1]:4000"))
}

/// Checks a secret name. The message never repeats the name: a pasted key value is
/// the most common "bad name".
pub(crate) fn check_secret_name(name: &str) -> Result<(), String> {
    // 253: the longest key a Kubernetes Secret may have.
    let valid = !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err("not a valid secret name (at most 253 letters, digits, '.', '_', '-', not starting with '.'; \
             the name is not shown)"
            .into());
    }
    if keylike::looks_like_key(name) {
        return Err("this looks like an API key, not a secret name: put the key in the Secret and write the \
                    name it has there (the value is not shown)"
            .into());
    }
    Ok(())
}

/// Deserializes `value` into `T`, reporting a failure at `base` + the path inside the
/// value. Returns `None` after reporting.
pub(crate) fn de<T: DeserializeOwned>(diags: &mut Diags<'_>, value: serde_yaml::Value, base: &str) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(err) => {
            let mut path = base.to_owned();
            for segment in err.path().iter() {
                path = match segment {
                    Segment::Seq { index } => join_index(&path, *index),
                    Segment::Map { key } | Segment::Enum { variant: key } => join_key(&path, key),
                    Segment::Unknown => join_key(&path, "?"),
                };
            }
            let message = redact_serde_message(&err.into_inner().to_string());
            diags.error(&path, message);
            None
        }
    }
}

/// serde quotes offending string values (`invalid type: string "sk-...", expected
/// a sequence`); a string in a config may be a key, so the quote is dropped. An
/// unknown field is named unless its name looks like a key.
fn redact_serde_message(message: &str) -> String {
    for prefix in ["invalid type: string ", "invalid value: string "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some(at) = rest.rfind(", expected ") {
                let kind = &prefix[..prefix.len() - 1];
                return format!("{kind}{}", &rest[at..]);
            }
        }
    }
    if let Some((field, rest)) = message.strip_prefix("unknown field `").and_then(|m| m.split_once('`')) {
        if keylike::looks_like_key(field) {
            return format!("unknown field {}{rest}", keylike::shown(field));
        }
    }
    message.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> NumOrText {
        NumOrText::Text(s.into())
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration(&text("5s")), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration(&text("2m")), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration(&text("500ms")), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration(&text("1h 30m")), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(&text("30")), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration(&NumOrText::Int(300)), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration(&NumOrText::Float(1.5)), Ok(Duration::from_millis(1500)));
        assert!(parse_duration(&text("soon")).unwrap_err().contains("5s"));
        assert!(parse_duration(&NumOrText::Float(-1.0)).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size(&text("32MiB")), Ok(32 << 20));
        assert_eq!(parse_size(&text("1 GiB")), Ok(1 << 30));
        assert_eq!(parse_size(&text("10KB")), Ok(10_000));
        assert_eq!(parse_size(&text("2mb")), Ok(2_000_000));
        assert_eq!(parse_size(&text("512B")), Ok(512));
        assert_eq!(parse_size(&text("4096")), Ok(4096));
        assert_eq!(parse_size(&NumOrText::Int(1024)), Ok(1024));
        assert!(parse_size(&text("32 parsecs")).is_err());
        assert!(parse_size(&text("MiB")).is_err());
        assert!(parse_size(&NumOrText::Int(0)).is_err());
        assert!(parse_size(&NumOrText::Float(1.5)).is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("127.0.0.1:4000"), Ok(SocketAddr::from(([127, 0, 0, 1], 4000))));
        assert_eq!(parse_addr("localhost:9901"), Ok(SocketAddr::from(([127, 0, 0, 1], 9901))));
        assert!(parse_addr("[::1]:4000").is_ok());
        assert!(parse_addr("4000").is_err());
    }

    #[test]
    fn secret_names() {
        assert!(check_secret_name("OPENAI_API_KEY_2").is_ok());
        assert!(check_secret_name("pool.txt").is_ok());
        assert!(check_secret_name("..data").is_err());
        assert!(check_secret_name("a/b").is_err());
        assert!(check_secret_name("").is_err());
        assert!(check_secret_name(&"K".repeat(254)).is_err());
        let err = check_secret_name("sk-proj-abcdef").unwrap_err();
        assert!(!err.contains("abcdef"));
        let err = check_secret_name("aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z").unwrap_err();
        assert!(err.contains("looks like an API key") && !err.contains("aB3dE5fG"), "{err}");
    }

    #[test]
    fn serde_messages_drop_string_values() {
        let m = redact_serde_message("invalid type: string \"sk-secret\", expected a sequence");
        assert_eq!(m, "invalid type: string, expected a sequence");
        assert_eq!(redact_serde_message("missing field `model`"), "missing field `model`");
        let m = redact_serde_message("unknown field `gsk_Wq8Xk2Lp9Vz3Nt7Rb5Mc1Yd6Hf4Jg0Ks2Ae8Qw3Ez`, expected `a`");
        assert!(!m.contains("Wq8Xk2Lp") && m.ends_with(", expected `a`"), "{m}");
        let m = redact_serde_message("unknown field `wieght`, expected `weight`");
        assert_eq!(m, "unknown field `wieght`, expected `weight`");
    }
}
