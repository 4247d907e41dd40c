"""Job 3's null model: what a window's opt-outs should be, given its source, audience and time.

The expected count of a cell (one source's deliveries to one audience, or to everyone, in one
window) is its exposure times the source's rate, estimated from everything else the source sent
(other windows, and other audiences in the same window), with three kinds of variation around it:

1. sources differ (campaign A's audience always opts out three times more than campaign B's):
   a source's rate is drawn from a gamma distribution around its channel's rate, with a
   coefficient of variation estimated across the channel's sources (`heterogeneity`, maximum
   likelihood of the gamma-Poisson, never below `SOURCE_CV_FLOOR`);
2. audiences within a source differ (`audience_heterogeneity`, never below `AUDIENCE_CV_FLOOR`);
3. a source's rate wobbles from window to window beyond Poisson noise (`overdispersion`, a
   moment estimate on daily cells, never below `DAY_CV_FLOOR` squared).

The floors are assumptions, stated because a few thousand events cannot show less variation than
real workspaces have: with so little data the estimate is often "no variation at all", and trusting
that would judge a steadily high campaign against its channel's rate. Where the data shows more,
the data's estimate is used; every estimate is reported with its interval or test.

The window's count is then compared with the gamma-Poisson (negative binomial) predictive
distribution whose mean is the expected count and whose extra variance adds up the uncertainty of
the source's estimated rate and the three variations; the p-value is its upper tail.

Which windows are tested: with counts this small most cells could not reach significance even if
every event of their series fell into them; Tarone's filter (as in Gilbert's discrete FDR
procedure) leaves those out of the multiple-testing count, then Benjamini-Hochberg runs over the
rest. The filter only looks at a series' total count, never at where in time its events fall.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import special, stats
from statsmodels.stats.multitest import multipletests

__all__ = [
    "AUDIENCE_CV_FLOOR", "DAY_CV_FLOOR", "SOURCE_CV_FLOOR", "Dispersion", "Heterogeneity",
    "audience_heterogeneity", "benjamini_hochberg", "discrete_bh", "heterogeneity", "nb_upper_tail",
    "overdispersion", "predictive", "trigger_level_bh",
]

# Assumed minimum variation (see the module docstring): campaigns' rates spread with a CV of at least 1
# (a gamma with CV 1 gives one campaign in twenty three times its channel's typical rate and one in 150
# five times, as real workspaces have), audiences within a campaign by 30%, a campaign's days by 20%.
SOURCE_CV_FLOOR = 1.0
AUDIENCE_CV_FLOOR = 0.3
DAY_CV_FLOOR = 0.2
SHOWN_ALPHA = 0.05  # an estimate above its floor is used only when its test shows the variation at 5%


@dataclass(frozen=True)
class Heterogeneity:
    """How much the rates of a channel's sources differ: gamma shape `kappa` (CV = 1/sqrt(kappa))."""

    rate: float  # the channel's typical rate per exposure (the gamma's mean)
    cv: float  # estimated coefficient of variation between sources (0 = none seen)
    cv_low: float  # 95% profile-likelihood interval of the CV (0, inf when not computed)
    cv_high: float
    p_value: float  # likelihood-ratio test of "no variation" (boundary: half chi-square 1)
    sources: int
    events: int
    cv_used: float  # max(cv, floor) when the test shows it at SHOWN_ALPHA, else the floor

    @property
    def kappa(self) -> float:
        """The gamma shape the tests use."""
        return 1.0 / self.cv_used ** 2

    def to_dict(self) -> dict[str, float]:
        """JSON-ready."""
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Dispersion:
    """Window-to-window variation beyond Poisson: Var(K) = E + phi * E^2."""

    phi: float  # moment estimate (0 when the data show none)
    se: float  # its standard error (regression form of Cameron and Trivedi's test)
    p_value: float  # one-sided test of phi > 0
    cells: int
    phi_used: float  # max(phi, floor^2) when the test shows it at SHOWN_ALPHA, else floor^2

    def to_dict(self) -> dict[str, float]:
        """JSON-ready."""
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


_GRID = np.linspace(np.log(0.05), np.log(1e5), 61)  # log gamma shape: CV from 4.5 down to 0.003
_RATE_GRID = np.linspace(-3.0, 3.0, 61)  # log mean rate around the pooled one
_CHI2_95 = float(stats.chi2.ppf(0.95, 1))


