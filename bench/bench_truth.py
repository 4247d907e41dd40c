"""Every job's findings against the sandbox's planted truth, over many seeds, in both worlds.

    .venv/bin/python bench/bench_truth.py [--seeds 20] [--first-seed 1] [--world both]

The realistic world (messages that differ, over-dispersed days, overlapping and messy customers,
cycles and bursts in the webhook stream) is the default sandbox; the clean world is the tidy one the
kit was first validated on. Per job (details in bench/truth_job1.py, truth_job2.py, truth_job3.py):

- job 1: recall of the planted underperformers and false flagged messages per workspace;
- job 2: chosen k against the planted k, and the adjusted Rand index of the clusters;
- job 3: share of seeds whose planted spike is found (campaign and audience) and false triggers.

Targets in the realistic world (issue 10): job 1 recall >= 90% with <= 0.2 false flagged messages
per workspace; job 2 k within 1 and mean ARI >= 0.7; job 3 spike found on >= 90% of seeds with
<= 1 false trigger per seed. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import truth_job1
import truth_job2
import truth_job3

JOBS = (("job 1: campaign messaging", truth_job1), ("job 2: attribute personas", truth_job2),
        ("job 3: retention research", truth_job3))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds per job and world (default 20)")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--world", choices=("both", "realistic", "clean"), default="both")
    args = parser.parse_args()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    worlds = ("clean", "realistic") if args.world == "both" else (args.world,)
    started = time.perf_counter()
    for title, module in JOBS:
        print(f"\n== {title} ({len(seeds)} seeds: {seeds[0]}..{seeds[-1]})")
        print(" | ".join(module.HEADERS))
        for world in worlds:
            began = time.perf_counter()
            result = module.evaluate(seeds, world)
            print(" | ".join(module.rows(result)) + f"   ({time.perf_counter() - began:.0f} s)", flush=True)
    print(f"\nbench_truth: {time.perf_counter() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    sys.exit(main())
