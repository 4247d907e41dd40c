"""The Customer.io App API half of the sandbox (and the mount point of its Track routes).

Served under `/cio/app` (US) and `/cio-eu/app` (EU); the workspace lives in `config.region`, so
its key is refused with 401 on the other region's prefix, as the real App API does (no
cross-region redirect). Every App route shares one sliding-window limit of `config.app_rps`
requests per second, answered with the documented 429 body and `Retry-After: 1`.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .cursors import BadCursor, decode_cursor, page_bounds
from .customerio_content import Broadcasts, Messages, Newsletters, action_object, campaign_object
from .customerio_metrics import MetricsParamError, v1_response, v2_response
from .customerio_people import ID_TYPES, FilterError, People
from .customerio_state import CioState
from .state import CIO_APP_EU_PREFIX, CIO_APP_PREFIX, SandboxState
from .workspace import Workspace, metric_series

# Page sizes (customerio-api.md §2.3). Asking for more than the maximum gets a 400 here: the docs
# give the maxima but not what happens above them (UNVERIFIED), and a strict sandbox catches a
# client that ignores them. Set CLAMP_OVER_MAX_LIMIT to True to clamp instead.
CLAMP_OVER_MAX_LIMIT = False
SEARCH_LIMIT = (50, 1000)  # (default, max)
MESSAGES_LIMIT = (50, 1000)
MEMBERSHIP_LIMIT = (1000, 30000)  # default UNVERIFIED (the docs give only the max)
NEWSLETTERS_LIMIT = (10, 100)  # neither documented (UNVERIFIED); Airbyte asks for 100
ACTIONS_PAGE = 10  # fixed, no limit parameter
BULK_IDS_MAX = 100
MESSAGES_WINDOW_S = 183 * 86400  # "max 6 months per request"
MEMBERSHIP_CURSOR_PREFIX = "0:"  # live membership cursors decode to "0:<offset>"

JSON_HEADERS = {"cache-control": "must-revalidate,no-cache,no-store"}
Handler = Callable[[Request], Awaitable[JSONResponse]]


class AppError(Exception):
    """An App API error answer: status and the `detail` of its errors envelope."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def app_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON response with the live App API's content type and cache headers."""
    return JSONResponse(body, status_code=status, headers={**JSON_HEADERS, **(headers or {})},
                        media_type="application/json; charset=utf-8")


def errors_body(status: int, detail: str) -> dict[str, Any]:
    """The App API's errors envelope (`status` is a string, as in the current spec)."""
    return {"errors": [{"detail": detail, "status": str(status)}]}


class CioData:
    """Everything the App routes derive from the workspace, built once on first use."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.people = People(ws)
        self.broadcasts = Broadcasts(ws)
        self.newsletters = Newsletters(ws)
        self.generated_at = int(time.time())
        self.messages = Messages(ws, self.newsletters, self.generated_at)
        self.campaign_ids = set(int(c) for c in ws.campaigns["campaign_id"])
        self.segment_ids = set(int(s) for s in ws.segments["segment_id"])


def cio_data(state: SandboxState) -> CioData:
    """The derived data of `state`'s workspace, built on first use."""
    cio: CioState = state.cio
    with cio.derived_lock:
        if cio.derived is None:
            cio.derived = CioData(state.workspace)
        return cio.derived


