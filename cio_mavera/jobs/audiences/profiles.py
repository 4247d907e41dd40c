"""Cluster profiles: sizes, the attributes that set each cluster apart, and a persona-ready text."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cio_mavera.errors import InvalidParameter
from cio_mavera.jobs.audiences.attribute_types import DAYS_AGO_SUFFIX
from cio_mavera.pii import assert_no_pii

_EFFECT_COLUMNS = [
    "cluster", "column", "level", "kind", "cluster_value", "overall_value", "smd", "lift",
]


@dataclass(frozen=True)
class ClusterProfile:
    """One cluster: size, share, its most distinguishing attributes and typical values."""

    cluster: int
    n_clusters: int
    size: int
    share: float
    top: pd.DataFrame  # rows of `ClusterProfiles.effects`, strongest first, one per column
    typical: dict[str, object]  # column -> median (numbers), share true (booleans), mode (categories)
    also: tuple[str, ...] = ()  # next distinguishing columns after `top` (|smd| >= 0.2)

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-able summary for results.json."""
        return {
            "cluster": self.cluster,
            "size": self.size,
            "share": round(self.share, 4),
            "top": _json_records(self.top.drop(columns=["cluster"])),
            "typical": {k: _json_value(v) for k, v in self.typical.items()},
            "description": profile_text(self),
        }


@dataclass(frozen=True)
class ClusterProfiles:
    """Profiles of every cluster plus the long table of effects they were built from."""

    clusters: list[ClusterProfile]
    sizes: pd.DataFrame  # cluster, size, share
    effects: pd.DataFrame  # cluster, column, level, kind, cluster_value, overall_value, smd, lift

    def __getitem__(self, cluster: int) -> ClusterProfile:
        for p in self.clusters:
            if p.cluster == cluster:
                return p
        raise KeyError(cluster)

    def smd_matrix(self, top: int = 12) -> pd.DataFrame:
        """Clusters x features standardized mean differences for about `top` features.

        Features are taken round robin from each cluster's own ranking (strongest first), so a
        small cluster's defining traits are not crowded out by a large cluster's.
        """
        eff = self.effects.assign(feature=_feature_labels(self.effects))
        wide = eff.pivot_table(index="cluster", columns="feature", values="smd", aggfunc="first")
        ranked = [wide.loc[c].abs().sort_values(ascending=False).index for c in wide.index]
        chosen: list[str] = []
        for depth in range(wide.shape[1]):
            for features in ranked:
                if len(chosen) < top and features[depth] not in chosen:
                    chosen.append(features[depth])
        return wide[chosen]


def profile_clusters(
    typed_df: pd.DataFrame, labels: pd.Series | np.ndarray, *, top_n: int = 5
) -> ClusterProfiles:
    """Profile each cluster against everyone: SMD for numbers, lift and SMD for category levels."""
    labels = pd.Series(np.asarray(labels), index=typed_df.index, name="cluster")
    if len(labels) == 0:
        raise InvalidParameter("cannot profile an empty frame")
    counts = labels.value_counts().sort_index()
    sizes = pd.DataFrame({
        "cluster": counts.index.astype(int), "size": counts.to_numpy(),
        "share": counts.to_numpy() / len(labels),
    })
    frames, typical = [], {int(c): {} for c in counts.index}
    for col in typed_df.columns:
        s = typed_df[col]
        if isinstance(s.dtype, pd.CategoricalDtype):
            frames.append(_categorical_effects(s, labels, typical))
        elif pd.api.types.is_numeric_dtype(s) and s.notna().any():
            frames.append(_numeric_effects(s.astype("float64"), labels, typical))
    effects = (pd.concat(frames, ignore_index=True) if frames
               else pd.DataFrame(columns=_EFFECT_COLUMNS))
    clusters = []
    for row in sizes.itertuples(index=False):
        also = tuple(_top_effects(effects, int(row.cluster), top_n + 4)["column"][top_n:])
        if len(sizes) == 1:  # one audience: nothing stands out, so describe what is typical
            also = tuple(typical[int(row.cluster)])[:top_n + 4]
        clusters.append(ClusterProfile(
            cluster=int(row.cluster), n_clusters=len(sizes), size=int(row.size),
            share=float(row.share), top=_top_effects(effects, int(row.cluster), top_n),
            typical=typical[int(row.cluster)], also=also,
        ))
    return ClusterProfiles(clusters=clusters, sizes=sizes, effects=effects)


def profile_text(profile: ClusterProfile) -> str:
    """Return a short, PII-free description of the cluster, usable as a persona description."""
    parts = []
    for r in profile.top.itertuples(index=False):
        parts.append(describe_effect(r))
    lead = (f"Audience cluster {profile.cluster + 1} of {profile.n_clusters}: "
            f"{profile.size:,} customers ({profile.share:.1%}).")
    body = (" Compared with all customers: " + "; ".join(parts) + ".") if parts else ""
    # Besides the top differences, the typical values of the next distinguishing attributes.
    cols = [c for c in profile.also if c in profile.typical]
    typical = [f"{_label(c)} {_fmt_typical(profile.typical[c])}" for c in cols]
    tail = (" Also typical: " + ", ".join(typical) + ".") if typical else ""
    text = lead + body + tail
    assert_no_pii(text, what=f"profile text of cluster {profile.cluster}")
    return text


