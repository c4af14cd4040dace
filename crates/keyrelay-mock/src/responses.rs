//! Successful response bodies, in each API's own shape, whole or as SSE events.
//!
//! Everything is deterministic: the text says which key (by index) served it, and
//! usage is derived from the request body size, so tests can predict token counts and
//! tpm refusals exactly.

use bytes::Bytes;
use serde_json::{json, Value};

use super::request::Endpoint;

/// Model echoed when the request named none.
const DEFAULT_MODEL: &str = "mock-model";

/// One successful answer, before it is rendered whole or as a stream.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    endpoint: Endpoint,
    id: String,
    created: u64,
    model: String,
    pieces: Vec<String>,
    prompt_tokens: u64,
    completion_tokens: u64,
}

/// `ceil(n / 4)`, at least 1: roughly four bytes per token, like real tokenizers.
fn tokens_for(len: usize) -> u64 {
    u64::try_from(len.div_ceil(4)).unwrap_or(u64::MAX).max(1)
}

impl Reply {
    /// Plans the answer to request number `seq` with a body of `body_len` bytes, served
    /// by the key described by `key_label` (`key #2`; never the key itself).
    pub(crate) fn new(
        endpoint: Endpoint,
        seq: u64,
        model: Option<&str>,
        key_label: &str,
        body_len: usize,
        chunks: usize,
    ) -> Reply {
        let id = match endpoint {
            Endpoint::Messages => format!("msg_mock{seq:06}"),
            Endpoint::Completions => format!("cmpl-mock{seq:06}"),
            _ => format!("chatcmpl-mock{seq:06}"),
        };
        let created =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let mut pieces = vec![format!("Hello from mock ({key_label}).")];
        pieces.extend((1..chunks.max(1)).map(|i| format!(" Chunk {i}.")));
        let no_output = matches!(endpoint, Endpoint::Embeddings | Endpoint::Moderations | Endpoint::Rerank);
        let completion_tokens = if no_output { 0 } else { tokens_for(pieces.concat().len()) };
        Reply {
            endpoint,
            id,
            created,
            model: model.unwrap_or(DEFAULT_MODEL).to_string(),
            pieces,
            prompt_tokens: tokens_for(body_len),
            completion_tokens,
        }
    }

