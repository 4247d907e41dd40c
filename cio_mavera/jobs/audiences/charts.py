"""Static matplotlib charts for audience clusters (titled, labelled, offline-friendly)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

from cio_mavera.jobs.audiences.profiles import ClusterProfiles

# Figures are built without pyplot so a notebook shows each exactly once (as the returned value)
# and nothing leaks between calls in a long-running kernel.


def plot_cluster_sizes(labels: pd.Series | np.ndarray) -> Figure:
    """Return a bar chart of customers per cluster, annotated with each cluster's share."""
    counts = pd.Series(np.asarray(labels)).value_counts().sort_index()
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    names = [f"Cluster {int(c) + 1}" for c in counts.index]
    bars = ax.bar(names, counts.to_numpy(), color=[_colour(int(c)) for c in counts.index])
    total = counts.sum()
    for bar, n in zip(bars, counts.to_numpy(), strict=True):
        ax.annotate(f"{n / total:.0%}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=9)
    ax.set_title(f"Customers per audience cluster (n = {total:,})")
    ax.set_xlabel("Cluster")
    ax.set_ylabel("Customers (count)")
    return fig


def plot_projection(
    X: np.ndarray, labels: pd.Series | np.ndarray, *, max_points: int = 5000, seed: int = 0
) -> Figure:
    """Return a 2-D PCA scatter of the feature matrix, coloured by cluster (sampled to max_points)."""
    labels = np.asarray(labels)
    idx = np.arange(len(X))
    if len(X) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(len(X), size=max_points, replace=False))
    pca = PCA(n_components=2, random_state=seed)
    xy = pca.fit_transform(np.asarray(X, dtype=np.float64)[idx])
    var = pca.explained_variance_ratio_
    fig = Figure(figsize=(7, 5.5), layout="constrained")
    ax = fig.add_subplot()
    for c in np.unique(labels[idx]):
        m = labels[idx] == c
        ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.5, color=_colour(int(c)),
                   label=f"Cluster {int(c) + 1}")
    ax.legend(markerscale=3, fontsize=8, loc="best")
    shown = f"{len(idx):,} of {len(X):,} customers" if len(idx) < len(X) else f"{len(X):,} customers"
    ax.set_title(f"Audience clusters, 2-D PCA projection ({shown})")
    ax.set_xlabel(f"PC1 ({var[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({var[1]:.0%} of variance)")
    return fig


def plot_profile_heatmap(profiles: ClusterProfiles, *, top: int = 12) -> Figure:
    """Return a clusters x features heatmap of standardized mean differences vs all customers."""
    mat = profiles.smd_matrix(top=top)
    values = mat.to_numpy(dtype=float)
    lim = max(1.0, float(np.nanmax(np.abs(values))) if values.size else 1.0)
    fig = Figure(figsize=(max(6, 0.6 * mat.shape[1] + 3), 0.5 * mat.shape[0] + 3),
                 layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(values, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(mat.shape[1]), mat.columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(mat.shape[0]), [f"Cluster {int(c) + 1}" for c in mat.index])
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if not np.isnan(values[i, j]):
                dark = abs(values[i, j]) > 0.6 * lim
                ax.text(j, i, f"{values[i, j]:+.1f}", ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
    fig.colorbar(im, ax=ax, label="Standardized difference vs all customers (SD units)")
    ax.set_title("What sets each cluster apart (top features)")
    ax.set_xlabel("Feature (category levels as column=value)")
    ax.set_ylabel("Cluster")
    return fig


def _colour(cluster: int) -> str:
    palette = ["#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB",
               "#000000", "#EE7733", "#009988"]
    return palette[cluster % len(palette)]
