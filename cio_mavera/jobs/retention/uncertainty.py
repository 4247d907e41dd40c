"""The intervals job 3's report puts beside its numbers, and the size of the check after a fix.

- a window's or a campaign's opt-out rate: the 95% Wilson interval of opt-outs per delivery;
- what a window would normally show: the 95% range of the gamma-Poisson predictive distribution the
  spike test compared the window with (its expected count and extra variance), as a rate;
- how many deliveries after a fix tell whether the rate came back down (one-sample z-test on the
  proportion, Cohen's h, statsmodels NormalIndPower with ratio 0), assuming independent deliveries.
"""

from __future__ import annotations

import math

from scipy import stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint, proportion_effectsize

CONFIDENCE = 0.95
POWER = 0.8
ALPHA = 0.05
GAP_SHARE = 0.5  # the fix is judged on the rate falling at least half way from the spike to normal
_POISSON_SIZE = 1e6  # beyond this gamma shape the gamma-Poisson is a Poisson (as the test treats it)


def rate_interval(count: float, exposure: float) -> tuple[float, float]:
    """The 95% Wilson interval of `count` events out of `exposure` (NaNs when `exposure` is 0)."""
    if not exposure or exposure <= 0:
        return math.nan, math.nan
    low, high = proportion_confint(round(count), round(exposure), alpha=1 - CONFIDENCE, method="wilson")
    return float(low), float(high)


def normal_range(expected: float, extra_variance: float, exposure: float) -> tuple[float, float]:
    """The rates 95% of windows like this one show when nothing is wrong: the central 95% of the
    test's predictive distribution of the count (mean `expected`, variance `expected +
    extra_variance`), divided by the window's deliveries (NaNs without deliveries)."""
    if not exposure or exposure <= 0 or not math.isfinite(expected) or expected <= 0:
        return math.nan, math.nan
    tail = (1 - CONFIDENCE) / 2
    extra = max(float(extra_variance), 1e-12 * expected ** 2)
    size = expected ** 2 / extra
    if size > _POISSON_SIZE:
        low, high = stats.poisson.ppf([tail, 1 - tail], expected)
    else:
        low, high = stats.nbinom.ppf([tail, 1 - tail], size, size / (size + expected))
    return float(low) / exposure, float(high) / exposure


def deliveries_to_confirm(spike_rate: float, normal_rate: float, *, power: float = POWER,
                          alpha: float = ALPHA, gap_share: float = GAP_SHARE) -> int | None:
    """Deliveries after a fix that show (one-sided, at `alpha` with `power`) whether the rate is
    back at `normal_rate` rather than still `gap_share` of the way up to `spike_rate`; None when
    the rates are not both in (0, 1) or the spike is not above normal."""
    if not (0 < normal_rate < 1 and 0 < spike_rate < 1) or spike_rate <= normal_rate:
        return None
    still_high = normal_rate + gap_share * (spike_rate - normal_rate)
    effect = abs(float(proportion_effectsize(still_high, normal_rate)))
    n = NormalIndPower().solve_power(effect_size=effect, alpha=alpha, power=power, ratio=0.0,
                                     alternative="larger")
    return int(math.ceil(n))