class App:
    """App API handlers bound to one sandbox state."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    @property
    def cio(self) -> CioState:
        return self.state.cio

    @property
    def data(self) -> CioData:
        return cio_data(self.state)

    # --- gate: auth, region, rate limit -------------------------------------------------------

    def guard(self, handler: Handler, region: str) -> Handler:
        """Wrap `handler` with the App API's auth, region check, rate limit and error envelope."""

        async def endpoint(request: Request) -> JSONResponse:
            expected = f"Bearer {self.state.keys['CIO_APP_KEY']}"
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), expected.encode()) or region != self.state.config.region:
                return app_json(errors_body(401, "unauthorized"), 401)
            config = self.state.config
            if self.cio.roll_forced_429(config.force_429_rate) or not self.cio.rate.admit():
                self.state.stats.count_429("app")
                detail = f"rate limited to {config.app_rps} requests per 1s (reference {secrets.token_hex(3)})"
                return app_json(errors_body(429, detail), 429, {"Retry-After": "1"})
            try:
                return await handler(request)
            except AppError as exc:
                return app_json(errors_body(exc.status, exc.detail), exc.status)

        return endpoint

    # --- campaigns ----------------------------------------------------------------------------

    def _campaign(self, request: Request) -> Any:
        campaign_id = _int_path(request, "campaign_id", "campaign")
        campaigns = self.data.ws.campaigns
        match = campaigns[campaigns["campaign_id"] == campaign_id]
        if match.empty:
            raise AppError(404, f"campaign {campaign_id} not found")
        return match.iloc[0]

    def _action(self, request: Request, campaign_id: int) -> Any:
        action_id = _int_path(request, "action_id", "action")
        actions = self.data.ws.actions
        match = actions[(actions["campaign_id"] == campaign_id) & (actions["action_id"] == action_id)]
        if match.empty:
            raise AppError(404, f"action {action_id} not found in campaign {campaign_id}")
        return next(match.itertuples())

    async def campaigns(self, request: Request) -> JSONResponse:
        ws = self.data.ws
        return app_json({"campaigns": [campaign_object(ws, row) for _, row in ws.campaigns.iterrows()]})

    async def campaign(self, request: Request) -> JSONResponse:
        return app_json({"campaign": campaign_object(self.data.ws, self._campaign(request))})

    async def campaign_actions(self, request: Request) -> JSONResponse:
        campaign = self._campaign(request)
        actions = self.data.ws.actions
        rows = list(actions[actions["campaign_id"] == campaign["campaign_id"]].itertuples())
        start, stop, next_token = page_bounds(_cursor(request), ACTIONS_PAGE, len(rows))
        return app_json({"actions": [action_object(r, list_item=True) for r in rows[start:stop]],
                         "next": next_token})

    async def campaign_action(self, request: Request) -> JSONResponse:
        campaign = self._campaign(request)
        action = self._action(request, int(campaign["campaign_id"]))
        return app_json({"action": action_object(action, list_item=False)})

    async def campaign_metrics(self, request: Request) -> JSONResponse:
        campaign = self._campaign(request)
        campaign_id = int(campaign["campaign_id"])
        ws = self.data.ws
        kind = request.query_params.get("type") or None
        actions = ws.actions[ws.actions["campaign_id"] == campaign_id]
        if kind is not None:
            actions = actions[actions["channel"] == kind]
        ids = [int(a) for a in actions["action_id"]]

        def daily(first: dt.date, last: dt.date) -> dict[str, np.ndarray]:
            if kind is None:
                return metric_series(ws, campaign_id, None, first, last)
            return _sum_series([metric_series(ws, campaign_id, a, first, last) for a in ids], first, last)

        return self._metrics(request, daily)

    async def action_metrics(self, request: Request) -> JSONResponse:
        campaign = self._campaign(request)
        campaign_id = int(campaign["campaign_id"])
        action = self._action(request, campaign_id)
        ws = self.data.ws
        kind = request.query_params.get("type") or None

        def daily(first: dt.date, last: dt.date) -> dict[str, np.ndarray]:
            if kind is not None and kind != action.channel:
                return {}
            return metric_series(ws, campaign_id, int(action.action_id), first, last)

        return self._metrics(request, daily)

    def _metrics(self, request: Request, daily: Callable[[dt.date, dt.date], dict[str, np.ndarray]],
                 allow_v2: bool = True) -> JSONResponse:
        params = dict(request.query_params)
        try:
            if allow_v2 and params.get("version") == "2":
                return app_json(v2_response(daily, params))
            return app_json(v1_response(daily, params, int(time.time())))
        except MetricsParamError as exc:
            raise AppError(400, str(exc)) from exc

    # --- broadcasts ---------------------------------------------------------------------------

    def _broadcast(self, request: Request) -> dict[str, Any]:
        broadcast_id = _int_path(request, "broadcast_id", "broadcast")
        item = self.data.broadcasts.get(broadcast_id)
        if item is None:
            raise AppError(404, f"broadcast {broadcast_id} not found")
        return item

    async def broadcasts(self, request: Request) -> JSONResponse:
        b = self.data.broadcasts
        return app_json({"broadcasts": [b.object(item) for item in b.items]})

    async def broadcast(self, request: Request) -> JSONResponse:
        return app_json({"broadcast": self.data.broadcasts.object(self._broadcast(request))})

    async def broadcast_actions(self, request: Request) -> JSONResponse:
        item = self._broadcast(request)
        return app_json({"actions": self.data.broadcasts.actions(item, list_item=True), "next": ""})

    async def broadcast_metrics(self, request: Request) -> JSONResponse:
        item = self._broadcast(request)
        kind = request.query_params.get("type") or None
        data = self.data

        def daily(first: dt.date, last: dt.date) -> dict[str, np.ndarray]:
            if kind is not None and kind != item["channel"]:
                return {}
            return data.broadcasts.daily(data.ws, item, first, last)

        # version=2 for broadcasts is described in 2026 docs but its params are UNVERIFIED;
        # the sandbox accepts the campaign v2 params.
        return self._metrics(request, daily)

    # --- newsletters --------------------------------------------------------------------------

    def _newsletter(self, request: Request) -> dict[str, Any]:
        newsletter_id = _int_path(request, "newsletter_id", "newsletter")
        item = self.data.newsletters.get(newsletter_id)
        if item is None:
            raise AppError(404, f"newsletter {newsletter_id} not found")
        return item

    async def newsletters(self, request: Request) -> JSONResponse:
        items = list(self.data.newsletters.items)
        sort = request.query_params.get("sort") or "desc"
        if sort not in ("asc", "desc"):
            raise AppError(400, "sort must be asc or desc")
        if sort == "desc":
            items.reverse()
        limit = _limit(request, NEWSLETTERS_LIMIT)
        start, stop, next_token = page_bounds(_cursor(request), limit, len(items))
        return app_json({"newsletters": [Newsletters.object(i) for i in items[start:stop]],
                         "next": next_token})

    async def newsletter(self, request: Request) -> JSONResponse:
        return app_json({"newsletter": Newsletters.object(self._newsletter(request))})

    async def newsletter_contents(self, request: Request) -> JSONResponse:
        return app_json({"contents": Newsletters.contents(self._newsletter(request))})

    async def newsletter_metrics(self, request: Request) -> JSONResponse:
        item = self._newsletter(request)
        kind = request.query_params.get("type") or None
        newsletters = self.data.newsletters

        def daily(first: dt.date, last: dt.date) -> dict[str, np.ndarray]:
            return {} if kind not in (None, "email") else newsletters.daily(item, first, last)

        return self._metrics(request, daily)

    # --- segments -----------------------------------------------------------------------------

    def _segment_id(self, request: Request) -> int:
        segment_id = _int_path(request, "segment_id", "segment")
        if segment_id not in self.data.segment_ids:
            raise AppError(404, f"segment {segment_id} not found")
        return segment_id

    def _segment_object(self, segment_id: int) -> dict[str, Any]:
        segments = self.data.ws.segments
        row = segments[segments["segment_id"] == segment_id].iloc[0]
        return {"id": segment_id, "deduplicate_id": f"{segment_id}:{int(row['updated_at'])}",
                "name": row["name"], "description": row["description"], "state": row["state"],
                "progress": None, "type": row["type"], "tags": None,
                "created_at": int(row["created_at"]), "updated_at": int(row["updated_at"])}

    async def segments(self, request: Request) -> JSONResponse:
        ids = [int(s) for s in self.data.ws.segments["segment_id"]]
        return app_json({"segments": [self._segment_object(s) for s in ids]})

    async def segment(self, request: Request) -> JSONResponse:
        return app_json({"segment": self._segment_object(self._segment_id(request))})

    async def segment_count(self, request: Request) -> JSONResponse:
        segment_id = self._segment_id(request)
        return app_json({"count": int(len(self.data.ws.segment_members.get(segment_id, ())))})

    async def segment_membership(self, request: Request) -> JSONResponse:
        segment_id = self._segment_id(request)
        members = self.data.ws.segment_members.get(segment_id, np.array([], dtype=np.int64))
        limit = _limit(request, MEMBERSHIP_LIMIT)
        offset = _cursor(request, MEMBERSHIP_CURSOR_PREFIX)
        if len(members) == 0:
            # Live: an empty segment answers null lists, not empty ones.
            return app_json({"identifiers": None, "ids": None, "next": "", "segment_id": segment_id})
        start, stop, next_token = page_bounds(offset, limit, len(members), MEMBERSHIP_CURSOR_PREFIX)
        identifiers, ids = self.data.people.identifiers(members[start:stop])
        return app_json({"identifiers": identifiers, "ids": ids, "next": next_token,
                         "segment_id": segment_id})

    # --- customers ----------------------------------------------------------------------------

    async def search_customers(self, request: Request) -> JSONResponse:
        body = await _json_body(request)
        if not isinstance(body, dict) or "filter" not in body:
            raise AppError(400, "body must be {\"filter\": {...}}")
        limit = _limit(request, SEARCH_LIMIT)
        offset = _cursor(request)
        try:
            rows = self.data.people.search(body["filter"])
        except FilterError as exc:
            raise AppError(400, f"invalid filter: {exc}") from exc
        start, stop, next_token = page_bounds(offset, limit, len(rows))
        identifiers, ids = self.data.people.identifiers(rows[start:stop])
        return app_json({"identifiers": identifiers, "ids": ids, "next": next_token})

    async def bulk_attributes(self, request: Request) -> JSONResponse:
        id_type = _id_type(request)
        body = await _json_body(request)
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise AppError(400, "body must be {\"ids\": [string, ...]} with 1 to 100 ids")
        if len(ids) > BULK_IDS_MAX:
            raise AppError(400, f"too many ids: {len(ids)} (at most {BULK_IDS_MAX} per request)")
        unique = list(dict.fromkeys(ids))
        found = self.data.people.find(id_type, unique)
        rows = [int(r) for r in found if r >= 0]
        return app_json({"customers": self.data.people.attribute_items(rows, self.cio.overlays)})

    async def customer_attributes(self, request: Request) -> JSONResponse:
        id_type = _id_type(request)
        identifier = request.path_params["customer_id"]
        row = int(self.data.people.find(id_type, [identifier])[0])
        if row < 0:
            raise AppError(404, f"customer {identifier} not found")
        item = self.data.people.attribute_items([row], self.cio.overlays)[0]
        return app_json({"customer": item})

    async def customers_by_email(self, request: Request) -> JSONResponse:
        email = request.query_params.get("email")
        if not email:
            raise AppError(400, "email is required")
        return app_json({"results": self.data.people.by_email(email)})

    # --- messages -----------------------------------------------------------------------------

    async def messages(self, request: Request) -> JSONResponse:
        return self._message_page(request, {})

    async def campaign_messages(self, request: Request) -> JSONResponse:
        campaign = self._campaign(request)
        return self._message_page(request, {"campaign_id": int(campaign["campaign_id"])})

    async def newsletter_messages(self, request: Request) -> JSONResponse:
        item = self._newsletter(request)
        return self._message_page(request, {"newsletter_id": item["id"]})

    async def message(self, request: Request) -> JSONResponse:
        record = self.data.messages.by_id.get(request.path_params["message_id"])
        if record is None:
            raise AppError(404, "message not found")
        tracked = request.query_params.get("get_tracked_responses") == "true"
        return app_json({"message": self.data.messages.render(record, tracked)})

    def _message_page(self, request: Request, fixed: dict[str, int]) -> JSONResponse:
        q = request.query_params
        limit = _limit(request, MESSAGES_LIMIT)
        offset = _cursor(request)
        start_ts, end_ts = _window(q.get("start_ts"), q.get("end_ts"), int(time.time()))
        sample = self.data.messages
        # Newest first: created descends along `records`, so the window is one contiguous run.
        lo = int(np.searchsorted(-sample.created, -end_ts, side="left"))
        hi = int(np.searchsorted(-sample.created, -start_ts, side="right"))
        wanted = dict(fixed)
        for name in ("campaign_id", "action_id", "newsletter_id"):
            if q.get(name):
                wanted[name] = _int_query(q[name], name)
        kind, metric = q.get("type") or None, q.get("metric") or None
        drafts = q.get("drafts") == "true"
        picked = [] if drafts else [
            r for r in sample.records[lo:hi]
            if all(r[k] == v for k, v in wanted.items())
            and (kind is None or r["type"] == kind) and (metric is None or metric in r["metrics"])
        ]
        start, stop, next_token = page_bounds(offset, limit, len(picked))
        tracked = q.get("get_tracked_responses") == "true"
        return app_json({"messages": [sample.render(r, tracked) for r in picked[start:stop]],
                         "next": next_token})


