"""Drives keyrelay with the real `openai` SDK, exactly as an app would.

Usage: python3 openai_chat.py BASE_URL MODEL
Prints one JSON object with what the SDK saw; the Rust test asserts on it.
"""
import json
import sys

import openai

base_url, model = sys.argv[1], sys.argv[2]
# The app's own key is a placeholder: keyrelay strips it and injects a pool key.
client = openai.OpenAI(base_url=base_url, api_key="app-placeholder-key", max_retries=0, timeout=30)

plain = client.chat.completions.with_raw_response.create(
    model=model, messages=[{"role": "user", "content": "Say hello"}]
)
completion = plain.parse()

chunks = []
stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Stream please"}],
    stream=True,
    stream_options={"include_usage": True},
)
usage = None
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        chunks.append(chunk.choices[0].delta.content)
    if chunk.usage is not None:
        usage = chunk.usage.total_tokens

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    not_found = None
except openai.NotFoundError as e:
    not_found = {"status": e.status_code, "code": e.code}

print(json.dumps({
    "content": completion.choices[0].message.content,
    "model": completion.model,
    "total_tokens": completion.usage.total_tokens,
    "key_header": plain.headers.get("x-keyrelay-key"),
    "stream_chunks": len(chunks),
    "stream_text": "".join(chunks),
    "stream_usage": usage,
    "not_found": not_found,
}))
