"""The webhook queue protocol shared by the receiver (producer) and the worker (consumer).

Receivers call `await queue.enqueue(...)`, which returns only once the event is durable, and answer
2xx after it. Workers call `claim` / `ack` (blocking, synchronous): delivery is at-least-once, and
items a consumer claimed but never acked become claimable again after a visibility timeout (SQLite)
or an idle time (Redis Streams, XAUTOCLAIM), so a worker must be idempotent on `event_id`.

Each queue also keeps the dead letters: signed bodies the receiver or the worker could not use, with
the reason, stored once per body (keyed by its SHA-256) and replayable into the queue later.
"""

from __future__ import annotations

import hashlib
import time
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


class EventRejected(CioMaveraError):
    """The queue could not store this one event (its id or body); other events are unaffected."""


@dataclass(frozen=True)
class QueuedEvent:
    """One claimed event: `id` is what `ack` takes; `payload` is the raw webhook body."""

    id: str
    event_id: str
    payload: bytes
    received_at: float
    redelivered: bool = False


@dataclass(frozen=True)
class DeadLetter:
    """A signed body that could not be used: kept raw with why (`reason` code, `detail`) and when.

    `stage` is "receiver" or "worker"; `event_id` is set when the body had a usable one.
    """

    key: str
    payload: bytes
    reason: str
    detail: str
    stage: str
    received_at: float
    dead_at: float
    event_id: str | None = None
    replayed_at: float | None = None

    @classmethod
    def of(cls, payload: bytes, reason: str, detail: str, *, stage: str, received_at: float,
           event_id: str | None = None, now: float | None = None) -> DeadLetter:
        """A dead letter for `payload`, keyed by its SHA-256 (so a retried body is stored once)."""
        return cls(
            key=hashlib.sha256(payload).hexdigest(),
            payload=payload,
            reason=reason,
            detail=_printable(detail)[:500],
            stage=stage,
            received_at=received_at,
            dead_at=time.time() if now is None else now,
            event_id=_storable_id(event_id),
        )


def _printable(text: str) -> str:
    """`text` with anything UTF-8 cannot hold (a lone surrogate) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _storable_id(event_id: str | None) -> str | None:
    if not isinstance(event_id, str) or not event_id or len(event_id) > 256:
        return None
    return event_id if _printable(event_id) == event_id and event_id.isprintable() else None


@runtime_checkable
class WebhookQueue(Protocol):
    """A durable, deduplicating queue of raw webhook bodies."""

    backend: str

    async def enqueue(self, event_id: str, payload: bytes, received_at: float) -> bool:
        """Store the event durably; False when `event_id` was already enqueued (a duplicate).

        Raises EventRejected when this event cannot be stored, QueueUnavailable when none can.
        """
        ...

    async def enqueue_dead(self, letter: DeadLetter) -> bool:
        """Store a dead letter durably; False when that body is already waiting as a dead letter."""
        ...

    async def ping(self) -> None:
        """Return once the queue has shown it can commit; raises QueueUnavailable otherwise."""
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

    def store_dead(self, letters: Iterable[DeadLetter]) -> int:
        """Store dead letters (the worker's); returns how many were new."""
        ...

    def dead_letters(self, *, replayed: bool = False) -> list[DeadLetter]:
        """Dead letters waiting (or, with `replayed`, those already replayed), oldest first."""
        ...

    def dead_count(self) -> int:
        """Dead letters waiting to be replayed."""
        ...

    def replay_dead(self, key: str, event_id: str) -> bool:
        """Put dead letter `key` back into the queue as `event_id` (even if that id was seen) and mark
        it replayed, in one step; False when no such dead letter is waiting."""
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
