"""The one place that talks HTTP: pooled httpx clients, rate limiting, retries, accounting, redaction.

Every endpoint method in the clients is "build request, parse response"; everything that makes a
request survive the real world lives here:

- a rate limiter acquired before every attempt (retries spend budget too);
- retries with jittered exponential backoff on 429, 5xx and connection errors, honouring
  `Retry-After`, never on other 4xx;
- a call that creates something is retried only when the server surely did not act on it
  (429, or a connection that never opened), unless the caller says the API makes it safe;
- request accounting (`RequestStats`) for the "requests made" figures the CLI prints;
- secrets redacted from every log line and exception message.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from .errors import ApiError, AuthError, NotFound, RateLimited, ServerError
from .ratelimit import NoLimit, RateLimiter

log = logging.getLogger("cio_mavera.http")
# httpx logs every full URL at INFO (query strings included, e.g. ?email=); ours masks them.
logging.getLogger("httpx").setLevel(logging.WARNING)

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

    def record(self, route: str, status: int | None, retry: bool, waited_s: float) -> None:
        with self._lock:
            self.requests += 1
            self.retries += int(retry)
            self.rate_limited += int(status == 429)
            self.server_errors += int(status is not None and status >= 500)
            self.waited_s += waited_s
            self.by_route[route] += 1

    def add_wait(self, seconds: float) -> None:
        with self._lock:
            self.waited_s += seconds

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": self.requests, "retries": self.retries,
                    "rate_limited": self.rate_limited, "server_errors": self.server_errors,
                    "waited_s": round(self.waited_s, 3)}


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced by ****."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "****")
    return text


_PERSONAL_SEGMENT = re.compile(r"/[^/]*(?:@|%40)[^/]*|/(?:\+|%2B)\d{6,}")


def loggable(route: str) -> str:
    """`route` with email and phone path segments masked: logs carry no customer PII."""
    return _PERSONAL_SEGMENT.sub("/{personal}", route)


def retry_after_seconds(response: httpx.Response) -> float | None:
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
    return max(0.0, when.timestamp() - time.time())


ErrorFactory = Callable[[httpx.Response, str], ApiError]
ResponseHook = Callable[[httpx.Response], None]


def default_error(service: str) -> ErrorFactory:
    """An error factory that maps statuses to exception classes with the body's text."""

    def make(response: httpx.Response, route: str) -> ApiError:
        status = response.status_code
        cls = {401: AuthError, 403: AuthError, 404: NotFound, 429: RateLimited}.get(
            status, ServerError if status >= 500 else ApiError)
        detail = response.text[:300].strip() or response.reason_phrase
        return cls(f"{service} {route} failed ({status}): {detail}", service=service,
                   status=status, body=detail)

    return make


class HttpClient:
    """A pooled httpx client for one API with limiter, retries, accounting and redaction."""

    def __init__(
        self,
        *,
        service: str,
        base_url: str,
        headers: dict[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        secrets: Iterable[str] = (),
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 30.0,
        max_connections: int = 16,
        error_factory: ErrorFactory | None = None,
        response_hooks: Iterable[ResponseHook] = (),
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter or NoLimit()
        self.retry = retry or RetryPolicy()
        self.stats = RequestStats()
        self._secrets = [s for s in secrets if s]
        self._error_factory = error_factory or default_error(service)
        self._hooks = list(response_hooks)
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"User-Agent": "cio-mavera/0.1", **(headers or {})},
            auth=auth,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections),
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_response_hook(self, hook: ResponseHook) -> None:
        """Call `hook(response)` on every response received (e.g. to read rate-limit headers)."""
        self._hooks.append(hook)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        idempotent: bool | None = None,
        expect: Iterable[int] = (),
        stream: bool = False,
    ) -> httpx.Response:
        """Send a request with retries; return the response or raise a specific `ApiError`.

        `idempotent` defaults from the method (POST is not); `expect` lists extra non-2xx statuses
        the caller handles itself (e.g. 207 is already 2xx, 404 for "look up, then create").
        With `stream`, a successful response's body is left unread (use `stream()`, which closes
        it); retries happen only before the body starts.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        route = f"{method} {path}"
        expected = set(expect)
        attempt = 0
        while True:
            waited = self.limiter.acquire()
            started = time.monotonic()
            try:
                response = self._client.send(
                    self._client.build_request(method, path, params=params, json=json,
                                               headers=headers), stream=stream)
            except httpx.TransportError as exc:
                self.stats.record(route, None, attempt > 0, waited)
                # A refused connection never reached the server; anything later might have.
                reached = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if attempt >= self.retry.max_retries or (reached and not idempotent):
                    raise ServerError(
                        redact(f"{self.service} {route}: {type(exc).__name__}: {exc}", self._secrets)
                        + (" (not retried: the request may have reached the server)"
                           if reached and not idempotent else f" after {attempt + 1} attempts"),
                        service=self.service) from None
                attempt += 1
                pause = self.retry.backoff(attempt)
                log.warning("%s %s: %s; retry %d in %.2fs", self.service, loggable(route),
                            type(exc).__name__, attempt, pause)
                self._pause(pause)
                continue

            self.stats.record(route, response.status_code, attempt > 0, waited)
            for hook in self._hooks:
                hook(response)
            log.info("%s %s -> %d in %.0f ms", self.service, loggable(route), response.status_code,
                     (time.monotonic() - started) * 1000)
            status = response.status_code
            if status < 400 or status in expected:
                return response
            if stream:
                response.read()  # error bodies are small, and the error message quotes them
                response.close()
            retryable = status in self.retry.retry_statuses and (idempotent or status == 429)
            if not retryable or attempt >= self.retry.max_retries:
                raise self._error(response, route, attempt)
            attempt += 1
            pause = retry_after_seconds(response)
            if pause is None:
                pause = self.retry.backoff(attempt)
            elif pause > self.retry.max_retry_after_s:
                raise self._error(response, route, attempt)
            log.warning("%s %s -> %d; retry %d in %.2fs", self.service, loggable(route), status,
                        attempt, pause)
            self._pause(pause)

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kw: Any) -> Iterator[httpx.Response]:
        """`request()` whose successful body is read incrementally (e.g. server-sent events)."""
        response = self.request(method, path, stream=True, **kw)
        try:
            yield response
        finally:
            response.close()

    def _pause(self, seconds: float) -> None:
        """Sleep between retries, counted in stats.waited_s with the limiter's waits."""
        self.stats.add_wait(seconds)
        time.sleep(seconds)

    def _error(self, response: httpx.Response, route: str, attempts: int) -> ApiError:
        error = self._error_factory(response, route)
        message = redact(str(error), self._secrets)
        if attempts and response.status_code in self.retry.retry_statuses:
            message += f" (after {attempts + 1} attempts)"
        error.args = (message,)
        return error

    def get_json(self, path: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        """GET `path` and return the decoded JSON body."""
        return self.request("GET", path, params=params, **kw).json()

    def post_json(self, path: str, json: Any, params: dict[str, Any] | None = None,
                  **kw: Any) -> Any:
        """POST `json` to `path` and return the decoded JSON body."""
        return self.request("POST", path, params=params, json=json, **kw).json()
