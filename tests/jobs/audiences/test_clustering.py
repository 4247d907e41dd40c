"""Clustering: features, model selection, determinism, mini-batch path, profiles and charts."""

from __future__ import annotations

import datetime as dt
import json

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from cio_mavera.jobs.audiences.attribute_types import infer_schema
from cio_mavera.jobs.audiences.charts import (
    plot_cluster_sizes,
    plot_profile_heatmap,
    plot_projection,
)
from cio_mavera.jobs.audiences.clustering import (
    attribute_relevance,
    build_features,
    choose_k,
    cluster,
    feature_groups,
    fit_clusters,
    prepare_attributes,
)
from cio_mavera.jobs.audiences.profiles import profile_clusters, profile_text
from cio_mavera.pii import contains_pii, strip_pii
from cio_mavera.sandbox.workspace import World, customer_attribute_strings, generate_workspace

NOW = "2025-06-01T00:00:00Z"
END = dt.date(2026, 3, 31)
_NOW_S = 1748736000

_PLANS = ["free", "starter", "pro", "enterprise"]
_INDUSTRIES = ["saas", "retail", "fintech", "health", "media", "education"]
_SIZES = ["1-10", "11-50", "51-200", "201-1000", "1000+"]


def string_customers(n: int, k: int = 4, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Return (attribute frame of strings as the App API sends them, planted cluster labels)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, size=n)
    # Per-cluster centres for the signal attributes; the rest is noise shared by everyone.
    mrr_mu = rng.permutation(np.linspace(2.0, 7.0, k))
    logins_mu = rng.permutation(np.linspace(1.0, 40.0, k))
    age_mu = rng.permutation(np.linspace(30.0, 900.0, k))
    plan_pref = rng.permutation(np.arange(k)) % len(_PLANS)
    ind_pref = rng.permutation(np.arange(k)) % len(_INDUSTRIES)

    mrr = np.exp(rng.normal(mrr_mu[truth], 0.35))
    logins = rng.poisson(logins_mu[truth])
    created = _NOW_S - (rng.normal(age_mu[truth], age_mu[truth] * 0.1).clip(1) * 86400)
    plan = np.where(rng.random(n) < 0.85, plan_pref[truth], rng.integers(0, len(_PLANS), n))
    industry = np.where(rng.random(n) < 0.8, ind_pref[truth], rng.integers(0, len(_INDUSTRIES), n))
    seats = rng.integers(1, 500, size=n)
    ids = np.arange(n)

    def fmt(values: np.ndarray, missing_share: float = 0.0) -> list[str | None]:
        out = [str(v) for v in values]
        if missing_share:
            for i in np.flatnonzero(rng.random(n) < missing_share):
                out[i] = None if i % 2 else ""
        return out

    df = pd.DataFrame({
        "cio_id": [f"{i + 3000001:08x}" for i in ids],
        "id": [f"cust_{i}" for i in ids],
        "email": [f"person{i}@example.com" for i in ids],
        "first_name": rng.choice(["Ada", "Grace", "Alan", "Linus"], n),
        "phone": [f"+1415555{i % 10000:04d}" for i in ids],
        "city": rng.choice([f"City {c}" for c in range(60)], n),
        "plan": [_PLANS[p] for p in plan],
        "industry": [_INDUSTRIES[p] for p in industry],
        "company_size": rng.choice(_SIZES, n),
        "seats": fmt(seats, 0.02),
        "created_at": fmt(created.astype(np.int64)),
        "last_seen_at": fmt((created.astype(np.int64) + rng.integers(0, 86400 * 30, n)) * 1000),
        "logins_30d": fmt(logins),
        "mrr": fmt(np.round(mrr, 2), 0.05),
        "marketing_opt_in": rng.choice(["true", "false"], n),
        "contact_ref": [f"person{i}@example.com" for i in ids],  # innocuous name, PII values
        "notes": [f"Spoke with them about renewal #{i} and next steps" for i in ids],
    })
    return df, truth


def test_planted_clusters_are_recovered_with_the_right_k() -> None:
    raw, truth = string_customers(4000, k=4, seed=1)
    typed, schema = prepare_attributes(raw, now=NOW)
    result = cluster(typed, schema, k_range=range(2, 8), sample_size=2000, resamples=3)
    assert result.k == 4
    assert adjusted_rand_score(truth, result.labels.to_numpy()) >= 0.8


def test_prepared_features_contain_no_pii_columns() -> None:
    raw, _ = string_customers(500, seed=2)
    typed, schema = prepare_attributes(raw, now=NOW)
    dropped = schema.dropped()
    for col in ("email", "first_name", "phone", "city", "id", "contact_ref", "notes"):
        assert col in dropped
    assert "cio_id" not in typed.columns and typed.index.name == "cio_id"
    _, names = build_features(typed, schema)
    assert not any(n.split("=")[0] in dropped for n in names)


