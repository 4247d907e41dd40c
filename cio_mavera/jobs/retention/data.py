"""Job 3 data: the event log the worker wrote (or this sandbox run's), and campaign names.

Live, the report reads `<data dir>/events/`, written by `cio-mavera webhooks work`; in sandbox mode
each run replays the stream into its own log under the sandbox cache (see `pipeline`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cio_mavera import datasets
from cio_mavera.connect import Connection
from cio_mavera.receiver.worker import read_event_log

__all__ = ["PIPELINE_DIR", "campaign_names", "event_log_dir", "load_event_log", "read_event_log"]

PIPELINE_DIR = "retention-pipeline"


def event_log_dir(conn: Connection) -> Path:
    """The event log a job-3 report reads: the worker's `<data dir>/events/` live, the sandbox run's otherwise."""
    if conn.mode == "live":
        return conn.settings.data_dir / "events"
    return conn.cache_dir / PIPELINE_DIR / "events"


def load_event_log(conn: Connection) -> pd.DataFrame:
    """The event log for `conn` as a DataFrame (one row per unique event_id)."""
    return read_event_log(event_log_dir(conn))


def campaign_names(conn: Connection, *, refresh: bool = False) -> dict[int, str]:
    """Campaign id -> name from the (cached) campaigns list, for readable reports and prompts."""
    frame = datasets.campaigns(conn, refresh=refresh)
    return {int(c): str(n) for c, n in zip(frame["campaign_id"], frame["name"], strict=True) if n}
