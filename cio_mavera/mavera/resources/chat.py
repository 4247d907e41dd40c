"""`client.chat`: chat completions, optionally as a persona, whole or streamed (SSE)."""

from __future__ import annotations

import json
import logging
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..core import Resource
from ..models import ChatResult, credits_of

log = logging.getLogger("cio_mavera.mavera")

DEFAULT_MODEL = "mavera-1"
ENDPOINT = "chat.completions"
PATH = "/chat/completions"

Messages = str | Sequence[Mapping[str, Any]]


class Chat(Resource):
    """Chat completions: `create` for the whole answer, `stream` for its chunks as they arrive."""

    def create(self, messages: Messages, *, persona_id: str | None = None,
               model: str = DEFAULT_MODEL, temperature: float | None = None,
               stream: bool = False, **extra: Any) -> ChatResult:
        """One chat completion (optionally as a persona); `stream=True` assembles the SSE stream."""
        if stream:
            body = chat_body(messages, persona_id, model, temperature, {**extra, "stream": True})
            return _drain(self._streamed(body))
        body = chat_body(messages, persona_id, model, temperature, extra)
        data, cached = self._core.call(ENDPOINT, "POST", PATH, body=body, cost="chat",
                                       cacheable=True, idempotent=True)
        return chat_result(data, cached)

    def stream(self, messages: Messages, *, persona_id: str | None = None,
               model: str = DEFAULT_MODEL, temperature: float | None = None,
               **extra: Any) -> Iterator[str]:
        """Yield the text chunks of a streamed chat completion (SSE ending in `[DONE]`).

        Chunks are yielded as the server sends them; the assembled answer is cached like `create`,
        so a re-run replays it as one chunk without a request.
        """
        body = chat_body(messages, persona_id, model, temperature, {**extra, "stream": True})
        yield from self._streamed(body)

    def _streamed(self, body: dict[str, Any]) -> Generator[str, None, ChatResult]:
        core = self._core
        call = core.begin(ENDPOINT, "POST", PATH, body, cost="chat", cacheable=True)
        hit = call.cached()
        if hit is not None:
            result = chat_result(hit, True)
            yield result.content
            return result
        parts: list[str] = []
        usage: dict[str, Any] = {}
        with call.charging():
            try:
                with core.http.stream("POST", PATH, json=body, idempotent=True) as response:
                    for event in sse_events(response.iter_lines()):
                        usage = event.get("usage") or usage
                        for choice in event.get("choices") or []:
                            piece = (choice.get("delta") or {}).get("content")
                            if piece:
                                parts.append(piece)
                                yield piece
            except GeneratorExit:
                # The caller stopped reading: the server has already charged, so book the worst case.
                call.settle(call.worst_case())
                raise
            if usage.get("credits_used") is None:
                # The docs do not say whether a stream reports usage; assume the worst case, not zero.
                usage = {**usage, "credits_used": call.worst_case()}
                log.info("streamed chat reported no usage; the ledger records the worst case")
            data = {"object": "chat.completion", "model": body.get("model"), "usage": usage,
                    "choices": [{"index": 0,
                                 "message": {"role": "assistant", "content": "".join(parts)},
                                 "finish_reason": "stop"}]}
            call.settle(credits_of(data))
        call.store(data)
        return chat_result(data, False)


def as_messages(messages: Messages) -> list[dict[str, Any]]:
    """A bare string becomes one user message."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    return [dict(m) for m in messages]


def chat_body(messages: Messages, persona_id: str | None, model: str, temperature: float | None,
              extra: Mapping[str, Any]) -> dict[str, Any]:
    """The request body of a chat completion."""
    body: dict[str, Any] = {"model": model, "messages": as_messages(messages)}
    if persona_id:
        body["persona_id"] = persona_id
    if temperature is not None:
        body["temperature"] = temperature
    body.update(extra)
    return body


def chat_result(data: dict[str, Any], cached: bool) -> ChatResult:
    """The assistant's text, usage and credits of a chat completion body."""
    choices = data.get("choices") or [{}]
    content = ((choices[0] or {}).get("message") or {}).get("content") or ""
    return ChatResult(str(content), dict(data.get("usage") or {}), credits_of(data), data, cached)


def sse_events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON payloads of an SSE stream's `data:` lines, up to `[DONE]`."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            event = json.loads(payload)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


def _drain(chunks: Generator[str, None, ChatResult]) -> ChatResult:
    """Run a chunk generator to its end and return its result."""
    while True:
        try:
            next(chunks)
        except StopIteration as done:
            return done.value
