"""Job 1 orchestration against the sandbox: data window, flags, PII-free summary, Mavera steps, budget."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import END, settings_for

from cio_mavera.connect import Connection
from cio_mavera.errors import BudgetExceeded, InvalidParameter
from cio_mavera.jobs import campaigns as cm
from cio_mavera.jobs.campaigns import narrative, tables
from cio_mavera.jobs.context import RunContext
from cio_mavera.mavera.budget import CreditBudget
from cio_mavera.mavera.client import MaveraClient
from cio_mavera.pii import PiiLeak, contains_pii
from cio_mavera.sandbox.server import SandboxServer, start_sandbox
from cio_mavera.sandbox.workspace import World

# --- window and parsing (no server) ------------------------------------------------------------


def test_window_is_whole_utc_days_ending_with_today():
    start, end = cm.resolve_window(30, today=dt.date(2026, 3, 31))
    assert start == pd.Timestamp("2026-03-02", tz="UTC")
    assert end == pd.Timestamp("2026-04-01", tz="UTC")


def test_explicit_start_and_end_override_days():
    start, end = cm.resolve_window(30, "2026-01-01", "2026-01-15")
    assert (start, end) == (pd.Timestamp("2026-01-01", tz="UTC"), pd.Timestamp("2026-01-15", tz="UTC"))


def test_start_alone_takes_days_from_it():
    start, end = cm.resolve_window(7, start="2026-01-01")
    assert end - start == pd.Timedelta(days=7)


@pytest.mark.parametrize("args", [(0, None, None), (30, "2026-02-01", "2026-01-01")])
def test_bad_windows_are_rejected_before_any_request(args):
    with pytest.raises(cm.JobInputError):
        cm.resolve_window(*args)


def test_sms_is_the_twilio_channel():
    assert cm.normalise_channel("SMS") == "twilio"
    assert cm.normalise_channel(None) == "all"


def test_body_excerpt_drops_html_and_liquid():
    body = "<p>Hi {{customer.first_name | default: 'there'}},</p><p>Reports show <b>where</b> work waits.</p>"
    assert cm.body_excerpt(body) == "Hi, Reports show where work waits."


def test_labelled_generation_text_is_parsed_into_subject_preheader_and_outline():
    text = "1. Subject: Your report is ready\nPreheader: See where work waits\n- Open the board\n- Invite a teammate"
    subject, preheader, outline = cm.parse_variation(text, "email")
    assert subject == "Your report is ready"
    assert preheader == "See where work waits"
    assert outline == ["Open the board", "Invite a teammate"]


def test_unlabelled_email_uses_first_line_as_subject_and_first_sentence_as_preheader():
    subject, preheader, outline = cm.parse_variation(
        "**Finish your setup**\n\nIt takes two minutes. Your team is waiting.", "email")
    assert (subject, preheader, outline) == ("Finish your setup", "It takes two minutes.", ["Your team is waiting."])


def test_long_first_sentence_is_truncated_as_preheader_but_kept_in_the_outline():
    sentence = "A " + "very " * 40 + "long sentence."
    _, preheader, outline = cm.parse_variation(f"Subject line\n\n{sentence}", "email")
    assert len(preheader) <= 110 and preheader.endswith("…")
    assert outline == [sentence]


def test_sms_variation_has_no_subject_or_preheader():
    subject, preheader, outline = cm.parse_variation("**Finish upgrading**\n\nOne tap left. Reply STOP to opt out.", "twilio")
    assert (subject, preheader) == ("", "")
    assert outline == ["Finish upgrading", "One tap left.", "Reply STOP to opt out."]


def test_key_points_come_from_the_recommendations_list():
    text = ("Research brief\n\n**Key findings**\n- finding one\n\n**Recommendations**\n"
            "1. **Lead** with the outcome.\n2. Cut the preheader.\n3. Test one change.\n4. Extra.")
    assert cm.strategy_key_points(text) == ["Lead with the outcome.", "Cut the preheader.", "Test one change."]


def test_key_points_fall_back_to_sentences_without_a_list():
    assert cm.strategy_key_points("Do this first. Then that.") == ["Do this first.", "Then that."]


PERSONAS = [
    {"id": "p1", "name": "Gen Z Consumer", "category": "Generational", "description": "Digital-native consumer."},
    {"id": "p2", "name": "E-commerce Marketing Manager", "category": "IndustrySpecific",
     "description": "Runs email and SMS campaigns."},
    {"id": "p3", "name": "Small Business Owner", "category": "Professional", "description": "Owner of a team."},
    {"id": "p4", "name": "Procurement Manager", "category": "Professional", "description": "Compares vendors."},
    {"id": "c1", "name": "Cluster 1", "category": "Custom", "description": "email power users", "is_custom": True},
]


def test_three_base_personas_from_distinct_categories_are_chosen_by_default():
    chosen = cm.choose_personas(PERSONAS, {"underperformers": []})
    assert len(chosen) == 3
    assert len({p["category"] for p in chosen}) == 3
    assert all(not p.get("is_custom") for p in chosen)


def test_named_personas_are_used_as_given():
    chosen = cm.choose_personas(PERSONAS, {}, wanted=["p4", "gen z consumer", "c1"])
    assert [p["id"] for p in chosen] == ["p4", "p1", "c1"]


def test_unknown_persona_is_an_actionable_error():
    with pytest.raises(InvalidParameter, match="not found"):
        cm.choose_personas(PERSONAS, {}, wanted=["nobody"])


def test_scoring_refuses_fewer_than_three_personas():
    with pytest.raises(cm.JobInputError, match="three personas"):
        cm.score_variations(object(), [], PERSONAS[:2])


def _variation(action_id: int, variation_id: str) -> cm.Variation:
    return cm.Variation(action_id, variation_id, "email", f"Subject {variation_id}", "", [], "test")


def test_ranking_orders_by_mean_score_within_message_and_measures_lift_over_current_copy():
    rows = []
    plan = {(2, "current"): [5, 5, 5], (2, "A"): [6, 7, 8], (2, "B"): [9, 9, 6],
            (1, "current"): [4, 4, 4], (1, "A"): [3, 3, 3]}
    for (action, variation), values in plan.items():
        for i, v in enumerate(values):
            rows.append({"action_id": action, "variation_id": variation, "persona_id": f"p{i}",
                         "persona_name": f"P{i}", "score": v, "would_open": v / 10, "would_click": v / 20,
                         "reason": f"r{v}"})
    variations = [_variation(a, v) for a, v in plan]
    ranked = cm.rank_variations(pd.DataFrame(rows), variations)
    assert list(zip(ranked["action_id"], ranked["variation_id"], ranked["rank"], strict=True)) == [
        (2, "B", 1), (2, "A", 2), (1, "A", 1)]
    assert ranked.loc[0, "lift_vs_current"] == 3.0
    assert ranked.loc[2, "lift_vs_current"] == -1.0
    assert ranked.loc[0, "best_reason"] == "r9" and ranked.loc[0, "worst_reason"] == "r6"
    assert ranked.loc[0, "subject"] == "Subject B"


# --- against the sandbox ---------------------------------------------------------------------

# The 30 days up to the pinned sandbox's end (exclusive bound: the day after its last day).
WINDOW_END = (END + dt.timedelta(days=1)).date().isoformat()


@pytest.fixture(scope="module")
def clean_server() -> SandboxServer:
    """Seed 7 in the clean world, where the planted messages are the only true findings."""
    server = start_sandbox(seed=7, customers=500, end=END, world=World.clean())
    yield server
    server.stop()


@pytest.fixture
def sandbox(clean_server: SandboxServer) -> SandboxServer:
    """This module's sandbox (the clean world) with its stats, request log and API state reset."""
    clean_server.state.reset()
    return clean_server


