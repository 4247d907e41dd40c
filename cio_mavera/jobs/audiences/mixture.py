"""A mixture model for mixed attributes with gaps: Gaussian scores and categorical codes per cluster.

Each cluster has, per number, a normal distribution of its scores and, per category, a probability
for every level; attributes are independent given the cluster (a latent class model). A person's
missing attributes are simply left out of their likelihood (assumed missing at random given the
cluster), so nobody is dropped or imputed and a person with only some attribute groups is
assigned by the ones they have. Fitted by EM from k-means starts; BIC compares numbers of clusters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from cio_mavera.errors import InvalidParameter
from cio_mavera.jobs.audiences.mixed_data import MixedData

VARIANCE_FLOOR = 0.02  # in score units (total variance ~1): ties (many zeros) cannot collapse a cluster
_SMOOTHING = 0.5  # Dirichlet pseudo-count per category level, so an unseen level keeps a probability
_CHUNK = 100_000  # rows per block when assigning people


@dataclass(frozen=True)
class Mixture:
    """A fitted mixture: weights, per-cluster score means and variances, per-cluster level probabilities."""

    weights: np.ndarray  # (k,)
    means: np.ndarray  # (k, p)
    variances: np.ndarray  # (k, p)
    log_levels: list[np.ndarray]  # per categorical attribute: (k, levels) log probabilities
    log_likelihood: float
    n: int  # people it was fitted on
    seen: np.ndarray  # (k, attributes): people (posterior-weighted) with a value, numbers then categories

    @property
    def k(self) -> int:
        """Number of clusters."""
        return len(self.weights)

    @property
    def parameters(self) -> int:
        """Free parameters (for BIC)."""
        p = self.means.shape[1]
        levels = sum(t.shape[1] - 1 for t in self.log_levels)
        return (self.k - 1) + self.k * (2 * p + levels)

    @property
    def bic(self) -> float:
        """Bayesian information criterion (lower is better)."""
        return -2.0 * self.log_likelihood + self.parameters * np.log(self.n)

    def joint_log(self, data: MixedData) -> np.ndarray:
        """(n, k) log of weight x likelihood of each person's present attributes under each cluster."""
        out = np.empty((data.n, self.k))
        for start in range(0, data.n, _CHUNK):
            rows = slice(start, start + _CHUNK)
            out[rows] = _joint_log(data.numbers[rows], data.codes[rows], self)
        return out

    def posterior(self, data: MixedData) -> np.ndarray:
        """(n, k) probability that each person belongs to each cluster."""
        joint = self.joint_log(data)
        return np.exp(joint - _logsumexp(joint)[:, None])

    def predict(self, data: MixedData) -> np.ndarray:
        """The most probable cluster of each person."""
        return self.joint_log(data).argmax(axis=1)


def fit_mixture(data: MixedData, k: int, *, seed: int = 0, starts: int = 3, max_iter: int = 300,
                tol: float = 1e-6, start_labels: np.ndarray | None = None) -> Mixture:
    """The best of `starts` EM runs (each from a k-means partition, or from `start_labels`)."""
    if k < 1 or k > data.n:
        raise InvalidParameter(f"k must be between 1 and the number of people ({data.n}), got {k}")
    if start_labels is not None:
        partitions = [np.asarray(start_labels)]
    else:
        partitions = _kmeans_starts(data, k, seed, starts)
    best: Mixture | None = None
    for labels in partitions:
        responsibilities = np.full((data.n, k), 0.1 / max(k - 1, 1))
        responsibilities[np.arange(data.n), labels] = 0.9 if k > 1 else 1.0
        model = _em(data, responsibilities, max_iter, tol)
        if best is None or model.log_likelihood > best.log_likelihood:
            best = model
    return best


def one_correlated_group_bic(data: MixedData) -> float:
    """BIC of "no clusters, just correlated numbers": one Gaussian with a full covariance of the
    scores (each person's missing ones marginalised out) and independent categories.

    Cluster structure must beat this, or a split of one correlated cloud (bigger accounts have
    more seats, log in more and pay more) would pass for audiences.
    """
    scores = data.numbers.astype(np.float64)
    present = ~np.isnan(scores)
    means = np.nanmean(scores, axis=0) if scores.shape[1] else np.zeros(0)
    covariance = _pairwise_covariance(scores, present, means)
    log_likelihood = 0.0
    patterns, which = np.unique(present, axis=0, return_inverse=True)
    for i, pattern in enumerate(patterns):
        observed = np.flatnonzero(pattern)
        if not len(observed):
            continue
        rows = np.flatnonzero(which.ravel() == i)
        centred = scores[np.ix_(rows, observed)] - means[observed]
        factor = np.linalg.cholesky(covariance[np.ix_(observed, observed)])
        solved = np.linalg.solve(factor, centred.T)
        log_likelihood -= 0.5 * ((solved**2).sum() + len(rows) * (
            2 * np.log(np.diag(factor)).sum() + len(observed) * np.log(2 * np.pi)))
    levels = 0
    for j, names in enumerate(data.levels):
        codes = data.codes[:, j]
        counts = np.bincount(codes[codes >= 0], minlength=len(names)) + _SMOOTHING
        log_likelihood += float((np.log(counts / counts.sum())[codes[codes >= 0]]).sum())
        levels += len(names) - 1
    p = scores.shape[1]
    parameters = p + p * (p + 1) // 2 + levels
    return -2.0 * log_likelihood + parameters * np.log(data.n)


