"""`cio-mavera pull campaigns|metrics|segments|customers`: fill the cache and say what it cost.

`pull customers` never loads the people into memory (a million of them would not fit a small
machine): it fills the cache in parts, through an export above `datasets.EXPORT_ABOVE` people.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from typing import Any

import pandas as pd

from .. import datasets
from ..connect import connect
from ..customerio.app import AppClient
from ..customerio.exports import Export
from ..progress import Progress, progress_bar

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
    parser.add_argument("--via", choices=datasets.VIA, default="auto",
                        help="customers: through a Customer.io export or the API (search + bulk "
                             f"attributes); auto (default) exports above "
                             f"{datasets.EXPORT_ABOVE:,} people")
    parser.set_defaults(handler=run)


def _metrics_window(days: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    # Whole days, so repeated pulls on the same day share one cache entry.
    end = pd.Timestamp.now(tz="UTC").floor("D")
    return end - pd.Timedelta(days=days), end


class _ExportSteps:
    """A bar over an export's steps (asked for, written, downloaded), drawn once one is under way."""

    TOTAL = 3

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self.stack = stack
        self.bar: Progress | None = None
        self.started = False

    def __call__(self, export: Export) -> None:
        if not self.started:
            self.started = True
            self.bar = self.stack.enter_context(progress_bar(f"export {export.id}", "step"))
        if self.bar is not None:
            self.bar(2 if export.done else 1, self.TOTAL)

    def downloaded(self) -> None:
        if self.bar is not None:
            self.bar(self.TOTAL, self.TOTAL)


def _pull_customers(conn: Any, client: AppClient, args: argparse.Namespace
                    ) -> datasets.CustomersPull:
    with contextlib.ExitStack() as stack:
        steps = _ExportSteps(stack)
        progress = stack.enter_context(progress_bar("customers", "people"))
        pulled = datasets.pull_customers(
            conn, args.segment, via=args.via, refresh=args.refresh, client=client,
            progress=progress, on_state=steps,
            on_choice=lambda choice: print(f"customers: {choice.reason}", file=sys.stderr))
        steps.downloaded()
    return pulled


def run(args: argparse.Namespace) -> int:
    """Pull one dataset and print a one-line summary; returns the exit code."""
    if args.days < 1:
        print("cio-mavera: error: --days must be at least 1", file=sys.stderr)
        return 2
    if args.segment is not None and args.what != "customers":
        print("cio-mavera: error: --segment applies to `pull customers` only", file=sys.stderr)
        return 2
    if args.via != "auto" and args.what != "customers":
        print("cio-mavera: error: --via applies to `pull customers` only", file=sys.stderr)
        return 2
    conn = connect("customerio")
    started = time.monotonic()
    customers: datasets.CustomersPull | None = None
    frames: dict[str, pd.DataFrame] = {}
    with AppClient(conn) as client:
        common = {"refresh": args.refresh, "client": client}
        if args.what == "customers":
            customers = _pull_customers(conn, client, args)
        elif args.what == "campaigns":
            frames = {"campaigns": datasets.campaigns(conn, **common),
                      "actions": datasets.actions(conn, **common)}
        elif args.what == "segments":
            frames = {"segments": datasets.segments(conn, **common)}
        else:
            start, end = _metrics_window(args.days)
            with progress_bar("metrics", "campaign") as progress:
                frames = {"metric rows": datasets.metrics(conn, start, end, progress=progress,
                                                          **common)}
        stats = client.stats.snapshot()
    seconds = time.monotonic() - started
    if customers is not None:
        rows, cached, path = f"{customers.rows:,} customers", customers.from_cache, \
            customers.cache_path
        how = "" if customers.via is None else f" | via {customers.via}" + (
            f" {customers.export_id} ({customers.file_downloads} file download"
            f"{'s' if customers.file_downloads != 1 else ''})" if customers.via == "export" else "")
    else:
        rows = ", ".join(f"{len(df):,} {name}" for name, df in frames.items())
        cached = all(df.attrs.get("from_cache") for df in frames.values())
        path = next(iter(frames.values())).attrs.get("cache_path")
        how = ""
    print(f"{rows} | {stats['requests']:,} requests ({stats['rate_limited']} answered 429, "
          f"{stats['retries']} retries) | {seconds:.1f} s{how}"
          f"{' | from cache' if cached else ''} | {conn.describe()}")
    if path:
        print(f"cached in {path}")
    return 0
