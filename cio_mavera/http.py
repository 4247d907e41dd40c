"""The one place that talks HTTP: an httpx client per API, built from transports, with specific errors.

Every endpoint method in the clients is "build request, parse response"; what makes a request
survive the real world is a chain of transports (`cio_mavera.transports`):

- `RetryTransport`: retries with jittered exponential backoff on 429, 5xx and connection errors,
  honouring `Retry-After`, never on other 4xx; a call that creates something is retried only when
  the server surely did not act on it (429, or a connection that never opened), unless the caller
  says the API makes it safe;
- `RateLimitTransport`: the rate limiter, acquired before every attempt (retries spend budget too);
- `AccountingTransport`: request accounting (`RequestStats`) for the "requests made" figures the
  CLI prints, and log lines with customer emails and phones masked.

`HttpClient` builds that chain, maps error statuses to exception classes, and redacts secrets from
every exception message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx

from .errors import ApiError, AuthError, NotFound, RateLimited, ServerError, Unreachable
from .ratelimit import NoLimit, RateLimiter
from .transports import (
    ATTEMPTS,
    EXPECT,
    IDEMPOTENT,
    IDEMPOTENT_METHODS,
    ROUTE,
    STREAM,
    AccountingTransport,
    RateLimitTransport,
    RequestStats,
    RetryPolicy,
    RetryTransport,
    loggable,
    may_have_reached_server,
    permanent_failure,
    retry_after_seconds,
)

# What to check when a service's host cannot be reached (the services' names in their errors).
_SETTINGS_TO_CHECK = {
    "customerio-app": "CIO_REGION (us or eu) and CIO_APP_URL",
    "customerio-track": "CIO_REGION (us or eu) and CIO_TRACK_URL",
    "mavera": "MAVERA_BASE_URL",
}

__all__ = ["HttpClient", "RequestStats", "RetryPolicy", "default_error", "loggable", "redact",
           "retry_after_seconds"]

# httpx logs every full URL at INFO (query strings included, e.g. ?email=); ours masks them.
logging.getLogger("httpx").setLevel(logging.WARNING)

ErrorFactory = Callable[[httpx.Response, str], ApiError]


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced by ****."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "****")
    return text


def _redacted(body: Any, secrets: Iterable[str]) -> Any:
    """An error body (text or decoded JSON) with every secret value replaced by ****."""
    if isinstance(body, str):
        return redact(body, secrets)
    if isinstance(body, dict | list):
        return json.loads(redact(json.dumps(body), secrets))
    return body


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


def _sleep(seconds: float) -> None:
    # Looks `time` up at call time, so a test may patch `cio_mavera.http.time` for a client it
    # cannot hand a `sleep` (tests/mavera/test_mavera_client.py does).
    time.sleep(seconds)


def _now() -> float:
    return time.time()


def _network(base_url: str, limits: httpx.Limits) -> httpx.HTTPTransport:
    """The connection pool, through the proxy the environment names for `base_url`, if any.

    httpx honours HTTP(S)_PROXY/NO_PROXY only in a transport it builds itself, which the chain
    replaces; urllib's reading of the same variables keeps a proxied network working.
    """
    url = httpx.URL(base_url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if proxy and urllib.request.proxy_bypass(url.host):
        proxy = None
    if proxy and "://" not in proxy:
        proxy = f"http://{proxy}"
    return httpx.HTTPTransport(limits=limits, proxy=proxy)


class HttpClient:
    """A pooled httpx client for one API: limiter, retries, accounting, specific errors, redaction.

    `transport` replaces the network under the chain (a test's `httpx.MockTransport`, or a
    wrapper such as Mavera's `GateTransport`); `sleep` and `clock` are the retry pauses and the
    clock an HTTP-date `Retry-After` is read against.
    """

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
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.stats = RequestStats()
        self._retry = retry or RetryPolicy()
        self._secrets = [s for s in secrets if s]
        self._error_factory = error_factory or default_error(service)
        network = transport or _network(self.base_url, httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections))
        chain = RetryTransport(
            RateLimitTransport(AccountingTransport(network, self.stats, service),
                               limiter or NoLimit(), on_wait=self.stats.add_wait),
            self._retry, service=service, sleep=sleep or _sleep, clock=clock or _now,
            on_retry=self.stats.add_retry)
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"User-Agent": "cio-mavera/0.1", **(headers or {})},
            auth=auth,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            transport=chain,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        route = f"{method} {path}"
        options = {ROUTE: route, EXPECT: frozenset(expect), STREAM: stream,
                   IDEMPOTENT: method in IDEMPOTENT_METHODS if idempotent is None else idempotent}
        request = self._client.build_request(method, path, params=params, json=json,
                                             headers=headers, extensions=options)
        try:
            response = self._client.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise self._transport_error(exc, request) from None
        status = response.status_code
        if status < 300 or status in options[EXPECT]:
            return response
        if status < 400:  # never a success, and never followed: the key would go where it points
            response.close()
            raise self._redirect_error(response, route)
        if stream:
            response.read()  # error bodies are small, and the error message quotes them
            response.close()
        raise self._error(response, route, request.extensions.get(ATTEMPTS, 1))

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kw: Any) -> Iterator[httpx.Response]:
        """`request()` whose successful body is read incrementally (e.g. server-sent events)."""
        response = self.request(method, path, stream=True, **kw)
        try:
            yield response
        finally:
            response.close()

    def _transport_error(self, exc: httpx.TransportError, request: httpx.Request) -> ServerError:
        reason = permanent_failure(exc)
        if reason is not None:
            host = request.url.host or str(request.url)
            return Unreachable(
                f"cannot reach {self.service} at {host}: {reason} (not retried); check "
                f"{_SETTINGS_TO_CHECK.get(self.service, 'the base URL settings')} and any "
                "HTTPS_PROXY/NO_PROXY setting", service=self.service)
        not_retried = may_have_reached_server(exc) and not request.extensions[IDEMPOTENT]
        message = redact(f"{self.service} {request.extensions[ROUTE]}: {type(exc).__name__}: {exc}",
                         self._secrets)
        message += (" (not retried: the request may have reached the server)" if not_retried
                    else f" after {request.extensions.get(ATTEMPTS, 1)} attempts")
        return ServerError(message, service=self.service)

    def _redirect_error(self, response: httpx.Response, route: str) -> ApiError:
        location = response.headers.get("location", "").split("?")[0]
        return ApiError(
            f"{self.service} {route} answered {response.status_code} redirecting"
            f"{' to ' + location if location else ''}; redirects are not followed (the key would "
            f"go with it): check {_SETTINGS_TO_CHECK.get(self.service, 'the base URL settings')}",
            service=self.service, status=response.status_code)

    def _error(self, response: httpx.Response, route: str, attempts: int) -> ApiError:
        error = self._error_factory(response, route)
        message = redact(str(error), self._secrets)
        if attempts > 1 and response.status_code in self._retry.retry_statuses:
            message += f" (after {attempts} attempts)"
        error.args = (message,)
        error.body = _redacted(error.body, self._secrets)  # error pages may quote the key they got
        return error

    def get_json(self, path: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        """GET `path` and return the decoded JSON body."""
        return self.request("GET", path, params=params, **kw).json()

    def post_json(self, path: str, json: Any, params: dict[str, Any] | None = None,
                  **kw: Any) -> Any:
        """POST `json` to `path` and return the decoded JSON body."""
        return self.request("POST", path, params=params, json=json, **kw).json()
