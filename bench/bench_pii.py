"""The PII guard's cost: indexing the workspace's people, and checking a typical Mavera payload.

    .venv/bin/python bench/bench_pii.py [--customers 100000] [--seed 7] [--repeats 300]

Generates the sandbox workspace (realistic world) with `--customers` people, stores them in a
customers cache the way a pull does (parts of 5,000 people), then times `KnownPeople.from_cache`
(reading the identifier columns and hashing every full name, email, phone, id and cio_id) and the
guard on three payloads shaped like the kit's own: a persona create (job 2), a scoring chat with
a persona description and message copy (job 1), and a findings summary for Mave with six
messages' copy (job 1). Each is timed for the patterns (`pii.contains_pii`), the people lookup
(`KnownPeople.find`) and the metered core's whole guard (`MeteredCore.guard`: patterns, the
cache's change check, the lookup): medians and the 99th percentile over `--repeats` runs, in CPU
time (the check's own cost) and wall time (which also counts the moments another process held
the core). Prints figures, asserts nothing. Target: a typical payload against 100,000 people's
identifiers in well under 10 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cio_mavera.cache import Cache  # noqa: E402
from cio_mavera.datasets import SCHEMA  # noqa: E402
from cio_mavera.known_people import KnownPeople, WorkspacePeople  # noqa: E402
from cio_mavera.mavera.core import MeteredCore  # noqa: E402
from cio_mavera.pii import contains_pii  # noqa: E402
from cio_mavera.sandbox.workspace import generate_workspace  # noqa: E402

END = dt.date(2026, 3, 31)
PART = 5000


def _store(customers: pd.DataFrame, root: Path) -> None:
    entry = Cache(root).entry("customers", {"segment_id": None}, SCHEMA["customers"])
    entry.begin()
    frame = customers.astype(object).where(customers.notna(), None).astype("string")
    for k in range(0, len(frame), PART):
        entry.write_part(f"part-{k // PART:05d}", frame.iloc[k:k + PART].reset_index(drop=True))
    entry.complete()


def _payloads(actions: pd.DataFrame) -> dict[str, Any]:
    description = ("B2B persona for an audience of business buyers and users, built by cio-mavera from "
                   "aggregated Customer.io attributes (no individual's data). Audience cluster 2 of 4: "
                   "1,204 customers (24.1%). Compared with all customers: plan enterprise (x3.2 as "
                   "common); high seats (median 412 vs 15); high mrr (median 9,120 vs 410); industry "
                   "finance (x2.1); low support tickets 90d (median 0 vs 2). Also typical: logins 30d "
                   "12, projects created 30, favorite feature reporting, country US.")
    emails = actions[actions["channel"] == "email"].head(6)
    copy = [{"campaign_id": 12, "action_id": int(a.action_id), "channel": a.channel, "subject": a.subject,
             "preheader": a.preheader_text, "body_excerpt": str(a.body),
             "shortfalls": [{"metric": "human_click_rate", "rate": 0.0123, "channel_typical": 0.0411,
                             "typical_range": [0.031, 0.052], "relative_difference": -0.701,
                             "p_adjusted": 1.2e-5, "trials": 12345}]} for a in emails.itertuples()]
    summary = {"window": {"start": "2025-12-01", "end_exclusive": "2026-03-31"}, "channel_filter": None,
               "method": "each message vs a typical message of its channel, Benjamini-Hochberg FDR 0.05",
               "messages_tested": 41, "flags": len(copy),
               "channel_baselines": {"email": {"human_click_rate": 0.0411, "conversion_rate": 0.0123}},
               "underperformers": copy}
    subject = copy[0]["subject"]
    return {
        "persona create (job 2)": {"name": "cio-mavera: Enterprise plan, high seats",
                                   "description": description, "type": "B2B"},
        "scoring chat (job 1)": {"model": "mavera-1", "persona_id": "pers_0123456789",
                                 "messages": [{"role": "system", "content": description},
                                              {"role": "user", "content": f"Rate this subject line from "
                                               f"1 to 10 and say why: {subject!r}. Preheader: "
                                               f"{copy[0]['preheader']!r}. Body: {copy[0]['body_excerpt']}"}]},
        "findings summary (job 1)": {"message": "Diagnose these underperformers and propose a strategy: "
                                     + json.dumps(summary)},
    }


def _time(fn: Callable[[], object], repeats: int) -> tuple[float, float, float]:
    """(median CPU ms, median wall ms, 99th-percentile wall ms): CPU time is what the check costs;
    wall time also counts the moments another process held the core."""
    fn()  # warm up
    cpu, wall = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.thread_time()
        fn()
        cpu.append(time.thread_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return (float(np.median(cpu)) * 1000, float(np.median(wall)) * 1000,
            float(np.percentile(wall, 99)) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()

    ws = generate_workspace(args.seed, args.customers, end=END)
    with tempfile.TemporaryDirectory() as tmp:
        _store(ws.customers, Path(tmp))
        start = time.perf_counter()
        known = KnownPeople.from_cache(Path(tmp))
        built = time.perf_counter() - start
        size = sum(h.nbytes for h in known.hashes.values())
        counts = ", ".join(f"{len(h):,} {kind.split(chr(39) + 's ')[-1]}" for kind, h in known.hashes.items())
        print(f"people indexed: {known.people:,} ({len(known):,} identifiers: {counts}), "
              f"{size / 1e6:.1f} MB of hashes, built from the cache in {built:.2f} s")
        core = SimpleNamespace(pii_guard=True, people=WorkspacePeople(Path(tmp)))
        core.people.current()  # built once per run, before the first call
        print("ms per check: CPU median / wall median / wall p99")
        print(f"{'payload':<26} {'bytes':>6}  {'patterns':>18}  {'people':>18}  {'whole guard':>18}")
        for label, payload in _payloads(ws.actions).items():
            patterns = _time(lambda p=payload: contains_pii(p), args.repeats)
            people = _time(lambda p=payload: known.find(p), args.repeats)
            guard = _time(lambda p=payload: MeteredCore.guard(core, "bench", p), args.repeats)
            assert not contains_pii(payload) and not known.find(payload), f"{label} was blocked"
            cells = "  ".join(f"{c:4.2f} / {m:4.2f} / {q:5.2f}" for c, m, q in (patterns, people, guard))
            print(f"{label:<26} {len(json.dumps(payload)):>6}  {cells}")


if __name__ == "__main__":
    main()
