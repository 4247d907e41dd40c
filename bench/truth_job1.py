"""Job 1 against the sandbox's truth: are the planted underperformers flagged, and what else is?

    .venv/bin/python bench/truth_job1.py [--seeds 20] [--first-seed 1] [--world both] [--workers 1]

Per seed, in-process and without HTTP: the workspace (the tests' pinned end, mid-day), its metrics
shaped as `datasets.metrics` returns them (daily buckets, tz-aware UTC, action rows), and `analyse`
with the notebook's defaults on the 30 days up to the workspace's end (the last day partial, as the
sandbox serves it).

- recall: planted underperforming messages flagged (on any rate);
- false flagged messages: flagged messages that were not planted, per workspace (mean and max), and
  how many of them are truly far out: the message's own generating rate (the truth's
  `message_rates`) at least `TRULY_WORSE` (40%) worse than a typical message of its channel, i.e.
  an ordinary message the realistic world's spread happened to draw about as poor as a plant;
- exact: workspaces whose flagged (message, rate) pairs are exactly `underperformers` + `also_low`;
- by distance: recall by how far out the plant was (spreads below its channel's typical message in
  the realistic world; every clean plant is 45-55% below a channel whose messages do not differ).

`evaluate(seeds, world)` is what `bench/bench_truth.py` calls; `HEADERS` and `rows(result)` format it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cio_mavera.jobs.campaigns import CampaignData, analyse, resolve_window  # noqa: E402
from cio_mavera.jobs.campaigns.stats import rate_definition  # noqa: E402
from cio_mavera.sandbox.workspace import World, generate_workspace  # noqa: E402
from cio_mavera.sandbox.workspace.campaigns import true_baselines  # noqa: E402

END = dt.datetime(2026, 3, 31, 12, tzinfo=dt.UTC)  # the tests' pinned end: nothing depends on today
DAYS = 30  # the notebook's default window
CUSTOMERS = 200  # campaign metrics do not depend on the number of customers
DISTANCE_BINS = (4.0, 4.5, 5.0, 5.5, 6.0)
TRULY_WORSE = 0.40  # a false flag whose message's own true rate is this much worse than typical
HEADERS = ("job 1: world", "seeds", "recall (planted messages flagged)",
           "false flagged messages / workspace (mean, max)", "exact planted set", "recall by distance")


def workspace_data(seed: int, world: str, end: dt.datetime = END, days: int = DAYS) -> tuple[CampaignData, dict]:
    """(what job 1 analyses, the truth) for one seed: the frames `load_campaign_data` would build."""
    ws = generate_workspace(seed=seed, customers=CUSTOMERS, end=end, world=World.named(world))
    metrics = ws.metrics.assign(bucket_start=pd.to_datetime(ws.metrics["day"]).dt.tz_localize("UTC"))
    metrics = metrics.drop(columns="day").astype({"action_id": "Int64"})
    start, stop = resolve_window(days, today=ws.end_date)
    data = CampaignData(ws.campaigns, ws.actions, metrics, start, stop, "all", [], "sandbox",
                        f"sandbox-{seed}-{world}")
    return data, ws.truth


def seed_result(seed: int, world: str) -> dict[str, Any]:
    """What job 1 flags on one seed, against what was planted."""
    data, truth = workspace_data(seed, world)
    started = time.perf_counter()
    flagged = analyse(data).flagged
    seconds = time.perf_counter() - started
    pairs = set(zip(flagged["action_id"].astype(int), flagged["metric"], strict=True))
    planted = {p["action_id"] for p in truth["underperformers"]}
    wanted = {(p["action_id"], p["metric"]) for p in truth["underperformers"] + truth["also_low"]}
    messages = {a for a, _ in pairs}
    false = sorted((a, m) for a, m in pairs if a not in planted)
    return {
        "seed": seed,
        "plants": [{**p, "found": p["action_id"] in messages} for p in truth["underperformer_details"]],
        "false": false,
        "truly_worse": sorted({a for a, m in false if _true_shortfall(truth, a, m) >= TRULY_WORSE}),
        "exact": pairs == wanted,
        "seconds": seconds,
    }


def _true_shortfall(truth: dict, action_id: int, metric: str) -> float:
    """How much worse the message's own generating rate is than a typical message of its channel."""
    own = next(r for r in truth["message_rates"] if r["action_id"] == action_id)
    typical = true_baselines()[own["channel"]][metric]
    if own[metric] is None or not typical:
        return float("nan")
    change = own[metric] / typical - 1.0
    return -change if rate_definition(metric).higher_is_better else change


