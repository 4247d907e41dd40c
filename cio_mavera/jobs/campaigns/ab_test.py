"""How big an A/B test of new copy against the live copy must be, per rewritten message.

Persona scores only screen copy; the decision is an A/B test on the rate that was flagged. The
minimum effect worth detecting is stated, not guessed: closing `gap_share` of the gap between the
message's own rate (its shrunken estimate, the best guess of its true rate) and a typical message
of its channel. The size is the two-proportion z-test's (Cohen's h, statsmodels NormalIndPower),
which assumes independent deliveries split evenly and at random between the two versions.
"""

from __future__ import annotations

import math

import pandas as pd
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from cio_mavera.jobs.campaigns.analysis import Findings

POWER = 0.8
ALPHA = 0.05
GAP_SHARE = 0.5  # the minimum effect: half way from the message's rate to a typical message's

COLUMNS = ["campaign_id", "action_id", "channel", "name", "metric", "variation_id",
           "lift_vs_current", "current_rate", "target_rate", "typical_rate", "effect_size",
           "per_variant", "total", "deliveries_per_day", "days", "power", "alpha"]


def sends_per_variant(current: float, target: float, *, power: float = POWER,
                      alpha: float = ALPHA) -> int | None:
    """Deliveries each version needs to tell `target` from `current` (two-sided), or None when
    the two rates are equal or not both in (0, 1)."""
    if not (0 < current < 1 and 0 < target < 1) or current == target:
        return None
    effect = abs(float(proportion_effectsize(target, current)))
    n = NormalIndPower().solve_power(effect_size=effect, alpha=alpha, power=power, ratio=1.0,
                                     alternative="two-sided")
    return int(math.ceil(n))


def ab_test_plan(findings: Findings, ranked: pd.DataFrame, *, power: float = POWER,
                 alpha: float = ALPHA, gap_share: float = GAP_SHARE) -> pd.DataFrame:
    """One row per rewritten message: its top variation, the flagged rate that decides the test,
    the rise (or fall) worth detecting, deliveries per variant and days at the message's pace."""
    rows = []
    window_days = max(1.0, (findings.end - findings.start) / pd.Timedelta(days=1))
    for message in findings.messages.itertuples(index=False):
        flags = findings.flagged[findings.flagged["action_id"].astype(int) == int(message.action_id)]
        if flags.empty:
            continue
        flag = flags.sort_values("p_adjusted", kind="stable").iloc[0]
        current = float(flag["shrunk_rate"]) if math.isfinite(float(flag["shrunk_rate"])) \
            else float(flag["rate"])
        typical = float(flag["baseline"])
        target = current + gap_share * (typical - current)
        per_variant = sends_per_variant(current, target, power=power, alpha=alpha)
        per_day = float(flag["trials"]) / window_days
        top = ranked[ranked["action_id"].astype(int) == int(message.action_id)].sort_values("rank")
        rows.append({
            "campaign_id": int(message.campaign_id), "action_id": int(message.action_id),
            "channel": message.channel, "name": message.name, "metric": flag["metric"],
            "variation_id": None if top.empty else str(top["variation_id"].iloc[0]),
            "lift_vs_current": math.nan if top.empty else float(top["lift_vs_current"].iloc[0]),
            "current_rate": current, "target_rate": target, "typical_rate": typical,
            "effect_size": abs(float(proportion_effectsize(target, current)))
            if per_variant else math.nan,
            "per_variant": per_variant, "total": 2 * per_variant if per_variant else None,
            "deliveries_per_day": per_day,
            "days": math.ceil(2 * per_variant / per_day) if per_variant and per_day > 0 else None,
            "power": power, "alpha": alpha,
        })
    return pd.DataFrame(rows, columns=COLUMNS)
