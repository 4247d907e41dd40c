"""Job 3 spike detection: is a window's opt-out rate above what its source, audience and time predict?

Two trigger kinds, both from the enriched event log (one row per event, see `enrichment`), with
opt-outs dated by the delivery they answer (`cohorts`):

- `campaign`: per campaign, opt-outs (unsubscribes + spam complaints) from messages delivered in a
  window per message delivered, for all recipients and for each audience cluster;
- `churn`: per audience cluster, churn signals (opt-outs and hard bounces) from people on valuable
  plans, per message sent to them, whatever sent it (campaigns, newsletters, broadcasts).

Each window (`window_hours` every `step_hours`, and twice as long every twice as far) is compared
with what its cell's sources predict (`baselines`): a campaign's rate estimated from everything else
it sent (outside the window and a guard as long as the window on either side, and to other
audiences inside them), pulled towards its channel's typical rate only as far as the channel's
campaigns are alike; exposure weighted by hour-of-week and burst effects when the data shows them
(`time_effects`); the p-value from the gamma-Poisson predictive distribution, which carries the
uncertainty of that rate, how much audiences differ and how much days wobble. Those spreads and
effects are estimated with each source's most anomalous span set aside, so a spike does not pass
for ordinary variation. So a campaign whose audience always opts out more, a broadcast burst, a
Monday or a big send is not a spike; an audience answering one campaign far above that campaign's
own rate is.

Multiple testing: Tarone's filter drops windows that could not be significant even with all of
their series' events, then Benjamini-Hochberg over every remaining (series, window), counting the
overlapping windows of one key as one discovery (`baselines.trigger_level_bh`: a spike's dozen
windows do not relax the bar for everything else); a window is flagged when its adjusted p-value is
at most `alpha` and it holds at least `min_count` events. Overlapping flagged windows of one key
merge into one trigger.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cio_mavera.errors import InvalidParameter
from cio_mavera.jobs.retention import baselines, cohorts
from cio_mavera.jobs.retention.baselines import benjamini_hochberg
from cio_mavera.jobs.retention.cells import (
    Family,
    WindowSums,
    campaign_family,
    churn_family,
    day_windows,
    rolling_windows,
    scan_windows,
    weigh,
    worst_spans,
)
from cio_mavera.jobs.retention.cohorts import is_hard_bounce

__all__ = [
    "CAMPAIGN_METRICS",
    "DEFAULT_SCALES",
    "Trigger",
    "TriggerResult",
    "audience_breakdown",
    "benjamini_hochberg",
    "find_triggers",
    "is_hard_bounce",
    "rolling_windows",
    "series_events",
]

CAMPAIGN_METRICS = ("opt_out",)
DEFAULT_SCALES = (1, 2)  # windows of window_hours and of twice that: spikes last a day or two


@dataclass(frozen=True)
class Trigger:
    """A window whose rate is significantly above what its sources predict: what research is asked about."""

    kind: str  # "campaign" or "churn"
    key: str  # "campaign:<id>:<metric>" or "cluster:<name-slug>:churn"; the cooldown key
    metric: str
    window_start: pd.Timestamp
    window_end: pd.Timestamp
    count: int
    exposure: int  # delivered (campaign) or sent (churn) in the window
    rate: float
    baseline: float  # the rate the model expected for these messages
    p_value: float
    p_adjusted: float
    campaign_id: int | None = None
    cluster: int | None = None
    cluster_name: str | None = None
    series: str = "all recipients"  # what was tested: "all recipients", "cluster" or "valuable plans"
    audience: dict[str, Any] = field(default_factory=dict)  # which cluster/plans the events came from
    expected: float = 0.0  # opt-outs the model expected in the window
    extra_variance: float = 0.0  # the p-value's variance of that count beyond Poisson (the report's normal range)

    @property
    def ratio(self) -> float:
        """How many times the baseline the window's rate is."""
        return self.rate / self.baseline if self.baseline > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (timestamps as ISO strings)."""
        out = asdict(self)
        out["window_start"] = self.window_start.isoformat()
        out["window_end"] = self.window_end.isoformat()
        out["ratio"] = None if math.isinf(self.ratio) else round(self.ratio, 2)
        return out


@dataclass
class TriggerResult:
    """Triggers found plus every test behind them and the checks of the model's assumptions."""

    triggers: list[Trigger]
    tests: pd.DataFrame  # one row per tested (series, window)
    parameters: dict[str, Any]
    checks: dict[str, Any] = field(default_factory=dict)  # per family: heterogeneity, dispersion, time effects

    def frame(self) -> pd.DataFrame:
        """The triggers as a table."""
        if not self.triggers:
            return pd.DataFrame(columns=[f for f in Trigger.__dataclass_fields__])
        return pd.DataFrame([asdict(t) for t in self.triggers])


