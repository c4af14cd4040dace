//! The body of one upstream attempt, built from slices of the client's buffer: the
//! `model` value replaced by the deployment's upstream model, and the deployment's
//! request defaults the client did not set spliced in after the opening `{`.
//!
//! The client's JSON is parsed once, on arrival ([`TopLevel::parse`]): where `model`
//! is, which top-level keys are set, and whether it asks for a stream. No attempt
//! copies the client's bytes; only the upstream model and the missing defaults are new.

use std::fmt;
use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::json_key::Key;
use crate::config::BodyDefault;

/// At most: before the brace, defaults, up to `model`, `model`, after it.
const PARTS: usize = 5;

/// An attempt's body: up to five pieces, sent in order.
#[derive(Debug, Clone, Default)]
pub struct AttemptBody {
    parts: [Bytes; PARTS],
    /// The first piece not sent yet.
    next: usize,
}

impl AttemptBody {
    fn new(pieces: impl IntoIterator<Item = Bytes>) -> AttemptBody {
        let mut parts: [Bytes; PARTS] = Default::default();
        for (slot, piece) in parts.iter_mut().zip(pieces.into_iter().filter(|p| !p.is_empty())) {
            *slot = piece;
        }
        AttemptBody { parts, next: 0 }
    }

    /// Pieces sent in order (a form: before the model, the model, after it).
    pub fn from_pieces(pieces: [Bytes; 3]) -> AttemptBody {
        AttemptBody::new(pieces)
    }

    /// The client's body as it is (not JSON, or a native API's).
    pub fn from_whole(body: Bytes) -> AttemptBody {
        AttemptBody::new([body])
    }

    /// The pieces still to send (tests check they share the client's buffer).
    pub fn pieces(&self) -> &[Bytes] {
        &self.parts[self.next..]
    }
}

impl Buf for AttemptBody {
    fn remaining(&self) -> usize {
        self.pieces().iter().map(Bytes::len).sum()
    }

    fn chunk(&self) -> &[u8] {
        self.pieces().iter().find(|p| !p.is_empty()).map_or(&[], |p| p.as_ref())
    }

    fn advance(&mut self, mut cnt: usize) {
        while cnt > 0 && self.next < PARTS {
            let part = &mut self.parts[self.next];
            let step = cnt.min(part.len());
            part.advance(step);
            cnt -= step;
            if part.is_empty() {
                self.next += 1;
            }
        }
        while self.next < PARTS && self.parts[self.next].is_empty() {
            self.next += 1;
        }
    }
}

/// What one parse of the client's JSON object tells every attempt.
#[derive(Debug, Clone, Default)]
pub struct TopLevel {
    /// The `model` string (taken for the request's alias once read), and its value's
    /// byte range (quotes included).
    pub model: Option<(String, Range<usize>)>,
    /// Top-level keys the client set (`null` values included), back to back:
    /// [`TopLevel::keys`] cuts them at `key_ends` (two allocations, not one per key).
    key_text: String,
    key_ends: Vec<usize>,
    /// Byte offset just after the opening `{`.
    open: usize,
    /// `"stream": true`.
    pub stream: bool,
    /// `model` is set but not a string.
    pub model_not_string: bool,
    /// `max_tokens`, `max_completion_tokens` or `max_output_tokens`: the most the
    /// completion may take, for the token reservation.
    pub max_tokens: Option<u64>,
    /// LiteLLM's `priority` field.
    pub priority: Option<crate::pool::Priority>,
}

impl TopLevel {
    /// Parses a body known to start (after whitespace) with `{`.
    pub fn parse(body: &[u8]) -> Result<TopLevel, serde_json::Error> {
        let open = body.len() - body.trim_ascii_start().len() + 1;
        let mut top: TopLevel = serde_json::from_slice::<Parsed>(body)?.0;
        top.open = open;
        if let Some((_, span)) = &mut top.model {
            // The value was found by address: turn it into an offset into `body`.
            let start = span.start - body.as_ptr() as usize;
            *span = start..start + span.len();
        }
        Ok(top)
    }

    pub fn has(&self, key: &str) -> bool {
        self.keys().any(|k| k == key)
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        let mut start = 0;
        self.key_ends.iter().map(move |&end| {
            let key = self.key_text.get(start..end).unwrap_or_default();
            start = end;
            key
        })
    }

    /// The attempt body for `body` (the buffer this was parsed from): `model` set to
    /// `upstream_model`, and each of `defaults` whose key the client did not set added.
    pub fn attempt(&self, body: &Bytes, upstream_model: &str, defaults: &[BodyDefault]) -> AttemptBody {
        // A string always serializes: the fallback is never taken.
        let model = Bytes::from(serde_json::to_vec(upstream_model).unwrap_or_default());
        let missing = defaults.iter().filter(|d| !self.has(&d.key));
        let mut spliced = BytesMut::new();
        for d in missing {
            if !spliced.is_empty() {
                spliced.extend_from_slice(b",");
            }
            spliced.extend_from_slice(&d.member);
        }
        if !spliced.is_empty() && !self.key_ends.is_empty() {
            spliced.extend_from_slice(b",");
        }
        let Some((_, span)) = &self.model else { return AttemptBody::new([body.clone()]) };
        let (open, span) = (self.open, span.clone());
        if spliced.is_empty() {
            return AttemptBody::new([body.slice(..span.start), model, body.slice(span.end..)]);
        }
        AttemptBody::new([
            body.slice(..open),
            spliced.freeze(),
            body.slice(open..span.start),
            model,
            body.slice(span.end..),
        ])
    }
}

/// Deserializes the top level of an object, keeping only what [`TopLevel`] needs.
struct Parsed(TopLevel);

impl<'de> de::Deserialize<'de> for Parsed {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TopVisitor).map(Parsed)
    }
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = TopLevel;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
        let mut top =
            TopLevel { key_text: String::with_capacity(64), key_ends: Vec::with_capacity(8), ..TopLevel::default() };
        let mut model_raw: Option<&'de RawValue> = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match &*key {
                "model" if model_raw.is_some() => return Err(de::Error::duplicate_field("model")),
                "model" => model_raw = Some(map.next_value()?),
                "stream" => top.stream = map.next_value::<&'de RawValue>()?.get() == "true",
                "max_tokens" | "max_completion_tokens" | "max_output_tokens" => {
                    let value = map.next_value::<&'de RawValue>()?.get().parse::<u64>().ok();
                    top.max_tokens = top.max_tokens.max(value);
                }
                "priority" => top.priority = crate::pool::Priority::parse(map.next_value::<&'de RawValue>()?.get()),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            top.key_text.push_str(&key);
            top.key_ends.push(top.key_text.len());
        }
        if let Some(raw) = model_raw {
            match serde_json::from_str::<String>(raw.get()) {
                Ok(name) => {
                    // An address for now: `TopLevel::parse` makes it an offset.
                    let start = raw.get().as_ptr() as usize;
                    top.model = Some((name, start..start + raw.get().len()));
                }
                Err(_) => top.model_not_string = true,
            }
        }
        Ok(top)
    }
}

#[cfg(test)]
#[path = "attempt_body_tests.rs"]
mod tests;
