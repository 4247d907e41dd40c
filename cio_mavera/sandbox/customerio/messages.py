"""/v1/messages (and a campaign's or newsletter's messages): pages of the delivery sample."""

from __future__ import annotations

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .campaigns import campaign_row
from .data import data_of
from .newsletters import newsletter_item
from .params import int_query, page_limit, page_window
from .responses import AppError, app_json

MESSAGES_LIMIT = (50, 1000)  # (default, max)
MESSAGES_WINDOW_S = 183 * 86400  # "max 6 months per request"


async def list_messages(request: Request) -> JSONResponse:
    return _page(request, {})


async def campaign_messages(request: Request) -> JSONResponse:
    campaign = campaign_row(request)
    return _page(request, {"campaign_id": int(campaign["campaign_id"])})


async def newsletter_messages(request: Request) -> JSONResponse:
    item = newsletter_item(request)
    return _page(request, {"newsletter_id": item["id"]})


async def get_message(request: Request) -> JSONResponse:
    sample = data_of(request).messages
    record = sample.by_id.get(request.path_params["message_id"])
    if record is None:
        raise AppError(404, "message not found")
    tracked = request.query_params.get("get_tracked_responses") == "true"
    return app_json({"message": sample.render(record, tracked)})


def _page(request: Request, fixed: dict[str, int]) -> JSONResponse:
    q = request.query_params
    limit = page_limit(request, MESSAGES_LIMIT)
    data = data_of(request)
    start_ts, end_ts = _window(q.get("start_ts"), q.get("end_ts"), data.generated_at)
    sample = data.messages
    # Newest first: created descends along `records`, so the window is one contiguous run.
    lo = int(np.searchsorted(-sample.created, -end_ts, side="left"))
    hi = int(np.searchsorted(-sample.created, -start_ts, side="right"))
    wanted = dict(fixed)
    for name in ("campaign_id", "action_id", "newsletter_id"):
        if q.get(name):
            wanted[name] = int_query(q[name], name)
    kind, metric = q.get("type") or None, q.get("metric") or None
    drafts = q.get("drafts") == "true"
    picked = [] if drafts else [
        r for r in sample.records[lo:hi]
        if all(r[k] == v for k, v in wanted.items())
        and (kind is None or r["type"] == kind) and (metric is None or metric in r["metrics"])
    ]
    start, stop, next_token = page_window(request, limit, len(picked))
    tracked = q.get("get_tracked_responses") == "true"
    return app_json({"messages": [sample.render(r, tracked) for r in picked[start:stop]],
                     "next": next_token})


def _window(start_raw: str | None, end_raw: str | None, now: int) -> tuple[int, int]:
    """Inclusive (start_ts, end_ts) after the documented 6-month defaults and clamp."""
    start = int_query(start_raw, "start_ts") if start_raw else None
    end = int_query(end_raw, "end_ts") if end_raw else None
    if end is None:
        end = now
    if start is None:
        start = end - MESSAGES_WINDOW_S
    if start > end:
        raise AppError(400, "start_ts must not be after end_ts")
    return max(start, end - MESSAGES_WINDOW_S), end


routes = [
    Route("/v1/campaigns/{campaign_id}/messages", campaign_messages, methods=["GET"]),
    Route("/v1/newsletters/{newsletter_id}/messages", newsletter_messages, methods=["GET"]),
    Route("/v1/messages", list_messages, methods=["GET"]),
    Route("/v1/messages/{message_id}", get_message, methods=["GET"]),
]
