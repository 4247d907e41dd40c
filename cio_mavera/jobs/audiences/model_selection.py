"""How many audiences: fit the mixture for each k and keep the most clusters that are all three of
supported by the data (BIC), distinct (every two clusters clearly differ on several attributes) and
reproducible (resampled fits agree). When no k of 2 or more passes, there is no clear structure
and the answer is one audience, said as such.

Why not the BIC minimum alone: real attributes are never independent within a cluster (a bigger
account has more seats and pays more; free plans pay nothing), so BIC keeps finding sub-groups
that differ on one or two attributes. Those are not separate audiences for a persona; requiring
clusters to differ on several attributes, and to come out the same on resamples, is what keeps
the count honest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from cio_mavera.errors import InvalidParameter
from cio_mavera.jobs.audiences.mixed_data import MixedData
from cio_mavera.jobs.audiences.mixture import Mixture, fit_mixture, one_correlated_group_bic

BIC_MARGIN = 10.0  # a BIC improvement above 10 is "very strong" evidence (Kass & Raftery, 1995)
STABLE_ARI = 0.8  # resampled fits agreeing this well (adjusted Rand index) reproduce the clusters
CLEAR_ARI = 0.9  # ... and this well: the structure is clear, not just present
CLEAR_SCORE_GAP = 0.5  # a standardized difference of 0.5 in scores: a clear difference in a number
CLEAR_SHARE_GAP = 0.25  # a total variation distance of 0.25 in levels: a clear difference in a category
DISTINCT_SHARE = 0.25  # two clusters must clearly differ on this share of the attributes used ...
MIN_DISTINCT = 2  # ... and on at least this many
MIN_EVIDENCE = 30  # people with a value, in each of the two clusters, before a difference counts

CLEAR, MODERATE, NONE = "clear", "moderate", "none"


@dataclass(frozen=True)
class Selection:
    """The chosen number of clusters, the evidence for every candidate k, and how clear it is."""

    k: int  # 1 when no k of 2 or more is clearly supported
    table: pd.DataFrame  # k, bic, bic_gain, stability_ari, distinct_attributes, supported, distinct, stable, chosen
    correlated_bic: float  # BIC of one group whose numbers are merely correlated (the bar to beat)
    clarity: str  # "clear", "moderate" or "none"
    reason: str  # one sentence for the report
    best_candidate: int  # the k that came closest when none passed (else k)
    needed_distinct: int  # attributes two clusters must clearly differ on

    @property
    def stable(self) -> bool:
        """Whether the chosen clusters reproduce on resamples (True for "no clusters")."""
        return self.clarity != NONE or self.k == 1


def select_k(data: MixedData, k_range: range | list[int] = range(2, 9), *, sample_size: int = 5000,
             resamples: int = 3, seed: int = 0) -> tuple[Selection, Mixture, np.ndarray]:
    """(selection, the chosen model fitted on the selection sample, that sample's rows).

    ks are tried in order; once a k fails after a passing one, larger ks are not fitted (they
    could not be chosen), and a k failing the cheap checks (BIC, distinctness) is not resampled.
    """
    ks = sorted(set(k_range))
    if not ks or ks[0] < 2:
        raise InvalidParameter(f"k_range must hold ks >= 2, got {list(k_range)}")
    rng = np.random.default_rng(seed)
    rows = _sample(rng, data.n, sample_size)
    sample = data.take(rows)
    # With few people, 80% subsamples still differ between resamples, which the check needs.
    size = sample_size if data.n > sample_size else max(3 * ks[-1], int(0.8 * data.n))
    resampled = [data.take(_sample(rng, data.n, size)) for _ in range(max(2, resamples))]
    needed = max(MIN_DISTINCT, math.ceil(DISTINCT_SHARE * len(data.attributes)))
    models: dict[int, Mixture] = {}
    table_rows: list[dict] = []
    chosen = 1
    correlated = one_correlated_group_bic(sample)
    with threadpool_limits(limits=1):
        # Without one attribute related to another there is nothing to cluster on.
        for k in [1, *[k for k in ks if k <= sample.n // 3 and data.attributes]]:
            models[k] = fit_mixture(sample, k, seed=seed)
            row = _row(models, k, needed, correlated)
            if k > 1 and row["supported"] and row["distinct"]:
                row["stability_ari"] = _stability(models[k], sample, resampled, seed)
                row["stable"] = row["stability_ari"] >= STABLE_ARI
            table_rows.append(row)
            if k > 1 and row["supported"] and row["distinct"] and row["stable"]:
                chosen = k
            elif chosen > 1:
                break  # the first run of passing ks has ended
    table = pd.DataFrame(table_rows)
    table["chosen"] = table["k"] == chosen
    best = chosen if chosen > 1 else _best_candidate(table)
    selection = Selection(k=chosen, table=table, correlated_bic=correlated,
                          clarity=_clarity(table, chosen), reason="", best_candidate=best,
                          needed_distinct=needed)
    selection = Selection(**{**selection.__dict__, "reason": _reason(selection, len(data.attributes))})
    return selection, models[chosen], rows


def distinct_attributes(model: Mixture) -> int:
    """The fewest attributes on which any two clusters clearly differ (all of them for one cluster).

    A difference counts only where both clusters have MIN_EVIDENCE people with a value: the amount
    of support tickets among the few dormant users who filed any is not a trait of the cluster.
    """
    p = model.means.shape[1]
    if model.k < 2:
        return p + len(model.log_levels)
    fewest = None
    for a, b in combinations(range(model.k), 2):
        evidence = (model.seen[a] >= MIN_EVIDENCE) & (model.seen[b] >= MIN_EVIDENCE)
        pooled = np.sqrt((model.variances[a] + model.variances[b]) / 2)
        numbers = (np.abs(model.means[a] - model.means[b]) / pooled >= CLEAR_SCORE_GAP) & evidence[:p]
        categories = [0.5 * np.abs(np.exp(t[a]) - np.exp(t[b])).sum() >= CLEAR_SHARE_GAP and e
                      for t, e in zip(model.log_levels, evidence[p:], strict=True)]
        count = int(numbers.sum()) + sum(categories)
        fewest = count if fewest is None else min(fewest, count)
    return int(fewest)


def _sample(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    return np.arange(n) if n <= size else np.sort(rng.choice(n, size=size, replace=False))


def _stability(model: Mixture, sample: MixedData, resampled: list[MixedData], seed: int) -> float:
    """Mean pairwise ARI, on the selection sample, of the fits on other samples.

    Each resample keeps the better (likelihood) of a fit started from the selection's clusters and
    one from a fresh k-means start, so disagreement means the data allows another answer, not that
    one EM run got stuck.
    """
    labels = []
    for r, fitted_on in enumerate(resampled):
        warm = fit_mixture(fitted_on, model.k, start_labels=model.predict(fitted_on))
        fresh = fit_mixture(fitted_on, model.k, seed=seed + 1 + r, starts=1)
        best = warm if warm.log_likelihood >= fresh.log_likelihood else fresh
        labels.append(best.predict(sample))
    return float(np.mean([adjusted_rand_score(a, b) for a, b in combinations(labels, 2)]))


def _row(models: dict[int, Mixture], k: int, needed: int, correlated: float) -> dict:
    """The cheap checks of k: BIC gain over the best smaller k or one correlated group, and
    distinctness."""
    bic = models[k].bic
    gain = np.nan if k == 1 else min(correlated, *(m.bic for j, m in models.items() if j < k)) - bic
    distinct = distinct_attributes(models[k])
    return {"k": k, "bic": bic, "bic_gain": gain, "stability_ari": 1.0 if k == 1 else np.nan,
            "distinct_attributes": distinct, "supported": bool(k == 1 or gain > BIC_MARGIN),
            "distinct": bool(distinct >= needed), "stable": bool(k == 1)}


def _best_candidate(table: pd.DataFrame) -> int:
    """When nothing passes: the k >= 2 that passes the most checks, the most stable among those."""
    rest = table[table["k"] >= 2]
    if rest.empty:
        return 1
    checks = rest[["supported", "distinct", "stable"]].sum(axis=1)
    order = rest.assign(_checks=checks).sort_values(["_checks", "stability_ari"], ascending=False)
    return int(order.iloc[0]["k"])


def _clarity(table: pd.DataFrame, k: int) -> str:
    if k == 1:
        return NONE
    row = table[table["k"] == k].iloc[0]
    return CLEAR if row["stability_ari"] >= CLEAR_ARI else MODERATE


def _reason(selection: Selection, attributes: int) -> str:
    table, k, needed = selection.table, selection.k, selection.needed_distinct
    if k == 1:
        row = table[table["k"] == selection.best_candidate].iloc[0] if selection.best_candidate > 1 else None
        why = "" if row is None else f" (the closest, k={int(row['k'])}: {_failures(row, needed)})"
        if not attributes:
            why = " (no attribute is related to any other, so none can tell audiences apart)"
        return (f"No number of clusters is clearly supported{why}: these customers are treated as one "
                "audience rather than split into groups the data does not back.")
    row = table[table["k"] == k].iloc[0]
    text = (f"k={k}: BIC improves by {row['bic_gain']:,.0f} over fewer clusters (and over one group "
            f"of correlated attributes), every two clusters "
            f"clearly differ on at least {int(row['distinct_attributes'])} of {attributes} attributes "
            f"(needed: {needed}), and resampled fits agree (ARI {row['stability_ari']:.2f})")
    after = table[table["k"] == k + 1]
    if len(after):
        text += f"; k={k + 1} was not kept: {_failures(after.iloc[0], needed)}"
    return text + "."


def _failures(row: pd.Series, needed: int) -> str:
    reasons = []
    if not row["supported"]:
        reasons.append("BIC is no better than with fewer clusters or one group of correlated "
                       "attributes" if row["bic_gain"] <= 0 else
                       f"BIC improves by only {row['bic_gain']:,.0f}")
    if not row["distinct"]:
        reasons.append(f"two of its clusters clearly differ on only {int(row['distinct_attributes'])} "
                       f"attributes (needed: {needed})")
    if not row["stable"] and not np.isnan(row["stability_ari"]):
        reasons.append(f"resampled fits disagree (ARI {row['stability_ari']:.2f})")
    return "; ".join(reasons) or "it passes every check"
