"""Job 1 analysis: funnel rates per message, channel baselines and multiple-testing-corrected underperformers.

Pure pandas/statsmodels: no HTTP, no plotting. Inputs are the tidy frames the datasets layer builds:

- metrics: long frame `campaign_id, action_id (nullable), bucket_start (tz-aware UTC), metric, value`,
  one row per v2 series bucket; only action-level rows (non-null `action_id`) are used.
- actions: `action_id, campaign_id, channel, name, subject` (subject is null for push/SMS).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from cio_mavera.errors import CioMaveraError

__all__ = [
    "RATE_DEFINITIONS",
    "AnalysisInputError",
    "RateDefinition",
    "action_rates",
    "channel_baselines",
    "daily_trend",
    "find_underperformers",
    "funnel_table",
    "rate_definition",
]


class AnalysisInputError(CioMaveraError, ValueError):
    """An input frame is missing columns or names an unknown rate."""


@dataclass(frozen=True)
class RateDefinition:
    """One funnel rate: successes / (denominator - subtract), with a raw fallback for the human_* series."""

    name: str
    label: str
    numerator: str
    denominator: str
    subtract: str | None = None
    higher_is_better: bool = True
    # Pre-2025 data has no human_* series (human_opened reliable from 2025-03-20, human_clicked from
    # 2025-04-20), so these rates fall back to the raw series, which include machine opens/clicks.
    raw_numerator: str | None = None
    raw_denominator: str | None = None
    channels: frozenset[str] = frozenset()

    @property
    def human_series(self) -> tuple[str, ...]:
        """The human_* series this rate needs, which decide whether the raw fallback applies."""
        return tuple(s for s in (self.numerator, self.denominator) if s.startswith("human_"))

    def series(self, raw: bool) -> tuple[str, str]:
        """(numerator, denominator) series names for the human or the raw variant."""
        if raw:
            return (self.raw_numerator or self.numerator, self.raw_denominator or self.denominator)
        return self.numerator, self.denominator


# Channels follow the reporting-webhook metric lists (customerio-api.md §5.4): SMS (twilio) has no
# opens; spam complaints exist only for email; push has no unsubscribe link.
_DELIVERED = frozenset({"email", "push", "twilio", "whatsapp"})
_OPENABLE = frozenset({"email", "push", "whatsapp"})
_UNSUBSCRIBABLE = frozenset({"email", "twilio", "whatsapp"})

RATE_DEFINITIONS: tuple[RateDefinition, ...] = (
    RateDefinition("delivery_rate", "Delivery rate", "delivered", "sent", channels=_DELIVERED),
    RateDefinition("human_open_rate", "Human open rate", "human_opened", "delivered",
                   subtract="open_untracked", raw_numerator="opened", channels=_OPENABLE),
    RateDefinition("human_click_rate", "Human click rate", "human_clicked", "delivered",
                   subtract="link_untracked", raw_numerator="clicked", channels=_DELIVERED),
    RateDefinition("click_to_open_rate", "Click-to-open rate", "human_clicked", "human_opened",
                   raw_numerator="clicked", raw_denominator="opened", channels=_OPENABLE),
    RateDefinition("conversion_rate", "Conversion rate", "converted", "delivered", channels=_DELIVERED),
    RateDefinition("unsubscribe_rate", "Unsubscribe rate", "unsubscribed", "delivered",
                   higher_is_better=False, channels=_UNSUBSCRIBABLE),
    RateDefinition("bounce_rate", "Bounce rate", "bounced", "sent", higher_is_better=False,
                   channels=_DELIVERED),
    RateDefinition("spam_complaint_rate", "Spam complaint rate", "spammed", "delivered",
                   higher_is_better=False, channels=frozenset({"email"})),
)

_BY_NAME = {d.name: d for d in RATE_DEFINITIONS}
_METRICS_COLUMNS = ("campaign_id", "action_id", "bucket_start", "metric", "value")
_ACTIONS_COLUMNS = ("action_id", "campaign_id", "channel")
_RATES_COLUMNS = ("campaign_id", "action_id", "channel", "metric", "successes", "trials")
# Cochran's rule: below 5 expected events in any cell the normal approximation is unreliable.
_MIN_EXPECTED_FOR_Z = 5.0


def rate_definition(name: str) -> RateDefinition:
    """The definition of the rate called `name`."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise AnalysisInputError(
            f"Unknown rate {name!r}; choose one of {', '.join(_BY_NAME)}") from None


