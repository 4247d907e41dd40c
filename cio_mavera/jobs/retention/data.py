"""Job 3 data: the event log the worker wrote (or this sandbox run's), its backfill, and campaign names.

Live, the report reads `<data dir>/events/`, written by `cio-mavera webhooks work` and backfilled
with delivery history by `cio-mavera webhooks backfill`; in sandbox mode each run replays the stream
into its own log under the sandbox cache (see `pipeline`). Reads go through DuckDB
(`cio_mavera.eventlog.query`): a time range of partitions, backfilled rows a webhook also
reported left out.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd

from cio_mavera import datasets
from cio_mavera.connect import Connection
from cio_mavera.eventlog.backfill import BackfillResult, backfill_deliveries
from cio_mavera.eventlog.layout import day_rows, days
from cio_mavera.eventlog.query import read_events
from cio_mavera.receiver.worker import read_event_log

__all__ = ["PIPELINE_DIR", "backfill_event_log", "campaign_names", "event_log_dir", "horizon_start",
           "load_event_log", "read_event_log", "read_recent_events"]

PIPELINE_DIR = "retention-pipeline"


def event_log_dir(conn: Connection) -> Path:
    """The event log a job-3 report reads: the worker's `<data dir>/events/` live, the sandbox run's otherwise."""
    if conn.mode == "live":
        return conn.settings.data_dir / "events"
    return conn.cache_dir / PIPELINE_DIR / "events"


def load_event_log(conn: Connection, *, days_back: float | None = None) -> pd.DataFrame:
    """The event log for `conn` as a DataFrame (one row per unique event, payloads kept).

    `days_back` keeps only the last that many days before the log's newest day ends (None: all).
    """
    root = event_log_dir(conn)
    return read_events(root, since=horizon_start(root, days_back), payload=True)


def horizon_start(event_log_dir: str | Path, days_back: float | None) -> float | None:
    """Unix time `days_back` days before the end of the log's newest day (None: no bound)."""
    present = days(event_log_dir)
    if days_back is None or not present:
        return None
    end = dt.datetime.fromisoformat(present[-1]).replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
    return (end - dt.timedelta(days=days_back)).timestamp()


def read_recent_events(event_log_dir: str | Path, days_back: float | None,
                       max_events: int | None = None) -> pd.DataFrame:
    """The events of the last `days_back` days of the log, bounce payloads only (what triggers read).

    With `max_events`, the period starts later when needed so that it holds at most about that many
    events (whole days, counted from the parquet footers; at least the newest day), which bounds
    the trigger statistics' memory and time on a busy workspace.
    """
    since = horizon_start(event_log_dir, days_back)
    if max_events is not None:
        total = 0
        for day in reversed(days(event_log_dir)):
            day_end = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp() + 86400
            if since is not None and day_end <= since:
                break
            rows = day_rows(event_log_dir, day)
            if total and total + rows > max_events:
                since = max(since or day_end, day_end)  # from the day after this one
                break
            total += rows
    return read_events(event_log_dir, since=since)


def backfill_event_log(conn: Connection, *, days_back: float = 90, **options: Any) -> BackfillResult:
    """Backfill `conn`'s event log with `days_back` days of deliveries exports before the receiver started.

    Options go to `cio_mavera.eventlog.backfill.backfill_deliveries` (until, campaign_ids, poll, ...).
    """
    return backfill_deliveries(conn, event_log_dir(conn), days=days_back, **options)


def campaign_names(conn: Connection, *, refresh: bool = False) -> dict[int, str]:
    """Campaign id -> name from the (cached) campaigns list, for readable reports and prompts."""
    frame = datasets.campaigns(conn, refresh=refresh)
    return {int(c): str(n) for c, n in zip(frame["campaign_id"], frame["name"], strict=True) if n}
