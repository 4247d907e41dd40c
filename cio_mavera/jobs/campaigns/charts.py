"""Static matplotlib charts for job 1: each channel's messages with the flagged ones marked, the
underperformers against their channel's typical message, and rate trends.

Figures are built with `matplotlib.figure.Figure` rather than pyplot, so they work under Agg, leave no
global figure state behind, and display once in Jupyter (the inline backend renders Figure objects).
Message names are Customer.io data: they reach a chart only through `markup.plain_label`, so a `$`
never starts mathtext. Channels carry the reader's names ("SMS", never "twilio").
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cio_mavera.jobs.campaigns.labels import channel_name
from cio_mavera.jobs.campaigns.stats import rate_definition
from cio_mavera.markup import plain_label

__all__ = ["distribution_chart", "trend_chart", "underperformer_chart"]

_POINT = "#c0392b"
_BASELINE = "#34495e"
_ORDINARY = "#7f8c8d"
_RANGE = "#d5dbdb"
_DEFAULT_RATES = ("human_click_rate", "conversion_rate")


def distribution_chart(tests: pd.DataFrame, spreads: pd.DataFrame, max_panels: int = 4) -> Figure:
    """One panel per rate (flagged rates first): every tested message of each channel as a dot, the
    channel's typical rate and the range typical messages span, flagged messages in red."""
    tested = tests[tests["reason"].isna()]
    flagged = tested[tested["flagged"].astype(bool)]
    metrics = list(dict.fromkeys([*flagged["metric"], *_DEFAULT_RATES]))
    metrics = [m for m in metrics if (tested["metric"] == m).any()][:max_panels]
    if not metrics:
        return _empty_figure("Messages per channel", "No message had enough deliveries to test", "Rate (%)")
    rows = [tested.loc[tested["metric"] == m, "channel"].nunique() for m in metrics]
    figure = Figure(figsize=(9, 1.4 + 0.7 * sum(rows) + 0.5 * len(metrics)), layout="constrained")
    axes = figure.subplots(len(metrics), 1, squeeze=False, gridspec_kw={"height_ratios": rows})[:, 0]
    for ax, metric in zip(axes, metrics, strict=True):
        _draw_distribution(ax, tested[tested["metric"] == metric], spreads[spreads["metric"] == metric], metric)
    figure.suptitle("Messages per channel: typical range (grey) and flagged underperformers (red)")
    legend = {}
    for ax in axes:  # every entry once, whichever panel drew it
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    figure.legend(legend.values(), legend.keys(), loc="outside lower center", ncols=2, frameon=False)
    return figure


def _draw_distribution(ax, rows: pd.DataFrame, spreads: pd.DataFrame, metric: str) -> None:
    label = rate_definition(metric).label
    channels = sorted(rows["channel"].unique())
    jitter = np.random.default_rng(0)  # fixed: the same report draws the same picture
    flagged_shown = gap_shown = False
    for y, channel in enumerate(channels):
        spread = spreads[spreads["channel"] == channel]
        if not spread.empty:
            s = spread.iloc[0]
            ax.barh(y, (s["typical_high"] - s["typical_low"]) * 100, left=s["typical_low"] * 100, height=0.6,
                    color=_RANGE, label="Typical messages (95% range)" if y == 0 else None)
            ax.vlines(s["typical_rate"] * 100, y - 0.3, y + 0.3, color=_BASELINE, linewidth=2,
                      label="Typical message" if y == 0 else None)
        mine = rows[rows["channel"] == channel]
        bad = mine["flagged"].astype(bool).to_numpy()
        # Ordinary messages are jittered so they do not hide each other; flagged ones sit on the line.
        offsets = np.where(bad, 0.0, jitter.uniform(-0.18, 0.18, size=len(mine)))
        ax.scatter(mine["rate"].to_numpy()[~bad] * 100, y + offsets[~bad], s=18, color=_ORDINARY, zorder=3,
                   label="Message" if y == 0 else None)
        ax.scatter(mine["rate"].to_numpy()[bad] * 100, y + offsets[bad], s=40, color=_POINT, marker="D",
                   zorder=4, label="Flagged underperformer" if bad.any() and not flagged_shown else None)
        flagged_shown = flagged_shown or bool(bad.any())
        for k, r in enumerate(mine[bad].itertuples(index=False)):
            reference = r.baseline if np.isfinite(r.baseline) else r.rate
            # The gap to the test's own reference, the "Typical message" of the flagged table.
            ax.plot([r.rate * 100, reference * 100], [y, y], color=_POINT, linestyle=":",
                    linewidth=1.2, zorder=2, label="Gap to the typical message" if not gap_shown else None)
            gap_shown = True
            # Labelled over the middle of its gap, alternately above and below within a row.
            ax.annotate(_point_label(r), ((r.rate + reference) * 50, y), xytext=(0, 5 if k % 2 == 0 else -5),
                        textcoords="offset points", fontsize=8, color=_POINT, ha="center",
                        va="bottom" if k % 2 == 0 else "top")
    ax.set_yticks(range(len(channels)), [channel_name(c) for c in channels])
    ax.set_ylim(-0.6, len(channels) - 0.4)
    ax.set_title(label)
    ax.set_xlabel(f"{label} (%)")
    ax.grid(axis="x", alpha=0.3)


