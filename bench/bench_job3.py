"""Job 3 end to end in sandbox mode: receiver + signed replay + worker, enrichment, triggers, Mave research.

    .venv/bin/python bench/bench_job3.py [--events 12000] [--seeds 7,11,23] [--notebook]

Per seed, in one process against an in-process sandbox (as the notebook runs it, with the tests'
pinned end so the figures do not depend on the day): seconds per stage, events/s through receiver +
worker (replay and drain), and whether the planted spike's campaign and audience were found and how
many other triggers fired. `--notebook` also times `run_job` (papermill + HTML) for the default seed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from cio_mavera.connect import connect  # noqa: E402
from cio_mavera.jobs.context import RunContext  # noqa: E402
from cio_mavera.jobs.retention import data, enrichment, pipeline  # noqa: E402
from cio_mavera.jobs.retention import triggers as rt  # noqa: E402
from cio_mavera.jobs.retention.research import research_dir, research_triggers  # noqa: E402
from cio_mavera.mavera.budget import CreditBudget  # noqa: E402
from cio_mavera.mavera.client import MaveraClient  # noqa: E402
from cio_mavera.reports import run_job  # noqa: E402
from cio_mavera.sandbox.workspace import generate_workspace  # noqa: E402
from cio_mavera.settings import load_settings  # noqa: E402

END = dt.datetime(2026, 3, 31, 12, tzinfo=dt.UTC)  # the tests' pinned end
PINNED = {"CIO_MAVERA_SANDBOX_END": END.isoformat()}


def run_seed(seed: int, events: int, data_dir: Path) -> dict:
    """One seed through the whole job, timed per stage."""
    settings = load_settings({"CIO_MAVERA_MODE": "sandbox", "CIO_MAVERA_DATA_DIR": str(data_dir),
                              "CIO_MAVERA_SANDBOX_SEED": str(seed), **PINNED}, dotenv=False)
    t = {}
    started = time.perf_counter()
    conn = connect("customerio", "mavera", settings=settings)
    t["connect (sandbox start)"] = time.perf_counter() - started
    mark = time.perf_counter()
    run = pipeline.run_sandbox_pipeline(conn, events=events)
    t["receiver+replay+worker"] = time.perf_counter() - mark
    mark = time.perf_counter()
    enriched = enrichment.enrich_events(conn, data.load_event_log(conn))
    t["enrich (bulk fetch + clustering)"] = time.perf_counter() - mark
    mark = time.perf_counter()
    found = rt.find_triggers(enriched.events)
    t["triggers"] = time.perf_counter() - mark
    mark = time.perf_counter()
    client = MaveraClient(conn, job="retention-research", budget=CreditBudget(600), use_cache=False)
    briefs = research_triggers(RunContext.around(client), found.triggers, directory=research_dir(conn))
    client.close()
    t["research"] = time.perf_counter() - mark
    t["total"] = time.perf_counter() - started

    truth = generate_workspace(seed=seed, customers=settings.sandbox_customers, end=END).truth
    spike = truth["spike"]
    assignments = truth["clusters"]["assignments"]
    found_spike, audience_ok = False, False
    for trig in found.triggers:
        if trig.campaign_id == spike["campaign_id"] and trig.window_start.timestamp() < spike["end"] \
                and spike["start"] < trig.window_end.timestamp():
            found_spike = True
            members = enriched.clusters.loc[enriched.clusters["cluster"] == trig.cluster, "cio_id"]
            top = Counter(assignments[c] for c in members).most_common(1)
            audience_ok = bool(top) and top[0][0] == spike["cluster"]
    through = run.replay["sent"] / (t["receiver+replay+worker"] or 1)
    return {"seed": seed, "seconds": {k: round(v, 2) for k, v in t.items()},
            "replay_events_per_s": run.replay["events_per_s"], "pipeline_events_per_s": round(through, 1),
            "latency_ms": run.replay["latency_ms"], "unique_events": run.written,
            "tests": found.parameters["tests"], "triggers": [x.key for x in found.triggers],
            "spike_found": found_spike, "audience_found": audience_ok,
            "false_triggers": len(found.triggers) - int(found_spike),
            "credits": sum(b.credits for b in briefs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=pipeline.DEFAULT_EVENTS)
    parser.add_argument("--seeds", default="7,11,23")
    parser.add_argument("--notebook", action="store_true", help="also time the notebook via run_job (seed 7)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-job3-") as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            result = run_seed(seed, args.events, Path(tmp) / f"data-{seed}")
            print(f"seed {seed}: {result}")
        if args.notebook:
            started = time.perf_counter()
            run_job("retention-research", {"events": args.events}, out_dir=Path(tmp) / "reports",
                    environment={"CIO_MAVERA_MODE": "sandbox", "CIO_MAVERA_DATA_DIR": str(Path(tmp) / "nb"),
                                 **PINNED})
            print(f"notebook (papermill + HTML, seed 7): {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    sys.exit(main())
