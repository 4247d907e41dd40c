"""Benchmark: job 2 (attribute-personas) end to end on the default sandbox, seconds per stage.

Stages run in-process against a loopback sandbox over real HTTP, exactly as the notebook calls
them: cold pull (App API at 10 req/s), warm pull (parquet cache), typing + PII guard, k selection
and fit, profiles, persona creation (first run) and re-sync (second run: must create and spend
nothing), engagement chats, write-back dry run and real Track batch. `--notebook` also times the
whole papermill run (kernel start, charts, HTML) in sandbox mode.

Run: .venv/bin/python bench/bench_job2.py [--customers 5000] [--seed 7] [--notebook]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from sklearn.metrics import adjusted_rand_score

from cio_mavera.connect import Connection
from cio_mavera.customerio.track import TrackClient
from cio_mavera.jobs import audiences as ap
from cio_mavera.jobs.context import RunContext
from cio_mavera.mavera.budget import CreditBudget
from cio_mavera.mavera.client import MaveraClient
from cio_mavera.sandbox.server import SandboxServer, start_sandbox
from cio_mavera.settings import Secret, Settings


def connection(server: SandboxServer, data_dir: Path) -> Connection:
    env = server.env()
    settings = Settings(site_id=env["CIO_SITE_ID"], api_key=Secret(env["CIO_API_KEY"]),
                        app_key=Secret(env["CIO_APP_KEY"]), mavera_key=Secret(env["MAVERA_API_KEY"]),
                        app_url_override=env["CIO_APP_URL"], track_url_override=env["CIO_TRACK_URL"],
                        mavera_url_override=env["MAVERA_BASE_URL"], data_dir=data_dir, mode="live")
    return Connection(settings, "live", "bench-job2", sandbox_url=server.url)


class Timer:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float, str]] = []

    def __call__(self, stage: str, fn, note=lambda _: ""):
        started = time.perf_counter()
        value = fn()
        self.rows.append((stage, time.perf_counter() - started, note(value)))
        return value

    def print(self) -> None:
        width = max(len(s) for s, _, _ in self.rows)
        for stage, seconds, note in self.rows:
            print(f"  {stage:<{width}}  {seconds:7.2f} s  {note}")
        print(f"  {'total':<{width}}  {sum(s for _, s, _ in self.rows):7.2f} s")


def _counts(frame) -> str:
    return ", ".join(f"{n} {status}" for status, n in frame["status"].value_counts().items())


def run(customers: int, seed: int, data_dir: Path) -> None:
    t = Timer()
    server = t("sandbox start + workspace",
               lambda: (lambda s: (s, s.state.workspace))(start_sandbox(seed=seed, customers=customers))[0])
    truth = server.state.workspace.truth["clusters"]
    try:
        conn = connection(server, data_dir)
        frame = t("pull customers (cold)", lambda: ap.load_audience(conn),
                  lambda df: f"{len(df):,} people, {df.attrs['requests']} requests")
        t("pull customers (warm cache)", lambda: ap.load_audience(conn),
          lambda df: f"{df.attrs['requests']} requests")
        typed, schema, pii = t("typing + PII guard", lambda: ap.prepare(frame),
                               lambda r: f"{len(r[1].kept())} attributes used, {len(r[2])} PII excluded")
        result = t("choose k + fit", lambda: ap.find_clusters(typed, schema, range(2, 9), seed=0),
                   lambda r: f"k={r.k} (planted {truth['k']}), ARI "
                             f"{adjusted_rand_score([truth['assignments'][i] for i in r.labels.index], r.labels):.3f}")
        profiles = t("profiles", lambda: ap.profile_clusters(typed, result.labels))
        payloads = ap.persona_payloads(profiles, "b2b")
        first = RunContext.around(MaveraClient(conn, run_id="bench-1", job=ap.JOB,
                                              budget=CreditBudget(2000), rpm=600))
        synced = t("personas: first run", lambda: ap.sync_personas(first, payloads),
                   lambda df: f"{_counts(df)}, {first.budget.spent} credits")
        t("engagement chats", lambda: ap.engagement_answers(first, synced),
          lambda a: f"{sum(1 for v in a.values() if v)} answers")
        first.mavera.close()
        again = RunContext.around(MaveraClient(conn, run_id="bench-2", job=ap.JOB,
                                              budget=CreditBudget(2000), rpm=600))
        t("personas: re-run", lambda: ap.sync_personas(again, payloads),
          lambda df: f"{_counts(df)}, {again.budget.spent} credits")
        again.mavera.close()
        names = dict(enumerate(p["name"] for p in payloads))
        assignments = result.assignments()
        t("write-back dry run", lambda: ap.write_back(None, assignments, names, dry_run=True),
          lambda r: f"{r.operations:,} ops in {r.requests} requests (not sent)")
        with TrackClient(conn) as track:
            t("write-back (Track v2 batch)",
              lambda: ap.write_back(track, assignments, names, dry_run=False),
              lambda r: f"{r.accepted:,} accepted in {r.requests} requests, {len(r.failures)} failed")
    finally:
        server.stop()
    print(f"job 2 stages, sandbox seed {seed}, {customers:,} customers:")
    t.print()


def run_notebook(seed: int, customers: int, data_dir: Path) -> None:
    from cio_mavera.reports import run_job

    env = {"CIO_MAVERA_MODE": "sandbox", "CIO_MAVERA_DATA_DIR": str(data_dir),
           "CIO_MAVERA_SANDBOX_SEED": str(seed), "CIO_MAVERA_SANDBOX_CUSTOMERS": str(customers)}
    for label in ("cold cache", "warm cache, personas exist"):
        started = time.perf_counter()
        result = run_job("attribute-personas", {}, out_dir=data_dir / "reports", environment=env)
        print(f"  papermill run ({label}): {time.perf_counter() - started:6.2f} s -> {result.report}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--notebook", action="store_true", help="also time the papermill run")
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    with tempfile.TemporaryDirectory(prefix="bench-job2-") as tmp:
        run(args.customers, args.seed, Path(tmp) / "data")
        if args.notebook:
            print("notebook 02 end to end (sandbox mode):")
            run_notebook(args.seed, args.customers, Path(tmp) / "nb")


if __name__ == "__main__":
    main()