def _numeric_effects(s: pd.Series, labels: pd.Series, typical: dict) -> pd.DataFrame:
    present = s.dropna()
    is_bool = bool(present.isin([0.0, 1.0]).all())
    x = s
    if not is_bool and present.min() >= 0 and present.skew() > 1:
        x = np.log1p(s)  # compare skewed amounts on a log scale so a few whales do not decide
    sd = float(x.std())
    g_typ = s.groupby(labels)
    means = x.groupby(labels).mean()
    if is_bool:
        cluster_value, overall = g_typ.mean(), float(present.mean())
    else:
        cluster_value, overall = g_typ.median(), float(present.median())
    smd = (means - float(x.mean())) / sd if sd > 0 else means * 0.0
    for c, v in cluster_value.items():
        typical[int(c)][s.name] = ("share", float(v)) if is_bool else float(v)
    return pd.DataFrame({
        "cluster": means.index.astype(int), "column": s.name, "level": None,
        "kind": "boolean" if is_bool else "number",
        "cluster_value": cluster_value.reindex(means.index).to_numpy(),
        "overall_value": overall, "smd": smd.to_numpy(), "lift": np.nan,
    })


def _categorical_effects(s: pd.Series, labels: pd.Series, typical: dict) -> pd.DataFrame:
    shares = pd.crosstab(labels, s, normalize="index", dropna=True)
    n_present = labels.groupby(labels).size()
    # crosstab normalizes over present values; rescale so a share is of all the cluster's members
    present_share = s.notna().groupby(labels).sum() / n_present
    shares = shares.mul(present_share.reindex(shares.index), axis=0)
    overall = s.value_counts(normalize=False).reindex(shares.columns).fillna(0) / len(s)
    rows = []
    for c in shares.index:
        mode = shares.loc[c].idxmax() if shares.loc[c].max() > 0 else None
        if mode is not None:
            typical[int(c)][s.name] = (str(mode), float(shares.loc[c, mode]))
        for level in shares.columns:
            p_all = float(overall[level])
            if p_all <= 0 or p_all >= 1:
                continue
            p_c = float(shares.loc[c, level])
            rows.append({
                "cluster": int(c), "column": s.name, "level": str(level), "kind": "category",
                "cluster_value": p_c, "overall_value": p_all,
                "smd": (p_c - p_all) / np.sqrt(p_all * (1 - p_all)), "lift": p_c / p_all,
            })
    return pd.DataFrame(rows, columns=_EFFECT_COLUMNS)


def _top_effects(effects: pd.DataFrame, cluster: int, top_n: int) -> pd.DataFrame:
    eff = effects[effects["cluster"] == cluster]
    # For categories only over-represented levels describe a cluster ("mostly enterprise").
    eff = eff[(eff["kind"] != "category") | (eff["smd"] > 0)]
    eff = eff.assign(_strength=eff["smd"].abs()).sort_values("_strength", ascending=False)
    eff = eff.drop_duplicates("column")
    eff = eff[eff["_strength"] >= 0.2]
    return eff.head(top_n).drop(columns="_strength").reset_index(drop=True)


def describe_effect(r) -> str:
    """Return one effect row (an itertuple of `ClusterProfile.top`) as a phrase for text and cards."""
    strength = abs(r.smd)
    adverb = "much " if strength >= 0.8 else ("" if strength >= 0.5 else "slightly ")
    label = _label(r.column)
    if r.kind == "category":
        return (f"{adverb}more often {label} '{r.level}' ({r.cluster_value:.0%} vs "
                f"{r.overall_value:.0%}, {r.lift:.1f}x)")
    direction = "more" if r.smd > 0 else "less"
    if r.kind == "boolean":
        return f"{adverb}{direction} often {label} ({r.cluster_value:.0%} vs {r.overall_value:.0%})"
    word = "higher" if r.smd > 0 else "lower"
    return (f"{adverb}{word} {label} (median {_fmt_num(r.cluster_value)} vs "
            f"{_fmt_num(r.overall_value)})")




def _label(column: str) -> str:
    if column.endswith(DAYS_AGO_SUFFIX):
        return f"days since {column[: -len(DAYS_AGO_SUFFIX)]}"
    return column


def _fmt_num(v: float) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "n/a"
    a = abs(v)
    if a >= 100 or float(v).is_integer():
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}".rstrip("0").rstrip(".") or "0"


def _fmt_typical(v: object) -> str:
    if isinstance(v, tuple) and v and v[0] == "share":
        return f"true for {v[1]:.0%}"
    if isinstance(v, tuple):
        return f"'{v[0]}' ({v[1]:.0%})"
    return _fmt_num(float(v))


def _feature_labels(effects: pd.DataFrame) -> pd.Series:
    col = effects["column"].map(_label)
    return col.where(effects["level"].isna(), col + "=" + effects["level"].astype(str))


def _json_value(v: object) -> object:
    if isinstance(v, tuple):
        return {"share_true": v[1]} if v[0] == "share" else {"mode": v[0], "share": v[1]}
    if isinstance(v, float | np.floating):
        return None if np.isnan(v) else float(v)
    return v


def _json_records(df: pd.DataFrame) -> list[dict]:
    return [{k: _json_value(v) if not isinstance(v, np.integer) else int(v) for k, v in r.items()}
            for r in df.to_dict(orient="records")]
