"""Job 2 analysis: typed, PII-free attributes -> clusters -> a short name for each cluster."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from cio_mavera.cache import pulled_at
from cio_mavera.errors import InvalidParameter
from cio_mavera.jobs.audiences.attribute_types import Schema, apply_schema, infer_schema
from cio_mavera.jobs.audiences.clustering import ClusterResult, NotEnoughData, cluster
from cio_mavera.jobs.audiences.data import KEY, WRITE_BACK_PREFIX
from cio_mavera.jobs.audiences.profiles import ClusterProfile, ClusterProfiles
from cio_mavera.pii import strip_pii

_CATEGORY_KINDS = ("category",)


def prepare(customers: pd.DataFrame, *, now: Any = None, drop_quasi: bool = True
            ) -> tuple[pd.DataFrame, Schema, dict[str, str]]:
    """Return (typed frame indexed by cio_id, schema, {PII column: reason}).

    Ages in days are measured from when the data was pulled (not from now), so re-running on the
    same cached pull gives the same profiles and persona descriptions.
    """
    if KEY not in customers.columns:
        raise InvalidParameter(f"the customer frame has no {KEY!r} column; load it with load_audience")
    if customers.empty:
        raise NotEnoughData("the audience has no customers; check segment_id (an empty or "
                            "unknown segment) or pull again with refresh=True")
    own = {c: "written back by this job (not an input)" for c in customers.columns
           if str(c).startswith(WRITE_BACK_PREFIX)}
    _, pii = strip_pii(customers.drop(columns=list(own)), keep=[KEY], drop_quasi=drop_quasi)
    schema = infer_schema(customers, key=KEY, exclude={**pii, **own})
    when = now if now is not None else pulled_at(customers)
    return apply_schema(customers, schema, now=when), schema, pii


def find_clusters(typed: pd.DataFrame, schema: Schema, k_range: range | Sequence[int] = range(2, 9),
                  seed: int = 0, *, sample_size: int = 5000, method: str = "mixture") -> ClusterResult:
    """Choose k over `k_range` (BIC, distinctness, resampling stability; k = 1 when no k is clearly
    supported) and assign every customer with the mixture model (or `method` "kmeans" / "gmm")."""
    return cluster(typed, schema, k_range=list(k_range), sample_size=sample_size, seed=seed,
                   method=method)


# --- cluster names -----------------------------------------------------------------------------


def cluster_name(profile: ClusterProfile) -> str:
    """A short descriptive name: the cluster's strongest over-represented category and number.

    Built from two traits only (most distinguishing category level, most distinguishing other
    attribute) so small shifts in the data rarely rename a persona: the name is its identity.
    """
    if profile.n_clusters == 1:
        return "All customers (one audience)"
    top = profile.top
    phrases = []
    cats = top[top["kind"].isin(_CATEGORY_KINDS)]
    others = top[~top["kind"].isin(_CATEGORY_KINDS)]
    picks = [cats.head(1), others.head(1)] if len(cats) and len(others) else [top.head(2)]
    for frame in picks:
        phrases.extend(_trait_phrase(r) for r in frame.itertuples(index=False))
    if not phrases:
        return f"Audience cluster {profile.cluster + 1}"
    text = ", ".join(phrases)
    return text[0].upper() + text[1:]


def cluster_names(profiles: ClusterProfiles) -> dict[int, str]:
    """{cluster: its one name}, as job 2's tables, charts, cards and persona names and job 3 show it.

    `cluster_name` of each profile; a name two clusters share gets " (cluster N)" on the later one.
    """
    names: dict[int, str] = {}
    seen: set[str] = set()
    for profile in profiles.clusters:
        name = cluster_name(profile)
        if name.casefold() in seen:
            name = f"{name} (cluster {profile.cluster + 1})"
        seen.add(name.casefold())
        names[profile.cluster] = name
    return names


def _human(column: str) -> str:
    return str(column).replace("_", " ").strip()


def _trait_phrase(r: Any) -> str:
    column = str(r.column)
    if r.kind in _CATEGORY_KINDS:
        return f"{_human(r.level)} {_human(column)}"
    if r.kind == "boolean":
        return _human(column) if r.smd > 0 else f"not {_human(column)}"
    if column.endswith("_days_ago"):
        base = column[: -len("_days_ago")]
        for suffix in ("_at", "_date", "_on"):
            if base.endswith(suffix):
                base = base[: -len(suffix)]
        return f"{_human(base)} long ago" if r.smd > 0 else f"{_human(base)} recently"
    return f"{'high' if r.smd > 0 else 'low'} {_human(column)}"