def _window(start_raw: str | None, end_raw: str | None, now: int) -> tuple[int, int]:
    """Inclusive (start_ts, end_ts) after the documented 6-month defaults and clamp."""
    start = _int_query(start_raw, "start_ts") if start_raw else None
    end = _int_query(end_raw, "end_ts") if end_raw else None
    if end is None:
        end = now
    if start is None:
        start = end - MESSAGES_WINDOW_S
    if start > end:
        raise AppError(400, "start_ts must not be after end_ts")
    return max(start, end - MESSAGES_WINDOW_S), end


def _sum_series(parts: list[dict[str, np.ndarray]], first: dt.date, last: dt.date) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for part in parts:
        for name, values in part.items():
            out[name] = out.get(name, 0) + values
    return out


def _int_path(request: Request, name: str, what: str) -> int:
    raw = request.path_params[name]
    try:
        return int(raw)
    except ValueError as exc:
        raise AppError(400, f"invalid {what} ID {raw!r}") from exc


def _int_query(raw: str, name: str) -> int:
    try:
        return int(raw)
    except ValueError as exc:
        raise AppError(400, f"{name} must be an integer") from exc


def _cursor(request: Request, prefix: str = "") -> int:
    try:
        return decode_cursor(request.query_params.get("start"), prefix)
    except BadCursor as exc:
        raise AppError(400, str(exc)) from exc


