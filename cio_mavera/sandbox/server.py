"""The sandbox server: one app mounting each API per region, run on loopback in a thread or in the foreground.

`start_sandbox()` runs it on loopback in a background thread (what notebooks and tests use);
`cio-mavera sandbox serve` runs the same app in the foreground.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount

from . import admin
from .config import (
    ADMIN_PREFIX,
    CIO_APP_EU_PREFIX,
    CIO_APP_PREFIX,
    CIO_TRACK_EU_PREFIX,
    CIO_TRACK_PREFIX,
    MAVERA_PREFIX,
    SandboxConfig,
)
from .customerio.app_api import app_api
from .customerio.data import warm_up
from .customerio.export_files import FILES_PREFIX, export_files_app
from .customerio.track_api import track_api
from .mavera.api import mavera_api
from .middleware import SandboxMiddleware
from .state import SandboxState
from .workspace import World


def create_app(state: SandboxState) -> Starlette:
    """The sandbox ASGI app for `state`: admin routes and one mount per API and region."""
    app = Starlette(
        routes=[
            Mount(ADMIN_PREFIX, routes=admin.routes),
            Mount(CIO_APP_PREFIX, app=app_api(state, "us")),
            Mount(CIO_APP_EU_PREFIX, app=app_api(state, "eu")),
            Mount(CIO_TRACK_PREFIX, app=track_api(state, "us")),
            Mount(CIO_TRACK_EU_PREFIX, app=track_api(state, "eu")),
            Mount(FILES_PREFIX, app=export_files_app(state)),  # signed export downloads
            Mount(MAVERA_PREFIX, app=mavera_api(state)),
        ],
        middleware=[Middleware(SandboxMiddleware, state=state)],
    )
    app.state.sandbox = state
    return app


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
        warm_up(self.state)
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


def shared_sandbox(seed: int, customers: int, *, end: dt.datetime | None = None,
                   world: str = "realistic") -> SandboxServer:
    """One in-process sandbox per (seed, size, end, world), started on first use and reused."""
    with _shared_lock:
        key = (seed, customers, end, world)
        if key not in _shared:
            _shared[key] = start_sandbox(seed=seed, customers=customers, end=end,
                                         world=World.named(world))
        return _shared[key]
