"""Which Customer.io region a workspace lives in, asked of Track before anything else is sent.

An EU workspace on US hosts answers 401 like a wrong key, so `connect()` asks once
(`GET /api/v1/accounts/region`, which needs Track keys) and saves a confusing failure. This module
also builds the Track API's `HttpClient`, which `TrackClient` uses too; it imports no client, so
`connect` can use it without an import cycle.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import httpx

from ..errors import ApiError, CioMaveraError, ConfigError
from ..http import HttpClient, RetryPolicy
from ..ratelimit import RateLimiter
from ..settings import Settings
from .errors import TRACK_SERVICE, track_error

log = logging.getLogger("cio_mavera.connect")


def track_http(settings: Settings, *, limiter: RateLimiter | None = None,
               retry: RetryPolicy | None = None, transport: httpx.BaseTransport | None = None,
               timeout_s: float = 30.0) -> HttpClient:
    """An `HttpClient` for the Track API (Basic auth with the site id and Track API key)."""
    if not (settings.site_id and settings.api_key):
        raise ConfigError("CIO_SITE_ID and CIO_API_KEY (Track API credentials) are not set; "
                          "put them in .env (see .env.example) or use CIO_MAVERA_MODE=sandbox")
    return HttpClient(service=TRACK_SERVICE, base_url=settings.track_url,
                      auth=(settings.site_id, settings.api_key.reveal()),
                      headers={"Accept": "application/json"}, secrets=settings.secrets(),
                      limiter=limiter, retry=retry, timeout_s=timeout_s,
                      error_factory=track_error, transport=transport)


def track_send(http: HttpClient, method: str, path: str, **kw: Any) -> httpx.Response:
    """`http.request(...)` for Track, where a redirect is an error, never a success.

    Track redirects EU workspaces' traffic sent to the US host (reference §1). The redirect is
    not followed: it would send the Track key to whatever host the `Location` names, and the
    region is a setting to fix, not something to work around on every call.
    """
    expect = {*kw.pop("expect", ()), *range(300, 400)}  # this function explains redirects itself
    response = http.request(method, path, expect=expect, **kw)
    if 300 <= response.status_code < 400:
        raise redirect_error(response, f"{method.upper()} {path}")
    return response


def redirect_error(response: httpx.Response, route: str) -> ApiError:
    """The error for a Track answer that redirects: it names CIO_REGION and where it pointed."""
    location = response.headers.get("location", "")
    region = "eu" if "-eu" in location else "us"
    where = f" to {location.split('?')[0]}" if location else ""
    return ApiError(f"Customer.io Track answered {route} with a {response.status_code} "
                    f"redirect{where}: this workspace lives in another region — set "
                    f"CIO_REGION={region} (the redirect is not followed, so the Track key went "
                    "nowhere else and the request was not applied)",
                    service=TRACK_SERVICE, status=response.status_code, code="redirect")


def detect_region(settings: Settings, *, transport: httpx.BaseTransport | None = None
                  ) -> Literal["us", "eu"]:
    """The workspace's region, asked of Track's `GET /api/v1/accounts/region` (needs Track keys)."""
    with track_http(settings, transport=transport) as http:
        body = track_send(http, "GET", "/api/v1/accounts/region").json()
    region = str(body.get("region", "")).lower()
    if region not in ("us", "eu"):
        raise ApiError(f"Customer.io region lookup returned no usable region: {str(body)[:120]}",
                       service=TRACK_SERVICE)
    return region  # type: ignore[return-value]


def in_detected_region(settings: Settings) -> Settings:
    """`settings` with the region Track reports for this workspace, when Track keys allow asking.

    Skipped when the hosts are overridden; a failed lookup keeps CIO_REGION as set.
    """
    if not settings.has("track") or settings.app_url_override or settings.track_url_override:
        return settings
    try:
        region = detect_region(settings)
    except CioMaveraError as exc:
        log.warning("could not detect the Customer.io region (%s); using CIO_REGION=%s",
                    exc, settings.region)
        return settings
    if region != settings.region:
        log.warning("CIO_REGION=%s but Customer.io says this workspace is in %s; using %s",
                    settings.region, region, region)
        return settings.with_overrides(region=region)
    return settings