def _limit(request: Request, bounds: tuple[int, int]) -> int:
    default, maximum = bounds
    raw = request.query_params.get("limit")
    if not raw:
        return default
    limit = _int_query(raw, "limit")
    if limit < 1:
        raise AppError(400, "limit must be at least 1")
    if limit > maximum:
        if CLAMP_OVER_MAX_LIMIT:
            return maximum
        raise AppError(400, f"limit must be at most {maximum}")
    return limit


def _id_type(request: Request) -> str:
    id_type = request.query_params.get("id_type") or "id"
    if id_type not in ID_TYPES:
        raise AppError(400, f"id_type must be one of {', '.join(ID_TYPES)}")
    return id_type


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError as exc:
        raise AppError(400, "request body is not valid JSON") from exc


def app_routes(state: SandboxState) -> list[Route]:
    """App API routes under both region prefixes."""
    app = App(state)
    table: list[tuple[str, Handler, list[str]]] = [
        ("/v1/campaigns", app.campaigns, ["GET"]),
        ("/v1/campaigns/{campaign_id}", app.campaign, ["GET"]),
        ("/v1/campaigns/{campaign_id}/actions", app.campaign_actions, ["GET"]),
        ("/v1/campaigns/{campaign_id}/actions/{action_id}", app.campaign_action, ["GET"]),
        ("/v1/campaigns/{campaign_id}/metrics", app.campaign_metrics, ["GET"]),
        ("/v1/campaigns/{campaign_id}/actions/{action_id}/metrics", app.action_metrics, ["GET"]),
        ("/v1/campaigns/{campaign_id}/messages", app.campaign_messages, ["GET"]),
        ("/v1/broadcasts", app.broadcasts, ["GET"]),
        ("/v1/broadcasts/{broadcast_id}", app.broadcast, ["GET"]),
        ("/v1/broadcasts/{broadcast_id}/actions", app.broadcast_actions, ["GET"]),
        ("/v1/broadcasts/{broadcast_id}/metrics", app.broadcast_metrics, ["GET"]),
        ("/v1/newsletters", app.newsletters, ["GET"]),
        ("/v1/newsletters/{newsletter_id}", app.newsletter, ["GET"]),
        ("/v1/newsletters/{newsletter_id}/contents", app.newsletter_contents, ["GET"]),
        ("/v1/newsletters/{newsletter_id}/metrics", app.newsletter_metrics, ["GET"]),
        ("/v1/newsletters/{newsletter_id}/messages", app.newsletter_messages, ["GET"]),
        ("/v1/segments", app.segments, ["GET"]),
        ("/v1/segments/{segment_id}", app.segment, ["GET"]),
        ("/v1/segments/{segment_id}/customer_count", app.segment_count, ["GET"]),
        ("/v1/segments/{segment_id}/membership", app.segment_membership, ["GET"]),
        ("/v1/customers", app.customers_by_email, ["GET"]),
        ("/v1/customers", app.search_customers, ["POST"]),
        ("/v1/customers/attributes", app.bulk_attributes, ["POST"]),
        ("/v1/customers/{customer_id}/attributes", app.customer_attributes, ["GET"]),
        ("/v1/messages", app.messages, ["GET"]),
        ("/v1/messages/{message_id}", app.message, ["GET"]),
    ]
    routes = []
    for prefix, region in ((CIO_APP_PREFIX, "us"), (CIO_APP_EU_PREFIX, "eu")):
        for path, handler, methods in table:
            routes.append(Route(prefix + path, app.guard(handler, region), methods=methods))
        # Anything else under the App host: 401/429 first, then a 404 in the errors envelope.
        routes.append(Route(prefix + "/{rest:path}", app.guard(_unknown_route, region),
                            methods=["GET", "POST", "PUT", "DELETE", "PATCH"]))
    return routes


async def _unknown_route(request: Request) -> JSONResponse:
    raise AppError(404, f"the sandbox does not implement {request.method} {request.url.path}")


def routes(state: SandboxState) -> list[Route]:
    """Every Customer.io route of the sandbox (App and Track); attaches `state.cio`."""
    from .customerio_track import track_routes

    if state.cio is None:
        state.cio = CioState(state.config.app_rps, state.config.seed)
    return [*app_routes(state), *track_routes(state)]
