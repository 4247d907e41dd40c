"""Track v2: batches of operations (207 for partly bad ones) and single entity operations."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..state import SandboxState, sandbox_of
from .data import directory
from .responses import TrackV2Error, track_json
from .track_rules import BATCH_MAX_BYTES, ITEM_MAX_BYTES, v2_problem


async def batch(request: Request) -> JSONResponse:
    raw = await request.body()
    if len(raw) > BATCH_MAX_BYTES:
        raise TrackV2Error(400, "too_large", "batch",
                           f"request is {len(raw)} bytes; a batch is limited to {BATCH_MAX_BYTES}")
    body = _parse(raw)
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
        raise TrackV2Error(400, "required", "batch", "body must be {\"batch\": [operation, ...]}")
    state = sandbox_of(request)
    errors = []
    for index, op in enumerate(body["batch"]):
        problem = v2_problem(op)
        if problem:
            reason, field, message = problem
            errors.append({"batch_index": index, "reason": reason, "field": field, "message": message})
        else:
            _apply(state, op)
    if errors:
        return track_json({"errors": errors}, 207)
    return track_json({})


async def entity(request: Request) -> JSONResponse:
    raw = await request.body()
    if len(raw) > ITEM_MAX_BYTES:
        raise TrackV2Error(400, "too_large", "", f"request is {len(raw)} bytes; limit {ITEM_MAX_BYTES}")
    op = _parse(raw)
    problem = v2_problem(op)
    if problem:
        raise TrackV2Error(400, *problem)
    _apply(sandbox_of(request), op)
    return track_json({})


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise TrackV2Error(400, "invalid_json", "", "request body is not valid JSON") from exc


def _apply(state: SandboxState, op: dict[str, Any]) -> None:
    """Record an accepted operation; person identifies and events also land where v1's do."""
    state.cio.record_v2(op)
    if op["type"] != "person":
        return
    (kind, value), = op["identifiers"].items()
    key = f"cio_{value}" if kind == "cio_id" else str(value)
    if op["action"] == "identify":
        attributes = op.get("attributes") or {}
        state.cio.record_identify(key, attributes)
        directory(state).write(kind, str(value), attributes)
    elif op["action"] in ("event", "screen", "page"):
        state.cio.record_event(key, {"name": op["name"], "type": op["action"],
                                     "data": op.get("attributes") or {},
                                     **{k: op[k] for k in ("id", "timestamp") if k in op}})


routes = [
    Route("/api/v2/batch", batch, methods=["POST"]),
    Route("/api/v2/entity", entity, methods=["POST"]),
]
