"""The event log's files: plain, hive-partitioned, schema-stable parquet, compacted as it grows.

Layout, designed for years of events:

    <events>/day=YYYY-MM-DD/part-<ns>-<rand>.parquet      one partition per UTC day of the event
    <events>/day=YYYY-MM-DD/_compaction.json               only while a compaction is under way
    <events>/_aggregates/...                               derived, rebuilt from the parts (`query`)

Every part has exactly `SCHEMA` (no partition column inside the file: `day` comes from the path).
The worker writes one small part per batch and day; `compact_day` merges a day's small parts
(fewer than `SMALL_ROWS` rows) into parts of at most `MAX_ROWS_PER_FILE` rows sorted by timestamp,
in row groups of `ROW_GROUP_ROWS`, so a day holds a handful of files whatever the traffic and each
row is rewritten only a few times. Names starting with `_` or `.` are ignored by pyarrow, DuckDB's
hive globs used here, Spark and Hive, so journals, temporary files and aggregates never read as data.

Compaction is crash-safe through a journal: the journal (inputs, outputs) is written atomically
first, then the outputs (each atomically), then the inputs are deleted, then the journal. Readers
that list files here (`part_files`) honour a journal left by a crash: with every output present the
inputs are ignored, otherwise the outputs are; `recover` then finishes or rolls back. A reader that
lists a day's files and opens them after a concurrent compaction deleted some retries the listing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..files import atomic_path, atomic_write

__all__ = ["BACKFILL_MANIFEST", "BACKFILL_PREFIX", "COMPACT_AFTER_FILES", "MAX_ROWS_PER_FILE", "PARTITION", "ROW_GROUP_ROWS", "SCHEMA", "SMALL_ROWS",
           "Compaction", "compact", "compact_day", "dataset", "day_of", "day_rows", "days", "part_files", "read_ids",
           "recover", "write_part"]

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
PARTITION = "day"
PARTITION_SCHEMA = pa.schema([(PARTITION, pa.string())])
SMALL_ROWS = 100_000  # parts below this are merged by compaction
MAX_ROWS_PER_FILE = 1_000_000  # no part is written larger (about 100-300 MB with payloads)
ROW_GROUP_ROWS = 128 * 1024
COMPACT_AFTER_FILES = 32  # small parts a day gathers before the worker compacts it
# Rows a deliveries export backfilled have event_ids "export:<delivery_id>:<metric>" (see `backfill`);
# the manifest of backfills sits at the log's root, so readers know to look for them.
BACKFILL_PREFIX = "export:"
BACKFILL_MANIFEST = "_backfill.json"
_JOURNAL = "_compaction.json"
_LOCK = "_compaction.lock"


def day_of(stamp: float) -> str:
    """The partition (UTC day, YYYY-MM-DD) of a unix timestamp."""
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d")


def _day_dir(root: Path, day: str) -> Path:
    return root / f"{PARTITION}={day}"


def days(root: str | Path) -> list[str]:
    """The log's partitions (days), oldest first."""
    base = Path(root)
    if not base.is_dir():
        return []
    return sorted(p.name.split("=", 1)[1] for p in base.glob(f"{PARTITION}=*") if p.is_dir())


def _journal(folder: Path) -> dict | None:
    try:
        return json.loads((folder / _JOURNAL).read_text())
    except (FileNotFoundError, ValueError):
        return None


def part_files(root: str | Path, day: str | None = None) -> list[Path]:
    """The data files of one day (or of the whole log), honouring an unfinished compaction."""
    base = Path(root)
    folders = [_day_dir(base, day)] if day is not None else [_day_dir(base, d) for d in days(base)]
    out: list[Path] = []
    for folder in folders:
        files = sorted(folder.glob("part-*.parquet"))
        journal = _journal(folder)
        if journal is not None:
            outputs = set(journal.get("outputs", []))
            present = {f.name for f in files}
            hidden = set(journal.get("inputs", [])) if outputs <= present else outputs
            files = [f for f in files if f.name not in hidden]
        out.extend(files)
    return out


def _new_name(tag: str = "") -> str:
    return f"part-{time.time_ns()}-{tag}{uuid.uuid4().hex[:8]}.parquet"