# --- the model, per family --------------------------------------------------------------------


@dataclass
class _Model:
    """What a family's tests lean on besides the windows: totals, and the assumptions estimated once.

    The channel priors, the audience spread and the day-to-day dispersion are estimated with each
    source's most anomalous span set aside (`worst_spans`), so a spike neither widens the spread it
    is judged by nor passes for ordinary variation; a campaign whose audience always opts out more
    keeps all of its data and is part of the population every campaign is judged against.
    """

    family: Family
    k_total: np.ndarray  # (strata, groups + everyone)
    x_total: np.ndarray
    rates: np.ndarray  # per stratum: its channel's typical rate...
    kappas: np.ndarray  # ...and the gamma shape of its channel's sources
    audience: baselines.Dispersion  # how much audiences within a source differ (phi = CV squared)
    dispersion: baselines.Dispersion  # how much a source's days wobble
    sources: dict[str, baselines.Heterogeneity]  # per channel
    set_aside: int  # sources whose most anomalous span was set aside

    @classmethod
    def fit(cls, family: Family, start: int, end: int, windows: np.ndarray) -> _Model:
        everyone = family.everyone
        k_total, x_total = family.totals()
        spans = worst_spans(family, windows)
        clean_k, clean_x = k_total.copy(), x_total.copy()
        if spans:
            strata = sorted(spans)
            k, x, _ = family.sums(np.array([spans[s] for s in strata], dtype=np.int64))
            for j, s in enumerate(strata):
                clean_k[s] -= k[s, :, j]
                clean_x[s] -= x[s, :, j]
        clean_k, clean_x = np.maximum(clean_k, 0), np.maximum(clean_x, 0)
        rates, kappas = np.zeros(len(family.strata)), np.zeros(len(family.strata))
        sources = {}
        for channel in sorted(set(family.channel)):
            members = np.flatnonzero(family.channel == channel)
            fit = baselines.heterogeneity(clean_k[members, everyone], clean_x[members, everyone])
            rates[members], kappas[members] = fit.rate, fit.kappa
            if fit.events:
                sources[channel] = fit
        rate = clean_k[:, everyone] / np.maximum(clean_x[:, everyone], 1e-9)
        audience = baselines.audience_heterogeneity(clean_k[:, :everyone].ravel(),
                                                    (clean_x[:, :everyone] * rate[:, None]).ravel())
        days = day_windows(start, end)
        day_k, day_x, _ = family.sums(days)
        inside = np.zeros((len(family.strata), len(days)), bool)  # days touching a set-aside span
        for s, (lo, hi) in spans.items():
            inside[s] = (days[:, 0] < hi) & (days[:, 1] > lo)
        if family.kind == "churn":  # one series per audience: daily cells per source and audience
            k, x = day_k[:, :everyone], day_x[:, :everyone]
            keep = np.broadcast_to(~inside[:, None, :], k.shape)
            expected = x * rate[:, None, None]
        else:
            k, x, keep = day_k[:, everyone], day_x[:, everyone], ~inside
            expected = x * rate[:, None]
        dispersion = baselines.overdispersion(k[keep], expected[keep])
        return cls(family, k_total, x_total, rates, kappas, audience, dispersion, sources, len(spans))

    def checks(self) -> dict[str, Any]:
        """The assumptions' estimates, as the tests used them, for the report and results.json."""
        return {"sources": {ch: fit.to_dict() for ch, fit in self.sources.items()},
                "audiences": self.audience.to_dict(), "dispersion": self.dispersion.to_dict(),
                "time_effects": self.family.effects.to_dict(), "spans_set_aside": self.set_aside}


@dataclass
class _Series:
    """One tested series: its strata, audience (an index into the family's groups, or everyone),
    the channel priors its strata get, and the variance its audience and days add (as a CV squared)."""

    strata: list[int]
    group: int
    priors: tuple[np.ndarray, np.ndarray]
    extra_cv2: float


