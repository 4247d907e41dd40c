"""SQLite (WAL) webhook queue with group commit: one writer thread batches inserts from many requests.

Each `enqueue` hands its row to the writer thread and awaits a future that resolves only after the
transaction holding the row has committed, so a 2xx is never sent for an event that a crash could
lose. While one commit is in flight the next requests pile up and go into the following
transaction together, which keeps throughput up under concurrency without any artificial delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue as _queue
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from .base import DEFAULT_DEDUP_TTL_S, DEFAULT_VISIBILITY_TIMEOUT_S, QueuedEvent, QueueUnavailable

MAX_BATCH = 512
_STOP = object()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id    TEXT PRIMARY KEY,
    payload     BLOB NOT NULL,
    received_at REAL NOT NULL,
    visible_at  REAL NOT NULL DEFAULT 0,
    claimed_by  TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    acked_at    REAL
);
CREATE INDEX IF NOT EXISTS events_ready ON events(visible_at) WHERE acked_at IS NULL;
"""


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL fsyncs the WAL on every commit: an acknowledged event survives power loss, not only a crash.
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _resolve(items: list[tuple[asyncio.Future, object, bool]]) -> None:
    for future, value, is_error in items:
        if future.done():  # the request was cancelled (client went away)
            continue
        if is_error:
            future.set_exception(value)  # type: ignore[arg-type]
        else:
            future.set_result(value)


class SqliteQueue:
    """The default queue: one SQLite file in WAL mode, `event_id` as primary key for deduplication."""

    backend = "sqlite"

    def __init__(self, path: str | Path, *, visibility_timeout_s: float = DEFAULT_VISIBILITY_TIMEOUT_S,
                 synchronous: str = "full", max_batch: int = MAX_BATCH) -> None:
        self.path = Path(path)
        self.visibility_timeout_s = visibility_timeout_s
        self._synchronous = synchronous
        self._max_batch = max_batch
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = _connect(self.path, synchronous)
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise QueueUnavailable(f"cannot open the SQLite queue at {self.path}: {exc}") from None
        self._lock = threading.Lock()
        self._inbox: _queue.SimpleQueue = _queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        self.commits = 0  # number of group commits, for the bench and tests

    def describe(self) -> str:
        return f"sqlite:///{self.path.resolve().as_posix().lstrip('/')}"

    # -- producer side ---------------------------------------------------------------------------

    def _ensure_writer(self) -> None:
        if self._writer is not None:
            return
        with self._writer_lock:
            if self._writer is None:
                thread = threading.Thread(target=self._write_loop, name="sqlite-queue-writer", daemon=True)
                thread.start()
                self._writer = thread

    async def enqueue(self, event_id: str, payload: bytes, received_at: float) -> bool:
        """Insert the event; returns after its group commit (False when `event_id` was seen before)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._ensure_writer()
        self._inbox.put((event_id, payload, received_at, future, loop))
        return await future

    def _write_loop(self) -> None:
        conn = _connect(self.path, self._synchronous)
        try:
            while True:
                item = self._inbox.get()
                if item is _STOP:
                    return
                batch = [item]
                stop = False
                while len(batch) < self._max_batch:
                    try:
                        more = self._inbox.get_nowait()
                    except _queue.Empty:
                        break
                    if more is _STOP:
                        stop = True
                        break
                    batch.append(more)
                self._commit_batch(conn, batch)
                if stop:
                    return
        finally:
            conn.close()

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[tuple]) -> None:
        outcomes: list[tuple[object, bool]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for event_id, payload, received_at, _future, _loop in batch:
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO events (event_id, payload, received_at) VALUES (?, ?, ?)",
                    (event_id, payload, received_at),
                )
                outcomes.append((cursor.rowcount == 1, False))
            conn.execute("COMMIT")
            self.commits += 1
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            error = QueueUnavailable(f"could not commit to the SQLite queue at {self.path}: {exc}")
            outcomes = [(error, True)] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for (_e, _p, _r, future, loop), (value, is_error) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, value, is_error))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed; nobody is waiting
                loop.call_soon_threadsafe(_resolve, items)

    # -- consumer side ---------------------------------------------------------------------------

    def claim(self, consumer: str, max_items: int = 100, block_ms: int = 0) -> list[QueuedEvent]:
        """Claim up to `max_items` ready events for `visibility_timeout_s`, oldest first."""
        deadline = time.monotonic() + block_ms / 1000
        while True:
            items = self._claim_now(consumer, max_items)
            if items or time.monotonic() >= deadline:
                return items
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def _claim_now(self, consumer: str, max_items: int) -> list[QueuedEvent]:
        now = time.time()
        try:
            with self._lock:
                rows = self._conn.execute(
                    "UPDATE events SET visible_at = ?, claimed_by = ?, attempts = attempts + 1 "
                    "WHERE rowid IN (SELECT rowid FROM events WHERE acked_at IS NULL AND visible_at <= ? "
                    "ORDER BY rowid LIMIT ?) "
                    "RETURNING rowid, event_id, payload, received_at, attempts",
                    (now + self.visibility_timeout_s, consumer, now, max_items),
                ).fetchall()
        except sqlite3.Error as exc:
            raise QueueUnavailable(f"could not claim from the SQLite queue at {self.path}: {exc}") from None
        rows.sort()
        return [
            QueuedEvent(id=event_id, event_id=event_id, payload=bytes(payload),
                        received_at=received_at, redelivered=attempts > 1)
            for _rowid, event_id, payload, received_at, attempts in rows
        ]

    def ack(self, ids: Iterable[str]) -> int:
        """Mark events done; the row stays (for deduplication) until `prune` removes it."""
        ids = list(ids)
        if not ids:
            return 0
        now = time.time()
        acked = 0
        try:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                for start in range(0, len(ids), 500):
                    chunk = ids[start:start + 500]
                    marks = ",".join("?" * len(chunk))
                    acked += self._conn.execute(
                        f"UPDATE events SET acked_at = ? WHERE acked_at IS NULL AND event_id IN ({marks})",
                        (now, *chunk),
                    ).rowcount
                self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise QueueUnavailable(f"could not ack in the SQLite queue at {self.path}: {exc}") from None
        return acked

    def depth(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT count(*) FROM events WHERE acked_at IS NULL").fetchone()[0]

    def total(self) -> int:
        """Every event stored, acked or not (used by tests and the bench to check nothing was lost)."""
        with self._lock:
            return self._conn.execute("SELECT count(*) FROM events").fetchone()[0]

    def event_ids(self) -> set[str]:
        """Every stored `event_id` (tests and the bench)."""
        with self._lock:
            return {row[0] for row in self._conn.execute("SELECT event_id FROM events")}

    def prune(self, older_than_s: float = DEFAULT_DEDUP_TTL_S) -> int:
        """Delete acked rows older than `older_than_s` (their ids stop counting as duplicates)."""
        with self._lock:
            return self._conn.execute(
                "DELETE FROM events WHERE acked_at IS NOT NULL AND acked_at < ?",
                (time.time() - older_than_s,),
            ).rowcount

    # -- lifecycle -------------------------------------------------------------------------------

    def _stop_writer(self) -> None:
        with self._writer_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            self._inbox.put(_STOP)
            writer.join()

    async def aclose(self) -> None:
        await asyncio.to_thread(self._stop_writer)

    def close(self) -> None:
        self._stop_writer()
        with self._lock:
            self._conn.close()
