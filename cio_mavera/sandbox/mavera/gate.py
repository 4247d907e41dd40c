"""Middleware in front of every Mavera route: auth, the rate window's headers and 429s, usage counts."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..state import SandboxState
from .errors import MaveraHTTPError, error_response


def authenticate(header: str | None, expected: str) -> str:
    """The API key in an `Authorization: Bearer` header, or a 401 in the envelope."""
    if not header or not header.strip():
        raise MaveraHTTPError(401, "missing_api_key",
                              "Missing API key. Send 'Authorization: Bearer <MAVERA_API_KEY>'.")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        # Quotes what it got, as real error pages sometimes do: clients must redact it.
        raise MaveraHTTPError(401, "invalid_api_key",
                              f"Invalid API key '{token.strip() or header.strip()}'. Ensure your "
                              "key starts with 'mvra_live_' (or is this sandbox's MAVERA_API_KEY) "
                              "and has not been revoked.")
    return token.strip()


class MaveraGate:
    """Refuses unknown keys (401) and requests over the window (429); every answer carries the
    X-RateLimit-* headers and is counted, under its route's name, for GET /usage."""

    def __init__(self, app: ASGIApp, state: SandboxState, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.state = state
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        account = self.state.mavera
        endpoint = self._endpoint(scope)
        refusal, rate_headers = self._admit(scope)

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in rate_headers.items():
                    headers.setdefault(name, value)
                account.count_request(endpoint, message["status"])
            await send(message)

        app = self.app if refusal is None else error_response(refusal)
        await app(scope, receive, send_counted)

    def _admit(self, scope: Scope) -> tuple[MaveraHTTPError | None, dict[str, str]]:
        """(the refusal or None, the rate-limit headers the answer carries)."""
        rate = self.state.mavera.rate
        try:
            key = authenticate(Headers(scope=scope).get("authorization"),
                               self.state.keys["MAVERA_API_KEY"])
        except MaveraHTTPError as refusal:
            return refusal, rate.peek(None)
        decision = rate.hit(key)
        if decision.allowed:
            return None, decision.headers
        self.state.stats.count_429("mavera")
        refusal = MaveraHTTPError(429, "rate_limit_exceeded",
                                  f"Rate limit exceeded. Please retry after {decision.retry_after} seconds.")
        return refusal, decision.headers

    def _endpoint(self, scope: Scope) -> str:
        """The name of the route that will answer (the catch-all is named "unknown")."""
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return route.name
        return "unknown"