@pytest.fixture(scope="module")
def warm_cache(clean_server, tmp_path_factory) -> Path:
    """Customer.io data for the last 30 days, pulled once for this module (the pull takes seconds)."""
    data_dir = tmp_path_factory.mktemp("campaign-data")
    connection = Connection(settings_for(clean_server, data_dir), "live", "sandbox-test",
                            sandbox_url=clean_server.url)
    cm.load_campaign_data(connection, days=30, end=WINDOW_END)
    return data_dir / "cache"


@pytest.fixture
def data(connection, warm_cache) -> cm.CampaignData:
    """The window's data from a copy of the warm cache; the Mavera cache starts empty in every test."""
    shutil.copytree(warm_cache, connection.settings.data_dir / "cache", dirs_exist_ok=True)
    return cm.load_campaign_data(connection, days=30, end=WINDOW_END)


def _planted(sandbox) -> set[tuple[int, str]]:
    truth = sandbox.state.truth()
    return {(p["action_id"], p["metric"]) for p in truth["underperformers"] + truth["also_low"]}


def test_loading_again_is_served_from_the_cache(connection, sandbox, data):
    before = sandbox.state.stats.as_json()["requests_total"]
    again = cm.load_campaign_data(connection, days=30, end=WINDOW_END)
    assert sandbox.state.stats.as_json()["requests_total"] == before
    assert again.requests == 0
    assert set(data.freshness) == {"campaigns", "actions", "metrics"}
    assert all(data.freshness.values())
    assert data.mode == "live" and data.days == 30


