"""The spread between messages: a logit-normal random-effects model, its predictive test and shrinkage.

Model, for one rate: message j's true logit rate is theta_j = mu_c + u_j, with mu_c its channel's
typical logit rate and u_j ~ Normal(0, tau^2) the between-message spread (tau is shared by the
channels that are pooled; see `underperformers`). Its observed logit rate y_j is theta_j plus
sampling noise of variance v_j (binomial, inflated by its own day-to-day over-dispersion).

- `fit_spread`: Paule-Mandel estimate of tau^2 (the value at which the generalised Q statistic
  equals its degrees of freedom) with one mean per channel; the same estimator statsmodels'
  `combine_effects(method_re="iterated")` uses for one group.
  With `truncated_at=c` it fits messages that were kept because they lie within c standard
  deviations of their channel: the Q statistic then matches its expectation under a normal
  truncated at c, so leaving far-out messages aside does not shrink the spread.
- `pool_spreads`: each rate's spread borrows from the other rates' as much as they agree (an
  empirical-Bayes meta-analysis of log tau^2 across rates), which steadies a spread estimated
  from a few dozen messages.
- `channel_means`: the channels' typical logit rates (and standard errors) for a given tau^2.
- `predictive_p_values`: how surprising a message's count is for a typical message of its channel
  with the same trials: the binomial mixed over theta = mu + scale * T_df (Student t with the
  spread estimate's degrees of freedom, so few messages give honest, heavy tails).
- `shrink`: the empirical-Bayes (normal-normal) estimate of a message's true rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

__all__ = ["PooledSpread", "SpreadFit", "channel_means", "expit", "fit_spread", "logit_rate", "logit_variance",
           "pool_spreads", "predictive_p_values", "shrink", "standardised_residuals",
           "truncated_second_moment"]

# Integration grid for the predictive mixture, in x = logit(u) where u is the t distribution's
# cumulative probability: dense where the t tails matter, exact to ~1e-13 in the far tails.
_X = np.linspace(-30.0, 30.0, 601)
_U = special.expit(_X)
_WEIGHTS = _U * (1 - _U) * (_X[1] - _X[0])
_WEIGHTS[[0, -1]] /= 2
@dataclass(frozen=True)
class SpreadFit:
    """A random-effects fit: typical logit rate (and its standard error) per channel, common tau^2."""

    typical: dict[Any, float]
    typical_se: dict[Any, float]
    tau2: float
    df: int  # messages - channels: the degrees of freedom behind tau^2
    messages: int

    @property
    def tau(self) -> float:
        return float(np.sqrt(self.tau2))


def logit_rate(successes: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """Empirical logit with the half-count correction, finite for 0 and all successes."""
    s, n = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    return np.log((s + 0.5) / (n - s + 0.5))


def logit_variance(successes: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """Binomial sampling variance of `logit_rate`: 1 / (s + 1/2) + 1 / (n - s + 1/2)."""
    s, n = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    return 1.0 / (s + 0.5) + 1.0 / (n - s + 0.5)


def expit(x: np.ndarray | float) -> np.ndarray:
    """Inverse logit."""
    return special.expit(x)


def truncated_second_moment(c: float | None) -> float:
    """E[Z^2 | |Z| < c] for a standard normal Z (1 without truncation)."""
    if c is None or not np.isfinite(c):
        return 1.0
    inside = 2 * stats.norm.cdf(c) - 1
    return float(1 - 2 * c * stats.norm.pdf(c) / inside)


def fit_spread(y: np.ndarray, v: np.ndarray, channels: Sequence[Any],
               truncated_at: float | None = None) -> SpreadFit | None:
    """Paule-Mandel fit of a common between-message variance with one mean per channel.

    `truncated_at`: the messages given were kept for lying within that many standard deviations
    of their channel, so Q is matched to (k - g) E[Z^2 | |Z| < c] instead of k - g.
    None when there are no more messages than channels (no spread can be estimated).
    """
    y, v = np.asarray(y, dtype=float), np.asarray(v, dtype=float)
    codes, names = pd.factorize(pd.Series(list(channels), dtype=object))
    k, g = len(y), len(names)
    if k - g < 1:
        return None

    def generalised_q(tau2: float) -> float:
        w = 1.0 / (v + tau2)
        mean = np.bincount(codes, w * y, g) / np.bincount(codes, w, g)
        return float(np.sum(w * (y - mean[codes]) ** 2))

    target = (k - g) * truncated_second_moment(truncated_at)
    if generalised_q(0.0) <= target:
        tau2 = 0.0
    else:
        high = max(float(np.var(y)), 1e-6)
        while generalised_q(high) > target:  # Q falls towards 0 as tau^2 grows
            high *= 4.0
        tau2 = float(optimize.brentq(lambda t: generalised_q(t) - target, 0.0, high, xtol=1e-12))
    w = 1.0 / (v + tau2)
    weight = np.bincount(codes, w, g)
    mean = np.bincount(codes, w * y, g) / weight
    return SpreadFit(typical={n: float(m) for n, m in zip(names, mean, strict=True)},
                     typical_se={n: float(s) for n, s in zip(names, np.sqrt(1.0 / weight), strict=True)},
                     tau2=tau2, df=k - g, messages=k)


def channel_means(y: np.ndarray, v: np.ndarray, channels: Sequence[Any],
                  tau2: float) -> tuple[dict[Any, float], dict[Any, float]]:
    """Each channel's precision-weighted mean logit rate and its standard error, for this tau^2."""
    y, v = np.asarray(y, dtype=float), np.asarray(v, dtype=float)
    codes, names = pd.factorize(pd.Series(list(channels), dtype=object))
    w = 1.0 / (v + tau2)
    weight = np.bincount(codes, w, len(names))
    mean = np.bincount(codes, w * y, len(names)) / weight
    return ({n: float(m) for n, m in zip(names, mean, strict=True)},
            {n: float(s) for n, s in zip(names, np.sqrt(1.0 / weight), strict=True)})


