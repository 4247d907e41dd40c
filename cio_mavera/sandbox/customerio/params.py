"""Request parsing shared by the App API routes: path ids, integers, cursors, page limits, bodies.

Page sizes (customerio-api.md §2.3): asking for more than the maximum gets a 400 here. The docs give
the maxima but not what happens above them (UNVERIFIED), and a strict sandbox catches a client
that ignores them; set CLAMP_OVER_MAX_LIMIT to True to clamp instead.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from ..state import sandbox_of
from .cursors import BadCursor, decode_position, encode_cursor, page_bounds
from .people import ID_TYPES
from .responses import AppError

CLAMP_OVER_MAX_LIMIT = False


def int_path(request: Request, name: str, what: str) -> int:
    """Path parameter `name` as an integer (400 "invalid <what> ID" otherwise)."""
    raw = request.path_params[name]
    try:
        return int(raw)
    except ValueError as exc:
        raise AppError(400, f"invalid {what} ID {raw!r}") from exc


def int_query(raw: str, name: str) -> int:
    """A query value as an integer (400 otherwise)."""
    try:
        return int(raw)
    except ValueError as exc:
        raise AppError(400, f"{name} must be an integer") from exc


def page_window(request: Request, limit: int, total: int, prefix: str = "") -> tuple[int, int, str]:
    """(start, stop, next token) of the page the `start` cursor asks for, out of `total` items.

    With `CioState.hollow_pages` = k, every page with items is preceded by k empty pages that
    still carry a `next` cursor: an empty page is not proof of the end (customerio-api.md §2.3).
    """
    try:
        offset, served = decode_position(request.query_params.get("start"), prefix)
    except BadCursor as exc:
        raise AppError(400, str(exc)) from exc
    if served < sandbox_of(request).cio.hollow_pages and offset < total:
        return offset, offset, encode_cursor(offset, prefix, served + 1)
    return page_bounds(offset, limit, total, prefix)


def page_limit(request: Request, bounds: tuple[int, int]) -> int:
    """The `limit` query parameter within (default, maximum) `bounds`."""
    default, maximum = bounds
    raw = request.query_params.get("limit")
    if not raw:
        return default
    value = int_query(raw, "limit")
    if value < 1:
        raise AppError(400, "limit must be at least 1")
    if value > maximum:
        if CLAMP_OVER_MAX_LIMIT:
            return maximum
        raise AppError(400, f"limit must be at most {maximum}")
    return value


def id_type_of(request: Request) -> str:
    """The `id_type` query parameter (default `id`)."""
    value = request.query_params.get("id_type") or "id"
    if value not in ID_TYPES:
        raise AppError(400, f"id_type must be one of {', '.join(ID_TYPES)}")
    return value


async def json_body(request: Request) -> Any:
    """The JSON body (None when empty)."""
    try:
        return json.loads(await request.body() or b"null")
    except ValueError as exc:
        raise AppError(400, "request body is not valid JSON") from exc
