"""The Customer.io Track API of the sandbox as a Starlette app: its routes, Basic auth and errors.

Mounted at `/cio/track` and `/cio-eu/track`, with Basic `site_id:api_key`. A US workspace is
refused on the EU host (401); an EU workspace's requests on the US host are redirected to the EU
host, as the Track spec says the real service does (after the credentials are checked, with an
empty body and nothing applied). Which 3xx status it uses is UNVERIFIED: 307, the one that keeps
method and body, is the sandbox's choice (`EU_REDIRECT_STATUS`). The region lookup answers on
either host.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import CIO_TRACK_EU_PREFIX
from ..state import SandboxState
from . import track_v1, track_v2
from .responses import (
    TrackV1Error,
    TrackV2Error,
    handle_track_v1_error,
    handle_track_v2_error,
    track_v1_error_response,
    track_v2_error_response,
)

# Which 3xx the real service sends is UNVERIFIED; 307 keeps the method and body.
EU_REDIRECT_STATUS = 307


class TrackGuard:
    """Before any Track route answers: Basic auth and the host's region, or a 401 in the
    envelope of the API version the path belongs to."""

    def __init__(self, app: ASGIApp, state: SandboxState, region: str) -> None:
        self.app = app
        self.state = state
        self.region = region

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        host_region = "us" if path == track_v1.REGION_PATH else self.region
        headers = Headers(scope=scope)
        if self._authorized(headers, host_region):
            if (self.region == "us" and self.state.config.region == "eu"
                    and path != track_v1.REGION_PATH):
                await _eu_redirect(scope, headers, path)(scope, receive, send)
                return
            await self.app(scope, receive, send)
        elif path.startswith("/api/v2/"):
            await track_v2_error_response(TrackV2Error(
                401, "unauthorized", "", _refusal(headers)))(scope, receive, send)
        else:
            await track_v1_error_response(TrackV1Error(401, _refusal(headers)))(scope, receive, send)

    def _authorized(self, headers: Headers, host_region: str) -> bool:
        header = headers.get("authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].encode(), validate=True)
        except (binascii.Error, ValueError):
            return False
        keys = self.state.keys
        if not secrets.compare_digest(decoded, f"{keys['CIO_SITE_ID']}:{keys['CIO_API_KEY']}".encode()):
            return False
        # A US account sending to the EU host fails (EU traffic to the US host is redirected).
        return not (host_region == "eu" and self.state.config.region == "us")


def _refusal(headers: Headers) -> str:
    """The 401 message: it quotes the credentials it got, decoded, as real error pages sometimes
    do (clients must redact them)."""
    header = headers.get("authorization", "")
    try:
        given = base64.b64decode(header.removeprefix("Basic ").encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        given = header
    return f"Unauthorized request (credentials given: {given or 'none'})"


def _eu_redirect(scope: Scope, headers: Headers, path: str) -> Response:
    """The redirect of a request on the US host to the same path on the EU host."""
    query = scope.get("query_string", b"").decode()
    location = (f"{scope.get('scheme', 'http')}://{headers.get('host', '')}{CIO_TRACK_EU_PREFIX}"
                f"{path}{'?' + query if query else ''}")
    return Response(status_code=EU_REDIRECT_STATUS, headers={"location": location})


ROUTES: list[BaseRoute] = [*track_v1.routes, *track_v2.routes]


def track_api(state: SandboxState, region: str) -> Starlette:
    """The Track API app for `state`, to mount at the prefix of `region`."""
    app = Starlette(routes=ROUTES,
                    middleware=[Middleware(TrackGuard, state=state, region=region)],
                    exception_handlers={TrackV1Error: handle_track_v1_error,
                                        TrackV2Error: handle_track_v2_error})
    app.state.sandbox = state
    return app
