"""Job 2 analysis at scale: typing + PII strip + clustering + profiles, time and peak memory.

    .venv/bin/python bench/bench_clustering.py [--customers 100000] [--million 1000000] [--seed 7]
                                               [--world realistic|clean] [--method mixture|kmeans|gmm]

Part 1 builds the string attribute frame exactly as the App API returns it (the sandbox
generator's `customer_attribute_strings`, not timed as analysis), then times each analysis step.
Part 2 times the clustering step alone (features, relevance weighting, choose_k, fit) on
`--million` rows; its string frame is built column-wise (pyarrow strings) to keep the bench quick.
Memory is the peak RSS during each step minus the RSS before it (Linux: VmHWM reset via
/proc/self/clear_refs; elsewhere the process peak from getrusage). The world is the sandbox's
default (realistic: overlapping clusters, missing attribute groups, messy strings) unless
`--world clean`; the method is the notebook's (the mixture model) unless `--method`. Prints
figures, asserts nothing. Targets: 100k end to end < 60 s and < 2 GB; 1M clustering < 120 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

from cio_mavera.jobs.audiences.clustering import cluster, prepare_attributes  # noqa: E402
from cio_mavera.jobs.audiences.profiles import profile_clusters, profile_text  # noqa: E402
from cio_mavera.sandbox.workspace import World, customer_attribute_strings, generate_workspace  # noqa: E402

NOW = "2025-06-01"
END = dt.date(2025, 6, 1)


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@contextmanager
def measure(label: str, results: dict):
    before = _status_kb("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    exact = _reset_peak()
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    peak = (_status_kb("VmHWM") if exact else None) or resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss
    delta_mb = max(0, peak - before) / 1024
    results[label] = (seconds, delta_mb, peak / 1024)
    print(f"  {label:<34} {seconds:8.2f} s   peak RSS +{delta_mb:7.0f} MB (process {peak / 1024:,.0f} MB)",
          flush=True)


def _truth(ws, index: pd.Index) -> np.ndarray:
    assignments = ws.truth["clusters"]["assignments"]
    return np.array([assignments[c] for c in index])


def bench_end_to_end(n: int, seed: int, world: str, method: str) -> None:
    print(f"\n== {n:,} customers, seed {seed}, {world} world, {method}: typing + PII strip + "
          "clustering + profiles ==")
    results: dict = {}
    t = time.perf_counter()
    ws = generate_workspace(seed=seed, customers=n, end=END, world=World.named(world))
    raw = pd.DataFrame(customer_attribute_strings(ws, range(n)))
    print(f"  (string frame built in {time.perf_counter() - t:.1f} s: {raw.shape[0]:,} rows x "
          f"{raw.shape[1]} columns, not part of the analysis figures)")
    with measure("typing + PII strip", results):
        typed, schema = prepare_attributes(raw, now=NOW)
    with measure("clustering (features, k, fit)", results):
        result = cluster(typed, schema, seed=seed, method=method)
    with measure("profiles + texts", results):
        profiles = profile_clusters(typed, result.labels)
        texts = [profile_text(p) for p in profiles.clusters]
    total = sum(v[0] for v in results.values())
    peak = max(v[1] for v in results.values())
    ari = adjusted_rand_score(_truth(ws, typed.index), result.labels.to_numpy())
    print(f"  TOTAL analysis {total:.1f} s, largest step peak RSS +{peak:.0f} MB; "
          f"k={result.k} (truth {ws.truth['clusters']['k']}, structure "
          f"{getattr(result.selection, 'clarity', '-')}), ARI vs truth {ari:.3f}")
    print(f"  kept {len(schema.kept())} of {len(schema)} attributes, {len(result.feature_names)} "
          f"features; example persona text:\n    {texts[0]}")


def bench_million(n: int, seed: int, world: str, method: str) -> None:
    print(f"\n== {n:,} customers, seed {seed}, {world} world, {method}: clustering step alone ==")
    results: dict = {}
    t = time.perf_counter()
    ws = generate_workspace(seed=seed, customers=n, end=END, world=World.named(world))
    raw = pd.DataFrame({
        c: ws.customers[c].astype("string[pyarrow]") if not pd.api.types.is_datetime64_dtype(
            ws.customers[c]) else ws.customers[c].dt.strftime("%Y-%m-%d").astype("string[pyarrow]")
        for c in ws.customers.columns
    })
    print(f"  (string frame built in {time.perf_counter() - t:.1f} s, not part of the figures)")
    with measure("typing + PII strip (for reference)", results):
        typed, schema = prepare_attributes(raw, now=NOW)
    del raw
    with measure("clustering (features, k, fit)", results):
        result = cluster(typed, schema, seed=seed, method=method)
    ari = adjusted_rand_score(ws.cluster_labels, result.labels.to_numpy())
    print(f"  k={result.k} (truth {ws.truth['clusters']['k']}), ARI vs truth {ari:.3f}, "
          f"{len(result.features):,} customers x {len(result.feature_names)} attributes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--million", type=int, default=1_000_000, help="0 skips part 2")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--world", choices=("realistic", "clean"), default="realistic")
    parser.add_argument("--method", choices=("mixture", "kmeans", "gmm"), default="mixture")
    args = parser.parse_args()
    bench_end_to_end(args.customers, args.seed, args.world, args.method)
    if args.million:
        bench_million(args.million, args.seed, args.world, args.method)


if __name__ == "__main__":
    main()
