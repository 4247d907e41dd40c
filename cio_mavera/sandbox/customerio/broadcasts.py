"""/v1/broadcasts: API-triggered broadcasts, their action and their metrics."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .data import data_of
from .metrics import v1_metrics_answer
from .params import int_path
from .responses import AppError, app_json


def _broadcast(request: Request) -> dict[str, Any]:
    broadcast_id = int_path(request, "broadcast_id", "broadcast")
    item = data_of(request).broadcasts.get(broadcast_id)
    if item is None:
        raise AppError(404, f"broadcast {broadcast_id} not found")
    return item


async def list_broadcasts(request: Request) -> JSONResponse:
    broadcasts = data_of(request).broadcasts
    return app_json({"broadcasts": [broadcasts.object(item) for item in broadcasts.items]})


async def get_broadcast(request: Request) -> JSONResponse:
    return app_json({"broadcast": data_of(request).broadcasts.object(_broadcast(request))})


async def broadcast_actions(request: Request) -> JSONResponse:
    item = _broadcast(request)
    return app_json({"actions": data_of(request).broadcasts.actions(item, list_item=True), "next": ""})


async def broadcast_metrics(request: Request) -> JSONResponse:
    item = _broadcast(request)
    kind = request.query_params.get("type") or None
    data = data_of(request)

    def daily(first: dt.date, last: dt.date) -> dict[str, np.ndarray]:
        if kind is not None and kind != item["channel"]:
            return {}
        return data.broadcasts.daily(data.ws, item, first, last)

    # Broadcast metrics are documented with period/steps/type only; v2 parameters are ignored.
    return v1_metrics_answer(request, daily, data_of(request).generated_at)


async def broadcast_action_metrics(request: Request) -> JSONResponse:
    item = _broadcast(request)
    action_id = int_path(request, "action_id", "action")
    if action_id != item["action_id"]:
        raise AppError(404, f"action {action_id} not found in broadcast {item['id']}")
    return await broadcast_metrics(request)  # a broadcast here has one action: the same series


routes = [
    Route("/v1/broadcasts", list_broadcasts, methods=["GET"]),
    Route("/v1/broadcasts/{broadcast_id}", get_broadcast, methods=["GET"]),
    Route("/v1/broadcasts/{broadcast_id}/actions", broadcast_actions, methods=["GET"]),
    Route("/v1/broadcasts/{broadcast_id}/metrics", broadcast_metrics, methods=["GET"]),
    Route("/v1/broadcasts/{broadcast_id}/actions/{action_id}/metrics", broadcast_action_metrics,
          methods=["GET"]),
]
