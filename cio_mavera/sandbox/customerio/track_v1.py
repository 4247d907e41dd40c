"""Track v1: the region lookup, identify (PUT a person) and events of a person.

Writes answer `{}` and are recorded in `state.cio`; an identify updates (or creates) the person the
App API then reads back, in attribute reads, lookups and searches (directory.py).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..config import CIO_TRACK_EU_PREFIX, CIO_TRACK_PREFIX
from ..state import sandbox_of
from .data import directory
from .responses import TrackV1Error, track_json
from .track_rules import (
    RESERVED,
    attributes_problem,
    event_problem,
    identifier_kind,
    identifier_problem,
)

REGION_PATH = "/api/v1/accounts/region"


async def region(request: Request) -> JSONResponse:
    state = sandbox_of(request)
    own = CIO_TRACK_EU_PREFIX if state.config.region == "eu" else CIO_TRACK_PREFIX
    base = str(request.base_url).rstrip("/")
    return track_json({"url": f"{base}{own}", "region": state.config.region,
                       "environment_id": int(state.workspace.workspace_id)})


async def identify(request: Request) -> JSONResponse:
    identifier = request.path_params["identifier"]
    body = await _body(request)
    if not isinstance(body, dict):
        raise TrackV1Error(400, "body must be a JSON object of attributes")
    problem = identifier_problem(identifier) or attributes_problem(body)
    if problem:
        raise TrackV1Error(400, problem)
    state = sandbox_of(request)
    kind, value = identifier_kind(identifier)
    kept = {k: v for k, v in body.items() if k not in RESERVED}
    state.cio.record_identify(identifier, kept)
    directory(state).write(kind, value, kept, create=body.get("_update") is not True)
    return track_json({})


async def track_event(request: Request) -> JSONResponse:
    identifier = request.path_params["identifier"]
    body = await _body(request)
    problem = identifier_problem(identifier) or event_problem(body)
    if problem:
        raise TrackV1Error(400, problem)
    sandbox_of(request).cio.record_event(identifier, {**body, "name": body["name"].strip()})
    return track_json({})


async def _body(request: Request) -> Any:
    """The JSON body; None when it is empty or not JSON (the checks then report it)."""
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        return None


routes = [
    Route(REGION_PATH, region, methods=["GET"]),
    Route("/api/v1/customers/{identifier}", identify, methods=["PUT"]),
    Route("/api/v1/customers/{identifier}/events", track_event, methods=["POST"]),
]