def _series(model: _Model, campaign_id: int | None, group: int) -> _Series:
    """The series of a campaign (all recipients when `group` is everyone) or of a churn audience."""
    family = model.family
    if campaign_id is not None:
        strata = [i for i, s in enumerate(family.strata) if s[0] == f"campaign:{campaign_id}"]
    else:
        strata = list(range(len(family.strata)))
    whole = group == family.everyone
    extra = model.dispersion.phi_used + (0.0 if whole else model.audience.phi_used)
    return _Series(strata, group, (model.rates, model.kappas), extra)


def _series_stats(model: _Model, series: _Series, windows: np.ndarray, sums: WindowSums) -> dict[str, np.ndarray]:
    """Count, messages, expected count, p-value and smallest possible p-value per window of one series.

    The source's rate comes from what it sent outside the window and a guard as long as the window on
    either side (a spike up to twice the window's length must not raise its own baseline) plus, for
    one audience, what the other audiences got inside that span.
    """
    everyone, strata, group = model.family.everyone, series.strata, series.group
    rate, kappa = (p[strata][:, None] for p in series.priors)
    cell_k, cell_x = sums.k[strata, group], sums.x[strata, group]
    rest_k = np.maximum(model.k_total[strata, everyone][:, None] - sums.guard_k[strata, group], 0)
    rest_x = np.maximum(model.x_total[strata, everyone][:, None] - sums.guard_x[strata, group], 0)
    mean, var = baselines.predictive(cell_x, rest_k, rest_x, rate, kappa)
    count, expected = cell_k.sum(axis=0), mean.sum(axis=0)
    extra = var.sum(axis=0) + expected ** 2 * series.extra_cv2
    p = baselines.nb_upper_tail(count, expected, extra)
    # The smallest p-value this window could give: every event of the series inside it.
    series_total = model.k_total[strata, group].sum()
    rest_min = np.maximum(model.k_total[strata, everyone] - model.k_total[strata, group], 0)[:, None]
    mean_min, var_min = baselines.predictive(cell_x, np.broadcast_to(rest_min, cell_x.shape), rest_x, rate, kappa)
    expected_min = mean_min.sum(axis=0)
    p_min = baselines.nb_upper_tail(np.full(len(windows), series_total), expected_min,
                                    var_min.sum(axis=0) + expected_min ** 2 * series.extra_cv2)
    return {"count": count, "messages": sums.n[strata, group].sum(axis=0), "expected": expected, "p_value": p,
            "p_min": p_min if series_total > 0 else np.ones(len(windows)), "extra_variance": extra}


def _series_rows(model: _Model, campaign_id: int | None, group: int, windows: np.ndarray, sums: WindowSums,
                 series: str) -> dict[str, np.ndarray]:
    family, n = model.family, len(windows)
    out = _series_stats(model, _series(model, campaign_id, group), windows, sums)
    cluster = family.groups[group] if group < family.everyone else -1
    return {"window_start": windows[:, 0], "window_end": windows[:, 1], **out,
            "campaign_id": np.full(n, -1 if campaign_id is None else campaign_id),
            "cluster": np.full(n, cluster), "series": np.full(n, series, dtype=object)}


def _campaign_tests(model: _Model, windows: np.ndarray, sums: WindowSums) -> list[dict[str, np.ndarray]]:
    family = model.family
    campaigns = sorted({int(s[0].split(":", 1)[1]) for s in family.strata if s[0].startswith("campaign:")})
    return [_series_rows(model, campaign_id, group, windows, sums,
                         "all recipients" if group == family.everyone else "cluster")
            for campaign_id in campaigns for group in [family.everyone, *range(family.everyone)]]


def _churn_tests(model: _Model, windows: np.ndarray, sums: WindowSums) -> list[dict[str, np.ndarray]]:
    return [_series_rows(model, None, group, windows, sums, "valuable plans")
            for group in range(model.family.everyone)]


