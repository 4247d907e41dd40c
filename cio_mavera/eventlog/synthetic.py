"""Synthetic event logs of any size, written straight into the log's layout, for benchmarks and tests.

Deliveries of a few dozen campaigns spread over `days`, each sent and delivered, some opened,
clicked, bounced, unsubscribed or marked as spam; rows carry a small webhook-shaped payload. Built
with numpy and pyarrow compute a day at a time, so ten million events take seconds and little memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .layout import SCHEMA, day_of, write_part

__all__ = ["EVENTS_PER_DELIVERY", "by_day", "synthetic_day", "write_synthetic_log"]

_DAY = 86400
# Metric, probability per delivery and delay after sending (seconds, mean of an exponential).
_FOLLOW_UPS = (("opened", 0.30, 3600.0), ("clicked", 0.06, 5400.0), ("unsubscribed", 0.004, 7200.0),
               ("spammed", 0.0005, 7200.0), ("bounced", 0.01, 60.0))
EVENTS_PER_DELIVERY = 2 + sum(p for _m, p, _d in _FOLLOW_UPS)


def synthetic_day(day_start: int, deliveries: int, *, rng: np.random.Generator, campaigns: int = 40,
                  people: int = 1_000_000, id_offset: int = 0, received_at: float | None = None) -> pa.Table:
    """One day's deliveries and what followed them, as a table of the log's schema (times may run past the day)."""
    sent = day_start + np.sort(rng.integers(0, _DAY, deliveries))
    delivery = np.arange(id_offset, id_offset + deliveries)
    campaign = rng.integers(1, campaigns + 1, deliveries)
    person = rng.integers(0, people, deliveries)
    parts = [("sent", np.ones(deliveries, bool), sent), ("delivered", np.ones(deliveries, bool), sent + 5)]
    for metric, p, delay in _FOLLOW_UPS:
        parts.append((metric, rng.random(deliveries) < p, sent + 5 + rng.exponential(delay, deliveries).astype(np.int64)))
    ids, metrics, times, camp, who = [], [], [], [], []
    for metric, mask, when in parts:
        ids.append(delivery[mask])
        metrics.append(np.full(int(mask.sum()), metric, dtype=object))
        times.append(when[mask])
        camp.append(campaign[mask])
        who.append(person[mask])
    delivery_ids = pc.binary_join_element_wise("d", pa.array(np.concatenate(ids)).cast(pa.string()), "")
    metric_col = pa.array(np.concatenate(metrics), pa.string())
    cio = pc.binary_join_element_wise("c", pa.array(np.concatenate(who)).cast(pa.string()), "")
    event_id = pc.binary_join_element_wise(delivery_ids, metric_col, ":")
    stamps = np.concatenate(times).astype(np.int64)
    campaign_ids = np.concatenate(camp).astype(np.int64)
    payload = pc.binary_join_element_wise(
        '{"event_id":"', event_id, '","object_type":"email","metric":"', metric_col, '","timestamp":',
        pa.array(stamps).cast(pa.string()), ',"data":{"campaign_id":', pa.array(campaign_ids).cast(pa.string()),
        ',"delivery_id":"', delivery_ids, '","identifiers":{"cio_id":"', cio, '"}}}', "")
    n = len(stamps)
    arrival = stamps.astype(np.float64) + 1.0 if received_at is None else np.full(n, received_at)
    return pa.table({
        "event_id": event_id, "object_type": pa.array(np.full(n, "email", dtype=object), pa.string()),
        "metric": metric_col, "timestamp": pa.array(stamps), "received_at": pa.array(arrival),
        "campaign_id": pa.array(campaign_ids), "action_id": pa.array(campaign_ids * 10),
        "broadcast_id": pa.nulls(n, pa.int64()), "newsletter_id": pa.nulls(n, pa.int64()),
        "delivery_id": delivery_ids, "cio_id": cio, "customer_id": pa.nulls(n, pa.string()),
        "known": pa.array(np.ones(n, bool)), "payload": payload,
    }, schema=SCHEMA)


def by_day(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    """The table's rows split by partition (UTC day of their timestamp): (day, rows) pairs."""
    day = pc.floor(pc.divide(pc.cast(table.column("timestamp"), pa.float64()), float(_DAY)))
    for value in pc.unique(day).to_pylist():
        yield day_of(value * _DAY), table.filter(pc.equal(day, value))


def write_synthetic_log(root: str | Path, events: int, *, start: int, days: int, seed: int = 0,
                        campaigns: int = 40, part_rows: int | None = None, id_offset: int = 0) -> int:
    """Write about `events` events over `days` days from `start` (unix, a day boundary) into the log
    at `root`, in parts of at most `part_rows` rows (default: one part per day and write); returns rows."""
    rng = np.random.default_rng(seed)
    per_day = max(1, round(events / EVENTS_PER_DELIVERY / days))
    total = 0
    for d in range(days):
        table = synthetic_day(start + d * _DAY, per_day, rng=rng, campaigns=campaigns,
                              id_offset=id_offset + d * per_day)
        for day, rows in by_day(table):
            step = part_rows or rows.num_rows
            for i in range(0, rows.num_rows, step):
                write_part(root, day, rows.slice(i, step))
            total += rows.num_rows
    return total
