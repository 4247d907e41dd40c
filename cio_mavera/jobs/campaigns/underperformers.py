"""Which messages are outliers below their channel: a predictive test against the spread of messages.

An underperformer is a message whose rate is worse than what a *typical message of its channel*
would show, not merely worse than the pooled rest: in real workspaces messages differ (content,
audience, send time), so a test against the pooled rate calls half of them "significant". For every
applicable rate, per message (the assumptions are listed in `ASSUMPTIONS` and checked on the data):

1. Observed logit rate and its sampling variance: binomial, plus the message's own day-to-day
   over-dispersion (`dispersion.day_dispersion`).
2. Channel model from the *other* messages (leave-one-out): typical logit rate per channel and the
   between-message spread tau (`spread.fit_spread`). Channels share tau (on the logit scale) unless
   the data says a channel's messages spread differently (then it gets its own); messages that are
   themselves clear outliers are left out of every other message's channel model (iterated).
3. Predictive p-value: how likely a typical message of the channel, with the same trials and
   over-dispersion, would show this count or a worse one (binomial mixed over a Student-t spread
   with the spread estimate's degrees of freedom: few messages give honestly heavy tails).
4. Benjamini-Hochberg across every test performed (delivery and bounce rate are one test); a
   flag also needs a material shortfall against the channel's typical rate (`min_relative_drop`).

Each message also gets its shrunken (empirical-Bayes) rate with a 95% interval, and each channel
its typical rate, spread and the range a typical message falls in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.multitest import multipletests

from cio_mavera.jobs.campaigns.spread import (
    PooledSpread,
    SpreadFit,
    channel_means,
    expit,
    fit_spread,
    logit_rate,
    logit_variance,
    pool_spreads,
    predictive_p_values,
    shrink,
    standardised_residuals,
    truncated_second_moment,
)
from cio_mavera.jobs.campaigns.stats import rate_definition, require_columns

__all__ = ["ASSUMPTIONS", "ChannelComparison", "compare_with_channels", "find_underperformers"]

_RATES_COLUMNS = ("campaign_id", "action_id", "channel", "metric", "successes", "trials")
# A message this many standard deviations from its channel is left out of the other messages'
# channel models (whose spread is then fitted as that of a normal truncated here).
_OUTLIER_Z = 2.5
_COMMON_SPREAD_P = 0.001  # a channel whose spread differs this clearly from the pooled one gets its own
_MAX_ROUNDS = 5
# Rates that are one hypothesis: delivery rate is 1 - bounce rate over the same sends, so it is
# tested once (as the bounce rate) and counted once in the false discovery rate.
_SAME_TEST_AS = {"delivery_rate": "bounce_rate"}
# Click-to-open is clicks / opens, two rates that each vary between messages: its spread combines
# theirs, so it keeps its own estimate instead of being pooled with the other rates'.
_NOT_POOLED = frozenset({"click_to_open_rate"})

RESULT_COLUMNS = (
    "campaign_id", "action_id", "channel", "name", "metric", "rate", "ci_low", "ci_high", "baseline",
    "relative_difference", "z", "p_value", "p_adjusted", "successes", "trials", "flagged", "test", "reason",
    "higher_is_better", "shrunk_rate", "shrunk_low", "shrunk_high", "spread_sd", "typical_low",
    "typical_high", "dispersion", "left_out_as_outlier", "own_spread", "df",
)
SPREAD_COLUMNS = (
    "channel", "metric", "messages", "outliers_left_out", "typical_rate", "typical_low", "typical_high",
    "spread_sd", "spread_cv", "heterogeneity_q", "heterogeneity_p", "i2", "own_spread", "common_spread_p",
    "df",
)

# What the test assumes, how `compare_with_channels` checks it, in the report's words.
ASSUMPTIONS = {
    "over_dispersion": "Deliveries of one message are not independent draws: its daily rates may vary "
                       "more than binomial noise.",
    "heterogeneity": "Messages of a channel differ from each other by more than noise (their true rates "
                     "spread around the channel's typical rate).",
    "common_spread": "On the logit scale, messages spread about as much on every channel, so small "
                     "channels borrow the spread estimate of the others.",
    "similar_rates": "Messages spread similarly on different rates, so each rate's spread estimate can "
                     "borrow from the others' as far as they agree.",
    "normal_spread": "The spread between messages is roughly normal on the logit scale (the test uses "
                     "a Student-t, which allows somewhat heavier tails).",
    "independence": "Messages are independent of each other given their channel.",
}


@dataclass
class ChannelComparison:
    """One row per (message, rate) tested; one per (channel, rate) spread; the assumption checks."""

    tests: pd.DataFrame
    spreads: pd.DataFrame
    checks: pd.DataFrame


def find_underperformers(rates: pd.DataFrame, alpha: float = 0.05, min_trials: int = 500,
                         min_relative_drop: float = 0.10) -> pd.DataFrame:
    """The per-(message, rate) tests of `compare_with_channels`, flags first."""
    return compare_with_channels(rates, alpha, min_trials, min_relative_drop).tests


def compare_with_channels(rates: pd.DataFrame, alpha: float = 0.05, min_trials: int = 500,
                          min_relative_drop: float = 0.10) -> ChannelComparison:
    """Test every (message, rate) against its channel's spread of messages; BH; material flags only."""
    require_columns(rates, _RATES_COLUMNS, "rates")
    frame = _prepared(rates)
    screened = [_screened(frame[frame["metric"] == metric], min_trials)
                for metric in dict.fromkeys(frame["metric"])]
    per_rate = [_compare_one_rate(rate, pooled, min_trials)
                for rate, pooled in zip(screened, _pooled_spreads(screened), strict=True)]
    tests = pd.concat([t for t, _ in per_rate], ignore_index=True) if per_rate else _empty(RESULT_COLUMNS)
    spread_rows = [s for _, s in per_rate if not s.empty]
    spreads = pd.concat(spread_rows, ignore_index=True) if spread_rows else _empty(SPREAD_COLUMNS)
    tested = tests["reason"].isna()
    tests["p_adjusted"] = _bh_adjusted(tests, tested, alpha)
    tests["relative_difference"] = _relative_difference(tests["rate"], tests["baseline"])
    worse_by = np.where(tests["higher_is_better"].astype(bool), -tests["relative_difference"],
                        tests["relative_difference"])
    tests["flagged"] = tested & (tests["p_adjusted"] < alpha) & (worse_by >= min_relative_drop)
    tests = tests.sort_values(["p_adjusted", "p_value", "action_id"], na_position="last", kind="stable")
    tests = tests.reset_index(drop=True)[list(RESULT_COLUMNS)]
    return ChannelComparison(tests, spreads.reset_index(drop=True)[list(SPREAD_COLUMNS)],
                             _checks(tests, spreads, screened))