def _write(path: Path, table: pa.Table, *, fsync: bool = True) -> None:
    with atomic_path(path, fsync=fsync) as tmp:
        pq.write_table(table.cast(SCHEMA), tmp, row_group_size=ROW_GROUP_ROWS)


def write_part(root: str | Path, day: str, table: pa.Table) -> Path:
    """Write `table` (rows of `day`) as a new part, synced and renamed into place; returns its path."""
    path = _day_dir(Path(root), day) / _new_name()
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, table)
    return path


def day_rows(root: str | Path, day: str) -> int:
    """Rows in one day's partition, from the parquet footers (no data read)."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in part_files(root, day))


def read_ids(root: str | Path, day: str) -> set[str]:
    """The event_ids held in one day's partition."""
    for attempt in range(3):
        files = part_files(root, day)
        if not files:
            return set()
        try:
            table = ds.dataset([str(f) for f in files], schema=SCHEMA, format="parquet").to_table(columns=["event_id"])
            return set(table.column("event_id").to_pylist())
        except OSError:  # a concurrent compaction removed a listed part: list again
            if attempt == 2:
                raise
    return set()


def dataset(root: str | Path) -> ds.Dataset:
    """The whole log as a pyarrow dataset: fixed `SCHEMA` plus the `day` partition column (string)."""
    base = Path(root)
    files = [str(f) for f in part_files(base)]
    return ds.dataset(files, schema=pa.unify_schemas([SCHEMA, PARTITION_SCHEMA]), format="parquet",
                      partitioning=ds.partitioning(PARTITION_SCHEMA, flavor="hive"),
                      partition_base_dir=str(base))


@dataclass(frozen=True)
class Compaction:
    """What compacting one day did: files and rows merged, files written."""

    day: str
    merged_files: int
    rows: int
    written_files: int


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One compaction at a time per log (across processes)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / _LOCK, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _recover_day(folder: Path) -> None:
    journal = _journal(folder)
    if journal is None:
        return
    outputs = [folder / name for name in journal.get("outputs", [])]
    if all(p.exists() for p in outputs):
        for name in journal.get("inputs", []):
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()
    else:
        for path in outputs:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    (folder / _JOURNAL).unlink()


def recover(root: str | Path) -> None:
    """Finish or roll back compactions a crash interrupted."""
    base = Path(root)
    with _locked(base):
        for day in days(base):
            _recover_day(_day_dir(base, day))


def compact_day(root: str | Path, day: str, *, small_rows: int = SMALL_ROWS,
                max_rows: int = MAX_ROWS_PER_FILE, fsync: bool = True) -> Compaction:
    """Merge the day's parts smaller than `small_rows` into parts of at most `max_rows` rows."""
    base = Path(root)
    folder = _day_dir(base, day)
    with _locked(base):
        _recover_day(folder)
        small = [f for f in part_files(base, day) if pq.ParquetFile(f).metadata.num_rows < small_rows]
        if len(small) < 2:
            return Compaction(day, 0, 0, 0)
        table = ds.dataset([str(f) for f in small], schema=SCHEMA, format="parquet").to_table()
        table = table.take(pc.sort_indices(table, sort_keys=[("timestamp", "ascending")]))
        pieces = [table.slice(i, max_rows) for i in range(0, table.num_rows, max_rows)] or [table]
        names = [_new_name("c") for _ in pieces]
        atomic_write(folder / _JOURNAL, json.dumps({"inputs": [f.name for f in small], "outputs": names}),
                     fsync=fsync)
        for name, piece in zip(names, pieces, strict=True):
            _write(folder / name, piece, fsync=fsync)
        _recover_day(folder)  # every output exists: drop the inputs, then the journal
        return Compaction(day, len(small), table.num_rows, len(names))


def compact(root: str | Path, *, min_files: int = 2, small_rows: int = SMALL_ROWS,
            max_rows: int = MAX_ROWS_PER_FILE) -> list[Compaction]:
    """Compact every day holding at least `min_files` small parts; returns what was done."""
    base = Path(root)
    done = []
    for day in days(base):
        small = [f for f in part_files(base, day) if pq.ParquetFile(f).metadata.num_rows < small_rows]
        if len(small) >= max(2, min_files):
            done.append(compact_day(base, day, small_rows=small_rows, max_rows=max_rows))
    return done