def test_unknown_campaign_or_channel_is_rejected(connection, data):
    with pytest.raises(cm.JobInputError, match="not in this workspace"):
        cm.load_campaign_data(connection, days=30, end=WINDOW_END, campaign_ids=[999999])
    with pytest.raises(cm.JobInputError, match="no messages"):
        cm.load_campaign_data(connection, days=30, end=WINDOW_END, channel="whatsapp")


def test_analysis_flags_exactly_the_planted_underperformers(sandbox, data):
    findings = cm.analyse(data, max_underperformers=3)
    flagged = set(zip(findings.flagged["action_id"].astype(int), findings.flagged["metric"], strict=True))
    assert flagged == _planted(sandbox)
    planted_actions = {p["action_id"] for p in sandbox.state.truth()["underperformers"]}
    assert set(findings.messages["action_id"]) == planted_actions
    assert findings.messages["min_p_adjusted"].is_monotonic_increasing


def test_max_underperformers_limits_the_messages_rewritten(data):
    findings = cm.analyse(data, max_underperformers=1)
    assert len(findings.messages) == 1
    assert findings.flagged["action_id"].nunique() == 3


def test_campaign_filter_narrows_flags_but_keeps_the_whole_channel_as_baseline(sandbox, data):
    planted = sandbox.state.truth()["underperformers"][0]
    everything = cm.analyse(data)
    data.campaign_ids = [planted["campaign_id"]]
    narrowed = cm.analyse(data)
    assert set(narrowed.flagged["campaign_id"]) == {planted["campaign_id"]}
    assert narrowed.baselines.equals(everything.baselines)
    assert set(narrowed.funnel["Campaign"]) == {planted["campaign_id"]}


def test_channel_filter_tests_only_that_channel(connection, data):
    sms = cm.analyse(cm.load_campaign_data(connection, days=30, end=WINDOW_END, channel="sms"))
    assert set(sms.tests["channel"]) == {"twilio"}


def test_summary_for_mave_is_compact_json_without_pii(data):
    summary = cm.findings_summary(cm.analyse(data))
    text = json.dumps(summary)
    assert contains_pii(summary) == []
    assert len(text) < 8000
    assert "{{" not in text and "<p>" not in text
    assert len(summary["underperformers"]) == 3
    first = summary["underperformers"][0]
    assert {"subject", "preheader", "body_excerpt", "shortfalls"} <= set(first)
    shortfall = first["shortfalls"][0]
    assert shortfall["rate"] < shortfall["typical_range"][0] < shortfall["channel_typical"]


