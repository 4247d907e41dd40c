"""The event log is plain, hive-partitioned, schema-stable parquet that any engine reads, compacted safely;
DuckDB reads ranges of it and keeps hourly counts up to date one changed day at a time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from cio_mavera.eventlog import layout, query
from cio_mavera.eventlog.layout import SCHEMA, compact, compact_day, part_files, recover
from cio_mavera.eventlog.query import HourlyCounts, read_events
from cio_mavera.eventlog.synthetic import synthetic_day, write_synthetic_log
from cio_mavera.jobs.retention.data import read_recent_events
from cio_mavera.receiver.queues import QueuedEvent
from cio_mavera.receiver.worker import EventLog, read_event_log

START = 1_790_000_000 // 86400 * 86400  # 2026-09-21, a day boundary
DAY = 86400
ROWS = 12_073  # what seed 3 writes for about 12,000 events


@pytest.fixture
def log_root(tmp_path: Path) -> Path:
    root = tmp_path / "events"
    assert write_synthetic_log(root, 12_000, start=START, days=4, seed=3, part_rows=400) == ROWS
    return root


def plain_dataset(root: Path) -> ds.Dataset:
    """What any engine sees: a directory of hive-partitioned parquet, nothing of this package's code."""
    return ds.dataset(root, format="parquet", partitioning="hive")


def test_parts_are_plain_hive_partitioned_parquet_with_one_schema_across_compaction(log_root):
    HourlyCounts(log_root).update()  # derived files sit beside the data under a _ prefix
    files = sorted(log_root.glob("*/*.parquet"))
    assert {f.parent.name for f in files} == {f"day=2026-09-{d}" for d in (21, 22, 23, 24, 25)}
    assert all(pq.read_schema(f).equals(SCHEMA, check_metadata=False) for f in files)
    before = plain_dataset(log_root).to_table()
    assert before.schema.names == [*SCHEMA.names, "day"] and before.num_rows == ROWS
    assert len(files) > 30

    done = compact(log_root)
    assert done and all(c.written_files == 1 for c in done)
    after_files = sorted(log_root.glob("*/*.parquet"))
    assert len(after_files) == 5
    assert all(pq.read_schema(f).equals(SCHEMA, check_metadata=False) for f in after_files)
    after = plain_dataset(log_root).to_table()
    assert after.schema == before.schema
    assert sorted(after.column("event_id").to_pylist()) == sorted(before.column("event_id").to_pylist())
    # another engine, reading the directory by a glob, sees the same rows and the partition column
    con = duckdb.connect()
    rows = con.sql(f"SELECT count(*), count(DISTINCT event_id), min(day) FROM read_parquet("
                   f"'{log_root}/day=*/*.parquet', hive_partitioning = true)").fetchall()
    assert rows[0][:2] == (ROWS, ROWS) and str(rows[0][2]) == "2026-09-21"


