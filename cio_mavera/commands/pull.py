"""`cio-mavera pull campaigns|metrics|segments|customers`: fill the cache and say what it cost."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import pandas as pd

from .. import datasets
from ..connect import connect
from ..customerio.app import AppClient
from ..progress import progress_bar

WHAT = ("campaigns", "metrics", "segments", "customers")


def register(subparsers: Any) -> None:
    """Add the `pull` sub-command."""
    parser = subparsers.add_parser(
        "pull", help="pull Customer.io data into the parquet cache",
        description="Pull Customer.io data into data/cache/<mode>/<workspace>/ (the sandbox "
                    "when no keys are set) and print rows, requests made and seconds.")
    parser.add_argument("what", choices=WHAT, help="which dataset to pull")
    parser.add_argument("--segment", type=int, metavar="ID",
                        help="customers: only the members of this segment")
    parser.add_argument("--refresh", action="store_true",
                        help="pull again even if the cache is fresh")
    parser.add_argument("--days", type=int, default=90, metavar="N",
                        help="metrics: the last N days, daily buckets in UTC (default 90)")
    parser.set_defaults(handler=run)


def _metrics_window(days: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    # Whole days, so repeated pulls on the same day share one cache entry.
    end = pd.Timestamp.now(tz="UTC").floor("D")
    return end - pd.Timedelta(days=days), end


def run(args: argparse.Namespace) -> int:
    """Pull one dataset and print a one-line summary; returns the exit code."""
    if args.days < 1:
        print("cio-mavera: error: --days must be at least 1", file=sys.stderr)
        return 2
    if args.segment is not None and args.what != "customers":
        print("cio-mavera: error: --segment applies to `pull customers` only", file=sys.stderr)
        return 2
    conn = connect("customerio")
    started = time.monotonic()
    with AppClient(conn) as client:
        common = {"refresh": args.refresh, "client": client}
        if args.what == "campaigns":
            frames = {"campaigns": datasets.campaigns(conn, **common),
                      "actions": datasets.actions(conn, **common)}
        elif args.what == "segments":
            frames = {"segments": datasets.segments(conn, **common)}
        elif args.what == "metrics":
            start, end = _metrics_window(args.days)
            with progress_bar("metrics", "campaign") as progress:
                frames = {"metric rows": datasets.metrics(conn, start, end, progress=progress,
                                                          **common)}
        else:
            with progress_bar("customers", "people") as progress:
                frames = {"customers": datasets.customers(conn, args.segment, progress=progress,
                                                          **common)}
        stats = client.stats.snapshot()
    seconds = time.monotonic() - started
    rows = ", ".join(f"{len(df):,} {name}" for name, df in frames.items())
    cached = all(df.attrs.get("from_cache") for df in frames.values())
    print(f"{rows} | {stats['requests']:,} requests ({stats['rate_limited']} answered 429, "
          f"{stats['retries']} retries) | {seconds:.1f} s"
          f"{' | from cache' if cached else ''} | {conn.describe()}")
    path = next(iter(frames.values())).attrs.get("cache_path")
    if path:
        print(f"cached in {path}")
    return 0
