"""/v1/campaigns: campaigns, their actions, and campaign and action metrics."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..workspace import metric_series
from .data import data_of
from .metrics import metrics_answer
from .params import int_path, page_window
from .responses import AppError, app_json
from .shapes import action_object, campaign_object

ACTIONS_PAGE = 10  # fixed, no limit parameter


def campaign_row(request: Request) -> Any:
    """The workspace row of the `campaign_id` in the path (404 when there is none)."""
    campaign_id = int_path(request, "campaign_id", "campaign")
    campaigns = data_of(request).ws.campaigns
    match = campaigns[campaigns["campaign_id"] == campaign_id]
    if match.empty:
        raise AppError(404, f"campaign {campaign_id} not found")
    return match.iloc[0]


def _action(request: Request, campaign_id: int) -> Any:
    action_id = int_path(request, "action_id", "action")
    actions = data_of(request).ws.actions
    match = actions[(actions["campaign_id"] == campaign_id) & (actions["action_id"] == action_id)]
    if match.empty:
        raise AppError(404, f"action {action_id} not found in campaign {campaign_id}")
    return next(match.itertuples())


async def list_campaigns(request: Request) -> JSONResponse:
    ws = data_of(request).ws
    return app_json({"campaigns": [campaign_object(ws, row) for _, row in ws.campaigns.iterrows()]})


async def get_campaign(request: Request) -> JSONResponse:
    return app_json({"campaign": campaign_object(data_of(request).ws, campaign_row(request))})


async def list_actions(request: Request) -> JSONResponse:
    campaign = campaign_row(request)
    actions = data_of(request).ws.actions
    rows = list(actions[actions["campaign_id"] == campaign["campaign_id"]].itertuples())
    start, stop, next_token = page_window(request, ACTIONS_PAGE, len(rows))
    return app_json({"actions": [action_object(r, list_item=True) for r in rows[start:stop]],
                     "next": next_token})


async def get_action(request: Request) -> JSONResponse:
    campaign = campaign_row(request)
    action = _action(request, int(campaign["campaign_id"]))
    return app_json({"action": action_object(action, list_item=False)})


async def campaign_metrics(request: Request) -> JSONResponse:
    campaign = campaign_row(request)
    campaign_id = int(campaign["campaign_id"])
    ws = data_of(request).ws
    kind = request.query_params.get("type") or None
    actions = ws.actions[ws.actions["campaign_id"] == campaign_id]
    if kind is not None:
        actions = actions[actions["channel"] == kind]
    ids = [int(a) for a in actions["action_id"]]

    def daily(first: dt.date, last: dt.date) -> dict[str, np.ndarray]:
        if kind is None:
            return metric_series(ws, campaign_id, None, first, last)
        return _sum_series([metric_series(ws, campaign_id, a, first, last) for a in ids])

    return metrics_answer(request, daily, data_of(request).generated_at)


async def action_metrics(request: Request) -> JSONResponse:
    campaign = campaign_row(request)
    campaign_id = int(campaign["campaign_id"])
    action = _action(request, campaign_id)
    ws = data_of(request).ws
    kind = request.query_params.get("type") or None

    def daily(first: dt.date, last: dt.date) -> dict[str, np.ndarray]:
        if kind is not None and kind != action.channel:
            return {}
        return metric_series(ws, campaign_id, int(action.action_id), first, last)

    return metrics_answer(request, daily, data_of(request).generated_at)


def _sum_series(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for part in parts:
        for name, values in part.items():
            out[name] = out.get(name, 0) + values
    return out


routes = [
    Route("/v1/campaigns", list_campaigns, methods=["GET"]),
    Route("/v1/campaigns/{campaign_id}", get_campaign, methods=["GET"]),
    Route("/v1/campaigns/{campaign_id}/actions", list_actions, methods=["GET"]),
    Route("/v1/campaigns/{campaign_id}/actions/{action_id}", get_action, methods=["GET"]),
    Route("/v1/campaigns/{campaign_id}/metrics", campaign_metrics, methods=["GET"]),
    Route("/v1/campaigns/{campaign_id}/actions/{action_id}/metrics", action_metrics, methods=["GET"]),
]
