"""/v1/newsletters: one-time sends, their contents and their metrics."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .data import data_of
from .metrics import v1_metrics_answer
from .params import int_path, page_limit, page_window
from .responses import AppError, app_json
from .sends import Newsletters

NEWSLETTERS_LIMIT = (10, 100)  # (default, max); neither documented (UNVERIFIED); Airbyte asks for 100


def newsletter_item(request: Request) -> dict[str, Any]:
    """The newsletter of the `newsletter_id` in the path (404 when there is none)."""
    newsletter_id = int_path(request, "newsletter_id", "newsletter")
    item = data_of(request).newsletters.get(newsletter_id)
    if item is None:
        raise AppError(404, f"newsletter {newsletter_id} not found")
    return item


async def list_newsletters(request: Request) -> JSONResponse:
    items = list(data_of(request).newsletters.items)
    sort = request.query_params.get("sort") or "desc"
    if sort not in ("asc", "desc"):
        raise AppError(400, "sort must be asc or desc")
    if sort == "desc":
        items.reverse()
    limit = page_limit(request, NEWSLETTERS_LIMIT)
    start, stop, next_token = page_window(request, limit, len(items))
    return app_json({"newsletters": [Newsletters.object(i) for i in items[start:stop]],
                     "next": next_token})


async def get_newsletter(request: Request) -> JSONResponse:
    return app_json({"newsletter": Newsletters.object(newsletter_item(request))})


async def newsletter_contents(request: Request) -> JSONResponse:
    return app_json({"contents": Newsletters.contents(newsletter_item(request))})


async def newsletter_metrics(request: Request) -> JSONResponse:
    item = newsletter_item(request)
    kind = request.query_params.get("type") or None
    newsletters = data_of(request).newsletters

    def daily(first: dt.date, last: dt.date) -> dict[str, np.ndarray]:
        return {} if kind not in (None, "email") else newsletters.daily(item, first, last)

    # Newsletter metrics are documented with period/steps/type only; v2 parameters are ignored.
    return v1_metrics_answer(request, daily, data_of(request).generated_at)


routes = [
    Route("/v1/newsletters", list_newsletters, methods=["GET"]),
    Route("/v1/newsletters/{newsletter_id}", get_newsletter, methods=["GET"]),
    Route("/v1/newsletters/{newsletter_id}/contents", newsletter_contents, methods=["GET"]),
    Route("/v1/newsletters/{newsletter_id}/metrics", newsletter_metrics, methods=["GET"]),
]
