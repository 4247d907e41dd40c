"""Error factories for the Customer.io APIs: statuses become exceptions a user can act on.

`HttpClient` calls a factory with the final response and the route (`"GET /v1/campaigns/7"`);
the message names the variable to check on a 401 and the missing object on a 404. `HttpClient`
redacts secrets from the message afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote

import httpx

from ..errors import ApiError, AuthError, NotFound, RateLimited, ServerError

APP_SERVICE = "customerio-app"
TRACK_SERVICE = "customerio-track"

# Most specific first: the first pattern that matches a 404's path names what was missing.
_RESOURCES: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(pattern), name, hint)
    for pattern, name, hint in (
        (r"^/v1/campaigns/([^/]+)/actions/([^/]+)", "action {1} of campaign {0}",
         "datasets.actions(conn) lists the actions of every campaign"),
        (r"^/v1/campaigns/([^/]+)", "campaign {0}",
         "datasets.campaigns(conn) or `cio-mavera pull campaigns` lists the campaigns"),
        (r"^/v1/broadcasts/([^/]+)/actions/([^/]+)", "action {1} of broadcast {0}",
         "AppClient.broadcast_actions() lists them"),
        (r"^/v1/broadcasts/([^/]+)", "broadcast {0}", "AppClient.broadcasts() lists them"),
        (r"^/v1/newsletters/([^/]+)", "newsletter {0}", "AppClient.newsletters() lists them"),
        (r"^/v1/segments/([^/]+)", "segment {0}",
         "datasets.segments(conn) or `cio-mavera pull segments` lists the segments"),
        (r"^/v1/customers/([^/]+)", "customer {0}",
         "check the identifier and its id_type (id, email or cio_id)"),
        (r"^/v1/messages/([^/]+)", "message {0}", "AppClient.messages() lists deliveries"),
        (r"^/v1/exports/([^/]+)", "export {0}", "exports are listed by GET /v1/exports"),
    )
)


def error_detail(response: httpx.Response) -> str:
    """The API's own error text from any of Customer.io's three error envelopes."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip() or response.reason_phrase
    texts: list[str] = []
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list):
            for error in errors:
                if isinstance(error, dict):
                    texts.append(str(error.get("detail") or error.get("message")
                                     or error.get("reason") or error))
                else:
                    texts.append(str(error))
        meta = body.get("meta")
        if isinstance(meta, dict):
            if meta.get("error"):
                texts.append(str(meta["error"]))
            if isinstance(meta.get("errors"), list):
                texts.extend(str(e) for e in meta["errors"])
    return "; ".join(texts)[:300] or response.reason_phrase


def _missing_resource(path: str, response: httpx.Response) -> tuple[str, str]:
    for pattern, name, hint in _RESOURCES:
        match = pattern.match(path)
        if match:
            what = name.format(*(unquote(g) for g in match.groups()))
            id_type = response.request.url.params.get("id_type") if response.request else None
            if id_type and what.startswith("customer"):
                what += f" (id_type={id_type})"
            return what, hint
    return path, "check the ids in the request"


def _factory(service: str, auth_message: Callable[[str], str]) -> Callable[[httpx.Response, str], ApiError]:
    api = "App API" if service == APP_SERVICE else "Track API"

    def make(response: httpx.Response, route: str) -> ApiError:
        status = response.status_code
        detail = error_detail(response)
        _, _, path = route.partition(" ")
        body = response.text[:2000]
        if status == 401:
            return AuthError(auth_message(route), service=service, status=status,
                             code="unauthorized", body=body)
        if status == 403:
            return AuthError(
                f"Customer.io {api} refused {route} (403: {detail}) — the key lacks the scope or "
                "the plan lacks the feature; create a key with read access in Customer.io "
                "(Settings > API credentials)", service=service, status=status, body=body)
        if status == 404:
            what, hint = _missing_resource(path, response)
            return NotFound(f"Customer.io {api}: {what} not found (404 on {route}) — {hint}",
                            service=service, status=status, body=body)
        if status == 429:
            return RateLimited(
                f"Customer.io {api} kept answering 429 to {route} ({detail}); the workspace's "
                "limit is shared with every other App API client — retry later or lower "
                "CIO_MAVERA_APP_RPS", service=service, status=status, body=body)
        cls = ServerError if status >= 500 else ApiError
        return cls(f"Customer.io {api} {route} failed ({status}): {detail}", service=service,
                   status=status, body=body)

    return make


def _app_auth(route: str) -> str:
    return (f"Customer.io App API key rejected (401 on {route}) — check CIO_APP_KEY (an App API "
            "key, not the Track API key) and, for an EU workspace, set CIO_REGION=eu: the App "
            "API answers 401 to a key from the other region")


def _track_auth(route: str) -> str:
    return (f"Customer.io Track API credentials rejected (401 on {route}) — check CIO_SITE_ID "
            "and CIO_API_KEY (the Track API key, not the App key) and, for an EU workspace, "
            "set CIO_REGION=eu")


app_error = _factory(APP_SERVICE, _app_auth)
track_error = _factory(TRACK_SERVICE, _track_auth)
