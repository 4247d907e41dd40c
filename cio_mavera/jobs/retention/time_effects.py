"""Job 3: does the time of sending or the size of a send change how readily people opt out?

Send volume follows the day and the week and comes in bursts, but rates per message are what the
tests compare, so volume alone changes nothing. What could: people opting out more readily at some
hours of the week, or in big sends (which reach colder parts of a list). Both are checked on the
data with a Poisson regression of a cell's opt-outs on its deliveries (offset), with one intercept
per source, so only differences within a source count:

- hour of week: four six-hour parts of the day (UTC) x weekday/weekend, a likelihood-ratio test
  against no effect (7 degrees of freedom);
- volume: whether the delivery went out in an hour in which its source sent at least
  `BURST_FACTOR` times its usual (median) hourly volume, a likelihood-ratio test (1 degree).

An effect is used only when its test is significant at `EFFECT_ALPHA`; then each delivery's
exposure is weighted by its class's estimated rate multiplier, so a window full of Monday-morning
or burst deliveries is expected to hold correspondingly more opt-outs. With fewer than
`MIN_EVENTS` opt-outs nothing is estimated (and the report says so).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

__all__ = ["BURST_FACTOR", "EFFECT_ALPHA", "MIN_EVENTS", "TimeEffects", "burst_flags", "fit_time_effects",
           "hour_of_week_class"]

BURST_FACTOR = 5.0
EFFECT_ALPHA = 0.01
MIN_EVENTS = 20
_HOUR, _DAY = 3600, 86400
CLASS_NAMES = tuple(f"{day} {start:02d}-{start + 6:02d}h" for day in ("weekday", "weekend") for start in (0, 6, 12, 18))


@dataclass
class TimeEffects:
    """Estimated rate multipliers per hour-of-week class and for burst hours, and their tests."""

    events: int
    hour_of_week_p: float | None = None  # None: not estimated (too few events)
    burst_p: float | None = None
    hour_of_week: dict[str, float] = field(default_factory=dict)  # class name -> multiplier (if used)
    burst: float = 1.0  # multiplier for burst-hour deliveries (if used)

    @property
    def used(self) -> bool:
        """Whether any effect is applied."""
        return bool(self.hour_of_week) or self.burst != 1.0

    def weights(self, classes: np.ndarray, bursts: np.ndarray) -> np.ndarray:
        """Each delivery's exposure weight (1 when nothing is used)."""
        out = np.ones(len(classes))
        if self.hour_of_week:
            table = np.array([self.hour_of_week.get(name, 1.0) for name in CLASS_NAMES])
            out *= table[np.asarray(classes, int)]
        if self.burst != 1.0:
            out *= np.where(np.asarray(bursts, bool), self.burst, 1.0)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary for results.json and the report."""
        p = (lambda v: None if v is None else round(float(v), 6))  # noqa: E731
        return {"events": int(self.events), "hour_of_week_p": p(self.hour_of_week_p), "burst_p": p(self.burst_p),
                "hour_of_week_used": bool(self.hour_of_week), "burst_used": bool(self.burst != 1.0),
                "hour_of_week": {k: round(float(v), 3) for k, v in self.hour_of_week.items()},
                "burst_multiplier": round(float(self.burst), 3)}


def hour_of_week_class(times: np.ndarray) -> np.ndarray:
    """0-7: weekday or weekend (UTC) x four six-hour parts of the day."""
    times = np.asarray(times, dtype=np.int64)
    weekend = (((times // _DAY) + 3) % 7) >= 5  # 1970-01-01 was a Thursday
    return weekend.astype(int) * 4 + (times % _DAY) // (6 * _HOUR)


def burst_flags(strata: np.ndarray, times: np.ndarray, reference_strata: np.ndarray,
                reference_times: np.ndarray) -> np.ndarray:
    """True where the stratum sent >= BURST_FACTOR x its median hourly volume in that hour."""
    reference = pd.DataFrame({"s": np.asarray(reference_strata), "h": np.asarray(reference_times) // _HOUR})
    if reference.empty:
        return np.zeros(len(times), bool)
    per_hour = reference.groupby(["s", "h"]).size()
    usual = per_hour.groupby(level="s").median()
    ratio = per_hour / usual.reindex(per_hour.index.get_level_values("s")).to_numpy()
    keys = pd.MultiIndex.from_arrays([np.asarray(strata), np.asarray(times) // _HOUR])
    return (ratio.reindex(keys).fillna(0).to_numpy() >= BURST_FACTOR)


def _lr_test(y: np.ndarray, exposure: np.ndarray, strata: np.ndarray, factor: np.ndarray
             ) -> tuple[float, dict[int, float]]:
    """(p-value, multiplier per level) of `factor` in a Poisson GLM with an intercept per stratum."""
    frame = pd.DataFrame({"y": y, "x": exposure, "s": strata, "f": factor})
    frame = frame[frame["x"] > 0]
    frame = frame[frame.groupby("s")["y"].transform("sum") > 0]  # strata without events say nothing
    levels = sorted(frame["f"].unique())
    if len(levels) < 2 or frame["s"].nunique() < 1:
        return 1.0, {}
    base = pd.get_dummies(frame["s"].astype(str), dtype=float)
    extra = pd.get_dummies(frame["f"], prefix="f", dtype=float).iloc[:, 1:]
    offset = np.log(frame["x"].to_numpy(float))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (ConvergenceWarning, PerfectSeparationWarning, RuntimeWarning))
        null = sm.GLM(frame["y"].to_numpy(float), base, family=sm.families.Poisson(), offset=offset).fit()
        full = sm.GLM(frame["y"].to_numpy(float), pd.concat([base, extra], axis=1), family=sm.families.Poisson(),
                      offset=offset).fit()
    lr = max(0.0, 2 * (full.llf - null.llf))
    p = float(stats.chi2.sf(lr, extra.shape[1]))
    coefficients = {levels[0]: 1.0}
    for level, name in zip(levels[1:], extra.columns, strict=True):
        coefficients[level] = float(np.exp(np.clip(full.params[name], -3, 3)))
    mean = np.average([coefficients[f] for f in frame["f"]], weights=frame["x"])  # average weight 1
    return p, {k: v / mean for k, v in coefficients.items()}


def fit_time_effects(exposure: pd.DataFrame, hits: pd.DataFrame) -> TimeEffects:
    """Test (and estimate) hour-of-week and burst effects on rates.

    `exposure` and `hits` need `stratum`, `time`, `how` (hour-of-week class) and `burst` columns.
    """
    n_events = int(len(hits))
    if n_events < MIN_EVENTS or exposure.empty:
        return TimeEffects(n_events)
    effects = TimeEffects(n_events)
    for column in ("how", "burst"):
        shown = exposure.groupby(["stratum", column]).size().rename("x")
        seen = hits.groupby(["stratum", column]).size().rename("y")
        cells = pd.concat([shown, seen], axis=1).fillna(0).reset_index()
        p, multipliers = _lr_test(cells["y"].to_numpy(), cells["x"].to_numpy(), cells["stratum"].to_numpy(),
                                  cells[column].astype(int).to_numpy())
        if column == "how":
            effects.hour_of_week_p = p
            if p < EFFECT_ALPHA:
                effects.hour_of_week = {CLASS_NAMES[int(k)]: v for k, v in multipliers.items()}
        else:
            effects.burst_p = p
            if p < EFFECT_ALPHA and 1 in multipliers:
                effects.burst = multipliers[1] / multipliers.get(0, 1.0)
    return effects
