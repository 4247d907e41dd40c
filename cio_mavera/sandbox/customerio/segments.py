"""/v1/segments: segments, their customer counts and their membership pages."""

from __future__ import annotations

from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .data import CioData, data_of, directory_of
from .params import int_path, page_limit, page_window
from .responses import AppError, app_json

MEMBERSHIP_LIMIT = (1000, 30000)  # (default, max); the default is UNVERIFIED (the docs give only the max)
MEMBERSHIP_CURSOR_PREFIX = "0:"  # live membership cursors decode to "0:<offset>"


def _segment_id(request: Request) -> int:
    segment_id = int_path(request, "segment_id", "segment")
    if segment_id not in data_of(request).segment_ids:
        raise AppError(404, f"segment {segment_id} not found")
    return segment_id


def _segment_object(data: CioData, segment_id: int) -> dict[str, Any]:
    segments = data.ws.segments
    row = segments[segments["segment_id"] == segment_id].iloc[0]
    return {"id": segment_id, "deduplicate_id": f"{segment_id}:{int(row['updated_at'])}",
            "name": row["name"], "description": row["description"], "state": row["state"],
            "progress": None, "type": row["type"], "tags": None,
            "created_at": int(row["created_at"]), "updated_at": int(row["updated_at"])}


async def list_segments(request: Request) -> JSONResponse:
    data = data_of(request)
    ids = [int(s) for s in data.ws.segments["segment_id"]]
    return app_json({"segments": [_segment_object(data, s) for s in ids]})


async def get_segment(request: Request) -> JSONResponse:
    return app_json({"segment": _segment_object(data_of(request), _segment_id(request))})


async def segment_count(request: Request) -> JSONResponse:
    segment_id = _segment_id(request)
    return app_json({"count": int(len(data_of(request).ws.segment_members.get(segment_id, ())))})


async def segment_membership(request: Request) -> JSONResponse:
    segment_id = _segment_id(request)
    data = data_of(request)
    members = data.ws.segment_members.get(segment_id, np.array([], dtype=np.int64))
    limit = page_limit(request, MEMBERSHIP_LIMIT)
    if len(members) == 0:
        # Live: an empty segment answers null lists, not empty ones.
        return app_json({"identifiers": None, "ids": None, "next": "", "segment_id": segment_id})
    start, stop, next_token = page_window(request, limit, len(members), MEMBERSHIP_CURSOR_PREFIX)
    identifiers, ids = directory_of(request).identifiers(members[start:stop])
    return app_json({"identifiers": identifiers, "ids": ids, "next": next_token,
                     "segment_id": segment_id})


routes = [
    Route("/v1/segments", list_segments, methods=["GET"]),
    Route("/v1/segments/{segment_id}", get_segment, methods=["GET"]),
    Route("/v1/segments/{segment_id}/customer_count", segment_count, methods=["GET"]),
    Route("/v1/segments/{segment_id}/membership", segment_membership, methods=["GET"]),
]
