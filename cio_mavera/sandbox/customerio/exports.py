"""/v1/exports: start customers and deliveries exports, poll them, and hand out download URLs.

As documented (customerio-api.md §3.9): `POST /v1/exports/customers` takes `{"filters", "attributes"?}`
(the plural `filters`: the singular search key is refused), `POST /v1/exports/deliveries` one of
`newsletter_id`, `campaign_id` or `action_id` with an optional window, metric and attributes;
`GET /v1/exports` answers `{"exports": null}` when there are none; an unknown id is a 404; the
download URL is signed, expires after 15 minutes and points at the sandbox's file host. Asking for
the URL of an export that is not done is refused with 400 (the real answer is undocumented).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..state import sandbox_of
from .data import cio_data, directory_of
from .export_files import FILES_PREFIX
from .export_render import CustomerSnapshot, delivery_rows, render_customers, render_deliveries
from .export_store import ExportStore, SandboxExport
from .params import json_body
from .people import FilterError
from .responses import AppError, app_json

DELIVERY_OWNERS = ("newsletter_id", "campaign_id", "action_id")
DELIVERY_METRICS = ("created", "attempted", "sent", "delivered", "opened", "clicked", "converted",
                    "bounced", "spammed", "unsubscribed", "dropped", "failed", "undeliverable")
DEFAULT_SPAN_S = 183 * 86400  # without a window: the last 6 months
MAX_SPAN_S = 366 * 86400  # a longer window is truncated to 12 months


def _store(request: Request) -> ExportStore:
    return sandbox_of(request).cio.exports


def _now_base(request: Request) -> int:
    return cio_data(sandbox_of(request)).generated_at


def _attributes(body: dict[str, Any]) -> list[str] | None:
    names = body.get("attributes")
    if names is None:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise AppError(400, "attributes must be an array of attribute names")
    return names


async def export_customers(request: Request) -> JSONResponse:
    body = await json_body(request)
    if not isinstance(body, dict) or "filters" not in body:
        hint = " (the key is `filters`, plural)" if isinstance(body, dict) and "filter" in body else ""
        raise AppError(400, f"body must be {{\"filters\": {{...}}}}{hint}")
    attributes = _attributes(body)
    directory = directory_of(request)
    try:
        rows = directory.search(body["filters"])
    except FilterError as exc:
        raise AppError(400, f"invalid filters: {exc}") from exc
    snapshot = CustomerSnapshot(directory, rows, attributes)
    store = _store(request)
    export = store.create("customers", "people export (API)", _now_base(request),
                          lambda path: render_customers(snapshot, path))
    return app_json({"export": store.describe(export)})


def _int_field(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise AppError(400, f"{name} must be an integer")
    return value


async def export_deliveries(request: Request) -> JSONResponse:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise AppError(400, "body must be a JSON object")
    owners = {name: _int_field(body, name) for name in DELIVERY_OWNERS}
    owners = {name: value for name, value in owners.items() if value is not None}
    if len(owners) != 1:
        raise AppError(400, "exactly one of newsletter_id, campaign_id or action_id is required")
    (owner, owner_id), = owners.items()
    data = cio_data(sandbox_of(request))
    _check_owner(data, owner, owner_id)
    now = _store(request).now(data.generated_at)
    start, end = _int_field(body, "start"), _int_field(body, "end")
    end = now if end is None else end
    start = end - DEFAULT_SPAN_S if start is None else start
    if start > end:
        raise AppError(400, "start must not be after end")
    start = max(start, end - MAX_SPAN_S)
    metric = body.get("metric")
    if metric is not None and metric not in DELIVERY_METRICS:
        raise AppError(400, f"metric must be one of {', '.join(DELIVERY_METRICS)}")
    drafts = body.get("drafts", False)
    if not isinstance(drafts, bool):
        raise AppError(400, "drafts must be a boolean")
    attributes = _attributes(body) or []
    records = [] if drafts else [
        r for r in data.messages.records
        if r[owner] == owner_id and start <= r["created"] <= end
        and (metric is None or metric in r["metrics"])]
    table = delivery_rows(data.messages, records, directory_of(request), attributes)
    store = _store(request)
    export = store.create("deliveries", f"deliveries of {owner.removesuffix('_id')} {owner_id}",
                          data.generated_at, lambda path: render_deliveries(table, path))
    return app_json({"export": store.describe(export)})


def _check_owner(data: Any, owner: str, owner_id: int) -> None:
    if owner == "campaign_id":
        known = owner_id in data.campaign_ids
    elif owner == "action_id":
        known = owner_id in set(int(a) for a in data.ws.actions["action_id"])
    else:
        known = data.newsletters.get(owner_id) is not None
    if not known:
        raise AppError(404, f"{owner.removesuffix('_id')} {owner_id} not found")


def _export(request: Request) -> SandboxExport:
    raw = request.path_params["export_id"]
    try:
        export_id = int(raw)
    except ValueError as exc:
        raise AppError(400, f"invalid export ID {raw!r}") from exc
    export = _store(request).get(export_id)
    if export is None:
        raise AppError(404, f"export {export_id} not found")
    return export


async def list_exports(request: Request) -> JSONResponse:
    store = _store(request)
    exports = [store.describe(e) for e in store.all()]
    return app_json({"exports": exports or None})  # live: null, not [], when there are none


async def get_export(request: Request) -> JSONResponse:
    store = _store(request)
    return app_json({"export": store.describe(_export(request))})


async def download_export(request: Request) -> JSONResponse:
    store = _store(request)
    export = _export(request)
    status = store.status(export)
    if status != "done":
        raise AppError(400, f"export {export.id} is {status}; its file can be downloaded once "
                            "its status is done")
    host = f"{request.url.scheme}://{request.url.netloc}{FILES_PREFIX}"
    return app_json({"url": host + store.signed_path(export, _now_base(request))})


routes = [
    Route("/v1/exports", list_exports, methods=["GET"]),
    Route("/v1/exports/customers", export_customers, methods=["POST"]),
    Route("/v1/exports/deliveries", export_deliveries, methods=["POST"]),
    Route("/v1/exports/{export_id}", get_export, methods=["GET"]),
    Route("/v1/exports/{export_id}/download", download_export, methods=["GET"]),
]
