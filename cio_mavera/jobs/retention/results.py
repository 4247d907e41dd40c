"""Job 3 results.json: triggers with their intervals, follow-up size and research brief, the event
log's period and opt-out rate, dead letters, counts, credits (and, via the run, what changed)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from cio_mavera.connect import Connection
from cio_mavera.jobs.context import RunContext
from cio_mavera.jobs.retention.analysis import event_counts
from cio_mavera.jobs.retention.data import PIPELINE_DIR
from cio_mavera.jobs.retention.parameters import PARAMETERS
from cio_mavera.jobs.retention.research import Brief
from cio_mavera.jobs.retention.triggers import Trigger, TriggerResult
from cio_mavera.jobs.retention.uncertainty import deliveries_to_confirm, normal_range, rate_interval
from cio_mavera.receiver.dead_letters import dead_letter_summary
from cio_mavera.receiver.intake import intake_queue_url

OPT_OUTS = ("unsubscribed", "spammed")


def parameters_in(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The job's parameters as they stand in a notebook's `globals()`, checked (`ParameterSpec.values_in`)."""
    return PARAMETERS.values_in(namespace)


def dead_letters(conn: Connection) -> dict[str, Any]:
    """The dead-letter summary of the queue this run's events came through (the sandbox run's own
    queue, or the live intake queue); `error` instead when that queue cannot be read."""
    queue = (conn.cache_dir / PIPELINE_DIR / "queue" / "webhooks.sqlite3" if conn.mode == "sandbox"
             else intake_queue_url(conn.settings))
    try:
        return dead_letter_summary(queue)
    except Exception as exc:  # noqa: BLE001 - an unreachable queue must not stop the report; it says so
        text = re.sub(r"//[^/@\s]*@", "//", str(exc))  # never a queue URL's password
        return {"waiting": None, "by_reason": {}, "by_stage": {}, "replayed": None,
                "error": f"{type(exc).__name__}: {text}"[:300]}


def log_period(events: pd.DataFrame) -> dict[str, Any]:
    """First and last event time of the log (ISO, UTC) and the days between them."""
    stamps = pd.to_numeric(events["timestamp"], errors="coerce").dropna() if len(events) else pd.Series()
    if stamps.empty:
        return {"start": None, "end": None, "days": 0.0}
    start, end = (pd.Timestamp(int(v), unit="s", tz="UTC") for v in (stamps.min(), stamps.max()))
    return {"start": start.isoformat(), "end": end.isoformat(),
            "days": round((end - start) / pd.Timedelta(days=1), 2)}


def opt_out_rate(events: pd.DataFrame) -> dict[str, Any]:
    """Unsubscribes + spam complaints per delivered campaign message over the log, with its interval."""
    scoped = events[events["campaign_id"].notna()] if len(events) else events
    delivered = int((scoped["metric"] == "delivered").sum()) if len(scoped) else 0
    opt_outs = int(scoped["metric"].isin(OPT_OUTS).sum()) if len(scoped) else 0
    low, high = rate_interval(opt_outs, delivered)
    return {"opt_outs": opt_outs, "delivered": delivered,
            "rate": opt_outs / delivered if delivered else None, "low": _number(low), "high": _number(high)}


def _number(value: float) -> float | None:
    """`value`, or None for NaN (results.json is strict JSON)."""
    return None if value is None or pd.isna(value) else float(value)


def follow_up(trigger: Trigger, events: pd.DataFrame, valuable_plans: Sequence[str] = ()) -> dict[str, Any]:
    """After a fix: the messages to the spike's audience that show whether its rate is back to
    normal (`uncertainty.deliveries_to_confirm`), and how many days that is at the log's pace."""
    needed = deliveries_to_confirm(trigger.rate, trigger.baseline)
    days = log_period(events)["days"]
    if trigger.kind == "campaign":
        mine = events[(events["metric"] == "delivered") & (events["campaign_id"] == trigger.campaign_id)]
    else:
        plans = {p.lower() for p in valuable_plans}
        mine = events[(events["metric"] == "sent")
                      & events["plan"].astype("string").str.lower().isin(plans).fillna(False)]
    if trigger.cluster is not None and trigger.series != "all recipients":
        mine = mine[mine["cluster"] == trigger.cluster]
    per_day = len(mine) / days if days > 0 else None
    return {"messages": needed, "per_day": None if per_day is None else round(per_day, 1),
            "days": None if needed is None or not per_day else round(needed / per_day, 1),
            "power": 0.8, "alpha": 0.05, "one_sided": True}


def trigger_entry(trigger: Trigger, brief: Brief | None, names: Mapping[int, str], events: pd.DataFrame,
                  valuable_plans: Sequence[str] = ()) -> dict[str, Any]:
    """One trigger for results.json: its figures, intervals, follow-up and brief."""
    entry = trigger.to_dict()
    entry["campaign_name"] = names.get(trigger.campaign_id) if trigger.campaign_id is not None else None
    entry["rate_low"], entry["rate_high"] = map(_number, rate_interval(trigger.count, trigger.exposure))
    entry["normal_low"], entry["normal_high"] = map(_number, normal_range(
        trigger.expected, trigger.extra_variance, trigger.exposure))
    entry["follow_up"] = follow_up(trigger, events, valuable_plans)
    entry["brief"] = None if brief is None else {
        "status": brief.status, "content": brief.content, "sources": brief.sources,
        "confidence": brief.confidence, "thread_id": brief.thread_id, "credits": brief.credits,
        "asked_at": brief.asked_at, "reason": brief.reason}
    return entry


def retention_results(run: RunContext, *, events: pd.DataFrame, result: TriggerResult,
                      briefs: Sequence[Brief], enrichment: Mapping[str, Any],
                      pipeline: Mapping[str, Any] | None, campaign_names: Mapping[int, str] | None = None,
                      dead: Mapping[str, Any] | None = None, now: pd.Timestamp | None = None) -> dict[str, Any]:
    """The run's machine-readable findings: triggers with their briefs, the log, dead letters, credits;
    `analysed_at` (`now`, by default the clock) is what the report judges the log's age against."""
    by_key = {b.key: b for b in briefs}
    names = campaign_names or {}
    plans = result.parameters.get("valuable_plans", ())
    return {
        "mode": run.mode, "workspace": run.connection.workspace if run.connection else None,
        "event_counts": {"unique_events": int(len(events)), "by_metric": event_counts(events) if len(events) else {}},
        "analysed_at": pd.Timestamp(now if now is not None else pd.Timestamp.now(tz="UTC")).isoformat(),
        "period": log_period(events),
        "opt_out": opt_out_rate(events),
        "pipeline": dict(pipeline) if pipeline else None,
        "dead_letters": dict(dead) if dead is not None else None,
        "enrichment": dict(enrichment),
        "tests": result.parameters,
        "checks": result.checks,
        "triggers": [trigger_entry(t, by_key.get(t.key), names, events, plans) for t in result.triggers],
        "briefs": [b.to_dict() for b in briefs],
        **run.results_footer(),
    }
