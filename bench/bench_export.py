"""`pull customers` of a whole workspace through a Customer.io export vs through the API.

Against a sandbox with 20 ms latency and the 10 req/s App limit, running in its own process so
that neither its CPU nor its memory counts against the client. Each pull runs in a fresh child
process that reports its own peak RSS. Prints figures, asserts nothing.

By default: 1,000,000 people through the export path (measured), and the API path measured on
20,000 people and extrapolated to 1,000,000 by its request count (the API path makes
n/1000 + n/100 requests at 10 a second, so it scales linearly; the extrapolation says so).
`--api-size N` measures the API path on N people instead; `--full` measures it on the export's
size too (about 19 minutes for 1,000,000). `--size N` changes the export's size.

    .venv/bin/python bench/bench_export.py [--size N] [--api-size N] [--full]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]

# The sandbox in its own process, with the export delay it is told (the time Customer.io takes
# before it starts writing the file is not documented; the sandbox adds its writing time).
SERVE = """
import json, sys, time
from cio_mavera.sandbox.server import start_sandbox
knobs = json.loads(sys.argv[1])
delay = knobs.pop("export_delay_s")
server = start_sandbox(**knobs)
server.state.cio.exports.delay_s = delay
print(server.url, flush=True)
while True:
    time.sleep(3600)
"""

# One pull in a child process: phases timed through the callbacks, its own peak RSS at the end.
PULL = """
import json, resource, sys, time
from cio_mavera import datasets
from cio_mavera.connect import connect
from cio_mavera.customerio.app import AppClient

via = sys.argv[1]
marks = {}
started = time.monotonic()

def on_state(export):
    marks.setdefault("asked", time.monotonic() - started)
    if export.done:
        marks["done"] = time.monotonic() - started

conn = connect("customerio")
with AppClient(conn) as client:
    pulled = datasets.pull_customers(conn, via=via, refresh=True, client=client,
                                     on_state=on_state)
    stats = client.stats.snapshot()
