"""/v1/customers: search by filter, lookup by email, and attributes of one person or many.

All of them read the directory: the workspace's people as Track left them, and those it created.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .data import directory_of
from .params import id_type_of, json_body, page_limit, page_window
from .people import FilterError
from .responses import AppError, app_json

SEARCH_LIMIT = (50, 1000)  # (default, max)
BULK_IDS_MAX = 100


async def search_customers(request: Request) -> JSONResponse:
    body = await json_body(request)
    if not isinstance(body, dict) or "filter" not in body:
        raise AppError(400, "body must be {\"filter\": {...}}")
    limit = page_limit(request, SEARCH_LIMIT)
    people = directory_of(request)
    try:
        rows = people.search(body["filter"])
    except FilterError as exc:
        raise AppError(400, f"invalid filter: {exc}") from exc
    start, stop, next_token = page_window(request, limit, len(rows))
    identifiers, ids = people.identifiers(rows[start:stop])
    return app_json({"identifiers": identifiers, "ids": ids, "next": next_token})


async def customers_by_email(request: Request) -> JSONResponse:
    email = request.query_params.get("email")
    if not email:
        raise AppError(400, "email is required")
    return app_json({"results": directory_of(request).by_email(email)})


async def bulk_attributes(request: Request) -> JSONResponse:
    id_type = id_type_of(request)
    body = await json_body(request)
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise AppError(400, "body must be {\"ids\": [string, ...]} with 1 to 100 ids")
    if len(ids) > BULK_IDS_MAX:
        raise AppError(400, f"too many ids: {len(ids)} (at most {BULK_IDS_MAX} per request)")
    people = directory_of(request)
    found = people.find(id_type, list(dict.fromkeys(ids)))
    rows = [int(r) for r in found if r >= 0]
    return app_json({"customers": people.attribute_items(rows)})


async def customer_attributes(request: Request) -> JSONResponse:
    id_type = id_type_of(request)
    identifier = request.path_params["customer_id"]
    people = directory_of(request)
    row = int(people.find(id_type, [identifier])[0])
    if row < 0:
        raise AppError(404, f"customer {identifier} not found")
    item = people.attribute_items([row])[0]
    return app_json({"customer": item})


routes = [
    Route("/v1/customers", customers_by_email, methods=["GET"]),
    Route("/v1/customers", search_customers, methods=["POST"]),
    Route("/v1/customers/attributes", bulk_attributes, methods=["POST"]),
    Route("/v1/customers/{customer_id}/attributes", customer_attributes, methods=["GET"]),
]
