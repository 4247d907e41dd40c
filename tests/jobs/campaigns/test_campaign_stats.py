"""Unit tests for the job-1 analysis: rates, day over-dispersion, the spread between messages, the
predictive test against a typical message, BH, shrinkage, checks, charts, and the sandbox's truth."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from conftest import END
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects

from cio_mavera.jobs.campaigns import CampaignData, analyse, resolve_window
from cio_mavera.jobs.campaigns import charts as campaign_charts
from cio_mavera.jobs.campaigns import stats as campaign_stats
from cio_mavera.jobs.campaigns.dispersion import day_dispersion
from cio_mavera.jobs.campaigns.spread import (
    fit_spread,
    pool_spreads,
    predictive_p_values,
    shrink,
)
from cio_mavera.jobs.campaigns.stats import (
    RATE_DEFINITIONS,
    AnalysisInputError,
    action_rates,
    channel_baselines,
    daily_trend,
    funnel_table,
)
from cio_mavera.jobs.campaigns.underperformers import (
    ASSUMPTIONS,
    compare_with_channels,
    find_underperformers,
)
from cio_mavera.sandbox.workspace import World, generate_workspace

DAY0 = pd.Timestamp("2026-03-01", tz="UTC")

TRUE_RATES = {"delivery": 0.98, "open": 0.30, "click": 0.05, "convert": 0.01,
              "unsubscribe": 0.004, "bounce": 0.02, "spam": 0.0008}
# Rates that vary between messages in `simulate_email_actions(spread=...)`, on the logit scale.
SPREAD_RATES = ("open", "click", "convert", "unsubscribe", "bounce", "spam")


def metrics_frame(counts: dict[int, dict[str, int]], campaign_of: dict[int, int] | None = None,
                  day: pd.Timestamp = DAY0) -> pd.DataFrame:
    """Long metrics rows (one bucket per action and series) from {action_id: {series: value}}."""
    rows = [{"campaign_id": (campaign_of or {}).get(a, 1), "action_id": a, "bucket_start": day,
             "metric": series, "value": value}
            for a, by_series in counts.items() for series, value in by_series.items()]
    frame = pd.DataFrame(rows)
    frame["action_id"] = frame["action_id"].astype("Int64")
    return frame


def actions_frame(channel_of: dict[int, str], campaign_of: dict[int, int] | None = None) -> pd.DataFrame:
    return pd.DataFrame({"action_id": list(channel_of), "campaign_id": [(campaign_of or {}).get(a, 1) for a in channel_of],
                         "channel": list(channel_of.values()), "name": [f"Message {a}" for a in channel_of],
                         "subject": [f"Subject {a}" if c == "email" else None for a, c in channel_of.items()]})


def simulate_email_actions(seed: int, n_actions: int = 40, sent: int = 6000, days: int = 3,
                           overrides: dict[int, dict[str, float]] | None = None, spread: float = 0.0,
                           day_sd: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Binomial email funnel for `n_actions`, split across days.

    Each action's rates are logit-normal around TRUE_RATES with SD `spread` (0: all identical),
    each action-day's around the action's with SD `day_sd`; `overrides` set an action's rate exactly.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for action in range(1, n_actions + 1):
        p = dict(TRUE_RATES)
        for name in SPREAD_RATES:
            p[name] = _moved(p[name], spread * rng.standard_normal())
        p.update((overrides or {}).get(action, {}))
        for day in range(days):
            d = {k: _moved(v, day_sd * rng.standard_normal()) for k, v in p.items() if k != "delivery"}
            n = sent // days
            bounced = rng.binomial(n, d["bounce"])
            delivered = n - bounced  # sent = delivered + bounced, as in Customer.io's series
            open_untracked = rng.binomial(delivered, 0.05)
            link_untracked = rng.binomial(delivered, 0.03)
            human_opened = rng.binomial(delivered - open_untracked, d["open"])
            human_clicked = rng.binomial(human_opened, min(1.0, d["click"] / d["open"]))
            series = {"sent": n, "delivered": delivered, "bounced": bounced,
                      "open_untracked": open_untracked, "link_untracked": link_untracked,
                      "human_opened": human_opened, "prefetch_opened": rng.binomial(delivered, 0.2),
                      "opened": human_opened, "human_clicked": human_clicked, "clicked": human_clicked,
                      "converted": rng.binomial(delivered, d["convert"]),
                      "unsubscribed": rng.binomial(delivered, d["unsubscribe"]),
                      "spammed": rng.binomial(delivered, d["spam"])}
            rows += [{"campaign_id": 100 + action // 4, "action_id": action,
                      "bucket_start": DAY0 + pd.Timedelta(days=day), "metric": k, "value": v}
                     for k, v in series.items()]
    metrics = pd.DataFrame(rows)
    actions = actions_frame({a: "email" for a in range(1, n_actions + 1)},
                            {a: 100 + a // 4 for a in range(1, n_actions + 1)})
    return metrics, actions


def _moved(p: float, shift: float) -> float:
    """expit(logit(p) + shift)."""
    return float(1 / (1 + np.exp(-(np.log(p / (1 - p)) + shift))))


def below(rate: float, spreads: float, spread: float = 0.25) -> float:
    """The rate `spreads` logit spreads below `rate`."""
    return _moved(rate, -spreads * spread)


def flagged_pairs(result: pd.DataFrame) -> set[tuple[int, str]]:
    return set(zip(result.loc[result["flagged"], "action_id"], result.loc[result["flagged"], "metric"], strict=True))


def hand_bh(p_values: list[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values, written out longhand as the reference."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running_min = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running_min = min(running_min, p_values[i] * m / rank)
        adjusted[i] = running_min
    return adjusted


def row(frame: pd.DataFrame, action_id: int, metric: str) -> pd.Series:
    match = frame[(frame["action_id"] == action_id) & (frame["metric"] == metric)]
    assert len(match) == 1, f"expected one row for ({action_id}, {metric}), got {len(match)}"
    return match.iloc[0]


# --- definitions and rates ----------------------------------------------------------------------


def test_rate_definitions_cover_the_eight_funnel_rates_with_direction():
    names = [d.name for d in RATE_DEFINITIONS]
    assert names == ["delivery_rate", "human_open_rate", "human_click_rate", "click_to_open_rate",
                     "conversion_rate", "unsubscribe_rate", "bounce_rate", "spam_complaint_rate"]
    worse_when_higher = {d.name for d in RATE_DEFINITIONS if not d.higher_is_better}
    assert worse_when_higher == {"unsubscribe_rate", "bounce_rate", "spam_complaint_rate"}


def test_wilson_interval_matches_newcombe_1998_example():
    rates = action_rates(metrics_frame({1: {"sent": 263, "delivered": 81}}), actions_frame({1: "email"}))
    delivery = row(rates, 1, "delivery_rate")
    assert (delivery["successes"], delivery["trials"]) == (81, 263)
    assert delivery["ci_low"] == pytest.approx(0.2553, abs=5e-5)
    assert delivery["ci_high"] == pytest.approx(0.3662, abs=5e-5)


def test_open_rate_subtracts_open_untracked_from_delivered():
    counts = {1: {"sent": 1000, "delivered": 1000, "open_untracked": 200, "human_opened": 400, "opened": 700}}
    rates = action_rates(metrics_frame(counts), actions_frame({1: "email"}))
    opens = row(rates, 1, "human_open_rate")
    assert (opens["successes"], opens["trials"]) == (400, 800)
    assert opens["rate"] == pytest.approx(0.5)
    assert opens["denominator_series"] == "delivered - open_untracked"


def test_click_rate_subtracts_link_untracked_from_delivered():
    counts = {1: {"sent": 1000, "delivered": 1000, "link_untracked": 500, "human_clicked": 50, "clicked": 90}}
    clicks = row(action_rates(metrics_frame(counts), actions_frame({1: "email"})), 1, "human_click_rate")
    assert (clicks["successes"], clicks["trials"]) == (50, 500)


def test_human_series_are_used_when_present():
    counts = {1: {"sent": 100, "delivered": 100, "human_opened": 20, "opened": 60}}
    opens = row(action_rates(metrics_frame(counts), actions_frame({1: "email"})), 1, "human_open_rate")
    assert opens["numerator_series"] == "human_opened"
    assert opens["successes"] == 20


@pytest.mark.parametrize("human_value", [None, 0])
def test_raw_opens_and_clicks_are_used_when_human_series_absent_or_zero(human_value):
    counts = {1: {"sent": 100, "delivered": 100, "opened": 60, "clicked": 12},
              2: {"sent": 100, "delivered": 100, "opened": 50, "clicked": 5}}
    if human_value is not None:
        for by_series in counts.values():
            by_series.update(human_opened=human_value, human_clicked=human_value)
    rates = action_rates(metrics_frame(counts), actions_frame({1: "email", 2: "email"}))
    opens, clicks, cto = (row(rates, 1, m) for m in ("human_open_rate", "human_click_rate", "click_to_open_rate"))
    assert (opens["numerator_series"], opens["successes"]) == ("opened", 60)
    assert (clicks["numerator_series"], clicks["successes"]) == ("clicked", 12)
    assert (cto["numerator_series"], cto["denominator_series"]) == ("clicked", "opened")
    assert cto["rate"] == pytest.approx(12 / 60)


def test_rates_that_do_not_apply_to_a_channel_are_skipped():
    counts = {1: {"sent": 100, "delivered": 90}, 2: {"sent": 100, "delivered": 90}, 3: {"sent": 100, "delivered": 90}}
    rates = action_rates(metrics_frame(counts), actions_frame({1: "email", 2: "push", 3: "twilio"}))
    by_channel = rates.groupby("channel")["metric"].agg(set)
    assert "spam_complaint_rate" in by_channel["email"]
    assert "spam_complaint_rate" not in by_channel["push"]
    assert "unsubscribe_rate" not in by_channel["push"]
    assert not {"human_open_rate", "click_to_open_rate", "spam_complaint_rate"} & by_channel["twilio"]
    assert "human_click_rate" in by_channel["twilio"]


def test_action_rates_honours_the_time_window_start_inclusive_end_exclusive():
    early = metrics_frame({1: {"sent": 100, "delivered": 50}}, day=DAY0)
    late = metrics_frame({1: {"sent": 100, "delivered": 100}}, day=DAY0 + pd.Timedelta(days=1))
    both = pd.concat([early, late], ignore_index=True)
    rates = action_rates(both, actions_frame({1: "email"}), start=DAY0 + pd.Timedelta(days=1))
    assert row(rates, 1, "delivery_rate")["trials"] == 100
    rates = action_rates(both, actions_frame({1: "email"}), end="2026-03-02")
    assert row(rates, 1, "delivery_rate")["successes"] == 50


def test_action_without_metrics_is_reported_with_zero_trials():
    rates = action_rates(metrics_frame({1: {"sent": 100, "delivered": 90}}), actions_frame({1: "email", 2: "email"}))
    silent = row(rates, 2, "delivery_rate")
    assert silent["trials"] == 0 and np.isnan(silent["rate"])


def test_missing_columns_raise_an_actionable_error():
    with pytest.raises(AnalysisInputError, match="bucket_start"):
        action_rates(pd.DataFrame({"campaign_id": [1], "action_id": [1], "metric": ["sent"], "value": [1]}),
                     actions_frame({1: "email"}))
    with pytest.raises(AnalysisInputError, match="Unknown rate"):
        campaign_stats.rate_definition("open_rate")


# --- day-to-day over-dispersion -----------------------------------------------------------------


def daily_counts(seed: int, keys: int, days: int, rate: float, trials: int, day_sd: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = np.array([[_moved(rate, day_sd * rng.standard_normal()) for _ in range(days)] for _ in range(keys)])
    return pd.DataFrame({"key": np.repeat(np.arange(keys), days), "successes": rng.binomial(trials, p).ravel(),
                         "trials": trials})


def test_binomial_days_show_no_over_dispersion():
    out = day_dispersion(daily_counts(1, keys=300, days=30, rate=0.05, trials=2000, day_sd=0.0))
    assert out["dispersion"].median() == pytest.approx(1.0, abs=0.1)
    assert (out["dispersion_p"] < 0.05).mean() == pytest.approx(0.05, abs=0.03)
    assert (out["day_logit_variance"] == 0).mean() > 0.4  # estimates at or below binomial count as none


def test_day_effects_show_as_over_dispersion_of_the_right_size():
    day_sd = 0.2
    out = day_dispersion(daily_counts(2, keys=200, days=30, rate=0.05, trials=2000, day_sd=day_sd))
    assert out["dispersion"].median() > 3
    # Each key's window rate carries the day effects' variance over its 30 equal days: t2 / 30.
    assert out["day_logit_variance"].median() == pytest.approx(day_sd ** 2 / 30, rel=0.25)


def test_dispersion_needs_two_days_with_trials_and_a_rate_strictly_between_0_and_1():
    daily = pd.DataFrame({"key": [1, 2, 2, 3, 3], "successes": [5, 0, 0, 4, 6], "trials": [100, 50, 50, 0, 90]})
    out = day_dispersion(daily).set_index("key")
    assert out["dispersion"].isna().all() and (out["day_logit_variance"] == 0).all()
    assert out.loc[3, "days"] == 1


def test_action_rates_carry_each_messages_dispersion():
    metrics, actions = simulate_email_actions(seed=4, n_actions=6, days=20, day_sd=0.3)
    opens = action_rates(metrics, actions).query("metric == 'human_open_rate'")
    assert (opens["days"] == 20).all()
    assert (opens["dispersion"] > 2).all() and (opens["day_logit_variance"] > 0).all()


# --- the spread between messages ----------------------------------------------------------------


def test_paule_mandel_fit_matches_statsmodels_for_one_channel():
    rng = np.random.default_rng(3)
    v = rng.uniform(0.002, 0.03, size=25)
    y = -3 + rng.normal(0, 0.3, size=25) + rng.normal(0, np.sqrt(v))
    ours = fit_spread(y, v, ["email"] * 25)
    theirs = combine_effects(y, v, method_re="iterated")
    assert ours.tau2 == pytest.approx(theirs.tau2, rel=1e-4)
    assert ours.typical["email"] == pytest.approx(theirs.mean_effect_re, rel=1e-6)
    assert ours.typical_se["email"] == pytest.approx(theirs.sd_eff_w_re, rel=1e-3)
    assert ours.df == 24


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_spread_estimate_is_close_to_the_known_spread(seed):
    metrics, actions = simulate_email_actions(seed=seed, n_actions=60, sent=20_000, days=10, spread=0.3)
    spreads = compare_with_channels(action_rates(metrics, actions)).spreads.set_index("metric")
    assert spreads.loc["human_click_rate", "spread_sd"] == pytest.approx(0.3, rel=0.25)
    assert spreads.loc["conversion_rate", "spread_sd"] == pytest.approx(0.3, rel=0.25)
    assert spreads.loc["conversion_rate", "typical_rate"] == pytest.approx(TRUE_RATES["convert"], rel=0.15)


def test_truncated_fit_undoes_the_cut():
    rng = np.random.default_rng(5)
    y = rng.normal(0, 0.3, size=4000)
    kept = y[np.abs(y) < 2.5 * 0.3]
    v = np.full(len(kept), 1e-6)
    assert np.sqrt(fit_spread(kept, v, ["c"] * len(kept)).tau2) == pytest.approx(0.3 * 0.955, rel=0.03)
    assert np.sqrt(fit_spread(kept, v, ["c"] * len(kept), truncated_at=2.5).tau2) == pytest.approx(0.3, rel=0.03)


def test_predictive_p_values_are_uniform_for_typical_messages():
    rng = np.random.default_rng(6)
    k, trials, mean, spread = 4000, 20_000, np.log(0.04 / 0.96), 0.25
    true = 1 / (1 + np.exp(-(mean + spread * rng.standard_normal(k))))
    successes = rng.binomial(trials, true)
    p = predictive_p_values(successes, np.full(k, trials), np.full(k, mean), np.full(k, spread),
                            np.full(k, np.inf), np.ones(k, dtype=bool))
    for level in (0.01, 0.05, 0.5):
        assert (p < level).mean() == pytest.approx(level, abs=max(0.006, level * 0.15))


def test_predictive_p_value_of_a_rare_event_follows_the_binomial():
    # No spread: the predictive distribution is the binomial itself (P(X >= 12) for n p = 5).
    p = predictive_p_values(np.array([12]), np.array([10_000]), np.array([np.log(5 / 9995)]), np.array([0.0]),
                            np.array([np.inf]), np.array([False]))
    assert p[0] == pytest.approx(stats.binom.sf(11, 10_000, 5 / 10_000), rel=1e-3)


def test_fewer_messages_mean_heavier_tails():
    args = (np.array([300]), np.array([20_000]), np.array([np.log(0.04 / 0.96)]), np.array([0.25]))
    few = predictive_p_values(*args, np.array([3.0]), np.array([True]))[0]
    many = predictive_p_values(*args, np.array([60.0]), np.array([True]))[0]
    assert few > 5 * many


def test_pooling_spreads_pools_agreeing_rates_and_lets_a_different_one_keep_its_own():
    tau2 = np.array([0.09, 0.1, 0.085, 0.095, 0.4])
    pooled = pool_spreads(tau2, np.full(5, 30), np.full(5, 0.002))
    estimates = [p.tau2(t) for p, t in zip(pooled, tau2, strict=True)]
    assert all(0.08 < e < 0.12 for e in estimates[:4])
    assert estimates[4] > 0.25
    assert all(p.df >= 30 for p in pooled)
    agreeing = pool_spreads(tau2[:4], np.full(4, 30), np.full(4, 0.002))
    assert all(p.own == 0 and p.df > 100 for p in agreeing)  # rates that agree pool fully


def test_shrinkage_moves_noisy_messages_towards_their_channel_and_precise_ones_little():
    mean, sd = shrink(np.array([-2.0, -2.0]), np.array([0.5, 0.001]), np.array([-3.0, -3.0]), 0.05,
                      np.array([0.02, 0.02]))
    assert -3.0 < mean[0] < -2.8 and mean[1] == pytest.approx(-2.0, abs=0.03)
    assert sd[0] < np.sqrt(0.5) and sd[1] < np.sqrt(0.001) * 1.01


# --- underperformers: a predictive test against a typical message ------------------------------------


def three_email_actions() -> pd.DataFrame:
    counts = {1: {"sent": 1000, "delivered": 1000, "human_opened": 400},
              2: {"sent": 5000, "delivered": 5000, "human_opened": 2250},
              3: {"sent": 5000, "delivered": 5000, "human_opened": 2250}}
    return action_rates(metrics_frame(counts), actions_frame({1: "email", 2: "email", 3: "email"}))


def test_channel_baseline_pools_every_action():
    baselines = channel_baselines(three_email_actions())
    opens = baselines[(baselines["channel"] == "email") & (baselines["metric"] == "human_open_rate")].iloc[0]
    assert (opens["successes"], opens["trials"], opens["actions"]) == (4900, 11000, 3)
    assert opens["rate"] == pytest.approx(4900 / 11000)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_no_flags_when_messages_only_differ_by_their_spread(seed):
    metrics, actions = simulate_email_actions(seed=seed, n_actions=40, sent=15_000, days=15, spread=0.25,
                                              day_sd=0.1)
    result = find_underperformers(action_rates(metrics, actions))
    assert result["reason"].isna().all()
    assert result["flagged"].sum() == 0


def test_a_pooled_rest_test_would_have_flagged_ordinary_messages():
    # The same data judged against the pooled rest of the channel (the old test): many "significant".
    metrics, actions = simulate_email_actions(seed=1, n_actions=40, sent=15_000, days=15, spread=0.25)
    rates = action_rates(metrics, actions).query("metric == 'human_click_rate'")
    rest_s = rates["successes"].sum() - rates["successes"]
    rest_n = rates["trials"].sum() - rates["trials"]
    pooled = (rates["successes"] + rest_s) / (rates["trials"] + rest_n)
    z = (rates["rate"] - rest_s / rest_n) / np.sqrt(pooled * (1 - pooled) * (1 / rates["trials"] + 1 / rest_n))
    assert (stats.norm.cdf(z) < 0.001).sum() >= 5


def test_an_outlier_five_spreads_below_is_flagged_and_nothing_else_is():
    overrides = {17: {"click": below(TRUE_RATES["click"], 5)}}
    metrics, actions = simulate_email_actions(seed=7, n_actions=40, sent=15_000, days=15, spread=0.25,
                                              overrides=overrides)
    result = find_underperformers(action_rates(metrics, actions))
    # Click-to-open also drops, but opens spread too, so it is less far out: a flag there is optional.
    assert (17, "human_click_rate") in flagged_pairs(result)
    assert flagged_pairs(result) <= {(17, "human_click_rate"), (17, "click_to_open_rate")}
    assert result.iloc[0]["action_id"] == 17
    assert row(result, 17, "human_click_rate")["left_out_as_outlier"]
    assert list(result.columns[:14]) == ["campaign_id", "action_id", "channel", "name", "metric", "rate", "ci_low",
                                         "ci_high", "baseline", "relative_difference", "z", "p_value", "p_adjusted",
                                         "successes"]


def test_two_outliers_of_one_rate_do_not_hide_each_other():
    low = below(TRUE_RATES["convert"], 4.5)
    metrics, actions = simulate_email_actions(seed=8, n_actions=30, sent=30_000, days=15, spread=0.25,
                                              overrides={5: {"convert": low}, 22: {"convert": low}})
    result = find_underperformers(action_rates(metrics, actions))
    assert {(5, "conversion_rate"), (22, "conversion_rate")} <= flagged_pairs(result)
    # Each is judged against the others without the second outlier widening the spread.
    assert row(result, 5, "conversion_rate")["spread_sd"] < 0.35


def test_flags_report_the_typical_message_its_range_the_spread_and_a_shrunken_rate():
    overrides = {9: {"convert": below(TRUE_RATES["convert"], 5)}}
    metrics, actions = simulate_email_actions(seed=9, n_actions=40, sent=30_000, days=15, spread=0.25,
                                              overrides=overrides)
    flag = row(find_underperformers(action_rates(metrics, actions)), 9, "conversion_rate")
    assert flag["flagged"] and flag["test"] == "predictive"
    assert flag["baseline"] == pytest.approx(TRUE_RATES["convert"], rel=0.2)
    assert flag["typical_low"] < flag["baseline"] < flag["typical_high"]
    assert flag["rate"] < flag["typical_low"]
    assert flag["spread_sd"] == pytest.approx(0.25, rel=0.3)
    assert flag["shrunk_low"] <= flag["shrunk_rate"] <= flag["shrunk_high"]
    assert flag["rate"] <= flag["shrunk_rate"] < flag["baseline"]


def test_p_values_are_bh_adjusted_across_exactly_the_tests_performed():
    metrics, actions = simulate_email_actions(seed=3, n_actions=12, days=5, spread=0.2,
                                              overrides={5: {"click": 0.02}})
    tiny = metrics_frame({999: {"sent": 50, "delivered": 50, "human_opened": 10}})
    result = find_underperformers(action_rates(pd.concat([metrics, tiny]), pd.concat(
        [actions, actions_frame({999: "email"})])))
    tested = result[result["reason"].isna()]
    counted = tested[tested["metric"] != "delivery_rate"]  # delivery = 1 - bounce: one test
    assert counted["p_adjusted"].to_list() == pytest.approx(hand_bh(counted["p_value"].to_list()))
    twins = tested[tested["metric"] == "delivery_rate"].set_index("action_id")["p_adjusted"]
    bounce = tested[tested["metric"] == "bounce_rate"].set_index("action_id")["p_adjusted"]
    assert twins.sort_index().to_list() == pytest.approx(bounce.sort_index().to_list())
    assert result.loc[result["reason"].notna(), "p_adjusted"].isna().all()


def test_small_samples_are_reported_as_not_tested():
    metrics, actions = simulate_email_actions(seed=2, n_actions=10, days=5, spread=0.2)
    tiny = metrics_frame({999: {"sent": 100, "delivered": 50}})
    result = find_underperformers(action_rates(pd.concat([metrics, tiny]), pd.concat(
        [actions, actions_frame({999: "email"})])), min_trials=500)
    small = row(result, 999, "delivery_rate")
    assert small["reason"] == "fewer than 500 trials"
    assert not small["flagged"]
    assert np.isnan(small["p_value"]) and np.isnan(small["p_adjusted"])
    assert pd.isna(row(result, 2, "delivery_rate")["reason"])


def test_only_action_on_its_channel_is_not_tested():
    rates = action_rates(metrics_frame({1: {"sent": 5000, "delivered": 4000}}), actions_frame({1: "push"}))
    result = find_underperformers(rates)
    assert row(result, 1, "delivery_rate")["reason"] == "no other messages on this channel to compare with"


def test_bad_rates_are_flagged_when_higher_not_lower():
    high, low = _moved(TRUE_RATES["unsubscribe"], 6 * 0.25), _moved(TRUE_RATES["unsubscribe"], -6 * 0.25)
    metrics, actions = simulate_email_actions(seed=5, n_actions=30, sent=30_000, days=10, spread=0.25,
                                              overrides={3: {"unsubscribe": high}, 4: {"unsubscribe": low}})
    result = find_underperformers(action_rates(metrics, actions))
    assert row(result, 3, "unsubscribe_rate")["flagged"]
    assert not row(result, 4, "unsubscribe_rate")["flagged"] and row(result, 4, "unsubscribe_rate")["p_value"] > 0.5
    assert flagged_pairs(result) == {(3, "unsubscribe_rate")}


def test_a_rare_event_excess_is_flagged_by_the_exact_predictive_test():
    metrics, actions = simulate_email_actions(seed=8, n_actions=20, sent=6000, days=10, spread=0.2,
                                              overrides={2: {"spam": 0.008}})
    spam = row(find_underperformers(action_rates(metrics, actions)), 2, "spam_complaint_rate")
    assert spam["successes"] < 100 and spam["flagged"]


def test_significant_but_small_relative_drop_is_not_flagged():
    counts = {a: {"sent": 200_000, "delivered": 200_000, "human_opened": 60_000} for a in range(2, 22)}
    counts[1] = {"sent": 200_000, "delivered": 200_000, "human_opened": 57_000}  # 5% relative drop
    rates = action_rates(metrics_frame(counts), actions_frame(dict.fromkeys(counts, "email")))
    opens = row(find_underperformers(rates), 1, "human_open_rate")
    assert opens["p_adjusted"] < 1e-6
    assert not opens["flagged"]
    assert row(find_underperformers(rates, min_relative_drop=0.04), 1, "human_open_rate")["flagged"]


def test_checks_state_each_assumption_and_what_this_data_says():
    metrics, actions = simulate_email_actions(seed=1, n_actions=30, sent=15_000, days=15, spread=0.25,
                                              day_sd=0.2)
    checks = compare_with_channels(action_rates(metrics, actions)).checks
    assert list(checks.columns) == ["assumption", "check", "result", "consequence"]
    assert set(checks["assumption"]) == set(ASSUMPTIONS.values())
    over = checks[checks["assumption"] == ASSUMPTIONS["over_dispersion"]].iloc[0]
    assert "median dispersion" in over["result"] and "own measured day-to-day" in over["consequence"]
    het = checks[checks["assumption"] == ASSUMPTIONS["heterogeneity"]].iloc[0]
    differ, groups = (int(n) for n in het["result"].split(" (channel")[0].split(" of "))
    assert groups == 8 and differ >= 6  # spam complaints are too rare to show every difference


# --- trend and funnel ---------------------------------------------------------------------------


def test_daily_trend_pools_each_channel_per_period():
    metrics = pd.concat([
        metrics_frame({1: {"sent": 100, "delivered": 100, "human_clicked": 10}}, day=DAY0),
        metrics_frame({2: {"sent": 100, "delivered": 100, "human_clicked": 30}}, day=DAY0),
        metrics_frame({1: {"sent": 100, "delivered": 100, "human_clicked": 20}}, day=DAY0 + pd.Timedelta(days=1)),
        metrics_frame({1: {"sent": 100, "delivered": 100, "human_clicked": 5}}, day=DAY0 + pd.Timedelta(days=10)),
    ])
    trend = daily_trend(metrics, actions_frame({1: "email", 2: "email"}), rate="human_click_rate", freq="D")
    assert trend["rate"].to_list() == pytest.approx([0.2, 0.2, 0.05])
    assert trend["period_start"].iloc[0] == DAY0
    weekly = daily_trend(metrics, actions_frame({1: "email", 2: "email"}), freq="W")
    # DAY0 is a Sunday: weekly periods run Monday to Sunday and are labelled by their Monday.
    assert weekly["trials"].to_list() == [200, 100, 100]
    assert (weekly["period_start"].dt.dayofweek == 0).all()
    assert str(weekly["period_start"].dt.tz) == "UTC"


def test_funnel_table_puts_the_eight_rates_side_by_side_in_percent():
    metrics, actions = simulate_email_actions(seed=2, n_actions=3)
    table = funnel_table(action_rates(metrics, actions))
    assert len(table) == 3
    assert list(table.columns[:5]) == ["Campaign", "Action", "Channel", "Message", "Sent"]
    assert [c for c in table.columns if c.endswith("(%)")] == [f"{d.label} (%)" for d in RATE_DEFINITIONS]
    assert table["Delivery rate (%)"].between(90, 100).all()


# --- charts -------------------------------------------------------------------------------------


def outlier_workspace() -> pd.DataFrame:
    overrides = {17: {"click": below(TRUE_RATES["click"], 6)}}
    metrics, actions = simulate_email_actions(seed=7, n_actions=40, sent=15_000, days=15, spread=0.25,
                                              overrides=overrides)
    return action_rates(metrics, actions)


def test_distribution_chart_shows_each_rate_with_the_flagged_messages_marked():
    rates = outlier_workspace()
    comparison = compare_with_channels(rates)
    figure = campaign_charts.distribution_chart(comparison.tests, comparison.spreads)
    titles = [ax.get_title() for ax in figure.axes]
    assert titles[:2] == ["Human click rate", "Click-to-open rate"]
    assert figure._suptitle is not None and all(ax.get_xlabel().endswith("(%)") for ax in figure.axes)
    marked = [t.get_text() for ax in figure.axes[:2] for t in ax.texts]
    assert marked == ["Message 17 (#17)", "Message 17 (#17)"]  # its name beside its id


def test_underperformer_chart_has_title_labels_and_one_row_per_flag():
    rates = outlier_workspace()
    result = find_underperformers(rates)
    figure = campaign_charts.underperformer_chart(result, channel_baselines(rates))
    axes = figure.axes
    assert figure._suptitle is not None and figure._suptitle.get_text()
    assert all(ax.get_xlabel().endswith("(%)") and ax.get_title() for ax in axes)
    assert sum(len(ax.get_yticklabels()) for ax in axes) == result["flagged"].sum() >= 2


def test_underperformer_chart_says_so_when_nothing_is_flagged():
    metrics, actions = simulate_email_actions(seed=1, n_actions=5)
    rates = action_rates(metrics, actions)
    result = find_underperformers(rates).assign(flagged=False)
    figure = campaign_charts.underperformer_chart(result, channel_baselines(rates))
    texts = [t.get_text() for ax in figure.axes for t in ax.texts]
    assert any("No underperformers" in t for t in texts)


def test_trend_chart_has_title_and_labelled_axes():
    metrics, actions = simulate_email_actions(seed=2, n_actions=4, days=14)
    figure = campaign_charts.trend_chart(daily_trend(metrics, actions, freq="W"))
    ax = figure.axes[0]
    assert "click rate" in ax.get_title().lower()
    assert ax.get_ylabel().endswith("(%)") and ax.get_xlabel()
    assert len(ax.get_lines()) == 1


# --- against the sandbox's truth ------------------------------------------------------------------


def sandbox_findings(seed: int, world: World):
    """Job 1's analysis of the 30 days up to the pinned END (the last day partial), as the notebook runs it."""
    workspace = generate_workspace(seed=seed, customers=200, end=END, world=world)
    metrics = workspace.metrics.assign(bucket_start=pd.to_datetime(workspace.metrics["day"]).dt.tz_localize("UTC"))
    start, stop = resolve_window(30, today=workspace.end_date)
    data = CampaignData(workspace.campaigns, workspace.actions, metrics.drop(columns="day"), start, stop, "all", [],
                        "sandbox", f"seed-{seed}")
    return analyse(data), workspace.truth


