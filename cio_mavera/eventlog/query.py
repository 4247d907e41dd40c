"""DuckDB over the event log: time-ranged reads for job 3, and hourly counts kept up to date incrementally.

DuckDB runs embedded (no server) on the parquet parts `layout` lists, with a memory limit, so the
log can be far larger than memory; what comes back to pandas is small (a time range of events for
the trigger statistics, or per-hour counts). Reads pick their files by partition (day) before
DuckDB sees them, so a 90-day read of a five-year log opens 90 days of files.

Backfilled rows (event_ids starting `export:`, see `backfill`) and webhook rows can describe the
same thing. The identity of a delivery event is (delivery_id, metric): an export row is left out
wherever a webhook row with the same delivery_id and metric exists (on its day or the days either
side, which covers clocks that disagree across midnight). The webhook row wins because it carries
the full envelope; several webhook rows of one (delivery_id, metric), such as repeated opens with
full-resolution webhooks, all stay. Without a backfill in the log that check is skipped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..files import atomic_path, atomic_write
from .layout import BACKFILL_MANIFEST, BACKFILL_PREFIX, SCHEMA, day_of, days, part_files

__all__ = ["AGGREGATES_DIR", "HourlyCounts", "UpdateResult", "duckdb_connection", "read_events"]

AGGREGATES_DIR = "_aggregates"
DEFAULT_MEMORY_LIMIT = "1GB"
_ATTEMPTS = 3
T = TypeVar("T")
_HOURLY_SCHEMA = pa.schema([("day", pa.string()), ("hour", pa.int64()), ("source", pa.string()),
                            ("channel", pa.string()), ("metric", pa.string()), ("events", pa.int64())])


def duckdb_connection(*, memory_limit: str = DEFAULT_MEMORY_LIMIT, threads: int | None = None,
                      ordered: bool = True) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a memory limit (it spills to a temporary directory beyond it).

    `ordered=False` lets DuckDB return rows in any order, which saves memory on big aggregations.
    """
    con = duckdb.connect(":memory:")
    con.execute(f"SET memory_limit = '{memory_limit}'")
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    if not ordered:
        con.execute("SET preserve_insertion_order = false")
    return con


def arrow_table(relation: duckdb.DuckDBPyRelation) -> pa.Table:
    """A DuckDB result as a pyarrow Table (DuckDB 1.x returns a Table, 2.x a batch reader)."""
    result = relation.arrow()
    return result.read_all() if isinstance(result, pa.RecordBatchReader) else result


def _has_backfill(root: Path) -> bool:
    return (root / BACKFILL_MANIFEST).exists()


def _shift(day: str, by: int) -> str:
    return (dt.date.fromisoformat(day) + dt.timedelta(days=by)).isoformat()


def _files(root: Path, chosen: Sequence[str]) -> list[str]:
    wanted = set(chosen)
    return [str(f) for d in days(root) if d in wanted for f in part_files(root, d)]


def _scan(files: Sequence[str], *, positions: bool = False) -> str:
    listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    extra = ", filename = true, file_row_number = true" if positions else ""
    return f"read_parquet([{listing}], hive_partitioning = true, hive_types = {{'day': VARCHAR}}{extra})"


def _deduplicated(root: Path, chosen: Sequence[str]) -> str | None:
    """SQL for the rows of days `chosen`, export rows a webhook also reported left out; None if no files."""
    files = _files(root, chosen)
    if not files:
        return None
    if not _has_backfill(root):
        return f"SELECT * FROM {_scan(files)}"
    wider = sorted({_shift(d, k) for d in chosen for k in (-1, 0, 1)})
    prefix = BACKFILL_PREFIX.replace("'", "''")
    # The anti-join may reorder rows: the file and row positions put them back in the log's order.
    return (f"SELECT e.* FROM {_scan(files, positions=True)} e WHERE NOT (starts_with(e.event_id, '{prefix}') AND EXISTS ("
            f"SELECT 1 FROM {_scan(_files(root, wider))} h WHERE h.delivery_id = e.delivery_id "
            f"AND h.metric = e.metric AND NOT starts_with(h.event_id, '{prefix}')))")


def _days_between(root: Path, since: float | None, until: float | None) -> list[str]:
    first = day_of(since) if since is not None else None
    last = day_of(until) if until is not None else None
    return [d for d in days(root) if (first is None or d >= first) and (last is None or d <= last)]


def read_events(event_log_dir: str | Path, *, since: float | None = None, until: float | None = None,
                payload: bool | Literal["bounces"] = "bounces",
                con: duckdb.DuckDBPyConnection | None = None) -> pd.DataFrame:
    """The log's events with `since <= time < until` (unix seconds; None: unbounded) as a DataFrame.

    One row per event, the log's columns plus `day`, in the log's order. `payload`: True keeps the
    raw envelopes, "bounces" only those of bounces (the trigger statistics read a bounce's
    failure_message from it; the rest is most of the log's bytes), False none.
    """
    root = Path(event_log_dir)
    owned = con is None
    con = con or duckdb_connection()
    try:
        return _listing_again(lambda: _read_events(con, root, since, until, payload))
    finally:
        if owned:
            con.close()


def _listing_again(read: Callable[[], T]) -> T:
    """`read()`, which lists the log's parts and reads them; when a compaction removed a part it had
    listed (DuckDB raises IOException), list and read again, at most `_ATTEMPTS` times in all."""
    for _ in range(_ATTEMPTS - 1):
        try:
            return read()
        except duckdb.IOException:
            continue
    return read()


