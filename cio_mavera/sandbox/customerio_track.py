"""The Customer.io Track API half of the sandbox: region lookup, identify, events, v2 batch/entity.

Served under `/cio/track` and `/cio-eu/track` with Basic `site_id:api_key`. Writes return `{}` and
are recorded in `state.cio` (tests read `identified`, `events`, `v2_operations`); an identify of
an existing workspace customer also shows up in that person's App API attribute reads.
A US workspace is refused on the EU host; an EU workspace is accepted on the US host, standing in
for the real service's redirect to the EU host.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .state import CIO_TRACK_EU_PREFIX, CIO_TRACK_PREFIX, SandboxState

# Track payload limits (customerio-api.md §2.5). "KB" is read as 1024 bytes (UNVERIFIED).
BATCH_MAX_BYTES = 500 * 1024
ITEM_MAX_BYTES = 32 * 1024
IDENTIFIER_MAX_BYTES = 150
ATTRIBUTE_NAME_MAX_BYTES = 150
ATTRIBUTE_VALUE_MAX_BYTES = 1000
ATTRIBUTES_MAX_COUNT = 300
EVENT_NAME_MAX_BYTES = 100
EVENT_DATA_MAX_BYTES = 100_000
# Reserved identify keys that are instructions, not attributes of the person.
_RESERVED = {"_timestamp", "_update", "cio_relationships", "anonymous_id"}
_PERSON_ACTIONS = {"identify", "delete", "event", "screen", "page", "add_relationships",
                   "delete_relationships", "add_device", "delete_device", "merge", "suppress",
                   "unsuppress"}
_OBJECT_ACTIONS = {"identify", "identify_anonymous", "delete", "add_relationships", "delete_relationships"}
_PERSON_IDENTIFIERS = {"id", "email", "phone", "cio_id"}

HEADERS = {"cache-control": "no-cache"}


def _json(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=HEADERS,
                        media_type="application/json; charset=utf-8")


def _v1_error(status: int, message: str) -> JSONResponse:
    """Track v1's legacy envelope: 400s list messages in `meta.errors`."""
    if status == 400:
        return _json({"meta": {"errors": [message]}}, status)
    return _json({"meta": {"error": message}}, status)


def _v2_error(status: int, reason: str, field: str, message: str) -> JSONResponse:
    return _json({"errors": [{"reason": reason, "field": field, "message": message}]}, status)


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


