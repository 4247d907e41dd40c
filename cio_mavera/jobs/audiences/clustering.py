"""Audience clustering of typed customer attributes: which method, model selection, the fit.

The default method is a mixture model over mixed attributes with gaps (`mixture`,
`mixed_data`, `model_selection`): people missing whole attribute groups are kept and assigned by
what they have, numbers enter as rank scores (robust to heavy tails and outliers), and the number
of clusters comes with how clear the structure is, or "no clear structure". Seeded k-means on
scaled, imputed features (`build_features`, `choose_k`, `fit_clusters`) and scikit-learn's
GaussianMixture on the same features are kept as the methods it was compared with
(bench/truth_job2.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from cio_mavera.errors import CioMaveraError, InvalidParameter
from cio_mavera.jobs.audiences.attribute_types import BOOLEAN, Schema, apply_schema, infer_schema
from cio_mavera.jobs.audiences.mixed_data import MixedData, mixed_data
from cio_mavera.jobs.audiences.mixture import Mixture, fit_mixture
from cio_mavera.jobs.audiences.model_selection import Selection, select_k
from cio_mavera.pii import strip_pii

MINIBATCH_THRESHOLD = 50_000
METHODS = ("mixture", "kmeans", "gmm")
FIT_SIZE = 50_000  # above this many people the mixture is refitted on a sample, then assigns everyone


class NotEnoughData(CioMaveraError):
    """Too few customers or usable attributes to cluster."""


@dataclass(frozen=True)
class KMeansSelection:
    """k-means model selection: the chosen k and, per candidate k, silhouette and stability."""

    k: int
    table: pd.DataFrame  # k, silhouette, silhouette_std, stability_ari, stable, chosen
    stable: bool
    reason: str


@dataclass(frozen=True)
class ClusterResult:
    """Cluster labels for every customer plus what produced them."""

    labels: pd.Series  # int cluster per customer, indexed like the typed frame, 0 = largest
    k: int
    selection: Selection | KMeansSelection | None
    features: np.ndarray  # a numeric matrix of the attributes used (for the projection chart)
    feature_names: list[str]
    relevance: pd.Series  # attribute -> how strongly it relates to the others (0..1)
    method: str = "mixture"
    dropped: dict[str, str] = field(default_factory=dict)  # attribute -> why clustering left it out
    # Each customer's probability of the cluster they were put in (the mixture model's own; None
    # for k-means and GaussianMixture).
    certainty: pd.Series | None = None

    def assignments(self) -> pd.DataFrame:
        """Return a two-column frame (key, cluster) ready to write as parquet."""
        key = self.labels.index.name or "cio_id"
        return pd.DataFrame({key: self.labels.index.astype(str), "cluster": self.labels.to_numpy()})


def prepare_attributes(
    raw: pd.DataFrame,
    *,
    now: datetime | pd.Timestamp | str | None = None,
    key: str = "cio_id",
    drop_quasi: bool = True,
    max_categories: int = 20,
    rare_share: float = 0.01,
) -> tuple[pd.DataFrame, Schema]:
    """Strip PII from the string attribute frame, infer the schema, and return (typed frame, schema).

    PII columns appear in the schema as kind "excluded" with the reason, so the report shows them.
    """
    _, pii = strip_pii(raw, keep=[key], drop_quasi=drop_quasi)
    schema = infer_schema(
        raw, max_categories=max_categories, rare_share=rare_share, key=key, exclude=pii
    )
    return apply_schema(raw, schema, now=now), schema


def build_features(
    typed_df: pd.DataFrame,
    schema: Schema,
    *,
    weighting: str = "relevance",
    numeric_weight: float = 1.0,
    categorical_weight: float = 1.0,
    missing_weight: float = 0.5,
    clip: float = 5.0,
    seed: int = 0,
) -> tuple[np.ndarray, list[str]]:
    """Return (X float32, feature names): every attribute scaled to about unit total variance.

    Numbers: log1p when skewed and non-negative, robust centring/scaling, clipped, median-imputed,
    plus a missing indicator when 1-99% are missing. Categoricals: one-hot, scaled so the whole
    attribute has unit variance however many levels it has (so categoricals do not dominate).
    With `weighting="relevance"` each attribute is then scaled by the square root of its
    `attribute_relevance` and near-zero ones are dropped, so attributes unrelated to every other
    one (noise) stop blurring the clusters; `weighting="equal"` skips that.
    """
    X, names, groups = _scaled_features(
        typed_df, schema, numeric_weight, categorical_weight, missing_weight, clip
    )
    if weighting == "relevance":
        X, names = apply_relevance(X, names, attribute_relevance(X, groups, seed=seed))
    elif weighting != "equal":
        raise InvalidParameter(f"weighting must be 'relevance' or 'equal', got {weighting!r}")
    return X, names


def feature_groups(names: list[str]) -> list[str]:
    """Return the attribute each feature column belongs to ("plan=pro" -> "plan", "log1p(mrr)" -> "mrr")."""
    out = []
    for n in names:
        base = n.split("=", 1)[0]
        if base.startswith("log1p(") and base.endswith(")"):
            base = base[6:-1]
        out.append(base)
    return out


def attribute_relevance(
    X: np.ndarray,
    groups: list[str],
    *,
    cells: int = 20,
    sample_size: int = 3000,
    seed: int = 0,
) -> pd.Series:
    """Return, per attribute, the share of its variance explained by all the *other* attributes.

    The others are partitioned into `cells` k-means cells (a non-linear summary) and the
    attribute's between-cell variance share is corrected for what random cells would explain.
    Planted audience structure shows in several attributes at once, so they score high; an
    attribute independent of everything else scores about 0.
    """
    groups_arr = np.asarray(groups)
    attrs = list(dict.fromkeys(groups))
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(X), size=min(len(X), sample_size), replace=False))
    Xs = np.asarray(X[idx], dtype=np.float64)
    m = len(Xs)
    n_cells = min(cells, max(2, m // 10))
    chance = (n_cells - 1) / max(m - 1, 1)
    scores = {}
    for attr in attrs:
        own = groups_arr == attr
        if own.all():
            scores[attr] = 1.0
            continue
        with threadpool_limits(limits=1, user_api="openmp"):
            cells_of = KMeans(n_clusters=n_cells, n_init=1, max_iter=50, random_state=seed).fit_predict(
                Xs[:, ~own]
            )
        B = Xs[:, own]
        total = ((B - B.mean(axis=0)) ** 2).sum()
        if total <= 0:
            scores[attr] = 0.0
            continue
        sizes = np.bincount(cells_of, minlength=n_cells).astype(np.float64)
        sums = np.stack([np.bincount(cells_of, weights=B[:, j], minlength=n_cells)
                         for j in range(B.shape[1])], axis=1)
        nz = sizes > 0
        between = ((sums[nz] ** 2) / sizes[nz, None]).sum() - m * (B.mean(axis=0) ** 2).sum()
        r2 = between / total
        scores[attr] = float(max(0.0, (r2 - chance) / (1 - chance)))
    return pd.Series(scores, name="relevance")


def apply_relevance(
    X: np.ndarray,
    names: list[str],
    relevance: pd.Series,
    *,
    min_relevance: float = 0.02,
) -> tuple[np.ndarray, list[str]]:
    """Return (X, names) with each attribute scaled by sqrt(relevance), dropping those below
    `min_relevance`; unchanged when no attribute relates to another (weighting would add noise)."""
    if relevance.max() < 0.05:
        return X, list(names)
    rel = relevance.reindex(feature_groups(names)).fillna(0.0).to_numpy(dtype=np.float64)
    keep = rel >= min_relevance
    w = np.sqrt(rel[keep]).astype(np.float32)
    Xw = np.ascontiguousarray(X[:, keep] * w[None, :], dtype=np.float32)
    return Xw, [n for n, k in zip(names, keep, strict=True) if k]


def _scaled_features(
    typed_df: pd.DataFrame,
    schema: Schema,
    numeric_weight: float,
    categorical_weight: float,
    missing_weight: float,
    clip: float,
) -> tuple[np.ndarray, list[str], list[str]]:
    blocks: list[np.ndarray] = []
    names: list[str] = []
    groups: list[str] = []
    kinds = {c.output: c.kind for c in schema.kept()}
    for col in schema.numeric_outputs():
        values = typed_df[col].to_numpy(dtype="float64", na_value=np.nan)
        missing = np.isnan(values)
        if missing.all():
            continue
        z, template = _scale_numeric(values, missing, kinds[col] == BOOLEAN, clip)
        if z is None:
            continue
        blocks.append((numeric_weight * z).astype(np.float32))
        names.append(template.format(col))
        groups.append(col)
        share = missing.mean()
        if 0.01 <= share <= 0.99:
            ind = _unit_variance(missing.astype("float64"), clip)
            blocks.append((missing_weight * ind).astype(np.float32))
            names.append(f"{col}__missing")
            groups.append(f"{col}__missing")
    for col in schema.categorical_outputs():
        onehot, levels = _scale_categorical(typed_df[col])
        if onehot is None:
            continue
        for j, level in enumerate(levels):
            blocks.append((categorical_weight * onehot[:, j]).astype(np.float32))
            names.append(f"{col}={level}")
            groups.append(col)
    if not blocks:
        raise NotEnoughData(
            "no usable attributes left after typing and PII removal; check schema.to_frame()"
        )
    X = np.ascontiguousarray(np.column_stack(blocks), dtype=np.float32)
    return X, names, groups


def choose_k(
    X: np.ndarray,
    k_range: range | list[int] = range(2, 9),
    sample_size: int = 5000,
    resamples: int = 5,
    seed: int = 0,
    *,
    stability_threshold: float = 0.75,
    silhouette_sample: int = 2000,
) -> KMeansSelection:
    """Pick k: the best mean silhouette among ks whose resampled fits agree (pairwise ARI).

    Each resample fits k-means on a random subsample; silhouettes are averaged, and stability is
    the mean adjusted Rand index between the resampled models' labels on one shared reference set.
    """
    ks = sorted(set(k_range))
    n = len(X)
    if not ks or ks[0] < 2:
        raise InvalidParameter(f"k_range must hold ks >= 2, got {list(k_range)}")
    if n < 3 * ks[-1]:
        raise NotEnoughData(f"{n} customers are too few to compare up to k={ks[-1]}")
    rng = np.random.default_rng(seed)
    # With few rows, 80% subsamples still differ between resamples, which the stability check needs.
    m = sample_size if n > sample_size else max(3 * ks[-1], int(0.8 * n))
    ref = rng.choice(n, size=min(n, sample_size), replace=False)
    X_ref = np.asarray(X[ref], dtype=np.float64)
    sil: dict[int, list[float]] = {k: [] for k in ks}
    preds: dict[int, list[np.ndarray]] = {k: [] for k in ks}
    for r in range(max(1, resamples)):
        _fit_resample(X, X_ref, ks, m, rng, seed + r, silhouette_sample, sil, preds)
    rows = []
    for k in ks:
        pairs = list(combinations(preds[k], 2))
        ari = float(np.mean([adjusted_rand_score(a, b) for a, b in pairs])) if pairs else np.nan
        rows.append({
            "k": k,
            "silhouette": float(np.mean(sil[k])),
            "silhouette_std": float(np.std(sil[k])),
            "stability_ari": ari,
            "stable": bool(np.isnan(ari) or ari >= stability_threshold),
        })
    table = pd.DataFrame(rows)
    stable_rows = table[table["stable"]]
    pool = stable_rows if len(stable_rows) else table
    best = pool.loc[pool["silhouette"].idxmax()]
    k = int(best["k"])
    table["chosen"] = table["k"] == k
    if len(stable_rows):
        reason = (f"k={k}: best mean silhouette ({best['silhouette']:.3f}) among ks whose resampled "
                  f"fits agree (ARI >= {stability_threshold})")
    else:
        reason = (f"k={k}: best mean silhouette ({best['silhouette']:.3f}); no k was stable across "
                  f"resamples (ARI < {stability_threshold}), so the clusters are weak")
    return KMeansSelection(k=k, table=table, stable=bool(len(stable_rows)), reason=reason)


def _fit_resample(
    X: np.ndarray,
    X_ref: np.ndarray,
    ks: list[int],
    m: int,
    rng: np.random.Generator,
    seed: int,
    silhouette_sample: int,
    sil: dict[int, list[float]],
    preds: dict[int, list[np.ndarray]],
) -> None:
    idx = np.sort(rng.choice(len(X), size=m, replace=False))
    Xs = np.asarray(X[idx], dtype=np.float64)
    # Sample-sized fits are fastest on one thread, and OpenMP spin-waiting on a busy machine
    # otherwise makes them ten times slower.
    with threadpool_limits(limits=1, user_api="openmp"):
        for k in ks:
            km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(Xs)
            if len(np.unique(km.labels_)) < 2:
                sil[k].append(-1.0)
            else:
                sil[k].append(float(silhouette_score(
                    Xs, km.labels_, sample_size=min(m, silhouette_sample), random_state=seed)))
            preds[k].append(km.predict(X_ref))


def fit_clusters(
    X: np.ndarray,
    k: int,
    seed: int = 0,
    *,
    n_init: int = 10,
    minibatch_threshold: int = MINIBATCH_THRESHOLD,
) -> np.ndarray:
    """Return int labels from seeded k-means (mini-batch above `minibatch_threshold` rows), 0 = largest."""
    if k < 1 or k > len(X):
        raise InvalidParameter(f"k must be between 1 and the number of rows ({len(X)}), got {k}")
    if len(X) > minibatch_threshold:
        model = MiniBatchKMeans(n_clusters=k, n_init=3, batch_size=4096, random_state=seed,
                                max_no_improvement=20)
    else:
        model = KMeans(n_clusters=k, n_init=n_init, random_state=seed)
    return _relabel_by_size(model.fit(X).labels_)


def cluster(
    typed_df: pd.DataFrame,
    schema: Schema,
    *,
    k: int | None = None,
    k_range: range | list[int] = range(2, 9),
    sample_size: int = 5000,
    resamples: int = 3,
    seed: int = 0,
    method: str = "mixture",
    weighting: str = "relevance",
    numeric_weight: float = 1.0,
    categorical_weight: float = 1.0,
) -> ClusterResult:
    """Choose k (unless given) and assign every customer; labels align to `typed_df`, 0 = largest.

    `method`: "mixture" (default), "kmeans" or "gmm" (scikit-learn GaussianMixture, k by BIC);
    `weighting`, `numeric_weight` and `categorical_weight` shape the k-means / gmm features only.
    """
    if method not in METHODS:
        raise InvalidParameter(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "mixture":
        return _cluster_mixture(typed_df, schema, k, k_range, sample_size, resamples, seed)
    X, names = build_features(
        typed_df, schema, weighting="equal", numeric_weight=numeric_weight,
        categorical_weight=categorical_weight,
    )
    groups = feature_groups(names)
    relevance = attribute_relevance(X, groups, seed=seed)
    if weighting == "relevance":
        X, names = apply_relevance(X, names, relevance)
    elif weighting != "equal":
        raise InvalidParameter(f"weighting must be 'relevance' or 'equal', got {weighting!r}")
    if method == "gmm":
        labels, k = _gaussian_mixture(X, k, k_range, sample_size, seed)
        series = pd.Series(labels, index=typed_df.index, name="cluster")
        return ClusterResult(series, k, None, X, names, relevance, method)
    selection = None
    if k is None:
        selection = choose_k(X, k_range, sample_size=sample_size, resamples=resamples, seed=seed)
        k = selection.k
    labels = fit_clusters(X, k, seed=seed)
    series = pd.Series(labels, index=typed_df.index, name="cluster")
    return ClusterResult(series, k, selection, X, names, relevance, method)


def _cluster_mixture(typed_df: pd.DataFrame, schema: Schema, k: int | None,
                     k_range: range | list[int], sample_size: int, resamples: int,
                     seed: int) -> ClusterResult:
    data = mixed_data(typed_df, schema, seed=seed)
    if len(data.index) < 3 * (k or 2):
        raise NotEnoughData(f"{len(data.index)} customers are too few to cluster")
    selection = None
    if k is None:
        selection, model, rows = select_k(data, k_range, sample_size=sample_size,
                                          resamples=resamples, seed=seed)
    else:
        rows = np.sort(np.random.default_rng(seed).choice(data.n, size=min(data.n, sample_size),
                                                          replace=False))
        with threadpool_limits(limits=1):
            model = fit_mixture(data.take(rows), k, seed=seed)
    with threadpool_limits(limits=1):
        model = _refit_on_more(data, model, rows, seed)
        posterior = model.posterior(data) if model.k > 1 else np.ones((data.n, 1))
    labels = _relabel_by_size(posterior.argmax(axis=1)) if model.k > 1 else np.zeros(data.n, np.int32)
    series = pd.Series(labels, index=typed_df.index, name="cluster")
    certainty = pd.Series(posterior.max(axis=1), index=typed_df.index, name="certainty")
    return ClusterResult(series, int(labels.max()) + 1, selection, data.embedding(), data.attributes,
                         data.dependence, "mixture", data.dropped, certainty)


def _refit_on_more(data: MixedData, model: Mixture, rows: np.ndarray, seed: int) -> Mixture:
    """The model refitted on up to FIT_SIZE people (from its own clusters) when it saw fewer."""
    if model.k == 1 or len(rows) >= min(data.n, FIT_SIZE):
        return model
    more = data if data.n <= FIT_SIZE else data.take(
        np.sort(np.random.default_rng(seed + 1).choice(data.n, size=FIT_SIZE, replace=False)))
    return fit_mixture(more, model.k, start_labels=model.predict(more))


def _gaussian_mixture(X: np.ndarray, k: int | None, k_range: range | list[int], sample_size: int,
                      seed: int) -> tuple[np.ndarray, int]:
    """(labels, k) from scikit-learn's diagonal GaussianMixture on the imputed features, k by BIC."""
    rows = np.sort(np.random.default_rng(seed).choice(len(X), size=min(len(X), sample_size),
                                                      replace=False))
    sample = np.asarray(X[rows], dtype=np.float64)
    with threadpool_limits(limits=1):
        fits = {c: GaussianMixture(c, covariance_type="diag", n_init=2, reg_covar=1e-3,
                                   random_state=seed).fit(sample)
                for c in ([k] if k else sorted(set(k_range)))}
    best = min(fits, key=lambda c: fits[c].bic(sample))
    return _relabel_by_size(fits[best].predict(np.asarray(X, dtype=np.float64))), best


