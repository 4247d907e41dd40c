"""The httpx transports `HttpClient` stacks around the network: retry, rate limit, accounting.

Outermost first, `RetryTransport -> RateLimitTransport -> AccountingTransport -> network`, so every
attempt (retries included) waits for the limiter, and is counted and logged. Per-request options
travel in `request.extensions` under the keys below; `HttpClient` sets them from its arguments.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import random
import re
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from .ratelimit import RateLimiter

log = logging.getLogger("cio_mavera.http")

ROUTE = "cio_mavera.route"  # "METHOD /path" as the caller wrote it (stats and log lines)
IDEMPOTENT = "cio_mavera.idempotent"  # may be sent again even if an attempt reached the server
EXPECT = "cio_mavera.expect"  # non-2xx statuses the caller handles: returned as they are
STREAM = "cio_mavera.stream"  # leave a successful body unread for the caller to stream
ATTEMPTS = "cio_mavera.attempts"  # written by RetryTransport: attempts made so far

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts, backoff and which statuses are worth another go."""

    max_retries: int = 6
    backoff_base_s: float = 0.25
    backoff_cap_s: float = 8.0
    max_retry_after_s: float = 120.0
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for retry number `attempt` (1-based)."""
        return random.uniform(0, min(self.backoff_cap_s, self.backoff_base_s * 2 ** attempt))


@dataclass
class RequestStats:
    """Thread-safe counts of what a client did, for progress lines and benchmarks."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    waited_s: float = 0.0
    by_route: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, route: str, status: int | None) -> None:
        """Count one attempt at `route` and its status (None: no response arrived)."""
        with self._lock:
            self.requests += 1
            self.rate_limited += int(status == 429)
            self.server_errors += int(status is not None and status >= 500)
            self.by_route[route] += 1

    def add_retry(self, pause_s: float) -> None:
        """Count a retry and the pause before it."""
        with self._lock:
            self.retries += 1
            self.waited_s += pause_s

    def add_wait(self, seconds: float) -> None:
        """Count time spent waiting for the rate limiter."""
        with self._lock:
            self.waited_s += seconds

    def snapshot(self) -> dict[str, Any]:
        """The counts as a plain dict (without the per-route breakdown)."""
        with self._lock:
            return {"requests": self.requests, "retries": self.retries,
                    "rate_limited": self.rate_limited, "server_errors": self.server_errors,
                    "waited_s": round(self.waited_s, 3)}


_PERSONAL_SEGMENT = re.compile(r"/[^/]*(?:@|%40)[^/]*|/(?:\+|%2B)\d{6,}")


def loggable(route: str) -> str:
    """`route` with email and phone path segments masked: logs carry no customer PII."""
    return _PERSONAL_SEGMENT.sub("/{personal}", route)


def route_of(request: httpx.Request) -> str:
    """The route a request is counted and logged under."""
    return request.extensions.get(ROUTE) or f"{request.method} {request.url.path}"


