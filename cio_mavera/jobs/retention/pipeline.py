"""Job 3 in sandbox mode: a real receiver, the signed replay and the worker, end to end on loopback.

`run_sandbox_pipeline` starts the webhook receiver (uvicorn in a background thread on 127.0.0.1, a
free port, a SQLite queue), replays the sandbox workspace's signed reporting-webhook stream into it,
drains the queue with the worker into a parquet event log, and stops. Each run starts from an empty
queue and log under the sandbox cache, so the replay summary describes this run only. In live mode
nothing here runs: the notebook reads the event log `cio-mavera webhooks work` wrote.
"""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from cio_mavera.connect import Connection
from cio_mavera.customerio.webhooks import webhook_secret_for
from cio_mavera.errors import CioMaveraError, InvalidParameter
from cio_mavera.jobs.retention.data import PIPELINE_DIR
from cio_mavera.jobs.retention.parameters import PARAMETERS
from cio_mavera.receiver.app import WEBHOOK_PATH, create_app
from cio_mavera.receiver.queues import SqliteQueue
from cio_mavera.receiver.worker import drain_once
from cio_mavera.sandbox.server import shared_sandbox
from cio_mavera.sandbox.webhooks import generate_events, replay

__all__ = ["DEFAULT_EVENTS", "PipelineRun", "ReceiverThread", "run_sandbox_pipeline"]

# Notebook 03's default replay. At 4,000 the planted spike gives about five opt-outs, too few for any
# test with honest uncertainty on one seed in four; at 12,000 it is found on every seed tried.
DEFAULT_EVENTS: int = PARAMETERS.defaults["events"]


class PipelineError(CioMaveraError):
    """The sandbox receiver could not start or the replay lost events."""


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


class ReceiverThread:
    """The receiver app under uvicorn on 127.0.0.1 and a free port, in a daemon thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1") -> None:
        config = uvicorn.Config(app, host=host, port=0, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="cio-mavera-receiver", daemon=True)
        self.url = ""

    def __enter__(self) -> ReceiverThread:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise PipelineError("the sandbox webhook receiver did not start within 15 s")
            time.sleep(0.02)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


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
        with ReceiverThread(create_app(queue, secret)) as receiver:
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
