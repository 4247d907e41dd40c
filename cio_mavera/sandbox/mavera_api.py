"""The Mavera half of the sandbox: routes under MAVERA_PREFIX in the shapes of mavera-api.md.

Every response carries `X-RateLimit-*` headers; errors use the documented envelope
`{"error": {"message", "type", "code", "param"}}`. Only the response to the call that spent
credits carries `usage.credits_used`; later reads of the same resource (GET a generation, poll a
focus group) report the total as a top-level `credits_used` instead, so a ledger that adds up
`usage.credits_used` never counts a charge twice.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .mavera_errors import MaveraHTTPError
from .mavera_errors import invalid as _invalid
from .mavera_errors import missing as _missing
from .mavera_errors import not_found as _not_found
from .mavera_focus import (
    MAX_FOCUS_PERSONAS,
    focus_cost,
    focus_results,
    parse_questions,
    parse_stimuli,
)
from .mavera_personas import Persona, custom_traits
from .mavera_state import FocusGroup, MaveraState, Thread
from .mavera_text import (
    SchemaError,
    canonical,
    chat_reply,
    count_tokens,
    digest,
    generate_from_schema,
    generation_variations,
    keywords,
    mave_answer,
    rng_for,
    snippet,
)
from .state import MAVERA_PREFIX, SandboxState

ACCEPTED_MODELS = ("mavera-1",)  # §3: the only documented model
# §3/§4 call persona_id "Required" while the guides say it is optional; the sandbox is lenient.
REQUIRE_PERSONA_ID = False
DEFAULT_WORKSPACE_ID = "ws_sandbox"

# Duplicate custom-persona name: 422 per integration pages only (§1.3); the code name is NOT FOUND.
DUPLICATE_NAME_STATUS = 422
DUPLICATE_NAME_CODE = "duplicate_name"
# Concurrency caps (§1.4): Mave 10, focus groups 5. The status/code returned when a cap is hit is
# NOT FOUND; the sandbox answers like the per-minute limit.
MAVE_MAX_CONCURRENT = 10
FOCUS_GROUP_MAX_CONCURRENT = 5
CONCURRENCY_STATUS = 429
CONCURRENCY_CODE = "rate_limit_exceeded"
CONCURRENCY_RETRY_AFTER_S = 5

# Credit costs (§1.5). Chat/Responses 1-5 by tokens; Mave by complexity; generations 10-30;
# focus groups 50-200, charged once when the group is created.
PERSONA_CREATE_CREDITS = 300
MAVE_COST_RANGES = {"SIMPLE": (10, 15), "MODERATE": (20, 30), "COMPLEX": (30, 50),
                    "STRATEGIC": (40, 75)}
MAVE_FOLLOW_UP_DISCOUNT = 0.7  # [2ND]: follow-ups in a thread are 30-50% cheaper

# Custom persona pipelines (§5.2). Per-pipeline required fields are NOT FOUND; north_star needs
# name + description ([2ND]), the guided pipelines need name + type.
PIPELINES = {"north_star": ("name", "description"), "intermediate": ("name", "type"),
             "advanced": ("name", "type")}
PERSONA_TYPES = ("B2B", "B2C")

MAX_GENERATION_VARIATIONS = 20
# Generation apps: the list endpoint's schema is NOT FOUND (§8.1); fields follow the feature page
# (`id`, `name`, `description`, `input_fields`). `variations` is a sandbox input: the docs do not
# say how many variants an app returns.
GENERATION_APPS: tuple[dict[str, Any], ...] = (
    {"id": "email-subject-lines", "name": "Email Subject Lines", "category": "email",
     "description": "Subject-line variations for an email campaign.",
     "input_fields": [
         {"name": "topic", "type": "string", "required": True, "description": "What the email is about"},
         {"name": "target_audience", "type": "string", "required": False},
         {"name": "tone", "type": "string", "required": False},
         {"name": "variations", "type": "integer", "required": False, "default": 5}]},
    {"id": "email-copy", "name": "Email Copy", "category": "email",
     "description": "Short email bodies with a headline and a call to action.",
     "input_fields": [
         {"name": "topic", "type": "string", "required": True},
         {"name": "target_audience", "type": "string", "required": False},
         {"name": "key_points", "type": "array", "required": False},
         {"name": "tone", "type": "string", "required": False},
         {"name": "variations", "type": "integer", "required": False, "default": 3}]},
    {"id": "ad-headlines", "name": "Ad Headlines", "category": "ad_copy",
     "description": "Headline variations for paid social and search ads.",
     "input_fields": [
         {"name": "topic", "type": "string", "required": True},
         {"name": "platform", "type": "string", "required": False},
         {"name": "variations", "type": "integer", "required": False, "default": 5}]},
    {"id": "blog-post-generator", "name": "Blog Post Generator", "category": "blog",
     "description": "A blog post outline and draft on a topic.",
     "input_fields": [
         {"name": "topic", "type": "string", "required": True},
         {"name": "target_audience", "type": "string", "required": False},
         {"name": "tone", "type": "string", "required": False},
         {"name": "length", "type": "string", "required": False},
         {"name": "key_points", "type": "array", "required": False},
         {"name": "variations", "type": "integer", "required": False, "default": 1}]},
    {"id": "social-post", "name": "Social Post", "category": "social",
     "description": "Posts for a social platform.",
     "input_fields": [
         {"name": "topic", "type": "string", "required": True},
         {"name": "platform", "type": "string", "required": False},
         {"name": "variations", "type": "integer", "required": False, "default": 3}]},
)
APPS_BY_ID = {app["id"]: app for app in GENERATION_APPS}


def _now_unix() -> int:
    return int(time.time())


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _sse(data: Any, event: str | None = None) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


def _pieces(text: str, words_per_piece: int = 4) -> list[str]:
    """`text` cut into chunks that concatenate back to it exactly."""
    words = text.split(" ")
    out = []
    for i in range(0, len(words), words_per_piece):
        piece = " ".join(words[i:i + words_per_piece])
        out.append(piece if i + words_per_piece >= len(words) else piece + " ")
    return out


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, _, value = raw.partition(":")
        if tag != "o":
            raise ValueError(cursor)
        return max(0, int(value))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _invalid("cursor", "not a cursor returned by this API") from exc


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise _invalid(name, f"must be an integer between {low} and {high}") from exc
    if not low <= value <= high:
        raise _invalid(name, f"must be between {low} and {high}")
    return value


def _page(request: Request, items: list[dict[str, Any]]) -> dict[str, Any]:
    """A list page in both pagination styles (§1.6): cursor fields and offset fields together."""
    cursor = request.query_params.get("cursor")
    # Offset style (older pages) defaults to 20 items; cursor style to 50.
    offset_style = "offset" in request.query_params and not cursor
    limit = _int_param(request, "limit", 20 if offset_style else 50, 1, 100)
    offset = _decode_cursor(cursor) if cursor else _int_param(request, "offset", 0, 0, 10**9)
    data = items[offset:offset + limit]
    has_more = offset + len(data) < len(items)
    return {"object": "list", "data": data, "has_more": has_more,
            "next_cursor": _encode_cursor(offset + len(data)) if has_more else None,
            "total": len(items), "limit": limit, "offset": offset}


def _text_of(content: Any) -> str:
    """Plain text of an OpenAI message content (string or list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return ""


def _bool_param(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise _invalid(name, "must be true or false")


Handler = Callable[[Request], Awaitable[Response]]


class MaveraApi:
    """Route handlers bound to one sandbox state."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        if state.mavera is None:
            state.mavera = MaveraState(state.config)
        self.mv: MaveraState = state.mavera

    # ------------------------------------------------------------ plumbing

    def _authenticate(self, request: Request) -> str:
        header = request.headers.get("authorization")
        if not header or not header.strip():
            raise MaveraHTTPError(401, "missing_api_key",
                                  "Missing API key. Send 'Authorization: Bearer <MAVERA_API_KEY>'.")
        scheme, _, token = header.strip().partition(" ")
        expected = self.state.keys["MAVERA_API_KEY"]
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                   expected.encode()):
            raise MaveraHTTPError(401, "invalid_api_key",
                                  "Invalid API key. Ensure your key starts with 'mvra_live_' "
                                  "(or is this sandbox's MAVERA_API_KEY) and has not been revoked.")
        return token.strip()

    def endpoint(self, name: str, handlers: dict[str, Handler]) -> Handler:
        """Wrap method handlers with auth, the rate window, usage counters and error envelopes."""

        async def run(request: Request) -> Response:
            rate_headers: dict[str, str] = self.mv.rate.peek(None)
            try:
                key = self._authenticate(request)
                decision = self.mv.rate.hit(key)
                rate_headers = decision.headers
                if not decision.allowed:
                    self.state.stats.count_429("mavera")
                    raise MaveraHTTPError(
                        429, "rate_limit_exceeded",
                        f"Rate limit exceeded. Please retry after {decision.retry_after} seconds.")
                handler = handlers.get(request.method)
                if handler is None:
                    raise MaveraHTTPError(405, "method_not_allowed",
                                          f"{request.method} is not supported on {name}.")
                response = await handler(request)
            except MaveraHTTPError as exc:
                response = exc.response()
            for header, value in rate_headers.items():
                response.headers.setdefault(header, value)
            with self.mv.lock:
                usage = self.mv.usage[name]
                usage.requests += 1
                if response.status_code >= 400:
                    usage.errors += 1
            return response

        return run

    async def _body(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise _invalid(None, "the request body is not valid JSON") from exc
        if not isinstance(body, dict):
            raise _invalid(None, "the request body must be a JSON object")
        return body

    def _check_model(self, body: dict[str, Any]) -> str:
        model = body.get("model")
        if model is None:
            raise _missing("model")
        if model not in ACCEPTED_MODELS:
            raise MaveraHTTPError(400, "invalid_model",
                                  f"Invalid value for 'model': must be one of {list(ACCEPTED_MODELS)}.",
                                  "model")
        return model

    def _persona_for(self, body: dict[str, Any], required: bool = REQUIRE_PERSONA_ID) -> Persona | None:
        ident = body.get("persona_id")
        if ident is None:
            if required:
                raise _missing("persona_id")
            return None
        persona = self.mv.persona(ident) if isinstance(ident, str) else None
        if persona is None:
            raise MaveraHTTPError(400, "invalid_persona", f"Unknown persona_id '{ident}'.", "persona_id")
        return persona

    def _spend(self, endpoint: str, credits: int) -> None:
        """Charge `credits` or raise 402 (callers hold `mv.lock` around check-and-create)."""
        if not self.mv.can_afford(credits):
            raise MaveraHTTPError(
                402, "credits_exhausted",
                f"Insufficient credits: this call needs {credits}, {self.mv.balance} remain.")
        self.mv.charge(endpoint, credits)
        self.state.stats.charge(credits)

    def _concurrency_error(self, message: str) -> MaveraHTTPError:
        self.state.stats.count_429("mavera")
        return MaveraHTTPError(CONCURRENCY_STATUS, CONCURRENCY_CODE, message,
                               headers={"Retry-After": str(CONCURRENCY_RETRY_AFTER_S)})

    def _tokens(self, endpoint: str, prompt: int, completion: int) -> None:
        with self.mv.lock:
            self.mv.usage[endpoint].prompt_tokens += prompt
            self.mv.usage[endpoint].completion_tokens += completion

    # ------------------------------------------------------------ chat completions

    @staticmethod
    def _chat_cost(total_tokens: int) -> int:
        return min(5, 1 + total_tokens // 250)

    async def chat_completions(self, request: Request) -> Response:
        body = await self._body(request)
        model = self._check_model(body)
        messages = body.get("messages")
        if messages is None:
            raise _missing("messages")
        if not isinstance(messages, list) or not 1 <= len(messages) <= 128:
            raise _invalid("messages", "must be a list of 1 to 128 messages")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in (
                    "system", "developer", "user", "assistant", "tool"):
                raise _invalid(f"messages[{i}]", "each message needs a role of system, user or assistant")
        persona = self._persona_for(body)
        user_texts = [_text_of(m.get("content")) for m in messages if m.get("role") == "user"]
        prompt = user_texts[-1] if user_texts else _text_of(messages[-1].get("content"))
        reply = chat_reply(prompt, persona, salt=canonical(messages))
        finish = "stop"
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if isinstance(max_tokens, int) and max_tokens > 0 and count_tokens(reply) > max_tokens:
            reply, finish = reply[: max_tokens * 4], "length"
        prompt_tokens = count_tokens(canonical(messages)) + (count_tokens(persona.description) if persona else 0)
        completion_tokens = count_tokens(reply)
        cost = self._chat_cost(prompt_tokens + completion_tokens)
        with self.mv.lock:
            self._spend("/chat/completions", cost)
        self._tokens("/chat/completions", prompt_tokens, completion_tokens)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens, "credits_used": cost}
        ident = self.mv.new_id("chatcmpl_")
        created = _now_unix()
        if body.get("stream"):
            return StreamingResponse(self._chat_stream(ident, created, model, reply, finish, usage, persona),
                                     media_type="text/event-stream")
        return JSONResponse({
            "id": ident, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                         "finish_reason": finish, "logprobs": None}],
            "usage": usage, "persona_id": persona.id if persona else None, "sandbox": True})

    async def _chat_stream(self, ident: str, created: int, model: str, reply: str, finish: str,
                           usage: dict[str, int], persona: Persona | None) -> AsyncIterator[str]:
        base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                "persona_id": persona.id if persona else None, "sandbox": True}
        yield _sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                         "finish_reason": None}]})
        for piece in _pieces(reply):
            yield _sse({**base, "choices": [{"index": 0, "delta": {"content": piece},
                                             "finish_reason": None}]})
        # Whether Mavera sends usage in a final chunk is NOT FOUND; the sandbox does, on the last one.
        yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
                    "usage": usage})
        yield _sse("[DONE]")

    # ------------------------------------------------------------ responses

    def _response_input(self, body: dict[str, Any]) -> str:
        value = body.get("input")
        if value is None:
            raise _missing("input")
        if isinstance(value, str):
            if len(value) > 100_000:
                raise _invalid("input", "must be at most 100000 characters")
            return value
        if isinstance(value, list) and value:
            texts = []
            for i, item in enumerate(value):
                if not isinstance(item, dict):
                    raise _invalid(f"input[{i}]", "must be a message object")
                texts.append(_text_of(item.get("content", item.get("output", ""))))
            return "\n".join(t for t in texts if t)
        raise _invalid("input", "must be a string or a non-empty list of input items")

    def _structured(self, fmt: Any, text: str, persona: Persona | None) -> tuple[str, Any]:
        """Output text (and parsed JSON, if any) for `text.format`."""
        if fmt is None:
            return "", None
        if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
            raise _invalid("text.format", "type must be text, json_object or json_schema")
        if fmt["type"] == "text":
            return "", None
        if fmt["type"] == "json_object":
            schema = {"type": "object", "properties": {
                "answer": {"type": "string"}, "score": {"type": "integer", "minimum": 1, "maximum": 10},
                "sentiment": {"type": "string"}}}
        else:
            schema = fmt.get("schema")
            if schema is None:
                raise _missing("text.format.schema")
            if not isinstance(schema, dict):
                raise _invalid("text.format.schema", "must be a JSON Schema object")
        try:
            parsed = generate_from_schema(schema, text, persona)
        except (SchemaError, KeyError, TypeError) as exc:
            raise _invalid("text.format.schema", f"the sandbox cannot satisfy this schema ({exc})") from exc
        return json.dumps(parsed, ensure_ascii=False), parsed

    async def responses(self, request: Request) -> Response:
        body = await self._body(request)
        model = self._check_model(body)
        text = self._response_input(body)
        persona = self._persona_for(body)
        instructions = body.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise _invalid("instructions", "must be a string")
        fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
        out_text, parsed = self._structured(fmt, text, persona)
        if not out_text:
            out_text = chat_reply(text, persona, salt=canonical([body.get("input"), instructions]))
        prompt_tokens = count_tokens(canonical(body.get("input"))) + count_tokens(instructions or "")
        completion_tokens = count_tokens(out_text)
        cost = self._chat_cost(prompt_tokens + completion_tokens)
        with self.mv.lock:
            self._spend("/responses", cost)
        self._tokens("/responses", prompt_tokens, completion_tokens)
        usage = {"input_tokens": prompt_tokens, "output_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens,
                 "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens_details": {"reasoning_tokens": 0}, "credits_used": cost}
        resp_id = self.mv.new_id("resp_")
        msg_id = self.mv.new_id("msg_")
        item = {"id": msg_id, "type": "message", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": out_text, "annotations": []}]}
        response = {
            "id": resp_id, "object": "response", "created_at": _now_unix(), "status": "completed",
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
            return StreamingResponse(self._responses_stream(response), media_type="text/event-stream")
        response["output_text"] = out_text  # SDK convenience; harmless extra for plain-HTTP callers
        return JSONResponse(response)

    async def _responses_stream(self, final: dict[str, Any]) -> AsyncIterator[str]:
        item = final["output"][0]
        text = item["content"][0]["text"]
        seq = iter(range(10**6))
        started = {**final, "status": "in_progress", "output": [], "usage": None}
        started.pop("output_parsed", None)
        pending_item = {**item, "status": "in_progress", "content": []}
        part = {"type": "output_text", "text": "", "annotations": []}
        ids = {"item_id": item["id"], "output_index": 0}

        def event(kind: str, **fields: Any) -> str:
            return _sse({"type": kind, "sequence_number": next(seq), **fields}, event=kind)

        yield event("response.created", response=started)
        yield event("response.in_progress", response=started)
        yield event("response.output_item.added", output_index=0, item=pending_item)
        yield event("response.content_part.added", content_index=0, part=part, **ids)
        for piece in _pieces(text):
            yield event("response.output_text.delta", content_index=0, delta=piece, logprobs=[], **ids)
        yield event("response.output_text.done", content_index=0, text=text, logprobs=[], **ids)
        yield event("response.content_part.done", content_index=0, part=item["content"][0], **ids)
        yield event("response.output_item.done", output_index=0, item=item)
        yield event("response.completed", response=final)
        yield _sse("[DONE]")

    # ------------------------------------------------------------ personas

    async def list_personas(self, request: Request) -> Response:
        people = self.mv.all_personas()
        name = request.query_params.get("name")
        search = (request.query_params.get("search") or "").strip().lower()
        category = request.query_params.get("category")
        is_custom = _bool_param(request, "is_custom")
        if name:
            people = [p for p in people if p.name.lower() == name.strip().lower()]
        if search:
            people = [p for p in people if search in p.name.lower() or search in p.description.lower()]
        if category:
            people = [p for p in people if p.category.lower() == category.lower()]
        if is_custom is not None:
            people = [p for p in people if p.is_custom == is_custom]
        return JSONResponse(_page(request, [p.summary() for p in people]))

    def _custom_object(self, persona: Persona) -> dict[str, Any]:
        extra = persona.extra
        return {**persona.summary(), "object": "custom_persona",
                "pipeline_type": extra["pipeline_type"], "type": extra["type"],
                "details": extra["details"], "attributes": extra.get("attributes"),
                "updated_at": extra.get("updated_at", persona.created_at), "sandbox": True}

    async def get_persona(self, request: Request) -> Response:
        ident = request.path_params["persona_id"]
        persona = self.mv.persona(ident)
        if persona is None:
            raise _not_found("persona", ident)
        return JSONResponse(self._custom_object(persona) if persona.is_custom else persona.summary())

    @staticmethod
    def _validate_persona_fields(body: dict[str, Any], creating: bool) -> None:
        if "name" in body or creating:
            name = body.get("name")
            if not isinstance(name, str) or not 2 <= len(name.strip()) <= 100:
                raise _invalid("name", "must be a string of 2 to 100 characters")
        if "description" in body and not isinstance(body["description"], str):
            raise _invalid("description", "must be a string")
        if "type" in body and body["type"] not in PERSONA_TYPES:
            raise _invalid("type", f"must be one of {list(PERSONA_TYPES)}")

    @staticmethod
    def _details(body: dict[str, Any], pipeline: str, previous: dict[str, Any] | None = None) -> dict[str, Any]:
        skip = {"name", "description", "attributes", "workspace_id"}
        details = dict(previous or {})
        details.update({k: v for k, v in body.items() if k not in skip})
        details["pipeline_type"] = pipeline
        details.setdefault("persona_type", body.get("type", details.get("type", "B2C")))
        return details

    async def create_persona(self, request: Request) -> Response:
        body = await self._body(request)
        pipeline = body.get("pipeline_type", "north_star")
        if pipeline not in PIPELINES:
            raise _invalid("pipeline_type", f"must be one of {list(PIPELINES)}")
        for field_name in PIPELINES[pipeline]:
            if body.get(field_name) in (None, ""):
                raise _missing(field_name)
        self._validate_persona_fields(body, creating=True)
        name = body["name"].strip()
        description = body.get("description") or f"Custom {body.get('type', 'B2C')} persona '{name}'."
        with self.mv.lock:
            if self.mv.custom_by_name(name) is not None:
                raise MaveraHTTPError(DUPLICATE_NAME_STATUS, DUPLICATE_NAME_CODE,
                                      f"A custom persona named '{name}' already exists; update it with "
                                      "PATCH /personas/{id} instead.", "name")
            self._spend("/personas", PERSONA_CREATE_CREDITS)
            ident = self.mv.new_id("clx", 22)
            now = _now_unix()
            persona = Persona(
                id=ident, name=name, category="Custom", description=description,
                traits=custom_traits(canonical([name, description, body.get("attributes"),
                                                self._details(body, pipeline)])),
                is_custom=True, created_at=now, interests=tuple(keywords(description, 4)),
                extra={"pipeline_type": pipeline, "type": body.get("type", "B2C"),
                       "details": self._details(body, pipeline), "attributes": body.get("attributes"),
                       "updated_at": now})
            self.mv.custom_personas[ident] = persona
        out = {**self._custom_object(persona), "credits_charged": PERSONA_CREATE_CREDITS,
               "usage": {"credits_used": PERSONA_CREATE_CREDITS}}
        return JSONResponse(out, status_code=201)

    async def update_persona(self, request: Request) -> Response:
        ident = request.path_params["persona_id"]
        body = await self._body(request)
        with self.mv.lock:
            persona = self.mv.persona(ident)
            if persona is None:
                raise _not_found("persona", ident)
            if not persona.is_custom:
                # §5.3: base personas are read-only; the status for trying is NOT FOUND ([INFER] 403).
                raise MaveraHTTPError(403, "forbidden",
                                      "Base personas are read-only; only custom personas can be modified.")
            self._validate_persona_fields(body, creating=False)
            name = body.get("name", persona.name).strip()
            other = self.mv.custom_by_name(name)
            if other is not None and other.id != ident:
                raise MaveraHTTPError(DUPLICATE_NAME_STATUS, DUPLICATE_NAME_CODE,
                                      f"A custom persona named '{name}' already exists.", "name")
            description = body.get("description", persona.description)
            attributes = body.get("attributes", persona.extra.get("attributes"))
            details = self._details(body, body.get("pipeline_type", persona.extra["pipeline_type"]),
                                    persona.extra["details"])
            updated = Persona(
                id=ident, name=name, category=persona.category, description=description,
                traits=custom_traits(canonical([name, description, attributes, details])),
                is_custom=True, created_at=persona.created_at,
                interests=tuple(keywords(description, 4)),
                extra={**persona.extra, "details": details, "attributes": attributes,
                       "type": body.get("type", persona.extra["type"]),
                       "pipeline_type": details["pipeline_type"], "updated_at": _now_unix()})
            self.mv.custom_personas[ident] = updated
        return JSONResponse(self._custom_object(updated))

    async def delete_persona(self, request: Request) -> Response:
        """Not documented (§5.4); lets tests reproduce the integration pages' 404-after-delete."""
        ident = request.path_params["persona_id"]
        with self.mv.lock:
            persona = self.mv.persona(ident)
            if persona is None:
                raise _not_found("persona", ident)
            if not persona.is_custom:
                raise MaveraHTTPError(403, "forbidden", "Base personas cannot be deleted.")
            del self.mv.custom_personas[ident]
        return JSONResponse({"id": ident, "object": "custom_persona", "deleted": True})

    # ------------------------------------------------------------ mave

    @staticmethod
    def _complexity(message: str) -> str:
        lowered = message.lower()
        markers = sum(1 for w in ("strateg", "plan", "roadmap", "compare", "competit", "segment",
                                  "analy", "why", "research", "prioriti") if w in lowered)
        words = len(message.split())
        if words > 80 or markers >= 4:
            return "STRATEGIC"
        if words > 40 or markers >= 2:
            return "COMPLEX"
        if words > 15 or markers >= 1:
            return "MODERATE"
        return "SIMPLE"

    @staticmethod
    def _mave_cost(message: str, complexity: str, follow_up: bool) -> int:
        low, high = MAVE_COST_RANGES[complexity]
        cost = low + int(digest("mave-cost", message)[:8], 16) % (high - low + 1)
        if follow_up:
            cost = max(MAVE_COST_RANGES["SIMPLE"][0], round(cost * MAVE_FOLLOW_UP_DISCOUNT))
        return cost

    def _mave_personas(self, message: str) -> list[Persona]:
        lowered = message.lower()
        people = self.mv.all_personas()
        named = [p for p in people if p.name.lower() in lowered]
        ranked = sorted(people, key=lambda p: (-sum(w in lowered for w in p.interests),
                                               digest("mave-persona", message, p.id)))
        chosen = named + [p for p in ranked if p not in named]
        return chosen[:max(2, min(3, len(named)))]

    async def mave_chat(self, request: Request) -> Response:
        body = await self._body(request)
        message = body.get("message")
        if message is None:
            raise _missing("message")
        if not isinstance(message, str) or not message.strip():
            raise _invalid("message", "must be a non-empty string")
        thread_id = body.get("thread_id")
        with self.mv.lock:
            thread = self.mv.threads.get(thread_id) if thread_id else None
            if thread_id and thread is None:
                raise _not_found("mave thread", str(thread_id), "thread_id")
            if self.mv.mave_in_flight >= MAVE_MAX_CONCURRENT:
                raise self._concurrency_error(
                    f"Too many concurrent Mave requests (max {MAVE_MAX_CONCURRENT}).")
            self.mv.mave_in_flight += 1
        try:
            if self.mv.mave_latency_s:
                await asyncio.sleep(self.mv.mave_latency_s)
            out = self._mave_answer(body, message, thread)
        finally:
            with self.mv.lock:
                self.mv.mave_in_flight -= 1
        if body.get("stream"):
            return StreamingResponse(self._mave_stream(out), media_type="text/event-stream")
        return JSONResponse(out)

    def _mave_answer(self, body: dict[str, Any], message: str, thread: Thread | None) -> dict[str, Any]:
        complexity = self._complexity(message)
        turn = len(thread.messages) // 2 if thread else 0
        cost = self._mave_cost(message, complexity, follow_up=thread is not None)
        personas = self._mave_personas(message)
        content, sources = mave_answer(message, turn, personas)
        rng = rng_for("mave-validation", message, turn)
        confidence = round(0.6 + rng.random() * 0.35, 2)
        validation = {"confidence_score": confidence,
                      "hallucination_risk": "low" if confidence >= 0.8 else "medium",
                      "unsupported_claims": [],
                      "sources": [{"title": s["title"], "url": s["url"],
                                   "relevance": round(0.5 + rng.random() * 0.5, 2)} for s in sources]}
        personas_used = [{"id": p.id, "name": p.name, "category": p.category} for p in personas]
        now = _now_iso()
        with self.mv.lock:
            if thread is not None and thread.id not in self.mv.threads:
                raise _not_found("mave thread", thread.id, "thread_id")  # deleted meanwhile
            self._spend("/mave/chat", cost)
            if thread is None:
                thread = Thread(id=self.mv.new_id("mave_thread_", 16), title=snippet(message, 60),
                                workspace_id=body.get("workspace_id") or DEFAULT_WORKSPACE_ID,
                                created_at=now, updated_at=now, complexity=complexity)
                self.mv.threads[thread.id] = thread
            msg_id = self.mv.new_id("mave_msg_", 16)
            thread.messages.append({"id": self.mv.new_id("mave_msg_", 16), "role": "user",
                                    "content": message, "persona": None, "created_at": now})
            thread.messages.append({"id": msg_id, "role": "assistant", "content": content,
                                    "persona": {"id": personas[0].id, "name": personas[0].name},
                                    "created_at": now})
            thread.sources.extend({"id": self.mv.new_id("src_", 12), **s} for s in sources)
            known = {p["id"] for p in thread.personas_used}
            thread.personas_used.extend(p for p in personas_used if p["id"] not in known)
            thread.credits_used += cost
            thread.updated_at = now
            if MAVE_COST_RANGES[complexity] > MAVE_COST_RANGES[thread.complexity]:
                thread.complexity = complexity
        self._tokens("/mave/chat", count_tokens(message), count_tokens(content))
        return {"id": msg_id, "object": "mave_message", "thread_id": thread.id, "role": "assistant",
                "content": content, "sources": sources, "personas_used": personas_used,
                "validation": validation, "complexity": complexity,
                "usage": {"credits_used": cost}, "created_at": now, "sandbox": True}

    async def _mave_stream(self, out: dict[str, Any]) -> AsyncIterator[str]:
        # §1.7: event types content/sources/validation/done; framing NOT FOUND, so each event has an
        # `event:` line and repeats its type in the JSON for clients that read data lines only.
        for piece in _pieces(out["content"], 8):
            yield _sse({"type": "content", "content": piece}, event="content")
        yield _sse({"type": "sources", "sources": out["sources"]}, event="sources")
        yield _sse({"type": "validation", "validation": out["validation"]}, event="validation")
        yield _sse({"type": "done", **out}, event="done")
        yield _sse("[DONE]")

    @staticmethod
    def _thread_summary(thread: Thread) -> dict[str, Any]:
        return {"id": thread.id, "object": "mave_thread", "title": thread.title,
                "current_phase": thread.current_phase, "complexity": thread.complexity,
                "credits_used": thread.credits_used, "workspace_id": thread.workspace_id,
                "message_count": len(thread.messages), "created_at": thread.created_at,
                "updated_at": thread.updated_at}

    async def list_threads(self, request: Request) -> Response:
        workspace = request.query_params.get("workspace_id")
        search = (request.query_params.get("search") or "").lower()
        with self.mv.lock:
            threads = list(reversed(self.mv.threads.values()))  # newest first
            items = [self._thread_summary(t) for t in threads
                     if (not workspace or t.workspace_id == workspace)
                     and (not search or search in t.title.lower())]
        return JSONResponse(_page(request, items))

    def _thread(self, request: Request) -> Thread:
        ident = request.path_params["thread_id"]
        thread = self.mv.threads.get(ident)
        if thread is None:
            raise _not_found("mave thread", ident)
        return thread

    async def get_thread(self, request: Request) -> Response:
        with self.mv.lock:
            thread = self._thread(request)
            out = {k: v for k, v in self._thread_summary(thread).items() if k != "message_count"}
            out.update(messages=list(thread.messages), sources=list(thread.sources),
                       personas_used=list(thread.personas_used))
        return JSONResponse(out)

    async def update_thread(self, request: Request) -> Response:
        body = await self._body(request)
        title = body.get("title")
        if title is None:
            raise _missing("title")
        if not isinstance(title, str) or not 1 <= len(title) <= 100:
            raise _invalid("title", "must be a string of 1 to 100 characters")
        with self.mv.lock:
            thread = self._thread(request)
            thread.title, thread.updated_at = title, _now_iso()
            return JSONResponse(self._thread_summary(thread))

    async def delete_thread(self, request: Request) -> Response:
        with self.mv.lock:
            thread = self._thread(request)
            del self.mv.threads[thread.id]
        return JSONResponse({"id": thread.id, "object": "mave_thread", "deleted": True})

    # ------------------------------------------------------------ generations

    async def list_apps(self, request: Request) -> Response:
        apps = [{"object": "generation_app", **app} for app in GENERATION_APPS]
        return JSONResponse({"object": "list", "data": apps, "has_more": False, "next_cursor": None})

    @staticmethod
    def _variation_count(body: dict[str, Any], inputs: dict[str, Any], app: dict[str, Any]) -> int:
        default = next((f.get("default", 1) for f in app["input_fields"] if f["name"] == "variations"), 1)
        raw, param = default, None
        for source, names in ((inputs, ("variations", "count", "num_variations", "n")),
                              (body, ("n", "variations", "count"))):
            for name in names:
                if source.get(name) is not None:
                    raw, param = source[name], name
                    break
            if param:
                break
        if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_GENERATION_VARIATIONS:
            raise _invalid(param or "variations", f"must be an integer from 1 to {MAX_GENERATION_VARIATIONS}")
        return raw

    async def create_generation(self, request: Request) -> Response:
        body = await self._body(request)
        app_id = body.get("app_id")
        if app_id is None:
            raise _missing("app_id")
        app = APPS_BY_ID.get(app_id)
        if app is None:
            raise _invalid("app_id", f"unknown app; GET /generation-apps lists {sorted(APPS_BY_ID)}")
        inputs = body.get("input_data")
        if inputs is None:
            raise _missing("input_data")
        if not isinstance(inputs, dict):
            raise _invalid("input_data", "must be an object keyed by the app's input_fields")
        for spec in app["input_fields"]:
            if spec.get("required") and inputs.get(spec["name"]) in (None, ""):
                raise _missing(f"input_data.{spec['name']}")
        count = self._variation_count(body, inputs, app)
        persona = self._persona_for(body, required=False)
        variations = generation_variations(app_id, inputs, count, persona)
        output = "\n\n".join(f"{i}. {v}" for i, v in enumerate(variations, 1))
        prompt_tokens = count_tokens(canonical(inputs))
        completion_tokens = count_tokens(output)
        cost = min(30, 10 + 2 * (count - 1) + completion_tokens // 200)
        now = _now_iso()
        brand_voice_id = body.get("brand_voice_id")
        with self.mv.lock:
            self._spend("/generations", cost)
            ident = self.mv.new_id("gen_", 16)
            record = {
                "id": ident, "object": "generation",
                "title": body.get("title") or f"{app['name']}: {snippet(str(inputs.get('topic', app_id)), 50)}",
                "app": {"id": app["id"], "name": app["name"], "category": app["category"]},
                "brand_voice": {"id": brand_voice_id, "label": "Sandbox brand voice"} if brand_voice_id else None,
                "persona": {"id": persona.id, "name": persona.name} if persona else None,
                "input_data": inputs, "output": output, "content": output, "content_type": "markdown",
                "variations": variations, "workspace_id": body.get("workspace_id") or DEFAULT_WORKSPACE_ID,
                "credits_used": cost, "created_at": now, "updated_at": now, "sandbox": True,
            }
            self.mv.generations[ident] = record
        self._tokens("/generations", prompt_tokens, completion_tokens)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens, "credits_used": cost}
        return JSONResponse({**record, "usage": usage}, status_code=201)

    async def list_generations(self, request: Request) -> Response:
        app_id = request.query_params.get("app_id")
        workspace = request.query_params.get("workspace_id")
        search = (request.query_params.get("search") or "").lower()
        with self.mv.lock:
            records = list(reversed(self.mv.generations.values()))
        items = [{k: v for k, v in r.items() if k != "content"} for r in records
                 if (not app_id or r["app"]["id"] == app_id)
                 and (not workspace or r["workspace_id"] == workspace)
                 and (not search or search in r["title"].lower())]
        return JSONResponse(_page(request, items))

    def _generation(self, request: Request) -> dict[str, Any]:
        ident = request.path_params["generation_id"]
        record = self.mv.generations.get(ident)
        if record is None:
            raise _not_found("generation", ident)
        return record

    async def get_generation(self, request: Request) -> Response:
        with self.mv.lock:
            return JSONResponse(dict(self._generation(request)))

    async def update_generation(self, request: Request) -> Response:
        body = await self._body(request)
        title = body.get("title")
        if title is None:
            raise _missing("title")
        if not isinstance(title, str) or not 1 <= len(title) <= 100:
            raise _invalid("title", "must be a string of 1 to 100 characters")
        with self.mv.lock:
            record = self._generation(request)
            record.update(title=title, updated_at=_now_iso())
            return JSONResponse(dict(record))

    async def delete_generation(self, request: Request) -> Response:
        with self.mv.lock:
            record = self._generation(request)
            del self.mv.generations[record["id"]]
        return JSONResponse({"id": record["id"], "object": "generation", "deleted": True})

    # ------------------------------------------------------------ focus groups

    def _focus_object(self, group: FocusGroup) -> dict[str, Any]:
        out = {"id": group.id, "object": "focus_group", **group.body, "status": group.status,
               "credits_used": group.credits, "created_at": group.created_at,
               "updated_at": group.updated_at or group.created_at, "completed_at": group.completed_at,
               "progress": {"polls": group.polls,
                            "polls_to_complete": self.mv.focus_group_polls_to_complete},
               "sandbox": True}
        if group.status == "completed":
            out["results"] = group.result
        return out

    async def create_focus_group(self, request: Request) -> Response:
        body = await self._body(request)
        persona_ids = body.get("persona_ids")
        if persona_ids is None:
            raise _missing("persona_ids")
        if not isinstance(persona_ids, list) or not 1 <= len(persona_ids) <= MAX_FOCUS_PERSONAS:
            raise _invalid("persona_ids", f"must be a list of 1 to {MAX_FOCUS_PERSONAS} persona ids")
        personas = []
        for ident in persona_ids:
            persona = self.mv.persona(ident) if isinstance(ident, str) else None
            if persona is None:
                raise MaveraHTTPError(400, "invalid_persona", f"Unknown persona_id '{ident}'.", "persona_ids")
            personas.append(persona)
        stimuli = parse_stimuli(body)
        questions = parse_questions(body, has_stimuli=bool(stimuli))
        sample_size = body.get("sample_size", len(personas))
        if isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 1:
            raise _invalid("sample_size", "must be a positive integer")
        cost = focus_cost(len(personas), len(stimuli), len(questions))
        result = focus_results(personas, questions, stimuli)
        now = _now_iso()
        with self.mv.lock:
            if self.mv.active_focus_groups() >= FOCUS_GROUP_MAX_CONCURRENT:
                raise self._concurrency_error(
                    f"Too many focus groups generating at once (max {FOCUS_GROUP_MAX_CONCURRENT}); "
                    "poll the running ones until they complete.")
            self._spend("/focus-groups", cost)
            ident = self.mv.new_id("fg_", 16)
            echo = {"name": body.get("name") or f"Focus group {ident[-6:]}",
                    "workspace_id": body.get("workspace_id") or DEFAULT_WORKSPACE_ID,
                    "persona_ids": list(persona_ids),
                    "personas": [{"id": p.id, "name": p.name, "category": p.category} for p in personas],
                    "questions": questions, "stimuli": stimuli, "sample_size": sample_size}
            group = FocusGroup(id=ident, body=echo, result=result, credits=cost, created_at=now)
            self.mv.focus_groups[ident] = group
            out = self._focus_object(group)
        return JSONResponse({**out, "usage": {"credits_used": cost}}, status_code=201)

    async def get_focus_group(self, request: Request) -> Response:
        ident = request.path_params["focus_group_id"]
        with self.mv.lock:
            group = self.mv.focus_groups.get(ident)
            if group is None:
                raise _not_found("focus group", ident)
            if group.status != "completed":
                group.polls += 1
                group.updated_at = _now_iso()
                if group.polls >= self.mv.focus_group_polls_to_complete:
                    group.status, group.completed_at = "completed", group.updated_at
                else:
                    group.status = "processing"
            return JSONResponse(self._focus_object(group))

    async def list_focus_groups(self, request: Request) -> Response:
        """Not documented (§7); lists without advancing any group's status."""
        with self.mv.lock:
            items = [{k: v for k, v in self._focus_object(g).items() if k != "results"}
                     for g in reversed(self.mv.focus_groups.values())]
        return JSONResponse(_page(request, items))

    # ------------------------------------------------------------ usage

    async def usage(self, request: Request) -> Response:
        today = dt.datetime.now(dt.UTC)
        start = today.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(milliseconds=1)
        with self.mv.lock:
            included = int(self.state.config.mavera_credits)
            used = self.mv.credits_used
            by_endpoint = {name: {"requests": u.requests, "errors": u.errors, "credits_used": u.credits_used,
                                  "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens}
                           for name, u in sorted(self.mv.usage.items())}
            requests = sum(u.requests for u in self.mv.usage.values()) + 1  # this request
            prompt = sum(u.prompt_tokens for u in self.mv.usage.values())
            completion = sum(u.completion_tokens for u in self.mv.usage.values())
            errors = sum(u.errors for u in self.mv.usage.values())
            balance = self.mv.balance

        def iso(moment: dt.datetime) -> str:
            return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

        return JSONResponse({
            "object": "usage",
            "billing_period": {"start": iso(start), "end": iso(end)},
            "credits": {"used": used, "included": included, "remaining": balance,
                        "percentage_used": round(100 * used / included, 1) if included else 100},
            "transcription": {"minutes_used": 0, "minutes_included": 0, "minutes_remaining": 0,
                              "percentage_used": 0},
            "storage": {"gb_used": 0, "gb_included": 0, "gb_remaining": 0, "percentage_used": 0},
            "api_requests": {"total_requests": requests, "total_tokens": prompt + completion,
                             "prompt_tokens": prompt, "completion_tokens": completion,
                             "credits_used": used, "error_count": errors, "avg_latency_ms": 0},
            "rate_limit": {"requests_per_minute": self.mv.rate.limit},
            "auto_recharge": {"enabled": False, "threshold": 0, "credits_to_add": 0},
            "limits": {"budget_alert": None, "usage_limit": None},
            "by_endpoint": by_endpoint,  # sandbox extension, not in the documented shape
            "sandbox": True,
        })

    async def not_found(self, request: Request) -> Response:
        raise MaveraHTTPError(404, "resource_not_found",
                              f"No route {request.method} {request.url.path} in the Mavera sandbox.")


def routes(state: SandboxState) -> list[Route]:
    """The Mavera routes of the sandbox for `state` (attaches `state.mavera`)."""
    api = MaveraApi(state)
    p = MAVERA_PREFIX
    table: list[tuple[str, str, dict[str, Handler]]] = [
        ("/chat/completions", "/chat/completions", {"POST": api.chat_completions}),
        ("/responses", "/responses", {"POST": api.responses}),
        ("/personas", "/personas", {"GET": api.list_personas, "POST": api.create_persona}),
        ("/personas/{persona_id}", "/personas/{id}",
         {"GET": api.get_persona, "PATCH": api.update_persona, "DELETE": api.delete_persona}),
        ("/mave/chat", "/mave/chat", {"POST": api.mave_chat}),
        ("/mave/threads", "/mave/threads", {"GET": api.list_threads}),
        ("/mave/threads/{thread_id}", "/mave/threads/{id}",
         {"GET": api.get_thread, "PATCH": api.update_thread, "DELETE": api.delete_thread}),
        ("/generation-apps", "/generation-apps", {"GET": api.list_apps}),
        ("/generations", "/generations", {"GET": api.list_generations, "POST": api.create_generation}),
        ("/generations/{generation_id}", "/generations/{id}",
         {"GET": api.get_generation, "PATCH": api.update_generation, "DELETE": api.delete_generation}),
        ("/focus-groups", "/focus-groups", {"GET": api.list_focus_groups, "POST": api.create_focus_group}),
        ("/focus-groups/{focus_group_id}", "/focus-groups/{id}", {"GET": api.get_focus_group}),
        ("/usage", "/usage", {"GET": api.usage}),
    ]
    methods = ["GET", "POST", "PATCH", "PUT", "DELETE"]
    found = [Route(p + path, api.endpoint(name, handlers), methods=methods) for path, name, handlers in table]
    found.append(Route(p + "/{rest:path}", api.endpoint("unknown", {m: api.not_found for m in methods}),
                       methods=methods))
    return found
