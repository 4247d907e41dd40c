"""Durable webhook queues: the protocol (`base`), SQLite (`sqlite`), Redis Streams (`redis`).

`open_queue` picks the backend from a URL: `sqlite:///abs/path.sqlite3` (or a plain path) or
`redis://host:port/db` (`rediss://`, `unix://` too).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ...errors import ConfigError
from ...settings import load_settings
from .base import (
    DEFAULT_DEDUP_TTL_S,
    DEFAULT_VISIBILITY_TIMEOUT_S,
    DeadLetter,
    EventRejected,
    QueuedEvent,
    QueueUnavailable,
    WebhookQueue,
    default_queue_path,
)
from .redis import RedisQueue
from .sqlite import SqliteQueue

__all__ = ["DeadLetter", "EventRejected", "QueueUnavailable", "QueuedEvent", "RedisQueue", "SqliteQueue",
           "WebhookQueue", "default_queue_path", "open_queue", "sqlite_path"]


def _query_float(query: dict[str, list[str]], name: str, default: float) -> float:
    if name not in query:
        return default
    try:
        return float(query[name][-1])
    except ValueError:
        raise ConfigError(f"queue URL parameter {name}={query[name][-1]!r} is not a number") from None


def sqlite_path(url: str | Path) -> Path | None:
    """The SQLite file a queue URL or path names; None for a Redis URL."""
    text = str(url)
    parts = urlsplit(text)
    if parts.scheme in ("redis", "rediss", "unix"):
        return None
    if parts.scheme == "sqlite":
        # sqlite:///abs/path and sqlite:////abs/path -> /abs/path ; sqlite://relative/path -> relative/path
        if parts.netloc:
            return Path(parts.netloc + parts.path)
        return Path("/" + parts.path.lstrip("/"))
    if parts.scheme in ("", "file") or len(parts.scheme) == 1:  # plain path (or a Windows drive)
        return Path(text.split("?", 1)[0].removeprefix("file://"))
    raise ConfigError(
        f"unsupported queue URL scheme {parts.scheme!r}; use sqlite:///path/to/queue.sqlite3 "
        "or redis://host:6379/0"
    )


def open_queue(url: str | Path | None = None, *, data_dir: Path | None = None,
               redis_url: str | None = None) -> WebhookQueue:
    """Open the queue named by `url`; None means `redis_url` if given, else SQLite under `data_dir`.

    SQLite URL options: `?visibility_timeout=SECONDS&synchronous=full|normal`.
    Redis URL options: `?prefix=NAME&group=NAME&dedup_ttl=SECONDS&claim_idle_ms=MS`.
    """
    if url is None:
        url = redis_url or default_queue_path(data_dir or load_settings().data_dir)
    text = str(url)
    query = parse_qs(urlsplit(text).query)
    path = sqlite_path(text)
    if path is None:
        return RedisQueue(
            text.split("?", 1)[0],
            prefix=query.get("prefix", ["cio-mavera:webhooks"])[-1],
            group=query.get("group", ["workers"])[-1],
            dedup_ttl_s=int(_query_float(query, "dedup_ttl", DEFAULT_DEDUP_TTL_S)),
            claim_idle_ms=int(_query_float(query, "claim_idle_ms", DEFAULT_VISIBILITY_TIMEOUT_S * 1000)),
        )
    synchronous = query.get("synchronous", ["full"])[-1].lower()
    if synchronous not in ("full", "normal"):
        raise ConfigError(f"queue URL parameter synchronous={synchronous!r}; use full or normal")
    return SqliteQueue(
        path,
        visibility_timeout_s=_query_float(query, "visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT_S),
        synchronous=synchronous,
    )
