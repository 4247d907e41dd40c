"""Unit tests for the job-1 analysis: rates, intervals, leave-one-out tests, BH and charts."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from cio_mavera.jobs.campaigns import charts as campaign_charts
from cio_mavera.jobs.campaigns import stats as campaign_stats
from cio_mavera.jobs.campaigns.stats import (
    RATE_DEFINITIONS,
    AnalysisInputError,
    action_rates,
    channel_baselines,
    daily_trend,
    find_underperformers,
    funnel_table,
)

DAY0 = pd.Timestamp("2026-03-01", tz="UTC")

TRUE_RATES = {"delivery": 0.97, "open": 0.30, "click": 0.05, "convert": 0.01,
              "unsubscribe": 0.004, "bounce": 0.02, "spam": 0.0008}


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
                           overrides: dict[int, dict[str, float]] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Binomial email funnel for `n_actions` sharing TRUE_RATES unless overridden, split across days."""
    rng = np.random.default_rng(seed)
    rows = []
    for action in range(1, n_actions + 1):
        p = {**TRUE_RATES, **(overrides or {}).get(action, {})}
        for day in range(days):
            n = sent // days
            delivered = rng.binomial(n, p["delivery"])
            bounced = rng.binomial(n - delivered, p["bounce"] / (1 - p["delivery"]))
            open_untracked = rng.binomial(delivered, 0.05)
            link_untracked = rng.binomial(delivered, 0.03)
            human_opened = rng.binomial(delivered - open_untracked, p["open"])
            human_clicked = rng.binomial(human_opened, p["click"] / p["open"])
            series = {"sent": n, "delivered": delivered, "bounced": bounced,
                      "open_untracked": open_untracked, "link_untracked": link_untracked,
                      "human_opened": human_opened, "prefetch_opened": rng.binomial(delivered, 0.2),
                      "opened": human_opened, "human_clicked": human_clicked, "clicked": human_clicked,
                      "converted": rng.binomial(delivered, p["convert"]),
                      "unsubscribed": rng.binomial(delivered, p["unsubscribe"]),
                      "spammed": rng.binomial(delivered, p["spam"])}
            rows += [{"campaign_id": 100 + action // 4, "action_id": action,
                      "bucket_start": DAY0 + pd.Timedelta(days=day), "metric": k, "value": v}
                     for k, v in series.items()]
    metrics = pd.DataFrame(rows)
    actions = actions_frame({a: "email" for a in range(1, n_actions + 1)},
                            {a: 100 + a // 4 for a in range(1, n_actions + 1)})
    return metrics, actions


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


# --- baselines and tests ------------------------------------------------------------------------


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


def test_underperformer_baseline_leaves_the_action_out():
    result = find_underperformers(three_email_actions(), min_trials=100)
    assert row(result, 1, "human_open_rate")["baseline"] == pytest.approx(4500 / 10000)
    assert row(result, 2, "human_open_rate")["baseline"] == pytest.approx(2650 / 6000)


def test_z_test_p_value_matches_hand_computation():
    result = find_underperformers(three_email_actions(), min_trials=100)
    opens = row(result, 1, "human_open_rate")
    pooled = 4900 / 11000
    z = (0.40 - 0.45) / math.sqrt(pooled * (1 - pooled) * (1 / 1000 + 1 / 10000))
    assert z == pytest.approx(-3.033, abs=1e-3)
    assert opens["test"] == "z"
    assert opens["z"] == pytest.approx(z)
    assert opens["p_value"] == pytest.approx(0.5 * math.erfc(-z / math.sqrt(2)))
    assert opens["relative_difference"] == pytest.approx(0.40 / 0.45 - 1)


def test_hand_bh_reference_matches_a_known_vector():
    assert hand_bh([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.02, 0.04, 0.04, 0.02])


def test_p_values_are_bh_adjusted_across_exactly_the_tests_performed():
    metrics, actions = simulate_email_actions(seed=3, n_actions=12, overrides={5: {"click": 0.03}})
    tiny = metrics_frame({999: {"sent": 50, "delivered": 50, "human_opened": 10}})
    result = find_underperformers(action_rates(pd.concat([metrics, tiny]), pd.concat(
        [actions, actions_frame({999: "email"})])))
    tested = result[result["reason"].isna()]
    assert len(tested) < len(result)
    assert tested["p_adjusted"].to_list() == pytest.approx(hand_bh(tested["p_value"].to_list()))
    assert result["p_adjusted"].iloc[:len(tested)].is_monotonic_increasing
    assert result["p_adjusted"].iloc[len(tested):].isna().all()


def test_small_samples_are_reported_as_not_tested():
    counts = {1: {"sent": 100, "delivered": 50}, 2: {"sent": 5000, "delivered": 4900},
              3: {"sent": 5000, "delivered": 4900}}
    rates = action_rates(metrics_frame(counts), actions_frame({1: "email", 2: "email", 3: "email"}))
    result = find_underperformers(rates, min_trials=500)
    small = row(result, 1, "delivery_rate")
    assert small["reason"] == "fewer than 500 trials"
    assert not small["flagged"]
    assert np.isnan(small["p_value"]) and np.isnan(small["p_adjusted"])
    assert pd.isna(row(result, 2, "delivery_rate")["reason"])


def test_only_action_on_its_channel_is_not_tested():
    rates = action_rates(metrics_frame({1: {"sent": 5000, "delivered": 4000}}), actions_frame({1: "push"}))
    result = find_underperformers(rates)
    assert row(result, 1, "delivery_rate")["reason"] == "no other actions on this channel to compare with"


def test_bad_rates_are_flagged_when_higher_not_lower():
    metrics, actions = simulate_email_actions(seed=5, n_actions=20,
                                              overrides={3: {"unsubscribe": 0.012}, 4: {"unsubscribe": 0.0005}})
    result = find_underperformers(action_rates(metrics, actions))
    assert row(result, 3, "unsubscribe_rate")["flagged"]
    low = row(result, 4, "unsubscribe_rate")
    assert not low["flagged"] and low["p_value"] > 0.5
    flagged = set(zip(result.loc[result["flagged"], "action_id"], result.loc[result["flagged"], "metric"], strict=True))
    assert flagged == {(3, "unsubscribe_rate")}


def test_rare_events_use_fisher_exact_test():
    metrics, actions = simulate_email_actions(seed=8, n_actions=10, sent=900, overrides={2: {"spam": 0.02}})
    result = find_underperformers(action_rates(metrics, actions))
    spam = row(result, 2, "spam_complaint_rate")
    assert spam["test"] == "fisher_exact"
    assert spam["flagged"]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_no_flags_when_all_actions_share_the_same_true_rates(seed):
    metrics, actions = simulate_email_actions(seed=seed, n_actions=40)
    result = find_underperformers(action_rates(metrics, actions))
    assert result["reason"].isna().all()
    assert result["flagged"].sum() <= 1


def test_planted_click_drop_is_flagged_with_its_click_to_open_co_finding():
    metrics, actions = simulate_email_actions(seed=7, n_actions=40, overrides={17: {"click": 0.03}})
    result = find_underperformers(action_rates(metrics, actions))
    flagged = set(zip(result.loc[result["flagged"], "action_id"], result.loc[result["flagged"], "metric"], strict=True))
    assert flagged == {(17, "human_click_rate"), (17, "click_to_open_rate")}
    assert result.iloc[0]["action_id"] == 17
    assert list(result.columns[:14]) == ["campaign_id", "action_id", "channel", "name", "metric", "rate", "ci_low",
                                         "ci_high", "baseline", "relative_difference", "z", "p_value", "p_adjusted",
                                         "successes"]


def test_significant_but_small_relative_drop_is_not_flagged():
    counts = {a: {"sent": 200_000, "delivered": 200_000, "human_opened": 60_000} for a in (2, 3, 4)}
    counts[1] = {"sent": 200_000, "delivered": 200_000, "human_opened": 57_000}  # 5% relative drop
    rates = action_rates(metrics_frame(counts), actions_frame(dict.fromkeys(counts, "email")))
    opens = row(find_underperformers(rates), 1, "human_open_rate")
    assert opens["p_adjusted"] < 1e-6
    assert not opens["flagged"]
    assert row(find_underperformers(rates, min_relative_drop=0.04), 1, "human_open_rate")["flagged"]


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


def test_underperformer_chart_has_title_labels_and_one_row_per_flag():
    metrics, actions = simulate_email_actions(seed=7, n_actions=40, overrides={17: {"click": 0.03}})
    rates = action_rates(metrics, actions)
    figure = campaign_charts.underperformer_chart(find_underperformers(rates), channel_baselines(rates))
    axes = figure.axes
    assert figure._suptitle is not None and figure._suptitle.get_text()
    assert all(ax.get_xlabel().endswith("(%)") and ax.get_title() for ax in axes)
    assert sum(len(ax.get_yticklabels()) for ax in axes) == 2


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


# --- integration with the sandbox workspace generator ------------------------------------------


@pytest.mark.parametrize("seed", [7, 11, 23])
def test_flags_exactly_the_planted_underperformers_in_the_sandbox_workspace(seed):
    """Last 30 days of the generated metrics: flagged pairs == planted underperformers + declared co-findings."""
    import datetime as dt

    from cio_mavera.sandbox.workspace import generate_workspace

    # A fixed end date keeps the drawn counts (which depend on weekdays) identical on every run.
    workspace = generate_workspace(seed=seed, customers=500, end=dt.date(2026, 3, 31))
    metrics = workspace.metrics.assign(
        bucket_start=pd.to_datetime(workspace.metrics["day"]).dt.tz_localize("UTC")).drop(columns="day")
    start = pd.Timestamp(workspace.end_date - dt.timedelta(days=29), tz="UTC")
    result = find_underperformers(action_rates(metrics, workspace.actions, start=start))
    flagged = set(zip(result.loc[result["flagged"], "action_id"], result.loc[result["flagged"], "metric"],
                      strict=True))
    planted = {(p["action_id"], p["metric"])
               for p in workspace.truth["underperformers"] + workspace.truth["also_low"]}
    assert len(workspace.truth["underperformers"]) == 3
    assert flagged == planted
    assert result["reason"].isna().all()