def test_contact_details_in_the_copy_are_redacted_before_they_reach_mave(data):
    findings = cm.analyse(data)
    findings.messages.loc[0, "body"] = "<p>Questions? Write to help@tallyfold.example or call +1 415 555 0100.</p>"
    findings.messages.loc[0, "subject"] = "Call (415) 555-0100 today"
    summary = cm.findings_summary(findings)
    message = summary["underperformers"][0]
    assert message["body_excerpt"] == "Questions? Write to [email] or call [phone]."
    assert message["subject"] == "Call [phone] today"
    assert contains_pii(cm.strategy_prompt(summary)) == []


def test_an_undetected_contact_still_trips_the_guard(data):
    findings = cm.analyse(data)
    findings.messages.loc[0, "metrics"] = ["human_click_rate"]
    findings.flagged.loc[0, "metric"] = "x@example.com"  # only the guard stands between this and Mave
    with pytest.raises(PiiLeak):
        cm.findings_summary(findings)


def _client(connection, budget: CreditBudget, run_id: str = "test-run") -> MaveraClient:
    return MaveraClient(connection, run_id=run_id, job=cm.JOB, budget=budget)


def _run_mavera_steps(connection, findings, budget, validation="responses", run_id="test-run"):
    summary = cm.findings_summary(findings)
    with _client(connection, budget, run_id) as client:
        run = RunContext.around(client, job=cm.JOB)
        panel = cm.choose_personas(client.personas.list(max_age=cm.LISTING_MAX_AGE), summary)
        strategy = cm.ask_mave_for_strategy(run, summary)
        drafts = cm.draft_variations(run, findings, strategy, 2)
        scores = cm.score_variations(run, drafts, panel, validation, poll_s=0.01)
        stats = client.stats
    return panel, strategy, drafts, scores, run, stats


def test_every_variation_and_the_current_copy_is_scored_by_every_persona(connection, data):
    findings = cm.analyse(data, max_underperformers=2)
    budget = CreditBudget(1500)
    panel, strategy, drafts, scores, run, _ = _run_mavera_steps(connection, findings, budget)
    assert run.skipped == [] and strategy.content and strategy.key_points
    assert len(drafts) == 2 * (1 + 2)
    assert len(scores) == len(drafts) * 3
    assert scores["score"].between(1, 10).all()
    assert scores[["would_open", "would_click"]].stack().between(0, 1).all()
    assert (scores["reason"].str.len() > 0).all()
    ranked = cm.rank_variations(scores, drafts)
    assert len(ranked) == 4 and set(ranked["rank"]) == {1, 2}
    assert ranked["lift_vs_current"].notna().all()
    assert 0 < budget.spent <= 1500


def test_a_rerun_is_served_from_the_cache_without_requests_or_credits(connection, sandbox, data):
    findings = cm.analyse(data, max_underperformers=1)
    first = _run_mavera_steps(connection, findings, CreditBudget(1500))
    before = sandbox.state.stats.as_json()
    budget = CreditBudget(1500)
    second = _run_mavera_steps(connection, findings, budget, run_id="second-run")
    after = sandbox.state.stats.as_json()
    assert after["requests_total"] == before["requests_total"]
    assert after["credits_charged"] == before["credits_charged"]
    assert budget.spent == 0
    assert second[3].equals(first[3])


def test_focus_group_validation_scores_each_message_in_one_group(connection, sandbox, data):
    findings = cm.analyse(data, max_underperformers=1)
    _, _, drafts, scores, run, _ = _run_mavera_steps(connection, findings, CreditBudget(1500),
                                                      validation="focus_group")
    assert run.skipped == []
    assert sandbox.state.stats.as_json()["requests"].get("POST /mavera/v1/focus-groups", 1) == 1
    assert len(scores) == len(drafts) * 3
    assert set(scores["method"]) == {"focus_group"}
    assert set(scores["would_open"]) <= {0.0, 1.0}


def test_budget_refusals_are_recorded_and_the_run_continues(connection, data):
    findings = cm.analyse(data, max_underperformers=2)
    # After Mave (worst case 75) less than one generation's worst case is left.
    budget = CreditBudget(80, worst_case={"generation": 40})
    _, strategy, drafts, scores, run, _ = _run_mavera_steps(connection, findings, budget)
    skipped = run.skipped
    assert strategy.content
    assert budget.spent <= 80
    assert {s.step for s in skipped} == {"generate"}
    assert drafts == [] and scores.empty
    assert all("credits" in s.reason for s in skipped)
    text = run.credits_markdown()
    assert f"{len(skipped)} call(s) skipped" in text