def test_choose_k_picks_the_number_of_well_separated_blobs() -> None:
    rng = np.random.default_rng(3)
    centres = rng.normal(0, 10, size=(5, 6))
    X = np.vstack([c + rng.normal(0, 1, size=(300, 6)) for c in centres]).astype(np.float32)
    sel = choose_k(X, range(2, 9), sample_size=1000, resamples=3, seed=0)
    assert sel.k == 5
    assert sel.stable
    assert set(sel.table.columns) >= {"k", "silhouette", "stability_ari", "stable", "chosen"}
    assert sel.table.loc[sel.table["chosen"], "k"].tolist() == [5]


def test_choose_k_reports_instability_on_structureless_data() -> None:
    X = np.random.default_rng(4).normal(size=(1500, 8)).astype(np.float32)
    sel = choose_k(X, range(2, 7), sample_size=800, resamples=4, seed=0)
    # Uniform noise has no stable partition for most k; the table must say which were stable.
    assert sel.table["stability_ari"].between(-1, 1).all()
    assert sel.table["stable"].sum() < len(sel.table)


def test_clustering_is_deterministic_for_a_seed() -> None:
    raw, _ = string_customers(1500, seed=5)
    typed, schema = prepare_attributes(raw, now=NOW)
    a = cluster(typed, schema, k_range=range(2, 6), sample_size=800, resamples=2, seed=9)
    b = cluster(typed, schema, k_range=range(2, 6), sample_size=800, resamples=2, seed=9)
    assert a.k == b.k
    pd.testing.assert_frame_equal(a.selection.table, b.selection.table)
    assert np.array_equal(a.labels.to_numpy(), b.labels.to_numpy())
    assert np.array_equal(a.features, b.features)


def test_labels_are_numbered_by_cluster_size() -> None:
    rng = np.random.default_rng(6)
    X = np.vstack([rng.normal(0, 0.3, (50, 2)), rng.normal(8, 0.3, (200, 2)),
                   rng.normal(-8, 0.3, (100, 2))])
    labels = fit_clusters(X, 3, seed=0)
    assert np.bincount(labels).tolist() == [200, 100, 50]


def test_minibatch_path_above_50k_rows_recovers_blobs_deterministically() -> None:
    rng = np.random.default_rng(7)
    centres = np.array([[0, 0, 0, 0], [6, 6, 0, 0], [0, 6, 6, 0]], dtype=np.float32)
    truth = rng.integers(0, 3, 60_000)
    X = (centres[truth] + rng.normal(0, 1, (60_000, 4))).astype(np.float32)
    a = fit_clusters(X, 3, seed=1)
    b = fit_clusters(X, 3, seed=1)
    assert np.array_equal(a, b)
    assert adjusted_rand_score(truth, a) >= 0.95


def test_build_features_scales_each_attribute_to_unit_variance() -> None:
    raw, _ = string_customers(2000, seed=8)
    typed, schema = prepare_attributes(raw, now=NOW)
    X, names = build_features(typed, schema, weighting="equal")
    assert X.dtype == np.float32 and X.shape == (2000, len(names))
    assert "log1p(mrr)" in names  # mrr is skewed and positive
    assert "mrr__missing" in names
    plan_cols = [i for i, n in enumerate(names) if n.startswith("plan=")]
    plan_var = X[:, plan_cols].var(axis=0).sum()
    assert plan_var == pytest.approx(1.0, rel=0.01)
    logins = names.index("logins_30d") if "logins_30d" in names else names.index("log1p(logins_30d)")
    assert X[:, logins].var() == pytest.approx(1.0, rel=0.01)


def test_relevance_weighting_mutes_attributes_unrelated_to_the_rest() -> None:
    raw, _ = string_customers(3000, k=4, seed=14)
    typed, schema = prepare_attributes(raw, now=NOW)
    X, names = build_features(typed, schema, weighting="equal")
    relevance = attribute_relevance(X, feature_groups(names))
    for planted in ("mrr", "logins_30d", "created_at_days_ago", "plan", "industry"):
        assert relevance[planted] > 0.4
    for noise in ("seats", "company_size", "marketing_opt_in"):
        assert relevance[noise] < 0.05
    weighted, kept = build_features(typed, schema)
    assert "seats" not in kept and not any(n.startswith("company_size=") for n in kept)
    mrr = names.index("log1p(mrr)")
    assert weighted[:, kept.index("log1p(mrr)")].var() == pytest.approx(
        relevance["mrr"] * X[:, mrr].var(), rel=0.01
    )