print(json.dumps({"rows": pulled.rows, "requests": pulled.requests, "rate_limited":
                  stats["rate_limited"], "retries": stats["retries"],
                  "file_downloads": pulled.file_downloads, "seconds": pulled.seconds,
                  "export_id": pulled.export_id, "cache_path": pulled.cache_path, **marks,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


class Sandbox:
    """A sandbox server in a child process."""

    def __init__(self, customers: int, export_delay_s: float = 5.0) -> None:
        started = time.monotonic()
        knobs = {"customers": customers, "latency_ms": 20, "app_rps": 10,
                 "export_delay_s": export_delay_s}
        self.process = subprocess.Popen([sys.executable, "-c", SERVE, json.dumps(knobs)],
                                        stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url:
            raise RuntimeError("sandbox did not start")
        self.started_s = time.monotonic() - started
        self.env = httpx.get(f"{self.url}/__sandbox__/env").json()

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/__sandbox__/stats").json()

    def reset(self) -> None:
        time.sleep(1.1)  # let the App API's one-second window empty before a measured run
        httpx.post(f"{self.url}/__sandbox__/reset").raise_for_status()

    def export(self, export_id: int) -> dict:
        """The export as the App API describes it (after the pull: not counted in it)."""
        headers = {"Authorization": f"Bearer {self.env['CIO_APP_KEY']}"}
        response = httpx.get(f"{self.env['CIO_APP_URL']}/v1/exports/{export_id}", headers=headers)
        response.raise_for_status()
        return response.json()["export"]

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()

    def pull(self, via: str, data_dir: Path) -> dict:
        env = {**os.environ, **self.env, "CIO_MAVERA_MODE": "live", "TQDM_DISABLE": "1",
               "CIO_MAVERA_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
        run = subprocess.run([sys.executable, "-c", PULL, via], env=env, cwd=ROOT,
                             capture_output=True, text=True)
        if run.returncode:
            raise RuntimeError(f"pull via {via} failed:\n{run.stderr[-3000:]}")
        return json.loads(run.stdout.strip().splitlines()[-1])


def stored_rows(cache_path: str) -> tuple[int, int, float]:
    """(rows in the parquet parts, number of parts, MB on disk), read from the files themselves."""
    parts = sorted(Path(cache_path).glob("*.parquet"))
    data = [p for p in parts if p.name.startswith(("export-", "part-"))]
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in data)
    return rows, len(data), sum(p.stat().st_size for p in data) / 1e6


def api_requests(n: int) -> int:
    """Requests of the API path for n people: search pages of 1,000, then bulk reads of 100
    (`--via api`; the default `auto` adds one request to count the people)."""
    return math.ceil(n / 1000) + math.ceil(n / 100)


def bench_export(n: int) -> dict:
    sandbox = Sandbox(n)
    print(f"{n:,}-customer sandbox started in {sandbox.started_s:.1f} s")
    try:
        sandbox.reset()
        with tempfile.TemporaryDirectory() as tmp:
            result = sandbox.pull("export", Path(tmp))
            stats = sandbox.stats()
            export = sandbox.export(result["export_id"])
            rows, parts, size = stored_rows(result["cache_path"])
    finally:
        sandbox.stop()
    wait_s = result.get("done", 0.0)
    print(f"export path, {n:,} people: {result['rows']:,} rows in {result['seconds']:.1f} s "
          f"(waiting for the export {wait_s:.1f} s incl. the sandbox writing its file, "
          f"download + parse + store {result['seconds'] - wait_s:.1f} s)")
    print(f"  requests: {result['requests']} App API ({result['rate_limited']} answered 429) + "
          f"{result['file_downloads']} file download; server saw {stats['requests_total']}")
    print(f"  peak RSS of the pull {result['peak_rss_mb']:.0f} MB")
    print(f"  rows served (export total) {export['total']:,} = rows stored (parquet) {rows:,}: "
          f"{export['total'] == rows == result['rows']} ({parts} parts, {size:.0f} MB)")
    return result


def bench_api(n: int) -> dict:
    sandbox = Sandbox(n)
    try:
        sandbox.reset()
        with tempfile.TemporaryDirectory() as tmp:
            result = sandbox.pull("api", Path(tmp))
            stats = sandbox.stats()
            rows, _, _ = stored_rows(result["cache_path"])
    finally:
        sandbox.stop()
    print(f"API path, {n:,} people: {result['rows']:,} rows in {result['seconds']:.1f} s, "
          f"{result['requests']:,} requests (formula {api_requests(n):,}; "
          f"{result['rate_limited']} answered 429, server saw {stats['requests_total']}), "
          f"peak RSS {result['peak_rss_mb']:.0f} MB, rows stored {rows:,}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="people in the export run")
    parser.add_argument("--api-size", type=int, default=20_000,
                        help="people in the measured API run (default 20,000)")
    parser.add_argument("--full", action="store_true",
                        help="also measure the API path at --size (about 19 min for 1,000,000)")
    args = parser.parse_args()
    exported = bench_export(args.size)
    api = bench_api(args.size if args.full else args.api_size)
    if not args.full:
        per_request = api["seconds"] / api["requests"]
        requests = api_requests(args.size)
        print(f"API path extrapolated to {args.size:,} people: {requests:,} requests x "
              f"{per_request:.3f} s measured per request = {requests * per_request / 60:.1f} min "
              f"(peak RSS not extrapolated: --full measures it)")
        api_s = requests * per_request
    else:
        api_s = api["seconds"]
    print(f"export path vs API path at {args.size:,} people: {exported['seconds']:.0f} s vs "
          f"{api_s:.0f} s ({api_s / exported['seconds']:.0f}x), "
          f"{exported['requests'] + exported['file_downloads']} vs "
          f"{api_requests(args.size):,} requests")


if __name__ == "__main__":
    main()