def _loglik_surface(counts: np.ndarray, exposures: np.ndarray, pooled: float) -> np.ndarray:
    """Gamma-Poisson log-likelihood on the (log shape, log rate) grid, shape (len(_GRID), len(_RATE_GRID))."""
    kappa = np.exp(_GRID)[:, None, None]
    means = (pooled * np.exp(_RATE_GRID))[None, :, None] * exposures[None, None, :]
    k = counts[None, None, :]
    terms = (special.gammaln(k + kappa) - special.gammaln(kappa) - special.gammaln(k + 1)
             + kappa * np.log(kappa / (kappa + means)) + k * np.log(means / (kappa + means)))
    return terms.sum(axis=2)


def heterogeneity(counts: np.ndarray, exposures: np.ndarray, floor: float | None = None) -> Heterogeneity:
    """Gamma-Poisson fit of `counts` events in `exposures` across sources (maximum likelihood on a grid).

    Assumes each source's count is Poisson given its rate and the rates are gamma around one mean.
    The mean is that of the sources' rates, not the pooled rate, so one busy source with a high rate
    does not pass for the typical one. The CV's 95% interval is where the profile likelihood stays
    within the chi-square(1) bound; "no variation" is tested by the likelihood ratio against the
    Poisson fit (a boundary test: half a chi-square(1)).
    """
    floor = SOURCE_CV_FLOOR if floor is None else floor
    counts = np.asarray(counts, dtype=float)
    exposures = np.asarray(exposures, dtype=float)
    keep = exposures > 0
    counts, exposures = counts[keep], exposures[keep]
    total, exposure = counts.sum(), exposures.sum()
    pooled = (total + 0.5) / (exposure + 1.0)  # Jeffreys-style: strictly positive for a quiet channel
    if len(counts) < 2 or total == 0:
        return Heterogeneity(pooled, 0.0, 0.0, np.inf, 1.0, int(len(counts)), int(total), floor)
    surface = _loglik_surface(counts, exposures, pooled)
    profile = surface.max(axis=1)
    i, j = np.unravel_index(int(np.argmax(surface)), surface.shape)
    best = float(surface[i, j])
    poisson = float(np.sum(stats.poisson.logpmf(counts, pooled * exposures)))
    lr = max(0.0, 2 * (best - max(poisson, float(profile[-1]))))
    p_value = float(0.5 * stats.chi2.sf(lr, 1)) if lr > 1e-9 else 1.0
    cv = float(np.exp(-_GRID[i] / 2)) if lr > 1e-9 else 0.0
    rate = float(pooled * np.exp(_RATE_GRID[j])) if lr > 1e-9 else pooled
    inside = _GRID[2 * (best - profile) <= _CHI2_95]
    cv_low = 0.0 if inside.max() >= _GRID[-1] - 1e-9 else float(np.exp(-inside.max() / 2))
    cv_high = float(np.exp(-inside.min() / 2))
    used = max(cv, floor) if p_value < SHOWN_ALPHA else floor
    return Heterogeneity(rate, cv, cv_low, cv_high, p_value, int(len(counts)), int(total), used)


def audience_heterogeneity(counts: np.ndarray, expected: np.ndarray, floor: float | None = None) -> Dispersion:
    """How much audiences within a source differ: the same test as `overdispersion`, on (source, audience) cells.

    `expected` is each cell's exposure times its source's rate; Var(K) = E + cv^2 E^2 is assumed, so
    `phi` is the squared CV.
    """
    return overdispersion(counts, expected, AUDIENCE_CV_FLOOR if floor is None else floor)


def overdispersion(counts: np.ndarray, expected: np.ndarray, floor: float | None = None) -> Dispersion:
    """phi in Var(K) = E + phi E^2 over daily cells, with a one-sided test of phi > 0.

    The auxiliary regression of ((K - E)^2 - K) / E on E without intercept (Cameron and Trivedi):
    its slope is phi, its t statistic the test. Assumes the cells' expectations are right on average.
    """
    floor = DAY_CV_FLOOR if floor is None else floor
    counts, expected = np.asarray(counts, float), np.asarray(expected, float)
    keep = expected > 0
    counts, expected = counts[keep], expected[keep]
    if len(counts) < 3 or np.sum(expected ** 2) <= 0:
        return Dispersion(0.0, np.inf, 1.0, int(len(counts)), floor ** 2)
    y = ((counts - expected) ** 2 - counts) / expected
    slope = float(np.sum(y * expected) / np.sum(expected ** 2))
    residual = y - slope * expected
    se = float(np.sqrt(np.sum(residual ** 2) / max(1, len(y) - 1) / np.sum(expected ** 2)))
    p_value = float(stats.norm.sf(slope / se)) if se > 0 else (0.0 if slope > 0 else 1.0)
    phi = max(0.0, slope)
    used = max(phi, floor ** 2) if p_value < SHOWN_ALPHA else floor ** 2
    return Dispersion(phi, se, p_value, int(len(counts)), used)


