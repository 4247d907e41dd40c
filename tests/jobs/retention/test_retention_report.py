"""Job 3's report pieces: intervals beside every headline rate, p-values that never read 0, the
follow-up size after a fix, one name per campaign, audience and channel (SMS, never twilio), what
changed between two runs, notices judged on the run's own log (never today's date), and hostile
campaign names, audience names and Mave answers kept as text in the top block, sentences, briefs,
tables and charts."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from bs4 import BeautifulSoup
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from retention_logs import steady
from scipy import stats
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_confint

from cio_mavera.changes import compare, previous_results
from cio_mavera.jobs import report_parts as rp
from cio_mavera.jobs.retention import charts, labels, narrative, tables
from cio_mavera.jobs.retention import triggers as rt
from cio_mavera.jobs.retention.analysis import campaign_rates, cluster_rates
from cio_mavera.jobs.retention.research import Brief
from cio_mavera.jobs.retention.results import log_period, opt_out_rate, trigger_entry
from cio_mavera.jobs.retention.uncertainty import deliveries_to_confirm, normal_range, rate_interval

HOSTILE_CAMPAIGN = "Spring <script>alert(1)</script> [win](javascript:alert(2)) **bold** $x^2$ cost $5"
HOSTILE_AUDIENCE = "Pro <img src=x onerror=alert(3)> _em_ `code` # heading"
HOSTILE_ANSWER = ("# Findings\n\n- first <script>alert(4)</script>\n- [click](javascript:alert(5))\n\n"
                  "<b>bold</b> and **stars**\n\n**Lessons <i>learnt</i>**\n\n_notes_")
DEFAULT_PARAMETERS = {"events": 12000, "window_hours": 24, "step_hours": 12,
                      "valuable_plans": ["pro", "business", "enterprise"], "alpha": 0.05,
                      "cooldown_hours": 24, "max_credits": 600, "refresh": False}


# ---- intervals and the follow-up size -------------------------------------------------------------


def test_rate_interval_is_wilson_and_empty_without_deliveries():
    assert rate_interval(21, 219) == pytest.approx(proportion_confint(21, 219, 0.05, "wilson"))
    assert all(math.isnan(v) for v in rate_interval(3, 0))


def test_normal_range_is_the_central_95_percent_of_the_tests_predictive_distribution():
    expected, extra, exposure = 12.0, 30.0, 1000
    low, high = normal_range(expected, extra, exposure)
    size = expected ** 2 / extra
    draws = stats.nbinom.rvs(size, size / (size + expected), size=200_000, random_state=11)
    inside = np.mean((draws >= low * exposure) & (draws <= high * exposure))
    assert 0.95 <= inside <= 0.99  # discrete: at least 95%, a little more at the edges
    assert low < expected / exposure < high
    # No extra variance: a Poisson, as the test treats it.
    assert normal_range(12.0, 0.0, 1000) == pytest.approx(tuple(stats.poisson.ppf([0.025, 0.975], 12) / 1000))
    assert all(math.isnan(v) for v in normal_range(0.0, 1.0, 1000))


def test_deliveries_to_confirm_is_the_one_sample_size_for_cohens_h_half_way_back():
    spike, normal = 0.096, 0.0069
    still_high = normal + 0.5 * (spike - normal)
    h = 2 * math.asin(math.sqrt(still_high)) - 2 * math.asin(math.sqrt(normal))
    by_hand = ((norm.ppf(0.95) + norm.ppf(0.8)) / h) ** 2  # one-sided 5%, 80% power
    assert deliveries_to_confirm(spike, normal) == math.ceil(by_hand)
    assert deliveries_to_confirm(0.01, 0.02) is None  # no spike to confirm
    assert deliveries_to_confirm(0.1, 0.0) is None


@pytest.fixture(scope="module")
def spiked() -> tuple[pd.DataFrame, rt.TriggerResult]:
    """Six steady campaigns for 14 days; campaign 3 opts out 8% for one day (seeded)."""
    frame = steady(1, per_day=100).send(600, 0.08, campaign=3, start_hour=100, hours=24).frame()
    return frame, rt.find_triggers(frame)


def test_trigger_entries_carry_intervals_the_normal_range_and_the_follow_up(spiked):
    events, result = spiked
    trigger = next(t for t in result.triggers if t.campaign_id == 3)
    entry = trigger_entry(trigger, None, {3: HOSTILE_CAMPAIGN}, events, ["pro"])
    json.dumps(entry, allow_nan=False)  # results.json is strict JSON
    assert entry["campaign_name"] == HOSTILE_CAMPAIGN and entry["brief"] is None
    assert entry["rate_low"] < trigger.rate < entry["rate_high"]
    assert entry["normal_low"] <= trigger.baseline <= entry["normal_high"] < entry["rate_low"]
    follow = entry["follow_up"]
    assert follow["messages"] == deliveries_to_confirm(trigger.rate, trigger.baseline)
    assert follow["days"] == pytest.approx(follow["messages"] / follow["per_day"], abs=0.1)
    period = log_period(events)
    assert period["days"] == pytest.approx(14, abs=0.1)
    assert pd.Timestamp(period["start"]) < pd.Timestamp(period["end"])
    whole = opt_out_rate(events)
    assert whole["low"] < whole["rate"] < whole["high"] and whole["delivered"] == (
        (events["metric"] == "delivered") & events["campaign_id"].notna()).sum()


# ---- a results.json with hostile names ------------------------------------------------------------


def _trigger(**over) -> dict:
    trigger = {"kind": "campaign", "key": "campaign:45:opt_out", "metric": "opt_out",
               "window_start": "2026-03-26T00:00:00+00:00", "window_end": "2026-03-28T00:00:00+00:00",
               "count": 21, "exposure": 219, "rate": 21 / 219, "baseline": 0.0069, "p_value": 0.0,
               "p_adjusted": 0.0, "campaign_id": 45, "cluster": 0, "cluster_name": HOSTILE_AUDIENCE,
               "series": "cluster", "ratio": 13.9, "campaign_name": HOSTILE_CAMPAIGN,
               "rate_low": 0.0636, "rate_high": 0.1421, "normal_low": 0.0, "normal_high": 0.0274,
               "follow_up": {"messages": 74, "per_day": 23.8, "days": 3.1},
               "brief": {"status": "asked", "content": HOSTILE_ANSWER, "confidence": 0.88, "credits": 62}}
    return {**trigger, **over}


def _results(**over) -> dict:
    results = {
        "job": "retention-research", "mode": "sandbox", "workspace": "seed7", "parameters": DEFAULT_PARAMETERS,
        "event_counts": {"unique_events": 11760, "by_metric": {"delivered": 4782, "unsubscribed": 58,
                                                               "spammed": 10, "bounced": 78}},
        "period": {"start": "2026-03-17T12:00:00+00:00", "end": "2026-03-31T12:00:00+00:00", "days": 14.0},
        "opt_out": {"opt_outs": 51, "delivered": 3824, "rate": 51 / 3824, "low": 0.0102, "high": 0.0172},
        "dead_letters": {"waiting": 0, "by_reason": {}, "replayed": 0},
        "tests": {"window_hours": 24, "step_hours": 12, "scales": [1, 2], "alpha": 0.05, "min_count": 3,
                  "tests": 2799, "testable": 309},
        "triggers": [_trigger()], "credits_spent": 62, "changes": {"first_run": True}}
    return {**results, **over}


def _assert_inert(html: str, *visible: str) -> BeautifulSoup:
    """No tag, link, image, handler or emphasis came from outside text, and the text is readable."""
    soup = BeautifulSoup(html, "html.parser")
    assert soup.find_all(["script", "img", "iframe", "b", "h1"]) == []
    assert not [t for t in soup.find_all(True) if any(a.lower().startswith("on") for a in t.attrs)]
    assert not [a for a in soup.find_all("a") if not a.get("href", "").startswith(("http", "data:", "#"))]
    made = {"bold", "stars", "em", "code", "win", "click", "heading"}
    assert not [t for t in soup.find_all(["strong", "em", "i", "code", "a"]) if t.get_text(strip=True) in made]
    text = soup.get_text(" ")
    for piece in visible:
        assert piece in text, piece
    return soup


def test_summary_opens_with_3_to_5_key_numbers_with_intervals_and_hostile_names_as_text():
    block = narrative.summary(_results())
    soup = _assert_inert(block, HOSTILE_CAMPAIGN, HOSTILE_AUDIENCE)
    keys = soup.select(".cio-summary .cio-key")
    assert 3 <= len(keys) <= 5 and all(k.select_one(".cio-key-uncertainty") for k in keys)
    values = [k.select_one(".cio-key-value").get_text() for k in keys]
    assert "9.6% (6.4–14.2%)" in values and "1.3% (1.0–1.7%)" in values
    text = soup.get_text(" ")
    assert "adjusted p < 1e-300" in text and "0.0e+00" not in text and "p = 0" not in text
    assert "normal range 0.0–2.7%" in text  # one precision for both ends
    decisions = [li.get_text() for li in soup.select(".cio-decisions li")]
    assert decisions[0].startswith(f"Review {HOSTILE_CAMPAIGN} (#45) for {HOSTILE_AUDIENCE}")
    assert "74 messages" in decisions[0] and "about 3 day(s)" in decisions[0]


def test_without_a_spike_the_summary_still_shows_three_numbers_with_intervals_and_says_so():
    results = _results(triggers=[])
    soup = _assert_inert(narrative.summary(results))
    keys = soup.select(".cio-key")
    assert [k.select_one(".cio-key-label").get_text() for k in keys] == [
        "Spikes found", "Opt-out rate, all campaigns", "Webhook events analysed"]
    assert all(k.select_one(".cio-key-uncertainty") for k in keys)
    assert narrative.decisions(results)[0].startswith("Nothing spiked")
    assert narrative.spikes_sentence(results).startswith("**No spike found.**")
    assert narrative.briefs_markdown([]) == "No spike, so no research was requested."


def test_a_whole_campaign_spike_counts_all_recipients_and_names_its_audience_apart():
    whole = _trigger(series="all recipients")
    assert labels.tested_audience(whole) == f"all recipients (most opt-outs in {HOSTILE_AUDIENCE})"
    assert labels.tested_audience(_trigger(kind="churn", campaign_id=None)) == HOSTILE_AUDIENCE
    frame = tables.triggers_frame(_results(triggers=[whole]))
    assert frame.loc[0, "Audience"].startswith("all recipients")
    assert labels.subject(_trigger(kind="churn"), {}) == f"valuable customers in {HOSTILE_AUDIENCE}"


def test_sentences_briefs_and_next_steps_keep_hostile_text_as_text():
    results = _results()
    brief = Brief(key="campaign:45:opt_out", status="asked", trigger=results["triggers"][0],
                  content=HOSTILE_ANSWER, confidence=0.88, credits=62,
                  sources=[{"title": "ok (1)", "url": "https://example.com/a(b)"},
                           {"title": HOSTILE_CAMPAIGN, "url": "javascript:alert(6)"}])
    briefs = markdown2html_mistune(narrative.briefs_markdown([brief], {45: HOSTILE_CAMPAIGN}))
    soup = _assert_inert(briefs, "<script>alert(4)</script>", "<b>bold</b>", "**stars**",
                         "link left out: not a web address")
    assert soup.find_all(re.compile("^h[1-6]$")) == []  # no heading: the contents list stays short
    bold = [t.get_text() for t in soup.find_all("strong")]
    assert "Findings" in bold and "Lessons <i>learnt</i>" in bold  # Mave's heading and bold line, as text
    assert "notes" in [t.get_text() for t in soup.find_all("em")]
    assert [a["href"] for a in soup.find_all("a") if not a["href"].startswith("#")] == [
        "https://example.com/a%28b%29"]
    assert len(soup.find_all("li")) == 2  # the answer's list stays a list
    for markdown in (narrative.spikes_sentence(results), narrative.next_steps(results),
                     narrative.what_changed(results), narrative.volume_sentence(results),
                     narrative.dead_letters_markdown(results)):
        _assert_inert(markdown2html_mistune(markdown))
    sentence = _assert_inert(markdown2html_mistune(narrative.spikes_sentence(results))).get_text(" ")
    assert "(adjusted p < 1e-300)" in sentence and "normally show 0.0–2.7%" in sentence


def test_spike_table_escapes_names_and_says_p_below_1e_300():
    html = tables.triggers(_results())
    soup = _assert_inert(html, HOSTILE_CAMPAIGN, HOSTILE_AUDIENCE)
    cells = [td.get_text() for td in soup.find_all("td")]
    assert "< 1e-300" in cells and "9.6% (6.4–14.2%)" in cells and "0.69% (0.00–2.74%)" in cells
    assert "download" in html.lower() and tables.triggers(_results(triggers=[])) == ""


def test_rate_tables_highlight_spiked_campaigns_and_audiences_and_end_with_the_total(spiked):
    events, _ = spiked
    events = events.assign(cluster_name=events["cluster_name"].where(events["cluster"] != 1, HOSTILE_AUDIENCE))
    names = {c: f"{HOSTILE_CAMPAIGN} {c}" for c in range(1, 7)}
    html = tables.campaign_rates_table(events, names, tables.spiked_campaigns(
        _results(triggers=[_trigger(campaign_id=3, cluster=1)])))
    soup = _assert_inert(html, f"{HOSTILE_CAMPAIGN} 3 (#3)")
    flagged = soup.select(f"tr.{rp.FLAGGED_ROW_CLASS}")
    assert [row.find("td").get_text() for row in flagged] == [f"{HOSTILE_CAMPAIGN} 3 (#3)"]
    rows = soup.select("tbody tr")
    assert rows[-1].find("td").get_text() == "All campaigns"
    overall = tables.overall_rate(campaign_rates(events, names))
    assert labels.percent(overall) in rows[-1].get_text()
    audiences = tables.cluster_rates_table(events, ["pro"], tables.spiked_audiences(
        _results(triggers=[_trigger(campaign_id=3, cluster=1)])))
    soup = _assert_inert(audiences, HOSTILE_AUDIENCE)
    assert [r.find("td").get_text() for r in soup.select(f"tr.{rp.FLAGGED_ROW_CLASS}")] == [HOSTILE_AUDIENCE]
    assert soup.select("tbody tr")[-1].find("td").get_text() == "All audiences"


def test_charts_draw_hostile_names_without_mathtext(spiked):
    events, result = spiked
    names = {c: HOSTILE_CAMPAIGN for c in range(1, 7)}
    events = events.assign(cluster_name=HOSTILE_AUDIENCE + " $5 and $")
    trigger = next(t for t in result.triggers if t.campaign_id == 3)
    figures = [charts.volume_chart(events), charts.campaign_rates_chart(campaign_rates(events, names), names),
               charts.audience_rates_chart(cluster_rates(events, ["pro"]), events),
               charts.spike_chart(trigger, events, names, ["pro"])]
    for figure in figures:
        assert rp.figure_png(figure)[:4] == b"\x89PNG"  # drawn: an unescaped $ would fail here
    title = figures[3].axes[0].get_title()
    assert "\\$x^2\\$" in title and "<script>" in title
    legend = [t.get_text() for t in figures[3].axes[0].get_legend().get_texts()]
    assert any(t.startswith("Expected (") for t in legend) and any(t.startswith("Normal range") for t in legend)


# ---- names, parameters, notices, changes ----------------------------------------------------------


def test_sms_is_named_sms_in_every_label_and_the_assumptions_table():
    assert labels.channel_name("twilio") == "SMS" and labels.channel_name("email") == "email"
    fit = {"cv": 0.5, "cv_low": 0.2, "cv_high": 0.9, "sources": 4, "events": 30, "p_value": 0.0,
           "cv_used": 1.0}
    result = rt.TriggerResult([], pd.DataFrame(), {}, {"campaign": {"sources": {"twilio": fit}}})
    html = tables.assumptions(result)
    text = BeautifulSoup(html, "html.parser").get_text(" ")
    assert "SMS campaigns and newsletters differ in rate" in text and "twilio" not in text.lower()
    assert "p < 1e-300" in text


def test_parameters_read_as_plain_values_with_their_meaning():
    cells = [td.get_text() for td in BeautifulSoup(tables.parameters(DEFAULT_PARAMETERS), "html.parser")
             .find_all("td")]
    assert "pro, business, enterprise" in cells and "no" in cells and "12,000" in cells
    assert not [c for c in cells if c in ("False", "['pro', 'business', 'enterprise']")]
    frame = tables.parameters_frame(DEFAULT_PARAMETERS)
    assert frame["What it means"].str.len().gt(0).all()


def test_notices_judge_the_log_against_the_windows_asked_not_against_today():
    assert narrative.notices(_results()) == []  # 14 days hold 3 windows of 48 h
    short = narrative.notices(_results(period={**_results()["period"], "days": 4.0}))
    assert len(short) == 1 and "more history than the log holds (4.0 days)" in short[0]
    dead = _results(dead_letters={"waiting": 3, "by_reason": {"json": 2, "<script>": 1}, "replayed": 0},
                    opt_out={**_results()["opt_out"], "opt_outs": 4})
    boxes = narrative.notices(dead)
    assert len(boxes) == 2 and "3 signed webhook(s)" in boxes[0] and "Only 4 opt-out(s)" in boxes[1]
    for box in boxes:
        _assert_inert(box)
    assert "&lt;script&gt;" in boxes[0]
    empty = narrative.notices(_results(event_counts={"unique_events": 0}))
    assert len(empty) == 1 and "event log is empty" in empty[0]
    banner = narrative.banner(_results())
    assert "SANDBOX DATA" in banner and "2026-03-17 12:00 to 03-31 12:00 UTC (14.0 days)" in banner
    live = narrative.banner(_results(mode="live", workspace=HOSTILE_CAMPAIGN))
    assert "Live data" in live and "SANDBOX" not in live
    _assert_inert(live, HOSTILE_CAMPAIGN)


def test_a_live_log_silent_long_before_the_analysis_is_named_and_a_sandbox_one_is_not():
    live = _results(mode="live", analysed_at="2026-04-04T12:00:00+00:00")  # 4 days after the log ends
    boxes = narrative.notices(live)
    assert len(boxes) == 1 and "2026-03-31 12:00 UTC, 4.0 days before this analysis" in boxes[0]
    assert "webhooks work" in boxes[0]
    assert narrative.notices({**live, "analysed_at": "2026-04-01T12:00:00+00:00"}) == []  # a day is normal
    assert narrative.notices({**live, "mode": "sandbox"}) == []  # the synthetic log ends where it does
    assert narrative.notices({k: v for k, v in live.items() if k != "analysed_at"}) == []


def _write(reports, run_id: str, results: dict) -> dict:
    directory = reports / "retention-research" / run_id
    directory.mkdir(parents=True)
    results = {**results, "run_id": run_id}
    (directory / "results.json").write_text(json.dumps(results))
    return results


def test_a_second_run_says_which_spikes_fired_cleared_or_still_fire(tmp_path):
    earlier = _write(tmp_path, "20260330T120000Z-aaaa",
                     _results(triggers=[_trigger(key="campaign:11:opt_out", campaign_id=11,
                                                 campaign_name="Welcome")]))
    _write(tmp_path, "20260330T130000Z-bbbb", _results(parameters={**DEFAULT_PARAMETERS, "alpha": 0.1}))
    now = _results(run_id="20260331T120000Z-cccc", credits_spent=0)
    previous = previous_results(tmp_path, now)
    assert previous["run_id"] == earlier["run_id"]  # other parameters are another series of runs
    changes = compare(previous, now)
    assert changes["fired"] == ["campaign:45:opt_out"] and changes["cleared"] == ["campaign:11:opt_out"]
    assert changes["still_firing"] == [] and changes["credits"] == {"before": 62, "now": 0}
    text = narrative.what_changed({**now, "changes": changes})
    assert earlier["run_id"] in text and "1 trigger(s) fired" in text
    _assert_inert(markdown2html_mistune(text), HOSTILE_CAMPAIGN, HOSTILE_AUDIENCE, "campaign:11:opt_out")
    # The same run again: nothing fired or cleared, the spike still fires.
    again = compare(now, {**now, "run_id": "20260331T130000Z-dddd"})
    assert again["fired"] == again["cleared"] == [] and again["still_firing"] == ["campaign:45:opt_out"]


def test_glossary_defines_the_terms_the_report_uses():
    text = BeautifulSoup(narrative.glossary(), "html.parser").get_text(" ")
    for term in ("Wilson interval", "Adjusted p", "Opt-out rate", "Normal range", "Dead letter", "Cooldown"):
        assert term in text, term
