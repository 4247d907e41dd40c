"""Job 3's report tables: spikes, rates by campaign and by audience, the tests' assumptions, dead
letters and parameters. Each `*_frame` is the data (plain text and numbers, names beside ids); the
function of the same name without `_frame` shows it through `report_parts.table` (escaped, aligned,
flagged rows highlighted, a CSV link)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cio_mavera.jobs import report_parts as rp
from cio_mavera.jobs.retention import labels
from cio_mavera.jobs.retention.analysis import campaign_rates, cluster_rates
from cio_mavera.jobs.retention.parameters import PARAMETERS
from cio_mavera.jobs.retention.triggers import TriggerResult
from cio_mavera.jobs.retention.uncertainty import rate_interval

# What each dead-letter reason means, for a reader (codes from customerio.webhooks.REASONS).
DEAD_LETTER_REASONS = {
    "encoding": "not strict UTF-8 (a byte-order mark, UTF-16/32, invalid bytes)",
    "json": "not JSON",
    "number": "NaN, Infinity or a number too large to store",
    "duplicate_key": "the same key twice in one object",
    "surrogate": "a lone UTF-16 surrogate escape",
    "depth": "nested deeper than the parser allows",
    "shape": "not a webhook envelope (not an object, or data not an object)",
    "missing_field": "no event_id, metric or object_type",
    "bad_field": "an id that is not a short, printable text",
    "timestamp": "a timestamp that is no plausible unix time",
    "id_range": "a numeric id beyond 64-bit integers",
    "rejected": "the queue refused to store it",
}


# ---- spikes ---------------------------------------------------------------------------------------


def triggers_frame(results: Mapping[str, Any]) -> pd.DataFrame:
    """One row per spike (results.json's triggers): what, audience, window, counts, rate with its
    interval against the expected rate with its normal range, adjusted p, and the cooldown key."""
    names = {int(t["campaign_id"]): t.get("campaign_name") or "" for t in results.get("triggers") or []
             if t.get("campaign_id") is not None}
    rows = []
    for t in results.get("triggers") or []:
        rows.append({
            "Spike": labels.subject(t, names),
            "Audience": labels.tested_audience(t),
            "Window": labels.window_text(t["window_start"], t["window_end"]),
            "Signals": labels.SIGNAL_WORDS.get(t["metric"], t["metric"]),
            "Count": int(t["count"]),
            "Messages": int(t["exposure"]),
            "Rate (95% CI)": labels.percent_interval(t["rate"], t.get("rate_low"), t.get("rate_high")),
            "Expected (normal range)": labels.percent_interval(t["baseline"], t.get("normal_low"),
                                                               t.get("normal_high")),
            "× expected": "∞" if t.get("ratio") is None else f"{t['ratio']:.1f}×",
            "Adjusted p": rp.format_p(t["p_adjusted"], label=None),
            "Trigger key": t["key"],
        })
    return pd.DataFrame(rows)


def triggers(results: Mapping[str, Any]) -> rp.ReportHtml:
    """The spikes table (nothing when there is none)."""
    frame = triggers_frame(results)
    if frame.empty:
        return rp.ReportHtml("")
    return rp.table(frame, caption="Spikes, strongest first", csv_name="spikes",
                    ids=["Trigger key"])


def spiked_campaigns(results: Mapping[str, Any]) -> list[int]:
    """The campaigns with a spike this run (results.json's triggers)."""
    return sorted({int(t["campaign_id"]) for t in results.get("triggers") or []
                   if t.get("kind") == "campaign" and t.get("campaign_id") is not None})


def spiked_audiences(results: Mapping[str, Any]) -> list[int]:
    """The audience clusters a spike was found in or concentrated in this run."""
    return sorted({int(t["cluster"]) for t in results.get("triggers") or [] if t.get("cluster") is not None})


# ---- rates ----------------------------------------------------------------------------------------


def _with_interval(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """Counts and the opt-out rate with its 95% Wilson interval, per row of an `analysis` rates table."""
    opt_outs = frame["unsubscribed"] + frame["spammed"]
    intervals = [rate_interval(k, n) for k, n in zip(opt_outs, frame["delivered"], strict=True)]
    rates = [labels.percent_interval(k / n if n else np.nan, lo, hi)
             for k, n, (lo, hi) in zip(opt_outs, frame["delivered"], intervals, strict=True)]
    return pd.DataFrame({label: frame[label].to_numpy(), "Sent": frame["sent"].astype(int).to_numpy(),
                         "Delivered": frame["delivered"].astype(int).to_numpy(),
                         "Bounces": frame["bounced"].astype(int).to_numpy(),
                         "Unsubscribes": frame["unsubscribed"].astype(int).to_numpy(),
                         "Spam complaints": frame["spammed"].astype(int).to_numpy(),
                         "Opt-out rate (95% CI)": rates})


def _total_row(frame: pd.DataFrame, label: str, name: str) -> dict[str, Any]:
    delivered, opt_outs = int(frame["delivered"].sum()), int(frame["unsubscribed"].sum() + frame["spammed"].sum())
    low, high = rate_interval(opt_outs, delivered)
    return {label: name, "Sent": int(frame["sent"].sum()), "Delivered": delivered,
            "Bounces": int(frame["bounced"].sum()), "Unsubscribes": int(frame["unsubscribed"].sum()),
            "Spam complaints": int(frame["spammed"].sum()),
            "Opt-out rate (95% CI)": labels.percent_interval(opt_outs / delivered if delivered else np.nan,
                                                             low, high)}


def overall_rate(frame: pd.DataFrame) -> float:
    """Opt-outs per delivery over every row of a rates table: the line the chart draws and the
    table's last row."""
    delivered = frame["delivered"].sum() if len(frame) else 0
    return float((frame["unsubscribed"].sum() + frame["spammed"].sum()) / delivered) if delivered else float("nan")


def campaign_rates_frame(events: pd.DataFrame, names: Mapping[int, str]) -> tuple[pd.DataFrame, list[int]]:
    """Whole-period rates per campaign (name beside id), highest first, with an "All campaigns" row;
    and the campaign ids in row order."""
    rates = campaign_rates(events, names)
    if rates.empty:
        return pd.DataFrame(), []
    rates = rates.assign(campaign=[labels.campaign_label(names, c) for c in rates.index])
    shown = _with_interval(rates, "campaign").rename(columns={"campaign": "Campaign"})
    total = pd.DataFrame([_total_row(rates, "campaign", "All campaigns")]).rename(columns={"campaign": "Campaign"})
    return pd.concat([shown, total], ignore_index=True), [int(c) for c in rates.index]


def campaign_rates_table(events: pd.DataFrame, names: Mapping[int, str],
                         spiked: Sequence[int] = ()) -> rp.ReportHtml:
    """The campaign rates table, campaigns with a spike highlighted."""
    frame, ids = campaign_rates_frame(events, names)
    if frame.empty:
        return rp.ReportHtml("<p>No campaign deliveries are in the log.</p>")
    wanted = {int(c) for c in spiked}
    flagged = [c in wanted for c in ids] + [False]
    return rp.table(frame, flagged=flagged, csv_name="rates-by-campaign",
                    caption="Whole period; highlighted: campaigns with a spike")


def cluster_rates_frame(events: pd.DataFrame, valuable_plans: Sequence[str]) -> tuple[pd.DataFrame, list[int]]:
    """Whole-period rates per audience cluster (its one name), highest first, with an "All audiences"
    row; and the clusters in row order."""
    rates = cluster_rates(events, valuable_plans)
    if rates.empty:
        return pd.DataFrame(), []
    names = labels.audience_names(events)
    rates = rates.assign(audience=[names.get(int(c), labels.audience_label(None)) for c in rates.index])
    shown = _with_interval(rates, "audience").rename(columns={"audience": "Audience"})
    shown.insert(1, "People", rates["people"].astype(int).to_numpy())
    shown.insert(2, "On valuable plans", [rp.format_percent(v, 0) for v in rates["valuable_share"]])
    total = _total_row(rates, "audience", "All audiences")
    total = {"Audience": total.pop("audience"), "People": int(rates["people"].sum()),
             "On valuable plans": "", **total}
    return pd.concat([shown, pd.DataFrame([total])], ignore_index=True), [int(c) for c in rates.index]


def cluster_rates_table(events: pd.DataFrame, valuable_plans: Sequence[str],
                        spiked: Sequence[int] = ()) -> rp.ReportHtml:
    """The audience rates table, audiences with a spike highlighted."""
    frame, clusters = cluster_rates_frame(events, valuable_plans)
    if frame.empty:
        return rp.ReportHtml("<p>No audience clusters are available for these events.</p>")
    wanted = {int(c) for c in spiked}
    return rp.table(frame, flagged=[c in wanted for c in clusters] + [False], csv_name="rates-by-audience",
                    caption="Whole period; highlighted: audiences with a spike")


# ---- the tests' assumptions -----------------------------------------------------------------------


def _cv(value: Any) -> str:
    return rp.BLANK if value is None or not np.isfinite(value) else f"{value:.2f}"


def assumptions_frame(result: TriggerResult) -> pd.DataFrame:
    """Each assumption the spike tests make, what the data say about it, and what the tests used."""
    rows = []
    families = {"campaign": "opt-outs per delivered message",
                "churn": "valuable customers' churn signals per message sent"}
    for kind, checks in result.checks.items():
        family = families.get(kind, kind)
        for channel, fit in checks.get("sources", {}).items():
            rows.append({
                "Tests of": family,
                "Assumption": f"{labels.channel_name(channel)} campaigns and newsletters differ in rate",
                "Estimate": f"CV {_cv(fit['cv'])} (95% CI {_cv(fit['cv_low'])}–{_cv(fit['cv_high'])}), "
                            f"{fit['sources']:,} sources, {fit['events']:,} events",
                "Check": f"no spread: {rp.format_p(fit['p_value'])}", "Used": f"CV {_cv(fit['cv_used'])}"})
        for name, what in (("audiences", "audiences within a campaign differ"),
                           ("dispersion", "a campaign's days wobble beyond chance")):
            fit = checks.get(name)
            if fit:
                rows.append({"Tests of": family, "Assumption": what,
                             "Estimate": f"CV {_cv(np.sqrt(fit['phi']))} over {fit['cells']:,} cells",
                             "Check": f"none: {rp.format_p(fit['p_value'])}",
                             "Used": f"CV {_cv(np.sqrt(fit['phi_used']))}"})
        effects = checks.get("time_effects", {})
        for name, key, used in (("hour of week changes the rate", "hour_of_week_p", "hour_of_week_used"),
                                ("big sends (5× a source's usual hour) change the rate", "burst_p",
                                 "burst_used")):
            p = effects.get(key)
            rows.append({"Tests of": family, "Assumption": name,
                         "Estimate": f"{effects.get('events', 0):,} events outside each source's busiest span",
                         "Check": "too few events to check" if p is None else f"no effect: {rp.format_p(p)}",
                         "Used": "weighted" if effects.get(used) else "not used"})
    return pd.DataFrame(rows)


def assumptions(result: TriggerResult) -> rp.ReportHtml:
    """The assumptions table."""
    return rp.table(assumptions_frame(result), csv_name="assumptions")


# ---- dead letters, parameters ---------------------------------------------------------------------


def dead_letters_frame(summary: Mapping[str, Any] | None) -> pd.DataFrame:
    """Dead letters waiting, by reason, with what the reason means."""
    by_reason = (summary or {}).get("by_reason") or {}
    return pd.DataFrame({"Reason": list(by_reason),
                         "What the body had": [DEAD_LETTER_REASONS.get(r, "") for r in by_reason],
                         "Waiting": [int(n) for n in by_reason.values()]})


def dead_letters(summary: Mapping[str, Any] | None) -> rp.ReportHtml:
    """The dead-letter table (nothing when none is waiting)."""
    frame = dead_letters_frame(summary)
    return rp.ReportHtml("") if frame.empty else rp.table(frame, csv_name="dead-letters")


def parameters_frame(parameters: Mapping[str, Any]) -> pd.DataFrame:
    """The run's parameters: plain values and what each one means."""
    return rp.parameters_frame(parameters, PARAMETERS)


def parameters(parameters: Mapping[str, Any]) -> rp.ReportHtml:
    """The parameters table."""
    return rp.parameters_table(parameters, PARAMETERS)