def predictive(exposure: np.ndarray, rest_count: np.ndarray, rest_exposure: np.ndarray, prior_rate: np.ndarray,
               kappa: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """(expected count, variance of that expectation) of a cell from its source's rest.

    The source's rate ~ Gamma(kappa + rest_count, kappa / prior_rate + rest_exposure): its prior is
    the channel's rate with the sources' spread, updated by what the source did elsewhere.
    """
    shape = kappa + np.asarray(rest_count, float)
    rate = kappa / np.asarray(prior_rate, float) + np.asarray(rest_exposure, float)
    exposure = np.asarray(exposure, float)
    return exposure * shape / rate, exposure ** 2 * shape / rate ** 2


def nb_upper_tail(count: np.ndarray, mean: np.ndarray, extra_variance: np.ndarray) -> np.ndarray:
    """P(K >= count) for K gamma-Poisson with this mean and variance mean + extra_variance."""
    count = np.asarray(count, float)
    mean = np.maximum(np.asarray(mean, float), 1e-12)
    extra = np.maximum(np.asarray(extra_variance, float), 1e-12 * mean ** 2)
    size = mean ** 2 / extra
    # Beyond a million the gamma mixing is numerically nothing: the Poisson tail, computed exactly.
    p = np.where(size > 1e6, stats.poisson.sf(count - 1, mean),
                 stats.nbinom.sf(count - 1, np.minimum(size, 1e6), size / (size + mean)))
    return np.where(count <= 0, 1.0, np.clip(p, 0.0, 1.0))


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (same order; empty in, empty out)."""
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return p
    return multipletests(p, method="fdr_bh")[1]


def discrete_bh(p_values: np.ndarray, p_min: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(adjusted p-values, testable) by Tarone's filter then Benjamini-Hochberg (Gilbert 2005).

    `p_min` is the smallest p-value each test could give at its series' total count. The filter
    keeps the tests with p_min <= alpha / m for the smallest m that holds at most m of them; the
    others cannot be significant and get adjusted p-value 1.
    """
    p, floor = np.asarray(p_values, float), np.asarray(p_min, float)
    n = len(p)
    if n == 0:
        return p, np.zeros(0, bool)
    ordered = np.sort(floor)
    m = n
    for k in range(1, n + 1):
        if np.searchsorted(ordered, alpha / k, side="right") <= k:
            m = k
            break
    testable = floor <= alpha / m
    adjusted = np.ones(n)
    if testable.any():
        adjusted[testable] = benjamini_hochberg(p[testable])
    return adjusted, testable


def trigger_level_bh(p_values: np.ndarray, m: int, keys: np.ndarray, starts: np.ndarray, ends: np.ndarray
                     ) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values where a discovery is a trigger, not a window.

    Overlapping windows of one key are one finding, so counting each as a discovery would let a
    spike's dozen windows relax the threshold for everything else. Here the rejections at a
    threshold t are the triggers the windows with p <= t merge into, R(t), and a window's adjusted
    p-value is min over t >= p of m t / R(t) (step-up, as BH). Never below plain BH: R(t) is at most
    the number of windows. `m` is the number of tests (after Tarone's filter); rows are the
    candidates (testable, with enough events).
    """
    p = np.asarray(p_values, float)
    adjusted = np.ones(len(p))
    if not len(p) or m <= 0:
        return adjusted
    order = np.argsort(p, kind="stable")
    groups: dict[object, list[list[int]]] = {}
    triggers, ratio = 0, np.empty(len(p))
    for rank, i in enumerate(order):
        start, end = int(starts[i]), int(ends[i])
        spans = groups.setdefault(keys[i], [])
        touching = [g for g in spans if g[0] < end and start < g[1]]
        for g in touching:
            spans.remove(g)
        spans.append([min([start, *(g[0] for g in touching)]), max([end, *(g[1] for g in touching)])])
        triggers += 1 - len(touching)
        ratio[rank] = m * p[i] / triggers
    adjusted[order] = np.minimum(np.minimum.accumulate(ratio[::-1])[::-1], 1.0)
    return adjusted

