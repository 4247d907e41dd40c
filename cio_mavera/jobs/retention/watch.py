"""Job 3 inside the worker: after drained batches, evaluate triggers on the event log and research them.

`ResearchLoop` is the `after_batch` hook of `receiver.worker.run_worker`. It runs at most every
`interval_s` seconds and only when new events arrived, so a busy queue is drained at full speed and
the analysis runs on a schedule. Each evaluation brings the log's hourly counts up to date (DuckDB,
only the days whose files changed since the last one) and hands the trigger statistics the last
`horizon_days` (28) of events, fewer days when those hold more than `max_events` (1,000,000): DuckDB
reads only those days' partitions, and pandas gets a frame of weeks, not of the log's years.
One `CreditBudget` spans the worker's life; the cooldown state is on disk, so a restarted worker does
not ask again what it already asked.
A failing evaluation is logged and retried at the next interval; it never stops ingestion.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cio_mavera.connect import Connection
from cio_mavera.errors import CioMaveraError
from cio_mavera.eventlog.query import HourlyCounts
from cio_mavera.jobs.context import RunContext
from cio_mavera.jobs.retention.data import campaign_names, read_recent_events
from cio_mavera.jobs.retention.enrichment import enrich_events
from cio_mavera.jobs.retention.research import Brief, research_dir, research_triggers
from cio_mavera.jobs.retention.triggers import find_triggers
from cio_mavera.mavera import CreditBudget

log = logging.getLogger("cio_mavera.retention")
JOB = "retention-research"

__all__ = ["ResearchLoop"]


class ResearchLoop:
    """Evaluate triggers and request research on a schedule, from the worker loop."""

    def __init__(self, conn: Connection, event_log_dir: str | Path, *, max_credits: int = 600,
                 interval_s: float = 60.0, window_hours: float = 24, step_hours: float = 12,
                 valuable_plans: Sequence[str] = ("pro", "business", "enterprise"), alpha: float = 0.05,
                 cooldown_hours: float = 24, horizon_days: float | None = 28,
                 max_events: int | None = 1_000_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.conn = conn
        self.event_log_dir = Path(event_log_dir)
        self.interval_s = interval_s
        self.options = {"window_hours": window_hours, "step_hours": step_hours,
                        "valuable_plans": list(valuable_plans), "alpha": alpha}
        self.cooldown_hours = cooldown_hours
        self.horizon_days, self.max_events = horizon_days, max_events
        self.counts = HourlyCounts(self.event_log_dir)
        # The Mavera client opens on first use, so a worker without triggers never needs a key.
        self.run = RunContext(job=JOB, connection=conn, budget=CreditBudget(max_credits))
        self.clock = clock
        self.pending = 0
        self.last_run: float | None = None
        self.evaluations = 0

    def __call__(self, written: int) -> list[Brief] | None:
        """Note `written` new rows; evaluate when some are pending and the interval has passed."""
        self.pending += int(written)
        now = self.clock()
        if self.pending == 0 or (self.last_run is not None and now - self.last_run < self.interval_s):
            return None
        self.last_run = now
        try:
            briefs = self.evaluate()
        except CioMaveraError as exc:  # the next interval retries; ingestion goes on
            log.error("retention evaluation failed, retrying in %.0f s: %s", self.interval_s, exc)
            return None
        self.pending = 0
        return briefs

    def evaluate(self) -> list[Brief]:
        """Update the hourly counts, enrich the horizon's events, find triggers, research those outside
        their cooldown."""
        self.evaluations += 1
        update = self.counts.update()
        log.info("retention: hourly counts of %d of %d days updated (%d events) in %.2f s",
                 len(update.days_read), update.days_total, update.rows_read, update.seconds)
        events = read_recent_events(self.event_log_dir, self.horizon_days, self.max_events)
        if events.empty:
            return []
        enriched = enrich_events(self.conn, events)
        found = find_triggers(enriched.events, **self.options)
        if not found.triggers:
            log.info("retention: %d events, no trigger", len(events))
            return []
        try:
            names = campaign_names(self.conn)
        except CioMaveraError:
            names = {}
        briefs = research_triggers(self.run, found.triggers, directory=research_dir(self.conn),
                                   cooldown_hours=self.cooldown_hours, campaign_names=names)
        for brief in briefs:
            log.warning("retention trigger %s: %s%s", brief.key, brief.status,
                        f" ({brief.reason})" if brief.reason else "")
        return briefs

    @property
    def budget(self) -> CreditBudget:
        """The credit budget that spans the worker's life."""
        return self.run.budget

    def close(self) -> None:
        """Flush the credits ledger and close the Mavera client."""
        self.run.close()
