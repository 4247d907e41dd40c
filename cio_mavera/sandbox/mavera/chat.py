"""POST /chat/completions: persona-aware chat in the OpenAI shape, streamed as SSE chunks when asked."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .base_personas import Persona
from .clock import now_unix
from .errors import invalid, missing
from .params import check_model, read_body, text_of
from .prose import chat_reply
from .resource import Resource
from .sse import pieces, sse
from .text import canonical, count_tokens

ROLES = ("system", "developer", "user", "assistant", "tool")


def chat_cost(total_tokens: int) -> int:
    """Credits for a chat completion or response: 1 to 5 by tokens (§1.5)."""
    return min(5, 1 + total_tokens // 250)


class ChatCompletions(Resource):
    name = "/chat/completions"

    async def post(self, request: Request) -> Response:
        body = await read_body(request)
        model = check_model(body)
        messages = body.get("messages")
        if messages is None:
            raise missing("messages")
        if not isinstance(messages, list) or not 1 <= len(messages) <= 128:
            raise invalid("messages", "must be a list of 1 to 128 messages")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                raise invalid(f"messages[{i}]", "each message needs a role of system, user or assistant")
        persona = self.persona_for(body)
        user_texts = [text_of(m.get("content")) for m in messages if m.get("role") == "user"]
        prompt = user_texts[-1] if user_texts else text_of(messages[-1].get("content"))
        reply = chat_reply(prompt, persona, salt=canonical(messages))
        finish = "stop"
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if isinstance(max_tokens, int) and max_tokens > 0 and count_tokens(reply) > max_tokens:
            reply, finish = reply[: max_tokens * 4], "length"
        prompt_tokens = count_tokens(canonical(messages)) + (count_tokens(persona.description) if persona else 0)
        completion_tokens = count_tokens(reply)
        cost = chat_cost(prompt_tokens + completion_tokens)
        with self.account.lock:
            self.charge(self.name, cost)
        self.account.add_tokens(self.name, prompt_tokens, completion_tokens)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens, "credits_used": cost}
        ident = self.account.new_id("chatcmpl_")
        created = now_unix()
        if body.get("stream"):
            return StreamingResponse(_chunks(ident, created, model, reply, finish, usage, persona),
                                     media_type="text/event-stream")
        return JSONResponse({
            "id": ident, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                         "finish_reason": finish, "logprobs": None}],
            "usage": usage, "persona_id": persona.id if persona else None, "sandbox": True})


async def _chunks(ident: str, created: int, model: str, reply: str, finish: str,
                  usage: dict[str, int], persona: Persona | None) -> AsyncIterator[str]:
    base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
            "persona_id": persona.id if persona else None, "sandbox": True}
    yield sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": None}]})
    for piece in pieces(reply):
        yield sse({**base, "choices": [{"index": 0, "delta": {"content": piece},
                                        "finish_reason": None}]})
    # Whether Mavera sends usage in a final chunk is NOT FOUND; the sandbox does, on the last one.
    yield sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
               "usage": usage})
    yield sse("[DONE]")
