"""Mutable state of the sandbox's Customer.io half: the App API rate window, Track write-backs, exports."""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .directory import WrittenPeople
from .export_store import ExportStore


class AppRateWindow:
    """Sliding-window log: at most `limit` accepted requests in any `window_s` seconds.

    Guarded by a lock so that the count stays exact whichever thread or loop serves a request;
    rejected requests do not enter the window, so a client that backs off recovers after one window.
    """

    def __init__(self, limit: int, window_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock  # tests freeze it to count admissions without depending on timing
        self._accepted: deque[float] = deque()
        self._lock = threading.Lock()

    def admit(self, now: float | None = None) -> bool:
        """Record a request and say whether it fits in the window."""
        now = self.clock() if now is None else now
        with self._lock:
            while self._accepted and self._accepted[0] <= now - self.window_s:
                self._accepted.popleft()
            if len(self._accepted) >= self.limit:
                return False
            self._accepted.append(now)
            return True

    def clear(self) -> None:
        with self._lock:
            self._accepted.clear()


class CioState:
    """Per-server Customer.io state: rate window, forced-429 dice and what Track calls wrote."""

    def __init__(self, app_rps: int, seed: int) -> None:
        self.rate = AppRateWindow(app_rps)
        self._seed = seed
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        # Track write-backs, visible to tests: identifier -> merged attributes of every identify.
        self.identified: dict[str, dict[str, Any]] = {}
        # (identifier, event body) of every v1 event and v2 person event, in arrival order.
        self.events: list[tuple[str, dict[str, Any]]] = []
        # Every accepted v2 operation (batch items and entity calls), in arrival order.
        self.v2_operations: list[dict[str, Any]] = []
        # Read-only data derived from the workspace (built on first use, kept across resets).
        self.derived: Any = None
        self.derived_lock = threading.Lock()
        # People as Track left them, for the App API to read back (directory.py).
        self.written = WrittenPeople(seed)
        # Knob: empty pages (each with a `next` cursor) served before every page with items on
        # the paged App routes; 0 by default. Live, an empty membership page is "not proof of
        # the end" (customerio-api.md §2.3), so a client must follow them.
        self.hollow_pages = 0
        # Exports, their files and signed URLs; knobs: delay_s, url_ttl_s, fail_next, damage_next.
        self.exports = ExportStore()

    def roll_forced_429(self, rate: float) -> bool:
        """True for a request the `force_429_rate` knob should refuse."""
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def record_identify(self, identifier: str, attributes: dict[str, Any]) -> None:
        """Keep an identify's attributes under the identifier it was sent for (tests read them)."""
        with self._lock:
            self.identified.setdefault(identifier, {}).update(attributes)

    def record_event(self, identifier: str, event: dict[str, Any]) -> None:
        with self._lock:
            self.events.append((identifier, event))

    def record_v2(self, operation: dict[str, Any]) -> None:
        with self._lock:
            self.v2_operations.append(operation)

    def reset(self) -> None:
        """Forget write-backs, the rate window, exports and the knobs (the workspace stays)."""
        with self._lock:
            self.identified.clear()
            self.events.clear()
            self.v2_operations.clear()
            self.written.clear()
            self.hollow_pages = 0
            self._rng = random.Random(self._seed)
        self.rate.clear()
        self.exports.reset()