def test_nothing_is_sent_with_a_zero_budget(connection, sandbox, data):
    findings = cm.analyse(data)
    budget = CreditBudget(0)
    _, strategy, drafts, scores, run, _ = _run_mavera_steps(connection, findings, budget)
    assert strategy.skipped and scores.empty and drafts == []
    assert sandbox.state.stats.as_json()["credits_charged"] == 0
    results = cm.campaign_results(run, data, findings, strategy, cm.rank_variations(scores, drafts),
                                  scores)
    assert results["credits_spent"] == 0
    assert results["ranked_variations"] == []
    assert [s["step"] for s in results["skipped"]] == ["strategy", "generate", "generate", "generate"]
    assert all("over budget" in s["reason"] for s in results["skipped"])


class RefusesAfter:
    """A client whose budget refuses every `responses.create` call after the first `allowed` ones."""

    def __init__(self, client: MaveraClient, allowed: int) -> None:
        self.client, self.allowed = client, allowed
        self.responses = self  # the scoring step calls `client.responses.create`

    def create(self, *args, **kwargs):
        if self.allowed <= 0:
            raise BudgetExceeded("refused before sending", needed=5, remaining=0)
        self.allowed -= 1
        return self.client.responses.create(*args, **kwargs)


def test_a_partly_refused_panel_drops_the_variation_and_says_why(connection, data):
    findings = cm.analyse(data, max_underperformers=1)
    summary = cm.findings_summary(findings)
    with _client(connection, CreditBudget(1500)) as client:
        run = RunContext.around(client, job=cm.JOB)
        panel = cm.choose_personas(client.personas.list(max_age=cm.LISTING_MAX_AGE), summary)
        drafts = cm.draft_variations(run, findings, cm.ask_mave_for_strategy(run, summary), 2)
        # The control's panel and one answer for variation A fit; the rest is refused.
        refusing = RunContext.around(RefusesAfter(client, 4), job=cm.JOB)
        scores = cm.score_variations(refusing, drafts, panel)
    skipped = refusing.skipped
    assert set(scores["variation_id"]) == {"current"} and len(scores) == 3
    action = drafts[0].action_id
    assert [s.what for s in skipped] == [f"message {action} variation A", f"message {action} variation B"]
    assert skipped[0].reason.startswith("2 of 3 persona calls refused (over budget")
    assert "1 other score(s) were dropped" in skipped[0].reason
    assert "dropped" not in skipped[1].reason


def test_results_hold_the_flags_ranked_variations_and_credits(connection, sandbox, data):
    findings = cm.analyse(data, max_underperformers=1)
    budget = CreditBudget(1500)
    panel, strategy, drafts, scores, run, _ = _run_mavera_steps(connection, findings, budget)
    run.parameters = {"days": 30}
    ranked = cm.rank_variations(scores, drafts)
    results = cm.campaign_results(run, data, findings, strategy, ranked, scores, personas=panel)
    json.dumps(results, allow_nan=False)
    flagged = {(f["action_id"], f["metric"]) for f in results["flagged_underperformers"]}
    assert flagged == _planted(sandbox)
    for flag in results["flagged_underperformers"]:
        assert {"rate", "baseline", "p_adjusted", "shrunk_rate", "shrunk_low", "shrunk_high",
                "channel_spread_sd", "typical_low", "typical_high"} <= set(flag)
        assert flag["shrunk_low"] <= flag["shrunk_rate"] <= flag["shrunk_high"]
    assert {s["channel"] for s in results["channel_spreads"]} == {"email", "push", "twilio"}
    assert len(results["method"]["checks"]) == 6
    assert [v["rank"] for v in results["ranked_variations"]] == [1, 2]
    assert all(len(v["persona_scores"]) == 3 for v in results["ranked_variations"])
    assert results["credits_spent"] == budget.spent > 0
    assert results["parameters"] == {"days": 30}


