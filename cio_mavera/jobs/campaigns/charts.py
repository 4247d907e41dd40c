"""Static matplotlib charts for job 1: underperformers against their channel baseline, and rate trends.

Figures are built with `matplotlib.figure.Figure` rather than pyplot, so they work under Agg, leave no
global figure state behind, and display once in Jupyter (the inline backend renders Figure objects).
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from cio_mavera.jobs.campaigns.stats import rate_definition

__all__ = ["trend_chart", "underperformer_chart"]

_POINT = "#c0392b"
_BASELINE = "#34495e"


def underperformer_chart(result_df: pd.DataFrame, baselines: pd.DataFrame, max_rows: int = 20) -> Figure:
    """Flagged messages as points with 95% Wilson intervals against their channel's pooled rate, one panel per rate."""
    flagged = result_df[result_df["flagged"].astype(bool)].head(max_rows)
    if flagged.empty:
        return _empty_figure("Underperforming messages vs channel baseline",
                             "No underperformers flagged at this significance level", "Rate (%)")
    metrics = list(dict.fromkeys(flagged["metric"]))
    heights = [max(1, (flagged["metric"] == m).sum()) + 1 for m in metrics]
    figure = Figure(figsize=(9, 1.2 + 0.45 * sum(heights)), layout="constrained")
    axes = figure.subplots(len(metrics), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, metric in zip(axes, metrics, strict=True):
        _draw_rate_panel(ax, flagged[flagged["metric"] == metric], baselines, metric)
    figure.suptitle("Underperforming messages vs channel baseline (95% Wilson intervals)")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=2, frameon=False)
    return figure


def _draw_rate_panel(ax, rows: pd.DataFrame, baselines: pd.DataFrame, metric: str) -> None:
    label = rate_definition(metric).label
    positions = list(range(len(rows)))
    rate = rows["rate"].to_numpy() * 100
    errors = [rate - rows["ci_low"].to_numpy() * 100, rows["ci_high"].to_numpy() * 100 - rate]
    ax.errorbar(rate, positions, xerr=errors, fmt="o", color=_POINT, capsize=3, label="Message rate")
    channel_rate = _channel_rate_lookup(baselines, metric)
    baseline = [channel_rate.get(c, b) * 100 for c, b in zip(rows["channel"], rows["baseline"], strict=True)]
    ax.vlines(baseline, [p - 0.35 for p in positions], [p + 0.35 for p in positions], color=_BASELINE,
              linewidth=2, label="Channel baseline")
    ax.set_yticks(positions, [_message_label(r) for r in rows.itertuples(index=False)])
    ax.invert_yaxis()
    ax.set_title(label)
    ax.set_xlabel(f"{label} (%)")
    ax.grid(axis="x", alpha=0.3)
    ax.margins(x=0.1, y=0.5)


def _channel_rate_lookup(baselines: pd.DataFrame, metric: str) -> dict[str, float]:
    rows = baselines[baselines["metric"] == metric]
    return dict(zip(rows["channel"], rows["rate"], strict=True))


def _message_label(row) -> str:
    name = getattr(row, "name", None) or "action"
    return f"{name} (#{row.action_id}, {row.channel})"


def trend_chart(trend_df: pd.DataFrame) -> Figure:
    """One line per channel of the pooled rate per period, with its 95% Wilson band."""
    if trend_df.empty:
        return _empty_figure("Rate trend by channel", "No metrics in the selected window", "Rate (%)")
    label = rate_definition(trend_df["metric"].iloc[0]).label
    figure = Figure(figsize=(9, 4), layout="constrained")
    ax = figure.subplots()
    for channel, rows in trend_df.sort_values("period_start").groupby("channel", sort=True):
        when = rows["period_start"].dt.tz_convert(None)
        line, = ax.plot(when, rows["rate"] * 100, marker="o", label=channel)
        ax.fill_between(when, rows["ci_low"] * 100, rows["ci_high"] * 100, color=line.get_color(), alpha=0.2)
    ax.set_title(f"{label} by channel per period (95% Wilson band)")
    ax.set_xlabel("Period start (UTC)")
    ax.set_ylabel(f"{label} (%)")
    ax.grid(alpha=0.3)
    ax.legend(title="Channel")
    figure.autofmt_xdate()
    return figure


def _empty_figure(title: str, message: str, xlabel: str) -> Figure:
    figure = Figure(figsize=(7, 2), layout="constrained")
    ax = figure.subplots()
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_yticks([])
    return figure
