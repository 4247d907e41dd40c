"""Job 3 results.json: triggers with their research briefs, event counts, credits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from cio_mavera.jobs.context import RunContext
from cio_mavera.jobs.retention.analysis import event_counts
from cio_mavera.jobs.retention.research import Brief
from cio_mavera.jobs.retention.triggers import TriggerResult


def retention_results(run: RunContext, *, events: pd.DataFrame, result: TriggerResult,
                      briefs: Sequence[Brief], enrichment: Mapping[str, Any],
                      pipeline: Mapping[str, Any] | None, campaign_names: Mapping[int, str] | None = None
                      ) -> dict[str, Any]:
    """The run's machine-readable findings: triggers with their briefs, credits, counts."""
    by_key = {b.key: b for b in briefs}
    names = campaign_names or {}
    triggers = []
    for t in result.triggers:
        entry = t.to_dict()
        entry["campaign_name"] = names.get(t.campaign_id) if t.campaign_id is not None else None
        brief = by_key.get(t.key)
        entry["brief"] = None if brief is None else {
            "status": brief.status, "content": brief.content, "sources": brief.sources,
            "confidence": brief.confidence, "thread_id": brief.thread_id, "credits": brief.credits,
            "asked_at": brief.asked_at, "reason": brief.reason}
        triggers.append(entry)
    return {
        "mode": run.mode, "workspace": run.connection.workspace if run.connection else None,
        "event_counts": {"unique_events": int(len(events)), "by_metric": event_counts(events) if len(events) else {}},
        "pipeline": dict(pipeline) if pipeline else None,
        "enrichment": {k: v for k, v in enrichment.items()},
        "tests": result.parameters,
        "checks": result.checks,
        "triggers": triggers,
        "briefs": [b.to_dict() for b in briefs],
        **run.results_footer(),
    }