def test_listings_are_cached_for_a_warm_rerun(connection, sandbox):
    with _client(connection, CreditBudget(10)) as client:
        first = client.personas.list(max_age=cm.LISTING_MAX_AGE)
        before = sandbox.state.stats.as_json()["requests_total"]
        assert client.personas.list(max_age=cm.LISTING_MAX_AGE) == first
        assert sandbox.state.stats.as_json()["requests_total"] == before
        client.refresh = True
        client.personas.list(max_age=cm.LISTING_MAX_AGE)
        assert sandbox.state.stats.as_json()["requests_total"] > before


def test_report_summary_and_sentences_name_the_planted_messages(sandbox, data):
    findings = cm.analyse(data)
    strategy = cm.Strategy("", [], [], None, 0, skipped="not asked")
    ranked = cm.rank_variations(pd.DataFrame(
        columns=["action_id", "variation_id", "persona_id", "persona_name", "score", "would_open",
                 "would_click", "reason"]))
    plan = cm.ab_test_plan(findings, ranked)
    numbers = narrative.key_numbers(findings, ranked, plan)
    assert numbers[0].value == "3 of 33" and "false discovery rate" in numbers[0].uncertainty
    top = narrative.clearest_flag(findings)
    assert f"(#{int(top['action_id'])})" in numbers[1].label
    assert numbers[1].value.endswith("%)") and "adjusted p" in numbers[1].uncertainty
    steps = narrative.decisions(findings, strategy, ranked, plan)
    assert len(steps) == 3 and all(s.startswith("No new copy was scored") for s in steps)
    assert all("deliveries per variant" in s for s in steps)
    sentence = narrative.underperformer_sentence(findings)
    assert all(f"\\#{a}" in sentence for a in findings.messages["action_id"])


def test_report_explains_the_method_and_shows_the_checks_and_the_spread(data):
    findings = cm.analyse(data)
    method = narrative.method_markdown(findings)
    assert "typical message of its channel" in method and "Benjamini-Hochberg" in method
    checks = narrative.checks_table(findings)
    assert checks.index.name == "Assumption" and len(checks) == 6
    assert list(checks.columns) == ["How it was checked", "On this data", "What the test does"]
    bullets = narrative.checks_markdown(findings)
    assert bullets.count("\n- ") == 5 and "On this data: median dispersion" in bullets
    assert "Typical human click rate by channel: email" in narrative.spread_sentence(findings)
    table = tables.flagged_frame(findings, data)
    assert {"Observed (95% CI)", "Shrunken (95% CI)", "Typical message", "Typical range"} <= set(table.columns)
    assert table["Channel"].isin(["email", "push", "SMS"]).all()


def test_realistic_sandbox_flags_outliers_of_their_channel_not_ordinary_messages(shared_server, tmp_path):
    """The default (realistic) world over HTTP: messages differ and days are over-dispersed; the test
    still finds the plants that are far out (2 of seed 7's 3; its email plant, 4.3 spreads out, is
    missed) and one other message (#814, whose true unsubscribe rate is 3.8 spreads above its
    channel's: a natural outlier), where a test against the pooled rest flags dozens."""
    connection = Connection(settings_for(shared_server, tmp_path / "data"), "live", "sandbox-test",
                            sandbox_url=shared_server.url)
    findings = cm.analyse(cm.load_campaign_data(connection, days=30, end=WINDOW_END))
    plants = {p["action_id"] for p in shared_server.state.truth()["underperformers"]}
    flagged = set(findings.flagged["action_id"].astype(int))
    assert len(flagged & plants) >= 2 and len(flagged - plants) <= 1
    flags = findings.flagged
    outside = (flags["rate"] < flags["typical_low"]) | (flags["rate"] > flags["typical_high"])
    assert outside.all()
    results = findings.checks.set_index("assumption")["result"]
    assert "median dispersion" in results.iloc[0] and "differ beyond noise" in results.iloc[1]
