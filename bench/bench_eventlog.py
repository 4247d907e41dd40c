"""Job 3's event log at scale: one trigger pass over a big log, then an incremental pass after new events.

    .venv/bin/python bench/bench_eventlog.py [--events 10000000] [--days 120] [--new 100000] [--keep DIR]

1. Writes `--events` synthetic events (`cio_mavera.eventlog.synthetic`: deliveries of 40 campaigns,
   each sent and delivered, some opened, clicked, bounced, unsubscribed, marked as spam; a
   webhook-sized payload per row) over `--days` days, in parts of 50,000 rows, then compacts them
   (`eventlog.layout.compact`: a day's parts merged into time-sorted files).
2. Trigger pass, in a fresh process (its peak RSS is the pass's): `HourlyCounts.update()` from
   nothing (DuckDB over every partition), then what the worker's research loop does each interval:
   the horizon (the last 28 days, cut to whole days holding <= 1,000,000 events) read through DuckDB
   into pandas, job 3's enrichment (`enrichment.enrich`, with a plan and cluster per cio_id made up
   here instead of read from Customer.io and job 2) and its trigger statistics (`find_triggers`) on it.
3. Writes `--new` events of the following day as the worker would (parts of 500 rows, compacted
   every 32 parts), then the incremental pass, in a fresh process: `HourlyCounts.update()` (only the
   days whose files changed), then the same horizon read and trigger statistics.

Targets (issue 12, 10,000,000 events on 2 cores): trigger pass < 60 s and < 2 GB peak RSS;
incremental pass after 100,000 new events < 5 s. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cio_mavera.eventlog import layout  # noqa: E402
from cio_mavera.eventlog.query import HourlyCounts  # noqa: E402
from cio_mavera.eventlog.synthetic import (  # noqa: E402
    EVENTS_PER_DELIVERY,
    by_day,
    synthetic_day,
    write_synthetic_log,
)
from cio_mavera.jobs.retention.data import read_recent_events  # noqa: E402
from cio_mavera.jobs.retention.enrichment import enrich  # noqa: E402
from cio_mavera.jobs.retention.triggers import find_triggers  # noqa: E402

START = 1_780_000_000 // 86400 * 86400  # a day boundary (2026-05-28)
HORIZON_DAYS, MAX_EVENTS = 28, 1_000_000  # the research loop's defaults
CLUSTERS = ("Power users", "Small teams", "Dormant trials", "Growing accounts")


def trigger_pass(root: Path, max_events: int = MAX_EVENTS) -> dict:
    """One research-loop evaluation without Mave: counts, horizon read, trigger statistics."""
    out: dict = {}
    started = time.perf_counter()
    update = HourlyCounts(root).update()
    out["counts_s"] = time.perf_counter() - started
    out["counts_days"] = f"{len(update.days_read)} of {update.days_total}"
    out["counts_rows"] = update.rows_read
    mark = time.perf_counter()
    events = read_recent_events(root, HORIZON_DAYS, max_events)
    out["read_s"] = time.perf_counter() - mark
    out["horizon_rows"], out["horizon_days"] = len(events), int(events["day"].nunique())
    mark = time.perf_counter()
    people = pd.DataFrame({"cio_id": events["cio_id"].dropna().unique()})
    code = people["cio_id"].str[1:].astype(np.int64) % 4
    people["plan"] = np.where(code < 2, "pro", "free")
    clusters = people[["cio_id"]].assign(cluster=code, cluster_name=code.map(dict(enumerate(CLUSTERS))))
    events = enrich(events, people, clusters)
    result = find_triggers(events)
    out["stats_s"] = time.perf_counter() - mark
    out["triggers"] = len(result.triggers)
    out["total_s"] = time.perf_counter() - started
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def in_child(root: Path, max_events: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", str(root), "--max-events", str(max_events)],
                          capture_output=True, text=True,
                          cwd=ROOT, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"pass failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def add_new_events(root: Path, n: int, day_start: int) -> tuple[int, int]:
    """`n` events of one more day, written as the worker writes (500-row parts, compaction every 32)."""
    rng = np.random.default_rng(99)
    per = max(1, round(n / EVENTS_PER_DELIVERY))
    table = synthetic_day(day_start, per, rng=rng, id_offset=10**10)
    written, parts = 0, 0
    for day, rows in by_day(table):
        for i in range(0, rows.num_rows, 500):
            layout.write_part(root, day, rows.slice(i, 500))
            parts += 1
            if parts % 32 == 0:
                layout.compact_day(root, day)
        written += rows.num_rows
    return written, parts


def _mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*.parquet")) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="events in the log (default 10,000,000)")
    parser.add_argument("--days", type=int, default=120, help="days they span (default 120)")
    parser.add_argument("--new", type=int, default=100_000, help="events added before the incremental pass")
    parser.add_argument("--keep", type=Path, default=None, help="write the log here and keep it")
    parser.add_argument("--max-events", type=int, default=MAX_EVENTS,
                        help=f"events the trigger horizon may hold (default {MAX_EVENTS:,}, the research loop's)")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(trigger_pass(args.child, args.max_events)))
        return

    tmp = None if args.keep else tempfile.mkdtemp(prefix="cio-bench-eventlog-")
    root = (args.keep or Path(tmp)) / "events"
    try:
        started = time.perf_counter()
        rows = write_synthetic_log(root, args.events, start=START, days=args.days, seed=1, part_rows=50_000)
        write_s = time.perf_counter() - started
        files = len(layout.part_files(root))
        started = time.perf_counter()
        layout.compact(root)
        compact_s = time.perf_counter() - started
        print(f"log: {rows:,} events over {len(layout.days(root))} day partitions, {_mb(root):,.0f} MB of parquet; "
              f"written in {write_s:.1f} s as {files} parts, compacted into {len(layout.part_files(root))} "
              f"files in {compact_s:.1f} s", flush=True)

        full = in_child(root, args.max_events)
        added, parts = add_new_events(root, args.new, START + args.days * 86400)
        incremental = in_child(root, args.max_events)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{'pass':<28} {'counts s':>8} {'days read':>11} {'horizon read s':>14} {'horizon events':>14} "
          f"{'stats s':>7} {'triggers':>8} {'total s':>7} {'peak RSS MB':>11}")
    for name, r in ((f"trigger pass ({rows:,} events)", full),
                    (f"incremental (+{added:,} events)", incremental)):
        print(f"{name:<28} {r['counts_s']:>8.2f} {r['counts_days']:>11} {r['read_s']:>14.2f} "
              f"{r['horizon_rows']:>14,} {r['stats_s']:>7.2f} {r['triggers']:>8} {r['total_s']:>7.2f} "
              f"{r['peak_rss_mb']:>11.0f}")
    print(f"\ncounts = HourlyCounts.update() (DuckDB; the incremental pass reads only changed days); horizon = "
          f"the last {HORIZON_DAYS} days cut to <= {args.max_events:,} events, read by DuckDB into pandas "
          f"({full['horizon_days']} days); stats = enrich + find_triggers on that frame (not incremental: it reads the "
          f"whole horizon each interval). New events written as {parts} worker-sized parts. "
          f"Targets: pass < 60 s and < 2,048 MB; incremental < 5 s.")


if __name__ == "__main__":
    main()
