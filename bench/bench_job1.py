"""Job 1 (campaign-messaging) end to end through the installed CLI, cold then warm, against a sandbox.

    .venv/bin/python bench/bench_job1.py [--seed 7] [--customers 5000] [--runs-dir DIR]

Starts a sandbox server on loopback in this process and points the notebook's kernel at it in
live mode (CIO_APP_URL, CIO_TRACK_URL, MAVERA_BASE_URL and the keys from `/__sandbox__/env`), so
every request the kernel makes is counted by `/__sandbox__/stats`. Then runs
`cio-mavera run campaign-messaging` twice with the same data dir:

1. cold: empty cache; wall time of the whole command (process start, papermill, HTML).
2. warm: same parameters; it must make zero Customer.io and Mavera requests and spend zero credits.

Prints figures (and the slowest cells of each run); asserts nothing. Target: cold run < 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402

from cio_mavera.sandbox.server import start_sandbox  # noqa: E402

CLI = Path(sys.executable).with_name("cio-mavera")


def sandbox_stats(url: str) -> dict:
    return httpx.get(f"{url}/__sandbox__/stats", timeout=10).json()


def requests_by_api(before: dict, after: dict) -> dict[str, int]:
    """Requests made between two /stats snapshots, split into Customer.io and Mavera."""
    counts = {"customerio": 0, "mavera": 0}
    for route, n in after["requests"].items():
        delta = n - before["requests"].get(route, 0)
        path = route.split(" ", 1)[-1]
        counts["mavera" if path.startswith("/mavera") else "customerio"] += delta
    return counts


def run_cli(env: dict[str, str], out: Path) -> tuple[float, Path]:
    """Run the job through the installed console script; (seconds, run directory)."""
    started = time.perf_counter()
    done = subprocess.run([str(CLI), "run", "campaign-messaging", "-p", "days", "30", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"run failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    report = next(line.split(":", 1)[1].strip() for line in done.stdout.splitlines()
                  if line.startswith("report:"))
    return seconds, Path(report).parent


def slowest_cells(run_dir: Path, n: int = 4) -> str:
    nb = nbformat.read(run_dir / "notebook.ipynb", as_version=4)
    timed = [(c.metadata.get("papermill", {}).get("duration") or 0.0, c.source.splitlines()[0][:48])
             for c in nb.cells if c.cell_type == "code" and c.source]
    return "; ".join(f"{s:.1f}s `{src}`" for s, src in sorted(timed, reverse=True)[:n])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--runs-dir", type=Path, default=None, help="keep the runs here (default: a temp dir)")
    args = parser.parse_args()
    if not CLI.exists():
        sys.exit(f"{CLI} not found: install the kit first (make setup)")

    work = args.runs_dir or Path(tempfile.mkdtemp(prefix="bench-job1-"))
    work.mkdir(parents=True, exist_ok=True)
    server = start_sandbox(seed=args.seed, customers=args.customers)
    try:
        keys = httpx.get(f"{server.url}/__sandbox__/env", timeout=10).json()
        env = {**os.environ, **keys, "CIO_MAVERA_MODE": "live",
               "CIO_MAVERA_DATA_DIR": str(work / "data"), "MPLBACKEND": "Agg"}
        env.pop("CIO_MAVERA_REDIS_URL", None)
        print(f"job 1 bench: sandbox seed {args.seed}, {args.customers} customers at {server.url} "
              f"(App API {server.state.config.app_rps:g} req/s); runs in {work}")
        rows = []
        for label in ("cold", "warm"):
            before = sandbox_stats(server.url)
            seconds, run_dir = run_cli(env, work / "reports")
            after = sandbox_stats(server.url)
            made = requests_by_api(before, after)
            credits = after["credits_charged"] - before["credits_charged"]
            results = json.loads((run_dir / "results.json").read_text())
            rows.append((label, seconds, made, credits, results, run_dir))
            print(f"{label:>5}: {seconds:6.1f} s end to end (CLI, papermill, HTML) | requests: Customer.io "
                  f"{made['customerio']}, Mavera {made['mavera']} | credits charged {credits} "
                  f"(results.json credits_spent {results['credits_spent']}) | flagged "
                  f"{len(results['flagged_underperformers'])}, variations {len(results['ranked_variations'])}")
            print(f"       slowest cells: {slowest_cells(run_dir)}")
        cold, warm = rows
        print(f"target cold < 60 s: {'met' if cold[1] < 60 else 'MISSED'} ({cold[1]:.1f} s); warm re-run: "
              f"{sum(warm[2].values())} requests, {warm[3]} credits "
              f"({'met' if not sum(warm[2].values()) and not warm[3] else 'MISSED'})")
    finally:
        server.stop()
        if args.runs_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