def retry_after_seconds(response: httpx.Response, now: float | None = None) -> float | None:
    """The server's `Retry-After` as seconds (it may be seconds or an HTTP date), if present."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# getaddrinfo's "no such name" answers: the host does not exist (a typo, a wrong region host, no DNS
# for it behind a proxy); asking again cannot change that.
_NO_SUCH_HOST = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


def permanent_failure(exc: httpx.TransportError) -> str | None:
    """Why retrying `exc` cannot help (the host does not resolve, its certificate is refused, the URL
    is unusable), or None when it might: a refused or dropped connection, a timeout."""
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
        return "the URL is not usable"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, socket.gaierror) and cause.errno in _NO_SUCH_HOST:
            return "the host name does not resolve"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return "its TLS certificate was refused"
        cause = cause.__cause__ or cause.__context__
    return None


def may_have_reached_server(exc: httpx.TransportError) -> bool:
    """False only for a connection that never opened: the server cannot have acted on it."""
    return not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)


class AccountingTransport(httpx.BaseTransport):
    """Counts every attempt in `stats` and logs it, with personal path segments masked."""

    def __init__(self, inner: httpx.BaseTransport, stats: RequestStats, service: str) -> None:
        self.inner = inner
        self.stats = stats
        self.service = service

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        route = route_of(request)
        started = time.monotonic()
        try:
            response = self.inner.handle_request(request)
        except httpx.TransportError:
            self.stats.record(route, None)
            raise
        self.stats.record(route, response.status_code)
        log.info("%s %s -> %d in %.0f ms", self.service, loggable(route), response.status_code,
                 (time.monotonic() - started) * 1000)
        return response

    def close(self) -> None:
        self.inner.close()


class RateLimitTransport(httpx.BaseTransport):
    """Waits for the limiter before every attempt; retries spend the budget too."""

    def __init__(self, inner: httpx.BaseTransport, limiter: RateLimiter,
                 on_wait: Callable[[float], None] | None = None) -> None:
        self.inner = inner
        self.limiter = limiter
        self.on_wait = on_wait

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        waited = self.limiter.acquire()
        if waited and self.on_wait is not None:
            self.on_wait(waited)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class RetryTransport(httpx.BaseTransport):
    """Sends again after 429, 5xx and connection errors, as far as that is safe.

    Pauses honour `Retry-After` (one longer than the policy allows ends the retries) and otherwise
    back off with jitter. Other 4xx are never retried. A request that is not idempotent is sent
    again only when the server surely did not act on it: a 429, or a connection that never opened.
    A non-streaming body is read inside the loop, so a connection dropped mid-body is retried like
    one dropped before the headers; a stream is retried only before its body starts.
    """

    def __init__(self, inner: httpx.BaseTransport, policy: RetryPolicy, *, service: str = "",
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time,
                 on_retry: Callable[[float], None] | None = None) -> None:
        self.inner = inner
        self.policy = policy
        self.service = service
        self.sleep = sleep
        self.clock = clock
        self.on_retry = on_retry

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        options = request.extensions
        idempotent = options.get(IDEMPOTENT, request.method in IDEMPOTENT_METHODS)
        route = loggable(route_of(request))
        attempt = 0
        while True:
            attempt += 1
            options[ATTEMPTS] = attempt
            try:
                response = self.inner.handle_request(request)
                if not options.get(STREAM, False):
                    response.read()
            except httpx.TransportError as exc:
                if attempt > self.policy.max_retries or permanent_failure(exc) or (
                        may_have_reached_server(exc) and not idempotent):
                    raise
                pause = self.policy.backoff(attempt)
                log.warning("%s %s: %s; retry %d in %.2fs", self.service, route,
                            type(exc).__name__, attempt, pause)
            else:
                pause = self._pause_before_retry(response, attempt, idempotent,
                                                 options.get(EXPECT, ()))
                if pause is None:
                    return response
                _discard(response)
                log.warning("%s %s -> %d; retry %d in %.2fs", self.service, route,
                            response.status_code, attempt, pause)
            if self.on_retry is not None:
                self.on_retry(pause)
            self.sleep(pause)

    def _pause_before_retry(self, response: httpx.Response, attempt: int, idempotent: bool,
                            expected: Any) -> float | None:
        """Seconds to wait before sending again, or None to hand this response back."""
        status = response.status_code
        if status < 400 or status in expected:
            return None
        if status not in self.policy.retry_statuses or not (idempotent or status == 429):
            return None
        if attempt > self.policy.max_retries:
            return None
        pause = retry_after_seconds(response, now=self.clock())
        if pause is None:
            return self.policy.backoff(attempt)
        return pause if pause <= self.policy.max_retry_after_s else None

    def close(self) -> None:
        self.inner.close()


def _discard(response: httpx.Response) -> None:
    """Finish with a response that will not be returned (reading its body keeps the connection)."""
    with contextlib.suppress(httpx.TransportError):
        response.read()
    response.close()
