"""The intervals job 2's report puts beside its numbers: shares (Wilson), medians (order statistics),
and how surely the model places customers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import binom
from statsmodels.stats.proportion import proportion_confint

from cio_mavera.jobs.audiences.profiles import ClusterProfiles

CONFIDENCE = 0.95


def share_interval(count: float, total: float) -> tuple[float, float]:
    """The 95% Wilson interval of `count` out of `total` (NaNs when `total` is 0)."""
    if total <= 0:
        return math.nan, math.nan
    low, high = proportion_confint(round(count), round(total), alpha=1 - CONFIDENCE, method="wilson")
    return float(low), float(high)


def median_interval(values: pd.Series | np.ndarray) -> tuple[float, float]:
    """A distribution-free 95% interval of the median: the order statistics whose ranks the
    binomial(n, 1/2) puts 2.5% outside each side (NaNs with fewer than 6 values, where it
    cannot reach 95%)."""
    present = np.sort(np.asarray(pd.Series(values).dropna(), dtype=float))
    n = len(present)
    if n < 6:
        return math.nan, math.nan
    # The j-th smallest lies below the median with probability P(Binomial(n, 1/2) >= j).
    j = max(int(binom.ppf((1 - CONFIDENCE) / 2, n, 0.5)), 1)
    return float(present[j - 1]), float(present[n - j])


TRAIT_COLUMNS = ["cluster", "column", "level", "kind", "cluster_value", "cluster_low", "cluster_high",
                 "overall_value", "overall_low", "overall_high", "smd"]


def trait_table(typed: pd.DataFrame, labels: pd.Series, profiles: ClusterProfiles) -> pd.DataFrame:
    """Each cluster's defining traits (`profile.top`) with 95% intervals: Wilson for a share of the
    cluster (a category level among all its members, a yes among those who have the attribute),
    order statistics for a median; the same for all customers beside it."""
    labels = pd.Series(np.asarray(labels), index=typed.index)
    rows = []
    for profile in profiles.clusters:
        members = labels == profile.cluster
        for trait in profile.top.itertuples(index=False):
            values = typed[trait.column]
            if trait.kind == "category":
                inside = _shares(values[members] == trait.level, profile.size)
                everyone = _shares(values == trait.level, len(values))
            elif trait.kind == "boolean":
                inside = _shares(values[members] == 1, values[members].notna().sum())
                everyone = _shares(values == 1, values.notna().sum())
            else:
                inside, everyone = median_interval(values[members]), median_interval(values)
            rows.append({"cluster": profile.cluster, "column": trait.column, "level": trait.level,
                         "kind": trait.kind, "cluster_value": float(trait.cluster_value),
                         "cluster_low": inside[0], "cluster_high": inside[1],
                         "overall_value": float(trait.overall_value), "overall_low": everyone[0],
                         "overall_high": everyone[1], "smd": float(trait.smd)})
    return pd.DataFrame(rows, columns=TRAIT_COLUMNS)


def _shares(hits: pd.Series, total: float) -> tuple[float, float]:
    return share_interval(float(hits.fillna(False).sum()), float(total))


def placed_confidently(certainty: pd.Series | None, labels: pd.Series,
                       threshold: float = 0.9) -> pd.DataFrame | None:
    """Per cluster (and -1 for everyone): the share of customers the model places there with at
    least `threshold` probability, with its 95% interval; None without probabilities."""
    if certainty is None:
        return None
    sure = pd.Series(np.asarray(certainty) >= threshold, index=labels.index)
    rows = [(-1, sure)] + [(int(c), sure[labels == c]) for c in sorted(labels.unique())]
    return pd.DataFrame([{"cluster": c, "share": float(s.mean()),
                          **dict(zip(("low", "high"), share_interval(float(s.sum()), len(s)),
                                     strict=True))} for c, s in rows])
