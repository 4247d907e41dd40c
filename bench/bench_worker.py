"""Worker throughput beside the receiver's: events/s queue -> parquet event log, SQLite and Redis Streams.

    .venv/bin/python bench/bench_worker.py [--events 20000] [--batch 500] [--scenarios sqlite,redis]

For each queue backend: one receiver (`cio-mavera webhooks serve`, its own process, as in
`bench_receiver.py`) accepts `--events` signed events of the sandbox stream as fast as a
32-connection loopback client sends them (closed loop: the receiver's accepted events/s); then the
worker drains that queue into a fresh event log twice, on copies of the same queue where the backend
allows (SQLite) or from a second fill (Redis): plain (`drain`), and with job 3's per-interval DuckDB
step in the loop (`+ counts`: `HourlyCounts.update()` after a batch once `--interval` seconds have passed,
default 1 s, 60 times as often as the worker's default research interval; `--interval 0` runs it after
every batch, the worst case). Each figure is rows
written to the log over the drain's wall time; the worker runs in this process. Redis runs as a
throwaway `redis-server` on 127.0.0.1 and a free port (`tests/redis_server.py`), stopped afterwards.
Last, the backfill's side of the log: `--backfill` deliveries in the shape of a deliveries export
(string columns, one time per metric reached) turned into log rows (`append_export_frame`).
Prints figures, asserts nothing. Target (issue 12): the worker stays ahead of the receiver.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from redis_server import RedisServer, redis_available  # noqa: E402

from cio_mavera.eventlog.backfill import BackfillResult, append_export_frame  # noqa: E402
from cio_mavera.eventlog.query import HourlyCounts  # noqa: E402
from cio_mavera.receiver.queues import WebhookQueue, open_queue  # noqa: E402
from cio_mavera.receiver.worker import EventLog, process_batch  # noqa: E402
from cio_mavera.sandbox.webhooks import webhook_stream  # noqa: E402


def _receiver_bench():
    """bench_receiver.py as a module: its receiver processes and loopback client measure the receiver here too."""
    spec = importlib.util.spec_from_file_location("bench_receiver", ROOT / "bench" / "bench_receiver.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def drain(queue: WebhookQueue, events_dir: Path, batch: int, interval: float | None) -> tuple[int, float, int]:
    """Drain the queue into a fresh log, updating hourly counts every `interval` s (None: never);
    returns (rows written, seconds, count updates)."""
    log = EventLog(events_dir)
    counts = HourlyCounts(events_dir) if interval is not None else None
    written, updates = 0, 0
    started = last = time.perf_counter()
    while True:
        items = queue.claim("bench-worker", max_items=batch, block_ms=0)
        if not items:
            break
        written += process_batch(queue, log, items)
        if counts is not None and time.perf_counter() - last >= interval:
            counts.update()
            updates += 1
            last = time.perf_counter()
    if counts is not None:  # the interval's last update, as the research loop would run it
        counts.update()
        updates += 1
    return written, time.perf_counter() - started, updates


def backfill_rate(events_dir: Path, deliveries: int) -> tuple[int, float]:
    """Export-shaped deliveries into a fresh log, 20,000 rows a part; returns (rows written, seconds)."""
    rng = np.random.default_rng(0)
    created = 1_774_000_000 + rng.integers(0, 30 * 86400, deliveries)
    frame = pd.DataFrame({
        "delivery_id": [f"D{i}" for i in range(deliveries)], "cio_id": [f"c{i % 5000}" for i in range(deliveries)],
        "id": [f"u{i % 5000}" for i in range(deliveries)], "email": "a@b.example", "recipient": "a@b.example",
        "type": "email", "campaign_id": "11", "action_id": "7", "subject": "Hello", "created": created.astype(str),
        "sent": (created + 60).astype(str), "delivered": (created + 120).astype(str),
        "opened": np.where(rng.random(deliveries) < 0.3, (created + 3600).astype(str), None),
        "unsubscribed": np.where(rng.random(deliveries) < 0.01, (created + 7200).astype(str), None)})
    log = EventLog(events_dir, compact_after=0)
    result = BackfillResult(0, 2_000_000_000, [11])
    started = time.perf_counter()
    for i in range(0, deliveries, 20_000):
        append_export_frame(log, frame.iloc[i:i + 20_000], result, set(), 0, 2_000_000_000, time.time())
    return result.written, time.perf_counter() - started


def enqueue_all(queue: WebhookQueue, events: list) -> None:
    """Fill a queue directly, as the receiver would (for the second Redis drain)."""
    async def go() -> None:
        for i in range(0, len(events), 500):
            await asyncio.gather(*(queue.enqueue(e.event_id, e.body, time.time()) for e in events[i:i + 500]))

    asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000, help="events the receiver accepts (default 20000)")
    parser.add_argument("--batch", type=int, default=500, help="events per claim (default 500, as `webhooks work`)")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between hourly-count updates in the '+ counts' drain (default 1)")
    parser.add_argument("--scenarios", default="sqlite,redis")
    parser.add_argument("--backfill", type=int, default=50_000, help="export deliveries to backfill (default 50,000)")
    args = parser.parse_args()
    run_scenario = _receiver_bench().run_scenario

    print(f"generating {args.events} signed-stream events ...", flush=True)
    events = webhook_stream(seed=7, customers=5000, n_events=args.events)
    runs = {"closed-loop": (events, None)}
    rows = []
    with tempfile.TemporaryDirectory(prefix="cio-bench-worker-") as tmp:
        tmp_path = Path(tmp)
        for scenario in args.scenarios.split(","):
            if scenario == "sqlite":
                path = tmp_path / "bench.sqlite3"
                [received] = run_scenario("sqlite", 1, f"sqlite:///{path}", tmp_path, runs, 32)
                for variant in ("drain", "+ counts"):
                    copy = tmp_path / f"copy-{variant[0]}.sqlite3"
                    queue = open_queue(f"sqlite:///{path}")
                    queue.close()  # checkpointed: the copy holds every committed event
                    shutil.copy(path, copy)
                    queue = open_queue(f"sqlite:///{copy}")
                    try:
                        result = drain(queue, tmp_path / f"events-sqlite-{variant[0]}", args.batch,
                                       None if variant == "drain" else args.interval)
                    finally:
                        queue.close()
                    rows.append(("sqlite", variant, received, *result))
            elif scenario == "redis":
                if not redis_available():
                    print("skipping redis: redis-server not installed")
                    continue
                with RedisServer() as server:
                    [received] = run_scenario("redis", 1, server.url, tmp_path, runs, 32)
                    for variant in ("drain", "+ counts"):
                        if variant != "drain":  # the first drain acked everything: fill it again
                            server.flush()
                        queue = open_queue(server.url)
                        try:
                            if variant != "drain":
                                enqueue_all(queue, events)
                            result = drain(queue, tmp_path / f"events-redis-{variant[0]}", args.batch,
                                           None if variant == "drain" else args.interval)
                        finally:
                            queue.close()
                        rows.append(("redis", variant, received, *result))
            else:
                raise SystemExit(f"unknown scenario {scenario}")
        backfilled, backfill_s = backfill_rate(tmp_path / "events-backfill", args.backfill)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{'queue':<7} {'worker':<9} {'receiver accepted/s':>19} {'rows':>7} {'worker s':>8} "
          f"{'worker events/s':>15} {'count updates':>13} {'worker/receiver':>15}")
    for queue_name, variant, received, written, seconds, updates in rows:
        rate = written / seconds if seconds else float("nan")
        print(f"{queue_name:<7} {variant:<9} {received['events_per_s']:>19.0f} {written:>7} {seconds:>8.2f} "
              f"{rate:>15.0f} {updates:>13} {rate / received['events_per_s']:>14.2f}x")
    print(f"\n{args.events} signed sandbox-stream events (its duplicates included: rows = unique event_ids); "
          f"batches of {args.batch}; '+ counts' updates every {args.interval:g} s and once at the end")
    print(f"backfill: {args.backfill:,} export deliveries -> {backfilled:,} log rows in {backfill_s:.2f} s "
          f"({backfilled / backfill_s:,.0f} events/s); peak RSS of this process (worker + client) {peak:.0f} MB")


if __name__ == "__main__":
    main()
