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

from cio_mavera.receiver import worker as worker_module
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
    env = {**os.environ, "CIO_MAVERA_DATA_DIR": str(tmp_path), "CIO_MAVERA_MODE": "live"}
    command = [sys.executable, "-m", "cio_mavera.cli", "webhooks", "work", "--queue", url, "--batch", "40",
               "--no-research"]
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
    done = subprocess.run([*command, "--batch", "500", "--once"], cwd=PROJECT_ROOT, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    frame = read_event_log(events_dir)
    assert sorted(frame["event_id"]) == ids  # every event, and each exactly once
    check = SqliteQueue(queue_path)
    try:
        assert check.depth() == 0
    finally:
        check.close()


# -- poison events never stop the worker (issue 14, item 2) ---------------------------------------

POISON = {  # queued as an older receiver would have queued them; each crashed `webhooks work`
    "ms": (b'{"event_id":"ms","object_type":"email","metric":"opened","timestamp":1796198777000}', None),
    "future": (b'{"event_id":"future","object_type":"email","metric":"opened","timestamp":1e14}', "timestamp"),
    "past": (b'{"event_id":"past","object_type":"email","metric":"opened","timestamp":-100000000000000}',
             "timestamp"),
    "digits": (b'{"event_id":"digits","object_type":"email","metric":"opened","timestamp":' + b"7" * 4000 + b"}",
               "number"),
    "campaign": (b'{"event_id":"campaign","object_type":"email","metric":"opened","timestamp":1800000000,'
                 b'"data":{"campaign_id":"123456789012345678901"}}', "id_range"),
    "object": (b'{"event_id":"object","object_type":"\\ud800","metric":"opened","timestamp":1800000000}',
               "surrogate"),
    "metric": (b'{"event_id":"metric","object_type":"email","metric":"x\\udfff","timestamp":1800000000}',
               "surrogate"),
}


def test_poison_events_are_quarantined_and_the_rest_of_their_batch_reaches_the_log(queue, tmp_path):
    good = [(f"g{i}", body(f"g{i}")) for i in range(3)]
    fill(queue, [good[0], *[(eid, raw) for eid, (raw, _reason) in POISON.items()], *good[1:]])
    assert drain_once(queue, tmp_path / "events", batch=100) == 4  # 3 good + the millisecond one
    frame = read_event_log(tmp_path / "events").set_index("event_id")
    assert sorted(frame.index) == ["g0", "g1", "g2", "ms"]
    assert frame.loc["ms", "timestamp"] == 1796198777
    dead = {letter.event_id: letter for letter in queue.dead_letters()}
    assert {eid: letter.reason for eid, letter in dead.items()} == {
        eid: reason for eid, (_raw, reason) in POISON.items() if reason}
    assert all(letter.stage == "worker" and letter.payload == POISON[eid][0] for eid, letter in dead.items())
    assert queue.depth() == 0  # all acked: nothing comes back to crash the worker again


def test_a_redelivered_poison_batch_is_quarantined_once(queue, tmp_path):
    fill(queue, [("campaign", POISON["campaign"][0]), ("g", body("g"))])
    log = EventLog(tmp_path / "events")
    claimed = queue.claim("dying-worker", max_items=10)
    dead: list = []
    assert log.append(claimed, dead) == 1
    queue.store_dead(dead)  # ... and the worker dies before its ack
    time.sleep(0.3)  # visibility timeout passes; the batch is redelivered
    assert drain_once(queue, tmp_path / "events") == 0
    assert [letter.event_id for letter in queue.dead_letters()] == ["campaign"]
    assert list(read_event_log(tmp_path / "events")["event_id"]) == ["g"]


def test_a_row_the_log_cannot_convert_is_quarantined_alone(queue, tmp_path, monkeypatch):
    real = worker_module._row

    def odd_row(item):  # a shape parse_event accepts but parquet cannot hold
        row = real(item)
        return {**row, "campaign_id": "not an int"} if item.event_id == "odd" else row

    monkeypatch.setattr(worker_module, "_row", odd_row)
    fill(queue, [("a", body("a")), ("odd", body("odd")), ("b", body("b"))])
    assert drain_once(queue, tmp_path / "events") == 2
    [letter] = queue.dead_letters()
    assert (letter.event_id, letter.reason) == ("odd", "not_storable")


def test_worker_command_drains_a_poison_queue_and_exits_cleanly(tmp_path):
    queue_path = tmp_path / "q.sqlite3"
    queue = SqliteQueue(queue_path)
    fill(queue, [*[(eid, raw) for eid, (raw, _reason) in POISON.items()], ("g", body("g"))])
    queue.close()
    env = {**os.environ, "CIO_MAVERA_DATA_DIR": str(tmp_path), "CIO_MAVERA_MODE": "live",
           "CIO_WEBHOOK_SECRET": "s"}
    done = subprocess.run([sys.executable, "-m", "cio_mavera.cli", "webhooks", "work", "--once", "--no-research",
                           "--queue", f"sqlite:///{queue_path}"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert b"6 dead letter(s) waiting" in done.stderr
    assert sorted(read_event_log(tmp_path / "events")["event_id"]) == ["g", "ms"]