@pytest.mark.parametrize("seed", [7, 11, 23])
def test_flags_exactly_the_planted_underperformers_in_the_clean_world(seed):
    """Clean world: flagged pairs == planted underperformers + declared co-findings."""
    findings, truth = sandbox_findings(seed, World.clean())
    flagged = set(zip(findings.flagged["action_id"].astype(int), findings.flagged["metric"], strict=True))
    planted = {(p["action_id"], p["metric"]) for p in truth["underperformers"] + truth["also_low"]}
    assert len(truth["underperformers"]) == 3
    assert flagged == planted
    assert findings.tests["reason"].isna().all()


def test_realistic_world_finds_most_plants_and_few_other_messages():
    """Six seeds of the realistic world; bench/truth_job1.py measures 89% recall and 0.23 false flagged
    messages per workspace over 80 seeds (here: 18 of 18 found, 2 false), asserted with some margin."""
    found = planted = false = 0
    for seed in range(1, 7):
        findings, truth = sandbox_findings(seed, World())
        flagged = set(findings.flagged["action_id"].astype(int))
        plants = {p["action_id"] for p in truth["underperformers"]}
        found += len(flagged & plants)
        planted += len(plants)
        false += len(flagged - plants)
        tested = findings.tests[findings.tests["flagged"].astype(bool)]
        # A flag is an outlier: outside the range a typical message of its channel falls in.
        worse = np.where(tested["higher_is_better"], tested["rate"] < tested["typical_low"],
                         tested["rate"] > tested["typical_high"])
        assert worse.all()
    assert found >= 15 and false <= 3, (found, planted, false)
