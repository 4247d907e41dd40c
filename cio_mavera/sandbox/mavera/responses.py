"""POST /responses: the Responses API with structured output (`text.format`), streamed when asked."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .base_personas import Persona
from .chat import chat_cost
from .clock import now_unix
from .errors import invalid, missing
from .params import check_model, read_body, text_of
from .prose import chat_reply
from .resource import Resource
from .schema_output import SchemaError, generate_from_schema
from .sse import pieces, sse
from .text import canonical, count_tokens

MAX_INPUT_CHARS = 100_000
# The shape `json_object` output takes (the sandbox's choice; any object is valid there).
JSON_OBJECT_SCHEMA = {"type": "object", "properties": {
    "answer": {"type": "string"}, "score": {"type": "integer", "minimum": 1, "maximum": 10},
    "sentiment": {"type": "string"}}}


class Responses(Resource):
    name = "/responses"

    async def post(self, request: Request) -> Response:
        body = await read_body(request)
        model = check_model(body)
        text = _input_text(body)
        persona = self.persona_for(body)
        instructions = body.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise invalid("instructions", "must be a string")
        fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
        out_text, parsed = _structured(fmt, text, persona)
        if not out_text:
            out_text = chat_reply(text, persona, salt=canonical([body.get("input"), instructions]))
        prompt_tokens = count_tokens(canonical(body.get("input"))) + count_tokens(instructions or "")
        completion_tokens = count_tokens(out_text)
        cost = chat_cost(prompt_tokens + completion_tokens)
        with self.account.lock:
            self.charge(self.name, cost)
        self.account.add_tokens(self.name, prompt_tokens, completion_tokens)
        usage = {"input_tokens": prompt_tokens, "output_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens,
                 "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens_details": {"reasoning_tokens": 0}, "credits_used": cost}
        resp_id = self.account.new_id("resp_")
        msg_id = self.account.new_id("msg_")
        item = {"id": msg_id, "type": "message", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": out_text, "annotations": []}]}
        response = {
            "id": resp_id, "object": "response", "created_at": now_unix(), "status": "completed",
            "model": model, "output": [item], "usage": usage, "error": None,
            "incomplete_details": None, "instructions": instructions, "metadata": {},
            "parallel_tool_calls": False, "temperature": body.get("temperature", 1.0),
            "top_p": body.get("top_p", 1.0), "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []), "text": {"format": fmt or {"type": "text"}},
            "persona_id": persona.id if persona else None, "sandbox": True,
        }
        if parsed is not None and fmt and fmt.get("type") == "json_schema":
            response["output_parsed"] = parsed  # [INFER] name of the parsed-JSON convenience field
        if body.get("stream"):
            return StreamingResponse(_events(response), media_type="text/event-stream")
        response["output_text"] = out_text  # SDK convenience; harmless extra for plain-HTTP callers
        return JSONResponse(response)


def _input_text(body: dict[str, Any]) -> str:
    value = body.get("input")
    if value is None:
        raise missing("input")
    if isinstance(value, str):
        if len(value) > MAX_INPUT_CHARS:
            raise invalid("input", f"must be at most {MAX_INPUT_CHARS} characters")
        return value
    if isinstance(value, list) and value:
        texts = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise invalid(f"input[{i}]", "must be a message object")
            texts.append(text_of(item.get("content", item.get("output", ""))))
        return "\n".join(t for t in texts if t)
    raise invalid("input", "must be a string or a non-empty list of input items")


def _structured(fmt: Any, text: str, persona: Persona | None) -> tuple[str, Any]:
    """Output text (and parsed JSON, if any) for `text.format`."""
    if fmt is None:
        return "", None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise invalid("text.format", "type must be text, json_object or json_schema")
    if fmt["type"] == "text":
        return "", None
    if fmt["type"] == "json_object":
        schema = JSON_OBJECT_SCHEMA
    else:
        schema = fmt.get("schema")
        if schema is None:
            raise missing("text.format.schema")
        if not isinstance(schema, dict):
            raise invalid("text.format.schema", "must be a JSON Schema object")
    try:
        parsed = generate_from_schema(schema, text, persona)
    except (SchemaError, KeyError, TypeError) as exc:
        raise invalid("text.format.schema", f"the sandbox cannot satisfy this schema ({exc})") from exc
    return json.dumps(parsed, ensure_ascii=False), parsed


async def _events(final: dict[str, Any]) -> AsyncIterator[str]:
    item = final["output"][0]
    text = item["content"][0]["text"]
    seq = iter(range(10**6))
    started = {**final, "status": "in_progress", "output": [], "usage": None}
    started.pop("output_parsed", None)
    pending_item = {**item, "status": "in_progress", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    ids = {"item_id": item["id"], "output_index": 0}

    def event(kind: str, **fields: Any) -> str:
        return sse({"type": kind, "sequence_number": next(seq), **fields}, event=kind)

    yield event("response.created", response=started)
    yield event("response.in_progress", response=started)
    yield event("response.output_item.added", output_index=0, item=pending_item)
    yield event("response.content_part.added", content_index=0, part=part, **ids)
    for piece in pieces(text):
        yield event("response.output_text.delta", content_index=0, delta=piece, logprobs=[], **ids)
    yield event("response.output_text.done", content_index=0, text=text, logprobs=[], **ids)
    yield event("response.content_part.done", content_index=0, part=item["content"][0], **ids)
    yield event("response.output_item.done", output_index=0, item=item)
    yield event("response.completed", response=final)
    yield sse("[DONE]")
