"""SQLite (WAL) webhook queue with group commit: one writer thread batches inserts from many requests.

Each `enqueue` hands its row to the writer thread and awaits a future that resolves only after the
transaction holding the row has committed, so a 2xx is never sent for an event that a crash could
lose. While one commit is in flight the next requests pile up and go into the following
transaction together, which keeps throughput up under concurrency without any artificial delay.

The writer never dies silently: a row SQLite refuses fails that request only (EventRejected), a
failed commit fails its batch (QueueUnavailable), anything unexpected is logged and fails its batch,
and a writer that could not start is started again by the next request. `ping` commits through the
writer, so `/healthz` reports whether events can be committed right now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue as _queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from .base import (
    DEFAULT_DEDUP_TTL_S,
    DEFAULT_VISIBILITY_TIMEOUT_S,
    DeadLetter,
    EventRejected,
    QueuedEvent,
    QueueUnavailable,
)

log = logging.getLogger("cio_mavera.receiver")

MAX_BATCH = 512
PING_TIMEOUT_S = 5.0
_STOP = object()
# What the writer is asked to do with one inbox item.
_EVENT, _DEAD, _PROBE = 0, 1, 2
# Errors one row can cause while the rest of its transaction goes on (e.g. an id SQLite cannot encode).
_ROW_ERRORS = (ValueError, TypeError, OverflowError, sqlite3.InterfaceError, sqlite3.DataError,
               sqlite3.IntegrityError)

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
CREATE TABLE IF NOT EXISTS dead_letters (
    key         TEXT PRIMARY KEY,
    payload     BLOB NOT NULL,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    stage       TEXT NOT NULL,
    event_id    TEXT,
    received_at REAL NOT NULL,
    dead_at     REAL NOT NULL,
    replayed_at REAL
);
CREATE INDEX IF NOT EXISTS dead_waiting ON dead_letters(dead_at) WHERE replayed_at IS NULL;
"""

_INSERT_EVENT = "INSERT OR IGNORE INTO events (event_id, payload, received_at) VALUES (?, ?, ?)"
# A body already waiting is stored once; one that was replayed and failed again waits again.
_INSERT_DEAD = (
    "INSERT INTO dead_letters (key, payload, reason, detail, stage, event_id, received_at, dead_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET reason = excluded.reason, "
    "detail = excluded.detail, stage = excluded.stage, event_id = excluded.event_id, "
    "dead_at = excluded.dead_at, replayed_at = NULL WHERE dead_letters.replayed_at IS NOT NULL"
)
_DEAD_COLUMNS = "key, payload, reason, detail, stage, received_at, dead_at, event_id, replayed_at"


