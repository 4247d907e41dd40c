"""Job 3 against the sandbox's truth: is the planted spike found, and how many triggers are false?

    .venv/bin/python bench/truth_job3.py [--seeds 20] [--first-seed 1] [--events 12000] [--world both]

Per seed, in-process and without HTTP: the workspace (pinned end), its signed-webhook stream of
`events` bodies (the notebook's default replay), the worker's event log, the people's attributes
and audience clusters fitted as job 3 does, then `find_triggers` with the notebook's defaults.

- spike hit: a campaign trigger on the spike's campaign whose window overlaps the spike's and whose
  audience cluster is mostly (by the truth's labels) the spike's cluster; `campaign hit` without
  the audience condition;
- false triggers: every other trigger, except a churn trigger of the spike's cluster overlapping the
  spike (the same spike, seen through that audience's valuable customers). They are broken down
  into the steadily high-opt-out campaigns, broadcast windows and the rest.

`evaluate(seeds, world)` is what `bench/bench_truth.py` calls; `HEADERS` and `rows(result)` format it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cio_mavera.jobs.audiences import audience_clusters  # noqa: E402
from cio_mavera.jobs.retention import enrichment  # noqa: E402
from cio_mavera.jobs.retention import triggers as rt  # noqa: E402
from cio_mavera.jobs.retention.pipeline import DEFAULT_EVENTS  # noqa: E402
from cio_mavera.receiver.queues import QueuedEvent  # noqa: E402
from cio_mavera.receiver.worker import EventLog, read_event_log  # noqa: E402
from cio_mavera.sandbox.webhooks import generate_events  # noqa: E402
from cio_mavera.sandbox.workspace import World, customer_attribute_strings, generate_workspace  # noqa: E402

END = dt.datetime(2026, 3, 31, 12, tzinfo=dt.UTC)  # the tests' pinned end: nothing depends on today
CUSTOMERS = 5000  # the notebook's sandbox size
EVENTS = DEFAULT_EVENTS  # notebook 03's default replay
WORKERS = 2  # seeds in parallel (the clustering takes most of a seed's time)
HEADERS = ("job 3: world", "seeds", "spike found (campaign + audience)", "campaign only",
           "false triggers / seed (mean, max)")


def seed_events(seed: int, world: str, events: int = EVENTS, end: dt.datetime = END
                ) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """(enriched event log, truth, clusters) of one seed's replay, as job 3 builds them (no HTTP)."""
    ws = generate_workspace(seed=seed, customers=CUSTOMERS, end=end, world=World.named(world))
    stream = generate_events(ws, events, seed=seed)
    with tempfile.TemporaryDirectory(prefix="truth-job3-") as tmp:
        log = EventLog(Path(tmp) / "events")
        log.append(QueuedEvent(str(i), e.event_id, e.body, 0.0) for i, e in enumerate(stream))
        frame = read_event_log(log.root)
    ids = set(frame["cio_id"].dropna())
    rows = np.flatnonzero(ws.customers["cio_id"].astype(str).isin(ids).to_numpy())
    people = enrichment.pii_free(pd.DataFrame(customer_attribute_strings(ws, rows)))
    clusters, _ = audience_clusters(people, seed=0, now=pd.Timestamp(ws.end))
    return enrichment.enrich(frame, people, clusters), ws.truth, clusters


def _majority_label(clusters: pd.DataFrame, truth: dict, cluster: int | None) -> int | None:
    if cluster is None:
        return None
    members = clusters.loc[clusters["cluster"] == cluster, "cio_id"]
    labels = Counter(truth["clusters"]["assignments"][c] for c in members if c in truth["clusters"]["assignments"])
    return labels.most_common(1)[0][0] if labels else None


def _overlaps(trigger: rt.Trigger, start: int, end: int) -> bool:
    return trigger.window_start.timestamp() < end and start < trigger.window_end.timestamp()


