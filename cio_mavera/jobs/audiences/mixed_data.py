"""Typed attributes as the mixture model reads them: rank-scaled numbers, category codes, gaps kept.

Numbers become normal scores of their ranks, so heavy tails, unit mistakes (x100) and outliers
land at the edges instead of stretching the scale, and "1,200 seats" means the same as "1200".
Booleans and categories become codes. Missing values stay missing (NaN, -1): the model leaves
them out of each person's likelihood instead of inventing a value. Whether a group of attributes
is missing together is itself offered as an attribute, and kept when it says something about
the rest (missing not at random). Near-duplicate attributes (signup date vs created at) are used
once, and attributes unrelated to every other one (noise) are left out, each with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import ndtri
from scipy.stats import rankdata

from cio_mavera.jobs.audiences.attribute_types import BOOLEAN, CATEGORICAL, Schema

DUPLICATE_DEPENDENCE = 0.9  # this dependent on an attribute already used: a near-duplicate of it
MIN_DEPENDENCE = 0.15  # less dependent than this on every other attribute: noise for clustering
SPIKE_SHARE = 0.1  # an edge value held by this share (0 logins) is modelled as a yes/no of its own
_SCREEN_SAMPLE = 5000  # chance dependence of a 20-level category on ~2,000 pairs is ~0.1
_MIN_PAIRS = 50  # people with both attributes, below which a dependence is not estimated
_CLIP = 3.0


@dataclass(frozen=True)
class MixedData:
    """Attributes ready for the mixture: normal scores and category codes, NaN / -1 where missing."""

    numbers: np.ndarray  # (n, p) float32 normal scores of ranks, NaN = missing
    number_names: list[str]
    codes: np.ndarray  # (n, q) int32 category codes, -1 = missing
    code_names: list[str]
    levels: list[list[str]]  # the label of each code, per categorical attribute
    index: pd.Index  # the person of each row
    dependence: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))  # attribute -> max
    dropped: dict[str, str] = field(default_factory=dict)  # attribute -> why it is not used

    @property
    def n(self) -> int:
        """Number of people."""
        return len(self.index)

    @property
    def attributes(self) -> list[str]:
        """The attributes the model uses, numbers first."""
        return self.number_names + self.code_names

    def take(self, rows: np.ndarray) -> MixedData:
        """The same attributes for a subset of people."""
        return MixedData(self.numbers[rows], self.number_names, self.codes[rows], self.code_names,
                         self.levels, self.index[rows], self.dependence, self.dropped)

    def embedding(self) -> np.ndarray:
        """A dense float32 matrix for k-means seeding and charts: scores (missing = 0) and one-hot codes."""
        blocks = [np.nan_to_num(self.numbers, nan=0.0)]
        for j, levels in enumerate(self.levels):
            onehot = np.zeros((self.n, len(levels)), dtype=np.float32)
            present = np.flatnonzero(self.codes[:, j] >= 0)
            onehot[present, self.codes[present, j]] = 1.0
            blocks.append(onehot / np.sqrt(2.0))  # a category change moves as far as one unit of score
        return np.ascontiguousarray(np.column_stack(blocks), dtype=np.float32)


def mixed_data(typed: pd.DataFrame, schema: Schema, *, seed: int = 0) -> MixedData:
    """Scores, codes and missing-group attributes from a typed frame; duplicates and noise left out."""
    numbers: dict[str, np.ndarray] = {}
    codes: dict[str, tuple[np.ndarray, list[str]]] = {}
    dropped: dict[str, str] = {}
    for column in schema.kept():
        name = column.output or column.column
        values = typed[name]
        if column.kind == CATEGORICAL:
            coded = _category_codes(values)
        elif column.kind == BOOLEAN:
            coded = _boolean_codes(values.to_numpy(dtype="float64", na_value=np.nan))
        else:
            raw = values.to_numpy(dtype="float64", na_value=np.nan)
            spike = _spike(raw)
            if spike is not None:  # zero-inflated: "is it 0?" and, if not, how much
                codes[f"{name} = {spike:g}"] = (np.where(np.isnan(raw), -1, raw == spike).astype(np.int32),
                                               ["no", "yes"])
                raw = np.where(raw == spike, np.nan, raw)
            scores = normal_scores(raw)
            if scores is None:
                dropped[name] = "a single value once missing ones are left out"
            else:
                numbers[name] = scores
            continue
        if coded is None:
            dropped[name] = "a single value once missing ones are left out"
        else:
            codes[name] = coded
    codes.update(missing_groups(typed[[n for n in [*numbers, *codes] if n in typed]]))
    used, dependence, reasons = _screen(numbers, codes, seed)
    dropped.update(reasons)
    number_names = [n for n in numbers if n in used]
    code_names = [n for n in codes if n in used]
    n = len(typed)
    return MixedData(
        numbers=(np.column_stack([numbers[c] for c in number_names]).astype(np.float32) if number_names
                 else np.zeros((n, 0), dtype=np.float32)),
        number_names=number_names,
        codes=(np.column_stack([codes[c][0] for c in code_names]).astype(np.int32) if code_names
               else np.zeros((n, 0), dtype=np.int32)),
        code_names=code_names,
        levels=[codes[c][1] for c in code_names],
        index=typed.index,
        dependence=dependence,
        dropped=dropped,
    )


def normal_scores(values: np.ndarray) -> np.ndarray | None:
    """Normal scores of the ranks of the present values (ties share a score), NaN where missing."""
    present = ~np.isnan(values)
    if present.sum() < 2 or np.nanmin(values) == np.nanmax(values):
        return None
    out = np.full(len(values), np.nan)
    ranks = rankdata(values[present])
    out[present] = np.clip(ndtri((ranks - 0.5) / present.sum()), -_CLIP, _CLIP)
    return out


def _spike(values: np.ndarray) -> float | None:
    """The lowest or highest value (0 logins, 1 seat) when a share SPIKE_SHARE or more holds it."""
    present = values[~np.isnan(values)]
    if len(present) < 2:
        return None
    for edge in (present.min(), present.max()):
        share = float(np.mean(present == edge))
        if SPIKE_SHARE <= share < 1 - SPIKE_SHARE:
            return float(edge)
    return None


def missing_groups(typed: pd.DataFrame, *, min_share: float = 0.01,
                   together: float = 0.95) -> dict[str, tuple[np.ndarray, list[str]]]:
    """One yes/no attribute per group of attributes that go missing together ("missing: plan, mrr").

    Attributes join a group when their missing rows overlap by `together` (Jaccard); only groups
    missing for between `min_share` and 1 - `min_share` of people are offered.
    """
    masks = {c: typed[c].isna().to_numpy() for c in typed.columns}
    candidates = [c for c, m in masks.items() if min_share <= m.mean() <= 1 - min_share]
    groups: list[list[str]] = []
    for column in candidates:
        for group in groups:
            first = masks[group[0]]
            both, either = (first & masks[column]).sum(), (first | masks[column]).sum()
            if either and both / either >= together:
                group.append(column)
                break
        else:
            groups.append([column])
    out = {}
    for group in groups:
        missing = np.logical_or.reduce([masks[c] for c in group])
        out["missing: " + ", ".join(group)] = (np.where(missing, 1, 0).astype(np.int32), ["present", "missing"])
    return out


def _category_codes(values: pd.Series) -> tuple[np.ndarray, list[str]] | None:
    values = values if isinstance(values.dtype, pd.CategoricalDtype) else values.astype("category")
    codes = np.asarray(values.cat.codes).astype(np.int64)
    used = np.unique(codes[codes >= 0])
    if len(used) < 2:
        return None
    remap = np.full(len(values.cat.categories), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    labels = [str(values.cat.categories[i]) for i in used]
    return np.where(codes >= 0, remap[np.maximum(codes, 0)], -1).astype(np.int32), labels


def _boolean_codes(values: np.ndarray) -> tuple[np.ndarray, list[str]] | None:
    present = ~np.isnan(values)
    if len(np.unique(values[present])) < 2:
        return None
    return np.where(present, (values == 1).astype(np.int32), -1).astype(np.int32), ["false", "true"]


def _screen(numbers: dict[str, np.ndarray], codes: dict[str, tuple[np.ndarray, list[str]]],
            seed: int) -> tuple[set[str], pd.Series, dict[str, str]]:
    """(attributes to use, each one's strongest dependence on another, {left out: why})."""
    names = [*numbers, *codes]
    n = len(next(iter(numbers.values()))) if numbers else len(next(iter(codes.values()))[0]) if codes else 0
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, _SCREEN_SAMPLE), replace=False))
    columns = {c: numbers[c][rows] for c in numbers} | {c: codes[c][0][rows] for c in codes}
    strength = pd.DataFrame(0.0, index=names, columns=names)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            strength.loc[a, b] = strength.loc[b, a] = _dependence(columns[a], a in numbers,
                                                                  columns[b], b in numbers)
    reasons: dict[str, str] = {}
    used: list[str] = []
    for name in names:  # schema order: the first of two near-duplicates is kept
        twins = [u for u in used if strength.loc[name, u] >= DUPLICATE_DEPENDENCE]
        if twins and not name.startswith("missing: "):
            reasons[name] = (f"a near-duplicate of {twins[0]} (dependence "
                             f"{strength.loc[name, twins[0]]:.2f}), used once")
        else:
            used.append(name)
    best = strength.loc[used, used].max(axis=1) if used else pd.Series(dtype=float)
    for name in used:
        if best[name] < MIN_DEPENDENCE:
            what = ("whether these attributes are missing is" if name.startswith("missing: ")
                    else "it is")
            reasons[name] = (f"{what} unrelated to every other attribute (strongest dependence "
                             f"{best[name]:.2f}), so it cannot tell audiences apart")
    kept = {name for name in used if name not in reasons}
    return kept, strength.max(axis=1).rename("dependence"), reasons


