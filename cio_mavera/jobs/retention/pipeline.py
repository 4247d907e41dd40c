"""Job 3 in sandbox mode: a real receiver, the signed replay and the worker, end to end on loopback.

`run_sandbox_pipeline` starts the webhook receiver (`receiver.server.BackgroundReceiver`: uvicorn
with the receiver's connection limits in a background thread on 127.0.0.1, a free port, a SQLite queue), replays the sandbox workspace's signed reporting-webhook stream into it,
drains the queue with the worker into a parquet event log, and stops. Each run starts from an empty
queue and log under the sandbox cache, so the replay summary describes this run only. In live mode
nothing here runs: the notebook reads the event log `cio-mavera webhooks work` wrote.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cio_mavera.connect import Connection
from cio_mavera.customerio.webhooks import webhook_secret_for
from cio_mavera.errors import CioMaveraError, InvalidParameter
from cio_mavera.jobs.retention.data import PIPELINE_DIR
from cio_mavera.jobs.retention.parameters import PARAMETERS
from cio_mavera.receiver.app import WEBHOOK_PATH, create_app
from cio_mavera.receiver.queues import SqliteQueue
from cio_mavera.receiver.server import BackgroundReceiver
from cio_mavera.receiver.worker import drain_once
from cio_mavera.sandbox.server import shared_sandbox
from cio_mavera.sandbox.webhooks import generate_events, replay

__all__ = ["DEFAULT_EVENTS", "PipelineRun", "run_sandbox_pipeline"]

# Notebook 03's default replay. At 4,000 the planted spike gives about five opt-outs, too few for any
# test with honest uncertainty on one seed in four; at 12,000 it is found on every seed tried.
DEFAULT_EVENTS: int = PARAMETERS.defaults["events"]


class PipelineError(CioMaveraError):
    """The sandbox replay lost events (a receiver that cannot start raises ReceiverStartError)."""


@dataclass
class PipelineRun:
    """What one sandbox run did: the replay summary, rows written, where the log is, and timings."""

    replay: dict[str, Any]
    written: int
    event_log: Path
    seconds: dict[str, float] = field(default_factory=dict)
    events_requested: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary for results.json and the report."""
        keep = ("sent", "acknowledged", "duplicates_acknowledged", "failed", "by_status", "events_per_s",
                "latency_ms", "elapsed_s")
        return {"replay": {k: self.replay.get(k) for k in keep}, "written": self.written,
                "events_requested": self.events_requested, "seconds": self.seconds}


def run_sandbox_pipeline(conn: Connection, events: int = DEFAULT_EVENTS, seed: int | None = None, *,
                         concurrency: int = 8, rate: float | None = None) -> PipelineRun:
    """Receiver + signed replay of `events` requests + worker drain into a fresh sandbox event log."""
    if conn.mode != "sandbox":
        raise InvalidParameter("run_sandbox_pipeline replays the sandbox stream; in live mode read the "
                               "event log the worker wrote (load_event_log)")
    if events < 1:
        raise InvalidParameter(f"events must be at least 1, got {events}")
    settings = conn.settings
    seed = settings.sandbox_seed if seed is None else int(seed)
    root = conn.cache_dir / PIPELINE_DIR
    shutil.rmtree(root, ignore_errors=True)  # a fresh queue and log: the stream is deterministic anyway
    root.mkdir(parents=True)
    secret = webhook_secret_for(settings)
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    # The workspace of the sandbox this connection talks to (same seed, end and world).
    workspace = shared_sandbox(settings.sandbox_seed, settings.sandbox_customers,
                               end=settings.sandbox_end, world=settings.sandbox_world).state.workspace
    stream = generate_events(workspace, events, seed=seed)
    seconds["generate"] = round(time.perf_counter() - started, 3)
    # A throwaway queue, rebuilt on every run: no fsync per commit (a crash loses nothing worth keeping).
    queue = SqliteQueue(root / "queue" / "webhooks.sqlite3", synchronous="normal")
    try:
        with BackgroundReceiver(create_app(queue, secret)) as receiver:
            started = time.perf_counter()
            # The replay runs its own event loop; a thread keeps it clear of Jupyter's running loop.
            with ThreadPoolExecutor(1, thread_name_prefix="cio-mavera-replay") as pool:
                summary = pool.submit(replay, receiver.url + WEBHOOK_PATH, stream, secret, rate=rate,
                                      concurrency=concurrency).result()
            seconds["replay"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        written = drain_once(queue, root / "events", consumer="sandbox-pipeline")
        seconds["drain"] = round(time.perf_counter() - started, 3)
    finally:
        queue.close()
    if summary["failed"]:
        raise PipelineError(f"{summary['failed']} of {summary['sent']} webhooks were not acknowledged "
                            f"(statuses {summary['by_status']})")
    return PipelineRun(summary, written, root / "events", seconds, events)