def test_profiles_name_the_distinguishing_attributes_without_pii() -> None:
    raw, truth = string_customers(3000, k=3, seed=10)
    typed, schema = prepare_attributes(raw, now=NOW)
    result = cluster(typed, schema, k=3)
    profiles = profile_clusters(typed, result.labels)
    assert profiles.sizes["size"].sum() == 3000
    assert profiles.sizes["share"].sum() == pytest.approx(1.0)
    for p in profiles.clusters:
        text = profile_text(p)
        assert f"{p.size:,}" in text
        assert contains_pii(text) == []
        assert len(p.top) > 0
    record = json.loads(json.dumps(profiles.clusters[0].to_dict()))
    assert record["size"] == profiles.clusters[0].size and record["description"]
    # the planted signal (mrr, logins, plan, industry, created_at) tops some cluster's list
    top_cols = {c for p in profiles.clusters for c in p.top["column"].head(3)}
    assert top_cols & {"mrr", "logins_30d", "plan", "industry", "created_at_days_ago"}


def test_charts_have_titles_and_axis_labels() -> None:
    raw, _ = string_customers(800, k=3, seed=11)
    typed, schema = prepare_attributes(raw, now=NOW)
    result = cluster(typed, schema, k=3)
    profiles = profile_clusters(typed, result.labels)
    for fig in (
        plot_cluster_sizes(result.labels),
        plot_projection(result.features, result.labels, max_points=500),
        plot_profile_heatmap(profiles, top=8),
    ):
        ax = fig.axes[0]
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


def test_projection_samples_at_most_max_points() -> None:
    rng = np.random.default_rng(12)
    X = rng.normal(size=(3000, 5)).astype(np.float32)
    labels = pd.Series(rng.integers(0, 3, 3000))
    fig = plot_projection(X, labels, max_points=1000)
    n_points = sum(len(c.get_offsets()) for c in fig.axes[0].collections)
    assert n_points == 1000


def test_infer_schema_on_fixture_types_each_column() -> None:
    raw, _ = string_customers(1000, seed=13)
    kinds = infer_schema(raw).to_frame().set_index("column")["kind"]
    assert kinds["created_at"] == "timestamp"
    assert kinds["last_seen_at"] == "timestamp"
    assert kinds["mrr"] == "number"
    assert kinds["plan"] == "categorical"
    assert kinds["marketing_opt_in"] == "boolean"
    assert kinds["notes"] == "text"


def _workspace_frame(seed: int, n: int, world: World) -> tuple[pd.DataFrame, object]:
    ws = generate_workspace(seed=seed, customers=n, end=END, world=world)
    raw = pd.DataFrame(customer_attribute_strings(ws, range(n)))
    assert all(isinstance(v, str) for v in raw.drop(columns="cio_id").stack())
    return raw, ws


def _planted(ws, index: pd.Index) -> np.ndarray:
    assignments = ws.truth["clusters"]["assignments"]
    return np.array([assignments[c] for c in index])


@pytest.mark.parametrize("seed", [7, 11, 23])
def test_clean_sandbox_clusters_are_recovered_exactly_by_kmeans_and_the_mixture(seed: int) -> None:
    raw, ws = _workspace_frame(seed, 3000, World.clean())
    typed, schema = prepare_attributes(raw, now=END)
    clean, dropped = strip_pii(raw.set_index("cio_id"))
    assert {"email", "first_name", "last_name", "phone", "street_address", "id"} <= set(dropped)
    X, names = build_features(typed, schema, seed=seed)
    assert not any(n.split("=")[0] in dropped for n in names)
    selection = choose_k(X, range(2, 9), sample_size=2000, resamples=3, seed=seed)
    labels = fit_clusters(X, selection.k, seed=seed)
    truth = ws.truth["clusters"]
    assert selection.k == truth["k"]
    assert adjusted_rand_score(_planted(ws, typed.index), labels) >= 0.95
    mixture = cluster(typed, schema, seed=seed)
    assert mixture.k == truth["k"] and mixture.selection.clarity == "clear"
    assert adjusted_rand_score(_planted(ws, typed.index), mixture.labels) >= 0.99


# Realistic world (overlap, missing groups, messy strings, outliers): bench/truth_job2.py measures
# 20 seeds; these bounds leave a margin below what it reports.
@pytest.mark.parametrize("seed", [7, 11, 23])
def test_realistic_sandbox_clusters_are_recovered_by_the_mixture(seed: int) -> None:
    raw, ws = _workspace_frame(seed, 3000, World())
    typed, schema = prepare_attributes(raw, now=END)
    result = cluster(typed, schema, seed=seed)
    assert abs(result.k - ws.truth["clusters"]["k"]) <= 1
    assert result.selection.clarity in ("clear", "moderate")
    assert adjusted_rand_score(_planted(ws, typed.index), result.labels) >= 0.75
    assert len(result.labels) == len(raw)  # nobody dropped for a missing attribute