def _bh_adjusted(tests: pd.DataFrame, tested: pd.Series, alpha: float) -> pd.Series:
    """Benjamini-Hochberg across every distinct test; a twin rate carries its twin's adjusted p."""
    adjusted = pd.Series(np.nan, index=tests.index)
    counted = tested & ~tests["metric"].isin(list(_SAME_TEST_AS))
    if counted.any():
        adjusted[counted] = multipletests(tests.loc[counted, "p_value"].astype(float), alpha=alpha,
                                          method="fdr_bh")[1]
    for twin, tested_as in _SAME_TEST_AS.items():
        source = adjusted[tests["metric"] == tested_as].set_axis(
            tests.loc[tests["metric"] == tested_as, "action_id"])
        rows = tested & (tests["metric"] == twin)
        adjusted[rows] = tests.loc[rows, "action_id"].map(source).to_numpy()
    return adjusted


def _prepared(rates: pd.DataFrame) -> pd.DataFrame:
    frame = rates.copy()
    if "name" not in frame:
        frame["name"] = None
    if "higher_is_better" not in frame:
        frame["higher_is_better"] = frame["metric"].map(lambda m: rate_definition(m).higher_is_better)
    if "rate" not in frame or "ci_low" not in frame:
        raise ValueError("rates need rate, ci_low and ci_high (build them with stats.action_rates)")
    for column, default in (("dispersion", np.nan), ("day_logit_variance", 0.0)):
        if column not in frame:
            frame[column] = default  # one bucket per message: over-dispersion cannot be measured
    frame["day_logit_variance"] = frame["day_logit_variance"].fillna(0.0)
    return frame


# --- one rate -----------------------------------------------------------------------------------


