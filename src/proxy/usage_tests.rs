use serde_json::Value;

use super::*;

/// The top-level fields a response object is read for.
const READ_FIELDS: [&str; 5] = ["model", "modelVersion", "message", "usage", "usageMetadata"];

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

/// JSON text whose objects may repeat a key (a `Value` cannot hold one that does).
#[derive(Debug, Clone)]
enum Node {
    Leaf(Value),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl Node {
    fn write(&self, out: &mut String) {
        match self {
            Node::Leaf(v) => out.push_str(&v.to_string()),
            Node::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Node::Object(entries) => {
                out.push('{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::from(key.as_str()).to_string());
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn node() -> impl proptest::strategy::Strategy<Value = Node> {
    use proptest::prelude::*;
    // Strings and counts mostly, so that repeated keys often disagree in what they hold.
    let leaf = prop_oneof![
        2 => "[a-z]{0,3}".prop_map(|s| Node::Leaf(Value::from(s))),
        2 => (0u64..4).prop_map(|n| Node::Leaf(Value::from(n))),
        1 => json().prop_map(Node::Leaf),
    ];
    let key = prop_oneof![
        3 => proptest::sample::select(&["model", "message", "usage", "input_tokens", "prompt_tokens"][..]),
        1 => proptest::sample::select(
            &["modelVersion", "usageMetadata", "output_tokens", "completion_tokens", "promptTokenCount",
              "candidatesTokenCount", "choices"][..],
        ),
    ]
    .prop_map(str::to_owned);
    let inner_key = key.clone();
    let tree = leaf.prop_recursive(3, 32, 6, move |inner| {
        prop_oneof![
            1 => proptest::collection::vec(inner.clone(), 0..3).prop_map(Node::Array),
            3 => proptest::collection::vec((inner_key.clone(), inner), 0..7).prop_map(Node::Object),
        ]
    });
    // A response is an object.
    proptest::collection::vec((key, tree), 0..7).prop_map(Node::Object)
}

#[test]
fn a_long_model_name_is_cut_to_200_chars() {
    for len in [1, 199, 200, 201, 450] {
        let name = "é".repeat(len);
        let body = format!(r#"{{"model":"{name}","usage":{{"prompt_tokens":1,"completion_tokens":2}}}}"#);
        let mut t = tap("application/json");
        t.feed(body.as_bytes());
        let (usage, model) = t.finish_with_model();
        assert_eq!(model.as_deref().map(|m| m.chars().count()), Some(len.min(200)), "{len}");
        assert_eq!((usage, model), absorbed_whole(body.as_bytes()), "{len}");
    }
}

/// The slow path the tap used to take: the whole body as one `Value`, read with
/// `Value::get` chains.
fn absorbed_whole(data: &[u8]) -> (Option<Usage>, Option<String>) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return (None, None) };
    let model = v.get("model").or_else(|| v.get("modelVersion")).or_else(|| v.get("message")?.get("model"));
    let model = model.and_then(Value::as_str).map(|m| m.chars().take(200).collect());
    let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
    let found = if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        Some((n(u, "prompt_tokens").or(n(u, "input_tokens")), n(u, "completion_tokens").or(n(u, "output_tokens"))))
    } else if let Some(u) = v.get("message").and_then(|m| m.get("usage")) {
        Some((n(u, "input_tokens"), n(u, "output_tokens")))
    } else {
        v.get("usageMetadata").map(|u| (n(u, "promptTokenCount"), n(u, "candidatesTokenCount")))
    };
    let usage = found.map(|(input, output)| Usage { input: input.unwrap_or(0), output: output.unwrap_or(0) });
    (usage, model)
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

    /// The same, for objects anywhere in the body that repeat a key.
    #[test]
    fn repeated_keys_anywhere_are_read_as_a_whole_value_reads_them(node in node()) {
        let mut text = String::new();
        node.write(&mut text);
        let mut t = tap("application/json");
        t.feed(text.as_bytes());
        proptest::prop_assert_eq!(t.finish_with_model(), absorbed_whole(text.as_bytes()));
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
