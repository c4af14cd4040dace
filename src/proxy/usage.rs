//! Token usage read from responses on their way to the client, without buffering
//! what the client receives: the `usage` object of a JSON body, or of the final SSE
//! chunk of a stream (OpenAI, Anthropic and Gemini spellings). The answering `model`
//! is taken from the same objects, for the trace's `gen_ai.response.model`.

use std::borrow::Cow;
use std::fmt;

use http::HeaderMap;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

/// JSON bodies larger than this are relayed without usage accounting.
const JSON_LIMIT: usize = 4 * 1024 * 1024;
/// One SSE line longer than this is skipped: the tap holds at most one partial line,
/// so a stream that never ends a line cannot grow it without bound.
const LINE_LIMIT: usize = 1024 * 1024;

/// The top-level fields of a response object that [`UsageTap`] reads (see `absorb`).
const READ_FIELDS: [&str; 5] = ["model", "modelVersion", "message", "usage", "usageMetadata"];

/// An object with only the [`READ_FIELDS`] of `data`. The rest (the generated text in
/// `choices`, `content`, `candidates`: nearly all of a body) is checked as JSON and
/// skipped, never built into values. `None` where `data` is not a JSON object, which
/// is where a whole `Value` would have had none of those fields either.
fn read_fields(data: &[u8]) -> Option<Value> {
    let Found(found) = serde_json::from_slice(data).ok()?;
    let mut fields = serde_json::Map::new();
    for (name, raw) in READ_FIELDS.iter().zip(found) {
        if let Some(raw) = raw {
            fields.insert((*name).to_owned(), serde_json::from_str(raw.get()).ok()?);
        }
    }
    Some(Value::Object(fields))
}

/// The raw values of an object's [`READ_FIELDS`], in that order (the last of a
/// repeated key, as a whole-`Value` parse keeps). Keys are compared where they lie in
/// the input: nothing is allocated for the fields skipped.
struct Found<'de>([Option<&'de RawValue>; READ_FIELDS.len()]);

impl<'de> Deserialize<'de> for Found<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FoundVisitor)
    }
}

struct FoundVisitor;

impl<'de> Visitor<'de> for FoundVisitor {
    type Value = Found<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found<'de>, A::Error> {
        let mut found = [None; READ_FIELDS.len()];
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match READ_FIELDS.iter().position(|name| *name == key.0) {
                Some(i) => found[i] = Some(map.next_value()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Found(found))
    }
}

/// An object key: borrowed from the input, or owned where it had escapes to undo.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(key)))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(key.to_owned())))
    }
}

/// Tokens one response used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
}

/// Watches a response body go by and extracts its usage.
#[derive(Debug)]
pub struct UsageTap {
    sse: bool,
    buf: Vec<u8>,
    overflow: bool,
    usage: Option<Usage>,
    model: Option<String>,
}

impl UsageTap {
    /// A tap for a response with these headers, or `None` if it cannot carry usage.
    pub fn for_response(headers: &HeaderMap) -> Option<Self> {
        let ct = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?.to_ascii_lowercase();
        let sse = ct.starts_with("text/event-stream");
        (sse || ct.contains("json")).then(|| UsageTap {
            sse,
            buf: Vec::new(),
            overflow: false,
            usage: None,
            model: None,
        })
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if !self.sse {
            if self.buf.len() + chunk.len() > JSON_LIMIT {
                self.overflow = true;
                self.buf = Vec::new();
            } else if !self.overflow {
                self.buf.extend_from_slice(chunk);
            }
            return;
        }
        for &b in chunk {
            // SSE lines end with LF, CRLF or a lone CR; CRLF's extra empty line is harmless.
            if b == b'\n' || b == b'\r' {
                let line = std::mem::take(&mut self.buf);
                if !self.overflow {
                    self.sse_line(&line);
                }
                self.overflow = false;
            } else if self.buf.len() < LINE_LIMIT {
                self.buf.push(b);
            } else {
                self.overflow = true;
            }
        }
    }

    /// The usage seen, once the body has ended.
    pub fn finish(self) -> Option<Usage> {
        self.finish_with_model().0
    }

    /// The usage and the answering model seen, once the body has ended.
    pub fn finish_with_model(mut self) -> (Option<Usage>, Option<String>) {
        if !self.sse && !self.overflow {
            if let Some(v) = read_fields(&self.buf) {
                self.absorb(&v);
            }
        } else if self.sse && !self.buf.is_empty() && !self.overflow {
            let line = std::mem::take(&mut self.buf);
            self.sse_line(&line);
        }
        (self.usage, self.model)
    }

