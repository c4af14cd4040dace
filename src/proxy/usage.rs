//! Token usage read from responses on their way to the client, without buffering
//! what the client receives: the `usage` object of a JSON body, or of the final SSE
//! chunk of a stream (OpenAI, Anthropic and Gemini spellings). The answering `model`
//! is taken from the same objects, for the trace's `gen_ai.response.model`.

use http::HeaderMap;

use super::usage_fields::{self, Fields, Text};

/// JSON bodies larger than this are relayed without usage accounting.
const JSON_LIMIT: usize = 4 * 1024 * 1024;
/// One SSE line longer than this is skipped: the tap holds at most one partial line,
/// so a stream that never ends a line cannot grow it without bound.
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
            if let Some(fields) = usage_fields::read(&self.buf) {
                self.absorb(fields);
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
        if let Some(fields) = usage_fields::read(data) {
            self.absorb(fields);
        }
    }

    /// Takes the largest counts seen: streams report cumulative numbers.
    fn absorb(&mut self, fields: Fields) {
        if self.model.is_none() {
            let model = match (fields.model, fields.model_version) {
                (Some(Text(model)), _) | (None, Some(Text(model))) => model,
                (None, None) => fields.message.as_ref().and_then(|m| m.model.clone()),
            };
            self.model = model.map(|mut m| {
                // At most 200 chars, cut in place (collecting chars built a new string).
                if let Some((end, _)) = m.char_indices().nth(200) {
                    m.truncate(end);
                }
                m
            });
        }
        let found = if let Some(u) = fields.usage.filter(|u| u.object) {
            // OpenAI (prompt/completion) or Anthropic message_delta (input/output).
            Some((
                u.get("prompt_tokens").or(u.get("input_tokens")),
                u.get("completion_tokens").or(u.get("output_tokens")),
            ))
        } else if let Some(u) = fields.message.and_then(|m| m.usage) {
            // Anthropic message_start.
            Some((u.get("input_tokens"), u.get("output_tokens")))
        } else {
            fields.usage_metadata.map(|u| (u.get("promptTokenCount"), u.get("candidatesTokenCount")))
        };
        if let Some((input, output)) = found {
            let usage = self.usage.get_or_insert_with(Usage::default);
            usage.input = usage.input.max(input.unwrap_or(0));
            usage.output = usage.output.max(output.unwrap_or(0));
        }
    }
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
