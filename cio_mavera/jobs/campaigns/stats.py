"""Job 1's measurements: funnel rates per message (with their day-to-day over-dispersion), channel
baselines, trends and the funnel table. The test for underperformers lives in `underperformers`.

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
from statsmodels.stats.proportion import proportion_confint

from cio_mavera.errors import CioMaveraError
from cio_mavera.jobs.campaigns.dispersion import day_dispersion

__all__ = [
    "RATE_DEFINITIONS",
    "AnalysisInputError",
    "RateDefinition",
    "action_rates",
    "channel_baselines",
    "daily_trend",
    "funnel_table",
    "rate_definition",
    "require_columns",
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
    """One row per (action, applicable rate) over [start, end): counts, rate, Wilson 95% interval and
    how much its daily rates vary beyond binomial noise (`dispersion.day_dispersion`).

    The human/raw fallback is decided per channel over the window, so every action of a channel is
    measured the same way; `numerator_series` and `denominator_series` record which was used.
    Successes are capped at trials (e.g. human clicks on messages whose opens were not tracked).
    """
    daily = _series_per_action_day(metrics, actions, start, end)
    totals = _described(actions).join(daily.groupby(level="action_id").sum(), how="left")
    # Actions with no metric rows stay (as zeros) so they are reported as untested, not dropped.
    totals = totals.fillna({c: 0 for c in daily.columns}).reset_index()
    rows = [_rates_for_channel(group, daily, channel) for channel, group in totals.groupby("channel", sort=True)]
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
        "denominator_series": pd.Series(dtype="object"), "days": pd.Series(dtype="float64"),
        "dispersion": pd.Series(dtype="float64"), "dispersion_p": pd.Series(dtype="float64"),
        "day_logit_variance": pd.Series(dtype="float64"),
    })


def _series_per_action_day(metrics: pd.DataFrame, actions: pd.DataFrame,
                           start: pd.Timestamp | str | None,
                           end: pd.Timestamp | str | None) -> pd.DataFrame:
    """Wide frame indexed by (action_id, bucket_start), one column per series."""
    require_columns(metrics, _METRICS_COLUMNS, "metrics")
    require_columns(actions, _ACTIONS_COLUMNS, "actions")
    rows = _action_rows_in_window(metrics, start, end)
    known = set(actions["action_id"].astype("int64"))
    unknown = sorted(set(rows["action_id"]) - known)
    if unknown:
        warnings.warn(f"metrics for {len(unknown)} action(s) absent from the actions table were ignored "
                      f"(first: {unknown[:5]}); their channel is unknown", stacklevel=3)
    rows = rows[rows["action_id"].isin(known)]
    return rows.pivot_table(index=["action_id", "bucket_start"], columns="metric", values="value",
                            aggfunc="sum", fill_value=0)


def _described(actions: pd.DataFrame) -> pd.DataFrame:
    described = actions.drop_duplicates("action_id").copy()
    described["action_id"] = described["action_id"].astype("int64")
    described["campaign_id"] = described["campaign_id"].astype("int64")
    if "name" not in described:
        described["name"] = None
    return described[["action_id", "campaign_id", "channel", "name"]].set_index("action_id")


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


def _rates_for_channel(totals: pd.DataFrame, daily: pd.DataFrame, channel: str) -> pd.DataFrame:
    frames = []
    days = daily[daily.index.get_level_values("action_id").isin(totals["action_id"])]
    for definition in RATE_DEFINITIONS:
        if channel not in definition.channels:
            continue
        raw = _uses_raw_series(definition, totals)
        successes, trials = _counts(totals, definition, raw)
        day_successes, day_trials = _counts(days, definition, raw)
        spread = day_dispersion(pd.DataFrame({
            "action_id": days.index.get_level_values("action_id"),
            "successes": day_successes.to_numpy(), "trials": day_trials.to_numpy()}))
        numerator, denominator = definition.series(raw)
        frame = pd.DataFrame({
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
        })
        measured = ["days", "dispersion", "dispersion_p", "day_logit_variance"]
        frames.append(frame.merge(spread, on="action_id", how="left").astype(dict.fromkeys(measured, "float64")))
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


# --- baselines ---------------------------------------------------------------------------------


def channel_baselines(rates: pd.DataFrame) -> pd.DataFrame:
    """Pooled rate per (channel, rate) over every action, with a Wilson interval.

    The channel's volume-weighted figure, for reading. The test in `underperformers` compares each
    message with a *typical* message of its channel instead (and its spread), which a few big
    messages cannot dominate.
    """
    require_columns(rates, _RATES_COLUMNS, "rates")
    pooled = (rates.groupby(["channel", "metric"], sort=True)
              .agg(successes=("successes", "sum"), trials=("trials", "sum"), actions=("action_id", "nunique"))
              .reset_index())
    pooled["rate"], pooled["ci_low"], pooled["ci_high"] = _rate_and_wilson(pooled["successes"], pooled["trials"])
    return pooled


# --- trend and funnel -------------------------------------------------------------------------


def daily_trend(metrics: pd.DataFrame, actions: pd.DataFrame, rate: str = "human_click_rate",
                freq: str = "W") -> pd.DataFrame:
    """Pooled `rate` per channel per period (pandas `freq`, periods labelled by their UTC start)."""
    definition = rate_definition(rate)
    require_columns(metrics, _METRICS_COLUMNS, "metrics")
    require_columns(actions, _ACTIONS_COLUMNS, "actions")
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
    require_columns(rates, (*_RATES_COLUMNS, "rate"), "rates")
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


def require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Raise AnalysisInputError naming the columns `frame` lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise AnalysisInputError(
            f"{what} frame lacks column(s) {missing}; expected at least {list(columns)} "
            f"(build it with cio_mavera.datasets)")


def _as_utc(when: pd.Timestamp | str) -> pd.Timestamp:
    stamp = pd.Timestamp(when)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
