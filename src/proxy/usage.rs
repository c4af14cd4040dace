//! Token usage read from responses on their way to the client, without buffering
//! what the client receives: the `usage` object of a JSON body, or of the final SSE
//! chunk of a stream (OpenAI, Anthropic and Gemini spellings). The answering `model`
//! is taken from the same objects, for the trace's `gen_ai.response.model`.

use http::HeaderMap;
use serde_json::Value;

/// JSON bodies larger than this are relayed without usage accounting.
const JSON_LIMIT: usize = 4 * 1024 * 1024;
/// One SSE line longer than this is skipped.
const LINE_LIMIT: usize = 1024 * 1024;

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
            if b == b'\n' {
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
            if let Ok(v) = serde_json::from_slice::<Value>(&self.buf) {
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
        if let Ok(v) = serde_json::from_slice::<Value>(data) {
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
    fn no_usage_or_garbage_is_none() {
        let mut t = tap("application/json");
        t.feed(b"{not json");
        assert_eq!(t.finish(), None);
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, "audio/mpeg".parse().unwrap());
        assert!(UsageTap::for_response(&h).is_none());
    }
}