@dataclass(frozen=True)
class PooledSpread:
    """How one rate's spread is pooled with the other rates': log tau^2 = own * log(own estimate)
    + (1 - own) * centre, known as well as `df` degrees of freedom."""

    own: float
    centre: float
    df: float
    rates_spread: float  # SD of log tau^2 between rates (0: the rates share one spread)

    def tau2(self, estimate: float) -> float:
        """The pooled tau^2 for this rate's own `estimate`."""
        return float(np.exp(self.own * np.log(max(estimate, _TAU2_FLOOR)) + (1 - self.own) * self.centre))


# Spreads below this (a logit SD of 0.01, i.e. messages within ~1% of each other) count as none.
_TAU2_FLOOR = 1e-4


def pool_spreads(tau2: np.ndarray, df: np.ndarray, v_mean: np.ndarray) -> list[PooledSpread]:
    """Partial pooling of several rates' spread estimates (random-effects meta-analysis of log tau^2).

    Each estimate is treated as log tau2_r ~ Normal(log true tau2_r, 2 (1 + v_r / tau2_r)^2 / df_r)
    (the chi-square law of a variance estimate, widened where sampling noise v_r rivals the spread),
    and the true log spreads as Normal(centre, omega^2) across rates. Rates that agree pool fully;
    a rate whose spread is clearly its own keeps it. df is the pooled estimate's equivalent degrees
    of freedom, 2 / its posterior variance.
    """
    tau2 = np.maximum(np.asarray(tau2, dtype=float), _TAU2_FLOOR)
    df = np.maximum(np.asarray(df, dtype=float), 1.0)
    variance = 2.0 * (1.0 + np.asarray(v_mean, dtype=float) / tau2) ** 2 / df
    y = np.log(tau2)
    if len(y) < 2:
        return [PooledSpread(1.0, float(y[0]), float(df[0]), 0.0) for _ in y]
    fit = fit_spread(y, variance, ["rates"] * len(y))
    assert fit is not None
    centre, omega2 = fit.typical["rates"], fit.tau2
    out = []
    for own_variance, own_df in zip(variance, df, strict=True):
        if omega2 <= 0:
            own, posterior = 0.0, fit.typical_se["rates"] ** 2
        else:
            own = (1 / own_variance) / (1 / own_variance + 1 / omega2)
            posterior = 1 / (1 / own_variance + 1 / (omega2 + fit.typical_se["rates"] ** 2))
        out.append(PooledSpread(own, centre, max(float(own_df), 2.0 / posterior), float(np.sqrt(omega2))))
    return out


def standardised_residuals(y: np.ndarray, v: np.ndarray, channels: Sequence[Any], fit: SpreadFit,
                           in_fit: np.ndarray) -> np.ndarray:
    """(y - mu_c) / its standard deviation under `fit`; NaN for a channel the fit does not know.

    A message in the fit pulled mu_c towards itself (variance tau^2 + v - se^2); one outside it
    adds the uncertainty of mu_c (tau^2 + v + se^2).
    """
    y, v = np.asarray(y, dtype=float), np.asarray(v, dtype=float)
    mean = np.array([fit.typical.get(c, np.nan) for c in channels])
    se2 = np.array([fit.typical_se.get(c, np.nan) ** 2 for c in channels])
    variance = v + fit.tau2 + np.where(in_fit, -se2, se2)
    return (y - mean) / np.sqrt(np.maximum(variance, 1e-12))


def predictive_p_values(successes: np.ndarray, trials: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                        df: np.ndarray, lower_is_worse: np.ndarray) -> np.ndarray:
    """P(a typical message with these trials has this many successes or a worse count).

    The typical message's logit rate is mean + scale * T_df; given it, successes are binomial with
    these trials. One-sided in the worse direction (fewer successes when lower is worse).
    """
    s = np.asarray(successes, dtype=np.int64)
    n = np.asarray(trials, dtype=np.int64)
    mean, scale = np.asarray(mean, dtype=float), np.asarray(scale, dtype=float)
    df, lower = np.asarray(df, dtype=float), np.asarray(lower_is_worse, dtype=bool)
    out = np.full(len(s), np.nan)
    for value in np.unique(df):
        rows = np.flatnonzero(df == value)
        quantiles = stats.t.ppf(_U, value) if np.isfinite(value) else stats.norm.ppf(_U)
        p = special.expit(mean[rows, None] + scale[rows, None] * quantiles[None, :])
        k, trials_ = s[rows, None], n[rows, None]
        tail = np.where(lower[rows, None], special.bdtr(k, trials_, p), special.bdtrc(k - 1, trials_, p))
        out[rows] = tail @ _WEIGHTS
    return np.clip(out, 0.0, 1.0)


def shrink(y: np.ndarray, v: np.ndarray, mean: np.ndarray, tau2: np.ndarray,
           mean_se: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical-Bayes posterior mean and SD of each true logit rate (normal prior N(mean, tau2)).

    The weight on the channel is B = v / (v + tau2): a noisy message moves far towards its
    channel, a precise one hardly moves. The SD adds the uncertainty of the channel's mean, B^2 se^2.
    """
    y, v, mean = np.asarray(y, float), np.asarray(v, float), np.asarray(mean, float)
    tau2, mean_se = np.asarray(tau2, float), np.asarray(mean_se, float)
    pull = v / (v + tau2)
    posterior = y - pull * (y - mean)
    sd = np.sqrt((1 - pull) * v + pull ** 2 * mean_se ** 2)
    return posterior, sd