def _point_label(row) -> str:
    """A flagged point's label: its message's name (as plain text) and id."""
    name = getattr(row, "name", None)
    if not isinstance(name, str) or not name.strip():
        return f"#{int(row.action_id)}"
    return f"{plain_label(name, 28)} (#{int(row.action_id)})"


def underperformer_chart(result_df: pd.DataFrame, baselines: pd.DataFrame, max_rows: int = 20) -> Figure:
    """Flagged messages as points with 95% Wilson intervals against their channel's typical message
    (the test's reference; the pooled rate in `baselines` where a row has none), one panel per rate."""
    flagged = result_df[result_df["flagged"].astype(bool)].head(max_rows)
    if flagged.empty:
        return _empty_figure("Underperforming messages vs their channel's typical message",
                             "No underperformers flagged at this significance level", "Rate (%)")
    metrics = list(dict.fromkeys(flagged["metric"]))
    heights = [max(1, (flagged["metric"] == m).sum()) + 1 for m in metrics]
    figure = Figure(figsize=(9, 1.2 + 0.45 * sum(heights)), layout="constrained")
    axes = figure.subplots(len(metrics), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, metric in zip(axes, metrics, strict=True):
        _draw_rate_panel(ax, flagged[flagged["metric"] == metric], baselines, metric)
    figure.suptitle("Underperforming messages vs their channel's typical message (95% Wilson intervals)")
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
    baseline = [(b if pd.notna(b) else channel_rate.get(c, np.nan)) * 100
                for c, b in zip(rows["channel"], rows["baseline"], strict=True)]
    ax.vlines(baseline, [p - 0.35 for p in positions], [p + 0.35 for p in positions], color=_BASELINE,
              linewidth=2, label="Typical message of the channel")
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
    name = getattr(row, "name", None) or "message"
    return f"{plain_label(name, 40)} (#{int(row.action_id)}, {channel_name(row.channel)})"


def trend_chart(trend_df: pd.DataFrame) -> Figure:
    """One line per channel of the pooled rate per period, with its 95% Wilson band."""
    if trend_df.empty:
        return _empty_figure("Rate trend by channel", "No metrics in the selected window", "Rate (%)")
    label = rate_definition(trend_df["metric"].iloc[0]).label
    figure = Figure(figsize=(9, 4), layout="constrained")
    ax = figure.subplots()
    for channel, rows in trend_df.sort_values("period_start").groupby("channel", sort=True):
        when = rows["period_start"].dt.tz_convert(None)
        line, = ax.plot(when, rows["rate"] * 100, marker="o", label=channel_name(channel))
        ax.fill_between(when, rows["ci_low"] * 100, rows["ci_high"] * 100, color=line.get_color(), alpha=0.2)
    ax.set_title(f"{label} of each channel's sends per period (95% Wilson band)")
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
