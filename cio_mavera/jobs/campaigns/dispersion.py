"""Day-to-day over-dispersion of one message's rate: how much more its daily rates vary than binomial.

A message's window rate is a ratio of sums over days. If every delivery were an independent draw
with one fixed probability, its daily rates would vary like binomial noise and Pearson's chi-square
over days would be about its degrees of freedom. Real messages have good and bad days (audience mix,
send time, a burst to a colder list), so the chi-square is larger, and the window rate is noisier
than its trial count suggests. This module measures that per message and turns it into the extra
variance of the window rate on the logit scale, which `spread` adds to the binomial variance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["day_dispersion"]

_COLUMNS = ("days", "pearson_chi2", "dispersion", "dispersion_p", "day_logit_variance")


def day_dispersion(daily: pd.DataFrame) -> pd.DataFrame:
    """Per key (every column but `successes`, `trials`): days, Pearson chi2, dispersion, p, day variance.

    `daily` holds one row per key and day. For each key, with p the window rate, N the trials and
    n_d the trials of day d (days without trials are left out):

    - pearson_chi2 = sum_d (s_d - n_d p)^2 / (n_d p (1 - p)), on days - 1 degrees of freedom;
    - dispersion = pearson_chi2 / (days - 1): 1 for binomial counts, larger when over-dispersed;
    - dispersion_p: the chi-square test of "no day-to-day variation beyond binomial";
    - day_logit_variance: the day effects' share of the window rate's variance, on the logit scale.
      A moment estimate (DerSimonian-Laird over days) of the variance t2 of the day effects,
      max(0, chi2 - (days - 1)) / (p (1 - p) (N - sum n_d^2 / N)), times sum (n_d / N)^2: a burst
      day weighs more in the window rate, so its day effect counts more.

    Keys with fewer than two days, or with a window rate of 0 or 1, get NaN and a day variance of 0.
    """
    keys = [c for c in daily.columns if c not in ("successes", "trials", "day")]
    rows = daily[daily["trials"] > 0]
    if rows.empty:
        return pd.DataFrame(columns=[*keys, *_COLUMNS])
    grouped = rows.groupby(keys, sort=False)
    totals = grouped[["successes", "trials"]].transform("sum")
    rate = totals["successes"] / totals["trials"]
    binomial = rows["trials"] * rate * (1 - rate)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = (rows["successes"] - rows["trials"] * rate) ** 2 / binomial
    frame = rows[keys].assign(_terms=terms, _n=rows["trials"].astype(float),
                              _n2=rows["trials"].astype(float) ** 2)
    out = frame.groupby(keys, sort=False).agg(days=("_n", "size"), pearson_chi2=("_terms", "sum"),
                                              trials=("_n", "sum"), squares=("_n2", "sum"))
    sums = grouped[["successes", "trials"]].sum()
    p = (sums["successes"] / sums["trials"]).reindex(out.index)
    usable = (out["days"] >= 2) & (p > 0) & (p < 1)
    df = (out["days"] - 1).astype(float)
    out["pearson_chi2"] = out["pearson_chi2"].where(usable)
    out["dispersion"] = out["pearson_chi2"] / df.where(usable)
    out["dispersion_p"] = pd.Series(stats.chi2.sf(out["pearson_chi2"], df), index=out.index).where(usable)
    spread_of_days = out["trials"] - out["squares"] / out["trials"]
    with np.errstate(invalid="ignore", divide="ignore"):
        t2 = (out["pearson_chi2"] - df).clip(lower=0) / (p * (1 - p) * spread_of_days)
    weight = out["squares"] / out["trials"] ** 2
    out["day_logit_variance"] = (t2 * weight).where(usable & (spread_of_days > 0), 0.0).fillna(0.0)
    return out.reset_index()[[*keys, *_COLUMNS]]
