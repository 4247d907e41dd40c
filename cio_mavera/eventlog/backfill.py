"""Delivery history for job 3: Customer.io deliveries exports backfill the event log before the receiver.

The receiver only sees what happens after it starts, so a first retention report would have no
baseline. A deliveries export (reference §3.9, one per campaign and per newsletter) lists each delivery with the time
it reached each metric (sent, delivered, opened, ..., unsubscribed, spammed); `backfill_deliveries`
turns every reached metric into one log row shaped like the webhook Customer.io would have sent,
for the period `[until - days, until)`. `until` defaults to the earliest webhook in the log (the
receiver's start), or now when the log is empty, so exports and webhooks cover different times.

Identity: a delivery event is (delivery_id, metric). A backfilled row's event_id is
`export:<delivery_id>:<metric>`, so a second backfill over the same period adds nothing; a pair
already reported by a webhook is not written; and a pair a webhook reports later is left out of
every read (`query`: the webhook row wins). So a delivery seen both in an export and as a webhook
counts once. The export has one time per metric (the first open, say), so with full-resolution
webhooks only the webhooks carry repeats; the backfilled period has first occurrences only, which is
what job 3 counts (opt-outs and deliveries happen once per delivery).

Each export goes through the parquet cache first (`export_into_cache`: streamed, checked, resumable),
then into the log part by part, so memory stays bounded by one part. A backfill is recorded in
`<events>/_backfill.json` (written before the first row, so readers know to deduplicate).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import datasets
from ..cache import Cache, CacheEntry
from ..connect import Connection
from ..customerio.app import AppClient
from ..customerio.exports import PollPolicy
from ..errors import InvalidParameter
from ..export_cache import export_into_cache
from ..files import atomic_write
from ..receiver.queues import DeadLetter, QueuedEvent
from ..receiver.worker import EventLog
from .layout import BACKFILL_MANIFEST, BACKFILL_PREFIX, compact, day_of, days, part_files
from .query import duckdb_connection

__all__ = ["BACKFILL_METRICS", "BackfillResult", "append_export_frame", "backfill_deliveries", "delivery_events", "receiver_start"]

log = logging.getLogger("cio_mavera.backfill")

_DAY = 86400
# Export columns that are metrics a reporting webhook also reports (the file's human_/prefetch_
# variants and `created` are not webhook metrics).
BACKFILL_METRICS = ("sent", "delivered", "opened", "clicked", "converted", "bounced", "spammed",
                    "unsubscribed", "dropped", "failed", "undeliverable")
_OWNERS = ("campaign_id", "action_id", "newsletter_id", "broadcast_id")
_CARRIED = ("recipient", "subject")
_REASON_METRICS = ("bounced", "dropped", "failed", "undeliverable")
EXPORT_SCHEMA_VERSION = 1


@dataclass
class BackfillResult:
    """What a backfill did: period, exports, deliveries read, rows written and rows left out."""

    start: int
    until: int
    campaigns: list[int]
    newsletters: list[int] = field(default_factory=list)
    deliveries: int = 0
    events_read: int = 0
    written: int = 0
    already_reported: int = 0  # (delivery_id, metric) pairs a webhook already reported
    outside_period: int = 0  # metric times at or after `until` (the receiver's) or before `start`
    dead: int = 0  # rows the log could not store (logged)
    exports: dict[str, int] = field(default_factory=dict)  # "campaign 7" / "newsletter 3" -> export id
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def delivery_events(rows: Iterable[dict[str, Any]], *, start: int, until: int,
                    received_at: float) -> Iterator[tuple[QueuedEvent | None, str, str]]:
    """Webhook-shaped events for each metric each export row reached in [start, until).

    Yields (event or None when outside the period, delivery_id, metric).
    """
    for row in rows:
        delivery_id = row.get("delivery_id")
        if not delivery_id:
            continue
        data: dict[str, Any] = {name: _int(row.get(name)) for name in _OWNERS if _int(row.get(name)) is not None}
        data["delivery_id"] = str(delivery_id)
        identifiers = {k: row.get(k) for k in ("id", "email", "cio_id") if row.get(k)}
        if identifiers:
            data["identifiers"] = identifiers
        if row.get("id"):
            data["customer_id"] = row["id"]
        for name in _CARRIED:
            if row.get(name):
                data[name] = row[name]
        object_type = row.get("type") or "email"
        for metric in BACKFILL_METRICS:
            when = _int(row.get(metric))
            if when is None:
                continue
            if not start <= when < until:
                yield None, str(delivery_id), metric
                continue
            body = dict(data)
            if metric in _REASON_METRICS and row.get("failure_message"):
                body["failure_message"] = row["failure_message"]
            event_id = f"{BACKFILL_PREFIX}{delivery_id}:{metric}"
            envelope = {"event_id": event_id, "object_type": object_type, "metric": metric, "timestamp": when,
                        "data": body, "source": "deliveries_export"}
            payload = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()
            yield QueuedEvent(event_id, event_id, payload, received_at), str(delivery_id), metric


def receiver_start(event_log_dir: str | Path) -> int | None:
    """The time of the earliest webhook (not backfilled) event in the log, or None without one."""
    root = Path(event_log_dir)
    con = duckdb_connection()
    try:
        for day in days(root):  # oldest first: usually the first day with webhooks answers
            files = [str(f) for f in part_files(root, day)]
            if not files:
                continue
            listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            prefix = BACKFILL_PREFIX.replace("'", "''")
            [(first,)] = con.sql(
                f"SELECT min(COALESCE(CAST(timestamp AS DOUBLE), received_at)) FROM read_parquet([{listing}]) "
                f"WHERE NOT starts_with(event_id, '{prefix}')").fetchall()
            if first is not None:
                return int(first)
    finally:
        con.close()
    return None


def _webhook_pairs(root: Path, start: int, until: int) -> set[tuple[str, str]]:
    """(delivery_id, metric) of webhook rows on the days of [start, until], a day either side."""
    first, last = day_of(start - _DAY), day_of(until + _DAY)
    files = [str(f) for d in days(root) if first <= d <= last for f in part_files(root, d)]
    if not files:
        return set()
    listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    prefix = BACKFILL_PREFIX.replace("'", "''")
    con = duckdb_connection()
    try:
        rows = con.sql(f"SELECT DISTINCT delivery_id, metric FROM read_parquet([{listing}]) "
                       f"WHERE delivery_id IS NOT NULL AND NOT starts_with(event_id, '{prefix}')").fetchall()
    finally:
        con.close()
    return {(str(d), str(m)) for d, m in rows}


def _record(root: Path, run: dict[str, Any]) -> None:
    path = root / BACKFILL_MANIFEST
    try:
        runs = json.loads(path.read_text())["runs"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        runs = []
    runs = [r for r in runs if r.get("id") != run["id"]] + [run]
    atomic_write(path, json.dumps({"runs": runs}, indent=1, sort_keys=True))


def backfill_deliveries(conn: Connection, event_log_dir: str | Path, *, days: float = 90,
                        until: float | None = None, campaign_ids: Sequence[int] | None = None,
                        newsletter_ids: Sequence[int] | None = None,
                        poll: PollPolicy | None = None, client: AppClient | None = None,
                        on_source: Callable[[str, int, int], None] | None = None,
                        clock: Callable[[], float] = time.time) -> BackfillResult:
    """Backfill the event log with `days` of delivery history before `until`; returns what it did.

    `until` (unix seconds) defaults to the earliest webhook in the log, else now. One deliveries
    export per campaign and per newsletter: `campaign_ids` / `newsletter_ids` default to all of the
    workspace's (an empty list: none), so job 3's churn family sees newsletters' sends in the backfilled
    period as it does in the webhooks'. `on_source("campaign 7", deliveries, written)` reports
    progress after each export.
    """
    if days <= 0:
        raise InvalidParameter(f"days must be positive, got {days}")
    started = time.perf_counter()
    root = Path(event_log_dir)
    root.mkdir(parents=True, exist_ok=True)
    first_webhook = receiver_start(root)
    end = int(until if until is not None else first_webhook if first_webhook is not None else clock())
    start = int(end - days * _DAY)
    owned = client is None
    app = client or AppClient(conn)
    try:
        campaigns = [int(c) for c in (campaign_ids if campaign_ids is not None
                                      else datasets.campaigns(conn, client=app)["campaign_id"])]
        newsletters = [int(n) for n in (newsletter_ids if newsletter_ids is not None
                                        else [item["id"] for item in app.newsletters()])]
        result = BackfillResult(start=start, until=end, campaigns=campaigns, newsletters=newsletters)
        sources = [("campaign_id", c) for c in campaigns] + [("newsletter_id", n) for n in newsletters]
        run_id = f"{start}-{end}"
        described = {"id": run_id, "start": start, "until": end, "campaigns": campaigns, "newsletters": newsletters}
        _record(root, {**described, "status": "running"})
        reported = _webhook_pairs(root, start, end)
        event_log = EventLog(root, compact_after=0)  # compacted once at the end
        cache = Cache(conn.cache_dir)
        entries = {source: cache.entry("deliveries_export", {source[0]: source[1], "start": start, "end": end},
                                       EXPORT_SCHEMA_VERSION) for source in sources}
        for source, entry in entries.items():  # ask for every export first: Customer.io writes them meanwhile
            _ask(app, entry, source, start, end)
        for (owner, owner_id), entry in entries.items():
            label = f"{owner.removesuffix('_id')} {owner_id}"
            with entry.lock():
                done = export_into_cache(app, entry, lambda o=owner, i=owner_id: app.exports.deliveries(
                    **{o: i}, start=start, end=end), poll=poll)  # picks up the export asked for above
                result.exports[label] = done.id
                before = (result.deliveries, result.written)
                for name in entry.data_parts():
                    frame = entry.read_part(name)
                    if frame is not None:
                        append_export_frame(event_log, frame, result, reported, start, end, clock())
            if on_source is not None:
                on_source(label, result.deliveries - before[0], result.written - before[1])
        compact(root)
        result.seconds = round(time.perf_counter() - started, 3)
        _record(root, {**described, "status": "done", "written": result.written, "deliveries": result.deliveries})
        return result
    finally:
        if owned:
            app.close()


def _ask(app: AppClient, entry: CacheEntry, source: tuple[str, int], start: int, end: int) -> None:
    """Start the source's export and note it in its cache entry, as `export_into_cache` would."""
    with entry.lock():
        entry.begin()
        if entry.read_part("export") is not None:  # an unfinished earlier backfill asked already
            return
        export = app.exports.deliveries(**{source[0]: source[1]}, start=start, end=end)
        entry.write_part("export", pd.DataFrame({"export_id": [export.id], "created_at": [export.created_at]}),
                         kind="export", requests=1)


def append_export_frame(event_log: EventLog, frame: pd.DataFrame, result: BackfillResult,
                        reported: set[tuple[str, str]], start: int, end: int, now: float) -> None:
    """Write the events of one part of a deliveries export (string columns) into the log, counting
    into `result`; pairs in `reported` (webhooks have them) and times outside [start, end) are skipped."""
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    result.deliveries += len(rows)
    batch: list[QueuedEvent] = []
    for event, delivery_id, metric in delivery_events(rows, start=start, until=end, received_at=now):
        result.events_read += 1
        if event is None:
            result.outside_period += 1
        elif (delivery_id, metric) in reported:
            result.already_reported += 1
        else:
            batch.append(event)
    dead: list[DeadLetter] = []
    result.written += event_log.append(batch, dead)
    result.dead += len(dead)