def _relabel_by_size(labels: np.ndarray) -> np.ndarray:
    uniq, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = sorted(range(len(uniq)), key=lambda i: (-counts[i], first[i]))
    mapping = np.empty(uniq.max() + 1, dtype=np.int32)
    mapping[uniq[order]] = np.arange(len(order), dtype=np.int32)
    return mapping[labels]


def _unit_variance(x: np.ndarray, clip: float) -> np.ndarray:
    sd = x.std()
    if sd == 0:
        return np.zeros_like(x)
    return np.clip((x - x.mean()) / sd, -clip, clip)


def _scale_numeric(
    values: np.ndarray, missing: np.ndarray, is_bool: bool, clip: float
) -> tuple[np.ndarray | None, str]:
    """Return (unit-variance column, name template) or (None, "") for a constant column."""
    present = values[~missing]
    x = values
    template = "{}"
    if not is_bool and present.min() >= 0 and _skew(present) > 1.0:
        x = np.log1p(np.where(missing, 0.0, values))
        present = x[~missing]
        template = "log1p({})"
    med = float(np.median(present))
    q75, q25 = np.percentile(present, [75, 25])
    scale = (q75 - q25) / 1.349  # the IQR of a normal distribution is 1.349 sd
    if scale <= 0:
        scale = float(present.std())
    if scale <= 0:
        return None, ""
    z = np.where(missing, 0.0, np.clip((x - med) / scale, -clip, clip))
    sd = z.std()
    if sd == 0:
        return None, ""
    # Re-standardise so every numeric attribute carries the same weight after clipping/imputing.
    return (z - z.mean()) / sd, template


def _skew(x: np.ndarray) -> float:
    sd = x.std()
    if sd == 0 or len(x) < 3:
        return 0.0
    return float(np.mean(((x - x.mean()) / sd) ** 3))


def _scale_categorical(s: pd.Series) -> tuple[np.ndarray | None, list[str]]:
    cat = s.astype("category")
    codes = cat.cat.codes.to_numpy()
    levels = [str(c) for c in cat.cat.categories]
    if (codes < 0).mean() >= 0.01:
        levels.append("(missing)")
        codes = np.where(codes < 0, len(levels) - 1, codes)
    used = np.bincount(codes[codes >= 0], minlength=len(levels))
    keep = np.flatnonzero(used)
    if len(keep) < 2:
        return None, []
    onehot = np.zeros((len(codes), len(levels)), dtype=np.float32)
    valid = codes >= 0
    onehot[np.flatnonzero(valid), codes[valid]] = 1.0
    onehot = onehot[:, keep]
    p = onehot.mean(axis=0)
    # Total variance of a one-hot block is 1 - sum(p^2); scale it to 1 (floored so a near-constant
    # attribute is not blown up).
    total = max(1.0 - float((p**2).sum()), 0.1)
    return onehot / np.sqrt(total), [levels[i] for i in keep]
