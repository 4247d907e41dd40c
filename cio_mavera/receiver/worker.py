"""The queue worker's first stage: drain the queue into the parquet event log, exactly once per event_id.

Delivery from the queue is at-least-once, so the log is made idempotent here: a batch is written
(temporary file, fsync, atomic rename) before it is acked, and ids already in the log are skipped.
A worker killed anywhere in between leaves either no file (the batch is redelivered and written) or
a complete file (the batch is redelivered and skipped). Layout: `<events>/day=YYYY-MM-DD/part-*.parquet`
(hive-style, by the event's own timestamp in UTC), one row per unique `event_id`.

One bad event never holds back the others: each is validated and normalised on its own, and one the
log cannot store is quarantined as a dead letter (stored before the batch is acked, once per body)
while the rest of its batch is written.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..customerio.webhooks import MalformedWebhook, parse_event
from ..files import atomic_path
from .queues import DeadLetter, QueuedEvent, QueueUnavailable, WebhookQueue

log = logging.getLogger("cio_mavera.worker")

SCHEMA = pa.schema([
    ("event_id", pa.string()),
    ("object_type", pa.string()),
    ("metric", pa.string()),
    ("timestamp", pa.int64()),
    ("received_at", pa.float64()),
    ("campaign_id", pa.int64()),
    ("action_id", pa.int64()),
    ("broadcast_id", pa.int64()),
    ("newsletter_id", pa.int64()),
    ("delivery_id", pa.string()),
    ("cio_id", pa.string()),
    ("customer_id", pa.string()),
    ("known", pa.bool_()),
    ("payload", pa.string()),  # the raw envelope, unknown fields included
])


def default_consumer() -> str:
    """A consumer name unique to this process."""
    return f"{socket.gethostname()}-{os.getpid()}"


class EventLog:
    """The parquet event log under one directory; remembers which event_ids it holds."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._seen: set[str] | None = None

    def seen(self) -> set[str]:
        """Every event_id already in the log (read once, then kept up to date)."""
        if self._seen is None:
            files = sorted(str(p) for p in self.root.glob("day=*/part-*.parquet"))
            if files:
                table = ds.dataset(files, format="parquet").to_table(columns=["event_id"])
                self._seen = set(table.column("event_id").to_pylist())
            else:
                self._seen = set()
        return self._seen

    def append(self, items: Iterable[QueuedEvent], dead: list[DeadLetter] | None = None) -> int:
        """Write the events not yet in the log; returns how many rows were added.

        Events that cannot be stored go to `dead` as dead letters (logged and skipped without it).
        """
        dead = [] if dead is None else dead
        seen = self.seen()
        by_day: dict[str, dict[str, tuple[QueuedEvent, dict]]] = {}
        batch_ids: set[str] = set()
        for item in items:
            if item.event_id in seen or item.event_id in batch_ids:
                continue
            batch_ids.add(item.event_id)
            try:
                row = _row(item)
                day = _day(row["timestamp"] if row["timestamp"] is not None else item.received_at)
            except MalformedWebhook as exc:
                dead.append(_dead(item, exc.code, str(exc)))
                continue
            except Exception as exc:  # a shape nobody foresaw: quarantine it, keep the batch going
                dead.append(_dead(item, "not_storable", f"{type(exc).__name__}: {exc}"))
                continue
            by_day.setdefault(day, {})[item.event_id] = (item, row)
        written = 0
        for day, pairs in sorted(by_day.items()):
            table = _table(list(pairs.values()), dead)
            if table.num_rows:
                self._write(day, table)
                seen.update(table.column("event_id").to_pylist())
                written += table.num_rows
        for letter in dead:
            log.warning("quarantined queued event %s (%s): %s", letter.event_id, letter.reason, letter.detail)
        return written

    def _write(self, day: str, table: pa.Table) -> None:
        folder = self.root / f"day={day}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
        # Synced before this returns, so before the batch is acked. The temporary name is
        # dot-prefixed: parquet readers skip it if a crash leaves it behind.
        with atomic_path(folder / name) as tmp:
            pq.write_table(table, tmp)


