"""Benchmark: persona-scoring calls (Responses + JSON schema) at the Professional tier, 240 requests/min.

For each batch size it prints the elapsed time, the ideal the limit allows, and the 429s received.

ideal = max(latency-bound, rate-bound):
- latency-bound: the same batch, same client and concurrency, against a sandbox whose tier does not
  bind (measured, so it includes this machine's real throughput);
- rate-bound: with a sliding 60 s window of L requests, call k > L cannot start before call k - L
  is 60 s old, so N > L calls take at least 60 s plus the time to send the last N - L of them at
  the unconstrained rate; N <= L calls are not rate-bound at all.

Run: .venv/bin/python bench/bench_mavera.py [--concurrency 16] [--sizes 200 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from cio_mavera.connect import Connection
from cio_mavera.mavera import MaveraClient
from cio_mavera.sandbox.server import SandboxServer, start_sandbox
from cio_mavera.settings import Secret, Settings

TIER_RPM = 240  # Professional tier
WINDOW_S = 60.0
SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 10},
                   "reason": {"type": "string"}},
    "required": ["score", "reason"],
}


def client_for(server: SandboxServer, data_dir: Path, rpm: int, run_id: str) -> MaveraClient:
    env = server.env()
    settings = Settings(mavera_key=Secret(env["MAVERA_API_KEY"]),
                        mavera_url_override=env["MAVERA_BASE_URL"], data_dir=data_dir,
                        mode="live", mavera_rpm=rpm)
    return MaveraClient(Connection(settings, "live", "bench"), run_id=run_id, job="bench",
                        use_cache=False)


def score_batch(client: MaveraClient, persona_ids: list[str], calls: int, concurrency: int,
                salt: str) -> float:
    """Score `calls` distinct variations with a schema; return the seconds taken."""

    def score(i: int) -> int:
        result = client.responses.create(f"Score this email subject line ({salt} #{i}): Spring "
                                         f"sale, {5 + i % 40}% off everything this weekend",
                                         persona_id=persona_ids[i % len(persona_ids)],
                                         schema=SCHEMA)
        return int(result.parsed["score"])

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        scores = list(pool.map(score, range(calls)))
    elapsed = time.perf_counter() - started
    assert len(scores) == calls
    return elapsed


def server_stats(server: SandboxServer) -> dict:
    return httpx.get(f"{server.url}/__sandbox__/stats").json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 300])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-mavera-"))

    # Unconstrained baseline: a sandbox tier of 100k rpm and a client that does not limit either.
    base_server = start_sandbox(seed=101, customers=200, mavera_rpm=100_000)
    baseline = client_for(base_server, work / "base", rpm=100_000, run_id="baseline")
    persona_ids = [p["id"] for p in baseline.personas.list()]
    score_batch(baseline, persona_ids, 32, args.concurrency, "warm-up")
    unconstrained: dict[int, float] = {}
    for size in args.sizes:
        unconstrained[size] = score_batch(baseline, persona_ids, size, args.concurrency, "base")
    baseline.close()
    base_server.stop()
    per_call = unconstrained[max(args.sizes)] / max(args.sizes)

    print(f"Mavera persona scoring at {TIER_RPM} requests/min, concurrency {args.concurrency}, "
          "sandbox over loopback, cache off")
    print(f"unconstrained throughput on this machine: {1 / per_call:.0f} calls/s "
          f"({per_call * 1000:.1f} ms per call at this concurrency)")
    header = f"{'calls':>6} {'elapsed s':>10} {'ideal s':>9} {'ratio':>7} {'429s':>5} " \
             f"{'requests':>9} {'gate wait s':>12} {'credits':>8}"
    print(header)
    for i, size in enumerate(args.sizes):
        # A fresh server and data dir per batch: the window starts empty on both sides.
        server = start_sandbox(seed=200 + i, customers=200, mavera_rpm=TIER_RPM)
        client = client_for(server, work / f"tier-{size}", rpm=TIER_RPM, run_id=f"bench-{size}")
        elapsed = score_batch(client, persona_ids, size, args.concurrency, f"tier-{size}")
        stats = server_stats(server)
        latency_bound = unconstrained[size]
        rate_bound = WINDOW_S + (size - TIER_RPM) * per_call if size > TIER_RPM else 0.0
        ideal = max(latency_bound, rate_bound)
        print(f"{size:>6} {elapsed:>10.2f} {ideal:>9.2f} {elapsed / ideal:>7.3f} "
              f"{stats['rate_limited_total']:>5} {stats['requests_total']:>9} "
              f"{client.stats['gate_waited_s']:>12.2f} {client.credits_spent():>8}")
        client.close()
        server.stop()
    print("ratio = elapsed / ideal (target <= 1.10); 429s = rate-limit answers the sandbox sent")


if __name__ == "__main__":
    main()
