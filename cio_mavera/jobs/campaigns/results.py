"""Job 1 results.json: the run's findings in machine-readable form."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from cio_mavera.jobs.campaigns.analysis import Findings, _round
from cio_mavera.jobs.campaigns.data import JOB, CampaignData
from cio_mavera.jobs.campaigns.parameters import PARAMETERS
from cio_mavera.jobs.campaigns.strategy import Strategy
from cio_mavera.jobs.context import RunContext


def parameters_in(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The job's parameters as they stand in a notebook's `globals()`, checked (`ParameterSpec.values_in`)."""
    return PARAMETERS.values_in(namespace)


def campaign_results(run: RunContext, data: CampaignData, findings: Findings, strategy: Strategy,
                     ranked: pd.DataFrame, scores: pd.DataFrame, *,
                     personas: Sequence[Mapping[str, Any]] = (),
                     validation: str = "responses",
                     ab_tests: pd.DataFrame | None = None) -> dict[str, Any]:
    """The run's machine-readable findings (DESIGN.md "Run outputs") for results.json."""
    flagged = [{
        "campaign_id": int(r.campaign_id), "action_id": int(r.action_id), "channel": r.channel,
        "name": r.name, "metric": r.metric, "rate": _round(r.rate, 6), "ci_low": _round(r.ci_low, 6),
        "ci_high": _round(r.ci_high, 6),
        # The channel's typical message (the test's reference) and the range typical messages span.
        "baseline": _round(r.baseline, 6), "typical_low": _round(r.typical_low, 6),
        "typical_high": _round(r.typical_high, 6),
        "shrunk_rate": _round(r.shrunk_rate, 6), "shrunk_low": _round(r.shrunk_low, 6),
        "shrunk_high": _round(r.shrunk_high, 6),
        "channel_spread_sd": _round(r.spread_sd, 4), "dispersion": _float(r.dispersion),
        "relative_difference": _round(r.relative_difference, 4), "z": _float(r.z),
        "p_value": _float(r.p_value), "p_adjusted": _float(r.p_adjusted), "trials": int(r.trials),
        "test": r.test,
    } for r in findings.flagged.itertuples(index=False)]
    spreads = [{
        "channel": r.channel, "metric": r.metric, "messages": int(r.messages),
        "outliers_left_out": int(r.outliers_left_out), "typical_rate": _round(r.typical_rate, 6),
        "typical_low": _round(r.typical_low, 6), "typical_high": _round(r.typical_high, 6),
        "spread_sd": _round(r.spread_sd, 4), "spread_cv": _round(r.spread_cv, 4),
        "heterogeneity_p": _float(r.heterogeneity_p), "i2": _round(r.i2, 4),
        "own_spread": bool(r.own_spread),
    } for r in findings.spreads.itertuples(index=False)]
    persona_rows: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for r in scores.itertuples(index=False):
        persona_rows.setdefault((int(r.action_id), str(r.variation_id)), []).append({
            "persona_id": r.persona_id, "persona_name": r.persona_name, "score": _float(r.score),
            "would_open": _float(r.would_open), "would_click": _float(r.would_click), "reason": r.reason})
    variations = [{
        "action_id": int(r.action_id), "rank": int(r.rank), "variation_id": r.variation_id,
        "subject": r.subject, "preheader": r.preheader, "body_outline": list(r.body_outline),
        "mean_score": _float(r.mean_score), "would_open": _float(r.would_open),
        "would_click": _float(r.would_click), "current_score": _float(r.current_score),
        "lift_vs_current": _float(r.lift_vs_current),
        "persona_scores": persona_rows.get((int(r.action_id), str(r.variation_id)), []),
    } for r in ranked.itertuples(index=False)]
    tests = [{
        "action_id": int(r.action_id), "campaign_id": int(r.campaign_id), "metric": r.metric,
        "variation_id": r.variation_id if isinstance(r.variation_id, str) else None,
        "current_rate": _round(r.current_rate, 6), "target_rate": _round(r.target_rate, 6),
        "typical_rate": _round(r.typical_rate, 6),
        "deliveries_per_variant": None if pd.isna(r.per_variant) else int(r.per_variant),
        "days": None if pd.isna(r.days) else int(r.days), "power": r.power, "alpha": r.alpha,
    } for r in (ab_tests if ab_tests is not None else pd.DataFrame()).itertuples(index=False)]
    return {
        "job": JOB,
        "mode": data.mode,
        "workspace": data.workspace,
        "window": {"start": data.start.isoformat(), "end": data.end.isoformat(), "days": data.days},
        "channel": data.channel,
        "campaign_ids": list(data.campaign_ids),
        "data_freshness": dict(data.freshness),
        "method": {"alpha": findings.alpha, "min_trials": findings.min_trials,
                   "min_relative_drop": findings.min_relative_drop,
                   "test": ("one-sided predictive test against a typical message of the channel: "
                            "logit-normal random effects (Paule-Mandel spread, leave-one-out, clear "
                            "outliers set aside), day-to-day over-dispersion, Student-t tails"),
                   "correction": "benjamini-hochberg",
                   "checks": findings.checks.to_dict(orient="records")},
        "channel_spreads": spreads,
        "messages_tested": int(findings.tests.loc[findings.tests["reason"].isna(), "action_id"].nunique()),
        "flagged_underperformers": flagged,
        "messages_rewritten": [int(a) for a in findings.messages["action_id"]],
        "strategy": {"content": strategy.content, "key_points": strategy.key_points,
                     "thread_id": strategy.thread_id, "sources": strategy.sources,
                     "skipped": strategy.skipped},
        "validation": validation,
        "personas": [{"id": p.get("id"), "name": p.get("name"), "category": p.get("category")}
                     for p in personas],
        "ranked_variations": variations,
        # The A/B test each rewritten message needs (its top variation against the current copy).
        "ab_tests": tests,
        **run.results_footer(),
    }


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
