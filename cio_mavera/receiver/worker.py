"""The queue worker's first stage: drain the queue into the parquet event log, exactly once per event_id.

Delivery from the queue is at-least-once, so the log is made idempotent here: a batch is written
(temporary file, fsync, atomic rename) before it is acked, and ids already in the log are skipped.
A worker killed anywhere in between leaves either no file (the batch is redelivered and written) or
a complete file (the batch is redelivered and skipped). Layout: `<events>/day=YYYY-MM-DD/part-*.parquet`
(hive-style, by the event's own timestamp in UTC), one row per unique `event_id`; small parts are
compacted as a day fills up (`cio_mavera.eventlog.layout`).

One bad event never holds back the others: each is validated and normalised on its own, and one the
log cannot store is quarantined as a dead letter (stored before the batch is acked, once per body)
while the rest of its batch is written.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ..customerio.webhooks import MalformedWebhook, parse_event
from ..eventlog.layout import (
    COMPACT_AFTER_FILES,
    SCHEMA,
    compact_day,
    dataset,
    day_of,
    part_files,
    read_ids,
    recover,
    write_part,
)
from .queues import DeadLetter, QueuedEvent, QueueUnavailable, WebhookQueue

log = logging.getLogger("cio_mavera.worker")

def default_consumer() -> str:
    """A consumer name unique to this process."""
    return f"{socket.gethostname()}-{os.getpid()}"


class EventLog:
    """The parquet event log under one directory (layout in `cio_mavera.eventlog.layout`).

    Duplicates are found per day: an event's partition follows from its own timestamp (a retried
    webhook carries the same one), so only the event_ids of the days a batch touches are read, and
    at most `cached_days` days of ids are kept in memory, whatever the log's age. Every
    `compact_after` parts written to one day, that day's small parts are merged (0: never).
    """

    def __init__(self, root: str | Path, *, compact_after: int = COMPACT_AFTER_FILES,
                 cached_days: int = 64) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.compact_after = compact_after
        self.cached_days = cached_days
        self._seen: OrderedDict[str, set[str]] = OrderedDict()
        self._written: dict[str, int] = {}
        self._recovered = False

    def seen_on(self, day: str) -> set[str]:
        """The event_ids already in one day's partition (read once, then kept up to date)."""
        ids = self._seen.get(day)
        if ids is None:
            if not self._recovered:
                recover(self.root)
                self._recovered = True
            ids = read_ids(self.root, day)
            self._seen[day] = ids
            while len(self._seen) > self.cached_days:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(day)
        return ids

    def append(self, items: Iterable[QueuedEvent], dead: list[DeadLetter] | None = None) -> int:
        """Write the events not yet in the log; returns how many rows were added.

        Events that cannot be stored go to `dead` as dead letters (logged and skipped without it).
        """
        dead = [] if dead is None else dead
        by_day: dict[str, dict[str, tuple[QueuedEvent, dict]]] = {}
        for item in items:
            try:
                row = _row(item)
                day = day_of(row["timestamp"] if row["timestamp"] is not None else item.received_at)
            except MalformedWebhook as exc:
                dead.append(_dead(item, exc.code, str(exc)))
                continue
            except Exception as exc:  # a shape nobody foresaw: quarantine it, keep the batch going
                dead.append(_dead(item, "not_storable", f"{type(exc).__name__}: {exc}"))
                continue
            pending = by_day.setdefault(day, {})
            if item.event_id in pending or item.event_id in self.seen_on(day):
                continue
            pending[item.event_id] = (item, row)
        written = 0
        for day, pairs in sorted(by_day.items()):
            table = _table(list(pairs.values()), dead)
            if table.num_rows:
                self._write(day, table)
                self.seen_on(day).update(table.column("event_id").to_pylist())
                written += table.num_rows
        for letter in dead:
            log.warning("quarantined queued event %s (%s): %s", letter.event_id, letter.reason, letter.detail)
        return written

    def _write(self, day: str, table: pa.Table) -> None:
        # Synced before this returns, so before the batch is acked. The temporary name is
        # dot-prefixed: parquet readers skip it if a crash leaves it behind.
        write_part(self.root, day, table)
        self._written[day] = self._written.get(day, 0) + 1
        if self.compact_after and self._written[day] >= self.compact_after:
            self._written[day] = 0
            done = compact_day(self.root, day)
            log.info("compacted %s: %d parts (%d rows) into %d", day, done.merged_files, done.rows,
                     done.written_files)


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
    """The whole event log as a DataFrame (with a `day` column from the partition); small logs only.

    Job 3 reads through `cio_mavera.eventlog.query` (DuckDB, a time range, export rows a webhook
    also reported left out); this is the raw log, for tests and small tools.
    """
    root = Path(event_log_dir)
    if not part_files(root):
        return pd.DataFrame({name: pd.Series(dtype=object) for name in [*SCHEMA.names, "day"]})
    return dataset(root).to_table().to_pandas()
