"""The webhook queue protocol shared by the receiver (producer) and the worker (consumer).

Receivers call `await queue.enqueue(...)`, which returns only once the event is durable, and answer
2xx after it. Workers call `claim` / `ack` (blocking, synchronous): delivery is at-least-once, and
items a consumer claimed but never acked become claimable again after a visibility timeout (SQLite)
or an idle time (Redis Streams, XAUTOCLAIM), so a worker must be idempotent on `event_id`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from ...errors import CioMaveraError

DEFAULT_VISIBILITY_TIMEOUT_S = 60.0
# Customer.io retries a webhook for up to 7 days (reference §5.1); remember ids a day longer.
DEFAULT_DEDUP_TTL_S = 8 * 24 * 3600


class QueueUnavailable(CioMaveraError):
    """The queue could not store or hand out events (disk full, locked, closed or unreachable)."""


@dataclass(frozen=True)
class QueuedEvent:
    """One claimed event: `id` is what `ack` takes; `payload` is the raw webhook body."""

    id: str
    event_id: str
    payload: bytes
    received_at: float
    redelivered: bool = False


@runtime_checkable
class WebhookQueue(Protocol):
    """A durable, deduplicating queue of raw webhook bodies."""

    backend: str

    async def enqueue(self, event_id: str, payload: bytes, received_at: float) -> bool:
        """Store the event durably; False when `event_id` was already enqueued (a duplicate)."""
        ...

    def claim(self, consumer: str, max_items: int = 100, block_ms: int = 0) -> list[QueuedEvent]:
        """Up to `max_items` events for `consumer`, waiting up to `block_ms` for the first one.

        Includes events another consumer claimed but did not ack in time (redelivery).
        """
        ...

    def ack(self, ids: Iterable[str]) -> int:
        """Mark claimed events done (by `QueuedEvent.id`); returns how many were acked."""
        ...

    def depth(self) -> int:
        """Events enqueued and not yet acked (waiting or claimed)."""
        ...

    def describe(self) -> str:
        """A printable location of the queue (no credentials)."""
        ...

    async def aclose(self) -> None:
        """Release resources used by `enqueue` (call from the event loop that used them)."""
        ...

    def close(self) -> None:
        """Release resources used by the synchronous consumer API."""
        ...


def default_queue_path(data_dir: Path) -> Path:
    """Where the default SQLite queue lives: `<data dir>/queue/webhooks.sqlite3`."""
    return Path(data_dir) / "queue" / "webhooks.sqlite3"