def test_people_missing_whole_attribute_groups_are_kept_and_assigned_by_what_they_have() -> None:
    raw, ws = _workspace_frame(11, 3000, World())
    typed, schema = prepare_attributes(raw, now=END)
    result = cluster(typed, schema, seed=11, k=4)
    no_billing, no_crm = typed["plan"].isna(), typed["industry"].isna()
    sparse = (no_billing & no_crm).to_numpy()  # only product usage (or nothing) to go on
    assert sparse.sum() > 200 and result.labels.notna().all()
    planted = _planted(ws, typed.index)
    assert adjusted_rand_score(planted[sparse], result.labels.to_numpy()[sparse]) >= 0.6
    assert adjusted_rand_score(planted[~sparse], result.labels.to_numpy()[~sparse]) >= 0.8


def test_the_mixture_beats_kmeans_on_the_realistic_world() -> None:
    raw, ws = _workspace_frame(23, 3000, World())
    typed, schema = prepare_attributes(raw, now=END)
    planted = _planted(ws, typed.index)
    mixture = cluster(typed, schema, seed=0, k=4)
    kmeans = cluster(typed, schema, seed=0, k=4, method="kmeans")
    assert adjusted_rand_score(planted, mixture.labels) > adjusted_rand_score(planted, kmeans.labels) + 0.2


def _shuffled(typed: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Each attribute permuted on its own: the same values, no relation between attributes."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: typed[c].iloc[rng.permutation(len(typed))].set_axis(typed.index)
                         for c in typed.columns})


def test_structureless_attributes_are_reported_as_no_clear_structure() -> None:
    raw, _ = _workspace_frame(7, 3000, World())
    typed, schema = prepare_attributes(raw, now=END)
    result = cluster(_shuffled(typed, 1), schema, seed=0)
    assert result.k == 1 and (result.labels == 0).all()
    assert result.selection.clarity == "none"
    assert result.selection.reason.startswith("No number of clusters is clearly supported")


def test_one_correlated_cloud_is_not_split_into_audiences() -> None:
    rng = np.random.default_rng(5)
    correlation = np.full((5, 5), 0.6) + 0.4 * np.eye(5)
    cloud = np.exp(rng.multivariate_normal(np.zeros(5), correlation, size=3000))  # size, seats, mrr...
    raw = pd.DataFrame({f"amount_{i}": np.round(cloud[:, i] * 100).astype(int).astype(str)
                        for i in range(5)})
    raw.insert(0, "cio_id", [f"{i:08x}" for i in range(3000)])
    typed, schema = prepare_attributes(raw, now=END)
    result = cluster(typed, schema, seed=0)
    assert result.k == 1 and result.selection.clarity == "none"
    kmeans = cluster(typed, schema, seed=0, method="kmeans")
    assert kmeans.k >= 2  # what k-means alone would have reported


def test_model_selection_table_says_why_each_k_was_kept_or_not() -> None:
    raw, _ = _workspace_frame(7, 2000, World.clean())
    typed, schema = prepare_attributes(raw, now=END)
    selection = cluster(typed, schema, seed=0).selection
    table = selection.table
    assert {"k", "bic", "bic_gain", "stability_ari", "distinct_attributes", "supported", "distinct",
            "stable", "chosen"} <= set(table.columns)
    assert table.loc[table["chosen"], "k"].tolist() == [selection.k] == [4]
    assert "k=5 was not kept" in selection.reason
    assert selection.needed_distinct >= 2


def test_heatmap_features_include_each_clusters_own_strongest_trait() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [1000, 900, 100])
    n = len(labels)
    # Cluster 2 is small but extreme on six features; cluster 0 differs only, and mildly, on one.
    typed = pd.DataFrame({f"extreme_{i}": rng.normal(size=n) + (labels == 2) * 5 for i in range(6)})
    typed["mild_trait"] = rng.normal(size=n) + (labels == 0) * 1.2
    profiles = profile_clusters(typed, labels)
    overall = profiles.effects.assign(a=profiles.effects["smd"].abs()).groupby("column")["a"].max()
    assert "mild_trait" not in overall.sort_values(ascending=False).index[:4]  # the old pick missed it
    matrix = profiles.smd_matrix(top=4)
    assert matrix.shape[1] == 4
    assert any("mild_trait" in feature for feature in matrix.columns)
