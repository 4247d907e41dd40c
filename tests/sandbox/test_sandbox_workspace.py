"""The synthetic workspace: determinism, consistent counts, planted truth that analysis can recover."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.preprocessing import StandardScaler
from statsmodels.stats.multitest import multipletests
from threadpoolctl import threadpool_limits

from cio_mavera.jobs.audiences.attribute_values import BOOLEAN_VALUES, parse_number
from cio_mavera.sandbox.workspace import (
    RATE_DEFINITIONS,
    RATE_METRICS,
    SERIES,
    CampaignWorld,
    CustomerWorld,
    WorkspaceLookupError,
    World,
    customer_attribute_strings,
    find_rows,
    generate_workspace,
    metric_series,
)
from cio_mavera.sandbox.workspace.attribute_mess import ATTRIBUTE_GROUPS

END = dt.date(2026, 10, 1)
SEEDS = (7, 11, 23)
HIGHER_IS_WORSE = {"unsubscribe_rate", "bounce_rate", "spam_complaint_rate"}


@pytest.fixture(scope="module", params=SEEDS)
def ws(request):
    return generate_workspace(request.param, 3000, end=END)


@pytest.fixture(scope="module", params=SEEDS)
def clean_ws(request):
    """The tidy world: every non-planted message has exactly its channel's rates."""
    return generate_workspace(request.param, 300, end=END, world=World.clean())


def _totals(ws, window: int) -> pd.DataFrame:
    """Series totals per action over the last `window` days."""
    totals = pd.DataFrame(ws.metric_cube[:, :, -window:].sum(axis=2), columns=list(SERIES))
    return pd.concat([ws.actions[["campaign_id", "action_id", "channel"]].reset_index(drop=True), totals],
                     axis=1)


def _counts(totals: pd.DataFrame, rate: str) -> tuple[np.ndarray, np.ndarray]:
    numerator, denominator, subtract = RATE_DEFINITIONS[rate]
    trials = totals[denominator].to_numpy() - (totals[subtract].to_numpy() if subtract else 0)
    return totals[numerator].to_numpy(), trials


def _flagged(ws, window: int = 30, alpha: float = 0.05) -> set[tuple[int, int, str]]:
    """One-sided two-proportion z-test of each action vs the rest of its channel, BH across all tests."""
    totals = _totals(ws, window)
    tests = []
    for rate in RATE_METRICS:
        successes, trials = _counts(totals, rate)
        for channel in totals["channel"].unique():
            members = np.flatnonzero(totals["channel"].to_numpy() == channel)
            for i in members:
                rest_s, rest_n = successes[members].sum() - successes[i], trials[members].sum() - trials[i]
                if trials[i] < 500 or rest_n <= 0 or successes[i] + rest_s == 0:
                    continue
                pooled = (successes[i] + rest_s) / (trials[i] + rest_n)
                se = np.sqrt(pooled * (1 - pooled) * (1 / trials[i] + 1 / rest_n))
                z = (successes[i] / trials[i] - rest_s / rest_n) / se
                p = stats.norm.sf(z) if rate in HIGHER_IS_WORSE else stats.norm.cdf(z)
                tests.append((int(totals["campaign_id"][i]), int(totals["action_id"][i]), rate, p))
    adjusted = multipletests([t[3] for t in tests], alpha=alpha, method="fdr_bh")[1]
    return {t[:3] for t, q in zip(tests, adjusted, strict=True) if q < alpha}


def _expected_findings(ws) -> set[tuple[int, int, str]]:
    return {(d["campaign_id"], d["action_id"], d["metric"])
            for d in ws.truth["underperformers"] + ws.truth["also_low"]}


# --- determinism ------------------------------------------------------------------------------