def test_compaction_bounds_file_sizes_and_sorts_by_time(log_root):
    compact_day(log_root, "2026-09-22", max_rows=1000)
    files = part_files(log_root, "2026-09-22")
    sizes = [pq.ParquetFile(f).metadata.num_rows for f in files]
    assert max(sizes) <= 1000 and len(files) == -(-sum(sizes) // 1000)
    times = pa.concat_tables([pq.read_table(f) for f in files]).column("timestamp").to_numpy()
    assert (np.diff(times) >= 0).all()


def test_an_interrupted_compaction_shows_each_row_once_then_recovers(log_root, monkeypatch):
    day = "2026-09-23"
    expected = sorted(read_event_log(log_root)["event_id"])
    real_write, calls = layout._write, []

    def dies_on_second_output(path, table, **kw):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk gone")
        real_write(path, table, **kw)

    monkeypatch.setattr(layout, "_write", dies_on_second_output)
    with pytest.raises(OSError):
        compact_day(log_root, day, max_rows=500)
    assert (log_root / f"day={day}" / "_compaction.json").exists()
    assert sorted(read_event_log(log_root)["event_id"]) == expected  # half the outputs: hidden
    monkeypatch.setattr(layout, "_write", real_write)
    recover(log_root)
    assert not (log_root / f"day={day}" / "_compaction.json").exists()
    assert sorted(read_event_log(log_root)["event_id"]) == expected

    # a crash after every output was written but before the inputs went: the inputs are hidden
    folder = log_root / f"day={day}"
    inputs = sorted(folder.glob("part-*.parquet"))
    merged = folder / "part-9999999999999999999-cmerged.parquet"
    pq.write_table(pa.concat_tables([pq.read_table(f) for f in inputs]), merged)
    (folder / "_compaction.json").write_text(json.dumps({"inputs": [f.name for f in inputs],
                                                         "outputs": [merged.name]}))
    assert sorted(read_events(log_root)["event_id"]) == expected
    recover(log_root)
    assert [f.name for f in folder.glob("part-*.parquet")] == [merged.name]
    assert sorted(read_event_log(log_root)["event_id"]) == expected


def _queued(table: pa.Table) -> list[QueuedEvent]:
    return [QueuedEvent(r["event_id"], r["event_id"], r["payload"].encode(), 1.0)
            for r in table.select(["event_id", "payload"]).to_pylist()]


def test_the_worker_compacts_a_busy_day_and_still_skips_redelivered_events(tmp_path):
    table = synthetic_day(START, 300, rng=np.random.default_rng(1))
    table = table.filter(pa.compute.less(table.column("timestamp"), START + DAY))
    events = _queued(table)
    log = EventLog(tmp_path / "events", compact_after=3)
    batches = [events[i:i + 60] for i in range(0, len(events), 60)]
    assert sum(log.append(batch) for batch in batches) == len(events)
    assert len(batches) >= 6 and len(part_files(tmp_path / "events")) < len(batches)
    fresh = EventLog(tmp_path / "events")  # a restarted worker: reads the day's ids from the compacted parts
    assert fresh.append(events) == 0
    assert sorted(read_event_log(tmp_path / "events")["event_id"]) == sorted(table.column("event_id").to_pylist())


def test_hourly_counts_read_only_changed_days_and_equal_a_full_recount(log_root):
    counts = HourlyCounts(log_root)
    first = counts.update()
    assert len(first.days_read) == first.days_total == 5 and first.rows_read == ROWS
    assert counts.update().days_read == []

    extra = synthetic_day(START + 3 * DAY, 50, rng=np.random.default_rng(9), id_offset=10**9)
    extra = extra.filter(pa.compute.less(extra.column("timestamp"), START + 4 * DAY))
    layout.write_part(log_root, "2026-09-24", extra)
    second = counts.update()
    assert second.days_read == ["2026-09-24"]

    events = read_event_log(log_root)
    recount = (events.assign(hour=events["timestamp"] // 3600 * 3600)
               .groupby(["hour", "metric"]).size().rename("events").reset_index())
    kept = counts.frame().groupby(["hour", "metric"])["events"].sum().reset_index()
    assert kept.sort_values(["hour", "metric"]).to_numpy().tolist() == \
        recount.sort_values(["hour", "metric"]).to_numpy().tolist()
    shutil.rmtree(log_root / "_aggregates")
    again = HourlyCounts(log_root)
    again.update()
    assert again.frame().equals(counts.frame())


def test_read_events_returns_a_time_range_and_only_bounce_payloads(log_root):
    since, until = START + DAY + 3600, START + 3 * DAY
    frame = read_events(log_root, since=since, until=until)
    everything = read_event_log(log_root)
    inside = everything[(everything["timestamp"] >= since) & (everything["timestamp"] < until)]
    assert sorted(frame["event_id"]) == sorted(inside["event_id"])
    assert frame.loc[frame["metric"] != "bounced", "payload"].isna().all()
    assert frame.loc[frame["metric"] == "bounced", "payload"].notna().all()
    assert list(frame.columns) == [*SCHEMA.names, "day"]


def test_the_trigger_horizon_keeps_whole_recent_days_within_max_events(log_root):
    per_day = {d: layout.day_rows(log_root, d) for d in layout.days(log_root)}
    newest = sorted(per_day)[-3:]  # the partial last day and two full ones before it
    cap = sum(per_day[d] for d in newest) + 1
    frame = read_recent_events(log_root, 28, max_events=cap)
    assert sorted(frame["day"].unique()) == newest and len(frame) == cap - 1
    assert sorted(read_recent_events(log_root, 28)["day"].unique()) == sorted(per_day)
    assert sorted(read_recent_events(log_root, 1)["day"].unique()) == sorted(per_day)[-1:]
    assert sorted(read_recent_events(log_root, 28, max_events=1)["day"].unique()) == sorted(per_day)[-1:]


def test_a_read_that_races_a_compaction_lists_the_files_again(log_root, monkeypatch):
    expected = sorted(read_event_log(log_root)["event_id"])
    real, calls = query._deduplicated, []

    def compacted_after_listing(root, chosen):
        sql = real(root, chosen)
        if not calls:  # another process compacts right after this reader listed the parts
            compact(root)
        calls.append(sql)
        return sql

    monkeypatch.setattr(query, "_deduplicated", compacted_after_listing)
    assert sorted(read_events(log_root)["event_id"]) == expected
    assert len(calls) == 2
