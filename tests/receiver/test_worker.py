"""The worker drains the queue into the parquet event log exactly once per event_id, even after SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cio_mavera.receiver.queues import SqliteQueue
from cio_mavera.receiver.worker import EventLog, drain_once, read_event_log

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAY1 = 1_800_000_000  # 2027-01-15 UTC
DAY2 = DAY1 + 86400


def body(event_id: str, timestamp: int = DAY1, **data) -> bytes:
    return json.dumps({"event_id": event_id, "object_type": "email", "metric": "opened",
                       "timestamp": timestamp, "data": {"campaign_id": 4, "action_id": 8,
                       "identifiers": {"id": "u1", "email": "a@b.example", "cio_id": "c1"}, **data}}).encode()


def fill(queue: SqliteQueue, bodies: list[tuple[str, bytes]]) -> None:
    async def go() -> None:
        await asyncio.gather(*(queue.enqueue(eid, raw, 1.0) for eid, raw in bodies))

    asyncio.run(go())


@pytest.fixture
def queue(tmp_path: Path):
    q = SqliteQueue(tmp_path / "q.sqlite3", visibility_timeout_s=0.2)
    yield q
    q.close()


def test_drain_writes_one_row_per_event_partitioned_by_day(queue, tmp_path):
    fill(queue, [("a", body("a")), ("b", body("b", DAY2)), ("c", body("c", DAY2))])
    assert drain_once(queue, tmp_path / "events", batch=2) == 3
    frame = read_event_log(tmp_path / "events")
    assert sorted(frame["event_id"]) == ["a", "b", "c"]
    days = dict(zip(frame["event_id"], frame["day"].astype(str), strict=True))
    assert days == {"a": "2027-01-15", "b": "2027-01-16", "c": "2027-01-16"}
    row = frame.set_index("event_id").loc["a"]
    assert (row["campaign_id"], row["action_id"], row["cio_id"], row["metric"]) == (4, 8, "c1", "opened")
    assert json.loads(row["payload"])["event_id"] == "a"
    assert queue.depth() == 0


def test_redelivered_batch_already_written_is_not_written_twice(queue, tmp_path):
    fill(queue, [(f"e{i}", body(f"e{i}")) for i in range(10)])
    log = EventLog(tmp_path / "events")
    claimed = queue.claim("crashing-worker", max_items=10)
    assert log.append(claimed) == 10  # written, then the worker "dies" before ack
    time.sleep(0.3)  # visibility timeout passes; the batch is redelivered
    assert drain_once(queue, tmp_path / "events") == 0  # a fresh worker reloads the ids it holds
    frame = read_event_log(tmp_path / "events")
    assert len(frame) == 10 and frame["event_id"].is_unique
    assert queue.depth() == 0


def test_leftover_temporary_file_from_a_crash_is_ignored(queue, tmp_path):
    fill(queue, [("a", body("a"))])
    folder = tmp_path / "events" / "day=2027-01-15"
    folder.mkdir(parents=True)
    (folder / ".part-crashed.parquet.tmp").write_bytes(b"PAR1 half written")
    assert drain_once(queue, tmp_path / "events") == 1
    assert list(read_event_log(tmp_path / "events")["event_id"]) == ["a"]


def test_empty_event_log_reads_as_empty_frame(tmp_path):
    frame = read_event_log(tmp_path / "nothing")
    assert len(frame) == 0 and "event_id" in frame.columns


@pytest.mark.slow
def test_sigkill_mid_batch_then_restart_leaves_every_event_exactly_once(tmp_path):
    queue_path = tmp_path / "q.sqlite3"
    queue = SqliteQueue(queue_path)
    ids = [f"k{i:05d}" for i in range(2000)]
    fill(queue, [(eid, body(eid, DAY1 + i * 60, content="x" * 200)) for i, eid in enumerate(ids)])
    queue.close()
    url = f"sqlite:///{queue_path}?visibility_timeout=0.5"
    env = {**os.environ, "CIO_MAVERA_DATA_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "cio_mavera.cli", "webhooks", "work", "--queue", url, "--batch", "40"]
    events_dir = tmp_path / "events"
    worker = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(list(events_dir.glob("day=*/part-*.parquet"))) < 5:
            assert worker.poll() is None and time.monotonic() < deadline, "worker made no progress"
            time.sleep(0.01)
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait(timeout=10)
    assert worker.returncode == -signal.SIGKILL
    partial = read_event_log(events_dir)
    assert 0 < len(partial) < len(ids)  # killed part-way through
    time.sleep(0.6)  # let the dead worker's claims expire
    done = subprocess.run([*command[:-1], "500", "--once"], cwd=PROJECT_ROOT, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    frame = read_event_log(events_dir)
    assert sorted(frame["event_id"]) == ids  # every event, and each exactly once
    check = SqliteQueue(queue_path)
    try:
        assert check.depth() == 0
    finally:
        check.close()
