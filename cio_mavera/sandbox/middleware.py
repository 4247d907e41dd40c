"""Middleware around the whole sandbox: marks, times, logs and (on request) breaks every API response."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import ADMIN_PREFIX, MAVERA_PREFIX, SANDBOX_HEADER
from .state import Fault, SandboxState, route_template

_MAX_LOGGED_BODY = 256 * 1024


class SandboxMiddleware:
    """Marks every response as sandbox output; counts, delays, logs and (on request) fails API requests."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        is_admin = path.startswith(ADMIN_PREFIX)
        chunks: list[bytes] = []

        async def recording_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and sum(map(len, chunks)) < _MAX_LOGGED_BODY:
                chunks.append(message.get("body", b""))
            return message

        async def marking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (SANDBOX_HEADER.lower().encode(), b"1")]
                if not is_admin:
                    # Logged before the answer leaves, so a client that has its answer can
                    # read the log entry of its request without waiting for it.
                    self.state.log_request(scope["method"], path, _decode(b"".join(chunks)))
            await send(message)

        if not is_admin:
            self.state.stats.count(f"{scope['method']} {route_template(path)}")
            if self.state.config.latency_ms:
                await asyncio.sleep(self.state.config.latency_ms / 1000)
            fault = self.state.take_fault(path, scope["method"])
            if fault is not None:
                await _fault_response(self.state, path, fault)(scope, receive, marking_send)
                return
        await self.app(scope, recording_receive if not is_admin else receive, marking_send)


def _fault_response(state: SandboxState, path: str, fault: Fault) -> Response:
    """A fault in the shape of the API that `path` belongs to."""
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    if path.startswith(MAVERA_PREFIX):
        headers.update(state.mavera.rate.peek(None))  # Mavera sends its rate headers on every response
        code = {429: "rate_limit_exceeded", 503: "service_unavailable"}.get(fault.status, "internal_error")
        body: dict[str, Any] = {"error": {"message": f"sandbox injected fault ({fault.status})",
                                          "type": "api_error", "code": code, "param": None}}
    else:
        body = {"errors": [{"detail": f"sandbox injected fault (reference sbx{fault.status})",
                            "status": str(fault.status)}]}
    return JSONResponse(body, status_code=fault.status, headers=headers)


def _decode(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body[:2000].decode("utf-8", "replace")