def _read_events(con: duckdb.DuckDBPyConnection, root: Path, since: float | None, until: float | None,
                 payload: bool | Literal["bounces"]) -> pd.DataFrame:
    empty = pd.DataFrame({name: pd.Series(dtype=object) for name in [*SCHEMA.names, "day"]})
    chosen = _days_between(root, since, until)
    source = _deduplicated(root, chosen)
    if source is None:
        return empty
    columns = [f'"{name}"' for name in SCHEMA.names if name != "payload"]
    if payload is True:
        columns.append("payload")
    elif payload == "bounces":
        columns.append("CASE WHEN metric = 'bounced' THEN payload END AS payload")
    columns.append("day")
    when = "COALESCE(CAST(timestamp AS DOUBLE), received_at)"
    bounds = [f"{when} >= {float(since)!r}" if since is not None else "",
              f"{when} < {float(until)!r}" if until is not None else ""]
    where = " AND ".join(b for b in bounds if b) or "TRUE"
    order = " ORDER BY filename, file_row_number" if _has_backfill(root) else ""
    sql = f"SELECT {', '.join(columns)} FROM ({source}) WHERE {where}{order}"
    return arrow_table(con.sql(sql)).to_pandas()


# --- hourly counts, incrementally -------------------------------------------------------------

_HOURLY_SQL = """
SELECT day,
       CAST(floor(COALESCE(CAST(timestamp AS DOUBLE), received_at) / 3600) AS BIGINT) * 3600 AS hour,
       CASE WHEN campaign_id IS NOT NULL THEN 'campaign:' || campaign_id
            WHEN newsletter_id IS NOT NULL THEN 'newsletter:' || newsletter_id
            WHEN broadcast_id IS NOT NULL THEN 'broadcast:' || broadcast_id
            ELSE COALESCE(object_type, 'unknown') || ':unattributed' END AS source,
       object_type AS channel, metric, count(*) AS events
FROM ({source})
GROUP BY day, hour, source, channel, metric
"""


@dataclass(frozen=True)
class UpdateResult:
    """What one `HourlyCounts.update` read: days re-aggregated out of all, rows scanned, seconds."""

    days_read: list[str]
    days_total: int
    rows_read: int
    seconds: float


class HourlyCounts:
    """Events per (hour, source, channel, metric), stored per day under `<events>/_aggregates/hourly/`.

    `update()` re-aggregates only the days whose parts changed since the last update (a day's
    fingerprint is its part names and sizes: new parts and compactions both change it), and the
    days either side of them when the log holds a backfill (their export rows may meet the new
    webhooks). The per-day results are small parquet files, so `frame()` is cheap at any log size.
    Sources are named as `jobs.retention.cohorts` names them (`campaign:<id>`, ...).
    """

    def __init__(self, event_log_dir: str | Path, *, memory_limit: str = DEFAULT_MEMORY_LIMIT) -> None:
        self.root = Path(event_log_dir)
        self.store = self.root / AGGREGATES_DIR / "hourly"
        self.memory_limit = memory_limit

    def _state_path(self) -> Path:
        return self.store / "_state.json"

    def _state(self) -> dict[str, str]:
        try:
            return json.loads(self._state_path().read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _fingerprint(self, day: str) -> str:
        parts = [(f.name, f.stat().st_size) for f in part_files(self.root, day)]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]

    def update(self) -> UpdateResult:
        """Re-aggregate the days that changed; returns what was read."""
        started = time.perf_counter()
        state = self._state()
        all_days = days(self.root)
        current = {d: self._fingerprint(d) for d in all_days}
        changed = {d for d in all_days if state.get(d) != current[d]}
        if changed and _has_backfill(self.root):
            present = set(all_days)
            changed |= {_shift(d, k) for d in changed for k in (-1, 1)} & present
        rows = 0
        chosen = sorted(changed)
        if chosen:
            con = duckdb_connection(memory_limit=self.memory_limit, ordered=False)
            try:
                for day in chosen:  # a day at a time: memory stays bounded by a day's groups
                    table = self._aggregate(con, day)
                    if table is None:
                        continue
                    rows += int(pc.sum(table.column("events")).as_py() or 0)
                    with atomic_path(self.store / f"day={day}" / "counts.parquet", fsync=False) as tmp:
                        pq.write_table(table, tmp)
            finally:
                con.close()
        for gone in set(state) - set(all_days):
            (self.store / f"day={gone}" / "counts.parquet").unlink(missing_ok=True)
        atomic_write(self._state_path(), json.dumps(current, sort_keys=True), fsync=False)
        return UpdateResult(chosen, len(all_days), rows, round(time.perf_counter() - started, 3))

    def _aggregate(self, con: duckdb.DuckDBPyConnection, day: str) -> pa.Table | None:
        def read() -> pa.Table | None:
            source = _deduplicated(self.root, [day])
            if source is None:
                return None
            return arrow_table(con.sql(_HOURLY_SQL.format(source=source))).cast(_HOURLY_SCHEMA)

        return _listing_again(read)

    def frame(self, *, since: float | None = None, until: float | None = None) -> pd.DataFrame:
        """The stored hourly counts (optionally for hours in [since, until)) as a DataFrame."""
        files = sorted(self.store.glob("day=*/counts.parquet"))
        if not files:
            return _HOURLY_SCHEMA.empty_table().to_pandas()
        frame = pa.concat_tables([pq.read_table(f, schema=_HOURLY_SCHEMA) for f in files]).to_pandas()
        if since is not None:
            frame = frame[frame["hour"] >= since]
        if until is not None:
            frame = frame[frame["hour"] < until]
        return frame.sort_values(["hour", "source", "channel", "metric"], kind="stable").reset_index(drop=True)