    fn sse_line(&mut self, line: &[u8]) {
        let Some(data) = line.strip_prefix(b"data:") else { return };
        let data = data.trim_ascii();
        // Cheap filter: only chunks that mention usage are parsed.
        if !data.windows(5).any(|w| w.eq_ignore_ascii_case(b"usage")) {
            return;
        }
        if let Some(v) = read_fields(data) {
            self.absorb(&v);
        }
    }

    /// Takes the largest counts seen: streams report cumulative numbers.
    fn absorb(&mut self, v: &Value) {
        if self.model.is_none() {
            let model = v.get("model").or_else(|| v.get("modelVersion")).or_else(|| v.get("message")?.get("model"));
            self.model = model.and_then(Value::as_str).map(|m| m.chars().take(200).collect());
        }
        let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
        let found = if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            // OpenAI (prompt/completion) or Anthropic message_delta (input/output).
            Some((n(u, "prompt_tokens").or(n(u, "input_tokens")), n(u, "completion_tokens").or(n(u, "output_tokens"))))
        } else if let Some(u) = v.get("message").and_then(|m| m.get("usage")) {
            // Anthropic message_start.
            Some((n(u, "input_tokens"), n(u, "output_tokens")))
        } else {
            v.get("usageMetadata").map(|u| (n(u, "promptTokenCount"), n(u, "candidatesTokenCount")))
        };
        if let Some((input, output)) = found {
            let usage = self.usage.get_or_insert_with(Usage::default);
            usage.input = usage.input.max(input.unwrap_or(0));
            usage.output = usage.output.max(output.unwrap_or(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tap(ct: &str) -> UsageTap {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, ct.parse().unwrap());
        UsageTap::for_response(&h).unwrap()
    }

    #[test]
    fn json_usage_across_chunks() {
        let mut t = tap("application/json");
        t.feed(br#"{"id":"x","usage":{"prompt_to"#);
        t.feed(br#"kens":12,"completion_tokens":30,"total_tokens":42}}"#);
        assert_eq!(t.finish(), Some(Usage { input: 12, output: 30 }));
    }

    #[test]
    fn openai_sse_final_chunk_split_mid_line() {
        let mut t = tap("text/event-stream; charset=utf-8");
        t.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[],\"us");
        t.feed(b"age\":{\"prompt_tokens\":5,\"completion_tokens\":7},\"model\":\"m-2024\"}\n\ndata: [DONE]\n\n");
        assert_eq!(t.finish_with_model(), (Some(Usage { input: 5, output: 7 }), Some("m-2024".to_owned())));
    }

    #[test]
    fn anthropic_and_gemini_spellings() {
        let mut t = tap("text/event-stream");
        t.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n");
        t.feed(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n");
        assert_eq!(t.finish(), Some(Usage { input: 9, output: 15 }));
        let mut t = tap("application/json");
        t.feed(br#"{"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":4}}"#);
        assert_eq!(t.finish(), Some(Usage { input: 3, output: 4 }));
    }

    #[test]
    fn sse_lines_may_end_with_cr_alone() {
        let mut t = tap("text/event-stream");
        t.feed(b"data: {\"choices\":[]}\r\rdata: {\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}\r\r");
        assert_eq!(t.finish(), Some(Usage { input: 2, output: 3 }));
    }

    #[test]
    fn a_line_that_never_ends_is_held_only_up_to_the_limit() {
        let mut t = tap("text/event-stream");
        let junk = vec![b'x'; 64 * 1024];
        for _ in 0..48 {
            t.feed(&junk);
            assert!(t.buf.len() <= LINE_LIMIT);
        }
        t.feed(b"\ndata: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n");
        assert_eq!(t.finish(), Some(Usage { input: 1, output: 1 }), "the stream recovers after the long line");
    }

    #[test]
    fn no_usage_or_garbage_is_none() {
        let mut t = tap("application/json");
        t.feed(b"{not json");
        assert_eq!(t.finish(), None);
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, "audio/mpeg".parse().unwrap());
        assert!(UsageTap::for_response(&h).is_none());
    }

    /// One SSE event, as a provider might send it (or garble it).
    #[derive(Debug, Clone)]
    enum Event {
        Content(String),
        Usage(u64, u64),
        Comment(String),
        Garbage(Vec<u8>),
        Done,
    }

    fn event() -> impl proptest::strategy::Strategy<Value = Event> {
        use proptest::prelude::*;
        prop_oneof![
            any::<String>().prop_map(Event::Content),
            (any::<u64>(), any::<u64>()).prop_map(|(i, o)| Event::Usage(i, o)),
            "[ -~]{0,40}".prop_map(Event::Comment),
            proptest::collection::vec(any::<u8>().prop_filter("no line end", |b| *b != b'\n' && *b != b'\r'), 0..200)
                .prop_map(Event::Garbage),
            Just(Event::Done),
        ]
    }

    fn frame(event: &Event, eol: &str) -> Vec<u8> {
        let text = match event {
            Event::Content(c) => {
                let chunk = serde_json::json!({"choices": [{"delta": {"content": c}}]});
                format!("data: {chunk}{eol}{eol}")
            }
            Event::Usage(i, o) => {
                let chunk = serde_json::json!({"choices": [], "usage": {"prompt_tokens": i, "completion_tokens": o}});
                format!("event: chunk{eol}data: {chunk}{eol}{eol}")
            }
            Event::Comment(c) => format!(": {c}{eol}"),
            Event::Garbage(bytes) => {
                let mut line = b"x".to_vec();
                line.extend_from_slice(bytes);
                line.extend_from_slice(eol.as_bytes());
                return line;
            }
            Event::Done => format!("data: [DONE]{eol}{eol}"),
        };
        text.into_bytes()
    }

    /// Cuts `bytes` at the given points (taken modulo its length).
    fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        at.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for cut in at.into_iter().chain([bytes.len()]) {
            chunks.push(bytes[start..cut].to_vec());
            start = cut;
        }
        chunks
    }

    /// Any JSON value, objects favouring the fields usage is read from.
    fn json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(|n| Value::from(n % 100_000)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            "[a-z0-9-]{0,12}".prop_map(Value::from),
        ];
        let key = prop_oneof![
            proptest::sample::select(&READ_FIELDS[..]).prop_map(str::to_owned),
            proptest::sample::select(
                &["prompt_tokens", "completion_tokens", "input_tokens", "output_tokens", "promptTokenCount"][..]
            )
            .prop_map(str::to_owned),
            proptest::sample::select(&["candidatesTokenCount", "choices", "id", "content"][..]).prop_map(str::to_owned),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((key.clone(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// The slow path the tap used to take: the whole body as one `Value`.
    fn absorbed_whole(data: &[u8]) -> (Option<Usage>, Option<String>) {
        let mut t = tap("application/json");
        if let Ok(v) = serde_json::from_slice::<Value>(data) {
            t.absorb(&v);
        }
        (t.usage, t.model)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// Reading only the fields `absorb` looks at gives what the whole `Value` gave,
        /// for any JSON (and for any bytes at all, including a key written twice).
        #[test]
        fn reading_only_the_usage_fields_matches_parsing_the_whole_body(
            value in json(),
            garble in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..8),
            duplicate in proptest::prelude::any::<bool>(),
        ) {
            let mut bytes = serde_json::to_vec(&value).unwrap();
            if duplicate && bytes.len() > 2 && bytes[0] == b'{' {
                // The same key twice: both parsers keep the last.
                let text = String::from_utf8(bytes.clone()).unwrap();
                bytes = format!("{{\"usage\":{{\"prompt_tokens\":1}},{}", &text[1..]).into_bytes();
                if text == "{}" { bytes = b"{\"usage\":{\"prompt_tokens\":1}}".to_vec(); }
            }
            let mut t = tap("application/json");
            t.feed(&bytes);
            proptest::prop_assert_eq!(t.finish_with_model(), absorbed_whole(&bytes));
            bytes.extend_from_slice(&garble);
            let mut t = tap("application/json");
            t.feed(&bytes);
            proptest::prop_assert_eq!(t.finish_with_model(), absorbed_whole(&bytes));
        }

        #[test]
        fn arbitrary_chunks_never_panic_and_hold_bounded_memory(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), 0..32),
            sse in proptest::prelude::any::<bool>(),
        ) {
            let mut t = tap(if sse { "text/event-stream" } else { "application/json" });
            for chunk in &chunks {
                t.feed(chunk);
                let limit = if sse { LINE_LIMIT } else { JSON_LIMIT };
                proptest::prop_assert!(t.buf.len() <= limit, "{} bytes held", t.buf.len());
            }
            let _ = t.finish_with_model();
        }

        #[test]
        fn usage_survives_any_split_of_valid_and_garbled_frames(
            events in proptest::collection::vec(event(), 0..24),
            cuts in proptest::collection::vec(proptest::prelude::any::<usize>(), 0..40),
            eol in proptest::sample::select(&["\n", "\r\n", "\r"][..]),
        ) {
            let stream: Vec<u8> = events.iter().flat_map(|e| frame(e, eol)).collect();
            let mut t = tap("text/event-stream");
            for chunk in split(&stream, &cuts) {
                t.feed(&chunk);
            }
            let usages = events.iter().filter_map(|e| match e {
                Event::Usage(i, o) => Some((*i, *o)),
                _ => None,
            });
            let expected = usages.fold(None, |acc: Option<Usage>, (i, o)| {
                let u = acc.unwrap_or_default();
                Some(Usage { input: u.input.max(i), output: u.output.max(o) })
            });
            proptest::prop_assert_eq!(t.finish(), expected);
        }
    }
}