@dataclass
class _Rate:
    """One rate's messages as arrays."""

    channel: np.ndarray
    successes: np.ndarray
    trials: np.ndarray
    y: np.ndarray  # observed logit rate
    v: np.ndarray  # its sampling variance: binomial + day-to-day over-dispersion
    extra: np.ndarray  # the over-dispersion part alone
    lower_is_worse: np.ndarray

    def fit(self, members: np.ndarray, screened: bool = False) -> SpreadFit | None:
        """The random-effects fit of `members`; `screened`: they are what is left once the
        messages beyond `_OUTLIER_Z` were set aside (a truncated sample)."""
        return fit_spread(self.y[members], self.v[members], self.channel[members],
                          truncated_at=_OUTLIER_Z if screened else None)


@dataclass
class _Screened:
    """One rate after screening: its messages, outliers, own-spread channels and the pooled
    channels' spread estimate (before pooling across rates)."""

    rows: pd.DataFrame
    data: _Rate
    enough: np.ndarray
    outliers: np.ndarray
    own: set[str]
    tau2: float
    df: int
    v_mean: float


def _screened(rows: pd.DataFrame, min_trials: int) -> _Screened:
    rows = rows.reset_index(drop=True)
    s = rows["successes"].to_numpy(dtype=np.int64)
    n = rows["trials"].to_numpy(dtype=np.int64)
    extra = rows["day_logit_variance"].to_numpy(dtype=float)
    data = _Rate(rows["channel"].to_numpy(dtype=object), s, n, logit_rate(s, n),
                 logit_variance(s, n) + extra, extra, rows["higher_is_better"].to_numpy(dtype=bool))
    enough = n >= min_trials
    outliers, own = _outliers_and_own_spreads(data, enough)
    members = enough & ~outliers & ~np.isin(data.channel, list(own))
    fit = data.fit(members, screened=True)
    if fit is None:
        return _Screened(rows, data, enough, outliers, own, np.nan, 0, np.nan)
    return _Screened(rows, data, enough, outliers, own, fit.tau2, fit.df, float(np.mean(data.v[members])))


def _pooled_spreads(screened: list[_Screened]) -> list[PooledSpread | None]:
    """Each rate's spread pooled with the other rates' (None where a rate has no estimate).

    A twin rate (`_SAME_TEST_AS`) is the same data: it is pooled once, and takes its twin's pooling;
    a rate in `_NOT_POOLED` keeps its own estimate (None).
    """
    metric = [s.rows["metric"].iloc[0] if len(s.rows) else "" for s in screened]
    usable = [i for i, s in enumerate(screened)
              if np.isfinite(s.tau2) and metric[i] not in _SAME_TEST_AS and metric[i] not in _NOT_POOLED]
    pooled = pool_spreads(np.array([screened[i].tau2 for i in usable]), np.array([screened[i].df for i in usable]),
                          np.array([screened[i].v_mean for i in usable])) if usable else []
    by_metric = {metric[i]: spread for i, spread in zip(usable, pooled, strict=True)}
    return [by_metric.get(_SAME_TEST_AS.get(m, m)) if np.isfinite(s.tau2) else None
            for m, s in zip(metric, screened, strict=True)]


