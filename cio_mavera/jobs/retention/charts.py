"""Job 3 charts: event volume, opt-out rates per campaign or audience, and a spike against what its
campaign and audience would normally show.

Figures are `matplotlib.figure.Figure` objects (no pyplot state), shown as PNGs so the report is
self-contained. Every name from Customer.io goes through `markup.plain_label`, so a `$` in a
campaign name is a dollar sign, not mathtext.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cio_mavera.jobs.retention import labels
from cio_mavera.jobs.retention.tables import overall_rate
from cio_mavera.jobs.retention.triggers import Trigger, series_events
from cio_mavera.jobs.retention.uncertainty import normal_range, rate_interval
from cio_mavera.markup import plain_label

SPIKE_RED, EXPECTED_GREY, NORMAL_BAND, FLAGGED_PINK = "#c0392b", "#34495e", "#d5dbdb", "#f5b7b1"


def _date_axis(axes) -> None:
    """Evenly spaced date ticks (the default restarts its every-other-day ticks at each month, so the
    last day of a month and the first of the next collide) with short labels."""
    locator = mdates.AutoDateLocator(maxticks=9, interval_multiples=False)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def volume_chart(events: pd.DataFrame, bin_hours: int = 6) -> Figure:
    """Events per `bin_hours` over time: message activity above, opt-outs and bounces below."""
    figure = Figure(figsize=(9, 4.5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    if events.empty:
        top.text(0.5, 0.5, "No events in the log", ha="center", va="center", transform=top.transAxes)
    else:
        when = pd.to_datetime(events["timestamp"].astype("int64"), unit="s", utc=True).dt.tz_convert(None)
        table = pd.crosstab(when.dt.floor(f"{bin_hours}h"), events["metric"])
        for axes, metrics in ((top, ("sent", "delivered", "opened", "clicked")),
                              (bottom, ("unsubscribed", "spammed", "bounced"))):
            for metric in metrics:
                if metric in table:
                    axes.plot(table.index, table[metric], marker="." if axes is bottom else None,
                              label=labels.METRIC_NAMES.get(metric, metric))
    top.set_title(f"Webhook events per {bin_hours} h")
    top.set_ylabel("Messages")
    bottom.set_ylabel("Opt-outs, bounces")
    bottom.set_xlabel("Event time (UTC)")
    _date_axis(bottom)
    for axes in (top, bottom):
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="upper left", fontsize=8, ncols=4)
    return figure


def rates_chart(rates: pd.DataFrame, names: Sequence[str], title: str, overall: float,
                overall_label: str, max_rows: int = 15) -> Figure:
    """Opt-out rate per row of an `analysis` rates table (highest first) with its 95% interval, and
    the rate of all rows together as a dashed line (the table's last row)."""
    shown = rates.head(max_rows)
    figure = Figure(figsize=(9, 1.4 + 0.32 * max(1, len(shown))), layout="constrained")
    axes = figure.subplots()
    if shown.empty:
        axes.text(0.5, 0.5, "No deliveries in the log", ha="center", va="center", transform=axes.transAxes)
    else:
        opt_outs = (shown["unsubscribed"] + shown["spammed"]).to_numpy()
        delivered = shown["delivered"].to_numpy()
        rate = np.where(delivered > 0, opt_outs / np.maximum(delivered, 1), np.nan) * 100
        bounds = np.array([rate_interval(k, n) for k, n in zip(opt_outs, delivered, strict=True)]) * 100
        y = np.arange(len(shown))[::-1]
        axes.barh(y, np.nan_to_num(rate), color=SPIKE_RED, alpha=0.8, label="Opt-out rate")
        axes.errorbar(rate, y, xerr=np.clip(np.nan_to_num([rate - bounds[:, 0], bounds[:, 1] - rate]), 0, None),
                      fmt="none", ecolor="#333333", capsize=3, linewidth=1, label="95% interval")
        if np.isfinite(overall):
            axes.axvline(overall * 100, color=EXPECTED_GREY, linestyle="--",
                         label=f"{plain_label(overall_label)} ({labels.percent(overall)})")
        axes.set_yticks(y, [plain_label(n, 48) for n in list(names)[: len(shown)]])
        axes.legend(loc="lower right", fontsize=8)
    axes.set_title(plain_label(title, 90))
    axes.set_xlabel("Unsubscribes + spam complaints (% of delivered messages, whole period)")
    axes.grid(axis="x", alpha=0.3)
    return figure


def campaign_rates_chart(rates: pd.DataFrame, names: Mapping[int, str]) -> Figure:
    """`rates_chart` of an `analysis.campaign_rates` table: campaigns by name beside id, against all
    campaigns together (the campaign table's last row)."""
    return rates_chart(rates, [labels.campaign_label(names, c) for c in rates.index], "Opt-out rate by campaign",
                       overall_rate(rates), "All campaigns")


def audience_rates_chart(rates: pd.DataFrame, events: pd.DataFrame) -> Figure:
    """`rates_chart` of an `analysis.cluster_rates` table: audiences by their one name, against all
    audiences together (the audience table's last row)."""
    names = labels.audience_names(events)
    return rates_chart(rates, [names.get(int(c), labels.audience_label(None)) for c in rates.index],
                       "Opt-out rate by audience cluster", overall_rate(rates), "All audiences")


def spike_chart(trigger: Trigger, events: pd.DataFrame, names: Mapping[int, str],
                valuable_plans: Sequence[str] = (), window_hours: float = 24, step_hours: float = 12) -> Figure:
    """The spike's series: its rolling-window rate against the rate the test expected (the same as
    the spikes table), the flagged window's own rate with its interval, and its normal range."""
    row = {"kind": trigger.kind, "campaign_id": trigger.campaign_id, "metric": trigger.metric,
           "cluster": trigger.cluster if trigger.series != "all recipients" else None}
    hits, exposure = series_events(events, row, valuable_plans)
    figure = Figure(figsize=(9, 3.8), layout="constrained")
    axes = figure.subplots()
    start_flag, end_flag = (trigger.window_start.tz_convert(None), trigger.window_end.tz_convert(None))
    if len(exposure):
        start, end = int(events["timestamp"].min()), int(events["timestamp"].max())
        step, width = int(step_hours * 3600), int(window_hours * 3600)
        starts = np.arange(start // step * step, end + 1, step)
        ht, et = np.sort(hits["timestamp"].to_numpy()), np.sort(exposure["timestamp"].to_numpy())
        k = np.searchsorted(ht, starts + width) - np.searchsorted(ht, starts)
        n = np.searchsorted(et, starts + width) - np.searchsorted(et, starts)
        centre = pd.to_datetime(starts + width // 2, unit="s")
        axes.plot(centre, np.where(n > 0, k / np.maximum(n, 1), np.nan) * 100, marker=".", color="#7f8c8d",
                  linewidth=1, label=f"Rolling {window_hours:g} h rate")
    low, high = normal_range(trigger.expected, trigger.extra_variance, trigger.exposure)
    if np.isfinite(low) and np.isfinite(high):
        axes.fill_between([start_flag, end_flag], low * 100, high * 100, color=NORMAL_BAND, alpha=0.8,
                          label=f"Normal range in this window ({labels.percent_range(low, high)})")
    axes.axvspan(start_flag, end_flag, color=FLAGGED_PINK, alpha=0.35, label="Flagged window")
    axes.axhline(trigger.baseline * 100, color=EXPECTED_GREY, linestyle="--",
                 label=f"Expected ({labels.percent(trigger.baseline)})")
    rate_low, rate_high = rate_interval(trigger.count, trigger.exposure)
    middle = start_flag + (end_flag - start_flag) / 2
    axes.errorbar([middle], [trigger.rate * 100],
                  yerr=np.clip(np.nan_to_num([[trigger.rate - rate_low], [rate_high - trigger.rate]]), 0, None) * 100,
                  fmt="D", color=SPIKE_RED, capsize=4,
                  label=f"Flagged window ({labels.percent_interval(trigger.rate, rate_low, rate_high)})")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, borderaxespad=0)  # beside, not over, the data
    audience = f", {labels.tested_audience(trigger)}" if trigger.kind == "campaign" else ""
    what = labels.SIGNAL_WORDS.get(trigger.metric, trigger.metric)
    axes.set_title(plain_label(f"{labels.subject(trigger, names)}{audience}: {what}", 100))
    axes.set_xlabel("Window centre (UTC)")
    _date_axis(axes)
    axes.set_ylabel("Rate (% of messages)")
    axes.grid(alpha=0.3)
    return figure