    /// What counts against the key's tpm (`usage.total_tokens`).
    pub(crate) fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    fn openai_usage(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens(),
        })
    }

    fn gemini_usage(&self) -> Value {
        json!({
            "promptTokenCount": self.prompt_tokens,
            "candidatesTokenCount": self.completion_tokens,
            "totalTokenCount": self.total_tokens(),
        })
    }

    /// The complete (non-streaming) response body.
    pub(crate) fn json(&self) -> Value {
        let content = self.pieces.concat();
        match self.endpoint {
            Endpoint::Messages => json!({
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [{"type": "text", "text": content}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": self.prompt_tokens, "output_tokens": self.completion_tokens},
            }),
            Endpoint::Completions => json!({
                "id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": [{"text": content, "index": 0, "logprobs": null, "finish_reason": "stop"}],
                "usage": self.openai_usage(),
            }),
            Endpoint::Embeddings => {
                let embedding: Vec<f64> = (0..8u32).map(|i| f64::from(i + 1) / 10.0).collect();
                json!({
                    "object": "list", "model": self.model,
                    "data": [{"object": "embedding", "index": 0, "embedding": embedding}],
                    "usage": {"prompt_tokens": self.prompt_tokens, "total_tokens": self.total_tokens()},
                })
            }
            Endpoint::Responses => json!({
                "id": format!("resp_mock{}", self.id.trim_start_matches("chatcmpl-mock")),
                "object": "response", "created_at": self.created, "status": "completed", "model": self.model,
                "output": [{
                    "type": "message", "id": format!("msg_{}", self.id), "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": content, "annotations": []}],
                }],
                "parallel_tool_calls": true, "tool_choice": "auto", "tools": [], "error": null,
                "incomplete_details": null, "instructions": null, "metadata": {}, "temperature": 1.0, "top_p": 1.0,
                "usage": {
                    "input_tokens": self.prompt_tokens, "output_tokens": self.completion_tokens,
                    "total_tokens": self.total_tokens(),
                    "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0},
                },
            }),
            Endpoint::Moderations => json!({
                "id": format!("modr-{}", self.id), "model": self.model,
                "results": [{
                    "flagged": false,
                    "categories": {"harassment": false, "hate": false, "self-harm": false, "sexual": false, "violence": false},
                    "category_scores": {"harassment": 0.0, "hate": 0.0, "self-harm": 0.0, "sexual": 0.0, "violence": 0.0},
                }],
            }),
            Endpoint::Images => json!({
                "created": self.created,
                // "mock", base64: no real image, but the shape the SDK reads.
                "data": [{"b64_json": "bW9jaw==", "revised_prompt": content}],
                "usage": {
                    "input_tokens": self.prompt_tokens, "output_tokens": self.completion_tokens,
                    "total_tokens": self.total_tokens(),
                    "input_tokens_details": {"text_tokens": self.prompt_tokens, "image_tokens": 0},
                },
            }),
            Endpoint::Rerank => json!({
                "id": self.id, "model": self.model,
                "results": [{"index": 0, "relevance_score": 0.9}, {"index": 1, "relevance_score": 0.1}],
                "meta": {"billed_units": {"search_units": 1}, "tokens": {"input_tokens": self.prompt_tokens}},
                "usage": {"prompt_tokens": self.prompt_tokens, "total_tokens": self.total_tokens()},
            }),
            // gpt-4o-transcribe's shape: the text and token usage.
            Endpoint::Transcriptions | Endpoint::Translations => json!({
                "text": content,
                "usage": {
                    "type": "tokens", "input_tokens": self.prompt_tokens, "output_tokens": self.completion_tokens,
                    "total_tokens": self.total_tokens(),
                },
            }),
            Endpoint::GeminiGenerate => json!({
                "candidates": [{
                    "content": {"parts": [{"text": content}], "role": "model"},
                    "finishReason": "STOP", "index": 0,
                }],
                "usageMetadata": self.gemini_usage(),
                "modelVersion": self.model, "responseId": self.id,
            }),
            Endpoint::Chat | Endpoint::Models | Endpoint::KeyInfo | Endpoint::NotFound => json!({
                "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": null, "finish_reason": "stop",
                }],
                "usage": self.openai_usage(),
                "system_fingerprint": "fp_mock",
            }),
        }
    }

    /// The streaming body as SSE events, each a complete `data: ...\n\n` (Anthropic:
    /// with its `event:` line). OpenAI shapes: one event per piece (the last with
    /// `finish_reason`), then a `choices: []` event carrying `usage`, then `[DONE]`.
    /// Anthropic: `message_start` .. `message_stop`. Gemini: one event per piece, the
    /// last with `usageMetadata`.
    pub(crate) fn sse_events(&self) -> Vec<Bytes> {
        let data = |v: Value| Bytes::from(format!("data: {v}\n\n"));
        let event = |name: &str, v: Value| Bytes::from(format!("event: {name}\ndata: {v}\n\n"));
        let last = self.pieces.len().saturating_sub(1);
        let mut out = Vec::with_capacity(self.pieces.len() + 6);
        match self.endpoint {
            Endpoint::Messages => {
                out.push(event(
                    "message_start",
                    json!({"type": "message_start", "message": {
                        "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                        "content": [], "stop_reason": null, "stop_sequence": null,
                        "usage": {"input_tokens": self.prompt_tokens, "output_tokens": 1},
                    }}),
                ));
                out.push(event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
                ));
                for piece in &self.pieces {
                    out.push(event(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": piece}}),
                    ));
                }
                out.push(event("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
                out.push(event(
                    "message_delta",
                    json!({"type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                    "usage": {"output_tokens": self.completion_tokens}}),
                ));
                out.push(event("message_stop", json!({"type": "message_stop"})));
            }
            Endpoint::GeminiGenerate => {
                for (i, piece) in self.pieces.iter().enumerate() {
                    let mut chunk = json!({
                        "candidates": [{"content": {"parts": [{"text": piece}], "role": "model"}, "index": 0}],
                        "modelVersion": self.model, "responseId": self.id,
                    });
                    if i == last {
                        chunk["candidates"][0]["finishReason"] = json!("STOP");
                        chunk["usageMetadata"] = self.gemini_usage();
                    }
                    out.push(data(chunk));
                }
            }
            Endpoint::Completions => {
                for (i, piece) in self.pieces.iter().enumerate() {
                    let finish = (i == last).then_some("stop");
                    out.push(data(json!({
                        "id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                        "choices": [{"text": piece, "index": 0, "logprobs": null, "finish_reason": finish}],
                    })));
                }
                out.push(data(json!({
                    "id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                    "choices": [], "usage": self.openai_usage(),
                })));
                out.push(Bytes::from_static(b"data: [DONE]\n\n"));
            }
            Endpoint::Chat
            | Endpoint::Embeddings
            | Endpoint::Models
            | Endpoint::KeyInfo
            | Endpoint::NotFound
            | Endpoint::Responses
            | Endpoint::Moderations
            | Endpoint::Images
            | Endpoint::Rerank
            | Endpoint::Transcriptions
            | Endpoint::Translations => {
                for (i, piece) in self.pieces.iter().enumerate() {
                    let delta =
                        if i == 0 { json!({"role": "assistant", "content": piece}) } else { json!({"content": piece}) };
                    let finish = (i == last).then_some("stop");
                    out.push(data(json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                        "system_fingerprint": "fp_mock",
                        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
                    })));
                }
                out.push(data(json!({
                    "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                    "system_fingerprint": "fp_mock", "choices": [], "usage": self.openai_usage(),
                })));
                out.push(Bytes::from_static(b"data: [DONE]\n\n"));
            }
        }
        out
    }
}

