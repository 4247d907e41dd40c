"""Job 3 spike detection: rolling-window churn and opt-out rates tested against their own baseline.

Two trigger kinds, both computed from the enriched event log (one row per event, see
`enrichment`), and both answering "is this window's rate significantly above normal?":

- `campaign`: per campaign and metric (`unsubscribed`, `spammed`), the count in a rolling window per
  delivered message of that campaign in the window, against the campaign's own rate over the rest
  of the period.
- `churn`: per audience cluster, churn signals (unsubscribes, spam complaints, hard bounces) from
  people on valuable plans, per message sent to them in the window, against the cluster's rate over
  the rest of the period.

The test. A campaign's "rest of the period" is often a few hundred deliveries with no unsubscribe
at all, so a plain two-sample test has no power and a plug-in baseline of 0 flags everything. The
baseline is therefore the posterior of the rate given the rest of the period, starting from a
Beta prior centred on the whole channel's rate (or all valuable customers' rate) and worth
`prior_weight` deliveries; the p-value is the one-sided tail of the beta-binomial predictive
distribution of the window's count (the baseline's own uncertainty included). A campaign with a
long history is judged by its own rate; a young one leans on its channel.

Multiple testing. Benjamini-Hochberg over every tested (key, window). Only series with at least
`min_count` events over the whole period are tested (independent filtering: the total count does
not depend on where in time the events fall, which is what the test is about), and a window is
flagged only when it also holds `min_count` events itself. Overlapping flagged windows of one key
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
from statsmodels.stats.multitest import multipletests

from cio_mavera.errors import InvalidParameter

__all__ = [
    "CAMPAIGN_METRICS",
    "TriggerResult",
    "Trigger",
    "benjamini_hochberg",
    "campaign_rate_tests",
    "churn_tests",
    "exceedance_test",
    "find_triggers",
    "is_hard_bounce",
    "rolling_windows",
]

CAMPAIGN_METRICS = ("opt_out",)
# Composite metrics: "opt_out" counts unsubscribes and spam complaints together (one decision by the
# recipient to stop hearing from you), which doubles the evidence per window over testing each alone.
METRIC_EVENTS = {"opt_out": ("unsubscribed", "spammed")}
CHURN_METRICS = ("unsubscribed", "spammed")  # plus hard bounces
DEFAULT_PRIOR_WEIGHT = 1000.0
MIN_PEER_EXPOSURE = 100  # fewer messages than this to other series: the prior pools every series
_HOUR = 3600
# Permanent failures: bad mailbox (SMTP 5.1.x / 550, 551, 553 "user unknown"), from reference §5.4's
# `failure_message`. Mailbox-full (5.2.2) and content blocks (5.7.1) are temporary or policy bounces.
_HARD_BOUNCE = re.compile(r"\b5\.1\.\d\b|\b55[013]\b.*(?:not exist|unknown|no such|invalid)|does not exist|"
                          r"user unknown|no such user|invalid (?:recipient|address)", re.I)


@dataclass(frozen=True)
class Trigger:
    """A window whose rate is significantly above its own baseline: what research is asked about."""

    kind: str  # "campaign" or "churn"
    key: str  # "campaign:<id>:<metric>" or "cluster:<name-slug>:churn"; the cooldown key
    metric: str
    window_start: pd.Timestamp
    window_end: pd.Timestamp
    count: int
    exposure: int  # delivered (campaign) or sent (churn) in the window
    rate: float
    baseline: float
    p_value: float
    p_adjusted: float
    campaign_id: int | None = None
    cluster: int | None = None
    cluster_name: str | None = None
    series: str = "all recipients"  # what was tested: "all recipients", "cluster" or "valuable plans"
    audience: dict[str, Any] = field(default_factory=dict)  # which cluster/plans the events came from

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
    """Triggers found plus every test behind them (for the report's tables and charts)."""

    triggers: list[Trigger]
    tests: pd.DataFrame  # one row per tested (key, window)
    parameters: dict[str, Any]

    def frame(self) -> pd.DataFrame:
        """The triggers as a table."""
        if not self.triggers:
            return pd.DataFrame(columns=[f for f in Trigger.__dataclass_fields__])
        return pd.DataFrame([asdict(t) for t in self.triggers])


# --- building blocks ------------------------------------------------------------------------


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


def exceedance_test(count: np.ndarray, exposure: np.ndarray, rest_count: np.ndarray,
                    rest_exposure: np.ndarray, prior_rate: float, prior_weight: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(one-sided p-value, baseline rate) of `count` events in `exposure` trials given the rest.

    Baseline rate ~ Beta(prior_rate*w + rest_count, (1-prior_rate)*w + rest_exposure - rest_count);
    the p-value is P(X >= count) for X ~ BetaBinomial(exposure, that Beta).
    """
    count = np.asarray(count, dtype=float)
    exposure = np.maximum(np.asarray(exposure, dtype=float), count)
    rest_count = np.asarray(rest_count, dtype=float)
    rest_exposure = np.maximum(np.asarray(rest_exposure, dtype=float), rest_count)
    if not 0 < prior_rate < 1 or prior_weight <= 0:
        raise InvalidParameter(f"prior_rate must be in (0, 1) and prior_weight > 0, got {prior_rate}, "
                               f"{prior_weight}")
    a = prior_rate * prior_weight + rest_count
    b = (1 - prior_rate) * prior_weight + rest_exposure - rest_count
    p = stats.betabinom.sf(count - 1, exposure.astype(np.int64), a, b)
    p = np.where(count <= 0, 1.0, np.clip(p, 0.0, 1.0))
    return p, a / (a + b)


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (same order; empty in, empty out)."""
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return p
    return multipletests(p, method="fdr_bh")[1]


def is_hard_bounce(object_type: pd.Series, metric: pd.Series, failure_message: pd.Series) -> pd.Series:
    """True for permanent delivery failures: bad mailboxes (email) and invalid device tokens (push)."""
    bounced = metric.eq("bounced")
    text = failure_message.fillna("").astype(str)
    email_hard = object_type.eq("email") & text.str.contains(_HARD_BOUNCE)
    push_hard = object_type.eq("push")  # §5.4: a push bounce means at least one invalid token
    return bounced & (email_hard | push_hard)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:60] or "cluster"


def _window_counts(times: np.ndarray, windows: np.ndarray) -> np.ndarray:
    times = np.sort(times)
    return (np.searchsorted(times, windows[:, 1], side="left")
            - np.searchsorted(times, windows[:, 0], side="left"))


def _series_tests(hits: pd.DataFrame, exposure: pd.DataFrame, windows: np.ndarray, *, group: list[str],
                  metric: str, priors: dict[Any, float], prior_weight: float) -> pd.DataFrame:
    """One row per (series in `priors`, window): count, exposure, rest, baseline and p-value."""
    rows = []
    hits_by = {_as_key(k): g["timestamp"].to_numpy() for k, g in hits.groupby(group)}
    exposure_by = {_as_key(k): g["timestamp"].to_numpy() for k, g in exposure.groupby(group)}
    for series, prior in priors.items():
        times = hits_by.get(series, np.empty(0, np.int64))
        shown = exposure_by.get(series, np.empty(0, np.int64))
        counts, sent = _window_counts(times, windows), _window_counts(shown, windows)
        total, total_exposure = len(times), len(shown)
        p, baseline = exceedance_test(counts, sent, total - counts, total_exposure - sent, prior, prior_weight)
        frame = pd.DataFrame({
            "metric": metric, "window_start": windows[:, 0], "window_end": windows[:, 1], "count": counts,
            "exposure": np.maximum(sent, counts), "total": total, "total_exposure": total_exposure,
            "prior_rate": prior, "baseline": baseline, "p_value": p})
        for name, value in zip(group, series, strict=True):
            frame.insert(0, name, value)
        rows.append(frame)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _as_key(key: Any) -> tuple:
    return key if isinstance(key, tuple) else (key,)


def _prior(numerator: int, denominator: int) -> float:
    # Jeffreys-style smoothing keeps the prior strictly inside (0, 1) for quiet channels.
    return (numerator + 0.5) / (denominator + 1.0)


def _period(events: pd.DataFrame) -> tuple[int, int]:
    ts = events["timestamp"].dropna()
    return int(ts.min()), int(ts.max())


def _level_tests(hits: pd.DataFrame, exposure: pd.DataFrame, windows: np.ndarray, *, group: list[str],
                 metric: str, min_count: int, prior_weight: float) -> pd.DataFrame:
    """Tests for every series of `group` with `min_count` events; prior = the other campaigns' rate.

    For campaign x cluster series the prior is the same cluster's rate on the other campaigns, since
    audiences differ in how readily they opt out.
    """
    totals = hits.groupby(group).size()
    shown = exposure.groupby(group).size()
    tested = [_as_key(k) for k in totals[totals >= min_count].index]
    if not tested:
        return pd.DataFrame()
    peer = group[1:]  # () for campaigns; ("cluster",) for campaign x cluster
    priors = {}
    for key in tested:
        same_peer = np.ones(len(hits), bool) if not peer else (hits[peer[0]] == key[1]).to_numpy()
        same_peer_exposure = np.ones(len(exposure), bool) if not peer else (exposure[peer[0]] == key[1]).to_numpy()
        own = key if len(key) > 1 else key[0]
        n_hits = int(same_peer.sum()) - int(totals.get(own, 0))
        n_exposure = int(same_peer_exposure.sum()) - int(shown.get(own, 0))
        if n_exposure < MIN_PEER_EXPOSURE:  # no peers to speak of (one cluster, one campaign): pool everyone
            n_hits, n_exposure = int(same_peer.sum()), int(same_peer_exposure.sum())
        priors[key] = _prior(max(0, n_hits), max(0, n_exposure))
    return _series_tests(hits, exposure, windows, group=group, metric=metric, priors=priors,
                         prior_weight=prior_weight)


# --- the two trigger families -----------------------------------------------------------------


def campaign_rate_tests(events: pd.DataFrame, windows: np.ndarray, *, metrics: Iterable[str] = CAMPAIGN_METRICS,
                        min_count: int = 3, prior_weight: float = DEFAULT_PRIOR_WEIGHT) -> pd.DataFrame:
    """Per campaign (all recipients, and each audience cluster), metric and window: count per delivered
    vs that series' own rest-of-period rate."""
    with_campaign = events[events["campaign_id"].notna()]
    delivered = with_campaign[with_campaign["metric"] == "delivered"]
    channel = delivered.groupby("campaign_id")["object_type"].agg(lambda s: s.mode().iat[0])
    frames = []
    for metric in metrics:
        hits = with_campaign[with_campaign["metric"].isin(METRIC_EVENTS.get(metric, (metric,)))]
        for ch, campaigns in channel.groupby(channel):
            ids = set(campaigns.index)
            ch_hits = hits[hits["campaign_id"].isin(ids)]
            ch_delivered = delivered[delivered["campaign_id"].isin(ids)]
            whole = _level_tests(ch_hits, ch_delivered, windows, group=["campaign_id"], metric=metric,
                                 min_count=min_count, prior_weight=prior_weight)
            by_cluster = _level_tests(ch_hits.dropna(subset=["cluster"]), ch_delivered.dropna(subset=["cluster"]),
                                      windows, group=["campaign_id", "cluster"], metric=metric,
                                      min_count=min_count, prior_weight=prior_weight)
            for frame in (whole, by_cluster):
                if len(frame):
                    frames.append(frame.assign(channel=ch))
    if not frames:
        return _empty_tests("campaign_id")
    out = pd.concat(frames, ignore_index=True)
    if "cluster" not in out:
        out["cluster"] = np.nan
    out["campaign_id"] = out["campaign_id"].astype("int64")
    out["cluster"] = out["cluster"].astype("Int64")
    names = events.dropna(subset=["cluster"]).groupby("cluster")["cluster_name"].first()
    out["cluster_name"] = out["cluster"].map(names)
    out["kind"] = "campaign"
    out["series"] = np.where(out["cluster"].isna(), "all recipients", "cluster")
    out["key"] = "campaign:" + out["campaign_id"].astype(str) + ":" + out["metric"]
    return out


def churn_tests(events: pd.DataFrame, windows: np.ndarray, *, valuable_plans: Iterable[str],
                min_count: int = 3, prior_weight: float = DEFAULT_PRIOR_WEIGHT) -> pd.DataFrame:
    """Per cluster and window: churn signals from valuable-plan people per message sent to them."""
    valuable = events[_valuable(events, valuable_plans) & events["cluster"].notna()]
    churn = valuable[_churn_mask(valuable)]
    sent = valuable[valuable["metric"] == "sent"]
    out = _level_tests(churn, sent, windows, group=["cluster"], metric="churn", min_count=min_count,
                       prior_weight=prior_weight)
    if out.empty:
        return _empty_tests("cluster")
    out["cluster"] = out["cluster"].astype("Int64")
    names = events.dropna(subset=["cluster"]).groupby("cluster")["cluster_name"].first()
    out["cluster_name"] = out["cluster"].map(names)
    out["kind"] = "churn"
    out["series"] = "valuable plans"
    out["key"] = "cluster:" + out["cluster_name"].fillna(out["cluster"].astype(str)).map(_slug) + ":churn"
    return out


def _valuable(events: pd.DataFrame, plans: Iterable[str]) -> pd.Series:
    wanted = {str(p).lower() for p in plans}
    return events["plan"].astype("string").str.lower().isin(wanted).fillna(False).astype(bool)


def _churn_mask(events: pd.DataFrame) -> pd.Series:
    failure = events["failure_message"] if "failure_message" in events else pd.Series(None, index=events.index)
    return events["metric"].isin(CHURN_METRICS) | is_hard_bounce(events["object_type"], events["metric"], failure)


def _empty_tests(group: str) -> pd.DataFrame:
    return pd.DataFrame(columns=["kind", "key", "series", "campaign_id", "cluster", "cluster_name", "metric",
                                 "window_start", "window_end", "count", "exposure", "total", "total_exposure",
                                 "prior_rate", "baseline", "p_value"])


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


def audience_breakdown(events: pd.DataFrame, hits: pd.DataFrame, exposure: pd.DataFrame,
                       alpha: float) -> dict[str, Any]:
    """Which clusters and plans a window's events came from, and whether one cluster is over-represented.

    Per cluster a one-sided binomial test of its share of the events against its share of the
    exposure, Bonferroni-corrected over the clusters present.
    """
    out: dict[str, Any] = {"plans": _plan_counts(hits), "clusters": []}
    if not len(hits) or "cluster" not in hits or hits["cluster"].isna().all():
        return out
    names = _cluster_names(events)
    n, total_exposure = len(hits), max(1, len(exposure))
    rows = []
    clusters = sorted(set(exposure["cluster"].dropna()) | set(hits["cluster"].dropna()))
    for c in clusters:
        k = int((hits["cluster"] == c).sum())
        share = float((exposure["cluster"] == c).sum()) / total_exposure
        p = float(stats.binomtest(k, n, min(max(share, 1e-9), 1.0), alternative="greater").pvalue) if k else 1.0
        rows.append({"cluster": int(c), "cluster_name": names.get(c), "events": k,
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


def _cluster_names(events: pd.DataFrame) -> pd.Series:
    if "cluster_name" not in events:
        return pd.Series(dtype=object)
    return events.dropna(subset=["cluster"]).groupby("cluster")["cluster_name"].first()


def series_events(events: pd.DataFrame, row: pd.Series | dict, valuable_plans: Iterable[str] = ()
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events counted, exposure) of the series a test row belongs to."""
    if row["kind"] == "campaign":
        scope = events[events["campaign_id"] == row["campaign_id"]]
        if not pd.isna(row.get("cluster")):
            scope = scope[scope["cluster"] == row["cluster"]]
        hits = scope[scope["metric"].isin(METRIC_EVENTS.get(row["metric"], (row["metric"],)))]
        return hits, scope[scope["metric"] == "delivered"]
    scope = events[(events["cluster"] == row["cluster"]) & _valuable(events, valuable_plans)]
    return scope[_churn_mask(scope)], scope[scope["metric"] == "sent"]


def _trigger(group: pd.DataFrame, events: pd.DataFrame, *, valuable_plans: Sequence[str],
             prior_weight: float, alpha: float) -> Trigger:
    best = group.sort_values(["p_adjusted", "p_value"]).iloc[0]
    start, end = int(group["window_start"].min()), int(group["window_end"].max())
    hits, exposure = series_events(events, best, valuable_plans)
    inside = lambda f: f[(f["timestamp"] >= start) & (f["timestamp"] < end)]  # noqa: E731
    hits_in, exposure_in = inside(hits), inside(exposure)
    count, shown = len(hits_in), max(len(exposure_in), len(hits_in))
    p, baseline = exceedance_test(np.array([count]), np.array([shown]), np.array([len(hits) - count]),
                                  np.array([len(exposure) - len(exposure_in)]), float(best["prior_rate"]),
                                  prior_weight)
    kind = best["kind"]
    cluster = None if pd.isna(best.get("cluster")) else int(best["cluster"])
    cluster_name = None if cluster is None else best.get("cluster_name")
    if kind == "campaign":
        # The audience is described over all recipients of the campaign in the span.
        all_rows = dict(best)
        all_rows["cluster"] = None
        campaign_hits, campaign_exposure = series_events(events, all_rows)
        audience = audience_breakdown(events, inside(campaign_hits), inside(campaign_exposure), alpha)
        if cluster is None and "concentrated_in" in audience:
            cluster, cluster_name = audience["concentrated_in"]["cluster"], audience["concentrated_in"]["cluster_name"]
    else:
        audience = {"plans": _plan_counts(hits_in)}
    audience["series"] = best["series"]
    return Trigger(
        kind=kind, key=best["key"], metric=best["metric"],
        window_start=pd.Timestamp(start, unit="s", tz="UTC"), window_end=pd.Timestamp(end, unit="s", tz="UTC"),
        count=int(count), exposure=int(shown), rate=count / shown if shown else 0.0,
        baseline=float(baseline[0]), p_value=float(p[0]), p_adjusted=float(group["p_adjusted"].min()),
        campaign_id=int(best["campaign_id"]) if kind == "campaign" else None,
        cluster=cluster, cluster_name=None if cluster_name is None or pd.isna(cluster_name) else str(cluster_name),
        series=str(best["series"]), audience=audience,
    )


def find_triggers(events: pd.DataFrame, *, window_hours: float = 24, step_hours: float = 6,
                  valuable_plans: Iterable[str] = ("pro", "business", "enterprise"), alpha: float = 0.05,
                  min_count: int = 3, prior_weight: float = DEFAULT_PRIOR_WEIGHT) -> TriggerResult:
    """Test every campaign and cluster window, correct across all of them, merge, and return triggers.

    `events` is the enriched event log: event_id, object_type, metric, timestamp, campaign_id, plan,
    cluster, cluster_name (and optionally failure_message).
    """
    if not 0 < alpha < 1:
        raise InvalidParameter(f"alpha must be between 0 and 1, got {alpha}")
    if min_count < 1:
        raise InvalidParameter(f"min_count must be at least 1, got {min_count}")
    valuable_plans = [str(p) for p in valuable_plans]
    parameters = {"window_hours": window_hours, "step_hours": step_hours, "valuable_plans": valuable_plans,
                  "alpha": alpha, "min_count": min_count, "prior_weight": prior_weight,
                  "metrics": list(CAMPAIGN_METRICS), "correction": "benjamini-hochberg",
                  "test": "one-sided beta-binomial predictive: baseline = the series' own rest-of-period "
                          "rate with a Beta prior at the other campaigns' rate"}
    events = events[events["timestamp"].notna()].copy()
    for column in ("campaign_id", "cluster", "cluster_name", "plan"):
        if column not in events:
            events[column] = pd.Series(None, index=events.index, dtype=object)
    events["timestamp"] = events["timestamp"].astype("int64")
    if events.empty:
        return TriggerResult([], _empty_tests("campaign_id"), parameters)
    windows = rolling_windows(*_period(events), window_hours, step_hours)
    parts = [campaign_rate_tests(events, windows, min_count=min_count, prior_weight=prior_weight),
             churn_tests(events, windows, valuable_plans=valuable_plans, min_count=min_count,
                         prior_weight=prior_weight)]
    tests = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) \
        else _empty_tests("campaign_id")
    tests["p_adjusted"] = benjamini_hochberg(tests["p_value"].to_numpy(dtype=float))
    exposure = tests["exposure"].astype(float)
    tests["rate"] = np.where(exposure > 0, tests["count"].astype(float) / exposure.clip(lower=1), 0.0)
    tests["flagged"] = (tests["p_adjusted"] <= alpha) & (tests["count"] >= min_count)
    triggers = [_trigger(group, events, valuable_plans=valuable_plans, prior_weight=prior_weight, alpha=alpha)
                for group in _merge_flagged(tests[tests["flagged"]])]
    triggers.sort(key=lambda t: (t.p_adjusted, t.key))
    parameters["tests"] = int(len(tests))
    return TriggerResult(triggers, tests, parameters)
