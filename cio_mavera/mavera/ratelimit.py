"""Mavera's limits on the client side: the tier window per key, the server's own count, concurrency caps.

Three layers, each covering what the others cannot see:

- a sliding 60 s window per API key at the tier's requests/minute (file- or Redis-backed, so every
  process using the key shares it);
- a gate fed by `X-RateLimit-Remaining`/`X-RateLimit-Reset`: when the server says the key's window is
  spent (another machine, the dashboard, a smaller tier than configured), new sends wait for the reset
  instead of collecting a 429;
- concurrency caps: Mave 10 requests in flight, focus groups 5 running (in-process semaphores).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from ..ratelimit import RateLimiter, shared_limiter

WINDOW_S = 60.0  # the docs: per key, sliding 60-second window
MAVE_CONCURRENCY = 10
FOCUS_GROUP_CONCURRENCY = 5
# X-RateLimit-Reset is whole unix seconds; a little slack keeps us on the far side of it.
RESET_MARGIN_S = 0.25
# Never trust a reset further away than one window (clock skew or a bogus header).
MAX_GATE_WAIT_S = WINDOW_S + 1.0


def key_id(key: str) -> str:
    """A short one-way name for an API key (limiter files and registries never hold the key)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class HeaderGate:
    """Holds new requests while the server says the key's window is used up.

    `Remaining` in a response does not count requests still in flight (they may not have arrived
    yet), so the usable budget is Remaining minus those, and every send spends one of it until the
    next response tells us the server's count again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._budget: int | None = None  # None: no recent word from the server
        self._reset_at = 0.0  # unix time
        self.in_flight = 0
        self.waited_s = 0.0

    def before_send(self) -> float:
        """Wait if the server's budget is spent; return the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.time()
                if self._budget is None or self._budget > 0 or now >= self._reset_at:
                    if self._budget is not None:
                        self._budget = self._budget - 1 if now < self._reset_at else None
                    self.in_flight += 1
                    self.waited_s += waited
                    return waited
                pause = min(self._reset_at - now, MAX_GATE_WAIT_S)
            time.sleep(pause)
            waited += pause

    def after_response(self, response: httpx.Response | None) -> None:
        """Record a finished request and what its rate-limit headers say."""
        with self._lock:
            self.in_flight = max(0, self.in_flight - 1)
            if response is None:
                return
            remaining = _int_header(response, "x-ratelimit-remaining")
            reset = _int_header(response, "x-ratelimit-reset")
            if remaining is None or reset is None:
                return
            reset_at = min(reset + RESET_MARGIN_S, time.time() + MAX_GATE_WAIT_S)
            self._budget = remaining - self.in_flight
            self._reset_at = reset_at


def _int_header(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name)
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


class GatedLimiter:
    """The tier window, then the header gate: what `HttpClient` acquires before every attempt."""

    def __init__(self, window: RateLimiter, gate: HeaderGate) -> None:
        self.window = window
        self.gate = gate

    def acquire(self) -> float:
        return self.window.acquire() + self.gate.before_send()


class GateTransport(httpx.BaseTransport):
    """Wraps the real transport so the gate sees every response and every failed attempt."""

    def __init__(self, inner: httpx.BaseTransport, gate: HeaderGate) -> None:
        self.inner = inner
        self.gate = gate

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = self.inner.handle_request(request)
        except BaseException:
            self.gate.after_response(None)
            raise
        self.gate.after_response(response)
        return response

    def close(self) -> None:
        self.inner.close()


class KeyLimits:
    """Everything rate-related shared by every client of one key in this process."""

    def __init__(self, window: RateLimiter, rpm: int) -> None:
        self.rpm = rpm
        self.gate = HeaderGate()
        self.limiter = GatedLimiter(window, self.gate)
        self.mave = threading.BoundedSemaphore(MAVE_CONCURRENCY)
        self.focus_groups = threading.BoundedSemaphore(FOCUS_GROUP_CONCURRENCY)


_registry: dict[tuple[str, str, int, str], KeyLimits] = {}
_registry_lock = threading.Lock()


def limits_for(key: str, rpm: int, *, data_dir: Path, redis_url: str | None = None) -> KeyLimits:
    """The shared `KeyLimits` for `key` at `rpm` requests/minute (one per key, tier and data dir)."""
    kid = key_id(key)
    token = (kid, str(data_dir), rpm, redis_url or "")
    with _registry_lock:
        if token not in _registry:
            window = shared_limiter(f"mavera-{kid}-{rpm}rpm", rpm, WINDOW_S, data_dir=data_dir,
                                    redis_url=redis_url)
            _registry[token] = KeyLimits(window, rpm)
        return _registry[token]


@contextmanager
def held(semaphore: threading.BoundedSemaphore) -> Iterator[None]:
    """Hold one slot of a concurrency cap for the duration of the block."""
    semaphore.acquire()
    try:
        yield
    finally:
        semaphore.release()
