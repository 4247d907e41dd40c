"""What the reporting-webhook stream of a workspace holds, planned with the workspace (its truth).

Drawn from the `StreamWorld` knobs, so `/__sandbox__/truth` shows it and the stream generator
(`sandbox/webhooks/stream.py`) only follows it:

- each campaign's opt-out multiplier: its unsubscribe and spam-complaint rates are its channel's
  times this (log-normal, mean 1); `high_opt_out_campaigns` of them, chosen among the busier email
  campaigns other than the spike's, always opt out `high_opt_out_factor` times more. That is their
  normal, not a spike;
- each audience cluster's opt-out multiplier (log-normal, mean 1);
- one-off broadcasts (newsletters): a start, a few hours, a share of the stream's deliveries and an
  opt-out multiplier (mass sends reach colder people);
- the spike's rates: an excess added to the rate its campaign and cluster have anyway, recorded with
  that baseline and the ratio between them. The excess is the clean world's spike over the
  channel's rate, so in the clean world the spike is exactly the old 9% unsubscribes / 2.5%
  complaints, and in the realistic one it sits on top of whatever its campaign normally does.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from .campaigns import CHANNEL_PARAMS
from .customers import K
from .world import StreamWorld

# The clean world's spike: inside its window the spike cluster's recipients of the spike action
# unsubscribe at 9% and complain at 2.5% (email baselines 0.35% and 0.06%).
SPIKE_UNSUBSCRIBE_RATE = 0.09
SPIKE_SPAM_RATE = 0.025
STREAM_DAYS = 14  # the stream covers the workspace's last two weeks (generate_events' default)
_BROADCAST_HOURS_UTC = (8, 18)  # broadcasts start in office hours
_NEWSLETTER_ID_BASE = 700  # apart from the App API's fortnightly newsletters (ids 40-60)
_HOUR = 3600


def opt_out_rates(channel: str) -> tuple[float, float]:
    """(unsubscribe, spam-complaint) probability per delivery of `channel` at multiplier 1."""
    params = CHANNEL_PARAMS[channel]
    return params["unsubscribed"], params["spammed"]


def _lognormal_mean_one(rng: np.random.Generator, cv: float, size: int) -> np.ndarray:
    if cv <= 0:
        return np.ones(size)
    sigma = np.sqrt(np.log1p(cv * cv))
    return np.exp(rng.normal(-sigma * sigma / 2, sigma, size=size))


def plan_stream(rng: np.random.Generator, campaigns: pd.DataFrame, actions: pd.DataFrame,
                volumes: np.ndarray, spike: dict, knobs: StreamWorld, end: dt.datetime) -> dict[str, Any]:
    """Campaign and audience opt-out multipliers, broadcasts, and the spike's rates (JSON-ready)."""
    ids = campaigns["campaign_id"].astype(int).tolist()
    multipliers = dict(zip(ids, _lognormal_mean_one(rng, knobs.campaign_opt_out_cv, len(ids)).tolist(),
                           strict=True))
    high = _high_campaigns(rng, campaigns, actions, volumes, spike, knobs.high_opt_out_campaigns)
    for campaign_id in high:
        multipliers[campaign_id] *= knobs.high_opt_out_factor
    audiences = _lognormal_mean_one(rng, knobs.audience_opt_out_cv, K)
    broadcasts = _broadcasts(rng, knobs, end)
    channels = actions.groupby("campaign_id")["channel"].agg(lambda s: sorted(set(s)))
    rows = [{"campaign_id": c, "opt_out_multiplier": round(multipliers[c], 4),
             "opt_out_rate": {ch: round(sum(opt_out_rates(ch)) * multipliers[c], 6) for ch in channels[c]},
             "steady_high": c in high} for c in ids]
    return {"campaigns": rows, "high_opt_out_campaigns": high,
            "audience_opt_out_multipliers": [round(float(a), 4) for a in audiences],
            "broadcasts": broadcasts,
            "spike": spike_rates(spike, multipliers[spike["campaign_id"]], float(audiences[spike["cluster"]]))}


def spike_rates(spike: dict, campaign_multiplier: float, audience_multiplier: float) -> dict[str, float]:
    """The spike's rates inside its window: its campaign's and cluster's own rate plus the excess."""
    unsubscribe, spam = opt_out_rates("email")
    own = campaign_multiplier * audience_multiplier
    rates = {"baseline_unsubscribe_rate": unsubscribe * own, "baseline_spam_rate": spam * own,
             "unsubscribe_rate": unsubscribe * own + SPIKE_UNSUBSCRIBE_RATE - unsubscribe,
             "spam_rate": spam * own + SPIKE_SPAM_RATE - spam}
    rates["baseline_opt_out_rate"] = rates["baseline_unsubscribe_rate"] + rates["baseline_spam_rate"]
    rates["opt_out_rate"] = rates["unsubscribe_rate"] + rates["spam_rate"]
    rates["ratio"] = rates["opt_out_rate"] / rates["baseline_opt_out_rate"]
    return {k: round(v, 6) for k, v in rates.items()}


def _high_campaigns(rng: np.random.Generator, campaigns: pd.DataFrame, actions: pd.DataFrame,
                    volumes: np.ndarray, spike: dict, n: int) -> list[int]:
    """`n` email campaigns from the busier half, never the spike's (a steady high rate is its own case)."""
    if n <= 0:
        return []
    email = actions.assign(volume=volumes)
    email = email[(email["channel"] == "email") & (email["campaign_id"] != spike["campaign_id"])]
    busy = email.groupby("campaign_id")["volume"].sum().sort_values(ascending=False)
    pool = busy.index[: max(n, (len(busy) + 1) // 2)].astype(int).tolist()
    return sorted(int(c) for c in rng.choice(pool, size=min(n, len(pool)), replace=False))


def _broadcasts(rng: np.random.Generator, knobs: StreamWorld, end: dt.datetime) -> list[dict[str, Any]]:
    """One-off newsletters at random office-hour starts inside the stream's window."""
    end_ts = int(end.timestamp())
    first_day = (end_ts - STREAM_DAYS * 86400) // 86400 + 1
    out = []
    for n in range(max(0, knobs.broadcasts)):
        day = int(rng.integers(first_day, end_ts // 86400))
        start = day * 86400 + int(rng.integers(*_BROADCAST_HOURS_UTC)) * _HOUR
        start = min(start, end_ts - int(knobs.broadcast_hours * _HOUR) - _HOUR)
        out.append({"newsletter_id": _NEWSLETTER_ID_BASE + 11 * n + int(rng.integers(1, 10)),
                    "start": start, "end": start + int(knobs.broadcast_hours * _HOUR),
                    "share": knobs.broadcast_share, "opt_out_multiplier": knobs.broadcast_opt_out_factor})
    return sorted(out, key=lambda b: b["start"])
