"""Static matplotlib charts for audience clusters (titled, labelled, offline-friendly).

Clusters are labelled with their one name (`cluster_names`), which comes from attribute values
Customer.io holds: every label passes through `markup.plain_label`, so a `$` or markup in a value
stays text (no mathtext, no crash).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

from cio_mavera.jobs.audiences.clustering import KMeansSelection
from cio_mavera.jobs.audiences.model_selection import Selection
from cio_mavera.jobs.audiences.profiles import ClusterProfiles
from cio_mavera.jobs.audiences.uncertainty import share_interval
from cio_mavera.markup import plain_label

# Figures are built without pyplot so a notebook shows each exactly once (as the returned value)
# and nothing leaks between calls in a long-running kernel.
_NAME_CHARS = 45


def _name(cluster: int, names: Mapping[int, str] | None) -> str:
    return plain_label(names[cluster] if names and cluster in names else f"Cluster {cluster + 1}",
                       _NAME_CHARS)


def plot_cluster_sizes(labels: pd.Series | np.ndarray, names: Mapping[int, str] | None = None) -> Figure:
    """Each cluster's share of customers with its 95% interval (the clusters table's numbers)."""
    counts = pd.Series(np.asarray(labels)).value_counts().sort_index()
    total = int(counts.sum())
    shares = counts.to_numpy() / total
    bounds = np.array([share_interval(n, total) for n in counts.to_numpy()])
    fig = Figure(figsize=(8, 1.2 + 0.55 * len(counts)), layout="constrained")
    ax = fig.add_subplot()
    rows = np.arange(len(counts))
    ax.barh(rows, 100 * shares, color=[_colour(int(c)) for c in counts.index])
    ax.errorbar(100 * shares, rows, xerr=100 * np.abs(bounds.T - shares), fmt="none",
                ecolor="#333333", capsize=3, label="95% interval")
    for row, share, n, high in zip(rows, shares, counts.to_numpy(), bounds[:, 1], strict=True):
        ax.annotate(f"{100 * share:.1f}% · {n:,}", (100 * high, row), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(rows, [_name(int(c), names) for c in counts.index], fontsize=8)
    ax.invert_yaxis()  # the largest cluster (number 1) on top, as in the table
    ax.set_xlim(0, 100 * min(1.0, float(bounds[:, 1].max()) * 1.25 + 0.02))
    ax.set_title(f"Share of customers per audience cluster (n = {total:,})")
    ax.set_xlabel("Share of customers (%), with its 95% interval")
    ax.set_ylabel("Audience cluster")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_projection(
    X: np.ndarray, labels: pd.Series | np.ndarray, *, names: Mapping[int, str] | None = None,
    max_points: int = 5000, seed: int = 0,
) -> Figure:
    """Return a 2-D PCA scatter of the feature matrix, coloured by cluster (sampled to max_points)."""
    labels = np.asarray(labels)
    idx = np.arange(len(X))
    if len(X) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(len(X), size=max_points, replace=False))
    pca = PCA(n_components=2, random_state=seed)
    xy = pca.fit_transform(np.asarray(X, dtype=np.float64)[idx])
    var = pca.explained_variance_ratio_
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    for c in np.unique(labels[idx]):
        m = labels[idx] == c
        ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.5, color=_colour(int(c)),
                   label=_name(int(c), names))
    ax.legend(markerscale=3, fontsize=8, loc="best")
    shown = f"{len(idx):,} of {len(X):,} customers" if len(idx) < len(X) else f"{len(X):,} customers"
    ax.set_title(f"Audience clusters, 2-D PCA projection ({shown})")
    ax.set_xlabel(f"PC1 ({var[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({var[1]:.0%} of variance)")
    return fig


def plot_profile_heatmap(profiles: ClusterProfiles, *, names: Mapping[int, str] | None = None,
                         top: int = 12) -> Figure:
    """Return a clusters x features heatmap of standardized mean differences vs all customers."""
    mat = profiles.smd_matrix(top=top)
    values = mat.to_numpy(dtype=float)
    lim = max(1.0, float(np.nanmax(np.abs(values))) if values.size else 1.0)
    fig = Figure(figsize=(max(7, 0.6 * mat.shape[1] + 4), 0.5 * mat.shape[0] + 3.2),
                 layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(values, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(mat.shape[1]), [plain_label(c, 40) for c in mat.columns], rotation=45,
                  ha="right", fontsize=8)
    ax.set_yticks(range(mat.shape[0]), [_name(int(c), names) for c in mat.index], fontsize=8)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if not np.isnan(values[i, j]):
                dark = abs(values[i, j]) > 0.6 * lim
                ax.text(j, i, f"{values[i, j]:+.1f}", ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
    fig.colorbar(im, ax=ax, label="Standardized difference vs all customers (SD units)")
    ax.set_title("What sets each cluster apart (top features)")
    ax.set_xlabel("Feature (category levels as attribute=value)")
    ax.set_ylabel("Audience cluster")
    return fig


def plot_model_selection(selection: Selection | KMeansSelection) -> Figure:
    """BIC (left axis) and resampling stability (right axis) for every candidate k."""
    table = selection.table
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.add_subplot()
    if "silhouette" in table:
        ax.errorbar(table["k"], table["silhouette"], yerr=table["silhouette_std"], marker="o",
                    color="#4477AA", label="Mean silhouette (± SD over resamples)")
        ax.set_ylabel("Mean silhouette (−1 to 1, higher = better separated)")
    else:
        ax.plot(table["k"], table["bic"], marker="o", color="#4477AA", label="BIC (lower = better fit)")
        failed = table[~table["distinct"]]
        ax.scatter(failed["k"], failed["bic"], marker="x", s=80, color="#CCBB44", zorder=3,
                   label="Two clusters differ on too few attributes")
        ax.set_ylabel("BIC of the mixture model (lower = better)")
    label = (f"Chosen k = {selection.k}" if selection.k > 1 else
             "No clear structure: one audience")
    ax.axvline(selection.k, color="#228833", linestyle="--", label=label)
    ax.set_xlabel("Number of clusters k")
    ax.set_xticks(list(table["k"]))
    right = ax.twinx()
    right.plot(table["k"], table["stability_ari"], marker="s", color="#EE6677",
               label="Stability across resamples (ARI)")
    right.set_ylabel("Stability (adjusted Rand index, 0 to 1)")
    right.set_ylim(0, 1.05)
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="center right")
    ax.set_title("Choosing the number of audience clusters")
    return fig


def _colour(cluster: int) -> str:
    palette = ["#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB",
               "#000000", "#EE7733", "#009988"]
    return palette[cluster % len(palette)]
