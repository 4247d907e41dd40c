"""Job 3's baseline model, piece by piece: the predictive distribution, the spreads it estimates (each
with its assumption, checked on data drawn to break it), Tarone + BH, hour-of-week and burst effects,
and opt-outs dated by their delivery."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from retention_logs import DAY, HOUR, T0, Log
from scipy import stats

from cio_mavera.jobs.retention import baselines, cohorts
from cio_mavera.jobs.retention.time_effects import burst_flags, fit_time_effects, hour_of_week_class

# --- the predictive distribution ------------------------------------------------------------------


def test_the_expected_count_is_exposure_times_the_sources_posterior_rate():
    # Gamma(kappa, kappa / prior) updated by 3 events in 1,000 messages elsewhere.
    mean, var = baselines.predictive(np.array([200.0]), np.array([3.0]), np.array([1000.0]),
                                     np.array([0.004]), 4.0)
    shape, rate = 4 + 3, 4 / 0.004 + 1000
    assert mean[0] == pytest.approx(200 * shape / rate)
    assert var[0] == pytest.approx(200 ** 2 * shape / rate ** 2)


def test_a_source_with_a_long_history_is_judged_by_its_own_rate():
    own, _ = baselines.predictive(np.array([100.0]), np.array([750.0]), np.array([30_000.0]),
                                  np.array([0.004]), 4.0)
    assert own[0] == pytest.approx(100 * 0.025, rel=0.05)  # 2.5% of its own, not the channel's 0.4%


def test_the_upper_tail_is_poisson_without_extra_variance_and_wider_with_it():
    poisson = baselines.nb_upper_tail(np.array([5]), np.array([1.2]), np.array([1e-12]))
    assert poisson[0] == pytest.approx(stats.poisson.sf(4, 1.2), rel=1e-4)
    wider = baselines.nb_upper_tail(np.array([5]), np.array([1.2]), np.array([0.5 * 1.2 ** 2]))
    assert wider[0] > poisson[0]
    assert baselines.nb_upper_tail(np.array([0]), np.array([1.2]), np.array([0.1]))[0] == 1.0


# --- spreads: each assumption checked on data that satisfy it and on data that break it -----------


def test_identical_sources_show_no_spread_and_the_floor_is_used():
    rng = np.random.default_rng(0)
    exposure = rng.integers(500, 3000, 30).astype(float)
    fit = baselines.heterogeneity(rng.poisson(0.004 * exposure), exposure)
    assert fit.p_value > 0.05 and fit.cv_used == baselines.SOURCE_CV_FLOOR
    assert fit.cv_low == 0.0


def test_a_real_spread_between_sources_is_estimated_with_an_interval_that_holds_it():
    rng = np.random.default_rng(1)
    exposure = np.full(60, 20_000.0)
    rates = rng.gamma(1.0, 0.004, 60)  # CV 1
    fit = baselines.heterogeneity(rng.poisson(rates * exposure), exposure)
    assert fit.p_value < 0.01 and 0.6 < fit.cv < 1.5 and fit.cv_low < 1.0 < fit.cv_high
    assert fit.cv_used == fit.cv


def test_the_typical_rate_is_the_sources_not_the_busiest_ones():
    exposure = np.array([1000.0] * 12 + [30_000.0])
    counts = np.array([4.0] * 12 + [600.0])  # one busy source at 2%, the rest at 0.4%
    fit = baselines.heterogeneity(counts, exposure)
    pooled = counts.sum() / exposure.sum()
    assert fit.rate < 0.5 * pooled and fit.rate == pytest.approx(0.004, rel=0.5)


def test_day_to_day_over_dispersion_is_found_when_present_and_not_in_poisson_counts():
    rng = np.random.default_rng(2)
    expected = rng.uniform(2, 20, 400)
    poisson = baselines.overdispersion(rng.poisson(expected), expected)
    assert poisson.p_value > 0.05 and poisson.phi_used == pytest.approx(baselines.DAY_CV_FLOOR ** 2)
    wobbly = baselines.overdispersion(rng.poisson(expected * rng.gamma(2, 0.5, 400)), expected)  # phi = 0.5
    assert wobbly.p_value < 0.001 and wobbly.phi_used == pytest.approx(0.5, abs=0.2)


# --- multiple testing ----------------------------------------------------------------------------


def test_benjamini_hochberg_matches_the_step_up_values():
    assert baselines.benjamini_hochberg([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.02, 0.04, 0.04, 0.02])


def test_tarone_leaves_out_tests_that_could_never_be_significant():
    p = np.array([0.0001, 0.02, 0.5, 0.9, 0.9])
    p_min = np.array([1e-6, 1e-3, 0.3, 0.6, 0.6])  # the last three cannot reach 0.05 / anything
    adjusted, testable = baselines.discrete_bh(p, p_min, 0.05)
    assert testable.tolist() == [True, True, False, False, False]
    assert adjusted[:2] == pytest.approx(baselines.benjamini_hochberg(p[:2]))
    assert (adjusted[2:] == 1).all()
    plain, _ = baselines.discrete_bh(p, np.zeros(5), 0.05)  # no filter: plain BH
    assert plain == pytest.approx(baselines.benjamini_hochberg(p))


def test_overlapping_windows_of_one_trigger_count_as_one_discovery():
    # Eight overlapping windows of one spike and one window elsewhere, out of 100 tests.
    p = np.array([1e-5] * 8 + [3e-3])
    keys = np.array(["campaign:1"] * 8 + ["campaign:2"])
    starts = np.array([0, 6, 12, 18, 24, 30, 36, 42, 0]) * HOUR
    ends = starts + 24 * HOUR
    adjusted = baselines.trigger_level_bh(p, 100, keys, starts, ends)
    plain = baselines.benjamini_hochberg(np.concatenate([p, np.ones(91)]))[:9]
    assert plain[8] < 0.05 < adjusted[8]  # per window the ninth would pass; as a second trigger it does not
    assert (adjusted[:8] == pytest.approx(1e-3)) and (adjusted >= plain - 1e-12).all()


# --- hour of week and bursts ---------------------------------------------------------------------


def _cells(times: np.ndarray, outcome: np.ndarray, stratum: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    exposure = pd.DataFrame({"stratum": stratum, "time": times, "how": hour_of_week_class(times),
                             "burst": burst_flags(stratum, times, stratum, times), "counted": True})
    return exposure, exposure[outcome]


def test_an_hour_of_week_effect_is_used_only_when_the_data_show_it():
    rng = np.random.default_rng(3)
    times = rng.uniform(T0, T0 + 14 * DAY, 60_000).astype(np.int64)
    stratum = rng.choice(["a", "b", "c"], len(times))
    flat = rng.random(len(times)) < 0.004
    exposure, hits = _cells(times, flat, stratum)
    assert not fit_time_effects(exposure, hits).hour_of_week
    night = hour_of_week_class(times) % 4 == 0  # 00-06 UTC: people opt out three times more readily
    skewed = rng.random(len(times)) < np.where(night, 0.012, 0.004)
    exposure, hits = _cells(times, skewed, stratum)
    effects = fit_time_effects(exposure, hits)
    assert effects.hour_of_week_p < 0.01 and effects.hour_of_week["weekday 00-06h"] > 1.8
    weights = effects.weights(exposure["how"].to_numpy(), exposure["burst"].to_numpy())
    assert weights[night].mean() > 2 * weights[~night].mean()


def test_a_burst_is_an_hour_at_five_times_the_sources_usual_volume():
    hours = np.repeat(np.arange(100) * HOUR + T0, 4)  # four sends an hour...
    burst = T0 + 50 * HOUR + np.arange(40)  # ...and forty in one hour
    times = np.concatenate([hours, burst])
    flags = burst_flags(np.full(len(times), "a"), times, np.full(len(times), "a"), times)
    assert flags[len(hours):].all() and not flags[:len(hours)][times[:len(hours)] != T0 + 50 * HOUR].any()


def test_too_few_opt_outs_estimate_no_time_effect():
    times = np.arange(1000) * 600 + T0
    exposure, hits = _cells(times, np.arange(1000) < 5, np.full(1000, "a"))
    effects = fit_time_effects(exposure, hits)
    assert effects.hour_of_week_p is None and not effects.used


# --- cohorts ------------------------------------------------------------------------------------


def test_opt_outs_are_dated_by_the_delivery_they_answer():
    log = Log(4).send(200, 0.5, campaign=1, start_hour=22, hours=1, delay_s=4 * HOUR).frame()
    delivered = cohorts.deliveries(log)
    outcomes = cohorts.outcomes(log, delivered, cohorts.OPT_OUT_METRICS)
    assert outcomes["matched"].all()
    assert (outcomes["at"] < T0 + 23 * HOUR + 60).all()  # delivered before 23:00...
    assert (outcomes["timestamp"] >= T0 + 24 * HOUR).mean() > 0.3  # ...though many opted out after midnight


def test_an_opt_out_without_its_delivery_keeps_its_own_time_and_hard_bounces_are_churn():
    frame = pd.DataFrame({
        "event_id": ["a", "b", "c"], "metric": ["unsubscribed", "bounced", "bounced"],
        "object_type": ["sms", "email", "email"], "timestamp": [T0, T0 + 5, T0 + 9],
        "delivery_id": [None, "x", "y"], "campaign_id": [None, 3, 3], "cluster": [1, 1, 1],
        "cluster_name": "A", "plan": "pro", "cio_id": ["p", "q", "r"],
        "failure_message": [None, "550 5.1.1 The email account that you tried to reach does not exist",
                            "552 5.2.2 Mailbox full"]})
    churn = cohorts.outcomes(frame, cohorts.deliveries(frame), cohorts.CHURN_METRICS, hard_bounces=True)
    assert churn["event_id"].tolist() == ["a", "b"]
    assert churn["source"].tolist() == ["sms:unattributed", "campaign:3"]
    assert churn["at"].tolist() == [T0, T0 + 5]


def test_valuable_plans_are_matched_whatever_their_spelling():
    frame = pd.DataFrame({"plan": ["Pro", " pro ", "PRO", "free", None]})
    assert cohorts.valuable(frame, ["pro"]).tolist() == [True, True, True, False, False]
