"""The webhook queue protocol shared by the receiver (producer) and the worker (consumer).

Receivers call `await queue.enqueue(...)`, which returns only once the event is durable, and answer
2xx after it. Workers call `claim` / `ack` (blocking, synchronous): delivery is at-least-once, and
items a consumer claimed but never acked become claimable again after a visibility timeout (SQLite)
or an idle time (Redis Streams, XAUTOCLAIM), so a worker must be idempotent on `event_id`.

`open_queue` picks the backend from a URL: `sqlite:///abs/path.sqlite3` (or a plain path) or
`redis://host:port/db` (`rediss://`, `unix://` too).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

from ..errors import CioMaveraError, ConfigError

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


def _query_float(query: dict[str, list[str]], name: str, default: float) -> float:
    if name not in query:
        return default
    try:
        return float(query[name][-1])
    except ValueError:
        raise ConfigError(f"queue URL parameter {name}={query[name][-1]!r} is not a number") from None


def open_queue(url: str | Path | None = None, *, data_dir: Path | None = None,
               redis_url: str | None = None) -> WebhookQueue:
    """Open the queue named by `url`; None means `redis_url` if given, else SQLite under `data_dir`.

    SQLite URL options: `?visibility_timeout=SECONDS&synchronous=full|normal`.
    Redis URL options: `?prefix=NAME&group=NAME&dedup_ttl=SECONDS&claim_idle_ms=MS`.
    """
    if url is None:
        if redis_url:
            url = redis_url
        else:
            if data_dir is None:
                from ..settings import load_settings

                data_dir = load_settings().data_dir
            url = default_queue_path(data_dir)
    text = str(url)
    parts = urlsplit(text)
    query = parse_qs(parts.query)
    if parts.scheme in ("redis", "rediss", "unix"):
        from .redis_queue import RedisQueue

        base = text.split("?", 1)[0]
        return RedisQueue(
            base,
            prefix=query.get("prefix", ["cio-mavera:webhooks"])[-1],
            group=query.get("group", ["workers"])[-1],
            dedup_ttl_s=int(_query_float(query, "dedup_ttl", DEFAULT_DEDUP_TTL_S)),
            claim_idle_ms=int(_query_float(query, "claim_idle_ms", DEFAULT_VISIBILITY_TIMEOUT_S * 1000)),
        )
    if parts.scheme == "sqlite":
        # sqlite:///abs/path and sqlite:////abs/path -> /abs/path ; sqlite://relative/path -> relative/path
        if parts.netloc:
            path = Path(parts.netloc + parts.path)
        else:
            path = Path("/" + parts.path.lstrip("/"))
    elif parts.scheme in ("", "file") or len(parts.scheme) == 1:  # plain path (or a Windows drive)
        path = Path(text.split("?", 1)[0].removeprefix("file://"))
    else:
        raise ConfigError(
            f"unsupported queue URL scheme {parts.scheme!r}; use sqlite:///path/to/queue.sqlite3 "
            "or redis://host:6379/0"
        )
    from .sqlite_queue import SqliteQueue

    synchronous = query.get("synchronous", ["full"])[-1].lower()
    if synchronous not in ("full", "normal"):
        raise ConfigError(f"queue URL parameter synchronous={synchronous!r}; use full or normal")
    return SqliteQueue(
        path,
        visibility_timeout_s=_query_float(query, "visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT_S),
        synchronous=synchronous,
    )
