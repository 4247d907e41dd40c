"""Job 3's cells: one trigger family's exposure and events by source, audience and window.

A family is what one kind of trigger counts: opt-outs per delivered campaign message
(`campaign_family`), or valuable customers' churn signals per message sent, whatever sent it
(`churn_family`). Its rows are split by stratum (source and channel) and audience, and summed over
any windows (`Family.sums`, `WindowSums`). Hour-of-week and burst weights (`weigh`) and the spans a
source's estimates set aside (`worst_spans`) are decided here too, on the whole family.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from cio_mavera.errors import InvalidParameter
from cio_mavera.jobs.retention import cohorts
from cio_mavera.jobs.retention.time_effects import (
    TimeEffects,
    burst_flags,
    fit_time_effects,
    hour_of_week_class,
)

__all__ = ["Family", "SET_ASIDE_P", "WindowSums", "campaign_family", "churn_family", "day_windows",
           "rolling_windows", "scan_windows", "set_aside_rows", "weigh", "worst_spans"]

_HOUR, _DAY = 3600, 86400


# --- windows ----------------------------------------------------------------------------------


def rolling_windows(start: int, end: int, window_hours: float, step_hours: float) -> np.ndarray:
    """(n, 2) int array of [start, end) unix-second windows stepping over [start, end].

    Window starts are aligned to whole multiples of the step (UTC), so reruns on a growing log keep
    the same windows; windows overhanging either end are kept (they are what a live spike looks like).
    """
    if window_hours <= 0 or step_hours <= 0:
        raise InvalidParameter("window_hours and step_hours must be positive")
    width, step = int(window_hours * _HOUR), int(step_hours * _HOUR)
    first = ((int(start) - width) // step + 1) * step  # the first aligned start still covering `start`
    starts = np.arange(first, int(end) + 1, step, dtype=np.int64)
    return np.column_stack([starts, starts + width]) if len(starts) else np.empty((0, 2), np.int64)


def scan_windows(start: int, end: int, window_hours: float, step_hours: float,
                  scales: Sequence[float]) -> np.ndarray:
    """Windows of window_hours x each scale, each stepping by step_hours x its scale."""
    parts = [rolling_windows(start, end, window_hours * s, step_hours * s) for s in scales]
    return np.concatenate(parts) if parts else np.empty((0, 2), np.int64)


def day_windows(start: int, end: int) -> np.ndarray:
    first = start // _DAY * _DAY
    starts = np.arange(first, end + 1, _DAY, dtype=np.int64)
    return np.column_stack([starts, starts + _DAY])


# --- one family's cells -----------------------------------------------------------------------


@dataclass
class Family:
    """Exposure rows and event rows of one trigger family, split by stratum (source, channel) and audience."""

    kind: str
    metric: str
    exposure: pd.DataFrame  # stratum, channel, group, time, weight, counted, how, burst
    hits: pd.DataFrame  # stratum, channel, group, time
    strata: list[tuple[str, str]]
    groups: list[int]
    effects: TimeEffects

    def __post_init__(self) -> None:
        self.index = {s: i for i, s in enumerate(self.strata)}
        self.channel = np.array([s[1] for s in self.strata])
        self.weights = self.exposure["weight"].to_numpy(float)
        self._rows: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        ex_stratum, hit_stratum = self.stratum_of(self.exposure), self.stratum_of(self.hits)
        position = {g: i for i, g in enumerate(self.groups)}
        ex_group, hit_group = (_positions(frame["group"], position) for frame in (self.exposure, self.hits))
        ex_time, hit_time = self.exposure["time"].to_numpy(), self.hits["time"].to_numpy()
        counted = self.exposure["counted"].to_numpy(bool)
        for s in range(len(self.strata)):
            for g in range(self.everyone + 1):
                rows = np.flatnonzero((ex_stratum == s) & ((ex_group == g) | (g == self.everyone)))
                rows = rows[np.argsort(ex_time[rows], kind="stable")]
                hit = (hit_stratum == s) & ((hit_group == g) | (g == self.everyone))
                self._rows[(s, g)] = (rows, ex_time[rows], np.concatenate([[0], np.cumsum(counted[rows])]),
                                      np.sort(hit_time[hit]))

    def stratum_of(self, frame: pd.DataFrame) -> np.ndarray:
        """The index of each row's stratum (of the exposure or the hits)."""
        codes, distinct = pd.factorize(frame["stratum"])
        if (codes < 0).any() or any(s not in self.index for s in distinct):
            return frame["stratum"].map(self.index).to_numpy()
        return np.array([self.index[s] for s in distinct], dtype=np.int64)[codes]

    @property
    def everyone(self) -> int:
        """The group index meaning all audiences together."""
        return len(self.groups)

    def sums(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(events, weighted exposure, messages) per (stratum, group incl. everyone, window)."""
        shape = (len(self.strata), self.everyone + 1, len(windows))
        k, x, n = np.zeros(shape), np.zeros(shape), np.zeros(shape)
        for (s, g), (rows, times, counted, hit_times) in self._rows.items():
            cumulative = np.concatenate([[0.0], np.cumsum(self.weights[rows])])
            lo, hi = np.searchsorted(times, windows[:, 0]), np.searchsorted(times, windows[:, 1])
            x[s, g], n[s, g] = cumulative[hi] - cumulative[lo], counted[hi] - counted[lo]
            k[s, g] = np.searchsorted(hit_times, windows[:, 1]) - np.searchsorted(hit_times, windows[:, 0])
        return k, x, n

    def totals(self) -> tuple[np.ndarray, np.ndarray]:
        """(events, weighted exposure) per (stratum, group incl. everyone) over the whole log."""
        k = np.zeros((len(self.strata), self.everyone + 1))
        x = np.zeros_like(k)
        for (s, g), (rows, _times, _counted, hit_times) in self._rows.items():
            k[s, g], x[s, g] = len(hit_times), float(self.weights[rows].sum())
        return k, x


def _positions(values: pd.Series, table: dict) -> np.ndarray:
    """table[value] per row, -1 for missing values and values not in it; looked up once per distinct value."""
    codes, distinct = pd.factorize(values)
    return np.array([*(table.get(v, -1) for v in distinct), -1], dtype=np.int64)[codes]


def _stratum(frame: pd.DataFrame) -> tuple[pd.Series, np.ndarray]:
    """(source, channel) per row, and the same as text (the burst check's key); built once per distinct pair."""
    source_codes, sources = pd.factorize(frame["source"].astype(str))
    channel_codes, channels = pd.factorize(frame["channel"].astype(str))
    codes, pairs = pd.factorize(source_codes.astype(np.int64) * max(len(channels), 1) + channel_codes)
    strata = np.empty(len(pairs), dtype=object)
    for i, pair in enumerate(pairs):
        strata[i] = (sources[pair // len(channels)], channels[pair % len(channels)])
    text = np.array([str(s) for s in strata], dtype=object)
    return pd.Series(strata[codes], index=frame.index, dtype=object), text[codes]


def _make_family(kind: str, metric: str, exposure: pd.DataFrame, hits: pd.DataFrame) -> Family:
    """Time classes, bursts, the time-effect check and exposure weights, then the family's cells."""
    exposure_strata, exposure_keys = _stratum(exposure)
    hit_strata, hit_keys = _stratum(hits)
    exposure = exposure.assign(stratum=exposure_strata)
    hits = hits.assign(stratum=hit_strata)
    for frame in (exposure, hits):
        frame["how"] = hour_of_week_class(frame["time"].to_numpy()) if len(frame) else 0
    counted = exposure["counted"].to_numpy(bool)
    reference_keys, reference_times = exposure_keys[counted], exposure["time"].to_numpy()[counted]
    exposure["burst"] = burst_flags(exposure_keys, exposure["time"].to_numpy(), reference_keys, reference_times) \
        if len(exposure) else False
    hits["burst"] = burst_flags(hit_keys, hits["time"].to_numpy(), reference_keys, reference_times) \
        if len(hits) else False
    exposure["weight"] = 1.0
    strata = sorted(set(exposure_strata.unique()) | set(hit_strata.unique()))
    groups = sorted({int(g) for g in pd.concat([exposure["group"], hits["group"]]).dropna().unique()})
    return Family(kind, metric, exposure, hits, strata, groups, TimeEffects(len(hits)))


def weigh(family: Family, windows: np.ndarray) -> None:
    """Fit hour-of-week and burst effects without each source's most anomalous span; weigh exposure by them.

    A spike is itself a burst with a high rate: fitted on data that include it, a "burst effect"
    would explain the spike away.
    """
    spans = worst_spans(family, windows)
    outside = ~set_aside_rows(family, spans, family.exposure)
    hits_outside = ~set_aside_rows(family, spans, family.hits)
    counted = family.exposure["counted"].to_numpy(bool)
    family.effects = fit_time_effects(family.exposure[outside & counted], family.hits[hits_outside])
    if family.effects.used:
        family.weights = family.effects.weights(family.exposure["how"].to_numpy(), family.exposure["burst"].to_numpy())


def campaign_family(events: pd.DataFrame, delivered: pd.DataFrame) -> Family:
    """Opt-outs per delivered message, by campaign (and channel) and audience."""
    shown = delivered[delivered["campaign_id"].notna() & delivered["delivered_at"].notna()]
    exposure = pd.DataFrame({"source": shown["source"], "channel": shown["channel"], "group": shown["cluster"],
                             "plan": shown["plan"], "time": shown["delivered_at"].astype("int64"), "counted": True})
    hits = cohorts.outcomes(events, delivered, cohorts.OPT_OUT_METRICS)
    hits = hits[hits["campaign_id"].notna() & hits["source"].str.startswith("campaign:")]
    hits = pd.DataFrame({"source": hits["source"], "channel": hits["object_type"], "group": hits["cluster"],
                         "plan": hits["plan"], "time": hits["at"]})
    return _make_family("campaign", "opt_out", exposure, hits)


def churn_family(events: pd.DataFrame, delivered: pd.DataFrame, valuable_plans: Sequence[str]) -> Family:
    """Churn signals per message sent to valuable-plan people, by source and audience."""
    shown = delivered[cohorts.valuable(delivered, valuable_plans) & delivered["cluster"].notna()
                      & delivered["sent_at"].notna()]
    exposure = pd.DataFrame({"source": shown["source"], "channel": shown["channel"], "group": shown["cluster"],
                             "plan": shown["plan"], "time": shown["sent_at"].astype("int64"), "counted": True})
    hits = cohorts.outcomes(events, delivered, cohorts.CHURN_METRICS, hard_bounces=True)
    hits = hits[cohorts.valuable(hits, valuable_plans) & hits["cluster"].notna()]
    hits = pd.DataFrame({"source": hits["source"], "channel": hits["object_type"], "group": hits["cluster"],
                         "plan": hits["plan"], "time": hits["at"]})
    # Outcomes without delivery fields (an SMS STOP) answer no known message: their source is the
    # channel's sends as a whole, so each such stratum is exposed to every send of its channel.
    extra = []
    for source in sorted(set(hits["source"]) - set(exposure["source"])):
        channel = source.split(":", 1)[0]
        same = exposure[exposure["channel"] == channel]
        extra.append(same.assign(source=source, counted=False))
    exposure = pd.concat([exposure, *extra], ignore_index=True) if extra else exposure
    return _make_family("churn", "churn", exposure, hits)


SET_ASIDE_P = 1e-3  # a source's most anomalous span is set aside from the estimates when this improbable


def worst_spans(family: Family, windows: np.ndarray) -> dict[int, tuple[int, int]]:
    """Per stratum, its most anomalous span (a window and half its length on either side), set aside
    for the whole stratum when the span's count, for everyone or for one audience, is improbable at
    the rate that cell has outside it (Poisson tail below SET_ASIDE_P); ordinary sources keep all their
    data. A spike in one audience shows there even when it barely moves its source as a whole.

    The rate outside is the cell's own, pulled towards its channel's pooled rate as by a gamma prior
    with CV 1: a campaign that sent little outside its spike has no outside rate to speak of."""
    if not len(windows):
        return {}
    half = (windows[:, 1] - windows[:, 0])[:, None] // 2
    spans_of = windows + np.hstack([-half, half])
    k_total, x_total = family.totals()
    k, x, _ = family.sums(spans_of)
    pooled = np.zeros(len(family.strata))
    for channel in set(family.channel):
        members = family.channel == channel
        pooled[members] = (k_total[members, -1].sum() + 0.5) / (x_total[members, -1].sum() + 1.0)
    outside = (k_total[:, :, None] - k + 1.0) / (x_total[:, :, None] - x + 1.0 / pooled[:, None, None])
    # Log tails: a strong spike's spans all underflow to p = 0, and the first of them may hold half of it.
    log_p = np.where(k >= 3, stats.poisson.logsf(k - 1, np.maximum(x * outside, 1e-12)), 0.0)
    flat = log_p.reshape(len(family.strata), -1)
    best = np.argmin(flat, axis=1)
    spans = {}
    for s, cell in enumerate(best):
        if flat[s, cell] < np.log(SET_ASIDE_P):
            w = cell % len(windows)
            spans[s] = (int(spans_of[w, 0]), int(spans_of[w, 1]))
    return spans


def set_aside_rows(family: Family, spans: dict[int, tuple[int, int]], frame: pd.DataFrame) -> np.ndarray:
    """Which rows of `frame` (exposure or hits) fall in their stratum's set-aside span."""
    if not len(frame):
        return np.zeros(0, bool)
    stratum = family.stratum_of(frame)
    lo, hi = np.full(len(family.strata), -1), np.full(len(family.strata), -1)
    for s, (start, end) in spans.items():
        lo[s], hi[s] = start, end
    time = frame["time"].to_numpy()
    return (time >= lo[stratum]) & (time < hi[stratum])


@dataclass(frozen=True)
class WindowSums:
    """Window sums per (stratum, group incl. everyone, window), and the same over each guarded span."""

    k: np.ndarray  # events in the window
    x: np.ndarray  # weighted exposure in the window
    n: np.ndarray  # messages in the window
    guard_k: np.ndarray  # events in [start - width, end + width): the window and its guard on each side
    guard_x: np.ndarray

    @classmethod
    def of(cls, family: Family, windows: np.ndarray) -> WindowSums:
        k, x, n = family.sums(windows)
        width = (windows[:, 1] - windows[:, 0])[:, None]
        guard_k, guard_x, _ = family.sums(windows + np.hstack([-width, width]))
        return cls(k, x, n, guard_k, guard_x)