# --- counts per action ------------------------------------------------------------------------


def action_rates(metrics: pd.DataFrame, actions: pd.DataFrame,
                 start: pd.Timestamp | str | None = None,
                 end: pd.Timestamp | str | None = None) -> pd.DataFrame:
    """One row per (action, applicable rate) over [start, end): counts, rate and Wilson 95% interval.

    The human/raw fallback is decided per channel over the window, so every action of a channel is
    measured the same way; `numerator_series` and `denominator_series` record which was used.
    Successes are capped at trials (e.g. human clicks on messages whose opens were not tracked).
    """
    totals = _series_totals_per_action(metrics, actions, start, end)
    rows = [_rates_for_channel(group, channel) for channel, group in totals.groupby("channel", sort=True)]
    rows = [r for r in rows if not r.empty]
    if not rows:
        return _empty_rates()
    rates = pd.concat(rows, ignore_index=True)
    rates["rate"], rates["ci_low"], rates["ci_high"] = _rate_and_wilson(rates["successes"], rates["trials"])
    rates["_order"] = rates["metric"].map({d.name: i for i, d in enumerate(RATE_DEFINITIONS)})
    rates = rates.sort_values(["campaign_id", "action_id", "_order"], kind="stable")
    return rates.reset_index(drop=True)[list(_empty_rates().columns)]


def _empty_rates() -> pd.DataFrame:
    return pd.DataFrame({
        "campaign_id": pd.Series(dtype="int64"), "action_id": pd.Series(dtype="int64"),
        "channel": pd.Series(dtype="object"), "name": pd.Series(dtype="object"),
        "metric": pd.Series(dtype="object"), "successes": pd.Series(dtype="int64"),
        "trials": pd.Series(dtype="int64"), "rate": pd.Series(dtype="float64"),
        "ci_low": pd.Series(dtype="float64"), "ci_high": pd.Series(dtype="float64"),
        "higher_is_better": pd.Series(dtype="bool"), "numerator_series": pd.Series(dtype="object"),
        "denominator_series": pd.Series(dtype="object"),
    })


def _series_totals_per_action(metrics: pd.DataFrame, actions: pd.DataFrame,
                              start: pd.Timestamp | str | None,
                              end: pd.Timestamp | str | None) -> pd.DataFrame:
    """Wide frame: one row per action (every action in `actions`), one column per series summed over the window."""
    _require_columns(metrics, _METRICS_COLUMNS, "metrics")
    _require_columns(actions, _ACTIONS_COLUMNS, "actions")
    rows = _action_rows_in_window(metrics, start, end)
    known = set(actions["action_id"].astype("int64"))
    unknown = sorted(set(rows["action_id"]) - known)
    if unknown:
        warnings.warn(f"metrics for {len(unknown)} action(s) absent from the actions table were ignored "
                      f"(first: {unknown[:5]}); their channel is unknown", stacklevel=3)
    wide = rows.pivot_table(index="action_id", columns="metric", values="value", aggfunc="sum", fill_value=0)
    described = actions.drop_duplicates("action_id").copy()
    described["action_id"] = described["action_id"].astype("int64")
    described["campaign_id"] = described["campaign_id"].astype("int64")
    if "name" not in described:
        described["name"] = None
    described = described[["action_id", "campaign_id", "channel", "name"]].set_index("action_id")
    # Actions with no metric rows stay (as zeros) so they are reported as untested, not dropped.
    return described.join(wide, how="left").fillna({c: 0 for c in wide.columns}).reset_index()


def _action_rows_in_window(metrics: pd.DataFrame, start: pd.Timestamp | str | None,
                           end: pd.Timestamp | str | None) -> pd.DataFrame:
    rows = metrics[metrics["action_id"].notna()]
    when = pd.to_datetime(rows["bucket_start"], utc=True)
    keep = pd.Series(True, index=rows.index)
    if start is not None:
        keep &= when >= _as_utc(start)
    if end is not None:
        keep &= when < _as_utc(end)
    rows = rows[keep].copy()
    rows["action_id"] = rows["action_id"].astype("int64")
    rows["value"] = rows["value"].astype("int64")
    return rows


