"""Job 3 charts: event volume, rates per campaign or audience, and a trigger's series vs its baseline.

Figures are `matplotlib.figure.Figure` objects (no pyplot state), shown as PNGs so the report is self-contained.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cio_mavera.jobs.retention.triggers import Trigger, series_events

METRIC_WORDS_SHORT = {"opt_out": "unsubscribes + spam complaints", "churn": "churn signals"}
def volume_chart(events: pd.DataFrame, bin_hours: int = 6) -> Figure:
    """Events per `bin_hours` over time: message activity above, opt-outs and bounces below."""
    figure = Figure(figsize=(9, 5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    if events.empty:
        top.text(0.5, 0.5, "No events in the log", ha="center", va="center", transform=top.transAxes)
    else:
        when = pd.to_datetime(events["timestamp"].astype("int64"), unit="s", utc=True).dt.tz_convert(None)
        binned = when.dt.floor(f"{bin_hours}h")
        table = pd.crosstab(binned, events["metric"])
        for metric in ("sent", "delivered", "opened", "clicked"):
            if metric in table:
                top.plot(table.index, table[metric], label=metric)
        for metric in ("unsubscribed", "spammed", "bounced"):
            if metric in table:
                bottom.plot(table.index, table[metric], marker=".", label=metric)
    top.set_title(f"Webhook events per {bin_hours} h")
    top.set_ylabel(f"Events per {bin_hours} h")
    bottom.set_ylabel(f"Events per {bin_hours} h")
    bottom.set_xlabel("Event time (UTC)")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize=8, ncols=4)
    return figure


def rates_chart(table: pd.DataFrame, label_column: str, title: str, max_rows: int = 15) -> Figure:
    """Horizontal bars of unsubscribe and spam-complaint rates per row (% of delivered)."""
    figure = Figure(figsize=(9, 1.5 + 0.35 * min(max_rows, max(1, len(table)))), layout="constrained")
    ax = figure.subplots()
    if table.empty:
        ax.text(0.5, 0.5, "No deliveries in the log", ha="center", va="center", transform=ax.transAxes)
    else:
        rows = table.head(max_rows).iloc[::-1]
        y = np.arange(len(rows))
        ax.barh(y, rows["unsubscribe_rate"].fillna(0) * 100, color="#c0392b", label="Unsubscribes")
        ax.barh(y, rows["spam_rate"].fillna(0) * 100, left=rows["unsubscribe_rate"].fillna(0) * 100,
                color="#e67e22", label="Spam complaints")
        total = (rows["unsubscribed"].sum() + rows["spammed"].sum()) / max(1, rows["delivered"].sum())
        ax.axvline(total * 100, color="#34495e", linestyle="--", label=f"All shown ({total:.2%})")
        ax.set_yticks(y, rows[label_column])
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    ax.set_xlabel("Rate (% of delivered messages, whole period)")
    ax.grid(axis="x", alpha=0.3)
    return figure


def spike_chart(trigger: Trigger, events: pd.DataFrame, valuable_plans: Sequence[str] = (),
                window_hours: float = 24, step_hours: float = 12) -> Figure:
    """The trigger's series: rolling-window rate against its baseline, the flagged span shaded."""
    hits, exposure = series_events(events, {"kind": trigger.kind, "campaign_id": trigger.campaign_id,
                                            "cluster": trigger.cluster if trigger.series != "all recipients"
                                            else None, "metric": trigger.metric}, valuable_plans)
    figure = Figure(figsize=(9, 4), layout="constrained")
    ax = figure.subplots()
    if len(exposure):
        start, end = int(events["timestamp"].min()), int(events["timestamp"].max())
        step, width = int(step_hours * 3600), int(window_hours * 3600)
        starts = np.arange(start // step * step, end + 1, step)
        ht, et = np.sort(hits["timestamp"].to_numpy()), np.sort(exposure["timestamp"].to_numpy())
        k = np.searchsorted(ht, starts + width) - np.searchsorted(ht, starts)
        n = np.searchsorted(et, starts + width) - np.searchsorted(et, starts)
        centre = pd.to_datetime(starts + width // 2, unit="s")
        rate = np.where(n > 0, k / np.maximum(n, 1), np.nan) * 100
        ax.plot(centre, rate, marker=".", color="#c0392b", label=f"Rolling {window_hours:g} h rate")
        ax.axhline(trigger.baseline * 100, color="#34495e", linestyle="--",
                   label=f"Baseline ({trigger.baseline:.2%})")
        ax.axvspan(trigger.window_start.tz_convert(None), trigger.window_end.tz_convert(None), color="#f5b7b1",
                   alpha=0.5, label="Flagged window")
        ax.legend(loc="upper left", fontsize=8)
    scope = f" — {trigger.cluster_name}" if trigger.cluster_name and trigger.series != "all recipients" else ""
    subject = f"Campaign #{trigger.campaign_id}" if trigger.kind == "campaign" else "Valuable customers"
    ax.set_title(f"{subject}{scope}: {METRIC_WORDS_SHORT.get(trigger.metric, trigger.metric)} vs baseline")
    ax.set_xlabel("Window centre (UTC)")
    ax.set_ylabel("Rate (% of messages)")
    ax.grid(alpha=0.3)
    return figure

