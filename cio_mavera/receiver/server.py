"""The receiver under uvicorn with connection limits: header size, read deadlines, a connection cap.

uvicorn's httptools protocol buffers request headers without a size limit and waits for headers and
bodies forever, so a 10 MB header was answered 200 and a few hundred half-open connections used up
the process's file descriptors. `LimitedHttpToolsProtocol` adds, per connection:

- a header limit: more than `max_header_bytes` before the headers end gets 431 and is closed;
- a header deadline: the request line and headers must arrive within `header_timeout_s` of the
  connection opening (or of the first byte of a keep-alive request), else 408 and closed;
- a body deadline: the body must arrive within `body_timeout_s` of the headers, else closed (the app
  sees a disconnect and stores nothing);
- a connection cap: past `max_connections`, the oldest connection still waiting for its headers is
  closed to make room (slow clients lose their place, requests in progress keep theirs); when every
  connection is busy the new one is closed at once.

These bound what one process holds; in production run it behind a load balancer or reverse proxy
that terminates TLS and buffers slow clients too (README, job 3).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..errors import CioMaveraError
from .metrics import ReceiverMetrics

try:
    import resource
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]

log = logging.getLogger("cio_mavera.receiver")

DEFAULT_MAX_HEADER_BYTES = 32 * 1024
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 10.0
DEFAULT_KEEP_ALIVE_S = 5.0
_MAX_CONNECTIONS_CAP = 512
_SPARE_DESCRIPTORS = 64  # files, the queue, Redis, logs: what the process needs besides connections


def default_max_connections() -> int:
    """512, or fewer when the process may open fewer files (keeping 64 descriptors spare)."""
    if resource is None:
        return _MAX_CONNECTIONS_CAP
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return _MAX_CONNECTIONS_CAP
    return max(16, min(_MAX_CONNECTIONS_CAP, soft - _SPARE_DESCRIPTORS))


@dataclass(frozen=True)
class ConnectionLimits:
    """What one receiver process allows each connection, and how many connections it keeps."""

    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    max_connections: int = field(default_factory=default_max_connections)
    keep_alive_s: float = DEFAULT_KEEP_ALIVE_S

    def __post_init__(self) -> None:
        if min(self.max_header_bytes, self.max_connections) < 1 or \
                min(self.header_timeout_s, self.body_timeout_s, self.keep_alive_s) <= 0:
            raise ValueError("connection limits must be positive")


def _response(status: int, phrase: str) -> bytes:
    return (f"HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(phrase)}\r\nconnection: close\r\n\r\n{phrase}").encode("ascii")


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header size limit, read deadlines and a connection cap."""

    def __init__(self, config: uvicorn.Config, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *, limits: ConnectionLimits,
                 metrics: ReceiverMetrics | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self.metrics = metrics
        self.opened_at = 0.0
        # idle (no request yet, or between keep-alive requests), headers, body, or app (answering)
        self.phase = "idle"
        self._header_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None

    # -- deadlines and refusals ----------------------------------------------------------------

    def _arm(self, seconds: float, on_expiry: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, on_expiry)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _count(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.reject(reason)
        log.debug("closed a connection from %s: %s", self.client, reason)

    def _refuse(self, status: int, phrase: str, reason: str) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self._count(reason)
            self.transport.write(_response(status, phrase))
            self.transport.close()

    def _header_timed_out(self) -> None:
        self._deadline = None
        self._refuse(408, "Request Timeout", "header_timeout")

    def _body_timed_out(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self._count("body_timeout")
            self.transport.close()  # the app's receive() now returns http.disconnect

    @property
    def waiting_for_headers(self) -> bool:
        """True while no request is being read past its headers or answered (safe to drop)."""
        return self.phase in ("idle", "headers")

    def _make_room(self) -> None:
        others = [c for c in self.connections if c is not self and isinstance(c, LimitedHttpToolsProtocol)
                  and c.waiting_for_headers and not c.transport.is_closing()]
        if others:
            min(others, key=lambda c: c.opened_at)._refuse(503, "Service Unavailable", "over_capacity")
        else:
            self._refuse(503, "Service Unavailable", "over_capacity")

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.opened_at = time.monotonic()
        self._arm(self.limits.header_timeout_s, self._header_timed_out)
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.waiting_for_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self.waiting_for_headers and self._header_bytes > self.limits.max_header_bytes:
            self._refuse(431, "Request Header Fields Too Large", "header_too_large")

    # -- parser callbacks --------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.phase = "headers"
        if self._deadline is None:  # a keep-alive request: its header deadline starts at its first byte
            self._arm(self.limits.header_timeout_s, self._header_timed_out)

    def on_headers_complete(self) -> None:
        self.phase = "body"
        self._header_bytes = 0
        self._arm(self.limits.body_timeout_s, self._body_timed_out)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()
        self.phase = "idle" if self.cycle is None or self.cycle.response_complete else "app"

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.phase == "app" and (self.cycle is None or self.cycle.response_complete):
            self.phase = "idle"


def receiver_config(app: Any, *, host: str = "127.0.0.1", port: int = 8787,
                    limits: ConnectionLimits | None = None, access_log: bool = False,
                    log_level: str = "warning") -> uvicorn.Config:
    """A uvicorn config serving `app` with `limits` (the defaults when None)."""
    limits = limits or ConnectionLimits()
    metrics = getattr(getattr(app, "state", None), "metrics", None)
    protocol = functools.partial(LimitedHttpToolsProtocol, limits=limits, metrics=metrics)
    return uvicorn.Config(app, host=host, port=port, http=protocol,  # type: ignore[arg-type]
                          timeout_keep_alive=limits.keep_alive_s, log_level=log_level,  # type: ignore[arg-type]
                          access_log=access_log, lifespan="on", timeout_graceful_shutdown=10)


class ReceiverStartError(CioMaveraError):
    """The receiver did not start listening."""


class BackgroundReceiver:
    """The receiver under uvicorn, with limits, on `host` and a free port, in a daemon thread."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", limits: ConnectionLimits | None = None) -> None:
        self.app = app
        self.server = uvicorn.Server(receiver_config(app, host=host, port=0, limits=limits))
        self.thread = threading.Thread(target=self.server.run, name="cio-mavera-receiver", daemon=True)
        self.host = host
        self.port = 0
        self.url = ""

    def __enter__(self) -> BackgroundReceiver:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise ReceiverStartError("the webhook receiver did not start within 15 s")
            time.sleep(0.02)
        self.host, self.port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
