"""`cio-mavera batch FILE.yaml [--out DIR] [--parallel N] [--rerun]`: many runs, one budget, one index."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..batch import load_batch, outcomes_json, run_batch, summary_lines
from ..files import atomic_write
from ..reports import build_index


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "batch", help="run a list or grid of jobs from a YAML file",
        description="Run every (job, parameters, environment) of a batch file with bounded "
                    "parallelism and one credit budget; failures are isolated, and runs already "
                    "done with the same inputs are skipped on a rerun (see cio_mavera/batch.py).")
    parser.add_argument("file", type=Path, help="the batch file (YAML with a 'runs:' list)")
    parser.add_argument("--out", type=Path, default=None, help="reports directory (default ./reports)")
    parser.add_argument("--parallel", type=int, default=2, help="runs at once (default 2)")
    parser.add_argument("--rerun", action="store_true", help="run again what is already done")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    planned, max_credits = load_batch(args.file)  # every run checked before any starts
    result = run_batch(planned, max_credits=max_credits, out_dir=args.out, parallel=args.parallel,
                       rerun=args.rerun, say=lambda line: print(line, flush=True))
    atomic_write(result.reports_dir / "batch.json",
                 json.dumps({"file": str(args.file), "max_credits": max_credits,
                             "credits_spent": result.credits_spent,
                             "runs": outcomes_json(result)}, indent=2))
    index = build_index(result.reports_dir)
    for line in summary_lines(result):
        print(line)
    print(f"all runs: {index}")
    return 1 if result.failed else 0