def _frame(parts: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    frame = pd.DataFrame({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
    frame["cluster"] = frame["cluster"].astype("Int64").mask(frame["cluster"] < 0)
    frame["campaign_id"] = frame["campaign_id"].astype("Int64").mask(frame["campaign_id"] < 0)
    return frame


_USED_COLUMNS = ("object_type", "metric", "timestamp", "campaign_id", "newsletter_id", "broadcast_id", "delivery_id",
                 "cio_id", "failure_message", "plan", "cluster", "cluster_name")
_TEST_COLUMNS = ["kind", "key", "series", "campaign_id", "cluster", "cluster_name", "metric", "window_start",
                 "window_end", "count", "exposure", "expected", "extra_variance", "baseline", "p_value", "p_min"]


def _empty_tests() -> pd.DataFrame:
    return pd.DataFrame(columns=[*_TEST_COLUMNS, "testable", "p_adjusted", "rate", "flagged"])


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:60] or "cluster"


def _label(frame: pd.DataFrame, kind: str, metric: str, names: pd.Series) -> pd.DataFrame:
    frame = frame.rename(columns={"messages": "exposure"})
    frame["kind"], frame["metric"] = kind, metric
    frame["cluster"] = frame["cluster"].astype("Int64")
    frame["cluster_name"] = frame["cluster"].map(names)
    frame["baseline"] = np.where(frame["exposure"] > 0, frame["expected"] / frame["exposure"].clip(lower=1), 0.0)
    if kind == "campaign":
        frame["campaign_id"] = frame["campaign_id"].astype("int64")
        frame["key"] = "campaign:" + frame["campaign_id"].astype(str) + ":" + metric
    else:
        frame["key"] = "cluster:" + frame["cluster_name"].fillna(frame["cluster"].astype(str)).map(_slug) + ":churn"
    return frame[_TEST_COLUMNS]


# --- from tests to triggers -------------------------------------------------------------------


def _merge_flagged(flagged: pd.DataFrame) -> list[pd.DataFrame]:
    """Groups of overlapping flagged windows per trigger key (all series of one campaign together)."""
    groups = []
    for _, rows in flagged.sort_values(["key", "window_start"]).groupby("key", sort=False):
        current, end = [], None
        for idx, row in rows.iterrows():
            if end is not None and row["window_start"] >= end:
                groups.append(rows.loc[current])
                current = []
            current.append(idx)
            end = row["window_end"] if end is None else max(end, row["window_end"])
        groups.append(rows.loc[current])
    return groups


def audience_breakdown(hits: pd.DataFrame, exposure: pd.DataFrame, names: pd.Series | dict,
                       alpha: float) -> dict[str, Any]:
    """Which clusters and plans a window's events came from, and whether one cluster is over-represented.

    Per cluster a one-sided binomial test of its share of the events against its share of the
    exposure, Bonferroni-corrected over the clusters present.
    """
    out: dict[str, Any] = {"plans": _plan_counts(hits), "clusters": []}
    if not len(hits) or "group" not in hits or hits["group"].isna().all():
        return out
    names = dict(names)
    n, total_exposure = len(hits), max(1, len(exposure))
    rows = []
    clusters = sorted({int(c) for c in pd.concat([exposure["group"], hits["group"]]).dropna()})
    for c in clusters:
        k = int((hits["group"] == c).sum())
        share = float((exposure["group"] == c).sum()) / total_exposure
        p = float(stats.binomtest(k, n, min(max(share, 1e-9), 1.0), alternative="greater").pvalue) if k else 1.0
        rows.append({"cluster": c, "cluster_name": names.get(c), "events": k,
                     "event_share": round(k / n, 4), "exposure_share": round(share, 4),
                     "p_adjusted": min(1.0, p * len(clusters))})
    rows.sort(key=lambda r: (r["p_adjusted"], -r["events"]))
    out["clusters"] = rows
    if rows[0]["p_adjusted"] <= alpha:
        out["concentrated_in"] = {"cluster": rows[0]["cluster"], "cluster_name": rows[0]["cluster_name"]}
    return out


def _plan_counts(hits: pd.DataFrame) -> dict[str, int]:
    if not len(hits) or "plan" not in hits:
        return {}
    return {str(k): int(v) for k, v in hits["plan"].astype(object).fillna("unknown").value_counts().items()}


def _rows_of(frame: pd.DataFrame, strata: list[tuple[str, str]], group: Any | None) -> pd.DataFrame:
    scope = frame[frame["stratum"].isin(strata)]
    return scope if group is None else scope[scope["group"] == group]


def _family_strata(family: Family, row: pd.Series | dict) -> list[tuple[str, str]]:
    """The strata of a test row's series: its campaign's channels, or every source (churn)."""
    if row["kind"] == "campaign":
        return [s for s in family.strata if s[0] == f"campaign:{int(row['campaign_id'])}"]
    return list(family.strata)


def _trigger(group: pd.DataFrame, family: Family, names: pd.Series, alpha: float) -> Trigger:
    """One trigger from a group of overlapping flagged windows: its most significant window's figures."""
    best = group.sort_values(["p_adjusted", "p_value"]).iloc[0]
    start, end = int(best["window_start"]), int(best["window_end"])
    cluster = None if pd.isna(best["cluster"]) else int(best["cluster"])
    campaign_id = None if best["kind"] != "campaign" else int(best["campaign_id"])
    strata = _family_strata(family, best)
    inside = lambda f: f[(f["time"] >= start) & (f["time"] < end)]  # noqa: E731
    cluster_name = None if cluster is None else names.get(cluster)
    if campaign_id is not None:
        exposure = family.exposure[family.exposure["counted"]]
        audience = audience_breakdown(inside(_rows_of(family.hits, strata, None)),
                                      inside(_rows_of(exposure, strata, None)), names, alpha)
        flagged = group[group["series"] == "cluster"].sort_values(["p_adjusted", "p_value"])
        if cluster is None and len(flagged):  # one audience's own test was significant too
            cluster = int(flagged["cluster"].iat[0])
            cluster_name = names.get(cluster)
        elif cluster is None and "concentrated_in" in audience:
            cluster, cluster_name = audience["concentrated_in"]["cluster"], audience["concentrated_in"]["cluster_name"]
        audience["flagged_clusters"] = sorted({int(c) for c in flagged["cluster"]})
    else:
        audience = {"plans": _plan_counts(inside(_rows_of(family.hits, strata, cluster)))}
    audience["series"] = str(best["series"])
    audience["flagged_span"] = [pd.Timestamp(int(group["window_start"].min()), unit="s", tz="UTC").isoformat(),
                                pd.Timestamp(int(group["window_end"].max()), unit="s", tz="UTC").isoformat()]
    count, shown = int(best["count"]), int(best["exposure"])
    return Trigger(
        kind=str(best["kind"]), key=str(best["key"]), metric=str(best["metric"]),
        window_start=pd.Timestamp(start, unit="s", tz="UTC"), window_end=pd.Timestamp(end, unit="s", tz="UTC"),
        count=count, exposure=shown, rate=count / shown if shown else 0.0, baseline=float(best["baseline"]),
        p_value=float(best["p_value"]), p_adjusted=float(best["p_adjusted"]), campaign_id=campaign_id,
        cluster=cluster, cluster_name=None if cluster_name is None or pd.isna(cluster_name) else str(cluster_name),
        series=str(best["series"]), audience=audience, expected=round(float(best["expected"]), 3),
        extra_variance=float(best["extra_variance"]),
    )


def find_triggers(events: pd.DataFrame, *, window_hours: float = 24, step_hours: float = 12,
                  valuable_plans: Iterable[str] = ("pro", "business", "enterprise"), alpha: float = 0.05,
                  min_count: int = 3, scales: Sequence[float] = DEFAULT_SCALES) -> TriggerResult:
    """Test every campaign and cluster window, correct across all of them, merge, and return triggers.

    `events` is the enriched event log: event_id, object_type, metric, timestamp, campaign_id,
    delivery_id, plan, cluster, cluster_name (and optionally newsletter_id, broadcast_id,
    failure_message).
    """
    if not 0 < alpha < 1:
        raise InvalidParameter(f"alpha must be between 0 and 1, got {alpha}")
    if min_count < 1:
        raise InvalidParameter(f"min_count must be at least 1, got {min_count}")
    valuable_plans = [str(p) for p in valuable_plans]
    parameters = {"window_hours": window_hours, "step_hours": step_hours, "scales": list(scales),
                  "valuable_plans": valuable_plans, "alpha": alpha, "min_count": min_count,
                  "metrics": list(CAMPAIGN_METRICS),
                  "correction": "Tarone filter + Benjamini-Hochberg, overlapping windows of a key one discovery",
                  "test": "one-sided gamma-Poisson predictive: expected = messages x the source's own rate "
                          "elsewhere (pulled towards its channel's), hour-of-week/burst weights when the "
                          "data shows them; variance adds the rate's uncertainty, audience spread and "
                          "day-to-day over-dispersion",
                  "floors": {"source_cv": baselines.SOURCE_CV_FLOOR, "audience_cv": baselines.AUDIENCE_CV_FLOOR,
                             "day_cv": baselines.DAY_CV_FLOOR}}
    used = [c for c in _USED_COLUMNS if c in events]  # the statistics read only these: copy nothing else
    dated = events["timestamp"].notna()
    # Columns are replaced below, never written into: the caller's arrays can be shared.
    events = events.loc[dated, used] if not dated.all() else pd.DataFrame({c: events[c] for c in used}, copy=False)
    for column in ("campaign_id", "cluster", "cluster_name", "plan", "delivery_id", "object_type"):
        if column not in events:
            events[column] = pd.Series(None, index=events.index, dtype=object)
    events["timestamp"] = events["timestamp"].astype("int64")
    if events.empty:
        return TriggerResult([], _empty_tests(), {**parameters, "tests": 0})
    start, end = int(events["timestamp"].min()), int(events["timestamp"].max())
    windows = scan_windows(start, end, window_hours, step_hours, scales)
    delivered = cohorts.deliveries(events)
    names = events.dropna(subset=["cluster"]).groupby("cluster")["cluster_name"].first()
    names.index = names.index.astype(int)
    frames, models = [], {}
    for family, tests_of in ((campaign_family(events, delivered), _campaign_tests),
                             (churn_family(events, delivered, valuable_plans), _churn_tests)):
        if not len(family.strata):
            continue
        weigh(family, windows)
        model = _Model.fit(family, start, end, windows)
        models[family.kind] = model
        sums = WindowSums.of(family, windows)
        parts = tests_of(model, windows, sums)
        if parts:
            frames.append(_label(_frame(parts), family.kind, family.metric, names))
    tests = pd.concat(frames, ignore_index=True) if frames else _empty_tests()
    tests = tests[tests["exposure"] > 0].reset_index(drop=True) if len(tests) else tests
    _, testable = baselines.discrete_bh(tests["p_value"].to_numpy(float), tests["p_min"].to_numpy(float), alpha)
    candidates = testable & (tests["count"].to_numpy() >= min_count)
    adjusted = np.ones(len(tests))
    adjusted[candidates] = baselines.trigger_level_bh(
        tests["p_value"].to_numpy(float)[candidates], int(testable.sum()), tests["key"].to_numpy()[candidates],
        tests["window_start"].to_numpy()[candidates], tests["window_end"].to_numpy()[candidates])
    tests["p_adjusted"], tests["testable"] = adjusted, testable
    exposure = tests["exposure"].astype(float)
    tests["rate"] = np.where(exposure > 0, tests["count"].astype(float) / exposure.clip(lower=1), 0.0)
    tests["flagged"] = candidates & (tests["p_adjusted"] <= alpha)
    triggers = [_trigger(group, models[group["kind"].iat[0]].family, names, alpha)
                for group in _merge_flagged(tests[tests["flagged"]])]
    triggers.sort(key=lambda t: (t.p_adjusted, t.key))
    parameters["tests"] = int(len(tests))
    parameters["testable"] = int(tests["testable"].sum()) if len(tests) else 0
    checks = {kind: model.checks() for kind, model in models.items()}
    return TriggerResult(triggers, tests, parameters, checks)


def series_events(events: pd.DataFrame, row: pd.Series | dict, valuable_plans: Iterable[str] = ()
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events counted, exposure) of the series a test row belongs to, timestamped by their delivery."""
    delivered = cohorts.deliveries(events)
    if row["kind"] == "campaign":
        family = campaign_family(events, delivered)
    else:
        family = churn_family(events, delivered, list(valuable_plans))
    strata = _family_strata(family, row)
    group = None if row.get("cluster") is None or pd.isna(row.get("cluster")) else row["cluster"]
    hits = _rows_of(family.hits, strata, group).rename(columns={"time": "timestamp"})
    exposure = _rows_of(family.exposure[family.exposure["counted"]], strata, group).rename(
        columns={"time": "timestamp"})
    return hits, exposure