class Track:
    """Track handlers bound to one sandbox state."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def authorized(self, request: Request, region: str) -> bool:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].encode(), validate=True)
        except (binascii.Error, ValueError):
            return False
        expected = f"{self.state.keys['CIO_SITE_ID']}:{self.state.keys['CIO_API_KEY']}".encode()
        if not secrets.compare_digest(decoded, expected):
            return False
        # A US account sending to the EU host fails; EU traffic to the US host is redirected.
        return not (region == "eu" and self.state.config.region == "us")

    def guard(self, handler, region: str, v2: bool = False, any_region: bool = False):
        async def endpoint(request: Request) -> JSONResponse:
            ok = self.authorized(request, "us" if any_region else region)
            if not ok:
                if v2:
                    return _v2_error(401, "unauthorized", "", "Unauthorized request")
                return _v1_error(401, "Unauthorized request")
            return await handler(request)

        return endpoint

    async def region(self, request: Request) -> JSONResponse:
        own = CIO_TRACK_EU_PREFIX if self.state.config.region == "eu" else CIO_TRACK_PREFIX
        base = str(request.base_url).rstrip("/")
        return _json({"url": f"{base}{own}", "region": self.state.config.region,
                      "environment_id": int(self.state.workspace.workspace_id)})

    # --- v1 -----------------------------------------------------------------------------------

    async def identify(self, request: Request) -> JSONResponse:
        identifier = request.path_params["identifier"]
        body = await _body(request)
        if not isinstance(body, dict):
            return _v1_error(400, "body must be a JSON object of attributes")
        problem = _identifier_problem(identifier) or _attributes_problem(body)
        if problem:
            return _v1_error(400, problem)
        self._identify(identifier, body)
        return _json({})

    async def track_event(self, request: Request) -> JSONResponse:
        identifier = request.path_params["identifier"]
        body = await _body(request)
        problem = _identifier_problem(identifier) or _event_problem(body)
        if problem:
            return _v1_error(400, problem)
        self.state.cio.record_event(identifier, {**body, "name": body["name"].strip()})
        return _json({})

    def _identify(self, identifier: str, attributes: dict[str, Any]) -> None:
        kind, value = _identifier_kind(identifier)
        row = self._row(kind, value)
        kept = {k: v for k, v in attributes.items() if k not in _RESERVED}
        self.state.cio.record_identify(identifier, kept, row)

    def _row(self, kind: str, value: str) -> int | None:
        from .customerio_api import cio_data

        found = int(cio_data(self.state).people.find(kind, [value])[0])
        return found if found >= 0 else None

    # --- v2 -----------------------------------------------------------------------------------

    async def batch(self, request: Request) -> JSONResponse:
        raw = await request.body()
        if len(raw) > BATCH_MAX_BYTES:
            return _v2_error(400, "too_large", "batch",
                             f"request is {len(raw)} bytes; a batch is limited to {BATCH_MAX_BYTES}")
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return _v2_error(400, "invalid_json", "", "request body is not valid JSON")
        if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
            return _v2_error(400, "required", "batch", "body must be {\"batch\": [operation, ...]}")
        errors = []
        for index, op in enumerate(body["batch"]):
            problem = _v2_problem(op)
            if problem:
                reason, field, message = problem
                errors.append({"batch_index": index, "reason": reason, "field": field, "message": message})
            else:
                self._apply_v2(op)
        if errors:
            return _json({"errors": errors}, 207)
        return _json({})

    async def entity(self, request: Request) -> JSONResponse:
        raw = await request.body()
        if len(raw) > ITEM_MAX_BYTES:
            return _v2_error(400, "too_large", "", f"request is {len(raw)} bytes; limit {ITEM_MAX_BYTES}")
        try:
            op = json.loads(raw or b"null")
        except ValueError:
            return _v2_error(400, "invalid_json", "", "request body is not valid JSON")
        problem = _v2_problem(op)
        if problem:
            return _v2_error(400, *problem)
        self._apply_v2(op)
        return _json({})

    def _apply_v2(self, op: dict[str, Any]) -> None:
        self.state.cio.record_v2(op)
        if op["type"] != "person":
            return
        (kind, value), = op["identifiers"].items()
        key = f"cio_{value}" if kind == "cio_id" else str(value)
        if op["action"] == "identify":
            attributes = op.get("attributes") or {}
            self.state.cio.record_identify(key, attributes, self._row(kind, str(value)))
        elif op["action"] in ("event", "screen", "page"):
            self.state.cio.record_event(key, {"name": op["name"], "type": op["action"],
                                              "data": op.get("attributes") or {},
                                              **{k: op[k] for k in ("id", "timestamp") if k in op}})


async def _body(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        return None


def _identifier_kind(identifier: str) -> tuple[str, str]:
    """Track infers the identifier type from its shape: `cio_<id>`, an email, or an id."""
    if identifier.startswith("cio_"):
        return "cio_id", identifier[4:]
    if "@" in identifier:
        return "email", identifier
    return "id", identifier


def _identifier_problem(identifier: str) -> str | None:
    if not identifier.strip():
        return "identifier must not be empty"
    if len(identifier.encode()) > IDENTIFIER_MAX_BYTES:
        return f"identifier is longer than {IDENTIFIER_MAX_BYTES} bytes"
    return None


def _attributes_problem(attributes: dict[str, Any]) -> str | None:
    if len(attributes) > ATTRIBUTES_MAX_COUNT:
        return f"more than {ATTRIBUTES_MAX_COUNT} attributes in one call"
    for name, value in attributes.items():
        if len(name.encode()) > ATTRIBUTE_NAME_MAX_BYTES:
            return f"attribute name {name[:40]!r}... is longer than {ATTRIBUTE_NAME_MAX_BYTES} bytes"
        if name not in _RESERVED and _size(value) > ATTRIBUTE_VALUE_MAX_BYTES + 2:
            return f"attribute {name!r} is longer than {ATTRIBUTE_VALUE_MAX_BYTES} bytes"
    return None


def _event_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "body must be a JSON object"
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        return "name is required"
    if len(name.strip().encode()) > EVENT_NAME_MAX_BYTES:
        return f"event name is longer than {EVENT_NAME_MAX_BYTES} bytes"
    if body.get("type", "event") not in ("event", "page", "screen"):
        return "type must be event, page or screen"
    if _size(body.get("data") or {}) > EVENT_DATA_MAX_BYTES:
        return f"event data is larger than {EVENT_DATA_MAX_BYTES} bytes"
    return None


def _v2_problem(op: Any) -> tuple[str, str, str] | None:
    """(reason, field, message) when a v2 operation is invalid, else None."""
    if not isinstance(op, dict):
        return ("invalid", "", "each operation must be a JSON object")
    if _size(op) > ITEM_MAX_BYTES:
        return ("too_large", "", f"operation is larger than {ITEM_MAX_BYTES} bytes")
    kind, action = op.get("type"), op.get("action")
    if kind not in ("person", "object", "delivery"):
        return ("invalid", "type", "type must be person, object or delivery")
    allowed = {"person": _PERSON_ACTIONS, "object": _OBJECT_ACTIONS, "delivery": {"event"}}[kind]
    if action not in allowed:
        return ("invalid", "action", f"action {action!r} is not valid for type {kind}")
    identifiers = op.get("identifiers")
    if not isinstance(identifiers, dict) or not identifiers:
        return ("required", "identifiers", "identifiers are required")
    if kind == "person":
        if len(identifiers) != 1 or not set(identifiers) <= _PERSON_IDENTIFIERS:
            return ("invalid", "identifiers", "a person needs exactly one of id, email, phone, cio_id")
        (value,) = identifiers.values()
        if not isinstance(value, (str, int)) or str(value) == "":
            return ("invalid", "identifiers", "identifier value must be a non-empty string")
        if len(str(value).encode()) > IDENTIFIER_MAX_BYTES:
            return ("too_large", "identifiers", f"identifier is longer than {IDENTIFIER_MAX_BYTES} bytes")
    if kind == "delivery" and not isinstance(identifiers.get("id"), str):
        return ("required", "identifiers.id", "a delivery is identified by its id")
    if "attributes" in op and not isinstance(op["attributes"], dict):
        return ("invalid", "attributes", "attributes must be an object")
    if action in ("event", "screen", "page") and not (isinstance(op.get("name"), str) and op["name"].strip()):
        return ("required", "name", f"a {action} needs a name")
    return None


def track_routes(state: SandboxState) -> list[Route]:
    """Track API routes under both region prefixes."""
    track = Track(state)
    routes = []
    for prefix, region in ((CIO_TRACK_PREFIX, "us"), (CIO_TRACK_EU_PREFIX, "eu")):
        routes += [
            Route(f"{prefix}/api/v1/accounts/region", track.guard(track.region, region, any_region=True)),
            Route(f"{prefix}/api/v1/customers/{{identifier}}", track.guard(track.identify, region),
                  methods=["PUT"]),
            Route(f"{prefix}/api/v1/customers/{{identifier}}/events",
                  track.guard(track.track_event, region), methods=["POST"]),
            Route(f"{prefix}/api/v2/batch", track.guard(track.batch, region, v2=True), methods=["POST"]),
            Route(f"{prefix}/api/v2/entity", track.guard(track.entity, region, v2=True), methods=["POST"]),
        ]
    return routes
