"""Receiver throughput and latency: uvicorn subprocess(es), signed events from a loopback client.

    .venv/bin/python bench/bench_receiver.py [--events 20000] [--concurrency 32] [--rate 2000]
                                             [--scenarios sqlite,redis,redis-2]

For each scenario the receiver runs as `cio-mavera webhooks serve` in its own process; this process
is the client: a lean asyncio HTTP/1.1 keep-alive client (httpx costs ~1.5 ms of CPU per request,
which on 2 cores would measure the client, not the receiver). Each request is signed at send time.
Two runs per scenario: closed loop (`--concurrency` in flight, as fast as possible) and open loop at
`--rate` events/s. Afterwards the queue is read back: every acknowledged event must be in it, and no
event of the (valid) stream may have become a dead letter. The receivers run with their default
connection limits (header size, read deadlines, connection cap). `CPU us/req` is the receivers' own
CPU time per request, the figure to compare versions by when the machine is busy.
Targets (issue #6): >= 2,000 events/s sustained, p99 < 50 ms, nothing lost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import httpx  # noqa: E402
from redis_server import RedisServer, redis_available  # noqa: E402

from cio_mavera.customerio.webhooks import signed_headers  # noqa: E402
from cio_mavera.receiver.queues import open_queue  # noqa: E402
from cio_mavera.sandbox.webhooks import webhook_stream  # noqa: E402

SECRET = "bench-secret"
PATH = "/webhooks/customerio"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_receiver(port: int, queue_url: str, data_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "CIO_WEBHOOK_SECRET": SECRET, "CIO_MAVERA_DATA_DIR": str(data_dir)}
    process = subprocess.Popen(
        [sys.executable, "-m", "cio_mavera.cli", "webhooks", "serve", "--port", str(port), "--queue", queue_url],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"receiver failed: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("receiver did not start")


async def _connection(port: int, jobs: asyncio.Queue, started: float, rate: float | None,
                      results: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            job = await jobs.get()
            if job is None:
                return
            index, event_id, body = job
            if rate:
                delay = started + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            headers = signed_headers(SECRET, body)
            head = (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nX-CIO-Timestamp: {headers['X-CIO-Timestamp']}\r\n"
                    f"X-CIO-Signature: {headers['X-CIO-Signature']}\r\n\r\n").encode()
            sent_at = time.perf_counter()
            writer.write(head + body)
            status_and_headers = await reader.readuntil(b"\r\n\r\n")
            lines = status_and_headers.split(b"\r\n")
            status = int(lines[0].split()[1])
            length = next(int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length"))
            await reader.readexactly(length)
            results.append((event_id, status, time.perf_counter() - sent_at))
    finally:
        writer.close()


async def send_all(ports: list[int], events: list, concurrency: int, rate: float | None) -> tuple[list, float]:
    jobs: asyncio.Queue = asyncio.Queue()
    for index, event in enumerate(events):
        jobs.put_nowait((index, event.event_id, event.body))
    for _ in range(concurrency):
        jobs.put_nowait(None)
    results: list = []
    started = time.perf_counter()
    await asyncio.gather(*(_connection(ports[i % len(ports)], jobs, started, rate, results)
                           for i in range(concurrency)))
    return results, time.perf_counter() - started


def summarise(name: str, results: list, elapsed: float) -> dict:
    latencies = sorted(r[2] for r in results)
    ok = sum(1 for r in results if 200 <= r[1] < 300)

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {"run": name, "requests": len(results), "ok": ok, "events_per_s": len(results) / elapsed,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": latencies[-1] * 1000}


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used (user + system, from /proc): unlike events/s, it barely moves when
    other programs compete for the cores, so it compares two versions of the receiver on a busy machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_scenario(name: str, n_receivers: int, queue_url: str, data_dir: Path, events_by_run: dict,
                 concurrency: int) -> list[dict]:
    ports = [free_port() for _ in range(n_receivers)]
    processes = [start_receiver(port, queue_url, data_dir) for port in ports]
    rows = []
    acked: set[str] = set()
    try:
        for run, (events, rate) in events_by_run.items():
            cpu = sum(cpu_seconds(process.pid) for process in processes)
            results, elapsed = asyncio.run(send_all(ports, events, concurrency, rate))
            cpu = sum(cpu_seconds(process.pid) for process in processes) - cpu
            acked |= {r[0] for r in results if 200 <= r[1] < 300}
            rows.append({"scenario": name, **summarise(run, results, elapsed),
                         "cpu_us": cpu / len(results) * 1e6})
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)
            process.stderr.close()
    queue = open_queue(queue_url)
    try:
        stored = queue.event_ids()  # type: ignore[attr-defined]
        dead = queue.dead_count()
    finally:
        queue.close()
    expected = {e.event_id for events, _rate in events_by_run.values() for e in events}
    for row in rows:
        row["lost"] = len(acked - stored)
        row["stored"] = f"{len(stored & expected)}/{len(expected)}"
        row["dead"] = dead  # the sandbox stream is all valid: every one of these would be a parser bug
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000, help="events per run (default 20000)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=2000.0, help="open-loop rate (default 2000/s)")
    parser.add_argument("--scenarios", default="sqlite,redis,redis-2")
    args = parser.parse_args()

    print(f"generating 2 x {args.events} signed-stream events ...", flush=True)
    stream = webhook_stream(seed=7, customers=5000, n_events=2 * args.events)
    # Both runs in a scenario share one queue, so give them disjoint events (the stream's own
    # duplicates stay in, as in production).
    runs = {"closed-loop": (stream[:args.events], None), f"open-loop@{args.rate:g}/s": (stream[args.events:], args.rate)}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="cio-bench-") as tmp:
        tmp_path = Path(tmp)
        for scenario in args.scenarios.split(","):
            if scenario == "sqlite":
                url = f"sqlite:///{tmp_path / 'bench.sqlite3'}"
                rows += run_scenario("sqlite x1", 1, url, tmp_path, runs, args.concurrency)
            elif scenario in ("redis", "redis-2"):
                if not redis_available():
                    print(f"skipping {scenario}: redis-server not installed")
                    continue
                with RedisServer() as server:
                    receivers = 2 if scenario == "redis-2" else 1
                    rows += run_scenario(f"redis x{receivers}", receivers, server.url, tmp_path, runs,
                                         args.concurrency)
            else:
                raise SystemExit(f"unknown scenario {scenario}")
    print(f"\n{'scenario':<10} {'run':<20} {'requests':>8} {'2xx':>6} {'events/s':>9} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'max ms':>7} {'CPU us/req':>10} {'lost':>5} {'stored':>12} {'dead':>5}")
    for r in rows:
        print(f"{r['scenario']:<10} {r['run']:<20} {r['requests']:>8} {r['ok']:>6} {r['events_per_s']:>9.0f} "
              f"{r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['max_ms']:>7.1f} {r['cpu_us']:>10.0f} {r['lost']:>5} "
              f"{r['stored']:>12} {r['dead']:>5}")
    print(f"\n{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; client and receiver(s) share them.")


if __name__ == "__main__":
    main()