/// Whether an endpoint answers `stream: true` with SSE (others ignore the flag).
pub(crate) fn can_stream(endpoint: Endpoint) -> bool {
    matches!(endpoint, Endpoint::Chat | Endpoint::Completions | Endpoint::Messages | Endpoint::GeminiGenerate)
}

/// `GET .../models` body.
pub(crate) fn models_list(models: &[String]) -> Value {
    let data: Vec<Value> = models
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 1_700_000_000u64, "owned_by": "mock"}))
        .collect();
    json!({"object": "list", "data": data})
}

/// OpenRouter's `GET /api/v1/key`: the key's label, usage and limit.
pub(crate) fn key_info(label: &str) -> Value {
    json!({"data": {"label": label, "usage": 0, "limit": null, "is_free_tier": false, "rate_limit": {"requests": 10, "interval": "10s"}}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_deterministic_and_key_is_named_by_index() {
        let r = Reply::new(Endpoint::Chat, 1, Some("m"), "key #2", 40, 3);
        let v = r.json();
        assert_eq!(v["model"], "m");
        assert_eq!(v["choices"][0]["message"]["content"], "Hello from mock (key #2). Chunk 1. Chunk 2.");
        assert_eq!(v["usage"]["prompt_tokens"], 10);
        assert_eq!(v["usage"]["total_tokens"], r.total_tokens());
        assert_eq!(Reply::new(Endpoint::Chat, 9, Some("m"), "key #2", 40, 3).total_tokens(), r.total_tokens());
    }

    #[test]
    fn stream_shapes() {
        let r = Reply::new(Endpoint::Chat, 1, None, "key #1", 10, 4);
        let events = r.sse_events();
        assert_eq!(events.len(), 6);
        assert_eq!(&events[5][..], b"data: [DONE]\n\n");
        let usage: Value = serde_json::from_slice(&events[4][6..]).unwrap();
        assert_eq!(usage["usage"]["total_tokens"], r.total_tokens());
        let m = Reply::new(Endpoint::Messages, 1, None, "key #1", 10, 4).sse_events();
        assert!(m[0].starts_with(b"event: message_start\n"));
        assert!(m.last().unwrap().starts_with(b"event: message_stop\n"));
        let g = Reply::new(Endpoint::GeminiGenerate, 1, None, "key #1", 10, 2).sse_events();
        assert_eq!(g.len(), 2);
        assert!(String::from_utf8_lossy(&g[1]).contains("usageMetadata"));
    }
}
