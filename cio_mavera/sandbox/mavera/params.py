"""Request parsing shared by the Mavera routes: JSON body, model, query parameters and list pages."""

from __future__ import annotations

import base64
import json
from typing import Any

from starlette.requests import Request

from .errors import MaveraHTTPError, invalid, missing

ACCEPTED_MODELS = ("mavera-1",)  # §3: the only documented model
DEFAULT_WORKSPACE_ID = "ws_sandbox"


async def read_body(request: Request) -> dict[str, Any]:
    """The JSON object body (`{}` when empty)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise invalid(None, "the request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise invalid(None, "the request body must be a JSON object")
    return body


def check_model(body: dict[str, Any]) -> str:
    """The body's `model`, which must be one the API accepts."""
    model = body.get("model")
    if model is None:
        raise missing("model")
    if model not in ACCEPTED_MODELS:
        raise MaveraHTTPError(400, "invalid_model",
                              f"Invalid value for 'model': must be one of {list(ACCEPTED_MODELS)}.",
                              "model")
    return model


def text_of(content: Any) -> str:
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


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    """Query parameter `name` as an integer in [low, high]."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise invalid(name, f"must be an integer between {low} and {high}") from exc
    if not low <= value <= high:
        raise invalid(name, f"must be between {low} and {high}")
    return value


def bool_param(request: Request, name: str) -> bool | None:
    """Query parameter `name` as a boolean (None when absent)."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise invalid(name, "must be true or false")


def page(request: Request, items: list[dict[str, Any]]) -> dict[str, Any]:
    """A list page in both pagination styles (§1.6): cursor fields and offset fields together."""
    cursor = request.query_params.get("cursor")
    # Offset style (older pages) defaults to 20 items; cursor style to 50.
    offset_style = "offset" in request.query_params and not cursor
    limit = int_param(request, "limit", 20 if offset_style else 50, 1, 100)
    offset = _decode_cursor(cursor) if cursor else int_param(request, "offset", 0, 0, 10**9)
    data = items[offset:offset + limit]
    has_more = offset + len(data) < len(items)
    return {"object": "list", "data": data, "has_more": has_more,
            "next_cursor": _encode_cursor(offset + len(data)) if has_more else None,
            "total": len(items), "limit": limit, "offset": offset}


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
        raise invalid("cursor", "not a cursor returned by this API") from exc
