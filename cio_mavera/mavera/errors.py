"""Mavera's error envelope mapped to specific exceptions, with messages that say what to do.

Clients branch on HTTP status and the envelope's `code`, never on `type` (the reference could not
see the `type` of 402/403/404/5xx errors, so it is not relied on).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from ..errors import (
    ApiError,
    AuthError,
    CioMaveraError,
    CreditsExhausted,
    InvalidParameter,
    NotFound,
    RateLimited,
    ServerError,
)

SERVICE = "mavera"

KEYS_PAGE = "app.mavera.io/settings/developer"
USAGE_PAGE = "app.mavera.io/settings/usage"


class InvalidRequest(ApiError, InvalidParameter):
    """400 from Mavera: an unknown persona or model, or a missing/invalid field."""


class Forbidden(AuthError):
    """403 from Mavera (e.g. updating a base persona, which is read-only)."""


class DuplicateName(ApiError):
    """422 from Mavera: a custom persona with this name already exists."""


class PiiBlocked(CioMaveraError):
    """A request to Mavera held personal data (a pattern, or one of the workspace's people) and was
    refused before sending; `findings` are "path: kind" strings, never the values."""

    def __init__(self, message: str, *, findings: list[str]) -> None:
        super().__init__(message)
        self.findings = findings


class StructuredOutputError(CioMaveraError):
    """A structured (JSON-schema) response was not JSON or lacked a required key."""


class FocusGroupTimeout(CioMaveraError):
    """A focus group did not complete in time; `focus_group_id` can be fetched later."""

    def __init__(self, message: str, *, focus_group_id: str, status: str | None) -> None:
        super().__init__(message)
        self.focus_group_id = focus_group_id
        self.status = status


def _envelope(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _request_body(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of the request that produced `response` (to name the persona or model)."""
    try:
        body = json.loads(response.request.content or b"{}")
    except (ValueError, RuntimeError):
        return {}
    return body if isinstance(body, dict) else {}


_AUTH_HINTS = {
    "missing_api_key": "no API key was sent; set MAVERA_API_KEY in .env or the environment",
    "invalid_api_key": (f"MAVERA_API_KEY was not accepted; check it was copied whole (live keys start "
                        f"with mvra_live_) or create a new one at {KEYS_PAGE}"),
    "revoked_api_key": f"MAVERA_API_KEY has been revoked; create a new key at {KEYS_PAGE}",
    "expired_api_key": f"MAVERA_API_KEY has expired; create a new key at {KEYS_PAGE}",
}


def mavera_error(response: httpx.Response, route: str) -> ApiError:
    """An `ApiError` subclass for a Mavera error response, chosen by status and `code`."""
    status = response.status_code
    error = _envelope(response)
    code = error.get("code")
    param = error.get("param")
    server = str(error.get("message") or response.text[:300].strip() or response.reason_phrase)
    where = f"Mavera {route} failed ({status}{' ' + code if code else ''})"
    kwargs: dict[str, Any] = {"service": SERVICE, "status": status, "code": code, "body": error or None}

    if status == 401:
        hint = _AUTH_HINTS.get(code or "", f"check MAVERA_API_KEY ({KEYS_PAGE})")
        return AuthError(f"{where}: {hint}", **kwargs)
    if status == 402:
        if code == "budget_exceeded":
            hint = ("the workspace or project usage limit is reached; raise its usage_limit in the "
                    "Mavera workspace/project settings, or wait for the next billing period")
        else:
            hint = (f"no Mavera credits left; top up or enable auto-recharge at {USAGE_PAGE} "
                    "(an expired subscription also answers 402), then re-run: results so far are "
                    "kept in the response cache and credits ledger")
        return CreditsExhausted(f"{where}: {hint}. Server said: {server}", **kwargs)
    if status == 400:
        sent = _request_body(response)
        if code == "invalid_persona":
            hint = (f"persona {sent.get('persona_id')!r} is not known to this key; list valid ids "
                    "with client.personas.list()")
        elif code == "invalid_model":
            hint = f"model {sent.get('model')!r} is not accepted; use 'mavera-1'"
        elif param:
            hint = f"field {param!r}: {server}"
        else:
            hint = server
        return InvalidRequest(f"{where}: {hint}", **kwargs)
    if status == 403:
        return Forbidden(f"{where}: {server} (base personas are read-only; only custom ones can be "
                         "updated)", **kwargs)
    if status == 404:
        return NotFound(f"{where}: {server}", **kwargs)
    if status == 422:
        name = _request_body(response).get("name")
        return DuplicateName(f"{where}: a persona named {name!r} already exists; use "
                             "client.personas.ensure() to reuse or update it. Server said: "
                             f"{server}", **kwargs)
    if status == 429:
        return RateLimited(f"{where}: rate limit still exceeded after retries; lower the request "
                           "rate or set MAVERA_RPM to your tier. Server said: " + server, **kwargs)
    if status >= 500:
        return ServerError(f"{where}: {server}", **kwargs)
    return ApiError(f"{where}: {server}", **kwargs)