def evaluate(seeds: list[int], world: str, workers: int = 1) -> dict[str, Any]:
    """Recall, false flagged messages per workspace and recall by distance over `seeds`."""
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(seed_result, seeds, [world] * len(seeds)))
    else:
        results = [seed_result(seed, world) for seed in seeds]
    plants = pd.DataFrame([{**p, "seed": r["seed"]} for r in results for p in r["plants"]])
    false = [len({a for a, _ in r["false"]}) for r in results]
    return {
        "world": world,
        "seeds": len(seeds),
        "planted": len(plants),
        "found": int(plants["found"].sum()),
        "recall": float(plants["found"].mean()),
        "false_mean": float(np.mean(false)),
        "false_max": int(max(false)),
        "truly_worse_mean": float(np.mean([len(r["truly_worse"]) for r in results])),
        "exact_rate": float(np.mean([r["exact"] for r in results])),
        "by_distance": _by_distance(plants),
        "by_channel": {f"{c} {m}": (int(g["found"].sum()), len(g))
                       for (c, m), g in plants.groupby(["channel", "metric"])},
        "missed": [(int(p.seed), int(p.action_id), p.channel, p.metric, p.spread_sds)
                   for p in plants[~plants["found"]].itertuples(index=False)],
        "false_flags": [(r["seed"], a, m) for r in results for a, m in r["false"]],
        "seconds_per_workspace": float(np.mean([r["seconds"] for r in results])),
    }


def _by_distance(plants: pd.DataFrame) -> list[tuple[str, int, int]]:
    """(range of spreads below the channel, found, planted); one "any" row when plants have none."""
    if plants["spread_sds"].isna().all():
        return [("45-55% drop", int(plants["found"].sum()), len(plants))]
    edges = [-np.inf, *DISTANCE_BINS[1:-1], np.inf]
    labels = [f"{lo:g}-{hi:g}" for lo, hi in zip(DISTANCE_BINS, DISTANCE_BINS[1:], strict=False)]
    groups = pd.cut(plants["spread_sds"].astype(float), edges, labels=labels)
    return [(label, int(g["found"].sum()), len(g)) for label, g in plants.groupby(groups, observed=True)]


def rows(result: dict[str, Any]) -> list[str]:
    """The table cells of one `evaluate` result, in HEADERS order."""
    distance = ", ".join(f"{label}: {found}/{n}" for label, found, n in result["by_distance"])
    unit = " spreads" if result["world"] != "clean" else ""
    return [result["world"], str(result["seeds"]),
            f"{result['recall']:.0%} ({result['found']}/{result['planted']})",
            f"{result['false_mean']:.2f}, {result['false_max']} ({result['truly_worse_mean']:.2f} truly "
            f">= {TRULY_WORSE:.0%} worse)", f"{result['exact_rate']:.0%}",
            distance + unit]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--world", choices=("both", "realistic", "clean"), default="both")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("-v", "--verbose", action="store_true", help="list every miss and false flag")
    args = parser.parse_args()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    worlds = ("clean", "realistic") if args.world == "both" else (args.world,)
    print(" | ".join(HEADERS))
    for world in worlds:
        result = evaluate(seeds, world, args.workers)
        print(" | ".join(rows(result)) + f"   ({result['seconds_per_workspace']:.1f} s per workspace)")
        print(f"    by channel and rate (found/planted): {result['by_channel']}")
        if args.verbose:
            print(f"    missed (seed, action, channel, rate, spreads out): {result['missed'] or 'none'}")
            print(f"    false flags (seed, action, rate): {result['false_flags'] or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
