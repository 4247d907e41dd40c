"""Job 2 against the sandbox's truth: is the planted number of clusters found, and who is in which?

    .venv/bin/python bench/truth_job2.py [--seeds 20] [--first-seed 1] [--world both] [--compare]

Per seed, in-process and without HTTP: the workspace (5,000 customers, pinned end), every person's
attributes as the App API returns them (strings, missing ones absent), typing and PII removal, then
the clustering with the notebook's defaults (k from 2 to 8, 5,000-person selection sample). It
reports the chosen k against the planted k, the adjusted Rand index (ARI) between the clusters and
the planted ones, and how often the report said "no clear structure" (k = 1).

`--compare` also runs the methods the mixture model was chosen over, on the same seeds: k-means on
scaled, median-imputed features with k by silhouette among stable ks (the kit's previous method),
and scikit-learn's GaussianMixture (diagonal covariances) on the same features with k by BIC.

`evaluate(seeds, world)` is what `bench/bench_truth.py` calls; `HEADERS` and `rows(result)` format it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cio_mavera.jobs.audiences.clustering import cluster, prepare_attributes  # noqa: E402
from cio_mavera.sandbox.workspace import World, customer_attribute_strings, generate_workspace  # noqa: E402

END = dt.datetime(2026, 3, 31, 12, tzinfo=dt.UTC)  # the tests' pinned end: nothing depends on today
CUSTOMERS = 5000  # the notebook's sandbox size
K_RANGE = range(2, 9)  # the notebook's k_min..k_max
METHODS = ("mixture", "kmeans", "gmm")
HEADERS = ("job 2: world", "method", "seeds", "k chosen (planted 4)", "k within 1", "k exact",
           "ARI mean (min)", "no clear structure", "s / seed")


def seed_result(seed: int, world: str, methods: tuple[str, ...] = ("mixture",)) -> dict[str, dict]:
    """{method: {k, planted_k, ari, clarity, seconds}} for one seed's workspace."""
    ws = generate_workspace(seed=seed, customers=CUSTOMERS, end=END, world=World.named(world))
    raw = pd.DataFrame(customer_attribute_strings(ws, range(CUSTOMERS)))
    typed, schema = prepare_attributes(raw, now=END)
    assignments = ws.truth["clusters"]["assignments"]
    planted = np.array([assignments[c] for c in typed.index])
    out = {}
    for method in methods:
        started = time.perf_counter()
        result = cluster(typed, schema, k_range=K_RANGE, seed=0, method=method)
        out[method] = {"k": int(result.k), "planted_k": int(ws.truth["clusters"]["k"]),
                       "ari": float(adjusted_rand_score(planted, result.labels)),
                       "clarity": getattr(result.selection, "clarity", None),
                       "seconds": time.perf_counter() - started}
    return out


def evaluate(seeds: list[int], world: str, methods: tuple[str, ...] = ("mixture",)) -> dict[str, Any]:
    """Figures over `seeds` in `world` per method: chosen k vs planted, ARI, "no clear structure"."""
    per_seed = {seed: seed_result(seed, world, methods) for seed in seeds}
    figures = {}
    for method in methods:
        runs = [per_seed[s][method] for s in seeds]
        ks = np.array([r["k"] for r in runs])
        planted = np.array([r["planted_k"] for r in runs])
        aris = np.array([r["ari"] for r in runs])
        figures[method] = {
            "ks": Counter(ks.tolist()),
            "k_within_1": float(np.mean(np.abs(ks - planted) <= 1)),
            "k_exact": float(np.mean(ks == planted)),
            "ari_mean": float(aris.mean()), "ari_min": float(aris.min()),
            "no_structure": int((ks == 1).sum()),
            "clarity": Counter(r["clarity"] for r in runs),
            "seconds": float(np.mean([r["seconds"] for r in runs])),
            "per_seed": {s: {k: v for k, v in per_seed[s][method].items() if k != "seconds"}
                         for s in seeds},
        }
    return {"world": world, "seeds": list(seeds), "methods": list(methods), "figures": figures}


def rows(result: dict[str, Any]) -> list[str]:
    """The table cells of `result` (its first method), matching HEADERS."""
    return method_row(result, result["methods"][0])


def method_row(result: dict[str, Any], method: str) -> list[str]:
    """The table cells of one method's figures."""
    f = result["figures"][method]
    ks = ", ".join(f"{k}: {n}" for k, n in sorted(f["ks"].items()))
    return [result["world"], method, str(len(result["seeds"])), ks, f"{f['k_within_1']:.0%}",
            f"{f['k_exact']:.0%}", f"{f['ari_mean']:.3f} ({f['ari_min']:.3f})",
            f"{f['no_structure']} of {len(result['seeds'])}", f"{f['seconds']:.1f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--world", choices=("both", "realistic", "clean"), default="both")
    parser.add_argument("--compare", action="store_true", help="also k-means and GaussianMixture")
    args = parser.parse_args()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    worlds = ("clean", "realistic") if args.world == "both" else (args.world,)
    methods = METHODS if args.compare else ("mixture",)
    print(" | ".join(HEADERS))
    for world in worlds:
        result = evaluate(seeds, world, methods)
        for method in methods:
            print(" | ".join(method_row(result, method)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
