"""The sandbox HTTP server: both APIs' routes, admin routes, latency and fault injection.

`start_sandbox()` runs it on loopback in a background thread (what notebooks and tests use);
`cio-mavera sandbox serve` runs the same app in the foreground.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .state import (
    ADMIN_PREFIX,
    MAVERA_PREFIX,
    SANDBOX_HEADER,
    Fault,
    SandboxConfig,
    SandboxState,
    route_template,
)

log = logging.getLogger("cio_mavera.sandbox")

_MAX_LOGGED_BODY = 256 * 1024


def _fault_response(state: SandboxState, path: str, fault: Fault) -> Response:
    """A fault in the shape of the API that `path` belongs to."""
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    if path.startswith(MAVERA_PREFIX):
        if state.mavera is not None:  # Mavera sends its rate-limit headers on every response
            headers.update(state.mavera.rate.peek(None))
        code = {429: "rate_limit_exceeded", 503: "service_unavailable"}.get(fault.status, "internal_error")
        body: dict[str, Any] = {"error": {"message": f"sandbox injected fault ({fault.status})",
                                          "type": "api_error", "code": code, "param": None}}
    else:
        body = {"errors": [{"detail": f"sandbox injected fault (reference sbx{fault.status})",
                            "status": str(fault.status)}]}
    return JSONResponse(body, status_code=fault.status, headers=headers)


class SandboxMiddleware:
    """Marks, times, logs and (on request) breaks every API response."""

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
        if not is_admin:
            self.state.log_request(scope["method"], path, _decode(b"".join(chunks)))


def _decode(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body[:2000].decode("utf-8", "replace")


def _admin_routes(state: SandboxState) -> list[Route]:
    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    async def env(request: Request) -> JSONResponse:
        return JSONResponse(state.env(base_url(request)))

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(state.stats.as_json())

    async def requests(request: Request) -> JSONResponse:
        return JSONResponse({"requests": list(state.request_log)})

    async def truth(request: Request) -> JSONResponse:
        return JSONResponse(state.truth())

    async def reset(request: Request) -> JSONResponse:
        state.reset()
        return JSONResponse({"reset": True})

    async def faults(request: Request) -> JSONResponse:
        """Script faults: {"prefix": "/cio/app", "status": 503, "count": 5, "retry_after": 1,
        "method": "POST"} (method optional)."""
        spec = await request.json()
        fault = Fault(prefix=spec.get("prefix", "/"), status=int(spec["status"]),
                      count=int(spec.get("count", 1)), retry_after=spec.get("retry_after"),
                      method=spec.get("method"))
        with state.lock:
            state.faults.append(fault)
        return JSONResponse({"scheduled": fault.__dict__})

    return [
        Route(f"{ADMIN_PREFIX}/env", env),
        Route(f"{ADMIN_PREFIX}/stats", stats),
        Route(f"{ADMIN_PREFIX}/requests", requests),
        Route(f"{ADMIN_PREFIX}/truth", truth),
        Route(f"{ADMIN_PREFIX}/reset", reset, methods=["POST"]),
        Route(f"{ADMIN_PREFIX}/faults", faults, methods=["POST"]),
    ]


def _api_routes(state: SandboxState) -> list[Route | Mount]:
    """Routes of both APIs; a half whose module is missing is simply absent."""
    found: list[Route | Mount] = []
    for module_name in ("customerio_api", "mavera_api"):
        try:
            module = __import__(f"cio_mavera.sandbox.{module_name}", fromlist=["routes"])
        except ModuleNotFoundError as exc:
            if exc.name != f"cio_mavera.sandbox.{module_name}":
                raise
            log.warning("sandbox half %s is not available", module_name)
            continue
        found.extend(module.routes(state))
    return found


def create_app(state: SandboxState) -> Starlette:
    """The sandbox ASGI app for `state`."""
    app = Starlette(routes=[*_admin_routes(state), *_api_routes(state)])
    app.add_middleware(SandboxMiddleware, state=state)
    return app


def _warm_up(state: SandboxState) -> None:
    """Build the workspace and the lookups a pull's first requests need before serving.

    Built lazily, they stall the first requests for seconds (1M customers), and the requests queued
    behind the stall then reach the rate limiter in a clump and get 429s no client could avoid.
    """
    state.workspace  # noqa: B018 (generates on first access)
    if state.cio is not None:
        from .customerio_api import cio_data

        people = cio_data(state).people
        people.search({"and": [{"attribute": {"field": "cio_id", "operator": "exists"}}]})
        people.find("cio_id", [])


class SandboxServer:
    """A sandbox running on loopback in a daemon thread."""

    def __init__(self, state: SandboxState, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this; without it Nagle + delayed ACK add ~40 ms a request.
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(create_app(state), log_level="warning", access_log=False,
                                lifespan="off", timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._socket]},
                                        name=f"sandbox:{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment variables pointing a client at this server with its keys."""
        return self.state.env(self.url)

    def start(self) -> SandboxServer:
        _warm_up(self.state)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("sandbox server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> SandboxServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sandbox(config: SandboxConfig | None = None, *, host: str = "127.0.0.1",
                  port: int = 0, **knobs: Any) -> SandboxServer:
    """Start a sandbox server in the background; `knobs` are SandboxConfig fields."""
    config = config or SandboxConfig(**knobs)
    return SandboxServer(SandboxState(config), host=host, port=port).start()


_shared: dict[tuple, SandboxServer] = {}
_shared_lock = threading.Lock()


def shared_sandbox(seed: int, customers: int) -> SandboxServer:
    """One in-process sandbox per (seed, size), started on first use and reused afterwards."""
    with _shared_lock:
        key = (seed, customers)
        if key not in _shared:
            _shared[key] = start_sandbox(seed=seed, customers=customers)
        return _shared[key]
