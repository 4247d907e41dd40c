"""`cio-mavera demo [--out DIR]`: every job against the sandbox; prints where each report is."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..reports import REPORTS_DIR, RunFailed, available_jobs, build_index, run_job


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run every job against the built-in sandbox (no credentials needed)")
    parser.add_argument("--out", type=Path, default=None, help="reports directory (default ./reports)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    jobs = available_jobs()
    if not jobs:
        print("no job notebooks found in notebooks/")
        return 1
    # Sandbox mode whatever keys the environment holds: a demo never spends real credits.
    sandbox = {"CIO_MAVERA_MODE": "sandbox"}
    failures = 0
    for job in jobs:
        started = time.monotonic()
        print(f"[{job.name}] {job.summary} ...", flush=True)
        try:
            run = run_job(job.name, out_dir=args.out, environment=sandbox)
        except RunFailed as exc:
            failures += 1
            print(f"[{job.name}] FAILED: {exc}")
            continue
        print(f"[{job.name}] done in {time.monotonic() - started:.0f} s: {run.report}")
    index = build_index(args.out or REPORTS_DIR)
    print(f"all runs: {index}")
    return 1 if failures else 0