def _rates_for_channel(totals: pd.DataFrame, channel: str) -> pd.DataFrame:
    frames = []
    for definition in RATE_DEFINITIONS:
        if channel not in definition.channels:
            continue
        raw = _uses_raw_series(definition, totals)
        successes, trials = _counts(totals, definition, raw)
        numerator, denominator = definition.series(raw)
        frames.append(pd.DataFrame({
            "campaign_id": totals["campaign_id"].to_numpy(),
            "action_id": totals["action_id"].to_numpy(),
            "channel": channel,
            "name": totals["name"].to_numpy(),
            "metric": definition.name,
            "successes": successes.to_numpy(),
            "trials": trials.to_numpy(),
            "higher_is_better": definition.higher_is_better,
            "numerator_series": numerator,
            "denominator_series": denominator + (f" - {definition.subtract}" if definition.subtract else ""),
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _uses_raw_series(definition: RateDefinition, totals: pd.DataFrame) -> bool:
    """True when a human_* series this rate needs is absent or all zero in these rows (older data)."""
    if definition.raw_numerator is None and definition.raw_denominator is None:
        return False
    return any(s not in totals or totals[s].sum() == 0 for s in definition.human_series)


def _counts(totals: pd.DataFrame, definition: RateDefinition, raw: bool) -> tuple[pd.Series, pd.Series]:
    numerator, denominator = definition.series(raw)
    trials = _column(totals, denominator)
    if definition.subtract:
        trials = trials - _column(totals, definition.subtract)
    trials = trials.clip(lower=0).astype("int64")
    successes = _column(totals, numerator).clip(lower=0).astype("int64")
    return np.minimum(successes, trials), trials


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame:
        return frame[name].astype("int64")
    return pd.Series(0, index=frame.index, dtype="int64")


def _rate_and_wilson(successes: pd.Series, trials: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point rate and Wilson 95% interval; NaN where there are no trials."""
    s = successes.to_numpy(dtype=float)
    n = trials.to_numpy(dtype=float)
    has_trials = n > 0
    rate = np.full(len(n), np.nan)
    low = np.full(len(n), np.nan)
    high = np.full(len(n), np.nan)
    if has_trials.any():
        rate[has_trials] = s[has_trials] / n[has_trials]
        low[has_trials], high[has_trials] = proportion_confint(
            s[has_trials], n[has_trials], alpha=0.05, method="wilson")
    return rate, low, high


# --- baselines and tests ----------------------------------------------------------------------


def channel_baselines(rates: pd.DataFrame) -> pd.DataFrame:
    """Pooled rate per (channel, rate) over every action, with a Wilson interval.

    This includes each action itself: it is the workspace figure to show on a chart. The test in
    `find_underperformers` compares each action with the *rest* of its channel (leave-one-out), so
    a large underperformer does not drag its own baseline towards it.
    """
    _require_columns(rates, _RATES_COLUMNS, "rates")
    pooled = (rates.groupby(["channel", "metric"], sort=True)
              .agg(successes=("successes", "sum"), trials=("trials", "sum"), actions=("action_id", "nunique"))
              .reset_index())
    pooled["rate"], pooled["ci_low"], pooled["ci_high"] = _rate_and_wilson(pooled["successes"], pooled["trials"])
    return pooled


def find_underperformers(rates: pd.DataFrame, alpha: float = 0.05, min_trials: int = 500,
                         min_relative_drop: float = 0.10) -> pd.DataFrame:
    """Test every (action, rate) against the rest of its channel; flag BH-significant, material shortfalls.

    Test: one-sided two-proportion z-test (pooled variance) in the "worse" direction (lower for good
    rates, higher for unsubscribe/bounce/spam). With at least `min_trials` per action it is accurate
    and cheap; where any expected cell count is below 5 (rare events such as spam complaints) the
    normal approximation is poor, so Fisher's exact test (one-sided, conservative) is used instead
    and `test` says which. Benjamini-Hochberg adjusts across all tests performed.

    Caveat: it treats deliveries as independent draws. Real actions differ by more than binomial
    noise, so on live data small differences become "significant"; `min_relative_drop` keeps the
    flags to differences that matter. Rows that were not tested say why in `reason`.
    """
    _require_columns(rates, _RATES_COLUMNS, "rates")
    if rates.empty:
        return _empty_result()
    result = _with_leave_one_out_baseline(rates)
    result["reason"] = _untested_reason(result, min_trials)
    tested = result["reason"].isna()
    outcomes = [_one_sided_test(row) for row in result[tested].itertuples(index=False)]
    result["test"] = None
    result["z"] = np.nan
    result["p_value"] = np.nan
    if outcomes:
        result.loc[tested, ["test", "z", "p_value"]] = pd.DataFrame(
            outcomes, columns=["test", "z", "p_value"], index=result.index[tested])
    result["p_adjusted"] = np.nan
    if tested.any():
        result.loc[tested, "p_adjusted"] = multipletests(
            result.loc[tested, "p_value"].astype(float), alpha=alpha, method="fdr_bh")[1]
    result["relative_difference"] = _relative_difference(result["rate"], result["baseline"])
    worse_by = np.where(result["higher_is_better"], -result["relative_difference"], result["relative_difference"])
    result["flagged"] = tested & (result["p_adjusted"] < alpha) & (worse_by >= min_relative_drop)
    result = result.sort_values(["p_adjusted", "p_value", "action_id"], na_position="last", kind="stable")
    return result.reset_index(drop=True)[list(_empty_result().columns)]


_RESULT_COLUMNS = ("campaign_id", "action_id", "channel", "name", "metric", "rate", "ci_low", "ci_high",
                   "baseline", "relative_difference", "z", "p_value", "p_adjusted", "successes", "trials",
                   "flagged", "test", "reason", "higher_is_better")


def _empty_result() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in _RESULT_COLUMNS})


def _with_leave_one_out_baseline(rates: pd.DataFrame) -> pd.DataFrame:
    """Adds rest_successes, rest_trials and baseline: the channel's pooled rate without this action."""
    result = rates.copy()
    if "name" not in result:
        result["name"] = None
    if "higher_is_better" not in result:
        result["higher_is_better"] = result["metric"].map(lambda m: rate_definition(m).higher_is_better)
    if "rate" not in result or "ci_low" not in result:
        result["rate"], result["ci_low"], result["ci_high"] = _rate_and_wilson(result["successes"], result["trials"])
    group = result.groupby(["channel", "metric"])
    result["rest_successes"] = group["successes"].transform("sum") - result["successes"]
    result["rest_trials"] = group["trials"].transform("sum") - result["trials"]
    result["baseline"] = result["rest_successes"] / result["rest_trials"].where(result["rest_trials"] > 0)
    return result


def _untested_reason(result: pd.DataFrame, min_trials: int) -> pd.Series:
    reason = pd.Series(None, index=result.index, dtype="object")
    reason[result["rest_trials"] <= 0] = "no other actions on this channel to compare with"
    reason[result["trials"] < min_trials] = f"fewer than {min_trials} trials"
    return reason


def _one_sided_test(row: object) -> tuple[str, float, float]:
    """(test name, z, one-sided p) for this action against the rest of its channel, in the worse direction."""
    s, n = int(row.successes), int(row.trials)
    rest_s, rest_n = int(row.rest_successes), int(row.rest_trials)
    z = _two_proportion_z(s, n, rest_s, rest_n)
    pooled = (s + rest_s) / (n + rest_n)
    expected = np.array([n * pooled, n * (1 - pooled), rest_n * pooled, rest_n * (1 - pooled)])
    if expected.min() >= _MIN_EXPECTED_FOR_Z:
        p = stats.norm.cdf(z) if row.higher_is_better else stats.norm.sf(z)
        return "z", z, float(p)
    table = [[s, n - s], [rest_s, rest_n - rest_s]]
    alternative = "less" if row.higher_is_better else "greater"
    return "fisher_exact", z, float(stats.fisher_exact(table, alternative=alternative).pvalue)


def _two_proportion_z(s1: int, n1: int, s2: int, n2: int) -> float:
    """Pooled-variance z statistic for p1 - p2 (0 when both proportions are 0 or both 1)."""
    pooled = (s1 + s2) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0
    return float((s1 / n1 - s2 / n2) / se)


def _relative_difference(rate: pd.Series, baseline: pd.Series) -> pd.Series:
    """(rate - baseline) / baseline; +inf when the baseline is 0 and the rate is not."""
    rate = rate.astype(float)
    baseline = baseline.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = (rate - baseline) / baseline
    relative = relative.where(baseline != 0, np.where(rate > 0, np.inf, 0.0))
    return relative.where(baseline.notna() & rate.notna())


# --- trend and funnel -------------------------------------------------------------------------


def daily_trend(metrics: pd.DataFrame, actions: pd.DataFrame, rate: str = "human_click_rate",
                freq: str = "W") -> pd.DataFrame:
    """Pooled `rate` per channel per period (pandas `freq`, periods labelled by their UTC start)."""
    definition = rate_definition(rate)
    _require_columns(metrics, _METRICS_COLUMNS, "metrics")
    _require_columns(actions, _ACTIONS_COLUMNS, "actions")
    rows = _action_rows_in_window(metrics, None, None)
    channels = actions.drop_duplicates("action_id").assign(action_id=lambda a: a["action_id"].astype("int64"))
    rows = rows.merge(channels[["action_id", "channel"]], on="action_id", how="inner")
    rows = rows[rows["channel"].isin(definition.channels)]
    naive = pd.to_datetime(rows["bucket_start"], utc=True).dt.tz_convert(None)
    rows = rows.assign(period_start=naive.dt.to_period(freq).dt.start_time.dt.tz_localize("UTC"))
    frames = []
    for channel, group in rows.groupby("channel", sort=True):
        wide = group.pivot_table(index="period_start", columns="metric", values="value",
                                 aggfunc="sum", fill_value=0)
        raw = _uses_raw_series(definition, wide)
        successes, trials = _counts(wide, definition, raw)
        frames.append(pd.DataFrame({"channel": channel, "period_start": wide.index, "metric": rate,
                                    "successes": successes.to_numpy(), "trials": trials.to_numpy(),
                                    "numerator_series": definition.series(raw)[0]}))
    columns = ["channel", "period_start", "metric", "successes", "trials", "rate", "ci_low", "ci_high",
               "numerator_series"]
    if not frames:
        return pd.DataFrame(columns=columns)
    trend = pd.concat(frames, ignore_index=True)
    trend["rate"], trend["ci_low"], trend["ci_high"] = _rate_and_wilson(trend["successes"], trend["trials"])
    return trend[columns]


def funnel_table(rates: pd.DataFrame) -> pd.DataFrame:
    """One row per action with the eight rates side by side, in percent, with readable column names."""
    _require_columns(rates, (*_RATES_COLUMNS, "rate"), "rates")
    keys = ["campaign_id", "action_id", "channel", "name"]
    frame = rates if "name" in rates else rates.assign(name=None)
    frame = frame.assign(name=frame["name"].fillna(""))
    wide = frame.set_index([*keys, "metric"])["rate"].unstack("metric")
    present = [d for d in RATE_DEFINITIONS if d.name in wide.columns]
    table = (wide[[d.name for d in present]] * 100).round(2)
    table.columns = [f"{d.label} (%)" for d in present]
    sent = (frame[frame["metric"] == "delivery_rate"].set_index(keys)["trials"]
            .reindex(table.index).astype("Int64"))
    table.insert(0, "Sent", sent.to_numpy())
    table = table.reset_index().rename(columns={"campaign_id": "Campaign", "action_id": "Action",
                                                "channel": "Channel", "name": "Message"})
    return table.sort_values(["Campaign", "Action"]).reset_index(drop=True)


# --- helpers ----------------------------------------------------------------------------------


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise AnalysisInputError(
            f"{what} frame lacks column(s) {missing}; expected at least {list(columns)} "
            f"(build it with cio_mavera.datasets)")


def _as_utc(when: pd.Timestamp | str) -> pd.Timestamp:
    stamp = pd.Timestamp(when)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
