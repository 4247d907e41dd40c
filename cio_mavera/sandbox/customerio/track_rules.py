"""What Track accepts: payload limits (customerio-api.md §2.5) and the checks of v1 and v2 bodies.

Each check returns the problem to report, or None when the payload is acceptable.
"""

from __future__ import annotations

import json
from typing import Any

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
RESERVED = {"_timestamp", "_update", "cio_relationships", "anonymous_id"}
_PERSON_ACTIONS = {"identify", "delete", "event", "screen", "page", "add_relationships",
                   "delete_relationships", "add_device", "delete_device", "merge", "suppress",
                   "unsuppress"}
_OBJECT_ACTIONS = {"identify", "identify_anonymous", "delete", "add_relationships", "delete_relationships"}
_PERSON_IDENTIFIERS = {"id", "email", "phone", "cio_id"}


def json_size(value: Any) -> int:
    """Bytes of `value` as compact JSON (how the limits are measured)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def identifier_kind(identifier: str) -> tuple[str, str]:
    """Track infers the identifier type from its shape: `cio_<id>`, an email, or an id."""
    if identifier.startswith("cio_"):
        return "cio_id", identifier[4:]
    if "@" in identifier:
        return "email", identifier
    return "id", identifier


def identifier_problem(identifier: str) -> str | None:
    if not identifier.strip():
        return "identifier must not be empty"
    if len(identifier.encode()) > IDENTIFIER_MAX_BYTES:
        return f"identifier is longer than {IDENTIFIER_MAX_BYTES} bytes"
    return None


def attributes_problem(attributes: dict[str, Any]) -> str | None:
    if len(attributes) > ATTRIBUTES_MAX_COUNT:
        return f"more than {ATTRIBUTES_MAX_COUNT} attributes in one call"
    for name, value in attributes.items():
        if len(name.encode()) > ATTRIBUTE_NAME_MAX_BYTES:
            return f"attribute name {name[:40]!r}... is longer than {ATTRIBUTE_NAME_MAX_BYTES} bytes"
        if name not in RESERVED and json_size(value) > ATTRIBUTE_VALUE_MAX_BYTES + 2:
            return f"attribute {name!r} is longer than {ATTRIBUTE_VALUE_MAX_BYTES} bytes"
    return None


def event_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "body must be a JSON object"
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        return "name is required"
    if len(name.strip().encode()) > EVENT_NAME_MAX_BYTES:
        return f"event name is longer than {EVENT_NAME_MAX_BYTES} bytes"
    if body.get("type", "event") not in ("event", "page", "screen"):
        return "type must be event, page or screen"
    if json_size(body.get("data") or {}) > EVENT_DATA_MAX_BYTES:
        return f"event data is larger than {EVENT_DATA_MAX_BYTES} bytes"
    return None


def v2_problem(op: Any) -> tuple[str, str, str] | None:
    """(reason, field, message) when a v2 operation is invalid, else None."""
    if not isinstance(op, dict):
        return ("invalid", "", "each operation must be a JSON object")
    if json_size(op) > ITEM_MAX_BYTES:
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
