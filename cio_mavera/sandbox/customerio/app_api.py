"""The Customer.io App API of the sandbox as a Starlette app: its routes, its guard and its errors.

Mounted at `/cio/app` (US) and `/cio-eu/app` (EU). The workspace lives in `config.region`, so its
key is refused with 401 on the other region's host, as the real App API does (no cross-region
redirect). Every App route shares one sliding-window limit of `config.app_rps` requests per
second, answered with the documented 429 body and `Retry-After: 1`.
"""

from __future__ import annotations

import secrets

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..state import SandboxState
from . import broadcasts, campaigns, customers, exports, messages, newsletters, segments, workspaces
from .responses import AppError, app_error_response, handle_app_error


class AppGuard:
    """Before any App route answers: the key and region (401), then the shared rate window (429)."""

    def __init__(self, app: ASGIApp, state: SandboxState, region: str) -> None:
        self.app = app
        self.state = state
        self.region = region

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(Headers(scope=scope)) if scope["type"] == "http" else None
        app = self.app if refusal is None else app_error_response(refusal)
        await app(scope, receive, send)

    def _refusal(self, headers: Headers) -> AppError | None:
        state, config = self.state, self.state.config
        expected = f"Bearer {state.keys['CIO_APP_KEY']}"
        given = headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), expected.encode()) or self.region != config.region:
            # Quotes the header it got, as real error pages sometimes do: clients must redact it.
            return AppError(401, f"unauthorized (Authorization: {given or 'none'})")
        if state.cio.roll_forced_429(config.force_429_rate) or not state.cio.rate.admit():
            state.stats.count_429("app")
            detail = f"rate limited to {config.app_rps} requests per 1s (reference {secrets.token_hex(3)})"
            return AppError(429, detail, {"Retry-After": "1"})
        return None


async def not_implemented(request: Request) -> Response:
    raise AppError(404, f"the sandbox does not implement {request.method} {request.url.path}")


ROUTES: list[BaseRoute] = [
    *campaigns.routes, *broadcasts.routes, *newsletters.routes, *segments.routes,
    *customers.routes, *messages.routes, *exports.routes, *workspaces.routes,
    # Anything else under the App host: 401/429 first (the guard), then a 404 in the errors envelope.
    Route("/{rest:path}", not_implemented, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
]


def app_api(state: SandboxState, region: str) -> Starlette:
    """The App API app for `state`, to mount at the prefix of `region`."""
    app = Starlette(routes=ROUTES,
                    middleware=[Middleware(AppGuard, state=state, region=region)],
                    exception_handlers={AppError: handle_app_error})
    app.state.sandbox = state
    return app