def _dead_row(letter: DeadLetter) -> tuple:
    return (letter.key, letter.payload, letter.reason, letter.detail, letter.stage, letter.event_id,
            letter.received_at, letter.dead_at)


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL fsyncs the WAL on every commit: an acknowledged event survives power loss, not only a crash.
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _deliver(batch: list[tuple], outcomes: list[tuple[object, bool]]) -> None:
    """Hand each item's outcome to the event loop that awaits it."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for (_kind, _params, future, loop), (value, is_error) in zip(batch, outcomes, strict=True):
        by_loop.setdefault(loop, []).append((future, value, is_error))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop has closed; nobody is waiting
            loop.call_soon_threadsafe(_resolve, items)


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
        self._writer_failed = False
        self.commits = 0  # number of group commits, for the bench and tests
        self.writer_restarts = 0
        self.last_error: str | None = None  # why the last commit failed; None once one succeeds

    def describe(self) -> str:
        return f"sqlite:///{self.path.resolve().as_posix().lstrip('/')}"

    # -- producer side ---------------------------------------------------------------------------

    def _ensure_writer(self) -> None:
        writer = self._writer
        if writer is not None and writer.is_alive():
            return
        with self._writer_lock:
            if self._writer is not None and self._writer.is_alive():
                return
            if self._writer is not None or self._writer_failed:
                self.writer_restarts += 1
                log.error("the SQLite queue writer for %s had stopped; starting it again", self.path)
            self._writer_failed = False
            thread = threading.Thread(target=self._write_loop, name="sqlite-queue-writer", daemon=True)
            thread.start()
            self._writer = thread

    async def _submit(self, kind: int, params: tuple | None) -> object:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        # Put first, then make sure a writer runs: a writer that is failing clears itself before it
        # fails what is in the inbox, so this item is either failed by it or taken by a new writer.
        self._inbox.put((kind, params, future, loop))
        self._ensure_writer()
        return await future

    async def enqueue(self, event_id: str, payload: bytes, received_at: float) -> bool:
        """Insert the event; returns after its group commit (False when `event_id` was seen before)."""
        return bool(await self._submit(_EVENT, (event_id, payload, received_at)))

    async def enqueue_dead(self, letter: DeadLetter) -> bool:
        """Store a dead letter in the next group commit; False when that body is already waiting."""
        return bool(await self._submit(_DEAD, _dead_row(letter)))

    async def ping(self, timeout_s: float = PING_TIMEOUT_S) -> None:
        """An empty write transaction through the writer thread (starting it if it had stopped)."""
        try:
            await asyncio.wait_for(self._submit(_PROBE, None), timeout_s)
        except TimeoutError:
            raise QueueUnavailable(f"the SQLite queue writer for {self.path} did not commit within "
                                   f"{timeout_s:g} s") from None

    def _next_batch(self) -> tuple[list[tuple], bool]:
        item = self._inbox.get()
        if item is _STOP:
            return [], True
        batch = [item]
        while len(batch) < self._max_batch:
            try:
                more = self._inbox.get_nowait()
            except _queue.Empty:
                break
            if more is _STOP:
                return batch, True
            batch.append(more)
        return batch, False

    def _write_loop(self) -> None:
        try:
            conn = _connect(self.path, self._synchronous)
        except Exception as exc:
            self._fail_writer(f"cannot open the SQLite queue at {self.path}: {exc}")
            return
        try:
            while True:
                batch, stop = self._next_batch()
                if batch:
                    self._write_batch(conn, batch)
                if stop:
                    return
        except Exception as exc:  # nothing above should raise; if it does, never leave requests hanging
            log.exception("the SQLite queue writer for %s failed", self.path)
            self._fail_writer(f"the SQLite queue writer failed: {type(exc).__name__}")
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _write_batch(self, conn: sqlite3.Connection, batch: list[tuple]) -> None:
        try:
            outcomes = self._commit_batch(conn, batch)
        except Exception as exc:  # a bug or an error nobody foresaw: fail this batch, keep writing
            log.exception("the SQLite queue writer for %s could not commit a batch of %d", self.path, len(batch))
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self.last_error = f"{type(exc).__name__}: {exc}"
            error = QueueUnavailable(f"could not commit to the SQLite queue at {self.path}: {type(exc).__name__}")
            outcomes = [(error, True)] * len(batch)
        _deliver(batch, outcomes)

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[tuple]) -> list[tuple[object, bool]]:
        outcomes: list[tuple[object, bool]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for kind, params, _future, _loop in batch:
                if kind == _PROBE:
                    outcomes.append((True, False))
                    continue
                try:
                    cursor = conn.execute(_INSERT_EVENT if kind == _EVENT else _INSERT_DEAD, params)
                except _ROW_ERRORS as exc:  # this row only; the statement left the transaction intact
                    outcomes.append((EventRejected(f"the SQLite queue cannot store this event "
                                                   f"({type(exc).__name__}: {exc})"), True))
                    continue
                outcomes.append((cursor.rowcount == 1, False))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self.last_error = str(exc)
            error = QueueUnavailable(f"could not commit to the SQLite queue at {self.path}: {exc}")
            return [(error, True)] * len(batch)
        self.commits += 1
        self.last_error = None
        return outcomes

    def _fail_writer(self, reason: str) -> None:
        """This writer is ending: clear it, then fail everything waiting (the next request restarts one)."""
        with self._writer_lock:
            if self._writer is threading.current_thread():
                self._writer = None
            self._writer_failed = True
            self.last_error = reason
            pending = []
            while True:
                try:
                    item = self._inbox.get_nowait()
                except _queue.Empty:
                    break
                if item is not _STOP:
                    pending.append(item)
        log.error("%s; failing %d waiting request(s)", reason, len(pending))
        _deliver(pending, [(QueueUnavailable(reason), True)] * len(pending))

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

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction on the consumer connection; sqlite3 errors become QueueUnavailable."""
        try:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                    self._conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise QueueUnavailable(f"could not {what} in the SQLite queue at {self.path}: {exc}") from None

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            with self._lock:
                return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise QueueUnavailable(f"could not read the SQLite queue at {self.path}: {exc}") from None

    def ack(self, ids: Iterable[str]) -> int:
        """Mark events done; the row stays (for deduplication) until `prune` removes it."""
        ids = list(ids)
        if not ids:
            return 0
        now = time.time()
        acked = 0
        with self._writing("ack") as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                acked += conn.execute(
                    f"UPDATE events SET acked_at = ? WHERE acked_at IS NULL AND event_id IN ({marks})",
                    (now, *chunk),
                ).rowcount
        return acked

    def depth(self) -> int:
        return self._read("SELECT count(*) FROM events WHERE acked_at IS NULL")[0][0]

    # -- dead letters ----------------------------------------------------------------------------

    def store_dead(self, letters: Iterable[DeadLetter]) -> int:
        """Store the worker's dead letters in one transaction; returns how many were new."""
        rows = [_dead_row(letter) for letter in letters]
        if not rows:
            return 0
        with self._writing("store dead letters") as conn:
            return sum(conn.execute(_INSERT_DEAD, row).rowcount for row in rows)

    def dead_letters(self, *, replayed: bool = False) -> list[DeadLetter]:
        """Dead letters waiting (or already replayed), oldest first."""
        where = "replayed_at IS NOT NULL" if replayed else "replayed_at IS NULL"
        rows = self._read(f"SELECT {_DEAD_COLUMNS} FROM dead_letters WHERE {where} ORDER BY dead_at, key")
        return [DeadLetter(key, bytes(payload), *rest) for key, payload, *rest in rows]

    def dead_count(self) -> int:
        return self._read("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL")[0][0]

    def replay_dead(self, key: str, event_id: str) -> bool:
        """Queue the dead letter's body again as `event_id` (waiting, unclaimed) and mark it replayed."""
        with self._writing("replay a dead letter") as conn:
            found = conn.execute("SELECT payload, received_at FROM dead_letters "
                                 "WHERE key = ? AND replayed_at IS NULL", (key,)).fetchone()
            if found is None:
                return False
            conn.execute(
                "INSERT INTO events (event_id, payload, received_at) VALUES (?, ?, ?) "
                "ON CONFLICT(event_id) DO UPDATE SET payload = excluded.payload, "
                "received_at = excluded.received_at, visible_at = 0, claimed_by = NULL, acked_at = NULL",
                (event_id, *found),
            )
            conn.execute("UPDATE dead_letters SET replayed_at = ? WHERE key = ?", (time.time(), key))
        return True

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
