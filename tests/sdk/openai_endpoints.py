"""Drives keyrelay's other endpoints with the real `openai` SDK: embeddings, the
Responses API, and an audio transcription (a multipart form the SDK builds).

Usage: python3 openai_endpoints.py BASE_URL
Prints one JSON object with what the SDK saw; the Rust test asserts on it.
"""
import io
import json
import sys

import openai

base_url = sys.argv[1]
client = openai.OpenAI(base_url=base_url, api_key="app-placeholder-key", max_retries=0, timeout=30)

embedding = client.embeddings.with_raw_response.create(model="embedder", input="hello")
embedded = embedding.parse()

response = client.responses.with_raw_response.create(model="assistant", input="Say hello")
answered = response.parse()

audio = io.BytesIO(b"RIFF" + bytes(range(256)) * 1024)
audio.name = "speech.wav"
transcription = client.audio.transcriptions.with_raw_response.create(model="transcriber", file=audio)
transcribed = transcription.parse()

print(json.dumps({
    "embedding_len": len(embedded.data[0].embedding),
    "embedding_model": embedded.model,
    "embedding_tokens": embedded.usage.total_tokens,
    "embedding_deployment": embedding.headers.get("x-keyrelay-deployment"),
    "response_text": answered.output_text,
    "response_model": answered.model,
    "response_tokens": answered.usage.total_tokens,
    "transcription_text": transcribed.text,
    "transcription_key": transcription.headers.get("x-keyrelay-key"),
}))