def _pairwise_covariance(scores: np.ndarray, present: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Covariance from pairwise-complete products, nudged to be positive definite."""
    centred = np.where(present, scores - means, 0.0)
    both = present.astype(np.float64).T @ present.astype(np.float64)
    covariance = (centred.T @ centred) / np.maximum(both - 1, 1)
    values, vectors = np.linalg.eigh((covariance + covariance.T) / 2)
    return (vectors * np.maximum(values, VARIANCE_FLOOR)) @ vectors.T


def _kmeans_starts(data: MixedData, k: int, seed: int, starts: int) -> list[np.ndarray]:
    if k == 1:
        return [np.zeros(data.n, dtype=np.int64)]
    X = data.embedding()
    # Sample-sized fits are fastest on one thread, and OpenMP spin-waiting on a busy machine
    # otherwise makes them much slower.
    with threadpool_limits(limits=1, user_api="openmp"):
        return [KMeans(n_clusters=k, n_init=1, random_state=seed + s).fit_predict(X)
                for s in range(max(1, starts))]


def _em(data: MixedData, responsibilities: np.ndarray, max_iter: int, tol: float) -> Mixture:
    observed = ~np.isnan(data.numbers)
    scores = np.where(observed, data.numbers, 0.0).astype(np.float64)
    observed = observed.astype(np.float64)
    onehot, bounds = _onehot(data)
    previous = -np.inf
    model = _m_step(scores, observed, onehot, bounds, responsibilities)
    for _ in range(max_iter):
        joint = _joint_dense(scores, observed, onehot, model)
        per_person = _logsumexp(joint)
        total = float(per_person.sum())
        model = _m_step(scores, observed, onehot, bounds, np.exp(joint - per_person[:, None]), total)
        if total - previous <= tol * abs(total):
            break
        previous = total
    return model


def _onehot(data: MixedData) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(n, all levels) 0/1 matrix of the category codes (a missing code is a row of zeros), and each
    attribute's column range."""
    sizes = [len(levels) for levels in data.levels]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    onehot = np.zeros((data.n, int(starts[-1])))
    for j in range(len(sizes)):
        present = np.flatnonzero(data.codes[:, j] >= 0)
        onehot[present, starts[j] + data.codes[present, j]] = 1.0
    return onehot, [(int(starts[j]), int(starts[j + 1])) for j in range(len(sizes))]


def _m_step(scores: np.ndarray, observed: np.ndarray, onehot: np.ndarray,
            bounds: list[tuple[int, int]], resp: np.ndarray, log_likelihood: float = -np.inf) -> Mixture:
    sizes = resp.sum(axis=0) + 1e-12
    seen = resp.T @ observed + 1e-12
    means = (resp.T @ scores) / seen
    variances = np.maximum((resp.T @ scores**2) / seen - means**2, VARIANCE_FLOOR)
    counts = resp.T @ onehot
    smoothed = counts + _SMOOTHING
    log_levels = [np.log(smoothed[:, a:b] / smoothed[:, a:b].sum(axis=1, keepdims=True)) for a, b in bounds]
    seen_levels = [counts[:, a:b].sum(axis=1) for a, b in bounds]
    return Mixture(sizes / sizes.sum(), means, variances, log_levels, log_likelihood, len(resp),
                   np.column_stack([seen, *seen_levels]) if seen_levels else seen)


def _numbers_log(scores: np.ndarray, observed: np.ndarray, model: Mixture) -> np.ndarray:
    precision = 1.0 / model.variances
    return -0.5 * ((scores**2) @ precision.T - 2.0 * scores @ (model.means * precision).T
                   + observed @ (model.means**2 * precision + np.log(2 * np.pi * model.variances)).T)


def _joint_dense(scores: np.ndarray, observed: np.ndarray, onehot: np.ndarray, model: Mixture) -> np.ndarray:
    levels = np.concatenate(model.log_levels, axis=1) if model.log_levels else np.zeros((model.k, 0))
    return _numbers_log(scores, observed, model) + onehot @ levels.T + np.log(model.weights)


def _joint_log(numbers: np.ndarray, codes: np.ndarray, model: Mixture) -> np.ndarray:
    """Like `_joint_dense`, gathering level probabilities by code (no one-hot matrix for big frames)."""
    present = ~np.isnan(numbers)
    joint = _numbers_log(np.where(present, numbers, 0.0).astype(np.float64), present.astype(np.float64),
                         model)
    for j, log_levels in enumerate(model.log_levels):
        with_missing = np.concatenate([log_levels, np.zeros((model.k, 1))], axis=1)  # -1 adds 0
        joint += with_missing[:, codes[:, j]].T
    return joint + np.log(model.weights)


def _logsumexp(joint: np.ndarray) -> np.ndarray:
    top = joint.max(axis=1)
    return top + np.log(np.exp(joint - top[:, None]).sum(axis=1))