def _compare_one_rate(rate: _Screened, pooled: PooledSpread | None,
                      min_trials: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, data, enough, outliers, own = rate.rows, rate.data, rate.enough, rate.outliers, rate.own
    s, n = data.successes, data.trials
    result = rows.copy()
    reason = pd.Series(None, index=rows.index, dtype="object")
    reason[~enough] = f"fewer than {min_trials} trials"
    columns = {name: np.full(len(rows), np.nan) for name in
               ("baseline", "z", "p_value", "spread_sd", "typical_low", "typical_high", "df")}
    typical_scale = np.full(len(rows), np.nan)
    for i in np.flatnonzero(enough):
        model = _channel_model(data, i, enough & ~outliers, own, pooled)
        if model is None:
            others = enough & (data.channel == data.channel[i])
            reason[i] = ("no other messages on this channel to compare with" if others.sum() <= 1
                         else "too few messages to estimate the spread between them")
            continue
        mean, se, tau2, df = model
        columns["baseline"][i] = expit(mean)
        columns["spread_sd"][i] = np.sqrt(tau2)
        columns["df"][i] = df
        half = stats.t.ppf(0.975, df) * np.sqrt(tau2 + se ** 2)
        columns["typical_low"][i], columns["typical_high"][i] = expit(mean - half), expit(mean + half)
        typical_scale[i] = np.sqrt(tau2 + se ** 2 + data.extra[i])
        p0 = expit(mean)
        columns["z"][i] = (data.y[i] - mean) / np.sqrt(tau2 + se ** 2 + data.extra[i]
                                                        + 1.0 / (n[i] * p0 * (1 - p0)))
    tested = reason.isna().to_numpy() & enough
    if tested.any():
        columns["p_value"][tested] = predictive_p_values(
            s[tested], n[tested], _logit(columns["baseline"][tested]), typical_scale[tested],
            columns["df"][tested], data.lower_is_worse[tested])
    for name, values in columns.items():
        result[name] = values
    result["reason"] = reason
    result["test"] = np.where(tested, "predictive", None)
    result["left_out_as_outlier"] = outliers
    result["own_spread"] = [c in own for c in data.channel]
    result["shrunk_rate"], result["shrunk_low"], result["shrunk_high"] = _shrunk(data, enough, own)
    return result, _spreads(rows["metric"].iloc[0] if len(rows) else "", data, enough, outliers, own, pooled)


def _logit(p: np.ndarray) -> np.ndarray:
    """Logit of probabilities strictly between 0 and 1."""
    p = np.asarray(p, dtype=float)
    return np.log(p / (1 - p))


def _channel_model(data: _Rate, i: int, pool: np.ndarray, own: set[str],
                   pooled: PooledSpread | None = None) -> tuple[float, float, float, float] | None:
    """(typical logit rate, its SE, tau^2, t degrees of freedom) for message i, from the others.

    Channels with their own spread use it as estimated; the others' spread is pooled with the
    other rates' (`pooled`), and their typical rates are refitted with it.
    """
    members = pool.copy()
    members[i] = False
    channel = data.channel[i]
    if channel in own:
        members &= data.channel == channel
    else:
        members &= ~np.isin(data.channel, list(own))
    fit = data.fit(members, screened=True)
    if fit is None or channel not in fit.typical:
        return None
    if channel in own or pooled is None:
        # One degree of freedom less than the spread estimate's (Higgins, Thompson & Spiegelhalter 2009).
        return fit.typical[channel], fit.typical_se[channel], fit.tau2, max(fit.df - 1, 1)
    tau2 = pooled.tau2(fit.tau2)
    typical, typical_se = channel_means(data.y[members], data.v[members], data.channel[members], tau2)
    return typical[channel], typical_se[channel], tau2, max(pooled.df - 1, 1.0)


def _outliers_and_own_spreads(data: _Rate, enough: np.ndarray) -> tuple[np.ndarray, set[str]]:
    """Messages too far out to describe their channel, and channels whose spread is their own.

    Outliers are found under the current spread structure (pooled at first), then the channels'
    spreads are compared without them; repeated until the structure stops changing.
    """
    own: set[str] = set()
    outliers = _outliers(data, enough, own)
    for _ in range(_MAX_ROUNDS):
        new_own = _channels_with_own_spread(data, enough & ~outliers)
        if new_own == own:
            break
        own = new_own
        outliers = _outliers(data, enough, own)
    return outliers, own


def _outliers(data: _Rate, enough: np.ndarray, own: set[str]) -> np.ndarray:
    """Messages more than `_OUTLIER_Z` standard deviations from their channel, found by iteration.

    Fit, set aside the messages beyond the cut, refit the rest as a truncated sample (so the spread
    is not shrunk by the cut), and repeat until the set stops changing: two or three far-out
    messages of one rate cannot inflate the spread and hide each other.
    """
    outliers = np.zeros(len(data.y), dtype=bool)
    groups = [enough & ~np.isin(data.channel, list(own))]
    groups += [enough & (data.channel == channel) for channel in own]
    for members in groups:
        aside, first = np.zeros_like(outliers), True
        for _ in range(_MAX_ROUNDS * 4):
            kept = members & ~aside
            fit = data.fit(kept, screened=not first)
            first = False
            if fit is None:
                break
            z = standardised_residuals(data.y, data.v, data.channel, fit, kept)
            new_aside = members & (np.abs(np.nan_to_num(z)) > _OUTLIER_Z)
            if np.array_equal(new_aside, aside):
                break
            aside = new_aside
        outliers |= aside
    return outliers


def _channels_with_own_spread(data: _Rate, pool: np.ndarray) -> set[str]:
    """Channels whose messages spread significantly more or less than the pooled spread says."""
    return {c for c, p in _common_spread_p(data, pool).items() if p < _COMMON_SPREAD_P}


def _common_spread_p(data: _Rate, pool: np.ndarray) -> dict[str, float]:
    """Per channel with >= 3 messages: two-sided p of its Q statistic at the pooled spread."""
    fit = data.fit(pool, screened=True)
    if fit is None:
        return {}
    out = {}
    for channel in fit.typical:
        members = pool & (data.channel == channel)
        if members.sum() < 3:
            continue
        w = 1.0 / (data.v[members] + fit.tau2)
        mean = np.sum(w * data.y[members]) / np.sum(w)
        q = float(np.sum(w * (data.y[members] - mean) ** 2)) / truncated_second_moment(_OUTLIER_Z)
        df = int(members.sum()) - 1
        out[channel] = float(min(1.0, 2 * min(stats.chi2.cdf(q, df), stats.chi2.sf(q, df))))
    return out


def _shrunk(data: _Rate, enough: np.ndarray, own: set[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each message's empirical-Bayes rate and 95% interval; the prior is fitted on all its channel's
    messages with enough trials (outliers included, as the spread they belong to is unknown)."""
    shrunk, low, high = (np.full(len(data.y), np.nan) for _ in range(3))
    for channel in dict.fromkeys(data.channel):
        pooled = enough & (data.channel == channel if channel in own
                           else ~np.isin(data.channel, list(own)))
        fit = data.fit(pooled)
        rows = (data.channel == channel) & (data.trials > 0)
        if fit is None or channel not in fit.typical or not rows.any():
            continue
        mean, sd = shrink(data.y[rows], data.v[rows], fit.typical[channel], fit.tau2,
                          fit.typical_se[channel])
        shrunk[rows], low[rows], high[rows] = expit(mean), expit(mean - 1.96 * sd), expit(mean + 1.96 * sd)
    return shrunk, low, high


def _spreads(metric: str, data: _Rate, enough: np.ndarray, outliers: np.ndarray,
             own: set[str], pooled: PooledSpread | None) -> pd.DataFrame:
    """One row per channel: typical rate and range, spread, heterogeneity and common-spread checks."""
    pool = enough & ~outliers
    common = _common_spread_p(data, pool)
    rows = []
    for channel in dict.fromkeys(data.channel):
        members = pool & (data.channel == channel)
        fitted = pool & (data.channel == channel if channel in own else ~np.isin(data.channel, list(own)))
        fit = data.fit(fitted, screened=True)
        if fit is None or channel not in fit.typical:
            continue
        tau2, df = fit.tau2, max(fit.df - 1, 1)
        if channel not in own and pooled is not None:
            tau2, df = pooled.tau2(fit.tau2), max(pooled.df - 1, 1.0)
        typical_rates, typical_se = channel_means(data.y[fitted], data.v[fitted], data.channel[fitted], tau2)
        mean, se = typical_rates[channel], typical_se[channel]
        half = stats.t.ppf(0.975, df) * np.sqrt(tau2 + se ** 2)
        q, q_p, i2 = _heterogeneity(data.y[members], data.v[members])
        typical = float(expit(mean))
        rows.append({
            "channel": channel, "metric": metric, "messages": int(members.sum()),
            "outliers_left_out": int((enough & outliers & (data.channel == channel)).sum()),
            "typical_rate": typical, "typical_low": float(expit(mean - half)),
            "typical_high": float(expit(mean + half)), "spread_sd": float(np.sqrt(tau2)),
            "spread_cv": float(np.sqrt(tau2)) * (1 - typical), "heterogeneity_q": q, "heterogeneity_p": q_p, "i2": i2,
            "own_spread": channel in own, "common_spread_p": common.get(channel, np.nan), "df": df,
        })
    return pd.DataFrame(rows, columns=list(SPREAD_COLUMNS))


def _heterogeneity(y: np.ndarray, v: np.ndarray) -> tuple[float, float, float]:
    """Cochran's Q test of "these messages share one true rate", and I^2 (statsmodels)."""
    if len(y) < 2:
        return np.nan, np.nan, np.nan
    result = combine_effects(y, v, method_re="iterated")
    return float(result.q), float(stats.chi2.sf(result.q, len(y) - 1)), float(result.i2)


# --- assumption checks --------------------------------------------------------------------------


def _checks(tests: pd.DataFrame, spreads: pd.DataFrame, screened: list[_Screened]) -> pd.DataFrame:
    """Each assumption, how it was checked on this data, what was found and what the test does about it."""
    tested = tests[tests["reason"].isna()]
    measured = tested["dispersion"].dropna()
    over = int((measured > 1).sum())
    rows = [{
        "assumption": ASSUMPTIONS["over_dispersion"],
        "check": "Pearson chi-square of each message's daily counts (days - 1 degrees of freedom)",
        "result": (f"median dispersion {measured.median():.1f}x binomial; {over} of {len(measured)} "
                   f"(message, rate) pairs above 1" if len(measured) else "one bucket per message: not measurable"),
        "consequence": ("each message's sampling variance includes its own measured day-to-day variation"
                        if len(measured) else "binomial variances used (may understate noise)"),
    }]
    het = spreads.dropna(subset=["heterogeneity_p"])
    differ = int((het["heterogeneity_p"] < 0.05).sum())
    rows.append({
        "assumption": ASSUMPTIONS["heterogeneity"],
        "check": "Cochran's Q per channel and rate, I^2 (statsmodels combine_effects)",
        "result": (f"{differ} of {len(het)} (channel, rate) groups differ beyond noise (p < 0.05); "
                   f"median I^2 {het['i2'].median():.0%}" if len(het) else "too few messages to check"),
        "consequence": "messages are tested against the estimated spread of typical messages (0 where "
                       "none is found, which reduces the test to the channel's typical rate)",
    })
    own = spreads[spreads["own_spread"].astype(bool)]
    rows.append({
        "assumption": ASSUMPTIONS["common_spread"],
        "check": "Q of each channel's messages at the pooled spread, two-sided (channels with >= 3 messages)",
        "result": (f"no channel differs (p >= {_COMMON_SPREAD_P})" if own.empty else
                   "own spread for " + ", ".join(f"{r.channel} {r.metric}" for r in own.itertuples())),
        "consequence": "a channel that differs is modelled with its own spread and its own (fewer) "
                       "degrees of freedom",
    })
    pooled = [p for p in _pooled_spreads(screened) if p is not None]
    own_share = [p.own for p in pooled]
    rows.append({
        "assumption": ASSUMPTIONS["similar_rates"],
        "check": "random-effects meta-analysis of the rates' log spreads (how far they disagree)",
        "result": ("too few rates to compare" if len(pooled) < 2 else
                   f"spreads differ between rates by a factor of about {np.exp(pooled[0].rates_spread / 2):.2f}; "
                   f"each rate keeps {min(own_share):.0%}-{max(own_share):.0%} of its own estimate"),
        "consequence": "each rate's spread is pooled with the others' only as far as they agree, which "
                       "steadies it (more degrees of freedom) without forcing one spread on all",
    })
    residuals = _standardised_residuals(tests)
    normal_p = float(stats.shapiro(residuals).pvalue) if len(residuals) >= 8 else np.nan
    rows.append({
        "assumption": ASSUMPTIONS["normal_spread"],
        "check": "Shapiro-Wilk on the standardised differences from the typical rate (outliers left out)",
        "result": ("not enough messages" if not np.isfinite(normal_p) else
                   f"p = {normal_p:.2g} over {len(residuals)} (message, rate) pairs"),
        "consequence": ("consistent with a normal spread" if not np.isfinite(normal_p) or normal_p >= 0.01
                        else "tails look heavier than normal: p-values near the threshold are approximate"),
    })
    left_out = int(tests["left_out_as_outlier"].astype(bool).sum())
    rows.append({
        "assumption": ASSUMPTIONS["independence"],
        "check": "not checkable from aggregate metrics",
        "result": f"{left_out} clear outlier(s) left out of the other messages' channel model",
        "consequence": "messages sharing an audience or a send can move together; treat flags as leads",
    })
    return pd.DataFrame(rows, columns=["assumption", "check", "result", "consequence"])


def _standardised_residuals(tests: pd.DataFrame) -> np.ndarray:
    rows = tests[tests["reason"].isna() & ~tests["left_out_as_outlier"].astype(bool)]
    return rows["z"].astype(float).dropna().to_numpy()


# --- helpers ------------------------------------------------------------------------------------


def _relative_difference(rate: pd.Series, baseline: pd.Series) -> pd.Series:
    """(rate - baseline) / baseline; +inf when the baseline is 0 and the rate is not."""
    rate = rate.astype(float)
    baseline = baseline.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = (rate - baseline) / baseline
    relative = relative.where(baseline != 0, np.where(rate > 0, np.inf, 0.0))
    return relative.where(baseline.notna() & rate.notna())


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