def test_same_seed_generates_identical_workspace():
    a = generate_workspace(7, 800, end=END)
    b = generate_workspace(7, 800, end=END)
    for name in ("campaigns", "actions", "metrics", "segments", "customers"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    assert a.truth == b.truth
    assert np.array_equal(a.cluster_labels, b.cluster_labels)
    assert a.segment_members.keys() == b.segment_members.keys()
    assert all(np.array_equal(a.segment_members[k], b.segment_members[k]) for k in a.segment_members)


def test_different_seeds_generate_different_data():
    a = generate_workspace(7, 800, end=END)
    b = generate_workspace(11, 800, end=END)
    assert a.site_id != b.site_id and a.workspace_id != b.workspace_id
    assert set(a.customers["cio_id"]).isdisjoint(set(b.customers["cio_id"]))
    assert not a.customers["mrr"].equals(b.customers["mrr"])
    assert a.truth["underperformers"] != b.truth["underperformers"] or not a.metrics.equals(b.metrics)
    assert not np.array_equal(a.metric_cube.sum(axis=(0, 2)), b.metric_cube.sum(axis=(0, 2)))


def test_campaign_metrics_do_not_depend_on_customer_count():
    small = generate_workspace(7, 100, end=END)
    large = generate_workspace(7, 5000, end=END)
    assert np.array_equal(small.metric_cube, large.metric_cube)
    assert small.truth["underperformers"] == large.truth["underperformers"]


# --- campaigns, actions, metrics --------------------------------------------------------------


def test_campaigns_have_one_to_four_actions_on_known_channels(ws):
    assert 12 <= len(ws.campaigns) <= 16
    per_campaign = ws.actions.groupby("campaign_id").size()
    assert per_campaign.between(1, 4).all()
    assert set(per_campaign.index) == set(ws.campaigns["campaign_id"])
    assert ws.actions["action_id"].is_unique and ws.campaigns["campaign_id"].is_unique
    assert set(ws.actions["channel"]) == {"email", "push", "twilio"}
    emails = ws.actions[ws.actions["channel"] == "email"]
    assert (emails["subject"].str.len() > 0).all() and (emails["preheader_text"].str.len() > 0).all()
    assert (ws.actions["body"].str.len() > 10).all()
    assert (ws.campaigns["state"] == "running").all() and ws.campaigns["active"].all()
    segment_ids = set(ws.segments["segment_id"])
    assert all(set(ids) <= segment_ids for ids in ws.campaigns["trigger_segment_ids"])


def test_metric_counts_are_internally_consistent(ws):
    c = {name: ws.metric_cube[:, i, :] for i, name in enumerate(SERIES)}
    assert (ws.metric_cube >= 0).all()
    assert np.array_equal(c["created"], c["sent"] + c["suppressed"] + c["failed"] + c["undeliverable"])
    assert np.array_equal(c["sent"], c["delivered"] + c["bounced"])
    assert np.array_equal(c["opened"], c["human_opened"] + c["prefetch_opened"])
    assert np.array_equal(c["clicked"], c["human_clicked"] + c["machine_clicked"])
    assert (c["open_untracked"] <= c["delivered"]).all() and (c["link_untracked"] <= c["delivered"]).all()
    assert (c["untracked"] >= c["open_untracked"]).all() and (c["untracked"] <= c["sent"]).all()
    assert (c["human_opened"] <= c["delivered"] - c["open_untracked"]).all()
    assert (c["human_clicked"] + c["machine_clicked"] <= c["delivered"] - c["link_untracked"]).all()
    channel = ws.actions["channel"].to_numpy()
    opens = np.isin(channel, ["email", "push"])
    assert (c["human_clicked"][opens] <= c["human_opened"][opens]).all()
    sms, push, email = channel == "twilio", channel == "push", channel == "email"
    assert c["opened"][sms].sum() == 0 and c["replied"][sms].sum() > 0
    assert c["unsubscribed"][push].sum() == 0 and c["spammed"][~email].sum() == 0
    assert c["prefetch_opened"][~email].sum() == 0 and c["replied"][~sms].sum() == 0
    assert c["drafted"].sum() == 0 and c["deferred"][email].sum() > 0


def test_metrics_long_frame_holds_every_series_for_every_action_and_day(ws):
    assert set(ws.metrics["metric"]) == set(SERIES)
    assert len(ws.metrics) == len(ws.actions) * len(SERIES) * ws.days
    assert ws.metrics["day"].min() == END - dt.timedelta(days=ws.days - 1)
    assert ws.metrics["day"].max() == END
    action = ws.actions.iloc[0]
    sent = ws.metrics[(ws.metrics["action_id"] == action["action_id"]) & (ws.metrics["metric"] == "sent")]
    assert sent.sort_values("day")["value"].tolist() == ws.metric_cube[0, SERIES.index("sent")].tolist()


def test_volumes_and_machine_opens_are_realistic(ws):
    totals = _totals(ws, ws.days)
    daily_sent = totals["sent"] / ws.days
    by_channel = daily_sent.groupby(totals["channel"]).median()
    assert 300 <= by_channel["email"] <= 5000
    assert by_channel["twilio"] < by_channel["email"]
    email = totals[totals["channel"] == "email"]
    prefetch_share = email["prefetch_opened"].sum() / email["opened"].sum()
    assert 0.30 <= prefetch_share <= 0.45


def test_metric_series_sums_actions_and_zero_fills_outside_the_generated_days(ws):
    campaign_id = int(ws.campaigns["campaign_id"].iloc[0])
    action_ids = ws.actions.loc[ws.actions["campaign_id"] == campaign_id, "action_id"].tolist()
    start, end = END - dt.timedelta(days=9), END + dt.timedelta(days=2)
    campaign = metric_series(ws, campaign_id, None, start, end)
    parts = [metric_series(ws, campaign_id, a, start, end) for a in action_ids]
    assert set(campaign) == set(SERIES)
    assert len(campaign["sent"]) == 12
    assert np.array_equal(campaign["sent"], sum(p["sent"] for p in parts))
    assert campaign["sent"][:10].sum() > 0 and campaign["sent"][10:].sum() == 0
    before = metric_series(ws, campaign_id, None, ws.first_day - dt.timedelta(days=5), ws.first_day)
    assert before["sent"][:5].sum() == 0 and before["sent"][5] > 0
    with pytest.raises(WorkspaceLookupError):
        metric_series(ws, -1, None, start, end)
    with pytest.raises(WorkspaceLookupError):
        metric_series(ws, campaign_id, -1, start, end)


# --- planted truth ----------------------------------------------------------------------------


def test_truth_is_json_serialisable_and_complete(ws):
    truth = json.loads(json.dumps(ws.truth))
    assert truth == ws.truth
    planted = truth["underperformers"]
    assert len(planted) == 3
    assert all(set(p) == {"campaign_id", "action_id", "metric"} for p in planted)
    assert all(p["metric"] in ("human_click_rate", "conversion_rate") for p in planted)
    channel = ws.actions.set_index("action_id")["channel"]
    assert any(channel[p["action_id"]] == "email" for p in planted)
    assert all(a["metric"] in RATE_METRICS for a in truth["also_low"])
    clusters = truth["clusters"]
    assert clusters["k"] == 4 and len(clusters["assignments"]) == len(ws.customers)
    assert set(clusters["assignments"].values()) == set(range(4))
    assert "cluster" not in " ".join(ws.customers.columns).lower()


def test_spike_plan_targets_a_clean_email_campaign_in_the_last_week(ws):
    spike = ws.truth["spike"]
    action = ws.actions.set_index("action_id").loc[spike["action_id"]]
    assert action["channel"] == "email" and action["campaign_id"] == spike["campaign_id"]
    assert spike["campaign_id"] not in {p["campaign_id"] for p in ws.truth["underperformers"]}
    end_of_data = int(dt.datetime(END.year, END.month, END.day, tzinfo=dt.UTC).timestamp()) + 86400
    assert end_of_data - 7 * 86400 <= spike["start"] < spike["end"] <= end_of_data
    assert 24 * 3600 <= spike["end"] - spike["start"] <= 48 * 3600
    assert spike["metric"] == "unsubscribed" and spike["also"] == ["spammed"]
    assert spike["cluster"] in range(ws.truth["clusters"]["k"])


def test_planted_underperformers_are_clearly_below_their_channel(ws):
    totals = _totals(ws, 30)
    channel = totals["channel"].to_numpy()
    for plant in ws.truth["underperformers"]:
        successes, trials = _counts(totals, plant["metric"])
        i = int(np.flatnonzero(totals["action_id"].to_numpy() == plant["action_id"])[0])
        rest = (channel == channel[i]) & (np.arange(len(totals)) != i)
        rate, baseline = successes[i] / trials[i], successes[rest].sum() / trials[rest].sum()
        assert rate < 0.7 * baseline, plant


def test_plants_are_outliers_relative_to_their_channels_spread_and_say_how_far(ws):
    knobs = ws.world.campaigns
    for plant in ws.truth["underperformer_details"]:
        assert plant["spread_sds"] >= knobs.plant_spread_sds_low - 1e-6, plant
        assert plant["relative_drop"] >= knobs.plant_min_relative_drop, plant
        assert plant["true_rate"] == pytest.approx(plant["baseline_rate"] * (1 - plant["relative_drop"]), rel=0.01)
        logit = np.log(plant["baseline_rate"] / (1 - plant["baseline_rate"]))
        logit -= np.log(plant["true_rate"] / (1 - plant["true_rate"]))
        assert logit == pytest.approx(plant["spread_sds"] * plant["spread_logit_sd"], rel=0.01)


def test_realistic_messages_differ_around_their_channel_by_the_heterogeneity_knob():
    cv = CampaignWorld().heterogeneity_cv
    ratios = []
    for seed in SEEDS:
        truth = generate_workspace(seed, 100, end=END).truth
        planted = {p["action_id"] for p in truth["underperformers"]}
        for row in truth["message_rates"]:
            typical = truth["baselines"][row["channel"]]["human_click_rate"]
            if row["action_id"] not in planted:
                ratios.append(row["human_click_rate"] / typical)
    assert np.std(ratios) == pytest.approx(cv, rel=0.3)
    assert np.median(ratios) == pytest.approx(1.0, abs=0.1)


def test_clean_messages_share_their_channels_rates_exactly(clean_ws):
    planted = {p["action_id"] for p in clean_ws.truth["underperformers"]}
    for row in clean_ws.truth["message_rates"]:
        typical = clean_ws.truth["baselines"][row["channel"]]
        if row["action_id"] not in planted:
            assert row["human_click_rate"] == pytest.approx(typical["human_click_rate"])
            assert row["conversion_rate"] == pytest.approx(typical["conversion_rate"])
    assert all(p["spread_sds"] is None and 0.45 <= p["relative_drop"] <= 0.55
               for p in clean_ws.truth["underperformer_details"])


def _pearson_dispersion(ws, rate: str, window: int = 30) -> np.ndarray:
    """Pearson chi-square over days / (days - 1) of each message's `rate` (1 for binomial counts)."""
    numerator, denominator, subtract = RATE_DEFINITIONS[rate]
    cube = ws.metric_cube[:, :, -window - 1:-1]  # whole days only
    successes = cube[:, SERIES.index(numerator)].astype(float)
    trials = cube[:, SERIES.index(denominator)] - (cube[:, SERIES.index(subtract)] if subtract else 0)
    keep = successes.sum(axis=1) > 0  # the channels that have this rate
    successes, trials = successes[keep], trials[keep].astype(float)
    p = successes.sum(axis=1, keepdims=True) / trials.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(trials > 0, (successes - trials * p) ** 2 / (trials * p * (1 - p)), 0.0)
    return terms.sum(axis=1) / ((trials > 0).sum(axis=1) - 1)


def test_realistic_daily_counts_are_over_dispersed(ws):
    assert np.median(_pearson_dispersion(ws, "human_open_rate")) > 2.0
    assert np.median(_pearson_dispersion(ws, "human_click_rate")) > 1.2


def test_clean_daily_counts_are_plainly_binomial(clean_ws):
    # Nothing shrinks noise below binomial any more.
    for rate in ("human_open_rate", "human_click_rate", "conversion_rate"):
        assert np.median(_pearson_dispersion(clean_ws, rate)) == pytest.approx(1.0, abs=0.25)


def test_realistic_volumes_have_send_bursts():
    sent = generate_workspace(7, 100, end=END).metric_cube[:, SERIES.index("sent"), :-1].astype(float)
    ordinary = np.median(sent[sent > 0])
    assert (sent > 3 * ordinary).sum() > 0.01 * sent.size
    clean = generate_workspace(7, 100, end=END, world=World.clean()).metric_cube[:, SERIES.index("sent"), :-1]
    newsletter_free = clean[(clean > 0).all(axis=1)]
    assert (newsletter_free < 2 * np.median(newsletter_free, axis=1, keepdims=True)).all()


def test_a_mid_day_end_counts_only_the_elapsed_part_of_the_last_day():
    noon = generate_workspace(7, 100, end=dt.datetime(2026, 3, 31, 12, tzinfo=dt.UTC), world=World.clean())
    sent = noon.metric_cube[:, SERIES.index("sent"), :].sum(axis=0)
    assert noon.end_date == dt.date(2026, 3, 31)
    assert 0.4 < sent[-1] / sent[-8] < 0.6  # half of the same weekday a week earlier


def test_campaign_knobs_reach_the_truth_and_change_the_world():
    world = World().with_knobs({"campaigns.heterogeneity_cv": 0.4, "campaigns.plant_spread_sds_low": 5.0})
    ws = generate_workspace(7, 100, end=END, world=world)
    assert ws.truth["world"]["campaigns"]["heterogeneity_cv"] == 0.4
    assert all(p["spread_sds"] >= 5.0 for p in ws.truth["underperformer_details"])


def test_a_pooled_test_finds_the_plants_of_the_clean_world(clean_ws):
    # Plain binomial noise: a naive test over ~250 pairs may flag one more message now and then
    # (seed 11 does); job 1's own method is held to the exact set in tests/jobs/campaigns.
    flagged = _flagged(clean_ws, window=30)
    assert _expected_findings(clean_ws) <= flagged
    assert len({a for _, a, _ in flagged - _expected_findings(clean_ws)}) <= 1


def test_a_naive_pooled_test_flags_ordinary_messages_in_the_realistic_world(ws):
    # Why job 1 models the spread between messages: against the pooled rest, ordinary differences
    # between messages look "significant".
    assert len(_flagged(ws, window=30) - _expected_findings(ws)) >= 5


# --- segments ---------------------------------------------------------------------------------


def test_segments_include_everyone_a_manual_group_and_one_empty_segment(ws):
    by_name = ws.segments.set_index("name")
    sizes = {name: len(ws.segment_members[int(row["segment_id"])]) for name, row in by_name.iterrows()}
    assert sizes["All customers"] == len(ws.customers)
    assert sizes["Legacy import (empty)"] == 0
    assert 100 <= sizes["Beta testers"] <= 500 and by_name.loc["Beta testers", "type"] == "manual"
    attrs = customer_attribute_strings(ws, np.arange(len(ws.customers)))
    paying = ws.segment_members[int(by_name.loc["Paying customers", "segment_id"])]
    assert all(parse_number(attrs[i]["mrr"]) > 0 for i in paying)  # "$99.00", "1,200.5", "99 USD"
    trial = ws.segment_members[int(by_name.loc["Trial users", "segment_id"])]
    assert all(BOOLEAN_VALUES[attrs[i]["trial_user"].lower()] == 1 for i in trial)
    enterprise = ws.segment_members[int(by_name.loc["Enterprise accounts", "segment_id"])]
    assert all(attrs[i]["plan"].strip().lower() == "enterprise" for i in enterprise)
    assert 0 < sizes["Enterprise accounts"] < sizes["Paying customers"] < sizes["All customers"]
    assert 0 < sizes["Dormant 60d"] < sizes["All customers"]
    assert (ws.segments["state"] == "finished").all()


# --- customers --------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=SEEDS)
def clean_people(request):
    """The tidy customers: nearly disjoint clusters, every attribute present and typed."""
    return generate_workspace(request.param, 3000, end=END, world=World.clean())


def test_clean_customers_have_about_thirty_typed_attributes(clean_people):
    people = clean_people.customers
    assert 28 <= len(people.columns) <= 36
    assert people["cio_id"].is_unique and people["email"].is_unique
    assert 0.02 <= people["id"].isna().mean() <= 0.08
    assert people["phone"].dropna().str.fullmatch(r"\+\d{8,15}").all()
    assert isinstance(people["plan"].dtype, pd.CategoricalDtype)
    assert set(people["plan"].cat.categories) == {"free", "starter", "pro", "business", "enterprise"}
    assert people["nps_score"].isna().any() and people["nps_score"].dropna().between(0, 10).all()
    assert (people["created_at"] < people["last_seen_at"]).all()
    assert people["country"].value_counts().min() < 0.005 * len(people)  # rare countries exist
    for group in ATTRIBUTE_GROUPS.values():
        assert not people[[c for c in group if c in people]].drop(columns=["notes", "job_title"],
                                                                   errors="ignore").isna().any().any()


def test_clean_attribute_strings_are_tidy_strings_with_missing_values_omitted(clean_people):
    rows = np.arange(200)
    attrs = customer_attribute_strings(clean_people, rows)
    assert len(attrs) == 200
    assert all(isinstance(v, str) and v != "" for a in attrs for v in a.values())
    people = clean_people.customers.iloc[rows]
    for a, (_, person) in zip(attrs, people.iterrows(), strict=True):
        assert a["cio_id"] == person["cio_id"]
        assert ("id" in a) == pd.notna(person["id"])
        assert ("nps_score" in a) == pd.notna(person["nps_score"])
        assert a["trial_user"] in ("true", "false") and a["marketing_opt_in"] in ("true", "false")
        assert re.fullmatch(r"\d{10}", a["created_at"]) and int(a["created_at"]) == person["created_at"]
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", a["signup_date"])
        assert float(a["mrr"]) == pytest.approx(person["mrr"])
        assert a["seats"] == str(person["seats"])
    assert any("id" not in a for a in attrs)


def test_realistic_attribute_groups_go_missing_together_at_their_knob_shares(ws):
    attrs = customer_attribute_strings(ws, np.arange(len(ws.customers)))
    knobs = ws.truth["world"]["customers"]
    groups = ws.truth["clusters"]["attribute_groups"]
    for group, share in (("billing", "missing_billing"), ("product", "missing_product"),
                         ("crm", "missing_crm")):
        anchor = groups[group][0]  # plan, logins_30d, industry: always set when the group is
        absent = np.array([anchor not in a for a in attrs])
        assert absent.mean() == pytest.approx(knobs[share], abs=0.03), group
        for column in groups[group]:  # nobody has one attribute of a group they lack
            assert not any(column in a for a, gone in zip(attrs, absent, strict=True) if gone), column
    # The people lacking a group are otherwise ordinary: missing at random, whatever their cluster.
    lacking = np.array(["industry" not in a for a in attrs])
    for cluster in range(ws.truth["clusters"]["k"]):
        assert lacking[ws.cluster_labels == cluster].mean() == pytest.approx(knobs["missing_crm"], abs=0.06)


def test_realistic_attributes_are_written_as_integrations_write_them(ws):
    attrs = customer_attribute_strings(ws, np.arange(len(ws.customers)))
    values = {c: [a[c] for a in attrs if c in a] for c in ("plan", "trial_user", "mrr", "seats",
                                                           "company_size", "source", "billing_customer",
                                                           "signup_comment", "logins_30d")}
    plans = set(values["plan"])
    assert {"pro", "Pro", "PRO", "pro "} <= plans  # one value, spelt four ways
    assert {p.strip().lower() for p in plans} == {"free", "starter", "pro", "business", "enterprise"}
    assert {"true", "yes", "1", "Y", "True"} <= set(values["trial_user"])
    assert any(re.fullmatch(r"\$\d{1,3}(,\d{3})*\.\d\d", v) for v in values["mrr"])  # "$1,200.00"
    assert any(v.endswith(" USD") for v in values["mrr"])
    assert any(re.fullmatch(r"\d+ seats", v) for v in values["seats"])
    assert any(re.fullmatch(r"\d{1,3}(,\d{3})+", v) for v in values["company_size"])
    assert "-1" in values["logins_30d"]  # a broken sync's "unknown"
    assert set(values["source"]) == {"api"}  # a constant
    assert len(set(values["billing_customer"])) == len(values["billing_customer"])  # near-unique ids
    assert np.median([len(v.split()) for v in values["signup_comment"]]) >= 8  # free text


def test_customer_knobs_reach_the_truth_and_the_clean_world_is_tidy(clean_people):
    assert clean_people.truth["world"]["customers"] == dataclasses.asdict(CustomerWorld.clean())
    tidy = World.clean().with_knobs({"customers.missing_crm": 0.5})
    ws = generate_workspace(7, 2000, end=END, world=tidy)
    assert ws.truth["world"]["customers"]["missing_crm"] == 0.5
    assert ws.customers["industry"].isna().mean() == pytest.approx(0.5, abs=0.04)
    assert ws.customers["plan"].notna().all()  # only the knob that was turned changed


def test_find_rows_maps_identifiers_and_marks_unknown_ones(ws):
    rows = np.array([5, 0, 17])
    for id_type in ("cio_id", "email"):
        values = ws.customers[id_type].iloc[rows].tolist() + ["nobody"]
        assert find_rows(ws, id_type, values).tolist() == [5, 0, 17, -1]
    with pytest.raises(WorkspaceLookupError):
        find_rows(ws, "shoe_size", ["1"])


def _cluster_features(people: pd.DataFrame) -> np.ndarray:
    """Standardised numerics (log1p for skewed counts) + one-hot low-cardinality categoricals."""
    numeric = people.select_dtypes(include=["number", "bool"]).astype(float)
    numeric = numeric.fillna(numeric.median())
    for name in numeric.columns:
        if numeric[name].min() >= 0 and numeric[name].skew() > 1:
            numeric[name] = np.log1p(numeric[name])
    categorical = [c for c in people.columns
                   if isinstance(people[c].dtype, pd.CategoricalDtype) and people[c].nunique() <= 12]
    one_hot = pd.get_dummies(people[categorical].astype(object)).to_numpy(float)
    return np.hstack([StandardScaler().fit_transform(numeric), one_hot])


def test_clean_latent_clusters_are_recovered_by_kmeans_with_silhouette(clean_people):
    features = _cluster_features(clean_people.customers)
    with threadpool_limits(1):  # the machine is shared; tiny data gains nothing from threads
        fits = {k: KMeans(k, n_init=3, random_state=0).fit_predict(features) for k in range(2, 9)}
    silhouettes = {k: silhouette_score(features, labels) for k, labels in fits.items()}
    truth = clean_people.truth["clusters"]["k"]
    assert max(silhouettes, key=silhouettes.get) == truth
    assert adjusted_rand_score(clean_people.cluster_labels, fits[truth]) >= 0.8
