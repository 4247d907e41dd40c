"""`cio-mavera run JOB [-p NAME VALUE]... [--out DIR]`: one job through papermill, then HTML.

`cio-mavera run JOB --help` lists the job's parameters with their defaults and allowed values.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..headlines import headline
from ..parameters import parse_cli_value
from ..reports import JOBS, RunFailed, check_parameters, get_job, run_job


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="run one job's notebook and render its report",
        description="Execute a job's notebook with papermill into reports/<job>/<run-id>/ and "
                    "render report.html and results.json. `run JOB --help` lists its parameters.")
    jobs = parser.add_subparsers(dest="job", metavar="JOB", required=True)
    for job in JOBS.values():
        one = jobs.add_parser(
            job.name, help=job.summary, formatter_class=argparse.RawDescriptionHelpFormatter,
            description=f"{job.summary}\n\nparameters (-p NAME VALUE; values are JSON or text):\n"
                        + job.spec().help_text())
        one.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                         metavar=("NAME", "VALUE"), help="set a notebook parameter (repeatable)")
        one.add_argument("--out", type=Path, default=None,
                         help="reports directory (default ./reports)")
        one.add_argument("--cell-timeout", type=int, default=900, help="seconds allowed per cell")
        one.add_argument("--run-id", default=None, help=argparse.SUPPRESS)  # chosen by `batch`
        one.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    parameters = {name: parse_cli_value(value) for name, value in args.parameter}
    check_parameters(get_job(args.job), parameters)  # a bad value is the only line printed
    print(f"running {args.job} ...", flush=True)
    started = time.monotonic()
    try:
        run = run_job(args.job, parameters, out_dir=args.out, cell_timeout_s=args.cell_timeout,
                      run_id=args.run_id, progress=lambda line: print(line, flush=True))
    except RunFailed as exc:
        print(f"FAILED: {exc}")
        print(f"  report of the partial run: {exc.run_dir / 'report.html'}")
        return 1
    print(f"{args.job} done in {time.monotonic() - started:.0f} s: "
          f"{headline(args.job, json.loads(run.results.read_text()))}")
    print(f"report:  {run.report}")
    print(f"results: {run.results}")
    print(f"notebook: {run.notebook}")
    return 0
