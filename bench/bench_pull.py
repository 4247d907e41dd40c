"""Speed of `pull customers --via api` against a sandbox with 20 ms latency and the 10 req/s App limit.

(`bench_export.py` measures the export path, and compares the two at 1,000,000 people.)

Prints figures, asserts nothing. The sandbox runs in its own process so that neither its CPU nor
its memory is counted against the client. `--quick` shrinks the workspaces for a fast look.

    .venv/bin/python bench/bench_pull.py [--quick]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cio_mavera import datasets  # noqa: E402
from cio_mavera.connect import Connection  # noqa: E402
from cio_mavera.customerio.app import AppClient  # noqa: E402
from cio_mavera.settings import Secret, Settings  # noqa: E402

SERVE = """
import json, sys, time
from cio_mavera.sandbox.server import start_sandbox
server = start_sandbox(**json.loads(sys.argv[1]))
server.state.workspace
print(server.url, flush=True)
while True:
    time.sleep(3600)
"""

PEAK_PULL = """
import resource, sys
from cio_mavera.cli import main
code = main(["pull", "customers", "--via", "api"])
print("peak_rss_mb %.0f" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
sys.exit(code)
"""


class Sandbox:
    """A sandbox server in a child process."""

    def __init__(self, **knobs: object) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", SERVE, json.dumps(knobs)],
                                        stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url:
            raise RuntimeError("sandbox did not start")
        self.env = httpx.get(f"{self.url}/__sandbox__/env").json()

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/__sandbox__/stats").json()

    def reset(self) -> None:
        httpx.post(f"{self.url}/__sandbox__/reset").raise_for_status()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()

    def settings(self, data_dir: Path) -> Settings:
        return Settings(site_id=self.env["CIO_SITE_ID"], api_key=Secret(self.env["CIO_API_KEY"]),
                        app_key=Secret(self.env["CIO_APP_KEY"]),
                        app_url_override=self.env["CIO_APP_URL"],
                        track_url_override=self.env["CIO_TRACK_URL"], data_dir=data_dir,
                        mode="live")

    def cli_env(self, data_dir: Path) -> dict[str, str]:
        return {**os.environ, **self.env, "CIO_MAVERA_MODE": "live", "TQDM_DISABLE": "1",
                "CIO_MAVERA_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}

    def warm_up(self, conn: Connection) -> None:
        """Let the sandbox build its lookups (it does so lazily, stalling its first answers)."""
        with AppClient(conn) as client:
            first = next(iter(client.search_customers(limit=5)))
            client.customers_attributes([first[0]["cio_id"]])
            segments = client.segments()
            next(iter(client.segment_members(segments[0]["id"], limit=5)), None)
        time.sleep(1.1)
        self.reset()


def _conn(sandbox: Sandbox, data_dir: Path) -> Connection:
    return Connection(sandbox.settings(data_dir), "live", "bench")


def bench_bulk(n: int, sample: int) -> None:
    sandbox = Sandbox(customers=n, latency_ms=20, app_rps=10)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            conn = _conn(sandbox, Path(tmp))
            sandbox.warm_up(conn)
            minimum = math.ceil(n / 1000) + math.ceil(n / 100)
            started = time.monotonic()
            df = datasets.customers(conn, via="api")
            seconds = time.monotonic() - started
            stats = sandbox.stats()
            requests = stats["requests_total"]
            ideal = requests / 10
            print(f"cold pull of {n:,} customers x {df.shape[1] - 3} attributes: {len(df):,} rows")
            print(f"  seconds {seconds:.2f} vs requests/10 = {ideal:.2f} "
                  f"({(seconds / ideal - 1) * 100:+.1f}%)")
            print(f"  requests {requests} vs minimum {minimum} "
                  f"({(requests / minimum - 1) * 100:+.1f}%); 429s received "
                  f"{stats['rate_limited_total']}")

            sandbox.reset()
            started = time.monotonic()
            warm = datasets.customers(conn, via="api")
            warm_s = time.monotonic() - started
            print(f"warm pull: {len(warm):,} rows, {sandbox.stats()['requests_total']} requests, "
                  f"{warm_s:.3f} s")

            naive_s = bench_naive(sandbox, conn, df["cio_id"].head(sample).tolist())
            estimate = naive_s / sample * n + math.ceil(n / 1000) * 0.12
            print(f"naive way (one GET per customer, 120 ms apart): {sample} customers took "
                  f"{naive_s:.2f} s -> {estimate:.0f} s for {n:,} "
                  f"({estimate / seconds:.1f}x slower, {n + math.ceil(n / 1000):,} requests)")

        with tempfile.TemporaryDirectory() as tmp:
            bench_two_at_once(sandbox, Path(tmp), n)
    finally:
        sandbox.stop()


def bench_naive(sandbox: Sandbox, conn: Connection, cio_ids: list[str]) -> float:
    """One request per customer, 120 ms apart, as a hand-written loop would do it."""
    sandbox.reset()
    started = time.monotonic()
    with httpx.Client(base_url=conn.settings.app_url,
                      headers={"Authorization": f"Bearer {conn.settings.app_key.reveal()}"}) as http:
        for cio_id in cio_ids:
            http.get(f"/v1/customers/{cio_id}/attributes", params={"id_type": "cio_id"})
            time.sleep(0.12)
    return time.monotonic() - started


def bench_two_at_once(sandbox: Sandbox, data_dir: Path, n: int) -> None:
    """Two `pull customers` processes of one workspace at once: everyone, and a big segment."""
    conn = _conn(sandbox, data_dir)
    segments = datasets.segments(conn)
    with AppClient(conn) as client:
        counts = {int(s): client.segment_customer_count(int(s)) for s in segments["segment_id"]}
    segment = max((s for s, c in counts.items() if c < n), key=counts.__getitem__)
    time.sleep(1.1)
    sandbox.reset()
    env = sandbox.cli_env(data_dir)
    started = time.monotonic()
    runs = [subprocess.Popen([sys.executable, "-m", "cio_mavera.cli", "pull", "customers",
                              "--via", "api", *extra],
                             env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
            for extra in ([], ["--segment", str(segment)])]
    outputs = [run.communicate()[0].strip().splitlines()[0] for run in runs]
    seconds = time.monotonic() - started
    stats = sandbox.stats()
    print(f"two pulls at once ({n:,} customers and segment {segment} of {counts[segment]:,}): "
          f"{stats['requests_total']} requests in {seconds:.1f} s "
          f"({stats['requests_total'] / seconds:.1f} req/s incl. process start), "
          f"429s received {stats['rate_limited_total']}")
    for line in outputs:
        print(f"  {line}")


def bench_memory(n: int) -> None:
    """The big pull in its own process, reporting that process's peak RSS."""
    started = time.monotonic()
    sandbox = Sandbox(customers=n, latency_ms=20, app_rps=10)
    print(f"{n:,}-customer sandbox started in {time.monotonic() - started:.1f} s")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sandbox.warm_up(_conn(sandbox, Path(tmp)))
            started = time.monotonic()
            run = subprocess.run([sys.executable, "-c", PEAK_PULL], env=sandbox.cli_env(Path(tmp)),
                                 cwd=ROOT, capture_output=True, text=True)
            seconds = time.monotonic() - started
            print(f"big pull ({n:,} customers) in {seconds:.1f} s, exit {run.returncode}:")
            for line in run.stdout.strip().splitlines():
                print(f"  {line}")
            stats = sandbox.stats()
            size = sum(p.stat().st_size for p in Path(tmp).rglob("*.parquet"))
            print(f"  server: {stats['requests_total']} requests, "
                  f"{stats['rate_limited_total']} answered 429; cache {size / 1e6:.1f} MB parquet")
            if run.returncode:
                print(run.stderr[-2000:])
    finally:
        sandbox.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small workspaces (about 30 s)")
    args = parser.parse_args()
    n, big, sample = (2_000, 20_000, 30) if args.quick else (10_000, 100_000, 100)
    bench_bulk(n, sample)
    bench_memory(big)


if __name__ == "__main__":
    main()
