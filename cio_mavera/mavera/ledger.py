"""The credits ledger: one row per Mavera call (time, run, job, endpoint, credits, cached), in parquet.

Append-safe across processes without locks: each flush writes its own small parquet file (named by
run, process and a random suffix, written atomically with `files.atomic_path`), and readers concatenate
every file under `<data_dir>/ledger/<mode>/`. Rows are flushed every `flush_every` calls, when a call
fails, and on `close()`, so a run stopped by a 402 still has its earlier calls on disk.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import uuid
import weakref
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..files import atomic_path

log = logging.getLogger("cio_mavera.mavera.ledger")

SCHEMA = pa.schema([
    ("time", pa.timestamp("us", tz="UTC")),
    ("run", pa.string()),
    ("job", pa.string()),
    ("endpoint", pa.string()),
    ("credits", pa.int64()),
    ("cached", pa.bool_()),
])
COLUMNS = SCHEMA.names


def ledger_dir(data_dir: Path, mode: str) -> Path:
    """Where the ledger files of `mode` ("live" or "sandbox") live."""
    return Path(data_dir) / "ledger" / mode


def read_ledger(data_dir: Path, mode: str, *, run_id: str | None = None) -> pd.DataFrame:
    """Every flushed ledger row of `mode` (optionally one run) as a DataFrame, oldest first."""
    frames = []
    for path in sorted(ledger_dir(data_dir, mode).glob("*.parquet")):
        try:
            frames.append(pq.read_table(path, schema=SCHEMA).to_pandas())
        except (OSError, pa.ArrowInvalid) as exc:
            # A torn or foreign file must not hide every other row; it is skipped, loudly.
            log.warning("skipping unreadable ledger file %s: %s", path.name, exc)
    frame = pd.concat(frames, ignore_index=True) if frames else _empty()
    if run_id is not None:
        frame = frame[frame["run"] == run_id]
    return frame.sort_values("time", kind="stable").reset_index(drop=True)


def credits_spent(run_id: str, *, data_dir: Path, mode: str) -> int:
    """Credits charged to `run_id` according to the flushed ledger (cached calls count 0)."""
    return int(read_ledger(data_dir, mode, run_id=run_id)["credits"].sum())


def _empty() -> pd.DataFrame:
    return SCHEMA.empty_table().to_pandas()


class CreditsLedger:
    """Buffers ledger rows for one process and flushes them as small parquet files."""

    def __init__(self, data_dir: Path, mode: str, *, flush_every: int = 25) -> None:
        self.dir = ledger_dir(data_dir, mode)
        self.data_dir = Path(data_dir)
        self.mode = mode
        self.flush_every = flush_every
        self._rows: list[dict] = []
        self._lock = threading.Lock()
        _open_ledgers.add(self)

    def record(self, *, run: str, job: str, endpoint: str, credits: int, cached: bool) -> None:
        """Add one call's row; flush when the buffer is full."""
        row = {"time": datetime.now(UTC), "run": run, "job": job, "endpoint": endpoint,
               "credits": int(credits), "cached": bool(cached)}
        with self._lock:
            self._rows.append(row)
            full = len(self._rows) >= self.flush_every
        if full:
            self.flush()

    def flush(self) -> Path | None:
        """Write buffered rows to a new parquet file; return its path (None when nothing to write)."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return None
        run = "".join(c if c.isalnum() or c in "-_" else "_" for c in rows[0]["run"])[:60]
        final = self.dir / f"{run}-{os.getpid()}-{uuid.uuid4().hex[:12]}.parquet"
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        try:
            with atomic_path(final) as temp:
                pq.write_table(table, temp)
        except OSError:
            with self._lock:
                self._rows[:0] = rows  # keep them for the next flush rather than lose them
            raise
        return final

    def pending(self) -> pd.DataFrame:
        """Rows recorded but not yet flushed."""
        with self._lock:
            rows = list(self._rows)
        return pd.DataFrame(rows, columns=COLUMNS) if rows else _empty()

    def frame(self, run_id: str | None = None) -> pd.DataFrame:
        """Flushed rows of this mode plus this process's pending ones (optionally one run)."""
        pending = self.pending()
        if run_id is not None:
            pending = pending[pending["run"] == run_id]
        flushed = read_ledger(self.data_dir, self.mode, run_id=run_id)
        parts = [p for p in (flushed, pending) if len(p)]
        if not parts:
            return _empty()
        frame = pd.concat(parts, ignore_index=True)
        frame["time"] = pd.to_datetime(frame["time"], utc=True)
        return frame.sort_values("time", kind="stable").reset_index(drop=True)

    def credits_spent(self, run_id: str) -> int:
        """Credits charged to `run_id`, including rows not yet flushed."""
        return int(self.frame(run_id)["credits"].sum())

    def close(self) -> None:
        """Flush what is buffered."""
        self.flush()


_open_ledgers: weakref.WeakSet[CreditsLedger] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    for ledger in list(_open_ledgers):
        try:
            ledger.flush()
        except OSError as exc:
            log.warning("could not flush the credits ledger at exit: %s", exc)
