//! The fields of a response object that usage accounting reads, parsed into what it
//! reads from them and nothing else.
//!
//! A body is mostly generated text (`choices`, `content`, `candidates`): that is
//! checked as JSON and skipped. What is read is typed as `Value::get` chains would see
//! it: the last of a repeated key, a value of another type than expected read as
//! absent (a float token count is no count), and input that a whole-`Value` parse
//! refuses refused too. The tests hold this to a whole-`Value` parse.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::json_key::Key;

/// What one response object (a JSON body, or one SSE chunk's data) says about usage.
#[derive(Debug, Default)]
pub(super) struct Fields {
    /// `model`: `Some` when present, holding its text when it is a string.
    pub model: Option<Text>,
    /// `modelVersion` (Gemini), likewise.
    pub model_version: Option<Text>,
    /// `message` (Anthropic's `message_start`); empty when not an object.
    pub message: Option<Message>,
    pub usage: Option<Tokens>,
    /// `usageMetadata` (Gemini).
    pub usage_metadata: Option<Tokens>,
}

/// A string's text; `None` for a value of any other type.
#[derive(Debug, Default)]
pub(super) struct Text(pub Option<String>);

#[derive(Debug, Default)]
pub(super) struct Message {
    pub model: Option<String>,
    pub usage: Option<Tokens>,
}

/// The token counts read from a usage object, by [`TOKEN_KEYS`].
#[derive(Debug, Default)]
pub(super) struct Tokens {
    /// Whether the value was an object (otherwise it has no counts).
    pub object: bool,
    counts: [Option<u64>; TOKEN_KEYS.len()],
}

/// The counts any provider's usage object is read for.
const TOKEN_KEYS: [&str; 6] =
    ["prompt_tokens", "completion_tokens", "input_tokens", "output_tokens", "promptTokenCount", "candidatesTokenCount"];

impl Tokens {
    /// The count under `key` (one of [`TOKEN_KEYS`]) when it is an unsigned integer.
    pub fn get(&self, key: &str) -> Option<u64> {
        TOKEN_KEYS.iter().position(|k| *k == key).and_then(|i| self.counts[i])
    }
}

/// The fields of `data`; `None` where it is not JSON.
pub(super) fn read(data: &[u8]) -> Option<Fields> {
    serde_json::from_slice::<Lenient<Fields>>(data).ok().map(|l| l.0)
}

/// What a reader takes from a JSON value of whatever type it turns out to be; the
/// types it does not read give [`Take::other`] (checked as JSON and skipped).
trait Take<'de>: Sized {
    fn other() -> Self;

    fn text(_: &str) -> Self {
        Self::other()
    }

    fn unsigned(_: u64) -> Self {
        Self::other()
    }

    fn object<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Self::other())
    }
}

struct Count(Option<u64>);

impl Take<'_> for Count {
    fn other() -> Self {
        Count(None)
    }

    fn unsigned(n: u64) -> Self {
        Count(Some(n))
    }
}

impl Take<'_> for Text {
    fn other() -> Self {
        Text(None)
    }

    fn text(text: &str) -> Self {
        Text(Some(text.to_owned()))
    }
}

impl<'de> Take<'de> for Tokens {
    fn other() -> Self {
        Tokens::default()
    }

    fn object<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut tokens = Tokens { object: true, counts: [None; TOKEN_KEYS.len()] };
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match TOKEN_KEYS.iter().position(|k| *k == key.0) {
                Some(i) => tokens.counts[i] = map.next_value::<Lenient<Count>>()?.0 .0,
                None => skip(&mut map)?,
            }
        }
        Ok(tokens)
    }
}

impl<'de> Take<'de> for Message {
    fn other() -> Self {
        Message::default()
    }

    fn object<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut message = Message::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "model" => message.model = map.next_value::<Lenient<Text>>()?.0 .0,
                "usage" => message.usage = Some(map.next_value::<Lenient<Tokens>>()?.0),
                _ => skip(&mut map)?,
            }
        }
        Ok(message)
    }
}

impl<'de> Take<'de> for Fields {
    /// Not an object: none of its fields are there.
    fn other() -> Self {
        Fields::default()
    }

    fn object<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "model" => fields.model = Some(map.next_value::<Lenient<Text>>()?.0),
                "modelVersion" => fields.model_version = Some(map.next_value::<Lenient<Text>>()?.0),
                "message" => fields.message = Some(map.next_value::<Lenient<Message>>()?.0),
                "usage" => fields.usage = Some(map.next_value::<Lenient<Tokens>>()?.0),
                "usageMetadata" => fields.usage_metadata = Some(map.next_value::<Lenient<Tokens>>()?.0),
                _ => skip(&mut map)?,
            }
        }
        Ok(fields)
    }
}

fn skip<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<IgnoredAny>().map(|_| ())
}

/// Any JSON value, read by `T` for what it takes from it.
struct Lenient<T>(T);

impl<'de, T: Take<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor(PhantomData)).map(Lenient)
    }
}

struct LenientVisitor<T>(PhantomData<T>);

impl<'de, T: Take<'de>> Visitor<'de> for LenientVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<T, E> {
        Ok(T::other())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<T, E> {
        Ok(T::other())
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<T, E> {
        Ok(T::unsigned(n))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<T, E> {
        Ok(T::other())
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        Ok(T::text(text))
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok(T::other())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(T::other())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::object(map)
    }
}
