"""Customer.io Track API writes: identify, track event, and v2 batches split to fit the limits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from ..connect import Connection
from ..errors import InvalidParameter
from ..http import RequestStats, RetryPolicy
from ..ratelimit import RateLimiter, SlidingWindowLimiter
from ..settings import Settings
from .region import track_http, track_send

# Reference §2.5: a /api/v2/batch request may hold 500 KB, each item 32 KB. Whether "KB" means
# 1000 or 1024 bytes is UNVERIFIED, so the smaller reading is the default (splitting a little
# early costs one more request; sending a few bytes too many fails the whole batch with 400).
MAX_BATCH_BYTES = 500_000
MAX_ITEM_BYTES = 32_000
# Track documents 1000 req/s "not strictly enforced"; we stay far below it to be a good citizen.
TRACK_RPS = 100

# v2 person actions that set state rather than append it: sending one twice leaves the same
# result, so a batch made only of these may be retried even if the first attempt reached the
# server. Events are appends; they are safe only when each carries an `id` (Customer.io
# deduplicates events by that ULID).
_SET_ACTIONS = frozenset({"identify", "identify_anonymous", "delete", "add_relationships",
                          "delete_relationships", "add_device", "delete_device", "suppress",
                          "unsuppress"})
_EVENT_ACTIONS = frozenset({"event", "screen", "page"})


@dataclass(frozen=True)
class BatchFailure:
    """One operation Customer.io (or the local size check) rejected; `index` is the caller's."""

    index: int
    reason: str
    field: str | None = None
    message: str = ""


@dataclass
class BatchResult:
    """What happened to a list of v2 operations sent through `TrackClient.batch`."""

    sent: int = 0
    requests: int = 0
    failures: list[BatchFailure] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        """Operations sent and not reported failed by the server."""
        return self.sent - sum(1 for f in self.failures if f.reason != "too_large")

    @property
    def failed_indexes(self) -> list[int]:
        return sorted(f.index for f in self.failures)


def _encoded(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def batch_is_idempotent(operations: Sequence[dict[str, Any]]) -> bool:
    """True when re-sending `operations` cannot apply anything twice (see `_SET_ACTIONS`)."""
    for op in operations:
        action = op.get("action")
        if action in _SET_ACTIONS:
            continue
        if action in _EVENT_ACTIONS and op.get("id"):
            continue
        return False
    return True


def split_batch(operations: Sequence[dict[str, Any]], *, max_batch_bytes: int = MAX_BATCH_BYTES,
                max_item_bytes: int = MAX_ITEM_BYTES
                ) -> tuple[list[list[int]], list[BatchFailure]]:
    """Group operation indexes into requests under `max_batch_bytes`; oversized items fail."""
    envelope = len(_encoded({"batch": []}))
    groups: list[list[int]] = []
    failures: list[BatchFailure] = []
    current: list[int] = []
    size = envelope
    for index, op in enumerate(operations):
        item = len(_encoded(op))
        if item > max_item_bytes:
            failures.append(BatchFailure(index, "too_large", None,
                                         f"operation is {item} bytes; the limit is "
                                         f"{max_item_bytes} (not sent)"))
            continue
        extra = item + (1 if current else 0)  # the comma between items
        if current and size + extra > max_batch_bytes:
            groups.append(current)
            current, size, extra = [], envelope, item
        current.append(index)
        size += extra
    if current:
        groups.append(current)
    return groups, failures


class TrackClient:
    """The Customer.io Track API (Basic auth with site id and Track API key).

    A redirect (Track's answer to an EU workspace on the US host) raises an error naming
    CIO_REGION; it never counts as a success.
    """

    def __init__(self, source: Settings | Connection, *, limiter: RateLimiter | None = None,
                 retry: RetryPolicy | None = None, transport: httpx.BaseTransport | None = None,
                 timeout_s: float = 30.0) -> None:
        settings = source.settings if isinstance(source, Connection) else source
        self.settings = settings
        self.http = track_http(settings, limiter=limiter or SlidingWindowLimiter(TRACK_RPS, 1.0),
                               retry=retry, transport=transport, timeout_s=timeout_s)

    @property
    def stats(self) -> RequestStats:
        return self.http.stats

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> TrackClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def region(self) -> dict[str, Any]:
        """The account's region record: {"url", "region", "environment_id"}."""
        return track_send(self.http, "GET", "/api/v1/accounts/region").json()

    def identify(self, identifier: str, **attributes: Any) -> None:
        """Create or update a person (a PUT of the same attributes is safe to repeat)."""
        if not str(identifier).strip():
            raise InvalidParameter("identify needs a non-empty identifier")
        track_send(self.http, "PUT", f"/api/v1/customers/{quote(str(identifier), safe='')}",
                   json=attributes)

    def track(self, identifier: str, name: str, data: dict[str, Any] | None = None, *,
              timestamp: int | None = None, event_id: str | None = None) -> None:
        """Record an event for a person; retried after a possible delivery only with `event_id`."""
        if not name or not str(name).strip():
            raise InvalidParameter("an event needs a name")
        body: dict[str, Any] = {"name": name}
        if data:
            body["data"] = data
        if timestamp is not None:
            body["timestamp"] = int(timestamp)
        if event_id:
            body["id"] = event_id
        # Customer.io deduplicates events by `id`, so only then is a blind retry harmless.
        track_send(self.http, "POST", f"/api/v1/customers/{quote(str(identifier), safe='')}/events",
                   json=body, idempotent=bool(event_id))

    def batch(self, operations: Sequence[dict[str, Any]], *,
              max_batch_bytes: int = MAX_BATCH_BYTES,
              max_item_bytes: int = MAX_ITEM_BYTES) -> BatchResult:
        """Send v2 operations in as few requests as the size limits allow; report failures per item.

        A 207 lists failed items by `batch_index` within its request; they are mapped back to the
        index in `operations`. A 400 (the whole request refused) fails every item of that request.
        """
        groups, failures = split_batch(operations, max_batch_bytes=max_batch_bytes,
                                       max_item_bytes=max_item_bytes)
        result = BatchResult(failures=list(failures))
        for group in groups:
            ops = [operations[i] for i in group]
            response = track_send(self.http, "POST", "/api/v2/batch", json={"batch": ops},
                                  idempotent=batch_is_idempotent(ops), expect=(400,))
            result.requests += 1
            result.sent += len(group)
            result.failures.extend(_batch_failures(response, group))
        result.failures.sort(key=lambda f: f.index)
        return result


def _batch_failures(response: httpx.Response, group: list[int]) -> list[BatchFailure]:
    if response.status_code == 200:
        return []
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        errors = []
    if response.status_code == 207:
        found = []
        for error in errors:
            position = error.get("batch_index")
            if isinstance(position, int) and 0 <= position < len(group):
                found.append(BatchFailure(group[position], str(error.get("reason") or "rejected"),
                                          error.get("field"), str(error.get("message") or "")))
        return found
    message = "; ".join(str(e.get("message") or e.get("reason") or e) for e in errors
                        if isinstance(e, dict)) or response.text[:200]
    return [BatchFailure(i, "request_rejected", None, f"{response.status_code}: {message}")
            for i in group]
