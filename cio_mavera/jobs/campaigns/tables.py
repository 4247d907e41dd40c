"""Job 1's report tables: each a DataFrame builder (`*_frame`, for tests and the CSV) and the
displayed table (`report_parts.table`: escaped, aligned, flagged rows highlighted, a CSV link).

Message and campaign names sit beside their ids, channels are spelt for readers ("SMS"), rates
carry their intervals, and every cell from Customer.io or Mavera is shown as text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from cio_mavera.jobs import report_parts as rp
from cio_mavera.jobs.campaigns.analysis import Findings
from cio_mavera.jobs.campaigns.data import CampaignData
from cio_mavera.jobs.campaigns.labels import (
    campaign_label,
    campaign_names,
    channel_name,
    message_label,
    rate_label,
    shortfall_word,
)
from cio_mavera.jobs.campaigns.parameters import PARAMETERS
from cio_mavera.jobs.campaigns.variations import CURRENT, Variation

CURRENT_LABEL = "current copy"


def _interval(rate: Any, low: Any, high: Any, digits: int = 2) -> str:
    return rp.format_percent_interval(rate, low, high, digits)


# ---- funnel ----------------------------------------------------------------------------------


def funnel_frame(findings: Findings, data: CampaignData) -> pd.DataFrame:
    """Every message's rates in percent, its name beside its id and its campaign's name."""
    table = findings.funnel
    names = campaign_names(data.campaigns)
    rates = [c for c in table.columns if c.endswith("(%)")]
    frame = pd.DataFrame({
        "Message": [message_label(n, a) for n, a in zip(table["Message"], table["Action"], strict=True)],
        "Campaign": [campaign_label(names, c) for c in table["Campaign"]],
        "Channel": table["Channel"].map(channel_name),
        "Sent": table["Sent"].astype("Int64"),
    })
    for column in rates:
        frame[column] = table[column].astype(float).to_numpy()
    return frame


def funnel(findings: Findings, data: CampaignData) -> rp.ReportHtml:
    """The funnel table, flagged messages highlighted."""
    flagged = set(findings.flagged["action_id"].astype(int))
    mask = [int(a) in flagged for a in findings.funnel["Action"]]
    return rp.table(funnel_frame(findings, data), flagged=mask, csv_name="funnel",
                    caption="Rates per message in the window (%); flagged messages highlighted")


# ---- underperformers -------------------------------------------------------------------------


def flagged_frame(findings: Findings, data: CampaignData) -> pd.DataFrame:
    """Flagged (message, rate) pairs: observed and shrunken rate with 95% intervals, the channel's
    typical message (the test's reference, as charted) and range, effect and adjusted p."""
    columns = ["Message", "Campaign", "Channel", "Rate", "Observed (95% CI)", "Shrunken (95% CI)",
               "Typical message", "Typical range", "Relative difference", "Adjusted p", "Deliveries"]
    f = findings.flagged
    if f.empty:
        return pd.DataFrame(columns=columns)
    names = campaign_names(data.campaigns)
    return pd.DataFrame({
        "Message": [message_label(n, a) for n, a in zip(f["name"], f["action_id"], strict=True)],
        "Campaign": [campaign_label(names, c) for c in f["campaign_id"]],
        "Channel": f["channel"].map(channel_name),
        "Rate": [f"{rate_label(m)} ({shortfall_word(m)})" for m in f["metric"]],
        "Observed (95% CI)": [_interval(r, lo, hi) for r, lo, hi in
                              zip(f["rate"], f["ci_low"], f["ci_high"], strict=True)],
        "Shrunken (95% CI)": [_interval(r, lo, hi) for r, lo, hi in
                              zip(f["shrunk_rate"], f["shrunk_low"], f["shrunk_high"], strict=True)],
        "Typical message": [rp.format_percent(b, 2) for b in f["baseline"]],
        "Typical range": [f"{100 * float(lo):.2f}–{100 * float(hi):.2f}%"
                          for lo, hi in zip(f["typical_low"], f["typical_high"], strict=True)],
        "Relative difference": [f"{v:+.0%}" if math.isfinite(v) else "n/a"
                                for v in f["relative_difference"].astype(float)],
        "Adjusted p": [rp.format_p(p, None) for p in f["p_adjusted"]],
        "Deliveries": f["trials"].astype(int).to_numpy(),
    })[columns]


def flagged(findings: Findings, data: CampaignData) -> rp.ReportHtml:
    """The flagged table (every row is a flag, so none is highlighted)."""
    return rp.table(flagged_frame(findings, data), csv_name="underperformers",
                    caption="Messages worse than a typical message of their channel")


# ---- variations ------------------------------------------------------------------------------


def _copy_text(subject: str, preheader: str, outline: Sequence[str]) -> str:
    parts = [p for p in (subject, preheader) if p]
    if not parts and len(outline):
        parts = [outline[0]]
    return " — ".join(parts)


def variations_frame(ranked: pd.DataFrame, scores: pd.DataFrame, action_id: int,
                     drafts: Sequence[Variation] = ()) -> pd.DataFrame:
    """One message's ranked variations and its current copy: the copy, the mean and each persona's
    score (1-10), the change against the current copy, open/click estimates and the reasons given
    by the highest and the lowest scorer."""
    rows = ranked[ranked["action_id"].astype(int) == int(action_id)]
    if rows.empty:
        return pd.DataFrame()
    mine = scores[scores["action_id"].astype(int) == int(action_id)]
    per_persona = mine.pivot_table(index="variation_id", columns="persona_name", values="score",
                                   aggfunc="mean")
    table = pd.DataFrame({
        "Rank": [str(int(r)) for r in rows["rank"]],
        "Copy": [_copy_text(r.subject, r.preheader, r.body_outline) for r in rows.itertuples(index=False)],
        "Mean score": rows["mean_score"].astype(float).to_numpy(),
        "vs current": [f"{v:+.1f}" if math.isfinite(v) else "n/a"
                       for v in rows["lift_vs_current"].astype(float)],
        "Open / click (prob.)": [f"{o:.2f} / {c:.2f}"
                                 for o, c in zip(rows["would_open"], rows["would_click"], strict=True)],
        "Why (highest / lowest scorer)": [f"{b} / {w}" for b, w in
                                          zip(rows["best_reason"], rows["worst_reason"], strict=True)],
    }, index=pd.Index(rows["variation_id"].astype(str).to_numpy(), name="Variation"))
    positions = list(rows["variation_id"].astype(str))
    control = mine[mine["variation_id"] == CURRENT]
    if not control.empty:
        live = next((d for d in drafts if d.action_id == action_id and d.variation_id == CURRENT), None)
        ordered = control.sort_values(["score", "persona_name"], kind="stable")
        table.loc[CURRENT_LABEL] = [
            "control",
            _copy_text(live.subject, live.preheader, live.body_outline) if live else "the live copy",
            float(control["score"].mean()), "",
            f"{control['would_open'].mean():.2f} / {control['would_click'].mean():.2f}",
            f"{ordered['reason'].iloc[-1]} / {ordered['reason'].iloc[0]}",
        ]
        positions.append(CURRENT)
    for persona in per_persona.columns:
        table.insert(len(table.columns) - 2, str(persona),
                     per_persona[persona].reindex(positions).astype(float).to_numpy())
    return table


def variations_sections(findings: Findings, ranked: pd.DataFrame, scores: pd.DataFrame,
                        drafts: Sequence[Variation] = ()) -> list[tuple[str, rp.ReportHtml]]:
    """(heading text, table) per rewritten message, strongest evidence first; the variation to
    A/B test (the top one, when it beats the current copy) is highlighted."""
    sections = []
    for row in findings.messages.itertuples(index=False):
        frame = variations_frame(ranked, scores, int(row.action_id), drafts)
        if frame.empty:
            continue
        top = frame.index[0]
        lift = ranked.loc[ranked["action_id"].astype(int) == int(row.action_id), "lift_vs_current"]
        beats = bool(len(lift)) and math.isfinite(float(lift.iloc[0])) and float(lift.iloc[0]) > 0
        shortfall = ", ".join(f"{shortfall_word(m)} {rate_label(m, lower=True)}" for m in row.metrics)
        heading = f"{message_label(row.name, row.action_id)}, {channel_name(row.channel)}: {shortfall}"
        table = rp.table(frame, flagged=[top] if beats else None, digits=1,
                         csv_name=f"variations-{int(row.action_id)}",
                         caption="Persona scores from 1 to 10; the variation to A/B test highlighted")
        sections.append((heading, table))
    return sections


# ---- A/B tests -------------------------------------------------------------------------------


def ab_frame(plan: pd.DataFrame) -> pd.DataFrame:
    """The A/B tests to run: which variation, the rate that decides it, the change worth detecting,
    deliveries per variant and days at the message's current pace."""
    columns = ["Message", "Variation", "Deciding rate", "Current → worth detecting",
               "Typical message", "Deliveries per variant", "Days at current pace"]
    if plan.empty:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame({
        "Message": [message_label(n, a) for n, a in zip(plan["name"], plan["action_id"], strict=True)],
        "Variation": [v if v else "new copy" for v in plan["variation_id"]],
        "Deciding rate": [rate_label(m) for m in plan["metric"]],
        "Current → worth detecting": [f"{rp.format_percent(c, 2)} → {rp.format_percent(t, 2)}"
                                      for c, t in zip(plan["current_rate"], plan["target_rate"], strict=True)],
        "Typical message": [rp.format_percent(t, 2) for t in plan["typical_rate"]],
        "Deliveries per variant": pd.array(plan["per_variant"], dtype="Int64"),
        "Days at current pace": pd.array(plan["days"], dtype="Int64"),
    })[columns]


def ab_tests(plan: pd.DataFrame) -> rp.ReportHtml:
    """The A/B test table, the tests whose variation beat the current copy highlighted."""
    beats = [bool(math.isfinite(v) and v > 0) for v in plan["lift_vs_current"].astype(float)] \
        if not plan.empty else []
    return rp.table(ab_frame(plan), flagged=beats, csv_name="ab-tests",
                    caption="A/B test sizes (80% power, 5% significance, two-sided)")


# ---- parameters ------------------------------------------------------------------------------


def parameters_frame(parameters: Mapping[str, Any]) -> pd.DataFrame:
    """The run's parameters: plain values and what each one means."""
    return rp.parameters_frame(parameters, PARAMETERS)


def parameters(parameters: Mapping[str, Any]) -> rp.ReportHtml:
    """The parameters table."""
    return rp.parameters_table(parameters, PARAMETERS)