def _dependence(a: np.ndarray, a_numeric: bool, b: np.ndarray, b_numeric: bool) -> float:
    """0..1: |rank correlation|, bias-corrected Cramer's V, or correlation ratio, on rows with both."""
    both = (~np.isnan(a) if a_numeric else a >= 0) & (~np.isnan(b) if b_numeric else b >= 0)
    if both.sum() < _MIN_PAIRS:
        return 0.0
    a, b = a[both], b[both]
    if a_numeric and b_numeric:
        r = np.corrcoef(a, b)[0, 1]
        return 0.0 if np.isnan(r) else float(abs(r))
    if a_numeric or b_numeric:
        values, groups = (a, b) if a_numeric else (b, a)
        return _correlation_ratio(values, groups)
    return _cramers_v(a, b)


def _correlation_ratio(values: np.ndarray, groups: np.ndarray) -> float:
    """sqrt of the adjusted share of the numbers' variance explained by the categories."""
    n = len(values)
    sizes = np.bincount(groups).astype(float)
    sums = np.bincount(groups, weights=values)
    used = sizes > 0
    total = ((values - values.mean()) ** 2).sum()
    if total <= 0 or used.sum() < 2:
        return 0.0
    between = (sums[used] ** 2 / sizes[used]).sum() - n * values.mean() ** 2
    levels = int(used.sum())
    adjusted = 1 - (1 - between / total) * (n - 1) / max(n - levels, 1)
    return float(np.sqrt(max(adjusted, 0.0)))


def _cramers_v(a: np.ndarray, b: np.ndarray) -> float:
    """Cramer's V with Bergsma's bias correction (independent attributes score about 0)."""
    n = len(a)
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    r, c = table.shape
    if r < 2 or c < 2:
        return 0.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / n
    phi2 = ((table - expected) ** 2 / expected).sum() / n
    phi2 = max(0.0, phi2 - (r - 1) * (c - 1) / (n - 1))
    r_, c_ = r - (r - 1) ** 2 / (n - 1), c - (c - 1) ** 2 / (n - 1)
    denominator = min(r_ - 1, c_ - 1)
    return float(np.sqrt(phi2 / denominator)) if denominator > 0 else 0.0
