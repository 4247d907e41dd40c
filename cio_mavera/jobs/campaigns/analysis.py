"""Job 1 analysis: rates, baselines and underperformers, and the PII-free summary sent to Mave."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cio_mavera.jobs.campaigns import stats as campaign_stats
from cio_mavera.jobs.campaigns.data import CampaignData, JobInputError
from cio_mavera.jobs.campaigns.underperformers import compare_with_channels
from cio_mavera.pii import assert_no_pii, redact_text

_BODY_EXCERPT_CHARS = 400


@dataclass
class Findings:
    """Rates, baselines, tests, trend and the underperforming messages chosen for new copy.

    `tests`: one row per (message, rate) against its channel's typical message; `spreads`: per
    (channel, rate) the typical rate, its range and the spread between messages; `checks`: each
    assumption of the test and what the data said about it.
    """

    rates: pd.DataFrame
    baselines: pd.DataFrame
    tests: pd.DataFrame
    spreads: pd.DataFrame
    checks: pd.DataFrame
    flagged: pd.DataFrame
    messages: pd.DataFrame
    trend: pd.DataFrame
    funnel: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp
    channel: str
    campaign_ids: list[int]
    alpha: float
    min_trials: int
    min_relative_drop: float
    trend_rate: str


def analyse(data: CampaignData, *, max_underperformers: int = 3, alpha: float = 0.05,
            min_trials: int = 500, min_relative_drop: float = 0.10,
            trend_rate: str = "human_click_rate") -> Findings:
    """Funnel rates, channel baselines, FDR-corrected underperformers and the trend for `data`.

    Every message of the chosen channel(s) is tested against what a typical message of its channel
    would show (`underperformers`), and the Benjamini-Hochberg correction covers all of those
    tests; a campaign filter then only narrows which flags are reported, which keeps the
    correction conservative.
    """
    if max_underperformers < 0:
        raise JobInputError("max_underperformers must be >= 0")
    actions, metrics = data.actions, data.metrics
    if data.channel != "all":
        actions = actions[actions["channel"] == data.channel]
        keep = metrics["action_id"].isna() | metrics["action_id"].isin(actions["action_id"])
        metrics = metrics[keep]
    rates = campaign_stats.action_rates(metrics, actions, start=data.start, end=data.end)
    baselines = campaign_stats.channel_baselines(rates)
    comparison = compare_with_channels(rates, alpha=alpha, min_trials=min_trials,
                                       min_relative_drop=min_relative_drop)
    tests = comparison.tests
    in_scope = _in_campaigns(tests, data.campaign_ids)
    flagged = tests[in_scope & tests["flagged"].astype(bool)].reset_index(drop=True)
    messages = _underperforming_messages(flagged, data.actions, max_underperformers)
    window = metrics[pd.to_datetime(metrics["bucket_start"], utc=True).between(
        data.start, data.end, inclusive="left")]
    freq = "D" if data.days <= 21 else "W"
    trend = campaign_stats.daily_trend(window, actions, rate=trend_rate, freq=freq)
    funnel = campaign_stats.funnel_table(rates[_in_campaigns(rates, data.campaign_ids)])
    return Findings(rates, baselines, tests, comparison.spreads, comparison.checks, flagged, messages,
                    trend, funnel, data.start, data.end, data.channel, data.campaign_ids, alpha, min_trials,
                    min_relative_drop, trend_rate)


def _in_campaigns(frame: pd.DataFrame, campaign_ids: Sequence[int]) -> pd.Series:
    if not campaign_ids:
        return pd.Series(True, index=frame.index)
    return frame["campaign_id"].astype("int64").isin(list(campaign_ids))


def _underperforming_messages(flagged: pd.DataFrame, actions: pd.DataFrame, limit: int) -> pd.DataFrame:
    """One row per flagged message, strongest evidence first, with its copy; at most `limit` rows."""
    columns = ["campaign_id", "action_id", "channel", "name", "subject", "preheader_text", "body",
               "metrics", "min_p_adjusted", "worst_relative_difference"]
    if flagged.empty or limit == 0:
        return pd.DataFrame(columns=columns)
    shortfall = np.where(flagged["higher_is_better"].astype(bool), -flagged["relative_difference"],
                         flagged["relative_difference"]).astype(float)
    scored = flagged.assign(_shortfall=shortfall)
    grouped = (scored.groupby(["campaign_id", "action_id", "channel"], sort=False)
               .agg(metrics=("metric", list), min_p_adjusted=("p_adjusted", "min"),
                    worst_relative_difference=("_shortfall", "max"))
               .reset_index())
    grouped["worst_relative_difference"] = -grouped["worst_relative_difference"]
    grouped = grouped.sort_values(["min_p_adjusted", "worst_relative_difference", "action_id"],
                                  kind="stable").head(limit)
    copy = actions.drop_duplicates("action_id")[
        ["action_id", "name", "subject", "preheader_text", "body"]].copy()
    copy["action_id"] = copy["action_id"].astype("int64")
    grouped["action_id"] = grouped["action_id"].astype("int64")
    merged = grouped.merge(copy, on="action_id", how="left")
    for column in ("name", "subject", "preheader_text", "body"):
        merged[column] = merged[column].fillna("").astype(str)
    return merged[columns].reset_index(drop=True)




def redact_contacts(text: str) -> str:
    """`text` with emails, phones, street addresses and ids replaced by [email], [phone], [address], [id].

    Copy often carries a support address, a sender number or the postal address a footer must
    show; a pattern cannot tell those from a customer's, so none of them leaves for Mavera.
    """
    return redact_text(text or "")


def body_excerpt(body: str, limit: int = _BODY_EXCERPT_CHARS) -> str:
    """Message body as plain text: tags, Liquid placeholders and contact details removed, truncated."""
    text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}", " ", body or "", flags=re.S)
    text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    text = re.sub(r"\s+", " ", text).strip()
    text = redact_contacts(re.sub(r"\s+([,.;:!?])", r"\1", text))
    return text if len(text) <= limit else text[:limit - 1].rsplit(" ", 1)[0] + "…"


def findings_summary(findings: Findings) -> dict[str, Any]:
    """Compact, PII-free aggregates for Mave: channel baselines and the underperformers with their copy."""
    tested = findings.tests[findings.tests["reason"].isna()]
    baselines = {
        channel: {row.metric: _round(row.rate) for row in group.itertuples(index=False)}
        for channel, group in findings.baselines.groupby("channel", sort=True)
    }
    messages = []
    for row in findings.messages.itertuples(index=False):
        rows = findings.flagged[findings.flagged["action_id"].astype("int64") == int(row.action_id)]
        messages.append({
            "campaign_id": int(row.campaign_id),
            "action_id": int(row.action_id),
            "channel": row.channel,
            "message_name": redact_contacts(row.name),
            "subject": redact_contacts(row.subject),
            "preheader": redact_contacts(row.preheader_text),
            "body_excerpt": body_excerpt(row.body),
            "shortfalls": [{
                "metric": r.metric,
                "rate": _round(r.rate),
                "channel_typical": _round(r.baseline),
                "typical_range": [_round(r.typical_low), _round(r.typical_high)],
                "relative_difference": _round(r.relative_difference, 3),
                "p_adjusted": _sig(r.p_adjusted),
                "trials": int(r.trials),
            } for r in rows.itertuples(index=False)],
        })
    summary = {
        "window": {"start": f"{findings.start:%Y-%m-%d}",
                   "end_exclusive": f"{findings.end:%Y-%m-%d}"},
        "channel_filter": findings.channel,
        "method": (f"each message vs a typical message of its channel (random-effects model of the "
                   f"spread between messages, day-to-day over-dispersion included), one-sided, "
                   f"Benjamini-Hochberg FDR {findings.alpha}, at least {findings.min_trials} trials, "
                   f"flagged when at least {findings.min_relative_drop:.0%} worse than typical"),
        "messages_tested": int(tested["action_id"].nunique()),
        "flags": int(len(findings.flagged)),
        "channel_baselines": baselines,
        "underperformers": messages,
    }
    assert_no_pii(summary, what="the findings summary for Mave")
    return summary


def _round(value: Any, digits: int = 4) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(float(value), digits)


def _sig(value: Any) -> float | None:
    if value is None or not math.isfinite(float(value)):
        return None
    return float(f"{float(value):.3g}")