def classify(triggers: list[rt.Trigger], truth: dict, clusters: pd.DataFrame) -> dict[str, Any]:
    """Which trigger is the spike (campaign, audience), which echo it, and what the false ones hit."""
    spike = truth["spike"]
    plan = truth.get("stream", {})
    high = set(plan.get("high_opt_out_campaigns", []))
    broadcasts = plan.get("broadcasts", [])
    found = audience = False
    false: list[str] = []
    for t in triggers:
        on_spike = _overlaps(t, spike["start"], spike["end"])
        label = _majority_label(clusters, truth, t.cluster)
        if t.kind == "campaign" and t.campaign_id == spike["campaign_id"] and on_spike:
            found = True
            audience = audience or label == spike["cluster"]
        elif t.kind == "churn" and on_spike and label == spike["cluster"]:
            continue
        elif t.kind == "campaign" and t.campaign_id in high:
            false.append("steady-high campaign")
        elif any(_overlaps(t, b["start"], b["end"] + 6 * 3600) for b in broadcasts):
            false.append("broadcast window")
        else:
            false.append("other")
    return {"found": found, "audience": found and audience, "false": false}


def evaluate_seed(seed: int, world: str, events: int = EVENTS) -> dict[str, Any]:
    """One seed: the classification of its triggers and how long it took."""
    started = time.perf_counter()
    frame, truth, clusters = seed_events(seed, world, events)
    result = rt.find_triggers(frame)
    out = classify(result.triggers, truth, clusters)
    spike = truth["spike"]
    return {"seed": seed, **out, "triggers": [t.key for t in result.triggers],
            "spike_ratio": spike.get("ratio"), "seconds": round(time.perf_counter() - started, 2)}


def evaluate(seeds: list[int], world: str, events: int = EVENTS, workers: int = WORKERS) -> dict[str, Any]:
    """Spike hit rate (campaign and audience right) and false triggers per seed over `seeds`."""
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            per_seed = list(pool.map(evaluate_seed, seeds, [world] * len(seeds), [events] * len(seeds)))
    else:
        per_seed = [evaluate_seed(seed, world, events) for seed in seeds]
    false = np.array([len(s["false"]) for s in per_seed])
    return {
        "world": world, "events": events, "seeds": len(seeds),
        "spike_hit_rate": float(np.mean([s["audience"] for s in per_seed])),
        "campaign_hit_rate": float(np.mean([s["found"] for s in per_seed])),
        "false_triggers_mean": float(false.mean()), "false_triggers_max": int(false.max()),
        "false_by_kind": dict(Counter(kind for s in per_seed for kind in s["false"])),
        "missed_seeds": [s["seed"] for s in per_seed if not s["audience"]],
        "per_seed": per_seed,
    }


def rows(result: dict[str, Any]) -> list[str]:
    """The table cells of one `evaluate` result, in HEADERS order."""
    return [f"{result['world']} ({result['events']:,} events)", str(result["seeds"]),
            f"{result['spike_hit_rate']:.0%}", f"{result['campaign_hit_rate']:.0%}",
            f"{result['false_triggers_mean']:.2f}, {result['false_triggers_max']}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--world", choices=("both", "realistic", "clean"), default="both")
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--verbose", action="store_true", help="print every seed's triggers")
    args = parser.parse_args()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    worlds = ("clean", "realistic") if args.world == "both" else (args.world,)
    started = time.perf_counter()
    print(" | ".join(HEADERS))
    for world in worlds:
        result = evaluate(seeds, world, args.events, args.workers)
        print(" | ".join(rows(result)))
        print(f"    missed seeds: {result['missed_seeds'] or 'none'}; false triggers by kind: "
              f"{result['false_by_kind'] or 'none'}")
        if args.verbose:
            for s in result["per_seed"]:
                print(f"    seed {s['seed']}: found={s['found']} audience={s['audience']} "
                      f"ratio={s['spike_ratio']} false={s['false']} triggers={s['triggers']} ({s['seconds']} s)")
    print(f"{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    sys.exit(main())