def _day(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d")


def _dead(item: QueuedEvent, reason: str, detail: str) -> DeadLetter:
    return DeadLetter.of(item.payload, reason, detail, stage="worker", received_at=item.received_at,
                         event_id=item.event_id)


def _table(pairs: list[tuple[QueuedEvent, dict]], dead: list[DeadLetter]) -> pa.Table:
    """The rows as one table; if that fails, row by row, quarantining the rows that cannot convert."""
    try:
        return pa.Table.from_pylist([row for _item, row in pairs], schema=SCHEMA)
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        pass
    tables = []
    for item, row in pairs:
        try:
            tables.append(pa.Table.from_pylist([row], schema=SCHEMA))
        except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
            dead.append(_dead(item, "not_storable", f"{type(exc).__name__}: {exc}"))
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


def _row(item: QueuedEvent) -> dict:
    """The log row for a queued body; raises MalformedWebhook when the body is not a usable event."""
    event = parse_event(item.payload)
    if event.event_id != item.event_id:  # only a foreign writer does this; dedup keys on the queue's id
        raise MalformedWebhook(f"queued as {item.event_id!r} but the body's event_id is {event.event_id!r}",
                               "bad_field")
    return {
        "event_id": event.event_id,
        "object_type": event.object_type,
        "metric": event.metric,
        "timestamp": event.timestamp,
        "received_at": item.received_at,
        "campaign_id": event.campaign_id,
        "action_id": event.action_id,
        "broadcast_id": event.broadcast_id,
        "newsletter_id": event.newsletter_id,
        "delivery_id": event.delivery_id,
        "cio_id": event.cio_id,
        "customer_id": event.customer_id,
        "known": event.is_known,
        "payload": item.payload.decode("utf-8"),  # parse_event proved it strict UTF-8
    }


def process_batch(queue: WebhookQueue, log_: EventLog, items: list[QueuedEvent]) -> int:
    """Append a claimed batch to the log, store its dead letters, then ack it; returns rows added."""
    dead: list[DeadLetter] = []
    written = log_.append(items, dead)
    queue.store_dead(dead)
    queue.ack([item.id for item in items])
    return written


def drain_once(queue: WebhookQueue, event_log_dir: str | Path | EventLog, *, consumer: str = "worker",
               batch: int = 500) -> int:
    """Move everything claimable now into the event log; returns how many new rows were written."""
    log_ = event_log_dir if isinstance(event_log_dir, EventLog) else EventLog(event_log_dir)
    total = 0
    while True:
        items = queue.claim(consumer, max_items=batch, block_ms=0)
        if not items:
            return total
        total += process_batch(queue, log_, items)


def run_worker(queue: WebhookQueue, event_log_dir: str | Path, *, consumer: str, batch: int = 500,
               once: bool = False, block_ms: int = 1000,
               after_batch: Callable[[int], object] | None = None,
               sleep: Callable[[float], object] = time.sleep) -> int:
    """Drain forever (or once); returns rows written. Stop it with Ctrl-C or SIGTERM.

    `after_batch(rows_written)` runs after every claim, including empty ones, once the batch is
    durably in the log and acked (so a slow or failing hook never delays or repeats ingestion);
    job 3 uses it to evaluate triggers and request research.
    """
    log_ = EventLog(event_log_dir)
    if once:
        written = drain_once(queue, log_, consumer=consumer, batch=batch)
        if after_batch is not None:
            after_batch(written)
        return written
    total = 0
    pause = 0.0
    try:
        while True:
            try:
                items = queue.claim(consumer, max_items=batch, block_ms=block_ms)
                written = process_batch(queue, log_, items) if items else 0
            except QueueUnavailable as exc:  # the queue is down: wait and try again, never exit
                pause = min(30.0, max(1.0, pause * 2))
                log.error("queue unavailable, retrying in %g s: %s", pause, exc)
                sleep(pause)
                continue
            pause = 0.0
            total += written
            if after_batch is not None:
                after_batch(written)
    except KeyboardInterrupt:
        return total


def read_event_log(event_log_dir: str | Path) -> pd.DataFrame:
    """The whole event log as a DataFrame (with a `day` column from the partition)."""
    root = Path(event_log_dir)
    files = sorted(str(p) for p in root.glob("day=*/part-*.parquet"))
    if not files:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in [*SCHEMA.names, "day"]})
    table = ds.dataset(files, format="parquet", partitioning="hive",
                       partition_base_dir=str(root)).to_table()
    return table.to_pandas()
